//! Drift, the I/O half: read the live objects an environment's files describe and
//! hand them to the pure diff in [`crate::drift`].

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use crate::{
    api::environment_request::{DriftState, DriftStatus, SyncStatus},
    argocd,
    controller::{Context, Error},
    drift::{self, DesiredObject, DriftError},
};

/// The sync and health Argo CD reports on the environment's Application (see
/// [`crate::argocd`]), or `None` when Argo CD is not installed. An Application Argo CD
/// has not created yet reads as `Unknown` / `Missing`.
pub async fn sync_status(namespace: &str, ctx: &Context) -> Result<Option<SyncStatus>, Error> {
    let index = ctx.index().await;
    if !index.argocd_installed() {
        return Ok(None);
    }
    let app = index.live("Application", Some(&ctx.render.argocd_namespace), namespace).unwrap_or_default();
    Ok(Some(app.as_ref().map_or_else(argocd::missing, argocd::sync_status)))
}

/// Compares the environment's rendered objects (its files parsed once by the caller,
/// who also hands them to remediation) with what is live. Argo CD's Application is
/// left out when Argo CD is not installed (nothing could apply it). `checkedAt` moves
/// only when the result changes, so an unchanged environment writes no status (no
/// reconcile spin).
pub async fn drift(
    cluster: &str,
    desired: &Result<Vec<DesiredObject>, DriftError>,
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
    let desired = match desired {
        Ok(desired) => desired,
        Err(e) => return Ok(unknown(format!("cannot read the rendered files: {e}"), old)),
    };
    let index = ctx.index().await;
    let argocd_installed = index.argocd_installed();
    let mut live = Vec::new();
    let mut compared = Vec::new();
    for object in desired {
        let key = &object.key;
        if key.kind == "Application" && !argocd_installed {
            continue;
        }
        // Read from the watch-fed stores: the watch that triggered this reconcile
        // has already put the change there.
        let found = match index.live(&key.kind, key.namespace.as_deref(), &key.name) {
            Ok(found) => found,
            Err(e) => return Ok(unknown(format!("cannot read {key}: {e}"), old)),
        };
        live.extend(found);
        compared.push(object);
    }
    let status = drift::drift_status(compared, &live, Time(Timestamp::now()));
    Ok(keep_checked_at(status, old))
}

fn unknown(reason: String, old: Option<&DriftStatus>) -> DriftStatus {
    tracing::warn!(%reason, "drift unknown");
    keep_checked_at(
        DriftStatus {
            state: DriftState::Unknown,
            checked_at: Some(Time(Timestamp::now())),
            differences: Vec::new(),
            remediation: None,
        },
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
