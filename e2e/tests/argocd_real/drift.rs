//! A live edit of the quota: Berth reports it; with `Remediate` Argo CD puts it right
//! (without selfHeal), with `Report` it stays.

use berth::api::{
    EnvironmentRequest,
    conditions::{is_true, types},
    environment_request::DriftState,
};
use kube::Api;

use super::*;

/// Sets `pods` of the environment's quota by hand.
async fn edit_quota(env_ns: &str, pods: &str) {
    let patch = format!(r#"{{"spec":{{"hard":{{"pods":"{pods}"}}}}}}"#);
    let args = ["patch", "resourcequota", "berth-quota", "-n", env_ns, "--type", "merge", "-p", &patch];
    let out = cluster().kubectl("admin", &args, None).await;
    assert!(out.success, "{}", out.stderr);
}

/// The time and message of each event of `reason` about the request.
async fn notes(tenant: &str, name: &str, reason: &str) -> Vec<String> {
    let events = events_about(tenant, &format!("environmentrequest/{name}")).await;
    events.iter().filter(|e| e["reason"] == reason).map(|e| format!("{} {}", e["eventTime"], e["message"])).collect()
}

/// How many events of `reason` are about the request.
async fn events(tenant: &str, name: &str, reason: &str) -> usize {
    notes(tenant, name, reason).await.len()
}

#[tokio::test]
async fn a_live_edit_is_put_right_by_argo_cd_with_remediate_and_stays_with_report() {
    let _turn = turn().await;
    let (fixed, fixed_status) = provisioned("drift: {mode: Remediate}", "fixed").await;
    let (kept, kept_status) = provisioned("drift: {mode: Report}", "kept").await;
    let (fixed_ns, kept_ns) = (fixed_status.namespace.unwrap_or_default(), kept_status.namespace.unwrap_or_default());
    let quota = get("resourcequota", Some(&fixed_ns), "berth-quota").await.unwrap_or_default();
    assert_eq!(quota["spec"]["hard"]["pods"], "10", "the committed quota: {quota}");
    let drift = |tenant: String, name: &'static str| async move {
        let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
        api.get_opt(name).await.ok().flatten().and_then(|r| r.status)
    };
    // Ready needs Argo CD's Synced and Healthy; Berth compares the live objects on
    // their own watch events. The Drifted warning marks in sync → drifted, so edit
    // only once both environments were seen in sync (else the edit can come first).
    for (tenant, name) in [(&fixed, "fixed"), (&kept, "kept")] {
        wait_for(ARGOCD_PATIENCE, &format!("{name} in sync before the edit"), || async {
            let status = drift(tenant.clone(), name).await?;
            is_true(&status.conditions, types::IN_SYNC).then_some(())
        })
        .await;
    }
    edit_quota(&fixed_ns, "99").await;
    edit_quota(&kept_ns, "99").await;

    // Remediate: reported, then Argo CD syncs the quota back, and it is in sync again.
    wait_for(ARGOCD_PATIENCE, "the Remediated event", || async {
        (events(&fixed, "fixed", "Remediated").await >= 1).then_some(())
    })
    .await;
    let remediated = notes(&fixed, "fixed", "Remediated").await;
    assert_eq!(remediated.len(), 1, "one remediation: {remediated:#?}");
    wait_for(ARGOCD_PATIENCE, "Argo CD to put the quota right", || async {
        let quota = get("resourcequota", Some(&fixed_ns), "berth-quota").await?;
        (quota["spec"]["hard"]["pods"] == "10").then_some(())
    })
    .await;
    wait_for(ARGOCD_PATIENCE, "the remediated environment in sync", || async {
        let status = drift(fixed.clone(), "fixed").await?;
        is_true(&status.conditions, types::IN_SYNC).then_some(())
    })
    .await;
    let drifted = notes(&fixed, "fixed", "Drifted").await;
    assert_eq!(drifted.len(), 1, "one Drifted warning: {drifted:#?}\n{:#?}", drift(fixed.clone(), "fixed").await);

    // Report: the Warning, and the edit stays. (Printed for a failure's output.)
    println!("kept, after the remediation: {:#?}", drift(kept.clone(), "kept").await);
    wait_for(ARGOCD_PATIENCE, "the Drifted warning", || async {
        (events(&kept, "kept", "Drifted").await >= 1).then_some(())
    })
    .await;
    let status = drift(kept.clone(), "kept").await.unwrap_or_default();
    let drifted = notes(&kept, "kept", "Drifted").await;
    assert_eq!(drifted.len(), 1, "one Drifted warning: {drifted:#?}\n{status:#?}");
    assert_eq!(status.drift.map(|d| (d.state, d.remediation)), Some((DriftState::Drifted, None)));
    let quota = get("resourcequota", Some(&kept_ns), "berth-quota").await.unwrap_or_default();
    assert_eq!(quota["spec"]["hard"]["pods"], "99", "Report must leave the edit: {quota}");
    assert_eq!(events(&kept, "kept", "Remediated").await, 0);

    delete_and_see_it_pruned(&fixed, "fixed", &fixed_ns).await;
    delete_and_see_it_pruned(&kept, "kept", &kept_ns).await;
}
