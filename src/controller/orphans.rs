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
//! **and** from a consistent list read from the apiserver right then, and is checked
//! against the cache once more just before it goes. A sweep that would remove more than
//! half of Berth's folders (and more than [`MASS_FLOOR`]) removes nothing and says so:
//! an empty or wrong cluster after a restore, or two installations sharing a repository,
//! look exactly like that, and a glitch must never delete every environment.
//! In pull-request mode nothing is swept: removals would wait on promotion branches.

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
/// How soon a sweep that failed (remote or apiserver down) is first tried again; the
/// wait doubles up to [`RETRY_MAX`], so an outage does not keep the writer fetching.
const RETRY: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A sweep may always remove this many orphans; more only when they are at most half
/// of Berth's folders.
pub const MASS_FLOOR: usize = 10;

/// Sweeps at start and every [`SWEEP_INTERVAL`] until dropped (the controllers stop).
pub async fn sweep_periodically(ctx: Arc<Context>) {
    if !ctx.writer.pushes_to_watched_branch() {
        tracing::info!("pull-request mode: folders left by deleted requests are not swept from git");
        return;
    }
    let mut retry = RETRY;
    loop {
        let next = match sweep(&ctx).await {
            Ok(_) => {
                retry = RETRY;
                SWEEP_INTERVAL
            }
            Err(error) => {
                tracing::warn!(%error, "cannot compare the GitOps repository with the requests; trying again");
                let next = retry;
                retry = (retry * 2).min(RETRY_MAX);
                next
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

/// A sweep that would remove too much, so removes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{orphans} of Berth's {folders} folders in git name requests that do not exist; that many looks like an empty \
     or wrong cluster (a restore in progress, another installation sharing the repository), so none is removed: \
     delete the folders by hand if the requests are really gone"
)]
pub struct TooMany {
    pub orphans: usize,
    pub folders: usize,
}

/// The orphans to remove: `candidates` (missing from the cache) that `listed` (a
/// consistent read) lacks too, unless they are too many of Berth's `folders`.
pub fn confirmed(candidates: Vec<Orphan>, listed: &HashSet<String>, folders: usize) -> Result<Vec<Orphan>, TooMany> {
    let orphans: Vec<Orphan> = candidates.into_iter().filter(|orphan| !listed.contains(&orphan.owner)).collect();
    if orphans.len() > MASS_FLOOR.max(folders / 2) {
        return Err(TooMany { orphans: orphans.len(), folders });
    }
    Ok(orphans)
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
    let cached: HashSet<String> = ctx.index().await.requests.state().iter().map(|r| key(r)).collect();
    let candidates = orphans(&folders, &cached);
    if candidates.is_empty() {
        return Ok(0);
    }
    // Then the apiserver, read consistently now: only what both lack is an orphan.
    let listed = list_request_keys(&Api::<EnvironmentRequest>::all(ctx.client.clone())).await?;
    let berth_folders = folders.iter().filter(|(_, owner)| owner.is_some()).count();
    let confirmed = match confirmed(candidates, &listed, berth_folders) {
        Ok(confirmed) => confirmed,
        Err(too_many) => {
            tracing::warn!(orphans = too_many.orphans, folders = too_many.folders, "{too_many}");
            return Ok(0);
        }
    };
    // A request re-created under the same name since the list keeps its folder.
    let index = ctx.index().await;
    let still_gone = |orphan: &Orphan| {
        let (namespace, name) = orphan.owner.split_once('/').unwrap_or_default();
        index.request(namespace, name).is_none()
    };
    let removals = confirmed.iter().filter(|orphan| still_gone(orphan)).map(|orphan| async move {
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
        removed.map(|_| orphan.path.as_str()).map_err(|source| Error::Remove { path: orphan.path.to_string(), source })
    });
    let results = futures::future::join_all(removals).await;
    let removed: Vec<&str> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    if !removed.is_empty() {
        ctx.metrics.count_orphans_removed(removed.len() as u64);
        ctx.refresh.after_push();
        tracing::info!(count = removed.len(), paths = ?removed, "removed folders from git whose requests no longer exist");
    }
    results.into_iter().find_map(Result::err).map_or(Ok(removed.len()), Err)
}

/// Every request's `namespace/name`, read consistently (the first page from etcd, the
/// rest from the same snapshot) in pages, so a large cluster answers within the
/// client's timeout.
async fn list_request_keys(api: &Api<EnvironmentRequest>) -> Result<HashSet<String>, Error> {
    let mut keys = HashSet::new();
    let mut params = ListParams::default().limit(LIST_PAGE);
    loop {
        let page = api
            .list_metadata(&params)
            .await
            .map_err(|source| Error::Read { what: "EnvironmentRequests".to_owned(), source })?;
        keys.extend(
            page.items.iter().map(|meta| format!("{}/{}", meta.namespace().unwrap_or_default(), meta.name_any())),
        );
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(keys),
        }
    }
}

/// Requests per page when listing them all.
const LIST_PAGE: u32 = 500;

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

    fn orphan(name: &str) -> Orphan {
        Orphan {
            path: RepoPath::parse(&format!("clusters/c/tenants/t/{name}")).expect("path"),
            owner: format!("t/{name}"),
        }
    }

    #[test]
    fn only_what_the_apiserver_lacks_too_is_removed() {
        let candidates = vec![orphan("a"), orphan("b")];
        let listed: HashSet<String> = ["t/b".to_owned()].into();
        assert_eq!(confirmed(candidates, &listed, 40), Ok(vec![orphan("a")]));
    }

    #[test]
    fn a_sweep_that_would_remove_most_folders_removes_none() {
        let many = |n: usize| (0..n).map(|i| orphan(&format!("r{i}"))).collect::<Vec<_>>();
        let nothing_listed = HashSet::new();
        // A few may always go, even all of a small installation's.
        assert_eq!(confirmed(many(MASS_FLOOR), &nothing_listed, MASS_FLOOR).map(|o| o.len()), Ok(MASS_FLOOR));
        // Half of a large one may go; more is an empty or wrong cluster.
        assert_eq!(confirmed(many(50), &nothing_listed, 100).map(|o| o.len()), Ok(50));
        assert_eq!(confirmed(many(51), &nothing_listed, 100), Err(TooMany { orphans: 51, folders: 100 }));
        assert_eq!(confirmed(many(400), &nothing_listed, 400), Err(TooMany { orphans: 400, folders: 400 }));
    }
}
