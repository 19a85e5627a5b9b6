//! Once Argo CD's CRDs are installed (here after Berth started), a committed
//! environment is Provisioning until its Application reports Synced and Healthy for
//! the source Berth rendered (an old report about another source does not count);
//! Berth mirrors that into status.
//! (Argo CD's controllers are tier 3; here the test plays their part on the
//! Application, which is exactly the API Berth reads.)

use std::time::Duration;

use berth::api::{
    conditions::{find, is_true, reasons, types},
    environment_request::Phase,
};
use berth_e2e::suite::*;

#[tokio::test]
async fn ready_follows_the_applications_sync_and_health_once_argocd_is_installed() {
    cluster().install_crds().await;
    // The operator starts before Argo CD is installed.
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("argo-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 5, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "svc", &tenant, &class, "")).await;

    // Without Argo CD, committed is Ready, and status says nothing reports sync.
    let ready = wait_phase(&tenant, "svc", Phase::Ready, Duration::from_secs(60)).await;
    let conditions = ready.status.unwrap_or_default().conditions;
    assert!(find(&conditions, types::SYNCED).is_some_and(|c| c.reason == reasons::ARGOCD_NOT_INSTALLED));

    // Argo CD is installed: without a restart, the request now waits for its Application,
    // which Argo CD has not created yet.
    cluster().install_argocd_crds().await;
    let provisioning = wait_phase(&tenant, "svc", Phase::Provisioning, Duration::from_secs(30)).await;
    let status = provisioning.status.unwrap_or_default();
    assert!(is_true(&status.conditions, types::COMMITTED));
    assert_eq!(status.sync.as_ref().and_then(|s| s.health.as_deref()), Some("Missing"));
    let env_ns = status.namespace.unwrap_or_default();

    // The root app applies the committed Application; Argo CD then syncs it.
    let path = status.gitops.and_then(|g| g.path).unwrap_or_default();
    let files = files_at_head(&remote(), &path).unwrap_or_else(|| panic!("{path} not committed"));
    kubectl_apply(&files["application.yaml"]).await;
    // Synced and Healthy, but about another source than the one Berth rendered (the old
    // report of a changed Application): not Ready, and status says what it waits for.
    let stale = r#"{"status":{"sync":{"status":"Synced","revision":"0123abcd",
        "comparedTo":{"source":{"repoURL":"https://git.example.com/web.git","path":"deploy","targetRevision":"v0"},"destination":{"name":"in-cluster"}}},
        "health":{"status":"Healthy"}}}"#;
    patch_application(&env_ns, stale).await;
    let api: kube::Api<berth::api::EnvironmentRequest> =
        kube::Api::namespaced(cluster().client("admin").await, &tenant);
    let pending = wait_for(Duration::from_secs(30), "Berth to read the stale report", || {
        let api = api.clone();
        async move {
            let request = api.get_opt("svc").await.ok().flatten()?;
            let status = request.status.clone()?;
            (status.sync.as_ref()?.revision.as_deref() == Some("0123abcd")).then_some(status)
        }
    })
    .await;
    assert_eq!(pending.phase, Some(Phase::Provisioning), "an old Healthy must not make the request Ready");
    let synced_condition = find(&pending.conditions, types::SYNCED).expect("Synced condition");
    assert_eq!(synced_condition.reason, reasons::SYNC_PENDING);
    assert!(synced_condition.message.contains("deploy@v1") && synced_condition.message.contains("deploy@v0"));

    let synced = r#"{"status":{"sync":{"status":"Synced","revision":"0123abcd",
        "comparedTo":{"source":{"repoURL":"https://git.example.com/web.git","path":"deploy","targetRevision":"v1"},"destination":{"name":"in-cluster"}}},
        "health":{"status":"Healthy"},
        "operationState":{"phase":"Succeeded","startedAt":"2026-12-01T00:00:00Z",
            "operation":{"sync":{"revision":"0123abcd"}},"syncResult":{"revision":"0123abcd"}}}}"#;
    patch_application(&env_ns, synced).await;

    let ready = wait_phase(&tenant, "svc", Phase::Ready, Duration::from_secs(30)).await;
    let status = ready.status.unwrap_or_default();
    let sync = status.sync.clone().unwrap_or_default();
    assert_eq!((sync.status.as_deref(), sync.health.as_deref()), (Some("Synced"), Some("Healthy")));
    assert_eq!(sync.revision.as_deref(), Some("0123abcd"));
    assert_eq!(sync.compared_to.map(|c| c.target_revision).as_deref(), Some("v1"));
    assert_eq!(sync.operation.and_then(|o| o.phase).as_deref(), Some("Succeeded"));
    assert!(is_true(&status.conditions, types::SYNCED));

    // Degraded again: Ready goes back to False with Argo CD's words.
    let degraded = r#"{"status":{"health":{"status":"Degraded"}}}"#;
    patch_application(&env_ns, degraded).await;
    let back = wait_phase(&tenant, "svc", Phase::Provisioning, Duration::from_secs(30)).await;
    let conditions = back.status.unwrap_or_default().conditions;
    assert!(find(&conditions, types::SYNCED).is_some_and(|c| c.status == "False" && c.message.contains("Degraded")));
}
