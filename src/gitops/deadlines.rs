//! Deadlines on the remote: libgit2's network timeouts, and how long the writer's
//! current fetch or push has run, read from outside the (blocked) writer thread.
//!
//! A remote that accepts the connection and never answers would otherwise hold the
//! single writer forever: no commit, no status, no error. With the timeouts a
//! fetch or push fails after `io` without an answer and the writer retries with the
//! next batch; the [`RemoteActivity`] record lets readiness and a metric show an
//! operation that runs on regardless (a remote that keeps trickling bytes).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::error::{Error, GitOp};

/// libgit2's deadlines for every remote operation of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkTimeouts {
    /// Connecting to the remote (https, git://, ssh).
    pub connect: Duration,
    /// Each read from or write to the remote (https and git:// through libgit2's
    /// socket stream, ssh through libssh2's session timeout): a remote silent for
    /// this long fails the operation.
    pub io: Duration,
}

impl NetworkTimeouts {
    /// The two timeouts in libgit2's unit (milliseconds), or why they cannot be set.
    pub fn millis(self) -> Result<(std::ffi::c_int, std::ffi::c_int), Error> {
        let millis = |what: &str, d: Duration| {
            std::ffi::c_int::try_from(d.as_millis()).ok().filter(|ms| *ms > 0).ok_or_else(|| Error::InvalidConfig {
                reason: format!("the gitops {what} timeout must be between 1 ms and about 24 days, not {d:?}"),
            })
        };
        Ok((millis("connect", self.connect)?, millis("read/write", self.io)?))
    }

    /// Sets them for the whole process.
    ///
    /// # Safety
    /// libgit2 keeps them in globals written without synchronization: call this
    /// before any other thread of the process exists (so none can be using libgit2).
    /// `berth run` does, before its runtime or anything else starts.
    #[allow(unsafe_code)]
    pub unsafe fn apply(self) -> Result<(), Error> {
        let (connect, io) = self.millis()?;
        let failed = |e: git2::Error| Error::InvalidConfig { reason: format!("cannot set libgit2's timeouts: {e}") };
        // SAFETY: the caller guarantees no other thread exists yet (see above).
        unsafe {
            git2::opts::set_server_connect_timeout_in_milliseconds(connect).map_err(failed)?;
            git2::opts::set_server_timeout_in_milliseconds(io).map_err(failed)?;
        }
        Ok(())
    }
}

/// Which remote operation the writer is in, since when. Cheap to clone; shared by the
/// writer thread (which records) and its handles (which read).
#[derive(Clone, Debug, Default)]
pub(crate) struct RemoteActivity(Arc<Mutex<Option<(GitOp, Instant)>>>);

impl RemoteActivity {
    /// Records that `op` starts now; the record ends when the guard is dropped.
    pub(crate) fn begin(&self, op: GitOp) -> Running<'_> {
        *self.lock() = Some((op, Instant::now()));
        Running(self)
    }

    /// The remote operation in progress and how long it has run, if any.
    pub(crate) fn current(&self) -> Option<(GitOp, Duration)> {
        self.lock().map(|(op, since)| (op, since.elapsed()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(GitOp, Instant)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A remote operation in progress (see [`RemoteActivity::begin`]).
pub(crate) struct Running<'a>(&'a RemoteActivity);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *self.0.lock() = None;
    }
}

/// The writer's remote operation has run longer than the stall limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the GitOps writer's {op} has been waiting on the remote for {}s (limit {}s): the remote may hold the connection without answering; nothing is committed until it answers or the operation times out",
    running.as_secs(),
    limit.as_secs()
)]
pub struct Stalled {
    pub op: GitOp,
    pub running: Duration,
    pub limit: Duration,
}

/// Whether `current` (from [`RemoteActivity::current`]) is a stall under `limit`.
pub(crate) fn stalled(current: Option<(GitOp, Duration)>, limit: Duration) -> Result<(), Stalled> {
    match current {
        Some((op, running)) if running > limit => Err(Stalled { op, running, limit }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_is_recorded_while_it_runs_and_forgotten_when_it_ends() {
        let activity = RemoteActivity::default();
        assert_eq!(activity.current(), None);
        {
            let _running = activity.begin(GitOp::Push);
            let (op, _) = activity.clone().current().expect("seen through a clone");
            assert_eq!(op, GitOp::Push);
        }
        assert_eq!(activity.current(), None, "ended with its guard");
    }

    #[test]
    fn only_an_operation_longer_than_the_limit_is_a_stall() {
        let limit = Duration::from_secs(300);
        assert_eq!(stalled(None, limit), Ok(()));
        assert_eq!(stalled(Some((GitOp::Fetch, Duration::from_secs(300))), limit), Ok(()));
        let stall = stalled(Some((GitOp::Fetch, Duration::from_secs(301))), limit).expect_err("a stall");
        assert_eq!(stall.op, GitOp::Fetch);
        let message = stall.to_string();
        assert!(message.contains("fetch has been waiting on the remote for 301s (limit 300s)"), "{message}");
    }

    #[test]
    fn timeouts_out_of_libgit2_s_range_are_refused() {
        let ok = NetworkTimeouts { connect: Duration::from_secs(15), io: Duration::from_millis(60_500) };
        assert_eq!(ok.millis().expect("in range"), (15_000, 60_500));
        let zero = NetworkTimeouts { connect: Duration::ZERO, io: Duration::from_secs(60) };
        assert!(zero.millis().expect_err("zero").to_string().contains("connect timeout must be between"));
        let huge = NetworkTimeouts { connect: Duration::from_secs(10), io: Duration::from_secs(u64::MAX / 2) };
        assert!(huge.millis().expect_err("too long").to_string().contains("read/write timeout"));
    }
}
