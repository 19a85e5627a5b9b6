//! A rollout survives its leader being killed at each step of a batch: after the
//! environments are marked but before the commit lands, and after the commit landed
//! but before the promotion is confirmed. The new process repeats the step it cannot
//! prove done: exactly one commit per batch, no environment skipped or done twice.
//! (Its own binary: the tests kill the operator they share.)

use std::time::Duration;

use berth::api::{environment_request::PromotionState, rollout::RolloutPhase};
use berth_e2e::{rollout::*, suite::*};

fn kill_operator_sync() {
    if let Some(operator) = OPERATOR.get() {
        operator.lock().unwrap_or_else(|e| e.into_inner()).kill();
    }
}

async fn restart_operator() {
    let mut operator = operator().await.lock().unwrap_or_else(|e| e.into_inner());
    operator.restart().unwrap_or_else(|e| panic!("restart: {e:#}"));
}

async fn wait_marked(tenant: &str, name: &str) {
    wait_for(Duration::from_secs(60), &format!("{name} to be marked for its batch"), || async move {
        let promotion = request(tenant, name).await.status.and_then(|s| s.promotion)?;
        (promotion.state == PromotionState::Committing).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_leader_killed_between_mark_commit_and_confirm_makes_exactly_one_commit_per_batch() {
    // 1. Killed after marking, before the commit could land: the remote's branch is
    //    locked (a stale ref lock), so every push fails.
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let before = head();
    let lock = remote().join("refs/heads/main.lock");
    std::fs::write(&lock, "held by the e2e test\n").unwrap_or_else(|e| panic!("{e}"));
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "")).await;
    wait_marked(&tenant, "canary").await;
    kill_operator_sync();
    std::fs::remove_file(&lock).unwrap_or_else(|e| panic!("{e}"));
    assert!(batch_steps(&tenant, "web-v2", &before).is_empty(), "nothing was committed yet");
    restart_operator().await;
    wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    assert_eq!(batch_steps(&tenant, "web-v2", &before), ["canary/1", "production/1", "production/2"]);

    // 2. Killed after the commit landed, before the promotion was confirmed: the
    //    apiserver refuses to record a confirmed promotion in this namespace.
    let before = head();
    refuse_confirmations(&tenant, "v3").await;
    kubectl_apply(&rollout_yaml(&tenant, "web-v3", "v3", "")).await;
    wait_for(Duration::from_secs(60), "the canary batch's commit", || {
        let (tenant, before) = (tenant.clone(), before.clone());
        async move { (!batch_steps(&tenant, "web-v3", &before).is_empty()).then_some(()) }
    })
    .await;
    let committed = head();
    // Give the refused confirmation a moment to be tried and refused, then crash.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let canary = request(&tenant, "canary").await.status.and_then(|s| s.promotion).expect("marked");
    assert_eq!(canary.state, PromotionState::Committing, "the confirmation must have been refused");
    kill_operator_sync();
    allow_confirmations(&tenant, "v3").await;
    restart_operator().await;
    let done = wait_rollout(&tenant, "web-v3", RolloutPhase::Succeeded).await;
    task.abort();
    assert_eq!(batch_steps(&tenant, "web-v3", &before), ["canary/1", "production/1", "production/2"]);
    // The batch commit made before the crash is the one recorded, found by its trailers.
    let history = done.status.unwrap_or_default().history;
    let canary_commit = messages_since(&before)
        .into_iter()
        .find(|(_, m)| m.contains(&format!("Berth-Rollout: {tenant}/web-v3\n")))
        .map(|(c, _)| c);
    assert_eq!(history.first().map(|h| h.commit.clone()), canary_commit);
    assert!(messages_since(&before).iter().any(|(c, _)| c == &committed));
    for name in ["canary", "prod-a", "prod-b"] {
        let promotion = request(&tenant, name).await.status.and_then(|s| s.promotion).expect("promoted");
        assert_eq!((promotion.state, promotion.revision.as_str()), (PromotionState::Committed, "v3"), "{name}");
    }
}
