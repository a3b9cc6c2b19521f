//! Version documents, the native `/v1` event history, and the JSON fallbacks.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use domain::{InstanceId, Timestamp};
use engine::{Engine, EngineError};
use eventlog::{Commit, CommitRef, CommitsRead, LogError, StreamName, Subject};
use serde::Serialize;
use serde_json::Value;

use crate::context::{Caller, QueryPairs, RequestInfo};
use crate::error::ApiError;
use crate::util::iso_micros_z;
use crate::view;
use crate::ApiState;

/// GET /
pub async fn versions(Extension(info): Extension<RequestInfo>) -> Json<Value> {
    Json(view::versions_doc(&info.base))
}

/// GET /v2.1
pub async fn version(Extension(info): Extension<RequestInfo>) -> Json<Value> {
    Json(view::version_doc(&info.base))
}

/// GET /v2: the legacy v2.0 endpoint's version document (Nova serves it from the v2.1
/// code in its legacy-compatible mode; Stratus offers only the document, so that
/// clients and tempest following the `v2.0` self link of `GET /` get an answer).
pub async fn legacy_version(Extension(info): Extension<RequestInfo>) -> Json<Value> {
    Json(view::legacy_version_doc(&info.base))
}

/// Any unknown route: 404 itemNotFound.
pub async fn not_found() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

/// A known route with a method it does not serve: 405 badMethod.
pub async fn bad_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "The method specified is not allowed for this resource.",
    )
}

/// Events per page of `GET /v1/instances/{id}/events` when paged (Nova's `max_limit`).
const MAX_EVENTS_PAGE: usize = 1000;

/// One event of an instance's history as `GET /v1/instances/{id}/events` answers it,
/// serialized straight from the commit (no JSON tree per event: the 10,000-event
/// history of a busy server is serialized in a few milliseconds). Fields in
/// alphabetical order, the order the former `serde_json::Value` answer had, so the
/// bytes are unchanged.
#[derive(Serialize)]
struct EventOut<'a> {
    actor: ActorOut<'a>,
    causation_id: &'a str,
    event_id: &'a uuid::Uuid,
    occurred_at: &'a str,
    request_id: &'a str,
    sequence: u64,
    stream: &'a str,
    stream_seq: u64,
    subject: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    version: u16,
}

#[derive(Serialize)]
struct ActorOut<'a> {
    project: &'a str,
    roles: &'a [&'a str],
    user: &'a str,
}

/// The answer: every event (unpaged), or a page and the marker of its last event when
/// the page is full (the next page may then be empty).
#[derive(Serialize)]
struct EventsOut<'a> {
    events: Vec<EventOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

/// The events of `commits` from event `skip` of the first, at most `limit`, each with
/// its commit's envelope (`times`: each commit's `occurred_at`, formatted once).
fn events_out<'a>(
    commits: &'a [CommitRef<'a>],
    times: &'a [String],
    skip: usize,
    limit: usize,
) -> Vec<EventOut<'a>> {
    commits
        .iter()
        .zip(times)
        .enumerate()
        .flat_map(|(n, (c, at))| {
            c.events
                .iter()
                .skip(if n == 0 { skip } else { 0 })
                .map(move |e| EventOut {
                    actor: ActorOut {
                        project: c.meta.actor.project,
                        roles: &c.meta.actor.roles,
                        user: c.meta.actor.user,
                    },
                    causation_id: c.meta.causation_id,
                    event_id: &e.event_id,
                    occurred_at: at,
                    request_id: c.meta.correlation_id,
                    sequence: c.subject_seq,
                    stream: c.stream.as_str(),
                    stream_seq: c.stream_seq,
                    subject: c.subject,
                    event_type: e.event_type,
                    version: e.version,
                })
        })
        .take(limit)
        .collect()
}

/// Each commit's `occurred_at` as the API writes times (`iso_micros_z`). The calendar
/// part is formatted once per second of the history, not once per commit: a busy
/// server's commits share their seconds, and calendar formatting is most of the cost.
fn commit_times(commits: &[CommitRef]) -> Vec<String> {
    let mut second: Option<(i64, String)> = None;
    commits
        .iter()
        .map(|c| {
            let at = c.meta.occurred_at;
            let (secs, micros) = (at.div_euclid(1_000_000), at.rem_euclid(1_000_000));
            let prefix = match &second {
                Some((s, p)) if *s == secs => p,
                _ => {
                    let whole = iso_micros_z(Timestamp(secs * 1_000_000));
                    // `YYYY-MM-DDTHH:MM:SS` before `.000000Z`.
                    let cut = whole.len().saturating_sub(".000000Z".len());
                    &second.insert((secs, whole[..cut].to_string())).1
                }
            };
            format!("{prefix}.{micros:06}Z")
        })
        .collect()
}

/// Where a page of an instance's history ends: its last event, event `index` of commit
/// `seq` (at stream position `stream_seq`) of the api subject or the cell subject.
/// Opaque to clients: base64url of `<a|c>:<seq>:<stream_seq>:<index>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    cell: bool,
    seq: u64,
    stream_seq: u64,
    index: usize,
}

impl Marker {
    fn encode(&self) -> String {
        let side = if self.cell { 'c' } else { 'a' };
        let text = format!("{side}:{}:{}:{}", self.seq, self.stream_seq, self.index);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(s: &str) -> Option<Marker> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let mut it = text.split(':');
        let cell = match it.next()? {
            "a" => false,
            "c" => true,
            _ => return None,
        };
        let seq = it.next()?.parse::<u64>().ok().filter(|s| *s > 0)?;
        let stream_seq = it.next()?.parse::<u64>().ok().filter(|s| *s > 0)?;
        let index = it.next()?.parse::<usize>().ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(Marker {
            cell,
            seq,
            stream_seq,
            index,
        })
    }
}

/// GET /v1/instances/{id}/events: every event of the instance, oldest first (its
/// build-request subject, then its cell subject). Deleted instances keep their
/// history; other projects' instances are a 404 to non-admins. With `limit` (1-1000)
/// or `marker` (the `next_marker` of the previous page), one page: at most `limit`
/// events (default 1000) after the marker, read with ranged reads (the cost of the
/// page, not of the history); without either, every event (the original answer).
pub async fn instance_events(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryPairs,
) -> Result<Response, ApiError> {
    let limit = q
        .get("limit")
        .map(|v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_EVENTS_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid limit {v:?}: an integer from 1 to {MAX_EVENTS_PAGE}."
                    ))
                })
        })
        .transpose()?;
    let marker = q
        .get("marker")
        .map(|v| {
            Marker::decode(v).ok_or_else(|| ApiError::bad_request(format!("Invalid marker {v:?}.")))
        })
        .transpose()?;
    let (iid, cell_subject) = {
        let views = st.engine.world().read();
        let iid = InstanceId::parse(&id).ok_or_else(|| ApiError::instance_not_found(&id))?;
        let row = views
            .instances()
            .get(&iid)
            .filter(|r| {
                r.state()
                    .is_some_and(|s| caller.can_see(&s.spec.project_id))
            })
            .ok_or_else(|| ApiError::instance_not_found(&id))?;
        (iid, row.cell_subject.clone())
    };
    let log = st.engine.log();
    let api = Engine::instance_api_subject(&iid);
    if limit.is_none() && marker.is_none() {
        // The stored records, looked at in place (no owned commit per record): the
        // whole history of a 10,000-event server is read and serialized in a few ms.
        let mut reads = vec![log
            .read_subject_records(&api, 1)
            .await
            .map_err(EngineError::from)?];
        if let Some(s) = &cell_subject {
            reads.push(
                log.read_subject_records(s, 1)
                    .await
                    .map_err(EngineError::from)?,
            );
        }
        let commits = reads
            .iter()
            .flat_map(CommitsRead::iter)
            .collect::<Result<Vec<_>, _>>()
            .map_err(EngineError::from)?;
        let times = commit_times(&commits);
        return Ok(Json(EventsOut {
            events: events_out(&commits, &times, 0, usize::MAX),
            next_marker: None,
        })
        .into_response());
    }
    let limit = limit.unwrap_or(MAX_EVENTS_PAGE);
    // The page's commits: from the marker's commit (or the first) on, subject by
    // subject, until `limit` events are read.
    let mut sides: Vec<(bool, Subject)> = vec![(false, api)];
    sides.extend(cell_subject.map(|s| (true, s)));
    let (mut from, mut after, skip) = match marker {
        Some(m) => {
            sides.retain(|(cell, _)| *cell || !m.cell);
            (m.seq, m.stream_seq - 1, m.index.saturating_add(1))
        }
        None => (1, 0, 0),
    };
    let mut commits: Vec<Commit> = Vec::new();
    // Events read so far (those of the marker's commit up to the marker excluded).
    let mut have = 0usize;
    for (n, (_, subject)) in sides.iter().enumerate() {
        if n > 0 {
            (from, after) = (1, 0);
        }
        while have < limit {
            let asked = limit - have + 1;
            let batch = match log.read_subject_range(subject, from, after, asked).await {
                Ok(b) => b,
                // The marker's stream position is only a hint to the backend; one past
                // its commit (a forged marker) is found out by the read.
                Err(LogError::Corrupt(_)) if marker.is_some() && n == 0 && commits.is_empty() => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid marker {:?}.",
                        q.get("marker").unwrap_or_default()
                    )));
                }
                Err(e) => return Err(EngineError::from(e).into()),
            };
            let full = batch.len() == asked;
            for c in batch {
                let k = c.events.len();
                have += if commits.is_empty() {
                    k.saturating_sub(skip)
                } else {
                    k
                };
                (from, after) = (c.subject_seq + 1, c.stream_seq);
                commits.push(c);
            }
            if !full {
                break;
            }
        }
        if have >= limit {
            break;
        }
    }
    // The marker's own events are skipped only if its commit is where the page starts
    // (a marker past the end of its subject starts the next subject from its first).
    let skip = match (marker, commits.first()) {
        (Some(m), Some(c))
            if c.subject_seq == m.seq && (c.stream != StreamName::api()) == m.cell =>
        {
            skip
        }
        _ => 0,
    };
    let refs: Vec<CommitRef> = commits.iter().map(eventlog::records::borrow).collect();
    let times = commit_times(&refs);
    let events = events_out(&refs, &times, skip, limit);
    let next_marker = (events.len() == limit).then(|| {
        // The commit holding the page's last event, and its index there.
        let mut left = limit;
        let mut last = None;
        for (n, c) in commits.iter().enumerate() {
            let base = if n == 0 { skip.min(c.events.len()) } else { 0 };
            let k = c.events.len() - base;
            if left <= k {
                last = Some((c, base + left - 1));
                break;
            }
            left -= k;
        }
        let (c, index) = last.expect("a full page ends in a commit read");
        Marker {
            cell: c.stream != StreamName::api(),
            seq: c.subject_seq,
            stream_seq: c.stream_seq,
            index,
        }
        .encode()
    });
    Ok(Json(EventsOut {
        events,
        next_marker,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn commit() -> Commit {
        let cell1 = StreamName::new("cell1").unwrap();
        Commit {
            stream: cell1.clone(),
            stream_seq: 41,
            subject: Subject::cell(&cell1, eventlog::SubjectKind::Instance, "x").unwrap(),
            subject_seq: 7,
            dedupe_id: "d".into(),
            meta: eventlog::Metadata {
                correlation_id: "req-1".into(),
                causation_id: "cause \"quoted\"".into(),
                actor: eventlog::Actor {
                    user: "alice".into(),
                    project: "demo".into(),
                    roles: vec!["member".into(), "reader".into()],
                },
                occurred_at: 1_800_000_000_123_456,
            },
            events: (0..3)
                .map(|i| eventlog::StoredEvent {
                    event_id: uuid::Uuid::from_u128(i),
                    event_type: format!("instance.t{i}"),
                    version: 1 + i as u16,
                    payload: vec![],
                })
                .collect(),
        }
    }

    /// The answer is byte for byte what the former `serde_json::Value` form was.
    #[test]
    fn serialized_like_the_value_form() {
        let commits = [commit(), commit()];
        let refs: Vec<CommitRef> = commits.iter().map(eventlog::records::borrow).collect();
        let times: Vec<String> = commits
            .iter()
            .map(|c| iso_micros_z(Timestamp(c.meta.occurred_at)))
            .collect();
        let fast = serde_json::to_string(&EventsOut {
            events: events_out(&refs, &times, 0, usize::MAX),
            next_marker: None,
        })
        .unwrap();
        let events: Vec<Value> = commits
            .iter()
            .flat_map(|c| {
                c.events.iter().map(move |e| {
                    json!({
                        "sequence": c.subject_seq,
                        "subject": c.subject.as_str(),
                        "stream": c.stream.as_str(),
                        "stream_seq": c.stream_seq,
                        "type": e.event_type,
                        "version": e.version,
                        "occurred_at": iso_micros_z(Timestamp(c.meta.occurred_at)),
                        "request_id": c.meta.correlation_id,
                        "causation_id": c.meta.causation_id,
                        "actor": {
                            "user": c.meta.actor.user,
                            "project": c.meta.actor.project,
                            "roles": c.meta.actor.roles,
                        },
                        "event_id": e.event_id.to_string(),
                    })
                })
            })
            .collect();
        assert_eq!(fast, json!({ "events": events }).to_string());
        // Skipping and limiting count events across commits.
        let page = events_out(&refs, &times, 2, 2);
        assert_eq!(
            page.iter().map(|e| e.event_type).collect::<Vec<_>>(),
            ["instance.t2", "instance.t0"]
        );
    }

    /// The per-second shortcut writes what `iso_micros_z` writes, across seconds,
    /// days and years.
    #[test]
    fn commit_times_match_the_formatter() {
        let base = commit();
        let ats: Vec<i64> = [
            0i64,
            999_999,
            1_000_000,
            1_800_000_000_123_456,
            1_800_000_000_999_999,
            1_800_000_001_000_000,
            1_800_000_001_000_001,
            1_798_761_599_999_999,
            1_798_761_600_000_000,
        ]
        .into_iter()
        .chain((0..500).map(|n| 1_800_000_000_000_000 + n * 7_777))
        .collect();
        let commits: Vec<Commit> = ats
            .iter()
            .map(|at| {
                let mut c = base.clone();
                c.meta.occurred_at = *at;
                c
            })
            .collect();
        let refs: Vec<CommitRef> = commits.iter().map(eventlog::records::borrow).collect();
        let want: Vec<String> = ats.iter().map(|at| iso_micros_z(Timestamp(*at))).collect();
        assert_eq!(commit_times(&refs), want);
    }

    #[test]
    fn markers_read_back() {
        let m = Marker {
            cell: true,
            seq: 12,
            stream_seq: 340,
            index: 2,
        };
        assert_eq!(Marker::decode(&m.encode()), Some(m));
        for bad in ["", "x", "YTox", "not base64!", "YTowOjE6MA", "YToxOjE6MDox"] {
            assert_eq!(Marker::decode(bad), None, "{bad}");
        }
    }
}
