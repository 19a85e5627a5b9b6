//! Berth: self-service environments on Kubernetes, committed to GitOps.
pub mod api;
