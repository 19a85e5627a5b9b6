//! Drift: apply the committed folder (standing in for Argo CD at this tier), edit a
//! live object, and watch status report the field and clear when it is fixed.

use std::time::Duration;

use berth::api::{
    EnvironmentRequest,
    conditions::{find, types},
    environment_request::{DriftState, DriftStatus, Phase},
};
use kube::Api;

use crate::*;

async fn wait_drift(namespace: &str, name: &str, state: DriftState) -> DriftStatus {
    let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, namespace);
    wait_for(Duration::from_secs(60), &format!("drift state {state:?}"), || {
        let api = api.clone();
        async move {
            let drift = api.get(name).await.ok()?.status?.drift?;
            (drift.state == state).then_some(drift)
        }
    })
    .await
}

/// Edits the live quota by hand, as a person with kubectl would.
async fn set_live_pods(namespace: &str, pods: &str) {
    let patch = format!(r#"{{"spec":{{"hard":{{"pods":"{pods}"}}}}}}"#);
    let args = ["patch", "resourcequota", "berth-quota", "-n", namespace, "--type", "merge", "-p", &patch];
    let out = cluster().kubectl("admin", &args, None).await;
    assert!(out.success, "{}", out.stderr);
}

#[tokio::test]
async fn editing_a_live_quota_is_reported_as_drift_and_fixing_it_clears_it() {
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("dr-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 10, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "app", &tenant, &class, "")).await;
    let ready = wait_phase(&tenant, "app", Phase::Ready, Duration::from_secs(60)).await;
    let status = ready.status.unwrap_or_default();
    let env_ns = status.namespace.clone().unwrap_or_default();
    let path = status.gitops.and_then(|g| g.path).unwrap_or_default();

    // Nothing applied yet: the rendered objects are missing, which is drift.
    let missing = wait_drift(&tenant, "app", DriftState::Drifted).await;
    assert!(missing.differences.iter().any(|d| d.resource.starts_with("ResourceQuota/") && d.live.is_none()));

    // Apply what was committed, as Argo CD would (the Application needs Argo CD itself).
    let files = files_at_head(&remote(), &path).unwrap_or_else(|| panic!("{path} not committed"));
    kubectl_apply(&files["namespace.yaml"]).await;
    let rest: Vec<&str> = files
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "namespace.yaml" | "application.yaml"))
        .map(|(_, y)| y.as_str())
        .collect();
    kubectl_apply(&rest.join("---\n")).await;
    let in_sync = wait_drift(&tenant, "app", DriftState::InSync).await;
    assert!(in_sync.differences.is_empty());

    set_live_pods(&env_ns, "99").await;
    let drifted = wait_drift(&tenant, "app", DriftState::Drifted).await;
    let difference =
        drifted.differences.iter().find(|d| d.field == "spec.hard.pods").unwrap_or_else(|| panic!("{drifted:?}"));
    assert_eq!(difference.resource, format!("ResourceQuota/{env_ns}/berth-quota"));
    assert_eq!((difference.desired.as_deref(), difference.live.as_deref()), (Some("\"10\""), Some("\"99\"")));
    let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    let conditions = api.get("app").await.ok().and_then(|r| r.status).map(|s| s.conditions).unwrap_or_default();
    assert_eq!(find(&conditions, types::IN_SYNC).map(|c| c.status.as_str()), Some("False"));
    // A hand edit of objects that matched the commit is a Warning event, once.
    let events = wait_for(Duration::from_secs(30), "a Drifted event", || async {
        let args = ["events", "-n", &tenant, "--for", "environmentrequest/app", "--types", "Warning"];
        let out = cluster().kubectl("admin", &args, None).await;
        out.stdout.contains("Drifted").then_some(out.stdout)
    })
    .await;
    assert!(events.contains("spec.hard.pods"), "{events}");

    set_live_pods(&env_ns, "10").await;
    wait_drift(&tenant, "app", DriftState::InSync).await;
}
