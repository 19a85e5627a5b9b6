//! Tier 3: the real loop. The Berth operator commits an environment to its GitOps
//! remote; a real Argo CD (application controller and repo-server, built from its
//! Go module, see `berth_e2e::argocd`) applies that commit through an app-of-apps
//! root Application, as a platform team sets it up; Berth reports what Argo CD
//! reports. Nothing here writes an Application's status.

mod drift;
mod prune;
mod revision;
mod rollout;

use std::{collections::BTreeSet, path::Path, sync::OnceLock, time::Duration};

use berth::api::{
    EnvironmentRequest,
    environment_request::{EnvironmentRequestStatus, Phase},
};
use berth_e2e::{
    argocd::{AppRevision, NAMESPACE as ARGOCD, root_application},
    fixture::Cluster,
    suite::*,
};
use kube::Api;
use serde::Deserialize;
use serde_json::Value;

/// How long Argo CD may take to notice a commit: it looks at git every 10 s here
/// (`berth_e2e::argocd`), then syncs; the rest is margin for a loaded 2-core machine.
const ARGOCD_PATIENCE: Duration = Duration::from_secs(180);

fn cluster_with_argocd() -> &'static Cluster {
    Cluster::shared_with_argocd(env!("CARGO_BIN_EXE_berth-controlplane"))
}

/// One test at a time: they share Argo CD's root app, and each asserts which of its
/// own commits Argo CD synced.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The test's turn, with the control plane, Argo CD and Berth running.
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    let turn = SERIAL.lock().await;
    cluster_with_argocd();
    operator().await;
    turn
}

static ROOT: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// The root app over Berth's remote, created by the first test that needs it.
async fn root_app() -> &'static str {
    ROOT.get_or_init(|| async {
        let root = format!("berth-root-{}", suffix());
        // Nothing of the platform team's in the folder: the last environment's removal
        // leaves Berth's note there (src/gitops/tree.rs), and that is what gets it pruned.
        kubectl_apply(&root_application(&root, &remote())).await;
        root
    })
    .await
}

/// Spec fields of a class whose environments Argo CD syncs and prunes by itself.
const SYNCED_BY_ARGOCD: &str = "limitRange: {defaultRequest: {cpu: 100m}, default: {cpu: 500m}}
  argocd: {project: default, syncPolicy: {automated: true, prune: true, selfHeal: false}}";

/// The tags of [`app_repository`]: v3 holds a Deployment Argo CD reports Degraded.
const REVISIONS: [AppRevision<'static>; 3] = [
    AppRevision { tag: "v1", greeting: "hello", stuck: false },
    AppRevision { tag: "v2", greeting: "hello again", stuck: false },
    AppRevision { tag: "v3", greeting: "hello stuck", stuck: true },
];

/// The app repository of this test binary (see [`berth_e2e::argocd::app_repository_with`]),
/// with [`REVISIONS`]: its path and the tagged commits.
fn app_repository() -> &'static (std::path::PathBuf, Vec<String>) {
    static REPO: OnceLock<(std::path::PathBuf, Vec<String>)> = OnceLock::new();
    REPO.get_or_init(|| {
        // In the control plane's folder, which goes with it.
        let path = cluster_with_argocd().info.dir.join("app-web.git");
        let commits = berth_e2e::argocd::app_repository_with(&path, &REVISIONS);
        (path, commits)
    })
}

/// A request `name` of `class` in `tenant` for the app at `revision`.
fn request_for_app(tenant: &str, name: &str, class: &str, revision: &str) -> String {
    berth_e2e::argocd::request_for_app(tenant, name, class, &app_repository().0, revision)
}

/// A tenant, a class Argo CD syncs with more spec fields `extra` (a YAML fragment),
/// and request `name` at `v1`, Ready (Argo CD synced it); returns the tenant and the
/// request's status.
async fn provisioned(extra: &str, name: &str) -> (String, EnvironmentRequestStatus) {
    root_app().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("real-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 5, &format!("{SYNCED_BY_ARGOCD}\n  {extra}"))).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_for_app(&tenant, name, &class, "v1")).await;
    let ready = wait_phase(&tenant, name, Phase::Ready, ARGOCD_PATIENCE).await;
    (tenant, ready.status.unwrap_or_default())
}

/// Deletes the request and waits until it is gone, which Berth lets happen only once
/// Argo CD pruned its environment: then its namespace and Application are gone.
async fn delete_and_see_it_pruned(tenant: &str, name: &str, env_ns: &str) {
    let out =
        cluster().kubectl("admin", &["delete", "environmentrequest", name, "-n", tenant, "--wait=false"], None).await;
    assert!(out.success, "{}", out.stderr);
    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, tenant);
    wait_for(ARGOCD_PATIENCE, &format!("{tenant}/{name} to be gone"), || {
        let requests = requests.clone();
        async move { matches!(requests.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await;
    assert_eq!(
        get("namespace", None, env_ns).await.map(|n| n["status"].clone()),
        None,
        "the request went before its namespace"
    );
    assert_eq!(get("applications.argoproj.io", Some(ARGOCD), env_ns).await.map(|a| a["metadata"].clone()), None);
}

/// An object as admin reads it with kubectl; `None` while it does not exist.
async fn get(kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if let Some(namespace) = namespace {
        args.extend(["-n", namespace]);
    }
    let out = cluster().kubectl("admin", &args, None).await;
    if !out.success {
        assert!(out.stderr.contains("NotFound"), "kubectl get {kind} {name}: {}", out.stderr);
        return None;
    }
    Some(serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("kubectl printed no JSON ({e}): {}", out.stdout)))
}

/// (sync status, health, revision) Argo CD reports on an Application.
fn reported(app: &Value) -> (String, String, String) {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let status = &app["status"];
    (text(&status["sync"]["status"]), text(&status["health"]["status"]), text(&status["sync"]["revision"]))
}

/// Head of `main` on the GitOps remote.
fn remote_head(remote: &Path) -> String {
    let repo = git2::Repository::open_bare(remote).unwrap_or_else(|e| panic!("cannot open the remote: {e}"));
    let head = repo.find_reference("refs/heads/main").and_then(|r| r.peel_to_commit());
    head.unwrap_or_else(|e| panic!("the remote has no main: {e}")).id().to_string()
}

/// (kind, namespace, name) of every object in the files Berth committed under `path`.
fn committed_objects(remote: &Path, path: &str) -> Vec<(String, Option<String>, String)> {
    let files = files_at_head(remote, path).unwrap_or_else(|| panic!("nothing committed under {path}"));
    let mut objects = Vec::new();
    for (file, text) in &files {
        for document in serde_yaml::Deserializer::from_str(text) {
            let object = Value::deserialize(document).unwrap_or_else(|e| panic!("{path}/{file} is not YAML: {e}"));
            let field = |value: &Value| value.as_str().map(str::to_owned);
            let kind = field(&object["kind"]).unwrap_or_default();
            let name = field(&object["metadata"]["name"]).unwrap_or_default();
            objects.push((kind, field(&object["metadata"]["namespace"]), name));
        }
    }
    objects
}

/// Berth's labels on an object Argo CD applied, and Argo CD's mark that it did.
fn assert_applied_by_argocd(object: &Value, what: &str, tenant: &str, env_ns: &str, root: &str) {
    let metadata = &object["metadata"];
    let label = |key: &str| metadata["labels"][key].as_str().unwrap_or_default().to_owned();
    // The labels as users select by them (spelled out: they are Berth's contract, and
    // the module holding their constants is moving).
    assert_eq!(label("berth.dev/tenant"), tenant, "{what}: {metadata}");
    assert_eq!(label("berth.dev/environment"), env_ns, "{what}: {metadata}");
    assert_eq!(label("app.kubernetes.io/managed-by"), "berth", "{what}: {metadata}");
    // Argo CD (v3: annotation tracking) marks what an Application applied as its own.
    let tracking = metadata["annotations"]["argocd.argoproj.io/tracking-id"].as_str().unwrap_or_default();
    assert!(tracking.starts_with(&format!("{root}:")), "{what} was not applied by {root}: {metadata}");
}

#[tokio::test]
async fn argocd_applies_what_berth_commits_and_prunes_it_when_the_request_goes() {
    let _turn = turn().await;
    let remote = remote();
    let root = root_app().await.to_owned();
    let app_commit = app_repository().1[0].clone();
    let (tenant, class) = (format!("tn-{}", suffix()), format!("real-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 5, SYNCED_BY_ARGOCD)).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_for_app(&tenant, "preview", &class, "v1")).await;

    // Berth commits; Argo CD applies the commit; Berth reports Ready from Argo CD's status.
    let ready = wait_phase(&tenant, "preview", Phase::Ready, ARGOCD_PATIENCE).await;
    let status = ready.status.unwrap_or_default();
    let env_ns = status.namespace.clone().unwrap_or_default();
    let berth_commit = status.gitops.as_ref().and_then(|g| g.commit.clone()).unwrap_or_default();
    assert_eq!(berth_commit, remote_head(&remote), "status names the commit Berth pushed");
    // Berth asked the root app to refresh after its push instead of waiting for a poll.
    let telemetry = operator().await.lock().unwrap_or_else(|e| e.into_inner()).telemetry.clone();
    let refreshes = berth_e2e::operator::metric_at(&telemetry, "berth_argocd_refreshes_total").await;
    assert!(refreshes.is_some_and(|n| n >= 1.0), "no refresh asked of Argo CD: {refreshes:?}");

    // The root app synced Berth's very commit, and applied each object Berth rendered.
    let root_app = get("applications.argoproj.io", Some(ARGOCD), &root).await.unwrap_or_default();
    assert_eq!(reported(&root_app), ("Synced".into(), "Healthy".into(), berth_commit.clone()), "{root_app}");
    let path = status.gitops.as_ref().and_then(|g| g.path.clone()).unwrap_or_default();
    let committed = committed_objects(&remote, &path);
    let kinds: BTreeSet<&str> = committed.iter().map(|(kind, _, _)| kind.as_str()).collect();
    let expected = ["Application", "LimitRange", "Namespace", "NetworkPolicy", "ResourceQuota", "RoleBinding"];
    assert_eq!(kinds, BTreeSet::from(expected), "what Berth committed under {path}");
    for (kind, namespace, name) in &committed {
        let object = get(kind, namespace.as_deref(), name).await;
        let object = object.unwrap_or_else(|| panic!("Argo CD did not apply {kind} {name} from {path}"));
        assert_applied_by_argocd(&object, kind, &tenant, &env_ns, &root);
    }
    let bindings = cluster().kubectl("admin", &["get", "rolebindings", "-n", &env_ns, "-o", "json"], None).await;
    let bindings: Value = serde_json::from_str(&bindings.stdout).unwrap_or_default();
    let subjects: Vec<&str> = bindings["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["subjects"].as_array().into_iter().flatten())
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(subjects.contains(&"alice") && subjects.contains(&"team-payments"), "subjects: {subjects:?}");

    // The environment's Application synced the app at the tag's commit, which Berth mirrors.
    let env_app = get("applications.argoproj.io", Some(ARGOCD), &env_ns).await.unwrap_or_default();
    assert_eq!(reported(&env_app), ("Synced".into(), "Healthy".into(), app_commit.clone()), "{env_app}");
    let sync = status.sync.clone().unwrap_or_default();
    assert_eq!(
        (sync.status.as_deref(), sync.health.as_deref(), sync.revision.as_deref()),
        (Some("Synced"), Some("Healthy"), Some(app_commit.as_str()))
    );
    let settings = get("configmap", Some(&env_ns), "web-settings").await.unwrap_or_default();
    assert_eq!(settings["data"]["greeting"], "hello", "the app's ConfigMap: {settings}");

    // Deleted: Berth removes the folder, Argo CD prunes the environment, the namespace goes.
    let out = cluster()
        .kubectl("admin", &["delete", "environmentrequest", "preview", "-n", &tenant, "--wait=false"], None)
        .await;
    assert!(out.success, "{}", out.stderr);
    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    wait_for(ARGOCD_PATIENCE, "the request to be gone", || {
        let requests = requests.clone();
        async move { matches!(requests.get_opt("preview").await, Ok(None)).then_some(()) }
    })
    .await;
    assert!(files_at_head(&remote, &path).is_none(), "{path} is still committed");
    // The cluster's folder stays, with Berth's note alone: the root app's path exists.
    let cluster_folder = files_at_head(&remote, "clusters/in-cluster").unwrap_or_default();
    assert_eq!(cluster_folder.keys().collect::<Vec<_>>(), ["README.md"], "{cluster_folder:?}");
    let deadline = std::time::Instant::now() + ARGOCD_PATIENCE;
    loop {
        let namespace = get("namespace", None, &env_ns).await;
        let env_app = get("applications.argoproj.io", Some(ARGOCD), &env_ns).await;
        if namespace.is_none() && env_app.is_none() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let root_app = get("applications.argoproj.io", Some(ARGOCD), &root).await;
            panic!(
                "Argo CD did not prune {env_ns} in {ARGOCD_PATIENCE:?}\nnamespace: {}\napplication: {}\nroot: {}",
                namespace.map(|n| n["status"].clone()).unwrap_or_default(),
                env_app.map(|a| serde_json::json!([a["metadata"], a["status"]])).unwrap_or_default(),
                root_app.map(|a| a["status"].clone()).unwrap_or_default(),
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let root_app = get("applications.argoproj.io", Some(ARGOCD), &root).await.unwrap_or_default();
    assert_eq!(reported(&root_app).2, remote_head(&remote), "the root app synced the deletion commit: {root_app}");
}
