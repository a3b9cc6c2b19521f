//! Handlers of `/v2.1/servers/{id}/metadata` (Nova's
//! `nova/api/openstack/compute/server_metadata.py`).
//!
//! Invariants:
//! - Reads come from the instance's folded spec (the metadata given at create, replaced
//!   by a rebuild, changed here); every change is an `instance.metadata_updated` on the
//!   instance's subject, decided by `domain::instance` under the metadata rows of the
//!   rule table (lock, vm_state, `launched_at`: 409 as Nova), so history, replay and
//!   notifications (`instance.update`) see it.
//! - The `metadata_items` quota (the caller's, as Nova's `limit_check` on the request
//!   context) bounds the resulting metadata: 403 `Maximum number of metadata items
//!   exceeds N`, nothing appended.
//! - A body is validated before the server is touched (Nova's schema first); the key
//!   of a PUT must be the one item of its body (400 `Request body and URI mismatch`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::instance::InstanceCommand;
use domain::quota::Resource;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, Decode, Typed};
use crate::context::Caller;
use crate::error::ApiError;
use crate::microversion::Version;
use crate::parse;
use crate::servers::{require_cell_up, visible};
use crate::ApiState;

/// Nova's 404 for a key the server's metadata lacks.
const NO_ITEM: &str = "Metadata item was not found";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllFields {
    metadata: Value,
}

/// `{"metadata": {...}}` (POST and PUT /servers/{id}/metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataBody(pub BTreeMap<String, String>);

impl Decode for MetadataBody {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        let f = body::from_value::<AllFields>("", body)?;
        parse::metadata_items("metadata", &f.metadata).map(MetadataBody)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemFields {
    meta: Value,
}

/// `{"meta": {key: value}}` (PUT /servers/{id}/metadata/{key}): exactly one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaItem(pub String, pub String);

impl Decode for MetaItem {
    fn decode(body: &Value, _: Version) -> Result<Self, ApiError> {
        let f = body::from_value::<ItemFields>("", body)?;
        let items = parse::metadata_items("meta", &f.meta)?;
        let v = &f.meta;
        match items.len() {
            0 => Err(body::invalid(
                "meta",
                v,
                &format!("{v} does not have enough properties"),
            )),
            1 => {
                let (k, val) = items.into_iter().next().expect("one item");
                Ok(MetaItem(k, val))
            }
            _ => Err(body::invalid(
                "meta",
                v,
                &format!("{v} has too many properties"),
            )),
        }
    }
}

/// The server's metadata now.
fn current(st: &ApiState, caller: &Caller, id: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let views = st.engine.world().read();
    Ok(visible(&views, id, caller)?.spec.metadata.clone())
}

/// GET /servers/{id}/metadata
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"metadata": current(&st, &caller, &id)?})))
}

/// GET /servers/{id}/metadata/{key}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let m = current(&st, &caller, &id)?;
    let v = m.get(&key).ok_or_else(|| ApiError::not_found(NO_ITEM))?;
    Ok(Json(json!({"meta": {key: v}})))
}

/// Runs a metadata command on server `id` (visible, its cell up).
async fn change(
    st: &ApiState,
    caller: &Caller,
    id: &str,
    make: impl FnOnce(i64) -> InstanceCommand,
) -> Result<(), ApiError> {
    let (iid, limit) = {
        let views = st.engine.world().read();
        let iid = visible(&views, id, caller)?.id();
        require_cell_up(st, &views, &iid)?;
        let limit = st
            .engine
            .quota_limits(&views, &caller.project, Some(&caller.user))
            .get(&Resource::MetadataItems)
            .copied()
            .unwrap_or(Resource::MetadataItems.nova_default());
        (iid, limit)
    };
    st.engine
        .instance(iid, make(limit), &caller.ctx(), &caller.meta())
        .await?;
    Ok(())
}

/// POST /servers/{id}/metadata: merges the items; answers the whole metadata (200).
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(MetadataBody(items)): Typed<MetadataBody>,
) -> Result<Json<Value>, ApiError> {
    change(&st, &caller, &id, |limit| InstanceCommand::SetMetadata {
        items,
        replace: false,
        limit,
    })
    .await?;
    Ok(Json(json!({"metadata": current(&st, &caller, &id)?})))
}

/// PUT /servers/{id}/metadata: replaces the whole metadata.
pub async fn update_all(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(MetadataBody(items)): Typed<MetadataBody>,
) -> Result<Json<Value>, ApiError> {
    change(&st, &caller, &id, |limit| InstanceCommand::SetMetadata {
        items: items.clone(),
        replace: true,
        limit,
    })
    .await?;
    Ok(Json(json!({"metadata": items})))
}

/// PUT /servers/{id}/metadata/{key}: sets one item; answers it.
pub async fn update(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
    Typed(MetaItem(k, v)): Typed<MetaItem>,
) -> Result<Json<Value>, ApiError> {
    if k != key {
        return Err(ApiError::bad_request("Request body and URI mismatch"));
    }
    change(&st, &caller, &id, |limit| InstanceCommand::SetMetadata {
        items: BTreeMap::from([(k.clone(), v.clone())]),
        replace: false,
        limit,
    })
    .await?;
    Ok(Json(json!({"meta": {k: v}})))
}

/// DELETE /servers/{id}/metadata/{key}: 404 for a key it lacks (before the state
/// checks, as Nova), else 204.
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !current(&st, &caller, &id)?.contains_key(&key) {
        return Err(ApiError::not_found(NO_ITEM));
    }
    change(&st, &caller, &id, |_| InstanceCommand::DeleteMetadata {
        key,
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_like_novas_schema() {
        let v = Version::MIN;
        assert_eq!(
            MetadataBody::decode(&json!({"metadata": {"a": "b"}}), v).unwrap(),
            MetadataBody(BTreeMap::from([("a".into(), "b".into())]))
        );
        let e = MetadataBody::decode(&json!({}), v).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid input for request body. Value: {}. 'metadata' is a required property"
        );
        let e = MetadataBody::decode(&json!({"metadata": {"a/b": "c"}}), v).unwrap_err();
        assert!(
            e.message
                .contains("'a/b' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{1,255}$'"),
            "{}",
            e.message
        );
        let e = MetadataBody::decode(&json!({"metadata": {}, "x": 1}), v).unwrap_err();
        assert_eq!(
            e.message,
            "Additional properties are not allowed ('x' was unexpected)"
        );
        assert_eq!(
            MetaItem::decode(&json!({"meta": {"k": "v"}}), v).unwrap(),
            MetaItem("k".into(), "v".into())
        );
        let e = MetaItem::decode(&json!({"meta": {}}), v).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid input for field/attribute meta. Value: {}. {} does not have enough properties"
        );
        let e = MetaItem::decode(&json!({"meta": {"a": "1", "b": "2"}}), v).unwrap_err();
        assert!(
            e.message.ends_with("has too many properties"),
            "{}",
            e.message
        );
        let e = MetaItem::decode(&json!({"meta": {"a": 1}}), v).unwrap_err();
        assert!(
            e.message.contains("is not of type 'string'"),
            "{}",
            e.message
        );
    }
}
