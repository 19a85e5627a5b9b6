//! Why an approval token is refused: one variant per reason, each message saying
//! what to do, and a short stable code for logs, metrics and condition reasons.

use k8s_openapi::jiff::Timestamp;

use super::ApprovalKind;

/// Why a token is refused: one variant per reason, each message saying what to do.
/// Messages never contain the token or key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a JWT at all, or its header or claims are not an approval's.
    #[error("it is not an approval token ({detail}); paste the whole token `berth approve` printed")]
    Malformed { detail: String },
    /// `alg: none` or no signature: anyone could have written it.
    #[error("it is not signed (alg \"none\" or an empty signature); ask an approver for an approval issued by Berth")]
    Unsigned,
    /// Not the algorithm of the key `kid` names (EdDSA or ES256): blocks algorithm
    /// confusion such as HS256 keyed with the public key.
    #[error(
        "it is signed with algorithm {alg:?}, but Berth accepts only {allowed}; ask an approver for an approval issued by Berth"
    )]
    AlgorithmNotAllowed { alg: String, allowed: String },
    /// No `kid` header: Berth cannot tell which key to check it with.
    #[error("it names no signing key (kid); ask an approver for an approval issued by Berth")]
    MissingKeyId,
    /// A `kid` Berth has no public key for: a stranger's or a retired key.
    #[error(
        "it was signed with key {kid:?}, which Berth does not trust (it trusts {known:?}); the signing keys may have rotated: ask an approver to approve again"
    )]
    UnknownKeyId { kid: String, known: Vec<String> },
    /// The signature does not verify: the token was altered or signed by another key.
    #[error(
        "its signature does not match its contents: it was altered or not issued by Berth; ask an approver for a new approval"
    )]
    BadSignature,
    /// `exp` passed, beyond the leeway.
    #[error("it expired at {expired_at}; ask an approver for a new approval")]
    Expired { expired_at: Timestamp },
    /// `nbf` is in the future, beyond the leeway.
    #[error(
        "it is not valid before {valid_from}; wait until then, or check the clocks of the approving and the verifying Berth"
    )]
    NotYetValid { valid_from: Timestamp },
    /// `iss` is not this Berth's issuer.
    #[error("it was issued by {actual:?}, not by {expected:?}; ask for an approval from this Berth")]
    WrongIssuer { expected: String, actual: String },
    /// `aud` is not this Berth's audience.
    #[error("it is meant for {actual:?}, not for {expected:?}; ask for an approval from this Berth")]
    WrongAudience { expected: String, actual: String },
    /// Issued for another request (`namespace/name`).
    #[error(
        "it approves request {approved}, not {target}; approvals cannot move between requests: ask for an approval of {target}"
    )]
    WrongRequest { approved: String, target: String },
    /// Issued for another rollout (`namespace/name`, or a namesake with another UID).
    #[error(
        "it approves rollout {approved}, not {target}; approvals cannot move between rollouts: ask for an approval of {target}"
    )]
    WrongRollout { approved: String, target: String },
    /// A stage approval that names no rollout UID (issued before the rollout existed):
    /// a namesake re-created with the same spec could reuse it.
    #[error(
        "it is not bound to rollout {approved}'s UID (it was issued before the rollout existed); ask for a new approval now that it exists"
    )]
    UnboundRollout { approved: String },
    /// A request approval that names no UID (issued before the request existed, by an
    /// older Berth): a namesake re-created with the same spec could reuse it.
    #[error(
        "it is not bound to request {namespace}/{name}'s UID (it was issued before the request existed); create the request without spec.approval, then ask an approver to run `berth approve -n {namespace} {name}`"
    )]
    UnboundRequest { namespace: String, name: String },
    /// Revoked by its id before it expired.
    #[error("it was revoked (token id {token_id}); ask an approver for a new approval")]
    Revoked { token_id: String },
    /// A request's approval used for a rollout stage, or the other way round.
    #[error(
        "it approves a {approved}, not a {expected}; approvals of requests and of rollout stages are not interchangeable: ask for an approval of this {expected}"
    )]
    WrongKind { approved: ApprovalKind, expected: ApprovalKind },
    /// Issued for another stage of the rollout.
    #[error(
        "it approves stage {approved:?}, not stage {target:?}; approvals cannot move between stages: ask for an approval of stage {target:?}"
    )]
    WrongStage { approved: String, target: String },
    /// The spec's digest differs from the approved one.
    #[error("the spec changed after it was approved; ask for a new approval")]
    SpecChanged { approved: String, current: String },
    /// The approver is in none of the class's approver groups.
    #[error(
        "approver {approver:?} is in none of the class's approver groups {groups:?}; ask a member of one of them to approve"
    )]
    NotAnApprover { approver: String, groups: Vec<String> },
    /// Four eyes: the approver created the request.
    #[error("approver {approver:?} created this request; someone else in groups {groups:?} must approve")]
    ApproverIsCreator { approver: String, groups: Vec<String> },
    /// Only an owner of the rollout's tenant approves a stage no class requires an approval for.
    #[error(
        "approver {approver:?} is not an owner of tenant {tenant:?} (a user or group in its spec.owners); ask an owner to approve"
    )]
    NotAnOwner { approver: String, tenant: String },
    /// The stage needs the approvers of a class RBAC did not let the approver approve
    /// when they approved (the stage gained it since).
    #[error(
        "approver {approver:?} was not allowed by RBAC to approve class {class:?} when they approved, and the stage needs its approvers now; ask for a new approval"
    )]
    ClassNotAuthorized { approver: String, class: String },
    /// Break-glass asked of someone who may not break a freeze: only the approvers of
    /// a class whose approval is required may (freezes are the platform's).
    #[error(
        "a freeze override needs the approvers of a class whose approval is required, and this stage is approved by {approvers}; wait for the freeze to end, or ask the platform team"
    )]
    FreezeOverrideNotAllowed { approvers: String },
    /// Four eyes: the approver created the rollout or wrote its spec.
    #[error(
        "approver {approver:?} created this rollout or last changed its spec; someone else who is {approvers} must approve"
    )]
    ApproverIsRolloutAuthor { approver: String, approvers: String },
}

impl Rejection {
    /// Short stable code, for audit logs, metrics and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed { .. } => "Malformed",
            Rejection::Unsigned => "Unsigned",
            Rejection::AlgorithmNotAllowed { .. } => "AlgorithmNotAllowed",
            Rejection::MissingKeyId => "MissingKeyId",
            Rejection::UnknownKeyId { .. } => "UnknownKeyId",
            Rejection::BadSignature => "BadSignature",
            Rejection::Expired { .. } => "Expired",
            Rejection::NotYetValid { .. } => "NotYetValid",
            Rejection::WrongIssuer { .. } => "WrongIssuer",
            Rejection::WrongAudience { .. } => "WrongAudience",
            Rejection::WrongRequest { .. } => "WrongRequest",
            Rejection::SpecChanged { .. } => "SpecChanged",
            Rejection::NotAnApprover { .. } => "NotAnApprover",
            Rejection::ApproverIsCreator { .. } => "ApproverIsCreator",
            Rejection::WrongRollout { .. } => "WrongRollout",
            Rejection::UnboundRollout { .. } => "UnboundRollout",
            Rejection::UnboundRequest { .. } => "UnboundRequest",
            Rejection::Revoked { .. } => "Revoked",
            Rejection::WrongKind { .. } => "WrongKind",
            Rejection::WrongStage { .. } => "WrongStage",
            Rejection::NotAnOwner { .. } => "NotAnOwner",
            Rejection::ClassNotAuthorized { .. } => "ClassNotAuthorized",
            Rejection::ApproverIsRolloutAuthor { .. } => "ApproverIsRolloutAuthor",
            Rejection::FreezeOverrideNotAllowed { .. } => "FreezeOverrideNotAllowed",
        }
    }
}
