//! Flags of `berth run` for the webhook, approvals and the auth API, and what they
//! build. Every key and secret comes from a file; none is ever printed.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};

use super::{
    metrics::WebhookMetrics,
    rate_limit::ApprovalRateLimit,
    server::router,
    state::WebhookState,
    tls::{self, ReloadingCertificate, TlsFiles},
};
use crate::{
    api::GoDuration,
    approval::{Issuer, KeyError, SigningKey, VerificationKeys, Verifier},
    auth::{AuthConfigError, BearerConfig, BearerVerifier},
    index::Index,
};

/// Issuer every approval names (`iss`) unless configured otherwise.
pub const DEFAULT_APPROVAL_ISSUER: &str = "berth";
/// Audience of approvals (`aud`).
pub const DEFAULT_APPROVAL_AUDIENCE: &str = "berth.dev/approvals";

/// Webhook, approval and auth settings of `berth run`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// HTTPS address of the admission webhook and the auth API.
    #[arg(long, env = "BERTH_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub webhook_listen: SocketAddr,
    /// Serving certificate (PEM, may be a chain); the webhook runs when it is set.
    /// Reloaded when it changes on disk.
    #[arg(long, env = "BERTH_WEBHOOK_CERT_FILE", requires = "webhook_key_file")]
    pub webhook_cert_file: Option<PathBuf>,
    /// The serving certificate's private key (PEM).
    #[arg(long, env = "BERTH_WEBHOOK_KEY_FILE", requires = "webhook_cert_file")]
    pub webhook_key_file: Option<PathBuf>,
    /// Private key approvals are signed with (PKCS#8 PEM, Ed25519 or P-256); enables
    /// `POST /v1/approvals`.
    #[arg(long, env = "BERTH_APPROVAL_SIGNING_KEY_FILE")]
    pub approval_signing_key_file: Option<PathBuf>,
    /// Keys approvals are verified with: PEM files or folders of them, comma-separated.
    /// Several keys let keys rotate. Defaults to the signing key's public half.
    #[arg(long, env = "BERTH_APPROVAL_VERIFY_KEYS", value_delimiter = ',')]
    pub approval_verify_keys: Vec<PathBuf>,
    /// `iss` of approvals.
    #[arg(long, env = "BERTH_APPROVAL_ISSUER", default_value = DEFAULT_APPROVAL_ISSUER)]
    pub approval_issuer: String,
    /// `aud` of approvals.
    #[arg(long, env = "BERTH_APPROVAL_AUDIENCE", default_value = DEFAULT_APPROVAL_AUDIENCE)]
    pub approval_audience: String,
    /// Approvals one caller may ask this replica for per minute (`POST /v1/approvals`,
    /// in bursts of up to as many); beyond it the auth API answers 429 with
    /// `Retry-After`.
    #[arg(long, env = "BERTH_APPROVAL_RATE_PER_MINUTE", default_value = "30")]
    pub approval_rate_per_minute: std::num::NonZeroU32,
    /// How long an approval stays valid for creating the request, e.g. `24h`.
    #[arg(long, env = "BERTH_APPROVAL_LIFETIME", default_value = "24h")]
    pub approval_lifetime: GoDuration,
    /// HS256 shared secret for bearer tokens of the auth API (local development).
    #[arg(long, env = "BERTH_AUTH_HS256_SECRET_FILE")]
    pub auth_hs256_secret_file: Option<PathBuf>,
    /// RS256/ES256 public keys (PEM) for bearer tokens, comma-separated.
    #[arg(long, env = "BERTH_AUTH_PUBLIC_KEY_FILES", value_delimiter = ',')]
    pub auth_public_key_files: Vec<PathBuf>,
    /// JWKS file of the identity provider, for bearer tokens.
    #[arg(long, env = "BERTH_AUTH_JWKS_FILE")]
    pub auth_jwks_file: Option<PathBuf>,
    /// Required `iss` of bearer tokens.
    #[arg(long, env = "BERTH_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// Required `aud` of bearer tokens.
    #[arg(long, env = "BERTH_AUTH_AUDIENCE", default_value = "berth")]
    pub auth_audience: String,
}

/// A setting that cannot be used. Names the flag and file, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("approval keys: {0}")]
    Keys(#[from] KeyError),
    #[error("auth API: {0}")]
    Auth(#[from] AuthConfigError),
    #[error("--approval-lifetime: {0}")]
    Lifetime(String),
    #[error("webhook TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot register webhook metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl WebhookArgs {
    /// The approval signer, when a signing key is configured.
    pub fn issuer(&self) -> Result<Option<Issuer>, SettingsError> {
        let Some(path) = &self.approval_signing_key_file else {
            return Ok(None);
        };
        let lifetime = self.approval_lifetime.parse().map_err(|e| SettingsError::Lifetime(e.to_string()))?;
        let key = SigningKey::from_pem_file(path)?;
        Ok(Some(Issuer::new(key, self.approval_issuer.clone(), self.approval_audience.clone(), lifetime)))
    }

    /// The approval verifier: the configured keys, else the signing key's public half;
    /// `None` when neither is configured (then no approval class is provisioned).
    pub fn verifier(&self) -> Result<Option<Verifier>, SettingsError> {
        let keys = if !self.approval_verify_keys.is_empty() {
            let mut pems = Vec::new();
            for path in &self.approval_verify_keys {
                pems.extend(pem_files(path)?);
            }
            VerificationKeys::from_pem_files(&pems)?
        } else if let Some(path) = &self.approval_signing_key_file {
            let key = SigningKey::from_pem_file(path)?;
            VerificationKeys::from(&key)
        } else {
            return Ok(None);
        };
        Ok(Some(Verifier::new(keys, self.approval_issuer.clone(), self.approval_audience.clone())))
    }

    /// The auth API's caller check, when any key source is configured.
    pub fn bearer(&self) -> Result<Option<BearerVerifier>, SettingsError> {
        if self.auth_hs256_secret_file.is_none()
            && self.auth_public_key_files.is_empty()
            && self.auth_jwks_file.is_none()
        {
            return Ok(None);
        }
        let config = BearerConfig {
            hs256_secret_file: self.auth_hs256_secret_file.clone(),
            public_key_files: self.auth_public_key_files.clone(),
            jwks_file: self.auth_jwks_file.clone(),
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
        };
        Ok(Some(BearerVerifier::from_config(&config)?))
    }

    /// The serving certificate files, when the webhook is enabled.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        match (&self.webhook_cert_file, &self.webhook_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }
}

/// `path` itself, or the `*.pem` files in it when it is a folder (a mounted Secret).
fn pem_files(path: &std::path::Path) -> Result<Vec<PathBuf>, SettingsError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let unreadable = |source| KeyError::Read { path: path.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(unreadable)? {
        let file = entry.map_err(unreadable)?.path();
        if file.extension().is_some_and(|e| e == "pem") {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Everything [`start`] needs besides the flags.
pub struct Start {
    /// What admission reads about the cluster.
    pub index: Arc<Index>,
    pub verifier: Option<Arc<Verifier>>,
    pub registry: prometheus::Registry,
}

/// Starts the webhook server when TLS files are configured: caches first (decisions
/// need them), then the HTTPS listener. Returns `None` when the webhook is off.
pub async fn start(
    args: &WebhookArgs,
    start: Start,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<JoinHandle<std::io::Result<()>>>, SettingsError> {
    let Some(files) = args.tls_files() else {
        return Ok(None);
    };
    let certificate = ReloadingCertificate::load(files)?;
    let _watch = certificate.spawn_watch(Duration::from_secs(10));
    let config = tls::server_config(certificate.clone())?;
    let index = start.index;
    let state = WebhookState {
        index: index.clone(),
        verifier: start.verifier,
        issuer: args.issuer()?.map(Arc::new),
        bearer: args.bearer()?.map(Arc::new),
        metrics: Some(WebhookMetrics::register(&start.registry)?),
        approval_limit: Some(Arc::new(ApprovalRateLimit::per_minute(args.approval_rate_per_minute))),
    };
    if state.issuer.is_some() != state.bearer.is_some() {
        tracing::warn!(
            "POST /v1/approvals needs both an approval signing key and caller authentication; it answers 503"
        );
    }
    let listener = TcpListener::bind(args.webhook_listen)
        .await
        .map_err(|source| SettingsError::Listen { addr: args.webhook_listen, source })?;
    tracing::info!(addr = %args.webhook_listen, certificate = %certificate.fingerprint(), "admission webhook listening");
    let app = router(state);
    Ok(Some(tokio::spawn(async move {
        // Decisions before the index holds its first lists would refuse valid requests.
        index.ready().await;
        tls::serve(listener, app, config, shutdown).await
    })))
}
