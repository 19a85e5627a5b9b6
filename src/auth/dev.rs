//! HS256 tokens for local development (`berth token`, demos, tests).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::{DevTokenError, HS256_MIN_SECRET_LEN, Role};

#[derive(Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    groups: &'a [String],
    roles: &'a [Role],
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// Mints an HS256 token that a [`BearerVerifier`](super::BearerVerifier) configured with
/// the same secret accepts: `sub`, `groups`, `roles`, `aud`, `iat` = `now` and
/// `exp` = `now + lifetime` (whole seconds). It carries no `iss`, so it only passes a
/// verifier without a configured issuer.
///
/// The secret must be at least [`HS256_MIN_SECRET_LEN`] bytes, the same minimum the
/// verifier enforces.
pub fn dev_token(
    secret: &[u8],
    subject: &str,
    groups: &[String],
    roles: &[Role],
    audience: &str,
    lifetime: Duration,
    now: Timestamp,
) -> Result<String, DevTokenError> {
    if secret.len() < HS256_MIN_SECRET_LEN {
        return Err(DevTokenError::ShortSecret { len: secret.len(), min: HS256_MIN_SECRET_LEN });
    }
    if subject.trim().is_empty() {
        return Err(DevTokenError::EmptySubject);
    }
    if audience.trim().is_empty() {
        return Err(DevTokenError::EmptyAudience);
    }
    let iat = now.as_second();
    let exp = i64::try_from(lifetime.as_secs())
        .ok()
        .filter(|&seconds| seconds > 0)
        .and_then(|seconds| iat.checked_add(seconds))
        .filter(|&exp| Timestamp::from_second(exp).is_ok())
        .ok_or(DevTokenError::BadLifetime)?;
    let claims = DevClaims { sub: subject, groups, roles, aud: audience, iat, exp };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
        .map_err(|e| DevTokenError::Sign { reason: e.to_string() })
}
