//! Starts and stops a real Kubernetes control plane on loopback: etcd,
//! kube-apiserver and kube-controller-manager, built from their Go modules by
//! `e2e/controlplane/build.sh`, in one folder that holds their data, logs,
//! certificates, tokens and the admin kubeconfig; optionally with a real Argo CD
//! beside it (see [`crate::argocd`]), stopped with it.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{sys::signal::Signal, unistd::Pid};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::{
    argocd::{self, ArgoCdInfo},
    pki, users,
};

/// Where a running control plane is and how to talk to it; written to
/// `cluster.json` in its folder once the apiserver is ready.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub server: String,
    /// Kubeconfig with one context per test user (`admin` is current).
    pub kubeconfig: PathBuf,
    /// Folder holding kubectl and the control-plane binaries.
    pub bin_dir: PathBuf,
    /// The control plane's folder.
    pub dir: PathBuf,
    /// Process id of whoever supervises the control plane (stops it on SIGTERM).
    pub supervisor_pid: u32,
    /// Test users, with tokens, for clients that do not read the kubeconfig.
    pub users: Vec<users::TestUser>,
    /// The Argo CD running beside it, when it was started with one.
    #[serde(default)]
    pub argocd: Option<ArgoCdInfo>,
}

impl ClusterInfo {
    /// The CA of the client certificate the apiserver presents to admission webhooks.
    pub fn webhook_client_ca(&self) -> PathBuf {
        self.dir.join("pki").join("webhook-client-ca.crt")
    }

    /// File in a control-plane folder that says it is ready and how to reach it.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join("cluster.json")
    }

    /// Reads `cluster.json` from a control-plane folder.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = Self::path_in(dir);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The kubectl binary built with the control plane.
    pub fn kubectl(&self) -> PathBuf {
        self.bin_dir.join("kubectl")
    }
}

/// Builds the control-plane binaries if needed (cached by their pins) and returns
/// their folder. `BERTH_CONTROLPLANE_BIN` points at prebuilt ones instead.
pub fn ensure_binaries() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BERTH_CONTROLPLANE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    crate::path_printed_by(&Path::new(env!("CARGO_MANIFEST_DIR")).join("controlplane/build.sh"), &[])
}

/// A running control plane. Dropping it kills the processes; [`ControlPlane::stop`]
/// stops them gracefully.
pub struct ControlPlane {
    pub info: ClusterInfo,
    processes: Vec<Process>,
    /// kube-apiserver while [`ControlPlane::stop_apiserver`] holds it down.
    /// Processes a test stopped (see [`ControlPlane::stop_process`]), to start again.
    stopped: Vec<Process>,
}

const APISERVER: &str = "kube-apiserver";

/// A child process of the control plane, with its output in a log file.
pub(crate) struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
    /// How it was started, so it can be started again the same way.
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Process {
    /// Fails with the process's last log lines if it has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("checking a control-plane process")? {
            bail!("{} exited ({status}); last lines of {}:\n{}", self.name, self.log.display(), tail(&self.log, 30));
        }
        Ok(())
    }
}

/// The control socket in a control-plane folder: `berth-controlplane` takes commands
/// there (see [`control`]).
pub fn control_socket(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Sends one command line to the supervisor of the control plane in `dir` and returns
/// its one-line answer (`ok …`); an `error …` answer is an error.
pub async fn control(dir: &Path, command: &str) -> Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let socket = control_socket(dir);
    let mut stream = tokio::net::UnixStream::connect(&socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.write_all(format!("{command}\n").as_bytes()).await.context("sending a control command")?;
    let mut answer = String::new();
    tokio::io::BufReader::new(stream).read_line(&mut answer).await.context("reading the control answer")?;
    let answer = answer.trim();
    match answer.strip_prefix("ok") {
        Some(rest) => Ok(rest.trim().to_owned()),
        None => bail!("{command}: {answer}"),
    }
}

/// The apiserver's admission configuration: it presents `pki`'s webhook client
/// certificate to every admission webhook it calls (the kubeconfig user `*` matches
/// any webhook host), so a webhook may require it. Returns the file to pass.
fn write_admission_config(dir: &Path, pki: &pki::Pki) -> Result<PathBuf> {
    let kubeconfig = dir.join("webhook-client.kubeconfig");
    let users = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "users": [{ "name": "*", "user": {
            "client-certificate": pki.webhook_client_cert,
            "client-key": pki.webhook_client_key,
        }}],
    });
    pki::write_private(&kubeconfig, &serde_yaml::to_string(&users).context("serializing the webhook kubeconfig")?)?;
    let webhook = |name: &str| {
        serde_json::json!({ "name": name, "configuration": {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": kubeconfig,
        }})
    };
    let config = serde_json::json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [webhook("ValidatingAdmissionWebhook"), webhook("MutatingAdmissionWebhook")],
    });
    let path = dir.join("admission.yaml");
    pki::write_private(&path, &serde_yaml::to_string(&config).context("serializing the admission configuration")?)?;
    Ok(path)
}

/// A free TCP port on loopback (the kernel picks it; the listener is closed at once).
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(listener.local_addr().context("reading the bound port")?.port())
}

/// Starts `program` with `args` and `env` (on top of this process's environment), its
/// output in `<logs>/<name>.log`.
pub(crate) fn spawn(
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    logs: &Path,
) -> Result<Process> {
    let log = logs.join(format!("{name}.log"));
    std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    respawn(name, program, args, env, log)
}

/// Starts a process with its output appended to `log`.
fn respawn(
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
) -> Result<Process> {
    let file =
        std::fs::OpenOptions::new().append(true).open(&log).with_context(|| format!("opening {}", log.display()))?;
    let err = file.try_clone().context("duplicating a log handle")?;
    let child = Command::new(&program)
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Process { name, child, log, program, args, env })
}

/// Last lines of a log, to put in an error when a process dies.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager with their state in
    /// `dir` (created; must not hold another running control plane) and waits until
    /// the apiserver answers `/readyz`. With `argocd_bin` (see
    /// [`argocd::ensure_binaries`]), then starts Argo CD beside it and waits for it too.
    pub async fn start(bin_dir: &Path, dir: &Path, supervisor_pid: u32, argocd_bin: Option<&Path>) -> Result<Self> {
        let started = Instant::now();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize().context("resolving the control-plane folder")?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).context("creating the logs folder")?;
        let pki = pki::generate(&dir.join("pki"))?;
        let (people, controller_manager) = users::generate();

        let token_file = dir.join("tokens.csv");
        let everyone: Vec<&users::TestUser> = people.iter().chain([&controller_manager]).collect();
        users::write_token_file(&token_file, &everyone)?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let apiserver_port = free_port()?;
        let controller_manager_port = free_port()?;
        let server = format!("https://127.0.0.1:{apiserver_port}");

        let kubeconfig = dir.join("kubeconfig");
        users::write_kubeconfig(&kubeconfig, &server, &pki.ca_pem, &people.iter().collect::<Vec<_>>())?;
        let controller_manager_kubeconfig = dir.join("controller-manager.kubeconfig");
        users::write_kubeconfig(&controller_manager_kubeconfig, &server, &pki.ca_pem, &[&controller_manager])?;

        let path = |p: &Path| p.display().to_string();
        let admission_config = write_admission_config(&dir, &pki)?;
        let mut processes = Vec::new();
        processes.push(spawn(
            "etcd",
            bin_dir.join("etcd"),
            vec![
                format!("--data-dir={}", path(&dir.join("etcd"))),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
                // A throwaway test store: durability is not worth the fsync latency.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            Vec::new(),
            &logs,
        )?);
        processes.push(spawn(
            APISERVER,
            bin_dir.join(APISERVER),
            vec![
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                format!("--cert-dir={}", path(&dir.join("pki"))),
                format!("--tls-cert-file={}", path(&pki.serving_cert)),
                format!("--tls-private-key-file={}", path(&pki.serving_key)),
                format!("--client-ca-file={}", path(&pki.ca_cert)),
                format!("--secure-port={apiserver_port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--authorization-mode=RBAC".into(),
                format!("--token-auth-file={}", path(&token_file)),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", path(&pki.service_account_public_key)),
                format!("--service-account-signing-key-file={}", path(&pki.service_account_key)),
                "--allow-privileged=true".into(),
                // The apiserver presents a client certificate to every webhook it calls.
                format!("--admission-control-config-file={}", path(&admission_config)),
            ],
            Vec::new(),
            &logs,
        )?);

        let mut plane = ControlPlane {
            info: ClusterInfo {
                server,
                kubeconfig,
                bin_dir: bin_dir.to_owned(),
                dir: dir.clone(),
                supervisor_pid,
                users: people,
                argocd: None,
            },
            processes,
            stopped: Vec::new(),
        };
        plane.wait_ready(Duration::from_secs(120)).await?;

        let kcm_config = path(&controller_manager_kubeconfig);
        let kcm = spawn(
            "kube-controller-manager",
            bin_dir.join("kube-controller-manager"),
            vec![
                format!("--kubeconfig={kcm_config}"),
                format!("--authentication-kubeconfig={kcm_config}"),
                format!("--authorization-kubeconfig={kcm_config}"),
                format!("--service-account-private-key-file={}", path(&pki.service_account_key)),
                format!("--root-ca-file={}", path(&pki.ca_cert)),
                format!("--cert-dir={}", path(&dir.join("pki/controller-manager"))),
                format!("--secure-port={controller_manager_port}"),
                "--bind-address=127.0.0.1".into(),
                "--leader-elect=false".into(),
            ],
            Vec::new(),
            &logs,
        )?;
        plane.processes.push(kcm);
        plane.check_alive()?;

        // Started last, so stopped first: its controller still sees the apiserver
        // while it shuts down.
        if let Some(argocd_bin) = argocd_bin {
            let (info, processes) = argocd::start(&plane.info, argocd_bin, &dir.join("argocd")).await?;
            plane.processes.extend(processes);
            plane.info.argocd = Some(info);
        }

        // For shells: `source <dir>/env.sh` points kubectl at this control plane.
        let env = format!(
            "export KUBECONFIG='{}'\nexport PATH='{}':\"$PATH\"\n",
            plane.info.kubeconfig.display(),
            plane.info.bin_dir.display()
        );
        pki::write_private(&dir.join("env.sh"), &env)?;

        let info_path = ClusterInfo::path_in(&dir);
        let json = serde_json::to_string_pretty(&plane.info).context("serializing cluster.json")?;
        pki::write_private(&info_path, &json)?;
        eprintln!("control plane ready at {} in {:.1}s", plane.info.server, started.elapsed().as_secs_f64());
        Ok(plane)
    }

    /// Fails with the process's last log lines if any process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.processes.iter_mut().try_for_each(Process::check_alive)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let client = crate::client_for(&self.info, "admin").await?;
        loop {
            self.check_alive()?;
            let request = http::Request::get("/readyz").body(Vec::new()).context("building /readyz request")?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
                Ok(body) => bail!("apiserver not ready after {timeout:?}: {body}"),
                Err(error) => bail!("apiserver not ready after {timeout:?}: {error}"),
            }
        }
    }

    /// Stops kube-apiserver alone, as an upgrade or a crash-looping node would: SIGTERM,
    /// then SIGKILL if it has not exited after `grace`. Returns how long it took to exit.
    /// etcd and the controller manager keep running.
    pub async fn stop_apiserver(&mut self, grace: Duration) -> Result<Duration> {
        self.stop_process(APISERVER, grace).await
    }

    /// Stops the process `name` alone (e.g. `argocd-application-controller`, as an
    /// outage would): SIGTERM, then SIGKILL after `grace`. Returns how long it took.
    pub async fn stop_process(&mut self, name: &str, grace: Duration) -> Result<Duration> {
        if self.stopped.iter().any(|p| p.name == name) {
            bail!("{name} is already stopped");
        }
        let index = self.processes.iter().position(|p| p.name == name).with_context(|| format!("no {name}"))?;
        let mut process = self.processes.remove(index);
        let started = Instant::now();
        terminate_within(&mut process, grace).await;
        self.stopped.push(process);
        Ok(started.elapsed())
    }

    /// Starts a process [`ControlPlane::stop_process`] stopped, with the same flags,
    /// at `position` in stopping order (`stop` takes them down in reverse order).
    pub fn start_process(&mut self, name: &str, position: usize) -> Result<()> {
        let index =
            self.stopped.iter().position(|p| p.name == name).with_context(|| format!("{name} is not stopped"))?;
        let stopped = self.stopped.remove(index);
        let process = respawn(stopped.name, stopped.program, stopped.args, stopped.env, stopped.log)?;
        self.processes.insert(position.min(self.processes.len()), process);
        Ok(())
    }

    /// Starts kube-apiserver again with the same flags, certificates, port and etcd,
    /// and waits until it answers `/readyz`.
    pub async fn start_apiserver(&mut self) -> Result<()> {
        // Second, after etcd.
        self.start_process(APISERVER, 1)?;
        self.wait_ready(Duration::from_secs(120)).await
    }

    /// Stops every process (Argo CD, controller manager, apiserver, then etcd) with SIGTERM,
    /// then SIGKILL after a grace period, and removes the folder.
    pub async fn stop(mut self) -> Result<()> {
        for process in self.processes.iter_mut().rev() {
            terminate(process).await;
        }
        if std::env::var_os("BERTH_KEEP_CLUSTER_DIR").is_none() {
            std::fs::remove_dir_all(&self.info.dir).with_context(|| format!("removing {}", self.info.dir.display()))?;
        }
        Ok(())
    }
}

async fn terminate(process: &mut Process) {
    terminate_within(process, Duration::from_secs(10)).await;
}

/// SIGTERM, then SIGKILL once `grace` has passed.
async fn terminate_within(process: &mut Process, grace: Duration) {
    if let Some(id) = process.child.id() {
        let pid = Pid::from_raw(i32::try_from(id).unwrap_or(i32::MAX));
        // The process may already be gone; SIGKILL below covers the rest.
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        if tokio::time::timeout(grace, process.child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = process.child.kill().await;
}
