//! The kube-runtime controllers: one reconciler per kind (Tenant, EnvironmentClass,
//! EnvironmentRequest, Rollout), sharing a [`Context`].
//! Each reconcile reads top to bottom: gather (I/O) → decide (pure) → commit or
//! apply (I/O) → status.

pub mod budget;
mod class;
mod context;
pub mod echoes;
mod error;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod inventory;
pub mod orphans;
pub mod refresh;
pub mod request;
pub mod rollout;
pub mod tenant;

use std::{future::Future, sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::{self, Action},
        reflector::{ObjectRef, store::Store},
    },
};

pub use context::{Context, FIELD_MANAGER, FINALIZER};
pub use error::Error;

use crate::{
    api::labels,
    api::{EnvironmentClass, EnvironmentRequest, Freeze, Tenant},
    index::{Feeds, Index},
    telemetry::{Controller as Kind, Outcome, ReadinessCheck},
};

/// How long tenant and class reconciles wait for more request changes to fold in.
const SUMMARY_DEBOUNCE: Duration = Duration::from_millis(500);
/// Requeue after a transient error (network, conflict, git remote down).
const TRANSIENT_RETRY: Duration = Duration::from_secs(5);
/// How often a settled object of any kind is looked at again when nothing changes.
pub(crate) const RESYNC: Duration = Duration::from_secs(300);
/// Requeue after a permanent error: only a change will help, but look again later.
const PERMANENT_RETRY: Duration = RESYNC;
/// Requeue after the git remote refused Berth's credentials: the fix is a rotated
/// Secret, which Berth reads without a restart, so look again within a minute
/// rather than at the resync. Longer than the writer's own retry of the changes it
/// kept (30 s), which publishes them first: the reconcile then finds them committed
/// instead of sending a second batch, so the remote sees one failed login per
/// writer retry, not two.
const CREDENTIALS_RETRY: Duration = Duration::from_secs(60);

fn error_policy<K>(_object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    if error.is_transient() {
        Action::requeue(TRANSIENT_RETRY)
    } else if error.is_refused_credentials() {
        Action::requeue(CREDENTIALS_RETRY)
    } else {
        Action::requeue(PERMANENT_RETRY)
    }
}

/// A rollout looks again sooner after a "permanent" error: what refuses its writes
/// (an admission policy, a quota) is usually fixed by a person while the rollout
/// waits mid-batch, and a batch should not sit for minutes after that.
const ROLLOUT_PERMANENT_RETRY: Duration = Duration::from_secs(15);

fn rollout_error_policy(_object: Arc<crate::api::Rollout>, error: &Error, _ctx: Arc<Context>) -> Action {
    if error.is_transient() { Action::requeue(TRANSIENT_RETRY) } else { Action::requeue(ROLLOUT_PERMANENT_RETRY) }
}

/// Wraps a reconciler with its metrics timer and tracing span.
async fn instrumented<K, F, Fut>(kind: Kind, object: Arc<K>, ctx: Arc<Context>, reconcile: F) -> Result<Action, Error>
where
    K: Resource,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let key = match object.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", object.meta().name.as_deref().unwrap_or_default()),
        None => object.meta().name.clone().unwrap_or_default(),
    };
    let span = tracing::info_span!("reconcile", controller = kind.as_str(), object = %key);
    let timer = ctx.metrics.reconcile_timer(kind);
    let result = tracing::Instrument::instrument(reconcile(object, ctx.clone()), span.clone()).await;
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(e) if e.is_awaiting_prune() => Outcome::Success,
        Err(e) if e.is_transient() => Outcome::ErrorTransient,
        Err(_) => Outcome::ErrorPermanent,
    };
    match &result {
        Err(error) if error.is_awaiting_prune() => span.in_scope(|| tracing::debug!(%error, "deletion waits")),
        Err(error) => span.in_scope(|| tracing::warn!(%error, "reconcile failed")),
        Ok(_) => {}
    }
    timer.finish(outcome);
    result
}

/// Writes `status` of `object` with server-side apply under Berth's field manager.
/// Callers skip the call when the status did not change (no write, no watch event).
/// Returns the resource version the write produced (see [`echoes`]).
async fn apply_status<K>(api: &Api<K>, object: &K, status: &impl serde::Serialize) -> Result<Option<String>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let patch = serde_json::json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status });
    let written = api
        .patch_status(&name, &kube::api::PatchParams::apply(FIELD_MANAGER).force(), &kube::api::Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Status { what: format!("{} {name}", K::kind(&())), source })?;
    Ok(written.meta().resource_version.clone())
}

/// [`apply_status`], recorded in `writes` (see [`echoes`]): what was written, or, when
/// the write failed (it may have landed or not), nothing, so that no older write
/// stands in for the apiserver's status.
async fn apply_status_recorded<K, S, R>(
    api: &Api<K>,
    object: &K,
    status: &S,
    writes: &echoes::Echoes<S, R>,
    read: R,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize + Clone,
    R: PartialEq,
{
    let written = apply_status(api, object, status).await;
    writes.wrote(object, read, status, written.as_ref().ok().cloned().flatten());
    written.map(drop)
}

/// Generations seen per object name: a watch event passes only when the object is
/// new or its spec changed (`metadata.generation` moved), not on status updates.
#[derive(Default)]
struct SeenGenerations(std::sync::Mutex<std::collections::HashMap<String, Option<i64>>>);

impl SeenGenerations {
    fn changed<K: Resource>(&self, object: &K) -> bool {
        let name = object.meta().name.clone().unwrap_or_default();
        let generation = object.meta().generation;
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.insert(name, generation) != Some(generation)
    }
}

/// Keeps the environments-by-phase/class and drifted-environments gauges current,
/// from the request controller's cache (no API calls).
async fn report_environments(store: Store<EnvironmentRequest>, metrics: crate::telemetry::Metrics) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let mut counts: std::collections::BTreeMap<(String, String), i64> = std::collections::BTreeMap::new();
        let mut drifted = 0;
        for request in store.state() {
            let status = request.status.as_ref();
            let phase = status.and_then(|s| s.phase).map(|p| format!("{p:?}")).unwrap_or_else(|| "Pending".to_owned());
            *counts.entry((phase, request.spec.class.clone())).or_default() += 1;
            if status
                .and_then(|s| s.drift.as_ref())
                .is_some_and(|d| d.state == crate::api::environment_request::DriftState::Drifted)
            {
                drifted += 1;
            }
        }
        metrics.set_environments(&counts);
        metrics.set_drifted_environments(drifted);
    }
}

/// Yields once, after the index holds its first lists, when `resumed`: a standby
/// taking over subscribed its feeds only when elected, so what changed before that
/// triggers nothing; each controller reconciles everything once instead.
fn takeover(index: Arc<Index>, resumed: bool) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::once(async move {
        if resumed {
            index.ready().await;
        }
        resumed.then_some(())
    })
    .filter_map(futures::future::ready)
}

/// The request a rendered object belongs to, from its `berth.dev/request` annotation.
fn request_of<K: Resource>(object: Arc<K>) -> Option<ObjectRef<EnvironmentRequest>> {
    let (namespace, name) = object.meta().annotations.as_ref()?.get(labels::REQUEST_ANNOTATION)?.split_once('/')?;
    Some(ObjectRef::new(name).within(namespace))
}

/// References to `requests`, as controller triggers.
fn refs(requests: Vec<Arc<EnvironmentRequest>>) -> Vec<ObjectRef<EnvironmentRequest>> {
    requests.iter().map(|r| ObjectRef::from_obj(r.as_ref())).collect()
}

/// Marks `caches_synced` ready once every kind the controllers wait for is listed, by
/// the index's own rule, so a pod whose controllers wait (a CRD an upgrade forgot, such
/// as `freezes.berth.dev`, or missing RBAC) is not reported ready; until then it says
/// which kinds are missing every 10 s.
pub async fn report_caches_synced(index: Arc<Index>, caches_synced: ReadinessCheck) {
    let mut checks: u32 = 0;
    loop {
        if index.all_listed() {
            caches_synced.set(true);
            return;
        }
        checks += 1;
        if checks.is_multiple_of(50) {
            let missing = index.unlisted().join(", ");
            tracing::warn!(%missing, "cannot list Berth's kinds yet: are the CRDs in crds/ applied (`kubectl apply -f crds/`) and is Berth's RBAC in place?");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the Tenant, EnvironmentClass, EnvironmentRequest and Rollout controllers until
/// `shutdown` completes; reconciles in flight finish first. `resumed` says the feeds
/// were subscribed after the index filled (a standby taking over), so every object is
/// reconciled once.
///
/// The controllers take the index's feeds as shared streams: the store's copies, never
/// an error (the watches handle theirs, see [`crate::index`], because kube pauses all
/// of a controller's triggers on any one's error).
pub async fn run(
    ctx: Arc<Context>,
    feeds: Feeds,
    resumed: bool,
    max_concurrent_reconciles: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let store = ctx.index.requests.store().clone();
    let (sweep_ctx, shutdown_sweeper) = (ctx.clone(), shutdown.clone());
    // Every request change touches its tenant's and class's totals. The request watch
    // tells their controllers which ones, so the requests are watched (and held) once.
    let (tenant_totals, changed_tenants) = futures::channel::mpsc::unbounded();
    let (class_totals, changed_classes) = futures::channel::mpsc::unbounded();
    let own_writes = ctx.clone();
    let request_feed = feeds
        .requests
        .inspect(move |request| {
            // A send fails only once that controller has stopped (shutdown).
            let _ = tenant_totals.unbounded_send(ObjectRef::<Tenant>::new(&request.spec.tenant));
            let _ = class_totals.unbounded_send(ObjectRef::<EnvironmentClass>::new(&request.spec.class));
        })
        // The totals above count its new status; the request itself has nothing new.
        .filter(move |request| {
            futures::future::ready(!own_writes.echoes.is_echo(request.as_ref(), echoes::ReadBesidesStatus::of))
        });
    // Unbounded, a burst of 10,000 requests held 10,000 renderings and as many
    // apiserver connections at once.
    let requests = Controller::for_shared_stream(request_feed, store.clone())
        .with_config(controller::Config::default().concurrency(max_concurrent_reconciles));
    tokio::spawn(report_environments(store.clone(), ctx.metrics.clone()));
    let (by_class, by_tenant) = (ctx.index.clone(), ctx.index.clone());
    let (class_specs, tenant_specs) = (SeenGenerations::default(), SeenGenerations::default());
    let applications = ctx.index.applications.dyntype();
    let requests = requests
        .watches_shared_stream(feeds.classes, move |class| {
            // Status updates (environment counts) must not re-reconcile every request.
            if !class_specs.changed(class.as_ref()) {
                return Vec::new();
            }
            refs(by_class.requests_of_class(&class.name_any()))
        })
        .watches_shared_stream(feeds.tenants, move |tenant| {
            if !tenant_specs.changed(tenant.as_ref()) {
                return Vec::new();
            }
            refs(by_tenant.requests_of_tenant(&tenant.name_any()))
        })
        // Drift is driven by watches: a change to any object Berth rendered
        // reconciles the request it was rendered for.
        .watches_shared_stream(feeds.namespaces, request_of)
        .watches_shared_stream(feeds.quotas, request_of)
        .watches_shared_stream(feeds.limits, request_of)
        .watches_shared_stream(feeds.network_policies, request_of)
        .watches_shared_stream(feeds.bindings, request_of)
        .graceful_shutdown_on(shutdown.clone());
    // Argo CD's Applications report sync and health. Installed after Berth started,
    // every request looks again: each now has an Application to wait for.
    let requests = requests
        .watches_shared_stream_with(feeds.applications, request_of, applications)
        .reconcile_all_on(ctx.index.clone().argocd_arrival())
        .reconcile_all_on(takeover(ctx.index.clone(), resumed))
        .run(|o, c| instrumented(Kind::EnvironmentRequest, o, c, request::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});

    // During a burst the debounce folds the request changes into a few tenant and
    // class reconciles (and status writes) instead of one each.
    let summaries = controller::Config::default().debounce(SUMMARY_DEBOUNCE);
    let tenants = Controller::for_shared_stream(feeds.tenant_controller, ctx.index.tenants.store().clone())
        .with_config(summaries.clone())
        .reconcile_on(changed_tenants)
        .reconcile_all_on(takeover(ctx.index.clone(), resumed))
        .graceful_shutdown_on(shutdown.clone())
        .run(|o, c| instrumented(Kind::Tenant, o, c, tenant::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});

    // A Freeze changed (lifted early, say): the class changes it may hold look again.
    let frozen_classes = ctx.index.clone();
    let classes = Controller::for_shared_stream(feeds.class_controller, ctx.index.classes.store().clone())
        .with_config(summaries)
        .reconcile_on(changed_classes)
        .watches_shared_stream(feeds.class_freezes, move |_: Arc<Freeze>| class::held(&frozen_classes))
        .reconcile_all_on(takeover(ctx.index.clone(), resumed))
        .graceful_shutdown_on(shutdown.clone())
        .run(|o, c| instrumented(Kind::EnvironmentClass, o, c, class::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});

    // A request's status (Argo CD's sync, Berth's drift, a promotion) is what a
    // rollout's gate reads, so its changes wake the rollout that holds it.
    let (by_request, frozen_rollouts) = (ctx.index.clone(), ctx.index.clone());
    let rollouts = Controller::for_shared_stream(feeds.rollouts, ctx.index.rollouts.store().clone())
        .watches_shared_stream(feeds.rollout_requests, move |request| rollout::rollouts_of(&by_request, &request))
        .watches_shared_stream(feeds.rollout_freezes, move |_: Arc<Freeze>| rollout::frozen(&frozen_rollouts))
        .reconcile_all_on(takeover(ctx.index.clone(), resumed))
        .graceful_shutdown_on(shutdown)
        .run(|o, c| instrumented(Kind::Rollout, o, c, rollout::reconcile), rollout_error_policy, ctx)
        .for_each(|_| async {});

    // Only the leader sweeps (this runs on the leader), and stops with the controllers.
    let sweeper = async {
        tokio::select! {
            () = orphans::sweep_periodically(sweep_ctx) => {}
            () = shutdown_sweeper => {}
        }
    };

    futures::join!(requests, tenants, classes, rollouts, sweeper);
}
