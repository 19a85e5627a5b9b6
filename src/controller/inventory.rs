//! What the GitOps repository holds, and for whom: git is the record of what is
//! deployed, so decisions about a request's folder read it from here rather than
//! from the request's status (which a crash between commit and status write never
//! filled in).
//!
//! The inventory is loaded from a listing of the remote head (by the orphan sweeper,
//! [`super::orphans`], at start and periodically) and kept current by this process's
//! own commits and removals. A refresh that runs while commits land cannot lose them:
//! changes made during the listing are replayed on top of it (both are idempotent).

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::sync::watch;

use crate::{api::labels, gitops::EnvironmentFolder};

/// The rendered file that names the request a folder belongs to (every rendered
/// object carries the `berth.dev/request` annotation; the Namespace always exists).
pub const OWNER_FILE: &str = crate::render::NAMESPACE_FILE;

/// Environment folders in git and the request (`namespace/name`) each belongs to.
pub struct GitInventory {
    state: Mutex<State>,
    loaded: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// `None` until the first listing.
    folders: Option<Folders>,
    /// Changes made while a refresh lists the remote, replayed on top of its result.
    during_refresh: Option<Vec<Entry>>,
}

/// Folders by path and by owner.
#[derive(Default)]
struct Folders {
    /// Folder path → owning request, `None` for a folder that names none (not Berth's).
    by_path: HashMap<String, Option<String>>,
    /// Owning request → its folder.
    by_owner: HashMap<String, String>,
}

impl Folders {
    fn insert(&mut self, path: String, owner: Option<String>) {
        self.remove(&path);
        if let Some(owner) = &owner {
            self.by_owner.insert(owner.clone(), path.clone());
        }
        self.by_path.insert(path, owner);
    }

    fn remove(&mut self, path: &str) {
        if let Some(Some(owner)) = self.by_path.remove(path)
            && self.by_owner.get(&owner).is_some_and(|p| p == path)
        {
            self.by_owner.remove(&owner);
        }
    }

    fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Put { path, owner } => self.insert(path.clone(), Some(owner.clone())),
            Entry::Removed { path } => self.remove(path),
        }
    }
}

enum Entry {
    Put { path: String, owner: String },
    Removed { path: String },
}

impl Default for GitInventory {
    fn default() -> Self {
        Self { state: Mutex::default(), loaded: watch::Sender::new(false) }
    }
}

/// The inventory has not been read from git yet (the remote has not answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the GitOps repository's folders have not been listed yet (is the remote reachable?)")]
pub struct NotLoaded;

impl GitInventory {
    /// The request that owns `path` according to git; `Ok(None)` when git has no such
    /// folder or it names no request.
    pub fn owner(&self, path: &str) -> Result<Option<String>, NotLoaded> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let folders = state.folders.as_ref().ok_or(NotLoaded)?;
        Ok(folders.by_path.get(path).cloned().flatten())
    }

    /// The folder git holds for the request `owner` (`namespace/name`), if any.
    pub fn folder_of(&self, owner: &str) -> Result<Option<String>, NotLoaded> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let folders = state.folders.as_ref().ok_or(NotLoaded)?;
        Ok(folders.by_owner.get(owner).cloned())
    }

    /// Waits up to `limit` for the first listing.
    pub async fn wait_loaded(&self, limit: Duration) -> Result<(), NotLoaded> {
        let mut loaded = self.loaded.subscribe();
        match tokio::time::timeout(limit, loaded.wait_for(|loaded| *loaded)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(NotLoaded),
        }
    }

    /// Records that this process committed `path` for `owner`.
    pub fn put(&self, path: &str, owner: &str) {
        self.change(Entry::Put { path: path.to_owned(), owner: owner.to_owned() });
    }

    /// Records that this process removed `path`.
    pub fn removed(&self, path: &str) {
        self.change(Entry::Removed { path: path.to_owned() });
    }

    fn change(&self, entry: Entry) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(folders) = &mut state.folders {
            folders.apply(&entry);
        }
        if let Some(journal) = &mut state.during_refresh {
            journal.push(entry);
        }
    }

    /// Starts a refresh: changes from now on are kept to replay on its listing.
    pub(super) fn begin_refresh(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).during_refresh = Some(Vec::new());
    }

    /// Replaces what is known with `listing` (folders and their owners), plus the
    /// changes made since [`Self::begin_refresh`].
    pub(super) fn finish_refresh(&self, listing: impl IntoIterator<Item = (String, Option<String>)>) {
        let mut folders = Folders::default();
        for (path, owner) in listing {
            folders.insert(path, owner);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in state.during_refresh.take().unwrap_or_default() {
            folders.apply(&entry);
        }
        state.folders = Some(folders);
        drop(state);
        self.loaded.send_replace(true);
    }

    /// A refresh that failed: what was known stays.
    pub(super) fn abort_refresh(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).during_refresh = None;
    }
}

/// The request a listed folder belongs to: the `berth.dev/request` annotation of its
/// [`OWNER_FILE`]. `None` when the folder has no such file or annotation: then it is
/// not Berth's, and Berth leaves it alone.
pub fn owner(folder: &EnvironmentFolder) -> Option<String> {
    let yaml: serde_yaml::Value = serde_yaml::from_slice(folder.marker.as_deref()?).ok()?;
    let owner = yaml.get("metadata")?.get("annotations")?.get(labels::REQUEST_ANNOTATION)?.as_str()?;
    owner.split_once('/').is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty()).then(|| owner.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::RepoPath;

    fn folder(marker: Option<&str>) -> EnvironmentFolder {
        EnvironmentFolder {
            path: RepoPath::parse("clusters/in-cluster/tenants/pay/web").expect("path"),
            marker: marker.map(|m| m.as_bytes().to_vec()),
        }
    }

    #[test]
    fn a_folder_belongs_to_the_request_its_namespace_file_names() {
        let rendered = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: pay-web\n  annotations:\n    berth.dev/request: payments/web\n";
        assert_eq!(owner(&folder(Some(rendered))).as_deref(), Some("payments/web"));
        // Not Berth's: no file, no annotation, not YAML, or not `namespace/name`.
        assert_eq!(owner(&folder(None)), None);
        assert_eq!(owner(&folder(Some("kind: Namespace\nmetadata: {name: x}\n"))), None);
        assert_eq!(owner(&folder(Some(": : not yaml ["))), None);
        assert_eq!(owner(&folder(Some("metadata: {annotations: {berth.dev/request: web}}"))), None);
        assert_eq!(owner(&folder(Some("metadata: {annotations: {berth.dev/request: /web}}"))), None);
    }

    #[test]
    fn nothing_is_known_until_the_first_listing() {
        let inventory = GitInventory::default();
        assert_eq!(inventory.owner("a"), Err(NotLoaded));
        inventory.put("a", "ns/a");
        assert_eq!(inventory.folder_of("ns/a"), Err(NotLoaded));
        inventory.begin_refresh();
        inventory.finish_refresh([("b".to_owned(), Some("ns/b".to_owned())), ("c".to_owned(), None)]);
        assert_eq!(inventory.owner("b"), Ok(Some("ns/b".to_owned())));
        assert_eq!(inventory.folder_of("ns/b"), Ok(Some("b".to_owned())));
        assert_eq!(inventory.folder_of("ns/other"), Ok(None));
        assert_eq!(inventory.owner("c"), Ok(None));
        assert_eq!(inventory.owner("a"), Ok(None), "a change before any refresh is only what git then shows");
    }

    #[test]
    fn changes_made_while_a_refresh_lists_the_remote_survive_it() {
        let inventory = GitInventory::default();
        inventory.begin_refresh();
        inventory.finish_refresh([("old".to_owned(), Some("ns/old".to_owned()))]);
        inventory.begin_refresh();
        // Committed and removed while the listing (taken before both) was under way.
        inventory.put("new", "ns/new");
        inventory.removed("old");
        inventory.finish_refresh([("old".to_owned(), Some("ns/old".to_owned()))]);
        assert_eq!(inventory.folder_of("ns/new"), Ok(Some("new".to_owned())));
        assert_eq!(inventory.owner("old"), Ok(None));
        assert_eq!(inventory.folder_of("ns/old"), Ok(None));
        // After it, changes apply directly.
        inventory.removed("new");
        assert_eq!(inventory.folder_of("ns/new"), Ok(None));
    }

    #[test]
    fn a_failed_refresh_keeps_what_was_known() {
        let inventory = GitInventory::default();
        inventory.begin_refresh();
        inventory.finish_refresh([("a".to_owned(), Some("ns/a".to_owned()))]);
        inventory.begin_refresh();
        inventory.abort_refresh();
        assert_eq!(inventory.folder_of("ns/a"), Ok(Some("a".to_owned())));
    }

    #[tokio::test]
    async fn waiting_for_the_first_listing_ends_when_it_lands() {
        let inventory = std::sync::Arc::new(GitInventory::default());
        assert_eq!(inventory.wait_loaded(Duration::from_millis(10)).await, Err(NotLoaded));
        let waiter = {
            let inventory = inventory.clone();
            tokio::spawn(async move { inventory.wait_loaded(Duration::from_secs(30)).await })
        };
        inventory.begin_refresh();
        inventory.finish_refresh([]);
        assert_eq!(waiter.await.ok(), Some(Ok(())));
    }
}
