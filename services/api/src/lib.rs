//! The Stratus compute API: Nova's v2.1 API (with microversions up to
//! [`microversion::Version::MAX`]) and the native `/v1` event history, over axum.
//!
//! Invariants:
//! - The API never mutates state except through `engine.instance` / `engine.flavor`
//!   commands; reads come from `engine.world()` views, which already reflect a command
//!   when the engine returns Ok (read-your-writes).
//! - Bad input (malformed JSON, wrong types, missing fields, unknown references,
//!   unknown actions, oversized bodies) is refused with a Nova-shaped 4xx *before* any
//!   command runs, so it appends nothing.
//! - Another project's server is a 404, never a 403, unless the caller is admin.
//! - Every route is registered with its policy row ([`Registrar`], [`policy`]): readers
//!   get 403 on writes, non-admins 403 on admin-only operations, before anything runs.
//! - Every response carries `x-openstack-request-id` / `x-compute-request-id`; every
//!   `/v2.1` response carries the microversion headers and `Vary`.
//!
//! Layout: [`context`] (request id, auth, body/query extractors), [`microversion`],
//! [`body`] (typed request bodies and their Nova-shaped 400s), [`actions`] (every
//! server action, declared once), [`parse`] (validation of the other bodies and
//! queries), [`view`] (response shaping), [`error`] (the one HTTP error mapping), and
//! thin handlers in [`servers`], [`flavors`] (with flavor access lists; [`extra_specs`]
//! holds Nova's extra-spec validation table), [`aggregates`] (host aggregates and
//! availability zones), [`extensions`] (Nova's frozen extension list) and [`misc`]
//! (version discovery).
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

pub mod actions;
pub mod aggregates;
pub mod audit;
pub mod body;
pub mod consoles;
pub mod context;
pub mod error;
pub mod extensions;
pub mod external_events;
pub mod extra_specs;
pub mod flavors;
pub mod floating_ip_proxy;
pub mod hosts;
pub mod hypervisors;
pub mod image_proxy;
pub mod instance_actions;
pub mod keypairs;
pub mod keys;
pub mod metadata;
pub mod microversion;
pub mod migrations;
pub mod misc;
pub mod notifications;
pub mod parse;
pub mod policy;
pub mod quotas;
pub mod security_group_proxy;
pub mod server_groups;
pub mod server_info;
pub mod server_networks;
pub mod server_security_groups;
pub mod servers;
pub mod snapshots;
pub mod status;
pub mod subscriptions;
pub mod tags;
pub mod usage;
pub use apicore::util;
pub mod view;

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

pub use error::ApiError;
pub use microversion::Version;

pub use apicore::auth::AuthMode;

/// A hypervisor's console logs (the all-in-one's libvirt driver): the serial console
/// of an instance, None when the driver has none (then `os-getConsoleOutput` answers
/// from the instance record). An `axum::Extension` of the router.
#[derive(Clone)]
pub struct ConsoleLogs(pub Arc<dyn Fn(domain::InstanceId) -> Option<String> + Send + Sync>);

impl std::fmt::Debug for ConsoleLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleLogs")
    }
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

/// Builds the router from the policy table: every route is added with [`Registrar::route`],
/// which looks up the route's rows in [`policy::ENDPOINTS`] (panicking when there are
/// none, so no endpoint can exist without a policy entry) and wraps the handler in
/// [`policy::guard`].
pub struct Registrar {
    state: ApiState,
    router: Router<ApiState>,
    routes: std::collections::BTreeMap<&'static str, MethodRouter<ApiState>>,
    registered: Vec<(Method, &'static str)>,
}

impl Registrar {
    /// An empty registrar.
    pub fn new(state: ApiState) -> Self {
        Registrar {
            state,
            router: Router::new(),
            routes: Default::default(),
            registered: Vec::new(),
        }
    }

    /// Routes `method path` to `handler` under the policy rows of that endpoint.
    ///
    /// # Panics
    /// When [`policy::ENDPOINTS`] has no row for `method path`, or it was routed already.
    pub fn route<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, ApiState>,
        T: 'static,
    {
        let rows = policy::rows(&method, path);
        assert!(
            !rows.is_empty(),
            "no policy row for {method} {path}: add it to policy::ENDPOINTS"
        );
        assert!(
            !self.registered.contains(&(method.clone(), path)),
            "{method} {path} routed twice"
        );
        let guard = policy::Guard {
            state: self.state.clone(),
            rows,
        };
        let filter = MethodFilter::try_from(method.clone()).expect("routable method");
        let one =
            on(filter, handler).layer(axum::middleware::from_fn_with_state(guard, policy::guard));
        let merged = match self.routes.remove(path) {
            Some(prev) => prev.merge(one),
            None => one,
        };
        self.routes.insert(path, merged);
        self.registered.push((method, path));
        self
    }

    /// The `(method, path)` pairs routed so far.
    pub fn registered(&self) -> &[(Method, &'static str)] {
        &self.registered
    }

    /// The finished router (unknown routes 404, unknown methods 405, Nova-shaped).
    pub fn finish(self) -> Router {
        let mut router = self.router;
        for (path, mr) in self.routes {
            router = router.route(path, mr);
        }
        router
            .fallback(misc::not_found)
            .method_not_allowed_fallback(misc::bad_method)
            .with_state(self.state)
    }
}

/// Registers every compute API route (the only place routes are added).
pub fn routes(state: ApiState) -> Registrar {
    use Method as M;
    Registrar::new(state)
        .route(M::GET, "/", misc::versions)
        .route(M::GET, "/v2.1", misc::version)
        .route(M::GET, "/v2.1/", misc::version)
        .route(M::GET, "/v2", misc::legacy_version)
        .route(M::GET, "/v2/", misc::legacy_version)
        .route(M::GET, "/v2.1/extensions", extensions::index)
        .route(M::GET, "/v2.1/extensions/{alias}", extensions::show)
        .route(M::GET, "/v2.1/servers", servers::index)
        .route(M::POST, "/v2.1/servers", servers::create)
        .route(M::GET, "/v2.1/servers/detail", servers::detail)
        .route(M::GET, "/v2.1/servers/{id}", servers::show)
        .route(M::PUT, "/v2.1/servers/{id}", servers::update)
        .route(M::DELETE, "/v2.1/servers/{id}", servers::delete)
        .route(M::POST, policy::ACTION_PATH, servers::action)
        // Server sub-resources (issue 12).
        .route(M::GET, "/v2.1/servers/{id}/metadata", metadata::index)
        .route(M::POST, "/v2.1/servers/{id}/metadata", metadata::create)
        .route(M::PUT, "/v2.1/servers/{id}/metadata", metadata::update_all)
        .route(M::GET, "/v2.1/servers/{id}/metadata/{key}", metadata::show)
        .route(
            M::PUT,
            "/v2.1/servers/{id}/metadata/{key}",
            metadata::update,
        )
        .route(
            M::DELETE,
            "/v2.1/servers/{id}/metadata/{key}",
            metadata::delete,
        )
        .route(M::GET, "/v2.1/servers/{id}/tags", tags::index)
        .route(M::PUT, "/v2.1/servers/{id}/tags", tags::update_all)
        .route(M::DELETE, "/v2.1/servers/{id}/tags", tags::delete_all)
        .route(M::GET, "/v2.1/servers/{id}/tags/{tag}", tags::show)
        .route(M::PUT, "/v2.1/servers/{id}/tags/{tag}", tags::update)
        .route(M::DELETE, "/v2.1/servers/{id}/tags/{tag}", tags::delete)
        .route(M::GET, "/v2.1/servers/{id}/ips", server_networks::ips_index)
        .route(
            M::GET,
            "/v2.1/servers/{id}/ips/{network}",
            server_networks::ips_show,
        )
        .route(
            M::GET,
            "/v2.1/servers/{id}/os-interface",
            server_networks::interfaces_index,
        )
        .route(
            M::POST,
            "/v2.1/servers/{id}/os-interface",
            server_networks::interfaces_create,
        )
        .route(
            M::GET,
            "/v2.1/servers/{id}/os-interface/{port_id}",
            server_networks::interfaces_show,
        )
        .route(
            M::DELETE,
            "/v2.1/servers/{id}/os-interface/{port_id}",
            server_networks::interfaces_delete,
        )
        .route(
            M::GET,
            "/v2.1/servers/{id}/os-server-password",
            server_info::password_show,
        )
        .route(
            M::DELETE,
            "/v2.1/servers/{id}/os-server-password",
            server_info::password_clear,
        )
        .route(
            M::GET,
            "/v2.1/servers/{id}/diagnostics",
            server_info::diagnostics,
        )
        // Nova's image proxy (deprecated: 2.35 / 2.38).
        .route(M::GET, "/v2.1/images", image_proxy::index)
        .route(M::GET, "/v2.1/images/detail", image_proxy::detail)
        .route(M::GET, "/v2.1/images/{id}", image_proxy::show)
        .route(M::DELETE, "/v2.1/images/{id}", image_proxy::delete)
        .route(
            M::GET,
            "/v2.1/images/{id}/metadata",
            image_proxy::metadata_index,
        )
        .route(
            M::POST,
            "/v2.1/images/{id}/metadata",
            image_proxy::metadata_create,
        )
        .route(
            M::PUT,
            "/v2.1/images/{id}/metadata",
            image_proxy::metadata_update_all,
        )
        .route(
            M::GET,
            "/v2.1/images/{id}/metadata/{key}",
            image_proxy::metadata_show,
        )
        .route(
            M::PUT,
            "/v2.1/images/{id}/metadata/{key}",
            image_proxy::metadata_update,
        )
        .route(
            M::DELETE,
            "/v2.1/images/{id}/metadata/{key}",
            image_proxy::metadata_delete,
        )
        .route(M::GET, "/v2.1/flavors", flavors::index)
        .route(M::POST, "/v2.1/flavors", flavors::create)
        .route(M::GET, "/v2.1/flavors/detail", flavors::detail)
        .route(M::GET, "/v2.1/flavors/{id}", flavors::show)
        .route(M::PUT, "/v2.1/flavors/{id}", flavors::update)
        .route(M::DELETE, "/v2.1/flavors/{id}", flavors::delete)
        .route(
            M::GET,
            "/v2.1/flavors/{id}/os-extra_specs",
            flavors::specs_index,
        )
        .route(
            M::POST,
            "/v2.1/flavors/{id}/os-extra_specs",
            flavors::specs_create,
        )
        .route(
            M::GET,
            "/v2.1/flavors/{id}/os-extra_specs/{key}",
            flavors::specs_show,
        )
        .route(
            M::PUT,
            "/v2.1/flavors/{id}/os-extra_specs/{key}",
            flavors::specs_update,
        )
        .route(
            M::DELETE,
            "/v2.1/flavors/{id}/os-extra_specs/{key}",
            flavors::specs_delete,
        )
        .route(
            M::GET,
            "/v2.1/flavors/{id}/os-flavor-access",
            flavors::access_index,
        )
        .route(M::POST, policy::FLAVOR_ACTION_PATH, flavors::action)
        .route(M::GET, "/v2.1/os-server-groups", server_groups::index)
        .route(M::POST, "/v2.1/os-server-groups", server_groups::create)
        .route(M::GET, "/v2.1/os-server-groups/{id}", server_groups::show)
        .route(
            M::DELETE,
            "/v2.1/os-server-groups/{id}",
            server_groups::delete,
        )
        .route(M::GET, "/v2.1/os-keypairs", keypairs::index)
        .route(M::POST, "/v2.1/os-keypairs", keypairs::create)
        .route(M::GET, "/v2.1/os-keypairs/{id}", keypairs::show)
        .route(M::DELETE, "/v2.1/os-keypairs/{id}", keypairs::delete)
        .route(M::GET, "/v2.1/os-services", hosts::services_index)
        .route(M::PUT, "/v2.1/os-services/{id}", hosts::services_update)
        .route(M::DELETE, "/v2.1/os-services/{id}", hosts::services_delete)
        .route(M::GET, "/v2.1/os-hypervisors", hypervisors::index)
        .route(M::GET, "/v2.1/os-hypervisors/detail", hypervisors::detail)
        .route(
            M::GET,
            "/v2.1/os-hypervisors/statistics",
            hypervisors::statistics,
        )
        .route(M::GET, "/v2.1/os-hypervisors/{id}", hypervisors::show)
        .route(
            M::GET,
            "/v2.1/os-hypervisors/{id}/uptime",
            hypervisors::uptime,
        )
        .route(
            M::GET,
            "/v2.1/os-hypervisors/{id}/search",
            hypervisors::search,
        )
        .route(
            M::GET,
            "/v2.1/os-hypervisors/{id}/servers",
            hypervisors::servers,
        )
        .route(M::GET, "/v2.1/os-hosts", hosts::hosts_index)
        .route(M::GET, "/v2.1/os-hosts/{id}", hosts::hosts_show)
        .route(M::PUT, "/v2.1/os-hosts/{id}", hosts::hosts_update)
        .route(M::GET, "/v2.1/os-hosts/{id}/reboot", hosts::hosts_power)
        .route(M::GET, "/v2.1/os-hosts/{id}/shutdown", hosts::hosts_power)
        .route(M::GET, "/v2.1/os-hosts/{id}/startup", hosts::hosts_power)
        .route(M::GET, "/v2.1/os-quota-sets/{id}", quotas::show)
        .route(M::PUT, "/v2.1/os-quota-sets/{id}", quotas::update)
        .route(M::DELETE, "/v2.1/os-quota-sets/{id}", quotas::delete)
        .route(M::GET, "/v2.1/os-quota-sets/{id}/detail", quotas::detail)
        .route(
            M::GET,
            "/v2.1/os-quota-sets/{id}/defaults",
            quotas::defaults,
        )
        .route(M::GET, "/v2.1/os-quota-class-sets/{id}", quotas::class_show)
        .route(
            M::PUT,
            "/v2.1/os-quota-class-sets/{id}",
            quotas::class_update,
        )
        .route(M::GET, "/v2.1/limits", quotas::limits)
        .route(M::GET, "/v2.1/os-aggregates", aggregates::index)
        .route(M::POST, "/v2.1/os-aggregates", aggregates::create)
        .route(M::GET, "/v2.1/os-aggregates/{id}", aggregates::show)
        .route(M::PUT, "/v2.1/os-aggregates/{id}", aggregates::update)
        .route(M::DELETE, "/v2.1/os-aggregates/{id}", aggregates::delete)
        .route(M::POST, policy::AGGREGATE_ACTION_PATH, aggregates::action)
        .route(M::GET, "/v2.1/os-availability-zone", aggregates::zones)
        .route(
            M::GET,
            "/v2.1/os-availability-zone/detail",
            aggregates::zones_detail,
        )
        .route(
            M::GET,
            "/v2.1/servers/{id}/os-instance-actions",
            instance_actions::index,
        )
        .route(
            M::GET,
            "/v2.1/servers/{id}/os-instance-actions/{request_id}",
            instance_actions::show,
        )
        .route(
            M::POST,
            "/v2.1/os-server-external-events",
            external_events::create,
        )
        .route(
            M::POST,
            "/v2.1/servers/{id}/remote-consoles",
            consoles::create,
        )
        .route(
            M::GET,
            "/v2.1/os-console-auth-tokens/{token}",
            consoles::show_token,
        )
        .route(
            M::GET,
            "/v2.1/servers/{id}/os-security-groups",
            server_security_groups::index,
        )
        // Nova's network proxies (floating_ip_proxy.rs).
        .route(
            M::GET,
            "/v2.1/os-networks",
            floating_ip_proxy::networks_index,
        )
        .route(
            M::GET,
            "/v2.1/os-networks/{id}",
            floating_ip_proxy::networks_show,
        )
        .route(
            M::GET,
            "/v2.1/os-tenant-networks",
            floating_ip_proxy::tenant_index,
        )
        .route(
            M::GET,
            "/v2.1/os-tenant-networks/{id}",
            floating_ip_proxy::tenant_show,
        )
        .route(M::GET, "/v2.1/os-floating-ips", floating_ip_proxy::index)
        .route(M::POST, "/v2.1/os-floating-ips", floating_ip_proxy::create)
        .route(
            M::GET,
            "/v2.1/os-floating-ips/{id}",
            floating_ip_proxy::show,
        )
        .route(
            M::DELETE,
            "/v2.1/os-floating-ips/{id}",
            floating_ip_proxy::delete,
        )
        .route(
            M::GET,
            "/v2.1/os-floating-ip-pools",
            floating_ip_proxy::pools,
        )
        // Nova's security group proxies (security_group_proxy.rs).
        .route(
            M::GET,
            "/v2.1/os-security-groups",
            security_group_proxy::index,
        )
        .route(
            M::POST,
            "/v2.1/os-security-groups",
            security_group_proxy::create,
        )
        .route(
            M::GET,
            "/v2.1/os-security-groups/{id}",
            security_group_proxy::show,
        )
        .route(
            M::PUT,
            "/v2.1/os-security-groups/{id}",
            security_group_proxy::update,
        )
        .route(
            M::DELETE,
            "/v2.1/os-security-groups/{id}",
            security_group_proxy::delete,
        )
        .route(
            M::POST,
            "/v2.1/os-security-group-rules",
            security_group_proxy::create_rule,
        )
        .route(
            M::DELETE,
            "/v2.1/os-security-group-rules/{id}",
            security_group_proxy::delete_rule,
        )
        .route(M::GET, "/v2.1/os-migrations", migrations::index)
        .route(
            M::GET,
            "/v2.1/servers/{id}/migrations",
            migrations::server_index,
        )
        .route(
            M::GET,
            "/v2.1/servers/{id}/migrations/{mid}",
            migrations::server_show,
        )
        .route(
            M::POST,
            "/v2.1/servers/{id}/migrations/{mid}/action",
            migrations::server_action,
        )
        .route(
            M::DELETE,
            "/v2.1/servers/{id}/migrations/{mid}",
            migrations::server_delete,
        )
        .route(M::GET, "/v1/instances/{id}/events", misc::instance_events)
        .route(M::GET, "/v1/status", status::show)
        .route(M::GET, "/v1/notifications", notifications::index)
        .route(M::GET, "/v1/notifications/stream", notifications::stream)
        .route(M::GET, "/v1/instances/{id}/state", audit::state)
        .route(M::GET, "/v1/events", audit::events)
        .route(M::GET, "/v1/events/stream", audit::stream)
        // Usage (issue 11).
        .route(M::GET, "/v2.1/os-simple-tenant-usage", usage::index)
        .route(M::GET, "/v2.1/os-simple-tenant-usage/{id}", usage::show)
        .route(
            M::GET,
            "/v2.1/os-instance_usage_audit_log",
            usage::audit_index,
        )
        .route(
            M::GET,
            "/v2.1/os-instance_usage_audit_log/{id}",
            usage::audit_show,
        )
        // Webhook subscriptions to the notifications (issue 11).
        .route(M::POST, "/v1/subscriptions", subscriptions::create)
        .route(M::GET, "/v1/subscriptions", subscriptions::index)
        .route(M::GET, "/v1/subscriptions/{id}", subscriptions::show)
        .route(M::DELETE, "/v1/subscriptions/{id}", subscriptions::delete)
}

/// The whole HTTP API (serve it on 127.0.0.1:8774).
pub fn router(state: ApiState) -> Router {
    let api = routes(state).finish();
    // The context middleware runs before routing (it may rewrite the path).
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::from_fn(context::request_context))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(dir: &std::path::Path) -> ApiState {
        let log: Arc<dyn eventlog::EventLog> =
            eventlog::EmbeddedLog::open(&dir.join("log")).unwrap();
        let checkpoints =
            Arc::new(eventlog::EmbeddedCheckpoints::open(&dir.join("c.redb")).unwrap());
        let engine = Arc::new(engine::Engine::new(
            log,
            Arc::new(projections::World::default()),
            checkpoints,
            Default::default(),
            std::time::Duration::from_secs(1),
        ));
        ApiState {
            engine,
            auth: AuthMode::NoAuth,
        }
    }

    /// A route without a policy row cannot be registered.
    #[tokio::test]
    #[should_panic(expected = "no policy row for GET /v2.1/os-no-such-resource")]
    async fn a_route_without_a_policy_row_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _ = Registrar::new(state(dir.path())).route(
            Method::GET,
            "/v2.1/os-no-such-resource",
            misc::not_found,
        );
    }

    /// Every policy row is routed (the registrar checks the other direction).
    #[tokio::test]
    async fn every_row_is_routed() {
        let dir = tempfile::tempdir().unwrap();
        let reg = routes(state(dir.path()));
        for row in policy::ENDPOINTS.iter() {
            assert!(
                reg.registered()
                    .iter()
                    .any(|(m, p)| m.as_str() == row.method && *p == row.path),
                "policy row {} {} has no route",
                row.method,
                row.path
            );
        }
    }
}
