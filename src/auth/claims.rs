//! Claim checks on a token whose signature has been verified.
//!
//! Done here rather than by `jsonwebtoken::Validation` so that time comes from the
//! caller (deterministic tests) and every failure maps to its own [`AuthError`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{AuthError, Caller, Role};

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const CLOCK_LEEWAY_SECONDS: i64 = 60;

/// What the claims must say.
pub(super) struct Expected<'a> {
    /// Seconds since the epoch.
    pub(super) now: i64,
    pub(super) issuer: Option<&'a str>,
    pub(super) audience: &'a str,
    pub(super) mapping: &'a ClaimMapping,
}

/// Which claims name the caller, as the apiserver's `--oidc-username-claim`,
/// `--oidc-username-prefix`, `--oidc-groups-claim` and `--oidc-groups-prefix` say for
/// its own OIDC users. Set them as the apiserver has them and a JWT names a person
/// exactly as the cluster does, so the four-eyes check compares like with like. Unlike
/// the apiserver, no prefix is added unless one is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// The claim holding the username (`sub` by default). With `email`, a present
    /// `email_verified` must be `true`, as the apiserver requires.
    pub username_claim: String,
    /// Put before every username (e.g. `oidc:`).
    pub username_prefix: String,
    /// The claim holding the groups: an array of strings, or one string.
    pub groups_claim: String,
    /// Put before every group.
    pub groups_prefix: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            username_claim: "sub".to_owned(),
            username_prefix: String::new(),
            groups_claim: "groups".to_owned(),
            groups_prefix: String::new(),
        }
    }
}

/// Checks the claims of the (base64url) payload and reads the caller from them.
pub(super) fn caller(payload: &str, expected: &Expected<'_>) -> Result<Caller, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| AuthError::Malformed("the payload is not base64url"))?;
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(AuthError::Malformed("the payload is not a JSON object"));
    };
    let now = expected.now;

    let exp = numeric_date(&claims, "exp", "the exp claim is not a number")?
        .ok_or(AuthError::Malformed("the token has no exp claim; only expiring tokens are accepted"))?;
    if now >= exp.saturating_add(CLOCK_LEEWAY_SECONDS) {
        return Err(AuthError::Expired);
    }
    for (name, not_a_number) in [("nbf", "the nbf claim is not a number"), ("iat", "the iat claim is not a number")] {
        if let Some(start) = numeric_date(&claims, name, not_a_number)?
            && start > now.saturating_add(CLOCK_LEEWAY_SECONDS)
        {
            return Err(AuthError::NotYetValid);
        }
    }

    if let Some(issuer) = expected.issuer
        && string(&claims, "iss", "the iss claim is not a string")? != Some(issuer)
    {
        return Err(AuthError::WrongIssuer);
    }

    let audience_ok = match claims.get("aud") {
        None | Some(Value::Null) => false,
        Some(Value::String(aud)) => aud == expected.audience,
        Some(Value::Array(_)) => strings(&claims, "aud", "the aud claim is not a string or an array of strings")?
            .is_some_and(|auds| auds.contains(&expected.audience)),
        Some(_) => return Err(AuthError::Malformed("the aud claim is not a string or an array of strings")),
    };
    if !audience_ok {
        return Err(AuthError::WrongAudience);
    }

    let mapping = expected.mapping;
    let subject = string(&claims, &mapping.username_claim, "the username claim is not a string")?
        .filter(|name| !name.trim().is_empty())
        .ok_or(AuthError::MissingSubject)?;
    if mapping.username_claim == "email" && claims.get("email_verified").is_some_and(|v| v != &Value::Bool(true)) {
        return Err(AuthError::EmailNotVerified);
    }
    let groups = match claims.get(&mapping.groups_claim) {
        // One group may come as a plain string, as the apiserver accepts.
        Some(Value::String(group)) => vec![group.as_str()],
        _ => {
            strings(&claims, &mapping.groups_claim, "the groups claim is not an array of strings")?.unwrap_or_default()
        }
    };
    let mut roles = Vec::new();
    for name in strings(&claims, "roles", "the roles claim is not an array of strings")?.unwrap_or_default() {
        // Unknown roles are meant for other systems sharing the IdP: not an error.
        if let Ok(role) = name.parse::<Role>()
            && !roles.contains(&role)
        {
            roles.push(role);
        }
    }

    Ok(Caller {
        subject: format!("{}{subject}", mapping.username_prefix),
        groups: groups.into_iter().map(|group| format!("{}{group}", mapping.groups_prefix)).collect(),
        roles,
        kubernetes: None,
    })
}

/// A NumericDate claim in whole seconds (fractions are cut off); `null` counts as absent.
fn numeric_date(claims: &Map<String, Value>, name: &str, not_a_number: &'static str) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            // `as` saturates, which is what a far-future or far-past date should do.
            n.as_i64()
                .or_else(|| n.as_f64().map(|f| f.floor() as i64))
                .map(Some)
                .ok_or(AuthError::Malformed(not_a_number))
        }
        Some(_) => Err(AuthError::Malformed(not_a_number)),
    }
}

/// A string claim; `null` counts as absent.
fn string<'c>(
    claims: &'c Map<String, Value>,
    name: &str,
    wrong_type: &'static str,
) -> Result<Option<&'c str>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthError::Malformed(wrong_type)),
    }
}

/// An array-of-strings claim; `null` counts as absent.
fn strings<'c>(
    claims: &'c Map<String, Value>,
    name: &str,
    wrong_type: &'static str,
) -> Result<Option<Vec<&'c str>>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or(AuthError::Malformed(wrong_type)))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(AuthError::Malformed(wrong_type)),
    }
}
