//! Flags of `berth run` for the webhook, approvals and the auth API, and what they
//! build: two HTTPS listeners, admission and the auth API, sharing one certificate. Every key and secret comes from a file; none is ever printed.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};

use super::{
    metrics::WebhookMetrics,
    rate_limit::ApprovalRateLimit,
    server::{admission_router, auth_router},
    state::WebhookState,
    tls::{self, ReloadingCertificate, TlsFiles},
};
use crate::{
    api::GoDuration,
    approval::{Issuer, KeyError, Revocations, SigningKey, VerificationKeys, Verifier},
    auth::{
        AuthConfigError, BearerConfig, BearerVerifier, ClaimMapping, KubernetesReviewer,
        oidc::{OidcConfig, OidcKeys},
    },
    index::Index,
    reload::{RELOAD_EVERY, Reloading},
};

/// Issuer every approval names (`iss`) unless configured otherwise.
pub const DEFAULT_APPROVAL_ISSUER: &str = "berth";
/// Audience of approvals (`aud`).
pub const DEFAULT_APPROVAL_AUDIENCE: &str = "berth.dev/approvals";

/// Webhook, approval and auth settings of `berth run`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// HTTPS address of the admission webhook (the apiserver calls it; `/validate`,
    /// `/mutate`).
    #[arg(long, env = "BERTH_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub webhook_listen: SocketAddr,
    /// HTTPS address of the auth API (`berth approve` calls it; `/v1/approvals`), apart
    /// from admission so that each can be exposed and policed on its own.
    #[arg(long, env = "BERTH_AUTH_LISTEN", default_value = "0.0.0.0:8444")]
    pub auth_listen: SocketAddr,
    /// Serving certificate (PEM, may be a chain) of both listeners; the webhook and the
    /// auth API run when it is set. Reloaded when it changes on disk.
    #[arg(long, env = "BERTH_WEBHOOK_CERT_FILE", requires = "webhook_key_file")]
    pub webhook_cert_file: Option<PathBuf>,
    /// The serving certificate's private key (PEM).
    #[arg(long, env = "BERTH_WEBHOOK_KEY_FILE", requires = "webhook_cert_file")]
    pub webhook_key_file: Option<PathBuf>,
    /// CA (PEM) of the client certificate the apiserver presents to webhooks (its
    /// `--admission-control-config-file`). When set, the admission listener serves
    /// only clients with a certificate it signed, so nobody else can post made-up
    /// AdmissionReviews; the auth API is not affected. Give that certificate a CA of
    /// its own: the cluster CA signs every user's and kubelet's too.
    #[arg(long, env = "BERTH_WEBHOOK_CLIENT_CA_FILE", requires = "webhook_cert_file")]
    pub webhook_client_ca_file: Option<PathBuf>,
    /// Private key approvals are signed with (PKCS#8 PEM, Ed25519 or P-256); enables
    /// `POST /v1/approvals`.
    #[arg(long, env = "BERTH_APPROVAL_SIGNING_KEY_FILE")]
    pub approval_signing_key_file: Option<PathBuf>,
    /// Keys approvals are verified with: PEM files or folders of them, comma-separated.
    /// Several keys let keys rotate. Defaults to the signing key's public half.
    #[arg(long, env = "BERTH_APPROVAL_VERIFY_KEYS", value_delimiter = ',')]
    pub approval_verify_keys: Vec<PathBuf>,
    /// Approvals revoked before they expire: a folder whose file names are the revoked
    /// token ids (the ConfigMap berth-approval-revocations, mounted), or a file with
    /// one id per line. Re-read when it changes; missing, nothing is revoked.
    #[arg(long, env = "BERTH_APPROVAL_REVOCATIONS")]
    pub approval_revocations: Option<PathBuf>,
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
    /// OIDC issuer (`https://…`, exactly as tokens' `iss`) whose signing keys Berth
    /// discovers (`/.well-known/openid-configuration`) and fetches for bearer JWTs,
    /// again every `--auth-oidc-refresh-seconds` and when a token names an unknown kid
    /// (at most every 30 s). Tokens must name it as `iss`; key files are then optional.
    #[arg(long, env = "BERTH_AUTH_OIDC_ISSUER_URL")]
    pub auth_oidc_issuer_url: Option<String>,
    /// CA (PEM) to trust for the OIDC issuer; the system's roots by default.
    #[arg(long, env = "BERTH_AUTH_OIDC_CA_FILE", requires = "auth_oidc_issuer_url")]
    pub auth_oidc_ca_file: Option<PathBuf>,
    /// How often the OIDC issuer's key set is fetched again (at least 60).
    #[arg(long, env = "BERTH_AUTH_OIDC_REFRESH_SECONDS", default_value = "3600")]
    pub auth_oidc_refresh_seconds: u64,
    /// Claim holding the username in bearer JWTs; set it (and the three below) as the
    /// apiserver's `--oidc-username-claim` etc. are set, so a JWT names a person as the
    /// cluster does. With `email`, a present `email_verified` must be true.
    #[arg(long, env = "BERTH_AUTH_USERNAME_CLAIM", default_value = "sub")]
    pub auth_username_claim: String,
    /// Put before every username from a JWT (e.g. `oidc:`); none by default.
    #[arg(long, env = "BERTH_AUTH_USERNAME_PREFIX", default_value = "")]
    pub auth_username_prefix: String,
    /// Claim holding the groups in bearer JWTs (an array of strings, or one string).
    #[arg(long, env = "BERTH_AUTH_GROUPS_CLAIM", default_value = "groups")]
    pub auth_groups_claim: String,
    /// Put before every group from a JWT; none by default.
    #[arg(long, env = "BERTH_AUTH_GROUPS_PREFIX", default_value = "")]
    pub auth_groups_prefix: String,
    /// Whether callers of the auth API may authenticate with the token their kubeconfig
    /// uses (the apiserver answers: TokenReview) and are authorized by RBAC (verb
    /// `approve` on `environmentclasses`: SubjectAccessReview). Tried before the JWT
    /// keys above; `false` leaves only those.
    #[arg(long, env = "BERTH_AUTH_KUBERNETES", default_value_t = true, action = clap::ArgAction::Set)]
    pub auth_kubernetes: bool,
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
    #[error("approval revocations: {0}")]
    Revocations(String),
}

impl WebhookArgs {
    /// The approval signer, when a signing key is configured. The key file is re-read
    /// when it changes, as are the files of [`verifier`](Self::verifier) and
    /// [`bearer`](Self::bearer) (see [`crate::reload`]); all three need a Tokio runtime.
    pub fn issuer(&self) -> Result<Option<Issuer>, SettingsError> {
        let Some(path) = &self.approval_signing_key_file else {
            return Ok(None);
        };
        let lifetime = self.approval_lifetime.parse().map_err(|e| SettingsError::Lifetime(e.to_string()))?;
        let file = path.clone();
        let key = Reloading::from_files("approval signing key", vec![path.clone()], move || {
            SigningKey::from_pem_file(&file)
        })?;
        key.watch(RELOAD_EVERY);
        Ok(Some(Issuer::reloading(key, self.approval_issuer.clone(), self.approval_audience.clone(), lifetime)))
    }

    /// The approval verifier: the configured keys, else the signing key's public half;
    /// `None` when neither is configured (then no approval class is provisioned).
    pub fn verifier(&self) -> Result<Option<Verifier>, SettingsError> {
        let keys = if !self.approval_verify_keys.is_empty() {
            let paths = self.approval_verify_keys.clone();
            Reloading::from_files("approval verification keys", paths.clone(), move || {
                let mut pems = Vec::new();
                for path in &paths {
                    pems.extend(pem_files(path)?);
                }
                Ok::<_, SettingsError>(VerificationKeys::from_pem_files(&pems)?)
            })?
        } else if let Some(path) = &self.approval_signing_key_file {
            let file = path.clone();
            Reloading::from_files("approval verification keys", vec![path.clone()], move || {
                SigningKey::from_pem_file(&file).map(|key| VerificationKeys::from(&key))
            })?
        } else {
            return Ok(None);
        };
        keys.watch(RELOAD_EVERY);
        let verifier = Verifier::reloading(keys, self.approval_issuer.clone(), self.approval_audience.clone());
        let Some(path) = &self.approval_revocations else {
            return Ok(Some(verifier));
        };
        let file = path.clone();
        let revoked = Reloading::from_files("approval revocations", vec![path.clone()], move || {
            Revocations::read(&file).map_err(SettingsError::Revocations)
        })?;
        revoked.watch(RELOAD_EVERY);
        Ok(Some(verifier.with_revocations(revoked)))
    }

    /// The auth API's caller check, when any key source is configured.
    pub fn bearer(&self) -> Result<Option<BearerVerifier>, SettingsError> {
        if self.auth_hs256_secret_file.is_none()
            && self.auth_public_key_files.is_empty()
            && self.auth_jwks_file.is_none()
            && self.auth_oidc_issuer_url.is_none()
        {
            return Ok(None);
        }
        let config = BearerConfig {
            hs256_secret_file: self.auth_hs256_secret_file.clone(),
            public_key_files: self.auth_public_key_files.clone(),
            jwks_file: self.auth_jwks_file.clone(),
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
            claims: ClaimMapping {
                username_claim: self.auth_username_claim.clone(),
                username_prefix: self.auth_username_prefix.clone(),
                groups_claim: self.auth_groups_claim.clone(),
                groups_prefix: self.auth_groups_prefix.clone(),
            },
            oidc_issuer: self.auth_oidc_issuer_url.clone(),
        };
        let mut bearer = BearerVerifier::from_config(&config)?;
        bearer.watch(RELOAD_EVERY);
        if let Some(issuer) = &self.auth_oidc_issuer_url {
            let config = OidcConfig {
                issuer: issuer.clone(),
                ca_file: self.auth_oidc_ca_file.clone(),
                refresh_every: Duration::from_secs(self.auth_oidc_refresh_seconds.max(60)),
            };
            bearer = bearer.with_oidc(OidcKeys::start(config)?);
        }
        Ok(Some(bearer))
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
        // Dotfiles are a Secret volume's bookkeeping (`..data`), and the reload check
        // skips them too.
        let hidden = file.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if !hidden && file.extension().is_some_and(|e| e == "pem") {
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
    /// Asks the apiserver about callers of the auth API (`--auth-kubernetes`).
    pub client: kube::Client,
}

/// Starts the admission webhook and the auth API when TLS files are configured, each
/// on its own listener with the same certificate: caches first (decisions need them),
/// then HTTPS. Returns `None` when the webhook is off.
pub async fn start(
    args: &WebhookArgs,
    start: Start,
    shutdown: impl Future<Output = ()> + Clone + Send + 'static,
) -> Result<Option<JoinHandle<std::io::Result<()>>>, SettingsError> {
    let Some(files) = args.tls_files() else {
        return Ok(None);
    };
    let certificate = ReloadingCertificate::load(files)?;
    let _watch = certificate.spawn_watch(Duration::from_secs(10));
    let config = tls::server_config(certificate.clone())?;
    // Only admission verifies clients: `berth approve` has no client certificate.
    let admission_config = match &args.webhook_client_ca_file {
        Some(client_ca) => tls::server_config_verifying_clients(certificate.clone(), client_ca)?,
        None => config.clone(),
    };
    let index = start.index;
    let state = WebhookState {
        index: index.clone(),
        verifier: start.verifier,
        issuer: args.issuer()?.map(Arc::new),
        bearer: args.bearer()?.map(Arc::new),
        kubernetes: args.auth_kubernetes.then(|| KubernetesReviewer::new(start.client.clone())),
        metrics: Some(WebhookMetrics::register(&start.registry)?),
        approval_limit: Some(Arc::new(ApprovalRateLimit::per_minute(args.approval_rate_per_minute))),
        client: Some(start.client),
    };
    // Half-configured approvals: a signing key nobody can use, or JWT keys without one.
    if (state.issuer.is_some() && !super::approvers::configured(&state))
        || (state.issuer.is_none() && state.bearer.is_some())
    {
        tracing::warn!(
            "POST /v1/approvals needs both an approval signing key and caller authentication; it answers 503"
        );
    }
    let admission = bind(args.webhook_listen).await?;
    let auth = bind(args.auth_listen).await?;
    let fingerprint = certificate.fingerprint();
    tracing::info!(
        addr = %args.webhook_listen,
        certificate = %fingerprint,
        client_ca = ?args.webhook_client_ca_file,
        "admission webhook listening (clients need a certificate this CA signed, when one is named)"
    );
    tracing::info!(addr = %args.auth_listen, certificate = %fingerprint, "auth API listening");
    let (admission_app, auth_app) = (admission_router(state.clone()), auth_router(state));
    Ok(Some(tokio::spawn(async move {
        // Decisions before the index holds its first lists would refuse valid requests.
        index.ready().await;
        let admission = tls::serve(admission, admission_app, admission_config, shutdown.clone());
        let auth = tls::serve(auth, auth_app, config, shutdown);
        tokio::try_join!(admission, auth).map(drop)
    })))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SettingsError> {
    TcpListener::bind(addr).await.map_err(|source| SettingsError::Listen { addr, source })
}
