//! Pure policy rules shared by the controllers and the admission webhook:
//! one implementation, two callers.

pub mod approval;
pub mod budget;
pub mod class;
pub mod references;
pub mod request;
pub mod rollout;
pub mod stage_approval;
