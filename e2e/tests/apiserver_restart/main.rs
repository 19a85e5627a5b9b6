//! kube-apiserver restarted under a running operator, etcd kept, as an upgrade or a
//! crash does: every watch comes back within its bounded backoff, what is created or
//! edited right after is reconciled at once, and `/readyz` says so while watches are
//! down. Its own binary (and control plane): it takes the apiserver away.
//!
//! `BERTH_E2E_APISERVER_RESTARTS=5` repeats the restart (each prints its recovery
//! time); `BERTH_E2E_APISERVER_GRACE_S` bounds how long the apiserver may take to
//! exit after SIGTERM before it is killed (default 90: it exits on its own, after
//! about 60 s of refusing new connections while its watches stay open).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use berth::api::{EnvironmentRequest, environment_request::Phase};
use berth_e2e::operator::{Operator, metric_at};
use berth_e2e::suite::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Target of issue 11: new requests Ready this soon after the apiserver answers again
/// (measured 6.6–9.9 s; each round prints it). The test fails only past
/// `BERTH_E2E_RECOVERY_LIMIT_S` (default twice the target), so a loaded CI machine does
/// not flake while the stall (78 s, or never) still fails it; set it to 15 to hold the target.
const RECOVERY: Duration = Duration::from_secs(15);
/// The operator's watch-health threshold here (30 s by default), to keep the test short.
const UNHEALTHY_AFTER_SECONDS: u64 = 5;
const REQUESTS: usize = 20;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The operator of this binary, with a short watch-health threshold.
async fn start_operator() {
    let cluster = cluster();
    cluster.install_crds().await;
    OPERATOR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berth-apiserver-restart-e2e-{}", std::process::id()));
        let env = vec![("BERTH_WATCH_UNHEALTHY_AFTER_SECONDS".to_owned(), UNHEALTHY_AFTER_SECONDS.to_string())];
        let operator = Operator::start_with_env(&cluster.info, &dir, &dir.join("remote.git"), 200, env)
            .unwrap_or_else(|e| panic!("operator did not start: {e:#}"));
        Mutex::new(operator)
    });
}

/// The status code of the operator's `/readyz`, `None` while it does not answer.
async fn readyz() -> Option<u16> {
    let telemetry = OPERATOR.get()?.lock().unwrap_or_else(|e| e.into_inner()).telemetry.clone();
    let mut stream = tokio::net::TcpStream::connect(telemetry.strip_prefix("http://")?).await.ok()?;
    stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// `berth_watch_healthy{kind="<kind>"}` on the operator's /metrics once it is `want`
/// (each watch crosses the threshold on its own), or its last value after 5 s.
async fn watch_healthy(kind: &str, want: f64) -> Option<f64> {
    let telemetry = OPERATOR.get()?.lock().unwrap_or_else(|e| e.into_inner()).telemetry.clone();
    let metric = format!("berth_watch_healthy{{kind=\"{kind}\"}}");
    let started = Instant::now();
    loop {
        let value = metric_at(&telemetry, &metric).await;
        if value == Some(want) || started.elapsed() > Duration::from_secs(5) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `/readyz` until it answers `code`; how long that took, `None` if not within `limit`.
async fn readyz_turns(code: u16, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if readyz().await == Some(code) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Polls until every request in `names` is Ready and `edited` observed its generation,
/// or `limit` passes; returns how long it took, or what was still missing.
async fn provisioned(
    api: &Api<EnvironmentRequest>,
    names: &[String],
    edited: (&Api<EnvironmentRequest>, &str),
    limit: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let mut missing = Vec::new();
        for name in names {
            let phase = api.get_opt(name).await.ok().flatten().and_then(|r| r.status?.phase);
            if phase != Some(Phase::Ready) {
                missing.push(format!("{name} is {phase:?}"));
            }
        }
        let request = edited.0.get_opt(edited.1).await.ok().flatten();
        let generation = request.as_ref().and_then(|r| r.metadata.generation);
        let observed = request.as_ref().and_then(|r| r.status.as_ref()?.observed_generation);
        if generation != observed {
            missing.push(format!("{} observed generation {observed:?} of {generation:?}", edited.1));
        }
        if missing.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(missing.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn after_an_apiserver_restart_every_watch_recovers_and_readyz_tells_while_they_are_down() {
    start_operator().await;
    let restarts = env_number("BERTH_E2E_APISERVER_RESTARTS", 1);
    let grace = Duration::from_secs(env_number("BERTH_E2E_APISERVER_GRACE_S", 90));
    let limit = Duration::from_secs(env_number("BERTH_E2E_RECOVERY_LIMIT_S", 2 * RECOVERY.as_secs()));
    let cluster = cluster();
    let admin = cluster.client("admin").await;

    // A request provisioned before the restart, edited after it.
    let (tenant, class) = (format!("tn-{}", suffix()), format!("old-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "older", &tenant, &class, "")).await;
    wait_phase(&tenant, "older", Phase::Ready, Duration::from_secs(60)).await;
    let older: Api<EnvironmentRequest> = Api::namespaced(admin.clone(), &tenant);
    assert_eq!(readyz_turns(200, Duration::from_secs(30)).await.map(|_| ()), Some(()), "ready before the restart");

    let mut failures = Vec::new();
    let mut recoveries = Vec::new();
    for round in 1..=restarts {
        let exited = cluster.stop_apiserver(grace).await;
        // Down past the threshold: the replica says it cannot see the cluster.
        let unready = readyz_turns(503, Duration::from_secs(UNHEALTHY_AFTER_SECONDS + 20)).await;
        // And the metrics say which watch.
        let requests_watch = watch_healthy("environmentrequests", 0.0).await;
        cluster.start_apiserver().await;
        let answering = Instant::now();

        // Right away: a new class, tenant and requests, and an edit of an older request.
        let (tenant, class) = (format!("tn-{}", suffix()), format!("new-{}", suffix()));
        kubectl_apply(&class_yaml(&class, 1, "")).await;
        kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
        let revision = format!("v{}", round + 1);
        let edit = serde_json::json!({ "spec": { "app": { "revision": revision } } });
        older.patch("older", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap_or_else(|e| panic!("{e}"));
        // Longer than `RECOVERY`, so a slow recovery is measured rather than cut short.
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        wait_for(Duration::from_secs(120), &format!("namespace of tenant {tenant}"), || {
            let namespaces = namespaces.clone();
            let tenant = tenant.clone();
            async move { namespaces.get_opt(&tenant).await.ok().flatten().map(drop) }
        })
        .await;
        let names: Vec<String> = (0..REQUESTS).map(|i| format!("env-{i:02}")).collect();
        let burst: Vec<String> = names.iter().map(|n| request_yaml(&tenant, n, &tenant, &class, "")).collect();
        kubectl_apply(&burst.join("---\n")).await;
        let api: Api<EnvironmentRequest> = Api::namespaced(admin.clone(), &tenant);
        let outcome = provisioned(&api, &names, (&older, "older"), Duration::from_secs(120)).await;
        let ready_after = answering.elapsed();
        let ready_again = readyz_turns(200, Duration::from_secs(30)).await;
        let requests_watch_after = watch_healthy("environmentrequests", 1.0).await;
        eprintln!(
            "restart {round}: apiserver exited {exited:?} after SIGTERM; /readyz 503 {unready:?} after; \
             {REQUESTS} requests Ready and the edit observed {} after it answered again ({outcome:?}; \
             target {RECOVERY:?}); /readyz 200 again {ready_again:?} later",
            if outcome.is_ok() { format!("{ready_after:.1?}") } else { "not".to_owned() },
        );
        recoveries.push(ready_after);
        if unready.is_none() {
            failures.push(format!("restart {round}: /readyz never answered 503 while the apiserver was down"));
        }
        match outcome {
            Ok(_) if ready_after <= limit => {}
            Ok(_) => {
                failures.push(format!("restart {round}: Ready only {ready_after:.1?} after the apiserver answered"))
            }
            Err(missing) => failures.push(format!("restart {round}: after {ready_after:.1?} still {missing}")),
        }
        if ready_again.is_none() {
            failures.push(format!("restart {round}: /readyz not 200 again"));
        }
        if (requests_watch, requests_watch_after) != (Some(0.0), Some(1.0)) {
            failures.push(format!(
                "restart {round}: berth_watch_healthy of environmentrequests was {requests_watch:?} while down, \
                 {requests_watch_after:?} after (want 0, then 1)"
            ));
        }
    }
    eprintln!("recovery times: {recoveries:.1?}");
    let log = operator_log();
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    assert!(failures.is_empty(), "{}\noperator log (newest first):\n{}", failures.join("\n"), tail.join("\n"));
}
