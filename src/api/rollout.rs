//! Rollout: promotes a revision across environments, stage by stage.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::GoDuration;

/// Promotes an app revision to the environments `selector` picks, stage by stage,
/// each stage gated on health, optionally on approval, and never inside a freeze window.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "Rollout",
    doc = "Promotes a revision across environments in stages, with health gates, approvals and freeze windows.",
    namespaced,
    shortname = "bro",
    category = "berth",
    status = "RolloutStatus",
    printcolumn(name = "Revision", type_ = "string", json_path = ".spec.revision"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Stage", type_ = "string", json_path = ".status.currentStage"),
    printcolumn(name = "Paused", type_ = "boolean", json_path = ".spec.paused"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Branch, tag or commit to promote.
    #[schemars(length(min = 1, max = 256))]
    pub revision: String,

    /// Picks the EnvironmentRequests (in this namespace) the rollout may touch.
    pub selector: LabelSelector,

    /// Stages in order; a stage starts when the one before it finished and held its gate.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("size(self) > 0").message("a rollout needs at least one stage"))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))")
        .message("stage names must be unique"))]
    pub stages: Vec<Stage>,

    /// Periods when nothing is promoted, e.g. a release freeze.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub freeze_windows: Vec<FreezeWindow>,

    /// Do not start before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,

    /// Stop promoting after the current batch; set back to false to go on.
    #[serde(default)]
    pub paused: bool,

    /// What to do when a gate fails.
    #[serde(default)]
    pub on_failure: FailurePolicy,
}

/// One step of a rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Unique name of the stage, e.g. `staging`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Classes of the environments in this stage; empty means any class.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub classes: Vec<String>,
    /// Further narrows the environments in this stage, on top of the rollout's selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// How many environments are promoted at once.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub batch_size: u32,
    /// What must hold before the next batch starts.
    #[serde(default)]
    pub health_gate: HealthGate,
    /// The stage waits for an approval before it starts.
    #[serde(default)]
    pub require_approval: bool,
}

fn default_batch_size() -> u32 {
    1
}

/// What must hold for a batch to count as promoted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthGate {
    /// Argo CD reports the Application synced at the new revision and healthy.
    #[serde(default = "yes")]
    pub require_synced: bool,
    /// The environment shows no drift.
    #[serde(default = "yes")]
    pub require_no_drift: bool,
    /// How long the batch must stay healthy, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<GoDuration>,
}

impl Default for HealthGate {
    fn default() -> Self {
        Self { require_synced: true, require_no_drift: true, soak: None }
    }
}

fn yes() -> bool {
    true
}

/// A period when nothing is promoted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("timestamp(self.start) < timestamp(self.end)")
    .message("a freeze window must end after it starts"))]
pub struct FreezeWindow {
    /// Start of the freeze (RFC 3339).
    pub start: Time,
    /// End of the freeze (RFC 3339).
    pub end: Time,
    /// Why, shown to people waiting on the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason: Option<String>,
}

/// What a rollout does when a gate fails.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Stop and wait for a person.
    #[default]
    Pause,
    /// Put the failed batch back on its previous revision, then stop.
    Rollback,
}

/// Where a rollout is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutPhase {
    /// Waiting for `notBefore`, a freeze window to end, or an approval.
    Waiting,
    /// Promoting a batch or waiting for its gate.
    Progressing,
    /// Stopped by `paused` or by a failed gate.
    Paused,
    /// Every stage promoted.
    Succeeded,
    /// A gate failed and the batch was rolled back.
    RolledBack,
}

/// Observed state of a Rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the rollout is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// Name of the stage being promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_stage: Option<String>,
    /// Progress of each environment the rollout touches.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub environments: Vec<EnvironmentProgress>,
    /// Current state of the rollout.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Progress of one environment in a rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentProgress {
    /// The EnvironmentRequest's name.
    pub name: String,
    /// The stage it belongs to.
    pub stage: String,
    /// Revision it runs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `Pending`, `Promoting`, `Promoted`, `Failed` or `RolledBack`.
    pub state: String,
}
