//! Who is calling: a Keystone token (validated in-process like the compute and image
//! APIs do) or a development `noauth` token, as a [`Caller`] with its project and role.

use axum::http::{HeaderMap, Method};
use domain::Ctx;
use engine::Meta;
use eventlog::Actor;
use uuid::Uuid;

use apicore::auth::{AuthMode, Role};

use crate::error::NetworkError;

/// The authenticated caller of a network request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub user: String,
    /// Project id (the owner of what it creates).
    pub project: String,
    /// The highest of its roles (None: none of reader, member, manager, admin).
    pub role: Option<Role>,
    /// Request uuid (`req-<uuid>`).
    pub request: Uuid,
}

impl Caller {
    /// Has the admin role (Neutron's `context.is_admin`).
    pub fn is_admin(&self) -> bool {
        self.role == Some(Role::Admin)
    }

    /// Member (or higher) on its project.
    pub fn is_member(&self) -> bool {
        self.role >= Some(Role::Member)
    }

    /// Domain context (fresh `now`; `op_id` is the request uuid).
    pub fn ctx(&self) -> Ctx {
        Ctx {
            now: engine::now(),
            is_admin: self.is_admin(),
            user_id: self.user.clone(),
            project_id: self.project.clone(),
            op_id: self.request,
        }
    }

    /// Envelope metadata for what this request appends.
    pub fn meta(&self) -> Meta {
        let rid = format!("req-{}", self.request);
        let roles = Role::ALL
            .iter()
            .rev()
            .filter(|r| Some(**r) <= self.role)
            .map(|r| r.name().to_string())
            .collect();
        Meta {
            correlation_id: rid.clone(),
            causation_id: rid,
            actor: Actor {
                user: self.user.clone(),
                project: self.project.clone(),
                roles,
            },
            dedupe_id: None,
        }
    }
}

/// Reads the caller from `X-Auth-Token`. A Keystone token limited by application
/// credential access rules must have one of service type `network` allowing `method`
/// on `path` (else the 401 of an invalid token).
pub fn authenticate(
    mode: &AuthMode,
    engine: &engine::Engine,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    request: Uuid,
) -> Result<Caller, NetworkError> {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(NetworkError::unauthorized)?;
    match mode {
        AuthMode::NoAuth => {
            let (user, project, role) =
                apicore::auth::parse_noauth(token).ok_or_else(NetworkError::unauthorized)?;
            Ok(Caller {
                user,
                project,
                role: Some(role),
                request,
            })
        }
        AuthMode::Keystone(tokens) => {
            let views = engine.world().read();
            let target = apicore::auth::Target {
                service: "network",
                method: method.as_str(),
                path,
            };
            let auth = tokens
                .validate_request(token, views.identity(), engine::now(), &target)
                .map_err(|_| NetworkError::unauthorized())?;
            Ok(Caller {
                user: auth.user.id.to_string(),
                project: auth.project.id.to_string(),
                role: Role::highest(auth.roles.iter().map(|r| r.name.as_str())),
                request,
            })
        }
    }
}
