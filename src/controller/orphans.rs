//! The orphan sweeper: folders in git that no request owns are removed.
//!
//! A request's folder normally leaves git through its finalizer. A folder can still
//! outlive its request: a crash between the commit and the status write, then the
//! request deleted (its status never named the folder), or a folder removed from the
//! cluster's view some other way. Git is what Argo CD deploys, so the leader compares
//! Berth's folders in git with the requests that exist, at start and every
//! [`SWEEP_INTERVAL`], and removes the orphans in one batch (one commit, never forced).
//!
//! A folder is Berth's when its [`OWNER_FILE`](super::inventory::OWNER_FILE) names a
//! request; anything else in the repository is left alone. A folder is removed only
//! when its request is missing from the watch cache (which must hold its first list)
//! **and** from a consistent list read from the apiserver right then, so a cache that
//! is empty or behind after a startup glitch never deletes anything.

use std::{collections::HashSet, sync::Arc, time::Duration};

use kube::{Api, ResourceExt, api::ListParams};

use super::{
    Context, Error,
    inventory::{self, OWNER_FILE},
};
use crate::{
    api::EnvironmentRequest,
    gitops::{ChangeReason, RepoPath},
};

/// How often the leader compares git with the requests that exist.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(300);
/// How soon a sweep that failed (remote or apiserver down) is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Sweeps at start and every [`SWEEP_INTERVAL`] until dropped (the controllers stop).
pub async fn sweep_periodically(ctx: Arc<Context>) {
    loop {
        let next = match sweep(&ctx).await {
            Ok(_) => SWEEP_INTERVAL,
            Err(error) => {
                tracing::warn!(%error, "cannot compare the GitOps repository with the requests; trying again");
                RETRY
            }
        };
        tokio::time::sleep(next).await;
    }
}

/// A folder whose owning request does not exist, and that request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub path: RepoPath,
    pub owner: String,
}

/// The folders among `folders` (path, owner) whose owner is not in `requests`
/// (`namespace/name` keys). Folders that name no owner are not Berth's: never orphans.
pub fn orphans<'a>(
    folders: impl IntoIterator<Item = &'a (RepoPath, Option<String>)>,
    requests: &HashSet<String>,
) -> Vec<Orphan> {
    folders
        .into_iter()
        .filter_map(|(path, owner)| {
            let owner = owner.as_ref()?;
            (!requests.contains(owner)).then(|| Orphan { path: path.clone(), owner: owner.clone() })
        })
        .collect()
}

fn key(request: &EnvironmentRequest) -> String {
    format!("{}/{}", request.namespace().unwrap_or_default(), request.name_any())
}

/// Lists Berth's folders in git (refreshing the inventory), and removes the orphans.
/// Returns how many were removed.
pub async fn sweep(ctx: &Context) -> Result<usize, Error> {
    ctx.inventory.begin_refresh();
    let listed = match ctx.writer.environment_folders(OWNER_FILE).await {
        Ok(listed) => listed,
        Err(source) => {
            ctx.inventory.abort_refresh();
            return Err(Error::Inventory { source });
        }
    };
    let folders: Vec<(RepoPath, Option<String>)> =
        listed.iter().map(|folder| (folder.path.clone(), inventory::owner(folder))).collect();
    ctx.inventory.finish_refresh(folders.iter().map(|(path, owner)| (path.to_string(), owner.clone())));

    // The cache first: it must hold its first list, and whatever it holds is kept.
    let cached: HashSet<String> = ctx.stores().await?.requests.state().iter().map(|r| key(r)).collect();
    let candidates = orphans(&folders, &cached);
    if candidates.is_empty() {
        return Ok(0);
    }
    // Then the apiserver, read consistently now: only what both lack is an orphan.
    let api = Api::<EnvironmentRequest>::all(ctx.client.clone());
    let existing: HashSet<String> = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|source| Error::Read { what: "EnvironmentRequests".to_owned(), source })?
        .items
        .iter()
        .map(|meta| format!("{}/{}", meta.namespace().unwrap_or_default(), meta.name_any()))
        .collect();
    let confirmed: Vec<Orphan> = candidates.into_iter().filter(|orphan| !existing.contains(&orphan.owner)).collect();
    let removals = confirmed.iter().map(|orphan| async move {
        let reason = ChangeReason::new(
            orphan.owner.clone(),
            None,
            format!("remove {} (orphan: request {} does not exist)", orphan.path, orphan.owner),
        );
        // Sent together, so the writer puts them in one batch (one commit).
        let removed = ctx.writer.remove(orphan.path.clone(), reason).await;
        if removed.is_ok() {
            ctx.inventory.removed(orphan.path.as_str());
            ctx.committed.forget(orphan.path.as_str());
        }
        removed.map_err(|source| Error::Remove { path: orphan.path.to_string(), source })
    });
    let results = futures::future::join_all(removals).await;
    let removed = results.iter().filter(|r| r.is_ok()).count();
    if removed > 0 {
        ctx.metrics.count_orphans_removed(removed as u64);
        let paths: Vec<&str> = confirmed.iter().map(|o| o.path.as_str()).collect();
        tracing::info!(removed, ?paths, "removed folders from git whose requests no longer exist");
    }
    results.into_iter().find_map(Result::err).map_or(Ok(removed), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(path: &str, owner: Option<&str>) -> (RepoPath, Option<String>) {
        (RepoPath::parse(path).expect("path"), owner.map(str::to_owned))
    }

    #[test]
    fn a_folder_is_an_orphan_only_when_it_names_a_request_that_does_not_exist() {
        let folders = [
            folder("clusters/c/tenants/pay/web", Some("payments/web")),
            folder("clusters/c/tenants/pay/api", Some("payments/api")),
            folder("clusters/c/tenants/pay/hand-made", None),
        ];
        let requests: HashSet<String> = ["payments/web".to_owned()].into();
        assert_eq!(
            orphans(&folders, &requests),
            vec![Orphan {
                path: RepoPath::parse("clusters/c/tenants/pay/api").expect("path"),
                owner: "payments/api".into()
            }]
        );
        // With every request gone, every folder Berth owns is an orphan, and only those.
        assert_eq!(orphans(&folders, &HashSet::new()).len(), 2);
    }
}
