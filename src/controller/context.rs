//! What every reconcile gets: clients, the GitOps writer, telemetry, settings.

use kube::{Client, runtime::events::Recorder};

use crate::{gitops::WriterHandle, render::RenderOptions, telemetry::Metrics};

/// Field manager for everything Berth writes with server-side apply.
pub const FIELD_MANAGER: &str = "berth";

/// Finalizer that keeps a request until its folder is gone from git.
pub const FINALIZER: &str = "berth.dev/gitops-cleanup";

/// Shared by all reconciles; no globals.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub writer: WriterHandle,
    pub render: RenderOptions,
    /// Whether Argo CD's Application CRD is installed (checked at start).
    pub argocd_installed: bool,
}
