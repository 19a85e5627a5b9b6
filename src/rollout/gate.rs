//! Gates (pure): whether each environment of a batch runs the promoted revision
//! healthily, and what the batch's verdicts add up to. Judged from the requests'
//! statuses (watch-fed), never from Argo CD's status from before the change: Argo CD
//! must report having compared the promoted revision ([`crate::argocd::verdict`]).

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use crate::{
    api::{
        EnvironmentRequest,
        environment_request::{DriftState, PromotionState},
        rollout::HealthGate,
    },
    argocd::{self, Verdict},
};

/// What one environment's signals say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Runs the promoted revision, synced, healthy and matching the commit.
    Passed,
    /// Not there yet (Argo CD has not compared the new revision, a sync runs…).
    Waiting(String),
    /// Healthy, and waiting only on a metric that cannot be measured (Prometheus
    /// errs or is not configured, no data yet): held for as long as that lasts, the
    /// progress deadline does not end it (an outage never rolls back).
    Held(String),
    /// Something is wrong; it counts as a failure once it lasts `tolerance`.
    Failing { reason: &'static str, message: String },
    /// Left the rollout: deleted, or a person edited its spec since (their edit wins).
    Superseded(String),
}

/// What the gate needs to know beyond the request.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub rollout: &'a str,
    /// The rollout's uid (empty when unknown): a namesake re-created later is another rollout.
    pub rollout_uid: &'a str,
    /// The batch's commit the environment's promotion must record.
    pub commit: &'a str,
    pub gate: &'a HealthGate,
    pub argocd_installed: bool,
    /// Whether the environment's class lets Argo CD sync on its own.
    pub auto_sync: bool,
}

/// Judges one environment of a committed batch.
pub fn judge(request: Option<&EnvironmentRequest>, cx: Context<'_>) -> Signal {
    let Some(request) = request.filter(|r| r.metadata.deletion_timestamp.is_none()) else {
        return Signal::Superseded("the request was deleted".to_owned());
    };
    let Some(promotion) = request.status.as_ref().and_then(|s| s.promotion.as_ref()) else {
        return Signal::Waiting("the environment is not marked for this batch yet".to_owned());
    };
    let namesake =
        !cx.rollout_uid.is_empty() && !promotion.rollout_uid.is_empty() && promotion.rollout_uid != cx.rollout_uid;
    if promotion.rollout != cx.rollout || namesake {
        return Signal::Superseded(format!("rollout {} took it over", promotion.rollout));
    }
    if request.promotion_in_effect().is_none() {
        return Signal::Superseded("its spec changed after it was promoted; the edit wins".to_owned());
    }
    if promotion.state != PromotionState::Committed || promotion.commit.as_deref() != Some(cx.commit) {
        return Signal::Waiting("the promotion is not confirmed yet".to_owned());
    }
    let status = request.status.as_ref();
    let recorded = status.and_then(|s| s.gitops.as_ref()).and_then(|g| g.rendered_digest.as_deref());
    if recorded.is_none() || recorded != promotion.rendered_digest.as_deref() {
        return Signal::Waiting("Berth has not observed the promoted rendering yet".to_owned());
    }
    let mut synced = false;
    if cx.gate.require_synced {
        if !cx.argocd_installed {
            return Signal::Waiting(
                "Argo CD is not installed, and the gate needs its sync status (requireSynced)".to_owned(),
            );
        }
        if !cx.auto_sync {
            return Signal::Waiting(format!(
                "class {} does not let Argo CD sync automatically: sync the environment's Application",
                request.spec.class
            ));
        }
        let sync = status.and_then(|s| s.sync.as_deref().cloned()).unwrap_or_else(argocd::missing);
        match argocd::verdict(&sync, &request.deployed_source()) {
            Verdict::Synced => synced = true,
            Verdict::Pending(message) => return Signal::Waiting(message),
            Verdict::NotSynced(message) => {
                let failed_sync = sync.operation.as_ref().and_then(|o| o.phase.as_deref());
                if matches!(failed_sync, Some("Failed" | "Error")) {
                    return Signal::Failing { reason: "SyncFailed", message };
                }
                if sync.health.as_deref() == Some("Degraded") {
                    return Signal::Failing { reason: "Degraded", message };
                }
                return Signal::Waiting(message);
            }
        }
    }
    if cx.gate.require_no_drift {
        match status.and_then(|s| s.drift.as_ref()).map(|d| d.state) {
            Some(DriftState::InSync) => {}
            // Synced at the promoted commit and still different: someone changed it.
            Some(DriftState::Drifted) if synced => {
                return Signal::Failing {
                    reason: "Drifted",
                    message: "the live objects differ from the promoted commit".to_owned(),
                };
            }
            Some(DriftState::Drifted) => {
                return Signal::Waiting("the live objects do not match the promoted commit yet".to_owned());
            }
            Some(DriftState::Unknown) | None => {
                return Signal::Waiting("drift has not been checked for the promoted commit".to_owned());
            }
        }
    }
    Signal::Passed
}

/// When a failing signal that began at `since` counts, given `tolerance`.
pub fn counts_at(since: &Time, tolerance: std::time::Duration) -> Timestamp {
    let tolerance = k8s_openapi::jiff::SignedDuration::try_from(tolerance).unwrap_or_default();
    since.0.checked_add(tolerance).unwrap_or(since.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::environment_request::{
        DriftStatus, EnvironmentRequestStatus, GitOpsStatus, Promotion, SyncOperation, SyncSource, SyncStatus,
    };

    const COMMIT: &str = "c0ffee";

    fn promoted(state: PromotionState) -> EnvironmentRequest {
        let mut request = crate::testing::request("production");
        request.metadata.generation = Some(3);
        request.spec.app.revision = "v1".to_owned();
        request.status = Some(EnvironmentRequestStatus {
            gitops: Some(GitOpsStatus { rendered_digest: Some("d2".into()), ..Default::default() }),
            drift: Some(DriftStatus {
                state: DriftState::InSync,
                checked_at: None,
                differences: Vec::new(),
                remediation: None,
            }),
            promotion: Some(Box::new(Promotion {
                rollout: "r".into(),
                rollout_uid: String::new(),
                revision: "v2".into(),
                previous_revision: "v1".into(),
                stage: "production".into(),
                batch: 1,
                state,
                commit: Some(COMMIT.into()),
                rendered_digest: Some("d2".into()),
                spec_generation: 3,
                since: Time(Timestamp::UNIX_EPOCH),
            })),
            ..Default::default()
        });
        request
    }

    fn with_sync(mut request: EnvironmentRequest, revision: &str, status: &str, health: &str) -> EnvironmentRequest {
        let source = SyncSource { target_revision: revision.into(), ..request.deployed_source() };
        let sync = SyncStatus {
            status: Some(status.into()),
            health: Some(health.into()),
            revision: Some("abc".into()),
            compared_to: Some(source),
            operation: None,
            ..SyncStatus::default()
        };
        request.status.as_mut().expect("a status").sync = Some(Box::new(sync));
        request
    }

    fn cx(gate: &HealthGate) -> Context<'_> {
        Context { rollout: "r", rollout_uid: "", commit: COMMIT, gate, argocd_installed: true, auto_sync: true }
    }

    #[test]
    fn the_healthy_status_from_before_the_change_never_passes() {
        let gate = HealthGate::default();
        // Argo CD still reports the old revision Synced and Healthy.
        let stale = with_sync(promoted(PromotionState::Committed), "v1", "Synced", "Healthy");
        assert!(matches!(judge(Some(&stale), cx(&gate)), Signal::Waiting(m) if m.contains("v2")));
        let fresh = with_sync(promoted(PromotionState::Committed), "v2", "Synced", "Healthy");
        assert_eq!(judge(Some(&fresh), cx(&gate)), Signal::Passed);
    }

    #[test]
    fn degraded_or_a_failed_sync_at_the_new_revision_is_failing_and_progressing_is_waiting() {
        let gate = HealthGate::default();
        let degraded = with_sync(promoted(PromotionState::Committed), "v2", "Synced", "Degraded");
        assert!(matches!(judge(Some(&degraded), cx(&gate)), Signal::Failing { reason: "Degraded", .. }));
        let mut failed = with_sync(promoted(PromotionState::Committed), "v2", "OutOfSync", "Healthy");
        let sync = failed.status.as_mut().and_then(|s| s.sync.as_mut()).expect("sync");
        sync.operation = Some(SyncOperation {
            phase: Some("Failed".into()),
            revision: Some("abc".into()),
            message: Some("one or more objects failed to apply".into()),
        });
        assert!(matches!(judge(Some(&failed), cx(&gate)), Signal::Failing { reason: "SyncFailed", .. }));
        let progressing = with_sync(promoted(PromotionState::Committed), "v2", "Synced", "Progressing");
        assert!(matches!(judge(Some(&progressing), cx(&gate)), Signal::Waiting(_)));
    }

    #[test]
    fn it_waits_until_the_promotion_is_confirmed_and_its_rendering_observed() {
        let gate = HealthGate::default();
        let marked = with_sync(promoted(PromotionState::Committing), "v2", "Synced", "Healthy");
        assert!(matches!(judge(Some(&marked), cx(&gate)), Signal::Waiting(_)));
        let mut unobserved = with_sync(promoted(PromotionState::Committed), "v2", "Synced", "Healthy");
        unobserved.status.as_mut().expect("a status").gitops = None;
        assert!(matches!(judge(Some(&unobserved), cx(&gate)), Signal::Waiting(m) if m.contains("rendering")));
        let other_commit = Context { commit: "other", ..cx(&gate) };
        let fresh = with_sync(promoted(PromotionState::Committed), "v2", "Synced", "Healthy");
        assert!(matches!(judge(Some(&fresh), other_commit), Signal::Waiting(_)));
    }

    #[test]
    fn a_spec_edit_or_a_deletion_takes_the_environment_out_of_the_rollout() {
        let gate = HealthGate::default();
        let mut edited = with_sync(promoted(PromotionState::Committed), "v2", "Synced", "Healthy");
        edited.metadata.generation = Some(4);
        assert!(matches!(judge(Some(&edited), cx(&gate)), Signal::Superseded(m) if m.contains("edit wins")));
        assert!(matches!(judge(None, cx(&gate)), Signal::Superseded(_)));
        let mut deleting = with_sync(promoted(PromotionState::Committed), "v2", "Synced", "Healthy");
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(matches!(judge(Some(&deleting), cx(&gate)), Signal::Superseded(_)));
    }

    #[test]
    fn drift_counts_only_once_argo_cd_synced_the_promoted_commit() {
        let gate = HealthGate::default();
        let drifted = |health: &str| {
            let mut r = with_sync(promoted(PromotionState::Committed), "v2", "Synced", health);
            r.status.as_mut().and_then(|s| s.drift.as_mut()).expect("drift").state = DriftState::Drifted;
            r
        };
        assert!(matches!(judge(Some(&drifted("Healthy")), cx(&gate)), Signal::Failing { reason: "Drifted", .. }));
        let no_sync = HealthGate { require_synced: false, ..HealthGate::default() };
        assert!(matches!(judge(Some(&drifted("Healthy")), cx(&no_sync)), Signal::Waiting(_)));
        let no_drift = HealthGate { require_no_drift: false, ..HealthGate::default() };
        assert_eq!(judge(Some(&drifted("Healthy")), cx(&no_drift)), Signal::Passed);
    }

    #[test]
    fn without_argo_cd_or_automated_sync_the_gate_says_why_it_waits() {
        let gate = HealthGate::default();
        let fresh = with_sync(promoted(PromotionState::Committed), "v2", "Synced", "Healthy");
        let absent = Context { argocd_installed: false, ..cx(&gate) };
        assert!(matches!(judge(Some(&fresh), absent), Signal::Waiting(m) if m.contains("not installed")));
        let manual = Context { auto_sync: false, ..cx(&gate) };
        assert!(matches!(judge(Some(&fresh), manual), Signal::Waiting(m) if m.contains("sync automatically")));
    }
}
