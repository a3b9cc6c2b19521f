//! Small read-only sub-resources of a server: `os-server-password`
//! (`server_password.py`) and `diagnostics` (`server_diagnostics.py`); `ips` is in
//! [`crate::server_networks`].
//!
//! Invariants:
//! - The server password is what a guest posts to Nova's metadata service, encrypted
//!   with its key pair; no guest posts one here, so it is always empty, and clearing it
//!   changes nothing (204, nothing appended: Nova's `instance.save()` of an unchanged
//!   instance writes nothing either).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::context::Caller;
use crate::error::ApiError;
use crate::servers::visible;
use crate::ApiState;

/// GET /servers/{id}/os-server-password
pub async fn password_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    visible(&views, &id, &caller)?;
    Ok(Json(json!({"password": ""})))
}

/// DELETE /servers/{id}/os-server-password
pub async fn password_clear(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let views = st.engine.world().read();
    visible(&views, &id, &caller)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Nova's power state names (`nova.compute.power_state.STATE_MAP`).
fn power_state_name(p: domain::PowerState) -> &'static str {
    use domain::PowerState as P;
    match p {
        P::NoState => "pending",
        P::Running => "running",
        P::Paused => "paused",
        P::Shutdown => "shutdown",
        P::Crashed => "crashed",
        P::Suspended => "suspended",
    }
}

/// GET /servers/{id}/diagnostics (admin): what the simulated driver reports of the
/// guest, in the libvirt driver's shapes: from 2.48 Nova's standard
/// `InstanceDiagnostics` (one vCPU entry per flavor vCPU, the root disk, no NICs: no
/// networks here; counters are zero, the simulated guest does no I/O), before 2.48
/// the libvirt driver's flat keys. Nova's `check_instance_host`: 409 without a host.
pub async fn diagnostics(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let i = visible(&views, &id, &caller)?;
    if i.host.is_none() {
        return Err(ApiError::conflict(format!(
            "Instance {} is not ready",
            i.id()
        )));
    }
    let f = &i.flavor.spec;
    if !caller.version().at_least(48) {
        return Ok(Json(json!({
            "cpu0_time": 0,
            "memory": f.ram_mb * 1024,
            "vda_read": 0,
            "vda_read_req": 0,
            "vda_write": 0,
            "vda_write_req": 0,
            "vda_errors": -1,
        })));
    }
    let running = i.power_state == domain::PowerState::Running;
    let uptime = match (running, i.launched_at) {
        (true, Some(t)) => (engine::now().0.saturating_sub(t.0) / 1_000_000).max(0),
        _ => 0,
    };
    let cpus: Vec<Value> = (0..f.vcpus)
        .map(|n| json!({"id": n, "time": 0, "utilisation": null}))
        .collect();
    Ok(Json(json!({
        "state": power_state_name(i.power_state),
        "driver": "libvirt",
        "hypervisor": "qemu",
        "hypervisor_os": "linux",
        "uptime": uptime,
        "config_drive": false,
        "num_cpus": f.vcpus,
        "num_nics": 0,
        "num_disks": 1,
        "cpu_details": cpus,
        "disk_details": [{
            "read_bytes": 0, "read_requests": 0, "write_bytes": 0,
            "write_requests": 0, "errors_count": 0,
        }],
        "nic_details": [],
        "memory_details": {"maximum": f.ram_mb, "used": 0},
    })))
}
