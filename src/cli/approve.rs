//! `berth approve`: ask Berth's auth API for an approval of one request, from a file
//! or from the cluster, and hand back the token (or the request with it filled in);
//! `berth approve rollout NAME --stage S`: the same for one stage of a Rollout, handed
//! back as the `kubectl patch` that adds it to `spec.approvals` (or applied).

use std::path::PathBuf;

use axum::body::Bytes;
use clap::{Args, Subcommand};
use kube::ResourceExt;

use super::{
    Inputs,
    https::{Connection, Endpoint, HttpsError, client_config},
    read_file,
};
use crate::{
    api::{EnvironmentRequest, Rollout, environment_request::Approval, rollout::StageApproval},
    approval::wire::{ApiError, ApprovalGranted, ApprovalRequest, StageApprovalRequest},
};

/// Flags of `berth approve`.
#[derive(Args)]
#[command(subcommand_negates_reqs = true)]
pub struct ApproveArgs {
    /// Approve a stage of a Rollout instead of a request.
    #[command(subcommand)]
    what: Option<ApproveWhat>,
    /// A file holding the EnvironmentRequest to approve.
    #[arg(short = 'f', long = "filename", value_name = "FILE", conflicts_with = "name")]
    file: Option<PathBuf>,
    /// Name of an existing EnvironmentRequest to approve (read from the cluster).
    #[arg(value_name = "NAME", required_unless_present = "file")]
    name: Option<String>,
    /// Namespace of the request or rollout (overrides the file's; default: the
    /// kubeconfig's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Berth's auth API (`berth run --auth-listen`, the Service's port `auth`).
    #[arg(long, env = "BERTH_URL", default_value = "https://127.0.0.1:8444", global = true)]
    server: String,
    /// CA certificate (PEM) that signed Berth's serving certificate.
    #[arg(long, env = "BERTH_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// File holding a bearer token of your identity provider for the auth API (a JWT
    /// Berth's own keys verify). By default you approve as the user of your kubeconfig
    /// context, with the token it uses (static, exec plugin such as kubelogin,
    /// ServiceAccount).
    #[arg(long, env = "BERTH_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// kubeconfig context to approve as and to read requests and rollouts from
    /// (default: the current context).
    #[arg(long, global = true)]
    context: Option<String>,
    /// `token` prints the token; `yaml` prints the request with it in spec.approval.
    #[arg(short = 'o', long, default_value = "token", value_parser = ["token", "yaml"])]
    output: String,
    /// Have Berth put the token into the request's spec.approval (as Berth: you need
    /// no rights on the request, and its requester none to update it); the token is
    /// not printed.
    #[arg(long, conflicts_with = "output")]
    apply: bool,
}

/// What else `berth approve` approves.
#[derive(Subcommand)]
enum ApproveWhat {
    /// Approve one stage of a Rollout (as it is in the cluster): prints the `kubectl
    /// patch` that adds the approval to its spec.approvals, or applies it (`--apply`).
    Rollout(ApproveRolloutArgs),
}

/// Flags of `berth approve rollout`.
#[derive(Args)]
struct ApproveRolloutArgs {
    /// The Rollout.
    #[arg(value_name = "NAME")]
    name: String,
    /// The stage to approve.
    #[arg(long)]
    stage: String,
    /// Break-glass: let this stage commit during a freeze (approvers of a class whose
    /// approval is required only). Recorded in the rollout's status, its events and
    /// the commit trailers.
    #[arg(long)]
    override_freeze: bool,
    /// Apply the patch with your kubeconfig instead of printing it.
    #[arg(long)]
    apply: bool,
    /// `patch` prints the kubectl command; `token` prints the token alone.
    #[arg(short = 'o', long, default_value = "patch", value_parser = ["patch", "token"])]
    output: String,
}

/// `berth approve`: reads the request (file or cluster), asks for the approval and
/// prints the token or the approved request.
pub fn approve(args: &ApproveArgs) -> Result<(), String> {
    let ca_file = args.ca_file.as_ref().ok_or("give --ca-file (or BERTH_CA_FILE): the CA of Berth's certificate")?;
    let ca_pem = read_file(ca_file)?;
    super::runtime()?.block_on(async {
        let cluster = Cluster { context: args.context.clone() };
        let credentials = match &args.token_file {
            Some(token_file) => {
                let bearer = String::from_utf8(read_file(token_file)?)
                    .map_err(|_| format!("{} does not hold a text token", token_file.display()))?;
                Credentials::Token(bearer.trim().to_owned())
            }
            None => Credentials::Kubeconfig(Box::new(cluster.config().await?)),
        };
        let server = Server { url: args.server.clone(), ca_pem, credentials };
        if let Some(ApproveWhat::Rollout(rollout)) = &args.what {
            return approve_rollout(&server, &cluster, rollout, args.namespace.as_deref()).await;
        }
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
                let client = cluster.client().await?;
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
        let granted = request_approval(&server, &request, args.apply).await.map_err(|e| e.to_string())?;
        let (namespace, name) = (request.namespace().unwrap_or_default(), request.name_any());
        eprintln!(
            "approved {namespace}/{name} as {} (spec {}){}",
            granted.approver,
            granted.digest,
            revoke_hint(&granted)
        );
        if args.apply {
            // An older Berth ignores `apply`: say so rather than drop the token.
            if !granted.applied {
                println!("{}", granted.token);
                return Err(format!(
                    "this Berth did not add the approval to {namespace}/{name} (it predates --apply): the token is printed above; put it in spec.approval.token"
                ));
            }
            eprintln!("Berth added it to spec.approval of request {namespace}/{name}");
        } else if args.output == "yaml" {
            let approved = with_approval(&request, &granted.token);
            print!("{}", serde_yaml::to_string(&approved).map_err(|e| e.to_string())?);
        } else {
            println!("{}", granted.token);
        }
        Ok(())
    })
}

/// The cluster `berth approve` reads from, as the kubeconfig names it.
struct Cluster {
    context: Option<String>,
}

impl Cluster {
    /// The kubeconfig's settings for the chosen context (in a pod: its ServiceAccount).
    async fn config(&self) -> Result<kube::Config, String> {
        match &self.context {
            Some(context) => {
                let options = kube::config::KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
                kube::Config::from_kubeconfig(&options).await.map_err(|e| format!("kubeconfig context {context}: {e}"))
            }
            None => kube::Config::infer().await.map_err(|e| format!("cannot load a kubeconfig: {e}")),
        }
    }

    async fn client(&self) -> Result<kube::Client, String> {
        kube::Client::try_from(self.config().await?).map_err(|e| format!("cannot reach the cluster: {e}"))
    }
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

/// `berth approve rollout`: reads the rollout from the cluster, asks for the stage's
/// approval and prints (or applies) the patch that adds it.
async fn approve_rollout(
    server: &Server,
    cluster: &Cluster,
    args: &ApproveRolloutArgs,
    namespace: Option<&str>,
) -> Result<(), String> {
    let client = cluster.client().await?;
    let namespace = namespace.map_or_else(|| client.default_namespace().to_owned(), str::to_owned);
    let api = kube::Api::<Rollout>::namespaced(client, &namespace);
    let rollout =
        api.get(&args.name).await.map_err(|e| format!("cannot read Rollout {namespace}/{}: {e}", args.name))?;
    let granted =
        stage_approval(server, &rollout, &args.stage, args.override_freeze).await.map_err(|e| e.to_string())?;
    eprintln!(
        "approved stage {} of rollout {namespace}/{} as {}{} (spec {}){}",
        args.stage,
        args.name,
        granted.approver,
        if args.override_freeze { ", with a freeze override" } else { "" },
        granted.digest,
        revoke_hint(&granted)
    );
    if args.output == "token" {
        println!("{}", granted.token);
        return Ok(());
    }
    let patch = approvals_patch(&rollout, &args.stage, &granted.token);
    if args.apply {
        api.patch(&args.name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .map_err(|e| format!("cannot add the approval to Rollout {namespace}/{}: {e}", args.name))?;
        eprintln!("added to spec.approvals of rollout {namespace}/{}", args.name);
    } else {
        println!("kubectl patch rollouts.berth.dev {} -n {namespace} --type merge -p '{patch}'", args.name);
    }
    Ok(())
}

/// The JSON merge patch that sets `spec.approvals` to the rollout's approvals with
/// `stage`'s replaced by `token` (a merge patch replaces the whole list).
pub fn approvals_patch(rollout: &Rollout, stage: &str, token: &str) -> serde_json::Value {
    let mut approvals: Vec<StageApproval> =
        rollout.spec.approvals.iter().filter(|a| a.stage != stage).cloned().collect();
    approvals.push(StageApproval { stage: stage.to_owned(), token: token.to_owned() });
    serde_json::json!({ "spec": { "approvals": approvals } })
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

/// How to revoke what was just granted, for the approver's terminal.
fn revoke_hint(granted: &ApprovalGranted) -> String {
    granted.token_id.as_ref().map(|id| format!("; token id {id} (revoke it by this id)")).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> ApproveArgs {
        let cli = Cli::try_parse_from(["berth", "approve"].iter().chain(args)).expect("parses");
        match cli.command {
            Command::Approve(args) => *args,
            _ => panic!("not approve"),
        }
    }

    #[test]
    fn approve_keeps_its_request_forms_and_approves_rollout_stages_as_a_subcommand() {
        let request = parse(&["-n", "payments", "checkout-prod", "--ca-file", "ca.pem", "--token-file", "t"]);
        assert_eq!(request.name.as_deref(), Some("checkout-prod"));
        assert!(request.what.is_none());
        let file = parse(&["-f", "checkout-prod.yaml", "-o", "yaml"]);
        assert!(file.file.is_some() && file.what.is_none());
        let stage = parse(&["rollout", "checkout-v2", "--stage", "production", "-n", "payments", "--override-freeze"]);
        // The auth API's flags may come first, as with requests.
        let first = parse(&["--ca-file", "ca.pem", "--token-file", "t", "rollout", "checkout-v2", "--stage", "canary"]);
        assert!(matches!(&first.what, Some(ApproveWhat::Rollout(r)) if r.stage == "canary"));
        assert!(first.name.is_none() && first.ca_file.is_some());
        let Some(ApproveWhat::Rollout(rollout)) = &stage.what else { panic!("a rollout approval") };
        assert_eq!((rollout.name.as_str(), rollout.stage.as_str()), ("checkout-v2", "production"));
        assert!(rollout.override_freeze && !rollout.apply);
        assert_eq!(stage.namespace.as_deref(), Some("payments"));
    }

    #[test]
    fn the_patch_replaces_the_stage_s_approval_and_keeps_the_others() {
        let mut rollout: Rollout = crate::testing::example("rollout-checkout.yaml");
        rollout.spec.approvals = vec![
            StageApproval { stage: "canary".into(), token: "old-canary".into() },
            StageApproval { stage: "production".into(), token: "old".into() },
        ];
        let patch = approvals_patch(&rollout, "production", "new");
        assert_eq!(
            patch,
            serde_json::json!({"spec": {"approvals": [
                {"stage": "canary", "token": "old-canary"},
                {"stage": "production", "token": "new"},
            ]}})
        );
    }

    fn kubeconfig_user(user: kube::config::AuthInfo) -> kube::Config {
        let mut config = kube::Config::new("https://apiserver.example:6443".parse().expect("uri"));
        config.root_cert = Some(vec![b"the apiserver's CA".to_vec()]);
        config.tls_server_name = Some("kubernetes".into());
        config.auth_info = user;
        config
    }

    fn berth_ca() -> Vec<u8> {
        crate::cli::dev::self_signed(&["127.0.0.1"]).expect("a certificate").cert_pem.into_bytes()
    }

    #[test]
    fn a_token_user_is_aimed_at_berth_trusting_only_berth_s_ca() {
        let user = kube::config::AuthInfo {
            token: Some("s3cret".to_owned().into()),
            client_certificate_data: Some("a cert".into()),
            ..Default::default()
        };
        let config =
            auth_api_config(&kubeconfig_user(user), "https://berth.example:8443", &berth_ca()).expect("usable");
        assert_eq!(config.cluster_url.to_string(), "https://berth.example:8443/");
        let roots = config.root_cert.expect("Berth's CA");
        assert_eq!(roots.len(), 1);
        assert_ne!(roots[0], b"the apiserver's CA".to_vec());
        assert_eq!(config.tls_server_name, None);
        assert!(config.auth_info.token.is_some(), "the token is what Berth checks");
        assert!(config.auth_info.client_certificate_data.is_none(), "no client certificate goes to Berth");
        assert!(!config.default_retry, "Berth's 429 and 503 reach the approver at once");
    }

    #[test]
    fn users_berth_cannot_check_are_told_what_to_use_instead() {
        let certificate = kube::config::AuthInfo {
            client_certificate_data: Some("a cert".into()),
            client_key_data: Some("a key".to_owned().into()),
            ..Default::default()
        };
        let refused = auth_api_config(&kubeconfig_user(certificate), "https://berth.example:8443", &berth_ca())
            .expect_err("a certificate user")
            .to_string();
        assert!(refused.contains("has no bearer token") && refused.contains("--token-file"), "{refused}");
        let impersonating = kube::config::AuthInfo {
            token: Some("s3cret".to_owned().into()),
            impersonate: Some("bob".into()),
            ..Default::default()
        };
        let refused = auth_api_config(&kubeconfig_user(impersonating), "https://berth.example:8443", &berth_ca())
            .expect_err("impersonation")
            .to_string();
        assert!(refused.contains("impersonates"), "{refused}");
        let password = kube::config::AuthInfo {
            token: Some("s3cret".to_owned().into()),
            username: Some("bob".into()),
            password: Some("hunter2".to_owned().into()),
            ..Default::default()
        };
        let refused = auth_api_config(&kubeconfig_user(password), "https://berth.example:8443", &berth_ca())
            .expect_err("a password user")
            .to_string();
        assert!(refused.contains("password") && !refused.contains("hunter2"), "{refused}");
        let token = kube::config::AuthInfo { token: Some("s3cret".to_owned().into()), ..Default::default() };
        let plain = auth_api_config(&kubeconfig_user(token.clone()), "http://berth.example:8443", &berth_ca());
        assert!(plain.is_err(), "only https");
        assert!(auth_api_config(&kubeconfig_user(token), "https://berth.example:8443", b"not a pem").is_err());
    }

    #[test]
    fn a_context_may_be_named_like_kubectl_s() {
        let request = parse(&["--context", "bob", "-n", "payments", "checkout-prod", "--ca-file", "ca.pem"]);
        assert_eq!(request.context.as_deref(), Some("bob"));
        assert!(request.token_file.is_none(), "the kubeconfig's user by default");
    }
}
