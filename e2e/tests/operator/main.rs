//! The operator end to end on a real control plane (tier 2): `berth run` against
//! the loopback apiserver, committing to a bare git repository.

#[path = "common.rs"]
mod common;
mod drift;
mod lifecycle;
mod setup_failures;

pub use common::*;
