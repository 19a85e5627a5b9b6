//! Admission and the auth API on listeners of their own, as `berth run` serves them:
//! each port answers its own paths and 404s the other's, so a NetworkPolicy (or a
//! Service) can expose one without the other.

use berth::cli::https::{Connection, Endpoint, client_config};

use super::*;

/// The status of `POST path` (an empty JSON object) at `url`, presenting the
/// apiserver's webhook client certificate (as the apiserver does) when `as_apiserver`.
async fn try_post(setup: &WebhookSetup, url: &str, path: &str, as_apiserver: bool) -> Result<u16, String> {
    let ca = std::fs::read(setup.ca()).expect("the CA");
    let tls = if as_apiserver { apiserver_tls(&ca) } else { client_config(Some(&ca)).expect("client TLS") };
    let endpoint = Endpoint::parse(url).expect("an https URL");
    let mut connection = Connection::open(&endpoint, tls).await.map_err(|e| e.to_string())?;
    let response = connection.post_json(path, "{}".into(), None).await.map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

async fn post(setup: &WebhookSetup, url: &str, path: &str) -> u16 {
    try_post(setup, url, path, true).await.unwrap_or_else(|e| panic!("{url}{path}: {e}"))
}

/// Client TLS trusting `ca`, with the certificate the control plane's apiserver
/// presents to webhooks (its admission configuration names it).
fn apiserver_tls(ca: &[u8]) -> std::sync::Arc<rustls::ClientConfig> {
    let pki = cluster().info.dir.join("pki");
    let read = |name: &str| std::fs::read(pki.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let certs =
        rustls_pemfile::certs(&mut &read("webhook-client.crt")[..]).collect::<Result<Vec<_>, _>>().expect("certs");
    let key = rustls_pemfile::private_key(&mut &read("webhook-client.key")[..]).expect("key").expect("a key");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(cert.expect("CA")).expect("add CA");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .expect("client identity");
    std::sync::Arc::new(config)
}

const ADMISSION: [&str; 3] = ["/validate/environmentrequests", "/validate/tenants", "/mutate/environmentrequests"];

#[tokio::test]
async fn the_admission_port_and_the_auth_port_each_serve_only_their_own_paths() {
    let setup = berth().await;
    assert_ne!(setup.url, setup.auth_url, "two listeners");
    for path in ADMISSION {
        // Not a review: 400 from the admission port, which serves it.
        assert_eq!(post(setup, &setup.url, path).await, 400, "admission port, {path}");
        // A forged review at the auth port finds nothing there.
        assert_eq!(post(setup, &setup.auth_url, path).await, 404, "auth port, {path}");
    }
    assert_eq!(post(setup, &setup.url, "/v1/approvals").await, 404, "admission port, /v1/approvals");
    // No bearer token: refused, by the auth API that serves it.
    assert_eq!(post(setup, &setup.auth_url, "/v1/approvals").await, 401, "auth port, /v1/approvals");
}

/// With `BERTH_WEBHOOK_CLIENT_CA_FILE` the admission port serves only the apiserver
/// (its webhook client certificate): anyone else cannot even post a made-up review,
/// while the auth API, which `berth approve` calls without a certificate, is open.
#[tokio::test]
async fn only_the_apiserver_reaches_the_admission_port_and_anyone_the_auth_port() {
    let setup = berth().await;
    assert!(setup.client_ca.is_some(), "this suite's Berth requires the apiserver's certificate");
    for path in ADMISSION {
        let refused = try_post(setup, &setup.url, path, false).await;
        assert!(refused.is_err(), "{path} without a client certificate: {refused:?}");
    }
    assert_eq!(try_post(setup, &setup.auth_url, "/v1/approvals", false).await, Ok(401), "the auth API");
    // And the apiserver itself gets through: a dry run is decided by the webhook.
    let out = cluster()
        .kubectl("admin", &["apply", "--dry-run=server", "-f", "-"], Some(&tenant_yaml("cert-probe", &[], "{}")))
        .await;
    assert!(out.success, "{}", out.stderr);
}
