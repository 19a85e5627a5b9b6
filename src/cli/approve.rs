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
    /// Berth's auth API.
    #[arg(long, env = "BERTH_URL", default_value = "https://127.0.0.1:8443", global = true)]
    server: String,
    /// CA certificate (PEM) that signed Berth's serving certificate.
    #[arg(long, env = "BERTH_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// File holding your bearer token for the auth API.
    #[arg(long, env = "BERTH_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// `token` prints the token; `yaml` prints the request with it in spec.approval.
    #[arg(short = 'o', long, default_value = "token", value_parser = ["token", "yaml"])]
    output: String,
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
    let token_file = args.token_file.as_ref().ok_or("give --token-file (or BERTH_TOKEN_FILE): your bearer token")?;
    let ca_file = args.ca_file.as_ref().ok_or("give --ca-file (or BERTH_CA_FILE): the CA of Berth's certificate")?;
    let bearer = String::from_utf8(read_file(token_file)?)
        .map_err(|_| format!("{} does not hold a text token", token_file.display()))?;
    let server = Server { url: args.server.clone(), ca_pem: read_file(ca_file)?, bearer: bearer.trim().to_owned() };
    if let Some(ApproveWhat::Rollout(rollout)) = &args.what {
        return super::runtime()?.block_on(approve_rollout(&server, rollout, args.namespace.as_deref()));
    }
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
    #[error("the request or rollout has no namespace; set metadata.namespace or pass --namespace")]
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

/// `berth approve rollout`: reads the rollout from the cluster, asks for the stage's
/// approval and prints (or applies) the patch that adds it.
async fn approve_rollout(server: &Server, args: &ApproveRolloutArgs, namespace: Option<&str>) -> Result<(), String> {
    let client = kube::Client::try_default().await.map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let namespace = namespace.map_or_else(|| client.default_namespace().to_owned(), str::to_owned);
    let api = kube::Api::<Rollout>::namespaced(client, &namespace);
    let rollout =
        api.get(&args.name).await.map_err(|e| format!("cannot read Rollout {namespace}/{}: {e}", args.name))?;
    let granted =
        stage_approval(server, &rollout, &args.stage, args.override_freeze).await.map_err(|e| e.to_string())?;
    eprintln!(
        "approved stage {} of rollout {namespace}/{} as {}{} (spec {})",
        args.stage,
        args.name,
        granted.approver,
        if args.override_freeze { ", with a freeze override" } else { "" },
        granted.digest
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

/// Asks for an approval of `request` as it is now.
pub async fn request_approval(server: &Server, request: &EnvironmentRequest) -> Result<ApprovalGranted, ApproveError> {
    let namespace = request.namespace().ok_or(ApproveError::NoNamespace)?;
    let mut spec = request.spec.clone();
    spec.approval = None;
    let body = serde_json::to_vec(&ApprovalRequest { namespace, name: request.name_any(), spec })?;
    post_approval(server, body).await
}

async fn post_approval(server: &Server, body: Vec<u8>) -> Result<ApprovalGranted, ApproveError> {
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
}
