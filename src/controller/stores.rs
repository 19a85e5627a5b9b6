//! In-memory copies of what the request controller and the admission webhook read
//! on every decision: requests, classes, tenants and the live objects Berth
//! rendered. Each store is filled by the same watch that triggers the request
//! controller's reconciles, so a reconcile caused by a change always sees that
//! change — and reads memory instead of calling the apiserver (a settled
//! request's reconcile used to cost ten GETs). One set of watches serves both.

use std::{fmt::Debug, future::Future, sync::Arc};

use futures::{Stream, StreamExt};
use k8s_openapi::{
    api::{
        core::v1::{LimitRange, Namespace, ResourceQuota},
        networking::v1::NetworkPolicy,
        rbac::v1::RoleBinding,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Resource,
    api::DynamicObject,
    core::ApiResource,
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use crate::api::{EnvironmentClass, EnvironmentRequest, Tenant};

pub use kube::runtime::reflector::Store;

/// The stores; they fill while their [`Feeds`] are read (by the request controller, or
/// by [`Feeds::keep_filled_until`] on a standby).
pub struct Stores {
    pub requests: Store<EnvironmentRequest>,
    pub classes: Store<EnvironmentClass>,
    pub tenants: Store<Tenant>,
    namespaces: Store<Namespace>,
    quotas: Store<ResourceQuota>,
    limits: Store<LimitRange>,
    network_policies: Store<NetworkPolicy>,
    bindings: Store<RoleBinding>,
    /// Argo CD Applications; the watch starts once Argo CD's CRD is established.
    pub applications: (Store<DynamicObject>, ApiResource),
    /// Whether Argo CD was installed when Berth started: only then is the first list of
    /// Applications awaited before reconciling (for [`APPLICATIONS_LIST_WAIT`] at most).
    argocd_at_start: bool,
    created: std::time::Instant,
}

/// How long reconciles wait for the first list of Applications when Argo CD is installed.
const APPLICATIONS_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The watch streams that fill [`Stores`]; the request controller consumes them as triggers.
pub struct Feeds {
    pub requests: Feed<EnvironmentRequest>,
    pub classes: Feed<EnvironmentClass>,
    pub tenants: Feed<Tenant>,
    pub namespaces: Feed<Namespace>,
    pub quotas: Feed<ResourceQuota>,
    pub limits: Feed<LimitRange>,
    pub network_policies: Feed<NetworkPolicy>,
    pub bindings: Feed<RoleBinding>,
    pub applications: Feed<DynamicObject>,
}

impl Feeds {
    /// Keeps every store filled (the webhook reads them on every replica) until `until`
    /// resolves, then hands the feeds, mid-stream, to the controllers: a standby that
    /// becomes leader does not list everything again.
    pub async fn keep_filled_until(mut self, until: impl Future<Output = ()>) -> Self {
        {
            let Feeds {
                requests,
                classes,
                tenants,
                namespaces,
                quotas,
                limits,
                network_policies,
                bindings,
                applications,
            } = &mut self;
            let mut all = futures::stream::select_all([
                requests.by_ref().map(drop).boxed(),
                classes.by_ref().map(drop).boxed(),
                tenants.by_ref().map(drop).boxed(),
                namespaces.by_ref().map(drop).boxed(),
                quotas.by_ref().map(drop).boxed(),
                limits.by_ref().map(drop).boxed(),
                network_policies.by_ref().map(drop).boxed(),
                bindings.by_ref().map(drop).boxed(),
                applications.by_ref().map(drop).boxed(),
            ]);
            // Watches never end; if they all did, that would still not be an election.
            let drain = async {
                while all.next().await.is_some() {}
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = drain => {}
                () = until => {}
            }
        }
        self
    }
}

/// A watch stream of objects, as the controller takes triggers.
pub type Feed<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// A store and the stream that fills it, objects [`slim`]med first.
pub fn reflected<K>(api: Api<K>, config: watcher::Config, dyntype: K::DynamicType) -> (Store<K>, Feed<K>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Default + Send + Sync,
{
    let writer = Writer::new(dyntype);
    let reader = writer.as_reader();
    let stream = watcher(api, config)
        .modify(|object| slim(object.meta_mut()))
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (reader, Box::pin(stream))
}

/// Annotation `kubectl apply` (and Argo CD, which applies the same way) keeps a whole
/// copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what Berth never reads and that makes up most of a cached object: managed
/// fields and the last-applied copy. (Drift compares only the annotations Berth sets.)
fn slim(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// The same for a dynamic kind (Argo CD's Application).
pub fn reflected_dynamic(
    api: Api<DynamicObject>,
    config: watcher::Config,
    resource: ApiResource,
) -> (Store<DynamicObject>, Feed<DynamicObject>) {
    let writer = Writer::new(resource);
    let reader = writer.as_reader();
    let stream = watcher(api, config)
        .modify(|object| slim(&mut object.metadata))
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (reader, Box::pin(stream))
}

/// Where Berth looks for Argo CD's Applications.
pub struct ArgoCd {
    /// The Application resource (argoproj.io/v1alpha1).
    pub resource: ApiResource,
    /// The namespace Argo CD watches for Applications (Berth renders them there).
    pub namespace: String,
    /// Whether the Application CRD existed when Berth started.
    pub installed_at_start: bool,
}

/// Builds every store; `rendered` selects the objects Berth rendered.
pub fn build(client: &kube::Client, rendered: watcher::Config, argocd: ArgoCd) -> (Stores, Feeds) {
    let ArgoCd { resource: applications, namespace: argocd_namespace, installed_at_start: argocd_at_start } = argocd;
    let all = watcher::Config::default();
    let (requests, request_feed) = reflected(Api::all(client.clone()), all.clone(), ());
    let (classes, class_feed) = reflected(Api::all(client.clone()), all.clone(), ());
    let (tenants, tenant_feed) = reflected(Api::all(client.clone()), all, ());
    let (namespaces, namespace_feed) = reflected(Api::all(client.clone()), rendered.clone(), ());
    let (quotas, quota_feed) = reflected(Api::all(client.clone()), rendered.clone(), ());
    let (limits, limit_feed) = reflected(Api::all(client.clone()), rendered.clone(), ());
    let (network_policies, policy_feed) = reflected(Api::all(client.clone()), rendered.clone(), ());
    let (bindings, binding_feed) = reflected(Api::all(client.clone()), rendered.clone(), ());
    let api = Api::namespaced_with(client.clone(), &argocd_namespace, &applications);
    let (application_store, application_feed) = reflected_dynamic(api, rendered, applications.clone());
    // Watching Applications before their CRD exists would only collect 404s; the watch
    // starts once the CRD is established, so Argo CD installed later is picked up.
    let installed = crd_established(client.clone(), crd_name(&applications));
    let application_feed = Box::pin(
        futures::stream::once(async move {
            installed.await;
            application_feed
        })
        .flatten(),
    );
    let stores = Stores {
        requests,
        classes,
        tenants,
        namespaces,
        quotas,
        limits,
        network_policies,
        bindings,
        applications: (application_store, applications),
        argocd_at_start,
        created: std::time::Instant::now(),
    };
    let feeds = Feeds {
        requests: request_feed,
        classes: class_feed,
        tenants: tenant_feed,
        namespaces: namespace_feed,
        quotas: quota_feed,
        limits: limit_feed,
        network_policies: policy_feed,
        bindings: binding_feed,
        applications: application_feed,
    };
    (stores, feeds)
}

/// The name of the CRD that defines `resource` (`plural.group`).
pub fn crd_name(resource: &ApiResource) -> String {
    format!("{}.{}", resource.plural, resource.group)
}

/// Resolves once the CustomResourceDefinition `name` exists and is Established. Watches
/// that one CRD; a watch error (RBAC, apiserver down) is retried with backoff.
async fn crd_established(client: kube::Client, name: String) {
    let api = Api::<CustomResourceDefinition>::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut crds = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    while let Some(event) = crds.next().await {
        match event {
            Ok(crd) if is_established(&crd) => {
                tracing::info!(crd = %name, "established; watching it");
                return;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(crd = %name, %error, "cannot watch the CRD"),
        }
    }
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}

/// Whether `store` holds its first full list. Asks with a fresh future each time:
/// a waiter parked in `wait_until_ready` before the first list was not always woken
/// (kube-runtime 5.0), which hung the reconciles that waited.
fn listed<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    use futures::FutureExt;
    store.wait_until_ready().now_or_never().is_some()
}

fn value<K: serde::Serialize>(object: Option<Arc<K>>) -> Option<serde_json::Value> {
    object.and_then(|o| serde_json::to_value(o.as_ref()).ok())
}

impl Stores {
    /// The live object of `kind` as JSON, if the store holds it; `Err` for a kind
    /// Berth does not watch.
    pub fn live(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Option<serde_json::Value>, String> {
        fn key<K: Resource<DynamicType = ()>>(namespace: Option<&str>, name: &str) -> ObjectRef<K> {
            let key = ObjectRef::new(name);
            match namespace {
                Some(ns) => key.within(ns),
                None => key,
            }
        }
        Ok(match kind {
            "Namespace" => value(self.namespaces.get(&key(None, name))),
            "ResourceQuota" => value(self.quotas.get(&key(namespace, name))),
            "LimitRange" => value(self.limits.get(&key(namespace, name))),
            "NetworkPolicy" => value(self.network_policies.get(&key(namespace, name))),
            "RoleBinding" => value(self.bindings.get(&key(namespace, name))),
            "Application" => {
                if !self.argocd_installed() {
                    return Err("Argo CD is not installed".to_owned());
                }
                let (store, resource) = &self.applications;
                let mut key = ObjectRef::new_with(name, resource.clone());
                if let Some(ns) = namespace {
                    key = key.within(ns);
                }
                value(store.get(&key))
            }
            other => return Err(format!("Berth does not watch {other}")),
        })
    }

    /// Whether Argo CD is installed, as far as Berth can use it: its Applications are
    /// listed (the watch starts once their CRD is established).
    pub fn argocd_installed(&self) -> bool {
        listed(&self.applications.0)
    }

    /// Whether every store Berth needs holds its first full list. Applications are
    /// waited for only a while when Argo CD was there at start (so a request's sync is
    /// not first reported missing): if they cannot be listed (no RBAC in Argo CD's
    /// namespace), Berth works on as without Argo CD rather than not at all.
    fn all_ready(&self) -> bool {
        let applications =
            !self.argocd_at_start || self.argocd_installed() || self.created.elapsed() > APPLICATIONS_LIST_WAIT;
        listed(&self.requests)
            && listed(&self.classes)
            && listed(&self.tenants)
            && listed(&self.namespaces)
            && listed(&self.quotas)
            && listed(&self.limits)
            && listed(&self.network_policies)
            && listed(&self.bindings)
            && applications
    }

    /// Resolves once every store holds its first full list.
    pub async fn ready(&self) {
        while !self.all_ready() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::api::ObjectMeta;

    use super::*;

    #[test]
    fn cached_objects_lose_managed_fields_and_the_last_applied_copy_but_keep_other_annotations() {
        let mut meta = ObjectMeta {
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            annotations: Some(
                [
                    (LAST_APPLIED.to_owned(), "{\"big\": \"copy\"}".to_owned()),
                    (crate::labels::REQUEST_ANNOTATION.to_owned(), "team/web".to_owned()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        };
        slim(&mut meta);
        assert_eq!(meta.managed_fields, None);
        let annotations = meta.annotations.unwrap_or_default();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations.get(crate::labels::REQUEST_ANNOTATION).map(String::as_str), Some("team/web"));
    }
}
