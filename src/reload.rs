//! Values built from secret files and rebuilt when the files change on disk: approval
//! keys, the auth API's keys, the GitOps token. The one home of the reload rule, so a
//! rotated Secret takes effect without a restart and a bad rotation never takes Berth down.
//!
//! - **Noticing a change.** The files' *content* is hashed (SHA-256, kept in memory,
//!   never logged), not their stamps: a Kubernetes Secret volume swaps a `..data`
//!   symlink, and a rewrite with the same bytes should do nothing. A watched folder
//!   counts with the names and content of its files (dotfiles skipped: the volume's
//!   `..data` bookkeeping).
//! - **Rebuilding.** A new hash rebuilds the value from the files with the same function
//!   that built it at startup, and swaps it in atomically: readers take an [`Arc`] of the
//!   current value at use time and keep it for the rest of that use.
//! - **A bad new file** (half written, wrong format, too short) keeps the last good value;
//!   one warning names the files and the reason (whose messages never quote content) and
//!   is repeated only once the files change again.
//!
//! [`Reloading::watch`] polls every [`RELOAD_EVERY`] on the blocking thread pool;
//! [`Reloading::refresh`] checks at once, for callers that read at use time anyway (the
//! GitOps writer on each connection).

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock, Weak},
    time::Duration,
};

use sha2::{Digest, Sha256};

/// How often [`Reloading::watch`] re-reads the files. Reading a few small files costs
/// next to nothing; a kubelet takes up to a minute or so to update a Secret volume anyway.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

type Build<T> = dyn Fn() -> Result<T, String> + Send + Sync;

/// A value of type `T` built from files, rebuilt when their content changes.
pub struct Reloading<T> {
    /// What the value is, for logs ("approval signing key").
    what: &'static str,
    /// Watched files or folders; empty for a [`fixed`](Self::fixed) value.
    paths: Vec<PathBuf>,
    build: Option<Box<Build<T>>>,
    current: RwLock<Arc<T>>,
    /// Also serialises checks, so a watcher tick and a use-time refresh never rebuild twice.
    seen: Mutex<Seen>,
}

/// What the last check saw.
struct Seen {
    /// Hash of the files the current value was built from.
    digest: [u8; 32],
    /// Hash of files that failed to build, already reported.
    failing: Option<[u8; 32]>,
    /// When a use last asked for a check ([`Reloading::refresh_at_most_every`]).
    asked: Option<std::time::Instant>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// A value that never changes (tests, values not read from files).
    pub fn fixed(value: T) -> Arc<Self> {
        Arc::new(Reloading {
            what: "fixed value",
            paths: Vec::new(),
            build: None,
            current: RwLock::new(Arc::new(value)),
            seen: Mutex::new(Seen { digest: [0; 32], failing: None, asked: None }),
        })
    }

    /// Builds the value from `paths` with `build` now, failing as `build` does (a process
    /// should not start without its keys). `build` must read only files under `paths`.
    pub fn from_files<E: fmt::Display>(
        what: &'static str,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, E> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, E> {
        // Hashed before building: a write in between is seen as a change next time.
        let digest = digest(&paths);
        let value = build()?;
        Ok(Arc::new(Reloading {
            what,
            paths,
            build: Some(Box::new(move || build().map_err(|e| e.to_string()))),
            current: RwLock::new(Arc::new(value)),
            seen: Mutex::new(Seen { digest, failing: None, asked: None }),
        }))
    }

    /// The value to use now.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// [`Self::refresh`] for a use that found the value wanting (a token naming an
    /// unknown key), at most once per `min`: anyone can send such a token, and the
    /// files need not be read for each.
    pub fn refresh_at_most_every(&self, min: Duration) -> bool {
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if seen.asked.is_some_and(|at| at.elapsed() < min) {
                return false;
            }
            seen.asked = Some(std::time::Instant::now());
        }
        self.refresh()
    }

    /// Checks the files now and rebuilds the value if they changed; `true` when a new
    /// value was swapped in. Blocking (reads the files); logs as described in the module.
    pub fn refresh(&self) -> bool {
        let Some(build) = &self.build else { return false };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let digest = digest(&self.paths);
        if digest == seen.digest {
            if seen.failing.take().is_some() {
                tracing::info!(what = self.what, files = %self.files(), "the files hold the value in use again");
            }
            return false;
        }
        if seen.failing == Some(digest) {
            return false;
        }
        match build() {
            Ok(value) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
                *seen = Seen { digest, failing: None, asked: seen.asked };
                tracing::info!(what = self.what, files = %self.files(), "reloaded after the files changed");
                true
            }
            Err(error) => {
                seen.failing = Some(digest);
                tracing::warn!(
                    what = self.what,
                    files = %self.files(),
                    %error,
                    "cannot load the changed files; keeping the previous value"
                );
                false
            }
        }
    }

    /// Calls [`refresh`](Self::refresh) every `every` in a task that ends once every
    /// other [`Arc`] to this value is gone. Does nothing for a fixed value. Must be called
    /// within a Tokio runtime.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        if self.build.is_none() {
            return;
        }
        tokio::spawn(watch(Arc::downgrade(self), every.max(Duration::from_millis(10))));
    }

    fn files(&self) -> String {
        self.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// Shows the current value's own `Debug`: keys print their ids, never material. A
/// holder of a bare secret (`Reloading<String>`) must not derive `Debug` through it.
impl<T: fmt::Debug + Send + Sync + 'static> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current();
        f.debug_struct("Reloading").field("paths", &self.paths).field("current", &current).finish()
    }
}

async fn watch<T: Send + Sync + 'static>(weak: Weak<Reloading<T>>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await; // the first tick is immediate: the value was just built
    loop {
        interval.tick().await;
        let Some(value) = weak.upgrade() else { return };
        if let Err(error) = tokio::task::spawn_blocking(move || value.refresh()).await {
            tracing::warn!(%error, "a secret file check failed");
        }
    }
}

/// SHA-256 over the content of `paths`: a file's bytes, or a folder's non-hidden entries
/// by name and content. What cannot be read counts as its error kind, so a file that
/// appears or disappears is a change too.
fn digest(paths: &[PathBuf]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for path in paths {
        hasher.update(b"\0path\0");
        hasher.update(path.as_os_str().as_encoded_bytes());
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| !hidden(p)).collect(),
                Err(error) => {
                    hasher.update(format!("{:?}", error.kind()));
                    continue;
                }
            };
            entries.sort();
            for entry in entries {
                hash_file(&mut hasher, &entry);
            }
        } else {
            hash_file(&mut hasher, path);
        }
    }
    hasher.finalize().into()
}

fn hash_file(hasher: &mut Sha256, path: &Path) {
    hasher.update(b"\0file\0");
    hasher.update(path.as_os_str().as_encoded_bytes());
    match std::fs::read(path) {
        Ok(bytes) => {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        Err(error) => hasher.update(format!("\0unreadable {:?}", error.kind())),
    }
}

fn hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

#[cfg(test)]
mod tests;
