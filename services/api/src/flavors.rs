//! Handlers of `/v2.1/flavors` and `os-extra_specs`.
//!
//! Invariants:
//! - Non-admins see public flavors only (there are no flavor access lists yet); a
//!   private flavor is a 404 to them.
//! - Flavor names are unique among live flavors (checked against the world before the
//!   append: two concurrent creates with the same name and different ids can both
//!   succeed; ids are unique by OCC).
//! - Who may call each handler (admin-only create / update / delete) is decided by
//!   [`crate::policy::guard`] before the handler runs.

use std::cmp::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::flavor::{Flavor, FlavorCommand};
use domain::FlavorId;
use projections::Views;
use serde_json::{json, Value};

use crate::body::Typed;
use crate::context::{Caller, JsonBody, QueryPairs};
use crate::error::ApiError;
use crate::parse;
use crate::view;
use crate::ApiState;

fn visible<'a>(views: &'a Views, id: &str, caller: &Caller) -> Result<&'a Flavor, ApiError> {
    views
        .flavor(id)
        .filter(|f| f.spec.is_public || caller.is_admin)
        .ok_or_else(|| ApiError::flavor_not_found(id))
}

fn flavor_id(id: &str) -> Result<FlavorId, ApiError> {
    FlavorId::new(id).map_err(|_| ApiError::flavor_not_found(id))
}

fn compare(a: &Flavor, b: &Flavor, key: &str) -> Ordering {
    let (x, y) = (&a.spec, &b.spec);
    let primary = match key {
        "name" => x.name.cmp(&y.name),
        "memory_mb" => x.ram_mb.cmp(&y.ram_mb),
        "vcpus" => x.vcpus.cmp(&y.vcpus),
        "root_gb" => x.disk_gb.cmp(&y.disk_gb),
        "ephemeral_gb" => x.ephemeral_gb.cmp(&y.ephemeral_gb),
        "swap" => x.swap_mb.cmp(&y.swap_mb),
        "rxtx_factor" => x.rxtx_factor.total_cmp(&y.rxtx_factor),
        "is_public" => x.is_public.cmp(&y.is_public),
        "description" => x.description.cmp(&y.description),
        "created_at" => a.created_at.cmp(&b.created_at),
        _ => Ordering::Equal,
    };
    primary.then_with(|| x.id.cmp(&y.id))
}

fn list(
    st: &ApiState,
    caller: &Caller,
    q: &QueryPairs,
    detail: bool,
) -> Result<Json<Value>, ApiError> {
    let fq = parse::flavor_query(q, caller.is_admin)?;
    let views = st.engine.world().read();
    let mut all: Vec<&Flavor> = views
        .flavors()
        .values()
        .filter_map(|r| r.state.as_ref())
        .filter(|f| !f.deleted)
        .filter(|f| fq.is_public.is_none_or(|p| f.spec.is_public == p))
        .filter(|f| fq.min_ram.is_none_or(|m| f.spec.ram_mb >= m))
        .filter(|f| fq.min_disk.is_none_or(|m| f.spec.disk_gb >= m))
        .collect();
    all.sort_by(|a, b| {
        let o = compare(a, b, &fq.sort_key);
        if fq.desc {
            o.reverse()
        } else {
            o
        }
    });
    let start = match &fq.marker {
        None => 0,
        Some(m) => {
            all.iter()
                .position(|f| f.spec.id.as_str() == m)
                .ok_or_else(|| ApiError::bad_request(format!("marker [{m}] not found")))?
                + 1
        }
    };
    let max = fq
        .limit
        .unwrap_or(crate::servers::MAX_LIMIT)
        .min(crate::servers::MAX_LIMIT);
    let end = start.saturating_add(max).min(all.len());
    let page = &all[start.min(end)..end];
    let items: Vec<Value> = page
        .iter()
        .map(|f| view::flavor_view(f, caller.version(), caller.base(), detail))
        .collect();
    let mut body = json!({"flavors": items});
    if let (Some(last), true) = (page.last(), page.len() == max) {
        let path = if detail { "flavors/detail" } else { "flavors" };
        body["flavors_links"] =
            crate::util::next_link(caller.base(), path, &q.0, last.spec.id.as_str());
    }
    Ok(Json(body))
}

/// GET /flavors
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    list(&st, &caller, &q, false)
}

/// GET /flavors/detail
pub async fn detail(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    list(&st, &caller, &q, true)
}

/// GET /flavors/{id}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let f = visible(&views, &id, &caller)?;
    Ok(Json(
        json!({"flavor": view::flavor_view(f, caller.version(), caller.base(), true)}),
    ))
}

fn detail_body(st: &ApiState, caller: &Caller, id: &str) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let f = views
        .flavor(id)
        .ok_or_else(|| ApiError::flavor_not_found(id))?;
    Ok(Json(
        json!({"flavor": view::flavor_view(f, caller.version(), caller.base(), true)}),
    ))
}

/// POST /flavors (admin)
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Typed(parse::FlavorCreate(spec)): Typed<parse::FlavorCreate>,
) -> Result<Json<Value>, ApiError> {
    {
        let views = st.engine.world().read();
        if views.flavor(spec.id.as_str()).is_some() {
            return Err(ApiError::conflict(format!(
                "Flavor with ID {} already exists.",
                spec.id
            )));
        }
        let dup = views
            .flavors()
            .values()
            .filter_map(|r| r.state.as_ref())
            .any(|f| !f.deleted && f.spec.name == spec.name);
        if dup {
            return Err(ApiError::conflict(format!(
                "Flavor with name {} already exists.",
                spec.name
            )));
        }
    }
    let id = spec.id.clone();
    st.engine
        .flavor(
            &id,
            FlavorCommand::Create(spec),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    detail_body(&st, &caller, id.as_str())
}

/// PUT /flavors/{id} (admin, 2.55+): description.
pub async fn update(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    if !caller.version().at_least(55) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let description = parse::flavor_update(&body)?;
    let fid = flavor_id(&id)?;
    st.engine
        .flavor(
            &fid,
            FlavorCommand::UpdateDescription(description),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    detail_body(&st, &caller, &id)
}

/// DELETE /flavors/{id} (admin)
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let fid = flavor_id(&id)?;
    st.engine
        .flavor(&fid, FlavorCommand::Delete, &caller.ctx(), &caller.meta())
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// GET /flavors/{id}/os-extra_specs
pub async fn specs_index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let f = visible(&views, &id, &caller)?;
    Ok(Json(json!({"extra_specs": f.extra_specs})))
}

/// POST /flavors/{id}/os-extra_specs (admin)
pub async fn specs_create(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let fid = flavor_id(&id)?;
    let specs = parse::extra_specs_create(&body)?;
    st.engine
        .flavor(
            &fid,
            FlavorCommand::SetExtraSpecs(specs.clone()),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(Json(json!({"extra_specs": specs})))
}

fn no_key(id: &str, key: &str) -> ApiError {
    ApiError::not_found(format!("Flavor {id} has no extra specs with key {key}."))
}

/// GET /flavors/{id}/os-extra_specs/{key}
pub async fn specs_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let f = visible(&views, &id, &caller)?;
    let v = f.extra_specs.get(&key).ok_or_else(|| no_key(&id, &key))?;
    Ok(Json(json!({ key: v })))
}

/// PUT /flavors/{id}/os-extra_specs/{key} (admin)
pub async fn specs_update(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let fid = flavor_id(&id)?;
    let specs = parse::extra_spec_update(&body, &key)?;
    st.engine
        .flavor(
            &fid,
            FlavorCommand::SetExtraSpecs(specs.clone()),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(Json(json!(specs)))
}

/// DELETE /flavors/{id}/os-extra_specs/{key} (admin)
pub async fn specs_delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let fid = flavor_id(&id)?;
    {
        let views = st.engine.world().read();
        let f = views
            .flavor(&id)
            .ok_or_else(|| ApiError::flavor_not_found(&id))?;
        if !f.extra_specs.contains_key(&key) {
            return Err(no_key(&id, &key));
        }
    }
    st.engine
        .flavor(
            &fid,
            FlavorCommand::UnsetExtraSpec(key),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::ACCEPTED)
}
