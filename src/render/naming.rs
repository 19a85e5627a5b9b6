//! The environment's namespace name: readable, a valid DNS label, at most 63
//! characters, and different for every (tenant, request) pair.

use sha2::{Digest, Sha256};

/// Longest DNS label (RFC 1123), the limit for namespace names and label values.
pub const MAX_DNS_LABEL: usize = 63;

/// Hex digits of the SHA-256 of `tenant/request` appended to every name.
const HASH_LEN: usize = 8;

/// `<tenant>-<request>-<hash>`, lowercased, characters outside `[a-z0-9-]` turned
/// into `-`, shortened to fit 63 characters.
///
/// The hash is always there: `tenant-a` + `b` and `tenant` + `a-b` read the same,
/// and only the hash of the unambiguous `tenant/request` keeps them apart.
pub fn environment_namespace(tenant: &str, request: &str) -> String {
    let digest = Sha256::digest(format!("{tenant}/{request}").as_bytes());
    let hash: String = digest.iter().take(HASH_LEN / 2).map(|b| format!("{b:02x}")).collect();
    let readable = sanitize(&format!("{tenant}-{request}"));
    let room = MAX_DNS_LABEL - HASH_LEN - 1;
    let prefix = readable[..readable.len().min(room)].trim_end_matches('-');
    if prefix.is_empty() { format!("env-{hash}") } else { format!("{prefix}-{hash}") }
}

/// Lowercase ASCII letters and digits kept, runs of anything else become one `-`,
/// no leading or trailing `-`.
fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// Whether `name` is a valid RFC 1123 DNS label.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DNS_LABEL
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_names_keep_tenant_and_request() {
        let name = environment_namespace("payments", "checkout-pr-1234");
        assert!(name.starts_with("payments-checkout-pr-1234-"), "{name}");
        assert_eq!(name.len(), "payments-checkout-pr-1234-".len() + HASH_LEN);
        assert!(is_dns_label(&name));
    }

    #[test]
    fn the_same_input_gives_the_same_name() {
        assert_eq!(environment_namespace("payments", "web"), environment_namespace("payments", "web"));
    }

    #[test]
    fn ambiguous_splits_get_different_names() {
        let a = environment_namespace("team-a", "b");
        let b = environment_namespace("team", "a-b");
        assert_ne!(a, b);
        assert!(a.starts_with("team-a-b-") && b.starts_with("team-a-b-"));
    }

    #[test]
    fn long_names_are_shortened_to_a_valid_label_and_stay_distinct() {
        let tenant = "platform-infrastructure-and-developer-experience";
        let first = environment_namespace(tenant, "a-very-long-request-name-for-a-feature-branch-1");
        let second = environment_namespace(tenant, "a-very-long-request-name-for-a-feature-branch-2");
        for name in [&first, &second] {
            assert_eq!(name.len(), MAX_DNS_LABEL, "{name}");
            assert!(is_dns_label(name), "{name}");
        }
        assert_ne!(first, second);
    }

    #[test]
    fn dots_uppercase_and_symbols_become_single_dashes() {
        let name = environment_namespace("Team.Payments", "feature__X");
        assert!(name.starts_with("team-payments-feature-x-"), "{name}");
        assert!(is_dns_label(&name));
    }

    #[test]
    fn names_made_only_of_symbols_still_give_a_label() {
        let name = environment_namespace("...", "___");
        assert!(name.starts_with("env-") && is_dns_label(&name), "{name}");
    }

    #[test]
    fn dns_label_check_rejects_what_kubernetes_rejects() {
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
        for good in ["a", "a-b", "0", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good:?}");
        }
    }
}
