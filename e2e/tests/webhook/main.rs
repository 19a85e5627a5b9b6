//! The admission webhook on a real apiserver: what policy forbids is refused at
//! `kubectl apply`, with the message a person reads; approvals go round trip through
//! `berth approve`; the creator is recorded from the authenticated user.

use std::{sync::Mutex, time::Duration};

use berth::api::{EnvironmentRequest, conditions, environment_request::Phase};
use berth_e2e::webhook::{self, WebhookSetup};
use berth_e2e::{rollout::rollout_yaml, suite::*};
use kube::{Api, ResourceExt};
use tokio::sync::OnceCell;

mod freeze;
mod listeners;
mod stage_approval;

static SETUP: OnceCell<WebhookSetup> = OnceCell::const_new();

/// The webhook-enabled operator shared by this binary's tests.
async fn berth() -> &'static WebhookSetup {
    SETUP
        .get_or_init(|| async {
            let cluster = cluster();
            cluster.install_crds().await;
            let dir = std::env::temp_dir().join(format!("berth-webhook-e2e-{}", std::process::id()));
            let (operator, setup) =
                webhook::start_operator(cluster, &dir).await.unwrap_or_else(|e| panic!("webhook did not start: {e:#}"));
            if OPERATOR.set(Mutex::new(operator)).is_err() {
                panic!("another operator already runs in this test binary");
            }
            setup
        })
        .await
}

/// A class of `name` that needs an approval from platform-approvers.
fn approval_class_yaml(name: &str) -> String {
    class_yaml(
        name,
        100,
        "ttl: {default: 24h, max: 48h}\n  approval: {required: true, approverGroups: [platform-approvers]}",
    )
}

/// Tenant `name` whose members are team-payments and, when `bob_member`, bob too.
async fn tenant(name: &str, classes: &[&str], budget: &str, bob_member: bool) {
    let mut yaml = tenant_yaml(name, classes, budget);
    if bob_member {
        yaml = yaml.replace(
            "members: [{kind: Group, name: team-payments}]",
            "members: [{kind: Group, name: team-payments}, {kind: User, name: bob}]",
        );
    }
    kubectl_apply(&yaml).await;
    wait_tenant_members(name).await;
}

/// A new tenant (with bob as a member when `bob_member`) and a new class of it that
/// needs an approval from platform-approvers: their names.
async fn tenant_of_an_approval_class(bob_member: bool) -> (String, String) {
    let (name, class) = (format!("tn-{}", suffix()), format!("prod-{}", suffix()));
    kubectl_apply(&approval_class_yaml(&class)).await;
    tenant(&name, &[&class], "{}", bob_member).await;
    (name, class)
}

async fn apply_as(user: &str, yaml: &str) -> Result<(), String> {
    let out = cluster().kubectl(user, &["apply", "-f", "-"], Some(yaml)).await;
    if out.success { Ok(()) } else { Err(out.stderr) }
}

fn write(dir: &std::path::Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write request file");
    path
}

#[tokio::test]
async fn a_request_of_an_approval_class_needs_an_approver_who_is_not_its_creator() {
    let setup = berth().await;
    let (name, class) = tenant_of_an_approval_class(false).await;
    let request = request_yaml(&name, "checkout", &name, &class, "");
    let file = write(&setup.credentials, &format!("{name}-checkout.yaml"), &request);

    // An approval is bound to the request's UID: bob cannot approve what does not exist.
    let bob = webhook::bearer_token_file(setup, "bob", &["platform-approvers"], &["approver"]).expect("token");
    let early = webhook::approve(setup, &bob, &["-f", &file.display().to_string()]).expect_err("no request yet");
    assert!(early.contains("404 RequestNotFound") && early.contains("create it without spec.approval"), "{early}");

    // Without an approval it is created and waits, naming the approvers and the command.
    apply_as("alice", &request).await.expect("created to await its approval");
    let waiting = wait_phase(&name, "checkout", Phase::AwaitingApproval, Duration::from_secs(60)).await;
    let status = waiting.status.expect("status");
    let approval = conditions::find(&status.conditions, conditions::types::APPROVED).expect("Approved condition");
    assert!(approval.message.contains("[\"platform-approvers\"]"), "{}", approval.message);
    assert!(approval.message.contains(&format!("berth approve -n {name} checkout")), "{}", approval.message);
    assert!(status.gitops.is_none(), "nothing is committed before the approval");

    // alice is no approver: the auth API says so.
    let alice = webhook::bearer_token_file(setup, "alice", &["team-payments"], &["requester"]).expect("token");
    let denied =
        webhook::approve(setup, &alice, &["-f", &file.display().to_string()]).expect_err("alice may not approve");
    assert!(denied.contains("403") && denied.contains("approver"), "{denied}");

    // bob approves; alice applies what `berth approve -o yaml` printed.
    let approved =
        webhook::approve(setup, &bob, &["-f", &file.display().to_string(), "-o", "yaml"]).expect("bob approves");
    assert!(approved.contains("approval:") && approved.contains("token:"), "{approved}");
    apply_as("alice", &approved).await.expect("the approved request is admitted");

    // The controller checks the approval too and provisions it.
    let ready = wait_phase(&name, "checkout", Phase::Ready, Duration::from_secs(60)).await;
    assert_eq!(ready.annotations().get("berth.dev/created-by").map(String::as_str), Some("alice"));
    let status = ready.status.expect("status");
    let approval = conditions::find(&status.conditions, conditions::types::APPROVED).expect("Approved condition");
    assert_eq!((approval.status.as_str(), approval.message.as_str()), ("True", "approved by bob"));

    // Changing the spec afterwards voids the approval.
    let changed = approved.replace("revision: v1", "revision: v2");
    assert_ne!(changed, approved);
    let refused = apply_as("alice", &changed).await.expect_err("a changed spec needs a new approval");
    assert!(refused.contains("the spec changed after it was approved"), "{refused}");

    // Deleted and created again under its name, with the same spec and token: another
    // request (another UID), which the old approval does not cover.
    let out = cluster().kubectl("admin", &["delete", "environmentrequest", "checkout", "-n", &name], None).await;
    assert!(out.success, "{}", out.stderr);
    let refused = apply_as("alice", &approved).await.expect_err("an old approval is not replayed");
    assert!(refused.contains("approvals cannot move between requests"), "{refused}");
    assert!(refused.contains(&format!("{name}/checkout (uid ")), "{refused}");
}

/// An approval revoked by its id (a key of the ConfigMap berth-approval-revocations,
/// mounted into Berth) is refused before it expires; another approval is not.
#[tokio::test]
async fn a_revoked_approval_is_refused_by_its_token_id() {
    let setup = berth().await;
    let (name, class) = tenant_of_an_approval_class(false).await;
    let bob = webhook::bearer_token_file(setup, "bob", &["platform-approvers"], &["approver"]).expect("token");
    let mut approved = Vec::new();
    for app in ["revoked", "kept"] {
        let request = request_yaml(&name, app, &name, &class, "");
        apply_as("alice", &request).await.expect("created to await its approval");
        let file = write(&setup.credentials, &format!("{name}-{app}.yaml"), &request);
        let yaml = webhook::approve(setup, &bob, &["-f", &file.display().to_string(), "-o", "yaml"]).expect("approved");
        approved.push(yaml);
    }
    let token = webhook::approval_token(&approved[0]).expect("a token");
    let token_id = webhook::token_field(token, 1, "jti").expect("a token id");
    setup.revoke(&token_id).expect("revoked");
    // Berth re-reads the list within seconds (a kubelet takes up to a minute to update
    // a mounted ConfigMap; here the folder is written directly): asked with dry runs
    // until it has, so the token is never stored before.
    wait_for(Duration::from_secs(30), "the revocation to be read", || async {
        let out = cluster().kubectl("alice", &["apply", "--dry-run=server", "-f", "-"], Some(&approved[0])).await;
        (!out.success && out.stderr.contains("revoked")).then_some(())
    })
    .await;
    let refused = apply_as("alice", &approved[0]).await.expect_err("a revoked approval is refused");
    assert!(refused.contains(&format!("it was revoked (token id {token_id})")), "{refused}");
    // kubectl quotes the patch it tried (token included); Berth's message never does.
    let message = refused.split("denied the request:").nth(1).expect("the webhook's message");
    assert!(!message.contains(token), "the token itself is never quoted: {message}");
    apply_as("alice", &approved[1]).await.expect("another approval still counts");
    wait_phase(&name, "kept", Phase::Ready, Duration::from_secs(60)).await;
}

/// The default way to approve: as the user of one's kubeconfig. The apiserver says who
/// the caller is (TokenReview) and RBAC whether they may approve the class
/// (SubjectAccessReview, verb `approve`); the class's approver groups still apply.
#[tokio::test]
async fn an_approver_approves_as_their_kubeconfig_user_once_rbac_grants_approve_on_the_class() {
    let setup = berth().await;
    let (name, class) = tenant_of_an_approval_class(false).await;
    let request = request_yaml(&name, "kube", &name, &class, "");
    apply_as("alice", &request).await.expect("created to await its approval");
    let file = write(&setup.credentials, &format!("{name}-kube.yaml"), &request);
    let file = file.display().to_string();
    let kubeconfig = &cluster().info.kubeconfig;

    // bob is in the approver group, but RBAC grants him nothing yet.
    let denied = webhook::approve_as(setup, kubeconfig, "bob", &["-f", &file]).expect_err("no RBAC yet");
    assert!(denied.contains("403 NotAnApprover"), "{denied}");
    assert!(
        denied.contains(&format!("bob may not approve class \"{class}\": RBAC grants no verb \"approve\"")),
        "{denied}"
    );

    // Granted `approve` on this class alone, bob approves as himself.
    kubectl_apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: approve-{class}}}
rules:
  - apiGroups: [berth.dev]
    resources: [environmentclasses]
    resourceNames: [{class}]
    verbs: [approve]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: approve-{class}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: approve-{class}}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}}]
"
    ))
    .await;
    // The apiserver's RBAC cache follows the binding within moments.
    let mut approved = Err(String::new());
    for _ in 0..50 {
        approved = webhook::approve_as(setup, kubeconfig, "bob", &["-f", &file, "-o", "yaml"]);
        if approved.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let approved = approved.expect("bob approves with his kubeconfig");
    assert!(approved.contains("approval:") && approved.contains("token:"), "{approved}");

    // alice, who created it, holds no `approve`: refused by RBAC, not by a token.
    let denied = webhook::approve_as(setup, kubeconfig, "alice", &["-f", &file]).expect_err("alice may not approve");
    assert!(denied.contains("alice may not approve class"), "{denied}");

    // With --apply Berth adds the approval to the request itself: bob needs no rights
    // on it. The approver's name is the cluster's: the same kind of name admission
    // records as the creator, so four eyes compares like with like.
    webhook::approve_as(setup, kubeconfig, "bob", &["-f", &file, "--apply"]).expect("bob's approval added");
    let ready = wait_phase(&name, "kube", Phase::Ready, Duration::from_secs(60)).await;
    assert_eq!(ready.annotations().get("berth.dev/created-by").map(String::as_str), Some("alice"));
    let status = ready.status.expect("status");
    let approval = conditions::find(&status.conditions, conditions::types::APPROVED).expect("Approved condition");
    assert_eq!((approval.status.as_str(), approval.message.as_str()), ("True", "approved by bob"));
}

#[tokio::test]
async fn the_creator_cannot_approve_their_own_request() {
    let setup = berth().await;
    let (name, class) = tenant_of_an_approval_class(true).await;
    let request = request_yaml(&name, "self", &name, &class, "");
    let file = write(&setup.credentials, &format!("{name}-self.yaml"), &request);
    // bob, a member of the tenant, creates the request: four eyes says he may not approve it.
    apply_as("bob", &request).await.expect("created to await its approval");
    let bob = webhook::bearer_token_file(setup, "bob", &["platform-approvers"], &["approver"]).expect("token");
    let refused = webhook::approve(setup, &bob, &["-f", &file.display().to_string(), "-o", "yaml"])
        .expect_err("self-approval must be refused");
    assert!(refused.contains("403 SelfApproval"), "{refused}");
    assert!(
        refused.contains(&format!("bob created {name}/self or wrote its current spec and cannot approve it")),
        "{refused}"
    );
    let waiting = wait_phase(&name, "self", Phase::AwaitingApproval, Duration::from_secs(60)).await;
    assert!(waiting.status.and_then(|s| s.gitops).is_none(), "nothing was committed");
}

#[tokio::test]
async fn tenancy_class_ttl_and_budget_are_enforced_at_the_apiserver() {
    berth().await;
    let (payments, search, class) =
        (format!("tn-{}", suffix()), format!("tn-{}", suffix()), format!("small-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 100, "ttl: {default: 24h, max: 48h}")).await;
    tenant(&payments, &[&class], "{maxEnvironments: 1}", false).await;
    tenant(&search, &[], "{}", false).await;

    // Naming another tenant from this tenant's namespace.
    let spoofed = request_yaml(&payments, "spoof", &search, &class, "");
    let refused = apply_as("alice", &spoofed).await.expect_err("tenant spoofing");
    assert!(refused.contains(&format!("is not tenant \"{search}\"'s request namespace")), "{refused}");

    // A class the tenant may not use.
    let disallowed = request_yaml(&search, "web", &search, &class, "");
    let refused = apply_as("alice", &disallowed).await.expect_err("disallowed class");
    assert!(refused.contains(&format!("may not use class \"{class}\"")), "{refused}");

    // A TTL over the class's maximum.
    let long = request_yaml(&payments, "long", &payments, &class, "ttl: 72h");
    let refused = apply_as("alice", &long).await.expect_err("ttl over max");
    assert!(refused.contains("ttl 72h is longer than class"), "{refused}");

    // The budget: one environment fits, the second does not.
    apply_as("alice", &request_yaml(&payments, "first", &payments, &class, "")).await.expect("first fits");
    let refused = apply_as("alice", &request_yaml(&payments, "second", &payments, &class, ""))
        .await
        .expect_err("second overruns the budget");
    assert!(refused.contains("already has 1 of its 1 environments"), "{refused}");

    // A class with environments cannot be deleted.
    let out = cluster().kubectl("admin", &["delete", "environmentclass", &class], None).await;
    assert!(!out.success && out.stderr.contains("still has 1 environment(s)"), "{}", out.stderr);
}

#[tokio::test]
async fn the_creator_is_recorded_from_the_authenticated_user_and_cannot_be_rewritten() {
    berth().await;
    let (name, class) = (format!("tn-{}", suffix()), format!("small-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    tenant(&name, &[&class], "{}", false).await;
    let forged = request_yaml(&name, "forged", &name, &class, "")
        .replace("metadata: {name: forged,", "metadata: {annotations: {berth.dev/created-by: bob}, name: forged,");
    apply_as("alice", &forged).await.expect("admitted");
    let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &name);
    let stored = api.get("forged").await.expect("stored");
    assert_eq!(stored.annotations().get("berth.dev/created-by").map(String::as_str), Some("alice"));

    let out = cluster()
        .kubectl(
            "alice",
            &["annotate", "--overwrite", "-n", &name, "environmentrequest", "forged", "berth.dev/created-by=bob"],
            None,
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    let stored = api.get("forged").await.expect("stored");
    assert_eq!(stored.annotations().get("berth.dev/created-by").map(String::as_str), Some("alice"));
}

#[tokio::test]
async fn tenants_cannot_take_a_system_namespace_or_another_tenants() {
    berth().await;
    let name = format!("tn-{}", suffix());
    tenant(&name, &[], "{}", false).await;
    let copycat = tenant_yaml(&format!("{name}-2"), &[], "{}")
        .replace(&format!("requestNamespace: {name}-2"), &format!("requestNamespace: {name}"));
    let out = cluster().kubectl("admin", &["apply", "-f", "-"], Some(&copycat)).await;
    assert!(!out.success && out.stderr.contains(&format!("already belongs to tenant \"{name}\"")), "{}", out.stderr);
    let system = tenant_yaml(&format!("{name}-3"), &[], "{}")
        .replace(&format!("requestNamespace: {name}-3"), "requestNamespace: kube-system");
    let out = cluster().kubectl("admin", &["apply", "-f", "-"], Some(&system)).await;
    assert!(!out.success && out.stderr.contains("\"kube-system\" is reserved"), "{}", out.stderr);
}

#[tokio::test]
async fn a_rollout_whose_selector_picks_another_apps_environment_is_refused_until_it_is_held() {
    berth().await;
    let (name, class) = (format!("tn-{}", suffix()), format!("small-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    tenant(&name, &[&class], "{}", false).await;
    // A request of app api that carries web's label.
    let api = request_yaml(&name, "api-prod", &name, &class, "")
        .replace("namespace: ", "labels: {app: web}, namespace: ")
        .replace("app: {name: web,", "app: {name: api,");
    apply_as("alice", &api).await.expect("the request is admitted");
    // Promotes app web over the requests labelled app: web.
    let rollout = rollout_yaml(&name, "web-v2", "v2", "");
    // The webhook sees the request once its index has it.
    let refused = wait_for(Duration::from_secs(30), "the rollout to be refused", || {
        let rollout = rollout.clone();
        async move { apply_as("alice", &rollout).await.err() }
    })
    .await;
    assert!(refused.contains("denied the request"), "{refused}");
    assert!(refused.contains("deploy another app than \"web\": api-prod (app api)"), "{refused}");
    assert!(refused.contains("berth.dev/hold"), "{refused}");

    // Holding the request, as the message says, lets the rollout in.
    let out =
        cluster().kubectl("admin", &["label", "envreq", "api-prod", "-n", &name, "berth.dev/hold=true"], None).await;
    assert!(out.success, "{}", out.stderr);
    wait_for(Duration::from_secs(30), "the rollout to be admitted", || {
        let rollout = rollout.clone();
        async move { apply_as("alice", &rollout).await.ok() }
    })
    .await;
}

#[tokio::test]
async fn a_caller_asking_for_approvals_too_often_is_told_to_wait_and_others_are_not() {
    let setup = berth().await;
    let name = format!("tn-{}", suffix());
    let file =
        write(&setup.credentials, &format!("{name}-flood.yaml"), &request_yaml(&name, "flood", &name, "none", ""));
    let path = file.display().to_string();
    // Subjects of its own: the limit is per caller (30 a minute by default, one ask
    // back every 2 s).
    let flooder = format!("flood-{name}");
    let token = webhook::bearer_token_file(setup, &flooder, &["platform-approvers"], &["approver"]).expect("token");
    let started = std::time::Instant::now();
    let mut asks = 0u64;
    let refusal = loop {
        asks += 1;
        match webhook::approve(setup, &token, &["-f", &path]) {
            Err(refusal) if refusal.contains("(429 RateLimited)") => break refusal,
            _ if started.elapsed() > Duration::from_secs(120) => panic!("{asks} asks in 120 s and never limited"),
            _ => {}
        }
    };
    let refilled = started.elapsed().as_secs() / 2;
    assert!(asks > 30 && asks <= 30 + refilled + 2, "limited at ask {asks}, {refilled} asks refilled meanwhile");
    assert!(refusal.contains(&format!("{flooder} asked for approvals more than 30 times")), "{refusal}");
    // Another caller is not slowed by it.
    let other = format!("other-{name}");
    let other = webhook::bearer_token_file(setup, &other, &["platform-approvers"], &["approver"]).expect("token");
    let answer = webhook::approve(setup, &other, &["-f", &path]);
    assert!(!answer.as_ref().is_err_and(|e| e.contains("429")), "{answer:?}");
}
