//! Berth's test kit, shared by the unit tests, `tests/`, the benches, the fuzz harness
//! and the e2e suites (in the `testing` feature, which only dev-dependencies turn on):
//! the objects in `examples/`, AdmissionReviews as the apiserver sends them, approval
//! keys, and a client that keeps pushing to a GitOps remote. One copy of each, so a
//! change of format is made once.

#[cfg(test)]
pub mod apiserver;
mod busy_pusher;
pub mod cpu;
mod examples;
mod keys;
mod review;
pub mod rollout;

pub use busy_pusher::BusyPusher;
pub use examples::{class, example, example_text, examples_dir, payments, provisioned, request};
pub use keys::{APPROVER_GROUP, AUDIENCE, ApprovalKeys, ISSUER, approval_keys};
pub use review::Review;
