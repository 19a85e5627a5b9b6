//! Watch health: whether each of Berth's watches is established, for `/readyz` and
//! the `berth_watch_*` metrics.
//!
//! A watch reports every successful event and every error. kube's watcher says
//! nothing when it re-establishes a watch that missed no change, so a watch counts
//! as failing from its first error until a successful event, or until it has been
//! quiet long enough to have re-established: [`RETRY_WINDOW`] after its last error
//! once a probe (a list of one object) reached its kind after that error, else
//! [`QUIET`] (longer than the watch backoff plus a connect timeout, so a watch still
//! failing always errs again within it).
//!
//! A watch failing for longer than the threshold (30 s by default) makes the replica
//! unready, once it had listed at least once: a watch that never listed (Argo CD's
//! Applications without RBAC in its namespace) is reported in the metrics only, and
//! Berth works on without it as before.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use super::{Metrics, ReadinessCheck};

/// After this long without an error, a failing watch counts as re-established.
pub const QUIET: Duration = Duration::from_secs(20);
/// After this long without an error, a failing watch whose kind a probe reached since
/// its last error counts as re-established: longer than the longest watch backoff
/// (5 s), so the watch has retried against an apiserver that answers.
pub const RETRY_WINDOW: Duration = Duration::from_secs(7);

/// One watch's error streak; pure, over the instants it is given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    /// First error of the current streak.
    failing_since: Option<Instant>,
    last_error: Option<Instant>,
    /// Last time a probe reached the watched kind.
    reached: Option<Instant>,
    /// Whether the watch ever delivered an event (it listed at least once).
    established: bool,
}

impl Streak {
    /// A successful event: the watch works. Returns whether a streak ended.
    pub fn ok(&mut self) -> bool {
        self.established = true;
        self.last_error = None;
        self.failing_since.take().is_some()
    }

    /// An error at `now`. Returns whether a new streak began.
    pub fn error(&mut self, now: Instant) -> bool {
        let quiet_before = self.last_error.is_none_or(|last| now.saturating_duration_since(last) > QUIET);
        self.last_error = Some(now);
        if quiet_before || self.failing_since.is_none() {
            self.failing_since = Some(now);
            return true;
        }
        false
    }

    /// A probe reached the watched kind at `now`.
    pub fn reached(&mut self, now: Instant) {
        self.reached = Some(now);
    }

    /// How long the watch has been failing at `now`; `None` when it works.
    pub fn failing_for(&self, now: Instant) -> Option<Duration> {
        let last = self.last_error?;
        let quiet = now.saturating_duration_since(last);
        let reached_since = self.reached.is_some_and(|reached| reached > last);
        if quiet > QUIET || (reached_since && quiet > RETRY_WINDOW) {
            return None;
        }
        Some(now.saturating_duration_since(self.failing_since?))
    }

    /// Whether the watch makes the replica unready at `now`: it had listed once and
    /// has been failing for longer than `threshold`.
    pub fn unhealthy(&self, now: Instant, threshold: Duration) -> bool {
        self.established && self.failing_for(now).is_some_and(|failing| failing > threshold)
    }
}

/// Every watch's streak, shared by the watches (which report) and the task that keeps
/// readiness and the gauges current; cheap to clone.
#[derive(Clone, Debug)]
pub struct Watches {
    streaks: Arc<Mutex<BTreeMap<&'static str, Streak>>>,
    metrics: Metrics,
}

/// What a watch of one kind reports into; cheap to clone.
#[derive(Clone, Debug)]
pub struct WatchReport {
    kind: &'static str,
    watches: Watches,
}

impl Watches {
    pub fn new(metrics: Metrics) -> Self {
        Self { streaks: Arc::default(), metrics }
    }

    /// The reporter of the watch of `kind` (a fixed name chosen in code: a label value).
    pub fn report(&self, kind: &'static str) -> WatchReport {
        self.with(|streaks| {
            streaks.entry(kind).or_default();
        });
        self.metrics.set_watch_healthy(kind, true);
        WatchReport { kind, watches: self.clone() }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, Streak>) -> T) -> T {
        f(&mut self.streaks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The kinds whose watch is unhealthy at `now`, in name order.
    pub fn unhealthy(&self, now: Instant, threshold: Duration) -> Vec<&'static str> {
        self.with(|streaks| {
            streaks.iter().filter(|(_, streak)| streak.unhealthy(now, threshold)).map(|(kind, _)| *kind).collect()
        })
    }

    /// Keeps `check` and the `berth_watch_healthy` gauges current, every second.
    pub async fn keep_current(self, check: ReadinessCheck, threshold: Duration) {
        loop {
            let now = Instant::now();
            let failing: Vec<(&'static str, bool)> = self.with(|streaks| {
                streaks
                    .iter()
                    .map(|(kind, streak)| (*kind, streak.failing_for(now).is_some_and(|f| f > threshold)))
                    .collect()
            });
            for (kind, failing) in failing {
                self.metrics.set_watch_healthy(kind, !failing);
            }
            let unhealthy = self.unhealthy(now, threshold);
            match (check.is_ready(), unhealthy.is_empty()) {
                (true, false) => ::tracing::error!(kinds = ?unhealthy, ?threshold, "watches failing; not ready"),
                (false, true) => ::tracing::info!("every watch works; ready"),
                _ => {}
            }
            check.set(unhealthy.is_empty());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl WatchReport {
    /// The watch delivered an event.
    pub fn ok(&self) {
        if self.watches.with(|streaks| streaks.entry(self.kind).or_default().ok()) {
            ::tracing::info!(kind = self.kind, "watch re-established");
        }
    }

    /// Whether the watch is failing (worth probing).
    pub fn failing(&self) -> bool {
        let now = Instant::now();
        self.watches.with(|streaks| streaks.get(self.kind).is_some_and(|streak| streak.failing_for(now).is_some()))
    }

    /// A probe reached the watched kind.
    pub fn reached(&self) {
        self.watches.with(|streaks| streaks.entry(self.kind).or_default().reached(Instant::now()));
    }

    /// The watch failed with `error`; it tries again after its backoff.
    pub fn error(&self, error: &dyn std::fmt::Display) {
        self.watches.metrics.count_watch_error(self.kind);
        if self.watches.with(|streaks| streaks.entry(self.kind).or_default().error(Instant::now())) {
            ::tracing::warn!(kind = self.kind, %error, "watch failed; retrying with backoff");
        } else {
            ::tracing::debug!(kind = self.kind, %error, "watch still failing");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLD: Duration = Duration::from_secs(30);

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn a_watch_that_keeps_failing_past_the_threshold_is_unhealthy_until_it_delivers_again() {
        let start = Instant::now();
        let mut streak = Streak::default();
        assert!(!streak.ok(), "no streak to end yet");
        assert!(streak.error(at(start, 0)), "the first error starts a streak");
        for second in (5..=35).step_by(5) {
            assert!(!streak.error(at(start, second)), "errors within the quiet period extend it");
        }
        assert_eq!(streak.failing_for(at(start, 35)), Some(Duration::from_secs(35)));
        assert!(!streak.unhealthy(at(start, 29), THRESHOLD));
        assert!(streak.unhealthy(at(start, 35), THRESHOLD));
        assert!(streak.ok(), "an event ends the streak");
        assert!(!streak.unhealthy(at(start, 36), THRESHOLD));
        assert_eq!(streak.failing_for(at(start, 36)), None);
    }

    #[test]
    fn a_watch_that_stops_erring_counts_as_re_established_after_the_quiet_period() {
        let start = Instant::now();
        let mut streak = Streak { established: true, ..Streak::default() };
        streak.error(at(start, 0));
        streak.error(at(start, 10));
        let quiet = QUIET.as_secs();
        assert!(streak.failing_for(at(start, 10 + quiet)).is_some());
        assert_eq!(streak.failing_for(at(start, 11 + quiet)), None, "silent: the watch came back");
        assert!(streak.error(at(start, 12 + quiet)), "an error after the quiet period starts a new streak");
        assert_eq!(streak.failing_for(at(start, 13 + quiet)), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_watch_whose_kind_a_probe_reached_counts_as_re_established_once_it_had_time_to_retry() {
        let start = Instant::now();
        let mut streak = Streak { established: true, ..Streak::default() };
        streak.error(at(start, 0));
        streak.reached(at(start, 1));
        streak.error(at(start, 3));
        let window = RETRY_WINDOW.as_secs();
        assert!(streak.failing_for(at(start, 4 + window)).is_some(), "reached before the last error: no proof");
        streak.reached(at(start, 4));
        assert!(streak.failing_for(at(start, 3 + window)).is_some(), "the watch may not have retried yet");
        assert_eq!(streak.failing_for(at(start, 4 + window)), None);
    }

    #[test]
    fn a_watch_that_never_listed_is_failing_but_does_not_make_the_replica_unready() {
        let start = Instant::now();
        let mut streak = Streak::default();
        for second in (0..=60).step_by(5) {
            streak.error(at(start, second));
        }
        assert_eq!(streak.failing_for(at(start, 60)), Some(Duration::from_secs(60)));
        assert!(!streak.unhealthy(at(start, 60), THRESHOLD));
    }

    #[test]
    fn the_registry_names_the_unhealthy_kinds() -> Result<(), super::super::Error> {
        let watches = Watches::new(Metrics::new()?);
        let (tenants, requests) = (watches.report("tenants"), watches.report("environmentrequests"));
        tenants.ok();
        requests.ok();
        requests.error(&"connection refused");
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(watches.unhealthy(later, Duration::ZERO), ["environmentrequests"]);
        assert!(watches.unhealthy(later, THRESHOLD).is_empty());
        requests.ok();
        assert!(watches.unhealthy(later, Duration::ZERO).is_empty());
        Ok(())
    }
}
