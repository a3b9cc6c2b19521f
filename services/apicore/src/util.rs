//! Small pure helpers the compute and image APIs share: ISO 8601 formatting/parsing of
//! [`Timestamp`]s, SHA-224 (Nova's `hostId`), URL query encoding, collections' `next` links,
//! response link schemes and the `{id}` segment of a routed path. No I/O.

use domain::Timestamp;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

fn datetime(ts: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ts.0 as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The scheme of response links (see [`identity::http::link_scheme`]).
pub use identity::http::link_scheme;

/// `2013-09-03T04:01:32Z` (Nova's `created` / `updated`).
pub fn iso_z(ts: Timestamp) -> String {
    datetime(ts)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

/// `2013-09-23T13:37:00.880302` (Nova's `launched_at` / `terminated_at`: naive UTC).
pub fn iso_micros(ts: Timestamp) -> String {
    datetime(ts)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
        ))
        .unwrap_or_default()
}

/// `2013-09-23T13:37:00.880302Z` (native API times).
pub fn iso_micros_z(ts: Timestamp) -> String {
    format!("{}Z", iso_micros(ts))
}

/// Parses an ISO 8601 time as accepted by Nova's `changes-since`: RFC 3339, or a naive
/// date-time (UTC) with optional fraction, or a bare date.
pub fn parse_iso(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let to_ts = |t: OffsetDateTime| Timestamp((t.unix_timestamp_nanos() / 1000) as i64);
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(to_ts(t));
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    let fmts = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ];
    for f in fmts {
        if let Ok(t) = PrimitiveDateTime::parse(naive, f) {
            return Some(to_ts(t.assume_utc()));
        }
    }
    if let Ok(d) = time::Date::parse(naive, format_description!("[year]-[month]-[day]")) {
        return Some(to_ts(d.midnight().assume_utc()));
    }
    None
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass through).
pub fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The value of a collection's `<collection>_links` when a page is full: one `next`
/// link to `{base}/v2.1/{path}` with the request's query and `marker` (Nova's
/// `ViewBuilder._get_next_link`). As in Nova the parameters are sorted by name, a
/// `marker` of the request takes the new value in its place and is appended otherwise;
/// every name and value is percent-encoded.
pub fn next_link(
    base: &str,
    path: &str,
    query: &[(String, String)],
    marker: &str,
) -> serde_json::Value {
    let mut params: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    params.sort_by_key(|(k, _)| *k);
    match params.iter().position(|(k, _)| *k == "marker") {
        Some(i) => {
            params[i].1 = marker;
            let mut seen = 0;
            params.retain(|(k, _)| {
                *k != "marker" || {
                    seen += 1;
                    seen == 1
                }
            });
        }
        None => params.push(("marker", marker)),
    }
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", query_encode(k), query_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    serde_json::json!([{"href": format!("{base}/v2.1/{path}?{query}"), "rel": "next"}])
}

/// SHA-224 of `data`, lowercase hex (Nova's `hostId` digest).
pub fn sha224_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha224::digest(data))
}

/// The value of the `{id}` segment of `template` in `path` (also used by the image
/// API's guard).
pub fn path_id<'a>(template: &str, path: &'a str) -> Option<&'a str> {
    let pos = template.split('/').position(|s| s == "{id}")?;
    path.split('/').nth(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha224_known_answers() {
        assert_eq!(
            sha224_hex(b"abc"),
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"
        );
        assert_eq!(
            sha224_hex(b""),
            "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f"
        );
        assert_eq!(
            sha224_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "75388b16512776cc5dba5da1fd890150b0c6455cb4f58b1952522525"
        );
    }

    #[test]
    fn next_link_sorts_and_sets_the_marker() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let href = |v: serde_json::Value| {
            assert_eq!(v[0]["rel"], "next");
            v[0]["href"].as_str().unwrap().to_string()
        };
        assert_eq!(
            href(next_link("http://h", "servers", &q(&[("limit", "2")]), "m")),
            "http://h/v2.1/servers?limit=2&marker=m"
        );
        // Sorted by name; a new marker is appended, an old one replaced in place.
        assert_eq!(
            href(next_link(
                "http://h",
                "os-keypairs",
                &q(&[("user_id", "u"), ("limit", "2")]),
                "k 1"
            )),
            "http://h/v2.1/os-keypairs?limit=2&user_id=u&marker=k%201"
        );
        assert_eq!(
            href(next_link(
                "http://h",
                "flavors/detail",
                &q(&[
                    ("sort_key", "id"),
                    ("marker", "a"),
                    ("limit", "1"),
                    ("marker", "b")
                ]),
                "c"
            )),
            "http://h/v2.1/flavors/detail?limit=1&marker=c&sort_key=id"
        );
    }

    #[test]
    fn iso_round_trip() {
        let ts = Timestamp(1_378_180_892_123_456);
        assert_eq!(iso_z(ts), "2013-09-03T04:01:32Z");
        assert_eq!(iso_micros(ts), "2013-09-03T04:01:32.123456");
        assert_eq!(
            parse_iso("2013-09-03T04:01:32Z"),
            Some(Timestamp(1_378_180_892_000_000))
        );
        assert_eq!(parse_iso("2013-09-03T04:01:32.123456"), Some(ts));
        assert_eq!(
            parse_iso("2013-09-03T06:01:32+02:00"),
            Some(Timestamp(1_378_180_892_000_000))
        );
        assert_eq!(
            parse_iso("2013-09-03"),
            Some(Timestamp(1_378_166_400_000_000))
        );
        assert_eq!(parse_iso("yesterday"), None);
    }
}
