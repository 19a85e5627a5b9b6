//! In-memory copies of what the controllers and the admission webhook read on every
//! decision: requests, classes, tenants and the live objects Berth rendered. One
//! watch per kind fills its store, and every controller that reacts to the kind is
//! told about each change (a reconcile caused by a change always sees that change)
//! and reads memory instead of calling the apiserver (a settled request's reconcile
//! used to cost ten GETs).
//!
//! Each watch runs as a task of its own, always polled, with its own bounded backoff;
//! the controllers only ever receive objects, never errors. A watch driven from inside
//! a controller (kube's `Controller::for_stream`) stalled after an apiserver restart:
//! kube wraps all of a controller's triggers in one backoff, so every error of any
//! watch paused them all (up to 30 s each, growing, reset only after two quiet
//! minutes): nine watches failing one after another left the request controller and
//! its stores blind for minutes. Measured by e2e `apiserver_restart` (SIGTERM, 60 s
//! to exit, started again): 20 new requests Ready 78 s after the apiserver answered
//! again, or not within 165 s (2 of 3); now 6.6–9.9 s (10 of 10).

use std::{
    fmt::Debug,
    future::Future,
    hash::{BuildHasher, Hasher},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

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
        utils::Backoff,
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::{
    api::{EnvironmentClass, EnvironmentRequest, Tenant},
    telemetry::{WatchReport, Watches},
};

pub use kube::runtime::reflector::Store;

/// The stores; each is kept filled by its own watch task, on every replica.
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

/// The changes the watches deliver, one feed per controller that reacts to them: the
/// request controller reads all of them, the tenant and class controllers their own.
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
    /// Tenants again, for the Tenant controller.
    pub tenant_controller: Feed<Tenant>,
    /// Classes again, for the EnvironmentClass controller.
    pub class_controller: Feed<EnvironmentClass>,
}

impl Feeds {
    /// Drops what the feeds deliver (the stores fill on their own, and the webhook reads
    /// them on every replica) until `until` resolves, then hands the feeds, mid-stream,
    /// to the controllers: a standby that becomes leader does not list everything again.
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
                tenant_controller,
                class_controller,
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
                tenant_controller.by_ref().map(drop).boxed(),
                class_controller.by_ref().map(drop).boxed(),
            ]);
            // Feeds never end; if they all did, that would still not be an election.
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

/// The objects a watch added, changed or deleted, as a controller takes triggers.
pub type Feed<K> = std::pin::Pin<Box<dyn Stream<Item = K> + Send>>;

/// The controllers told about one kind's changes; each gets every change from the
/// moment it subscribed. Unbounded, so a busy controller never holds a watch back:
/// what waits here is at most one entry per change, and a controller's scheduler
/// takes them as fast as they come (it coalesces them per object).
struct Subscribers<K>(Arc<Mutex<Vec<mpsc::UnboundedSender<K>>>>);

impl<K: Clone + Send + 'static> Subscribers<K> {
    fn new() -> Self {
        Self(Arc::default())
    }

    fn subscribe(&self) -> Feed<K> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(sender);
        Box::pin(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|object| (object, receiver))
        }))
    }

    fn send(&self, object: &K) {
        // A controller that stopped (shutdown) no longer listens.
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retain(|sender| sender.send(object.clone()).is_ok());
    }
}

/// The retry delay of a failed watch: from 0.5 s, doubling, at most [`WATCH_BACKOFF_MAX`],
/// each delay scaled by a random factor in [0.5, 1] so replicas do not retry in step;
/// back to 0.5 s after the watch delivers again.
#[derive(Debug, Default)]
struct WatchBackoff {
    failures: u32,
}

/// The longest a watch waits before trying again (kube's default waits up to 30 s
/// and keeps that long after the apiserver is back).
pub const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);
const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(500);

impl WatchBackoff {
    /// The delay after `failures` failures in a row, before jitter.
    fn ceiling(failures: u32) -> Duration {
        WATCH_BACKOFF_MIN.saturating_mul(1 << failures.min(16)).min(WATCH_BACKOFF_MAX)
    }

    /// `ceiling` scaled into [ceiling / 2, ceiling] by `random` (any u64).
    fn jittered(ceiling: Duration, random: u64) -> Duration {
        let fraction = 0.5 + (random % 1_000) as f64 / 2_000.0;
        ceiling.mul_f64(fraction)
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ceiling = Self::ceiling(self.failures);
        self.failures = self.failures.saturating_add(1);
        // Randomly keyed per call: enough randomness for jitter without another crate.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Some(Self::jittered(ceiling, random))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Watches with `api`, keeps the store filled and tells `subscribers`, until the
/// process ends. Errors go to `report` (and the log), never to the controllers.
async fn run_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    subscribers: Subscribers<K>,
    report: WatchReport,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    let events =
        watcher(api, config).modify(|object| slim(object.meta_mut())).backoff(WatchBackoff::default()).reflect(writer);
    let mut events = std::pin::pin!(events);
    let mut relay = Relay::default();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                report.ok();
                for object in relay.deliver(event) {
                    subscribers.send(&object);
                }
            }
            Err(error) => report.error(&error),
        }
    }
}

/// Which objects of a watch event to tell the controllers about, and when. The store
/// takes a (re-)list's objects all at once at its end, so they are told then: told
/// during the list, a controller read the object from the store before it was there
/// (a request created or edited while the apiserver was away was then never
/// reconciled: `ObjectNotFound`, or its old generation reconciled again).
struct Relay<K> {
    listed: Vec<K>,
}

impl<K> Default for Relay<K> {
    fn default() -> Self {
        Self { listed: Vec::new() }
    }
}

impl<K> Relay<K> {
    fn deliver(&mut self, event: watcher::Event<K>) -> Vec<K> {
        match event {
            watcher::Event::Apply(object) | watcher::Event::Delete(object) => vec![object],
            watcher::Event::Init => {
                self.listed.clear();
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                self.listed.push(object);
                Vec::new()
            }
            watcher::Event::InitDone => std::mem::take(&mut self.listed),
        }
    }
}

/// How often a failing watch's kind is probed, and how long a probe may take.
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
// A probe proves only that the apiserver answers; the watch must have retried since.
const _: () = assert!(WATCH_BACKOFF_MAX.as_millis() < crate::telemetry::WATCH_RETRY_WINDOW.as_millis());

/// While the watch fails, lists one object of its kind now and then, so its health
/// knows when the apiserver answers again (a watch that re-establishes says nothing).
async fn probe_while_failing<K>(api: Api<K>, report: WatchReport)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let one = kube::api::ListParams::default().limit(1);
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if report.failing() && matches!(tokio::time::timeout(PROBE_TIMEOUT, api.list_metadata(&one)).await, Ok(Ok(_))) {
            report.reached();
        }
    }
}

/// A store and its watch task (spawned here), objects [`slim`]med first; `feeds` feeds
/// of its changes, subscribed before the watch starts so none misses the first list.
fn reflected<K, const N: usize>(
    api: Api<K>,
    config: watcher::Config,
    dyntype: K::DynamicType,
    report: WatchReport,
    start_after: impl Future<Output = ()> + Send + 'static,
) -> (Store<K>, [Feed<K>; N])
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    let writer = Writer::new(dyntype);
    let reader = writer.as_reader();
    let subscribers = Subscribers::new();
    let feeds = std::array::from_fn(|_| subscribers.subscribe());
    tokio::spawn(async move {
        start_after.await;
        tokio::spawn(probe_while_failing(api.clone(), report.clone()));
        run_watch(api, config, writer, subscribers, report).await;
    });
    (reader, feeds)
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

/// Where Berth looks for Argo CD's Applications.
pub struct ArgoCd {
    /// The Application resource (argoproj.io/v1alpha1).
    pub resource: ApiResource,
    /// The namespace Argo CD watches for Applications (Berth renders them there).
    pub namespace: String,
    /// Whether the Application CRD existed when Berth started.
    pub installed_at_start: bool,
}

/// [`reflected`] for a kind of k8s-openapi or Berth's own, in every namespace.
fn watched<K, const N: usize>(
    client: &kube::Client,
    config: watcher::Config,
    report: WatchReport,
) -> (Store<K>, [Feed<K>; N])
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    reflected(Api::all(client.clone()), config, (), report, std::future::ready(()))
}

/// Builds every store and starts its watch; `rendered` selects the objects Berth
/// rendered. `watches` learns how each watch fares.
pub fn build(client: &kube::Client, rendered: watcher::Config, argocd: ArgoCd, watches: &Watches) -> (Stores, Feeds) {
    let ArgoCd { resource: applications, namespace: argocd_namespace, installed_at_start: argocd_at_start } = argocd;
    let all = watcher::Config::default();
    let report = |kind| watches.report(kind);
    let (requests, [request_feed]) = watched(client, all.clone(), report("environmentrequests"));
    let (classes, [class_feed, class_controller]) = watched(client, all.clone(), report("environmentclasses"));
    let (tenants, [tenant_feed, tenant_controller]) = watched(client, all, report("tenants"));
    let (namespaces, [namespace_feed]) = watched(client, rendered.clone(), report("namespaces"));
    let (quotas, [quota_feed]) = watched(client, rendered.clone(), report("resourcequotas"));
    let (limits, [limit_feed]) = watched(client, rendered.clone(), report("limitranges"));
    let (network_policies, [policy_feed]) = watched(client, rendered.clone(), report("networkpolicies"));
    let (bindings, [binding_feed]) = watched(client, rendered.clone(), report("rolebindings"));
    // Watching Applications before their CRD exists would only collect 404s; the watch
    // starts once the CRD is established, so Argo CD installed later is picked up.
    let api = Api::namespaced_with(client.clone(), &argocd_namespace, &applications);
    let installed = crd_established(client.clone(), crd_name(&applications));
    let (application_store, [application_feed]) =
        reflected(api, rendered, applications.clone(), report("applications"), installed);
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
        tenant_controller,
        class_controller,
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
    fn a_failing_watch_waits_longer_each_time_up_to_the_maximum_and_starts_over_once_it_delivers() {
        let ceilings: Vec<Duration> = (0..7).map(WatchBackoff::ceiling).collect();
        let ms = Duration::from_millis;
        assert_eq!(ceilings, [ms(500), ms(1000), ms(2000), ms(4000), ms(5000), ms(5000), ms(5000)]);
        assert_eq!(WatchBackoff::ceiling(u32::MAX), WATCH_BACKOFF_MAX);

        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(10).collect();
        assert!(delays.iter().all(|d| *d <= WATCH_BACKOFF_MAX), "{delays:?}");
        assert!(delays[9] >= WATCH_BACKOFF_MAX / 2, "{delays:?}");
        backoff.reset();
        assert!(backoff.next().is_some_and(|d| d <= WATCH_BACKOFF_MIN), "reset starts over");
    }

    #[test]
    fn jitter_scales_the_delay_into_its_upper_half() {
        let ceiling = Duration::from_secs(4);
        assert_eq!(WatchBackoff::jittered(ceiling, 0), Duration::from_secs(2));
        assert_eq!(WatchBackoff::jittered(ceiling, 1_000), Duration::from_secs(2));
        assert_eq!(WatchBackoff::jittered(ceiling, 500), Duration::from_secs(3));
        let top = WatchBackoff::jittered(ceiling, 999);
        assert!(top > Duration::from_millis(3990) && top < ceiling, "{top:?}");
    }

    #[test]
    fn a_lists_objects_are_told_at_its_end_when_the_store_holds_them_and_changes_at_once() {
        let mut relay = Relay::default();
        assert!(relay.deliver(watcher::Event::Init).is_empty());
        assert!(relay.deliver(watcher::Event::InitApply("a")).is_empty());
        assert!(relay.deliver(watcher::Event::InitApply("b")).is_empty());
        assert_eq!(relay.deliver(watcher::Event::InitDone), ["a", "b"]);
        assert_eq!(relay.deliver(watcher::Event::Apply("c")), ["c"]);
        assert_eq!(relay.deliver(watcher::Event::Delete("a")), ["a"]);
        // A list cut short by an error starts over: only the new list is told.
        assert!(relay.deliver(watcher::Event::Init).is_empty());
        relay.deliver(watcher::Event::InitApply("stale"));
        relay.deliver(watcher::Event::Init);
        relay.deliver(watcher::Event::InitApply("d"));
        assert_eq!(relay.deliver(watcher::Event::InitDone), ["d"]);
        assert!(relay.deliver(watcher::Event::InitDone).is_empty());
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_change_and_a_gone_one_is_dropped() {
        let subscribers = Subscribers::<u32>::new();
        let (mut first, second) = (subscribers.subscribe(), subscribers.subscribe());
        subscribers.send(&1);
        drop(second);
        subscribers.send(&2);
        assert_eq!(subscribers.0.lock().map(|s| s.len()).unwrap_or_default(), 1);
        assert_eq!(first.next().await, Some(1));
        assert_eq!(first.next().await, Some(2));
    }

    #[test]
    fn cached_objects_lose_managed_fields_and_the_last_applied_copy_but_keep_other_annotations() {
        let mut meta = ObjectMeta {
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            annotations: Some(
                [
                    (LAST_APPLIED.to_owned(), "{\"big\": \"copy\"}".to_owned()),
                    (crate::api::labels::REQUEST_ANNOTATION.to_owned(), "team/web".to_owned()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        };
        slim(&mut meta);
        assert_eq!(meta.managed_fields, None);
        let annotations = meta.annotations.unwrap_or_default();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations.get(crate::api::labels::REQUEST_ANNOTATION).map(String::as_str), Some("team/web"));
    }
}
