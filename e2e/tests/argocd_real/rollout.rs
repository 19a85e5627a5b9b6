//! A rollout the real Argo CD stops: tag v3 of the app holds a Deployment that never
//! progresses (no node runs its Pod), kube-controller-manager marks it
//! ProgressDeadlineExceeded, and Argo CD's own health check reports Degraded. The
//! rollout rolls the canary back with a commit, and Argo CD syncs v1 again.

use berth::api::{
    environment_request::{Phase, PromotionState},
    rollout::RolloutPhase,
};
use berth_e2e::rollout::{messages_since, request, rollout_yaml, wait_rollout_within};

use super::*;

/// `request_for_app` with the labels the rollout selects by.
fn labelled_request(tenant: &str, name: &str, class: &str, ring: &str) -> String {
    let request = request_for_app(tenant, name, class, "v1");
    let metadata = format!("metadata: {{name: {name}, namespace: {tenant}}}");
    assert!(request.contains(&metadata), "the request template changed: {request}");
    request.replace(
        &metadata,
        &format!("metadata: {{name: {name}, namespace: {tenant}, labels: {{app: web, ring: {ring}}}}}"),
    )
}

#[tokio::test]
async fn a_revision_argo_cd_reports_degraded_is_rolled_back_and_argo_cd_runs_the_old_one_again() {
    let _turn = turn().await;
    root_app().await;
    let commits = &app_repository().1;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("real-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 5, SYNCED_BY_ARGOCD)).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    let environments = [("canary", "canary"), ("prod-a", "production"), ("prod-b", "production")];
    for (name, ring) in environments {
        kubectl_apply(&labelled_request(&tenant, name, &class, ring)).await;
    }
    for (name, _) in environments {
        wait_phase(&tenant, name, Phase::Ready, ARGOCD_PATIENCE).await;
    }
    let canary = request(&tenant, "canary").await.status.unwrap_or_default();
    let env_ns = canary.namespace.clone().unwrap_or_default();
    let path = canary.gitops.and_then(|g| g.path).unwrap_or_default();
    let bytes_before = files_at_head(&remote(), &path).expect("the canary is committed");
    let before = remote_head(&remote());

    // Canary, then production one by one; v3 goes Degraded in the canary already.
    kubectl_apply(&rollout_yaml(&tenant, "web-v3", "v3", "onFailure: Rollback")).await;
    let rolled_back = wait_rollout_within(&tenant, "web-v3", RolloutPhase::RolledBack, ARGOCD_PATIENCE).await;
    let status = rolled_back.status.unwrap_or_default();
    // Argo CD's own verdict: no one but its application controller wrote that status.
    let failure = status.failures.iter().find(|f| f.environment == "canary");
    let failure = failure.unwrap_or_else(|| panic!("no failure of the canary: {:?}", status.failures));
    assert_eq!(failure.reason, "Degraded", "{failure:?}");
    assert!(failure.message.contains("Synced and Degraded"), "{failure:?}");
    // The batch commit, then the rollback commit naming it; production never touched.
    let promote = status.history.iter().find(|h| h.stage == "canary").map(|h| h.commit.clone()).expect("promoted");
    let rollback = status.history.last().map(|h| h.commit.clone()).expect("a rollback entry");
    let ours: Vec<_> = messages_since(&before).into_iter().filter(|(_, m)| m.contains(&format!("{tenant}/"))).collect();
    let ids: Vec<&str> = ours.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [promote.as_str(), rollback.as_str()], "{ours:#?}");
    assert!(ours[0].1.contains("Berth-Revision: v3"), "{}", ours[0].1);
    assert!(ours[1].1.contains(&format!("Berth-Rollback-Of: {promote}")), "{}", ours[1].1);
    assert_eq!(files_at_head(&remote(), &path).expect("still committed"), bytes_before);
    let promotion = request(&tenant, "canary").await.status.and_then(|s| s.promotion).expect("a promotion record");
    assert_eq!((promotion.state, promotion.revision.as_str()), (PromotionState::RolledBack, "v3"));
    for name in ["prod-a", "prod-b"] {
        assert_eq!(request(&tenant, name).await.status.and_then(|s| s.promotion), None, "{name}");
    }

    // Argo CD syncs v1 again, healthy; the stuck Deployment is pruned, v1's greeting is back.
    let application = wait_for(ARGOCD_PATIENCE, "Argo CD to run v1 again, healthy", || async {
        let app = get("applications.argoproj.io", Some(ARGOCD), &env_ns).await?;
        let compared = app["status"]["sync"]["comparedTo"]["source"]["targetRevision"].as_str() == Some("v1");
        let healthy = reported(&app) == ("Synced".into(), "Healthy".into(), commits[0].clone());
        // Its history gains the sync once the operation is over, which can come a
        // refresh after the comparison says Synced.
        let operation = &app["status"]["operationState"];
        let finished = app["operation"].is_null()
            && operation["phase"] == "Succeeded"
            && operation["syncResult"]["revision"].as_str() == Some(commits[0].as_str());
        (compared && healthy && finished).then_some(app)
    })
    .await;
    let history = application["status"]["history"].as_array().cloned().unwrap_or_default();
    let revisions: Vec<&str> = history.iter().filter_map(|h| h["revision"].as_str()).collect();
    assert_eq!(revisions, [commits[0].as_str(), commits[2].as_str(), commits[0].as_str()], "Argo CD synced v1, v3, v1");
    let ready = wait_phase(&tenant, "canary", Phase::Ready, ARGOCD_PATIENCE).await;
    let sync = ready.status.and_then(|s| s.sync).unwrap_or_default();
    assert_eq!((sync.health.as_deref(), sync.revision.as_deref()), (Some("Healthy"), Some(commits[0].as_str())));
    let settings = get("configmap", Some(&env_ns), "web-settings").await.unwrap_or_default();
    assert_eq!(settings["data"]["greeting"], REVISIONS[0].greeting, "the app's ConfigMap: {settings}");
    assert_eq!(get("deployment", Some(&env_ns), "web").await.map(|d| d["status"].clone()), None);

    let requests = environments.map(|(name, _)| {
        let (tenant, name) = (tenant.clone(), name.to_owned());
        async move {
            let env_ns = request(&tenant, &name).await.status.and_then(|s| s.namespace).unwrap_or_default();
            delete_and_see_it_pruned(&tenant, &name, &env_ns).await;
        }
    });
    futures::future::join_all(requests).await;
}
