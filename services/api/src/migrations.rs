//! Migrations: `GET /v2.1/os-migrations` (Nova's `migrations.py`) and a server's
//! in-progress live migrations, `GET /v2.1/servers/{id}/migrations[/{mid}]` (2.23),
//! `POST .../migrations/{mid}/action` `force_complete` (2.22) and `DELETE
//! .../migrations/{mid}` (abort, 2.24) (`server_migrations.py`), served from the
//! `migrations` read model ([`projections::migrations`]).
//!
//! Invariants:
//! - Read only except where noted: nothing here appends. `force_complete` of a running
//!   live migration is accepted and changes nothing (the simulated driver's live
//!   migration always converges: Nova's force-complete only pauses the guest so that
//!   the copy converges sooner).
//! - The checks run in Nova's order: the server (404), the instance state (409,
//!   `task_state` migrating), the migration (400 / 404), its status (400).
//! - Fields per microversion as Nova: 2.23 `migration_type` and, for in-progress live
//!   migrations, `links`; 2.59 `uuid`, paging (`limit`, `marker` = a migration uuid,
//!   newest first by `created_at` then `id`), `changes-since` and strict query keys;
//!   2.66 `changes-before`; 2.80 `user_id` / `project_id` (output and filters).
//! - A deleted server's migrations are not listed (Nova soft-deletes them with it).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::instance::MigrationKind;
use domain::states::TaskState;
use domain::{InstanceId, Timestamp};
use projections::migrations::MigrationRecord;
use serde_json::{json, Map, Value};

use crate::context::{Caller, JsonBody, QueryPairs};
use crate::error::ApiError;
use crate::servers::visible;
use crate::util::{iso_micros, parse_iso};
use crate::ApiState;

/// Nova's `CONF.api.max_limit`.
const MAX_LIMIT: usize = 1000;

/// What the simulated hosts answer for `host_ip` (as os-hypervisors shows it).
const HOST_IP: &str = "127.0.0.1";

/// Live-migration statuses Nova links and shows as in progress (`server_migrations.py`).
const LIVE_IN_PROGRESS: &[&str] = &["queued", "preparing", "running", "post-migrating"];

/// Nova's integer flavor id (`instance_type_id`): Stratus keeps no integer key for a
/// flavor, so a numeric flavor id stands for itself and any other is folded into a
/// stable positive 31-bit number.
fn flavor_int(id: &str) -> i64 {
    if let Ok(n) = id.parse::<i64>() {
        return n;
    }
    // FNV-1a: stable across processes and releases.
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i64::from(h & 0x7fff_ffff)
}

fn time(t: Timestamp) -> String {
    iso_micros(t)
}

/// One migration as `GET /os-migrations` shows it.
fn list_view(iid: &InstanceId, m: &MigrationRecord, caller: &Caller) -> Value {
    let v = caller.version();
    let mut o = Map::new();
    let dest = m.dest_compute.as_ref().map(|h| h.as_str().to_string());
    o.insert("created_at".into(), json!(time(m.created_at)));
    o.insert("dest_compute".into(), json!(dest));
    o.insert("dest_host".into(), json!(dest.as_ref().map(|_| HOST_IP)));
    o.insert("dest_node".into(), json!(dest));
    o.insert("id".into(), json!(m.id));
    o.insert("instance_uuid".into(), json!(iid.to_string()));
    o.insert(
        "new_instance_type_id".into(),
        json!(flavor_int(m.new_flavor.as_str())),
    );
    o.insert(
        "old_instance_type_id".into(),
        json!(flavor_int(m.old_flavor.as_str())),
    );
    o.insert("source_compute".into(), json!(m.source_compute.as_str()));
    o.insert("source_node".into(), json!(m.source_compute.as_str()));
    o.insert("status".into(), json!(m.status));
    o.insert("updated_at".into(), json!(time(m.updated_at)));
    hide_hosts(&mut o, caller);
    if v.at_least(23) {
        o.insert("migration_type".into(), json!(m.migration_type()));
        if m.kind == MigrationKind::LiveMigration && LIVE_IN_PROGRESS.contains(&m.status.as_str()) {
            o.insert(
                "links".into(),
                crate::view::links(
                    caller.base(),
                    &format!("servers/{iid}/migrations"),
                    &m.id.to_string(),
                ),
            );
        }
    }
    if v.at_least(59) {
        o.insert("uuid".into(), json!(m.uuid.to_string()));
    }
    if v.at_least(80) {
        o.insert("user_id".into(), json!(m.user_id));
        o.insert("project_id".into(), json!(m.project_id));
    }
    Value::Object(o)
}

/// One migration as `/servers/{id}/migrations` shows it.
fn server_view(iid: &InstanceId, m: &MigrationRecord, caller: &Caller) -> Value {
    let v = caller.version();
    let dest = m.dest_compute.as_ref().map(|h| h.as_str().to_string());
    let mut o = Map::new();
    o.insert("created_at".into(), json!(time(m.created_at)));
    o.insert("dest_compute".into(), json!(dest));
    o.insert("dest_host".into(), json!(dest.as_ref().map(|_| HOST_IP)));
    o.insert("dest_node".into(), json!(dest));
    // The simulated driver reports no copy progress: Nova's None.
    for k in [
        "disk_processed_bytes",
        "disk_remaining_bytes",
        "disk_total_bytes",
        "memory_processed_bytes",
        "memory_remaining_bytes",
        "memory_total_bytes",
    ] {
        o.insert(k.into(), Value::Null);
    }
    o.insert("id".into(), json!(m.id));
    o.insert("server_uuid".into(), json!(iid.to_string()));
    o.insert("source_compute".into(), json!(m.source_compute.as_str()));
    o.insert("source_node".into(), json!(m.source_compute.as_str()));
    o.insert("status".into(), json!(m.status));
    o.insert("updated_at".into(), json!(time(m.updated_at)));
    hide_hosts(&mut o, caller);
    if v.at_least(59) {
        o.insert("uuid".into(), json!(m.uuid.to_string()));
    }
    if v.at_least(80) {
        o.insert("user_id".into(), json!(m.user_id));
        o.insert("project_id".into(), json!(m.project_id));
    }
    Value::Object(o)
}

/// Host fields are for admins (Nova's `index:host` policies): a project manager sees
/// them null.
fn hide_hosts(o: &mut Map<String, Value>, caller: &Caller) {
    if !caller.is_admin {
        for k in [
            "dest_compute",
            "dest_host",
            "dest_node",
            "source_compute",
            "source_node",
        ] {
            o.insert(k.into(), Value::Null);
        }
    }
}

fn bad_query(key: &str, value: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Invalid input for query parameters {key}. Value: {value}. {why}"
    ))
}

/// The os-migrations query keys allowed at a microversion (None: any, before 2.59).
fn allowed_keys(caller: &Caller) -> Option<Vec<&'static str>> {
    let v = caller.version();
    if !v.at_least(59) {
        return None;
    }
    let mut keys = vec![
        "hidden",
        "host",
        "instance_uuid",
        "source_compute",
        "status",
        "migration_type",
        "limit",
        "marker",
        "changes-since",
    ];
    if v.at_least(66) {
        keys.push("changes-before");
    }
    if v.at_least(80) {
        keys.extend(["user_id", "project_id"]);
    }
    Some(keys)
}

/// GET /v2.1/os-migrations
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let v = caller.version();
    if let Some(keys) = allowed_keys(&caller) {
        if let Some((k, val)) = q.0.iter().find(|(k, _)| !keys.contains(&k.as_str())) {
            return Err(bad_query(
                k,
                val,
                &format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        }
        for k in [
            "limit",
            "marker",
            "changes-since",
            "changes-before",
            "user_id",
            "project_id",
        ] {
            let vals: Vec<String> =
                q.0.iter()
                    .filter(|(x, _)| x == k)
                    .map(|(_, v)| format!("'{v}'"))
                    .collect();
            if vals.len() > 1 {
                let list = format!("[{}]", vals.join(", "));
                return Err(bad_query(
                    k,
                    &list,
                    &format!("{list} is not of type 'string'"),
                ));
            }
        }
    }
    // Other projects' migrations (no `project_id`, or another one) need Nova's
    // `index:all_projects` (admin): a project manager names its own project.
    if !caller.is_admin && q.get("project_id") != Some(caller.project.as_str()) {
        return Err(ApiError::policy(
            "os_compute_api:os-migrations:index:all_projects",
        ));
    }
    // Repeated filters are lists (Nova's `common_query_param`): a match on any value.
    let values = |k: &str| -> Vec<&str> {
        q.0.iter()
            .filter(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let last = |k: &str| values(k).last().copied();
    let v259 = v.at_least(59);
    let limit = match q.get("limit").filter(|_| v259) {
        None => None,
        Some(s) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_query(
                    "limit",
                    s,
                    &format!("'{s}' does not match '^[0-9]*$'"),
                ));
            }
            Some(s.parse::<usize>().unwrap_or(usize::MAX).min(MAX_LIMIT))
        }
    };
    let when = |k: &str, from: u16| -> Result<Option<Timestamp>, ApiError> {
        if !v.at_least(from) {
            return Ok(None);
        }
        match q.get(k) {
            None => Ok(None),
            Some(s) => parse_iso(s)
                .map(Some)
                .ok_or_else(|| bad_query(k, s, &format!("'{s}' is not a 'date-time'"))),
        }
    };
    let since = when("changes-since", 59)?;
    let before = when("changes-before", 66)?;
    if let (Some(a), Some(b)) = (since, before) {
        if b < a {
            return Err(ApiError::bad_request(
                "The value of changes-since must be less than or equal to changes-before.",
            ));
        }
    }
    let statuses = values("status");
    let types = values("migration_type");
    let host = last("host");
    let source = last("source_compute");
    let instance = last("instance_uuid");
    let hidden = last("hidden");
    let (user, project) = if v.at_least(80) {
        (q.get("user_id"), q.get("project_id"))
    } else if !caller.is_admin {
        // A manager's own project (checked above), whatever the version.
        (None, q.get("project_id"))
    } else {
        (None, None)
    };

    let views = st.engine.world().read();
    let mut all: Vec<(InstanceId, &MigrationRecord)> = views
        .migrations()
        .iter()
        .filter(|(_, row)| !row.deleted)
        .flat_map(|(iid, row)| row.migrations.iter().map(move |m| (*iid, m)))
        .collect();
    // From 2.59 newest first (Nova's sort on created_at, id, both descending); before,
    // Nova's unsorted query, i.e. the table's order: oldest first.
    all.sort_by_key(|(_, m)| std::cmp::Reverse((m.created_at, m.id, m.uuid)));
    if !v259 {
        all.reverse();
    }
    let keep = |iid: &InstanceId, m: &MigrationRecord| -> bool {
        let dest = m.dest_compute.as_ref().map(|h| h.as_str());
        (statuses.is_empty() || statuses.contains(&m.status.as_str()))
            && (types.is_empty() || types.contains(&m.migration_type()))
            && match host {
                Some(h) => m.source_compute.as_str() == h || dest == Some(h),
                None => source.is_none_or(|s| m.source_compute.as_str() == s),
            }
            && instance.is_none_or(|i| iid.to_string() == i)
            // No migration is hidden here (Nova hides a cross-cell move's copy).
            && hidden.is_none_or(|h| crate::parse::parse_bool(h) != Some(true))
            && user.is_none_or(|u| m.user_id.as_deref() == Some(u))
            && project.is_none_or(|p| m.project_id.as_deref() == Some(p))
            && since.is_none_or(|s| m.updated_at >= s)
            && before.is_none_or(|b| m.updated_at <= b)
    };
    let mut start = 0;
    if let Some(marker) = q.get("marker").filter(|_| v259) {
        // Nova finds the marker among all migrations, then pages after it.
        let at = all
            .iter()
            .position(|(_, m)| m.uuid.to_string() == marker)
            .ok_or_else(|| ApiError::bad_request(format!("Marker {marker} could not be found.")))?;
        start = at + 1;
    }
    let mut page: Vec<(InstanceId, &MigrationRecord)> = all[start..]
        .iter()
        .filter(|(iid, m)| keep(iid, m))
        .copied()
        .collect();
    if let Some(n) = limit {
        page.truncate(n);
    }
    let items: Vec<Value> = page
        .iter()
        .map(|(iid, m)| list_view(iid, m, &caller))
        .collect();
    let mut body = json!({ "migrations": items });
    if v259 {
        let max = limit.unwrap_or(MAX_LIMIT);
        if let Some((_, last)) = page.last() {
            if max > 0 && page.len() == max {
                body["migrations_links"] = crate::util::next_link(
                    caller.base(),
                    "os-migrations",
                    &q.0,
                    &last.uuid.to_string(),
                );
            }
        }
    }
    Ok(Json(body))
}

fn since(caller: &Caller, minor: u16) -> Result<(), ApiError> {
    if caller.version().at_least(minor) {
        Ok(())
    } else {
        Err(ApiError::not_found("The resource could not be found."))
    }
}

/// The server's in-progress live migrations (Nova's
/// `get_migrations_in_progress_by_instance`: not in a final status).
fn in_progress(st: &ApiState, iid: &InstanceId) -> Vec<MigrationRecord> {
    let views = st.engine.world().read();
    views
        .migrations()
        .of(iid)
        .map(|row| {
            row.migrations
                .iter()
                .filter(|m| m.kind == MigrationKind::LiveMigration && m.in_progress())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// GET /v2.1/servers/{id}/migrations (2.23)
pub async fn server_index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    since(&caller, 23)?;
    let iid = {
        let views = st.engine.world().read();
        visible(&views, &id, &caller)?.id()
    };
    let items: Vec<Value> = in_progress(&st, &iid)
        .iter()
        .map(|m| server_view(&iid, m, &caller))
        .collect();
    Ok(Json(json!({ "migrations": items })))
}

/// The server's migration `mid` (any status), or None.
fn find(st: &ApiState, iid: &InstanceId, mid: &str) -> Option<MigrationRecord> {
    let n: u64 = mid.parse().ok()?;
    let views = st.engine.world().read();
    views
        .migrations()
        .of(iid)?
        .migrations
        .iter()
        .find(|m| m.id == n)
        .cloned()
}

/// GET /v2.1/servers/{id}/migrations/{mid} (2.23)
pub async fn server_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    since(&caller, 23)?;
    let iid = {
        let views = st.engine.world().read();
        visible(&views, &id, &caller)?.id()
    };
    let m = find(&st, &iid, &mid).ok_or_else(|| {
        ApiError::not_found(format!(
            "In-progress live migration {mid} is not found for server {id}."
        ))
    })?;
    if m.kind != MigrationKind::LiveMigration {
        return Err(ApiError::not_found(format!(
            "Migration {mid} for server {id} is not live-migration."
        )));
    }
    if !LIVE_IN_PROGRESS.contains(&m.status.as_str()) {
        return Err(ApiError::not_found(format!(
            "Live migration {mid} for server {id} is not in progress."
        )));
    }
    Ok(Json(json!({ "migration": server_view(&iid, &m, &caller) })))
}

/// The instance-state check both operations start with (`check_instance_state(
/// task_state=[MIGRATING])`, and the lock for non-admins): Nova's 409s.
fn check_migrating(
    st: &ApiState,
    caller: &Caller,
    id: &str,
    op: &str,
) -> Result<InstanceId, ApiError> {
    let views = st.engine.world().read();
    let inst = visible(&views, id, caller)?;
    if inst.locked.is_some() && !caller.is_admin {
        return Err(ApiError::conflict(format!("Instance {id} is locked")));
    }
    if inst.task_state != Some(TaskState::Migrating) {
        let task = inst
            .task_state
            .map_or("None".to_string(), |t| t.as_str().to_string());
        return Err(ApiError::conflict(format!(
            "Cannot '{op}' instance {id} while it is in task_state {task}"
        )));
    }
    Ok(inst.id())
}

fn invalid_state(mid: &str, id: &str, state: &str, method: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Migration {mid} state of instance {id} is {state}. Cannot {method} while the \
         migration is in this state."
    ))
}

/// POST /v2.1/servers/{id}/migrations/{mid}/action `{"force_complete": null}` (2.22)
pub async fn server_action(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    since(&caller, 22)?;
    match body.as_object() {
        Some(o) if o.len() == 1 && o.contains_key("force_complete") => {
            if !o["force_complete"].is_null() {
                return Err(crate::body::invalid(
                    "force_complete",
                    &o["force_complete"],
                    &format!("{} is not of type 'null'", o["force_complete"]),
                ));
            }
        }
        Some(o) if !o.is_empty() => {
            let keys: Vec<&String> = o.keys().filter(|k| *k != "force_complete").collect();
            if keys.is_empty() {
                return Err(ApiError::bad_request("Malformed request body"));
            }
            return Err(crate::body::unexpected(&keys));
        }
        _ => return Err(ApiError::bad_request(
            "Invalid input for request body. Value: {}. 'force_complete' is a required property",
        )),
    }
    let iid = check_migrating(&st, &caller, &id, "force_complete")?;
    let m = find(&st, &iid, &mid).ok_or_else(|| {
        ApiError::bad_request(format!("Migration {mid} not found for instance {id}"))
    })?;
    if m.status != "running" {
        return Err(invalid_state(&mid, &id, &m.status, "force complete"));
    }
    Ok(StatusCode::ACCEPTED)
}

/// DELETE /v2.1/servers/{id}/migrations/{mid} (2.24): abort.
pub async fn server_delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    since(&caller, 24)?;
    let iid = check_migrating(&st, &caller, &id, "abort live migration")?;
    let m = find(&st, &iid, &mid)
        .filter(|m| m.kind == MigrationKind::LiveMigration)
        .ok_or_else(|| {
            ApiError::not_found(format!("Migration {mid} not found for instance {id}"))
        })?;
    let mut abortable = vec!["running", "preparing"];
    if caller.version().at_least(65) {
        abortable.extend(["queued", "accepted"]);
    }
    if !abortable.contains(&m.status.as_str()) {
        return Err(invalid_state(&mid, &id, &m.status, "abort live migration"));
    }
    // The simulated driver's live migration is one step that cannot be interrupted:
    // there is nothing to cancel while it runs (Nova's driver would roll back).
    Err(ApiError::conflict(format!(
        "Cannot 'abort live migration' instance {id}: the live migration cannot be \
         cancelled by this hypervisor."
    )))
}
