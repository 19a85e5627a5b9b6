//! Approval tokens: issuing (auth API, tests) and verifying (admission webhook, controller).
//!
//! A token is a compact JWS (JWT) signed with EdDSA or ES256. Header: `alg`, `typ: JWT` and
//! `kid` (the signing key's [id](super::key_id)). Claims (see [`ApprovalClaims`]): `iss`,
//! `aud`, `sub` (the approver), `groups` (the approver's groups when approving), `iat`,
//! `nbf`, `exp` (seconds since the epoch) and, namespaced so they cannot be mistaken for
//! claims of other systems (OIDC's `name` is a person's name), `berth.dev/namespace`,
//! `berth.dev/name` (the request) and `berth.dev/digest` (its spec's [digest](super::spec_digest)).
//!
//! Verification checks everything itself against an injected `now`, so each reason a
//! token is refused is its own [`Rejection`] and tests are deterministic; jsonwebtoken
//! only checks the signature, with the algorithm pinned to the key the `kid` names.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Header, Validation, errors::ErrorKind};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    digest::{spec_digest, try_spec_digest},
    keys::{KeyAlgorithm, SigningKey, VerificationKeys},
};
use crate::api::EnvironmentRequestSpec;

/// How far clocks of the issuing and verifying Berth may disagree before `exp` and `nbf`
/// count: tokens are accepted this long after they expire and this long before they start.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Longer tokens are refused before any parsing (the CRD allows 8192 characters).
const MAX_TOKEN_LEN: usize = 8192;

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
    /// Namespace of the approved request (`berth.dev/namespace`).
    #[serde(rename = "berth.dev/namespace")]
    pub namespace: String,
    /// Name of the approved request (`berth.dev/name`).
    #[serde(rename = "berth.dev/name")]
    pub name: String,
    /// [Digest](super::spec_digest) of the approved spec (`berth.dev/digest`).
    #[serde(rename = "berth.dev/digest")]
    pub digest: String,
    /// When the token was issued (`iat`), in seconds since the epoch.
    pub iat: i64,
    /// When the token becomes valid (`nbf`), in seconds since the epoch.
    pub nbf: i64,
    /// When the token expires (`exp`), in seconds since the epoch.
    pub exp: i64,
}

/// Who approves: the authenticated caller of the auth API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approver {
    /// The approver's user name.
    pub subject: String,
    /// The approver's groups.
    pub groups: Vec<String>,
}

/// Which request is approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRef {
    /// The request's namespace.
    pub namespace: String,
    /// The request's name.
    pub name: String,
}

/// Why a token could not be issued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// Approvals must name who approved.
    #[error("the approver has no subject: only an authenticated user can approve")]
    NoApprover,
    /// Approvals must name the request they approve.
    #[error("the request to approve has no namespace or name")]
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
    key: SigningKey,
    issuer: String,
    audience: String,
    lifetime: Duration,
}

impl Issuer {
    /// An issuer whose tokens carry `iss: issuer`, `aud: audience` and live for `lifetime`.
    pub fn new(key: SigningKey, issuer: String, audience: String, lifetime: Duration) -> Self {
        Issuer { key, issuer, audience, lifetime }
    }

    /// The id of the key tokens are signed with.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// A verifier that accepts this issuer's tokens: its key's public half, same
    /// issuer and audience (for a Berth that issues and verifies with one key).
    pub fn verifier(&self) -> Verifier {
        Verifier::new(VerificationKeys::from(&self.key), self.issuer.clone(), self.audience.clone())
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
        if request.namespace.is_empty() || request.name.is_empty() {
            return Err(IssueError::NoRequest);
        }
        let digest = try_spec_digest(spec).map_err(|e| IssueError::Digest(e.to_string()))?;
        let too_long = IssueError::LifetimeTooLong { lifetime: self.lifetime };
        let lifetime = i64::try_from(self.lifetime.as_secs()).map_err(|_| too_long.clone())?;
        let iat = now.as_second();
        let exp = iat.checked_add(lifetime).filter(|exp| Timestamp::from_second(*exp).is_ok()).ok_or(too_long)?;
        Ok(ApprovalClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: approver.subject.clone(),
            groups: approver.groups.clone(),
            namespace: request.namespace.clone(),
            name: request.name.clone(),
            digest,
            iat,
            nbf: iat,
            exp,
        })
    }

    /// Signs `claims` as they are, with the `kid` and algorithm of the issuer's key.
    pub fn sign(&self, claims: &ApprovalClaims) -> Result<String, IssueError> {
        let mut header = Header::new(self.key.algorithm().jwt());
        header.kid = Some(self.key.kid().to_owned());
        jsonwebtoken::encode(&header, claims, self.key.encoding_key())
            .map_err(|e| IssueError::Sign { kid: self.key.kid().to_owned(), detail: e.to_string() })
    }
}

/// The request a token is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The request's namespace.
    pub namespace: &'a str,
    /// The request's name.
    pub name: &'a str,
    /// The request's spec as it is now.
    pub spec: &'a EnvironmentRequestSpec,
    /// The class's approver groups: the approver must be in one.
    pub approver_groups: &'a [String],
    /// Who created the request, as admission recorded it: they may not approve it.
    pub creator: Option<&'a str>,
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
        }
    }
}

/// Verifies approval tokens against the trusted keys, issuer and audience.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: VerificationKeys,
    issuer: String,
    audience: String,
    leeway: Duration,
}

impl Verifier {
    /// A verifier accepting tokens signed by `keys` with `iss: issuer` and `aud: audience`,
    /// with [`DEFAULT_LEEWAY`] for clock skew.
    pub fn new(keys: VerificationKeys, issuer: String, audience: String) -> Self {
        Verifier { keys, issuer, audience, leeway: DEFAULT_LEEWAY }
    }

    /// The same verifier with another clock leeway.
    pub fn with_leeway(self, leeway: Duration) -> Self {
        Verifier { leeway, ..self }
    }

    /// The trusted keys.
    pub fn keys(&self) -> &VerificationKeys {
        &self.keys
    }

    /// Whether `token` is a valid approval of `target` at `now`, and by whom.
    pub fn verify(&self, token: &str, target: &Target<'_>, now: Timestamp) -> Result<VerifiedApproval, Rejection> {
        let (claims, key_id) = self.verified_claims(token.trim())?;
        self.check_claims(&claims, target, now)?;
        let expires_at = timestamp(claims.exp, "exp")?;
        Ok(VerifiedApproval { approver: claims.sub, groups: claims.groups, expires_at, key_id })
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
        let Some(key) = self.keys.get(kid) else {
            return Err(Rejection::UnknownKeyId { kid: printable(kid), known: self.keys.kids() });
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

    /// Checks verified claims against this Berth, the clock and the target request.
    fn check_claims(&self, claims: &ApprovalClaims, target: &Target<'_>, now: Timestamp) -> Result<(), Rejection> {
        if claims.sub.is_empty() {
            return Err(Rejection::Malformed { detail: "it names no approver (sub)".to_owned() });
        }
        if claims.iss != self.issuer {
            return Err(Rejection::WrongIssuer { expected: self.issuer.clone(), actual: claims.iss.clone() });
        }
        if claims.aud != self.audience {
            return Err(Rejection::WrongAudience { expected: self.audience.clone(), actual: claims.aud.clone() });
        }
        let now = now.as_second();
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        if now >= claims.exp.saturating_add(leeway) {
            return Err(Rejection::Expired { expired_at: timestamp(claims.exp, "exp")? });
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Err(Rejection::NotYetValid { valid_from: timestamp(claims.nbf, "nbf")? });
        }
        if claims.namespace != target.namespace || claims.name != target.name {
            return Err(Rejection::WrongRequest {
                approved: format!("{}/{}", claims.namespace, claims.name),
                target: format!("{}/{}", target.namespace, target.name),
            });
        }
        let current = spec_digest(target.spec);
        if claims.digest != current {
            return Err(Rejection::SpecChanged { approved: claims.digest.clone(), current });
        }
        if !claims.groups.iter().any(|group| target.approver_groups.contains(group)) {
            return Err(Rejection::NotAnApprover {
                approver: claims.sub.clone(),
                groups: target.approver_groups.to_vec(),
            });
        }
        if target.creator == Some(claims.sub.as_str()) {
            return Err(Rejection::ApproverIsCreator {
                approver: claims.sub.clone(),
                groups: target.approver_groups.to_vec(),
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
