//! A small Prometheus client: instant queries (`GET /api/v1/query`) over plain http,
//! with a bearer token read from a file and a tenant header (Cortex, Mimir, Thanos:
//! `X-Scope-OrgID`), each answer bounded in time and size. Where Prometheus is, is an
//! operator setting: tenants only write queries, never the address Berth calls.
//! Reading the answer is pure: [`crate::rollout::metric::parse`].

use std::time::Duration;

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
    token: Option<Secret>,
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
        let token = settings
            .token_file
            .as_deref()
            .map(Secret::from_file)
            .transpose()
            .map_err(|e| ConfigError::Token(e.to_string()))?;
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
            let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose()))
                .map_err(|_| "the Prometheus token is not a valid header value".to_owned())?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
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
}
