//! Berth's kinds by their plural resource names, for the paths and rules that name them.

/// Berth's five kinds, by their resource (plural) name: the webhook's paths
/// (`/validate/environmentrequests`) and the rules that register it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    EnvironmentRequest,
    Tenant,
    EnvironmentClass,
    Rollout,
    Freeze,
}

impl Kind {
    /// From the plural resource name, as in `/validate/environmentrequests`.
    pub fn from_plural(plural: &str) -> Option<Kind> {
        match plural {
            "environmentrequests" => Some(Kind::EnvironmentRequest),
            "tenants" => Some(Kind::Tenant),
            "environmentclasses" => Some(Kind::EnvironmentClass),
            "rollouts" => Some(Kind::Rollout),
            "freezes" => Some(Kind::Freeze),
            _ => None,
        }
    }

    /// The plural resource name.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::EnvironmentRequest => "environmentrequests",
            Kind::Tenant => "tenants",
            Kind::EnvironmentClass => "environmentclasses",
            Kind::Rollout => "rollouts",
            Kind::Freeze => "freezes",
        }
    }
}
