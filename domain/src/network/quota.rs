//! Network quotas: a project's ledger on `stratus.api.network_quota.<project>` holding
//! its limit overrides and one holding per network resource it owns (network, subnet,
//! port, ...), so that counting against a limit is exact under any concurrency.
//!
//! Invariants:
//! - A resource is created only after its holding was appended ([`decide`] with
//!   [`NetQuotaCommand::Reserve`] refuses Neutron's `OverQuota` when the count of
//!   holdings of that kind has reached the limit); the append carries the ledger's
//!   expected sequence, so two racing reservations (any number of processes) never
//!   both take the last unit.
//! - A holding is given back when its resource is deleted (by the deleting request),
//!   when its create failed, or by the reconciler once a grace has passed without the
//!   resource existing (a process died between the two appends). So the holdings are at
//!   all times at least the live resources, and equal once the reconciler caught up.
//! - Reserving an id that is already held decides to nothing (a retried request).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NetError;
use crate::Timestamp;

/// A network quota resource, named as Neutron's quota API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NetResource {
    Network,
    Subnet,
    Port,
    Router,
    FloatingIp,
    SecurityGroup,
    SecurityGroupRule,
    SubnetPool,
    RbacPolicy,
}

impl NetResource {
    /// Every resource, in Neutron's order of the quota body.
    pub const ALL: [NetResource; 9] = [
        NetResource::Network,
        NetResource::Subnet,
        NetResource::Port,
        NetResource::Router,
        NetResource::FloatingIp,
        NetResource::SecurityGroup,
        NetResource::SecurityGroupRule,
        NetResource::SubnetPool,
        NetResource::RbacPolicy,
    ];

    /// Neutron's key.
    pub fn key(self) -> &'static str {
        match self {
            NetResource::Network => "network",
            NetResource::Subnet => "subnet",
            NetResource::Port => "port",
            NetResource::Router => "router",
            NetResource::FloatingIp => "floatingip",
            NetResource::SecurityGroup => "security_group",
            NetResource::SecurityGroupRule => "security_group_rule",
            NetResource::SubnetPool => "subnetpool",
            NetResource::RbacPolicy => "rbac_policy",
        }
    }

    /// The resource named by Neutron's key.
    pub fn from_key(key: &str) -> Option<NetResource> {
        NetResource::ALL.into_iter().find(|r| r.key() == key)
    }

    /// Neutron's default limit (`[quotas] quota_*`; -1: unlimited).
    pub fn default_limit(self) -> i64 {
        match self {
            NetResource::Network | NetResource::Subnet => 100,
            NetResource::Port => 500,
            NetResource::Router => 10,
            NetResource::FloatingIp => 50,
            NetResource::SecurityGroup => 10,
            NetResource::SecurityGroupRule => 100,
            NetResource::SubnetPool => -1,
            NetResource::RbacPolicy => 10,
        }
    }
}

/// One resource counted against the project's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub resource: NetResource,
    /// When it was reserved (the reconciler's grace counts from here).
    pub at: Timestamp,
}

/// A project's network quota ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetLedger {
    /// Limit overrides (absent: the default).
    pub limits: BTreeMap<NetResource, i64>,
    /// What the project holds, by resource id.
    pub holdings: BTreeMap<Uuid, Holding>,
}

impl NetLedger {
    /// The effective limit of `r`.
    pub fn limit(&self, r: NetResource) -> i64 {
        self.limits
            .get(&r)
            .copied()
            .unwrap_or_else(|| r.default_limit())
    }

    /// How many `r` the project holds.
    pub fn held(&self, r: NetResource) -> i64 {
        self.holdings.values().filter(|h| h.resource == r).count() as i64
    }
}

/// A command on a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetQuotaCommand {
    /// Count resource `id` of kind `resource` (refused over the limit).
    Reserve { resource: NetResource, id: Uuid },
    /// Give back what `ids` held (unknown ids are ignored).
    Release { ids: Vec<Uuid> },
    /// Set limit overrides; unless `force`, a limit below what is held is refused.
    SetLimits {
        limits: BTreeMap<NetResource, i64>,
        force: bool,
    },
    /// Back to the defaults.
    Reset,
}

/// An event of a ledger (frozen variant order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetQuotaEvent {
    Reserved {
        resource: NetResource,
        id: Uuid,
        at: Timestamp,
    },
    Released {
        id: Uuid,
        at: Timestamp,
    },
    LimitsSet {
        limits: BTreeMap<NetResource, i64>,
        at: Timestamp,
    },
    LimitsReset {
        at: Timestamp,
    },
}

impl NetQuotaEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            NetQuotaEvent::Reserved { .. } => "network_quota.reserved",
            NetQuotaEvent::Released { .. } => "network_quota.released",
            NetQuotaEvent::LimitsSet { .. } => "network_quota.limits_set",
            NetQuotaEvent::LimitsReset { .. } => "network_quota.limits_reset",
        }
    }
}

/// Neutron's `OverQuota` (409).
pub fn over_quota(r: NetResource) -> NetError {
    NetError::conflict(
        "OverQuota",
        format!("Quota exceeded for resources: ['{}'].", r.key()),
    )
}

/// Decides a command on a ledger (`None`: the project has none yet).
pub fn decide(
    state: Option<&NetLedger>,
    cmd: NetQuotaCommand,
    now: Timestamp,
) -> Result<Vec<NetQuotaEvent>, NetError> {
    let empty = NetLedger::default();
    let l = state.unwrap_or(&empty);
    match cmd {
        NetQuotaCommand::Reserve { resource, id } => {
            if l.holdings.contains_key(&id) {
                return Ok(vec![]);
            }
            let limit = l.limit(resource);
            if limit >= 0 && l.held(resource) >= limit {
                return Err(over_quota(resource));
            }
            Ok(vec![NetQuotaEvent::Reserved {
                resource,
                id,
                at: now,
            }])
        }
        NetQuotaCommand::Release { ids } => Ok(ids
            .into_iter()
            .filter(|id| l.holdings.contains_key(id))
            .map(|id| NetQuotaEvent::Released { id, at: now })
            .collect()),
        NetQuotaCommand::SetLimits { limits, force } => {
            for (r, v) in &limits {
                if *v < -1 {
                    return Err(NetError::invalid(format!(
                        "'{v}' should be greater than or equal to -1 for {}",
                        r.key()
                    )));
                }
                let used = l.held(*r);
                if !force && *v >= 0 && used > *v {
                    return Err(NetError::bad(
                        "HTTPBadRequest",
                        format!(
                            "Quota limit {v} for {} must be greater than or equal to already used {used}",
                            r.key()
                        ),
                    ));
                }
            }
            Ok(vec![NetQuotaEvent::LimitsSet { limits, at: now }])
        }
        NetQuotaCommand::Reset => Ok(if l.limits.is_empty() {
            vec![]
        } else {
            vec![NetQuotaEvent::LimitsReset { at: now }]
        }),
    }
}

/// Folds one event (total).
pub fn evolve(state: Option<NetLedger>, e: &NetQuotaEvent) -> NetLedger {
    let mut l = state.unwrap_or_default();
    match e {
        NetQuotaEvent::Reserved { resource, id, at } => {
            l.holdings.insert(
                *id,
                Holding {
                    resource: *resource,
                    at: *at,
                },
            );
        }
        NetQuotaEvent::Released { id, .. } => {
            l.holdings.remove(id);
        }
        NetQuotaEvent::LimitsSet { limits, .. } => l.limits.extend(limits.clone()),
        NetQuotaEvent::LimitsReset { .. } => l.limits.clear(),
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(l: Option<NetLedger>, cmd: NetQuotaCommand) -> Result<NetLedger, NetError> {
        let evs = decide(l.as_ref(), cmd, Timestamp(1))?;
        Ok(evs
            .iter()
            .fold(l.unwrap_or_default(), |s, e| evolve(Some(s), e)))
    }

    #[test]
    fn reservations_stop_at_the_limit_and_releases_make_room() {
        let mut l = run(
            None,
            NetQuotaCommand::SetLimits {
                limits: BTreeMap::from([(NetResource::Network, 2)]),
                force: false,
            },
        )
        .unwrap();
        for i in 0..2 {
            l = run(
                Some(l),
                NetQuotaCommand::Reserve {
                    resource: NetResource::Network,
                    id: Uuid::from_u128(i),
                },
            )
            .unwrap();
        }
        let e = run(
            Some(l.clone()),
            NetQuotaCommand::Reserve {
                resource: NetResource::Network,
                id: Uuid::from_u128(9),
            },
        )
        .unwrap_err();
        assert_eq!(e.kind, "OverQuota");
        assert_eq!(e.message, "Quota exceeded for resources: ['network'].");
        // Other kinds are counted apart; a retried reservation is a no-op.
        let l = run(
            Some(l),
            NetQuotaCommand::Reserve {
                resource: NetResource::Port,
                id: Uuid::from_u128(5),
            },
        )
        .unwrap();
        assert!(decide(
            Some(&l),
            NetQuotaCommand::Reserve {
                resource: NetResource::Network,
                id: Uuid::from_u128(1)
            },
            Timestamp(2)
        )
        .unwrap()
        .is_empty());
        // A limit below what is held needs force.
        let low = NetQuotaCommand::SetLimits {
            limits: BTreeMap::from([(NetResource::Network, 1)]),
            force: false,
        };
        assert!(decide(Some(&l), low, Timestamp(2)).is_err());
        let l = run(
            Some(l),
            NetQuotaCommand::Release {
                ids: vec![Uuid::from_u128(0)],
            },
        )
        .unwrap();
        assert_eq!(l.held(NetResource::Network), 1);
        let l = run(Some(l), NetQuotaCommand::Reset).unwrap();
        assert_eq!(l.limit(NetResource::Network), 100);
    }
}
