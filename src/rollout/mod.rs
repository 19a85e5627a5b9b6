//! Rollouts, the Kubernetes-free core: [`plan`] (which environments, in which stage
//! and batch), [`gate`] (is an environment healthy at the promoted revision),
//! [`metric`] (what Prometheus says of it) and
//! [`machine`] (the next step of a rollout). The controller in
//! `controller::rollout` does the I/O around them.

pub mod gate;
pub mod machine;
pub mod metric;
pub mod plan;

/// `count` and `noun`, in the plural unless one: `1 environment`, `3 batches`.
pub fn counted(count: usize, noun: &str) -> String {
    match (count, noun) {
        (1, _) => format!("1 {noun}"),
        (_, "batch") => format!("{count} batches"),
        _ => format!("{count} {noun}s"),
    }
}

pub use machine::{Decision, Note, Observations, Work, next, record_commit};
pub use plan::{Plan, PlanError};
