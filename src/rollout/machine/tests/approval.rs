//! Stage approvals in the state machine: environments of approval classes are
//! planned and their stage waits for an approval; one accepted when the stage starts
//! stays valid for it; a freeze-override approval passes one stage through a freeze.

use super::*;
use crate::{
    api::{FreezeWindow, labels, rollout::StageApproval},
    approval::{Approver, StageRef},
    freeze::Calendar,
    testing::{ApprovalKeys, approval_keys},
};

const PLATFORM: &str = "platform-approvers";

/// `two_stages`, created by alice.
fn created_by_alice(extra: serde_json::Value) -> Rollout {
    let mut rollout = two_stages(extra);
    rollout.metadata.uid = Some("uid-2".into());
    rollout.metadata.annotations = Some([(labels::CREATED_BY_ANNOTATION.to_owned(), "alice".to_owned())].into());
    rollout
}

fn approve(keys: &ApprovalKeys, rollout: &mut Rollout, stage: &str, who: &str, freeze_override: bool) {
    approve_at(keys, rollout, stage, who, freeze_override, at(0));
}

/// [`approve`], issued at `when`.
fn approve_at(
    keys: &ApprovalKeys,
    rollout: &mut Rollout,
    stage: &str,
    who: &str,
    freeze_override: bool,
    when: Timestamp,
) {
    let approver =
        Approver { subject: who.into(), groups: vec![PLATFORM.into(), "payments-leads".into()], ..Default::default() };
    let target = StageRef {
        namespace: "payments".into(),
        name: rollout.metadata.name.clone().unwrap_or_default(),
        uid: rollout.metadata.uid.clone().unwrap_or_default(),
        stage: stage.into(),
        freeze_override,
    };
    let token = keys.issuer.issue_stage(&approver, &target, &rollout.spec, when).expect("a token");
    rollout.spec.approvals.retain(|a| a.stage != stage);
    rollout.spec.approvals.push(StageApproval { stage: stage.into(), token });
}

/// Observations where production needs an approval from platform-approvers.
fn obs(world: &World, keys: &ApprovalKeys, freezes: Calendar) -> Observations {
    let mut obs = world.obs();
    obs.approval_classes.insert("production".into(), vec![PLATFORM.into()]);
    obs.verifier = Some(Arc::new(keys.verifier.clone()));
    obs.owners = crate::approval::TenantOwners {
        tenant: "payments".into(),
        users: vec![],
        groups: vec!["payments-leads".into()],
    };
    obs.freezes = freezes;
    obs
}

fn go(rollout: &Rollout, status: &mut RolloutStatus, obs: &Observations, now: Timestamp, commit: &str) -> Decision {
    let decision = next(rollout, status, obs, now);
    *status = decision.status.clone();
    if let Some(work) = &decision.work {
        record_commit(status, work, commit, now);
    }
    decision
}

/// Through the canary: production is next.
fn past_the_canary(rollout: &Rollout, world: &mut World, obs: impl Fn(&World) -> Observations) -> RolloutStatus {
    let mut status = RolloutStatus::default();
    let canary = go(rollout, &mut status, &obs(world), at(0), "c1");
    assert_eq!(canary.work.map(|w| w.stage), Some("canary".to_owned()));
    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    status
}

/// Through production's first batch (bob approved it, no break-glass): batch 2 is next.
fn past_production_batch_one(keys: &ApprovalKeys) -> (Rollout, World, RolloutStatus) {
    let mut rollout = created_by_alice(serde_json::json!({}));
    let mut world = World::three();
    let mut status = past_the_canary(&rollout, &mut world, |w| obs(w, keys, Calendar::default()));
    approve(keys, &mut rollout, "production", "bob", false);
    let first = go(&rollout, &mut status, &obs(&world, keys, Calendar::default()), at(10), "c2");
    assert_eq!(first.work.map(|w| (w.stage, w.batch, w.freeze_override)), Some(("production".to_owned(), 1, None)));
    world.set("prod-a", |r| promoted(r, "c2", "Healthy"));
    (rollout, world, status)
}

#[test]
fn a_stage_of_an_approval_class_is_planned_and_waits_for_its_approvers_whatever_the_rollout_says() {
    let keys = approval_keys();
    let rollout = created_by_alice(serde_json::json!({}));
    let mut world = World::three();
    let mut status = past_the_canary(&rollout, &mut world, |w| obs(w, &keys, Calendar::default()));
    assert_eq!(status.plan.as_ref().map(|p| (p.environments, p.skipped)), Some((3, 0)));

    let waiting = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(10), "unused");
    assert_eq!(waiting.work, None, "production needs an approval though requireApproval is off");
    assert_eq!(
        (status.phase, status.reason.as_deref()),
        (Some(RolloutPhase::Waiting), Some(reasons::AWAITING_APPROVAL))
    );
    assert_eq!(
        status.message.as_deref(),
        Some(
            "stage production needs an approval from a member of [\"platform-approvers\"] (approvers of class \"production\"): ask them to run `berth approve rollout checkout-v2 --stage production -n payments` and add the token to spec.approvals"
        )
    );
    assert!(reasons_of(&waiting).contains(&"AwaitingApproval"), "{:?}", waiting.notes);
    let again = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(11), "unused");
    assert!(again.notes.is_empty(), "one event per wait: {:?}", again.notes);
}

#[test]
fn an_approval_accepted_when_the_stage_starts_is_recorded_and_stays_valid_for_the_stage() {
    let keys = approval_keys();
    let mut rollout = created_by_alice(serde_json::json!({}));
    let mut world = World::three();
    let mut status = past_the_canary(&rollout, &mut world, |w| obs(w, &keys, Calendar::default()));
    approve(&keys, &mut rollout, "production", "bob", false);

    let started = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(10), "c2");
    let work = started.work.clone().expect("production batch 1");
    assert_eq!((work.stage.as_str(), work.batch, work.freeze_override.clone()), ("production", 1, None));
    assert!(reasons_of(&started).contains(&"ApprovalAccepted"), "{:?}", started.notes);
    let accepted = status.stages[1].approval.clone().expect("recorded");
    assert_eq!((accepted.approver.as_str(), accepted.key_id.as_str()), ("bob", keys.issuer.kid().as_str()));
    assert_eq!((accepted.approved_at.clone(), accepted.accepted_at.clone()), (Time(at(0)), Time(at(10))));
    assert!(!accepted.freeze_override);

    // The token is gone and would have expired by now: the stage goes on with the
    // approval it started with.
    rollout.spec.approvals.clear();
    world.set("prod-a", |r| promoted(r, "c2", "Healthy"));
    let later = at(2 * 3600);
    let second = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), later, "c3");
    assert_eq!(second.work.map(|w| (w.stage, w.batch)), Some(("production".to_owned(), 2)));
}

#[test]
fn the_creators_approval_is_rejected_with_an_event_and_the_stage_keeps_waiting() {
    let keys = approval_keys();
    let mut rollout = created_by_alice(serde_json::json!({}));
    let mut world = World::three();
    let mut status = past_the_canary(&rollout, &mut world, |w| obs(w, &keys, Calendar::default()));
    approve(&keys, &mut rollout, "production", "alice", false);
    let refused = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(10), "unused");
    assert_eq!(refused.work, None);
    let note = refused.notes.iter().find(|n| n.reason == "ApprovalRejected").expect("an ApprovalRejected event");
    assert!(note.warning);
    assert!(note.message.contains("approver \"alice\" created this rollout"), "{}", note.message);
    assert_eq!(status.reason.as_deref(), Some(reasons::AWAITING_APPROVAL));
    assert!(status.stages[1].approval.is_none());
}

#[test]
fn require_approval_without_an_approval_class_waits_for_an_owner_of_the_tenant() {
    let keys = approval_keys();
    let mut rollout = created_by_alice(serde_json::json!({
        "stages": [
            { "name": "canary", "classes": ["staging"], "requireApproval": true },
            { "name": "production", "classes": ["production"], "batchSize": 1 },
        ],
    }));
    let world = World::three();
    let mut status = RolloutStatus::default();
    let waiting = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(0), "unused");
    assert_eq!(waiting.work, None);
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("needs an approval from an owner of tenant \"payments\""),
        "{status:?}"
    );
    // dave is in the tenant's owner group.
    approve(&keys, &mut rollout, "canary", "dave", false);
    let started = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(1), "c1");
    assert_eq!(started.work.map(|w| w.stage), Some("canary".to_owned()));
    assert_eq!(status.stages[0].approval.as_ref().map(|a| a.approver.as_str()), Some("dave"));
}

#[test]
fn a_freeze_override_approval_passes_its_stage_through_a_freeze_and_says_so_everywhere() {
    let keys = approval_keys();
    let freezes = || {
        let window = FreezeWindow::once(Time(at(5)), Time(at(100_000)), Some("end of year".to_owned()));
        Calendar::new([], [("end-of-year".to_owned(), vec![window])])
    };
    let mut rollout = created_by_alice(serde_json::json!({}));
    let mut world = World::three();
    let mut status = past_the_canary(&rollout, &mut world, |w| obs(w, &keys, freezes()));

    // An approval without the override leaves the freeze in place.
    approve(&keys, &mut rollout, "production", "bob", false);
    let held = go(&rollout, &mut status, &obs(&world, &keys, freezes()), at(10), "unused");
    assert_eq!(held.work, None);
    assert_eq!(status.reason.as_deref(), Some(reasons::FROZEN));

    approve(&keys, &mut rollout, "production", "bob", true);
    let broken = go(&rollout, &mut status, &obs(&world, &keys, freezes()), at(20), "c2");
    let work = broken.work.clone().expect("production commits during the freeze");
    assert_eq!((work.stage.as_str(), work.freeze_override.as_deref()), ("production", Some("bob")));
    let note = broken.notes.iter().find(|n| n.reason == "FreezeOverridden").expect("a FreezeOverridden event");
    assert!(note.warning && note.message.contains("break-glass approval by bob"), "{note:?}");
    assert!(status.stages[1].approval.as_ref().is_some_and(|a| a.freeze_override));
    let batch = status.stages[1].current.clone().expect("the batch");
    assert_eq!(batch.freeze_override.as_deref(), Some("bob"));

    // A commit in flight repeats with the same trailer.
    let mut marked = status.clone();
    if let Some(current) = marked.stages[1].current.as_mut() {
        current.step = BatchStep::Marked;
    }
    let repeat = next(&rollout, &marked, &obs(&world, &keys, freezes()), at(21));
    assert_eq!(repeat.work.and_then(|w| w.freeze_override), Some("bob".to_owned()));

    // The whole stage goes through; the next stage would not.
    world.set("prod-a", |r| promoted(r, "c2", "Healthy"));
    let second = go(&rollout, &mut status, &obs(&world, &keys, freezes()), at(30), "c3");
    assert_eq!(second.work.map(|w| (w.batch, w.freeze_override)), Some((2, Some("bob".to_owned()))));
}

#[test]
fn an_owners_freeze_override_breaks_no_freeze() {
    let keys = approval_keys();
    let freezes = || {
        let window = FreezeWindow::once(Time(at(-5)), Time(at(100_000)), Some("end of year".to_owned()));
        Calendar::new([], [("end-of-year".to_owned(), vec![window])])
    };
    let mut rollout = created_by_alice(serde_json::json!({
        "stages": [{ "name": "canary", "classes": ["staging"], "requireApproval": true }],
    }));
    approve(&keys, &mut rollout, "canary", "dave", true);
    let world = World::three();
    let mut status = RolloutStatus::default();
    let held = go(&rollout, &mut status, &obs(&world, &keys, freezes()), at(0), "unused");
    assert_eq!(held.work, None);
    assert_eq!(status.reason.as_deref(), Some(reasons::FROZEN));
}

#[test]
fn an_environment_re_created_in_an_approval_class_under_a_planned_name_is_left_alone() {
    let keys = approval_keys();
    let rollout = created_by_alice(serde_json::json!({ "stages": [
        { "name": "canary", "classes": ["staging"], "batchSize": 1 },
        { "name": "production", "classes": ["production"], "batchSize": 1 },
    ]}));
    let mut world = World {
        requests: vec![request("stage-1", "staging"), request("stage-2", "staging"), request("prod-a", "production")],
    };
    let mut status = RolloutStatus::default();
    let first = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(0), "c1");
    assert_eq!(first.work.map(|w| w.environments), Some(vec!["stage-1".to_owned()]));
    world.set("stage-1", |r| promoted(r, "c1", "Healthy"));
    // The canary needed no approval; stage-2 is deleted and re-created under its
    // planned name as a production environment before the canary's second batch.
    world.set("stage-2", |mut r| {
        r.spec.class = "production".into();
        r
    });
    let second = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(10), "c2");
    let promoted_now = second.work.map(|w| w.environments).unwrap_or_default();
    assert!(!promoted_now.contains(&"stage-2".to_owned()), "promoted without a production approval: {promoted_now:?}");
}

#[test]
fn a_change_to_the_spec_after_the_stage_started_voids_its_approval_for_the_batches_to_come() {
    let keys = approval_keys();
    let (mut rollout, mut world, mut status) = past_production_batch_one(&keys);

    // alice changes what bob approved (roll back on failure now).
    rollout.spec.on_failure = crate::api::rollout::FailurePolicy::Rollback;
    let held = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(20), "unused");
    assert_eq!(held.work, None, "batch 2 waits for an approval of the spec as it is now");
    assert_eq!(status.reason.as_deref(), Some(reasons::AWAITING_APPROVAL));
    let note = held.notes.iter().find(|n| n.reason == "ApprovalRejected").expect("an ApprovalRejected event");
    assert!(note.message.contains("the spec changed after it was approved"), "{}", note.message);

    // bob approves the new spec: the rest of the stage goes on, under his new approval.
    approve(&keys, &mut rollout, "production", "bob", false);
    let second = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(30), "c3");
    assert_eq!(second.work.map(|w| (w.stage, w.batch)), Some(("production".to_owned(), 2)));
    let digest = crate::approval::digest::rollout_digest(&rollout.spec);
    assert_eq!(status.stages[1].approval.as_ref().and_then(|a| a.spec_digest.clone()), Some(digest));

    // Pausing and resuming, or dropping the token, change nothing an approval covers.
    let approval = status.stages[1].approval.clone();
    rollout.spec.paused = true;
    let _ = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(35), "unused");
    rollout.spec.paused = false;
    rollout.spec.approvals.clear();
    world.set("prod-b", |r| promoted(r, "c3", "Healthy"));
    let _ = go(&rollout, &mut status, &obs(&world, &keys, Calendar::default()), at(40), "c4");
    assert_eq!(status.stages[1].approval, approval);
    assert_ne!(status.reason.as_deref(), Some(reasons::AWAITING_APPROVAL));
}

#[test]
fn revoking_the_token_of_an_accepted_approval_holds_the_batches_still_to_come() {
    let keys = approval_keys();
    let (mut rollout, world, mut status) = past_production_batch_one(&keys);
    let token_id = status.stages[1].approval.as_ref().and_then(|a| a.token_id.clone()).expect("the token id recorded");
    let list = crate::approval::Revocations::parse(&token_id);
    let revoking = |world: &World| {
        let mut obs = obs(world, &keys, Calendar::default());
        let verifier = keys.verifier.clone().with_revocations(crate::reload::Reloading::fixed(list.clone()));
        obs.verifier = Some(Arc::new(verifier));
        obs
    };
    let held = go(&rollout, &mut status, &revoking(&world), at(20), "unused");
    assert_eq!(held.work, None, "batch 2 waits for a new approval");
    assert_eq!(status.reason.as_deref(), Some(reasons::AWAITING_APPROVAL));
    let note = held.notes.iter().find(|n| n.reason == "ApprovalRejected").expect("an ApprovalRejected event");
    assert!(note.message.contains(&format!("it was revoked (token id {token_id})")), "{}", note.message);

    // A new approval (another token id) lets the rest of the stage go on.
    approve(&keys, &mut rollout, "production", "bob", false);
    let second = go(&rollout, &mut status, &revoking(&world), at(30), "c3");
    assert_eq!(second.work.map(|w| (w.stage, w.batch)), Some(("production".to_owned(), 2)));
}

/// A freeze from `at(5)` on, for an incident.
fn incident_freeze() -> Calendar {
    let window = FreezeWindow::once(Time(at(5)), Time(at(100_000)), Some("incident".to_owned()));
    Calendar::new([], [("incident".to_owned(), vec![window])])
}

/// Production's first batch committed through [`incident_freeze`] by bob's break-glass
/// (issued at `at(0)`, an hour's lifetime); batch 2 is next.
fn through_a_freeze_by_break_glass(keys: &ApprovalKeys) -> (Rollout, World, RolloutStatus) {
    let mut rollout = created_by_alice(serde_json::json!({}));
    let mut world = World::three();
    let mut status = past_the_canary(&rollout, &mut world, |w| obs(w, keys, incident_freeze()));
    approve(keys, &mut rollout, "production", "bob", true);
    let first = go(&rollout, &mut status, &obs(&world, keys, incident_freeze()), at(20), "c2");
    assert_eq!(first.work.map(|w| w.freeze_override), Some(Some("bob".to_owned())));
    (rollout, world, status)
}

#[test]
fn a_break_glass_approval_lets_batches_through_a_freeze_only_until_its_token_expires() {
    let keys = approval_keys();
    let (mut rollout, mut world, mut status) = through_a_freeze_by_break_glass(&keys);
    let expires = status.stages[1].approval.as_ref().and_then(|a| a.expires_at.clone()).expect("its expiry");
    assert_eq!(expires, Time(at(3600)), "the token's lifetime (an hour)");
    world.set("prod-a", |r| promoted(r, "c2", "Healthy"));

    // Two hours on, the freeze still holds and the token expired: batch 2 waits.
    let held = go(&rollout, &mut status, &obs(&world, &keys, incident_freeze()), at(2 * 3600), "unused");
    assert_eq!(held.work, None);
    assert_eq!(status.reason.as_deref(), Some(reasons::FROZEN));
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains("the break-glass approval by bob expired at")
            && message.contains("berth approve rollout checkout-v2 --stage production -n payments --override-freeze"),
        "{message}"
    );

    // bob breaks the glass again, as the message says: the new token replaces the record.
    let renewed = at(2 * 3600 + 60);
    approve_at(&keys, &mut rollout, "production", "bob", true, renewed);
    let second = go(&rollout, &mut status, &obs(&world, &keys, incident_freeze()), renewed, "c3");
    assert_eq!(second.work.map(|w| (w.batch, w.freeze_override)), Some((2, Some("bob".to_owned()))));
    let record = status.stages[1].approval.clone().expect("the renewed record");
    assert_eq!((record.approved_at, record.expires_at), (Time(renewed), Some(Time(at(2 * 3600 + 60 + 3600)))));
}

#[test]
fn a_break_glass_asked_for_mid_stage_lets_the_rest_of_the_stage_through_a_freeze() {
    let keys = approval_keys();
    let (mut rollout, world, mut status) = past_production_batch_one(&keys);

    // An incident freeze is on; bob lets the stage finish through it.
    let held = go(&rollout, &mut status, &obs(&world, &keys, incident_freeze()), at(20), "unused");
    assert_eq!((held.work, status.reason.as_deref()), (None, Some(reasons::FROZEN)));
    approve_at(&keys, &mut rollout, "production", "bob", true, at(30));
    let second = go(&rollout, &mut status, &obs(&world, &keys, incident_freeze()), at(30), "c3");
    assert!(reasons_of(&second).contains(&"ApprovalAccepted"), "{:?}", second.notes);
    assert_eq!(second.work.map(|w| (w.batch, w.freeze_override)), Some((2, Some("bob".to_owned()))));
}

#[test]
fn a_plain_approval_does_not_take_the_place_of_a_running_break_glass() {
    let keys = approval_keys();
    let (mut rollout, mut world, mut status) = through_a_freeze_by_break_glass(&keys);
    world.set("prod-a", |r| promoted(r, "c2", "Healthy"));
    let glass = status.stages[1].approval.clone();

    // bob approves again without the override (it replaces the token in spec.approvals).
    approve_at(&keys, &mut rollout, "production", "bob", false, at(30));
    let second = go(&rollout, &mut status, &obs(&world, &keys, incident_freeze()), at(40), "c3");
    assert_eq!(second.work.map(|w| w.freeze_override), Some(Some("bob".to_owned())), "still through the freeze");
    assert_eq!(status.stages[1].approval, glass, "the break-glass record stays");
}
