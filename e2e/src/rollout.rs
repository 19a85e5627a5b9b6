//! What the Rollout e2e suites share: a fake Argo CD that plays the application
//! controller for one tenant's environments, the YAML of rollouts and their
//! environments, and reading what the batches committed.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use berth::api::{EnvironmentRequest, Rollout, environment_request::Phase, rollout::RolloutPhase};
use kube::Api;

use crate::{
    fake_argocd::{Applier, Degraded},
    suite::*,
};

/// Plays Argo CD for the environments of one tenant, each change a while after it
/// lands in git (see [`FakeArgoCd::lagging`]); applies with the fleet fake's
/// [`Applier`].
#[derive(Clone, Default)]
pub struct FakeArgoCd {
    degraded: Degraded,
    applier: Arc<tokio::sync::OnceCell<Applier>>,
    /// What was reported last per environment (folder digest), to skip repeats.
    reported: Arc<Mutex<BTreeMap<String, String>>>,
    /// Each environment's folder as first seen, and when: a change is synced only
    /// after [`FakeArgoCd::lag`], so the Healthy status from before it stays up
    /// meanwhile, as it does with a real Argo CD.
    seen: Arc<Mutex<BTreeMap<String, (String, Instant)>>>,
    lag: Duration,
    /// Environments whose changes are not synced until released (see [`FakeArgoCd::hold`]).
    held: Arc<Mutex<BTreeSet<String>>>,
}

impl FakeArgoCd {
    /// A fake that syncs a change only `lag` after it appears in git.
    pub fn lagging(lag: Duration) -> Self {
        Self { lag, ..Self::default() }
    }

    pub fn degrade(&self, request: &str, revision: &str) {
        self.degraded.insert(request, revision);
    }

    /// Reports `request` Healthy again (its Degraded revision fixed).
    pub fn heal(&self, request: &str) {
        self.degraded.remove(request);
    }

    /// Syncs no change of `request` until [`FakeArgoCd::release`]: its Application
    /// keeps reporting what it reported (a slow sync, for as long as a test needs).
    pub fn hold(&self, request: &str) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(request.to_owned());
    }

    pub fn release(&self, request: &str) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(request);
    }

    /// Every 300 ms: for each request of `tenant`, apply its folder at the head and
    /// report its Application.
    pub fn run(self, tenant: String) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.pass(&tenant).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    }

    async fn pass(&self, tenant: &str) {
        let client = cluster().client("admin").await;
        let applier = self.applier.get_or_init(|| async { Applier::new(client.clone(), self.degraded.clone()) }).await;
        let api: Api<EnvironmentRequest> = Api::namespaced(client, tenant);
        let Ok(requests) = api.list(&Default::default()).await else {
            return;
        };
        for request in requests {
            let name = request.metadata.name.clone().unwrap_or_default();
            if self.held.lock().unwrap_or_else(|e| e.into_inner()).contains(&name) {
                continue;
            }
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
            let health = self.degraded.health(&name, &target_revision(application));
            let key = format!("{}|{health}", files.values().cloned().collect::<Vec<_>>().join("---\n"));
            if self.reported.lock().unwrap_or_else(|e| e.into_inner()).get(&name) == Some(&key) {
                continue;
            }
            let since = {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                let entry = seen.entry(name.clone()).or_insert_with(|| (key.clone(), Instant::now()));
                if entry.0 != key {
                    *entry = (key.clone(), Instant::now());
                }
                entry.1
            };
            if since.elapsed() < self.lag {
                continue;
            }
            if applier.apply_folder(&name, &files).await.is_ok() {
                self.reported.lock().unwrap_or_else(|e| e.into_inner()).insert(name, key);
            }
        }
    }
}

pub fn target_revision(application_yaml: &str) -> String {
    let value: serde_yaml::Value = serde_yaml::from_str(application_yaml).unwrap_or_default();
    value["spec"]["source"]["targetRevision"].as_str().unwrap_or_default().to_owned()
}

pub fn environment_yaml(tenant: &str, name: &str, class: &str, ring: &str) -> String {
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

/// A rollout of `web` to `revision` in two stages: the `canary` ring, then production
/// one environment at a time.
pub fn rollout_yaml(tenant: &str, name: &str, revision: &str, extra: &str) -> String {
    let stages = "[{name: canary, selector: {matchLabels: {ring: canary}}}, \
                  {name: production, batchSize: 1, healthGate: {progressDeadline: 2m}}]";
    rollout_with_stages(tenant, name, revision, stages, extra)
}

/// A rollout of every `app: web` environment of `tenant` to `revision` through
/// `stages` (a YAML flow sequence), with more spec fields in `extra`.
pub fn rollout_with_stages(tenant: &str, name: &str, revision: &str, stages: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: Rollout
metadata: {{name: {name}, namespace: {tenant}}}
spec:
  app: web
  revision: {revision}
  selector: {{matchLabels: {{app: web}}}}
  stages: {stages}
  {extra}
"
    )
}

/// A tenant with three Ready environments on v1 (`canary`, `prod-a`, `prod-b`), and
/// the fake Argo CD playing for it.
pub async fn three_environments(argocd: &FakeArgoCd) -> (String, tokio::task::JoinHandle<()>) {
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

pub async fn wait_rollout(tenant: &str, name: &str, phase: RolloutPhase) -> Rollout {
    wait_rollout_within(tenant, name, phase, Duration::from_secs(90)).await
}

/// Like [`wait_rollout`], for at most `timeout`.
pub async fn wait_rollout_within(tenant: &str, name: &str, phase: RolloutPhase, timeout: Duration) -> Rollout {
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, tenant);
    let last = Arc::new(Mutex::new(String::new()));
    let what = format!("rollout {name} to be {phase:?}");
    let waiting = wait_for(timeout, &what, || {
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
pub fn messages_since(since: &str) -> Vec<(String, String)> {
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

pub fn head() -> String {
    let repo = git2::Repository::open_bare(remote()).unwrap_or_else(|e| panic!("{e}"));
    repo.refname_to_id("refs/heads/main").map(|id| id.to_string()).unwrap_or_default()
}

/// Folders a commit changed, against its first parent.
pub fn changed_folders(commit: &str) -> BTreeSet<String> {
    let repo = git2::Repository::open_bare(remote()).unwrap_or_else(|e| panic!("{e}"));
    let commit = repo.find_commit(git2::Oid::from_str(commit).unwrap_or_else(|e| panic!("{e}"))).expect("commit");
    let parent = commit.parent(0).ok().and_then(|p| p.tree().ok());
    let diff = repo.diff_tree_to_tree(parent.as_ref(), commit.tree().ok().as_ref(), None).expect("diff");
    diff.deltas()
        .filter_map(|d| d.new_file().path().or(d.old_file().path()).map(|p| p.to_string_lossy().into_owned()))
        .filter_map(|p| p.rsplit_once('/').map(|(dir, _)| dir.to_owned()))
        .collect()
}

pub async fn request(tenant: &str, name: &str) -> EnvironmentRequest {
    let api: Api<EnvironmentRequest> = Api::namespaced(cluster().client("admin").await, tenant);
    api.get(name).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Merge-patches rollout `name` in `tenant` as the admin (what `berth rollout` and
/// `kubectl patch` do); returns whether the apiserver took it, and its message.
pub async fn patch_rollout(tenant: &str, name: &str, patch: &str) -> (bool, String) {
    let args = ["patch", "rollout", name, "-n", tenant, "--type", "merge", "-p", patch];
    let out = cluster().kubectl("admin", &args, None).await;
    (out.success, out.stderr)
}

/// Reasons of the events about rollout `name`, oldest first.
pub async fn rollout_events(tenant: &str, name: &str) -> Vec<String> {
    let events = events_about(tenant, &format!("rollout/{name}")).await;
    events.iter().filter_map(|e| e["reason"].as_str().map(str::to_owned)).collect()
}

/// The steps (`Berth-Rollout-Step`) of rollout `name`'s commits since `since`, oldest first.
pub fn batch_steps(tenant: &str, name: &str, since: &str) -> Vec<String> {
    messages_since(since)
        .into_iter()
        .filter(|(_, m)| m.contains(&format!("Berth-Rollout: {tenant}/{name}\n")))
        .filter_map(|(_, m)| m.lines().find_map(|l| l.strip_prefix("Berth-Rollout-Step: ")).map(str::to_owned))
        .collect()
}

/// Waits until rollout `name` recorded `count` batch commits in its history.
pub async fn wait_history(tenant: &str, name: &str, count: usize) -> Rollout {
    let api: Api<Rollout> = Api::namespaced(cluster().client("admin").await, tenant);
    wait_for(Duration::from_secs(90), &format!("rollout {name} to record {count} commits"), || {
        let api = api.clone();
        async move {
            let rollout = api.get_opt(name).await.ok().flatten()?;
            (rollout.status.as_ref()?.history.len() >= count).then_some(rollout)
        }
    })
    .await
}

/// The environment's folder at the remote's head.
pub async fn folder(tenant: &str, name: &str) -> BTreeMap<String, String> {
    let path = request(tenant, name).await.status.and_then(|s| s.gitops).and_then(|g| g.path).unwrap_or_default();
    files_at_head(&remote(), &path).unwrap_or_default()
}

/// Makes the apiserver refuse to record a confirmed promotion to `revision` in
/// `tenant` (a ValidatingAdmissionPolicy), as if the controller died between its
/// commit and the confirmation; returns once the apiserver enforces it.
pub async fn refuse_confirmations(tenant: &str, revision: &str) {
    let expression = format!(
        "!has(object.status) || !has(object.status.promotion) || object.status.promotion.state != 'Committed' || object.status.promotion.revision != '{revision}'"
    );
    let refusal = crate::policy::denying_policy(&crate::policy::Refusal {
        name: &format!("refuse-confirm-{tenant}"),
        group: "berth.dev",
        resource: "environmentrequests/status",
        operation: "UPDATE",
        expression: &expression,
        message: "confirmations are refused by the e2e test",
        namespace: Some(tenant),
    });
    kubectl_apply(&refusal).await;
    wait_confirmations(tenant, revision, true).await;
}

/// Lifts [`refuse_confirmations`]; returns once the apiserver no longer enforces it.
pub async fn allow_confirmations(tenant: &str, revision: &str) {
    let name = format!("refuse-confirm-{tenant}");
    let args = ["delete", "validatingadmissionpolicy,validatingadmissionpolicybinding", &name];
    let deleted = cluster().kubectl("admin", &args, None).await;
    assert!(deleted.success, "{}", deleted.stderr);
    wait_confirmations(tenant, revision, false).await;
}

/// Waits until the apiserver refuses (or allows again) recording a confirmed
/// promotion to `revision` in `tenant`: it loads and drops policies asynchronously.
/// Asked as a server-side dry run, which admission sees and nothing stores.
async fn wait_confirmations(tenant: &str, revision: &str, refused: bool) {
    let what = if refused { "confirmations to be refused" } else { "confirmations to be allowed again" };
    wait_for(Duration::from_secs(30), what, || async move {
        let promotion = serde_json::json!({"status": {"promotion": {
            "rollout": "probe", "revision": revision, "previousRevision": "v1", "stage": "canary", "batch": 1,
            "state": "Committed", "specGeneration": 1, "since": "2026-12-01T00:00:00Z"}}});
        let patch = promotion.to_string();
        let args = [
            "patch",
            "environmentrequest",
            "prod-b",
            "-n",
            tenant,
            "--subresource=status",
            "--type=merge",
            "--dry-run=server",
            "-p",
            &patch,
        ];
        let out = cluster().kubectl("admin", &args, None).await;
        let is_refused = !out.success && out.stderr.contains("refused by the e2e test");
        (is_refused == refused && (refused || out.success)).then_some(())
    })
    .await;
}

/// A rollout whose canary stage is gated by `metric` (a YAML flow mapping).
pub fn gated_rollout(tenant: &str, name: &str, revision: &str, metric: &str, extra: &str) -> String {
    gated_rollout_within(tenant, name, revision, metric, extra, "2m")
}

/// [`gated_rollout`] with the canary's progress deadline `deadline`.
pub fn gated_rollout_within(
    tenant: &str,
    name: &str,
    revision: &str,
    metric: &str,
    extra: &str,
    deadline: &str,
) -> String {
    let stages = format!(
        "[{{name: canary, selector: {{matchLabels: {{ring: canary}}}}, healthGate: {{progressDeadline: {deadline}}}, \
          metrics: [{metric}]}}, {{name: production, batchSize: 2}}]"
    );
    rollout_with_stages(tenant, name, revision, &stages, extra)
}

/// A rollout of [`gated_rollout`] after its canary's metric gate failed and it was
/// rolled back: the failure names the gate and why (`why`), the canary is back on
/// its previous revision, and production was never touched.
pub async fn canary_rolled_back_by_metric(rollout: &Rollout, gate: &str, why: &str) {
    let tenant = rollout.metadata.namespace.as_deref().unwrap_or_default();
    let status = rollout.status.clone().unwrap_or_default();
    let failure = status.failures.iter().find(|f| f.environment == "canary").expect("the canary failed");
    assert_eq!(failure.reason, "MetricFailed", "{:?}", status.failures);
    assert!(failure.message.contains(gate) && failure.message.contains(why), "{}", failure.message);
    let canary = request(tenant, "canary").await.status.and_then(|s| s.promotion).expect("a promotion record");
    assert_eq!(canary.state, berth::api::environment_request::PromotionState::RolledBack);
    assert_eq!(request(tenant, "prod-a").await.status.and_then(|s| s.promotion), None, "production untouched");
}

/// The namespace of `tenant`'s environment `name`.
pub async fn namespace_of(tenant: &str, name: &str) -> String {
    request(tenant, name).await.status.and_then(|s| s.namespace).expect("the environment's namespace")
}

/// Runs `berth rollout ARGS` as the admin context of the test kubeconfig:
/// (succeeded, stdout, stderr).
pub fn berth_rollout(args: &[&str]) -> (bool, String, String) {
    let binary = crate::operator::berth_binary().unwrap_or_else(|e| panic!("{e:#}"));
    let out = std::process::Command::new(binary)
        .env("KUBECONFIG", &cluster().info.kubeconfig)
        .arg("rollout")
        .args(args)
        .args(["--context", "admin"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run berth: {e}"));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Runs `berth rollout ARGS` and panics with its output when it fails.
pub fn berth_rollout_ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = berth_rollout(args);
    assert!(success, "berth rollout {args:?} failed:\n{stdout}{stderr}");
    stdout
}
