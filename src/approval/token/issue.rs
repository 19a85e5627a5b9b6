//! Issuing approval tokens: the auth API signs one per approval, bound to the spec
//! digest and UID of what it approves, with a random id it can be revoked by.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::Header;
use k8s_openapi::jiff::Timestamp;

use super::{ApprovalClaims, ApprovalKind, Approver, RequestRef, StageRef, Verifier};
use crate::{
    api::{EnvironmentRequestSpec, rollout::RolloutSpec},
    approval::{
        digest::{try_rollout_digest, try_spec_digest},
        keys::{SigningKey, VerificationKeys},
    },
    reload::Reloading,
};

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

/// A new token id: 128 random bits, base64url (22 characters).
fn token_id() -> Result<String, String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| "the system's random source failed".to_owned())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
