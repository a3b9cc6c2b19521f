//! The one error enum of the identity service and its HTTP mapping.
//!
//! Invariant: every error body has Keystone's shape
//! `{"error": {"code": N, "title": "...", "message": "..."}}`; internal detail (log
//! failures) goes to the log, never to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::DomainError;
use engine::EngineError;
use serde_json::json;

/// Why an identity request or command failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Missing, wrong or expired credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown entity (404).
    #[error("{0}")]
    NotFound(String),
    /// Malformed or invalid request (400).
    #[error("{0}")]
    BadRequest(String),
    /// Duplicate name or other conflict (409).
    #[error("{0}")]
    Conflict(String),
    /// The request body is over the limit (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The domain refused a command.
    #[error("{0}")]
    Domain(#[from] DomainError),
    /// The log or the projections failed.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// Anything else on the server side (key file, hashing).
    #[error("{0}")]
    Internal(String),
}

impl From<eventlog::LogError> for IdentityError {
    fn from(e: eventlog::LogError) -> Self {
        IdentityError::Engine(EngineError::Log(e))
    }
}

impl IdentityError {
    /// Status and user-facing message.
    pub fn status_message(&self) -> (StatusCode, String) {
        match self {
            IdentityError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.clone()),
            IdentityError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            IdentityError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            IdentityError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            IdentityError::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            IdentityError::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m.clone()),
            IdentityError::Domain(d) => {
                let status = match d {
                    DomainError::NotFound { .. } => StatusCode::NOT_FOUND,
                    DomainError::BadRequest(_) => StatusCode::BAD_REQUEST,
                    DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
                    _ => StatusCode::CONFLICT,
                };
                (status, d.to_string())
            }
            IdentityError::Engine(EngineError::Domain(d)) => {
                IdentityError::Domain(d.clone()).status_message()
            }
            // Concurrent changes kept winning the optimistic retries: the client may
            // retry (as the image API answers it).
            IdentityError::Engine(EngineError::Contention(_)) => (
                StatusCode::CONFLICT,
                "Concurrent changes conflicted with the request; retry it.".to_string(),
            ),
            IdentityError::Engine(_) | IdentityError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error prevented the server from fulfilling your request."
                    .to_string(),
            ),
        }
    }
}

/// Keystone's title for a status.
pub fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        _ => "Internal Server Error",
    }
}

/// A Keystone-shaped error response.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    let body =
        json!({"error": {"code": status.as_u16(), "title": title(status), "message": message}});
    (status, Json(body)).into_response()
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_message();
        if status.is_server_error() {
            tracing::error!(error = %self, "identity request failed");
        }
        let mut resp = error_response(status, &message);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Keystone uri=\"/v3\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contention_is_a_conflict_and_log_failures_are_500_without_detail() {
        let (status, message) =
            IdentityError::Engine(EngineError::Contention("stratus.api.user.x".into()))
                .status_message();
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(message.contains("retry"), "{message}");
        let (status, message) = IdentityError::Internal("disk on fire".into()).status_message();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!message.contains("disk"), "{message}");
    }
}
