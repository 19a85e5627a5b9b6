//! Credentials for the GitOps remote, read from files only.
//!
//! Secrets come from mounted files (`*_FILE` settings, Kubernetes Secrets), never from
//! the command line or the remote URL, so they do not show up in `ps`, in the clone's
//! `config` or in error messages. [`Secret`] keeps them out of `Debug` output.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::Error;
use super::redact::{REDACTED, Redactor};

/// A secret value whose `Debug` prints `[redacted]` and which has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value already in memory (tests, or a caller that read it itself).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads a secret from a file, dropping one trailing newline (`echo` adds one,
    /// Kubernetes Secrets usually do not).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let raw = std::fs::read_to_string(path)
            .map_err(|source| Error::ReadSecret { path: path.to_owned(), source: Arc::new(source) })?;
        let value = raw.strip_suffix("\r\n").or_else(|| raw.strip_suffix('\n')).unwrap_or(&raw);
        if value.is_empty() {
            return Err(Error::InvalidConfig { reason: format!("secret file {} is empty", path.display()) });
        }
        Ok(Self(value.to_owned()))
    }

    /// The secret itself; only for handing it to libgit2.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// How the writer authenticates to the remote.
#[derive(Debug, Clone, Default)]
pub enum Credentials {
    /// No credentials (`file://`, `git://`, or a public test remote).
    #[default]
    None,
    /// HTTPS basic auth with a token as password (GitHub: user `x-access-token`,
    /// GitLab: `oauth2`).
    Token {
        /// User name sent with the token.
        username: String,
        /// The token.
        token: Secret,
    },
    /// SSH with a private key file. The user comes from the URL (`ssh://git@host/…`),
    /// `git` when the URL has none. Host keys are checked by libgit2 against
    /// `~/.ssh/known_hosts`.
    SshKey {
        /// Path of the private key (OpenSSH or PEM format).
        private_key: PathBuf,
        /// Passphrase of the key, if it has one.
        passphrase: Option<Secret>,
    },
}

impl Credentials {
    /// Token credentials with the token read from `token_file` (`*_TOKEN_FILE`).
    pub fn token_from_file(username: impl Into<String>, token_file: &Path) -> Result<Self, Error> {
        Ok(Self::Token { username: username.into(), token: Secret::from_file(token_file)? })
    }

    /// SSH key credentials; the passphrase, if any, is read from `passphrase_file`
    /// (`*_PASSPHRASE_FILE`). The key file itself is read by libgit2 when connecting.
    pub fn ssh_key_from_files(private_key: PathBuf, passphrase_file: Option<&Path>) -> Result<Self, Error> {
        if !private_key.is_file() {
            return Err(Error::InvalidConfig {
                reason: format!("ssh private key {} is not a readable file", private_key.display()),
            });
        }
        let passphrase = passphrase_file.map(Secret::from_file).transpose()?;
        Ok(Self::SshKey { private_key, passphrase })
    }

    /// A redactor that knows every secret value held here.
    pub(crate) fn redactor(&self) -> Redactor {
        match self {
            Self::None | Self::SshKey { passphrase: None, .. } => Redactor::default(),
            Self::Token { token, .. } => Redactor::new([token.expose()]),
            Self::SshKey { passphrase: Some(p), .. } => Redactor::new([p.expose()]),
        }
    }

    /// Builds the libgit2 credential for one callback invocation.
    pub(crate) fn to_cred(
        &self,
        username_from_url: Option<&str>,
        allowed: git2::CredentialType,
    ) -> Result<git2::Cred, git2::Error> {
        match self {
            Self::None => Err(git2::Error::from_str("the remote asked for credentials but none are configured")),
            Self::Token { username, token } => {
                if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
                    git2::Cred::userpass_plaintext(username, token.expose())
                } else {
                    Err(git2::Error::from_str("the remote does not accept token (user/password) credentials"))
                }
            }
            Self::SshKey { private_key, passphrase } => {
                let user = username_from_url.unwrap_or("git");
                if allowed.contains(git2::CredentialType::SSH_KEY) {
                    git2::Cred::ssh_key(user, None, private_key, passphrase.as_ref().map(Secret::expose))
                } else if allowed.contains(git2::CredentialType::USERNAME) {
                    git2::Cred::username(user)
                } else {
                    Err(git2::Error::from_str("the remote does not accept ssh key credentials"))
                }
            }
        }
    }
}

/// How often libgit2 may ask for credentials in one operation before we give up.
/// libgit2 asks again after every rejection, so without a bound a wrong token loops.
pub(crate) const MAX_CREDENTIAL_CALLS: u32 = 3;

/// Callbacks carrying the credentials, with a bound on retries.
pub(crate) fn callbacks(credentials: &Credentials) -> git2::RemoteCallbacks<'_> {
    let mut callbacks = git2::RemoteCallbacks::new();
    let mut calls = 0u32;
    callbacks.credentials(move |_url, username, allowed| {
        calls += 1;
        if calls > MAX_CREDENTIAL_CALLS {
            let mut err = git2::Error::from_str("the remote rejected the configured credentials");
            err.set_code(git2::ErrorCode::Auth);
            return Err(err);
        }
        credentials.to_cred(username, allowed)
    });
    callbacks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let creds = Credentials::Token { username: "x-access-token".into(), token: Secret::new("ghp_SUPERSECRET") };
        let debug = format!("{creds:?}");
        assert!(!debug.contains("SUPERSECRET"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        let ssh = Credentials::SshKey { private_key: "/k".into(), passphrase: Some(Secret::new("hunter2hunter2")) };
        assert!(!format!("{ssh:?}").contains("hunter2"));
    }

    #[test]
    fn secret_file_trailing_newline_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "abc123\n").expect("write");
        let secret = Secret::from_file(&path).expect("read");
        assert_eq!(secret.expose(), "abc123");
        std::fs::write(&path, "\n").expect("write");
        assert!(Secret::from_file(&path).is_err());
        let missing = Secret::from_file(&dir.path().join("missing")).expect_err("missing");
        assert!(missing.to_string().contains("missing"), "{missing}");
    }

    #[test]
    fn redactor_knows_the_token() {
        let creds = Credentials::Token { username: "u".into(), token: Secret::new("TOKENVALUE") };
        assert_eq!(creds.redactor().redact("bad TOKENVALUE"), "bad [redacted]");
    }
}
