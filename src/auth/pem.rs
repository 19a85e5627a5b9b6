//! PEM public key files: RSA (RS256) or P-256 (ES256) SubjectPublicKeyInfo.
//!
//! The key type is read from the SPKI algorithm identifier, so one setting takes both
//! kinds. A PKCS#1 `RSA PUBLIC KEY` block is accepted too. Private keys and
//! certificates are refused with a hint instead of being half-understood.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};

use super::AuthConfigError;
use super::keys::{KeyOrigin, VerificationKey, check_p256, check_rsa};

/// DER tags used by SubjectPublicKeyInfo.
const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;
const OBJECT_IDENTIFIER: u8 = 0x06;

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (P-256), 1.2.840.10045.3.1.7.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Length of a PEM key's derived `kid`.
const KID_LEN: usize = 16;

/// Reads one PEM public key file.
pub(super) fn load_public_key(path: &Path) -> Result<VerificationKey, AuthConfigError> {
    let raw = std::fs::read(path).map_err(|source| AuthConfigError::Read {
        what: "public key file",
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| AuthConfigError::BadPublicKey { path: path.to_owned(), reason };
    let text = std::str::from_utf8(&raw).map_err(|_| bad("not a PEM file".to_owned()))?;
    let blocks = pem_blocks(text).map_err(|reason| bad(reason.to_owned()))?;
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
        match parse_spki(&block.der).map_err(|reason| bad(reason.to_owned()))? {
            SpkiKey::Rsa(pkcs1) => (Algorithm::RS256, DecodingKey::from_rsa_der(pkcs1)),
            SpkiKey::P256(point) => (Algorithm::ES256, DecodingKey::from_ec_der(point)),
        }
    };
    match alg {
        Algorithm::RS256 => check_rsa(&key),
        _ => check_p256(&key),
    }
    .map_err(bad)?;
    Ok(VerificationKey { alg, origin: KeyOrigin::Pem { kid: derived_kid(&block.der) }, key })
}

/// A PEM key's `kid`: the first 16 characters of the unpadded base64url SHA-256 of its DER.
pub(super) fn derived_kid(der: &[u8]) -> String {
    let mut kid = URL_SAFE_NO_PAD.encode(Sha256::digest(der));
    kid.truncate(KID_LEN);
    kid
}

/// One `-----BEGIN label-----` … `-----END label-----` block, decoded.
struct PemBlock {
    label: String,
    der: Vec<u8>,
}

/// The PEM blocks of a file; text outside blocks is ignored.
fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, &'static str> {
    let mut blocks = Vec::new();
    let mut open: Option<(&str, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|rest| rest.strip_suffix("-----")) {
            if open.is_some() {
                return Err("a PEM block is not closed");
            }
            open = Some((label, String::new()));
        } else if let Some(label) = line.strip_prefix("-----END ").and_then(|rest| rest.strip_suffix("-----")) {
            let Some((begin, body)) = open.take() else {
                return Err("a PEM END line has no BEGIN line");
            };
            if begin != label {
                return Err("a PEM block's BEGIN and END labels differ");
            }
            let der = STANDARD.decode(body).map_err(|_| "a PEM block is not valid base64")?;
            blocks.push(PemBlock { label: label.to_owned(), der });
        } else if let Some((_, body)) = open.as_mut() {
            body.push_str(line);
        }
    }
    if open.is_some() {
        return Err("a PEM block is not closed");
    }
    if blocks.is_empty() {
        return Err("not a PEM file (no -----BEGIN PUBLIC KEY----- block)");
    }
    Ok(blocks)
}

/// The key inside a SubjectPublicKeyInfo that Berth can use.
enum SpkiKey<'a> {
    /// PKCS#1 RSAPublicKey DER.
    Rsa(&'a [u8]),
    /// SEC1 P-256 point.
    P256(&'a [u8]),
}

/// Reads `SEQUENCE { SEQUENCE { algorithm OID, parameters }, BIT STRING key }`.
fn parse_spki(der: &[u8]) -> Result<SpkiKey<'_>, &'static str> {
    const NOT_SPKI: &str = "not a DER SubjectPublicKeyInfo";
    let (spki, rest) = read_tlv(der, SEQUENCE).ok_or(NOT_SPKI)?;
    let (algorithm, rest_of_spki) = read_tlv(spki, SEQUENCE).ok_or(NOT_SPKI)?;
    let (bits, after_bits) = read_tlv(rest_of_spki, BIT_STRING).ok_or(NOT_SPKI)?;
    if !rest.is_empty() || !after_bits.is_empty() {
        return Err(NOT_SPKI);
    }
    let (oid, parameters) = read_tlv(algorithm, OBJECT_IDENTIFIER).ok_or(NOT_SPKI)?;
    let key = match bits.split_first() {
        Some((0, key)) if !key.is_empty() => key,
        _ => return Err(NOT_SPKI),
    };
    if oid == OID_RSA {
        Ok(SpkiKey::Rsa(key))
    } else if oid == OID_EC {
        match read_tlv(parameters, OBJECT_IDENTIFIER) {
            Some((curve, _)) if curve == OID_P256 => Ok(SpkiKey::P256(key)),
            _ => Err("an EC key on another curve than P-256; Berth verifies ES256 (P-256) only"),
        }
    } else {
        Err("neither an RSA nor an EC public key; Berth verifies RS256 and ES256 only")
    }
}

/// Reads one DER element with the expected tag: its contents and what follows it.
fn read_tlv(input: &[u8], expected_tag: u8) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag != expected_tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        (len_bytes.iter().fold(0usize, |len, &byte| (len << 8) | usize::from(byte)), rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}
