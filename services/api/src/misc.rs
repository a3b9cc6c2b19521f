//! Version documents, the native `/v1` event history, and the JSON fallbacks.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use domain::{InstanceId, Timestamp};
use engine::{Engine, EngineError};
use serde_json::{json, Value};

use crate::context::{Caller, RequestInfo};
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

/// GET /v1/instances/{id}/events: every event of the instance, oldest first (its
/// build-request subject, then its cell subject). Deleted instances keep their
/// history; other projects' instances are a 404 to non-admins.
pub async fn instance_events(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
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
    let mut commits = st
        .engine
        .log()
        .read_subject(&Engine::instance_api_subject(&iid), 1)
        .await
        .map_err(EngineError::from)?;
    if let Some(s) = cell_subject {
        commits.extend(
            st.engine
                .log()
                .read_subject(&s, 1)
                .await
                .map_err(EngineError::from)?,
        );
    }
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
    Ok(Json(json!({"events": events})))
}
