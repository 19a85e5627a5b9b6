//! Fixtures for unit tests: the objects in `examples/`, and approval keys.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::api::{EnvironmentClass, EnvironmentRequest, Tenant};

/// An object from `examples/<name>`.
pub fn example<T: DeserializeOwned>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `examples/environmentclass-<name>.yaml`.
pub fn class(name: &str) -> EnvironmentClass {
    example(&format!("environmentclass-{name}.yaml"))
}

/// `examples/tenant-payments.yaml`.
pub fn payments() -> Tenant {
    example("tenant-payments.yaml")
}

/// `examples/environmentrequest-<name>.yaml`.
pub fn request(name: &str) -> EnvironmentRequest {
    example(&format!("environmentrequest-{name}.yaml"))
}
