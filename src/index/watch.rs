//! The watch tasks that fill the index: one per kind, always polled, each with its own
//! bounded backoff; errors go to the kind's health report, never to the controllers.
//!
//! A watch driven from inside a controller (kube's `Controller::for_stream`) stalled
//! after an apiserver restart: kube wraps all of a controller's triggers in one
//! backoff, so every error of any watch paused them all (up to 30 s each, growing,
//! reset only after two quiet minutes): nine watches failing one after another left
//! the request controller and its stores blind for minutes. Measured by e2e
//! `apiserver_restart` (SIGTERM, 60 s to exit, started again): 20 new requests Ready
//! 78 s after the apiserver answered again, or not within 165 s (2 of 3); now
//! 6.6–9.9 s (10 of 10).

use std::{
    fmt::Debug,
    future::Future,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Resource,
    runtime::{WatchStreamExt, reflector::Lookup, utils::Backoff, watcher},
};
use serde::de::DeserializeOwned;

use super::watched::Watched;
use crate::telemetry::WatchReport;

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

/// Spawns the watch that fills `watched` with `api`, once `start_after` resolves
/// (objects [`slim`]med first), and a probe that tells `report` when a failing watch's
/// apiserver answers again.
pub(super) fn spawn<K>(
    watched: Watched<K>,
    api: Api<K>,
    config: watcher::Config,
    report: WatchReport,
    start_after: impl Future<Output = ()> + Send + 'static,
) where
    K: Resource + Lookup + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    tokio::spawn(async move {
        start_after.await;
        tokio::spawn(probe_while_failing(api.clone(), report.clone()));
        let events = watcher(api, config).modify(|object| slim(object.meta_mut())).backoff(WatchBackoff::default());
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    report.ok();
                    watched.apply(event);
                }
                Err(error) => report.error(&error),
            }
        }
    });
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

/// Resolves once the CustomResourceDefinition `name` exists and is Established. Watches
/// that one CRD; a watch error (RBAC, apiserver down) is retried with backoff.
pub(super) async fn crd_established(client: kube::Client, name: String) {
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
