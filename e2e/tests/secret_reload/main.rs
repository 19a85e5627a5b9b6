//! Secret files swapped under a running `berth run`: the auth API's HS256 secret and
//! the approval signing key (which also verifies, as no other verification key is
//! configured) take effect without a restart. Its own binary: it rotates the keys
//! every other webhook test relies on. The public key and JWKS files, the verify-key
//! folder and the GitOps token are swapped in `tests/secret_reload.rs` and
//! `gitops::credentials`' tests, against the same loaders.

use std::{path::Path, sync::Mutex, time::Duration};

use berth_e2e::{suite::*, webhook};

/// Replaces `path`'s content in one step, as a Secret volume update does.
fn swap(path: &Path, content: &str) {
    swap_file(path, content.as_bytes());
}

async fn apply_as(user: &str, yaml: &str) -> Result<(), String> {
    let out = cluster().kubectl(user, &["apply", "-f", "-"], Some(yaml)).await;
    if out.success { Ok(()) } else { Err(out.stderr) }
}

#[tokio::test]
async fn the_hs256_secret_and_the_approval_signing_key_rotate_without_a_restart() {
    let cluster = cluster();
    cluster.install_crds().await;
    let dir = std::env::temp_dir().join(format!("berth-secret-reload-e2e-{}", std::process::id()));
    let (operator, setup) = webhook::start_operator(cluster, &dir).await.expect("webhook starts");
    OPERATOR.get_or_init(|| Mutex::new(operator));
    let (tenant, class) = (format!("tn-{}", suffix()), format!("prod-{}", suffix()));
    let approval = "ttl: {default: 24h, max: 48h}\n  approval: {required: true, approverGroups: [platform-approvers]}";
    kubectl_apply(&class_yaml(&class, 100, approval)).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_members(&tenant).await;
    // Created first (they wait for their approvals): an approval is bound to the request.
    let request = async |name: &str| {
        let path = setup.credentials.join(format!("{tenant}-{name}.yaml"));
        let yaml = request_yaml(&tenant, name, &tenant, &class, "");
        apply_as("alice", &yaml).await.expect("created to await its approval");
        std::fs::write(&path, yaml).expect("request file");
        path.display().to_string()
    };
    let (before, after) = (request("before").await, request("after").await);

    // The HS256 secret: tokens of the old one stop working, tokens of the new one work.
    let bob = webhook::bearer_token_file(&setup, "bob", &["platform-approvers"], &["approver"]).expect("token");
    let old_bob = setup.credentials.join("bob-old.token");
    std::fs::copy(&bob, &old_bob).expect("keep the old token");
    let approved_before = webhook::approve(&setup, &old_bob, &["-f", &before, "-o", "yaml"]).expect("bob approves");
    swap(&setup.credentials.join("auth-hs256.secret"), "a-new-secret-of-more-than-thirty-two-bytes\n");
    let refused = wait_for(Duration::from_secs(30), "the old secret's tokens to be refused", || async {
        webhook::approve(&setup, &old_bob, &["-f", &after]).err().filter(|e| e.contains("401"))
    })
    .await;
    assert!(!refused.contains("a-new-secret"), "{refused}");
    let bob = webhook::bearer_token_file(&setup, "bob", &["platform-approvers"], &["approver"]).expect("new token");
    webhook::approve(&setup, &bob, &["-f", &after]).expect("a token of the new secret is accepted");

    // The approval signing key: approvals are signed with the new key and admitted,
    // approvals of the old key are not (no verify keys keep it trusted here).
    let (private, _) = berth::approval::generate_ed25519().expect("a new key");
    let new_kid = berth::approval::SigningKey::from_pem(private.as_bytes()).expect("key").kid().to_owned();
    swap(&setup.credentials.join("approval-signing.pem"), &private);
    let approved_after = wait_for(Duration::from_secs(30), "approvals signed with the new key", || async {
        let approved = webhook::approve(&setup, &bob, &["-f", &after, "-o", "yaml"]).ok()?;
        (token_kid(&approved)? == new_kid).then_some(approved)
    })
    .await;
    wait_for(Duration::from_secs(30), "an approval of the new key to be admitted", || async {
        apply_as("alice", &approved_after).await.ok()
    })
    .await;
    let refused = apply_as("alice", &approved_before).await.expect_err("the old key is no longer trusted");
    assert!(refused.contains("denied the request") && refused.contains("key"), "{refused}");
    let log = operator_log();
    assert!(!log.contains("a-new-secret") && !log.contains(private.lines().nth(1).unwrap_or("-")), "{log}");
}

/// The `kid` in the header of the approval token in `berth approve -o yaml`'s output.
fn token_kid(approved: &str) -> Option<String> {
    webhook::token_field(webhook::approval_token(approved)?, 0, "kid")
}
