//! The rollout's state machine (pure): `next(rollout, status, observations, now)`
//! gives the next status, at most one batch of work (a commit), the events to publish
//! and when to look again. The controller only does the I/O around it.
//!
//! Per batch: plan (once) → mark → commit → confirm → verify (gate, soak) → next
//! batch. A failed stage pauses or rolls back (forward commits restoring the previous
//! revision, newest batch first). `paused` finishes the batch in flight and starts
//! nothing new; `abort` ends the rollout at once (a batch marked but not confirmed
//! goes back to its previous revision: see `PromotionState::runs_previous`).
//!
//! Longer than the ~400 lines the project aims for: every step shares the `Step`
//! builder (status, notes, wake-up). The next cut is one file per phase (planning,
//! verifying a batch, rolling back, the summary), each an `impl Step` block.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{
    gate::{self, Signal},
    metric,
    plan::{self, Plan},
};
use crate::api::{
    EnvironmentRequest, Rollout,
    conditions::{ConditionStatus, Observation, set_condition},
    rollout::{
        AcceptedApproval, BatchRef, BatchStatus, BatchStep, FailurePolicy, GateFailure, GateTally, HistoryAction,
        HistoryEntry, MAX_FAILURE_MESSAGE, MAX_FAILURES, MAX_HISTORY, RETRY_ANNOTATION, RollbackScope, RollbackStatus,
        RolloutPhase, RolloutStatus, StagePhase,
    },
};
use crate::approval::{TenantOwners, Verifier};
use crate::policy::stage_approval::{self, StageDenial};

/// Default time an environment has to become healthy after its batch's commit.
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// How often a rollout blocked by another one looks again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(30);

/// How often a batch waiting for its pull request to merge looks again (a merge is
/// not a Kubernetes event: nothing wakes the rollout when it happens).
pub const MERGE_RECHECK: Duration = Duration::from_secs(20);

/// What a batch step that committed nothing records as its commit.
pub const NO_COMMIT: &str = "none";

/// What the controller sees besides the rollout.
#[derive(Debug, Default)]
pub struct Observations {
    /// The requests of the rollout's namespace, by name.
    pub requests: BTreeMap<String, Arc<EnvironmentRequest>>,
    pub argocd_installed: bool,
    /// Classes whose environments Argo CD does not sync on its own.
    pub manual_sync_classes: BTreeSet<String>,
    /// Classes whose approval is required, with their approver groups: a stage with
    /// environments of one waits for an approval from its approvers.
    pub approval_classes: BTreeMap<String, Vec<String>>,
    /// The owners of the rollout's tenant: who approves a stage that sets
    /// `requireApproval` when no class of it requires an approval.
    pub owners: TenantOwners,
    /// Checks stage approvals; without it no stage approval is valid.
    pub verifier: Option<Arc<Verifier>>,
    /// Other rollouts of the namespace that are not finished, each with the
    /// environments it planned (empty while not planned).
    pub active_rollouts: BTreeMap<String, BTreeSet<String>>,
    /// Pull-request mode: batch commits land on a promotion branch and count only
    /// once merged into the watched branch.
    pub pull_requests: bool,
    /// Pull-request mode: batch commits known to be on the watched branch (merged);
    /// a commit not known to be is taken as not merged yet.
    pub merged: BTreeSet<String>,
    /// The classes' and the cluster's freeze windows.
    pub freezes: crate::freeze::Calendar,
}

/// One batch commit for the controller to make: mark → commit → confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Work {
    pub action: HistoryAction,
    pub stage: String,
    pub batch: u32,
    pub of: u32,
    pub environments: Vec<String>,
    /// For a rollback: the batch commit it undoes.
    pub rollback_of: Option<String>,
    /// Only find the batch's commit and confirm it, never commit: the rollout was
    /// aborted with this batch marked (its commit may have landed).
    pub settle: bool,
    /// Break-glass: the approver whose freeze-override approval lets this batch
    /// commit during a freeze (a `Berth-Freeze-Override` trailer).
    pub freeze_override: Option<String>,
}

/// An event to publish on the rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: RolloutStatus,
    pub work: Option<Work>,
    pub notes: Vec<Note>,
    /// Look again after this long at the latest (a soak, deadline or window ends).
    pub requeue: Option<Duration>,
}

/// Reasons in status and events.
pub mod reasons {
    pub const PLANNED: &str = "Planned";
    pub const NOT_BEFORE: &str = "NotBefore";
    pub const FROZEN: &str = "Frozen";
    pub const UNFROZEN: &str = "Unfrozen";
    pub const BLOCKED: &str = "Blocked";
    pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
    pub const APPROVAL_ACCEPTED: &str = "ApprovalAccepted";
    pub const APPROVAL_REJECTED: &str = "ApprovalRejected";
    pub const FREEZE_OVERRIDDEN: &str = "FreezeOverridden";
    pub const AWAITING_MERGE: &str = "AwaitingMerge";
    pub const USER_PAUSED: &str = "UserPaused";
    pub const COMMITTING: &str = "Committing";
    pub const VERIFYING: &str = "Verifying";
    pub const SOAKING: &str = "Soaking";
    pub const GATE_PASSED: &str = "GatePassed";
    pub const GATE_FAILED: &str = "GateFailed";
    pub const RETRIED: &str = "Retried";
    pub const ROLLING_BACK: &str = "RollingBack";
    pub const ROLLED_BACK: &str = "RolledBack";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const ABORTED: &str = "Aborted";
    pub const INVALID: &str = "Invalid";
}

struct Step<'a> {
    rollout: &'a Rollout,
    obs: &'a Observations,
    now: Timestamp,
    status: RolloutStatus,
    notes: Vec<Note>,
    requeue: Option<Duration>,
}

/// The next step of `rollout` from `old` (its current status).
pub fn next(rollout: &Rollout, old: &RolloutStatus, obs: &Observations, now: Timestamp) -> Decision {
    let mut step = Step { rollout, obs, now, status: old.clone(), notes: Vec::new(), requeue: None };
    step.status.observed_generation = rollout.metadata.generation;
    let work = step.advance();
    step.finish(old);
    Decision { status: step.status, work, notes: step.notes, requeue: step.requeue }
}

/// Records that `work`'s commit landed as `commit` (the batch is now verified, or
/// the rollback moves on).
pub fn record_commit(status: &mut RolloutStatus, work: &Work, commit: &str, now: Timestamp) {
    // Recorded already (a reconcile that ran on a cached status from before the last write).
    let done = |h: &HistoryEntry| h.stage == work.stage && h.batch == work.batch && h.action == work.action;
    if status.history.iter().any(|h| done(h) && h.commit == commit) {
        return;
    }
    let at = Time(now);
    if work.settle {
        settle_recorded(status, work, commit, &at);
        return;
    }
    match work.action {
        HistoryAction::Promote => {
            if let Some(batch) =
                status.stages.iter_mut().find(|s| s.name == work.stage).and_then(|s| s.current.as_mut())
            {
                batch.step = BatchStep::Committed;
                batch.commit = Some(commit.to_owned());
                batch.committed_at = Some(at.clone());
            }
        }
        HistoryAction::Rollback => {
            if let Some(rollback) = status.rollback.as_mut() {
                rollback.current = None;
                rollback.step = None;
                rollback.done += 1;
            }
            if let Some(stage) = status.stages.iter_mut().find(|s| s.name == work.stage) {
                stage.counts.rolled_back += u32::try_from(work.environments.len()).unwrap_or(u32::MAX);
                stage.phase = StagePhase::RolledBack;
            }
        }
    }
    status.history.push(HistoryEntry {
        stage: work.stage.clone(),
        batch: work.batch,
        action: work.action,
        commit: commit.to_owned(),
        environments: u32::try_from(work.environments.len()).unwrap_or(u32::MAX),
        at,
    });
    let excess = status.history.len().saturating_sub(MAX_HISTORY);
    status.history.drain(..excess);
}

/// An aborted rollout's batch in flight, settled: recorded if its commit landed (the
/// batch is over either way: nothing verifies it any more).
fn settle_recorded(status: &mut RolloutStatus, work: &Work, commit: &str, at: &Time) {
    let step = format!("{} batch {}/{}", work.stage, work.batch, work.of);
    let landed = commit != NO_COMMIT;
    match work.action {
        HistoryAction::Promote => {
            if let Some(stage) = status.stages.iter_mut().find(|s| s.name == work.stage) {
                stage.current = None;
                stage.batches_done += u32::from(landed);
            }
        }
        HistoryAction::Rollback => {
            if let Some(rollback) = status.rollback.as_mut() {
                rollback.current = None;
                rollback.step = None;
                rollback.done += u32::from(landed);
            }
        }
    }
    status.message = Some(if landed {
        format!("aborted: nothing more is committed; {step} had landed in {} and stays", short(commit))
    } else {
        format!("aborted: nothing more is committed; {step} never landed, its environments keep what they ran")
    });
    if landed {
        status.history.push(HistoryEntry {
            stage: work.stage.clone(),
            batch: work.batch,
            action: work.action,
            commit: commit.to_owned(),
            environments: u32::try_from(work.environments.len()).unwrap_or(u32::MAX),
            at: at.clone(),
        });
        let excess = status.history.len().saturating_sub(MAX_HISTORY);
        status.history.drain(..excess);
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// The trailers that name a batch's commit, so a new leader can find it again.
pub fn step_trailer(work: &Work) -> String {
    match work.action {
        HistoryAction::Promote => format!("{}/{}", work.stage, work.batch),
        HistoryAction::Rollback => format!("{}/{}/rollback", work.stage, work.batch),
    }
}

fn counted_batches(count: u32) -> String {
    super::counted(usize::try_from(count).unwrap_or(usize::MAX), "batch")
}

fn to_std(d: &crate::api::GoDuration) -> Option<Duration> {
    d.parse().ok()
}

fn add(at: Timestamp, d: Duration) -> Timestamp {
    k8s_openapi::jiff::SignedDuration::try_from(d).ok().and_then(|d| at.checked_add(d).ok()).unwrap_or(at)
}

impl Step<'_> {
    fn set(&mut self, phase: RolloutPhase, reason: &str, message: impl Into<String>) {
        self.status.phase = Some(phase);
        self.status.reason = Some(reason.to_owned());
        self.status.message = Some(message.into());
    }

    fn note(&mut self, warning: bool, reason: &'static str, message: impl Into<String>) {
        self.notes.push(Note { warning, reason: reason.to_owned(), message: message.into() });
    }

    fn wake_at(&mut self, at: Timestamp) {
        let after = Duration::try_from(at.duration_since(self.now)).unwrap_or(Duration::ZERO);
        let after = after + Duration::from_millis(100);
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    fn advance(&mut self) -> Option<Work> {
        let phase = self.status.phase;
        if phase == Some(RolloutPhase::Aborted) {
            return self.settle();
        }
        if phase.is_some_and(RolloutPhase::is_terminal) {
            return None;
        }
        if self.rollout.spec.abort {
            self.set(RolloutPhase::Aborted, reasons::ABORTED, "aborted: nothing more is committed");
            return self.settle();
        }
        if self.status.plan.is_none() && !self.make_plan() {
            return None;
        }
        if self.status.rollback.is_some() {
            return self.roll_back();
        }
        // A commit in flight finishes first, whatever else changed (it may be on the
        // branch already).
        if let Some(work) = self.in_flight() {
            return Some(work);
        }
        loop {
            let Some(index) = self.status.stages.iter().position(|s| s.phase != StagePhase::Succeeded) else {
                let total = self.planned();
                self.set(
                    RolloutPhase::Succeeded,
                    reasons::SUCCEEDED,
                    format!("{} promoted", super::counted(total, "environment")),
                );
                self.status.current_stage = None;
                return None;
            };
            self.status.current_stage = Some(self.status.stages[index].name.clone());
            if self.status.stages[index].current.is_some() {
                match self.verify(index) {
                    Verified::Done => continue,
                    Verified::Waiting => return None,
                    Verified::Failed => return self.fail(index),
                }
            }
            let stage = &self.status.stages[index];
            if stage.batches_done >= plan::batches(stage) {
                self.status.stages[index].phase = StagePhase::Succeeded;
                continue;
            }
            match self.start_batch(index) {
                Started::Work(work) => return Some(work),
                Started::Waiting => return None,
                // Nothing left of the batch to promote: on to the next.
                Started::Empty => continue,
            }
        }
    }

    fn planned(&self) -> usize {
        self.status.stages.iter().map(|s| s.environments.len()).sum()
    }

    /// Plans the rollout once; `false` while it cannot be planned yet.
    fn make_plan(&mut self) -> bool {
        let spec = &self.rollout.spec;
        if let Some(at) = spec.not_before.as_ref().filter(|at| at.0 > self.now) {
            // No countdown in the message: it would change the status at every look.
            let message = format!("waiting for spec.notBefore {}: nothing is planned or committed before", at.0);
            self.set(RolloutPhase::Waiting, reasons::NOT_BEFORE, message);
            self.wake_at(at.0);
            return false;
        }
        let plan = match plan::plan(spec, self.obs.requests.values().map(AsRef::as_ref)) {
            Ok(plan) => plan,
            Err(error) => {
                self.set(RolloutPhase::Failed, reasons::INVALID, format!("{error}; fix the spec"));
                return false;
            }
        };
        if let Some((name, other)) = self.busy(&plan).into_iter().next() {
            self.set(
                RolloutPhase::Waiting,
                reasons::BLOCKED,
                format!("environment {name} is in rollout {other}, which has not finished; this one starts after it"),
            );
            // Also woken when that rollout's environments change; this bounds the wait.
            self.wake_at(add(self.now, BLOCKED_RECHECK));
            return false;
        }
        let total = plan.environments();
        self.status.plan = Some(plan.summary(Time(self.now)));
        let skipped = plan.skipped.len();
        self.status.stages = plan.stages;
        self.note(
            false,
            reasons::PLANNED,
            format!("planned {} ({skipped} skipped)", super::counted(total, "environment")),
        );
        true
    }

    /// Planned environments that another unfinished rollout planned or holds.
    fn busy(&self, plan: &Plan) -> Vec<(String, String)> {
        let this = self.rollout.metadata.name.as_deref().unwrap_or_default();
        plan.stages
            .iter()
            .flat_map(|s| &s.environments)
            .filter_map(|name| {
                if let Some((other, _)) = self.obs.active_rollouts.iter().find(|(_, planned)| planned.contains(name)) {
                    return Some((name.clone(), other.clone()));
                }
                let promotion = self.obs.requests.get(name)?.promotion_in_effect()?;
                (promotion.rollout != this && self.obs.active_rollouts.contains_key(&promotion.rollout))
                    .then(|| (name.clone(), promotion.rollout.clone()))
            })
            .collect()
    }

    /// The batch whose commit was marked but not confirmed (a crash, or a failed push).
    fn in_flight(&mut self) -> Option<Work> {
        let stage =
            self.status.stages.iter().find(|s| s.current.as_ref().is_some_and(|b| b.step == BatchStep::Marked))?;
        let batch = stage.current.as_ref()?;
        let work = Work {
            action: HistoryAction::Promote,
            stage: stage.name.clone(),
            batch: batch.number,
            of: batch.of,
            environments: batch.environments.clone(),
            rollback_of: None,
            settle: false,
            freeze_override: batch.freeze_override.clone(),
        };
        self.status.current_stage = Some(stage.name.clone());
        let message = format!("committing {} batch {}/{}", work.stage, work.batch, work.of);
        self.set(RolloutPhase::Progressing, reasons::COMMITTING, message);
        Some(work)
    }

    /// Aborted with a batch marked: its commit may have landed (pushed, then the
    /// confirmation lost), so it is looked up and confirmed, never made. A batch
    /// whose commit never landed keeps running the previous revision (see
    /// `PromotionState::runs_previous`).
    fn settle(&mut self) -> Option<Work> {
        let rollback_marked = self.status.rollback.as_ref().is_some_and(|r| r.step == Some(BatchStep::Marked));
        let mut work = match self.in_flight() {
            Some(work) => work,
            None if rollback_marked => match self.next_rollback() {
                Started::Work(work) => work,
                Started::Waiting | Started::Empty => return None,
            },
            None => return None,
        };
        work.settle = true;
        let message = format!(
            "aborted: nothing more is committed (confirming whether {} batch {}/{} landed)",
            work.stage, work.batch, work.of
        );
        self.set(RolloutPhase::Aborted, reasons::ABORTED, message);
        Some(work)
    }

    /// Environments of stage `index`'s batch still to promote: deleted or held ones
    /// are left alone, and so is one whose class requires an approval the stage's
    /// approval was not checked against (a request re-created under a planned name
    /// in another class, or missing when the stage started): fail closed.
    fn eligible(&self, index: usize, names: &[String]) -> Vec<String> {
        let covered = self.status.stages[index].approval.as_ref().map_or(&[][..], |a| a.classes.as_slice());
        names
            .iter()
            .filter(|name| {
                self.obs.requests.get(*name).is_some_and(|r| {
                    crate::policy::budget::is_provisioned(r)
                        && r.metadata.labels.as_ref().and_then(|l| l.get(crate::api::rollout::HOLD_LABEL))
                            != Some(&"true".to_owned())
                        && (!self.obs.approval_classes.contains_key(&r.spec.class) || covered.contains(&r.spec.class))
                })
            })
            .cloned()
            .collect()
    }

    /// Whether a freeze window holds stage `index`'s next batch (see
    /// [`crate::freeze`]); if so the rollout waits, woken when the freeze ends.
    /// `override_by`: the approver of the stage's freeze-override approval
    /// (break-glass), which lets the batch commit anyway.
    fn frozen(&mut self, index: usize, override_by: Option<&BreakGlass>) -> Freeze {
        let stage = &self.status.stages[index];
        let (name, number) = (stage.name.clone(), stage.batches_done + 1);
        let batch = plan::batch(stage, number);
        let classes = batch.iter().filter_map(|n| self.obs.requests.get(n)).map(|r| r.spec.class.as_str());
        let verdict = self.obs.freezes.for_batch(&self.rollout.spec.freeze_windows, classes).check(self.now);
        if !verdict.frozen() {
            if self.status.reason.as_deref() == Some(reasons::FROZEN) {
                self.note(false, reasons::UNFROZEN, "no freeze window covers the next batch any more");
            }
            return Freeze::Open;
        }
        let mut message = verdict.message("the next batch");
        match override_by {
            Some(BreakGlass { approver, expired: false, .. }) => {
                let message = format!(
                    "{name} batch {number} commits during a freeze: break-glass approval by {approver} ({})",
                    verdict.message("the batch")
                );
                self.note(true, reasons::FREEZE_OVERRIDDEN, message);
                return Freeze::Overridden(approver.clone());
            }
            Some(BreakGlass { approver, expired: true, expires_at }) => {
                let at = expires_at.as_ref().map_or_else(|| "an unrecorded time".to_owned(), |at| at.0.to_string());
                message.push_str(&format!(
                    "; the break-glass approval by {approver} expired at {at}: to go on during the freeze, ask a class approver for a new one (`berth approve rollout {} --stage {name} -n {} --override-freeze`)",
                    self.rollout.metadata.name.as_deref().unwrap_or_default(),
                    self.rollout.metadata.namespace.as_deref().unwrap_or_default()
                ));
            }
            None => {}
        }
        self.set(RolloutPhase::Waiting, reasons::FROZEN, message);
        self.wake_at(verdict.opens_at.unwrap_or_else(|| add(self.now, BLOCKED_RECHECK)));
        self.status.frozen = Some(verdict.status());
        Freeze::Held
    }

    /// Whether stage `index` may start as far as approvals go: the approval
    /// accepted when it started, a valid one in `spec.approvals` (checked now), no
    /// need for one, or why it waits.
    fn approval(&self, index: usize) -> Approval {
        let stage = &self.status.stages[index];
        let digest = crate::approval::digest::rollout_digest(&self.rollout.spec);
        let recorded = match &stage.approval {
            // Valid for the rest of the stage while the spec it approved is unchanged;
            // after a change (or recorded without a digest, by an older Berth) the
            // stage's batches still to come need an approval of the spec as it is now.
            // A revoked token no longer covers it either.
            Some(accepted) if accepted.covers(&digest) && !self.revoked(accepted) => Some(accepted),
            Some(_) => None,
            // Started before (by a Berth that did not record approvals): it goes on.
            None if stage.batches_done > 0 || stage.current.is_some() => return Approval::NotNeeded,
            None => None,
        };
        let require = self.rollout.spec.stages.iter().any(|s| s.name == stage.name && s.require_approval);
        let classes = stage.environments.iter().filter_map(|n| self.obs.requests.get(n)).map(|r| r.spec.class.as_str());
        let Some(approvers) =
            stage_approval::stage_approvers(require, classes, &self.obs.approval_classes, || self.obs.owners.clone())
        else {
            return recorded.map_or(Approval::NotNeeded, |recorded| Approval::Recorded(recorded.clone()));
        };
        let checked =
            stage_approval::check(self.rollout, &stage.name, &approvers, self.obs.verifier.as_deref(), self.now).map(
                |verified| {
                    // Without a representable issue time a token cannot be told newer than
                    // the record: it may start a stage, never replace a record.
                    let dated = verified.issued_at.is_some();
                    let accepted = AcceptedApproval {
                        approver: verified.approver,
                        approved_at: Time(verified.issued_at.unwrap_or(self.now)),
                        accepted_at: Time(self.now),
                        key_id: verified.key_id,
                        // Freezes are the platform's: only its class approvers may break one.
                        freeze_override: verified.freeze_override && approvers.by_class_approvers(),
                        classes: approvers.classes(),
                        spec_digest: Some(digest),
                        expires_at: Some(Time(verified.expires_at)),
                        token_id: verified.token_id,
                    };
                    (accepted, dated)
                },
            );
        // A newer valid token in spec.approvals (break-glass asked for mid-stage, or one
        // renewing a break-glass that expired) replaces the record; a plain one does
        // not take the place of a break-glass still running.
        let replaces = |recorded: &AcceptedApproval, newer: &AcceptedApproval| {
            let glass_running =
                recorded.freeze_override && recorded.expires_at.as_ref().is_some_and(|at| self.now < at.0);
            newer.approved_at.0 > recorded.approved_at.0 && (newer.freeze_override || !glass_running)
        };
        match (recorded, checked) {
            (Some(recorded), Ok((newer, true))) if replaces(recorded, &newer) => Approval::Accepted(newer),
            (Some(recorded), _) => Approval::Recorded(recorded.clone()),
            (None, Ok((accepted, _))) => Approval::Accepted(accepted),
            (None, Err(denial)) => Approval::Waiting(denial),
        }
    }

    /// Whether the token a recorded approval was accepted from has been revoked since.
    fn revoked(&self, accepted: &AcceptedApproval) -> bool {
        let verifier = self.obs.verifier.as_deref();
        accepted.token_id.as_deref().is_some_and(|id| verifier.is_some_and(|v| v.is_revoked(id)))
    }

    fn start_batch(&mut self, index: usize) -> Started {
        let spec = &self.rollout.spec;
        let name = self.status.stages[index].name.clone();
        if spec.paused {
            self.set(
                RolloutPhase::Paused,
                reasons::USER_PAUSED,
                format!("paused before {name}; set spec.paused to false to go on"),
            );
            return Started::Waiting;
        }
        let approval = self.approval(index);
        let override_by = match &approval {
            Approval::Recorded(a) | Approval::Accepted(a) if a.freeze_override => Some(BreakGlass {
                approver: a.approver.clone(),
                // Bounded by the token's lifetime: a break-glass approval is for the
                // incident at hand, not for the rest of a long stage.
                expired: a.expires_at.as_ref().is_none_or(|at| self.now >= at.0),
                expires_at: a.expires_at.clone(),
            }),
            _ => None,
        };
        let freeze_override = match self.frozen(index, override_by.as_ref()) {
            Freeze::Held => return Started::Waiting,
            Freeze::Open => None,
            Freeze::Overridden(approver) => Some(approver),
        };
        match approval {
            Approval::NotNeeded | Approval::Recorded(_) => {}
            Approval::Accepted(accepted) => {
                let message = format!(
                    "stage {name}: approval by {} accepted (key {}{})",
                    accepted.approver,
                    accepted.key_id,
                    if accepted.freeze_override { ", freeze override" } else { "" }
                );
                self.note(false, reasons::APPROVAL_ACCEPTED, message);
                self.status.stages[index].approval = Some(accepted);
            }
            Approval::Waiting(denial) => {
                let message = denial.to_string();
                let newly = self.status.message.as_deref() != Some(message.as_str());
                if newly && matches!(denial, StageDenial::Rejected { .. }) {
                    self.note(true, reasons::APPROVAL_REJECTED, message.clone());
                }
                self.set(RolloutPhase::Waiting, reasons::AWAITING_APPROVAL, message);
                return Started::Waiting;
            }
        }
        let stage = &self.status.stages[index];
        let (number, of) = (stage.batches_done + 1, plan::batches(stage));
        let environments = self.eligible(index, plan::batch(stage, number));
        let stage = &mut self.status.stages[index];
        stage.phase = StagePhase::Progressing;
        if environments.is_empty() {
            stage.batches_done += 1;
            return Started::Empty;
        }
        stage.current = Some(BatchStatus {
            number,
            of,
            step: BatchStep::Marked,
            environments: environments.clone(),
            failed: Vec::new(),
            verified_at: None,
            commit: None,
            committed_at: None,
            merged_at: None,
            healthy_since: None,
            soak_until: None,
            gate: GateTally::default(),
            failing: Vec::new(),
            metrics: Vec::new(),
            freeze_override: freeze_override.clone(),
        });
        self.set(RolloutPhase::Progressing, reasons::COMMITTING, format!("committing {name} batch {number}/{of}"));
        Started::Work(Work {
            action: HistoryAction::Promote,
            stage: name,
            batch: number,
            of,
            environments,
            rollback_of: None,
            settle: false,
            freeze_override,
        })
    }

    /// Judges the committed batch of stage `index`.
    fn verify(&mut self, index: usize) -> Verified {
        self.take_retry(index);
        let spec = &self.rollout.spec;
        let stage = &self.status.stages[index];
        let Some(batch) = stage.current.clone() else {
            return Verified::Done;
        };
        let Some(stage_spec) = spec.stages.iter().find(|s| s.name == stage.name) else {
            return Verified::Done;
        };
        let (gate_spec, metric_gates) = (stage_spec.health_gate.clone(), &stage_spec.metrics);
        if stage.phase == StagePhase::Failed {
            return Verified::Failed;
        }
        let commit = batch.commit.clone().unwrap_or_default();
        if self.obs.pull_requests && batch.merged_at.is_none() {
            // Merged as itself or with its trailers; or evidently: Argo CD, which watches
            // only the branch, reports every environment synced at the promoted
            // revision (a squash merge that dropped the trailers).
            let deployed = gate_spec.require_synced
                && batch.environments.iter().all(|n| matches!(self.judge(n, &commit, &gate_spec), Signal::Passed));
            if !self.obs.merged.contains(&commit) && !deployed {
                let (number, of, name) = (batch.number, batch.of, stage.name.clone());
                let message = format!(
                    "{name} batch {number}/{of}: commit {} waits on its promotion branch; merge its pull request",
                    commit.get(..12).unwrap_or(&commit)
                );
                self.set_progressing_or_paused(reasons::AWAITING_MERGE, message);
                self.wake_at(add(self.now, MERGE_RECHECK));
                return Verified::Waiting;
            }
            if let Some(current) = self.status.stages[index].current.as_mut() {
                current.merged_at = Some(Time(self.now));
            }
        }
        let stage = &self.status.stages[index];
        let merged_at = stage.current.as_ref().and_then(|b| b.merged_at.clone());
        // The deadline counts from when the rollout saw the change on the watched
        // branch (or from a retry, which moves `committedAt`).
        let committed_at = [batch.committed_at.clone(), merged_at].into_iter().flatten().map(|t| t.0).max();
        let committed_at = committed_at.unwrap_or(self.now);
        let deadline = add(
            committed_at,
            gate_spec.progress_deadline.as_ref().and_then(to_std).unwrap_or(DEFAULT_PROGRESS_DEADLINE),
        );
        let tolerance = gate_spec.tolerance.as_ref().and_then(to_std).unwrap_or_default();
        let names = batch.environments.clone();
        let stage_name = stage.name.clone();
        // Once the batch was healthy, only the tolerance judges it (a soak may outlast the deadline).
        let deadline_applies = batch.verified_at.is_none();
        let already_failed: BTreeSet<&String> = batch.failed.iter().collect();
        let mut tally = GateTally::default();
        let mut failing = Vec::new();
        let mut new_failures = Vec::new();
        let mut first_wait: Option<String> = None;
        for name in &names {
            if already_failed.contains(name) {
                tally.failed += 1;
                continue;
            }
            let health = self.judge(name, &commit, &gate_spec);
            let signal = metric::fold(health, name, metric_gates, &batch.metrics, !deadline_applies);
            let overdue = deadline_applies && self.now >= deadline;
            match signal {
                Signal::Passed | Signal::Superseded(_) => tally.passed += 1,
                Signal::Waiting(message) if overdue => {
                    new_failures.push((name.clone(), "ProgressDeadline", format!("not healthy in time: {message}")));
                }
                Signal::Held(message) => {
                    tally.waiting += 1;
                    first_wait.get_or_insert_with(|| {
                        format!(
                            "{name}: {message} (held until it can be measured; the progress deadline does not apply)"
                        )
                    });
                }
                Signal::Waiting(message) => {
                    tally.waiting += 1;
                    first_wait.get_or_insert_with(|| format!("{name}: {message}"));
                    if deadline_applies {
                        self.wake_at(deadline);
                    }
                }
                Signal::Failing { reason, message } => {
                    let since = batch
                        .failing
                        .iter()
                        .find(|f| &f.environment == name)
                        .map_or_else(|| Time(self.now), |f| f.since.clone());
                    let counts_at = gate::counts_at(&since, tolerance);
                    if self.now >= counts_at || overdue {
                        new_failures.push((name.clone(), reason, message));
                    } else {
                        tally.failing += 1;
                        first_wait.get_or_insert_with(|| format!("{name}: {message}"));
                        failing.push(crate::api::rollout::Failing { environment: name.clone(), since });
                        self.wake_at(if deadline_applies { counts_at.min(deadline) } else { counts_at });
                    }
                }
            }
        }
        for (environment, reason, message) in new_failures {
            tally.failed += 1;
            self.status.stages[index].counts.failed += 1;
            if let Some(current) = self.status.stages[index].current.as_mut() {
                current.failed.push(environment.clone());
            }
            let text = format!("{environment} failed its gate ({reason}): {message}");
            self.note(true, reasons::GATE_FAILED, text);
            self.status.failures.push(GateFailure {
                environment,
                stage: stage_name.clone(),
                batch: batch.number,
                reason: reason.to_owned(),
                message: message.chars().take(MAX_FAILURE_MESSAGE).collect(),
                at: Time(self.now),
            });
        }
        let excess = self.status.failures.len().saturating_sub(MAX_FAILURES);
        self.status.failures.drain(..excess);
        let stage = &mut self.status.stages[index];
        let Some(current) = stage.current.as_mut() else {
            return Verified::Done;
        };
        current.gate = tally.clone();
        current.failing = failing;
        if stage.counts.failed > stage.max_failures {
            stage.phase = StagePhase::Failed;
            return Verified::Failed;
        }
        let (number, of) = (current.number, current.of);
        if tally.waiting + tally.failing > 0 {
            current.healthy_since = None;
            current.soak_until = None;
            let why = first_wait.unwrap_or_default();
            let message =
                format!("verifying {stage_name} batch {number}/{of}: {}/{} passed; {why}", tally.passed, names.len());
            self.set_progressing_or_paused(reasons::VERIFYING, message);
            return Verified::Waiting;
        }
        let soak = gate_spec.soak.as_ref().and_then(to_std).unwrap_or_default();
        current.verified_at.get_or_insert(Time(self.now));
        let since = current.healthy_since.get_or_insert(Time(self.now)).0;
        let soak_until = add(since, soak);
        current.soak_until = (!soak.is_zero()).then_some(Time(soak_until));
        if self.now < soak_until {
            let message =
                format!("{stage_name} batch {number}/{of}: {} healthy, soaking until {soak_until}", tally.passed);
            self.set_progressing_or_paused(reasons::SOAKING, message);
            self.wake_at(soak_until);
            return Verified::Waiting;
        }
        stage.counts.promoted += tally.passed;
        stage.batches_done += 1;
        stage.current = None;
        let promoted = super::counted(usize::try_from(tally.passed).unwrap_or(usize::MAX), "environment");
        let message = format!("{stage_name} batch {number}/{of}: {promoted} promoted");
        self.note(false, reasons::GATE_PASSED, message);
        Verified::Done
    }

    /// The gate's verdict on environment `name` of the batch committed as `commit`.
    fn judge(&self, name: &str, commit: &str, gate_spec: &crate::api::rollout::HealthGate) -> Signal {
        let request = self.obs.requests.get(name).map(AsRef::as_ref);
        let cx = gate::Context {
            rollout: self.rollout.metadata.name.as_deref().unwrap_or_default(),
            rollout_uid: self.rollout.metadata.uid.as_deref().unwrap_or_default(),
            commit,
            gate: gate_spec,
            argocd_installed: self.obs.argocd_installed,
            auto_sync: request.is_none_or(|r| !self.obs.manual_sync_classes.contains(&r.spec.class)),
        };
        gate::judge(request, cx)
    }

    /// Verification goes on while paused; the phase says who stopped the rollout.
    fn set_progressing_or_paused(&mut self, reason: &str, message: String) {
        if self.rollout.spec.paused {
            self.set(RolloutPhase::Paused, reasons::USER_PAUSED, format!("paused; still {message}"));
        } else {
            self.set(RolloutPhase::Progressing, reason, message);
        }
    }

    /// A new `berth.dev/retry` value: the failed batch's gate is looked at afresh
    /// (failures and metric measurements forgotten, a new progress deadline).
    fn take_retry(&mut self, index: usize) {
        let annotations = self.rollout.metadata.annotations.as_ref();
        let Some(value) = annotations.and_then(|a| a.get(RETRY_ANNOTATION)) else {
            return;
        };
        if self.status.retried.as_deref() == Some(value.as_str()) {
            return;
        }
        self.status.retried = Some(value.clone());
        let stage = &mut self.status.stages[index];
        let Some(batch) = stage.current.as_mut() else {
            return;
        };
        if stage.phase != StagePhase::Failed {
            return;
        }
        let (name, number) = (stage.name.clone(), batch.number);
        self.status.failures.retain(|f| !(f.stage == name && f.batch == number));
        let forgotten = u32::try_from(batch.failed.len()).unwrap_or(u32::MAX);
        batch.failed.clear();
        batch.verified_at = None;
        stage.counts.failed = stage.counts.failed.saturating_sub(forgotten);
        stage.phase = StagePhase::Progressing;
        batch.committed_at = Some(Time(self.now));
        batch.healthy_since = None;
        batch.soak_until = None;
        batch.failing.clear();
        batch.metrics.clear();
        self.note(false, reasons::RETRIED, format!("looking at {name} batch {number} again"));
    }

    fn fail(&mut self, index: usize) -> Option<Work> {
        let stage = &self.status.stages[index];
        let (name, failed, allowed) = (stage.name.clone(), stage.counts.failed, stage.max_failures);
        let failed = super::counted(usize::try_from(failed).unwrap_or(usize::MAX), "environment");
        let what = format!("stage {name}: {failed} failed their gate ({allowed} allowed)");
        let newly = self.status.phase != Some(RolloutPhase::Paused);
        match self.rollout.spec.on_failure {
            FailurePolicy::Pause => {
                if newly {
                    self.note(true, reasons::GATE_FAILED, format!("{what}; paused"));
                }
                self.set(
                    RolloutPhase::Paused,
                    reasons::GATE_FAILED,
                    format!("{what}; fix them and run `berth rollout retry`, or abort"),
                );
                None
            }
            FailurePolicy::Rollback => {
                self.status.rollback =
                    Some(RollbackStatus { pending: self.rollback_plan(index), ..Default::default() });
                self.note(true, reasons::ROLLING_BACK, format!("{what}; rolling back"));
                self.roll_back()
            }
        }
    }

    /// The batches to commit back, newest first, from what this rollout committed.
    fn rollback_plan(&self, index: usize) -> Vec<BatchRef> {
        let scope = self.rollout.spec.rollback_scope;
        let mut committed: Vec<BatchRef> = Vec::new();
        for (i, s) in self.status.stages.iter().enumerate() {
            let in_scope = match scope {
                RollbackScope::Batch | RollbackScope::Stage => i == index,
                RollbackScope::All => i <= index,
            };
            if !in_scope {
                continue;
            }
            let current = s.current.as_ref().filter(|b| b.step == BatchStep::Committed);
            let last = s.batches_done + u32::from(current.is_some());
            let first = if scope == RollbackScope::Batch { last } else { 1 };
            for number in first..=last {
                if number == 0 {
                    continue;
                }
                committed.push(BatchRef {
                    stage: s.name.clone(),
                    batch: number,
                    commit: self.commit_of(&s.name, number),
                });
            }
        }
        committed.reverse();
        committed
    }

    fn commit_of(&self, stage: &str, batch: u32) -> Option<String> {
        self.status
            .history
            .iter()
            .rev()
            .find(|h| h.stage == stage && h.batch == batch && h.action == HistoryAction::Promote)
            .map(|h| h.commit.clone())
    }

    fn roll_back(&mut self) -> Option<Work> {
        loop {
            match self.next_rollback() {
                Started::Work(work) => return Some(work),
                Started::Waiting => return None,
                Started::Empty => {}
            }
        }
    }

    /// The next batch to commit back; `Empty` when none of its environments is still
    /// this rollout's (it then counts as done).
    fn next_rollback(&mut self) -> Started {
        let rollout_name = self.rollout.metadata.name.clone().unwrap_or_default();
        let rollout_uid = self.rollout.metadata.uid.clone().unwrap_or_default();
        let Some(rollback) = self.status.rollback.as_mut() else {
            return Started::Waiting;
        };
        let current = match rollback.current.clone() {
            Some(current) => current,
            None => {
                if rollback.pending.is_empty() {
                    let done = rollback.done;
                    self.set(
                        RolloutPhase::RolledBack,
                        reasons::ROLLED_BACK,
                        format!("{} committed back to their previous revision", counted_batches(done)),
                    );
                    self.note(false, reasons::ROLLED_BACK, format!("{} rolled back", counted_batches(done)));
                    return Started::Waiting;
                }
                let next = rollback.pending.remove(0);
                rollback.current = Some(next.clone());
                rollback.step = Some(BatchStep::Marked);
                next
            }
        };
        let Some(stage) = self.status.stages.iter().find(|s| s.name == current.stage) else {
            return Started::Waiting;
        };
        // Only environments still on this rollout's promotion: a person's edit wins.
        let ours = |r: &EnvironmentRequest| {
            r.promotion_in_effect().is_some_and(|p| {
                p.rollout == rollout_name && (p.rollout_uid.is_empty() || p.rollout_uid == rollout_uid)
            })
        };
        let environments: Vec<String> = plan::batch(stage, current.batch)
            .iter()
            .filter(|name| self.obs.requests.get(*name).is_some_and(|r| ours(r)))
            .cloned()
            .collect();
        let of = plan::batches(stage);
        if environments.is_empty() {
            if let Some(rollback) = self.status.rollback.as_mut() {
                rollback.current = None;
                rollback.step = None;
                rollback.done += 1;
            }
            return Started::Empty;
        }
        let message =
            format!("committing {} batch {}/{of} back to the previous revision", current.stage, current.batch);
        self.set(RolloutPhase::RollingBack, reasons::ROLLING_BACK, message);
        Started::Work(Work {
            action: HistoryAction::Rollback,
            stage: current.stage.clone(),
            batch: current.batch,
            of,
            environments,
            rollback_of: current.commit,
            settle: false,
            freeze_override: None,
        })
    }

    /// Counts, progress and conditions, from the status built so far.
    fn finish(&mut self, old: &RolloutStatus) {
        if self.status.reason.as_deref() != Some(reasons::FROZEN) {
            self.status.frozen = None;
        }
        for stage in &mut self.status.stages {
            let total = u32::try_from(stage.environments.len()).unwrap_or(u32::MAX);
            let in_batch = stage
                .current
                .as_ref()
                .map_or(0, |b| u32::try_from(plan::batch(stage, b.number).len()).unwrap_or(u32::MAX));
            let (committing, verifying) = match stage.current.as_ref().map(|b| b.step) {
                Some(BatchStep::Marked) => (in_batch, 0),
                Some(BatchStep::Committed) => {
                    (0, in_batch.saturating_sub(stage.current.as_ref().map_or(0, |b| b.gate.failed)))
                }
                None => (0, 0),
            };
            let done = stage.batches_done.saturating_mul(stage.batch_size).min(total);
            stage.counts.pending = total.saturating_sub(done).saturating_sub(in_batch);
            stage.counts.committing = committing;
            stage.counts.verifying = verifying;
        }
        let promoted: u32 = self.status.stages.iter().map(|s| s.counts.promoted).sum();
        if !self.status.stages.is_empty() {
            self.status.progress = Some(format!("{promoted}/{}", self.planned()));
        }
        let now = Time(self.now);
        let generation = self.rollout.metadata.generation;
        let phase = self.status.phase.unwrap_or(RolloutPhase::Pending);
        let reason = self.status.reason.clone().unwrap_or_else(|| "Pending".to_owned());
        let message = self.status.message.clone().unwrap_or_default();
        let flag = |b: bool| if b { ConditionStatus::True } else { ConditionStatus::False };
        let conditions = &mut self.status.conditions;
        let ready = phase == RolloutPhase::Succeeded;
        set_condition(
            conditions,
            Observation {
                type_: "Ready",
                status: flag(ready),
                reason: &reason,
                message: message.clone(),
                observed_generation: generation,
            },
            &now,
        );
        let progressing = matches!(phase, RolloutPhase::Progressing | RolloutPhase::RollingBack);
        set_condition(
            conditions,
            Observation {
                type_: "Progressing",
                status: flag(progressing),
                reason: &reason,
                message: message.clone(),
                observed_generation: generation,
            },
            &now,
        );
        let degraded =
            self.status.stages.iter().any(|s| matches!(s.phase, StagePhase::Failed | StagePhase::RolledBack));
        let (degraded_reason, degraded_message) = if degraded {
            (
                reasons::GATE_FAILED,
                self.status.failures.last().map(|f| format!("{}: {}", f.environment, f.message)).unwrap_or_default(),
            )
        } else {
            ("Healthy", "no stage failed".to_owned())
        };
        set_condition(
            conditions,
            Observation {
                type_: "Degraded",
                status: flag(degraded),
                reason: degraded_reason,
                message: degraded_message,
                observed_generation: generation,
            },
            &now,
        );
        // Phase changes are events too (batch-level ones were noted on the way);
        // committing and verifying are narrated by the batch events.
        if old.phase != self.status.phase || old.reason != self.status.reason {
            let quiet = matches!(reason.as_str(), reasons::COMMITTING | reasons::VERIFYING | reasons::SOAKING);
            if !quiet && !self.notes.iter().any(|n| n.reason == reason) {
                let warning = matches!(phase, RolloutPhase::Failed | RolloutPhase::Paused | RolloutPhase::Aborted);
                self.notes.push(Note { warning, reason, message });
            }
        }
    }
}

enum Started {
    /// A batch to commit.
    Work(Work),
    /// Nothing to do until something changes.
    Waiting,
    /// The batch had nothing left to commit; go on to the next.
    Empty,
}

/// Whether a freeze holds a batch.
enum Freeze {
    Open,
    Held,
    /// Frozen, and a freeze-override approval by this approver lets it through.
    Overridden(String),
}

/// A stage's break-glass approval, as a freeze sees it.
struct BreakGlass {
    approver: String,
    /// The token expired: it no longer lets batches through a freeze.
    expired: bool,
    expires_at: Option<Time>,
}

/// Where a stage stands on approvals.
enum Approval {
    NotNeeded,
    /// Accepted when the stage started.
    Recorded(AcceptedApproval),
    /// Valid now, accepted as the stage starts.
    Accepted(AcceptedApproval),
    Waiting(StageDenial),
}

enum Verified {
    /// The batch passed (or there was none): go on.
    Done,
    /// Not decided yet.
    Waiting,
    /// The stage has more failures than it allows.
    Failed,
}

#[cfg(test)]
mod tests;
