//! A git host over SSH: `git-ssh` (e2e/controlplane/git-ssh, on golang.org/x/crypto/ssh)
//! serving the bare repositories under a folder to `git upload-pack` and `git
//! receive-pack`, accepting the public keys of an `authorized_keys` file it reads
//! at every login, so a test rotates the key it accepts as a git host's owner would.
//! Keys are made with `ssh-keygen` (OpenSSH's client tools).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// A running git host over SSH; ended with the test process (a watchdog, as for the
/// operator) or when dropped.
pub struct SshGitHost {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The file of public keys it accepts.
    pub authorized_keys: PathBuf,
    /// Its host key, as a `known_hosts` line for `localhost` on its port.
    pub known_hosts: String,
    child: Child,
}

/// Makes an ECDSA P-256 key pair at `path` (private, PEM) and `path.pub`; returns
/// the public key's `authorized_keys` line.
pub fn keygen(path: &Path) -> Result<String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-b", "256", "-m", "PEM", "-N", "", "-C", "berth-e2e", "-f"])
        .arg(path)
        .output()
        .context("running ssh-keygen (OpenSSH's client tools)")?;
    if !out.status.success() {
        bail!("ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let public = PathBuf::from(format!("{}.pub", path.display()));
    Ok(std::fs::read_to_string(&public).with_context(|| format!("reading {}", public.display()))?.trim().to_owned())
}

impl SshGitHost {
    /// Serves the bare repositories under `root` (`ssh://<user>@localhost:<port>/<name>`),
    /// with its host key and `authorized_keys` (empty) in `dir`.
    pub fn start(root: &Path, dir: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let binary = crate::path_printed_by(&crate::repo_root().join("e2e/controlplane/build-git-ssh.sh"), &[])?;
        let host_key = dir.join("host_key");
        let host_public = keygen(&host_key)?;
        let authorized_keys = dir.join("authorized_keys");
        std::fs::write(&authorized_keys, "").context("writing authorized_keys")?;
        let log = std::fs::File::create(dir.join("git-ssh.log")).context("the git-ssh log")?;
        let mut child = Command::new("bash")
            .args(["-c", crate::operator::WATCHDOG, "git-ssh", &std::process::id().to_string()])
            .arg(&binary)
            .arg("-host-key")
            .arg(&host_key)
            .arg("-authorized-keys")
            .arg(&authorized_keys)
            .arg("-root")
            .arg(root)
            .env("BERTH_E2E_WRAPPER", "")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting git-ssh")?;
        let stdout = child.stdout.take().context("git-ssh's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading git-ssh's port")?;
        let port: u16 = line.trim().parse().with_context(|| format!("git-ssh printed {line:?}, not its port"))?;
        // `[host]:port keytype key`, as OpenSSH writes it for a port other than 22.
        let key = host_public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let known_hosts = format!("[localhost]:{port} {key}\n[127.0.0.1]:{port} {key}\n");
        Ok(SshGitHost { port, authorized_keys, known_hosts, child })
    }
}

impl Drop for SshGitHost {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
