//! Writing a request's next status (only when it changed), and the events that
//! narrate it: a phase change, drift that appeared.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Api, Resource, ResourceExt};

use super::{Context, Error, Finding, key, next_status};
use crate::{
    api::{
        EnvironmentRequest,
        conditions::{self, reasons, types},
        environment_request::{EnvironmentRequestStatus, Phase},
    },
    controller::{
        echoes::ReadBesidesStatus,
        events::{Event, EventType},
    },
};

pub(super) async fn write_status(request: &EnvironmentRequest, ctx: &Context, finding: &Finding) -> Result<(), Error> {
    let mut old = request.status.clone().unwrap_or_default();
    // `promotion` is the Rollout controller's (its own field manager): never sent from
    // here, so a cached copy cannot overwrite its newer record.
    old.promotion = None;
    let now = Time(Timestamp::now());
    let new = next_status(&old, request.metadata.generation, finding, &now);
    if new == old {
        return Ok(());
    }
    // Status first: it is what people and tools read; the event only narrates it.
    patch_status(request, ctx, &new).await?;
    if new.phase != old.phase {
        let (type_, reason) = match new.phase {
            Some(Phase::Failed) => (EventType::Warning, "Failed"),
            Some(Phase::AwaitingApproval) => (EventType::Warning, "AwaitingApproval"),
            Some(Phase::Provisioning) => (EventType::Normal, "Provisioning"),
            Some(Phase::Ready) => (EventType::Normal, "Ready"),
            Some(Phase::Expired) => (EventType::Normal, "Expired"),
            None => (EventType::Normal, "Updated"),
        };
        let message = crate::api::conditions::find(&new.conditions, crate::api::conditions::types::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        publish(ctx, request, type_, reason, message).await;
    }
    if let Some(message) = drift_appeared(&old, &new) {
        publish(ctx, request, EventType::Warning, reasons::DRIFTED, message).await;
    }
    Ok(())
}

/// The message of a `Drifted` Warning when live objects that matched the commit no
/// longer do (someone changed them by hand). Not for an environment Argo CD has not
/// applied yet: its objects are missing from the start, which is no news.
fn drift_appeared(old: &EnvironmentRequestStatus, new: &EnvironmentRequestStatus) -> Option<String> {
    let before = conditions::find(&old.conditions, types::IN_SYNC)?;
    let after = conditions::find(&new.conditions, types::IN_SYNC)?;
    (before.status == "True" && after.status == "False").then(|| after.message.clone())
}

pub(super) async fn patch_status(
    request: &EnvironmentRequest,
    ctx: &Context,
    status: &EnvironmentRequestStatus,
) -> Result<(), Error> {
    let api: Api<EnvironmentRequest> = Api::namespaced(ctx.client.clone(), &request.namespace().unwrap_or_default());
    // `promotion` is the Rollout controller's field: never sent from here, whoever calls.
    let status = EnvironmentRequestStatus { promotion: None, ..status.clone() };
    // Its watch event brings nothing this reconcile has not seen.
    let read = ReadBesidesStatus::of(request);
    crate::controller::apply_status_recorded(&api, request, &status, &ctx.echoes, read).await
}

/// Events are best effort: a failed event never fails a reconcile.
pub(super) async fn publish(ctx: &Context, request: &EnvironmentRequest, type_: EventType, reason: &str, note: String) {
    let event =
        Event { type_, reason: reason.to_owned(), note: Some(note), action: "Reconcile".to_owned(), secondary: None };
    if let Err(e) = ctx.events.publish(&event, &request.object_ref(&())).await {
        tracing::warn!(error = %e, request = %key(request), "cannot publish event");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::{
        api::{
            conditions::{ConditionStatus, Observation, set_condition},
            environment_request::{Difference, DriftState, DriftStatus},
        },
        controller::request::Committed,
        index::Index,
    };

    fn with_in_sync(status: ConditionStatus) -> EnvironmentRequestStatus {
        let mut s = EnvironmentRequestStatus::default();
        let observation = Observation {
            type_: types::IN_SYNC,
            status,
            reason: reasons::DRIFTED,
            message: "1 difference(s) from the commit: ResourceQuota/env/berth-quota spec.hard.pods".to_owned(),
            observed_generation: Some(1),
        };
        set_condition(&mut s.conditions, observation, &Time(Timestamp::now()));
        s
    }

    /// A commit Argo CD reports synced and healthy, its live objects compared: `drift`.
    fn committed(drift: DriftState) -> Finding {
        let difference = Difference {
            resource: "ResourceQuota/payments-preview/berth-quota".into(),
            field: "spec.hard.pods".into(),
            desired: Some("\"10\"".into()),
            live: Some("\"99\"".into()),
        };
        let differences = if drift == DriftState::Drifted { vec![difference] } else { vec![] };
        Finding::Committed(Box::new(Committed {
            namespace: "payments-preview".into(),
            commit: "abc123".into(),
            path: "clusters/in-cluster/tenants/payments/preview".into(),
            digest: "d1".into(),
            monthly_cost_usd: 40,
            expires_at: None,
            approved_by: None,
            sync: None,
            source: Default::default(),
            drift: Some(DriftStatus { state: drift, checked_at: None, differences, remediation: None }),
        }))
    }

    #[tokio::test]
    async fn drift_found_on_a_copy_from_before_the_in_sync_write_is_still_warned() {
        const STATUS: &str = "/apis/berth.dev/v1alpha1/namespaces/payments/environmentrequests/checkout-pr-1234/status";
        const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/payments/events";
        let (ctx, mut server, _remote) = crate::controller::fixtures::context(Index::with_objects([], [], [])).await;
        // The copy the index holds: from before any status write.
        let mut cached = crate::testing::request("preview");
        cached.metadata.resource_version = Some("10".into());
        let mut answered = cached.clone();
        answered.metadata.resource_version = Some("11".into());
        // Committed, live objects in sync: written (version 11), and Ready told.
        let in_sync = async {
            let status = server.status(STATUS, &answered).await;
            let event = server.echo("POST", EVENTS).await;
            (status, event)
        };
        let (in_sync_finding, drifted_finding) = (committed(DriftState::InSync), committed(DriftState::Drifted));
        let (written, (status, event)) = tokio::join!(write_status(&cached, &ctx, &in_sync_finding), in_sync);
        written.expect("written");
        assert_eq!(status.body["status"]["phase"], "Ready");
        assert_eq!(event.body["reason"], "Ready");
        // A quota edited by hand wakes the request before the index shows that write.
        let newest = super::super::as_last_written(Arc::new(cached), &ctx.echoes);
        let drifted = async {
            let status = server.status(STATUS, &answered).await;
            let event = server.echo("POST", EVENTS).await;
            server.assert_done();
            (status, event)
        };
        let work = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::join!(write_status(&newest, &ctx, &drifted_finding), drifted)
        });
        let (written, (status, event)) = work.await.expect("a status write and a Drifted warning");
        written.expect("written");
        assert_eq!(status.body["status"]["drift"]["state"], "Drifted");
        assert_eq!((&event.body["type"], &event.body["reason"]), (&json!("Warning"), &json!("Drifted")));
        let note = event.body["note"].as_str().unwrap_or_default();
        assert!(note.contains("spec.hard.pods"), "{note}");
    }

    #[test]
    fn a_drifted_warning_comes_only_when_matching_live_objects_are_changed() {
        let (in_sync, drifted) = (with_in_sync(ConditionStatus::True), with_in_sync(ConditionStatus::False));
        let message = drift_appeared(&in_sync, &drifted).expect("a warning");
        assert!(message.contains("spec.hard.pods"), "{message}");
        // Missing from the start (Argo CD has not applied it yet), still drifted, or back in sync.
        assert_eq!(drift_appeared(&EnvironmentRequestStatus::default(), &drifted), None);
        assert_eq!(drift_appeared(&drifted, &drifted), None);
        assert_eq!(drift_appeared(&drifted, &in_sync), None);
    }
}
