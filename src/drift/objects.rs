//! Desired objects: the rendered YAML files parsed back into objects with identity.

use std::{collections::BTreeMap, fmt};

use serde::Deserialize;
use serde_json::Value;

use super::DriftError;
use crate::render::RenderedObject;

/// Identity of a Kubernetes object, as drift matches desired to live objects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// `apiVersion`, e.g. `v1` or `rbac.authorization.k8s.io/v1`.
    pub api_version: String,
    /// `kind`, e.g. `ResourceQuota`.
    pub kind: String,
    /// `metadata.namespace`; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// The key of a JSON object; `None` when it lacks `apiVersion`, `kind` or a name.
    pub fn of(object: &Value) -> Option<Self> {
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
        let metadata = object.get("metadata");
        Some(Self {
            api_version: text(object.get("apiVersion"))?,
            kind: text(object.get("kind"))?,
            namespace: text(metadata.and_then(|m| m.get("namespace"))).filter(|ns| !ns.is_empty()),
            name: text(metadata.and_then(|m| m.get("name")))?,
        })
    }

    /// The API group (`""` for the core group), without the version.
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(group, _)| group)
    }

    /// Whether the apiserver itself defines this kind's group (core, `apps`,
    /// `*.k8s.io`, …) rather than a CRD. Only built-in types have quantity and
    /// int-or-string fields that the apiserver rewrites into canonical form.
    pub(crate) fn is_built_in(&self) -> bool {
        let group = self.group();
        !group.contains('.') || group.ends_with(".k8s.io")
    }

    /// The key drift matches on: the version is left out because the apiserver
    /// serves one object under every version of its group.
    pub(crate) fn match_key(&self) -> (&str, &str, Option<&str>, &str) {
        (self.group(), &self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// `Kind/namespace/name`, or `Kind/name` for cluster-scoped objects — the form of
/// `status.drift.differences[].resource`.
impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{}/{}/{}", self.kind, namespace, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// One object Berth rendered, with where it came from (for error messages).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    /// The object's identity.
    pub key: ObjectKey,
    /// File it was rendered into, e.g. `resourcequota.yaml`.
    pub file: String,
    /// 1-based position of the document within the file.
    pub document: usize,
    /// The whole object as JSON.
    pub body: Value,
}

/// The objects rendering kept as JSON ([`crate::render::Environment::objects`]), with
/// the same checks as [`desired_objects`] makes of the files: what a reconcile compares,
/// without parsing its own YAML back.
pub fn rendered_objects(objects: Vec<RenderedObject>) -> Result<Vec<DesiredObject>, DriftError> {
    let mut desired = Vec::with_capacity(objects.len());
    for RenderedObject { file, document, body } in objects {
        if let Some(object) = desired_object(file.to_owned(), document, body)? {
            desired.push(object);
        }
    }
    Ok(desired)
}

/// Parses rendered files (file name → YAML, one or more `---`-separated documents
/// each) into objects, in file order then document order. Empty documents are
/// skipped; anything that is not an object with `apiVersion`, `kind` and
/// `metadata.name` is an error, since Berth never renders one.
pub fn desired_objects(files: &BTreeMap<String, String>) -> Result<Vec<DesiredObject>, DriftError> {
    let mut objects = Vec::new();
    for (file, yaml) in files {
        for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
            let position = index + 1;
            let body = Value::deserialize(document).map_err(|source| DriftError::Yaml {
                file: file.clone(),
                document: position,
                source,
            })?;
            objects.extend(desired_object(file.clone(), position, body)?);
        }
    }
    Ok(objects)
}

/// One document as a desired object; `None` for an empty document.
fn desired_object(file: String, document: usize, body: Value) -> Result<Option<DesiredObject>, DriftError> {
    if body.is_null() {
        return Ok(None);
    }
    if !body.is_object() {
        return Err(DriftError::NotAnObject { file, document });
    }
    match ObjectKey::of(&body) {
        Some(key) => Ok(Some(DesiredObject { key, file, document, body })),
        None => Err(DriftError::MissingIdentity { file, document }),
    }
}
