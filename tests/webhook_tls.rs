//! The webhook's HTTPS server against real TLS clients: certificates from `self_signed`, written
//! to a temporary directory, rotated on disk while the server runs.

use std::{
    io,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use berth::{
    cli::dev::{SelfSigned, self_signed},
    webhook::tls::{
        ReloadingCertificate, TlsError, TlsFiles, cert_fingerprint, serve, server_config,
        server_config_verifying_clients,
    },
};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use tempfile::TempDir;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, oneshot},
    task::JoinHandle,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// Generous: the tests share a slow machine.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

/// Logs to the test's captured output (`--nocapture` shows it); `RUST_LOG` overrides the filter.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("berth=debug"));
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter(filter).try_init();
}

fn write_pair(files: &TlsFiles, pair: &SelfSigned) {
    std::fs::write(&files.cert, &pair.cert_pem).expect("write cert");
    std::fs::write(&files.key, &pair.key_pem).expect("write key");
}

fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|proto| proto.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` as `name`, trusting only `ca_pem`.
async fn connect_as(addr: SocketAddr, name: &str, ca_pem: &str, alpn: &[&[u8]]) -> io::Result<TlsStream<TcpStream>> {
    let connector = TlsConnector::from(client_config(ca_pem, alpn));
    let name = ServerName::try_from(name.to_owned()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        connector.connect(name, tcp).await
    };
    tokio::time::timeout(PATIENCE, attempt).await.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect"))?
}

async fn connect(addr: SocketAddr, ca_pem: &str) -> io::Result<TlsStream<TcpStream>> {
    connect_as(addr, "127.0.0.1", ca_pem, &[]).await
}

/// The fingerprint of the leaf the server presented.
fn presented(stream: &TlsStream<TcpStream>) -> String {
    let certs = stream.get_ref().1.peer_certificates().expect("server certificates");
    cert_fingerprint(certs.first().expect("leaf"))
}

/// Sends `GET path` over HTTP/1.1 on `stream` (keeping it open) and returns the status and body.
async fn request(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), path: &str) -> io::Result<(u16, String)> {
    let exchange = async {
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await?;
        stream.flush().await?;
        read_response(stream).await
    };
    tokio::time::timeout(PATIENCE, exchange).await.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response"))?
}

async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<(u16, String)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before the response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let length: usize = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| bad("content-length"))?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed in the body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, String::from_utf8(body).map_err(|_| bad("body is not UTF-8"))?))
}

/// Polls `check` until it holds or [`PATIENCE`] runs out.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hello_router() -> Router {
    Router::new().route("/hello", get(|| async { "hi" }))
}

struct Server {
    addr: SocketAddr,
    certs: Arc<ReloadingCertificate>,
    files: TlsFiles,
    first: SelfSigned,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
    _dir: TempDir,
}

impl Server {
    async fn start(router: Router) -> Server {
        Self::start_with(router, None).await
    }

    /// A server that requires client certificates signed by `client_ca` (a PEM file).
    async fn start_with(router: Router, client_ca: Option<&Path>) -> Server {
        init_tracing();
        let dir = TempDir::new().expect("tempdir");
        let files = TlsFiles::in_dir(dir.path());
        let first = self_signed(&["127.0.0.1", "berth-webhook.berth-system.svc"]).expect("self_signed");
        write_pair(&files, &first);
        let certs = ReloadingCertificate::load(files.clone()).expect("load");
        let config = match client_ca {
            Some(ca) => server_config_verifying_clients(Arc::clone(&certs), ca).expect("server_config"),
            None => server_config(Arc::clone(&certs)).expect("server_config"),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, router, config, async move {
            let _ = stopped.await;
        }));
        Server { addr, certs, files, first, stop: Some(stop), task, _dir: dir }
    }

    /// Triggers shutdown and waits for `serve` to return.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = tokio::time::timeout(PATIENCE, &mut self.task).await.expect("serve returns after shutdown");
        served.expect("serve task").expect("serve result");
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_keep_alive() {
    let server = Server::start(hello_router()).await;

    let mut stream = connect(server.addr, &server.first.ca_pem).await.expect("connect");
    assert_eq!(request(&mut stream, "/hello").await.expect("first request"), (200, "hi".to_owned()));
    assert_eq!(
        request(&mut stream, "/hello").await.expect("second request on the same connection"),
        (200, "hi".to_owned())
    );
    assert_eq!(request(&mut stream, "/nope").await.expect("unknown route").0, 404);
    assert_eq!(presented(&stream), server.certs.fingerprint());

    // The DNS SAN works too; a name the certificate does not cover does not.
    let mut by_name = connect_as(server.addr, "berth-webhook.berth-system.svc", &server.first.ca_pem, &[])
        .await
        .expect("connect by DNS name");
    assert_eq!(request(&mut by_name, "/hello").await.expect("request by DNS name").1, "hi");
    assert!(connect_as(server.addr, "elsewhere.example", &server.first.ca_pem, &[]).await.is_err());

    // ALPN offers h2 first.
    let h2 = connect_as(server.addr, "127.0.0.1", &server.first.ca_pem, &[b"h2", b"http/1.1"]).await.expect("h2");
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h1 = connect_as(server.addr, "127.0.0.1", &server.first.ca_pem, &[b"http/1.1"]).await.expect("http/1.1");
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // A client that trusts some other CA refuses the server.
    let stranger = self_signed(&["127.0.0.1"]).expect("self_signed");
    assert!(connect(server.addr, &stranger.ca_pem).await.is_err());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_serves_a_rotated_pair_to_new_handshakes() {
    let server = Server::start(hello_router()).await;
    let old_fingerprint = server.certs.fingerprint();
    let mut before = connect(server.addr, &server.first.ca_pem).await.expect("connect before rotation");
    assert_eq!(request(&mut before, "/hello").await.expect("request before rotation").1, "hi");

    let second = self_signed(&["127.0.0.1"]).expect("self_signed");
    write_pair(&server.files, &second);
    assert!(server.certs.reload().expect("reload"), "reload sees the new pair");
    assert!(!server.certs.reload().expect("reload again"), "nothing changed since");
    assert_ne!(server.certs.fingerprint(), old_fingerprint);

    let mut after = connect(server.addr, &second.ca_pem).await.expect("connect trusting the new CA");
    assert_eq!(request(&mut after, "/hello").await.expect("request after rotation").1, "hi");
    assert_eq!(presented(&after), server.certs.fingerprint());
    assert_ne!(presented(&after), old_fingerprint);
    assert!(connect(server.addr, &server.first.ca_pem).await.is_err(), "the old CA no longer verifies new handshakes");

    // A connection made before the rotation keeps working.
    assert_eq!(request(&mut before, "/hello").await.expect("old connection after rotation").1, "hi");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_picks_up_rotation() {
    let server = Server::start(hello_router()).await;
    let watcher = server.certs.spawn_watch(Duration::from_millis(100));
    let old_fingerprint = server.certs.fingerprint();

    // Written file by file, as a harness would: the watcher may catch the new certificate with
    // the old key in between, and must get the pair once both are written.
    let second = self_signed(&["127.0.0.1"]).expect("self_signed");
    write_pair(&server.files, &second);
    let certs = Arc::clone(&server.certs);
    eventually("the watcher to load the new pair", async || certs.fingerprint() != old_fingerprint).await;

    let stream = connect(server.addr, &second.ca_pem).await.expect("connect trusting the new CA");
    assert_eq!(presented(&stream), server.certs.fingerprint());
    assert!(connect(server.addr, &server.first.ca_pem).await.is_err());

    watcher.abort();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_keep_the_previous_pair() {
    let server = Server::start(hello_router()).await;
    let watcher = server.certs.spawn_watch(Duration::from_millis(100));
    let good = server.certs.fingerprint();
    let serves_the_first_pair = async || {
        let mut stream = connect(server.addr, &server.first.ca_pem).await.expect("connect trusting the first CA");
        assert_eq!(presented(&stream), good);
        assert_eq!(request(&mut stream, "/hello").await.expect("request").1, "hi");
    };

    // Garbage in the certificate file.
    std::fs::write(&server.files.cert, "this is not a certificate\n").expect("write garbage");
    let error = server.certs.reload().expect_err("garbage does not load");
    assert!(matches!(error, TlsError::NoCertificate { .. }), "{error:?}");
    assert!(error.to_string().contains(&server.files.cert.display().to_string()), "{error}");
    assert_eq!(server.certs.fingerprint(), good);
    serves_the_first_pair().await;

    // A half-written certificate.
    let second = self_signed(&["127.0.0.1"]).expect("self_signed");
    let half = &second.cert_pem[..second.cert_pem.len() / 2];
    std::fs::write(&server.files.cert, half).expect("write half a certificate");
    let error = server.certs.reload().expect_err("half a certificate does not load");
    assert!(error.to_string().contains(&server.files.cert.display().to_string()), "{error}");
    serves_the_first_pair().await;

    // A whole new certificate with the old key.
    std::fs::write(&server.files.cert, &second.cert_pem).expect("write the new certificate");
    let error = server.certs.reload().expect_err("a mismatched pair does not load");
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
    assert!(error.to_string().contains(&server.files.key.display().to_string()), "{error}");
    serves_the_first_pair().await;

    // The watcher has seen all of that; it still serves the first pair, then takes the new key.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.certs.fingerprint(), good);
    serves_the_first_pair().await;
    std::fs::write(&server.files.key, &second.key_pem).expect("write the new key");
    let certs = Arc::clone(&server.certs);
    eventually("the watcher to load the repaired pair", async || certs.fingerprint() != good).await;
    let stream = connect(server.addr, &second.ca_pem).await.expect("connect trusting the new CA");
    assert_eq!(presented(&stream), server.certs.fingerprint());

    watcher.abort();
    server.stop().await;
}

#[tokio::test]
async fn load_names_the_file_that_is_wrong() {
    init_tracing();
    let dir = TempDir::new().expect("tempdir");
    let files = TlsFiles::in_dir(dir.path());

    let error = ReloadingCertificate::load(files.clone()).expect_err("missing files");
    assert!(matches!(error, TlsError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains(&files.cert.display().to_string()), "{error}");

    let pair = self_signed(&["127.0.0.1"]).expect("self_signed");
    std::fs::write(&files.cert, &pair.cert_pem).expect("write cert");
    let error = ReloadingCertificate::load(files.clone()).expect_err("missing key");
    assert!(error.to_string().contains(&files.key.display().to_string()), "{error}");

    std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\nAAAA\n").expect("write a truncated key");
    let error = ReloadingCertificate::load(files.clone()).expect_err("truncated key");
    assert!(error.to_string().contains(&files.key.display().to_string()), "{error}");

    std::fs::write(&files.key, &pair.cert_pem).expect("write a certificate as the key");
    let error = ReloadingCertificate::load(files.clone()).expect_err("no key");
    assert!(matches!(error, TlsError::NoKey { .. }), "{error:?}");

    std::fs::write(&files.key, &pair.key_pem).expect("write key");
    let certs = ReloadingCertificate::load(files).expect("load a good pair");
    assert_eq!(certs.fingerprint().len(), 64);
    assert!(!format!("{certs:?}").contains("PRIVATE KEY"));
    assert!(!format!("{pair:?}").contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_does_not_block_others() {
    let server = Server::start(hello_router()).await;

    // Connects and never says a word: its handshake waits in its own task.
    let _silent = TcpStream::connect(server.addr).await.expect("tcp connect");
    // Half a ClientHello, then nothing.
    let mut stalled = TcpStream::connect(server.addr).await.expect("tcp connect");
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.expect("write");

    let mut stream = connect(server.addr, &server.first.ca_pem).await.expect("connect");
    assert_eq!(request(&mut stream, "/hello").await.expect("request").1, "hi");

    // Not TLS at all: the handshake fails, the server carries on.
    let mut plain = TcpStream::connect(server.addr).await.expect("tcp connect");
    plain.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut sink)).await.expect("server drops a plain client");
    assert_eq!(request(&mut stream, "/hello").await.expect("request after a bad client").1, "hi");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let router = hello_router().route(
        "/slow",
        get({
            let (started, release) = (Arc::clone(&started), Arc::clone(&release));
            move || async move {
                started.notify_one();
                release.notified().await;
                "done"
            }
        }),
    );
    let mut server = Server::start(router).await;

    let mut idle = connect(server.addr, &server.first.ca_pem).await.expect("connect");
    assert_eq!(request(&mut idle, "/hello").await.expect("request").1, "hi");

    let mut busy = connect(server.addr, &server.first.ca_pem).await.expect("connect");
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("send the slow request");
    busy.flush().await.expect("flush");
    tokio::time::timeout(PATIENCE, started.notified()).await.expect("the slow handler starts");

    let _ = server.stop.take().expect("not stopped yet").send(());

    // The idle keep-alive connection is closed...
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, idle.read_to_end(&mut sink)).await.expect("idle connection closed");
    assert!(closed.is_err() || sink.is_empty(), "nothing but a close on the idle connection: {closed:?}");
    // ...new connections are refused...
    let addr = server.addr;
    eventually("the listener to close", async || TcpStream::connect(addr).await.is_err()).await;
    // ...and serve waits for the request in flight.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!server.task.is_finished(), "serve returned with a request in flight");

    release.notify_one();
    assert_eq!(
        tokio::time::timeout(PATIENCE, read_response(&mut busy)).await.expect("slow response").expect("response"),
        (200, "done".to_owned())
    );
    server.stop().await;
}

#[test]
fn in_dir_uses_the_secret_volume_names() {
    let files = TlsFiles::in_dir(Path::new("/etc/berth/tls"));
    assert_eq!(files.cert, Path::new("/etc/berth/tls/tls.crt"));
    assert_eq!(files.key, Path::new("/etc/berth/tls/tls.key"));
}

/// A CA and a client certificate it signed (PEM), as the apiserver's webhook client.
fn client_identity(
    name: &str,
) -> (String, rustls::pki_types::CertificateDer<'static>, rustls::pki_types::PrivateKeyDer<'static>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name.push(DnType::CommonName, format!("{name}-ca"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("client key");
    let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client.distinguished_name.push(DnType::CommonName, name);
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = client.signed_by(&key, &issuer).expect("client certificate");
    let der_key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (ca_cert.pem(), cert.der().clone(), der_key)
}

/// A TLS connection presenting `identity` (or none), trusting `ca_pem`; then one request.
async fn request_presenting(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<(rustls::pki_types::CertificateDer<'static>, rustls::pki_types::PrivateKeyDer<'static>)>,
) -> io::Result<(u16, String)> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).expect("client identity"),
        None => builder.with_no_client_auth(),
    };
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let mut stream = TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
        // With TLS 1.3 a refused client certificate shows at the first read.
        request(&mut stream, "/hello").await
    };
    tokio::time::timeout(PATIENCE, attempt).await.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request"))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_verifying_clients_serves_only_those_its_client_ca_signed() {
    let (apiserver_ca, apiserver_cert, apiserver_key) = client_identity("kube-apiserver-webhook-client");
    let dir = TempDir::new().expect("tempdir");
    let client_ca = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca, &apiserver_ca).expect("write client CA");
    let server = Server::start_with(hello_router(), Some(&client_ca)).await;
    let server_ca = server.first.ca_pem.clone();

    let served = request_presenting(server.addr, &server_ca, Some((apiserver_cert, apiserver_key))).await;
    assert_eq!(served.expect("the apiserver's certificate is accepted"), (200, "hi".to_owned()));
    // No certificate, or one another CA signed: no request gets through.
    assert!(request_presenting(server.addr, &server_ca, None).await.is_err(), "a client without a certificate");
    let (_, stranger_cert, stranger_key) = client_identity("kube-apiserver-webhook-client");
    let stranger = request_presenting(server.addr, &server_ca, Some((stranger_cert, stranger_key))).await;
    assert!(stranger.is_err(), "a certificate of the same name from another CA");

    // A file without a certificate is refused by name at start.
    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "not a certificate").expect("write");
    let certs = Arc::clone(&server.certs);
    assert!(matches!(
        server_config_verifying_clients(certs, &empty),
        Err(TlsError::NoCertificate { path }) if path == empty
    ));
    server.stop().await;
}
