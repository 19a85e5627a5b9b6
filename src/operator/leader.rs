//! Lease-based leader election, so that of several replicas one at a time runs the
//! controllers and the GitOps writer. The webhook, /metrics and the watch caches the
//! webhook reads run on every replica. Lease expiry is judged on each node's clock,
//! so node clocks must agree within the grace period (a third of the lease).
//!
//! A replica that loses the lease stops: its controllers finish what is in flight and
//! the process exits with an error, and Kubernetes restarts it as a standby. Carrying
//! on as a writer that might no longer be the only one is never worth the risk.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::{sync::watch, task::JoinHandle};

use super::args::ElectionArgs;

/// Name of the Lease the replicas compete for.
pub const LEASE_NAME: &str = "berth-leader";

/// Why the election could not run.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("cannot use the leader Lease {namespace}/{LEASE_NAME}: {source}")]
    Lease {
        namespace: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error("no Kubernetes client for the leader election: {0}")]
    Client(String),
}

/// This replica's candidacy: tells when it leads and when it stopped leading.
pub struct Candidacy {
    identity: String,
    leading: watch::Receiver<bool>,
    manager: JoinHandle<Result<(), LeaseManagerError>>,
}

/// Pause before asking again after the Lease could not be read or written.
const RETRY: Duration = Duration::from_secs(1);

impl ElectionArgs {
    /// Enters the election when a namespace is set; `None` means no election.
    pub async fn candidacy(&self) -> Result<Option<Candidacy>, ElectionError> {
        let Some(namespace) = &self.leader_election_namespace else {
            return Ok(None);
        };
        let identity = identity();
        let duration = self.leader_lease_seconds;
        let grace = (duration / 3).max(1);
        let manager = LeaseManagerBuilder::new(lease_client(Duration::from_secs(grace)).await?, LEASE_NAME)
            .with_namespace(namespace)
            .with_identity(&identity)
            .with_field_manager(format!("berth-{identity}"))
            .with_duration(duration)
            .with_grace(grace)
            .build()
            .await
            .map_err(|source| ElectionError::Lease { namespace: namespace.clone(), source })?;
        let (sender, leading) = watch::channel(false);
        let manager = tokio::spawn(campaign(manager, sender));
        tracing::info!(%identity, lease = %format!("{namespace}/{LEASE_NAME}"), "entered the leader election");
        Ok(Some(Candidacy { identity, leading, manager }))
    }
}

/// A client of its own for the Lease, whose calls give up within `timeout` (shorter
/// than the grace period): kube's default client waits on a hung request forever,
/// and a leader stuck renewing would go on leading after its lease ran out.
async fn lease_client(timeout: Duration) -> Result<Client, ElectionError> {
    let mut config = kube::Config::infer().await.map_err(|e| ElectionError::Client(e.to_string()))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    // Without it, the time a pooled connection sat idle counts against the next answer.
    config.reset_reader_on_write = true;
    config.write_timeout = Some(timeout);
    Client::try_from(config).map_err(|e| ElectionError::Client(e.to_string()))
}

/// Keeps the lease (or waits for it) and reports whether this replica leads. Unlike
/// kube-lease-manager's own loop, a failed renewal while leading reports the lease
/// lost at once: the leader cannot know it still holds it. Ends, releasing the lease,
/// once every receiver is gone.
async fn campaign(manager: LeaseManager, leading: watch::Sender<bool>) -> Result<(), LeaseManagerError> {
    loop {
        tokio::select! {
            biased;
            () = leading.closed() => break,
            changed = manager.changed() => match changed {
                Ok(now) => {
                    leading.send_replace(now);
                }
                Err(error) => {
                    if *leading.borrow() {
                        tracing::error!(%error, "cannot renew the leader lease; giving up the lead");
                        leading.send_replace(false);
                    } else {
                        tracing::warn!(%error, "cannot read the leader lease; trying again");
                    }
                    tokio::time::sleep(RETRY).await;
                }
            },
        }
    }
    manager.release().await
}

/// The pod's name when Kubernetes provides it (`POD_NAME` from the downward API), else
/// the host name; a random suffix keeps two processes on one host apart.
fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "berth".to_owned());
    // The kernel hands out a fresh random UUID on every read.
    let suffix = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .ok()
        .and_then(|uuid| uuid.get(..8).map(str::to_owned))
        .unwrap_or_else(|| std::process::id().to_string());
    format!("{host}-{suffix}")
}

impl Candidacy {
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Resolves once this replica holds the lease.
    pub fn leading(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut leading = self.leading.clone();
        async move {
            // An error means the election task ended, which only a panic does while
            // this receiver lives: stand by for good, and say so.
            if leading.wait_for(|leading| *leading).await.is_err() {
                tracing::error!("the leader election stopped; this replica stays a standby");
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves once this replica does not hold the lease (or the election ended).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut leading = self.leading.clone();
        async move {
            if leading.wait_for(|leading| !*leading).await.is_err() {
                tracing::warn!("the leader election stopped");
            }
        }
    }

    /// Releases the lease (if held) so a standby takes over at once, waiting at most `limit`.
    pub async fn resign(self, limit: Duration) {
        let Candidacy { leading, manager, .. } = self;
        // Dropping the receiver makes the manager task release the lease and end.
        drop(leading);
        match tokio::time::timeout(limit, manager).await {
            Ok(Ok(Ok(()))) => tracing::info!("released the leader lease"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "could not release the leader lease"),
            Ok(Err(error)) => tracing::warn!(%error, "the leader election task failed"),
            Err(_) => tracing::warn!("releasing the leader lease timed out; it expires on its own"),
        }
    }
}
