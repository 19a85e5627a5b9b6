//! Talking to the remote: fetch the branches a batch needs, push without force.
//!
//! The remote is used anonymously (`remote_anonymous`), so its URL is never written to
//! the clone's config, and credentials are supplied per operation from memory.

use std::cell::RefCell;
use std::path::Path;

use git2::{AutotagOption, ErrorCode, FetchOptions, ObjectType, Oid, PushOptions, Repository};

use super::credentials::{Credentials, callbacks};
use super::deadlines::RemoteActivity;
use super::error::{ErrorContext, FailureKind, GitFailure, GitOp};

/// The remote-tracking reference for `branch`.
pub(crate) fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
}

/// The remote plus what is needed to authenticate and to report failures.
pub(crate) struct RemoteAccess<'a> {
    pub(crate) url: &'a str,
    pub(crate) credentials: &'a Credentials,
    pub(crate) ctx: &'a ErrorContext,
    /// Where the fetch or push in progress is recorded (see [`RemoteActivity`]).
    pub(crate) activity: &'a RemoteActivity,
}

impl RemoteAccess<'_> {
    /// Fetches `branches` into their remote-tracking references and returns the
    /// remote head of each, `None` for a branch the remote does not have (yet). A
    /// tracking reference whose branch vanished is deleted.
    pub(crate) fn fetch(&self, repo: &Repository, branches: &[&str]) -> Result<Vec<Option<Oid>>, GitFailure> {
        let fail = |e: git2::Error| self.ctx.failure(GitOp::Fetch, &e);
        let mut remote = repo.remote_anonymous(self.url).map_err(fail)?;
        // `+` on fetch only moves our tracking refs to whatever the remote has; we
        // never force anything onto the remote.
        let refspecs: Vec<String> = branches.iter().map(|b| format!("+refs/heads/{b}:{}", tracking_ref(b))).collect();
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks(self.credentials))
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        {
            let _running = self.activity.begin(GitOp::Fetch);
            remote.fetch(&refspecs, Some(&mut options), None).map_err(fail)?;
        }
        // The advertisement stays readable after the fetch disconnected.
        let advertised: Vec<(String, Oid)> =
            remote.list().map_err(fail)?.iter().map(|head| (head.name().to_owned(), head.oid())).collect();
        let mut heads = Vec::with_capacity(branches.len());
        for branch in branches {
            let name = format!("refs/heads/{branch}");
            let head = advertised.iter().find(|(n, _)| *n == name).map(|(_, oid)| *oid);
            let tracking = tracking_ref(branch);
            match head {
                Some(oid) => {
                    repo.reference(&tracking, oid, true, "berth: fetch").map_err(fail)?;
                }
                None => {
                    if let Ok(mut stale) = repo.find_reference(&tracking) {
                        stale.delete().map_err(fail)?;
                    }
                }
            }
            heads.push(head);
        }
        Ok(heads)
    }

    /// Publishes `commit` (already at local `reference`) to the same reference on the
    /// remote, as a fast-forward from `expected` (the remote value the commit was built
    /// on; `None`: the reference must not exist yet). Never forced.
    pub(crate) fn push(
        &self,
        repo: &Repository,
        reference: &str,
        commit: Oid,
        expected: Option<Oid>,
    ) -> Result<(), GitFailure> {
        match local_path(self.url) {
            Some(path) => self.push_local(repo, path, reference, commit, expected),
            None => self.push_transport(repo, reference),
        }
    }

    /// Push over a network transport: no `+` in the refspec, and the server checks the
    /// old value we saw, so a concurrent pusher's commits are never overwritten.
    fn push_transport(&self, repo: &Repository, reference: &str) -> Result<(), GitFailure> {
        let fail = |e: git2::Error| self.ctx.failure(GitOp::Push, &e);
        let mut remote = repo.remote_anonymous(self.url).map_err(fail)?;
        let rejections: RefCell<Vec<(String, String)>> = RefCell::new(Vec::new());
        {
            let mut cbs = callbacks(self.credentials);
            cbs.push_update_reference(|name, status| {
                if let Some(status) = status {
                    rejections.borrow_mut().push((name.to_owned(), status.to_owned()));
                }
                Ok(())
            });
            let mut options = PushOptions::new();
            options.remote_callbacks(cbs);
            let refspec = format!("{reference}:{reference}");
            let _running = self.activity.begin(GitOp::Push);
            remote.push(&[refspec.as_str()], Some(&mut options)).map_err(fail)?;
        }
        match rejections.into_inner().into_iter().next() {
            Some((name, status)) => Err(GitFailure::rejected(&name, &status, &self.ctx.redactor)),
            None => Ok(()),
        }
    }

    /// Push to a repository on this machine (`file://`).
    ///
    /// libgit2's local transport writes the remote reference without checking its old
    /// value, so a push landing between its fast-forward check and its write would be
    /// overwritten. Instead the writer copies the new objects into the remote itself and
    /// moves the reference with a compare-and-swap under git's `.lock` file, the same
    /// lock `git receive-pack` takes. (Hooks of the remote do not run, as with libgit2.)
    fn push_local(
        &self,
        repo: &Repository,
        path: &Path,
        reference: &str,
        commit: Oid,
        expected: Option<Oid>,
    ) -> Result<(), GitFailure> {
        let fail = |e: git2::Error| self.ctx.failure(GitOp::Push, &e);
        let target = Repository::open(path).map_err(fail)?;
        copy_missing_objects(repo, &target, commit, expected).map_err(fail)?;
        let updated = match expected {
            Some(old) => target.reference_matching(reference, commit, true, old, "berth: push"),
            None => target.reference(reference, commit, false, "berth: push"),
        };
        match updated {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked) => {
                Err(GitFailure {
                    op: GitOp::Push,
                    kind: FailureKind::NonFastForward,
                    message: self.ctx.redactor.redact(e.message()),
                })
            }
            Err(e) => Err(fail(e)),
        }
    }
}

/// The path of a remote on this machine (`file:///path` or `/path`), if it is one.
fn local_path(url: &str) -> Option<&Path> {
    if let Some(rest) = url.strip_prefix("file://") {
        Some(Path::new(rest))
    } else if url.starts_with('/') {
        Some(Path::new(url))
    } else {
        None
    }
}

/// Copies `commit` and the trees and blobs it introduces into `target`: O(changed
/// paths). Parents are not copied; they are the remote head the commit was built on.
/// If they are missing the remote moved on, and the compare-and-swap that follows fails.
///
/// With `base` (the remote head the commit replaces, so everything reachable from it
/// is on the remote) only entries whose id differs from the base tree's entry of the
/// same name are visited: a folder with 10,000 environments costs one in-memory pass
/// over its entries instead of 10,000 existence checks (each a `stat` for loose objects).
fn copy_missing_objects(
    source: &Repository,
    target: &Repository,
    commit: Oid,
    base: Option<Oid>,
) -> Result<(), git2::Error> {
    let from = source.odb()?;
    let to = target.odb()?;
    if to.exists(commit) {
        return Ok(());
    }
    let tree = source.find_commit(commit)?.tree_id();
    let base_tree = match base {
        Some(base) => source.find_commit(base).ok().map(|c| c.tree_id()),
        None => None,
    };
    copy_tree(source, &from, &to, tree, base_tree)?;
    copy_object(&from, &to, commit)
}

/// Copies `tree` and what it holds that `base` (the same folder on the remote) does
/// not; entries are written before the tree, so the remote never holds a tree whose
/// children are missing.
fn copy_tree(
    source: &Repository,
    from: &git2::Odb<'_>,
    to: &git2::Odb<'_>,
    tree: Oid,
    base: Option<Oid>,
) -> Result<(), git2::Error> {
    if base == Some(tree) || to.exists(tree) {
        return Ok(());
    }
    let base_tree = match base {
        Some(id) => source.find_tree(id).ok(),
        None => None,
    };
    for entry in source.find_tree(tree)?.iter() {
        let name = entry.name_bytes();
        let old = base_tree.as_ref().and_then(|b| b.get_name_bytes(name)).map(|e| e.id());
        if old == Some(entry.id()) {
            continue;
        }
        match entry.kind() {
            Some(ObjectType::Tree) => copy_tree(source, from, to, entry.id(), old)?,
            Some(ObjectType::Blob) if !to.exists(entry.id()) => copy_object(from, to, entry.id())?,
            _ => {}
        }
    }
    copy_object(from, to, tree)
}

fn copy_object(from: &git2::Odb<'_>, to: &git2::Odb<'_>, id: Oid) -> Result<(), git2::Error> {
    let object = from.read(id)?;
    let written = to.write(object.kind(), object.data())?;
    if written == id { Ok(()) } else { Err(git2::Error::from_str("object copied to the remote changed its id")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_in(repo: &Repository, content: &[u8], parent: Option<Oid>) -> Oid {
        let blob = repo.blob(content).expect("blob");
        let mut tb = repo.treebuilder(None).expect("treebuilder");
        tb.insert("f.yaml", blob, git2::FileMode::Blob.into()).expect("insert");
        let tree = repo.find_tree(tb.write().expect("tree")).expect("tree");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let parent = parent.map(|p| repo.find_commit(p).expect("parent"));
        let parents: Vec<_> = parent.iter().collect();
        repo.commit(None, &sig, &sig, "m", &tree, &parents).expect("commit")
    }

    #[test]
    fn local_push_is_a_compare_and_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = Repository::init_bare(dir.path().join("source")).expect("init");
        let target_path = dir.path().join("target");
        let target = Repository::init_bare(&target_path).expect("init");
        let url = format!("file://{}", target_path.display());
        let ctx = ErrorContext {
            remote: url.clone(),
            branch: "main".into(),
            redactor: crate::gitops::redact::Redactor::default(),
            clone_dir: String::new(),
        };
        let activity = RemoteActivity::default();
        let access = RemoteAccess { url: &url, credentials: &Credentials::None, ctx: &ctx, activity: &activity };
        let first = commit_in(&source, b"1", None);
        access.push(&source, "refs/heads/main", first, None).expect("create");
        assert_eq!(target.refname_to_id("refs/heads/main").expect("ref"), first);
        let again = access.push(&source, "refs/heads/main", first, None).expect_err("exists");
        assert_eq!(again.kind, FailureKind::NonFastForward);

        let second = commit_in(&source, b"2", Some(first));
        let stale = commit_in(&source, b"other", None);
        let lost = access.push(&source, "refs/heads/main", second, Some(stale)).expect_err("stale");
        assert_eq!(lost.kind, FailureKind::NonFastForward);
        assert_eq!(target.refname_to_id("refs/heads/main").expect("ref"), first);
        access.push(&source, "refs/heads/main", second, Some(first)).expect("fast-forward");
        assert_eq!(target.refname_to_id("refs/heads/main").expect("ref"), second);
        assert!(target.find_commit(second).expect("copied").tree().is_ok());
    }

    #[test]
    fn local_paths() {
        assert_eq!(local_path("file:///tmp/r.git"), Some(Path::new("/tmp/r.git")));
        assert_eq!(local_path("/tmp/r.git"), Some(Path::new("/tmp/r.git")));
        assert_eq!(local_path("https://h/r.git"), None);
        assert_eq!(local_path("git@h:r.git"), None);
    }
}
