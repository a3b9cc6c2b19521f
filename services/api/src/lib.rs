//! The Stratus compute API: Nova's v2.1 API (with microversions up to
//! [`microversion::Version::MAX`]) and the native `/v1` event history, over axum.
//!
//! Invariants:
//! - The API never mutates state except through `engine.instance` / `engine.flavor`
//!   commands; reads come from `engine.world` views, which already reflect a command
//!   when the engine returns Ok (read-your-writes).
//! - Bad input (malformed JSON, wrong types, missing fields, unknown references,
//!   unknown actions, oversized bodies) is refused with a Nova-shaped 4xx *before* any
//!   command runs, so it appends nothing.
//! - Another project's server is a 404, never a 403, unless the caller is admin.
//! - Every response carries `x-openstack-request-id` / `x-compute-request-id`; every
//!   `/v2.1` response carries the microversion headers and `Vary`.
//!
//! Layout: [`context`] (request id, auth, body/query extractors), [`microversion`],
//! [`parse`] (validation), [`view`] (response shaping), [`error`] (the one HTTP error
//! mapping), and thin handlers in [`servers`], [`flavors`] and [`misc`].
//!
//! What each microversion changes here: 2.3 extended server attributes (admin), 2.9
//! `locked`, 2.16 `host_status` (admin), 2.19 server `description`, 2.25
//! `block_migration: "auto"`, 2.26 `tags: []`, 2.32 network `tag`, 2.37 `networks`
//! required (`none`/`auto`), 2.47 embedded flavor, 2.55 flavor `description` and
//! PUT /flavors/{id}, 2.56 migrate `host`, 2.57 no `personality`, 2.61 flavor
//! `extra_specs`, 2.63 `trusted_image_certificates`, 2.66 `changes-before`, 2.68 no
//! live-migrate `force`, 2.71 `server_groups` (show), 2.73 `locked_reason`, 2.74
//! create `host`/`hypervisor_hostname`, 2.75 flavor `swap: 0` and strict server list
//! query keys, 2.77 unshelve `availability_zone`, 2.90 `OS-EXT-SRV-ATTR:hostname` for
//! all, 2.96 `pinned_availability_zone`, 2.97 (manila shares: no server change here),
//! 2.98 image `properties` recorded at boot, 2.99 (spice-direct consoles: none here),
//! 2.100 `scheduler_hints`.

pub mod context;
pub mod error;
pub mod flavors;
pub mod microversion;
pub mod misc;
pub mod parse;
pub mod servers;
pub mod util;
pub mod view;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use microversion::Version;

/// How callers authenticate.
#[derive(Debug, Clone, Default)]
pub enum AuthMode {
    /// Development mode: `X-Auth-Token: <user>:<project>`; user `admin` is admin.
    #[default]
    NoAuth,
    /// Keystone tokens issued by the identity service, validated in-process against
    /// the same signing key and the identity view of this process's world (user,
    /// project and roles; the `admin` role is admin). A missing or invalid token is a
    /// 401 `{"error": {"code": 401, "title": "Unauthorized", ...}}`.
    Keystone(Arc<identity::Tokens>),
}

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The engine (log, world, config).
    pub engine: Arc<engine::Engine>,
    /// Authentication mode.
    pub auth: AuthMode,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("auth", &self.auth)
            .finish()
    }
}

/// The whole HTTP API (serve it on 127.0.0.1:8774).
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/", get(misc::versions))
        .route("/v2.1", get(misc::version))
        .route("/v2.1/", get(misc::version))
        .route("/v2.1/servers", get(servers::index).post(servers::create))
        .route("/v2.1/servers/detail", get(servers::detail))
        .route(
            "/v2.1/servers/{id}",
            get(servers::show)
                .put(servers::update)
                .delete(servers::delete),
        )
        .route("/v2.1/servers/{id}/action", post(servers::action))
        .route("/v2.1/flavors", get(flavors::index).post(flavors::create))
        .route("/v2.1/flavors/detail", get(flavors::detail))
        .route(
            "/v2.1/flavors/{id}",
            get(flavors::show)
                .put(flavors::update)
                .delete(flavors::delete),
        )
        .route(
            "/v2.1/flavors/{id}/os-extra_specs",
            get(flavors::specs_index).post(flavors::specs_create),
        )
        .route(
            "/v2.1/flavors/{id}/os-extra_specs/{key}",
            get(flavors::specs_show)
                .put(flavors::specs_update)
                .delete(flavors::specs_delete),
        )
        .route("/v1/instances/{id}/events", get(misc::instance_events))
        .fallback(misc::not_found)
        .method_not_allowed_fallback(misc::bad_method)
        .with_state(state);
    // The context middleware runs before routing (it may rewrite the path).
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::from_fn(context::request_context))
}
