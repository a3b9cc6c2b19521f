//! `GET /v1/status` (Stratus-native, admin): the status of every reactor and background
//! task of the answering process, as recorded by its [`engine::Runtime`], with each
//! reactor's lag behind its stream's head. In a split deployment each API process
//! answers for its own tasks only (the scheduler and compute processes serve no HTTP).
//! The notifier, when this process runs it, is reported per source stream (`notifier`:
//! its position against the stream's head, notifications written, failures).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use domain::Timestamp;
use engine::runtime::TaskReport;
use serde_json::{json, Value};

use crate::util::iso_micros_z;
use crate::ApiState;

/// The JSON of one task (the `TaskStatus` schema of docs/openapi/compute.json).
pub fn task_json(t: &TaskReport) -> Value {
    json!({
        "name": t.name,
        "kind": t.kind.as_str(),
        "stream": t.stream.as_ref().map(|s| s.as_str()),
        "every_ms": t.every.map(|d| d.as_millis() as u64),
        "runs": t.runs,
        "errors": t.errors,
        "last_run": t.last_run.map(|us| iso_micros_z(Timestamp(us as i64))),
        "last_error": t.last_error,
        "position": t.position,
        "head": t.head,
        "lag": t.lag,
    })
}

/// The notifier this process runs (an `axum::Extension` set by the stack; None: the
/// process writes no notifications, e.g. a split API process).
#[derive(Clone, Default)]
pub struct NotifierHandle(pub Option<Arc<notifier::runner::Notifier>>);

impl std::fmt::Debug for NotifierHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotifierHandle")
    }
}

/// The JSON of the notifier (the `NotifierStatus` schema): per source stream, its
/// position against the stream's head (each head asked with a short timeout).
async fn notifier_json(st: &ApiState, n: &notifier::runner::Notifier) -> Value {
    let mut streams = Vec::new();
    for r in n.report() {
        let head = match eventlog::StreamName::new(&r.stream) {
            Ok(s) => {
                tokio::time::timeout(Duration::from_secs(2), st.engine.log().last_stream_seq(&s))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        streams.push(json!({
            "stream": r.stream,
            "position": r.position,
            "head": head,
            "lag": head.map(|h| h.saturating_sub(r.position)),
            "written": r.written,
            "errors": r.errors,
            "last_error": r.last_error,
            "last_write": (r.last_write > 0).then(|| iso_micros_z(Timestamp(r.last_write as i64))),
            "stopped": r.stopped,
        }));
    }
    json!({ "written": n.written(), "streams": streams })
}

/// `GET /v1/status`.
pub async fn show(
    State(st): State<ApiState>,
    notifier: Option<Extension<NotifierHandle>>,
) -> Json<Value> {
    let tasks: Vec<Value> = st
        .engine
        .task_status()
        .await
        .iter()
        .map(task_json)
        .collect();
    let notifier = match notifier.and_then(|Extension(h)| h.0) {
        Some(n) => notifier_json(&st, &n).await,
        None => Value::Null,
    };
    Json(json!({ "tasks": tasks, "notifier": notifier }))
}
