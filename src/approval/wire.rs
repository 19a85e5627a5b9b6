//! The bodies of `POST /v1/approvals`, shared by the server (`webhook::approvals`) and
//! its client (`berth approve`).

use serde::{Deserialize, Serialize};

use crate::api::{environment_request::EnvironmentRequestSpec, rollout::RolloutSpec};

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
    /// Berth adds the approval to the request itself (`spec.approval.token`), as
    /// Berth, so neither the approver nor a requester who may only create requests
    /// needs to update it; the token is handed back all the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply: bool,
}

/// What the caller wants approved for a rollout stage: the rollout as it will be (or
/// was) applied. Told apart from an [`ApprovalRequest`] by its `stage` field, so
/// clients that approve requests keep sending what they always sent.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageApprovalRequest {
    /// The rollout's namespace.
    pub namespace: String,
    /// The rollout's name.
    pub name: String,
    /// The stage to approve.
    pub stage: String,
    /// The rollout's spec; the approval covers exactly this (approvals, `paused` and
    /// `abort` aside).
    pub spec: RolloutSpec,
    /// Break-glass: let this stage commit during a freeze (class approvers only).
    #[serde(default)]
    pub freeze_override: bool,
}

/// The body of `POST /v1/approvals`: a request's or a rollout stage's.
#[derive(Debug)]
pub enum ApprovalBody {
    Request(ApprovalRequest),
    Stage(StageApprovalRequest),
}

impl ApprovalBody {
    /// Parses a body: a rollout stage's when it names a `stage`, else a request's.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        if value.get("stage").is_some() {
            serde_json::from_value(value)
                .map(ApprovalBody::Stage)
                .map_err(|e| format!("body must be {{namespace, name, stage, spec, freezeOverride}} of a Rollout: {e}"))
        } else {
            serde_json::from_value(value)
                .map(ApprovalBody::Request)
                .map_err(|e| format!("body must be {{namespace, name, spec}} of an EnvironmentRequest: {e}"))
        }
    }
}

/// A granted approval.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalGranted {
    /// The token to put in `spec.approval.token` (a request) or `spec.approvals` (a rollout stage).
    pub token: String,
    /// Who approved.
    pub approver: String,
    /// Digest of the approved spec.
    pub digest: String,
    /// The token's id: what revoking it names (absent from older Berths' answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Whether Berth added the approval to the request (asked with `apply`); an older
    /// Berth, which ignores `apply`, never says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub applied: bool,
}

impl std::fmt::Debug for ApprovalGranted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a bearer credential for the request: never print it.
        f.debug_struct("ApprovalGranted")
            .field("token", &"[redacted]")
            .field("approver", &self.approver)
            .field("digest", &self.digest)
            .field("token_id", &self.token_id)
            .field("applied", &self.applied)
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
