//! Handlers of `/v2.1/flavors`, `os-extra_specs` and `os-flavor-access`.
//!
//! Invariants:
//! - Non-admins see public flavors and the private ones whose access list names their
//!   project; any other private flavor is a 404 to them. Lists without `is_public`
//!   (or `is_public=true`) show, to admins too, the public flavors and the private ones
//!   of the caller's project, as Nova's flavor query does.
//! - Flavor names are unique among live flavors, under any concurrency: the engine
//!   claims the name on its own subject before creating ([`engine::flavors`]); ids are
//!   unique by OCC on the flavor's subject.
//! - Who may call each handler (admin-only create / update / delete / access) is
//!   decided by [`crate::policy::guard`] before the handler runs.

use std::cmp::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::flavor::{Flavor, FlavorCommand};
use domain::{DomainError, FlavorId, ProjectId};
use engine::EngineError;
use projections::Views;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, check_len, Decode, Typed};
use crate::context::{Caller, JsonBody, QueryPairs};
use crate::error::ApiError;
use crate::microversion::Version;
use crate::parse;
use crate::view;
use crate::ApiState;

fn visible<'a>(views: &'a Views, id: &str, caller: &Caller) -> Result<&'a Flavor, ApiError> {
    views
        .flavor(id)
        .filter(|f| caller.is_admin || f.visible_to(&caller.project))
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
        .filter(|f| match fq.is_public {
            None => true,
            // Nova adds "or the caller's project has access" to `is_public = true`.
            Some(true) => f.visible_to(&caller.project),
            Some(false) => !f.spec.is_public,
        })
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
    // Nova checks the id before the name; the engine decides both again atomically.
    if st.engine.world().read().flavor(spec.id.as_str()).is_some() {
        return Err(ApiError::conflict(format!(
            "Flavor with ID {} already exists.",
            spec.id
        )));
    }
    let id = spec.id.clone();
    st.engine
        .create_flavor(spec, &caller.ctx(), &caller.meta())
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
        .delete_flavor(&fid, &caller.ctx(), &caller.meta())
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
    validate_specs(&caller, &specs)?;
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

/// From 2.86 known extra specs are validated as Nova does ([`crate::extra_specs`]).
fn validate_specs(
    caller: &Caller,
    specs: &std::collections::BTreeMap<String, String>,
) -> Result<(), ApiError> {
    if caller.version().at_least(86) {
        for (k, v) in specs {
            crate::extra_specs::validate(k, v)?;
        }
    }
    Ok(())
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
    validate_specs(&caller, &specs)?;
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
    // Nova answers 200 here (no `wsgi.response` on the delete), 202 on flavors.
    Ok(StatusCode::OK)
}

/// Nova's access list body: `{"flavor_access": [{"flavor_id", "tenant_id"}, ...]}`.
fn access_body(f: &Flavor) -> Json<Value> {
    let items: Vec<Value> = f
        .projects
        .iter()
        .map(|p| json!({"flavor_id": f.spec.id.as_str(), "tenant_id": p.as_str()}))
        .collect();
    Json(json!({ "flavor_access": items }))
}

/// GET /flavors/{id}/os-flavor-access (admin): the projects of a private flavor.
pub async fn access_index(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let f = views
        .flavor(&id)
        .ok_or_else(|| ApiError::flavor_not_found(&id))?;
    if f.spec.is_public {
        return Err(ApiError::not_found(
            "Access list not available for public flavors.",
        ));
    }
    Ok(access_body(f))
}

/// A validated `POST /flavors/{id}/action` body.
#[derive(Debug)]
pub enum AccessAction {
    /// `addTenantAccess`
    Add(String),
    /// `removeTenantAccess`
    Remove(String),
}

/// `{"tenant": "..."}` of both actions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantArg {
    tenant: String,
}

impl Decode for AccessAction {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        let Some(obj) = body.as_object() else {
            return Err(ApiError::bad_request("Malformed request body"));
        };
        let mut keys = obj.iter();
        let (key, arg) = match (keys.next(), keys.next()) {
            (Some(one), None) => one,
            (None, _) => {
                return Err(ApiError::bad_request(
                    "Malformed request body: no action given",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "Malformed request body: too many body keys",
                ))
            }
        };
        let tenant = |arg: &Value| -> Result<String, ApiError> {
            let t: TenantArg = body::from_value(key, arg)?;
            check_len("tenant", &t.tenant, 1, 255)?;
            Ok(t.tenant)
        };
        match key.as_str() {
            "addTenantAccess" => Ok(AccessAction::Add(tenant(arg)?)),
            "removeTenantAccess" => Ok(AccessAction::Remove(tenant(arg)?)),
            other => Err(ApiError::bad_request(format!(
                "There is no such action: {other}"
            ))),
        }
    }
}

/// POST /flavors/{id}/action (admin): `addTenantAccess` / `removeTenantAccess`, answered
/// with the access list after the change.
pub async fn action(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(action): Typed<AccessAction>,
) -> Result<Json<Value>, ApiError> {
    let (project, adding) = match &action {
        AccessAction::Add(p) => (p.as_str(), true),
        AccessAction::Remove(p) => (p.as_str(), false),
    };
    {
        let views = st.engine.world().read();
        // Removing an unknown project is allowed (it may have been deleted since).
        if adding {
            crate::quotas::verify_project(&st, &views, project)?;
        }
        let f = views
            .flavor(&id)
            .ok_or_else(|| ApiError::flavor_not_found(&id))?;
        // `is_public` never changes after create, so this check cannot go stale.
        if adding && f.spec.is_public && caller.version().at_least(7) {
            return Err(ApiError::conflict("Can not add access to a public flavor."));
        }
    }
    let pid = ProjectId::new(project).map_err(|_| {
        ApiError::bad_request(format!("Project ID {project} is not a valid project."))
    })?;
    let cmd = if adding {
        FlavorCommand::AddAccess(pid)
    } else {
        FlavorCommand::RemoveAccess(pid)
    };
    let fid = flavor_id(&id)?;
    match st
        .engine
        .flavor(&fid, cmd, &caller.ctx(), &caller.meta())
        .await
    {
        Err(EngineError::Domain(DomainError::NotFound { kind, .. }))
            if kind == domain::flavor::ACCESS =>
        {
            return Err(ApiError::not_found(format!(
                "Flavor access not found for {id} / {project} combination."
            )))
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let views = st.engine.world().read();
    let f = views
        .flavor(&id)
        .ok_or_else(|| ApiError::flavor_not_found(&id))?;
    Ok(access_body(f))
}
