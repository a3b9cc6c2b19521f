//! Compute API microversions: parsing the request headers and stamping responses.
//!
//! Invariants:
//! - A request without a version header is served at [`Version::MIN`] (2.1), as Nova does.
//! - `OpenStack-API-Version: compute X.Y` wins over the legacy
//!   `X-OpenStack-Nova-API-Version: X.Y`; `latest` means [`Version::MAX`].
//! - A version outside `MIN..=MAX` is refused with 406 before any handler runs; a
//!   malformed one with 400.
//! - Every `/v2.1` response names the version it was served at in both headers, with
//!   `Vary` on both.

use std::fmt;

use axum::http::{HeaderMap, HeaderValue, StatusCode};

use crate::error::ApiError;

/// A compute API microversion `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major (always 2).
    pub major: u16,
    pub minor: u16,
}

/// Modern header name.
pub const HEADER: &str = "openstack-api-version";
/// Legacy header name.
pub const LEGACY_HEADER: &str = "x-openstack-nova-api-version";

impl Version {
    /// Oldest supported: 2.1.
    pub const MIN: Version = Version { major: 2, minor: 1 };
    /// Newest supported: 2.100 (see the crate docs for what each version changes here).
    pub const MAX: Version = Version {
        major: 2,
        minor: 100,
    };

    /// `2.minor`.
    pub const fn v2(minor: u16) -> Version {
        Version { major: 2, minor }
    }

    /// Whether this is at least `2.minor`.
    pub fn at_least(self, minor: u16) -> bool {
        self >= Version::v2(minor)
    }

    /// Parses `X.Y` (or `latest`).
    pub fn parse(s: &str) -> Result<Version, ApiError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("latest") {
            return Ok(Version::MAX);
        }
        let bad = || {
            ApiError::bad_request(format!(
                "API Version String {s} is of invalid format. Must be of format MajorNum.MinorNum."
            ))
        };
        let (a, b) = s.split_once('.').ok_or_else(bad)?;
        let num = |x: &str| -> Option<u16> {
            if x.is_empty() || x.len() > 4 || !x.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            x.parse().ok()
        };
        let v = Version {
            major: num(a).ok_or_else(bad)?,
            minor: num(b).ok_or_else(bad)?,
        };
        Ok(v)
    }

    /// The version requested by `headers`, checked against the supported range.
    pub fn from_headers(headers: &HeaderMap) -> Result<Version, ApiError> {
        let mut requested: Option<&str> = None;
        for value in headers.get_all(HEADER) {
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',') {
                let mut parts = item.split_whitespace();
                if let (Some(service), Some(ver)) = (parts.next(), parts.next()) {
                    if service.eq_ignore_ascii_case("compute") {
                        requested = Some(ver);
                    }
                }
            }
        }
        if requested.is_none() {
            requested = headers.get(LEGACY_HEADER).and_then(|v| v.to_str().ok());
        }
        let Some(text) = requested else {
            return Ok(Version::MIN);
        };
        let v = Version::parse(text)?;
        if v < Version::MIN || v > Version::MAX {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "Version {v} is not supported by the API. Minimum is {} and maximum is {}.",
                    Version::MIN,
                    Version::MAX
                ),
            ));
        }
        Ok(v)
    }

    /// Adds the version headers and `Vary` to a response.
    pub fn stamp(self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&format!("compute {self}")) {
            headers.insert(HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.to_string()) {
            headers.insert(LEGACY_HEADER, v);
        }
        headers.insert(
            axum::http::header::VARY,
            HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
        );
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn parses_headers() {
        assert_eq!(Version::from_headers(&h(&[])).unwrap(), Version::MIN);
        assert_eq!(
            Version::from_headers(&h(&[(HEADER, "compute 2.47")])).unwrap(),
            Version::v2(47)
        );
        assert_eq!(
            Version::from_headers(&h(&[(LEGACY_HEADER, "2.9")])).unwrap(),
            Version::v2(9)
        );
        assert_eq!(
            Version::from_headers(&h(&[(HEADER, "compute latest"), (LEGACY_HEADER, "2.3")]))
                .unwrap(),
            Version::MAX
        );
        assert_eq!(
            Version::from_headers(&h(&[(HEADER, "placement 1.3, compute 2.60")])).unwrap(),
            Version::v2(60)
        );
        let e = Version::from_headers(&h(&[(HEADER, "compute 2.999")])).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
        let e = Version::from_headers(&h(&[(HEADER, "compute 3.0")])).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
        let e = Version::from_headers(&h(&[(LEGACY_HEADER, "2.x")])).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(Version::v2(10) > Version::v2(9));
    }
}
