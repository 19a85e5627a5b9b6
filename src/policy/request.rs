//! What an EnvironmentRequest must satisfy before it is provisioned: the tenant owns
//! its namespace, the class exists and is allowed, the cluster and TTL fit the class,
//! an approval when the class needs one, and the tenant's budget. Pure: the admission
//! webhook calls it with its caches, the request controller with what it read.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::budget::BudgetExceeded;
use crate::{
    api::environment_request::EnvironmentRequestSpec,
    api::labels,
    api::{EnvironmentClass, EnvironmentRequest, Tenant, conditions::reasons},
    approval::{Rejection, Target, VerifiedApproval, Verifier},
    render,
};

/// Why a request may not be provisioned. Every message says what to do about it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Denial {
    #[error("tenant {tenant:?} does not exist; ask the platform team to create it, or fix spec.tenant")]
    TenantMissing { tenant: String },
    #[error(
        "namespace {namespace:?} is not tenant {tenant:?}'s request namespace; create the request in {expected:?}, or name the tenant that owns {namespace:?}"
    )]
    NotTenantNamespace { tenant: String, namespace: String, expected: String },
    #[error(
        "namespace {namespace:?} is the request namespace of several tenants ({tenants:?}); the platform team must give each tenant its own spec.requestNamespace"
    )]
    NamespaceContested { namespace: String, tenants: Vec<String> },
    #[error(
        "EnvironmentClass {class:?} does not exist; `kubectl get environmentclasses` lists the classes you can pick"
    )]
    ClassMissing { class: String },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "class {class:?} needs an approval from a member of {groups:?}: ask one of them to run `berth approve -n {namespace} {name} --apply` (Berth then adds it to spec.approval.token)"
    )]
    ApprovalMissing { class: String, groups: Vec<String>, namespace: String, name: String },
    #[error(
        "the approval in spec.approval.token is not valid: {rejection} (class {class:?} needs one from {groups:?})"
    )]
    ApprovalRejected { class: String, groups: Vec<String>, rejection: Rejection },
    #[error(
        "class {class:?} needs an approval, but the request's creator was not recorded (annotation {annotation}); install Berth's admission webhook so the four-eyes rule can be checked"
    )]
    CreatorUnknown { class: String, annotation: &'static str },
    #[error("{0}")]
    OverBudget(BudgetExceeded),
}

impl Denial {
    /// Short stable code, for condition reasons, audit logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::TenantMissing { .. } => reasons::TENANT_NOT_FOUND,
            Denial::NotTenantNamespace { .. } | Denial::NamespaceContested { .. } => reasons::NOT_TENANT_NAMESPACE,
            Denial::ClassMissing { .. } => reasons::CLASS_NOT_FOUND,
            Denial::Invalid(_) => reasons::INVALID_REQUEST,
            Denial::ApprovalMissing { .. } => reasons::APPROVAL_REQUIRED,
            Denial::ApprovalRejected { .. } => reasons::APPROVAL_REJECTED,
            Denial::CreatorUnknown { .. } => reasons::CREATOR_UNKNOWN,
            Denial::OverBudget(_) => reasons::OVER_BUDGET,
        }
    }

    /// Whether an approval (a missing or an invalid one) is what stands in the way.
    pub fn is_about_approval(&self) -> bool {
        matches!(self, Denial::ApprovalMissing { .. } | Denial::ApprovalRejected { .. } | Denial::CreatorUnknown { .. })
    }
}

/// The namespace where `tenant`'s people create requests.
pub fn request_namespace(tenant: &Tenant) -> String {
    tenant.spec.request_namespace.clone().unwrap_or_else(|| tenant.name_any())
}

/// Who created the request, as admission recorded it (never what the author wrote:
/// the mutating webhook overwrites the annotation).
pub fn creator(request: &EnvironmentRequest) -> Option<&str> {
    request.annotations().get(labels::CREATED_BY_ANNOTATION).map(String::as_str)
}

/// The tenants among `tenants` whose request namespace is `namespace`.
pub fn claimants<'a>(namespace: &str, tenants: impl IntoIterator<Item = &'a Tenant>) -> Vec<String> {
    tenants.into_iter().filter(|t| request_namespace(t) == namespace).map(ResourceExt::name_any).collect()
}

/// Who last wrote the request's spec, as admission recorded it; the creator for
/// requests recorded before spec authors were.
pub fn spec_author(request: &EnvironmentRequest) -> Option<&str> {
    request.annotations().get(labels::SPEC_AUTHOR_ANNOTATION).map(String::as_str).or_else(|| creator(request))
}

/// Whether two specs differ in more than their approval: what counts as a new spec
/// to approve (and records a new spec author).
pub fn spec_changed(old: &EnvironmentRequestSpec, new: &EnvironmentRequestSpec) -> bool {
    let unapproved = |spec: &EnvironmentRequestSpec| EnvironmentRequestSpec { approval: None, ..spec.clone() };
    unapproved(old) != unapproved(new)
}

/// The creator and spec author admission records for a request: on CREATE the user
/// creating it; on UPDATE the creator stays, and the spec author becomes the user
/// when the spec (approval aside) changed. Never what the object itself says.
pub fn recorded_authors(
    user: Option<&str>,
    new: &EnvironmentRequest,
    old: Option<&EnvironmentRequest>,
) -> (Option<String>, Option<String>) {
    record_authors(user, old, |old| spec_changed(&old.spec, &new.spec))
}

/// The rule of [`recorded_authors`] for any kind Berth records authors on (requests
/// and rollouts): `spec_changed` says whether the update changed what an approval covers.
pub fn record_authors<K: ResourceExt>(
    user: Option<&str>,
    old: Option<&K>,
    spec_changed: impl FnOnce(&K) -> bool,
) -> (Option<String>, Option<String>) {
    match old {
        None => (user.map(str::to_owned), user.map(str::to_owned)),
        Some(old) => {
            let creator = old.annotations().get(labels::CREATED_BY_ANNOTATION).cloned();
            let author = if spec_changed(old) {
                user.map(str::to_owned)
            } else {
                old.annotations().get(labels::SPEC_AUTHOR_ANNOTATION).cloned()
            };
            (creator, author)
        }
    }
}

/// Checks everything about `request` that needs its tenant and class, except
/// approval and budget: tenancy, existence, allowed class, cluster and TTL (the
/// same checks rendering makes, so admission and rendering cannot disagree).
/// `claimants` are the tenants whose request namespace is the request's namespace:
/// two tenants created at the same moment could both claim one, and then neither
/// may be named from it.
pub fn check<'a>(
    request: &'a EnvironmentRequest,
    tenant: Option<&'a Tenant>,
    class: Option<&'a EnvironmentClass>,
    claimants: &[String],
) -> Result<render::Validated<'a>, Denial> {
    if claimants.len() > 1 {
        return Err(Denial::NamespaceContested {
            namespace: request.namespace().unwrap_or_default(),
            tenants: claimants.to_vec(),
        });
    }
    let spec = &request.spec;
    let Some(tenant) = tenant else {
        return Err(Denial::TenantMissing { tenant: spec.tenant.clone() });
    };
    let namespace = request.namespace().unwrap_or_default();
    let expected = request_namespace(tenant);
    if namespace != expected {
        return Err(Denial::NotTenantNamespace { tenant: spec.tenant.clone(), namespace, expected });
    }
    let Some(class) = class else {
        return Err(Denial::ClassMissing { class: spec.class.clone() });
    };
    render::validate(class, tenant, request).map_err(|e| Denial::Invalid(e.to_string()))
}

/// Whether the request carries a valid approval, when its class needs one.
/// `Ok(None)`: the class needs none. Without a verifier (no keys configured) no
/// approval can be valid, so approval classes are refused. `keep_unbound`: a token
/// bound to no UID still counts (the controller, for a request already provisioned
/// with one from a Berth before approvals were bound; admission never, or an old
/// token could come with a spec change).
pub fn check_approval(
    request: &EnvironmentRequest,
    class: &EnvironmentClass,
    verifier: Option<&Verifier>,
    now: Timestamp,
    keep_unbound: bool,
) -> Result<Option<VerifiedApproval>, Denial> {
    let policy = &class.spec.approval;
    if !policy.required {
        return Ok(None);
    }
    let (namespace, name) = (request.namespace().unwrap_or_default(), request.name_any());
    let groups = policy.approver_groups.clone();
    let missing = || Denial::ApprovalMissing {
        class: class.name_any(),
        groups: groups.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let Some(approval) = &request.spec.approval else {
        return Err(missing());
    };
    let Some(verifier) = verifier else {
        return Err(missing());
    };
    let Some(creator) = creator(request) else {
        return Err(Denial::CreatorUnknown { class: class.name_any(), annotation: labels::CREATED_BY_ANNOTATION });
    };
    // Four eyes: the approver is neither who created the request nor who wrote this spec.
    let author = spec_author(request).unwrap_or(creator);
    let target = Target {
        namespace: &namespace,
        name: &name,
        uid: request.metadata.uid.as_deref(),
        accept_unbound: keep_unbound,
        spec: &request.spec,
        approver_groups: &policy.approver_groups,
        creator: Some(author),
    };
    let rejected = |rejection| Denial::ApprovalRejected { class: class.name_any(), groups: groups.clone(), rejection };
    let verified = verifier.verify(&approval.token, &target, now).map_err(rejected)?;
    if verified.approver == creator {
        let rejection = Rejection::ApproverIsCreator { approver: verified.approver, groups: groups.clone() };
        return Err(rejected(rejection));
    }
    Ok(Some(verified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::git_url::{EXAMPLE_SECRET, EXAMPLES, Expected},
        testing::{class, payments, request},
    };

    #[test]
    fn repository_urls_follow_the_shared_table_with_the_cel_rule_s_message() {
        let (tenant, class) = (payments(), class("preview"));
        for (url, expected) in EXAMPLES {
            let mut req = request("preview");
            req.spec.app.repo_url = (*url).to_owned();
            let decided = check(&req, Some(&tenant), Some(&class), &["payments".to_owned()]).map(|_| ());
            match expected {
                Expected::Allowed => assert_eq!(decided, Ok(()), "{url:?}"),
                Expected::Refused(why) => {
                    let denial = decided.expect_err(url);
                    assert_eq!(denial, Denial::Invalid(why.repo_url_message().to_owned()), "{url:?}");
                    assert_eq!(denial.reason(), reasons::INVALID_REQUEST);
                    assert!(!denial.to_string().contains(EXAMPLE_SECRET), "{url:?}: {denial}");
                }
            }
        }
    }
}
