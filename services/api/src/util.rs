//! Small pure helpers: ISO 8601 formatting/parsing of [`Timestamp`]s, SHA-224 (Nova's
//! `hostId`), and URL query encoding. No I/O.

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

/// SHA-224 of `data`, lowercase hex (FIPS 180-4).
pub fn sha224_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0xc1059ed8, 0x367cd507, 0x3070dd17, 0xf70e5939, 0xffc00b31, 0x68581511, 0x64f98fa7,
        0xbefa4fa4,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h[..7].iter().map(|x| format!("{x:08x}")).collect()
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
