//! Berth's Prometheus metrics and the registry they live in.
//!
//! One [`Metrics`] value owns the registry; the GitOps writer registers its own metrics into
//! the same registry (`GitOpsMetrics::register(metrics.registry())`) so `/metrics` shows both.
//! Every label value comes from a closed enum or from admin-defined class names (few by
//! design), never from object names, so cardinality stays fixed as environments grow.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
};

use prometheus::{
    HistogramOpts, HistogramTimer, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    core::Collector,
};

use super::Error;

const RECONCILES: &str = "berth_reconciles_total";
const RECONCILE_DURATION: &str = "berth_reconcile_duration_seconds";
const ENVIRONMENTS: &str = "berth_environments";
const DRIFTED: &str = "berth_drifted_environments";
const LEADER: &str = "berth_leader";
const ORPHANS_REMOVED: &str = "berth_gitops_orphans_removed_total";
const ARGOCD_REFRESHES: &str = "berth_argocd_refreshes_total";
const DRIFT_REMEDIATIONS: &str = "berth_drift_remediations_total";
const WATCH_ERRORS: &str = "berth_watch_errors_total";
const WATCH_HEALTHY: &str = "berth_watch_healthy";
const ROLLOUT_BATCHES: &str = "berth_rollout_batches_total";
const ROLLOUT_GATE_FAILURES: &str = "berth_rollout_gate_failures_total";

/// Reconcile durations span cache-only passes (milliseconds) to passes that wait for a git
/// push (seconds), so the buckets reach further than Prometheus' defaults.
const DURATION_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The controller a reconcile belongs to: the `controller` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Tenant,
    EnvironmentClass,
    EnvironmentRequest,
    Rollout,
}

impl Controller {
    /// Every controller, so series can be created at zero before the first reconcile.
    pub const ALL: [Self; 4] = [Self::Tenant, Self::EnvironmentClass, Self::EnvironmentRequest, Self::Rollout];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::EnvironmentClass => "environment_class",
            Self::EnvironmentRequest => "environment_request",
            Self::Rollout => "rollout",
        }
    }
}

/// How a reconcile ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Success,
    /// Worth retrying with backoff (API or git hiccup).
    ErrorTransient,
    /// Retrying will not help until the object changes (invalid spec).
    ErrorPermanent,
}

impl Outcome {
    /// Every outcome, so series can be created at zero before the first reconcile.
    pub const ALL: [Self; 3] = [Self::Success, Self::ErrorTransient, Self::ErrorPermanent];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ErrorTransient => "error_transient",
            Self::ErrorPermanent => "error_permanent",
        }
    }
}

/// Berth's metrics and their registry; cheap to clone (every field is a shared handle).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_duration: HistogramVec,
    environments: IntGaugeVec,
    /// `(phase, class)` pairs currently exported by `environments`, so that
    /// [`Metrics::set_environments`] can drop the ones that vanished.
    environment_labels: Arc<Mutex<BTreeSet<(String, String)>>>,
    drifted_environments: IntGauge,
    leader: IntGauge,
    orphans_removed: IntCounter,
    argocd_refreshes: IntCounter,
    drift_remediations: IntCounter,
    watch_errors: IntCounterVec,
    watch_healthy: IntGaugeVec,
    rollout_batches: IntCounterVec,
    rollout_gate_failures: IntCounterVec,
}

impl Metrics {
    /// Creates a fresh registry holding Berth's metrics.
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(RECONCILES, "Reconciles finished, by controller and outcome"),
            &["controller", "outcome"],
        )
        .map_err(|source| Error::RegisterMetric { name: RECONCILES, source })?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(RECONCILE_DURATION, "Time spent in one reconcile, by controller")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["controller"],
        )
        .map_err(|source| Error::RegisterMetric { name: RECONCILE_DURATION, source })?;
        let environments = IntGaugeVec::new(
            Opts::new(ENVIRONMENTS, "Environments that exist, by phase and class"),
            &["phase", "class"],
        )
        .map_err(|source| Error::RegisterMetric { name: ENVIRONMENTS, source })?;
        let drifted_environments = IntGauge::new(DRIFTED, "Environments whose live state differs from Git")
            .map_err(|source| Error::RegisterMetric { name: DRIFTED, source })?;
        let leader = IntGauge::new(LEADER, "1 while this replica holds the leader lease, 0 otherwise")
            .map_err(|source| Error::RegisterMetric { name: LEADER, source })?;

        register(&registry, RECONCILES, &reconciles)?;
        register(&registry, RECONCILE_DURATION, &reconcile_duration)?;
        register(&registry, ENVIRONMENTS, &environments)?;
        register(&registry, DRIFTED, &drifted_environments)?;
        let orphans_removed =
            IntCounter::new(ORPHANS_REMOVED, "Folders removed from the GitOps repository because no request owns them")
                .map_err(|source| Error::RegisterMetric { name: ORPHANS_REMOVED, source })?;
        let argocd_refreshes = IntCounter::new(
            ARGOCD_REFRESHES,
            "Refreshes Berth asked of Argo CD's Applications that deploy its GitOps repository, after a push",
        )
        .map_err(|source| Error::RegisterMetric { name: ARGOCD_REFRESHES, source })?;
        let drift_remediations = IntCounter::new(
            DRIFT_REMEDIATIONS,
            "Sync operations Berth set on Argo CD's Applications to put drifted environments right",
        )
        .map_err(|source| Error::RegisterMetric { name: DRIFT_REMEDIATIONS, source })?;
        let watch_errors = IntCounterVec::new(
            Opts::new(WATCH_ERRORS, "Errors of Berth's watches (each retried with backoff), by kind watched"),
            &["kind"],
        )
        .map_err(|source| Error::RegisterMetric { name: WATCH_ERRORS, source })?;
        let watch_healthy = IntGaugeVec::new(
            Opts::new(WATCH_HEALTHY, "0 while the watch of a kind has been failing for longer than the threshold"),
            &["kind"],
        )
        .map_err(|source| Error::RegisterMetric { name: WATCH_HEALTHY, source })?;
        register(&registry, LEADER, &leader)?;
        register(&registry, ORPHANS_REMOVED, &orphans_removed)?;
        register(&registry, ARGOCD_REFRESHES, &argocd_refreshes)?;
        register(&registry, DRIFT_REMEDIATIONS, &drift_remediations)?;
        register(&registry, WATCH_ERRORS, &watch_errors)?;
        register(&registry, WATCH_HEALTHY, &watch_healthy)?;
        let rollout_batches = IntCounterVec::new(
            Opts::new(ROLLOUT_BATCHES, "Rollout batches committed, by action (promote, rollback)"),
            &["action"],
        )
        .map_err(|source| Error::RegisterMetric { name: ROLLOUT_BATCHES, source })?;
        let rollout_gate_failures = IntCounterVec::new(
            Opts::new(ROLLOUT_GATE_FAILURES, "Environments that failed a rollout's gate, by reason"),
            &["reason"],
        )
        .map_err(|source| Error::RegisterMetric { name: ROLLOUT_GATE_FAILURES, source })?;
        register(&registry, ROLLOUT_BATCHES, &rollout_batches)?;
        register(&registry, ROLLOUT_GATE_FAILURES, &rollout_gate_failures)?;
        for action in ["promote", "rollback"] {
            rollout_batches.with_label_values(&[action]);
        }

        // Create every (controller, outcome) series at zero: `rate()` and alerts then work
        // from the first scrape instead of only after the first error of each kind.
        for controller in Controller::ALL {
            for outcome in Outcome::ALL {
                reconciles.with_label_values(&[controller.as_str(), outcome.as_str()]);
            }
        }

        Ok(Self {
            registry,
            reconciles,
            reconcile_duration,
            environments,
            environment_labels: Arc::default(),
            drifted_environments,
            leader,
            orphans_removed,
            argocd_refreshes,
            drift_remediations,
            watch_errors,
            watch_healthy,
            rollout_batches,
            rollout_gate_failures,
        })
    }

    /// The registry, for other components (the GitOps writer) to register into and for
    /// the `/metrics` handler to gather from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Starts timing one reconcile of `controller`. The duration is observed when the timer
    /// is dropped, so an early return still counts; call [`ReconcileTimer::finish`] to also
    /// count the outcome.
    pub fn reconcile_timer(&self, controller: Controller) -> ReconcileTimer {
        ReconcileTimer {
            timer: self.reconcile_duration.with_label_values(&[controller.as_str()]).start_timer(),
            reconciles: self.reconciles.clone(),
            controller,
        }
    }

    /// Replaces the `berth_environments` gauges with `counts`, keyed by `(phase, class)`.
    ///
    /// Combinations missing from `counts` disappear from the output. Rather than resetting
    /// the whole vector first, only vanished combinations are removed, so a scrape that
    /// lands mid-update never sees an empty gauge.
    pub fn set_environments<P, C>(&self, counts: &BTreeMap<(P, C), i64>)
    where
        P: AsRef<str>,
        C: AsRef<str>,
    {
        let mut exported = self.environment_labels.lock().unwrap_or_else(PoisonError::into_inner);
        let current: BTreeSet<(String, String)> = counts
            .iter()
            .map(|((phase, class), count)| {
                self.environments.with_label_values(&[phase.as_ref(), class.as_ref()]).set(*count);
                (phase.as_ref().to_owned(), class.as_ref().to_owned())
            })
            .collect();
        for (phase, class) in exported.difference(&current) {
            // Only fails when the series is already gone, which is the goal anyway.
            let _ = self.environments.remove_label_values(&[phase.as_str(), class.as_str()]);
        }
        *exported = current;
    }

    /// Sets the number of environments whose live state drifted from Git.
    pub fn set_drifted_environments(&self, count: i64) {
        self.drifted_environments.set(count);
    }

    /// Counts one refresh asked of an Argo CD root app.
    pub fn count_argocd_refresh(&self) {
        self.argocd_refreshes.inc();
    }

    /// Counts one sync operation set on an Argo CD Application to put drift right.
    pub fn count_drift_remediation(&self) {
        self.drift_remediations.inc();
    }

    /// Counts folders the orphan sweeper removed from git.
    pub fn count_orphans_removed(&self, count: u64) {
        self.orphans_removed.inc_by(count);
    }

    /// Counts a rollout batch committed; `action` is `promote` or `rollback`.
    pub fn count_rollout_batch(&self, action: &'static str) {
        self.rollout_batches.with_label_values(&[action]).inc();
    }

    /// Counts an environment that failed a rollout's gate; `reason` is one of the
    /// gate's fixed reasons (`Degraded`, `SyncFailed`, `Drifted`, `ProgressDeadline`).
    pub fn count_rollout_gate_failure(&self, reason: &str) {
        self.rollout_gate_failures.with_label_values(&[reason]).inc();
    }

    /// Records whether this replica currently holds the leader lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

impl Metrics {
    /// Counts an error of the watch of `kind` (a fixed name chosen in code).
    pub fn count_watch_error(&self, kind: &'static str) {
        self.watch_errors.with_label_values(&[kind]).inc();
    }

    /// Records whether the watch of `kind` works (also creates its series at start).
    pub fn set_watch_healthy(&self, kind: &'static str, healthy: bool) {
        self.watch_errors.with_label_values(&[kind]);
        self.watch_healthy.with_label_values(&[kind]).set(i64::from(healthy));
    }
}

fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    name: &'static str,
    collector: &C,
) -> Result<(), Error> {
    registry.register(Box::new(collector.clone())).map_err(|source| Error::RegisterMetric { name, source })
}

/// Times one reconcile: observes `berth_reconcile_duration_seconds` when dropped.
#[derive(Debug)]
#[must_use = "the reconcile is timed until this is dropped or finished"]
pub struct ReconcileTimer {
    timer: HistogramTimer,
    reconciles: IntCounterVec,
    controller: Controller,
}

impl ReconcileTimer {
    /// Observes the duration and counts the reconcile under `outcome`.
    pub fn finish(self, outcome: Outcome) {
        self.reconciles.with_label_values(&[self.controller.as_str(), outcome.as_str()]).inc();
        self.timer.observe_duration();
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;

    fn render(metrics: &Metrics) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        assert!(encoder.encode(&metrics.registry().gather(), &mut buf).is_ok());
        String::from_utf8(buf).unwrap_or_default()
    }

    fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn finished_timer_counts_outcome_and_observes_duration() -> Result<(), Error> {
        let metrics = Metrics::new()?;
        metrics.reconcile_timer(Controller::EnvironmentRequest).finish(Outcome::ErrorTransient);
        metrics.reconcile_timer(Controller::EnvironmentRequest).finish(Outcome::Success);
        metrics.reconcile_timer(Controller::EnvironmentRequest).finish(Outcome::Success);

        let text = render(&metrics);
        assert!(text.contains("# TYPE berth_reconciles_total counter"), "{text}");
        assert!(
            text.contains(r#"berth_reconciles_total{controller="environment_request",outcome="success"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"berth_reconciles_total{controller="environment_request",outcome="error_transient"} 1"#),
            "{text}"
        );
        // Pre-created at zero.
        assert!(text.contains(r#"berth_reconciles_total{controller="tenant",outcome="error_permanent"} 0"#), "{text}");
        assert!(text.contains("# TYPE berth_reconcile_duration_seconds histogram"), "{text}");
        assert!(
            text.contains(r#"berth_reconcile_duration_seconds_count{controller="environment_request"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"berth_reconcile_duration_seconds_bucket{controller="environment_request",le="+Inf"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"berth_reconcile_duration_seconds_bucket{controller="environment_request",le="60"} 3"#),
            "{text}"
        );
        // No reconcile of another controller was timed, so it has no histogram series.
        assert!(!text.contains(r#"berth_reconcile_duration_seconds_count{controller="rollout"}"#), "{text}");
        Ok(())
    }

    #[test]
    fn dropped_timer_observes_duration_without_counting() -> Result<(), Error> {
        let metrics = Metrics::new()?;
        drop(metrics.reconcile_timer(Controller::Rollout));

        let text = render(&metrics);
        assert!(text.contains(r#"berth_reconcile_duration_seconds_count{controller="rollout"} 1"#), "{text}");
        for line in lines_starting(&text, r#"berth_reconciles_total{controller="rollout""#) {
            assert!(line.ends_with(" 0"), "{line}");
        }
        Ok(())
    }

    #[test]
    fn set_environments_replaces_previous_combinations() -> Result<(), Error> {
        let metrics = Metrics::new()?;
        let first = BTreeMap::from([(("Ready", "small"), 3), (("Pending", "small"), 1), (("Ready", "large"), 2)]);
        metrics.set_environments(&first);
        let text = render(&metrics);
        assert_eq!(lines_starting(&text, "berth_environments{").len(), 3, "{text}");
        assert!(text.contains(r#"berth_environments{class="small",phase="Ready"} 3"#), "{text}");

        let second = BTreeMap::from([(("Ready".to_owned(), "small".to_owned()), 4)]);
        metrics.set_environments(&second);
        let text = render(&metrics);
        assert_eq!(
            lines_starting(&text, "berth_environments{"),
            vec![r#"berth_environments{class="small",phase="Ready"} 4"#],
            "{text}"
        );

        metrics.set_environments(&BTreeMap::<(&str, &str), i64>::new());
        assert!(lines_starting(&render(&metrics), "berth_environments{").is_empty());
        Ok(())
    }

    #[test]
    fn plain_gauges_and_shared_registry() -> Result<(), Error> {
        let metrics = Metrics::new()?;
        metrics.set_drifted_environments(2);
        metrics.set_leader(true);
        let other = prometheus::IntCounter::new("berth_other_total", "registered by another component")
            .map_err(|source| Error::RegisterMetric { name: "berth_other_total", source })?;
        assert!(metrics.registry().register(Box::new(other.clone())).is_ok());
        other.inc();

        let text = render(&metrics.clone());
        assert!(text.contains("berth_drifted_environments 2"), "{text}");
        assert!(text.contains("berth_leader 1"), "{text}");
        assert!(text.contains("berth_other_total 1"), "{text}");
        metrics.set_leader(false);
        assert!(render(&metrics).contains("berth_leader 0"));

        metrics.set_watch_healthy("tenants", true);
        metrics.set_watch_healthy("namespaces", false);
        metrics.count_watch_error("namespaces");
        let text = render(&metrics);
        assert!(text.contains(r#"berth_watch_healthy{kind="tenants"} 1"#), "{text}");
        assert!(text.contains(r#"berth_watch_healthy{kind="namespaces"} 0"#), "{text}");
        assert!(text.contains(r#"berth_watch_errors_total{kind="tenants"} 0"#), "{text}");
        assert!(text.contains(r#"berth_watch_errors_total{kind="namespaces"} 1"#), "{text}");
        Ok(())
    }
}
