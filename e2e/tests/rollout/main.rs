//! Rollouts through the real operator on the loopback control plane (tier 2): each
//! batch one commit with its trailers, gates that wait for Argo CD to report the
//! promoted revision (never the Healthy status from before), a failing gate that
//! rolls back with a commit restoring the exact previous bytes.
//! Argo CD's part is played by [`FakeArgoCd`]: it applies what each environment's
//! folder holds at the branch head and reports the Application synced at that
//! revision, Healthy or (for chosen environments) Degraded, the way Argo CD's
//! application controller would.

use std::time::Duration;

use berth::api::{
    environment_request::{Phase, PromotionState},
    rollout::RolloutPhase,
};
use berth_e2e::{rollout::*, suite::*};

mod cli;
mod control;
mod freeze;

#[tokio::test]
async fn a_rollout_commits_each_batch_once_and_moves_on_only_when_argo_cd_reports_the_new_revision() {
    // Argo CD syncs each change 3 s after it lands; until then the Application keeps
    // reporting the old revision Synced and Healthy.
    let lag = Duration::from_secs(3);
    let argocd = FakeArgoCd::lagging(lag);
    let (tenant, task) = three_environments(&argocd).await;
    let before = head();
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "")).await;
    let done = wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();

    let status = done.status.unwrap_or_default();
    assert_eq!(status.progress.as_deref(), Some("3/3"));
    // One commit per batch, each changing exactly its environment's folder, in order.
    let batches: Vec<(String, String)> = messages_since(&before)
        .into_iter()
        .filter(|(_, m)| m.contains(&format!("Berth-Rollout: {tenant}/web-v2")))
        .collect();
    let steps: Vec<&str> =
        batches.iter().filter_map(|(_, m)| m.lines().find_map(|l| l.strip_prefix("Berth-Rollout-Step: "))).collect();
    assert_eq!(steps, ["canary/1", "production/1", "production/2"], "{batches:#?}");
    for ((commit, message), name) in batches.iter().zip(["canary", "prod-a", "prod-b"]) {
        let folders = changed_folders(commit);
        assert_eq!(folders.len(), 1, "{commit}: {folders:?}");
        assert!(folders.iter().all(|f| f.ends_with(&format!("/{name}"))), "{folders:?}");
        assert!(message.contains(&format!("Berth-Rollout: {tenant}/web-v2")), "{message}");
        assert!(message.contains("Berth-Revision: v2"), "{message}");
        assert!(message.contains(&format!("Berth-Request: {tenant}/{name}")), "{message}");
        let recorded = status.history.iter().any(|h| &h.commit == commit);
        assert!(recorded, "{commit} not in the rollout's history");
    }
    // No batch started before Argo CD had synced the one before it: the stale Healthy
    // status never let a gate pass.
    let times: Vec<_> = status.history.iter().map(|h| h.at.0).collect();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= k8s_openapi::jiff::SignedDuration::from_secs(2), "batches {gap:?} apart: {:?}", status.history);
    }
    // Each environment: promoted, on v2 in git, its spec untouched, Ready.
    for name in ["canary", "prod-a", "prod-b"] {
        let request = request(&tenant, name).await;
        assert_eq!(request.spec.app.revision, "v1", "the rollout never edits the spec");
        let status = request.status.clone().unwrap_or_default();
        let promotion = status.promotion.clone().expect("a promotion record");
        assert_eq!((promotion.state, promotion.revision.as_str()), (PromotionState::Committed, "v2"));
        assert_eq!(promotion.previous_revision, "v1");
        let path = status.gitops.and_then(|g| g.path).unwrap_or_default();
        let files = files_at_head(&remote(), &path).expect("committed");
        assert_eq!(target_revision(&files["application.yaml"]), "v2");
        assert_eq!(status.phase, Some(Phase::Ready));
    }
    // The request controller made no second commit for a promoted environment.
    let ours: Vec<_> = messages_since(&before).into_iter().filter(|(_, m)| m.contains(&format!("{tenant}/"))).collect();
    assert_eq!(ours.len(), batches.len(), "commits other than the batches: {ours:#?}");
}

#[tokio::test]
async fn a_degraded_environment_rolls_its_batch_back_to_the_exact_previous_bytes() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    argocd.degrade("prod-a", "v3");
    let prod_a = request(&tenant, "prod-a").await;
    let path = prod_a.status.and_then(|s| s.gitops).and_then(|g| g.path).unwrap_or_default();
    let bytes_before = files_at_head(&remote(), &path).expect("committed");

    kubectl_apply(&rollout_yaml(&tenant, "web-v3", "v3", "onFailure: Rollback")).await;
    let rolled_back = wait_rollout(&tenant, "web-v3", RolloutPhase::RolledBack).await;
    task.abort();

    let status = rolled_back.status.unwrap_or_default();
    assert!(
        status.failures.iter().any(|f| f.environment == "prod-a" && f.reason == "Degraded"),
        "{:?}",
        status.failures
    );
    // prod-b was never touched; canary stays promoted (scope: the failed batch).
    assert_eq!(request(&tenant, "prod-b").await.status.and_then(|s| s.promotion), None);
    let canary = request(&tenant, "canary").await.status.and_then(|s| s.promotion).expect("canary promoted");
    assert_eq!(canary.state, PromotionState::Committed);
    // prod-a: its folder holds exactly what it held before the rollout.
    assert_eq!(files_at_head(&remote(), &path).expect("still committed"), bytes_before);
    let promotion = request(&tenant, "prod-a").await.status.and_then(|s| s.promotion).expect("a record");
    assert_eq!(promotion.state, PromotionState::RolledBack);
    let promote = status.history.iter().find(|h| h.stage == "production").map(|h| h.commit.clone()).expect("promoted");
    let rollback = status.history.last().expect("a rollback entry");
    let message = messages_since(&promote).into_iter().find(|(c, _)| c == &rollback.commit).map(|(_, m)| m);
    assert!(message.as_deref().is_some_and(|m| m.contains(&format!("Berth-Rollback-Of: {promote}"))), "{message:?}");
}
