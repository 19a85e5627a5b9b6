//! Refresh after push: Argo CD polls git every 3 minutes by default, so a commit took
//! minutes to reach the cluster. After each push Berth asks the Applications that deploy
//! its GitOps repository (the root apps; found by their `repoURL`) to refresh now. The
//! environments' own Applications need no refresh: once a root app applies a changed
//! Application, Argo CD notices the change on its own watch.
//!
//! Pushes in a burst are folded: a push while a refresh is under way asks for one more.

use std::sync::Arc;

use kube::{
    Api,
    api::{DynamicObject, ListParams, Patch, PatchParams},
};
use tokio::sync::Notify;

use crate::{argocd, index::Index, telemetry::Metrics};

/// Asks Argo CD to refresh the root apps after a push; a no-op when turned off.
#[derive(Clone, Default)]
pub struct Refresh {
    wanted: Option<Arc<Notify>>,
}

impl Refresh {
    /// Turned off (`--argocd-refresh=false`, tests).
    pub fn off() -> Self {
        Self::default()
    }

    /// Starts the task that refreshes the Applications in `namespace` that deploy from
    /// `repository`, each time [`Refresh::after_push`] is called.
    pub fn start(client: kube::Client, index: Arc<Index>, repository: String, metrics: Metrics) -> Self {
        let wanted = Arc::new(Notify::new());
        let api: Api<DynamicObject> = Api::namespaced_with(client, &index.argocd().namespace, &index.argocd().resource);
        tokio::spawn(run(api, index, repository, metrics, wanted.clone()));
        Self { wanted: Some(wanted) }
    }

    /// Something was pushed to the GitOps repository.
    pub fn after_push(&self) {
        if let Some(wanted) = &self.wanted {
            wanted.notify_one();
        }
    }
}

/// The shortest time between two rounds of refreshes: pushes within it are folded into
/// the next round (each round lists Argo CD's Applications once).
const FOLD: std::time::Duration = std::time::Duration::from_secs(1);

async fn run(api: Api<DynamicObject>, index: Arc<Index>, repository: String, metrics: Metrics, wanted: Arc<Notify>) {
    let mut warned_none = false;
    loop {
        wanted.notified().await;
        // Without Argo CD there is nothing to ask (and nothing to list).
        if !index.argocd_installed() {
            continue;
        }
        match refresh_root_apps(&api, &repository, &metrics).await {
            Ok(0) if !warned_none => {
                warned_none = true;
                tracing::info!(
                    "no Argo CD Application deploys from Berth's GitOps repository; nothing to refresh after a push"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot ask Argo CD to refresh; it picks the change up at its next poll")
            }
        }
        tokio::time::sleep(FOLD).await;
    }
}

/// Sets the refresh annotation on every Application that deploys from `repository`;
/// how many were asked. One that cannot be patched (deleted since the list) does not
/// keep the others from being asked.
async fn refresh_root_apps(
    api: &Api<DynamicObject>,
    repository: &str,
    metrics: &Metrics,
) -> Result<usize, kube::Error> {
    // From the apiserver's cache (resourceVersion=0): this runs after every push.
    let applications = api.list(&ListParams::default().match_any()).await?;
    let patch = serde_json::json!({ "metadata": { "annotations": { argocd::REFRESH_ANNOTATION: "normal" } } });
    let mut asked = 0;
    for app in applications.items {
        let name = app.metadata.name.clone().unwrap_or_default();
        let Ok(json) = serde_json::to_value(&app) else { continue };
        if !argocd::deploys_from(&json, repository) {
            continue;
        }
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                asked += 1;
                metrics.count_argocd_refresh();
                tracing::debug!(application = %name, "asked Argo CD to refresh");
            }
            Err(error) => tracing::warn!(application = %name, %error, "cannot ask Argo CD to refresh this Application"),
        }
    }
    Ok(asked)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::fixtures::scripted_client;

    const APPS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";

    #[tokio::test]
    async fn only_the_applications_that_deploy_from_berths_repository_are_asked_to_refresh() {
        let (client, mut server) = scripted_client();
        let api: Api<DynamicObject> = Api::namespaced_with(client, "argocd", &crate::render::application_resource());
        let metrics = Metrics::new().expect("metrics");
        let app = |name: &str, repo: &str| {
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                   "metadata": {"name": name, "namespace": "argocd"},
                   "spec": {"source": {"repoURL": repo, "path": "."}}})
        };
        let list = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationList", "metadata": {},
            "items": [app("berth-root", "https://git.example.com/envs"), app("team-web-1234", "https://git.example.com/web.git")]});
        let script = async {
            server.expect("GET", APPS, 200, list).await;
            let patch = server.echo("PATCH", &format!("{APPS}/berth-root")).await;
            server.assert_done();
            patch
        };
        let (refreshed, patch) =
            tokio::join!(refresh_root_apps(&api, "https://git.example.com/envs.git", &metrics), script);
        assert_eq!(refreshed.ok(), Some(1));
        assert_eq!(patch.body["metadata"]["annotations"][argocd::REFRESH_ANNOTATION], json!("normal"));
        let exported = prometheus::TextEncoder::new().encode_to_string(&metrics.registry().gather()).expect("text");
        assert!(exported.contains("berth_argocd_refreshes_total 1"), "{exported}");
    }
}
