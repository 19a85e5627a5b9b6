//! Metric gates (pure): a stage's PromQL queries resolved for a batch, Prometheus'
//! answers read and judged, and the latest results folded into each environment's
//! gate signal. Asking Prometheus is the controller's part
//! (`controller::rollout::metrics`); the machine only reads what it recorded.
//!
//! Decisions: NaN counts as no data (Prometheus answers NaN for 0/0, e.g. an error
//! ratio without traffic). An error or a timeout is not a failed measurement: the gate
//! waits (the progress deadline still bounds it), so an outage of the metrics system
//! holds a rollout rather than rolling production back. (Argo Rollouts counts errors
//! apart, `consecutiveErrorLimit`; here a person sees the error in status and events.)

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::gate::Signal;
use crate::api::rollout::{MAX_RESOLVED_QUERY, MeasurementVerdict, MetricGate, MetricResult, NoDataPolicy};

/// Time between measurements when a gate names none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest time between measurements (no busy loops against Prometheus).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest value text or message kept in status.
const MAX_TEXT: usize = 256;
/// The reason a failed metric gives its environments.
pub const METRIC_FAILED: &str = "MetricFailed";

/// The gate's interval, at least [`MIN_INTERVAL`].
pub fn interval(gate: &MetricGate) -> Duration {
    gate.interval.as_ref().and_then(|d| d.parse().ok()).unwrap_or(DEFAULT_INTERVAL).max(MIN_INTERVAL)
}

/// Whether the query runs once per environment (it names `{{namespace}}`).
pub fn per_environment(gate: &MetricGate) -> bool {
    gate.query.contains("{{namespace}}")
}

/// What the placeholders stand for in one query.
#[derive(Clone, Copy, Debug)]
pub struct Values<'a> {
    pub app: &'a str,
    pub revision: &'a str,
    /// The batch's environment namespaces.
    pub namespaces: &'a [String],
    /// The environment a per-environment query measures.
    pub namespace: Option<&'a str>,
}

/// `query` with its placeholders substituted, each value escaped for a PromQL string
/// literal so no name or revision can end the literal and add PromQL of its own.
pub fn resolve(query: &str, values: Values<'_>) -> String {
    let alternation = values.namespaces.iter().map(|n| regex_escape(n)).collect::<Vec<_>>().join("|");
    query
        .replace("{{namespaces}}", &string_escape(&alternation))
        .replace("{{namespace}}", &string_escape(values.namespace.unwrap_or_default()))
        .replace("{{revision}}", &string_escape(values.revision))
        .replace("{{app}}", &string_escape(values.app))
}

/// Escapes RE2's metacharacters (Prometheus matches `=~` with RE2, anchored).
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes for any PromQL string literal (`"…"`, `'…'` or `` `…` ``; a raw backtick
/// string has no escapes, so a backtick is dropped).
fn string_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '`' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A sample's value: the number and the text Prometheus sent (`"NaN"`, `"+Inf"`…).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub text: String,
}

/// Reads an instant query's answer (Prometheus' HTTP API format): the samples of a
/// vector or a scalar, or why there are none to judge.
pub fn parse(body: &[u8]) -> Result<Vec<Sample>, String> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("Prometheus answered something other than JSON: {e}"))?;
    match answer["status"].as_str() {
        Some("success") => {}
        Some("error") => {
            let kind = answer["errorType"].as_str().unwrap_or("error");
            let error = answer["error"].as_str().unwrap_or("no message");
            return Err(bounded(&format!("Prometheus: {kind}: {error}")));
        }
        _ => return Err("Prometheus' answer has no status".to_owned()),
    }
    let data = &answer["data"];
    match data["resultType"].as_str() {
        Some("vector") => {
            let series = data["result"].as_array().ok_or("a vector without a result list")?;
            series.iter().map(|s| sample(&s["value"])).collect()
        }
        Some("scalar") => Ok(vec![sample(&data["result"])?]),
        Some(other) => Err(format!("an instant query must give a vector or a scalar, not a {}", bounded(other))),
        None => Err("Prometheus' answer has no resultType".to_owned()),
    }
}

/// `[<unix time>, "<value>"]`.
fn sample(pair: &serde_json::Value) -> Result<Sample, String> {
    let text = pair.get(1).and_then(|v| v.as_str()).ok_or("a sample without a [time, \"value\"] pair")?;
    let value = text.parse::<f64>().map_err(|_| format!("a sample value that is not a number: {}", bounded(text)))?;
    Ok(Sample { value, text: text.to_owned() })
}

/// One measurement's verdict, the values it saw and why it did not pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub verdict: MeasurementVerdict,
    pub value: Option<String>,
    pub message: Option<String>,
}

/// Judges an answer against the gate: every value within `min`/`max`; NaN is no data.
pub fn judge(answer: Result<Vec<Sample>, String>, gate: &MetricGate) -> Measurement {
    let samples = match answer {
        Ok(samples) => samples,
        Err(error) => {
            return Measurement { verdict: MeasurementVerdict::Error, value: None, message: Some(bounded(&error)) };
        }
    };
    let value =
        (!samples.is_empty()).then(|| bounded(&samples.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(", ")));
    let numbers: Vec<f64> = samples.iter().map(|s| s.value).filter(|v| !v.is_nan()).collect();
    if numbers.is_empty() {
        let why = if samples.is_empty() { "no data (an empty result)" } else { "no data (NaN)" };
        let verdict = match gate.on_no_data {
            NoDataPolicy::Wait => MeasurementVerdict::NoData,
            NoDataPolicy::Pass => MeasurementVerdict::Pass,
            NoDataPolicy::Fail => MeasurementVerdict::Fail,
        };
        let message = (verdict != MeasurementVerdict::Pass).then(|| why.to_owned());
        return Measurement { verdict, value, message };
    }
    let below = gate.min.and_then(|min| numbers.iter().find(|v| **v < min).map(|v| format!("{v} < min {min}")));
    let above = gate.max.and_then(|max| numbers.iter().find(|v| **v > max).map(|v| format!("{v} > max {max}")));
    match below.or(above) {
        Some(why) => Measurement { verdict: MeasurementVerdict::Fail, value, message: Some(why) },
        None => Measurement { verdict: MeasurementVerdict::Pass, value, message: None },
    }
}

/// The result after `measurement`, counting on from `previous`.
pub fn record(
    previous: Option<&MetricResult>,
    gate: &MetricGate,
    environment: Option<&str>,
    query: &str,
    measurement: Measurement,
    now: Timestamp,
) -> MetricResult {
    let (measurements, failures) = previous.map_or((0, 0), |p| (p.measurements, p.failures));
    let failed = u32::from(measurement.verdict == MeasurementVerdict::Fail);
    MetricResult {
        name: gate.name.clone(),
        environment: environment.map(str::to_owned),
        query: query.chars().take(MAX_RESOLVED_QUERY).collect(),
        value: measurement.value,
        verdict: measurement.verdict,
        message: measurement.message,
        measurements: measurements.saturating_add(1),
        failures: failures.saturating_add(failed),
        measured_at: Time(now),
    }
}

/// Whether a result has used up its failure limit.
pub fn failed(result: &MetricResult, gate: &MetricGate) -> bool {
    result.failures > gate.failure_limit
}

/// When the metric is measured next: one interval after the last measurement, or
/// after `start` (the batch's commit or merge) for the first.
pub fn due(previous: Option<&MetricResult>, gate: &MetricGate, start: Timestamp) -> Timestamp {
    let from = previous.map_or(start, |p| p.measured_at.0);
    let interval = k8s_openapi::jiff::SignedDuration::try_from(interval(gate)).unwrap_or_default();
    from.checked_add(interval).unwrap_or(from)
}

/// The results that judge `environment`: its own, and the batch-wide ones.
fn results_for<'a>(
    results: &'a [MetricResult],
    gate: &MetricGate,
    environment: &str,
) -> impl Iterator<Item = &'a MetricResult> {
    let name = gate.name.clone();
    let environment = environment.to_owned();
    results.iter().filter(move |r| r.name == name && r.environment.as_deref().is_none_or(|e| e == environment))
}

/// `signal` with the metric gates folded in: a metric past its failure limit fails
/// the environment (`MetricFailed`); an environment otherwise passing waits until
/// every metric's latest measurement passed.
pub fn fold(signal: Signal, environment: &str, gates: &[MetricGate], results: &[MetricResult]) -> Signal {
    if gates.is_empty() || matches!(signal, Signal::Superseded(_)) {
        return signal;
    }
    for gate in gates {
        if let Some(result) = results_for(results, gate, environment).find(|r| failed(r, gate)) {
            let message = format!(
                "metric {}: {} failed measurement(s), {} allowed; last {}",
                gate.name,
                result.failures,
                gate.failure_limit,
                result.message.as_deref().or(result.value.as_deref()).unwrap_or("no value")
            );
            return Signal::Failing { reason: METRIC_FAILED, message };
        }
    }
    if signal != Signal::Passed {
        return signal;
    }
    for gate in gates {
        let mut latest = results_for(results, gate, environment).peekable();
        if latest.peek().is_none() {
            return Signal::Waiting(format!("metric {} is not measured yet", gate.name));
        }
        if let Some(result) = latest.find(|r| r.verdict != MeasurementVerdict::Pass) {
            let why = result.message.as_deref().unwrap_or("not passed yet");
            return Signal::Waiting(format!("metric {}: {why}", gate.name));
        }
    }
    Signal::Passed
}

fn bounded(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(min: Option<f64>, max: Option<f64>, on_no_data: NoDataPolicy) -> MetricGate {
        MetricGate { name: "errors".into(), query: "q".into(), min, max, interval: None, failure_limit: 1, on_no_data }
    }

    fn vector(values: &[&str]) -> Vec<u8> {
        let result: Vec<serde_json::Value> = values
            .iter()
            .map(|v| serde_json::json!({"metric": {"namespace": "a"}, "value": [1_435_781_451.781, v]}))
            .collect();
        serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}})
            .to_string()
            .into_bytes()
    }

    fn texts(answer: Result<Vec<Sample>, String>) -> Vec<String> {
        answer.expect("parsed").into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn it_reads_vectors_scalars_and_the_special_values_prometheus_writes() {
        assert_eq!(texts(parse(&vector(&["1", "0.25"]))), ["1", "0.25"]);
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1435781451.781,"3e-2"]}}"#;
        assert_eq!(parse(scalar).expect("scalar")[0].value, 0.03);
        let special = parse(&vector(&["NaN", "+Inf", "-Inf"])).expect("special");
        assert!(special[0].value.is_nan());
        assert_eq!((special[1].value, special[2].value), (f64::INFINITY, f64::NEG_INFINITY));
        assert_eq!(parse(&vector(&[])), Ok(Vec::new()));
    }

    #[test]
    fn errors_and_malformed_answers_say_what_went_wrong() {
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        assert_eq!(parse(error), Err("Prometheus: bad_data: parse error at char 5".to_owned()));
        assert!(parse(b"<html>502</html>").is_err_and(|e| e.contains("other than JSON")));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse(matrix).is_err_and(|e| e.contains("matrix")));
        let not_a_number = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"lots"]}}"#;
        assert!(parse(not_a_number).is_err_and(|e| e.contains("lots")));
        let no_pair = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#;
        assert!(parse(no_pair).is_err());
        assert!(parse(br#"{"data":{}}"#).is_err_and(|e| e.contains("no status")));
    }

    #[test]
    fn every_value_must_lie_within_the_bounds() {
        let within = gate(Some(0.0), Some(0.05), NoDataPolicy::Wait);
        assert_eq!(judge(parse(&vector(&["0.01", "0.05"])), &within).verdict, MeasurementVerdict::Pass);
        let over = judge(parse(&vector(&["0.01", "0.2"])), &within);
        assert_eq!(over.verdict, MeasurementVerdict::Fail);
        assert_eq!(over.value.as_deref(), Some("0.01, 0.2"));
        assert!(over.message.is_some_and(|m| m.contains("> max 0.05")));
        let at_least = gate(Some(0.99), None, NoDataPolicy::Wait);
        assert_eq!(judge(parse(&vector(&["0.5"])), &at_least).verdict, MeasurementVerdict::Fail);
        assert_eq!(judge(parse(&vector(&["+Inf"])), &at_least).verdict, MeasurementVerdict::Pass);
        assert_eq!(judge(parse(&vector(&["+Inf"])), &within).verdict, MeasurementVerdict::Fail);
    }

    #[test]
    fn an_empty_result_or_nan_is_no_data_and_on_no_data_decides() {
        for (policy, verdict) in [
            (NoDataPolicy::Wait, MeasurementVerdict::NoData),
            (NoDataPolicy::Pass, MeasurementVerdict::Pass),
            (NoDataPolicy::Fail, MeasurementVerdict::Fail),
        ] {
            let g = gate(None, Some(1.0), policy);
            assert_eq!(judge(parse(&vector(&[])), &g).verdict, verdict, "{policy:?} empty");
            assert_eq!(judge(parse(&vector(&["NaN"])), &g).verdict, verdict, "{policy:?} NaN");
        }
        // NaN beside real values is skipped; the real ones are judged.
        let g = gate(None, Some(1.0), NoDataPolicy::Wait);
        assert_eq!(judge(parse(&vector(&["NaN", "2"])), &g).verdict, MeasurementVerdict::Fail);
        assert_eq!(judge(parse(&vector(&["NaN", "0.5"])), &g).verdict, MeasurementVerdict::Pass);
    }

    #[test]
    fn an_error_is_not_a_failed_measurement() {
        let g = gate(None, Some(1.0), NoDataPolicy::Fail);
        let error = judge(Err("timed out after 10s".into()), &g);
        assert_eq!(error.verdict, MeasurementVerdict::Error);
        let result = record(None, &g, None, "q", error, Timestamp::UNIX_EPOCH);
        assert_eq!((result.measurements, result.failures), (1, 0));
    }

    #[test]
    fn placeholders_are_escaped_so_names_cannot_add_promql() {
        let namespaces = ["tn-a-web".to_owned(), "tn-b.web".to_owned()];
        let values = Values {
            app: "web",
            revision: "v2\"} or vector(1) #",
            namespaces: &namespaces,
            namespace: Some("tn-a-web"),
        };
        let query =
            r#"rate(x{namespace=~"{{namespaces}}", ns="{{namespace}}", app="{{app}}", rev="{{revision}}"}[1m])"#;
        assert_eq!(
            resolve(query, values),
            r#"rate(x{namespace=~"tn-a-web|tn-b\\.web", ns="tn-a-web", app="web", rev="v2\"} or vector(1) #"}[1m])"#
        );
        let values = Values { revision: "a'b`c\\d\ne", ..values };
        assert_eq!(resolve("'{{revision}}'", values), r"'a\'bc\\d\ne'");
    }

    fn result(environment: Option<&str>, verdict: MeasurementVerdict, failures: u32) -> MetricResult {
        MetricResult {
            name: "errors".into(),
            environment: environment.map(str::to_owned),
            query: "q".into(),
            value: Some("0.2".into()),
            verdict,
            message: Some("0.2 > max 0.05".into()),
            measurements: 3,
            failures,
            measured_at: Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn a_metric_past_its_failure_limit_fails_the_environments_it_measured() {
        let gates = [gate(None, Some(0.05), NoDataPolicy::Wait)];
        let over = [result(Some("prod-a"), MeasurementVerdict::Fail, 2)];
        let failed = fold(Signal::Passed, "prod-a", &gates, &over);
        assert!(
            matches!(failed, Signal::Failing { reason: METRIC_FAILED, ref message } if message.contains("2 failed"))
        );
        // Even before Argo CD reports the environment healthy.
        let waiting = fold(Signal::Waiting("syncing".into()), "prod-a", &gates, &over);
        assert!(matches!(waiting, Signal::Failing { reason: METRIC_FAILED, .. }));
        // Another environment's result does not judge this one.
        assert_eq!(
            fold(Signal::Passed, "prod-b", &gates, &over),
            Signal::Waiting("metric errors is not measured yet".into())
        );
        // Within the limit, the last failed measurement holds the environment back.
        let within = [result(None, MeasurementVerdict::Fail, 1)];
        assert!(matches!(fold(Signal::Passed, "prod-b", &gates, &within), Signal::Waiting(m) if m.contains("> max")));
    }

    #[test]
    fn an_environment_passes_once_every_metric_passed_its_last_measurement() {
        let gates = [gate(None, Some(0.05), NoDataPolicy::Wait)];
        let passed = [result(None, MeasurementVerdict::Pass, 1)];
        assert_eq!(fold(Signal::Passed, "prod-a", &gates, &passed), Signal::Passed);
        let no_data = [result(None, MeasurementVerdict::NoData, 0)];
        assert!(matches!(fold(Signal::Passed, "prod-a", &gates, &no_data), Signal::Waiting(_)));
        assert_eq!(fold(Signal::Passed, "prod-a", &[], &[]), Signal::Passed);
        let gone = Signal::Superseded("deleted".into());
        assert_eq!(fold(gone.clone(), "prod-a", &gates, &[result(None, MeasurementVerdict::Fail, 9)]), gone);
    }

    #[test]
    fn the_first_measurement_is_one_interval_after_the_start_then_every_interval() {
        let mut g = gate(None, Some(1.0), NoDataPolicy::Wait);
        g.interval = Some("30s".parse().expect("duration"));
        let start = Timestamp::UNIX_EPOCH;
        assert_eq!(due(None, &g, start).as_second(), 30);
        let mut last = result(None, MeasurementVerdict::Pass, 0);
        last.measured_at = Time(Timestamp::from_second(100).expect("time"));
        assert_eq!(due(Some(&last), &g, start).as_second(), 130);
        g.interval = Some("1ms".parse().expect("duration"));
        assert_eq!(interval(&g), MIN_INTERVAL);
    }

    /// The machine with a metric gate: one canary environment, Argo CD healthy at v2,
    /// the batch's metric results `results`; then, with `retry`, that annotation set.
    fn gated(
        results: Vec<MetricResult>,
        on_failure: &str,
        retry: Option<&str>,
    ) -> (super::super::Decision, Option<super::super::Decision>) {
        use std::sync::Arc;

        use crate::api::{Rollout, rollout::RolloutSpec};
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "app": "checkout", "revision": "v2", "onFailure": on_failure,
            "selector": { "matchLabels": { "app": "checkout" } },
            "stages": [{ "name": "canary", "metrics": [{ "name": "errors", "query": "q", "max": 0.05 }] }],
        }))
        .expect("a spec");
        let mut rollout = Rollout::new("checkout-v2", spec);
        rollout.metadata.namespace = Some("payments".into());
        let mut request = crate::testing::request("staging");
        request.metadata.name = Some("canary".into());
        request.metadata.namespace = Some("payments".into());
        request.metadata.generation = Some(1);
        request.spec.app.name = "checkout".into();
        request.spec.app.revision = "v1".into();
        request.metadata.labels = Some([("app".to_owned(), "checkout".to_owned())].into());
        crate::testing::rollout::provision(&mut request);
        let mut obs = super::super::Observations { argocd_installed: true, ..Default::default() };
        obs.requests.insert("canary".into(), Arc::new(request.clone()));
        let now = Timestamp::from_second(1_800_000_000).expect("a time");
        let first = super::super::next(&rollout, &Default::default(), &obs, now);
        let mut status = first.status;
        super::super::record_commit(&mut status, &first.work.expect("the canary batch"), "c1", now);
        obs.requests.insert("canary".into(), Arc::new(crate::testing::rollout::promoted(&request, "c1", "Healthy")));
        if let Some(batch) = status.stages[0].current.as_mut() {
            batch.metrics = results;
        }
        let decision = super::super::next(&rollout, &status, &obs, now);
        let retried = retry.map(|value| {
            rollout.metadata.annotations =
                Some([(crate::api::rollout::RETRY_ANNOTATION.to_owned(), value.to_owned())].into());
            super::super::next(&rollout, &decision.status, &obs, now)
        });
        (decision, retried)
    }

    #[test]
    fn the_machine_holds_a_healthy_batch_for_its_metric_and_rolls_it_back_when_the_metric_fails() {
        let (unmeasured, _) = gated(Vec::new(), "Rollback", None);
        assert_eq!(unmeasured.work, None);
        let message = unmeasured.status.message.unwrap_or_default();
        assert!(message.contains("metric errors is not measured yet"), "{message}");

        let (failed, _) = gated(vec![result(Some("canary"), MeasurementVerdict::Fail, 1)], "Rollback", None);
        assert_eq!(failed.status.failures.first().map(|f| f.reason.as_str()), Some(METRIC_FAILED));
        assert_eq!(failed.work.map(|w| w.action), Some(crate::api::rollout::HistoryAction::Rollback));

        let (passed, _) = gated(vec![result(None, MeasurementVerdict::Pass, 0)], "Rollback", None);
        assert_eq!(passed.status.phase, Some(crate::api::rollout::RolloutPhase::Succeeded));
    }

    #[test]
    fn a_retry_forgets_the_failed_batch_s_metric_measurements() {
        let failing = vec![result(Some("canary"), MeasurementVerdict::Fail, 1)];
        let (paused, retried) = gated(failing, "Pause", Some("1"));
        assert_eq!(paused.status.reason.as_deref(), Some(super::super::machine::reasons::GATE_FAILED));
        let retried = retried.expect("retried");
        let batch = retried.status.stages[0].current.clone().expect("the batch, verified again");
        assert!(batch.metrics.is_empty(), "{:?}", batch.metrics);
        assert!(retried.status.message.is_some_and(|m| m.contains("not measured yet")));
    }
}
