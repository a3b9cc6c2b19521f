//! `/v2.0/ports`: create, list, show, update, delete (on the network aggregate: the
//! port's addresses and MAC are allocated in the same commit that records it).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use domain::network::{
    valid_mac, AddressPair, FixedIpRequest, Network, NetworkCommand, PortPatch, PortRequest,
    MAC_PREFIX,
};
use domain::{NetworkId, PortId, SubnetId};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::body::{self, Attrs};
use crate::error::NetworkError;
use crate::extract::{Path, QueryPairs};
use crate::list::ListQuery;
use crate::quotas;
use crate::{security_groups, view, NetworkState};
use domain::network::quota::NetResource;

/// How many generated MACs a create tries (each is free with near certainty).
const MAC_CANDIDATES: usize = 16;

/// Fresh `fa:16:3e:xx:xx:xx` addresses (Neutron's `base_mac`).
pub fn mac_candidates() -> Vec<String> {
    (0..MAC_CANDIDATES)
        .map(|_| {
            let b = Uuid::new_v4();
            let b = b.as_bytes();
            format!("{MAC_PREFIX}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
        })
        .collect()
}

/// The network's owner (or an admin) may choose addresses and MACs and create ports
/// of network devices (Neutron's `ADMIN_OR_NET_OWNER_MEMBER`).
fn net_owner(n: &Network, c: &Caller) -> bool {
    c.is_admin() || n.spec.project_id == c.project
}

fn fixed_ips(a: &mut Attrs) -> Result<Option<Vec<FixedIpRequest>>, NetworkError> {
    match a.take("fixed_ips") {
        None => Ok(None),
        Some(v) => fixed_ip_list(&v, "fixed_ips").map(Some),
    }
}

/// A list of `{subnet_id, ip_address}` (a port's `fixed_ips`, a gateway's
/// `external_fixed_ips`).
pub(crate) fn fixed_ip_list(v: &Value, attr: &str) -> Result<Vec<FixedIpRequest>, NetworkError> {
    let bad =
        |why: String| NetworkError::invalid(format!("Invalid input for {attr}. Reason: {why}"));
    let arr = v
        .as_array()
        .ok_or_else(|| bad(format!("'{v}' is not a list")))?;
    arr.iter()
        .map(|f| {
            let obj = f
                .as_object()
                .ok_or_else(|| bad(format!("'{f}' is not a dictionary")))?;
            for k in obj.keys() {
                if k != "subnet_id" && k != "ip_address" {
                    return Err(bad(format!("Unrecognized attribute '{k}'")));
                }
            }
            let subnet_id = match obj.get("subnet_id") {
                None => None,
                Some(Value::String(s)) => Some(
                    SubnetId::parse(s).ok_or_else(|| bad(format!("'{s}' is not a valid UUID")))?,
                ),
                Some(v) => return Err(bad(format!("'{v}' is not a valid UUID"))),
            };
            let ip_address = match obj.get("ip_address") {
                None => None,
                Some(Value::String(s)) => Some(
                    s.parse()
                        .map_err(|_| bad(format!("'{s}' is not a valid IP address.")))?,
                ),
                Some(v) => return Err(bad(format!("'{v}' is not a valid IP address."))),
            };
            Ok(FixedIpRequest {
                subnet_id,
                ip_address,
            })
        })
        .collect::<Result<Vec<_>, _>>()
}

fn address_pairs(a: &mut Attrs) -> Result<Option<Vec<AddressPair>>, NetworkError> {
    let Some(v) = a.take("allowed_address_pairs") else {
        return Ok(None);
    };
    let bad = |why: String| {
        NetworkError::invalid(format!(
            "Invalid input for allowed_address_pairs. Reason: {why}"
        ))
    };
    let arr = v
        .as_array()
        .ok_or_else(|| bad(format!("'{v}' is not a list")))?;
    arr.iter()
        .map(|p| {
            let ip = p
                .get("ip_address")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("AllowedAddressPair must contain ip_address".into()))?;
            let ok = ip.parse::<std::net::IpAddr>().is_ok()
                || crate::subnets::cidr("ip_address", ip).is_ok();
            if !ok {
                return Err(bad(format!("'{ip}' is not a valid IP address.")));
            }
            let mac = match p.get("mac_address") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(m)) if valid_mac(&m.to_ascii_lowercase()) => {
                    m.to_ascii_lowercase()
                }
                Some(m) => return Err(bad(format!("'{m}' is not a valid MAC address"))),
            };
            Ok(AddressPair {
                ip_address: ip.to_string(),
                mac_address: mac,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn security_groups(a: &mut Attrs) -> Result<Option<Vec<Uuid>>, NetworkError> {
    // neutron-lib's `convert_none_to_empty_list`.
    if a.take_null("security_groups") {
        return Ok(Some(vec![]));
    }
    match a.strings("security_groups")? {
        None => Ok(None),
        Some(v) => v
            .iter()
            .map(|s| {
                Uuid::parse_str(s).map_err(|_| {
                    NetworkError::invalid(format!(
                        "Invalid input for security_groups. Reason: '{s}' is not a valid UUID."
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

fn mac(a: &mut Attrs) -> Result<Option<String>, NetworkError> {
    match a.string("mac_address", 32)? {
        None => Ok(None),
        Some(m) if valid_mac(&m.to_ascii_lowercase()) => Ok(Some(m.to_ascii_lowercase())),
        Some(m) => Err(NetworkError::invalid(format!(
            "Invalid input for mac_address. Reason: '{m}' is not a valid MAC address."
        ))),
    }
}

fn profile(a: &mut Attrs) -> Result<Option<String>, NetworkError> {
    match a.take("binding:profile") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some("{}".into())),
        Some(v @ Value::Object(_)) => Ok(Some(v.to_string())),
        Some(v) => Err(NetworkError::invalid(format!(
            "Invalid input for binding:profile. Reason: '{v}' is not a dictionary."
        ))),
    }
}

/// The admin-only and owner-only attributes of a port request.
fn check_port_policy(
    n: &Network,
    c: &Caller,
    action: &str,
    fixed: Option<&[FixedIpRequest]>,
    mac: bool,
    device_owner: Option<&str>,
    binding: bool,
) -> Result<(), NetworkError> {
    if binding && !c.is_admin() {
        return Err(NetworkError::policy(&format!("{action}:binding:host_id")));
    }
    if !net_owner(n, c) {
        if fixed.is_some_and(|f| f.iter().any(|x| x.ip_address.is_some())) {
            return Err(NetworkError::policy(&format!(
                "{action}:fixed_ips:ip_address"
            )));
        }
        if mac {
            return Err(NetworkError::policy(&format!("{action}:mac_address")));
        }
        if device_owner.is_some_and(|d| d.starts_with("network:")) {
            return Err(NetworkError::policy(&format!("{action}:device_owner")));
        }
        if !n.spec.shared && !c.is_admin() {
            return Err(NetworkError::policy(action));
        }
    }
    Ok(())
}

/// A port of a create body: its network, the request, the `security_groups` given
/// (None: not given) and whether port security will be on.
type ParsedPort = (NetworkId, PortRequest, Option<Vec<Uuid>>, bool);

/// Reads one port of a create body.
fn parse_create(
    st: &NetworkState,
    mut a: Attrs,
    caller: &Caller,
) -> Result<ParsedPort, NetworkError> {
    let net_id = a.string("network_id", 36)?.ok_or_else(|| {
        NetworkError::bad_request(
            "Failed to parse request. Required attribute 'network_id' not specified",
        )
    })?;
    let n = st.visible_network(&net_id, caller)?;
    let owner = a.owner(caller, "create_port")?;
    let fixed = fixed_ips(&mut a)?;
    let mac = mac(&mut a)?;
    let device_owner = a.string("device_owner", 255)?.unwrap_or_default();
    let binding_host = a.string("binding:host_id", 255)?;
    let binding_profile = profile(&mut a)?;
    let groups = security_groups(&mut a)?;
    check_port_policy(
        &n,
        caller,
        "create_port",
        fixed.as_deref(),
        mac.is_some(),
        Some(&device_owner),
        binding_host.as_deref().is_some_and(|h| !h.is_empty()) || binding_profile.is_some(),
    )?;
    let req = PortRequest {
        id: PortId(Uuid::new_v4()),
        name: a.text("name")?.unwrap_or_default(),
        description: a.text("description")?.unwrap_or_default(),
        project_id: owner,
        fixed_ips: fixed,
        mac_address: mac,
        mac_candidates: mac_candidates(),
        device_id: a.string("device_id", 255)?.unwrap_or_default(),
        device_owner,
        admin_state_up: a.boolean("admin_state_up")?.unwrap_or(true),
        security_groups: vec![],
        port_security_enabled: a.boolean("port_security_enabled")?,
        allowed_address_pairs: address_pairs(&mut a)?.unwrap_or_default(),
        binding_host: binding_host.unwrap_or_default(),
        binding_vnic_type: vnic(&mut a)?.unwrap_or_else(|| "normal".into()),
        binding_profile: binding_profile.unwrap_or_else(|| "{}".into()),
        tags: match a.take("tags") {
            None => vec![],
            Some(v) => crate::tags::unique_strings(&v).map_err(|r| {
                NetworkError::invalid(format!("Invalid input for tags. Reason: {r}"))
            })?,
        },
    };
    a.finish()?;
    let port_security = req
        .port_security_enabled
        .unwrap_or(n.spec.port_security_enabled);
    Ok((n.spec.id, req, groups, port_security))
}

/// `POST /v2.0/ports` (also Neutron's bulk form, all or nothing).
pub async fn create(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let (items, bulk) = body::creates(&raw, "port")?;
    let reqs = items
        .into_iter()
        .map(|a| parse_create(&st, a, &caller))
        .collect::<Result<Vec<_>, _>>()?;
    // The groups last, once every item passed its checks (the default group is
    // created at this first need).
    let mut ready = vec![];
    for (nid, mut req, groups, port_security) in reqs {
        req.security_groups = port_groups(&st, &caller, &req, groups, port_security).await?;
        ready.push((nid, req));
    }
    let mut done: Vec<(NetworkId, PortId, String)> = vec![];
    for (nid, req) in ready {
        let (pid, owner) = (req.id, req.project_id.clone());
        let cmd = NetworkCommand::CreatePort(Box::new(req));
        let res = async {
            st.precheck(&nid, &cmd)?;
            quotas::reserve(&st, &caller, &owner, NetResource::Port, pid.0).await?;
            st.engine
                .network(&nid, cmd, &caller.ctx(), &caller.meta())
                .await
                .map_err(NetworkError::from)
        }
        .await;
        if let Err(e) = res {
            quotas::release(&st, &caller, &owner, pid.0).await;
            for (n, p, o) in done {
                let _ = st
                    .engine
                    .network(
                        &n,
                        NetworkCommand::DeletePort { id: p },
                        &caller.ctx(),
                        &caller.meta(),
                    )
                    .await;
                quotas::release(&st, &caller, &o, p.0).await;
            }
            return Err(e);
        }
        done.push((nid, pid, owner));
    }
    let admin = caller.is_admin();
    let views: Vec<Value> = done
        .iter()
        .map(|(_, pid, _)| st.port(pid).map(|p| view::port(&p, admin)))
        .collect::<Result<_, _>>()?;
    Ok(crate::created("port", views, bulk))
}

/// The security groups of a new port (Neutron's `_get_security_groups_on_port` and
/// `_ensure_default_security_group_on_port`): a network service's port
/// (`network:*`) gets none checked or added; groups given must exist and be the
/// port project's (404 `SecurityGroupNotFound`); none given with port security on is
/// the project's `default` group, created at this first need. Called last, after
/// every other check of the request.
async fn port_groups(
    st: &NetworkState,
    caller: &Caller,
    req: &PortRequest,
    given: Option<Vec<Uuid>>,
    port_security: bool,
) -> Result<Vec<Uuid>, NetworkError> {
    if req.device_owner.starts_with("network:") {
        return Ok(given.unwrap_or_default());
    }
    match given {
        Some(g) => {
            security_groups::check_port_groups(st, caller, &req.project_id, &g)?;
            Ok(g)
        }
        None if port_security => Ok(security_groups::ensure_default(st, caller, &req.project_id)
            .await?
            .map(|id| vec![id.0])
            .unwrap_or_default()),
        None => Ok(vec![]),
    }
}

fn vnic(a: &mut Attrs) -> Result<Option<String>, NetworkError> {
    const VNIC: &[&str] = &[
        "normal",
        "direct",
        "macvtap",
        "baremetal",
        "direct-physical",
        "virtio-forwarder",
        "smart-nic",
        "vdpa",
        "accelerator-direct",
        "accelerator-direct-physical",
        "remote-managed",
    ];
    match a.string("binding:vnic_type", 64)? {
        None => Ok(None),
        Some(v) if VNIC.contains(&v.as_str()) => Ok(Some(v)),
        Some(v) => Err(NetworkError::invalid(format!(
            "Invalid input for binding:vnic_type. Reason: '{v}' is not in {VNIC:?}."
        ))),
    }
}

/// `GET /v2.0/ports`.
pub async fn list(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let q = ListQuery::parse(&q, view::PORT_ATTRS)?;
    let admin = caller.is_admin();
    let items: Vec<Value> = {
        let views = st.engine.world().read();
        views
            .networks()
            .all()
            .flat_map(|n| {
                n.ports
                    .values()
                    .filter(|p| view::port_visible(n, p, &caller))
                    .map(|p| view::port(p, admin))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    Ok(Json(q.respond(
        "ports",
        items,
        &st.url(&headers, "/v2.0/ports"),
    )?))
}

/// `GET /v2.0/ports/{id}`.
pub async fn show(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let (_, p) = st.visible_port(&id, &caller)?;
    Ok(crate::shown("port", view::port(&p, caller.is_admin()), &q))
}

/// `PUT /v2.0/ports/{id}`.
pub async fn update(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    let (n, p) = st.visible_port(&id, &caller)?;
    let mut a = body::resource(&raw, "port")?;
    let patch = PortPatch {
        name: a.text("name")?,
        description: a.text("description")?,
        fixed_ips: fixed_ips(&mut a)?,
        device_id: a.string("device_id", 255)?,
        device_owner: a.string("device_owner", 255)?,
        admin_state_up: a.boolean("admin_state_up")?,
        security_groups: security_groups(&mut a)?,
        port_security_enabled: a.boolean("port_security_enabled")?,
        allowed_address_pairs: address_pairs(&mut a)?,
        binding_host: a.string("binding:host_id", 255)?,
        binding_vnic_type: vnic(&mut a)?,
        binding_profile: profile(&mut a)?,
        mac_address: mac(&mut a)?,
    };
    a.finish()?;
    if !caller.is_admin() && p.project_id != caller.project && n.spec.project_id != caller.project {
        return Err(NetworkError::policy("update_port"));
    }
    let owner = patch.device_owner.as_deref().unwrap_or(&p.device_owner);
    if let Some(g) = patch.security_groups.as_deref() {
        if !owner.starts_with("network:") {
            security_groups::check_port_groups(&st, &caller, &p.project_id, g)?;
        }
    }
    check_port_policy(
        &n,
        &caller,
        "update_port",
        patch.fixed_ips.as_deref(),
        patch.mac_address.is_some(),
        patch.device_owner.as_deref(),
        patch.binding_host.is_some() || patch.binding_profile.is_some(),
    )
    .or_else(|e| {
        // A port's own project may change it on a network it does not own (shared).
        if p.project_id == caller.project
            && e.kind == "PolicyNotAuthorized"
            && e.message == "(rule:update_port) is disallowed by policy"
        {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    st.engine
        .network(
            &n.spec.id,
            NetworkCommand::UpdatePort {
                id: p.id,
                patch: Box::new(patch),
            },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let p = st.port(&p.id)?;
    Ok(Json(json!({"port": view::port(&p, caller.is_admin())})))
}

/// `DELETE /v2.0/ports/{id}`.
pub async fn delete(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, NetworkError> {
    let (n, p) = st.visible_port(&id, &caller)?;
    if !caller.is_admin() && p.project_id != caller.project && n.spec.project_id != caller.project {
        return Err(NetworkError::policy("delete_port"));
    }
    if service_port_owned(&st, &p) {
        return Err(NetworkError::new(
            StatusCode::CONFLICT,
            "ServicePortInUse",
            format!(
                "Port {} cannot be deleted directly via the port API: has device owner {}.",
                p.id, p.device_owner
            ),
        ));
    }
    crate::floating_ips::disassociate_port(&st, &caller, p.id).await?;
    st.engine
        .network(
            &n.spec.id,
            NetworkCommand::DeletePort { id: p.id },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    quotas::release(&st, &caller, &p.project_id, p.id.0).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a port of a network service is still its owner's: a router listing it
/// (interface or gateway) or a floating IP holding its address. Such a port is
/// deleted through its owner only; one its owner no longer lists (left by a crash
/// between the two appends of a router or floating IP operation) may be deleted.
fn service_port_owned(st: &NetworkState, p: &domain::network::Port) -> bool {
    let views = st.engine.world().read();
    match p.device_owner.as_str() {
        domain::router::OWNER_INTERFACE | domain::router::OWNER_GATEWAY => {
            views.routers().owner_of(p.id).is_some()
        }
        domain::router::OWNER_FLOATINGIP => views.floating_ips().owner_of(p.id).is_some(),
        _ => false,
    }
}
