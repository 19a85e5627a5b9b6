//! Operator benchmark on the loopback control plane: create → Ready latency,
//! 1,000 requests at once next to the raw apiserver create rate, commits taken,
//! and the operator's peak memory with many requests. Writes a Markdown report.
//!
//! `just bench-operator` (builds `berth` in release first). Set
//! `BERTH_BENCH_RSS_REQUESTS` to change the request count of the memory reading.
//! `cargo test` runs it too, in a smoke mode with a few requests per step and the same
//! checks (cargo passes `--bench` only to real runs), so a change that breaks the
//! benchmark cannot land.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use berth::api::{EnvironmentRequest, environment_request::Phase};
use berth_e2e::{
    fixture::Cluster,
    measure::{all_requests, all_requests_labelled, apiserver_requests, count, ms, percentile, status_mib},
    operator::Operator,
};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};

const CONCURRENCY: usize = 32;

/// How many requests (or calls) each step makes.
struct Sizes {
    /// Created one at a time for the create → Ready latency.
    latency: usize,
    /// Of each call whose apiserver cost is measured with the operator stopped.
    calls: usize,
    /// In each burst, and ConfigMaps in the raw create rate it is compared with.
    burst: usize,
    /// Created at once for the peak memory reading, unless `BERTH_BENCH_RSS_REQUESTS` says.
    rss: usize,
}

/// `cargo bench`.
const FULL: Sizes = Sizes { latency: 200, calls: 1000, burst: 1000, rss: 10_000 };
/// `cargo test`: every step with a few requests, figures meaningless.
const SMOKE: Sizes = Sizes { latency: 3, calls: 10, burst: 20, rss: 20 };

static SIZES: OnceLock<&'static Sizes> = OnceLock::new();

/// The sizes of this run, chosen once in `main`.
fn sizes() -> &'static Sizes {
    SIZES.get().copied().unwrap_or(&FULL)
}

/// A tenant budget every burst fits in, so the guard's work is measured, not its refusals.
const BUDGET: &str = "{maxEnvironments: 100000, monthlyCostUSD: 1000000, quota: {pods: '1000000'}}";

/// The same request the operator e2e suites create, typed for the kube client.
fn request(namespace: &str, name: &str, tenant: &str, class: &str) -> EnvironmentRequest {
    serde_yaml::from_str(&berth_e2e::suite::request_yaml(namespace, name, tenant, class, "")).expect("request yaml")
}

async fn setup(cluster: &Cluster, tenant: &str, class: &str) {
    setup_with_budget(cluster, tenant, class, "{}").await
}

/// [`setup`] with a tenant budget (a YAML flow mapping).
async fn setup_with_budget(cluster: &Cluster, tenant: &str, class: &str, budget: &str) {
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
  budget: {budget}
"
    );
    let out = cluster.kubectl("admin", &["apply", "-f", "-"], Some(&yaml)).await;
    assert!(out.success, "{}", out.stderr);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client("admin").await);
    while namespaces.get_opt(tenant).await.ok().flatten().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves once `count` requests in `api`'s namespace are Ready.
async fn all_ready(api: &Api<EnvironmentRequest>, count: usize) {
    all_requests(api, count, |r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready)).await
}

fn commits(remote: &std::path::Path) -> usize {
    let repo = git2::Repository::open_bare(remote).expect("remote");
    let mut walk = repo.revwalk().expect("walk");
    if walk.push_ref("refs/heads/main").is_err() {
        return 0;
    }
    walk.count()
}

/// CPU seconds (user + system) each process of interest has used so far: the
/// operator, this benchmark's kube-apiserver and etcd (the children of its control
/// plane's `supervisor`), and this benchmark (the client).
///
/// Only this control plane's: summing every kube-apiserver on the machine, as this
/// once did, counted other test binaries' control planes too, and one of those exiting
/// between two readings took its CPU time out of the sum (a ceiling of −0.37 ms of
/// apiserver CPU per call on a machine running other suites).
fn cpu_seconds(supervisor: u32, operator: Option<u32>) -> Vec<(&'static str, f64)> {
    /// The fields of `/proc/<pid>/stat` after the parenthesised command.
    fn stat(pid: &str) -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(stat[stat.rfind(')')? + 2..].split_whitespace().map(str::to_owned).collect())
    }
    fn of(pid: &str) -> Option<f64> {
        // utime and stime are the 12th and 13th fields after the command.
        let fields = stat(pid)?;
        let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }
    let named = |name: &str| -> f64 {
        let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
        let parent = supervisor.to_string();
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
            // The parent process id is the 2nd field after the command.
            .filter(|pid| stat(pid).is_some_and(|fields| fields.get(1) == Some(&parent)))
            .filter_map(|pid| of(&pid))
            .sum()
    };
    vec![
        ("berth", operator.and_then(|pid| of(&pid.to_string())).unwrap_or(0.0)),
        ("kube-apiserver", named("kube-apiserver")),
        ("etcd", named("etcd")),
        ("client", of("self").unwrap_or(0.0)),
    ]
}

/// CPU used between two [`cpu_seconds`] readings, as "name 1.2 s" pairs.
fn cpu_used(before: &[(&str, f64)], after: &[(&str, f64)]) -> String {
    before.iter().zip(after).map(|((name, b), (_, a))| format!("{name} {:.1} s", a - b)).collect::<Vec<_>>().join(", ")
}

/// Apiserver calls between two [`apiserver_requests`] readings, per `per` objects,
/// busiest first ("PATCH environmentrequests/status 1.0, …").
fn calls_per(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    per: f64,
) -> String {
    let mut calls: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), (v - before.get(k).copied().unwrap_or(0.0)) / per))
        .filter(|(_, v)| *v >= 0.01)
        .collect();
    calls.sort_by(|a, b| b.1.total_cmp(&a.1));
    calls.iter().take(8).map(|(k, v)| format!("{k} {v:.2}")).collect::<Vec<_>>().join(", ")
}

/// Runs `step(i)` for i in 0..n, `CONCURRENCY` in flight; returns the steps per second
/// and the apiserver CPU per step in milliseconds.
async fn measured<F, Fut>(supervisor: u32, n: usize, step: F) -> (f64, f64)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (rate, per_step) = measured_beside(supervisor, None, n, step).await;
    (rate, per_step.apiserver)
}

/// CPU per step of a [`measured_beside`] run, in milliseconds.
struct StepCpu {
    apiserver: f64,
    /// The operator's, when one ran beside the steps.
    berth: f64,
    /// Every process's: the apiserver, etcd, the operator and this client.
    total: f64,
}

/// [`measured`] with an operator (`operator`, its process id) running beside the steps:
/// its CPU per step is read too.
async fn measured_beside<F, Fut>(supervisor: u32, operator: Option<u32>, n: usize, step: F) -> (f64, StepCpu)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let read = |name: &str, readings: &[(&str, f64)]| readings.iter().find(|(p, _)| *p == name).map_or(0.0, |r| r.1);
    let before = cpu_seconds(supervisor, operator);
    let started = Instant::now();
    stream::iter(0..n).for_each_concurrent(CONCURRENCY, step).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let after = cpu_seconds(supervisor, operator);
    let per_step = |name: &str| (read(name, &after) - read(name, &before)) * 1000.0 / n as f64;
    let total = ["kube-apiserver", "etcd", "berth", "client"].into_iter().map(per_step).sum();
    (rate, StepCpu { apiserver: per_step("kube-apiserver"), berth: per_step("berth"), total })
}

/// An Event about the request `name`, as Berth publishes one per transition.
fn bench_event(namespace: &str, name: &str) -> k8s_openapi::api::events::v1::Event {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{name}.bench")},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "berth", "reportingInstance": "bench",
        "action": "Reconcile", "reason": "Ready", "type": "Normal", "note": "committed",
        "regarding": {"apiVersion": "berth.dev/v1alpha1", "kind": "EnvironmentRequest",
                      "namespace": namespace, "name": name}
    }))
    .expect("event")
}

/// With the operator stopped: the apiserver's rate and CPU for each call one
/// request costs (the client's create, then Berth's finalizer patch, status apply
/// and event), next to a ConfigMap create. The burst cannot beat their sum.
async fn call_costs(
    cluster: &Cluster,
    client: &kube::Client,
    namespace: &str,
    ready_status: &serde_json::Value,
) -> CallCosts {
    use kube::api::{DeleteParams, Patch, PatchParams};
    let n = sizes().calls;
    let supervisor = cluster.info.supervisor_pid;
    let requests: Api<EnvironmentRequest> = Api::namespaced(client.clone(), namespace);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let name = |i: usize| format!("c{i:04}");
    let mut rows = Vec::new();
    rows.push((
        "create ConfigMap",
        1,
        measured(supervisor, n, |i| {
            let configmaps = configmaps.clone();
            async move {
                let cm = ConfigMap {
                    metadata: kube::api::ObjectMeta { name: Some(name(i)), ..Default::default() },
                    ..Default::default()
                };
                configmaps.create(&PostParams::default(), &cm).await.expect("create configmap");
            }
        })
        .await,
    ));
    rows.push((
        "create EnvironmentRequest",
        1,
        measured(supervisor, n, |i| {
            let requests = requests.clone();
            async move {
                let request = request(namespace, &name(i), "costs", "costs");
                requests.create(&PostParams::default(), &request).await.expect("create request");
            }
        })
        .await,
    ));
    rows.push((
        "patch of its metadata (as adding the finalizer)",
        1,
        measured(supervisor, n, |i| {
            let requests = requests.clone();
            async move {
                let patch = serde_json::json!({"metadata": {"annotations": {"bench": "x"}}});
                requests.patch(&name(i), &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
            }
        })
        .await,
    ));
    rows.push((
        "server-side apply of a Ready status",
        1,
        measured(supervisor, n, |i| {
            let requests = requests.clone();
            async move {
                let patch = serde_json::json!({
                    "apiVersion": "berth.dev/v1alpha1", "kind": "EnvironmentRequest", "status": ready_status
                });
                let params = PatchParams::apply("berth").force();
                requests.patch_status(&name(i), &params, &Patch::Apply(&patch)).await.expect("status");
            }
        })
        .await,
    ));
    // The same status written the two other ways a controller can, each to requests
    // that have none yet (writing a status a request already has changes nothing, and
    // the apiserver then skips the write).
    let fresh = |prefix: &'static str| {
        let requests = requests.clone();
        async move {
            stream::iter(0..n)
                .for_each_concurrent(CONCURRENCY, |i| {
                    let requests = requests.clone();
                    async move {
                        let request = request(namespace, &format!("{prefix}{i:04}"), "costs", "costs");
                        requests.create(&PostParams::default(), &request).await.expect("create request");
                    }
                })
                .await;
        }
    };
    fresh("m").await;
    rows.push((
        "JSON merge patch of the same Ready status",
        1,
        measured(supervisor, n, |i| {
            let requests = requests.clone();
            async move {
                let patch = serde_json::json!({"status": ready_status});
                let name = format!("m{i:04}");
                requests.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("status");
            }
        })
        .await,
    ));
    // An update sends the whole object at the resourceVersion the writer last saw (a
    // controller's cached copy): read them first, outside the measurement.
    fresh("u").await;
    let listed: std::collections::BTreeMap<String, EnvironmentRequest> = requests
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|r| (r.metadata.name.clone().unwrap_or_default(), r))
        .collect();
    let listed = &listed;
    rows.push((
        "update of the same Ready status (PUT /status at the cached resourceVersion)",
        1,
        measured(supervisor, n, |i| {
            let requests = requests.clone();
            async move {
                let name = format!("u{i:04}");
                let mut request = listed.get(&name).expect("listed").clone();
                request.status = serde_json::from_value(ready_status.clone()).expect("status");
                request.metadata.managed_fields = None;
                requests.replace_status(&name, &PostParams::default(), &request).await.expect("status");
            }
        })
        .await,
    ));
    rows.push((
        "create Event",
        1,
        measured(supervisor, n, |i| {
            let events = events.clone();
            async move {
                events.create(&PostParams::default(), &bench_event(namespace, &name(i))).await.expect("create event");
            }
        })
        .await,
    ));
    rows.push((
        "server-side apply of the smallest status (`phase: Ready` alone)",
        1,
        measured(supervisor, n, |i| {
            let requests = requests.clone();
            async move {
                let patch = serde_json::json!({
                    "apiVersion": "berth.dev/v1alpha1", "kind": "EnvironmentRequest", "status": {"phase": "Ready"}
                });
                let params = PatchParams::apply("bench-minimal").force();
                requests.patch_status(&name(i), &params, &Patch::Apply(&patch)).await.expect("status");
            }
        })
        .await,
    ));
    // The floor for any operator: per request only the client's create, one status
    // write and one event, with no operator work at all.
    rows.push((
        "**ceiling**: create + Ready status + event per request, no operator",
        3,
        measured(supervisor, n, |i| ceiling_step(&requests, &events, format!("d{i:04}"), "costs", ready_status)).await,
    ));
    // The same with one watch of requests open, as every controller of a kind holds:
    // each write is then also encoded into a watch event.
    // Its first list is over before the measurement starts.
    let (listed, list_over) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn({
        let requests = requests.clone();
        async move {
            use kube::runtime::watcher;
            let mut events = std::pin::pin!(watcher(requests, watcher::Config::default()));
            let mut listed = Some(listed);
            while let Some(event) = events.next().await {
                if matches!(event, Ok(watcher::Event::InitDone)) {
                    listed.take().map(|listed| listed.send(()));
                }
            }
        }
    });
    list_over.await.expect("the watch lists the requests");
    rows.push((
        "the ceiling with one watch of EnvironmentRequests open (all a controller needs)",
        3,
        measured(supervisor, n, |i| ceiling_step(&requests, &events, format!("w{i:04}"), "costs", ready_status)).await,
    ));
    watch.abort();
    let _ = requests.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
    let configmap_rate = rows[0].2.0;
    let create_cpu = rows[1].2.1;
    let (ceiling, ceiling_cpu) =
        rows.iter().find(|row| row.0.starts_with("**ceiling**")).map_or((0.0, 0.0), |row| row.2);
    let mut table = format!(
        "| call (operator stopped, {} each) | per second | of the ConfigMap create rate | apiserver CPU per call |\n\
         |---|---|---|---|\n",
        count(n)
    );
    for (call, calls, (rate, cpu)) in rows {
        let share = 100.0 * rate / configmap_rate;
        // A step of the ceiling is a request of three calls: its CPU per call, and per request.
        let cpu = match calls {
            1 => format!("{cpu:.2} ms"),
            calls => format!("{:.2} ms ({cpu:.2} ms per request of {calls} calls)", cpu / calls as f64),
        };
        table.push_str(&format!("| {call} | {rate:.0}/s | {share:.0} % | {cpu} |\n"));
    }
    CallCosts { table: table + "\n", ceiling, create_cpu, ceiling_cpu }
}

/// What [`call_costs`] measured.
struct CallCosts {
    /// The report's table.
    table: String,
    /// Requests per second of the no-operator ceiling.
    ceiling: f64,
    /// Apiserver CPU of one EnvironmentRequest create, in milliseconds.
    create_cpu: f64,
    /// Apiserver CPU of one request of the ceiling (its three calls), in milliseconds.
    ceiling_cpu: f64,
}

/// The ceiling beside a standby Berth, and a create alone: rate and CPU per step.
struct Standby {
    create: (f64, StepCpu),
    ceiling: (f64, StepCpu),
}

/// The no-operator ceiling again, beside a standby Berth: the webhook registered and
/// served, every watch of its index open, but no controller running (a holder that
/// never lets go has the leader Lease). What this webhook and these watches cost the
/// apiserver before an operator does any work: the burst with the webhook cannot beat
/// it. The webhook operator must be gone; the standby takes over its ports.
async fn standby_ceiling(
    cluster: &Cluster,
    client: &kube::Client,
    dir: &std::path::Path,
    setup: &berth_e2e::webhook::WebhookSetup,
    ready_status: &serde_json::Value,
) -> Standby {
    use k8s_openapi::{
        api::coordination::v1::{Lease, LeaseSpec},
        apimachinery::pkg::apis::meta::v1::MicroTime,
    };
    let lease_namespace = cluster.namespace("bench-lease").await;
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(berth::operator::leader::LEASE_NAME.to_owned()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("bench-holder".to_owned()),
            lease_duration_seconds: Some(3600),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..Default::default()
        }),
    };
    Api::<Lease>::namespaced(client.clone(), &lease_namespace)
        .create(&PostParams::default(), &lease)
        .await
        .expect("the held Lease");
    let mut env = setup.env();
    env.push(("BERTH_LEADER_ELECTION_NAMESPACE".to_owned(), lease_namespace));
    let standby =
        Operator::start_with_env(&cluster.info, dir, &dir.join("remote.git"), 200, env).expect("standby operator");
    berth_e2e::webhook::wait_until_answering(cluster, &standby).await.expect("the standby's webhook answers");
    // Its start (the first lists of every watch, thousands of requests) is over before
    // the measurement starts.
    let pid = standby.berth_pid();
    let started = Instant::now();
    let mut last = cpu_seconds(cluster.info.supervisor_pid, pid)[0].1;
    let mut calm = 0;
    while calm < 2 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_seconds(cluster.info.supervisor_pid, pid)[0].1;
        calm = if now - last < 0.05 { calm + 1 } else { 0 };
        last = now;
    }
    let (supervisor, n) = (cluster.info.supervisor_pid, sizes().calls);
    let requests: Api<EnvironmentRequest> = Api::namespaced(client.clone(), "hooked");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "hooked");
    let create = measured_beside(supervisor, pid, n, |i| {
        let requests = requests.clone();
        async move {
            let request = request("hooked", &format!("s{i:04}"), "hooked", "hooked");
            requests.create(&PostParams::default(), &request).await.expect("create through the webhook");
        }
    })
    .await;
    let ceiling = measured_beside(supervisor, pid, n, |i| {
        ceiling_step(&requests, &events, format!("t{i:04}"), "hooked", ready_status)
    })
    .await;
    // It stood by throughout: it never led, so it reconciled nothing.
    assert_eq!(standby.metric("berth_leader").await, Some(0.0), "the standby answers /metrics as no leader");
    let log = standby.log_text();
    assert!(
        log.contains("standing by until elected leader") && !log.contains("elected leader; starting the controllers"),
        "the standby led:\n{log}"
    );
    Standby { create, ceiling }
}

/// One request of the ceiling: the client's create, then the writes one Ready request
/// needs from any operator (its status, one event), in `tenant`'s namespace.
async fn ceiling_step(
    requests: &Api<EnvironmentRequest>,
    events: &Api<k8s_openapi::api::events::v1::Event>,
    name: String,
    tenant: &str,
    ready_status: &serde_json::Value,
) {
    use kube::api::{Patch, PatchParams};
    let namespace = requests.namespace().unwrap_or_default();
    requests.create(&PostParams::default(), &request(namespace, &name, tenant, tenant)).await.expect("create");
    let patch = serde_json::json!({
        "apiVersion": "berth.dev/v1alpha1", "kind": "EnvironmentRequest", "status": ready_status
    });
    let params = PatchParams::apply("berth").force();
    requests.patch_status(&name, &params, &Patch::Apply(&patch)).await.expect("status");
    events.create(&PostParams::default(), &bench_event(namespace, &name)).await.expect("create event");
}

/// EnvironmentRequest status writes the apiserver has served so far.
async fn status_writes(client: &kube::Client) -> f64 {
    apiserver_requests(client).await.get("APPLY environmentrequests/status").copied().unwrap_or(0.0)
}

/// Waits until no status write came for 3 s; returns how many came since `since`.
async fn status_writes_until_quiet(client: &kube::Client, since: f64) -> f64 {
    let mut last = status_writes(client).await;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = status_writes(client).await;
        if now == last {
            return now - since;
        }
        last = now;
    }
}

/// The label that marks a burst's requests.
const BURST_LABEL: &str = "bench.berth.dev/burst";

/// Waits until the operator runs fewer than [`QUIET_RATE`] request reconciles a second
/// for 3 s in a row (the resyncs of thousands of settled requests never stop), at
/// most [`SETTLE_LIMIT`].
async fn settle(operator: &Operator) {
    let started = Instant::now();
    let mut last = operator.metric_sum(RECONCILES, REQUEST_CONTROLLER).await;
    let mut quiet = 0;
    while quiet < 3 {
        if started.elapsed() > SETTLE_LIMIT {
            eprintln!("the operator still reconciles after {SETTLE_LIMIT:?}; measuring anyway");
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = operator.metric_sum(RECONCILES, REQUEST_CONTROLLER).await;
        let calm = matches!((last, now), (Some(last), Some(now)) if now - last < QUIET_RATE);
        quiet = if calm { quiet + 1 } else { 0 };
        last = now;
    }
}

/// Request reconciles a second below which the operator counts as quiet: above the
/// resyncs of 11,200 settled requests (37/s on average, every 300 s).
const QUIET_RATE: f64 = 50.0;
/// How long [`settle`] waits at most.
const SETTLE_LIMIT: Duration = Duration::from_secs(180);
const RECONCILES: &str = "berth_reconciles_total";
const REQUEST_CONTROLLER: &str = "controller=\"environment_request\"";

/// EnvironmentRequest reconciles the operator has run so far, whatever their outcome.
async fn request_reconciles(operator: &Operator) -> f64 {
    operator.metric_sum(RECONCILES, REQUEST_CONTROLLER).await.unwrap_or(0.0)
}

/// A burst's figures beside its report rows.
struct Burst {
    rows: String,
    /// Requests per second until all were Ready.
    rate: f64,
    /// Creation of the first to the last Ready.
    ready: Duration,
    /// Every process's CPU per request in milliseconds: the apiserver, etcd, the
    /// operator and this client.
    cpu_per_request: f64,
}

/// The burst's requests created at once in a new tenant `name` with `budget`, until
/// all are Ready.
async fn burst(
    cluster: &Cluster,
    client: &kube::Client,
    remote: &std::path::Path,
    operator: &Operator,
    (name, budget): (&str, &str),
    ceiling: f64,
) -> Burst {
    setup_with_budget(cluster, name, name, budget).await;
    burst_into(cluster, client, remote, operator, name, &format!("tenant budget `{budget}`"), ceiling).await
}

/// The burst's requests created at once in tenant `tenant` (and its namespace of the same
/// name), until all are Ready: the report rows (creation, Ready, CPU, apiserver calls,
/// commits). `ceiling` is the no-operator rate of requests the burst is compared with.
async fn burst_into(
    cluster: &Cluster,
    client: &kube::Client,
    remote: &std::path::Path,
    operator: &Operator,
    tenant: &str,
    what: &str,
    ceiling: f64,
) -> Burst {
    let api: Api<EnvironmentRequest> = Api::namespaced(client.clone(), tenant);
    let n = sizes().burst;
    // What came before has settled: a tenant's new budget re-renders its 10,000
    // environments first (a spec change reaches every one of them).
    settle(operator).await;
    let before = api.list_metadata(&ListParams::default()).await.expect("list").items.len();
    // The burst's own requests carry a label, so that waiting for them reads them alone.
    let label = (BURST_LABEL, format!("{tenant}-{before}"));
    let selector = format!("{}={}", label.0, label.1);
    let supervisor = cluster.info.supervisor_pid;
    let commits_before = commits(remote);
    let cpu_before = cpu_seconds(supervisor, operator.berth_pid());
    let calls_before = apiserver_requests(client).await;
    let reconciles_before = request_reconciles(operator).await;
    let started = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(CONCURRENCY, |i| {
            let (api, label) = (api.clone(), &label);
            async move {
                let mut request = request(tenant, &format!("b{i:04}"), tenant, tenant);
                request.labels_mut().insert(label.0.to_owned(), label.1.clone());
                api.create(&PostParams::default(), &request).await.expect("create");
            }
        })
        .await;
    let created = started.elapsed();
    all_requests_labelled(&api, Some(&selector), n, |r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready))
        .await;
    let ready = started.elapsed();
    let cpu_after = cpu_seconds(supervisor, operator.berth_pid());
    let cpu = cpu_used(&cpu_before, &cpu_after);
    let per_request = |name: &str| {
        let read = |readings: &[(&str, f64)]| readings.iter().find(|(p, _)| *p == name).map_or(0.0, |(_, s)| *s);
        (read(&cpu_after) - read(&cpu_before)) * 1000.0 / n as f64
    };
    let (berth_per_request, apiserver_per_request) = (per_request("berth"), per_request("kube-apiserver"));
    let cpu_per_request = ["kube-apiserver", "etcd", "berth", "client"].into_iter().map(per_request).sum();
    let calls = calls_per(&calls_before, &apiserver_requests(client).await, n as f64);
    let reconciles = (request_reconciles(operator).await - reconciles_before) / n as f64;
    let commits = commits(remote) - commits_before;
    let rate = n as f64 / ready.as_secs_f64();
    let count_n = count(n);
    let already = if before > 0 { format!(", {} already there", count(before)) } else { String::new() };
    let rows = format!(
        "| {count_n} EnvironmentRequests created ({CONCURRENCY} in flight), {what}{already} | {} ms |\n\
         | … all {count_n} Ready | {} ms → {rate:.0}/s = {:.0} % of the no-operator ceiling ({ceiling:.0}/s) |\n\
         | … CPU used meanwhile | {cpu} |\n\
         | … Berth's CPU per request | {berth_per_request:.2} ms (target ≤ 1.5 ms) |\n\
         | … of the apiserver's CPU per request in the same burst ({apiserver_per_request:.2} ms) | {:.0} % |\n\
         | … apiserver calls per request | {calls} |\n\
         | … EnvironmentRequest reconciles per request | {reconciles:.2} |\n\
         | commits for the {count_n} | {commits} (requests / {:.0}) |\n",
        ms(created),
        ms(ready),
        100.0 * rate / ceiling,
        100.0 * berth_per_request / apiserver_per_request.max(f64::EPSILON),
        n as f64 / commits.max(1) as f64
    );
    Burst { rows, rate, ready, cpu_per_request }
}

/// Where the operator's GitOps clone and its bare remote live, and how the report says it.
///
/// tmpfs (`/dev/shm`) unless `BERTH_BENCH_GIT_DIR` names a folder: the disk of the
/// machines this runs on is ext4 without a journal, where the kernel allocates an inode
/// by stepping over every inode deleted in the last 5 s (5 min while their table is not
/// yet written back). The writer creates a file per loose object, so its CPU there
/// depends on what the machine deleted lately: the same writer measured 1.0 ms and
/// 5.7 ms per environment in back-to-back runs on disk, 0.6–0.7 ms on tmpfs every time
/// (`BERTH_BENCH_BURST_ONLY=1 cargo bench --bench gitops -- --bench`, which reports both).
fn git_dir() -> (std::path::PathBuf, String) {
    match std::env::var_os("BERTH_BENCH_GIT_DIR") {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            let place = format!("under `{}` (`BERTH_BENCH_GIT_DIR`)", dir.display());
            (dir, place)
        }
        None if std::path::Path::new("/dev/shm").is_dir() => {
            ("/dev/shm".into(), "on tmpfs (`/dev/shm`; `BERTH_BENCH_GIT_DIR` moves them)".to_owned())
        }
        None => (std::env::temp_dir(), "in the temp folder (no `/dev/shm` here)".to_owned()),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let _ = SIZES.set(if smoke { &SMOKE } else { &FULL });
    let report_path =
        args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_else(|| "target/bench/operator.md".to_owned());
    let rss_requests: usize =
        std::env::var("BERTH_BENCH_RSS_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(sizes().rss);
    let window_ms: u64 = std::env::var("BERTH_BENCH_WINDOW_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let cluster = Cluster::shared(env!("CARGO_BIN_EXE_berth-controlplane"));
    cluster.install_crds().await;
    let (git_base, git_place) = git_dir();
    let dir = git_base.join(format!("berth-bench-operator-{}", std::process::id()));
    // Declared before the operators, so it is dropped after them, on a panic too.
    let _remove_dir = RemoveOnDrop(dir.clone());
    let remote = dir.join("remote.git");
    let mut operator = Operator::start_with_window(&cluster.info, &dir, &remote, window_ms).expect("operator starts");
    let client = cluster.client("admin").await;
    let mut report = format!(
        "# Operator benchmark\n\nLoopback kube-apiserver + etcd (2 cores, shared with the operator), release `berth run`, \
         GitOps batch window {window_ms} ms, bare `file://` remote; the clone and the remote {git_place}.\n\n"
    );

    // 1. Create -> Ready latency, one request at a time.
    setup(cluster, "lat", "lat").await;
    let api: Api<EnvironmentRequest> = Api::namespaced(client.clone(), "lat");
    let mut latencies = Vec::new();
    for i in 0..sizes().latency {
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

    // What each call costs the apiserver, with the operator stopped.
    let ready = api.get("r000").await.expect("a Ready request");
    let ready_status = serde_json::to_value(&ready.status).expect("status");
    operator.kill();
    let costs_ns = cluster.namespace("costs").await;
    let costs = call_costs(cluster, &client, &costs_ns, &ready_status).await;
    let ceiling = costs.ceiling;
    eprint!("{}", costs.table);
    report.push_str(&costs.table);
    // With the operator stopped, nothing else writes a request's status now.
    let before_restart = status_writes(&client).await;
    operator.restart().expect("operator restarts");
    api.create(&PostParams::default(), &request("lat", "probe", "lat", "lat")).await.expect("create");
    while api.get("probe").await.ok().and_then(|r| r.status?.phase) != Some(Phase::Ready) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restart_writes = status_writes_until_quiet(&client, before_restart).await;
    let line = format!(
        "Operator restarted with {} settled requests: {restart_writes:.0} status writes until quiet \
         (the new probe request's included)\n\n",
        sizes().latency
    );
    eprint!("{line}");
    report.push_str(&line);

    // 2. Raw apiserver create rate for as many ConfigMaps as a burst has requests, same concurrency.
    let supervisor = cluster.info.supervisor_pid;
    let raw_ns = cluster.namespace("raw").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &raw_ns);
    let cpu_before = cpu_seconds(supervisor, operator.berth_pid());
    let started = Instant::now();
    stream::iter(0..sizes().burst)
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
    let raw_rate = sizes().burst as f64 / raw.as_secs_f64();
    let raw_cpu = cpu_used(&cpu_before, &cpu_seconds(supervisor, operator.berth_pid()));

    // 3. The burst's requests at once, until all are Ready.
    let unbudgeted = burst(cluster, &client, &remote, &operator, ("burst", "{}"), ceiling).await;
    let line = format!(
        "| measurement | value |\n|---|---|\n\
         | raw apiserver create rate, {} ConfigMaps ({CONCURRENCY} in flight) | {raw_rate:.0}/s ({} ms) |\n\
         | … CPU used meanwhile | {raw_cpu} |\n{}",
        count(sizes().burst),
        ms(raw),
        unbudgeted.rows,
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
        all_ready(&api, rss_requests).await;
        let total = sizes().burst + sizes().latency + rss_requests;
        let pid = operator.berth_pid();
        let mib = |field: &str| {
            pid.and_then(|pid| status_mib(pid, field))
                .map(|m| format!("{m:.0} MiB"))
                .unwrap_or_else(|| "n/a".to_owned())
        };
        let line = format!(
            "| operator peak RSS (VmHWM) with {total} requests in the cluster, {rss_requests} of them created at once | {} (all Ready after {} s; now {} anonymous + {} file-backed + {} shared memory, e.g. pack files mapped from tmpfs) |\n",
            mib("VmHWM"),
            started.elapsed().as_secs(),
            mib("RssAnon"),
            mib("RssFile"),
            mib("RssShmem"),
        );
        eprint!("{line}");
        report.push_str(&line);
    }

    // 5. The burst again in a tenant with a budget, as real tenants have: the
    // controller's budget guard then decides each new request against the others. Into
    // the tenant that holds the memory reading's requests when there are some, so
    // each decision counts them all.
    let budgeted = if rss_requests > 0 {
        let patch =
            serde_json::json!({"spec": {"budget": serde_yaml::from_str::<serde_json::Value>(BUDGET).expect("budget")}});
        let tenants: Api<berth::api::Tenant> = Api::all(client.clone());
        tenants
            .patch("mem", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .expect("budget");
        burst_into(cluster, &client, &remote, &operator, "mem", &format!("tenant budget `{BUDGET}`"), ceiling).await
    } else {
        burst(cluster, &client, &remote, &operator, ("budgeted", BUDGET), ceiling).await
    };
    let line = format!(
        "{}| … the budgeted burst's time to all Ready, of the unbudgeted one's | {:.0} % (target ≤ 125 %) |\n",
        budgeted.rows,
        100.0 * budgeted.ready.as_secs_f64() / unbudgeted.ready.as_secs_f64()
    );
    eprint!("{line}");
    report.push_str(&line);

    // 6. The same burst with the admission webhook registered, as a real install runs:
    // it adds Berth's finalizer at creation (no finalizer patch) and checks each create.
    drop(operator);
    let hooked_dir = dir.join("with-webhook");
    let (hooked, setup) = berth_e2e::webhook::start_operator(cluster, &hooked_dir).await.expect("webhook operator");
    // A new operator with a new remote commits every existing request again: let that
    // finish (no commit for 3 s) before the burst is measured.
    let hooked_remote = hooked_dir.join("remote.git");
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = commits(&hooked_remote);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let hooked_burst = burst(cluster, &client, &hooked_remote, &hooked, ("hooked", "{}"), ceiling).await;
    let line = format!(
        "\nWith the admission webhook registered (mutating + validating):\n\n| measurement | value |\n|---|---|\n{}\
         | … share of the no-operator ceiling | {:.0} % (target ≥ 75 %) |\n",
        hooked_burst.rows,
        100.0 * hooked_burst.rate / ceiling
    );
    eprint!("{line}");
    report.push_str(&line);

    // 7. The ceiling again beside a standby Berth: what the webhook and the watches
    // cost before any operator work, and so what share of the ceiling is Berth's to win.
    let hooked_pid = hooked.berth_pid();
    drop(hooked);
    // The standby takes over its ports: its listener must be closed first.
    let gone = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
    };
    while hooked_pid.is_some_and(|pid| !gone(pid)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let standby = standby_ceiling(cluster, &client, &dir.join("standby"), &setup, &ready_status).await;
    let line = format!(
        "\nBeside a standby Berth (webhook registered and served, every watch of its index open, no controller: \
         another holder has the leader Lease), {} requests of the ceiling in tenant `hooked`:\n\n\
         | measurement | value |\n|---|---|\n\
         | create through the webhook (mutating + validating) | {:.0}/s, apiserver CPU {:.2} ms per create \
         (without the webhook or watches: {:.2} ms), Berth's {:.2} ms |\n\
         | **ceiling beside a standby Berth**: create + Ready status + event | {:.0}/s = {:.0} % of the no-operator \
         ceiling, apiserver CPU {:.2} ms per request (without the webhook or watches: {:.2} ms), Berth's {:.2} ms |\n\
         | the burst with the webhook against this ceiling | its rate {:.0} % of this ceiling's; this ceiling's CPU per \
         request {:.0} % of the burst's ({:.2} ms against {:.2} ms, the apiserver, etcd, Berth and this client together) |\n",
        count(sizes().calls),
        standby.create.0,
        standby.create.1.apiserver,
        costs.create_cpu,
        standby.create.1.berth,
        standby.ceiling.0,
        100.0 * standby.ceiling.0 / ceiling,
        standby.ceiling.1.apiserver,
        costs.ceiling_cpu,
        standby.ceiling.1.berth,
        100.0 * hooked_burst.rate / standby.ceiling.0,
        100.0 * standby.ceiling.1.total / hooked_burst.cpu_per_request.max(f64::EPSILON),
        standby.ceiling.1.total,
        hooked_burst.cpu_per_request,
    );
    eprint!("{line}");
    report.push_str(&line);

    if smoke {
        eprintln!("smoke run: sizes too small to mean anything, no report written");
        return;
    }
    if let Some(parent) = std::path::Path::new(&report_path).parent() {
        std::fs::create_dir_all(parent).expect("report dir");
    }
    std::fs::write(&report_path, &report).expect("write report");
    eprintln!("report written to {report_path}");
}

/// Removes a folder when dropped: on tmpfs the clones and remotes hold memory until
/// removed, so a failed run must not leave them behind either.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // A failed run keeps its logs (the operator's among them): copied out of tmpfs
        // into the temp folder before the rest goes.
        if std::thread::panicking() {
            let logs = std::fs::read_dir(&self.0).into_iter().flatten().flatten();
            for log in logs.filter(|entry| entry.path().extension().is_some_and(|ext| ext == "log")) {
                let kept = std::env::temp_dir().join(format!(
                    "berth-bench-operator-{}-{}",
                    std::process::id(),
                    log.file_name().to_string_lossy()
                ));
                if std::fs::copy(log.path(), &kept).is_ok() {
                    eprintln!("kept {}", kept.display());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
