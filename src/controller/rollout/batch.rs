//! One batch commit, crash-safe: **mark** each environment (`status.promotion`,
//! state Committing or RollingBack: from then on only this commit changes its
//! folder) → **commit** the batch's renderings as one commit of its own, with
//! trailers naming the rollout, the step and the revision → **confirm** (state
//! Committed or RolledBack, with the commit and the digest of what it holds). Each
//! step is idempotent: a new leader repeats the batch from its status; the writer
//! makes no commit for a tree that already holds the batch, and the batch's commit
//! is found again by its trailers.

use std::{borrow::Borrow, sync::Arc};

use futures::{StreamExt, stream};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};

use super::PROMOTION_FIELD_MANAGER;
use crate::{
    api::{
        EnvironmentRequest, Rollout,
        environment_request::{EnvironmentRequestStatus, Promotion, PromotionState},
        rollout::HistoryAction,
    },
    controller::{
        Context, Error,
        request::{ForRollout, render_for_rollout},
    },
    gitops::{BatchChange, BatchCommit, ChangeReason, CommitId},
    rollout::{
        Work, counted,
        machine::{NO_COMMIT, step_trailer},
    },
};

/// Trailer naming who let a batch commit during a freeze (break-glass).
pub const FREEZE_OVERRIDE_TRAILER: &str = "Berth-Freeze-Override";

/// How far back a new leader looks for a batch's commit.
const FIND_DEPTH: usize = 500;

/// Promotion records (marks, confirmations) written at once. One at a time, the 100
/// marks of a batch took most of the time between its gate passing and the next
/// commit (see `e2e/benches/rollout.rs`).
const PATCHES_IN_FLIGHT: usize = 16;

/// Makes `work`'s commit; returns it (`none` when no environment was left to commit).
pub(super) async fn run(rollout: &Rollout, work: &Work, ctx: &Context) -> Result<String, Error> {
    let index = ctx.index().await;
    let namespace = rollout.namespace().unwrap_or_default();
    let (marking, done) = match work.action {
        HistoryAction::Promote => (PromotionState::Committing, PromotionState::Committed),
        HistoryAction::Rollback => (PromotionState::RollingBack, PromotionState::RolledBack),
    };
    let to_mark: Vec<(Arc<EnvironmentRequest>, Promotion)> = work
        .environments
        .iter()
        // Gone or going: its folder leaves git, and must not come back with this batch.
        .filter_map(|name| index.request(&namespace, name).filter(|r| r.metadata.deletion_timestamp.is_none()))
        .filter_map(|request| {
            let promotion = if work.settle {
                // Settling: only the environments this very batch marked, as marked
                // (one marked later by a person's edit or another rollout is theirs).
                marked_by(rollout, work, &request, marking)
            } else {
                mark(rollout, work, &request, marking)
            };
            promotion.map(|promotion| (request, promotion))
        })
        .collect();
    // Every mark is written before the commit, several at a time (a settle writes none).
    if !work.settle {
        for (request, _) in &to_mark {
            crate::controller::request::ensure_class_rendered(request, ctx).await?;
        }
        patch_all(&to_mark, ctx).await?;
    }
    let marked: Vec<(EnvironmentRequest, Promotion)> = to_mark
        .into_iter()
        .map(|(request, promotion)| {
            // Rendered as it will be once confirmed: what the request controller renders
            // then, so it finds the batch's commit and makes none of its own.
            let mut with = (*request).clone();
            let landed = Promotion { state: done, ..promotion.clone() };
            with.status.get_or_insert_with(EnvironmentRequestStatus::default).promotion = Some(Box::new(landed));
            (with, promotion)
        })
        .collect();

    let mut changes = Vec::new();
    let mut rendered = Vec::new();
    for (request, promotion) in marked {
        match render_for_rollout(&request, ctx).await? {
            ForRollout::Folder { path, files, digest } => {
                let summary = match work.action {
                    HistoryAction::Promote => format!("promote to {}", promotion.revision),
                    HistoryAction::Rollback => format!("roll back to {}", promotion.previous_revision),
                };
                let reason =
                    ChangeReason::new(crate::controller::request::key(&request), request.metadata.generation, summary);
                // What this process last committed there is about to change.
                ctx.committed.forget(path.as_str());
                changes.push(BatchChange { path, files, reason });
                rendered.push((request, promotion, digest));
            }
            ForRollout::Refused(why) => {
                // Not committed: put it back where it was, and say why.
                tracing::warn!(request = %request.name_any(), %why, "cannot render an environment of a rollout batch");
                let released =
                    Promotion { state: PromotionState::RolledBack, since: Time(Timestamp::now()), ..promotion };
                patch_promotion(&request, &released, ctx).await?;
            }
        }
    }
    if changes.is_empty() {
        return Ok(NO_COMMIT.to_owned());
    }
    let path = format!("{} batch {}", work.stage, work.batch);
    let commit = if work.settle {
        // Aborted: confirm the batch's commit if it landed, never make it.
        let found = find(rollout, work, ctx).await?;
        let Some(found) = found else {
            return Ok(NO_COMMIT.to_owned());
        };
        found
    } else {
        let batch = BatchCommit { changes, subject: subject(rollout, work), trailers: trailers(rollout, work) };
        let outcome = ctx.writer.commit_batch(batch).await.map_err(|source| Error::Commit { path, source })?;
        if outcome.created {
            if ctx.writer.pushes_to_watched_branch() {
                ctx.refresh.after_push();
            }
            outcome.commit.as_str().to_owned()
        } else {
            // Already on the branch (a repeat after a crash): the commit that made it.
            find(rollout, work, ctx).await?.unwrap_or_else(|| outcome.commit.as_str().to_owned())
        }
    };
    let confirmed: Vec<(EnvironmentRequest, Promotion)> = rendered
        .into_iter()
        .map(|(request, promotion, digest)| {
            let confirmed = Promotion {
                state: done,
                commit: Some(commit.clone()),
                rendered_digest: Some(digest),
                since: Time(Timestamp::now()),
                ..promotion
            };
            (request, confirmed)
        })
        .collect();
    patch_all(&confirmed, ctx).await?;
    Ok(commit)
}

/// The promotion record that marks `request` for `work`; `None` when the request is
/// not this rollout's to roll back (a person edited it, or another rollout took it).
fn mark(rollout: &Rollout, work: &Work, request: &EnvironmentRequest, state: PromotionState) -> Option<Promotion> {
    let generation = request.metadata.generation.unwrap_or_default();
    let now = Time(Timestamp::now());
    let (this, uid) = (rollout.name_any(), rollout.uid().unwrap_or_default());
    let current = request.promotion_in_effect().filter(|p| p.rollout == this && p.rollout_uid == uid);
    match work.action {
        HistoryAction::Promote => {
            // A repeat of this very step keeps the revision its first mark recorded as
            // previous; anything else starts from what the environment runs now.
            let previous = match current {
                // (confirmed already, too: a crash between confirm and the rollout's status
                // write repeats a batch whose environments run the target by now).
                Some(p) if p.stage == work.stage && p.batch == work.batch => p.previous_revision.clone(),
                _ => request.deployed_revision().to_owned(),
            };
            Some(Promotion {
                rollout: this,
                rollout_uid: uid,
                revision: rollout.spec.revision.clone(),
                previous_revision: previous,
                stage: work.stage.clone(),
                batch: work.batch,
                state,
                commit: None,
                rendered_digest: None,
                spec_generation: generation,
                since: now,
            })
        }
        HistoryAction::Rollback => {
            let current = current?;
            Some(Promotion { state, commit: None, rendered_digest: None, since: now, ..current.clone() })
        }
    }
}

/// `request`'s record in effect if `work` marked it (`state`) and nothing replaced it since.
fn marked_by(rollout: &Rollout, work: &Work, request: &EnvironmentRequest, state: PromotionState) -> Option<Promotion> {
    let (this, uid) = (rollout.name_any(), rollout.uid().unwrap_or_default());
    request
        .promotion_in_effect()
        .filter(|p| p.rollout == this && p.rollout_uid == uid && p.stage == work.stage && p.batch == work.batch)
        .filter(|p| p.state == state)
        .cloned()
}

/// Promotion records written at once, [`PATCHES_IN_FLIGHT`] at a time; the first
/// refusal is returned once every write started has finished.
async fn patch_all<R: Borrow<EnvironmentRequest>>(patches: &[(R, Promotion)], ctx: &Context) -> Result<(), Error> {
    // A loop rather than a closure: the futures stay `Send` for the controller's task.
    let mut writes = Vec::with_capacity(patches.len());
    for (request, promotion) in patches {
        writes.push(patch_promotion(request.borrow(), promotion, ctx));
    }
    let results: Vec<Result<(), Error>> = stream::iter(writes).buffer_unordered(PATCHES_IN_FLIGHT).collect().await;
    results.into_iter().collect()
}

async fn patch_promotion(request: &EnvironmentRequest, promotion: &Promotion, ctx: &Context) -> Result<(), Error> {
    let api: Api<EnvironmentRequest> = Api::namespaced(ctx.client.clone(), &request.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "EnvironmentRequest",
        "status": { "promotion": promotion },
    });
    let name = request.name_any();
    api.patch_status(&name, &PatchParams::apply(PROMOTION_FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Status { what: format!("EnvironmentRequest {name} (promotion)"), source })?;
    Ok(())
}

/// The commit on the watched branch that carries `work`'s trailers (the revision
/// aside), if any: how a repeated or settled batch finds the commit it made.
async fn find(rollout: &Rollout, work: &Work, ctx: &Context) -> Result<Option<String>, Error> {
    let search = trailers(rollout, work)
        .into_iter()
        .filter(|(k, _)| k != "Berth-Revision" && k != FREEZE_OVERRIDE_TRAILER)
        .collect();
    let path = format!("{} batch {}", work.stage, work.batch);
    let found = ctx.writer.find_commit(search, FIND_DEPTH).await.map_err(|source| Error::Commit { path, source })?;
    Ok(found.map(|c| c.as_str().to_owned()))
}

/// Pull-request mode: whether the promote batch `work` reached the watched branch,
/// as `commit` itself (a merge or fast-forward) or as a commit carrying its trailers
/// (a squash or rebase merge that kept the message).
pub(super) async fn merged(rollout: &Rollout, work: &Work, commit: &str, ctx: &Context) -> Result<bool, Error> {
    let path = format!("{} batch {}", work.stage, work.batch);
    let id: CommitId = commit.parse().map_err(|source| Error::Commit { path: path.clone(), source })?;
    if ctx.writer.is_merged(id).await.map_err(|source| Error::Commit { path, source })? {
        return Ok(true);
    }
    Ok(find(rollout, work, ctx).await?.is_some())
}

fn subject(rollout: &Rollout, work: &Work) -> String {
    let (app, count) = (&rollout.spec.app, work.environments.len());
    match work.action {
        HistoryAction::Promote => format!(
            "berth: promote {app} {} to {} ({} {}/{})",
            rollout.spec.revision,
            counted(count, "environment"),
            work.stage,
            work.batch,
            work.of
        ),
        HistoryAction::Rollback => format!(
            "berth: roll back {app} in {} to their previous revision ({} {}/{})",
            counted(count, "environment"),
            work.stage,
            work.batch,
            work.of
        ),
    }
}

fn trailers(rollout: &Rollout, work: &Work) -> Vec<(String, String)> {
    let key = format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any());
    let mut trailers = vec![
        ("Berth-Rollout".to_owned(), key),
        ("Berth-Rollout-Uid".to_owned(), rollout.uid().unwrap_or_default()),
        ("Berth-Rollout-Step".to_owned(), step_trailer(work)),
        ("Berth-Revision".to_owned(), rollout.spec.revision.clone()),
    ];
    if let Some(undone) = &work.rollback_of {
        trailers.push(("Berth-Rollback-Of".to_owned(), undone.clone()));
    }
    if let Some(approver) = &work.freeze_override {
        trailers.push((FREEZE_OVERRIDE_TRAILER.to_owned(), approver.clone()));
    }
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout() -> Rollout {
        let spec = serde_json::from_value(serde_json::json!({
            "app": "checkout", "revision": "v2",
            "selector": { "matchLabels": { "app": "checkout" } },
            "stages": [{ "name": "production" }],
        }))
        .expect("a spec");
        let mut rollout = Rollout::new("checkout-v2", spec);
        rollout.metadata.uid = Some("uid-2".into());
        rollout
    }

    fn work(action: HistoryAction) -> Work {
        Work {
            action,
            stage: "production".into(),
            batch: 1,
            of: 1,
            environments: vec![],
            rollback_of: None,
            settle: false,
            freeze_override: None,
        }
    }

    fn with(state: PromotionState, uid: &str, batch: u32) -> EnvironmentRequest {
        let mut request = crate::testing::request("production");
        request.metadata.generation = Some(1);
        request.spec.app.revision = "v1".into();
        request.status = Some(EnvironmentRequestStatus {
            promotion: Some(Box::new(Promotion {
                rollout: "checkout-v2".into(),
                rollout_uid: uid.into(),
                revision: "v2".into(),
                previous_revision: "v1".into(),
                stage: "production".into(),
                batch,
                state,
                commit: None,
                rendered_digest: None,
                spec_generation: 1,
                since: Time(Timestamp::UNIX_EPOCH),
            })),
            ..Default::default()
        });
        request
    }

    #[test]
    fn a_repeated_batch_keeps_the_previous_revision_its_first_mark_recorded() {
        let (rollout, promote) = (rollout(), work(HistoryAction::Promote));
        // Marked, or already confirmed before a crash: v2 runs (or will), v1 is what a rollback restores.
        for state in [PromotionState::Committing, PromotionState::Committed] {
            let marked =
                mark(&rollout, &promote, &with(state, "uid-2", 1), PromotionState::Committing).expect("marked");
            assert_eq!(marked.previous_revision, "v1", "{state:?}");
        }
        // A namesake rollout re-created later starts from what runs now (v2).
        let earlier =
            mark(&rollout, &promote, &with(PromotionState::Committed, "uid-1", 1), PromotionState::Committing);
        assert_eq!(earlier.expect("marked").previous_revision, "v2");
        // So does another batch of this rollout.
        let other = mark(&rollout, &promote, &with(PromotionState::Committed, "uid-2", 2), PromotionState::Committing);
        assert_eq!(other.expect("marked").previous_revision, "v2");
    }

    #[test]
    fn a_rollback_marks_only_environments_this_rollout_promoted() {
        let (rollout, back) = (rollout(), work(HistoryAction::Rollback));
        let ours = mark(&rollout, &back, &with(PromotionState::Committed, "uid-2", 1), PromotionState::RollingBack);
        assert_eq!(ours.map(|p| (p.state, p.previous_revision)), Some((PromotionState::RollingBack, "v1".into())));
        let namesake = mark(&rollout, &back, &with(PromotionState::Committed, "uid-1", 1), PromotionState::RollingBack);
        assert_eq!(namesake, None);
    }

    #[test]
    fn settling_takes_only_environments_this_batch_marked_and_nothing_replaced() {
        let rollout = rollout();
        let settle = Work { settle: true, ..work(HistoryAction::Promote) };
        let ours =
            marked_by(&rollout, &settle, &with(PromotionState::Committing, "uid-2", 1), PromotionState::Committing);
        assert_eq!(ours.map(|p| p.state), Some(PromotionState::Committing));
        // Never marked (a crash mid-marking), marked by a namesake or another batch,
        // confirmed already, or edited by a person since: not this settle's to touch.
        let unmarked = crate::testing::request("production");
        assert_eq!(marked_by(&rollout, &settle, &unmarked, PromotionState::Committing), None);
        for other in [
            with(PromotionState::Committing, "uid-1", 1),
            with(PromotionState::Committing, "uid-2", 2),
            with(PromotionState::Committed, "uid-2", 1),
        ] {
            assert_eq!(marked_by(&rollout, &settle, &other, PromotionState::Committing), None);
        }
        let mut edited = with(PromotionState::Committing, "uid-2", 1);
        edited.metadata.generation = Some(2);
        assert_eq!(marked_by(&rollout, &settle, &edited, PromotionState::Committing), None);
    }
}
