//! Scrubbing secrets out of text before it becomes an error, a log line or a status.
//!
//! libgit2 and the transports under it quote URLs (with their userinfo) and sometimes
//! what the server answered; peers leaked tokens that way (git-sync #851, Argo CD
//! CVE-2023-25163, CVE-2025-23216). Every git message goes through [`Redactor::redact`].

use std::sync::Arc;

/// Replacement text for anything secret.
pub const REDACTED: &str = "[redacted]";

/// Knows the secret values in use and removes them, and any URL userinfo, from text.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
    /// A secret read from a file that may be rotated: redacted as it is at the time.
    following: Option<KnownValues>,
}

/// The values a rotating secret has been known by lately (see
/// `credentials::Secret::known`), asked at each redaction. A function rather than the
/// secret itself, so that this module, which every git error goes through, depends
/// on nothing else in `gitops`.
pub(crate) type KnownValues = Arc<dyn Fn() -> Vec<Arc<String>> + Send + Sync>;

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("secrets", &self.secrets.len()).finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor that knows the given secret values (empty ones are ignored).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                continue;
            }
            all.push(secret.to_owned());
            let encoded = percent_encode(secret);
            if encoded != secret {
                all.push(encoded);
            }
        }
        // Longest first, so a secret that contains another is removed whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Self { secrets: all, following: None }
    }

    /// A redactor that knows a secret's values whenever it redacts, after rotations too.
    pub(crate) fn following(known: KnownValues) -> Self {
        Self { following: Some(known), ..Self::default() }
    }

    /// Removes every known secret and every URL userinfo from `text`.
    pub fn redact(&self, text: &str) -> String {
        if let Some(known) = &self.following {
            let known = known();
            let now = Redactor::new(self.secrets.iter().map(String::as_str).chain(known.iter().map(|s| s.as_str())));
            return now.redact(text);
        }
        let mut out = redact_userinfo(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Replaces the userinfo (`user:password@`) of every `scheme://` URL in `text`.
///
/// The user name alone is harmless in an `ssh://git@host` URL, but a token is often
/// passed as the user name (`https://TOKEN@host`), so all userinfo goes.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Percent-encodes everything outside the URL "unreserved" set, the way a token would
/// appear if someone put it into a URL (and the way a query parameter is sent).
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_removed_from_every_url() {
        let text = "failed to connect to https://user:s3cr3t@example.com/repo.git and \
                    ssh://git@host:22/x and https://tok@h/p";
        let out = redact_userinfo(text);
        assert!(!out.contains("s3cr3t"));
        assert!(!out.contains("tok@"));
        assert_eq!(
            out,
            "failed to connect to https://[redacted]@example.com/repo.git and \
             ssh://[redacted]@host:22/x and https://[redacted]@h/p"
        );
    }

    #[test]
    fn urls_without_userinfo_are_kept() {
        let text = "could not read file:///tmp/x.git: no such file";
        assert_eq!(redact_userinfo(text), text);
        assert_eq!(redact_userinfo("https://h"), "https://h");
    }

    #[test]
    fn known_secrets_are_removed_anywhere() {
        let r = Redactor::new(["p@ss word", "", "tok"]);
        let out = r.redact("auth failed for tok (p@ss word) p%40ss%20word");
        assert_eq!(out, "auth failed for [redacted] ([redacted]) [redacted]");
        assert!(!format!("{r:?}").contains("tok"));
    }
}
