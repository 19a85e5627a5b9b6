//! `berth run --strict`: refuses to start with a configuration that is fine for a
//! laptop and wrong for a cluster. Only the flags are looked at (the files they name
//! are read, and refused when unusable, whether strict or not), so the check is a
//! pure function.
//!
//! Not refused: a missing bearer-token verifier (no JWKS, no public keys, no OIDC
//! issuer). Approvers authenticate with their Kubernetes identity (TokenReview) by
//! default, without any key of Berth's.

use std::fmt;

use crate::webhook::WebhookArgs;

/// Every reason strict mode refuses a configuration, each saying what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub Vec<&'static str>);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "strict mode (--strict, BERTH_STRICT) refuses to start:")?;
        for reason in &self.0 {
            write!(f, "\n  - {reason}")?;
        }
        write!(f, "\n(for local development, run without --strict)")
    }
}

impl std::error::Error for Refusal {}

/// Whoever holds a shared secret can mint any approver's bearer token.
pub const HS256: &str = "an HS256 bearer secret is configured (--auth-hs256-secret-file, \
     BERTH_AUTH_HS256_SECRET_FILE): whoever reads it can sign a token for any approver. \
     Authenticate approvers with their Kubernetes identity (the default) or your \
     identity provider's keys (--auth-oidc-issuer-url, --auth-jwks-file or \
     --auth-public-key-files) and remove the secret";
/// Without it no approval can be issued, and approval classes never provision.
pub const NO_SIGNING_KEY: &str = "no approval signing key (--approval-signing-key-file, \
     BERTH_APPROVAL_SIGNING_KEY_FILE): without it POST /v1/approvals cannot sign and no \
     class that needs approval is ever provisioned. Mount a PKCS#8 Ed25519 or P-256 key \
     from a Secret (`openssl genpkey -algorithm ed25519` makes one)";
/// Without TLS Berth serves neither admission nor the auth API.
pub const NO_TLS: &str = "webhook TLS is not configured (--webhook-cert-file and \
     --webhook-key-file, BERTH_WEBHOOK_CERT_FILE and BERTH_WEBHOOK_KEY_FILE): without it \
     Berth serves no admission (the apiserver cannot refuse a request at kubectl apply) \
     and no auth API. Mount the serving certificate's kubernetes.io/tls Secret";

/// What strict mode refuses in `args`; `Ok` when it may start.
pub fn check(args: &WebhookArgs) -> Result<(), Refusal> {
    let mut reasons = Vec::new();
    if args.auth_hs256_secret_file.is_some() {
        reasons.push(HS256);
    }
    // Verification keys alone are not enough: approvals come only from Berth's auth
    // API, which signs them (and the verifier defaults to the signing key's half).
    if args.approval_signing_key_file.is_none() {
        reasons.push(NO_SIGNING_KEY);
    }
    if args.tls_files().is_none() {
        reasons.push(NO_TLS);
    }
    if reasons.is_empty() { Ok(()) } else { Err(Refusal(reasons)) }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        webhook: WebhookArgs,
    }

    fn args(flags: &[&str]) -> WebhookArgs {
        Flags::try_parse_from(std::iter::once("berth").chain(flags.iter().copied())).expect("flags").webhook
    }

    const TLS: [&str; 4] = ["--webhook-cert-file", "tls.crt", "--webhook-key-file", "tls.key"];
    const SIGNING: [&str; 2] = ["--approval-signing-key-file", "approval-signing.pem"];

    fn with(parts: &[&[&'static str]]) -> WebhookArgs {
        args(&parts.concat())
    }

    #[test]
    fn a_cluster_configuration_starts_with_or_without_a_bearer_verifier() {
        assert_eq!(check(&with(&[&TLS, &SIGNING])), Ok(()));
        let jwks = ["--auth-jwks-file", "jwks.json"];
        assert_eq!(check(&with(&[&TLS, &SIGNING, &jwks])), Ok(()));
        let keys = ["--approval-verify-keys", "old.pem,new.pem"];
        assert_eq!(check(&with(&[&TLS, &SIGNING, &keys])), Ok(()));
    }

    #[test]
    fn an_hs256_secret_is_refused() {
        let secret = ["--auth-hs256-secret-file", "auth-hs256.secret"];
        assert_eq!(check(&with(&[&TLS, &SIGNING, &secret])), Err(Refusal(vec![HS256])));
    }

    #[test]
    fn no_signing_key_is_refused_even_with_verification_keys() {
        assert_eq!(check(&with(&[&TLS])), Err(Refusal(vec![NO_SIGNING_KEY])));
        let keys = ["--approval-verify-keys", "approvals/"];
        assert_eq!(check(&with(&[&TLS, &keys])), Err(Refusal(vec![NO_SIGNING_KEY])));
    }

    #[test]
    fn no_webhook_tls_is_refused() {
        assert_eq!(check(&with(&[&SIGNING])), Err(Refusal(vec![NO_TLS])));
    }

    #[test]
    fn a_shared_secret_without_keys_or_tls_is_refused_for_every_reason_at_once() {
        let refusal = check(&args(&["--auth-hs256-secret-file", "s"])).expect_err("refused");
        assert_eq!(refusal, Refusal(vec![HS256, NO_SIGNING_KEY, NO_TLS]));
        let message = refusal.to_string();
        assert!(
            message.starts_with("strict mode (--strict, BERTH_STRICT) refuses to start:\n  - an HS256"),
            "{message}"
        );
        assert!(message.ends_with("run without --strict)"), "{message}");
    }
}
