//! Rollout stage approvals end to end (tier 2): a stage with an environment of a
//! class whose approval is required waits `AwaitingApproval` even though the Rollout
//! never asked for one, until bob approves it through the auth API; alice, who
//! created the rollout, is refused; a token for another stage is refused at `kubectl
//! apply`; and a break-glass approval passes one stage through its class's freeze,
//! recorded in status, events and the commit's trailers.
//!
//! In this binary rather than `tests/rollout`: stage approvals need the admission
//! webhook, the auth API and the signing key, which only this binary's operator has
//! (the rollout suite's runs without a webhook, and registering one there would put
//! every rollout test behind it). Argo CD is the rollout suite's fake.

use berth::api::rollout::{Rollout, RolloutPhase};
use berth_e2e::rollout::{
    FakeArgoCd, environment_yaml, messages_since, rollout_events, rollout_with_stages, wait_rollout,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

/// A tenant with a Ready `canary` (a plain class) and a Ready, approved `prod-a` (a
/// class that needs an approval from platform-approvers; with `freeze`, frozen from
/// a minute ago for an hour), with the fake Argo CD syncing them.
async fn approval_world(
    setup: &WebhookSetup,
    freeze: bool,
) -> (String, String, std::path::PathBuf, tokio::task::JoinHandle<()>) {
    cluster().install_argocd_crds().await;
    let (name, plain, prod) = (format!("sa-{}", suffix()), format!("pl-{}", suffix()), format!("pr-{}", suffix()));
    let synced = "argocd: {syncPolicy: {automated: true}}";
    kubectl_apply(&class_yaml(&plain, 1, synced)).await;
    let mut extra = format!("{synced}\n  approval: {{required: true, approverGroups: [platform-approvers]}}");
    if freeze {
        let (start, end) =
            (Timestamp::now() - SignedDuration::from_mins(1), Timestamp::now() + SignedDuration::from_hours(1));
        extra.push_str(&format!("\n  freezeWindows: [{{start: '{start}', end: '{end}', reason: quarter close}}]"));
    }
    kubectl_apply(&class_yaml(&prod, 1, &extra)).await;
    tenant(&name, &[&plain, &prod], "{}", false).await;
    let tenant = name;
    let task = FakeArgoCd::default().run(tenant.clone());
    apply_as("alice", &environment_yaml(&tenant, "canary", &plain, "canary")).await.unwrap_or_else(|e| panic!("{e}"));
    // prod-a needs bob's approval to be provisioned at all: created, then approved.
    let prod_a = environment_yaml(&tenant, "prod-a", &prod, "production");
    apply_as("alice", &prod_a).await.unwrap_or_else(|e| panic!("{e}"));
    let file = write(&setup.credentials, &format!("{tenant}-prod-a.yaml"), &prod_a);
    let bob = webhook::bearer_token_file(setup, "bob", &["platform-approvers"], &["approver"]).expect("bob's token");
    let approved =
        webhook::approve(setup, &bob, &["-f", &file.display().to_string(), "-o", "yaml"]).expect("bob approves");
    apply_as("alice", &approved).await.unwrap_or_else(|e| panic!("{e}"));
    for name in ["canary", "prod-a"] {
        wait_phase(&tenant, name, Phase::Ready, Duration::from_secs(60)).await;
    }
    (tenant, prod, bob, task)
}

/// canary, then production (the approval class's environments); nothing asks for an approval.
fn two_stage_rollout(tenant: &str, name: &str, prod: &str) -> String {
    two_stage_rollout_with(tenant, name, prod, "")
}

/// [`two_stage_rollout`] with `extra` in its spec.
fn two_stage_rollout_with(tenant: &str, name: &str, prod: &str, extra: &str) -> String {
    let stages = format!(
        "[{{name: canary, selector: {{matchLabels: {{ring: canary}}}}}}, {{name: production, classes: [{prod}], healthGate: {{progressDeadline: 2m}}}}]"
    );
    rollout_with_stages(tenant, name, "v2", &stages, extra)
}

async fn rollout_now(tenant: &str, name: &str) -> Rollout {
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, tenant);
    api.get(name).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_reason(tenant: &str, name: &str, reason: &str) -> Rollout {
    wait_for(Duration::from_secs(90), &format!("rollout {name} {reason}"), || async {
        let rollout = rollout_now(tenant, name).await;
        (rollout.status.as_ref().and_then(|s| s.reason.as_deref()) == Some(reason)).then_some(rollout)
    })
    .await
}

/// `berth approve rollout …`, which reads the rollout from the cluster.
fn stage_approve(setup: &WebhookSetup, token_file: &std::path::Path, args: &[&str]) -> Result<String, String> {
    webhook::approve_reading(setup, Some(&cluster().info.kubeconfig), token_file, args)
}

fn approvals_patch(stage: &str, token: &str) -> String {
    serde_json::json!({"spec": {"approvals": [{"stage": stage, "token": token.trim()}]}}).to_string()
}

async fn patch_as(user: &str, tenant: &str, name: &str, patch: &str) -> Result<(), String> {
    let args = ["patch", "rollouts.berth.dev", name, "-n", tenant, "--type", "merge", "-p", patch];
    let out = cluster().kubectl(user, &args, None).await;
    if out.success { Ok(()) } else { Err(out.stderr) }
}

#[tokio::test]
async fn a_production_stage_waits_for_bob_s_approval_though_the_rollout_never_asked_for_one() {
    let setup = berth().await;
    let (tenant, prod, bob, task) = approval_world(setup, false).await;
    let name = "web-v2";
    apply_as("alice", &two_stage_rollout(&tenant, name, &prod)).await.unwrap_or_else(|e| panic!("{e}"));

    // The canary goes; production waits, naming its approvers and the command.
    let waiting = wait_reason(&tenant, name, "AwaitingApproval").await;
    let status = waiting.status.clone().unwrap_or_default();
    assert_eq!(status.plan.as_ref().map(|p| p.environments), Some(2), "prod-a is planned, not skipped");
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("[\"platform-approvers\"]"), "{message}");
    assert!(message.contains(&format!("berth approve rollout {name} --stage production")), "{message}");
    assert_eq!(status.stages[0].batches_done, 1, "the canary went first");

    // alice created the rollout: even as an approver she may not approve it.
    let alice = webhook::bearer_token_file(setup, "alice", &["platform-approvers"], &["approver"]).expect("token");
    let stage = ["rollout", name, "-n", tenant.as_str(), "--stage", "production", "-o", "token"];
    let denied = stage_approve(setup, &alice, &stage).expect_err("alice may not approve her own rollout");
    assert!(denied.contains("403") && denied.contains("created this rollout"), "{denied}");

    // bob's approval of production, put under another stage: refused at apply.
    let token = stage_approve(setup, &bob, &stage).expect("bob approves production");
    let misplaced = patch_as("alice", &tenant, name, &approvals_patch("canary", &token)).await;
    let refused = misplaced.expect_err("a token for another stage was admitted");
    assert!(refused.contains("it approves stage \"production\", not stage \"canary\""), "{refused}");

    // Where it belongs, production goes on and the approval is on record.
    patch_as("alice", &tenant, name, &approvals_patch("production", &token)).await.unwrap_or_else(|e| panic!("{e}"));
    let done = wait_rollout(&tenant, name, RolloutPhase::Succeeded).await;
    task.abort();
    let status = done.status.unwrap_or_default();
    let approval = status.stages[1].approval.clone().expect("the accepted approval");
    assert_eq!((approval.approver.as_str(), approval.freeze_override), ("bob", false));
    assert!(rollout_events(&tenant, name).await.contains(&"ApprovalAccepted".to_owned()));
    let digest = berth::approval::digest::rollout_digest(&done.spec);
    assert_eq!(approval.spec_digest, Some(digest), "bound to the spec bob approved");
    assert!(approval.expires_at.is_some());

    // Deleted and re-created with the same spec and bob's token: a new rollout, which
    // nobody approved (the token names the old one's UID).
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, &tenant);
    api.delete(name, &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    wait_for(Duration::from_secs(30), "the rollout to be gone", || async {
        api.get_opt(name).await.ok().flatten().is_none().then_some(())
    })
    .await;
    let extra = format!("approvals: [{{stage: production, token: '{}'}}]", token.trim());
    let replayed = apply_as("alice", &two_stage_rollout_with(&tenant, name, &prod, &extra)).await;
    let refused = replayed.expect_err("an approval of the deleted rollout was admitted for its namesake");
    // The apiserver gives the new object its UID before admission sees it.
    assert!(refused.contains("approvals cannot move between rollouts") && refused.contains("(uid "), "{refused}");
}

#[tokio::test]
async fn a_break_glass_approval_passes_one_stage_through_its_class_s_freeze_and_says_so_in_the_commit() {
    let setup = berth().await;
    let (tenant, prod, bob, task) = approval_world(setup, true).await;
    let name = "web-v2";
    let before = berth_e2e::rollout::head();
    apply_as("alice", &two_stage_rollout(&tenant, name, &prod)).await.unwrap_or_else(|e| panic!("{e}"));
    // The canary's class is not frozen; production's is (a freeze is shown before the
    // approval it also waits for).
    wait_reason(&tenant, name, "Frozen").await;

    // An ordinary approval leaves production frozen.
    let stage = ["rollout", name, "-n", tenant.as_str(), "--stage", "production", "-o", "token"];
    let plain = stage_approve(setup, &bob, &stage).expect("bob approves");
    patch_as("alice", &tenant, name, &approvals_patch("production", &plain)).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = wait_reason(&tenant, name, "Frozen").await;
    assert!(still.status.unwrap_or_default().stages[1].approval.is_none(), "nothing started");

    // bob breaks the glass: production commits during the freeze.
    let mut breaking = stage.to_vec();
    breaking.push("--override-freeze");
    let glass = stage_approve(setup, &bob, &breaking).expect("bob breaks the glass");
    patch_as("alice", &tenant, name, &approvals_patch("production", &glass)).await.unwrap_or_else(|e| panic!("{e}"));
    let done = wait_rollout(&tenant, name, RolloutPhase::Succeeded).await;
    task.abort();
    let status = done.status.unwrap_or_default();
    assert!(status.stages[1].approval.as_ref().is_some_and(|a| a.freeze_override && a.approver == "bob"), "{status:?}");
    let production = status.history.iter().find(|h| h.stage == "production").expect("production's commit");
    let message = messages_since(&before)
        .into_iter()
        .find(|(commit, _)| *commit == production.commit)
        .map(|(_, m)| m)
        .expect("the commit's message");
    assert!(message.contains("Berth-Freeze-Override: bob"), "{message}");
    let canary = status.history.iter().find(|h| h.stage == "canary").expect("canary's commit");
    let canary_message = messages_since(&before).into_iter().find(|(c, _)| *c == canary.commit).map(|(_, m)| m);
    assert!(!canary_message.unwrap_or_default().contains("Berth-Freeze-Override"), "the canary was not frozen");
    assert!(rollout_events(&tenant, name).await.contains(&"FreezeOverridden".to_owned()));
}
