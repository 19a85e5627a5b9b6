//! The one rule for a git repository URL Berth is given: a request's `app.repoURL`
//! (checked by the CRD's CEL, admission, the request controller and rendering) and
//! the GitOps writer's remote.
//!
//! A URL is refused when it has
//! - any whitespace or control character, anywhere: a leading space or line break
//!   hid `https://user:password@…` from the old rule, while a tool that trims the
//!   URL still finds the password, and no repository URL needs them;
//! - a password: a `:` before an `@` in the part before the first `/` after the
//!   scheme's slashes (`https://u:p@h`, `ssh://git:p@h`, `u:p@host:path`). Only `/`
//!   ends that part, because git itself (`credential_from_url`) ends it there: in
//!   `https://h?x=u:p@evil/r` git sees a password, so it is refused too. Schemes match
//!   in any case and with one slash or none (`https:u:p@h`), which browsers read as
//!   `https://u:p@h`;
//! - a user name in a URL whose scheme is not ssh (`ssh://`, `git+ssh://`,
//!   `ssh+git://`): `https://TOKEN@host` is how tokens are usually pasted;
//!   `ssh://git@host` and scp-like `git@host:path` name a user and no secret;
//! - `%3A` or `%40` (an encoded `:` or `@`, any case) in that same part: they hide a
//!   password from a reader while clients decode them into one, and no host needs them.
//!
//! The rule is written once, as RE2 patterns: the CRD's CEL rules run them with
//! `matches()`, and [`check`] runs the same patterns with the `regex` crate (same
//! syntax, same unanchored search), so the apiserver and Berth cannot disagree.
//! [`EXAMPLES`] is the table every layer's tests share.

use std::sync::LazyLock;

use regex::Regex;

use Expected::{Allowed, Refused};
use UnsafeUrl::{Characters, Credentials};

/// A scheme and the slashes after it (`https://`, `file:///`, `https:/`).
macro_rules! scheme_and_slashes {
    () => {
        "[a-zA-Z][a-zA-Z0-9+.-]*:/+"
    };
}

/// Any whitespace (Unicode `White_Space` is `Z` plus some of `Cc`) or control character.
const CHARACTERS: &str = r"[\p{Cc}\p{Z}]";
/// A `:` before an `@` where userinfo can be: after an optional scheme's slashes
/// (without them the URL is scp-like, `user@host:path`), before the next `/`.
const PASSWORD: &str = concat!("^(", scheme_and_slashes!(), ")?[^/]*:[^/]*@");
/// An encoded `:` or `@` in that same part.
const ENCODED: &str = concat!("^(", scheme_and_slashes!(), ")?[^/]*%(3[aA]|40)");
/// Userinfo after a scheme.
const USER: &str = concat!("^", scheme_and_slashes!(), "[^/]*@");
/// The schemes whose URLs may name a user: ssh's user is a name, not a secret.
const SSH_SCHEME: &str = "^(?i)(ssh|git[+]ssh|ssh[+]git):";

/// What the CEL rules, admission, the request controller and rendering say about a
/// request's `app.repoURL`. The URL is never quoted: it may hold a secret.
pub const REPO_URL_CHARACTERS_MESSAGE: &str =
    "repoURL must not contain spaces, line breaks or other control characters; remove them";
pub const REPO_URL_CREDENTIALS_MESSAGE: &str = "repoURL must not carry credentials (user:password@, token@, or an encoded ':' or '@' before the host; only ssh URLs may name a user, such as git@); put them in Argo CD's repository credentials, not in the URL";

/// Why a URL is refused. Carries no part of the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeUrl {
    #[error("contains whitespace or control characters")]
    Characters,
    #[error("carries credentials (a password, a token as user name, or an encoded ':' or '@' before the host)")]
    Credentials,
}

impl UnsafeUrl {
    /// The message for a request's `app.repoURL`, the same as its CEL rule's.
    pub fn repo_url_message(self) -> &'static str {
        match self {
            UnsafeUrl::Characters => REPO_URL_CHARACTERS_MESSAGE,
            UnsafeUrl::Credentials => REPO_URL_CREDENTIALS_MESSAGE,
        }
    }
}

struct Patterns {
    characters: Regex,
    password: Regex,
    encoded: Regex,
    user: Regex,
    ssh_scheme: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    // Constant patterns, each compiled by the tests; a typo fails every test here.
    let compile = |pattern: &str| Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern:?}: {e}"));
    Patterns {
        characters: compile(CHARACTERS),
        password: compile(PASSWORD),
        encoded: compile(ENCODED),
        user: compile(USER),
        ssh_scheme: compile(SSH_SCHEME),
    }
});

/// Checks `url` against the rule (see the module documentation).
pub fn check(url: &str) -> Result<(), UnsafeUrl> {
    let p = &*PATTERNS;
    if p.characters.is_match(url) {
        return Err(UnsafeUrl::Characters);
    }
    if shows_password(url) || (p.user.is_match(url) && !p.ssh_scheme.is_match(url)) {
        return Err(UnsafeUrl::Credentials);
    }
    Ok(())
}

/// Whether `url` may be quoted in a message or a log line: no whitespace or control
/// characters and no password, plain or encoded. A user name alone passes, so a URL
/// whose userinfo was redacted (`https://[redacted]@host/x`) can be shown.
pub fn quotable(url: &str) -> bool {
    !PATTERNS.characters.is_match(url) && !shows_password(url)
}

fn shows_password(url: &str) -> bool {
    PATTERNS.password.is_match(url) || PATTERNS.encoded.is_match(url)
}

/// `pattern` as a CEL string literal (the patterns hold no `'`).
fn cel_string(pattern: &str) -> String {
    format!("'{}'", pattern.replace('\\', "\\\\"))
}

/// The CEL rule refusing what [`UnsafeUrl::Characters`] refuses.
pub fn cel_characters_rule() -> String {
    format!("!self.matches({})", cel_string(CHARACTERS))
}

/// The CEL rule refusing what [`UnsafeUrl::Credentials`] refuses.
pub fn cel_credentials_rule() -> String {
    let [password, encoded, user, ssh] = [PASSWORD, ENCODED, USER, SSH_SCHEME].map(cel_string);
    format!("!self.matches({password}) && !self.matches({encoded}) && (!self.matches({user}) || self.matches({ssh}))")
}

/// What the rule makes of a URL in [`EXAMPLES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Allowed,
    Refused(UnsafeUrl),
}

/// The secret the refused examples hide; no refusal may show it.
pub const EXAMPLE_SECRET: &str = "S3CRET";

/// The URLs every layer is tested with: the rule in Rust, rendering, the request
/// policy, admission, the GitOps writer, and the CRD's CEL on a real apiserver.
pub const EXAMPLES: &[(&str, Expected)] = &[
    // The three from issue 16: ssh userinfo, and a leading space or line break.
    ("ssh://git:S3CRET@git.example.com/x.git", Refused(Credentials)),
    (" https://alice:S3CRET@git.example.com/x.git", Refused(Characters)),
    ("\nhttps://alice:S3CRET@git.example.com/x.git", Refused(Characters)),
    // Passwords in every scheme and case, IPv6 hosts, scp-like and slash-less forms.
    ("https://alice:S3CRET@git.example.com/x.git", Refused(Credentials)),
    ("HTTPS://alice:S3CRET@git.example.com/x.git", Refused(Credentials)),
    ("git+https://alice:S3CRET@git.example.com/x.git", Refused(Credentials)),
    ("SSH://git:S3CRET@git.example.com/x.git", Refused(Credentials)),
    ("git+ssh://git:S3CRET@git.example.com/x.git", Refused(Credentials)),
    ("file://alice:S3CRET@localhost/srv/x.git", Refused(Credentials)),
    ("https://alice:S3CRET@[2001:db8::1]/x.git", Refused(Credentials)),
    ("ssh://git:S3CRET@[::1]:22/x.git", Refused(Credentials)),
    ("alice:S3CRET@git.example.com:team/x.git", Refused(Credentials)),
    ("ssh:S3CRET@git.example.com:team/x.git", Refused(Credentials)),
    ("https:alice:S3CRET@git.example.com/x.git", Refused(Credentials)),
    ("https:/alice:S3CRET@git.example.com/x.git", Refused(Credentials)),
    ("https://alice:@git.example.com/x.git", Refused(Credentials)),
    ("https://git.example.com?u=alice:S3CRET@evil.example.com/x.git", Refused(Credentials)),
    // A token as the user name of a scheme that is not ssh.
    ("https://S3CRET@git.example.com/x.git", Refused(Credentials)),
    ("git+https://S3CRET@git.example.com/x.git", Refused(Credentials)),
    // Encoded ':' and '@' before the host.
    ("https://alice%3AS3CRET@git.example.com/x.git", Refused(Credentials)),
    ("ssh://git%3aS3CRET@git.example.com/x.git", Refused(Credentials)),
    ("https://alice:S3CRET%40git.example.com/x.git", Refused(Credentials)),
    ("git%40S3CRET@git.example.com:team/x.git", Refused(Credentials)),
    // Whitespace and control characters anywhere.
    ("https://git.example.com/x.git ", Refused(Characters)),
    ("https://git.example.com/x.git\n", Refused(Characters)),
    ("https://git.example.com/x.git\r", Refused(Characters)),
    ("https://git.example.com/\tx.git", Refused(Characters)),
    ("https://git.example.com/x\u{7f}.git", Refused(Characters)),
    ("https://git.example.com/x\u{85}.git", Refused(Characters)),
    ("https://git.example.com/x\u{a0}.git", Refused(Characters)),
    ("https://git.example.com/x\u{2028}.git", Refused(Characters)),
    // What must stay allowed.
    ("https://git.example.com/payments/checkout.git", Allowed),
    ("HTTPS://git.example.com/x.git", Allowed),
    ("git+https://git.example.com/x.git", Allowed),
    ("https://git.example.com:8443/x.git", Allowed),
    ("https://[2001:db8::1]/x.git", Allowed),
    ("https://[::1]:8443/x.git", Allowed),
    ("ssh://git@git.example.com/x.git", Allowed),
    ("SSH://git@git.example.com:2222/x.git", Allowed),
    ("git+ssh://git@git.example.com/x.git", Allowed),
    ("ssh://git@[::1]:22/x.git", Allowed),
    ("git@git.example.com:payments/checkout.git", Allowed),
    ("git.example.com:payments/checkout.git", Allowed),
    ("git@git.example.com:/srv/git/x.git", Allowed),
    ("file:///srv/git/x.git", Allowed),
    ("https://git.example.com/@scope/x.git", Allowed),
    ("https://git.example.com/x%40y.git", Allowed),
    ("https://bücher.example/x.git", Allowed),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_gets_its_expected_verdict() {
        for (url, expected) in EXAMPLES {
            let got = match check(url) {
                Ok(()) => Allowed,
                Err(refusal) => Refused(refusal),
            };
            assert_eq!(got, *expected, "{url:?}");
        }
    }

    #[test]
    fn a_redacted_user_name_is_quotable_and_a_password_is_not() {
        assert!(quotable("https://[redacted]@git.example.com/x.git"));
        assert!(quotable("git@git.example.com:team/x.git"));
        for (url, expected) in EXAMPLES {
            if *expected == Allowed {
                assert!(quotable(url), "{url:?}");
            } else if url.contains(&format!(":{EXAMPLE_SECRET}")) || url.trim() != *url {
                assert!(!quotable(url), "{url:?}");
            }
        }
    }

    #[test]
    fn the_table_covers_both_refusals_and_allowed_urls() {
        let count = |wanted: Expected| EXAMPLES.iter().filter(|(_, e)| *e == wanted).count();
        assert!(count(Allowed) >= 10 && count(Refused(Characters)) >= 5 && count(Refused(Credentials)) >= 10);
        for (url, expected) in EXAMPLES {
            if *expected == Refused(Credentials) {
                assert!(url.contains(EXAMPLE_SECRET) || url.contains(":@"), "{url:?} hides no secret");
            }
        }
    }

    #[test]
    fn cel_rules_are_the_patterns_as_cel_strings() {
        assert_eq!(cel_characters_rule(), r"!self.matches('[\\p{Cc}\\p{Z}]')");
        assert_eq!(
            cel_credentials_rule(),
            "!self.matches('^([a-zA-Z][a-zA-Z0-9+.-]*:/+)?[^/]*:[^/]*@') \
             && !self.matches('^([a-zA-Z][a-zA-Z0-9+.-]*:/+)?[^/]*%(3[aA]|40)') \
             && (!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*:/+[^/]*@') || self.matches('^(?i)(ssh|git[+]ssh|ssh[+]git):'))"
        );
    }
}
