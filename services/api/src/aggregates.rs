//! Handlers of `/v2.1/os-aggregates` (host aggregates, admin-only by Nova's default
//! policy) and `/v2.1/os-availability-zone` (zones: list for anyone, detail for admins).
//!
//! Invariants:
//! - Bodies are typed ([`Typed`]) with Nova's schemas (`additionalProperties: false`,
//!   `name` / `az_name` formats, `fqdn` hosts, `metadata_with_null`), so bad input is a
//!   400 before any command; every rule spanning aggregates (unique names, one zone per
//!   host, hosts with instances keep their zone, only empty aggregates are deleted) is
//!   decided by `domain::aggregate` on the whole set ([`engine::Engine::aggregate`]).
//! - Responses follow Nova's shapes: `uuid` from 2.41; create answers without `hosts` and
//!   `metadata`; every write but delete answers 200 with the aggregate, delete 200 with
//!   no body. The 2.81 image cache action (`POST .../{id}/images`) is not implemented.
//! - A host's zone is `Views::host_availability_zone` (its aggregates' zone, else
//!   `nova`); zones are listed from the registered compute hosts. There is no service
//!   enable/disable yet, so every zone with a host is available; the `internal` zone is
//!   not listed since no internal services are (Nova lists conductor and scheduler there).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::aggregate::{valid_name, valid_zone_name, Aggregate, AggregateCommand, AggregateId};
use domain::HostName;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, check_len, invalid, Decode, Typed};
use crate::context::Caller;
use crate::error::ApiError;
use crate::microversion::Version;
use crate::util::iso_micros;
use crate::ApiState;

const NAME_REASON: &str = "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace.";

/// Nova's aggregate view (`uuid` from 2.41; `hosts` and `metadata` unless `brief`).
pub fn aggregate_view(a: &Aggregate, version: Version, brief: bool) -> Value {
    let mut v = json!({
        "availability_zone": a.availability_zone(),
        "created_at": iso_micros(a.created_at),
        "deleted": false,
        "deleted_at": null,
        "id": a.id.0,
        "name": a.name,
        "updated_at": a.updated_at.map(iso_micros),
    });
    if !brief {
        v["hosts"] = json!(a.hosts);
        v["metadata"] = json!(a.metadata);
    }
    if version.at_least(41) {
        v["uuid"] = json!(a.uuid.hyphenated().to_string());
    }
    v
}

/// Nova validates the path id as an integer (400) before looking it up (404).
fn aggregate_id(id: &str) -> Result<AggregateId, ApiError> {
    id.trim()
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request("Invalid input received: id must be an integer"))
        .and_then(|n| u64::try_from(n).map_err(|_| not_found(id)))
        .map(AggregateId)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Aggregate {id} could not be found."))
}

fn show_body(st: &ApiState, caller: &Caller, id: AggregateId) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let (set, _) = views.aggregates().set();
    let a = set.get(id).ok_or_else(|| not_found(&id.to_string()))?;
    Ok(Json(
        json!({"aggregate": aggregate_view(a, caller.version(), false)}),
    ))
}

/// A `name` (Nova's `name` format: 1-255 printable characters, no leading or trailing
/// whitespace unless `strip`, the update schema's leading/trailing-space variant).
fn checked_name(v: &str, strip: bool) -> Result<String, ApiError> {
    check_len("name", v, 1, 255)?;
    let s = if strip { v.trim() } else { v };
    if !valid_name(s) {
        return Err(ApiError::bad_request(NAME_REASON));
    }
    Ok(s.to_string())
}

/// An `availability_zone` (`az_name` or null: a failure is the `oneOf`'s).
fn checked_zone(v: &str) -> Result<String, ApiError> {
    if !valid_zone_name(v) {
        let val = Value::String(v.to_string());
        return Err(invalid(
            "availability_zone",
            &val,
            &format!("{val} is not valid under any of the given schemas"),
        ));
    }
    Ok(v.to_string())
}

/// POST /os-aggregates body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    aggregate: CreateInner,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInner {
    name: String,
    #[serde(default)]
    availability_zone: Option<String>,
}

/// A validated create: name and zone.
#[derive(Debug)]
pub struct Create(String, Option<String>);

impl Decode for Create {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        let b: CreateBody = body::from_value("", body)?;
        let name = checked_name(&b.aggregate.name, false)?;
        let zone = b
            .aggregate
            .availability_zone
            .as_deref()
            .map(checked_zone)
            .transpose()?;
        Ok(Create(name, zone))
    }
}

/// PUT /os-aggregates/{id} body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    aggregate: UpdateInner,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateInner {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "body::present")]
    availability_zone: Option<Option<String>>,
}

/// A validated update: new name and/or zone (`Some(None)`: null).
#[derive(Debug)]
pub struct Update(Option<String>, Option<Option<String>>);

impl Decode for Update {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        let b: UpdateBody = body::from_value("", body)?;
        let u = b.aggregate;
        if u.name.is_none() && u.availability_zone.is_none() {
            let inner = body.get("aggregate").cloned().unwrap_or(Value::Null);
            return Err(invalid(
                "aggregate",
                &inner,
                &format!("{inner} is not valid under any of the given schemas"),
            ));
        }
        let name = u
            .name
            .as_deref()
            .map(|n| checked_name(n, true))
            .transpose()?;
        let zone = match u.availability_zone {
            None => None,
            Some(None) => Some(None),
            Some(Some(z)) => Some(Some(checked_zone(&z)?)),
        };
        Ok(Update(name, zone))
    }
}

/// `{"host": ...}` of add_host / remove_host (Nova's `fqdn`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostArg {
    host: String,
}

/// `{"metadata": {...}}` of set_metadata.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataArg {
    metadata: BTreeMap<String, Option<String>>,
}

/// A validated aggregate action.
#[derive(Debug)]
pub enum Action {
    AddHost(String),
    RemoveHost(String),
    SetMetadata(BTreeMap<String, Option<String>>),
}

fn checked_host(arg: &Value, name: &str) -> Result<String, ApiError> {
    let h: HostArg = body::from_value(name, arg)?;
    check_len("host", &h.host, 1, 255)?;
    let ok = h
        .host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !ok {
        let v = Value::String(h.host.clone());
        return Err(invalid(
            "host",
            &v,
            &format!("{v} does not match '^[a-zA-Z0-9-._]*$'"),
        ));
    }
    Ok(h.host)
}

impl Decode for Action {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        let Some(obj) = body.as_object() else {
            return Err(ApiError::bad_request("Malformed request body"));
        };
        let mut keys = obj.iter();
        let (key, arg) = match (keys.next(), keys.next()) {
            (Some(one), None) => one,
            (None, _) => {
                return Err(ApiError::bad_request(
                    "Malformed request body: no action given",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "Malformed request body: too many body keys",
                ))
            }
        };
        match key.as_str() {
            "add_host" => Ok(Action::AddHost(checked_host(arg, key)?)),
            "remove_host" => Ok(Action::RemoveHost(checked_host(arg, key)?)),
            "set_metadata" => {
                let m: MetadataArg = body::from_value(key, arg)?;
                let doc = arg.get("metadata").cloned().unwrap_or(Value::Null);
                let key_ok = |k: &str| {
                    !k.is_empty()
                        && k.chars().count() <= 255
                        && k.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'-' | b'_' | b':' | b'.' | b' ')
                        })
                };
                if let Some(bad) = m.metadata.keys().find(|k| !key_ok(k)) {
                    return Err(invalid(
                        "metadata",
                        &doc,
                        &format!(
                            "'{bad}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"
                        ),
                    ));
                }
                for (k, v) in &m.metadata {
                    if let Some(v) = v {
                        check_len(k, v, 0, 255)?;
                    }
                }
                Ok(Action::SetMetadata(m.metadata))
            }
            other => Err(ApiError::bad_request(format!(
                "There is no such action: {other}"
            ))),
        }
    }
}

/// GET /os-aggregates (admin)
pub async fn index(State(st): State<ApiState>, caller: Caller) -> Json<Value> {
    let views = st.engine.world().read();
    let (set, _) = views.aggregates().set();
    let items: Vec<Value> = set
        .aggregates
        .values()
        .map(|a| aggregate_view(a, caller.version(), false))
        .collect();
    Json(json!({ "aggregates": items }))
}

/// POST /os-aggregates (admin): 200 (Nova's, not 201) with the brief view.
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Typed(Create(name, availability_zone)): Typed<Create>,
) -> Result<Json<Value>, ApiError> {
    let out = st
        .engine
        .aggregate(
            AggregateCommand::Create {
                name,
                availability_zone,
            },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let id = out
        .events
        .iter()
        .find_map(|e| match e {
            domain::Event::Aggregate(domain::aggregate::AggregateEvent::Created { id, .. }) => {
                Some(*id)
            }
            _ => None,
        })
        .ok_or_else(|| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR))?;
    let views = st.engine.world().read();
    let (set, _) = views.aggregates().set();
    let a = set.get(id).ok_or_else(|| not_found(&id.to_string()))?;
    Ok(Json(
        json!({"aggregate": aggregate_view(a, caller.version(), true)}),
    ))
}

/// GET /os-aggregates/{id} (admin)
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    show_body(&st, &caller, aggregate_id(&id)?)
}

/// PUT /os-aggregates/{id} (admin): name and/or zone.
pub async fn update(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(Update(name, availability_zone)): Typed<Update>,
) -> Result<Json<Value>, ApiError> {
    let aid = aggregate_id(&id)?;
    st.engine
        .aggregate(
            AggregateCommand::Update {
                id: aid,
                name,
                availability_zone,
            },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    show_body(&st, &caller, aid)
}

/// DELETE /os-aggregates/{id} (admin): 200 without a body (Nova's); 400 while it has
/// hosts.
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let aid = aggregate_id(&id)?;
    st.engine
        .aggregate(
            AggregateCommand::Delete { id: aid },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::OK)
}

/// POST /os-aggregates/{id}/action (admin): add_host, remove_host, set_metadata.
pub async fn action(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(action): Typed<Action>,
) -> Result<Json<Value>, ApiError> {
    let aid = aggregate_id(&id)?;
    let host = |h: &str| {
        HostName::new(h)
            .map_err(|_| ApiError::not_found(format!("Compute host {h} could not be found.")))
    };
    let cmd = match &action {
        Action::AddHost(h) => AggregateCommand::AddHost {
            id: aid,
            host: host(h)?,
        },
        Action::RemoveHost(h) => AggregateCommand::RemoveHost {
            id: aid,
            host: host(h)?,
        },
        Action::SetMetadata(m) => AggregateCommand::SetMetadata {
            id: aid,
            metadata: m.clone(),
        },
    };
    let r = st
        .engine
        .aggregate(cmd, &caller.ctx(), &caller.meta())
        .await;
    match (r, &action) {
        (
            Err(engine::EngineError::Domain(domain::DomainError::NotFound { .. })),
            Action::RemoveHost(h),
        ) => {
            // Nova answers every not-found of remove_host with this one message.
            Err(ApiError::not_found(format!(
                "Cannot remove host {h} in aggregate {id}"
            )))
        }
        (Err(e), _) => Err(e.into()),
        (Ok(_), _) => show_body(&st, &caller, aid),
    }
}

/// GET /os-availability-zone (any user): the zones with a compute host, available.
pub async fn zones(State(st): State<ApiState>) -> Json<Value> {
    let views = st.engine.world().read();
    let info: Vec<Value> = views
        .availability_zones()
        .into_iter()
        .map(|z| json!({"zoneName": z, "zoneState": {"available": true}, "hosts": null}))
        .collect();
    Json(json!({ "availabilityZoneInfo": info }))
}

/// GET /os-availability-zone/detail (admin): each zone with its hosts and their
/// `nova-compute` service (`available`: the agent is up; `active`: enabled;
/// `updated_at`: its last heartbeat). Deleted compute services are not listed.
pub async fn zones_detail(State(st): State<ApiState>) -> Json<Value> {
    let now = eventlog::now_micros();
    let views = st.engine.world().read();
    let mut by_zone: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for r in views.hosts().values() {
        let h = &r.state.spec;
        if h.cell == domain::CellName::cell0() || r.state.service.deleted {
            continue;
        }
        let (alive, beat) = match st.engine.liveness.state(&h.name, now) {
            engine::HostLiveness::Unknown => (true, None),
            engine::HostLiveness::Up(at) => (true, Some(at)),
            engine::HostLiveness::Down(at) => (false, (at > 0).then_some(at)),
        };
        by_zone
            .entry(views.host_availability_zone(&h.name))
            .or_default()
            .insert(
                h.name.to_string(),
                json!({"nova-compute": {
                    "available": alive,
                    "active": !r.state.service.disabled,
                    "updated_at": beat.map(|t| iso_micros(domain::Timestamp(t))),
                }}),
            );
    }
    let info: Vec<Value> = by_zone
        .into_iter()
        .map(|(z, hosts)| json!({"zoneName": z, "zoneState": {"available": true}, "hosts": hosts}))
        .collect();
    Json(json!({ "availabilityZoneInfo": info }))
}
