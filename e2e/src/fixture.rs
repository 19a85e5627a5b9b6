//! The control plane as a test fixture: started once per test binary (by a
//! `berth-controlplane` supervisor that watches the test process and cleans up
//! when it ends), shared by every test in it, each test in its own namespace.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::{Rng, distr::Alphanumeric};

use crate::{ClusterInfo, repo_root};

/// A running control plane shared by the tests of one binary.
pub struct Cluster {
    pub info: ClusterInfo,
    crds: OnceLock<Result<(), String>>,
    argocd_crds: OnceLock<Result<(), String>>,
}

/// What a kubectl run printed.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
// Kept so the handle (and with it the supervisor's pipes) lives as long as the tests.
static SUPERVISOR: Mutex<Option<Child>> = Mutex::new(None);

impl Cluster {
    /// The control plane for this test binary, started on first use. Pass
    /// `env!("CARGO_BIN_EXE_berth-controlplane")`.
    pub fn shared(supervisor_exe: &str) -> &'static Cluster {
        Self::shared_as(supervisor_exe, false)
    }

    /// Like [`Cluster::shared`] with a real Argo CD beside the control plane (tier 3):
    /// its CRDs, configuration and `default` project installed, its application
    /// controller and repo-server running. Only the binaries that ask for it build and
    /// start it; call it before anything else asks for the cluster.
    pub fn shared_with_argocd(supervisor_exe: &str) -> &'static Cluster {
        let cluster = Self::shared_as(supervisor_exe, true);
        assert!(cluster.info.argocd.is_some(), "this binary's control plane was started without Argo CD");
        cluster
    }

    fn shared_as(supervisor_exe: &str, argocd: bool) -> &'static Cluster {
        let started = SHARED.get_or_init(|| start(supervisor_exe, argocd).map_err(|e| format!("{e:#}")));
        match started {
            Ok(cluster) => cluster,
            Err(error) => panic!("the test control plane did not start: {error}"),
        }
    }

    /// [`Cluster::shared`] with the `berth-controlplane` cargo built next to the test
    /// binary (for a library, which has no `CARGO_BIN_EXE_*`).
    pub fn shared_next_to_test() -> &'static Cluster {
        match crate::built_binary("berth-controlplane") {
            Ok(exe) => Self::shared(&exe.to_string_lossy()),
            Err(error) => panic!("the test control plane cannot start: {error:#}"),
        }
    }

    /// A kube client as `user` (`admin`, `alice` or `bob`).
    pub async fn client(&self, user: &str) -> kube::Client {
        match crate::client_for(&self.info, user).await {
            Ok(client) => client,
            Err(error) => panic!("no client for {user}: {error:#}"),
        }
    }

    /// Runs kubectl as `user` with `args`, feeding `stdin` if given.
    pub async fn kubectl(&self, user: &str, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        use tokio::io::AsyncWriteExt;
        let mut command = tokio::process::Command::new(self.info.kubectl());
        command
            .env("KUBECONFIG", &self.info.kubeconfig)
            .arg("--context")
            .arg(user)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await.unwrap_or_else(|e| panic!("cannot feed kubectl: {e}"));
        }
        let output = child.wait_with_output().await.unwrap_or_else(|e| panic!("kubectl did not finish: {e}"));
        KubectlOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Stops kube-apiserver alone (etcd and the controller manager keep running): SIGTERM,
    /// then SIGKILL if it has not exited after `grace`. Returns how long it took to exit.
    /// Only for a test binary whose tests all expect it (each binary has its own control plane).
    pub async fn stop_apiserver(&self, grace: Duration) -> Duration {
        let command = format!("stop-apiserver {}", grace.as_millis());
        let took = crate::controlplane::control(&self.info.dir, &command).await.unwrap_or_else(|e| panic!("{e:#}"));
        Duration::from_millis(took.parse().unwrap_or_default())
    }

    /// Starts kube-apiserver again on the same port, etcd and certificates; returns once
    /// it answers `/readyz`.
    pub async fn start_apiserver(&self) {
        crate::controlplane::control(&self.info.dir, "start-apiserver").await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Stops one process of the control plane (e.g. `argocd-application-controller`)
    /// until [`Cluster::start_process`]. Only for a test binary whose tests all expect it.
    pub async fn stop_process(&self, name: &str) {
        let command = format!("stop {name} 10000");
        crate::controlplane::control(&self.info.dir, &command).await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Starts a process [`Cluster::stop_process`] stopped, with the same flags.
    pub async fn start_process(&self, name: &str) {
        let command = format!("start {name}");
        crate::controlplane::control(&self.info.dir, &command).await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Applies Berth's `crds/` once per test binary and waits until every CRD is Established.
    pub async fn install_crds(&self) {
        let crds = repo_root().join("crds");
        self.install_once(&self.crds, &[crds]).await;
    }

    /// Applies Argo CD's own Application and AppProject CRDs (from the Argo CD Go
    /// module pinned in `e2e/controlplane/argocd`) and creates the `argocd` namespace.
    pub async fn install_argocd_crds(&self) {
        if self.argocd_crds.get().is_none() {
            let created = self.kubectl("admin", &["create", "namespace", "argocd"], None).await;
            assert!(created.success || created.stderr.contains("AlreadyExists"), "{}", created.stderr);
        }
        let dir =
            crate::argocd::manifests("manifests/crds", "application-crd.yaml").unwrap_or_else(|e| panic!("{e:#}"));
        let files = [dir.join("application-crd.yaml"), dir.join("appproject-crd.yaml")];
        self.install_once(&self.argocd_crds, &files).await;
    }

    /// Server-side applies `paths` once per test binary and waits until they are Established.
    async fn install_once(&self, done: &OnceLock<Result<(), String>>, paths: &[PathBuf]) {
        if let Some(result) = done.get() {
            return result.clone().unwrap_or_else(|e| panic!("{e}"));
        }
        let files: Vec<String> =
            paths.iter().flat_map(|p| ["-f".to_owned(), p.to_string_lossy().into_owned()]).collect();
        let with =
            |verb: &[&'static str]| verb.iter().map(|s| (*s).to_owned()).chain(files.clone()).collect::<Vec<_>>();
        let apply = with(&["apply", "--server-side"]);
        let apply = self.kubectl("admin", &apply.iter().map(String::as_str).collect::<Vec<_>>(), None).await;
        let result = if !apply.success {
            Err(format!("kubectl apply of {paths:?} failed: {}", apply.stderr))
        } else {
            let wait = with(&["wait", "--for=condition=Established", "--timeout=60s"]);
            let wait: Vec<&str> = wait.iter().map(String::as_str).collect();
            // A CRD created a moment ago may have no conditions yet, which kubectl wait
            // reports as an error instead of waiting; ask again briefly.
            let mut attempts = 0;
            loop {
                let waited = self.kubectl("admin", &wait, None).await;
                attempts += 1;
                if waited.success {
                    break Ok(());
                }
                if attempts >= 20 || !waited.stderr.contains("accessor error") {
                    break Err(format!("CRDs not Established: {}", waited.stderr));
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        };
        let _ = done.set(result.clone());
        result.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates a namespace named `<prefix>-<random>` for one test and returns its name.
    pub async fn namespace(&self, prefix: &str) -> String {
        let suffix: String = rand::rng().sample_iter(&Alphanumeric).take(6).map(char::from).collect();
        let name = format!("{prefix}-{}", suffix.to_lowercase());
        let namespaces: Api<Namespace> = Api::all(self.client("admin").await);
        let namespace =
            Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        name
    }
}

fn start(supervisor_exe: &str, argocd: bool) -> Result<Cluster> {
    let dir = std::env::temp_dir().join(format!("berth-e2e-{}", std::process::id()));
    let log_path: PathBuf = dir.with_extension("log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = std::process::Command::new(supervisor_exe)
        .args(["up", "--watch-pid", &std::process::id().to_string(), "--dir"])
        .arg(&dir)
        .args(argocd.then_some("--argocd"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log handle")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {supervisor_exe}"))?;
    // A first run builds Kubernetes (and Argo CD) from source; later runs start in seconds.
    let deadline = Instant::now() + Duration::from_secs(1800);
    let info = loop {
        if let Ok(info) = ClusterInfo::read(&dir) {
            break info;
        }
        if let Some(status) = child.try_wait().context("waiting for the supervisor")? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("berth-controlplane exited ({status}):\n{log}");
        }
        if Instant::now() > deadline {
            bail!("the control plane was not ready in time; see {}", log_path.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if let Ok(mut slot) = SUPERVISOR.lock() {
        *slot = Some(child);
    }
    Ok(Cluster { info, crds: OnceLock::new(), argocd_crds: OnceLock::new() })
}
