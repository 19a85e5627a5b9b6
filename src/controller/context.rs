//! What every reconcile gets: clients, the GitOps writer, telemetry, settings.

use kube::Client;

use super::{echoes::Echoes, events::EventPublisher};
use crate::{
    api::{
        environment_class::EnvironmentClassStatus, environment_request::EnvironmentRequestStatus, tenant::TenantStatus,
    },
    gitops::WriterHandle,
    index::Index,
    render::RenderOptions,
    telemetry::Metrics,
};

/// Field manager for everything Berth writes with server-side apply.
pub const FIELD_MANAGER: &str = "berth";

pub use crate::api::labels::FINALIZER;

/// What was last committed for each GitOps folder, so a reconcile whose rendering
/// has not changed skips the writer (no fetch, no batch window). Entries age out,
/// so a folder changed in git by hand is put right again within [`COMMITTED_TTL`].
#[derive(Default)]
pub struct CommittedFolders {
    folders: std::sync::Mutex<std::collections::HashMap<String, Remembered>>,
}

struct Remembered {
    digest: [u8; 32],
    commit: String,
    at: std::time::Instant,
}

/// How long a remembered commit spares the writer.
pub const COMMITTED_TTL: std::time::Duration = std::time::Duration::from_secs(600);

impl CommittedFolders {
    /// The commit holding `path` exactly as `digest` describes, if that was recent.
    pub fn current(&self, path: &str, digest: &[u8; 32]) -> Option<String> {
        let folders = self.folders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        folders.get(path).filter(|r| &r.digest == digest && r.at.elapsed() < COMMITTED_TTL).map(|r| r.commit.clone())
    }

    /// Records that `commit` holds `path` as `digest` describes.
    pub fn remember(&self, path: &str, digest: [u8; 32], commit: String) {
        let mut folders = self.folders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        folders.insert(path.to_owned(), Remembered { digest, commit, at: std::time::Instant::now() });
    }

    pub fn forget(&self, path: &str) {
        let mut folders = self.folders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        folders.remove(path);
    }
}

/// The request controller's status writes (see [`super::echoes`]).
pub type RequestEchoes = Echoes<EnvironmentRequestStatus, super::echoes::ReadBesidesStatus>;

/// Shared by all reconciles; no globals.
pub struct Context {
    pub client: Client,
    pub events: EventPublisher,
    pub metrics: Metrics,
    pub writer: WriterHandle,
    pub render: RenderOptions,
    /// What this process last committed per folder.
    pub committed: CommittedFolders,
    /// Decides new requests against their tenant's budget, one at a time.
    pub budget: super::budget::BudgetGuard,
    /// Environment folders in git and the request each belongs to.
    pub inventory: super::inventory::GitInventory,
    /// Verifies approval tokens; `None` when no approval keys are configured, and
    /// then no request of a class that needs approval is provisioned.
    pub approvals: Option<std::sync::Arc<crate::approval::Verifier>>,
    /// Requests, classes, tenants and live rendered objects in memory (shared with
    /// the webhook).
    pub index: std::sync::Arc<Index>,
    /// Asks Argo CD's root apps to look at git again after each push.
    pub refresh: super::refresh::Refresh,
    /// What rollouts' metric gates ask; `None` when not configured (gates then wait).
    pub prometheus: Option<std::sync::Arc<crate::promql::Prometheus>>,
    /// Pull-request mode: when each rollout batch commit was last found not merged.
    pub merge_checks: super::rollout::MergeChecks,
    /// Request status writes: their echoes need no second reconcile, and a reconcile
    /// that runs before the index shows one decides on the status written.
    pub echoes: RequestEchoes,
    /// Tenant and class status writes, until the index shows them (as above).
    pub tenant_writes: Echoes<TenantStatus>,
    pub class_writes: Echoes<EnvironmentClassStatus>,
}

impl Context {
    /// The index, once every kind holds its first list.
    pub async fn index(&self) -> &Index {
        self.index.ready().await;
        &self.index
    }
}
