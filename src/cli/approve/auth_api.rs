//! Calling Berth's auth API for an approval: where it is, how the approver proves who
//! they are (a bearer token, or the kubeconfig user's credentials), and what comes back.

use axum::body::Bytes;
use kube::ResourceExt;

use crate::{
    api::{EnvironmentRequest, Rollout},
    approval::wire::{ApiError, ApprovalGranted, ApprovalRequest, StageApprovalRequest},
    cli::https::{Connection, Endpoint, HttpsError, client_config},
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
    #[error("the request or rollout has no namespace; set metadata.namespace or pass --namespace")]
    NoNamespace,
    #[error("cannot encode the request: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("cannot reach Berth's auth API: {0}")]
    Send(String),
}

/// Where Berth's auth API is, how to trust it and who is asking.
pub struct Server {
    pub url: String,
    pub ca_pem: Vec<u8>,
    pub credentials: Credentials,
}

/// How the approver proves who they are. Never printed.
pub enum Credentials {
    /// A bearer token of an identity provider Berth's own keys verify.
    Token(String),
    /// The kubeconfig user's credentials, sent as the apiserver would get them (kube's
    /// client runs exec plugins); Berth asks the apiserver who they are.
    Kubeconfig(Box<kube::Config>),
}

/// Asks for an approval of `stage` of `rollout` as it is now.
pub async fn stage_approval(
    server: &Server,
    rollout: &Rollout,
    stage: &str,
    freeze_override: bool,
) -> Result<ApprovalGranted, ApproveError> {
    let namespace = rollout.namespace().ok_or(ApproveError::NoNamespace)?;
    let body = StageApprovalRequest {
        namespace,
        name: rollout.name_any(),
        stage: stage.to_owned(),
        spec: rollout.spec.clone(),
        freeze_override,
    };
    post_approval(server, serde_json::to_vec(&body)?).await
}

/// Asks for an approval of `request` as it is now (`apply`: and for Berth to add it to
/// the request). A request created a moment ago may not be in Berth's view yet: asked
/// again a few times over about 3 s while Berth says it does not know it (each ask
/// counts against the caller's rate limit).
pub async fn request_approval(
    server: &Server,
    request: &EnvironmentRequest,
    apply: bool,
) -> Result<ApprovalGranted, ApproveError> {
    let namespace = request.namespace().ok_or(ApproveError::NoNamespace)?;
    let mut spec = request.spec.clone();
    spec.approval = None;
    let body = serde_json::to_vec(&ApprovalRequest { namespace, name: request.name_any(), spec, apply })?;
    let mut attempts = 0;
    loop {
        match post_approval(server, body.clone()).await {
            Err(ApproveError::Refused { reason, .. }) if reason == "RequestNotFound" && attempts < 3 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            answer => return answer,
        }
    }
}

async fn post_approval(server: &Server, body: Vec<u8>) -> Result<ApprovalGranted, ApproveError> {
    let (status, answer) = match &server.credentials {
        Credentials::Token(bearer) => {
            let endpoint = Endpoint::parse(&server.url)?;
            let mut connection = Connection::open(&endpoint, client_config(Some(&server.ca_pem))?).await?;
            let response = connection.post_json(APPROVALS_PATH, Bytes::from(body), Some(bearer)).await?;
            (response.status().as_u16(), response.into_body())
        }
        Credentials::Kubeconfig(kubeconfig) => post_as_kubeconfig_user(server, kubeconfig, body).await?,
    };
    if (200..300).contains(&status) {
        return serde_json::from_slice(&answer).map_err(|e| ApproveError::Unexpected { status, detail: e.to_string() });
    }
    match serde_json::from_slice::<ApiError>(&answer) {
        Ok(refusal) => Err(ApproveError::Refused { status, reason: refusal.reason, message: refusal.message }),
        Err(_) => Err(ApproveError::Unexpected {
            status,
            detail: String::from_utf8_lossy(&answer).chars().take(300).collect(),
        }),
    }
}

/// The auth API's path.
const APPROVALS_PATH: &str = "/v1/approvals";

/// POSTs to the auth API with the kubeconfig user's credentials: kube's client, pointed
/// at Berth and trusting only Berth's CA, authenticates as it would to the apiserver.
async fn post_as_kubeconfig_user(
    server: &Server,
    kubeconfig: &kube::Config,
    body: Vec<u8>,
) -> Result<(u16, Bytes), ApproveError> {
    let config = auth_api_config(kubeconfig, &server.url, &server.ca_pem)?;
    let client = kube::Client::try_from(config).map_err(|e| ApproveError::Kubeconfig(e.to_string()))?;
    let request = hyper::Request::post(APPROVALS_PATH)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body))
        .map_err(|e| ApproveError::Kubeconfig(e.to_string()))?;
    let response = client.send(request).await.map_err(|e| ApproveError::Send(e.to_string()))?;
    let status = response.status().as_u16();
    let answer = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| ApproveError::Send(e.to_string()))?
        .to_bytes();
    Ok((status, answer))
}

/// The kubeconfig's user, aimed at Berth's auth API instead of the apiserver. Berth
/// authenticates bearer tokens only (it asks the apiserver with a TokenReview), so a
/// user known by a client certificate, a password or impersonation is refused here,
/// saying what to use instead.
pub fn auth_api_config(kubeconfig: &kube::Config, url: &str, ca_pem: &[u8]) -> Result<kube::Config, ApproveError> {
    let user = &kubeconfig.auth_info;
    let has_token =
        user.token.is_some() || user.token_file.is_some() || user.exec.is_some() || user.auth_provider.is_some();
    if user.impersonate.is_some()
        || user.impersonate_groups.is_some()
        || user.impersonate_uid.is_some()
        || user.impersonate_user_extra.is_some()
    {
        return Err(ApproveError::Kubeconfig(
            "the kubeconfig user impersonates someone; Berth approves as the token's own user (use another context or --token-file)".to_owned(),
        ));
    }
    // kube prefers a password to a token: Berth must never be sent one.
    if user.username.is_some() || user.password.is_some() {
        return Err(ApproveError::Kubeconfig(
            "the kubeconfig user authenticates with a password, which Berth must not be sent; \
             use a context with a bearer token, or pass --token-file"
                .to_owned(),
        ));
    }
    if !has_token {
        return Err(ApproveError::Kubeconfig(
            "the kubeconfig user has no bearer token (a client certificate or password cannot be checked by Berth); \
             use a context with an OIDC, exec-plugin or ServiceAccount token, or pass --token-file"
                .to_owned(),
        ));
    }
    let cluster_url = url.parse().map_err(|_| HttpsError::Url(url.to_owned()))?;
    Endpoint::parse(url)?;
    let roots: Vec<Vec<u8>> = rustls_pemfile::certs(&mut &ca_pem[..])
        .map(|cert| cert.map(|der| der.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| HttpsError::Ca { path: "CA bundle".to_owned(), message: e.to_string() })?;
    if roots.is_empty() {
        return Err(HttpsError::Ca { path: "CA bundle".to_owned(), message: "no certificate in it".to_owned() }.into());
    }
    let mut config = kubeconfig.clone();
    config.cluster_url = cluster_url;
    // Only Berth's CA, only Berth's name: nothing of the apiserver's TLS settings.
    config.root_cert = Some(roots);
    config.root_cert_file = None;
    config.accept_invalid_certs = false;
    config.tls_server_name = None;
    config.proxy_url = None;
    config.headers = Vec::new();
    // kube retries 429 and 503 for minutes; Berth's own (rate limit, not configured)
    // should reach the approver at once.
    config.default_retry = false;
    config.read_timeout = Some(std::time::Duration::from_secs(30));
    // No client certificate either: only the bearer token is sent.
    config.auth_info.client_certificate = None;
    config.auth_info.client_certificate_data = None;
    config.auth_info.client_key = None;
    config.auth_info.client_key_data = None;
    Ok(config)
}
