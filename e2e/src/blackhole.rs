//! A git remote that can stop answering: `git daemon` serving a bare repository over
//! `git://`, behind a [`Switch`] that either forwards each new connection to it or
//! accepts the connection and never answers (a black hole: a stuck load balancer, a
//! half-dead git host). Connections it swallowed stay open for good, so only Berth's
//! own deadlines can free a fetch or push stuck in one.

use std::{
    net::{Shutdown, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// `git daemon` serving every repository under a folder, push included; ended with
/// the test process (a watchdog, as for the operator) or when dropped.
pub struct GitDaemon {
    /// `host:port` it listens on.
    pub address: String,
    child: Child,
}

impl GitDaemon {
    /// Serves the bare repositories under `base` (as `git://<address>/<name>`).
    pub fn start(base: &Path, log: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).context("a free port")?.port();
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("bash")
            .args(["-c", crate::operator::WATCHDOG, "git-daemon", &std::process::id().to_string()])
            .args(["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .env("BERTH_E2E_WRAPPER", "")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().context("log handle")?)
            .stderr(out)
            .spawn()
            .context("starting git daemon")?;
        let address = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while TcpStream::connect(&address).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("git daemon did not listen on {address} within 20 s; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self { address, child })
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// A TCP front that forwards each new connection to `upstream`, or swallows it.
#[derive(Clone)]
pub struct Switch {
    /// `host:port` to connect to instead of the upstream.
    pub address: String,
    black_hole: Arc<AtomicBool>,
    /// Connections swallowed, held open until the process ends.
    swallowed: Arc<Mutex<Vec<TcpStream>>>,
}

impl Switch {
    /// Listens on a loopback port until the process ends, forwarding to `upstream`.
    pub fn start(upstream: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the switch")?;
        let switch = Self {
            address: listener.local_addr().context("its address")?.to_string(),
            black_hole: Arc::new(AtomicBool::new(false)),
            swallowed: Arc::new(Mutex::new(Vec::new())),
        };
        let (serving, upstream) = (switch.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if serving.black_hole.load(Ordering::SeqCst) {
                    serving.swallowed.lock().unwrap_or_else(|e| e.into_inner()).push(client);
                } else if let Ok(server) = TcpStream::connect(&upstream) {
                    forward(client, server);
                }
            }
        });
        Ok(switch)
    }

    /// From now on, new connections are swallowed (`true`) or forwarded (`false`).
    /// Connections already swallowed stay open and silent either way.
    pub fn black_hole(&self, on: bool) {
        self.black_hole.store(on, Ordering::SeqCst);
    }

    /// How many connections were swallowed so far.
    pub fn swallowed(&self) -> usize {
        self.swallowed.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Copies bytes both ways between `client` and `server` until either side closes.
fn forward(client: TcpStream, server: TcpStream) {
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    match (client.try_clone(), server.try_clone()) {
        (Ok(client_reader), Ok(server_reader)) => {
            pipe(client_reader, server);
            pipe(server_reader, client);
        }
        _ => {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}
