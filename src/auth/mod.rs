//! Who is calling Berth's auth API: bearer tokens, subjects, groups and roles.
//!
//! `POST /v1/approvals` (and whatever joins it) takes `Authorization: Bearer <token>`.
//! Two ways to know the caller, tried in this order:
//!
//! - **The cluster's identity** ([`kubernetes`], the default): the token `kubectl`
//!   uses, authenticated by the apiserver (TokenReview); RBAC says what the caller
//!   may do (SubjectAccessReview).
//! - **A JWT of the auth API's own keys** ([`BearerVerifier::authenticate`]), for
//!   identity providers outside the cluster: the token's subject, groups and
//!   [`Role`]s. The rest of this list is about these.
//!
//! - **Keys.** An HS256 shared secret for local development
//!   ([`BearerConfig::hs256_secret_file`], at least [`HS256_MIN_SECRET_LEN`] bytes; mint
//!   tokens for it with [`dev_token`]); RSA or P-256 public keys as SPKI PEM files
//!   ([`BearerConfig::public_key_files`]); a JWKS file exported from the company IdP
//!   ([`BearerConfig::jwks_file`]). Any mix of them may be configured.
//! - **One algorithm per key.** The secret verifies HS256 only, an RSA key RS256 only, a
//!   P-256 key ES256 only; any other `alg`, `none` included, is refused before a key is
//!   touched. So an HS256 token "signed" with a public key's PEM bytes (the classic
//!   HS/RS confusion) is refused too.
//! - **Picking the key.** JWKS keys are only used for tokens whose header names their
//!   `kid`. PEM keys are used directly when the token's `kid` equals the key's derived id
//!   (see [`BearerVerifier::key_ids`]) and otherwise tried in turn.
//! - **Claims.** `sub` (non-empty) and `exp` are required; `nbf` and `iat` are checked
//!   when present; `iss` when an issuer is configured; `aud` (a string or an array) must
//!   contain the configured audience. Times are compared with the caller's `now` and
//!   [`CLOCK_LEEWAY_SECONDS`] of clock skew. `groups` and `roles` are optional arrays of
//!   strings; role names Berth does not know are ignored, so an IdP may send roles meant
//!   for other systems.
//! - **Errors.** Every [`AuthError`] is a 401 with a stable [`AuthError::reason`] for the
//!   audit log. No message or `Debug` output quotes the token or the secret.

mod bearer;
mod caller;
mod claims;
mod dev;
mod error;
mod jwks;
mod keys;
pub mod kubernetes;
pub mod oidc;
mod role;
#[cfg(test)]
mod tests;

pub use bearer::{BearerConfig, BearerVerifier, bearer_token};
pub use caller::{Caller, KubernetesUser};
pub use claims::{CLOCK_LEEWAY_SECONDS, ClaimMapping};
pub use dev::dev_token;
pub use error::{AuthConfigError, AuthError, DevTokenError};
pub use keys::HS256_MIN_SECRET_LEN;
pub use kubernetes::KubernetesReviewer;
pub use role::{ParseRoleError, Role};
