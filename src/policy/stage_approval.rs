//! Who approves a Rollout stage, and whether `spec.approvals` holds a valid approval
//! of it. Pure: the Rollout controller (when a stage starts), the admission webhook
//! (when an approval is added) and the auth API (before it signs one) share it.
//!
//! - A stage whose environments include classes whose approval is required needs an
//!   approver in the approver groups of **every** such class, whatever the Rollout
//!   says: a tenant that leaves `requireApproval` off does not escape its classes'
//!   rule.
//! - A stage with `requireApproval` and no such class needs an **owner of the
//!   rollout's tenant** (a user in its `spec.owners`, or a member of a group there).
//!   Owners, not members: members may create Rollouts themselves, so the check would
//!   be one teammate nodding at another's change, while owners are who the tenant
//!   names as answerable for its environments; and the tenant is the only object that
//!   names people for a namespace (classes name approvers only for their own kind).
//! - Four eyes: neither the rollout's creator nor the author of its current spec
//!   (`berth.dev/created-by`, `berth.dev/spec-author`, recorded by the mutating
//!   webhook) may approve.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::{
    api::{EnvironmentRequest, Rollout, Tenant, labels, rollout::RolloutSpec, tenant::SubjectKind},
    approval::{Approvers, ClassApprovers, Rejection, StageTarget, TenantOwners, VerifiedApproval, Verifier},
};

/// Who must approve a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageApprovers {
    /// The approvers of every class listed (each one whose approval is required).
    Classes(Vec<ClassApprovers>),
    /// An owner of the rollout's tenant (`requireApproval`, no class requires one).
    Owners(TenantOwners),
}

impl StageApprovers {
    /// The rule as the token verifier checks it.
    pub fn approvers(&self) -> Approvers<'_> {
        match self {
            StageApprovers::Classes(classes) => Approvers::EveryClass(classes),
            StageApprovers::Owners(owners) => Approvers::Owners(owners),
        }
    }

    /// Whether only class approvers approve the stage: only they may let it through a
    /// freeze (break-glass), since freezes are the platform's.
    pub fn by_class_approvers(&self) -> bool {
        matches!(self, StageApprovers::Classes(_))
    }

    /// The classes whose approvers this rule checked (none for tenant owners).
    pub fn classes(&self) -> Vec<String> {
        match self {
            StageApprovers::Classes(classes) => classes.iter().map(|c| c.class.clone()).collect(),
            StageApprovers::Owners(_) => Vec::new(),
        }
    }

    /// Who approves, for messages.
    pub fn describe(&self) -> String {
        self.approvers().describe()
    }
}

/// The classes whose approval is required, each with its approver groups: what
/// [`stage_approvers`] reads (the controller and admission both build it here).
pub fn approval_classes<'a>(
    classes: impl IntoIterator<Item = &'a std::sync::Arc<crate::api::EnvironmentClass>>,
) -> BTreeMap<String, Vec<String>> {
    classes
        .into_iter()
        .filter(|c| c.spec.approval.required)
        .map(|c| (c.name_any(), c.spec.approval.approver_groups.clone()))
        .collect()
}

/// The owners of `tenant`, as the approver rule reads them; for a namespace no
/// tenant owns (`None`), nobody.
pub fn tenant_owners(tenant: Option<&Tenant>) -> TenantOwners {
    let Some(tenant) = tenant else {
        return TenantOwners { tenant: "(none)".to_owned(), ..TenantOwners::default() };
    };
    let names = |kind: SubjectKind| {
        tenant.spec.owners.iter().filter(|s| s.kind == kind).map(|s| s.name.clone()).collect::<Vec<_>>()
    };
    TenantOwners { tenant: tenant.name_any(), users: names(SubjectKind::User), groups: names(SubjectKind::Group) }
}

/// Who must approve a stage whose environments are of `classes`, given the classes
/// whose approval is required (`approval_classes`: class → approver groups);
/// `None` when the stage needs no approval.
pub fn stage_approvers<'a>(
    require_approval: bool,
    classes: impl IntoIterator<Item = &'a str>,
    approval_classes: &BTreeMap<String, Vec<String>>,
    owners: impl FnOnce() -> TenantOwners,
) -> Option<StageApprovers> {
    let needing: BTreeSet<&str> = classes.into_iter().filter(|c| approval_classes.contains_key(*c)).collect();
    if !needing.is_empty() {
        let classes = needing
            .into_iter()
            .map(|class| ClassApprovers {
                class: class.to_owned(),
                groups: approval_classes.get(class).cloned().unwrap_or_default(),
            })
            .collect();
        return Some(StageApprovers::Classes(classes));
    }
    require_approval.then(|| StageApprovers::Owners(owners()))
}

/// Why a stage cannot start for want of an approval. Each message says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StageDenial {
    #[error(
        "stage {stage} needs an approval from {approvers}: ask them to run `berth approve rollout {rollout} --stage {stage} -n {namespace}` and add the token to spec.approvals"
    )]
    Missing { namespace: String, rollout: String, stage: String, approvers: String },
    #[error(
        "the approval of stage {stage} in spec.approvals is not valid: {rejection} (it needs one from {approvers})"
    )]
    Rejected { stage: String, approvers: String, rejection: Rejection },
    #[error(
        "stage {stage} needs an approval, but the rollout's creator was not recorded (annotation {annotation}); install Berth's mutating webhook for Rollouts so the four-eyes rule can be checked"
    )]
    CreatorUnknown { stage: String, annotation: &'static str },
    #[error(
        "spec.approvals names stage {stage:?}, which is not a stage of this rollout (stages: {stages:?}); approve one of those"
    )]
    NoSuchStage { stage: String, stages: Vec<String> },
}

impl StageDenial {
    /// Short stable code, for events.
    pub fn reason(&self) -> &'static str {
        match self {
            StageDenial::Missing { .. } | StageDenial::CreatorUnknown { .. } => "AwaitingApproval",
            StageDenial::Rejected { .. } | StageDenial::NoSuchStage { .. } => "ApprovalRejected",
        }
    }
}

/// Who created the rollout and who last changed its spec (the creator for rollouts
/// recorded before spec authors were), as admission recorded them.
pub fn authors(rollout: &Rollout) -> [Option<&str>; 2] {
    let annotations = rollout.annotations();
    let creator = annotations.get(labels::CREATED_BY_ANNOTATION).map(String::as_str);
    let author = annotations.get(labels::SPEC_AUTHOR_ANNOTATION).map(String::as_str).or(creator);
    [creator, author]
}

/// Whether two rollout specs differ in what an approval covers (approvals, `paused`
/// and `abort` aside): such a change records a new spec author and voids approvals.
pub fn spec_changed(old: &RolloutSpec, new: &RolloutSpec) -> bool {
    let shipped =
        |spec: &RolloutSpec| RolloutSpec { approvals: Vec::new(), paused: false, abort: false, ..spec.clone() };
    shipped(old) != shipped(new)
}

/// The valid approval of `stage` in `rollout.spec.approvals`, checked against
/// `approvers`, as of `now`. Without a verifier (no keys configured) none is valid.
pub fn check(
    rollout: &Rollout,
    stage: &str,
    approvers: &StageApprovers,
    verifier: Option<&Verifier>,
    now: Timestamp,
) -> Result<VerifiedApproval, StageDenial> {
    let (namespace, name) = (rollout.namespace().unwrap_or_default(), rollout.name_any());
    let missing = || StageDenial::Missing {
        namespace: namespace.clone(),
        rollout: name.clone(),
        stage: stage.to_owned(),
        approvers: approvers.describe(),
    };
    let Some(approval) = rollout.spec.approvals.iter().find(|a| a.stage == stage) else {
        return Err(missing());
    };
    let Some(verifier) = verifier else {
        return Err(missing());
    };
    let authors = authors(rollout);
    if authors[0].is_none() {
        return Err(StageDenial::CreatorUnknown { stage: stage.to_owned(), annotation: labels::CREATED_BY_ANNOTATION });
    }
    let uid = rollout.metadata.uid.as_deref();
    let target = StageTarget {
        namespace: &namespace,
        name: &name,
        uid,
        stage,
        spec: &rollout.spec,
        approvers: approvers.approvers(),
        authors,
    };
    verifier.verify_stage(&approval.token, &target, now).map_err(|rejection| StageDenial::Rejected {
        stage: stage.to_owned(),
        approvers: approvers.describe(),
        rejection,
    })
}

/// Each stage's classes (in `spec.stages` order): those of the environments the plan
/// frozen in status gave it once the rollout started, else as best known from
/// `requests`, the namespace's ([`crate::rollout::plan::stage_classes`]).
pub fn known_stage_classes(rollout: &Rollout, requests: &[&EnvironmentRequest]) -> Vec<BTreeSet<String>> {
    let planned = rollout.status.as_ref().filter(|s| s.plan.is_some()).map(|s| &s.stages);
    if let Some(planned) = planned {
        let class_of: BTreeMap<&str, &str> =
            requests.iter().map(|r| (r.metadata.name.as_deref().unwrap_or_default(), r.spec.class.as_str())).collect();
        return rollout
            .spec
            .stages
            .iter()
            .map(|stage| {
                planned
                    .iter()
                    .filter(|s| s.name == stage.name)
                    .flat_map(|s| &s.environments)
                    .filter_map(|name| class_of.get(name.as_str()).map(|c| (*c).to_owned()))
                    .collect()
            })
            .collect();
    }
    crate::rollout::plan::stage_classes(&rollout.spec, requests.iter().copied())
        .unwrap_or_else(|_| rollout.spec.stages.iter().map(|s| s.classes.iter().cloned().collect()).collect())
}

/// Who must approve stage `stage` of `rollout` (`None`: it needs no approval, or
/// there is no such stage), from each stage's `classes`.
pub fn approvers_of(
    rollout: &Rollout,
    stage: &str,
    classes: &[BTreeSet<String>],
    approval_classes: &BTreeMap<String, Vec<String>>,
    owners: impl FnOnce() -> TenantOwners,
) -> Option<StageApprovers> {
    let index = rollout.spec.stages.iter().position(|s| s.name == stage)?;
    let require = rollout.spec.stages[index].require_approval;
    let stage_classes = classes.get(index).into_iter().flatten().map(String::as_str);
    stage_approvers(require, stage_classes, approval_classes, owners)
}

/// The auth API, before it signs: whether `subject` in `groups` may approve a stage
/// `approvers` approve, of a rollout written by `authors` (as recorded on the
/// rollout, when it exists), with a freeze override if `freeze_override`.
pub fn may_approve(
    subject: &str,
    groups: &[String],
    approvers: &StageApprovers,
    authors: [Option<&str>; 2],
    freeze_override: bool,
) -> Result<(), Rejection> {
    if let Some(refusal) = approvers.approvers().refusal(subject, groups) {
        return Err(refusal);
    }
    if authors.iter().flatten().any(|author| *author == subject) {
        return Err(Rejection::ApproverIsRolloutAuthor {
            approver: subject.to_owned(),
            approvers: approvers.describe(),
        });
    }
    if freeze_override && !approvers.by_class_approvers() {
        return Err(Rejection::FreezeOverrideNotAllowed { approvers: approvers.describe() });
    }
    Ok(())
}

/// Admission: every approval in `new` that is new or changed since `old` names a
/// stage of the rollout and is valid for it now. `classes` are each stage's classes
/// as best known ([`crate::rollout::plan::stage_classes`]). A stage that needs no
/// approval by what is known now is held to its classes' approvers if any, else to
/// the tenant's owners: a token is never accepted unchecked.
pub fn check_added(
    new: &Rollout,
    old: Option<&Rollout>,
    classes: &[BTreeSet<String>],
    approval_classes: &BTreeMap<String, Vec<String>>,
    owners: &TenantOwners,
    verifier: Option<&Verifier>,
    now: Timestamp,
) -> Result<(), StageDenial> {
    let stages: Vec<String> = new.spec.stages.iter().map(|s| s.name.clone()).collect();
    for approval in &new.spec.approvals {
        if old.is_some_and(|old| old.spec.approvals.contains(approval)) {
            continue; // Admitted before; the controller judges it when the stage starts.
        }
        if !stages.contains(&approval.stage) {
            return Err(StageDenial::NoSuchStage { stage: approval.stage.clone(), stages });
        }
        let approvers = approvers_of(new, &approval.stage, classes, approval_classes, || owners.clone())
            .unwrap_or_else(|| StageApprovers::Owners(owners.clone()));
        check(new, &approval.stage, &approvers, verifier, now)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
