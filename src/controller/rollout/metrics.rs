//! Metric gates' I/O: each interval, for every batch being verified, ask Prometheus
//! the stage's queries and record the results in the batch's status. The state
//! machine reads them from there ([`crate::rollout::metric::fold`]) and decides.
//!
//! Counting on from stored status: a result's `failures` is the previous result's
//! plus one, and the status is written with a forced apply (no resourceVersion), so
//! counting on from a cached copy that predates this controller's last write would
//! overwrite `failures: 1` with `failures: 1` and never fail the gate. So when any
//! measurement is due, the rollout is read from the API first (one GET) and both
//! the measuring and the decision fold from that fresh status ([`measure_fresh`]).
//! (Counters kept in memory would need merging with status and forgetting on a
//! retry; the read is simpler and as correct: reconciles of one rollout never run
//! at once, and only this controller writes the results.)
//!
//! Queries run at most [`CONCURRENCY`] at a time, and a round takes at most
//! [`BUDGET`]: a hanging Prometheus times each query out, and what is left unasked
//! stays due for the next round, which comes at once.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;

use crate::{
    api::{
        EnvironmentRequest, Rollout,
        rollout::{BatchStep, MAX_METRIC_RESULTS, MeasurementVerdict, MetricGate, MetricResult, StagePhase},
    },
    promql::Prometheus,
    render::naming::environment_namespace,
    rollout::{Note, machine::NO_COMMIT, metric},
};

/// Why a stage with metric gates waits when no Prometheus is configured.
pub const NOT_CONFIGURED: &str = "metric gates need BERTH_PROMETHEUS_URL (an operator setting)";

/// Most queries in flight at once, per reconcile.
const CONCURRENCY: usize = 8;
/// Longest a round of measurements takes (a reconcile must not wait on a hanging
/// Prometheus times a hundred environments).
pub(super) const BUDGET: Duration = Duration::from_secs(20);

/// Prometheus' answer to one query, or why there is none.
type Answer = Result<Vec<metric::Sample>, String>;

/// Asks instant queries: [`Prometheus`], or a stand-in in tests.
pub(super) trait Ask: Sync {
    fn ask(&self, query: &str) -> impl Future<Output = Answer> + Send;
}

impl Ask for Prometheus {
    fn ask(&self, query: &str) -> impl Future<Output = Answer> + Send {
        self.query(query)
    }
}

/// What one round of measurements found.
#[derive(Debug, Default)]
pub(super) struct Measured {
    /// Per (stage, batch number): the batch's results after this round.
    batches: Vec<(String, u32, Vec<MetricResult>)>,
    pub notes: Vec<Note>,
    /// When the next measurement is due.
    pub next: Option<Timestamp>,
}

impl Measured {
    /// Records the results in `status` (the batch must still be the one measured).
    pub fn apply(&self, status: &mut crate::api::rollout::RolloutStatus) {
        for (stage, number, results) in &self.batches {
            let batch = status.stages.iter_mut().find(|s| &s.name == stage).and_then(|s| s.current.as_mut());
            if let Some(batch) = batch.filter(|b| b.number == *number) {
                batch.metrics.clone_from(results);
            }
        }
    }

    fn wake_at(&mut self, at: Timestamp) {
        self.next = Some(self.next.map_or(at, |n| n.min(at)));
    }
}

/// Measures what is due, from the rollout as stored: when anything is due, `read`
/// fetches it from the API and the fresh copy is both measured and returned (the
/// caller decides on it). Without Prometheus nothing is asked, so nothing is read.
pub(super) async fn measure_fresh<A, F, Fut, E>(
    rollout: Arc<Rollout>,
    requests: &BTreeMap<String, Arc<EnvironmentRequest>>,
    prometheus: Option<&A>,
    pull_requests: bool,
    now: Timestamp,
    read: F,
) -> Result<(Arc<Rollout>, Measured), E>
where
    A: Ask,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Rollout, E>>,
{
    let any_due = prometheus.is_some() && !plan(&rollout, requests, true, pull_requests, now).jobs.is_empty();
    let rollout = if any_due { Arc::new(read().await?) } else { rollout };
    let measured = measure(&rollout, requests, prometheus, pull_requests, now, BUDGET).await;
    Ok((rollout, measured))
}

/// One batch's results as they stand, and which of its gates are due.
struct Round<'a> {
    batches: Vec<BatchRound>,
    jobs: Vec<Job<'a>>,
    next: Option<Timestamp>,
}

struct BatchRound {
    stage: String,
    number: u32,
    before: Vec<MetricResult>,
    results: Vec<MetricResult>,
}

/// One due query of one gate (for one environment, or for the batch).
struct Job<'a> {
    batch: usize,
    gate: &'a MetricGate,
    environment: Option<String>,
    /// The resolved query, or why it cannot be resolved (asked as an error).
    query: Result<String, String>,
    /// The batch's commit (or merge): the first measurement is an interval after it.
    start: Timestamp,
}

/// What is due of `rollout`'s batches being verified (pure; without Prometheus, each
/// gate's result says so, once).
fn plan<'a>(
    rollout: &'a Rollout,
    requests: &BTreeMap<String, Arc<EnvironmentRequest>>,
    configured: bool,
    pull_requests: bool,
    now: Timestamp,
) -> Round<'a> {
    let mut round = Round { batches: Vec::new(), jobs: Vec::new(), next: None };
    let Some(status) = rollout.status.as_ref().filter(|s| !s.phase.is_some_and(|p| p.is_terminal())) else {
        return round;
    };
    for stage in &status.stages {
        let Some(batch) = stage.current.as_ref() else { continue };
        let waiting_merge = pull_requests && batch.merged_at.is_none();
        let committed = batch.step == BatchStep::Committed && batch.commit.as_deref() != Some(NO_COMMIT);
        if !committed || waiting_merge || stage.phase == StagePhase::Failed {
            continue;
        }
        let gates = rollout.spec.stages.iter().find(|s| s.name == stage.name).map(|s| s.metrics.as_slice());
        let Some(gates) = gates.filter(|g| !g.is_empty()) else { continue };
        let start = [batch.committed_at.clone(), batch.merged_at.clone()].into_iter().flatten().map(|t| t.0).max();
        let start = start.unwrap_or(now);
        let environments: Vec<&String> = batch.environments.iter().filter(|e| !batch.failed.contains(e)).collect();
        let namespaces: Vec<String> = environments.iter().map(|e| namespace_of(e, requests, rollout)).collect();
        let index = round.batches.len();
        let mut results = batch.metrics.clone();
        for gate in gates {
            let targets: Vec<Option<usize>> =
                if metric::per_environment(gate) { (0..environments.len()).map(Some).collect() } else { vec![None] };
            for target in targets {
                let environment = target.map(|i| environments[i].as_str());
                let values = metric::Values {
                    app: &rollout.spec.app,
                    revision: &rollout.spec.revision,
                    namespaces: &namespaces,
                    namespace: target.map(|i| namespaces[i].as_str()),
                };
                let previous = results.iter().find(|r| r.name == gate.name && r.environment.as_deref() == environment);
                let query = metric::resolve(&gate.query, values);
                if !configured {
                    // Said once: measuring nothing again and again would only bump a counter.
                    if previous.is_none() {
                        let measurement = metric::Measurement {
                            verdict: MeasurementVerdict::Error,
                            value: None,
                            message: Some(NOT_CONFIGURED.to_owned()),
                        };
                        let shown = query.as_deref().unwrap_or(&gate.query);
                        push(&mut results, metric::record(None, gate, environment, shown, measurement, now));
                    }
                    continue;
                }
                let due = metric::due(previous, gate, start);
                if now < due {
                    round.next = Some(round.next.map_or(due, |n| n.min(due)));
                    continue;
                }
                let environment = environment.map(str::to_owned);
                round.jobs.push(Job { batch: index, gate, environment, query, start });
            }
        }
        let (stage, number, before) = (stage.name.clone(), batch.number, batch.metrics.clone());
        round.batches.push(BatchRound { stage, number, before, results });
    }
    round
}

/// Measures what is due of the metric gates of `rollout`'s batches being verified,
/// at most [`CONCURRENCY`] queries at a time and for at most `budget`.
pub(super) async fn measure<A: Ask>(
    rollout: &Rollout,
    requests: &BTreeMap<String, Arc<EnvironmentRequest>>,
    prometheus: Option<&A>,
    pull_requests: bool,
    now: Timestamp,
    budget: Duration,
) -> Measured {
    let Round { mut batches, jobs, next } = plan(rollout, requests, prometheus.is_some(), pull_requests, now);
    let mut measured = Measured { next, ..Measured::default() };
    let mut answers: Vec<Option<Answer>> = jobs.iter().map(|_| None).collect();
    if let Some(prometheus) = prometheus {
        // Boxed and collected first: a stream holding the closure would not be `Send`
        // for every lifetime the controller's future needs (a known rustc limit).
        let asks: Vec<futures::future::BoxFuture<'_, (usize, Answer)>> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| -> futures::future::BoxFuture<'_, (usize, Answer)> {
                Box::pin(async move {
                    let answer = match &job.query {
                        Ok(query) => prometheus.ask(query).await,
                        Err(why) => Err(why.clone()),
                    };
                    (i, answer)
                })
            })
            .collect();
        let mut answered = futures::stream::iter(asks).buffer_unordered(CONCURRENCY);
        let until = tokio::time::Instant::now() + budget;
        while let Ok(Some((i, answer))) = tokio::time::timeout_at(until, answered.next()).await {
            answers[i] = Some(answer);
        }
    }
    // In the order planned, so that notes and results do not depend on who answered first.
    for (job, answer) in jobs.iter().zip(answers) {
        let Some(answer) = answer else {
            // Out of time: still due, asked in the next round (which comes at once).
            measured.wake_at(now);
            continue;
        };
        let results = &mut batches[job.batch].results;
        let environment = job.environment.as_deref();
        let at = results.iter().position(|r| r.name == job.gate.name && r.environment.as_deref() == environment);
        let shown = job.query.as_deref().unwrap_or(&job.gate.query);
        let measurement = metric::judge(answer, job.gate);
        let result = metric::record(at.map(|i| &results[i]), job.gate, environment, shown, measurement, now);
        if matches!(result.verdict, MeasurementVerdict::Fail | MeasurementVerdict::Error) {
            let whose = environment.map(|e| format!(" ({e})")).unwrap_or_default();
            let why = result.message.as_deref().unwrap_or("failed");
            let counted = if result.verdict == MeasurementVerdict::Fail {
                format!("; {} failed, {} allowed", result.failures, job.gate.failure_limit)
            } else {
                String::new()
            };
            let message = format!("metric {}{whose}: {why}{counted}", job.gate.name);
            measured.notes.push(Note { warning: true, reason: "MetricMeasured".to_owned(), message });
        }
        measured.wake_at(metric::due(Some(&result), job.gate, job.start));
        match at {
            Some(i) => results[i] = result,
            None => push(results, result),
        }
    }
    for batch in batches {
        if batch.results != batch.before {
            measured.batches.push((batch.stage, batch.number, batch.results));
        }
    }
    measured
}

/// Adds a result while the batch's list has room (a `{{namespace}}` gate over a
/// batch larger than that leaves the rest unmeasured: they wait, and say why).
fn push(results: &mut Vec<MetricResult>, result: MetricResult) {
    if results.len() < MAX_METRIC_RESULTS {
        results.push(result);
    }
}

/// The environment's namespace: as its status reports it, else as Berth names it.
fn namespace_of(environment: &str, requests: &BTreeMap<String, Arc<EnvironmentRequest>>, rollout: &Rollout) -> String {
    let request = requests.get(environment);
    let reported = request.and_then(|r| r.status.as_ref()).and_then(|s| s.namespace.clone());
    reported.unwrap_or_else(|| {
        let tenant =
            request.map_or_else(|| rollout.metadata.namespace.clone().unwrap_or_default(), |r| r.spec.tenant.clone());
        environment_namespace(&tenant, environment)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    /// A stand-in for Prometheus: answers `value` to every query after `delay`
    /// (forever when `None`), counting the queries in flight.
    struct StandIn {
        value: &'static str,
        delay: Option<Duration>,
        in_flight: AtomicUsize,
        most: AtomicUsize,
        asked: Mutex<Vec<String>>,
    }

    impl StandIn {
        fn new(value: &'static str, delay: Option<Duration>) -> Self {
            Self { value, delay, in_flight: AtomicUsize::new(0), most: AtomicUsize::new(0), asked: Mutex::default() }
        }
    }

    impl Ask for StandIn {
        fn ask(&self, query: &str) -> impl Future<Output = Result<Vec<metric::Sample>, String>> + Send {
            self.asked.lock().expect("asked").push(query.to_owned());
            async move {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                match self.delay {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending().await,
                }
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(vec![metric::Sample { value: self.value.parse().unwrap_or(f64::NAN), text: self.value.to_owned() }])
            }
        }
    }

    const T0: i64 = 1_800_000_000;

    /// A rollout whose `canary` batch (committed at T0, `environments`) is gated by
    /// `query` (max 0.05, every 10 s, failureLimit 1), with `metrics` recorded.
    fn rollout(query: &str, environments: &[String], metrics: serde_json::Value) -> Rollout {
        let mut rollout: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "checkout-v2", "namespace": "payments" },
            "spec": {
                "app": "checkout", "revision": "v2",
                "selector": { "matchLabels": { "app": "checkout" } },
                "stages": [{ "name": "canary", "metrics": [
                    { "name": "errors", "query": query, "max": 0.05, "interval": "10s", "failureLimit": 1 },
                ] }],
            },
            "status": { "phase": "Progressing", "stages": [{
                "name": "canary", "environments": environments, "batchSize": environments.len(),
                "current": {
                    "number": 1, "of": 1, "step": "Committed", "environments": environments,
                    "commit": "c1", "committedAt": "2027-01-15T08:00:00Z", "metrics": metrics,
                },
            }] },
        }))
        .expect("a rollout");
        let committed = Timestamp::from_second(T0).expect("a time");
        if let Some(batch) = rollout.status.as_mut().and_then(|s| s.stages[0].current.as_mut()) {
            batch.committed_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(committed));
        }
        rollout
    }

    fn failed_once(failures: u32) -> serde_json::Value {
        serde_json::json!([{
            "name": "errors", "query": "q", "value": "0.5", "verdict": "Fail", "message": "0.5 > max 0.05",
            "measurements": failures, "failures": failures, "measuredAt": "2027-01-15T08:00:10Z",
        }])
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("a time")
    }

    /// M2: a cached copy from before the last status write (no failure yet) must not
    /// be counted on from: the rollout is read, and the second failure is counted.
    #[tokio::test]
    async fn a_due_measurement_counts_on_from_the_rollout_as_stored_not_a_stale_copy() {
        let canary = ["canary".to_owned()];
        let mut stale = rollout("sum(errors)", &canary, serde_json::json!([]));
        let mut stored = rollout("sum(errors)", &canary, failed_once(1));
        for r in [&mut stale, &mut stored] {
            // Measured at T0 + 10 s; now T0 + 25 s: the next one is due.
            for m in
                r.status.as_mut().into_iter().flat_map(|s| s.stages[0].current.as_mut()).flat_map(|b| &mut b.metrics)
            {
                m.measured_at.0 = at(T0 + 10);
            }
        }
        let prometheus = StandIn::new("0.5", Some(Duration::ZERO));
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(stored.clone())
        };
        let (fresh, measured) =
            measure_fresh(Arc::new(stale.clone()), &BTreeMap::new(), Some(&prometheus), false, at(T0 + 25), read)
                .await
                .expect("measured");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(fresh.status, stored.status, "the caller decides on the stored rollout");
        let mut status = fresh.status.clone().unwrap_or_default();
        measured.apply(&mut status);
        let result = &status.stages[0].current.as_ref().expect("the batch").metrics[0];
        assert_eq!((result.measurements, result.failures), (2, 2), "{result:?}");
        assert!(measured.notes.iter().any(|n| n.message.contains("2 failed, 1 allowed")), "{:?}", measured.notes);

        // Nothing due (the stored copy was measured just now): nothing is read.
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(stored.clone())
        };
        let (_, measured) =
            measure_fresh(Arc::new(stored.clone()), &BTreeMap::new(), Some(&prometheus), false, at(T0 + 15), read)
                .await
                .expect("measured");
        assert_eq!(reads.load(Ordering::SeqCst), 0);
        assert_eq!(measured.next, Some(at(T0 + 20)));
    }

    /// M4: a hundred environments against a Prometheus that never answers: at most
    /// 8 queries at a time, and the round ends at its budget, the rest still due.
    #[tokio::test]
    async fn queries_run_eight_at_a_time_within_a_time_budget() {
        let environments: Vec<String> = (0..100).map(|i| format!("env-{i:03}")).collect();
        let rollout = rollout(r#"sum(errors{namespace="{{namespace}}"})"#, &environments, serde_json::json!([]));
        let now = at(T0 + 10);

        let hanging = StandIn::new("0.01", None);
        let started = std::time::Instant::now();
        let measured =
            measure(&rollout, &BTreeMap::new(), Some(&hanging), false, now, Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(hanging.most.load(Ordering::SeqCst), CONCURRENCY);
        assert!(measured.batches.is_empty(), "nothing answered, nothing recorded");
        assert_eq!(measured.next, Some(now), "what was not asked is due at once");

        let slow = StandIn::new("0.01", Some(Duration::from_millis(20)));
        let measured = measure(&rollout, &BTreeMap::new(), Some(&slow), false, now, BUDGET).await;
        assert_eq!(slow.most.load(Ordering::SeqCst), CONCURRENCY);
        assert_eq!(slow.asked.lock().expect("asked").len(), 100);
        let results = &measured.batches[0].2;
        assert_eq!(results.len(), 100);
        // Recorded in the planned order, whoever answered first.
        assert_eq!(results[0].environment.as_deref(), Some("env-000"));
        assert!(results.iter().all(|r| r.verdict == MeasurementVerdict::Pass));
        assert_eq!(measured.next, Some(at(T0 + 20)));
    }

    /// M7/M9: a query whose placeholder sits in a raw string is not asked; its
    /// result says why.
    #[tokio::test]
    async fn a_query_that_cannot_be_resolved_safely_is_not_asked_and_says_why() {
        let rollout = rollout("sum(errors{namespace=`{{namespace}}`})", &["canary".to_owned()], serde_json::json!([]));
        let prometheus = StandIn::new("0.01", Some(Duration::ZERO));
        let measured = measure(&rollout, &BTreeMap::new(), Some(&prometheus), false, at(T0 + 10), BUDGET).await;
        assert!(prometheus.asked.lock().expect("asked").is_empty());
        let result = &measured.batches[0].2[0];
        assert_eq!(result.verdict, MeasurementVerdict::Error);
        assert!(result.message.as_deref().is_some_and(|m| m.contains("raw string")), "{result:?}");
    }
}
