//! JWKS files: the IdP's signing keys, each used only for tokens that name its `kid`.
//!
//! Encryption keys (`"use": "enc"`) and signing keys for other algorithms or curves
//! (RS384, PS256, P-384, Ed25519, …) are skipped with a warning, so the IdP's whole key
//! set can be mounted as is. A symmetric (`oct`) key is refused: a shared secret does not
//! belong in a key set, and accepting one would reopen HS/RS confusion.

use std::collections::HashSet;
use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthConfigError;
use super::keys::{KeyOrigin, VerificationKey, check_p256, check_rsa};

/// Reads a JWKS file into the keys Berth can use; at least one is required.
pub(super) fn load_jwks(path: &Path) -> Result<Vec<VerificationKey>, AuthConfigError> {
    let raw = std::fs::read(path).map_err(|source| AuthConfigError::Read {
        what: "JWKS file",
        path: path.to_owned(),
        source,
    })?;
    parse_jwks(&raw, &path.display().to_string(), Strictness::EveryKey)
        .map_err(|reason| AuthConfigError::BadJwks { path: path.to_owned(), reason })
}

/// How a key set with a broken key is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Strictness {
    /// Refused whole: a file the platform team mounted, to fix now.
    EveryKey,
    /// The broken key skipped with a warning: an IdP's set fetched over the network,
    /// which one odd key must not freeze at its last rotation.
    SkipBroken,
}

/// The keys Berth can use in a JWKS document (from `source`, for logs); at least one
/// is required. The error says what is wrong, never quoting the document.
pub(super) fn parse_jwks(raw: &[u8], source: &str, strictness: Strictness) -> Result<Vec<VerificationKey>, String> {
    // serde_json's messages can quote the input; only say where it went wrong.
    let set: JwkSet = serde_json::from_slice(raw).map_err(|e| {
        format!("not a JWKS document ({:?} error at line {} column {})", e.classify(), e.line(), e.column())
    })?;

    let mut keys = Vec::new();
    let mut seen = HashSet::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            tracing::debug!(source, index, "skipping JWKS encryption key");
            continue;
        }
        let broken = |reason: String| match strictness {
            Strictness::EveryKey => Err(reason),
            Strictness::SkipBroken => {
                tracing::warn!(source, reason, "skipping a broken key of the key set");
                Ok(())
            }
        };
        let kid = match jwk.common.key_id.as_deref() {
            Some(kid) if !kid.is_empty() => kid,
            _ => {
                broken(format!("key #{index} has no kid; every signing key needs one"))?;
                continue;
            }
        };
        if !seen.insert(kid) {
            // Both copies go: which one the IdP signs with cannot be told.
            broken(format!("kid {kid:?} appears more than once"))?;
            keys.retain(|key: &VerificationKey| key.kid() != Some(kid));
            continue;
        }
        match usable_key(jwk) {
            Usable::Yes(alg, key) => {
                keys.push(VerificationKey { alg, origin: KeyOrigin::Jwks { kid: kid.to_owned() }, key })
            }
            Usable::Skip(reason) => {
                tracing::warn!(source, kid, reason, "skipping JWKS key Berth cannot verify with");
            }
            Usable::Invalid(reason) => broken(format!("key {kid:?}: {reason}"))?,
        }
    }
    if keys.is_empty() {
        return Err("holds no RS256 (RSA) or ES256 (P-256) signing key".to_owned());
    }
    Ok(keys)
}

enum Usable {
    Yes(Algorithm, DecodingKey),
    Skip(&'static str),
    Invalid(String),
}

fn usable_key(jwk: &Jwk) -> Usable {
    let declared = jwk.common.key_algorithm;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            if !matches!(declared, None | Some(KeyAlgorithm::RS256)) {
                return Usable::Skip("an RSA key for another algorithm than RS256");
            }
            let Ok(key) = DecodingKey::from_rsa_components(&params.n, &params.e) else {
                return Usable::Invalid("n or e is not base64url".to_owned());
            };
            match check_rsa(&key) {
                Ok(()) => Usable::Yes(Algorithm::RS256, key),
                Err(reason) => Usable::Invalid(reason),
            }
        }
        AlgorithmParameters::EllipticCurve(params) => {
            if params.curve != EllipticCurve::P256 || !matches!(declared, None | Some(KeyAlgorithm::ES256)) {
                return Usable::Skip("an EC key for another curve or algorithm than ES256 (P-256)");
            }
            let Ok(key) = DecodingKey::from_ec_components(&params.x, &params.y) else {
                return Usable::Invalid("x or y is not base64url".to_owned());
            };
            match check_p256(&key) {
                Ok(()) => Usable::Yes(Algorithm::ES256, key),
                Err(reason) => Usable::Invalid(reason),
            }
        }
        AlgorithmParameters::OctetKey(_) => Usable::Invalid(
            "a shared secret (kty oct) does not belong in a JWKS file; use the HS256 secret file for development"
                .to_owned(),
        ),
        _ => Usable::Skip("a key type Berth does not verify with"),
    }
}
