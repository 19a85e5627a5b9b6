//! Operator benchmark on the loopback control plane: create → Ready latency,
//! 1,000 requests at once next to the raw apiserver create rate, commits taken,
//! and the operator's peak memory with many requests. Writes a Markdown report.
//!
//! `just bench-operator` (builds `berth` in release first). Set
//! `BERTH_BENCH_RSS_REQUESTS` to change the request count of the memory reading.

use std::time::{Duration, Instant};

use berth::api::{EnvironmentRequest, environment_request::Phase};
use berth_e2e::{fixture::Cluster, operator::Operator};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ListParams, PostParams},
};

#[path = "../tests/operator/common.rs"]
mod common;

const CONCURRENCY: usize = 32;

/// The same request the operator e2e suites create, typed for the kube client.
fn request(namespace: &str, name: &str, tenant: &str, class: &str) -> EnvironmentRequest {
    serde_yaml::from_str(&common::request_yaml(namespace, name, tenant, class, "")).expect("request yaml")
}

async fn setup(cluster: &Cluster, tenant: &str, class: &str) {
    let yaml = format!(
        "apiVersion: berth.dev/v1alpha1
kind: EnvironmentClass
metadata: {{name: {class}}}
spec: {{quota: {{pods: '10'}}, estimatedMonthlyCostUSD: 1}}
---
apiVersion: berth.dev/v1alpha1
kind: Tenant
metadata: {{name: {tenant}}}
spec:
  owners: [{{kind: User, name: alice}}]
  allowedClasses: [{class}]
  requestNamespace: {tenant}
"
    );
    let out = cluster.kubectl("admin", &["apply", "-f", "-"], Some(&yaml)).await;
    assert!(out.success, "{}", out.stderr);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client("admin").await);
    while namespaces.get_opt(tenant).await.ok().flatten().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn all_ready(api: &Api<EnvironmentRequest>, count: usize) -> usize {
    let list = api.list(&ListParams::default()).await.expect("list");
    let ready = list.items.iter().filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready)).count();
    assert!(list.items.len() <= count);
    ready
}

fn commits(remote: &std::path::Path) -> usize {
    let repo = git2::Repository::open_bare(remote).expect("remote");
    let mut walk = repo.revwalk().expect("walk");
    if walk.push_ref("refs/heads/main").is_err() {
        return 0;
    }
    walk.count()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() {
    let report_path =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_else(|| "target/bench/operator.md".to_owned());
    let rss_requests: usize =
        std::env::var("BERTH_BENCH_RSS_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let window_ms: u64 = std::env::var("BERTH_BENCH_WINDOW_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let cluster = Cluster::shared(env!("CARGO_BIN_EXE_berth-controlplane"));
    cluster.install_crds().await;
    let dir = std::env::temp_dir().join(format!("berth-bench-operator-{}", std::process::id()));
    let remote = dir.join("remote.git");
    let operator = Operator::start_with_window(&cluster.info, &dir, &remote, window_ms).expect("operator starts");
    let client = cluster.client("admin").await;
    let mut report = format!(
        "# Operator benchmark\n\nLoopback kube-apiserver + etcd (2 cores, shared with the operator), release `berth run`, \
         GitOps batch window {window_ms} ms, bare `file://` remote.\n\n"
    );

    // 1. Create -> Ready latency, one request at a time.
    setup(cluster, "lat", "lat").await;
    let api: Api<EnvironmentRequest> = Api::namespaced(client.clone(), "lat");
    let mut latencies = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        api.create(&PostParams::default(), &request("lat", &format!("r{i:03}"), "lat", "lat")).await.expect("create");
        loop {
            let r = api.get(&format!("r{i:03}")).await.expect("get");
            if r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let line = format!(
        "create → Ready latency over {} requests (one at a time): p50 {} ms, p99 {} ms, max {} ms\n\n",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0))
    );
    eprint!("{line}");
    report.push_str(&line);

    // 2. Raw apiserver create rate for 1,000 ConfigMaps, same concurrency.
    let raw_ns = cluster.namespace("raw").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &raw_ns);
    let started = Instant::now();
    stream::iter(0..1000)
        .for_each_concurrent(CONCURRENCY, |i| {
            let configmaps = configmaps.clone();
            async move {
                let cm = ConfigMap {
                    metadata: kube::api::ObjectMeta { name: Some(format!("cm-{i:04}")), ..Default::default() },
                    ..Default::default()
                };
                configmaps.create(&PostParams::default(), &cm).await.expect("create configmap");
            }
        })
        .await;
    let raw = started.elapsed();
    let raw_rate = 1000.0 / raw.as_secs_f64();

    // 3. 1,000 requests at once, until all are Ready.
    setup(cluster, "burst", "burst").await;
    let api: Api<EnvironmentRequest> = Api::namespaced(client.clone(), "burst");
    let commits_before = commits(&remote);
    let started = Instant::now();
    stream::iter(0..1000)
        .for_each_concurrent(CONCURRENCY, |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &request("burst", &format!("b{i:04}"), "burst", "burst"))
                    .await
                    .expect("create");
            }
        })
        .await;
    let created = started.elapsed();
    while all_ready(&api, 1000).await < 1000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let burst = started.elapsed();
    let burst_commits = commits(&remote) - commits_before;
    let rate = 1000.0 / burst.as_secs_f64();
    let line = format!(
        "| measurement | value |\n|---|---|\n\
         | raw apiserver create rate, 1,000 ConfigMaps ({CONCURRENCY} in flight) | {raw_rate:.0}/s ({} ms) |\n\
         | 1,000 EnvironmentRequests created ({CONCURRENCY} in flight) | {} ms |\n\
         | … all 1,000 Ready | {} ms → {rate:.0}/s = {:.0} % of the raw create rate |\n\
         | commits for the 1,000 | {burst_commits} (requests / {:.0}) |\n",
        ms(raw),
        ms(created),
        ms(burst),
        100.0 * rate / raw_rate,
        1000.0 / burst_commits.max(1) as f64
    );
    eprint!("{line}");
    report.push_str(&line);

    // 4. Peak memory with many requests.
    if rss_requests > 0 {
        setup(cluster, "mem", "mem").await;
        let api: Api<EnvironmentRequest> = Api::namespaced(client.clone(), "mem");
        let started = Instant::now();
        stream::iter(0..rss_requests)
            .for_each_concurrent(CONCURRENCY, |i| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &request("mem", &format!("m{i:05}"), "mem", "mem"))
                        .await
                        .expect("create");
                }
            })
            .await;
        while all_ready(&api, rss_requests).await < rss_requests {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let total = 1000 + 200 + rss_requests;
        let rss = operator
            .berth_pid()
            .and_then(peak_rss_mib)
            .map(|m| format!("{m:.0} MiB"))
            .unwrap_or_else(|| "n/a".to_owned());
        let line = format!(
            "| operator peak RSS (VmHWM) with {total} requests in the cluster, {rss_requests} of them created at once | {rss} (all Ready after {} s) |\n",
            started.elapsed().as_secs()
        );
        eprint!("{line}");
        report.push_str(&line);
    }

    if let Some(parent) = std::path::Path::new(&report_path).parent() {
        std::fs::create_dir_all(parent).expect("report dir");
    }
    std::fs::write(&report_path, &report).expect("write report");
    eprintln!("report written to {report_path}");
    drop(operator);
}
