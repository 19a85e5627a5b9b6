//! A tenant's objects (pure): its request namespace and the Roles and RoleBindings
//! that let its people ask for environments there. The Tenant controller applies them.

use k8s_openapi::{
    api::{
        core::v1::Namespace,
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Resource, ResourceExt};

use crate::api::{Tenant, labels, tenant::SubjectKind};

/// Role members get in the request namespace: ask for environments and follow them.
pub const REQUESTER_ROLE: &str = "berth-requester";
/// Role owners get there: everything about the team's requests.
pub const MANAGER_ROLE: &str = "berth-manager";
/// Role viewers get there: see the team's requests and rollouts, change nothing.
pub const VIEWER_ROLE: &str = "berth-viewer";

fn tenant_labels(tenant: &Tenant) -> std::collections::BTreeMap<String, String> {
    [(labels::TENANT.to_owned(), tenant.name_any()), (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned())].into()
}

fn owned_meta(tenant: &Tenant, name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(tenant_labels(tenant)),
        owner_references: tenant.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The request namespace, labelled with its tenant (the webhook and the request
/// controller check that label) and deliberately not owned by the Tenant: deleting a
/// Tenant must not cascade into deleting every request of the team.
pub fn namespace(tenant: &Tenant, namespace: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            labels: Some(tenant_labels(tenant)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The requester, manager and viewer Roles. Never the status subresource: a status is Berth's
/// record of what it provisioned, and one an owner could write (phase Ready, a commit)
/// would skip the budget guard.
pub fn roles(tenant: &Tenant, namespace: &str) -> Vec<Role> {
    let rule = |resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![crate::api::GROUP.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    };
    const READ: &[&str] = &["get", "list", "watch"];
    const ALL: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];
    [
        // Members may see rollouts but not start one: a rollout changes what every
        // environment of the namespace runs, other people's included.
        (
            REQUESTER_ROLE,
            vec![
                rule("environmentrequests", &["get", "list", "watch", "create"]),
                rule("rollouts", &["get", "list", "watch"]),
            ],
        ),
        (MANAGER_ROLE, vec![rule("environmentrequests", ALL), rule("rollouts", ALL)]),
        (VIEWER_ROLE, vec![rule("environmentrequests", READ), rule("rollouts", READ)]),
    ]
    .into_iter()
    .map(|(name, rules)| Role { metadata: owned_meta(tenant, name, namespace), rules: Some(rules) })
    .collect()
}

/// Members bound to the requester Role, owners to the manager Role, viewers to the
/// viewer Role. Each binding is rendered even when nobody is in it: the controller
/// applies and never deletes, so removing the last viewer must empty the binding
/// rather than leave the old one granting access.
pub fn role_bindings(tenant: &Tenant, namespace: &str) -> Vec<RoleBinding> {
    let bindings = [
        ("berth-members", REQUESTER_ROLE, &tenant.spec.members),
        ("berth-owners", MANAGER_ROLE, &tenant.spec.owners),
        ("berth-viewers", VIEWER_ROLE, &tenant.spec.viewers),
    ];
    bindings
        .into_iter()
        .map(|(name, role, people)| RoleBinding {
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
        })
        .collect()
}
