//! `/v2.0/subnets`: create, list, show, update, delete (on the network aggregate).

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::network::{
    Cidr, GatewayRequest, HostRoute, NetworkCommand, Pool, SubnetPatch, SubnetRequest,
};
use domain::SubnetId;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::body::{self, Attrs};
use crate::error::NetworkError;
use crate::extract::{Path, QueryPairs};
use crate::list::ListQuery;
use crate::{view, NetworkState};

/// IPv6 RA / address modes Neutron knows.
const IPV6_MODES: &[&str] = &["slaac", "dhcpv6-stateful", "dhcpv6-stateless"];

fn ip(attr: &str, v: &str) -> Result<IpAddr, NetworkError> {
    v.parse().map_err(|_| {
        NetworkError::invalid(format!(
            "Invalid input for {attr}. Reason: '{v}' is not a valid IP address."
        ))
    })
}

/// Parses a CIDR as neutron-lib's `validate_subnet` does.
pub fn cidr(attr: &str, v: &str) -> Result<Cidr, NetworkError> {
    use domain::network::addr::CidrError;
    match Cidr::parse(v) {
        Ok(c) if v.contains('/') => Ok(c),
        Ok(_) | Err(CidrError::Invalid) => Err(NetworkError::invalid(format!(
            "Invalid input for {attr}. Reason: '{v}' is not a valid IP subnet."
        ))),
        Err(CidrError::HostBits(c)) => Err(NetworkError::invalid(format!(
            "Invalid input for {attr}. Reason: '{v}' isn't a recognized IP subnet cidr, '{c}' is recommended."
        ))),
    }
}

fn gateway(a: &mut Attrs) -> Result<Option<GatewayRequest>, NetworkError> {
    match a.take("gateway_ip") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(GatewayRequest::None)),
        Some(Value::String(s)) => Ok(Some(GatewayRequest::Ip(ip("gateway_ip", &s)?))),
        Some(v) => Err(NetworkError::invalid(format!(
            "Invalid input for gateway_ip. Reason: '{v}' is not a valid IP address."
        ))),
    }
}

fn pools(a: &mut Attrs) -> Result<Option<Vec<Pool>>, NetworkError> {
    let Some(v) = a.take("allocation_pools") else {
        return Ok(None);
    };
    let bad = || {
        NetworkError::invalid(format!(
            "Invalid input for allocation_pools. Reason: Invalid data format for IP pool: '{v}'."
        ))
    };
    let arr = v.as_array().ok_or_else(bad)?;
    arr.iter()
        .map(|p| {
            let start = p.get("start").and_then(Value::as_str).ok_or_else(bad)?;
            let end = p.get("end").and_then(Value::as_str).ok_or_else(bad)?;
            Ok(Pool::new(
                ip("allocation_pools", start)?,
                ip("allocation_pools", end)?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn routes(a: &mut Attrs) -> Result<Option<Vec<HostRoute>>, NetworkError> {
    route_list(a, "host_routes")
}

/// A list of `{destination, nexthop}` (a subnet's `host_routes`, a router's `routes`;
/// null reads as none).
pub(crate) fn route_list(
    a: &mut Attrs,
    attr: &str,
) -> Result<Option<Vec<HostRoute>>, NetworkError> {
    let Some(v) = a.take(attr) else {
        return Ok(None);
    };
    if v.is_null() {
        return Ok(Some(vec![]));
    }
    let bad = || {
        NetworkError::invalid(format!(
            "Invalid input for {attr}. Reason: Invalid data format for hostroute: '{v}'."
        ))
    };
    let arr = v.as_array().ok_or_else(bad)?;
    arr.iter()
        .map(|r| {
            let d = r
                .get("destination")
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            let n = r.get("nexthop").and_then(Value::as_str).ok_or_else(bad)?;
            Ok(HostRoute {
                destination: cidr(attr, d)?,
                nexthop: ip(attr, n)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn nameservers(a: &mut Attrs) -> Result<Option<Vec<String>>, NetworkError> {
    let Some(list) = a.strings("dns_nameservers")? else {
        return Ok(None);
    };
    for d in &list {
        ip("dns_nameservers", d)?;
    }
    Ok(Some(list))
}

fn ipv6_mode(a: &mut Attrs, attr: &str) -> Result<Option<String>, NetworkError> {
    match a.take(attr) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if IPV6_MODES.contains(&s.as_str()) => Ok(Some(s)),
        Some(v) => Err(NetworkError::invalid(format!(
            "Invalid input for {attr}. Reason: {v} is not in valid_values."
        ))),
    }
}

/// `POST /v2.0/subnets`.
pub async fn create(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let mut a = body::resource(&raw, "subnet")?;
    let net_id = a.string("network_id", 36)?.ok_or_else(|| {
        NetworkError::bad_request(
            "Failed to parse request. Required attribute 'network_id' not specified",
        )
    })?;
    let n = st.visible_network(&net_id, &caller)?;
    let owner = a.owner(&caller, "create_subnet")?;
    if !caller.is_admin() && n.spec.project_id != caller.project {
        return Err(NetworkError::policy("create_subnet"));
    }
    let ip_version = a.integer("ip_version")?.ok_or_else(|| {
        NetworkError::bad_request(
            "Failed to parse request. Required attribute 'ip_version' not specified",
        )
    })?;
    if ip_version != 4 && ip_version != 6 {
        return Err(NetworkError::invalid(format!(
            "Invalid input for ip_version. Reason: {ip_version} is not in [4, 6]."
        )));
    }
    let cidr_text = match a.take("cidr") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => {
            return Err(NetworkError::bad_request(
                "Bad subnets request: a subnetpool must be specified in the absence of a cidr.",
            ))
        }
        Some(v) => v.to_string(),
    };
    let cidr = cidr("cidr", &cidr_text)?;
    let req = SubnetRequest {
        id: SubnetId(Uuid::new_v4()),
        name: a.text("name")?.unwrap_or_default(),
        description: a.text("description")?.unwrap_or_default(),
        project_id: owner,
        ip_version: ip_version as u8,
        cidr,
        gateway: gateway(&mut a)?.unwrap_or(GatewayRequest::Default),
        allocation_pools: pools(&mut a)?,
        enable_dhcp: a.boolean("enable_dhcp")?.unwrap_or(true),
        dns_nameservers: nameservers(&mut a)?.unwrap_or_default(),
        host_routes: routes(&mut a)?.unwrap_or_default(),
        ipv6_ra_mode: ipv6_mode(&mut a, "ipv6_ra_mode")?,
        ipv6_address_mode: ipv6_mode(&mut a, "ipv6_address_mode")?,
        subnetpool_id: None,
    };
    // Neutron accepts an explicit null subnet pool (no pool) and an empty list of
    // service types.
    match a.take("subnetpool_id") {
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(NetworkError::bad_request(
                "Unrecognized attribute(s) 'subnetpool_id'",
            ))
        }
    }
    a.finish()?;
    let sid = req.id;
    let nid = n.spec.id;
    st.engine
        .network(
            &nid,
            NetworkCommand::CreateSubnet(Box::new(req)),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let s = st.subnet(&sid)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"subnet": view::subnet(&s)})),
    )
        .into_response())
}

/// `GET /v2.0/subnets`.
pub async fn list(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let q = ListQuery::parse(&q, view::SUBNET_ATTRS)?;
    let items: Vec<Value> = {
        let views = st.engine.world().read();
        views
            .networks()
            .all()
            .flat_map(|n| {
                n.subnets
                    .values()
                    .filter(|s| view::subnet_visible(n, s, &caller))
                    .map(view::subnet)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    Ok(Json(q.respond(
        "subnets",
        items,
        &st.url(&headers, "/v2.0/subnets"),
    )?))
}

/// `GET /v2.0/subnets/{id}`.
pub async fn show(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let (_, s) = st.visible_subnet(&id, &caller)?;
    let fields = crate::fields(&q);
    Ok(Json(
        json!({"subnet": crate::list::select(view::subnet(&s), &fields)}),
    ))
}

/// `PUT /v2.0/subnets/{id}`.
pub async fn update(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    let (n, s) = st.visible_subnet(&id, &caller)?;
    let mut a = body::resource(&raw, "subnet")?;
    let patch = SubnetPatch {
        name: a.text("name")?,
        description: a.text("description")?,
        gateway: gateway(&mut a)?,
        allocation_pools: pools(&mut a)?,
        enable_dhcp: a.boolean("enable_dhcp")?,
        dns_nameservers: nameservers(&mut a)?,
        host_routes: routes(&mut a)?,
    };
    a.finish()?;
    if !caller.is_admin() && n.spec.project_id != caller.project && s.project_id != caller.project {
        return Err(NetworkError::policy("update_subnet"));
    }
    st.engine
        .network(
            &n.spec.id,
            NetworkCommand::UpdateSubnet { id: s.id, patch },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let s = st.subnet(&s.id)?;
    Ok(Json(json!({"subnet": view::subnet(&s)})))
}

/// `DELETE /v2.0/subnets/{id}`.
pub async fn delete(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, NetworkError> {
    let (n, s) = st.visible_subnet(&id, &caller)?;
    if !caller.is_admin() && n.spec.project_id != caller.project && s.project_id != caller.project {
        return Err(NetworkError::policy("delete_subnet"));
    }
    st.engine
        .network(
            &n.spec.id,
            NetworkCommand::DeleteSubnet { id: s.id },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
