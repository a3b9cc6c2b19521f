//! The one error type of the network service and its HTTP mapping: Neutron's body
//! `{"NeutronError": {"type": "...", "message": "...", "detail": ""}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::network::{Class, NetError};
use domain::DomainError;
use engine::EngineError;
use serde_json::json;

/// Why a network request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {kind}: {message}")]
pub struct NetworkError {
    /// Status code.
    pub status: StatusCode,
    /// Neutron's exception name (the body's `type`).
    pub kind: String,
    /// Message for the client.
    pub message: String,
}

impl NetworkError {
    /// Any status, type and message.
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        NetworkError {
            status,
            kind: kind.to_string(),
            message: message.into(),
        }
    }

    /// 400 `HTTPBadRequest` (webob's, for bodies Neutron cannot read).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", message)
    }

    /// 400 `InvalidInput`.
    pub fn invalid(message: impl std::fmt::Display) -> Self {
        NetError::invalid(message).into()
    }

    /// 400 of an `InvalidInput` subclass with its own message.
    pub fn invalid_as(kind: &'static str, message: &str) -> Self {
        NetError::bad(kind, message).into()
    }

    /// 401 (keystonemiddleware answers before Neutron).
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "HTTPUnauthorized",
            "The request you have made requires authentication.",
        )
    }

    /// 403 for a policy rule (`(rule:create_network:shared) is disallowed by policy`
    /// in Neutron's words).
    pub fn policy(rule: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            format!("(rule:{rule}) is disallowed by policy"),
        )
    }

    /// 404 for a path that names no resource.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "HTTPNotFound",
            "The resource could not be found.",
        )
    }

    /// 500 (details logged, not shown).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "HTTPInternalServerError",
            "Request Failed: internal server error while processing your request.",
        )
    }
}

impl From<NetError> for NetworkError {
    fn from(e: NetError) -> Self {
        let status = match e.class {
            Class::BadRequest => StatusCode::BAD_REQUEST,
            Class::Forbidden => StatusCode::FORBIDDEN,
            Class::NotFound => StatusCode::NOT_FOUND,
            Class::Conflict => StatusCode::CONFLICT,
        };
        NetworkError::new(status, e.kind, e.message)
    }
}

impl From<EngineError> for NetworkError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Domain(DomainError::Network(n)) => n.into(),
            EngineError::Domain(d) => {
                NetworkError::new(StatusCode::CONFLICT, "Conflict", d.to_string())
            }
            EngineError::Contention(what) => {
                tracing::warn!(%what, "too much contention");
                NetworkError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The service is unavailable.",
                )
            }
            EngineError::Timeout => {
                tracing::error!("projections did not catch up in time");
                NetworkError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The service is unavailable.",
                )
            }
            EngineError::Log(err) => {
                tracing::error!(error = %err, "event log failure");
                NetworkError::internal()
            }
        }
    }
}

impl IntoResponse for NetworkError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::UNAUTHORIZED {
            let body =
                json!({"error": {"code": 401, "title": "Unauthorized", "message": self.message}});
            let mut resp = (self.status, Json(body)).into_response();
            resp.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Keystone uri=\"/v3\""),
            );
            return resp;
        }
        let body =
            json!({"NeutronError": {"type": self.kind, "message": self.message, "detail": ""}});
        (self.status, Json(body)).into_response()
    }
}
