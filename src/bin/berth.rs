//! The `berth` command: the operator and the tools around it.

use std::{path::PathBuf, process::ExitCode};

use berth::{
    cli::{self, Inputs},
    operator::RunArgs,
    render::RenderOptions,
    telemetry::{TracingConfig, init_tracing},
};
use clap::{Args, Parser, Subcommand};

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
