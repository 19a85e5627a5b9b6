//! Drift (pure): does what is live still match what Berth committed?
//!
//! Berth renders an environment's manifests and Argo CD applies them; people and
//! controllers can change the live objects afterwards. This module compares the
//! committed YAML with live objects (as JSON, e.g. from reflectors) field by field,
//! over only the fields Berth renders, and turns the result into `status.drift`.
//! No client and no I/O here: the reflector wiring feeds it.

mod diff;
mod objects;
pub mod remediation;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use crate::api::environment_request::{Difference, DriftState, DriftStatus};
use crate::api::quantity::Quantity;
pub use diff::{MISSING_OBJECT_FIELD, diff};
pub use objects::{DesiredObject, ObjectKey, desired_objects, rendered_objects};

/// At most this many differences go into status: the CRD's `maxItems`.
pub const MAX_DIFFERENCES: usize = 100;

/// Why the committed files cannot be read back as objects. Berth rendered them, so
/// each of these is a bug in rendering or a hand-edited file, named here.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("{file} document {document} is not valid yaml: {source}")]
    Yaml { file: String, document: usize, source: serde_yaml::Error },
    #[error("{file} document {document} is not a yaml mapping")]
    NotAnObject { file: String, document: usize },
    #[error("{file} document {document} lacks apiVersion, kind or metadata.name")]
    MissingIdentity { file: String, document: usize },
}

/// Differences between every desired object and its live counterpart. Live objects
/// are matched by group, kind, namespace and name (not version: the apiserver serves
/// an object under every version of its group); live objects nothing desired matches
/// are ignored, since they may be the app's own.
pub fn diff_all<'a>(desired: impl IntoIterator<Item = &'a DesiredObject>, live_objects: &[Value]) -> Vec<Difference> {
    let keyed: Vec<(ObjectKey, &Value)> =
        live_objects.iter().filter_map(|object| ObjectKey::of(object).map(|key| (key, object))).collect();
    let live: BTreeMap<_, &Value> = keyed.iter().map(|(key, object)| (key.match_key(), *object)).collect();
    desired.into_iter().flat_map(|object| diff(object, live.get(&object.key.match_key()).copied())).collect()
}

/// The drift state for a list of differences, and the list capped at
/// [`MAX_DIFFERENCES`] so that status stays within the CRD's schema.
pub fn summarize(mut differences: Vec<Difference>) -> (DriftState, Vec<Difference>) {
    let state = if differences.is_empty() { DriftState::InSync } else { DriftState::Drifted };
    differences.truncate(MAX_DIFFERENCES);
    (state, differences)
}

/// `status.drift` for an environment: its rendered objects (its files parsed once,
/// [`desired_objects`]) against the live objects.
pub fn drift_status<'a>(
    desired: impl IntoIterator<Item = &'a DesiredObject>,
    live_objects: &[Value],
    checked_at: Time,
) -> DriftStatus {
    let (state, differences) = summarize(diff_all(desired, live_objects));
    DriftStatus { state, checked_at: Some(checked_at), differences, remediation: None }
}
