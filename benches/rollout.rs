//! Rollout benchmark, the controller's own cost (no apiserver, no git): planning
//! 10,000 environments (target ≤ 50 ms), the size of the Rollout's status at 1,000
//! and 10,000 environments (targets ≤ 64 KiB and ≤ 512 KiB, whatever the batch in
//! flight, with full failure and history lists), and the CPU of one state-machine step
//! while a batch is verified. A whole rollout of 1,000 environments in 10 batches is
//! driven through the state machine, every environment reported healthy right after
//! its batch's commit (the fake Argo CD), and must make exactly 10 commits.
//! The writer's side (one exclusive commit of 100 folders into 1,000) is in the gitops
//! bench; the operator-level figures (commit→next push, writes per environment, RSS)
//! are not measured here.
//!
//! `cargo bench --bench rollout -- <report path>` (`just bench-rollout`). `cargo test`
//! runs it in a smoke mode with small sizes and the same assertions.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use berth::{
    api::{
        EnvironmentRequest, Rollout,
        environment_request::{EnvironmentRequestStatus, GitOpsStatus, Phase},
        rollout::{GateFailure, HistoryAction, RolloutPhase, RolloutStatus},
    },
    rollout::{Observations, next, plan::plan, record_commit},
    testing::cpu::median_cpu,
};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

/// Calls per CPU sample: a sample times a batch of calls and divides, so reading the
/// clock is not what is measured.
const PER_SAMPLE: u32 = 20;

fn rollout(batch_size: &str) -> Rollout {
    let spec = serde_json::from_value(serde_json::json!({
        "app": "checkout",
        "revision": "v2",
        "selector": { "matchLabels": { "app": "checkout" } },
        "stages": [{ "name": "production", "batchSize": batch_size, "healthGate": { "requireNoDrift": true } }],
    }))
    .expect("a spec");
    let mut rollout = Rollout::new("checkout-v2", spec);
    rollout.metadata.namespace = Some("payments".into());
    rollout.metadata.generation = Some(1);
    rollout
}

/// Environment `i`: provisioned and Ready on v1.
fn environment(i: usize) -> EnvironmentRequest {
    let mut r = berth::testing::request("production");
    r.metadata.name = Some(format!("checkout-prod-{i:05}"));
    r.metadata.namespace = Some("payments".into());
    r.metadata.generation = Some(1);
    r.metadata.labels = Some([("app".to_owned(), "checkout".to_owned())].into());
    r.spec.app.name = "checkout".into();
    r.spec.app.revision = "v1".into();
    r.status = Some(EnvironmentRequestStatus {
        phase: Some(Phase::Ready),
        gitops: Some(GitOpsStatus { commit: Some(format!("{i:040x}")), ..GitOpsStatus::default() }),
        ..EnvironmentRequestStatus::default()
    });
    r
}

/// `r` once its batch's commit `commit` is confirmed and Argo CD reports it healthy.
fn promoted(r: &EnvironmentRequest, commit: &str) -> EnvironmentRequest {
    berth::testing::rollout::promoted(r, commit, "Healthy")
}

fn observations(environments: &[EnvironmentRequest]) -> Observations {
    Observations {
        requests: environments
            .iter()
            .map(|r| (r.metadata.name.clone().unwrap_or_default(), Arc::new(r.clone())))
            .collect::<BTreeMap<_, _>>(),
        argocd_installed: true,
        ..Observations::default()
    }
}

struct Run {
    environments: usize,
    commits: usize,
    steps: usize,
    /// Largest status seen, with the failure and history lists filled to their caps.
    worst_status_bytes: usize,
    step_cpu: Duration,
}

/// Drives a whole rollout of `count` environments cut into batches of `batch_size`.
fn drive(count: usize, batch_size: &str, runs: usize) -> Run {
    let rollout = rollout(batch_size);
    let mut environments: Vec<EnvironmentRequest> = (0..count).map(environment).collect();
    let mut obs = observations(&environments);
    let mut status = RolloutStatus::default();
    let (mut commits, mut steps, mut worst) = (0, 0, 0);
    let mut at = Timestamp::from_second(1_800_000_000).expect("a time");
    let mut step_cpu = Duration::ZERO;
    loop {
        if status.stages.iter().any(|s| s.current.is_some()) {
            // A batch just confirmed and healthy: the step that judges it and starts the next.
            step_cpu = step_cpu.max(median_cpu(runs, PER_SAMPLE, || {
                std::hint::black_box(next(&rollout, &status, &obs, at));
            }));
        }
        let decision = next(&rollout, &status, &obs, at);
        steps += 1;
        status = decision.status;
        worst = worst.max(bytes_when_full(&status));
        let Some(work) = decision.work else {
            if status.phase == Some(RolloutPhase::Succeeded) {
                break;
            }
            assert!(steps < 10 * count, "the rollout does not finish: {:?}", status.message);
            at = at.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(1)).expect("time");
            continue;
        };
        assert_eq!(work.action, HistoryAction::Promote);
        commits += 1;
        let commit = format!("{commits:040x}");
        record_commit(&mut status, &work, &commit, at);
        let names: std::collections::BTreeSet<&String> = work.environments.iter().collect();
        for r in environments.iter_mut().filter(|r| r.metadata.name.as_ref().is_some_and(|n| names.contains(n))) {
            *r = promoted(r, &commit);
            obs.requests.insert(r.metadata.name.clone().unwrap_or_default(), Arc::new(r.clone()));
        }
    }
    Run { environments: count, commits, steps, worst_status_bytes: worst, step_cpu }
}

/// The status's size as stored, with failures and history at their caps (the worst
/// a long, troubled rollout reaches).
fn bytes_when_full(status: &RolloutStatus) -> usize {
    let mut full = status.clone();
    let failure = GateFailure {
        environment: "checkout-prod-00000".into(),
        stage: "production".into(),
        batch: 1,
        reason: "Degraded".into(),
        message: "x".repeat(berth::api::rollout::MAX_FAILURE_MESSAGE),
        at: Time(Timestamp::UNIX_EPOCH),
    };
    full.failures = vec![failure; berth::api::rollout::MAX_FAILURES];
    if let Some(entry) = status.history.first() {
        full.history = vec![entry.clone(); berth::api::rollout::MAX_HISTORY];
    }
    serde_json::to_vec(&full).expect("json").len()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let report_path =
        args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_else(|| "target/bench/rollout.md".into());
    let (small, large, runs) = if smoke { (100, 1_000, 1) } else { (1_000, 10_000, 11) };

    let environments: Vec<EnvironmentRequest> = (0..large).map(environment).collect();
    let spec = rollout("10%").spec;
    let planning = median_cpu(runs, PER_SAMPLE, || {
        let plan = plan(&spec, environments.iter()).expect("a plan");
        assert_eq!(std::hint::black_box(plan).environments(), large);
    });

    let fleet = drive(small, "10%", runs);
    assert_eq!(fleet.commits, 10, "exactly one commit per batch");
    let big = drive(large, "10%", runs);
    assert_eq!(big.commits, 10, "exactly one commit per batch");

    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
    let kib = |b: usize| format!("{:.1}", b as f64 / 1024.0);
    let yes = |ok: bool| if ok { "yes" } else { "no" };
    let mut report = String::from(
        "# Rollout controller (state machine and planning)\n\nCPU times are this thread's CPU \
         (/proc/thread-self), medians. Status sizes are the JSON of `status` with the failure (50, \
         messages at their 256-character cap) and history (64) lists filled to their caps, the largest over the whole rollout. Every \
         environment reports healthy right after its batch's commit.\n\n\
         | measure | value | target | met |\n|---|---|---|---|\n",
    );
    report.push_str(&format!(
        "| planning {large} environments (ms CPU) | {} | ≤ 50 | {} |\n",
        ms(planning),
        yes(planning <= Duration::from_millis(50))
    ));
    for (run, limit) in [(&fleet, 64 * 1024), (&big, 512 * 1024)] {
        report.push_str(&format!(
            "| status at {} environments (KiB) | {} | ≤ {} | {} |\n",
            run.environments,
            kib(run.worst_status_bytes),
            limit / 1024,
            yes(run.worst_status_bytes <= limit)
        ));
        report.push_str(&format!(
            "| one step judging a batch of {} and starting the next (ms CPU, worst) | {} | | |\n",
            run.environments / 10,
            ms(run.step_cpu)
        ));
        report.push_str(&format!(
            "| commits for {} environments in 10 batches | {} ({} steps) | 10 | {} |\n",
            run.environments,
            run.commits,
            run.steps,
            yes(run.commits == 10)
        ));
    }
    if smoke {
        eprintln!("smoke run: sizes too small to mean anything, no report written");
        return;
    }
    // A zero is the clock's resolution, not a measurement.
    assert!(planning > Duration::ZERO && big.step_cpu > Duration::ZERO, "CPU clock did not advance:\n{report}");
    assert!(big.worst_status_bytes <= 512 * 1024, "{report}");
    if let Some(parent) = std::path::Path::new(&report_path).parent() {
        std::fs::create_dir_all(parent).expect("report folder");
    }
    std::fs::write(&report_path, &report).expect("report written");
    print!("{report}");
}
