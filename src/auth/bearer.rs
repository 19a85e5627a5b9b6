//! Verifying `Authorization: Bearer <JWT>` headers.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::claims::{self, ClaimMapping, Expected};
use super::jwks::load_jwks;
use super::keys::{KeyOrigin, VerificationKey, load_public_key, load_secret};
use super::oidc::OidcKeys;
use super::{AuthConfigError, AuthError, Caller};
use crate::reload::Reloading;

/// Longest token looked at, in bytes; anything longer is refused unparsed.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Longest `alg` repeated back in an [`AuthError::AlgorithmNotAllowed`].
const MAX_ALG_LEN: usize = 16;

/// Where a [`BearerVerifier`] finds its keys and what tokens must claim. At least one key
/// source is required; any mix is allowed.
///
/// It holds file paths only, so its `Debug` shows no secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerConfig {
    /// File holding the HS256 shared secret (local development). At least
    /// [`HS256_MIN_SECRET_LEN`](super::HS256_MIN_SECRET_LEN) bytes after dropping one
    /// trailing newline.
    pub hs256_secret_file: Option<PathBuf>,
    /// PEM public key files, one key each: RSA (verifies RS256) or P-256 (verifies
    /// ES256), told apart by the key itself.
    pub public_key_files: Vec<PathBuf>,
    /// A JWKS file from the IdP; every signing key in it needs a `kid`.
    pub jwks_file: Option<PathBuf>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// The audience tokens must name in `aud`.
    pub audience: String,
    /// Which claims name the caller.
    pub claims: ClaimMapping,
    /// An OIDC issuer whose keys are discovered and fetched ([`OidcKeys`], attached
    /// with [`BearerVerifier::with_oidc`]): with one, no key file is needed.
    pub oidc_issuer: Option<String>,
}

/// Checks bearer tokens against the configured keys and claims. Build it once at
/// startup with [`BearerVerifier::from_config`]; it is cheap to share. The key files are
/// re-read when they change once [`BearerVerifier::watch`] runs.
///
/// Its `Debug` lists the keys by algorithm and `kid`, never key material.
#[derive(Clone)]
pub struct BearerVerifier {
    /// Read at each token: rotated on disk without a restart (see [`crate::reload`]).
    keys: Arc<Reloading<Vec<VerificationKey>>>,
    issuer: Option<String>,
    audience: String,
    claims: ClaimMapping,
    /// The OIDC issuer's keys, refreshed as it rotates them.
    oidc: Option<Arc<OidcKeys>>,
}

impl BearerVerifier {
    /// Loads every configured key.
    ///
    /// Fails if no key source is configured, a file cannot be read or holds no usable
    /// key, the HS256 secret is shorter than 32 bytes, or the audience (or a set
    /// issuer) is empty. Errors name the file, never its contents.
    pub fn from_config(config: &BearerConfig) -> Result<Self, AuthConfigError> {
        if config.hs256_secret_file.is_none()
            && config.public_key_files.is_empty()
            && config.jwks_file.is_none()
            && config.oidc_issuer.is_none()
        {
            return Err(AuthConfigError::NoKeySource);
        }
        if config.audience.trim().is_empty() {
            return Err(AuthConfigError::InvalidSetting { setting: "audience", reason: "must not be empty" });
        }
        if config.issuer.as_deref().is_some_and(|issuer| issuer.trim().is_empty()) {
            return Err(AuthConfigError::InvalidSetting { setting: "issuer", reason: "must not be empty when set" });
        }
        if config.claims.username_claim.trim().is_empty() || config.claims.groups_claim.trim().is_empty() {
            return Err(AuthConfigError::InvalidSetting { setting: "claims", reason: "claim names must not be empty" });
        }
        let files: Vec<PathBuf> = (config.hs256_secret_file.iter())
            .chain(&config.public_key_files)
            .chain(&config.jwks_file)
            .cloned()
            .collect();
        let sources = config.clone();
        let keys = Reloading::from_files("auth API keys", files, move || load_keys(&sources))?;
        Ok(Self {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            claims: config.claims.clone(),
            oidc: None,
        })
    }

    /// Also verifies with the OIDC issuer's keys. Each source keeps its own issuer: a
    /// token the key files know is checked against `issuer` (if set), one only the
    /// IdP's keys know must name the IdP as `iss`, so neither passes for the other.
    pub fn with_oidc(mut self, keys: Arc<OidcKeys>) -> Self {
        self.oidc = Some(keys);
        self
    }

    /// The OIDC issuer's keys, when attached: a token naming a kid they lack may ask
    /// for a refresh ([`OidcKeys::refresh_for_unknown_kid`]) before it is refused.
    pub fn oidc(&self) -> Option<&Arc<OidcKeys>> {
        self.oidc.as_ref()
    }

    /// Re-reads the key files every `every` and uses what they hold once it loads (see
    /// [`crate::reload`]). Must be called within a Tokio runtime.
    pub fn watch(&self, every: std::time::Duration) {
        self.keys.watch(every);
    }

    /// The `kid` of every public key: JWKS kids, and for each PEM key the first 16
    /// characters of the unpadded base64url SHA-256 of its DER. A token naming a PEM
    /// key's id is checked against that key alone.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.current().iter().filter_map(VerificationKey::kid).map(str::to_owned).collect()
    }

    /// Checks the `Authorization` header's value at time `now` and says who sent it.
    ///
    /// `authorization` is the header value, `None` when the header is missing. The
    /// scheme is matched without regard to case (`bearer` works).
    pub fn authenticate(&self, authorization: Option<&str>, now: Timestamp) -> Result<Caller, AuthError> {
        let from_files = self.authenticate_with(authorization, now, &self.keys.current(), self.issuer.as_deref());
        match (&self.oidc, &from_files) {
            // No key file knows the token: it may be the IdP's, under the IdP's issuer.
            (Some(oidc), Err(AuthError::UnknownKey | AuthError::AlgorithmNotAllowed { .. })) => {
                self.authenticate_with(authorization, now, &oidc.current(), Some(oidc.issuer()))
            }
            _ => from_files,
        }
    }

    /// [`Self::authenticate`] against one source of keys and the issuer it requires.
    fn authenticate_with(
        &self,
        authorization: Option<&str>,
        now: Timestamp,
        keys: &[VerificationKey],
        issuer: Option<&str>,
    ) -> Result<Caller, AuthError> {
        let token = bearer_token(authorization)?;
        let (header_b64, rest) = token.split_once('.').unwrap_or((token, ""));
        let header = Header::decode(header_b64)?;
        let alg = self.allowed_algorithm(keys, &header.alg)?;
        let (payload, signature) = match rest.split_once('.') {
            Some((payload, signature)) if !payload.is_empty() && !signature.contains('.') => (payload, signature),
            _ => return Err(AuthError::Malformed("not a signed JWT (three dot-separated parts)")),
        };
        if URL_SAFE_NO_PAD.decode(signature).is_err() {
            return Err(AuthError::Malformed("the signature is not base64url"));
        }
        let signing_input = &token[..header_b64.len() + 1 + payload.len()];
        self.check_signature(keys, alg, header.kid.as_deref(), signing_input.as_bytes(), signature)?;
        let expected = Expected { now: now.as_second(), issuer, audience: &self.audience, mapping: &self.claims };
        claims::caller(payload, &expected)
    }

    /// The algorithm named by the header, if some configured key is pinned to it.
    fn allowed_algorithm(&self, keys: &[VerificationKey], alg: &str) -> Result<Algorithm, AuthError> {
        let parsed = match alg {
            "HS256" => Some(Algorithm::HS256),
            "RS256" => Some(Algorithm::RS256),
            "ES256" => Some(Algorithm::ES256),
            _ => None,
        };
        match parsed {
            Some(alg) if keys.iter().any(|key| key.alg == alg) => Ok(alg),
            _ => Err(not_allowed(alg)),
        }
    }

    /// Finds the key(s) for the token and checks the signature.
    ///
    /// A `kid` naming configured keys restricts the check to them (and to their
    /// algorithm). Otherwise the secret and PEM keys pinned to `alg` are tried in turn;
    /// JWKS keys never are. When none verifies, the key is unknown if the token named
    /// one, and the signature bad if it did not (or if it is HS256: one secret, no doubt).
    fn check_signature(
        &self,
        keys: &[VerificationKey],
        alg: Algorithm,
        kid: Option<&str>,
        message: &[u8],
        signature: &str,
    ) -> Result<(), AuthError> {
        if let Some(kid) = kid {
            let named: Vec<&VerificationKey> = keys.iter().filter(|key| key.kid() == Some(kid)).collect();
            if !named.is_empty() {
                if !named.iter().any(|key| key.alg == alg) {
                    return Err(not_allowed(alg_name(alg)));
                }
                if named.iter().any(|key| key.alg == alg && key.verifies(message, signature)) {
                    return Ok(());
                }
                return Err(AuthError::BadSignature);
            }
        }
        let mut unnamed =
            keys.iter().filter(|key| key.alg == alg && !matches!(key.origin, KeyOrigin::Jwks { .. })).peekable();
        if unnamed.peek().is_none() {
            return Err(AuthError::UnknownKey);
        }
        if unnamed.any(|key| key.verifies(message, signature)) {
            Ok(())
        } else if kid.is_some() && alg != Algorithm::HS256 {
            Err(AuthError::UnknownKey)
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

impl fmt::Debug for BearerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerVerifier")
            .field("keys", &self.keys.current())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("oidc", &self.oidc)
            .finish()
    }
}

/// Every key of `config`'s files, at startup and on each change of them.
fn load_keys(config: &BearerConfig) -> Result<Vec<VerificationKey>, AuthConfigError> {
    let mut keys = Vec::new();
    if let Some(path) = &config.hs256_secret_file {
        keys.push(load_secret(path)?);
    }
    for path in &config.public_key_files {
        keys.push(load_public_key(path)?);
    }
    if let Some(path) = &config.jwks_file {
        keys.extend(load_jwks(path)?);
    }
    Ok(keys)
}

/// The token from an `Authorization: Bearer <token>` value.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::MissingBearer)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MissingBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::MissingBearer);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed("the token is longer than 16 KiB"));
    }
    Ok(token)
}

/// The JOSE header fields Berth looks at.
struct Header {
    alg: String,
    kid: Option<String>,
}

impl Header {
    /// Decodes the first segment; `alg: none` is refused here, before anything else.
    fn decode(segment: &str) -> Result<Self, AuthError> {
        let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| AuthError::Malformed("the header is not base64url"))?;
        let Ok(Value::Object(mut header)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(AuthError::Malformed("the header is not a JSON object"));
        };
        let Some(Value::String(alg)) = header.remove("alg") else {
            return Err(AuthError::Malformed("the header has no alg"));
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(not_allowed("none"));
        }
        let kid = match header.remove("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid),
            Some(_) => return Err(AuthError::Malformed("the header's kid is not a string")),
        };
        if header.contains_key("crit") {
            return Err(AuthError::Malformed("the header lists critical extensions (crit), which are not supported"));
        }
        Ok(Self { alg, kid })
    }
}

/// [`AuthError::AlgorithmNotAllowed`] with the header's `alg` made safe to log.
fn not_allowed(alg: &str) -> AuthError {
    let printable = |c: char| c.is_ascii_alphanumeric() || "-_+.".contains(c);
    let alg = if alg.eq_ignore_ascii_case("none") {
        "none".to_owned()
    } else if alg.is_empty() || alg.len() > MAX_ALG_LEN || !alg.chars().all(printable) {
        "(unrecognised)".to_owned()
    } else {
        alg.to_owned()
    };
    AuthError::AlgorithmNotAllowed { alg }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "(unrecognised)",
    }
}
