//! A GitOps remote that accepts connections and never answers (tier 2): the writer's
//! fetch or push fails at its deadline instead of holding the writer forever, /readyz
//! and `berth_gitops_remote_operation_seconds` show the stall while it lasts, and
//! once the remote answers again Berth commits what waited, with nothing restarted.
//! Its own binary: its operator pushes over `git://` through a [`Switch`].

use std::{
    sync::{Mutex, OnceLock},
    time::Duration,
};

use berth::api::environment_request::Phase;
use berth_e2e::{
    blackhole::{GitDaemon, Switch},
    operator::{Operator, metric_at, readyz_at},
    suite::*,
};

/// How long the remote may stay silent before a fetch or push fails.
const IO_TIMEOUT_SECONDS: u64 = 4;
/// How long one may wait before /readyz says the writer is stalled.
const STALL_SECONDS: u64 = 1;

static REMOTE: OnceLock<(GitDaemon, Switch)> = OnceLock::new();

/// The switch in front of `git daemon`, and this binary's operator pushing through it.
async fn operator_behind_switch() -> (&'static Switch, String) {
    let cluster = cluster();
    cluster.install_crds().await;
    let dir = std::env::temp_dir().join(format!("berth-operator-blackhole-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let remote = dir.join("remote.git");
    git2::Repository::init_opts(&remote, git2::RepositoryInitOptions::new().bare(true).initial_head("main"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, switch) = REMOTE.get_or_init(|| {
        let daemon = GitDaemon::start(&dir, &dir.join("git-daemon.log")).unwrap_or_else(|e| panic!("{e:#}"));
        let switch = Switch::start(&daemon.address).unwrap_or_else(|e| panic!("{e:#}"));
        (daemon, switch)
    });
    let operator = OPERATOR.get_or_init(|| {
        let env = vec![
            ("BERTH_GITOPS_REMOTE".to_owned(), format!("git://{}/remote.git", switch.address)),
            ("BERTH_GITOPS_CONNECT_TIMEOUT_SECONDS".to_owned(), "5".to_owned()),
            ("BERTH_GITOPS_IO_TIMEOUT_SECONDS".to_owned(), IO_TIMEOUT_SECONDS.to_string()),
            ("BERTH_GITOPS_STALL_SECONDS".to_owned(), STALL_SECONDS.to_string()),
        ];
        let operator = Operator::start_with_env(&cluster.info, &dir, &remote, 200, env)
            .unwrap_or_else(|e| panic!("operator did not start: {e:#}"));
        Mutex::new(operator)
    });
    let telemetry = operator.lock().unwrap_or_else(|e| e.into_inner()).telemetry.clone();
    (switch, telemetry)
}

#[tokio::test]
async fn a_remote_that_never_answers_stalls_the_writer_only_until_its_deadline_and_berth_recovers() {
    let (switch, telemetry) = operator_behind_switch().await;
    let (tenant, class) = tenant_with_class("bh", "{}").await;
    // Through the switch, git:// works as any remote.
    kubectl_apply(&request_yaml(&tenant, "first", &tenant, &class, "")).await;
    wait_phase(&tenant, "first", Phase::Ready, Duration::from_secs(60)).await;

    // The remote goes silent: the next commit's fetch waits on a connection that is
    // never answered (nor closed).
    switch.black_hole(true);
    kubectl_apply(&request_yaml(&tenant, "second", &tenant, &class, "")).await;
    let body =
        wait_for(Duration::from_secs(60), "/readyz to report the writer stalled", || {
            let telemetry = telemetry.clone();
            async move {
                readyz_at(&telemetry).await.filter(|(status, body)| *status == 503 && body.contains("gitops-writer"))
            }
        })
        .await
        .1;
    assert!(switch.swallowed() >= 1, "the writer's connection went into the black hole");
    assert!(body.contains("gitops-writer: not ready"), "{body}");
    wait_for(Duration::from_secs(30), "the stall in berth_gitops_remote_operation_seconds", || {
        let telemetry = telemetry.clone();
        async move {
            let running = metric_at(&telemetry, "berth_gitops_remote_operation_seconds").await?;
            (running >= STALL_SECONDS as f64).then_some(())
        }
    })
    .await;
    // The deadline ends each attempt (the connections stay open and silent); the
    // batch fails once its attempts (6, each up to the deadline) are spent.
    let failed =
        wait_for(Duration::from_secs(15 * IO_TIMEOUT_SECONDS), "the fetch to fail at its deadline", || async {
            let log = operator_log();
            log.lines().find(|l| l.contains("gitops batch not published")).map(str::to_owned)
        })
        .await;
    let lower = failed.to_lowercase();
    assert!(lower.contains("timed out") || lower.contains("timeout"), "failed for its deadline: {failed}");
    let second = berth_e2e::rollout::request(&tenant, "second").await;
    assert_ne!(second.status.and_then(|s| s.phase), Some(Phase::Ready), "nothing committed while silent");

    // The remote answers again (the swallowed connections stay open and silent): the
    // next attempt after a deadline commits what waited, and readiness comes back.
    switch.black_hole(false);
    wait_phase(&tenant, "second", Phase::Ready, Duration::from_secs(6 * IO_TIMEOUT_SECONDS)).await;
    wait_for(Duration::from_secs(30), "/readyz to be ok again", || {
        let telemetry = telemetry.clone();
        async move { readyz_at(&telemetry).await.filter(|(status, _)| *status == 200).map(drop) }
    })
    .await;
    assert_eq!(metric_at(&telemetry, "berth_gitops_remote_operation_seconds").await, Some(0.0));
}
