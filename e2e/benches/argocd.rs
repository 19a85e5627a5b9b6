//! Commit → Synced latency with a real Argo CD (tier 3): how long after Berth's commit
//! shows in a request's status Argo CD has applied it and synced the environment's app
//! (the request is Ready), with Berth's refresh after push and without it
//! (`BERTH_ARGOCD_REFRESH=false`). Writes a Markdown report.
//!
//! `just bench-argocd`. Without refresh Argo CD finds a commit at its next look at git:
//! every 10 s on this harness (`berth_e2e::argocd`), every 3 minutes by default, so the
//! second row is far better than what users get without a webhook.
//! `cargo test` runs it in a smoke mode (a few requests, no report).
//!
//! Measured 2026-12-02 on the 2-core development machine with nothing else running,
//! 30 requests one at a time: with refresh p50 2.6 s, p99 4.0 s; Argo CD's 10 s poll
//! alone p50 19.9 s, p99 20.7 s. Before the root app's `ApplyOutOfSyncOnly=true` (each
//! root sync applied every environment's objects again: 1 s with one environment, 16 s
//! with thirty) the same run gave p50 9.0 s, p99 18.6 s with refresh.

use std::time::{Duration, Instant};

use berth::api::{EnvironmentRequest, environment_request::Phase};
use berth_e2e::{
    argocd::{app_repository, request_for_app, root_application},
    fixture::Cluster,
    operator::Operator,
};
use futures::{StreamExt, stream};
use kube::Api;

/// Requests measured per mode: `cargo bench`, and `cargo test`'s smoke run.
const FULL: usize = 30;
const SMOKE: usize = 2;
/// Requests in flight at once: one, so each latency is a commit's own (as the operator
/// benchmark measures create → Ready); `BERTH_BENCH_CONCURRENCY` overlaps arrivals.
fn concurrency() -> usize {
    std::env::var("BERTH_BENCH_CONCURRENCY").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(1)
}
/// Longest a request may take to be Ready before the run fails.
const PATIENCE: Duration = Duration::from_secs(300);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

async fn apply(cluster: &Cluster, yaml: &str) {
    let out = cluster.kubectl("admin", &["apply", "-f", "-"], Some(yaml)).await;
    assert!(out.success, "{}\n{yaml}", out.stderr);
}

/// Creates request `name` and returns the time from the first status naming Berth's
/// commit to the first Ready one (polled every 100 ms).
async fn commit_to_synced(api: &Api<EnvironmentRequest>, yaml: &str, name: &str) -> Duration {
    let request: EnvironmentRequest = serde_yaml::from_str(yaml).expect("request yaml");
    api.create(&Default::default(), &request).await.expect("create");
    let started = Instant::now();
    let mut committed = None;
    loop {
        assert!(started.elapsed() < PATIENCE, "{name} not Ready within {PATIENCE:?}");
        let status = api.get(name).await.expect("get").status.unwrap_or_default();
        if committed.is_none() && status.gitops.as_ref().is_some_and(|g| g.commit.is_some()) {
            committed = Some(Instant::now());
        }
        if status.phase == Some(Phase::Ready) {
            return committed.map_or(Duration::ZERO, |at| at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One mode: its own remote, root app and operator; `count` requests measured, then
/// deleted (each waits for Argo CD to prune it) and the operator stopped.
async fn measure(cluster: &Cluster, dir: &std::path::Path, refresh: bool, count: usize) -> Vec<Duration> {
    let mode = if refresh { "refresh" } else { "poll" };
    let remote = dir.join(format!("{mode}.git"));
    let env = vec![("BERTH_ARGOCD_REFRESH".to_owned(), refresh.to_string())];
    let mut operator = Operator::start_with_env(&cluster.info, &dir.join(mode), &remote, 200, env).expect("operator");
    apply(cluster, &root_application(&format!("bench-{mode}"), &remote)).await;
    let (tenant, class) = (format!("bench-{mode}"), format!("bench-{mode}"));
    apply(cluster, &berth_e2e::suite::class_yaml(&class, 1, "argocd: {syncPolicy: {automated: true, prune: true}}"))
        .await;
    apply(cluster, &berth_e2e::suite::tenant_yaml(&tenant, &[&class], "{}")).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client("admin").await);
    while namespaces.get_opt(&tenant).await.ok().flatten().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = dir.join("web.git");
    let api: Api<EnvironmentRequest> = Api::namespaced(cluster.client("admin").await, &tenant);
    let names: Vec<String> = (0..count).map(|i| format!("r{i:03}")).collect();
    let mut latencies: Vec<Duration> = stream::iter(&names)
        .map(|name| {
            let (api, yaml) = (api.clone(), request_for_app(&tenant, name, &class, &app, "v1"));
            async move { commit_to_synced(&api, &yaml, name).await }
        })
        .buffer_unordered(concurrency())
        .collect()
        .await;
    latencies.sort();

    for name in &names {
        api.delete(name, &Default::default()).await.expect("delete");
    }
    let started = Instant::now();
    while !api.list(&Default::default()).await.expect("list").items.is_empty() {
        assert!(started.elapsed() < PATIENCE, "requests not pruned within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(operator.terminate(Duration::from_secs(10)), "the operator did not stop");
    latencies
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let count = if smoke { SMOKE } else { FULL };
    let report_path =
        args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_else(|| "target/bench/argocd.md".to_owned());
    let cluster = Cluster::shared_with_argocd(env!("CARGO_BIN_EXE_berth-controlplane"));
    cluster.install_crds().await;
    let dir = std::env::temp_dir().join(format!("berth-bench-argocd-{}", std::process::id()));
    app_repository(&dir.join("web.git"), &[("v1", "hello")]);

    let mut report = format!(
        "# Argo CD benchmark\n\nCommit → Synced: from the first status naming Berth's commit to Ready (Argo CD \
         applied the commit through a root app with `ApplyOutOfSyncOnly=true`, as the README sets it up, and \
         synced the environment's app), {count} requests per mode, \
         {} at a time; loopback control plane and a real Argo CD v3.5.7 (application controller, \
         repo-server) on one 2-core machine. Without refresh, Argo CD looks at git every 10 s here \
         (`ARGOCD_RECONCILIATION_TIMEOUT`; 3 minutes by default).\n\n\
         | mode | p50 s | p99 s | max s |\n|---|---|---|---|\n",
        concurrency()
    );
    for refresh in [true, false] {
        let latencies = measure(cluster, &dir, refresh, count).await;
        let mode = if refresh { "refresh after push (default)" } else { "Argo CD's poll alone" };
        let line = format!(
            "| {mode} | {} | {} | {} |\n",
            secs(percentile(&latencies, 0.5)),
            secs(percentile(&latencies, 0.99)),
            secs(latencies[latencies.len() - 1])
        );
        eprint!("{line}");
        report.push_str(&line);
    }
    // The machine may be shared (other builds and suites): say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    report.push_str(&format!("\nLoad average at the end (1, 5, 15 min): {load}.\n"));
    if smoke {
        eprintln!("smoke run: too few requests to mean anything, no report written");
    } else {
        if let Some(parent) = std::path::Path::new(&report_path).parent() {
            std::fs::create_dir_all(parent).expect("report dir");
        }
        std::fs::write(&report_path, &report).expect("write report");
        eprintln!("report written to {report_path}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
