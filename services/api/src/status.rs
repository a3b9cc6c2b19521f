//! `GET /v1/status` (Stratus-native, admin): the status of every reactor and background
//! task of the answering process, as recorded by its [`engine::Runtime`], with each
//! reactor's lag behind its stream's head. In a split deployment each API process
//! answers for its own tasks only (the scheduler and compute processes serve no HTTP).

use axum::extract::State;
use axum::Json;
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

/// `GET /v1/status`.
pub async fn show(State(st): State<ApiState>) -> Json<Value> {
    let tasks: Vec<Value> = st
        .engine
        .task_status()
        .await
        .iter()
        .map(task_json)
        .collect();
    Json(json!({ "tasks": tasks }))
}
