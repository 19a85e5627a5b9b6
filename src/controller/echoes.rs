//! Berth's own status writes: the watch event each causes (its "echo"), told apart from
//! a change somebody else made so that it does not reconcile the object a second time;
//! and the status written, for reconciles that run before the index shows it.
//!
//! **Echoes** (filtered for requests only). A request's reconcile ends with a status write; the watch then delivers
//! the object with that status, and a second reconcile rendered, digested and compared
//! drift again only to find nothing to do (half of the reconciles of a burst with the
//! webhook, a third without; 10–30 % of Berth's CPU in the operator bench's runs). The
//! echo is recognised by the resource version the write returned **and** by everything
//! the reconcile read besides the status it wrote being unchanged (for a request:
//! generation, labels, annotations, finalizers, deletion, the Rollout controller's
//! `promotion`). Whatever else changes in between has its own watch event, which passes;
//! and if a watch restart lost that event, the re-listed object differs from what was
//! read, so it passes too. Anything in doubt is reconciled.
//!
//! **Read your own writes.** kube's cache does not promise that a reconcile sees the
//! controller's own last write: a reconcile woken by another object's event (a live
//! quota edited by hand) can run on a copy from before it. Deciding from that copy
//! misses transitions (no `Drifted` warning when `InSync` turns False, no remediation),
//! repeats events, and skips a write because the new status equals the stale one. Until
//! the index shows the write, [`Echoes::written_status`] hands the status Berth wrote: only
//! Berth writes these status fields, and every write is recorded (a failed one forgets
//! the last, see `apply_status_recorded`), so its last write is their newest value.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};

use crate::api::{EnvironmentRequest, environment_request::Promotion};

/// What a request's reconcile read besides the status it writes.
#[derive(Debug, PartialEq)]
pub struct ReadBesidesStatus {
    generation: Option<i64>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    finalizers: Option<Vec<String>>,
    deletion: Option<Time>,
    promotion: Option<Promotion>,
}

impl ReadBesidesStatus {
    pub fn of(request: &EnvironmentRequest) -> Self {
        let meta = &request.metadata;
        Self {
            generation: meta.generation,
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            finalizers: meta.finalizers.clone(),
            deletion: meta.deletion_timestamp.clone(),
            promotion: request.status.as_ref().and_then(|s| s.promotion.as_deref().cloned()),
        }
    }
}

/// One status write the index may not show yet.
#[derive(Debug)]
struct Written<S, R> {
    uid: Option<String>,
    resource_version: String,
    status: S,
    read: R,
    at: Instant,
}

/// An echo not seen by then never comes: its event came before the write's answer (and
/// was reconciled), or the object went away.
const ECHO_WAIT: Duration = Duration::from_secs(60);
/// Entries are swept of those older than [`ECHO_WAIT`] once there are more than this,
/// at most once per [`SWEEP_EVERY`] (a sweep walks them all, under the lock).
const SWEEP_ABOVE: usize = 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The status writes (of status type `S`) of one controller that the index may not show
/// yet, with what each reconcile read besides the status (`R`; `()` where echoes are
/// not filtered).
///
/// An entry lives until a reconcile finds the index showing it, its echo is filtered
/// (requests), the next write of the same object replaces it, a failed write forgets
/// it, or (past [`SWEEP_ABOVE`] entries) it is older than [`ECHO_WAIT`]. So requests'
/// entries are the writes in flight, not one status per request; tenants and classes
/// (whose echoes are reconciled) hold at most one each.
#[derive(Debug)]
pub struct Echoes<S, R = ()> {
    state: Mutex<Pending<S, R>>,
}

#[derive(Debug)]
struct Pending<S, R> {
    entries: HashMap<(String, String), Written<S, R>>,
    swept: Option<Instant>,
}

impl<S, R> Default for Echoes<S, R> {
    fn default() -> Self {
        Self { state: Mutex::new(Pending { entries: HashMap::new(), swept: None }) }
    }
}

impl<S: Clone, R: PartialEq> Echoes<S, R> {
    /// Records that `status` was written over `object` (the copy the reconcile acted
    /// on, which read `read`), and the apiserver answered with `resource_version`.
    pub fn wrote<K: Resource>(&self, object: &K, read: R, status: &S, resource_version: Option<String>) {
        let key = key(object);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.entries.len() > SWEEP_ABOVE && state.swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            state.entries.retain(|_, written| written.at.elapsed() < ECHO_WAIT);
            state.swept = Some(Instant::now());
        }
        let pending = &mut state.entries;
        match resource_version {
            Some(resource_version) => {
                let uid = object.meta().uid.clone();
                let written = Written { uid, resource_version, status: status.clone(), read, at: Instant::now() };
                pending.insert(key, written);
            }
            None => {
                pending.remove(&key);
            }
        }
    }

    /// Whether `event` is the echo of a status write recorded here (then it is consumed:
    /// it does not match twice); `read` tells what it holds besides the status, asked only
    /// for the event whose resource version the write returned. Anything else, including
    /// a deletion, is a change.
    pub fn is_echo<K: Resource>(&self, event: &K, read: impl FnOnce(&K) -> R) -> bool {
        let key = key(event);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = &mut state.entries;
        let Some(written) = pending.get(&key) else {
            return false;
        };
        if event.meta().resource_version.as_deref() != Some(written.resource_version.as_str()) {
            // An earlier change still on its way (its echo comes after it), or a later
            // one: the next write of this object replaces the entry either way.
            return false;
        }
        let echo = written.read == read(event);
        pending.remove(&key);
        echo
    }

    /// The status Berth last wrote for `cached`'s object when the index's copy
    /// (`cached`) may not show it yet; `None` when it does, or nothing was written.
    /// Only Berth writes these fields and every write is recorded, so the status
    /// written is their newest value, whether the copy predates the write or (its echo
    /// came before the write's answer, then another change) is newer.
    pub fn written_status<K: Resource>(&self, cached: &K) -> Option<S> {
        let key = key(cached);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = &mut state.entries;
        let written = pending.get(&key)?;
        let shown = cached.meta().resource_version.as_deref() == Some(written.resource_version.as_str());
        // Shown (its echo came before the write's answer), another object of the same
        // name, or an echo that never came: the copy is as new as Berth knows.
        if shown || written.uid != cached.meta().uid || written.at.elapsed() >= ECHO_WAIT {
            pending.remove(&key);
            return None;
        }
        Some(written.status.clone())
    }

    /// `cached` with the status Berth last wrote put in by `set`, when the index's copy
    /// may be from before that write; `cached` itself otherwise (no copy made).
    pub fn as_last_written<K>(&self, cached: Arc<K>, set: impl FnOnce(&mut K, S)) -> Arc<K>
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        let Some(written) = self.written_status(cached.as_ref()) else {
            return cached;
        };
        tracing::debug!(kind = %K::kind(&()), name = %cached.name_any(), "the index's copy may predate Berth's last status write: reconciled with that status");
        let mut newest = K::clone(&cached);
        set(&mut newest, written);
        Arc::new(newest)
    }

    /// How many writes the index may not show yet.
    #[cfg(test)]
    fn awaited(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).entries.len()
    }
}

fn key<K: Resource>(object: &K) -> (String, String) {
    (object.namespace().unwrap_or_default(), object.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::environment_request::{EnvironmentRequestStatus, Phase, PromotionState};

    type RequestEchoes = Echoes<EnvironmentRequestStatus, ReadBesidesStatus>;

    fn read() -> EnvironmentRequest {
        let mut request = crate::testing::request("preview");
        request.metadata.namespace = Some("payments".into());
        request.metadata.resource_version = Some("10".into());
        request.metadata.generation = Some(1);
        request
    }

    /// A write of status Ready over `read`, answered with `resource_version`.
    fn wrote(echoes: &RequestEchoes, read: &EnvironmentRequest, resource_version: Option<String>) {
        echoes.wrote(read, ReadBesidesStatus::of(read), &ready(), resource_version);
    }

    fn ready() -> EnvironmentRequestStatus {
        EnvironmentRequestStatus { phase: Some(Phase::Ready), ..Default::default() }
    }

    /// The object as the apiserver returns it after the status write.
    fn written(read: &EnvironmentRequest, resource_version: &str) -> EnvironmentRequest {
        let mut after = read.clone();
        after.metadata.resource_version = Some(resource_version.into());
        after.status = Some(ready());
        after
    }

    #[test]
    fn the_echo_of_a_status_write_is_recognised_once() {
        let echoes = RequestEchoes::default();
        let read = read();
        wrote(&echoes, &read, Some("11".into()));
        assert_eq!(echoes.awaited(), 1);
        let echo = written(&read, "11");
        assert!(echoes.is_echo(&echo, ReadBesidesStatus::of));
        assert_eq!(echoes.awaited(), 0, "consumed");
        assert!(!echoes.is_echo(&echo, ReadBesidesStatus::of), "the same object again (a re-list) is reconciled");
    }

    #[test]
    fn a_change_before_the_echo_passes_and_the_echo_is_still_recognised() {
        let echoes = RequestEchoes::default();
        let read = read();
        wrote(&echoes, &read, Some("12".into()));
        // Someone's label change landed between the read and the write: its own event
        // comes first, and the write's result carries that label too.
        let mut labelled = read.clone();
        labelled.metadata.resource_version = Some("11".into());
        labelled.labels_mut().insert("team".into(), "blue".into());
        assert!(!echoes.is_echo(&labelled, ReadBesidesStatus::of));
        assert_eq!(echoes.awaited(), 1, "still awaited");
        // The write's own event holds the label the reconcile never saw: reconciled.
        let mut echo = written(&read, "12");
        echo.labels_mut().insert("team".into(), "blue".into());
        assert!(!echoes.is_echo(&echo, ReadBesidesStatus::of));
    }

    #[test]
    fn whatever_the_reconcile_read_besides_its_status_must_be_unchanged() {
        type Change = fn(&mut EnvironmentRequest);
        let changes: [(&str, Change); 6] = [
            ("spec (generation)", |r| r.metadata.generation = Some(2)),
            ("annotation", |r| {
                r.annotations_mut().insert("berth.dev/x".into(), "y".into());
            }),
            ("label", |r| {
                r.labels_mut().insert("a".into(), "b".into());
            }),
            ("finalizers", |r| r.metadata.finalizers = Some(vec!["berth.dev/cleanup".into()])),
            ("deletion", |r| {
                r.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
            }),
            ("the rollout's promotion", |r| {
                let promotion = crate::testing::rollout::promotion(PromotionState::Committing);
                r.status.get_or_insert_default().promotion = Some(Box::new(promotion));
            }),
        ];
        for (what, change) in changes {
            let echoes = RequestEchoes::default();
            let read = read();
            wrote(&echoes, &read, Some("11".into()));
            let mut event = written(&read, "11");
            change(&mut event);
            assert!(!echoes.is_echo(&event, ReadBesidesStatus::of), "{what} changed: reconciled");
        }
    }

    #[test]
    fn echoes_that_never_came_are_swept_once_there_are_many() {
        let echoes = RequestEchoes::default();
        let mut request = read();
        for i in 0..=SWEEP_ABOVE {
            request.metadata.name = Some(format!("r{i}"));
            wrote(&echoes, &request, Some("11".into()));
        }
        {
            let mut state = echoes.state.lock().expect("lock");
            for written in state.entries.values_mut() {
                written.at = written.at.checked_sub(ECHO_WAIT).expect("the machine has been up a minute");
            }
        }
        request.metadata.name = Some("new".into());
        wrote(&echoes, &request, Some("12".into()));
        assert_eq!(echoes.awaited(), 1, "only the new one is awaited");
    }

    #[test]
    fn a_write_without_an_answer_forgets_the_earlier_one() {
        let echoes = RequestEchoes::default();
        let read = read();
        wrote(&echoes, &read, Some("11".into()));
        wrote(&echoes, &read, None);
        assert_eq!(echoes.awaited(), 0);
        let echo = written(&read, "11");
        assert!(!echoes.is_echo(&echo, ReadBesidesStatus::of));
    }

    #[test]
    fn a_reconcile_on_a_copy_from_before_the_write_gets_the_status_written() {
        let echoes = RequestEchoes::default();
        let read = read();
        assert_eq!(echoes.written_status(&read), None, "nothing written");
        wrote(&echoes, &read, Some("11".into()));
        // Woken by a live object's event before the echo reached the index.
        assert_eq!(echoes.written_status(&read), Some(ready()));
        assert_eq!(echoes.written_status(&read), Some(ready()), "until the index shows it");
        // The echo arrives: the index's copy shows the write.
        let echo = written(&read, "11");
        assert!(echoes.is_echo(&echo, ReadBesidesStatus::of));
        assert_eq!(echoes.written_status(&read), None);
    }

    #[test]
    fn a_copy_that_shows_the_write_or_is_another_object_is_used_as_it_is() {
        let echoes = RequestEchoes::default();
        let read = read();
        // The echo came before the write's answer (and was reconciled): the copy shows it.
        wrote(&echoes, &read, Some("11".into()));
        assert_eq!(echoes.written_status(&written(&read, "11")), None);
        assert_eq!(echoes.awaited(), 0, "forgotten");
        // Its echo came first, then someone's label change: a copy newer than the write,
        // whose status is still the one written (only Berth writes it).
        wrote(&echoes, &read, Some("11".into()));
        let mut labelled = written(&read, "12");
        labelled.labels_mut().insert("team".into(), "blue".into());
        assert_eq!(echoes.written_status(&labelled), labelled.status);
        // Deleted and created again under the same name: not the object written.
        let mut uid = read.clone();
        uid.metadata.uid = Some("first".into());
        wrote(&echoes, &uid, Some("12".into()));
        let mut again = read.clone();
        again.metadata.uid = Some("second".into());
        assert_eq!(echoes.written_status(&again), None);
        // Written long ago, its echo never seen: the copy is as new as Berth knows.
        wrote(&echoes, &read, Some("13".into()));
        for written in echoes.state.lock().expect("lock").entries.values_mut() {
            written.at = written.at.checked_sub(ECHO_WAIT).expect("the machine has been up a minute");
        }
        assert_eq!(echoes.written_status(&read), None);
    }
}
