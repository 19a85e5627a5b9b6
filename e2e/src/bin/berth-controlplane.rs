//! `berth-controlplane`: runs a real Kubernetes control plane on loopback for a
//! person (`just cluster-up` / `just cluster-down`) or for a test binary
//! (`--watch-pid`: it stops when the test process ends, however it ends), with a
//! real Argo CD beside it on request (`--argocd`, `just argocd-up`).

use std::{
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use berth_e2e::{
    ClusterInfo, argocd,
    controlplane::{self, ControlPlane},
};
use clap::{Parser, Subcommand};
use nix::{errno::Errno, sys::signal::Signal, unistd::Pid};

#[derive(Parser)]
#[command(about = "A real Kubernetes control plane on loopback for Berth's tests and demo")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a control plane and keep it running until stopped.
    Up {
        /// Folder for its data, logs, certificates and kubeconfig.
        #[arg(long, default_value = ".berth/cluster")]
        dir: PathBuf,
        /// Stop when the process with this id ends (used by test binaries).
        #[arg(long)]
        watch_pid: Option<u32>,
        /// Start in the background, print how to use it once ready, and return.
        #[arg(long)]
        detach: bool,
        /// Also run Argo CD (application controller, repo-server, Redis) against it.
        #[arg(long)]
        argocd: bool,
    },
    /// Stop the control plane running in a folder and wait until it is gone.
    Down {
        #[arg(long, default_value = ".berth/cluster")]
        dir: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Up { dir, detach: true, argocd, .. } => detach(&dir, argocd).await,
        Cmd::Up { dir, watch_pid, detach: false, argocd } => supervise(&dir, watch_pid, argocd).await,
        Cmd::Down { dir } => down(&dir).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("berth-controlplane: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 only checks that the process exists.
    !matches!(nix::sys::signal::kill(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

fn running_supervisor(dir: &Path) -> Option<ClusterInfo> {
    ClusterInfo::read(dir).ok().filter(|info| alive(info.supervisor_pid))
}

/// Runs the control plane in the foreground until SIGINT/SIGTERM, the watched
/// process ending, or a control-plane process dying.
async fn supervise(dir: &Path, watch_pid: Option<u32>, with_argocd: bool) -> Result<()> {
    if let Some(info) = running_supervisor(dir) {
        bail!(
            "a control plane already runs in {} (pid {}); stop it with `just cluster-down`",
            dir.display(),
            info.supervisor_pid
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing the stale {}", dir.display()))?;
    }
    let bin_dir = controlplane::ensure_binaries()?;
    let argocd_bin = if with_argocd { Some(argocd::ensure_binaries()?) } else { None };
    let mut plane = ControlPlane::start(&bin_dir, dir, std::process::id(), argocd_bin.as_deref()).await?;

    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
    let socket = controlplane::control_socket(&plane.info.dir);
    let control = tokio::net::UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let reason = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break "interrupted".to_owned(),
            _ = sigterm.recv() => break "asked to stop".to_owned(),
            accepted = control.accept() => {
                if let Ok((stream, _)) = accepted {
                    serve_command(&mut plane, stream).await;
                }
            }
            _ = tick.tick() => {
                if let Some(pid) = watch_pid.filter(|pid| !alive(*pid)) {
                    break format!("watched process {pid} ended");
                }
                if let Err(error) = plane.check_alive() {
                    let _ = plane.stop().await;
                    return Err(error);
                }
            }
        }
    };
    eprintln!("stopping the control plane: {reason}");
    plane.stop().await?;
    // A test binary's supervisor logs next to the folder; once stopped cleanly the log
    // has served its purpose (startup failures are reported with it beforehand).
    if watch_pid.is_some() {
        let _ = std::fs::remove_file(dir.with_extension("log"));
    }
    Ok(())
}

/// Answers one command on the control socket (a test taking the apiserver away):
/// `stop-apiserver <grace-ms>` → `ok <ms it took to exit>`; `start-apiserver` → `ok`
/// once it answers `/readyz` again; `stop <process> <grace-ms>` and `start <process>`
/// for another process (say `argocd-application-controller`).
async fn serve_command(plane: &mut ControlPlane, stream: tokio::net::UnixStream) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if tokio::io::BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let answer = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["stop-apiserver", grace_ms] => match grace_ms.parse() {
            Ok(ms) => plane.stop_apiserver(Duration::from_millis(ms)).await.map(|took| took.as_millis().to_string()),
            Err(_) => Err(anyhow::anyhow!("grace must be milliseconds, not {grace_ms:?}")),
        },
        ["start-apiserver"] => plane.start_apiserver().await.map(|()| String::new()),
        ["stop", name, grace_ms] => match grace_ms.parse() {
            Ok(ms) => {
                plane.stop_process(name, Duration::from_millis(ms)).await.map(|took| took.as_millis().to_string())
            }
            Err(_) => Err(anyhow::anyhow!("grace must be milliseconds, not {grace_ms:?}")),
        },
        // Last in stopping order: Argo CD's processes are started after the rest.
        ["start", name] => plane.start_process(name, usize::MAX).map(|()| String::new()),
        _ => Err(anyhow::anyhow!("unknown command {:?}", line.trim())),
    };
    let answer = match answer {
        Ok(rest) => format!("ok {rest}\n"),
        Err(error) => format!("error {}\n", format!("{error:#}").replace('\n', " ")),
    };
    // The test may have given up waiting; nothing to do about it here.
    let _ = write.write_all(answer.as_bytes()).await;
}

/// Starts a supervisor in its own process group (so the terminal's Ctrl-C does not
/// reach it) and returns once its control plane is ready.
async fn detach(dir: &Path, with_argocd: bool) -> Result<()> {
    if let Some(info) = running_supervisor(dir) {
        if with_argocd && info.argocd.is_none() {
            bail!("a control plane without Argo CD already runs in {}; `just cluster-down` first", dir.display());
        }
        print_usage(&info);
        return Ok(());
    }
    // Build in the foreground so its progress shows in the terminal; Kubernetes and Argo CD
    // side by side (each Go build has long serial phases: downloads, linking).
    std::thread::scope(|builds| -> Result<()> {
        let argocd_build = with_argocd.then(|| builds.spawn(argocd::ensure_binaries));
        controlplane::ensure_binaries()?;
        if let Some(build) = argocd_build {
            build.join().map_err(|_| anyhow::anyhow!("the Argo CD build thread panicked"))??;
        }
        Ok(())
    })?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(ClusterInfo::path_in(dir));
    let log_path = dir.with_extension("log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = std::process::Command::new(std::env::current_exe().context("locating this program")?)
        .args(["up", "--dir"])
        .arg(dir)
        .args(with_argocd.then_some("--argocd"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log handle")?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the supervisor")?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(info) = running_supervisor(dir) {
            print_usage(&info);
            return Ok(());
        }
        if let Some(status) = child.try_wait().context("waiting for the supervisor")? {
            bail!(
                "the control plane did not start ({status}); see {}:\n{}",
                log_path.display(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!("the control plane was not ready after 180s; see {}", log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

use std::os::unix::process::CommandExt;

fn print_usage(info: &ClusterInfo) {
    println!("control plane running at {} (supervisor pid {})", info.server, info.supervisor_pid);
    println!("point kubectl (v1.34, built with it) at it:");
    println!("  source {}", info.dir.join("env.sh").display());
    println!("users (kubectl --context NAME): admin (system:masters), alice (team-payments), bob (platform-approvers)");
    if let Some(argocd) = &info.argocd {
        println!(
            "Argo CD runs beside it: application controller, repo-server {}, Redis {}",
            argocd.repo_server, argocd.redis
        );
        println!("  its Applications: kubectl -n {} get applications", argocd::NAMESPACE);
        println!("  its logs: {}/argocd-*.log", info.dir.join("logs").display());
    }
    println!("stop it with: just cluster-down");
}

/// Sends SIGTERM to the supervisor in `dir` and waits for it to finish cleaning up.
async fn down(dir: &Path) -> Result<()> {
    let Some(info) = running_supervisor(dir) else {
        println!("no control plane is running in {}", dir.display());
        return Ok(());
    };
    let pid = Pid::from_raw(i32::try_from(info.supervisor_pid).context("supervisor pid out of range")?);
    nix::sys::signal::kill(pid, Signal::SIGTERM).context("signalling the supervisor")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(info.supervisor_pid) {
        if Instant::now() > deadline {
            bail!("the supervisor (pid {}) did not stop within 60s", info.supervisor_pid);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("control plane stopped");
    Ok(())
}
