//! Request extractors whose refusals are Glance-shaped errors.
//!
//! axum's own `Path` answers a path it cannot read (invalid UTF-8 in a percent-encoded
//! segment) with a `text/plain` body; this wrapper reads the same way but refuses with
//! an [`ImageError`], so every answer of the image API has the JSON error shape.
//!
//! Invariant: a refused request reaches no handler, so it changes nothing.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::IntoResponse;

use crate::error::ImageError;

/// The one path parameter of a route (axum's `Path<String>`, refused with a
/// Glance-shaped 400).
#[derive(Debug)]
pub struct Path(pub String);

impl<S> FromRequestParts<S> for Path
where
    S: Send + Sync,
{
    type Rejection = ImageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|rejection| {
                let text = rejection.to_string();
                if rejection.into_response().status().is_client_error() {
                    ImageError::bad_request(text)
                } else {
                    ImageError::Engine(text)
                }
            })
    }
}

/// The two path parameters of a route (`{id}` and a tag or member), refused with a
/// Glance-shaped 400 like [`Path`].
#[derive(Debug)]
pub struct Path2(pub String, pub String);

impl<S> FromRequestParts<S> for Path2
where
    S: Send + Sync,
{
    type Rejection = ImageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path((a, b))| Path2(a, b))
            .map_err(|rejection| {
                let text = rejection.to_string();
                if rejection.into_response().status().is_client_error() {
                    ImageError::bad_request(text)
                } else {
                    ImageError::Engine(text)
                }
            })
    }
}
