//! Metric gates against a real Prometheus (built from its Go module by
//! `e2e/controlplane/build-prometheus.sh`) that scrapes an exporter this test
//! serves: the values, empty results and answers Berth judges are Prometheus' own,
//! not a stand-in's. (Its own binary: its operator is started with the Prometheus
//! settings. The cases a real server cannot produce on cue, errors, timeouts and
//! outages, are in tests/rollout_metrics against the stand-in.)

use std::{sync::OnceLock, time::Duration};

use berth::api::{
    Rollout,
    environment_request::PromotionState,
    rollout::{MeasurementVerdict, RolloutPhase},
};
use berth_e2e::{operator::Operator, prometheus::Prometheus, rollout::*, suite::*};
use kube::Api;

static PROMETHEUS: OnceLock<Prometheus> = OnceLock::new();

/// The real Prometheus, and this binary's operator pointed at it.
async fn prometheus_operator() -> &'static Prometheus {
    let cluster = cluster();
    cluster.install_argocd_crds().await;
    cluster.install_crds().await;
    let dir = std::env::temp_dir().join(format!("berth-operator-prometheus-e2e-{}", std::process::id()));
    let prometheus = PROMETHEUS.get_or_init(|| {
        Prometheus::start(&dir.join("prometheus")).unwrap_or_else(|e| panic!("prometheus did not start: {e:#}"))
    });
    OPERATOR.get_or_init(|| {
        let env = vec![("BERTH_PROMETHEUS_URL".to_owned(), prometheus.url.clone())];
        let operator = Operator::start_with_env(&cluster.info, &dir, &dir.join("remote.git"), 200, env)
            .unwrap_or_else(|e| panic!("operator did not start: {e:#}"));
        std::sync::Mutex::new(operator)
    });
    prometheus
}

/// Waits until Prometheus answers `query` with a sample (a scrape landed).
async fn scraped(prometheus: &Prometheus, query: &str) {
    wait_for(Duration::from_secs(30), &format!("Prometheus to have {query}"), || async {
        prometheus.query(query).filter(|r| r.as_array().is_some_and(|a| !a.is_empty())).map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn a_canary_whose_scraped_error_ratio_is_too_high_fails_its_gate_and_is_rolled_back() {
    let prometheus = prometheus_operator().await;
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let canary_ns = namespace_of(&tenant, "canary").await;
    let series = format!("berth_e2e_error_ratio{{namespace=\"{canary_ns}\"}}");
    prometheus.exporter.set(&series, 0.25);
    scraped(prometheus, &series).await;

    let metric = r#"{name: error-ratio, query: 'max(berth_e2e_error_ratio{namespace="{{namespace}}"})', max: 0.05, interval: 1s, failureLimit: 1}"#;
    kubectl_apply(&gated_rollout(&tenant, "web-v2", "v2", metric, "onFailure: Rollback")).await;
    let rolled_back = wait_rollout(&tenant, "web-v2", RolloutPhase::RolledBack).await;
    task.abort();

    canary_rolled_back_by_metric(&rolled_back, "error-ratio", "0.25 > max 0.05").await;
}

#[tokio::test]
async fn a_series_prometheus_has_no_samples_of_holds_the_canary_until_healthy_values_are_scraped() {
    let prometheus = prometheus_operator().await;
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let canary_ns = namespace_of(&tenant, "canary").await;
    // Nothing exported for this namespace yet: Prometheus answers an empty vector.
    let metric = r#"{name: success-ratio, query: 'min(berth_e2e_success_ratio{namespace="{{namespace}}", app="{{app}}"})', min: 0.99, interval: 1s, onNoData: Wait}"#;
    kubectl_apply(&gated_rollout(&tenant, "web-v2", "v2", metric, "")).await;
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, &tenant);
    let (status, result) = wait_for(Duration::from_secs(60), "the canary to wait for data", || {
        let api = api.clone();
        async move {
            let status = api.get("web-v2").await.ok()?.status?;
            let result =
                status.stages.first()?.current.as_ref()?.metrics.first().filter(|m| m.measurements >= 2)?.clone();
            (result.verdict == MeasurementVerdict::NoData).then_some((status, result))
        }
    })
    .await;
    assert_eq!(result.query, format!(r#"min(berth_e2e_success_ratio{{namespace="{canary_ns}", app="web"}})"#));
    assert_eq!((result.failures, result.value.as_deref()), (0, None), "no data is no failure: {result:?}");
    assert!(status.message.unwrap_or_default().contains("success-ratio: no data"));
    assert_eq!(request(&tenant, "prod-a").await.status.and_then(|s| s.promotion), None, "production waits");
    // What a person sees (`--nocapture` prints it).
    let shown = berth_rollout_ok(&["status", "web-v2", "-n", &tenant]);
    println!("berth rollout status web-v2 -n {tenant} (metric-gated):\n{shown}");
    assert!(shown.contains("  metric         success-ratio (canary) NoData"), "{shown}");
    assert!(
        shown.contains(&format!(r#"min(berth_e2e_success_ratio{{namespace="{canary_ns}", app="web"}})"#)),
        "{shown}"
    );

    // The canary serves traffic, healthily: scraped, judged, and the rollout goes on.
    let series = format!("berth_e2e_success_ratio{{namespace=\"{canary_ns}\", app=\"web\"}}");
    prometheus.exporter.set(&series, 0.999);
    let done = wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();
    let status = done.status.unwrap_or_default();
    assert_eq!(status.progress.as_deref(), Some("3/3"));
    assert!(status.failures.is_empty(), "{:?}", status.failures);
    let prod_a = request(&tenant, "prod-a").await.status.and_then(|s| s.promotion).expect("a record");
    assert_eq!(prod_a.state, PromotionState::Committed);
}
