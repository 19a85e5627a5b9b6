//! Pull-request mode: which batch commits reached the watched branch. A merge is not
//! a Kubernetes event, so the remote is asked, at most every
//! [`MERGE_RECHECK`](crate::rollout::machine::MERGE_RECHECK) per
//! commit however often the rollout is woken, and never for a finished rollout.

use std::collections::BTreeSet;

use super::batch;
use crate::{
    api::{
        Rollout,
        rollout::{BatchStep, HistoryAction},
    },
    controller::Context,
    rollout::{Work, machine::NO_COMMIT},
};

/// The commits of `rollout`'s batches awaiting their merge that are on the watched
/// branch now. A remote that cannot be asked counts as "not merged yet" (logged): the
/// rollout waits, and its other work (a pause, an abort) goes on.
pub(super) async fn merged(rollout: &Rollout, ctx: &Context) -> BTreeSet<String> {
    let mut merged = BTreeSet::new();
    let Some(status) = rollout.status.as_ref().filter(|s| !s.phase.is_some_and(|p| p.is_terminal())) else {
        return merged;
    };
    for stage in &status.stages {
        let Some(batch) = stage.current.as_ref().filter(|b| b.step == BatchStep::Committed && b.merged_at.is_none())
        else {
            continue;
        };
        let Some(commit) = batch.commit.as_deref().filter(|c| *c != NO_COMMIT) else {
            continue;
        };
        if ctx.merge_checks.recently_unmerged(commit) {
            continue;
        }
        let work = Work {
            action: HistoryAction::Promote,
            stage: stage.name.clone(),
            batch: batch.number,
            of: batch.of,
            environments: Vec::new(),
            rollback_of: None,
            settle: false,
            freeze_override: batch.freeze_override.clone(),
        };
        match batch::merged(rollout, &work, commit, ctx).await {
            Ok(true) => {
                merged.insert(commit.to_owned());
            }
            Ok(false) => ctx.merge_checks.unmerged(commit),
            Err(error) => {
                tracing::warn!(%error, commit, "cannot tell whether a rollout batch was merged; asking again later");
                ctx.merge_checks.unmerged(commit);
            }
        }
    }
    merged
}
