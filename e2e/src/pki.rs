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
}

/// Writes a fresh CA, a serving certificate for 127.0.0.1/localhost and the
/// in-cluster service names, and a service-account key into `dir`.
pub fn generate(dir: &Path) -> Result<Pki> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.distinguished_name.push(DnType::CommonName, "berth-local-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing the CA")?;
    let ca = Issuer::new(ca_params, ca_key);

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

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        service_account_key: dir.join("service-account.key"),
        service_account_public_key: dir.join("service-account.pub"),
        ca_pem: ca_cert.pem(),
    };
    write_private(&pki.ca_cert, &pki.ca_pem)?;
    write_private(&pki.serving_cert, &serving_cert.pem())?;
    write_private(&pki.serving_key, &serving_key.serialize_pem())?;
    write_private(&pki.service_account_key, &service_account_key.serialize_pem())?;
    // The apiserver reads verification keys only as public keys.
    write_private(&pki.service_account_public_key, &service_account_key.public_key_pem())?;
    Ok(pki)
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
