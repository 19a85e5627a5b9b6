//! Argo CD played by the tests, fast enough for a fleet: [`Applier`] applies an
//! environment's folder with a kube client (the namespace first, as Argo CD's sync
//! waves would) and reports its Application Synced at the folder's revision, Healthy
//! or (for chosen environments) Degraded, the way Argo CD's application controller
//! would. [`GitWatchingArgoCd`] runs it on every folder a new head of the GitOps
//! remote changes, right after the push, and keeps when it saw and answered each
//! commit (what the rollout benchmark times). The e2e suites' lagging
//! [`crate::rollout::FakeArgoCd`] uses the same [`Applier`].

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};
use futures::{StreamExt, stream};
use kube::{
    Api,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery::{ApiResource, Scope},
};
use serde::Deserialize;

/// The field manager of everything the fake applies.
const MANAGER: &str = "argocd-fake";

/// How often the remote's head is read: the resolution of the benchmark's push times.
const HEAD_POLL: Duration = Duration::from_millis(5);

/// Folders applied at once after a push.
const CONCURRENCY: usize = 16;

/// Environments (request names) reported Degraded at a revision: name → revision.
#[derive(Clone, Default)]
pub struct Degraded(Arc<Mutex<BTreeMap<String, String>>>);

impl Degraded {
    pub fn insert(&self, environment: &str, revision: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(environment.to_owned(), revision.to_owned());
    }

    pub fn remove(&self, environment: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(environment);
    }

    /// What Argo CD reports for `environment` at `revision`.
    pub fn health(&self, environment: &str, revision: &str) -> &'static str {
        let degraded = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(environment).is_some_and(|r| r == revision);
        if degraded { "Degraded" } else { "Healthy" }
    }
}

/// Applies environment folders as Argo CD would, with one kube client.
#[derive(Clone)]
pub struct Applier {
    client: kube::Client,
    /// apiVersion/kind → how to address it, from discovery on first use.
    resources: Arc<Mutex<HashMap<String, (ApiResource, bool)>>>,
    pub degraded: Degraded,
}

impl Applier {
    pub fn new(client: kube::Client, degraded: Degraded) -> Self {
        Self { client, resources: Arc::default(), degraded }
    }

    /// Server-side applies the objects of `files` (an environment's folder, or the files
    /// of it that changed; `environment` is the request's name), the namespace first; its Application with the status
    /// Argo CD would report once it synced it (see [`application_status`]).
    pub async fn apply_folder(&self, environment: &str, files: &BTreeMap<String, String>) -> Result<()> {
        let mut ordered: Vec<(&String, &String)> = files.iter().filter(|(name, _)| name.ends_with(".yaml")).collect();
        ordered.sort_by_key(|(name, _)| name.as_str() != "namespace.yaml");
        let mut objects = Vec::new();
        for (file, yaml) in ordered {
            for document in serde_yaml::Deserializer::from_str(yaml) {
                let value = serde_json::Value::deserialize(document).with_context(|| format!("{file} is not yaml"))?;
                if value.is_object() {
                    objects.push((file, value));
                }
            }
        }
        for (file, object) in objects {
            self.apply(environment, object).await.with_context(|| format!("applying {file}"))?;
        }
        Ok(())
    }

    async fn apply(&self, environment: &str, mut object: serde_json::Value) -> Result<()> {
        let field = |name: &str| object[name].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no {name}"));
        let (api_version, kind) = (field("apiVersion")?, field("kind")?);
        let name = object["metadata"]["name"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no name"))?;
        if kind == "Application" {
            let revision = object["spec"]["source"]["targetRevision"].as_str().unwrap_or_default().to_owned();
            let health = self.degraded.health(environment, &revision);
            object["status"] = application_status(&object["spec"], health);
        }
        let (resource, namespaced) = self.resource(&api_version, &kind).await?;
        let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
            Some(namespace) if namespaced => Api::namespaced_with(self.client.clone(), namespace, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        };
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object)).await?;
        Ok(())
    }

    async fn resource(&self, api_version: &str, kind: &str) -> Result<(ApiResource, bool)> {
        let key = format!("{api_version}/{kind}");
        if let Some(found) = self.resources.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk).await?;
        let found = (resource, capabilities.scope == Scope::Namespaced);
        self.resources.lock().unwrap_or_else(|e| e.into_inner()).insert(key, found.clone());
        Ok(found)
    }
}

/// The status Argo CD's application controller reports for an Application with
/// `spec` once synced: compared at its source (the revision Berth's gates wait for),
/// `health` as given. `comparedTo` carries source and destination, as the CRD requires.
pub fn application_status(spec: &serde_json::Value, health: &str) -> serde_json::Value {
    let revision = spec["source"]["targetRevision"].as_str().unwrap_or_default();
    serde_json::json!({
        "sync": {"status": "Synced", "revision": format!("sha-{revision}"),
            "comparedTo": {"source": spec["source"], "destination": spec["destination"]}},
        "health": {"status": health},
    })
}

/// One head of the remote's `main` the fake answered.
#[derive(Clone, Debug)]
pub struct Answered {
    pub commit: String,
    /// When the fake first read it as the head (within [`HEAD_POLL`] of the push).
    pub seen: Instant,
    /// When every folder it changed was applied and reported.
    pub reported: Instant,
    /// Environment folders it changed that the fake serves.
    pub folders: usize,
}

/// Argo CD for the tenants it serves: every new head of the remote's `main` is
/// answered at once, each changed environment folder applied and reported.
pub struct GitWatchingArgoCd {
    pub applier: Applier,
    answered: Arc<Mutex<Vec<Answered>>>,
    task: tokio::task::JoinHandle<()>,
}

impl GitWatchingArgoCd {
    /// Starts answering the pushes to the bare repository `remote` for the environments
    /// of `tenants`.
    pub fn start(client: kube::Client, remote: &Path, tenants: &[&str]) -> Self {
        let applier = Applier::new(client, Degraded::default());
        let answered: Arc<Mutex<Vec<Answered>>> = Arc::default();
        let tenants: Vec<String> = tenants.iter().map(|t| (*t).to_owned()).collect();
        let task = tokio::spawn(watch(applier.clone(), remote.to_owned(), tenants, answered.clone()));
        Self { applier, answered, task }
    }

    pub fn degrade(&self, environment: &str, revision: &str) {
        self.applier.degraded.insert(environment, revision);
    }

    /// The heads answered so far, oldest first.
    pub fn answered(&self) -> Vec<Answered> {
        self.answered.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The answer to `commit`, once given.
    pub fn answer_to(&self, commit: &str) -> Option<Answered> {
        self.answered().into_iter().find(|a| a.commit == commit)
    }
}

impl Drop for GitWatchingArgoCd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fake's loop: read the head every [`HEAD_POLL`], answer each new one.
async fn watch(applier: Applier, remote: PathBuf, tenants: Vec<String>, answered: Arc<Mutex<Vec<Answered>>>) {
    let mut last: Option<String> = None;
    loop {
        let (remote_, last_) = (remote.clone(), last.clone());
        let tenants_ = tenants.clone();
        let changed = tokio::task::spawn_blocking(move || changes(&remote_, last_.as_deref(), &tenants_)).await;
        let Ok(Ok(Some(change))) = changed else {
            tokio::time::sleep(HEAD_POLL).await;
            continue;
        };
        let seen = Instant::now();
        let folders = change.folders.len();
        let applied = stream::iter(change.folders)
            .map(|(environment, files)| {
                let applier = applier.clone();
                async move {
                    // Retried as Argo CD would on its next refresh; a folder is answered once.
                    for _ in 0..20 {
                        match applier.apply_folder(&environment, &files).await {
                            Ok(()) => return,
                            Err(error) => {
                                eprintln!("fake Argo CD: {environment}: {error:#}");
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                        }
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>();
        applied.await;
        let reported = Instant::now();
        let mut answers = answered.lock().unwrap_or_else(|e| e.into_inner());
        answers.extend(change.commits.into_iter().map(|commit| Answered { commit, seen, reported, folders }));
        last = Some(change.head);
    }
}

/// What a new head changed for the fake.
struct Change {
    head: String,
    /// The commits since the last head answered, oldest first.
    commits: Vec<String>,
    /// Each changed environment folder of a served tenant: request name → its files.
    folders: Vec<(String, BTreeMap<String, String>)>,
}

/// The change from `last` to the head of `main`; `None` when the head is still `last`.
fn changes(remote: &Path, last: Option<&str>, tenants: &[String]) -> Result<Option<Change>> {
    let repo = git2::Repository::open_bare(remote)?;
    let Ok(head) = repo.refname_to_id("refs/heads/main") else { return Ok(None) };
    if last == Some(head.to_string().as_str()) {
        return Ok(None);
    }
    let old = last.map(git2::Oid::from_str).transpose()?;
    let mut walk = repo.revwalk()?;
    walk.push(head)?;
    if let Some(old) = old {
        walk.hide(old)?;
    }
    let mut commits: Vec<String> = walk.filter_map(Result::ok).map(|id| id.to_string()).collect();
    commits.reverse();
    let new_tree = repo.find_commit(head)?.tree()?;
    let old_tree = old.map(|id| repo.find_commit(id).and_then(|c| c.tree())).transpose()?;
    let diff = repo.diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), None)?;
    // Changed files by folder: Argo CD applies only what is out of sync.
    let mut changed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in diff.deltas().filter_map(|d| d.new_file().path().map(Path::to_path_buf)) {
        let (Some(folder), Some(file)) = (path.parent(), path.file_name()) else { continue };
        let file = file.to_string_lossy().into_owned();
        changed.entry(folder.to_string_lossy().into_owned()).or_default().push(file);
    }
    let mut folders = Vec::new();
    for (folder, names) in changed {
        // clusters/<cluster>/tenants/<tenant>/<request>
        let parts: Vec<&str> = folder.split('/').collect();
        let [_, _, "tenants", tenant, environment] = parts.as_slice() else { continue };
        if !tenants.iter().any(|t| t == tenant) {
            continue;
        }
        let mut files = BTreeMap::new();
        for name in names {
            // Gone (a deleted environment): Argo CD would prune it; the fake leaves it.
            let Ok(entry) = new_tree.get_path(&Path::new(&folder).join(&name)) else { continue };
            let blob = entry.to_object(&repo)?.peel_to_blob()?;
            files.insert(name, String::from_utf8_lossy(blob.content()).into_owned());
        }
        folders.push(((*environment).to_owned(), files));
    }
    Ok(Some(Change { head: head.to_string(), commits, folders }))
}
