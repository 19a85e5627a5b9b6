//! EnvironmentRequest: a team asks for an environment of a class for an app.
//!
//! One file per custom resource: the spec and status types stay together, and most
//! lines are the field docs and schema attributes that become the CRD's schema.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GoDuration, git_url};

/// A team's request for an environment of a class, for one app. Berth renders it,
/// commits it to the GitOps repository and reports its lifecycle in status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "EnvironmentRequest",
    doc = "A team's request for an environment of a class for an app; its lifecycle is in status.",
    namespaced,
    shortname = "envreq",
    category = "berth",
    status = "EnvironmentRequestStatus",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.class"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.namespace",
        description = "The environment's namespace"
    ),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentRequestSpec {
    /// The tenant (team) asking; must be the tenant that owns this namespace.
    /// Cannot change after creation.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("tenant cannot change after creation; create a new request instead"))]
    pub tenant: String,

    /// The EnvironmentClass to provision, e.g. `preview`. Cannot change after
    /// creation: request a new environment to move to another class.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("class cannot change after creation; create a new request of the other class instead"))]
    pub class: String,

    /// The app Argo CD deploys into the environment.
    pub app: AppSource,

    /// Cluster (as Argo CD names it) the environment runs on; must be allowed by the class.
    /// Cannot change after creation.
    #[serde(default = "default_cluster")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster cannot change after creation; create a new request on the other cluster instead"))]
    pub cluster: String,

    /// How long the environment lives, e.g. `48h`; defaults to the class's `ttl.default`
    /// and may not exceed its `ttl.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<GoDuration>,

    /// Person or channel accountable for this environment, for people reading it later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub owner: Option<String>,

    /// Approval for classes that require one: create the request without it (it waits
    /// in phase AwaitingApproval), then an approver runs `berth approve -n NAMESPACE
    /// NAME`; the token is bound to this request's UID and spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

fn default_cluster() -> String {
    super::environment_class::IN_CLUSTER.to_owned()
}

/// Where the app's manifests come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppSource {
    /// Name of the app, used in the Argo CD Application's name.
    #[schemars(length(min = 1, max = 53))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("app.name must be lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    pub name: String,
    /// Git repository holding the app's manifests, such as
    /// `https://git.example.com/team/app.git` or `git@git.example.com:team/app.git`.
    /// No credentials in it (no password, no token as user name; ssh URLs may name a
    /// user) and no whitespace: Argo CD's repository credentials hold those.
    #[serde(rename = "repoURL")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(
        validation = Rule::new(git_url::cel_characters_rule()).message(git_url::REPO_URL_CHARACTERS_MESSAGE),
        validation = Rule::new(git_url::cel_credentials_rule()).message(git_url::REPO_URL_CREDENTIALS_MESSAGE),
    )]
    pub repo_url: String,
    /// Folder inside the repository.
    #[serde(default = "default_path")]
    #[schemars(length(max = 1024))]
    pub path: String,
    /// Branch, tag or commit to deploy.
    #[serde(default = "default_revision")]
    #[schemars(length(min = 1, max = 256))]
    pub revision: String,
}

fn default_path() -> String {
    ".".to_owned()
}

fn default_revision() -> String {
    "HEAD".to_owned()
}

/// An approval of this request.
#[derive(KubeSchema, Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Signed approval token issued by Berth for this request (its UID) and its exact spec.
    #[schemars(length(min = 1, max = 8192))]
    pub token: String,
}

impl std::fmt::Debug for Approval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a bearer credential for this request: never print it.
        f.debug_struct("Approval").field("token", &"[redacted]").finish()
    }
}

/// Where an environment is in its lifecycle.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The class needs an approval the request does not (yet) carry.
    AwaitingApproval,
    /// Rendered and being committed, or waiting for Argo CD.
    Provisioning,
    /// Committed, synced and matching what was committed.
    Ready,
    /// The lifetime ended; the environment was removed from git.
    Expired,
    /// Cannot be provisioned as asked; see the conditions for why.
    Failed,
}

/// Observed state of an EnvironmentRequest.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentRequestStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Current state: `Approved`, `Committed`, `Synced`, `InSync` and `Ready`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The environment's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Where the environment lives in the GitOps repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<GitOpsStatus>,
    /// Sync and health of the environment's Argo CD Application.
    // Boxed, as is `promotion`: every cached request carries this struct, and inline
    // the two made a third of each copy's size (360 and 200 of 1,392 bytes) whether
    // set or not. The schema and YAML are the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Box<SyncStatus>>,
    /// Whether the live objects still match what Berth committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftStatus>,
    /// Estimated monthly cost of this environment, in whole US dollars.
    #[serde(default, rename = "estimatedMonthlyCostUSD", skip_serializing_if = "Option::is_none")]
    pub estimated_monthly_cost_usd: Option<u32>,
    /// When the environment expires and is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// The revision a Rollout promoted here; written only by the Rollout controller.
    /// It is deployed instead of `spec.app.revision` while the spec is unchanged
    /// since (`specGeneration`): a person's later spec edit wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Box<Promotion>>,
}

/// A Rollout's record on one of its environments. The Rollout never edits the
/// request's spec: the spec is what its approval covers and what its team applies
/// from their own git.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// The Rollout (same namespace).
    pub rollout: String,
    /// Its uid: a Rollout re-created under the same name is another rollout.
    #[serde(default)]
    pub rollout_uid: String,
    /// The revision promoted.
    pub revision: String,
    /// The revision deployed before; what a rollback restores.
    pub previous_revision: String,
    /// Stage and 1-based batch of the Rollout.
    pub stage: String,
    pub batch: u32,
    pub state: PromotionState,
    /// The batch's commit, once pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// SHA-256 (hex) of the files that commit holds for this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_digest: Option<String>,
    /// The `metadata.generation` of the spec this record applies to.
    pub spec_generation: i64,
    /// When the state last changed.
    pub since: Time,
}

/// Where an environment is in a rollout.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromotionState {
    /// Its batch's commit is being made: only that commit may change its folder.
    Committing,
    /// On the promoted revision.
    Committed,
    /// The rollback's commit is being made.
    RollingBack,
    /// Back on the previous revision; stays there until a new Rollout moves it.
    RolledBack,
}

impl PromotionState {
    /// Whether a batch commit (not the request's own reconcile) owns the folder now.
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Committing | Self::RollingBack)
    }

    /// Whether the previous revision is the one deployed: a batch's commit deploys
    /// its target only once confirmed, so until then (and if its rollout goes away
    /// mid-batch) the environment keeps what it ran.
    pub fn runs_previous(self) -> bool {
        matches!(self, Self::Committing | Self::RolledBack)
    }
}

impl EnvironmentRequest {
    /// The Rollout's record, while it applies: made for the current spec.
    pub fn promotion_in_effect(&self) -> Option<&Promotion> {
        let promotion = self.status.as_ref()?.promotion.as_ref()?;
        (Some(promotion.spec_generation) == self.metadata.generation).then_some(promotion)
    }

    /// The app revision to deploy: a Rollout's while its record applies, else the spec's.
    /// The one rule rendering, status and the Rollout's gates share.
    pub fn deployed_revision(&self) -> &str {
        match self.promotion_in_effect() {
            Some(p) if p.state.runs_previous() => &p.previous_revision,
            Some(p) => &p.revision,
            None => &self.spec.app.revision,
        }
    }

    /// The source the environment's Application deploys ([`Self::deployed_revision`]
    /// of the spec's repository and folder): what Argo CD must report having compared.
    pub fn deployed_source(&self) -> SyncSource {
        let app = &self.spec.app;
        SyncSource {
            repo_url: app.repo_url.clone(),
            path: app.path.clone(),
            target_revision: self.deployed_revision().to_owned(),
        }
    }
}

/// Where an environment lives in the GitOps repository.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GitOpsStatus {
    /// Commit that last changed the environment's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The environment's folder in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// SHA-256 (hex) of the files committed for the environment. While the rendering
    /// stays the same, `commit` stays the one recorded (it holds exactly these files),
    /// so neither a restart nor a later commit to other folders rewrites the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_digest: Option<String>,
}

/// Sync and health of the Argo CD Application, as Argo CD reports them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// `Synced`, `OutOfSync` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Git revision Argo CD last synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The source Argo CD last compared the live objects with (`status.sync.comparedTo`).
    /// Until it is the source Berth rendered for the current spec, Argo CD's sync and
    /// health are about the previous one, and the environment is not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_to: Option<SyncSource>,
    /// Argo CD's last sync operation (`status.operationState`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<SyncOperation>,
    /// What runs: the source and revision of Argo CD's last completed sync of the
    /// Application (the newest entry of its `status.history`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveRevision>,
    /// Berth's commit for the current spec (`status.gitops.commit`) while Argo CD has
    /// not synced it yet; absent once the environment runs it. With `live`, it tells
    /// "committed" from "running".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_commit: Option<String>,
}

/// A source Argo CD deployed, and the commit it resolved to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LiveRevision {
    /// The source as the Application named it then.
    pub source: SyncSource,
    /// The git commit of that source Argo CD applied.
    #[serde(default)]
    pub revision: String,
    /// When Argo CD finished applying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<Time>,
}

/// An Application's source: which repository, folder and revision it deploys.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncSource {
    /// The git repository.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// The folder in it.
    #[serde(default)]
    pub path: String,
    /// The branch, tag or commit asked for.
    #[serde(default)]
    pub target_revision: String,
}

/// One Argo CD sync operation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncOperation {
    /// `Running`, `Terminating`, `Succeeded`, `Failed` or `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The revision it synced (or is syncing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Argo CD's message about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Drift between what Berth committed and what is live.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    /// `InSync`, `Drifted` or `Unknown`.
    pub state: DriftState,
    /// When the live objects were last compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,
    /// Fields whose live value differs from the committed one.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub differences: Vec<Difference>,
    /// Berth's request that Argo CD sync the drifted objects back (class
    /// `drift.mode: Remediate`), once per episode of drift; absent while in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<Remediation>,
}

/// Where Berth's request to sync drifted objects back stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remediation {
    /// Not asked yet: Argo CD is running an operation on the Application that applied
    /// the objects (or the request failed); Berth asks once it is done.
    Pending,
    /// Berth set a sync operation on that Application; it asks no more this episode.
    Requested,
}

/// Whether live objects match what was committed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftState {
    /// Every rendered field matches.
    InSync,
    /// At least one rendered field differs or an object is missing.
    Drifted,
    /// Not compared yet, or the live objects cannot be read.
    Unknown,
}

/// One field that differs between the committed and the live object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// The object, as `Kind/namespace/name`.
    pub resource: String,
    /// JSON path of the field, e.g. `spec.hard.cpu`; empty when the whole object is
    /// missing (then neither `desired` nor `live` is set).
    pub field: String,
    /// Committed value, as JSON; absent when the field should not exist or the whole
    /// object is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    /// Live value, as JSON; absent when the field or object is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
}
