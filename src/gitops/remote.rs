//! Talking to the remote: fetch the branches a batch needs, push without force.
//!
//! The remote is used anonymously (`remote_anonymous`), so its URL is never written to
//! the clone's config, and credentials are supplied per operation from memory.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

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
    /// overwritten. Instead the writer puts the new objects into the remote itself (see
    /// [`ObjectCopier`]) and moves the reference with a compare-and-swap under git's `.lock` file, the same
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
        copy_missing_objects(repo, &target, commit).map_err(fail)?;
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

/// Puts `commit` and the trees and blobs it introduces into `target`: O(changed
/// paths). Only entries whose id differs from the same path in the commit's parent
/// are visited: the parent is the remote head the commit was built on, so what it
/// holds is on the remote already. A parent the remote no longer has (its history was
/// rewritten since the fetch) makes every object of the commit be put. A folder with
/// 10,000 environments costs one in-memory pass over its entries instead of 10,000
/// existence checks.
fn copy_missing_objects(source: &Repository, target: &Repository, commit: Oid) -> Result<(), git2::Error> {
    let copier = ObjectCopier::new(source, target)?;
    let commit_object = source.find_commit(commit)?;
    let base_tree =
        commit_object.parents().next().filter(|parent| copier.to.exists(parent.id())).map(|parent| parent.tree_id());
    copier.tree(commit_object.tree_id(), base_tree)?;
    copier.object(commit)
}

/// Loose objects of the clone older than this are copied, not linked: a link keeps the
/// file's time, and `git gc` in the remote prunes unreferenced loose objects by age
/// (two weeks by default), so an old object linked just before the reference moves
/// could be pruned in between. Objects this push wrote are seconds old.
const LINK_YOUNGER_THAN: std::time::Duration = std::time::Duration::from_secs(3600);

/// Puts objects of the clone into a repository on this machine.
///
/// Objects never change once written, so where both repositories are on one
/// filesystem, and the remote's objects folder has the clone's group (a group-shared
/// remote gives new files its own), a recent loose object is hard-linked, as
/// `git clone --local` does: one system call instead of reading, inflating, hashing,
/// deflating and writing the file again (putting each object on disk twice was most
/// of the writer's CPU). As with `git clone --local`, a linked object is not read
/// again on the way: the clone's integrity rests on its own checks (objects written
/// whole and renamed into place; a clone from before a machine crash is replaced, see
/// [`super::repo`]). Anything else is read and written.
struct ObjectCopier<'r> {
    source: &'r Repository,
    from: git2::Odb<'r>,
    to: git2::Odb<'r>,
    from_objects: PathBuf,
    to_objects: PathBuf,
    /// Whether objects may be linked at all (same filesystem and group).
    may_link: bool,
}

impl<'r> ObjectCopier<'r> {
    fn new(source: &'r Repository, target: &'r Repository) -> Result<Self, git2::Error> {
        use std::os::unix::fs::MetadataExt;
        // `commondir`: a linked worktree's objects are the main repository's.
        let from_objects = source.commondir().join("objects");
        let to_objects = target.commondir().join("objects");
        let may_link = match (std::fs::metadata(&from_objects), std::fs::metadata(&to_objects)) {
            (Ok(from), Ok(to)) => from.dev() == to.dev() && from.gid() == to.gid(),
            _ => false,
        };
        Ok(Self { source, from: source.odb()?, to: target.odb()?, from_objects, to_objects, may_link })
    }

    /// `tree` and what it holds that `base` (the same folder in the parent) does not;
    /// entries go before the tree, so the remote never holds a tree whose children
    /// are missing.
    fn tree(&self, tree: Oid, base: Option<Oid>) -> Result<(), git2::Error> {
        if base == Some(tree) {
            return Ok(());
        }
        let base_tree = match base {
            Some(id) => self.source.find_tree(id).ok(),
            None => None,
        };
        for entry in self.source.find_tree(tree)?.iter() {
            let old = base_tree.as_ref().and_then(|b| b.get_name_bytes(entry.name_bytes())).map(|e| e.id());
            if old == Some(entry.id()) {
                continue;
            }
            match entry.kind() {
                Some(ObjectType::Tree) => self.tree(entry.id(), old)?,
                Some(ObjectType::Blob) => self.object(entry.id())?,
                _ => {}
            }
        }
        self.object(tree)
    }

    /// One object: linked when it may be, else copied (a target that holds it loose
    /// already keeps it).
    fn object(&self, id: Oid) -> Result<(), git2::Error> {
        if self.may_link && self.linked(id) {
            return Ok(());
        }
        let object = self.from.read(id)?;
        let written = self.to.write(object.kind(), object.data())?;
        if written == id { Ok(()) } else { Err(git2::Error::from_str("object copied to the remote changed its id")) }
    }

    /// Whether the object is in the target as a link to the clone's loose file (or was
    /// there loose already); `false` leaves it to a copy: packed in the clone, old, or
    /// a link the filesystem refuses.
    fn linked(&self, id: Oid) -> bool {
        let (fanout, file) = loose_name(id);
        let source = self.from_objects.join(&fanout).join(&file);
        let recent = std::fs::metadata(&source)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age < LINK_YOUNGER_THAN));
        if !recent {
            return false;
        }
        let target_dir = self.to_objects.join(&fanout);
        let target = target_dir.join(&file);
        let link = || match std::fs::hard_link(&source, &target) {
            Ok(()) => Some(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Some(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => Some(false),
        };
        match link() {
            Some(done) => done,
            // The fan-out folder does not exist yet (the objects folder itself must).
            None => (std::fs::create_dir(&target_dir).is_ok() || target_dir.is_dir()) && link() == Some(true),
        }
    }
}

/// Where git keeps a loose object: `objects/<first two hex digits>/<the other 38>`.
fn loose_name(id: Oid) -> (String, String) {
    let hex = id.to_string();
    let (fanout, file) = hex.split_at(2);
    (fanout.to_owned(), file.to_owned())
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

    /// A clone and a bare `file://` remote beside it, and what pushing between them needs.
    struct LocalRemote {
        source: Repository,
        target: Repository,
        url: String,
        credentials: Credentials,
        ctx: ErrorContext,
        activity: RemoteActivity,
    }

    impl LocalRemote {
        fn new(dir: &Path) -> Self {
            let source = Repository::init_bare(dir.join("source")).expect("init");
            let target_path = dir.join("target");
            let target = Repository::init_bare(&target_path).expect("init");
            let url = format!("file://{}", target_path.display());
            let ctx = ErrorContext {
                remote: url.clone(),
                branch: "main".into(),
                redactor: crate::gitops::redact::Redactor::default(),
                clone_dir: String::new(),
            };
            Self { source, target, url, credentials: Credentials::None, ctx, activity: RemoteActivity::default() }
        }

        fn access(&self) -> RemoteAccess<'_> {
            RemoteAccess { url: &self.url, credentials: &self.credentials, ctx: &self.ctx, activity: &self.activity }
        }
    }

    #[test]
    fn local_push_is_a_compare_and_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = LocalRemote::new(dir.path());
        let (source, target, access) = (&local.source, &local.target, local.access());
        let first = commit_in(source, b"1", None);
        access.push(source, "refs/heads/main", first, None).expect("create");
        assert_eq!(target.refname_to_id("refs/heads/main").expect("ref"), first);
        let again = access.push(source, "refs/heads/main", first, None).expect_err("exists");
        assert_eq!(again.kind, FailureKind::NonFastForward);

        let second = commit_in(source, b"2", Some(first));
        let stale = commit_in(source, b"other", None);
        let lost = access.push(source, "refs/heads/main", second, Some(stale)).expect_err("stale");
        assert_eq!(lost.kind, FailureKind::NonFastForward);
        assert_eq!(target.refname_to_id("refs/heads/main").expect("ref"), first);
        access.push(source, "refs/heads/main", second, Some(first)).expect("fast-forward");
        assert_eq!(target.refname_to_id("refs/heads/main").expect("ref"), second);
        assert!(target.find_commit(second).expect("copied").tree().is_ok());
    }

    #[test]
    fn local_push_links_loose_objects_and_copies_packed_ones() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let source = Repository::init_bare(dir.path().join("source")).expect("init");
        let target_path = dir.path().join("target");
        let target = Repository::init_bare(&target_path).expect("init");
        let loose = |repo: &Repository, id: Oid| {
            let (fanout, file) = loose_name(id);
            repo.path().join("objects").join(fanout).join(file)
        };
        let inode = |path: &Path| std::fs::metadata(path).map(|m| m.ino()).ok();

        let first = commit_in(&source, b"1", None);
        copy_missing_objects(&source, &target, first).expect("copy");
        let blob = source.find_commit(first).expect("commit").tree().expect("tree").get(0).expect("entry").id();
        for id in [first, blob] {
            assert!(inode(&loose(&source, id)).is_some(), "written loose in the clone");
            assert_eq!(inode(&loose(&source, id)), inode(&loose(&target, id)), "the remote's object is a link");
        }
        copy_missing_objects(&source, &target, first).expect("putting it again finds it there");
        assert_eq!(inode(&loose(&source, first)), inode(&loose(&target, first)));

        // An old loose object is copied: a link would keep its age, and a `git gc` in the
        // remote prunes old unreferenced objects.
        let aged = commit_in(&source, b"aged", Some(first));
        let aged_blob = source.find_commit(aged).expect("commit").tree().expect("tree").get(0).expect("entry").id();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::open(loose(&source, aged_blob)).and_then(|f| f.set_modified(two_hours_ago)).expect("age it");
        copy_missing_objects(&source, &target, aged).expect("copy");
        assert!(inode(&loose(&target, aged_blob)).is_some(), "copied");
        assert_ne!(inode(&loose(&source, aged_blob)), inode(&loose(&target, aged_blob)), "not linked");
        assert_eq!(inode(&loose(&source, aged)), inode(&loose(&target, aged)), "the new commit is linked");

        // A commit whose objects the clone holds packed (as a fetch leaves them) is copied.
        let second = commit_in(&source, b"2", Some(first));
        let mut builder = source.packbuilder().expect("packbuilder");
        builder.insert_commit(second).expect("insert");
        let mut pack = git2::Buf::new();
        builder.write_buf(&mut pack).expect("pack");
        let tree = source.find_commit(second).expect("commit").tree_id();
        let blob = source.find_tree(tree).expect("tree").get(0).expect("entry").id();
        for id in [second, tree, blob] {
            std::fs::remove_file(loose(&source, id)).expect("unpack");
        }
        let odb = source.odb().expect("odb");
        let mut writer = odb.packwriter().expect("packwriter");
        std::io::Write::write_all(&mut writer, &pack).expect("write pack");
        writer.commit().expect("index pack");
        copy_missing_objects(&source, &target, second).expect("copy");
        let copied = target.find_commit(second).expect("copied commit");
        assert_eq!(copied.tree().expect("tree").get(0).expect("entry").to_object(&target).expect("blob").id(), blob);
        assert!(inode(&loose(&target, blob)).is_some(), "copied as a loose object of the remote's own");
        // Copying again is harmless: every object is already there.
        copy_missing_objects(&source, &target, second).expect("again");
    }

    #[test]
    fn a_commit_that_refers_to_a_missing_object_is_not_pushed() {
        // The writer's settings: trees are written without checking that their entries exist.
        crate::gitops::repo::configure_libgit2();
        let dir = tempfile::tempdir().expect("tempdir");
        let local = LocalRemote::new(dir.path());
        let (source, target, access) = (&local.source, &local.target, local.access());
        let first = commit_in(source, b"1", None);
        access.push(source, "refs/heads/main", first, None).expect("create");

        let missing = Oid::hash_object(ObjectType::Blob, b"never written").expect("id");
        let mut builder = source.treebuilder(None).expect("treebuilder");
        builder.insert("f.yaml", missing, git2::FileMode::Blob.into()).expect("libgit2 does not check");
        let tree = source.find_tree(builder.write().expect("tree")).expect("tree");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let parent = source.find_commit(first).expect("parent");
        let broken = source.commit(None, &sig, &sig, "m", &tree, &[&parent]).expect("commit");

        let refused = access.push(source, "refs/heads/main", broken, Some(first)).expect_err("missing object");
        // `Local`: the writer discards its clone, so a broken commit cannot block it for good.
        assert_eq!(refused.kind, FailureKind::Local, "{}", refused.message);
        assert_eq!(target.refname_to_id("refs/heads/main").expect("ref"), first, "the remote did not move");
    }

    #[test]
    fn local_paths() {
        assert_eq!(local_path("file:///tmp/r.git"), Some(Path::new("/tmp/r.git")));
        assert_eq!(local_path("/tmp/r.git"), Some(Path::new("/tmp/r.git")));
        assert_eq!(local_path("https://h/r.git"), None);
        assert_eq!(local_path("git@h:r.git"), None);
    }
}
