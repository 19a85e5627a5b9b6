//! Tenant: a team, who belongs to it, which classes it may use and its budget.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DNS_LABEL;

/// A team: its owners, members and viewers, the classes it may use and the budget all its
/// environments share. Berth creates the team's request namespace and binds its
/// people there.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "Tenant",
    doc = "A team: owners, members, viewers, allowed environment classes and a budget shared by all its environments.",
    shortname = "tn",
    category = "berth",
    status = "TenantStatus",
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.requestNamespace",
        description = "Where the team creates EnvironmentRequests"
    ),
    printcolumn(
        name = "Environments",
        type_ = "integer",
        json_path = ".status.environments",
        description = "Environments the tenant has"
    ),
    printcolumn(
        name = "Cost",
        type_ = "integer",
        json_path = ".status.usage.monthlyCostUSD",
        description = "Estimated monthly cost of all environments, in USD"
    ),
    printcolumn(
        name = "Budget",
        type_ = "integer",
        json_path = ".spec.budget.monthlyCostUSD",
        description = "Monthly cost budget, in USD"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[kube(
    validation = Rule::new("size(self.metadata.name) <= 63").message(
        "a Tenant's name is the berth.dev/tenant label on its namespaces, and label values are at most 63 characters; pick a name of at most 63 characters"
    ),
    validation = Rule::new(format!("has(self.spec.requestNamespace) || self.metadata.name.matches('{DNS_LABEL}')"))
        .message(
            "without spec.requestNamespace a Tenant's name becomes its request namespace, which must be a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit); pick such a name or set spec.requestNamespace"
        )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.requestNamespace) || (has(self.requestNamespace) && self.requestNamespace == oldSelf.requestNamespace)")
    .message("requestNamespace cannot change once set; create a new Tenant instead"))]
pub struct TenantSpec {
    /// The team's name as people know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,

    /// People and groups who run the team's environments: they manage requests and
    /// get admin access inside every environment.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("size(self) > 0").message("a tenant needs at least one owner"))]
    pub owners: Vec<Subject>,

    /// People and groups who may request environments and get edit access inside them.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub members: Vec<Subject>,

    /// People and groups who may only look: they see the team's requests and rollouts
    /// (never create or change one) and get view access inside every environment.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub viewers: Vec<Subject>,

    /// EnvironmentClass names this tenant may request.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub allowed_classes: Vec<String>,

    /// Limits across all the tenant's environments together.
    #[serde(default)]
    pub budget: Budget,

    /// Namespace where the team creates EnvironmentRequests; Berth creates it and labels it
    /// `berth.dev/tenant`. Defaults to the tenant's name. Cannot change once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DNS_LABEL}')")).message(
        "requestNamespace must be a namespace name: lowercase letters, digits and '-', starting and ending with a letter or digit"
    ))]
    pub request_namespace: Option<String>,
}

/// A user or group, as the apiserver's authenticator names them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// `User` or `Group`.
    pub kind: SubjectKind,
    /// The user or group name, e.g. `alice` or `team-payments`.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
}

/// Whether a subject is one user or a group.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubjectKind {
    /// One user.
    User,
    /// Everyone in a group.
    Group,
}

/// Limits across all of a tenant's environments. An absent limit is no limit.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Sum of the environments' ResourceQuota `hard` values may not exceed these, e.g. `requests.cpu: "32"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::resource_list_schema")]
    pub quota: BTreeMap<String, Quantity>,
    /// Sum of the environments' estimated monthly cost may not exceed this, in whole US dollars.
    #[serde(default, rename = "monthlyCostUSD", skip_serializing_if = "Option::is_none")]
    pub monthly_cost_usd: Option<u32>,
    /// The most environments the tenant may have at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_environments: Option<u32>,
}

/// Observed state of a Tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The namespace where the team creates EnvironmentRequests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_namespace: Option<String>,
    /// How many environments the tenant has.
    #[serde(default)]
    pub environments: u32,
    /// What the tenant's environments use, to compare with `spec.budget`.
    #[serde(default)]
    pub usage: Usage,
    /// Current state: `Ready` (namespace and bindings in place) and `WithinBudget`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// What a tenant's environments use together.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Sum of the environments' ResourceQuota `hard` values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::resource_list_schema")]
    pub quota: BTreeMap<String, Quantity>,
    /// Sum of the environments' estimated monthly cost, in whole US dollars.
    #[serde(default, rename = "monthlyCostUSD")]
    pub monthly_cost_usd: u32,
}
