//! Reading Berth objects from YAML files and folders for the CLI.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use serde::Deserialize;

use crate::api::{EnvironmentClass, EnvironmentRequest, Rollout, Tenant};

/// Berth objects read from files.
#[derive(Debug, Default)]
pub struct Inputs {
    pub classes: Vec<EnvironmentClass>,
    pub tenants: Vec<Tenant>,
    pub requests: Vec<EnvironmentRequest>,
    pub rollouts: Vec<Rollout>,
}

/// What was wrong with the input files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: document {index} is not valid YAML: {source}")]
    Yaml { path: PathBuf, index: usize, source: serde_yaml::Error },
    #[error("{path}: document {index} is not a valid {kind}: {source}")]
    Object { path: PathBuf, index: usize, kind: String, source: serde_yaml::Error },
    #[error("request {request} names {what} {name:?}, which is not in the given files")]
    Missing { request: String, what: &'static str, name: String },
}

#[derive(Deserialize)]
struct TypeMeta {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
}

impl Inputs {
    /// Reads every `.yaml`/`.yml` file in `paths` (files, or folders one level deep).
    /// Documents of other API groups are skipped: a folder may hold more than Berth's objects.
    pub fn read(paths: &[PathBuf]) -> Result<Self, InputError> {
        let mut inputs = Inputs::default();
        for path in paths {
            for file in yaml_files(path)? {
                inputs.read_file(&file)?;
            }
        }
        Ok(inputs)
    }

    fn read_file(&mut self, path: &Path) -> Result<(), InputError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| InputError::Read { path: path.to_owned(), source })?;
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let index = index + 1;
            let value = serde_yaml::Value::deserialize(document).map_err(|source| InputError::Yaml {
                path: path.to_owned(),
                index,
                source,
            })?;
            if value.is_null() {
                continue;
            }
            let meta: TypeMeta = serde_yaml::from_value(value.clone()).map_err(|source| InputError::Yaml {
                path: path.to_owned(),
                index,
                source,
            })?;
            if meta.api_version != "berth.dev/v1alpha1" {
                continue;
            }
            let object = |source| InputError::Object { path: path.to_owned(), index, kind: meta.kind.clone(), source };
            match meta.kind.as_str() {
                "EnvironmentClass" => self.classes.push(serde_yaml::from_value(value).map_err(object)?),
                "Tenant" => self.tenants.push(serde_yaml::from_value(value).map_err(object)?),
                "EnvironmentRequest" => self.requests.push(serde_yaml::from_value(value).map_err(object)?),
                "Rollout" => self.rollouts.push(serde_yaml::from_value(value).map_err(object)?),
                _ => {}
            }
        }
        Ok(())
    }

    /// The class and tenant a request names.
    pub fn class_and_tenant_for(
        &self,
        request: &EnvironmentRequest,
    ) -> Result<(&EnvironmentClass, &Tenant), InputError> {
        let key = || format!("{}/{}", request.namespace().unwrap_or_default(), request.name_any());
        let class = self.classes.iter().find(|c| c.name_any() == request.spec.class).ok_or_else(|| {
            InputError::Missing { request: key(), what: "EnvironmentClass", name: request.spec.class.clone() }
        })?;
        let tenant = self
            .tenants
            .iter()
            .find(|t| t.name_any() == request.spec.tenant)
            .ok_or_else(|| InputError::Missing { request: key(), what: "Tenant", name: request.spec.tenant.clone() })?;
        Ok((class, tenant))
    }
}

fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let read_err = |source| InputError::Read { path: path.to_owned(), source };
    if !path.is_dir() {
        // A missing file is reported by the read itself, with its path.
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_err)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}
