//! The Stratus network service: a Neutron v2.0 subset over axum on its own listener
//! (`--network-listen`, default 127.0.0.1:9696): networks, subnets and ports with exact
//! IP address management, event-sourced on `stratus.api.network.<uuid>`.
//!
//! Invariants:
//! - [`router`] and [`route_table`] come from one list of routes, each with its policy
//!   row ([`ROUTES`]): a route cannot exist without a rule, and docs/POLICY.md is
//!   checked against the table.
//! - Records change only through `engine.network(..)` commands; reads come from the
//!   world (read-your-writes after a 2xx).
//! - Every answer is JSON; errors have Neutron's shape (`NeutronError`), also for
//!   unknown paths and methods. A refused request appends nothing.
//! - A resource the caller may not see is a 404 (`NetworkNotFound`...), never a 403:
//!   nothing of another project leaks. A 403 is for a resource the caller sees but may
//!   not change, or an attribute its role may not set.

pub mod auth;
pub mod body;
pub mod bootstrap;
pub mod error;
mod extract;
pub mod floating_ips;
pub mod list;
mod networks;
pub mod pools;
mod ports;
pub mod quotas;
mod routers;
pub mod security_groups;
mod subnets;
pub mod tags;
pub mod view;

use std::sync::Arc;

use apicore::auth::Rule;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use domain::network::{Network, NetworkCommand, Port, Subnet};
use domain::{NetworkId, PortId, SubnetId};
use serde_json::{json, Value};
use uuid::Uuid;

pub use error::NetworkError;

use auth::Caller;

/// Maximum size of a request body.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Shared state of the network handlers.
#[derive(Clone)]
pub struct NetworkState {
    /// The engine (log, world).
    pub engine: Arc<engine::Engine>,
    /// Authentication mode (shared with the compute API).
    pub auth: apicore::auth::AuthMode,
}

impl std::fmt::Debug for NetworkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkState").finish()
    }
}

impl NetworkState {
    /// A live network (after a command: it exists).
    fn network(&self, id: &NetworkId) -> Result<Network, NetworkError> {
        self.engine
            .world()
            .read()
            .networks()
            .get(id)
            .cloned()
            .ok_or_else(|| domain::network::NetError::network_not_found(id).into())
    }

    /// A network the caller may see, by the id text of a path or body (404 otherwise).
    fn visible_network(&self, id: &str, c: &Caller) -> Result<Network, NetworkError> {
        let views = self.engine.world().read();
        NetworkId::parse(id)
            .and_then(|nid| views.networks().get(&nid))
            .filter(|n| view::network_visible(n, c))
            .cloned()
            .ok_or_else(|| domain::network::NetError::network_not_found(id).into())
    }

    fn subnet(&self, id: &SubnetId) -> Result<Subnet, NetworkError> {
        self.engine
            .world()
            .read()
            .networks()
            .subnet(id)
            .cloned()
            .ok_or_else(|| domain::network::NetError::subnet_not_found(id).into())
    }

    /// A subnet the caller may see, with its network.
    fn visible_subnet(&self, id: &str, c: &Caller) -> Result<(Network, Subnet), NetworkError> {
        let views = self.engine.world().read();
        let nets = views.networks();
        SubnetId::parse(id)
            .and_then(|sid| {
                let n = nets.get(&nets.subnet_network(&sid)?)?;
                let s = n.subnets.get(&sid)?;
                view::subnet_visible(n, s, c).then(|| (n.clone(), s.clone()))
            })
            .ok_or_else(|| domain::network::NetError::subnet_not_found(id).into())
    }

    fn port(&self, id: &PortId) -> Result<Port, NetworkError> {
        self.engine
            .world()
            .read()
            .networks()
            .port(id)
            .cloned()
            .ok_or_else(|| domain::network::NetError::port_not_found(id).into())
    }

    /// A port the caller may see, with its network.
    fn visible_port(&self, id: &str, c: &Caller) -> Result<(Network, Port), NetworkError> {
        let views = self.engine.world().read();
        let nets = views.networks();
        PortId::parse(id)
            .and_then(|pid| {
                let n = nets.get(&nets.port_network(&pid)?)?;
                let p = n.ports.get(&pid)?;
                view::port_visible(n, p, c).then(|| (n.clone(), p.clone()))
            })
            .ok_or_else(|| domain::network::NetError::port_not_found(id).into())
    }

    /// The NotFound of the resource `path` names (`/v2.0/<collection>/<id>...`) when
    /// the caller may not see it; None when it may, or the path names none.
    fn hidden(&self, path: &str, c: &Caller) -> Option<NetworkError> {
        let mut seg = path.strip_prefix("/v2.0/")?.split('/');
        let (collection, id) = (seg.next()?, seg.next()?);
        let seen = match collection {
            "networks" => self.visible_network(id, c).map(drop),
            "subnets" => self.visible_subnet(id, c).map(drop),
            "ports" => self.visible_port(id, c).map(drop),
            "subnetpools" => pools::visible_pool(self, id, c).map(drop),
            "routers" => self.visible_router(id, c).map(drop),
            "floatingips" => self.visible_fip(id, c).map(drop),
            "security-groups" => security_groups::visible_group(self, id, c).map(drop),
            "security-group-rules" => security_groups::visible_rule(self, id, c).map(drop),
            _ => return None,
        };
        seen.err()
    }

    /// Decides `cmd` on the current state without appending: a command the domain
    /// refuses is refused before its quota is reserved, so bad input appends nothing.
    /// (The real command decides again; a race lost meanwhile is answered then.)
    fn precheck(&self, id: &NetworkId, cmd: &NetworkCommand) -> Result<(), NetworkError> {
        let views = self.engine.world().read();
        let row = views.networks().row(id);
        domain::network::decide(*id, row.map(|r| &r.state), cmd.clone(), engine::now())
            .map(|_| ())
            .map_err(NetworkError::from)
    }

    /// The absolute URL of `path` as the client reached this service.
    fn url(&self, headers: &HeaderMap, path: &str) -> String {
        format!("{}{path}", base(headers))
    }
}

/// The 201 of a create: `{"<resource>": {...}}`, or `{"<resource>s": [...]}` for a
/// bulk create.
fn created(resource: &str, mut views: Vec<Value>, bulk: bool) -> Response {
    let body = if bulk {
        json!({ format!("{resource}s"): views })
    } else {
        json!({ resource: views.pop().unwrap_or(Value::Null) })
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `fields=` of a show.
/// A shown resource: `{"<resource>": view}` with the request's `fields=` selection.
fn shown(resource: &str, view: Value, q: &[(String, String)]) -> Json<Value> {
    let mut body = serde_json::Map::new();
    body.insert(resource.to_string(), list::select(view, &fields(q)));
    Json(Value::Object(body))
}

fn fields(q: &[(String, String)]) -> Vec<String> {
    q.iter()
        .filter(|(k, _)| k == "fields")
        .flat_map(|(_, v)| v.split(',').map(String::from))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The request's id (`req-<uuid>`), set by the middleware.
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub Uuid);

/// One route with its policy: method, path template, who may call it, Neutron's
/// policy name (docs/POLICY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path template as routed.
    pub path: &'static str,
    /// Who may call it (ownership and attribute rules are the handlers').
    pub rule: Rule,
    /// Neutron's policy name.
    pub name: &'static str,
}

const fn ep(method: &'static str, path: &'static str, rule: Rule, name: &'static str) -> Endpoint {
    Endpoint {
        method,
        path,
        rule,
        name,
    }
}

use Rule::{Authenticated, ProjectMember, ProjectReader, Public};

/// The table of routes: the rows given, then the seven tag rows of each
/// `(collection, resource)` (Neutron's `standard-attr-tag`: `<action>_<resource>:tags`
/// rules; reading needs the reader role, changing the resource's own project, which
/// the handlers check).
macro_rules! with_tag_rows {
    ($($row:expr),* $(,)? ; $(($coll:literal, $res:literal)),* $(,)?) => {
        &[
            $($row,)*
            $(
                ep("GET", concat!("/v2.0/", $coll, "/{id}/tags"), ProjectReader, concat!("get_", $res, ":tags")),
                ep("GET", concat!("/v2.0/", $coll, "/{id}/tags/{tag}"), ProjectReader, concat!("get_", $res, ":tags")),
                ep("PUT", concat!("/v2.0/", $coll, "/{id}/tags"), ProjectMember, concat!("update_", $res, ":tags")),
                ep("PUT", concat!("/v2.0/", $coll, "/{id}/tags/{tag}"), ProjectMember, concat!("update_", $res, ":tags")),
                ep("POST", concat!("/v2.0/", $coll, "/{id}/tags"), ProjectMember, concat!("create_", $res, ":tags")),
                ep("DELETE", concat!("/v2.0/", $coll, "/{id}/tags"), ProjectMember, concat!("delete_", $res, ":tags")),
                ep("DELETE", concat!("/v2.0/", $coll, "/{id}/tags/{tag}"), ProjectMember, concat!("delete_", $res, ":tags")),
            )*
        ]
    };
}

/// Every route of the network API with its rule.
pub const ROUTES: &[Endpoint] = with_tag_rows![
    ep("GET", "/", Public, "(none: version discovery)"),
    ep("GET", "/v2.0", Authenticated, "(none: resource index)"),
    ep(
        "GET",
        "/v2.0/extensions",
        Authenticated,
        "(none: extension list)",
    ),
    ep(
        "GET",
        "/v2.0/extensions/{id}",
        Authenticated,
        "(none: extension list)",
    ),
    ep("GET", "/v2.0/agents", ProjectReader, "get_agent"),
    ep("GET", "/v2.0/networks", ProjectReader, "get_network"),
    ep("POST", "/v2.0/networks", ProjectMember, "create_network"),
    ep("GET", "/v2.0/networks/{id}", ProjectReader, "get_network"),
    ep(
        "PUT",
        "/v2.0/networks/{id}",
        ProjectMember,
        "update_network",
    ),
    ep(
        "DELETE",
        "/v2.0/networks/{id}",
        ProjectMember,
        "delete_network",
    ),
    ep("GET", "/v2.0/subnets", ProjectReader, "get_subnet"),
    ep("POST", "/v2.0/subnets", ProjectMember, "create_subnet"),
    ep("GET", "/v2.0/subnets/{id}", ProjectReader, "get_subnet"),
    ep("PUT", "/v2.0/subnets/{id}", ProjectMember, "update_subnet"),
    ep(
        "DELETE",
        "/v2.0/subnets/{id}",
        ProjectMember,
        "delete_subnet",
    ),
    ep("GET", "/v2.0/ports", ProjectReader, "get_port"),
    ep("POST", "/v2.0/ports", ProjectMember, "create_port"),
    ep("GET", "/v2.0/ports/{id}", ProjectReader, "get_port"),
    ep("PUT", "/v2.0/ports/{id}", ProjectMember, "update_port"),
    ep("DELETE", "/v2.0/ports/{id}", ProjectMember, "delete_port"),
    ep("GET", "/v2.0/subnetpools", ProjectReader, "get_subnetpool"),
    ep(
        "POST",
        "/v2.0/subnetpools",
        ProjectMember,
        "create_subnetpool",
    ),
    ep(
        "GET",
        "/v2.0/subnetpools/{id}",
        ProjectReader,
        "get_subnetpool",
    ),
    ep(
        "PUT",
        "/v2.0/subnetpools/{id}",
        ProjectMember,
        "update_subnetpool",
    ),
    ep(
        "DELETE",
        "/v2.0/subnetpools/{id}",
        ProjectMember,
        "delete_subnetpool",
    ),
    ep("GET", "/v2.0/quotas", ProjectReader, "get_quota"),
    ep(
        "GET",
        "/v2.0/quotas/project",
        ProjectReader,
        "(none: the caller's project)",
    ),
    ep(
        "GET",
        "/v2.0/quotas/tenant",
        ProjectReader,
        "(none: the caller's project)",
    ),
    ep("GET", "/v2.0/quotas/{id}", ProjectReader, "get_quota"),
    ep("PUT", "/v2.0/quotas/{id}", ProjectReader, "update_quota"),
    ep("DELETE", "/v2.0/quotas/{id}", ProjectReader, "delete_quota"),
    ep(
        "GET",
        "/v2.0/quotas/{id}/default",
        ProjectReader,
        "get_quota",
    ),
    ep(
        "GET",
        "/v2.0/quotas/{id}/details",
        ProjectReader,
        "get_quota",
    ),
    ep("GET", "/v2.0/routers", ProjectReader, "get_router"),
    ep("POST", "/v2.0/routers", ProjectMember, "create_router"),
    ep("GET", "/v2.0/routers/{id}", ProjectReader, "get_router"),
    ep("PUT", "/v2.0/routers/{id}", ProjectMember, "update_router"),
    ep(
        "DELETE",
        "/v2.0/routers/{id}",
        ProjectMember,
        "delete_router",
    ),
    ep(
        "PUT",
        "/v2.0/routers/{id}/add_router_interface",
        ProjectMember,
        "add_router_interface",
    ),
    ep(
        "PUT",
        "/v2.0/routers/{id}/remove_router_interface",
        ProjectMember,
        "remove_router_interface",
    ),
    ep("GET", "/v2.0/floatingips", ProjectReader, "get_floatingip"),
    ep(
        "POST",
        "/v2.0/floatingips",
        ProjectMember,
        "create_floatingip",
    ),
    ep(
        "GET",
        "/v2.0/floatingips/{id}",
        ProjectReader,
        "get_floatingip",
    ),
    ep(
        "PUT",
        "/v2.0/floatingips/{id}",
        ProjectMember,
        "update_floatingip",
    ),
    ep(
        "DELETE",
        "/v2.0/floatingips/{id}",
        ProjectMember,
        "delete_floatingip",
    ),
    ep(
        "GET",
        "/v2.0/security-groups",
        ProjectReader,
        "get_security_group",
    ),
    ep(
        "POST",
        "/v2.0/security-groups",
        ProjectMember,
        "create_security_group",
    ),
    ep(
        "GET",
        "/v2.0/security-groups/{id}",
        ProjectReader,
        "get_security_group",
    ),
    ep(
        "PUT",
        "/v2.0/security-groups/{id}",
        ProjectMember,
        "update_security_group",
    ),
    ep(
        "DELETE",
        "/v2.0/security-groups/{id}",
        ProjectMember,
        "delete_security_group",
    ),
    ep(
        "GET",
        "/v2.0/security-group-rules",
        ProjectReader,
        "get_security_group_rule",
    ),
    ep(
        "POST",
        "/v2.0/security-group-rules",
        ProjectMember,
        "create_security_group_rule",
    ),
    ep(
        "GET",
        "/v2.0/security-group-rules/{id}",
        ProjectReader,
        "get_security_group_rule",
    ),
    ep(
        "DELETE",
        "/v2.0/security-group-rules/{id}",
        ProjectMember,
        "delete_security_group_rule",
    ),
    ;
    // Keep in step with tags::TAGGED.
    ("networks", "network"),
    ("subnets", "subnet"),
    ("ports", "port"),
    ("subnetpools", "subnetpool"),
    ("routers", "router"),
    ("floatingips", "floatingip"),
    ("security-groups", "security_group"),
];

type Route = (Method, &'static str, MethodRouter<NetworkState>);

fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, NetworkState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
    (method, path, on(filter, handler))
}

fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::GET, "/", versions),
        route(M::GET, "/v2.0", index),
        route(M::GET, "/v2.0/extensions", extensions),
        route(M::GET, "/v2.0/extensions/{id}", extension),
        route(M::GET, "/v2.0/agents", agents),
        route(M::GET, "/v2.0/networks", networks::list),
        route(M::POST, "/v2.0/networks", networks::create),
        route(M::GET, "/v2.0/networks/{id}", networks::show),
        route(M::PUT, "/v2.0/networks/{id}", networks::update),
        route(M::DELETE, "/v2.0/networks/{id}", networks::delete),
        route(M::GET, "/v2.0/subnets", subnets::list),
        route(M::POST, "/v2.0/subnets", subnets::create),
        route(M::GET, "/v2.0/subnets/{id}", subnets::show),
        route(M::PUT, "/v2.0/subnets/{id}", subnets::update),
        route(M::DELETE, "/v2.0/subnets/{id}", subnets::delete),
        route(M::GET, "/v2.0/ports", ports::list),
        route(M::POST, "/v2.0/ports", ports::create),
        route(M::GET, "/v2.0/ports/{id}", ports::show),
        route(M::PUT, "/v2.0/ports/{id}", ports::update),
        route(M::DELETE, "/v2.0/ports/{id}", ports::delete),
        route(M::GET, "/v2.0/subnetpools", pools::list),
        route(M::POST, "/v2.0/subnetpools", pools::create),
        route(M::GET, "/v2.0/subnetpools/{id}", pools::show),
        route(M::PUT, "/v2.0/subnetpools/{id}", pools::update),
        route(M::DELETE, "/v2.0/subnetpools/{id}", pools::delete),
        route(M::GET, "/v2.0/quotas", quotas::list),
        route(M::GET, "/v2.0/quotas/project", quotas::project),
        route(M::GET, "/v2.0/quotas/tenant", quotas::tenant),
        route(M::GET, "/v2.0/quotas/{id}", quotas::show),
        route(M::PUT, "/v2.0/quotas/{id}", quotas::update),
        route(M::DELETE, "/v2.0/quotas/{id}", quotas::reset),
        route(M::GET, "/v2.0/quotas/{id}/default", quotas::defaults),
        route(M::GET, "/v2.0/quotas/{id}/details", quotas::details),
        route(M::GET, "/v2.0/routers", routers::list),
        route(M::POST, "/v2.0/routers", routers::create),
        route(M::GET, "/v2.0/routers/{id}", routers::show),
        route(M::PUT, "/v2.0/routers/{id}", routers::update),
        route(M::DELETE, "/v2.0/routers/{id}", routers::delete),
        route(
            M::PUT,
            "/v2.0/routers/{id}/add_router_interface",
            routers::add_interface,
        ),
        route(
            M::PUT,
            "/v2.0/routers/{id}/remove_router_interface",
            routers::remove_interface,
        ),
        route(M::GET, "/v2.0/floatingips", floating_ips::list),
        route(M::POST, "/v2.0/floatingips", floating_ips::create),
        route(M::GET, "/v2.0/floatingips/{id}", floating_ips::show),
        route(M::PUT, "/v2.0/floatingips/{id}", floating_ips::update),
        route(M::DELETE, "/v2.0/floatingips/{id}", floating_ips::delete),
        route(M::GET, "/v2.0/security-groups", security_groups::list),
        route(M::POST, "/v2.0/security-groups", security_groups::create),
        route(M::GET, "/v2.0/security-groups/{id}", security_groups::show),
        route(
            M::PUT,
            "/v2.0/security-groups/{id}",
            security_groups::update,
        ),
        route(
            M::DELETE,
            "/v2.0/security-groups/{id}",
            security_groups::delete,
        ),
        route(
            M::GET,
            "/v2.0/security-group-rules",
            security_groups::list_rules,
        ),
        route(
            M::POST,
            "/v2.0/security-group-rules",
            security_groups::create_rule,
        ),
        route(
            M::GET,
            "/v2.0/security-group-rules/{id}",
            security_groups::show_rule,
        ),
        route(
            M::DELETE,
            "/v2.0/security-group-rules/{id}",
            security_groups::delete_rule,
        ),
    ]
    .into_iter()
    .chain(
        ROUTES
            .iter()
            .filter(|e| e.path.contains("/{id}/tags"))
            .map(tag_route),
    )
    .collect()
}

/// The route of a tag row: its handler by method and whether it names one tag.
fn tag_route(e: &'static Endpoint) -> Route {
    let m = Method::from_bytes(e.method.as_bytes()).expect("a standard HTTP method");
    let one = e.path.ends_with("/{tag}");
    match (e.method, one) {
        ("GET", false) => route(m, e.path, tags::list),
        ("GET", true) => route(m, e.path, tags::show),
        ("PUT", false) => route(m, e.path, tags::replace),
        ("PUT", true) => route(m, e.path, tags::add),
        ("POST", _) => route(m, e.path, tags::add_many),
        ("DELETE", false) => route(m, e.path, tags::clear),
        _ => route(m, e.path, tags::remove),
    }
}

/// Every `(method, path template)` the [`router`] serves.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The policy row of a route.
pub fn row(method: &Method, path: &str) -> Option<&'static Endpoint> {
    ROUTES
        .iter()
        .find(|e| e.method == method.as_str() && e.path == path)
}

/// The markdown row documenting `e` in docs/POLICY.md.
pub fn doc_row(e: &Endpoint) -> String {
    format!(
        "| `{} {}` | {} | `{}` |",
        e.method,
        e.path,
        e.rule.label(),
        e.name
    )
}

#[derive(Clone)]
struct Guard {
    state: NetworkState,
    row: &'static Endpoint,
}

/// Per-route middleware: authenticate (401), enforce the row's role rule (403), and
/// hand the caller to the handler.
async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    if g.row.rule == Rule::Public {
        return next.run(req).await;
    }
    let rid = req
        .extensions()
        .get::<RequestId>()
        .map_or_else(Uuid::new_v4, |r| r.0);
    let caller = match auth::authenticate(
        &g.state.auth,
        &g.state.engine,
        req.headers(),
        req.method(),
        req.uri().path(),
        rid,
    ) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if !g.row.rule.allows(caller.role) {
        // What the caller may not see is not found, whatever its role (Neutron fetches
        // the resource for the policy check's target first).
        if let Some(e) = g.state.hidden(req.uri().path(), &caller) {
            return e.into_response();
        }
        return NetworkError::policy(g.row.name).into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The network API router.
///
/// # Panics
/// When a route has no row in [`ROUTES`].
pub fn router(state: NetworkState) -> Router {
    let inner = routes()
        .into_iter()
        .fold(Router::new(), |r, (method, path, mr)| {
            let row =
                row(&method, path).unwrap_or_else(|| panic!("{method} {path} has no policy row"));
            let guard = Guard {
                state: state.clone(),
                row,
            };
            r.route(
                path,
                mr.route_layer(axum::middleware::from_fn_with_state(guard, self::guard)),
            )
        })
        .fallback(not_found)
        .method_not_allowed_fallback(bad_method)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
    // The request id and path normalisation run before routing: an outer router hands
    // every request, its path rewritten, to the inner one.
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn(request_id))
}

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = Uuid::new_v4();
    req.extensions_mut().insert(RequestId(id));
    // Neutron accepts a trailing slash and a `.json` suffix on any path.
    let path = req.uri().path();
    let trimmed = path
        .strip_suffix(".json")
        .unwrap_or(path)
        .trim_end_matches('/');
    if trimmed != path && !trimmed.is_empty() {
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = pq.parse() {
            *req.uri_mut() = uri;
        }
    }
    let span = tracing::info_span!("network", request_id = %format!("req-{id}"), method = %req.method(), path = %req.uri().path());
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    if let Ok(v) = HeaderValue::from_str(&format!("req-{id}")) {
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    resp
}

async fn not_found() -> NetworkError {
    NetworkError::no_route()
}

async fn bad_method() -> NetworkError {
    NetworkError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "HTTPMethodNotAllowed",
        "The method is not allowed for this resource.",
    )
}

fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("127.0.0.1:9696");
    format!("{}://{host}", apicore::util::link_scheme(headers))
}

/// `GET /`: Neutron's version document.
async fn versions(headers: HeaderMap) -> Json<Value> {
    let b = base(&headers);
    Json(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{b}/v2.0/")}],
    }]}))
}

/// `GET /v2.0`: the resource index.
async fn index(headers: HeaderMap) -> Json<Value> {
    let b = base(&headers);
    let res: Vec<Value> = [
        "network",
        "subnet",
        "port",
        "router",
        "floatingip",
        "security_group",
        "security_group_rule",
    ]
    .iter()
    .map(|r| {
            let coll = format!("{r}s").replace('_', "-");
            json!({"name": r, "collection": coll, "links": [{"rel": "self", "href": format!("{b}/v2.0/{coll}")}]})
        })
        .collect();
    Json(json!({ "resources": res }))
}

/// `GET /v2.0/agents`: Stratus runs no Neutron agents (the host data plane comes with
/// the libvirt driver), so the list is empty for everyone; the `agent` extension is not
/// listed.
async fn agents() -> Json<Value> {
    Json(json!({"agents": []}))
}

/// One implemented API extension: alias, name, description.
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("port-security", "Port Security", "Provides port security"),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("filter-validation", "Filter parameters validation", "Provides validation on filter parameters."),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool"),
    ("default-subnetpools", "Default Subnetpools", "Provides ability to mark and use a subnetpool as the default."),
    ("quotas", "Quota management support", "Expose functions for quotas management per project"),
    ("quota_details", "Quota details management support", "Expose functions for quotas usage statistics per project"),
    ("ip-substring-filtering", "IP address substring filtering", "Provides IP address substring filtering when listing ports"),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway."),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("fip-port-details", "Floating IP Port Details Extension", "Add port_details attribute to Floating IP resource"),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway"),
    ("security-group", "security-group", "The security groups extension."),
    ("stateful-security-group", "Stateful security group", "Indicates if the security group is stateful or not"),
    ("security-groups-normalized-cidr", "Security group rule normalized CIDR", "Add new field with normalized remote_ip_prefix cidr in SG rule"),
    ("standard-attr-tag", "Tag support for resources with standard attribute: network, subnet, port, subnetpool, router, floatingip, security_group", "Enables to set tag on resources with standard attribute."),
    ("tag-creation", "Tag creation extension", "Allow to create multiple tags for a resource"),
    ("tag-ports-during-bulk-creation", "Tag Ports During Bulk Creation", "Allow to tag ports during bulk creation"),
];

fn extension_json(e: &(&str, &str, &str)) -> Value {
    json!({"alias": e.0, "name": e.1, "description": e.2, "links": [], "updated": "2013-01-20T00:00:00-00:00"})
}

/// `GET /v2.0/extensions`: exactly the extensions implemented.
async fn extensions() -> Json<Value> {
    Json(json!({"extensions": EXTENSIONS.iter().map(extension_json).collect::<Vec<_>>()}))
}

/// `GET /v2.0/extensions/{alias}`.
async fn extension(extract::Path(alias): extract::Path) -> Result<Json<Value>, NetworkError> {
    EXTENSIONS
        .iter()
        .find(|e| e.0 == alias)
        .map(|e| Json(json!({"extension": extension_json(e)})))
        .ok_or_else(|| {
            NetworkError::new(
                StatusCode::NOT_FOUND,
                "HTTPNotFound",
                format!("Extension with alias {alias} does not exist"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_route_has_a_row() {
        let routed: BTreeSet<(String, &str)> = route_table()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p))
            .collect();
        let table: BTreeSet<(String, &str)> = ROUTES
            .iter()
            .map(|e| (e.method.to_string(), e.path))
            .collect();
        assert_eq!(routed, table);
    }

    #[test]
    fn docs_match_the_table() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/POLICY.md"))
                .unwrap();
        for e in ROUTES {
            let line = doc_row(e);
            assert!(doc.contains(&line), "docs/POLICY.md lacks the row:\n{line}");
        }
    }
}
