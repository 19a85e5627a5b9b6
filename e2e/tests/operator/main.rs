//! The operator end to end on a real control plane (tier 2): `berth run` against
//! the loopback apiserver, committing to a bare git repository.

mod drift;
mod lifecycle;
mod setup_failures;

pub use berth_e2e::suite::*;
