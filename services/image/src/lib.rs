//! The Stratus image service: a Glance v2 subset over axum, served on its own listener
//! (`--image-listen`, default 127.0.0.1:9292).
//!
//! The routes are documented in `docs/openapi/image.json` (OpenAPI 3.0.3).
//!
//! Invariants:
//! - [`router`] and [`route_table`] are built from one list of routes, so the route
//!   table is exactly what the router serves (the OpenAPI document is checked against
//!   it by this crate's tests).
//! - Image records change only through `engine.image(..)` commands on the aggregate
//!   `stratus.api.image.<uuid>`; reads come from the world (read-your-writes).
//! - Every answer is JSON (or image data); errors have one Glance-like shape, also for
//!   requests axum cannot read (path parameters come from `extract`, not axum).
//! - Bad input (malformed JSON, wrong types, read-only attributes, unknown patch ops,
//!   oversized declared uploads) is refused with a Glance-shaped 4xx before any
//!   command runs, so it appends nothing.
//! - Image data never enters the log: `PUT /v2/images/{id}/file` appends
//!   `image.upload_started`, streams the body to a temp file (hashing it), fsyncs and
//!   renames it, and only then appends `image.upload_finished` with size and
//!   checksums. A failed upload appends `image.upload_aborted` (back to `queued`).
//! - Uploads are limited by [`ImageState::max_size`] (not by the compute API's 1 MiB
//!   body limit); JSON bodies by [`JSON_LIMIT`].
//! - A private image of another project is a 404, never a 403.
//! - Image files are local to the process's image directory: in a split deployment,
//!   point every API process's `--image-dir` at shared storage.
//! - Interoperable import (`stage`, `import`, `/v2/info/import`, `/v2/info/stores`) is
//!   the `import` module's; its data enters the store through [`store_data`], as
//!   uploads do.

pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod convert;
pub mod error;
mod extract;
pub mod filter;
pub mod import;
pub mod list;
pub mod locations;
mod members;
pub mod metadefs;
pub mod parse;
pub mod policy;
pub mod recovery;
pub mod store;
pub mod tasks;
pub mod view;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Json, Router};
use domain::image::{ImageCommand, ImageStatus};
use domain::ImageId;
use serde_json::{json, Value};
use uuid::Uuid;

pub use error::ImageError;
pub use store::ImageStore;

use auth::Caller;
use extract::{Path, Path2};

/// Maximum size of a JSON request body (1 MiB, like the compute API).
pub const JSON_LIMIT: usize = 1024 * 1024;

/// Default maximum size of uploaded image data (1 GiB).
pub const DEFAULT_MAX_SIZE: u64 = 1024 * 1024 * 1024;

/// Glance's default and maximum page sizes.
pub const DEFAULT_LIMIT: usize = 25;
/// See [`DEFAULT_LIMIT`].
pub const MAX_LIMIT: usize = 1000;

/// Shared state of the image handlers.
#[derive(Clone)]
pub struct ImageState {
    /// The engine (log, world).
    pub engine: Arc<engine::Engine>,
    /// Where image files live.
    pub store: Arc<ImageStore>,
    /// Largest accepted upload, in bytes.
    pub max_size: u64,
    /// Authentication mode (shared with the compute API).
    pub auth: apicore::auth::AuthMode,
    /// Which URLs `web-download` imports may fetch (Glance's import filtering options).
    pub import: Arc<import::ImportFilter>,
    /// The stores (Glance's `enabled_backends`), the default first; never empty.
    pub stores: Arc<Vec<String>>,
    /// Glance's `image_conversion` import plugin, when enabled.
    pub conversion: Option<convert::Conversion>,
    /// Glance's `enabled_import_methods` (`copy-image` is offered only with several
    /// stores).
    pub import_methods: Arc<Vec<String>>,
    /// The image endpoints of the service catalog, where `glance-download` finds the
    /// Glance of a region (Glance reads them from the caller's token).
    pub catalog: Arc<Vec<import::CatalogEndpoint>>,
    /// Turns true when the process stops: background imports give up then (the next
    /// start fails them cleanly, `recovery`), so they hold nothing past a stop.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Glance's per-store `weight` (`--image-store-weights`; absent: 0): an image's
    /// stores are shown, and its data read, highest weight first.
    pub weights: Arc<std::collections::BTreeMap<String, i64>>,
    /// Glance's image cache (`--image-cache-dir`); None: caching is off and `/v2/cache`
    /// answers 404.
    pub cache: Option<Arc<cache::ImageCache>>,
    /// Image locations: what is shown, the http store, hashing (`locations`).
    pub locations: Arc<locations::LocationConfig>,
}

/// The stores and their weights: which stores hold an image's data, in Glance's order
/// (`sort_image_locations`: highest weight first, ties in the image's own order), and
/// where its data is read from.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    /// The store ids, the default first.
    pub ids: Arc<Vec<String>>,
    /// Their weights (absent: 0).
    pub weights: Arc<std::collections::BTreeMap<String, i64>>,
}

impl Stores {
    /// The default store (where uploads go).
    pub fn default_store(&self) -> &str {
        self.ids.first().map_or(import::STORE_ID, String::as_str)
    }

    /// A store's weight (Glance's default 0).
    pub fn weight(&self, store: &str) -> i64 {
        self.weights.get(store).copied().unwrap_or(0)
    }

    /// The stores holding an image's data, highest weight first (the default store for
    /// uploaded data).
    pub fn of(&self, img: &domain::image::Image) -> Vec<String> {
        if img.data.is_none() {
            return vec![];
        }
        if img.stores.is_empty() {
            return vec![self.default_store().to_string()];
        }
        let mut v: Vec<String> = img.stores.iter().cloned().collect();
        // Stable: equal weights keep the image's order.
        v.sort_by_key(|s| std::cmp::Reverse(self.weight(s)));
        v
    }

    /// The file of an image's data: in the first of its stores (by weight) that has it.
    pub fn data_path(&self, store: &ImageStore, img: &domain::image::Image) -> std::path::PathBuf {
        let paths: Vec<_> = self
            .of(img)
            .iter()
            .map(|s| store.path_in((s != self.default_store()).then_some(s), &img.spec.id))
            .collect();
        paths
            .iter()
            .find(|p| p.is_file())
            .or(paths.first())
            .cloned()
            .unwrap_or_else(|| store.path(&img.spec.id))
    }
}

impl ImageState {
    /// The default store (where uploads go).
    pub fn default_store(&self) -> &str {
        self.stores.first().map_or(import::STORE_ID, String::as_str)
    }

    /// `store` as the image store names it: None for the default store.
    pub(crate) fn store_dir<'a>(&self, store: &'a str) -> Option<&'a str> {
        (store != self.default_store()).then_some(store)
    }

    /// The stores holding an image's data, highest weight first ([`Stores::of`]).
    pub fn stores_of(&self, img: &domain::image::Image) -> Vec<String> {
        self.stores().of(img)
    }

    /// The stores with their weights.
    pub fn stores(&self) -> Stores {
        Stores {
            ids: self.stores.clone(),
            weights: self.weights.clone(),
        }
    }

    /// The prefetcher of `cache` over this service's stores.
    pub(crate) fn prefetcher(&self, cache: Arc<cache::ImageCache>) -> cache::Prefetcher {
        cache::Prefetcher {
            cache,
            store: self.store.clone(),
            stores: self.stores(),
        }
    }
}

impl std::fmt::Debug for ImageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageState")
            .field("dir", &self.store.dir())
            .field("max_size", &self.max_size)
            .finish()
    }
}

/// The request's id (`req-<uuid>`), set by the middleware.
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub Uuid);

/// One route: its method, its path template (axum's `{param}` syntax, as in OpenAPI)
/// and a method router serving exactly that method.
type Route = (Method, &'static str, MethodRouter<ImageState>);

/// A [`Route`] whose method router is built from `method` itself, so that the route
/// table cannot name a method the router does not serve.
fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, ImageState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
    (method, path, on(filter, handler))
}

/// Every route of the image API, in one list read by both [`router`] and
/// [`route_table`].
fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::GET, "/", versions_root),
        route(M::GET, "/versions", versions),
        route(M::GET, "/v2/images", list),
        route(M::POST, "/v2/images", create),
        route(M::GET, "/v2/images/{id}", show),
        route(M::PATCH, "/v2/images/{id}", update),
        route(M::DELETE, "/v2/images/{id}", delete),
        route(M::GET, "/v2/images/{id}/file", download),
        route(M::GET, "/v2/images/{id}/tasks", image_tasks),
        route(M::PUT, "/v2/images/{id}/file", upload),
        route(M::POST, "/v2/images/{id}/locations", locations::add),
        route(M::GET, "/v2/images/{id}/locations", locations::list),
        route(M::PUT, "/v2/images/{id}/stage", import::stage),
        route(M::POST, "/v2/images/{id}/import", import::import),
        route(M::PUT, "/v2/images/{id}/tags/{tag}", add_tag),
        route(M::DELETE, "/v2/images/{id}/tags/{tag}", remove_tag),
        route(M::GET, "/v2/images/{id}/members", members::list),
        route(M::POST, "/v2/images/{id}/members", members::create),
        route(M::GET, "/v2/images/{id}/members/{member}", members::show),
        route(M::PUT, "/v2/images/{id}/members/{member}", members::update),
        route(
            M::DELETE,
            "/v2/images/{id}/members/{member}",
            members::delete,
        ),
        route(M::POST, "/v2/images/{id}/actions/deactivate", deactivate),
        route(M::POST, "/v2/images/{id}/actions/reactivate", reactivate),
        route(M::GET, "/v2/info/import", import::info_import),
        route(M::GET, "/v2/info/stores", import::info_stores),
        route(M::GET, "/v2/info/stores/detail", import::info_stores_detail),
        route(
            M::DELETE,
            "/v2/stores/{store}/{id}",
            import::delete_from_store,
        ),
        route(M::GET, "/v2/cache", cache::list),
        route(M::DELETE, "/v2/cache", cache::clear),
        route(M::PUT, "/v2/cache/{id}", cache::queue),
        route(M::DELETE, "/v2/cache/{id}", cache::delete),
        route(M::GET, "/v2/tasks", tasks::list),
        route(M::POST, "/v2/tasks", tasks::create),
        route(M::GET, "/v2/tasks/{task_id}", tasks::show),
        route(M::GET, "/v2/metadefs/namespaces", metadefs::list_namespaces),
        route(
            M::POST,
            "/v2/metadefs/namespaces",
            metadefs::create_namespace,
        ),
        route(
            M::GET,
            "/v2/metadefs/namespaces/{namespace}",
            metadefs::show_namespace,
        ),
        route(
            M::PUT,
            "/v2/metadefs/namespaces/{namespace}",
            metadefs::update_namespace,
        ),
        route(
            M::DELETE,
            "/v2/metadefs/namespaces/{namespace}",
            metadefs::delete_namespace,
        ),
        route(
            M::GET,
            "/v2/metadefs/namespaces/{namespace}/objects",
            metadefs::list_objects,
        ),
        route(
            M::POST,
            "/v2/metadefs/namespaces/{namespace}/objects",
            metadefs::create_object,
        ),
        route(
            M::GET,
            "/v2/metadefs/namespaces/{namespace}/objects/{object}",
            metadefs::show_object,
        ),
        route(
            M::PUT,
            "/v2/metadefs/namespaces/{namespace}/objects/{object}",
            metadefs::update_object,
        ),
        route(
            M::DELETE,
            "/v2/metadefs/namespaces/{namespace}/objects/{object}",
            metadefs::delete_object,
        ),
        route(
            M::GET,
            "/v2/metadefs/namespaces/{namespace}/properties",
            metadefs::list_properties,
        ),
        route(
            M::POST,
            "/v2/metadefs/namespaces/{namespace}/properties",
            metadefs::create_property,
        ),
        route(
            M::GET,
            "/v2/metadefs/namespaces/{namespace}/properties/{property}",
            metadefs::show_property,
        ),
        route(
            M::PUT,
            "/v2/metadefs/namespaces/{namespace}/properties/{property}",
            metadefs::update_property,
        ),
        route(
            M::DELETE,
            "/v2/metadefs/namespaces/{namespace}/properties/{property}",
            metadefs::delete_property,
        ),
        route(
            M::GET,
            "/v2/metadefs/namespaces/{namespace}/tags",
            metadefs::list_tags,
        ),
        route(
            M::POST,
            "/v2/metadefs/namespaces/{namespace}/tags",
            metadefs::create_tags,
        ),
        route(
            M::DELETE,
            "/v2/metadefs/namespaces/{namespace}/tags",
            metadefs::delete_tags,
        ),
        route(
            M::GET,
            "/v2/metadefs/namespaces/{namespace}/tags/{tag}",
            metadefs::show_tag,
        ),
        route(
            M::POST,
            "/v2/metadefs/namespaces/{namespace}/tags/{tag}",
            metadefs::create_tag,
        ),
        route(
            M::PUT,
            "/v2/metadefs/namespaces/{namespace}/tags/{tag}",
            metadefs::update_tag,
        ),
        route(
            M::DELETE,
            "/v2/metadefs/namespaces/{namespace}/tags/{tag}",
            metadefs::delete_tag,
        ),
        route(
            M::GET,
            "/v2/metadefs/resource_types",
            metadefs::list_resource_types,
        ),
        route(
            M::GET,
            "/v2/metadefs/namespaces/{namespace}/resource_types",
            metadefs::list_associations,
        ),
        route(
            M::POST,
            "/v2/metadefs/namespaces/{namespace}/resource_types",
            metadefs::create_association,
        ),
        route(
            M::DELETE,
            "/v2/metadefs/namespaces/{namespace}/resource_types/{resource_type}",
            metadefs::delete_association,
        ),
        route(M::GET, "/v2/schemas/image", schema_image),
        route(M::GET, "/v2/schemas/images", schema_images),
        route(M::GET, "/v2/schemas/member", schema_member),
        route(M::GET, "/v2/schemas/members", schema_members),
        route(M::GET, "/v2/schemas/metadefs/{kind}", schema_metadefs),
    ]
}

/// Every `(method, path template)` the image [`router`] serves, in the order of its
/// definition. Built from the same list as the router, so the two cannot disagree;
/// HEAD appears only where it is routed explicitly (nowhere at present: axum answers
/// HEAD for every GET implicitly). Meant for drift tests against
/// `docs/openapi/image.json`.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The image API router: the routes of [`route_table`], a Glance-shaped 404 for
/// unknown paths and 405 for unrouted methods, and an `X-Openstack-Request-Id` on
/// every response.
///
/// # Panics
/// When a route has no row in [`policy::ENDPOINTS`] (see the policy module).
pub fn router(state: ImageState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |r, (method, path, mr)| {
            let row = policy::row(&method, path)
                .unwrap_or_else(|| panic!("{method} {path} has no policy row"));
            let guard = policy::Guard {
                state: state.clone(),
                row,
            };
            r.route(
                path,
                mr.route_layer(axum::middleware::from_fn_with_state(guard, policy::guard)),
            )
        })
        .fallback(not_found)
        .method_not_allowed_fallback(bad_method)
        .with_state(state)
        .layer(axum::middleware::from_fn(request_id))
}

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = Uuid::new_v4();
    req.extensions_mut().insert(RequestId(id));
    let span = tracing::info_span!("image", request_id = %format!("req-{id}"), method = %req.method(), path = %req.uri().path());
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    if let Ok(v) = HeaderValue::from_str(&format!("req-{id}")) {
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    resp
}

pub(crate) fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("127.0.0.1:9292");
    format!("{}://{host}", apicore::util::link_scheme(headers))
}

async fn versions_root(State(st): State<ImageState>, headers: HeaderMap) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(view::versions(&base(&headers), st.cache.is_some())),
    )
        .into_response()
}

async fn versions(State(st): State<ImageState>, headers: HeaderMap) -> Json<Value> {
    Json(view::versions(&base(&headers), st.cache.is_some()))
}

async fn not_found() -> ImageError {
    ImageError::new(StatusCode::NOT_FOUND, "The resource could not be found.")
}

async fn bad_method() -> ImageError {
    ImageError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "The method is not allowed for the requested URL.",
    )
}

/// The image `id` if the caller may see it.
pub(crate) fn visible(
    st: &ImageState,
    id: &str,
    caller: &Caller,
) -> Result<domain::image::Image, ImageError> {
    ImageId::parse(id)
        .and_then(|iid| st.engine.world().read().image(&iid).cloned())
        .filter(|i| i.visible_to(&caller.ctx()))
        .ok_or_else(|| ImageError::image_not_found(id))
}

/// An image as its API shows it: Glance's attributes, its stores, and its locations
/// and `direct_url` as the location options ask.
pub(crate) fn image_view(st: &ImageState, img: &domain::image::Image, caller: &Caller) -> Value {
    let mut v = view::image(img, &locations::stores_shown(st, img));
    locations::decorate(st, img, caller, &mut v);
    v
}

/// GET /v2/images
async fn list(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ImageError> {
    let query = list::ListQuery::parse(&q)?;
    let ctx = caller.ctx();
    let mut images: Vec<domain::image::Image> = {
        let v = st.engine.world().read();
        v.images()
            .values()
            .map(|r| &r.state)
            .filter(|i| i.visible_to(&ctx) && query.matches(i, &ctx))
            .cloned()
            .collect()
    };
    query.sort(&mut images);
    let start = match &query.marker {
        None => 0,
        Some(m) => {
            images
                .iter()
                .position(|i| i.spec.id.to_string() == *m)
                .ok_or_else(|| {
                    ImageError::bad_request(format!(
                        "Invalid marker. Image {m} could not be found."
                    ))
                })?
                + 1
        }
    };
    let page: Vec<_> = images.iter().skip(start).take(query.limit).collect();
    let mut body = json!({
        "images": page.iter().map(|i| image_view(&st, i, &caller)).collect::<Vec<_>>(),
        "first": query.first_link(),
        "schema": "/v2/schemas/images",
    });
    if start + page.len() < images.len() {
        if let Some(last) = page.last() {
            body["next"] = Value::String(query.next_link(&last.spec.id.to_string()));
        }
    }
    Ok(Json(body))
}

/// GET /v2/images/{id}
async fn show(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<Json<Value>, ImageError> {
    Ok(Json({
        let img = visible(&st, &id, &caller)?;
        image_view(&st, &img, &caller)
    }))
}

/// GET /v2/images/{id}/tasks (Glance 2.12): the import tasks of an image (its
/// `api_image_import` tasks, oldest first); clients such as tempest poll it until every
/// task has ended.
async fn image_tasks(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<Json<Value>, ImageError> {
    let img = visible(&st, &id, &caller)?;
    Ok(Json(serde_json::json!({
        "tasks": tasks::of_image(&st, &img.spec.id.to_string()),
    })))
}

pub(crate) async fn read_json(body: Body) -> Result<Value, ImageError> {
    let bytes = axum::body::to_bytes(body, JSON_LIMIT).await.map_err(|_| {
        ImageError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large.")
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|_| ImageError::bad_request("Malformed JSON in request body."))
}

/// POST /v2/images
async fn create(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ImageError> {
    let body = read_json(body).await?;
    let (spec, extra) = parse::create(&body, &caller.project)?;
    let id = spec.id;
    st.engine
        .image(
            &id,
            ImageCommand::CreateWith(spec, extra),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    let img = visible(&st, &id.to_string(), &caller)?;
    tracing::info!(image = %id, "image created");
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("{}/v2/images/{id}", base(&headers)),
        )],
        Json(image_view(&st, &img, &caller)),
    )
        .into_response())
}

/// PATCH /v2/images/{id}
async fn update(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path,
    body: Body,
) -> Result<Response, ImageError> {
    let img = visible(&st, &id, &caller)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(draft) = parse::PatchDraft::of_media_type(ct) else {
        let mut resp = ImageError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Image PATCH expects Content-Type one of: {}",
                parse::PATCH_MEDIA_TYPES
            ),
        )
        .into_response();
        resp.headers_mut().insert(
            "accept-patch",
            HeaderValue::from_static(parse::PATCH_MEDIA_TYPES),
        );
        return Ok(resp);
    };
    let body = read_json(body).await?;
    let ops = parse::patch(&body, draft, &img)?;
    let cmd = if ops.iter().any(|o| matches!(o, parse::PatchOp::Location(_))) {
        ImageCommand::Patch(locations::steps(&st, &img, ops).await?)
    } else {
        ImageCommand::Update(
            ops.into_iter()
                .filter_map(|o| match o {
                    parse::PatchOp::Change(c) => Some(c),
                    parse::PatchOp::Location(_) => None,
                })
                .collect(),
        )
    };
    st.engine
        .image(&img.spec.id, cmd, &caller.ctx(), &caller.meta())
        .await?;
    // After an owner change the caller may no longer see the image: Glance answers
    // with the image it saved all the same.
    let img = st
        .engine
        .world()
        .read()
        .image(&img.spec.id)
        .cloned()
        .ok_or_else(|| ImageError::image_not_found(&id))?;
    Ok(Json(image_view(&st, &img, &caller)).into_response())
}

/// DELETE /v2/images/{id}
async fn delete(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, ImageError> {
    let img = visible(&st, &id, &caller)?;
    st.engine
        .image(
            &img.spec.id,
            ImageCommand::Delete,
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    for store in st.stores.iter() {
        st.store
            .remove_in(st.store_dir(store), &img.spec.id)
            .await?;
    }
    st.store.unstage(&img.spec.id).await?;
    if let Some(Err(e)) = st.cache.as_ref().map(|c| c.forget(&img.spec.id)) {
        // The image is gone: a stale cache entry is never served (downloads look the
        // image up first) and a clear or prune removes it.
        tracing::warn!(image = %id, error = %e, "cannot remove a deleted image from the image cache");
    }
    tracing::info!(image = %id, "image deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// PUT /v2/images/{id}/file
async fn upload(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path,
    body: Body,
) -> Result<StatusCode, ImageError> {
    let img = visible(&st, &id, &caller)?;
    let iid = img.spec.id;
    check_data_request(&st, &headers)?;
    let meta = caller.meta();
    st.engine
        .image(&iid, ImageCommand::StartUpload, &caller.ctx(), &meta)
        .await?;
    // Formats are set: StartUpload refuses an image without them.
    let check = store::FormatCheck::of_image(&img.spec);
    // The rest runs in its own task: a client that goes away mid-upload drops this
    // handler, not the upload's ending (abort back to `queued`, or finish).
    let task = tokio::spawn(async move {
        let default = st.default_store().to_string();
        let written = store_data(&st, &iid, &default, body.into_data_stream(), &check).await;
        let stored = match written {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(image = %iid, error = %e, "upload failed: image back to queued");
                st.engine
                    .image(&iid, ImageCommand::AbortUpload, &caller.ctx(), &meta)
                    .await?;
                return Err(store_error(e));
            }
        };
        let cmd = ImageCommand::FinishInspectedUpload {
            data: stored.data,
            virtual_size: stored.virtual_size,
        };
        if let Err(e) = st.engine.image(&iid, cmd, &caller.ctx(), &meta).await {
            // Deleted (or otherwise changed) while uploading: the data has no image.
            st.store.remove(&iid).await?;
            return Err(e.into());
        }
        Ok(())
    });
    task.await
        .map_err(|e| ImageError::Engine(format!("upload task: {e}")))??;
    tracing::info!(image = %iid, "image data stored");
    Ok(StatusCode::NO_CONTENT)
}

/// The checks of a data request (upload, stage) before anything is appended: the
/// content type, and a declared `Content-Length` within [`ImageState::max_size`] (413).
pub(crate) fn check_data_request(st: &ImageState, headers: &HeaderMap) -> Result<(), ImageError> {
    check_octet_stream(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_size) {
        return Err(ImageError::too_large(st.max_size));
    }
    Ok(())
}

/// A data request's `Content-Type`, when given, must be `application/octet-stream`
/// (415 otherwise), as Glance's upload and stage.
pub(crate) fn check_octet_stream(headers: &HeaderMap) -> Result<(), ImageError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if ct.split(';').next().unwrap_or("").trim() != "application/octet-stream" {
            return Err(ImageError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Unsupported Content-Type {ct:?}: use application/octet-stream"),
            ));
        }
    }
    Ok(())
}

/// The one path image data takes into the store: `PUT .../file` and both import
/// methods (the staged file of `glance-direct`, the body of a `web-download`) stream
/// through here, so every check of stored data applies to all of them alike. At most
/// [`ImageState::max_size`] bytes; the file is durable when this returns.
pub(crate) async fn store_data<S, E>(
    st: &ImageState,
    iid: &ImageId,
    store: &str,
    body: S,
    check: &store::FormatCheck,
) -> Result<store::Stored, store::StoreError>
where
    S: futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    st.store
        .write_in(st.store_dir(store), iid, body, st.max_size, check)
        .await
}

/// The file of an image's data: in the first of its stores (by weight) that has it.
pub(crate) fn data_path(st: &ImageState, img: &domain::image::Image) -> std::path::PathBuf {
    st.stores().data_path(&st.store, img)
}

/// The client's view of a failed write of data.
pub(crate) fn store_error(e: store::StoreError) -> ImageError {
    match e {
        store::StoreError::TooLarge(n) => ImageError::too_large(n),
        store::StoreError::Body(m) => ImageError::bad_request(format!("Upload interrupted: {m}")),
        // Glance answers its format refusals (InvalidImageData) with 415.
        store::StoreError::Format(m) => ImageError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
        // Only imports have a source; never an upload's answer.
        store::StoreError::Source(m) => ImageError::bad_request(m),
        store::StoreError::Io(io) => ImageError::Storage(io),
    }
}

/// GET /v2/images/{id}/file
async fn download(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<Response, ImageError> {
    let img = visible(&st, &id, &caller)?;
    if img.status == ImageStatus::Deactivated && !caller.ctx().is_admin {
        return Err(ImageError::forbidden(
            "The requested image has been deactivated. Image data download is forbidden.",
        ));
    }
    let usable = matches!(img.status, ImageStatus::Active | ImageStatus::Deactivated);
    let Some(data) = img.data.as_ref().filter(|_| usable) else {
        if usable && !img.locations.is_empty() {
            return locations::download(&img).await;
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    // Glance's cache middleware: an active image's download is served from the cache
    // when it is there (a hit), else from its store while the cache fills behind it.
    // Deactivated images never come from the cache.
    let cached = match st
        .cache
        .as_ref()
        .filter(|_| img.status == ImageStatus::Active)
    {
        None => None,
        Some(cache) => match cache.hit(&img.spec.id) {
            Some(f) => {
                tracing::debug!(image = %id, "image cache hit");
                Some(tokio::fs::File::from_std(f))
            }
            None => {
                let (p, img) = (st.prefetcher(cache.clone()), img.clone());
                tokio::spawn(async move {
                    if let Err(e) = p.fetch(&img).await {
                        tracing::warn!(image = %img.spec.id, error = %e, "caching a downloaded image failed");
                    }
                });
                None
            }
        },
    };
    let opened = match cached {
        Some(f) => Ok(f),
        None => tokio::fs::File::open(data_path(&st, &img)).await,
    };
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "The data of image {id} is not in this image service's directory (image files are local to the process that stored them unless --image-dir is shared)."
                ),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let stream = futures::stream::unfold(Some(file), |f| async move {
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
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, data.size.to_string()),
            (
                header::HeaderName::from_static("content-md5"),
                data.checksum.clone(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// PUT /v2/images/{id}/tags/{tag}: 204, also when the image has the tag already.
async fn add_tag(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(id, tag): Path2,
) -> Result<StatusCode, ImageError> {
    let img = visible(&st, &id, &caller)?;
    st.engine
        .image(
            &img.spec.id,
            ImageCommand::AddTag(tag),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /v2/images/{id}/tags/{tag}: 204; 404 when the image lacks the tag.
async fn remove_tag(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(id, tag): Path2,
) -> Result<StatusCode, ImageError> {
    let img = visible(&st, &id, &caller)?;
    st.engine
        .image(
            &img.spec.id,
            ImageCommand::RemoveTag(tag),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /v2/images/{id}/actions/deactivate: 204 (also when already deactivated).
async fn deactivate(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, ImageError> {
    image_action(&st, &caller, &id, ImageCommand::Deactivate).await
}

/// POST /v2/images/{id}/actions/reactivate: 204 (also when already active).
async fn reactivate(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, ImageError> {
    image_action(&st, &caller, &id, ImageCommand::Reactivate).await
}

async fn image_action(
    st: &ImageState,
    caller: &Caller,
    id: &str,
    cmd: ImageCommand,
) -> Result<StatusCode, ImageError> {
    let img = visible(st, id, caller)?;
    st.engine
        .image(&img.spec.id, cmd, &caller.ctx(), &caller.meta())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /v2/schemas/image (Glance's schema of an image).
async fn schema_image() -> Json<Value> {
    Json(parse::image_schema())
}

/// GET /v2/schemas/images
async fn schema_images() -> Json<Value> {
    Json(view::collection_schema("images", parse::image_schema()))
}

/// GET /v2/schemas/member
async fn schema_member() -> Json<Value> {
    Json(view::member_schema())
}

/// Glance's metadata-definition schemas (namespace, object, property, resource type,
/// tag, and their collections), as Glance serves them (the `metadefs` module serves the
/// API they describe).
const METADEFS_SCHEMAS: &str = include_str!("metadefs-schemas.json");

/// GET /v2/schemas/metadefs/{kind}
async fn schema_metadefs(Path(kind): Path) -> Result<Json<Value>, ImageError> {
    let all: Value = serde_json::from_str(METADEFS_SCHEMAS)
        .map_err(|e| ImageError::Engine(format!("metadefs-schemas.json: {e}")))?;
    all.get(&kind)
        .cloned()
        .map(Json)
        .ok_or_else(|| ImageError::new(StatusCode::NOT_FOUND, "The resource could not be found."))
}

/// GET /v2/schemas/members
async fn schema_members() -> Json<Value> {
    Json(view::members_schema())
}
