//! `berth rollout`: look at a Rollout and steer it. `status` formats what the
//! controller wrote ([`status`]); `pause`, `resume`, `abort` and `retry` are each one
//! merge patch a person could send with kubectl ([`change`]), printed with that
//! command. They talk to the cluster of the current kubeconfig context, as kubectl does.
//! `plan` works on files only ([`plan`]).

mod change;
mod plan;
mod status;

use clap::{Args, Subcommand};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};

pub use change::{Change, Control, Refusal, change};
pub use plan::{PlanArgs, dry_run};
pub use status::format_status;

use crate::api::Rollout;

/// Field manager of the CLI's patches (`kubectl get -o yaml --show-managed-fields`).
const FIELD_MANAGER: &str = "berth-cli";

/// Flags of `berth rollout`.
#[derive(Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    command: RolloutCommand,
}

/// `berth rollout`'s subcommands.
#[derive(Subcommand)]
enum RolloutCommand {
    /// Print where a rollout stands: phase and why, each stage's counts, the batch in
    /// flight (commit, healthy since, soak until, gate tallies), skipped environments,
    /// failures and the last batches committed.
    Status(Target),
    /// Finish the batch in flight and start nothing new (sets spec.paused).
    Pause(Target),
    /// Go on after `pause` (clears spec.paused).
    Resume(Target),
    /// Stop for good: nothing more is committed, environments stay where they are
    /// (sets spec.abort; cannot be undone, so it needs --yes).
    Abort(AbortArgs),
    /// Look again at a batch whose gate failed: its failures are forgotten and its
    /// environments get a new progress deadline (sets the berth.dev/retry annotation).
    Retry(Target),
    /// Print the plan a Rollout would freeze when it starts, from files: its stages,
    /// their batches in commit order, and the environments skipped and why.
    Plan(PlanArgs),
}

/// Which rollout, in which cluster.
#[derive(Args)]
struct Target {
    /// Name of the Rollout.
    name: String,
    /// Its namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Kubeconfig context to use (default: the current one).
    #[arg(long)]
    context: Option<String>,
}

/// Flags of `berth rollout abort`.
#[derive(Args)]
struct AbortArgs {
    #[command(flatten)]
    target: Target,
    /// Confirm: an aborted rollout stays aborted.
    #[arg(long)]
    yes: bool,
}

/// `berth rollout …`.
pub fn rollout(args: &RolloutArgs) -> Result<(), String> {
    if let RolloutCommand::Plan(args) = &args.command {
        return plan::plan_command(args); // Files only: no cluster, no runtime.
    }
    super::runtime()?.block_on(async {
        match &args.command {
            RolloutCommand::Status(target) => {
                let rollout = target.api().await?.get(&target.name).await.map_err(|e| target.cannot("read", &e))?;
                print!("{}", format_status(&rollout, Timestamp::now()));
                Ok(())
            }
            RolloutCommand::Pause(target) => steer(target, Control::Pause, false).await,
            RolloutCommand::Resume(target) => steer(target, Control::Resume, false).await,
            RolloutCommand::Abort(args) => steer(&args.target, Control::Abort, args.yes).await,
            RolloutCommand::Retry(target) => steer(target, Control::Retry, false).await,
            RolloutCommand::Plan(_) => Ok(()), // Answered above, without the cluster.
        }
    })
}

/// Reads the rollout, works out the change and sends it, then says what changed.
async fn steer(target: &Target, control: Control, yes: bool) -> Result<(), String> {
    let api = target.api().await?;
    let rollout = api.get(&target.name).await.map_err(|e| target.cannot("read", &e))?;
    match change(&rollout, control, yes, Timestamp::now()).map_err(|r| r.to_string())? {
        Change::Nothing { summary, hint } => {
            println!("{summary}; nothing changed");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
        }
        Change::Patch { patch, summary, kubectl, hint } => {
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
            api.patch(&target.name, &params, &Patch::Merge(&patch)).await.map_err(|e| target.cannot("patch", &e))?;
            println!("{summary}");
            println!("same as: {kubectl}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
        }
    }
    Ok(())
}

impl Target {
    /// The Rollouts of the target's namespace, through the kubeconfig (and context) kubectl would use.
    async fn api(&self) -> Result<Api<Rollout>, String> {
        let client = match &self.context {
            None => kube::Client::try_default().await.map_err(|e| format!("cannot reach the cluster: {e}"))?,
            Some(context) => {
                let options = KubeConfigOptions { context: Some(context.clone()), ..KubeConfigOptions::default() };
                let kubeconfig = Kubeconfig::read().map_err(|e| format!("cannot read the kubeconfig: {e}"))?;
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| format!("cannot use context {context}: {e}"))?;
                kube::Client::try_from(config).map_err(|e| format!("cannot reach the cluster: {e}"))?
            }
        };
        let namespace = self.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(Api::namespaced(client, &namespace))
    }

    fn cannot(&self, what: &str, error: &kube::Error) -> String {
        let namespace = self.namespace.as_deref().map(|n| format!(" in namespace {n}")).unwrap_or_default();
        match error {
            kube::Error::Api(status) if status.is_not_found() => {
                format!("no Rollout {}{namespace} (is -n right?)", self.name)
            }
            _ => format!("cannot {what} Rollout {}{namespace}: {error}", self.name),
        }
    }
}
