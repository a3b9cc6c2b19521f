//! Image members (`/v2/images/{id}/members`): sharing a `shared` image with other
//! projects, which then accept or reject it, with Glance's shapes and messages
//! (glance/api/v2/image_members.py).
//!
//! Invariants:
//! - Memberships are state of the image aggregate (`image.member_added`,
//!   `image.member_updated`, `image.member_removed`), decided by `domain::image`: the
//!   owner's project (or an admin) adds and removes members, only the member project
//!   itself (or an admin) changes its status.
//! - Only `shared` images have members; a member sees its own membership only, the
//!   owner and admins see all.
//! - Body errors are refused before any command, so they append nothing.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use domain::image::{Image, ImageCommand, MemberStatus, Visibility};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ImageError;
use crate::extract::{Path, Path2};
use crate::{read_json, view, visible, ImageState};

/// Whether `caller` sees the membership of `member` (Glance's member repository
/// filter: the owner's project and admins see every member, a member itself only).
fn sees(img: &Image, caller: &Caller, member: &str) -> bool {
    img.writable_by(&caller.ctx()) || member == caller.project
}

/// GET /v2/images/{id}/members
pub async fn list(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<Json<Value>, ImageError> {
    let img = visible(&st, &id, &caller)?;
    if img.spec.visibility != Visibility::Shared {
        return Err(ImageError::forbidden(format!(
            "Not allowed to list members for image {}: Only shared images have members.",
            img.spec.id
        )));
    }
    let members: Vec<Value> = img
        .members
        .iter()
        .filter(|(m, _)| sees(&img, &caller, m))
        .map(|(m, ms)| view::member(&img.spec.id, m, ms))
        .collect();
    Ok(Json(
        json!({"members": members, "schema": "/v2/schemas/members"}),
    ))
}

/// The member of `body` (`{"member": "<project>"}`), with Glance's refusals.
fn member_of(body: &Value) -> Result<String, ImageError> {
    let form =
        || ImageError::bad_request("Expected a member in the form: {\"member\": \"image_id\"}");
    let obj = body.as_object().ok_or_else(form)?;
    match obj.get("member") {
        None => Err(ImageError::bad_request("Member to be added not specified")),
        Some(Value::String(s)) if s.is_empty() => {
            Err(ImageError::bad_request("Member can't be empty"))
        }
        Some(Value::Null) => Err(ImageError::bad_request("Member can't be empty")),
        Some(Value::String(s)) if s.chars().count() > 255 || s.chars().any(char::is_control) => {
            Err(ImageError::bad_request(format!("Invalid member id {s:?}.")))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(form()),
    }
}

/// The status of `body` (`{"status": "accepted"}`), with Glance's refusals.
fn status_of(body: &Value) -> Result<MemberStatus, ImageError> {
    let obj = body.as_object().ok_or_else(|| {
        ImageError::bad_request("Expected a status in the form: {\"status\": \"status\"}")
    })?;
    let s = obj
        .get("status")
        .ok_or_else(|| ImageError::bad_request("Status not specified"))?;
    s.as_str().and_then(MemberStatus::parse).ok_or_else(|| {
        ImageError::bad_request(
            "Incorrect request: Status must be \"pending\", \"accepted\" or \"rejected\".",
        )
    })
}

/// The membership of `member` after a command, as the world shows it.
fn shown(st: &ImageState, img: &Image, member: &str) -> Result<Json<Value>, ImageError> {
    let world = st.engine.world();
    let v = world.read();
    let ms = v
        .image(&img.spec.id)
        .and_then(|i| i.members.get(member).copied())
        .ok_or_else(|| ImageError::image_not_found(&img.spec.id.to_string()))?;
    Ok(Json(view::member(&img.spec.id, member, &ms)))
}

/// POST /v2/images/{id}/members: 200 with the new (`pending`) membership.
pub async fn create(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    body: Body,
) -> Result<Json<Value>, ImageError> {
    let img = visible(&st, &id, &caller)?;
    let member = member_of(&read_json(body).await?)?;
    st.engine
        .image(
            &img.spec.id,
            ImageCommand::AddMember(member.clone()),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    tracing::info!(image = %img.spec.id, member = %member, "image shared");
    shown(&st, &img, &member)
}

/// GET /v2/images/{id}/members/{member}: refusals are all 404, as in Glance.
pub async fn show(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(id, member): Path2,
) -> Result<Json<Value>, ImageError> {
    let img = visible(&st, &id, &caller)?;
    if img.spec.visibility != Visibility::Shared {
        return Err(ImageError::new(
            StatusCode::NOT_FOUND,
            "Only shared images have members.",
        ));
    }
    img.members
        .get(&member)
        .filter(|_| sees(&img, &caller, &member))
        .map(|ms| Json(view::member(&img.spec.id, &member, ms)))
        .ok_or_else(|| {
            ImageError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "{member} not found in the member list of the image {}.",
                    img.spec.id
                ),
            )
        })
}

/// PUT /v2/images/{id}/members/{member}: the member accepts, rejects or resets.
pub async fn update(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(id, member): Path2,
    body: Body,
) -> Result<Json<Value>, ImageError> {
    let img = visible(&st, &id, &caller)?;
    let status = status_of(&read_json(body).await?)?;
    st.engine
        .image(
            &img.spec.id,
            ImageCommand::SetMemberStatus(member.clone(), status),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    shown(&st, &img, &member)
}

/// DELETE /v2/images/{id}/members/{member}: 204.
pub async fn delete(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(id, member): Path2,
) -> Result<StatusCode, ImageError> {
    let img = visible(&st, &id, &caller)?;
    st.engine
        .image(
            &img.spec.id,
            ImageCommand::RemoveMember(member),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
