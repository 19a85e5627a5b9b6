//! Exclusive batches: changes that must land together as one commit of their own (a
//! rollout batch), checked before they reach the writer thread.
//!
//! A batch is validated whole, so a bad file name or trailer refuses the batch before
//! anything is written: it is all or nothing from the first step.

use std::collections::{BTreeMap, BTreeSet};

use super::change::{Change, ChangeReason, ChangeSet, Operation};
use super::error::Error;
use super::layout::{self, RepoPath};
use super::message::{batch_message, batch_subject, check_trailer, trailer_value};

/// One exclusive commit: every folder change of one rollout batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCommit {
    /// The folder changes; at least one, no path twice or inside another.
    pub changes: Vec<BatchChange>,
    /// First line, e.g. "berth: promote checkout v1.9.0 to 100 environments (production 3/10)".
    pub subject: String,
    /// Extra trailers in order, e.g. ("Berth-Rollout", "payments/checkout-v1-9-0"),
    /// ("Berth-Rollout-Step", "production/3"), ("Berth-Revision", "v1.9.0"),
    /// ("Berth-Rollback-Of", "<sha>"). Keys are `Berth-` and letters or dashes; values
    /// are written on one line and cut at 320 characters.
    pub trailers: Vec<(String, String)>,
}

/// One folder of a batch: make `path` hold exactly `files`; empty `files` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchChange {
    /// The folder.
    pub path: RepoPath,
    /// File name → content; files not listed are removed.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Recorded in the message, with one `Berth-Request` trailer per change.
    pub reason: ChangeReason,
}

/// A validated batch on its way to the writer thread.
#[derive(Debug)]
pub(crate) struct Exclusive {
    pub(crate) set: ChangeSet,
    subject: String,
    trailers: Vec<(String, String)>,
}

impl Exclusive {
    /// Checks `batch` whole; refuses it with [`Error::InvalidFile`] or
    /// [`Error::InvalidBatch`] saying what to fix.
    pub(crate) fn new(batch: BatchCommit) -> Result<Self, Error> {
        let refuse = |reason: String| Error::InvalidBatch { reason };
        if batch.changes.is_empty() {
            return Err(refuse("a batch needs at least one folder change".to_owned()));
        }
        if batch_subject(&batch.subject).is_empty() {
            return Err(refuse("a batch needs a subject".to_owned()));
        }
        for (key, value) in &batch.trailers {
            check_trailer(key, value).map_err(refuse)?;
        }
        let paths: BTreeSet<&RepoPath> = batch.changes.iter().map(|c| &c.path).collect();
        if paths.len() < batch.changes.len() {
            return Err(refuse("a batch changes each folder once; a path is given twice".to_owned()));
        }
        if let Some((outer, inner)) = nested(&paths) {
            return Err(refuse(format!("a batch changes each folder once; {inner} lies inside {outer}")));
        }
        let mut set = ChangeSet::default();
        for change in batch.changes {
            check_files(&change.path, &change.files)?;
            let operation = if change.files.is_empty() { Operation::Remove } else { Operation::Put(change.files) };
            set.push(Change { path: change.path, operation, reason: change.reason });
        }
        let trailers = batch.trailers.into_iter().map(|(key, value)| (key, trailer_value(&value))).collect();
        Ok(Self { set, subject: batch.subject, trailers })
    }

    /// The commit message (see [`super::message`]).
    pub(crate) fn message(&self) -> String {
        batch_message(&self.subject, self.set.changes(), &self.trailers)
    }

    /// Names the batch's promotion branch: its content and its trailers, so a re-sent
    /// batch finds its branch and a rollback restoring older content gets its own.
    pub(crate) fn short_digest(&self) -> String {
        self.set.short_digest_with(&self.trailers)
    }
}

/// Refuses file names the layout does not allow in a folder (one home for puts and batches).
pub(crate) fn check_files(path: &RepoPath, files: &BTreeMap<String, Vec<u8>>) -> Result<(), Error> {
    for name in files.keys() {
        layout::validate_file_name(name).map_err(|source| Error::InvalidFile {
            path: path.clone(),
            name: name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// A path of `paths` that lies inside another one, with that one.
fn nested<'a>(paths: &BTreeSet<&'a RepoPath>) -> Option<(&'a RepoPath, &'a RepoPath)> {
    paths.iter().find_map(|inner| {
        let segments: Vec<&str> = inner.segments().collect();
        (1..segments.len()).find_map(|depth| {
            let outer = RepoPath::from_segments(&segments[..depth]).ok()?;
            paths.get(&outer).map(|outer| (*outer, *inner))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, files: &[(&str, &str)]) -> BatchChange {
        BatchChange {
            path: RepoPath::parse(path).expect("valid"),
            files: files.iter().map(|(n, c)| ((*n).to_owned(), c.as_bytes().to_vec())).collect(),
            reason: ChangeReason::new("ns/r", Some(1), "promote"),
        }
    }

    fn batch(changes: Vec<BatchChange>) -> BatchCommit {
        BatchCommit {
            changes,
            subject: "berth: promote".to_owned(),
            trailers: vec![("Berth-Rollout".to_owned(), "ns/r".to_owned())],
        }
    }

    fn refusal(batch: BatchCommit) -> String {
        Exclusive::new(batch).expect_err("refused").to_string()
    }

    #[test]
    fn a_batch_keeps_its_changes_in_order_and_empty_files_remove() {
        let exclusive =
            Exclusive::new(batch(vec![change("c/b", &[("f.yaml", "1")]), change("c/a", &[])])).expect("valid");
        let ops: Vec<_> = exclusive.set.changes().iter().map(|c| (c.path.as_str(), c.operation.verb())).collect();
        assert_eq!(ops, [("c/b", "update"), ("c/a", "remove")]);
    }

    #[test]
    fn a_batch_that_cannot_land_whole_is_refused_before_anything_is_written() {
        assert!(refusal(batch(vec![])).contains("at least one folder change"));
        let mut no_subject = batch(vec![change("c/a", &[])]);
        no_subject.subject = " \n".to_owned();
        assert!(refusal(no_subject).contains("needs a subject"));
        let twice = refusal(batch(vec![change("c/a", &[]), change("c/a", &[("f.yaml", "1")])]));
        assert!(twice.contains("given twice"), "{twice}");
        let inside = refusal(batch(vec![change("c/a-b", &[]), change("c/a/b", &[]), change("c/a", &[])]));
        assert!(inside.contains("c/a/b lies inside c/a"), "{inside}");
        let mut forged = batch(vec![change("c/a", &[])]);
        forged.trailers.push(("Signed-off-by".to_owned(), "mallory".to_owned()));
        assert!(refusal(forged).contains("\"Signed-off-by\" must be \"Berth-\""));
        let bad_file = Exclusive::new(batch(vec![change("c/a", &[]), change("c/b", &[("../x.yaml", "")])]));
        assert!(matches!(bad_file, Err(Error::InvalidFile { .. })), "{bad_file:?}");
    }

    #[test]
    fn the_branch_digest_covers_content_and_trailers() {
        let one = Exclusive::new(batch(vec![change("c/a", &[("f.yaml", "1")])])).expect("valid");
        let same = Exclusive::new(batch(vec![change("c/a", &[("f.yaml", "1")])])).expect("valid");
        let mut rollback = batch(vec![change("c/a", &[("f.yaml", "1")])]);
        rollback.trailers.push(("Berth-Rollback-Of".to_owned(), "abc".to_owned()));
        let rollback = Exclusive::new(rollback).expect("valid");
        assert_eq!(one.short_digest(), same.short_digest());
        assert_ne!(one.short_digest(), rollback.short_digest());
    }
}
