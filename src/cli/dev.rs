//! `berth dev-credentials`: everything a local Berth needs to run its webhook and
//! approvals, written to one folder — a CA and serving certificate, an approval
//! signing key and an HS256 secret for auth API tokens. For laptops and CI only;
//! production gets these from cert-manager and a secret store.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::{approval::generate_ed25519, webhook::tls::self_signed};

/// The files written, by purpose.
#[derive(Clone, Debug)]
pub struct DevCredentials {
    /// CA that signed the serving certificate: the webhook configurations' caBundle.
    pub ca: PathBuf,
    /// Serving certificate and key of the webhook.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Private key approvals are signed with.
    pub approval_signing_key: PathBuf,
    /// Shared secret auth API tokens are signed with (HS256).
    pub auth_secret: PathBuf,
}

/// Writes `contents` readable by the owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates the credentials in `dir` for a webhook reached at `hosts`.
pub fn write_dev_credentials(dir: &Path, hosts: &[&str]) -> Result<DevCredentials, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tls = self_signed(hosts).map_err(|e| e.to_string())?;
    let (signing_key, _public) = generate_ed25519().map_err(|e| e.to_string())?;
    // A fresh private key is 32 random bytes from the OS; its hash is as random and
    // saves a dependency on a random number crate for this one secret.
    let (throwaway, _) = generate_ed25519().map_err(|e| e.to_string())?;
    let secret: String = Sha256::digest(throwaway.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let files = DevCredentials {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        approval_signing_key: dir.join("approval-signing.pem"),
        auth_secret: dir.join("auth-hs256.secret"),
    };
    std::fs::write(&files.ca, &tls.ca_pem).map_err(|e| format!("cannot write {}: {e}", files.ca.display()))?;
    std::fs::write(&files.cert, &tls.cert_pem).map_err(|e| format!("cannot write {}: {e}", files.cert.display()))?;
    write_private(&files.key, tls.key_pem.as_bytes())?;
    write_private(&files.approval_signing_key, signing_key.as_bytes())?;
    write_private(&files.auth_secret, secret.as_bytes())?;
    Ok(files)
}
