//! The digest an approval is bound to: a hash of the request's spec without its approval,
//! so changing anything that was approved (revision, TTL, cluster, …) voids the approval.
//! A rollout stage's approval is bound the same way to the rollout's spec without its
//! approvals and its run-time controls (`paused`, `abort`), which do not change what ships.

use std::fmt::Write;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::api::{EnvironmentRequestSpec, rollout::RolloutSpec};

/// Prefix of every digest; names the hash so it can change later without ambiguity.
pub const DIGEST_PREFIX: &str = "sha256:";

/// `sha256:<64 lowercase hex>` of the spec's [canonical JSON](canonical_json).
///
/// Should the spec ever fail to serialize (it cannot with today's types), the result
/// starts with `unhashable:` and equals no digest Berth ever signs, so verification
/// fails closed; [`try_spec_digest`] reports the error instead.
pub fn spec_digest(spec: &EnvironmentRequestSpec) -> String {
    try_spec_digest(spec).unwrap_or_else(|e| format!("unhashable: {e}"))
}

/// [`spec_digest`], with serialization errors reported; the issuer uses it so it never
/// signs anything but a real digest.
pub fn try_spec_digest(spec: &EnvironmentRequestSpec) -> Result<String, serde_json::Error> {
    Ok(hex_digest(&canonical_json(spec)?))
}

/// `sha256:<64 lowercase hex>` of the rollout spec's [canonical JSON](rollout_canonical_json);
/// fails closed like [`spec_digest`].
pub fn rollout_digest(spec: &RolloutSpec) -> String {
    try_rollout_digest(spec).unwrap_or_else(|e| format!("unhashable: {e}"))
}

/// [`rollout_digest`], with serialization errors reported (for the issuer).
pub fn try_rollout_digest(spec: &RolloutSpec) -> Result<String, serde_json::Error> {
    Ok(hex_digest(&rollout_canonical_json(spec)?))
}

/// The rollout spec as hashed: `approvals` removed and `paused`/`abort` at their
/// defaults (pausing, resuming or adding another stage's approval keeps approvals
/// valid), with keys sorted as in [`canonical_json`].
pub fn rollout_canonical_json(spec: &RolloutSpec) -> Result<Vec<u8>, serde_json::Error> {
    let shipped = RolloutSpec { approvals: Vec::new(), paused: false, abort: false, ..spec.clone() };
    serde_json::to_vec(&sorted(serde_json::to_value(&shipped)?))
}

fn hex_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut digest = String::with_capacity(DIGEST_PREFIX.len() + 2 * hash.len());
    digest.push_str(DIGEST_PREFIX);
    for byte in hash {
        // Writing to a String cannot fail.
        let _ = write!(digest, "{byte:02x}");
    }
    digest
}

/// The bytes that are hashed: the spec with `approval` removed, serialized through the
/// Rust type (so serde defaults apply the same whether it came from a file or the
/// apiserver), as compact JSON with object keys sorted at every level.
pub fn canonical_json(spec: &EnvironmentRequestSpec) -> Result<Vec<u8>, serde_json::Error> {
    let unapproved = EnvironmentRequestSpec { approval: None, ..spec.clone() };
    serde_json::to_vec(&sorted(serde_json::to_value(&unapproved)?))
}

/// Sorts object keys recursively. A no-op with serde_json's default (BTreeMap) map; with
/// `preserve_order` enabled by some other crate, it keeps the digest stable anyway.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
