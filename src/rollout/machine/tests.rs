use k8s_openapi::jiff::SignedDuration;

use super::*;
use crate::api::rollout::RolloutSpec;

const T0: i64 = 1_800_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).expect("a time")
}

fn rollout(spec: serde_json::Value) -> Rollout {
    let spec: RolloutSpec = serde_json::from_value(spec).expect("a spec");
    let mut rollout = Rollout::new("checkout-v2", spec);
    rollout.metadata.namespace = Some("payments".into());
    rollout.metadata.generation = Some(1);
    rollout
}

/// canary (1 environment) then production in batches of 1.
fn two_stages(extra: serde_json::Value) -> Rollout {
    let mut spec = serde_json::json!({
        "app": "checkout",
        "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [
            { "name": "canary", "classes": ["staging"] },
            { "name": "production", "classes": ["production"], "batchSize": 1 },
        ],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    rollout(spec)
}

fn request(name: &str, class: &str) -> EnvironmentRequest {
    let mut r = crate::testing::request(class);
    r.metadata.name = Some(name.into());
    r.metadata.namespace = Some("payments".into());
    r.metadata.generation = Some(1);
    r.spec.app.name = "checkout".into();
    r.spec.app.revision = "v1".into();
    r.metadata.labels = Some([("app".to_owned(), "checkout".to_owned())].into());
    crate::testing::rollout::provision(&mut r);
    r
}

/// `r` once its batch's commit is confirmed and Argo CD reports `health` at v2.
fn promoted(r: EnvironmentRequest, commit: &str, health: &str) -> EnvironmentRequest {
    crate::testing::rollout::promoted(&r, commit, health)
}

struct World {
    requests: Vec<EnvironmentRequest>,
}

impl World {
    fn three() -> Self {
        Self {
            requests: vec![
                request("stage-1", "staging"),
                request("prod-a", "production"),
                request("prod-b", "production"),
            ],
        }
    }

    fn obs(&self) -> Observations {
        Observations {
            requests: self
                .requests
                .iter()
                .map(|r| (r.metadata.name.clone().unwrap_or_default(), Arc::new(r.clone())))
                .collect(),
            argocd_installed: true,
            ..Observations::default()
        }
    }

    fn set(&mut self, name: &str, f: impl FnOnce(EnvironmentRequest) -> EnvironmentRequest) {
        if let Some(slot) = self.requests.iter_mut().find(|r| r.metadata.name.as_deref() == Some(name)) {
            *slot = f(slot.clone());
        }
    }
}

/// Runs `next`, and when it asks for a commit, "makes" it as `commit`.
fn step(rollout: &Rollout, status: &mut RolloutStatus, world: &World, now: Timestamp, commit: &str) -> Decision {
    let decision = next(rollout, status, &world.obs(), now);
    *status = decision.status.clone();
    if let Some(work) = &decision.work {
        record_commit(status, work, commit, now);
    }
    decision
}

fn reasons_of(decision: &Decision) -> Vec<&str> {
    decision.notes.iter().map(|n| n.reason.as_str()).collect()
}

#[test]
fn a_rollout_commits_one_batch_at_a_time_and_moves_on_only_when_the_gate_passes() {
    let rollout = two_stages(serde_json::json!({}));
    let mut world = World::three();
    let mut status = RolloutStatus::default();

    let first = step(&rollout, &mut status, &world, at(0), "c1");
    let work = first.work.clone().expect("the canary batch");
    assert_eq!(
        (work.stage.as_str(), work.batch, work.environments.as_slice()),
        ("canary", 1, ["stage-1".to_owned()].as_slice())
    );
    assert_eq!(reasons_of(&first), ["Planned"]);
    assert_eq!(status.plan.as_ref().map(|p| p.environments), Some(3));
    assert_eq!(status.progress.as_deref(), Some("0/3"));

    // Committed, but Argo CD has not synced it: nothing new starts.
    let waiting = step(&rollout, &mut status, &world, at(5), "unused");
    assert_eq!(waiting.work, None);
    assert_eq!(status.reason.as_deref(), Some(reasons::VERIFYING));
    assert_eq!(status.stages[0].counts.verifying, 1);

    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    let next_batch = step(&rollout, &mut status, &world, at(10), "c2");
    assert_eq!(reasons_of(&next_batch), ["GatePassed"]);
    let work = next_batch.work.expect("production batch 1");
    assert_eq!((work.stage.as_str(), work.batch, work.of), ("production", 1, 2));
    assert_eq!(work.environments, ["prod-a"]);
    assert_eq!(status.progress.as_deref(), Some("1/3"));

    world.set("prod-a", |r| promoted(r, "c2", "Healthy"));
    let second = step(&rollout, &mut status, &world, at(20), "c3").work.expect("production batch 2");
    assert_eq!(second.environments, ["prod-b"]);
    world.set("prod-b", |r| promoted(r, "c3", "Healthy"));
    let done = step(&rollout, &mut status, &world, at(30), "unused");
    assert_eq!(done.work, None);
    assert_eq!(status.phase, Some(RolloutPhase::Succeeded));
    assert_eq!(status.progress.as_deref(), Some("3/3"));
    assert_eq!(status.history.iter().map(|h| h.commit.as_str()).collect::<Vec<_>>(), ["c1", "c2", "c3"]);
    assert!(crate::api::conditions::is_true(&status.conditions, "Ready"));
    assert!(reasons_of(&done).contains(&"Succeeded"));
    // Finished is finished.
    assert_eq!(next(&rollout, &status, &world.obs(), at(40)).work, None);
}

#[test]
fn a_soak_holds_the_next_batch_until_it_ends_and_says_when() {
    let rollout = rollout(serde_json::json!({
        "app": "checkout", "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "canary", "classes": ["staging"], "healthGate": { "soak": "10m" } },
                   { "name": "production", "classes": ["production"], "batchSize": "100%" }],
    }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    let soaking = step(&rollout, &mut status, &world, at(60), "unused");
    assert_eq!(soaking.work, None);
    assert_eq!(status.reason.as_deref(), Some(reasons::SOAKING));
    assert_eq!(soaking.requeue, Some(Duration::from_secs(600) + Duration::from_millis(100)));
    assert_eq!(step(&rollout, &mut status, &world, at(659), "unused").work, None);
    let production = step(&rollout, &mut status, &world, at(660), "c2").work.expect("production");
    assert_eq!(production.environments, ["prod-a", "prod-b"]);
}

#[test]
fn a_degraded_environment_pauses_the_rollout_and_retry_looks_again() {
    let mut rollout = two_stages(serde_json::json!({}));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("stage-1", |r| promoted(r, "c1", "Degraded"));
    let failed = step(&rollout, &mut status, &world, at(5), "unused");
    assert_eq!(failed.work, None);
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert_eq!(status.reason.as_deref(), Some(reasons::GATE_FAILED));
    assert_eq!(status.failures.len(), 1);
    assert_eq!(status.failures[0].reason, "Degraded");
    assert!(failed.notes.iter().all(|n| n.warning), "{:?}", failed.notes);
    // Paused it stays, without new events.
    let again = step(&rollout, &mut status, &world, at(6), "unused");
    assert!(again.notes.is_empty(), "{:?}", again.notes);

    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    rollout.metadata.annotations = Some([(RETRY_ANNOTATION.to_owned(), "1".to_owned())].into());
    let retried = step(&rollout, &mut status, &world, at(10), "c2");
    assert!(reasons_of(&retried).contains(&"Retried"));
    assert_eq!(retried.work.map(|w| w.stage), Some("production".to_owned()));
    assert!(status.failures.is_empty());
}

#[test]
fn with_rollback_a_failed_batch_is_committed_back_naming_the_commit_it_undoes() {
    let rollout = two_stages(serde_json::json!({ "onFailure": "Rollback" }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("stage-1", |r| promoted(r, "c1", "Degraded"));
    let decision = step(&rollout, &mut status, &world, at(5), "r1");
    let work = decision.work.expect("a rollback");
    assert_eq!(work.action, HistoryAction::Rollback);
    assert_eq!(work.rollback_of.as_deref(), Some("c1"));
    assert_eq!(work.environments, ["stage-1"]);
    assert_eq!(status.phase, Some(RolloutPhase::RollingBack));
    let done = step(&rollout, &mut status, &world, at(6), "unused");
    assert_eq!(done.work, None);
    assert_eq!(status.phase, Some(RolloutPhase::RolledBack));
    assert_eq!(status.stages[0].counts.rolled_back, 1);
    assert_eq!(status.history.last().map(|h| (h.action, h.commit.as_str())), Some((HistoryAction::Rollback, "r1")));
    // Terminal: the next stage never starts.
    assert_eq!(next(&rollout, &status, &world.obs(), at(7)).work, None);
}

#[test]
fn rolling_back_a_stage_undoes_its_batches_newest_first() {
    let rollout = rollout(serde_json::json!({
        "app": "checkout", "revision": "v2", "onFailure": "Rollback", "rollbackScope": "Stage",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "production", "classes": ["production"], "batchSize": 1 }],
    }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("prod-a", |r| promoted(r, "c1", "Healthy"));
    step(&rollout, &mut status, &world, at(1), "c2");
    world.set("prod-b", |r| promoted(r, "c2", "Degraded"));
    let first = step(&rollout, &mut status, &world, at(2), "r2").work.expect("rollback of batch 2");
    assert_eq!((first.batch, first.rollback_of.as_deref()), (2, Some("c2")));
    let second = step(&rollout, &mut status, &world, at(3), "r1").work.expect("rollback of batch 1");
    assert_eq!(
        (second.batch, second.rollback_of.as_deref(), second.environments.as_slice()),
        (1, Some("c1"), ["prod-a".to_owned()].as_slice())
    );
    step(&rollout, &mut status, &world, at(4), "unused");
    assert_eq!(status.phase, Some(RolloutPhase::RolledBack));
}

#[test]
fn a_flapping_signal_counts_only_once_it_lasts_the_tolerance() {
    let rollout = rollout(serde_json::json!({
        "app": "checkout", "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "canary", "classes": ["staging"], "healthGate": { "tolerance": "2m" } }],
    }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("stage-1", |r| promoted(r, "c1", "Degraded"));
    let flapping = step(&rollout, &mut status, &world, at(10), "unused");
    assert_eq!(status.phase, Some(RolloutPhase::Progressing));
    assert_eq!(status.stages[0].current.as_ref().map(|b| b.gate.failing), Some(1));
    assert_eq!(flapping.requeue, Some(Duration::from_secs(120) + Duration::from_millis(100)));
    // Healthy again in time: forgotten.
    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    step(&rollout, &mut status, &world, at(60), "unused");
    assert_eq!(status.phase, Some(RolloutPhase::Succeeded));

    // Degraded for longer than the tolerance: failed.
    let mut status = RolloutStatus::default();
    let mut world = World::three();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("stage-1", |r| promoted(r, "c1", "Degraded"));
    step(&rollout, &mut status, &world, at(10), "unused");
    step(&rollout, &mut status, &world, at(129), "unused");
    assert_eq!(status.phase, Some(RolloutPhase::Progressing));
    step(&rollout, &mut status, &world, at(130), "unused");
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
}

#[test]
fn an_environment_that_never_gets_healthy_fails_at_the_progress_deadline() {
    let rollout = rollout(serde_json::json!({
        "app": "checkout", "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "canary", "classes": ["staging"], "healthGate": { "progressDeadline": "5m" } }],
    }));
    let world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    let waiting = step(&rollout, &mut status, &world, at(10), "unused");
    assert_eq!(waiting.requeue, Some(Duration::from_secs(290) + Duration::from_millis(100)));
    step(&rollout, &mut status, &world, at(300), "unused");
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert_eq!(status.failures[0].reason, "ProgressDeadline");
}

#[test]
fn max_failures_lets_a_stage_pass_with_that_many_failed() {
    let rollout = rollout(serde_json::json!({
        "app": "checkout", "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "production", "classes": ["production"], "batchSize": "100%", "maxFailures": 1 }],
    }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("prod-a", |r| promoted(r, "c1", "Degraded"));
    world.set("prod-b", |r| promoted(r, "c1", "Healthy"));
    step(&rollout, &mut status, &world, at(1), "unused");
    assert_eq!(status.phase, Some(RolloutPhase::Succeeded));
    assert_eq!((status.stages[0].counts.promoted, status.stages[0].counts.failed), (1, 1));
}

#[test]
fn paused_finishes_the_batch_in_flight_and_starts_nothing_new() {
    let mut rollout = two_stages(serde_json::json!({}));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    rollout.spec.paused = true;
    step(&rollout, &mut status, &world, at(1), "unused");
    assert_eq!((status.phase, status.reason.as_deref()), (Some(RolloutPhase::Paused), Some(reasons::USER_PAUSED)));
    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    let paused = step(&rollout, &mut status, &world, at(2), "unused");
    assert_eq!(paused.work, None);
    assert_eq!(status.stages[0].phase, StagePhase::Succeeded);
    rollout.spec.paused = false;
    assert!(step(&rollout, &mut status, &world, at(3), "c2").work.is_some());
}

#[test]
fn a_crash_after_marking_repeats_the_same_commit_and_abort_only_settles_the_batch_in_flight() {
    let mut rollout = two_stages(serde_json::json!({}));
    let world = World::three();
    // Marked, never confirmed (the process died).
    let marked = next(&rollout, &RolloutStatus::default(), &world.obs(), at(0));
    let again = next(&rollout, &marked.status, &world.obs(), at(5));
    assert_eq!(again.work, marked.work);
    // Aborted at once; the batch's commit may have landed, so it is looked up and
    // confirmed (settled), never made.
    rollout.spec.abort = true;
    let aborted = next(&rollout, &marked.status, &world.obs(), at(6));
    assert_eq!(aborted.status.phase, Some(RolloutPhase::Aborted));
    assert!(aborted.notes.iter().any(|n| n.reason == "Aborted"));
    let settle = aborted.work.clone().expect("the batch in flight, to settle");
    assert!(settle.settle);
    assert_eq!((settle.stage.as_str(), settle.batch), ("canary", 1));
    // Settling fails (git unreachable): the next look settles it again, still aborted.
    let retried = next(&rollout, &aborted.status, &world.obs(), at(7));
    assert_eq!(retried.work, Some(settle.clone()));
    assert_eq!(retried.status.phase, Some(RolloutPhase::Aborted));
    // Found on the branch: recorded as committed, and nothing more is asked for.
    let mut landed = aborted.status.clone();
    record_commit(&mut landed, &settle, "c1", at(8));
    assert!(landed.stages[0].current.is_none(), "nothing verifies an aborted rollout's batch");
    assert_eq!(landed.history.iter().map(|h| h.commit.as_str()).collect::<Vec<_>>(), ["c1"]);
    assert!(landed.message.as_deref().is_some_and(|m| m.contains("had landed in c1")), "{:?}", landed.message);
    assert!(!landed.owns_marked_folders());
    assert_eq!(next(&rollout, &landed, &world.obs(), at(9)).work, None);
    // Never landed: the batch is dropped, with no history entry.
    let mut lost = aborted.status.clone();
    assert!(lost.owns_marked_folders(), "the request controller waits for the settling");
    record_commit(&mut lost, &settle, NO_COMMIT, at(8));
    assert!(lost.stages[0].current.is_none());
    assert!(lost.history.is_empty());
    assert!(lost.message.as_deref().is_some_and(|m| m.contains("never landed")), "{:?}", lost.message);
    assert!(!lost.owns_marked_folders());
    assert_eq!(next(&rollout, &lost, &world.obs(), at(9)).work, None);
}

#[test]
fn aborting_during_a_rollback_settles_the_rollback_commit_in_flight() {
    let mut rollout = two_stages(serde_json::json!({"onFailure": "Rollback"}));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("stage-1", |r| promoted(r, "c1", "Degraded"));
    let rolling_back = next(&rollout, &status, &world.obs(), at(5));
    let work = rolling_back.work.clone().expect("the rollback batch");
    assert_eq!(work.action, HistoryAction::Rollback);
    rollout.spec.abort = true;
    let aborted = next(&rollout, &rolling_back.status, &world.obs(), at(6));
    assert_eq!(aborted.status.phase, Some(RolloutPhase::Aborted));
    let settle = aborted.work.expect("the rollback in flight, to settle");
    assert_eq!(
        (settle.action, settle.settle, settle.rollback_of.as_deref()),
        (HistoryAction::Rollback, true, Some("c1"))
    );
    let mut landed = aborted.status.clone();
    record_commit(&mut landed, &settle, "r1", at(7));
    assert_eq!(landed.rollback.as_ref().map(|r| r.done), Some(1));
    assert_eq!(next(&rollout, &landed, &world.obs(), at(8)).work, None);
    assert_eq!(next(&rollout, &landed, &world.obs(), at(8)).status.phase, Some(RolloutPhase::Aborted));
}

#[test]
fn in_pull_request_mode_a_batch_is_judged_only_once_merged_and_its_deadline_starts_then() {
    let rollout = two_stages(serde_json::json!({
        "stages": [{ "name": "canary", "classes": ["staging"], "healthGate": { "progressDeadline": "10m" } }],
    }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    // Not known to be merged, for longer than the progress deadline: it waits.
    world.set("stage-1", |r| promoted(r, "c1", "Progressing"));
    let mut obs = world.obs();
    obs.pull_requests = true;
    let open = next(&rollout, &status, &obs, at(3600));
    assert_eq!(open.status.reason.as_deref(), Some(reasons::AWAITING_MERGE));
    assert_eq!(open.status.phase, Some(RolloutPhase::Progressing));
    let message = open.status.message.as_deref().unwrap_or_default();
    assert!(message.contains("merge its pull request"), "{message}");
    assert_eq!(open.requeue, Some(MERGE_RECHECK + Duration::from_millis(100)));
    assert!(open.status.failures.is_empty());
    // Merged: its deadline counts from now, so a slow Argo CD is not failed at once.
    obs.merged.insert("c1".into());
    let merged = next(&rollout, &open.status, &obs, at(3700));
    assert_eq!(merged.status.stages[0].current.as_ref().and_then(|b| b.merged_at.clone()), Some(Time(at(3700))));
    assert!(merged.status.failures.is_empty(), "{:?}", merged.status.failures);
    assert_eq!(merged.status.reason.as_deref(), Some(reasons::VERIFYING));
    // Once seen merged, it no longer needs the remote's word.
    obs.merged.clear();
    let late = next(&rollout, &merged.status, &obs, at(3700 + 601));
    assert_eq!(late.status.failures.len(), 1, "the deadline counts from the merge");
}

#[test]
fn in_pull_request_mode_argo_cd_syncing_the_promoted_revision_everywhere_proves_the_merge() {
    // A squash merge that dropped the trailers: the remote cannot say, Argo CD can.
    let rollout = two_stages(serde_json::json!({ "stages": [{ "name": "canary", "classes": ["staging"] }] }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    let mut obs = world.obs();
    obs.pull_requests = true;
    let done = next(&rollout, &status, &obs, at(60));
    assert_eq!(done.status.phase, Some(RolloutPhase::Succeeded), "{:?}", done.status.message);
    // Without a gate on sync, nothing proves it: it waits for the remote.
    let unsynced = two_stages(serde_json::json!({
        "stages": [{ "name": "canary", "classes": ["staging"], "healthGate": { "requireSynced": false } }],
    }));
    let mut status = RolloutStatus::default();
    step(&unsynced, &mut status, &world, at(0), "c1");
    let waiting = next(&unsynced, &status, &obs, at(60));
    assert_eq!(waiting.status.reason.as_deref(), Some(reasons::AWAITING_MERGE));
}

#[test]
fn a_rollout_waits_for_not_before_a_freeze_and_another_rollout_holding_its_environments() {
    let later = Time(at(3600));
    let mut rollout = two_stages(serde_json::json!({ "notBefore": later }));
    let mut world = World::three();
    let waiting = next(&rollout, &RolloutStatus::default(), &world.obs(), at(0));
    assert_eq!(waiting.status.reason.as_deref(), Some(reasons::NOT_BEFORE));
    assert_eq!(waiting.requeue, Some(Duration::from_secs(3600) + Duration::from_millis(100)));

    rollout.spec.not_before = None;
    rollout.spec.freeze_windows =
        vec![crate::api::rollout::FreezeWindow::once(Time(at(-60)), Time(at(600)), Some("release freeze".into()))];
    let frozen = next(&rollout, &RolloutStatus::default(), &world.obs(), at(0));
    assert_eq!(frozen.work, None);
    assert_eq!(frozen.status.reason.as_deref(), Some(reasons::FROZEN));
    assert!(frozen.status.message.as_deref().is_some_and(|m| m.contains("release freeze")));

    rollout.spec.freeze_windows.clear();
    world.set("prod-a", |r| {
        let mut r = promoted(r, "c0", "Healthy");
        if let Some(p) = r.status.as_mut().and_then(|s| s.promotion.as_mut()) {
            p.rollout = "checkout-v1".into();
        }
        r
    });
    let mut obs = world.obs();
    obs.active_rollouts.insert("checkout-v1".into(), Default::default());
    let blocked = next(&rollout, &RolloutStatus::default(), &obs, at(0));
    assert_eq!(blocked.status.reason.as_deref(), Some(reasons::BLOCKED));
    assert!(blocked.status.message.as_deref().is_some_and(|m| m.contains("prod-a") && m.contains("checkout-v1")));
    // Once that one has finished, this one plans.
    obs.active_rollouts.clear();
    assert!(next(&rollout, &RolloutStatus::default(), &obs, at(0)).work.is_some());
}

#[test]
fn a_person_editing_a_promoted_environment_wins_and_does_not_fail_the_gate() {
    let rollout = two_stages(serde_json::json!({}));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("stage-1", |r| {
        let mut r = promoted(r, "c1", "Degraded");
        r.metadata.generation = Some(2);
        r
    });
    let decision = step(&rollout, &mut status, &world, at(1), "c2");
    assert!(status.failures.is_empty());
    assert_eq!(decision.work.map(|w| w.stage), Some("production".to_owned()));
}

#[test]
fn status_stays_small_at_ten_thousand_environments() {
    let rollout = rollout(serde_json::json!({
        "app": "checkout", "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "production", "classes": ["production"], "batchSize": "10%" }],
    }));
    let world =
        World { requests: (0..10_000).map(|i| request(&format!("checkout-prod-{i:05}"), "production")).collect() };
    let decision = next(&rollout, &RolloutStatus::default(), &world.obs(), at(0));
    assert_eq!(decision.work.as_ref().map(|w| w.environments.len()), Some(1000));
    let bytes = serde_json::to_vec(&decision.status).expect("json").len();
    assert!(bytes <= 512 * 1024, "{bytes} bytes");
    let _ = SignedDuration::ZERO;
}

#[test]
fn a_held_or_deleted_environment_after_planning_is_not_judged_and_an_empty_batch_is_skipped() {
    let rollout = rollout(serde_json::json!({
        "app": "checkout", "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "production", "classes": ["production"], "batchSize": 1 }],
    }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    let first = step(&rollout, &mut status, &world, at(0), "c1").work.expect("batch 1");
    assert_eq!(first.environments, ["prod-a"]);
    // prod-b is held after planning: batch 2 has nothing to commit and is skipped.
    world.set("prod-b", |mut r| {
        r.metadata.labels.get_or_insert_with(Default::default).insert("berth.dev/hold".into(), "true".into());
        r
    });
    world.set("prod-a", |r| promoted(r, "c1", "Healthy"));
    let done = step(&rollout, &mut status, &world, at(1), "unused");
    assert_eq!(done.work, None);
    assert_eq!(status.phase, Some(RolloutPhase::Succeeded));
    assert_eq!(status.history.len(), 1, "no history line for a batch that committed nothing");
}

#[test]
fn failures_are_counted_once_however_many_there_are() {
    let rollout = rollout(serde_json::json!({
        "app": "checkout", "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "production", "classes": ["production"], "batchSize": "100%", "maxFailures": "90%" }],
    }));
    let mut world = World { requests: (0..80).map(|i| request(&format!("prod-{i:02}"), "production")).collect() };
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    for i in 0..60 {
        world.set(&format!("prod-{i:02}"), |r| promoted(r, "c1", "Degraded"));
    }
    for _ in 0..3 {
        step(&rollout, &mut status, &world, at(1), "unused");
    }
    assert_eq!(status.stages[0].counts.failed, 60);
    assert_eq!(status.failures.len(), crate::api::rollout::MAX_FAILURES);
}

#[test]
fn after_a_batch_was_healthy_its_soak_outlasts_the_progress_deadline() {
    let rollout = rollout(serde_json::json!({
        "app": "checkout", "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "canary", "classes": ["staging"],
                     "healthGate": { "soak": "1h", "progressDeadline": "5m", "tolerance": "2m" } }],
    }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    step(&rollout, &mut status, &world, at(10), "unused");
    assert_eq!(status.reason.as_deref(), Some(reasons::SOAKING));
    // Forty minutes in, a short Progressing blip: waiting, not failed by the deadline.
    world.set("stage-1", |r| promoted(r, "c1", "Progressing"));
    step(&rollout, &mut status, &world, at(2400), "unused");
    assert_eq!(status.phase, Some(RolloutPhase::Progressing));
    assert!(status.failures.is_empty(), "{:?}", status.failures);
}

#[test]
fn recording_a_commit_twice_records_it_once() {
    let rollout = two_stages(serde_json::json!({}));
    let world = World::three();
    let decision = next(&rollout, &RolloutStatus::default(), &world.obs(), at(0));
    let work = decision.work.expect("a batch");
    let mut status = decision.status;
    record_commit(&mut status, &work, "c1", at(1));
    record_commit(&mut status, &work, "c1", at(2));
    assert_eq!(status.history.len(), 1);
}

#[test]
fn a_rollout_waits_for_another_that_planned_the_same_environments() {
    let rollout = two_stages(serde_json::json!({}));
    let world = World::three();
    let mut obs = world.obs();
    obs.active_rollouts.insert("checkout-v1".into(), ["prod-b".to_owned()].into());
    let blocked = next(&rollout, &RolloutStatus::default(), &obs, at(0));
    assert_eq!(blocked.status.reason.as_deref(), Some(reasons::BLOCKED));
    assert_eq!(blocked.work, None);
}

mod approval;
mod freeze;
