//! Rollouts through the real operator on the loopback control plane (tier 2): each
//! batch one commit with its trailers, gates that wait for Argo CD to report the
//! promoted revision (never the Healthy status from before), a failing gate that
//! rolls back with a commit restoring the exact previous bytes.
//! Argo CD's part is played by [`FakeArgoCd`]: it applies what each environment's
//! folder holds at the branch head and reports the Application synced at that
//! revision, Healthy or (for chosen environments) Degraded, the way Argo CD's
//! application controller would.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use berth::api::{
    EnvironmentRequest, Rollout,
    environment_request::{Phase, PromotionState},
    rollout::RolloutPhase,
};
use berth_e2e::suite::*;
use kube::Api;

mod cli;

/// Plays Argo CD for the environments of one tenant.
#[derive(Clone, Default)]
struct FakeArgoCd {
    /// Environments (request names) reported Degraded at a revision: name → revision.
    degraded: Arc<Mutex<BTreeMap<String, String>>>,
    /// What was reported last per environment (folder digest), to skip repeats.
    reported: Arc<Mutex<BTreeMap<String, String>>>,
}

impl FakeArgoCd {
    fn degrade(&self, request: &str, revision: &str) {
        self.degraded.lock().unwrap_or_else(|e| e.into_inner()).insert(request.to_owned(), revision.to_owned());
    }

    /// Every 300 ms: for each request of `tenant`, apply its folder at the head and
    /// report its Application.
    fn run(self, tenant: String) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.pass(&tenant).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    }

    async fn pass(&self, tenant: &str) {
        let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, tenant);
        let Ok(requests) = api.list(&Default::default()).await else {
            return;
        };
        for request in requests {
            let name = request.metadata.name.clone().unwrap_or_default();
            let Some(path) = request.status.as_ref().and_then(|s| s.gitops.as_ref()).and_then(|g| g.path.clone())
            else {
                continue;
            };
            let Some(files) = files_at_head(&remote(), &path) else {
                continue;
            };
            let Some(application) = files.get("application.yaml") else {
                continue;
            };
            let revision = target_revision(application);
            let degraded = self.degraded.lock().unwrap_or_else(|e| e.into_inner()).get(&name) == Some(&revision);
            let health = if degraded { "Degraded" } else { "Healthy" };
            let key = format!("{}|{health}", files.values().cloned().collect::<Vec<_>>().join("---\n"));
            if self.reported.lock().unwrap_or_else(|e| e.into_inner()).get(&name) == Some(&key) {
                continue;
            }
            // The namespace first, then the rest, as Argo CD's sync waves would.
            let mut manifests = files.get("namespace.yaml").cloned().unwrap_or_default();
            for (file, yaml) in &files {
                if file != "namespace.yaml" && file != "README.md" {
                    manifests.push_str("\n---\n");
                    manifests.push_str(yaml);
                }
            }
            if !cluster().kubectl("admin", &["apply", "-f", "-"], Some(&manifests)).await.success {
                continue;
            }
            let namespace = request.status.as_ref().and_then(|s| s.namespace.clone()).unwrap_or_default();
            let status = serde_json::json!({"status": {
                "sync": {"status": "Synced", "revision": format!("sha-{revision}"),
                    "comparedTo": {"source": {"repoURL": "https://git.example.com/web.git", "path": "deploy",
                        "targetRevision": revision}, "destination": {"name": "in-cluster"}}},
                "health": {"status": health},
            }});
            let status = status.to_string();
            let args =
                ["patch", "applications.argoproj.io", &namespace, "-n", "argocd", "--type", "merge", "-p", &status];
            let patched = cluster().kubectl("admin", &args, None).await;
            if patched.success {
                self.reported.lock().unwrap_or_else(|e| e.into_inner()).insert(name, key);
            }
        }
    }
}

fn target_revision(application_yaml: &str) -> String {
    let value: serde_yaml::Value = serde_yaml::from_str(application_yaml).unwrap_or_default();
    value["spec"]["source"]["targetRevision"].as_str().unwrap_or_default().to_owned()
}

fn environment_yaml(tenant: &str, name: &str, class: &str, ring: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: EnvironmentRequest
metadata: {{name: {name}, namespace: {tenant}, labels: {{app: web, ring: {ring}}}}}
spec:
  tenant: {tenant}
  class: {class}
  app: {{name: web, repoURL: https://git.example.com/web.git, path: deploy, revision: v1}}
"
    )
}

fn rollout_yaml(tenant: &str, name: &str, revision: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: Rollout
metadata: {{name: {name}, namespace: {tenant}}}
spec:
  app: web
  revision: {revision}
  selector: {{matchLabels: {{app: web}}}}
  stages:
    - name: canary
      selector: {{matchLabels: {{ring: canary}}}}
    - name: production
      batchSize: 1
      healthGate: {{progressDeadline: 2m}}
  {extra}
"
    )
}

/// A tenant with three Ready environments on v1 (`canary`, `prod-a`, `prod-b`), and
/// the fake Argo CD playing for it.
async fn three_environments(argocd: &FakeArgoCd) -> (String, tokio::task::JoinHandle<()>) {
    cluster().install_argocd_crds().await;
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("ro-{}", suffix()));
    // Argo CD syncs the class's environments on its own: what a gate on sync needs.
    kubectl_apply(&class_yaml(&class, 1, "argocd: {syncPolicy: {automated: true}}")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    for (name, ring) in [("canary", "canary"), ("prod-a", "production"), ("prod-b", "production")] {
        kubectl_apply(&environment_yaml(&tenant, name, &class, ring)).await;
    }
    let task = argocd.clone().run(tenant.clone());
    for name in ["canary", "prod-a", "prod-b"] {
        wait_phase(&tenant, name, Phase::Ready, Duration::from_secs(60)).await;
    }
    (tenant, task)
}

async fn wait_rollout(tenant: &str, name: &str, phase: RolloutPhase) -> Rollout {
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, tenant);
    let last = Arc::new(Mutex::new(String::new()));
    let what = format!("rollout {name} to be {phase:?}");
    let waiting = wait_for(Duration::from_secs(90), &what, || {
        let (api, last) = (api.clone(), last.clone());
        async move {
            let rollout = api.get_opt(name).await.ok().flatten()?;
            let status = rollout.status.clone()?;
            *last.lock().unwrap_or_else(|e| e.into_inner()) = serde_yaml::to_string(&status).unwrap_or_default();
            (status.phase == Some(phase)).then_some(rollout)
        }
    });
    // On a timeout, the rollout's last status says where it stood.
    let guard = LastStatus(last.clone());
    let rollout = waiting.await;
    std::mem::forget(guard);
    rollout
}

/// Prints the rollout's last status if the wait panics.
struct LastStatus(Arc<Mutex<String>>);

impl Drop for LastStatus {
    fn drop(&mut self) {
        eprintln!("rollout status when the wait gave up:\n{}", self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The commits on main since `since`, oldest first, with their messages.
fn messages_since(since: &str) -> Vec<(String, String)> {
    let repo = git2::Repository::open_bare(remote()).unwrap_or_else(|e| panic!("{e}"));
    let mut out: Vec<(String, String)> = commits_since(&remote(), since)
        .into_iter()
        .filter_map(|id| {
            let commit = repo.find_commit(git2::Oid::from_str(&id).ok()?).ok()?;
            Some((id, commit.message().unwrap_or_default().to_owned()))
        })
        .collect();
    out.reverse();
    out
}

fn head() -> String {
    let repo = git2::Repository::open_bare(remote()).unwrap_or_else(|e| panic!("{e}"));
    repo.refname_to_id("refs/heads/main").map(|id| id.to_string()).unwrap_or_default()
}

/// Folders a commit changed, against its first parent.
fn changed_folders(commit: &str) -> BTreeSet<String> {
    let repo = git2::Repository::open_bare(remote()).unwrap_or_else(|e| panic!("{e}"));
    let commit = repo.find_commit(git2::Oid::from_str(commit).unwrap_or_else(|e| panic!("{e}"))).expect("commit");
    let parent = commit.parent(0).ok().and_then(|p| p.tree().ok());
    let diff = repo.diff_tree_to_tree(parent.as_ref(), commit.tree().ok().as_ref(), None).expect("diff");
    diff.deltas()
        .filter_map(|d| d.new_file().path().or(d.old_file().path()).map(|p| p.to_string_lossy().into_owned()))
        .filter_map(|p| p.rsplit_once('/').map(|(dir, _)| dir.to_owned()))
        .collect()
}

async fn request(tenant: &str, name: &str) -> EnvironmentRequest {
    let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, tenant);
    api.get(name).await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_rollout_commits_each_batch_once_and_moves_on_only_when_argo_cd_reports_the_new_revision() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let before = head();
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", "")).await;
    let done = wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();

    let status = done.status.unwrap_or_default();
    assert_eq!(status.progress.as_deref(), Some("3/3"));
    // One commit per batch, each changing exactly its environment's folder, in order.
    let batches: Vec<(String, String)> = messages_since(&before)
        .into_iter()
        .filter(|(_, m)| m.contains(&format!("Berth-Rollout: {tenant}/web-v2")))
        .collect();
    let steps: Vec<&str> =
        batches.iter().filter_map(|(_, m)| m.lines().find_map(|l| l.strip_prefix("Berth-Rollout-Step: "))).collect();
    assert_eq!(steps, ["canary/1", "production/1", "production/2"], "{batches:#?}");
    for ((commit, message), name) in batches.iter().zip(["canary", "prod-a", "prod-b"]) {
        let folders = changed_folders(commit);
        assert_eq!(folders.len(), 1, "{commit}: {folders:?}");
        assert!(folders.iter().all(|f| f.ends_with(&format!("/{name}"))), "{folders:?}");
        assert!(message.contains(&format!("Berth-Rollout: {tenant}/web-v2")), "{message}");
        assert!(message.contains("Berth-Revision: v2"), "{message}");
        assert!(message.contains(&format!("Berth-Request: {tenant}/{name}")), "{message}");
        let recorded = status.history.iter().any(|h| &h.commit == commit);
        assert!(recorded, "{commit} not in the rollout's history");
    }
    // Each environment: promoted, on v2 in git, its spec untouched, Ready.
    for name in ["canary", "prod-a", "prod-b"] {
        let request = request(&tenant, name).await;
        assert_eq!(request.spec.app.revision, "v1", "the rollout never edits the spec");
        let status = request.status.clone().unwrap_or_default();
        let promotion = status.promotion.clone().expect("a promotion record");
        assert_eq!((promotion.state, promotion.revision.as_str()), (PromotionState::Committed, "v2"));
        assert_eq!(promotion.previous_revision, "v1");
        let path = status.gitops.and_then(|g| g.path).unwrap_or_default();
        let files = files_at_head(&remote(), &path).expect("committed");
        assert_eq!(target_revision(&files["application.yaml"]), "v2");
        assert_eq!(status.phase, Some(Phase::Ready));
    }
    // The request controller made no second commit for a promoted environment.
    let ours: Vec<_> = messages_since(&before).into_iter().filter(|(_, m)| m.contains(&format!("{tenant}/"))).collect();
    assert_eq!(ours.len(), batches.len(), "commits other than the batches: {ours:#?}");
}

#[tokio::test]
async fn a_degraded_environment_rolls_its_batch_back_to_the_exact_previous_bytes() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    argocd.degrade("prod-a", "v3");
    let prod_a = request(&tenant, "prod-a").await;
    let path = prod_a.status.and_then(|s| s.gitops).and_then(|g| g.path).unwrap_or_default();
    let bytes_before = files_at_head(&remote(), &path).expect("committed");

    kubectl_apply(&rollout_yaml(&tenant, "web-v3", "v3", "onFailure: Rollback")).await;
    let rolled_back = wait_rollout(&tenant, "web-v3", RolloutPhase::RolledBack).await;
    task.abort();

    let status = rolled_back.status.unwrap_or_default();
    assert!(
        status.failures.iter().any(|f| f.environment == "prod-a" && f.reason == "Degraded"),
        "{:?}",
        status.failures
    );
    // prod-b was never touched; canary stays promoted (scope: the failed batch).
    assert_eq!(request(&tenant, "prod-b").await.status.and_then(|s| s.promotion), None);
    let canary = request(&tenant, "canary").await.status.and_then(|s| s.promotion).expect("canary promoted");
    assert_eq!(canary.state, PromotionState::Committed);
    // prod-a: its folder holds exactly what it held before the rollout.
    assert_eq!(files_at_head(&remote(), &path).expect("still committed"), bytes_before);
    let promotion = request(&tenant, "prod-a").await.status.and_then(|s| s.promotion).expect("a record");
    assert_eq!(promotion.state, PromotionState::RolledBack);
    let promote = status.history.iter().find(|h| h.stage == "production").map(|h| h.commit.clone()).expect("promoted");
    let rollback = status.history.last().expect("a rollback entry");
    let message = messages_since(&promote).into_iter().find(|(c, _)| c == &rollback.commit).map(|(_, m)| m);
    assert!(message.as_deref().is_some_and(|m| m.contains(&format!("Berth-Rollback-Of: {promote}"))), "{message:?}");
}
