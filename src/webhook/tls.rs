//! HTTPS for the admission webhook and the auth API, with a serving certificate that is reloaded
//! from disk without a restart.
//!
//! The certificate and key are files: a Kubernetes Secret mounted into the pod (cert-manager or
//! a hand-made one), or files a test harness writes. [`ReloadingCertificate`] holds the current
//! pair in memory and hands it to every new TLS handshake; [`ReloadingCertificate::spawn_watch`]
//! notices when the files change and swaps in the new pair. A new pair that does not load (a
//! half-written file, a key that does not match the certificate) never replaces a good one: the
//! previous pair keeps serving and a warning names the file and the reason. Connections already
//! established keep the certificate they were handshaken with.
//!
//! [`serve`] runs the accept loop: each connection's TLS handshake runs in its own task with a
//! deadline, so a slow or broken client never holds up the others, and HTTP/1.1 (with keep-alive,
//! as the kube-apiserver uses it) and HTTP/2 are both served.
//!
//! [`self_signed`] makes a throwaway CA and a serving certificate signed by it, for local and
//! end-to-end setups (the CA goes into the webhook configurations' `caBundle`).

use std::{
    fmt, fs,
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::pin,
    sync::{Arc, PoisonError, RwLock, Weak},
    time::{Duration, Instant, SystemTime},
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::CertificateDer,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use sha2::{Digest, Sha256};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

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

/// The watcher re-reads the files at least this often even when their modification time, length
/// and inode look unchanged (see [`ReloadingCertificate::spawn_watch`]).
const RESCAN_EVERY: Duration = Duration::from_secs(300);

/// The shortest poll interval [`ReloadingCertificate::spawn_watch`] accepts.
const MIN_POLL: Duration = Duration::from_millis(10);

/// Why a certificate or key could not be loaded, or the TLS setup could not be built. Every
/// variant about a file names it; none carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not valid PEM: {source}", path.display())]
    Pem { path: PathBuf, source: io::Error },
    #[error("{} holds no PEM CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("unusable private key in {}: {source}", path.display())]
    Key { path: PathBuf, source: rustls::Error },
    #[error("unusable certificate in {}: {source}", path.display())]
    Certificate { path: PathBuf, source: rustls::Error },
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot build the TLS server configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where the serving certificate and its key live.
///
/// `cert` is PEM and may hold a chain (leaf first, then intermediates); `key` is a PEM private
/// key in PKCS#8, PKCS#1 (RSA) or SEC1 (EC) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `tls.crt` and `tls.key` in `dir`: a `kubernetes.io/tls` Secret mounted as a volume.
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key") }
    }
}

/// The SHA-256 of a certificate's DER bytes, as lowercase hex: the fingerprint `openssl x509
/// -fingerprint -sha256` prints, without the colons.
pub fn cert_fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One loaded pair.
struct Loaded {
    key: Arc<CertifiedKey>,
    /// [`cert_fingerprint`] of the leaf.
    fingerprint: String,
    /// SHA-256 over both files' bytes, to tell whether the files still hold this pair. Never
    /// logged.
    digest: [u8; 32],
}

/// A [`ResolvesServerCert`] that serves the pair in [`TlsFiles`] and picks up new files without a
/// restart.
///
/// The handshake path only takes a read lock and clones an [`Arc`]; all file I/O happens in
/// [`load`](Self::load), [`reload`](Self::reload) and the watcher.
pub struct ReloadingCertificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
}

impl fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("files", &self.files)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current().key))
    }
}

impl ReloadingCertificate {
    /// Reads and checks the pair, failing with the file and the reason if it does not load (the
    /// process should not start without a serving certificate).
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let provider = ring_provider();
        let (cert_pem, key_pem) = read_pair(&files)?;
        let loaded = parse_pair(&files, &provider, &cert_pem, &key_pem)?;
        tracing::info!(
            cert = %files.cert.display(),
            key = %files.key.display(),
            fingerprint = %loaded.fingerprint,
            "loaded the serving certificate"
        );
        Ok(Arc::new(ReloadingCertificate { files, provider, current: RwLock::new(Arc::new(loaded)) }))
    }

    /// The files this certificate is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// [`cert_fingerprint`] of the leaf certificate new handshakes are served.
    pub fn fingerprint(&self) -> String {
        self.current().fingerprint.clone()
    }

    /// Re-reads the files now. `Ok(true)` when they hold a new pair, which new handshakes use from
    /// now on; `Ok(false)` when they still hold the pair being served.
    ///
    /// On error the previous pair keeps serving. This method does not log; the caller reports
    /// the error (the watcher logs it as a warning).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = read_pair(&self.files)?;
        self.apply(&cert_pem, &key_pem)
    }

    /// Polls the files every `every` and reloads them when they change, in a task that ends once
    /// every other [`Arc`] to this certificate is gone (or when the returned handle is aborted).
    ///
    /// Each tick costs two `stat` calls. When the modification time, length or inode of either
    /// file differ from the last tick (which covers both writes in place and the symlink swap
    /// of a Secret volume update), both files are read and their content hash compared with the
    /// pair being served, so a `touch` or a rewrite with the same bytes does nothing. A new pair
    /// that fails to load is reported once as a warning naming the file and the reason; then the
    /// files are re-read on every tick until they load again, because the failure is usually a
    /// rotation caught halfway (new certificate, old key) whose last write may not move the
    /// stamps. As a last resort against writes the stamps cannot see, the files are also re-read
    /// every few minutes. File I/O runs on the blocking thread pool.
    ///
    /// Must be called within a Tokio runtime.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = every.max(MIN_POLL);
        tokio::spawn(watch_files(weak, every))
    }

    fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Swaps in the pair in `cert_pem` and `key_pem` unless it is the one being served.
    fn apply(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, TlsError> {
        if pair_digest(cert_pem, key_pem) == self.current().digest {
            return Ok(false);
        }
        let loaded = parse_pair(&self.files, &self.provider, cert_pem, key_pem)?;
        let fingerprint = loaded.fingerprint.clone();
        let previous = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *current, Arc::new(loaded))
        };
        tracing::info!(
            cert = %self.files.cert.display(),
            key = %self.files.key.display(),
            fingerprint = %fingerprint,
            previous = %previous.fingerprint,
            "reloaded the serving certificate"
        );
        Ok(true)
    }

    /// One watcher tick; blocking.
    fn check(&self, state: &mut WatchState) {
        let stamps = (Stamp::of(&self.files.cert), Stamp::of(&self.files.key));
        let rescan_due = state.last_read.is_none_or(|at| at.elapsed() >= RESCAN_EVERY);
        if state.stamps.as_ref() == Some(&stamps) && state.failing.is_none() && !rescan_due {
            return;
        }
        state.stamps = Some(stamps);
        state.last_read = Some(Instant::now());

        let (cert_pem, key_pem) = match read_pair(&self.files) {
            Ok(pair) => pair,
            Err(error) => {
                let failure = Failure::Unreadable(error.to_string());
                if state.failing.as_ref() != Some(&failure) {
                    self.warn_keeping(&error);
                }
                state.failing = Some(failure);
                return;
            }
        };
        let digest = pair_digest(&cert_pem, &key_pem);
        if digest == self.current().digest {
            if state.failing.take().is_some() {
                tracing::info!(
                    cert = %self.files.cert.display(),
                    key = %self.files.key.display(),
                    fingerprint = %self.fingerprint(),
                    "the serving certificate files hold the pair being served again"
                );
            }
            return;
        }
        if state.failing == Some(Failure::Invalid(digest)) {
            return;
        }
        match self.apply(&cert_pem, &key_pem) {
            Ok(_) => state.failing = None,
            Err(error) => {
                self.warn_keeping(&error);
                state.failing = Some(Failure::Invalid(digest));
            }
        }
    }

    fn warn_keeping(&self, error: &TlsError) {
        tracing::warn!(
            cert = %self.files.cert.display(),
            key = %self.files.key.display(),
            %error,
            serving = %self.fingerprint(),
            "cannot load the new serving certificate; keeping the previous one"
        );
    }
}

/// What the watcher remembers between ticks.
#[derive(Default)]
struct WatchState {
    /// The stamps of the last read; `None` before the first.
    stamps: Option<(Option<Stamp>, Option<Stamp>)>,
    last_read: Option<Instant>,
    /// The failure last reported, so it is reported once.
    failing: Option<Failure>,
}

#[derive(PartialEq, Eq)]
enum Failure {
    Unreadable(String),
    Invalid([u8; 32]),
}

/// What `stat` says about a file, to notice a change without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    /// Follows symlinks, so a Secret volume's `..data` swap shows up as a new inode.
    fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Stamp { modified: meta.modified().ok(), len: meta.len(), inode })
    }
}

async fn watch_files(weak: Weak<ReloadingCertificate>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = WatchState::default();
    loop {
        interval.tick().await;
        let Some(certificate) = weak.upgrade() else {
            return;
        };
        let checked = tokio::task::spawn_blocking(move || {
            certificate.check(&mut state);
            state
        })
        .await;
        state = match checked {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, "the serving certificate watcher's check failed");
                WatchState::default()
            }
        };
    }
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pair(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source });
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn pair_digest(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((cert_pem.len() as u64).to_le_bytes());
    hasher.update(cert_pem);
    hasher.update(key_pem);
    hasher.finalize().into()
}

fn parse_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Loaded, TlsError> {
    let chain = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<CertificateDer<'static>>, _>>()
        .map_err(|source| TlsError::Pem { path: files.cert.clone(), source })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate { path: files.cert.clone() });
    };
    let fingerprint = cert_fingerprint(leaf);
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|source| TlsError::Pem { path: files.key.clone(), source })?
        .ok_or_else(|| TlsError::NoKey { path: files.key.clone() })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::Key { path: files.key.clone(), source })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key type that cannot tell its public key is let through, as rustls itself does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch { cert: files.cert.clone(), key: files.key.clone() });
        }
        Err(source) => return Err(TlsError::Certificate { path: files.cert.clone(), source }),
    }
    Ok(Loaded { key: Arc::new(certified), fingerprint, digest: pair_digest(cert_pem, key_pem) })
}

/// A TLS server configuration (TLS 1.2 and 1.3, ring, no client certificates) that takes its
/// certificate from `certs` on every handshake and offers ALPN `h2` and `http/1.1`.
pub fn server_config(certs: Arc<ReloadingCertificate>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
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

/// A throwaway CA and a serving certificate signed by it, all PEM.
#[derive(Clone)]
pub struct SelfSigned {
    /// The CA certificate: what clients trust (a webhook configuration's `caBundle`).
    pub ca_pem: String,
    /// The serving certificate (leaf only), for [`TlsFiles::cert`].
    pub cert_pem: String,
    /// The serving certificate's PKCS#8 private key, for [`TlsFiles::key`].
    pub key_pem: String,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A new CA (ECDSA P-256) and a serving certificate signed by it for `hosts`: IP literals
/// (`127.0.0.1`, `::1`) become IP SANs, anything else a DNS SAN (for a webhook Service,
/// `<service>.<namespace>.svc`). The first host is also the subject's common name. `hosts`
/// should not be empty: clients check the SANs.
///
/// For tests and local setups only; production certificates come from cert-manager or a Secret.
pub fn self_signed(hosts: &[&str]) -> Result<SelfSigned, TlsError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "berth webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(hosts.iter().map(|host| (*host).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, hosts.first().copied().unwrap_or("berth webhook"));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    Ok(SelfSigned { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}
