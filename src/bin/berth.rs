//! The `berth` command: the operator and the tools around it.

use std::{path::PathBuf, process::ExitCode};

use berth::{
    cli::{self, Inputs},
    operator::RunArgs,
    render::RenderOptions,
    telemetry::{TracingConfig, init_tracing},
};
use clap::{Args, Parser, Subcommand};

/// jemalloc rather than glibc's malloc: the operator allocates from many threads
/// while watch events stream in, and glibc's per-thread arenas kept what bursts
/// freed (see the operator benchmark's peak RSS).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "berth", version, about = "Self-service environments on Kubernetes, committed to GitOps")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: the controllers, the GitOps writer and /metrics /healthz /readyz.
    Run(Box<RunArgs>),
    /// Write Berth's CustomResourceDefinitions as YAML files (one per kind).
    Crdgen {
        /// Folder to write into; prints all of them to stdout when absent.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print (or write) exactly what Berth would commit for the EnvironmentRequests
    /// in the given files, rendered with the classes and tenants found beside them.
    Render {
        #[command(flatten)]
        inputs: InputArgs,
        /// Write the files under this folder (in the GitOps layout) instead of printing them.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Show how what Berth would commit differs from a GitOps checkout; exits 1
    /// when they differ, 0 when the checkout already matches.
    Diff {
        #[command(flatten)]
        inputs: InputArgs,
        /// A checkout of the GitOps repository.
        #[arg(long, value_name = "DIR")]
        gitops: PathBuf,
    },
    /// Get an approval for an EnvironmentRequest from Berth's auth API (you must be an
    /// approver of its class, and not its creator). Prints the token, or the request
    /// with the token filled in (`-o yaml`), ready for `kubectl apply -f -`.
    Approve(Box<ApproveArgs>),
    /// Mint a bearer token for the auth API from the local-development HS256 secret.
    Token(TokenArgs),
    /// Print the Validating- and MutatingWebhookConfiguration that register Berth's webhook.
    WebhookConfig(WebhookConfigArgs),
    /// Write a CA, serving certificate, approval signing key and auth secret for a local
    /// Berth (development only).
    DevCredentials {
        /// Folder to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Host names or IPs the webhook is reached at.
        #[arg(long = "host", default_value = "127.0.0.1")]
        hosts: Vec<String>,
    },
}

#[derive(Args)]
struct ApproveArgs {
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

#[derive(Args)]
struct TokenArgs {
    /// File holding the HS256 secret Berth runs with (`--auth-hs256-secret-file`).
    #[arg(long, env = "BERTH_AUTH_HS256_SECRET_FILE")]
    secret_file: PathBuf,
    /// Who the token speaks for: the same name the cluster knows you by.
    #[arg(long)]
    subject: String,
    /// Groups, e.g. `platform-approvers`.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Roles: viewer, requester, approver, admin.
    #[arg(long = "role")]
    roles: Vec<berth::auth::Role>,
    /// Audience Berth expects (`--auth-audience`).
    #[arg(long, default_value = "berth")]
    audience: String,
    /// How long the token is valid, e.g. `1h`.
    #[arg(long, default_value = "1h")]
    lifetime: berth::api::GoDuration,
}

#[derive(Args)]
struct WebhookConfigArgs {
    /// URL the apiserver calls (a webhook outside the cluster), e.g. https://127.0.0.1:8443.
    #[arg(long, conflicts_with = "service", required_unless_present = "service")]
    url: Option<String>,
    /// A Service in the cluster, as namespace/name:port.
    #[arg(long)]
    service: Option<String>,
    /// CA certificate (PEM) that signed the webhook's serving certificate.
    #[arg(long)]
    ca_file: PathBuf,
    /// Seconds the apiserver waits for a decision.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
    timeout_seconds: i32,
}

#[derive(Args)]
struct InputArgs {
    /// YAML files or folders holding EnvironmentClasses, Tenants and EnvironmentRequests.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    files: Vec<PathBuf>,
    /// Namespace Argo CD watches for Applications.
    #[arg(long, default_value = "argocd")]
    argocd_namespace: String,
}

impl InputArgs {
    fn tree(&self) -> Result<std::collections::BTreeMap<String, String>, String> {
        let inputs = Inputs::read(&self.files).map_err(|e| e.to_string())?;
        let options = RenderOptions { argocd_namespace: self.argocd_namespace.clone() };
        cli::rendered_tree(&inputs, &options).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => run(*args).map(|()| ExitCode::SUCCESS),
        Command::Crdgen { out } => crdgen(out).map(|()| ExitCode::SUCCESS),
        Command::Render { inputs, out } => render(&inputs, out).map(|()| ExitCode::SUCCESS),
        Command::Diff { inputs, gitops } => diff(&inputs, &gitops),
        Command::Approve(args) => approve(*args).map(|()| ExitCode::SUCCESS),
        Command::Token(args) => token(args).map(|()| ExitCode::SUCCESS),
        Command::WebhookConfig(args) => webhook_config(args).map(|()| ExitCode::SUCCESS),
        Command::DevCredentials { out, hosts } => {
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            cli::dev::write_dev_credentials(&out, &hosts).map(|files| {
                eprintln!(
                    "wrote {}, {}, {}, {} and {}",
                    files.ca.display(),
                    files.cert.display(),
                    files.key.display(),
                    files.approval_signing_key.display(),
                    files.auth_secret.display()
                );
                ExitCode::SUCCESS
            })
        }
    };
    result.unwrap_or_else(|message| {
        eprintln!("berth: {message}");
        ExitCode::from(2)
    })
}

fn run(args: RunArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let config = TracingConfig::from_env().map_err(|e| e.to_string())?;
        let _guard = init_tracing(config).map_err(|e| e.to_string())?;
        berth::operator::run(args).await.map_err(|e| e.to_string())
    })
}

fn crdgen(out: Option<PathBuf>) -> Result<(), String> {
    let files = berth::api::crd_files().map_err(|e| format!("cannot serialize the CRDs: {e}"))?;
    match out {
        None => {
            let documents: Vec<&str> = files.iter().map(|(_, yaml)| yaml.as_str()).collect();
            print!("{}", documents.join("---\n"));
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for (name, yaml) in files {
                let path = dir.join(name);
                std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

fn render(inputs: &InputArgs, out: Option<PathBuf>) -> Result<(), String> {
    let tree = inputs.tree()?;
    match out {
        None => print!("{}", cli::print_tree(&tree)),
        Some(dir) => {
            cli::write_tree(&tree, &dir).map_err(|e| e.to_string())?;
            eprintln!("wrote {} files under {}", tree.len(), dir.display());
        }
    }
    Ok(())
}

fn diff(inputs: &InputArgs, gitops: &std::path::Path) -> Result<ExitCode, String> {
    let tree = inputs.tree()?;
    let diff = cli::diff_tree(&tree, gitops).map_err(|e| e.to_string())?;
    if diff.is_empty() {
        eprintln!("{} matches what Berth would commit", gitops.display());
        return Ok(ExitCode::SUCCESS);
    }
    print!("{diff}");
    Ok(ExitCode::from(1))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn approve(args: ApproveArgs) -> Result<(), String> {
    use berth::api::EnvironmentRequest;
    use kube::ResourceExt;

    let bearer = String::from_utf8(read(&args.token_file)?)
        .map_err(|_| format!("{} does not hold a text token", args.token_file.display()))?;
    let server = cli::approve::Server {
        url: args.server.clone(),
        ca_pem: read(&args.ca_file)?,
        bearer: bearer.trim().to_owned(),
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
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
        let granted = cli::approve::request_approval(&server, &request).await.map_err(|e| e.to_string())?;
        eprintln!(
            "approved {}/{} as {} (spec {})",
            request.namespace().unwrap_or_default(),
            request.name_any(),
            granted.approver,
            granted.digest
        );
        if args.output == "yaml" {
            let approved = cli::approve::with_approval(&request, &granted.token);
            print!("{}", serde_yaml::to_string(&approved).map_err(|e| e.to_string())?);
        } else {
            println!("{}", granted.token);
        }
        Ok(())
    })
}

fn token(args: TokenArgs) -> Result<(), String> {
    let secret = read(&args.secret_file)?;
    let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
    let lifetime = args.lifetime.parse().map_err(|e| e.to_string())?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let token = berth::auth::dev_token(secret, &args.subject, &args.groups, &args.roles, &args.audience, lifetime, now)
        .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

fn webhook_config(args: WebhookConfigArgs) -> Result<(), String> {
    use berth::webhook::configuration::{Endpoint, Registration, to_yaml};
    let endpoint = match (args.url, args.service) {
        (Some(url), _) => Endpoint::Url(url),
        (None, Some(service)) => {
            let parse = || -> Option<Endpoint> {
                let (namespace, rest) = service.split_once('/')?;
                let (name, port) = rest.split_once(':').unwrap_or((rest, "443"));
                Some(Endpoint::Service {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    port: port.parse().ok()?,
                })
            };
            parse().ok_or_else(|| format!("--service {service:?} is not namespace/name[:port]"))?
        }
        (None, None) => return Err("give --url or --service".to_owned()),
    };
    let registration =
        Registration { endpoint, ca_bundle: read(&args.ca_file)?, timeout_seconds: args.timeout_seconds };
    print!("{}", to_yaml(&registration).map_err(|e| e.to_string())?);
    Ok(())
}
