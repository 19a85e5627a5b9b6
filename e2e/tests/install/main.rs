//! Berth's install manifests (`config/` and `charts/berth`) against a real
//! apiserver: they are accepted as shipped, the chart and the kustomize bases agree
//! (same RBAC, same webhooks, both what Berth serves), and `berth run` does its whole
//! job as the ServiceAccount they create with nothing but the RBAC they grant — while
//! that ServiceAccount cannot do what Berth never does; and the roles they ship for
//! people let each persona do what it should and nothing more.

mod apply;
mod policy;
mod rendering;
mod roles;
mod service_account;

use std::{path::PathBuf, time::Duration};

use berth_e2e::{fixture::Cluster, install};
use serde_json::Value;
use tokio::sync::OnceCell;

pub fn cluster() -> &'static Cluster {
    Cluster::shared(env!("CARGO_BIN_EXE_berth-controlplane"))
}

/// kubectl from the control-plane build (its kustomize renders `config/`).
pub fn kubectl() -> PathBuf {
    let bin = berth_e2e::controlplane::ensure_binaries().unwrap_or_else(|e| panic!("{e:#}"));
    bin.join("kubectl")
}

/// `config/default` rendered by kubectl's kustomize.
pub fn config_default() -> Vec<Value> {
    let yaml = install::kustomize(&kubectl(), "config/default").unwrap_or_else(|e| panic!("{e:#}"));
    install::documents(&yaml).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The chart rendered as release `berth` in `berth-system`, the names `config/` uses.
pub fn chart(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--set", "gitops.remote=https://git.example.com/platform/gitops.git"];
    all.extend_from_slice(args);
    let yaml = install::helm_template("berth", "berth-system", &all).unwrap_or_else(|e| panic!("{e:#}"));
    install::documents(&yaml).unwrap_or_else(|e| panic!("{e:#}"))
}

/// What `kubectl apply --server-side -k config/default` printed.
pub struct Installed {
    pub stdout: String,
    pub stderr: String,
}

static INSTALLED: OnceCell<Installed> = OnceCell::const_new();

/// Installs as the README says, once per test binary: Berth's CRDs, then
/// `config/default`. cert-manager's own CRDs go first (its controllers do not run
/// here: nothing issues the certificate, so no Secret appears and, with no kubelet
/// either, the Deployment's pod stays Pending — Berth runs outside, see
/// service_account.rs). Argo CD is not installed yet (service_account.rs installs
/// it later), so its namespace is created first, as the README says for that case:
/// Berth's Role for watching Applications lives there.
pub async fn installed() -> &'static Installed {
    INSTALLED
        .get_or_init(|| async {
            let cluster = cluster();
            cluster.install_crds().await;
            let crds = install::certmanager_crds_dir().unwrap_or_else(|e| panic!("{e:#}"));
            let files: Vec<String> = ["cert-manager.io_issuers.yaml", "cert-manager.io_certificates.yaml"]
                .iter()
                .map(|f| crds.join(f).display().to_string())
                .collect();
            let mut apply = vec!["apply", "--server-side"];
            let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
            for file in &files {
                apply.extend(["-f", file]);
                wait.extend(["-f", file]);
            }
            let out = cluster.kubectl("admin", &apply, None).await;
            assert!(out.success, "cert-manager's CRDs: {}", out.stderr);
            wait_established(&wait).await;

            let created = cluster.kubectl("admin", &["create", "namespace", "argocd"], None).await;
            assert!(created.success || created.stderr.contains("AlreadyExists"), "{}", created.stderr);

            let root = berth_e2e::repo_root();
            let config = root.join("config/default");
            let out =
                cluster.kubectl("admin", &["apply", "--server-side", "-k", &config.display().to_string()], None).await;
            assert!(out.success, "kubectl apply --server-side -k config/default was refused:\n{}", out.stderr);
            Installed { stdout: out.stdout, stderr: out.stderr }
        })
        .await
}

/// What `kubectl auth can-i <args>` answers for `user` in `groups`, asked by the
/// admin impersonating them: the apiserver's own authorizer, with the RBAC installed.
pub async fn can(user: &str, groups: &[&str], args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let as_user = format!("--as={user}");
    all.push(&as_user);
    let as_groups: Vec<String> = groups.iter().map(|g| format!("--as-group={g}")).collect();
    all.extend(as_groups.iter().map(String::as_str));
    let out = cluster().kubectl("admin", &all, None).await;
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("kubectl auth can-i {args:?} as {user}: {}{}", out.stdout, out.stderr),
    }
}

/// `kubectl wait --for=condition=Established`, asking again while a CRD created a
/// moment ago has no conditions yet.
async fn wait_established(args: &[&str]) {
    for _ in 0..20 {
        let out = cluster().kubectl("admin", args, None).await;
        if out.success {
            return;
        }
        assert!(out.stderr.contains("accessor error"), "CRDs not Established: {}", out.stderr);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("CRDs not Established after 20 tries");
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `context()`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, context: impl Fn() -> String, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
