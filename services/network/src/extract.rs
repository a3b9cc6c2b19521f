//! Request extractors whose refusals are Neutron-shaped errors.
//!
//! Invariant: a refused request reaches no handler, so it changes nothing.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::NetworkError;

/// The one path parameter of a route.
#[derive(Debug)]
pub struct Path(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Path {
    type Rejection = NetworkError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|r| NetworkError::bad_request(r.to_string()))
    }
}

/// The query string as pairs, in order (repeated keys kept).
#[derive(Debug, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = NetworkError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|q| QueryPairs(q.0))
            .map_err(|_| NetworkError::bad_request("Invalid query string"))
    }
}

/// The two path parameters of a route (`{id}`, then the other: `{tag}`).
#[derive(Debug)]
pub struct PathPair(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathPair {
    type Rejection = NetworkError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path((a, b))| PathPair(a, b))
            .map_err(|r| NetworkError::bad_request(r.to_string()))
    }
}
