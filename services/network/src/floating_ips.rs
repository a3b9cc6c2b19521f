//! `/v2.0/floatingips`: create, list, show, update (associate, disassociate), delete.
//!
//! A floating IP (`stratus.api.floatingip.<uuid>`) holds its address through a port
//! (device_owner `network:floatingip`, device_id the floating IP's id, no project) on
//! the external network, created through that network's aggregate so the address
//! comes from its exact IPAM. The two appends are ordered:
//!
//! - Create: the port first, then the record; a refused record deletes the port. A
//!   crash between leaves a port no floating IP lists: the port API lets an admin
//!   delete it (a service port is protected only while its owner lists it).
//! - Delete: the record first, then the port; a crash between leaves such a port too.
//!
//! Association is decided on the read side (the port's subnet must be attached to a
//! router whose gateway is on the floating IP's network); one floating IP per fixed
//! IP is checked there as well, so two racing associations of one fixed IP are not
//! excluded by the log.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::network::{FixedIpRequest, Network};
use domain::router::{
    bad_request, floating_ip_not_found, Association, FloatingIp, FloatingIpCommand,
    OWNER_FLOATINGIP,
};
use domain::{FloatingIpId, NetworkId, PortId, SubnetId};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::body;
use crate::error::NetworkError;
use crate::extract::{Path, QueryPairs};
use crate::list::ListQuery;
use crate::quotas;
use crate::{view, NetworkState};
use domain::network::quota::NetResource;

fn bad(msg: impl std::fmt::Display) -> NetworkError {
    bad_request("floatingip", msg).into()
}

/// Reads an IP attribute.
fn ip(a: &mut body::Attrs, attr: &str) -> Result<Option<Option<IpAddr>>, NetworkError> {
    match a.take(attr) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => s.parse().map(|ip| Some(Some(ip))).map_err(|_| {
            NetworkError::invalid(format!(
                "Invalid input for {attr}. Reason: '{s}' is not a valid IP address."
            ))
        }),
        Some(v) => Err(NetworkError::invalid(format!(
            "Invalid input for {attr}. Reason: '{v}' is not a valid IP address."
        ))),
    }
}

/// Reads a uuid attribute (None absent, Some(None) null).
fn uuid_attr(a: &mut body::Attrs, attr: &str) -> Result<Option<Option<Uuid>>, NetworkError> {
    match a.take(attr) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if Uuid::parse_str(&s).is_ok() => Ok(Some(Uuid::parse_str(&s).ok())),
        Some(v) => {
            let t = match v {
                Value::String(s) => s,
                v => v.to_string(),
            };
            Err(NetworkError::invalid(format!(
                "Invalid input for {attr}. Reason: '{t}' is not a valid UUID."
            )))
        }
    }
}

/// What an association with `port_id` (and maybe one of its addresses) is: Neutron's
/// checks in its order.
fn association(
    st: &NetworkState,
    c: &Caller,
    fip_project: &str,
    ext: NetworkId,
    port_id: Uuid,
    fixed: Option<IpAddr>,
) -> Result<Association, NetworkError> {
    let (n, p) = st.visible_port(&port_id.to_string(), c)?;
    if p.project_id != fip_project && !c.is_admin() {
        return Err(bad(format!(
            "Cannot process floating IP association with Port {}, since that port is owned by a different project",
            p.id
        )));
    }
    if p.device_owner.starts_with("network:") {
        return Err(bad(format!(
            "Port {} is unable to be assigned a floating IP",
            p.id
        )));
    }
    let (subnet, addr): (SubnetId, IpAddr) = match fixed {
        Some(ip) => {
            if !ip.is_ipv4() {
                return Err(bad(format!(
                    "Cannot process floating IP association with {ip}, since that is not an IPv4 address"
                )));
            }
            let f = p
                .fixed_ips
                .iter()
                .find(|f| f.ip_address == ip)
                .ok_or_else(|| bad(format!("Port {} does not have fixed ip {ip}", p.id)))?;
            (f.subnet_id, ip)
        }
        None => {
            let v4: Vec<_> = p
                .fixed_ips
                .iter()
                .filter(|f| f.ip_address.is_ipv4())
                .collect();
            match v4.as_slice() {
                [] => {
                    return Err(bad(format!(
                        "Cannot add floating IP to port {} that has no fixed IPv4 addresses",
                        p.id
                    )))
                }
                [f] => (f.subnet_id, f.ip_address),
                _ => {
                    return Err(bad(format!(
                        "Port {} has multiple fixed IPv4 addresses.  Must provide a specific IPv4 address when assigning a floating IP",
                        p.id
                    )))
                }
            }
        }
    };
    let gateway_ip = n.subnets.get(&subnet).and_then(|s| s.gateway_ip);
    let router_id = crate::routers::router_for(st, subnet, gateway_ip, ext).ok_or_else(|| {
        NetworkError::new(
            StatusCode::NOT_FOUND,
            "ExternalGatewayForFloatingIPNotFound",
            format!(
                "External network {ext} is not reachable from subnet {subnet}.  Therefore, cannot associate Port {} with a Floating IP.",
                p.id
            ),
        )
    })?;
    Ok(Association {
        port_id: p.id,
        fixed_ip_address: addr,
        router_id,
    })
}

/// Neutron's one floating IP per fixed IP (and external network).
fn check_not_associated(
    st: &NetworkState,
    fip: FloatingIpId,
    address: Option<IpAddr>,
    ext: NetworkId,
    a: &Association,
) -> Result<(), NetworkError> {
    let taken = st.engine.world().read().floating_ips().all().any(|f| {
        f.id != fip
            && f.floating_network_id == ext
            && f.association
                .is_some_and(|x| x.port_id == a.port_id && x.fixed_ip_address == a.fixed_ip_address)
    });
    if taken {
        let addr = address.map_or_else(|| "None".to_string(), |a| a.to_string());
        return Err(NetworkError::new(
            StatusCode::CONFLICT,
            "FloatingIPPortAlreadyAssociated",
            format!(
                "Cannot associate floating IP {addr} ({fip}) with port {} using fixed IP {}, \
                 as that fixed IP already has a floating IP on external network {ext}.",
                a.port_id, a.fixed_ip_address
            ),
        ));
    }
    Ok(())
}

impl NetworkState {
    pub(crate) fn visible_fip(&self, id: &str, c: &Caller) -> Result<FloatingIp, NetworkError> {
        FloatingIpId::parse(id)
            .and_then(|fid| self.engine.world().read().floating_ips().get(&fid).cloned())
            .filter(|f| view::floating_ip_visible(f, c))
            .ok_or_else(|| floating_ip_not_found(id).into())
    }

    fn fip(&self, id: &FloatingIpId) -> Result<FloatingIp, NetworkError> {
        self.engine
            .world()
            .read()
            .floating_ips()
            .get(id)
            .cloned()
            .ok_or_else(|| floating_ip_not_found(id).into())
    }
}

/// `POST /v2.0/floatingips`.
pub async fn create(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let mut a = body::resource(&raw, "floatingip")?;
    let net =
        match uuid_attr(&mut a, "floating_network_id")? {
            Some(Some(n)) => n,
            _ => return Err(NetworkError::bad_request(
                "Failed to parse request. Required attribute 'floating_network_id' not specified",
            )),
        };
    let owner = a.owner(&caller, "create_floatingip")?;
    let description = a.text("description")?.unwrap_or_default();
    let port_id = uuid_attr(&mut a, "port_id")?.flatten();
    let fixed = ip(&mut a, "fixed_ip_address")?.flatten();
    let address = ip(&mut a, "floating_ip_address")?.flatten();
    let subnet_id = uuid_attr(&mut a, "subnet_id")?.flatten();
    a.finish()?;
    // Neutron's ADMIN_OR_PROJECT_MANAGER.
    if address.is_some() && caller.role < Some(apicore::auth::Role::Manager) {
        return Err(NetworkError::policy(
            "create_floatingip:floating_ip_address",
        ));
    }
    let n: Network = st.visible_network(&net.to_string(), &caller)?;
    if !n.spec.external {
        return Err(bad(format!(
            "Network {} is not a valid external network",
            n.spec.id
        )));
    }
    if !n.subnets.values().any(|s| s.ip_version() == 4) {
        return Err(bad(format!(
            "Network {} does not contain any IPv4 subnet",
            n.spec.id
        )));
    }
    if fixed.is_some() && port_id.is_none() {
        return Err(bad(
            "fixed_ip_address cannot be specified without a port_id",
        ));
    }
    let id = allocate(
        &st,
        &caller,
        &n,
        NewFloatingIp {
            owner,
            description,
            port_id,
            fixed,
            address,
            subnet_id,
        },
    )
    .await?;
    let f = st.fip(&id)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"floatingip": view::floating_ip(&f, st.engine.world().read().networks())})),
    )
        .into_response())
}

/// What a floating IP allocation asks for (the parsed create body; the compute API's
/// `os-floating-ips` proxy fills only the owner).
#[derive(Debug, Default)]
pub struct NewFloatingIp {
    /// Owning project.
    pub owner: String,
    /// Description.
    pub description: String,
    /// Port to associate at once.
    pub port_id: Option<Uuid>,
    /// Which of the port's addresses.
    pub fixed: Option<IpAddr>,
    /// A chosen floating address.
    pub address: Option<IpAddr>,
    /// A chosen subnet of the external network.
    pub subnet_id: Option<Uuid>,
}

/// Allocates a floating IP on external network `n` (checked by the caller): the
/// association checked, the quota reserved, the port then the record appended. Shared
/// by `POST /v2.0/floatingips` and the compute API's proxy, so both follow one set of
/// rules.
pub async fn allocate(
    st: &NetworkState,
    caller: &Caller,
    n: &Network,
    new: NewFloatingIp,
) -> Result<FloatingIpId, NetworkError> {
    let NewFloatingIp {
        owner,
        description,
        port_id,
        fixed,
        address,
        subnet_id,
    } = new;
    let id = FloatingIpId(Uuid::new_v4());
    let assoc = match port_id {
        Some(p) => {
            let a = association(st, caller, &owner, n.spec.id, p, fixed)?;
            check_not_associated(st, id, address, n.spec.id, &a)?;
            Some(a)
        }
        None => None,
    };
    let request = if subnet_id.is_some() || address.is_some() {
        Some(vec![FixedIpRequest {
            subnet_id: subnet_id.map(SubnetId),
            ip_address: address,
        }])
    } else {
        // One IPv4 address (Neutron allocates the floating IP's from an IPv4 subnet).
        n.subnets_in_order()
            .into_iter()
            .find(|s| s.ip_version() == 4)
            .map(|s| {
                vec![FixedIpRequest {
                    subnet_id: Some(s.id),
                    ip_address: None,
                }]
            })
    };
    quotas::reserve(st, caller, &owner, NetResource::FloatingIp, id.0).await?;
    let made = async {
        let pid = PortId(Uuid::new_v4());
        let port = st
            .service_port(
                caller,
                n.spec.id,
                pid,
                "",
                request,
                &id.to_string(),
                OWNER_FLOATINGIP,
            )
            .await?;
        let Some(addr) = port
            .fixed_ips
            .iter()
            .map(|f| f.ip_address)
            .find(IpAddr::is_ipv4)
        else {
            st.drop_port(caller, pid).await?;
            return Err(NetworkError::new(
                StatusCode::BAD_REQUEST,
                "ExternalIpAddressExhausted",
                format!(
                    "Unable to find any IP address on external network {}.",
                    n.spec.id
                ),
            ));
        };
        let ctx = caller.ctx();
        let fip = FloatingIp {
            id,
            project_id: owner.clone(),
            description,
            floating_network_id: n.spec.id,
            floating_ip_address: addr,
            floating_port_id: pid,
            association: assoc,
            tags: vec![],
            created_at: ctx.now,
            updated_at: ctx.now,
            revision: 0,
            deleted: false,
        };
        if let Err(e) = st
            .engine
            .floating_ip(&id, FloatingIpCommand::Create(fip), &ctx, &caller.meta())
            .await
        {
            st.drop_port(caller, pid).await?;
            return Err(e.into());
        }
        Ok::<(), NetworkError>(())
    }
    .await;
    if let Err(e) = made {
        quotas::release(st, caller, &owner, id.0).await;
        return Err(e);
    }
    Ok(id)
}

/// `GET /v2.0/floatingips`.
pub async fn list(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let q = ListQuery::parse(&q, view::FLOATING_IP_ATTRS)?;
    let items: Vec<Value> = {
        let views = st.engine.world().read();
        views
            .floating_ips()
            .all()
            .filter(|f| view::floating_ip_visible(f, &caller))
            .map(|f| view::floating_ip(f, views.networks()))
            .collect()
    };
    Ok(Json(q.respond(
        "floatingips",
        items,
        &st.url(&headers, "/v2.0/floatingips"),
    )?))
}

/// `GET /v2.0/floatingips/{id}`.
pub async fn show(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let f = st.visible_fip(&id, &caller)?;
    Ok(crate::shown(
        "floatingip",
        view::floating_ip(&f, st.engine.world().read().networks()),
        &q,
    ))
}

/// `PUT /v2.0/floatingips/{id}`: `port_id` associates (null disassociates),
/// `fixed_ip_address` picks one of the port's addresses.
pub async fn update(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    let f = st.visible_fip(&id, &caller)?;
    let mut a = body::resource(&raw, "floatingip")?;
    let description = a.text("description")?;
    let port_id = uuid_attr(&mut a, "port_id")?;
    let fixed = ip(&mut a, "fixed_ip_address")?.flatten();
    a.finish()?;
    if fixed.is_some() && !matches!(port_id, Some(Some(_))) {
        return Err(bad(
            "fixed_ip_address cannot be specified without a port_id",
        ));
    }
    set_association(
        &st,
        &caller,
        &f,
        description,
        port_id.map(|p| p.map(|p| (p, fixed))),
    )
    .await?;
    let f = st.fip(&f.id)?;
    Ok(Json(
        json!({"floatingip": view::floating_ip(&f, st.engine.world().read().networks())}),
    ))
}

/// `DELETE /v2.0/floatingips/{id}`: the record, then its port (the address goes
/// back to the pool).
pub async fn delete(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, NetworkError> {
    let f = st.visible_fip(&id, &caller)?;
    release(&st, &caller, &f).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Associates floating IP `f` with a port (and maybe one of its addresses), or
/// disassociates it (`Some(None)`), with Neutron's checks; shared by
/// `PUT /v2.0/floatingips/{id}` and the compute API's add/removeFloatingIp.
pub async fn set_association(
    st: &NetworkState,
    caller: &Caller,
    f: &FloatingIp,
    description: Option<String>,
    port: Option<Option<(Uuid, Option<IpAddr>)>>,
) -> Result<(), NetworkError> {
    let association = match port {
        None => None,
        Some(None) => Some(None),
        Some(Some((p, fixed))) => {
            let a = association(st, caller, &f.project_id, f.floating_network_id, p, fixed)?;
            if f.association.map(|x| x.port_id) != Some(a.port_id) {
                check_not_associated(
                    st,
                    f.id,
                    Some(f.floating_ip_address),
                    f.floating_network_id,
                    &a,
                )?;
            }
            Some(Some(a))
        }
    };
    st.engine
        .floating_ip(
            &f.id,
            FloatingIpCommand::Update {
                description,
                association,
            },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(())
}

/// Deletes floating IP `f`: the record, then its port (the address goes back to the
/// pool), then its quota holding.
pub async fn release(
    st: &NetworkState,
    caller: &Caller,
    f: &FloatingIp,
) -> Result<(), NetworkError> {
    st.engine
        .floating_ip(
            &f.id,
            FloatingIpCommand::Delete,
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    st.drop_port(caller, f.floating_port_id).await?;
    quotas::release(st, caller, &f.project_id, f.id.0).await;
    Ok(())
}

/// Disassociates the floating IPs of a port about to be deleted (Neutron's
/// `disassociate_floatingips`): first, so a crash leaves the port, whose delete a
/// retry completes.
pub(crate) async fn disassociate_port(
    st: &NetworkState,
    c: &Caller,
    port: PortId,
) -> Result<(), NetworkError> {
    let ids: Vec<FloatingIpId> = st
        .engine
        .world()
        .read()
        .floating_ips()
        .of_port(port)
        .map(|f| f.id)
        .collect();
    for id in ids {
        st.engine
            .floating_ip(
                &id,
                FloatingIpCommand::Update {
                    description: None,
                    association: Some(None),
                },
                &c.ctx(),
                &c.meta(),
            )
            .await?;
    }
    Ok(())
}

/// Deletes the unassociated floating IPs of an external network about to be deleted
/// (Neutron's `delete_disassociated_floatingips`): each record, then its port, so the
/// network delete that follows finds only the ports that keep it in use.
pub(crate) async fn delete_unassociated_on(
    st: &NetworkState,
    c: &Caller,
    net: NetworkId,
) -> Result<(), NetworkError> {
    let fips: Vec<(FloatingIpId, PortId, String)> = st
        .engine
        .world()
        .read()
        .floating_ips()
        .all()
        .filter(|f| f.floating_network_id == net && f.association.is_none())
        .map(|f| (f.id, f.floating_port_id, f.project_id.clone()))
        .collect();
    for (id, port, project) in fips {
        st.engine
            .floating_ip(&id, FloatingIpCommand::Delete, &c.ctx(), &c.meta())
            .await?;
        st.drop_port(c, port).await?;
        quotas::release(st, c, &project, id.0).await;
    }
    Ok(())
}
