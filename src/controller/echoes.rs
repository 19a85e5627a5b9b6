//! The watch event a status write of our own causes (its "echo"), told apart from a
//! change somebody else made, so that it does not reconcile the object a second time.
//!
//! A request's reconcile ends with a status write; the watch then delivers the object
//! with that status, and a second reconcile rendered, digested and compared drift
//! again only to find nothing to do (half of the reconciles of a burst with the webhook,
//! a third without; 10–30 % of Berth's CPU in the operator bench's runs). The echo
//! is recognised by the resource version the write returned **and** by everything the
//! reconcile read besides the status it wrote being unchanged (generation, labels,
//! annotations, finalizers, deletion, the Rollout controller's `promotion`). Whatever
//! else changes in between has its own watch event, which passes; and if a watch
//! restart lost that event, the re-listed object differs from what was read, so it
//! passes too. Anything in doubt is reconciled.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::{EnvironmentRequest, environment_request::Promotion};

/// What a reconcile read of a request besides the status it writes.
#[derive(Debug, PartialEq)]
struct Read {
    generation: Option<i64>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    finalizers: Option<Vec<String>>,
    deletion: Option<Time>,
    promotion: Option<Promotion>,
}

impl Read {
    fn of(request: &EnvironmentRequest) -> Self {
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

/// One status write whose echo has not arrived yet.
#[derive(Debug)]
struct Written {
    resource_version: String,
    read: Read,
    at: Instant,
}

/// An echo not seen by then never comes: its event came before the write's answer (and
/// was reconciled), or the request went away.
const ECHO_WAIT: Duration = Duration::from_secs(60);
/// Entries are swept of those older than [`ECHO_WAIT`] once there are more than this.
const SWEEP_ABOVE: usize = 1024;

/// The status writes of the request controller whose echoes are still on their way.
/// An entry lives until its echo arrives, the next write of the same request replaces
/// it, or (past [`SWEEP_ABOVE`] entries) it is older than [`ECHO_WAIT`].
#[derive(Debug, Default)]
pub struct Echoes {
    pending: Mutex<HashMap<(String, String), Written>>,
}

impl Echoes {
    /// Records that the status of `read` (the copy the reconcile acted on) was written,
    /// and the apiserver answered with `resource_version`.
    pub fn wrote(&self, read: &EnvironmentRequest, resource_version: Option<String>) {
        let key = key(read);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() > SWEEP_ABOVE {
            pending.retain(|_, written| written.at.elapsed() < ECHO_WAIT);
        }
        match resource_version {
            Some(resource_version) => {
                pending.insert(key, Written { resource_version, read: Read::of(read), at: Instant::now() });
            }
            None => {
                pending.remove(&key);
            }
        }
    }

    /// Whether `event` is the echo of a status write recorded here (then it is consumed:
    /// it does not match twice). Anything else, including a deletion, is a change.
    pub fn is_echo(&self, event: &EnvironmentRequest) -> bool {
        let key = key(event);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(written) = pending.get(&key) else {
            return false;
        };
        if event.metadata.resource_version.as_deref() != Some(written.resource_version.as_str()) {
            // An earlier change still on its way (its echo comes after it), or a later
            // one: the next write of this request replaces the entry either way.
            return false;
        }
        let echo = written.read == Read::of(event);
        pending.remove(&key);
        echo
    }

    /// How many echoes are awaited.
    #[cfg(test)]
    fn awaited(&self) -> usize {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

fn key(request: &EnvironmentRequest) -> (String, String) {
    (request.namespace().unwrap_or_default(), request.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::environment_request::{EnvironmentRequestStatus, Phase, PromotionState};

    fn read() -> EnvironmentRequest {
        let mut request = crate::testing::request("preview");
        request.metadata.namespace = Some("payments".into());
        request.metadata.resource_version = Some("10".into());
        request.metadata.generation = Some(1);
        request
    }

    /// The object as the apiserver returns it after the status write.
    fn written(read: &EnvironmentRequest, resource_version: &str) -> EnvironmentRequest {
        let mut after = read.clone();
        after.metadata.resource_version = Some(resource_version.into());
        after.status = Some(EnvironmentRequestStatus { phase: Some(Phase::Ready), ..Default::default() });
        after
    }

    #[test]
    fn the_echo_of_a_status_write_is_recognised_once() {
        let echoes = Echoes::default();
        let read = read();
        echoes.wrote(&read, Some("11".into()));
        assert_eq!(echoes.awaited(), 1);
        let echo = written(&read, "11");
        assert!(echoes.is_echo(&echo));
        assert_eq!(echoes.awaited(), 0, "consumed");
        assert!(!echoes.is_echo(&echo), "the same object again (a re-list) is reconciled");
    }

    #[test]
    fn a_change_before_the_echo_passes_and_the_echo_is_still_recognised() {
        let echoes = Echoes::default();
        let read = read();
        echoes.wrote(&read, Some("12".into()));
        // Someone's label change landed between the read and the write: its own event
        // comes first, and the write's result carries that label too.
        let mut labelled = read.clone();
        labelled.metadata.resource_version = Some("11".into());
        labelled.labels_mut().insert("team".into(), "blue".into());
        assert!(!echoes.is_echo(&labelled));
        assert_eq!(echoes.awaited(), 1, "still awaited");
        // The write's own event holds the label the reconcile never saw: reconciled.
        let mut echo = written(&read, "12");
        echo.labels_mut().insert("team".into(), "blue".into());
        assert!(!echoes.is_echo(&echo));
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
                r.status.get_or_insert_default().promotion = Some(Box::new(Promotion {
                    rollout: "web".into(),
                    rollout_uid: String::new(),
                    revision: "v2".into(),
                    previous_revision: "v1".into(),
                    stage: "canary".into(),
                    batch: 1,
                    state: PromotionState::Committing,
                    commit: None,
                    rendered_digest: None,
                    spec_generation: 1,
                    since: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                }));
            }),
        ];
        for (what, change) in changes {
            let echoes = Echoes::default();
            let read = read();
            echoes.wrote(&read, Some("11".into()));
            let mut event = written(&read, "11");
            change(&mut event);
            assert!(!echoes.is_echo(&event), "{what} changed: reconciled");
        }
    }

    #[test]
    fn echoes_that_never_came_are_swept_once_there_are_many() {
        let echoes = Echoes::default();
        let mut request = read();
        for i in 0..=SWEEP_ABOVE {
            request.metadata.name = Some(format!("r{i}"));
            echoes.wrote(&request, Some("11".into()));
        }
        {
            let mut pending = echoes.pending.lock().expect("lock");
            for written in pending.values_mut() {
                written.at = written.at.checked_sub(ECHO_WAIT).expect("the machine has been up a minute");
            }
        }
        request.metadata.name = Some("new".into());
        echoes.wrote(&request, Some("12".into()));
        assert_eq!(echoes.awaited(), 1, "only the new one is awaited");
    }

    #[test]
    fn a_write_without_an_answer_forgets_the_earlier_one() {
        let echoes = Echoes::default();
        let read = read();
        echoes.wrote(&read, Some("11".into()));
        echoes.wrote(&read, None);
        assert_eq!(echoes.awaited(), 0);
        assert!(!echoes.is_echo(&written(&read, "11")));
    }
}
