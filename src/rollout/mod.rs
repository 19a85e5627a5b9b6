//! Rollouts, the Kubernetes-free core: [`plan`] (which environments, in which stage
//! and batch), [`gate`] (is an environment healthy at the promoted revision) and
//! [`machine`] (the next step of a rollout). The controller in
//! `controller::rollout` does the I/O around them.

pub mod gate;
pub mod machine;
pub mod plan;

pub use machine::{Decision, Note, Observations, Work, next, record_commit};
pub use plan::{Plan, PlanError};
