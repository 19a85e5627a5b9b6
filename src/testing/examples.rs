//! The objects in `examples/`, the one loader every test, bench and fuzz target reads
//! them with.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::api::{EnvironmentClass, EnvironmentRequest, Tenant};

/// The `examples/` folder of this checkout.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The text of `examples/<name>`.
pub fn example_text(name: &str) -> String {
    let path = examples_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An object from `examples/<name>`, as any type YAML reads into (a Berth kind,
/// `serde_yaml::Value`, `serde_json::Value`).
pub fn example<T: DeserializeOwned>(name: &str) -> T {
    serde_yaml::from_str(&example_text(name)).unwrap_or_else(|e| panic!("examples/{name}: {e}"))
}

/// `examples/environmentclass-<name>.yaml`.
pub fn class(name: &str) -> EnvironmentClass {
    example(&format!("environmentclass-{name}.yaml"))
}

/// `examples/tenant-payments.yaml`.
pub fn payments() -> Tenant {
    example("tenant-payments.yaml")
}

/// `examples/environmentrequest-<name>.yaml`, with the UID the apiserver would have
/// given it (`uid-<name>`): approvals are bound to it.
pub fn request(name: &str) -> EnvironmentRequest {
    let mut request: EnvironmentRequest = example(&format!("environmentrequest-{name}.yaml"));
    request.metadata.uid = Some(format!("uid-{name}"));
    request
}

/// `request` with a status that shows it provisioned (Ready, committed), as budget
/// decisions count it.
pub fn provisioned(mut request: EnvironmentRequest) -> EnvironmentRequest {
    use crate::api::environment_request::{EnvironmentRequestStatus, GitOpsStatus, Phase};
    request.status = Some(EnvironmentRequestStatus {
        phase: Some(Phase::Ready),
        gitops: Some(GitOpsStatus { commit: Some("abc".to_owned()), ..GitOpsStatus::default() }),
        ..EnvironmentRequestStatus::default()
    });
    request
}
