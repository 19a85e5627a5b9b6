//! The HTTPS accept loop: each connection's TLS handshake runs in its own task with a
//! deadline, so a slow or broken client never holds up the others, and HTTP/1.1 (with
//! keep-alive, as the kube-apiserver uses it) and HTTP/2 are both served.

use std::{future::Future, io, net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

use super::reload::{ReloadingCertificate, TlsError, ring_provider};

/// How long a client has to complete the TLS handshake before its connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP/1.1 client has to send a request's headers, counted from when the server
/// starts waiting for them, so this is also how long a keep-alive connection may sit idle. Longer
/// than the 90 s idle timeout of Go clients such as the kube-apiserver, so the client is the one
/// that closes an idle connection and never races the server with a request on a closing one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// How long [`serve`] waits, once shut down, for the connections in flight to finish before
/// dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after an accept error that is not about one connection
/// (typically out of file descriptors), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A TLS server configuration (TLS 1.2 and 1.3, ring, no client certificates) that takes its
/// certificate from `certs` on every handshake and offers ALPN `h2` and `http/1.1`.
pub fn server_config(certs: Arc<ReloadingCertificate>) -> Result<Arc<ServerConfig>, TlsError> {
    with_alpn(
        ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(certs),
    )
}

/// [`server_config`], but a client must present a certificate that a CA in `client_ca`
/// (a PEM file) signed, or the handshake fails: how the apiserver authenticates to a
/// webhook (its `--admission-control-config-file` names the client certificate). Give
/// it a CA of its own for that certificate: the cluster CA also signs every user's and
/// kubelet's.
pub fn server_config_verifying_clients(
    certs: Arc<ReloadingCertificate>,
    client_ca: &std::path::Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let pem = std::fs::read(client_ca).map_err(|source| TlsError::Read { path: client_ca.to_owned(), source })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|source| TlsError::Pem { path: client_ca.to_owned(), source })?;
        roots.add(cert).map_err(|source| TlsError::Certificate { path: client_ca.to_owned(), source })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate { path: client_ca.to_owned() });
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ring_provider())
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    with_alpn(
        ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(certs),
    )
}

fn with_alpn(mut config: ServerConfig) -> Result<Arc<ServerConfig>, TlsError> {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS on `listener` until `shutdown` completes.
///
/// Every accepted connection gets its own task, which does the TLS handshake (within
/// [`HANDSHAKE_TIMEOUT`]; failures are logged at debug) and then serves HTTP/1.1 with keep-alive
/// or HTTP/2, whichever the client speaks. An HTTP/1.1 connection is closed once it has waited
/// [`HEADER_READ_TIMEOUT`] for a request; an HTTP/2 connection stays open until the client closes
/// it.
///
/// When `shutdown` completes the listener is closed, idle connections are closed, and the
/// requests in flight get up to [`SHUTDOWN_GRACE`] to finish before their connections are
/// dropped. Accept errors are logged and retried rather than returned, so this returns `Ok`
/// after a shutdown.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let service = TowerToHyperService::new(router);
    // Flipped to `true` once, on shutdown; every connection task watches it.
    let (stopping, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving HTTPS");
    }

    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                log_panic(joined);
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(%error, "accept failed for one connection");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying in {ACCEPT_BACKOFF:?}");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // Lower latency for small request/response exchanges; not fatal if refused.
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(tcp, peer, acceptor.clone(), Arc::clone(&builder), service.clone(), stop.clone()));
    }

    drop(listener);
    tracing::info!(connections = connections.len(), "HTTPS server shutting down");
    let _ = stopping.send(true);
    let drain = async {
        while let Some(joined) = connections.join_next().await {
            log_panic(joined);
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "HTTPS connections still open after {SHUTDOWN_GRACE:?}; dropping them"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// One accepted connection: the TLS handshake, then HTTP until the client leaves or, after
/// `stop` turns `true`, until the request in flight is answered.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: TowerToHyperService<Router>,
    mut stop: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = tokio::select! {
        handshake = handshake => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
                return;
            }
        },
        // No request can be in flight yet.
        () = stopped(&mut stop) => return,
    };
    let mut connection = pin!(builder.serve_connection(TokioIo::new(tls), service));
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stopped(&mut stop) => {
            // Closes an idle connection now, and a busy one once its response is sent (HTTP/2:
            // GOAWAY, then the open streams finish).
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "HTTPS connection ended with an error");
    }
}

/// Resolves once `stop` is `true` (or its sender is gone, which also means shutting down).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        tracing::warn!(%error, "an HTTPS connection task panicked");
    }
}

/// Accept errors about one connection, which say nothing about the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
