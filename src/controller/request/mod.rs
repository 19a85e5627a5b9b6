//! EnvironmentRequest controller, one named step per module:
//! [`dereference`] (tenant, class, claimants from the index) → [`validate`] (pure: one
//! `ValidatedRequest`) → budget guard → [`build`] (pure: files and digest) → [`apply`]
//! (commit or remove) → [`status`] (pure: the next status) → [`status_write`]. TTL
//! expiry first, and a finalizer that removes the folder from git before the request
//! goes. The class and rollout controllers run the same steps
//! ([`for_class_and_rollout`]).

mod apply;
mod build;
mod dereference;
mod for_class_and_rollout;
mod git_record;
pub(crate) mod live;
mod prune;
mod remediate;
mod status;
mod status_write;
mod validate;

use std::{sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{self, finalizer},
    },
};

pub use apply::Folder;
use apply::remove;
use dereference::{Dereferenced, dereference};
pub(crate) use for_class_and_rollout::{
    ForRollout, commit_rerendered, ensure_class_rendered, render_for_rollout, rerender,
};
pub use status::{Committed, Finding, next_status};
use status_write::{patch_status, publish, write_status};

use super::{Context, Error, RESYNC, context::FINALIZER, context::RequestEchoes, events::EventType};
use crate::{
    api::{
        EnvironmentRequest,
        environment_request::{Phase, Remediation},
    },
    gitops::{RepoPath, environment_path},
    policy::{
        budget::{self, is_provisioned},
        request::Denial,
    },
};

/// `namespace/name`, as trailers and messages name a request.
pub(crate) fn key(request: &EnvironmentRequest) -> String {
    format!("{}/{}", request.namespace().unwrap_or_default(), request.name_any())
}

/// Reconciles one request (entry point for the kube-runtime Controller).
pub async fn reconcile(request: Arc<EnvironmentRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let request = as_last_written(request, &ctx.echoes);
    let namespace = request.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<EnvironmentRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, request, |event| async {
        match event {
            finalizer::Event::Apply(request) => apply(&request, &ctx).await,
            finalizer::Event::Cleanup(request) => cleanup(&request, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The request with the status Berth last wrote, when the index's copy may be from
/// before that write (see [`crate::controller::echoes`]): transitions, the events that
/// narrate them and "nothing changed" are all judged against what was written. The
/// Rollout controller's `promotion` stays the copy's (never written from here).
fn as_last_written(request: Arc<EnvironmentRequest>, echoes: &RequestEchoes) -> Arc<EnvironmentRequest> {
    echoes.as_last_written(request, |request, mut written| {
        written.promotion = request.status.as_mut().and_then(|s| s.promotion.take());
        request.status = Some(written);
    })
}

/// The folder Berth committed for this request, as recorded in its status.
fn committed_path(request: &EnvironmentRequest) -> Option<String> {
    request.status.as_ref()?.gitops.as_ref()?.path.clone()
}

/// The request's folder in the GitOps repository.
fn folder(request: &EnvironmentRequest) -> Result<RepoPath, String> {
    environment_path(&request.spec.cluster, &request.spec.tenant, &request.name_any()).map_err(|e| e.to_string())
}

/// The request's lifecycle step: dereference → validate → admit (budget) → build →
/// apply (commit) → observe (sync, drift) → status.
async fn apply(request: &EnvironmentRequest, ctx: &Context) -> Result<Action, Error> {
    // Its status holds its budget once it shows it provisioned: the guard's memory of
    // admitting it can go.
    ctx.budget.settle(request);
    if rollout_commit_in_flight(request, ctx).await {
        // The rollout's batch commit owns the folder until it confirms the promotion;
        // that status change brings the request back here.
        return Ok(Action::requeue(RESYNC));
    }
    let refs = dereference(request, ctx).await?;
    if is_provisioned(request) && refs.class_change_pending() {
        // The class controller re-renders all of the class's environments in one batch;
        // this request catches up once the class status says that is done (a class
        // status change wakes it). A freeze can hold that for days: no polling then.
        let poll = if refs.class_change_frozen() { RESYNC } else { Duration::from_secs(2) };
        return Ok(Action::requeue(poll));
    }
    let finding = match assess(request, &refs, ctx).await {
        // Others keep pushing first: say so in status, and try again soon (the change
        // stays queued in the writer meanwhile).
        Err(Error::Commit { path, source }) if source.is_contended() => {
            let waiting = Finding::Waiting { message: format!("waiting to commit {path}: {source}") };
            write_status(request, ctx, &waiting).await?;
            return Err(Error::Commit { path, source });
        }
        other => other?,
    };
    if matches!(finding, Finding::Denied(_) | Finding::Expired { .. }) {
        // Refused after the budget admitted it, or gone: its place is free again.
        ctx.budget.forget(request);
    }
    let requeue = match &finding {
        Finding::Committed(committed) => {
            // A remediation waiting on Argo CD is tried again soon.
            let pending = committed.drift.as_ref().is_some_and(|d| d.remediation == Some(Remediation::Pending));
            let resync = if pending { Duration::from_secs(5) } else { RESYNC };
            committed.expires_at.as_ref().map_or(resync, |at| until(at).min(resync))
        }
        Finding::Expired { .. } => Duration::from_secs(3600),
        _ => RESYNC,
    };
    // Both are tried, so a refused status write does not keep a refused request's folder
    // deployed, and an unreachable remote does not keep its refusal out of status.
    let removed = match finding {
        Finding::Denied(_) if !git_record::has_recorded_commit(request) => {
            git_record::remove_unrecorded_folder(request, ctx, "refused").await
        }
        _ => Ok(()),
    };
    write_status(request, ctx, &finding).await?;
    removed?;
    Ok(Action::requeue(requeue))
}

/// Whether a Rollout is committing this environment's batch right now, or, aborted
/// mid-batch, has yet to confirm whether that commit landed. A rollout deleted or
/// finished mid-batch holds nothing: the environment then runs what it ran before
/// (`PromotionState::runs_previous`), rendered here as usual.
async fn rollout_commit_in_flight(request: &EnvironmentRequest, ctx: &Context) -> bool {
    let Some(promotion) = request.promotion_in_effect().filter(|p| p.state.in_flight()) else {
        return false;
    };
    let index = ctx.index().await;
    let Some(rollout) = index.rollout(&request.namespace().unwrap_or_default(), &promotion.rollout) else {
        return false;
    };
    holds(&rollout, promotion)
}

/// Whether `rollout` holds the environment whose in-flight `promotion` it wrote: while
/// the batch is marked (and, aborted, until it is settled), and once its commit is recorded (the rollout confirms every
/// environment before it records the commit, so this copy of the request predates
/// its confirmation: the two watches need not arrive in order). Rendering the
/// previous revision then would commit it back over the batch's commit.
fn holds(rollout: &crate::api::Rollout, promotion: &crate::api::environment_request::Promotion) -> bool {
    use crate::api::{environment_request::PromotionState, rollout::HistoryAction};
    let status = rollout.status.clone().unwrap_or_default();
    let same = rollout
        .metadata
        .uid
        .as_deref()
        .is_none_or(|uid| promotion.rollout_uid.is_empty() || promotion.rollout_uid == uid);
    let action = match promotion.state {
        PromotionState::RollingBack => HistoryAction::Rollback,
        _ => HistoryAction::Promote,
    };
    let recorded =
        status.history.iter().any(|h| h.stage == promotion.stage && h.batch == promotion.batch && h.action == action);
    same && (status.owns_marked_folders() || recorded)
}

/// Time from now until `at` (zero when past), for requeueing at expiry.
fn until(at: &Time) -> Duration {
    let left = at.0.duration_since(Timestamp::now());
    Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_millis(200)
}

/// What the request's lifecycle step finds, acting on it (commit or removal) on the way.
async fn assess(request: &EnvironmentRequest, refs: &Dereferenced, ctx: &Context) -> Result<Finding, Error> {
    if let Some(expired) = expire(request, ctx).await? {
        return Ok(expired);
    }
    let validated = match validate::validate(request, refs, ctx.approvals.as_deref(), Timestamp::now()) {
        Ok(validated) => validated,
        Err(denial) => return Ok(Finding::Denied(denial)),
    };
    if let Err(exceeded) = admit(request, &validated, ctx).await? {
        return Ok(Finding::Denied(Denial::OverBudget(exceeded)));
    }
    let drift_mode = validated.environment.class.spec.drift.mode;
    let built = match build::build(&validated, &ctx.render) {
        Ok(built) => built,
        Err(e) => return Ok(Finding::Denied(Denial::Invalid(e.to_string()))),
    };
    let Folder { commit, path, digest } = apply::commit(request, &built, &class_label(&validated), ctx).await?;
    let mut environment = built.environment;
    let sync = live::sync_status(&environment.namespace, ctx).await?;
    let source = request.deployed_source();
    let old_drift = request.status.as_ref().and_then(|s| s.drift.as_ref());
    // Rendering kept them as JSON: drift and remediation read the same objects.
    let desired = crate::drift::rendered_objects(std::mem::take(&mut environment.objects));
    let mut drift = live::drift(&request.spec.cluster, &desired, old_drift, ctx).await?;
    // Until Argo CD has looked at the rendered source (a new revision on its way),
    // differences from the commit are that change, not drift: nothing to put right.
    let applying = sync.as_ref().is_some_and(|s| crate::argocd::applying(s, &source));
    if !applying {
        drift = remediate::remediate(request, drift_mode, desired.as_deref().ok(), drift, ctx).await;
    }
    Ok(Finding::Committed(Box::new(Committed {
        namespace: environment.namespace.clone(),
        commit,
        path,
        digest,
        monthly_cost_usd: environment.estimated_monthly_cost_usd,
        expires_at: validated.expires_at.map(Time),
        approved_by: validated.approval.map(|a| a.approver),
        sync,
        source,
        drift: Some(drift),
    })))
}

/// Expiry comes first and uses what was recorded at commit time, so neither a missing
/// class nor an edited TTL keeps an environment alive past its end. `Some` once it has
/// expired (its folder removed from git).
async fn expire(request: &EnvironmentRequest, ctx: &Context) -> Result<Option<Finding>, Error> {
    let status = request.status.clone().unwrap_or_default();
    if status.phase == Some(Phase::Expired) {
        return Ok(Some(Finding::Expired { path: committed_path(request).unwrap_or_default() }));
    }
    let Some(at) = &status.expires_at else {
        return Ok(None);
    };
    if at.0 > Timestamp::now() {
        return Ok(None);
    }
    let path = committed_path(request).unwrap_or_default();
    if let Ok(folder) = RepoPath::parse(&path) {
        remove(ctx, &folder, request, "expired").await?;
    }
    Ok(Some(Finding::Expired { path }))
}

/// The class and its generation, as commit messages name them.
fn class_label(validated: &validate::ValidatedRequest<'_>) -> String {
    let class = validated.environment.class;
    format!("{} generation {}", class.name_any(), class.metadata.generation.unwrap_or_default())
}

/// The budget guard's decision for a request that is not yet provisioned, over the
/// requests and classes in the index (see [`super::budget`]). A provisioned environment
/// already holds its budget, and a tenant without a budget admits everything.
async fn admit(
    request: &EnvironmentRequest,
    validated: &validate::ValidatedRequest<'_>,
    ctx: &Context,
) -> Result<Result<(), budget::BudgetExceeded>, Error> {
    let tenant = validated.environment.tenant;
    if !budget::limits_anything(&tenant.spec.budget) || is_provisioned(request) {
        return Ok(Ok(()));
    }
    let index = ctx.index().await;
    // Folders a crashed process committed hold budget too; git must be listed first.
    ctx.inventory.wait_loaded(git_record::INVENTORY_WAIT).await?;
    let in_git = |r: &EnvironmentRequest| ctx.inventory.folder_of(&key(r)).is_ok_and(|folder| folder.is_some());
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    Ok(ctx.budget.decide(request, tenant, || index.budget_view(&namespace, &name), &index.classes.state(), in_git))
}

/// Deletion: the folder leaves git, then Argo CD prunes the environment (see
/// [`prune`]), before the finalizer goes. An unreachable remote fails the cleanup,
/// which keeps the finalizer and retries.
async fn cleanup(request: &EnvironmentRequest, ctx: &Context) -> Result<Action, Error> {
    if !prune::awaiting(request) {
        remove_folders(request, ctx).await?;
    }
    prune::wait(request, ctx).await?;
    ctx.budget.forget(request);
    Ok(Action::await_change())
}

/// The request's folders leave git (deletion's first step).
async fn remove_folders(request: &EnvironmentRequest, ctx: &Context) -> Result<(), Error> {
    // Only the folder Berth recorded committing for this request: never a path
    // recomputed from a spec that may name another tenant.
    let recorded = committed_path(request).and_then(|p| RepoPath::parse(&p).ok());
    if let Some(path) = &recorded {
        remove(ctx, path, request, "deleted").await?;
        publish(ctx, request, EventType::Normal, "Removed", format!("removed {path} from git")).await;
    }
    // And a folder git holds for it that its status never recorded (a crash between
    // commit and status write). Not listed yet (remote down at start): deletion does not
    // wait for git, the orphan sweeper removes it once the request is gone.
    if let Ok(Some(path)) = git_record::folder_in_git(request, ctx)
        && Some(&path) != recorded.as_ref()
    {
        remove(ctx, &path, request, "deleted").await?;
        publish(ctx, request, EventType::Normal, "Removed", format!("removed {path} from git")).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[test]
    fn a_copy_from_before_berth_s_status_write_is_reconciled_with_that_status_and_its_own_promotion() {
        use crate::{
            api::environment_request::{EnvironmentRequestStatus, PromotionState},
            controller::echoes::ReadBesidesStatus,
        };
        let promotion = crate::testing::rollout::promotion(PromotionState::Committing);
        let mut cached = crate::testing::request("preview");
        cached.metadata.resource_version = Some("10".into());
        cached.status = Some(EnvironmentRequestStatus {
            phase: Some(Phase::Provisioning),
            promotion: Some(Box::new(promotion.clone())),
            ..Default::default()
        });
        let echoes = RequestEchoes::default();
        let unchanged = as_last_written(Arc::new(cached.clone()), &echoes);
        assert_eq!(unchanged.status, cached.status, "nothing written: the copy as it is");
        // Written without `promotion` (the Rollout controller's field), answered with 11.
        let written = EnvironmentRequestStatus { phase: Some(Phase::Ready), ..Default::default() };
        echoes.wrote(&cached, ReadBesidesStatus::of(&cached), &written, Some("11".into()));
        let newest = as_last_written(Arc::new(cached), &echoes);
        let status = newest.status.clone().unwrap_or_default();
        assert_eq!(status.phase, Some(Phase::Ready), "the status written");
        assert_eq!(status.promotion.as_deref(), Some(&promotion), "the copy's promotion");
    }

    #[test]
    fn a_request_copy_older_than_its_confirmation_stays_held_once_the_batch_commit_is_recorded() {
        use crate::api::{
            environment_request::{Promotion, PromotionState},
            rollout::{BatchStatus, BatchStep, HistoryAction, HistoryEntry, RolloutPhase, RolloutStatus, StageStatus},
        };
        let at = Time(Timestamp::UNIX_EPOCH);
        let promotion = Promotion {
            rollout: "web-v2".into(),
            rollout_uid: "uid".into(),
            revision: "v2".into(),
            previous_revision: "v1".into(),
            stage: "production".into(),
            batch: 6,
            state: PromotionState::Committing,
            commit: None,
            rendered_digest: None,
            spec_generation: 1,
            since: at.clone(),
        };
        let spec = serde_json::from_value(serde_json::json!({
            "app": "web", "revision": "v2", "selector": {}, "stages": [{"name": "production"}],
        }))
        .expect("a spec");
        let mut rollout = crate::api::Rollout::new("web-v2", spec);
        rollout.metadata.uid = Some("uid".into());
        let batch = |step| BatchStatus {
            number: 6,
            of: 10,
            step,
            environments: vec![],
            failed: vec![],
            verified_at: None,
            commit: None,
            committed_at: None,
            merged_at: None,
            healthy_since: None,
            soak_until: None,
            gate: Default::default(),
            failing: vec![],
            metrics: vec![],
            freeze_override: None,
        };
        let with = |step, history: Vec<HistoryEntry>, phase| RolloutStatus {
            phase: Some(phase),
            stages: vec![StageStatus { name: "production".into(), current: Some(batch(step)), ..Default::default() }],
            history,
            ..Default::default()
        };
        let entry = HistoryEntry {
            stage: "production".into(),
            batch: 6,
            action: HistoryAction::Promote,
            commit: "c0ffee".into(),
            environments: 100,
            at,
        };
        // Marked: held.
        rollout.status = Some(with(BatchStep::Marked, vec![], RolloutPhase::Progressing));
        assert!(holds(&rollout, &promotion));
        // Committed and recorded (so this copy misses its confirmation): still held, even
        // once the rollout has finished.
        for phase in [RolloutPhase::Progressing, RolloutPhase::Succeeded] {
            rollout.status = Some(with(BatchStep::Committed, vec![entry.clone()], phase));
            assert!(holds(&rollout, &promotion), "{phase:?}");
        }
        // Aborted while marked: held until the abort settles the batch (its commit may
        // have landed); settled without a commit, the previous revision runs.
        rollout.status = Some(with(BatchStep::Marked, vec![], RolloutPhase::Aborted));
        assert!(holds(&rollout, &promotion));
        let mut settled = with(BatchStep::Marked, vec![], RolloutPhase::Aborted);
        settled.stages[0].current = None;
        rollout.status = Some(settled);
        assert!(!holds(&rollout, &promotion));
        // Another rollout of the same name: not its promotion.
        rollout.status = Some(with(BatchStep::Marked, vec![entry], RolloutPhase::Progressing));
        rollout.metadata.uid = Some("other".into());
        assert!(!holds(&rollout, &promotion));
    }
}
