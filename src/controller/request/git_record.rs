//! Git as the record of what is deployed: the folder git holds for a request, whatever
//! its status says (a crash between commit and status write leaves one unrecorded).

use std::time::Duration;

use super::{key, publish, remove};
use crate::{
    api::EnvironmentRequest,
    controller::{Context, Error, events::EventType, inventory::NotLoaded},
    gitops::RepoPath,
};

/// How long a decision that needs git's folders waits for their first listing (just
/// after a start) before it gives up and requeues; short, since it holds a reconcile slot.
pub(super) const INVENTORY_WAIT: Duration = Duration::from_secs(1);

/// Whether the request's status records a commit of its environment. One that does is
/// handled by what its status says (a provisioned environment whose later change is
/// refused stays deployed as it was, as before); one that does not may still have a
/// folder in git.
pub(super) fn has_recorded_commit(request: &EnvironmentRequest) -> bool {
    request.status.as_ref().and_then(|s| s.gitops.as_ref()).is_some_and(|g| g.commit.is_some())
}

/// The folder git holds for this very request (its Namespace file names it). Never a
/// folder another request owns, so a request naming someone else's tenant removes nothing.
pub(super) fn folder_in_git(request: &EnvironmentRequest, ctx: &Context) -> Result<Option<RepoPath>, NotLoaded> {
    Ok(ctx.inventory.folder_of(&key(request))?.and_then(|path| RepoPath::parse(&path).ok()))
}

/// Removes the request's folder from git if git holds one for it: a refused request must
/// not stay deployed because its status never recorded the commit.
pub(super) async fn remove_unrecorded_folder(
    request: &EnvironmentRequest,
    ctx: &Context,
    why: &str,
) -> Result<(), Error> {
    ctx.inventory.wait_loaded(INVENTORY_WAIT).await?;
    if let Some(path) = folder_in_git(request, ctx)? {
        remove(ctx, &path, request, why).await?;
        let note = format!("removed {path} from git: it was committed for this request, which is {why}");
        publish(ctx, request, EventType::Normal, "Removed", note).await;
    }
    Ok(())
}
