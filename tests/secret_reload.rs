//! Key files swapped under running verifiers, built as `berth run` builds them: the auth
//! API's public key and JWKS files, the approval verify-key folder and signing key. (The
//! HS256 secret and the signing key are also swapped under a real `berth run` in the
//! e2e suite `secret_reload`; the GitOps token in `gitops::credentials`' tests.)

use std::{path::Path, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use berth::auth::{BearerConfig, BearerVerifier};
use berth::webhook::WebhookArgs;
use clap::Parser;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use k8s_openapi::jiff::Timestamp;

fn swap(path: &Path, content: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, content).expect("write the new file");
    std::fs::rename(&staged, path).expect("swap it in");
}

/// A P-256 key: its signing key and public PEM.
fn p256() -> (EncodingKey, String, rcgen::KeyPair) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("encoding key");
    (signing, pair.public_key_pem(), pair)
}

fn jwks(kid: &str, pair: &rcgen::KeyPair) -> String {
    use rcgen::PublicKeyData;
    let point = pair.subject_public_key_info();
    // The uncompressed point ends the SPKI: 0x04 || x || y.
    let xy = &point[point.len() - 64..];
    let (x, y) = (URL_SAFE_NO_PAD.encode(&xy[..32]), URL_SAFE_NO_PAD.encode(&xy[32..]));
    format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"{kid}","use":"sig","x":"{x}","y":"{y}"}}]}}"#)
}

fn token(key: &EncodingKey, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let claims = serde_json::json!({"sub": "bob", "aud": "berth", "exp": Timestamp::now().as_second() + 600});
    format!("Bearer {}", jsonwebtoken::encode(&header, &claims, key).expect("sign"))
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn public_key_and_jwks_files_rotate_and_a_broken_one_keeps_the_last_good_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem_file, jwks_file) = (dir.path().join("key.pem"), dir.path().join("jwks.json"));
    let ((a, a_pem, _), (b, b_pem, _)) = (p256(), p256());
    let ((j1, _, j1_pair), (j2, _, j2_pair)) = (p256(), p256());
    std::fs::write(&pem_file, &a_pem).expect("write");
    std::fs::write(&jwks_file, jwks("j1", &j1_pair)).expect("write");
    let config = BearerConfig {
        public_key_files: vec![pem_file.clone()],
        jwks_file: Some(jwks_file.clone()),
        audience: "berth".into(),
        ..Default::default()
    };
    let verifier = BearerVerifier::from_config(&config).expect("verifier");
    verifier.watch(Duration::from_millis(20));
    let accepts = |t: &str| verifier.authenticate(Some(t), Timestamp::now()).is_ok();
    let (token_a, token_b) = (token(&a, None), token(&b, None));
    let (token_j1, token_j2) = (token(&j1, Some("j1")), token(&j2, Some("j2")));
    assert!(accepts(&token_a) && accepts(&token_j1) && !accepts(&token_b) && !accepts(&token_j2));

    swap(&pem_file, &b_pem);
    eventually("the new public key", || accepts(&token_b) && !accepts(&token_a)).await;
    swap(&jwks_file, &jwks("j2", &j2_pair));
    eventually("the new JWKS", || accepts(&token_j2) && !accepts(&token_j1)).await;

    // Half-written files: the keys in use stay.
    swap(&jwks_file, r#"{"keys":[{"kty":"EC""#);
    swap(&pem_file, "-----BEGIN PUBLIC KEY-----\n");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(accepts(&token_b) && accepts(&token_j2));
}

#[derive(Parser)]
struct Run {
    #[command(flatten)]
    webhook: WebhookArgs,
}

#[tokio::test]
async fn approval_keys_rotate_under_the_verifier_and_issuer_berth_run_builds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keys, signing) = (dir.path().join("verify"), dir.path().join("signing.pem"));
    std::fs::create_dir(&keys).expect("folder");
    let (first, first_public) = berth::approval::generate_ed25519().expect("key");
    let (second, second_public) = berth::approval::generate_ed25519().expect("key");
    let kid = |private: &str| berth::approval::SigningKey::from_pem(private.as_bytes()).expect("key").kid().to_owned();
    std::fs::write(&signing, &first).expect("write");
    std::fs::write(keys.join("first.pem"), &first_public).expect("write");
    let args = Run::parse_from([
        "berth",
        "--approval-signing-key-file",
        &signing.display().to_string(),
        "--approval-verify-keys",
        &keys.display().to_string(),
    ]);
    let issuer = args.webhook.issuer().expect("issuer").expect("configured");
    let verifier = args.webhook.verifier().expect("verifier").expect("configured");
    assert_eq!((issuer.kid(), verifier.keys().kids()), (kid(&first), vec![kid(&first)]));

    // Rotation as documented: trust the new key first, then sign with it.
    std::fs::write(keys.join("second.pem"), &second_public).expect("write");
    let mut both = vec![kid(&first), kid(&second)];
    both.sort();
    eventually("the new verification key", || verifier.keys().kids() == both).await;
    swap(&signing, &second);
    eventually("the new signing key", || issuer.kid() == kid(&second)).await;

    // A broken signing key file keeps the key in use.
    swap(&signing, "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(issuer.kid(), kid(&second));
}
