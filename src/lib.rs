//! Berth: self-service environments on Kubernetes, committed to GitOps.
pub mod api;
pub mod approval;
pub mod argocd;
pub mod auth;
pub mod cli;
pub mod controller;
pub mod drift;
pub mod freeze;
pub mod gitops;
pub mod index;
pub mod operator;
pub mod pem;
pub mod policy;
pub mod promql;
pub mod reload;
pub mod render;
pub mod rollout;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod webhook;
