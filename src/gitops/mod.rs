//! The GitOps writer: the one owner of Berth's clone of the GitOps repository.
//!
//! Reconcilers ask "make folder P hold exactly these files" ([`WriterHandle::put`]) or
//! "remove P" ([`WriterHandle::remove`]) and await the commit that holds the result.
//! Everything else is the writer's business:
//!
//! - **One owner.** A dedicated thread owns the `git2::Repository` (it is not `Sync`,
//!   and libgit2 blocks); async callers talk to it over a channel. Run one writer per
//!   repository and branch (leader election does that across replicas): parallel
//!   writers to one repository corrupt each other.
//! - **Batching.** Changes arriving within [`WriterConfig::batch_window`] of the first
//!   one become one commit; later changes to the same folder win. Every waiter gets the
//!   batch's commit id.
//! - **Idempotent.** Changes are declarative and applied to the freshly fetched remote
//!   head; if the tree does not change, no commit is made and the current head is
//!   returned, so a restarted operator re-sending its whole state commits nothing.
//! - **Audit trail.** Messages list every folder changed, with `Berth-Request: ns/name`
//!   and `Berth-Generation: N` trailers, one pair per request (see [`message`]).
//! - **Push.** Fast-forward only, never forced. When someone else pushed first
//!   (non-fast-forward, "fetch first", "cannot lock ref", "incorrect old value"), the
//!   writer fetches, rebuilds the tree on the new head (milliseconds) and pushes again
//!   at once, after 2–25 ms of random jitter: a race, not an outage, so no growing
//!   sleep that a busy branch would fill with other pushes. Races do not count against
//!   [`RetryPolicy::max_push_attempts`]; changes arriving meanwhile ride in the next
//!   try. Callers keep waiting for up to 10 s of lost races, then get
//!   [`Error::Contended`] (their changes stay owed and keep being pushed);
//!   `berth_gitops_contended_changes` counts what waits. Retries reuse the folder
//!   trees already written, so only the path to them is rebuilt. 200 changes arriving
//!   over 2 s took 1.0–1.03× as long with another client pushing 5 or 19 times a
//!   second as without it; with the old growing backoff 2.2× and several minutes
//!   (`benches/gitops.rs`). Network failures back off exponentially up to
//!   [`RetryPolicy::max_push_attempts`]; auth, certificate and hook rejections are not
//!   retried. Failures are counted by kind in [`GitOpsMetrics`]. For `file://` remotes the
//!   writer does not use libgit2's local transport for pushing (it writes the remote
//!   ref without checking the old value, losing a concurrent push): it puts the new
//!   objects there itself (hard links where it can, as `git clone --local` does) and
//!   moves the ref with a compare-and-swap under git's ref lock.
//! - **Nothing lost.** Changes of a batch that could not be pushed stay owed: they ride
//!   along with the next batch and are retried on their own every
//!   [`RetryPolicy::pending_retry_interval`]. Their callers got an error and will
//!   usually requeue; since changes are declarative, applying them twice is harmless.
//!   Owed changes live in memory only; after a restart the reconcilers re-send state.
//!   A batch the server rejects (hook, protected branch) is dropped instead, so it
//!   cannot poison later batches.
//! - **Exclusive batches.** [`WriterHandle::commit_batch`] publishes a [`BatchCommit`]
//!   (a rollout batch) as one commit of its own: the open shared batch and any owed
//!   changes are published first, in their own commits (if that fails, so does the
//!   batch, unapplied); the batch is never merged with other callers' changes nor cut
//!   at the shared batch limit (1,200 folders are one commit). Its message is the
//!   caller's subject, the change list, the caller's `Berth-*` trailers in order, then
//!   one `Berth-Request`/`Berth-Generation` pair per change. All or nothing: a batch
//!   that cannot be pushed is not owed (the caller retries); races are retried at once
//!   as above, for up to [`RetryPolicy::contended_patience`], never forced. Re-sending a
//!   batch that landed commits nothing (`created: false`, the current head), so a new
//!   leader may repeat the commit step; [`WriterHandle::find_commit`] finds the batch's
//!   commit by its trailers and [`WriterHandle::is_merged`] says whether a commit is on
//!   the watched branch (pull-request mode: merged; a squash or rebase merge makes a new
//!   commit, so look it up by trailers then). Counted in
//!   `berth_gitops_exclusive_batches_total{outcome}`. A batch of 100 folders into a
//!   repository of 1,000 took 110 ms (p50; p90 270 ms) and all 1,000 at once 2.8 s, in
//!   a debug build (`benches/gitops.rs`). In pull-request mode the batch's
//!   promotion branch is named after its content and trailers, so a rollback restoring
//!   older bytes gets a branch of its own, and a promotion branch already merged starts
//!   again from the watched branch instead of answering "already there".
//! - **Modes.** [`PushMode::Direct`] pushes to the watched branch.
//!   [`PushMode::PullRequest`] pushes each batch to a promotion branch
//!   `<prefix><digest>` (digest of the batch's content, so a retry or restart finds the
//!   same branch) based on the watched branch. **Opening the pull request is not done
//!   here**: a provider hook (GitHub, GitLab, …) watching for `<prefix>*` branches, or a
//!   caller using [`CommitOutcome::branch`], opens it.
//! - **Secrets.** Credentials come from files ([`Credentials::token_from_file`],
//!   [`Credentials::ssh_key_from_files`]) and are re-read on each connection, so a
//!   rotated token is used without a restart; URLs carrying credentials are refused;
//!   [`Secret`] prints `[redacted]`; every git message is redacted (URL userinfo and
//!   known secret values) before it becomes an [`Error`].
//! - **Disposable clone.** The clone (`<workdir>/repo.git`) is bare, with nothing
//!   checked out, and only a cache of the remote: it is checked at start and deleted and
//!   re-created when damaged (or when a local git error shows up mid-batch). It is not
//!   fsynced (that was most of the writer's time in a burst); a clone written before
//!   the machine last booted is re-created instead (see [`repo`]).
//! - **Startup.** [`Writer::spawn`] returns once the local clone is usable; it does not
//!   wait for the remote. An unreachable remote is logged (URL redacted) and retried
//!   with each batch; [`WriterHandle::check_remote`] reports it on demand (readiness).
//!
//! Layout: `clusters/<cluster>/tenants/<tenant>/<request>/<file>.yaml`, see [`layout`].
//!
//! - **Deadlines.** [`NetworkTimeouts`] bound every connect and every read or write on
//!   the remote (`berth run` sets them before anything else); a fetch or push still
//!   waiting past the stall limit shows through [`WriterHandle::check_stall`] (readiness
//!   and `berth_gitops_remote_operation_seconds`), read without waiting on the writer.
//!
//! Not handled here: custom CA or `known_hosts` files (libgit2 uses the system store
//! and `~/.ssh/known_hosts`).

mod actor;
mod batch;
mod change;
mod config;
mod credentials;
mod deadlines;
mod error;
mod history;
mod inventory;
pub mod layout;
pub mod message;
mod metrics;
mod outcome;
mod publish;
pub(crate) mod redact;
mod remote;
mod repo;
pub use repo::configure_libgit2;
mod tree;

use std::collections::BTreeMap;

use tokio::sync::{mpsc, oneshot};

pub use batch::{BatchChange, BatchCommit};
pub use change::ChangeReason;
pub use config::{PushMode, RetryPolicy, WriterConfig};
pub use credentials::{Credentials, Secret};
pub use deadlines::{NetworkTimeouts, Stalled};
pub use error::{Error, FailureKind, GitFailure, GitOp};
pub use inventory::EnvironmentFolder;
pub use layout::{LayoutError, RepoPath, environment_path};
pub use metrics::GitOpsMetrics;
pub use outcome::{CommitId, CommitOutcome};
pub use redact::redact_userinfo;

use actor::{Reply, Request};
use batch::Exclusive;
use change::{Change, Operation};
use deadlines::RemoteActivity;

/// Starts GitOps writers.
#[derive(Debug)]
pub struct Writer;

impl Writer {
    /// Validates `config`, opens (or re-creates) the local clone on the writer thread
    /// and returns a handle. Does not wait for the remote; see the module docs.
    pub async fn spawn(config: WriterConfig, metrics: GitOpsMetrics) -> Result<WriterHandle, Error> {
        config.validate()?;
        let direct = config.mode == PushMode::Direct;
        let activity = RemoteActivity::default();
        let (tx, ready) = actor::spawn(config, metrics.clone(), activity.clone())?;
        ready.await.map_err(|_| Error::Stopped)??;
        Ok(WriterHandle { tx, direct, activity, metrics })
    }
}

/// A cheap, cloneable handle to a running writer.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Request>,
    /// Whether changes go straight to the watched branch ([`PushMode::Direct`]).
    direct: bool,
    /// The writer thread's remote operation in progress.
    activity: RemoteActivity,
    metrics: GitOpsMetrics,
}

impl WriterHandle {
    /// Whether changes land on the watched branch itself; in pull-request mode they wait
    /// on promotion branches until someone merges them.
    pub fn pushes_to_watched_branch(&self) -> bool {
        self.direct
    }

    /// Makes folder `path` hold exactly `files` (name → content); files not listed are
    /// removed. An empty `files` removes the folder. Returns once the batch holding
    /// this change is on the remote (or failed).
    pub async fn put(
        &self,
        path: RepoPath,
        files: BTreeMap<String, Vec<u8>>,
        reason: ChangeReason,
    ) -> Result<CommitOutcome, Error> {
        batch::check_files(&path, &files)?;
        self.submit(Change { path, operation: Operation::Put(files), reason }).await
    }

    /// Removes folder `path` and prunes parents that become empty. Removing a folder
    /// that does not exist succeeds without a commit.
    pub async fn remove(&self, path: RepoPath, reason: ChangeReason) -> Result<CommitOutcome, Error> {
        self.submit(Change { path, operation: Operation::Remove, reason }).await
    }

    /// Publishes `batch` as one commit of its own (see "Exclusive batches" in the module
    /// docs). Returns the outcome: the new commit, or `created: false` with the current
    /// head when the tree already held the batch. On error nothing of the batch is owed.
    pub async fn commit_batch(&self, batch: BatchCommit) -> Result<CommitOutcome, Error> {
        let batch = Exclusive::new(batch)?;
        self.ask(|reply| Request::Batch { batch, reply }).await
    }

    /// The newest commit reachable from the watched branch's remote head (fetched first)
    /// whose trailers include every `(key, value)` in `trailers` (keys without regard to
    /// case, values as the writer writes them); searches at most `depth` commits. For a
    /// new leader to prove a batch commit already landed.
    pub async fn find_commit(&self, trailers: Vec<(String, String)>, depth: usize) -> Result<Option<CommitId>, Error> {
        if trailers.is_empty() {
            return Err(Error::InvalidBatch { reason: "a search needs at least one trailer".to_owned() });
        }
        let trailers = trailers.into_iter().map(|(key, value)| (key, message::trailer_value(&value))).collect();
        self.ask(|reply| Request::FindCommit { trailers, depth, reply }).await
    }

    /// Whether `commit` is reachable from the watched branch's remote head (fetched
    /// first): in pull-request mode, whether the batch was merged.
    pub async fn is_merged(&self, commit: CommitId) -> Result<bool, Error> {
        self.ask(|reply| Request::IsMerged { commit, reply }).await
    }

    /// Whether the writer's current fetch or push has waited on the remote longer than
    /// `limit`, read at once (never queued behind a hung writer); also updates
    /// `berth_gitops_remote_operation_seconds`.
    pub fn check_stall(&self, limit: std::time::Duration) -> Result<(), Stalled> {
        let current = self.activity.current();
        self.metrics.remote_operation(current.map(|(_, running)| running));
        deadlines::stalled(current, limit)
    }

    /// Fetches from the remote now: `Ok` when it is reachable with the configured
    /// credentials. Suitable for a readiness check or a clear startup error.
    pub async fn check_remote(&self) -> Result<(), Error> {
        self.ask(|reply| Request::CheckRemote { reply }).await
    }

    /// Fetches and lists every environment folder (`clusters/*/tenants/*/*`) at the
    /// remote head of the watched branch, each with the content of its `marker` file:
    /// what git says is deployed, whatever the cluster's objects say.
    pub async fn environment_folders(&self, marker: &str) -> Result<Vec<EnvironmentFolder>, Error> {
        self.ask(|reply| Request::Folders { marker: marker.to_owned(), reply }).await
    }

    /// Publishes what is queued (and anything still owed from failed batches), then
    /// stops the writer and releases the clone. Other handles then get
    /// [`Error::Stopped`]. The error is the final publish's, if it failed.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.ask(|reply| Request::Shutdown { reply }).await
    }

    async fn submit(&self, change: Change) -> Result<CommitOutcome, Error> {
        self.ask(|reply| Request::Change { change, reply }).await
    }

    /// Sends the request `make` builds around a reply channel and awaits the answer.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)?
    }
}
