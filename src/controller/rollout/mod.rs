//! Rollout controller: read the rollout and its namespace's requests from the index
//! → the pure state machine ([`crate::rollout::next`]) → at most one batch commit
//! ([`batch`]: mark → commit → confirm) → status, only if it changed → events.
//!
//! Watch-driven: a request's status change wakes the rollout its promotion names
//! (Argo CD's sync and Berth's drift land there); deadlines (soak, progress,
//! tolerance, windows) requeue at their exact time, and so does a metric gate's
//! next measurement ([`metrics`]).

mod batch;
mod merge_checks;
mod merges;
mod metrics;

pub use merge_checks::MergeChecks;

use std::{sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};

use super::{
    Context, Error, RESYNC,
    events::{Event, EventType},
};
use crate::{
    api::{
        EnvironmentRequest, Rollout,
        rollout::{HistoryAction, RolloutStatus},
    },
    index::Index,
    rollout::{self as core, Note, Observations, Work},
};

/// Field manager of what the Rollout controller writes on EnvironmentRequests
/// (`status.promotion`): the request controller never sends that field, so neither
/// overwrites the other.
pub const PROMOTION_FIELD_MANAGER: &str = "berth-rollout";

/// How soon a batch just committed is looked at (its requests' status changes also wake it).
const AFTER_COMMIT: Duration = Duration::from_millis(500);

/// Reconciles one rollout (entry point for the kube-runtime Controller).
pub async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let index = ctx.index().await;
    let mut observations = observe(&rollout, index);
    observations.verifier = ctx.approvals.clone();
    observations.pull_requests = !ctx.writer.pushes_to_watched_branch();
    if observations.pull_requests {
        observations.merged = merges::merged(&rollout, &ctx).await;
    }
    let now = Timestamp::now();
    let prometheus = ctx.prometheus.as_deref();
    // When a measurement is due, this is the rollout as stored (see `metrics`).
    let (mut rollout, measured) = metrics::measure_fresh(
        rollout.clone(),
        &observations.requests,
        prometheus,
        observations.pull_requests,
        now,
        || read(&rollout, &ctx),
    )
    .await?;
    let mut decision = core::next(&rollout, &measured_status(&rollout, &measured), &observations, Timestamp::now());
    if decision.work.is_some() {
        // About to mark and commit: decide on the rollout as stored, not on a cached
        // copy that may predate this controller's last status write (which would
        // repeat a batch already confirmed). One read per batch.
        rollout = Arc::new(read(&rollout, &ctx).await?);
        if observations.pull_requests {
            observations.merged = merges::merged(&rollout, &ctx).await;
        }
        decision = core::next(&rollout, &measured_status(&rollout, &measured), &observations, Timestamp::now());
    }
    decision.notes.splice(0..0, measured.notes.iter().cloned());
    if let Some(next) = measured.next {
        let until = Duration::try_from(next.duration_since(Timestamp::now())).unwrap_or_default().max(AFTER_COMMIT);
        decision.requeue = Some(decision.requeue.map_or(until, |r| r.min(until)));
    }
    let old = rollout.status.clone().unwrap_or_default();
    let mut status = decision.status;
    // Status first (it records the plan and the batch being marked), so a crash
    // after this point repeats the same batch rather than planning another.
    if status != old {
        write_status(&rollout, &status, &ctx).await?;
    }
    publish(&ctx, &rollout, &decision.notes).await;
    for failure in status.failures.iter().skip_while(|f| old.failures.contains(f)) {
        ctx.metrics.count_rollout_gate_failure(&failure.reason);
    }
    let Some(work) = decision.work else {
        return Ok(Action::requeue(decision.requeue.map_or(RESYNC, |r| r.min(RESYNC))));
    };
    let commit = batch::run(&rollout, &work, &ctx).await?;
    core::record_commit(&mut status, &work, &commit, Timestamp::now());
    write_status(&rollout, &status, &ctx).await?;
    if work.settle {
        publish(&ctx, &rollout, &[settled(&work, &commit)]).await;
        return Ok(Action::await_change());
    }
    ctx.metrics.count_rollout_batch(match work.action {
        HistoryAction::Promote => "promote",
        HistoryAction::Rollback => "rollback",
    });
    let note = match work.action {
        HistoryAction::Promote => Note {
            warning: false,
            reason: "BatchCommitted".to_owned(),
            message: format!(
                "{} batch {}/{}: {} to {} in commit {}",
                work.stage,
                work.batch,
                work.of,
                core::counted(work.environments.len(), "environment"),
                rollout.spec.revision,
                short(&commit)
            ),
        },
        HistoryAction::Rollback => Note {
            warning: true,
            reason: "BatchRolledBack".to_owned(),
            message: format!(
                "{} batch {}/{}: {} back to their previous revision in commit {}",
                work.stage,
                work.batch,
                work.of,
                core::counted(work.environments.len(), "environment"),
                short(&commit)
            ),
        },
    };
    publish(&ctx, &rollout, &[note]).await;
    Ok(Action::requeue(AFTER_COMMIT))
}

/// What became of the batch in flight when the rollout was aborted.
fn settled(work: &Work, commit: &str) -> Note {
    let step = format!("{} batch {}/{}", work.stage, work.batch, work.of);
    let message = if commit == core::machine::NO_COMMIT {
        format!("aborted before {step} landed: its environments keep what they ran")
    } else {
        let now_on = match work.action {
            HistoryAction::Promote => "the promoted revision",
            HistoryAction::Rollback => "their previous revision",
        };
        format!("aborted after {step} landed in commit {}: confirmed, its environments stay on {now_on}", short(commit))
    };
    Note { warning: false, reason: "BatchSettled".to_owned(), message }
}

/// The rollout's status with this round's metric results recorded.
fn measured_status(rollout: &Rollout, measured: &metrics::Measured) -> RolloutStatus {
    let mut status = rollout.status.clone().unwrap_or_default();
    measured.apply(&mut status);
    status
}

async fn read(rollout: &Rollout, ctx: &Context) -> Result<Rollout, Error> {
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    let name = rollout.name_any();
    api.get(&name).await.map_err(|source| Error::Read { what: format!("Rollout {name}"), source })
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// What the state machine needs besides the rollout, from the index.
fn observe(rollout: &Rollout, index: &Index) -> Observations {
    let namespace = rollout.namespace().unwrap_or_default();
    let requests = index
        .requests_in(&namespace)
        .into_iter()
        .map(|r| (r.name_any(), r))
        .collect::<std::collections::BTreeMap<String, Arc<EnvironmentRequest>>>();
    let manual_sync_classes =
        index.classes.state().iter().filter(|c| !c.spec.argocd.sync_policy.automated).map(|c| c.name_any()).collect();
    let approval_classes = crate::policy::stage_approval::approval_classes(&index.classes.state());
    let owners = crate::policy::stage_approval::tenant_owners(crate::policy::references::owner_of(
        &namespace,
        &index.tenants.state(),
    ));
    let this = rollout.name_any();
    let active_rollouts = index
        .rollouts_in(&namespace)
        .iter()
        .filter(|r| r.name_any() != this)
        // An aborted rollout still settling its batch holds its environments until then.
        .filter(|r| {
            r.status.as_ref().is_none_or(|s| !s.phase.is_some_and(|p| p.is_terminal()) || s.owns_marked_folders())
        })
        .map(|r| {
            let planned =
                r.status.iter().flat_map(|s| &s.stages).flat_map(|s| s.environments.iter().cloned()).collect();
            (r.name_any(), planned)
        })
        .collect();
    Observations {
        requests,
        argocd_installed: index.argocd_installed(),
        manual_sync_classes,
        approval_classes,
        owners,
        active_rollouts,
        freezes: freezes(index),
        ..Observations::default()
    }
}

/// The classes' and the cluster's freeze windows, from the index.
pub(super) fn freezes(index: &Index) -> crate::freeze::Calendar {
    crate::freeze::Calendar::new(
        index.classes.state().iter().map(|c| (c.name_any(), c.spec.freeze_windows.clone())),
        index.freezes.state().iter().map(|f| (f.name_any(), f.spec.windows.clone())),
    )
}

async fn write_status(rollout: &Rollout, status: &RolloutStatus, ctx: &Context) -> Result<(), Error> {
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    super::apply_status(&api, rollout, status).await.map(drop)
}

/// Events are best effort: a failed event never fails a reconcile.
async fn publish(ctx: &Context, rollout: &Rollout, notes: &[Note]) {
    for note in notes {
        let event = Event {
            type_: if note.warning { EventType::Warning } else { EventType::Normal },
            reason: note.reason.clone(),
            note: Some(note.message.clone()),
            action: "Promote".to_owned(),
            secondary: None,
        };
        ctx.events.publish_or_log(&event, &rollout.object_ref(&())).await;
    }
}

/// The rollout a request change concerns: the one its promotion names, or, for a
/// request no rollout holds, the namespace's rollouts not planned yet (a request
/// becoming Ready may be what they wait for).
pub(super) fn rollouts_of(
    index: &Index,
    request: &EnvironmentRequest,
) -> Vec<kube::runtime::reflector::ObjectRef<Rollout>> {
    let namespace = request.namespace().unwrap_or_default();
    if let Some(promotion) = request.status.as_ref().and_then(|s| s.promotion.as_ref()) {
        return vec![kube::runtime::reflector::ObjectRef::new(&promotion.rollout).within(&namespace)];
    }
    index
        .rollouts_in(&namespace)
        .iter()
        .filter(|r| r.status.as_ref().is_none_or(|s| s.plan.is_none()))
        .map(|r| kube::runtime::reflector::ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// The rollouts a freeze holds (a Freeze change may release them).
pub(super) fn frozen(index: &Index) -> Vec<kube::runtime::reflector::ObjectRef<Rollout>> {
    index
        .rollouts
        .state()
        .iter()
        .filter(|r| r.status.as_ref().is_some_and(|s| s.frozen.is_some()))
        .map(|r| kube::runtime::reflector::ObjectRef::from_obj(r.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::FrozenStatus;

    #[test]
    fn a_freeze_change_wakes_the_frozen_rollouts_and_only_them() {
        let index = Index::with_objects([], [], []);
        let rollout = |name: &str, frozen: bool| {
            let mut r: Rollout = crate::testing::example("rollout-checkout.yaml");
            r.metadata.name = Some(name.to_owned());
            r.status = Some(RolloutStatus { frozen: frozen.then(FrozenStatus::default), ..RolloutStatus::default() });
            r
        };
        index.rollouts.fill([rollout("waiting", true), rollout("going", false)]);
        let woken: Vec<String> = frozen(&index).iter().map(|r| r.name.clone()).collect();
        assert_eq!(woken, ["waiting"]);
    }
}
