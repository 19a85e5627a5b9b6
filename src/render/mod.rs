//! Rendering (pure): an EnvironmentClass, a Tenant and an EnvironmentRequest in,
//! the environment's manifests out — exactly what Berth commits to the GitOps
//! repository for Argo CD to apply. Same input, byte-identical output.
//!
//! Beside it, the other objects Berth builds without I/O: a tenant's namespace and
//! RBAC ([`tenant`]) and the webhook configurations that register the admission
//! webhook ([`webhook_configuration`]).

mod application;
pub mod naming;
mod objects;
pub mod tenant;
pub mod webhook_configuration;
pub use application::application_resource;

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use serde::Serialize;

use crate::api::{
    EnvironmentClass, EnvironmentRequest, InvalidDuration, Tenant,
    git_url::{self, UnsafeUrl},
};

/// Settings of the Berth installation that shape every environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Namespace Argo CD watches for Applications.
    pub argocd_namespace: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self { argocd_namespace: "argocd".to_owned() }
    }
}

/// One rendered environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// The environment's namespace.
    pub namespace: String,
    /// Cluster it runs on, as Argo CD names it.
    pub cluster: String,
    /// Tenant it belongs to.
    pub tenant: String,
    /// Lifetime: the request's TTL, else the class default; `None` never expires.
    pub ttl: Option<Duration>,
    /// Estimated monthly cost, in whole US dollars.
    pub estimated_monthly_cost_usd: u32,
    /// File name → YAML, in the order they are listed (a `BTreeMap`, so stable).
    pub files: BTreeMap<String, String>,
    /// The same objects as JSON, in file then document order: what drift compares
    /// with the live objects, so no reconcile parses its own YAML back.
    pub objects: Vec<RenderedObject>,
}

/// One object of [`Environment::files`], serialized from the same typed value as its YAML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedObject {
    /// File it is rendered into, e.g. `resourcequota.yaml`.
    pub file: &'static str,
    /// 1-based position of the document within the file.
    pub document: usize,
    /// The whole object as JSON.
    pub body: serde_json::Value,
}

/// Why a request cannot be rendered as asked. Each message says what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("request names tenant {requested:?} but was rendered for tenant {actual:?}")]
    TenantMismatch { requested: String, actual: String },
    #[error("request asks for class {requested:?} but was rendered with class {actual:?}")]
    ClassMismatch { requested: String, actual: String },
    #[error("tenant {tenant:?} may not use class {class:?}; its allowed classes are {allowed:?}")]
    ClassNotAllowed { tenant: String, class: String, allowed: Vec<String> },
    #[error("class {class:?} does not run on cluster {cluster:?}; pick one of {allowed:?}")]
    ClusterNotAllowed { class: String, cluster: String, allowed: Vec<String> },
    #[error("ttl {requested} is longer than class {class:?} allows ({max}); ask for {max} or less")]
    TtlOverMax { class: String, requested: String, max: String },
    #[error("{field} is not a valid duration: {source}")]
    Duration { field: &'static str, source: InvalidDuration },
    #[error("{what} {name:?} is {len} characters; at most {max} fit")]
    NameTooLong { what: &'static str, name: String, len: usize, max: usize },
    /// The CRD's CEL refuses these too; checked again so that nothing stored before
    /// the rule (or past it) reaches the committed Application.
    #[error("{}", .0.repo_url_message())]
    RepoUrl(UnsafeUrl),
    #[error("cannot serialize {file}: {message}")]
    Serialize { file: &'static str, message: String },
}

/// A request checked against its class and tenant: everything rendering needs,
/// checked once ([`validate`]), so [`build`] renders without checking again.
#[derive(Clone, Debug)]
pub struct Validated<'a> {
    pub class: &'a EnvironmentClass,
    pub tenant: &'a Tenant,
    pub request: &'a EnvironmentRequest,
    /// The environment's namespace.
    pub namespace: String,
    /// Lifetime: the request's TTL, else the class default; `None` never expires.
    pub ttl: Option<Duration>,
}

impl Validated<'_> {
    /// When the environment expires: its creation plus its TTL. `None` when it never
    /// does (or has no creation time yet: it is not stored).
    pub fn expires_at(&self) -> Option<Timestamp> {
        let ttl = SignedDuration::try_from(self.ttl?).ok()?;
        self.request.metadata.creation_timestamp.as_ref()?.0.checked_add(ttl).ok()
    }
}

/// The file holding the environment's Namespace; like every rendered object it names
/// the request it was rendered for, which is how a folder in git is traced to its owner.
pub const NAMESPACE_FILE: &str = "namespace.yaml";

/// Renders the environment `request` asks for, as `class` and `tenant` allow:
/// [`validate`], then [`build`].
pub fn render(
    class: &EnvironmentClass,
    tenant: &Tenant,
    request: &EnvironmentRequest,
    options: &RenderOptions,
) -> Result<Environment, RenderError> {
    build(&validate(class, tenant, request)?, options)
}

/// Renders a validated request's files. Fails only if a file cannot be serialized.
pub fn build(checked: &Validated<'_>, options: &RenderOptions) -> Result<Environment, RenderError> {
    let (class, tenant, request) = (checked.class, checked.tenant, checked.request);
    let mut out = Output::default();
    out.add(NAMESPACE_FILE, &[objects::namespace(checked)])?;
    out.add("resourcequota.yaml", &[objects::resource_quota(checked)])?;
    if let Some(limits) = objects::limit_range(checked) {
        out.add("limitrange.yaml", &[limits])?;
    }
    out.add("networkpolicy.yaml", &[objects::network_policy(checked)])?;
    out.add("rolebindings.yaml", &objects::role_bindings(checked))?;
    out.add("application.yaml", &[application::application(checked, options)])?;
    // File order, as the files map lists them (and as parsing the files back would).
    out.objects.sort_by(|a, b| (a.file, a.document).cmp(&(b.file, b.document)));
    Ok(Environment {
        namespace: checked.namespace.clone(),
        cluster: request.spec.cluster.clone(),
        tenant: tenant.name_any(),
        ttl: checked.ttl,
        estimated_monthly_cost_usd: class.spec.estimated_monthly_cost_usd,
        files: out.files,
        objects: out.objects,
    })
}

/// Checks that `request` can be rendered with `class` and `tenant` (tenant and class
/// names, repository URL, allowed class and cluster, TTL): what admission and the
/// controller check, and the one input of [`build`].
pub fn validate<'a>(
    class: &'a EnvironmentClass,
    tenant: &'a Tenant,
    request: &'a EnvironmentRequest,
) -> Result<Validated<'a>, RenderError> {
    let (class_name, tenant_name) = (class.name_any(), tenant.name_any());
    let spec = &request.spec;
    if spec.tenant != tenant_name {
        return Err(RenderError::TenantMismatch { requested: spec.tenant.clone(), actual: tenant_name });
    }
    if spec.class != class_name {
        return Err(RenderError::ClassMismatch { requested: spec.class.clone(), actual: class_name });
    }
    git_url::check(&spec.app.repo_url).map_err(RenderError::RepoUrl)?;
    if !tenant.spec.allowed_classes.contains(&class_name) {
        return Err(RenderError::ClassNotAllowed {
            tenant: tenant_name,
            class: class_name,
            allowed: tenant.spec.allowed_classes.clone(),
        });
    }
    if !class.spec.allowed_clusters.contains(&spec.cluster) {
        return Err(RenderError::ClusterNotAllowed {
            class: class_name,
            cluster: spec.cluster.clone(),
            allowed: class.spec.allowed_clusters.clone(),
        });
    }
    // The tenant and class names become label values, which stop at 63 characters.
    for (what, name) in [("tenant name", &tenant_name), ("class name", &class_name)] {
        if name.len() > naming::MAX_DNS_LABEL {
            return Err(RenderError::NameTooLong {
                what,
                name: name.clone(),
                len: name.len(),
                max: naming::MAX_DNS_LABEL,
            });
        }
    }
    let ttl = effective_ttl(class, request)?;
    Ok(Validated {
        class,
        tenant,
        request,
        namespace: naming::environment_namespace(&tenant_name, &request.name_any()),
        ttl,
    })
}

fn effective_ttl(class: &EnvironmentClass, request: &EnvironmentRequest) -> Result<Option<Duration>, RenderError> {
    let parse = |field, d: &crate::api::GoDuration| d.parse().map_err(|source| RenderError::Duration { field, source });
    let Some(policy) = &class.spec.ttl else {
        return request.spec.ttl.as_ref().map(|ttl| parse("spec.ttl", ttl)).transpose();
    };
    let max = parse("class ttl.max", &policy.max)?;
    let Some(requested) = &request.spec.ttl else {
        return parse("class ttl.default", &policy.default).map(Some);
    };
    let ttl = parse("spec.ttl", requested)?;
    if ttl > max {
        return Err(RenderError::TtlOverMax {
            class: class.name_any(),
            requested: requested.to_string(),
            max: policy.max.to_string(),
        });
    }
    Ok(Some(ttl))
}

/// The files being rendered, and their objects as JSON.
#[derive(Default)]
struct Output {
    files: BTreeMap<String, String>,
    objects: Vec<RenderedObject>,
}

impl Output {
    /// One file: YAML documents joined by `---`, each serialized from its typed object,
    /// which is also kept as JSON.
    fn add<T: Serialize>(&mut self, file: &'static str, documents: &[T]) -> Result<(), RenderError> {
        let serialize = |message: String| RenderError::Serialize { file, message };
        let mut yaml = Vec::with_capacity(documents.len());
        for (index, document) in documents.iter().enumerate() {
            yaml.push(serde_yaml::to_string(document).map_err(|e| serialize(e.to_string()))?);
            let body = serde_json::to_value(document).map_err(|e| serialize(e.to_string()))?;
            self.objects.push(RenderedObject { file, document: index + 1, body });
        }
        self.files.insert(file.to_owned(), yaml.join("---\n"));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
