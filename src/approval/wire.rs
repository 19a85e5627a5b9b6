//! The bodies of `POST /v1/approvals`, shared by the server (`webhook::approvals`) and
//! its client (`berth approve`).

use serde::{Deserialize, Serialize};

use crate::api::environment_request::EnvironmentRequestSpec;

/// What the caller wants approved: the request as it will be (or was) applied.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    /// The request's namespace.
    pub namespace: String,
    /// The request's name.
    pub name: String,
    /// Its spec; the approval covers exactly this (its `approval` field aside).
    pub spec: EnvironmentRequestSpec,
}

/// A granted approval.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalGranted {
    /// The token to put in `spec.approval.token`.
    pub token: String,
    /// Who approved.
    pub approver: String,
    /// Digest of the approved spec.
    pub digest: String,
}

impl std::fmt::Debug for ApprovalGranted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a bearer credential for the request: never print it.
        f.debug_struct("ApprovalGranted")
            .field("token", &"[redacted]")
            .field("approver", &self.approver)
            .field("digest", &self.digest)
            .finish()
    }
}

/// A refusal, as JSON: a stable reason code and a sentence for people.
#[derive(Debug, Deserialize, Serialize)]
pub struct ApiError {
    /// Machine-readable reason, e.g. `NotAnApprover`.
    pub reason: String,
    /// What went wrong and what to do.
    pub message: String,
}
