//! `os-hypervisors` (admin): one hypervisor per live compute host ([`crate::hosts::Node`]).
//!
//! Invariants:
//! - Inventory is the host's registered `HostSpec.total` (vcpus, memory_mb, local_gb),
//!   usage its placement claims (`*_used`), `running_vms` the instances on it and
//!   `current_workload` those of them with a task in progress; `free_*` may go negative
//!   with allocation ratios, as in Nova.
//! - Shapes follow the microversion: 2.28 `cpu_info` as an object, 2.33 paging
//!   (`limit`, `marker`, `hypervisors_links`), 2.53 UUID ids and the
//!   `hypervisor_hostname_pattern` / `with_servers` query parameters (the `search` and
//!   `servers` routes are 404 from then on), 2.75 `servers: []` when asked for and
//!   empty, 2.88 no resource fields in the body, `uptime` in show/detail, `statistics`
//!   and `uptime` routes 404.
//! - The driver facts (type, version, host IP, CPU) are the simulated driver's
//!   ([`DRIVER`]): Stratus runs no real hypervisor.

use axum::extract::{Path, State};
use axum::Json;
use projections::Views;
use serde_json::{json, Value};

use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::hosts::{instances_on, nodes, Node};
use crate::microversion::Version;
use crate::ApiState;

/// What the (simulated) virt driver reports about every host.
pub struct DriverFacts {
    /// `hypervisor_type`
    pub hypervisor_type: &'static str,
    /// `hypervisor_version` (libvirt's encoding: major * 1,000,000 + minor * 1,000 + micro).
    pub hypervisor_version: u64,
    /// `host_ip`
    pub host_ip: &'static str,
    /// CPU architecture, model and vendor of `cpu_info`.
    pub cpu: (&'static str, &'static str, &'static str),
}

/// The simulated driver: QEMU 8.2.0 on x86_64, as libvirt would report it.
pub const DRIVER: DriverFacts = DriverFacts {
    hypervisor_type: "QEMU",
    hypervisor_version: 8_002_000,
    host_ip: "127.0.0.1",
    cpu: ("x86_64", "qemu64", "AMD"),
};

fn not_found_route() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

fn hyp_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Hypervisor with ID '{id}' could not be found."))
}

/// Nova's id check: a UUID from 2.53 (else 400), an integer before (else 404).
fn validate_id(id: &str, v: Version) -> Result<(), ApiError> {
    if v.at_least(53) {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(ApiError::bad_request(format!("Invalid uuid {id}")));
        }
    } else if id.parse::<i64>().is_err() {
        return Err(hyp_not_found(id));
    }
    Ok(())
}

fn cpu_info(n: &Node, v: Version) -> Value {
    let (arch, model, vendor) = DRIVER.cpu;
    let info = json!({
        "arch": arch, "model": model, "vendor": vendor, "features": [],
        "topology": {"cores": n.host.spec.total.vcpus, "threads": 1, "sockets": 1},
    });
    if v.at_least(28) {
        info
    } else {
        json!(info.to_string())
    }
}

/// `uptime`'s text for a host up since its registration (libvirt runs `uptime`).
fn uptime_text(n: &Node) -> String {
    let now = engine::now().0;
    let secs = (now - n.host.registered_at.0).max(0) / 1_000_000;
    let clock = (now / 1_000_000).rem_euclid(86_400);
    format!(
        " {:02}:{:02}:{:02} up {} days, {:2}:{:02},  0 users,  load average: 0.00, 0.00, 0.00",
        clock / 3600,
        clock / 60 % 60,
        clock % 60,
        secs / 86_400,
        secs / 3600 % 24,
        secs / 60 % 60
    )
}

/// One hypervisor at `v`; `servers`: `Some` when the caller asked for them.
fn view(n: &Node, views: &Views, v: Version, detail: bool, servers: Option<bool>) -> Value {
    let mut h = json!({
        "id": n.hypervisor_id(v),
        "hypervisor_hostname": n.name().as_str(),
        "state": n.state(),
        "status": n.status(),
    });
    if detail {
        h["hypervisor_type"] = json!(DRIVER.hypervisor_type);
        h["hypervisor_version"] = json!(DRIVER.hypervisor_version);
        h["host_ip"] = json!(DRIVER.host_ip);
        h["service"] = json!({
            "id": n.service_id(v),
            "host": n.name().as_str(),
            "disabled_reason": n.host.service.disabled_reason,
        });
        if v.at_least(88) {
            h["uptime"] = if n.up {
                json!(uptime_text(n))
            } else {
                Value::Null
            };
        } else {
            let (total, used) = (n.host.spec.total, n.host.used);
            let on: Vec<_> = instances_on(views, n.name()).collect();
            let free_ram = total.ram_mb as i64 - used.ram_mb as i64;
            let free_disk = total.disk_gb as i64 - used.disk_gb as i64;
            for (k, val) in [
                ("vcpus", json!(total.vcpus)),
                ("memory_mb", json!(total.ram_mb)),
                ("local_gb", json!(total.disk_gb)),
                ("vcpus_used", json!(used.vcpus)),
                ("memory_mb_used", json!(used.ram_mb)),
                ("local_gb_used", json!(used.disk_gb)),
                ("free_ram_mb", json!(free_ram)),
                ("free_disk_gb", json!(free_disk)),
                (
                    "current_workload",
                    json!(on.iter().filter(|i| i.task_state.is_some()).count()),
                ),
                ("running_vms", json!(on.len())),
                ("disk_available_least", json!(free_disk)),
                ("cpu_info", cpu_info(n, v)),
            ] {
                h[k] = val;
            }
        }
    }
    if let Some(asked) = servers {
        let list: Vec<Value> = instances_on(views, n.name())
            .map(|i| json!({"name": i.spec.name, "uuid": i.id().to_string()}))
            .collect();
        if !list.is_empty() || (asked && v.at_least(75)) {
            h["servers"] = json!(list);
        }
    }
    h
}

/// Nova's strict boolean query parameter.
fn strict_bool(q: &QueryPairs, key: &str) -> Result<bool, ApiError> {
    match q.get(key) {
        None => Ok(false),
        Some(s) => crate::parse::parse_bool(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input for query parameters {key}. Value: {s}. '{s}' is not a valid boolean value"
            ))
        }),
    }
}

/// Nodes whose name contains `pattern` (Nova's SQL `LIKE %pattern%`), or Nova's 404.
fn matching(all: Vec<Node>, pattern: &str) -> Result<Vec<Node>, ApiError> {
    let found: Vec<Node> = all
        .into_iter()
        .filter(|n| n.name().as_str().contains(pattern))
        .collect();
    if found.is_empty() {
        return Err(ApiError::not_found(format!(
            "No hypervisor matching '{pattern}' could be found."
        )));
    }
    Ok(found)
}

fn list(
    st: &ApiState,
    caller: &Caller,
    q: &QueryPairs,
    detail: bool,
) -> Result<Json<Value>, ApiError> {
    let v = caller.version();
    let views = st.engine.world().read();
    let all = nodes(st, &views);
    let (pattern, with_servers) = if v.at_least(53) {
        (
            q.get("hypervisor_hostname_pattern"),
            strict_bool(q, "with_servers")?,
        )
    } else {
        (None, false)
    };
    let paging = v.at_least(33);
    let limit = if paging {
        match q.get("limit") {
            None => None,
            Some(s) => Some(s.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input for query parameters limit. Value: {s}. '{s}' does not match '^[0-9]*$'"
                ))
            })?),
        }
    } else {
        None
    };
    let marker = if paging { q.get("marker") } else { None };
    let servers = with_servers.then_some(true);
    if let Some(p) = pattern {
        if q.has("limit") || marker.is_some() {
            return Err(ApiError::bad_request(
                "Paging over hypervisors with the hypervisor_hostname_pattern query parameter is not supported.",
            ));
        }
        let items: Vec<Value> = matching(all, p)?
            .iter()
            .map(|n| view(n, &views, v, detail, servers))
            .collect();
        return Ok(Json(json!({ "hypervisors": items })));
    }
    let start = match marker {
        None => 0,
        Some(m) => {
            all.iter()
                .position(|n| n.is_hypervisor(m, v))
                .ok_or_else(|| ApiError::bad_request(format!("marker [{m}] not found")))?
                + 1
        }
    };
    let max = limit
        .unwrap_or(crate::servers::MAX_LIMIT)
        .min(crate::servers::MAX_LIMIT);
    let page: Vec<&Node> = all.iter().skip(start).take(max).collect();
    let items: Vec<Value> = page
        .iter()
        .map(|n| view(n, &views, v, detail, servers))
        .collect();
    let mut body = json!({ "hypervisors": items });
    if let (true, Some(last), true) = (paging, page.last(), page.len() == max) {
        let path = if detail {
            "os-hypervisors/detail"
        } else {
            "os-hypervisors"
        };
        let marker = last.hypervisor_id(v).to_string();
        body["hypervisors_links"] =
            apicore::util::next_link(caller.base(), path, &q.0, marker.trim_matches('"'));
    }
    Ok(Json(body))
}

/// GET /os-hypervisors
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    list(&st, &caller, &q, false)
}

/// GET /os-hypervisors/detail
pub async fn detail(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    list(&st, &caller, &q, true)
}

/// The node with hypervisor id `id`, or Nova's 400/404.
fn find(st: &ApiState, views: &Views, id: &str, v: Version) -> Result<Node, ApiError> {
    validate_id(id, v)?;
    nodes(st, views)
        .into_iter()
        .find(|n| n.is_hypervisor(id, v))
        .ok_or_else(|| hyp_not_found(id))
}

/// GET /os-hypervisors/{id}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let v = caller.version();
    let with_servers = v.at_least(53) && strict_bool(&q, "with_servers")?;
    let views = st.engine.world().read();
    let n = find(&st, &views, &id, v)?;
    Ok(Json(json!({
        "hypervisor": view(&n, &views, v, true, with_servers.then_some(true)),
    })))
}

/// GET /os-hypervisors/{id}/uptime (< 2.88): 400 while the host's service is down.
pub async fn uptime(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = caller.version();
    if v.at_least(88) {
        return Err(not_found_route());
    }
    let views = st.engine.world().read();
    let n = find(&st, &views, &id, v)?;
    if !n.up {
        return Err(ApiError::bad_request(format!(
            "Compute service of {} is unavailable at this time.",
            n.name()
        )));
    }
    let mut h = view(&n, &views, v, false, None);
    h["uptime"] = json!(uptime_text(&n));
    Ok(Json(json!({ "hypervisor": h })))
}

/// GET /os-hypervisors/{pattern}/search (< 2.53)
pub async fn search(
    State(st): State<ApiState>,
    caller: Caller,
    Path(pattern): Path<String>,
) -> Result<Json<Value>, ApiError> {
    pattern_route(&st, &caller, &pattern, None)
}

/// GET /os-hypervisors/{pattern}/servers (< 2.53)
pub async fn servers(
    State(st): State<ApiState>,
    caller: Caller,
    Path(pattern): Path<String>,
) -> Result<Json<Value>, ApiError> {
    pattern_route(&st, &caller, &pattern, Some(false))
}

fn pattern_route(
    st: &ApiState,
    caller: &Caller,
    pattern: &str,
    servers: Option<bool>,
) -> Result<Json<Value>, ApiError> {
    let v = caller.version();
    if v.at_least(53) {
        return Err(not_found_route());
    }
    let views = st.engine.world().read();
    let items: Vec<Value> = matching(nodes(st, &views), pattern)?
        .iter()
        .map(|n| view(n, &views, v, false, servers))
        .collect();
    Ok(Json(json!({ "hypervisors": items })))
}

/// GET /os-hypervisors/statistics (< 2.88): sums over every hypervisor.
pub async fn statistics(
    State(st): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    if caller.version().at_least(88) {
        return Err(not_found_route());
    }
    let views = st.engine.world().read();
    let all = nodes(&st, &views);
    let mut s = json!({
        "count": all.len(), "vcpus": 0, "memory_mb": 0, "local_gb": 0, "vcpus_used": 0,
        "memory_mb_used": 0, "local_gb_used": 0, "free_ram_mb": 0, "free_disk_gb": 0,
        "current_workload": 0, "running_vms": 0, "disk_available_least": 0,
    });
    for n in &all {
        let h = view(n, &views, Version::MIN, true, None);
        for k in [
            "vcpus",
            "memory_mb",
            "local_gb",
            "vcpus_used",
            "memory_mb_used",
            "local_gb_used",
            "free_ram_mb",
            "free_disk_gb",
            "current_workload",
            "running_vms",
            "disk_available_least",
        ] {
            s[k] = json!(s[k].as_i64().unwrap_or(0) + h[k].as_i64().unwrap_or(0));
        }
    }
    Ok(Json(json!({ "hypervisor_statistics": s })))
}
