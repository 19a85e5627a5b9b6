//! Metric gates' I/O: each interval, for every batch being verified, ask Prometheus
//! the stage's queries and record the results in the batch's status. The state
//! machine reads them from there ([`crate::rollout::metric::fold`]) and decides.

use std::{collections::BTreeMap, sync::Arc};

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
}

/// Measures what is due of the metric gates of `rollout`'s batches being verified.
pub(super) async fn measure(
    rollout: &Rollout,
    requests: &BTreeMap<String, Arc<EnvironmentRequest>>,
    prometheus: Option<&Prometheus>,
    pull_requests: bool,
    now: Timestamp,
) -> Measured {
    let mut measured = Measured::default();
    let Some(status) = rollout.status.as_ref().filter(|s| !s.phase.is_some_and(|p| p.is_terminal())) else {
        return measured;
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
        let environments: Vec<&String> = batch.environments.iter().filter(|e| !batch.failed.contains(e)).collect();
        let namespaces: Vec<String> = environments.iter().map(|e| namespace_of(e, requests, rollout)).collect();
        let mut results = batch.metrics.clone();
        let mut batch_measured = Measured::default();
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
                let target = Target { gate, environment, values, start: start.unwrap_or(now) };
                batch_measured.one(&mut results, target, prometheus, now).await;
            }
        }
        measured.notes.append(&mut batch_measured.notes);
        measured.next = [measured.next, batch_measured.next].into_iter().flatten().min();
        if results != batch.metrics {
            measured.batches.push((stage.name.clone(), batch.number, results));
        }
    }
    measured
}

/// One query of one gate (for one environment, or for the batch).
struct Target<'a> {
    gate: &'a MetricGate,
    environment: Option<&'a str>,
    values: metric::Values<'a>,
    /// The batch's commit (or merge): the first measurement is an interval after it.
    start: Timestamp,
}

impl Measured {
    async fn one(
        &mut self,
        results: &mut Vec<MetricResult>,
        t: Target<'_>,
        prometheus: Option<&Prometheus>,
        now: Timestamp,
    ) {
        let at = results.iter().position(|r| r.name == t.gate.name && r.environment.as_deref() == t.environment);
        let previous = at.map(|i| &results[i]);
        let query = match metric::resolve(&t.gate.query, t.values) {
            Ok(query) => query,
            Err(why) => {
                let measurement =
                    metric::Measurement { verdict: MeasurementVerdict::Error, value: None, message: Some(why) };
                let result = metric::record(previous, t.gate, t.environment, &t.gate.query, measurement, now);
                match at {
                    Some(i) => results[i] = result,
                    None => push(results, result),
                }
                return;
            }
        };
        let Some(prometheus) = prometheus else {
            // Said once: measuring nothing again and again would only bump a counter.
            if previous.is_none() {
                let measurement = metric::Measurement {
                    verdict: MeasurementVerdict::Error,
                    value: None,
                    message: Some(NOT_CONFIGURED.to_owned()),
                };
                push(results, metric::record(None, t.gate, t.environment, &query, measurement, now));
            }
            return;
        };
        let due = metric::due(previous, t.gate, t.start);
        if now < due {
            self.wake_at(due);
            return;
        }
        let measurement = metric::judge(prometheus.query(&query).await, t.gate);
        let result = metric::record(previous, t.gate, t.environment, &query, measurement, now);
        if matches!(result.verdict, MeasurementVerdict::Fail | MeasurementVerdict::Error) {
            let whose = t.environment.map(|e| format!(" ({e})")).unwrap_or_default();
            let why = result.message.as_deref().unwrap_or("failed");
            let counted = if result.verdict == MeasurementVerdict::Fail {
                format!("; {} failed, {} allowed", result.failures, t.gate.failure_limit)
            } else {
                String::new()
            };
            let message = format!("metric {}{whose}: {why}{counted}", t.gate.name);
            self.notes.push(Note { warning: true, reason: "MetricMeasured".to_owned(), message });
        }
        self.wake_at(metric::due(Some(&result), t.gate, t.start));
        match at {
            Some(i) => results[i] = result,
            None => push(results, result),
        }
    }

    fn wake_at(&mut self, at: Timestamp) {
        self.next = Some(self.next.map_or(at, |n| n.min(at)));
    }
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
