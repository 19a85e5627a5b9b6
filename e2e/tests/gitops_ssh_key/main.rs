//! The GitOps SSH key swapped under a running `berth run` (tier 2): Berth pushes over
//! SSH to a git host (`git-ssh`, see `berth_e2e::ssh_remote`) that accepts one key;
//! the host's owner authorizes a new key instead, Berth's push is refused, and once
//! Berth's key file is swapped as a kubelet swaps a Secret volume, the next push goes
//! through, nothing restarted and no key material in its log. Host keys are checked
//! (libgit2 reads `~/.ssh/known_hosts`; Berth runs with a HOME of its own here).
//! Its own binary: its operator pushes to that host.

use std::{
    path::Path,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use berth::api::environment_request::Phase;
use berth_e2e::{
    operator::Operator,
    ssh_remote::{SshGitHost, keygen},
    suite::*,
};

static HOST: OnceLock<SshGitHost> = OnceLock::new();

/// Swaps a copy of key `from` in as `to`, as a kubelet swaps a Secret volume.
fn swap(from: &Path, to: &Path) {
    swap_file(to, &std::fs::read(from).expect("the key"));
}

#[tokio::test]
async fn a_rotated_gitops_ssh_key_is_used_from_the_next_push_without_a_restart() {
    let cluster = cluster();
    let (dir, remote) = own_remote("gitops-ssh").await;
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).expect("a folder");
    let (first, second) = (keys.join("first"), keys.join("second"));
    let first_public = keygen(&first).expect("the first key");
    let second_public = keygen(&second).expect("the second key");
    let berths = keys.join("berth-key");
    swap(&first, &berths);

    let host = HOST.get_or_init(|| SshGitHost::start(&dir, &dir.join("git-ssh")).unwrap_or_else(|e| panic!("{e:#}")));
    std::fs::write(&host.authorized_keys, format!("{first_public}\n")).expect("authorize the first key");
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".ssh")).expect("a home");
    std::fs::write(home.join(".ssh/known_hosts"), &host.known_hosts).expect("known_hosts");
    OPERATOR.get_or_init(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
        let env = vec![
            ("BERTH_GITOPS_REMOTE".to_owned(), format!("ssh://{user}@localhost:{}/remote.git", host.port)),
            ("BERTH_GITOPS_SSH_KEY_FILE".to_owned(), berths.display().to_string()),
            ("HOME".to_owned(), home.display().to_string()),
        ];
        let operator = Operator::start_with_env(&cluster.info, &dir, &remote, 200, env)
            .unwrap_or_else(|e| panic!("operator did not start: {e:#}"));
        Mutex::new(operator)
    });

    let (tenant, class) = tenant_with_class("ssh", "{}").await;
    kubectl_apply(&request_yaml(&tenant, "first", &tenant, &class, "")).await;
    wait_phase(&tenant, "first", Phase::Ready, Duration::from_secs(90)).await;

    // The host's owner authorizes a new key instead: Berth's push with the old one is refused.
    std::fs::write(&host.authorized_keys, format!("{second_public}\n")).expect("rotate the host's key");
    kubectl_apply(&request_yaml(&tenant, "second", &tenant, &class, "")).await;
    wait_for(Duration::from_secs(90), "the host to refuse Berth's old key", || async {
        operator_log().lines().any(|l| l.contains("batch not published") && l.contains("(auth)")).then_some(())
    })
    .await;
    let request = berth_e2e::rollout::request(&tenant, "second").await;
    assert_ne!(request.status.and_then(|s| s.phase), Some(Phase::Ready), "nothing is committed with the old key");

    // Berth's Secret is updated: the next attempt (the writer retries what it kept
    // within 30 s, the request within a minute) connects with the new key.
    swap(&second, &berths);
    wait_phase(&tenant, "second", Phase::Ready, Duration::from_secs(120)).await;
    let log = operator_log();
    let private = std::fs::read_to_string(&second).expect("the key");
    let body = private.lines().nth(1).expect("a key body line");
    assert!(!log.contains(body), "key material reached the log:\n{log}");
}
