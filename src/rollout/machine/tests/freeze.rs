//! Freezes in the state machine: which batch they hold, what status and events say,
//! when the rollout looks again, and what goes on during one (verifying, rolling back).

use super::*;
use crate::{api::FreezeWindow, freeze::Calendar};

fn window(from: i64, to: i64, reason: &str) -> FreezeWindow {
    FreezeWindow::once(Time(at(from)), Time(at(to)), Some(reason.to_owned()))
}

/// `next` with these freezes; a commit asked for is "made" as `commit`.
fn step_frozen(
    rollout: &Rollout,
    status: &mut RolloutStatus,
    world: &World,
    freezes: &Calendar,
    now: Timestamp,
    commit: &str,
) -> Decision {
    let mut obs = world.obs();
    obs.freezes = freezes.clone();
    let decision = next(rollout, status, &obs, now);
    *status = decision.status.clone();
    if let Some(work) = &decision.work {
        record_commit(status, work, commit, now);
    }
    decision
}

#[test]
fn a_class_freeze_holds_the_batch_of_that_class_until_it_ends_and_says_so() {
    let rollout = two_stages(serde_json::json!({}));
    let freezes = Calendar::new([("production".to_owned(), vec![window(5, 100, "prod freeze")])], []);
    let mut world = World::three();
    let mut status = RolloutStatus::default();

    // The canary's class is not frozen.
    let canary = step_frozen(&rollout, &mut status, &world, &freezes, at(0), "c1");
    assert_eq!(canary.work.map(|w| w.stage), Some("canary".to_owned()));

    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    let held = step_frozen(&rollout, &mut status, &world, &freezes, at(10), "unused");
    assert_eq!(held.work, None, "production is frozen");
    assert_eq!(reasons_of(&held), ["GatePassed", "Frozen"]);
    assert_eq!((status.phase, status.reason.as_deref()), (Some(RolloutPhase::Waiting), Some(reasons::FROZEN)));
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("EnvironmentClass production: prod freeze"), "{message}");
    let frozen = status.frozen.clone().expect("status.frozen");
    assert_eq!(frozen.opens_at, Some(Time(at(100))));
    assert_eq!(frozen.closes_at, None);
    assert_eq!(held.requeue, Some(Duration::from_secs(90) + Duration::from_millis(100)), "exactly at its end");

    let still = step_frozen(&rollout, &mut status, &world, &freezes, at(99), "unused");
    assert_eq!(still.work, None);
    assert!(still.notes.is_empty(), "one event per wait: {:?}", still.notes);

    let released = step_frozen(&rollout, &mut status, &world, &freezes, at(100), "c2");
    assert_eq!(released.work.clone().map(|w| (w.stage, w.batch)), Some(("production".to_owned(), 1)));
    assert_eq!(reasons_of(&released), ["Unfrozen"]);
    assert_eq!(status.frozen, None);
}

#[test]
fn during_a_cluster_freeze_a_committed_batch_is_still_judged_and_rolled_back() {
    let rollout = two_stages(serde_json::json!({ "onFailure": "Rollback" }));
    let mut world = World::three();
    let mut status = RolloutStatus::default();
    step(&rollout, &mut status, &world, at(0), "c1");
    let freezes = Calendar::new([], [("end-of-year".to_owned(), vec![window(5, 1000, "end of year")])]);

    world.set("stage-1", |r| promoted(r, "c1", "Degraded"));
    let rollback = step_frozen(&rollout, &mut status, &world, &freezes, at(10), "r1");
    let work = rollback.work.expect("the rollback goes on during the freeze");
    assert_eq!((work.action, work.rollback_of.as_deref()), (HistoryAction::Rollback, Some("c1")));
    assert_eq!(status.frozen, None);
}

#[test]
fn an_unreadable_window_holds_the_batch_and_looks_again_later() {
    let mut broken = window(0, 1, "typo");
    broken.start = None;
    broken.end = None;
    broken.schedule = Some("0 17 * * FRYDAY".to_owned());
    broken.duration = Some("1h".parse().expect("a duration"));
    let rollout = two_stages(serde_json::json!({ "freezeWindows": [broken] }));
    let world = World::three();
    let mut status = RolloutStatus::default();
    let held = step_frozen(&rollout, &mut status, &world, &Calendar::default(), at(0), "unused");
    assert_eq!(held.work, None);
    assert_eq!(status.reason.as_deref(), Some(reasons::FROZEN));
    assert!(status.message.as_deref().unwrap_or_default().contains("spec.freezeWindows[0].schedule"), "{status:?}");
    assert_eq!(status.frozen.as_ref().and_then(|f| f.opens_at.clone()), None);
    assert_eq!(held.requeue, Some(BLOCKED_RECHECK + Duration::from_millis(100)));
}
