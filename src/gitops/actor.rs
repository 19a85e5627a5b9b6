//! The writer thread: one owner of the clone, fed over a channel, batching changes.
//!
//! `git2::Repository` is not `Sync` and libgit2 calls block (disk, network), so the
//! repository lives on one dedicated OS thread and never on a tokio worker. The thread
//! runs a small current-thread runtime only to wait on its channel with a timeout;
//! the git work itself blocks that thread alone. Async callers talk to it through a
//! bounded tokio mpsc channel and get answers on oneshot channels.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::batch::Exclusive;
use super::change::Change;
use super::config::WriterConfig;
use super::deadlines::RemoteActivity;
use super::error::Error;
use super::inventory::EnvironmentFolder;
use super::metrics::GitOpsMetrics;
use super::outcome::{CommitId, CommitOutcome};
use super::publish::{Engine, race_jitter};

/// Most changes in one batch; a full batch is committed without waiting for the window.
const MAX_BATCH: usize = 500;

/// How long a change that finds the writer quiet waits for company. The window is
/// for load: a lone change (the last batch held one change, or the writer has been
/// idle for a while) is committed after this short pause instead, so one request
/// costs one quick commit and a burst still collects into window-sized batches.
const SETTLE: Duration = Duration::from_millis(10);

/// A batch of at least [`EARLY_BATCH`] changes is published once no change has come
/// for this long, even inside its window. When every caller is already waiting on
/// this batch (the controller bounds its reconciles in flight) nothing more can
/// come, and the rest of the window would be dead time; a steady stream still fills
/// the whole window.
const QUIET: Duration = Duration::from_millis(20);

/// The quiet gap ends a batch early only once it holds this many changes: smaller
/// ones wait out the window, so a burst still lands in few commits.
const EARLY_BATCH: usize = 32;

/// When a batch that opened at `opened_deadline` (from [`batch_deadline`]) is
/// published, given that its latest change came at `now` and it holds `size`.
fn deadline_after_change(opened_deadline: Instant, now: Instant, size: usize) -> Instant {
    if size >= EARLY_BATCH { opened_deadline.min(now + QUIET) } else { opened_deadline }
}

/// When the next batch closes, for a change that opens it.
fn batch_deadline(now: Instant, window: Duration, last_batch: usize, last_flush: Option<Instant>) -> Instant {
    let idle = last_flush.is_none_or(|at| now.duration_since(at) >= window * 5);
    if last_batch <= 1 || idle { now + SETTLE.min(window) } else { now + window }
}

/// Callers whose changes wait on a contended remote, each with the time it began waiting.
type Waiting = Vec<(Reply<CommitOutcome>, Instant)>;

/// Requests that may queue while the writer is busy before callers wait to send.
const CHANNEL_CAPACITY: usize = 1024;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;
/// Resolves once the writer thread has opened the clone (or failed to).
pub(crate) type Ready = oneshot::Receiver<Result<(), Error>>;

/// What callers can ask of the writer thread.
pub(crate) enum Request {
    /// Apply a change (batched) and answer with the commit that holds it.
    Change { change: Change, reply: Reply<CommitOutcome> },
    /// Publish an exclusive batch as one commit of its own.
    Batch { batch: Exclusive, reply: Reply<CommitOutcome> },
    /// Fetch now and find the newest commit on the watched branch with these trailers.
    FindCommit { trailers: Vec<(String, String)>, depth: usize, reply: Reply<Option<CommitId>> },
    /// Fetch now and say whether a commit is on the watched branch.
    IsMerged { commit: CommitId, reply: Reply<bool> },
    /// Fetch now and report whether the remote is usable.
    CheckRemote { reply: Reply<()> },
    /// Fetch now and list the environment folders at the remote head.
    Folders { marker: String, reply: Reply<Vec<EnvironmentFolder>> },
    /// Publish what is queued or owed, then stop.
    Shutdown { reply: Reply<()> },
}

/// Starts the writer thread. The returned receiver resolves once the local clone is
/// open (or failed to open); the remote is contacted only afterwards.
pub(crate) fn spawn(
    config: WriterConfig,
    metrics: GitOpsMetrics,
    activity: RemoteActivity,
) -> Result<(mpsc::Sender<Request>, Ready), Error> {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (ready_tx, ready_rx) = oneshot::channel();
    super::repo::configure_libgit2();
    std::thread::Builder::new()
        .name("berth-gitops-writer".to_owned())
        .spawn(move || thread_main(config, metrics, activity, rx, ready_tx))
        .map_err(|source| Error::Spawn { source: source.into() })?;
    Ok((tx, ready_rx))
}

fn thread_main(
    config: WriterConfig,
    metrics: GitOpsMetrics,
    activity: RemoteActivity,
    rx: mpsc::Receiver<Request>,
    ready: oneshot::Sender<Result<(), Error>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(runtime) => runtime,
        Err(source) => {
            let _ = ready.send(Err(Error::Spawn { source: source.into() }));
            return;
        }
    };
    let window = config.batch_window;
    let retry_interval = config.retry.pending_retry_interval;
    let patience = config.retry.contended_patience;
    let remote = config.remote_display();
    let mut engine = match Engine::open(config, metrics, activity) {
        Ok(engine) => engine,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // Startup does not wait for the remote: an unreachable remote is reported here and
    // retried with every batch, so the operator can start while git is down.
    match engine.check_remote() {
        Ok(()) => tracing::info!(%remote, "gitops writer ready"),
        Err(e) => {
            tracing::warn!(error = %e, "gitops remote not reachable at startup; will retry with the first change")
        }
    }
    let stop = runtime.block_on(run(&mut engine, rx, window, retry_interval, patience));
    // Release the repository before answering, so a successor can open it at once.
    drop(engine);
    if let Some((reply, result)) = stop {
        let _ = reply.send(result);
    }
    tracing::info!(%remote, "gitops writer stopped");
}

/// When the open batch closes and what the last one looked like.
#[derive(Default)]
struct Schedule {
    /// When the open batch is published.
    deadline: Option<Instant>,
    /// The latest the open batch may wait: its window's end.
    window_end: Option<Instant>,
    /// When owed changes are tried again on their own.
    retry_at: Option<Instant>,
    /// Size and end of the last batch: what tells load from a lone change.
    last_batch: usize,
    last_flush: Option<Instant>,
}

/// The batching loop. Returns the shutdown reply (if asked to shut down) and the
/// result of the final flush.
async fn run(
    engine: &mut Engine,
    mut rx: mpsc::Receiver<Request>,
    window: Duration,
    retry_interval: Duration,
    patience: Duration,
) -> Option<(Reply<()>, Result<(), Error>)> {
    let mut batch: Vec<(Change, Reply<CommitOutcome>)> = Vec::new();
    let mut waiting: Waiting = Vec::new();
    let mut at = Schedule::default();
    let close = |engine: &mut Engine,
                 batch: &mut Vec<(Change, Reply<CommitOutcome>)>,
                 waiting: &mut Waiting,
                 at: &mut Schedule| {
        (at.deadline, at.window_end, at.last_batch) = (None, None, batch.len());
        let result = flush(engine, batch, waiting, patience);
        at.last_flush = Some(Instant::now());
        at.retry_at = next_retry(engine, retry_interval);
        if !waiting.is_empty() {
            // Lost to other writers, with callers waiting: go again at once, with
            // whatever arrives during the jitter riding along.
            let again = Instant::now() + race_jitter();
            (at.deadline, at.window_end, at.retry_at) = (Some(again), Some(again), None);
        }
        result
    };
    loop {
        let idle = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            biased;
            () = sleep_until(at.deadline.unwrap_or(idle)), if at.deadline.is_some() => {
                let _ = close(engine, &mut batch, &mut waiting, &mut at);
            }
            () = sleep_until(at.retry_at.unwrap_or(idle)), if at.retry_at.is_some() && batch.is_empty() => {
                // Owed changes from a failed batch, retried although nobody asked again.
                let _ = engine.publish(Vec::new());
                at.retry_at = next_retry(engine, retry_interval);
            }
            request = rx.recv() => match request {
                Some(Request::Change { change, reply }) => {
                    let now = Instant::now();
                    let end = *at.window_end.get_or_insert_with(|| batch_deadline(now, window, at.last_batch, at.last_flush));
                    batch.push((change, reply));
                    at.deadline = Some(deadline_after_change(end, now, batch.len()));
                    if batch.len() >= MAX_BATCH {
                        at.deadline = Some(Instant::now());
                    }
                }
                Some(Request::Batch { batch: exclusive, reply }) => {
                    // The open shared batch goes first, as a commit of its own; when it
                    // fails, so does the exclusive one, unapplied.
                    let ahead = if batch.is_empty() && waiting.is_empty() {
                        Ok(())
                    } else {
                        close(engine, &mut batch, &mut waiting, &mut at)
                    };
                    let _ = reply.send(ahead.and_then(|()| engine.publish_batch(&exclusive)));
                    if at.deadline.is_none() {
                        at.retry_at = next_retry(engine, retry_interval);
                    }
                }
                Some(Request::FindCommit { trailers, depth, reply }) => {
                    let _ = reply.send(engine.find_commit(&trailers, depth).map(|found| found.map(CommitId::from)));
                }
                Some(Request::IsMerged { commit, reply }) => {
                    let _ = reply.send(commit.oid().and_then(|oid| engine.is_merged(oid)));
                }
                // A probe that gave up waiting (the writer was stuck on the remote)
                // is not run late: stale probes would pile up behind a hung remote.
                Some(Request::CheckRemote { reply }) if reply.is_closed() => {}
                Some(Request::CheckRemote { reply }) => {
                    let _ = reply.send(engine.check_remote());
                }
                Some(Request::Folders { marker, reply }) => {
                    let _ = reply.send(engine.folders(&marker));
                }
                Some(Request::Shutdown { reply }) => {
                    let result = final_flush(engine, &mut batch, &mut waiting, patience);
                    return Some((reply, result));
                }
                None => {
                    // Every handle is gone: publish what is left, then stop.
                    let _ = final_flush(engine, &mut batch, &mut waiting, patience);
                    return None;
                }
            },
        }
    }
}

fn next_retry(engine: &Engine, interval: Duration) -> Option<Instant> {
    engine.has_pending().then(|| Instant::now() + interval)
}

/// Publishes the batch with whatever is owed and answers its callers and the waiting
/// ones. On a contended remote callers keep waiting instead, up to
/// `patience` ([`RetryPolicy::contended_patience`](super::RetryPolicy)): their changes
/// are in every later try.
fn flush(
    engine: &mut Engine,
    batch: &mut Vec<(Change, Reply<CommitOutcome>)>,
    waiting: &mut Waiting,
    patience: Duration,
) -> Result<(), Error> {
    if batch.is_empty() && waiting.is_empty() {
        return Ok(());
    }
    let (changes, replies): (Vec<_>, Vec<_>) = std::mem::take(batch).into_iter().unzip();
    let now = Instant::now();
    waiting.extend(replies.into_iter().map(|reply| (reply, now)));
    let result = engine.publish(changes);
    let contended = result.as_ref().is_err_and(Error::is_contended);
    for (reply, since) in std::mem::take(waiting) {
        if contended && since.elapsed() < patience {
            waiting.push((reply, since));
        } else {
            let _ = reply.send(result.clone());
        }
    }
    result.map(drop)
}

/// Publishes the queued batch, or else whatever a failed batch left owed, and answers
/// everyone still waiting: nothing will answer them later.
fn final_flush(
    engine: &mut Engine,
    batch: &mut Vec<(Change, Reply<CommitOutcome>)>,
    waiting: &mut Waiting,
    patience: Duration,
) -> Result<(), Error> {
    let result = if !batch.is_empty() || !waiting.is_empty() {
        flush(engine, batch, waiting, patience)
    } else if engine.has_pending() {
        engine.publish(Vec::new()).map(drop)
    } else {
        Ok(())
    };
    if let Err(e) = &result {
        for (reply, _) in waiting.drain(..) {
            let _ = reply.send(Err(e.clone()));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_change_settles_briefly_and_load_waits_the_window() {
        let window = Duration::from_millis(200);
        let now = Instant::now();
        // First change ever, or after a single-change batch: a short settle.
        assert_eq!(batch_deadline(now, window, 0, None), now + SETTLE);
        assert_eq!(batch_deadline(now, window, 1, Some(now)), now + SETTLE);
        // Right after a batch of many: the window.
        assert_eq!(
            batch_deadline(now + Duration::from_millis(50), window, 40, Some(now)),
            now + Duration::from_millis(250)
        );
        // A long quiet spell after a big batch counts as idle again.
        assert_eq!(
            batch_deadline(now + Duration::from_secs(2), window, 40, Some(now)),
            now + Duration::from_secs(2) + SETTLE
        );
        // A zero window never waits.
        assert_eq!(batch_deadline(now, Duration::ZERO, 0, None), now);
    }

    #[test]
    fn a_batch_goes_once_changes_stop_coming_and_never_after_its_window() {
        let now = Instant::now();
        let window_end = now + Duration::from_millis(200);
        let big = EARLY_BATCH;
        // Changes keep coming: each one moves the publish time, but only up to the window's end.
        assert_eq!(deadline_after_change(window_end, now, big), now + QUIET);
        let later = now + Duration::from_millis(150);
        assert_eq!(deadline_after_change(window_end, later, big), later + QUIET);
        assert_eq!(deadline_after_change(window_end, now + Duration::from_millis(190), big), window_end);
        // A small batch waits out its window, so a burst still lands in few commits.
        assert_eq!(deadline_after_change(window_end, now, EARLY_BATCH - 1), window_end);
        // A lone change's short settle is not stretched by the quiet gap.
        let settle_end = now + SETTLE;
        assert_eq!(deadline_after_change(settle_end, now, 1), settle_end);
    }
}
