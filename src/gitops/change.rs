//! Declarative changes to the repository and the ordered set the writer still owes
//! the remote.
//!
//! A change says what a folder must hold, not how to get there, so it can be applied
//! again on top of whatever others pushed meanwhile. That is what makes
//! fetch-and-retry safe and lets unpushed changes survive a failed batch.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use git2::Oid;
use sha2::{Digest, Sha256};

use super::layout::RepoPath;

/// Why a change is made: which request, at which generation, in a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeReason {
    /// The requesting object, `namespace/name`.
    pub request: String,
    /// `metadata.generation` of the object the change was rendered from.
    pub generation: Option<i64>,
    /// One line for humans, e.g. "provision from class small".
    pub summary: String,
}

impl ChangeReason {
    /// Convenience constructor.
    pub fn new(request: impl Into<String>, generation: Option<i64>, summary: impl Into<String>) -> Self {
        Self { request: request.into(), generation, summary: summary.into() }
    }
}

/// What to do with a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    /// Make the folder hold exactly these files (name → content); others are removed.
    Put(BTreeMap<String, Vec<u8>>),
    /// Delete the folder and prune parents that become empty.
    Remove,
}

impl Operation {
    pub(crate) fn verb(&self) -> &'static str {
        match self {
            Self::Put(_) => "update",
            Self::Remove => "remove",
        }
    }
}

/// One requested change with the reason recorded in the commit message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) path: RepoPath,
    pub(crate) operation: Operation,
    pub(crate) reason: ChangeReason,
}

/// Folder trees already written for owed changes, by path (`None`: a put without
/// files). A retry after a lost race then writes only the trees on the way to them,
/// which keeps the fetch-to-push window short. Valid while the clone that holds the
/// objects lives; the owner drops an entry when the change at that path is replaced.
pub(crate) type WrittenFolders = RefCell<HashMap<RepoPath, Option<Oid>>>;

/// Changes not yet on the remote, in arrival order.
///
/// Adding a change drops earlier changes to the same folder or below it, because the
/// later one decides what the folder holds. What stays is therefore the smallest list
/// that yields the same tree, and a change to a parent always precedes changes below
/// it, which is what [`super::tree::apply`] relies on.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChangeSet {
    changes: Vec<Change>,
    /// Folder trees written for these changes in earlier tries.
    written: WrittenFolders,
}

impl ChangeSet {
    pub(crate) fn push(&mut self, change: Change) {
        self.changes.retain(|old| !change.path.contains(&old.path));
        self.written.get_mut().retain(|path, _| !change.path.contains(path));
        self.changes.push(change);
    }

    pub(crate) fn extend(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            self.push(change);
        }
    }

    pub(crate) fn changes(&self) -> &[Change] {
        &self.changes
    }

    pub(crate) fn len(&self) -> usize {
        self.changes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.changes.clear();
        self.written.get_mut().clear();
    }

    /// The folder trees written for these changes so far (see [`WrittenFolders`]).
    pub(crate) fn written(&self) -> &WrittenFolders {
        &self.written
    }

    /// Forgets the written folder trees: the clone that held them is gone.
    pub(crate) fn forget_written(&self) {
        self.written.borrow_mut().clear();
    }

    /// A short, stable digest of what the set writes (not of the reasons), used to name
    /// promotion branches: the same changes always map to the same branch, so a
    /// restarted writer finds its earlier branch instead of opening another.
    pub(crate) fn short_digest(&self) -> String {
        self.short_digest_with(&[])
    }

    /// [`Self::short_digest`] that also covers `labels` (an exclusive batch's trailers),
    /// so a rollback that restores content an earlier batch wrote gets a branch of its own.
    /// Without labels it equals [`Self::short_digest`].
    pub(crate) fn short_digest_with(&self, labels: &[(String, String)]) -> String {
        let mut hasher = Sha256::new();
        for change in &self.changes {
            hasher.update(change.path.as_str().as_bytes());
            hasher.update([0]);
            match &change.operation {
                Operation::Remove => hasher.update(b"remove\0"),
                Operation::Put(files) => {
                    hasher.update(b"put\0");
                    for (name, content) in files {
                        hasher.update(name.as_bytes());
                        hasher.update([0]);
                        hasher.update((content.len() as u64).to_be_bytes());
                        hasher.update(content);
                    }
                }
            }
            hasher.update([0xff]);
        }
        for (key, value) in labels {
            hasher.update(b"label\0");
            hasher.update(key.as_bytes());
            hasher.update([0]);
            hasher.update(value.as_bytes());
            hasher.update([0xff]);
        }
        let digest = hasher.finalize();
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, op: Operation) -> Change {
        Change {
            path: RepoPath::parse(path).expect("valid"),
            operation: op,
            reason: ChangeReason::new("ns/r", Some(1), "test"),
        }
    }

    fn put(content: &str) -> Operation {
        Operation::Put(BTreeMap::from([("a.yaml".to_owned(), content.as_bytes().to_vec())]))
    }

    #[test]
    fn later_change_replaces_earlier_and_nested_ones() {
        let mut set = ChangeSet::default();
        set.push(change("a/b/c", put("1")));
        set.push(change("x", put("1")));
        set.push(change("a/b", put("2")));
        set.push(change("a/b/d", put("3")));
        set.push(change("x", Operation::Remove));
        let paths: Vec<_> = set.changes().iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["a/b", "a/b/d", "x"]);
        assert_eq!(set.changes()[2].operation, Operation::Remove);
    }

    #[test]
    fn a_replaced_change_forgets_its_written_folder_and_those_below() {
        let mut set = ChangeSet::default();
        set.push(change("a/b", put("1")));
        set.push(change("a/c", put("1")));
        let tree = Oid::from_bytes(&[7; 20]).expect("oid");
        for path in ["a/b", "a/c"] {
            set.written().borrow_mut().insert(RepoPath::parse(path).expect("valid"), Some(tree));
        }
        set.push(change("a/b", put("2")));
        let kept: Vec<_> = set.written().borrow().keys().map(|p| p.as_str().to_owned()).collect();
        assert_eq!(kept, ["a/c"], "a/b holds other files now");
        set.push(change("a", Operation::Remove));
        assert!(set.written().borrow().is_empty());
    }

    #[test]
    fn digest_depends_on_content_only() {
        let mut one = ChangeSet::default();
        one.push(change("a", put("1")));
        let mut same = ChangeSet::default();
        let mut c = change("a", put("1"));
        c.reason = ChangeReason::new("other/req", None, "different reason");
        same.push(c);
        let mut other = ChangeSet::default();
        other.push(change("a", put("2")));
        assert_eq!(one.short_digest(), same.short_digest());
        assert_ne!(one.short_digest(), other.short_digest());
        assert_eq!(one.short_digest().len(), 12);
        assert_eq!(one.short_digest_with(&[]), one.short_digest(), "shared batches keep their branch names");
        let label = |v: &str| [("Berth-Rollout-Step".to_owned(), v.to_owned())];
        assert_ne!(one.short_digest_with(&label("p/1")), one.short_digest());
        assert_ne!(one.short_digest_with(&label("p/1")), one.short_digest_with(&label("p/2")));
    }
}
