//! The native audit API (Stratus-native, documented in docs/ARCHITECTURE.md "Audit API"):
//! `GET /v1/instances/{id}/state?at=`, `GET /v1/events` and `GET /v1/events/stream`.
//! Thin handlers over [`replay::audit`], which the CLI (`stratus replay state`,
//! `stratus replay export`) uses too, so both answer the same.
//!
//! Invariants:
//! - Everything is read from the log (never from the views, which only know the
//!   present); the views only name the cell subject of an instance and the project of
//!   instances whose creation a page did not read.
//! - Non-admins see only events of their project's resources (the resource's project,
//!   not the actor's) and only their project's instances (another project's instance is
//!   a 404, as everywhere); admins see everything and may filter by project.
//! - Bad query values are 400s with a message naming the parameter; nothing is ever
//!   appended.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::{Extension, Json};
use domain::InstanceId;
use eventlog::{Commit, EventLog, LogError, StreamName};
use replay::audit::{self, At, Cursor, Filter, Matcher, Projects, Scan};
use serde_json::{json, Value};

use crate::context::{Caller, QueryPairs, RequestInfo};
use crate::error::ApiError;
use crate::ApiState;

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "audit read failed");
    ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `GET /v1/instances/{id}/state?at=<RFC 3339 time | <stream>:<seq>>`: the instance as
/// it was at that instant, folded from its commits with the domain's `evolve`.
pub async fn state(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let at = q.get("at").ok_or_else(|| {
        ApiError::bad_request(
            "Query parameter at is required: an RFC 3339 time or a log position <stream>:<seq>.",
        )
    })?;
    let at = At::parse(at).map_err(|e| ApiError::bad_request(e.0))?;
    let iid = InstanceId::parse(&id).ok_or_else(|| ApiError::instance_not_found(&id))?;
    // The cell subject, and the nearest fold snapshots at or before `at` (the
    // `instance_folds` model): the fold reads the log only from there.
    let (cell, snaps) = {
        let views = st.engine.world().read();
        let cell = views
            .instances()
            .get(&iid)
            .and_then(|r| r.cell_subject.clone());
        let snaps = audit::pick_snapshots(views.instance_folds(), iid, cell.as_ref(), &at);
        (cell, snaps)
    };
    let s = audit::state_at_indexed(st.engine.log().as_ref(), iid, cell, &at, &snaps)
        .await
        .map_err(internal)?
        .filter(|s| caller.can_see(&s.state.spec.project_id))
        .ok_or_else(|| ApiError::instance_not_found(&id))?;
    Ok(Json(audit::state_at_json(&s)))
}

/// The filters and cursor of `/v1/events` and `/v1/events/stream`.
struct Query {
    matcher: Matcher,
    cursor: Option<Cursor>,
    limit: usize,
}

fn parse_query(st: &ApiState, caller: &Caller, q: &QueryPairs) -> Result<Query, ApiError> {
    let time = |key: &str| {
        q.get(key)
            .map(|v| {
                audit::parse_time(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid {key} {v:?}: expected an RFC 3339 time (2026-01-31T12:00:00Z)."
                    ))
                })
            })
            .transpose()
    };
    let instance = q
        .get("instance")
        .map(|v| {
            InstanceId::parse(v).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid instance {v:?}: not a UUID."))
            })
        })
        .transpose()?;
    let limit = match q.get("limit") {
        None => audit::DEFAULT_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=audit::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid limit {v:?}: an integer from 1 to {}.",
                    audit::MAX_LIMIT
                ))
            })?,
    };
    let cursor = q
        .get("cursor")
        .map(|c| Cursor::decode(c).map_err(|e| ApiError::bad_request(e.0)))
        .transpose()?;
    let filter = Filter {
        project: q.get("project").map(String::from),
        viewer: (!caller.is_admin).then(|| caller.project.clone()),
        instance,
        types: q.get("type").map(Filter::parse_types).unwrap_or_default(),
        since: time("since")?,
        until: time("until")?,
    };
    if let (Some(s), Some(u)) = (filter.since, filter.until) {
        if s > u {
            return Err(ApiError::bad_request(
                "The value of since must be less than or equal to until.",
            ));
        }
    }
    let world = st.engine.world().clone();
    let projects =
        Projects::new(move |id| world.read().instance(id).map(|i| i.spec.project_id.clone()));
    Ok(Query {
        matcher: Matcher { filter, projects },
        cursor,
        limit,
    })
}

fn cell_of(st: &ApiState, id: Option<InstanceId>) -> Option<eventlog::Subject> {
    let id = id?;
    st.engine
        .world()
        .read()
        .instances()
        .get(&id)
        .and_then(|r| r.cell_subject.clone())
}

/// `GET /v1/events`: one page of the log after `cursor`, filtered.
pub async fn events(
    State(st): State<ApiState>,
    Extension(info): Extension<RequestInfo>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let mut query = parse_query(&st, &caller, &q)?;
    let cell = cell_of(&st, query.matcher.filter.instance);
    let page = audit::scan(
        st.engine.log().as_ref(),
        &mut query.matcher,
        &query.cursor.unwrap_or_default(),
        Scan {
            limit: query.limit,
            budget: audit::DEFAULT_BUDGET,
            seek_since: true,
        },
        cell,
    )
    .await
    .map_err(internal)?;
    let next = page.next.encode();
    let mut pairs: Vec<String> =
        q.0.iter()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    crate::util::query_encode(k),
                    crate::util::query_encode(v)
                )
            })
            .collect();
    pairs.push(format!("cursor={next}"));
    let events: Vec<Value> = page.events.iter().map(|r| r.to_json()).collect();
    Ok(Json(json!({
        "events": events,
        "next": next,
        "more": page.more,
        "links": [{"rel": "next", "href": format!("{}/v1/events?{}", info.base, pairs.join("&"))}],
    })))
}

/// Where a live reader starts on `stream`: after the cursor's position, or at the
/// first commit at or after `since`, or (neither) at the end: only what comes next.
async fn start_of(
    log: &dyn EventLog,
    stream: &StreamName,
    cursor: Option<&Cursor>,
    since: Option<domain::Timestamp>,
    discovered_later: bool,
) -> Result<u64, replay::ReplayError> {
    if let Some(c) = cursor.filter(|c| c.0.contains_key(stream)) {
        return Ok(c.pos(stream).seq + 1);
    }
    if discovered_later || cursor.is_some() {
        return Ok(1);
    }
    match since {
        Some(t) => audit::first_at_or_after(log, stream, t.0 - 60_000_000).await,
        None => Ok(log.last_stream_seq(stream).await? + 1),
    }
}

/// How often a live reader looks for new streams (new cells).
const DISCOVER_EVERY: Duration = Duration::from_secs(1);

/// `GET /v1/events/stream`: the same events as server-sent events, live. Each event's
/// `id` is the cursor just after it, so a client reconnecting with `Last-Event-ID`
/// resumes exactly there; keep-alive comments keep idle connections open. `timeout`
/// (seconds) ends the stream, for clients that only want a bounded look.
pub async fn stream(
    State(st): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    q: QueryPairs,
) -> Result<Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mut query = parse_query(&st, &caller, &q)?;
    if let Some(v) = headers.get("last-event-id") {
        let v = v
            .to_str()
            .map_err(|_| ApiError::bad_request("Invalid Last-Event-ID."))?;
        query.cursor = Some(Cursor::decode(v).map_err(|e| ApiError::bad_request(e.0))?);
    }
    let timeout = q
        .get("timeout")
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=86_400).contains(n))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid timeout {v:?}: an integer number of seconds from 1 to 86400."
                    ))
                })
        })
        .transpose()?;
    let log = st.engine.log().clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(256);
    tokio::spawn(async move {
        let run = follow(log, query, tx);
        let r = match timeout {
            Some(t) => tokio::time::timeout(t, run).await.unwrap_or(Ok(())),
            None => run.await,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "event stream ended");
        }
    });
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Subscribes to every stream (and every stream created later) and sends the matching
/// events to `tx` until the client goes away.
async fn follow(
    log: std::sync::Arc<dyn EventLog>,
    query: Query,
    tx: tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>,
) -> Result<(), replay::ReplayError> {
    let Query {
        mut matcher,
        cursor: start,
        ..
    } = query;
    let since = matcher.filter.since;
    let mut cursor = start.clone().unwrap_or_default();
    let (ctx, mut crx) = tokio::sync::mpsc::channel::<Result<Commit, LogError>>(1024);
    let mut subs = tokio::task::JoinSet::new();
    let mut known = std::collections::BTreeSet::new();
    let mut first = true;
    let mut tick = tokio::time::interval(DISCOVER_EVERY);
    loop {
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = tick.tick() => {
                for s in log.streams().await? {
                    if known.contains(&s) {
                        continue;
                    }
                    let from = start_of(log.as_ref(), &s, start.as_ref(), since, !first).await?;
                    let mut sub = log.subscribe(&s, from).await?;
                    let ctx = ctx.clone();
                    subs.spawn(async move {
                        while let Some(r) = sub.next().await {
                            if ctx.send(r).await.is_err() {
                                break;
                            }
                        }
                    });
                    known.insert(s);
                }
                first = false;
            }
            Some(r) = crx.recv() => {
                let c = r?;
                let pos = cursor.pos(&c.stream);
                if c.stream_seq <= pos.seq {
                    continue;
                }
                let from = if c.stream_seq == pos.seq + 1 { pos.part as usize } else { 0 };
                let mut recs = matcher.records(&c, from).into_iter().peekable();
                for i in from..c.events.len() {
                    cursor.advance(&c, i);
                    if recs.peek().is_some_and(|r| r.index == i) {
                        let r = recs.next().expect("peeked");
                        let ev = SseEvent::default()
                            .id(cursor.encode())
                            .data(r.to_json().to_string());
                        if tx.send(Ok(ev)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}
