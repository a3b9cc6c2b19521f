//! The one error type of the image service and its HTTP mapping (Glance-shaped bodies:
//! `{"code": "404 Not Found", "title": "Not Found", "message": "..."}`, as webob
//! renders Glance's errors for JSON clients).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::DomainError;
use engine::EngineError;
use serde_json::json;

/// Why an image request failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A refusal with its HTTP status and user message.
    #[error("{status}: {message}")]
    Http {
        /// Status code.
        status: StatusCode,
        /// Message for the client.
        message: String,
    },
    /// Image file storage failed (details logged, not shown).
    #[error("image storage: {0}")]
    Storage(#[from] std::io::Error),
    /// The engine failed for a reason that is not the client's.
    #[error("engine: {0}")]
    Engine(String),
}

impl ImageError {
    /// Any status with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ImageError::Http {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "This server could not verify that you are authorized to access the document you requested.",
        )
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404 for an image id.
    pub fn image_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("No image found with ID {id}"),
        )
    }

    /// 413.
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Image exceeds the storage quota: the limit is {limit} bytes."),
        )
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ImageError::Http { status, .. } => *status,
            ImageError::Storage(_) | ImageError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<DomainError> for ImageError {
    /// A refusal decided by a domain function outside the engine (a metadefs lookup).
    fn from(d: DomainError) -> Self {
        ImageError::from(EngineError::Domain(d))
    }
}

impl From<EngineError> for ImageError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Domain(d) => match d {
                // Metadefs name what is missing in Glance's whole sentence.
                DomainError::Missing(m) => ImageError::new(StatusCode::NOT_FOUND, m),
                // `domain::image` names what is missing by kind: a member's `id` is
                // Glance's whole sentence (it names the image too), a missing tag is
                // webob's bare 404.
                DomainError::NotFound {
                    kind: "ImageMember",
                    id,
                } => ImageError::new(StatusCode::NOT_FOUND, id),
                DomainError::NotFound {
                    kind: "ImageTag", ..
                } => ImageError::new(StatusCode::NOT_FOUND, "The resource could not be found."),
                DomainError::NotFound { id, .. } => ImageError::image_not_found(&id),
                // Glance answers its tag and member limits with 413.
                DomainError::BadRequest(m)
                    if m.starts_with("Image tag limit exceeded")
                        || m.starts_with("Image member limit exceeded") =>
                {
                    ImageError::new(StatusCode::PAYLOAD_TOO_LARGE, m)
                }
                DomainError::BadRequest(m) => ImageError::bad_request(m),
                DomainError::Forbidden(m) => ImageError::forbidden(m),
                DomainError::Conflict(m) => ImageError::new(StatusCode::CONFLICT, m),
                other => ImageError::new(StatusCode::CONFLICT, other.to_string()),
            },
            EngineError::Contention(m) => ImageError::new(StatusCode::CONFLICT, m),
            other => ImageError::Engine(other.to_string()),
        }
    }
}

impl IntoResponse for ImageError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ImageError::Http { message, .. } => message.clone(),
            other => {
                tracing::error!(error = %other, "image request failed");
                "The server has either erred or is incapable of performing the requested operation."
                    .to_string()
            }
        };
        let title = status.canonical_reason().unwrap_or("Error");
        (
            status,
            Json(json!({
                "code": format!("{} {title}", status.as_u16()),
                "title": title,
                "message": message,
            })),
        )
            .into_response()
    }
}
