//! `/v2.0/routers`: create, list, show, update, delete, add and remove interfaces.
//!
//! A router (`stratus.api.router.<uuid>`) names its ports; the ports themselves (the
//! gateway port on the external network, the interface ports) live on the network
//! aggregates, which allocate their addresses. An operation touching both subjects
//! appends to them in an order whose crash windows leave nothing a user cannot fix
//! and that a retry does not complete:
//!
//! - Gateway set (create or update): the gateway port is created first, with an id
//!   derived from the router and the external network ([`derived_port`]), then the
//!   router records it, then the previous gateway port is deleted. A crash after the
//!   port leaves a port the router does not list: a retry finds it (`PortExists` with
//!   this router as device) and records it; any later gateway change or the router's
//!   delete sweeps such strays.
//! - Gateway cleared: the router drops it first, then the port is deleted (a crash
//!   leaves a stray swept as above).
//! - add_router_interface by subnet: the port (id derived from router and subnet,
//!   address the subnet's gateway) is created first, then the router records the
//!   interface; a refusal of the second step deletes the port again. A crash between
//!   leaves a port a retry of the same add adopts.
//! - add_router_interface by port: the port is claimed (device_id, device_owner)
//!   first, then recorded; a refusal releases it. A crash between leaves a port owned
//!   by the router's id that a retry adopts (the device is this router).
//! - remove_router_interface and router delete: the router drops the port first, then
//!   the port is deleted. A crash between leaves a port the router no longer lists;
//!   such a port is not protected by the port API any more (ports.rs: a service port
//!   is refused deletion only while its router or floating IP lists it), so its owner
//!   deletes it, and a delete of the router sweeps it.
//!
//! Racing operations on one router are serialised by the router subject's sequence;
//! the checks a handler makes against other records (subnet overlaps with the
//! gateway network, floating IPs using an interface) are read-side and may race.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::network::{Cidr, FixedIpRequest, NetworkCommand, PortPatch, PortRequest};
use domain::router::{
    self, bad_request, derived_port, Gateway, Interface, Router, RouterCommand, RouterPatch,
    OWNER_GATEWAY, OWNER_INTERFACE,
};
use domain::{NetworkId, PortId, RouterId, SubnetId};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::body::{self, Attrs};
use crate::error::NetworkError;
use crate::extract::{Path, QueryPairs};
use crate::list::ListQuery;
use crate::quotas;
use crate::{view, NetworkState};
use domain::network::quota::NetResource;

/// Purposes of derived port ids.
const GATEWAY_PORT: u8 = 1;
const INTERFACE_PORT: u8 = 2;

/// A requested gateway.
#[derive(Debug)]
struct GatewayRequest {
    network_id: String,
    enable_snat: Option<bool>,
    fixed_ips: Option<Vec<FixedIpRequest>>,
}

/// `external_gateway_info`: None absent, Some(None) null or `{}` (no gateway).
fn gateway_info(a: &mut Attrs) -> Result<Option<Option<GatewayRequest>>, NetworkError> {
    let Some(v) = a.take("external_gateway_info") else {
        return Ok(None);
    };
    let bad = |why: String| {
        NetworkError::invalid(format!(
            "Invalid input for external_gateway_info. Reason: {why}"
        ))
    };
    let obj = match &v {
        Value::Null => return Ok(Some(None)),
        Value::Object(o) if o.is_empty() => return Ok(Some(None)),
        Value::Object(o) => o,
        v => return Err(bad(format!("'{v}' is not a dictionary."))),
    };
    let allowed = ["network_id", "enable_snat", "external_fixed_ips"];
    if obj.keys().any(|k| !allowed.contains(&k.as_str())) || !obj.contains_key("network_id") {
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        return Err(bad(format!(
            "Validation of dictionary's keys failed. Expected keys: {{'network_id'}} \
             Provided keys: {{'{}'}}",
            keys.join("', '")
        )));
    }
    let network_id = match &obj["network_id"] {
        Value::String(s) if Uuid::parse_str(s).is_ok() => s.clone(),
        v => return Err(bad(format!("'{v}' is not a valid UUID"))),
    };
    let enable_snat = match obj.get("enable_snat") {
        None => None,
        Some(v) => Some(
            body::to_bool(v)
                .ok_or_else(|| bad(format!("'{v}' cannot be converted to boolean.")))?,
        ),
    };
    let fixed_ips = match obj.get("external_fixed_ips") {
        None => None,
        Some(v) => Some(crate::ports::fixed_ip_list(v, "external_fixed_ips")?),
    };
    Ok(Some(Some(GatewayRequest {
        network_id,
        enable_snat,
        fixed_ips,
    })))
}

/// Neutron's admin-only gateway attributes (`<action>:external_gateway_info:...`).
fn check_gateway_policy(
    c: &Caller,
    action: &str,
    g: Option<&GatewayRequest>,
) -> Result<(), NetworkError> {
    let Some(g) = g else { return Ok(()) };
    if c.is_admin() {
        return Ok(());
    }
    if g.enable_snat.is_some() {
        return Err(NetworkError::policy(&format!(
            "{action}:external_gateway_info:enable_snat"
        )));
    }
    if g.fixed_ips.is_some() {
        return Err(NetworkError::policy(&format!(
            "{action}:external_gateway_info:external_fixed_ips"
        )));
    }
    Ok(())
}

impl NetworkState {
    /// A live router (after a command: it exists).
    pub(crate) fn router(&self, id: &RouterId) -> Result<Router, NetworkError> {
        self.engine
            .world()
            .read()
            .routers()
            .get(id)
            .cloned()
            .ok_or_else(|| router::router_not_found(id).into())
    }

    /// A router the caller may see (its project's, or any for an admin).
    pub(crate) fn visible_router(&self, id: &str, c: &Caller) -> Result<Router, NetworkError> {
        RouterId::parse(id)
            .and_then(|rid| self.engine.world().read().routers().get(&rid).cloned())
            .filter(|r| view::router_visible(r, c))
            .ok_or_else(|| router::router_not_found(id).into())
    }

    /// Creates a port of a network service (a router's or a floating IP's). A port of
    /// this id already there for the same device is the one an earlier attempt
    /// created: it is adopted (the retry completes).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn service_port(
        &self,
        c: &Caller,
        net: NetworkId,
        id: PortId,
        project: &str,
        fixed_ips: Option<Vec<FixedIpRequest>>,
        device_id: &str,
        owner: &str,
    ) -> Result<domain::network::Port, NetworkError> {
        let req = PortRequest {
            id,
            name: String::new(),
            description: String::new(),
            project_id: project.to_string(),
            fixed_ips,
            mac_address: None,
            mac_candidates: crate::ports::mac_candidates(),
            device_id: device_id.to_string(),
            device_owner: owner.to_string(),
            admin_state_up: true,
            security_groups: vec![],
            port_security_enabled: Some(false),
            allowed_address_pairs: vec![],
            binding_host: String::new(),
            binding_vnic_type: "normal".into(),
            binding_profile: "{}".into(),
            tags: vec![],
        };
        match self
            .engine
            .network(
                &net,
                NetworkCommand::CreatePort(Box::new(req)),
                &c.ctx(),
                &c.meta(),
            )
            .await
        {
            Ok(_) => self.port(&id),
            Err(e) => {
                let e = NetworkError::from(e);
                if e.kind == "PortExists" {
                    if let Ok(p) = self.port(&id) {
                        if p.device_id == device_id && p.device_owner == owner {
                            return Ok(p);
                        }
                    }
                }
                Err(e)
            }
        }
    }

    /// Deletes a port if it is still there (a step of a cleanup: a port already gone
    /// is what the cleanup wanted).
    pub(crate) async fn drop_port(&self, c: &Caller, id: PortId) -> Result<(), NetworkError> {
        let Some(net) = self.engine.world().read().networks().port_network(&id) else {
            return Ok(());
        };
        match self
            .engine
            .network(&net, NetworkCommand::DeletePort { id }, &c.ctx(), &c.meta())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = NetworkError::from(e);
                if e.kind == "PortNotFound" || e.kind == "NetworkNotFound" {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Deletes the router's ports (by `device_id`, of one of `owners`) that the router
    /// does not list: what a crash between two appends left.
    async fn sweep(&self, c: &Caller, rid: RouterId, owners: &[&str]) -> Result<(), NetworkError> {
        let strays: Vec<PortId> = {
            let views = self.engine.world().read();
            let r = views.routers().get(&rid);
            views
                .networks()
                .ports_of_device(&rid.to_string())
                .into_iter()
                .filter(|p| owners.contains(&p.device_owner.as_str()))
                .filter(|p| !r.is_some_and(|r| r.owns_port(p.id)))
                .map(|p| p.id)
                .collect()
        };
        for p in strays {
            self.drop_port(c, p).await?;
        }
        Ok(())
    }

    /// Sets, changes or clears a router's gateway (see the module's ordering).
    async fn apply_gateway(
        &self,
        c: &Caller,
        r: &Router,
        want: Option<GatewayRequest>,
    ) -> Result<(), NetworkError> {
        let cur = r.gateway.clone();
        let Some(w) = want else {
            if let Some(g) = cur {
                self.check_gateway_unused(r, g.network_id)?;
                self.engine
                    .router(&r.id, RouterCommand::SetGateway(None), &c.ctx(), &c.meta())
                    .await?;
                self.drop_port(c, g.port_id).await?;
            }
            return self.sweep(c, r.id, &[OWNER_GATEWAY]).await;
        };
        let net = self.visible_network(&w.network_id, c)?;
        if !net.spec.external {
            return Err(bad_request(
                "router",
                format!("Network {} is not an external network", net.spec.id),
            )
            .into());
        }
        for f in w.fixed_ips.iter().flatten() {
            if let Some(ip) = f.ip_address {
                if net.subnets.values().any(|s| s.gateway_ip == Some(ip)) {
                    return Err(bad_request(
                        "router",
                        format!("External IP {ip} is the same as the gateway IP"),
                    )
                    .into());
                }
            }
        }
        let nid = net.spec.id;
        if let Some(g) = cur.as_ref().filter(|g| g.network_id == nid) {
            // Same network: new addresses for the same port, or only a new SNAT mode.
            if let Some(fixed) = w.fixed_ips {
                let patch = PortPatch {
                    fixed_ips: Some(fixed),
                    ..PortPatch::default()
                };
                self.engine
                    .network(
                        &nid,
                        NetworkCommand::UpdatePort {
                            id: g.port_id,
                            patch: Box::new(patch),
                        },
                        &c.ctx(),
                        &c.meta(),
                    )
                    .await?;
            }
            let snat = w.enable_snat.unwrap_or(g.enable_snat);
            if snat != g.enable_snat {
                let g = Gateway {
                    enable_snat: snat,
                    ..g.clone()
                };
                self.engine
                    .router(
                        &r.id,
                        RouterCommand::SetGateway(Some(g)),
                        &c.ctx(),
                        &c.meta(),
                    )
                    .await?;
            }
            return Ok(());
        }
        if let Some(g) = &cur {
            self.check_gateway_unused(r, g.network_id)?;
        }
        for i in &r.interfaces {
            for old in &i.subnets {
                for s in net.subnets.values() {
                    router::check_overlap(*old, (s.id, s.cidr))?;
                }
            }
        }
        let pid = derived_port(r.id.0, nid.0, GATEWAY_PORT);
        let rid = r.id.to_string();
        self.service_port(c, nid, pid, "", w.fixed_ips, &rid, OWNER_GATEWAY)
            .await?;
        let g = Gateway {
            network_id: nid,
            enable_snat: w.enable_snat.unwrap_or(true),
            port_id: pid,
        };
        if let Err(e) = self
            .engine
            .router(
                &r.id,
                RouterCommand::SetGateway(Some(g)),
                &c.ctx(),
                &c.meta(),
            )
            .await
        {
            self.drop_port(c, pid).await?;
            return Err(e.into());
        }
        if let Some(g) = cur {
            self.drop_port(c, g.port_id).await?;
        }
        self.sweep(c, r.id, &[OWNER_GATEWAY]).await
    }

    /// Neutron's `RouterExternalGatewayInUseByFloatingIp`: floating IPs of the
    /// gateway's network routed through this router keep its gateway.
    fn check_gateway_unused(&self, r: &Router, net: NetworkId) -> Result<(), NetworkError> {
        let used = self.engine.world().read().floating_ips().all().any(|f| {
            f.floating_network_id == net && f.association.is_some_and(|a| a.router_id == r.id)
        });
        if used {
            return Err(NetworkError::new(
                StatusCode::CONFLICT,
                "RouterExternalGatewayInUseByFloatingIp",
                format!(
                    "Gateway cannot be updated for router {}, since a gateway to external \
                     network {net} is required by one or more floating IPs.",
                    r.id
                ),
            ));
        }
        Ok(())
    }
}

/// Neutron's extraroute checks: every nexthop on a subnet of the router's ports and
/// none of the router's own addresses.
fn check_routes(
    st: &NetworkState,
    r: &Router,
    routes: &[domain::network::HostRoute],
) -> Result<(), NetworkError> {
    let (cidrs, ips) = {
        let views = st.engine.world().read();
        let nets = views.networks();
        let mut cidrs = vec![];
        let mut ips = vec![];
        for p in nets.ports_of_device(&r.id.to_string()) {
            for f in &p.fixed_ips {
                if let Some(s) = nets.subnet(&f.subnet_id) {
                    cidrs.push(s.cidr);
                }
                ips.push(f.ip_address);
            }
        }
        (cidrs, ips)
    };
    let text: Vec<String> = routes
        .iter()
        .map(|x| {
            format!(
                "{{'destination': '{}', 'nexthop': '{}'}}",
                x.destination, x.nexthop
            )
        })
        .collect();
    let invalid = |reason: &str| {
        NetworkError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRoutes",
            format!("Invalid format for routes: [{}], {reason}", text.join(", ")),
        )
    };
    for x in routes {
        if !cidrs.iter().any(|c| c.contains(x.nexthop)) {
            return Err(invalid("the nexthop is not connected with router"));
        }
        if ips.contains(&x.nexthop) {
            return Err(invalid("the nexthop is used by router"));
        }
    }
    Ok(())
}

/// `POST /v2.0/routers`.
pub async fn create(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let mut a = body::resource(&raw, "router")?;
    let owner = a.owner(&caller, "create_router")?;
    let name = a.text("name")?.unwrap_or_default();
    let description = a.text("description")?.unwrap_or_default();
    let admin_state_up = a.boolean("admin_state_up")?.unwrap_or(true);
    let gw = gateway_info(&mut a)?.flatten();
    a.finish()?;
    check_gateway_policy(&caller, "create_router", gw.as_ref())?;
    if let Some(g) = &gw {
        // Refuse before anything is appended.
        let n = st.visible_network(&g.network_id, &caller)?;
        if !n.spec.external {
            return Err(bad_request(
                "router",
                format!("Network {} is not an external network", n.spec.id),
            )
            .into());
        }
    }
    let ctx = caller.ctx();
    let id = RouterId(Uuid::new_v4());
    let r = Router {
        id,
        name,
        description,
        project_id: owner,
        admin_state_up,
        gateway: None,
        interfaces: vec![],
        routes: vec![],
        tags: vec![],
        created_at: ctx.now,
        updated_at: ctx.now,
        revision: 0,
        deleted: false,
    };
    quotas::reserve(&st, &caller, &r.project_id, NetResource::Router, id.0).await?;
    if let Err(e) = st
        .engine
        .router(&id, RouterCommand::Create(r.clone()), &ctx, &caller.meta())
        .await
    {
        quotas::release(&st, &caller, &r.project_id, id.0).await;
        return Err(e.into());
    }
    if gw.is_some() {
        st.apply_gateway(&caller, &r, gw).await?;
    }
    let r = st.router(&id)?;
    let v = view::router(&r, st.engine.world().read().networks());
    Ok((StatusCode::CREATED, Json(json!({ "router": v }))).into_response())
}

/// `GET /v2.0/routers`.
pub async fn list(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let q = ListQuery::parse(&q, view::ROUTER_ATTRS)?;
    let items: Vec<Value> = {
        let views = st.engine.world().read();
        views
            .routers()
            .all()
            .filter(|r| view::router_visible(r, &caller))
            .map(|r| view::router(r, views.networks()))
            .collect()
    };
    Ok(Json(q.respond(
        "routers",
        items,
        &st.url(&headers, "/v2.0/routers"),
    )?))
}

/// `GET /v2.0/routers/{id}`.
pub async fn show(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let r = st.visible_router(&id, &caller)?;
    Ok(crate::shown(
        "router",
        view::router(&r, st.engine.world().read().networks()),
        &q,
    ))
}

/// `PUT /v2.0/routers/{id}`.
pub async fn update(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    let r = st.visible_router(&id, &caller)?;
    let mut a = body::resource(&raw, "router")?;
    let patch = RouterPatch {
        name: a.text("name")?,
        description: a.text("description")?,
        admin_state_up: a.boolean("admin_state_up")?,
        routes: crate::subnets::route_list(&mut a, "routes")?,
    };
    let gw = gateway_info(&mut a)?;
    a.finish()?;
    if let Some(routes) = &patch.routes {
        check_routes(&st, &r, routes)?;
    }
    if let Some(g) = &gw {
        check_gateway_policy(&caller, "update_router", g.as_ref())?;
    }
    if patch != RouterPatch::default() || gw.is_none() {
        st.engine
            .router(
                &r.id,
                RouterCommand::Update(patch),
                &caller.ctx(),
                &caller.meta(),
            )
            .await?;
    }
    if let Some(g) = gw {
        let now = st.router(&r.id)?;
        st.apply_gateway(&caller, &now, g).await?;
    }
    let r = st.router(&r.id)?;
    let v = view::router(&r, st.engine.world().read().networks());
    Ok(Json(json!({ "router": v })))
}

/// `DELETE /v2.0/routers/{id}`: refused while interfaces remain; the gateway port
/// goes with the router (after it, see the module's ordering).
pub async fn delete(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, NetworkError> {
    let r = st.visible_router(&id, &caller)?;
    st.engine
        .router(&r.id, RouterCommand::Delete, &caller.ctx(), &caller.meta())
        .await?;
    if let Some(g) = &r.gateway {
        st.drop_port(&caller, g.port_id).await?;
    }
    st.sweep(&caller, r.id, &[OWNER_GATEWAY, OWNER_INTERFACE])
        .await?;
    quotas::release(&st, &caller, &r.project_id, r.id.0).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of add/remove_router_interface: `subnet_id` and/or `port_id`.
fn interface_info(
    raw: &[u8],
    removal: bool,
) -> Result<(Option<String>, Option<String>), NetworkError> {
    let v: Value = serde_json::from_slice(raw)
        .map_err(|_| NetworkError::bad_request("Malformed request body"))?;
    let Value::Object(o) = v else {
        return Err(NetworkError::bad_request("Malformed request body"));
    };
    let take = |k: &str| -> Result<Option<String>, NetworkError> {
        match o.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if Uuid::parse_str(s).is_ok() => Ok(Some(s.clone())),
            Some(v) => {
                let t = match v {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                Err(bad_request("router", format!("'{t}' is not a valid UUID")).into())
            }
        }
    };
    if !o.contains_key("subnet_id") && !o.contains_key("port_id") {
        return Err(bad_request("router", "Either subnet_id or port_id must be specified").into());
    }
    let (s, p) = (take("subnet_id")?, take("port_id")?);
    if !removal && s.is_some() && p.is_some() {
        return Err(bad_request("router", "Cannot specify both subnet-id and port-id").into());
    }
    Ok((s, p))
}

/// Neutron's answer to an interface change.
fn interface_json(r: &Router, i: &Interface) -> Value {
    let subnet_ids: Vec<String> = i.subnets.iter().map(|(s, _)| s.to_string()).collect();
    json!({
        "id": r.id.to_string(),
        "tenant_id": r.project_id,
        "project_id": r.project_id,
        "port_id": i.port_id.to_string(),
        "subnet_id": subnet_ids.first(),
        "subnet_ids": subnet_ids,
        "network_id": i.network_id.to_string(),
    })
}

/// Whether new subnets clash with the router's interfaces or its gateway network's
/// subnets (Neutron checks both).
fn check_new_subnets(
    st: &NetworkState,
    r: &Router,
    new: &[(SubnetId, Cidr)],
) -> Result<(), NetworkError> {
    router::check_interface(r, new)?;
    if let Some(g) = &r.gateway {
        let views = st.engine.world().read();
        if let Some(n) = views.networks().get(&g.network_id) {
            for s in n.subnets.values() {
                if new.iter().any(|(x, _)| *x == s.id) {
                    return Err(bad_request(
                        "router",
                        format!("Router already has a port on subnet {}", s.id),
                    )
                    .into());
                }
                for x in new {
                    router::check_overlap((s.id, s.cidr), *x)?;
                }
            }
        }
    }
    Ok(())
}

/// `PUT /v2.0/routers/{id}/add_router_interface`.
pub async fn add_interface(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    let r = st.visible_router(&id, &caller)?;
    let (subnet_id, port_id) = interface_info(&raw, false)?;
    let rid = r.id.to_string();
    let iface = if let Some(pid) = port_id {
        let (n, p) = st.visible_port(&pid, &caller)?;
        // A port this router already claimed (a retry after a crash) is adopted.
        let retry = p.device_id == rid && p.device_owner == OWNER_INTERFACE;
        if !retry && !p.device_id.is_empty() {
            return Err(NetworkError::new(
                StatusCode::CONFLICT,
                "PortInUse",
                format!(
                    "Unable to complete operation on port {} for network {}. \
                     Port already has an attached device {}.",
                    p.id, p.network_id, p.device_id
                ),
            ));
        }
        if p.fixed_ips.is_empty() {
            return Err(
                bad_request("router", "Router port must have at least one fixed IP").into(),
            );
        }
        let subnets: Vec<(SubnetId, Cidr)> = p
            .fixed_ips
            .iter()
            .filter_map(|f| n.subnets.get(&f.subnet_id).map(|s| (s.id, s.cidr)))
            .collect();
        if subnets.iter().filter(|(_, c)| c.version() == 4).count() > 1 {
            return Err(
                bad_request("router", "Cannot have multiple IPv4 subnets on router port").into(),
            );
        }
        let iface = Interface {
            port_id: p.id,
            network_id: n.spec.id,
            subnets,
        };
        if r.interfaces.contains(&iface) {
            return Ok(Json(interface_json(&r, &iface)));
        }
        check_new_subnets(&st, &r, &iface.subnets)?;
        let previous_owner = p.device_owner.clone();
        let claim = PortPatch {
            device_id: Some(rid.clone()),
            device_owner: Some(OWNER_INTERFACE.into()),
            ..PortPatch::default()
        };
        st.engine
            .network(
                &n.spec.id,
                NetworkCommand::UpdatePort {
                    id: p.id,
                    patch: Box::new(claim),
                },
                &caller.ctx(),
                &caller.meta(),
            )
            .await?;
        if let Err(e) = st
            .engine
            .router(
                &r.id,
                RouterCommand::AddInterface(iface.clone()),
                &caller.ctx(),
                &caller.meta(),
            )
            .await
        {
            let release = PortPatch {
                device_id: Some(String::new()),
                device_owner: Some(previous_owner),
                ..PortPatch::default()
            };
            st.engine
                .network(
                    &n.spec.id,
                    NetworkCommand::UpdatePort {
                        id: p.id,
                        patch: Box::new(release),
                    },
                    &caller.ctx(),
                    &caller.meta(),
                )
                .await?;
            return Err(e.into());
        }
        iface
    } else {
        let sid = subnet_id.unwrap_or_default();
        let (n, s) = st.visible_subnet(&sid, &caller)?;
        let Some(gw) = s.gateway_ip else {
            return Err(bad_request(
                "router",
                "Subnet for router interface must have a gateway IP",
            )
            .into());
        };
        if !caller.is_admin() && s.project_id != caller.project {
            return Err(bad_request(
                "router",
                format!(
                    "Cannot add interface to router because subnet {} is not owned by project making the request",
                    s.id
                ),
            )
            .into());
        }
        let new = [(s.id, s.cidr)];
        check_new_subnets(&st, &r, &new)?;
        let pid = derived_port(r.id.0, s.id.0, INTERFACE_PORT);
        let fixed = vec![FixedIpRequest {
            subnet_id: Some(s.id),
            ip_address: Some(gw),
        }];
        st.service_port(
            &caller,
            n.spec.id,
            pid,
            &r.project_id,
            Some(fixed),
            &rid,
            OWNER_INTERFACE,
        )
        .await?;
        let iface = Interface {
            port_id: pid,
            network_id: n.spec.id,
            subnets: new.to_vec(),
        };
        if let Err(e) = st
            .engine
            .router(
                &r.id,
                RouterCommand::AddInterface(iface.clone()),
                &caller.ctx(),
                &caller.meta(),
            )
            .await
        {
            st.drop_port(&caller, pid).await?;
            return Err(e.into());
        }
        iface
    };
    let r = st.router(&r.id)?;
    Ok(Json(interface_json(&r, &iface)))
}

/// `PUT /v2.0/routers/{id}/remove_router_interface`.
pub async fn remove_interface(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    let r = st.visible_router(&id, &caller)?;
    let (subnet_id, port_id) = interface_info(&raw, true)?;
    let not_for_subnet = |s: &str| {
        NetworkError::new(
            StatusCode::NOT_FOUND,
            "RouterInterfaceNotFoundForSubnet",
            format!("Router {} has no interface on subnet {s}", r.id),
        )
    };
    let iface = match (&port_id, &subnet_id) {
        (Some(p), _) => {
            let i = PortId::parse(p)
                .and_then(|pid| r.interfaces.iter().find(|i| i.port_id == pid))
                .ok_or_else(|| {
                    NetworkError::new(
                        StatusCode::NOT_FOUND,
                        "RouterInterfaceNotFound",
                        format!("Router {} does not have an interface with id {p}", r.id),
                    )
                })?;
            if let Some(s) = &subnet_id {
                if !i.subnets.iter().any(|(x, _)| x.to_string() == *s) {
                    return Err(not_for_subnet(s));
                }
            }
            i.clone()
        }
        (None, Some(s)) => SubnetId::parse(s)
            .and_then(|sid| r.interface_on(sid))
            .ok_or_else(|| not_for_subnet(s))?
            .clone(),
        (None, None) => unreachable!("interface_info requires one"),
    };
    // Floating IPs routed through this interface keep it.
    let in_use = {
        let views = st.engine.world().read();
        let found = views.floating_ips().all().find_map(|f| {
            let a = f.association.filter(|a| a.router_id == r.id)?;
            iface
                .subnets
                .iter()
                .find(|(_, c)| c.contains(a.fixed_ip_address))
                .map(|(s, _)| *s)
        });
        found
    };
    if let Some(s) = in_use {
        return Err(NetworkError::new(
            StatusCode::CONFLICT,
            "RouterInterfaceInUseByFloatingIP",
            format!(
                "Router interface for subnet {s} on router {} cannot be deleted, as it is \
                 required by one or more floating IPs.",
                r.id
            ),
        ));
    }
    st.engine
        .router(
            &r.id,
            RouterCommand::RemoveInterface {
                port_id: iface.port_id,
            },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    st.drop_port(&caller, iface.port_id).await?;
    Ok(Json(interface_json(&r, &iface)))
}

/// The router (if any) connecting `subnet` to the external network `ext`: Neutron
/// prefers one whose interface holds the subnet's gateway address.
pub(crate) fn router_for(
    st: &NetworkState,
    subnet: SubnetId,
    gateway_ip: Option<IpAddr>,
    ext: NetworkId,
) -> Option<RouterId> {
    let views = st.engine.world().read();
    let mut first = None;
    for r in views.routers().all() {
        if r.gateway.as_ref().map(|g| g.network_id) != Some(ext) {
            continue;
        }
        let Some(i) = r.interface_on(subnet) else {
            continue;
        };
        let holds_gw = views.networks().port(&i.port_id).is_some_and(|p| {
            p.fixed_ips
                .iter()
                .any(|f| f.subnet_id == subnet && Some(f.ip_address) == gateway_ip)
        });
        if holds_gw {
            return Some(r.id);
        }
        first.get_or_insert(r.id);
    }
    first
}
