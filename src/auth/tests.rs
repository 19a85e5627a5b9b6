#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
const SECRET: &str = "dev-secret-0123456789abcdef-0123456789";
const AUDIENCE: &str = "berth";
const ISSUER: &str = "https://idp.example.com";
const NOW: i64 = 1_800_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

/// A temporary directory for key files.
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

fn config(audience: &str) -> BearerConfig {
    BearerConfig { audience: audience.to_owned(), ..BearerConfig::default() }
}

fn secret_verifier(files: &Files) -> BearerVerifier {
    let path = files.write("secret", format!("{SECRET}\n"));
    BearerVerifier::from_config(&BearerConfig { hs256_secret_file: Some(path), ..config(AUDIENCE) }).unwrap()
}

fn pem_verifier(files: &Files, pems: &[&str], issuer: Option<&str>) -> BearerVerifier {
    let public_key_files =
        pems.iter().enumerate().map(|(i, pem)| files.write(&format!("key{i}.pem"), pem)).collect::<Vec<_>>();
    let config = BearerConfig { public_key_files, issuer: issuer.map(str::to_owned), ..config(AUDIENCE) };
    BearerVerifier::from_config(&config).unwrap()
}

fn ec_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn ec_signer(key: &rcgen::KeyPair) -> EncodingKey {
    EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap()
}

fn rsa_signer() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

fn hs_signer() -> EncodingKey {
    EncodingKey::from_secret(SECRET.as_bytes())
}

/// Claims every check accepts.
fn good_claims() -> Value {
    json!({
        "sub": "alice",
        "groups": ["platform", "oncall"],
        "roles": ["approver"],
        "aud": AUDIENCE,
        "iat": NOW - 10,
        "exp": NOW + 300,
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let header = Header { kid: kid.map(str::to_owned), ..Header::new(alg) };
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A token with a hand-written header and the given signature segment.
fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    let part = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    format!("{}.{}.{signature}", part(header), part(claims))
}

fn auth(verifier: &BearerVerifier, token: &str) -> Result<Caller, AuthError> {
    verifier.authenticate(Some(&format!("Bearer {token}")), now())
}

fn jwk(public: DecodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_decoding_key(&public, Some(alg)).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

fn jwks_verifier(files: &Files, keys: Vec<Jwk>) -> Result<BearerVerifier, AuthConfigError> {
    let path = files.write("jwks.json", serde_json::to_vec(&JwkSet { keys }).unwrap());
    BearerVerifier::from_config(&BearerConfig { jwks_file: Some(path), ..config(AUDIENCE) })
}

#[test]
fn hs256_dev_token_round_trips_to_the_caller() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    let groups = vec!["platform".to_owned(), "payments".to_owned()];
    let token = dev_token(
        SECRET.as_bytes(),
        "alice@example.com",
        &groups,
        &[Role::Approver, Role::Viewer],
        AUDIENCE,
        Duration::from_secs(600),
        now(),
    )
    .unwrap();

    let caller = auth(&verifier, &token).unwrap();
    assert_eq!(
        caller,
        Caller {
            subject: "alice@example.com".to_owned(),
            groups,
            roles: vec![Role::Approver, Role::Viewer],
            kubernetes: None,
        }
    );
    assert!(caller.has_role(Role::Requester));
    assert!(!caller.has_role(Role::Admin));

    // The scheme is case-insensitive.
    assert!(verifier.authenticate(Some(&format!("bearer {token}")), now()).is_ok());
    // The token lives exactly `lifetime` (plus leeway).
    let later = Timestamp::from_second(NOW + 600 + CLOCK_LEEWAY_SECONDS).unwrap();
    assert_eq!(verifier.authenticate(Some(&format!("Bearer {token}")), later), Err(AuthError::Expired));
}

#[test]
fn es256_token_verifies_with_a_pem_public_key() {
    let files = Files::new();
    let key = ec_key();
    let verifier = pem_verifier(&files, &[&key.public_key_pem()], None);

    let caller = auth(&verifier, &sign(Algorithm::ES256, None, &good_claims(), &ec_signer(&key))).unwrap();
    assert_eq!(caller.subject, "alice");
    assert_eq!(caller.groups, ["platform", "oncall"]);
    assert_eq!(caller.roles, [Role::Approver]);
}

#[test]
fn rs256_token_verifies_with_the_pem_fixture() {
    let files = Files::new();
    let verifier = pem_verifier(&files, &[RSA_PUBLIC], Some(ISSUER));
    let claims = with(good_claims(), "iss", json!(ISSUER));

    let caller = auth(&verifier, &sign(Algorithm::RS256, None, &claims, &rsa_signer())).unwrap();
    assert_eq!(caller.subject, "alice");
    assert!(caller.has_role(Role::Approver));
}

#[test]
fn pem_keys_are_picked_by_their_derived_kid() {
    let files = Files::new();
    let (first, second) = (ec_key(), ec_key());
    let verifier = pem_verifier(&files, &[&first.public_key_pem(), RSA_PUBLIC, &second.public_key_pem()], None);

    let derived = |der: &[u8]| URL_SAFE_NO_PAD.encode(Sha256::digest(der))[..16].to_owned();
    let first_kid = derived(&rcgen::PublicKeyData::subject_public_key_info(&first));
    let second_kid = derived(&rcgen::PublicKeyData::subject_public_key_info(&second));
    let ids = verifier.key_ids();
    assert_eq!(ids.len(), 3);
    assert_eq!((ids[0].as_str(), ids[2].as_str()), (first_kid.as_str(), second_kid.as_str()));

    // Named: checked against that key only.
    let signer = ec_signer(&second);
    assert!(auth(&verifier, &sign(Algorithm::ES256, Some(&second_kid), &good_claims(), &signer)).is_ok());
    assert_eq!(
        auth(&verifier, &sign(Algorithm::ES256, Some(&first_kid), &good_claims(), &signer)),
        Err(AuthError::BadSignature)
    );
    // Unnamed: every ES256 key is tried.
    assert!(auth(&verifier, &sign(Algorithm::ES256, None, &good_claims(), &signer)).is_ok());
    // A kid naming the RSA key pins RS256: an ES256 token naming it is refused.
    let rsa_kid = ids[1].to_owned();
    assert_eq!(
        auth(&verifier, &sign(Algorithm::ES256, Some(&rsa_kid), &good_claims(), &signer)),
        Err(AuthError::AlgorithmNotAllowed { alg: "ES256".to_owned() })
    );
}

#[test]
fn jwks_keys_verify_tokens_that_name_their_kid() {
    let files = Files::new();
    let ec = ec_key();
    let keys = vec![
        jwk(DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap(), Algorithm::RS256, "rsa-1"),
        jwk(DecodingKey::from_ec_pem(ec.public_key_pem().as_bytes()).unwrap(), Algorithm::ES256, "ec-1"),
    ];
    let verifier = jwks_verifier(&files, keys).unwrap();
    assert_eq!(verifier.key_ids(), ["rsa-1", "ec-1"]);

    assert_eq!(
        auth(&verifier, &sign(Algorithm::RS256, Some("rsa-1"), &good_claims(), &rsa_signer())).unwrap().subject,
        "alice"
    );
    assert_eq!(
        auth(&verifier, &sign(Algorithm::ES256, Some("ec-1"), &good_claims(), &ec_signer(&ec))).unwrap().subject,
        "alice"
    );

    // JWKS keys must be named.
    assert_eq!(
        auth(&verifier, &sign(Algorithm::RS256, None, &good_claims(), &rsa_signer())),
        Err(AuthError::UnknownKey)
    );
    // A kid the set does not hold.
    assert_eq!(
        auth(&verifier, &sign(Algorithm::RS256, Some("rsa-2"), &good_claims(), &rsa_signer())),
        Err(AuthError::UnknownKey)
    );
    // The right kid, the wrong key.
    assert_eq!(
        auth(&verifier, &sign(Algorithm::ES256, Some("ec-1"), &good_claims(), &ec_signer(&ec_key()))),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn jwks_skips_keys_berth_cannot_use_and_refuses_bad_ones() {
    let files = Files::new();
    let rsa = || DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();

    let mut encryption = jwk(rsa(), Algorithm::RS256, "enc");
    encryption.common.public_key_use = Some(PublicKeyUse::Encryption);
    encryption.common.key_id = None;
    let mut rs384 = jwk(rsa(), Algorithm::RS256, "rs384");
    rs384.common.key_algorithm = Some(KeyAlgorithm::RS384);
    let verifier =
        jwks_verifier(&files, vec![encryption.clone(), rs384.clone(), jwk(rsa(), Algorithm::RS256, "ok")]).unwrap();
    assert_eq!(verifier.key_ids(), ["ok"]);

    let nothing_usable = jwks_verifier(&files, vec![encryption, rs384]).unwrap_err();
    assert!(matches!(nothing_usable, AuthConfigError::BadJwks { .. }), "{nothing_usable:?}");
    assert!(nothing_usable.to_string().contains("no RS256 (RSA) or ES256 (P-256) signing key"), "{nothing_usable}");

    let mut no_kid = jwk(rsa(), Algorithm::RS256, "x");
    no_kid.common.key_id = None;
    let err = jwks_verifier(&files, vec![no_kid]).unwrap_err();
    assert!(err.to_string().contains("key #0 has no kid"), "{err}");

    let oct = Jwk::from_decoding_key(&DecodingKey::from_secret(SECRET.as_bytes()), Some(Algorithm::HS256)).unwrap();
    let oct =
        Jwk { common: jsonwebtoken::jwk::CommonParameters { key_id: Some("hmac".to_owned()), ..oct.common }, ..oct };
    let err = jwks_verifier(&files, vec![oct]).unwrap_err();
    assert!(err.to_string().contains("kty oct"), "{err}");
    assert!(!err.to_string().contains(&URL_SAFE_NO_PAD.encode(SECRET)), "{err}");

    let duplicate = jwks_verifier(&files, vec![jwk(rsa(), Algorithm::RS256, "a"), jwk(rsa(), Algorithm::RS256, "a")]);
    assert!(duplicate.unwrap_err().to_string().contains("more than once"));

    let path = files.write("broken.json", r#"{"keys": "super-secret-looking-content"}"#);
    let err =
        BearerVerifier::from_config(&BearerConfig { jwks_file: Some(path.clone()), ..config(AUDIENCE) }).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()) && message.contains("not a JWKS document"), "{message}");
    assert!(!message.contains("super-secret"), "{message}");
}

#[test]
fn missing_or_foreign_authorization_is_missing_bearer() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    for header in [None, Some(""), Some("Bearer"), Some("Bearer   "), Some("Basic YWxpY2U6c2VjcmV0"), Some("Token abc")]
    {
        assert_eq!(verifier.authenticate(header, now()), Err(AuthError::MissingBearer), "{header:?}");
    }
    let err = verifier.authenticate(None, now()).unwrap_err();
    assert!(err.to_string().contains("send Authorization: Bearer <token>"), "{err}");
    assert_eq!(err.www_authenticate(), r#"Bearer realm="berth""#);
}

#[test]
fn garbage_is_malformed() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    let valid = sign(Algorithm::HS256, None, &good_claims(), &hs_signer());
    let two_parts = valid.rsplit_once('.').unwrap().0.to_owned();
    for token in ["not a jwt", "%%%.%%%.%%%", "e30.e30.e30", two_parts.as_str(), &format!("{valid}.extra")] {
        let result = auth(&verifier, token);
        assert!(matches!(result, Err(AuthError::Malformed(_))), "{token}: {result:?}");
    }
    assert!(matches!(auth(&verifier, &"a".repeat(20_000)), Err(AuthError::Malformed(_))));

    // Correctly signed, but the payload is not base64url JSON claims.
    let header = valid.split('.').next().unwrap();
    for payload in ["!!!", &URL_SAFE_NO_PAD.encode("[1, 2]"), &URL_SAFE_NO_PAD.encode("not json")] {
        let message = format!("{header}.{payload}");
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &hs_signer(), Algorithm::HS256).unwrap();
        let result = auth(&verifier, &format!("{message}.{signature}"));
        assert!(matches!(result, Err(AuthError::Malformed(_))), "{payload}: {result:?}");
    }
    // Tampering is found before the payload is read.
    let bad_payload = format!("{header}.!!!.{}", valid.rsplit('.').next().unwrap());
    assert_eq!(auth(&verifier, &bad_payload), Err(AuthError::BadSignature));

    let crit = raw_token(&json!({"alg": "HS256", "crit": ["exp"], "exp": 1}), &good_claims(), "");
    assert!(matches!(auth(&verifier, &crit), Err(AuthError::Malformed(_))));
}

#[test]
fn alg_none_is_refused_by_name() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    for alg in ["none", "None", "NONE"] {
        let token = raw_token(&json!({"alg": alg, "typ": "JWT"}), &good_claims(), "");
        let err = auth(&verifier, &token).unwrap_err();
        assert_eq!(err, AuthError::AlgorithmNotAllowed { alg: "none".to_owned() });
        assert!(err.to_string().contains("alg none"), "{err}");
    }
    // Even without the trailing dot.
    let token = raw_token(&json!({"alg": "none"}), &good_claims(), "");
    let token = token.trim_end_matches('.');
    assert_eq!(auth(&verifier, token), Err(AuthError::AlgorithmNotAllowed { alg: "none".to_owned() }));
}

#[test]
fn hs256_signed_with_a_public_key_pem_is_refused() {
    let files = Files::new();
    let forged = sign(Algorithm::HS256, None, &good_claims(), &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()));

    // Only public keys configured: HS256 is not an algorithm this server verifies.
    let verifier = pem_verifier(&files, &[RSA_PUBLIC], None);
    assert_eq!(auth(&verifier, &forged), Err(AuthError::AlgorithmNotAllowed { alg: "HS256".to_owned() }));
    let named = verifier.key_ids()[0].to_owned();
    let forged_named =
        sign(Algorithm::HS256, Some(&named), &good_claims(), &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()));
    assert_eq!(auth(&verifier, &forged_named), Err(AuthError::AlgorithmNotAllowed { alg: "HS256".to_owned() }));

    // With a secret configured too, HS256 is checked against the secret only.
    let both = BearerConfig {
        hs256_secret_file: Some(files.write("secret", SECRET)),
        public_key_files: vec![files.write("rsa.pem", RSA_PUBLIC)],
        ..config(AUDIENCE)
    };
    let verifier = BearerVerifier::from_config(&both).unwrap();
    assert_eq!(auth(&verifier, &forged), Err(AuthError::BadSignature));
    // And an RS256 token cannot be checked against the secret.
    let secret_verifier = secret_verifier(&files);
    assert_eq!(
        auth(&secret_verifier, &sign(Algorithm::RS256, None, &good_claims(), &rsa_signer())),
        Err(AuthError::AlgorithmNotAllowed { alg: "RS256".to_owned() })
    );
}

#[test]
fn other_algorithms_are_refused_and_sanitised() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    let hs512 = sign(Algorithm::HS512, None, &good_claims(), &hs_signer());
    assert_eq!(auth(&verifier, &hs512), Err(AuthError::AlgorithmNotAllowed { alg: "HS512".to_owned() }));

    let weird = raw_token(&json!({"alg": "<script>alert(1)</script>"}), &good_claims(), "");
    let err = auth(&verifier, &weird).unwrap_err();
    assert_eq!(err, AuthError::AlgorithmNotAllowed { alg: "(unrecognised)".to_owned() });
}

#[test]
fn expiry_is_checked_with_leeway() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    let token = |exp: i64| sign(Algorithm::HS256, None, &with(good_claims(), "exp", json!(exp)), &hs_signer());

    assert_eq!(auth(&verifier, &token(NOW - CLOCK_LEEWAY_SECONDS - 1)), Err(AuthError::Expired));
    assert_eq!(auth(&verifier, &token(NOW - 3600)), Err(AuthError::Expired));
    assert!(auth(&verifier, &token(NOW - 30)).is_ok(), "within the leeway");

    let no_exp = sign(Algorithm::HS256, None, &without(good_claims(), "exp"), &hs_signer());
    assert!(matches!(auth(&verifier, &no_exp), Err(AuthError::Malformed(_))));
}

#[test]
fn not_before_and_issued_at_in_the_future_are_not_yet_valid() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    let token = |name: &str, at: i64| sign(Algorithm::HS256, None, &with(good_claims(), name, json!(at)), &hs_signer());

    assert_eq!(auth(&verifier, &token("nbf", NOW + 120)), Err(AuthError::NotYetValid));
    assert_eq!(auth(&verifier, &token("iat", NOW + 120)), Err(AuthError::NotYetValid));
    assert!(auth(&verifier, &token("nbf", NOW + 30)).is_ok(), "within the leeway");
    assert!(auth(&verifier, &token("nbf", NOW - 30)).is_ok());
}

#[test]
fn issuer_is_checked_when_configured() {
    let files = Files::new();
    let key = ec_key();
    let verifier = pem_verifier(&files, &[&key.public_key_pem()], Some(ISSUER));
    let token = |claims: &Value| sign(Algorithm::ES256, None, claims, &ec_signer(&key));

    assert!(auth(&verifier, &token(&with(good_claims(), "iss", json!(ISSUER)))).is_ok());
    assert_eq!(
        auth(&verifier, &token(&with(good_claims(), "iss", json!("https://evil.example")))),
        Err(AuthError::WrongIssuer)
    );
    assert_eq!(auth(&verifier, &token(&good_claims())), Err(AuthError::WrongIssuer));

    // Without a configured issuer, iss is not looked at.
    let files = Files::new();
    let open = pem_verifier(&files, &[&key.public_key_pem()], None);
    assert!(auth(&open, &token(&with(good_claims(), "iss", json!("anyone")))).is_ok());
}

#[test]
fn audience_must_contain_ours() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    let token = |claims: &Value| sign(Algorithm::HS256, None, claims, &hs_signer());

    assert_eq!(auth(&verifier, &token(&with(good_claims(), "aud", json!("grafana")))), Err(AuthError::WrongAudience));
    assert_eq!(
        auth(&verifier, &token(&with(good_claims(), "aud", json!(["grafana", "argo"])))),
        Err(AuthError::WrongAudience)
    );
    assert_eq!(auth(&verifier, &token(&without(good_claims(), "aud"))), Err(AuthError::WrongAudience));
    assert!(auth(&verifier, &token(&with(good_claims(), "aud", json!(["grafana", AUDIENCE])))).is_ok());
    assert!(matches!(auth(&verifier, &token(&with(good_claims(), "aud", json!(42)))), Err(AuthError::Malformed(_))));
}

#[test]
fn subject_is_required() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    let token = |claims: &Value| sign(Algorithm::HS256, None, claims, &hs_signer());

    assert_eq!(auth(&verifier, &token(&without(good_claims(), "sub"))), Err(AuthError::MissingSubject));
    assert_eq!(auth(&verifier, &token(&with(good_claims(), "sub", json!("")))), Err(AuthError::MissingSubject));
    assert_eq!(auth(&verifier, &token(&with(good_claims(), "sub", json!("  ")))), Err(AuthError::MissingSubject));
}

#[test]
fn claims_name_the_caller_as_the_apiserver_s_oidc_flags_would() {
    let files = Files::new();
    let path = files.write("secret", SECRET);
    let mapping = ClaimMapping {
        username_claim: "email".into(),
        username_prefix: "oidc:".into(),
        groups_claim: "teams".into(),
        groups_prefix: "oidc:".into(),
    };
    let config = BearerConfig { hs256_secret_file: Some(path), claims: mapping, ..config(AUDIENCE) };
    let verifier = BearerVerifier::from_config(&config).expect("a verifier");
    let token = |claims: &Value| sign(Algorithm::HS256, None, claims, &hs_signer());
    let claims = with(with(good_claims(), "email", json!("bob@example.com")), "teams", json!(["approvers", "sre"]));

    let caller = auth(&verifier, &token(&claims)).expect("authenticated");
    assert_eq!(caller.subject, "oidc:bob@example.com");
    assert_eq!(caller.groups, ["oidc:approvers", "oidc:sre"]);
    // One group may be a plain string, as the apiserver accepts.
    let one = auth(&verifier, &token(&with(claims.clone(), "teams", json!("approvers")))).expect("one group");
    assert_eq!(one.groups, ["oidc:approvers"]);
    // The email must be verified when the IdP says whether it is.
    assert!(auth(&verifier, &token(&with(claims.clone(), "email_verified", json!(true)))).is_ok());
    assert_eq!(
        auth(&verifier, &token(&with(claims.clone(), "email_verified", json!(false)))),
        Err(AuthError::EmailNotVerified)
    );
    // Without the username claim there is no caller, whatever `sub` says.
    assert_eq!(auth(&verifier, &token(&without(claims, "email"))), Err(AuthError::MissingSubject));

    let empty = ClaimMapping { groups_claim: " ".into(), ..ClaimMapping::default() };
    let refused = BearerVerifier::from_config(&BearerConfig { claims: empty, ..config.clone() });
    assert!(matches!(refused, Err(AuthConfigError::InvalidSetting { setting: "claims", .. })));
}

#[test]
fn unknown_signers_and_tampering_are_told_apart() {
    let files = Files::new();
    let key = ec_key();
    let verifier = pem_verifier(&files, &[&key.public_key_pem()], None);
    let stranger = ec_signer(&ec_key());

    // A kid matching no configured key: the signer is unknown.
    assert_eq!(
        auth(&verifier, &sign(Algorithm::ES256, Some("someone-else"), &good_claims(), &stranger)),
        Err(AuthError::UnknownKey)
    );
    // No kid, no configured key verifies it.
    assert_eq!(auth(&verifier, &sign(Algorithm::ES256, None, &good_claims(), &stranger)), Err(AuthError::BadSignature));

    // A genuine token whose payload was swapped.
    let genuine = sign(Algorithm::ES256, None, &good_claims(), &ec_signer(&key));
    let promoted = sign(Algorithm::ES256, None, &with(good_claims(), "roles", json!(["admin"])), &stranger);
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], promoted.split('.').nth(1).unwrap(), parts[2]);
    assert_eq!(auth(&verifier, &tampered), Err(AuthError::BadSignature));

    // HS256 with a wrong secret.
    let files = Files::new();
    let hs = secret_verifier(&files);
    let wrong = EncodingKey::from_secret(b"another-secret-0123456789abcdef-0123");
    assert_eq!(auth(&hs, &sign(Algorithm::HS256, None, &good_claims(), &wrong)), Err(AuthError::BadSignature));
    assert_eq!(auth(&hs, &sign(Algorithm::HS256, Some("k"), &good_claims(), &wrong)), Err(AuthError::BadSignature));
}

#[test]
fn roles_include_the_ones_below() {
    assert!(Role::Admin.includes(Role::Approver));
    assert!(Role::Admin.includes(Role::Viewer));
    assert!(Role::Approver.includes(Role::Requester));
    assert!(Role::Requester.includes(Role::Requester));
    assert!(!Role::Requester.includes(Role::Approver));
    assert!(!Role::Viewer.includes(Role::Requester));

    let caller = |roles: Vec<Role>| Caller { subject: "bob".to_owned(), groups: vec![], roles, kubernetes: None };
    assert!(caller(vec![Role::Admin]).has_role(Role::Approver));
    assert!(!caller(vec![Role::Requester]).has_role(Role::Approver));
    assert!(caller(vec![Role::Viewer, Role::Requester]).has_role(Role::Requester));
    assert!(!caller(vec![]).has_role(Role::Viewer));
}

#[test]
fn role_names_parse_print_and_serialize() {
    for role in Role::ALL {
        assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        assert_eq!(serde_json::to_value(role).unwrap(), json!(role.as_str()));
    }
    assert_eq!("Approver".parse::<Role>(), Ok(Role::Approver));
    let err = "owner".parse::<Role>().unwrap_err();
    assert_eq!(err.to_string(), r#"unknown role "owner"; expected viewer, requester, approver or admin"#);
    assert_eq!(serde_json::from_value::<Role>(json!("admin")).unwrap(), Role::Admin);
}

#[test]
fn unknown_roles_in_a_token_are_ignored() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    let claims =
        with(good_claims(), "roles", json!(["grafana-editor", "requester", "Requester", "superuser", "admin"]));

    let caller = auth(&verifier, &sign(Algorithm::HS256, None, &claims, &hs_signer())).unwrap();
    assert_eq!(caller.roles, [Role::Requester, Role::Admin]);

    let no_roles = auth(&verifier, &sign(Algorithm::HS256, None, &without(good_claims(), "roles"), &hs_signer()));
    assert_eq!(no_roles.unwrap().roles, []);
    let not_an_array = with(good_claims(), "roles", json!("admin"));
    assert!(matches!(
        auth(&verifier, &sign(Algorithm::HS256, None, &not_an_array, &hs_signer())),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn config_without_any_key_source_is_refused() {
    let err = BearerVerifier::from_config(&config(AUDIENCE)).unwrap_err();
    assert!(matches!(err, AuthConfigError::NoKeySource));
    assert!(err.to_string().contains("no bearer token keys configured"), "{err}");

    let files = Files::new();
    let empty_audience = BearerConfig { hs256_secret_file: Some(files.write("s", SECRET)), ..config(" ") };
    let err = BearerVerifier::from_config(&empty_audience).unwrap_err();
    assert!(matches!(err, AuthConfigError::InvalidSetting { setting: "audience", .. }), "{err:?}");
}

#[test]
fn short_secret_is_refused_after_dropping_one_newline() {
    let files = Files::new();
    let verify = |contents: &str| {
        let path = files.write("secret", contents);
        BearerVerifier::from_config(&BearerConfig { hs256_secret_file: Some(path), ..config(AUDIENCE) })
    };

    let err = verify(&format!("{}\n", "x".repeat(31))).unwrap_err();
    assert!(matches!(err, AuthConfigError::ShortSecret { len: 31, min: 32, .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("secret") && message.contains("at least 32"), "{message}");
    assert!(!message.contains(&"x".repeat(31)), "{message}");

    // 32 bytes plus the newline `echo` adds: the newline is not part of the secret.
    let secret = "y".repeat(32);
    let verifier = verify(&format!("{secret}\r\n")).unwrap();
    let token = dev_token(secret.as_bytes(), "carol", &[], &[Role::Viewer], AUDIENCE, Duration::from_secs(60), now());
    assert_eq!(auth(&verifier, &token.unwrap()).unwrap().roles, [Role::Viewer]);

    let err = verify(RSA_PUBLIC).unwrap_err();
    assert!(matches!(err, AuthConfigError::SecretIsPem { .. }), "{err:?}");
}

#[test]
fn missing_files_are_named() {
    let files = Files::new();
    let missing = files.0.path().join("nope.pem");
    for config in [
        BearerConfig { hs256_secret_file: Some(missing.clone()), ..config(AUDIENCE) },
        BearerConfig { public_key_files: vec![missing.clone()], ..config(AUDIENCE) },
        BearerConfig { jwks_file: Some(missing.clone()), ..config(AUDIENCE) },
    ] {
        let err = BearerVerifier::from_config(&config).unwrap_err();
        let AuthConfigError::Read { path, source, .. } = &err else { panic!("{err:?}") };
        assert_eq!(path, &missing);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
    }
}

#[test]
fn public_key_files_must_hold_one_rsa_or_p256_public_key() {
    let files = Files::new();
    let load = |name: &str, contents: &str| {
        let path = files.write(name, contents);
        BearerVerifier::from_config(&BearerConfig { public_key_files: vec![path], ..config(AUDIENCE) })
    };
    let reason = |result: Result<BearerVerifier, AuthConfigError>| match result {
        Err(AuthConfigError::BadPublicKey { reason, .. }) => reason,
        other => panic!("{other:?}"),
    };

    let private = reason(load("private.pem", RSA_PRIVATE));
    assert!(private.contains("private key"), "{private}");
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    assert!(reason(load("p384.pem", &p384.public_key_pem())).contains("P-256"));
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    assert!(reason(load("ed.pem", &ed.public_key_pem())).contains("RS256 and ES256"));
    assert!(reason(load("text.pem", "hello")).contains("not a PEM file"));
    let two = format!("{RSA_PUBLIC}{}", ec_key().public_key_pem());
    assert!(reason(load("two.pem", &two)).contains("more than one"));
    let truncated = RSA_PUBLIC.replace("-----END PUBLIC KEY-----", "");
    assert!(reason(load("cut.pem", &truncated)).contains("not closed"));

    let err = load("private2.pem", RSA_PRIVATE).unwrap_err().to_string();
    assert!(err.contains("private2.pem"), "{err}");
    let body_line = RSA_PRIVATE.lines().nth(1).unwrap();
    assert!(!err.contains(body_line), "{err}");
}

#[test]
fn debug_output_shows_no_secret() {
    let files = Files::new();
    let config = BearerConfig {
        hs256_secret_file: Some(files.write("secret", SECRET)),
        public_key_files: vec![files.write("rsa.pem", RSA_PUBLIC)],
        ..config(AUDIENCE)
    };
    let verifier = BearerVerifier::from_config(&config).unwrap();
    let debug = format!("{verifier:?} {config:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(
        !debug.contains(&SECRET.as_bytes()[..8].iter().map(u8::to_string).collect::<Vec<_>>().join(", ")),
        "{debug}"
    );
    assert!(debug.contains("HS256 shared secret [redacted]"), "{debug}");
    assert!(debug.contains(&format!("RS256 PEM key kid={}", verifier.key_ids()[0])), "{debug}");
}

#[test]
fn errors_are_401_with_stable_reasons_and_no_token() {
    let files = Files::new();
    let verifier = secret_verifier(&files);
    let token = sign(Algorithm::HS256, None, &with(good_claims(), "exp", json!(NOW - 3600)), &hs_signer());
    let err = auth(&verifier, &token).unwrap_err();
    assert!(!err.to_string().contains(&token) && !format!("{err:?}").contains(&token));

    let all = [
        (AuthError::MissingBearer, "missing_bearer"),
        (AuthError::Malformed("x"), "malformed"),
        (AuthError::AlgorithmNotAllowed { alg: "HS512".to_owned() }, "algorithm_not_allowed"),
        (AuthError::UnknownKey, "unknown_key"),
        (AuthError::BadSignature, "bad_signature"),
        (AuthError::Expired, "expired"),
        (AuthError::NotYetValid, "not_yet_valid"),
        (AuthError::WrongIssuer, "wrong_issuer"),
        (AuthError::WrongAudience, "wrong_audience"),
        (AuthError::MissingSubject, "missing_subject"),
        (AuthError::EmailNotVerified, "email_not_verified"),
    ];
    for (err, reason) in all {
        assert_eq!(err.reason(), reason);
        assert_eq!(err.status().as_u16(), 401);
    }
    assert_eq!(AuthError::Expired.www_authenticate(), r#"Bearer realm="berth", error="invalid_token""#);
}

#[test]
fn dev_token_refuses_what_no_verifier_would_accept() {
    let token = |secret: &[u8], subject: &str, audience: &str, lifetime: u64| {
        dev_token(secret, subject, &[], &[], audience, Duration::from_secs(lifetime), now())
    };
    assert_eq!(token(b"short", "alice", AUDIENCE, 60), Err(DevTokenError::ShortSecret { len: 5, min: 32 }));
    assert_eq!(token(SECRET.as_bytes(), " ", AUDIENCE, 60), Err(DevTokenError::EmptySubject));
    assert_eq!(token(SECRET.as_bytes(), "alice", "", 60), Err(DevTokenError::EmptyAudience));
    assert_eq!(token(SECRET.as_bytes(), "alice", AUDIENCE, 0), Err(DevTokenError::BadLifetime));
    assert_eq!(token(SECRET.as_bytes(), "alice", AUDIENCE, u64::MAX), Err(DevTokenError::BadLifetime));

    let minted = token(SECRET.as_bytes(), "alice", AUDIENCE, 60).unwrap();
    let payload = URL_SAFE_NO_PAD.decode(minted.split('.').nth(1).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims,
        json!({"sub": "alice", "groups": [], "roles": [], "aud": AUDIENCE, "iat": NOW, "exp": NOW + 60})
    );
}
