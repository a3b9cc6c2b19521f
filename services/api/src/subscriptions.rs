//! `/v1/subscriptions` (issue 11): webhook subscriptions to the versioned
//! notifications, admin only. A subscription is state (`subscription.created` /
//! `subscription.deleted` on `stratus.api.subscriptions.<id>`); where its delivery
//! stands is operational state read from the notifier's [`DeliveryStore`].
//!
//! Invariants: the secret is write-only (recorded for the deliverer, never in an
//! answer); a refused body appends nothing; an unknown, malformed or deleted id is a
//! 404.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use domain::subscription::{Subscription, SubscriptionCommand};
use domain::SubscriptionId;
use notifier::webhook::{DeliveryState, DeliveryStore};
use projections::subscriptions::Subscriptions;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, Decode, Typed};
use crate::context::Caller;
use crate::error::ApiError;
use crate::microversion::Version;
use crate::notifications::Notifications;
use crate::ApiState;

/// Where this process reads delivery states (an `axum::Extension` set by the stack;
/// None where no notification store is open).
#[derive(Clone, Default)]
pub struct Deliveries(pub Option<Arc<dyn DeliveryStore>>);

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deliveries")
    }
}

/// The body of `POST /v1/subscriptions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    event_types: Vec<String>,
    #[serde(default)]
    project: Option<String>,
    secret: String,
    /// Deliver what comes after this feed cursor (default 0: every notification).
    #[serde(default)]
    cursor: Option<u64>,
}

/// A create request, shape-checked (the rest is the domain's `validate`).
#[derive(Debug)]
pub struct Create(CreateBody);

impl Decode for Create {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        body::from_value::<CreateBody>("", body)
            .map(Create)
            .map_err(|e| {
                // Nova's messages quote the offending value, here possibly the whole
                // body: say it again over a copy whose secret is masked.
                let mut masked = body.clone();
                match masked.get_mut("secret") {
                    Some(v @ Value::String(_)) => *v = Value::String("***".into()),
                    Some(_) => return e,
                    None => {}
                }
                body::from_value::<CreateBody>("", &masked)
                    .err()
                    .unwrap_or(e)
            })
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Subscription {id} could not be found."))
}

fn parse_id(id: &str) -> Result<SubscriptionId, ApiError> {
    SubscriptionId::parse(id).ok_or_else(|| not_found(id))
}

fn view(s: &Subscription, delivery: Option<Value>) -> Value {
    let mut v = json!({
        "id": s.id.to_string(),
        "url": s.url,
        "event_types": s.event_types,
        "project": s.project,
        "start_cursor": s.cursor,
        "created_at": crate::util::iso_micros(s.created_at),
    });
    if let Some(d) = delivery {
        v["delivery"] = d;
    }
    v
}

/// The delivery state of `s` (what the deliverer recorded, or where it starts) and the
/// feed's last cursor: caught up when `cursor` reaches `feed_cursor`.
async fn delivery(
    s: &Subscription,
    store: &Deliveries,
    feed: &Option<Extension<Notifications>>,
) -> Value {
    let state = match &store.0 {
        Some(d) => d.load(s.id).await.unwrap_or_else(|e| {
            tracing::warn!(subscription = %s.id, error = %e, "cannot read the delivery state");
            None
        }),
        None => None,
    };
    let st = state.unwrap_or(DeliveryState {
        cursor: s.cursor,
        ..Default::default()
    });
    let mut v = serde_json::to_value(&st).unwrap_or(Value::Null);
    let last = match feed.as_ref().and_then(|Extension(n)| n.0.clone()) {
        Some(f) => f.last().await.ok(),
        None => None,
    };
    v["feed_cursor"] = json!(last);
    v
}

/// POST /v1/subscriptions
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    store: Option<Extension<Deliveries>>,
    feed: Option<Extension<Notifications>>,
    Typed(Create(req)): Typed<Create>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let ctx = caller.ctx();
    let id = SubscriptionId(ctx.op_id);
    let sub = Subscription {
        id,
        url: req.url,
        event_types: req.event_types,
        project: req.project,
        secret: req.secret,
        cursor: req.cursor.unwrap_or(0),
        created_at: ctx.now,
    };
    st.engine
        .subscription(id, SubscriptionCommand::Create(sub), &ctx, &caller.meta())
        .await?;
    let sub = st
        .engine
        .world()
        .read()
        .model::<Subscriptions>()
        .get(id)
        .cloned()
        .ok_or_else(|| not_found(&id.to_string()))?;
    let store = store.map(|Extension(d)| d).unwrap_or_default();
    let d = delivery(&sub, &store, &feed).await;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "subscription": view(&sub, Some(d)) })),
    ))
}

/// GET /v1/subscriptions
pub async fn index(
    State(st): State<ApiState>,
    store: Option<Extension<Deliveries>>,
    feed: Option<Extension<Notifications>>,
) -> Result<Json<Value>, ApiError> {
    let subs: Vec<Subscription> = st
        .engine
        .world()
        .read()
        .model::<Subscriptions>()
        .live()
        .cloned()
        .collect();
    let store = store.map(|Extension(d)| d).unwrap_or_default();
    let mut out = Vec::with_capacity(subs.len());
    for s in &subs {
        let d = delivery(s, &store, &feed).await;
        out.push(view(s, Some(d)));
    }
    Ok(Json(json!({ "subscriptions": out })))
}

/// GET /v1/subscriptions/{id}
pub async fn show(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    store: Option<Extension<Deliveries>>,
    feed: Option<Extension<Notifications>>,
) -> Result<Json<Value>, ApiError> {
    let sid = parse_id(&id)?;
    let sub = st
        .engine
        .world()
        .read()
        .model::<Subscriptions>()
        .get(sid)
        .cloned()
        .ok_or_else(|| not_found(&id))?;
    let store = store.map(|Extension(d)| d).unwrap_or_default();
    let d = delivery(&sub, &store, &feed).await;
    Ok(Json(json!({ "subscription": view(&sub, Some(d)) })))
}

/// DELETE /v1/subscriptions/{id}: 204; delivery stops within the deliverer's rescan.
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sid = parse_id(&id)?;
    st.engine
        .subscription(
            sid,
            SubscriptionCommand::Delete,
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
