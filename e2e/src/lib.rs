//! Berth's test harness: a real Kubernetes control plane on loopback (tier 2 of
//! DESIGN.md "Test tiers"), the `berth-controlplane` command that runs one for a
//! person or a test binary, and helpers the e2e suites share.

pub mod controlplane;
pub mod fixture;
pub mod pki;
pub mod users;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use controlplane::ClusterInfo;

/// The repository root (holds `crds/` and `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A kube client authenticated as one of the test users (`admin`, `alice`, `bob`).
pub async fn client_for(info: &ClusterInfo, user: &str) -> Result<kube::Client> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&info.kubeconfig).context("reading the kubeconfig")?;
    let options = kube::config::KubeConfigOptions {
        context: Some(user.to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| format!("loading the kubeconfig context {user}"))?;
    kube::Client::try_from(config).context("building a kube client")
}
