//! The serving certificate, reloaded from disk without a restart.
//!
//! The certificate and key are files: a Kubernetes Secret mounted into the pod (cert-manager or
//! a hand-made one), or files a test harness writes. [`ReloadingCertificate`] holds the current
//! pair in memory and hands it to every new TLS handshake; [`ReloadingCertificate::spawn_watch`]
//! notices when the files change and swaps in the new pair. A new pair that does not load (a
//! half-written file, a key that does not match the certificate) never replaces a good one: the
//! previous pair keeps serving and a warning names the file and the reason. Connections already
//! established keep the certificate they were handshaken with.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock, Weak},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::CertificateDer,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use sha2::{Digest, Sha256};

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

pub(super) fn ring_provider() -> Arc<CryptoProvider> {
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
