//! A rollout with Berth in `pull-request` mode: each batch lands on a promotion
//! branch, and the rollout judges it only once a person merged it into the watched
//! branch (the test plays that person, and Argo CD, which watches only `main`).
//! (Its own binary: its operator runs in pull-request mode.)

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use berth::api::{Rollout, rollout::RolloutPhase};
use berth_e2e::{
    operator::Operator,
    remote::{branch_heads, merge_branches, merged_into_main},
    rollout::*,
    suite::*,
};
use kube::Api;

const PREFIX: &str = "berth/";

/// This binary's operator, in pull-request mode.
async fn pull_request_operator() {
    let cluster = cluster();
    // Argo CD's CRDs first, as the other rollout suites start it.
    cluster.install_argocd_crds().await;
    cluster.install_crds().await;
    OPERATOR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berth-operator-pr-e2e-{}", std::process::id()));
        let env = vec![
            ("BERTH_GITOPS_MODE".to_owned(), "pull-request".to_owned()),
            ("BERTH_GITOPS_BRANCH_PREFIX".to_owned(), PREFIX.to_owned()),
        ];
        let operator = Operator::start_with_env(&cluster.info, &dir, &dir.join("remote.git"), 200, env)
            .unwrap_or_else(|e| panic!("operator did not start: {e:#}"));
        std::sync::Mutex::new(operator)
    });
}

/// Merges Berth's promotion branches every 300 ms while `open` is true.
fn reviewer(open: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if open.load(Ordering::SeqCst) {
                let _ = merge_branches(&remote(), PREFIX);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

#[tokio::test]
async fn each_batch_waits_for_its_pull_request_to_merge() {
    pull_request_operator().await;
    let merging = Arc::new(AtomicBool::new(true));
    let reviewer = reviewer(merging.clone());
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;

    // The reviewer steps away: the canary batch's pull request stays open.
    merging.store(false, Ordering::SeqCst);
    let before = head();
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "")).await;
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, &tenant);
    let waiting = wait_for(Duration::from_secs(60), "the rollout to wait for the merge", || {
        let api = api.clone();
        async move {
            let status = api.get("web-v2").await.ok()?.status?;
            (status.reason.as_deref() == Some("AwaitingMerge")).then_some(status)
        }
    })
    .await;
    let commit = waiting.stages[0].current.as_ref().and_then(|b| b.commit.clone()).expect("the batch's commit");
    assert!(waiting.message.as_deref().is_some_and(|m| m.contains(&commit[..12])), "{:?}", waiting.message);
    let on_branch = branch_heads(&remote(), PREFIX).into_iter().find(|(c, _)| c == &commit);
    let message = on_branch.map(|(_, m)| m).expect("the batch's commit heads a promotion branch");
    assert!(message.contains("Berth-Rollout-Step: canary/1"), "{message}");
    // Nothing reaches main, and nothing else starts, while it is open: the batch's is
    // the only pull request (once confirmed, the request controller opens none of its own).
    let branches_before = branch_heads(&remote(), PREFIX).len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(batch_steps(&tenant, "web-v2", &before).is_empty());
    let open: Vec<_> =
        branch_heads(&remote(), PREFIX).into_iter().filter(|(c, _)| !merged_into_main(&remote(), c)).collect();
    assert_eq!(open.len(), 1, "open pull requests: {open:#?}");
    assert_eq!(branch_heads(&remote(), PREFIX).len(), branches_before);
    let steps_on_branches = branch_heads(&remote(), PREFIX)
        .into_iter()
        .filter(|(_, m)| m.contains(&format!("Berth-Rollout: {tenant}/web-v2\n")))
        .count();
    assert_eq!(steps_on_branches, 1, "a second batch was committed before the first one merged");
    let still = api.get("web-v2").await.unwrap_or_else(|e| panic!("{e}")).status.unwrap_or_default();
    assert_eq!(still.reason.as_deref(), Some("AwaitingMerge"));
    assert!(still.failures.is_empty(), "{:?}", still.failures);

    // Merged: the batch is judged, and the rest goes through as each one merges.
    merging.store(true, Ordering::SeqCst);
    let done = wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();
    reviewer.abort();
    assert_eq!(batch_steps(&tenant, "web-v2", &before), ["canary/1", "production/1", "production/2"]);
    let status = done.status.unwrap_or_default();
    assert_eq!(status.history.first().map(|h| h.commit.as_str()), Some(commit.as_str()));
    assert_eq!(status.progress.as_deref(), Some("3/3"));
}
