//! Glance's interoperable image import: `PUT /v2/images/{id}/stage`,
//! `POST /v2/images/{id}/import` (methods `glance-direct`, `web-download`,
//! `copy-image` and `glance-download`),
//! `GET /v2/info/import` and `GET /v2/info/stores`.
//!
//! Invariants:
//! - Every state change is an image event (`image.stage_*`, `image.import_*`) or a
//!   task event (`task.started`, `task.succeeded`, `task.failed`); the files (staged
//!   data, image data) are written before the event that records them.
//! - A request is checked as Glance checks it — body shape (400), the image's status
//!   and formats (409, in the domain), the stores (409/400), the web-download URL
//!   against the filtering options (400) — before anything is appended.
//! - An accepted import appends `image.import_started` (status `importing`, the lock
//!   `os_glance_import_task`, `os_glance_importing_to_stores`) then the task
//!   (`processing`), answers 202 and runs in the background. Data enters the store only
//!   through [`crate::store_data`], the path `PUT .../file` takes. It ends with
//!   `image.import_finished` (active) and the task's success, or `image.import_failed`
//!   (back to `queued`, the stores in `os_glance_failed_import`) and the task's failure.
//! - Imports a process did not finish (it crashed or stopped) are failed cleanly by
//!   [`crate::recovery`], as Glance leaves them for the operator to retry.
//! - Stores are Glance's `enabled_backends`: directories of the image directory
//!   (`--image-stores`, default one store, [`STORE_ID`]); the first is the default.
//!   `copy-image` (admin) is offered with several stores.
//! - `glance-download` (offered when `--image-enabled-import-methods` names it, as
//!   Glance's `enabled_import_methods`) fetches an active image of a catalog region's
//!   Glance as the caller; the source's formats and copied properties are recorded
//!   with the data (`image.updated` just before `image.import_finished`), so a failed
//!   download leaves the image as it was (Glance sets them first and reverts).
//! - With `--image-import-plugins image_conversion`, data of every method but
//!   `copy-image` is checked and converted before it is stored ([`crate::convert`]).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::image::{ImageChange, ImageCommand, ImportStart, IMPORT_METHODS};
use domain::task::{TaskCommand, TaskSpec};
use domain::ImageId;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ImageError;
use crate::extract::Path;
use crate::{convert, read_json, store, visible, ImageState};

/// The one store's id (`GET /v2/info/stores`, an image's `stores`).
pub const STORE_ID: &str = "file";

/// Glance's `[import_filtering_opts]`: which URLs `web-download` may fetch. Defaults
/// are Glance's: schemes http and https, any host, ports 80 and 443 (when the URL
/// names a port). When both an allowed and a disallowed list are set, only the
/// allowed one counts (as Glance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFilter {
    /// `allowed_schemes` (default `http,https`).
    pub allowed_schemes: Vec<String>,
    /// `disallowed_schemes` (default empty).
    pub disallowed_schemes: Vec<String>,
    /// `allowed_hosts` (default empty: any).
    pub allowed_hosts: Vec<String>,
    /// `disallowed_hosts` (default empty).
    pub disallowed_hosts: Vec<String>,
    /// `allowed_ports` (default `80,443`).
    pub allowed_ports: Vec<u16>,
    /// `disallowed_ports` (default empty).
    pub disallowed_ports: Vec<u16>,
}

impl Default for ImportFilter {
    fn default() -> Self {
        ImportFilter {
            allowed_schemes: vec!["http".into(), "https".into()],
            disallowed_schemes: vec![],
            allowed_hosts: vec![],
            disallowed_hosts: vec![],
            allowed_ports: vec![80, 443],
            disallowed_ports: vec![],
        }
    }
}

/// A host as the filter compares it: lower case, IPv6 without brackets.
fn normalize_host(h: &str) -> String {
    h.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl ImportFilter {
    /// Glance's `validate_import_uri`: whether `uri` passes the filter.
    pub fn allows(&self, uri: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(uri) else {
            return false;
        };
        let lists = |allow: &[String], deny: &[String]| -> (Vec<String>, Vec<String>) {
            let allow: Vec<String> = allow.iter().map(|s| normalize_host(s)).collect();
            let deny = if allow.is_empty() {
                deny.iter().map(|s| normalize_host(s)).collect()
            } else {
                vec![]
            };
            (allow, deny)
        };
        let (ws, bs) = lists(&self.allowed_schemes, &self.disallowed_schemes);
        let scheme = url.scheme().to_string();
        if (!ws.is_empty() && !ws.contains(&scheme)) || bs.contains(&scheme) {
            return false;
        }
        let (wh, bh) = lists(&self.allowed_hosts, &self.disallowed_hosts);
        let Some(host) = url.host_str().map(normalize_host).filter(|h| !h.is_empty()) else {
            return false;
        };
        if (!wh.is_empty() && !wh.contains(&host)) || bh.contains(&host) {
            return false;
        }
        let bp: &[u16] = if self.allowed_ports.is_empty() {
            &self.disallowed_ports
        } else {
            &[]
        };
        if let Some(port) = url.port() {
            if (!self.allowed_ports.is_empty() && !self.allowed_ports.contains(&port))
                || bp.contains(&port)
            {
                return false;
            }
        }
        true
    }
}

/// Glance's `enabled_import_methods` default (`glance-download` needs a federated
/// deployment: offered only when configured).
pub const DEFAULT_IMPORT_METHODS: &[&str] = &["glance-direct", "web-download", "copy-image"];

/// Glance's `[glance_download_properties] extra_properties` default: the property
/// prefixes `glance-download` copies from the source image (never `os_glance*`).
pub const GLANCE_DOWNLOAD_PROPERTIES: &[&str] =
    &["hw_", "trait:", "os_distro", "os_secure_boot", "os_type"];

/// One image endpoint of the service catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEndpoint {
    /// Region (`RegionOne`).
    pub region: String,
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// Base URL of that Glance (`http://127.0.0.1:9292`).
    pub url: String,
}

/// The import methods offered, in Glance's order: the enabled ones, `copy-image` only
/// with several stores.
pub fn methods(st: &ImageState) -> Vec<&'static str> {
    IMPORT_METHODS
        .iter()
        .copied()
        .filter(|m| st.import_methods.iter().any(|e| e == m))
        .filter(|m| *m != "copy-image" || st.stores.len() > 1)
        .collect()
}

/// GET /v2/info/import: the import methods this service offers.
pub async fn info_import(State(st): State<ImageState>) -> Json<Value> {
    Json(json!({
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": methods(&st),
        }
    }))
}

/// GET /v2/info/stores: the stores, the default flagged; with several, the read-only
/// http store of image locations last (`crate::locations`).
pub async fn info_stores(State(st): State<ImageState>) -> Json<Value> {
    Json(json!({ "stores": stores_info(&st) }))
}

/// GET /v2/info/stores/detail (admin, `stores_info_detail`): the stores with their type,
/// properties (Glance's `file` store's: its directory, chunk size, thin provisioning;
/// the read-only http store has none) and `weight` (`--image-store-weights`, 0 when not
/// set).
pub async fn info_stores_detail(State(st): State<ImageState>) -> Json<Value> {
    let stores = st.stores();
    let mut out = stores_info(&st);
    for v in &mut out {
        let id = v["id"].as_str().unwrap_or_default().to_string();
        if id == st.locations.http_store && !st.stores.contains(&id) {
            v["type"] = json!("http");
            v["properties"] = json!({});
        } else {
            v["type"] = json!("file");
            v["properties"] = json!({
                "data_dir": st.store.dir_of(st.store_dir(&id)).display().to_string(),
                "chunk_size": 65536,
                "thin_provisioning": false,
            });
        }
        v["weight"] = json!(stores.weight(&id));
    }
    Json(json!({ "stores": out }))
}

/// The stores as `/v2/info/stores` lists them: the default flagged; with several
/// stores, the read-only http store of image locations last.
fn stores_info(st: &ImageState) -> Vec<Value> {
    let mut stores: Vec<Value> = st
        .stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = json!({"id": s, "description": format!("Image directory store {s}")});
            if i == 0 {
                v["default"] = json!(true);
            }
            v
        })
        .collect();
    if st.stores.len() > 1 && !st.locations.http_store.is_empty() {
        stores.push(json!({
            "id": st.locations.http_store,
            "description": "Read-only http store of image locations",
            "read-only": "true",
        }));
    }
    stores
}

/// DELETE /v2/stores/{store}/{id} (admin, Glance's `delete_image_location`): 204 once
/// the data left that store; not the only store holding it (403).
pub async fn delete_from_store(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    crate::extract::Path2(store, id): crate::extract::Path2,
) -> Result<StatusCode, ImageError> {
    if !st.stores.contains(&store) {
        return Err(ImageError::new(
            StatusCode::CONFLICT,
            format!("The selected store {store} is not available on this node."),
        ));
    }
    let img = visible(&st, &id, &caller).map_err(|_| {
        ImageError::new(StatusCode::NOT_FOUND, format!("Failed to find image {id}"))
    })?;
    st.engine
        .image(
            &img.spec.id,
            ImageCommand::RemoveStore {
                store: store.clone(),
                default: st.default_store().to_string(),
            },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    st.store
        .remove_in(st.store_dir(&store), &img.spec.id)
        .await?;
    tracing::info!(image = %id, store = %store, "image data removed from a store");
    Ok(StatusCode::NO_CONTENT)
}

/// PUT /v2/images/{id}/stage: 204 once the data is staged (status `uploading`).
pub async fn stage(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path,
    body: Body,
) -> Result<StatusCode, ImageError> {
    let img = visible(&st, &id, &caller)?;
    let iid = img.spec.id;
    crate::check_data_request(&st, &headers)?;
    let meta = caller.meta();
    st.engine
        .image(&iid, ImageCommand::StartStage, &caller.ctx(), &meta)
        .await?;
    // As an upload: the ending runs even when the client goes away.
    let task = tokio::spawn(async move {
        let staged = st
            .store
            .stage(&iid, body.into_data_stream(), st.max_size)
            .await;
        let data = match staged {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(image = %iid, error = %e, "staging failed: image back to queued");
                st.engine
                    .image(&iid, ImageCommand::AbortStage, &caller.ctx(), &meta)
                    .await?;
                return Err(crate::store_error(e));
            }
        };
        if let Err(e) = st
            .engine
            .image(
                &iid,
                ImageCommand::FinishStage(data.size),
                &caller.ctx(),
                &meta,
            )
            .await
        {
            st.store.unstage(&iid).await?;
            return Err(e.into());
        }
        Ok(())
    });
    task.await
        .map_err(|e| ImageError::Engine(format!("staging task: {e}")))??;
    tracing::info!(image = %iid, "image data staged");
    Ok(StatusCode::NO_CONTENT)
}

/// A checked import request.
struct ImportRequest {
    method: String,
    uri: Option<String>,
    stores: Vec<String>,
    all_stores_must_succeed: bool,
    /// `glance-download`: the source image and the caller's token to fetch it with.
    remote: Option<Remote>,
}

/// Where a `glance-download` import takes its image from.
struct Remote {
    /// The source image's id (checked to be a UUID).
    image_id: String,
    /// The catalog region of the source Glance.
    region: String,
    /// The catalog interface (`public` unless given).
    interface: String,
    /// The caller's token (Glance downloads as the user who asked).
    token: String,
}

/// Glance's checks of a `glance-download` request's parameters (400s, after the
/// image's status); fills in the default interface as Glance does.
fn remote_of(body: &mut Value, headers: &HeaderMap) -> Result<Remote, ImageError> {
    let method = &mut body["method"];
    for key in ["glance_region", "glance_image_id"] {
        if method.get(key).is_none() {
            return Err(ImageError::bad_request(format!(
                "'{key}' needs to be set for glance-download import method"
            )));
        }
    }
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let image_id = text(&method["glance_image_id"]);
    if uuid::Uuid::parse_str(&image_id).is_err() {
        return Err(ImageError::bad_request(format!(
            "Remote image id does not look like a UUID: {image_id}"
        )));
    }
    if method.get("glance_service_interface").is_none() {
        method["glance_service_interface"] = json!("public");
    }
    Ok(Remote {
        image_id,
        region: text(&method["glance_region"]),
        interface: text(&method["glance_service_interface"]),
        token: headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    })
}

/// Glance's checks of the body (`_validate_import_body`): all 400s.
fn parse_body(st: &ImageState, body: &Value) -> Result<(String, Option<String>), ImageError> {
    let method = body
        .get("method")
        .ok_or_else(|| ImageError::bad_request("Import request requires a 'method' field."))?;
    let name = method
        .get("name")
        .ok_or_else(|| ImageError::bad_request("Import request requires a 'name' field."))?;
    let name = name.as_str().unwrap_or_default();
    if !methods(st).contains(&name) {
        return Err(ImageError::bad_request(format!(
            "Unknown import method name '{}'.",
            body["method"]["name"]
                .as_str()
                .unwrap_or(&body["method"]["name"].to_string())
        )));
    }
    for (key, default) in [("all_stores_must_succeed", true), ("all_stores", false)] {
        if !body.get(key).unwrap_or(&json!(default)).is_boolean() {
            return Err(ImageError::bad_request(format!(
                "'{key}' must be boolean value only"
            )));
        }
    }
    let uri = method
        .get("uri")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((name.to_string(), uri))
}

/// Glance's `get_stores_from_request`: `all_stores`, the `stores` list, the
/// `X-Image-Meta-Store` header, or the default store; an unknown store is a 409.
fn stores_of(
    st: &ImageState,
    body: &Value,
    headers: &HeaderMap,
) -> Result<Vec<String>, ImageError> {
    let header = headers
        .get("x-image-meta-store")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let stores = if body.get("all_stores").and_then(Value::as_bool) == Some(true) {
        if body.get("stores").is_some() || header.is_some() {
            return Err(ImageError::bad_request(
                "All_stores parameter can't be used with x-image-meta-store header or stores parameter",
            ));
        }
        st.stores.to_vec()
    } else if let Some(list) = body.get("stores") {
        if header.is_some() {
            return Err(ImageError::bad_request(
                "Stores parameter and x-image-meta-store header can't be both specified",
            ));
        }
        let list = list.as_array().ok_or_else(|| {
            ImageError::bad_request(format!("Invalid stores {list}: a list of store ids"))
        })?;
        list.iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| s.to_string())
            })
            .collect()
    } else {
        vec![header.unwrap_or_else(|| st.default_store().to_string())]
    };
    for s in &stores {
        if !st.stores.contains(s) {
            return Err(ImageError::new(
                StatusCode::CONFLICT,
                format!("Unknown scheme '{s}' found in URI"),
            ));
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for s in stores {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    Ok(unique)
}

/// POST /v2/images/{id}/import: 202; the import runs in the background.
pub async fn import(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path,
    body: Body,
) -> Result<Response, ImageError> {
    let img = visible(&st, &id, &caller)?;
    let iid = img.spec.id;
    let mut body = read_json(body).await?;
    let (method, uri) = parse_body(&st, &body)?;
    // Glance's order: the image's status (409) before the glance-download parameters,
    // the policy, the stores and the URL.
    domain::image::check_import(&img, &method)?;
    let remote = if method == "glance-download" {
        Some(remote_of(&mut body, &headers)?)
    } else {
        None
    };
    if method == "copy-image" {
        if !caller.ctx().is_admin {
            return Err(crate::policy::refused("copy_image"));
        }
    } else if !img.writable_by(&caller.ctx()) {
        return Err(ImageError::forbidden(format!(
            "You are not permitted to modify image {iid}."
        )));
    }
    let mut stores = stores_of(&st, &body, &headers)?;
    if method == "copy-image" {
        let held = st.stores_of(&img);
        if body.get("all_stores").and_then(Value::as_bool) == Some(true) {
            stores.retain(|s| !held.contains(s));
            if stores.is_empty() {
                tracing::info!(image = %iid, "copy-image: already in every store");
                return Ok(StatusCode::ACCEPTED.into_response());
            }
        } else if let Some(s) = stores.iter().find(|s| held.contains(s)) {
            return Err(ImageError::bad_request(format!(
                "Image is already present at store '{s}'"
            )));
        }
    }
    let all_stores_must_succeed = body
        .get("all_stores_must_succeed")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if method == "web-download" && !uri.as_deref().is_some_and(|u| st.import.allows(u)) {
        return Err(ImageError::bad_request(format!(
            "URI for web-download does not pass filtering: {}",
            uri.as_deref().unwrap_or("None")
        )));
    }
    let req = ImportRequest {
        method,
        uri,
        stores,
        all_stores_must_succeed,
        remote,
    };
    let task = uuid::Uuid::new_v4().to_string();
    let meta = caller.meta();
    st.engine
        .image(
            &iid,
            ImageCommand::StartImport(ImportStart {
                task: task.clone(),
                method: req.method.clone(),
                stores: req.stores.clone(),
            }),
            &caller.ctx(),
            &meta,
        )
        .await?;
    let input = json!({
        "image_id": iid.to_string(),
        "import_req": body,
        "backend": req.stores,
    });
    let spec = TaskSpec {
        id: task.clone(),
        task_type: "api_image_import".into(),
        owner: caller.project.clone(),
        user_id: caller.user.clone(),
        request_id: format!("req-{}", caller.request),
        input: input.to_string(),
    };
    if let Err(e) = st
        .engine
        .task(&task, TaskCommand::Start(spec), &caller.ctx(), &meta)
        .await
    {
        let _ = st
            .engine
            .image(
                &iid,
                ImageCommand::FailImport {
                    task: task.clone(),
                    stores: None,
                },
                &caller.ctx(),
                &meta,
            )
            .await;
        return Err(e.into());
    }
    tracing::info!(image = %iid, task = %task, method = %req.method, "image import started");
    let mut shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = run(st, caller, iid, task, req) => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                tracing::warn!(image = %iid, "stopping mid-import: the next start fails it");
            }
        }
    });
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Why a download failed.
fn fetch_error(e: reqwest::Error) -> store::StoreError {
    store::StoreError::Source(e.to_string())
}

/// Opens the file the import's data comes from: the staged file (glance-direct; a
/// web-download or glance-download is fetched into it first), or the image's data
/// (copy-image). With it, the metadata the import brings (glance-download).
async fn source(
    st: &ImageState,
    iid: &ImageId,
    req: &ImportRequest,
) -> Result<(std::path::PathBuf, Vec<ImageChange>), store::StoreError> {
    if let Some(remote) = &req.remote {
        let metadata = glance_download(st, iid, remote).await?;
        return Ok((st.store.staged_path(iid), metadata));
    }
    let path: Result<_, store::StoreError> = match req.method.as_str() {
        "copy-image" => {
            let img = st
                .engine
                .world()
                .read()
                .image(iid)
                .cloned()
                .ok_or_else(|| store::StoreError::Source("the image is gone".into()))?;
            Ok(crate::data_path(st, &img))
        }
        "web-download" => {
            let resp = fetch(st, req.uri.as_deref().unwrap_or_default(), None).await?;
            let stream = Box::pin(resp.bytes_stream().map(|r| r.map_err(fetch_error)));
            st.store.stage(iid, stream, st.max_size).await?;
            Ok(st.store.staged_path(iid))
        }
        _ => Ok(st.store.staged_path(iid)),
    };
    Ok((path?, vec![]))
}

/// Glance's `glance-download` (`_ImportMetadata`, then `_DownloadGlanceImage`): the
/// region's Glance from the catalog, the source image's record (it must be active; its
/// size is expected), its data staged through the URL filter, as the caller. Returns
/// the changes the import makes to the image: the source's formats and the properties
/// whose names start with one of [`GLANCE_DOWNLOAD_PROPERTIES`].
async fn glance_download(
    st: &ImageState,
    iid: &ImageId,
    remote: &Remote,
) -> Result<Vec<ImageChange>, store::StoreError> {
    let failed = store::StoreError::Source;
    let endpoint = st
        .catalog
        .iter()
        .find(|e| e.region.eq_ignore_ascii_case(&remote.region) && e.interface == remote.interface)
        .ok_or_else(|| {
            failed(format!(
                "{} glance endpoint not found for region {}",
                remote.interface, remote.region
            ))
        })?;
    let base = format!(
        "{}/v2/images/{}",
        endpoint.url.trim_end_matches('/'),
        remote.image_id
    );
    let source: Value = fetch(st, &base, Some(&remote.token))
        .await?
        .json()
        .await
        .map_err(fetch_error)?;
    let status = source["status"].as_str().unwrap_or_default();
    if status != "active" {
        return Err(failed(format!(
            "Source image status should be active instead of {status}"
        )));
    }
    let size = source["size"].as_u64().ok_or_else(|| {
        failed(format!(
            "Size attribute of remote image {} could not be determined.",
            remote.image_id
        ))
    })?;
    let file = format!("{base}/file");
    if !st.import.allows(&file) {
        return Err(failed(format!(
            "Processed URI for glance-download does not pass filtering: {file}"
        )));
    }
    let resp = fetch(st, &file, Some(&remote.token)).await?;
    let stream = Box::pin(resp.bytes_stream().map(|r| r.map_err(fetch_error)));
    let staged = st.store.stage(iid, stream, st.max_size).await?;
    if staged.size != size {
        return Err(failed(format!(
            "Downloaded data size {} is different from expected {size}",
            staged.size
        )));
    }
    let text = |k: &str| source[k].as_str().map(str::to_string);
    let mut changes = vec![
        ImageChange::DiskFormat(text("disk_format")),
        ImageChange::ContainerFormat(text("container_format")),
    ];
    if let Some(props) = source.as_object() {
        for (k, v) in props {
            let copied = GLANCE_DOWNLOAD_PROPERTIES.iter().any(|p| k.starts_with(p))
                && !k.starts_with(domain::image::RESERVED_NAMESPACE);
            if let (true, Some(v)) = (copied, v.as_str()) {
                changes.push(ImageChange::AddProperty(k.clone(), v.to_string()));
            }
        }
    }
    Ok(changes)
}

/// Runs an accepted import to its end (see the module docs): the data goes into each
/// store in turn through [`crate::store_data`]; the first success makes the image
/// active. A store that fails ends the import when every store must succeed (the
/// default), otherwise only that store is listed as failed.
async fn run(st: ImageState, caller: Caller, iid: ImageId, task: String, req: ImportRequest) {
    let meta = caller.meta();
    let fail = |stores: Option<Vec<String>>| {
        let st = st.clone();
        let caller = caller.clone();
        let meta = meta.clone();
        let task = task.clone();
        async move {
            if let Err(e) = st
                .engine
                .image(
                    &iid,
                    ImageCommand::FailImport { task, stores },
                    &caller.ctx(),
                    &meta,
                )
                .await
            {
                tracing::warn!(image = %iid, error = %e, "could not record the failed import");
            }
        }
    };
    let mut error: Option<String> = None;
    let mut stored = 0usize;
    // The image's formats, checked as an upload's (an import needs them set).
    let mut check = {
        let v = st.engine.world().read();
        v.image(&iid)
            .map(|i| store::FormatCheck::of_image(&i.spec))
            .unwrap_or_else(store::FormatCheck::unset)
    };
    // Glance runs its import plugins on new data only, never on copy-image.
    let plugin = st
        .conversion
        .as_ref()
        .filter(|_| req.method != "copy-image");
    let mut converted: Option<convert::Converted> = None;
    let mut metadata = vec![];
    let input = match source(&st, &iid, &req).await {
        Err(e) => Err(e.to_string()),
        Ok((path, brought)) => {
            // The data is checked (and converted) as the formats it comes with.
            let mut changed = st.engine.world().read().image(&iid).cloned();
            if let Some(img) = changed.as_mut() {
                domain::image::apply_changes(img, &brought);
                check = store::FormatCheck::of_image(&img.spec);
            }
            metadata = brought;
            Ok(path)
        }
    };
    let input = match input {
        Err(e) => Err(e),
        Ok(path) => match plugin {
            None => Ok(path),
            Some(c) => match c.run(&path, &check.disk_format).await {
                Ok(conv) => {
                    if let Some(f) = &conv.disk_format {
                        tracing::info!(image = %iid, from = %check.disk_format, to = %f, "image data converted");
                        check = store::FormatCheck {
                            disk_format: f.clone(),
                            container_format: domain::image::CONVERTED_CONTAINER.into(),
                        };
                    }
                    let p = conv.path.clone();
                    converted = Some(conv);
                    Ok(p)
                }
                Err(e) => Err(e.to_string()),
            },
        },
    };
    match input {
        Err(e) => error = Some(e),
        Ok(path) => {
            for (n, store) in req.stores.iter().enumerate() {
                let written = match tokio::fs::File::open(&path).await {
                    Ok(f) => crate::store_data(&st, &iid, store, file_stream(f), &check).await,
                    Err(e) => Err(store::StoreError::Io(e)),
                };
                let outcome = match written {
                    Ok(store::Stored { data, virtual_size }) => {
                        // A copy of uploaded data records the default store too.
                        let mut stores = vec![store.clone()];
                        let held = st
                            .engine
                            .world()
                            .read()
                            .image(&iid)
                            .map(|i| (i.data.is_some(), i.stores.is_empty()));
                        if req.method == "copy-image" && held == Some((true, true)) {
                            stores.insert(0, st.default_store().to_string());
                        }
                        st.engine
                            .image(
                                &iid,
                                ImageCommand::FinishImport {
                                    task: task.clone(),
                                    data,
                                    virtual_size,
                                    stores,
                                    converted: converted
                                        .as_ref()
                                        .and_then(|c| c.disk_format.clone()),
                                    // Recorded with the first store's data only.
                                    metadata: if stored == 0 {
                                        metadata.clone()
                                    } else {
                                        vec![]
                                    },
                                },
                                &caller.ctx(),
                                &meta,
                            )
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(_) => stored += 1,
                    Err(msg) => {
                        tracing::warn!(image = %iid, store = %store, error = %msg, "import to a store failed");
                        let _ = st.store.remove_in(st.store_dir(store), &iid).await;
                        if req.all_stores_must_succeed {
                            error = Some(msg);
                            break;
                        }
                        fail(Some(vec![store.clone()])).await;
                        if n + 1 == req.stores.len() && stored == 0 {
                            error = Some(msg);
                        }
                    }
                }
            }
        }
    }
    if let Some(c) = &converted {
        c.cleanup(&st.store.staged_path(&iid)).await;
    }
    if req.method != "copy-image" {
        let _ = st.store.unstage(&iid).await;
    }
    let ended = match error {
        None => {
            tracing::info!(image = %iid, task = %task, "image imported");
            TaskCommand::Succeed(json!({"image_id": iid.to_string()}).to_string())
        }
        Some(msg) => {
            tracing::warn!(image = %iid, task = %task, error = %msg, "image import failed");
            fail(None).await;
            TaskCommand::Fail(format!("Error: {msg}"))
        }
    };
    if let Err(e) = st.engine.task(&task, ended, &caller.ctx(), &meta).await {
        tracing::warn!(task = %task, error = %e, "could not end the import task");
    }
}

/// A file as a stream of chunks.
fn file_stream(
    f: tokio::fs::File,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Unpin {
    Box::pin(futures::stream::unfold(Some(f), |f| async move {
        use tokio::io::AsyncReadExt;
        let mut f = f?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    }))
}

/// GET of an import's URL (web-download; glance-download, with the caller's token):
/// redirects are followed only to URLs that pass the filter too (at most 10), and the
/// answer must be a 2xx.
async fn fetch(
    st: &ImageState,
    uri: &str,
    token: Option<&str>,
) -> Result<reqwest::Response, store::StoreError> {
    let filter = st.import.clone();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(WEB_DOWNLOAD_TIMEOUT)
        .redirect(reqwest::redirect::Policy::custom(move |a| {
            if a.previous().len() >= 10 {
                a.error("too many redirects")
            } else if filter.allows(a.url().as_str()) {
                a.follow()
            } else {
                a.error("redirect to a URI that does not pass filtering")
            }
        }))
        .build()
        .map_err(fetch_error)?;
    let mut get = client.get(uri);
    if let Some(t) = token {
        get = get.header("X-Auth-Token", t);
    }
    let resp = get.send().await.map_err(fetch_error)?;
    if !resp.status().is_success() {
        return Err(store::StoreError::Source(format!(
            "{uri} answered {}",
            resp.status()
        )));
    }
    Ok(resp)
}

/// Longest a web-download may take (below the recovery's stale-import age).
pub const WEB_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glance_defaults_filter_ports_schemes() {
        let f = ImportFilter::default();
        assert!(f.allows("http://example.com/x.qcow2"));
        assert!(f.allows("https://example.com:443/x"));
        assert!(!f.allows("http://example.com:8080/x"));
        assert!(!f.allows("ftp://example.com/x"));
        assert!(!f.allows("file:///etc/passwd"));
        assert!(!f.allows("not a url"));
    }

    #[test]
    fn allowed_lists_win_over_disallowed() {
        let f = ImportFilter {
            allowed_hosts: vec!["Good.Example".into()],
            disallowed_hosts: vec!["good.example".into()],
            allowed_ports: vec![],
            disallowed_ports: vec![22],
            ..ImportFilter::default()
        };
        assert!(f.allows("http://good.example:8080/x"));
        assert!(!f.allows("http://bad.example/x"));
        let g = ImportFilter {
            allowed_ports: vec![],
            disallowed_ports: vec![22],
            disallowed_hosts: vec!["127.0.0.1".into()],
            ..ImportFilter::default()
        };
        assert!(!f.allows("http://good.example:22/x"));
        assert!(g.allows("http://x:8080/"));
        assert!(!g.allows("http://x:22/"));
        assert!(!g.allows("http://127.0.0.1/"));
    }
}
