//! Who is calling. Kept to one function so that the identity service's tokens can
//! replace the development mode without touching the handlers.

use axum::http::{HeaderMap, Method};
use domain::Ctx;
use engine::Meta;
use eventlog::Actor;
use uuid::Uuid;

use apicore::auth::Role;

use crate::error::ImageError;

/// The authenticated caller of an image request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub user: String,
    /// Project id (the owner of the images it creates).
    pub project: String,
    /// Has the admin role.
    pub is_admin: bool,
    /// The highest of its roles (None: none of reader, member, admin).
    pub role: Option<Role>,
    /// Request uuid (`req-<uuid>`).
    pub request: Uuid,
    /// Has the `service` role (Glance's `service_api` rule: other services, e.g. Nova
    /// and Cinder, adding image locations). A development token
    /// `<user>:<project>:service` is a service caller with no other role.
    pub service: bool,
}

impl Caller {
    /// Domain context (fresh `now`; `op_id` is the request uuid).
    pub fn ctx(&self) -> Ctx {
        Ctx {
            now: engine::now(),
            is_admin: self.is_admin,
            user_id: self.user.clone(),
            project_id: self.project.clone(),
            op_id: self.request,
        }
    }

    /// Envelope metadata for what this request appends.
    pub fn meta(&self) -> Meta {
        let rid = format!("req-{}", self.request);
        // The role and the ones it implies, highest first.
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

/// Reads the caller from `X-Auth-Token` the way the compute API does: a Keystone token
/// validated against the identity view (`apicore::auth::AuthMode::Keystone`), or the development
/// mode's `<user>:<project>` (`apicore::auth::AuthMode::NoAuth`, user `admin` is admin).
/// A Keystone token limited by application credential access rules must have one of
/// service type `image` allowing `method` on `path` (else the 401 of an invalid token).
pub fn authenticate(
    mode: &apicore::auth::AuthMode,
    engine: &engine::Engine,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    request: Uuid,
) -> Result<Caller, ImageError> {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ImageError::unauthorized)?;
    match mode {
        apicore::auth::AuthMode::NoAuth => {
            if let Some((user, project)) = token
                .strip_suffix(":service")
                .and_then(apicore::auth::parse_noauth_token)
            {
                return Ok(Caller {
                    user,
                    project,
                    is_admin: false,
                    role: None,
                    request,
                    service: true,
                });
            }
            let (user, project, role) =
                apicore::auth::parse_noauth(token).ok_or_else(ImageError::unauthorized)?;
            Ok(Caller {
                user,
                project,
                is_admin: role == Role::Admin,
                role: Some(role),
                request,
                service: false,
            })
        }
        apicore::auth::AuthMode::Keystone(tokens) => {
            let views = engine.world().read();
            let target = apicore::auth::Target {
                service: "image",
                method: method.as_str(),
                path,
            };
            let auth = tokens
                .validate_request(token, views.identity(), engine::now(), &target)
                .map_err(|_| ImageError::unauthorized())?;
            let role = Role::highest(auth.roles.iter().map(|r| r.name.as_str()));
            Ok(Caller {
                user: auth.user.id.to_string(),
                project: auth.project.id.to_string(),
                is_admin: role == Some(Role::Admin),
                role,
                request,
                service: auth.roles.iter().any(|r| r.name.as_str() == "service"),
            })
        }
    }
}
