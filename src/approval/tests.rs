use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::{
    digest::canonical_json,
    keys::{KeyAlgorithm, KeyError, SigningKey, VerificationKeys, generate_ed25519},
    spec_digest,
    token::{ApprovalClaims, Approver, Issuer, Rejection, RequestRef, Target, VerifiedApproval, Verifier},
};
use crate::api::{EnvironmentRequestSpec, environment_request::Approval};

const ISSUER: &str = "https://berth.example.com";
const AUDIENCE: &str = "berth";
const NAMESPACE: &str = "team-a";
const NAME: &str = "shop-pr-42";
const UID: &str = "6f1c2a9e-0000-4000-8000-000000000042";
const LIFETIME: Duration = Duration::from_secs(3600);

fn now() -> Timestamp {
    Timestamp::from_second(1_750_000_000).expect("timestamp")
}

fn at(offset_seconds: i64) -> Timestamp {
    Timestamp::from_second(now().as_second() + offset_seconds).expect("timestamp")
}

fn spec_from(yaml: &str) -> EnvironmentRequestSpec {
    serde_yaml::from_str(yaml).expect("spec")
}

fn spec() -> EnvironmentRequestSpec {
    spec_from(
        "tenant: team-a\nclass: production-like\napp:\n  name: shop\n  repoURL: https://git.example.com/shop.git\n  revision: v1.2.3\nttl: 48h\nowner: alice\n",
    )
}

fn ed25519_key() -> SigningKey {
    let (private, _) = generate_ed25519().expect("generate");
    SigningKey::from_pem(private.as_bytes()).expect("ed25519 key")
}

fn p256_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate").serialize_pem()
}

fn p256_key() -> SigningKey {
    SigningKey::from_pem(p256_pem().as_bytes()).expect("p256 key")
}

fn issuer(key: &SigningKey) -> Issuer {
    Issuer::new(key.clone(), ISSUER.to_owned(), AUDIENCE.to_owned(), LIFETIME)
}

fn verifier(keys: &[&SigningKey]) -> Verifier {
    let pems: Vec<String> = keys.iter().map(|k| k.public_key_pem()).collect();
    let pems: Vec<&[u8]> = pems.iter().map(|p| p.as_bytes()).collect();
    Verifier::new(VerificationKeys::from_pems(&pems).expect("keys"), ISSUER.to_owned(), AUDIENCE.to_owned())
}

fn approver() -> Approver {
    Approver {
        subject: "bob".to_owned(),
        groups: vec!["developers".to_owned(), "platform-leads".to_owned()],
        ..Default::default()
    }
}

fn request() -> RequestRef {
    RequestRef { namespace: NAMESPACE.to_owned(), name: NAME.to_owned(), uid: UID.to_owned() }
}

/// One signing key, its issuer and a verifier trusting it, and the request being approved
/// (class approver groups `platform-leads` and `sre`, created by carol).
struct World {
    key: SigningKey,
    issuer: Issuer,
    verifier: Verifier,
    spec: EnvironmentRequestSpec,
    groups: Vec<String>,
}

impl World {
    fn new(key: SigningKey) -> Self {
        World {
            issuer: issuer(&key),
            verifier: verifier(&[&key]),
            key,
            spec: spec(),
            groups: vec!["platform-leads".to_owned(), "sre".to_owned()],
        }
    }

    fn ed25519() -> Self {
        Self::new(ed25519_key())
    }

    fn claims(&self) -> ApprovalClaims {
        self.issuer.claims(&approver(), &request(), &self.spec, now()).expect("claims")
    }

    fn token(&self) -> String {
        self.issuer.issue(&approver(), &request(), &self.spec, now()).expect("issue")
    }

    fn signed(&self, claims: &ApprovalClaims) -> String {
        self.issuer.sign(claims).expect("sign")
    }

    fn target(&self) -> Target<'_> {
        Target {
            namespace: NAMESPACE,
            name: NAME,
            uid: Some(UID),
            accept_unbound: false,
            spec: &self.spec,
            approver_groups: &self.groups,
            creator: Some("carol"),
        }
    }

    fn check(&self, token: &str) -> Result<VerifiedApproval, Rejection> {
        self.check_at(token, now())
    }

    fn check_at(&self, token: &str, when: Timestamp) -> Result<VerifiedApproval, Rejection> {
        self.verifier.verify(token, &self.target(), when)
    }

    /// Asserts `token` is rejected with `expected`, and that the message reveals no token.
    fn rejects(&self, token: &str, expected: &Rejection) {
        let rejection = self.check(token).expect_err("token must be rejected");
        assert_eq!(&rejection, expected);
        assert_no_secrets(&rejection.to_string(), token);
    }
}

fn assert_no_secrets(message: &str, token: &str) {
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!message.contains(part), "message {message:?} contains part of the token");
    }
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).expect("json"))
}

fn assert_valid(world: &World) {
    let verified = world.check(&world.token()).expect("valid token");
    let token_id = verified.token_id.clone();
    assert!(token_id.as_ref().is_some_and(|id| id.len() == 22), "a 128-bit id, base64url: {token_id:?}");
    assert_eq!(
        verified,
        VerifiedApproval {
            approver: "bob".to_owned(),
            groups: approver().groups,
            expires_at: at(3600),
            key_id: world.key.kid().to_owned(),
            issued_at: Some(at(0)),
            freeze_override: false,
            token_id,
        }
    );
}

// --- digest ---

#[test]
fn digest_is_sha256_of_sorted_compact_json_without_approval() {
    let spec = spec();
    let json = String::from_utf8(canonical_json(&spec).expect("json")).expect("utf8");
    assert_eq!(
        json,
        r#"{"app":{"name":"shop","path":".","repoURL":"https://git.example.com/shop.git","revision":"v1.2.3"},"class":"production-like","cluster":"in-cluster","owner":"alice","tenant":"team-a","ttl":"48h"}"#
    );
    let hex: String = Sha256::digest(json.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(spec_digest(&spec), format!("sha256:{hex}"));
    assert_eq!(hex.len(), 64);
}

#[test]
fn digest_ignores_the_approval() {
    let spec = spec();
    let approved = EnvironmentRequestSpec { approval: Some(Approval { token: "a.b.c".to_owned() }), ..spec.clone() };
    assert_eq!(spec_digest(&spec), spec_digest(&approved));
}

#[test]
fn digest_changes_with_any_field() {
    let base = spec();
    let digest = spec_digest(&base);
    let mut revision = base.clone();
    revision.app.revision = "v1.2.4".to_owned();
    let mut ttl = base.clone();
    ttl.ttl = Some("72h".parse().expect("duration"));
    let mut cluster = base.clone();
    cluster.cluster = "prod-eu".to_owned();
    let mut owner = base.clone();
    owner.owner = None;
    for changed in [revision, ttl, cluster, owner] {
        assert_ne!(spec_digest(&changed), digest, "{changed:?}");
    }
}

#[test]
fn digest_applies_serde_defaults() {
    let omitted =
        spec_from("tenant: team-a\nclass: preview\napp:\n  name: shop\n  repoURL: https://git.example.com/shop.git\n");
    let written = spec_from(
        "tenant: team-a\nclass: preview\ncluster: in-cluster\nowner: null\napp:\n  name: shop\n  repoURL: https://git.example.com/shop.git\n  path: .\n  revision: HEAD\n",
    );
    assert_eq!(spec_digest(&omitted), spec_digest(&written));
}

// --- valid tokens ---

#[test]
fn ed25519_token_verifies() {
    let world = World::ed25519();
    assert_eq!(world.key.algorithm(), KeyAlgorithm::EdDsa);
    assert_valid(&world);
}

#[test]
fn es256_token_verifies() {
    let world = World::new(p256_key());
    assert_eq!(world.key.algorithm(), KeyAlgorithm::Es256);
    assert_valid(&world);
}

#[test]
fn token_header_names_key_and_algorithm_and_claims_have_their_names() {
    let world = World::ed25519();
    let token = world.token();
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(world.key.kid()));
    let payload = token.split('.').nth(1).expect("payload");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    let mut names: Vec<&str> = claims.as_object().expect("object").keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "aud",
            "berth.dev/digest",
            "berth.dev/name",
            "berth.dev/namespace",
            "berth.dev/uid",
            "exp",
            "groups",
            "iat",
            "iss",
            "jti",
            "nbf",
            "sub"
        ]
    );
    assert_eq!(claims["berth.dev/digest"], spec_digest(&world.spec));
}

#[test]
fn token_with_surrounding_whitespace_verifies() {
    let world = World::ed25519();
    assert!(world.check(&format!("  {}\n", world.token())).is_ok());
}

// --- rejections, each with its own variant ---

#[test]
fn not_a_jwt_is_malformed() {
    let world = World::ed25519();
    for token in ["", "approved", "a.b", "a.b.c.d", "!!!.e30.c2ln"] {
        let rejection = world.check(token).expect_err(token);
        assert_eq!(rejection.reason(), "Malformed", "{token:?}: {rejection}");
    }
}

#[test]
fn headers_berth_cannot_honour_are_malformed() {
    let world = World::ed25519();
    let token = world.token();
    let (_, rest) = token.split_once('.').expect("dot");
    for header in [
        serde_json::json!({"alg": "EdDSA", "kid": world.key.kid(), "crit": ["exp"]}),
        serde_json::json!({"alg": "EdDSA", "kid": world.key.kid(), "jwk": "not a key"}),
        serde_json::json!(["EdDSA"]),
    ] {
        let rejection = world.check(&format!("{}.{rest}", b64(&header))).expect_err("odd header");
        assert_eq!(rejection.reason(), "Malformed", "{header}: {rejection}");
    }
}

#[test]
fn alg_none_is_unsigned() {
    let world = World::ed25519();
    let claims = serde_json::to_value(world.claims()).expect("claims");
    let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": world.key.kid()});
    world.rejects(&format!("{}.{}.", b64(&header), b64(&claims)), &Rejection::Unsigned);
    let header = serde_json::json!({"alg": "None", "kid": world.key.kid()});
    world.rejects(&format!("{}.{}.c2lnbmF0dXJl", b64(&header), b64(&claims)), &Rejection::Unsigned);
}

#[test]
fn stripped_signature_is_unsigned() {
    let world = World::ed25519();
    let token = world.token();
    let unsigned = &token[..=token.rfind('.').expect("dot")];
    world.rejects(unsigned, &Rejection::Unsigned);
}

#[test]
fn hs256_signed_with_the_public_key_is_not_allowed() {
    let world = World::ed25519();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(world.key.kid().to_owned());
    let secret = EncodingKey::from_secret(world.key.public_key_pem().as_bytes());
    let token = jsonwebtoken::encode(&header, &world.claims(), &secret).expect("hs256");
    world.rejects(
        &token,
        &Rejection::AlgorithmNotAllowed { alg: "HS256".to_owned(), allowed: "EdDSA or ES256".to_owned() },
    );
}

#[test]
fn algorithm_is_pinned_to_the_key() {
    // An ES256 token that names the Ed25519 key's id.
    let world = World::ed25519();
    let other = p256_key();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(world.key.kid().to_owned());
    let token = jsonwebtoken::encode(&header, &world.claims(), other.encoding_key()).expect("es256");
    world.rejects(
        &token,
        &Rejection::AlgorithmNotAllowed {
            alg: "ES256".to_owned(),
            allowed: format!("EdDSA for key {}", world.key.kid()),
        },
    );
}

#[test]
fn missing_kid_is_rejected() {
    let world = World::ed25519();
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &world.claims(), world.key.encoding_key()).expect("token");
    world.rejects(&token, &Rejection::MissingKeyId);
}

#[test]
fn unknown_kid_is_rejected_naming_it() {
    let world = World::ed25519();
    let stranger = issuer(&ed25519_key());
    let token = stranger.issue(&approver(), &request(), &world.spec, now()).expect("issue");
    world.rejects(
        &token,
        &Rejection::UnknownKeyId { kid: stranger.kid().to_owned(), known: vec![world.key.kid().to_owned()] },
    );
    let message = world.check(&token).expect_err("rejected").to_string();
    assert!(message.contains(&stranger.kid()) && message.contains("rotated"), "{message}");
}

#[test]
fn tampered_payload_is_a_bad_signature() {
    let world = World::ed25519();
    let token = world.token();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64")).expect("json");
    claims["sub"] = "mallory".into();
    world.rejects(&format!("{}.{}.{}", parts[0], b64(&claims), parts[2]), &Rejection::BadSignature);
}

#[test]
fn tampered_es256_signature_is_a_bad_signature() {
    let world = World::new(p256_key());
    let token = world.token();
    let (message, signature) = token.rsplit_once('.').expect("dot");
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64");
    bytes[10] ^= 0x01;
    world.rejects(&format!("{message}.{}", URL_SAFE_NO_PAD.encode(bytes)), &Rejection::BadSignature);
}

#[test]
fn expired_token_says_when() {
    let world = World::ed25519();
    let token = world.token();
    let rejection = world.check_at(&token, at(3600 + 31)).expect_err("expired");
    assert_eq!(rejection, Rejection::Expired { expired_at: at(3600) });
    assert!(rejection.to_string().contains("2025-06-15T16:06:40Z"), "{rejection}");
}

#[test]
fn leeway_tolerates_small_clock_skew() {
    let world = World::ed25519();
    let token = world.token();
    assert!(world.check_at(&token, at(3600 + 29)).is_ok());
    assert!(world.check_at(&token, at(-29)).is_ok());
    let strict =
        World { verifier: world.verifier.clone().with_leeway(Duration::ZERO), ..World::new(world.key.clone()) };
    assert_eq!(strict.check_at(&token, at(3600)), Err(Rejection::Expired { expired_at: at(3600) }));
}

#[test]
fn future_token_is_not_yet_valid() {
    let world = World::ed25519();
    let token = world.issuer.issue(&approver(), &request(), &world.spec, at(600)).expect("issue");
    world.rejects(&token, &Rejection::NotYetValid { valid_from: at(600) });
}

#[test]
fn wrong_issuer_is_rejected() {
    let world = World::ed25519();
    let other = Issuer::new(world.key.clone(), "https://other.example.com".to_owned(), AUDIENCE.to_owned(), LIFETIME);
    let token = other.issue(&approver(), &request(), &world.spec, now()).expect("issue");
    world.rejects(
        &token,
        &Rejection::WrongIssuer { expected: ISSUER.to_owned(), actual: "https://other.example.com".to_owned() },
    );
}

#[test]
fn wrong_audience_is_rejected() {
    let world = World::ed25519();
    let other = Issuer::new(world.key.clone(), ISSUER.to_owned(), "argo".to_owned(), LIFETIME);
    let token = other.issue(&approver(), &request(), &world.spec, now()).expect("issue");
    world.rejects(&token, &Rejection::WrongAudience { expected: AUDIENCE.to_owned(), actual: "argo".to_owned() });
}

#[test]
fn token_for_another_spec_is_spec_changed() {
    let world = World::ed25519();
    let mut approved = world.spec.clone();
    approved.app.revision = "v1.2.2".to_owned();
    let token = world.issuer.issue(&approver(), &request(), &approved, now()).expect("issue");
    let rejection = world.check(&token).expect_err("spec changed");
    assert_eq!(
        rejection,
        Rejection::SpecChanged { approved: spec_digest(&approved), current: spec_digest(&world.spec) }
    );
    assert_eq!(rejection.to_string(), "the spec changed after it was approved; ask for a new approval");
}

#[test]
fn token_for_another_request_names_both() {
    let world = World::ed25519();
    let other = RequestRef { namespace: "team-b".to_owned(), name: NAME.to_owned(), uid: UID.to_owned() };
    let token = world.issuer.issue(&approver(), &other, &world.spec, now()).expect("issue");
    world.rejects(
        &token,
        &Rejection::WrongRequest { approved: format!("team-b/{NAME}"), target: format!("{NAMESPACE}/{NAME}") },
    );
}

#[test]
fn approver_outside_the_groups_is_rejected() {
    let world = World::ed25519();
    let outsider = Approver { subject: "dave".to_owned(), groups: vec!["developers".to_owned()], ..Default::default() };
    let token = world.issuer.issue(&outsider, &request(), &world.spec, now()).expect("issue");
    world.rejects(&token, &Rejection::NotAnApprover { approver: "dave".to_owned(), groups: world.groups.clone() });
}

#[test]
fn creator_cannot_approve_their_own_request() {
    let world = World::ed25519();
    let creator = Approver { subject: "carol".to_owned(), groups: vec!["sre".to_owned()], ..Default::default() };
    let token = world.issuer.issue(&creator, &request(), &world.spec, now()).expect("issue");
    world.rejects(&token, &Rejection::ApproverIsCreator { approver: "carol".to_owned(), groups: world.groups.clone() });
    let message = world.check(&token).expect_err("four eyes").to_string();
    assert!(message.contains("carol") && message.contains("someone else"), "{message}");
}

#[test]
fn signed_claims_that_are_not_an_approval_are_malformed() {
    let world = World::ed25519();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(world.key.kid().to_owned());
    let token =
        jsonwebtoken::encode(&header, &serde_json::json!({"sub": "bob"}), world.key.encoding_key()).expect("token");
    assert_eq!(world.check(&token).map_err(|r| r.reason()), Err("Malformed"));
}

#[test]
fn approval_without_approver_is_malformed() {
    let world = World::ed25519();
    let claims = ApprovalClaims { sub: String::new(), ..world.claims() };
    assert_eq!(world.check(&world.signed(&claims)).map_err(|r| r.reason()), Err("Malformed"));
}

#[test]
fn reasons_are_distinct() {
    let t = now();
    let all = [
        Rejection::Malformed { detail: String::new() },
        Rejection::Unsigned,
        Rejection::AlgorithmNotAllowed { alg: String::new(), allowed: String::new() },
        Rejection::MissingKeyId,
        Rejection::UnknownKeyId { kid: String::new(), known: vec![] },
        Rejection::BadSignature,
        Rejection::Expired { expired_at: t },
        Rejection::NotYetValid { valid_from: t },
        Rejection::WrongIssuer { expected: String::new(), actual: String::new() },
        Rejection::WrongAudience { expected: String::new(), actual: String::new() },
        Rejection::WrongRequest { approved: String::new(), target: String::new() },
        Rejection::SpecChanged { approved: String::new(), current: String::new() },
        Rejection::NotAnApprover { approver: String::new(), groups: vec![] },
        Rejection::ApproverIsCreator { approver: String::new(), groups: vec![] },
        Rejection::UnboundRequest { namespace: String::new(), name: String::new() },
        Rejection::Revoked { token_id: String::new() },
    ];
    let mut reasons: Vec<&str> = all.iter().map(Rejection::reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
}

// --- issuing ---

#[test]
fn issuing_needs_an_approver_and_a_request() {
    let world = World::ed25519();
    let nobody = Approver { subject: String::new(), groups: vec![], rbac_classes: None };
    assert_eq!(world.issuer.issue(&nobody, &request(), &world.spec, now()), Err(super::IssueError::NoApprover));
    let unnamed = RequestRef { namespace: NAMESPACE.to_owned(), name: String::new(), uid: UID.to_owned() };
    assert_eq!(world.issuer.issue(&approver(), &unnamed, &world.spec, now()), Err(super::IssueError::NoRequest));
    let not_created = RequestRef { uid: String::new(), ..request() };
    assert_eq!(world.issuer.issue(&approver(), &not_created, &world.spec, now()), Err(super::IssueError::NoRequest));
    let forever = Issuer::new(world.key.clone(), ISSUER.to_owned(), AUDIENCE.to_owned(), Duration::MAX);
    assert!(matches!(
        forever.issue(&approver(), &request(), &world.spec, now()),
        Err(super::IssueError::LifetimeTooLong { .. })
    ));
}

// --- keys ---

#[test]
fn rotation_accepts_tokens_of_old_and_new_keys() {
    let old = ed25519_key();
    let new = p256_key();
    let both = verifier(&[&old, &new]);
    let world = World { verifier: both, ..World::new(old.clone()) };
    for key in [&old, &new] {
        let token = issuer(key).issue(&approver(), &request(), &world.spec, now()).expect("issue");
        assert_eq!(world.check(&token).expect("verifies").key_id, key.kid());
    }
    let only_new = World { verifier: verifier(&[&new]), ..World::new(old.clone()) };
    let old_token = issuer(&old).issue(&approver(), &request(), &world.spec, now()).expect("issue");
    assert_eq!(only_new.check(&old_token).map_err(|r| r.reason()), Err("UnknownKeyId"));
}

#[test]
fn key_id_is_the_same_from_private_and_public_key() {
    let (private, public) = generate_ed25519().expect("generate");
    let signing = SigningKey::from_pem(private.as_bytes()).expect("private");
    assert_eq!(signing.kid().len(), 16);
    assert!(signing.kid().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert_eq!(signing.public_key_pem(), public);
    let from_public = VerificationKeys::from_pems(&[public.as_bytes()]).expect("public");
    let from_private = VerificationKeys::from_pems(&[private.as_bytes()]).expect("private");
    assert_eq!(from_public.kids(), vec![signing.kid().to_owned()]);
    assert_eq!(from_private.kids(), vec![signing.kid().to_owned()]);
    assert_eq!(VerificationKeys::from(&signing).kids(), vec![signing.kid().to_owned()]);
    let p256 = p256_pem();
    let p256_signing = SigningKey::from_pem(p256.as_bytes()).expect("p256");
    let both = VerificationKeys::from_pems(&[p256.as_bytes(), p256_signing.public_key_pem().as_bytes()]).expect("p256");
    assert_eq!(both.kids(), vec![p256_signing.kid().to_owned()]);
}

#[test]
fn keys_load_from_files_and_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = ed25519_key();
    let (new_private, _) = generate_ed25519().expect("generate");
    let new = SigningKey::from_pem(new_private.as_bytes()).expect("new");
    std::fs::write(dir.path().join("old.pem"), old.public_key_pem()).expect("write");
    std::fs::write(dir.path().join("new.pem"), &new_private).expect("write");
    std::fs::write(dir.path().join("README.txt"), "not a key").expect("write");
    std::fs::write(dir.path().join(".hidden.pem"), "not a key").expect("write");
    let keys = VerificationKeys::from_dir(dir.path()).expect("dir");
    let mut expected = vec![old.kid().to_owned(), new.kid().to_owned()];
    expected.sort();
    assert_eq!(keys.kids(), expected);
    let signing = SigningKey::from_pem_file(dir.path().join("new.pem")).expect("file");
    assert_eq!(signing.kid(), new.kid());

    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n").expect("write");
    let error = VerificationKeys::from_pem_files(std::slice::from_ref(&broken)).expect_err("broken");
    assert!(matches!(&error, KeyError::InFile { path, .. } if path == &broken), "{error}");
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(matches!(VerificationKeys::from_dir(empty.path()), Err(KeyError::NoKeys { .. })));
}

#[test]
fn unsupported_keys_are_refused_with_a_reason() {
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("generate");
    let error = SigningKey::from_pem(p384.serialize_pem().as_bytes()).expect_err("p384 private");
    assert!(matches!(&error, KeyError::Unsupported { what } if what == "ECDSA P-384"), "{error}");
    let error = VerificationKeys::from_pems(&[p384.public_key_pem().as_bytes()]).expect_err("p384 public");
    assert!(matches!(error, KeyError::Unsupported { .. }), "{error}");

    let (_, public) = generate_ed25519().expect("generate");
    assert!(matches!(SigningKey::from_pem(public.as_bytes()), Err(KeyError::PrivateKeyCount { count: 0 })));
    assert!(matches!(SigningKey::from_pem(b"hello"), Err(KeyError::NotPem)));
    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
    assert!(matches!(SigningKey::from_pem(sec1.as_bytes()), Err(KeyError::UnexpectedPem { .. })));
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert!(matches!(SigningKey::from_pem(encrypted.as_bytes()), Err(KeyError::Encrypted)));
    assert!(matches!(VerificationKeys::from_pems(&[]), Err(KeyError::NoKeys { .. })));
}

#[test]
fn debug_never_prints_key_material() {
    let (private, public) = generate_ed25519().expect("generate");
    let signing = SigningKey::from_pem(private.as_bytes()).expect("key");
    let keys = VerificationKeys::from_pems(&[public.as_bytes()]).expect("keys");
    let issuer = issuer(&signing);
    let verifier = Verifier::new(keys.clone(), ISSUER.to_owned(), AUDIENCE.to_owned());
    let body_lines = |pem: &str| pem.lines().filter(|l| !l.starts_with("-----")).map(str::to_owned).collect::<Vec<_>>();
    let secrets: Vec<String> = body_lines(&private).into_iter().chain(body_lines(&public)).collect();
    for debug in [format!("{signing:?}"), format!("{keys:?}"), format!("{issuer:?}"), format!("{verifier:?}")] {
        assert!(!debug.contains("BEGIN") && !debug.contains("KEY-----"), "{debug}");
        for secret in &secrets {
            assert!(!debug.contains(secret.as_str()), "{debug}");
        }
        assert!(debug.contains(signing.kid()), "{debug}");
    }
}

// --- bound to the request's UID ---

#[test]
fn a_namesake_re_created_with_the_same_spec_does_not_inherit_the_approval() {
    let world = World::ed25519();
    let token = world.token();
    let claims = world.claims();
    assert_eq!(claims.uid.as_deref(), Some(UID), "issued for the request as it exists");
    let recreated = Target { uid: Some("a-new-uid"), ..world.target() };
    let rejection = world.verifier.verify(&token, &recreated, now()).expect_err("another request");
    assert_eq!(
        rejection,
        Rejection::WrongRequest {
            approved: format!("{NAMESPACE}/{NAME} (uid {UID})"),
            target: format!("{NAMESPACE}/{NAME} (uid a-new-uid)"),
        }
    );
    assert!(rejection.to_string().contains("approvals cannot move between requests"), "{rejection}");
    let being_created = Target { uid: None, ..world.target() };
    let rejection = world.verifier.verify(&token, &being_created, now()).expect_err("no UID yet");
    assert!(rejection.to_string().contains("(being created: approve it once it exists)"), "{rejection}");
}

#[test]
fn a_token_bound_to_no_uid_counts_only_for_a_request_provisioned_with_it() {
    let world = World::ed25519();
    let unbound = world.signed(&ApprovalClaims { uid: None, ..world.claims() });
    let rejection = world.check(&unbound).expect_err("unbound");
    assert_eq!(rejection.reason(), "UnboundRequest");
    assert_eq!(
        rejection.to_string(),
        format!(
            "it is not bound to request {NAMESPACE}/{NAME}'s UID (it was issued before the request existed); create the request without spec.approval, then ask an approver to run `berth approve -n {NAMESPACE} {NAME}`"
        )
    );
    let provisioned = Target { accept_unbound: true, ..world.target() };
    assert!(world.verifier.verify(&unbound, &provisioned, now()).is_ok(), "an environment running on it keeps it");
    // ...but every other check still holds for it.
    let mut changed = world.spec.clone();
    changed.app.revision = "v9".to_owned();
    let provisioned_changed = Target { spec: &changed, ..provisioned };
    let rejection = world.verifier.verify(&unbound, &provisioned_changed, now()).expect_err("spec changed");
    assert_eq!(rejection.reason(), "SpecChanged");
}

// --- revocation ---

#[test]
fn every_token_has_its_own_id_and_a_revoked_id_is_refused_by_name() {
    let world = World::ed25519();
    let (first, second) = (world.claims(), world.claims());
    let id = first.jti.clone().expect("a token id");
    assert_ne!(first.jti, second.jti, "ids are random");
    let token = world.signed(&first);
    let list = crate::approval::Revocations::parse(&format!("# leaked\n{id}\n"));
    let revoking = world.verifier.clone().with_revocations(crate::reload::Reloading::fixed(list));
    let rejection = revoking.verify(&token, &world.target(), now()).expect_err("revoked");
    assert_eq!(rejection, Rejection::Revoked { token_id: id.clone() });
    assert_eq!(rejection.to_string(), format!("it was revoked (token id {id}); ask an approver for a new approval"));
    assert!(revoking.verify(&world.signed(&second), &world.target(), now()).is_ok(), "another id is not revoked");
    assert!(world.check(&token).is_ok(), "a verifier without the list accepts it");
}
