//! Argo CD prunes what leaves git: at expiry, and on deletion even when it was down
//! meanwhile (Berth keeps the request until it has).

use berth::api::{
    EnvironmentRequest,
    conditions::{find, types},
    environment_request::Phase,
};
use kube::Api;

use super::*;

#[tokio::test]
async fn at_expiry_argo_cd_prunes_the_environment() {
    let _turn = turn().await;
    // Ready first, however long Argo CD takes here; then its owner cuts its life short
    // (a TTL counts from creation, so it is over at once). The timer that fires at a
    // future expiry is tier 2's (operator lifecycle).
    let (tenant, status) = provisioned("ttl: {default: 1h, max: 1h}", "brief").await;
    let env_ns = status.namespace.unwrap_or_default();
    assert!(get("namespace", None, &env_ns).await.is_some(), "Argo CD applied {env_ns}");
    let args =
        ["patch", "environmentrequest", "brief", "-n", &tenant, "--type", "merge", "-p", r#"{"spec":{"ttl":"1s"}}"#];
    let out = cluster().kubectl("admin", &args, None).await;
    assert!(out.success, "{}", out.stderr);
    wait_phase(&tenant, "brief", Phase::Expired, ARGOCD_PATIENCE).await;
    wait_for(ARGOCD_PATIENCE, "Argo CD to prune the expired environment", || async {
        let gone = get("namespace", None, &env_ns).await.is_none()
            && get("applications.argoproj.io", Some(ARGOCD), &env_ns).await.is_none();
        gone.then_some(())
    })
    .await;
    delete_and_see_it_pruned(&tenant, "brief", &env_ns).await;
}

#[tokio::test]
async fn a_deletion_while_argo_cd_is_down_completes_once_it_is_back() {
    let _turn = turn().await;
    let (tenant, status) = provisioned("", "outage").await;
    let env_ns = status.namespace.unwrap_or_default();
    cluster().stop_process("argocd-application-controller").await;
    let out = cluster()
        .kubectl("admin", &["delete", "environmentrequest", "outage", "-n", &tenant, "--wait=false"], None)
        .await;
    let stopped = std::time::Instant::now();
    assert!(out.success, "{}", out.stderr);
    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    let waiting = wait_for(ARGOCD_PATIENCE, "the request to wait for Argo CD", || async {
        let request = requests.get_opt("outage").await.ok().flatten()?;
        let ready = find(&request.status.as_ref()?.conditions, types::READY)?;
        (ready.reason == "AwaitingPrune").then_some(request)
    })
    .await;
    assert!(waiting.metadata.finalizers.iter().flatten().any(|f| f == berth::api::labels::FINALIZER));
    // Longer than Argo CD would take to prune (seconds, once it looks): nothing moves.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(stopped.elapsed())).await;
    assert!(requests.get_opt("outage").await.ok().flatten().is_some(), "the request went while Argo CD was down");
    assert!(get("namespace", None, &env_ns).await.is_some(), "nothing pruned the namespace while Argo CD was down");

    cluster().start_process("argocd-application-controller").await;
    delete_and_see_it_pruned(&tenant, "outage", &env_ns).await;
}
