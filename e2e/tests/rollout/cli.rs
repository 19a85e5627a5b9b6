//! `berth rollout` (the built binary) against the real apiserver: each control is
//! one patch that lands on the Rollout, and `status` prints what the controller wrote.

use std::time::Duration;

use berth::api::{Rollout, rollout::RETRY_ANNOTATION};
use berth_e2e::{
    rollout::{berth_rollout, berth_rollout_ok as ok, rollout_yaml},
    suite::*,
};
use kube::Api;

#[tokio::test]
async fn pause_resume_retry_and_abort_are_patches_on_the_rollout_and_status_prints_its_phase() {
    // As the other tests of this binary start it: with Argo CD's CRDs installed first.
    cluster().install_argocd_crds().await;
    operator().await;
    let (tenant, _class) = tenant_with_class("cli", "{}").await;
    // Nothing to promote: the controller gives it a phase at once, which is all `status` needs.
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "")).await;
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, &tenant);
    let api = &api;
    let get = || async move { api.get("web-v2").await.unwrap_or_else(|e| panic!("{e}")) };
    let phase = wait_for(Duration::from_secs(30), "the rollout's first status", || async move {
        get().await.status.and_then(|s| s.phase)
    })
    .await;
    let status = ok(&["status", "web-v2", "-n", &tenant]);
    assert!(status.starts_with(&format!("Rollout {tenant}/web-v2: web to v2\n")), "{status}");
    assert!(status.contains(&format!("\nPhase:    {phase:?}")), "{status}");

    let paused = ok(&["pause", "web-v2", "-n", &tenant]);
    assert!(paused.contains("spec.paused false → true"), "{paused}");
    assert!(
        paused.contains(&format!(
            r#"kubectl patch rollouts.berth.dev web-v2 -n {tenant} --type merge -p '{{"spec":{{"paused":true}}}}'"#
        )),
        "{paused}"
    );
    assert!(get().await.spec.paused);
    assert!(ok(&["status", "web-v2", "-n", &tenant]).contains("spec.paused is true"));

    let resumed = ok(&["resume", "web-v2", "-n", &tenant]);
    assert!(resumed.contains("spec.paused true → false"), "{resumed}");
    assert!(!get().await.spec.paused);

    ok(&["retry", "web-v2", "-n", &tenant]);
    let retry = get().await.metadata.annotations.unwrap_or_default().get(RETRY_ANNOTATION).cloned();
    let at: Option<k8s_openapi::jiff::Timestamp> = retry.as_deref().and_then(|v| v.parse().ok());
    assert!(at.is_some(), "{RETRY_ANNOTATION} is not an RFC 3339 time: {retry:?}");

    // Abort cannot be undone: refused without --yes, and nothing changed.
    let (success, _, stderr) = berth_rollout(&["abort", "web-v2", "-n", &tenant]);
    assert!(!success && stderr.contains("cannot be undone") && stderr.contains("--yes"), "{stderr}");
    assert!(!get().await.spec.abort);
    let aborted = ok(&["abort", "web-v2", "-n", &tenant, "--yes"]);
    assert!(aborted.contains("spec.abort false → true"), "{aborted}");
    assert!(get().await.spec.abort);

    let (success, _, stderr) = berth_rollout(&["status", "web-v3", "-n", &tenant]);
    assert!(!success && stderr.contains(&format!("no Rollout web-v3 in namespace {tenant}")), "{stderr}");
}
