//! Small read-mostly sub-resources of a server: `ips` (Nova's `ips.py`) and
//! `os-server-password` (`server_password.py`).
//!
//! Invariants:
//! - Stratus wires no networks (servers are created with `networks: none` or `auto`
//!   without a network service), so a server's addresses are empty: `ips` lists none
//!   and every network is "not a member", as Nova answers for a server without ports.
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

/// GET /servers/{id}/ips
pub async fn ips_index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    visible(&views, &id, &caller)?;
    Ok(Json(json!({"addresses": {}})))
}

/// GET /servers/{id}/ips/{network}
pub async fn ips_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, _network)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    visible(&views, &id, &caller)?;
    Err(ApiError::not_found(
        "Instance is not a member of specified network",
    ))
}

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
