//! A small HTTPS client for Berth's own API: one TLS connection, kept alive, requests
//! sent one after another. Used by `berth approve` and the admission benchmark.

use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a call to Berth's API failed. Never carries the bearer token.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("{0} is not an https:// URL with a host")]
    Url(String),
    #[error("cannot read the CA bundle {path}: {message}")]
    Ca { path: String, message: String },
    #[error("cannot connect to {authority}: {source}")]
    Connect { authority: String, source: std::io::Error },
    #[error("TLS with {authority} failed: {source}")]
    Tls { authority: String, source: std::io::Error },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// `https://host:port` split up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `https://host[:port][/…]` (the path is ignored).
    pub fn parse(url: &str) -> Result<Endpoint, HttpsError> {
        let rest = url.strip_prefix("https://").ok_or_else(|| HttpsError::Url(url.to_owned()))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host, port.parse().map_err(|_| HttpsError::Url(url.to_owned()))?)
            }
            _ => (authority, 443),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(HttpsError::Url(url.to_owned()));
        }
        Ok(Endpoint { host: host.to_owned(), port })
    }

    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// TLS settings trusting only the given CA certificates (PEM), the way the apiserver
/// trusts a webhook's caBundle; the system roots when `ca_pem` is `None`.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, HttpsError> {
    let mut roots = rustls::RootCertStore::empty();
    let ca_error = |message: String| HttpsError::Ca { path: "CA bundle".to_owned(), message };
    match ca_pem {
        Some(pem) => {
            let certs: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut &pem[..]).collect::<Result<_, _>>().map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no certificate in it".to_owned()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
        }
        None => return Err(ca_error("pass --ca-file with the CA that signed Berth's serving certificate".to_owned())),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One kept-alive HTTP/1.1 connection over TLS.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    /// Connects and completes the TLS handshake.
    pub async fn open(endpoint: &Endpoint, tls: Arc<rustls::ClientConfig>) -> Result<Connection, HttpsError> {
        let authority = endpoint.authority();
        let tcp = TcpStream::connect(&authority)
            .await
            .map_err(|source| HttpsError::Connect { authority: authority.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| HttpsError::Url(endpoint.host.clone()))?;
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|source| HttpsError::Tls { authority: authority.clone(), source })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "https connection closed");
            }
        });
        Ok(Connection { sender, host: authority })
    }

    /// POSTs `body` as JSON to `path`, with an optional bearer token; the response
    /// status and whole body.
    pub async fn post_json(
        &mut self,
        path: &str,
        body: Bytes,
        bearer: Option<&str>,
    ) -> Result<Response<Bytes>, HttpsError> {
        let mut request = Request::post(path).header("host", &self.host).header("content-type", "application/json");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(request.body(Full::new(body))?).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_and_without_port() {
        let parsed = Endpoint::parse("https://127.0.0.1:8443/v1/approvals").expect("url");
        assert_eq!(parsed, Endpoint { host: "127.0.0.1".into(), port: 8443 });
        assert_eq!(Endpoint::parse("https://berth.example.com").expect("url").port, 443);
        assert!(Endpoint::parse("http://127.0.0.1:8443").is_err());
        assert!(Endpoint::parse("https://:8443").is_err());
    }
}
