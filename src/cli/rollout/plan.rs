//! `berth rollout plan`: the plan a Rollout would freeze when it starts, from files,
//! before it is applied — stages, batches in commit order, and what is skipped and
//! why. The planner is the controller's ([`crate::rollout::plan::plan`]).

use std::{fmt::Write, path::PathBuf};

use clap::Args;
use kube::ResourceExt;

use super::super::Inputs;
use crate::{
    api::{
        EnvironmentRequest, Rollout,
        environment_request::{EnvironmentRequestStatus, GitOpsStatus, Phase},
    },
    rollout::plan::{self, Plan},
};

/// Flags of `berth rollout plan`.
#[derive(Args)]
pub struct PlanArgs {
    /// A file holding the Rollout.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// YAML files or folders holding the EnvironmentRequests (e.g. from
    /// `kubectl get envreq -n NAMESPACE -o yaml`); other objects are ignored.
    #[arg(long, value_name = "PATH", required = true)]
    requests: Vec<PathBuf>,
}

/// `berth rollout plan`: prints the plan.
pub fn plan_command(args: &PlanArgs) -> Result<(), String> {
    let rollouts = Inputs::read(std::slice::from_ref(&args.file)).map_err(|e| e.to_string())?.rollouts;
    let rollout = match <[Rollout; 1]>::try_from(rollouts) {
        Ok([rollout]) => rollout,
        Err(found) => return Err(format!("{} holds {} Rollouts; give one", args.file.display(), found.len())),
    };
    let requests = Inputs::read(&args.requests).map_err(|e| e.to_string())?.requests;
    print!("{}", dry_run(&rollout, requests)?);
    Ok(())
}

/// The plan of `rollout` over `requests` (those of its namespace count), as text.
pub fn dry_run(rollout: &Rollout, requests: Vec<EnvironmentRequest>) -> Result<String, String> {
    let namespace = rollout.namespace();
    let mut assumed = 0;
    let requests: Vec<EnvironmentRequest> = requests
        .into_iter()
        .filter(|r| r.namespace().is_none() || namespace.is_none() || r.namespace() == namespace)
        .map(|mut r| {
            // A file written by hand has no status; take it as running, as it will be
            // once applied and committed. `kubectl get -o yaml` keeps the real one.
            if r.status.is_none() {
                assumed += 1;
                r.status = Some(EnvironmentRequestStatus {
                    phase: Some(Phase::Ready),
                    gitops: Some(GitOpsStatus { commit: Some(String::new()), ..GitOpsStatus::default() }),
                    ..EnvironmentRequestStatus::default()
                });
            }
            r
        })
        .collect();
    // Classes are not among the inputs: environments of a class that needs an approval,
    // which the controller skips, are planned here as any other.
    let plan = plan::plan(&rollout.spec, &requests).map_err(|e| format!("the rollout cannot start: {e}"))?;
    Ok(format_plan(rollout, &plan, assumed))
}

/// The plan as text; `assumed` requests had no status and were taken as running.
fn format_plan(rollout: &Rollout, plan: &Plan, assumed: usize) -> String {
    let mut out = String::new();
    let name = format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any());
    let environments = plan.environments();
    let _ = writeln!(
        out,
        "Rollout {name}: {} to {}, {environments} environment(s) in {} stage(s), {} skipped",
        rollout.spec.app,
        rollout.spec.revision,
        plan.stages.len(),
        plan.skipped.len()
    );
    if assumed > 0 {
        let _ = writeln!(out, "({assumed} request(s) without a status were taken as running)");
    }
    for stage in &plan.stages {
        let batches = plan::batches(stage);
        let _ = writeln!(
            out,
            "\nStage {}: {} environment(s) in {batches} batch(es) of {}, {} failure(s) allowed",
            stage.name,
            stage.environments.len(),
            stage.batch_size,
            stage.max_failures
        );
        for number in 1..=batches {
            let _ = writeln!(out, "  batch {number}: {}", plan::batch(stage, number).join(", "));
        }
    }
    if !plan.skipped.is_empty() {
        let _ = writeln!(out, "\nSkipped:");
        let width = plan.skipped.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, reason) in &plan.skipped {
            let _ = writeln!(out, "  {name:width$}  {}", reason.as_str());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::examples_dir;

    fn examples() -> (Rollout, Vec<EnvironmentRequest>) {
        let dir = examples_dir();
        let inputs = Inputs::read(&[dir]).expect("the examples read");
        let [rollout] = <[Rollout; 1]>::try_from(inputs.rollouts).expect("one rollout in examples/");
        (rollout, inputs.requests)
    }

    #[test]
    fn the_examples_plan_staging_then_production_and_skip_the_preview() {
        let (rollout, requests) = examples();
        let text = dry_run(&rollout, requests).expect("a plan");
        assert_eq!(
            text,
            "\
Rollout payments/checkout-v1-9-0: checkout to v1.9.0, 2 environment(s) in 2 stage(s), 1 skipped
(3 request(s) without a status were taken as running)

Stage staging: 1 environment(s) in 1 batch(es) of 1, 0 failure(s) allowed
  batch 1: checkout-staging

Stage production: 1 environment(s) in 1 batch(es) of 1, 0 failure(s) allowed
  batch 1: checkout-prod

Skipped:
  checkout-pr-1234  NoStage
"
        );
    }

    #[test]
    fn a_status_from_the_cluster_is_kept_and_other_namespaces_do_not_count() {
        let (rollout, mut requests) = examples();
        let awaiting = requests[1].name_any();
        // Awaiting approval, as `kubectl get -o yaml` would show it.
        requests[1].status = Some(EnvironmentRequestStatus {
            phase: Some(Phase::AwaitingApproval),
            ..EnvironmentRequestStatus::default()
        });
        let mut elsewhere = requests[2].clone();
        elsewhere.metadata.namespace = Some("search".into());
        elsewhere.metadata.name = Some("search-prod".into());
        requests.push(elsewhere);
        let text = dry_run(&rollout, requests).expect("a plan");
        assert!(text.contains("(2 request(s) without a status"), "{text}");
        let skipped = |line: &str| line.trim_start().starts_with(&awaiting) && line.ends_with(" NotProvisioned");
        assert!(text.lines().any(skipped), "{text}");
        assert!(!text.contains("search-prod"), "{text}");
    }

    #[test]
    fn a_rollout_that_would_select_nothing_says_why() {
        let (rollout, _) = examples();
        let error = dry_run(&rollout, Vec::new()).expect_err("nothing to plan");
        assert_eq!(error, "the rollout cannot start: the selector matches no environment that deploys app checkout");
    }
}
