//! PEM files and the public keys in them: one reader for approval keys
//! (`approval::keys`) and the auth API's bearer keys (`auth`), so both read a file
//! the same way and derive the same key id from the same key.
//!
//! - [`blocks`]: every `-----BEGIN label-----` … `-----END label-----` block of a
//!   text (RFC 7468), decoded; text around the blocks is ignored. Labels are kept as
//!   they are, so each caller says what it makes of a certificate, an encrypted key or
//!   a PKCS#1 block.
//! - [`public_key`]: what a SubjectPublicKeyInfo holds (RSA, P-256, Ed25519), parsed
//!   with the `spki` crate rather than by hand.
//! - [`key_id`]: the key id of a public key.
//!
//! No error carries key material.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use sha2::{Digest, Sha256};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef, der::Decode};

/// rsaEncryption (RFC 8017).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1, a.k.a. P-256 (RFC 5480).
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// id-Ed25519 (RFC 8410).
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Length of a key id, in base64url characters.
const KEY_ID_LEN: usize = 16;

/// One PEM block, decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// What follows `-----BEGIN `, e.g. `PUBLIC KEY`.
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body may be a private key.
        f.debug_struct("PemBlock").field("label", &self.label).field("der", &"[redacted]").finish()
    }
}

/// Why a text is not PEM Berth can read. Names the block's label, never its body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// Not text, or no block at all.
    #[error("no PEM block")]
    NoBlock,
    /// A block has no END line (or another BEGIN line comes first).
    #[error("the PEM block {label:?} is not closed")]
    NotClosed { label: String },
    /// A block ends with another label than it begins with.
    #[error("the PEM block {label:?} ends with another label")]
    LabelsDiffer { label: String },
    /// A block's body is not base64.
    #[error("the PEM block {label:?} is not valid base64")]
    NotBase64 { label: String },
    /// A block has RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`): legacy OpenSSL encryption.
    #[error("the PEM block {label:?} has headers (a legacy encrypted key)")]
    Headers { label: String },
}

impl PemError {
    /// The label of the block at fault, if one is.
    pub fn label(&self) -> Option<&str> {
        match self {
            PemError::NoBlock => None,
            PemError::NotClosed { label }
            | PemError::LabelsDiffer { label }
            | PemError::NotBase64 { label }
            | PemError::Headers { label } => Some(label),
        }
    }
}

/// Every PEM block in `text`, in order; at least one.
pub fn blocks(text: &[u8]) -> Result<Vec<PemBlock>, PemError> {
    let text = std::str::from_utf8(text).map_err(|_| PemError::NoBlock)?;
    let mut blocks = Vec::new();
    let mut open: Option<(&str, String)> = None;
    for line in text.lines().map(str::trim) {
        let begin = line.strip_prefix("-----BEGIN ").and_then(|rest| rest.strip_suffix("-----"));
        let end = line.strip_prefix("-----END ").and_then(|rest| rest.strip_suffix("-----"));
        match (open.take(), begin, end) {
            (None, Some(label), _) => open = Some((label, String::new())),
            // Text outside blocks, a stray END line included, is not PEM's business.
            (None, None, _) => {}
            (Some((label, _)), Some(_), _) => return Err(PemError::NotClosed { label: label.to_owned() }),
            (Some((label, body)), None, Some(end)) => {
                if end != label {
                    return Err(PemError::LabelsDiffer { label: label.to_owned() });
                }
                let der = STANDARD.decode(body).map_err(|_| PemError::NotBase64 { label: label.to_owned() })?;
                blocks.push(PemBlock { label: label.to_owned(), der });
            }
            (Some((label, _)), None, None) if line.contains(':') => {
                return Err(PemError::Headers { label: label.to_owned() });
            }
            (Some((label, mut body)), None, None) => {
                body.push_str(line);
                open = Some((label, body));
            }
        }
    }
    if let Some((label, _)) = open {
        return Err(PemError::NotClosed { label: label.to_owned() });
    }
    if blocks.is_empty() {
        return Err(PemError::NoBlock);
    }
    Ok(blocks)
}

/// `der` as a PEM block with `label`, 64 characters a line.
pub fn encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The key id of a public key: the first 16 characters of base64url (no padding) of the
/// SHA-256 of its SubjectPublicKeyInfo DER. Approval keys and the auth API's PEM keys
/// alike, so nobody configures key ids and a token always names the key that checks it.
pub fn key_id(spki_der: &[u8]) -> String {
    let mut kid = URL_SAFE_NO_PAD.encode(Sha256::digest(spki_der));
    kid.truncate(KEY_ID_LEN);
    kid
}

/// The key inside a SubjectPublicKeyInfo, for the kinds Berth verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKey<'a> {
    /// A PKCS#1 RSAPublicKey, DER.
    Rsa(&'a [u8]),
    /// A SEC1 point on P-256, as encoded (uncompressed: 65 bytes starting with 4).
    P256(&'a [u8]),
    /// The 32 bytes of an Ed25519 key (or however many the key holds).
    Ed25519(&'a [u8]),
}

/// Why a SubjectPublicKeyInfo holds no key Berth reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpkiError {
    /// Not a DER SubjectPublicKeyInfo.
    #[error("not a DER SubjectPublicKeyInfo")]
    NotSpki,
    /// An EC key on another curve than P-256.
    #[error("an EC key on another curve than P-256")]
    OtherCurve,
    /// Neither RSA, EC nor Ed25519.
    #[error("neither an RSA, an EC nor an Ed25519 key")]
    OtherAlgorithm,
}

/// What the SubjectPublicKeyInfo `der` holds.
pub fn public_key(der: &[u8]) -> Result<PublicKey<'_>, SpkiError> {
    let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|_| SpkiError::NotSpki)?;
    let key = match spki.subject_public_key.as_bytes() {
        Some(key) if !key.is_empty() => key,
        _ => return Err(SpkiError::NotSpki),
    };
    match spki.algorithm.oid {
        RSA_ENCRYPTION => Ok(PublicKey::Rsa(key)),
        EC_PUBLIC_KEY => match spki.algorithm.parameters_oid() {
            Ok(P256) => Ok(PublicKey::P256(key)),
            _ => Err(SpkiError::OtherCurve),
        },
        ED25519 => Ok(PublicKey::Ed25519(key)),
        _ => Err(SpkiError::OtherAlgorithm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PUBLIC: &str = include_str!("auth/testdata/rsa_public.pem");

    fn spki_of(pair: &rcgen::KeyPair) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(pair)
    }

    #[test]
    fn blocks_are_read_in_order_with_their_labels_and_text_around_them_ignored() {
        let pair = rcgen::KeyPair::generate().expect("generate");
        let text = format!("a comment\n{}\n-----END STRAY-----\n{}", pair.serialize_pem(), pair.public_key_pem());
        let read = blocks(text.as_bytes()).expect("reads");
        assert_eq!(read.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(), ["PRIVATE KEY", "PUBLIC KEY"]);
        assert_eq!(read[0].der, pair.serialize_der());
        assert_eq!(read[1].der, spki_of(&pair));
        assert_eq!(encode("PUBLIC KEY", &read[1].der), pair.public_key_pem());
    }

    #[test]
    fn broken_pem_is_an_error_that_names_the_block_and_never_its_body() {
        let cases = [
            ("hello", PemError::NoBlock),
            ("\u{0}\u{ff}", PemError::NoBlock),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n", PemError::NotClosed { label: "PUBLIC KEY".into() }),
            (
                "-----BEGIN A-----\nAAAA\n-----BEGIN B-----\nAAAA\n-----END B-----\n",
                PemError::NotClosed { label: "A".into() },
            ),
            ("-----BEGIN A-----\nAAAA\n-----END B-----\n", PemError::LabelsDiffer { label: "A".into() }),
            ("-----BEGIN A-----\n!!!secret\n-----END A-----\n", PemError::NotBase64 { label: "A".into() }),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                PemError::Headers { label: "RSA PRIVATE KEY".into() },
            ),
        ];
        for (text, expected) in cases {
            let error = blocks(text.as_bytes()).expect_err(text);
            assert_eq!(error, expected, "{text:?}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
        assert_eq!(PemError::LabelsDiffer { label: "A".into() }.label(), Some("A"));
    }

    #[test]
    fn public_keys_are_told_apart_by_their_algorithm_and_curve() {
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
        let (p256_spki, p256_point) = (spki_of(&p256), rcgen::PublicKeyData::der_bytes(&p256).to_vec());
        assert_eq!(public_key(&p256_spki), Ok(PublicKey::P256(&p256_point)));
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
        let (ed_spki, ed_raw) = (spki_of(&ed), rcgen::PublicKeyData::der_bytes(&ed).to_vec());
        assert_eq!(public_key(&ed_spki), Ok(PublicKey::Ed25519(&ed_raw)));
        let rsa = &blocks(RSA_PUBLIC.as_bytes()).expect("fixture")[0].der;
        assert!(matches!(public_key(rsa), Ok(PublicKey::Rsa(pkcs1)) if pkcs1.len() > 256));

        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        assert_eq!(public_key(&spki_of(&p384)), Err(SpkiError::OtherCurve));
        assert_eq!(public_key(b"\x30\x03\x02\x01\x00"), Err(SpkiError::NotSpki));
        assert_eq!(public_key(&[p256_spki.as_slice(), b"\x00"].concat()), Err(SpkiError::NotSpki));
    }

    #[test]
    fn a_key_id_is_sixteen_base64url_characters_of_the_spki_hash() {
        // SHA-256 of the empty string starts 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU.
        assert_eq!(key_id(b""), "47DEQpj8HBSa-_TI");
        let pair = rcgen::KeyPair::generate().expect("generate");
        assert_eq!(key_id(&spki_of(&pair)).len(), 16);
        assert_ne!(key_id(&spki_of(&pair)), key_id(b""));
    }
}
