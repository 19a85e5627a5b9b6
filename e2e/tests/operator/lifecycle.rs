//! Tenant namespaces, the request lifecycle and its git history.

use std::time::Duration;

use berth::api::{
    EnvironmentClass, EnvironmentRequest, Tenant,
    conditions::{find, is_true, types},
    environment_request::Phase,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};

use crate::*;

#[tokio::test]
async fn a_tenant_gets_its_request_namespace_with_bindings_for_its_people() {
    operator().await;
    let tenant = format!("tn-{}", suffix());
    kubectl_apply(&tenant_yaml(&tenant, &["preview"], "{}")).await;
    wait_tenant_namespace(&tenant).await;

    let can_create = cluster()
        .kubectl("alice", &["auth", "can-i", "create", "environmentrequests.berth.dev", "-n", &tenant], None)
        .await;
    assert_eq!(
        can_create.stdout.trim(),
        "yes",
        "alice (member via team-payments, owner) may create: {}",
        can_create.stderr
    );
    let bob = cluster()
        .kubectl("bob", &["auth", "can-i", "create", "environmentrequests.berth.dev", "-n", &tenant], None)
        .await;
    assert_eq!(bob.stdout.trim(), "no", "bob is not in the tenant");
    // Owners manage requests but never write their status: that is Berth's record of
    // what it provisioned (a forged Ready would skip the budget guard).
    let can = |verb: &'static str, subresource: &'static [&'static str]| {
        let tenant = tenant.clone();
        async move {
            let mut args = vec!["auth", "can-i", verb, "environmentrequests.berth.dev", "-n", &tenant];
            args.extend_from_slice(subresource);
            cluster().kubectl("alice", &args, None).await.stdout.trim().to_owned()
        }
    };
    assert_eq!(can("patch", &[]).await, "yes", "alice, an owner, manages requests");
    assert_eq!(can("patch", &["--subresource", "status"]).await, "no", "alice cannot write a request's status");
    assert_eq!(can("update", &["--subresource", "status"]).await, "no", "alice cannot write a request's status");

    let tenants: Api<Tenant> = Api::all(cluster().client("admin").await);
    let ready = wait_for(Duration::from_secs(30), "tenant status", || {
        let tenants = tenants.clone();
        let tenant = tenant.clone();
        async move {
            let t = tenants.get(&tenant).await.ok()?;
            let status = t.status?;
            is_true(&status.conditions, types::READY).then_some(status)
        }
    })
    .await;
    assert_eq!(ready.request_namespace.as_deref(), Some(tenant.as_str()));
    assert!(is_true(&ready.conditions, types::WITHIN_BUDGET));
}

#[tokio::test]
async fn a_preview_request_becomes_ready_with_its_folder_committed_and_deleting_it_cleans_git() {
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("pv-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 40, "ttl: {default: 72h, max: 168h}")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "web", &tenant, &class, "ttl: 24h")).await;

    let ready = wait_phase(&tenant, "web", Phase::Ready, Duration::from_secs(60)).await;
    let status = ready.status.clone().unwrap_or_default();
    let gitops = status.gitops.clone().unwrap_or_default();
    let path = gitops.path.clone().unwrap_or_default();
    assert_eq!(path, format!("clusters/in-cluster/tenants/{tenant}/web"));
    assert!(is_true(&status.conditions, types::COMMITTED));
    assert_eq!(status.estimated_monthly_cost_usd, Some(40));
    assert!(status.expires_at.is_some(), "a 24h TTL gives an expiry");

    // The commit in status holds exactly what `berth render` renders for these objects.
    let files = files_at_head(&remote(), &path).unwrap_or_else(|| panic!("{path} not in the remote"));
    let client = cluster().client("admin").await;
    let class_obj = Api::<EnvironmentClass>::all(client.clone()).get(&class).await.unwrap_or_else(|e| panic!("{e}"));
    let tenant_obj = Api::<Tenant>::all(client.clone()).get(&tenant).await.unwrap_or_else(|e| panic!("{e}"));
    let expected =
        berth::render::render(&class_obj, &tenant_obj, &ready, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files, expected.files, "committed files differ from the rendering");
    assert_eq!(status.namespace.as_deref(), Some(expected.namespace.as_str()));
    let repo = git2::Repository::open_bare(remote()).unwrap_or_else(|e| panic!("{e}"));
    let commit = repo
        .find_commit(
            git2::Oid::from_str(gitops.commit.as_deref().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("status commit not in the remote: {e}"));
    assert!(commit.message().unwrap_or_default().contains(&format!("Berth-Request: {tenant}/web")));

    let events =
        cluster().kubectl("admin", &["get", "events", "-n", &tenant, "-o", "jsonpath={.items[*].reason}"], None).await;
    assert!(events.stdout.contains("Ready"), "a Ready event: {}", events.stdout);

    // Deleting the request removes its folder before the request goes (finalizer).
    let requests: Api<EnvironmentRequest> = Api::namespaced(client, &tenant);
    requests.delete("web", &DeleteParams::default()).await.unwrap_or_else(|e| panic!("{e}"));
    wait_for(Duration::from_secs(30), "the request to be gone", || {
        let requests = requests.clone();
        async move { requests.get_opt("web").await.ok().and_then(|r| r.is_none().then_some(())) }
    })
    .await;
    assert!(files_at_head(&remote(), &path).is_none(), "{path} is still in git after the request was deleted");
}

#[tokio::test]
async fn an_expired_environment_leaves_git_and_stays_expired() {
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("short-{}", suffix()));
    // The class's default TTL, counted from creation: long enough that a loaded machine
    // still shows Ready (the commit) before the expiry takes it away.
    kubectl_apply(&class_yaml(&class, 10, "ttl: {default: 15s, max: 1h}")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "brief", &tenant, &class, "")).await;

    let ready = wait_phase(&tenant, "brief", Phase::Ready, Duration::from_secs(30)).await;
    let path = ready.status.and_then(|s| s.gitops).and_then(|g| g.path).unwrap_or_default();
    assert!(files_at_head(&remote(), &path).is_some(), "committed while alive");

    let expired = wait_phase(&tenant, "brief", Phase::Expired, Duration::from_secs(30)).await;
    assert!(files_at_head(&remote(), &path).is_none(), "{path} still in git after expiry");
    let status = expired.status.unwrap_or_default();
    assert!(!is_true(&status.conditions, types::READY));
    assert_eq!(find(&status.conditions, types::COMMITTED).map(|c| c.reason.as_str()), Some("Expired"));
}

#[tokio::test]
async fn a_class_that_needs_approval_is_never_provisioned_without_one() {
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("prod-{}", suffix()));
    let class_doc = class_yaml(&class, 100, "approval: {required: true, approverGroups: [platform-approvers]}");
    kubectl_apply(&class_doc).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "prod", &tenant, &class, "")).await;

    let waiting = wait_phase(&tenant, "prod", Phase::AwaitingApproval, Duration::from_secs(30)).await;
    let approved = find(&waiting.status.unwrap_or_default().conditions, types::APPROVED).cloned();
    assert!(approved.is_some_and(|c| c.status == "False" && c.message.contains("platform-approvers")));
    assert!(files_at_head(&remote(), &format!("clusters/in-cluster/tenants/{tenant}/prod")).is_none());
}

#[tokio::test]
async fn concurrent_requests_over_the_tenant_budget_provision_only_those_that_fit() {
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("mid-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 400, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{monthlyCostUSD: 1000}")).await;
    wait_tenant_namespace(&tenant).await;
    // Three $400 requests in one apply: together $1200 against a $1000 budget.
    let burst: Vec<String> = ["a", "b", "c"].iter().map(|n| request_yaml(&tenant, n, &tenant, &class, "")).collect();
    kubectl_apply(&burst.join("---\n")).await;

    let requests: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    let settled = wait_for(Duration::from_secs(60), "all three requests to settle", || {
        let requests = requests.clone();
        async move {
            let list = requests.list(&Default::default()).await.ok()?;
            let phases: Vec<Option<Phase>> =
                list.items.iter().map(|r| r.status.as_ref().and_then(|s| s.phase)).collect();
            (phases.len() == 3 && phases.iter().all(|p| matches!(p, Some(Phase::Ready | Phase::Failed))))
                .then_some(list.items)
        }
    })
    .await;
    // Let any late reconcile act on a wrong early decision before judging.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = requests.list(&Default::default()).await.map(|l| l.items).unwrap_or(settled);
    let ready: Vec<String> = settled
        .iter()
        .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready))
        .map(|r| r.name_any())
        .collect();
    assert_eq!(ready.len(), 2, "exactly two of three fit $1000: {ready:?}");
    let failed = settled
        .iter()
        .find(|r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Failed))
        .unwrap_or_else(|| panic!("one over budget"));
    let reason = find(&failed.status.clone().unwrap_or_default().conditions, types::READY)
        .cloned()
        .unwrap_or_else(|| panic!("Ready condition"));
    assert_eq!(reason.reason, "OverBudget");
    assert!(reason.message.contains("$1200") && reason.message.contains("$1000"), "{}", reason.message);
    let committed = ["a", "b", "c"]
        .iter()
        .filter(|n| files_at_head(&remote(), &format!("clusters/in-cluster/tenants/{tenant}/{n}")).is_some())
        .count();
    assert_eq!(committed, 2, "only the environments that fit are in git");
}

#[tokio::test]
async fn a_class_change_re_renders_its_environments_in_one_commit() {
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("grow-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 10, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    let requests: Vec<String> =
        ["one", "two", "three"].iter().map(|n| request_yaml(&tenant, n, &tenant, &class, "")).collect();
    kubectl_apply(&requests.join("---\n")).await;
    for name in ["one", "two", "three"] {
        wait_phase(&tenant, name, Phase::Ready, Duration::from_secs(60)).await;
    }
    let before = git2::Repository::open_bare(remote())
        .and_then(|r| r.find_reference("refs/heads/main").and_then(|h| h.peel_to_commit()).map(|c| c.id().to_string()))
        .unwrap_or_else(|e| panic!("{e}"));

    let classes: Api<EnvironmentClass> = Api::all(cluster().client("admin").await);
    let patch = serde_json::json!({"spec": {"quota": {"requests.cpu": "3", "pods": "10"}}});
    classes.patch(&class, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap_or_else(|e| panic!("{e}"));

    wait_for(Duration::from_secs(60), "all three folders to carry the new quota", || async {
        ["one", "two", "three"]
            .iter()
            .all(|n| {
                files_at_head(&remote(), &format!("clusters/in-cluster/tenants/{tenant}/{n}"))
                    .and_then(|f| f.get("resourcequota.yaml").cloned())
                    .is_some_and(|q| q.contains("requests.cpu: '3'"))
            })
            .then_some(())
    })
    .await;
    let ours: Vec<String> = commits_since(&remote(), &before)
        .into_iter()
        .filter(|id| {
            git2::Repository::open_bare(remote())
                .and_then(|r| {
                    r.find_commit(git2::Oid::from_str(id)?)
                        .map(|c| c.message().unwrap_or_default().contains(&format!("{tenant}/")))
                })
                .unwrap_or(false)
        })
        .collect();
    let messages: Vec<String> = ours
        .iter()
        .map(|id| {
            git2::Repository::open_bare(remote())
                .and_then(|r| {
                    r.find_commit(git2::Oid::from_str(id)?).map(|c| c.message().unwrap_or_default().to_owned())
                })
                .unwrap_or_else(|e| e.to_string())
        })
        .collect();
    assert_eq!(ours.len(), 1, "the class change re-rendered its three environments in one commit: {messages:#?}");
}

#[tokio::test]
async fn a_quota_budget_stops_the_environment_that_would_reserve_too_much_cpu() {
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("cpu-{}", suffix()));
    // Each environment reserves requests.cpu: '2' (class_yaml); the tenant may reserve 3.
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{quota: {requests.cpu: '3'}}")).await;
    wait_tenant_namespace(&tenant).await;
    kubectl_apply(&request_yaml(&tenant, "first", &tenant, &class, "")).await;
    wait_phase(&tenant, "first", Phase::Ready, Duration::from_secs(60)).await;
    kubectl_apply(&request_yaml(&tenant, "second", &tenant, &class, "")).await;
    let refused = wait_phase(&tenant, "second", Phase::Failed, Duration::from_secs(60)).await;
    let ready =
        find(&refused.status.unwrap_or_default().conditions, types::READY).cloned().unwrap_or_else(|| panic!("Ready"));
    assert_eq!(ready.reason, "OverBudget");
    assert!(
        ready.message.contains("4 of requests.cpu") && ready.message.contains("its budget is 3"),
        "{}",
        ready.message
    );

    let tenants: Api<Tenant> = Api::all(cluster().client("admin").await);
    let usage = wait_for(Duration::from_secs(30), "tenant usage", || {
        let tenants = tenants.clone();
        let tenant = tenant.clone();
        async move {
            let usage = tenants.get(&tenant).await.ok()?.status?.usage;
            (usage.quota.get("requests.cpu").map(|q| q.0.as_str()) == Some("2")).then_some(usage)
        }
    })
    .await;
    assert_eq!(usage.monthly_cost_usd, 1);
}
