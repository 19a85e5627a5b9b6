//! Tenant controller: the team's request namespace with RBAC for its people, and
//! its usage against its budget in status.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        core::v1::Namespace,
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::controller::Action,
};
use serde::Serialize;

use super::{Context, Error, context::FIELD_MANAGER};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::{
    api::{
        EnvironmentClass, EnvironmentRequest, Tenant,
        conditions::{ConditionStatus, Observation, reasons, set_condition, types},
        environment_request::Phase,
        tenant::{SubjectKind, TenantStatus, Usage},
    },
    labels,
    policy::budget,
};

/// Role members get in the request namespace: ask for environments and follow them.
const REQUESTER_ROLE: &str = "berth-requester";
/// Role owners get there: everything about the team's requests.
const MANAGER_ROLE: &str = "berth-manager";

pub use crate::policy::request::request_namespace;

pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = request_namespace(&tenant);
    apply_namespace(&tenant, &namespace, &ctx).await?;
    apply_rbac(&tenant, &namespace, &ctx).await?;

    let requests = ctx.all_requests().await?;
    let live: Vec<&EnvironmentRequest> = requests
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| r.spec.tenant == tenant.name_any() && r.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|r| matches!(r.status.as_ref().and_then(|s| s.phase), Some(Phase::Provisioning | Phase::Ready)))
        .collect();
    let cost: u64 = live.iter().filter_map(|r| r.status.as_ref()?.estimated_monthly_cost_usd).map(u64::from).sum();
    let classes = Api::<EnvironmentClass>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Read { what: "EnvironmentClasses".to_owned(), source })?;
    let mut quota = budget::Amounts::new();
    for request in &live {
        if let Some(class) = classes.items.iter().find(|c| c.name_any() == request.spec.class) {
            for (resource, amount) in budget::amounts(&class.spec.quota) {
                *quota.entry(resource).or_default() += amount;
            }
        }
    }
    let status = next_status(&tenant, &namespace, live.len(), cost, &quota);
    if tenant.status.as_ref() != Some(&status) {
        super::apply_status(&Api::<Tenant>::all(ctx.client.clone()), tenant.as_ref(), &status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Status from what the tenant has (pure; transition times kept when unchanged).
fn next_status(
    tenant: &Tenant,
    namespace: &str,
    environments: usize,
    cost: u64,
    quota: &budget::Amounts,
) -> TenantStatus {
    let mut status = tenant.status.clone().unwrap_or_default();
    let generation = tenant.metadata.generation;
    let now = Time(Timestamp::now());
    status.observed_generation = generation;
    status.request_namespace = Some(namespace.to_owned());
    status.environments = u32::try_from(environments).unwrap_or(u32::MAX);
    status.usage = Usage {
        monthly_cost_usd: u32::try_from(cost).unwrap_or(u32::MAX),
        quota: quota.iter().map(|(resource, amount)| (resource.clone(), Quantity(budget::display(*amount)))).collect(),
    };
    set_condition(
        &mut status.conditions,
        Observation {
            type_: types::READY,
            status: ConditionStatus::True,
            reason: reasons::NAMESPACE_READY,
            message: format!("members create EnvironmentRequests in namespace {namespace}"),
            observed_generation: generation,
        },
        &now,
    );
    let budget = &tenant.spec.budget;
    let over_cost = budget.monthly_cost_usd.is_some_and(|limit| cost > u64::from(limit));
    let over_count = budget.max_environments.is_some_and(|max| environments > max as usize);
    let over_quota = budget::amounts(&budget.quota)
        .iter()
        .any(|(resource, limit)| quota.get(resource).is_some_and(|used| used > limit));
    let over_cost = over_cost || over_quota;
    let message = format!(
        "{environments} environments{}, ${cost} a month{}",
        budget.max_environments.map(|m| format!(" of {m}")).unwrap_or_default(),
        budget.monthly_cost_usd.map(|m| format!(" of ${m}")).unwrap_or_default()
    );
    set_condition(
        &mut status.conditions,
        Observation {
            type_: types::WITHIN_BUDGET,
            status: (!(over_cost || over_count)).into(),
            reason: if over_cost || over_count { reasons::OVER_BUDGET } else { reasons::WITHIN_BUDGET },
            message,
            observed_generation: generation,
        },
        &now,
    );
    status
}

fn owned_meta(tenant: &Tenant, name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(
            [
                (labels::TENANT.to_owned(), tenant.name_any()),
                (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned()),
            ]
            .into(),
        ),
        owner_references: tenant.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

async fn apply<K>(api: Api<K>, name: &str, object: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply { what: format!("{} {name}", K::kind(&())), source })?;
    Ok(())
}

/// The namespace is labelled with its tenant (the webhook and the request controller
/// check that label) and is deliberately not owned by the Tenant: deleting a Tenant
/// must not cascade into deleting every request of the team.
async fn apply_namespace(tenant: &Tenant, namespace: &str, ctx: &Context) -> Result<(), Error> {
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            labels: Some(
                [
                    (labels::TENANT.to_owned(), tenant.name_any()),
                    (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    apply(Api::<Namespace>::all(ctx.client.clone()), namespace, &object).await
}

async fn apply_rbac(tenant: &Tenant, namespace: &str, ctx: &Context) -> Result<(), Error> {
    // Never the status subresource: a status is Berth's record of what it provisioned,
    // and one an owner could write (phase Ready, a commit) would skip the budget guard.
    let rule = |verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![crate::api::GROUP.to_owned()]),
        resources: Some(vec!["environmentrequests".to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    };
    let roles = [
        (REQUESTER_ROLE, vec![rule(&["get", "list", "watch", "create"])]),
        (MANAGER_ROLE, vec![rule(&["get", "list", "watch", "create", "update", "patch", "delete"])]),
    ];
    let role_api: Api<Role> = Api::namespaced(ctx.client.clone(), namespace);
    for (name, rules) in roles {
        let role = Role { metadata: owned_meta(tenant, name, namespace), rules: Some(rules) };
        apply(role_api.clone(), name, &role).await?;
    }
    let binding_api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), namespace);
    let bindings =
        [("berth-members", REQUESTER_ROLE, &tenant.spec.members), ("berth-owners", MANAGER_ROLE, &tenant.spec.owners)];
    for (name, role, people) in bindings {
        let binding = RoleBinding {
            metadata: owned_meta(tenant, name, namespace),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "Role".to_owned(),
                name: role.to_owned(),
            },
            subjects: Some(
                people
                    .iter()
                    .map(|p| Subject {
                        api_group: Some("rbac.authorization.k8s.io".to_owned()),
                        kind: match p.kind {
                            SubjectKind::User => "User",
                            SubjectKind::Group => "Group",
                        }
                        .to_owned(),
                        name: p.name.clone(),
                        namespace: None,
                    })
                    .collect(),
            ),
        };
        apply(binding_api.clone(), name, &binding).await?;
    }
    Ok(())
}
