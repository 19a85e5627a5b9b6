//! What the operator e2e suites (and the operator benchmark) share: one control plane
//! and one operator per test binary, waiting for the cluster to get somewhere, and the
//! YAML of the classes, tenants and requests they create.

use std::{
    future::Future,
    path::Path,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use berth::api::{EnvironmentRequest, environment_request::Phase};
use kube::Api;
use rand::{Rng, distr::Alphanumeric};

use crate::{fixture::Cluster, operator::Operator};

/// The control plane of this test binary, started on first use.
pub fn cluster() -> &'static Cluster {
    Cluster::shared_next_to_test()
}

pub static OPERATOR: OnceLock<Mutex<Operator>> = OnceLock::new();

/// The operator shared by this binary's tests (started once, after the CRDs).
pub async fn operator() -> &'static Mutex<Operator> {
    let cluster = cluster();
    cluster.install_crds().await;
    OPERATOR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berth-operator-e2e-{}", std::process::id()));
        let operator = Operator::start(&cluster.info, &dir, &dir.join("remote.git"))
            .unwrap_or_else(|e| panic!("operator did not start: {e:#}"));
        Mutex::new(operator)
    })
}

pub fn remote() -> std::path::PathBuf {
    OPERATOR.get().map(|o| o.lock().unwrap_or_else(|e| e.into_inner()).remote.clone()).unwrap_or_default()
}

pub fn operator_log() -> String {
    OPERATOR.get().map(|o| o.lock().unwrap_or_else(|e| e.into_inner()).log_text()).unwrap_or_default()
}

/// A short random suffix so tests' cluster-scoped objects do not collide.
pub fn suffix() -> String {
    rand::rng().sample_iter(&Alphanumeric).take(5).map(char::from).collect::<String>().to_lowercase()
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with the operator's log.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            let log = operator_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!("timed out after {timeout:?} waiting for {what}; operator log (newest first):\n{}", tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The events about `object` (`kind/name`) in `namespace` as kubectl lists them:
/// core/v1 Events, so Berth's events.k8s.io `note` is their `message`. A failed kubectl
/// call (a slow apiserver) is tried again, never read as no events; kubectl says "no
/// events" by succeeding with nothing on stdout.
pub async fn events_about(namespace: &str, object: &str) -> Vec<serde_json::Value> {
    let args = ["events", "-n", namespace, "--for", object, "-o", "json"];
    wait_for(Duration::from_secs(30), &format!("kubectl events --for {object} to answer"), || async {
        let out = cluster().kubectl("admin", &args, None).await;
        if out.success && out.stdout.trim().is_empty() {
            return Some(Vec::new());
        }
        let list: serde_json::Value = serde_json::from_str(&out.stdout).ok().filter(|_| out.success)?;
        Some(list["items"].as_array().cloned().unwrap_or_default())
    })
    .await
}

/// Waits until the request reaches `phase` and returns it.
pub async fn wait_phase(namespace: &str, name: &str, phase: Phase, timeout: Duration) -> EnvironmentRequest {
    let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, namespace);
    wait_for(timeout, &format!("{namespace}/{name} to be {phase:?}"), || {
        let api = api.clone();
        async move {
            let request = api.get_opt(name).await.ok().flatten()?;
            (request.status.as_ref()?.phase == Some(phase)).then_some(request)
        }
    })
    .await
}

pub use crate::remote::files_at_head;

/// Commit ids on `main` from the head back to (excluding) `since`.
pub fn commits_since(remote: &Path, since: &str) -> Vec<String> {
    let Ok(repo) = git2::Repository::open_bare(remote) else {
        return Vec::new();
    };
    let Ok(mut walk) = repo.revwalk() else {
        return Vec::new();
    };
    let _ = walk.push_ref("refs/heads/main");
    if let Ok(oid) = git2::Oid::from_str(since) {
        let _ = walk.hide(oid);
    }
    walk.filter_map(Result::ok).map(|oid| oid.to_string()).collect()
}

/// Merge-patches Argo CD's Application `name` as admin: the tests play Argo CD's
/// application controller (its status, its operation) this way.
pub async fn patch_application(name: &str, patch: &str) {
    let args = ["patch", "applications.argoproj.io", name, "-n", "argocd", "--type", "merge", "-p", patch];
    let patched = cluster().kubectl("admin", &args, None).await;
    assert!(patched.success, "{}", patched.stderr);
}

/// Applies YAML as admin and panics with kubectl's message when refused.
pub async fn kubectl_apply(yaml: &str) {
    let out = cluster().kubectl("admin", &["apply", "-f", "-"], Some(yaml)).await;
    assert!(out.success, "kubectl apply refused:\n{}\n{yaml}", out.stderr);
}

/// A class `name` costing `cost` a month with more spec fields, e.g. its TTL policy
/// (a YAML fragment; lines after the first indented by two spaces).
pub fn class_yaml(name: &str, cost: u32, extra: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: EnvironmentClass
metadata: {{name: {name}}}
spec:
  quota: {{requests.cpu: '2', pods: '10'}}
  networkPolicy: AllowSameNamespace
  estimatedMonthlyCostUSD: {cost}
  {extra}
"
    )
}

/// A tenant `name` (request namespace `name`) allowed `classes`, with a budget fragment.
pub fn tenant_yaml(name: &str, classes: &[&str], budget: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: Tenant
metadata: {{name: {name}}}
spec:
  owners: [{{kind: User, name: alice}}]
  members: [{{kind: Group, name: team-payments}}]
  allowedClasses: {classes:?}
  requestNamespace: {name}
  budget: {budget}
"
    )
}

pub fn request_yaml(namespace: &str, name: &str, tenant: &str, class: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: EnvironmentRequest
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  tenant: {tenant}
  class: {class}
  app: {{name: web, repoURL: https://git.example.com/web.git, path: deploy, revision: v1}}
  {extra}
"
    )
}

/// A fresh class `<prefix>-<suffix>` and a tenant allowed it with `budget` (a YAML
/// fragment), once the tenant's request namespace exists; returns (tenant, class).
pub async fn tenant_with_class(prefix: &str, budget: &str) -> (String, String) {
    let (tenant, class) = (format!("tn-{}", suffix()), format!("{prefix}-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], budget)).await;
    wait_tenant_namespace(&tenant).await;
    (tenant, class)
}

/// Waits for the tenant's request namespace (the Tenant controller creates it).
pub async fn wait_tenant_namespace(tenant: &str) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster().client("admin").await);
    wait_for(Duration::from_secs(30), &format!("namespace of tenant {tenant}"), || {
        let namespaces = namespaces.clone();
        async move {
            let ns = namespaces.get_opt(tenant).await.ok().flatten()?;
            (ns.metadata.labels?.get("berth.dev/tenant")? == tenant).then_some(())
        }
    })
    .await;
}

/// Waits until the tenant's members can work in its namespace (the Tenant controller
/// binds them right after labelling it).
pub async fn wait_tenant_members(tenant: &str) {
    wait_tenant_namespace(tenant).await;
    wait_for(Duration::from_secs(30), &format!("alice's RoleBinding in {tenant}"), || async move {
        let out =
            cluster().kubectl("alice", &["auth", "can-i", "create", "environmentrequests", "-n", tenant], None).await;
        out.success.then_some(())
    })
    .await;
}

/// Writes `content` beside `path` and renames it over `path`: the atomic swap a
/// kubelet makes when a Secret volume changes.
pub fn swap_file(path: &Path, content: &[u8]) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, content).expect("write the new file");
    std::fs::rename(&staged, path).expect("swap it in");
}

/// A fresh folder for a suite that runs its own operator (`berth-<name>-e2e-<pid>`
/// under the temporary folder), with an empty bare GitOps remote `remote.git` in it
/// (branch `main`), once the CRDs are installed: the folder and the remote.
pub async fn own_remote(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    cluster().install_crds().await;
    let dir = std::env::temp_dir().join(format!("berth-{name}-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder");
    let remote = dir.join("remote.git");
    git2::Repository::init_opts(&remote, git2::RepositoryInitOptions::new().bare(true).initial_head("main"))
        .expect("the bare remote");
    (dir, remote)
}
