//! Per-request context: request id, microversion, caller identity, and the body/query
//! extractors whose failures are Nova-shaped.
//!
//! Invariants:
//! - Every response carries `x-openstack-request-id` and `x-compute-request-id`, both
//!   `req-<uuid>`; the same uuid is the command's `op_id` and the events'
//!   `correlation_id`/`causation_id`, and the request's tracing span carries it.
//! - Bodies are read with a hard 1 MiB limit (413 `overLimit` beyond it) and parsed as
//!   JSON (400 `badRequest` when malformed); axum's plain-text rejections never reach
//!   a client.
//! - `/v2.1/<project_id>/...` is served exactly like `/v2.1/...` (the project in the
//!   path is ignored: the token decides the project, as Nova's policy does).
//! - A caller's role is its highest role on the token's project (Keystone), or from the
//!   noauth token: `user:project` is member (`admin:project` is admin) and
//!   `user:project:reader|member|admin` names the role. `is_admin` is `role == Admin`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::Ctx;
use engine::Meta;
use eventlog::Actor;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ApiError;
use crate::microversion::Version;
use crate::policy::Role;
use crate::{ApiState, AuthMode};

/// Maximum request body size (1 MiB).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Facts about the request set by [`request_context`] before routing.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Request uuid (`req-<uuid>` is the request id).
    pub id: Uuid,
    /// Microversion the request is served at.
    pub version: Version,
    /// `scheme://host` for links.
    pub base: String,
}

impl RequestInfo {
    /// `req-<uuid>`.
    pub fn request_id(&self) -> String {
        format!("req-{}", self.id)
    }
}

/// First path segments after `/v2.1/` that are collections, not project ids.
const COLLECTIONS: &[&str] = &[
    "servers",
    "flavors",
    "os-",
    "limits",
    "extensions",
    "images",
];

fn strip_project(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let rest = path.strip_prefix("/v2.1/")?;
    // Only `/v2.1/<project>/<collection>...` is rewritten: a lone unknown segment is an
    // unknown route (404), not a project.
    let (first, tail) = rest.split_once('/')?;
    if first.is_empty() || tail.is_empty() || COLLECTIONS.iter().any(|c| first.starts_with(c)) {
        return None;
    }
    let mut new = format!("/v2.1/{tail}");
    if let Some(q) = uri.query() {
        new.push('?');
        new.push_str(q);
    }
    new.parse().ok()
}

/// Middleware run on every request: request id, project-prefix stripping, microversion
/// negotiation (406/400 before routing), tracing span and response headers.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let id = Uuid::new_v4();
    let rid = format!("req-{id}");
    if let Some(u) = strip_project(req.uri()) {
        *req.uri_mut() = u;
    }
    let path = req.uri().path().to_string();
    let compute = path == "/v2.1" || path.starts_with("/v2.1/");
    let span =
        tracing::info_span!("request", request_id = %rid, method = %req.method(), path = %path);
    async move {
        let version = if compute {
            match Version::from_headers(req.headers()) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::info!(error = %e, "microversion refused");
                    return finish(e.into_response(), &rid, None);
                }
            }
        } else {
            None
        };
        let host = req
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("127.0.0.1:8774");
        let base = format!("{}://{host}", identity::http::link_scheme(req.headers()));
        req.extensions_mut().insert(RequestInfo {
            id,
            version: version.unwrap_or(Version::MIN),
            base,
        });
        let resp = next.run(req).await;
        tracing::info!(status = resp.status().as_u16(), "request done");
        finish(resp, &rid, version)
    }
    .instrument(span)
    .await
}

fn finish(mut resp: Response, rid: &str, version: Option<Version>) -> Response {
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut()
            .insert("x-openstack-request-id", v.clone());
        resp.headers_mut().insert("x-compute-request-id", v);
    }
    if let Some(v) = version {
        v.stamp(resp.headers_mut());
    }
    resp
}

/// The authenticated caller of a request, with the command context to act as them.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub user: String,
    /// Project id.
    pub project: String,
    /// Has the admin role.
    pub is_admin: bool,
    /// Highest role on the project (None: no reader, member or admin role).
    pub role: Option<Role>,
    /// Request facts.
    pub info: RequestInfo,
}

impl Caller {
    /// Microversion of the request.
    pub fn version(&self) -> Version {
        self.info.version
    }

    /// Base URL for links.
    pub fn base(&self) -> &str {
        &self.info.base
    }

    /// Roles of the caller.
    pub fn roles(&self) -> Vec<String> {
        Role::ALL
            .iter()
            .rev()
            .filter(|r| Some(**r) <= self.role)
            .map(|r| r.name().to_string())
            .collect()
    }

    /// Domain context (fresh `now`; `op_id` is the request uuid).
    pub fn ctx(&self) -> Ctx {
        Ctx {
            now: engine::now(),
            is_admin: self.is_admin,
            user_id: self.user.clone(),
            project_id: self.project.clone(),
            op_id: self.info.id,
        }
    }

    /// Envelope metadata for what this request appends.
    pub fn meta(&self) -> Meta {
        let rid = self.info.request_id();
        Meta {
            correlation_id: rid.clone(),
            causation_id: rid,
            actor: Actor {
                user: self.user.clone(),
                project: self.project.clone(),
                roles: self.roles(),
            },
            dedupe_id: None,
        }
    }

    /// Whether the caller may see a resource of `project`.
    pub fn can_see(&self, project: &str) -> bool {
        self.is_admin || self.project == project
    }
}

/// keystonemiddleware's message for a missing or invalid token.
const AUTH_REQUIRED: &str = "The request you have made requires authentication.";

pub use apicore::auth::{parse_noauth, parse_noauth_token};

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        // Set by the policy guard, which authenticated the request already.
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        Caller::authenticate(parts, state)
    }
}

impl Caller {
    /// Authenticates the request's token under the state's [`AuthMode`].
    pub fn authenticate(parts: &Parts, state: &ApiState) -> Result<Self, ApiError> {
        let info = parts
            .extensions
            .get::<RequestInfo>()
            .cloned()
            .ok_or_else(|| ApiError::internal(axum::http::StatusCode::INTERNAL_SERVER_ERROR))?;
        match &state.auth {
            AuthMode::NoAuth => {
                let token = parts
                    .headers
                    .get("x-auth-token")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        ApiError::unauthorized("The request you have made requires authentication.")
                    })?;
                let (user, project, role) = parse_noauth(token).ok_or_else(|| {
                    ApiError::unauthorized("The request you have made requires authentication.")
                })?;
                Ok(Caller {
                    user,
                    project,
                    is_admin: role == Role::Admin,
                    role: Some(role),
                    info,
                })
            }
            AuthMode::Keystone(tokens) => {
                let token = parts
                    .headers
                    .get("x-auth-token")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| ApiError::keystone_unauthorized(AUTH_REQUIRED))?;
                let views = state.engine.world().read();
                // Access rules of an application credential token: service type
                // `compute`, the path as routed (`/v2.1/...`).
                let target = identity::Target {
                    service: "compute",
                    method: parts.method.as_str(),
                    path: parts.uri.path(),
                };
                let auth = tokens
                    .validate_request(token, views.identity(), engine::now(), &target)
                    .map_err(|_| ApiError::keystone_unauthorized(AUTH_REQUIRED))?;
                let role = Role::highest(auth.roles.iter().map(|r| r.name.as_str()));
                Ok(Caller {
                    user: auth.user.id.to_string(),
                    project: auth.project.id.to_string(),
                    is_admin: role == Some(Role::Admin),
                    role,
                    info,
                })
            }
        }
    }
}

/// A JSON request body (possibly absent: then `Value::Null`), read with [`BODY_LIMIT`].
#[derive(Debug, Clone)]
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(ApiError::too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| ApiError::too_large())?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(JsonBody(serde_json::Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|_| ApiError::bad_request("Malformed request body"))
    }
}

/// Query string as ordered `(key, value)` pairs (repeated keys kept).
#[derive(Debug, Clone, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    /// Last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|q| QueryPairs(q.0))
            .map_err(|_| ApiError::bad_request("Invalid query string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_project_prefix() {
        let u: Uri = "/v2.1/abc123/servers/detail?limit=1".parse().unwrap();
        assert_eq!(
            strip_project(&u).unwrap().to_string(),
            "/v2.1/servers/detail?limit=1"
        );
        let u: Uri = "/v2.1/servers/x".parse().unwrap();
        assert!(strip_project(&u).is_none());
        let u: Uri = "/v2.1/os-hypervisors".parse().unwrap();
        assert!(strip_project(&u).is_none());
        let u: Uri = "/v2.1/abc123".parse().unwrap();
        assert!(strip_project(&u).is_none());
    }

    #[test]
    fn noauth_tokens() {
        assert_eq!(
            parse_noauth_token("alice:p1"),
            Some(("alice".into(), "p1".into()))
        );
        assert_eq!(parse_noauth_token("alice"), None);
        assert_eq!(parse_noauth_token(":p1"), None);
        assert_eq!(parse_noauth_token("a:b:c"), None);
        assert_eq!(
            parse_noauth("alice:p1"),
            Some(("alice".into(), "p1".into(), Role::Member))
        );
        assert_eq!(
            parse_noauth("admin:p1"),
            Some(("admin".into(), "p1".into(), Role::Admin))
        );
        assert_eq!(
            parse_noauth("alice:p1:reader"),
            Some(("alice".into(), "p1".into(), Role::Reader))
        );
        assert_eq!(
            parse_noauth("admin:p1:reader"),
            Some(("admin".into(), "p1".into(), Role::Reader))
        );
        assert_eq!(
            parse_noauth("bob:p2:admin"),
            Some(("bob".into(), "p2".into(), Role::Admin))
        );
        assert_eq!(parse_noauth("a:b:reader:x"), None);
    }
}
