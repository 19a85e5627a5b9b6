//! Runs `berth run` (the real binary) against a test control plane, with a bare
//! git repository on disk as the GitOps remote.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use std::os::unix::process::CommandExt;

use anyhow::{Context, Result};

use crate::ClusterInfo;

/// Runs a command ($2…) until it exits or the test process ($1) is gone: a process
/// a static holds is never dropped. `BERTH_E2E_WRAPPER` (e.g. `heaptrack -o
/// /tmp/berth`) runs it under a profiler.
pub(crate) const WATCHDOG: &str = r#"parent=$1; shift
$BERTH_E2E_WRAPPER "$@" &
child=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill -9 "$child" 2>/dev/null
wait"#;

/// The `berth` binary next to this test binary (`cargo test --workspace` builds it).
pub fn berth_binary() -> Result<PathBuf> {
    crate::built_binary("berth").context("build it first (`cargo build --bin berth`; `just test` does)")
}

/// A running operator; killed on drop.
pub struct Operator {
    child: Child,
    /// The GitOps remote (a bare repository).
    pub remote: PathBuf,
    /// Where its log goes.
    pub log: PathBuf,
    /// `http://127.0.0.1:<port>` of its /metrics /healthz /readyz.
    pub telemetry: String,
    workdir: PathBuf,
    kubeconfig: PathBuf,
    batch_window_ms: u64,
    /// More settings for `berth run` (e.g. the webhook's), kept across restarts.
    env: Vec<(String, String)>,
}

impl Operator {
    /// Starts `berth run` as the cluster admin, pushing to the bare repository `remote`
    /// (created if missing), with its clone and log under `dir`.
    pub fn start(cluster: &ClusterInfo, dir: &Path, remote: &Path) -> Result<Self> {
        Self::start_with_window(cluster, dir, remote, 200)
    }

    /// Like [`Operator::start`] with the GitOps batch window given in milliseconds.
    pub fn start_with_window(cluster: &ClusterInfo, dir: &Path, remote: &Path, batch_window_ms: u64) -> Result<Self> {
        Self::start_with_env(cluster, dir, remote, batch_window_ms, Vec::new())
    }

    /// Like [`Operator::start_with_window`] with more environment settings for `berth run`.
    pub fn start_with_env(
        cluster: &ClusterInfo,
        dir: &Path,
        remote: &Path,
        batch_window_ms: u64,
        env: Vec<(String, String)>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if !remote.exists() {
            git2::Repository::init_opts(remote, git2::RepositoryInitOptions::new().bare(true).initial_head("main"))
                .with_context(|| format!("creating the bare remote {}", remote.display()))?;
        }
        let mut operator = Operator {
            child: Command::new("true").spawn().context("placeholder")?,
            remote: remote.to_owned(),
            log: dir.join("operator.log"),
            telemetry: String::new(),
            workdir: dir.join("gitops-clone"),
            kubeconfig: cluster.kubeconfig.clone(),
            batch_window_ms,
            env,
        };
        operator.spawn()?;
        Ok(operator)
    }

    fn spawn(&mut self) -> Result<()> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).context("free port")?.port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).context("operator log")?;
        // A static operator is never dropped, so a watchdog ends it when the test
        // process ends; both live in their own process group, which `kill` takes down.
        self.child = Command::new("bash")
            .args(["-c", WATCHDOG, "berth-operator", &std::process::id().to_string()])
            .arg(berth_binary()?)
            .arg("run")
            .process_group(0)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("BERTH_GITOPS_REMOTE", format!("file://{}", self.remote.display()))
            .env("BERTH_GITOPS_WORKDIR", &self.workdir)
            .env("BERTH_GITOPS_BATCH_WINDOW_MS", self.batch_window_ms.to_string())
            .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
            .env("BERTH_LOG_FORMAT", "text")
            // BERTH_E2E_RUST_LOG turns up the operator's logging when a suite needs debugging.
            .env("RUST_LOG", std::env::var("BERTH_E2E_RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log handle")?)
            .stderr(log)
            .spawn()
            .context("starting berth run")?;
        self.telemetry = format!("http://127.0.0.1:{port}");
        Ok(())
    }

    /// SIGKILL to the operator and its watchdog, as a crash would; the next
    /// [`Operator::restart`] starts a new process.
    pub fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// SIGTERM to `berth run`, as Kubernetes stops a pod; waits up to `limit` for it
    /// to exit and says whether it did.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(pid) = self.berth_pid().and_then(|pid| i32::try_from(pid).ok()) else {
            return false;
        };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Starts the operator again on the same remote and clone.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        std::thread::sleep(Duration::from_millis(100));
        self.spawn()
    }

    /// Process id of `berth run` itself (the watchdog's child), for memory readings.
    pub fn berth_pid(&self) -> Option<u32> {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id())).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// The value of the un-labelled metric `name` on the operator's /metrics, `None`
    /// while it does not answer or does not export it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric_at(&self.telemetry, name).await
    }

    /// The sum over every series of the metric `name` whose labels include `label`
    /// (e.g. `controller="environment_request"`), `None` while it does not answer.
    pub async fn metric_sum(&self, name: &str, label: &str) -> Option<f64> {
        let text = metrics_text(&self.telemetry).await?;
        let values = text.lines().filter_map(|line| {
            let (labels, value) = line.strip_prefix(name)?.strip_prefix('{')?.split_once("} ")?;
            labels.contains(label).then(|| value.trim().parse::<f64>().ok())?
        });
        Some(values.sum())
    }

    /// The operator's log so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The value of the un-labelled metric `name` on the /metrics of the operator whose
/// telemetry address is `telemetry` (see [`Operator::telemetry`]).
pub async fn metric_at(telemetry: &str, name: &str) -> Option<f64> {
    let response = metrics_text(telemetry).await?;
    response.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET /metrics` on the operator whose telemetry address is `telemetry`.
async fn metrics_text(telemetry: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = telemetry.strip_prefix("http://")?;
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

/// `GET /readyz` on the operator whose telemetry address is `telemetry`: the status
/// code and body (one line per failing check), `None` while it does not answer.
pub async fn readyz_at(telemetry: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = telemetry.strip_prefix("http://")?;
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()))
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
