//! What every handler of the webhook's HTTP surface shares: the view of the cluster,
//! the approval keys, the caller check and the metrics.

use std::sync::Arc;

use super::{metrics::WebhookMetrics, rate_limit::ApprovalRateLimit};
use crate::{
    approval::{Issuer, Verifier},
    auth::{BearerVerifier, KubernetesReviewer},
    index::Index,
};

/// Everything the handlers need.
#[derive(Clone)]
pub struct WebhookState {
    /// What admission reads about the cluster.
    pub index: Arc<Index>,
    /// Verifies approval tokens; `None` refuses every approval class.
    pub verifier: Option<Arc<Verifier>>,
    /// Signs approvals; `None` turns `POST /v1/approvals` off (503).
    pub issuer: Option<Arc<Issuer>>,
    /// Authenticates callers of the auth API by JWTs of its own keys; `None`: not so.
    pub bearer: Option<Arc<BearerVerifier>>,
    /// Authenticates callers by asking the apiserver (TokenReview) and authorizes them
    /// with RBAC (SubjectAccessReview); `None`: not so. With neither this nor
    /// `bearer`, `POST /v1/approvals` is off (503).
    pub kubernetes: Option<KubernetesReviewer>,
    /// Admission counters and latency.
    pub metrics: Option<WebhookMetrics>,
    /// How often each caller may ask `POST /v1/approvals`; `None`: no limit.
    pub approval_limit: Option<Arc<ApprovalRateLimit>>,
    /// Adds an approval to the request it approves when the approver asks (`apply`),
    /// as Berth's own ServiceAccount; `None`: approvals are only handed back.
    pub client: Option<kube::Client>,
}
