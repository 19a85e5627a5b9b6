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
//!
//! [`Issuer`] (issuing), [`Verifier`] (every check) and [`Rejection`] (each refusal,
//! with its message and code) live in their own files; this one holds the claims and
//! what a token is checked against.

mod issue;
mod rejection;
mod verify;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::digest::{rollout_digest, spec_digest};
use crate::api::{EnvironmentRequestSpec, rollout::RolloutSpec};

pub use issue::{IssueError, Issuer};
pub use rejection::Rejection;
pub use verify::{VerifiedApproval, Verifier};

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
