//! Credentials for the GitOps remote, read from files only.
//!
//! Secrets come from mounted files (`*_FILE` settings, Kubernetes Secrets), never from
//! the command line or the remote URL, so they do not show up in `ps`, in the clone's
//! `config` or in error messages. [`Secret`] keeps them out of `Debug` output.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::error::Error;
use super::redact::{KnownValues, REDACTED, Redactor};
use crate::reload::Reloading;

/// A secret value whose `Debug` prints `[redacted]` and which has no `Display`.
///
/// One read from a file follows the file: [`Secret::current`] re-reads it when its
/// content changed (a rotated token), keeping the last good value if the new one is
/// unusable (see [`crate::reload`]).
#[derive(Clone)]
pub struct Secret {
    value: Arc<Reloading<String>>,
    /// The value before the last rotation: one fetch may ask for credentials more than
    /// once and so send the old token before the new one, and its errors may quote
    /// either (see [`Redactor::following`]).
    previous: Arc<Mutex<Option<Arc<String>>>>,
}

impl Secret {
    fn of(value: Arc<Reloading<String>>) -> Self {
        Self { value, previous: Arc::default() }
    }

    /// Wraps a value already in memory (tests, or a caller that read it itself).
    pub fn new(value: impl Into<String>) -> Self {
        Self::of(Reloading::fixed(value.into()))
    }

    /// Reads a secret from a file, dropping one trailing newline (`echo` adds one,
    /// Kubernetes Secrets usually do not).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let file = path.to_owned();
        Reloading::from_files("git secret", vec![path.to_owned()], move || read_secret(&file)).map(Self::of)
    }

    /// The secret as the file holds it now, re-read if it changed; only for handing it
    /// to libgit2 or an HTTP header. Blocking: reads the file.
    pub(crate) fn current(&self) -> Arc<String> {
        let before = self.value.current();
        if self.value.refresh() {
            *self.previous.lock().unwrap_or_else(PoisonError::into_inner) = Some(before);
        }
        self.value.current()
    }

    /// The value last read and the one before the last rotation, without touching the
    /// file (for redaction).
    pub(crate) fn known(&self) -> Vec<Arc<String>> {
        let previous = self.previous.lock().unwrap_or_else(PoisonError::into_inner).clone();
        [Some(self.value.current()), previous].into_iter().flatten().collect()
    }

    /// [`Secret::known`] as a redactor asks for it.
    fn known_values(&self) -> KnownValues {
        let secret = self.clone();
        Arc::new(move || secret.known())
    }
}

fn read_secret(path: &Path) -> Result<String, Error> {
    let raw = std::fs::read_to_string(path)
        .map_err(|source| Error::ReadSecret { path: path.to_owned(), source: Arc::new(source) })?;
    let value = raw.strip_suffix("\r\n").or_else(|| raw.strip_suffix('\n')).unwrap_or(&raw);
    if value.is_empty() {
        return Err(Error::InvalidConfig { reason: format!("secret file {} is empty", path.display()) });
    }
    Ok(value.to_owned())
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
    /// (`*_PASSPHRASE_FILE`). The key file itself is read by libgit2 on each connection,
    /// so a rotated key is used from the next one on; the passphrase is re-read then too.
    pub fn ssh_key_from_files(private_key: PathBuf, passphrase_file: Option<&Path>) -> Result<Self, Error> {
        if !private_key.is_file() {
            return Err(Error::InvalidConfig {
                reason: format!("ssh private key {} is not a readable file", private_key.display()),
            });
        }
        let passphrase = passphrase_file.map(Secret::from_file).transpose()?;
        Ok(Self::SshKey { private_key, passphrase })
    }

    /// A redactor that knows every secret value held here, as it is at redaction time.
    pub(crate) fn redactor(&self) -> Redactor {
        match self {
            Self::None | Self::SshKey { passphrase: None, .. } => Redactor::default(),
            Self::Token { token, .. } => Redactor::following(token.known_values()),
            Self::SshKey { passphrase: Some(p), .. } => Redactor::following(p.known_values()),
        }
    }

    /// Builds the libgit2 credential for one callback invocation, from the secret files
    /// as they are now.
    pub(crate) fn to_cred(
        &self,
        username_from_url: Option<&str>,
        allowed: git2::CredentialType,
    ) -> Result<git2::Cred, git2::Error> {
        match self {
            Self::None => Err(git2::Error::from_str("the remote asked for credentials but none are configured")),
            Self::Token { username, token } => {
                if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
                    git2::Cred::userpass_plaintext(username, &token.current())
                } else {
                    Err(git2::Error::from_str("the remote does not accept token (user/password) credentials"))
                }
            }
            Self::SshKey { private_key, passphrase } => {
                let user = username_from_url.unwrap_or("git");
                if allowed.contains(git2::CredentialType::SSH_KEY) {
                    let passphrase = passphrase.as_ref().map(Secret::current);
                    git2::Cred::ssh_key(user, None, private_key, passphrase.as_deref().map(String::as_str))
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
        assert_eq!(*secret.current(), "abc123");
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

    /// An HTTP "git server" that asks for basic auth and records the `Authorization`
    /// headers it is sent (then answers 404, ending the fetch).
    fn recording_server() -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/repo.git", listener.local_addr().expect("addr"));
        let (sent, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that stops talking must not hang the test.
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut reader = BufReader::new(&stream);
                let mut authorization = None;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("authorization")
                    {
                        authorization = Some(value.trim().to_owned());
                    }
                    line.clear();
                }
                let answer = match authorization {
                    Some(value) => {
                        let _ = sent.send(value);
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    }
                    None => {
                        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    }
                };
                let _ = (&stream).write_all(answer.as_bytes());
            }
        });
        (url, seen)
    }

    /// What one fetch with the writer's callbacks sends as basic auth, decoded.
    fn basic_auth_sent(credentials: &Credentials, url: &str, seen: &std::sync::mpsc::Receiver<String>) -> String {
        use base64::Engine;
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init_bare(dir.path()).expect("init");
        let mut remote = repo.remote_anonymous(url).expect("remote");
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(callbacks(credentials));
        remote.fetch(&["+refs/heads/main:refs/remotes/origin/main"], Some(&mut options), None).expect_err("404");
        let header = seen.recv_timeout(std::time::Duration::from_secs(10)).expect("an Authorization header");
        let encoded = header.strip_prefix("Basic ").expect("basic auth");
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
        String::from_utf8(decoded).expect("utf-8")
    }

    #[test]
    fn a_rotated_token_file_is_sent_from_the_next_connection_on_and_a_bad_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "first-token\n").expect("write");
        let credentials = Credentials::token_from_file("x-access-token", &token_file).expect("token");
        let redactor = credentials.redactor();
        let (url, seen) = recording_server();
        assert_eq!(basic_auth_sent(&credentials, &url, &seen), "x-access-token:first-token");

        std::fs::write(&token_file, "second-token\n").expect("rotate");
        assert_eq!(basic_auth_sent(&credentials, &url, &seen), "x-access-token:second-token");
        assert_eq!(redactor.redact("denied second-token"), "denied [redacted]", "the redactor follows");
        // A fetch may have sent the old token before it asked again: both are scrubbed.
        assert_eq!(redactor.redact("first-token then second-token"), "[redacted] then [redacted]");

        // An emptied file (a rotation caught halfway) keeps the last good token.
        std::fs::write(&token_file, "").expect("empty");
        assert_eq!(basic_auth_sent(&credentials, &url, &seen), "x-access-token:second-token");
    }
}
