//! OIDC discovery for the auth API's JWTs: the issuer's
//! `/.well-known/openid-configuration` names its `jwks_uri`, whose key set Berth
//! fetches at start (in the background, retrying), again every `refresh_every`, and when a token names a `kid` it
//! does not know (at most once per [`MIN_UNKNOWN_KID_REFRESH`], so forged kids cannot
//! make Berth hammer the IdP). An IdP's key rotation then needs nothing from the
//! platform team. A failed refresh keeps the keys Berth has and logs a warning.
//!
//! Only `https` is spoken (to the issuer and to `jwks_uri`), trusting the system's
//! roots or the CA file given; the discovery document's `issuer` must equal the
//! configured issuer exactly, as OIDC discovery requires, and tokens' `iss` must too.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError, RwLock, Weak},
    time::{Duration, Instant},
};

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;

use super::{
    AuthConfigError,
    jwks::{Strictness, parse_jwks},
    keys::VerificationKey,
};

/// Fewest time between two refreshes that unknown kids ask for.
pub const MIN_UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(30);
/// Longest one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest document read (a discovery document or key set is a few KiB).
const MAX_DOCUMENT: usize = 1024 * 1024;

/// Where the IdP is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The issuer URL, exactly as tokens' `iss` says it (`https://…`).
    pub issuer: String,
    /// CA (PEM) to trust for the issuer and its `jwks_uri`; the system's roots if `None`.
    pub ca_file: Option<PathBuf>,
    /// How often the key set is fetched again.
    pub refresh_every: Duration,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The IdP's current signing keys.
pub struct OidcKeys {
    config: OidcConfig,
    client: HttpsClient,
    /// Where the key set is, once discovery answered.
    jwks_uri: RwLock<Option<String>>,
    keys: RwLock<Arc<Vec<VerificationKey>>>,
    /// When an unknown kid last asked for a refresh.
    asked: Mutex<Option<Instant>>,
    /// One refresh at a time, so an older key set never lands after a newer one.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OidcKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcKeys").field("issuer", &self.config.issuer).field("keys", &self.current().len()).finish()
    }
}

/// How soon to try again while the issuer has never answered.
const RETRY_UNTIL_DISCOVERED: Duration = Duration::from_secs(10);

impl OidcKeys {
    /// Checks the settings (an https issuer, a readable CA file) and starts fetching
    /// the keys in the background: an IdP that is down when Berth starts must not stop
    /// the operator, as it does not stop the apiserver; JWTs are refused (401) until
    /// the keys arrive, and every failure is logged.
    pub fn start(config: OidcConfig) -> Result<Arc<Self>, AuthConfigError> {
        let fail = |reason: String| AuthConfigError::Oidc { issuer: config.issuer.clone(), reason };
        if !config.issuer.starts_with("https://") {
            return Err(fail("the issuer must be an https:// URL".to_owned()));
        }
        let client = https_client(&config).map_err(fail)?;
        let keys = Arc::new(Self {
            config,
            client,
            jwks_uri: RwLock::new(None),
            keys: RwLock::new(Arc::new(Vec::new())),
            asked: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        });
        keys.spawn_refresh();
        Ok(keys)
    }

    /// The issuer tokens must name.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub(super) fn current(&self) -> Arc<Vec<VerificationKey>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Discovers the key set's address if not known yet, then fetches the keys; on
    /// failure keeps the keys in use and says why.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _one_at_a_time = self.refreshing.lock().await;
        let known = self.jwks_uri.read().unwrap_or_else(PoisonError::into_inner).clone();
        let jwks_uri = match known {
            Some(uri) => uri,
            None => {
                let uri = discover(&self.client, &self.config.issuer).await?;
                *self.jwks_uri.write().unwrap_or_else(PoisonError::into_inner) = Some(uri.clone());
                uri
            }
        };
        let keys = match fetch_keys(&self.client, &jwks_uri).await {
            Ok(keys) => keys,
            Err(reason) => {
                // The IdP may have moved its key set: ask discovery again next time.
                *self.jwks_uri.write().unwrap_or_else(PoisonError::into_inner) = None;
                return Err(reason);
            }
        };
        let count = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(count)
    }

    /// A refresh for a token naming a kid Berth does not know, unless one was asked
    /// for less than [`MIN_UNKNOWN_KID_REFRESH`] ago; whether the keys were fetched.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        {
            let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
            if asked.is_some_and(|at| at.elapsed() < MIN_UNKNOWN_KID_REFRESH) {
                return false;
            }
            *asked = Some(Instant::now());
        }
        match self.refresh().await {
            Ok(_) => true,
            Err(reason) => {
                tracing::warn!(issuer = %self.config.issuer, reason, "cannot refresh the OIDC signing keys");
                false
            }
        }
    }

    /// Fetches now, again every [`RETRY_UNTIL_DISCOVERED`] until that works, then
    /// every `refresh_every`, until the keys are dropped.
    fn spawn_refresh(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.config.refresh_every;
        tokio::spawn(async move {
            let mut fetched = false;
            loop {
                let Some(keys) = weak.upgrade() else { return };
                match keys.refresh().await {
                    Ok(count) => {
                        if !fetched {
                            tracing::info!(issuer = %keys.config.issuer, keys = count, "fetched the OIDC issuer's signing keys");
                        }
                        fetched = true;
                    }
                    Err(reason) => tracing::warn!(
                        issuer = %keys.config.issuer,
                        reason,
                        "cannot fetch the OIDC signing keys; keeping those in use"
                    ),
                }
                drop(keys);
                tokio::time::sleep(if fetched { every } else { RETRY_UNTIL_DISCOVERED }).await;
            }
        });
    }
}

/// The `jwks_uri` of `issuer`'s discovery document, which must name `issuer` exactly.
async fn discover(client: &HttpsClient, issuer: &str) -> Result<String, String> {
    let discovery = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let document = fetch(client, &discovery).await?;
    let document: Value =
        serde_json::from_slice(&document).map_err(|_| format!("{discovery} is not a JSON discovery document"))?;
    if document["issuer"].as_str() != Some(issuer) {
        return Err(format!(
            "{discovery} names issuer {:?}; it must be exactly the configured one",
            document["issuer"].as_str().unwrap_or_default()
        ));
    }
    match document["jwks_uri"].as_str() {
        Some(uri) if uri.starts_with("https://") => Ok(uri.to_owned()),
        _ => Err(format!("{discovery} names no https jwks_uri")),
    }
}

/// An https-only client trusting the CA file, or the system's roots.
fn https_client(config: &OidcConfig) -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate to trust (give a CA file, or install the system's roots)".to_owned());
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// The body of `GET url` (200 only), within [`FETCH_TIMEOUT`] and [`MAX_DOCUMENT`].
async fn fetch(client: &HttpsClient, url: &str) -> Result<Bytes, String> {
    let uri: hyper::Uri = url.parse().map_err(|_| format!("{url} is not a URL"))?;
    let get = async {
        let response = client.get(uri).await.map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        Limited::new(response.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| format!("GET {url}: {e}"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, get).await.map_err(|_| format!("GET {url}: no answer within 10 s"))?
}

async fn fetch_keys(client: &HttpsClient, jwks_uri: &str) -> Result<Vec<VerificationKey>, String> {
    let raw = fetch(client, jwks_uri).await?;
    parse_jwks(&raw, jwks_uri, Strictness::SkipBroken)
        .map_err(|reason| format!("the key set at {jwks_uri} is not usable: {reason}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{Router, extract::State, routing::get};
    use jsonwebtoken::{
        Algorithm, DecodingKey, EncodingKey, Header,
        jwk::{Jwk, JwkSet, PublicKeyUse},
    };
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::auth::{AuthError, BearerConfig, BearerVerifier};

    /// A P-256 key: what signs tokens, and its JWK named `kid`.
    fn key(kid: &str) -> (EncodingKey, Jwk) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let public = DecodingKey::from_ec_pem(pair.public_key_pem().as_bytes()).expect("public");
        let mut jwk = Jwk::from_decoding_key(&public, Some(Algorithm::ES256)).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        (EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("signer"), jwk)
    }

    fn token(signer: &EncodingKey, kid: &str, issuer: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        let claims = serde_json::json!({"sub": "bob", "aud": "berth", "iss": issuer,
            "exp": Timestamp::now().as_second() + 600, "groups": ["platform-approvers"]});
        jsonwebtoken::encode(&header, &claims, signer).expect("token")
    }

    /// The IdP: `/.well-known/openid-configuration` naming `named_issuer`, and the key
    /// set `jwks` holds (swappable).
    #[derive(Clone)]
    struct Idp {
        named_issuer: Arc<RwLock<String>>,
        jwks: Arc<RwLock<String>>,
    }

    async fn discovery(State(idp): State<Idp>) -> axum::Json<Value> {
        let issuer = idp.named_issuer.read().expect("lock").clone();
        axum::Json(serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")}))
    }

    async fn keys(State(idp): State<Idp>) -> String {
        idp.jwks.read().expect("lock").clone()
    }

    /// Serves `idp` over https on loopback; its URL and the CA file to trust.
    async fn serve_idp(idp: Idp, dir: &std::path::Path) -> String {
        let certs = crate::cli::dev::self_signed(&["127.0.0.1"]).expect("certificate");
        let files = crate::webhook::tls::TlsFiles::in_dir(dir);
        std::fs::write(&files.cert, &certs.cert_pem).expect("cert");
        std::fs::write(&files.key, &certs.key_pem).expect("key");
        std::fs::write(dir.join("ca.crt"), &certs.ca_pem).expect("ca");
        let reloading = crate::webhook::tls::ReloadingCertificate::load(files).expect("load");
        let config = crate::webhook::tls::server_config(reloading).expect("tls");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(keys))
            .with_state(idp);
        tokio::spawn(crate::webhook::tls::serve(listener, router, config, std::future::pending()));
        url
    }

    fn set(jwks: &[Jwk]) -> String {
        serde_json::to_string(&JwkSet { keys: jwks.to_vec() }).expect("json")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_are_discovered_refreshed_for_an_unknown_kid_at_most_so_often_and_bound_to_the_issuer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, first_jwk) = key("k1");
        let (second, second_jwk) = key("k2");
        let idp =
            Idp { named_issuer: Arc::default(), jwks: Arc::new(RwLock::new(set(std::slice::from_ref(&first_jwk)))) };
        let issuer = serve_idp(idp.clone(), dir.path()).await;
        *idp.named_issuer.write().expect("lock") = issuer.clone();
        let config = OidcConfig {
            issuer: issuer.clone(),
            ca_file: Some(dir.path().join("ca.crt")),
            refresh_every: Duration::from_secs(3600),
        };
        let oidc = OidcKeys::start(config.clone()).expect("settings");
        let bearer_config =
            BearerConfig { oidc_issuer: Some(issuer.clone()), audience: "berth".into(), ..BearerConfig::default() };
        let verifier = BearerVerifier::from_config(&bearer_config).expect("verifier").with_oidc(oidc.clone());
        let auth = |token: &str| verifier.authenticate(Some(&format!("Bearer {token}")), Timestamp::now());

        // Fetched in the background at start.
        let deadline = Instant::now() + Duration::from_secs(20);
        while auth(&token(&first, "k1", &issuer)).is_err() {
            assert!(Instant::now() < deadline, "the keys never arrived: {:?}", auth(&token(&first, "k1", &issuer)));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(auth(&token(&first, "k1", &issuer)).expect("k1").subject, "bob");
        // Another issuer's token is refused, though the key is the IdP's.
        assert_eq!(auth(&token(&first, "k1", "https://elsewhere.example")), Err(AuthError::WrongIssuer));
        // A key set with one broken key keeps the others (one odd key must not freeze it).
        let mut broken = serde_json::from_str::<Value>(&set(std::slice::from_ref(&first_jwk))).expect("json");
        broken["keys"]
            .as_array_mut()
            .expect("keys")
            .push(serde_json::json!({"kty": "oct", "kid": "shared", "k": "c2VjcmV0"}));
        *idp.jwks.write().expect("lock") = broken.to_string();
        assert_eq!(oidc.refresh().await, Ok(1), "the oct key is skipped, k1 kept");

        // The IdP rotates to k2: unknown until a refresh, which a token naming it asks for.
        *idp.jwks.write().expect("lock") = set(&[second_jwk]);
        let rotated = token(&second, "k2", &issuer);
        assert_eq!(auth(&rotated), Err(AuthError::UnknownKey));
        assert!(oidc.refresh_for_unknown_kid().await, "the first unknown kid fetches the keys");
        assert_eq!(auth(&rotated).expect("k2").subject, "bob");
        assert!(auth(&token(&first, "k1", &issuer)).is_err(), "k1 is gone with the rotation");
        // Forged kids cannot make Berth fetch again and again.
        assert!(!oidc.refresh_for_unknown_kid().await, "at most once per {MIN_UNKNOWN_KID_REFRESH:?}");

        // A discovery document naming another issuer is refused by name.
        *idp.named_issuer.write().expect("lock") = "https://evil.example".into();
        let stranger = OidcKeys::start(config).expect("settings");
        let refused = stranger.refresh().await.expect_err("another issuer");
        assert!(
            refused.contains("names issuer \"https://evil.example\"; it must be exactly the configured one"),
            "{refused}"
        );
    }

    #[test]
    fn only_an_https_issuer_is_accepted() {
        let config =
            OidcConfig { issuer: "http://idp.example".into(), ca_file: None, refresh_every: Duration::from_secs(60) };
        let refused = OidcKeys::start(config).expect_err("plain http");
        assert!(refused.to_string().contains("must be an https:// URL"), "{refused}");
    }
}
