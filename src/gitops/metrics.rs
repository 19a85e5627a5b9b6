//! Prometheus metrics of the GitOps writer.
//!
//! Labels are closed enums (outcome, failure kind), never paths or request names, so
//! cardinality stays fixed however many environments exist.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::error::FailureKind;

/// Outcome of one batch, the `outcome` label of `berth_gitops_batches_total` and
/// `berth_gitops_exclusive_batches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchOutcome {
    Committed,
    Unchanged,
    /// Others kept moving the branch; the changes are pushed again at once.
    Contended,
    Failed,
}

impl BatchOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::Unchanged => "unchanged",
            Self::Contended => "contended",
            Self::Failed => "failed",
        }
    }
}

/// Handles to the writer's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct GitOpsMetrics {
    commits: IntCounter,
    batches: IntCounterVec,
    exclusive_batches: IntCounterVec,
    push_attempts: IntCounter,
    push_failures: IntCounterVec,
    batch_size: Histogram,
    push_duration: Histogram,
    pending_changes: IntGauge,
    contended_changes: IntGauge,
    reclones: IntCounter,
    remote_operation: IntGauge,
}

impl GitOpsMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            commits: IntCounter::new("berth_gitops_commits_total", "Commits the GitOps writer pushed")?,
            batches: IntCounterVec::new(
                Opts::new("berth_gitops_batches_total", "Change batches processed, by outcome"),
                &["outcome"],
            )?,
            exclusive_batches: IntCounterVec::new(
                Opts::new(
                    "berth_gitops_exclusive_batches_total",
                    "Exclusive batches (one commit of their own, e.g. a rollout batch) processed, by outcome",
                ),
                &["outcome"],
            )?,
            push_attempts: IntCounter::new(
                "berth_gitops_push_attempts_total",
                "Attempts to publish a batch (fetch, apply, commit, push)",
            )?,
            push_failures: IntCounterVec::new(
                Opts::new("berth_gitops_push_failures_total", "Failed publish attempts, by failure kind"),
                &["reason"],
            )?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new("berth_gitops_batch_size", "Changes received per batch")
                    .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0]),
            )?,
            push_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "berth_gitops_publish_duration_seconds",
                    "Time to publish a batch, retries included",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            )?,
            pending_changes: IntGauge::new(
                "berth_gitops_pending_changes",
                "Changes accepted but not yet on the remote",
            )?,
            contended_changes: IntGauge::new(
                "berth_gitops_contended_changes",
                "Changes waiting because other writers keep moving the branch (0: not contended); \
                 the pushes they lost count as push failures with reason non_fast_forward",
            )?,
            reclones: IntCounter::new(
                "berth_gitops_reclones_total",
                "Times the local clone was found damaged and cloned again",
            )?,
            remote_operation: IntGauge::new(
                "berth_gitops_remote_operation_seconds",
                "How long the writer's current fetch or push has been waiting on the remote (0: none); \
                 past the stall limit /readyz reports the writer stalled",
            )?,
        };
        registry.register(Box::new(metrics.commits.clone()))?;
        registry.register(Box::new(metrics.batches.clone()))?;
        registry.register(Box::new(metrics.exclusive_batches.clone()))?;
        registry.register(Box::new(metrics.push_attempts.clone()))?;
        registry.register(Box::new(metrics.push_failures.clone()))?;
        registry.register(Box::new(metrics.batch_size.clone()))?;
        registry.register(Box::new(metrics.push_duration.clone()))?;
        registry.register(Box::new(metrics.pending_changes.clone()))?;
        registry.register(Box::new(metrics.contended_changes.clone()))?;
        registry.register(Box::new(metrics.reclones.clone()))?;
        registry.register(Box::new(metrics.remote_operation.clone()))?;
        // Export every label value from the start so rate() works before the first failure.
        for kind in FailureKind::ALL {
            metrics.push_failures.with_label_values(&[kind.as_str()]);
        }
        for outcome in [BatchOutcome::Committed, BatchOutcome::Unchanged, BatchOutcome::Contended, BatchOutcome::Failed]
        {
            metrics.batches.with_label_values(&[outcome.as_str()]);
            metrics.exclusive_batches.with_label_values(&[outcome.as_str()]);
        }
        Ok(metrics)
    }

    pub(crate) fn commit(&self) {
        self.commits.inc();
    }

    pub(crate) fn batch(&self, outcome: BatchOutcome, size: usize, seconds: f64) {
        self.batches.with_label_values(&[outcome.as_str()]).inc();
        self.batch_size.observe(size as f64);
        self.push_duration.observe(seconds);
    }

    /// An exclusive batch ended; its commit, if any, is counted by [`Self::commit`].
    pub(crate) fn exclusive_batch(&self, outcome: BatchOutcome) {
        self.exclusive_batches.with_label_values(&[outcome.as_str()]).inc();
    }

    pub(crate) fn attempt(&self) {
        self.push_attempts.inc();
    }

    pub(crate) fn failure(&self, kind: FailureKind) {
        self.push_failures.with_label_values(&[kind.as_str()]).inc();
    }

    pub(crate) fn pending(&self, changes: usize) {
        self.pending_changes.set(i64::try_from(changes).unwrap_or(i64::MAX));
    }

    /// Changes waiting on a contended remote; 0 once a push landed or failed otherwise.
    pub(crate) fn contended(&self, changes: usize) {
        self.contended_changes.set(i64::try_from(changes).unwrap_or(i64::MAX));
    }

    pub(crate) fn reclone(&self) {
        self.reclones.inc();
    }

    /// How long the current remote operation has run, `None` when there is none.
    pub(crate) fn remote_operation(&self, running: Option<std::time::Duration>) {
        self.remote_operation.set(running.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_and_exports_all_failure_reasons() {
        let registry = Registry::new();
        let metrics = GitOpsMetrics::register(&registry).expect("register");
        metrics.failure(FailureKind::Network);
        let families = registry.gather();
        let failures = families.iter().find(|f| f.name() == "berth_gitops_push_failures_total").expect("family");
        assert_eq!(failures.get_metric().len(), FailureKind::ALL.len());
        assert!(GitOpsMetrics::register(&registry).is_err(), "double registration is an error");
    }
}
