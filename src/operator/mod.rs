//! `berth run`: wires telemetry, the GitOps writer and the controllers together,
//! serves /metrics /healthz /readyz, and on SIGTERM/SIGINT stops the controllers
//! and flushes pending commits before exiting.
//!
//! - [`args`]: the flags of `berth run` (the webhook's are `webhook::WebhookArgs`)
//! - [`leader`]: Lease-based leader election among replicas
//! - [`strict`]: what `--strict` refuses

pub mod args;
pub mod leader;
pub mod strict;

use std::{future::Future, sync::Arc, time::Duration};

use futures::FutureExt;
use kube::Client;

use crate::{
    controller::{self, Context},
    gitops::{self, GitOpsMetrics, Writer},
    index::{self, Index},
    render::RenderOptions,
    telemetry::{self, Metrics, Readiness, ServerState},
    webhook,
};

pub use args::{ElectionArgs, RunArgs};
use leader::Candidacy;

/// Why `berth run` could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("telemetry: {0}")]
    Telemetry(#[from] telemetry::Error),
    #[error("gitops: {0}")]
    GitOps(#[from] gitops::Error),
    #[error("cannot reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("no Kubernetes configuration: {0}")]
    KubeConfig(#[from] kube::config::InferConfigError),
    #[error("cannot register gitops metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("webhook: {0}")]
    Webhook(#[from] webhook::settings::SettingsError),
    #[error("webhook server: {0}")]
    WebhookServer(std::io::Error),
    #[error("metric gates: {0}")]
    Prometheus(#[from] crate::promql::ConfigError),
    #[error("{0}")]
    Strict(#[from] strict::Refusal),
    #[error("leader election: {0}")]
    Election(#[from] leader::ElectionError),
    #[error("lost the leader lease; exiting so that this replica restarts as a standby")]
    LostLease,
}

/// How long an API call may wait to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reconcile's API call may wait for an answer: kube's default client has no
/// read timeout, so one hung call could hold a reconcile slot for as long as it hung.
const API_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Berth's two clients: one for calls, one for watches (a watch is one long read, bounded
/// by the watcher's own 290 s server-side timeout, so it gets no read timeout here).
struct Clients {
    calls: Client,
    watches: Client,
}

impl Clients {
    async fn infer() -> Result<Self, RunError> {
        let config = kube::Config::infer().await?;
        let mut calls = config.clone();
        calls.connect_timeout = Some(CONNECT_TIMEOUT);
        calls.read_timeout = Some(API_CALL_TIMEOUT);
        calls.write_timeout = Some(API_CALL_TIMEOUT);
        // Without it, the time a pooled connection sat idle counts against the next answer.
        calls.reset_reader_on_write = true;
        let mut watches = config;
        watches.connect_timeout = Some(CONNECT_TIMEOUT);
        Ok(Self { calls: Client::try_from(calls)?, watches: Client::try_from(watches)? })
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Runs the operator until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    // First: a refused configuration must not touch git or the cluster.
    if args.strict {
        strict::check(&args.webhook)?;
        tracing::info!("strict mode: webhook TLS and an approval signing key configured, no HS256 secret");
    }
    let metrics = Metrics::new()?;
    // Built first: a bad key file should stop Berth before it touches git or the cluster.
    let approvals = args.webhook.verifier()?.map(Arc::new);
    let readiness = Readiness::new();
    let caches = readiness.check("caches-synced");
    let remote = readiness.check("gitops-remote");
    let writer_moving = readiness.check("gitops-writer");
    let watch_health = readiness.check("watches");

    let prometheus = args.prometheus()?.map(Arc::new);
    let writer = Writer::spawn(args.writer_config()?, GitOpsMetrics::register(metrics.registry())?).await?;
    let Clients { calls: client, watches: watch_client } = Clients::infer().await?;
    // Entered before anything is served, so a Lease Berth may not use stops it here.
    let candidacy = args.election.candidacy().await?;
    let applications = crate::render::application_resource();
    let argocd_installed = crd_exists(&client, &index::crd_name(&applications)).await;
    if !argocd_installed {
        tracing::warn!(
            "Argo CD's Application CRD is not installed; requests become Ready once committed, \
             and Berth reports Argo CD's sync once it is installed"
        );
    }
    // One set of watches feeds the request controller and the webhook's decisions.
    let argocd = index::ArgoCd {
        resource: applications,
        namespace: args.argocd_namespace.clone(),
        installed_at_start: argocd_installed,
    };
    let watches = telemetry::Watches::new(metrics.clone());
    let index = Arc::new(Index::new(argocd));
    // Without an election the controllers subscribe before the watches start, so their
    // feeds carry the first lists; a standby subscribes once elected.
    let feeds = candidacy.is_none().then(|| index.feeds());
    index.start(&watch_client, &watches);
    let unhealthy_after = Duration::from_secs(args.watch_unhealthy_after_seconds);
    let watch_monitor = tokio::spawn(watches.keep_current(watch_health, unhealthy_after));
    let refresh = if args.argocd_refresh {
        controller::refresh::Refresh::start(client.clone(), index.clone(), args.gitops_remote.clone(), metrics.clone())
    } else {
        controller::refresh::Refresh::off()
    };
    let ctx = Arc::new(Context {
        events: controller::events::EventPublisher::new(client.clone(), "berth", std::env::var("POD_NAME").ok()),
        client,
        metrics: metrics.clone(),
        writer: writer.clone(),
        render: RenderOptions { argocd_namespace: args.argocd_namespace.clone() },
        committed: Default::default(),
        merge_checks: Default::default(),
        echoes: Default::default(),
        tenant_writes: Default::default(),
        class_writes: Default::default(),
        budget: Default::default(),
        inventory: Default::default(),
        approvals: approvals.clone(),
        index: index.clone(),
        refresh,
        prometheus,
    });

    let shutdown = shutdown_signal().shared();
    let metrics_registry = metrics.registry().clone();
    let server = tokio::spawn(telemetry::serve(args.listen, ServerState { metrics, readiness }, shutdown.clone()));
    let start =
        webhook::settings::Start { index, verifier: approvals, registry: metrics_registry, client: ctx.client.clone() };
    let webhook = webhook::settings::start(&args.webhook, start, shutdown.clone()).await?;
    let stall_limit = Duration::from_secs(args.gitops_stall_seconds);
    // A probe may queue behind a batch that takes its full deadlines.
    let timeouts = args.network_timeouts();
    let probe_limit = stall_limit.max(timeouts.connect + timeouts.io + Duration::from_secs(5));
    let remote_probe = tokio::spawn(probe_remote(writer.clone(), remote, probe_limit));
    let writer_monitor = tokio::spawn(watch_writer(writer.clone(), writer_moving, stall_limit));
    let synced = tokio::spawn(controller::report_caches_synced(ctx.index.clone(), caches));
    let max = args.max_concurrent_reconciles;
    let lost_lease = match (&candidacy, feeds) {
        (Some(candidacy), _) => lead_when_elected(ctx, candidacy, max, shutdown.clone()).await,
        (None, feeds) => {
            ctx.metrics.set_leader(true);
            let feeds = feeds.unwrap_or_else(|| ctx.index.feeds());
            controller::run(ctx, feeds, false, max, shutdown.clone()).await;
            false
        }
    };
    remote_probe.abort();
    writer_monitor.abort();
    synced.abort();
    watch_monitor.abort();

    tracing::info!("controllers stopped; flushing pending commits");
    // The lease goes whatever the final flush says (a busy or unreachable remote), so a
    // standby takes over at once instead of waiting for the lease to run out.
    let flushed = writer.shutdown().await;
    if let Some(candidacy) = candidacy {
        candidacy.resign(Duration::from_secs(5)).await;
    }
    flushed?;
    if lost_lease {
        // Exit rather than serve on: Kubernetes restarts this replica as a standby.
        return Err(RunError::LostLease);
    }
    if let Some(webhook) = webhook {
        match webhook.await {
            Ok(result) => result.map_err(RunError::WebhookServer)?,
            Err(e) => tracing::warn!(error = %e, "webhook server task ended abnormally"),
        }
    }
    match server.await {
        Ok(result) => result?,
        Err(e) => tracing::warn!(error = %e, "telemetry server task ended abnormally"),
    }
    Ok(())
}

/// As a candidate: stands by (the index stays filled, for the webhook), runs the
/// controllers once elected, and stops them on shutdown or when the lease is lost.
/// Returns whether the lease was lost.
async fn lead_when_elected(
    ctx: Arc<Context>,
    candidacy: &Candidacy,
    max_concurrent_reconciles: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) -> bool {
    ctx.metrics.set_leader(false);
    tracing::info!(identity = candidacy.identity(), "standing by until elected leader");
    tokio::select! {
        () = candidacy.leading() => {}
        () = shutdown.clone() => return false,
    };
    let feeds = ctx.index.feeds();
    tracing::info!(identity = candidacy.identity(), "elected leader; starting the controllers");
    ctx.metrics.set_leader(true);
    let lost = candidacy.lost().shared();
    let stop = futures::future::select(shutdown.boxed(), lost.clone().boxed()).map(drop).shared();
    controller::run(ctx.clone(), feeds, true, max_concurrent_reconciles, stop).await;
    let lost_lease = lost.now_or_never().is_some();
    ctx.metrics.set_leader(false);
    if lost_lease {
        tracing::error!(identity = candidacy.identity(), "lost the leader lease; controllers stopped");
    }
    lost_lease
}

/// Keeps the `gitops-remote` readiness check current. A probe queued behind a writer
/// that does not answer within `limit` counts as unreachable.
async fn probe_remote(writer: gitops::WriterHandle, check: telemetry::ReadinessCheck, limit: Duration) {
    loop {
        let reachable = match tokio::time::timeout(limit, writer.check_remote()).await {
            Ok(reachable) => reachable.map_err(|e| e.to_string()),
            Err(_) => Err(format!("the GitOps writer did not answer within {}s", limit.as_secs())),
        };
        if let Err(e) = &reachable {
            tracing::warn!(error = %e, "gitops remote not reachable");
        }
        check.set(reachable.is_ok());
        tokio::time::sleep(Duration::from_secs(if check.is_ready() { 30 } else { 5 })).await;
    }
}

/// Keeps the `gitops-writer` readiness check (and `berth_gitops_remote_operation_seconds`)
/// current: unready while one fetch or push has waited on the remote longer than
/// `limit`. Reads the writer's record directly, so it sees a writer blocked in git.
async fn watch_writer(writer: gitops::WriterHandle, check: telemetry::ReadinessCheck, limit: Duration) {
    let mut stalled = false;
    loop {
        let stall = writer.check_stall(limit);
        match (&stall, stalled) {
            (Err(e), false) => tracing::error!(error = %e, "gitops writer stalled"),
            (Ok(()), true) => tracing::info!("gitops writer moving again"),
            _ => {}
        }
        stalled = stall.is_err();
        check.set(!stalled);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Whether the CustomResourceDefinition `name` exists. An error (e.g. RBAC) reads as
/// no, and is logged: it would otherwise look exactly like Argo CD not being installed.
async fn crd_exists(client: &Client, name: &str) -> bool {
    let crds: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        kube::Api::all(client.clone());
    match crds.get_opt(name).await {
        Ok(found) => found.is_some(),
        Err(error) => {
            tracing::warn!(crd = name, %error, "cannot read the CRD; taking it as not installed");
            false
        }
    }
}
