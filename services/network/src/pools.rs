//! `/v2.0/subnetpools` (Neutron's `subnet_allocation`), and the pool side of a subnet
//! create: a subnet asking a pool for a prefix gets it from the pool's own subject
//! before the subnet is created (see `domain::network::pool`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use domain::network::pool::{PoolCommand, PoolPatch, PoolSpec, PrefixRequest, SubnetPool};
use domain::network::Cidr;
use domain::{SubnetId, SubnetPoolId};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::body::{self, Attrs};
use crate::error::NetworkError;
use crate::extract::{Path, QueryPairs};
use crate::list::ListQuery;
use crate::NetworkState;

/// The attributes pools can be filtered and sorted by.
pub const POOL_ATTRS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "shared",
    "is_default",
    "ip_version",
    "default_quota",
    "address_scope_id",
    "created_at",
    "updated_at",
    "revision_number",
];

/// Neutron's JSON of a pool.
pub fn view(p: &SubnetPool) -> Value {
    let s = &p.spec;
    json!({
        "id": s.id.to_string(),
        "name": s.name,
        "description": s.description,
        "tenant_id": s.project_id,
        "project_id": s.project_id,
        "prefixes": s.prefixes.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "default_prefixlen": s.default_prefixlen,
        "min_prefixlen": s.min_prefixlen,
        "max_prefixlen": s.max_prefixlen,
        "shared": s.shared,
        "is_default": s.is_default,
        "default_quota": s.default_quota,
        "address_scope_id": null,
        "ip_version": s.ip_version(),
        "tags": s.tags,
        "created_at": apicore::util::iso_z(s.created_at),
        "updated_at": apicore::util::iso_z(s.updated_at),
        "revision_number": s.revision,
    })
}

/// Whether the caller sees the pool (its project, shared, admin).
pub fn visible(p: &SubnetPool, c: &Caller) -> bool {
    c.is_admin() || p.spec.project_id == c.project || p.spec.shared
}

/// A pool the caller may see (404 `SubnetPoolNotFound` otherwise).
pub fn visible_pool(st: &NetworkState, id: &str, c: &Caller) -> Result<SubnetPool, NetworkError> {
    let views = st.engine.world().read();
    SubnetPoolId::parse(id)
        .and_then(|pid| views.subnet_pools().get(&pid))
        .filter(|p| visible(p, c))
        .cloned()
        .ok_or_else(|| {
            domain::network::NetError::not_found("SubnetPoolNotFound", "Subnet pool", id).into()
        })
}

/// The default pool of an IP version (`is_default`), if any the caller sees.
pub fn default_pool(st: &NetworkState, version: u8, c: &Caller) -> Option<SubnetPool> {
    let views = st.engine.world().read();
    let found = views
        .subnet_pools()
        .all()
        .find(|p| p.spec.is_default && p.spec.ip_version() == version && visible(p, c))
        .cloned();
    found
}

fn prefixes(a: &mut Attrs) -> Result<Option<Vec<Cidr>>, NetworkError> {
    match a.strings("prefixes")? {
        None => Ok(None),
        Some(v) => v
            .iter()
            .map(|s| crate::subnets::cidr("prefixes", s))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

fn prefixlen(a: &mut Attrs, attr: &str) -> Result<Option<u8>, NetworkError> {
    match a.integer(attr)? {
        None => Ok(None),
        Some(v) if (0..=128).contains(&v) => Ok(Some(v as u8)),
        Some(v) => Err(NetworkError::invalid(format!(
            "Invalid input for {attr}. Reason: '{v}' is not a valid prefix length."
        ))),
    }
}

fn default_quota(a: &mut Attrs) -> Result<Option<Option<i64>>, NetworkError> {
    if a.take_null("default_quota") {
        return Ok(Some(None));
    }
    Ok(a.integer("default_quota")?.map(Some))
}

/// `POST /v2.0/subnetpools`.
pub async fn create(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let mut a = body::resource(&raw, "subnetpool")?;
    let owner = a.owner(&caller, "create_subnetpool")?;
    let prefixes = prefixes(&mut a)?.ok_or_else(|| {
        NetworkError::bad_request(
            "Failed to parse request. Required attribute 'prefixes' not specified",
        )
    })?;
    let v6 = prefixes.first().is_some_and(|c| c.version() == 6);
    let min = prefixlen(&mut a, "min_prefixlen")?.unwrap_or(if v6 { 64 } else { 8 });
    let max = prefixlen(&mut a, "max_prefixlen")?.unwrap_or(if v6 { 128 } else { 32 });
    let default = prefixlen(&mut a, "default_prefixlen")?.unwrap_or(min);
    let shared = a.boolean("shared")?.unwrap_or(false);
    let is_default = a.boolean("is_default")?.unwrap_or(false);
    if !a.take_null("address_scope_id") && a.has("address_scope_id") {
        return Err(NetworkError::bad_request(
            "Unrecognized attribute(s) 'address_scope_id'",
        ));
    }
    let now = engine::now();
    let spec = PoolSpec {
        id: SubnetPoolId(Uuid::new_v4()),
        name: a.text("name")?.unwrap_or_default(),
        description: a.text("description")?.unwrap_or_default(),
        project_id: owner,
        prefixes,
        default_prefixlen: default,
        min_prefixlen: min,
        max_prefixlen: max,
        shared,
        is_default,
        default_quota: default_quota(&mut a)?.flatten(),
        tags: vec![],
        created_at: now,
        updated_at: now,
        revision: 0,
    };
    a.finish()?;
    if shared && !caller.is_admin() {
        return Err(NetworkError::policy("create_subnetpool:shared"));
    }
    if is_default && !caller.is_admin() {
        return Err(NetworkError::policy("create_subnetpool:is_default"));
    }
    let id = spec.id;
    st.engine
        .subnet_pool(
            &id,
            PoolCommand::Create(Box::new(spec)),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let p = visible_pool(&st, &id.to_string(), &caller)?;
    Ok(crate::created("subnetpool", vec![view(&p)], false))
}

/// `GET /v2.0/subnetpools`.
pub async fn list(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let q = ListQuery::parse(&q, POOL_ATTRS)?;
    let items: Vec<Value> = {
        let views = st.engine.world().read();
        views
            .subnet_pools()
            .all()
            .filter(|p| visible(p, &caller))
            .map(view)
            .collect()
    };
    Ok(Json(q.respond(
        "subnetpools",
        items,
        &st.url(&headers, "/v2.0/subnetpools"),
    )?))
}

/// `GET /v2.0/subnetpools/{id}`.
pub async fn show(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let p = visible_pool(&st, &id, &caller)?;
    Ok(crate::shown("subnetpool", view(&p), &q))
}

/// `PUT /v2.0/subnetpools/{id}`.
pub async fn update(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    let p = visible_pool(&st, &id, &caller)?;
    let mut a = body::resource(&raw, "subnetpool")?;
    let patch = PoolPatch {
        name: a.text("name")?,
        description: a.text("description")?,
        prefixes: prefixes(&mut a)?,
        default_prefixlen: prefixlen(&mut a, "default_prefixlen")?,
        min_prefixlen: prefixlen(&mut a, "min_prefixlen")?,
        max_prefixlen: prefixlen(&mut a, "max_prefixlen")?,
        is_default: a.boolean("is_default")?,
        default_quota: default_quota(&mut a)?,
    };
    a.take_null("address_scope_id");
    a.finish()?;
    if !caller.is_admin() {
        if p.spec.project_id != caller.project {
            return Err(NetworkError::policy("update_subnetpool"));
        }
        if patch.is_default.is_some_and(|d| d != p.spec.is_default) {
            return Err(NetworkError::policy("update_subnetpool:is_default"));
        }
    }
    let pid = p.spec.id;
    st.engine
        .subnet_pool(
            &pid,
            PoolCommand::Update(Box::new(patch)),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let p = visible_pool(&st, &id, &caller)?;
    Ok(Json(json!({"subnetpool": view(&p)})))
}

/// `DELETE /v2.0/subnetpools/{id}`.
pub async fn delete(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, NetworkError> {
    let p = visible_pool(&st, &id, &caller)?;
    if !caller.is_admin() && p.spec.project_id != caller.project {
        return Err(NetworkError::policy("delete_subnetpool"));
    }
    st.engine
        .subnet_pool(
            &p.spec.id,
            PoolCommand::Delete,
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The prefix a subnet create asks `pool` for: decided on the current state without
/// appending (the real allocation decides again).
pub fn preview(
    st: &NetworkState,
    pool: SubnetPoolId,
    subnet: SubnetId,
    request: PrefixRequest,
) -> Result<Cidr, NetworkError> {
    let views = st.engine.world().read();
    let row = views.subnet_pools().row(&pool);
    let evs = domain::network::pool::decide(
        pool,
        row.map(|r| &r.state),
        PoolCommand::Allocate { subnet, request },
        engine::now(),
    )?;
    match evs.first() {
        Some(domain::network::pool::PoolEvent::PrefixAllocated { cidr, .. }) => Ok(*cidr),
        _ => Err(NetworkError::internal()),
    }
}

/// Allocates the prefix for `subnet` from `pool` (OCC on the pool's subject); the
/// prefix the pool recorded.
pub async fn allocate(
    st: &NetworkState,
    caller: &Caller,
    pool: SubnetPoolId,
    subnet: SubnetId,
    request: PrefixRequest,
) -> Result<Cidr, NetworkError> {
    st.engine
        .subnet_pool(
            &pool,
            PoolCommand::Allocate { subnet, request },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    st.engine
        .world()
        .read()
        .subnet_pools()
        .get(&pool)
        .and_then(|p| p.allocations.get(&subnet))
        .map(|(c, _)| *c)
        .ok_or_else(NetworkError::internal)
}

/// Gives `subnet`'s prefix back to `pool` (best effort: the reconciler completes it).
pub async fn release(st: &NetworkState, caller: &Caller, pool: SubnetPoolId, subnet: SubnetId) {
    if let Err(e) = st
        .engine
        .subnet_pool(
            &pool,
            PoolCommand::Release { subnet },
            &caller.ctx(),
            &caller.meta(),
        )
        .await
    {
        tracing::warn!(%pool, %subnet, error = %e, "prefix release failed; the reconciler will retry");
    }
}
