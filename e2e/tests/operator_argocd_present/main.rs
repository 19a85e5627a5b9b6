//! Argo CD installed before Berth starts (its CRDs; the test plays its controllers,
//! as in `operator_argocd`, which needs Argo CD absent at first and so is another
//! binary): drift remediation asks Argo CD to sync once per episode of drift, and a
//! deleted request waits for Argo CD to prune its environment.

use std::time::Duration;

use berth::api::{
    EnvironmentRequest,
    conditions::{find, types},
    environment_request::{DriftState, Phase, Remediation},
};
use berth_e2e::{argocd::NAMESPACE as ARGOCD, suite::*};
use kube::Api;
use serde::Deserialize;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(60);

/// A committed environment whose objects the test applied as Argo CD's root app would.
struct Environment {
    tenant: String,
    namespace: String,
    root: String,
    quota: String,
}

/// A request of a class with `extra` spec, committed, and every committed object
/// applied with the tracking mark of root app `root` (as Argo CD applies them).
async fn environment(extra: &str) -> Environment {
    cluster().install_argocd_crds().await;
    operator().await;
    let (tenant, class, root) =
        (format!("tn-{}", suffix()), format!("present-{}", suffix()), format!("root-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, extra)).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "web", &tenant, &class, "")).await;
    let committed = wait_phase(&tenant, "web", Phase::Provisioning, PATIENCE).await.status.unwrap_or_default();
    let path = committed.gitops.and_then(|g| g.path).unwrap_or_default();
    let files = files_at_head(&remote(), &path).unwrap_or_else(|| panic!("{path} not committed"));
    kubectl_apply(&format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: {root}, namespace: {ARGOCD}}}
spec:
  project: default
  source: {{repoURL: 'file://{}', path: clusters/in-cluster, targetRevision: main}}
  destination: {{name: in-cluster, namespace: {ARGOCD}}}
",
        remote().display()
    ))
    .await;
    let mut items = Vec::new();
    for text in files.values() {
        for document in serde_yaml::Deserializer::from_str(text) {
            let mut object = Value::deserialize(document).unwrap_or_else(|e| panic!("not YAML: {e}"));
            let group = object["apiVersion"].as_str().and_then(|v| v.rsplit_once('/')).map_or("", |(g, _)| g);
            let id = format!(
                "{root}:{group}/{}:{}/{}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["namespace"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            object["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = json!(id);
            items.push(object);
        }
    }
    let quota = items.iter().find(|o| o["kind"] == "ResourceQuota").map(|o| o["metadata"]["name"].clone());
    kubectl_apply(&json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()).await;
    let namespace = committed.namespace.unwrap_or_default();
    let environment = Environment {
        tenant,
        namespace,
        root,
        quota: quota.and_then(|q| q.as_str().map(str::to_owned)).unwrap_or_default(),
    };
    drift_state(&environment, DriftState::InSync, |_| true).await;
    environment
}

/// Waits until the request's drift is `state` and `also` holds of it; returns its status.
async fn drift_state(
    environment: &Environment,
    state: DriftState,
    also: impl Fn(&berth::api::environment_request::DriftStatus) -> bool,
) -> berth::api::environment_request::EnvironmentRequestStatus {
    let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &environment.tenant);
    wait_for(PATIENCE, &format!("drift {state:?} in {}", environment.tenant), || async {
        let status = api.get_opt("web").await.ok().flatten()?.status?;
        let drift = status.drift.as_ref()?;
        (drift.state == state && also(drift)).then_some(status)
    })
    .await
}

/// Sets `pods` of the environment's quota by hand (the drift).
async fn edit_quota(environment: &Environment, pods: &str) {
    let patch = format!(r#"{{"spec":{{"hard":{{"pods":"{pods}"}}}}}}"#);
    let args =
        ["patch", "resourcequota", &environment.quota, "-n", &environment.namespace, "--type", "merge", "-p", &patch];
    let out = cluster().kubectl("admin", &args, None).await;
    assert!(out.success, "{}", out.stderr);
}

async fn application(name: &str) -> Value {
    let out =
        cluster().kubectl("admin", &["get", "applications.argoproj.io", name, "-n", ARGOCD, "-o", "json"], None).await;
    assert!(out.success, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_default()
}

/// How many events of `reason` the request has.
async fn events(environment: &Environment, reason: &str) -> usize {
    let events = events_about(&environment.tenant, "environmentrequest/web").await;
    events.iter().filter(|e| e["reason"] == reason).count()
}

async fn remediations() -> f64 {
    let telemetry = operator().await.lock().unwrap_or_else(|e| e.into_inner()).telemetry.clone();
    berth_e2e::operator::metric_at(&telemetry, "berth_drift_remediations_total").await.unwrap_or_default()
}

#[tokio::test]
async fn with_remediate_berth_asks_argo_cd_to_sync_once_per_episode_of_drift_and_with_report_never() {
    let remediated = environment("drift: {mode: Remediate}").await;
    let reported = environment("drift: {mode: Report}").await;
    let before = remediations().await;
    edit_quota(&remediated, "99").await;
    edit_quota(&reported, "99").await;

    // Remediate: a sync operation of the drifted quota alone, on the root app that applied it.
    let operation = wait_for(PATIENCE, "a sync operation on the root app", || async {
        let operation = application(&remediated.root).await["operation"].clone();
        (!operation.is_null()).then_some(operation)
    })
    .await;
    let quota =
        json!([{"group": "", "kind": "ResourceQuota", "name": remediated.quota, "namespace": remediated.namespace}]);
    assert_eq!(operation["sync"]["resources"], quota, "{operation}");
    assert_eq!(operation["initiatedBy"]["username"], "berth");
    drift_state(&remediated, DriftState::Drifted, |d| d.remediation == Some(Remediation::Requested)).await;
    // Argo CD takes the operation and finishes it, but the quota stays drifted (here).
    let done = json!({"operation": null, "status": {"operationState":
        {"phase": "Succeeded", "startedAt": "2026-12-01T00:00:00Z", "operation": operation}}});
    patch_application(&remediated.root, &done.to_string()).await;
    // Another hand edit in the same episode: Berth sees it, and does not ask again.
    edit_quota(&remediated, "98").await;
    drift_state(&remediated, DriftState::Drifted, |d| {
        d.differences.iter().any(|x| x.live.as_deref() == Some("\"98\""))
    })
    .await;
    assert!(application(&remediated.root).await["operation"].is_null(), "asked twice in one episode");
    assert_eq!(remediations().await - before, 1.0);
    assert_eq!(events(&remediated, "Remediated").await, 1);

    // Put right (as Argo CD's sync would): the episode ends; the next drift is a new one.
    edit_quota(&remediated, "10").await;
    drift_state(&remediated, DriftState::InSync, |d| d.remediation.is_none()).await;
    edit_quota(&remediated, "97").await;
    wait_for(PATIENCE, "a second episode's sync operation", || async {
        (!application(&remediated.root).await["operation"].is_null()).then_some(())
    })
    .await;
    // The count moves once Berth has the apiserver's answer, after the operation shows.
    wait_for(PATIENCE, "the second remediation counted", || async {
        (remediations().await - before >= 2.0).then_some(())
    })
    .await;
    assert_eq!(remediations().await - before, 2.0);

    // Report: the Warning, and nothing asked of Argo CD.
    let status = drift_state(&reported, DriftState::Drifted, |_| true).await;
    assert_eq!(status.drift.and_then(|d| d.remediation), None);
    wait_for(PATIENCE, "the Drifted warning", || async { (events(&reported, "Drifted").await >= 1).then_some(()) })
        .await;
    assert_eq!(events(&reported, "Drifted").await, 1, "one warning");
    assert!(application(&reported.root).await["operation"].is_null(), "Report must not ask Argo CD to sync");
}

#[tokio::test]
async fn a_deleted_request_keeps_its_finalizer_until_argo_cd_has_pruned_its_environment() {
    let environment = environment("").await;
    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &environment.tenant);
    // What the request's Ready condition says it waits for.
    let waiting_for = |what: String| {
        let requests = requests.clone();
        move || {
            let (requests, what) = (requests.clone(), what.clone());
            async move {
                let status = requests.get_opt("web").await.ok().flatten()?.status?;
                let ready = find(&status.conditions, types::READY)?;
                (ready.reason == "AwaitingPrune" && ready.message.ends_with(&what)).then_some(())
            }
        }
    };
    let out = cluster()
        .kubectl("admin", &["delete", "environmentrequest", "web", "-n", &environment.tenant, "--wait=false"], None)
        .await;
    assert!(out.success, "{}", out.stderr);
    let (app, ns) = (&environment.namespace, &environment.namespace);
    let both = format!(": its Application argocd/{app} and namespace {ns} still exist");
    wait_for(PATIENCE, "the request to wait for Argo CD's prune", waiting_for(both)).await;
    assert_eq!(files_at_head(&remote(), &format!("clusters/in-cluster/tenants/{}/web", environment.tenant)), None);
    assert_eq!(events(&environment, "AwaitingPrune").await, 1);

    // Argo CD prunes: the Application goes first (its resources finalizer done) ...
    patch_application(app, r#"{"metadata":{"finalizers":null}}"#).await;
    let out = cluster().kubectl("admin", &["delete", "applications.argoproj.io", app, "-n", ARGOCD], None).await;
    assert!(out.success, "{}", out.stderr);
    wait_for(
        PATIENCE,
        "the request to wait for the namespace alone",
        waiting_for(format!(": namespace {ns} still exists")),
    )
    .await;
    // ... then the namespace; only then does the request go.
    let out = cluster().kubectl("admin", &["delete", "namespace", ns, "--wait=false"], None).await;
    assert!(out.success, "{}", out.stderr);
    wait_for(PATIENCE, "the request to be gone", || async {
        matches!(requests.get_opt("web").await, Ok(None)).then_some(())
    })
    .await;
}
