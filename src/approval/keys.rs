//! Keys that sign and verify approvals: Ed25519 (recommended) or ECDSA P-256, in PEM.
//!
//! Key ids are derived from the public key ([`key_id`], shared with the auth API's keys
//! in [`crate::pem`]), so nobody configures them and a token always names the key that
//! can check it. PEM and SubjectPublicKeyInfo are read by [`crate::pem`] too. Verifiers hold several keys at once so
//! the signing key can rotate without voiding approvals already handed out.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rcgen::PublicKeyData;

pub use crate::pem::key_id;
use crate::pem::{self, PemBlock, PemError, PublicKey, SpkiError};

/// What Berth accepts, for error messages.
const SUPPORTED: &str = "Berth signs approvals with Ed25519 (`berth keys generate`) or ECDSA P-256 keys";

/// The signature algorithms Berth signs and accepts approvals with; each key has exactly
/// one, and a token must use its key's algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519 (JWS `EdDSA`).
    EdDsa,
    /// ECDSA on P-256 with SHA-256 (JWS `ES256`).
    Es256,
}

impl KeyAlgorithm {
    /// The JWS `alg` header value.
    pub fn jws_name(self) -> &'static str {
        match self {
            KeyAlgorithm::EdDsa => "EdDSA",
            KeyAlgorithm::Es256 => "ES256",
        }
    }

    /// The algorithm whose JWS `alg` is `name`, if Berth supports it (case-sensitive, as JWS is).
    pub fn from_jws_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(KeyAlgorithm::EdDsa),
            "ES256" => Some(KeyAlgorithm::Es256),
            _ => None,
        }
    }

    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
            KeyAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jws_name())
    }
}

/// Why a key could not be loaded. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A key file is not usable; `source` says why.
    #[error("{path}: {source}")]
    InFile { path: PathBuf, source: Box<KeyError> },
    /// The text holds no PEM block.
    #[error("not a PEM key: expected a -----BEGIN PRIVATE KEY----- or -----BEGIN PUBLIC KEY----- block")]
    NotPem,
    /// A PEM block is damaged.
    #[error("the PEM block {label:?} is not valid base64 or has no matching END line")]
    BadPem { label: String },
    /// A PEM block of a kind Berth does not read (SEC1 key, certificate, …).
    #[error("a PEM block {label:?} is not a key Berth reads: {hint}")]
    UnexpectedPem { label: String, hint: &'static str },
    /// Berth cannot ask for a passphrase.
    #[error("encrypted private keys are not supported: decrypt it with `openssl pkcs8 -topk8 -nocrypt -in <file>`")]
    Encrypted,
    /// RSA, other curves: not Ed25519 or P-256.
    #[error("{what} keys are not supported: {SUPPORTED}")]
    Unsupported { what: String },
    /// A public key that is not a DER SubjectPublicKeyInfo.
    #[error("the public key is not a valid DER SubjectPublicKeyInfo")]
    InvalidPublicKey,
    /// The PKCS#8 private key does not parse.
    #[error("the private key is not a valid PKCS#8 Ed25519 or ECDSA P-256 key")]
    InvalidPrivateKey,
    /// A signing key file must hold exactly one private key.
    #[error("expected exactly one private key, found {count}")]
    PrivateKeyCount { count: usize },
    /// A verifier without keys would refuse every approval.
    #[error("no keys in {place}: put the public key (or a private key) of every key that signs approvals there")]
    NoKeys { place: String },
    /// The key parsed but failed its signing self-check.
    #[error("key {kid} cannot sign approvals: {detail}")]
    Unusable { kid: String, detail: String },
    /// Key generation failed.
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

/// A new Ed25519 key pair, as `(private PKCS#8 PEM, public SPKI PEM)`: for
/// `berth dev-credentials` and tests.
///
/// The private key is written as PKCS#8 v1 (RFC 8410: the seed alone), the encoding
/// `openssl genpkey` writes and every tool reads; the generator's v2 encoding (the
/// public key included) is refused by OpenSSL 3 and Python's cryptography.
pub fn generate_ed25519() -> Result<(String, String), KeyError> {
    use pkcs8::der::{Decode, Encode};
    let generate = |e: &dyn fmt::Display| KeyError::Generate(e.to_string());
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| generate(&e))?;
    let der = pair.serialize_der();
    let generated = pkcs8::PrivateKeyInfo::from_der(&der).map_err(|e| generate(&e))?;
    let v1 = pkcs8::PrivateKeyInfo { public_key: None, ..generated }.to_der().map_err(|e| generate(&e))?;
    Ok((pem::encode("PRIVATE KEY", &v1), pair.public_key_pem()))
}

/// The private key Berth signs approvals with, and its derived key id.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: KeyAlgorithm,
    kid: String,
    spki: Vec<u8>,
    encoding: EncodingKey,
    public: VerificationKey,
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), Ed25519 or P-256,
    /// and checks it can sign, so a bad key fails at startup rather than at the first approval.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let blocks = parse_pem(pem)?;
        let mut private = Vec::new();
        for block in &blocks {
            match block.label.as_str() {
                "PRIVATE KEY" => private.push(block),
                // A public key next to the private one is harmless.
                "PUBLIC KEY" => {}
                label => return Err(unexpected_label(label)),
            }
        }
        let [block] = private.as_slice() else {
            return Err(KeyError::PrivateKeyCount { count: private.len() });
        };
        let (algorithm, spki) = public_of_private(&block.der)?;
        let encoding = match algorithm {
            KeyAlgorithm::EdDsa => EncodingKey::from_ed_der(&block.der),
            KeyAlgorithm::Es256 => EncodingKey::from_ec_der(&block.der),
        };
        let public = public_key(&spki)?;
        if public.algorithm != algorithm {
            return Err(KeyError::InvalidPrivateKey);
        }
        let key = SigningKey { algorithm, kid: key_id(&spki), spki, encoding, public };
        key.self_check()?;
        Ok(key)
    }

    /// [`SigningKey::from_pem`] of a file; errors name the file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        Self::from_pem(&read(path)?).map_err(|e| in_file(path, e))
    }

    /// The key id tokens signed with this key carry in their `kid` header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm tokens signed with this key use.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key as SPKI PEM, to hand to verifiers.
    pub fn public_key_pem(&self) -> String {
        pem::encode("PUBLIC KEY", &self.spki)
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// Signs a message and verifies it with the derived public key: proves the key parses
    /// for signing and that the key id really names it.
    fn self_check(&self) -> Result<(), KeyError> {
        let unusable = |detail: String| KeyError::Unusable { kid: self.kid.clone(), detail };
        let message = b"berth approval key check";
        let alg = self.algorithm.jwt();
        let signature =
            jsonwebtoken::crypto::sign(message, &self.encoding, alg).map_err(|e| unusable(e.to_string()))?;
        match jsonwebtoken::crypto::verify(&signature, message, &self.public.decoding, alg) {
            Ok(true) => Ok(()),
            Ok(false) => Err(unusable("its signature does not verify with its own public key".to_owned())),
            Err(e) => Err(unusable(e.to_string())),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// One public key a verifier trusts.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) decoding: DecodingKey,
}

/// The public keys approvals may be signed with, by key id. Several at once, so keys can
/// rotate: keep the old public key until its approvals have expired.
#[derive(Clone)]
pub struct VerificationKeys {
    keys: BTreeMap<String, VerificationKey>,
}

impl VerificationKeys {
    /// Keys from PEM texts. Each text may hold several blocks; each block is an SPKI public
    /// key (`PUBLIC KEY`) or a PKCS#8 private key whose public key is used (handy for
    /// one-file dev setups). Fails when there is no key at all.
    pub fn from_pems(pems: &[&[u8]]) -> Result<Self, KeyError> {
        let mut keys = BTreeMap::new();
        for pem in pems {
            add_pem(&mut keys, pem)?;
        }
        Self::non_empty(keys, "the given PEM texts")
    }

    /// Keys from PEM files (see [`VerificationKeys::from_pems`]); errors name the file.
    pub fn from_pem_files(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut keys = BTreeMap::new();
        for path in paths {
            add_pem(&mut keys, &read(path)?).map_err(|e| in_file(path, e))?;
        }
        let place = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        Self::non_empty(keys, &place)
    }

    /// Keys from every `*.pem` file in `dir` (not recursive; dotfiles skipped, so a mounted
    /// Secret or ConfigMap directory works as is).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, KeyError> {
        let dir = dir.as_ref();
        let read_error = |source| KeyError::Read { path: dir.to_owned(), source };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !name.starts_with('.') && name.ends_with(".pem") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(KeyError::NoKeys { place: format!("{} (no *.pem files)", dir.display()) });
        }
        Self::from_pem_files(&paths)
    }

    /// The key ids trusted, sorted.
    pub fn kids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted (never true for keys loaded by the constructors).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.get(kid)
    }

    fn non_empty(keys: BTreeMap<String, VerificationKey>, place: &str) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys { place: place.to_owned() });
        }
        Ok(VerificationKeys { keys })
    }
}

impl From<&SigningKey> for VerificationKeys {
    /// The public half of a signing key, for a Berth that issues and verifies with one key.
    fn from(key: &SigningKey) -> Self {
        VerificationKeys { keys: BTreeMap::from([(key.kid.clone(), key.public.clone())]) }
    }
}

impl fmt::Debug for VerificationKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.keys.iter().map(|(kid, key)| (kid, key.algorithm))).finish()
    }
}

/// Adds every key in one PEM text.
fn add_pem(keys: &mut BTreeMap<String, VerificationKey>, pem: &[u8]) -> Result<(), KeyError> {
    for block in parse_pem(pem)? {
        let spki = match block.label.as_str() {
            "PUBLIC KEY" => block.der,
            "PRIVATE KEY" => public_of_private(&block.der)?.1,
            label => return Err(unexpected_label(label)),
        };
        let key = public_key(&spki)?;
        // The same key twice (say its private and public PEM) has the same id: keep one.
        keys.insert(key_id(&spki), key);
    }
    Ok(())
}

/// The verification key of an SPKI DER, if it is Ed25519 or uncompressed P-256.
fn public_key(spki: &[u8]) -> Result<VerificationKey, KeyError> {
    let unsupported = |what: &str| Err(KeyError::Unsupported { what: what.to_owned() });
    match pem::public_key(spki) {
        Ok(PublicKey::Ed25519(raw)) if raw.len() == 32 => {
            Ok(VerificationKey { algorithm: KeyAlgorithm::EdDsa, decoding: DecodingKey::from_ed_der(raw) })
        }
        Ok(PublicKey::P256(point)) if point.len() == 65 && point[0] == 0x04 => {
            Ok(VerificationKey { algorithm: KeyAlgorithm::Es256, decoding: DecodingKey::from_ec_der(point) })
        }
        Ok(PublicKey::Rsa(_)) => unsupported("RSA"),
        Ok(PublicKey::P256(_)) | Err(SpkiError::OtherCurve) => {
            unsupported("ECDSA keys on curves other than P-256 (or compressed P-256)")
        }
        Ok(PublicKey::Ed25519(_)) | Err(SpkiError::OtherAlgorithm) => unsupported("these"),
        Err(SpkiError::NotSpki) => Err(KeyError::InvalidPublicKey),
    }
}

/// The algorithm and SPKI DER of a PKCS#8 private key.
fn public_of_private(pkcs8: &[u8]) -> Result<(KeyAlgorithm, Vec<u8>), KeyError> {
    let pair = rcgen::KeyPair::try_from(pkcs8).map_err(|_| KeyError::InvalidPrivateKey)?;
    let algorithm = if pair.algorithm() == &rcgen::PKCS_ED25519 {
        KeyAlgorithm::EdDsa
    } else if pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
        KeyAlgorithm::Es256
    } else if pair.algorithm() == &rcgen::PKCS_ECDSA_P384_SHA384 {
        return Err(KeyError::Unsupported { what: "ECDSA P-384".to_owned() });
    } else {
        return Err(KeyError::Unsupported { what: "RSA".to_owned() });
    };
    Ok((algorithm, pair.subject_public_key_info()))
}

fn unexpected_label(label: &str) -> KeyError {
    match label {
        "ENCRYPTED PRIVATE KEY" => KeyError::Encrypted,
        "RSA PRIVATE KEY" | "RSA PUBLIC KEY" => KeyError::Unsupported { what: "RSA".to_owned() },
        "EC PRIVATE KEY" => KeyError::UnexpectedPem {
            label: label.to_owned(),
            hint: "convert the SEC1 key to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in <file>`",
        },
        "CERTIFICATE" => KeyError::UnexpectedPem {
            label: label.to_owned(),
            hint: "give its public key instead: `openssl x509 -pubkey -noout -in <file>`",
        },
        _ => KeyError::UnexpectedPem {
            label: label.to_owned(),
            hint: "expected PRIVATE KEY (PKCS#8) or PUBLIC KEY (SPKI)",
        },
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })
}

fn in_file(path: &Path, error: KeyError) -> KeyError {
    match error {
        KeyError::Read { .. } | KeyError::InFile { .. } => error,
        other => KeyError::InFile { path: path.to_owned(), source: Box::new(other) },
    }
}

/// Every PEM block in `text`, as [`KeyError`]s say what is wrong with it.
fn parse_pem(text: &[u8]) -> Result<Vec<PemBlock>, KeyError> {
    pem::blocks(text).map_err(|error| match error {
        PemError::NoBlock => KeyError::NotPem,
        PemError::Headers { .. } => KeyError::Encrypted,
        PemError::NotClosed { label } | PemError::LabelsDiffer { label } | PemError::NotBase64 { label } => {
            KeyError::BadPem { label }
        }
    })
}
