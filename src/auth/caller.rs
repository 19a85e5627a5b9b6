//! The authenticated caller.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Role;

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

/// What Kubernetes knows about a caller beyond the name and groups every caller has:
/// what a SubjectAccessReview must carry to be judged as the apiserver judges them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KubernetesUser {
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Caller {
    /// Whether any role the caller holds includes `role` (an admin has approver).
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|held| held.includes(role))
    }
}
