//! Kubernetes events (events.k8s.io/v1) about Berth's objects.
//!
//! kube's `Recorder` remembers every event it sent for six minutes and scans all of
//! them on each publish, so it can count repeats into a series. Berth publishes only
//! on transitions, where repeats are rare; with 10,000 requests that cache held
//! 10,000 events and every publish walked it. This publisher keeps nothing: one
//! create per event.

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as KubeEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
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
}
