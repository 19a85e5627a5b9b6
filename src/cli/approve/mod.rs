//! `berth approve`: ask Berth's auth API for an approval of one request, from a file
//! or from the cluster, and hand back the token (or the request with it filled in);
//! `berth approve rollout NAME --stage S`: the same for one stage of a Rollout, handed
//! back as the `kubectl patch` that adds it to `spec.approvals` (or applied).

mod auth_api;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kube::ResourceExt;

use super::{Inputs, read_file};
pub use auth_api::{ApproveError, Credentials, Server, auth_api_config, request_approval, stage_approval};

use crate::{
    api::{EnvironmentRequest, Rollout, environment_request::Approval, rollout::StageApproval},
    approval::wire::ApprovalGranted,
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

/// How to revoke what was just granted, for the approver's terminal.
fn revoke_hint(granted: &ApprovalGranted) -> String {
    granted.token_id.as_ref().map(|id| format!("; token id {id} (revoke it by this id)")).unwrap_or_default()
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
