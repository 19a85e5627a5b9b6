//! Admission decisions: one AdmissionRequest and the [`Index`] of the cluster in,
//! an AdmissionResponse out. No I/O here; the rules come from [`crate::policy`].

use k8s_openapi::jiff::Timestamp;
use kube::{
    Resource, ResourceExt,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, Operation},
    },
};
use serde::de::DeserializeOwned;

pub use crate::api::Kind;
use crate::{
    api::labels,
    api::{EnvironmentRequest, Rollout, Tenant},
    approval::Verifier,
    index::Index,
    policy::{
        budget,
        references::{self, Conflict},
        request::{self, Denial},
        rollout as policy_rollout, stage_approval,
    },
};

/// Keys and clock admission checks approvals with.
pub struct Checks<'a> {
    pub verifier: Option<&'a Verifier>,
    pub now: Timestamp,
}

/// An object of the review as Berth's type. `Err` carries the message for a denial:
/// the apiserver validated the schema already, so this only fails on a broken review.
fn typed<K: DeserializeOwned>(object: Option<&DynamicObject>, which: &str) -> Result<Option<K>, String> {
    object
        .map(|o| serde_json::to_value(o).and_then(serde_json::from_value::<K>))
        .transpose()
        .map_err(|e| format!("cannot read the review's {which} as a Berth object: {e}"))
}

/// Decides a validating review.
pub fn validate(
    req: &AdmissionRequest<DynamicObject>,
    kind: Kind,
    index: &Index,
    checks: &Checks,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    let verdict = match kind {
        Kind::EnvironmentRequest => validate_request(req, index, checks).map(|()| Vec::new()),
        Kind::Tenant => validate_tenant(req, index),
        Kind::EnvironmentClass => validate_class(req, index).map(|()| Vec::new()),
        Kind::Rollout => validate_rollout(req, index, checks).map(|()| Vec::new()),
        Kind::Freeze => validate_freeze(req).map(|()| Vec::new()),
    };
    match verdict {
        Ok(warnings) if warnings.is_empty() => response,
        Ok(warnings) => {
            let mut response = response;
            response.warnings = Some(warnings);
            response
        }
        Err(message) => response.deny(message),
    }
}

fn validate_request(req: &AdmissionRequest<DynamicObject>, index: &Index, checks: &Checks) -> Result<(), String> {
    let Some(new) = typed::<EnvironmentRequest>(req.object.as_ref(), "object")? else {
        return Ok(()); // DELETE and CONNECT carry no object; nothing to check.
    };
    let old = typed::<EnvironmentRequest>(req.old_object.as_ref(), "oldObject")?;
    if new.meta().deletion_timestamp.is_some()
        && old.as_ref().is_some_and(|o| !request::spec_changed(&o.spec, &new.spec))
    {
        return Ok(()); // Never stand in the way of a deletion (finalizer removal).
    }
    // The four-eyes rule trusts these annotations, so they must be what the mutating
    // webhook records; anything else means it did not run (or was overridden).
    if authors_on(&new) != request::recorded_authors(req.user_info.username.as_deref(), &new, old.as_ref()) {
        return Err(format!(
            "annotations {} and {} must be recorded by Berth's mutating webhook, not written by hand; is its MutatingWebhookConfiguration installed?",
            labels::CREATED_BY_ANNOTATION,
            labels::SPEC_AUTHOR_ANNOTATION
        ));
    }
    if req.operation == Operation::Update
        && let Some(old) = &old
        && old.spec == new.spec
    {
        return Ok(()); // Metadata only (labels, finalizers): what was admitted holds.
    }
    let tenant = index.tenant(&new.spec.tenant);
    let class = index.class(&new.spec.class);
    let claimants = index.claimants(&new.namespace().unwrap_or_default());
    let validated = request::check(&new, tenant.as_deref(), class.as_deref(), &claimants).map_err(|d| d.to_string())?;
    let (tenant, class) = (validated.tenant, validated.class);
    // An approval is bound to the request's UID, so a request of a class that needs
    // one is created without it and waits (phase AwaitingApproval) until an approver
    // approves it as it exists. A token at CREATE is checked (and refused: it cannot
    // name a UID assigned just now). On UPDATE the digest covers the new spec, so any
    // spec change needs a new approval.
    let awaiting_approval = req.operation == Operation::Create && new.spec.approval.is_none();
    if !awaiting_approval {
        request::check_approval(&new, class, checks.verifier, checks.now, false).map_err(|d| d.to_string())?;
    }
    if req.operation == Operation::Create {
        check_budget(&new, tenant, index).map_err(|d| d.to_string())?;
    }
    Ok(())
}

/// The tenant's budget with this new request added, as the controller will decide it
/// (the controller repeats the check, which also settles concurrent creations).
pub fn check_budget(new: &EnvironmentRequest, tenant: &Tenant, index: &Index) -> Result<(), Denial> {
    if !budget::limits_anything(&tenant.spec.budget) {
        return Ok(());
    }
    // O(the requests of this namespace not provisioned yet), whatever the size of the
    // cluster or the tenant: the provisioned ones are counts.
    let requests = index.budget_view(&new.namespace().unwrap_or_default(), &new.name_any());
    let classes = index.classes.state();
    // Admission sees only statuses; the controller's guard also remembers.
    match budget::decide_request(new, tenant, &requests, classes.iter().map(AsRef::as_ref), |_| false) {
        Some(Err(exceeded)) => Err(Denial::OverBudget(exceeded)),
        _ => Ok(()),
    }
}

fn validate_tenant(req: &AdmissionRequest<DynamicObject>, index: &Index) -> Result<Vec<String>, String> {
    if req.operation == Operation::Delete {
        let requests = index.requests_of_tenant(&req.name);
        let users = requests.iter().map(AsRef::as_ref);
        references::check_unused("Tenant", &req.name, users).map_err(|c| c.to_string())?;
        return Ok(Vec::new());
    }
    let Some(tenant) = typed::<Tenant>(req.object.as_ref(), "object")? else {
        return Ok(Vec::new());
    };
    if tenant.meta().deletion_timestamp.is_some() {
        return Ok(Vec::new());
    }
    references::check_tenant_namespace(&tenant, &index.tenants.state()).map_err(|c| c.to_string())?;
    let unknown = references::unknown_classes(&tenant, |name| index.class(name).is_some());
    Ok(unknown
        .into_iter()
        .map(|class| format!("allowed class {class:?} does not exist yet; requests of it are refused until it does"))
        .collect())
}

fn validate_class(req: &AdmissionRequest<DynamicObject>, index: &Index) -> Result<(), String> {
    if req.operation != Operation::Delete {
        return Ok(()); // The CRD's CEL rules cover a class on its own.
    }
    let requests = index.requests_of_class(&req.name);
    let users = requests.iter().map(AsRef::as_ref);
    references::check_unused("EnvironmentClass", &req.name, users).map_err(|c| c.to_string())
}

fn validate_rollout(req: &AdmissionRequest<DynamicObject>, index: &Index, checks: &Checks) -> Result<(), String> {
    let Some(rollout) = typed::<Rollout>(req.object.as_ref(), "object")? else {
        return Ok(());
    };
    if rollout.meta().deletion_timestamp.is_some() {
        return Ok(());
    }
    let recorded = rollout_authors(req.user_info.username.as_deref(), &rollout, req.old_object.as_ref())?;
    if authors_on(&rollout) != recorded {
        return Err(format!(
            "annotations {} and {} must be recorded by Berth's mutating webhook, not written by hand; is its MutatingWebhookConfiguration (with rollouts) installed?",
            labels::CREATED_BY_ANNOTATION,
            labels::SPEC_AUTHOR_ANNOTATION
        ));
    }
    let namespace = req.namespace.clone().or_else(|| rollout.namespace()).unwrap_or_default();
    let tenants = index.tenants.state();
    let owner = references::owner_of(&namespace, &tenants);
    let mut rollout = rollout;
    rollout.metadata.namespace = Some(namespace.clone());
    let old = typed::<Rollout>(req.old_object.as_ref(), "oldObject")?;
    // Placement is checked when it is set: pausing, resuming or aborting a rollout
    // must work after its tenant dropped a class (or went away).
    let placement_unchanged = old.as_ref().is_some_and(|old| {
        old.spec.app == rollout.spec.app
            && old.spec.selector == rollout.spec.selector
            && old.spec.stages == rollout.spec.stages
    });
    if !placement_unchanged {
        references::check_rollout(&rollout, owner).map_err(|c: Conflict| c.to_string())?;
    }
    // O(the requests of this namespace): a Rollout only selects in its own.
    let requests = index.requests_in(&namespace);
    let requests: Vec<&EnvironmentRequest> = requests.iter().map(AsRef::as_ref).collect();
    policy_rollout::check(&rollout, old.as_ref(), &requests).map_err(|d| d.to_string())?;
    check_stage_approvals(&rollout, old.as_ref(), owner, &requests, index, checks)
}

/// The approvals added or changed in `spec.approvals`, each for a stage of this
/// rollout and valid for it (the approvers as best known: the stage's classes and
/// those of the requests it selects now).
fn check_stage_approvals(
    rollout: &Rollout,
    old: Option<&Rollout>,
    owner: Option<&Tenant>,
    requests: &[&EnvironmentRequest],
    index: &Index,
    checks: &Checks,
) -> Result<(), String> {
    if rollout.spec.approvals.iter().all(|a| old.is_some_and(|old| old.spec.approvals.contains(a))) {
        return Ok(());
    }
    // On an update the object carries its status: once started, the plan's classes.
    let classes = stage_approval::known_stage_classes(rollout, requests);
    let approval_classes = stage_approval::approval_classes(&index.classes.state());
    let owners = stage_approval::tenant_owners(owner);
    stage_approval::check_added(rollout, old, &classes, &approval_classes, &owners, checks.verifier, checks.now)
        .map_err(|d| d.to_string())
}

/// The authors admission records on a rollout (see [`request::record_authors`]).
fn rollout_authors(
    user: Option<&str>,
    new: &Rollout,
    old: Option<&DynamicObject>,
) -> Result<(Option<String>, Option<String>), String> {
    let old = typed::<Rollout>(old, "oldObject")?;
    Ok(request::record_authors(user, old.as_ref(), |old| stage_approval::spec_changed(&old.spec, &new.spec)))
}

/// A cluster-wide freeze Berth cannot read would hold every rollout: refused, naming
/// the field (the CRD's CEL rules cannot parse cron or know time zones).
fn validate_freeze(req: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
    let Some(freeze) = typed::<crate::api::Freeze>(req.object.as_ref(), "object")? else {
        return Ok(());
    };
    let problems = crate::freeze::problems("spec.windows", &freeze.spec.windows);
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!("{}; fix the window (a window Berth cannot read would hold every rollout)", problems.join("; ")))
}

/// The author annotations on `object`, as (creator, spec author).
fn authors_on(object: &impl ResourceExt) -> (Option<String>, Option<String>) {
    let annotations = object.annotations();
    (annotations.get(labels::CREATED_BY_ANNOTATION).cloned(), annotations.get(labels::SPEC_AUTHOR_ANNOTATION).cloned())
}

/// Decides a mutating review: records who created an EnvironmentRequest or a
/// Rollout and who wrote its spec from the apiserver's authenticated user, never from
/// the object (the four-eyes rule of approvals trusts them), and puts Berth's
/// finalizer on a new request.
pub fn mutate(req: &AdmissionRequest<DynamicObject>, kind: Kind) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return response;
    }
    if kind == Kind::Rollout {
        return mutate_rollout(req, response);
    }
    let (new, old) = match (
        typed::<EnvironmentRequest>(req.object.as_ref(), "object"),
        typed::<EnvironmentRequest>(req.old_object.as_ref(), "oldObject"),
    ) {
        (Ok(Some(new)), Ok(old)) => (new, old),
        (Ok(None), _) => return response,
        (Err(message), _) | (_, Err(message)) => return response.deny(message),
    };
    let recorded = request::recorded_authors(req.user_info.username.as_deref(), &new, old.as_ref());
    let current = authors_on(&new);
    let mut operations = Vec::new();
    if current != recorded {
        operations = authors_patch(new.metadata.annotations.is_some(), &current, &recorded).0;
    }
    // Only at creation: on later updates the controller may have removed it on purpose.
    if req.operation == Operation::Create {
        operations.extend(finalizer_patch(&new));
    }
    if operations.is_empty() {
        return response;
    }
    match response.clone().with_patch(json_patch::Patch(operations)) {
        Ok(patched) => patched,
        Err(e) => response.deny(format!("cannot record the request's authors: {e}")),
    }
}

/// Records a rollout's creator and spec author (no finalizer: a rollout owns nothing
/// that outlives it).
fn mutate_rollout(req: &AdmissionRequest<DynamicObject>, response: AdmissionResponse) -> AdmissionResponse {
    let new = match typed::<Rollout>(req.object.as_ref(), "object") {
        Ok(Some(new)) => new,
        Ok(None) => return response,
        Err(message) => return response.deny(message),
    };
    let recorded = match rollout_authors(req.user_info.username.as_deref(), &new, req.old_object.as_ref()) {
        Ok(recorded) => recorded,
        Err(message) => return response.deny(message),
    };
    let current = authors_on(&new);
    if current == recorded {
        return response;
    }
    let patch = authors_patch(new.metadata.annotations.is_some(), &current, &recorded);
    match response.clone().with_patch(patch) {
        Ok(patched) => patched,
        Err(e) => response.deny(format!("cannot record the rollout's authors: {e}")),
    }
}

/// JSON patch operation adding Berth's finalizer, unless the request has it. The
/// controller would otherwise add it with a write of its own: about a quarter of
/// the apiserver work one request costs (see the operator benchmark).
fn finalizer_patch(request: &EnvironmentRequest) -> Option<json_patch::PatchOperation> {
    use json_patch::{AddOperation, PatchOperation, jsonptr::PointerBuf};
    match &request.metadata.finalizers {
        Some(finalizers) if finalizers.iter().any(|f| f == labels::FINALIZER) => None,
        Some(_) => Some(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "finalizers", "-"]),
            value: labels::FINALIZER.into(),
        })),
        None => Some(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "finalizers"]),
            value: serde_json::json!([labels::FINALIZER]),
        })),
    }
}

/// JSON patch making the author annotations `recorded` (setting or removing each).
fn authors_patch(
    has_annotations: bool,
    current: &(Option<String>, Option<String>),
    recorded: &(Option<String>, Option<String>),
) -> json_patch::Patch {
    use json_patch::{AddOperation, PatchOperation, RemoveOperation, jsonptr::PointerBuf};
    let pairs = [
        (labels::CREATED_BY_ANNOTATION, &current.0, &recorded.0),
        (labels::SPEC_AUTHOR_ANNOTATION, &current.1, &recorded.1),
    ];
    if !has_annotations {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .filter_map(|(key, _, want)| want.as_ref().map(|v| ((*key).to_owned(), v.as_str().into())))
            .collect();
        if map.is_empty() {
            return json_patch::Patch(Vec::new());
        }
        let path = PointerBuf::from_tokens(["metadata", "annotations"]);
        return json_patch::Patch(vec![PatchOperation::Add(AddOperation { path, value: map.into() })]);
    }
    // Only the annotations that differ; one that should not exist but does is removed.
    let operations = pairs
        .iter()
        .filter(|(_, have, want)| have != want)
        .map(|(key, _, want)| {
            let path = PointerBuf::from_tokens(["metadata", "annotations", key]);
            match want {
                Some(value) => PatchOperation::Add(AddOperation { path, value: value.as_str().into() }),
                None => PatchOperation::Remove(RemoveOperation { path }),
            }
        })
        .collect();
    json_patch::Patch(operations)
}

#[cfg(test)]
mod tests;
