//! The tenant's request namespace and the Roles and RoleBindings of its people,
//! applied every pass; and, when the apiserver will not have them, why — in words
//! the Tenant's `Ready` condition and a Warning event carry to the platform team.

use k8s_openapi::api::{
    core::v1::Namespace,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::Serialize;

use super::super::{Context, Error, context::FIELD_MANAGER};
use crate::{
    api::{Tenant, conditions::reasons},
    render,
};

/// Why the tenant's namespace or bindings are not in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupFailure {
    /// The namespace exists but is being deleted, so nothing can be created in it.
    Terminating { namespace: String },
    /// The apiserver refused the namespace (or could not be reached).
    Namespace { namespace: String, cause: String },
    /// The apiserver refused a Role or RoleBinding in the namespace.
    Rbac { namespace: String, object: String, cause: String },
    /// An older tenant has the same request namespace (admission refuses that, but
    /// not while Berth's webhook is down or not installed); Berth leaves the
    /// namespace to it rather than relabel it back and forth.
    Contested { namespace: String, holder: String },
}

impl SetupFailure {
    /// The `Ready` condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Terminating { .. } => reasons::NAMESPACE_TERMINATING,
            Self::Namespace { .. } => reasons::NAMESPACE_FAILED,
            Self::Rbac { .. } => reasons::RBAC_FAILED,
            Self::Contested { .. } => reasons::NAMESPACE_CONTESTED,
        }
    }

    /// How soon to look again when no error is retried (nothing watches namespaces
    /// for the tenant controller): a namespace in deletion goes within seconds; a
    /// contest ends only when a tenant goes.
    pub fn poll(&self) -> std::time::Duration {
        match self {
            Self::Terminating { .. } => std::time::Duration::from_secs(5),
            _ => std::time::Duration::from_secs(60),
        }
    }

    /// What is wrong and what to do, for the condition and the event.
    pub fn message(&self) -> String {
        match self {
            Self::Terminating { namespace } => format!(
                "namespace {namespace} is being deleted, so the team's roles cannot be created in it; Berth creates it again once it is gone (if it stays Terminating, `kubectl get namespace {namespace} -o yaml` shows what holds it)"
            ),
            Self::Namespace { namespace, cause } => format!(
                "cannot create or update namespace {namespace}: {cause}; fix what refuses it (an admission policy, Berth's RBAC) or give the tenant another spec.requestNamespace by recreating it; Berth retries on its own"
            ),
            Self::Rbac { namespace, object, cause } => format!(
                "cannot apply {object} in namespace {namespace}: {cause}; fix what refuses it (an admission policy, Berth's RBAC) and Berth retries on its own"
            ),
            Self::Contested { namespace, holder } => format!(
                "namespace {namespace} is already the request namespace of tenant {holder}, which keeps it; create this tenant again with a spec.requestNamespace of its own (the field cannot change)"
            ),
        }
    }
}

/// The older tenant that holds `namespace` when `tenant` claims it too (pure): the
/// oldest claimant keeps it (ties by name), as admission would have let only the
/// first one in.
pub fn holder_of(namespace: &str, tenant: &Tenant, tenants: &[std::sync::Arc<Tenant>]) -> Option<String> {
    let age = |t: &Tenant| (t.metadata.creation_timestamp.as_ref().map(|c| c.0), t.name_any());
    tenants
        .iter()
        .filter(|other| other.name_any() != tenant.name_any())
        .filter(|other| super::request_namespace(other) == namespace)
        .filter(|other| age(other) < age(tenant))
        .min_by_key(|other| age(other))
        .map(|holder| holder.name_any())
}

/// A setup that did not complete: what to report, and the reconcile error to retry
/// on (`None` when there is nothing to retry but waiting, as for a namespace in
/// deletion).
#[derive(Debug)]
pub struct SetupFailed {
    pub failure: SetupFailure,
    pub error: Option<Error>,
}

/// What the apiserver said, without the client's framing: its own message for a
/// refusal (`… is forbidden: …`), the client error otherwise. Neither carries
/// credentials: the apiserver never echoes them, and the client's errors name
/// only the URL Berth was configured with.
fn cause(error: &Error) -> String {
    match error {
        Error::Apply { source: kube::Error::Api(status), .. } => status.message.clone(),
        Error::Apply { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// Applies the namespace, then the Roles and RoleBindings in it; nothing when an
/// older tenant holds the namespace.
pub async fn set_up(tenant: &Tenant, namespace: &str, ctx: &Context) -> Result<(), SetupFailed> {
    let tenants = ctx.index().await.tenants.state();
    if let Some(holder) = holder_of(namespace, tenant, &tenants) {
        let failure = SetupFailure::Contested { namespace: namespace.to_owned(), holder };
        return Err(SetupFailed { failure, error: None });
    }
    let applied = apply_namespace(tenant, namespace, ctx).await.map_err(|error| SetupFailed {
        failure: SetupFailure::Namespace { namespace: namespace.to_owned(), cause: cause(&error) },
        error: Some(error),
    })?;
    if applied.metadata.deletion_timestamp.is_some() {
        return Err(SetupFailed {
            failure: SetupFailure::Terminating { namespace: namespace.to_owned() },
            error: None,
        });
    }
    apply_rbac(tenant, namespace, ctx).await.map_err(|(object, error)| SetupFailed {
        failure: SetupFailure::Rbac { namespace: namespace.to_owned(), object, cause: cause(&error) },
        error: Some(error),
    })
}

/// `Kind name`, as messages name an object.
fn describe<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("{} {name}", K::kind(&()))
}

async fn apply<K>(api: Api<K>, name: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply { what: describe::<K>(name), source })
}

/// The request namespace (see [`render::tenant::namespace`]).
async fn apply_namespace(tenant: &Tenant, namespace: &str, ctx: &Context) -> Result<Namespace, Error> {
    let object = render::tenant::namespace(tenant, namespace);
    apply(Api::<Namespace>::all(ctx.client.clone()), namespace, &object).await
}

/// The Roles, then the RoleBindings. On failure, which object (`Kind name`) the
/// apiserver refused.
async fn apply_rbac(tenant: &Tenant, namespace: &str, ctx: &Context) -> Result<(), (String, Error)> {
    let role_api: Api<Role> = Api::namespaced(ctx.client.clone(), namespace);
    for role in render::tenant::roles(tenant, namespace) {
        let name = role.name_any();
        apply(role_api.clone(), &name, &role).await.map_err(|e| (describe::<Role>(&name), e))?;
    }
    let binding_api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), namespace);
    for binding in render::tenant::role_bindings(tenant, namespace) {
        let name = binding.name_any();
        apply(binding_api.clone(), &name, &binding).await.map_err(|e| (describe::<RoleBinding>(&name), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16, message: &str) -> Error {
        let status = kube::core::Status::failure(message, "Forbidden").with_code(code);
        Error::Apply { what: "Role berth-requester".to_owned(), source: kube::Error::Api(Box::new(status)) }
    }

    #[test]
    fn the_cause_is_the_apiserver_s_own_refusal() {
        let message = "roles.rbac.authorization.k8s.io \"berth-requester\" is forbidden: unable to create new content in namespace t because it is being terminated";
        assert_eq!(cause(&refused(403, message)), message);
    }

    fn tenant(name: &str, namespace: &str, created: i64) -> std::sync::Arc<Tenant> {
        let mut tenant = crate::testing::payments();
        tenant.metadata.name = Some(name.to_owned());
        tenant.spec.request_namespace = Some(namespace.to_owned());
        let at = k8s_openapi::jiff::Timestamp::from_second(created).expect("time");
        tenant.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
        std::sync::Arc::new(tenant)
    }

    #[test]
    fn the_oldest_tenant_keeps_a_contested_namespace() {
        let (first, copycat, late) =
            (tenant("payments", "pay", 10), tenant("copycat", "pay", 20), tenant("late", "pay", 30));
        let other = tenant("search", "search", 5);
        let all = [first.clone(), copycat.clone(), late.clone(), other.clone()];
        assert_eq!(holder_of("pay", &first, &all), None, "the first one sets it up");
        assert_eq!(holder_of("pay", &copycat, &all).as_deref(), Some("payments"));
        assert_eq!(holder_of("pay", &late, &all).as_deref(), Some("payments"));
        assert_eq!(holder_of("search", &other, &all), None);
        // Created in the same second: the name decides, the same way for both.
        let twin = tenant("aardvark", "pay", 10);
        let all = [first.clone(), twin.clone()];
        assert_eq!(holder_of("pay", &first, &all).as_deref(), Some("aardvark"));
        assert_eq!(holder_of("pay", &twin, &all), None);
    }

    #[test]
    fn each_failure_names_its_object_and_says_what_to_do() {
        let cases = [
            (
                SetupFailure::Terminating { namespace: "team-a".into() },
                "NamespaceTerminating",
                "kubectl get namespace team-a",
            ),
            (
                SetupFailure::Namespace { namespace: "team-a".into(), cause: "denied by policy deny-ns".into() },
                "NamespaceFailed",
                "cannot create or update namespace team-a: denied by policy deny-ns; fix what refuses it",
            ),
            (
                SetupFailure::Rbac {
                    namespace: "team-a".into(),
                    object: "Role berth-requester".into(),
                    cause: "forbidden".into(),
                },
                "RBACFailed",
                "cannot apply Role berth-requester in namespace team-a: forbidden; fix what refuses it",
            ),
            (
                SetupFailure::Contested { namespace: "team-a".into(), holder: "payments".into() },
                "NamespaceContested",
                "already the request namespace of tenant payments, which keeps it; create this tenant again",
            ),
        ];
        for (failure, reason, says) in cases {
            assert_eq!(failure.reason(), reason);
            assert!(failure.message().contains(says), "{failure:?}: {}", failure.message());
        }
    }
}
