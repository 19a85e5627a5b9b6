//! Environments as a rollout leaves them, for the state machine's tests and the
//! rollout bench.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use crate::api::{
    EnvironmentRequest,
    environment_request::{
        DriftState, DriftStatus, EnvironmentRequestStatus, GitOpsStatus, Phase, Promotion, PromotionState, SyncStatus,
    },
};

/// Makes `request` look provisioned (Ready, a commit recorded).
pub fn provision(request: &mut EnvironmentRequest) {
    let status = request.status.get_or_insert_with(EnvironmentRequestStatus::default);
    status.phase = Some(Phase::Ready);
    let gitops = status.gitops.get_or_insert_with(GitOpsStatus::default);
    gitops.commit.get_or_insert_with(|| "c0".to_owned());
}

/// Rollout `checkout-v2`'s promotion (v1 → v2, canary batch 1) at `state`, its
/// commit not recorded yet.
pub fn promotion(state: PromotionState) -> Promotion {
    Promotion {
        rollout: "checkout-v2".into(),
        rollout_uid: String::new(),
        revision: "v2".into(),
        previous_revision: "v1".into(),
        stage: "canary".into(),
        batch: 1,
        state,
        commit: None,
        rendered_digest: None,
        spec_generation: 1,
        since: Time(Timestamp::UNIX_EPOCH),
    }
}

/// `request` once rollout `checkout-v2`'s batch commit `commit` (promoting v1 → v2)
/// is confirmed, Berth recorded the rendering and Argo CD reports `health` at v2.
pub fn promoted(request: &EnvironmentRequest, commit: &str, health: &str) -> EnvironmentRequest {
    let mut r = request.clone();
    let digest = format!("digest-{commit}");
    provision(&mut r);
    let status = r.status.get_or_insert_with(EnvironmentRequestStatus::default);
    status.promotion = Some(Box::new(Promotion {
        commit: Some(commit.into()),
        rendered_digest: Some(digest.clone()),
        spec_generation: r.metadata.generation.unwrap_or(1),
        ..promotion(PromotionState::Committed)
    }));
    if let Some(gitops) = status.gitops.as_mut() {
        gitops.rendered_digest = Some(digest);
        gitops.commit = Some(commit.into());
    }
    let source = r.deployed_source();
    let status = r.status.get_or_insert_with(EnvironmentRequestStatus::default);
    status.sync = Some(Box::new(SyncStatus {
        status: Some("Synced".into()),
        health: Some(health.into()),
        revision: Some("abc".into()),
        compared_to: Some(source),
        ..SyncStatus::default()
    }));
    status.drift =
        Some(DriftStatus { state: DriftState::InSync, checked_at: None, differences: Vec::new(), remediation: None });
    r
}
