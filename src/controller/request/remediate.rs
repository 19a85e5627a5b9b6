//! Drift remediation, the I/O half: when [`crate::drift::remediation`] says so, set a
//! sync operation of the drifted objects on the Application that applied them.
//!
//! That is the Application whose mark (tracking id) the live objects carry: the root
//! app that applies Berth's folders, not the environment's own Application (which
//! deploys the app). The operation names only the drifted objects, so the root app's
//! other environments are left as they are. Its version is the one read: an operation
//! set meanwhile makes the apiserver refuse the patch rather than Berth replace it.

use std::collections::BTreeSet;

use kube::{
    Api,
    api::{DynamicObject, ListParams, Patch, PatchParams},
};
use serde_json::Value;

use super::{EventType, publish};
use crate::{
    api::{
        EnvironmentRequest,
        conditions::{self, reasons, types},
        environment_class::DriftMode,
        environment_request::{DriftState, DriftStatus, Remediation},
    },
    argocd,
    controller::Context,
    drift::{
        DesiredObject, ObjectKey,
        remediation::{Decision, Episode, decide},
    },
};

/// `drift` with what Berth did about it this time recorded in `remediation`.
pub async fn remediate(
    request: &EnvironmentRequest,
    mode: DriftMode,
    desired: Option<&[DesiredObject]>,
    mut drift: DriftStatus,
    ctx: &Context,
) -> DriftStatus {
    let old = request.status.clone().unwrap_or_default();
    let episode = Episode {
        mode,
        was_in_sync: conditions::is_true(&old.conditions, types::IN_SYNC),
        before: old.drift.and_then(|d| d.remediation),
        drifted: drift.state == DriftState::Drifted,
        busy: false,
    };
    // Most checks end here, without looking at any Application.
    if let Decision::Record(remediation) = decide(episode) {
        drift.remediation = remediation;
        return drift;
    }
    let index = ctx.index().await;
    let Some(desired) = desired else {
        return drift;
    };
    let differing: BTreeSet<&str> = drift.differences.iter().map(|d| d.resource.as_str()).collect();
    let drifted: Vec<ObjectKey> =
        desired.iter().filter(|o| differing.contains(o.key.to_string().as_str())).map(|o| o.key.clone()).collect();
    let argocd_namespace = &index.argocd().namespace;
    let live = |key: &ObjectKey| index.live(&key.kind, key.namespace.as_deref(), &key.name).ok().flatten();
    // The drifted objects' Application; for an object deleted by hand, the one that
    // applied the environment's other objects.
    let marked = |keys: &mut dyn Iterator<Item = &ObjectKey>| -> BTreeSet<String> {
        keys.filter_map(|key| live(key).as_ref().and_then(argocd::managed_by))
            .filter(|(namespace, _)| namespace.as_ref().is_none_or(|ns| ns == argocd_namespace))
            .map(|(_, name)| name)
            .collect()
    };
    let mut names = marked(&mut drifted.iter());
    if names.is_empty() {
        names = marked(&mut desired.iter().map(|o| &o.key));
    }
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), argocd_namespace, &index.argocd().resource);
    let applications = read_applications(&api, &names).await;
    if applications.is_empty() || drifted.is_empty() {
        tracing::warn!(request = %super::key(request), "drifted, but no Argo CD Application applied its objects: nothing to ask");
        drift.remediation = None;
        return drift;
    }
    // Asked already in this episode (the status that says so is not in the cache yet,
    // or its write was lost): recorded as asked, never a second request.
    let reason_prefix = format!("Berth: {} drifted", super::key(request));
    if applications.iter().any(|application| argocd::asked_for(application, &reason_prefix)) {
        drift.remediation = Some(Remediation::Requested);
        return drift;
    }
    let busy = applications.iter().any(argocd::operation_running);
    if let Decision::Record(remediation) = decide(Episode { busy, ..episode }) {
        drift.remediation = remediation;
        return drift;
    }
    let shown: Vec<String> = drifted.iter().map(ToString::to_string).collect();
    let reason = format!("{reason_prefix} from the commit ({})", shown.join(", "));
    let operation = argocd::sync_operation(&drifted, &reason);
    let mut asked = Vec::new();
    for application in &applications {
        let name = application["metadata"]["name"].as_str().unwrap_or_default();
        // The version read: an operation set since then makes the apiserver refuse
        // (409) rather than Berth replace it.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": application["metadata"]["resourceVersion"]},
            "operation": operation,
        });
        match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                ctx.metrics.count_drift_remediation();
                asked.push(name.to_owned());
            }
            Err(error) => tracing::warn!(application = %name, %error, "cannot ask Argo CD to sync drifted objects"),
        }
    }
    if asked.len() < applications.len() {
        // Asked again at the next check (the reconcile comes back soon while Pending).
        drift.remediation = Some(Remediation::Pending);
        return drift;
    }
    let note =
        format!("asked Argo CD to sync {} back to the commit (Application {})", shown.join(", "), asked.join(", "));
    publish(ctx, request, EventType::Normal, reasons::REMEDIATED, note).await;
    drift.remediation = Some(Remediation::Requested);
    drift
}

/// The Applications named, as JSON, fresh from the apiserver: Berth's index holds only
/// the Applications it rendered, not the root apps. Listed by name, since Berth may
/// list (and watch and patch) Applications but not get them.
async fn read_applications(api: &Api<DynamicObject>, names: &BTreeSet<String>) -> Vec<Value> {
    let mut found = Vec::new();
    for name in names {
        match api.list(&ListParams::default().fields(&format!("metadata.name={name}"))).await {
            Ok(list) => found.extend(list.items.into_iter().filter_map(|app| serde_json::to_value(app).ok())),
            Err(error) => tracing::warn!(application = %name, %error, "cannot read the Application to ask for a sync"),
        }
    }
    found
}
