//! Freeze windows (periods when Berth commits no promotion and no class-wide
//! re-render) and `Freeze`, the cluster-wide freeze a platform admin sets.
//!
//! A window is one-shot (`start`/`end`) or recurring (`schedule` + `duration` in a
//! `timeZone`). Windows live on a Rollout (its authors'), on an EnvironmentClass
//! (the platform team's: a tenant cannot remove them) and on `Freeze` objects
//! (cluster-scoped: every rollout and class). What they mean is `crate::freeze`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::GoDuration;

/// The windows of a cluster-wide freeze (cluster-scoped, so only who may write
/// cluster objects, a platform admin, sets one). A rollback still goes on during it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "Freeze",
    plural = "freezes",
    doc = "A cluster-wide freeze: while one of its windows covers now, no rollout commits a batch and no EnvironmentClass change is re-rendered.",
    shortname = "bfz",
    category = "berth",
    printcolumn(name = "Windows", type_ = "string", json_path = ".spec.windows[*].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct FreezeSpec {
    /// The windows; the cluster is frozen while any of them covers now. Delete the
    /// Freeze (or remove a window) to end a freeze early.
    #[schemars(length(min = 1, max = 32))]
    pub windows: Vec<FreezeWindow>,
}

/// A period when nothing is committed: one-shot (`start` and `end`) or recurring
/// (`schedule`, `duration` and `timeZone`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.start) == has(self.end)")
    .message("a one-shot freeze window needs both start and end"))]
#[x_kube(validation = Rule::new("has(self.schedule) == has(self.duration)")
    .message("a recurring freeze window needs both schedule and duration"))]
#[x_kube(validation = Rule::new("has(self.start) != has(self.schedule)")
    .message("a freeze window is either one-shot (start and end) or recurring (schedule and duration)"))]
#[x_kube(validation = Rule::new("!has(self.timeZone) || has(self.schedule)")
    .message("timeZone applies to a recurring window (schedule)"))]
#[x_kube(validation = Rule::new("!has(self.start) || !has(self.end) || timestamp(self.start) < timestamp(self.end)")
    .message("a freeze window must end after it starts"))]
pub struct FreezeWindow {
    /// Start of a one-shot freeze (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,
    /// End of a one-shot freeze (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
    /// When a recurring freeze starts: a cron expression in `timeZone` (minute hour
    /// day-of-month month day-of-week, e.g. `0 17 * * 5` for Fridays at 17:00).
    /// Checked when the object is admitted; a schedule Berth cannot read counts as
    /// frozen (it never fails open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub schedule: Option<String>,
    /// How long each recurring freeze lasts, on the wall clock of `timeZone`
    /// (`0 17 * * 5` for `64h` ends Monday 09:00 local, also when the clocks change
    /// over the weekend). At most `8784h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<GoDuration>,
    /// IANA time zone of `schedule`, e.g. `Europe/Berlin`; default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// Why, shown to people waiting on a rollout or a class change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason: Option<String>,
}

impl FreezeWindow {
    /// A one-shot window.
    pub fn once(start: Time, end: Time, reason: Option<String>) -> Self {
        Self { start: Some(start), end: Some(end), reason, ..Self::default() }
    }

    /// A recurring window.
    pub fn recurring(schedule: &str, duration: GoDuration, time_zone: &str, reason: Option<String>) -> Self {
        Self {
            schedule: Some(schedule.to_owned()),
            duration: Some(duration),
            time_zone: Some(time_zone.to_owned()),
            reason,
            ..Self::default()
        }
    }
}
