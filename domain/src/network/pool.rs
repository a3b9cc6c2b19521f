//! Subnet pools (Neutron's `subnet_allocation`) on `stratus.api.subnetpool.<uuid>`: a
//! pool's prefixes and the prefixes it gave to subnets, so that two subnets never get
//! overlapping prefixes from one pool.
//!
//! Invariants:
//! - A prefix is given to a subnet only by [`decide`] on the pool's own state, appended
//!   with the subject's expected sequence: of two racing allocations (any number of
//!   processes) the second is decided again on the first's result, so allocations of
//!   one pool never overlap.
//! - The subnet is created after its prefix was allocated; its delete (or a failed
//!   create) releases the prefix, and the network reconciler releases allocations whose
//!   subnet never appeared once a grace has passed (a process died between the two).
//! - Prefixes are only ever added to a pool, never removed (Neutron's rule), so an
//!   allocation always lies within the pool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::addr::{version, Cidr};
use super::NetError;
use crate::{SubnetId, SubnetPoolId, Timestamp};

/// A pool's own attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub id: SubnetPoolId,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub prefixes: Vec<Cidr>,
    pub default_prefixlen: u8,
    pub min_prefixlen: u8,
    pub max_prefixlen: u8,
    pub shared: bool,
    pub is_default: bool,
    pub default_quota: Option<i64>,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision: u64,
}

impl PoolSpec {
    /// 4 or 6 (every prefix has the same version).
    pub fn ip_version(&self) -> u8 {
        self.prefixes.first().map_or(4, |c| c.version())
    }
}

/// A pool with what it gave out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetPool {
    pub spec: PoolSpec,
    /// Prefix of each subnet allocated from the pool, with when.
    pub allocations: BTreeMap<SubnetId, (Cidr, Timestamp)>,
    pub deleted: bool,
}

/// What prefix a subnet asks a pool for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixRequest {
    /// This CIDR (must lie in the pool and be free).
    Specific(Cidr),
    /// The lowest free prefix of this length.
    Any(u8),
}

/// Changes to a pool (None: unchanged). Prefixes are added, never removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub prefixes: Option<Vec<Cidr>>,
    pub default_prefixlen: Option<u8>,
    pub min_prefixlen: Option<u8>,
    pub max_prefixlen: Option<u8>,
    pub is_default: Option<bool>,
    pub default_quota: Option<Option<i64>>,
}

/// A command on a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolCommand {
    Create(Box<PoolSpec>),
    Update(Box<PoolPatch>),
    Delete,
    Allocate {
        subnet: SubnetId,
        request: PrefixRequest,
    },
    Release {
        subnet: SubnetId,
    },
    /// A tag request (standard-attr-tag).
    SetTags(super::tags::TagOp),
}

/// An event of a pool (frozen variant order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolEvent {
    Created {
        pool: PoolSpec,
    },
    Updated {
        pool: PoolSpec,
    },
    Deleted {
        at: Timestamp,
    },
    PrefixAllocated {
        subnet: SubnetId,
        cidr: Cidr,
        at: Timestamp,
    },
    PrefixReleased {
        subnet: SubnetId,
        at: Timestamp,
    },
}

impl PoolEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            PoolEvent::Created { .. } => "subnetpool.created",
            PoolEvent::Updated { .. } => "subnetpool.updated",
            PoolEvent::Deleted { .. } => "subnetpool.deleted",
            PoolEvent::PrefixAllocated { .. } => "subnetpool.prefix_allocated",
            PoolEvent::PrefixReleased { .. } => "subnetpool.prefix_released",
        }
    }
}

fn not_found(id: SubnetPoolId) -> NetError {
    NetError::not_found("SubnetPoolNotFound", "Subnet pool", id)
}

/// Checks a pool's prefixes and bounds (Neutron's messages).
pub fn check_spec(s: &PoolSpec) -> Result<(), NetError> {
    if s.prefixes.is_empty() {
        return Err(NetError::bad(
            "EmptySubnetPoolPrefixList",
            "Empty subnet pool prefix list.",
        ));
    }
    let v = s.prefixes[0].version();
    if s.prefixes.iter().any(|c| c.version() != v) {
        return Err(NetError::bad(
            "PrefixVersionMismatch",
            "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
        ));
    }
    let max = if v == 4 { 32 } else { 128 };
    let bounds = |kind: &str, len: u8, base_kind: &str, base: u8| {
        NetError::bad(
            "IllegalSubnetPoolPrefixBounds",
            format!("Illegal prefix bounds: {kind}={len}, {base_kind}={base}."),
        )
    };
    if s.min_prefixlen > max || s.max_prefixlen > max || s.default_prefixlen > max {
        return Err(bounds("max_prefixlen", s.max_prefixlen, "max", max));
    }
    if s.min_prefixlen > s.max_prefixlen {
        return Err(bounds(
            "min_prefixlen",
            s.min_prefixlen,
            "max_prefixlen",
            s.max_prefixlen,
        ));
    }
    if s.default_prefixlen < s.min_prefixlen || s.default_prefixlen > s.max_prefixlen {
        return Err(bounds(
            "default_prefixlen",
            s.default_prefixlen,
            "min_prefixlen",
            s.min_prefixlen,
        ));
    }
    Ok(())
}

/// Merges overlapping prefixes (a prefix inside another is dropped), sorted.
pub fn compact(mut prefixes: Vec<Cidr>) -> Vec<Cidr> {
    prefixes.sort_by_key(|c| (c.prefix, c.ip));
    let mut out: Vec<Cidr> = vec![];
    for c in prefixes {
        if !out.iter().any(|o| o.contains(c.ip) && o.prefix <= c.prefix) {
            out.push(c);
        }
    }
    out.sort();
    out
}

fn num(ip: std::net::IpAddr) -> u128 {
    match ip {
        std::net::IpAddr::V4(a) => u32::from(a) as u128,
        std::net::IpAddr::V6(a) => u128::from(a),
    }
}

fn at(v: u8, n: u128) -> std::net::IpAddr {
    if v == 4 {
        std::net::IpAddr::V4(std::net::Ipv4Addr::from(n as u32))
    } else {
        std::net::IpAddr::V6(std::net::Ipv6Addr::from(n))
    }
}

/// The lowest free prefix of length `len` in the pool (allocations never overlap it).
pub fn first_free(pool: &SubnetPool, len: u8) -> Option<Cidr> {
    let v = pool.spec.ip_version();
    let bits: u32 = if v == 4 { 32 } else { 128 };
    let step: u128 = if bits - len as u32 >= 128 {
        return None;
    } else {
        1u128 << (bits - len as u32)
    };
    let mut taken: Vec<Cidr> = pool.allocations.values().map(|(c, _)| *c).collect();
    taken.sort();
    for p in &pool.spec.prefixes {
        if p.prefix > len {
            continue;
        }
        let (lo, hi) = (num(p.first()), num(p.last()));
        let mut cand = lo;
        while cand <= hi && cand.checked_add(step - 1).is_some_and(|e| e <= hi) {
            let c = Cidr {
                ip: at(v, cand),
                prefix: len,
            };
            match taken.iter().find(|t| t.overlaps(c)) {
                None => return Some(c),
                Some(t) => {
                    // Jump past the allocation, aligned to the step.
                    let next = num(t.last()).checked_add(1)?;
                    cand = next.div_ceil(step).checked_mul(step)?;
                }
            }
        }
    }
    None
}

/// Decides a command on a pool (`state` None: it does not exist).
pub fn decide(
    id: SubnetPoolId,
    state: Option<&SubnetPool>,
    cmd: PoolCommand,
    now: Timestamp,
) -> Result<Vec<PoolEvent>, NetError> {
    if let PoolCommand::Create(spec) = cmd {
        if state.is_some() {
            return Err(NetError::conflict(
                "SubnetPoolExists",
                format!("Subnet pool {id} already exists."),
            ));
        }
        let mut spec = *spec;
        spec.prefixes = compact(spec.prefixes);
        check_spec(&spec)?;
        return Ok(vec![PoolEvent::Created { pool: spec }]);
    }
    let pool = state.filter(|p| !p.deleted).ok_or_else(|| not_found(id))?;
    match cmd {
        PoolCommand::Create(_) => unreachable!("handled above"),
        PoolCommand::Update(p) => {
            let mut s = pool.spec.clone();
            if let Some(mut prefixes) = p.prefixes {
                // Neutron: prefixes can be added, never removed.
                for old in &s.prefixes {
                    if !prefixes
                        .iter()
                        .any(|n| n.contains(old.ip) && n.prefix <= old.prefix)
                    {
                        return Err(NetError::bad(
                            "IllegalSubnetPoolPrefixUpdate",
                            format!(
                                "Illegal update to prefixes: Existing prefix {old} is not a subset of the new prefixes."
                            ),
                        ));
                    }
                }
                prefixes.retain(|c| version(c.ip) == s.ip_version());
                s.prefixes = compact(prefixes);
            }
            if let Some(v) = p.name {
                s.name = v;
            }
            if let Some(v) = p.description {
                s.description = v;
            }
            if let Some(v) = p.default_prefixlen {
                s.default_prefixlen = v;
            }
            if let Some(v) = p.min_prefixlen {
                s.min_prefixlen = v;
            }
            if let Some(v) = p.max_prefixlen {
                s.max_prefixlen = v;
            }
            if let Some(v) = p.is_default {
                s.is_default = v;
            }
            if let Some(v) = p.default_quota {
                s.default_quota = v;
            }
            check_spec(&s)?;
            s.updated_at = now;
            s.revision += 1;
            Ok(vec![PoolEvent::Updated { pool: s }])
        }
        PoolCommand::SetTags(op) => {
            let mut s = pool.spec.clone();
            let Some(t) = super::tags::apply(&s.tags, &op, "subnetpools")? else {
                return Ok(vec![]);
            };
            s.tags = t;
            s.updated_at = now;
            s.revision += 1;
            Ok(vec![PoolEvent::Updated { pool: s }])
        }
        PoolCommand::Delete => {
            if !pool.allocations.is_empty() {
                return Err(NetError::conflict(
                    "SubnetPoolInUse",
                    format!(
                        "Unable to complete operation on subnet pool {id}. \
                         Subnets are still allocated from this pool."
                    ),
                ));
            }
            Ok(vec![PoolEvent::Deleted { at: now }])
        }
        PoolCommand::Allocate { subnet, request } => {
            if pool.allocations.contains_key(&subnet) {
                return Ok(vec![]);
            }
            let s = &pool.spec;
            let cidr = match request {
                PrefixRequest::Specific(c) => {
                    if c.version() != s.ip_version()
                        || !s
                            .prefixes
                            .iter()
                            .any(|p| p.contains(c.ip) && p.prefix <= c.prefix)
                    {
                        return Err(NetError::bad(
                            "SubnetAllocationError",
                            format!(
                                "Failed to allocate subnet: Cidr {c} is not within any prefix of subnet pool {id}."
                            ),
                        ));
                    }
                    if c.prefix < s.min_prefixlen || c.prefix > s.max_prefixlen {
                        return Err(NetError::bad(
                            "IllegalSubnetPoolPrefixBounds",
                            format!(
                                "Illegal prefix bounds: prefixlen={}, min_prefixlen={}.",
                                c.prefix, s.min_prefixlen
                            ),
                        ));
                    }
                    if pool.allocations.values().any(|(a, _)| a.overlaps(c)) {
                        return Err(NetError::conflict(
                            "SubnetAllocationError",
                            format!(
                                "Failed to allocate subnet: Cidr {c} overlaps a subnet allocated from subnet pool {id}."
                            ),
                        ));
                    }
                    c
                }
                PrefixRequest::Any(len) => {
                    if len < s.min_prefixlen || len > s.max_prefixlen {
                        return Err(NetError::bad(
                            "IllegalSubnetPoolPrefixBounds",
                            format!(
                                "Illegal prefix bounds: prefixlen={len}, min_prefixlen={}.",
                                s.min_prefixlen
                            ),
                        ));
                    }
                    first_free(pool, len).ok_or_else(|| {
                        NetError::conflict(
                            "SubnetAllocationError",
                            format!(
                                "Failed to allocate subnet: Insufficient prefix space to allocate subnet size /{len}."
                            ),
                        )
                    })?
                }
            };
            Ok(vec![PoolEvent::PrefixAllocated {
                subnet,
                cidr,
                at: now,
            }])
        }
        PoolCommand::Release { subnet } => Ok(if pool.allocations.contains_key(&subnet) {
            vec![PoolEvent::PrefixReleased { subnet, at: now }]
        } else {
            vec![]
        }),
    }
}

/// Folds one event (total).
pub fn evolve(state: Option<SubnetPool>, e: &PoolEvent) -> Option<SubnetPool> {
    match (state, e) {
        (None, PoolEvent::Created { pool }) => Some(SubnetPool {
            spec: pool.clone(),
            allocations: BTreeMap::new(),
            deleted: false,
        }),
        (None, _) => None,
        (Some(mut p), e) => {
            match e {
                PoolEvent::Created { .. } => {}
                PoolEvent::Updated { pool } => p.spec = pool.clone(),
                PoolEvent::Deleted { .. } => p.deleted = true,
                PoolEvent::PrefixAllocated { subnet, cidr, at } => {
                    p.allocations.insert(*subnet, (*cidr, *at));
                }
                PoolEvent::PrefixReleased { subnet, .. } => {
                    p.allocations.remove(subnet);
                }
            }
            Some(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn spec() -> PoolSpec {
        PoolSpec {
            id: SubnetPoolId(Uuid::from_u128(1)),
            name: "p".into(),
            description: String::new(),
            project_id: "p1".into(),
            prefixes: vec![Cidr::parse("10.10.0.0/16").unwrap()],
            default_prefixlen: 24,
            min_prefixlen: 16,
            max_prefixlen: 28,
            shared: false,
            is_default: false,
            default_quota: None,
            tags: vec![],
            created_at: Timestamp(1),
            updated_at: Timestamp(1),
            revision: 0,
        }
    }

    fn run(s: Option<SubnetPool>, cmd: PoolCommand) -> Result<SubnetPool, NetError> {
        let evs = decide(spec().id, s.as_ref(), cmd, Timestamp(2))?;
        Ok(evs.iter().fold(s, evolve).unwrap())
    }

    #[test]
    fn prefixes_are_given_once_lowest_first() {
        let mut p = run(None, PoolCommand::Create(Box::new(spec()))).unwrap();
        let sid = |n| SubnetId(Uuid::from_u128(n));
        p = run(
            Some(p),
            PoolCommand::Allocate {
                subnet: sid(1),
                request: PrefixRequest::Any(24),
            },
        )
        .unwrap();
        assert_eq!(
            p.allocations[&sid(1)].0,
            Cidr::parse("10.10.0.0/24").unwrap()
        );
        p = run(
            Some(p),
            PoolCommand::Allocate {
                subnet: sid(2),
                request: PrefixRequest::Specific(Cidr::parse("10.10.2.0/23").unwrap()),
            },
        )
        .unwrap();
        p = run(
            Some(p),
            PoolCommand::Allocate {
                subnet: sid(3),
                request: PrefixRequest::Any(23),
            },
        )
        .unwrap();
        assert_eq!(
            p.allocations[&sid(3)].0,
            Cidr::parse("10.10.4.0/23").unwrap()
        );
        p = run(
            Some(p),
            PoolCommand::Allocate {
                subnet: sid(4),
                request: PrefixRequest::Any(24),
            },
        )
        .unwrap();
        assert_eq!(
            p.allocations[&sid(4)].0,
            Cidr::parse("10.10.1.0/24").unwrap()
        );
        let e = run(
            Some(p.clone()),
            PoolCommand::Allocate {
                subnet: sid(5),
                request: PrefixRequest::Specific(Cidr::parse("10.10.0.128/25").unwrap()),
            },
        )
        .unwrap_err();
        assert_eq!(e.kind, "SubnetAllocationError");
        let e = run(
            Some(p.clone()),
            PoolCommand::Allocate {
                subnet: sid(5),
                request: PrefixRequest::Any(8),
            },
        )
        .unwrap_err();
        assert_eq!(e.kind, "IllegalSubnetPoolPrefixBounds");
        assert_eq!(
            run(Some(p.clone()), PoolCommand::Delete).unwrap_err().kind,
            "SubnetPoolInUse"
        );
        // A whole /16 of /17s: two, then no room.
        let mut q = run(None, PoolCommand::Create(Box::new(spec()))).unwrap();
        for i in 10..12 {
            q = run(
                Some(q),
                PoolCommand::Allocate {
                    subnet: sid(i),
                    request: PrefixRequest::Any(17),
                },
            )
            .unwrap();
        }
        let e = run(
            Some(q),
            PoolCommand::Allocate {
                subnet: sid(20),
                request: PrefixRequest::Any(17),
            },
        )
        .unwrap_err();
        assert!(e.message.contains("Insufficient prefix space"), "{e}");
    }

    #[test]
    fn prefixes_only_grow_and_bounds_hold() {
        let p = run(None, PoolCommand::Create(Box::new(spec()))).unwrap();
        let shrink = PoolPatch {
            prefixes: Some(vec![Cidr::parse("10.10.0.0/17").unwrap()]),
            ..Default::default()
        };
        assert_eq!(
            run(Some(p.clone()), PoolCommand::Update(Box::new(shrink)))
                .unwrap_err()
                .kind,
            "IllegalSubnetPoolPrefixUpdate"
        );
        let grow = PoolPatch {
            prefixes: Some(vec![
                Cidr::parse("10.10.0.0/16").unwrap(),
                Cidr::parse("10.20.0.0/16").unwrap(),
            ]),
            ..Default::default()
        };
        let p = run(Some(p), PoolCommand::Update(Box::new(grow))).unwrap();
        assert_eq!(p.spec.prefixes.len(), 2);
        let mut bad = spec();
        bad.default_prefixlen = 30;
        assert_eq!(
            run(None, PoolCommand::Create(Box::new(bad)))
                .unwrap_err()
                .kind,
            "IllegalSubnetPoolPrefixBounds"
        );
    }
}
