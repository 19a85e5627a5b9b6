//! `berth dev-credentials`: everything a local Berth needs to run its webhook and
//! approvals, written to one folder — a CA and serving certificate, an approval
//! signing key and an HS256 secret for auth API tokens. For laptops and CI only;
//! production gets these from cert-manager and a secret store. [`self_signed`] mints
//! the CA and serving certificate (tests use it too).

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

use crate::approval::generate_ed25519;

/// Flags of `berth dev-credentials`.
#[derive(Args)]
pub struct DevCredentialsArgs {
    /// Folder to write into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Host names or IPs the webhook is reached at.
    #[arg(long = "host", default_value = "127.0.0.1")]
    hosts: Vec<String>,
}

/// Writes the credentials and says where.
pub fn dev_credentials(args: &DevCredentialsArgs) -> Result<(), String> {
    let hosts: Vec<&str> = args.hosts.iter().map(String::as_str).collect();
    let files = write_dev_credentials(&args.out, &hosts)?;
    eprintln!(
        "wrote {}, {}, {}, {} and {}",
        files.ca.display(),
        files.cert.display(),
        files.key.display(),
        files.approval_signing_key.display(),
        files.auth_secret.display()
    );
    Ok(())
}

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
    let tls = self_signed(hosts).map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
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

/// A throwaway CA and a serving certificate signed by it, all PEM.
#[derive(Clone)]
pub struct SelfSigned {
    /// The CA certificate: what clients trust (a webhook configuration's `caBundle`).
    pub ca_pem: String,
    /// The serving certificate (leaf only): the webhook's `tls.crt`.
    pub cert_pem: String,
    /// The serving certificate's PKCS#8 private key: the webhook's `tls.key`.
    pub key_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A new CA (ECDSA P-256) and a serving certificate signed by it for `hosts`: IP literals
/// (`127.0.0.1`, `::1`) become IP SANs, anything else a DNS SAN (for a webhook Service,
/// `<service>.<namespace>.svc`). The first host is also the subject's common name. `hosts`
/// should not be empty: clients check the SANs.
///
/// For tests and local setups only; production certificates come from cert-manager or a Secret.
pub fn self_signed(hosts: &[&str]) -> Result<SelfSigned, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "berth webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(hosts.iter().map(|host| (*host).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, hosts.first().copied().unwrap_or("berth webhook"));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    Ok(SelfSigned { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}
