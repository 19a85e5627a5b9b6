//! Approval tokens: signed statements that an approver approved one request's exact spec,
//! or one stage of a rollout's exact spec (see [`token`] for how the two kinds differ).
//!
//! An approval is a JWT Berth signs (Ed25519 or ECDSA P-256) for one EnvironmentRequest,
//! bound to the digest of its spec, so it cannot be reused for another request or
//! survive a change to the spec. The auth API issues them with [`Issuer`]; the admission
//! webhook and the request controller check them with [`Verifier`], which says in a
//! [`Rejection`] exactly why a token is refused.
//!
//! - [`digest`]: what an approval is bound to (`sha256:` of the spec's canonical JSON).
//! - [`keys`]: loading signing and verification keys from PEM; key ids derive from the key.
//! - [`revocation`]: token ids revoked before they expire.
//! - [`token`]: the claims, issuing and verifying.
//! - [`wire`]: the request and response bodies of `POST /v1/approvals`.

pub mod digest;
pub mod keys;
pub mod revocation;
pub mod token;
pub mod wire;

#[cfg(test)]
mod tests;

pub use digest::spec_digest;
pub use keys::{KeyAlgorithm, KeyError, SigningKey, VerificationKeys, generate_ed25519, key_id};
pub use revocation::Revocations;
pub use token::{
    ApprovalClaims, ApprovalKind, Approver, Approvers, ClassApprovers, DEFAULT_LEEWAY, IssueError, Issuer, Rejection,
    RequestRef, StageRef, StageTarget, Target, TenantOwners, VerifiedApproval, Verifier,
};
