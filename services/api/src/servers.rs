//! Handlers of `/v2.1/servers`: thin glue between parsing, the engine and shaping.
//!
//! Invariants:
//! - A server of another project is a 404 (never a 403) unless the caller is admin; a
//!   deleted server is a 404 except in lists with `changes-since`/`changes-before`.
//! - The endpoint's policy row (and another project's server being a 404) is enforced
//!   by [`crate::policy::guard`] before a handler runs; handlers check only the
//!   content-dependent rules of [`crate::policy::CONDITIONAL`].
//! - State changes only through `engine.instance(..)`; the world is read under its
//!   lock and the lock is never held across an await.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::instance::{Instance, InstanceCommand};
use domain::quota::{QuotaCommand, QuotaEvent, Usage};
use domain::{CellName, InstanceId};
use projections::Views;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::actions::{ActionCx, ActionRequest, Reply};
use crate::body::Typed;
use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::parse;
use crate::util;
use crate::view::{self, ViewCtx};
use crate::ApiState;

/// Nova's `max_limit` for collections.
pub const MAX_LIMIT: usize = 1000;

/// The instance `id` if the caller may see it (not deleted, own project or admin).
pub fn visible<'a>(views: &'a Views, id: &str, caller: &Caller) -> Result<&'a Instance, ApiError> {
    InstanceId::parse(id)
        .and_then(|iid| views.instance(&iid))
        .filter(|i| !i.deleted && caller.can_see(&i.spec.project_id))
        .ok_or_else(|| ApiError::instance_not_found(id))
}

/// The cell of instance `id` if that cell is down now (its stream is unreachable).
fn down_cell(st: &ApiState, views: &Views, id: &InstanceId) -> Option<CellName> {
    views
        .instance_cell(id)
        .filter(|c| st.engine.world().health.is_down(c))
}

/// Refuses (503, nothing appended) a change to an instance whose cell is down.
pub(crate) fn require_cell_up(
    st: &ApiState,
    views: &Views,
    id: &InstanceId,
) -> Result<(), ApiError> {
    match down_cell(st, views, id) {
        Some(cell) => Err(ApiError::cell_down(&cell, &id.to_string())),
        None => Ok(()),
    }
}

/// Nova's paging and sorting parameters: with any of them (or any filter but
/// `all_tenants`) a list cannot include partial records of down cells and skips them.
const PAGING_SORTING_PARAMS: &[&str] = &["sort_key", "sort_dir", "limit", "marker"];

fn view_ctx<'a>(caller: &'a Caller, views: &'a Views) -> ViewCtx<'a> {
    ViewCtx {
        version: caller.version(),
        is_admin: caller.is_admin,
        base: caller.base(),
        views,
    }
}

/// A generated `adminPass` (create's answer; rebuild will answer one too).
pub(crate) fn admin_pass(id: Uuid) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = id.as_bytes().to_vec();
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    bytes
        .iter()
        .take(12)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// POST /servers
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Typed(req): Typed<parse::CreateServer>,
) -> Result<Response, ApiError> {
    let id = InstanceId(Uuid::new_v4());
    let hints = req.scheduler_hints.clone();
    let (spec, details) = {
        let views = st.engine.world().read();
        let spec = parse::resolve_create(req, &views, &caller, id)?;
        // Nova's `_check_metadata_properties_quota`: the caller's `metadata_items`.
        let limit = st
            .engine
            .quota_limits(&views, &caller.project, Some(&caller.user))
            .get(&domain::quota::Resource::MetadataItems)
            .copied()
            .unwrap_or(domain::quota::Resource::MetadataItems.nova_default());
        if limit >= 0 && spec.metadata.len() as i64 > limit {
            return Err(ApiError::forbidden(format!(
                "Maximum number of metadata items exceeds {limit}"
            )));
        }
        // The image's properties at boot, shown from 2.98 (Glance properties are strings).
        let image_properties = domain::ImageId::parse(&spec.image_ref)
            .and_then(|iid| views.image(&iid))
            .map(|img| {
                img.spec
                    .properties
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()).to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let details = domain::instance::BootDetails {
            scheduler_hints: hints,
            image_properties,
        };
        (spec, details)
    };
    // Quota first (Nova's order: after validation, before anything is recorded); a
    // refusal appends nothing. Should the create itself be refused now, the holding is
    // given back at once (the quota reactor would after its grace anyway).
    crate::server_groups::check_hinted_group(&st, &caller, &details, id)?;
    let usage = Usage::of_flavor(spec.flavor.spec.vcpus, spec.flavor.spec.ram_mb);
    let project = spec.project_id.clone();
    let ctx = caller.ctx();
    st.engine
        .reserve_instances(
            &project,
            &spec.user_id,
            vec![(id, usage)],
            &ctx,
            &caller.meta(),
        )
        .await?;
    // Fault tests stop here: the reservation is committed, the build request is not.
    engine::failpoint("api-after-quota-reserve");
    let created = match crate::server_groups::join_hinted_group(&st, &caller, &details, id).await {
        Ok(group) => {
            // Fault tests stop here: the instance is a member, its build request is not
            // appended (the `GroupMembers` reactor removes it after the grace).
            if group.is_some() {
                engine::failpoint("api-after-group-join");
            }
            let created = st
                .engine
                .instance(
                    id,
                    InstanceCommand::Create(Box::new(spec), details),
                    &ctx,
                    &caller.meta(),
                )
                .await
                .map_err(ApiError::from);
            if let (Err(_), Some((project, gid))) = (&created, group) {
                // The build was refused: give the membership back (best effort; a
                // member whose instance never appears is only shown as absent).
                let _ = st
                    .engine
                    .server_groups(
                        &project,
                        |_| domain::server_group::ServerGroupCommand::RemoveMembers {
                            id: gid,
                            instances: vec![id],
                        },
                        &ctx,
                        &caller.meta(),
                    )
                    .await;
            }
            created
        }
        Err(e) => Err(e),
    };
    if let Err(e) = created {
        let release = QuotaCommand::Settle(QuotaEvent::Released { instance: id });
        if let Err(re) = st
            .engine
            .quota(&project, |_| release.clone(), &ctx, &caller.meta())
            .await
        {
            tracing::warn!(server = %id, error = %re, "quota not given back after a refused create; the quota reactor will");
        }
        return Err(e);
    }
    let sid = id.to_string();
    tracing::info!(server = %sid, "server create accepted");
    let location = format!("{}/v2.1/servers/{sid}", caller.base());
    let body = json!({"server": {
        "id": sid,
        "links": view::links(caller.base(), "servers", &sid),
        "OS-DCF:diskConfig": "MANUAL",
        "security_groups": [{"name": "default"}],
        "adminPass": admin_pass(id.0),
    }});
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// GET /servers
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    list(&st, &caller, &q, false)
}

/// GET /servers/detail
pub async fn detail(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    list(&st, &caller, &q, true)
}

fn list(
    st: &ApiState,
    caller: &Caller,
    q: &QueryPairs,
    detail: bool,
) -> Result<Json<Value>, ApiError> {
    let query = parse::server_query(q, caller.version())?;
    if query.all_tenants && !caller.is_admin {
        return Err(ApiError::policy(if detail {
            "os_compute_api:servers:detail:get_all_tenants"
        } else {
            "os_compute_api:servers:index:get_all_tenants"
        }));
    }
    let views = st.engine.world().read();
    let with_deleted = query.changes_since.is_some() || query.changes_before.is_some();
    let no_tags = std::collections::BTreeSet::new();
    let matches = |i: &Instance| -> bool {
        let project_ok = if query.all_tenants {
            query
                .project
                .as_ref()
                .is_none_or(|p| &i.spec.project_id == p)
        } else {
            i.spec.project_id == caller.project
        };
        project_ok
            && (with_deleted || !i.deleted)
            && query
                .name
                .as_ref()
                .is_none_or(|n| i.spec.name.contains(n.as_str()))
            && query.status.as_ref().is_none_or(|s| i.status() == s)
            && (!caller.is_admin
                || query
                    .host
                    .as_ref()
                    .is_none_or(|h| i.host.as_ref().is_some_and(|x| x.as_str() == h)))
            && query.changes_since.is_none_or(|t| i.updated_at >= t)
            && query.changes_before.is_none_or(|t| i.updated_at <= t)
            && query
                .flavor
                .as_ref()
                .is_none_or(|f| i.flavor.spec.id.as_str() == f)
            && query.image.as_ref().is_none_or(|f| &i.spec.image_ref == f)
            && (query.tags == parse::TagFilters::default()
                || query.tags.matches(
                    views
                        .instances()
                        .get(&i.id())
                        .map_or(&no_tags, |r| &r.extras.tags),
                ))
    };
    // Cells whose stream is unreachable: their instances are left out of the sorted
    // list; from 2.69, without filters, paging or sorting, they are shown first as
    // partial records (Nova's `cell_down_support`), else skipped (Nova's default
    // `list_records_by_skipping_down_cells = True`).
    let down = st.engine.world().health.down();
    let in_down_cell = |i: &Instance| {
        !down.is_empty()
            && views
                .instance_cell(&i.id())
                .is_some_and(|c| down.contains(&c))
    };
    let cell_down_support = caller.version().at_least(69)
        && q.0.iter().all(|(k, _)| k == "all_tenants")
        && !q
            .0
            .iter()
            .any(|(k, _)| PAGING_SORTING_PARAMS.contains(&k.as_str()));
    let mut partial: Vec<&Instance> = Vec::new();
    // by_created is ascending; Nova's default sort is created_at desc, id desc.
    let all: Vec<&Instance> = views
        .by_created()
        .iter()
        .rev()
        .filter_map(|(_, id)| views.instance(id))
        .filter(|i| matches(i))
        .filter(|i| {
            if in_down_cell(i) {
                if cell_down_support {
                    partial.push(i);
                }
                false
            } else {
                true
            }
        })
        .collect();
    let start = match &query.marker {
        None => 0,
        Some(m) => {
            let marker = InstanceId::parse(m)
                .and_then(|id| views.instance(&id))
                .filter(|i| caller.can_see(&i.spec.project_id))
                .ok_or_else(|| ApiError::bad_request(format!("marker [{m}] not found")))?;
            let key = (marker.created_at, marker.id());
            all.iter()
                .position(|i| (i.created_at, i.id()) < key)
                .unwrap_or(all.len())
        }
    };
    let max = query.limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    let end = start.saturating_add(max).min(all.len());
    let page = &all[start..end];
    let cx = view_ctx(caller, &views);
    let level = if detail {
        view::DownCellView::Detail
    } else {
        view::DownCellView::Index
    };
    let mut items: Vec<Value> = partial
        .iter()
        .map(|i| view::down_cell_server(i, &cx, level))
        .collect();
    items.extend(page.iter().map(|i| {
        if detail {
            view::server_view(i, &cx, view::ServerBody::Detail)
        } else {
            view::server_summary(i, caller.base())
        }
    }));
    let mut body = json!({"servers": items});
    if let (Some(last), true) = (page.last(), page.len() == max) {
        let path = if detail { "servers/detail" } else { "servers" };
        body["servers_links"] = util::next_link(caller.base(), path, &q.0, &last.id().to_string());
    }
    Ok(Json(body))
}

/// GET /servers/{id}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let i = visible(&views, &id, &caller)?;
    if let Some(cell) = down_cell(&st, &views, &i.id()) {
        if !caller.version().at_least(69) {
            return Err(ApiError::cell_down(&cell, &id));
        }
        let cx = view_ctx(&caller, &views);
        return Ok(Json(
            json!({"server": view::down_cell_server(i, &cx, view::DownCellView::Show)}),
        ));
    }
    Ok(Json(
        json!({"server": view::server_view(i, &view_ctx(&caller, &views), view::ServerBody::Show)}),
    ))
}

/// PUT /servers/{id}
pub async fn update(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(req): Typed<parse::UpdateServer>,
) -> Result<Json<Value>, ApiError> {
    let parse::UpdateServer { name, description } = req;
    let iid = {
        let views = st.engine.world().read();
        let iid = visible(&views, &id, &caller)?.id();
        require_cell_up(&st, &views, &iid)?;
        iid
    };
    st.engine
        .instance(
            iid,
            InstanceCommand::Update { name, description },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let views = st.engine.world().read();
    let i = visible(&views, &id, &caller)?;
    Ok(Json(
        json!({"server": view::server_view(i, &view_ctx(&caller, &views), view::ServerBody::Update)}),
    ))
}

/// DELETE /servers/{id}
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let iid = {
        let views = st.engine.world().read();
        let iid = visible(&views, &id, &caller)?.id();
        require_cell_up(&st, &views, &iid)?;
        iid
    };
    st.engine
        .instance(iid, InstanceCommand::Delete, &caller.ctx(), &caller.meta())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /servers/{id}/action: the body names one declared action
/// ([`crate::actions::ACTIONS`]), decoded before this runs; it is resolved against the
/// world, run, and answered as its declaration says.
pub async fn action(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(req): Typed<ActionRequest>,
) -> Result<Response, ApiError> {
    let reply = req.decl.reply;
    let (iid, prepared) = {
        let views = st.engine.world().read();
        let i = visible(&views, &id, &caller)?;
        require_cell_up(&st, &views, &i.id())?;
        let cx = ActionCx {
            views: &views,
            caller: &caller,
            instance: i,
            limits: st
                .engine
                .quota_limits(&views, &caller.project, Some(&caller.user)),
        };
        let prepared = req.resolve(&cx)?;
        if let (Some(_), Some(cmd)) = (&prepared.resize_quota, &prepared.command) {
            // Nova checks the instance's state and the flavors before the quota: a
            // refused action answers its own error, not the quota's.
            domain::instance::decide(Some(i), cmd.clone(), &caller.ctx(), &st.engine.config)?;
        }
        (i.id(), prepared)
    };
    let ctx = caller.ctx();
    let project = {
        let views = st.engine.world().read();
        visible(&views, &id, &caller)?.spec.project_id.clone()
    };
    if let Some((flavor, delta)) = &prepared.resize_quota {
        st.engine
            .reserve_resize(&project, iid, flavor, *delta, &ctx, &caller.meta())
            .await?;
    }
    let done = match prepared.command {
        Some(cmd) => st
            .engine
            .instance(iid, cmd, &ctx, &caller.meta())
            .await
            .map(|_| ()),
        // A read-only action (console output): nothing to run.
        None => Ok(()),
    };
    if let (Err(_), Some(_)) = (&done, &prepared.resize_quota) {
        // The resize did not start: its delta is given back now, not after the grace.
        let give_back = |v: &Views| {
            let usage = v
                .quotas()
                .ledger(&project)
                .and_then(|r| r.state.holdings.get(&iid))
                .map(|h| h.usage)
                .unwrap_or_default();
            QuotaCommand::Settle(QuotaEvent::Adjusted {
                instance: iid,
                usage,
            })
        };
        if let Err(e) = st
            .engine
            .quota(&project, give_back, &ctx, &caller.meta())
            .await
        {
            tracing::warn!(server = %iid, error = %e, "resize quota not given back; the quota reactor will");
        }
    }
    done?;
    Ok(match reply {
        Reply::Accepted | Reply::NoContent => reply.status().into_response(),
        Reply::AcceptedWithBody(body) | Reply::Read(body) => {
            let views = st.engine.world().read();
            let i = visible(&views, &id, &caller)?;
            let body = body(i, &view_ctx(&caller, &views), prepared.handover);
            (reply.status(), Json(body)).into_response()
        }
    })
}
