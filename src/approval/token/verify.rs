//! Verifying approval tokens: every check against an injected `now`, each refusal its
//! own [`Rejection`] with a message a person can act on.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Validation, errors::ErrorKind};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

use super::{
    ApprovalClaims, ApprovalKind, Approvers, Bound, DEFAULT_LEEWAY, MAX_TOKEN_LEN, Rejection, StageTarget, Target,
};
use crate::{
    approval::{
        keys::{KeyAlgorithm, VerificationKeys},
        revocation::Revocations,
    },
    reload::Reloading,
};

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
