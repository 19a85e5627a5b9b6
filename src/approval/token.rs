//! Approval tokens: issuing (auth API, tests) and verifying (admission webhook, controller).
//!
//! A token is a compact JWS (JWT) signed with EdDSA or ES256. Header: `alg`, `typ: JWT` and
//! `kid` (the signing key's [id](super::key_id)). Claims (see [`ApprovalClaims`]): `iss`,
//! `aud`, `sub` (the approver), `groups` (the approver's groups when approving), `iat`,
//! `nbf`, `exp` (seconds since the epoch) and, namespaced so they cannot be mistaken for
//! claims of other systems (OIDC's `name` is a person's name), `berth.dev/namespace`,
//! `berth.dev/name` (the request) and `berth.dev/digest` (its spec's [digest](super::spec_digest)).
//!
//! Every token carries a random id (`jti`), the handle it is [revoked](super::revocation)
//! by, and the approved object's UID (`berth.dev/uid`): approvals are issued for
//! requests and rollouts that exist, so one deleted and re-created under its name
//! (another UID) does not inherit an old approval. A token without a UID is refused,
//! but for a request provisioned with it before approvals were bound to UIDs.
//!
//! A rollout stage's approval is the same token with `berth.dev/kind: Rollout`, `berth.dev/stage`,
//! `berth.dev/revision`, the [rollout digest](super::digest::rollout_digest), and, for
//! break-glass, `berth.dev/freeze-override: true`. Tokens without a kind are request
//! approvals (every token issued before rollouts had approvals), and neither kind ever
//! verifies as the other.
//!
//! Verification checks everything itself against an injected `now`, so each reason a
//! token is refused is its own [`Rejection`] and tests are deterministic; jsonwebtoken
//! only checks the signature, with the algorithm pinned to the key the `kid` names.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Header, Validation, errors::ErrorKind};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    digest::{rollout_digest, spec_digest, try_rollout_digest, try_spec_digest},
    keys::{KeyAlgorithm, SigningKey, VerificationKeys},
    revocation::Revocations,
};
use crate::{
    api::{EnvironmentRequestSpec, rollout::RolloutSpec},
    reload::Reloading,
};

/// How far clocks of the issuing and verifying Berth may disagree before `exp` and `nbf`
/// count: tokens are accepted this long after they expire and this long before they start.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Longer tokens are refused before any parsing (the CRD allows 8192 characters).
const MAX_TOKEN_LEN: usize = 8192;

/// What a token approves (`berth.dev/kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ApprovalKind {
    /// One EnvironmentRequest's spec; tokens without the claim are these.
    #[default]
    Request,
    /// One stage of a Rollout.
    Rollout,
}

impl ApprovalKind {
    fn is_request(&self) -> bool {
        *self == ApprovalKind::Request
    }
}

impl std::fmt::Display for ApprovalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApprovalKind::Request => "request",
            ApprovalKind::Rollout => "rollout stage",
        })
    }
}

/// The claims of an approval token, with their JWT names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalClaims {
    /// Who issued the token (`iss`): the Berth installation's issuer name.
    pub iss: String,
    /// Who the token is for (`aud`): the Berth installation that verifies it.
    pub aud: String,
    /// The approver (`sub`), as the auth API authenticated them.
    pub sub: String,
    /// The approver's groups when they approved (`groups`); one must be an approver group of the class.
    pub groups: Vec<String>,
    /// What is approved (`berth.dev/kind`); absent for a request.
    #[serde(rename = "berth.dev/kind", default, skip_serializing_if = "ApprovalKind::is_request")]
    pub kind: ApprovalKind,
    /// Namespace of the approved request or rollout (`berth.dev/namespace`).
    #[serde(rename = "berth.dev/namespace")]
    pub namespace: String,
    /// Name of the approved request or rollout (`berth.dev/name`).
    #[serde(rename = "berth.dev/name")]
    pub name: String,
    /// [Digest](super::spec_digest) of the approved spec (`berth.dev/digest`).
    #[serde(rename = "berth.dev/digest")]
    pub digest: String,
    /// The approved request's or rollout's UID (`berth.dev/uid`): a namesake created
    /// later is another object. Absent from tokens issued before requests were bound.
    #[serde(rename = "berth.dev/uid", default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The token's id (`jti`): random, unique, what a [revocation](super::revocation)
    /// names. Absent from tokens issued before revocation existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The approved stage of a rollout (`berth.dev/stage`).
    #[serde(rename = "berth.dev/stage", default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The revision the rollout promotes (`berth.dev/revision`; the digest covers it too).
    #[serde(rename = "berth.dev/revision", default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The classes RBAC let the approver approve when they approved
    /// (`berth.dev/rbac-classes`): set when the cluster's identity approved (a
    /// SubjectAccessReview per class), absent for an approver holding the auth API's
    /// approver role. A stage that has gained another class since is not approved by it.
    #[serde(rename = "berth.dev/rbac-classes", default, skip_serializing_if = "Option::is_none")]
    pub rbac_classes: Option<Vec<String>>,
    /// Break-glass (`berth.dev/freeze-override`): the stage may commit during a freeze.
    #[serde(rename = "berth.dev/freeze-override", default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_override: bool,
    /// When the token was issued (`iat`), in seconds since the epoch.
    pub iat: i64,
    /// When the token becomes valid (`nbf`), in seconds since the epoch.
    pub nbf: i64,
    /// When the token expires (`exp`), in seconds since the epoch.
    pub exp: i64,
}

/// Who approves: the authenticated caller of the auth API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Approver {
    /// The approver's user name.
    pub subject: String,
    /// The approver's groups.
    pub groups: Vec<String>,
    /// The classes RBAC let them approve, for a caller the cluster authenticated
    /// (see [`ApprovalClaims::rbac_classes`]); `None` for a JWT caller.
    pub rbac_classes: Option<Vec<String>>,
}

/// Which request is approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRef {
    /// The request's namespace.
    pub namespace: String,
    /// The request's name.
    pub name: String,
    /// The request's UID: a request is approved once it exists, and only it.
    pub uid: String,
}

/// Which rollout stage is approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageRef {
    /// The rollout's namespace.
    pub namespace: String,
    /// The rollout's name.
    pub name: String,
    /// The rollout's UID: a stage is approved once its rollout exists, and only for it.
    pub uid: String,
    /// The stage.
    pub stage: String,
    /// Break-glass: the stage may commit during a freeze.
    pub freeze_override: bool,
}

/// Why a token could not be issued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// Approvals must name who approved.
    #[error("the approver has no subject: only an authenticated user can approve")]
    NoApprover,
    /// Approvals must name the request (or rollout, and its stage) they approve, and its UID.
    #[error("the request or rollout to approve has no namespace, name, UID or (a rollout) stage")]
    NoRequest,
    /// The spec could not be serialized for its digest.
    #[error("the spec cannot be hashed: {0}")]
    Digest(String),
    /// The expiry would not be a representable time.
    #[error("approval lifetime {lifetime:?} is too long")]
    LifetimeTooLong { lifetime: Duration },
    /// The signing key failed.
    #[error("cannot sign the approval with key {kid}: {detail}")]
    Sign { kid: String, detail: String },
}

/// Issues approval tokens with one signing key.
#[derive(Clone, Debug)]
pub struct Issuer {
    /// Read at each issue: rotated on disk without a restart (see [`crate::reload`]).
    key: Arc<Reloading<SigningKey>>,
    issuer: String,
    audience: String,
    lifetime: Duration,
}

impl Issuer {
    /// An issuer whose tokens carry `iss: issuer`, `aud: audience` and live for `lifetime`.
    pub fn new(key: SigningKey, issuer: String, audience: String, lifetime: Duration) -> Self {
        Self::reloading(Reloading::fixed(key), issuer, audience, lifetime)
    }

    /// [`Issuer::new`] with a key that may change (a file watched for rotation).
    pub fn reloading(key: Arc<Reloading<SigningKey>>, issuer: String, audience: String, lifetime: Duration) -> Self {
        Issuer { key, issuer, audience, lifetime }
    }

    /// The id of the key tokens are signed with now.
    pub fn kid(&self) -> String {
        self.key.current().kid().to_owned()
    }

    /// A verifier that accepts this issuer's tokens: its current key's public half, same
    /// issuer and audience (for a Berth that issues and verifies with one key).
    pub fn verifier(&self) -> Verifier {
        Verifier::new(VerificationKeys::from(&*self.key.current()), self.issuer.clone(), self.audience.clone())
    }

    /// How long issued tokens are valid.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A signed token saying `approver` approved `request` with exactly `spec`, valid from
    /// `now` for the issuer's lifetime.
    pub fn issue(
        &self,
        approver: &Approver,
        request: &RequestRef,
        spec: &EnvironmentRequestSpec,
        now: Timestamp,
    ) -> Result<String, IssueError> {
        self.sign(&self.claims(approver, request, spec, now)?)
    }

    /// The claims [`Issuer::issue`] signs, for callers that also want to report them (e.g. `exp`).
    pub fn claims(
        &self,
        approver: &Approver,
        request: &RequestRef,
        spec: &EnvironmentRequestSpec,
        now: Timestamp,
    ) -> Result<ApprovalClaims, IssueError> {
        if approver.subject.is_empty() {
            return Err(IssueError::NoApprover);
        }
        if request.namespace.is_empty() || request.name.is_empty() || request.uid.is_empty() {
            return Err(IssueError::NoRequest);
        }
        let digest = try_spec_digest(spec).map_err(|e| IssueError::Digest(e.to_string()))?;
        Ok(ApprovalClaims {
            uid: Some(request.uid.clone()),
            ..self.base_claims(approver, &request.namespace, &request.name, digest, now)?
        })
    }

    /// A signed token saying `approver` approved `stage` of the rollout with exactly
    /// `spec` (approvals, `paused` and `abort` aside), valid from `now` for the
    /// issuer's lifetime.
    pub fn issue_stage(
        &self,
        approver: &Approver,
        stage: &StageRef,
        spec: &RolloutSpec,
        now: Timestamp,
    ) -> Result<String, IssueError> {
        self.sign(&self.stage_claims(approver, stage, spec, now)?)
    }

    /// The claims [`Issuer::issue_stage`] signs.
    pub fn stage_claims(
        &self,
        approver: &Approver,
        stage: &StageRef,
        spec: &RolloutSpec,
        now: Timestamp,
    ) -> Result<ApprovalClaims, IssueError> {
        if stage.namespace.is_empty() || stage.name.is_empty() || stage.stage.is_empty() || stage.uid.is_empty() {
            return Err(IssueError::NoRequest);
        }
        let digest = try_rollout_digest(spec).map_err(|e| IssueError::Digest(e.to_string()))?;
        Ok(ApprovalClaims {
            kind: ApprovalKind::Rollout,
            uid: Some(stage.uid.clone()),
            stage: Some(stage.stage.clone()),
            revision: Some(spec.revision.clone()),
            freeze_override: stage.freeze_override,
            ..self.base_claims(approver, &stage.namespace, &stage.name, digest, now)?
        })
    }

    /// The claims every approval carries.
    fn base_claims(
        &self,
        approver: &Approver,
        namespace: &str,
        name: &str,
        digest: String,
        now: Timestamp,
    ) -> Result<ApprovalClaims, IssueError> {
        if approver.subject.is_empty() {
            return Err(IssueError::NoApprover);
        }
        let too_long = IssueError::LifetimeTooLong { lifetime: self.lifetime };
        let lifetime = i64::try_from(self.lifetime.as_secs()).map_err(|_| too_long.clone())?;
        let iat = now.as_second();
        let exp = iat.checked_add(lifetime).filter(|exp| Timestamp::from_second(*exp).is_ok()).ok_or(too_long)?;
        Ok(ApprovalClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: approver.subject.clone(),
            groups: approver.groups.clone(),
            rbac_classes: approver.rbac_classes.clone(),
            kind: ApprovalKind::Request,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            digest,
            uid: None,
            jti: Some(token_id().map_err(|detail| IssueError::Sign { kid: self.kid(), detail })?),
            stage: None,
            revision: None,
            freeze_override: false,
            iat,
            nbf: iat,
            exp,
        })
    }

    /// Signs `claims` as they are, with the `kid` and algorithm of the issuer's key.
    pub fn sign(&self, claims: &ApprovalClaims) -> Result<String, IssueError> {
        let key = self.key.current();
        let mut header = Header::new(key.algorithm().jwt());
        header.kid = Some(key.kid().to_owned());
        jsonwebtoken::encode(&header, claims, key.encoding_key())
            .map_err(|e| IssueError::Sign { kid: key.kid().to_owned(), detail: e.to_string() })
    }
}

/// The request a token is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The request's namespace.
    pub namespace: &'a str,
    /// The request's name.
    pub name: &'a str,
    /// The request's UID (the apiserver assigns it before validating admission).
    pub uid: Option<&'a str>,
    /// Whether a token bound to no UID still counts: only for a request already
    /// provisioned with it (issued by a Berth before approvals were bound to UIDs).
    pub accept_unbound: bool,
    /// The request's spec as it is now.
    pub spec: &'a EnvironmentRequestSpec,
    /// The class's approver groups: the approver must be in one.
    pub approver_groups: &'a [String],
    /// Who created the request, as admission recorded it: they may not approve it.
    pub creator: Option<&'a str>,
}

/// A rollout stage a token is checked against.
#[derive(Clone, Copy, Debug)]
pub struct StageTarget<'a> {
    /// The rollout's namespace.
    pub namespace: &'a str,
    /// The rollout's name.
    pub name: &'a str,
    /// The rollout's UID (the apiserver assigns it before admission); without one no
    /// approval passes.
    pub uid: Option<&'a str>,
    /// The stage.
    pub stage: &'a str,
    /// The rollout's spec as it is now.
    pub spec: &'a RolloutSpec,
    /// Who may approve the stage.
    pub approvers: Approvers<'a>,
    /// Who created the rollout and who last changed its spec, as admission recorded
    /// them: neither may approve it.
    pub authors: [Option<&'a str>; 2],
}

/// A class whose approval is required, and its approver groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassApprovers {
    /// The class.
    pub class: String,
    /// Its `approval.approverGroups`.
    pub groups: Vec<String>,
}

/// A tenant's owners (`spec.owners`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TenantOwners {
    /// The tenant.
    pub tenant: String,
    /// Owners named as users.
    pub users: Vec<String>,
    /// Owners named as groups.
    pub groups: Vec<String>,
}

/// Who may approve.
#[derive(Clone, Copy, Debug)]
pub enum Approvers<'a> {
    /// A member of one of these groups (a class's approver groups).
    Groups(&'a [String]),
    /// A member of one approver group of every one of these classes.
    EveryClass(&'a [ClassApprovers]),
    /// An owner of the tenant.
    Owners(&'a TenantOwners),
}

impl Approvers<'_> {
    /// Why `subject`, in `groups`, may not approve; `None` when they may.
    pub fn refusal(&self, subject: &str, groups: &[String]) -> Option<Rejection> {
        let in_any = |approvers: &[String]| groups.iter().any(|g| approvers.contains(g));
        let not_an_approver = |approvers: &[String]| Rejection::NotAnApprover {
            approver: subject.to_owned(),
            groups: approvers.to_vec(),
        };
        match self {
            Approvers::Groups(approvers) => (!in_any(approvers)).then(|| not_an_approver(approvers)),
            Approvers::EveryClass(classes) => {
                if classes.is_empty() {
                    // Nobody is named, so nobody may approve: fail closed.
                    return Some(not_an_approver(&[]));
                }
                classes.iter().find(|c| !in_any(&c.groups)).map(|c| not_an_approver(&c.groups))
            }
            Approvers::Owners(owners) => (!owners.users.iter().any(|u| u == subject) && !in_any(&owners.groups))
                .then(|| Rejection::NotAnOwner { approver: subject.to_owned(), tenant: owners.tenant.clone() }),
        }
    }

    /// Who approves, for messages: `a member of ["a"]`, `a member of ["a"] (approvers
    /// of class "production")`, or `an owner of tenant "payments"`.
    pub fn describe(&self) -> String {
        match self {
            Approvers::Groups(groups) => format!("a member of {groups:?}"),
            Approvers::EveryClass([class]) => {
                format!("a member of {:?} (approvers of class {:?})", class.groups, class.class)
            }
            Approvers::EveryClass(classes) => {
                let each: Vec<String> =
                    classes.iter().map(|c| format!("{:?} for class {:?}", c.groups, c.class)).collect();
                format!("someone in an approver group of every class: {}", each.join(", "))
            }
            Approvers::Owners(owners) => format!("an owner of tenant {:?}", owners.tenant),
        }
    }
}

/// What a token's claims must say, whichever kind of target: the one home of the
/// binding, approver and four-eyes rules.
struct Bound<'a> {
    kind: ApprovalKind,
    namespace: &'a str,
    name: &'a str,
    uid: Option<&'a str>,
    accept_unbound: bool,
    stage: Option<&'a str>,
    revision: Option<&'a str>,
    digest: String,
    approvers: Approvers<'a>,
    authors: [Option<&'a str>; 2],
}

impl<'a> From<&Target<'a>> for Bound<'a> {
    fn from(target: &Target<'a>) -> Self {
        Bound {
            kind: ApprovalKind::Request,
            namespace: target.namespace,
            name: target.name,
            uid: target.uid.filter(|uid| !uid.is_empty()),
            accept_unbound: target.accept_unbound,
            stage: None,
            revision: None,
            digest: spec_digest(target.spec),
            approvers: Approvers::Groups(target.approver_groups),
            authors: [target.creator, None],
        }
    }
}

impl<'a> From<&StageTarget<'a>> for Bound<'a> {
    fn from(target: &StageTarget<'a>) -> Self {
        Bound {
            kind: ApprovalKind::Rollout,
            namespace: target.namespace,
            name: target.name,
            uid: target.uid.filter(|uid| !uid.is_empty()),
            accept_unbound: false,
            stage: Some(target.stage),
            revision: Some(&target.spec.revision),
            digest: rollout_digest(target.spec),
            approvers: target.approvers,
            authors: target.authors,
        }
    }
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedApproval {
    /// Who approved (`sub`).
    pub approver: String,
    /// The approver's groups when they approved.
    pub groups: Vec<String>,
    /// When the approval expires.
    pub expires_at: Timestamp,
    /// The key that signed it, for audit logs.
    pub key_id: String,
    /// When it was issued, if `iat` is a representable time.
    pub issued_at: Option<Timestamp>,
    /// Break-glass: a rollout stage may commit during a freeze.
    pub freeze_override: bool,
    /// The token's id (`jti`), what revoking it names; `None` for older tokens.
    pub token_id: Option<String>,
}

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

/// Verifies approval tokens against the trusted keys, issuer and audience.
#[derive(Clone, Debug)]
pub struct Verifier {
    /// Read at each verification: rotated on disk without a restart.
    keys: Arc<Reloading<VerificationKeys>>,
    /// Token ids revoked before they expire; read at each verification too.
    revoked: Arc<Reloading<Revocations>>,
    issuer: String,
    audience: String,
    leeway: Duration,
}

impl Verifier {
    /// A verifier accepting tokens signed by `keys` with `iss: issuer` and `aud: audience`,
    /// with [`DEFAULT_LEEWAY`] for clock skew.
    pub fn new(keys: VerificationKeys, issuer: String, audience: String) -> Self {
        Self::reloading(Reloading::fixed(keys), issuer, audience)
    }

    /// [`Verifier::new`] with keys that may change (files watched for rotation).
    pub fn reloading(keys: Arc<Reloading<VerificationKeys>>, issuer: String, audience: String) -> Self {
        Verifier { keys, revoked: Reloading::fixed(Revocations::default()), issuer, audience, leeway: DEFAULT_LEEWAY }
    }

    /// The same verifier refusing the tokens `revoked` names.
    pub fn with_revocations(self, revoked: Arc<Reloading<Revocations>>) -> Self {
        Verifier { revoked, ..self }
    }

    /// The same verifier with another clock leeway.
    pub fn with_leeway(self, leeway: Duration) -> Self {
        Verifier { leeway, ..self }
    }

    /// The keys trusted now.
    pub fn keys(&self) -> Arc<VerificationKeys> {
        self.keys.current()
    }

    /// Whether the token with id `token_id` has been revoked (an approval recorded
    /// when it was accepted is checked again with this).
    pub fn is_revoked(&self, token_id: &str) -> bool {
        self.revoked.current().contains(token_id)
    }

    /// Whether `token` is a valid approval of `target` at `now`, and by whom.
    pub fn verify(&self, token: &str, target: &Target<'_>, now: Timestamp) -> Result<VerifiedApproval, Rejection> {
        self.verify_bound(token, &Bound::from(target), now)
    }

    /// Whether `token` is a valid approval of the rollout stage `target` at `now`, and by whom.
    pub fn verify_stage(
        &self,
        token: &str,
        target: &StageTarget<'_>,
        now: Timestamp,
    ) -> Result<VerifiedApproval, Rejection> {
        self.verify_bound(token, &Bound::from(target), now)
    }

    fn verify_bound(&self, token: &str, bound: &Bound<'_>, now: Timestamp) -> Result<VerifiedApproval, Rejection> {
        let (claims, key_id) = self.verified_claims(token.trim())?;
        self.check_claims(&claims, bound, now)?;
        let expires_at = timestamp(claims.exp, "exp")?;
        // `iat` is informational (expiry and start are `exp` and `nbf`): not a reason to refuse.
        let issued_at = Timestamp::from_second(claims.iat).ok();
        Ok(VerifiedApproval {
            approver: claims.sub,
            groups: claims.groups,
            expires_at,
            key_id,
            issued_at,
            freeze_override: claims.freeze_override,
            token_id: claims.jti,
        })
    }

    /// The claims of a token whose signature verifies with the trusted key its `kid`
    /// names, under that key's algorithm; and that key id.
    fn verified_claims(&self, token: &str) -> Result<(ApprovalClaims, String), Rejection> {
        let malformed = |detail: &str| Rejection::Malformed { detail: detail.to_owned() };
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("it is longer than 8192 characters"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, _, signature] = parts.as_slice() else {
            return Err(malformed("a token has three parts separated by dots"));
        };
        // jsonwebtoken cannot parse `alg: none` at all: read the header ourselves to say so.
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
            .ok_or_else(|| malformed("its header is not base64url-encoded JSON"))?;
        let alg = header.get("alg").and_then(Value::as_str).ok_or_else(|| malformed("its header names no alg"))?;
        if alg.eq_ignore_ascii_case("none") || signature.is_empty() {
            return Err(Rejection::Unsigned);
        }
        let Some(algorithm) = KeyAlgorithm::from_jws_name(alg) else {
            return Err(Rejection::AlgorithmNotAllowed { alg: printable(alg), allowed: "EdDSA or ES256".to_owned() });
        };
        if header.contains_key("crit") {
            return Err(malformed("its header lists critical extensions (crit), which Berth does not support"));
        }
        // What jsonwebtoken parses below; checked here so a JSON error there can only be
        // about the claims.
        jsonwebtoken::decode_header(token).map_err(|_| malformed("its header is not a valid JWS header"))?;
        let Some(kid) = header.get("kid").and_then(Value::as_str) else {
            return Err(Rejection::MissingKeyId);
        };
        let mut keys = self.keys.current();
        // A key rotated a moment ago may not have been seen by the watcher yet (the
        // issuer watches the same file on its own timer): look once, before refusing.
        if keys.get(kid).is_none() && self.keys.refresh_at_most_every(std::time::Duration::from_secs(1)) {
            keys = self.keys.current();
        }
        let Some(key) = keys.get(kid) else {
            return Err(Rejection::UnknownKeyId { kid: printable(kid), known: keys.kids() });
        };
        if key.algorithm != algorithm {
            return Err(Rejection::AlgorithmNotAllowed {
                alg: algorithm.to_string(),
                allowed: format!("{} for key {kid}", key.algorithm),
            });
        }
        // Signature only: Berth checks time, issuer and audience itself, against `now`.
        let mut validation = Validation::new(key.algorithm.jwt());
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<ApprovalClaims>(token, &key.decoding, &validation).map_err(rejection)?;
        Ok((data.claims, kid.to_owned()))
    }

    /// Checks verified claims against this Berth, the clock and the target.
    fn check_claims(&self, claims: &ApprovalClaims, target: &Bound<'_>, now: Timestamp) -> Result<(), Rejection> {
        if claims.sub.is_empty() {
            return Err(Rejection::Malformed { detail: "it names no approver (sub)".to_owned() });
        }
        if claims.iss != self.issuer {
            return Err(Rejection::WrongIssuer { expected: self.issuer.clone(), actual: claims.iss.clone() });
        }
        if claims.aud != self.audience {
            return Err(Rejection::WrongAudience { expected: self.audience.clone(), actual: claims.aud.clone() });
        }
        if let Some(token_id) = claims.jti.as_deref().filter(|id| self.revoked.current().contains(id)) {
            return Err(Rejection::Revoked { token_id: printable(token_id) });
        }
        let now = now.as_second();
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        if now >= claims.exp.saturating_add(leeway) {
            return Err(Rejection::Expired { expired_at: timestamp(claims.exp, "exp")? });
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Err(Rejection::NotYetValid { valid_from: timestamp(claims.nbf, "nbf")? });
        }
        if claims.kind != target.kind {
            return Err(Rejection::WrongKind { approved: claims.kind, expected: target.kind });
        }
        // An approval is bound to the UID of what it approves, so a namesake re-created
        // with the same spec cannot reuse it (the apiserver assigns a new object its UID
        // before validating admission). A target without a UID is nothing an approval
        // is for yet: it is being created.
        let uid_differs = match (claims.uid.as_deref(), target.uid) {
            (None, _) if target.kind == ApprovalKind::Request && target.accept_unbound => false,
            (None, _) => {
                return Err(match target.kind {
                    ApprovalKind::Request => Rejection::UnboundRequest {
                        namespace: target.namespace.to_owned(),
                        name: target.name.to_owned(),
                    },
                    ApprovalKind::Rollout => {
                        Rejection::UnboundRollout { approved: format!("{}/{}", claims.namespace, claims.name) }
                    }
                });
            }
            (Some(a), Some(b)) => a != b,
            (Some(_), None) => true,
        };
        if claims.namespace != target.namespace || claims.name != target.name || uid_differs {
            let (mut approved, mut wanted) =
                (format!("{}/{}", claims.namespace, claims.name), format!("{}/{}", target.namespace, target.name));
            if uid_differs {
                approved = format!("{approved} (uid {})", claims.uid.as_deref().map(printable).unwrap_or_default());
                wanted = match target.uid {
                    Some(uid) => format!("{wanted} (uid {uid})"),
                    None => format!("{wanted} (being created: approve it once it exists)"),
                };
            }
            return Err(match target.kind {
                ApprovalKind::Request => Rejection::WrongRequest { approved, target: wanted },
                ApprovalKind::Rollout => Rejection::WrongRollout { approved, target: wanted },
            });
        }
        if claims.stage.as_deref() != target.stage {
            return Err(Rejection::WrongStage {
                approved: claims.stage.clone().unwrap_or_default(),
                target: target.stage.unwrap_or_default().to_owned(),
            });
        }
        let current = &target.digest;
        let revision_differs = target.revision.is_some() && claims.revision.as_deref() != target.revision;
        if &claims.digest != current || revision_differs {
            return Err(Rejection::SpecChanged { approved: claims.digest.clone(), current: current.clone() });
        }
        if let Some(refusal) = target.approvers.refusal(&claims.sub, &claims.groups) {
            return Err(refusal);
        }
        if let (Some(authorized), Approvers::EveryClass(classes)) = (&claims.rbac_classes, target.approvers)
            && let Some(class) = classes.iter().find(|c| !authorized.contains(&c.class))
        {
            return Err(Rejection::ClassNotAuthorized { approver: claims.sub.clone(), class: class.class.clone() });
        }
        if target.authors.iter().flatten().any(|author| *author == claims.sub) {
            return Err(match (target.kind, target.approvers) {
                (ApprovalKind::Request, Approvers::Groups(groups)) => {
                    Rejection::ApproverIsCreator { approver: claims.sub.clone(), groups: groups.to_vec() }
                }
                (_, approvers) => {
                    Rejection::ApproverIsRolloutAuthor { approver: claims.sub.clone(), approvers: approvers.describe() }
                }
            });
        }
        Ok(())
    }
}

/// Maps what jsonwebtoken reports after Berth's own header checks passed.
fn rejection(error: jsonwebtoken::errors::Error) -> Rejection {
    match error.kind() {
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            Rejection::Malformed { detail: "a part of it is not base64url-encoded".to_owned() }
        }
        // The header parsed before, and jsonwebtoken verifies the signature before it reads
        // the claims: signed claims that are not an approval's.
        ErrorKind::Json(e) => Rejection::Malformed { detail: format!("its claims are not an approval's: {e}") },
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm | ErrorKind::InvalidAlgorithmName => {
            Rejection::AlgorithmNotAllowed { alg: "?".to_owned(), allowed: "EdDSA or ES256".to_owned() }
        }
        // InvalidSignature, and anything else: fail closed.
        _ => Rejection::BadSignature,
    }
}

/// `seconds` since the epoch as a timestamp, or why the token is malformed.
fn timestamp(seconds: i64, claim: &str) -> Result<Timestamp, Rejection> {
    Timestamp::from_second(seconds)
        .map_err(|_| Rejection::Malformed { detail: format!("its {claim} is not a representable time") })
}

/// An unverified header value, safe to put in messages and logs: printable ASCII, at
/// most 64 characters.
fn printable(value: &str) -> String {
    value.chars().take(64).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

/// A new token id: 128 random bits, base64url (22 characters).
fn token_id() -> Result<String, String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| "the system's random source failed".to_owned())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
