//! Metric gates (pure): a stage's PromQL queries resolved for a batch, Prometheus'
//! answers read and judged, and the latest results folded into each environment's
//! gate signal. Asking Prometheus is the controller's part
//! (`controller::rollout::metrics`); the machine only reads what it recorded.
//!
//! Decisions: NaN counts as no data (Prometheus answers NaN for 0/0, e.g. an error
//! ratio without traffic). An error or a timeout is not a failed measurement, and
//! neither is no data with `onNoData: Wait` nor a metric not measured yet: an
//! environment otherwise healthy is *held* ([`Signal::Held`]), which the progress
//! deadline does not end, so an outage of the metrics system holds a rollout and
//! never rolls production back. (Argo Rollouts counts errors apart,
//! `consecutiveErrorLimit`; here a person sees the error in status and events.)
//! Once a batch was verified (its soak), only Pass and Fail judge it: an error or a
//! gap in the data neither fails nor restarts the soak.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::gate::Signal;
use crate::api::rollout::{
    MAX_METRIC_RESULTS, MAX_RESOLVED_QUERY, MeasurementVerdict, MetricGate, MetricResult, NoDataPolicy,
};

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

/// The placeholders a query may name.
const PLACEHOLDERS: [&str; 4] = ["{{namespaces}}", "{{namespace}}", "{{revision}}", "{{app}}"];

/// `query` with its placeholders substituted, each value escaped for a PromQL string
/// literal so no name or revision can end the literal and add PromQL of its own; or
/// why the query's placeholders cannot be substituted safely ([`check_placeholders`]).
pub fn resolve(query: &str, values: Values<'_>) -> Result<String, String> {
    check_placeholders(query)?;
    let alternation = values.namespaces.iter().map(|n| regex_escape(n)).collect::<Vec<_>>().join("|");
    Ok(query
        .replace("{{namespaces}}", &string_escape(&alternation))
        .replace("{{namespace}}", &string_escape(values.namespace.unwrap_or_default()))
        .replace("{{revision}}", &string_escape(values.revision))
        .replace("{{app}}", &string_escape(values.app)))
}

/// Every placeholder of `query` lies inside a `"…"` or `'…'` string literal, the only
/// places its escaped value stays a string. Refused: one outside any literal (its
/// value would be PromQL) and one inside a `` `…` `` raw string (which has no escapes,
/// so the escapes of a value would stay in it: `tn-b\\.web` would match no namespace).
pub fn check_placeholders(query: &str) -> Result<(), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum In {
        Code,
        Quoted(char),
        Raw,
        Comment,
    }
    let mut state = In::Code;
    let mut chars = query.char_indices();
    while let Some((at, c)) = chars.next() {
        let placeholder = PLACEHOLDERS.iter().find(|p| query[at..].starts_with(**p));
        match (state, placeholder) {
            (In::Code, Some(p)) => {
                return Err(format!(
                    "the query names {p} outside a string literal: write it inside \"…\" or '…' (its value is substituted escaped for one)"
                ));
            }
            (In::Raw, Some(p)) => {
                return Err(format!(
                    "the query names {p} inside a `…` raw string, which has no escapes: write it inside \"…\" or '…' instead"
                ));
            }
            _ => {}
        }
        state = match (state, c) {
            (In::Code, '"' | '\'') => In::Quoted(c),
            (In::Code, '`') => In::Raw,
            (In::Code, '#') => In::Comment,
            (In::Quoted(_), '\\') => {
                chars.next();
                state
            }
            (In::Quoted(q), c) if c == q => In::Code,
            (In::Raw, '`') | (In::Comment, '\n') => In::Code,
            (state, _) => state,
        };
    }
    Ok(())
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

/// Escapes for either quoted PromQL string literal, `"…"` or `'…'`. Prometheus
/// accepts `\"` only inside `"…"` and `\'` only inside `'…'` ("unknown escape
/// sequence" otherwise), so both quotes are written as hex escapes, valid in both.
/// (Raw `` `…` `` strings have no escapes: [`check_placeholders`] refuses them.)
fn string_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\x22"),
            '\'' => out.push_str("\\x27"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
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
/// the environment (`MetricFailed`); an environment otherwise passing waits while a
/// metric's latest measurement failed (within its limit), and is held
/// ([`Signal::Held`], no progress deadline) while a metric cannot be measured: not
/// measured yet, Prometheus erred, or no data with `onNoData: Wait`. `soaking` (the
/// batch was verified): only Pass and Fail judge, errors and gaps are ignored.
pub fn fold(
    signal: Signal,
    environment: &str,
    gates: &[MetricGate],
    results: &[MetricResult],
    soaking: bool,
) -> Signal {
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
    let mut held = None;
    for gate in gates {
        let mut latest = results_for(results, gate, environment).peekable();
        if latest.peek().is_none() {
            if results.len() >= MAX_METRIC_RESULTS {
                // The batch's list is full (see the controller's `push`): this
                // environment's result will never be recorded, so it is no outage to
                // wait out; the progress deadline ends it, saying why.
                return Signal::Waiting(format!(
                    "metric {} cannot be measured for this environment: a batch keeps at most {MAX_METRIC_RESULTS} metric results (one per environment for each {{{{namespace}}}} query); use smaller batches",
                    gate.name
                ));
            }
            held.get_or_insert_with(|| format!("metric {} is not measured yet", gate.name));
            continue;
        }
        for result in latest {
            let why = || format!("metric {}: {}", gate.name, result.message.as_deref().unwrap_or("not passed yet"));
            match result.verdict {
                MeasurementVerdict::Pass => {}
                MeasurementVerdict::Fail => return Signal::Waiting(why()),
                MeasurementVerdict::Error | MeasurementVerdict::NoData if !soaking => {
                    held.get_or_insert_with(why);
                }
                MeasurementVerdict::Error | MeasurementVerdict::NoData => {}
            }
        }
    }
    held.map_or(Signal::Passed, Signal::Held)
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
            resolve(query, values).as_deref(),
            Ok(
                r#"rate(x{namespace=~"tn-a-web|tn-b\\.web", ns="tn-a-web", app="web", rev="v2\x22} or vector(1) #"}[1m])"#
            )
        );
        let values = Values { revision: "a'b`c\\d\ne\"f", ..values };
        // Both quotes as hex escapes: Prometheus refuses \' inside "…" and \" inside '…'.
        assert_eq!(resolve("'{{revision}}'", values).as_deref(), Ok(r"'a\x27b`c\\d\ne\x22f'"));
        assert_eq!(resolve(r#""{{revision}}""#, values).as_deref(), Ok(r#""a\x27b`c\\d\ne\x22f""#));
    }

    #[test]
    fn a_placeholder_outside_a_quoted_string_is_refused() {
        let ok = [
            r#"sum(x{ns="{{namespace}}"})"#,
            r#"sum(x{ns='{{namespace}}', a="it's \"{{app}}\""})"#,
            "sum(x{a=`raw`, ns=\"{{namespace}}\"})",
            "sum(x) # not {{app}} but a comment\n> 0",
            "sum(x{{a=\"{{app}}\"}})",
        ];
        for query in ok {
            assert_eq!(check_placeholders(query), Ok(()), "{query}");
        }
        let raw = check_placeholders("sum(x{ns=~`{{namespaces}}`})").expect_err("raw");
        assert!(raw.contains("{{namespaces}} inside a `…` raw string"), "{raw}");
        let bare = check_placeholders(r#"sum(x{a="b"}) > {{revision}}"#).expect_err("bare");
        assert!(bare.contains("{{revision}} outside a string literal"), "{bare}");
        // An escaped quote does not end the string; the placeholder after it is inside.
        assert_eq!(check_placeholders(r#"x{a="\"{{app}}"}"#), Ok(()));
        assert!(check_placeholders(r#"x{a="\\"} > {{app}}"#).is_err());
        let values = Values { app: "a", revision: "r", namespaces: &[], namespace: None };
        assert!(resolve("x > {{app}}", values).is_err());
    }

    #[test]
    fn a_long_prometheus_error_is_cut_short_before_status_and_events() {
        let long = format!(
            r#"{{"status":"error","errorType":"execution","error":"found duplicate series {}"}}"#,
            "x".repeat(10_000)
        );
        let measured = judge(parse(long.as_bytes()), &gate(None, Some(1.0), NoDataPolicy::Wait));
        assert_eq!(measured.verdict, MeasurementVerdict::Error);
        assert_eq!(measured.message.map(|m| m.chars().count()), Some(MAX_TEXT));
        let measured = judge(Err("y".repeat(10_000)), &gate(None, Some(1.0), NoDataPolicy::Wait));
        assert_eq!(measured.message.map(|m| m.chars().count()), Some(MAX_TEXT));
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
        let failed = fold(Signal::Passed, "prod-a", &gates, &over, false);
        assert!(
            matches!(failed, Signal::Failing { reason: METRIC_FAILED, ref message } if message.contains("2 failed"))
        );
        // Even before Argo CD reports the environment healthy.
        let waiting = fold(Signal::Waiting("syncing".into()), "prod-a", &gates, &over, false);
        assert!(matches!(waiting, Signal::Failing { reason: METRIC_FAILED, .. }));
        // Another environment's result does not judge this one.
        assert_eq!(
            fold(Signal::Passed, "prod-b", &gates, &over, false),
            Signal::Held("metric errors is not measured yet".into())
        );
        // Within the limit, the last failed measurement holds the environment back.
        let within = [result(None, MeasurementVerdict::Fail, 1)];
        assert!(
            matches!(fold(Signal::Passed, "prod-b", &gates, &within, false), Signal::Waiting(m) if m.contains("> max"))
        );
    }

    #[test]
    fn an_environment_passes_once_every_metric_passed_its_last_measurement() {
        let gates = [gate(None, Some(0.05), NoDataPolicy::Wait)];
        let passed = [result(None, MeasurementVerdict::Pass, 1)];
        assert_eq!(fold(Signal::Passed, "prod-a", &gates, &passed, false), Signal::Passed);
        let no_data = [result(None, MeasurementVerdict::NoData, 0)];
        assert!(matches!(fold(Signal::Passed, "prod-a", &gates, &no_data, false), Signal::Held(_)));
        assert_eq!(fold(Signal::Passed, "prod-a", &[], &[], false), Signal::Passed);
        let gone = Signal::Superseded("deleted".into());
        assert_eq!(fold(gone.clone(), "prod-a", &gates, &[result(None, MeasurementVerdict::Fail, 9)], false), gone);
    }

    /// M3: a metric that cannot be measured holds (no progress deadline); a failed
    /// one (within its limit) waits; an unhealthy environment's own signal wins.
    #[test]
    fn a_metric_that_cannot_be_measured_holds_and_a_failed_one_waits() {
        let gates = [gate(None, Some(0.05), NoDataPolicy::Wait)];
        for verdict in [MeasurementVerdict::Error, MeasurementVerdict::NoData] {
            let results = [result(None, verdict, 0)];
            assert!(
                matches!(fold(Signal::Passed, "prod-a", &gates, &results, false), Signal::Held(m) if m.contains("> max"))
            );
        }
        assert!(matches!(fold(Signal::Passed, "prod-a", &gates, &[], false), Signal::Held(_)));
        let syncing = Signal::Waiting("syncing".into());
        assert_eq!(fold(syncing.clone(), "prod-a", &gates, &[], false), syncing);
        // A failed measurement beside an erroring one: the failure speaks.
        let two = [
            gate(None, Some(0.05), NoDataPolicy::Wait),
            MetricGate { name: "latency".into(), ..gate(None, Some(1.0), NoDataPolicy::Wait) },
        ];
        let mut failing = result(None, MeasurementVerdict::Fail, 1);
        failing.name = "latency".into();
        let results = [result(None, MeasurementVerdict::Error, 0), failing];
        assert!(
            matches!(fold(Signal::Passed, "prod-a", &two, &results, false), Signal::Waiting(m) if m.starts_with("metric latency"))
        );
    }

    /// M8: while the batch soaks, an error or a gap in the data is ignored; a failed
    /// measurement still counts.
    #[test]
    fn while_soaking_only_pass_and_fail_judge() {
        let gates = [gate(None, Some(0.05), NoDataPolicy::Wait)];
        for verdict in [MeasurementVerdict::Error, MeasurementVerdict::NoData] {
            assert_eq!(fold(Signal::Passed, "prod-a", &gates, &[result(None, verdict, 0)], true), Signal::Passed);
        }
        let failed = [result(None, MeasurementVerdict::Fail, 1)];
        assert!(matches!(fold(Signal::Passed, "prod-a", &gates, &failed, true), Signal::Waiting(_)));
    }

    /// M7: past the results a batch keeps, an environment never measured says why
    /// (and waits: the progress deadline ends it, it is no outage).
    #[test]
    fn an_environment_past_the_results_a_batch_keeps_says_why() {
        let mut g = gate(None, Some(0.05), NoDataPolicy::Wait);
        g.query = r#"x{namespace="{{namespace}}"}"#.into();
        let full: Vec<MetricResult> =
            (0..MAX_METRIC_RESULTS).map(|i| result(Some(&format!("env-{i}")), MeasurementVerdict::Pass, 0)).collect();
        let signal = fold(Signal::Passed, "env-600", std::slice::from_ref(&g), &full, false);
        assert!(matches!(signal, Signal::Waiting(ref m) if m.contains("at most 500 metric results")), "{signal:?}");
        assert_eq!(fold(Signal::Passed, "env-1", &[g], &full, false), Signal::Passed);
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
        let (mut rollout, obs, status) = committed(on_failure, serde_json::json!({}));
        let now = Timestamp::from_second(1_800_000_000).expect("a time");
        let mut status = status;
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

    /// A rollout whose canary batch (one environment, `health_gate`) was committed at
    /// 1 800 000 000 s and which Argo CD reports healthy at v2.
    fn committed(
        on_failure: &str,
        health_gate: serde_json::Value,
    ) -> (crate::api::Rollout, super::super::Observations, crate::api::rollout::RolloutStatus) {
        use std::sync::Arc;

        use crate::api::{Rollout, rollout::RolloutSpec};
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "app": "checkout", "revision": "v2", "onFailure": on_failure,
            "selector": { "matchLabels": { "app": "checkout" } },
            "stages": [{ "name": "canary", "healthGate": health_gate,
                "metrics": [{ "name": "errors", "query": "q", "max": 0.05 }] }],
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
        (rollout, obs, status)
    }

    /// M3: a healthy batch whose metric cannot be measured (Prometheus errs, no data,
    /// not measured) is held past its progress deadline, and says so; a batch still
    /// unhealthy at the deadline fails as before.
    #[test]
    fn a_metric_that_cannot_be_measured_holds_the_batch_past_its_progress_deadline() {
        let (rollout, obs, status) = committed("Rollback", serde_json::json!({ "progressDeadline": "2m" }));
        let after = Timestamp::from_second(1_800_000_000 + 600).expect("a time");
        for results in [
            vec![result(None, MeasurementVerdict::Error, 0)],
            vec![result(None, MeasurementVerdict::NoData, 0)],
            Vec::new(),
        ] {
            let mut status = status.clone();
            if let Some(batch) = status.stages[0].current.as_mut() {
                batch.metrics = results;
            }
            let held = super::super::next(&rollout, &status, &obs, after);
            assert_eq!(held.work, None);
            assert!(held.status.failures.is_empty(), "{:?}", held.status.failures);
            assert_eq!(held.status.phase, Some(crate::api::rollout::RolloutPhase::Progressing));
            let message = held.status.message.unwrap_or_default();
            assert!(message.contains("the progress deadline does not apply"), "{message}");
        }
        // Argo CD never reported the canary healthy: the deadline fails it.
        let mut obs = obs;
        let mut unhealthy = obs.requests["canary"].as_ref().clone();
        if let Some(promotion) = unhealthy.status.as_mut().and_then(|s| s.promotion.as_mut()) {
            promotion.commit = Some("another".into());
        }
        obs.requests.insert("canary".into(), std::sync::Arc::new(unhealthy));
        let late = super::super::next(&rollout, &status, &obs, after);
        assert_eq!(late.status.failures.first().map(|f| f.reason.as_str()), Some("ProgressDeadline"));
    }

    /// M8: once verified and soaking, an erroring measurement neither fails the batch
    /// nor restarts its soak; a passing one after the soak promotes it.
    #[test]
    fn an_error_while_soaking_does_not_restart_the_soak() {
        let (rollout, obs, mut status) = committed("Rollback", serde_json::json!({ "soak": "10m" }));
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).expect("a time");
        status.stages[0].current.as_mut().expect("a batch").metrics = vec![result(None, MeasurementVerdict::Pass, 0)];
        let soaking = super::super::next(&rollout, &status, &obs, t(60));
        let batch = soaking.status.stages[0].current.clone().expect("soaking");
        assert_eq!(batch.healthy_since.as_ref().map(|h| h.0), Some(t(60)));
        let mut status = soaking.status;
        status.stages[0].current.as_mut().expect("a batch").metrics = vec![result(None, MeasurementVerdict::Error, 0)];
        let still = super::super::next(&rollout, &status, &obs, t(300));
        let batch = still.status.stages[0].current.clone().expect("still soaking");
        assert_eq!(batch.healthy_since.as_ref().map(|h| h.0), Some(t(60)), "{:?}", still.status.message);
        let soaked = super::super::next(&rollout, &still.status, &obs, t(700));
        assert_eq!(soaked.status.phase, Some(crate::api::rollout::RolloutPhase::Succeeded));
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
