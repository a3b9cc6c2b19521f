//! The one place where failures become HTTP responses.
//!
//! Invariants:
//! - Every error body has Nova's shape `{"<faultName>": {"code": N, "message": "..."}}`,
//!   where the fault name follows Nova's `wsgi.Fault._fault_names` table.
//! - The user-facing message never carries internal detail (storage errors, subjects,
//!   contention): those go to the log only, inside the request's span.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::DomainError;
use engine::EngineError;
use serde_json::json;

/// Nova's generic message for a server-side failure.
pub const GENERIC_FAULT: &str =
    "The server has either erred or is incapable of performing the requested operation.";

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Fault name (the body's only key).
    pub kind: &'static str,
    /// User-facing message.
    pub message: String,
}

/// Nova's fault name for a status (`nova/api/openstack/wsgi.py`).
pub fn fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

impl ApiError {
    /// An error with the fault name Nova uses for `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: fault_name(status),
            message: message.into(),
        }
    }

    /// 400 badRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 unauthorized.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 401 as keystonemiddleware answers it (`{"error": {"code": 401, "title":
    /// "Unauthorized", "message": ...}}`), for Keystone auth.
    pub fn keystone_unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "error",
            message: message.into(),
        }
    }

    /// 403 forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 403 for a policy rule the caller does not pass.
    pub fn policy(rule: &str) -> Self {
        Self::forbidden(format!("Policy doesn't allow {rule} to be performed."))
    }

    /// 404 itemNotFound.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 404 for an instance that does not exist or is not visible to the caller.
    pub fn instance_not_found(id: &str) -> Self {
        Self::not_found(format!("Instance {id} could not be found."))
    }

    /// 404 for a flavor that does not exist or is not visible to the caller.
    pub fn flavor_not_found(id: &str) -> Self {
        Self::not_found(format!("Flavor {id} could not be found."))
    }

    /// 503 serviceUnavailable for an instance whose cell does not respond.
    pub fn cell_down(cell: &domain::CellName, id: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Cell {cell} is not responding, hence instance {id} is not available now. Try again later."
            ),
        )
    }

    /// 409 conflictingRequest.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 413 for a body over the limit.
    pub fn too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "Request is too large.")
    }

    /// 500/503 computeFault with the generic message.
    pub fn internal(status: StatusCode) -> Self {
        ApiError {
            status,
            kind: "computeFault",
            message: GENERIC_FAULT.to_string(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.kind == "error" {
            // keystonemiddleware's shape (Keystone auth failures).
            let body = json!({"error": {"code": self.status.as_u16(), "title": "Unauthorized", "message": self.message}});
            let mut resp = (self.status, Json(body)).into_response();
            resp.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Keystone uri=\"/v3\""),
            );
            return resp;
        }
        let body = json!({ self.kind: { "code": self.status.as_u16(), "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = match &e {
            DomainError::InvalidState { .. }
            | DomainError::Locked { .. }
            | DomainError::NotReady { .. }
            | DomainError::Conflict(_)
            | DomainError::AlreadyExists { .. }
            | DomainError::NoCapacity { .. }
            | DomainError::OutOfService { .. } => StatusCode::CONFLICT,
            DomainError::NotFound { .. } | DomainError::Missing(_) => StatusCode::NOT_FOUND,
            DomainError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
            DomainError::Network(n) => match n.class {
                domain::network::Class::BadRequest => StatusCode::BAD_REQUEST,
                domain::network::Class::Forbidden => StatusCode::FORBIDDEN,
                domain::network::Class::NotFound => StatusCode::NOT_FOUND,
                domain::network::Class::Conflict => StatusCode::CONFLICT,
            },
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Domain(d) => d.into(),
            EngineError::Log(err) => {
                tracing::error!(error = %err, "event log failure");
                ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR)
            }
            EngineError::Contention(what) => {
                tracing::warn!(%what, "too much contention");
                ApiError::internal(StatusCode::SERVICE_UNAVAILABLE)
            }
            EngineError::Timeout => {
                tracing::error!("projections did not catch up in time");
                ApiError::internal(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_map_to_nova_faults() {
        let e: ApiError = DomainError::InvalidState {
            action: "pause".into(),
            id: "x".into(),
            attr: "vm_state".into(),
            state: "building".into(),
        }
        .into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.kind, "conflictingRequest");
        assert_eq!(
            e.message,
            "Cannot 'pause' instance x while it is in vm_state building"
        );
        let e: ApiError = DomainError::NotFound {
            kind: "Instance",
            id: "y".into(),
        }
        .into();
        assert_eq!((e.status, e.kind), (StatusCode::NOT_FOUND, "itemNotFound"));
        let e: ApiError = EngineError::Timeout.into();
        assert_eq!(e.kind, "computeFault");
        assert_eq!(e.message, GENERIC_FAULT);
        let e: ApiError =
            EngineError::Log(eventlog::LogError::Storage("disk on fire".into())).into();
        assert!(!e.message.contains("disk"));
    }
}
