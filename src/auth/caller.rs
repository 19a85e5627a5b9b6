//! The authenticated caller.

use serde::Serialize;

use super::Role;

/// Who sent a request, as their verified token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The token's `sub` claim: the user or service account, never empty.
    pub subject: String,
    /// The token's `groups` claim, as sent (empty when absent).
    pub groups: Vec<String>,
    /// The roles from the token's `roles` claim that Berth knows, in token order
    /// without repeats. Unknown role names are dropped.
    pub roles: Vec<Role>,
}

impl Caller {
    /// Whether any role the caller holds includes `role` (an admin has approver).
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|held| held.includes(role))
    }
}
