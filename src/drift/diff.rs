//! Field-by-field comparison of one desired object with its live counterpart.
//!
//! Only fields Berth renders are compared: the walk follows the desired object, so
//! whatever the apiserver and other controllers add (uid, managedFields, defaults,
//! status) is never drift. What stays is a change to a value Berth set, a field or
//! list element Berth set that is gone, or an element added to a list Berth owns.

use serde_json::{Map, Value};

use super::{DesiredObject, Quantity};
use crate::api::environment_request::Difference;

/// `field` of the difference reported for a desired object that is not live at all.
/// Such a difference carries neither `desired` nor `live`: `resource` already names
/// the object, and a copy of its identity (once set as `desired`) made every status
/// of an environment Argo CD had not applied yet twice as large, in etcd and in every
/// cached copy.
pub const MISSING_OBJECT_FIELD: &str = "";

/// Differences between a desired object and the live one (`None` when it does not
/// exist), in the desired object's field order.
pub fn diff(desired: &DesiredObject, live: Option<&Value>) -> Vec<Difference> {
    let mut walk =
        Walk { resource: desired.key.to_string(), quantities: desired.key.is_built_in(), differences: Vec::new() };
    let Some(live) = live else {
        walk.report(MISSING_OBJECT_FIELD.to_owned(), None, None);
        return walk.differences;
    };
    let Some(fields) = desired.body.as_object() else {
        return walk.differences;
    };
    for (key, value) in fields {
        match key.as_str() {
            // Identity was matched already; status is the cluster's to write.
            "apiVersion" | "kind" | "status" => {}
            "metadata" => walk.metadata(value, live.get("metadata")),
            _ => walk.value(key_path("", key), value, present(live.get(key))),
        }
    }
    walk.differences
}

struct Walk {
    resource: String,
    /// Compare numbers and numeric strings as Kubernetes quantities (built-in kinds).
    quantities: bool,
    differences: Vec<Difference>,
}

impl Walk {
    fn report(&mut self, field: String, desired: Option<&Value>, live: Option<&Value>) {
        self.differences.push(Difference {
            resource: self.resource.clone(),
            field,
            desired: desired.map(Value::to_string),
            live: live.map(Value::to_string),
        });
    }

    /// Of metadata only the labels and annotations Berth sets matter; name and
    /// namespace are identity, and the rest (uid, finalizers, owners) is the cluster's.
    /// Values compare exactly: an empty label value is still a value.
    fn metadata(&mut self, desired: &Value, live: Option<&Value>) {
        for section in ["labels", "annotations"] {
            let Some(wanted) = desired.get(section).and_then(Value::as_object) else {
                continue;
            };
            let path = key_path("metadata", section);
            let live_section = live.and_then(|m| m.get(section));
            for (key, value) in wanted {
                let live_value = present(live_section.and_then(|s| s.get(key)));
                if live_value != Some(value) {
                    self.report(key_path(&path, key), Some(value), live_value);
                }
            }
        }
    }

    fn value(&mut self, path: String, desired: &Value, live: Option<&Value>) {
        let Some(live) = live else {
            if !is_zero(desired) {
                self.report(path, Some(desired), None);
            }
            return;
        };
        match (desired, live) {
            (Value::Object(wanted), Value::Object(actual)) => self.object(path, wanted, actual),
            (Value::Array(wanted), Value::Array(actual)) => self.list(path, wanted, actual),
            (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
                self.report(path, Some(desired), Some(live));
            }
            _ => {
                if !self.scalars_equal(desired, live) {
                    self.report(path, Some(desired), Some(live));
                }
            }
        }
    }

    fn object(&mut self, path: String, wanted: &Map<String, Value>, actual: &Map<String, Value>) {
        // An empty desired object is a statement, not a gap: `podSelector: {}` selects
        // every pod, and a live selector with labels narrows what Berth allowed.
        if wanted.is_empty() && !actual.is_empty() {
            self.report(path, Some(&Value::Object(wanted.clone())), Some(&Value::Object(actual.clone())));
            return;
        }
        for (key, value) in wanted {
            self.value(key_path(&path, key), value, present(actual.get(key)));
        }
    }

    /// Lists of named objects (subjects, containers, ports) match by name, so order
    /// does not matter and an added element is reported; other lists of equal length
    /// compare element by element, so defaults inside elements are not drift; lists
    /// whose length changed are reported whole.
    fn list(&mut self, path: String, wanted: &[Value], actual: &[Value]) {
        if let (Some(wanted_names), Some(actual_names)) = (unique_names(wanted), unique_names(actual)) {
            for (name, value) in wanted_names.iter().zip(wanted) {
                let live = actual_names.iter().position(|n| n == name).and_then(|i| actual.get(i));
                self.value(name_path(&path, name), value, live);
            }
            for (name, value) in actual_names.iter().zip(actual) {
                if !wanted_names.contains(name) {
                    self.report(name_path(&path, name), None, Some(value));
                }
            }
        } else if wanted.len() == actual.len() {
            for (index, (value, live)) in wanted.iter().zip(actual).enumerate() {
                self.value(format!("{path}[{index}]"), value, present(Some(live)));
            }
        } else {
            self.report(path, Some(&Value::from(wanted.to_vec())), Some(&Value::from(actual.to_vec())));
        }
    }

    /// Equal as written, or — where the apiserver canonicalises — equal as quantities:
    /// `0.5` and `500m`, `1024Mi` and `1Gi`, `2` and `"2"` (also int-or-string ports).
    /// Custom resources are stored as written, so there only numbers compare by value.
    fn scalars_equal(&self, desired: &Value, live: &Value) -> bool {
        if desired == live {
            return true;
        }
        let numeric = |v: &Value| v.is_number() || (self.quantities && v.is_string());
        numeric(desired)
            && numeric(live)
            && matches!(
                (Quantity::from_json(desired), Quantity::from_json(live)),
                (Some(a), Some(b)) if a == b
            )
    }
}

/// A live field set to `null` is as good as absent.
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

/// Go's `omitempty` drops zero values, so a desired `""`, `false`, `0` or `[]` that
/// reads back absent is not drift. An empty object is not a zero value: Go never
/// omits a struct or a set pointer, and `podSelector: {}` (every pod) missing from a
/// peer that now has `namespaceSelector: {}` widens who may connect.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(_) => false,
    }
}

/// Each element's `name`, when every element is an object with a string name and no
/// two share one; `None` otherwise (the list is then not keyed by name).
fn unique_names(items: &[Value]) -> Option<Vec<&str>> {
    let names: Vec<&str> = items.iter().map(|item| item.get("name").and_then(Value::as_str)).collect::<Option<_>>()?;
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    (!names.is_empty() && sorted.len() == names.len()).then_some(names)
}

/// `parent.key`, or `parent["key"]` when the key holds anything but letters, digits,
/// `_` and `-` (label keys, `limits.cpu`), so a path always splits unambiguously.
fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (plain, parent.is_empty()) {
        (true, true) => key.to_owned(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{}]", Value::from(key)),
    }
}

/// `parent[name="alice"]`: a list element picked by its name.
fn name_path(parent: &str, name: &str) -> String {
    format!("{parent}[name={}]", Value::from(name))
}

#[cfg(test)]
mod tests {
    use super::{key_path, name_path};

    #[test]
    fn paths_quote_keys_that_are_not_plain() {
        assert_eq!(key_path("", "spec"), "spec");
        assert_eq!(key_path("spec.hard", "pods"), "spec.hard.pods");
        assert_eq!(key_path("spec.hard", "limits.cpu"), r#"spec.hard["limits.cpu"]"#);
        assert_eq!(key_path("metadata.labels", "berth.dev/tenant"), r#"metadata.labels["berth.dev/tenant"]"#);
        assert_eq!(name_path("subjects", "alice"), r#"subjects[name="alice"]"#);
    }
}
