//! The GitOps token swapped under a running `berth run` (tier 2): Berth pushes over
//! HTTPS to a git host that wants a token (`git http-backend` behind basic auth, see
//! [`server`]); the host's owner rotates the token, Berth's pushes are refused, and
//! once Berth's token file is swapped as a kubelet swaps a Secret volume, the next
//! push goes through, nothing restarted and neither token ever in its log.
//! Its own binary: its operator pushes to that host.

mod server;

use std::{
    sync::{Mutex, OnceLock},
    time::Duration,
};

use berth::api::environment_request::Phase;
use berth_e2e::{operator::Operator, suite::*};

use server::TokenGitHost;

const FIRST: &str = "first-token-e2e-4f1a9c";
const SECOND: &str = "second-token-e2e-8b2d7e";

static HOST: OnceLock<TokenGitHost> = OnceLock::new();

#[tokio::test]
async fn a_rotated_gitops_token_is_used_from_the_next_push_without_a_restart() {
    let cluster = cluster();
    let (dir, remote) = own_remote("gitops-token").await;
    let (accepted, berths) = (dir.join("accepted.token"), dir.join("berth.token"));
    std::fs::write(&accepted, FIRST).expect("the host's token");
    std::fs::write(&berths, format!("{FIRST}\n")).expect("Berth's token file");
    let pki = cluster.info.dir.join("pki");
    let host = HOST.get_or_init(|| TokenGitHost::start(&dir, accepted.clone(), &pki));
    OPERATOR.get_or_init(|| {
        let env = vec![
            ("BERTH_GITOPS_REMOTE".to_owned(), format!("{}/remote.git", host.url)),
            ("BERTH_GITOPS_TOKEN_FILE".to_owned(), berths.display().to_string()),
            // libgit2 (OpenSSL) trusts the control plane's CA, which signed the host's certificate.
            ("SSL_CERT_FILE".to_owned(), pki.join("ca.crt").display().to_string()),
        ];
        let operator = Operator::start_with_env(&cluster.info, &dir, &remote, 200, env)
            .unwrap_or_else(|e| panic!("operator did not start: {e:#}"));
        Mutex::new(operator)
    });

    let (tenant, class) = tenant_with_class("tok", "{}").await;
    kubectl_apply(&request_yaml(&tenant, "first", &tenant, &class, "")).await;
    wait_phase(&tenant, "first", Phase::Ready, Duration::from_secs(90)).await;
    assert_eq!(host.refused(), 0, "the first token was accepted");

    // The host's owner rotates the token: Berth's push with the old one is refused.
    swap_file(&accepted, SECOND.as_bytes());
    kubectl_apply(&request_yaml(&tenant, "second", &tenant, &class, "")).await;
    wait_for(Duration::from_secs(90), "the host to refuse Berth's old token", || async {
        (host.refused() > 0).then_some(())
    })
    .await;
    let second = berth_e2e::rollout::request(&tenant, "second").await;
    assert_ne!(second.status.and_then(|s| s.phase), Some(Phase::Ready), "nothing is committed with the old token");

    // Berth's Secret is updated: the next attempt (the writer retries what it kept
    // within 30 s, the request within a minute) pushes with the new token.
    swap_file(&berths, format!("{SECOND}\n").as_bytes());
    wait_phase(&tenant, "second", Phase::Ready, Duration::from_secs(120)).await;
    let log = operator_log();
    assert!(!log.contains(FIRST) && !log.contains(SECOND), "a token reached the log:\n{log}");
    let refusal = log.lines().any(|l| l.contains("batch not published") && l.contains("(auth)"));
    assert!(refusal, "the refusal was reported as an authentication failure:\n{log}");
}
