//! Server groups (os-server-groups): the policy a group's members are placed under.

use serde::{Deserialize, Serialize};

/// A server group policy (2.15 adds the soft ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Policy {
    /// `affinity`: every member on one host (hard).
    Affinity,
    /// `anti-affinity`: members on distinct hosts, up to `max_server_per_host` (hard).
    AntiAffinity,
    /// `soft-affinity`: preferred on hosts with members (weigher).
    SoftAffinity,
    /// `soft-anti-affinity`: preferred on hosts without members (weigher).
    SoftAntiAffinity,
}

impl Policy {
    /// Nova's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Affinity => "affinity",
            Policy::AntiAffinity => "anti-affinity",
            Policy::SoftAffinity => "soft-affinity",
            Policy::SoftAntiAffinity => "soft-anti-affinity",
        }
    }

    /// The policy named `s`.
    pub fn parse(s: &str) -> Option<Policy> {
        [
            Policy::Affinity,
            Policy::AntiAffinity,
            Policy::SoftAffinity,
            Policy::SoftAntiAffinity,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// Whether the scheduler must refuse hosts that break it (not only prefer others).
    pub fn is_hard(self) -> bool {
        matches!(self, Policy::Affinity | Policy::AntiAffinity)
    }
}
