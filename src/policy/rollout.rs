//! Rules about a Rollout's selection and about editing one that has started. Pure:
//! the webhook hands in the old and new object and the namespace's requests.
//! (Where a Rollout may live and which classes its stages name is
//! [`super::references::check_rollout`].)

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{
    ResourceExt,
    core::{Selector, SelectorExt},
};

use crate::{
    api::{
        EnvironmentRequest, Rollout,
        rollout::{MAX_METRIC_RESULTS, RolloutSpec},
    },
    rollout::{machine::DEFAULT_PROGRESS_DEADLINE, metric, plan::is_held},
};

/// Requests named in a refusal (all are counted).
const NAMED: usize = 5;

/// Why a Rollout is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RolloutDenial {
    #[error(
        "spec.selector picks {count} EnvironmentRequest(s) that deploy another app than {app:?}: {examples}; narrow spec.selector to the environments of {app:?} (e.g. matchLabels app: {app}), or label those berth.dev/hold: \"true\""
    )]
    OtherApp { app: String, count: usize, examples: String },
    #[error("spec.selector is not a valid label selector: {message}")]
    Selector { message: String },
    #[error(
        "this rollout has started (its plan is frozen in status), so {fields} cannot change; create a new Rollout instead (paused, abort, approvals, freezeWindows, notBefore, onFailure and rollbackScope stay editable)"
    )]
    Started { fields: String },
    #[error("{problems}; fix the window (a window Berth cannot read would hold every batch)")]
    FreezeWindows { problems: String },
    #[error("stage {stage:?}, metric {metric:?}: {message}")]
    Metric { stage: String, metric: String, message: String },
}

/// Admits `new` (with `old` on an update) over `requests`, the requests of its namespace.
pub fn check(new: &Rollout, old: Option<&Rollout>, requests: &[&EnvironmentRequest]) -> Result<(), RolloutDenial> {
    // Checked when they change, so pausing or aborting never trips over them.
    if old.is_none_or(|old| old.spec.freeze_windows != new.spec.freeze_windows) {
        let problems = crate::freeze::problems("spec.freezeWindows", &new.spec.freeze_windows);
        if !problems.is_empty() {
            return Err(RolloutDenial::FreezeWindows { problems: problems.join("; ") });
        }
    }
    // Stages admitted before a rule was added stay editable (pause, abort).
    if old.is_none_or(|old| old.spec.stages != new.spec.stages) {
        check_metric_gates(&new.spec)?;
    }
    if let Some(old) = old {
        check_started_edit(&old.spec, &new.spec, old.status.as_ref().is_some_and(|s| s.plan.is_some()))?;
        if old.spec.app == new.spec.app && old.spec.selector == new.spec.selector {
            // What it selects was admitted; a request created since must not stand in
            // the way of pausing or aborting (the planner skips it as another app).
            return Ok(());
        }
    }
    check_selected_apps(&new.spec, requests.iter().copied())
}

/// Every environment the selector picks runs `spec.app` (held ones aside): a
/// selector that also picks another app's environments is a mistake that would
/// otherwise only show as a count of skipped environments.
pub fn check_selected_apps<'a>(
    spec: &RolloutSpec,
    requests: impl IntoIterator<Item = &'a EnvironmentRequest>,
) -> Result<(), RolloutDenial> {
    let selector =
        Selector::try_from(spec.selector.clone()).map_err(|e| RolloutDenial::Selector { message: e.to_string() })?;
    let empty = BTreeMap::new();
    let mut others: Vec<(String, &str)> = requests
        .into_iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .filter(|r| selector.matches(r.metadata.labels.as_ref().unwrap_or(&empty)))
        .filter(|r| !is_held(r) && r.spec.app.name != spec.app)
        .map(|r| (r.name_any(), r.spec.app.name.as_str()))
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    others.sort();
    let mut examples: Vec<String> =
        others.iter().take(NAMED).map(|(name, app)| format!("{name} (app {app})")).collect();
    if others.len() > NAMED {
        examples.push(format!("and {} more", others.len() - NAMED));
    }
    Err(RolloutDenial::OtherApp { app: spec.app.clone(), count: others.len(), examples: examples.join(", ") })
}

/// Each stage's metric gates can be measured as written: placeholders only inside
/// `"…"` or `'…'` ([`metric::check_placeholders`]); an `interval` shorter than the
/// stage's progress deadline (else the first measurement comes after it); and a
/// batch whose per-environment queries fit the results a batch keeps (checked for a
/// count `batchSize`; a percentage is only known once planned, and the status then
/// says why an environment is not measured).
pub fn check_metric_gates(spec: &RolloutSpec) -> Result<(), RolloutDenial> {
    for stage in &spec.stages {
        let deadline = stage.health_gate.progress_deadline.as_ref().and_then(|d| d.parse().ok());
        let deadline = deadline.unwrap_or(DEFAULT_PROGRESS_DEADLINE);
        let refuse = |gate: &crate::api::rollout::MetricGate, message: String| RolloutDenial::Metric {
            stage: stage.name.clone(),
            metric: gate.name.clone(),
            message,
        };
        for gate in &stage.metrics {
            metric::check_placeholders(&gate.query).map_err(|message| refuse(gate, message))?;
            let interval = metric::interval(gate);
            if interval >= deadline {
                return Err(refuse(
                    gate,
                    format!(
                        "interval {interval:?} is not shorter than the stage's progress deadline {deadline:?} (healthGate.progressDeadline, default 15m): the first measurement would come after it"
                    ),
                ));
            }
        }
        let per_environment = stage.metrics.iter().filter(|g| metric::per_environment(g)).count();
        let batch_wide = stage.metrics.len() - per_environment;
        if let (Some(gate), IntOrString::Int(size)) =
            (stage.metrics.iter().find(|g| metric::per_environment(g)), &stage.batch_size)
        {
            let results = usize::try_from(*size).unwrap_or(0).saturating_mul(per_environment) + batch_wide;
            if results > MAX_METRIC_RESULTS {
                return Err(refuse(
                    gate,
                    format!(
                        "batchSize {size} with {per_environment} {{{{namespace}}}} quer(ies) needs {results} results, more than the {MAX_METRIC_RESULTS} a batch keeps: use smaller batches"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Once planned, what was planned from cannot change: batches already committed
/// were cut from this app, selector and these stages. The controls stay editable.
pub fn check_started_edit(old: &RolloutSpec, new: &RolloutSpec, started: bool) -> Result<(), RolloutDenial> {
    if !started {
        return Ok(());
    }
    let changed: Vec<&str> = [
        ("spec.app", old.app != new.app),
        ("spec.selector", old.selector != new.selector),
        ("spec.stages", old.stages != new.stages),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(RolloutDenial::Started { fields: changed.join(", ") })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::rollout::{HOLD_LABEL, PlanSummary, RolloutStatus};

    fn rollout() -> Rollout {
        crate::testing::example("rollout-checkout.yaml")
    }

    fn started() -> Rollout {
        let mut rollout = rollout();
        rollout.status = Some(RolloutStatus { plan: Some(PlanSummary::default()), ..Default::default() });
        rollout
    }

    fn request(name: &str, app: &str, labels: &[(&str, &str)]) -> EnvironmentRequest {
        let mut request = crate::testing::request("production");
        request.metadata.name = Some(name.into());
        request.spec.app.name = app.into();
        request.metadata.labels = Some(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
        request
    }

    const CHECKOUT: (&str, &str) = ("app", "checkout");

    #[test]
    fn a_selector_that_also_picks_another_apps_environments_is_refused_naming_five() {
        let mut requests = vec![request("checkout-prod", "checkout", &[CHECKOUT])];
        for i in 0..7 {
            requests.push(request(&format!("web-{i}"), "web", &[CHECKOUT]));
        }
        let error = check_selected_apps(&rollout().spec, &requests).expect_err("other apps selected");
        assert_eq!(
            error.to_string(),
            "spec.selector picks 7 EnvironmentRequest(s) that deploy another app than \"checkout\": web-0 (app web), web-1 (app web), web-2 (app web), web-3 (app web), web-4 (app web), and 2 more; narrow spec.selector to the environments of \"checkout\" (e.g. matchLabels app: checkout), or label those berth.dev/hold: \"true\""
        );
    }

    #[test]
    fn held_unselected_and_deleted_requests_of_other_apps_do_not_count() {
        let mut deleted = request("web-gone", "web", &[CHECKOUT]);
        deleted.metadata.deletion_timestamp = Some(Time("2026-12-01T00:00:00Z".parse().expect("a time")));
        let requests = [
            request("checkout-prod", "checkout", &[CHECKOUT]),
            request("web-held", "web", &[CHECKOUT, (HOLD_LABEL, "true")]),
            request("web-prod", "web", &[("app", "web")]),
            deleted,
        ];
        assert_eq!(check_selected_apps(&rollout().spec, &requests), Ok(()));
        // A hold label that is not "true" holds nothing.
        let half = [request("web-held", "web", &[CHECKOUT, (HOLD_LABEL, "yes")])];
        assert!(matches!(check_selected_apps(&rollout().spec, &half), Err(RolloutDenial::OtherApp { count: 1, .. })));
    }

    #[test]
    fn a_started_rollout_keeps_its_app_selector_and_stages_and_its_controls_stay_editable() {
        let old = started();
        let mut new = old.clone();
        new.spec.paused = true;
        new.spec.abort = true;
        new.spec.freeze_windows.clear();
        new.spec.not_before = Some(Time("2027-01-01T00:00:00Z".parse().expect("a time")));
        new.spec.on_failure = crate::api::rollout::FailurePolicy::Pause;
        new.spec.rollback_scope = crate::api::rollout::RollbackScope::All;
        new.spec.approvals.push(crate::api::rollout::StageApproval { stage: "production".into(), token: "t".into() });
        assert_eq!(check(&new, Some(&old), &[]), Ok(()));

        new.spec.selector.match_labels = Some([("app".to_owned(), "web".to_owned())].into());
        new.spec.stages[1].batch_size = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(3);
        let error = check(&new, Some(&old), &[]).expect_err("started");
        assert_eq!(error, RolloutDenial::Started { fields: "spec.selector, spec.stages".into() });
        assert!(error.to_string().contains("create a new Rollout"), "{error}");
        // Before it started, the same edit is fine.
        assert_eq!(check(&new, Some(&rollout()), &[]), Ok(()));
    }

    #[test]
    fn a_freeze_window_with_an_unknown_time_zone_or_a_bad_schedule_is_refused_naming_the_field() {
        let good = rollout();
        let mut new = good.clone();
        let window = |schedule: &str, zone: &str| {
            serde_json::from_value(serde_json::json!({"schedule": schedule, "duration": "64h", "timeZone": zone}))
                .expect("a window")
        };
        new.spec.freeze_windows.push(window("0 17 * * 5", "Europe/Berlin"));
        assert_eq!(check(&new, None, &[]), Ok(()));
        new.spec.freeze_windows.push(window("0 17 * * 5", "Europe/Berlln"));
        new.spec.freeze_windows.push(window("every friday", "UTC"));
        let error = check(&new, Some(&good), &[]).expect_err("unreadable windows").to_string();
        assert!(
            error.starts_with("spec.freezeWindows[2].timeZone \"Europe/Berlln\" is not an IANA time zone"),
            "{error}"
        );
        assert!(
            error.contains("; spec.freezeWindows[3].schedule \"every friday\" is not a cron expression"),
            "{error}"
        );
        // Admitted before (say, by an older Berth): pausing it is not refused for them.
        let mut paused = new.clone();
        paused.spec.paused = true;
        assert_eq!(check(&paused, Some(&new), &[]), Ok(()));
    }

    #[test]
    fn an_update_that_keeps_the_selection_is_not_refused_for_requests_created_since() {
        let old = started();
        let mut new = old.clone();
        new.spec.paused = true;
        let since = request("web-new", "web", &[CHECKOUT]);
        assert_eq!(check(&new, Some(&old), &[&since]), Ok(()));
        assert!(matches!(check(&new, None, &[&since]), Err(RolloutDenial::OtherApp { .. })));
    }

    #[test]
    fn metric_gates_that_cannot_be_measured_as_written_are_refused() {
        let with = |gate: serde_json::Value, stage: serde_json::Value| {
            let mut stage_json = serde_json::json!({ "name": "canary", "metrics": [gate] });
            if let (Some(s), Some(extra)) = (stage_json.as_object_mut(), stage.as_object()) {
                s.extend(extra.clone());
            }
            let mut rollout = rollout();
            rollout.spec.stages[0] = serde_json::from_value(stage_json).expect("a stage");
            check(&rollout, None, &[])
        };
        let gate = |query: &str, interval: Option<&str>| {
            let mut gate = serde_json::json!({ "name": "errors", "query": query, "max": 0.05 });
            if let Some(interval) = interval {
                gate["interval"] = interval.into();
            }
            gate
        };
        let quoted = r#"sum(rate(e{namespace="{{namespace}}", rev='{{revision}}'}[1m]))"#;
        assert_eq!(with(gate(quoted, Some("30s")), serde_json::json!({})), Ok(()));
        let refusal = |r: Result<(), RolloutDenial>| r.expect_err("refused").to_string();

        // An interval the progress deadline would end before the first measurement.
        let late =
            refusal(with(gate(quoted, Some("5m")), serde_json::json!({ "healthGate": { "progressDeadline": "5m" } })));
        assert!(late.starts_with("stage \"canary\", metric \"errors\": interval 300s is not shorter"), "{late}");
        let default =
            refusal(with(gate(quoted, None), serde_json::json!({ "healthGate": { "progressDeadline": "30s" } })));
        assert!(default.contains("progress deadline 30s"), "{default}");
        assert!(refusal(with(gate(quoted, Some("15m")), serde_json::json!({}))).contains("default 15m"));

        // Placeholders in a raw string or outside a string.
        let raw = refusal(with(gate("sum(e{namespace=`{{namespace}}`})", None), serde_json::json!({})));
        assert!(raw.contains("raw string"), "{raw}");
        let bare = refusal(with(gate("sum(e) > {{revision}}", None), serde_json::json!({})));
        assert!(bare.contains("outside a string literal"), "{bare}");

        // More per-environment results than a batch keeps.
        let big = refusal(with(gate(quoted, None), serde_json::json!({ "batchSize": 501 })));
        assert!(big.contains("needs 501 results"), "{big}");
        assert_eq!(with(gate(quoted, None), serde_json::json!({ "batchSize": 500 })), Ok(()));
        assert_eq!(with(gate("sum(e)", None), serde_json::json!({ "batchSize": 5000 })), Ok(()));

        // A started rollout admitted before these rules can still be paused.
        let mut old = started();
        old.spec.stages[0] = serde_json::from_value(serde_json::json!({
            "name": "canary", "metrics": [gate("sum(e{namespace=`{{namespace}}`})", None)],
        }))
        .expect("a stage");
        let mut new = old.clone();
        new.spec.paused = true;
        assert_eq!(check(&new, Some(&old), &[]), Ok(()));
    }
}
