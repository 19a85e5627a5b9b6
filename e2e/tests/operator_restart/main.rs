//! The operator killed with SIGKILL in the middle of a burst of requests, then
//! restarted: every request ends Ready, each folder is in git exactly once, and
//! the remote is consistent; and a deletion while the remote is down waits for it.
//! Its own binary, so neither disturbs the other suites.

use std::time::Duration;

use berth::{
    api::{EnvironmentRequest, environment_request::Phase},
    testing::BusyPusher,
};
use berth_e2e::{
    operator::metric_at,
    policy::{Refusal, denying_policy},
    remote::{commit_file, folders_at_head},
    suite::*,
};
use kube::Api;

/// These tests take the operator or its remote away, so they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_sigkill_mid_burst_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    operator().await;
    let (tenant, class) = tenant_with_class("burst", "{}").await;

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
    // The burst may finish before the restarted process has logged that its writer is up.
    wait_for(Duration::from_secs(30), "the restarted operator's writer", || async {
        (operator_log().matches("gitops writer ready").count() >= 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_while_the_remote_is_down_waits_and_cleans_up_once_it_is_back() {
    let _serial = SERIAL.lock().await;
    operator().await;
    let (tenant, class) = tenant_with_class("down", "{}").await;
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

/// A ValidatingAdmissionPolicy (and its binding) that refuses every status write of
/// EnvironmentRequests in `namespace`: Berth can commit but cannot record it.
fn refuse_status_writes(namespace: &str) -> String {
    denying_policy(&Refusal {
        name: &format!("refuse-status-{namespace}"),
        group: "berth.dev",
        resource: "environmentrequests/status",
        operation: "UPDATE",
        expression: "false",
        message: "status writes are refused by the e2e test",
        namespace: Some(namespace),
    })
}

/// Waits until status writes in `namespace` are `refused` (or allowed again) by
/// [`refuse_status_writes`]: the apiserver loads and drops policies asynchronously.
async fn wait_status_writes(namespace: &str, probe: &str, refused: bool) {
    wait_for(Duration::from_secs(30), "the status policy to take effect", || async move {
        let patch = r#"{"status":{"phase":"Failed"}}"#;
        let args = [
            "patch",
            "environmentrequest",
            probe,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        ];
        let out = cluster().kubectl("admin", &args, None).await;
        let is_refused = !out.success && out.stderr.contains("refused by the e2e test");
        (is_refused == refused && (refused || out.success)).then_some(())
    })
    .await;
}

/// Starts the (killed) operator again; returns its telemetry address.
async fn restart_operator() -> String {
    let mut operator = operator().await.lock().unwrap_or_else(|e| e.into_inner());
    operator.restart().unwrap_or_else(|e| panic!("restart: {e:#}"));
    operator.telemetry.clone()
}

fn tenant_folder(tenant: &str) -> String {
    format!("clusters/in-cluster/tenants/{tenant}")
}

#[tokio::test]
async fn a_crash_between_commit_and_status_write_overruns_no_budget_and_orphans_no_folder() {
    let _serial = SERIAL.lock().await;
    operator().await;
    let (tenant, class, late_class) =
        (format!("tn-{}", suffix()), format!("crash-{}", suffix()), format!("late-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class, &late_class], "{maxEnvironments: 5}")).await;
    wait_tenant_namespace(&tenant).await;

    // Berth may commit in this namespace but not record it in status.
    kubectl_apply(&request_yaml(&tenant, "probe", &tenant, "no-such-class", "")).await;
    kubectl_apply(&refuse_status_writes(&tenant)).await;
    wait_status_writes(&tenant, "probe", true).await;
    // c001..c005 name a class that does not exist yet, so c006..c010 take the budget;
    // once the class exists, the oldest-first order would put c001..c005 first.
    let names: Vec<String> = (1..=40).map(|i| format!("c{i:03}")).collect();
    let burst: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| request_yaml(&tenant, n, &tenant, if i < 5 { &late_class } else { &class }, ""))
        .collect();
    kubectl_apply(&burst.join("---\n")).await;
    let committed = wait_for(Duration::from_secs(60), "five folders in git", || async {
        let folders = folders_at_head(&remote(), &tenant_folder(&tenant));
        (folders.len() == 5).then_some(folders)
    })
    .await;
    assert_eq!(committed, ["c006", "c007", "c008", "c009", "c010"]);
    kubectl_apply(&class_yaml(&late_class, 1, "")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(folders_at_head(&remote(), &tenant_folder(&tenant)), committed, "the budget held in one process");
    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    let recorded = requests.list(&Default::default()).await.unwrap_or_else(|e| panic!("{e}")).items;
    assert!(
        recorded.iter().all(|r| r.status.as_ref().and_then(|s| s.gitops.as_ref()).is_none()),
        "no status recorded a commit (the policy refused every status write)"
    );

    // Crash, lift the policy, start again: the new process must count what git holds.
    operator().await.lock().unwrap_or_else(|e| e.into_inner()).kill();
    let out =
        cluster().kubectl("admin", &["delete", "-f", "-", "--wait=true"], Some(&refuse_status_writes(&tenant))).await;
    assert!(out.success, "{}", out.stderr);
    wait_status_writes(&tenant, "probe", false).await;
    restart_operator().await;

    let mut ready = Vec::new();
    for name in &names {
        let request = wait_for(Duration::from_secs(90), &format!("{name} to settle"), || {
            let requests = requests.clone();
            async move {
                let request = requests.get_opt(name).await.ok().flatten()?;
                let phase = request.status.as_ref()?.phase?;
                matches!(phase, Phase::Ready | Phase::Failed).then_some(phase)
            }
        })
        .await;
        if request == Phase::Ready {
            ready.push(name.clone());
        }
    }
    assert_eq!(ready, committed, "the environments already in git are the ones admitted");
    assert_eq!(folders_at_head(&remote(), &tenant_folder(&tenant)), committed, "no folder beyond the budget");

    // Every request deleted: every folder leaves git, recorded or not.
    let out = cluster().kubectl("admin", &["delete", "environmentrequests", "--all", "-n", &tenant], None).await;
    assert!(out.success, "{}", out.stderr);
    wait_for(Duration::from_secs(60), "the tenant's folders to leave git", || async {
        folders_at_head(&remote(), &tenant_folder(&tenant)).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn folders_of_requests_that_vanished_while_berth_was_down_are_swept_and_others_left_alone() {
    let _serial = SERIAL.lock().await;
    operator().await;
    let (tenant, class) = tenant_with_class("sweep", "{}").await;
    for name in ["kept", "gone-1", "gone-2"] {
        kubectl_apply(&request_yaml(&tenant, name, &tenant, &class, "")).await;
    }
    for name in ["kept", "gone-1", "gone-2"] {
        wait_phase(&tenant, name, Phase::Ready, Duration::from_secs(60)).await;
    }
    // Someone else's folder in the same layout, naming no request: not Berth's.
    let hand_made = format!("{}/hand-made/readme.yaml", tenant_folder(&tenant));
    commit_file(&remote(), &hand_made, "kind: ConfigMap\n").unwrap_or_else(|e| panic!("{e}"));

    operator().await.lock().unwrap_or_else(|e| e.into_inner()).kill();
    // Gone while Berth was down, finalizer and all (as `kubectl patch` by an admin would).
    for name in ["gone-1", "gone-2"] {
        let unfinalize = r#"{"metadata":{"finalizers":null}}"#;
        let args = ["patch", "environmentrequest", name, "-n", &tenant, "--type=merge", "-p", unfinalize];
        let out = cluster().kubectl("admin", &args, None).await;
        assert!(out.success, "{}", out.stderr);
        let out = cluster().kubectl("admin", &["delete", "environmentrequest", name, "-n", &tenant], None).await;
        assert!(out.success, "{}", out.stderr);
    }
    let telemetry = restart_operator().await;
    let swept = wait_for(Duration::from_secs(60), "the orphans to leave git", || async {
        let folders = folders_at_head(&remote(), &tenant_folder(&tenant));
        (!folders.iter().any(|f| f.starts_with("gone-"))).then_some(folders)
    })
    .await;
    assert_eq!(swept, ["hand-made", "kept"], "only the orphans left");
    // Counted (and logged) once the writer answers the sweep, which can be a moment
    // after the push the test saw land.
    let removed = wait_for(Duration::from_secs(10), "berth_gitops_orphans_removed_total to count both", || async {
        let removed = metric_at(&telemetry, "berth_gitops_orphans_removed_total").await.unwrap_or_default();
        (removed >= 2.0).then_some(removed)
    })
    .await;
    assert!(removed >= 2.0, "berth_gitops_orphans_removed_total is {removed}");
    assert!(operator_log().contains("removed folders from git whose requests no longer exist"));
}

#[tokio::test]
async fn unrecorded_folders_leave_git_when_their_request_is_refused_or_deleted_after_a_restart() {
    let _serial = SERIAL.lock().await;
    operator().await;
    let (tenant, class) = tenant_with_class("unrec", "{}").await;
    kubectl_apply(&request_yaml(&tenant, "probe", &tenant, "no-such-class", "")).await;
    kubectl_apply(&refuse_status_writes(&tenant)).await;
    wait_status_writes(&tenant, "probe", true).await;
    for name in ["refused", "deleted"] {
        kubectl_apply(&request_yaml(&tenant, name, &tenant, &class, "")).await;
    }
    wait_for(Duration::from_secs(60), "both folders in git", || async {
        (folders_at_head(&remote(), &tenant_folder(&tenant)) == ["deleted", "refused"]).then_some(())
    })
    .await;
    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    wait_for(Duration::from_secs(30), "the finalizer on the request to delete", || {
        let requests = requests.clone();
        async move {
            let request = requests.get_opt("deleted").await.ok().flatten()?;
            request.metadata.finalizers?.contains(&"berth.dev/gitops-cleanup".to_owned()).then_some(())
        }
    })
    .await;

    // While Berth is down: one request is deleted, the other's class is no longer allowed.
    operator().await.lock().unwrap_or_else(|e| e.into_inner()).kill();
    let out = cluster()
        .kubectl("admin", &["delete", "environmentrequest", "deleted", "-n", &tenant, "--wait=false"], None)
        .await;
    assert!(out.success, "{}", out.stderr);
    kubectl_apply(&tenant_yaml(&tenant, &["some-other-class"], "{}")).await;
    let out =
        cluster().kubectl("admin", &["delete", "-f", "-", "--wait=true"], Some(&refuse_status_writes(&tenant))).await;
    assert!(out.success, "{}", out.stderr);
    wait_status_writes(&tenant, "probe", false).await;
    restart_operator().await;

    wait_phase(&tenant, "refused", Phase::Failed, Duration::from_secs(60)).await;
    wait_for(Duration::from_secs(60), "both folders to leave git", || async {
        folders_at_head(&remote(), &tenant_folder(&tenant)).is_empty().then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "the deleted request to go", || {
        let requests = requests.clone();
        async move { requests.get_opt("deleted").await.ok().and_then(|r| r.is_none().then_some(())) }
    })
    .await;
    let events = cluster().kubectl("admin", &["get", "events", "-n", &tenant, "-o", "wide"], None).await;
    assert!(
        events.stdout.contains("Removed") && events.stdout.contains("which is refused"),
        "a Removed event for the refused request:\n{}",
        events.stdout
    );
}

#[tokio::test]
async fn requests_get_ready_while_another_client_keeps_pushing_to_the_branch() {
    let _serial = SERIAL.lock().await;
    operator().await;
    let (tenant, class) = tenant_with_class("busy", "{}").await;
    // The other client pushes to `main`, so it must exist first.
    kubectl_apply(&request_yaml(&tenant, "first", &tenant, &class, "")).await;
    wait_phase(&tenant, "first", Phase::Ready, Duration::from_secs(60)).await;

    // A very busy monorepo: a push about every 50 ms (issue 11 saw ~5/s; the old writer
    // lost every race at this rate and never finished).
    let pusher = BusyPusher::start(remote(), Duration::from_millis(50));
    let names: Vec<String> = (0..100).map(|i| format!("busy-{i:02}")).collect();
    let burst: Vec<String> = names.iter().map(|n| request_yaml(&tenant, n, &tenant, &class, "")).collect();
    let started = std::time::Instant::now();
    kubectl_apply(&burst.join("---\n")).await;
    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    // Generous for a loaded CI machine; starved, the writer took minutes or never finished.
    wait_for(Duration::from_secs(120), "every request Ready beside the busy client", || {
        let (requests, names) = (requests.clone(), names.clone());
        async move {
            let listed = requests.list(&Default::default()).await.ok()?.items;
            let ready = listed
                .iter()
                .filter(|r| names.iter().any(|n| Some(n) == r.metadata.name.as_ref()))
                .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready))
                .count();
            (ready == names.len()).then_some(())
        }
    })
    .await;
    let took = started.elapsed();
    let theirs = pusher.stop();
    eprintln!("{} requests Ready in {took:.1?} while another client pushed {} commits", names.len(), theirs.len());

    assert!(!theirs.is_empty(), "the other client never pushed: nothing contended");
    let repo = git2::Repository::open_bare(remote()).unwrap_or_else(|e| panic!("{e}"));
    let head = repo.refname_to_id("refs/heads/main").unwrap_or_else(|e| panic!("{e}"));
    for commit in &theirs {
        let commit = git2::Oid::from_str(commit).unwrap_or_else(|e| panic!("{e}"));
        let kept = commit == head || repo.graph_descendant_of(head, commit).unwrap_or(false);
        assert!(kept, "the other client's {commit} was lost: a forced push?");
    }
    assert_eq!(folders_at_head(&remote(), &tenant_folder(&tenant)).len(), names.len() + 1, "every folder on main");
}
