//! Nova's network proxy APIs (served up to 2.35, Nova's `MAX_PROXY_API_SUPPORT_VERSION`;
//! a 404 from 2.36): `os-floating-ips`, `os-floating-ip-pools`, `os-networks`,
//! `os-tenant-networks`, and the `addFloatingIp` / `removeFloatingIp` server actions
//! (up to 2.43). Nova answers them by asking Neutron; Stratus asks its own network
//! service in process.
//!
//! Invariants:
//! - Floating IPs are allocated, associated and released only through
//!   [`network::floating_ips`]'s shared functions, so the compute API follows exactly
//!   Neutron's rules (a router gateway on the floating network and an interface on the
//!   port's subnet; one floating IP per fixed IP) and its quota.
//! - Neutron's refusals become Nova's statuses and messages, as Nova's
//!   `nova/network/neutron.py` and its controllers translate them.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::network::Network;
use domain::router::FloatingIp;
use domain::FloatingIpId;
use projections::Views;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::actions::{Action, ActionCx, Prepared};
use crate::context::Caller;
use crate::error::ApiError;
use crate::microversion::Version;
use crate::policy::Role;
use crate::ApiState;

/// The default pool when a create names none (the network service's bootstrap
/// external network; Nova's `[neutron] default_floating_pool`).
pub const DEFAULT_POOL: &str = "public";

/// Nova's proxy APIs end at 2.35.
pub(crate) fn proxy_version(caller: &Caller) -> Result<(), ApiError> {
    if caller.version().at_least(36) {
        Err(ApiError::not_found("The resource could not be found."))
    } else {
        Ok(())
    }
}

/// The network service's state and caller for `caller` (same engine, same identity).
pub(crate) fn neutron(
    st: &ApiState,
    caller: &Caller,
) -> (network::NetworkState, network::auth::Caller) {
    let role = if caller.is_admin {
        Some(Role::Admin)
    } else {
        caller.role
    };
    (
        network::NetworkState {
            engine: st.engine.clone(),
            auth: st.auth.clone(),
        },
        network::auth::Caller {
            user: caller.user.clone(),
            project: caller.project.clone(),
            role,
            request: caller.info.id,
        },
    )
}

/// Whether `caller` sees network `n` (Neutron's visibility).
fn network_visible(n: &Network, caller: &Caller) -> bool {
    caller.is_admin || n.spec.project_id == caller.project || n.spec.shared || n.spec.external
}

/// Nova's `_translate_floating_ip_view`: the instance is the associated port's device.
fn fip_view(views: &Views, f: &FloatingIp) -> Value {
    let nets = views.networks();
    let a = f.association;
    let instance = a
        .and_then(|a| nets.port(&a.port_id))
        .map(|p| p.device_id.clone())
        .filter(|d| !d.is_empty());
    let pool = nets
        .get(&f.floating_network_id)
        .map(|n| n.spec.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| f.floating_network_id.to_string());
    json!({
        "fixed_ip": a.map(|a| a.fixed_ip_address.to_string()),
        "id": f.id.to_string(),
        "instance_id": instance,
        "ip": f.floating_ip_address.to_string(),
        "pool": pool,
    })
}

/// The caller's floating IP `id` (Neutron's visibility: its project's; all for admin).
fn visible_fip(views: &Views, caller: &Caller, id: &str) -> Result<FloatingIp, ApiError> {
    FloatingIpId::parse(id)
        .and_then(|fid| views.floating_ips().get(&fid).cloned())
        .filter(|f| caller.is_admin || f.project_id == caller.project)
        .ok_or_else(|| ApiError::not_found(format!("Floating IP not found for ID {id}")))
}

/// GET /v2.1/os-floating-ips: the project's floating IPs.
pub async fn index(State(st): State<ApiState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let views = st.engine.world().read();
    let mut fips: Vec<&FloatingIp> = views
        .floating_ips()
        .all()
        .filter(|f| f.project_id == caller.project)
        .collect();
    fips.sort_by_key(|f| (f.created_at, f.id));
    let list: Vec<Value> = fips.into_iter().map(|f| fip_view(&views, f)).collect();
    Ok(Json(json!({"floating_ips": list})))
}

/// GET /v2.1/os-floating-ips/{id}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let views = st.engine.world().read();
    let f = visible_fip(&views, &caller, &id)?;
    Ok(Json(json!({"floating_ip": fip_view(&views, &f)})))
}

/// POST /v2.1/os-floating-ips: `{"pool": name}` (optional; the body may be empty).
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let body: Value = if raw.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("Malformed request body"))?
    };
    let pool = match &body {
        Value::Null => None,
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| *k != "pool") {
                return Err(ApiError::bad_request(format!(
                    "Invalid input for field/attribute {{}}. Value: {body}. Additional properties are not allowed ('{k}' was unexpected)"
                )));
            }
            match m.get("pool") {
                None => None,
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Some(s.clone()),
                Some(v) => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid input for field/attribute pool. Value: {v}. {v} is not a valid pool name"
                    )))
                }
            }
        }
        v => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute {{}}. Value: {v}. {v} is not of type 'object'"
            )))
        }
    };
    let net = {
        let views = st.engine.world().read();
        let name = pool.as_deref().unwrap_or(DEFAULT_POOL);
        let found: Vec<&Network> = views
            .networks()
            .all()
            .filter(|n| n.spec.external && network_visible(n, &caller))
            .filter(|n| n.spec.name == name || n.spec.id.to_string() == name)
            .collect();
        match found.as_slice() {
            [n] => (*n).clone(),
            [] => return Err(ApiError::not_found("Floating IP pool not found.")),
            _ => {
                return Err(ApiError::conflict(format!(
                    "Multiple floating IP pools matches found for name '{name}'"
                )))
            }
        }
    };
    let (nst, nc) = neutron(&st, &caller);
    let new = network::floating_ips::NewFloatingIp {
        owner: caller.project.clone(),
        ..Default::default()
    };
    let id = network::floating_ips::allocate(&nst, &nc, &net, new)
        .await
        .map_err(|e| match e.kind.as_str() {
            "OverQuota" => ApiError::forbidden(match &pool {
                Some(p) => format!("IP allocation over quota in pool {p}."),
                None => "IP allocation over quota.".to_string(),
            }),
            "ExternalIpAddressExhausted" | "IpAddressGenerationFailure" => {
                ApiError::not_found(match &pool {
                    Some(p) => format!("No more floating IPs in pool {p}."),
                    None => "No more floating IPs available.".to_string(),
                })
            }
            _ => ApiError::bad_request(e.message),
        })?;
    let views = st.engine.world().read();
    let f = views
        .floating_ips()
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("Floating IP not found for ID {id}")))?;
    Ok(Json(json!({"floating_ip": fip_view(&views, &f)})))
}

/// DELETE /v2.1/os-floating-ips/{id}: disassociated and released (202).
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    proxy_version(&caller)?;
    let f = {
        let views = st.engine.world().read();
        visible_fip(&views, &caller, &id)?
    };
    let (nst, nc) = neutron(&st, &caller);
    network::floating_ips::release(&nst, &nc, &f)
        .await
        .map_err(|e| ApiError::new(e.status, e.message))?;
    Ok(StatusCode::ACCEPTED)
}

/// GET /v2.1/os-floating-ip-pools: the external networks' names.
pub async fn pools(State(st): State<ApiState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let views = st.engine.world().read();
    let list: Vec<Value> = views
        .networks()
        .all()
        .filter(|n| n.spec.external && network_visible(n, &caller))
        .map(|n| {
            let name = if n.spec.name.is_empty() {
                n.spec.id.to_string()
            } else {
                n.spec.name.clone()
            };
            json!({ "name": name })
        })
        .collect();
    Ok(Json(json!({"floating_ip_pools": list})))
}

/// Nova's os-networks `network_dict`: id and label, every other key null (the admin
/// keys too for an admin).
fn network_dict(n: &Network, admin: bool) -> Value {
    const FIELDS: &[&str] = &[
        "cidr",
        "netmask",
        "gateway",
        "broadcast",
        "dns1",
        "dns2",
        "cidr_v6",
        "gateway_v6",
        "netmask_v6",
    ];
    const ADMIN: &[&str] = &[
        "created_at",
        "updated_at",
        "deleted_at",
        "deleted",
        "injected",
        "bridge",
        "vlan",
        "vpn_public_address",
        "vpn_public_port",
        "vpn_private_address",
        "dhcp_start",
        "project_id",
        "host",
        "bridge_interface",
        "multi_host",
        "priority",
        "rxtx_base",
        "mtu",
        "dhcp_server",
        "enable_dhcp",
        "share_address",
    ];
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(n.spec.id.to_string()));
    m.insert("label".into(), json!(n.spec.name));
    for k in FIELDS.iter().chain(if admin { ADMIN } else { &[] }) {
        m.insert((*k).into(), Value::Null);
    }
    Value::Object(m)
}

/// The networks `caller` sees, in creation order.
fn visible_networks<'a>(views: &'a Views, caller: &Caller) -> Vec<&'a Network> {
    views
        .networks()
        .all()
        .filter(|n| network_visible(n, caller))
        .collect()
}

/// The visible network `id`, or Nova's 404.
fn visible_network(views: &Views, caller: &Caller, id: &str) -> Result<Network, ApiError> {
    visible_networks(views, caller)
        .into_iter()
        .find(|n| n.spec.id.to_string() == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("Network not found"))
}

/// GET /v2.1/os-networks (2.1-2.35)
pub async fn networks_index(
    State(st): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let views = st.engine.world().read();
    let list: Vec<Value> = visible_networks(&views, &caller)
        .into_iter()
        .map(|n| network_dict(n, caller.is_admin))
        .collect();
    Ok(Json(json!({ "networks": list })))
}

/// GET /v2.1/os-networks/{id} (2.1-2.35)
pub async fn networks_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let views = st.engine.world().read();
    let n = visible_network(&views, &caller, &id)?;
    Ok(Json(json!({"network": network_dict(&n, caller.is_admin)})))
}

/// Nova's os-tenant-networks `network_dict` (its `cidr` is the text "None").
fn tenant_dict(n: &Network) -> Value {
    json!({"id": n.spec.id.to_string(), "cidr": "None", "label": n.spec.name})
}

/// GET /v2.1/os-tenant-networks (2.1-2.35)
pub async fn tenant_index(
    State(st): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let views = st.engine.world().read();
    let list: Vec<Value> = visible_networks(&views, &caller)
        .into_iter()
        .map(tenant_dict)
        .collect();
    Ok(Json(json!({ "networks": list })))
}

/// GET /v2.1/os-tenant-networks/{id} (2.1-2.35)
pub async fn tenant_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let views = st.engine.world().read();
    let n = visible_network(&views, &caller, &id)?;
    Ok(Json(json!({"network": tenant_dict(&n)})))
}

/// What addFloatingIp / removeFloatingIp resolved to (under the world's lock), run
/// by the action handler before its (absent) instance command.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatingOp {
    /// The floating IP.
    pub fip: FloatingIpId,
    /// Associate with this port and address (None: disassociate).
    pub to: Option<(Uuid, IpAddr)>,
    /// The request's address and server id (for Nova's messages).
    pub address: String,
    /// The server id.
    pub server: String,
}

/// The floating IP holding `address` that `caller` sees (Nova's
/// `_get_floating_ip_by_address`).
fn fip_by_address<'a>(views: &'a Views, caller: &Caller, address: &str) -> Vec<&'a FloatingIp> {
    views
        .floating_ips()
        .all()
        .filter(|f| caller.is_admin || f.project_id == caller.project)
        .filter(|f| f.floating_ip_address.to_string() == address)
        .collect()
}

/// addFloatingIp: the server's port holding `fixed_address`, else its first IPv4
/// address (Nova's network info cache order: ports in creation order).
pub fn resolve_add(
    views: &Views,
    caller: &Caller,
    server: &str,
    address: &str,
    fixed_address: Option<&str>,
) -> Result<FloatingOp, ApiError> {
    let ports = views.networks().ports_of_device(server);
    if ports.is_empty() {
        return Err(ApiError::bad_request("Instance network is not ready yet"));
    }
    let fixed: Vec<(Uuid, IpAddr)> = ports
        .iter()
        .flat_map(|p| p.fixed_ips.iter().map(|f| (p.id.0, f.ip_address)))
        .collect();
    if fixed.is_empty() {
        return Err(ApiError::bad_request("No fixed IPs associated to instance"));
    }
    let to = match fixed_address {
        Some(want) => *fixed
            .iter()
            .find(|(_, ip)| ip.to_string() == want)
            .ok_or_else(|| {
                ApiError::bad_request("Specified fixed address not assigned to instance")
            })?,
        None => *fixed.iter().find(|(_, ip)| ip.is_ipv4()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Unable to associate floating IP {address} to any fixed IPs for instance {server}. Instance has no fixed IPv4 addresses to associate."
            ))
        })?,
    };
    let fips = fip_by_address(views, caller, address);
    let f = match fips.as_slice() {
        [f] => f,
        [] => return Err(ApiError::not_found("floating IP not found")),
        _ => {
            return Err(ApiError::conflict(format!(
                "Multiple floating IPs are found for address {address}."
            )))
        }
    };
    Ok(FloatingOp {
        fip: f.id,
        to: Some(to),
        address: address.to_string(),
        server: server.to_string(),
    })
}

/// removeFloatingIp: the floating IP must be associated with one of the server's ports.
pub fn resolve_remove(
    views: &Views,
    caller: &Caller,
    server: &str,
    address: &str,
) -> Result<FloatingOp, ApiError> {
    let fips = fip_by_address(views, caller, address);
    let f = match fips.as_slice() {
        [f] => f,
        [] => {
            return Err(ApiError::not_found(format!(
                "Floating IP not found for address {address}."
            )))
        }
        _ => {
            return Err(ApiError::conflict(format!(
                "Multiple floating IPs are found for address {address}."
            )))
        }
    };
    let on_server = f
        .association
        .and_then(|a| views.networks().port(&a.port_id))
        .is_some_and(|p| p.device_id == server);
    if !on_server {
        return Err(ApiError::conflict(format!(
            "Floating IP {address} is not associated with instance {server}."
        )));
    }
    Ok(FloatingOp {
        fip: f.id,
        to: None,
        address: address.to_string(),
        server: server.to_string(),
    })
}

/// Runs a resolved add/remove through the network service's shared association.
pub async fn apply(st: &ApiState, caller: &Caller, op: &FloatingOp) -> Result<(), ApiError> {
    let (nst, nc) = neutron(st, caller);
    let f = {
        let views = st.engine.world().read();
        views
            .floating_ips()
            .get(&op.fip)
            .cloned()
            .ok_or_else(|| ApiError::not_found("floating IP not found"))?
    };
    let port = op.to.map(|(p, ip)| (p, Some(ip)));
    network::floating_ips::set_association(&nst, &nc, &f, None, Some(port))
        .await
        .map_err(|e| match op.to {
            Some((_, fixed)) => ApiError::bad_request(format!(
                "Unable to associate floating IP {} to fixed IP {fixed} for instance {}. Error: {}",
                op.address, op.server, e.message
            )),
            None => ApiError::new(e.status, e.message),
        })
}

/// `addFloatingIp` (2.1-2.43): `{"address", "fixed_address"?}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFloatingIp {
    address: String,
    fixed_address: Option<String>,
}

/// `removeFloatingIp` (2.1-2.43): `{"address"}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveFloatingIp {
    address: String,
}

/// Nova ended both actions at 2.43.
fn action_version(version: Version) -> Result<(), ApiError> {
    if version.at_least(44) {
        Err(ApiError::not_found("The resource could not be found."))
    } else {
        Ok(())
    }
}

/// Nova's `ip_address` format: an IPv4 or IPv6 address.
fn check_ip(field: &str, v: &str) -> Result<(), ApiError> {
    if v.parse::<IpAddr>().is_err() {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {field}. Value: {v}. '{v}' is not a 'ipv4'"
        )));
    }
    Ok(())
}

impl Action for AddFloatingIp {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        action_version(version)?;
        let a: Self = crate::body::from_value(name, arg)?;
        check_ip("address", &a.address)?;
        if let Some(f) = &a.fixed_address {
            check_ip("fixed_address", f)?;
        }
        Ok(a)
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let server = cx.instance.id().to_string();
        let op = resolve_add(
            cx.views,
            cx.caller,
            &server,
            &self.address,
            self.fixed_address.as_deref(),
        )?;
        Ok(Prepared::network(crate::actions::NetworkOp::Floating(op)))
    }
}

impl Action for RemoveFloatingIp {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        action_version(version)?;
        let a: Self = crate::body::from_value(name, arg)?;
        check_ip("address", &a.address)?;
        Ok(a)
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let server = cx.instance.id().to_string();
        Ok(Prepared::network(crate::actions::NetworkOp::Floating(
            resolve_remove(cx.views, cx.caller, &server, &self.address)?,
        )))
    }
}
