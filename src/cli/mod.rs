//! The `berth` command: its subcommands and their flags, one file per group. The
//! binary (`src/bin/berth.rs`) only parses and dispatches; each command's body is here.
//!
//! - [`run`]: `berth run`, the operator (its flags are [`crate::operator::RunArgs`])
//! - [`crdgen`]: `berth crdgen`
//! - [`render`]: `berth render` and `berth diff`, over objects read by [`Inputs`]
//! - [`approve`]: `berth approve`, a client of the auth API (over [`https`])
//! - [`rollout`]: `berth rollout status|pause|resume|abort|retry`, a client of the apiserver,
//!   and `berth rollout plan` over files
//! - [`token`]: `berth token`
//! - [`webhook_config`]: `berth webhook-config`
//! - [`dev`]: `berth dev-credentials`

pub mod approve;
pub mod crdgen;
pub mod dev;
pub mod https;
mod inputs;
pub mod render;
pub mod rollout;
pub mod run;
pub mod token;
pub mod webhook_config;

use std::path::Path;

use clap::{Parser, Subcommand};

pub use inputs::{InputError, Inputs};
pub use render::{CliError, diff_tree, print_tree, rendered_tree, write_tree};

use crate::operator::RunArgs;

/// The `berth` command line.
#[derive(Parser)]
#[command(name = "berth", version, about = "Self-service environments on Kubernetes, committed to GitOps")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Berth's subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the operator: the controllers, the GitOps writer and /metrics /healthz /readyz.
    Run(Box<RunArgs>),
    /// Write Berth's CustomResourceDefinitions as YAML files (one per kind).
    Crdgen(crdgen::CrdgenArgs),
    /// Print (or write) exactly what Berth would commit for the EnvironmentRequests
    /// in the given files, rendered with the classes and tenants found beside them.
    Render(render::RenderArgs),
    /// Show how what Berth would commit differs from a GitOps checkout; exits 1
    /// when they differ, 0 when the checkout already matches.
    Diff(render::DiffArgs),
    /// Get an approval for an EnvironmentRequest from Berth's auth API (you must be an
    /// approver of its class, and not its creator). Prints the token, or the request
    /// with the token filled in (`-o yaml`), ready for `kubectl apply -f -`.
    Approve(Box<approve::ApproveArgs>),
    /// Look at a Rollout (`status`) and steer it (`pause`, `resume`, `abort`, `retry`):
    /// each change is one patch, printed with the kubectl command that does the same.
    /// `plan` shows what a Rollout in a file would do, before it is applied.
    Rollout(rollout::RolloutArgs),
    /// Mint a bearer token for the auth API from the local-development HS256 secret.
    Token(token::TokenArgs),
    /// Print the Validating- and MutatingWebhookConfiguration that register Berth's webhook.
    WebhookConfig(webhook_config::WebhookConfigArgs),
    /// Write a CA, serving certificate, approval signing key and auth secret for a local
    /// Berth (development only).
    DevCredentials(dev::DevCredentialsArgs),
}

/// Reads a file a flag names; the error names the file.
fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A runtime for a command that talks to the network.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))
}
