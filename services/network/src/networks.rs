//! `/v2.0/networks`: create, list, show, update, delete.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use domain::network::{NetworkCommand, NetworkPatch, NetworkSpec, DEFAULT_MTU};
use domain::NetworkId;
use uuid::Uuid;

use crate::auth::Caller;
use crate::body::{self, Attrs};
use crate::error::NetworkError;
use crate::extract::{Path, QueryPairs};
use crate::list::ListQuery;
use crate::quotas;
use crate::{view, NetworkState};
use domain::network::quota::NetResource;

/// Neutron's smallest MTU (IPv4's minimum).
const MIN_MTU: i64 = 68;

/// Reads the MTU attribute.
fn mtu(a: &mut Attrs) -> Result<Option<u32>, NetworkError> {
    match a.integer("mtu")? {
        None => Ok(None),
        Some(m) if (MIN_MTU..=65535).contains(&m) => Ok(Some(m as u32)),
        Some(m) => Err(NetworkError::invalid(format!(
            "Invalid input for mtu. Reason: '{m}' is too small - must be at least '{MIN_MTU}'"
        ))),
    }
}

/// Reads one network of a create body.
fn parse_create(mut a: Attrs, caller: &Caller) -> Result<NetworkSpec, NetworkError> {
    let owner = a.owner(caller, "create_network")?;
    let name = a.text("name")?.unwrap_or_default();
    let description = a.text("description")?.unwrap_or_default();
    let admin_state_up = a.boolean("admin_state_up")?.unwrap_or(true);
    let shared = a.boolean("shared")?.unwrap_or(false);
    let external = a.boolean("router:external")?.unwrap_or(false);
    let mtu = mtu(&mut a)?.unwrap_or(DEFAULT_MTU);
    let port_security_enabled = a.boolean("port_security_enabled")?.unwrap_or(true);
    a.finish()?;
    if shared && !caller.is_admin() {
        return Err(NetworkError::policy("create_network:shared"));
    }
    if external && !caller.is_admin() {
        return Err(NetworkError::policy("create_network:router:external"));
    }
    let now = engine::now();
    Ok(NetworkSpec {
        id: NetworkId(Uuid::new_v4()),
        name,
        description,
        project_id: owner,
        admin_state_up,
        shared,
        external,
        mtu,
        port_security_enabled,
        tags: vec![],
        created_at: now,
        updated_at: now,
        revision: 1,
    })
}

/// `POST /v2.0/networks` (also Neutron's bulk form, all or nothing).
pub async fn create(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let (items, bulk) = body::creates(&raw, "network")?;
    let specs = items
        .into_iter()
        .map(|a| parse_create(a, &caller))
        .collect::<Result<Vec<_>, _>>()?;
    let mut done: Vec<(NetworkId, String)> = vec![];
    for spec in specs {
        let (id, owner) = (spec.id, spec.project_id.clone());
        let res = async {
            quotas::reserve(&st, &caller, &owner, NetResource::Network, id.0).await?;
            st.engine
                .network(
                    &id,
                    NetworkCommand::Create(spec),
                    &caller.ctx(),
                    &caller.meta(),
                )
                .await
                .map_err(NetworkError::from)
        }
        .await;
        if let Err(e) = res {
            quotas::release(&st, &caller, &owner, id.0).await;
            for (d, o) in done {
                let _ = st
                    .engine
                    .network(&d, NetworkCommand::Delete, &caller.ctx(), &caller.meta())
                    .await;
                quotas::release(&st, &caller, &o, d.0).await;
            }
            return Err(e);
        }
        done.push((id, owner));
    }
    let views: Vec<serde_json::Value> = done
        .iter()
        .map(|(id, _)| st.network(id).map(|n| view::network(&n)))
        .collect::<Result<_, _>>()?;
    Ok(crate::created("network", views, bulk))
}

/// `GET /v2.0/networks`.
pub async fn list(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    QueryPairs(q): QueryPairs,
) -> Result<Json<serde_json::Value>, NetworkError> {
    let q = ListQuery::parse(&q, view::NETWORK_ATTRS)?;
    let items: Vec<serde_json::Value> = {
        let views = st.engine.world().read();
        views
            .networks()
            .all()
            .filter(|n| view::network_visible(n, &caller))
            .map(view::network)
            .collect()
    };
    Ok(Json(q.respond(
        "networks",
        items,
        &st.url(&headers, "/v2.0/networks"),
    )?))
}

/// `GET /v2.0/networks/{id}`.
pub async fn show(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    QueryPairs(q): QueryPairs,
) -> Result<Json<serde_json::Value>, NetworkError> {
    let n = st.visible_network(&id, &caller)?;
    Ok(crate::shown("network", view::network(&n), &q))
}

/// `PUT /v2.0/networks/{id}`.
pub async fn update(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    raw: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, NetworkError> {
    let n = st.visible_network(&id, &caller)?;
    let mut a = body::resource(&raw, "network")?;
    let patch = NetworkPatch {
        name: a.text("name")?,
        description: a.text("description")?,
        admin_state_up: a.boolean("admin_state_up")?,
        shared: a.boolean("shared")?,
        external: a.boolean("router:external")?,
        mtu: mtu(&mut a)?,
        port_security_enabled: a.boolean("port_security_enabled")?,
    };
    a.finish()?;
    if !caller.is_admin() {
        if n.spec.project_id != caller.project {
            return Err(NetworkError::policy("update_network"));
        }
        if patch.shared.is_some_and(|s| s != n.spec.shared) {
            return Err(NetworkError::policy("update_network:shared"));
        }
        if patch.external.is_some_and(|s| s != n.spec.external) {
            return Err(NetworkError::policy("update_network:router:external"));
        }
    }
    // Neutron's ExternalNetworkInUse: routers' gateways keep a network external.
    if n.spec.external
        && patch.external == Some(false)
        && n.ports
            .values()
            .any(|p| p.device_owner == domain::router::OWNER_GATEWAY)
    {
        return Err(NetworkError::new(
            axum::http::StatusCode::CONFLICT,
            "ExternalNetworkInUse",
            format!(
                "External network {} cannot be updated to be made non-external, \
                 since it has existing gateway ports.",
                n.spec.id
            ),
        ));
    }
    let nid = n.spec.id;
    st.engine
        .network(
            &nid,
            NetworkCommand::Update(patch),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let n = st.network(&nid)?;
    Ok(Json(serde_json::json!({"network": view::network(&n)})))
}

/// `DELETE /v2.0/networks/{id}`.
pub async fn delete(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, NetworkError> {
    let n = st.visible_network(&id, &caller)?;
    if !caller.is_admin() && n.spec.project_id != caller.project {
        return Err(NetworkError::policy("delete_network"));
    }
    if n.spec.external {
        crate::floating_ips::delete_unassociated_on(&st, &caller, n.spec.id).await?;
    }
    st.engine
        .network(
            &n.spec.id,
            NetworkCommand::Delete,
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    // What went with it: the network, its subnets and its service ports.
    quotas::release(&st, &caller, &n.spec.project_id, n.spec.id.0).await;
    for s in n.subnets.values() {
        quotas::release(&st, &caller, &s.project_id, s.id.0).await;
        if let Some(p) = s.subnetpool_id {
            crate::pools::release(&st, &caller, domain::SubnetPoolId(p), s.id).await;
        }
    }
    for p in n.ports.values() {
        quotas::release(&st, &caller, &p.project_id, p.id.0).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
