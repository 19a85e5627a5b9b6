//! A small Prometheus client: instant queries (`GET /api/v1/query`) over plain http,
//! with a bearer token read from a file (read again whenever the file changes: a
//! projected ServiceAccount token is rotated in place) and a tenant header (Cortex, Mimir, Thanos:
//! `X-Scope-OrgID`), each answer bounded in time and size. Where Prometheus is, is an
//! operator setting: tenants only write queries, never the address Berth calls.
//! Reading the answer is pure: [`crate::rollout::metric::parse`].

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, SystemTime},
};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::{
    Request,
    body::Bytes,
    header::{AUTHORIZATION, HeaderName, HeaderValue},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::{
    gitops::{Secret, redact::percent_encode},
    rollout::metric,
};

/// Largest answer read (a query meant for a gate returns a few series).
const MAX_ANSWER: usize = 1 << 20;

/// Why the Prometheus settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "BERTH_PROMETHEUS_URL must be an http:// address without credentials (https is not supported yet; use the in-cluster Service): {0}"
    )]
    Url(String),
    #[error("the Prometheus tenant header is not a valid header name or value")]
    Header,
    #[error("cannot read the Prometheus token file: {0}")]
    Token(String),
}

/// Asks one Prometheus (or a compatible API) instant queries.
pub struct Prometheus {
    base: String,
    token: Option<TokenFile>,
    tenant: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus").field("base", &self.base).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// The operator's Prometheus settings.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub url: String,
    pub token_file: Option<std::path::PathBuf>,
    /// Header name and value, e.g. `X-Scope-OrgID` and `team-a`.
    pub tenant: Option<(String, String)>,
    pub timeout: Duration,
}

impl Prometheus {
    pub fn new(settings: &Settings) -> Result<Self, ConfigError> {
        let base = settings.url.trim_end_matches('/').to_owned();
        let uri: hyper::Uri = base.parse().map_err(|_| ConfigError::Url(base.clone()))?;
        let plain = uri.scheme_str() == Some("http") && uri.authority().is_some_and(|a| !a.as_str().contains('@'));
        if !plain {
            return Err(ConfigError::Url(base));
        }
        // Read now, so that a missing or empty file stops the operator at startup.
        let token = settings.token_file.clone().map(TokenFile::new).transpose()?;
        let tenant = settings
            .tenant
            .as_ref()
            .map(|(name, value)| {
                Ok::<_, ConfigError>((
                    HeaderName::try_from(name.as_str()).map_err(|_| ConfigError::Header)?,
                    HeaderValue::try_from(value.as_str()).map_err(|_| ConfigError::Header)?,
                ))
            })
            .transpose()?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self { base, token, tenant, timeout: settings.timeout, client })
    }

    /// The samples `query` gives now, or why there are none (an error, a timeout).
    pub async fn query(&self, query: &str) -> Result<Vec<metric::Sample>, String> {
        match tokio::time::timeout(self.timeout, self.ask(query)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("Prometheus did not answer within {:?}", self.timeout)),
        }
    }

    async fn ask(&self, query: &str) -> Result<Vec<metric::Sample>, String> {
        let uri = format!("{}/api/v1/query?query={}", self.base, percent_encode(query));
        let mut request = Request::get(uri);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.header()?);
        }
        if let Some((name, value)) = &self.tenant {
            request = request.header(name, value);
        }
        let request = request.body(Empty::new()).map_err(|e| format!("cannot build the query: {e}"))?;
        // The error's text names the address only (never the headers).
        let response = self.client.request(request).await.map_err(|e| format!("cannot reach Prometheus: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("cannot read Prometheus' answer: {e}"))?
            .to_bytes();
        // Prometheus answers 400/422/503 with its JSON error, which says more than the
        // status; anything else that is not a success (a proxy's page) says only the status.
        let json_error = serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v["status"] == "error");
        if !status.is_success() && !json_error {
            return Err(format!("Prometheus answered HTTP {status}"));
        }
        metric::parse(&body)
    }
}

/// The bearer token's file, read again when its modification time or size changes
/// (the kubelet swaps a projected token's file in place well before it expires).
/// The token is only ever in a sensitive header value, never in a message.
struct TokenFile {
    path: PathBuf,
    /// The header made of the file as last read, and what the file looked like then.
    read: Mutex<(Option<(SystemTime, u64)>, HeaderValue)>,
}

impl TokenFile {
    fn new(path: PathBuf) -> Result<Self, ConfigError> {
        let (seen, header) = Self::read(&path).map_err(ConfigError::Token)?;
        Ok(Self { path, read: Mutex::new((seen, header)) })
    }

    /// The file's modification time and size (following symlinks, as the kubelet's are).
    fn seen(path: &Path) -> Option<(SystemTime, u64)> {
        std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
    }

    fn read(path: &Path) -> Result<(Option<(SystemTime, u64)>, HeaderValue), String> {
        let seen = Self::seen(path);
        let token = Secret::from_file(path).map_err(|e| e.to_string())?;
        let mut value = HeaderValue::try_from(format!("Bearer {}", token.current()))
            .map_err(|_| "the Prometheus token is not a valid header value".to_owned())?;
        value.set_sensitive(true);
        Ok((seen, value))
    }

    /// The `Authorization` header, from the file as it is now.
    fn header(&self) -> Result<HeaderValue, String> {
        let mut read = self.read.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = Self::seen(&self.path);
        if seen.is_none() || seen != read.0 {
            *read = Self::read(&self.path).map_err(|e| format!("cannot read the Prometheus token file: {e}"))?;
        }
        Ok(read.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_http_address_without_credentials_is_accepted() {
        let settings = |url: &str| Settings { url: url.into(), timeout: Duration::from_secs(1), ..Settings::default() };
        assert!(Prometheus::new(&settings("http://prometheus.monitoring:9090/")).is_ok());
        assert!(Prometheus::new(&settings("https://prometheus:9090")).is_err());
        assert!(Prometheus::new(&settings("http://user:pw@prometheus:9090")).is_err());
        assert!(Prometheus::new(&settings("prometheus:9090")).is_err());
    }

    #[test]
    fn a_rotated_token_file_is_read_again() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").expect("written");
        let settings = Settings {
            url: "http://prometheus:9090".into(),
            token_file: Some(path.clone()),
            timeout: Duration::from_secs(1),
            ..Settings::default()
        };
        let prometheus = Prometheus::new(&settings).expect("configured");
        let token = prometheus.token.as_ref().expect("a token");
        let header = token.header().expect("a header");
        assert_eq!(header.to_str().ok(), Some("Bearer first"));
        assert!(header.is_sensitive());
        // Rotated (the same size, a later modification time): the new one is sent.
        std::fs::write(&path, "secnd\n").expect("written");
        let later = SystemTime::now() + Duration::from_secs(10);
        std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(later)).expect("touched");
        assert_eq!(token.header().expect("a header").to_str().ok(), Some("Bearer secnd"));
        // Neither the client's nor the token's debug output shows it.
        assert!(!format!("{prometheus:?}").contains("secnd"));
        // Gone: an error that names the file, not the token.
        std::fs::remove_file(&path).expect("removed");
        let error = token.header().expect_err("no file");
        assert!(error.contains("token file") && !error.contains("secnd"), "{error}");
        // A missing file at startup stops the operator.
        assert!(Prometheus::new(&settings).is_err());
    }
}
