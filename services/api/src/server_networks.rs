//! Servers on networks (issue 13): the create request's `networks` checked and
//! resolved as Nova's `_check_requested_networks` / `validate_networks` do, the
//! server's `addresses` from its ports, `/servers/{id}/ips` and the interface API
//! (`/servers/{id}/os-interface`, Nova's `attach_interfaces.py`).
//!
//! Invariants:
//! - A create's networks are resolved before anything is appended: `auto` (and an
//!   absent `networks` before 2.37) becomes the one network available to the project,
//!   a port request names its port's network, and every refusal is Nova's status and
//!   message. The build request records the resolved list (`InstanceSpec::networks`),
//!   so the compute agent allocates exactly what was checked (see
//!   [`engine::server_ports`]).
//! - A server's addresses are read from the ports whose `device_id` is the server
//!   (never cached on the server): what the network service holds is what is shown.
//! - Interface attach and detach act on the ports synchronously (the hypervisor is
//!   simulated), through the same port steps the compute agent uses.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::instance::{Instance, NetworkRequest, Networks};
use domain::network::server::free_slot;
use domain::network::{FixedIpRequest, Network, Port};
use domain::{NetworkId, PortId, VmState};
use engine::server_ports::{self, PortsError};
use engine::EngineError;
use projections::Views;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::context::{Caller, JsonBody};
use crate::error::ApiError;
use crate::microversion::Version;
use crate::servers::visible;
use crate::ApiState;

/// Whether `caller` sees network `n` (Neutron's visibility: its own, shared or
/// external networks; every network for an admin).
fn network_visible(n: &Network, caller: &Caller) -> bool {
    caller.is_admin || n.spec.project_id == caller.project || n.spec.shared || n.spec.external
}

/// Nova's `_get_available_networks` without ids: the project's own unshared networks,
/// then the shared ones. Departure: an external network (`router:external`) is never
/// chosen by itself (it is where floating IPs and router gateways come from); Nova
/// would take the admin project's own `public` network and find the choice ambiguous,
/// so `openstack server create` without `--nic` would fail for the admin.
fn available_networks<'a>(views: &'a Views, project: &str) -> Vec<&'a Network> {
    let nets = views.networks();
    let mut out: Vec<&Network> = nets
        .all()
        .filter(|n| n.spec.project_id == project && !n.spec.shared && !n.spec.external)
        .collect();
    out.extend(nets.all().filter(|n| n.spec.shared));
    out
}

/// Resolves and checks a create's `networks` for `max_count` servers (Nova's
/// `_get_requested_networks`, the multiple-create checks and `validate_networks`).
pub fn resolve(
    views: &Views,
    caller: &Caller,
    requested: &Networks,
    max_count: u32,
    version: Version,
) -> Result<Networks, ApiError> {
    let items = match requested {
        Networks::None => return Ok(Networks::None),
        Networks::Auto => {
            let nets = available_networks(views, &caller.project);
            if nets.len() > 1 {
                return Err(ApiError::conflict(
                    "Multiple possible networks found, use a Network ID to be more specific.",
                ));
            }
            return match nets.first() {
                Some(n) => Ok(Networks::List(vec![NetworkRequest {
                    uuid: Some(n.spec.id.to_string()),
                    port: None,
                    fixed_ip: None,
                    tag: None,
                }])),
                // 2.37 "auto": Nova would auto-allocate a topology, which needs
                // Neutron's auto-allocated-topology (not offered here).
                None if version.at_least(37) => Err(ApiError::bad_request(format!(
                    "Unable to automatically allocate a network for project {}",
                    caller.project
                ))),
                // Before 2.37 a server with no network available boots without one.
                None => Ok(Networks::None),
            };
        }
        Networks::List(items) => items,
    };
    let mut ports_seen = BTreeSet::new();
    for r in items {
        if let Some(p) = &r.port {
            if !ports_seen.insert(p.clone()) {
                return Err(ApiError::bad_request(format!(
                    "Port ID '{p}' was specified twice: you cannot attach a port multiple times."
                )));
            }
            if let Some(a) = &r.fixed_ip {
                return Err(ApiError::bad_request(format!(
                    "Specified Fixed IP '{a}' cannot be used with port '{p}': the two cannot be specified together."
                )));
            }
        }
    }
    if max_count > 1 {
        if items.iter().any(|r| r.port.is_some()) {
            return Err(ApiError::bad_request(
                "Failed to launch instances: Unable to launch multiple instances with a single configured port ID. Please launch your instance one by one with different ports.",
            ));
        }
        if items
            .iter()
            .any(|r| r.uuid.is_some() && r.fixed_ip.is_some())
        {
            return Err(ApiError::bad_request(
                "Failed to launch instances: max_count cannot be greater than 1 if an fixed_ip is specified.",
            ));
        }
    }
    let nets = views.networks();
    let mut out = Vec::new();
    let mut requested_nets: Vec<String> = Vec::new();
    for r in items {
        if let Some(p) = &r.port {
            let port = PortId::parse(p)
                .and_then(|id| nets.port(&id))
                .filter(|port| caller.is_admin || port.project_id == caller.project)
                .ok_or_else(|| ApiError::bad_request(format!("Port id {p} could not be found.")))?;
            if !port.device_id.is_empty() {
                return Err(ApiError::conflict(format!("Port {p} is still in use.")));
            }
            if port.fixed_ips.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "Port {p} requires a FixedIP in order to be used."
                )));
            }
            out.push(NetworkRequest {
                uuid: Some(port.network_id.to_string()),
                ..r.clone()
            });
            continue;
        }
        let Some(u) = &r.uuid else { continue };
        requested_nets.push(u.clone());
        if let Some(a) = &r.fixed_ip {
            let net = NetworkId::parse(u).and_then(|id| nets.get(&id));
            let ip: Option<std::net::IpAddr> = a.parse().ok();
            if let (Some(net), Some(ip)) = (net, ip) {
                if let Some(holder) = net
                    .ports
                    .values()
                    .find(|p| p.fixed_ips.iter().any(|f| f.ip_address == ip))
                {
                    return Err(ApiError::bad_request(format!(
                        "Fixed IP address {a} is already in use on instance {}.",
                        holder.device_id
                    )));
                }
            }
        }
        out.push(r.clone());
    }
    // Nova: every requested network exists (and is visible) and has a subnet.
    let mut missing = Vec::new();
    for u in &requested_nets {
        match NetworkId::parse(u)
            .and_then(|id| nets.get(&id))
            .filter(|n| network_visible(n, caller))
        {
            Some(n) if n.subnets.is_empty() => {
                return Err(ApiError::bad_request(format!(
                    "Network {u} requires a subnet in order to boot instances on."
                )));
            }
            Some(_) => {}
            None if !missing.contains(u) => missing.push(u.clone()),
            None => {}
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Network {} could not be found.",
            missing.join(", ")
        )));
    }
    // An address outside every subnet of its network: Neutron's InvalidIpForNetwork,
    // which Nova's port create turns into this message.
    for r in &out {
        let (Some(u), Some(a), None) = (&r.uuid, &r.fixed_ip, &r.port) else {
            continue;
        };
        let Some(net) = NetworkId::parse(u).and_then(|id| nets.get(&id)) else {
            continue;
        };
        let inside = a
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| net.subnets.values().any(|s| s.cidr.contains(ip)));
        if !inside {
            return Err(ApiError::bad_request(format!(
                "Fixed IP {a} is not a valid ip address for network {u}."
            )));
        }
    }
    Ok(Networks::List(out))
}

/// One address of a server as `addresses` shows it: with its type and MAC when
/// `extend` (Nova's `extend_address`: every view but the update and rebuild
/// responses before 2.75).
fn address(ip: std::net::IpAddr, mac: &str, kind: &str, extend: bool) -> Value {
    let version = if ip.is_ipv4() { 4 } else { 6 };
    if !extend {
        return json!({"version": version, "addr": ip.to_string()});
    }
    json!({
        "version": version,
        "addr": ip.to_string(),
        "OS-EXT-IPS:type": kind,
        "OS-EXT-IPS-MAC:mac_addr": mac,
    })
}

/// The floating addresses associated with `port` (Neutron floating IPs whose
/// association names it), in creation order.
fn floating_addresses(views: &Views, port: &Port) -> Vec<std::net::IpAddr> {
    let mut fips: Vec<_> = views.floating_ips().of_port(port.id).collect();
    fips.sort_by_key(|f| (f.created_at, f.id));
    fips.iter().map(|f| f.floating_ip_address).collect()
}

/// A server's addresses by network name (Nova's network info cache view): each port
/// whose device is the server, in creation order, its fixed addresses then its
/// floating ones.
pub fn addresses(views: &Views, server: &str, extend: bool) -> Value {
    let nets = views.networks();
    let mut out = Map::new();
    for p in nets.ports_of_device(server) {
        let Some(n) = nets.get(&p.network_id) else {
            continue;
        };
        let list = out
            .entry(n.spec.name.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = list else { continue };
        for f in &p.fixed_ips {
            list.push(address(f.ip_address, &p.mac_address, "fixed", extend));
        }
        for ip in floating_addresses(views, p) {
            list.push(address(ip, &p.mac_address, "floating", extend));
        }
    }
    Value::Object(out)
}

/// Whether one of the server's fixed addresses of `version` matches `pattern`
/// (Nova's `ip` / `ip6` list filters: a regular expression searched in the address).
pub fn address_matches(views: &Views, server: &str, re: &regex::Regex, v6: bool) -> bool {
    views.networks().ports_of_device(server).iter().any(|p| {
        p.fixed_ips
            .iter()
            .any(|f| f.ip_address.is_ipv6() == v6 && re.is_match(&f.ip_address.to_string()))
    })
}

/// `ips` shows only the version and address of each.
fn ips_view(addresses: &Value) -> Value {
    let mut out = Map::new();
    if let Value::Object(m) = addresses {
        for (k, list) in m {
            let short: Vec<Value> = list
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|a| json!({"version": a["version"], "addr": a["addr"]}))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(k.clone(), Value::Array(short));
        }
    }
    Value::Object(out)
}

/// GET /servers/{id}/ips
pub async fn ips_index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let i = visible(&views, &id, &caller)?;
    let all = addresses(&views, &i.id().to_string(), false);
    Ok(Json(json!({"addresses": ips_view(&all)})))
}

/// GET /servers/{id}/ips/{network}
pub async fn ips_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, network)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let i = visible(&views, &id, &caller)?;
    let all = ips_view(&addresses(&views, &i.id().to_string(), false));
    match all.get(&network) {
        Some(list) => Ok(Json(json!({ network: list }))),
        None => Err(ApiError::not_found(
            "Instance is not a member of specified network",
        )),
    }
}

/// The device tag a boot request gave the port (`networks[i].tag`, 2.32+): the request
/// naming the port, or the one whose created port it is (its derived id). Tags of
/// interfaces attached later are not recorded.
fn boot_tag(i: &Instance, p: &Port) -> Option<String> {
    let Networks::List(items) = &i.spec.networks else {
        return None;
    };
    items.iter().enumerate().find_map(|(n, r)| {
        let mine = match r.port.as_deref().and_then(PortId::parse) {
            Some(port) => port == p.id,
            None => domain::network::server::server_port_id(i.id(), n) == p.id,
        };
        mine.then(|| r.tag.clone()).flatten()
    })
}

/// Nova's interfaceAttachment view of a port of server `i`.
fn attachment(i: &Instance, p: &Port, version: Version) -> Value {
    let fixed: Vec<Value> = p
        .fixed_ips
        .iter()
        .map(|f| json!({"subnet_id": f.subnet_id.to_string(), "ip_address": f.ip_address.to_string()}))
        .collect();
    let mut v = json!({
        "net_id": p.network_id.to_string(),
        "port_id": p.id.to_string(),
        "mac_addr": p.mac_address,
        "port_state": p.status(),
        "fixed_ips": fixed,
    });
    if version.at_least(70) {
        v["tag"] = json!(boot_tag(i, p));
    }
    v
}

/// GET /servers/{id}/os-interface
pub async fn interfaces_index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let i = visible(&views, &id, &caller)?;
    let list: Vec<Value> = views
        .networks()
        .ports_of_device(&i.id().to_string())
        .iter()
        .map(|p| attachment(i, p, caller.version()))
        .collect();
    Ok(Json(json!({"interfaceAttachments": list})))
}

/// GET /servers/{id}/os-interface/{port_id}
pub async fn interfaces_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, port)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let i = visible(&views, &id, &caller)?;
    let p = PortId::parse(&port)
        .and_then(|pid| views.networks().port(&pid))
        .ok_or_else(|| ApiError::not_found(format!("Port id {port} could not be found.")))?;
    if p.device_id != i.id().to_string() {
        return Err(ApiError::not_found(format!(
            "Instance {id} does not have a port with id {port}"
        )));
    }
    Ok(Json(
        json!({"interfaceAttachment": attachment(i, p, caller.version())}),
    ))
}

/// Nova's `check_instance_lock` and `check_instance_state(vm_state=[ACTIVE, PAUSED,
/// STOPPED], task_state=[None])` of interface attach and detach.
fn check_state(i: &Instance, caller: &Caller, action: &str) -> Result<(), ApiError> {
    let id = i.id();
    if i.locked.is_some() && !caller.is_admin {
        return Err(ApiError::conflict(format!("Instance {id} is locked")));
    }
    if !matches!(
        i.vm_state,
        VmState::Active | VmState::Paused | VmState::Stopped
    ) {
        return Err(ApiError::conflict(format!(
            "Cannot '{action}' instance {id} while it is in vm_state {}",
            i.vm_state.as_str()
        )));
    }
    if let Some(t) = i.task_state {
        return Err(ApiError::conflict(format!(
            "Cannot '{action}' instance {id} while it is in task_state {}",
            t.as_str()
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    #[serde(rename = "interfaceAttachment")]
    attachment: Option<Attach>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attach {
    #[serde(default)]
    net_id: Option<String>,
    #[serde(default)]
    port_id: Option<String>,
    #[serde(default)]
    fixed_ips: Option<Vec<AttachIp>>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachIp {
    ip_address: String,
}

fn uuid_field(field: &str, v: &Option<String>) -> Result<(), ApiError> {
    match v {
        Some(s) if uuid::Uuid::parse_str(s).is_err() => Err(crate::body::invalid(
            field,
            &Value::String(s.clone()),
            &format!("'{s}' is not a 'uuid'"),
        )),
        _ => Ok(()),
    }
}

/// Nova's faults of an attach for a refusal of the network service.
fn attach_error(e: PortsError, network: &str) -> ApiError {
    match e {
        PortsError::Refused(n) => match n.kind {
            "PortNotFound" => ApiError::not_found(n.message.replace("Port ", "Port id ")),
            "PortInUse" => ApiError::conflict(n.message),
            "NetworkNotFound" => ApiError::not_found(n.message),
            "IpAddressGenerationFailure" => ApiError::bad_request(format!(
                "No fixed IP addresses available for network: {network}"
            )),
            "IpAddressAlreadyAllocated" | "IpAddressInUse" => ApiError::conflict(n.message),
            // Nova's PortLimitExceeded.
            "OverQuota" => ApiError::forbidden("Maximum number of ports exceeded"),
            _ => ApiError::bad_request(n.message),
        },
        PortsError::Engine(e) => ApiError::from(e),
    }
}

/// POST /servers/{id}/os-interface
pub async fn interfaces_create(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let body: AttachBody = crate::body::from_value("", &body)?;
    let a = body.attachment.unwrap_or(Attach {
        net_id: None,
        port_id: None,
        fixed_ips: None,
        tag: None,
    });
    if a.tag.is_some() && !caller.version().at_least(49) {
        return Err(crate::body::unexpected(&["tag"]));
    }
    uuid_field("net_id", &a.net_id)?;
    uuid_field("port_id", &a.port_id)?;
    let req_ip = a
        .fixed_ips
        .as_ref()
        .and_then(|f| f.first())
        .map(|f| f.ip_address.clone());
    if let Some(ip) = &req_ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(crate::body::invalid(
                "fixed_ips/0/ip_address",
                &Value::String(ip.clone()),
                &format!("'{ip}' is not a 'ip-address'"),
            ));
        }
    }
    if a.net_id.is_some() && a.port_id.is_some() {
        return Err(ApiError::bad_request(
            "Must not input both network_id and port_id",
        ));
    }
    if req_ip.is_some() && a.net_id.is_none() {
        return Err(ApiError::bad_request(
            "Must input network_id when request IP address",
        ));
    }
    let (inst, zone, host) = {
        let views = st.engine.world().read();
        let i = visible(&views, &id, &caller)?.clone();
        check_state(&i, &caller, "attach_interface")?;
        let zone = i
            .host
            .as_ref()
            .map(|h| views.host_availability_zone(h))
            .unwrap_or_else(|| "nova".into());
        let host = i
            .host
            .as_ref()
            .map(|h| h.as_str().to_string())
            .unwrap_or_default();
        (i, zone, host)
    };
    let actor = format!("compute-api:{}", caller.user);
    let correlation = caller.meta().correlation_id;
    let port = if let Some(p) = &a.port_id {
        let pid = {
            let views = st.engine.world().read();
            let port = PortId::parse(p)
                .and_then(|pid| views.networks().port(&pid))
                .filter(|x| caller.is_admin || x.project_id == caller.project)
                .ok_or_else(|| ApiError::not_found(format!("Port id {p} could not be found.")))?;
            // Nova's `PortInUse`, for this server's own ports too.
            if !port.device_id.is_empty() {
                return Err(ApiError::conflict(format!("Port {p} is still in use.")));
            }
            port.id
        };
        server_ports::bind_users_port(&st.engine, &actor, &correlation, &inst, pid, &host, &zone)
            .await
            .map_err(|e| attach_error(e, ""))?;
        pid
    } else {
        let network = {
            let views = st.engine.world().read();
            match &a.net_id {
                Some(n) => NetworkId::parse(n)
                    .and_then(|nid| views.networks().get(&nid))
                    .filter(|net| network_visible(net, &caller))
                    .map(|net| net.spec.id)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("Network {n} could not be found."))
                    })?,
                None => {
                    let nets = available_networks(&views, &inst.spec.project_id);
                    if nets.len() > 1 {
                        return Err(ApiError::bad_request(
                            "More than one possible network found. Specify network ID(s) to select which one(s) to connect to.",
                        ));
                    }
                    nets.first().map(|n| n.spec.id).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "No specific network was requested and none are available for project '{}'.",
                            inst.spec.project_id
                        ))
                    })?
                }
            }
        };
        let fixed = match &req_ip {
            Some(ip) => {
                let ip: std::net::IpAddr = ip.parse().expect("checked above");
                let views = st.engine.world().read();
                if let Some(holder) = views.networks().get(&network).and_then(|n| {
                    n.ports
                        .values()
                        .find(|p| p.fixed_ips.iter().any(|f| f.ip_address == ip))
                }) {
                    return Err(ApiError::conflict(format!(
                        "Fixed IP address {ip} is already in use on instance {}.",
                        holder.device_id
                    )));
                }
                Some(vec![FixedIpRequest {
                    subnet_id: None,
                    ip_address: Some(ip),
                }])
            }
            None => None,
        };
        // The next free slot past the boot requests; a racing attach that took it
        // makes the create refuse (PortExists), and the next slot is tried.
        let first = match &inst.spec.networks {
            Networks::List(l) => l.len(),
            _ => 0,
        };
        // The server's recorded groups; a server created without ports gets its
        // project's `default` (Nova's `instance.security_groups`).
        let groups = if !server_ports::secured(&st.engine, &network) {
            Vec::new()
        } else if let Some(g) = server_ports::recorded_groups(&st.engine, inst.id()) {
            g
        } else {
            let d =
                crate::server_security_groups::default_group(&st, &caller, &inst.spec.project_id)
                    .await?;
            vec![d.0]
        };
        let mut created = None;
        for _ in 0..4 {
            let slot = {
                let views = st.engine.world().read();
                free_slot(inst.id(), first, |p| views.networks().port(&p).is_some())
            };
            let Some((_, pid)) = slot else {
                return Err(ApiError::forbidden("Maximum number of ports exceeded"));
            };
            let req = domain::network::NetworkCommand::CreatePort(Box::new(
                domain::network::PortRequest {
                    id: pid,
                    name: String::new(),
                    description: String::new(),
                    project_id: inst.spec.project_id.clone(),
                    fixed_ips: fixed.clone(),
                    mac_address: None,
                    mac_candidates: server_ports::mac_candidates(),
                    device_id: inst.id().to_string(),
                    device_owner: domain::network::server::device_owner(&zone),
                    admin_state_up: true,
                    security_groups: groups.clone(),
                    port_security_enabled: None,
                    allowed_address_pairs: Vec::new(),
                    binding_host: host.clone(),
                    binding_vnic_type: "normal".into(),
                    binding_profile: "{}".into(),
                    tags: vec![],
                },
            ));
            // The port counts against the project's port quota (Neutron's OverQuota
            // becomes Nova's 403 below).
            let project = inst.spec.project_id.clone();
            st.engine
                .reserve_network(
                    &project,
                    domain::network::quota::NetResource::Port,
                    pid.0,
                    &caller.ctx(),
                    &caller.meta(),
                )
                .await
                .map_err(|e| attach_error(e.into(), &network.to_string()))?;
            match st
                .engine
                .network(&network, req, &caller.ctx(), &caller.meta())
                .await
            {
                Ok(_) => {
                    created = Some(pid);
                    break;
                }
                Err(EngineError::Domain(domain::DomainError::Network(e)))
                    if e.kind == "PortExists" => {}
                Err(e) => {
                    st.engine
                        .release_network(&project, vec![pid.0], &caller.ctx(), &caller.meta())
                        .await;
                    return Err(attach_error(e.into(), &network.to_string()));
                }
            }
        }
        created.ok_or_else(|| ApiError::conflict("Interface attach raced; try again"))?
    };
    let views = st.engine.world().read();
    let p = views
        .networks()
        .port(&port)
        .ok_or_else(|| ApiError::not_found(format!("Port id {port} could not be found.")))?;
    let mut v = attachment(&inst, p, caller.version());
    if caller.version().at_least(70) && a.tag.is_some() {
        // The attach's reply shows the tag it was given (later views do not: tags of
        // attached interfaces are not recorded).
        v["tag"] = json!(a.tag);
    }
    Ok(Json(json!({"interfaceAttachment": v})))
}

/// DELETE /servers/{id}/os-interface/{port_id}
pub async fn interfaces_delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, port)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (sid, pid) = {
        let views = st.engine.world().read();
        let i = visible(&views, &id, &caller)?;
        check_state(i, &caller, "detach_interface")?;
        let attached = PortId::parse(&port)
            .and_then(|pid| views.networks().port(&pid))
            .filter(|p| p.device_id == i.id().to_string())
            .map(|p| p.id);
        let Some(pid) = attached else {
            return Err(ApiError::not_found(format!("Port {port} is not attached")));
        };
        (i.id(), pid)
    };
    let actor = format!("compute-api:{}", caller.user);
    server_ports::release_port(&st.engine, &actor, &caller.meta().correlation_id, sid, pid)
        .await
        .map_err(|e| attach_error(e, ""))?;
    Ok(StatusCode::ACCEPTED)
}
