//! The flags of `berth run`; every one can come from the environment, and every secret
//! from a file. The webhook's, approvals' and auth API's flags are
//! [`WebhookArgs`], flattened in.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    gitops::{self, Credentials, PushMode, WriterConfig},
    webhook::WebhookArgs,
};

/// Settings of `berth run`; every one can come from the environment, and every
/// secret from a file.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// GitOps repository Argo CD watches (https://, ssh:// or file://; no credentials in it).
    #[arg(long, env = "BERTH_GITOPS_REMOTE")]
    pub gitops_remote: String,
    /// Branch Argo CD watches.
    #[arg(long, env = "BERTH_GITOPS_BRANCH", default_value = "main")]
    pub gitops_branch: String,
    /// Folder for Berth's clone of the repository (disposable).
    #[arg(long, env = "BERTH_GITOPS_WORKDIR", default_value = "/var/lib/berth/gitops")]
    pub gitops_workdir: PathBuf,
    /// Push straight to the branch (`direct`) or to a promotion branch per change (`pull-request`).
    #[arg(long, env = "BERTH_GITOPS_MODE", default_value = "direct", value_parser = ["direct", "pull-request"])]
    pub gitops_mode: String,
    /// Prefix of promotion branches in pull-request mode.
    #[arg(long, env = "BERTH_GITOPS_BRANCH_PREFIX", default_value = "berth/")]
    pub gitops_branch_prefix: String,
    /// User name sent with the https token.
    #[arg(long, env = "BERTH_GITOPS_USERNAME", default_value = "berth")]
    pub gitops_username: String,
    /// File holding the https token.
    #[arg(long, env = "BERTH_GITOPS_TOKEN_FILE")]
    pub gitops_token_file: Option<PathBuf>,
    /// File holding the ssh private key.
    #[arg(long, env = "BERTH_GITOPS_SSH_KEY_FILE")]
    pub gitops_ssh_key_file: Option<PathBuf>,
    /// File holding the ssh key's passphrase.
    #[arg(long, env = "BERTH_GITOPS_SSH_PASSPHRASE_FILE")]
    pub gitops_ssh_passphrase_file: Option<PathBuf>,
    /// How long changes are collected into one commit under load, in milliseconds (a
    /// lone change is committed after a 10 ms settle).
    #[arg(long, env = "BERTH_GITOPS_BATCH_WINDOW_MS", default_value_t = 200)]
    pub gitops_batch_window_ms: u64,
    /// Seconds to connect to the GitOps remote before a fetch or push fails.
    #[arg(long, env = "BERTH_GITOPS_CONNECT_TIMEOUT_SECONDS", default_value_t = 15)]
    pub gitops_connect_timeout_seconds: u64,
    /// Seconds the GitOps remote may stay silent during a fetch or push (https,
    /// git://, ssh) before it fails and is retried with the next batch.
    #[arg(long, env = "BERTH_GITOPS_IO_TIMEOUT_SECONDS", default_value_t = 60)]
    pub gitops_io_timeout_seconds: u64,
    /// Seconds one fetch or push may run before this replica reports the writer
    /// stalled on /readyz (say, a remote that keeps trickling bytes, which no
    /// timeout ends).
    #[arg(long, env = "BERTH_GITOPS_STALL_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub gitops_stall_seconds: u64,
    /// Most EnvironmentRequest reconciles in flight at once. Bounds memory and
    /// apiserver connections during a burst; the GitOps writer still batches them.
    #[arg(long, env = "BERTH_MAX_CONCURRENT_RECONCILES", default_value_t = 64)]
    pub max_concurrent_reconciles: u16,
    /// Seconds a watch may fail to re-establish (apiserver down, RBAC revoked) before
    /// this replica reports unready on /readyz.
    #[arg(long, env = "BERTH_WATCH_UNHEALTHY_AFTER_SECONDS", default_value_t = 30)]
    pub watch_unhealthy_after_seconds: u64,
    /// Namespace Argo CD watches for Applications.
    #[arg(long, env = "BERTH_ARGOCD_NAMESPACE", default_value = "argocd")]
    pub argocd_namespace: String,
    /// After each push, ask the Argo CD Applications that deploy from the GitOps
    /// repository (its root apps) to refresh, so a commit reaches the cluster in
    /// seconds instead of at Argo CD's next poll. Needs `patch` on Applications there.
    #[arg(long, env = "BERTH_ARGOCD_REFRESH", default_value_t = true, action = clap::ArgAction::Set)]
    pub argocd_refresh: bool,
    /// Prometheus (or a compatible API) that rollouts' metric gates ask, e.g.
    /// `http://prometheus.monitoring:9090`. Unset, a stage with metric gates waits.
    #[arg(long, env = "BERTH_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// File holding a bearer token for Prometheus.
    #[arg(long, env = "BERTH_PROMETHEUS_TOKEN_FILE")]
    pub prometheus_token_file: Option<PathBuf>,
    /// Tenant sent to a multi-tenant Prometheus (Cortex, Mimir, Thanos) in
    /// `--prometheus-tenant-header`.
    #[arg(long, env = "BERTH_PROMETHEUS_TENANT")]
    pub prometheus_tenant: Option<String>,
    /// Header carrying `--prometheus-tenant`.
    #[arg(long, env = "BERTH_PROMETHEUS_TENANT_HEADER", default_value = "X-Scope-OrgID")]
    pub prometheus_tenant_header: String,
    /// Seconds a metric gate's query may take.
    #[arg(long, env = "BERTH_PROMETHEUS_TIMEOUT_SECONDS", default_value_t = 10)]
    pub prometheus_timeout_seconds: u64,
    /// Refuse to start with a development configuration: an HS256 bearer secret, no
    /// approval signing key or no webhook TLS (see `operator::strict`). The chart and
    /// `config/` turn it on.
    #[arg(long, env = "BERTH_STRICT")]
    pub strict: bool,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "BERTH_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Admission webhook, approvals and auth API.
    #[command(flatten)]
    pub webhook: WebhookArgs,
    /// Leader election among replicas.
    #[command(flatten)]
    pub election: ElectionArgs,
}

impl RunArgs {
    /// libgit2's deadlines (see [`gitops::NetworkTimeouts::apply`]).
    pub fn network_timeouts(&self) -> gitops::NetworkTimeouts {
        gitops::NetworkTimeouts {
            connect: Duration::from_secs(self.gitops_connect_timeout_seconds),
            io: Duration::from_secs(self.gitops_io_timeout_seconds),
        }
    }

    pub(super) fn writer_config(&self) -> Result<WriterConfig, gitops::Error> {
        let mut config = WriterConfig::new(&self.gitops_workdir, &self.gitops_remote, &self.gitops_branch);
        config.batch_window = Duration::from_millis(self.gitops_batch_window_ms);
        if self.gitops_mode == "pull-request" {
            config.mode = PushMode::PullRequest { branch_prefix: self.gitops_branch_prefix.clone() };
        }
        config.credentials = match (&self.gitops_token_file, &self.gitops_ssh_key_file) {
            (Some(token), _) => Credentials::token_from_file(self.gitops_username.clone(), token)?,
            (None, Some(key)) => {
                Credentials::ssh_key_from_files(key.clone(), self.gitops_ssh_passphrase_file.as_deref())?
            }
            (None, None) => Credentials::None,
        };
        Ok(config)
    }

    /// The Prometheus metric gates ask, if one is configured.
    pub(super) fn prometheus(&self) -> Result<Option<crate::promql::Prometheus>, crate::promql::ConfigError> {
        let Some(url) = &self.prometheus_url else {
            return Ok(None);
        };
        let settings = crate::promql::Settings {
            url: url.clone(),
            token_file: self.prometheus_token_file.clone(),
            tenant: self.prometheus_tenant.clone().map(|t| (self.prometheus_tenant_header.clone(), t)),
            timeout: Duration::from_secs(self.prometheus_timeout_seconds.max(1)),
        };
        crate::promql::Prometheus::new(&settings).map(Some)
    }
}

/// Settings of the election.
#[derive(Clone, Debug, clap::Args)]
pub struct ElectionArgs {
    /// Namespace of the `berth-leader` Lease. Set it (the Deployment sets it to the
    /// pod's namespace) to run several replicas; unset, this process assumes it is the
    /// only one and runs the controllers at once.
    #[arg(long, env = "BERTH_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// How long the lease holds without renewal, in seconds. A standby takes over this
    /// long after a leader dies; the leader renews a third of it before the end.
    #[arg(long, env = "BERTH_LEADER_LEASE_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub leader_lease_seconds: u64,
}
