//! Configuration of the GitOps writer.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::credentials::Credentials;
use super::error::Error;
use super::redact::{REDACTED, redact_userinfo};
use crate::api::git_url;

/// Where pushes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushMode {
    /// Push straight to the branch Argo CD watches.
    Direct,
    /// Push each batch to its own promotion branch `<branch_prefix><digest>` based on
    /// the watched branch; a provider hook (outside this module) opens the pull request.
    PullRequest {
        /// Prefix of promotion branches, e.g. `berth/`.
        branch_prefix: String,
    },
}

/// Bounds on retrying a batch and on retrying changes that could not be pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Failed attempts (fetch, apply, commit, push) per batch before its callers get an
    /// error. A push lost to another writer (non-fast-forward) is not a failure here: it
    /// is tried again at once, after a few milliseconds of jitter, for as long as others
    /// keep pushing first (callers get [`Error::Contended`] after a while).
    pub max_push_attempts: u32,
    /// Wait before the second attempt after an outage; doubles after each failure.
    pub initial_backoff: Duration,
    /// Upper bound of the wait between attempts.
    pub max_backoff: Duration,
    /// How long after a failed batch its changes are tried again on their own when no
    /// new change arrives to carry them.
    pub pending_retry_interval: Duration,
    /// How long a caller waits on a contended remote (others keep pushing first) before
    /// it is answered with [`Error::Contended`](super::Error); its change stays owed and
    /// keeps riding along. Long enough that a busy branch costs callers no error, short
    /// enough that a reconcile can say in status what it waits for.
    pub contended_patience: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_push_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            pending_retry_interval: Duration::from_secs(30),
            contended_patience: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Wait before attempt number `attempt` (1-based; the first attempt does not wait).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(attempt.saturating_sub(2)).unwrap_or(u32::MAX);
        self.initial_backoff.checked_mul(factor).unwrap_or(self.max_backoff).min(self.max_backoff)
    }
}

/// Everything the writer needs; build it with [`WriterConfig::new`] and adjust fields.
#[derive(Clone)]
pub struct WriterConfig {
    /// Directory the writer owns; the local clone lives in `<workdir>/repo.git` and
    /// may be deleted and re-created at any time.
    pub workdir: PathBuf,
    /// Remote URL (`file://`, `https://`, `ssh://`, `git@host:path`). Must not carry a
    /// password or token: those come from [`Credentials`].
    pub remote_url: String,
    /// The branch Argo CD watches.
    pub branch: String,
    /// Direct push or promotion branches.
    pub mode: PushMode,
    /// Commit author and committer name.
    pub author_name: String,
    /// Commit author and committer e-mail.
    pub author_email: String,
    /// How long to collect changes into one commit under load. A lone change (the
    /// writer was quiet) is committed after a short settle instead.
    pub batch_window: Duration,
    /// Retry bounds.
    pub retry: RetryPolicy,
    /// How to authenticate.
    pub credentials: Credentials,
}

impl WriterConfig {
    /// A configuration with defaults: direct mode, author "Berth", 200 ms batch window.
    pub fn new(workdir: impl Into<PathBuf>, remote_url: impl Into<String>, branch: impl Into<String>) -> Self {
        Self {
            workdir: workdir.into(),
            remote_url: remote_url.into(),
            branch: branch.into(),
            mode: PushMode::Direct,
            author_name: "Berth".to_owned(),
            author_email: "berth@berth.dev".to_owned(),
            batch_window: Duration::from_millis(200),
            retry: RetryPolicy::default(),
            credentials: Credentials::None,
        }
    }

    /// The remote URL with any userinfo removed: safe for logs, errors and status. A
    /// URL that would still show a secret (scp-like `user:password@host:path`, a secret
    /// after `?`) or a line break is not shown at all.
    pub fn remote_display(&self) -> String {
        let shown = redact_userinfo(&self.remote_url);
        if git_url::quotable(&shown) { shown } else { REDACTED.to_owned() }
    }

    /// Checks what can be checked without touching the disk or the network.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if self.remote_url.trim().is_empty() {
            return invalid("remote url is empty".to_owned());
        }
        let lower = self.remote_url.to_ascii_lowercase();
        // The same rule as a request's repoURL.
        if let Err(refusal) = git_url::check(&self.remote_url) {
            return invalid(format!(
                "remote url {} {refusal}; put the token in a file and use token credentials (ssh URLs may name a user, such as git@)",
                self.remote_display()
            ));
        }
        if matches!(self.credentials, Credentials::Token { .. }) && lower.starts_with("http://") {
            return invalid(format!("refusing to send a token over plain http to {}", self.remote_display()));
        }
        if !git2::Reference::is_valid_name(&format!("refs/heads/{}", self.branch)) {
            return invalid(format!("branch {:?} is not a valid branch name", self.branch));
        }
        if let PushMode::PullRequest { branch_prefix } = &self.mode {
            let example = format!("refs/heads/{branch_prefix}0123abcd");
            if !git2::Reference::is_valid_name(&example) {
                return invalid(format!("promotion branch prefix {branch_prefix:?} does not give valid branch names"));
            }
        }
        if self.retry.max_push_attempts == 0 {
            return invalid("max_push_attempts must be at least 1".to_owned());
        }
        if self.author_name.trim().is_empty() || self.author_email.trim().is_empty() {
            return invalid("author name and e-mail must not be empty".to_owned());
        }
        Ok(())
    }
}

impl fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterConfig")
            .field("workdir", &self.workdir)
            .field("remote_url", &self.remote_display())
            .field("branch", &self.branch)
            .field("mode", &self.mode)
            .field("author_name", &self.author_name)
            .field("author_email", &self.author_email)
            .field("batch_window", &self.batch_window)
            .field("retry", &self.retry)
            .field("credentials", &self.credentials)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::credentials::Secret;

    fn config(url: &str) -> WriterConfig {
        WriterConfig::new("/tmp/w", url, "main")
    }

    #[test]
    fn urls_with_credentials_are_refused_without_echoing_them() {
        for url in [
            "https://user:SECRET@example.com/r.git",
            "https://SECRET@example.com/r.git",
            "ssh://git:SECRET@example.com/r.git",
        ] {
            let err = config(url).validate().expect_err(url);
            assert!(!err.to_string().contains("SECRET"), "{err}");
            assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
            assert!(!format!("{:?}", config(url)).contains("SECRET"));
        }
        assert!(config("ssh://git@example.com/r.git").validate().is_ok());
        assert!(config("git@example.com:org/r.git").validate().is_ok());
        assert!(config("file:///tmp/r.git").validate().is_ok());
    }

    #[test]
    fn remotes_follow_the_shared_url_table() {
        use crate::api::git_url::{EXAMPLE_SECRET, EXAMPLES, Expected};
        for (url, expected) in EXAMPLES {
            let validated = config(url).validate();
            match expected {
                Expected::Allowed => assert!(validated.is_ok(), "{url:?}: {validated:?}"),
                Expected::Refused(why) => {
                    let err = validated.expect_err(url).to_string();
                    assert!(err.contains(&why.to_string()), "{url:?}: {err}");
                    for text in [err, format!("{:?}", config(url)), config(url).remote_display()] {
                        assert!(!text.contains(EXAMPLE_SECRET) && !text.contains('\n'), "{url:?}: {text}");
                    }
                }
            }
        }
    }

    #[test]
    fn token_over_plain_http_is_refused() {
        let mut c = config("http://example.com/r.git");
        c.credentials = Credentials::Token { username: "u".into(), token: Secret::new("t") };
        assert!(c.validate().is_err());
    }

    #[test]
    fn branch_names_are_checked() {
        let mut c = config("file:///r");
        c.branch = "bad..name".into();
        assert!(c.validate().is_err());
        c.branch = "main".into();
        c.mode = PushMode::PullRequest { branch_prefix: "berth/".into() };
        assert!(c.validate().is_ok());
        c.mode = PushMode::PullRequest { branch_prefix: "bad ~prefix".into() };
        assert!(c.validate().is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_push_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            pending_retry_interval: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let waits: Vec<_> = (1..=6).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, [0, 100, 200, 400, 500, 500]);
        assert_eq!(policy.backoff(200), Duration::from_millis(500));
    }
}
