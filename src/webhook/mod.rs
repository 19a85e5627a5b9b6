//! The admission webhook and auth API, served over HTTPS.
//!
//! - [`admission`]: pure decisions (review + view of the cluster → response)
//! - [`server`] and [`approvals`]: the HTTP surface (admission and the auth API, on
//!   listeners of their own), sharing [`state::WebhookState`]
//! - [`tls`]: HTTPS with certificates reloaded when they change on disk
pub mod admission;
pub mod approvals;
pub mod approvers;
pub mod metrics;
pub mod rate_limit;
pub mod server;
pub mod settings;
pub mod state;
pub mod tls;

pub use admission::Kind;
pub use server::{admission_router, auth_router, parse_review};
pub use settings::WebhookArgs;
pub use state::WebhookState;
