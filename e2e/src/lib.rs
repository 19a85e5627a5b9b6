//! Berth's test harness: a real Kubernetes control plane on loopback (the e2e tier of
//! the README's "Developing": `just test` runs it, `just unit` does not), the
//! `berth-controlplane` command that runs one for a person or a test binary, and
//! helpers the e2e suites share ([`suite`]).

pub mod argocd;
pub mod blackhole;
pub mod controlplane;
pub mod fake_argocd;
pub mod fixture;
pub mod install;
pub mod measure;
pub mod operator;
pub mod pki;
pub mod policy;
pub mod prometheus;
pub mod remote;
pub mod rollout;
pub mod ssh_remote;
pub mod suite;
pub mod users;
pub mod webhook;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use controlplane::ClusterInfo;

/// The repository root (holds `crds/` and `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The binary `name` of this workspace, built by cargo into the folder of the running
/// test or bench (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`).
pub fn built_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    let profile_dir = exe.parent().and_then(Path::parent).context("test binary outside target/")?;
    let binary = profile_dir.join(name);
    if !binary.is_file() {
        anyhow::bail!("{} not found", binary.display());
    }
    Ok(binary)
}

/// Runs one of the `e2e/controlplane` scripts, which print a path on stdout (their
/// progress goes to stderr, shown as it happens), and returns that path.
pub(crate) fn path_printed_by(script: &Path, args: &[&str]) -> Result<PathBuf> {
    let output = std::process::Command::new(script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        anyhow::bail!("{} failed ({}); see its output above", script.display(), output.status);
    }
    let printed =
        String::from_utf8(output.stdout).with_context(|| format!("{} printed a non-UTF-8 path", script.display()))?;
    Ok(PathBuf::from(printed.trim()))
}

/// A kube client authenticated as one of the test users (`admin`, `alice`, `bob`).
pub async fn client_for(info: &ClusterInfo, user: &str) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&info.kubeconfig).context("reading the kubeconfig")?;
    let options = kube::config::KubeConfigOptions { context: Some(user.to_owned()), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| format!("loading the kubeconfig context {user}"))?;
    kube::Client::try_from(config).context("building a kube client")
}
