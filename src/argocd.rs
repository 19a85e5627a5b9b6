//! What Argo CD reports about an environment's Application, and whether that report
//! is about what Berth rendered for the current spec (pure).
//!
//! An Application keeps its old `Synced`/`Healthy` for a while after its spec changes:
//! until the root app has applied the new Application and Argo CD has compared it.
//! Gates built on that status pass too early (a known bug class of promotion tools).
//! So an environment is Synced only when Argo CD compared the source Berth rendered
//! (`status.sync.comparedTo`) and reports Synced and Healthy; while it compares the
//! rendered source, a running or failed sync of the compared revision says why not.

use serde_json::Value;

use crate::api::environment_request::{LiveRevision, SyncOperation, SyncSource, SyncStatus};

/// The sync report of an Application object (as JSON); `Unknown` where it says nothing.
pub fn sync_status(application: &Value) -> SyncStatus {
    let status = &application["status"];
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let source = |source: &Value| {
        source.is_object().then(|| SyncSource {
            repo_url: text(&source["repoURL"]).unwrap_or_default(),
            path: text(&source["path"]).unwrap_or_default(),
            target_revision: text(&source["targetRevision"]).unwrap_or_default(),
        })
    };
    let compared_to = source(&status["sync"]["comparedTo"]["source"]);
    // Argo CD appends to its history after each completed sync: the last entry runs.
    let last = status["history"].as_array().and_then(|history| history.last()).unwrap_or(&Value::Null);
    let live = source(&last["source"]).map(|source| LiveRevision {
        source,
        revision: text(&last["revision"]).unwrap_or_default(),
        deployed_at: serde_json::from_value(last["deployedAt"].clone()).ok(),
    });
    let operation = &status["operationState"];
    let operation = operation.is_object().then(|| SyncOperation {
        phase: text(&operation["phase"]),
        revision: text(&operation["syncResult"]["revision"])
            .or_else(|| text(&operation["operation"]["sync"]["revision"])),
        message: text(&operation["message"]),
    });
    SyncStatus {
        status: text(&status["sync"]["status"]).or(Some("Unknown".to_owned())),
        health: text(&status["health"]["status"]).or(Some("Unknown".to_owned())),
        revision: text(&status["sync"]["revision"]),
        compared_to,
        operation,
        live,
        pending_commit: None,
    }
}

/// The report for an Application Argo CD has not created yet.
pub fn missing() -> SyncStatus {
    SyncStatus { status: Some("Unknown".to_owned()), health: Some("Missing".to_owned()), ..SyncStatus::default() }
}

/// Whether Argo CD's report says the environment runs what Berth rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Argo CD synced the rendered source, and it is healthy.
    Synced,
    /// Argo CD's report is not (yet) about the rendered source, or a sync is running.
    Pending(String),
    /// Argo CD compared the rendered source and reports it not synced or not healthy.
    NotSynced(String),
}

/// Whether Argo CD is on its way to `rendered`: it last compared another source (a new
/// revision it has not looked at yet) or a sync is running. Live objects that differ
/// from the commit meanwhile are that change arriving, not drift. An Application Argo
/// CD never compared is not on its way to anything: differences then are drift.
pub fn applying(sync: &SyncStatus, rendered: &SyncSource) -> bool {
    sync.compared_to.is_some() && matches!(verdict(sync, rendered), Verdict::Pending(_))
}

/// Judges `sync` against `rendered`, the source Berth rendered for the current spec.
pub fn verdict(sync: &SyncStatus, rendered: &SyncSource) -> Verdict {
    let shown = |source: &SyncSource| format!("{}@{}", source.path.trim_matches('/'), source.target_revision);
    match &sync.compared_to {
        None => return Verdict::Pending(format!("Argo CD has not compared {} yet", shown(rendered))),
        Some(compared) if !same_source(compared, rendered) => {
            return Verdict::Pending(format!(
                "Argo CD has not compared {} yet (it last compared {})",
                shown(rendered),
                shown(compared)
            ));
        }
        Some(_) => {}
    }
    let (status, health) = (sync.status.as_deref(), sync.health.as_deref());
    // The last operation speaks only when it is about the revision Argo CD compared.
    let current = sync.operation.as_ref().filter(|o| o.revision.is_none() || o.revision == sync.revision);
    let phase = current.and_then(|o| o.phase.as_deref());
    let revision = current.and_then(|o| o.revision.as_deref()).or(sync.revision.as_deref()).unwrap_or("?");
    // A sync still running (its PostSync hooks, say) is not done, whatever status says.
    if matches!(phase, Some("Running" | "Terminating")) {
        return Verdict::Pending(format!("Argo CD is syncing revision {revision}"));
    }
    if (status, health) == (Some("Synced"), Some("Healthy")) {
        // Whatever an older operation said: an app repo's branch that moved without
        // changing the manifests is compared (Synced) at the new revision, and no
        // operation runs for it.
        return Verdict::Synced;
    }
    if matches!(phase, Some("Failed" | "Error")) {
        let why = current.and_then(|o| o.message.as_deref()).unwrap_or("no message");
        return Verdict::NotSynced(format!("Argo CD's sync of revision {revision} failed: {why}"));
    }
    Verdict::NotSynced(format!("Argo CD reports {} and {}", status.unwrap_or("Unknown"), health.unwrap_or("Unknown")))
}

/// Sources are the same when repository, folder and revision are.
fn same_source(a: &SyncSource, b: &SyncSource) -> bool {
    let path = |p: &str| p.trim_matches('/').to_owned();
    same_repository(&a.repo_url, &b.repo_url)
        && path(&a.path) == path(&b.path)
        && a.target_revision == b.target_revision
}

/// Whether two repository URLs name the same repository, as Argo CD compares them
/// (its `NormalizeGitURL`): case, a trailing `/` or `.git`, `git+` in the scheme, a
/// default port, and the scp-like form (`git@host:org/x`) do not matter; a local
/// path is a `file://` URL. Unlike Argo CD, a user name does not matter either.
pub fn same_repository(a: &str, b: &str) -> bool {
    normal_repository(a) == normal_repository(b)
}

fn normal_repository(url: &str) -> String {
    let url = url.trim().to_ascii_lowercase();
    let url = if url.starts_with('/') {
        format!("file://{url}")
    } else if !url.contains("://")
        && let Some((userhost, path)) = url.split_once(':')
    {
        // scp-like: `git@host:org/x` is `ssh://git@host/org/x`.
        format!("ssh://{userhost}/{}", path.trim_start_matches('/'))
    } else {
        url
    };
    let url = url.replacen("git+", "", 1).replacen("+git", "", 1);
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url.as_str()));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    // A user name does not make another repository (Berth's remote carries none, or `git@`).
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match (scheme, authority.rsplit_once(':')) {
        ("ssh", Some((host, "22"))) | ("https", Some((host, "443"))) | ("http", Some((host, "80"))) => host,
        _ => authority,
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
    format!("{scheme}://{host}/{path}")
}

/// The annotation that asks Argo CD to compare an Application with git now, instead of
/// at its next poll (every 3 minutes by default).
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// Whether the Application (as JSON) deploys from `repository`: one of Argo CD's
/// root apps over Berth's GitOps repository, which should look again after a push.
pub fn deploys_from(application: &Value, repository: &str) -> bool {
    let spec = &application["spec"];
    let single = spec["source"]["repoURL"].as_str();
    let many = spec["sources"].as_array().into_iter().flatten().filter_map(|s| s["repoURL"].as_str());
    single.into_iter().chain(many).any(|url| same_repository(url, repository))
}

/// The Application that applied `object` (as JSON), by the mark Argo CD leaves on
/// what it applies: the tracking id annotation (`app:group/kind:namespace/name`, with
/// `namespace_app` for Applications outside Argo CD's namespace), or the instance
/// label of label tracking. `(namespace, name)`; no namespace means Argo CD's own.
pub fn managed_by(object: &Value) -> Option<(Option<String>, String)> {
    let metadata = &object["metadata"];
    let tracking = metadata["annotations"][TRACKING_ANNOTATION].as_str().and_then(|id| id.split_once(':'));
    let app = match tracking {
        Some((app, _)) => app,
        None => metadata["labels"][INSTANCE_LABEL].as_str()?,
    };
    // Application names are DNS subdomains, so `_` only ever separates a namespace.
    Some(match app.split_once('_') {
        Some((namespace, name)) => (Some(namespace.to_owned()), name.to_owned()),
        None => (None, app.to_owned()),
    })
    .filter(|(_, name)| !name.is_empty())
}

const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// Whether Argo CD runs, or is about to run, an operation on the Application (as
/// JSON): a new one would replace it.
pub fn operation_running(application: &Value) -> bool {
    let phase = application["status"]["operationState"]["phase"].as_str();
    !application["operation"].is_null() || matches!(phase, Some("Running" | "Terminating"))
}

/// Whether the Application's pending or running operation is one Berth asked for with
/// a reason starting `reason_prefix` (see [`sync_operation`]): asked already, even when
/// the status that recorded it is not in Berth's cache yet.
pub fn asked_for(application: &Value, reason_prefix: &str) -> bool {
    let running = matches!(application["status"]["operationState"]["phase"].as_str(), Some("Running" | "Terminating"));
    let operations = [&application["operation"]]
        .into_iter()
        .chain(running.then_some(&application["status"]["operationState"]["operation"]));
    operations.filter(|op| op["initiatedBy"]["username"] == "berth").any(|op| {
        op["info"].as_array().into_iter().flatten().any(|info| {
            info["name"] == "reason" && info["value"].as_str().is_some_and(|v| v.starts_with(reason_prefix))
        })
    })
}

/// The `operation` that asks Argo CD to sync only `resources` of an Application, as
/// `argocd app sync APP --resource GROUP:KIND:NAMESPACE/NAME` sets it, with `reason`
/// in its info (Argo CD shows it in the sync's history).
pub fn sync_operation(resources: &[crate::drift::ObjectKey], reason: &str) -> Value {
    let resources: Vec<Value> = resources
        .iter()
        .map(|key| {
            serde_json::json!({"group": key.group(), "kind": key.kind, "name": key.name,
                               "namespace": key.namespace.clone().unwrap_or_default()})
        })
        .collect();
    serde_json::json!({
        "initiatedBy": {"username": "berth"},
        "info": [{"name": "reason", "value": reason}],
        "sync": {"syncStrategy": {"hook": {}}, "resources": resources},
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn berth_s_own_pending_or_running_operation_counts_as_asked_and_a_finished_one_does_not() {
        let key = crate::drift::ObjectKey {
            api_version: "v1".into(),
            kind: "ResourceQuota".into(),
            namespace: Some("env".into()),
            name: "quota".into(),
        };
        let ours = sync_operation(&[key], "Berth: payments/web drifted from the commit (ResourceQuota/env/quota)");
        let prefix = "Berth: payments/web drifted";
        assert!(asked_for(&json!({"operation": ours}), prefix), "pending");
        assert!(!asked_for(&json!({"operation": ours}), "Berth: payments/other drifted"), "another request's");
        let running = json!({"status": {"operationState": {"phase": "Running", "operation": ours}}});
        assert!(asked_for(&running, prefix), "taken by Argo CD, running");
        let done = json!({"status": {"operationState": {"phase": "Succeeded", "operation": ours}}});
        assert!(!asked_for(&done, prefix), "an earlier episode's, finished");
        let person =
            json!({"operation": {"initiatedBy": {"username": "alice"}, "info": [{"name": "reason", "value": prefix}]}});
        assert!(!asked_for(&person, prefix), "someone else's");
    }

    fn rendered(revision: &str) -> SyncSource {
        SyncSource {
            repo_url: "https://git.example.com/web.git".to_owned(),
            path: "deploy".to_owned(),
            target_revision: revision.to_owned(),
        }
    }

    /// An Application as Argo CD reports it: compared `compared`, synced `revision`.
    fn application(compared: &str, revision: &str, sync: &str, health: &str, operation: Value) -> Value {
        json!({"status": {
            "sync": {"status": sync, "revision": revision,
                     "comparedTo": {"source": {"repoURL": "https://git.example.com/web", "path": "deploy/", "targetRevision": compared},
                                    "destination": {"name": "in-cluster", "namespace": "env"}}},
            "health": {"status": health},
            "operationState": operation,
        }})
    }

    fn succeeded(revision: &str) -> Value {
        json!({"phase": "Succeeded", "message": "successfully synced", "syncResult": {"revision": revision}})
    }

    #[test]
    fn the_report_is_read_with_what_argo_cd_compared_and_its_last_operation() {
        let sync = sync_status(&application("v2", "bbb", "Synced", "Healthy", succeeded("bbb")));
        assert_eq!(sync.status.as_deref(), Some("Synced"));
        assert_eq!(sync.revision.as_deref(), Some("bbb"));
        assert_eq!(sync.compared_to.as_ref().map(|c| c.target_revision.as_str()), Some("v2"));
        assert_eq!(sync.operation.as_ref().and_then(|o| o.phase.as_deref()), Some("Succeeded"));
        assert_eq!(sync_status(&json!({})).status.as_deref(), Some("Unknown"));
        assert_eq!(sync_status(&json!({})).compared_to, None);
    }

    #[test]
    fn the_application_that_applied_an_object_is_read_from_argo_cds_mark() {
        let annotated = |id: &str| json!({"metadata": {"annotations": {"argocd.argoproj.io/tracking-id": id}}});
        assert_eq!(
            managed_by(&annotated("berth-root:/ResourceQuota:env/berth-quota")),
            Some((None, "berth-root".to_owned()))
        );
        assert_eq!(
            managed_by(&annotated("platform_berth-root:/Namespace:/env")),
            Some((Some("platform".to_owned()), "berth-root".to_owned()))
        );
        let labelled = json!({"metadata": {"labels": {"app.kubernetes.io/instance": "berth-root"}}});
        assert_eq!(managed_by(&labelled), Some((None, "berth-root".to_owned())));
        assert_eq!(managed_by(&json!({"metadata": {}})), None);
        assert_eq!(managed_by(&annotated(":/Namespace:/env")), None);
    }

    #[test]
    fn an_operation_set_or_running_is_one_berth_must_not_replace() {
        assert!(operation_running(&json!({"operation": {"sync": {}}})));
        assert!(operation_running(&json!({"status": {"operationState": {"phase": "Running"}}})));
        assert!(!operation_running(&json!({"status": {"operationState": {"phase": "Succeeded"}}})));
        assert!(!operation_running(&json!({})));
    }

    #[test]
    fn the_sync_operation_names_only_the_drifted_objects() {
        let files = std::collections::BTreeMap::from([(
            "q.yaml".to_owned(),
            "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: berth-quota, namespace: env}\n".to_owned(),
        )]);
        let keys: Vec<_> = crate::drift::desired_objects(&files).expect("objects").into_iter().map(|o| o.key).collect();
        let operation = sync_operation(&keys, "drift");
        assert_eq!(
            operation["sync"]["resources"],
            json!([{"group": "", "kind": "ResourceQuota", "name": "berth-quota", "namespace": "env"}])
        );
        assert_eq!(operation["initiatedBy"]["username"], "berth");
    }

    #[test]
    fn what_runs_is_the_newest_entry_of_argo_cds_history() {
        let mut app = application("v2", "bbb", "OutOfSync", "Healthy", Value::Null);
        assert_eq!(sync_status(&app).live, None, "nothing deployed yet");
        let entry = |revision: &str, tag: &str| {
            json!({"id": 1, "revision": revision, "deployedAt": "2026-12-01T10:00:00Z",
                   "source": {"repoURL": "https://git.example.com/web", "path": "deploy", "targetRevision": tag}})
        };
        app["status"]["history"] = json!([entry("000", "v0"), entry("aaa", "v1")]);
        let live = sync_status(&app).live.expect("live");
        assert_eq!((live.revision.as_str(), live.source.target_revision.as_str()), ("aaa", "v1"));
        assert!(live.deployed_at.is_some());
    }

    #[test]
    fn the_old_healthy_status_of_a_changed_application_is_not_synced_yet() {
        // v1 is Synced and Healthy; the spec now asks for v2, which Argo CD has not compared.
        let old = sync_status(&application("v1", "aaa", "Synced", "Healthy", succeeded("aaa")));
        let Verdict::Pending(message) = verdict(&old, &rendered("v2")) else { panic!("must not pass early") };
        assert!(message.contains("deploy@v2") && message.contains("deploy@v1"), "{message}");
        // Compared, syncing: still pending.
        let running = json!({"phase": "Running", "operation": {"sync": {"revision": "bbb"}}});
        let syncing = sync_status(&application("v2", "bbb", "OutOfSync", "Progressing", running));
        assert!(matches!(verdict(&syncing, &rendered("v2")), Verdict::Pending(m) if m.contains("bbb")));
        // The branch moved without changing the manifests: Argo CD compares (Synced) at
        // the new revision and runs no operation; the last one, at aaa, does not hold it back.
        let moved = sync_status(&application("v2", "bbb", "Synced", "Healthy", succeeded("aaa")));
        assert_eq!(verdict(&moved, &rendered("v2")), Verdict::Synced);
        // Synced and Healthy while its PostSync hooks still run: not done yet.
        let hooks =
            json!({"phase": "Running", "operation": {"sync": {"revision": "bbb"}}, "syncResult": {"revision": "bbb"}});
        let hooking = sync_status(&application("v2", "bbb", "Synced", "Healthy", hooks));
        assert!(matches!(verdict(&hooking, &rendered("v2")), Verdict::Pending(_)));
        // Synced v2 and healthy.
        let done = sync_status(&application("v2", "bbb", "Synced", "Healthy", succeeded("bbb")));
        assert_eq!(verdict(&done, &rendered("v2")), Verdict::Synced);
    }

    #[test]
    fn root_apps_are_those_that_deploy_from_berths_repository() {
        let remote = "https://git.example.com/platform/environments.git";
        let root = json!({"spec": {"source": {"repoURL": "https://git.example.com/platform/environments", "path": "clusters/in-cluster"}}});
        let with_user =
            json!({"spec": {"source": {"repoURL": "https://berth@GIT.example.com/platform/environments.git/"}}});
        let multi = json!({"spec": {"sources": [{"repoURL": "https://other.example.com/x"}, {"repoURL": remote}]}});
        let environment = json!({"spec": {"source": {"repoURL": "https://git.example.com/web.git"}}});
        assert!(deploys_from(&root, remote));
        assert!(deploys_from(&with_user, remote));
        assert!(deploys_from(&multi, remote));
        assert!(!deploys_from(&environment, remote));
        assert!(!deploys_from(&json!({}), remote));
        assert!(!same_repository("https://git.example.com/platform/environments-2", remote));
        // The forms Argo CD treats as one repository.
        let same = [
            ("git@github.com:org/envs.git", "ssh://git@github.com/org/envs"),
            ("ssh://git@github.com:22/org/envs.git", "ssh://git@github.com/org/envs"),
            ("git+ssh://git@github.com/org/envs", "ssh://git@github.com/org/envs.git"),
            ("https://github.com:443/org/ENVS.GIT", "https://github.com/org/envs/"),
            ("/srv/git/envs.git", "file:///srv/git/envs"),
        ];
        for (a, b) in same {
            assert!(same_repository(a, b), "{a} = {b}");
        }
        let different = [
            ("git@github.com:org/envs", "git@github.com:org/other"),
            ("https://github.com/org/envs", "https://gitlab.com/org/envs"),
            ("https://github.com:8443/org/envs", "https://github.com/org/envs"),
        ];
        for (a, b) in different {
            assert!(!same_repository(a, b), "{a} != {b}");
        }
    }

    #[test]
    fn a_failed_sync_or_an_unhealthy_app_of_the_rendered_source_is_not_synced() {
        let failed = json!({"phase": "Failed", "message": "one or more objects failed to apply", "syncResult": {"revision": "bbb"}});
        let sync = sync_status(&application("v2", "bbb", "OutOfSync", "Missing", failed));
        assert!(matches!(verdict(&sync, &rendered("v2")), Verdict::NotSynced(m) if m.contains("failed to apply")));
        let degraded = sync_status(&application("v2", "bbb", "Synced", "Degraded", Value::Null));
        assert!(matches!(verdict(&degraded, &rendered("v2")), Verdict::NotSynced(m) if m.contains("Degraded")));
        // A failure of an older revision, now fixed by a later commit: Synced and Healthy wins.
        let old_failure = json!({"phase": "Failed", "message": "boom", "syncResult": {"revision": "aaa"}});
        let fixed = sync_status(&application("v2", "bbb", "Synced", "Healthy", old_failure.clone()));
        assert_eq!(verdict(&fixed, &rendered("v2")), Verdict::Synced);
        // ... and an old failure does not explain a current OutOfSync either.
        let drifting = sync_status(&application("v2", "bbb", "OutOfSync", "Healthy", old_failure));
        assert!(matches!(verdict(&drifting, &rendered("v2")), Verdict::NotSynced(m) if m.contains("OutOfSync")));
        assert!(matches!(verdict(&missing(), &rendered("v2")), Verdict::Pending(_)));
    }
}
