//! What a publish answers: the commit that holds the change, and where it is.

use std::fmt;

use git2::Oid;

use super::error::Error;

/// A commit id (40 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId(String);

impl CommitId {
    /// The id as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The git object id.
    pub(crate) fn oid(&self) -> Result<Oid, Error> {
        Oid::from_str(&self.0).map_err(|_| Error::InvalidCommitId { value: self.0.clone() })
    }
}

impl From<Oid> for CommitId {
    fn from(oid: Oid) -> Self {
        Self(oid.to_string())
    }
}

/// Reads a commit id recorded elsewhere (a status field): exactly 40 hex digits,
/// stored in lowercase.
impl std::str::FromStr for CommitId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let refuse = || Error::InvalidCommitId { value: text.chars().take(64).collect() };
        if text.len() != 40 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse());
        }
        Oid::from_str(text).map(Self::from).map_err(|_| refuse())
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a put or remove achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The commit that holds the change: the new commit, or the existing head when
    /// nothing had to change.
    pub commit: CommitId,
    /// The branch that commit is on: the watched branch, or in pull-request mode the
    /// promotion branch (the watched branch when the change is already there).
    pub branch: String,
    /// Whether this batch pushed a new commit.
    pub created: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_id_reads_back_only_from_forty_hex_digits() {
        let text = "0123456789ABCDEF0123456789abcdef01234567";
        let id: CommitId = text.parse().expect("valid");
        assert_eq!(id.as_str(), text.to_lowercase());
        assert_eq!(id.oid().map(CommitId::from).expect("oid"), id);
        for bad in ["", "0123", "g123456789abcdef0123456789abcdef01234567", &format!("{text}0")] {
            let err = bad.parse::<CommitId>().expect_err(bad);
            assert!(matches!(err, Error::InvalidCommitId { .. }), "{err}");
        }
    }
}
