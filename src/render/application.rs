//! The environment's Argo CD Application (`argoproj.io/v1alpha1`), which deploys
//! the request's app into the environment's namespace. Typed here with only the
//! fields Berth sets; Argo CD's own CRD validates it (see the e2e suite).

use serde::Serialize;

use super::{RenderOptions, Validated, objects::metadata};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Application {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta,
    spec: ApplicationSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationSpec {
    project: String,
    source: Source,
    destination: Destination,
    #[serde(skip_serializing_if = "Option::is_none")]
    sync_policy: Option<SyncPolicy>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Source {
    #[serde(rename = "repoURL")]
    repo_url: String,
    path: String,
    target_revision: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Destination {
    /// Cluster name as registered in Argo CD (`in-cluster` for its own).
    name: String,
    namespace: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncPolicy {
    automated: Automated,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Automated {
    prune: bool,
    self_heal: bool,
}

pub(super) fn application(env: &Validated<'_>, options: &RenderOptions) -> Application {
    let argocd = &env.class.spec.argocd;
    let app = &env.request.spec.app;
    let sync_policy = argocd.sync_policy.automated.then_some(SyncPolicy {
        automated: Automated { prune: argocd.sync_policy.prune, self_heal: argocd.sync_policy.self_heal },
    });
    // Named after the environment: unique, and at most 63 characters.
    let mut metadata = metadata(env, &env.namespace, Some(&options.argocd_namespace));
    // When the environment's folder leaves git, Argo CD deletes the Application;
    // this finalizer makes it delete what the Application deployed first.
    metadata.finalizers = Some(vec!["resources-finalizer.argocd.argoproj.io".to_owned()]);
    Application {
        api_version: "argoproj.io/v1alpha1",
        kind: "Application",
        metadata,
        spec: ApplicationSpec {
            project: argocd.project.clone(),
            source: Source {
                repo_url: app.repo_url.clone(),
                path: app.path.clone(),
                target_revision: env.request.deployed_revision().to_owned(),
            },
            destination: Destination { name: env.request.spec.cluster.clone(), namespace: env.namespace.clone() },
            sync_policy,
        },
    }
}

/// Argo CD's Application resource (argoproj.io/v1alpha1), as Berth renders and watches it.
pub fn application_resource() -> kube::core::ApiResource {
    use kube::core::{ApiResource, GroupVersionKind};
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"), "applications")
}
