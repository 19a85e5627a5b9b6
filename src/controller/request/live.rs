//! Drift, the I/O half: read the live objects an environment's files describe and
//! hand them to the pure diff in [`crate::drift`].

use std::collections::BTreeMap;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api,
    api::DynamicObject,
    core::{ApiResource, GroupVersionKind},
};

use crate::{
    api::environment_request::{DriftState, DriftStatus, SyncStatus},
    controller::{Context, Error},
    drift,
};

/// Plural resource names of what the renderer produces.
fn plural(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Namespace" => "namespaces",
        "ResourceQuota" => "resourcequotas",
        "LimitRange" => "limitranges",
        "NetworkPolicy" => "networkpolicies",
        "RoleBinding" => "rolebindings",
        "Application" => "applications",
        _ => return None,
    })
}

/// Argo CD's Application resource (argoproj.io/v1alpha1).
pub fn application_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"), "applications")
}

/// The sync and health Argo CD reports on the environment's Application, or `None`
/// when Argo CD is not installed. An Application Argo CD has not created yet reads
/// as `Unknown` / `Missing`.
pub async fn sync_status(namespace: &str, ctx: &Context) -> Result<Option<SyncStatus>, Error> {
    if !ctx.argocd_installed {
        return Ok(None);
    }
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctx.render.argocd_namespace, &application_resource());
    let app = api.get_opt(namespace).await.map_err(|source| Error::Read {
        what: format!("Application {}/{namespace}", ctx.render.argocd_namespace),
        source,
    })?;
    let Some(app) = app else {
        return Ok(Some(SyncStatus {
            status: Some("Unknown".to_owned()),
            health: Some("Missing".to_owned()),
            revision: None,
        }));
    };
    let status = &app.data["status"];
    let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
    Ok(Some(SyncStatus {
        status: text(&status["sync"]["status"]).or(Some("Unknown".to_owned())),
        health: text(&status["health"]["status"]).or(Some("Unknown".to_owned())),
        revision: text(&status["sync"]["revision"]),
    }))
}

/// Compares the environment's rendered `files` with what is live. Argo CD's
/// Application is left out when Argo CD is not installed (nothing could apply it).
/// `checkedAt` moves only when the result changes, so an unchanged environment
/// writes no status (no reconcile spin).
pub async fn drift(
    cluster: &str,
    files: &BTreeMap<String, String>,
    old: Option<&DriftStatus>,
    ctx: &Context,
) -> Result<DriftStatus, Error> {
    // Berth reads its own cluster only; other clusters' objects are out of its sight.
    if cluster != crate::api::environment_class::IN_CLUSTER {
        return Ok(unknown(
            format!("cluster {cluster:?} is not the one Berth runs in; drift is not checked there"),
            old,
        ));
    }
    let desired = match drift::desired_objects(files) {
        Ok(desired) => desired,
        Err(e) => return Ok(unknown(format!("cannot read the rendered files: {e}"), old)),
    };
    let mut live = Vec::new();
    let mut compared = BTreeMap::new();
    for object in &desired {
        let key = &object.key;
        if key.kind == "Application" && !ctx.argocd_installed {
            continue;
        }
        let Some(plural) = plural(&key.kind) else { continue };
        let (group, version) = key.api_version.split_once('/').unwrap_or(("", key.api_version.as_str()));
        let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, &key.kind), plural);
        let api: Api<DynamicObject> = match &key.namespace {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
            None => Api::all_with(ctx.client.clone(), &resource),
        };
        // One unreadable kind (RBAC, a missing CRD) makes drift Unknown, not the reconcile fail.
        let found = match api.get_opt(&key.name).await {
            Ok(found) => found,
            Err(e) => return Ok(unknown(format!("cannot read {key}: {e}"), old)),
        };
        if let Some(found) = found {
            live.push(serde_json::to_value(found).unwrap_or_default());
        }
        compared.insert(object.file.clone(), files.get(&object.file).cloned().unwrap_or_default());
    }
    let status = match drift::drift_status(&compared, &live, Time(Timestamp::now())) {
        Ok(status) => status,
        Err(e) => return Ok(unknown(format!("cannot compare: {e}"), old)),
    };
    Ok(keep_checked_at(status, old))
}

fn unknown(reason: String, old: Option<&DriftStatus>) -> DriftStatus {
    tracing::warn!(%reason, "drift unknown");
    keep_checked_at(
        DriftStatus { state: DriftState::Unknown, checked_at: Some(Time(Timestamp::now())), differences: Vec::new() },
        old,
    )
}

fn keep_checked_at(mut status: DriftStatus, old: Option<&DriftStatus>) -> DriftStatus {
    if let Some(old) = old
        && old.state == status.state
        && old.differences == status.differences
    {
        status.checked_at = old.checked_at.clone();
    }
    status
}
