//! The status an EnvironmentRequest should have, given what the reconcile found
//! (pure: no I/O, so every lifecycle step is unit-tested).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{
        conditions::{ConditionStatus, Observation, reasons, set_condition, types},
        environment_request::{
            Difference, DriftState, DriftStatus, EnvironmentRequestStatus, GitOpsStatus, Phase, SyncSource, SyncStatus,
        },
    },
    argocd::{self, Verdict},
    policy::request::Denial,
};

/// What the reconcile found, in lifecycle order.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// Policy says no (tenancy, class, approval, budget, …): the shared rules' verdict.
    Denied(Denial),
    /// Rendered and committed (boxed: it carries much more than the other findings).
    Committed(Box<Committed>),
    /// Its lifetime ended and its folder is gone from git.
    Expired { path: String },
    /// Rendered, but the commit waits on a busy GitOps branch (others keep pushing first).
    Waiting { message: String },
}

/// Facts about a committed environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub namespace: String,
    pub commit: String,
    pub path: String,
    /// SHA-256 (hex) of the committed files.
    pub digest: String,
    pub monthly_cost_usd: u32,
    pub expires_at: Option<Time>,
    /// Who approved it, when its class needs an approval.
    pub approved_by: Option<String>,
    /// The Argo CD Application's sync and health; `None` when Argo CD is not installed.
    pub sync: Option<SyncStatus>,
    /// The source Berth rendered into the Application for the current spec: Argo CD's
    /// report counts only once it is about this source.
    pub source: SyncSource,
    /// Live objects compared with the commit; `None` when not compared.
    pub drift: Option<DriftStatus>,
}

impl Committed {
    /// Argo CD's verdict on the rendered source; `None` when Argo CD is not installed.
    fn verdict(&self) -> Option<Verdict> {
        self.sync.as_ref().map(|sync| argocd::verdict(sync, &self.source))
    }

    /// Whether Argo CD has yet to sync this commit: anything but a Synced report about
    /// the rendered source (Synced but Degraded runs it, unhealthy).
    fn pending(&self, verdict: &Verdict) -> bool {
        let synced = self.sync.as_ref().is_some_and(|s| s.status.as_deref() == Some("Synced"));
        match verdict {
            Verdict::Synced => false,
            Verdict::NotSynced(_) => !synced,
            Verdict::Pending(_) => true,
        }
    }

    /// `why`, led by what runs and which commit it waits for: "Argo CD runs
    /// deploy@v1 (0a1b2c3d), waiting for commit 4e5f6a7b: …".
    fn live_and_pending(&self, why: &str) -> String {
        let short = |commit: &str| commit.chars().take(8).collect::<String>();
        let live = self.sync.as_ref().and_then(|s| s.live.as_ref()).map_or_else(
            || "nothing yet".to_owned(),
            |live| {
                let source = &live.source;
                format!("{}@{} ({})", source.path.trim_matches('/'), source.target_revision, short(&live.revision))
            },
        );
        format!("Argo CD runs {live}, waiting for commit {}: {why}", short(&self.commit))
    }
}

/// The new status: phase, conditions (transition times kept when unchanged) and
/// the fields the finding carries. Fields it does not speak about are kept.
pub fn next_status(
    old: &EnvironmentRequestStatus,
    generation: Option<i64>,
    finding: &Finding,
    now: &Time,
) -> EnvironmentRequestStatus {
    let mut status = old.clone();
    status.observed_generation = generation;
    let mut set = |type_: &'static str, state: ConditionStatus, reason: &'static str, message: String| {
        set_condition(
            &mut status.conditions,
            Observation { type_, status: state, reason, message, observed_generation: generation },
            now,
        );
    };
    use ConditionStatus::{False, True, Unknown};
    let (phase, ready_reason, ready_message) = match finding {
        Finding::Waiting { message } => return waiting(old, generation, message, now),
        Finding::Denied(denial) => {
            let message = denial.to_string();
            let phase = if denial.is_about_approval() {
                set(types::APPROVED, False, denial.reason(), message.clone());
                Phase::AwaitingApproval
            } else {
                if matches!(denial, Denial::OverBudget(_)) {
                    set(types::COMMITTED, False, reasons::OVER_BUDGET, message.clone());
                }
                Phase::Failed
            };
            (phase, denial.reason(), message)
        }
        Finding::Committed(committed) => {
            status.namespace = Some(committed.namespace.clone());
            status.gitops = Some(GitOpsStatus {
                commit: Some(committed.commit.clone()),
                path: Some(committed.path.clone()),
                rendered_digest: Some(committed.digest.clone()),
            });
            status.estimated_monthly_cost_usd = Some(committed.monthly_cost_usd);
            status.expires_at = committed.expires_at.clone();
            status.sync = committed.sync.clone().map(Box::new);
            let verdict = committed.verdict();
            let pending = verdict.as_ref().is_some_and(|verdict| committed.pending(verdict));
            if let Some(sync) = status.sync.as_mut() {
                sync.pending_commit = pending.then(|| committed.commit.clone());
            }
            if let Some(approver) = &committed.approved_by {
                set(types::APPROVED, True, reasons::APPROVED, format!("approved by {approver}"));
            }
            set(
                types::COMMITTED,
                True,
                reasons::COMMITTED,
                format!("{} holds commit {}", committed.path, committed.commit),
            );
            if let Some(drift) = &committed.drift {
                status.drift = Some(drift.clone());
                let (state, reason, message) = match drift.state {
                    DriftState::InSync => (True, reasons::IN_SYNC, "live objects match the commit".to_owned()),
                    DriftState::Drifted => {
                        let fields: Vec<String> = drift.differences.iter().take(3).map(describe_difference).collect();
                        let count = drift.differences.len();
                        if committed.sync.as_ref().is_some_and(|sync| argocd::applying(sync, &committed.source)) {
                            // The change on its way (a new revision Argo CD has not
                            // looked at yet), not drift: no Warning, no remediation.
                            let message = format!(
                                "{count} difference(s) from commit {}, which Argo CD has not applied yet: {}",
                                committed.commit,
                                fields.join(", ")
                            );
                            (Unknown, reasons::SYNC_PENDING, message)
                        } else {
                            let message = format!("{count} difference(s) from the commit: {}", fields.join(", "));
                            (False, reasons::DRIFTED, message)
                        }
                    }
                    DriftState::Unknown => {
                        (Unknown, reasons::DRIFT_UNKNOWN, "live objects could not be compared".to_owned())
                    }
                };
                set(types::IN_SYNC, state, reason, message);
            }
            match verdict {
                None => {
                    let message = "Argo CD's Application CRD is not installed; nothing reports sync".to_owned();
                    set(types::SYNCED, Unknown, reasons::ARGOCD_NOT_INSTALLED, message);
                    (Phase::Ready, reasons::READY, "committed; Argo CD is not installed to report sync".to_owned())
                }
                Some(Verdict::Synced) => {
                    let revision = committed.sync.as_ref().and_then(|s| s.revision.as_deref()).unwrap_or("?");
                    let message = format!(
                        "Argo CD reports Synced and Healthy at revision {revision} of {}@{}",
                        committed.source.path, committed.source.target_revision
                    );
                    set(types::SYNCED, True, reasons::SYNCED, message);
                    (Phase::Ready, reasons::READY, "committed, synced and healthy".to_owned())
                }
                Some(Verdict::Pending(message)) => {
                    let message = committed.live_and_pending(&message);
                    set(types::SYNCED, False, reasons::SYNC_PENDING, message.clone());
                    (Phase::Provisioning, reasons::PROVISIONING, message)
                }
                Some(Verdict::NotSynced(message)) => {
                    let message = if pending { committed.live_and_pending(&message) } else { message };
                    set(types::SYNCED, False, reasons::NOT_SYNCED, message.clone());
                    (Phase::Provisioning, reasons::PROVISIONING, message)
                }
            }
        }
        Finding::Expired { path } => {
            status.gitops = Some(GitOpsStatus { commit: None, path: Some(path.clone()), rendered_digest: None });
            // Nothing is deployed any more: no sync or drift to report.
            status.sync = None;
            status.drift = None;
            set(
                types::COMMITTED,
                False,
                reasons::EXPIRED,
                format!("{path} was removed from git when the environment expired"),
            );
            (Phase::Expired, reasons::EXPIRED, "the environment's lifetime ended".to_owned())
        }
    };
    let approval_decided = match finding {
        Finding::Denied(denial) => denial.is_about_approval(),
        Finding::Committed(committed) => committed.approved_by.is_some(),
        Finding::Expired { .. } | Finding::Waiting { .. } => false,
    };
    if !approval_decided {
        set(types::APPROVED, True, reasons::NOT_REQUIRED, "no approval needed, or a valid one is present".to_owned());
    }
    set(types::READY, (phase == Phase::Ready).into(), ready_reason, ready_message);
    if phase == Phase::Expired {
        status.conditions.retain(|c| c.type_ != types::SYNCED && c.type_ != types::IN_SYNC);
    }
    status.phase = Some(phase);
    status
}

/// One difference as the `InSync` message names it: `ResourceQuota/ns/q spec.hard.pods`,
/// or `Namespace/ns missing` for an object that is not live at all.
fn describe_difference(difference: &Difference) -> String {
    if difference.field == crate::drift::MISSING_OBJECT_FIELD {
        format!("{} missing", difference.resource)
    } else {
        format!("{} {}", difference.resource, difference.field)
    }
}

/// A commit waiting on a busy branch: `Committed` says so, a request that never had a
/// phase shows `Provisioning`, and nothing else moves (`observedGeneration` included:
/// this generation is not in git yet).
fn waiting(
    old: &EnvironmentRequestStatus,
    generation: Option<i64>,
    message: &str,
    now: &Time,
) -> EnvironmentRequestStatus {
    let mut status = old.clone();
    let observation = |type_, reason| Observation {
        type_,
        status: ConditionStatus::False,
        reason,
        message: message.to_owned(),
        observed_generation: generation,
    };
    set_condition(&mut status.conditions, observation(types::COMMITTED, reasons::BRANCH_BUSY), now);
    if status.phase.is_none() {
        status.phase = Some(Phase::Provisioning);
        set_condition(&mut status.conditions, observation(types::READY, reasons::BRANCH_BUSY), now);
    }
    status
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::api::conditions::{find, is_true};

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("valid"))
    }

    fn source() -> SyncSource {
        SyncSource {
            repo_url: "https://example.com/web.git".into(),
            path: "deploy".into(),
            target_revision: "v1".into(),
        }
    }

    fn committed(sync: Option<(&str, &str)>) -> Finding {
        Finding::Committed(Box::new(Committed {
            namespace: "payments-web-1234abcd".into(),
            commit: "abc123".into(),
            path: "clusters/in-cluster/tenants/payments/web".into(),
            digest: "d1".into(),
            monthly_cost_usd: 40,
            expires_at: Some(at(1000)),
            approved_by: None,
            // Argo CD's report is about the source Berth rendered (see crate::argocd for the rest).
            sync: sync.map(|(s, h)| SyncStatus {
                status: Some(s.into()),
                health: Some(h.into()),
                compared_to: Some(source()),
                ..SyncStatus::default()
            }),
            source: source(),
            drift: None,
        }))
    }

    #[test]
    fn committed_without_argocd_is_ready_and_says_why_sync_is_unknown() {
        let status = next_status(&Default::default(), Some(1), &committed(None), &at(10));
        assert_eq!(status.phase, Some(Phase::Ready));
        assert!(is_true(&status.conditions, types::READY));
        assert!(is_true(&status.conditions, types::COMMITTED));
        assert_eq!(
            find(&status.conditions, types::SYNCED).map(|c| c.reason.as_str()),
            Some(reasons::ARGOCD_NOT_INSTALLED)
        );
        assert_eq!(status.gitops.as_ref().and_then(|g| g.commit.as_deref()), Some("abc123"));
        assert_eq!(status.gitops.as_ref().and_then(|g| g.rendered_digest.as_deref()), Some("d1"));
        assert_eq!(status.estimated_monthly_cost_usd, Some(40));
        assert_eq!(status.expires_at, Some(at(1000)));
    }

    #[test]
    fn committed_but_not_synced_is_provisioning_until_argocd_reports_healthy() {
        let provisioning =
            next_status(&Default::default(), Some(1), &committed(Some(("OutOfSync", "Missing"))), &at(10));
        assert_eq!(provisioning.phase, Some(Phase::Provisioning));
        assert!(!is_true(&provisioning.conditions, types::READY));
        let ready = next_status(&provisioning, Some(1), &committed(Some(("Synced", "Healthy"))), &at(20));
        assert_eq!(ready.phase, Some(Phase::Ready));
        assert_eq!(find(&ready.conditions, types::READY).map(|c| c.last_transition_time.clone()), Some(at(20)));
        assert_eq!(
            find(&ready.conditions, types::COMMITTED).map(|c| c.last_transition_time.clone()),
            Some(at(10)),
            "Committed did not change, so its transition time stays"
        );
    }

    #[test]
    fn differences_from_a_commit_argo_cd_has_not_applied_yet_are_not_drift() {
        use crate::api::environment_request::{Difference, DriftState, DriftStatus};
        let Finding::Committed(mut facts) = committed(Some(("Synced", "Healthy"))) else { unreachable!() };
        facts.drift = Some(DriftStatus {
            state: DriftState::Drifted,
            checked_at: None,
            differences: vec![Difference {
                resource: "Application/argocd/web".into(),
                field: "spec.source.targetRevision".into(),
                desired: Some("\"v1\"".into()),
                live: Some("\"v0\"".into()),
            }],
            remediation: None,
        });
        let in_sync = || {
            let mut s = EnvironmentRequestStatus::default();
            let observation = Observation {
                type_: types::IN_SYNC,
                status: ConditionStatus::True,
                reason: reasons::IN_SYNC,
                message: String::new(),
                observed_generation: Some(1),
            };
            set_condition(&mut s.conditions, observation, &at(0));
            s
        };
        // A promotion on its way: Argo CD still reports the older source (v0; v1 is rendered).
        let mut applying = facts.clone();
        applying.sync.as_mut().expect("sync").compared_to =
            Some(SyncSource { target_revision: "v0".into(), ..source() });
        let status = next_status(&in_sync(), Some(1), &Finding::Committed(applying), &at(10));
        let condition = find(&status.conditions, types::IN_SYNC).expect("InSync");
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("Unknown", reasons::SYNC_PENDING));
        assert!(condition.message.contains("has not applied yet"), "{}", condition.message);
        // An Application Argo CD never compared is on its way to nothing: drift.
        let mut never_compared = facts.clone();
        never_compared.sync.as_mut().expect("sync").compared_to = None;
        let status = next_status(&in_sync(), Some(1), &Finding::Committed(never_compared), &at(15));
        let condition = find(&status.conditions, types::IN_SYNC).expect("InSync");
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", reasons::DRIFTED));
        // Applied, and still different: that is drift.
        let status = next_status(&in_sync(), Some(1), &Finding::Committed(facts), &at(20));
        let condition = find(&status.conditions, types::IN_SYNC).expect("InSync");
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", reasons::DRIFTED));
    }

    #[test]
    fn while_argo_cd_runs_an_older_source_status_names_what_runs_and_the_commit_it_waits_for() {
        use crate::api::environment_request::LiveRevision;
        let Finding::Committed(mut facts) = committed(Some(("Synced", "Healthy"))) else { unreachable!() };
        let old_source = SyncSource { target_revision: "v0".into(), ..source() };
        let sync = facts.sync.as_mut().expect("sync");
        sync.compared_to = Some(old_source.clone());
        sync.live = Some(LiveRevision { source: old_source, revision: "0123456789ab".into(), deployed_at: None });
        let pending = next_status(&Default::default(), Some(2), &Finding::Committed(facts.clone()), &at(10));
        assert_eq!(pending.phase, Some(Phase::Provisioning));
        assert_eq!(pending.sync.as_ref().and_then(|s| s.pending_commit.as_deref()), Some("abc123"));
        let synced = find(&pending.conditions, types::SYNCED).expect("Synced");
        assert!(
            synced.message.starts_with("Argo CD runs deploy@v0 (01234567), waiting for commit abc123: "),
            "{}",
            synced.message
        );
        // Argo CD synced the rendered source: nothing pending, and the message says so.
        facts.sync.as_mut().expect("sync").compared_to = Some(source());
        let ready = next_status(&pending, Some(2), &Finding::Committed(facts.clone()), &at(20));
        assert_eq!(ready.phase, Some(Phase::Ready));
        assert_eq!(ready.sync.as_ref().and_then(|s| s.pending_commit.as_deref()), None);
        // Synced but Degraded runs the commit: not pending, and no "waiting for" in the message.
        facts.sync.as_mut().expect("sync").health = Some("Degraded".into());
        let degraded = next_status(&ready, Some(2), &Finding::Committed(facts), &at(30));
        assert_eq!(degraded.sync.as_ref().and_then(|s| s.pending_commit.as_deref()), None);
        assert!(find(&degraded.conditions, types::SYNCED).is_some_and(|c| !c.message.contains("waiting for")));
    }

    #[test]
    fn drift_sets_in_sync_and_lists_the_first_fields() {
        use crate::api::environment_request::Difference;
        let Finding::Committed(mut facts) = committed(None) else { unreachable!("committed() builds Committed") };
        facts.drift = Some(DriftStatus {
            state: DriftState::Drifted,
            checked_at: Some(at(5)),
            differences: vec![Difference {
                resource: "ResourceQuota/ns/berth-quota".into(),
                field: "spec.hard.pods".into(),
                desired: Some("\"10\"".into()),
                live: Some("\"99\"".into()),
            }],
            remediation: None,
        });
        let status = next_status(&Default::default(), Some(1), &Finding::Committed(facts.clone()), &at(10));
        let in_sync = find(&status.conditions, types::IN_SYNC).expect("InSync");
        assert_eq!((in_sync.status.as_str(), in_sync.reason.as_str()), ("False", reasons::DRIFTED));
        assert!(in_sync.message.contains("ResourceQuota/ns/berth-quota spec.hard.pods"), "{}", in_sync.message);
        assert!(is_true(&status.conditions, types::READY), "drift is reported, it does not unready the environment");

        let missing = Difference {
            resource: "Namespace/ns".into(),
            field: crate::drift::MISSING_OBJECT_FIELD.into(),
            desired: None,
            live: None,
        };
        let mut with_missing = facts.clone();
        with_missing.drift.as_mut().expect("drift set above").differences.insert(0, missing);
        let status = next_status(&status, Some(1), &Finding::Committed(with_missing), &at(12));
        let in_sync = find(&status.conditions, types::IN_SYNC).expect("InSync");
        assert!(
            in_sync.message.ends_with(": Namespace/ns missing, ResourceQuota/ns/berth-quota spec.hard.pods"),
            "{}",
            in_sync.message
        );

        facts.drift = Some(DriftStatus {
            state: DriftState::InSync,
            checked_at: Some(at(20)),
            differences: vec![],
            remediation: None,
        });
        let fixed = next_status(&status, Some(1), &Finding::Committed(facts), &at(20));
        assert!(is_true(&fixed.conditions, types::IN_SYNC));
        assert_eq!(fixed.drift.map(|d| d.state), Some(DriftState::InSync));
    }

    #[test]
    fn the_same_finding_twice_gives_the_same_status() {
        let first = next_status(&Default::default(), Some(2), &committed(None), &at(10));
        assert_eq!(next_status(&first, Some(2), &committed(None), &at(99)), first);
    }

    #[test]
    fn awaiting_approval_names_the_groups_and_the_command() {
        let finding = Finding::Denied(Denial::ApprovalMissing {
            class: "production".into(),
            groups: vec!["platform-approvers".into()],
            namespace: "payments".into(),
            name: "web".into(),
        });
        let status = next_status(&Default::default(), Some(1), &finding, &at(1));
        assert_eq!(status.phase, Some(Phase::AwaitingApproval));
        let approved = find(&status.conditions, types::APPROVED).expect("Approved condition");
        assert_eq!(approved.status, "False");
        assert!(approved.message.contains("platform-approvers") && approved.message.contains("berth approve"));
        assert!(status.gitops.is_none(), "nothing was committed");
    }

    #[test]
    fn over_budget_fails_with_the_budget_message() {
        let exceeded = crate::policy::budget::BudgetExceeded::Cost {
            tenant: "payments".into(),
            total: 1200,
            adding: 400,
            budget: 1000,
        };
        let finding = Finding::Denied(Denial::OverBudget(exceeded));
        let status = next_status(&Default::default(), Some(1), &finding, &at(1));
        assert_eq!(status.phase, Some(Phase::Failed));
        let ready = find(&status.conditions, types::READY).expect("Ready");
        assert_eq!((ready.reason.as_str(), ready.status.as_str()), (reasons::OVER_BUDGET, "False"));
        assert!(ready.message.contains("$1200"));
    }

    #[test]
    fn expiry_keeps_the_path_and_drops_the_commit() {
        let ready = next_status(&Default::default(), Some(1), &committed(None), &at(10));
        let expired = next_status(&ready, Some(1), &Finding::Expired { path: "clusters/x".into() }, &at(2000));
        assert_eq!(expired.phase, Some(Phase::Expired));
        assert_eq!(
            expired.gitops,
            Some(GitOpsStatus { commit: None, path: Some("clusters/x".into()), rendered_digest: None })
        );
        assert!(!is_true(&expired.conditions, types::COMMITTED));
        assert!(!is_true(&expired.conditions, types::READY));
    }

    #[test]
    fn missing_class_and_wrong_namespace_are_failures_a_person_can_act_on() {
        let missing = Finding::Denied(Denial::ClassMissing { class: "gold".into() });
        let missing = next_status(&Default::default(), None, &missing, &at(1));
        assert_eq!(missing.phase, Some(Phase::Failed));
        assert!(find(&missing.conditions, types::READY).is_some_and(|c| c.message.contains("\"gold\" does not exist")));
        let finding = Finding::Denied(Denial::NotTenantNamespace {
            tenant: "payments".into(),
            namespace: "default".into(),
            expected: "payments".into(),
        });
        let wrong = next_status(&Default::default(), None, &finding, &at(1));
        assert_eq!(
            find(&wrong.conditions, types::READY).map(|c| c.reason.as_str()),
            Some(reasons::NOT_TENANT_NAMESPACE)
        );
    }

    #[test]
    fn a_commit_waiting_on_a_busy_branch_says_so_and_moves_nothing_else() {
        let now = Time(Timestamp::from_second(100).expect("time"));
        let waiting = Finding::Waiting { message: "branch busy: 3 changes waiting".to_owned() };
        // A new request: Provisioning, not Ready, and why.
        let new = next_status(&EnvironmentRequestStatus::default(), Some(1), &waiting, &now);
        assert_eq!(new.phase, Some(Phase::Provisioning));
        assert_eq!(new.observed_generation, None, "generation 1 is not in git yet");
        for type_ in [types::COMMITTED, types::READY] {
            let condition = find(&new.conditions, type_).expect("condition");
            assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", reasons::BRANCH_BUSY));
            assert_eq!(condition.message, "branch busy: 3 changes waiting");
        }
        assert!(new.gitops.is_none(), "nothing recorded as committed");
        // A Ready environment whose change waits stays Ready on its last commit.
        let ready = EnvironmentRequestStatus {
            phase: Some(Phase::Ready),
            observed_generation: Some(1),
            ..EnvironmentRequestStatus::default()
        };
        let after = next_status(&ready, Some(2), &waiting, &now);
        assert_eq!((after.phase, after.observed_generation), (Some(Phase::Ready), Some(1)));
        assert_eq!(find(&after.conditions, types::COMMITTED).map(|c| c.reason.as_str()), Some(reasons::BRANCH_BUSY));
        assert!(find(&after.conditions, types::READY).is_none(), "Ready is not touched");
    }
}
