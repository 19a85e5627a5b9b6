//! Rollout: promotes a revision across environments, stage by stage, batch by batch.
//!
//! The spec says what to promote where; the status stays small whatever the fleet
//! size (counts, the current batch, bounded failure and history lists). Where each
//! environment stands lives on its EnvironmentRequest (`status.promotion`, see
//! [`super::environment_request::Promotion`]), so `kubectl get envreq -l app=x` shows it.
//!
//! One file per custom resource, as for the others: the spec and status types stay
//! together. It runs past the project's ~400 lines because about half its lines are
//! the field docs and schema attributes that become the CRD's published schema.

use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::{Condition, LabelSelector, Time},
    util::intstr::IntOrString,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::GoDuration;
pub use super::freeze::FreezeWindow;

/// Most stages in a rollout.
pub const MAX_STAGES: usize = 16;
/// Most environments one rollout plans (its status lists their names).
pub const MAX_ENVIRONMENTS: usize = 10_000;
/// Most failures kept in status (newest kept).
pub const MAX_FAILURES: usize = 50;
/// Most history lines kept in status (git holds the rest).
pub const MAX_HISTORY: usize = 64;
/// Longest failure message kept in status.
pub const MAX_FAILURE_MESSAGE: usize = 256;
/// Most skipped environments named in status (all are counted).
pub const MAX_SKIPPED_NAMES: usize = 100;

/// Label that holds an environment back from every rollout (`"true"`).
pub const HOLD_LABEL: &str = "berth.dev/hold";
/// Annotation a person (or `berth rollout retry`) sets to any new value to have a
/// failed batch's gate looked at again.
pub const RETRY_ANNOTATION: &str = "berth.dev/retry";

/// Promotes an app revision to the environments `selector` picks, stage by stage and
/// batch by batch, each batch one commit, gated on Argo CD and drift.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "Rollout",
    doc = "Promotes a revision across environments in stages and batches, gated on Argo CD health and drift, with pause, abort and rollback.",
    namespaced,
    shortname = "bro",
    category = "berth",
    status = "RolloutStatus",
    printcolumn(name = "Revision", type_ = "string", json_path = ".spec.revision"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Stage", type_ = "string", json_path = ".status.currentStage"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// The app to promote: every environment the rollout touches deploys it
    /// (`spec.app.name` of the EnvironmentRequest); others are skipped and counted.
    #[schemars(length(min = 1, max = 53))]
    pub app: String,

    /// Branch, tag or commit to promote (a tag or commit is what you want: a branch
    /// moves under the rollout). Cannot change: create a new Rollout for another revision.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("revision cannot change; create a new Rollout for another revision"))]
    pub revision: String,

    /// Picks the EnvironmentRequests (in this namespace) the rollout may touch.
    /// Requests labelled `berth.dev/hold: "true"` are skipped and counted.
    pub selector: LabelSelector,

    /// Stages in order; a stage starts when the one before it finished. Each
    /// environment belongs to the first stage that matches it.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("size(self) > 0").message("a rollout needs at least one stage"))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))")
        .message("stage names must be unique"))]
    pub stages: Vec<Stage>,

    /// Periods when no batch is committed (a batch committed before one starts is
    /// still verified; a rollback may proceed), on top of the windows of the
    /// environments' classes and the cluster's `Freeze` objects.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub freeze_windows: Vec<FreezeWindow>,

    /// Do not start before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,

    /// Finish the batch in flight, verify it, and start nothing new; set back to
    /// false to go on.
    #[serde(default)]
    pub paused: bool,

    /// Stop for good, at once: no further batch is committed. Confirmed batches stay
    /// promoted; a batch marked but not yet confirmed goes back to its previous
    /// revision. Cannot be undone.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self || !oldSelf").message("an aborted rollout stays aborted; create a new Rollout"))]
    pub abort: bool,

    /// What to do when a stage has more failed environments than it allows.
    #[serde(default)]
    pub on_failure: FailurePolicy,

    /// What a rollback restores: the failed batch, its whole stage, or everything
    /// this rollout committed.
    #[serde(default)]
    pub rollback_scope: RollbackScope,

    /// Signed approvals of stages (`berth approve rollout NAME --stage S` prints
    /// them), one per stage at most. A stage that touches environments of a class
    /// whose approval is required, or sets `requireApproval`, waits for its own.
    /// Editable after the rollout started; an approval accepted when its stage
    /// started stays valid for that stage while the rest of the spec (`paused` and
    /// `abort` aside) is unchanged: after a change, the stage's batches still to come
    /// wait for an approval of the new spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.stage == a.stage))")
        .message("one approval per stage"))]
    pub approvals: Vec<StageApproval>,
}

/// A signed approval of one stage of this rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StageApproval {
    /// The stage it approves (a name in `stages`).
    #[schemars(length(min = 1, max = 63))]
    pub stage: String,
    /// The token `berth approve rollout` printed: bound to this rollout, the stage,
    /// the revision and the spec (approvals, `paused` and `abort` aside).
    #[schemars(length(min = 1, max = 8192))]
    pub token: String,
}

impl std::fmt::Debug for StageApproval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A bearer credential for the stage: never printed.
        f.debug_struct("StageApproval").field("stage", &self.stage).field("token", &"[redacted]").finish()
    }
}

/// One step of a rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Unique name of the stage, e.g. `canary`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Classes of the environments in this stage; empty means any class.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub classes: Vec<String>,
    /// Further narrows the environments in this stage, on top of the rollout's selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Environments committed at once: a count (`10`) or a share of the stage
    /// (`"10%"`, rounded down, at least 1). Each batch is one commit.
    #[serde(default = "one")]
    #[schemars(schema_with = "batch_size_schema")]
    pub batch_size: IntOrString,
    /// Environments of this stage that may fail their gate without failing the
    /// stage: a count (`2`) or a share of the stage (`"5%"`, rounded down). Default 0.
    #[serde(default = "zero")]
    #[schemars(schema_with = "max_failures_schema")]
    pub max_failures: IntOrString,
    /// What must hold before the next batch starts.
    #[serde(default)]
    pub health_gate: HealthGate,
    /// The stage waits for an approval (in `approvals`) from an owner of the
    /// rollout's tenant before it starts. A stage whose environments include a class
    /// whose approval is required waits for one from that class's approvers whatever
    /// this says.
    #[serde(default)]
    pub require_approval: bool,
    /// Prometheus queries each batch of the stage must pass, on top of the health
    /// gate (Prometheus itself is an operator setting: `BERTH_PROMETHEUS_URL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.all(m, self.exists_one(n, n.name == m.name))")
        .message("metric names must be unique within a stage"))]
    pub metrics: Vec<MetricGate>,
}

/// Most metric results a batch keeps in status (a `{{namespace}}` query has one per environment).
pub const MAX_METRIC_RESULTS: usize = 500;
/// Longest resolved query kept in status.
pub const MAX_RESOLVED_QUERY: usize = 512;

/// An instant PromQL query judged against `min`/`max` every `interval` while a batch
/// is verified. Placeholders, substituted escaped for a PromQL string literal (write
/// them inside `"…"` or `'…'`, never in a `` `…` `` raw string): `{{namespaces}}` (the batch's environment namespaces as a
/// regex alternation, for `=~`), `{{namespace}}` (one environment's namespace: the
/// query then runs once per environment), `{{revision}}`, `{{app}}`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.min) || has(self.max)").message("a metric gate needs min, max or both"))]
pub struct MetricGate {
    /// Name shown in status and events, e.g. `error-rate`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Instant PromQL query, e.g.
    /// `sum(rate(http_errors_total{namespace=~"{{namespaces}}"}[2m]))`.
    #[schemars(length(min = 1, max = 2048))]
    pub query: String,
    /// Every value of the result must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Every value of the result must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Time between measurements; the first is one interval after the batch's commit
    /// (or merge). Default `1m`; shorter than the stage's progress deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    /// Failed measurements tolerated: the metric fails the batch at one more. Default 0.
    #[serde(default)]
    #[schemars(range(max = 100))]
    pub failure_limit: u32,
    /// What an empty result (or only NaN) means.
    #[serde(default)]
    pub on_no_data: NoDataPolicy,
}

/// What a metric gate does when its query returns nothing (an empty vector or NaN).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NoDataPolicy {
    /// Keep waiting for data: the batch is held (its progress deadline does not end
    /// the wait; during its soak, a gap in the data is ignored).
    #[default]
    Wait,
    /// Count it as a passed measurement.
    Pass,
    /// Count it as a failed measurement.
    Fail,
}

/// A count or a percentage. OpenAPI's `minimum`/`maximum` apply only to the integer
/// form and `pattern`/`maxLength` only to the string form, so plain schema checks do
/// what a CEL rule would, without CEL's cost on an unbounded string.
fn count_or_percentage(description: &str, min: u32, percent: &str) -> schemars::Schema {
    schemars::json_schema!({
        "description": description,
        "x-kubernetes-int-or-string": true,
        "minimum": min,
        "maximum": 10000,
        "pattern": percent,
        "maxLength": 4,
    })
}

fn batch_size_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = count_or_percentage(
        "Environments committed at once: a count from 1 to 10000 (`10`) or a share of the stage from 1% to 100% (`\"10%\"`, rounded down, at least 1). Each batch is one commit.",
        1,
        "^([1-9][0-9]?|100)%$",
    );
    schema.insert("default".to_owned(), 1.into());
    schema
}

fn max_failures_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = count_or_percentage(
        "Environments of this stage that may fail their gate without failing the stage: a count (`2`) or a share of the stage (`\"5%\"`, rounded down). Default 0.",
        0,
        "^([0-9]|[1-9][0-9]|100)%$",
    );
    schema.insert("default".to_owned(), 0.into());
    schema
}

fn one() -> IntOrString {
    IntOrString::Int(1)
}

fn zero() -> IntOrString {
    IntOrString::Int(0)
}

/// What must hold for an environment of a batch to count as promoted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthGate {
    /// Argo CD reports the Application synced and healthy at the promoted revision
    /// (never the status from before the change).
    #[serde(default = "yes")]
    pub require_synced: bool,
    /// Berth's drift check finds the live objects matching the promoted commit.
    #[serde(default = "yes")]
    pub require_no_drift: bool,
    /// How long the whole batch must stay healthy before the next one starts, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<GoDuration>,
    /// How long an environment may take to become healthy after its batch was
    /// committed before it counts as failed. Default `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<GoDuration>,
    /// How long a failing signal (Degraded, a failed sync, drift) may last before it
    /// counts: flapping shorter than this is ignored. Default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<GoDuration>,
}

impl Default for HealthGate {
    fn default() -> Self {
        Self { require_synced: true, require_no_drift: true, soak: None, progress_deadline: None, tolerance: None }
    }
}

fn yes() -> bool {
    true
}

/// What a rollout does when a stage fails its gate.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Stop and wait for a person (`retry`, `abort`, or a new Rollout).
    #[default]
    Pause,
    /// Commit the previous revision back (see `rollbackScope`), then stop.
    Rollback,
}

/// What a rollback restores.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RollbackScope {
    /// The batch whose gate failed.
    #[default]
    Batch,
    /// Every batch of the stage that failed.
    Stage,
    /// Every batch this rollout committed.
    All,
}

/// Where a rollout is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutPhase {
    /// Not planned yet.
    Pending,
    /// Planned, waiting for `notBefore`, a freeze window to end, an approval, or
    /// environments another rollout holds.
    Waiting,
    /// Committing a batch or waiting for its gate.
    Progressing,
    /// Stopped by `paused` or by a failed gate; `reason` says which.
    Paused,
    /// Every stage promoted.
    Succeeded,
    /// Committing previous revisions back after a failed gate.
    RollingBack,
    /// The rollback is committed; terminal.
    RolledBack,
    /// Stopped for good by `abort`; terminal.
    Aborted,
    /// Cannot run as written (see the message); waits for a spec change.
    Failed,
}

impl RolloutPhase {
    /// Whether nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::RolledBack | Self::Aborted)
    }
}

impl RolloutStatus {
    /// Whether a batch (a promotion or a rollback) was marked and its commit is not
    /// confirmed yet.
    pub fn commit_in_flight(&self) -> bool {
        self.stages.iter().any(|s| s.current.as_ref().is_some_and(|b| b.step == BatchStep::Marked))
            || self.rollback_marked()
    }

    fn rollback_marked(&self) -> bool {
        self.rollback.as_ref().is_some_and(|r| r.step == Some(BatchStep::Marked))
    }

    /// Whether the rollout still owns the folders of its marked environments: a batch
    /// is in flight and the rollout goes on, or was aborted and has yet to confirm
    /// whether that batch's commit landed.
    pub fn owns_marked_folders(&self) -> bool {
        let ended = self.phase.is_some_and(|p| p.is_terminal() && p != RolloutPhase::Aborted);
        self.commit_in_flight() && !ended
    }
}

/// Observed state of a Rollout: small whatever the fleet size.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the rollout is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// Why it is there, machine-readable (e.g. `Soaking`, `GateFailed`, `Blocked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One line a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Environments promoted out of those planned, e.g. `230/1000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Name of the stage being promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_stage: Option<String>,
    /// What the rollout selected and skipped, frozen when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// Each stage: its environments in batch order, counts, and the batch in flight.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub stages: Vec<StageStatus>,
    /// The rollback in flight or done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,
    /// Environments that failed their gate (newest 50).
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub failures: Vec<GateFailure>,
    /// One line per batch committed or rolled back (newest 64; git holds the rest).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub history: Vec<HistoryEntry>,
    /// While a freeze window holds the next batch: which windows, and when commits
    /// may go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<FrozenStatus>,
    /// The `berth.dev/retry` annotation value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried: Option<String>,
    /// `Ready` (succeeded), `Progressing`, `Degraded` (a gate failed).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The freeze holding a rollout's next batch.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FrozenStatus {
    /// The windows covering now, e.g. `EnvironmentClass production: No weekend
    /// changes (0 17 * * 5 for 64h in Europe/Berlin)` (the first 8).
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub windows: Vec<String>,
    /// When no window covers the batch any more and it is committed; absent when
    /// Berth finds no end (an unreadable window, or frozen for more than a year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<Time>,
    /// When the next freeze after that starts, if one is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<Time>,
}

/// What a rollout selected, frozen when it started.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Environments planned across all stages.
    pub environments: u32,
    /// Selected but skipped, by reason (`Held`, `OtherApp`, `NoStage`, `Busy`).
    #[serde(default)]
    pub skipped: u32,
    /// The first skipped environments and why (at most 100; all are counted).
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub skipped_environments: Vec<Skipped>,
    /// When the plan was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_at: Option<Time>,
}

/// An environment the selector matched that the rollout leaves alone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// The EnvironmentRequest's name.
    pub name: String,
    /// `Held` (labelled `berth.dev/hold`), `OtherApp`, `NoStage` (no stage matches)
    /// or `Busy` (another active rollout holds it).
    pub reason: String,
}

/// Where a stage is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StagePhase {
    /// Not started.
    #[default]
    Pending,
    /// Committing or verifying its batches.
    Progressing,
    /// Every batch passed its gate.
    Succeeded,
    /// More environments failed than `maxFailures` allows.
    Failed,
    /// Its batches were committed back to their previous revision.
    RolledBack,
}

/// One stage's plan and progress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    pub name: String,
    #[serde(default)]
    pub phase: StagePhase,
    /// Its environments in batch order (request names).
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub environments: Vec<String>,
    /// Environments per batch, resolved from `batchSize` when planned.
    pub batch_size: u32,
    /// Failed environments the stage tolerates, resolved from `maxFailures`.
    #[serde(default)]
    pub max_failures: u32,
    /// Batches of the stage done (passed their gate).
    #[serde(default)]
    pub batches_done: u32,
    #[serde(default)]
    pub counts: StageCounts,
    /// The batch in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<BatchStatus>,
    /// The approval accepted when the stage started (it stays valid for the stage
    /// while the spec it approved is unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<AcceptedApproval>,
}

/// An approval of a stage, as Berth accepted it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedApproval {
    /// Who approved (the token's subject).
    pub approver: String,
    /// When they approved (the token's issue time).
    pub approved_at: Time,
    /// When Berth accepted it for the stage.
    pub accepted_at: Time,
    /// The key that signed it.
    pub key_id: String,
    /// Break-glass: the approval lets this stage commit through a freeze.
    #[serde(default)]
    pub freeze_override: bool,
    /// The classes (whose approval is required) the approver was checked against:
    /// an environment of any other such class is left alone by the stage's batches
    /// (one re-created under a planned name in another class, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub classes: Vec<String>,
    /// The digest of the spec it approved (approvals, `paused` and `abort` aside): once
    /// the spec changes, the stage's batches still to come wait for a new approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    pub spec_digest: Option<String>,
    /// When the token expires: a break-glass approval lets batches commit during a
    /// freeze only until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// The token's id: once it is revoked, the stage's batches still to come wait for
    /// a new approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub token_id: Option<String>,
}

impl AcceptedApproval {
    /// Whether it approved the spec whose [digest](crate::approval::digest::rollout_digest)
    /// is `digest` (one recorded without a digest covers none).
    pub fn covers(&self, digest: &str) -> bool {
        self.spec_digest.as_deref() == Some(digest)
    }
}

/// How many of a stage's environments are where.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StageCounts {
    pub pending: u32,
    pub committing: u32,
    pub verifying: u32,
    pub promoted: u32,
    pub failed: u32,
    pub rolled_back: u32,
}

/// Where a batch's commit is (each step idempotent, so a new leader repeats the
/// step it cannot prove done and never makes a second commit).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchStep {
    /// The batch's environments carry a promotion record; the commit may not be made yet.
    Marked,
    /// The batch's commit is on the branch; its environments are being verified.
    Committed,
}

/// The batch in flight.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchStatus {
    /// 1-based batch number within the stage.
    pub number: u32,
    /// Batches in the stage.
    pub of: u32,
    pub step: BatchStep,
    /// The environments this batch marked (and commits): the batch's planned ones
    /// that were still there and not held when it started.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub environments: Vec<String>,
    /// Those that failed the gate (counted once, whatever the failure list keeps).
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub failed: Vec<String>,
    /// When every environment first passed: from then on the progress deadline no
    /// longer applies, only the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
    /// The batch's commit, once pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<Time>,
    /// Pull-request mode: when the batch's commit was first seen on the watched
    /// branch (its pull request merged). The progress deadline counts from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_at: Option<Time>,
    /// When every environment of the batch (failures allowed aside) first passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<Time>,
    /// When the soak ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_until: Option<Time>,
    /// Environments of the batch by gate verdict.
    #[serde(default)]
    pub gate: GateTally,
    /// Environments whose signal fails, since when (counted once past `tolerance`).
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub failing: Vec<Failing>,
    /// The latest measurement of each metric gate (per environment for a
    /// `{{namespace}}` query).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub metrics: Vec<MetricResult>,
    /// Break-glass: the approver whose freeze-override approval let this batch
    /// commit during a freeze (also in the commit's `Berth-Freeze-Override` trailer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_override: Option<String>,
}

/// What one measurement of a metric gate said.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasurementVerdict {
    /// Every value within bounds (or no data with `onNoData: Pass`).
    Pass,
    /// A value out of bounds (or no data with `onNoData: Fail`): counted.
    Fail,
    /// No data with `onNoData: Wait`.
    NoData,
    /// Prometheus could not be asked or answered an error: not counted, the gate waits.
    Error,
}

/// A metric gate's latest measurement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    /// The environment a `{{namespace}}` query measured; none for the whole batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The query as sent (first 512 characters).
    #[schemars(length(max = 512))]
    pub query: String,
    /// The values of the last answer, as Prometheus wrote them (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub value: Option<String>,
    pub verdict: MeasurementVerdict,
    /// Why, when it did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub message: Option<String>,
    /// Measurements taken and failed so far in this batch.
    #[serde(default)]
    pub measurements: u32,
    #[serde(default)]
    pub failures: u32,
    pub measured_at: Time,
}

/// Gate verdicts of a batch's environments.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GateTally {
    pub passed: u32,
    pub waiting: u32,
    pub failing: u32,
    pub failed: u32,
}

/// An environment whose gate signal fails, not yet past `tolerance`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Failing {
    pub environment: String,
    pub since: Time,
}

/// An environment that failed its gate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GateFailure {
    pub environment: String,
    pub stage: String,
    pub batch: u32,
    /// `Degraded`, `SyncFailed`, `Drifted`, `ProgressDeadline`, `Superseded`…
    pub reason: String,
    #[schemars(length(max = 256))]
    pub message: String,
    pub at: Time,
}

/// The rollback in flight or done: batches committed back, newest first.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStatus {
    /// Batches still to roll back, in order (newest committed first).
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub pending: Vec<BatchRef>,
    /// The batch being rolled back and its step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<BatchRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<BatchStep>,
    /// Batches rolled back so far.
    #[serde(default)]
    pub done: u32,
}

/// A batch of a stage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BatchRef {
    pub stage: String,
    /// 1-based.
    pub batch: u32,
    /// The commit that promoted it (a rollback names it in `Berth-Rollback-Of`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// What happened to a batch.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryAction {
    Promote,
    Rollback,
}

/// One batch committed (promoted or rolled back).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub stage: String,
    pub batch: u32,
    pub action: HistoryAction,
    pub commit: String,
    pub environments: u32,
    pub at: Time,
}
