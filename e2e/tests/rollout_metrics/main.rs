//! Metric gates through the real operator (tier 2): a rollout's batch is judged by
//! PromQL queries as well as by Argo CD, against a stand-in for Prometheus' query API
//! ([`StandIn`], the documented `/api/v1/query` format; no Prometheus binary is built
//! here). (Its own binary: its operator is started with the Prometheus settings.)

use std::{sync::OnceLock, time::Duration};

use berth::api::{
    Rollout,
    rollout::{MeasurementVerdict, RolloutPhase},
};
use berth_e2e::{
    operator::Operator,
    prometheus::{Answer, StandIn},
    rollout::*,
    suite::*,
};
use kube::Api;

const TOKEN: &str = "s3cret-token";

static PROMETHEUS: OnceLock<StandIn> = OnceLock::new();

/// The stand-in, and this binary's operator pointed at it (token and tenant set).
async fn metrics_operator() -> &'static StandIn {
    let cluster = cluster();
    cluster.install_argocd_crds().await;
    cluster.install_crds().await;
    let prometheus = PROMETHEUS.get_or_init(|| StandIn::start().unwrap_or_else(|e| panic!("stand-in: {e}")));
    OPERATOR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berth-operator-metrics-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let token = dir.join("prometheus-token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
        let env = vec![
            ("BERTH_PROMETHEUS_URL".to_owned(), prometheus.url.clone()),
            ("BERTH_PROMETHEUS_TOKEN_FILE".to_owned(), token.display().to_string()),
            ("BERTH_PROMETHEUS_TENANT".to_owned(), "team-a".to_owned()),
            ("BERTH_PROMETHEUS_TIMEOUT_SECONDS".to_owned(), "1".to_owned()),
        ];
        let operator = Operator::start_with_env(&cluster.info, &dir, &dir.join("remote.git"), 200, env)
            .unwrap_or_else(|e| panic!("operator did not start: {e:#}"));
        std::sync::Mutex::new(operator)
    });
    prometheus
}

#[tokio::test]
async fn a_failing_metric_fails_the_canary_and_the_rollout_rolls_it_back() {
    let prometheus = metrics_operator().await;
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let canary_ns = namespace_of(&tenant, "canary").await;
    // The canary's error rate is far above the gate's maximum.
    prometheus.answer(&canary_ns, Answer::value("0.5"));
    let metric = r#"{name: error-rate, query: 'sum(rate(http_errors_total{namespace=~"{{namespaces}}", revision="{{revision}}"}[1m]))', max: 0.05, interval: 1s, failureLimit: 1}"#;
    kubectl_apply(&gated_rollout(&tenant, "web-v2", "v2", metric, "onFailure: Rollback")).await;
    let rolled_back = wait_rollout(&tenant, "web-v2", RolloutPhase::RolledBack).await;
    task.abort();

    canary_rolled_back_by_metric(&rolled_back, "error-rate", "> max 0.05").await;
    // The query went out resolved: the batch's namespace, the revision, quoted.
    let asked = prometheus.asked(&canary_ns);
    let expected = format!(r#"sum(rate(http_errors_total{{namespace=~"{canary_ns}", revision="v2"}}[1m]))"#);
    assert!(asked.iter().all(|a| a.query == expected), "{asked:#?}");
    // failureLimit 1: only the second failed measurement failed the gate.
    assert!(asked.len() >= 2, "{asked:#?}");
    let header = |a: &berth_e2e::prometheus::Asked, name: &str| {
        a.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    assert_eq!(header(&asked[0], "authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(header(&asked[0], "x-scope-orgid"), "team-a");
    let events = rollout_events(&tenant, "web-v2").await;
    assert!(events.iter().any(|e| e == "MetricMeasured"), "{events:?}");
    assert!(events.iter().any(|e| e == "RollingBack"), "{events:?}");
    // The token never shows in the operator's log.
    assert!(!operator_log().contains(TOKEN));
}

#[tokio::test]
async fn a_metric_without_data_holds_the_batch_until_its_values_pass() {
    let prometheus = metrics_operator().await;
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let canary_ns = namespace_of(&tenant, "canary").await;
    // No traffic yet: Prometheus answers NaN (0/0) for the ratio.
    prometheus.answer(&canary_ns, Answer::value("NaN"));
    let metric = r#"{name: success-ratio, query: 'avg(ratio{namespace="{{namespace}}", app="{{app}}"})', min: 0.99, interval: 1s, onNoData: Wait}"#;
    kubectl_apply(&gated_rollout(&tenant, "web-v2", "v2", metric, "")).await;
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, &tenant);
    let waiting = wait_for(Duration::from_secs(60), "the canary to wait for data", || {
        let api = api.clone();
        async move {
            let status = api.get("web-v2").await.ok()?.status?;
            let batch = status.stages.first()?.current.clone()?;
            let result = batch.metrics.first().filter(|m| m.measurements >= 2)?.clone();
            let message = status.message.clone().unwrap_or_default();
            message.contains("success-ratio: no data").then_some((status, result))
        }
    })
    .await;
    let (status, result) = waiting;
    assert_eq!(result.verdict, MeasurementVerdict::NoData);
    assert_eq!((result.environment.as_deref(), result.value.as_deref()), (Some("canary"), Some("NaN")));
    assert_eq!(result.query, format!(r#"avg(ratio{{namespace="{canary_ns}", app="web"}})"#));
    assert_eq!(result.failures, 0, "no data is not a failure with onNoData: Wait");
    assert_eq!(status.phase, Some(RolloutPhase::Progressing));

    // Traffic arrives, healthy: the canary passes and the rollout goes on.
    prometheus.answer(&canary_ns, Answer::value("0.999"));
    let done = wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();
    assert_eq!(done.status.unwrap_or_default().progress.as_deref(), Some("3/3"));
}

/// Waits until the canary batch's first metric result says `what`.
async fn canary_metric(tenant: &str, what: &str) -> berth::api::rollout::MetricResult {
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, tenant);
    wait_for(Duration::from_secs(60), &format!("the canary's metric to say {what}"), || {
        let api = api.clone();
        async move {
            let status = api.get("web-v2").await.ok()?.status?;
            let result = status.stages.first()?.current.as_ref()?.metrics.first()?.clone();
            result.message.as_deref().is_some_and(|m| m.contains(what)).then_some(result)
        }
    })
    .await
}

#[tokio::test]
async fn an_error_or_a_timeout_holds_the_batch_without_counting_as_a_failure() {
    let prometheus = metrics_operator().await;
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let series = format!("p99_{}", tenant.replace('-', "_"));
    prometheus.answer(&series, Answer::Error("1:5: parse error: unexpected identifier".into()));
    let metric = format!("{{name: latency, query: 'max({series})', max: 0.3, interval: 1s, onNoData: Fail}}");
    kubectl_apply(&gated_rollout(&tenant, "web-v2", "v2", &metric, "")).await;
    let error = canary_metric(&tenant, "bad_data: 1:5: parse error").await;
    assert_eq!((error.verdict, error.failures), (MeasurementVerdict::Error, 0));

    prometheus.answer(&series, Answer::Slow(Duration::from_secs(3), Box::new(Answer::value("0.1"))));
    let timeout = canary_metric(&tenant, "did not answer within").await;
    assert_eq!((timeout.verdict, timeout.failures), (MeasurementVerdict::Error, 0));
    let prod_a = request(&tenant, "prod-a").await;
    assert_eq!(prod_a.status.and_then(|s| s.promotion), None, "production waits for the canary");

    // Prometheus is back: the canary passes.
    prometheus.answer(&series, Answer::value("0.1"));
    wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();
}

/// An outage of Prometheus outlasting the progress deadline holds the healthy canary
/// (and says so) instead of failing it and rolling it back.
#[tokio::test]
async fn an_outage_longer_than_the_progress_deadline_holds_the_batch_and_never_rolls_back() {
    let prometheus = metrics_operator().await;
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let series = format!("outage_{}", tenant.replace('-', "_"));
    prometheus.answer(&series, Answer::Error("503: Prometheus is restarting".into()));
    let metric = format!("{{name: errors, query: 'max({series})', max: 0.3, interval: 1s}}");
    kubectl_apply(&gated_rollout_within(&tenant, "web-v2", "v2", &metric, "onFailure: Rollback", "5s")).await;
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, &tenant);
    let held = wait_for(Duration::from_secs(60), "the canary to be held", || {
        let api = api.clone();
        async move {
            let status = api.get("web-v2").await.ok()?.status?;
            let message = status.message.clone().unwrap_or_default();
            message.contains("the progress deadline does not apply").then_some(status)
        }
    })
    .await;
    let committed = held.stages.first().and_then(|s| s.current.as_ref()).and_then(|b| b.committed_at.clone());
    let committed = committed.expect("the canary batch was committed").0;
    // Well past the deadline (5 s after the commit), still held, nothing failed.
    let past = committed.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(10)).expect("a time");
    let wait = past.duration_since(k8s_openapi::jiff::Timestamp::now());
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    let status = api.get("web-v2").await.expect("the rollout").status.unwrap_or_default();
    assert!(status.failures.is_empty(), "{:?}", status.failures);
    assert_eq!(status.phase, Some(RolloutPhase::Progressing), "{:?}", status.message);
    assert!(status.message.is_some_and(|m| m.contains("503: Prometheus is restarting")));
    let result = status.stages[0].current.as_ref().and_then(|b| b.metrics.first().cloned()).expect("a result");
    assert!(result.measurements >= 5, "measured every second: {result:?}");

    // Prometheus is back: the canary passes and the rollout goes on.
    prometheus.answer(&series, Answer::value("0.1"));
    wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();
}

#[tokio::test]
async fn the_api_refuses_a_metric_gate_without_bounds_or_with_a_repeated_name() {
    metrics_operator().await;
    let unbounded = r#"{name: error-rate, query: 'sum(up)'}"#;
    let twice = r#"{name: up, query: 'sum(up)', min: 1}, {name: up, query: 'sum(up)', max: 9}"#;
    for (metric, refusal) in
        [(unbounded, "a metric gate needs min, max or both"), (twice, "metric names must be unique within a stage")]
    {
        let yaml = gated_rollout("default", "refused", "v2", metric, "");
        let out = cluster().kubectl("admin", &["apply", "--dry-run=server", "-f", "-"], Some(&yaml)).await;
        assert!(!out.success && out.stderr.contains(refusal), "{}\n{yaml}", out.stderr);
    }
}
