//! A person steering a rollout on the real apiserver: a failing gate pauses it until
//! `retry`; `paused` finishes the batch in flight and starts nothing new; `abort`
//! commits nothing more (and confirms a batch whose commit landed unconfirmed);
//! a request created mid-rollout is left alone and a person's edit wins; a
//! rollback of everything commits each batch back, newest first, to the exact bytes.

use std::time::Duration;

use berth::api::{environment_request::PromotionState, rollout::RolloutPhase};
use berth_e2e::{rollout::*, suite::*};

/// The `targetRevision` the environment's folder holds at the remote's head.
async fn committed_revision(tenant: &str, name: &str) -> String {
    target_revision(folder(tenant, name).await.get("application.yaml").map_or("", String::as_str))
}

#[tokio::test]
async fn a_failing_gate_pauses_the_rollout_until_retry_after_the_fix() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let before = head();
    argocd.degrade("prod-a", "v2");
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "")).await;

    let paused = wait_rollout(&tenant, "web-v2", RolloutPhase::Paused).await;
    let status = paused.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("GateFailed"));
    assert!(status.message.as_deref().is_some_and(|m| m.contains("berth rollout retry")), "{:?}", status.message);
    assert!(status.failures.iter().any(|f| f.environment == "prod-a" && f.reason == "Degraded"), "{status:?}");
    // Nothing after the failed batch, nothing rolled back (onFailure defaults to Pause).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(batch_steps(&tenant, "web-v2", &before), ["canary/1", "production/1"]);

    // Fixed: a person retries once Argo CD reports it healthy (a retry judges the
    // batch from the environments' status as it is then).
    argocd.heal("prod-a");
    wait_for(Duration::from_secs(30), "Argo CD to report prod-a healthy", || {
        let tenant = tenant.clone();
        async move {
            let sync = request(&tenant, "prod-a").await.status?.sync?;
            (sync.health.as_deref() == Some("Healthy")).then_some(())
        }
    })
    .await;
    let (patched, message) =
        patch_rollout(&tenant, "web-v2", r#"{"metadata":{"annotations":{"berth.dev/retry":"after-fix"}}}"#).await;
    assert!(patched, "{message}");
    let done = wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();
    // The retry looked again; it committed nothing twice.
    assert_eq!(batch_steps(&tenant, "web-v2", &before), ["canary/1", "production/1", "production/2"]);
    assert_eq!(done.status.unwrap_or_default().progress.as_deref(), Some("3/3"));
    let events = rollout_events(&tenant, "web-v2").await;
    for reason in ["Planned", "BatchCommitted", "GateFailed", "Retried", "GatePassed", "Succeeded"] {
        assert!(events.iter().any(|e| e == reason), "no {reason} event in {events:?}");
    }
}

#[tokio::test]
async fn paused_starts_nothing_new_and_finishes_the_batch_in_flight() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let before = head();
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "paused: true")).await;
    // Paused from the start: planned (visible), nothing committed.
    let paused = wait_rollout(&tenant, "web-v2", RolloutPhase::Paused).await;
    assert_eq!(paused.status.and_then(|s| s.plan).map(|p| p.environments), Some(3));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(batch_steps(&tenant, "web-v2", &before).is_empty());

    // Argo CD holds back the canary's sync: its batch is in flight when the pause comes.
    argocd.hold("canary");
    let (resumed, message) = patch_rollout(&tenant, "web-v2", r#"{"spec":{"paused":false}}"#).await;
    assert!(resumed, "{message}");
    wait_history(&tenant, "web-v2", 1).await;
    let (paused, message) = patch_rollout(&tenant, "web-v2", r#"{"spec":{"paused":true}}"#).await;
    assert!(paused, "{message}");
    wait_rollout(&tenant, "web-v2", RolloutPhase::Paused).await;
    argocd.release("canary");
    // The batch in flight is verified; the next one does not start.
    let api: kube::Api<berth::api::Rollout> = kube::Api::namespaced(cluster().client("admin").await, &tenant);
    wait_for(Duration::from_secs(60), "the batch in flight to be verified while paused", || {
        let api = api.clone();
        async move {
            let status = api.get("web-v2").await.ok()?.status?;
            (status.phase == Some(RolloutPhase::Paused) && status.stages.iter().all(|s| s.current.is_none()))
                .then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(batch_steps(&tenant, "web-v2", &before), ["canary/1"], "a batch started while paused");

    let (resumed, message) = patch_rollout(&tenant, "web-v2", r#"{"spec":{"paused":false}}"#).await;
    assert!(resumed, "{message}");
    wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();
    assert_eq!(batch_steps(&tenant, "web-v2", &before), ["canary/1", "production/1", "production/2"]);
}

#[tokio::test]
async fn abort_commits_nothing_more_and_cannot_be_undone() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let before = head();
    // Argo CD holds back the canary's sync until the rollout is aborted.
    argocd.hold("canary");
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "")).await;
    wait_history(&tenant, "web-v2", 1).await;
    let (aborted, message) = patch_rollout(&tenant, "web-v2", r#"{"spec":{"abort":true}}"#).await;
    assert!(aborted, "{message}");
    wait_rollout(&tenant, "web-v2", RolloutPhase::Aborted).await;
    argocd.release("canary");
    // Long enough for Argo CD to sync the canary and a gate to pass, were it still judged.
    tokio::time::sleep(Duration::from_secs(5)).await;
    task.abort();
    assert_eq!(batch_steps(&tenant, "web-v2", &before), ["canary/1"]);
    let canary = request(&tenant, "canary").await.status.and_then(|s| s.promotion).expect("canary promoted");
    assert_eq!((canary.state, canary.revision.as_str()), (PromotionState::Committed, "v2"));
    for name in ["prod-a", "prod-b"] {
        assert_eq!(request(&tenant, name).await.status.and_then(|s| s.promotion), None, "{name}");
        assert_eq!(committed_revision(&tenant, name).await, "v1", "{name}");
    }
    let (undone, message) = patch_rollout(&tenant, "web-v2", r#"{"spec":{"abort":false}}"#).await;
    assert!(!undone, "an abort was undone");
    assert!(message.contains("stays aborted"), "{message}");
    let phase = wait_rollout(&tenant, "web-v2", RolloutPhase::Aborted).await;
    assert_eq!(phase.status.and_then(|s| s.reason).as_deref(), Some("Aborted"));
}

#[tokio::test]
async fn an_abort_confirms_a_batch_whose_commit_landed_and_commits_nothing_back() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let before = head();
    // The canary's commit lands; its confirmation is refused (as if the leader died).
    refuse_confirmations(&tenant, "v2").await;
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "")).await;
    wait_for(Duration::from_secs(60), "the canary batch's commit", || {
        let (tenant, before) = (tenant.clone(), before.clone());
        async move { (!batch_steps(&tenant, "web-v2", &before).is_empty()).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (aborted, message) = patch_rollout(&tenant, "web-v2", r#"{"spec":{"abort":true}}"#).await;
    assert!(aborted, "{message}");
    wait_rollout(&tenant, "web-v2", RolloutPhase::Aborted).await;
    let canary = request(&tenant, "canary").await.status.and_then(|s| s.promotion).expect("marked");
    assert_eq!(canary.state, PromotionState::Committing, "the confirmation must have been refused");

    allow_confirmations(&tenant, "v2").await;
    wait_for(Duration::from_secs(60), "the aborted batch to be confirmed", || {
        let tenant = tenant.clone();
        async move {
            let promotion = request(&tenant, "canary").await.status?.promotion?;
            (promotion.state == PromotionState::Committed).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    task.abort();
    // The batch's commit stands: no second commit put the canary back on v1.
    let ours: Vec<_> = messages_since(&before).into_iter().filter(|(_, m)| m.contains(&format!("{tenant}/"))).collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(committed_revision(&tenant, "canary").await, "v2");
    let events = rollout_events(&tenant, "web-v2").await;
    assert!(events.iter().any(|e| e == "BatchSettled"), "{events:?}");
}

#[tokio::test]
async fn a_request_created_mid_rollout_is_left_alone_and_a_persons_edit_wins() {
    let argocd = FakeArgoCd::lagging(Duration::from_secs(3));
    let (tenant, task) = three_environments(&argocd).await;
    let class = request(&tenant, "canary").await.spec.class;
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "")).await;
    wait_history(&tenant, "web-v2", 1).await;
    // Mid-rollout: a new environment that matches the selector, and a person moving
    // the canary (promoted by this rollout a moment ago) to another revision.
    kubectl_apply(&environment_yaml(&tenant, "prod-c", &class, "production")).await;
    let edit = r#"{"spec":{"app":{"revision":"v9"}}}"#;
    let args = ["patch", "environmentrequest", "canary", "-n", &tenant, "--type", "merge", "-p", edit];
    let out = cluster().kubectl("admin", &args, None).await;
    assert!(out.success, "{}", out.stderr);

    let done = wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    wait_phase(&tenant, "prod-c", berth::api::environment_request::Phase::Ready, Duration::from_secs(60)).await;
    task.abort();
    // The plan was frozen when the rollout started: prod-c is not in it.
    assert_eq!(done.status.and_then(|s| s.plan).map(|p| p.environments), Some(3));
    assert_eq!(request(&tenant, "prod-c").await.status.and_then(|s| s.promotion), None);
    assert_eq!(committed_revision(&tenant, "prod-c").await, "v1");
    // The person's edit wins: the canary runs v9, its promotion record no longer applies.
    assert_eq!(committed_revision(&tenant, "canary").await, "v9");
    assert_eq!(request(&tenant, "canary").await.deployed_revision(), "v9");
    for name in ["prod-a", "prod-b"] {
        assert_eq!(committed_revision(&tenant, name).await, "v2", "{name}");
    }
}

#[tokio::test]
async fn rolling_back_everything_commits_each_batch_back_newest_first_to_the_exact_bytes() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let before = head();
    let mut bytes_before = Vec::new();
    for name in ["canary", "prod-a", "prod-b"] {
        bytes_before.push(folder(&tenant, name).await);
    }
    // The last batch fails: everything this rollout committed goes back.
    argocd.degrade("prod-b", "v2");
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "onFailure: Rollback\n  rollbackScope: All")).await;
    let rolled_back = wait_rollout(&tenant, "web-v2", RolloutPhase::RolledBack).await;
    task.abort();

    let steps = batch_steps(&tenant, "web-v2", &before);
    let expected = [
        "canary/1",
        "production/1",
        "production/2",
        "production/2/rollback",
        "production/1/rollback",
        "canary/1/rollback",
    ];
    assert_eq!(steps, expected);
    // Each rollback names the batch commit it undoes.
    let messages = messages_since(&before);
    let commit_of = |step: &str| {
        messages.iter().find(|(_, m)| m.contains(&format!("Berth-Rollout-Step: {step}\n"))).map(|(c, _)| c.clone())
    };
    for step in ["canary/1", "production/1", "production/2"] {
        let promote = commit_of(step).expect("promoted");
        let rollback = messages.iter().find(|(_, m)| m.contains(&format!("Berth-Rollout-Step: {step}/rollback\n")));
        let names = rollback.is_some_and(|(_, m)| m.contains(&format!("Berth-Rollback-Of: {promote}")));
        assert!(names, "{step}: {rollback:?}");
    }
    for (name, bytes) in ["canary", "prod-a", "prod-b"].into_iter().zip(bytes_before) {
        assert_eq!(folder(&tenant, name).await, bytes, "{name} is not byte for byte what it was");
        let promotion = request(&tenant, name).await.status.and_then(|s| s.promotion).expect("a record");
        assert_eq!(promotion.state, PromotionState::RolledBack, "{name}");
    }
    let status = rolled_back.status.unwrap_or_default();
    assert_eq!(status.rollback.map(|r| r.done), Some(3));
}
