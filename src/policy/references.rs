//! Rules about Tenants, EnvironmentClasses and Rollouts that need other objects
//! (single-object invariants live in the CRDs' CEL rules). Pure functions.

use kube::ResourceExt;

use super::request::request_namespace;
use crate::api::{EnvironmentRequest, Rollout, Tenant, environment_request::Phase};

/// Namespaces no tenant may take as its request namespace: Berth would label them
/// and bind the team's people in them.
pub const RESERVED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Why a Tenant, EnvironmentClass or Rollout is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error(
        "request namespace {namespace:?} is reserved for the cluster; set spec.requestNamespace to a namespace of the team's own"
    )]
    ReservedNamespace { namespace: String },
    #[error("request namespace {namespace:?} already belongs to tenant {other:?}; pick another spec.requestNamespace")]
    NamespaceTaken { namespace: String, other: String },
    #[error("{kind} {name:?} still has {count} environment(s) ({examples}); delete those EnvironmentRequests first")]
    StillInUse { kind: &'static str, name: String, count: usize, examples: String },
    #[error(
        "Rollouts live in a tenant's request namespace, and {namespace:?} is none; create it in the namespace of the team whose environments it promotes"
    )]
    NotTenantNamespace { namespace: String },
    #[error(
        "stage {stage:?} promotes to class {class:?}, which tenant {tenant:?} may not use (allowed: {allowed:?}); remove it from the stage or ask the platform team"
    )]
    StageClassNotAllowed { stage: String, class: String, tenant: String, allowed: Vec<String> },
}

/// The tenant whose request namespace is `namespace`, if any.
pub fn owner_of<'a, T: AsRef<Tenant> + 'a>(
    namespace: &str,
    tenants: impl IntoIterator<Item = &'a T>,
) -> Option<&'a Tenant> {
    tenants.into_iter().map(AsRef::as_ref).find(|t| request_namespace(t) == namespace)
}

/// A tenant's request namespace must be neither reserved nor another tenant's.
pub fn check_tenant_namespace<'a, T: AsRef<Tenant> + 'a>(
    tenant: &Tenant,
    others: impl IntoIterator<Item = &'a T>,
) -> Result<(), Conflict> {
    let namespace = request_namespace(tenant);
    if RESERVED_NAMESPACES.contains(&namespace.as_str()) || namespace.starts_with("kube-") {
        return Err(Conflict::ReservedNamespace { namespace });
    }
    let name = tenant.name_any();
    let taken =
        others.into_iter().map(AsRef::as_ref).find(|o| o.name_any() != name && request_namespace(o) == namespace);
    match taken {
        Some(other) => Err(Conflict::NamespaceTaken { namespace, other: other.name_any() }),
        None => Ok(()),
    }
}

/// Classes a tenant allows that do not exist (yet): worth a warning, not a refusal,
/// since `kubectl apply -f dir/` may create the tenant before its classes.
pub fn unknown_classes(tenant: &Tenant, exists: impl Fn(&str) -> bool) -> Vec<String> {
    tenant.spec.allowed_classes.iter().filter(|c| !exists(c)).cloned().collect()
}

/// Refuses deleting a Tenant or EnvironmentClass that live environments still use:
/// they would fail on their next reconcile and their folders would stay in git.
pub fn check_unused<'a>(
    kind: &'static str,
    name: &str,
    users: impl IntoIterator<Item = &'a EnvironmentRequest>,
) -> Result<(), Conflict> {
    let live: Vec<String> = users
        .into_iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .filter(|r| r.status.as_ref().and_then(|s| s.phase) != Some(Phase::Expired))
        .map(|r| format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()))
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    let mut examples = live.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if live.len() > 3 {
        examples.push_str(", …");
    }
    Err(Conflict::StillInUse { kind, name: name.to_owned(), count: live.len(), examples })
}

/// A Rollout must live in a tenant's namespace, and each stage may only name
/// classes that tenant may use (a stage that can never match is a mistake).
pub fn check_rollout(rollout: &Rollout, tenant: Option<&Tenant>) -> Result<(), Conflict> {
    let namespace = rollout.namespace().unwrap_or_default();
    let Some(tenant) = tenant else {
        return Err(Conflict::NotTenantNamespace { namespace });
    };
    for stage in &rollout.spec.stages {
        if let Some(class) = stage.classes.iter().find(|c| !tenant.spec.allowed_classes.contains(c)) {
            return Err(Conflict::StageClassNotAllowed {
                stage: stage.name.clone(),
                class: class.clone(),
                tenant: tenant.name_any(),
                allowed: tenant.spec.allowed_classes.clone(),
            });
        }
    }
    Ok(())
}
