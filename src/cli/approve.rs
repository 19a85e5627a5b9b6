//! `berth approve`: ask Berth's auth API for an approval of one request, from a file
//! or from the cluster, and hand back the token (or the request with it filled in).

use axum::body::Bytes;
use kube::ResourceExt;

use super::https::{Connection, Endpoint, HttpsError, client_config};
use crate::{
    api::{EnvironmentRequest, environment_request::Approval},
    approval::wire::{ApiError, ApprovalGranted, ApprovalRequest},
};

/// Why no approval came back. The server's refusal is passed on as it was written.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error(transparent)]
    Https(#[from] HttpsError),
    #[error("Berth refused ({status} {reason}): {message}")]
    Refused { status: u16, reason: String, message: String },
    #[error("unexpected answer from Berth ({status}): {detail}")]
    Unexpected { status: u16, detail: String },
    #[error("the request has no namespace; set metadata.namespace or pass --namespace")]
    NoNamespace,
    #[error("cannot encode the request: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Where Berth's auth API is and how to trust it.
pub struct Server {
    pub url: String,
    pub ca_pem: Vec<u8>,
    /// Bearer token proving who is asking. Never printed.
    pub bearer: String,
}

/// Asks for an approval of `request` as it is now.
pub async fn request_approval(server: &Server, request: &EnvironmentRequest) -> Result<ApprovalGranted, ApproveError> {
    let namespace = request.namespace().ok_or(ApproveError::NoNamespace)?;
    let mut spec = request.spec.clone();
    spec.approval = None;
    let body = serde_json::to_vec(&ApprovalRequest { namespace, name: request.name_any(), spec })?;
    let endpoint = Endpoint::parse(&server.url)?;
    let mut connection = Connection::open(&endpoint, client_config(Some(&server.ca_pem))?).await?;
    let response = connection.post_json("/v1/approvals", Bytes::from(body), Some(&server.bearer)).await?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        return serde_json::from_slice(response.body())
            .map_err(|e| ApproveError::Unexpected { status, detail: e.to_string() });
    }
    match serde_json::from_slice::<ApiError>(response.body()) {
        Ok(refusal) => Err(ApproveError::Refused { status, reason: refusal.reason, message: refusal.message }),
        Err(_) => Err(ApproveError::Unexpected {
            status,
            detail: String::from_utf8_lossy(response.body()).chars().take(300).collect(),
        }),
    }
}

/// The request with the token in `spec.approval`, ready for `kubectl apply -f -`.
pub fn with_approval(request: &EnvironmentRequest, token: &str) -> EnvironmentRequest {
    let mut approved = request.clone();
    approved.spec.approval = Some(Approval { token: token.to_owned() });
    // What the cluster filled in is not the author's to apply back.
    approved.metadata.managed_fields = None;
    approved.metadata.resource_version = None;
    approved.metadata.uid = None;
    approved.metadata.creation_timestamp = None;
    approved.metadata.generation = None;
    approved.status = None;
    approved
}
