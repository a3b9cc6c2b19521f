//! os-simple-tenant-usage: hours of each instance's lifetime inside a window, by the
//! flavor billed at the time, from the usage read model ([`projections::usage`]).
//!
//! Nova's semantics (`nova/api/openstack/compute/simple_tenant_usage.py`):
//! - `start` / `end` (first value of each) parse as `%Y-%m-%dT%H:%M:%S`,
//!   `%Y-%m-%dT%H:%M:%S.%f` or `%Y-%m-%d %H:%M:%S.%f`, naive UTC; a missing one is
//!   now; a bad one is 400 `Invalid datetime string: Datetime is in invalid format`;
//!   `start >= end` is 400; `end` after now is cut to now.
//! - An instance is in the window when it launched before `end` and was not
//!   terminated by `start`; instances come in (project, uuid) order, at most
//!   `max_limit` (1,000), from 2.40 after `marker` and at most `limit`, with
//!   `tenant_usages_links` / `tenant_usage_links` when a page is full. An unknown
//!   marker is 400 `Marker <id> could not be found.`
//! - Totals are per project over the instances of the page; `hours` per instance is
//!   `_hours_for` (its time in the window); `state` is `terminated` once deleted.
//!
//! Stratus departs in one way, by design: a resize bills the new flavor from its
//! confirmation, so an instance whose time in the window spans a confirmed resize
//! is billed per flavor period (the totals are exact per period) and shown as one
//! `server_usages` entry with its summed `hours` and the flavor in force at the end of
//! its time in the window (Nova, which has no periods, shows the current flavor).

use axum::extract::{Path, State};
use axum::Json;
use domain::{InstanceId, Timestamp};
use projections::usage::{InstanceUsage, Usage, UsageQuery};
use serde_json::{json, Map, Value};
use time::macros::format_description;
use time::PrimitiveDateTime;

use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::ApiState;

/// Query keys accepted from 2.75 (`additionalProperties: false`).
const INDEX_KEYS: &[&str] = &["start", "end", "detailed", "limit", "marker"];
const SHOW_KEYS: &[&str] = &["start", "end", "limit", "marker"];

/// First value of `key` (Nova reads `parse_qs(...)[key][0]`).
fn first<'a>(q: &'a QueryPairs, key: &str) -> Option<&'a str> {
    q.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Nova's `_parse_datetime`: the three accepted formats, naive UTC.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let fmts = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
    ];
    fmts.iter().find_map(|f| {
        PrimitiveDateTime::parse(s, f)
            .ok()
            .map(|t| Timestamp((t.assume_utc().unix_timestamp_nanos() / 1000) as i64))
    })
}

/// Python's `datetime.isoformat()` of a naive time: microseconds only when not zero.
pub fn py_iso(ts: Timestamp) -> String {
    let s = crate::util::iso_micros(ts);
    match s.strip_suffix(".000000") {
        Some(whole) => whole.to_string(),
        None => s,
    }
}

/// The window of a request: (start, stop), stop cut to now.
fn window(q: &QueryPairs) -> Result<(Timestamp, Timestamp), ApiError> {
    // One `now` for both defaults: Nova reads the clock twice (start first), so its
    // defaulted end is always later than its defaulted start; two reads here can
    // land on the same microsecond, so "both defaulted" is never start >= end.
    let now = engine::now();
    let parse = |key: &str| match first(q, key) {
        None | Some("") => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| {
            ApiError::bad_request("Invalid datetime string: Datetime is in invalid format")
        }),
    };
    let (start, stop) = (parse("start")?, parse("end")?);
    let both_now = start.is_none() && stop.is_none();
    let (start, stop) = (start.unwrap_or(now), stop.unwrap_or(now));
    if start >= stop && !both_now {
        return Err(ApiError::bad_request(
            "Invalid start time. The start time cannot occur after the end time.",
        ));
    }
    Ok((start, stop.min(now)))
}

/// Refuses unknown query keys from 2.75.
fn check_keys(q: &QueryPairs, caller: &Caller, allowed: &[&str]) -> Result<(), ApiError> {
    if !caller.version().at_least(75) {
        return Ok(());
    }
    match q.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, v)) => Err(ApiError::bad_request(format!(
            "Invalid input for query parameters {k}. Value: {v}. Additional properties are not allowed ('{k}' was unexpected)"
        ))),
        None => Ok(()),
    }
}

/// The page's limit and the marker's sort key (2.40), or max_limit and none.
fn paging(
    q: &QueryPairs,
    caller: &Caller,
    st: &ApiState,
) -> Result<(usize, Option<(String, InstanceId)>), ApiError> {
    let max = crate::servers::MAX_LIMIT;
    if !caller.version().at_least(40) {
        return Ok((max, None));
    }
    let limit = crate::parse::limit(q)?.unwrap_or(max).min(max);
    let Some(m) = first(q, "marker") else {
        return Ok((limit, None));
    };
    let not_found = || ApiError::bad_request(format!("Marker {m} could not be found."));
    let id = InstanceId::parse(m).ok_or_else(not_found)?;
    let views = st.engine.world().read();
    let project = match views.model::<Usage>().get(&id) {
        Some(r) => r.project.clone(),
        None => views
            .instances()
            .get(&id)
            .and_then(|r| r.state())
            .map(|s| s.spec.project_id.clone())
            .ok_or_else(not_found)?,
    };
    Ok((limit, Some((project, id))))
}

/// One `server_usages` entry.
fn server_usage(u: &InstanceUsage<'_>, views: &projections::Views, now: Timestamp) -> Value {
    let inst = views.instances().get(&u.id).and_then(|r| r.state());
    let name = inst.map(|i| i.spec.name.clone()).unwrap_or_default();
    let started = u.row.launched_at.unwrap_or(now);
    let (state, uptime_to) = match u.row.terminated_at {
        Some(t) => ("terminated", t),
        None => (inst.map_or("active", |i| i.vm_state.as_str()), now),
    };
    json!({
        "ended_at": u.row.terminated_at.map(py_iso),
        "flavor": u.flavor.name,
        "hours": u.hours,
        "instance_id": u.id.to_string(),
        "local_gb": u.flavor.local_gb(),
        "memory_mb": u.flavor.memory_mb,
        "name": name,
        "started_at": py_iso(started),
        "state": state,
        "tenant_id": u.row.project,
        // Python's int() of total_seconds(): truncated toward zero.
        "uptime": (uptime_to.0 - started.0) / 1_000_000,
        "vcpus": u.flavor.vcpus,
    })
}

/// Per-project summaries (in first-seen order: the instances' project order) and the
/// instance ids of the page (for the links).
pub fn summaries(
    views: &projections::Views,
    q: &UsageQuery<'_>,
    detailed: bool,
    now: Timestamp,
) -> (Vec<Value>, Option<InstanceId>, usize) {
    let page = views.model::<Usage>().window(q);
    let mut out: Vec<Map<String, Value>> = Vec::new();
    let mut totals: Vec<[f64; 4]> = Vec::new();
    let mut current: Option<&str> = None;
    for u in &page {
        if current != Some(u.row.project.as_str()) {
            current = Some(u.row.project.as_str());
            let mut m = Map::new();
            m.insert("tenant_id".into(), json!(u.row.project));
            if detailed {
                m.insert("server_usages".into(), json!([]));
            }
            m.insert("start".into(), json!(py_iso(q.start)));
            m.insert("stop".into(), json!(py_iso(q.stop)));
            out.push(m);
            totals.push([0.0; 4]);
        }
        let t = totals.last_mut().expect("pushed");
        t[0] += u.local_gb_hours;
        t[1] += u.vcpu_hours;
        t[2] += u.memory_mb_hours;
        t[3] += u.hours;
        if detailed {
            let m = out.last_mut().expect("pushed");
            if let Some(Value::Array(a)) = m.get_mut("server_usages") {
                a.push(server_usage(u, views, now));
            }
        }
    }
    let summaries = out
        .into_iter()
        .zip(totals)
        .map(|(mut m, t)| {
            m.insert("total_local_gb_usage".into(), json!(t[0]));
            m.insert("total_vcpus_usage".into(), json!(t[1]));
            m.insert("total_memory_mb_usage".into(), json!(t[2]));
            m.insert("total_hours".into(), json!(t[3]));
            Value::Object(m)
        })
        .collect();
    (summaries, page.last().map(|u| u.id), page.len())
}

/// GET /os-simple-tenant-usage (admin): every project's usage in the window.
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    check_keys(&q, &caller, INDEX_KEYS)?;
    let (start, stop) = window(&q)?;
    let detailed = first(&q, "detailed") == Some("1");
    let (limit, after) = paging(&q, &caller, &st)?;
    let query = UsageQuery {
        start,
        stop,
        project: None,
        after,
        limit,
    };
    let views = st.engine.world().read();
    let (usages, last, n) = summaries(&views, &query, detailed, engine::now());
    let mut body = json!({ "tenant_usages": usages });
    if let (true, Some(last)) = (
        caller.version().at_least(40) && limit > 0 && n == limit,
        last,
    ) {
        body["tenant_usages_links"] = crate::util::next_link(
            caller.base(),
            "os-simple-tenant-usage",
            &q.0,
            &last.to_string(),
        );
    }
    Ok(Json(body))
}

/// GET /os-simple-tenant-usage/{tenant_id}: one project's usage (its readers, admins).
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(tenant): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    check_keys(&q, &caller, SHOW_KEYS)?;
    let (start, stop) = window(&q)?;
    let (limit, after) = paging(&q, &caller, &st)?;
    let query = UsageQuery {
        start,
        stop,
        project: Some(&tenant),
        after,
        limit,
    };
    let views = st.engine.world().read();
    let (usages, last, n) = summaries(&views, &query, true, engine::now());
    let usage = usages.into_iter().next().unwrap_or_else(|| json!({}));
    let mut body = json!({ "tenant_usage": usage });
    if let (true, Some(last)) = (
        caller.version().at_least(40) && limit > 0 && n == limit,
        last,
    ) {
        body["tenant_usage_links"] = crate::util::next_link(
            caller.base(),
            &format!("os-simple-tenant-usage/{tenant}"),
            &q.0,
            &last.to_string(),
        );
    }
    Ok(Json(body))
}

/// Python's `str()` of a naive datetime (`2012-06-01 00:00:00`).
fn py_str(ts: Timestamp) -> String {
    py_iso(ts).replacen('T', " ", 1)
}

/// Nova's `_get_audit_task_logs`: the audit of the period most recently completed
/// before `before`, from the `audit.period_closed` facts of every cell. The hosts are
/// every compute service (disabled ones too); a host is done when a cell closed the
/// period with it. The audit reads the log, so it takes no time and never errs: the
/// message says 0 seconds.
fn audit_log(views: &projections::Views, period_secs: i64, before: Timestamp) -> Value {
    let (begin, end) = domain::audit::last_completed_period(before, period_secs);
    let hosts: std::collections::BTreeSet<String> = views
        .hosts()
        .values()
        .filter(|h| !h.state.service.deleted)
        .map(|h| h.state.spec.name.as_str().to_string())
        .collect();
    let mut log = Map::new();
    let mut done = std::collections::BTreeSet::new();
    let (mut total_instances, mut total_errors) = (0usize, 0u64);
    for closed in views
        .model::<projections::usage::UsageAudits>()
        .period(begin)
    {
        for h in &closed.hosts {
            let name = h.host.as_str().to_string();
            total_instances += h.instances.len();
            total_errors += u64::from(h.errors);
            log.insert(
                name.clone(),
                json!({
                    "errors": h.errors,
                    "instances": h.instances.len(),
                    "message": format!(
                        "Instance usage audit ran for host {name}, {} instances in 0 seconds.",
                        h.instances.len()
                    ),
                    "state": "DONE",
                }),
            );
            done.insert(name);
        }
    }
    let not_run: Vec<&String> = hosts.iter().filter(|h| !done.contains(*h)).collect();
    let status = if done.len() == hosts.len() {
        "ALL".to_string()
    } else {
        format!("{} of {}", done.len(), hosts.len())
    };
    json!({
        "hosts_not_run": not_run,
        "log": log,
        "num_hosts": hosts.len(),
        "num_hosts_done": done.len(),
        "num_hosts_not_run": not_run.len(),
        "num_hosts_running": 0,
        "overall_status": format!("{status} hosts done. {total_errors} errors."),
        "period_beginning": py_str(begin),
        "period_ending": py_str(end),
        "total_errors": total_errors,
        "total_instances": total_instances,
    })
}

/// GET /os-instance_usage_audit_log (admin): the last completed audit period.
pub async fn audit_index(State(st): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let log = audit_log(&views, st.engine.audit_period_secs, engine::now());
    Ok(Json(json!({ "instance_usage_audit_logs": log })))
}

/// GET /os-instance_usage_audit_log/{before_timestamp} (admin): the period most
/// recently completed before `%Y-%m-%d %H:%M:%S[.%f]`.
pub async fn audit_show(
    State(st): State<ApiState>,
    Path(before): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let fmt = if before.contains('.') {
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]")
    } else {
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")
    };
    let at = PrimitiveDateTime::parse(&before, fmt)
        .map(|t| Timestamp((t.assume_utc().unix_timestamp_nanos() / 1000) as i64))
        .map_err(|_| ApiError::bad_request(format!("Invalid timestamp for date {before}")))?;
    let views = st.engine.world().read();
    let log = audit_log(&views, st.engine.audit_period_secs, at);
    Ok(Json(json!({ "instance_usage_audit_log": log })))
}
