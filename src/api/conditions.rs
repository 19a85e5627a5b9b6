//! Standard status conditions (KEP-1623 shape) and the one place that sets them.
//!
//! Every Berth status carries `conditions`: a list-map keyed by `type`, each with
//! `status`, `reason`, `message`, `lastTransitionTime` and `observedGeneration`.
//! [`set_condition`] keeps `lastTransitionTime` when the status does not change, so
//! reconciling the same state twice writes the same status (no reconcile spin).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types Berth sets. Kept in one place so controllers, tests and docs agree.
pub mod types {
    /// The object is fully realised and usable.
    pub const READY: &str = "Ready";
    /// The request holds a valid approval (or its class needs none).
    pub const APPROVED: &str = "Approved";
    /// The environment's manifests are committed to the GitOps repository.
    pub const COMMITTED: &str = "Committed";
    /// Argo CD reports the environment synced and healthy.
    pub const SYNCED: &str = "Synced";
    /// The live objects match what Berth committed.
    pub const IN_SYNC: &str = "InSync";
    /// The tenant's environments fit its budget.
    pub const WITHIN_BUDGET: &str = "WithinBudget";
    /// The object's spec is consistent with the objects it refers to.
    pub const VALID: &str = "Valid";
    /// A class's environments are rendered from its current generation.
    pub const RENDERED: &str = "Rendered";
}

/// Reasons Berth gives in conditions and events (CamelCase, machine-readable).
pub mod reasons {
    pub const NOT_REQUIRED: &str = "NotRequired";
    pub const APPROVAL_REQUIRED: &str = "ApprovalRequired";
    pub const APPROVAL_REJECTED: &str = "ApprovalRejected";
    pub const CREATOR_UNKNOWN: &str = "CreatorUnknown";
    pub const APPROVED: &str = "Approved";
    pub const COMMITTED: &str = "Committed";
    pub const NOT_COMMITTED: &str = "NotCommitted";
    pub const CLASS_NOT_FOUND: &str = "ClassNotFound";
    pub const TENANT_NOT_FOUND: &str = "TenantNotFound";
    pub const NOT_TENANT_NAMESPACE: &str = "NotTenantNamespace";
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    pub const OVER_BUDGET: &str = "OverBudget";
    pub const WITHIN_BUDGET: &str = "WithinBudget";
    pub const EXPIRED: &str = "Expired";
    pub const SYNCED: &str = "Synced";
    pub const NOT_SYNCED: &str = "NotSynced";
    /// Argo CD's report is not yet about what Berth rendered for the current spec.
    pub const SYNC_PENDING: &str = "SyncPending";
    pub const ARGOCD_NOT_INSTALLED: &str = "ArgoCDNotInstalled";
    pub const READY: &str = "Ready";
    pub const PROVISIONING: &str = "Provisioning";
    pub const NAMESPACE_READY: &str = "NamespaceReady";
    /// The apiserver refused (or did not answer) the tenant's request namespace.
    pub const NAMESPACE_FAILED: &str = "NamespaceFailed";
    /// The tenant's request namespace is being deleted; nothing can be created in it.
    pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
    /// The apiserver refused (or did not answer) a Role or RoleBinding of the tenant.
    pub const RBAC_FAILED: &str = "RBACFailed";
    /// An older tenant has the same request namespace and keeps it.
    pub const NAMESPACE_CONTESTED: &str = "NamespaceContested";
    pub const RENDERED: &str = "Rendered";
    /// The GitOps branch is busy: others keep pushing first, and the change waits its turn.
    pub const BRANCH_BUSY: &str = "BranchBusy";
    /// A class's environments could not be re-rendered and committed.
    pub const RERENDER_FAILED: &str = "RerenderFailed";
    /// A class change waits for a freeze window (the class's or the cluster's) to end.
    pub const FROZEN: &str = "Frozen";
    pub const VALID: &str = "Valid";
    pub const INVALID: &str = "Invalid";
    pub const IN_SYNC: &str = "InSync";
    pub const DRIFTED: &str = "Drifted";
    pub const DRIFT_UNKNOWN: &str = "DriftUnknown";
    /// Berth asked Argo CD to sync drifted objects back (class `drift.mode: Remediate`).
    pub const REMEDIATED: &str = "Remediated";
    /// A deleted request's folder is out of git; Argo CD has yet to prune its environment.
    pub const AWAITING_PRUNE: &str = "AwaitingPrune";
    /// Argo CD did not prune a deleted environment in time; the request went anyway.
    pub const PRUNE_TIMED_OUT: &str = "PruneTimedOut";
}

/// The three statuses a condition can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// What a reconciler observed about one condition type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation<'a> {
    pub type_: &'a str,
    pub status: ConditionStatus,
    /// CamelCase reason, machine-readable.
    pub reason: &'a str,
    /// A sentence a person can act on.
    pub message: String,
    /// `metadata.generation` the observation was made against.
    pub observed_generation: Option<i64>,
}

/// Records `observation` in `conditions`, replacing any condition of the same type.
///
/// `lastTransitionTime` becomes `now` only when the status changes (or the type is
/// new); reason, message and generation always take the new values. Returns whether
/// anything changed, so callers can skip a status write.
pub fn set_condition(conditions: &mut Vec<Condition>, observation: Observation<'_>, now: &Time) -> bool {
    let status = observation.status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == observation.type_) {
        Some(existing) => {
            let before = existing.clone();
            if existing.status != status {
                existing.last_transition_time = now.clone();
                existing.status = status.to_owned();
            }
            existing.reason = observation.reason.to_owned();
            existing.message = observation.message;
            existing.observed_generation = observation.observed_generation;
            *existing != before
        }
        None => {
            conditions.push(Condition {
                type_: observation.type_.to_owned(),
                status: status.to_owned(),
                reason: observation.reason.to_owned(),
                message: observation.message,
                observed_generation: observation.observed_generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    fn ready(status: ConditionStatus, reason: &'static str, generation: i64) -> Observation<'static> {
        Observation {
            type_: types::READY,
            status,
            reason,
            message: format!("{reason} at generation {generation}"),
            observed_generation: Some(generation),
        }
    }

    #[test]
    fn adds_a_new_condition_with_the_current_time() {
        let mut conditions = Vec::new();
        assert!(set_condition(&mut conditions, ready(ConditionStatus::False, "Provisioning", 1), &at(10)));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, "Ready");
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].reason, "Provisioning");
        assert_eq!(conditions[0].observed_generation, Some(1));
        assert_eq!(conditions[0].last_transition_time, at(10));
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, ready(ConditionStatus::False, "Provisioning", 1), &at(10));
        let changed = set_condition(&mut conditions, ready(ConditionStatus::False, "Committing", 2), &at(20));
        assert!(changed, "reason and generation changed");
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].reason, "Committing");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn moves_transition_time_when_status_changes() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, ready(ConditionStatus::False, "Provisioning", 1), &at(10));
        set_condition(&mut conditions, ready(ConditionStatus::True, "Ready", 1), &at(30));
        assert_eq!(conditions.len(), 1, "same type is replaced, not appended");
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].last_transition_time, at(30));
    }

    #[test]
    fn reports_no_change_for_an_identical_observation() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, ready(ConditionStatus::True, "Ready", 3), &at(10));
        let snapshot = conditions.clone();
        assert!(!set_condition(&mut conditions, ready(ConditionStatus::True, "Ready", 3), &at(99)));
        assert_eq!(conditions, snapshot);
    }

    #[test]
    fn keeps_other_types_untouched() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, ready(ConditionStatus::True, "Ready", 1), &at(10));
        let approved = Observation {
            type_: types::APPROVED,
            status: ConditionStatus::True,
            reason: "NotRequired",
            message: "the class needs no approval".into(),
            observed_generation: Some(1),
        };
        set_condition(&mut conditions, approved, &at(20));
        assert_eq!(conditions.len(), 2);
        assert!(is_true(&conditions, types::READY));
        assert!(is_true(&conditions, types::APPROVED));
        assert!(!is_true(&conditions, types::SYNCED));
        assert_eq!(find(&conditions, types::READY).map(|c| &c.last_transition_time), Some(&at(10)));
    }

    #[test]
    fn unknown_is_not_true() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, ready(ConditionStatus::Unknown, "Pending", 1), &at(1));
        assert!(!is_true(&conditions, types::READY));
        assert_eq!(ConditionStatus::from(true), ConditionStatus::True);
        assert_eq!(ConditionStatus::from(false), ConditionStatus::False);
    }
}
