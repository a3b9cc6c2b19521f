//! `GET /v1/notifications` and `GET /v1/notifications/stream` (issue 11): Nova's
//! versioned notifications, as the notifier derived them from the log, paged by cursor
//! (the notification's number in the store: the redb key on the embedded backend, the
//! `STRATUS_NOTIFICATIONS` stream sequence on JetStream) and as server-sent events
//! resumable with `Last-Event-ID`.
//!
//! Invariants: a caller without the admin role sees its own project's notifications
//! only (naming another project is a 403); a cursor is never reused, so a reader that
//! resumes from the last cursor it saw misses nothing and sees nothing twice.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use notifier::store::{Feed, Filter};
use serde_json::{json, Value};

use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;

/// The feed this process reads notifications from (an `axum::Extension` set by the
/// stack; None where no notification store is open).
#[derive(Clone, Default)]
pub struct Notifications(pub Option<Arc<dyn Feed>>);

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifications")
    }
}

/// Default and largest page.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn feed(ext: Option<Extension<Notifications>>) -> Result<Arc<dyn Feed>, ApiError> {
    ext.and_then(|Extension(n)| n.0).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "No notification store is open in this process.",
        )
    })
}

fn number(q: &QueryPairs, key: &str) -> Result<Option<u64>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("Invalid {key}: {v}")))
        })
        .transpose()
}

/// The filter of a request; non-admins are held to their own project.
fn filter(caller: &Caller, q: &QueryPairs) -> Result<Filter, ApiError> {
    let mut project = q.get("project").map(str::to_string);
    if !caller.is_admin {
        match &project {
            Some(p) if *p != caller.project => {
                return Err(ApiError::forbidden(
                    "Only an admin may read another project's notifications.",
                ))
            }
            _ => project = Some(caller.project.clone()),
        }
    }
    Ok(Filter {
        event_type: q.get("event_type").map(str::to_string),
        project,
    })
}

/// GET /v1/notifications?cursor=&limit=&event_type=&project=
pub async fn index(
    caller: Caller,
    q: QueryPairs,
    ext: Option<Extension<Notifications>>,
) -> Result<Json<Value>, ApiError> {
    let feed = feed(ext)?;
    let cursor = number(&q, "cursor")?.unwrap_or(0);
    let limit = number(&q, "limit")?
        .map(|l| l as usize)
        .unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "Invalid limit: must be between 1 and {MAX_LIMIT}"
        )));
    }
    let filter = filter(&caller, &q)?;
    let (rows, upto) = feed
        .read(cursor, limit, &filter)
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let notifications: Vec<Value> = rows
        .into_iter()
        .map(|(c, n)| json!({"cursor": c, "notification": n}))
        .collect();
    Ok(Json(json!({
        "notifications": notifications,
        "next_cursor": upto,
    })))
}

/// GET /v1/notifications/stream: every notification after `Last-Event-ID` (or the
/// `cursor` query, else from the next one written), live; event id = cursor, event
/// name = the notification's event type, data = the notification. `follow=false` ends
/// the stream once it has caught up (what a batch reader or a test wants).
pub async fn stream(
    caller: Caller,
    q: QueryPairs,
    headers: HeaderMap,
    ext: Option<Extension<Notifications>>,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let feed = feed(ext)?;
    let filter = filter(&caller, &q)?;
    let from_header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("Invalid Last-Event-ID: {v}")))
        })
        .transpose()?;
    let cursor = match (from_header, number(&q, "cursor")?) {
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => feed.last().await.map_err(|e| {
            ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        })?,
    };
    let follow = match q.get("follow") {
        None | Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(v) => return Err(ApiError::bad_request(format!("Invalid follow: {v}"))),
    };
    let state = (
        feed,
        filter,
        cursor,
        std::collections::VecDeque::<Event>::new(),
    );
    let events = futures::stream::unfold(
        state,
        move |(feed, filter, mut cursor, mut queue)| async move {
            loop {
                if let Some(e) = queue.pop_front() {
                    return Some((Ok(e), (feed, filter, cursor, queue)));
                }
                match feed.read(cursor, 256, &filter).await {
                    Ok((rows, upto)) => {
                        for (c, n) in rows {
                            let data = serde_json::to_string(&n).unwrap_or_default();
                            queue.push_back(
                                Event::default()
                                    .id(c.to_string())
                                    .event(n.event_type.clone())
                                    .data(data),
                            );
                        }
                        if queue.is_empty() && upto == cursor {
                            if !follow {
                                return None;
                            }
                            feed.wait_after(cursor, Duration::from_secs(15)).await;
                        }
                        cursor = upto;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
