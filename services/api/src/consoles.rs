//! Remote consoles: `POST /v2.1/servers/{id}/remote-consoles` (2.6+), the older
//! actions `os-getVNCConsole`, `os-getSPICEConsole`, `os-getSerialConsole`,
//! `os-getRDPConsole` (`remote_consoles.py`), and `GET /v2.1/os-console-auth-tokens/
//! {token}` (2.31+, `console_auth_tokens.py`), which a console proxy asks to learn where
//! a token's console is.
//!
//! Invariants:
//! - The simulated driver is libvirt-like with Nova's default console options: VNC is
//!   enabled (`novnc`; `xvpvnc` is Nova's `Invalid console type`), SPICE and the serial
//!   console are disabled (`Unavailable console type ...`, 400), RDP is gone with the
//!   Hyper-V driver (400), MKS is not implemented by the driver (501). The checks run in
//!   Nova's order: schema (400), server (404), host (409 `Instance ... is not ready`),
//!   console type (400 / 501).
//! - A token is derived, not stored: `base64url(1 | instance uuid | console kind |
//!   expiry (seconds) | hash of the host | HMAC)`, the HMAC made with the token key
//!   (`identity::Tokens::tag`, purpose `console`), so it survives restarts, is valid in
//!   every API process sharing the key, and cannot be forged. It expires after
//!   [`TOKEN_TTL_SECS`] (Nova's `[consoleauth] token_ttl`), and stops being valid when
//!   the server is deleted or moves to another host, as Nova deletes a server's console
//!   tokens then (`clean_console_auths_for_instance`). With `--auth noauth` (anyone may
//!   claim admin) the key is a fixed one: no weaker than the mode itself.
//! - Nothing here appends. The proxy that would accept the token (noVNC's websocket)
//!   comes with a real hypervisor; the URL points where Nova's default
//!   `novncproxy_base_url` would.

use axum::extract::{Path, State};
use axum::Json;
use base64::Engine as _;
use domain::instance::Instance;
use domain::{InstanceId, Timestamp};
use projections::Views;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{from_value, invalid};
use crate::context::{Caller, JsonBody};
use crate::error::ApiError;
use crate::servers::visible;
use crate::{ApiState, AuthMode};

/// Nova's `[consoleauth] token_ttl` default.
pub const TOKEN_TTL_SECS: i64 = 600;

/// Nova's `[vnc] novncproxy_base_url` default.
const NOVNC_BASE: &str = "http://127.0.0.1:6080/vnc_auto.html";

/// What a compute host answers as its console address (`server_proxyclient_address`).
const CONSOLE_HOST: &str = "127.0.0.1";

const PURPOSE: &str = "console";
const TOKEN_VERSION: u8 = 1;
const MAC_LEN: usize = 16;
const TOKEN_LEN: usize = 1 + 16 + 1 + 8 + 4 + MAC_LEN;

/// The console kinds a token may be for (its byte in the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NoVnc = 1,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        (b == Kind::NoVnc as u8).then_some(Kind::NoVnc)
    }
}

/// The key console tokens are tagged with.
fn key(auth: &AuthMode) -> std::sync::Arc<identity::Tokens> {
    match auth {
        AuthMode::Keystone(t) => t.clone(),
        AuthMode::NoAuth => {
            static NOAUTH: std::sync::LazyLock<std::sync::Arc<identity::Tokens>> =
                std::sync::LazyLock::new(|| {
                    let k = identity::TokenKey::parse(&"5a".repeat(32)).expect("64 hex digits");
                    std::sync::Arc::new(identity::Tokens::new(k, 0))
                });
            NOAUTH.clone()
        }
    }
}

/// FNV-1a of the host name: enough to tell that a server moved.
fn host_hash(host: &str) -> [u8; 4] {
    let mut h: u32 = 0x811c_9dc5;
    for b in host.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_be_bytes()
}

fn issue_token(auth: &AuthMode, inst: &Instance, host: &str, kind: Kind, now: Timestamp) -> String {
    let mut b = Vec::with_capacity(TOKEN_LEN);
    b.push(TOKEN_VERSION);
    b.extend_from_slice(inst.id().0.as_bytes());
    b.push(kind as u8);
    b.extend_from_slice(&now.plus_secs(TOKEN_TTL_SECS).as_secs().to_be_bytes());
    b.extend_from_slice(&host_hash(host));
    let tag = key(auth).tag(PURPOSE, &b);
    b.extend_from_slice(&tag[..MAC_LEN]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Where a valid token's console is.
struct Connect {
    instance: InstanceId,
    port: u16,
}

fn validate(auth: &AuthMode, views: &Views, token: &str, now: Timestamp) -> Option<Connect> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    if b.len() != TOKEN_LEN || b[0] != TOKEN_VERSION {
        return None;
    }
    let (body, mac) = b.split_at(TOKEN_LEN - MAC_LEN);
    let tag = key(auth).tag(PURPOSE, body);
    // Constant-time comparison of the tag.
    if tag[..MAC_LEN]
        .iter()
        .zip(mac)
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        != 0
    {
        return None;
    }
    let iid = InstanceId(uuid::Uuid::from_slice(&body[1..17]).ok()?);
    Kind::from_byte(body[17])?;
    let expires = i64::from_be_bytes(body[18..26].try_into().ok()?);
    if now.as_secs() >= expires {
        return None;
    }
    let inst = views.instance(&iid).filter(|i| !i.deleted)?;
    let host = inst.host.as_ref()?;
    if host_hash(host.as_str()) != body[26..30] {
        return None;
    }
    // libvirt's VNC autoport: 5900 + a display number; here a stable one per server.
    let display = u16::from_be_bytes([body[1], body[2]]) % 1000;
    Some(Connect {
        instance: iid,
        port: 5900 + display,
    })
}

/// A console URL for `protocol` / `console_type` on `inst`, or Nova's refusal.
fn console_url(
    auth: &AuthMode,
    inst: &Instance,
    protocol: &str,
    console_type: &str,
) -> Result<String, ApiError> {
    // check_instance_host: a server on no host has no console.
    let host = inst
        .host
        .as_ref()
        .ok_or_else(|| ApiError::conflict(format!("Instance {} is not ready", inst.id())))?;
    match protocol {
        "vnc" => {
            if console_type != "novnc" {
                return Err(ApiError::bad_request(format!(
                    "Invalid console type {console_type}"
                )));
            }
            let token = issue_token(auth, inst, host.as_str(), Kind::NoVnc, engine::now());
            // noVNC >= 1.1 takes the token inside its `path` parameter (Nova's
            // ConsoleAuthToken.access_url).
            Ok(format!("{NOVNC_BASE}?path=%3Ftoken%3D{token}"))
        }
        // Nova's [spice] and [serial_console] are disabled by default.
        "spice" | "serial" | "rdp" => Err(ApiError::bad_request(format!(
            "Unavailable console type {console_type}."
        ))),
        _ => Err(ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "The requested functionality is not supported.",
        )),
    }
}

/// The console URL of an old console action (`os-getVNCConsole` ...): its protocol
/// and the body's `type`, for [`crate::actions`].
pub fn action_url(
    auth: &AuthMode,
    inst: &Instance,
    protocol: &str,
    console_type: &str,
) -> Result<String, ApiError> {
    console_url(auth, inst, protocol, console_type)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    remote_console: RemoteConsole,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteConsole {
    protocol: String,
    #[serde(rename = "type")]
    console_type: String,
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> ApiError {
    let list = allowed
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    invalid(field, &json!(value), &format!("is not one of [{list}]"))
}

/// POST /v2.1/servers/{id}/remote-consoles (2.6+)
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let v = caller.version();
    if !v.at_least(6) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let b: CreateBody = from_value("", &body)?;
    let mut protocols = vec!["vnc", "spice", "serial", "rdp"];
    let mut types = vec!["novnc", "xvpvnc", "spice-html5", "serial", "rdp-html5"];
    if v.at_least(8) {
        protocols.push("mks");
        types.push("webmks");
    }
    if v.at_least(99) {
        types.push("spice-direct");
    }
    let rc = b.remote_console;
    if !protocols.contains(&rc.protocol.as_str()) {
        return Err(one_of("protocol", &rc.protocol, &protocols));
    }
    if !types.contains(&rc.console_type.as_str()) {
        return Err(one_of("type", &rc.console_type, &types));
    }
    let views = st.engine.world().read();
    let inst = visible(&views, &id, &caller)?;
    if rc.protocol == "rdp" {
        return Err(ApiError::bad_request("Unavailable console type rdp."));
    }
    let url = console_url(&st.auth, inst, &rc.protocol, &rc.console_type)?;
    Ok(Json(json!({"remote_console": {
        "protocol": rc.protocol,
        "type": rc.console_type,
        "url": url,
    }})))
}

/// GET /v2.1/os-console-auth-tokens/{token} (admin; 2.31+: every console type)
pub async fn show_token(
    State(st): State<ApiState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !caller.version().at_least(31) {
        // Before 2.31 only RDP tokens were shown, and RDP is gone (Nova: a bare 400).
        return Err(ApiError::bad_request(
            "The server could not comply with the request since it is either malformed or \
             otherwise incorrect.",
        ));
    }
    let views = st.engine.world().read();
    let c = validate(&st.auth, &views, &token, engine::now())
        .ok_or_else(|| ApiError::not_found("Token not found"))?;
    Ok(Json(json!({"console": {
        "instance_uuid": c.instance.to_string(),
        "host": CONSOLE_HOST,
        "port": c.port,
        "internal_access_path": Value::Null,
    }})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_hash_tells_hosts_apart() {
        assert_ne!(host_hash("host1"), host_hash("host2"));
        assert_eq!(host_hash("host1"), host_hash("host1"));
    }
}
