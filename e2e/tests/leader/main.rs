//! Two replicas of the operator with leader election: one leads (runs the
//! controllers), the other stands by; killing the leader hands the work to the
//! standby within the lease. Its own binary: it runs its own pair of operators.

use std::time::{Duration, Instant};

use berth::api::environment_request::Phase;
use berth_e2e::operator::Operator;
use berth_e2e::suite::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

/// Long enough that a renewal slowed by a loaded machine (its calls give up after a
/// third of it) does not hand leadership over unasked.
const LEASE_SECONDS: u64 = 15;

/// The `berth_leader` gauge from the operator's /metrics, `None` while it does not answer.
async fn leader_gauge(operator: &Operator) -> Option<i64> {
    operator.metric("berth_leader").await.map(|value| value as i64)
}

/// Waits until exactly one of `operators` reports itself leader; returns its index.
async fn one_leader(operators: &[&Operator], within: Duration) -> usize {
    let started = Instant::now();
    loop {
        let mut gauges = Vec::new();
        for operator in operators {
            gauges.push(leader_gauge(operator).await);
        }
        let leaders: Vec<usize> = gauges.iter().enumerate().filter(|(_, g)| **g == Some(1)).map(|(i, _)| i).collect();
        if leaders.len() == 1 && gauges.iter().all(Option::is_some) {
            return leaders[0];
        }
        assert!(leaders.len() <= 1, "two leaders at once: {gauges:?}");
        assert!(started.elapsed() < within, "no single leader after {within:?}: {gauges:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_standby_takes_over_when_the_leader_dies() {
    let cluster = cluster();
    cluster.install_crds().await;
    let lease_namespace = cluster.namespace("berth-system").await;
    let dir = std::env::temp_dir().join(format!("berth-leader-e2e-{}", std::process::id()));
    let remote = dir.join("remote.git");
    let election = vec![
        ("BERTH_LEADER_ELECTION_NAMESPACE".to_owned(), lease_namespace.clone()),
        ("BERTH_LEADER_LEASE_SECONDS".to_owned(), LEASE_SECONDS.to_string()),
    ];
    let start = |name: &str| {
        Operator::start_with_env(&cluster.info, &dir.join(name), &remote, 200, election.clone())
            .unwrap_or_else(|e| panic!("operator {name} did not start: {e:#}"))
    };
    let mut replicas = [start("a"), start("b")];

    let leader = one_leader(&[&replicas[0], &replicas[1]], Duration::from_secs(30)).await;
    let standby = 1 - leader;
    let leases: Api<Lease> = Api::namespaced(cluster.client("admin").await, &lease_namespace);
    let lease = leases.get("berth-leader").await.unwrap_or_else(|e| panic!("the Lease: {e}"));
    let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    assert!(replicas[leader].log_text().contains(&holder), "the Lease names the leader ({holder})");

    // The leader does the work; the standby does not reconcile.
    let (tenant, class) = (format!("tn-{}", suffix()), format!("ha-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "first", &tenant, &class, "")).await;
    wait_phase(&tenant, "first", Phase::Ready, Duration::from_secs(60)).await;
    let standby_log = replicas[standby].log_text();
    assert!(standby_log.contains("standing by until elected leader"), "{standby_log}");
    // Only a leader reconciles (spans named `reconcile{…}`) and commits.
    assert!(
        !standby_log.contains("reconcile{") && !standby_log.contains("gitops batch published"),
        "the standby reconciled or committed:\n{standby_log}"
    );

    // The leader dies without releasing the lease: the standby takes over once it
    // expires, and provisions what comes next.
    replicas[leader].kill();
    let killed = Instant::now();
    kubectl_apply(&request_yaml(&tenant, "second", &tenant, &class, "")).await;
    wait_phase(&tenant, "second", Phase::Ready, Duration::from_secs(60)).await;
    let took = killed.elapsed();
    assert_eq!(leader_gauge(&replicas[standby]).await, Some(1));
    assert!(replicas[standby].log_text().contains("elected leader; starting the controllers"));
    eprintln!("the standby provisioned a new request {took:?} after the leader died (lease {LEASE_SECONDS} s)");

    // The old leader comes back as a standby.
    replicas[leader].restart().unwrap_or_else(|e| panic!("restart: {e:#}"));
    let leader_now = one_leader(&[&replicas[0], &replicas[1]], Duration::from_secs(30)).await;
    assert_eq!(leader_now, standby, "leadership stays where it is");

    // SIGTERM, as Kubernetes stops a pod: the leader stops, flushes and gives the lease
    // up rather than leaving the standby to wait for it to run out.
    assert!(replicas[leader_now].terminate(Duration::from_secs(30)), "the leader exits on SIGTERM");
    let log = replicas[leader_now].log_text();
    assert!(log.contains("released the leader lease"), "{log}");
    let lease = leases.get("berth-leader").await.unwrap_or_else(|e| panic!("the Lease: {e}"));
    let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    assert!(!log.contains(&format!("identity={holder}")) || holder.is_empty(), "the Lease still names it: {holder}");
    let last = one_leader(&[&replicas[1 - leader_now]], Duration::from_secs(30)).await;
    assert_eq!(last, 0, "the remaining replica leads");
    let _ = std::fs::remove_dir_all(&dir);
}
