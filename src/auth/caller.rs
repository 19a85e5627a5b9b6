//! The authenticated caller.

use serde::Serialize;

use super::{Role, kubernetes::KubernetesUser};

/// Who sent a request, as their verified token (or the apiserver) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The user or service account, never empty: the TokenReview's username, or the
    /// JWT's username claim (`sub` by default) with its configured prefix.
    pub subject: String,
    /// The TokenReview's groups, or the JWT's groups claim with its prefix (empty
    /// when absent).
    pub groups: Vec<String>,
    /// The roles from the token's `roles` claim that Berth knows, in token order
    /// without repeats. Unknown role names are dropped.
    pub roles: Vec<Role>,
    /// Set when the apiserver authenticated the caller (a TokenReview): then RBAC, not
    /// `roles`, says what they may do. `None` for a JWT of the auth API's own keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesUser>,
}

impl Caller {
    /// Whether any role the caller holds includes `role` (an admin has approver).
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|held| held.includes(role))
    }
}
