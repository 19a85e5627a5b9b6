//! The operator killed with SIGKILL in the middle of a burst of requests, then
//! restarted: every request ends Ready, each folder is in git exactly once, and
//! the remote is consistent; and a deletion while the remote is down waits for it.
//! Its own binary, so neither disturbs the other suites.

#[path = "../operator/common.rs"]
mod common;

use std::time::Duration;

use berth::api::{EnvironmentRequest, environment_request::Phase};
use common::*;
use kube::Api;

/// These tests take the operator or its remote away, so they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_sigkill_mid_burst_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("burst-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;

    let names: Vec<String> = (0..20).map(|i| format!("env-{i:02}")).collect();
    let burst: Vec<String> = names.iter().map(|n| request_yaml(&tenant, n, &tenant, &class, "")).collect();
    kubectl_apply(&burst.join("---\n")).await;
    // Mid-burst: some requests are committed, some are in the writer's batch, some untouched.
    tokio::time::sleep(Duration::from_millis(400)).await;
    {
        let mut operator = operator().await.lock().unwrap_or_else(|e| e.into_inner());
        operator.restart().unwrap_or_else(|e| panic!("restart: {e:#}"));
    }

    for name in &names {
        wait_phase(&tenant, name, Phase::Ready, Duration::from_secs(90)).await;
    }
    let repo = git2::Repository::open_bare(remote()).unwrap_or_else(|e| panic!("{e}"));
    let head = repo.find_reference("refs/heads/main").and_then(|r| r.peel_to_tree()).unwrap_or_else(|e| panic!("{e}"));
    let tenant_tree = head
        .get_path(std::path::Path::new(&format!("clusters/in-cluster/tenants/{tenant}")))
        .and_then(|e| e.to_object(&repo))
        .and_then(|o| o.peel_to_tree())
        .unwrap_or_else(|e| panic!("tenant folder missing: {e}"));
    let mut folders: Vec<String> = tenant_tree.iter().filter_map(|e| e.name().ok().map(str::to_owned)).collect();
    folders.sort();
    assert_eq!(folders, names, "exactly one folder per request");

    // Every request's status names a commit that is on main.
    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    for request in requests.list(&Default::default()).await.unwrap_or_else(|e| panic!("{e}")).items {
        let commit = request.status.and_then(|s| s.gitops).and_then(|g| g.commit).unwrap_or_default();
        let oid = git2::Oid::from_str(&commit).unwrap_or_else(|e| panic!("{commit:?}: {e}"));
        assert!(repo.find_commit(oid).is_ok(), "status commit {commit} is not in the remote");
    }

    let fsck = std::process::Command::new("git")
        .args(["--git-dir"])
        .arg(remote())
        .args(["fsck", "--full", "--strict"])
        .output()
        .unwrap_or_else(|e| panic!("git fsck: {e}"));
    assert!(fsck.status.success(), "git fsck: {}", String::from_utf8_lossy(&fsck.stderr));
    let log = operator_log();
    assert!(log.matches("gitops writer ready").count() >= 2, "the operator really restarted:\n{log}");
}

#[tokio::test]
async fn deleting_while_the_remote_is_down_waits_and_cleans_up_once_it_is_back() {
    let _serial = SERIAL.lock().await;
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("down-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "gone", &tenant, &class, "")).await;
    let ready = wait_phase(&tenant, "gone", Phase::Ready, Duration::from_secs(60)).await;
    let path = ready.status.and_then(|s| s.gitops).and_then(|g| g.path).unwrap_or_default();

    // Take the remote away, then delete the request.
    let parked = remote().with_extension("parked");
    std::fs::rename(remote(), &parked).unwrap_or_else(|e| panic!("{e}"));
    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    requests.delete("gone", &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let waiting = requests.get_opt("gone").await.unwrap_or_else(|e| panic!("{e}"));
    let finalizers = waiting.map(|r| r.metadata.finalizers.unwrap_or_default()).unwrap_or_default();
    assert_eq!(finalizers, ["berth.dev/gitops-cleanup"], "the request waits for its cleanup while git is down");

    // Remote back: the folder leaves git and the request goes.
    std::fs::rename(&parked, remote()).unwrap_or_else(|e| panic!("{e}"));
    wait_for(Duration::from_secs(60), "the request to be gone", || {
        let requests = requests.clone();
        async move { requests.get_opt("gone").await.ok().and_then(|r| r.is_none().then_some(())) }
    })
    .await;
    assert!(files_at_head(&remote(), &path).is_none(), "{path} still in git");
}
