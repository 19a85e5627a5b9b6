//! A real Argo CD beside the loopback control plane (tier 3): its application
//! controller and repo-server, built from Argo CD's Go module by
//! `e2e/controlplane/build-argocd.sh`, and a Redis stand-in. They run out of
//! cluster the way Argo CD's own e2e runs them: `ARGOCD_FAKE_IN_CLUSTER` plus
//! `KUBECONFIG` make the built-in `in-cluster` destination (the one Berth's
//! Applications name) the loopback apiserver.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::{
    ClusterInfo,
    controlplane::{Process, free_port, spawn},
    repo_root,
};

/// The namespace Argo CD watches for Applications and AppProjects, and Berth's default.
pub const NAMESPACE: &str = "argocd";

/// Where a running Argo CD listens; part of `cluster.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArgoCdInfo {
    /// Folder holding `argocd` (and its per-component names) and `argocd-redis`.
    pub bin_dir: PathBuf,
    /// `host:port` of the Redis stand-in.
    pub redis: String,
    /// `host:port` of the repo-server's gRPC API (plaintext).
    pub repo_server: String,
    /// `http://host:port` of the application controller's /metrics and /healthz.
    pub controller_metrics: String,
}

/// Builds Argo CD and argocd-redis if needed (cached by their pins) and returns their
/// folder. `BERTH_ARGOCD_BIN` points at prebuilt ones instead.
pub fn ensure_binaries() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BERTH_ARGOCD_BIN") {
        return Ok(PathBuf::from(dir));
    }
    crate::path_printed_by(&repo_root().join("e2e/controlplane/build-argocd.sh"), &[])
}

/// A folder of Argo CD's own manifests (`manifests/crds`, `manifests/base/config`), from
/// the module pinned in `e2e/controlplane/argocd`; `marker` is a file that must be there.
pub fn manifests(folder: &str, marker: &str) -> Result<PathBuf> {
    let args = ["argocd", "github.com/argoproj/argo-cd/v3", folder, marker];
    crate::path_printed_by(&repo_root().join("e2e/controlplane/module-crds.sh"), &args)
}

/// What `argocd-server` would create on first start; without it no Application syncs.
const DEFAULT_PROJECT: &str = "apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: argocd}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
";

/// Git settings for the repo-server's git children, as Argo CD's e2e sets them: no
/// credential helper or askpass from the person's own configuration.
const GITCONFIG: &str = "[credential]\n\thelper =\n[core]\n\taskPass =\n";

/// How often Argo CD looks at git again, and how long it caches a repository's refs.
/// Upstream's 3 minutes would make every test wait for a poll; Argo CD's own e2e uses
/// seconds too.
const RECONCILIATION: &str = "10s";

/// Installs Argo CD's CRDs and configuration into the cluster `info` describes, starts
/// argocd-redis, the repo-server and the application controller with their state under
/// `dir`, and waits until each answers its health check. The processes stop when
/// dropped (kill on drop) or with the control plane that takes them.
pub(crate) async fn start(info: &ClusterInfo, bin_dir: &Path, dir: &Path) -> Result<(ArgoCdInfo, Vec<Process>)> {
    let started = Instant::now();
    install(info).await?;

    for sub in ["tmp", "home", "plugins", "tls", "ssh", "gpg/source", "app-config"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let gpg_keys = dir.join("gpg/keys");
    std::fs::create_dir_all(&gpg_keys).context("creating the GnuPG folder")?;
    std::fs::write(dir.join("gitconfig"), GITCONFIG).context("writing Argo CD's gitconfig")?;
    let logs = info.dir.join("logs");

    let (redis_port, repo_port, repo_metrics, controller_metrics) =
        (free_port()?, free_port()?, free_port()?, free_port()?);
    let redis = format!("127.0.0.1:{redis_port}");
    let repo_server = format!("127.0.0.1:{repo_port}");
    let path = |p: &Path| p.display().to_string();
    let shared = |name: &str| -> Vec<(String, String)> {
        // The repo-server runs upstream's git-verify-wrapper.sh for every revision, and
        // `argocd` as git's askpass, from its PATH.
        vec![
            ("ARGOCD_BINARY_NAME".into(), name.into()),
            ("PATH".into(), format!("{}:/usr/local/bin:/usr/bin:/bin", path(bin_dir))),
            ("HOME".into(), path(&dir.join("home"))),
            ("TMPDIR".into(), path(&dir.join("tmp"))),
            ("ARGOCD_RECONCILIATION_TIMEOUT".into(), RECONCILIATION.into()),
        ]
    };

    let mut processes =
        vec![spawn("argocd-redis", bin_dir.join("argocd-redis"), vec![format!("--addr={redis}")], Vec::new(), &logs)?];
    wait_for(&mut processes, "argocd-redis", || redis_answers(&redis)).await?;

    let mut repo_env = shared("argocd-repo-server");
    repo_env.extend([
        ("ARGOCD_GPG_ENABLED".into(), "false".into()),
        // Upstream's default is one path in /tmp for every repo-server: each would
        // take the last one's socket away.
        ("ARGOCD_ASK_PASS_SOCK".into(), path(&dir.join("askpass.sock"))),
        ("ARGOCD_PLUGINSOCKFILEPATH".into(), path(&dir.join("plugins"))),
        ("ARGOCD_TLS_DATA_PATH".into(), path(&dir.join("tls"))),
        ("ARGOCD_SSH_DATA_PATH".into(), path(&dir.join("ssh"))),
        ("ARGOCD_GNUPGHOME".into(), path(&gpg_keys)),
        ("ARGOCD_GPG_DATA_PATH".into(), path(&dir.join("gpg/source"))),
        ("ARGOCD_APP_CONF_PATH".into(), path(&dir.join("app-config"))),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_CONFIG_GLOBAL".into(), path(&dir.join("gitconfig"))),
    ]);
    processes.push(spawn(
        "argocd-repo-server",
        bin_dir.join("argocd-repo-server"),
        vec![
            "--logformat=text".into(),
            "--loglevel=info".into(),
            "--address=127.0.0.1".into(),
            format!("--port={repo_port}"),
            "--metrics-address=127.0.0.1".into(),
            format!("--metrics-port={repo_metrics}"),
            format!("--redis={redis}"),
            "--disable-tls".into(),
            // Its default (a path under /app/config) is refused together with --disable-tls.
            "--client-ca-path=".into(),
            "--parallelismlimit=2".into(),
        ],
        repo_env,
        &logs,
    )?);
    // `full=true` makes the repo-server call itself over gRPC.
    let repo_health = format!("127.0.0.1:{repo_metrics}");
    wait_for(&mut processes, "argocd-repo-server", || http_ok(&repo_health, "/healthz?full=true")).await?;

    let mut controller_env = shared("argocd-application-controller");
    controller_env.extend([
        ("ARGOCD_FAKE_IN_CLUSTER".into(), "true".into()),
        ("KUBECONFIG".into(), path(&info.kubeconfig)),
        ("ARGOCD_RECONCILIATION_JITTER".into(), "0s".into()),
    ]);
    processes.push(spawn(
        "argocd-application-controller",
        bin_dir.join("argocd-application-controller"),
        vec![
            "--logformat=text".into(),
            "--loglevel=info".into(),
            format!("--kubeconfig={}", path(&info.kubeconfig)),
            "--context=admin".into(),
            format!("--namespace={NAMESPACE}"),
            format!("--redis={redis}"),
            format!("--repo-server={repo_server}"),
            "--repo-server-plaintext".into(),
            // Binds 0.0.0.0 (not configurable upstream); the port is free on loopback.
            format!("--metrics-port={controller_metrics}"),
            "--status-processors=4".into(),
            "--operation-processors=2".into(),
            "--kubectl-parallelism-limit=4".into(),
        ],
        controller_env,
        &logs,
    )?);
    let controller_health = format!("127.0.0.1:{controller_metrics}");
    wait_for(&mut processes, "argocd-application-controller", || http_ok(&controller_health, "/healthz")).await?;

    eprintln!("Argo CD ready in {:.1}s", started.elapsed().as_secs_f64());
    let info = ArgoCdInfo {
        bin_dir: bin_dir.to_owned(),
        redis,
        repo_server,
        controller_metrics: format!("http://{controller_health}"),
    };
    Ok((info, processes))
}

/// Argo CD's CRDs, its `argocd` namespace, upstream's configuration objects
/// (`manifests/base/config`: argocd-cm keeps the `app.kubernetes.io/part-of: argocd`
/// label the controller selects it by) and the `default` project.
async fn install(info: &ClusterInfo) -> Result<()> {
    let crds = manifests("manifests/crds", "application-crd.yaml")?;
    let config = manifests("manifests/base/config", "argocd-cm.yaml")?;
    let files =
        ["application-crd.yaml", "applicationset-crd.yaml", "appproject-crd.yaml"].map(|f| path_arg(&crds.join(f)));
    let files = files.iter().flat_map(|f| ["-f", f.as_str()]);
    let apply: Vec<&str> = ["apply", "--server-side"].into_iter().chain(files.clone()).collect();
    kubectl(info, &apply, None).await?;
    // A CRD created a moment ago may have no conditions yet, which kubectl wait
    // reports as an error instead of waiting; ask again briefly.
    let wait: Vec<&str> = ["wait", "--for=condition=Established", "--timeout=60s"].into_iter().chain(files).collect();
    let mut attempts = 0;
    while let Err(error) = kubectl(info, &wait, None).await {
        attempts += 1;
        if attempts >= 20 {
            return Err(error.context("Argo CD's CRDs were not Established"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let namespace = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n");
    kubectl(info, &["apply", "-f", "-"], Some(&namespace)).await?;
    kubectl(info, &["apply", "-n", NAMESPACE, "-k", &path_arg(&config)], None).await?;
    kubectl(info, &["apply", "-f", "-"], Some(DEFAULT_PROJECT)).await?;
    Ok(())
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// Runs the cluster's kubectl as admin; fails with its message when it does.
async fn kubectl(info: &ClusterInfo, args: &[&str], stdin: Option<&str>) -> Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(info.kubectl())
        .env("KUBECONFIG", &info.kubeconfig)
        .args(["--context", "admin"])
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await.context("feeding kubectl")?;
    }
    let output = child.wait_with_output().await.context("waiting for kubectl")?;
    if !output.status.success() {
        bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Polls `ready` until it says yes, failing at once if a started process exits and
/// after a minute otherwise.
async fn wait_for<F, Fut>(processes: &mut [Process], what: &str, mut ready: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for process in processes.iter_mut() {
            process.check_alive()?;
        }
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not become ready within 60s; see its log in the cluster's logs folder");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a Redis server at `address` answers PING.
async fn redis_answers(address: &str) -> bool {
    // A RESP array: miniredis does not take inline commands.
    exchange(address, b"*1\r\n$4\r\nPING\r\n").await.is_some_and(|answer| answer.starts_with("+PONG"))
}

/// Whether `GET path` on `address` answers 200.
async fn http_ok(address: &str, path: &str) -> bool {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    exchange(address, request.as_bytes())
        .await
        .is_some_and(|answer| answer.lines().next().is_some_and(|status| status.contains(" 200 ")))
}

/// Sends `request` and returns what came back before the server closed or paused.
async fn exchange(address: &str, request: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let talk = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(request).await.ok()?;
        let mut answer = vec![0; 4096];
        let read = stream.read(&mut answer).await.ok()?;
        Some(String::from_utf8_lossy(&answer[..read]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), talk).await.ok().flatten()
}

/// The root "app of apps" `name` over Berth's GitOps `remote`: everything Berth
/// commits for this cluster, applied by Argo CD with pruning, as the README tells a
/// platform team to set it up.
pub fn root_application(name: &str, remote: &Path) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  project: default
  source:
    repoURL: file://{remote}
    targetRevision: main
    path: clusters/in-cluster
    directory: {{recurse: true}}
  destination: {{name: in-cluster, namespace: {NAMESPACE}}}
  syncPolicy:
    automated: {{prune: true, selfHeal: false, allowEmpty: true}}
    syncOptions: [ApplyOutOfSyncOnly=true]
",
        remote = remote.display()
    )
}

/// One tagged revision of an app repository (see [`app_repository_with`]).
#[derive(Clone, Copy, Debug)]
pub struct AppRevision<'a> {
    pub tag: &'a str,
    /// The greeting in its ConfigMap `web-settings`.
    pub greeting: &'a str,
    /// Whether it also holds [`STUCK_DEPLOYMENT`], which Argo CD reports Degraded.
    pub stuck: bool,
}

/// A Deployment that never progresses here: its Pod waits for a node that the
/// control plane does not have, so after 10 s kube-controller-manager marks it
/// `ProgressDeadlineExceeded`, and Argo CD's built-in health check reports Degraded.
pub const STUCK_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  progressDeadlineSeconds: 10
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.invalid/web:stuck, resources: {requests: {cpu: 10m}}}]
";

/// A bare app repository at `path` with one ConfigMap under `deploy/` (no Pods: the
/// control plane has no nodes), one commit per `(tag, greeting)`, each tagged; returns
/// the tagged commits. Panics when git refuses: a test fixture.
pub fn app_repository(path: &Path, greetings: &[(&str, &str)]) -> Vec<String> {
    let revisions: Vec<AppRevision<'_>> =
        greetings.iter().map(|&(tag, greeting)| AppRevision { tag, greeting, stuck: false }).collect();
    app_repository_with(path, &revisions)
}

/// Like [`app_repository`], with a [`STUCK_DEPLOYMENT`] in the revisions that ask for it.
pub fn app_repository_with(path: &Path, revisions: &[AppRevision<'_>]) -> Vec<String> {
    let repo = git2::Repository::init_opts(path, git2::RepositoryInitOptions::new().bare(true).initial_head("main"))
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let commits = (|| -> Result<Vec<String>, git2::Error> {
        let person = git2::Signature::now("app team", "app@example.com")?;
        let empty = repo.find_tree(repo.treebuilder(None)?.write()?)?;
        let mut parent: Option<git2::Commit<'_>> = None;
        let mut commits = Vec::new();
        for AppRevision { tag, greeting, stuck } in revisions {
            let configmap = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web-settings}}\ndata: {{greeting: {greeting}}}\n"
            );
            let mut tree = git2::build::TreeUpdateBuilder::new();
            tree.upsert("deploy/configmap.yaml", repo.blob(configmap.as_bytes())?, git2::FileMode::Blob);
            if *stuck {
                tree.upsert("deploy/deployment.yaml", repo.blob(STUCK_DEPLOYMENT.as_bytes())?, git2::FileMode::Blob);
            }
            let tree = tree.create_updated(&repo, &empty)?;
            let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
            let message = format!("web {tag}");
            let id =
                repo.commit(Some("refs/heads/main"), &person, &person, &message, &repo.find_tree(tree)?, &parents)?;
            repo.reference(&format!("refs/tags/{tag}"), id, false, &format!("tag {tag}"))?;
            parent = Some(repo.find_commit(id)?);
            commits.push(id.to_string());
        }
        Ok(commits)
    })();
    commits.unwrap_or_else(|e| panic!("cannot commit to the app repository: {e}"))
}

/// A request `name` of `class` in `tenant` (its request namespace) for the app in
/// the repository at `app_repo` at `revision`.
pub fn request_for_app(tenant: &str, name: &str, class: &str, app_repo: &Path, revision: &str) -> String {
    let app =
        format!("app: {{name: web, repoURL: 'file://{}', path: deploy, revision: {revision}}}", app_repo.display());
    let request = crate::suite::request_yaml(tenant, name, tenant, class, "")
        .replace("app: {name: web, repoURL: https://git.example.com/web.git, path: deploy, revision: v1}", &app);
    assert!(request.contains("file://"), "the request template changed: {request}");
    request
}
