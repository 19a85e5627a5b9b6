//! Kubernetes events (events.k8s.io/v1) about Berth's objects.
//!
//! kube's `Recorder` remembers every event it sent for six minutes and scans all of
//! them on each publish, so it can count repeats into a series. Berth publishes only
//! on transitions, where repeats are rare; with 10,000 requests that cache held
//! 10,000 events and every publish walked it. This publisher keeps nothing: one
//! create per event.

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as KubeEvent},
    apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};

pub use kube::runtime::events::{Event, EventType};

/// Publishes events as one controller instance.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
}

impl EventPublisher {
    /// `instance` tells replicas apart (the pod name); defaults to the controller name.
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| controller.to_owned());
        Self { client, controller: controller.to_owned(), instance }
    }

    /// Creates the event in the namespace of the object it is about (`default` for
    /// cluster-scoped objects, as kubectl looks for them there).
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        api.create(&PostParams::default(), &self.event(event, regarding, Timestamp::now())).await?;
        Ok(())
    }

    /// Publishes best effort: a failed event is logged and never fails a reconcile
    /// (the status already says what the event narrates).
    pub async fn publish_or_log(&self, event: &Event, regarding: &ObjectReference) {
        if let Err(error) = self.publish(event, regarding).await {
            let object = regarding.name.as_deref().unwrap_or_default();
            tracing::warn!(%error, kind = regarding.kind.as_deref(), object, "cannot publish event");
        }
    }

    /// The event object (pure). Its name is the object's plus the time in hex
    /// nanoseconds, the convention client-go's recorder follows.
    fn event(&self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> KubeEvent {
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or("berth"), now.as_nanosecond());
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(regarding.namespace.clone().unwrap_or_else(|| "default".to_owned())),
                ..Default::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

/// The event that narrates a change of one condition, if people should hear of it
/// (pure): a Warning when it is not `True` and its status or reason changed; a
/// Normal event when it turned `True` again after being otherwise. Nothing when a
/// retry fails the same way, even in other words (a git error's text can differ
/// from one attempt to the next: the condition's message follows it, events do
/// not), nor when an object is fine from the start.
pub fn condition_event(before: Option<&Condition>, after: &Condition) -> Option<Event> {
    let state = |c: &Condition| (c.status.clone(), c.reason.clone());
    if before.map(state) == Some(state(after)) {
        return None;
    }
    let type_ = if after.status == "True" {
        before.filter(|b| b.status != "True")?;
        EventType::Normal
    } else {
        EventType::Warning
    };
    Some(Event {
        type_,
        reason: after.reason.clone(),
        note: Some(after.message.clone()),
        action: "Reconcile".to_owned(),
        secondary: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> EventPublisher {
        // A client is needed only to publish; building the object needs none.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        EventPublisher::new(client, "berth", Some("berth-0".to_owned()))
    }

    #[tokio::test]
    async fn the_event_names_its_object_reporter_and_transition() {
        let regarding = ObjectReference {
            api_version: Some("berth.dev/v1alpha1".to_owned()),
            kind: Some("EnvironmentRequest".to_owned()),
            namespace: Some("team-a".to_owned()),
            name: Some("preview-1".to_owned()),
            uid: Some("u-1".to_owned()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "Failed".to_owned(),
            note: Some("class \"gold\" is not allowed".to_owned()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().expect("time");
        let built = publisher().event(&event, &regarding, now);
        assert_eq!(built.metadata.name.as_deref(), Some(format!("preview-1.{:x}", now.as_nanosecond()).as_str()));
        assert_eq!(built.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(built.type_.as_deref(), Some("Warning"));
        assert_eq!(built.reason.as_deref(), Some("Failed"));
        assert_eq!(built.note, event.note);
        assert_eq!(built.regarding.as_ref().and_then(|r| r.uid.as_deref()), Some("u-1"));
        assert_eq!(built.reporting_controller.as_deref(), Some("berth"));
        assert_eq!(built.reporting_instance.as_deref(), Some("berth-0"));
        assert_eq!(built.event_time.map(|t| t.0), Some(now));
    }

    #[tokio::test]
    async fn cluster_scoped_objects_get_their_events_in_default() {
        let regarding =
            ObjectReference { kind: Some("Tenant".to_owned()), name: Some("team-a".to_owned()), ..Default::default() };
        let event = Event {
            type_: EventType::Normal,
            reason: "Ready".to_owned(),
            note: None,
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        let built = publisher().event(&event, &regarding, Timestamp::UNIX_EPOCH);
        assert_eq!(built.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(built.type_.as_deref(), Some("Normal"));
        assert_eq!(built.metadata.name.as_deref(), Some("team-a.0"));
    }

    fn condition(status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: "Ready".to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn a_new_failure_is_a_warning_with_the_condition_s_reason_and_message() {
        let failed = condition("False", "NamespaceFailed", "cannot create namespace t: forbidden");
        for before in [None, Some(condition("True", "NamespaceReady", "ok"))] {
            let event = condition_event(before.as_ref(), &failed).expect("an event");
            assert!(matches!(event.type_, EventType::Warning));
            assert_eq!(event.reason, "NamespaceFailed");
            assert_eq!(event.note.as_deref(), Some("cannot create namespace t: forbidden"));
        }
    }

    #[test]
    fn the_same_failure_observed_again_publishes_nothing_even_in_other_words() {
        let failed = condition("False", "RerenderFailed", "cannot commit: connection refused");
        let mut retried = failed.clone();
        retried.observed_generation = Some(2);
        assert!(condition_event(Some(&failed), &retried).is_none());
        retried.message = "cannot commit: timed out".to_owned();
        assert!(condition_event(Some(&failed), &retried).is_none());
    }

    #[test]
    fn another_kind_of_failure_while_failing_is_told() {
        let before = condition("False", "NamespaceFailed", "cannot create namespace t: forbidden");
        let after = condition("False", "RBACFailed", "cannot apply Role berth-requester in t: terminating");
        assert!(matches!(condition_event(Some(&before), &after).map(|e| e.type_), Some(EventType::Warning)));
    }

    #[test]
    fn recovery_is_a_normal_event_and_a_healthy_start_is_silent() {
        let ready = condition("True", "NamespaceReady", "members create requests in t");
        let failed = condition("False", "NamespaceFailed", "cannot create namespace t: forbidden");
        let event = condition_event(Some(&failed), &ready).expect("recovery is told");
        assert!(matches!(event.type_, EventType::Normal));
        assert_eq!(event.reason, "NamespaceReady");
        assert!(condition_event(None, &ready).is_none(), "fine from the start: nothing to tell");
        assert!(condition_event(Some(&ready), &ready).is_none());
    }
}
