//! Neutron's JSON shapes of networks, subnets and ports, and who may see them.
//!
//! Invariant: the attributes shown are exactly those of the extensions
//! `GET /v2.0/extensions` lists (clients decide what to send from it); port binding
//! attributes are shown to admins only, as Neutron's policy does.

use domain::network::{Network, Port, Subnet};
use domain::security_group::{Rule, SecurityGroup};
use serde_json::{json, Value};

use crate::auth::Caller;

/// Neutron's timestamps: `2016-03-08T20:19:41Z`.
fn ts(t: domain::Timestamp) -> String {
    apicore::util::iso_z(t)
}

/// Whether the caller sees the network (owner, shared, external, or admin).
pub fn network_visible(n: &Network, c: &Caller) -> bool {
    c.is_admin() || n.spec.project_id == c.project || n.spec.shared || n.spec.external
}

/// Whether the caller sees the subnet (owner, on a shared network, or admin).
pub fn subnet_visible(n: &Network, s: &Subnet, c: &Caller) -> bool {
    c.is_admin() || s.project_id == c.project || n.spec.shared || n.spec.project_id == c.project
}

/// Whether the caller sees the port (its owner, the network's owner, or admin).
pub fn port_visible(n: &Network, p: &Port, c: &Caller) -> bool {
    c.is_admin() || p.project_id == c.project || n.spec.project_id == c.project
}

/// A network.
pub fn network(n: &Network) -> Value {
    let s = &n.spec;
    let subnets: Vec<String> = n
        .subnets_in_order()
        .iter()
        .map(|x| x.id.to_string())
        .collect();
    json!({
        "id": s.id.to_string(),
        "name": s.name,
        "description": s.description,
        "tenant_id": s.project_id,
        "project_id": s.project_id,
        "admin_state_up": s.admin_state_up,
        "status": "ACTIVE",
        "subnets": subnets,
        "shared": s.shared,
        "router:external": s.external,
        "mtu": s.mtu,
        "port_security_enabled": s.port_security_enabled,
        "tags": s.tags,
        "created_at": ts(s.created_at),
        "updated_at": ts(s.updated_at),
        "revision_number": s.revision,
    })
}

/// A subnet.
pub fn subnet(s: &Subnet) -> Value {
    let pools: Vec<Value> = s
        .allocation_pools
        .iter()
        .map(|p| json!({"start": p.start.to_string(), "end": p.end.to_string()}))
        .collect();
    let routes: Vec<Value> = s
        .host_routes
        .iter()
        .map(
            |r| json!({"destination": r.destination.to_string(), "nexthop": r.nexthop.to_string()}),
        )
        .collect();
    json!({
        "id": s.id.to_string(),
        "name": s.name,
        "description": s.description,
        "tenant_id": s.project_id,
        "project_id": s.project_id,
        "network_id": s.network_id.to_string(),
        "ip_version": s.ip_version(),
        "cidr": s.cidr.to_string(),
        "gateway_ip": s.gateway_ip.map(|g| g.to_string()),
        "allocation_pools": pools,
        "enable_dhcp": s.enable_dhcp,
        "dns_nameservers": s.dns_nameservers,
        "host_routes": routes,
        "ipv6_ra_mode": s.ipv6_ra_mode,
        "ipv6_address_mode": s.ipv6_address_mode,
        "subnetpool_id": s.subnetpool_id.map(|p| p.to_string()),
        "service_types": [],
        "tags": s.tags,
        "created_at": ts(s.created_at),
        "updated_at": ts(s.updated_at),
        "revision_number": s.revision,
    })
}

/// A port (binding attributes for admins only).
pub fn port(p: &Port, admin: bool) -> Value {
    let fixed: Vec<Value> = p
        .fixed_ips
        .iter()
        .map(|f| json!({"subnet_id": f.subnet_id.to_string(), "ip_address": f.ip_address.to_string()}))
        .collect();
    let pairs: Vec<Value> = p
        .allowed_address_pairs
        .iter()
        .map(|a| json!({"ip_address": a.ip_address, "mac_address": a.mac_address}))
        .collect();
    let sgs: Vec<String> = p.security_groups.iter().map(|g| g.to_string()).collect();
    let mut v = json!({
        "id": p.id.to_string(),
        "name": p.name,
        "description": p.description,
        "tenant_id": p.project_id,
        "project_id": p.project_id,
        "network_id": p.network_id.to_string(),
        "mac_address": p.mac_address,
        "admin_state_up": p.admin_state_up,
        "status": p.status(),
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "fixed_ips": fixed,
        "allowed_address_pairs": pairs,
        "security_groups": sgs,
        "port_security_enabled": p.port_security_enabled,
        "tags": p.tags,
        "created_at": ts(p.created_at),
        "updated_at": ts(p.updated_at),
        "revision_number": p.revision,
        "binding:vnic_type": p.binding_vnic_type,
    });
    if admin {
        let profile: Value = serde_json::from_str(&p.binding_profile).unwrap_or_else(|_| json!({}));
        let details = if p.binding_host.is_empty() {
            json!({})
        } else {
            json!({"port_filter": true, "ovs_hybrid_plug": false})
        };
        v["binding:host_id"] = json!(p.binding_host);
        v["binding:profile"] = profile;
        v["binding:vif_type"] = json!(p.vif_type());
        v["binding:vif_details"] = details;
    }
    v
}

/// The attributes networks can be filtered and sorted by.
pub const NETWORK_ATTRS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "admin_state_up",
    "status",
    "subnets",
    "shared",
    "router:external",
    "mtu",
    "port_security_enabled",
    "created_at",
    "updated_at",
    "revision_number",
];

/// The attributes subnets can be filtered and sorted by.
pub const SUBNET_ATTRS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "enable_dhcp",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "created_at",
    "updated_at",
    "revision_number",
    "dns_nameservers",
];

/// The attributes ports can be filtered and sorted by.
pub const PORT_ATTRS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "network_id",
    "mac_address",
    "admin_state_up",
    "status",
    "device_id",
    "device_owner",
    "fixed_ips",
    "security_groups",
    "port_security_enabled",
    "created_at",
    "updated_at",
    "revision_number",
    "binding:host_id",
    "binding:vnic_type",
];

/// Whether the caller sees the router (its project's, or admin).
pub fn router_visible(r: &domain::router::Router, c: &Caller) -> bool {
    c.is_admin() || r.project_id == c.project
}

/// Whether the caller sees the floating IP (its project's, or admin).
pub fn floating_ip_visible(f: &domain::router::FloatingIp, c: &Caller) -> bool {
    c.is_admin() || f.project_id == c.project
}

/// A router: `external_gateway_info` with the gateway port's addresses
/// (`external_fixed_ips`) and `enable_snat` (ext-gw-mode), or null.
pub fn router(r: &domain::router::Router, nets: &projections::Networks) -> Value {
    let gw = r.gateway.as_ref().map(|g| {
        let ips: Vec<Value> = nets
            .port(&g.port_id)
            .map(|p| {
                p.fixed_ips
                    .iter()
                    .map(|f| json!({"subnet_id": f.subnet_id.to_string(), "ip_address": f.ip_address.to_string()}))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "network_id": g.network_id.to_string(),
            "enable_snat": g.enable_snat,
            "external_fixed_ips": ips,
        })
    });
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "description": r.description,
        "tenant_id": r.project_id,
        "project_id": r.project_id,
        "admin_state_up": r.admin_state_up,
        "status": "ACTIVE",
        "external_gateway_info": gw,
        "routes": r.routes.iter().map(|x| json!({"destination": x.destination.to_string(), "nexthop": x.nexthop.to_string()})).collect::<Vec<_>>(),
        "tags": r.tags,
        "created_at": ts(r.created_at),
        "updated_at": ts(r.updated_at),
        "revision_number": r.revision,
    })
}

/// A floating IP, with the associated port's `port_details` (fip-port-details).
pub fn floating_ip(f: &domain::router::FloatingIp, nets: &projections::Networks) -> Value {
    let a = f.association;
    let details = a.and_then(|a| nets.port(&a.port_id)).map(|p| {
        json!({
            "name": p.name,
            "network_id": p.network_id.to_string(),
            "mac_address": p.mac_address,
            "admin_state_up": p.admin_state_up,
            "status": p.status(),
            "device_id": p.device_id,
            "device_owner": p.device_owner,
        })
    });
    json!({
        "id": f.id.to_string(),
        "tenant_id": f.project_id,
        "project_id": f.project_id,
        "description": f.description,
        "floating_network_id": f.floating_network_id.to_string(),
        "floating_ip_address": f.floating_ip_address.to_string(),
        "port_id": a.map(|a| a.port_id.to_string()),
        "fixed_ip_address": a.map(|a| a.fixed_ip_address.to_string()),
        "router_id": a.map(|a| a.router_id.to_string()),
        "port_details": details,
        "status": f.status(),
        "tags": f.tags,
        "created_at": ts(f.created_at),
        "updated_at": ts(f.updated_at),
        "revision_number": f.revision,
    })
}

/// The attributes routers can be filtered and sorted by.
pub const ROUTER_ATTRS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "admin_state_up",
    "status",
    "created_at",
    "updated_at",
    "revision_number",
];

/// The attributes floating IPs can be filtered and sorted by.
pub const FLOATING_IP_ATTRS: &[&str] = &[
    "id",
    "tenant_id",
    "project_id",
    "description",
    "floating_network_id",
    "floating_ip_address",
    "port_id",
    "fixed_ip_address",
    "router_id",
    "status",
    "created_at",
    "updated_at",
    "revision_number",
];

/// A security group with its rules (`shared` is always false: no RBAC sharing).
pub fn security_group(g: &SecurityGroup) -> Value {
    let s = &g.spec;
    let rules: Vec<Value> = g
        .rules_in_order()
        .into_iter()
        .map(|r| security_group_rule(g, r))
        .collect();
    json!({
        "id": s.id.to_string(),
        "name": s.name,
        "description": s.description,
        "tenant_id": s.project_id,
        "project_id": s.project_id,
        "stateful": s.stateful,
        "shared": false,
        "security_group_rules": rules,
        "tags": s.tags,
        "created_at": ts(s.created_at),
        "updated_at": ts(s.updated_at),
        "revision_number": s.revision,
    })
}

/// A security group rule.
pub fn security_group_rule(_g: &SecurityGroup, r: &Rule) -> Value {
    json!({
        "id": r.id.to_string(),
        "tenant_id": r.project_id,
        "project_id": r.project_id,
        "security_group_id": r.security_group_id.to_string(),
        "direction": r.direction.as_str(),
        "ethertype": r.ethertype.as_str(),
        "protocol": r.protocol,
        "port_range_min": r.port_range_min,
        "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix.map(|c| c.to_string()),
        "normalized_cidr": r.normalized_cidr().map(|c| c.to_string()),
        "remote_group_id": r.remote_group_id.map(|g| g.to_string()),
        "description": r.description,
        "created_at": ts(r.created_at),
        "updated_at": ts(r.updated_at),
        "revision_number": r.revision,
    })
}

/// The attributes security groups can be filtered and sorted by.
pub const SECURITY_GROUP_ATTRS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "stateful",
    "shared",
    "created_at",
    "updated_at",
    "revision_number",
];

/// The attributes security group rules can be filtered and sorted by.
pub const SECURITY_GROUP_RULE_ATTRS: &[&str] = &[
    "id",
    "tenant_id",
    "project_id",
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "normalized_cidr",
    "remote_group_id",
    "description",
    "created_at",
    "updated_at",
    "revision_number",
];
