//! A new app revision: Ready again only once Argo CD synced it, never on the old
//! revision's Healthy (every status the request shows is recorded through a watch).

use std::sync::{Arc, Mutex};

use berth::api::{EnvironmentRequest, environment_request::Phase};
use futures::StreamExt;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};

use super::*;

#[tokio::test]
async fn a_new_app_revision_is_ready_only_once_argo_cd_synced_it() {
    let _turn = turn().await;
    let (tenant, status) = provisioned("", "rev").await;
    let env_ns = status.namespace.clone().unwrap_or_default();
    let commits = &app_repository().1;
    assert_eq!(status.sync.and_then(|s| s.revision), Some(commits[0].clone()));

    // Every status the request shows from here on, in order.
    let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, &tenant);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let (api, seen) = (api.clone(), seen.clone());
        tokio::spawn(async move {
            let config = watcher::Config::default().fields("metadata.name=rev");
            let mut statuses = std::pin::pin!(watcher(api, config).applied_objects());
            while let Some(Ok(request)) = statuses.next().await {
                let status = request.status.unwrap_or_default();
                seen.lock().unwrap_or_else(|e| e.into_inner()).push(status);
            }
        })
    };
    let patch = serde_json::json!({"spec": {"app": {"revision": "v2"}}});
    api.patch("rev", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("cannot change the revision: {e}"));
    wait_for(ARGOCD_PATIENCE, "v2 to be Ready", || async {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().any(|s| s.observed_generation == Some(2) && s.phase == Some(Phase::Ready)).then_some(())
    })
    .await;
    recorder.abort();

    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let at_v2: Vec<_> = seen.iter().filter(|s| s.observed_generation == Some(2)).collect();
    let story: Vec<String> = at_v2
        .iter()
        .map(|s| {
            let sync = s.sync.clone().unwrap_or_default();
            let compared = sync.compared_to.map(|c| c.target_revision).unwrap_or_default();
            format!("{:?} compared {compared} pending {:?}", s.phase, sync.pending_commit)
        })
        .collect();
    // First Provisioning, waiting for Argo CD, while it still runs v1 ...
    let first = at_v2.first().unwrap_or_else(|| panic!("no status at generation 2: {story:?}"));
    assert_eq!(first.phase, Some(Phase::Provisioning), "{story:?}");
    let sync = first.sync.clone().unwrap_or_default();
    assert_eq!(sync.live.map(|l| l.revision), Some(commits[0].clone()), "{story:?}");
    assert_eq!(sync.pending_commit, first.gitops.as_ref().and_then(|g| g.commit.clone()), "{story:?}");
    // ... and Ready only with Argo CD's report about v2 (its old Healthy never counts).
    for status in at_v2.iter().filter(|s| s.phase == Some(Phase::Ready)) {
        let sync = status.sync.clone().unwrap_or_default();
        assert_eq!(sync.compared_to.map(|c| c.target_revision).as_deref(), Some("v2"), "{story:?}");
        assert_eq!(sync.revision.as_deref(), Some(commits[1].as_str()), "{story:?}");
        assert_eq!(sync.pending_commit, None, "{story:?}");
    }
    let settings = get("configmap", Some(&env_ns), "web-settings").await.unwrap_or_default();
    assert_eq!(settings["data"]["greeting"], REVISIONS[1].greeting, "the app's ConfigMap: {settings}");
    delete_and_see_it_pruned(&tenant, "rev", &env_ns).await;
}
