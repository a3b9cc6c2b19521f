//! Glance's image locations: the `locations` and `direct_url` of an image
//! (`show_multiple_locations`, `show_image_direct_url`), the JSON-patch operations on
//! `/locations`, Glance's read-only `http` store, and the Images API 2.17 location API
//! (`POST`/`GET /v2/images/{id}/locations`).
//!
//! Invariants:
//! - An image's locations are its stores' files (`file://...`, one per store holding
//!   its data, first) then the locations clients set ([`domain::image::Image::locations`]).
//!   Only `http(s)` URLs can be set: they are Glance's http store, read-only (nothing
//!   is ever written or deleted there); the store's size of the data comes from an HTTP
//!   `HEAD` (Glance's `get_size`), done before the command that records the location.
//! - Every change is an image event (`image.location_added`, `.location_removed`,
//!   `.locations_replaced`, `.location_import_started`, `.location_import_ended`);
//!   refusals come before any append.
//! - A location import (2.17) is a `location_import` task holding the image's import
//!   lock; with `do_secure_hash` its data is hashed in the background (at most
//!   `http_retries` + 1 attempts), and the hashing stops as soon as the image is
//!   deleted or no longer locked by the task (Glance's cancellation).
//! - With several stores the http store is listed by `/v2/info/stores` as read-only
//!   under its id (`--image-http-store`) and names the store of its locations
//!   (`metadata.store`, the image's `stores`), as Glance's `enabled_backends` does.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::image::{
    digest_size, Image, ImageCommand, ImageLocation, ImageStatus, LocationChange, NewLocation,
    PatchStep, ValidationData, HASHING_ALGORITHM,
};
use domain::task::{TaskCommand, TaskSpec};
use domain::ImageId;
use futures::StreamExt;
use md5::Digest;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::ImageError;
use crate::extract::Path;
use crate::parse::LocationOp;
use crate::{read_json, visible, ImageState};

/// The location options (Glance's `show_multiple_locations`, `show_image_direct_url`,
/// `do_secure_hash`, `http_retries`, and the id of its http store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationConfig {
    /// Show `locations` and allow patching them (Glance's default: false).
    pub show_multiple_locations: bool,
    /// Show `direct_url`, the first location's URL (Glance's default: false).
    pub show_image_direct_url: bool,
    /// Hash the data of a location added by the 2.17 API (Glance's default: true).
    pub do_secure_hash: bool,
    /// Retries of a failed hashing download (Glance's default: 3).
    pub http_retries: u32,
    /// The id of the read-only http store (named when there are several stores);
    /// empty: no http store (no http locations; the 2.17 API is the service's).
    pub http_store: String,
}

impl LocationConfig {
    /// Whether the http store serves `url`: an http(s) URL, the store enabled.
    pub fn serves(&self, url: &str) -> bool {
        !self.http_store.is_empty() && http_url(url)
    }
}

impl Default for LocationConfig {
    fn default() -> Self {
        LocationConfig {
            show_multiple_locations: false,
            show_image_direct_url: false,
            do_secure_hash: true,
            http_retries: 3,
            http_store: "http".into(),
        }
    }
}

/// The task type of a location import.
pub const TASK_TYPE: &str = "location_import";

/// Whether the http store serves `url` (Glance's http store schemes).
fn http_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
}

/// The size of the data at `url` as the http store reports it (an HTTP `HEAD`'s
/// `Content-Length`); None when the store does not serve the URL or has nothing there.
pub async fn probe(cfg: &LocationConfig, url: &str) -> Option<u64> {
    if !cfg.serves(url) {
        return None;
    }
    let resp = client()
        .ok()?
        .head(url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The locations of `img` as Glance shows them: `{url, metadata}`, the stores' first.
pub fn shown(st: &ImageState, img: &Image) -> Vec<Value> {
    let multi = st.stores.len() > 1;
    let mut out: Vec<Value> = st
        .stores_of(img)
        .iter()
        .map(|s| {
            let path = st.store.path_in(st.store_dir(s), &img.spec.id);
            let meta = if multi {
                json!({"store": s})
            } else {
                json!({})
            };
            json!({"url": format!("file://{}", path.display()), "metadata": meta})
        })
        .collect();
    out.extend(img.locations.iter().map(|l| {
        json!({
            "url": l.url,
            "metadata": serde_json::from_str::<Value>(&l.metadata).unwrap_or_else(|_| json!({})),
        })
    }));
    out
}

/// The stores an image's data is in, as its `stores` shows them: the data's stores,
/// and the http store for its locations when there are several stores.
pub fn stores_shown(st: &ImageState, img: &Image) -> Vec<String> {
    let mut v = st.stores_of(img);
    if st.stores.len() > 1 && !img.locations.is_empty() && !st.locations.http_store.is_empty() {
        v.push(st.locations.http_store.clone());
    }
    v
}

/// Adds `locations` and `direct_url` to an image's view as the options ask. Only
/// admins and the image's project read them (Glance's `get_image_location`); others see
/// `locations: []` and no `direct_url`.
pub fn decorate(st: &ImageState, img: &Image, caller: &Caller, view: &mut Value) {
    let cfg = &st.locations;
    if !(cfg.show_multiple_locations || cfg.show_image_direct_url) {
        return;
    }
    let readable = caller.is_admin || caller.project == img.spec.owner;
    let locs = if readable { shown(st, img) } else { vec![] };
    if cfg.show_image_direct_url {
        if let Some(url) = locs.first().and_then(|l| l.get("url")).cloned() {
            view["direct_url"] = url;
        }
    }
    if cfg.show_multiple_locations {
        view["locations"] = Value::Array(locs);
    }
}

/// A location's metadata as stored: the client's object, with the http store's id
/// when there are several stores (Glance's `get_updated_store_location`).
fn metadata_text(st: &ImageState, url: &str, meta: &Map<String, Value>) -> String {
    let mut meta = meta.clone();
    if st.stores.len() > 1 && st.locations.serves(url) {
        meta.insert("store".into(), json!(st.locations.http_store));
    }
    Value::Object(meta).to_string()
}

/// One location value of a patch (checked by `parse`) with what the store reports.
async fn new_location(st: &ImageState, v: &Value) -> NewLocation {
    let url = v["url"].as_str().unwrap_or_default().to_string();
    let meta = v["metadata"].as_object().cloned().unwrap_or_default();
    let vd = &v["validation_data"];
    let s = |k: &str| vd.get(k).and_then(Value::as_str).map(str::to_string);
    NewLocation {
        size: probe(&st.locations, &url).await,
        location: ImageLocation {
            metadata: metadata_text(st, &url, &meta),
            url,
        },
        validation: ValidationData {
            checksum: s("checksum"),
            os_hash_algo: s("os_hash_algo"),
            os_hash_value: s("os_hash_value"),
        },
    }
}

/// The location operations of a patch into domain steps: the shown-locations checks
/// (`show_multiple_locations`, an empty replace) in Glance's order, then what the
/// store reports of each new URL.
pub async fn steps(
    st: &ImageState,
    img: &Image,
    ops: Vec<crate::parse::PatchOp>,
) -> Result<Vec<PatchStep>, ImageError> {
    let hidden = |what: &str| {
        ImageError::forbidden(format!(
            "It's not allowed to {what} locations if locations are invisible."
        ))
    };
    let show = st.locations.show_multiple_locations;
    let store_urls: Vec<String> = shown(st, img)
        .iter()
        .take(img.store_locations())
        .filter_map(|l| l["url"].as_str().map(str::to_string))
        .collect();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(match op {
            crate::parse::PatchOp::Change(c) => PatchStep::Change(c),
            crate::parse::PatchOp::Location(LocationOp::Add { pos, value }) => {
                if !show {
                    return Err(hidden("add"));
                }
                PatchStep::Location(LocationChange::Add {
                    pos,
                    new: new_location(st, &value).await,
                })
            }
            crate::parse::PatchOp::Location(LocationOp::Remove { pos }) => {
                if !show {
                    return Err(hidden("remove"));
                }
                PatchStep::Location(LocationChange::Remove { pos })
            }
            crate::parse::PatchOp::Location(LocationOp::Replace { value }) => {
                let list = value.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    return Err(ImageError::forbidden("Cannot set locations to empty list."));
                }
                if !show {
                    return Err(hidden("update"));
                }
                // The stores' own locations stay as they are; the rest is the client's.
                let mut missing = store_urls.clone();
                let mut locations = Vec::new();
                for v in &list {
                    let url = v["url"].as_str().unwrap_or_default();
                    if let Some(i) = missing.iter().position(|u| u == url) {
                        missing.remove(i);
                        continue;
                    }
                    locations.push(new_location(st, v).await);
                }
                PatchStep::Location(LocationChange::Replace {
                    locations,
                    stores_intact: missing.is_empty(),
                })
            }
        });
    }
    Ok(out)
}

/// Glance's schema of a 2.17 location request (`url`, `validation_data`): 400s.
fn parse_add(body: &Value) -> Result<(String, ValidationData), ImageError> {
    let bad = |m: String| {
        Err(ImageError::bad_request(format!(
            "Provided object does not match schema 'location': {m}"
        )))
    };
    let Some(obj) = body.as_object() else {
        return bad(format!("{body} is not of type 'object'"));
    };
    let url = match obj.get("url") {
        None => return bad("'url' is a required property".into()),
        Some(Value::String(u)) => u.clone(),
        Some(v) => return bad(format!("{v} is not of type 'string'")),
    };
    let mut vd = ValidationData::default();
    match obj.get("validation_data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let Some(s) = v.as_str() else {
                    return bad(format!("{v} is not of type 'string'"));
                };
                match k.as_str() {
                    "os_hash_algo" => {
                        if !["sha1", "sha256", "sha512", "md5"].contains(&s) {
                            return bad(format!(
                                "'{s}' is not one of ['sha1', 'sha256', 'sha512', 'md5']"
                            ));
                        }
                        vd.os_hash_algo = Some(s.into());
                    }
                    "os_hash_value" => {
                        if s.chars().count() > 128 {
                            return bad(format!("'{s}' is too long"));
                        }
                        vd.os_hash_value = Some(s.into());
                    }
                    other => {
                        return bad(format!(
                            "Additional properties are not allowed ('{other}' was unexpected)"
                        ))
                    }
                }
            }
            if vd.os_hash_value.is_some() != vd.os_hash_algo.is_some() {
                let (has, needs) = if vd.os_hash_value.is_some() {
                    ("os_hash_value", "os_hash_algo")
                } else {
                    ("os_hash_algo", "os_hash_value")
                };
                return bad(format!("'{needs}' is a dependency of '{has}'"));
            }
        }
        Some(v) => return bad(format!("{v} is not of type 'object'")),
    }
    Ok((url, vd))
}

/// Glance's `_validate_hashing_data`: a hash value is hex of the algorithm's size.
fn check_hash(vd: &ValidationData) -> Result<(), ImageError> {
    let Some(value) = &vd.os_hash_value else {
        return Ok(());
    };
    let bytes = domain::image::hex_bytes(value).ok_or_else(|| {
        ImageError::bad_request(format!(
            "os_hash_value ({value}) is not a valid hexadecimal value"
        ))
    })?;
    let algo = vd.os_hash_algo.as_deref().unwrap_or(HASHING_ALGORITHM);
    let want = digest_size(algo).unwrap_or(0);
    if bytes != want {
        return Err(ImageError::bad_request(format!(
            "os_hash_value: ({value}) is not the correct size for ({algo}) (should be ({want}) bytes)"
        )));
    }
    Ok(())
}

/// POST /v2/images/{id}/locations (2.17): 202; the location is added by a
/// `location_import` task, its data hashed in the background with `do_secure_hash`.
pub async fn add(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    body: Body,
) -> Result<Response, ImageError> {
    let img = visible(&st, &id, &caller)?;
    let iid = img.spec.id;
    let body = read_json(body).await?;
    let (url, vd) = parse_add(&body)?;
    if img.status != ImageStatus::Queued {
        return Err(ImageError::new(
            StatusCode::CONFLICT,
            format!(
                "It's not allowed to add locations if image status is {}.",
                img.status.as_str()
            ),
        ));
    }
    // `add_image_location`: the service role, or a member of the image's project.
    if !(caller.service || img.spec.owner == caller.project) {
        return Err(crate::policy::refused("add_image_location"));
    }
    if !caller.service && !st.locations.serves(&url) {
        return Err(ImageError::forbidden(
            "http store must be enabled to use location API by normal user.",
        ));
    }
    check_hash(&vd)?;
    if img.import_task().is_some() {
        return Err(ImageError::new(
            StatusCode::CONFLICT,
            format!(
                "New operation on image '{iid}' is not permitted as prior operation is still in progress"
            ),
        ));
    }
    let task = uuid::Uuid::new_v4().to_string();
    let input = json!({
        "image_id": iid.to_string(),
        "loc_url": url,
        "validation_data": body.get("validation_data").cloned().unwrap_or(json!({})),
    });
    let spec = TaskSpec {
        id: task.clone(),
        task_type: TASK_TYPE.into(),
        owner: caller.project.clone(),
        user_id: caller.user.clone(),
        request_id: format!("req-{}", caller.request),
        input: input.to_string(),
    };
    let meta = caller.meta();
    let ctx = caller.ctx();
    let Some(size) = probe(&st.locations, &url).await.filter(|n| *n > 0) else {
        // Glance's `_UpdateLocationTask` fails: the image stays as it was.
        st.engine
            .task(
                &task,
                TaskCommand::CreateFailed(spec, "Error: Invalid location".into()),
                &ctx,
                &meta,
            )
            .await?;
        tracing::info!(image = %iid, url = %url, "location import: invalid location");
        return Ok(StatusCode::ACCEPTED.into_response());
    };
    let location = ImageLocation {
        metadata: metadata_text(&st, &url, &Map::new()),
        url: url.clone(),
    };
    let hashing = st.locations.do_secure_hash;
    st.engine
        .image(
            &iid,
            ImageCommand::StartLocationImport {
                task: task.clone(),
                location,
                size: Some(size),
                validation: vd.clone(),
                hashing,
            },
            &ctx,
            &meta,
        )
        .await?;
    if let Err(e) = st
        .engine
        .task(&task, TaskCommand::Start(spec), &ctx, &meta)
        .await
    {
        end(&st, &caller, &iid, &task, None, false, "could not start").await;
        return Err(e.into());
    }
    tracing::info!(image = %iid, task = %task, hashing, "location import started");
    if !hashing {
        end(&st, &caller, &iid, &task, None, true, "").await;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let mut shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = run(st, caller, iid, task, url, vd) => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                tracing::warn!(image = %iid, "stopping mid-hashing: the next start fails it");
            }
        }
    });
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Ends a location import: the image's side (lock, hashes, status), then the task.
async fn end(
    st: &ImageState,
    caller: &Caller,
    iid: &ImageId,
    task: &str,
    hashes: Option<ValidationData>,
    ok: bool,
    message: &str,
) {
    let (ctx, meta) = (caller.ctx(), caller.meta());
    let cmd = ImageCommand::EndLocationImport {
        task: task.to_string(),
        hashes,
        ok,
    };
    if let Err(e) = st.engine.image(iid, cmd, &ctx, &meta).await {
        tracing::warn!(image = %iid, error = %e, "could not end the location import");
    }
    let ended = if ok {
        TaskCommand::Succeed(json!({"image_id": iid.to_string()}).to_string())
    } else {
        TaskCommand::Fail(format!("Error: {message}"))
    };
    if let Err(e) = st.engine.task(task, ended, &ctx, &meta).await {
        tracing::warn!(task = %task, error = %e, "could not end the location import task");
    }
}

/// Why hashing stopped.
enum HashError {
    /// The image was deleted or its lock taken away: stop, nothing to record.
    Canceled,
    /// The download failed (retried).
    Io(String),
}

/// Whether task `task` still holds the lock of image `iid`.
fn still_locked(st: &ImageState, iid: &ImageId, task: &str) -> bool {
    st.engine
        .world()
        .read()
        .image(iid)
        .is_some_and(|i| i.status != ImageStatus::Deleted && i.import_task() == Some(task))
}

/// One hashing pass over the data at `url`: (md5, hash with `algo`) hex.
async fn hash_once(
    st: &ImageState,
    iid: &ImageId,
    task: &str,
    url: &str,
    algo: &str,
) -> Result<(String, String), HashError> {
    let io = |e: reqwest::Error| HashError::Io(e.to_string());
    let resp = client().map_err(io)?.get(url).send().await.map_err(io)?;
    if !resp.status().is_success() {
        return Err(HashError::Io(format!("{url} answered {}", resp.status())));
    }
    let mut md5 = md5::Md5::new();
    let mut hasher = Hasher::new(algo);
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        if !still_locked(st, iid, task) {
            return Err(HashError::Canceled);
        }
        let chunk = chunk.map_err(io)?;
        md5.update(&chunk);
        hasher.update(&chunk);
    }
    Ok((hex::encode(md5.finalize()), hasher.finish()))
}

/// The hash algorithms of the location API.
enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algo: &str) -> Hasher {
        match algo {
            "md5" => Hasher::Md5(md5::Md5::new()),
            "sha1" => Hasher::Sha1(sha1::Sha1::new()),
            "sha256" => Hasher::Sha256(sha2::Sha256::new()),
            _ => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(b),
            Hasher::Sha1(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Md5(h) => hex::encode(h.finalize()),
            Hasher::Sha1(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Hashes the data of a location import and ends it (Glance's `_CalculateHash`, then
/// `_VerifyValidationData` when the client gave a hash).
async fn run(
    st: ImageState,
    caller: Caller,
    iid: ImageId,
    task: String,
    url: String,
    vd: ValidationData,
) {
    let algo = vd
        .os_hash_algo
        .clone()
        .unwrap_or_else(|| HASHING_ALGORITHM.into());
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        match hash_once(&st, &iid, &task, &url, &algo).await {
            Err(HashError::Io(e)) if attempt <= st.locations.http_retries => {
                tracing::debug!(image = %iid, attempt, error = %e, "hashing failed: retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other,
        }
    };
    match outcome {
        Err(HashError::Canceled) => {
            tracing::info!(image = %iid, task = %task, "hash calculation canceled");
            let msg = format!("Hash calculation for image {iid} has been canceled");
            if let Err(e) = st
                .engine
                .task(
                    &task,
                    TaskCommand::Fail(format!("Error: {msg}")),
                    &caller.ctx(),
                    &caller.meta(),
                )
                .await
            {
                tracing::warn!(task = %task, error = %e, "could not end the location import task");
            }
        }
        Err(HashError::Io(e)) => {
            tracing::warn!(image = %iid, error = %e, "hash calculation failed");
            let validating = vd.os_hash_value.is_some();
            let msg = format!("Hash calculation failed for image {iid} data");
            // An image active already keeps its location (Glance only warns).
            end(&st, &caller, &iid, &task, None, !validating, &msg).await;
        }
        Ok((checksum, value)) => {
            if let Some(want) = vd.os_hash_value.as_ref().filter(|w| **w != value) {
                let msg = format!(
                    "os_hash_value: ({want}) not matched with actual os_hash_value: ({value})"
                );
                tracing::info!(image = %iid, "location import: {msg}");
                end(&st, &caller, &iid, &task, None, false, &msg).await;
                return;
            }
            let hashes = ValidationData {
                checksum: Some(checksum),
                os_hash_algo: Some(algo),
                os_hash_value: Some(value),
            };
            end(&st, &caller, &iid, &task, Some(hashes), true, "").await;
            tracing::info!(image = %iid, task = %task, "location import hashed");
        }
    }
}

/// GET /v2/images/{id}/locations (2.17, the service role): the image's locations.
pub async fn list(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<Json<Value>, ImageError> {
    let img = visible(&st, &id, &caller)?;
    if !caller.service {
        return Err(crate::policy::refused("fetch_image_location"));
    }
    Ok(Json(Value::Array(shown(&st, &img))))
}

/// The data of an image that has only locations: streamed from the first location
/// the http store serves (Glance's http store download).
pub async fn download(img: &Image) -> Result<Response, ImageError> {
    let unavailable = |m: String| ImageError::new(StatusCode::SERVICE_UNAVAILABLE, m);
    let Some(loc) = img.locations.iter().find(|l| http_url(&l.url)) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let resp = client()
        .map_err(|e| unavailable(e.to_string()))?
        .get(&loc.url)
        .send()
        .await
        .map_err(|e| {
            unavailable(format!(
                "The image data at its location is unavailable: {e}"
            ))
        })?;
    if !resp.status().is_success() {
        return Err(unavailable(format!(
            "The image data at its location is unavailable: {} answered {}",
            loc.url,
            resp.status()
        )));
    }
    let mut r =
        Response::builder().header(axum::http::header::CONTENT_TYPE, "application/octet-stream");
    if let Some(n) = resp.content_length() {
        r = r.header(axum::http::header::CONTENT_LENGTH, n);
    }
    if let Some(c) = &img.location_data.checksum {
        r = r.header("content-md5", c.as_str());
    }
    r.body(Body::from_stream(resp.bytes_stream()))
        .map_err(|e| ImageError::Engine(e.to_string()))
}
