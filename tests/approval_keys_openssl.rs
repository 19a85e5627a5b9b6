//! Approval keys and OpenSSL, both ways: the keys Berth writes (`berth
//! dev-credentials`, [`generate_ed25519`]) are read by `openssl pkey`, and the keys
//! `openssl genpkey` makes sign approvals in Berth. Needs the `openssl` command.

use std::{path::Path, process::Command};

use berth::approval::{SigningKey, VerificationKeys, generate_ed25519};

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.to_string_lossy().into_owned()
}

#[test]
fn openssl_reads_the_ed25519_keys_berth_writes_and_derives_the_same_public_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (private, public) = generate_ed25519().unwrap_or_else(|e| panic!("{e}"));
    let file = write(dir.path(), "approval-signing.pem", &private);
    let (read, text) = openssl(&["pkey", "-in", &file, "-noout", "-text"]);
    assert!(read, "openssl pkey refused Berth's key: {text}");
    assert!(text.contains("ED25519 Private-Key"), "{text}");
    let (derived, openssl_public) = openssl(&["pkey", "-in", &file, "-pubout"]);
    assert!(derived, "{openssl_public}");
    assert_eq!(openssl_public.trim(), public.trim(), "OpenSSL derives another public key");
    // And Berth itself still signs with it.
    let key = SigningKey::from_pem(private.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(key.public_key_pem().trim(), public.trim());
}

#[test]
fn keys_made_by_openssl_genpkey_sign_approvals_in_berth() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (name, args) in [
        ("ed25519.pem", vec!["genpkey", "-algorithm", "ed25519"]),
        ("p256.pem", vec!["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
    ] {
        let path = dir.path().join(name).to_string_lossy().into_owned();
        let (made, text) = openssl(&[args.as_slice(), &["-out", &path]].concat());
        assert!(made, "{text}");
        let key = SigningKey::from_pem_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_, public) = openssl(&["pkey", "-in", &path, "-pubout"]);
        let trusted = VerificationKeys::from_pems(&[public.as_bytes()]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(trusted.kids(), [key.kid().to_owned()], "{name}: OpenSSL's public key has another key id");
    }
}
