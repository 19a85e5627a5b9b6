//! Errors of the GitOps writer.
//!
//! No variant holds a `git2::Error`: its message can quote URLs and server replies,
//! so every git failure is turned into a [`GitFailure`] whose message has gone through
//! the [`Redactor`](super::redact::Redactor). Errors are `Clone` because one failed
//! batch answers every caller that was waiting on it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::layout::{LayoutError, RepoPath};
use super::redact::Redactor;

/// What the writer was doing when git failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitOp {
    /// Opening or verifying the local clone.
    Open,
    /// Creating a fresh local clone.
    Init,
    /// Fetching from the remote.
    Fetch,
    /// Building trees and blobs for a change.
    BuildTree,
    /// Reading the folders a commit holds.
    ReadTree,
    /// Reading the watched branch's history (commits, trailers, ancestry).
    ReadHistory,
    /// Writing a commit.
    Commit,
    /// Updating a local reference.
    UpdateRef,
    /// Pushing to the remote.
    Push,
}

impl GitOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Init => "init",
            Self::Fetch => "fetch",
            Self::BuildTree => "build tree",
            Self::ReadTree => "read tree",
            Self::ReadHistory => "read history",
            Self::Commit => "commit",
            Self::UpdateRef => "update ref",
            Self::Push => "push",
        }
    }

    fn is_remote(self) -> bool {
        matches!(self, Self::Fetch | Self::Push)
    }
}

impl fmt::Display for GitOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Coarse class of a git failure; decides retries and is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Someone else moved the branch first (non-fast-forward, "fetch first", "cannot
    /// lock ref", "incorrect old value"): fetch, re-apply and push again.
    NonFastForward,
    /// The server refused the update for another reason (hook, protected branch).
    Rejected,
    /// The remote could not be reached or the transfer broke off.
    Network,
    /// The remote refused the credentials.
    Auth,
    /// The remote's TLS certificate or SSH host key was not accepted.
    Certificate,
    /// The local clone is damaged; it is discarded and cloned again.
    Local,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonFastForward => "non_fast_forward",
            Self::Rejected => "rejected",
            Self::Network => "network",
            Self::Auth => "auth",
            Self::Certificate => "certificate",
            Self::Local => "local",
            Self::Other => "other",
        }
    }

    /// Whether trying again (after a fetch, a backoff or a re-clone) can help.
    pub fn is_retryable(self) -> bool {
        !matches!(self, Self::Auth | Self::Certificate | Self::Rejected)
    }

    /// Every kind, for pre-registering metric label values.
    pub(crate) const ALL: [FailureKind; 7] =
        [Self::NonFastForward, Self::Rejected, Self::Network, Self::Auth, Self::Certificate, Self::Local, Self::Other];
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A git failure with its message already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitFailure {
    /// What was being done.
    pub op: GitOp,
    /// Coarse class.
    pub kind: FailureKind,
    /// libgit2's message (or the server's status), secrets removed.
    pub message: String,
}

impl fmt::Display for GitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed ({}): {}", self.op, self.kind, self.message)
    }
}

/// Wording that git servers and libgit2 use when the branch moved under us.
const NON_FAST_FORWARD_WORDING: [&str; 9] = [
    "non-fast-forward",
    "non-fastforward",
    "not present locally",
    "fetch first",
    "cannot lock ref",
    "incorrect old value",
    "failed to update ref",
    "stale info",
    "failed to lock",
];

impl GitFailure {
    /// Classifies and redacts a libgit2 error.
    pub(crate) fn from_git(op: GitOp, err: &git2::Error, redactor: &Redactor) -> Self {
        let message = redactor.redact(err.message());
        let kind = classify(op, err.code(), err.class(), &message);
        Self { op, kind, message }
    }

    /// A push the server answered with a per-reference status (a rejection).
    pub(crate) fn rejected(reference: &str, status: &str, redactor: &Redactor) -> Self {
        let message = redactor.redact(&format!("{reference}: {status}"));
        let kind =
            if mentions_non_fast_forward(&message) { FailureKind::NonFastForward } else { FailureKind::Rejected };
        Self { op: GitOp::Push, kind, message }
    }
}

fn mentions_non_fast_forward(message: &str) -> bool {
    let lower = message.to_lowercase();
    NON_FAST_FORWARD_WORDING.iter().any(|w| lower.contains(w))
}

fn classify(op: GitOp, code: git2::ErrorCode, class: git2::ErrorClass, message: &str) -> FailureKind {
    use git2::{ErrorClass as C, ErrorCode as E};
    if code == E::NotFastForward || (op == GitOp::Push && mentions_non_fast_forward(message)) {
        return FailureKind::NonFastForward;
    }
    if code == E::Auth {
        return FailureKind::Auth;
    }
    if code == E::Certificate {
        return FailureKind::Certificate;
    }
    let local_class = matches!(class, C::Odb | C::Object | C::Zlib | C::Indexer | C::Tree | C::Index | C::Filesystem);
    if op.is_remote() {
        if local_class { FailureKind::Local } else { FailureKind::Network }
    } else if local_class || matches!(class, C::Reference | C::Repository | C::Os | C::Config) {
        FailureKind::Local
    } else {
        FailureKind::Other
    }
}

/// Errors of the GitOps writer. Messages never contain credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The writer configuration cannot work.
    #[error("invalid gitops writer configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A `*_FILE` secret could not be read.
    #[error("cannot read secret file {path}")]
    ReadSecret {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A file name in a put is not allowed.
    #[error("invalid file {name:?} for {path}")]
    InvalidFile {
        /// The folder being written.
        path: RepoPath,
        /// The refused name.
        name: String,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// An exclusive batch (or a search for one) that cannot be written as asked.
    #[error("invalid gitops batch: {reason}")]
    InvalidBatch {
        /// What to fix.
        reason: String,
    },
    /// A commit id that is not 40 hexadecimal digits.
    #[error("invalid commit id {value:?}: expected 40 hexadecimal digits")]
    InvalidCommitId {
        /// The refused text.
        value: String,
    },
    /// The working copy directory could not be prepared or removed.
    #[error("cannot prepare working copy {path}")]
    Workdir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A git operation failed.
    #[error("gitops {remote} branch {branch}: {failure}")]
    Git {
        /// Remote URL, userinfo removed.
        remote: String,
        /// Branch being written.
        branch: String,
        /// What failed, redacted.
        failure: GitFailure,
    },
    /// Pushing failed on every allowed attempt; shared changes are kept and retried
    /// later, an exclusive batch is not (its caller retries).
    #[error("gitops {remote} branch {branch}: gave up after {attempts} attempts, last: {last}")]
    PushGaveUp {
        /// Remote URL, userinfo removed.
        remote: String,
        /// Branch being written.
        branch: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure, redacted.
        last: GitFailure,
    },
    /// Other writers kept moving the branch between the writer's fetch and its push.
    /// Shared changes stay owed and are pushed again at once; an exclusive batch is not
    /// kept (its caller retries). Nothing is lost or forced.
    #[error(
        "gitops {remote} branch {branch}: branch busy, {waiting} changes waiting after {rejections} pushes \
         lost to other writers; still retrying"
    )]
    Contended {
        /// Remote URL, userinfo removed.
        remote: String,
        /// Branch being written.
        branch: String,
        /// Pushes refused in a row because the branch had moved on.
        rejections: u32,
        /// Changes waiting for the push.
        waiting: usize,
    },
    /// The writer thread could not be started.
    #[error("cannot start the gitops writer thread")]
    Spawn {
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The writer has stopped (shut down, or its thread ended).
    #[error("gitops writer is not running")]
    Stopped,
}

impl Error {
    /// Whether retrying later may succeed (network, races, local damage), as opposed to
    /// a configuration or input problem that needs a change first.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Git { failure, .. } | Self::PushGaveUp { last: failure, .. } => failure.kind.is_retryable(),
            Self::Workdir { .. } | Self::Stopped | Self::Spawn { .. } | Self::Contended { .. } => true,
            Self::InvalidConfig { .. }
            | Self::ReadSecret { .. }
            | Self::InvalidFile { .. }
            | Self::InvalidBatch { .. }
            | Self::InvalidCommitId { .. } => false,
        }
    }

    /// The failure class, when git was involved.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            Self::Git { failure, .. } | Self::PushGaveUp { last: failure, .. } => Some(failure.kind),
            Self::Contended { .. } => Some(FailureKind::NonFastForward),
            _ => None,
        }
    }

    /// Whether the changes wait on a busy remote (others keep pushing to the branch)
    /// rather than on an outage: worth saying in status, nothing to fix on Berth's side.
    pub fn is_contended(&self) -> bool {
        matches!(self, Self::Contended { .. })
    }
}

/// What every error of one writer mentions: the remote (userinfo removed), the branch,
/// and the redactor that knows the writer's secrets.
#[derive(Debug, Clone)]
pub(crate) struct ErrorContext {
    pub(crate) remote: String,
    pub(crate) branch: String,
    pub(crate) redactor: Redactor,
    /// Path of the local clone: a remote operation failing on a file in there is local
    /// damage (re-clone), not a network problem.
    pub(crate) clone_dir: String,
}

impl ErrorContext {
    /// Redacts and classifies a libgit2 error.
    pub(crate) fn failure(&self, op: GitOp, err: &git2::Error) -> GitFailure {
        let mut failure = GitFailure::from_git(op, err, &self.redactor);
        if matches!(failure.kind, FailureKind::Network | FailureKind::Other)
            && !self.clone_dir.is_empty()
            && failure.message.contains(&self.clone_dir)
        {
            failure.kind = FailureKind::Local;
        }
        failure
    }

    /// Wraps a failure into the public error.
    pub(crate) fn error(&self, failure: GitFailure) -> Error {
        Error::Git { remote: self.remote.clone(), branch: self.branch.clone(), failure }
    }

    /// Shorthand for `error(failure(op, err))`.
    pub(crate) fn git(&self, op: GitOp, err: &git2::Error) -> Error {
        self.error(self.failure(op, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_fast_forward_wording_is_recognised() {
        let r = Redactor::default();
        for status in [
            "cannot lock ref 'refs/heads/main': is at abc but expected def",
            "failed to update ref: incorrect old value provided",
            "rejected (fetch first)",
            "non-fast-forward",
        ] {
            assert_eq!(
                GitFailure::rejected("refs/heads/main", status, &r).kind,
                FailureKind::NonFastForward,
                "{status}"
            );
        }
        assert_eq!(
            GitFailure::rejected("refs/heads/main", "pre-receive hook declined", &r).kind,
            FailureKind::Rejected
        );
    }

    #[test]
    fn git_errors_are_redacted_and_classified() {
        let r = Redactor::new(["TOPSECRET"]);
        let mut err = git2::Error::from_str("failed to send request to https://bob:TOPSECRET@host/r.git: TOPSECRET");
        err.set_class(git2::ErrorClass::Http);
        let f = GitFailure::from_git(GitOp::Push, &err, &r);
        assert!(!f.message.contains("TOPSECRET"), "{}", f.message);
        assert!(!f.message.contains("bob"), "{}", f.message);
        assert_eq!(f.kind, FailureKind::Network);

        let mut nff = git2::Error::from_str("cannot push non-fastforwardable reference");
        nff.set_code(git2::ErrorCode::NotFastForward);
        assert_eq!(GitFailure::from_git(GitOp::Push, &nff, &r).kind, FailureKind::NonFastForward);

        let mut auth = git2::Error::from_str("too many redirects or authentication replays");
        auth.set_code(git2::ErrorCode::Auth);
        let kind = GitFailure::from_git(GitOp::Fetch, &auth, &r).kind;
        assert_eq!(kind, FailureKind::Auth);
        assert!(!kind.is_retryable());

        let mut odb = git2::Error::from_str("object not found");
        odb.set_class(git2::ErrorClass::Odb);
        assert_eq!(GitFailure::from_git(GitOp::BuildTree, &odb, &r).kind, FailureKind::Local);
    }

    #[test]
    fn display_is_lowercase_and_has_no_period() {
        let err = Error::PushGaveUp {
            remote: "file:///r.git".into(),
            branch: "main".into(),
            attempts: 3,
            last: GitFailure { op: GitOp::Push, kind: FailureKind::Network, message: "could not read".into() },
        };
        let text = err.to_string();
        assert_eq!(
            text,
            "gitops file:///r.git branch main: gave up after 3 attempts, last: push failed (network): could not read"
        );
        assert!(err.is_transient());
    }
}
