//! Handlers of `/v2.1/servers`: thin glue between parsing, the engine and shaping.
//!
//! Invariants:
//! - A server of another project is a 404 (never a 403) unless the caller is admin; a
//!   deleted server is a 404 except in lists with `changes-since`/`changes-before`,
//!   or an admin's `deleted=true` / `status=DELETED`.
//! - The endpoint's policy row (and another project's server being a 404) is enforced
//!   by [`crate::policy::guard`] before a handler runs; handlers check only the
//!   content-dependent rules of [`crate::policy::CONDITIONAL`].
//! - State changes only through `engine.instance(..)`; the world is read under its
//!   lock and the lock is never held across an await.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::instance::{Instance, InstanceCommand, Networks};
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

/// Most servers one request may create (`max_count`): Nova sets no bound but its
/// quota; with unlimited quota a bound keeps one request from building millions.
pub const MAX_COUNT: u32 = 1000;

/// POST /servers: one server, or `min_count`..`max_count` of them (a multiple create:
/// named `<name>-<n>`, sharing one `reservation_id`, as many as the quota allows but at
/// least `min_count`, each reserved, built and counted like a single create).
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Typed(mut req): Typed<parse::CreateServer>,
) -> Result<Response, ApiError> {
    if req.max_count > MAX_COUNT {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute max_count. Value: {}. {} is greater than the maximum of {MAX_COUNT}",
            req.max_count, req.max_count
        )));
    }
    let hints = req.scheduler_hints.clone();
    let (min, max) = (req.min_count, req.max_count);
    let return_reservation_id = req.return_reservation_id;
    let multiple = max > 1;
    let reservation_id =
        multiple.then(|| format!("r-{}", &Uuid::new_v4().simple().to_string()[..8]));
    let extras = domain::instance::CreateExtras {
        reservation_id: reservation_id.clone(),
        launch_index: 0,
        access_ip_v4: req.access_ip_v4.clone(),
        access_ip_v6: req.access_ip_v6.clone(),
        user_data: req.user_data.clone(),
        config_drive: req.config_drive,
    };
    let ids: Vec<InstanceId> = (0..max).map(|_| InstanceId(Uuid::new_v4())).collect();
    let (first_spec, details, networks) = {
        let views = st.engine.world().read();
        let mut spec = parse::resolve_create(req.clone(), &views, &caller, ids[0])?;
        // Nova's `_check_requested_networks`: checked and resolved before anything is
        // recorded; the build request records the resolved list.
        let networks = crate::server_networks::resolve(
            &views,
            &caller,
            &spec.networks,
            max,
            caller.version(),
        )?;
        spec.networks = networks.clone();
        // Nova's `_check_metadata_properties_quota`: the caller's `metadata_items`;
        // then `_check_injected_file_quota`.
        let limits = st
            .engine
            .quota_limits(&views, &caller.project, Some(&caller.user));
        parse::check_injected_files(&req.personality, &limits)?;
        let limit = limits
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
        (spec, details, networks)
    };
    req.networks = networks;
    // Nova's `_check_requested_secgroups`: the named groups must be the project's.
    // A server with ports records its groups (`default` when none was named).
    let has_ports = matches!(&req.networks, Networks::List(l) if !l.is_empty());
    let groups = if has_ports || req.security_groups.is_some() {
        let g = crate::server_security_groups::resolve_for_create(
            &st,
            &caller,
            req.security_groups.as_deref(),
        )
        .await?;
        has_ports.then_some(g)
    } else {
        None
    };
    // Quota first (Nova's order: after validation, before anything is recorded); a
    // refusal appends nothing. Should the create itself be refused now, the holding is
    // given back at once (the quota reactor would after its grace anyway).
    crate::server_groups::check_hinted_group(&st, &caller, &details, ids[0])?;
    let usage = Usage::of_flavor(first_spec.flavor.spec.vcpus, first_spec.flavor.spec.ram_mb);
    let project = first_spec.project_id.clone();
    let user = first_spec.user_id.clone();
    let ctx = caller.ctx();
    let reserve = |n: u32| {
        let held: Vec<_> = ids[..n as usize].iter().map(|id| (*id, usage)).collect();
        let (st, project, user, ctx, meta) = (&st, &project, &user, &ctx, caller.meta());
        async move {
            st.engine
                .reserve_instances(project, user, held, ctx, &meta)
                .await
        }
    };
    // Nova admits `max_count` if it fits, else as many as fit if that is at least
    // `min_count` (a refused reservation appends nothing, so the largest count that
    // fits is found by halving), else refuses with the quota's message for `min_count`.
    let count = match reserve(max).await {
        Ok(_) => max,
        Err(e) if min == max => return Err(e.into()),
        Err(_) => {
            if let Err(e) = reserve(min).await {
                return Err(e.into());
            }
            let (mut fits, mut over) = (min, max);
            while over - fits > 1 {
                let mid = fits + (over - fits) / 2;
                let extra: Vec<_> = ids[fits as usize..mid as usize]
                    .iter()
                    .map(|id| (*id, usage))
                    .collect();
                match st
                    .engine
                    .reserve_instances(&project, &user, extra, &ctx, &caller.meta())
                    .await
                {
                    Ok(_) => fits = mid,
                    Err(_) => over = mid,
                }
            }
            fits
        }
    };
    // Fault tests stop here: the reservation is committed, the build request is not.
    engine::failpoint("api-after-quota-reserve");
    let mut first_error = None;
    for (n, id) in ids.iter().take(count as usize).enumerate() {
        let created = if first_error.is_some() {
            Err(ApiError::bad_request("not created"))
        } else {
            build_one(
                &st,
                &caller,
                &req,
                *id,
                n,
                count,
                (n == 0).then(|| first_spec.clone()),
                &details,
                &extras,
                groups.as_deref(),
            )
            .await
        };
        if let Err(e) = created {
            let release = QuotaCommand::Settle(QuotaEvent::Released { instance: *id });
            if let Err(re) = st
                .engine
                .quota(&project, |_| release.clone(), &ctx, &caller.meta())
                .await
            {
                tracing::warn!(server = %id, error = %re, "quota not given back after a refused create; the quota reactor will");
            }
            first_error.get_or_insert(e);
        }
    }
    // The first server's refusal is the answer (nothing was built); a later one stops
    // the request there, the servers before it stay (as a partly scheduled request
    // leaves them in Nova).
    if let Some(e) = first_error {
        return Err(e);
    }
    let sid = ids[0].to_string();
    tracing::info!(server = %sid, count, "server create accepted");
    if return_reservation_id {
        let r = reservation_id
            .unwrap_or_else(|| format!("r-{}", &ids[0].0.simple().to_string()[8..16]));
        return Ok((StatusCode::ACCEPTED, Json(json!({"reservation_id": r}))).into_response());
    }
    let location = format!("{}/v2.1/servers/{sid}", caller.base());
    let body = json!({"server": {
        "id": sid,
        "links": view::links(caller.base(), "servers", &sid),
        "OS-DCF:diskConfig": if req.auto_disk_config == Some(true) { "AUTO" } else { "MANUAL" },
        "security_groups": req.security_groups.as_ref().map_or_else(
            || json!([{"name": "default"}]),
            |names| names.iter().map(|n| json!({"name": n})).collect(),
        ),
        "adminPass": req.admin_pass.clone().unwrap_or_else(|| admin_pass(ids[0].0)),
    }});
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Builds server `n` of a create of `count`: its spec (the first is resolved already),
/// its hinted group membership, its build request.
#[allow(clippy::too_many_arguments)]
async fn build_one(
    st: &ApiState,
    caller: &Caller,
    req: &parse::CreateServer,
    id: InstanceId,
    n: usize,
    count: u32,
    spec: Option<domain::instance::InstanceSpec>,
    details: &domain::instance::BootDetails,
    extras: &domain::instance::CreateExtras,
    groups: Option<&[domain::SecurityGroupId]>,
) -> Result<(), ApiError> {
    let mut spec = match spec {
        Some(s) => s,
        None => {
            let views = st.engine.world().read();
            parse::resolve_create(req.clone(), &views, caller, id)?
        }
    };
    if count > 1 {
        // Nova's multi_instance_display_name_template, "%(name)s-%(count)d".
        spec.name = format!("{}-{}", req.name, n + 1);
    }
    let extras = domain::instance::CreateExtras {
        launch_index: n as u32,
        ..extras.clone()
    };
    let ctx = caller.ctx();
    let group = crate::server_groups::join_hinted_group(st, caller, details, id).await?;
    // Fault tests stop here: the instance is a member, its build request is not
    // appended (the `GroupMembers` reactor removes it after the grace).
    if group.is_some() {
        engine::failpoint("api-after-group-join");
    }
    // Nova's default: the image's `auto_disk_config` property (a boolean string).
    let auto_disk_config = req.auto_disk_config.or_else(|| {
        let views = st.engine.world().read();
        domain::ImageId::parse(&spec.image_ref)
            .and_then(|iid| views.image(&iid))
            .and_then(|img| img.spec.properties.get("auto_disk_config"))
            .and_then(|v| parse::parse_bool(v))
            .filter(|auto| *auto)
    });
    let mut cmd = InstanceCommand::Create(
        Box::new(spec),
        details.clone(),
        Box::new(extras),
        req.tags.clone(),
    );
    if let Some(auto) = auto_disk_config {
        cmd = InstanceCommand::WithDiskConfig(Box::new(cmd), auto);
    }
    if let Some(groups) = groups {
        cmd = InstanceCommand::WithSecurityGroups(Box::new(cmd), groups.to_vec());
    }
    let created = st
        .engine
        .instance(id, cmd, &ctx, &caller.meta())
        .await
        .map_err(ApiError::from);
    if let (Err(_), Some((project, gid))) = (&created, group) {
        // The build was refused: give the membership back (best effort; a member whose
        // instance never appears is only shown as absent).
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
    created.map(|_| ())
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
    let wants_deleted = query
        .statuses
        .as_ref()
        .is_some_and(|s| s.iter().any(|s| s == "DELETED"));
    if wants_deleted && !caller.is_admin {
        return Err(ApiError::forbidden(
            "Only administrators may list deleted instances",
        ));
    }
    // Nova: admins' `deleted` (or `status=DELETED`) picks deleted or live servers;
    // without it, only `changes-since` / `changes-before` bring deleted ones.
    let deleted = match (caller.is_admin, query.deleted) {
        _ if wants_deleted => Some(true),
        (true, Some(d)) => Some(d),
        _ if query.changes_since.is_some() || query.changes_before.is_some() => None,
        _ => Some(false),
    };
    // `ip` and `ip6` (`ip6` for non-admins from 2.5): Nova's `_ip_filter`, a regular
    // expression matched at the start of each fixed address of that version (an
    // invalid expression matches nothing).
    let anchored = |p: &String| regex::Regex::new(&format!("^(?:{p})")).ok();
    let ip6_allowed = caller.is_admin || caller.version().at_least(5);
    let ip4_re = query.ip.as_ref().map(anchored);
    let ip6_re = query.ip6.as_ref().filter(|_| ip6_allowed).map(anchored);
    let by_address = ip4_re.is_some() || ip6_re.is_some();
    let views = st.engine.world().read();
    let name_ok = query.name.as_deref().map(parse::name_matcher);
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
            && (!by_address
                || {
                    let sid = i.id().to_string();
                    let hit = |re: &Option<Option<regex::Regex>>, v6: bool| matches!(re, Some(Some(r)) if crate::server_networks::address_matches(&views, &sid, r, v6));
                    hit(&ip4_re, false) || hit(&ip6_re, true)
                })
            && deleted.is_none_or(|d| i.deleted == d)
            && name_ok.as_ref().is_none_or(|m| m(&i.spec.name))
            && query.reservation_id.as_ref().is_none_or(|r| {
                let extras = views.instances().get(&i.id()).map(|r| &r.extras);
                &view::reservation_id(i, extras) == r
            })
            && query.statuses.as_ref().is_none_or(|want| {
                let default = if i.deleted {
                    "DELETED"
                } else {
                    domain::states::api_status(i.vm_state, None)
                };
                want.iter()
                    .any(|w| parse::status_matches(w, i.status(), default))
            })
            && (!caller.is_admin
                || query
                    .host
                    .as_ref()
                    .is_none_or(|h| i.host.as_ref().is_some_and(|x| x.as_str() == h)))
            && query.locked.is_none_or(|l| i.locked.is_some() == l)
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
    let parse::UpdateServer {
        name,
        description,
        auto_disk_config,
        access,
    } = req;
    let iid = {
        let views = st.engine.world().read();
        let i = visible(&views, &id, &caller)?;
        parse::check_auto_disk_config(&views, &i.spec.image_ref, auto_disk_config)?;
        let iid = i.id();
        require_cell_up(&st, &views, &iid)?;
        iid
    };
    let mut cmd = InstanceCommand::Update { name, description };
    if !access.is_empty() {
        cmd = InstanceCommand::WithAccess(Box::new(cmd), access);
    }
    if let Some(auto) = auto_disk_config {
        cmd = InstanceCommand::WithDiskConfig(Box::new(cmd), auto);
    }
    st.engine
        .instance(iid, cmd, &caller.ctx(), &caller.meta())
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
    console: Option<axum::Extension<crate::ConsoleLogs>>,
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
            auth: &st.auth,
            liveness: &st.engine.liveness,
            console: console.as_ref().map(|c| &c.0),
        };
        let prepared = req.resolve(&cx)?;
        let checks_first = prepared.resize_quota.is_some()
            || prepared.restore_quota.is_some()
            || prepared.image.is_some();
        if let (true, Some(cmd)) = (checks_first, &prepared.command) {
            // Nova checks the instance's state and the flavors before the quota (and
            // before it creates a snapshot's image): a refused action answers its own
            // error, not the quota's, and leaves nothing behind.
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
    if let Some((user, usage)) = &prepared.restore_quota {
        st.engine
            .reserve_instances(&project, user, vec![(iid, *usage)], &ctx, &caller.meta())
            .await?;
    }
    if let Some(spec) = &prepared.image {
        st.engine
            .image(
                &spec.id,
                domain::image::ImageCommand::Create(spec.clone()),
                &ctx,
                &caller.meta(),
            )
            .await?;
    }
    match &prepared.network {
        Some(crate::actions::NetworkOp::Floating(op)) => {
            crate::floating_ip_proxy::apply(&st, &caller, op).await?
        }
        Some(crate::actions::NetworkOp::SecurityGroups(op)) => {
            crate::server_security_groups::apply(&st, &caller, op).await?
        }
        None => {}
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
    if let (Err(_), Some(_)) = (&done, &prepared.restore_quota) {
        // The restore did not start: what it reserved is given back now, not after the
        // grace (the server rests soft-deleted, which holds nothing).
        let release = |_: &Views| QuotaCommand::Settle(QuotaEvent::Released { instance: iid });
        if let Err(e) = st
            .engine
            .quota(&project, release, &ctx, &caller.meta())
            .await
        {
            tracing::warn!(server = %iid, error = %e, "restore quota not given back; the quota reactor will");
        }
    }
    if let (Err(_), Some(spec)) = (&done, &prepared.image) {
        // The snapshot did not start (the state changed since the check): its image
        // goes, as Nova's `snapshot` deletes it.
        if let Err(e) = st
            .engine
            .image(
                &spec.id,
                domain::image::ImageCommand::Delete,
                &ctx,
                &caller.meta(),
            )
            .await
        {
            tracing::warn!(image = %spec.id, error = %e, "snapshot image not deleted after a refused action");
        }
    }
    done?;
    Ok(match reply {
        Reply::Image => {
            crate::snapshots::reply(caller.version(), caller.base(), &prepared.handover)
        }
        Reply::Accepted | Reply::NoContent => reply.status().into_response(),
        Reply::AcceptedWithBody(body) | Reply::Read(body) | Reply::OkWithBody(body) => {
            let views = st.engine.world().read();
            let i = visible(&views, &id, &caller)?;
            let body = body(i, &view_ctx(&caller, &views), prepared.handover);
            if body.is_null() {
                // An action Nova answers with no body (evacuate from 2.14).
                return Ok(reply.status().into_response());
            }
            (reply.status(), Json(body)).into_response()
        }
    })
}
