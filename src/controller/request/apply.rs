//! Step 4 of the pipeline: the environment into git (or out of it). Each step is
//! idempotent: an unchanged rendering skips the writer, and git's record of which
//! request owns a folder is kept before the push.

use super::{build::Built, key};
use crate::{
    api::EnvironmentRequest,
    controller::{Context, Error},
    gitops::{ChangeReason, CommitOutcome, RepoPath},
};

/// Where an environment's files were committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    /// A commit holding the folder exactly as rendered.
    pub commit: String,
    pub path: String,
    /// SHA-256 (hex) of the rendered files.
    pub digest: String,
}

/// Commits `built` for `request` (`class` names the class and its generation in the
/// commit message); the commit that holds it, without touching git when this process
/// or the request's status already knows one.
pub async fn commit(request: &EnvironmentRequest, built: &Built, class: &str, ctx: &Context) -> Result<Folder, Error> {
    let path = &built.folder;
    let hex = built.digest_hex();
    let recorded = recorded_commit(request, path.as_str(), &hex);
    let done = |commit: String| Folder {
        commit: recorded.clone().unwrap_or(commit),
        path: path.to_string(),
        digest: hex.clone(),
    };
    if let Some(commit) = ctx.committed.current(path.as_str(), &built.digest) {
        return Ok(done(commit));
    }
    // A Rollout's batch commit made this very rendering. It is the commit to report
    // only if the branch still holds it: the writer's put below is a no-op then (no
    // commit), and puts it right if someone changed the folder since.
    let promoted = promoted_commit(request, &hex);
    if let Some(batch) = promoted.as_ref().filter(|_| !ctx.writer.pushes_to_watched_branch()) {
        // Pull-request mode: the batch's own promotion branch carries this rendering;
        // a put would open a second pull request for the same change (one that, merged
        // after a rollback, would bring the rolled-back revision back).
        ctx.inventory.put(path.as_str(), &key(request));
        ctx.committed.remember(path.as_str(), built.digest, batch.clone());
        return Ok(done(batch.clone()));
    }
    // Recorded before the push: a change the writer owes after a failed push may still
    // land, and a refusal or deletion meanwhile must know to remove it.
    ctx.inventory.put(path.as_str(), &key(request));
    let files = built.environment.files.iter().map(|(name, yaml)| (name.clone(), yaml.clone().into_bytes())).collect();
    let summary = format!("render {} ({class})", key(request));
    let reason = ChangeReason::new(key(request), request.metadata.generation, summary);
    let outcome = ctx
        .writer
        .put(path.clone(), files, reason)
        .await
        .map_err(|source| Error::Commit { path: path.to_string(), source })?;
    // A commit that holds the folder as rendered: the new one, or the current head
    // when the tree did not change. Remembered, so the next unchanged rendering
    // reports the same commit without touching git.
    let commit = match promoted {
        Some(batch) if !outcome.created => batch,
        _ => outcome.commit.as_str().to_owned(),
    };
    ctx.committed.remember(path.as_str(), built.digest, commit.clone());
    refresh_if_pushed(&outcome, ctx);
    Ok(done(commit))
}

/// Removes `path` from git for `request` (`why` goes into the commit message).
pub async fn remove(ctx: &Context, path: &RepoPath, request: &EnvironmentRequest, why: &str) -> Result<(), Error> {
    let reason =
        ChangeReason::new(key(request), request.metadata.generation, format!("remove {} ({why})", key(request)));
    let outcome = ctx
        .writer
        .remove(path.clone(), reason)
        .await
        .map_err(|source| Error::Remove { path: path.to_string(), source })?;
    ctx.committed.forget(path.as_str());
    ctx.inventory.removed(path.as_str());
    refresh_if_pushed(&outcome, ctx);
    Ok(())
}

/// Asks Argo CD to look again only when a new commit reached the branch it watches (in
/// pull-request mode that happens when someone merges, not here).
fn refresh_if_pushed(outcome: &CommitOutcome, ctx: &Context) {
    if outcome.created && ctx.writer.pushes_to_watched_branch() {
        ctx.refresh.after_push();
    }
}

/// The commit the request's status records for `path` if it was made for the same
/// rendering (`digest`): it holds exactly these files, so it stays the answer. Without
/// this, every pass through the writer (after a restart, or once the remembered commit
/// ages out) reported the new head and rewrote the status.
fn recorded_commit(request: &EnvironmentRequest, path: &str, digest: &str) -> Option<String> {
    let gitops = request.status.as_ref()?.gitops.as_ref()?;
    (gitops.path.as_deref() == Some(path) && gitops.rendered_digest.as_deref() == Some(digest))
        .then(|| gitops.commit.clone())
        .flatten()
}

/// The batch commit a Rollout made of this very rendering (`digest`), if any.
fn promoted_commit(request: &EnvironmentRequest, digest: &str) -> Option<String> {
    let promotion = request.promotion_in_effect()?;
    (!promotion.state.in_flight() && promotion.rendered_digest.as_deref() == Some(digest))
        .then(|| promotion.commit.clone())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::environment_request::{EnvironmentRequestStatus, GitOpsStatus};

    fn with_gitops(commit: &str, path: &str, digest: Option<&str>) -> EnvironmentRequest {
        let mut request = crate::testing::request("preview");
        request.status = Some(EnvironmentRequestStatus {
            gitops: Some(GitOpsStatus {
                commit: Some(commit.into()),
                path: Some(path.into()),
                rendered_digest: digest.map(Into::into),
            }),
            ..Default::default()
        });
        request
    }

    #[test]
    fn the_recorded_commit_stays_while_the_rendering_is_the_same() {
        let request = with_gitops("c1", "clusters/a/tenants/t/r", Some("d1"));
        assert_eq!(recorded_commit(&request, "clusters/a/tenants/t/r", "d1").as_deref(), Some("c1"));
        // Another rendering (class or spec changed): the writer's commit is the answer.
        assert_eq!(recorded_commit(&request, "clusters/a/tenants/t/r", "d2"), None);
        // Another folder, or a status from before digests were recorded: likewise.
        assert_eq!(recorded_commit(&request, "clusters/b/tenants/t/r", "d1"), None);
        let old = with_gitops("c1", "clusters/a/tenants/t/r", None);
        assert_eq!(recorded_commit(&old, "clusters/a/tenants/t/r", "d1"), None);
        // Nothing committed yet.
        let fresh = crate::testing::request("preview");
        assert_eq!(recorded_commit(&fresh, "clusters/a/tenants/t/r", "d1"), None);
    }
}
