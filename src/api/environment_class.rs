//! EnvironmentClass: a golden path (preview, staging, production) that platform
//! teams define once and every environment of that class follows.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::GoDuration;

/// A golden path for environments: the quota, limits, network policy, policy
/// packs, lifetime, approval and cost that every environment of this class gets.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "EnvironmentClass",
    doc = "A golden path for environments: quota, limits, network policy, policy packs, lifetime, approval and cost.",
    shortname = "envclass",
    category = "berth",
    status = "EnvironmentClassStatus",
    printcolumn(
        name = "Approval",
        type_ = "boolean",
        json_path = ".spec.approval.required",
        description = "Whether environments of this class need an approval"
    ),
    printcolumn(
        name = "TTL",
        type_ = "string",
        json_path = ".spec.ttl.default",
        description = "Default lifetime of an environment"
    ),
    printcolumn(
        name = "Cost",
        type_ = "integer",
        json_path = ".spec.estimatedMonthlyCostUSD",
        description = "Estimated monthly cost of one environment, in USD"
    ),
    printcolumn(
        name = "Environments",
        type_ = "integer",
        json_path = ".status.environments",
        description = "Environments of this class"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[kube(validation = Rule::new("size(self.metadata.name) <= 63").message(
    "an EnvironmentClass's name is the berth.dev/class label on its environments and what requests put in spec.class, both at most 63 characters; pick a name of at most 63 characters"
))]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentClassSpec {
    /// What this class is for, in a sentence people choosing a class will read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// ResourceQuota `hard` limits for each environment's namespace, e.g. `requests.cpu: "4"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::resource_list_schema")]
    pub quota: BTreeMap<String, Quantity>,

    /// Defaults and bounds for containers, rendered as the namespace's LimitRange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range: Option<LimitRangeProfile>,

    /// Which traffic the environment's NetworkPolicy lets in.
    #[serde(default)]
    pub network_policy: NetworkPolicyMode,

    /// Policy packs applied to each environment's namespace.
    #[serde(default)]
    pub policy_packs: PolicyPacks,

    /// How long environments live. Without it, environments of this class do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<TtlPolicy>,

    /// Whether a request needs an approval before it is provisioned, and from whom.
    #[serde(default)]
    pub approval: ApprovalPolicy,

    /// Estimated monthly cost of one environment of this class, in whole US dollars;
    /// counted against the tenant's budget.
    #[serde(default, rename = "estimatedMonthlyCostUSD")]
    #[schemars(range(max = 1_000_000))]
    pub estimated_monthly_cost_usd: u32,

    /// Cluster names (as Argo CD knows them) environments of this class may run on.
    #[serde(default = "default_allowed_clusters")]
    #[schemars(length(min = 1, max = 64))]
    pub allowed_clusters: Vec<String>,

    /// How the environment's Argo CD Application is set up.
    #[serde(default)]
    pub argocd: ArgoCdPolicy,

    /// What Berth does when an environment's live objects no longer match the commit.
    #[serde(default)]
    pub drift: DriftPolicy,

    /// Platform freeze windows: while one covers now, no rollout commits a batch
    /// touching environments of this class and a change to this class waits to be
    /// re-rendered (a tenant's Rollout cannot remove them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub freeze_windows: Vec<super::FreezeWindow>,
}

/// What Berth does about drift (live objects changed by hand).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DriftPolicy {
    /// `Report` (default): `status.drift`, the `InSync` condition and a `Drifted`
    /// Warning event. `Remediate`: the same, and Berth asks Argo CD, once per episode
    /// of drift, to sync the drifted objects back to the commit (whatever
    /// `argocd.syncPolicy.selfHeal` says).
    #[serde(default)]
    pub mode: DriftMode,
}

/// Whether Berth only reports drift or also has Argo CD put it right.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DriftMode {
    /// Report drift in status and an event.
    #[default]
    Report,
    /// Report drift, and ask Argo CD to sync the drifted objects back.
    Remediate,
}

fn default_allowed_clusters() -> Vec<String> {
    vec![IN_CLUSTER.to_owned()]
}

/// Argo CD's name for the cluster it runs in.
pub const IN_CLUSTER: &str = "in-cluster";

/// Container defaults and bounds, rendered as a LimitRange of type Container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LimitRangeProfile {
    /// Requests given to containers that set none, e.g. `cpu: 100m`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::resource_list_schema")]
    pub default_request: BTreeMap<String, Quantity>,
    /// Limits given to containers that set none, e.g. `memory: 512Mi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::resource_list_schema")]
    pub default: BTreeMap<String, Quantity>,
    /// The most a single container may ask for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::resource_list_schema")]
    pub max: BTreeMap<String, Quantity>,
}

/// Which traffic reaches pods in an environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NetworkPolicyMode {
    /// No ingress at all, from inside or outside the namespace.
    #[default]
    DefaultDeny,
    /// Ingress only from pods in the same namespace.
    AllowSameNamespace,
}

/// Policy packs applied to an environment's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPacks {
    /// Pod Security Standard enforced in the namespace (`pod-security.kubernetes.io/enforce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurityLevel>,
}

/// A Pod Security Standards level.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// Unrestricted.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Current pod hardening best practice.
    Restricted,
}

/// Lifetime of environments of a class.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(super::duration::cel_at_most("self.default", "self.max"))
    .message("ttl.default must not be longer than ttl.max"))]
pub struct TtlPolicy {
    /// Lifetime of a request that asks for none, e.g. `72h`.
    pub default: GoDuration,
    /// The longest lifetime a request may ask for, e.g. `168h`.
    pub max: GoDuration,
}

/// Whether requests of a class need an approval, and who may give it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.required || size(self.approverGroups) > 0")
    .message("approval.required needs at least one entry in approval.approverGroups"))]
pub struct ApprovalPolicy {
    /// Requests are provisioned only with a valid approval from a member of `approverGroups`
    /// who is not the request's creator.
    #[serde(default)]
    pub required: bool,
    /// Groups whose members may approve requests of this class.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub approver_groups: Vec<String>,
}

/// How each environment's Argo CD Application is set up.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArgoCdPolicy {
    /// The Argo CD AppProject the Application belongs to.
    #[serde(default = "default_project")]
    pub project: String,
    /// Argo CD sync policy of the Application.
    #[serde(default)]
    pub sync_policy: SyncPolicy,
}

impl Default for ArgoCdPolicy {
    fn default() -> Self {
        Self { project: default_project(), sync_policy: SyncPolicy::default() }
    }
}

fn default_project() -> String {
    "default".to_owned()
}

/// Argo CD automated sync settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Sync automatically when the GitOps repository changes.
    #[serde(default)]
    pub automated: bool,
    /// Delete live objects that are no longer in git (needs `automated`).
    #[serde(default)]
    pub prune: bool,
    /// Revert changes made to live objects outside git (needs `automated`).
    #[serde(default)]
    pub self_heal: bool,
}

/// Observed state of an EnvironmentClass.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentClassStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many environments of this class exist.
    #[serde(default)]
    pub environments: u32,
    /// Current state: `Valid` tells whether the class can be used.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
