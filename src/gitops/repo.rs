//! The local clone: a bare repository the writer owns and may throw away.
//!
//! The remote is the source of truth and every batch is built on a freshly fetched
//! remote head, so the clone is only a cache of objects; the changes the writer still
//! owes the remote live in memory, and after a crash the controllers submit them
//! again. That is why a damaged clone (garbled `HEAD`, missing objects) is deleted and
//! created again instead of repaired, and why the clone is not fsynced: syncing each
//! loose object (about eight per environment) made the writer thread wait on the disk
//! for most of a burst. What a machine crash can leave half-written is covered instead:
//! the clone records the boot it was last opened in (`berth.bootId`, from
//! `/proc/sys/kernel/random/boot_id`), and a clone from an earlier boot is re-created.
//! A process crash loses nothing the kernel already has, so it keeps the clone.
//!
//! The clone is bare and nothing is checked out: trees are built from objects (see
//! [`super::tree`]), so there is no index or working tree to drift or re-hash.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{Repository, RepositoryInitOptions};

use super::error::{Error, ErrorContext, GitOp};

/// Name of the clone directory inside the writer's workdir. Only this directory is
/// ever deleted, so a mistyped workdir cannot cost more than a clone.
pub(crate) const CLONE_DIR: &str = "repo.git";
/// Config key recording which remote the clone belongs to.
const REMOTE_KEY: &str = "berth.remote";
/// Config key recording the boot the clone was last opened in.
const BOOT_KEY: &str = "berth.bootId";

/// Process-wide libgit2 settings for the writer; the first call sets them. `berth run`
/// calls it before any other thread exists (libgit2 writes its globals unsynchronized);
/// spawning a writer calls it too, for tests and benches.
///
/// Strict object creation is off: with it, libgit2 reads the header of every object a
/// tree or commit refers to before writing it, which for a loose object means opening
/// and inflating a file per tree entry (14 % of the writer's CPU in the burst bench,
/// `BERTH_BENCH_BURST_ONLY=1 cargo bench --bench gitops -- --bench`). Every id the
/// writer puts in a tree is an object it has just written to this clone, an entry of
/// a tree it read from it, or a folder it wrote in an earlier try (that cache is
/// cleared whenever the clone is replaced); and a commit that still referred to a
/// missing object could not be pushed: both the local copy and the pack sent to a
/// remote read every new object. Hash verification of objects read stays on.
///
/// libgit2's object cache is off: it kept every small tree the writer ever read (each
/// environment's folder, read again to push it) until 256 MiB, so it grew with the
/// fleet. Off, the operator bench's peak RSS at 11,200 requests fell from 126 to 116 MiB
/// with no more CPU per request; the few trees a commit reads again are cheap to parse.
pub fn configure_libgit2() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        git2::opts::strict_object_creation(false);
        git2::opts::enable_caching(false);
    });
}

/// This boot's id; `None` where the kernel does not say (then every start re-clones).
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_owned())
}

/// Where the clone lives.
pub(crate) fn clone_path(workdir: &Path) -> PathBuf {
    workdir.join(CLONE_DIR)
}

/// Opens the clone at `<workdir>/repo.git` if it is healthy and belongs to `remote`;
/// otherwise deletes it and creates an empty one. Returns whether it was re-created.
pub(crate) fn open_or_create(
    workdir: &Path,
    remote: &str,
    branch: &str,
    ctx: &ErrorContext,
) -> Result<(Repository, bool), Error> {
    let path = clone_path(workdir);
    std::fs::create_dir_all(workdir)
        .map_err(|source| Error::Workdir { path: workdir.to_owned(), source: Arc::new(source) })?;
    let boot = boot_id();
    if path.exists() {
        match open_verified(&path, remote, branch, boot.as_deref()) {
            Ok(repo) => return Ok((repo, false)),
            Err(reason) => {
                let reason = ctx.redactor.redact(&reason);
                tracing::warn!(path = %path.display(), %reason, "discarding damaged or foreign gitops clone");
                discard(&path)?;
            }
        }
    }
    create(&path, remote, branch, boot.as_deref(), ctx).map(|repo| (repo, true))
}

/// Deletes the clone directory (or a file squatting its name).
pub(crate) fn discard(path: &Path) -> Result<(), Error> {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Workdir { path: path.to_owned(), source: Arc::new(source) }),
    }
}

/// Opens and checks the clone; the error is a reason for the log.
fn open_verified(path: &Path, remote: &str, branch: &str, boot: Option<&str>) -> Result<Repository, String> {
    let repo = Repository::open_bare(path).map_err(|e| format!("cannot open: {}", e.message()))?;
    if !repo.is_bare() {
        return Err("not a bare repository".to_owned());
    }
    let config = repo.config().map_err(|e| format!("cannot read config: {}", e.message()))?;
    match config.get_string(REMOTE_KEY) {
        Ok(recorded) if recorded == remote => {}
        Ok(_) => return Err("clone belongs to another remote".to_owned()),
        Err(e) => return Err(format!("no {REMOTE_KEY} recorded: {}", e.message())),
    }
    // Unsynced writes from before a machine crash may be garbled: start over.
    match (config.get_string(BOOT_KEY), boot) {
        (Ok(recorded), Some(current)) if recorded == current => {}
        _ => return Err("clone was written before the machine last booted".to_owned()),
    }
    let head = repo.find_reference("HEAD").map_err(|e| format!("HEAD unreadable: {}", e.message()))?;
    let expected = format!("refs/heads/{branch}");
    match head.symbolic_target() {
        Ok(Some(target)) if target == expected => {}
        _ => return Err("HEAD does not point at the configured branch".to_owned()),
    }
    let references = repo.references().map_err(|e| format!("cannot list references: {}", e.message()))?;
    for reference in references {
        let reference = reference.map_err(|e| format!("unreadable reference: {}", e.message()))?;
        let commit =
            reference.peel_to_commit().map_err(|e| format!("reference points at a missing commit: {}", e.message()))?;
        commit.tree().map_err(|e| format!("commit {} has no readable tree: {}", commit.id(), e.message()))?;
    }
    drop((config, head));
    Ok(repo)
}

/// Creates an empty bare clone whose `HEAD` names `branch`.
fn create(
    path: &Path,
    remote: &str,
    branch: &str,
    boot: Option<&str>,
    ctx: &ErrorContext,
) -> Result<Repository, Error> {
    let mut options = RepositoryInitOptions::new();
    options.bare(true).initial_head(branch);
    let repo = Repository::init_opts(path, &options).map_err(|e| ctx.git(GitOp::Init, &e))?;
    {
        let mut config = repo.config().map_err(|e| ctx.git(GitOp::Init, &e))?;
        config
            .set_str(REMOTE_KEY, remote)
            .and_then(|()| boot.map_or(Ok(()), |boot| config.set_str(BOOT_KEY, boot)))
            .map_err(|e| ctx.git(GitOp::Init, &e))?;
    }
    Ok(repo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::redact::Redactor;

    fn ctx() -> ErrorContext {
        ErrorContext {
            remote: "file:///r".into(),
            branch: "main".into(),
            redactor: Redactor::default(),
            clone_dir: String::new(),
        }
    }

    #[test]
    fn creates_then_reopens_then_replaces_damaged_clone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, fresh) = open_or_create(dir.path(), "file:///r", "main", &ctx()).expect("create");
        assert!(fresh);
        assert_eq!(repo.config().expect("config").get_string(BOOT_KEY).ok(), boot_id());
        drop(repo);
        let (_repo, fresh) = open_or_create(dir.path(), "file:///r", "main", &ctx()).expect("open");
        assert!(!fresh, "a healthy clone is reused");
        std::fs::write(clone_path(dir.path()).join("HEAD"), "garbage\n").expect("write");
        let (_repo, fresh) = open_or_create(dir.path(), "file:///r", "main", &ctx()).expect("reclone");
        assert!(fresh, "a garbled HEAD means a fresh clone");
        let (_repo, fresh) = open_or_create(dir.path(), "file:///other", "main", &ctx()).expect("reclone");
        assert!(fresh, "a clone of another remote is replaced");

        // A clone last opened before the machine rebooted may hold half-written objects.
        let (repo, fresh) = open_or_create(dir.path(), "file:///other", "main", &ctx()).expect("open");
        assert!(!fresh, "the same boot keeps the clone");
        repo.config().expect("config").set_str(BOOT_KEY, "an-earlier-boot").expect("set");
        drop(repo);
        let (_repo, fresh) = open_or_create(dir.path(), "file:///other", "main", &ctx()).expect("reclone");
        assert!(fresh, "a clone from an earlier boot is replaced");
    }
}
