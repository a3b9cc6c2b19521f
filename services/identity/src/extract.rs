//! Request extractors whose refusals are Keystone-shaped errors.
//!
//! axum's own `Path`, `Query` and `Bytes` answer a request they cannot read (invalid
//! UTF-8 in a path segment, a repeated query parameter, a body over the limit) with a
//! `text/plain` body. These wrappers read the same way but refuse with an
//! [`IdentityError`], so every answer of the identity API has Keystone's JSON error
//! shape.
//!
//! Invariant: a refused request reaches no handler, so it changes nothing.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;

use crate::IdentityError;

/// An axum rejection as an [`IdentityError`] of the same status class.
fn refused(rejection: impl IntoResponse + std::fmt::Display) -> IdentityError {
    let text = rejection.to_string();
    let status = rejection.into_response().status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        IdentityError::PayloadTooLarge(format!(
            "Request is too large: at most {} bytes are accepted.",
            crate::http::BODY_LIMIT
        ))
    } else if status.is_client_error() {
        IdentityError::BadRequest(text)
    } else {
        IdentityError::Internal(text)
    }
}

/// Path parameters (axum's `Path`, refused with a Keystone-shaped 400).
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = IdentityError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(refused)
    }
}

/// The query string (axum's `Query`, refused with a Keystone-shaped 400).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = IdentityError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(refused)
    }
}

/// The whole request body, up to [`crate::http::BODY_LIMIT`] (a Keystone-shaped 413
/// beyond).
#[derive(Debug)]
pub struct Body(pub Bytes);

impl<S> FromRequest<S> for Body
where
    S: Send + Sync,
{
    type Rejection = IdentityError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(refused)
    }
}
