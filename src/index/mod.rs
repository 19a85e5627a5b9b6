//! The index: Berth's one read path. What the controllers and the admission webhook
//! read on every decision — requests, classes, tenants, the live objects Berth
//! rendered and Argo CD's Applications — in memory, each kind filled by one watch and
//! shared by every reader (a settled request's reconcile used to cost ten GETs, and
//! admission must not call the apiserver that is waiting on it).
//!
//! - [`Watched`] is one kind: its store, the writer that fills it and the feeds of
//!   the controllers that react to it. Tests, benches and the fuzz harness fill it
//!   by hand ([`Watched::fill`], [`Index::with_objects`]); the operator starts the
//!   watches ([`Index::start`], see [`watch`]).
//! - Requests are also grouped by namespace (the tenant's request namespace), class
//!   and tenant ([`groups`]), so a budget decision or a tenant's usage costs
//!   O(that tenant's requests), not O(all requests).

mod feeds;
pub mod groups;
mod watch;
mod watched;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{
    core::v1::{LimitRange, Namespace, ResourceQuota},
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use kube::{
    Api, Resource,
    api::DynamicObject,
    core::ApiResource,
    runtime::{reflector::ObjectRef, watcher},
};
use serde::de::DeserializeOwned;

pub use feeds::Feeds;
pub use kube::runtime::reflector::Store;
pub use watch::WATCH_BACKOFF_MAX;
pub use watched::{Feed, Watched};

use crate::{
    api::{EnvironmentClass, EnvironmentRequest, Freeze, Rollout, Tenant, labels},
    telemetry::{WatchReport, Watches},
};
use groups::Groups;

/// How long readers wait for the first list of Applications when Argo CD is installed.
const APPLICATIONS_LIST_WAIT: Duration = Duration::from_secs(30);

/// Where Berth looks for Argo CD's Applications.
#[derive(Clone, Debug)]
pub struct ArgoCd {
    /// The Application resource (argoproj.io/v1alpha1).
    pub resource: ApiResource,
    /// The namespace Argo CD watches for Applications (Berth renders them there).
    pub namespace: String,
    /// Whether the Application CRD existed when Berth started.
    pub installed_at_start: bool,
}

impl ArgoCd {
    /// Argo CD as Berth renders for it, not installed (tests without it).
    pub fn absent() -> Self {
        Self {
            resource: crate::render::application_resource(),
            namespace: crate::render::RenderOptions::default().argocd_namespace,
            installed_at_start: false,
        }
    }
}

/// The group keys of requests, in [`Groups`] order.
const BY_NAMESPACE: usize = 0;
const BY_CLASS: usize = 1;
const BY_TENANT: usize = 2;
/// Requests that are not provisioned but may claim budget, by namespace: the provisioned
/// ones are counted (per namespace, tenant and class) instead, and those that can never
/// claim (deleting, expired, failed) are left out, for budget decisions.
const UNPROVISIONED_BY_NAMESPACE: usize = 3;

fn request_groups() -> Groups<EnvironmentRequest> {
    use crate::policy::budget::{counted_as, may_claim};
    Groups::new(vec![
        |r: &EnvironmentRequest| r.metadata.namespace.as_deref(),
        |r: &EnvironmentRequest| Some(r.spec.class.as_str()),
        |r: &EnvironmentRequest| Some(r.spec.tenant.as_str()),
        |r: &EnvironmentRequest| r.metadata.namespace.as_deref().filter(|_| counted_as(r).is_none() && may_claim(r)),
    ])
    .with_tally(|r: &EnvironmentRequest| Some((r.metadata.namespace.as_deref()?, counted_as(r)?)))
}

/// Tenants by the namespace their people create requests in (its own name unless
/// `spec.requestNamespace` says otherwise): who claims a namespace, in O(claimants).
fn tenant_groups() -> Groups<Tenant> {
    Groups::new(vec![|t: &Tenant| t.spec.request_namespace.as_deref().or(t.metadata.name.as_deref())])
}

/// Every watched kind; each is kept filled by its own watch task, on every replica.
pub struct Index {
    pub requests: Watched<EnvironmentRequest>,
    pub classes: Watched<EnvironmentClass>,
    pub tenants: Watched<Tenant>,
    pub rollouts: Watched<Rollout>,
    /// Cluster-wide freezes (few).
    pub freezes: Watched<Freeze>,
    pub namespaces: Watched<Namespace>,
    pub quotas: Watched<ResourceQuota>,
    pub limits: Watched<LimitRange>,
    pub network_policies: Watched<NetworkPolicy>,
    pub bindings: Watched<RoleBinding>,
    /// Argo CD Applications; the watch starts once Argo CD's CRD is established.
    pub applications: Watched<DynamicObject>,
    argocd: ArgoCd,
    created: std::time::Instant,
}

/// Which objects of a kind are watched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// All of them: Berth's own kinds.
    All,
    /// Only what Berth rendered (by label), so the caches stay small.
    Rendered,
}

/// One row of the kinds table: what starting, readiness and `live` need of a kind,
/// whatever its type.
trait Kind: Send + Sync {
    /// The watch's name in metrics and `/readyz` (the plural).
    fn name(&self) -> &'static str;
    /// Whether this is the Kubernetes kind `kind` (`ResourceQuota`); no allocation,
    /// since drift asks for every rendered object on every reconcile.
    fn is_kind(&self, kind: &str) -> bool;
    fn listed(&self) -> bool;
    fn start(&self, client: &kube::Client, config: watcher::Config, report: WatchReport);
    /// The object as JSON, if the store holds it.
    fn json(&self, namespace: Option<&str>, name: &str) -> Option<serde_json::Value>;
}

impl<K> Kind for Watched<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn name(&self) -> &'static str {
        Watched::name(self)
    }

    fn is_kind(&self, kind: &str) -> bool {
        K::kind(&()) == kind
    }

    fn listed(&self) -> bool {
        Watched::listed(self)
    }

    fn start(&self, client: &kube::Client, config: watcher::Config, report: WatchReport) {
        watch::spawn(self.clone(), Api::all(client.clone()), config, report, std::future::ready(()));
    }

    fn json(&self, namespace: Option<&str>, name: &str) -> Option<serde_json::Value> {
        let mut key = ObjectRef::new(name);
        if let Some(namespace) = namespace {
            key = key.within(namespace);
        }
        self.get(&key).and_then(|o| serde_json::to_value(o.as_ref()).ok())
    }
}

/// Only what Berth renders (by label), so the caches stay small.
pub fn rendered() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
}

/// The name of the CRD that defines `resource` (`plural.group`).
pub fn crd_name(resource: &ApiResource) -> String {
    format!("{}.{}", resource.plural, resource.group)
}

impl Index {
    /// Empty stores, no watch running yet.
    pub fn new(argocd: ArgoCd) -> Self {
        Self {
            requests: Watched::new("environmentrequests", Some(request_groups())),
            classes: Watched::new("environmentclasses", None),
            tenants: Watched::new("tenants", Some(tenant_groups())),
            rollouts: Watched::new("rollouts", None),
            freezes: Watched::new("freezes", None),
            namespaces: Watched::new("namespaces", None),
            quotas: Watched::new("resourcequotas", None),
            limits: Watched::new("limitranges", None),
            network_policies: Watched::new("networkpolicies", None),
            bindings: Watched::new("rolebindings", None),
            applications: Watched::with_dyntype("applications", argocd.resource.clone(), None),
            argocd,
            created: std::time::Instant::now(),
        }
    }

    /// An index holding exactly these objects, every kind listed (Argo CD absent):
    /// for tests, benches and the fuzz harness.
    pub fn with_objects(
        tenants: impl IntoIterator<Item = Tenant>,
        classes: impl IntoIterator<Item = EnvironmentClass>,
        requests: impl IntoIterator<Item = EnvironmentRequest>,
    ) -> Self {
        let index = Self::new(ArgoCd::absent());
        index.tenants.fill(tenants);
        index.classes.fill(classes);
        index.requests.fill(requests);
        index.rollouts.fill([]);
        index.freezes.fill([]);
        index.namespaces.fill([]);
        index.quotas.fill([]);
        index.limits.fill([]);
        index.network_policies.fill([]);
        index.bindings.fill([]);
        index
    }

    /// The kinds table: every kind of a type known at compile time, with its scope.
    fn kinds(&self) -> [(&dyn Kind, Scope); 10] {
        [
            (&self.requests, Scope::All),
            (&self.classes, Scope::All),
            (&self.tenants, Scope::All),
            (&self.rollouts, Scope::All),
            (&self.freezes, Scope::All),
            (&self.namespaces, Scope::Rendered),
            (&self.quotas, Scope::Rendered),
            (&self.limits, Scope::Rendered),
            (&self.network_policies, Scope::Rendered),
            (&self.bindings, Scope::Rendered),
        ]
    }

    /// Starts every watch; `watches` learns how each fares. Subscribe feeds first
    /// ([`Index::feeds`]) so none misses the first list.
    pub fn start(&self, client: &kube::Client, watches: &Watches) {
        for (kind, scope) in self.kinds() {
            let config = if scope == Scope::All { watcher::Config::default() } else { rendered() };
            kind.start(client, config, watches.report(kind.name()));
        }
        // Watching Applications before their CRD exists would only collect 404s; the
        // watch starts once the CRD is established, so Argo CD installed later is picked up.
        let resource = &self.argocd.resource;
        let api = Api::namespaced_with(client.clone(), &self.argocd.namespace, resource);
        let installed = watch::crd_established(client.clone(), crd_name(resource));
        let report = watches.report(self.applications.name());
        watch::spawn(self.applications.clone(), api, rendered(), report, installed);
    }

    /// Where Berth looks for Argo CD.
    pub fn argocd(&self) -> &ArgoCd {
        &self.argocd
    }

    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.get(&ObjectRef::new(name))
    }

    pub fn class(&self, name: &str) -> Option<Arc<EnvironmentClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    pub fn request(&self, namespace: &str, name: &str) -> Option<Arc<EnvironmentRequest>> {
        self.requests.get(&ObjectRef::new(name).within(namespace))
    }

    /// The rollouts in `namespace` (few: a scan of all rollouts is cheap).
    pub fn rollouts_in(&self, namespace: &str) -> Vec<Arc<Rollout>> {
        self.rollouts.state().into_iter().filter(|r| r.metadata.namespace.as_deref() == Some(namespace)).collect()
    }

    pub fn rollout(&self, namespace: &str, name: &str) -> Option<Arc<Rollout>> {
        self.rollouts.get(&ObjectRef::new(name).within(namespace))
    }

    /// The requests in `namespace` (a tenant's request namespace): O(their number).
    pub fn requests_in(&self, namespace: &str) -> Vec<Arc<EnvironmentRequest>> {
        self.request_group(BY_NAMESPACE, namespace)
    }

    /// The requests of `namespace` as a budget decision reads them (the provisioned ones
    /// counted, the others in full), leaving out the request `excluding` (the one being
    /// decided, which the decision brings in its own copy). O(the namespace's requests that
    /// are not provisioned), however many are.
    pub fn budget_view(&self, namespace: &str, excluding: &str) -> crate::policy::budget::NamespaceRequests {
        let excluding = format!("{namespace}/{excluding}");
        let (provisioned, others) = self
            .requests
            .groups()
            .map(|groups| groups.get_with_counts(UNPROVISIONED_BY_NAMESPACE, namespace, &excluding))
            .unwrap_or_default();
        crate::policy::budget::NamespaceRequests { provisioned, others }
    }

    /// The requests of `class`, in any namespace.
    pub fn requests_of_class(&self, class: &str) -> Vec<Arc<EnvironmentRequest>> {
        self.request_group(BY_CLASS, class)
    }

    /// The requests naming `tenant`, in any namespace.
    pub fn requests_of_tenant(&self, tenant: &str) -> Vec<Arc<EnvironmentRequest>> {
        self.request_group(BY_TENANT, tenant)
    }

    /// The tenants whose request namespace is `namespace` (one, unless two claim it).
    pub fn tenants_claiming(&self, namespace: &str) -> Vec<Arc<Tenant>> {
        self.tenants.groups().map(|groups| groups.get(0, namespace)).unwrap_or_default()
    }

    /// The names of the tenants that claim `namespace` as their request namespace,
    /// sorted (a refusal that names them reads the same every time).
    pub fn claimants(&self, namespace: &str) -> Vec<String> {
        let mut names =
            crate::policy::request::claimants(namespace, self.tenants_claiming(namespace).iter().map(AsRef::as_ref));
        names.sort();
        names
    }

    fn request_group(&self, key: usize, group: &str) -> Vec<Arc<EnvironmentRequest>> {
        self.requests.groups().map(|groups| groups.get(key, group)).unwrap_or_default()
    }

    /// The live object of `kind` as JSON, if the index holds it; `Err` for a kind
    /// Berth does not watch.
    pub fn live(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Option<serde_json::Value>, String> {
        if kind == "Application" {
            if !self.argocd_installed() {
                return Err("Argo CD is not installed".to_owned());
            }
            let mut key = ObjectRef::new_with(name, self.argocd.resource.clone());
            if let Some(ns) = namespace {
                key = key.within(ns);
            }
            return Ok(self.applications.get(&key).and_then(|o| serde_json::to_value(o.as_ref()).ok()));
        }
        match self.kinds().into_iter().find(|(k, scope)| *scope == Scope::Rendered && k.is_kind(kind)) {
            Some((watched, _)) => Ok(watched.json(namespace, name)),
            None => Err(format!("Berth does not watch {kind}")),
        }
    }

    /// Whether Argo CD is installed, as far as Berth can use it: its Applications are
    /// listed (the watch starts once their CRD is established).
    pub fn argocd_installed(&self) -> bool {
        self.applications.listed()
    }

    /// Whether every store Berth needs holds its first full list. Applications are
    /// waited for only a while when Argo CD was there at start (so a request's sync is
    /// not first reported missing): if they cannot be listed (no RBAC in Argo CD's
    /// namespace), Berth works on as without Argo CD rather than not at all.
    pub fn all_listed(&self) -> bool {
        let applications = !self.argocd.installed_at_start
            || self.argocd_installed()
            || self.created.elapsed() > APPLICATIONS_LIST_WAIT;
        self.kinds().iter().all(|(kind, _)| kind.listed()) && applications
    }

    /// The kinds whose first full list has not arrived (a CRD not installed, RBAC missing).
    pub fn unlisted(&self) -> Vec<&'static str> {
        self.kinds().iter().filter(|(kind, _)| !kind.listed()).map(|(kind, _)| kind.name()).collect()
    }

    /// Resolves once every store holds its first full list.
    pub async fn ready(&self) {
        while !self.all_listed() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Yields once when Argo CD's Applications are first listed after the index was
    /// ready without them (Argo CD installed later, or its first list slow); never
    /// when they were listed by then.
    pub fn argocd_arrival(self: Arc<Self>) -> impl futures::Stream<Item = ()> + Send + 'static {
        use futures::StreamExt;
        futures::stream::once(async move {
            self.ready().await;
            let at_ready = self.argocd_installed();
            while !self.argocd_installed() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (!at_ready).then_some(())
        })
        .filter_map(futures::future::ready)
    }
}

#[cfg(test)]
mod tests;
