//! Roles of Berth's auth API, as a platform team hands them out.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a caller may do. Each role includes the ones below it:
/// `admin` ⊇ `approver` ⊇ `requester` ⊇ `viewer`.
///
/// Serialized in lowercase (`"approver"`), as tokens carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Looks at environment requests and their status.
    Viewer,
    /// Also asks for environments.
    Requester,
    /// Also approves environment requests.
    Approver,
    /// Runs the platform: everything an approver may do.
    Admin,
}

impl Role {
    /// Every role, from least to most.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Requester, Role::Approver, Role::Admin];

    /// The name used in tokens and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Requester => "requester",
            Self::Approver => "approver",
            Self::Admin => "admin",
        }
    }

    /// Whether holding `self` grants `other` (`Admin.includes(Approver)` is true,
    /// `Requester.includes(Approver)` is false). Every role includes itself.
    pub fn includes(self, other: Role) -> bool {
        self >= other
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of `viewer`, `requester`, `approver`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {name:?}; expected viewer, requester, approver or admin")]
pub struct ParseRoleError {
    /// The name that was given.
    pub name: String,
}

impl FromStr for Role {
    type Err = ParseRoleError;

    /// Reads a role name, ignoring ASCII case (`Approver` is `approver`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseRoleError { name: s.to_owned() })
    }
}
