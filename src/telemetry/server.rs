//! The telemetry HTTP server: `/metrics`, `/healthz` and `/readyz`.
//!
//! It runs on every replica (leader or not) on its own port, apart from the webhook, so a
//! scrape or a probe never competes with admission requests and needs no TLS.
//!
//! - `GET /metrics`: the registry in Prometheus text format.
//! - `GET /healthz`: 200 `ok` while the process can answer at all (liveness).
//! - `GET /readyz`: 200 `ok` when every [`Readiness`] check is ready, else 503 and one line per
//!   check that is not. `?exclude=<check>` (repeatable, as on kube-apiserver) leaves checks
//!   out: the pod's readiness probe leaves out `gitops-remote`, because the webhook on
//!   every replica must keep serving admission while git is down.

use std::{future::Future, net::SocketAddr};

use axum::{
    Router,
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

use super::{Error, Metrics, Readiness};

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers read: the metrics registry and the readiness checks.
#[derive(Debug, Clone)]
pub struct ServerState {
    pub metrics: Metrics,
    pub readiness: Readiness,
}

/// The telemetry routes, for [`serve`] or to be merged into another router.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Listens on `addr` and serves [`router`] until `shutdown` completes, then finishes the
/// requests in flight and returns.
pub async fn serve(
    addr: SocketAddr,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
    serve_on(listener, state, shutdown).await
}

/// Like [`serve`] on a listener bound by the caller (for example to port 0, reading the
/// chosen port from [`TcpListener::local_addr`]).
pub async fn serve_on(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Ok(addr) = listener.local_addr() {
        ::tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { source })
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.metrics.registry().gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            ::tracing::warn!(%error, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {error}\n")).into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<ServerState>, RawQuery(query): RawQuery) -> (StatusCode, String) {
    let excluded = excluded_checks(query.as_deref().unwrap_or_default());
    let not_ready: Vec<String> =
        state.readiness.not_ready().into_iter().filter(|name| !excluded.contains(&name.as_str())).collect();
    if not_ready.is_empty() {
        return (StatusCode::OK, "ok\n".to_owned());
    }
    let body = not_ready.iter().map(|name| format!("{name}: not ready\n")).collect();
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

/// The check names of every `exclude=` in a query string (no percent-decoding: check
/// names are plain words).
fn excluded_checks(query: &str) -> Vec<&str> {
    query.split('&').filter_map(|pair| pair.strip_prefix("exclude=")).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{body::Body, http::Request};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
        sync::oneshot,
    };
    use tower::ServiceExt;

    use super::*;
    use crate::telemetry::{Controller, Outcome};

    fn state() -> Result<ServerState, Error> {
        Ok(ServerState { metrics: Metrics::new()?, readiness: Readiness::new() })
    }

    /// Sends `GET path` through the router without a socket.
    async fn get(state: &ServerState, path: &str) -> (StatusCode, Option<String>, String) {
        let request = Request::get(path).body(Body::empty()).unwrap_or_default();
        let response = match router(state.clone()).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap_or_default();
        (status, content_type, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_answers_ok() -> Result<(), Error> {
        let (status, _, body) = get(&state()?, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok\n");
        Ok(())
    }

    #[tokio::test]
    async fn readyz_lists_unready_checks_until_all_are_set() -> Result<(), Error> {
        let state = state()?;
        let caches = state.readiness.check("caches-synced");
        let writer = state.readiness.check("gitops-writer");

        let (status, _, body) = get(&state, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "caches-synced: not ready\ngitops-writer: not ready\n");

        caches.set(true);
        let (status, _, body) = get(&state, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "gitops-writer: not ready\n");

        writer.set(true);
        let (status, _, body) = get(&state, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok\n");
        Ok(())
    }

    #[tokio::test]
    async fn readyz_leaves_out_excluded_checks() -> Result<(), Error> {
        let state = state()?;
        let caches = state.readiness.check("caches-synced");
        state.readiness.check("gitops-remote");

        let (status, _, body) = get(&state, "/readyz?exclude=gitops-remote").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "caches-synced: not ready\n");

        caches.set(true);
        let (status, _, body) = get(&state, "/readyz?exclude=gitops-remote").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Excluding one check leaves the others; the plain /readyz still reports all.
        let (status, _, body) = get(&state, "/readyz?exclude=caches-synced").await;
        assert_eq!((status, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "gitops-remote: not ready\n"));
        let (status, _, _) = get(&state, "/readyz?exclude=caches-synced&exclude=gitops-remote").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = get(&state, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        Ok(())
    }

    #[tokio::test]
    async fn metrics_serves_prometheus_text() -> Result<(), Error> {
        let state = state()?;
        state.metrics.reconcile_timer(Controller::Tenant).finish(Outcome::Success);
        state.metrics.set_leader(true);

        let (status, content_type, body) = get(&state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(METRICS_CONTENT_TYPE));
        assert!(body.contains(r#"berth_reconciles_total{controller="tenant",outcome="success"} 1"#), "{body}");
        assert!(body.contains(r#"berth_reconcile_duration_seconds_count{controller="tenant"} 1"#), "{body}");
        assert!(body.contains("berth_leader 1"), "{body}");

        let (status, _, _) = get(&state, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        Ok(())
    }

    /// Raw HTTP/1.1 over a socket, so the test needs no HTTP client crate.
    async fn raw_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok(response)
    }

    #[tokio::test]
    async fn serves_on_a_port_and_shuts_down_gracefully() -> Result<(), Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, state()?, async {
            let _ = stopped.await;
        }));

        let response = raw_get(addr, "/healthz").await?;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nok\n"), "{response}");

        let _ = stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(10), server).await??;
        assert!(result.is_ok(), "{result:?}");
        assert!(TcpStream::connect(addr).await.is_err(), "still listening after shutdown");
        Ok(())
    }

    #[tokio::test]
    async fn serve_reports_an_address_in_use() -> Result<(), Box<dyn std::error::Error>> {
        let taken = TcpListener::bind("127.0.0.1:0").await?;
        let addr = taken.local_addr()?;
        let result = serve(addr, state()?, std::future::pending()).await;
        assert!(matches!(result, Err(Error::Bind { addr: a, .. }) if a == addr), "{result:?}");
        Ok(())
    }
}
