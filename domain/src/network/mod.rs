//! The network aggregate (Neutron's networks, subnets and ports) on
//! `stratus.api.network.<uuid>`: one subject holds a network, its subnets and every
//! port on it, so the network's address book (which port holds which address of which
//! subnet, and which MAC) is decided in one place.
//!
//! Invariants:
//! - An address of a subnet is held by at most one port, and a MAC by at most one port
//!   of the network: [`decide`] allocates from the state it is given and the engine
//!   appends with the subject's expected sequence, so of two racing allocations (any
//!   number of processes) the second is decided again on the state the first left.
//!   [`Network::check`] states the invariant; the fold of the log can verify it at
//!   every event.
//! - A subnet's CIDR does not overlap another subnet's of the same network (Neutron's
//!   default `allow_overlapping_ips`: overlap is refused within a network only).
//! - A subnet with an address held cannot be deleted, nor can a network with ports
//!   other than those Neutron deletes with it (a router's or floating IP's ports keep
//!   it: [`Port::keeps_network`], Neutron's `NetworkInUse`).
//! - Events carry the whole record they create or change (state-carrying): `evolve`
//!   only stores them, so a rebuild reproduces the read model exactly.
//! - `decide` refuses (and nothing is appended) or returns the events; it never reads
//!   a clock or draws random numbers: times, ids and MAC candidates are inputs.

pub mod addr;
pub mod error;
pub mod pool;
pub mod quota;
pub mod server;
pub mod tags;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{NetworkId, PortId, SubnetId, Timestamp};
pub use addr::{Cidr, Pool};
pub use error::{Class, NetError};

/// Neutron's default MTU for a network (no tunnel overhead in the record).
pub const DEFAULT_MTU: u32 = 1500;
/// Neutron's `max_dns_nameservers`.
pub const MAX_DNS_NAMESERVERS: usize = 5;
/// Neutron's `max_subnet_host_routes`.
pub const MAX_HOST_ROUTES: usize = 20;
/// Neutron's prefix of generated MAC addresses (`base_mac = fa:16:3e:00:00:00`).
pub const MAC_PREFIX: &str = "fa:16:3e";

/// A network's own attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub id: NetworkId,
    pub name: String,
    pub description: String,
    /// The owning project.
    pub project_id: String,
    pub admin_state_up: bool,
    /// Usable by every project (`shared`).
    pub shared: bool,
    /// `router:external`: floating IPs and router gateways come from it.
    pub external: bool,
    pub mtu: u32,
    pub port_security_enabled: bool,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Neutron's `revision_number`: bumped by every change of the record.
    pub revision: u64,
}

/// A static route a subnet hands to its ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: Cidr,
    pub nexthop: IpAddr,
}

/// A subnet of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: SubnetId,
    pub network_id: NetworkId,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub cidr: Cidr,
    pub gateway_ip: Option<IpAddr>,
    pub allocation_pools: Vec<Pool>,
    pub enable_dhcp: bool,
    pub dns_nameservers: Vec<String>,
    pub host_routes: Vec<HostRoute>,
    pub ipv6_ra_mode: Option<String>,
    pub ipv6_address_mode: Option<String>,
    pub subnetpool_id: Option<Uuid>,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision: u64,
}

impl Subnet {
    /// 4 or 6.
    pub fn ip_version(&self) -> u8 {
        self.cidr.version()
    }

    /// Whether ports get their address from the MAC (SLAAC or DHCPv6-stateless): such
    /// addresses are never chosen from the pools.
    pub fn auto_address(&self) -> bool {
        matches!(
            self.ipv6_address_mode.as_deref(),
            Some("slaac" | "dhcpv6-stateless")
        )
    }
}

/// One address of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FixedIp {
    pub subnet_id: SubnetId,
    pub ip_address: IpAddr,
}

/// An allowed address pair of a port (port security lets this traffic through too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    pub ip_address: String,
    pub mac_address: String,
}

/// A port of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub id: PortId,
    pub network_id: NetworkId,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub mac_address: String,
    pub fixed_ips: Vec<FixedIp>,
    pub device_id: String,
    pub device_owner: String,
    pub admin_state_up: bool,
    pub security_groups: Vec<Uuid>,
    pub port_security_enabled: bool,
    pub allowed_address_pairs: Vec<AddressPair>,
    /// `binding:host_id`: the compute host the port is bound to ("" when unbound).
    pub binding_host: String,
    /// `binding:vnic_type`.
    pub binding_vnic_type: String,
    /// `binding:profile` (a JSON object, kept as its text).
    pub binding_profile: String,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision: u64,
}

impl Port {
    /// Neutron's port status: ACTIVE once bound to a host (the host's agent wires it),
    /// or for the ports of network services (router interfaces and gateways, DHCP);
    /// DOWN otherwise. Floating IP ports are `N/A` as in Neutron.
    pub fn status(&self) -> &'static str {
        if self.device_owner == "network:floatingip" {
            "N/A"
        } else if !self.binding_host.is_empty() || self.device_owner.starts_with("network:") {
            "ACTIVE"
        } else {
            "DOWN"
        }
    }

    /// `binding:vif_type`: `ovs` once bound, else `unbound`.
    pub fn vif_type(&self) -> &'static str {
        if self.binding_host.is_empty() {
            "unbound"
        } else {
            "ovs"
        }
    }

    /// Whether a user created it for a server or themselves (not a network service's
    /// own port): these keep a network in use.
    pub fn is_users(&self) -> bool {
        !self.device_owner.starts_with("network:")
    }

    /// Whether it keeps its network from being deleted: every port but those Neutron
    /// deletes with the network (`AUTO_DELETE_PORT_OWNERS`: DHCP, distributed and
    /// agent gateway ports). A router's interface or gateway and a floating IP's port
    /// keep it, so a network is never deleted under a router or floating IP that
    /// names one of its ports.
    pub fn keeps_network(&self) -> bool {
        !matches!(
            self.device_owner.as_str(),
            "network:dhcp" | "network:distributed" | "network:floatingip_agent_gateway"
        )
    }
}

/// A network with its subnets and ports (the aggregate's state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub spec: NetworkSpec,
    pub subnets: BTreeMap<SubnetId, Subnet>,
    pub ports: BTreeMap<PortId, Port>,
    /// The address book, derived from the ports by `evolve`: who holds each address.
    pub held: BTreeMap<(SubnetId, IpAddr), PortId>,
    /// MACs in use on the network.
    pub macs: BTreeMap<String, PortId>,
    pub deleted: bool,
}

impl Network {
    fn new(spec: NetworkSpec) -> Network {
        Network {
            spec,
            subnets: BTreeMap::new(),
            ports: BTreeMap::new(),
            held: BTreeMap::new(),
            macs: BTreeMap::new(),
            deleted: false,
        }
    }

    /// Addresses of `subnet` held by ports.
    pub fn taken(&self, subnet: SubnetId) -> BTreeSet<IpAddr> {
        self.held
            .range((subnet, min_ip(false))..)
            .take_while(|((s, _), _)| *s == subnet)
            .map(|((_, ip), _)| *ip)
            .collect()
    }

    /// The subnets in creation order (then by id), as Neutron lists a network's.
    pub fn subnets_in_order(&self) -> Vec<&Subnet> {
        let mut v: Vec<&Subnet> = self.subnets.values().collect();
        v.sort_by_key(|s| (s.created_at, s.id));
        v
    }

    /// Checks the address book invariant against the ports (for tests and audits):
    /// every address and MAC is held by exactly the port that lists it.
    pub fn check(&self) -> Result<(), String> {
        let mut held = BTreeMap::new();
        let mut macs = BTreeMap::new();
        for p in self.ports.values() {
            for f in &p.fixed_ips {
                if let Some(other) = held.insert((f.subnet_id, f.ip_address), p.id) {
                    return Err(format!(
                        "{} held by ports {other} and {}",
                        f.ip_address, p.id
                    ));
                }
            }
            if let Some(other) = macs.insert(p.mac_address.clone(), p.id) {
                return Err(format!(
                    "{} held by ports {other} and {}",
                    p.mac_address, p.id
                ));
            }
        }
        if held != self.held || macs != self.macs {
            return Err("address book differs from the ports".into());
        }
        Ok(())
    }
}

fn min_ip(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    }
}

/// What a subnet's gateway should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayRequest {
    /// Not given: the first address of the CIDR.
    Default,
    /// `null`: no gateway.
    None,
    /// This address.
    Ip(IpAddr),
}

/// A new subnet as the caller asked for it (syntax already checked by the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetRequest {
    pub id: SubnetId,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub ip_version: u8,
    pub cidr: Cidr,
    pub gateway: GatewayRequest,
    /// None: Neutron's default pools.
    pub allocation_pools: Option<Vec<Pool>>,
    pub enable_dhcp: bool,
    pub dns_nameservers: Vec<String>,
    pub host_routes: Vec<HostRoute>,
    pub ipv6_ra_mode: Option<String>,
    pub ipv6_address_mode: Option<String>,
    pub subnetpool_id: Option<Uuid>,
}

/// Changes to a subnet (None: unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubnetPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub gateway: Option<GatewayRequest>,
    pub allocation_pools: Option<Vec<Pool>>,
    pub enable_dhcp: Option<bool>,
    pub dns_nameservers: Option<Vec<String>>,
    pub host_routes: Option<Vec<HostRoute>>,
}

/// One requested address of a port: a subnet, an address, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedIpRequest {
    pub subnet_id: Option<SubnetId>,
    pub ip_address: Option<IpAddr>,
}

/// A new port (syntax and policy already checked by the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub id: PortId,
    pub name: String,
    pub description: String,
    pub project_id: String,
    /// None: Neutron's default allocation (one IPv4 address, one stateful IPv6 one,
    /// and every auto-address IPv6 subnet's).
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
    /// A MAC the caller chose (must be free on the network).
    pub mac_address: Option<String>,
    /// Generated MACs to try in order when none was chosen (the API draws them).
    pub mac_candidates: Vec<String>,
    pub device_id: String,
    pub device_owner: String,
    pub admin_state_up: bool,
    /// None: the network's default (the caller's `default` group, filled in by the
    /// API), empty: none.
    pub security_groups: Vec<Uuid>,
    /// None: the network's `port_security_enabled`.
    pub port_security_enabled: Option<bool>,
    pub allowed_address_pairs: Vec<AddressPair>,
    pub binding_host: String,
    pub binding_vnic_type: String,
    pub binding_profile: String,
    /// Tags given on create (`tag-ports-during-bulk-creation`; unique, checked by the
    /// API).
    pub tags: Vec<String>,
}

/// Changes to a port (None: unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
    pub device_id: Option<String>,
    pub device_owner: Option<String>,
    pub admin_state_up: Option<bool>,
    pub security_groups: Option<Vec<Uuid>>,
    pub port_security_enabled: Option<bool>,
    pub allowed_address_pairs: Option<Vec<AddressPair>>,
    pub binding_host: Option<String>,
    pub binding_vnic_type: Option<String>,
    pub binding_profile: Option<String>,
    pub mac_address: Option<String>,
}

/// Changes to a network (None: unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub shared: Option<bool>,
    pub external: Option<bool>,
    pub mtu: Option<u32>,
    pub port_security_enabled: Option<bool>,
}

/// A command on a network aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkCommand {
    Create(NetworkSpec),
    Update(NetworkPatch),
    Delete,
    CreateSubnet(Box<SubnetRequest>),
    UpdateSubnet {
        id: SubnetId,
        patch: SubnetPatch,
    },
    DeleteSubnet {
        id: SubnetId,
    },
    CreatePort(Box<PortRequest>),
    UpdatePort {
        id: PortId,
        patch: Box<PortPatch>,
    },
    DeletePort {
        id: PortId,
    },
    /// A tag request on the network or one of its subnets or ports
    /// (standard-attr-tag: `/v2.0/<resources>/{id}/tags`).
    SetTags {
        target: TagTarget,
        op: tags::TagOp,
    },
}

/// Which record of the aggregate a tag command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagTarget {
    Network,
    Subnet(SubnetId),
    Port(PortId),
}

/// An event of a network aggregate (frozen variant order: new ones go at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkEvent {
    Created { network: NetworkSpec },
    Updated { network: NetworkSpec },
    Deleted { at: Timestamp },
    SubnetCreated { subnet: Subnet },
    SubnetUpdated { subnet: Subnet },
    SubnetDeleted { id: SubnetId, at: Timestamp },
    PortCreated { port: Port },
    PortUpdated { port: Port },
    PortDeleted { id: PortId, at: Timestamp },
}

impl NetworkEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            NetworkEvent::Created { .. } => "network.created",
            NetworkEvent::Updated { .. } => "network.updated",
            NetworkEvent::Deleted { .. } => "network.deleted",
            NetworkEvent::SubnetCreated { .. } => "network.subnet_created",
            NetworkEvent::SubnetUpdated { .. } => "network.subnet_updated",
            NetworkEvent::SubnetDeleted { .. } => "network.subnet_deleted",
            NetworkEvent::PortCreated { .. } => "network.port_created",
            NetworkEvent::PortUpdated { .. } => "network.port_updated",
            NetworkEvent::PortDeleted { .. } => "network.port_deleted",
        }
    }
}

type Decided = Result<Vec<NetworkEvent>, NetError>;

/// Decides a command on a network (`state` None: it does not exist).
pub fn decide(
    id: NetworkId,
    state: Option<&Network>,
    cmd: NetworkCommand,
    now: Timestamp,
) -> Decided {
    let live = state.filter(|n| !n.deleted);
    match cmd {
        NetworkCommand::Create(spec) => {
            if state.is_some() {
                return Err(NetError::conflict(
                    "NetworkExists",
                    format!("Network {id} already exists."),
                ));
            }
            Ok(vec![NetworkEvent::Created { network: spec }])
        }
        cmd => {
            let net = live.ok_or_else(|| NetError::network_not_found(id))?;
            decide_on(net, cmd, now)
        }
    }
}

fn decide_on(net: &Network, cmd: NetworkCommand, now: Timestamp) -> Decided {
    let id = net.spec.id;
    match cmd {
        NetworkCommand::Create(_) => unreachable!("handled by decide"),
        NetworkCommand::Update(p) => {
            let mut s = net.spec.clone();
            if p.shared == Some(false) && s.shared {
                // Neutron: other projects' ports keep the network shared.
                if net.ports.values().any(|x| x.project_id != s.project_id) {
                    return Err(NetError::conflict(
                        "InvalidSharedSetting",
                        format!(
                            "Unable to reconfigure sharing settings for network {id}. \
                             Multiple projects are using it."
                        ),
                    ));
                }
            }
            set(&mut s.name, p.name);
            set(&mut s.description, p.description);
            set(&mut s.admin_state_up, p.admin_state_up);
            set(&mut s.shared, p.shared);
            set(&mut s.external, p.external);
            set(&mut s.mtu, p.mtu);
            set(&mut s.port_security_enabled, p.port_security_enabled);
            touch(&mut s.updated_at, &mut s.revision, now);
            Ok(vec![NetworkEvent::Updated { network: s }])
        }
        NetworkCommand::Delete => {
            if net.ports.values().any(Port::keeps_network) {
                return Err(NetError::conflict(
                    "NetworkInUse",
                    format!(
                        "Unable to complete operation on network {id}. \
                         There are one or more ports still in use on the network."
                    ),
                ));
            }
            let mut evs: Vec<NetworkEvent> = net
                .ports
                .keys()
                .map(|p| NetworkEvent::PortDeleted { id: *p, at: now })
                .collect();
            evs.extend(
                net.subnets
                    .keys()
                    .map(|s| NetworkEvent::SubnetDeleted { id: *s, at: now }),
            );
            evs.push(NetworkEvent::Deleted { at: now });
            Ok(evs)
        }
        NetworkCommand::CreateSubnet(r) => create_subnet(net, *r, now),
        NetworkCommand::UpdateSubnet { id: sid, patch } => update_subnet(net, sid, patch, now),
        NetworkCommand::DeleteSubnet { id: sid } => {
            if !net.subnets.contains_key(&sid) {
                return Err(NetError::subnet_not_found(sid));
            }
            // An auto-address (SLAAC) subnet's addresses go with it, as in Neutron,
            // unless a router interface holds one.
            let auto = net.subnets.get(&sid).is_some_and(Subnet::auto_address);
            let holders: BTreeSet<PortId> = net
                .held
                .iter()
                .filter(|((s, _), _)| *s == sid)
                .map(|(_, p)| *p)
                .collect();
            let router_port = holders.iter().any(|p| {
                net.ports
                    .get(p)
                    .is_some_and(|x| x.device_owner.starts_with("network:router"))
            });
            if auto && !router_port {
                let mut evs: Vec<NetworkEvent> = holders
                    .iter()
                    .filter_map(|p| net.ports.get(p))
                    .map(|p| {
                        let mut p = p.clone();
                        p.fixed_ips.retain(|f| f.subnet_id != sid);
                        touch(&mut p.updated_at, &mut p.revision, now);
                        NetworkEvent::PortUpdated { port: p }
                    })
                    .collect();
                evs.push(NetworkEvent::SubnetDeleted { id: sid, at: now });
                return Ok(evs);
            }
            // Ports of network services (router interfaces) keep it in use too, as in
            // Neutron; only their removal frees it.
            if !holders.is_empty() {
                return Err(NetError::conflict(
                    "SubnetInUse",
                    format!(
                        "Unable to complete operation on subnet {sid}: \
                         One or more ports have an IP allocation from this subnet."
                    ),
                ));
            }
            Ok(vec![NetworkEvent::SubnetDeleted { id: sid, at: now }])
        }
        NetworkCommand::CreatePort(r) => create_port(net, *r, now),
        NetworkCommand::UpdatePort { id: pid, patch } => update_port(net, pid, *patch, now),
        NetworkCommand::DeletePort { id: pid } => {
            if !net.ports.contains_key(&pid) {
                return Err(NetError::port_not_found(pid));
            }
            Ok(vec![NetworkEvent::PortDeleted { id: pid, at: now }])
        }
        NetworkCommand::SetTags { target, op } => match target {
            TagTarget::Network => {
                let mut s = net.spec.clone();
                let Some(t) = tags::apply(&s.tags, &op, "networks")? else {
                    return Ok(vec![]);
                };
                s.tags = t;
                touch(&mut s.updated_at, &mut s.revision, now);
                Ok(vec![NetworkEvent::Updated { network: s }])
            }
            TagTarget::Subnet(sid) => {
                let mut s = net
                    .subnets
                    .get(&sid)
                    .cloned()
                    .ok_or_else(|| NetError::subnet_not_found(sid))?;
                let Some(t) = tags::apply(&s.tags, &op, "subnets")? else {
                    return Ok(vec![]);
                };
                s.tags = t;
                touch(&mut s.updated_at, &mut s.revision, now);
                Ok(vec![NetworkEvent::SubnetUpdated { subnet: s }])
            }
            TagTarget::Port(pid) => {
                let mut p = net
                    .ports
                    .get(&pid)
                    .cloned()
                    .ok_or_else(|| NetError::port_not_found(pid))?;
                let Some(t) = tags::apply(&p.tags, &op, "ports")? else {
                    return Ok(vec![]);
                };
                p.tags = t;
                touch(&mut p.updated_at, &mut p.revision, now);
                Ok(vec![NetworkEvent::PortUpdated { port: p }])
            }
        },
    }
}

fn set<T>(field: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *field = v;
    }
}

fn touch(at: &mut Timestamp, rev: &mut u64, now: Timestamp) {
    *at = now;
    *rev += 1;
}

/// Checks a subnet's pools, gateway, routes and name servers (Neutron's order and
/// messages).
fn check_subnet_layout(s: &Subnet) -> Result<(), NetError> {
    let cidr = s.cidr;
    for p in &s.allocation_pools {
        if !p.is_valid() || addr::version(p.start) != cidr.version() {
            return Err(NetError::bad(
                "InvalidAllocationPool",
                format!("The allocation pool {} is not valid.", pool_text(p)),
            ));
        }
        if !p.within(cidr)
            || p.start == cidr.first()
            || (cidr.version() == 4 && cidr.prefix < 31 && p.end == cidr.last())
        {
            return Err(NetError::bad(
                "OutOfBoundsAllocationPool",
                format!(
                    "The allocation pool {} spans beyond the subnet cidr {cidr}.",
                    pool_text(p)
                ),
            ));
        }
    }
    for (i, a) in s.allocation_pools.iter().enumerate() {
        for b in &s.allocation_pools[i + 1..] {
            if a.overlaps(*b) {
                return Err(NetError::conflict(
                    "OverlappingAllocationPools",
                    format!(
                        "Found overlapping allocation pools: {} {} for subnet {cidr}.",
                        pool_text(a),
                        pool_text(b)
                    ),
                ));
            }
        }
    }
    if let Some(gw) = s.gateway_ip {
        if addr::version(gw) != cidr.version() {
            return Err(NetError::invalid(
                "Gateway IP version inconsistent with allocation pool version",
            ));
        }
        if cidr.contains(gw)
            && ((cidr.version() == 4
                && cidr.prefix < 31
                && (gw == cidr.first() || gw == cidr.last()))
                || (cidr.version() == 6 && cidr.prefix < 127 && gw == cidr.first()))
        {
            return Err(NetError::invalid("Gateway is not valid on subnet"));
        }
        if let Some(p) = s.allocation_pools.iter().find(|p| p.contains(gw)) {
            return Err(NetError::conflict(
                "GatewayConflictWithAllocationPools",
                format!(
                    "Gateway ip {gw} conflicts with allocation pool {}.",
                    pool_text(p)
                ),
            ));
        }
    }
    if s.dns_nameservers.len() > MAX_DNS_NAMESERVERS {
        return Err(NetError::bad(
            "DNSNameServersExhausted",
            format!(
                "Unable to complete operation for {}. The number of DNS nameservers exceeds the limit {MAX_DNS_NAMESERVERS}.",
                s.id
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for d in &s.dns_nameservers {
        if !seen.insert(d) {
            return Err(NetError::invalid(format!("Duplicate nameserver '{d}'")));
        }
    }
    if s.host_routes.len() > MAX_HOST_ROUTES {
        return Err(NetError::bad(
            "HostRoutesExhausted",
            format!(
                "Unable to complete operation for {}. The number of host routes exceeds the limit {MAX_HOST_ROUTES}.",
                s.id
            ),
        ));
    }
    for r in &s.host_routes {
        if r.destination.version() != cidr.version() || addr::version(r.nexthop) != cidr.version() {
            return Err(NetError::invalid(format!(
                "Host route {} via {} does not match the subnet's IP version {}",
                r.destination,
                r.nexthop,
                cidr.version()
            )));
        }
    }
    Ok(())
}

/// `start - end` as Neutron prints a pool in messages.
fn pool_text(p: &Pool) -> String {
    format!("{}-{}", p.start, p.end)
}

fn create_subnet(net: &Network, r: SubnetRequest, now: Timestamp) -> Decided {
    if r.cidr.version() != r.ip_version {
        return Err(NetError::invalid(format!(
            "Cidr {} does not match ip_version {}",
            r.cidr, r.ip_version
        )));
    }
    if r.ip_version == 4 && (r.ipv6_ra_mode.is_some() || r.ipv6_address_mode.is_some()) {
        return Err(NetError::invalid(
            "ipv6_ra_mode or ipv6_address_mode cannot be set when ip_version is 4",
        ));
    }
    if let (Some(ra), Some(am)) = (&r.ipv6_ra_mode, &r.ipv6_address_mode) {
        if ra != am {
            return Err(NetError::invalid(format!(
                "ipv6_ra_mode set to '{ra}' with ipv6_address_mode set to '{am}' is not valid. \
                 If both attributes are set, they must be the same value"
            )));
        }
    }
    if r.ip_version == 6
        && matches!(
            r.ipv6_address_mode.as_deref(),
            Some("slaac" | "dhcpv6-stateless")
        )
        && r.cidr.prefix != 64
    {
        return Err(NetError::invalid(format!(
            "Invalid CIDR {} for IPv6 address mode. OpenStack uses the EUI-64 address format, \
             which requires the prefix to be /64",
            r.cidr
        )));
    }
    for s in net.subnets.values() {
        if s.cidr.overlaps(r.cidr) {
            return Err(NetError::invalid(format!(
                "Requested subnet with cidr: {} for network: {} overlaps with another subnet",
                r.cidr, net.spec.id
            )));
        }
    }
    let gateway_ip = match r.gateway {
        GatewayRequest::Default => r.cidr.nth(1),
        GatewayRequest::None => None,
        GatewayRequest::Ip(ip) => Some(ip),
    };
    let allocation_pools = match r.allocation_pools {
        Some(p) => p,
        None => r.cidr.default_pools(gateway_ip),
    };
    let subnet = Subnet {
        id: r.id,
        network_id: net.spec.id,
        name: r.name,
        description: r.description,
        project_id: r.project_id,
        cidr: r.cidr,
        gateway_ip,
        allocation_pools,
        enable_dhcp: r.enable_dhcp,
        dns_nameservers: r.dns_nameservers,
        host_routes: r.host_routes,
        ipv6_ra_mode: r.ipv6_ra_mode,
        ipv6_address_mode: r.ipv6_address_mode,
        subnetpool_id: r.subnetpool_id,
        tags: vec![],
        created_at: now,
        updated_at: now,
        revision: 0,
    };
    check_subnet_layout(&subnet)?;
    let mut evs = vec![NetworkEvent::SubnetCreated {
        subnet: subnet.clone(),
    }];
    // Neutron gives every existing port an address of a new auto-address subnet.
    if subnet.auto_address() {
        for p in net.ports.values().filter(|p| p.is_users()) {
            if let Some(ip) = addr::eui64(subnet.cidr, &p.mac_address) {
                let mut p = p.clone();
                p.fixed_ips.push(FixedIp {
                    subnet_id: subnet.id,
                    ip_address: ip,
                });
                touch(&mut p.updated_at, &mut p.revision, now);
                evs.push(NetworkEvent::PortUpdated { port: p });
            }
        }
    }
    Ok(evs)
}

fn update_subnet(net: &Network, sid: SubnetId, p: SubnetPatch, now: Timestamp) -> Decided {
    let mut s = net
        .subnets
        .get(&sid)
        .cloned()
        .ok_or_else(|| NetError::subnet_not_found(sid))?;
    set(&mut s.name, p.name);
    set(&mut s.description, p.description);
    set(&mut s.enable_dhcp, p.enable_dhcp);
    set(&mut s.dns_nameservers, p.dns_nameservers);
    set(&mut s.host_routes, p.host_routes);
    if let Some(g) = p.gateway {
        let new = match g {
            GatewayRequest::Default => s.cidr.nth(1),
            GatewayRequest::None => None,
            GatewayRequest::Ip(ip) => Some(ip),
        };
        if let Some(old) = s.gateway_ip.filter(|o| Some(*o) != new) {
            // A router interface holding the current gateway keeps it (GatewayIpInUse).
            if let Some(holder) = net.held.get(&(sid, old)) {
                if net
                    .ports
                    .get(holder)
                    .is_some_and(|x| x.device_owner.starts_with("network:router"))
                {
                    return Err(NetError::conflict(
                        "GatewayIpInUse",
                        format!(
                            "Current gateway ip {old} already in use by port {holder}. Unable to update."
                        ),
                    ));
                }
            }
        }
        s.gateway_ip = new;
    }
    if let Some(pools) = p.allocation_pools {
        s.allocation_pools = pools;
    }
    check_subnet_layout(&s)?;
    touch(&mut s.updated_at, &mut s.revision, now);
    Ok(vec![NetworkEvent::SubnetUpdated { subnet: s }])
}

/// Validates a MAC address as Neutron does (six hex octets, unicast, not all zero).
pub fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
        && parts.iter().any(|p| *p != "00")
}

/// The addresses a port gets: the requested ones checked against the network's
/// subnets and the book (`except`: the port being updated, whose own addresses count as
/// free), or Neutron's default allocation.
fn allocate(
    net: &Network,
    req: Option<&[FixedIpRequest]>,
    mac: &str,
    device_owner: &str,
    except: Option<PortId>,
) -> Result<Vec<FixedIp>, NetError> {
    let nid = net.spec.id;
    let held_by_other = |sid: SubnetId, ip: IpAddr| {
        net.held
            .get(&(sid, ip))
            .is_some_and(|holder| Some(*holder) != except)
    };
    let taken = |sid: SubnetId, mine: &[FixedIp]| -> BTreeSet<IpAddr> {
        let mut t: BTreeSet<IpAddr> = net
            .taken(sid)
            .into_iter()
            .filter(|ip| net.held.get(&(sid, *ip)).is_none_or(|h| Some(*h) != except))
            .collect();
        t.extend(
            mine.iter()
                .filter(|f| f.subnet_id == sid)
                .map(|f| f.ip_address),
        );
        t
    };
    let mut out: Vec<FixedIp> = vec![];
    let exhausted = || {
        NetError::conflict(
            "IpAddressGenerationFailure",
            format!("No more IP addresses available on network {nid}."),
        )
    };
    match req {
        None => {
            let subnets = net.subnets_in_order();
            // One IPv4 address, from the first subnet with room.
            if subnets.iter().any(|s| s.ip_version() == 4) {
                let got = subnets
                    .iter()
                    .filter(|s| s.ip_version() == 4)
                    .find_map(|s| {
                        addr::first_free(&s.allocation_pools, &taken(s.id, &out)).map(|ip| {
                            FixedIp {
                                subnet_id: s.id,
                                ip_address: ip,
                            }
                        })
                    });
                out.push(got.ok_or_else(exhausted)?);
            }
            // One stateful IPv6 address.
            let stateful: Vec<&&Subnet> = subnets
                .iter()
                .filter(|s| s.ip_version() == 6 && !s.auto_address())
                .collect();
            if !stateful.is_empty() {
                let got = stateful.iter().find_map(|s| {
                    addr::first_free(&s.allocation_pools, &taken(s.id, &out)).map(|ip| FixedIp {
                        subnet_id: s.id,
                        ip_address: ip,
                    })
                });
                out.push(got.ok_or_else(exhausted)?);
            }
            // Every auto-address subnet's EUI-64 address (not for router ports,
            // which Neutron gives the subnet's gateway instead).
            if !device_owner.starts_with("network:router") {
                for s in subnets.iter().filter(|s| s.auto_address()) {
                    if let Some(ip) = addr::eui64(s.cidr, mac) {
                        if held_by_other(s.id, ip) {
                            return Err(ip_in_use(ip, s.id));
                        }
                        out.push(FixedIp {
                            subnet_id: s.id,
                            ip_address: ip,
                        });
                    }
                }
            }
        }
        Some(reqs) => {
            for r in reqs {
                let subnet = match (r.subnet_id, r.ip_address) {
                    (Some(sid), _) => net.subnets.get(&sid).ok_or_else(|| {
                        NetError::invalid(format!(
                            "Failed to create port on network {nid}, because fixed_ips included invalid subnet {sid}"
                        ))
                    })?,
                    (None, Some(ip)) => net
                        .subnets_in_order()
                        .into_iter()
                        .find(|s| s.cidr.contains(ip))
                        .ok_or_else(|| {
                            NetError::bad(
                                "InvalidIpForNetwork",
                                format!(
                                    "IP address {ip} is not a valid IP for any of the subnets on the specified network."
                                ),
                            )
                        })?,
                    (None, None) => {
                        return Err(NetError::invalid(
                            "IP allocation requires subnet_id or ip_address",
                        ))
                    }
                };
                let ip = match r.ip_address {
                    Some(ip) => {
                        if !subnet.cidr.contains(ip) || !host_address(subnet, ip) {
                            return Err(NetError::bad(
                                "InvalidIpForSubnet",
                                format!(
                                    "IP address {ip} is not a valid IP for the specified subnet."
                                ),
                            ));
                        }
                        if held_by_other(subnet.id, ip)
                            || out
                                .iter()
                                .any(|f| f.subnet_id == subnet.id && f.ip_address == ip)
                        {
                            return Err(ip_in_use(ip, subnet.id));
                        }
                        ip
                    }
                    None if subnet.auto_address() => addr::eui64(subnet.cidr, mac)
                        .ok_or_else(|| NetError::invalid("Invalid MAC for EUI-64"))?,
                    None => addr::first_free(&subnet.allocation_pools, &taken(subnet.id, &out))
                        .ok_or_else(exhausted)?,
                };
                out.push(FixedIp {
                    subnet_id: subnet.id,
                    ip_address: ip,
                });
            }
        }
    }
    Ok(out)
}

/// Whether `ip` may be a port's address on `s`: not the network address, nor the IPv4
/// broadcast address (the gateway may be taken by a router port, checked by the book).
fn host_address(s: &Subnet, ip: IpAddr) -> bool {
    let c = s.cidr;
    if c.version() == 4 && c.prefix < 31 {
        ip != c.first() && ip != c.last()
    } else if c.version() == 6 && c.prefix < 127 {
        ip != c.first()
    } else {
        true
    }
}

fn ip_in_use(ip: IpAddr, subnet: SubnetId) -> NetError {
    NetError::conflict(
        "IpAddressAlreadyAllocated",
        format!("IP address {ip} already allocated in subnet {subnet}"),
    )
}

fn create_port(net: &Network, r: PortRequest, now: Timestamp) -> Decided {
    let nid = net.spec.id;
    // A retried create (same id, e.g. a compute agent's deterministic port) decides
    // to a refusal the caller can recognise, never to a second port.
    if net.ports.contains_key(&r.id) {
        return Err(NetError::conflict(
            "PortExists",
            format!("Port {} already exists.", r.id),
        ));
    }
    let mac = match &r.mac_address {
        Some(m) => {
            if net.macs.contains_key(m) {
                return Err(NetError::conflict(
                    "MacAddressInUse",
                    format!("Unable to complete operation for network {nid}. The mac address {m} is in use."),
                ));
            }
            m.clone()
        }
        None => r
            .mac_candidates
            .iter()
            .find(|m| !net.macs.contains_key(*m))
            .cloned()
            .ok_or_else(|| {
                NetError::conflict(
                    "MacAddressGenerationFailure",
                    format!("Unable to generate unique mac on network {nid}."),
                )
            })?,
    };
    let fixed_ips = allocate(net, r.fixed_ips.as_deref(), &mac, &r.device_owner, None)?;
    let port = Port {
        id: r.id,
        network_id: nid,
        name: r.name,
        description: r.description,
        project_id: r.project_id,
        mac_address: mac,
        fixed_ips,
        device_id: r.device_id,
        device_owner: r.device_owner,
        admin_state_up: r.admin_state_up,
        security_groups: r.security_groups,
        port_security_enabled: r
            .port_security_enabled
            .unwrap_or(net.spec.port_security_enabled),
        allowed_address_pairs: r.allowed_address_pairs,
        binding_host: r.binding_host,
        binding_vnic_type: r.binding_vnic_type,
        binding_profile: r.binding_profile,
        tags: {
            let mut t = r.tags;
            t.sort();
            t.dedup();
            t
        },
        created_at: now,
        updated_at: now,
        revision: 0,
    };
    check_port_security(&port)?;
    Ok(vec![NetworkEvent::PortCreated { port }])
}

/// Neutron's port-security rules: without port security a port has no security groups
/// and no allowed address pairs.
fn check_port_security(p: &Port) -> Result<(), NetError> {
    if !p.port_security_enabled
        && (!p.security_groups.is_empty() || !p.allowed_address_pairs.is_empty())
    {
        let kind = if p.security_groups.is_empty() {
            "AddressPairAndPortSecurityRequired"
        } else {
            "PortSecurityAndIPRequiredForSecurityGroups"
        };
        let msg = if p.security_groups.is_empty() {
            "Port Security must be enabled in order to have allowed address pairs on a port."
        } else {
            "Port security must be enabled and port must have an IP address in order to use security groups."
        };
        return Err(NetError::conflict(kind, msg));
    }
    Ok(())
}

fn update_port(net: &Network, pid: PortId, p: PortPatch, now: Timestamp) -> Decided {
    let mut port = net
        .ports
        .get(&pid)
        .cloned()
        .ok_or_else(|| NetError::port_not_found(pid))?;
    if let Some(mac) = p.mac_address {
        if mac != port.mac_address {
            if !port.binding_host.is_empty() {
                return Err(NetError::conflict(
                    "PortBound",
                    format!(
                        "Unable to complete operation on port {pid}, port is already bound, \
                         port type: ovs, old_mac {}, new_mac {mac}.",
                        port.mac_address
                    ),
                ));
            }
            if net.macs.contains_key(&mac) {
                return Err(NetError::conflict(
                    "MacAddressInUse",
                    format!(
                        "Unable to complete operation for network {}. The mac address {mac} is in use.",
                        net.spec.id
                    ),
                ));
            }
            port.mac_address = mac;
        }
    }
    if let Some(reqs) = p.fixed_ips {
        port.fixed_ips = allocate(
            net,
            Some(&reqs),
            &port.mac_address.clone(),
            &port.device_owner,
            Some(pid),
        )?;
    }
    set(&mut port.name, p.name);
    set(&mut port.description, p.description);
    set(&mut port.device_id, p.device_id);
    set(&mut port.device_owner, p.device_owner);
    set(&mut port.admin_state_up, p.admin_state_up);
    set(&mut port.security_groups, p.security_groups);
    set(&mut port.port_security_enabled, p.port_security_enabled);
    set(&mut port.allowed_address_pairs, p.allowed_address_pairs);
    set(&mut port.binding_host, p.binding_host);
    set(&mut port.binding_vnic_type, p.binding_vnic_type);
    set(&mut port.binding_profile, p.binding_profile);
    check_port_security(&port)?;
    touch(&mut port.updated_at, &mut port.revision, now);
    Ok(vec![NetworkEvent::PortUpdated { port }])
}

/// Folds one event. Total: an event about a record that is not there changes nothing.
pub fn evolve(state: Option<Network>, e: &NetworkEvent) -> Option<Network> {
    match (state, e) {
        (None, NetworkEvent::Created { network }) => Some(Network::new(network.clone())),
        (None, _) => None,
        (Some(mut n), e) => {
            match e {
                NetworkEvent::Created { .. } => {}
                NetworkEvent::Updated { network } => n.spec = network.clone(),
                NetworkEvent::Deleted { .. } => n.deleted = true,
                NetworkEvent::SubnetCreated { subnet } | NetworkEvent::SubnetUpdated { subnet } => {
                    n.subnets.insert(subnet.id, subnet.clone());
                }
                NetworkEvent::SubnetDeleted { id, .. } => {
                    n.subnets.remove(id);
                }
                NetworkEvent::PortCreated { port } | NetworkEvent::PortUpdated { port } => {
                    unhold(&mut n, port.id);
                    for f in &port.fixed_ips {
                        n.held.insert((f.subnet_id, f.ip_address), port.id);
                    }
                    n.macs.insert(port.mac_address.clone(), port.id);
                    n.ports.insert(port.id, port.clone());
                }
                NetworkEvent::PortDeleted { id, .. } => {
                    unhold(&mut n, *id);
                    n.ports.remove(id);
                }
            }
            Some(n)
        }
    }
}

/// Frees what the port held (before its new record is stored, or at its deletion).
fn unhold(n: &mut Network, id: PortId) {
    if let Some(old) = n.ports.get(&id) {
        for f in &old.fixed_ips {
            if n.held.get(&(f.subnet_id, f.ip_address)) == Some(&id) {
                n.held.remove(&(f.subnet_id, f.ip_address));
            }
        }
        if n.macs.get(&old.mac_address) == Some(&id) {
            n.macs.remove(&old.mac_address);
        }
    }
}

#[cfg(test)]
mod tests;
