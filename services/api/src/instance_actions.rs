//! os-instance-actions: `GET /servers/{id}/os-instance-actions` and
//! `GET /servers/{id}/os-instance-actions/{request_id}`, served from the
//! `instance_actions` read model ([`projections::instance_actions`]), in Nova's shapes
//! per microversion (nova/api/openstack/compute/instance_actions.py).
//!
//! Invariants:
//! - Read only: nothing here appends.
//! - The guard has already hidden other projects' servers (404) and checked the
//!   list / show rule; what depends on the caller beyond that (events before 2.51,
//!   `traceback`, `host`, `details`) follows Nova's `events` and `events:details`
//!   rules (admin), which hide fields and never refuse (Nova's `fatal=False`;
//!   docs/POLICY.md).
//! - A deleted server is a 404 before 2.21 (Nova reads deleted instances from 2.21).

use axum::extract::{Path, State};
use axum::Json;
use domain::{InstanceId, Timestamp};
use projections::instance_actions::{ActionEvent, InstanceAction};
use serde_json::{json, Map, Value};

use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::util::{iso_micros, parse_iso, sha224_hex};
use crate::ApiState;

/// Nova's `CONF.api.max_limit`.
const MAX_LIMIT: usize = 1000;

/// Query keys allowed from 2.58 (`additionalProperties: false`); `changes-before` from
/// 2.66.
const KEYS_V258: &[&str] = &["limit", "marker", "changes-since"];

/// The instance's actions, newest first, and its project, or Nova's 404.
fn load(
    st: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<(InstanceId, String, Vec<InstanceAction>), ApiError> {
    let views = st.engine.world().read();
    let iid = InstanceId::parse(id).ok_or_else(|| ApiError::instance_not_found(id))?;
    let inst = views
        .instance(&iid)
        .filter(|i| caller.can_see(&i.spec.project_id))
        .ok_or_else(|| ApiError::instance_not_found(id))?;
    if inst.deleted && !caller.version().at_least(21) {
        return Err(ApiError::instance_not_found(id));
    }
    let actions = views
        .instance_actions()
        .of(&iid)
        .map(|r| r.actions())
        .unwrap_or_default();
    Ok((iid, inst.spec.project_id.clone(), actions))
}

fn action_view(iid: &InstanceId, a: &InstanceAction, v258: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("action".into(), json!(a.action));
    m.insert("instance_uuid".into(), json!(iid.to_string()));
    m.insert("request_id".into(), json!(a.request_id));
    m.insert("user_id".into(), json!(a.user_id));
    m.insert("project_id".into(), json!(a.project_id));
    m.insert("start_time".into(), json!(iso_micros(a.start_time)));
    m.insert("message".into(), json!(a.message));
    if v258 {
        m.insert("updated_at".into(), json!(iso_micros(a.updated_at)));
    }
    m
}

/// What the caller sees of an event (Nova's `_format_event`).
struct EventView {
    traceback: bool,
    host: bool,
    host_id: bool,
    details: bool,
}

fn event_view(e: &ActionEvent, project: &str, show: &EventView) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), json!(e.event));
    m.insert("start_time".into(), json!(iso_micros(e.start_time)));
    m.insert("finish_time".into(), json!(e.finish_time.map(iso_micros)));
    m.insert("result".into(), json!(e.result.map(|r| r.as_str())));
    if show.traceback {
        m.insert("traceback".into(), json!(e.traceback));
    }
    let host = e.host.as_ref().map(|h| h.as_str()).unwrap_or("");
    if show.host {
        m.insert("host".into(), json!(host));
    }
    if show.host_id {
        // Nova's generate_hostid: "" without a host.
        let id = if host.is_empty() {
            String::new()
        } else {
            sha224_hex(format!("{project}{host}").as_bytes())
        };
        m.insert("hostId".into(), json!(id));
    }
    if show.details {
        m.insert("details".into(), json!(e.details));
    }
    Value::Object(m)
}

/// Nova's JSON-schema message for a query parameter.
fn bad_query(key: &str, value: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Invalid input for query parameters {key}. Value: {value}. {why}"
    ))
}

/// The 2.58 list query: paging and the `updated_at` window.
struct ListQuery {
    limit: Option<usize>,
    marker: Option<String>,
    since: Option<Timestamp>,
    before: Option<Timestamp>,
}

fn list_query(q: &QueryPairs, caller: &Caller) -> Result<ListQuery, ApiError> {
    let v266 = caller.version().at_least(66);
    for (k, v) in &q.0 {
        let known = KEYS_V258.contains(&k.as_str()) || (v266 && k == "changes-before");
        if !known {
            return Err(bad_query(
                k,
                v,
                &format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        }
    }
    for k in ["limit", "marker", "changes-since", "changes-before"] {
        if q.0.iter().filter(|(x, _)| x == k).count() > 1 {
            let vals: Vec<String> =
                q.0.iter()
                    .filter(|(x, _)| x == k)
                    .map(|(_, v)| format!("'{v}'"))
                    .collect();
            return Err(bad_query(
                k,
                &format!("[{}]", vals.join(", ")),
                &format!("[{}] is not of type 'string'", vals.join(", ")),
            ));
        }
    }
    let limit = match q.get("limit") {
        None => None,
        Some(s) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_query(
                    "limit",
                    s,
                    &format!("'{s}' does not match '^[0-9]*$'"),
                ));
            }
            Some(s.parse::<usize>().unwrap_or(usize::MAX))
        }
    };
    let time = |k: &str| -> Result<Option<Timestamp>, ApiError> {
        match q.get(k) {
            None => Ok(None),
            Some(s) => parse_iso(s)
                .map(Some)
                .ok_or_else(|| bad_query(k, s, &format!("'{s}' is not a 'date-time'"))),
        }
    };
    let since = time("changes-since")?;
    let before = time("changes-before")?;
    if let (Some(a), Some(b)) = (since, before) {
        if b < a {
            return Err(ApiError::bad_request(
                "The value of changes-since must be less than or equal to changes-before.",
            ));
        }
    }
    Ok(ListQuery {
        limit,
        marker: q.get("marker").map(str::to_string),
        since,
        before,
    })
}

/// GET /v2.1/servers/{id}/os-instance-actions
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let v258 = caller.version().at_least(58);
    let query = if v258 {
        Some(list_query(&q, &caller)?)
    } else {
        None
    };
    let (iid, _, mut actions) = load(&st, &caller, &id)?;
    let mut page_size = None;
    if let Some(query) = &query {
        if let Some(m) = &query.marker {
            // Nova looks the marker up unfiltered, then pages after it.
            let at = actions
                .iter()
                .position(|a| &a.request_id == m)
                .ok_or_else(|| ApiError::bad_request(format!("Marker {m} could not be found.")))?;
            actions.drain(..=at);
        }
        actions.retain(|a| {
            query.since.is_none_or(|s| a.updated_at >= s)
                && query.before.is_none_or(|b| a.updated_at <= b)
        });
        let max = query.limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
        actions.truncate(max);
        page_size = Some(max);
    }
    let items: Vec<Value> = actions
        .iter()
        .map(|a| Value::Object(action_view(&iid, a, v258)))
        .collect();
    let mut body = json!({ "instanceActions": items });
    if let (Some(max), Some(last)) = (page_size, actions.last()) {
        if max > 0 && actions.len() == max {
            let path = format!("servers/{id}/os-instance-actions");
            body["links"] = crate::util::next_link(caller.base(), &path, &q.0, &last.request_id);
        }
    }
    Ok(Json(body))
}

/// GET /v2.1/servers/{id}/os-instance-actions/{request_id}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, request_id)): Path<(String, String)>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let version = caller.version();
    if version.at_least(102) {
        if let Some((k, v)) = q.0.first() {
            return Err(bad_query(
                k,
                v,
                &format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        }
    }
    let (iid, project, actions) = load(&st, &caller, &id)?;
    let action = actions
        .iter()
        .find(|a| a.request_id == request_id)
        .ok_or_else(|| ApiError::not_found(format!("Action {request_id} not found")))?;
    let mut body = action_view(&iid, action, version.at_least(58));
    // os_compute_api:os-instance-actions:events and :events:details are admin rules.
    let admin = caller.is_admin;
    let show_events = admin || version.at_least(51);
    if show_events {
        let show = EventView {
            traceback: admin,
            host: admin && version.at_least(62),
            host_id: version.at_least(62),
            details: admin && version.at_least(84),
        };
        let owner = action.project_id.as_deref().unwrap_or(&project);
        let events: Vec<Value> = action
            .events
            .iter()
            .map(|e| event_view(e, owner, &show))
            .collect();
        body.insert("events".into(), Value::Array(events));
    }
    Ok(Json(json!({ "instanceAction": Value::Object(body) })))
}
