//! `/v2.0/subnets`: create, list, show, update, delete (on the network aggregate).

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use domain::network::pool::PrefixRequest;
use domain::network::{
    Cidr, GatewayRequest, HostRoute, NetworkCommand, Pool, SubnetPatch, SubnetRequest,
};
use domain::{NetworkId, SubnetId, SubnetPoolId};
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

/// One subnet of a create body: its network, its request, and the pool it asks for a
/// prefix (if any).
type SubnetCreate = (
    NetworkId,
    SubnetRequest,
    Option<(SubnetPoolId, PrefixRequest)>,
);

/// Reads one subnet of a create body.
fn parse_create(
    st: &NetworkState,
    mut a: Attrs,
    caller: &Caller,
) -> Result<SubnetCreate, NetworkError> {
    let net_id = a.string("network_id", 36)?.ok_or_else(|| {
        NetworkError::bad_request(
            "Failed to parse request. Required attribute 'network_id' not specified",
        )
    })?;
    let n = st.visible_network(&net_id, caller)?;
    let owner = a.owner(caller, "create_subnet")?;
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
    // A pool: named, or the default pool of the version (`use_default_subnetpool`).
    let pool_id = match a.take("subnetpool_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(crate::pools::visible_pool(st, &s, caller)?),
        Some(v) => {
            return Err(NetworkError::invalid(format!(
                "Invalid input for subnetpool_id. Reason: '{v}' is not a valid UUID."
            )))
        }
    };
    let use_default = a.boolean("use_default_subnetpool")?.unwrap_or(false);
    let pool = match (pool_id, use_default) {
        (Some(p), _) => Some(p),
        (None, true) => Some(
            crate::pools::default_pool(st, ip_version as u8, caller).ok_or_else(|| {
                NetworkError::bad_request(format!(
                    "Bad subnets request: No default subnetpool found for IPv{ip_version}."
                ))
            })?,
        ),
        (None, false) => None,
    };
    let prefixlen = a.integer("prefixlen")?;
    let cidr_given = match a.take("cidr") {
        Some(Value::String(s)) => Some(cidr("cidr", &s)?),
        None | Some(Value::Null) => None,
        Some(v) => Some(cidr("cidr", &v.to_string())?),
    };
    let (cidr, from_pool) = match (&pool, cidr_given) {
        (None, Some(c)) => (c, None),
        (None, None) => {
            return Err(NetworkError::bad_request(
                "Bad subnets request: a subnetpool must be specified in the absence of a cidr.",
            ))
        }
        (Some(p), c) => {
            if p.spec.ip_version() != ip_version as u8 {
                return Err(NetworkError::bad_request(format!(
                    "Bad subnets request: Cannot allocate IPv{ip_version} subnet from IPv{} subnet pool.",
                    p.spec.ip_version()
                )));
            }
            let request = match (c, prefixlen) {
                (Some(c), _) => PrefixRequest::Specific(c),
                (None, Some(len)) if (0..=128).contains(&len) => PrefixRequest::Any(len as u8),
                (None, Some(len)) => {
                    return Err(NetworkError::invalid(format!(
                        "Invalid input for prefixlen. Reason: '{len}' is not a valid prefix length."
                    )))
                }
                (None, None) => PrefixRequest::Any(p.spec.default_prefixlen),
            };
            // A placeholder until the pool gives the prefix.
            let placeholder = match request {
                PrefixRequest::Specific(c) => c,
                PrefixRequest::Any(_) => p.spec.prefixes[0],
            };
            (placeholder, Some((p.spec.id, request)))
        }
    };
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
        subnetpool_id: from_pool.map(|(p, _)| p.0),
    };
    a.finish()?;
    Ok((n.spec.id, req, from_pool))
}

/// `POST /v2.0/subnets` (also Neutron's bulk form, all or nothing).
pub async fn create(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let (items, bulk) = body::creates(&raw, "subnet")?;
    let reqs = items
        .into_iter()
        .map(|a| parse_create(&st, a, &caller))
        .collect::<Result<Vec<_>, _>>()?;
    let mut done: Vec<(NetworkId, SubnetId, String, Option<SubnetPoolId>)> = vec![];
    for (nid, mut req, from_pool) in reqs {
        let (sid, owner) = (req.id, req.project_id.clone());
        let pool = from_pool.map(|(p, _)| p);
        let res = async {
            if let Some((p, request)) = from_pool {
                req.cidr = crate::pools::preview(&st, p, sid, request)?;
            }
            st.precheck(&nid, &NetworkCommand::CreateSubnet(Box::new(req.clone())))?;
            quotas::reserve(&st, &caller, &owner, NetResource::Subnet, sid.0).await?;
            if let Some((p, request)) = from_pool {
                req.cidr = crate::pools::allocate(&st, &caller, p, sid, request).await?;
            }
            let cmd = NetworkCommand::CreateSubnet(Box::new(req));
            st.engine
                .network(&nid, cmd, &caller.ctx(), &caller.meta())
                .await
                .map_err(NetworkError::from)
        }
        .await;
        if let Err(e) = res {
            quotas::release(&st, &caller, &owner, sid.0).await;
            if let Some(p) = pool {
                crate::pools::release(&st, &caller, p, sid).await;
            }
            for (n, s, o, p) in done {
                let _ = st
                    .engine
                    .network(
                        &n,
                        NetworkCommand::DeleteSubnet { id: s },
                        &caller.ctx(),
                        &caller.meta(),
                    )
                    .await;
                quotas::release(&st, &caller, &o, s.0).await;
                if let Some(p) = p {
                    crate::pools::release(&st, &caller, p, s).await;
                }
            }
            return Err(e);
        }
        done.push((nid, sid, owner, pool));
    }
    let views: Vec<Value> = done
        .iter()
        .map(|(_, sid, _, _)| st.subnet(sid).map(|s| view::subnet(&s)))
        .collect::<Result<_, _>>()?;
    Ok(crate::created("subnet", views, bulk))
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
    Ok(crate::shown("subnet", view::subnet(&s), &q))
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
    quotas::release(&st, &caller, &s.project_id, s.id.0).await;
    if let Some(p) = s.subnetpool_id {
        crate::pools::release(&st, &caller, SubnetPoolId(p), s.id).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
