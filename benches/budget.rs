//! Budget decision benchmark: the CPU one decision costs in a tenant of 10,000 requests
//! (the target: ≤ 1 ms), as admission makes it (the index's namespace group →
//! claims → decision) and as the request controller's guard makes it, and the same in
//! a small tenant among 10,000 requests of other tenants (which must not matter).
//!
//! `cargo bench --bench budget -- <report path>` (`just bench-budget`). `cargo test` runs
//! it in a smoke mode with small sizes and the same assertions.

use std::time::Duration;

use berth::{
    api::{
        EnvironmentClass, EnvironmentRequest, Tenant,
        environment_request::{EnvironmentRequestStatus, GitOpsStatus, Phase},
    },
    controller::budget::BudgetGuard,
    index::Index,
    policy::{budget::BudgetExceeded, request::Denial},
};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::ResourceExt;

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml::from_str(text).expect("a valid object")
}

fn class(name: &str) -> EnvironmentClass {
    yaml(&format!(
        "metadata: {{name: {name}}}
spec: {{estimatedMonthlyCostUSD: 10, quota: {{requests.cpu: '2', requests.memory: 4Gi, pods: '20'}}}}"
    ))
}

/// A tenant allowing `max` environments and a quota the requests fit in.
fn tenant(name: &str, max: u32) -> Tenant {
    yaml(&format!(
        "metadata: {{name: {name}}}
spec: {{owners: [{{kind: User, name: alice}}], budget: {{maxEnvironments: {max}, monthlyCostUSD: {cost}, quota: {{requests.cpu: '{cpu}'}}}}}}",
        cost = max * 10,
        cpu = max * 2,
    ))
}

/// Request `i` of `tenant`, created at second `i`; provisioned unless `pending`.
fn request(tenant: &str, i: usize, pending: bool) -> EnvironmentRequest {
    let mut request: EnvironmentRequest = yaml(&format!(
        "metadata: {{name: env-{i:05}, namespace: {tenant}, uid: uid-{tenant}-{i}, generation: 1}}
spec: {{tenant: {tenant}, class: preview, app: {{name: web, repoURL: 'https://example.com/web.git'}}}}"
    ));
    request.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1_700_000_000 + i as i64).expect("time")));
    if !pending {
        request.status = Some(EnvironmentRequestStatus {
            phase: Some(Phase::Ready),
            gitops: Some(GitOpsStatus { commit: Some(format!("{i:040x}")), ..GitOpsStatus::default() }),
            ..EnvironmentRequestStatus::default()
        });
    }
    request
}

/// Calls of `decide` per sample: each sample times a batch and divides, so reading
/// the clock is not what is measured.
const PER_SAMPLE: u32 = 2000;
const PER_SAMPLE_SMOKE: u32 = 5;

static SMOKE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn median_cpu(runs: usize, decide: impl FnMut()) -> Duration {
    let per_sample = if SMOKE.load(std::sync::atomic::Ordering::Relaxed) { PER_SAMPLE_SMOKE } else { PER_SAMPLE };
    berth::testing::cpu::median_cpu(runs, per_sample, decide)
}

/// Admission's decision, as the webhook makes it.
fn admission_decision(index: &Index, tenant: &Tenant, new: &EnvironmentRequest) -> Result<(), Denial> {
    berth::webhook::admission::check_budget(new, tenant, index)
}

struct Row {
    case: String,
    admission: Duration,
    guard: Duration,
}

/// One decision for a new pending request in a tenant of `size` provisioned requests,
/// among `others` requests of other tenants; `max` is the tenant's budget.
fn measure(case: &str, size: usize, others: usize, runs: usize) -> Row {
    let big = tenant("big", (size + 1) as u32);
    let mut tenants = vec![big.clone()];
    let mut requests: Vec<EnvironmentRequest> = (0..size).map(|i| request("big", i, false)).collect();
    for t in 0..others / 100 {
        let name = format!("other-{t}");
        tenants.push(tenant(&name, 100));
        requests.extend((0..100).map(|i| request(&name, i, false)));
    }
    let new = request("big", size, true);
    requests.push(new.clone());
    let index = Index::with_objects(tenants, [class("preview")], requests);
    assert_eq!(index.requests_in("big").len(), size + 1);

    // The new request is the last to fit; one more would not.
    assert_eq!(admission_decision(&index, &big, &new), Ok(()));
    let mut tight = big.clone();
    tight.spec.budget.max_environments = Some(size as u32);
    assert!(matches!(admission_decision(&index, &tight, &new), Err(Denial::OverBudget(BudgetExceeded::Count { .. }))));

    let admission = median_cpu(runs, || {
        assert_eq!(std::hint::black_box(admission_decision(&index, &big, &new)), Ok(()));
    });
    let classes = index.classes.state();
    let guard = median_cpu(runs, || {
        // A fresh guard each time, so every run decides (a remembered admission would
        // still be decided the same way, but not counted again).
        let guard = BudgetGuard::default();
        let decided = guard.decide(&new, &big, || index.budget_view("big", &new.name_any()), &classes, |_| false);
        assert_eq!(std::hint::black_box(decided), Ok(()));
    });
    Row { case: case.to_owned(), admission, guard }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    SMOKE.store(smoke, std::sync::atomic::Ordering::Relaxed);
    let report_path =
        args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_else(|| "target/bench/budget.md".into());
    let (big, others, runs) = if smoke { (200, 200, 3) } else { (10_000, 10_000, 21) };
    let rows = [
        measure(&format!("tenant of {big} requests, alone"), big, 0, runs),
        measure(&format!("tenant of 10 requests among {others} of other tenants"), 10, others, runs),
        measure(&format!("tenant of {big} requests among {others} of other tenants"), big, others, runs),
    ];
    let us = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e6);
    let mut report = String::from(
        "# Budget decision\n\nCPU time of one decision (median of 21 samples of 2,000 decisions each, this thread's CPU clock, \
         CLOCK_THREAD_CPUTIME_ID) for a new pending request that is the last to fit its tenant's \
         budget (count, cost and quota all set), among 10,000 provisioned requests of its tenant (counted per class by the index, so they cost a few additions) and the few pending ones. `admission` = \
         what the webhook does (`webhook::admission::check_budget`: the index's counts and unprovisioned requests of the namespace → class terms → claims → decision); `guard` = \
         the request controller's BudgetGuard::decide. Target: ≤ 1 ms at 10,000 requests in the tenant.\n\n\
         | case | admission (µs) | guard (µs) | ≤ 1 ms |\n|---|---|---|---|\n",
    );
    for row in &rows {
        let met = if row.admission.max(row.guard) <= Duration::from_millis(1) { "yes" } else { "no" };
        report.push_str(&format!("| {} | {} | {} | {met} |\n", row.case, us(row.admission), us(row.guard)));
    }
    if smoke {
        eprintln!("smoke run: sizes too small to mean anything, no report written");
        return;
    }
    if let Some(parent) = std::path::Path::new(&report_path).parent() {
        std::fs::create_dir_all(parent).expect("report folder");
    }
    std::fs::write(&report_path, &report).expect("report written");
    print!("{report}");
}
