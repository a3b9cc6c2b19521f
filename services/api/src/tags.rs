//! Handlers of `/v2.1/servers/{id}/tags` (2.26, Nova's
//! `nova/api/openstack/compute/server_tags.py`).
//!
//! Invariants:
//! - Below 2.26 every route here is a 404, as an unknown resource.
//! - Tags are read from the instance's read model row (`ServerExtras::tags`, folded
//!   from `instance.tags_set`); every change goes through `Engine::instance_tags`,
//!   decided by `domain::instance::tags` (vm_state 409 first, then validity, count and
//!   existence, in Nova's order), so a refusal appends nothing.
//! - Responses list tags sorted.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::instance::tags::{tag_error, TagCommand, MAX_TAGS};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, invalid, Decode, Typed};
use crate::context::Caller;
use crate::error::ApiError;
use crate::microversion::Version;
use crate::servers::{require_cell_up, visible};
use crate::ApiState;

/// Refuses requests below 2.26 (Nova routes these from 2.26 only).
fn since_2_26(caller: &Caller) -> Result<(), ApiError> {
    if caller.version().at_least(26) {
        Ok(())
    } else {
        Err(ApiError::not_found("The resource could not be found."))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceFields {
    tags: Vec<Value>,
}

/// `{"tags": [...]}` (PUT /servers/{id}/tags): at most 50 valid tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceBody(pub BTreeSet<String>);

impl Decode for ReplaceBody {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        let f = body::from_value::<ReplaceFields>("", body)?;
        tag_list(&f.tags).map(ReplaceBody)
    }
}

/// A list of tags as Nova's schema checks it (PUT /servers/{id}/tags, and `tags` on
/// create from 2.52): each a valid tag, at most 50.
pub fn tag_list(items: &[Value]) -> Result<BTreeSet<String>, ApiError> {
    {
        let list = Value::Array(items.to_vec());
        let mut tags = BTreeSet::new();
        for (n, t) in items.iter().enumerate() {
            // jsonschema names an item by its index (Nova reports the last path part).
            let field = n.to_string();
            let Value::String(s) = t else {
                return Err(invalid(
                    &field,
                    t,
                    &format!("{t} is not of type 'string' (got {})", body::type_name(t)),
                ));
            };
            if let Some(why) = tag_error(s) {
                return Err(invalid(&field, t, &why));
            }
            tags.insert(s.clone());
        }
        if items.len() > MAX_TAGS {
            return Err(invalid("tags", &list, &format!("{list} is too long")));
        }
        Ok(tags)
    }
}

/// The body of PUT /servers/{id}/tags/{tag}: none (Nova's schema: `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoBody;

impl Decode for NoBody {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        match body {
            Value::Null => Ok(NoBody),
            v => Err(ApiError::bad_request(format!(
                "Invalid input for request body. Value: {v}. {v} is not of type 'null'"
            ))),
        }
    }
}

/// The tags of server `id` now.
fn current(st: &ApiState, caller: &Caller, id: &str) -> Result<BTreeSet<String>, ApiError> {
    let views = st.engine.world().read();
    let iid = visible(&views, id, caller)?.id();
    Ok(views
        .instances()
        .get(&iid)
        .map(|r| r.extras.tags.clone())
        .unwrap_or_default())
}

/// Runs a tag change on server `id`; whether it appended anything.
async fn change(
    st: &ApiState,
    caller: &Caller,
    id: &str,
    cmd: TagCommand,
) -> Result<bool, ApiError> {
    let iid = {
        let views = st.engine.world().read();
        let iid = visible(&views, id, caller)?.id();
        require_cell_up(st, &views, &iid)?;
        iid
    };
    let out = st
        .engine
        .instance_tags(iid, cmd, &caller.ctx(), &caller.meta())
        .await?;
    Ok(!out.events.is_empty())
}

/// GET /servers/{id}/tags
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    since_2_26(&caller)?;
    Ok(Json(json!({"tags": current(&st, &caller, &id)?})))
}

/// GET /servers/{id}/tags/{tag}: 204 when the server has it.
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    since_2_26(&caller)?;
    if current(&st, &caller, &id)?.contains(&tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "Server {id} has no tag '{tag}'"
        )))
    }
}

/// PUT /servers/{id}/tags: replaces every tag; answers them.
pub async fn update_all(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(ReplaceBody(tags)): Typed<ReplaceBody>,
) -> Result<Json<Value>, ApiError> {
    since_2_26(&caller)?;
    change(&st, &caller, &id, TagCommand::Replace(tags.clone())).await?;
    Ok(Json(json!({"tags": tags})))
}

/// PUT /servers/{id}/tags/{tag}: 201 with its location, 204 when it was there.
pub async fn update(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
    Typed(NoBody): Typed<NoBody>,
) -> Result<Response, ApiError> {
    since_2_26(&caller)?;
    if !change(&st, &caller, &id, TagCommand::Add(tag.clone())).await? {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let location = format!("{}/v2.1/servers/{id}/tags/{tag}", caller.base());
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

/// DELETE /servers/{id}/tags/{tag}
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    since_2_26(&caller)?;
    change(&st, &caller, &id, TagCommand::Remove(tag)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /servers/{id}/tags
pub async fn delete_all(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    since_2_26(&caller)?;
    change(&st, &caller, &id, TagCommand::Clear).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_bodies_follow_the_schema() {
        let v = Version::MIN;
        assert_eq!(
            ReplaceBody::decode(&json!({"tags": ["b", "a", "a"]}), v).unwrap(),
            ReplaceBody(BTreeSet::from(["a".to_string(), "b".to_string()]))
        );
        let e = ReplaceBody::decode(&json!({"tags": ["ok", "a,b"]}), v).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid input for field/attribute 1. Value: \"a,b\". 'a,b' does not match '^[^,/]*$'"
        );
        let e = ReplaceBody::decode(&json!({"tags": [""]}), v).unwrap_err();
        assert!(e.message.ends_with("'' is too short"), "{}", e.message);
        let many: Vec<String> = (0..51).map(|n| format!("t{n}")).collect();
        let e = ReplaceBody::decode(&json!({ "tags": many }), v).unwrap_err();
        assert!(e.message.ends_with("is too long"), "{}", e.message);
        let e = ReplaceBody::decode(&json!({}), v).unwrap_err();
        assert!(e.message.contains("'tags' is a required property"));
        assert!(NoBody::decode(&json!({"a": 1}), v).is_err());
        assert!(NoBody::decode(&Value::Null, v).is_ok());
    }
}
