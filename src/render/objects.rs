//! The Kubernetes objects of an environment, built from k8s-openapi types.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec},
        networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec},
        rbac::v1::{RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use kube::ResourceExt;

use super::Validated;
use crate::{
    api::labels,
    api::{
        environment_class::{NetworkPolicyMode, PodSecurityLevel},
        tenant::{self, SubjectKind},
    },
};

/// Labels on every object of the environment; drift and cleanup select by them.
pub(super) fn environment_labels(env: &Validated<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::TENANT.to_owned(), env.tenant.name_any()),
        (labels::ENVIRONMENT.to_owned(), env.namespace.clone()),
        (labels::CLASS.to_owned(), env.class.name_any()),
        (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned()),
    ])
}

/// Metadata for an object named `name`, in the environment's namespace when namespaced.
pub(super) fn metadata(env: &Validated<'_>, name: &str, namespace: Option<&str>) -> ObjectMeta {
    let request = format!("{}/{}", env.request.namespace().unwrap_or_default(), env.request.name_any());
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(environment_labels(env)),
        annotations: Some(BTreeMap::from([(labels::REQUEST_ANNOTATION.to_owned(), request)])),
        ..ObjectMeta::default()
    }
}

pub(super) fn namespace(env: &Validated<'_>) -> Namespace {
    let mut meta = metadata(env, &env.namespace, None);
    if let (Some(level), Some(labels)) = (env.class.spec.policy_packs.pod_security, meta.labels.as_mut()) {
        let level = match level {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        };
        labels.insert(labels::POD_SECURITY_ENFORCE.to_owned(), level.to_owned());
    }
    Namespace { metadata: meta, ..Namespace::default() }
}

pub(super) fn resource_quota(env: &Validated<'_>) -> ResourceQuota {
    ResourceQuota {
        metadata: metadata(env, "berth-quota", Some(&env.namespace)),
        spec: Some(ResourceQuotaSpec { hard: Some(env.class.spec.quota.clone()), ..ResourceQuotaSpec::default() }),
        ..ResourceQuota::default()
    }
}

/// The class's container defaults, or `None` when it sets none.
pub(super) fn limit_range(env: &Validated<'_>) -> Option<LimitRange> {
    let profile = env.class.spec.limit_range.as_ref()?;
    let non_empty = |map: &BTreeMap<_, _>| (!map.is_empty()).then(|| map.clone());
    Some(LimitRange {
        metadata: metadata(env, "berth-limits", Some(&env.namespace)),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: non_empty(&profile.default),
                default_request: non_empty(&profile.default_request),
                max: non_empty(&profile.max),
                ..LimitRangeItem::default()
            }],
        }),
    })
}

pub(super) fn network_policy(env: &Validated<'_>) -> NetworkPolicy {
    let ingress = match env.class.spec.network_policy {
        // No rules: nothing may connect in.
        NetworkPolicyMode::DefaultDeny => None,
        NetworkPolicyMode::AllowSameNamespace => Some(vec![NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                pod_selector: Some(LabelSelector::default()),
                ..NetworkPolicyPeer::default()
            }]),
            ..NetworkPolicyIngressRule::default()
        }]),
    };
    NetworkPolicy {
        metadata: metadata(env, "berth-default", Some(&env.namespace)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress,
            ..NetworkPolicySpec::default()
        }),
    }
}

/// Owners administer the environment, members edit it, viewers view it (Kubernetes'
/// built-in roles, which Berth's own ClusterRoles aggregate into).
pub(super) fn role_bindings(env: &Validated<'_>) -> Vec<RoleBinding> {
    let binding = |name: &str, role: &str, people: &[tenant::Subject]| RoleBinding {
        metadata: metadata(env, name, Some(&env.namespace)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(people.iter().map(rbac_subject).collect()),
    };
    // Rendered even when empty: Argo CD does not prune by default, so a binding left
    // out of git would keep the last people removed from the tenant in the
    // environment; an empty one takes their access away.
    vec![
        binding("berth-owners", "admin", &env.tenant.spec.owners),
        binding("berth-members", "edit", &env.tenant.spec.members),
        binding("berth-viewers", "view", &env.tenant.spec.viewers),
    ]
}

fn rbac_subject(subject: &tenant::Subject) -> Subject {
    let kind = match subject.kind {
        SubjectKind::User => "User",
        SubjectKind::Group => "Group",
    };
    Subject {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: subject.name.clone(),
        namespace: None,
    }
}
