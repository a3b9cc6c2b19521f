//! Nova's image proxy (`/v2.1/images`, `/v2.1/images/{id}/metadata`): Nova's
//! `images.py` and `image_metadata.py`, which forward to Glance. Here the images are
//! the same aggregate the image API serves, read from the world and changed through
//! `Engine::image`, so both APIs agree at once.
//!
//! Invariants:
//! - Deprecated proxies: the images routes answer up to 2.35 and the metadata routes up
//!   to 2.38; later microversions get a 404, as Nova.
//! - Visibility is Glance's: the caller's images, public and community ones, and shared
//!   ones whose membership it accepted (lists), or any membership (show); anything else
//!   is a 404 `Image not found.`.
//! - Metadata changes are one `image.updated` each (custom properties only; a builtin
//!   attribute name is Glance's 403), bounded by the caller's `metadata_items` quota
//!   (403 `Image metadata limit exceeded`, nothing appended).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::image::{Image, ImageChange, ImageCommand, ImageStatus, Visibility};
use domain::quota::Resource;
use domain::ImageId;
use serde_json::{json, Value};

use crate::body::Typed;
use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::metadata::{MetaItem, MetadataBody};
use crate::ApiState;

/// Nova's `MAX_PROXY_API_SUPPORT_VERSION` (images).
const IMAGES_MAX: u16 = 35;
/// The image metadata proxy's last microversion.
const METADATA_MAX: u16 = 38;

fn gone_after(caller: &Caller, max: u16) -> Result<(), ApiError> {
    if caller.version().at_least(max + 1) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::not_found("Image not found.")
}

/// The image `id` as the caller may see it.
fn visible<'a>(
    views: &'a projections::Views,
    id: &str,
    caller: &Caller,
) -> Result<&'a Image, ApiError> {
    let ctx = caller.ctx();
    ImageId::parse(id)
        .and_then(|i| views.image(&i))
        .filter(|i| i.visible_to(&ctx))
        .ok_or_else(not_found)
}

/// Whether Glance's default list shows `i` to the caller.
fn listed(i: &Image, caller: &Caller) -> bool {
    let ctx = caller.ctx();
    if !i.visible_to(&ctx) || i.hidden {
        return false;
    }
    if ctx.is_admin || i.spec.owner == ctx.project_id {
        return true;
    }
    match i.spec.visibility {
        Visibility::Public | Visibility::Community => true,
        Visibility::Shared => {
            i.member_status(&ctx.project_id) == Some(domain::image::MemberStatus::Accepted)
        }
        Visibility::Private => false,
    }
}

/// Nova's status names for Glance's.
fn status(s: ImageStatus) -> &'static str {
    match s {
        ImageStatus::Active => "ACTIVE",
        ImageStatus::Queued | ImageStatus::Saving => "SAVING",
        ImageStatus::Deleted => "DELETED",
        // Not in Nova's map (views/images.py `_get_status`).
        ImageStatus::Deactivated | ImageStatus::Uploading | ImageStatus::Importing => "UNKNOWN",
    }
}

fn progress(s: ImageStatus) -> u32 {
    match s {
        ImageStatus::Queued => 25,
        ImageStatus::Saving => 50,
        ImageStatus::Active => 100,
        ImageStatus::Deleted
        | ImageStatus::Deactivated
        | ImageStatus::Uploading
        | ImageStatus::Importing => 0,
    }
}

fn links(base: &str, id: &ImageId, image_base: Option<&str>) -> Value {
    let mut l = crate::view::links(base, "images", &id.to_string());
    if let (Some(arr), Some(glance)) = (l.as_array_mut(), image_base) {
        arr.push(json!({
            "rel": "alternate",
            "type": "application/vnd.openstack.image",
            "href": format!("{glance}/images/{id}"),
        }));
    }
    l
}

/// The alternate (Glance) link's base: the image API's address is not known to the
/// compute API, so it is the compute host's, as Nova builds it from `[glance]`.
fn glance_base(base: &str) -> String {
    base.to_string()
}

fn basic(i: &Image, base: &str) -> Value {
    json!({
        "id": i.spec.id.to_string(),
        "name": i.spec.name,
        "links": links(base, &i.spec.id, Some(&glance_base(base))),
    })
}

fn detail_view(i: &Image, base: &str) -> Value {
    let mut v = json!({
        "id": i.spec.id.to_string(),
        "name": i.spec.name,
        "minRam": i.spec.min_ram,
        "minDisk": i.spec.min_disk,
        "metadata": i.spec.properties,
        "created": apicore::util::iso_z(i.created_at),
        "updated": apicore::util::iso_z(i.updated_at),
        "status": status(i.status),
        "progress": progress(i.status),
        // Stored data, or what the store of its locations reports.
        "OS-EXT-IMG-SIZE:size": i.data_facts().size,
        "links": links(base, &i.spec.id, Some(&glance_base(base))),
    });
    if let Some(server) = i.spec.properties.get("instance_uuid") {
        v["server"] = json!({
            "id": server,
            "links": [
                {"rel": "self", "href": format!("{base}/v2.1/servers/{server}")},
                {"rel": "bookmark", "href": format!("{base}/servers/{server}")},
            ],
        });
    }
    if let Some(a) = i.spec.properties.get("auto_disk_config") {
        let on = matches!(
            a.to_ascii_lowercase().as_str(),
            "1" | "t" | "true" | "on" | "y" | "yes"
        );
        v["OS-DCF:diskConfig"] = json!(if on { "AUTO" } else { "MANUAL" });
    }
    v
}

/// The list filters Nova forwards to Glance (`name`, `status`, `changes-since`,
/// `server`, `type`, `minRam`, `minDisk`, `property-*`) and the page.
struct ListQuery {
    name: Option<String>,
    status: Option<String>,
    changes_since: Option<domain::Timestamp>,
    properties: BTreeMap<String, String>,
    min_ram: Option<u64>,
    min_disk: Option<u64>,
    limit: Option<usize>,
    marker: Option<String>,
}

fn list_query(q: &QueryPairs) -> Result<ListQuery, ApiError> {
    let num = |key: &str| -> Result<Option<u64>, ApiError> {
        q.get(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("Invalid {key} filter [{v}]")))
            })
            .transpose()
    };
    let mut properties = BTreeMap::new();
    for (k, v) in &q.0 {
        if let Some(p) = k.strip_prefix("property-") {
            properties.insert(p.to_string(), v.clone());
        }
    }
    if let Some(s) = q.get("server") {
        let id = s.rsplit('/').next().unwrap_or(s);
        properties.insert("instance_uuid".into(), id.to_string());
    }
    if let Some(t) = q.get("type") {
        properties.insert("image_type".into(), t.to_string());
    }
    let changes_since = q
        .get("changes-since")
        .map(|v| {
            apicore::util::parse_iso(v)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid changes-since value: {v}")))
        })
        .transpose()?;
    let limit = q
        .get("limit")
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| ApiError::bad_request("limit param must be an integer"))
        })
        .transpose()?;
    Ok(ListQuery {
        name: q.get("name").map(str::to_string),
        status: q.get("status").map(str::to_ascii_lowercase),
        changes_since,
        properties,
        min_ram: num("minRam")?,
        min_disk: num("minDisk")?,
        limit,
        marker: q.get("marker").map(str::to_string),
    })
}

fn list(
    st: &ApiState,
    caller: &Caller,
    q: &QueryPairs,
    detail: bool,
) -> Result<Json<Value>, ApiError> {
    gone_after(caller, IMAGES_MAX)?;
    let lq = list_query(q)?;
    let views = st.engine.world().read();
    let mut all: Vec<&Image> = views
        .images()
        .values()
        .map(|r| &r.state)
        .filter(|i| listed(i, caller))
        .filter(|i| {
            lq.name
                .as_ref()
                .is_none_or(|n| i.spec.name.as_ref() == Some(n))
        })
        .filter(|i| lq.status.as_ref().is_none_or(|s| i.status.as_str() == s))
        .filter(|i| lq.changes_since.is_none_or(|t| i.updated_at >= t))
        .filter(|i| lq.min_ram.is_none_or(|m| i.spec.min_ram >= m))
        .filter(|i| lq.min_disk.is_none_or(|m| i.spec.min_disk >= m))
        .filter(|i| {
            lq.properties
                .iter()
                .all(|(k, v)| i.spec.properties.get(k) == Some(v))
        })
        .collect();
    // Glance's default order: newest first, then id.
    all.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.spec.id.cmp(&a.spec.id))
    });
    let start = match &lq.marker {
        None => 0,
        Some(m) => {
            all.iter()
                .position(|i| i.spec.id.to_string() == *m)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("Invalid marker. Image {m} could not be found."))
                })?
                + 1
        }
    };
    let max = lq
        .limit
        .unwrap_or(crate::servers::MAX_LIMIT)
        .min(crate::servers::MAX_LIMIT);
    let end = start.saturating_add(max).min(all.len());
    let page = &all[start.min(end)..end];
    let base = caller.base();
    let items: Vec<Value> = page
        .iter()
        .map(|i| {
            if detail {
                detail_view(i, base)
            } else {
                basic(i, base)
            }
        })
        .collect();
    let mut body = json!({"images": items});
    if let (Some(last), true) = (page.last(), max > 0 && page.len() == max) {
        let path = if detail { "images/detail" } else { "images" };
        body["images_links"] = crate::util::next_link(base, path, &q.0, &last.spec.id.to_string());
    }
    Ok(Json(body))
}

/// GET /images
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    list(&st, &caller, &q, false)
}

/// GET /images/detail
pub async fn detail(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    list(&st, &caller, &q, true)
}

/// GET /images/{id}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    gone_after(&caller, IMAGES_MAX)?;
    let views = st.engine.world().read();
    let i = visible(&views, &id, &caller)?;
    Ok(Json(json!({"image": detail_view(i, caller.base())})))
}

/// Maps the image aggregate's refusals to what Nova's proxy answers.
fn proxied(e: engine::EngineError) -> ApiError {
    match e {
        engine::EngineError::Domain(domain::DomainError::NotFound { kind: "Image", .. }) => {
            not_found()
        }
        other => other.into(),
    }
}

/// DELETE /images/{id}: 204; another project's image is a 403 `You are not allowed to
/// delete the image.` (Glance's refusal, as Nova words it).
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    gone_after(&caller, IMAGES_MAX)?;
    let iid = {
        let views = st.engine.world().read();
        let i = visible(&views, &id, &caller)?;
        if !i.writable_by(&caller.ctx()) {
            return Err(ApiError::forbidden(
                "You are not allowed to delete the image.",
            ));
        }
        i.spec.id
    };
    match st
        .engine
        .image(&iid, ImageCommand::Delete, &caller.ctx(), &caller.meta())
        .await
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(engine::EngineError::Domain(domain::DomainError::Forbidden(_))) => Err(
            ApiError::forbidden("You are not allowed to delete the image."),
        ),
        Err(e) => Err(proxied(e)),
    }
}

/// The image's custom properties (its Nova metadata).
fn properties(
    st: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    gone_after(caller, METADATA_MAX)?;
    let views = st.engine.world().read();
    Ok(visible(&views, id, caller)?.spec.properties.clone())
}

/// Applies `changes` to image `id`, after Nova's quota check of the resulting
/// properties.
async fn change(
    st: &ApiState,
    caller: &Caller,
    id: &str,
    result: &BTreeMap<String, String>,
    changes: Vec<ImageChange>,
) -> Result<(), ApiError> {
    let iid = {
        let views = st.engine.world().read();
        let iid = visible(&views, id, caller)?.spec.id;
        let limit = st
            .engine
            .quota_limits(&views, &caller.project, Some(&caller.user))
            .get(&Resource::MetadataItems)
            .copied()
            .unwrap_or(Resource::MetadataItems.nova_default());
        if limit >= 0 && result.len() as i64 > limit {
            return Err(ApiError::forbidden("Image metadata limit exceeded"));
        }
        iid
    };
    if changes.is_empty() {
        return Ok(());
    }
    st.engine
        .image(
            &iid,
            ImageCommand::Update(changes),
            &caller.ctx(),
            &caller.meta(),
        )
        .await
        .map_err(proxied)?;
    Ok(())
}

/// GET /images/{id}/metadata
pub async fn metadata_index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"metadata": properties(&st, &caller, &id)?})))
}

/// GET /images/{id}/metadata/{key}
pub async fn metadata_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let p = properties(&st, &caller, &id)?;
    let v = p
        .get(&key)
        .ok_or_else(|| ApiError::not_found("The resource could not be found."))?;
    Ok(Json(json!({"meta": {key: v}})))
}

/// POST /images/{id}/metadata: merges; answers every property.
pub async fn metadata_create(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(MetadataBody(items)): Typed<MetadataBody>,
) -> Result<Json<Value>, ApiError> {
    let mut result = properties(&st, &caller, &id)?;
    result.extend(items.clone());
    let changes = items
        .into_iter()
        .map(|(k, v)| ImageChange::AddProperty(k, v))
        .collect();
    change(&st, &caller, &id, &result, changes).await?;
    Ok(Json(json!({"metadata": properties(&st, &caller, &id)?})))
}

/// PUT /images/{id}/metadata: replaces every property.
pub async fn metadata_update_all(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(MetadataBody(items)): Typed<MetadataBody>,
) -> Result<Json<Value>, ApiError> {
    let now = properties(&st, &caller, &id)?;
    let mut changes: Vec<ImageChange> = now
        .keys()
        .filter(|k| !items.contains_key(*k))
        .map(|k| ImageChange::RemoveProperty(k.clone()))
        .collect();
    changes.extend(
        items
            .iter()
            .filter(|(k, v)| now.get(*k) != Some(*v))
            .map(|(k, v)| ImageChange::AddProperty(k.clone(), v.clone())),
    );
    change(&st, &caller, &id, &items, changes).await?;
    Ok(Json(json!({"metadata": items})))
}

/// PUT /images/{id}/metadata/{key}: sets one property.
pub async fn metadata_update(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
    Typed(MetaItem(k, v)): Typed<MetaItem>,
) -> Result<Json<Value>, ApiError> {
    if k != key {
        return Err(ApiError::bad_request("Request body and URI mismatch"));
    }
    let mut result = properties(&st, &caller, &id)?;
    result.insert(k.clone(), v.clone());
    change(
        &st,
        &caller,
        &id,
        &result,
        vec![ImageChange::AddProperty(k.clone(), v.clone())],
    )
    .await?;
    Ok(Json(json!({"meta": {k: v}})))
}

/// DELETE /images/{id}/metadata/{key}: 404 `Invalid metadata key` for a key it lacks.
pub async fn metadata_delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut result = properties(&st, &caller, &id)?;
    if result.remove(&key).is_none() {
        return Err(ApiError::not_found("Invalid metadata key"));
    }
    change(
        &st,
        &caller,
        &id,
        &result,
        vec![ImageChange::RemoveProperty(key)],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
