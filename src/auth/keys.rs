//! The keys a verifier trusts, each pinned to the one algorithm it may verify, and how
//! they are read: the HS256 secret, and PEM public keys (RSA or P-256, told apart by
//! the SubjectPublicKeyInfo's algorithm, so one setting takes both; a PKCS#1 `RSA
//! PUBLIC KEY` block is accepted too; private keys and certificates are refused with a
//! hint instead of being half-understood). PEM and SPKI are read by [`crate::pem`],
//! as approval keys are.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthConfigError;
use crate::pem::{self, PemError, PublicKey, SpkiError};

/// Shortest HS256 secret accepted, in bytes (the hash size, as RFC 7518 §3.2 asks).
pub const HS256_MIN_SECRET_LEN: usize = 32;

/// Smallest RSA modulus accepted, in bits.
const RSA_MIN_BITS: usize = 2048;

/// Where a key came from; decides how tokens are matched to it.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum KeyOrigin {
    /// The HS256 shared secret: matched by algorithm alone.
    Secret,
    /// A PEM public key file; `kid` is derived from its DER.
    Pem { kid: String },
    /// A JWKS entry: only tokens naming its `kid` use it.
    Jwks { kid: String },
}

/// One trusted key and the algorithm it is pinned to.
#[derive(Clone)]
pub(super) struct VerificationKey {
    pub(super) alg: Algorithm,
    pub(super) origin: KeyOrigin,
    pub(super) key: DecodingKey,
}

impl VerificationKey {
    /// The key id tokens can name: a JWKS `kid` or a PEM key's derived id.
    pub(super) fn kid(&self) -> Option<&str> {
        match &self.origin {
            KeyOrigin::Secret => None,
            KeyOrigin::Pem { kid } | KeyOrigin::Jwks { kid } => Some(kid),
        }
    }

    /// Whether `signature` (base64url) is this key's signature over `message`.
    pub(super) fn verifies(&self, message: &[u8], signature: &str) -> bool {
        jsonwebtoken::crypto::verify(signature, message, &self.key, self.alg).unwrap_or(false)
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            KeyOrigin::Secret => write!(f, "{:?} shared secret [redacted]", self.alg),
            KeyOrigin::Pem { kid } => write!(f, "{:?} PEM key kid={kid}", self.alg),
            KeyOrigin::Jwks { kid } => write!(f, "{:?} JWKS key kid={kid}", self.alg),
        }
    }
}

/// Reads the HS256 secret, dropping one trailing newline (`echo` adds one).
pub(super) fn load_secret(path: &Path) -> Result<VerificationKey, AuthConfigError> {
    let raw = std::fs::read(path).map_err(|source| AuthConfigError::Read {
        what: "HS256 secret file",
        path: path.to_owned(),
        source,
    })?;
    let secret = raw.strip_suffix(b"\r\n").or_else(|| raw.strip_suffix(b"\n")).unwrap_or(&raw);
    if secret.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Err(AuthConfigError::SecretIsPem { path: path.to_owned() });
    }
    if secret.len() < HS256_MIN_SECRET_LEN {
        return Err(AuthConfigError::ShortSecret {
            path: path.to_owned(),
            len: secret.len(),
            min: HS256_MIN_SECRET_LEN,
        });
    }
    Ok(VerificationKey { alg: Algorithm::HS256, origin: KeyOrigin::Secret, key: DecodingKey::from_secret(secret) })
}

/// Reads one PEM public key file.
pub(super) fn load_public_key(path: &Path) -> Result<VerificationKey, AuthConfigError> {
    let raw = std::fs::read(path).map_err(|source| AuthConfigError::Read {
        what: "public key file",
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| AuthConfigError::BadPublicKey { path: path.to_owned(), reason };
    let blocks = pem::blocks(&raw).map_err(|error| match error {
        PemError::NoBlock => bad("not a PEM file (no -----BEGIN PUBLIC KEY----- block)".to_owned()),
        other => bad(other.to_string()),
    })?;
    if blocks.iter().any(|block| block.label.contains("PRIVATE KEY")) {
        return Err(bad("holds a private key; give Berth only the public key (openssl pkey -pubout)".to_owned()));
    }
    let mut public = blocks.iter().filter(|block| block.label == "PUBLIC KEY" || block.label == "RSA PUBLIC KEY");
    let (Some(block), None) = (public.next(), public.next()) else {
        let reason = if blocks.iter().any(|block| block.label.contains("PUBLIC KEY")) {
            "holds more than one public key; use one file per key"
        } else if blocks.iter().any(|block| block.label == "CERTIFICATE") {
            "holds a certificate, not a public key (extract it with openssl x509 -pubkey -noout)"
        } else {
            "holds no -----BEGIN PUBLIC KEY----- block"
        };
        return Err(bad(reason.to_owned()));
    };
    let (alg, key) = if block.label == "RSA PUBLIC KEY" {
        (Algorithm::RS256, DecodingKey::from_rsa_der(&block.der))
    } else {
        match pem::public_key(&block.der) {
            Ok(PublicKey::Rsa(pkcs1)) => (Algorithm::RS256, DecodingKey::from_rsa_der(pkcs1)),
            Ok(PublicKey::P256(point)) => (Algorithm::ES256, DecodingKey::from_ec_der(point)),
            Err(SpkiError::NotSpki) => return Err(bad("not a DER SubjectPublicKeyInfo".to_owned())),
            Err(SpkiError::OtherCurve) => {
                let reason = "an EC key on another curve than P-256; Berth verifies ES256 (P-256) only";
                return Err(bad(reason.to_owned()));
            }
            Ok(PublicKey::Ed25519(_)) | Err(SpkiError::OtherAlgorithm) => {
                let reason = "neither an RSA nor an EC public key; Berth verifies RS256 and ES256 only";
                return Err(bad(reason.to_owned()));
            }
        }
    };
    match alg {
        Algorithm::RS256 => check_rsa(&key),
        _ => check_p256(&key),
    }
    .map_err(bad)?;
    Ok(VerificationKey { alg, origin: KeyOrigin::Pem { kid: pem::key_id(&block.der) }, key })
}

/// Checks an RSA key parses and is large enough.
pub(super) fn check_rsa(key: &DecodingKey) -> Result<(), String> {
    let jwk = Jwk::from_decoding_key(key, None).map_err(|_| "not a valid RSA public key".to_owned())?;
    let AlgorithmParameters::RSA(params) = &jwk.algorithm else {
        return Err("not a valid RSA public key".to_owned());
    };
    let modulus = URL_SAFE_NO_PAD.decode(&params.n).map_err(|_| "not a valid RSA public key".to_owned())?;
    let bits = modulus_bits(&modulus);
    if bits < RSA_MIN_BITS {
        return Err(format!("the RSA key has {bits} bits; at least {RSA_MIN_BITS} are required"));
    }
    Ok(())
}

/// Checks an EC key is a point on P-256 (the ES256 verifier refuses anything else).
pub(super) fn check_p256(key: &DecodingKey) -> Result<(), String> {
    // An empty signature never verifies, but building the verifier parses the point.
    jsonwebtoken::crypto::verify("", b"", key, Algorithm::ES256)
        .map(|_| ())
        .map_err(|_| "not a valid P-256 public key".to_owned())
}

fn modulus_bits(big_endian: &[u8]) -> usize {
    let digits = big_endian.iter().position(|&b| b != 0).map_or(&[][..], |start| &big_endian[start..]);
    match digits.first() {
        Some(&top) => digits.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}
