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
    controller::events::{Event, EventType},
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
    let written = crate::controller::apply_status(&api, request, &status).await?;
    // Its watch event brings nothing this reconcile has not seen.
    ctx.echoes.wrote(request, written);
    Ok(())
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
    use super::*;
    use crate::api::conditions::{ConditionStatus, Observation, set_condition};

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
