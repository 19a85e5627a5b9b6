//! `berth approve`: ask Berth's auth API for an approval of one request, from a file
//! or from the cluster, and hand back the token (or the request with it filled in).

use std::path::PathBuf;

use axum::body::Bytes;
use clap::Args;
use kube::ResourceExt;

use super::{
    Inputs,
    https::{Connection, Endpoint, HttpsError, client_config},
    read_file,
};
use crate::{
    api::{EnvironmentRequest, environment_request::Approval},
    approval::wire::{ApiError, ApprovalGranted, ApprovalRequest},
};

/// Flags of `berth approve`.
#[derive(Args)]
pub struct ApproveArgs {
    /// A file holding the EnvironmentRequest to approve.
    #[arg(short = 'f', long = "filename", value_name = "FILE", conflicts_with = "name")]
    file: Option<PathBuf>,
    /// Name of an existing EnvironmentRequest to approve (read from the cluster).
    #[arg(value_name = "NAME", required_unless_present = "file")]
    name: Option<String>,
    /// Namespace of the request (overrides the file's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Berth's auth API.
    #[arg(long, env = "BERTH_URL", default_value = "https://127.0.0.1:8443")]
    server: String,
    /// CA certificate (PEM) that signed Berth's serving certificate.
    #[arg(long, env = "BERTH_CA_FILE")]
    ca_file: PathBuf,
    /// File holding your bearer token for the auth API.
    #[arg(long, env = "BERTH_TOKEN_FILE")]
    token_file: PathBuf,
    /// `token` prints the token; `yaml` prints the request with it in spec.approval.
    #[arg(short = 'o', long, default_value = "token", value_parser = ["token", "yaml"])]
    output: String,
}

/// `berth approve`: reads the request (file or cluster), asks for the approval and
/// prints the token or the approved request.
pub fn approve(args: &ApproveArgs) -> Result<(), String> {
    let bearer = String::from_utf8(read_file(&args.token_file)?)
        .map_err(|_| format!("{} does not hold a text token", args.token_file.display()))?;
    let server =
        Server { url: args.server.clone(), ca_pem: read_file(&args.ca_file)?, bearer: bearer.trim().to_owned() };
    super::runtime()?.block_on(async {
        let mut request: EnvironmentRequest = match (&args.file, &args.name) {
            (Some(file), _) => {
                let inputs = Inputs::read(std::slice::from_ref(file)).map_err(|e| e.to_string())?;
                match <[EnvironmentRequest; 1]>::try_from(inputs.requests) {
                    Ok([request]) => request,
                    Err(found) => {
                        return Err(format!(
                            "{} holds {} EnvironmentRequests; approve exactly one",
                            file.display(),
                            found.len()
                        ));
                    }
                }
            }
            (None, Some(name)) => {
                let client = kube::Client::try_default().await.map_err(|e| format!("cannot reach the cluster: {e}"))?;
                let namespace = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
                kube::Api::<EnvironmentRequest>::namespaced(client, &namespace)
                    .get(name)
                    .await
                    .map_err(|e| format!("cannot read EnvironmentRequest {namespace}/{name}: {e}"))?
            }
            (None, None) => return Err("give a file (-f) or the name of a request".to_owned()),
        };
        if let Some(namespace) = &args.namespace {
            request.metadata.namespace = Some(namespace.clone());
        }
        let granted = request_approval(&server, &request).await.map_err(|e| e.to_string())?;
        eprintln!(
            "approved {}/{} as {} (spec {})",
            request.namespace().unwrap_or_default(),
            request.name_any(),
            granted.approver,
            granted.digest
        );
        if args.output == "yaml" {
            let approved = with_approval(&request, &granted.token);
            print!("{}", serde_yaml::to_string(&approved).map_err(|e| e.to_string())?);
        } else {
            println!("{}", granted.token);
        }
        Ok(())
    })
}

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
