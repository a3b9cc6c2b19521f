//! os-server-external-events: `POST /v2.1/os-server-external-events`, how Neutron,
//! Cinder, Ironic and Cyborg tell Nova that something happened to a server's port,
//! volume, power or accelerator (nova/api/openstack/compute/server_external_events.py).
//!
//! Invariants:
//! - The body is checked against Nova's schema of the request's microversion (event
//!   names: the four `network-*` always, `volume-extended` from 2.51, `power-update`
//!   from 2.76, `accelerator-request-bound` from 2.82, `volume-reimaged` from 2.93)
//!   before any event is looked at, so a bad body is a 400 for the whole request.
//! - Each event gets its own answer, in request order, as Nova: 404 `failed` for an
//!   unknown (or deleted) server, 400 `failed` for an event that needs a `tag` and has
//!   none, 422 `failed` for a server on no host (nothing could receive it), else 200
//!   `completed`. The response is 200 when every event was accepted, else 207.
//! - Accepting appends nothing: in Nova the events wake a compute manager waiting on a
//!   port or volume (none here: Stratus wires no networks or volumes) or, for
//!   `power-update`, sync an Ironic node's power state (no Ironic driver here). So an
//!   accepted event is acknowledged and dropped, as Nova drops an event no one waits for.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::InstanceId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{from_value, invalid};
use crate::context::{Caller, JsonBody};
use crate::error::ApiError;
use crate::ApiState;

/// Event names and the microversion each appeared at.
const NAMES: &[(&str, u16)] = &[
    ("network-changed", 0),
    ("network-vif-plugged", 0),
    ("network-vif-unplugged", 0),
    ("network-vif-deleted", 0),
    ("volume-extended", 51),
    ("power-update", 76),
    ("accelerator-request-bound", 82),
    ("volume-reimaged", 93),
];

/// Events a compute host cannot act on without a `tag` (Nova's `TAG_REQUIRED`).
const TAG_REQUIRED: &[&str] = &[
    "volume-extended",
    "power-update",
    "accelerator-request-bound",
];

/// Nova's `EVENT_STATUSES`.
const STATUSES: &[&str] = &["failed", "completed", "in-progress"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    events: Vec<Event>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    name: String,
    server_uuid: String,
    status: Option<String>,
    tag: Option<String>,
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> ApiError {
    let list = allowed
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    invalid(field, &json!(value), &format!("is not one of [{list}]"))
}

/// The body at microversion `minor`, or Nova's schema 400.
fn parse(body: &Value, minor: u16) -> Result<Vec<Event>, ApiError> {
    let body: Body = from_value("", body)?;
    if body.events.is_empty() {
        return Err(invalid("events", &json!([]), "[] is too short"));
    }
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(_, v)| minor >= *v)
        .map(|(n, _)| *n)
        .collect();
    for e in &body.events {
        if !names.contains(&e.name.as_str()) {
            return Err(one_of("name", &e.name, &names));
        }
        if uuid::Uuid::try_parse(&e.server_uuid).is_err() {
            let v = json!(e.server_uuid);
            return Err(invalid(
                "server_uuid",
                &v,
                &format!("'{}' is not a 'uuid'", e.server_uuid),
            ));
        }
        if let Some(s) = &e.status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(one_of("status", s, STATUSES));
            }
        }
        if let Some(t) = &e.tag {
            crate::body::check_len("tag", t, 0, 255)?;
        }
    }
    Ok(body.events)
}

/// POST /v2.1/os-server-external-events
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let events = parse(&body, caller.version().minor)?;
    let views = st.engine.world().read();
    let mut result = StatusCode::OK;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let inst = InstanceId::parse(&e.server_uuid)
            .and_then(|iid| views.instance(&iid))
            .filter(|i| !i.deleted);
        let (code, status) = match inst {
            None => (404, "failed".to_string()),
            Some(_) if TAG_REQUIRED.contains(&e.name.as_str()) && e.tag.is_none() => {
                (400, "failed".to_string())
            }
            Some(i) if i.host.is_some() => (200, "completed".to_string()),
            Some(_) => (422, "failed".to_string()),
        };
        if code != 200 {
            result = StatusCode::MULTI_STATUS;
        }
        let mut m = serde_json::Map::new();
        m.insert("name".into(), json!(e.name));
        m.insert("server_uuid".into(), json!(e.server_uuid));
        m.insert("status".into(), json!(status));
        if let Some(t) = e.tag {
            m.insert("tag".into(), json!(t));
        }
        m.insert("code".into(), json!(code));
        out.push(Value::Object(m));
    }
    Ok((result, Json(json!({ "events": out }))))
}
