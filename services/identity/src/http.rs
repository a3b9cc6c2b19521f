//! The Keystone v3 subset over axum.
//!
//! Routes: `GET /` and `GET /v3` (version discovery, no token), `POST /v3/auth/tokens`
//! (password or application-credential method, project scope by id or by name in
//! domain `Default`; 201 with `X-Subject-Token`), `GET`/`HEAD /v3/auth/tokens`
//! (validation: 200 or 404), `DELETE /v3/auth/tokens` (revocation), `GET
//! /v3/auth/projects`, `GET /v3/auth/catalog`, projects (`GET` list with `?name=`,
//! `GET` one, `POST`, `PATCH`, `DELETE` admin), users (`GET` list/one, `GET` its
//! projects, `POST`, `PATCH`, `DELETE` admin), a user's application credentials (`GET`
//! list/one, `POST` by the user itself, `DELETE`) and their access rules (`GET`
//! list/one, `DELETE`), roles (`GET` list with `?name=`,
//! `GET` one, `POST` and `DELETE` admin), role assignments (`PUT`/`DELETE` admin,
//! `GET`/`HEAD`, `GET /v3/role_assignments` with Keystone's filters), and `GET
//! /v3/domains[/default]`.
//!
//! The routes are documented in `docs/openapi/identity.json` (OpenAPI 3.0.3).
//!
//! Invariants:
//! - [`router`] and [`route_table`] are built from one list of routes, so the route
//!   table is exactly what the router serves (the OpenAPI document is checked against
//!   it by this crate's tests).
//! - Every answer, refusals of unreadable requests included, is JSON; errors have
//!   Keystone's shape (the extractors come from `crate::extract`, not axum).
//! - Every answer carries a fresh `X-Openstack-Request-Id: req-<uuid>`, as Keystone's
//!   (oslo.middleware's) request-id middleware adds it; the request's log lines and
//!   the correlation id of the events it appends carry the same id.
//! - Every request but discovery and token issue needs a valid `X-Auth-Token` (401
//!   otherwise); admin calls need the `admin` role on the token's project (403).
//! - A token limited by application credential access rules is refused (401, as an
//!   invalid token) on every request no rule of service type `identity` allows
//!   ([`enforce_access_rules`]).
//! - Bad input is refused (400/404/409) before any append; after a 2xx the world
//!   already reflects what the request appended (read-your-writes).
//! - Non-admin callers see only the projects they have a role on, and only themselves
//!   among users: anything else is a 404, so nothing leaks.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Json, Router};
use domain::identity::{
    AccessRule, AccessRuleRequest, AppCred, Ec2Cred, IdentityName, Project, Role, RoleId, User,
    DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME,
};
use domain::{ProjectId, Timestamp, UserId};
use eventlog::{EventLog, StreamName};
use projections::World;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::commands::{self, Actor};
use crate::error::error_response;
use crate::extract::{Body, Path, Query};
use crate::token::{current_roles, Auth, Invalid, Target, Tokens};
use crate::{password, IdentityError, SecurityCompliance};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Base URLs of the service catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Identity, e.g. `http://127.0.0.1:5000` (the catalog lists `<this>/v3`).
    pub identity: String,
    /// Compute, e.g. `http://127.0.0.1:8774/v2.1`.
    pub compute: String,
    /// Image, e.g. `http://127.0.0.1:9292`.
    pub image: String,
    /// Network, e.g. `http://127.0.0.1:9696`.
    pub network: String,
    /// Region (`RegionOne`).
    pub region: String,
}

impl Catalog {
    /// The catalog as Keystone's token body shows it.
    pub fn to_json(&self) -> Value {
        let entry = |ty: &str, name: &str, url: &str| {
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .map(|i| {
                    json!({
                        "id": stable_id(&format!("{ty}-{i}")),
                        "interface": i,
                        "region": self.region,
                        "region_id": self.region,
                        "url": url,
                    })
                })
                .collect();
            json!({"id": stable_id(ty), "type": ty, "name": name, "endpoints": endpoints})
        };
        json!([
            entry("identity", "keystone", &format!("{}/v3", self.identity)),
            entry("compute", "nova", &self.compute),
            entry("image", "glance", &self.image),
            entry("network", "neutron", &self.network),
        ])
    }
}

fn stable_id(s: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(format!("stratus:{s}").as_bytes());
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Shared state of the identity handlers.
#[derive(Clone)]
pub struct IdentityApi {
    /// The log (commands append here).
    pub log: Arc<dyn EventLog>,
    /// The process's views (reads).
    pub world: Arc<World>,
    /// Token signing and validation.
    pub tokens: Arc<Tokens>,
    /// The service catalog.
    pub catalog: Arc<Catalog>,
    /// Keystone's `[security_compliance]` settings (lockout, password rules).
    pub compliance: Arc<SecurityCompliance>,
}

impl std::fmt::Debug for IdentityApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityApi")
            .field("catalog", &self.catalog)
            .finish()
    }
}

/// One route: its method, its path template (axum's `{param}` syntax, as in OpenAPI)
/// and a method router serving exactly that method.
type Route = (Method, &'static str, MethodRouter<IdentityApi>);

/// A [`Route`] whose method router is built from `method` itself, so that the route
/// table cannot name a method the router does not serve.
fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, IdentityApi>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
    (method, path, on(filter, handler))
}

/// Every route of the identity API, in one list read by both [`router`] and
/// [`route_table`]. HEAD is listed only where it has its own handler.
fn routes() -> Vec<Route> {
    use Method as M;
    const ASSIGNMENT: &str = "/v3/projects/{p}/users/{u}/roles/{r}";
    const APP_CREDS: &str = "/v3/users/{id}/application_credentials";
    const ACCESS_RULES: &str = "/v3/users/{id}/access_rules";
    const ACCESS_RULE: &str = "/v3/users/{id}/access_rules/{rule}";
    const APP_CRED: &str = "/v3/users/{id}/application_credentials/{cred}";
    const EC2_CREDS: &str = "/v3/users/{id}/credentials/OS-EC2";
    const EC2_CRED: &str = "/v3/users/{id}/credentials/OS-EC2/{access}";
    vec![
        route(M::GET, "/", versions),
        route(M::GET, "/v3", version),
        route(M::GET, "/v3/", version),
        route(M::GET, "/v3/auth/tokens", validate_token),
        route(M::HEAD, "/v3/auth/tokens", check_token),
        route(M::POST, "/v3/auth/tokens", issue_token),
        route(M::DELETE, "/v3/auth/tokens", revoke_token),
        route(M::GET, "/v3/auth/projects", auth_projects),
        route(M::GET, "/v3/auth/catalog", auth_catalog),
        route(M::GET, "/v3/projects", list_projects),
        route(M::POST, "/v3/projects", create_project),
        route(M::GET, "/v3/projects/{id}", show_project),
        route(M::PATCH, "/v3/projects/{id}", update_project),
        route(M::DELETE, "/v3/projects/{id}", delete_project),
        route(M::GET, "/v3/users", list_users),
        route(M::POST, "/v3/users", create_user),
        route(M::GET, "/v3/users/{id}", show_user),
        route(M::PATCH, "/v3/users/{id}", update_user),
        route(M::DELETE, "/v3/users/{id}", delete_user),
        route(M::GET, "/v3/users/{id}/projects", user_projects),
        route(M::POST, "/v3/users/{id}/password", change_password),
        route(M::GET, APP_CREDS, list_app_creds),
        route(M::POST, APP_CREDS, create_app_cred),
        route(M::GET, APP_CRED, show_app_cred),
        route(M::DELETE, APP_CRED, delete_app_cred),
        route(M::GET, ACCESS_RULES, list_access_rules),
        route(M::GET, ACCESS_RULE, show_access_rule),
        route(M::DELETE, ACCESS_RULE, delete_access_rule),
        route(M::GET, EC2_CREDS, list_ec2_creds),
        route(M::POST, EC2_CREDS, create_ec2_cred),
        route(M::GET, EC2_CRED, show_ec2_cred),
        route(M::DELETE, EC2_CRED, delete_ec2_cred),
        route(M::GET, "/v3/roles", list_roles),
        route(M::POST, "/v3/roles", create_role),
        route(M::GET, "/v3/roles/{id}", show_role),
        route(M::DELETE, "/v3/roles/{id}", delete_role),
        route(M::GET, "/v3/projects/{p}/users/{u}/roles", list_assignments),
        route(M::PUT, ASSIGNMENT, grant_role),
        route(M::HEAD, ASSIGNMENT, check_role),
        route(M::GET, ASSIGNMENT, check_role),
        route(M::DELETE, ASSIGNMENT, revoke_role),
        route(M::GET, "/v3/role_assignments", role_assignments),
        route(M::GET, "/v3/domains", list_domains),
        route(M::GET, "/v3/domains/{id}", show_domain),
    ]
}

/// Every `(method, path template)` the identity [`router`] serves, in the order of its
/// definition. Built from the same list as the router, so the two cannot disagree;
/// HEAD appears only where it is routed explicitly (not the implicit HEAD that axum
/// answers for every GET). Meant for drift tests against `docs/openapi/identity.json`.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The identity router (serve it on 127.0.0.1:5000): the routes of [`route_table`],
/// a Keystone-shaped 404 for unknown paths and 405 for unrouted methods, and an
/// `X-Openstack-Request-Id` on every response.
pub fn router(state: IdentityApi) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |r, (_, path, mr)| r.route(path, mr))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, "The resource could not be found.")
        })
        .method_not_allowed_fallback(|| async {
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method specified is not allowed for the requested resource.",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            enforce_access_rules,
        ))
        .with_state(state)
        .layer(axum::middleware::from_fn(request_id))
}

/// The identity API's side of application credential access rules (Keystone runs
/// keystonemiddleware's check with service type `identity` in its own pipeline): a
/// valid token whose rules do not allow the request is answered as an invalid token,
/// before any handler. Other tokens go on; the handlers refuse the invalid ones.
async fn enforce_access_rules(
    State(api): State<IdentityApi>,
    req: Request,
    next: Next,
) -> Response {
    let refused = req
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|token| {
            let target = Target {
                service: "identity",
                method: req.method().as_str(),
                path: req.uri().path(),
            };
            let views = api.world.read();
            matches!(
                api.tokens
                    .validate_request(token, views.identity(), engine::now(), &target),
                Err(Invalid::NotAllowed)
            )
        });
    if refused {
        return IdentityError::Unauthorized(AUTH_REQUIRED.into()).into_response();
    }
    next.run(req).await
}

/// The id of the request being served (`req-<uuid>`), set by [`router`]'s request-id
/// middleware: the response's `X-Openstack-Request-Id` and the correlation id of the
/// events the request appends, so that one id leads from a client's report to both the
/// log lines and the events.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Names each request `req-<uuid>` in its tracing span, its [`RequestId`] extension and
/// the response's `X-Openstack-Request-Id`, so that a client's report can be found in
/// the log. Like
/// oslo.middleware's `RequestId` (Keystone's pipeline), the id is always generated
/// here: an `X-Openstack-Request-Id` the client sends is not echoed (oslo keeps it only
/// as the separate global request id, which Stratus does not track).
async fn request_id(mut req: Request, next: Next) -> Response {
    let rid = format!("req-{}", uuid::Uuid::new_v4());
    req.extensions_mut().insert(RequestId(rid.clone()));
    let span = tracing::info_span!(
        "identity",
        request_id = %rid,
        method = %req.method(),
        path = %req.uri().path()
    );
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    resp
}

type Res = Result<Response, IdentityError>;

/// Time as Keystone prints it: `2026-01-02T03:04:05.000000Z`.
pub fn iso(ts: Timestamp) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ts.0 as i128 * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// The scheme of the links in responses: `https` when the request came over TLS (the
/// HTTP server then sets `X-Forwarded-Proto: https`) or through a TLS-terminating proxy
/// that says so, else `http`. Shared by the compute and image APIs.
pub fn link_scheme(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    if https {
        "https"
    } else {
        "http"
    }
}

fn base(headers: &HeaderMap, api: &IdentityApi) -> String {
    let scheme = link_scheme(headers);
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map(|h| format!("{scheme}://{h}"))
        .unwrap_or_else(|| api.catalog.identity.clone())
}

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

async fn version(State(api): State<IdentityApi>, headers: HeaderMap) -> Response {
    Json(json!({"version": version_doc(&base(&headers, &api))})).into_response()
}

async fn versions(State(api): State<IdentityApi>, headers: HeaderMap) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [version_doc(&base(&headers, &api))]}})),
    )
        .into_response()
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, IdentityError> {
    serde_json::from_slice(body)
        .map_err(|e| IdentityError::BadRequest(format!("Invalid request body: {e}")))
}

const AUTH_REQUIRED: &str = "The request you have made requires authentication.";

/// The caller of a request (401 when the token is missing or not valid).
fn caller(api: &IdentityApi, headers: &HeaderMap) -> Result<Auth, IdentityError> {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| IdentityError::Unauthorized(AUTH_REQUIRED.into()))?;
    let views = api.world.read();
    api.tokens
        .validate(token, views.identity(), engine::now())
        .map_err(|_| IdentityError::Unauthorized(AUTH_REQUIRED.into()))
}

fn require_admin(auth: &Auth, rule: &str) -> Result<(), IdentityError> {
    if auth.is_admin() {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(format!(
            "You are not authorized to perform the requested action: identity:{rule}."
        )))
    }
}

/// The caller as the actor of the commands of request `rid`.
fn actor(auth: &Auth, rid: &RequestId) -> Actor {
    let rid = rid.0.clone();
    Actor {
        ctx: domain::Ctx {
            now: engine::now(),
            is_admin: auth.is_admin(),
            user_id: auth.user.id.to_string(),
            project_id: auth.project.id.to_string(),
            op_id: uuid::Uuid::new_v4(),
        },
        meta: engine::Meta {
            correlation_id: rid.clone(),
            causation_id: rid,
            actor: eventlog::Actor {
                user: auth.user.id.to_string(),
                project: auth.project.id.to_string(),
                roles: auth.role_names(),
            },
            dedupe_id: None,
        },
    }
}

/// Waits until the world has applied the api stream up to `pos`.
async fn settle(api: &IdentityApi, pos: Option<u64>) -> Result<(), IdentityError> {
    if let Some(pos) = pos {
        if !api
            .world
            .wait_for(&StreamName::api(), pos, Duration::from_secs(10))
            .await
        {
            return Err(IdentityError::Engine(engine::EngineError::Timeout));
        }
    }
    Ok(())
}

fn domain_json() -> Value {
    json!({"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME})
}

fn project_json(p: &Project, base: &str) -> Value {
    json!({
        "id": p.id.as_str(),
        "name": p.name.as_str(),
        "domain_id": p.domain_id,
        "description": p.description,
        "enabled": p.enabled,
        "is_domain": false,
        "parent_id": p.domain_id,
        "tags": [],
        "options": {},
        "links": {"self": format!("{base}/v3/projects/{}", p.id)},
    })
}

fn user_json(u: &User, base: &str) -> Value {
    let mut v = json!({});
    // Extra attributes first: the user's own members below always win.
    for (k, text) in &u.extra {
        v[k] = serde_json::from_str(text).unwrap_or(Value::Null);
    }
    let own = json!({
        "id": u.id.as_str(),
        "name": u.name.as_str(),
        "domain_id": u.domain_id,
        "enabled": u.enabled,
        "password_expires_at": u.password_expires_at.map(iso),
        "options": u.options,
        "links": {"self": format!("{base}/v3/users/{}", u.id)},
    });
    if let (Some(v), Value::Object(own)) = (v.as_object_mut(), own) {
        v.extend(own);
    }
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p.as_str());
    }
    v
}

fn role_json(r: &Role, base: &str) -> Value {
    json!({
        "id": r.id.as_str(),
        "name": r.name.as_str(),
        "domain_id": null,
        "description": null,
        "options": {},
        "links": {"self": format!("{base}/v3/roles/{}", r.id)},
    })
}

fn collection(key: &str, items: Vec<Value>, base: &str, path: &str) -> Response {
    Json(json!({
        key: items,
        "links": {"self": format!("{base}{path}"), "previous": null, "next": null},
    }))
    .into_response()
}

// ---- tokens ----

#[derive(Deserialize)]
struct AuthReq {
    auth: AuthBody,
}

#[derive(Deserialize)]
struct AuthBody {
    identity: IdentityBody,
    #[serde(default)]
    scope: Option<Value>,
}

#[derive(Deserialize)]
struct IdentityBody {
    methods: Vec<String>,
    #[serde(default)]
    password: Option<PasswordBody>,
    #[serde(default)]
    application_credential: Option<AppCredAuth>,
    #[serde(default)]
    token: Option<TokenRef>,
}

/// The `token` method: an existing token to issue a new one from (rescoping).
#[derive(Deserialize)]
struct TokenRef {
    id: String,
}

/// The `application_credential` method: the credential by id, or by name with its
/// user (by id, or by name in a domain), and its secret.
#[derive(Deserialize)]
struct AppCredAuth {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    user: Option<AppCredUser>,
    secret: String,
}

#[derive(Deserialize)]
struct AppCredUser {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<DomainRef>,
}

#[derive(Deserialize)]
struct PasswordBody {
    user: UserRef,
}

#[derive(Deserialize)]
struct UserRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<DomainRef>,
    password: String,
}

#[derive(Deserialize, Default)]
struct DomainRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct ProjectRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<DomainRef>,
}

/// Checks a domain reference names the one domain (400 when absent with a name, 401
/// when it names another domain).
fn check_domain(d: Option<&DomainRef>, what: &str) -> Result<(), IdentityError> {
    let Some(d) = d else {
        return Err(IdentityError::BadRequest(format!(
            "Expecting to find domain in {what}. The server could not comply with the request since it is either malformed or otherwise incorrect."
        )));
    };
    let ok = match (&d.id, &d.name) {
        (Some(id), _) => id == DEFAULT_DOMAIN_ID,
        (None, Some(name)) => name == DEFAULT_DOMAIN_NAME,
        (None, None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Unauthorized(AUTH_REQUIRED.into()))
    }
}

/// Answers a token issue: 201 with the body and `X-Subject-Token`.
fn issued(api: &IdentityApi, headers: &HeaderMap, token: &str, auth: &Auth) -> Res {
    let mut resp = (
        StatusCode::CREATED,
        Json(token_body(api, auth, &base(headers, api))),
    )
        .into_response();
    resp.headers_mut().insert(
        "x-subject-token",
        HeaderValue::from_str(token).map_err(|e| IdentityError::Internal(e.to_string()))?,
    );
    Ok(resp)
}

/// Authenticates with an application credential: scoped to the credential's project
/// with its roles the user still has there. Every failure is the same 401.
async fn issue_app_cred_token(api: &IdentityApi, headers: &HeaderMap, ac: AppCredAuth) -> Res {
    let found = {
        let views = api.world.read();
        let ids = views.identity();
        match (&ac.id, &ac.name) {
            (Some(id), _) => ids.app_cred(id).map(|(u, c)| (u.clone(), c.clone())),
            (None, Some(name)) => {
                let Some(u) = ac.user.as_ref() else {
                    return Err(IdentityError::BadRequest(
                        "Expecting to find user in application_credential.".into(),
                    ));
                };
                let user = match (&u.id, &u.name) {
                    (Some(uid), _) => UserId::new(uid.clone()).ok().and_then(|x| ids.user(&x)),
                    (None, Some(un)) => {
                        check_domain(u.domain.as_ref(), "user")?;
                        ids.user_by_name(DEFAULT_DOMAIN_ID, un)
                    }
                    (None, None) => {
                        return Err(IdentityError::BadRequest(
                            "Expecting to find id or name in user.".into(),
                        ))
                    }
                };
                user.and_then(|u| {
                    u.app_creds
                        .values()
                        .find(|c| c.name.as_str() == name)
                        .map(|c| (u.clone(), c.clone()))
                })
            }
            (None, None) => {
                return Err(IdentityError::BadRequest(
                    "Expecting to find id or name in application_credential.".into(),
                ))
            }
        }
    };
    let hash = found.as_ref().map(|(_, c)| c.secret_hash.clone());
    let given = ac.secret;
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => password::verify(&given, &h),
        None => {
            let _ = password::verify(&given, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false);
    let now = engine::now();
    let Some((user, cred)) =
        found.filter(|(u, c)| ok && u.enabled && c.expires_at.is_none_or(|e| now < e))
    else {
        tracing::info!("application credential authentication failed");
        return Err(IdentityError::Unauthorized(AUTH_REQUIRED.into()));
    };
    let views = api.world.read();
    let ids = views.identity();
    let Some(project) = ids.project(&cred.project).filter(|p| p.enabled).cloned() else {
        return Err(IdentityError::Unauthorized(AUTH_REQUIRED.into()));
    };
    let mut roles = current_roles(ids, &user, &project.id);
    roles.retain(|r| cred.roles.contains(&r.id));
    if roles.is_empty() {
        return Err(IdentityError::Unauthorized(AUTH_REQUIRED.into()));
    }
    drop(views);
    let (token, claims) = api.tokens.issue_for_app_cred(&user, &cred, &roles, now);
    let auth = Auth {
        claims,
        user,
        project,
        roles,
        app_cred: Some(cred),
    };
    issued(api, headers, &token, &auth)
}

/// Keystone's password authentication of `user` (None: unknown) with `given`, in
/// Keystone's order: a locked-out user is refused before its password is checked
/// (`The account is locked for user: <id>.`); a wrong password is recorded as a
/// failure (`user.auth_failed`, nothing once locked) and, like an unknown user, is the
/// plain 401; a disabled user is a 401; an expired password is a 401 unless
/// `allow_expired` (the change-password call); a success forgets earlier failures.
async fn authenticate(
    api: &IdentityApi,
    user: Option<User>,
    given: String,
    allow_expired: bool,
    rid: &RequestId,
) -> Result<User, IdentityError> {
    let rules = api.compliance.rules;
    let now = engine::now();
    if let Some(u) = user.as_ref().filter(|u| rules.locked(u, now)) {
        tracing::info!(user = %u.id, "authentication refused: the account is locked");
        return Err(IdentityError::Unauthorized(format!(
            "The account is locked for user: {}.",
            u.id
        )));
    }
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => password::verify(&given, &h),
        None => {
            // Spend the same time for an unknown user.
            let _ = password::verify(&given, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false);
    let user = match user {
        Some(u) if ok => u,
        other => {
            tracing::info!("authentication failed");
            if let Some(u) = other {
                let who = anonymous_actor(&u.id, rid);
                match commands::record_auth_failure(api.log.as_ref(), &u.id, rules, &who).await {
                    Ok(pos) => settle(api, pos).await?,
                    Err(e) => {
                        tracing::warn!(user = %u.id, error = %e, "cannot record a failed authentication")
                    }
                }
            }
            return Err(IdentityError::Unauthorized(AUTH_REQUIRED.into()));
        }
    };
    if !user.enabled {
        tracing::info!(user = %user.id, "authentication refused: the user is disabled");
        return Err(IdentityError::Unauthorized(AUTH_REQUIRED.into()));
    }
    if !allow_expired && user.password_expired(now) {
        return Err(IdentityError::Unauthorized(format!(
            "The password is expired and needs to be changed for user: {}.",
            user.id
        )));
    }
    if user.failed_auth_count > 0 {
        let who = anonymous_actor(&user.id, rid);
        let pos = commands::clear_auth_failures(api.log.as_ref(), &user.id, &who).await?;
        settle(api, pos).await?;
    }
    Ok(user)
}

/// The actor of a request without a token (authentication, password change): the
/// user it names, no project, no roles.
fn anonymous_actor(user: &UserId, rid: &RequestId) -> Actor {
    let rid = rid.0.clone();
    Actor {
        ctx: domain::Ctx {
            now: engine::now(),
            is_admin: false,
            user_id: user.to_string(),
            project_id: String::new(),
            op_id: uuid::Uuid::new_v4(),
        },
        meta: engine::Meta {
            correlation_id: rid.clone(),
            causation_id: rid,
            actor: eventlog::Actor {
                user: user.to_string(),
                project: String::new(),
                roles: Vec::new(),
            },
            dedupe_id: None,
        },
    }
}

/// The `token` method: a new token for the user of a valid token, on the requested
/// project (else the token's own), expiring with the original (Keystone's rescoping).
/// An invalid token is Keystone's 404 `Could not find token`.
fn issue_from_token(
    api: &IdentityApi,
    headers: &HeaderMap,
    token: &str,
    pref: Option<&ProjectRef>,
) -> Res {
    let now = engine::now();
    let views = api.world.read();
    let ids = views.identity();
    let auth = api
        .tokens
        .validate(token, ids, now)
        .map_err(|_| IdentityError::NotFound(format!("Could not find token: {token}.")))?;
    if auth.app_cred.is_some() {
        return Err(IdentityError::Forbidden(
            "Application credential tokens cannot be rescoped.".into(),
        ));
    }
    let project = match pref {
        Some(p) => match (&p.id, &p.name) {
            (Some(pid), _) => ProjectId::new(pid.clone())
                .ok()
                .and_then(|x| ids.project(&x)),
            (None, Some(name)) => ids.project_by_name(DEFAULT_DOMAIN_ID, name),
            _ => None,
        },
        None => Some(&auth.project),
    };
    let Some(project) = project.filter(|p| p.enabled).cloned() else {
        return Err(IdentityError::Unauthorized(format!(
            "User {} has no access to this project.",
            auth.user.id
        )));
    };
    let roles = current_roles(ids, &auth.user, &project.id);
    if roles.is_empty() {
        return Err(IdentityError::Unauthorized(format!(
            "User {} has no access to project {}.",
            auth.user.id, project.id
        )));
    }
    drop(views);
    let (token, claims) = api.tokens.issue_rescoped(
        &auth.user,
        &project,
        &roles,
        now,
        Timestamp(auth.claims.expires_at),
    );
    let out = Auth {
        claims,
        user: auth.user,
        project,
        roles,
        app_cred: None,
    };
    issued(api, headers, &token, &out)
}

async fn issue_token(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Body(body): Body,
) -> Res {
    let req: AuthReq = parse(&body)?;
    let AuthBody { identity, scope } = req.auth;
    if identity
        .methods
        .iter()
        .any(|m| m == "application_credential")
    {
        // The credential fixes the scope (Keystone refuses one in the request).
        if scope.is_some() {
            return Err(IdentityError::Unauthorized(
                "Error authenticating with application credential: Application credentials cannot request a scope.".into(),
            ));
        }
        let ac = identity.application_credential.ok_or_else(|| {
            IdentityError::BadRequest(
                "Expecting to find application_credential in identity.".into(),
            )
        })?;
        return issue_app_cred_token(&api, &headers, ac).await;
    }
    let by_token = identity.methods.iter().any(|m| m == "token");
    if !by_token && !identity.methods.iter().any(|m| m == "password") {
        return Err(IdentityError::Unauthorized(
            "Only the password, token and application_credential authentication methods are supported."
                .into(),
        ));
    }
    let pref: Option<ProjectRef> = match scope {
        None => None,
        Some(Value::Object(mut m)) => match m.remove("project") {
            Some(p) => Some(
                serde_json::from_value(p)
                    .map_err(|e| IdentityError::BadRequest(format!("Invalid scope: {e}")))?,
            ),
            None => {
                return Err(IdentityError::BadRequest(
                    "Only project scope is supported.".into(),
                ))
            }
        },
        Some(Value::String(s)) if s == "unscoped" => None,
        Some(_) => return Err(IdentityError::BadRequest("Invalid scope.".into())),
    };
    if let Some(p) = &pref {
        if p.id.is_none() {
            if p.name.is_none() {
                return Err(IdentityError::BadRequest(
                    "Expecting to find id or name in project.".into(),
                ));
            }
            check_domain(p.domain.as_ref(), "project")?;
        }
    }
    if by_token {
        let t = identity.token.ok_or_else(|| {
            IdentityError::BadRequest("Expecting to find token in identity.".into())
        })?;
        return issue_from_token(&api, &headers, &t.id, pref.as_ref());
    }
    let pw = identity.password.ok_or_else(|| {
        IdentityError::BadRequest("Expecting to find password in identity.".into())
    })?;
    let uref = pw.user;
    if uref.id.is_none() {
        if uref.name.is_none() {
            return Err(IdentityError::BadRequest(
                "Expecting to find id or name in user.".into(),
            ));
        }
        check_domain(uref.domain.as_ref(), "user")?;
    }
    // Find the user (unknown and wrong password look the same: 401).
    let user = {
        let views = api.world.read();
        let id = views.identity();
        match (&uref.id, &uref.name) {
            (Some(uid), _) => UserId::new(uid.clone())
                .ok()
                .and_then(|u| id.user(&u))
                .cloned(),
            (None, Some(name)) => id.user_by_name(DEFAULT_DOMAIN_ID, name).cloned(),
            (None, None) => None,
        }
    };
    let user = authenticate(&api, user, uref.password, false, &rid).await?;
    let views = api.world.read();
    let ids = views.identity();
    // The scope: the named project, else the user's default project.
    let project = match &pref {
        Some(p) => match (&p.id, &p.name) {
            (Some(pid), _) => ProjectId::new(pid.clone())
                .ok()
                .and_then(|x| ids.project(&x)),
            (None, Some(name)) => ids.project_by_name(DEFAULT_DOMAIN_ID, name),
            _ => None,
        },
        None => user
            .default_project_id
            .as_ref()
            .and_then(|p| ids.project(p)),
    };
    let Some(project) = project.filter(|p| p.enabled).cloned() else {
        return Err(IdentityError::Unauthorized(if pref.is_some() {
            format!("User {} has no access to this project.", user.id)
        } else {
            "Unscoped tokens are not supported: scope the request to a project.".into()
        }));
    };
    let roles = current_roles(ids, &user, &project.id);
    if roles.is_empty() {
        return Err(IdentityError::Unauthorized(format!(
            "User {} has no access to project {}.",
            user.id, project.id
        )));
    }
    drop(views);
    let (token, claims) = api.tokens.issue(&user, &project, &roles, engine::now());
    let auth = Auth {
        claims,
        user,
        project,
        roles,
        app_cred: None,
    };
    issued(&api, &headers, &token, &auth)
}

/// An argon2 hash of a random string, verified against for unknown users so that
/// they take as long as a wrong password.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| password::hash(&password::generate()).unwrap_or_default())
}

fn token_body(api: &IdentityApi, auth: &Auth, _base: &str) -> Value {
    let c = &auth.claims;
    let mut v = json!({"token": {
        "methods": c.methods,
        "user": {
            "id": auth.user.id.as_str(),
            "name": auth.user.name.as_str(),
            "domain": domain_json(),
            "password_expires_at": auth.user.password_expires_at.map(iso),
        },
        "project": {
            "id": auth.project.id.as_str(),
            "name": auth.project.name.as_str(),
            "domain": domain_json(),
        },
        "roles": auth.roles.iter().map(|r| json!({"id": r.id.as_str(), "name": r.name.as_str()})).collect::<Vec<_>>(),
        "is_domain": false,
        "issued_at": iso(Timestamp(c.issued_at)),
        "expires_at": iso(Timestamp(c.expires_at)),
        "audit_ids": [c.audit_id],
        "catalog": api.catalog.to_json(),
    }});
    if let Some(ac) = &auth.app_cred {
        v["token"]["application_credential"] =
            json!({"id": ac.id, "name": ac.name.as_str(), "restricted": !ac.unrestricted});
        // As Keystone: the rules ride in the token, for the services to enforce.
        if let Some(rules) = auth.access_rules().filter(|r| !r.is_empty()) {
            v["token"]["application_credential"]["access_rules"] =
                rules.into_iter().map(access_rule_json).collect();
        }
    }
    v
}

/// The caller and the valid token of `X-Subject-Token` (400 without the header, 404
/// when it is not a valid token, 403 when it is another user's and the caller is not an
/// admin: policy `identity:<rule>`).
fn subject_token<'h>(
    api: &IdentityApi,
    headers: &'h HeaderMap,
    rule: &str,
) -> Result<(Auth, Auth, &'h str), IdentityError> {
    let me = caller(api, headers)?;
    let subject = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            IdentityError::BadRequest("Expecting to find X-Subject-Token in headers.".into())
        })?;
    let views = api.world.read();
    let auth = api
        .tokens
        .validate(subject, views.identity(), engine::now())
        .map_err(|_| IdentityError::NotFound("Could not find token.".into()))?;
    drop(views);
    if !me.is_admin() && me.user.id != auth.user.id {
        require_admin(&me, rule)?;
    }
    Ok((me, auth, subject))
}

/// `DELETE /v3/auth/tokens`: revokes the subject token (204). The revocation is an
/// event on the token's user, so every process that folds the api stream refuses the
/// token from then on (in this process before the answer).
async fn revoke_token(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Res {
    let (me, auth, _) = subject_token(&api, &headers, "revoke_token")?;
    let pos = commands::revoke_token(
        api.log.as_ref(),
        &auth.user.id,
        auth.claims.audit_id.clone(),
        Timestamp(auth.claims.expires_at),
        &actor(&me, &rid),
    )
    .await?;
    settle(&api, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `HEAD /v3/auth/tokens`: 200 when the subject token is valid (no body).
async fn check_token(State(api): State<IdentityApi>, headers: HeaderMap) -> Res {
    let (_, _, subject) = subject_token(&api, &headers, "check_token")?;
    let mut resp = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(subject) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    Ok(resp)
}

async fn validate_token(State(api): State<IdentityApi>, headers: HeaderMap) -> Res {
    let (_, auth, subject) = subject_token(&api, &headers, "validate_token")?;
    let mut resp = Json(token_body(&api, &auth, &base(&headers, &api))).into_response();
    if let Ok(v) = HeaderValue::from_str(subject) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    Ok(resp)
}

async fn auth_projects(State(api): State<IdentityApi>, headers: HeaderMap) -> Res {
    let me = caller(&api, &headers)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let items = visible_projects(views.identity(), &me, false)
        .into_iter()
        .map(|p| project_json(p, &b))
        .collect();
    Ok(collection("projects", items, &b, "/v3/auth/projects"))
}

async fn auth_catalog(State(api): State<IdentityApi>, headers: HeaderMap) -> Res {
    caller(&api, &headers)?;
    let b = base(&headers, &api);
    Ok(Json(json!({"catalog": api.catalog.to_json(), "links": {"self": format!("{b}/v3/auth/catalog"), "previous": null, "next": null}})).into_response())
}

// ---- projects ----

fn visible_projects<'a>(
    ids: &'a projections::IdentityViews,
    me: &Auth,
    all_for_admin: bool,
) -> Vec<&'a Project> {
    ids.projects()
        .into_iter()
        .filter(|p| (all_for_admin && me.is_admin()) || !me.user.roles_on(&p.id).is_empty())
        .collect()
}

#[derive(Deserialize)]
struct NameQuery {
    #[serde(default)]
    name: Option<String>,
}

async fn list_projects(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Query(q): Query<NameQuery>,
) -> Res {
    let me = caller(&api, &headers)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let items = visible_projects(views.identity(), &me, true)
        .into_iter()
        .filter(|p| q.name.as_deref().is_none_or(|n| p.name.as_str() == n))
        .map(|p| project_json(p, &b))
        .collect();
    Ok(collection("projects", items, &b, "/v3/projects"))
}

async fn show_project(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    let me = caller(&api, &headers)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let p = ProjectId::new(id.clone())
        .ok()
        .and_then(|pid| views.identity().project(&pid))
        .filter(|p| me.is_admin() || !me.user.roles_on(&p.id).is_empty())
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find project: {id}.")))?;
    Ok(Json(json!({"project": project_json(p, &b)})).into_response())
}

#[derive(Deserialize)]
struct CreateProjectReq {
    project: CreateProjectBody,
}

#[derive(Deserialize)]
struct CreateProjectBody {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    domain_id: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

fn check_domain_id(d: Option<&str>) -> Result<(), IdentityError> {
    match d {
        None | Some(DEFAULT_DOMAIN_ID) => Ok(()),
        Some(other) => Err(IdentityError::BadRequest(format!(
            "Domain {other} does not exist: only the Default domain (id default) is supported."
        ))),
    }
}

async fn create_project(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Body(body): Body,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "create_project")?;
    let req: CreateProjectReq = parse(&body)?;
    let p = req.project;
    check_domain_id(p.domain_id.as_deref())?;
    let name = IdentityName::new(p.name)?;
    let description = p.description.unwrap_or_default();
    if description.len() > 65_535 {
        return Err(IdentityError::BadRequest("Description is too long.".into()));
    }
    let (id, pos) = commands::create_project(
        api.log.as_ref(),
        name,
        description,
        p.enabled.unwrap_or(true),
        &actor(&me, &rid),
    )
    .await?;
    settle(&api, pos).await?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let p = views
        .identity()
        .project(&id)
        .ok_or_else(|| IdentityError::Internal("created project not in the view".into()))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"project": project_json(p, &b)})),
    )
        .into_response())
}

/// Deserializes a present field as `Some` (so an explicit `null` is `Some(None)`,
/// distinct from an absent field, `None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProjectReq {
    project: UpdateProjectBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProjectBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    domain_id: Option<String>,
}

fn existing_project(api: &IdentityApi, me: &Auth, id: &str) -> Result<ProjectId, IdentityError> {
    let views = api.world.read();
    ProjectId::new(id)
        .ok()
        .and_then(|pid| views.identity().project(&pid))
        .filter(|p| me.is_admin() || !me.user.roles_on(&p.id).is_empty())
        .map(|p| p.id.clone())
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find project: {id}.")))
}

/// `PATCH /v3/projects/{id}`: name, description, enabled (a disable invalidates the
/// tokens scoped to it). The domain cannot change.
async fn update_project(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "update_project")?;
    let req: UpdateProjectReq = parse(&body).map_err(|e| {
        IdentityError::BadRequest(format!(
            "{e} (only name, description and enabled can be changed)"
        ))
    })?;
    let p = req.project;
    if p.domain_id
        .as_deref()
        .is_some_and(|d| d != DEFAULT_DOMAIN_ID)
    {
        return Err(IdentityError::BadRequest("Cannot change Domain ID.".into()));
    }
    let pid = existing_project(&api, &me, &id)?;
    let name = p.name.map(IdentityName::new).transpose()?;
    if p.description.as_ref().is_some_and(|d| d.len() > 65_535) {
        return Err(IdentityError::BadRequest("Description is too long.".into()));
    }
    let pos = commands::update_project(
        api.log.as_ref(),
        &pid,
        name,
        p.description,
        p.enabled,
        &actor(&me, &rid),
    )
    .await?;
    settle(&api, pos).await?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let p = views
        .identity()
        .project(&pid)
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find project: {id}.")))?;
    Ok(Json(json!({"project": project_json(p, &b)})).into_response())
}

/// `DELETE /v3/projects/{id}`: its tokens stop working, its name is free again.
async fn delete_project(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "delete_project")?;
    let pid = existing_project(&api, &me, &id)?;
    let pos = commands::delete_project(api.log.as_ref(), &pid, &actor(&me, &rid)).await?;
    settle(&api, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- users ----

async fn list_users(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Query(q): Query<NameQuery>,
) -> Res {
    let me = caller(&api, &headers)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let items = views
        .identity()
        .users()
        .into_iter()
        .filter(|u| me.is_admin() || u.id == me.user.id)
        .filter(|u| q.name.as_deref().is_none_or(|n| u.name.as_str() == n))
        .map(|u| user_json(u, &b))
        .collect();
    Ok(collection("users", items, &b, "/v3/users"))
}

fn find_user<'a>(
    views: &'a projections::IdentityViews,
    me: &Auth,
    id: &str,
) -> Result<&'a User, IdentityError> {
    UserId::new(id)
        .ok()
        .and_then(|u| views.user(&u))
        .filter(|u| me.is_admin() || u.id == me.user.id)
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find user: {id}.")))
}

async fn show_user(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    let me = caller(&api, &headers)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let u = find_user(views.identity(), &me, &id)?;
    Ok(Json(json!({"user": user_json(u, &b)})).into_response())
}

#[derive(Deserialize)]
struct CreateUserReq {
    user: CreateUserBody,
}

#[derive(Deserialize)]
struct CreateUserBody {
    name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    domain_id: Option<String>,
    #[serde(default)]
    default_project_id: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    /// Anything else is one of Keystone's extra attributes (`email`, `description`).
    #[serde(flatten)]
    extra: serde_json::Map<String, Value>,
}

/// Members a user body may not set as extra attributes (Keystone's read-only or
/// reserved ones; `options` is accepted and ignored when it is an object).
const USER_RESERVED: &[&str] = &["id", "links", "password_expires_at", "options"];

type Options = std::collections::BTreeMap<String, Option<bool>>;

/// The `options` of a user body: Keystone's boolean security-compliance options
/// (`domain::identity::USER_OPTIONS`), each `true`, `false` or `null` (removes it);
/// anything else is a 400.
fn user_options(v: Option<&Value>) -> Result<Options, IdentityError> {
    let bad =
        |m: String| IdentityError::BadRequest(format!("Invalid input for field 'options': {m}"));
    let Some(v) = v else {
        return Ok(Options::new());
    };
    let Value::Object(m) = v else {
        return Err(bad(format!("{v} is not of type 'object'.")));
    };
    let mut out = Options::new();
    for (k, v) in m {
        if !domain::identity::USER_OPTIONS.contains(&k.as_str()) {
            return Err(bad(format!("unknown option {k:?}.")));
        }
        match v {
            Value::Bool(b) => out.insert(k.clone(), Some(*b)),
            Value::Null => out.insert(k.clone(), None),
            other => return Err(bad(format!("{other} is not of type 'boolean', 'null'."))),
        };
    }
    Ok(out)
}

/// The extra attributes of a user body (400 for a reserved member; `options` is
/// taken apart by [`user_options`]).
fn user_extra(
    extra: serde_json::Map<String, Value>,
) -> Result<std::collections::BTreeMap<String, Value>, IdentityError> {
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in extra {
        if k == "options" {
            continue;
        }
        if USER_RESERVED.contains(&k.as_str()) {
            return Err(IdentityError::BadRequest(format!(
                "Invalid input for field '{k}': it cannot be set."
            )));
        }
        out.insert(k, v);
    }
    Ok(out)
}

async fn create_user(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Body(body): Body,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "create_user")?;
    let req: CreateUserReq = parse(&body)?;
    let u = req.user;
    check_domain_id(u.domain_id.as_deref())?;
    let options = user_options(u.extra.get("options"))?;
    let extra = user_extra(u.extra)?
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    let name = IdentityName::new(u.name)?;
    let pw = u
        .password
        .ok_or_else(|| IdentityError::BadRequest("A password is required.".into()))?;
    password::check(&pw)?;
    api.compliance.check_password(&pw)?;
    let default_project = match u.default_project_id {
        None => None,
        Some(p) => {
            let views = api.world.read();
            let found = ProjectId::new(p.clone())
                .ok()
                .filter(|id| views.identity().project(id).is_some());
            Some(found.ok_or_else(|| {
                IdentityError::BadRequest(format!("Could not find project: {p}."))
            })?)
        }
    };
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| IdentityError::Internal(e.to_string()))??;
    let (id, pos) = commands::create_user_with(
        api.log.as_ref(),
        name,
        hash,
        u.enabled.unwrap_or(true),
        default_project,
        extra,
        api.compliance.rules.expires_at_for(
            &options
                .iter()
                .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
                .collect(),
            engine::now(),
            true,
        ),
        &actor(&me, &rid),
    )
    .await?;
    let mut pos = pos;
    if !options.is_empty() {
        let who = actor(&me, &rid);
        pos = pos.max(commands::set_user_options(api.log.as_ref(), &id, options, &who).await?);
    }
    settle(&api, pos).await?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let u = views
        .identity()
        .user(&id)
        .ok_or_else(|| IdentityError::Internal("created user not in the view".into()))?;
    Ok((StatusCode::CREATED, Json(json!({"user": user_json(u, &b)}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserReq {
    user: UpdateUserBody,
}

#[derive(Deserialize)]
struct UpdateUserBody {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    default_project_id: Option<Option<String>>,
    #[serde(default)]
    domain_id: Option<String>,
    /// Extra attributes to set (`null` removes one).
    #[serde(flatten)]
    extra: serde_json::Map<String, Value>,
}

async fn update_user(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "update_user")?;
    let req: UpdateUserReq = parse(&body)?;
    let options = user_options(req.user.extra.get("options"))?;
    let extra: std::collections::BTreeMap<String, Option<String>> = user_extra(req.user.extra)?
        .into_iter()
        .map(|(k, v)| (k, (!v.is_null()).then(|| v.to_string())))
        .collect();
    if req
        .user
        .domain_id
        .as_deref()
        .is_some_and(|d| d != DEFAULT_DOMAIN_ID)
    {
        return Err(IdentityError::BadRequest("Cannot change Domain ID.".into()));
    }
    let name = req.user.name.map(IdentityName::new).transpose()?;
    let uid = {
        let views = api.world.read();
        find_user(views.identity(), &me, &id)?.id.clone()
    };
    let default_project = match req.user.default_project_id {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) => {
            let views = api.world.read();
            let found = ProjectId::new(p.clone())
                .ok()
                .filter(|id| views.identity().project(id).is_some());
            Some(Some(found.ok_or_else(|| {
                IdentityError::BadRequest(format!("Could not find project: {p}."))
            })?))
        }
    };
    let hash = match req.user.password {
        Some(pw) => {
            password::check(&pw)?;
            api.compliance.check_password(&pw)?;
            Some(
                tokio::task::spawn_blocking(move || password::hash(&pw))
                    .await
                    .map_err(|e| IdentityError::Internal(e.to_string()))??,
            )
        }
        None => None,
    };
    let who = actor(&me, &rid);
    let mut pos = None;
    // Options first: an exemption given with a password applies to it.
    if !options.is_empty() {
        pos = pos.max(commands::set_user_options(api.log.as_ref(), &uid, options, &who).await?);
    }
    if let Some(h) = hash {
        let rules = api.compliance.rules;
        pos = pos.max(commands::set_password(api.log.as_ref(), &uid, h, rules, &who).await?);
    }
    if let Some(e) = req.user.enabled {
        pos = pos.max(commands::set_enabled(api.log.as_ref(), &uid, e, &who).await?);
    }
    if name.is_some() || default_project.is_some() || !extra.is_empty() {
        pos = pos.max(
            commands::update_user(api.log.as_ref(), &uid, name, default_project, extra, &who)
                .await?,
        );
    }
    settle(&api, pos).await?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let u = find_user(views.identity(), &me, &id)?;
    Ok(Json(json!({"user": user_json(u, &b)})).into_response())
}

/// `DELETE /v3/users/{id}`: its tokens and application credentials stop working, its
/// name is free again.
async fn delete_user(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "delete_user")?;
    let uid = {
        let views = api.world.read();
        find_user(views.identity(), &me, &id)?.id.clone()
    };
    let pos = commands::delete_user(api.log.as_ref(), &uid, &actor(&me, &rid)).await?;
    settle(&api, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordReq {
    user: ChangePasswordBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordBody {
    original_password: String,
    password: String,
}

/// `POST /v3/users/{id}/password`: a user changes its own password (204). No token:
/// the original password authenticates the call, with Keystone's rules (a failure
/// counts towards the lockout, a locked user is refused, an expired password may be
/// changed). The new password must pass the regex, the minimum age and the history;
/// the user's earlier tokens stop working.
async fn change_password(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Res {
    let req: ChangePasswordReq = parse(&body)?;
    let ChangePasswordBody {
        original_password,
        password: new_password,
    } = req.user;
    let user = {
        let views = api.world.read();
        UserId::new(id)
            .ok()
            .and_then(|u| views.identity().user(&u))
            .cloned()
    };
    let user = authenticate(&api, user, original_password, true, &rid).await?;
    password::check(&new_password)?;
    api.compliance.check_password(&new_password)?;
    let plain = new_password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&plain))
        .await
        .map_err(|e| IdentityError::Internal(e.to_string()))??;
    let pos = commands::change_own_password(
        api.log.as_ref(),
        &user.id,
        new_password,
        hash,
        api.compliance.rules,
        &anonymous_actor(&user.id, &rid),
    )
    .await?;
    settle(&api, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v3/users/{id}/projects`: the projects the user has a role on.
async fn user_projects(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    let me = caller(&api, &headers)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let u = find_user(views.identity(), &me, &id)?;
    let items = views
        .identity()
        .projects_of(u)
        .into_iter()
        .map(|p| project_json(p, &b))
        .collect();
    Ok(collection(
        "projects",
        items,
        &b,
        &format!("/v3/users/{id}/projects"),
    ))
}

// ---- application credentials ----

fn app_cred_json(
    views: &projections::IdentityViews,
    user: &UserId,
    c: &AppCred,
    base: &str,
) -> Value {
    let roles: Vec<Value> = c
        .roles
        .iter()
        .filter_map(|r| views.role(r))
        .map(|r| json!({"id": r.id.as_str(), "name": r.name.as_str(), "domain_id": null}))
        .collect();
    let rules: Vec<Value> = views
        .user(user)
        .and_then(|u| {
            u.app_cred_rules.get(&c.id).map(|ids| {
                ids.iter()
                    .filter_map(|id| u.access_rules.get(id))
                    .map(access_rule_json)
                    .collect()
            })
        })
        .unwrap_or_default();
    json!({
        "id": c.id,
        "name": c.name.as_str(),
        "description": c.description,
        // Keystone prints a credential's expiry without the zone (it is UTC).
        "expires_at": c.expires_at.map(|t| iso(t).trim_end_matches('Z').to_string()),
        "project_id": c.project.as_str(),
        "roles": roles,
        "unrestricted": c.unrestricted,
        "access_rules": rules,
        "links": {"self": format!("{base}/v3/users/{user}/application_credentials/{}", c.id)},
    })
}

/// The user of an application credential path: the caller, or any user for an
/// admin (others: 404, as for the user itself).
fn app_cred_owner(api: &IdentityApi, me: &Auth, id: &str) -> Result<UserId, IdentityError> {
    let views = api.world.read();
    Ok(find_user(views.identity(), me, id)?.id.clone())
}

const RESTRICTED_APP_CRED: &str = "You are not authorized to perform the requested action: Using method 'application_credential' is not allowed for managing additional application credentials.";

#[derive(Deserialize)]
struct CreateAppCredReq {
    application_credential: CreateAppCredBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAppCredBody {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    roles: Option<Vec<RoleRef>>,
    #[serde(default)]
    unrestricted: Option<bool>,
    #[serde(default)]
    access_rules: Option<Value>,
}

#[derive(Deserialize)]
struct RoleRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// An ISO 8601 time as clients send it (`2030-01-01T00:00:00`, with or without
/// fraction and `Z` / offset; no offset means UTC).
fn parse_time(s: &str) -> Option<Timestamp> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339))
        .ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000)
        .ok()
        .map(Timestamp)
}

/// A fresh secret: 64 random bytes, base64url without padding (as Keystone makes them).
fn generate_secret() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    use base64::Engine as _;
    let mut b = [0u8; 64];
    OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `POST /v3/users/{id}/application_credentials`: for the caller only, on the token's
/// project, with the token's roles or a subset of them; 201 with the secret (shown
/// this once: only its hash is stored).
async fn create_app_cred(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Res {
    let me = caller(&api, &headers)?;
    if !me.may_manage_app_creds() {
        return Err(IdentityError::Forbidden(RESTRICTED_APP_CRED.into()));
    }
    if me.user.id.as_str() != id {
        return Err(IdentityError::Forbidden(
            "You are not authorized to perform the requested action: Cannot create an application credential for another user.".into(),
        ));
    }
    let req: CreateAppCredReq = parse(&body)?;
    let c = req.application_credential;
    let name = IdentityName::new(c.name)?;
    let access_rules = match &c.access_rules {
        None => Vec::new(),
        Some(v) => access_rule_requests(v)?,
    };
    let now = engine::now();
    let expires_at = match c.expires_at.as_deref() {
        None => None,
        Some(s) => {
            let t = parse_time(s).ok_or_else(|| {
                IdentityError::BadRequest(format!(
                    "Invalid input for field 'expires_at': {s:?} is not a date-time."
                ))
            })?;
            if t <= now {
                return Err(IdentityError::BadRequest(
                    "The 'expires_at' must not be before now.".into(),
                ));
            }
            Some(t)
        }
    };
    let roles: Vec<RoleId> = match c.roles {
        None => me.roles.iter().map(|r| r.id.clone()).collect(),
        Some(refs) if refs.is_empty() => me.roles.iter().map(|r| r.id.clone()).collect(),
        Some(refs) => {
            let views = api.world.read();
            let mut out = Vec::new();
            for r in refs {
                let role = match (&r.id, &r.name) {
                    (Some(i), _) => RoleId::new(i.clone())
                        .ok()
                        .and_then(|x| views.identity().role(&x)),
                    (None, Some(n)) => views.identity().role_by_name(n),
                    (None, None) => {
                        return Err(IdentityError::BadRequest(
                            "Expecting to find id or name in role.".into(),
                        ))
                    }
                };
                let shown = r.id.or(r.name).unwrap_or_default();
                let role = role.ok_or_else(|| {
                    IdentityError::NotFound(format!("Could not find role: {shown}."))
                })?;
                if !me.roles.iter().any(|t| t.id == role.id) {
                    return Err(IdentityError::BadRequest(
                        "Invalid application credential: Cannot create an application credential with unassigned role".into(),
                    ));
                }
                if !out.contains(&role.id) {
                    out.push(role.id.clone());
                }
            }
            out
        }
    };
    let secret = match c.secret {
        Some(s) if !s.is_empty() => s,
        _ => generate_secret(),
    };
    let to_hash = secret.clone();
    let secret_hash = tokio::task::spawn_blocking(move || password::hash(&to_hash))
        .await
        .map_err(|e| IdentityError::Internal(e.to_string()))??;
    let cred = AppCred {
        id: uuid::Uuid::new_v4().simple().to_string(),
        name,
        description: c.description,
        project: me.project.id.clone(),
        roles,
        secret_hash,
        expires_at,
        unrestricted: c.unrestricted.unwrap_or(false),
        created_at: now,
    };
    let cid = cred.id.clone();
    let pos = commands::create_app_cred(
        api.log.as_ref(),
        &me.user.id,
        cred,
        access_rules,
        &actor(&me, &rid),
    )
    .await?;
    settle(&api, pos).await?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let c = views
        .identity()
        .user(&me.user.id)
        .and_then(|u| u.app_creds.get(&cid))
        .ok_or_else(|| IdentityError::Internal("created credential not in the view".into()))?;
    let mut v = app_cred_json(views.identity(), &me.user.id, c, &b);
    v["secret"] = json!(secret);
    Ok((
        StatusCode::CREATED,
        Json(json!({"application_credential": v})),
    )
        .into_response())
}

async fn list_app_creds(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<NameQuery>,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let ids = views.identity();
    let items = ids
        .user(&uid)
        .map(|u| {
            let mut v: Vec<&AppCred> = u
                .app_creds
                .values()
                .filter(|c| q.name.as_deref().is_none_or(|n| c.name.as_str() == n))
                .collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v.into_iter()
                .map(|c| app_cred_json(ids, &uid, c, &b))
                .collect()
        })
        .unwrap_or_default();
    Ok(collection(
        "application_credentials",
        items,
        &b,
        &format!("/v3/users/{id}/application_credentials"),
    ))
}

fn cred_not_found(id: &str) -> IdentityError {
    IdentityError::NotFound(format!("Could not find Application Credential: {id}."))
}

async fn show_app_cred(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path((id, cred)): Path<(String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let ids = views.identity();
    let c = ids
        .user(&uid)
        .and_then(|u| u.app_creds.get(&cred))
        .ok_or_else(|| cred_not_found(&cred))?;
    Ok(Json(json!({"application_credential": app_cred_json(ids, &uid, c, &b)})).into_response())
}

/// `DELETE /v3/users/{id}/application_credentials/{cred}`: the tokens issued for it
/// stop working.
async fn delete_app_cred(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path((id, cred)): Path<(String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    if !me.may_manage_app_creds() {
        return Err(IdentityError::Forbidden(RESTRICTED_APP_CRED.into()));
    }
    {
        let views = api.world.read();
        views
            .identity()
            .user(&uid)
            .and_then(|u| u.app_creds.get(&cred))
            .ok_or_else(|| cred_not_found(&cred))?;
    }
    let pos = commands::delete_app_cred(api.log.as_ref(), &uid, &cred, &actor(&me, &rid)).await?;
    settle(&api, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- access rules ----

/// An access rule as Keystone shows it in an application credential and in a token.
fn access_rule_json(r: &AccessRule) -> Value {
    json!({"id": r.id, "service": r.service, "path": r.path, "method": r.method})
}

/// An access rule as its own resource (with its link).
fn access_rule_member(user: &UserId, r: &AccessRule, base: &str) -> Value {
    let mut v = access_rule_json(r);
    v["links"] = json!({"self": format!("{base}/v3/users/{user}/access_rules/{}", r.id)});
    v
}

/// Methods an access rule may name (Keystone's schema enum).
const RULE_METHODS: [&str; 6] = ["DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"];

/// A JSON value as Python prints it (`repr`), as Keystone's schema messages quote it.
fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Keystone's refusal of a body that fails its JSON schema: the failing field (the
/// last element of its path), its value (`str`: strings unquoted) and jsonschema's
/// message.
fn schema_error(field: &str, value: &Value, message: &str) -> IdentityError {
    let shown = match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    };
    IdentityError::BadRequest(format!(
        "Invalid input for field/attribute {field}. Value: {shown}. {message}"
    ))
}

/// A string property of an access rule checked against Keystone's schema: its type,
/// length bounds and pattern (given as `check` and the pattern's source text).
fn rule_string<'a>(
    field: &str,
    v: &'a Value,
    min: usize,
    max: usize,
    pattern: (&str, fn(&str) -> bool),
) -> Result<&'a str, IdentityError> {
    let Some(s) = v.as_str() else {
        return Err(schema_error(
            field,
            v,
            &format!("{} is not of type 'string'", py_repr(v)),
        ));
    };
    let len = s.chars().count();
    if len < min {
        return Err(schema_error(
            field,
            v,
            &format!("{} should be non-empty", py_repr(v)),
        ));
    }
    if len > max {
        return Err(schema_error(
            field,
            v,
            &format!("{} is too long", py_repr(v)),
        ));
    }
    if !(pattern.1)(s) {
        let src = py_repr(&Value::String(pattern.0.into()));
        return Err(schema_error(
            field,
            v,
            &format!("{} does not match {src}", py_repr(v)),
        ));
    }
    Ok(s)
}

/// The `access_rules` of an application credential create, checked as Keystone's
/// schema checks them (an array of objects; `id` an id string; `service` an id string,
/// `path` starting with `/`, at most 225 characters; `method` one of
/// [`RULE_METHODS`]). An item naming only an `id` asks for the user's existing rule;
/// any other needs `service`, `path` and `method` (Keystone fails such an item with a
/// 500; here it is a 400 in the schema's words) and gets a fresh id, unless the user
/// already has the identical rule (decided by the domain).
fn access_rule_requests(v: &Value) -> Result<Vec<AccessRuleRequest>, IdentityError> {
    let Some(items) = v.as_array() else {
        return Err(schema_error(
            "access_rules",
            v,
            &format!("{} is not of type 'array'", py_repr(v)),
        ));
    };
    let id_string = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(o) = item.as_object() else {
            return Err(schema_error(
                &i.to_string(),
                item,
                &format!("{} is not of type 'object'", py_repr(item)),
            ));
        };
        let id = match o.get("id") {
            None => None,
            Some(x) => Some(rule_string("id", x, 1, 64, ("^[a-zA-Z0-9-]+$", id_string))?),
        };
        let spec = ["service", "path", "method"];
        if let Some(id) = id.filter(|_| spec.iter().all(|k| !o.contains_key(*k))) {
            out.push(AccessRuleRequest::Existing(id.to_string()));
            continue;
        }
        if let Some(missing) = spec.iter().find(|k| !o.contains_key(**k)) {
            return Err(schema_error(
                &i.to_string(),
                item,
                &format!("'{missing}' is a required property"),
            ));
        }
        let service = rule_string(
            "service",
            &o["service"],
            1,
            64,
            ("^[a-zA-Z0-9-]+$", id_string),
        )?;
        let path = rule_string(
            "path",
            &o["path"],
            0,
            225,
            ("^/\\.*", |s| s.starts_with('/')),
        )?;
        let method = &o["method"];
        let method = match method.as_str() {
            Some(m) if RULE_METHODS.contains(&m) => m,
            _ => {
                let allowed = RULE_METHODS
                    .iter()
                    .map(|m| format!("'{m}'"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(schema_error(
                    "method",
                    method,
                    &format!("{} is not one of [{allowed}]", py_repr(method)),
                ));
            }
        };
        out.push(AccessRuleRequest::New(AccessRule {
            id: uuid::Uuid::new_v4().simple().to_string(),
            service: service.to_string(),
            path: path.to_string(),
            method: method.to_string(),
        }));
    }
    Ok(out)
}

fn access_rule_not_found(id: &str) -> IdentityError {
    IdentityError::NotFound(format!("Could not find Access Rule: {id}."))
}

#[derive(Deserialize)]
struct AccessRuleQuery {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    method: Option<String>,
}

/// `GET /v3/users/{id}/access_rules`: the user's rules (`?service=`, `?path=`,
/// `?method=` filter by equality), in id order.
async fn list_access_rules(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<AccessRuleQuery>,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    let items = views
        .identity()
        .user(&uid)
        .map(|u| {
            u.access_rules
                .values()
                .filter(|r| eq(&q.service, &r.service) && eq(&q.path, &r.path))
                .filter(|r| eq(&q.method, &r.method))
                .map(|r| access_rule_member(&uid, r, &b))
                .collect()
        })
        .unwrap_or_default();
    Ok(collection(
        "access_rules",
        items,
        &b,
        &format!("/v3/users/{id}/access_rules"),
    ))
}

/// `GET /v3/users/{id}/access_rules/{rule}`.
async fn show_access_rule(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path((id, rule)): Path<(String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let r = views
        .identity()
        .user(&uid)
        .and_then(|u| u.access_rules.get(&rule))
        .ok_or_else(|| access_rule_not_found(&rule))?;
    Ok(Json(json!({"access_rule": access_rule_member(&uid, r, &b)})).into_response())
}

/// `DELETE /v3/users/{id}/access_rules/{rule}`: 204, or 403 while an application
/// credential of the user names the rule.
async fn delete_access_rule(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path((id, rule)): Path<(String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    let pos =
        commands::delete_access_rule(api.log.as_ref(), &uid, &rule, &actor(&me, &rid)).await?;
    settle(&api, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- EC2 credentials (OS-EC2) ----

fn ec2_json(user: &UserId, c: &Ec2Cred, base: &str) -> Value {
    json!({
        "user_id": user.as_str(),
        "tenant_id": c.project.as_str(),
        "access": c.access,
        "secret": c.secret,
        "trust_id": null,
        "links": {"self": format!("{base}/v3/users/{user}/credentials/OS-EC2/{}", c.access)},
    })
}

/// Keystone's 404 for an unknown access key names the credential's id, the SHA-256 of
/// the access key.
fn ec2_not_found(access: &str) -> IdentityError {
    use sha2::Digest as _;
    let id: String = sha2::Sha256::digest(access.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    IdentityError::NotFound(format!("Could not find credential: {id}."))
}

/// A fresh 32-hex key (Keystone's `uuid4().hex` access keys and secrets).
fn hex_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[derive(Deserialize)]
struct CreateEc2Req {
    #[serde(default)]
    tenant_id: Option<String>,
}

/// `POST /v3/users/{id}/credentials/OS-EC2` (`{"tenant_id": ...}`): 201 with a new
/// access key and secret. Keystone's `ec2_create_credential`: admin, or the user
/// itself with a member role; the project must exist (a role on it is not required,
/// as in Keystone).
async fn create_ec2_cred(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    let member = me
        .roles
        .iter()
        .any(|r| matches!(r.name.as_str(), "admin" | "manager" | "member"));
    if !member {
        return Err(IdentityError::Forbidden(
            "You are not authorized to perform the requested action: identity:ec2_create_credential."
                .into(),
        ));
    }
    if !me.may_manage_app_creds() {
        return Err(IdentityError::Forbidden(RESTRICTED_APP_CRED.into()));
    }
    let req: CreateEc2Req = parse(&body)?;
    let tenant = req.tenant_id.unwrap_or_default();
    let project = {
        let views = api.world.read();
        ProjectId::new(tenant.clone())
            .ok()
            .and_then(|p| views.identity().project(&p).map(|p| p.id.clone()))
            .ok_or_else(|| {
                let shown = if tenant.is_empty() { "None" } else { &tenant };
                IdentityError::NotFound(format!("Could not find project: {shown}."))
            })?
    };
    let cred = Ec2Cred {
        access: hex_key(),
        secret: hex_key(),
        project,
        created_at: engine::now(),
    };
    let v = ec2_json(&uid, &cred, &base(&headers, &api));
    let pos = commands::create_ec2_cred(api.log.as_ref(), &uid, cred, &actor(&me, &rid)).await?;
    settle(&api, pos).await?;
    Ok((StatusCode::CREATED, Json(json!({"credential": v}))).into_response())
}

/// `GET /v3/users/{id}/credentials/OS-EC2`
async fn list_ec2_creds(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let items = views
        .identity()
        .user(&uid)
        .map(|u| {
            let mut v: Vec<&Ec2Cred> = u.ec2_creds.values().collect();
            v.sort_by(|a, b| (a.created_at, &a.access).cmp(&(b.created_at, &b.access)));
            v.into_iter().map(|c| ec2_json(&uid, c, &b)).collect()
        })
        .unwrap_or_default();
    Ok(collection(
        "credentials",
        items,
        &b,
        &format!("/v3/users/{id}/credentials/OS-EC2"),
    ))
}

/// `GET /v3/users/{id}/credentials/OS-EC2/{access}`
async fn show_ec2_cred(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path((id, access)): Path<(String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let c = views
        .identity()
        .user(&uid)
        .and_then(|u| u.ec2_creds.get(&access))
        .ok_or_else(|| ec2_not_found(&access))?;
    Ok(Json(json!({"credential": ec2_json(&uid, c, &b)})).into_response())
}

/// `DELETE /v3/users/{id}/credentials/OS-EC2/{access}`: 204.
async fn delete_ec2_cred(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path((id, access)): Path<(String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    let uid = app_cred_owner(&api, &me, &id)?;
    {
        let views = api.world.read();
        views
            .identity()
            .user(&uid)
            .and_then(|u| u.ec2_creds.get(&access))
            .ok_or_else(|| ec2_not_found(&access))?;
    }
    match commands::delete_ec2_cred(api.log.as_ref(), &uid, &access, &actor(&me, &rid)).await {
        Err(IdentityError::Domain(domain::DomainError::NotFound { .. })) => {
            Err(ec2_not_found(&access))
        }
        Err(e) => Err(e),
        Ok(pos) => {
            settle(&api, pos).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

// ---- roles ----

#[derive(Deserialize)]
struct CreateRoleReq {
    role: CreateRoleBody,
}

#[derive(Deserialize)]
struct CreateRoleBody {
    name: String,
    #[serde(default)]
    domain_id: Option<String>,
}

/// `POST /v3/roles`: a global role (domain-specific roles are not supported).
async fn create_role(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Body(body): Body,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "create_role")?;
    let req: CreateRoleReq = parse(&body)?;
    if req.role.domain_id.is_some() {
        return Err(IdentityError::BadRequest(
            "Domain-specific roles are not supported: omit domain_id.".into(),
        ));
    }
    let name = IdentityName::new(req.role.name)?;
    let (id, pos) = commands::create_role(api.log.as_ref(), name, &actor(&me, &rid)).await?;
    settle(&api, pos).await?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let r = views
        .identity()
        .role(&id)
        .ok_or_else(|| IdentityError::Internal("created role not in the view".into()))?;
    Ok((StatusCode::CREATED, Json(json!({"role": role_json(r, &b)}))).into_response())
}

/// `DELETE /v3/roles/{id}`: its assignments stop counting, its name is free again.
async fn delete_role(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "delete_role")?;
    let role = {
        let views = api.world.read();
        RoleId::new(id.clone())
            .ok()
            .filter(|r| views.identity().role(r).is_some())
            .ok_or_else(|| IdentityError::NotFound(format!("Could not find role: {id}.")))?
    };
    let pos = commands::delete_role(api.log.as_ref(), &role, &actor(&me, &rid)).await?;
    settle(&api, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_roles(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Query(q): Query<NameQuery>,
) -> Res {
    caller(&api, &headers)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let items = views
        .identity()
        .roles()
        .into_iter()
        .filter(|r| q.name.as_deref().is_none_or(|n| r.name.as_str() == n))
        .map(|r| role_json(r, &b))
        .collect();
    Ok(collection("roles", items, &b, "/v3/roles"))
}

async fn show_role(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    caller(&api, &headers)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let r = RoleId::new(id.clone())
        .ok()
        .and_then(|r| views.identity().role(&r))
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find role: {id}.")))?;
    Ok(Json(json!({"role": role_json(r, &b)})).into_response())
}

/// Resolves the ids of an assignment path (404 naming the first unknown one).
fn assignment(
    views: &projections::IdentityViews,
    p: &str,
    u: &str,
    r: Option<&str>,
) -> Result<(ProjectId, UserId, Option<RoleId>), IdentityError> {
    let project = ProjectId::new(p)
        .ok()
        .filter(|id| views.project(id).is_some())
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find project: {p}.")))?;
    let user = UserId::new(u)
        .ok()
        .filter(|id| views.user(id).is_some())
        .ok_or_else(|| IdentityError::NotFound(format!("Could not find user: {u}.")))?;
    let role = match r {
        None => None,
        Some(r) => Some(
            RoleId::new(r)
                .ok()
                .filter(|id| views.role(id).is_some())
                .ok_or_else(|| IdentityError::NotFound(format!("Could not find role: {r}.")))?,
        ),
    };
    Ok((project, user, role))
}

async fn grant_role(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path((p, u, r)): Path<(String, String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "create_grant")?;
    let (project, user, role) = {
        let views = api.world.read();
        assignment(views.identity(), &p, &u, Some(&r))?
    };
    let role = role.expect("asked for");
    let pos =
        commands::grant_role(api.log.as_ref(), &user, &project, &role, &actor(&me, &rid)).await?;
    settle(&api, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn check_role(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path((p, u, r)): Path<(String, String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    let views = api.world.read();
    let (project, user, role) = assignment(views.identity(), &p, &u, Some(&r))?;
    if !me.is_admin() && me.user.id != user {
        return Err(IdentityError::NotFound(format!(
            "Could not find user: {u}."
        )));
    }
    let has = views
        .identity()
        .user(&user)
        .is_some_and(|x| x.roles.contains(&(project, role.expect("asked for"))));
    if has {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(IdentityError::NotFound(format!(
            "Could not find role assignment with role: {r}, user or group: {u}, project, domain, or system: {p}."
        )))
    }
}

async fn list_assignments(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path((p, u)): Path<(String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    let b = base(&headers, &api);
    let views = api.world.read();
    let (project, user, _) = assignment(views.identity(), &p, &u, None)?;
    if !me.is_admin() && me.user.id != user {
        return Err(IdentityError::NotFound(format!(
            "Could not find user: {u}."
        )));
    }
    let user = views.identity().user(&user).expect("checked");
    let items = current_roles(views.identity(), user, &project)
        .iter()
        .map(|r| role_json(r, &b))
        .collect();
    Ok(collection(
        "roles",
        items,
        &b,
        &format!("/v3/projects/{p}/users/{u}/roles"),
    ))
}

async fn revoke_role(
    State(api): State<IdentityApi>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Path((p, u, r)): Path<(String, String, String)>,
) -> Res {
    let me = caller(&api, &headers)?;
    require_admin(&me, "revoke_grant")?;
    let (project, user, role) = {
        let views = api.world.read();
        assignment(views.identity(), &p, &u, Some(&r))?
    };
    let role = role.expect("asked for");
    let pos = commands::revoke_role(api.log.as_ref(), &user, &project, &role, &actor(&me, &rid))
        .await
        .map_err(|e| match e {
            IdentityError::Domain(domain::DomainError::NotFound { kind: "RoleAssignment", .. }) => {
                IdentityError::NotFound(format!(
                    "Could not find role assignment with role: {r}, user or group: {u}, project, domain, or system: {p}."
                ))
            }
            other => other,
        })?;
    settle(&api, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The filters of `GET /v3/role_assignments` (Keystone's dotted names).
#[derive(Deserialize)]
struct AssignmentQuery {
    #[serde(default, rename = "user.id")]
    user: Option<String>,
    #[serde(default, rename = "group.id")]
    group: Option<String>,
    #[serde(default, rename = "role.id")]
    role: Option<String>,
    #[serde(default, rename = "scope.project.id")]
    project: Option<String>,
    #[serde(default, rename = "scope.domain.id")]
    domain: Option<String>,
    #[serde(default, rename = "scope.system")]
    system: Option<String>,
    #[serde(default)]
    include_names: Option<String>,
    #[serde(default)]
    effective: Option<String>,
    #[serde(default)]
    include_subtree: Option<String>,
    #[serde(default, rename = "scope.OS-INHERIT:inherited_to")]
    inherited: Option<String>,
}

/// Keystone's truth of a flag parameter: present and not `0` / `false` (an empty
/// value, `?include_names`, is true).
fn flag(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|s| !(s == "0" || s.eq_ignore_ascii_case("false")))
}

/// `GET /v3/role_assignments`: every user's role on every project, filtered by
/// `user.id`, `role.id` and `scope.project.id`, with names when `include_names`.
/// There are no groups, domain or system assignments, nor inheritance, so filters on
/// those match nothing and `effective` changes nothing. Non-admins see only their
/// own assignments.
async fn role_assignments(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Query(q): Query<AssignmentQuery>,
) -> Res {
    let me = caller(&api, &headers)?;
    let b = base(&headers, &api);
    let _ = (&q.effective, &q.include_subtree);
    let names = flag(&q.include_names);
    let views = api.world.read();
    let ids = views.identity();
    let none =
        q.group.is_some() || q.domain.is_some() || q.system.is_some() || q.inherited.is_some();
    let mut items = Vec::new();
    for u in ids.users() {
        if none
            || !(me.is_admin() || u.id == me.user.id)
            || q.user.as_deref().is_some_and(|x| x != u.id.as_str())
        {
            continue;
        }
        for (pid, rid) in &u.roles {
            if q.project.as_deref().is_some_and(|x| x != pid.as_str())
                || q.role.as_deref().is_some_and(|x| x != rid.as_str())
            {
                continue;
            }
            let (Some(p), Some(r)) = (ids.project(pid), ids.role(rid)) else {
                continue;
            };
            let (mut user, mut project, mut role) = (
                json!({"id": u.id.as_str()}),
                json!({"id": p.id.as_str()}),
                json!({"id": r.id.as_str()}),
            );
            if names {
                user["name"] = json!(u.name.as_str());
                user["domain"] = domain_json();
                project["name"] = json!(p.name.as_str());
                project["domain"] = domain_json();
                role["name"] = json!(r.name.as_str());
            }
            items.push(json!({
                "user": user,
                "scope": {"project": project},
                "role": role,
                "links": {"assignment": format!("{b}/v3/projects/{}/users/{}/roles/{}", p.id, u.id, r.id)},
            }));
        }
    }
    Ok(collection(
        "role_assignments",
        items,
        &b,
        "/v3/role_assignments",
    ))
}

// ---- domains ----

fn domain_full(b: &str) -> Value {
    json!({
        "id": DEFAULT_DOMAIN_ID,
        "name": DEFAULT_DOMAIN_NAME,
        "description": "The default domain",
        "enabled": true,
        "tags": [],
        "options": {},
        "links": {"self": format!("{b}/v3/domains/{DEFAULT_DOMAIN_ID}")},
    })
}

async fn list_domains(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Query(q): Query<NameQuery>,
) -> Res {
    caller(&api, &headers)?;
    let b = base(&headers, &api);
    let items = if q.name.as_deref().is_none_or(|n| n == DEFAULT_DOMAIN_NAME) {
        vec![domain_full(&b)]
    } else {
        vec![]
    };
    Ok(collection("domains", items, &b, "/v3/domains"))
}

async fn show_domain(
    State(api): State<IdentityApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    caller(&api, &headers)?;
    if id != DEFAULT_DOMAIN_ID {
        return Err(IdentityError::NotFound(format!(
            "Could not find domain: {id}."
        )));
    }
    Ok(Json(json!({"domain": domain_full(&base(&headers, &api))})).into_response())
}
