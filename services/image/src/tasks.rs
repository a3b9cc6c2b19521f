//! Glance's tasks API (`/v2/tasks`, deprecated in Glance but still served): admin-only
//! (`tasks_api_access`). See `domain::task` for why every task a client creates ends
//! in `failure` at once; image imports (`crate::import`) are the tasks that run.
//!
//! Invariant: the body is checked as Glance checks it (required `type` and `input`,
//! the type enum, an `import`'s `import_from` URI) before anything is appended; a
//! refused task is not recorded.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::task::{Task, TaskCommand, TaskSpec};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ImageError;
use crate::extract::Path;
use crate::{read_json, ImageState};

/// Task types Glance's task schema allows.
const TASK_TYPES: &[&str] = &["import", "api_image_import", "location_import"];

/// Why an accepted task fails.
const NO_REMOTE_DATA: &str = "Stratus does not download image data from remote locations: create the image and upload its data with PUT /v2/images/{image_id}/file.";

fn view(t: &Task) -> Value {
    let id = &t.spec.id;
    let input: Value = serde_json::from_str(&t.spec.input).unwrap_or(Value::Null);
    let mut v = json!({
        "id": id,
        "type": t.spec.task_type,
        "status": t.status.as_str(),
        "owner": t.spec.owner,
        "input": input,
        "result": t.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
        "message": t.message,
        "created_at": apicore::util::iso_z(t.created_at),
        "updated_at": apicore::util::iso_z(t.updated_at),
        "self": format!("/v2/tasks/{id}"),
        "schema": "/v2/schemas/task",
        "request_id": t.spec.request_id,
        "user_id": t.spec.user_id,
    });
    if let Some(e) = t.expires_at {
        v["expires_at"] = json!(apicore::util::iso_z(e));
    }
    if let Some(i) = input.get("image_id") {
        v["image_id"] = i.clone();
    }
    v
}

fn stub(t: &Task) -> Value {
    let full = view(t);
    let mut v = json!({});
    for k in [
        "id",
        "type",
        "status",
        "owner",
        "created_at",
        "updated_at",
        "self",
        "schema",
        "expires_at",
    ] {
        if let Some(x) = full.get(k) {
            v[k] = x.clone();
        }
    }
    v
}

/// Glance's check of a legacy `import` task's `import_from`.
fn check_import_from(input: &Value) -> Result<(), ImageError> {
    let uri = input
        .get("import_from")
        .and_then(Value::as_str)
        .unwrap_or("");
    if uri.is_empty() {
        return Err(ImageError::bad_request("Invalid location: None"));
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok(());
    }
    if uri.starts_with("file:///") || uri.starts_with("filesystem:///") {
        return Err(ImageError::bad_request(
            "File based imports are not allowed. Please use a non-local source of image data.",
        ));
    }
    Err(ImageError::bad_request(
        "The given uri is not valid. Please specify a valid uri from the following list of supported uri ['http']",
    ))
}

/// POST /v2/tasks: 201 with the task (already in `failure`, see the module docs).
pub async fn create(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ImageError> {
    let body = read_json(body).await?;
    let m = body
        .as_object()
        .ok_or_else(|| ImageError::bad_request("Body expected in request."))?;
    for key in ["type", "input"] {
        if !m.contains_key(key) {
            return Err(ImageError::bad_request(format!("Task '{key}' is required")));
        }
    }
    let task_type = m["type"].as_str().unwrap_or_default().to_string();
    if !TASK_TYPES.contains(&task_type.as_str()) {
        return Err(ImageError::bad_request(format!(
            "Provided object does not match schema 'task': '{}' is not one of {TASK_TYPES:?}",
            m["type"]
        )));
    }
    let input = &m["input"];
    if !input.is_object() {
        return Err(ImageError::bad_request(format!(
            "Provided object does not match schema 'task': {input} is not of type 'object'"
        )));
    }
    if task_type == "import" {
        check_import_from(input)?;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let spec = TaskSpec {
        id: id.clone(),
        task_type,
        owner: caller.project.clone(),
        user_id: caller.user.clone(),
        request_id: format!("req-{}", caller.request),
        input: input.to_string(),
    };
    st.engine
        .task(
            &id,
            TaskCommand::CreateFailed(spec, NO_REMOTE_DATA.into()),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let t = st
        .engine
        .world()
        .read()
        .tasks()
        .get(&id)
        .map(|r| r.state.clone())
        .ok_or_else(|| ImageError::Engine("created task not in the world".into()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v2/tasks/{id}"))],
        Json(view(&t)),
    )
        .into_response())
}

/// GET /v2/tasks: newest first (Glance's default `created_at desc`).
pub async fn list(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let ctx = caller.ctx();
    let v = st.engine.world().read();
    let mut tasks: Vec<&Task> = v
        .tasks()
        .all()
        .filter(|t| ctx.is_admin || t.spec.owner == ctx.project_id)
        .collect();
    tasks.sort_by(|a, b| (b.created_at, &b.spec.id).cmp(&(a.created_at, &a.spec.id)));
    Json(json!({
        "tasks": tasks.into_iter().map(stub).collect::<Vec<_>>(),
        "first": "/v2/tasks",
        "schema": "/v2/schemas/tasks",
    }))
}

/// The tasks of image `image_id` (imports and location imports whose input names it),
/// oldest first, as Glance's `GET /v2/images/{id}/tasks` shows them.
pub fn of_image(st: &ImageState, image_id: &str) -> Vec<Value> {
    let v = st.engine.world().read();
    let mut tasks: Vec<&Task> = v
        .tasks()
        .all()
        .filter(|t| {
            matches!(
                t.spec.task_type.as_str(),
                "api_image_import" | crate::locations::TASK_TYPE
            ) && serde_json::from_str::<Value>(&t.spec.input)
                .ok()
                .and_then(|i| i.get("image_id").cloned())
                == Some(Value::String(image_id.to_string()))
        })
        .collect();
    tasks.sort_by(|a, b| (a.created_at, &a.spec.id).cmp(&(b.created_at, &b.spec.id)));
    tasks.into_iter().map(view).collect()
}

/// GET /v2/tasks/{task_id}
pub async fn show(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<Json<Value>, ImageError> {
    let ctx = caller.ctx();
    let v = st.engine.world().read();
    v.tasks()
        .get(&id)
        .map(|r| &r.state)
        .filter(|t| ctx.is_admin || t.spec.owner == ctx.project_id)
        .map(|t| Json(view(t)))
        .ok_or_else(|| {
            ImageError::new(
                StatusCode::NOT_FOUND,
                format!("Task with the given id {id} was not found"),
            )
        })
}
