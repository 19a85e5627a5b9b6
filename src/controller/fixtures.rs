//! Reconcile unit tests against a scripted apiserver (after kube-rs/controller-rs
//! `src/fixtures.rs`): a [`Context`] whose client talks to a [`ScriptedApiServer`] that
//! checks each call against the script and answers it, with an index filled by hand
//! and a GitOps writer on a local bare repository.

use std::sync::Arc;

use super::Context;
use crate::{
    gitops::{GitOpsMetrics, Writer, WriterConfig},
    index::Index,
    render::RenderOptions,
    telemetry::Metrics,
};

pub use crate::testing::apiserver::{ScriptedApiServer, scripted_client};

/// A context over `index`, its client scripted, its writer on a fresh local remote
/// (kept alive by the returned folder).
pub async fn context(index: Index) -> (Arc<Context>, ScriptedApiServer, tempfile::TempDir) {
    let (client, server) = scripted_client();
    let folder = tempfile::tempdir().expect("temp dir");
    let remote = folder.path().join("remote.git");
    git2::Repository::init_bare(&remote).expect("bare remote");
    let config = WriterConfig::new(folder.path().join("work"), format!("file://{}", remote.display()), "main");
    let metrics = Metrics::new().expect("metrics");
    let writer = Writer::spawn(config, GitOpsMetrics::register(metrics.registry()).expect("gitops metrics"))
        .await
        .expect("writer");
    let ctx = Context {
        events: super::events::EventPublisher::new(client.clone(), "berth", None),
        client,
        metrics,
        writer,
        render: RenderOptions::default(),
        committed: Default::default(),
        merge_checks: Default::default(),
        echoes: Default::default(),
        tenant_writes: Default::default(),
        class_writes: Default::default(),
        budget: Default::default(),
        inventory: Default::default(),
        approvals: None,
        index: Arc::new(index),
        refresh: super::refresh::Refresh::off(),
        prometheus: None,
    };
    (Arc::new(ctx), server, folder)
}
