//! Typed ids and validated names. An invalid value cannot be constructed.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Parses a uuid string (hyphenated or simple).
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Id of a server (instance).
    InstanceId
);
uuid_id!(
    /// Id of a migration (resize, cold or live migration).
    MigrationId
);
uuid_id!(
    /// Id of a placement claim (one per scheduling decision).
    ClaimId
);
uuid_id!(
    /// Id of an image (Glance v2 subset).
    ImageId
);

uuid_id!(
    /// Id of a server group (os-server-groups).
    ServerGroupId
);

uuid_id!(
    /// Id of a webhook subscription to the notifications (`/v1/subscriptions`).
    SubscriptionId
);

uuid_id!(
    /// Id of a network (Neutron).
    NetworkId
);
uuid_id!(
    /// Id of a subnet (Neutron).
    SubnetId
);
uuid_id!(
    /// Id of a port (Neutron).
    PortId
);
uuid_id!(
    /// Id of a security group (Neutron).
    SecurityGroupId
);
uuid_id!(
    /// Id of a security group rule (Neutron).
    SecurityGroupRuleId
);
uuid_id!(
    /// Id of a router (Neutron).
    RouterId
);
uuid_id!(
    /// Id of a floating IP (Neutron).
    FloatingIpId
);
uuid_id!(
    /// Id of a subnet pool (Neutron).
    SubnetPoolId
);

macro_rules! name_id {
    ($(#[$m:meta])* $name:ident, $max:expr, $check:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps.
            pub fn new(s: impl Into<String>) -> Result<Self, crate::DomainError> {
                let s: String = s.into();
                let check: fn(&str) -> bool = $check;
                if s.is_empty() || s.len() > $max || !check(&s) {
                    return Err(crate::DomainError::BadRequest(format!(
                        "Invalid {} {:?}",
                        stringify!($name),
                        s
                    )));
                }
                Ok(Self(s))
            }

            /// The value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn printable(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

name_id!(
    /// Flavor id: any printable string up to 255 chars (Nova allows names like `m1.tiny` or `1`).
    FlavorId,
    255,
    |s| printable(s) && s.trim() == s
);
name_id!(
    /// Compute host name: letters, digits, `-`, `_`, `.`, up to 255 chars.
    HostName,
    255,
    |s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
);
name_id!(
    /// Cell name: `[a-z0-9_-]`, up to 64 chars (it becomes a stream name).
    CellName,
    64,
    |s| s != "api"
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
);
name_id!(
    /// Project (tenant) id.
    ProjectId,
    255,
    printable
);
name_id!(
    /// User id.
    UserId,
    255,
    printable
);

impl CellName {
    /// `cell0`: instances that were never scheduled.
    pub fn cell0() -> Self {
        CellName("cell0".into())
    }
    /// `cell1`: the default cell for hosts.
    pub fn cell1() -> Self {
        CellName("cell1".into())
    }
}
