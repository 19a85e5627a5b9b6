//! Berth: self-service environments on Kubernetes, committed to GitOps.
pub mod api;
pub mod cli;
pub mod gitops;
pub mod labels;
pub mod render;
