//! Certificates and keys for a throwaway control plane, made with rcgen: a CA,
//! the apiserver's serving certificate and the service-account signing key.

use std::{fs, net::IpAddr, path::Path};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

/// PEM files written into the control plane's `pki/` folder.
pub struct Pki {
    pub ca_cert: std::path::PathBuf,
    pub serving_cert: std::path::PathBuf,
    pub serving_key: std::path::PathBuf,
    pub service_account_key: std::path::PathBuf,
    pub service_account_public_key: std::path::PathBuf,
    /// The CA certificate, for kubeconfigs.
    pub ca_pem: String,
    /// A CA of its own for the certificate the apiserver presents to webhooks, so a
    /// webhook that trusts it trusts the apiserver alone, not every user and kubelet the
    /// cluster CA signs.
    pub webhook_client_ca_cert: std::path::PathBuf,
    pub webhook_client_cert: std::path::PathBuf,
    pub webhook_client_key: std::path::PathBuf,
}

/// Common name of the certificate the apiserver presents to admission webhooks.
pub const WEBHOOK_CLIENT_NAME: &str = "kube-apiserver-webhook-client";

/// Writes a fresh CA, a serving certificate for 127.0.0.1/localhost and the
/// in-cluster service names, and a service-account key into `dir`.
pub fn generate(dir: &Path) -> Result<Pki> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let (ca_cert, ca) = new_ca("berth-local-ca")?;

    let serving_key = KeyPair::generate().context("generating the serving key")?;
    let mut serving = CertificateParams::new(vec![
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
    ])
    .context("serving certificate parameters")?;
    serving.subject_alt_names.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    serving.subject_alt_names.push(SanType::IpAddress(IpAddr::from([10, 0, 0, 1])));
    serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    let serving_cert = serving.signed_by(&serving_key, &ca).context("signing the serving certificate")?;

    let service_account_key = KeyPair::generate().context("generating the service-account key")?;

    let (client_ca_cert, client_ca) = new_ca("berth-local-webhook-client-ca")?;
    let client_key = KeyPair::generate().context("generating the webhook client key")?;
    let mut client = CertificateParams::new(Vec::<String>::new()).context("webhook client parameters")?;
    client.distinguished_name.push(DnType::CommonName, WEBHOOK_CLIENT_NAME);
    client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &client_ca).context("signing the webhook client certificate")?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        service_account_key: dir.join("service-account.key"),
        service_account_public_key: dir.join("service-account.pub"),
        ca_pem: ca_cert.pem(),
        webhook_client_ca_cert: dir.join("webhook-client-ca.crt"),
        webhook_client_cert: dir.join("webhook-client.crt"),
        webhook_client_key: dir.join("webhook-client.key"),
    };
    write_private(&pki.webhook_client_ca_cert, &client_ca_cert.pem())?;
    write_private(&pki.webhook_client_cert, &client_cert.pem())?;
    write_private(&pki.webhook_client_key, &client_key.serialize_pem())?;
    write_private(&pki.ca_cert, &pki.ca_pem)?;
    write_private(&pki.serving_cert, &serving_cert.pem())?;
    write_private(&pki.serving_key, &serving_key.serialize_pem())?;
    write_private(&pki.service_account_key, &service_account_key.serialize_pem())?;
    // The apiserver reads verification keys only as public keys.
    write_private(&pki.service_account_public_key, &service_account_key.public_key_pem())?;
    Ok(pki)
}

/// A self-signed CA named `name`.
fn new_ca(name: &str) -> Result<(rcgen::Certificate, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate().context("generating a CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).with_context(|| format!("self-signing {name}"))?;
    Ok((cert, Issuer::new(params, key)))
}

/// Writes a file only its owner can read (keys and tokens live next to certificates).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}
