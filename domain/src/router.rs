//! Neutron's L3 records: routers on `stratus.api.router.<uuid>` and floating IPs on
//! `stratus.api.floatingip.<uuid>`.
//!
//! A router or floating IP does not hold addresses itself: its addresses are ports of
//! the network aggregates (the gateway port, the interface ports, the floating IP's
//! port), allocated there by the exact IPAM. These records hold which ports are
//! theirs, so a command here decides only what is the record's own: a router's
//! interfaces do not share or overlap a subnet, a router in use is not deleted.
//!
//! Invariants:
//! - Events carry the whole record (state-carrying): `evolve` only stores them.
//! - `decide` refuses (nothing appended) or returns the events; it reads no clock.
//! - A repeated command (a retried add of an interface already listed) decides to no
//!   events, so a retry after a crash completes instead of failing.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::network::tags::{self, TagOp};
use crate::network::{Cidr, HostRoute, NetError};
use crate::{FloatingIpId, NetworkId, PortId, RouterId, SubnetId, Timestamp};

/// `device_owner` of a router's interface ports.
pub const OWNER_INTERFACE: &str = "network:router_interface";
/// `device_owner` of a router's gateway port.
pub const OWNER_GATEWAY: &str = "network:router_gateway";
/// `device_owner` of a floating IP's port.
pub const OWNER_FLOATINGIP: &str = "network:floatingip";

/// A port id derived from two ids and a purpose: the same router and subnet (or
/// external network) always name the same port, so a retried two-step operation finds
/// the port its first attempt created (the network aggregate refuses a second create
/// of one port id with `PortExists`).
pub fn derived_port(a: Uuid, b: Uuid, purpose: u8) -> PortId {
    let x = a.as_u128().rotate_left(41) ^ b.as_u128() ^ (u128::from(purpose) << 64);
    // Keep the RFC 4122 version-4 / variant bits so the id looks like any other.
    let x = (x & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    PortId(Uuid::from_u128(x))
}

/// A router's external gateway: its port on an external network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    pub network_id: NetworkId,
    /// `enable_snat` (ext-gw-mode).
    pub enable_snat: bool,
    /// The gateway port (device_owner `network:router_gateway`): its fixed IPs are the
    /// router's `external_fixed_ips`.
    pub port_id: PortId,
}

/// One interface of a router: a port on an internal network and its subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub port_id: PortId,
    pub network_id: NetworkId,
    /// The subnets of the port's addresses when it was attached, with their CIDRs
    /// (a router's interfaces may not share or overlap one).
    pub subnets: Vec<(SubnetId, Cidr)>,
}

/// A router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {
    pub id: RouterId,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub admin_state_up: bool,
    pub gateway: Option<Gateway>,
    /// In the order they were added.
    pub interfaces: Vec<Interface>,
    /// Extra routes (`extraroute`): each nexthop on a subnet of the router's ports.
    pub routes: Vec<HostRoute>,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision: u64,
    pub deleted: bool,
}

impl Router {
    /// Whether `port` is one of the router's ports (gateway or interface).
    pub fn owns_port(&self, port: PortId) -> bool {
        self.gateway.as_ref().is_some_and(|g| g.port_id == port)
            || self.interfaces.iter().any(|i| i.port_id == port)
    }

    /// The interface holding `subnet`.
    pub fn interface_on(&self, subnet: SubnetId) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.subnets.iter().any(|(s, _)| *s == subnet))
    }
}

/// Changes to a router's own attributes (None: unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    /// The whole list of extra routes (validated against the ports by the API).
    pub routes: Option<Vec<HostRoute>>,
}

/// A command on a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterCommand {
    Create(Router),
    Update(RouterPatch),
    /// Sets or clears the gateway (its port already exists on the external network).
    SetGateway(Option<Gateway>),
    AddInterface(Interface),
    RemoveInterface {
        port_id: PortId,
    },
    Delete,
    /// A tag request (standard-attr-tag).
    SetTags(TagOp),
}

/// An event of a router (frozen variant order: new ones go at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouterEvent {
    Created { router: Router },
    Updated { router: Router },
    Deleted { at: Timestamp },
}

impl RouterEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            RouterEvent::Created { .. } => "router.created",
            RouterEvent::Updated { .. } => "router.updated",
            RouterEvent::Deleted { .. } => "router.deleted",
        }
    }
}

/// `RouterNotFound` (404).
pub fn router_not_found(id: impl std::fmt::Display) -> NetError {
    NetError {
        kind: "RouterNotFound",
        class: crate::network::Class::NotFound,
        message: format!("Router {id} could not be found"),
    }
}

/// `BadRequest` of a resource: "Bad {resource} request: {msg}."
pub fn bad_request(resource: &str, msg: impl std::fmt::Display) -> NetError {
    let msg = msg.to_string();
    let msg = msg.strip_suffix('.').unwrap_or(&msg);
    NetError::bad("BadRequest", format!("Bad {resource} request: {msg}."))
}

/// Whether a new interface's subnets clash with the router's: the same subnet
/// (Neutron's "Router already has a port on subnet") or an overlapping CIDR.
pub fn check_interface(r: &Router, new: &[(SubnetId, Cidr)]) -> Result<(), NetError> {
    for i in &r.interfaces {
        for (s, _) in &i.subnets {
            if new.iter().any(|(n, _)| n == s) {
                return Err(bad_request(
                    "router",
                    format!("Router already has a port on subnet {s}"),
                ));
            }
        }
    }
    for i in &r.interfaces {
        for (s, c) in &i.subnets {
            for (n, nc) in new {
                check_overlap((*s, *c), (*n, *nc))?;
            }
        }
    }
    Ok(())
}

/// Neutron's overlap refusal between an attached subnet and a new one.
pub fn check_overlap(old: (SubnetId, Cidr), new: (SubnetId, Cidr)) -> Result<(), NetError> {
    if old.1.overlaps(new.1) {
        return Err(bad_request(
            "router",
            format!(
                "Cidr {} of subnet {} overlaps with cidr {} of subnet {}",
                new.1, new.0, old.1, old.0
            ),
        ));
    }
    Ok(())
}

fn touch(r: &mut Router, now: Timestamp) {
    r.updated_at = now;
    r.revision += 1;
}

/// Decides a command on a router (`state` None: it does not exist).
pub fn decide(
    id: RouterId,
    state: Option<&Router>,
    cmd: RouterCommand,
    now: Timestamp,
) -> Result<Vec<RouterEvent>, NetError> {
    if let RouterCommand::Create(router) = cmd {
        if state.is_some() {
            return Err(NetError::conflict(
                "RouterExists",
                format!("Router {id} already exists."),
            ));
        }
        return Ok(vec![RouterEvent::Created { router }]);
    }
    let mut r = state
        .filter(|r| !r.deleted)
        .cloned()
        .ok_or_else(|| router_not_found(id))?;
    match cmd {
        RouterCommand::Create(_) => unreachable!("handled above"),
        RouterCommand::Update(p) => {
            if let Some(v) = p.name {
                r.name = v;
            }
            if let Some(v) = p.description {
                r.description = v;
            }
            if let Some(v) = p.admin_state_up {
                r.admin_state_up = v;
            }
            if let Some(mut v) = p.routes {
                v.dedup();
                r.routes = v;
            }
        }
        RouterCommand::SetGateway(g) => r.gateway = g,
        RouterCommand::AddInterface(i) => {
            if r.interfaces.contains(&i) {
                return Ok(vec![]);
            }
            if r.interfaces.iter().any(|x| x.port_id == i.port_id) {
                return Err(NetError::conflict(
                    "PortInUse",
                    format!(
                        "Unable to complete operation on port {} for network {}. \
                         Port already has an attached device {id}.",
                        i.port_id, i.network_id
                    ),
                ));
            }
            check_interface(&r, &i.subnets)?;
            r.interfaces.push(i);
        }
        RouterCommand::RemoveInterface { port_id } => {
            // Neutron's RouterInterfaceInUseByRoute: a route's nexthop needs it.
            if let Some(i) = r.interfaces.iter().find(|i| i.port_id == port_id) {
                for (s, c) in &i.subnets {
                    if r.routes.iter().any(|x| c.contains(x.nexthop)) {
                        return Err(NetError::conflict(
                            "RouterInterfaceInUseByRoute",
                            format!(
                                "Router interface for subnet {s} on router {id} cannot be \
                                 deleted, as it is required by one or more routes."
                            ),
                        ));
                    }
                }
            }
            let before = r.interfaces.len();
            r.interfaces.retain(|i| i.port_id != port_id);
            if r.interfaces.len() == before {
                return Err(NetError {
                    kind: "RouterInterfaceNotFound",
                    class: crate::network::Class::NotFound,
                    message: format!("Router {id} does not have an interface with id {port_id}"),
                });
            }
        }
        RouterCommand::Delete => {
            if !r.interfaces.is_empty() {
                let ports: Vec<String> =
                    r.interfaces.iter().map(|i| i.port_id.to_string()).collect();
                return Err(NetError::conflict(
                    "RouterInUse",
                    format!("Router {id} has ports still attached: {}", ports.join(", ")),
                ));
            }
            return Ok(vec![RouterEvent::Deleted { at: now }]);
        }
        RouterCommand::SetTags(op) => {
            let Some(t) = tags::apply(&r.tags, &op, "routers")? else {
                return Ok(vec![]);
            };
            r.tags = t;
        }
    }
    touch(&mut r, now);
    Ok(vec![RouterEvent::Updated { router: r }])
}

/// Folds one router event. Total: an event about nothing changes nothing.
pub fn evolve(state: Option<Router>, e: &RouterEvent) -> Option<Router> {
    match (state, e) {
        (_, RouterEvent::Created { router } | RouterEvent::Updated { router }) => {
            Some(router.clone())
        }
        (Some(mut r), RouterEvent::Deleted { at }) => {
            r.deleted = true;
            r.updated_at = *at;
            Some(r)
        }
        (None, RouterEvent::Deleted { .. }) => None,
    }
}

/// What a floating IP is associated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    pub port_id: PortId,
    pub fixed_ip_address: IpAddr,
    /// The router connecting the port's subnet to the floating IP's network.
    pub router_id: RouterId,
}

/// A floating IP: an address of an external network (held by its own port) and
/// what it forwards to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub id: FloatingIpId,
    pub project_id: String,
    pub description: String,
    pub floating_network_id: NetworkId,
    pub floating_ip_address: IpAddr,
    /// The port holding the address (device_owner `network:floatingip`).
    pub floating_port_id: PortId,
    pub association: Option<Association>,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision: u64,
    pub deleted: bool,
}

impl FloatingIp {
    /// Neutron's status: ACTIVE while associated, DOWN otherwise.
    pub fn status(&self) -> &'static str {
        if self.association.is_some() {
            "ACTIVE"
        } else {
            "DOWN"
        }
    }
}

/// A command on a floating IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloatingIpCommand {
    Create(FloatingIp),
    Update {
        description: Option<String>,
        /// None: unchanged; Some(None): disassociate.
        association: Option<Option<Association>>,
    },
    Delete,
    /// A tag request (standard-attr-tag).
    SetTags(TagOp),
}

/// An event of a floating IP (frozen variant order: new ones go at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FloatingIpEvent {
    Created { floating_ip: FloatingIp },
    Updated { floating_ip: FloatingIp },
    Deleted { at: Timestamp },
}

impl FloatingIpEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            FloatingIpEvent::Created { .. } => "floatingip.created",
            FloatingIpEvent::Updated { .. } => "floatingip.updated",
            FloatingIpEvent::Deleted { .. } => "floatingip.deleted",
        }
    }
}

/// `FloatingIPNotFound` (404).
pub fn floating_ip_not_found(id: impl std::fmt::Display) -> NetError {
    NetError {
        kind: "FloatingIPNotFound",
        class: crate::network::Class::NotFound,
        message: format!("Floating IP {id} could not be found"),
    }
}

/// Decides a command on a floating IP.
pub fn decide_floating_ip(
    id: FloatingIpId,
    state: Option<&FloatingIp>,
    cmd: FloatingIpCommand,
    now: Timestamp,
) -> Result<Vec<FloatingIpEvent>, NetError> {
    if let FloatingIpCommand::Create(floating_ip) = cmd {
        if state.is_some() {
            return Err(NetError::conflict(
                "FloatingIPExists",
                format!("Floating IP {id} already exists."),
            ));
        }
        return Ok(vec![FloatingIpEvent::Created { floating_ip }]);
    }
    let mut f = state
        .filter(|f| !f.deleted)
        .cloned()
        .ok_or_else(|| floating_ip_not_found(id))?;
    match cmd {
        FloatingIpCommand::Create(_) => unreachable!("handled above"),
        FloatingIpCommand::Update {
            description,
            association,
        } => {
            if let Some(d) = description {
                f.description = d;
            }
            if let Some(a) = association {
                f.association = a;
            }
            f.updated_at = now;
            f.revision += 1;
            Ok(vec![FloatingIpEvent::Updated { floating_ip: f }])
        }
        FloatingIpCommand::Delete => Ok(vec![FloatingIpEvent::Deleted { at: now }]),
        FloatingIpCommand::SetTags(op) => {
            let Some(t) = tags::apply(&f.tags, &op, "floatingips")? else {
                return Ok(vec![]);
            };
            f.tags = t;
            f.updated_at = now;
            f.revision += 1;
            Ok(vec![FloatingIpEvent::Updated { floating_ip: f }])
        }
    }
}

/// Folds one floating IP event.
pub fn evolve_floating_ip(state: Option<FloatingIp>, e: &FloatingIpEvent) -> Option<FloatingIp> {
    match (state, e) {
        (
            _,
            FloatingIpEvent::Created { floating_ip } | FloatingIpEvent::Updated { floating_ip },
        ) => Some(floating_ip.clone()),
        (Some(mut f), FloatingIpEvent::Deleted { at }) => {
            f.deleted = true;
            f.updated_at = *at;
            Some(f)
        }
        (None, FloatingIpEvent::Deleted { .. }) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Timestamp {
        Timestamp(1_700_000_000_000)
    }

    fn router() -> Router {
        Router {
            id: RouterId(Uuid::from_u128(1)),
            name: "r".into(),
            description: String::new(),
            project_id: "p1".into(),
            admin_state_up: true,
            gateway: None,
            interfaces: vec![],
            routes: vec![],
            tags: vec![],
            created_at: t(),
            updated_at: t(),
            revision: 0,
            deleted: false,
        }
    }

    fn iface(port: u128, subnet: u128, cidr: &str) -> Interface {
        Interface {
            port_id: PortId(Uuid::from_u128(port)),
            network_id: NetworkId(Uuid::from_u128(9)),
            subnets: vec![(
                SubnetId(Uuid::from_u128(subnet)),
                Cidr::parse(cidr).unwrap(),
            )],
        }
    }

    #[test]
    fn interfaces_do_not_share_or_overlap_a_subnet_and_keep_the_router_in_use() {
        let r = router();
        let id = r.id;
        let evs = decide(
            id,
            Some(&r),
            RouterCommand::AddInterface(iface(5, 6, "10.0.0.0/24")),
            t(),
        )
        .unwrap();
        let r = evs.iter().fold(Some(r), evolve).unwrap();
        // The same add again (a retry) is a no-op.
        assert!(decide(
            id,
            Some(&r),
            RouterCommand::AddInterface(iface(5, 6, "10.0.0.0/24")),
            t()
        )
        .unwrap()
        .is_empty());
        let e = decide(
            id,
            Some(&r),
            RouterCommand::AddInterface(iface(7, 6, "10.0.0.0/24")),
            t(),
        )
        .unwrap_err();
        assert!(e.message.contains("already has a port on subnet"), "{e}");
        let e = decide(
            id,
            Some(&r),
            RouterCommand::AddInterface(iface(7, 8, "10.0.0.128/25")),
            t(),
        )
        .unwrap_err();
        assert!(e.message.contains("overlaps with cidr 10.0.0.0/24"), "{e}");
        let e = decide(id, Some(&r), RouterCommand::Delete, t()).unwrap_err();
        assert_eq!(e.kind, "RouterInUse");
        let evs = decide(
            id,
            Some(&r),
            RouterCommand::RemoveInterface {
                port_id: PortId(Uuid::from_u128(5)),
            },
            t(),
        )
        .unwrap();
        let r = evs.iter().fold(Some(r), evolve).unwrap();
        assert_eq!(
            decide(id, Some(&r), RouterCommand::Delete, t())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn derived_ports_are_stable_and_distinct() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        assert_eq!(derived_port(a, b, 1), derived_port(a, b, 1));
        assert_ne!(derived_port(a, b, 1), derived_port(a, b, 2));
        assert_ne!(derived_port(a, b, 1), derived_port(b, a, 1));
        assert_eq!(derived_port(a, b, 1).0.get_version_num(), 4);
    }
}
