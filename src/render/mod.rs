//! Rendering (pure): an EnvironmentClass, a Tenant and an EnvironmentRequest in,
//! the environment's manifests out — exactly what Berth commits to the GitOps
//! repository for Argo CD to apply. Same input, byte-identical output.

mod application;
pub mod naming;
mod objects;
pub use application::application_resource;

use std::{collections::BTreeMap, time::Duration};

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

/// Everything about a request that rendering needs, checked once.
struct Checked<'a> {
    class: &'a EnvironmentClass,
    tenant: &'a Tenant,
    request: &'a EnvironmentRequest,
    namespace: String,
    ttl: Option<Duration>,
}

/// The file holding the environment's Namespace; like every rendered object it names
/// the request it was rendered for, which is how a folder in git is traced to its owner.
pub const NAMESPACE_FILE: &str = "namespace.yaml";

/// Renders the environment `request` asks for, as `class` and `tenant` allow.
pub fn render(
    class: &EnvironmentClass,
    tenant: &Tenant,
    request: &EnvironmentRequest,
    options: &RenderOptions,
) -> Result<Environment, RenderError> {
    let checked = check(class, tenant, request)?;
    let mut files = BTreeMap::new();
    files.insert(NAMESPACE_FILE.to_owned(), to_yaml(NAMESPACE_FILE, &[objects::namespace(&checked)])?);
    files.insert("resourcequota.yaml".to_owned(), to_yaml("resourcequota.yaml", &[objects::resource_quota(&checked)])?);
    if let Some(limits) = objects::limit_range(&checked) {
        files.insert("limitrange.yaml".to_owned(), to_yaml("limitrange.yaml", &[limits])?);
    }
    files.insert("networkpolicy.yaml".to_owned(), to_yaml("networkpolicy.yaml", &[objects::network_policy(&checked)])?);
    files.insert("rolebindings.yaml".to_owned(), to_yaml("rolebindings.yaml", &objects::role_bindings(&checked))?);
    let app = application::application(&checked, options);
    files.insert("application.yaml".to_owned(), to_yaml("application.yaml", &[app])?);
    Ok(Environment {
        namespace: checked.namespace,
        cluster: request.spec.cluster.clone(),
        tenant: tenant.name_any(),
        ttl: checked.ttl,
        estimated_monthly_cost_usd: class.spec.estimated_monthly_cost_usd,
        files,
    })
}

/// Checks that `request` can be rendered with `class` and `tenant` (tenant and class
/// names, repository URL, allowed class and cluster, TTL) without rendering it:
/// admission's view.
pub fn validate(class: &EnvironmentClass, tenant: &Tenant, request: &EnvironmentRequest) -> Result<(), RenderError> {
    check(class, tenant, request).map(|_| ())
}

fn check<'a>(
    class: &'a EnvironmentClass,
    tenant: &'a Tenant,
    request: &'a EnvironmentRequest,
) -> Result<Checked<'a>, RenderError> {
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
    Ok(Checked {
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

/// YAML documents joined by `---`, each serialized from its typed object.
fn to_yaml<T: Serialize>(file: &'static str, documents: &[T]) -> Result<String, RenderError> {
    let rendered: Result<Vec<String>, _> = documents.iter().map(serde_yaml::to_string).collect();
    let rendered = rendered.map_err(|e| RenderError::Serialize { file, message: e.to_string() })?;
    Ok(rendered.join("---\n"))
}

#[cfg(test)]
mod tests;
