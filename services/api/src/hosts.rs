//! Compute hosts as Nova's admin APIs see them: `os-services` (the `nova-compute`
//! service record of every host) and the deprecated `os-hosts` (2.1 to 2.42).
//! `os-hypervisors` ([`crate::hypervisors`]) reads the same [`Node`]s.
//!
//! Invariants:
//! - One `nova-compute` service per registered, not deleted host of any cell, read from
//!   the host aggregate (`domain::host::Host::service`). Stratus lists no
//!   `nova-scheduler` / `nova-conductor` rows: only compute agents beat, so a row for
//!   another process would have no liveness to show (see ARCHITECTURE.md, "Services and
//!   hypervisors").
//! - `state` is `down` when the host's heartbeats say so ([`engine::Liveness`]) or it is
//!   forced down; `updated_at` is the last beat (else the last admin change, else the
//!   registration).
//! - Ids: from 2.53 a UUID derived from the host name and its registration time (stable
//!   across restarts and replays; a host deleted and registered again gets a new one, as
//!   Nova creates a new service record); before 2.53 a positive 31-bit integer taken from
//!   that UUID. Hypervisor ids are derived the same way under another name.
//! - Every change is a host command through the engine (`host.service_updated`,
//!   `host.deleted`); a service delete first takes the host out of every aggregate
//!   (`aggregate.host_removed` on the aggregate set). Refusals (bad body, unknown host,
//!   hosting instances) append nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::aggregate::AggregateCommand;
use domain::host::{Host, HostCommand};
use domain::{CellName, HostName, Timestamp};
use engine::liveness::HostLiveness;
use projections::Views;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::body::{self, Decode, Flag, Typed};
use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::microversion::Version;
use crate::ApiState;

/// The only binary Stratus has service records for.
pub const COMPUTE_BINARY: &str = "nova-compute";

/// A compute host with what the admin APIs show of it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The host aggregate.
    pub host: Host,
    /// Whether its service is up (heartbeats, not forced down).
    pub up: bool,
    /// Last heartbeat (µs), when one was seen.
    pub last_beat: Option<i64>,
    /// Availability zone.
    pub zone: String,
}

/// A stable UUID for `kind` (`service` / `hypervisor`) of the host registered at `at`.
fn derived_uuid(kind: &str, name: &HostName, at: Timestamp) -> Uuid {
    let hex = apicore::util::sha224_hex(format!("stratus:{kind}:{name}:{}", at.0).as_bytes());
    let mut b = [0u8; 16];
    for (i, x) in b.iter_mut().enumerate() {
        *x = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    uuid::Builder::from_sha1_bytes(b).into_uuid()
}

/// The pre-2.53 integer form of a derived UUID.
fn int_id(u: Uuid) -> u64 {
    let b = u.as_bytes();
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
}

impl Node {
    /// Host name.
    pub fn name(&self) -> &HostName {
        &self.host.spec.name
    }

    /// The service's UUID.
    pub fn service_uuid(&self) -> Uuid {
        derived_uuid("service", self.name(), self.host.registered_at)
    }

    /// The hypervisor's UUID.
    pub fn hypervisor_uuid(&self) -> Uuid {
        derived_uuid("hypervisor", self.name(), self.host.registered_at)
    }

    /// The service id at `v` (UUID from 2.53, integer before).
    pub fn service_id(&self, v: Version) -> Value {
        if v.at_least(53) {
            json!(self.service_uuid().to_string())
        } else {
            json!(int_id(self.service_uuid()))
        }
    }

    /// The hypervisor id at `v`.
    pub fn hypervisor_id(&self, v: Version) -> Value {
        if v.at_least(53) {
            json!(self.hypervisor_uuid().to_string())
        } else {
            json!(int_id(self.hypervisor_uuid()))
        }
    }

    /// Whether `id` (as given in a path) names this hypervisor at `v`.
    pub fn is_hypervisor(&self, id: &str, v: Version) -> bool {
        if v.at_least(53) {
            Uuid::parse_str(id).is_ok_and(|u| u == self.hypervisor_uuid())
        } else {
            id.parse::<u64>() == Ok(int_id(self.hypervisor_uuid()))
        }
    }

    /// Whether `id` names this service at `v`.
    pub fn is_service(&self, id: &str, v: Version) -> bool {
        if v.at_least(53) {
            Uuid::parse_str(id).is_ok_and(|u| u == self.service_uuid())
        } else {
            id.parse::<u64>() == Ok(int_id(self.service_uuid()))
        }
    }

    /// `enabled` / `disabled`.
    pub fn status(&self) -> &'static str {
        if self.host.service.disabled {
            "disabled"
        } else {
            "enabled"
        }
    }

    /// `up` / `down`.
    pub fn state(&self) -> &'static str {
        if self.up {
            "up"
        } else {
            "down"
        }
    }

    /// Nova's `updated_at` of the service.
    pub fn updated_at(&self) -> Timestamp {
        self.last_beat
            .map(Timestamp)
            .or(self.host.service.changed_at)
            .unwrap_or(self.host.registered_at)
    }
}

/// The availability zone of `host`: its aggregates' zone, else `nova`.
pub fn host_zone(views: &Views, host: &Host) -> String {
    views.host_availability_zone(&host.spec.name)
}

/// Every live (registered, not deleted) compute host, by name.
pub fn nodes(st: &ApiState, views: &Views) -> Vec<Node> {
    let now = engine::now().0;
    let mut out: Vec<Node> = views
        .hosts()
        .values()
        .map(|r| &r.state)
        .filter(|h| h.spec.cell != CellName::cell0() && !h.service.deleted)
        .map(|h| {
            let live = st.engine.liveness.state(&h.spec.name, now);
            let last_beat = match live {
                HostLiveness::Up(t) => Some(t),
                HostLiveness::Down(t) if t > 0 => Some(t),
                _ => None,
            };
            Node {
                up: live.schedulable() && !h.service.forced_down,
                last_beat,
                zone: host_zone(views, h),
                host: h.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

/// Nova's answer for a host without a host mapping.
fn not_mapped(host: &str) -> ApiError {
    ApiError::not_found(format!("Host '{host}' is not mapped to any cell"))
}

/// The live node named `host`, or Nova's 404s (`not_found` for a mapped host without a
/// live record, e.g. a deleted one).
fn node_by_name(
    st: &ApiState,
    views: &Views,
    host: &str,
    not_found: impl FnOnce() -> ApiError,
) -> Result<Node, ApiError> {
    if let Some(n) = nodes(st, views)
        .into_iter()
        .find(|n| n.name().as_str() == host)
    {
        return Ok(n);
    }
    let mapped = HostName::new(host)
        .ok()
        .is_some_and(|h| views.host_cell(&h).is_some());
    Err(if mapped {
        not_found()
    } else {
        not_mapped(host)
    })
}

/// One service row of `GET /os-services`.
fn service_view(n: &Node, v: Version) -> Value {
    let mut s = json!({
        "id": n.service_id(v),
        "binary": COMPUTE_BINARY,
        "host": n.name().as_str(),
        "zone": n.zone,
        "status": n.status(),
        "state": n.state(),
        "updated_at": apicore::util::iso_micros(n.updated_at()),
        "disabled_reason": n.host.service.disabled_reason,
    });
    if v.at_least(11) {
        s["forced_down"] = json!(n.host.service.forced_down);
    }
    s
}

/// GET /os-services (admin): filters `host` and `binary`.
pub async fn services_index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let v = caller.version();
    if v.at_least(75) {
        if let Some((k, _)) = q.0.iter().find(|(k, _)| k != "host" && k != "binary") {
            return Err(ApiError::bad_request(format!(
                "Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    let host = q.get("host").filter(|h| !h.is_empty());
    let binary = q.get("binary").filter(|b| !b.is_empty());
    let views = st.engine.world().read();
    let services: Vec<Value> = nodes(&st, &views)
        .iter()
        .filter(|n| host.is_none_or(|h| n.name().as_str() == h))
        .filter(|_| binary.is_none_or(|b| b == COMPUTE_BINARY))
        .map(|n| service_view(n, v))
        .collect();
    Ok(Json(json!({ "services": services })))
}

/// The body of `PUT /os-services/{action}` (before 2.53) or `PUT /os-services/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceUpdate {
    /// Before 2.53: the service named by host and binary.
    Legacy {
        host: String,
        binary: String,
        disabled_reason: Option<String>,
        forced_down: Option<bool>,
    },
    /// From 2.53.
    ById {
        status: Option<bool>,
        disabled_reason: Option<String>,
        forced_down: Option<bool>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyBody {
    host: String,
    binary: String,
    disabled_reason: Option<String>,
    forced_down: Option<Flag>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByIdBody {
    status: Option<ServiceStatus>,
    disabled_reason: Option<String>,
    forced_down: Option<Flag>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ServiceStatus {
    Enabled,
    Disabled,
}

impl Decode for ServiceUpdate {
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError> {
        if version.at_least(53) {
            let b: ByIdBody = body::from_value("", body)?;
            if let Some(r) = &b.disabled_reason {
                body::check_len("disabled_reason", r, 1, 255)?;
            }
            return Ok(ServiceUpdate::ById {
                status: b.status.map(|s| matches!(s, ServiceStatus::Disabled)),
                disabled_reason: b.disabled_reason,
                forced_down: b.forced_down.map(|f| f.0),
            });
        }
        if !version.at_least(11) && body.get("forced_down").is_some() {
            return Err(body::unexpected(&["forced_down"]));
        }
        let b: LegacyBody = body::from_value("", body)?;
        body::check_len("host", &b.host, 1, 255)?;
        body::check_len("binary", &b.binary, 1, 255)?;
        if let Some(r) = &b.disabled_reason {
            body::check_len("disabled_reason", r, 1, 255)?;
        }
        Ok(ServiceUpdate::Legacy {
            host: b.host,
            binary: b.binary,
            disabled_reason: b.disabled_reason,
            forced_down: b.forced_down.map(|f| f.0),
        })
    }
}

fn not_compute(binary: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Updating a {binary} service is not supported. Only nova-compute services can be updated."
    ))
}

/// Appends the host command and waits until the world has applied it.
async fn host_command(
    st: &ApiState,
    caller: &Caller,
    n: &Node,
    cmd: HostCommand,
) -> Result<(), ApiError> {
    let out = st
        .engine
        .host(
            &n.host.spec.cell,
            n.name(),
            cmd,
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    // Host commands do not wait for the world (claims are pipelined); an admin's change
    // is read back at once, so wait here (read-your-writes).
    if let (Some(ack), Ok(stream)) = (
        out.ack,
        eventlog::StreamName::new(n.host.spec.cell.as_str()),
    ) {
        let world = st.engine.world();
        if !world
            .wait_for(&stream, ack.stream_seq, st.engine.read_timeout)
            .await
        {
            return Err(engine::EngineError::Timeout.into());
        }
    }
    Ok(())
}

/// PUT /os-services/{id} (admin): before 2.53 `{id}` is the action (`enable`,
/// `disable`, `disable-log-reason`, `force-down` from 2.11) and the body names host and
/// binary; from 2.53 `{id}` is the service UUID.
pub async fn services_update(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(body): Typed<ServiceUpdate>,
) -> Result<Json<Value>, ApiError> {
    let v = caller.version();
    match body {
        ServiceUpdate::Legacy {
            host,
            binary,
            disabled_reason,
            forced_down,
        } => {
            let (cmd, mut reply) = match id.as_str() {
                "enable" => (
                    HostCommand::UpdateService {
                        status: Some((false, None)),
                        forced_down: None,
                    },
                    json!({"host": host, "binary": binary, "status": "enabled"}),
                ),
                "disable" | "disable-log-reason" => {
                    let reason = if id == "disable" {
                        None
                    } else {
                        Some(disabled_reason.ok_or_else(|| {
                            ApiError::bad_request("Missing disabled reason field")
                        })?)
                    };
                    let mut r = json!({"host": host, "binary": binary, "status": "disabled"});
                    if let Some(reason) = &reason {
                        r["disabled_reason"] = json!(reason);
                    }
                    (
                        HostCommand::UpdateService {
                            status: Some((true, reason)),
                            forced_down: None,
                        },
                        r,
                    )
                }
                "force-down" if v.at_least(11) => {
                    let f = forced_down
                        .ok_or_else(|| ApiError::bad_request("Missing forced_down field"))?;
                    (
                        HostCommand::UpdateService {
                            status: None,
                            forced_down: Some(f),
                        },
                        json!({"host": host, "binary": binary, "forced_down": f}),
                    )
                }
                _ => return Err(ApiError::not_found("Unknown action")),
            };
            if binary != COMPUTE_BINARY {
                return Err(not_compute(&binary));
            }
            let n = {
                let views = st.engine.world().read();
                node_by_name(&st, &views, &host, || {
                    ApiError::not_found(format!("Could not find binary {binary} on host {host}."))
                })?
            };
            host_command(&st, &caller, &n, cmd).await?;
            if let Some(o) = reply.as_object_mut() {
                o.retain(|_, v| !v.is_null());
            }
            Ok(Json(json!({ "service": reply })))
        }
        ServiceUpdate::ById {
            status,
            disabled_reason,
            forced_down,
        } => {
            if Uuid::parse_str(&id).is_err() {
                return Err(ApiError::bad_request(format!("Invalid uuid {id}")));
            }
            let n = {
                let views = st.engine.world().read();
                nodes(&st, &views)
                    .into_iter()
                    .find(|n| n.is_service(&id, v))
                    .ok_or_else(|| {
                        ApiError::not_found(format!("Service {id} could not be found."))
                    })?
            };
            if status == Some(false) && disabled_reason.is_some() {
                return Err(ApiError::bad_request(
                    "Specifying 'disabled_reason' with status 'enabled' is invalid.",
                ));
            }
            if status.is_none() && forced_down.is_none() {
                return Err(ApiError::bad_request(
                    "No updates were requested. Fields 'status' or 'forced_down' should be specified.",
                ));
            }
            let cmd = HostCommand::UpdateService {
                status: status.map(|d| (d, if d { disabled_reason } else { None })),
                forced_down,
            };
            host_command(&st, &caller, &n, cmd).await?;
            let views = st.engine.world().read();
            let n = nodes(&st, &views)
                .into_iter()
                .find(|n| n.is_service(&id, v))
                .ok_or_else(|| ApiError::not_found(format!("Service {id} could not be found.")))?;
            Ok(Json(json!({ "service": service_view(&n, v) })))
        }
    }
}

/// Instances (not deleted) on `host`.
pub fn instances_on<'a>(
    views: &'a Views,
    host: &'a HostName,
) -> impl Iterator<Item = &'a domain::instance::Instance> + 'a {
    views
        .instances()
        .values()
        .filter_map(|r| r.state())
        .filter(move |i| !i.deleted && i.host.as_ref() == Some(host))
}

/// DELETE /os-services/{id} (admin): refused (409) while the host has instances or
/// claims; afterwards the host gets no builds, is in no aggregate and is gone from the
/// listings until its agent registers it again.
///
/// As in Nova, the host leaves its aggregates first (one append on the aggregate set)
/// and the service is deleted after: a delete that fails half-way leaves the service,
/// and its retry finds no aggregate left to leave.
pub async fn services_delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let v = caller.version();
    if v.at_least(53) {
        if Uuid::parse_str(&id).is_err() {
            return Err(ApiError::bad_request(format!("Invalid uuid {id}")));
        }
    } else if id.parse::<i64>().is_err() {
        return Err(ApiError::bad_request(
            "Invalid input received: id must be an integer",
        ));
    }
    let n = {
        let views = st.engine.world().read();
        let n = nodes(&st, &views)
            .into_iter()
            .find(|n| n.is_service(&id, v))
            .ok_or_else(|| ApiError::not_found(format!("Service {id} not found.")))?;
        if instances_on(&views, n.name()).next().is_some() || !n.host.allocations.is_empty() {
            return Err(ApiError::conflict(domain::host::HOSTING_INSTANCES));
        }
        n
    };
    let forget = AggregateCommand::ForgetHost {
        host: n.name().clone(),
    };
    st.engine
        .aggregate(forget, &caller.ctx(), &caller.meta())
        .await?;
    host_command(&st, &caller, &n, HostCommand::Delete).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// os-hosts exists up to 2.42.
fn hosts_api(v: Version) -> Result<(), ApiError> {
    if v.at_least(43) {
        Err(ApiError::not_found("The resource could not be found."))
    } else {
        Ok(())
    }
}

/// GET /os-hosts (admin, <= 2.42): enabled compute services, filter `zone`.
pub async fn hosts_index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    hosts_api(caller.version())?;
    let zone = q.get("zone").filter(|z| !z.is_empty());
    let views = st.engine.world().read();
    let hosts: Vec<Value> = nodes(&st, &views)
        .iter()
        .filter(|n| !n.host.service.disabled)
        .filter(|n| zone.is_none_or(|z| n.zone == z))
        .map(|n| json!({"host_name": n.name().as_str(), "service": "compute", "zone": n.zone}))
        .collect();
    Ok(Json(json!({ "hosts": hosts })))
}

fn resource(host: &str, project: &str, cpu: u64, memory_mb: u64, disk_gb: u64) -> Value {
    json!({"resource": {
        "host": host, "project": project, "cpu": cpu, "memory_mb": memory_mb, "disk_gb": disk_gb,
    }})
}

/// GET /os-hosts/{id} (admin, <= 2.42): total, used now (claims), used max (flavors of
/// the instances on it) and one row per project.
pub async fn hosts_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    hosts_api(caller.version())?;
    let views = st.engine.world().read();
    let n = node_by_name(&st, &views, &id, || {
        ApiError::not_found(format!("Compute host {id} could not be found."))
    })?;
    let (total, used) = (n.host.spec.total, n.host.used);
    let mut rows = vec![
        resource(&id, "(total)", total.vcpus, total.ram_mb, total.disk_gb),
        resource(&id, "(used_now)", used.vcpus, used.ram_mb, used.disk_gb),
    ];
    let mut max = (0u64, 0u64, 0u64);
    let mut by_project: std::collections::BTreeMap<&str, (u64, u64, u64)> = Default::default();
    for i in instances_on(&views, n.name()) {
        let f = &i.flavor.spec;
        let add = (u64::from(f.vcpus), f.ram_mb, f.disk_gb + f.ephemeral_gb);
        max = (max.0 + add.0, max.1 + add.1, max.2 + add.2);
        let p = by_project.entry(i.spec.project_id.as_str()).or_default();
        *p = (p.0 + add.0, p.1 + add.1, p.2 + add.2);
    }
    rows.push(resource(&id, "(used_max)", max.0, max.1, max.2));
    for (p, (c, m, d)) in by_project {
        rows.push(resource(&id, p, c, m, d));
    }
    Ok(Json(json!({ "host": rows })))
}

/// Nova's answer for host operations the libvirt driver does not implement.
fn not_implemented() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "The requested functionality is not supported.",
    )
}

/// The body of `PUT /os-hosts/{id}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostUpdate {
    status: Option<HostToggle>,
    maintenance_mode: Option<HostToggle>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
enum HostToggle {
    #[serde(alias = "Enable", alias = "ENABLE", rename = "enable")]
    Enable,
    #[serde(alias = "Disable", alias = "DISABLE", rename = "disable")]
    Disable,
}

impl Decode for HostUpdate {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        let b: HostUpdate = body::from_value("", body)?;
        if b.status.is_none() && b.maintenance_mode.is_none() {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute . Value: {body}. {body} is not valid under any of the given schemas"
            )));
        }
        Ok(b)
    }
}

/// PUT /os-hosts/{id} (admin, <= 2.42): the libvirt driver implements neither
/// `set_host_enabled` nor `host_maintenance_mode`, so Nova answers 501 for a known
/// host (use os-services to disable a host).
pub async fn hosts_update(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(_body): Typed<HostUpdate>,
) -> Result<Json<Value>, ApiError> {
    hosts_api(caller.version())?;
    host_action(&st, &id)
}

/// A host power action (admin, <= 2.42): 404 for an unknown host, else 501 (the libvirt
/// driver has no `host_power_action`).
fn host_action(st: &ApiState, id: &str) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    node_by_name(st, &views, id, || {
        ApiError::not_found(format!("Host {id} could not be found."))
    })?;
    Err(not_implemented())
}

/// GET /os-hosts/{id}/reboot, /shutdown and /startup: one handler, as the three answer
/// alike.
pub async fn hosts_power(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    hosts_api(caller.version())?;
    host_action(&st, &id)
}
