//! Glance's comparative-filter syntax for `GET /v2/images`: the operator prefix
//! (`in:`, `eq:`, `gt:` ..), the quoted value lists of `in:` and the ISO 8601 times of
//! the `created_at` / `updated_at` filters.
//!
//! These follow Glance's helpers (`glance.common.utils`: `split_filter_op`,
//! `validate_quotes`, `split_filter_value_for_quotes`, `evaluate_filter_op`) and the
//! date grammar of the `iso8601` library behind `oslo_utils.timeutils.parse_isotime`,
//! because clients build these strings for Glance: `openstack server list` asks for
//! `id=in:<id>,<id>` to name the images of the servers it lists. Where Glance's quirks
//! decide an outcome (a value that is an ISO time has no operator even though it holds
//! colons; backslashes inside quotes are kept, not unescaped) they are kept too, so a
//! query means here what it means to Glance.
//!
//! Invariant: pure functions; errors carry Glance's messages (all 400).

use std::cmp::Ordering;

use domain::Timestamp;
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use crate::error::ImageError;

/// A comparison of `created_at` / `updated_at` (Glance's `evaluate_filter_op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `eq` (also the default when no operator is given).
    Eq,
    /// `neq`.
    Neq,
    /// `gt`.
    Gt,
    /// `gte`.
    Gte,
    /// `lt`.
    Lt,
    /// `lte`.
    Lte,
}

impl Cmp {
    /// The comparison named `op`, or Glance's refusal of an unknown one.
    pub fn parse(op: &str) -> Result<Cmp, ImageError> {
        Ok(match op {
            "eq" => Cmp::Eq,
            "neq" => Cmp::Neq,
            "gt" => Cmp::Gt,
            "gte" => Cmp::Gte,
            "lt" => Cmp::Lt,
            "lte" => Cmp::Lte,
            _ => {
                return Err(ImageError::bad_request(
                    "Unable to filter on a unknown operator.",
                ))
            }
        })
    }

    /// `value <op> threshold`.
    pub fn holds<T: Ord>(self, value: &T, threshold: &T) -> bool {
        let o = value.cmp(threshold);
        match self {
            Cmp::Eq => o == Ordering::Equal,
            Cmp::Neq => o != Ordering::Equal,
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Gte => o != Ordering::Less,
            Cmp::Lt => o == Ordering::Less,
            Cmp::Lte => o != Ordering::Greater,
        }
    }
}

/// Splits `op:threshold`; no colon, or an expression that is itself an ISO 8601 time
/// (`2016-04-18T21:38:54Z` has colons but no operator), is `eq` on the whole.
pub fn split_filter_op(expression: &str) -> (&str, &str) {
    match expression.split_once(':') {
        Some(_) if parse_isotime(expression).is_some() => ("eq", expression),
        Some((op, threshold)) => (op, threshold),
        None => ("eq", expression),
    }
}

fn quote_error(value: &str, what: &str) -> ImageError {
    ImageError::bad_request(format!("Invalid filter value {value}. {what}"))
}

/// Glance's `validate_quotes`: every unescaped `"` opens a value right after a comma
/// (or at the start) and closes one right before a comma (or at the end).
fn validate_quotes(value: &str) -> Result<(), ImageError> {
    let c: Vec<char> = value.chars().collect();
    let mut opening = true;
    for i in 0..c.len() {
        if c[i] != '"' || (i > 0 && c[i - 1] == '\\') {
            continue;
        }
        if opening {
            if i > 0 && c[i - 1] != ',' {
                return Err(quote_error(
                    value,
                    "There is no comma before opening quotation mark.",
                ));
            }
        } else if i + 1 != c.len() && c[i + 1] != ',' {
            return Err(quote_error(
                value,
                "There is no comma after closing quotation mark.",
            ));
        }
        opening = !opening;
    }
    if !opening {
        return Err(quote_error(value, "The quote is not closed."));
    }
    Ok(())
}

/// The end (index of the closing quote) of a quoted value starting at `c[start] == '"'`,
/// as Glance's pattern `"([^"\\]*(?:\\.[^"\\]*)*)"` finds it: a backslash takes the next
/// character (not a newline) with it.
fn closing_quote(c: &[char], start: usize) -> Option<usize> {
    let mut j = start + 1;
    while j < c.len() {
        match c[j] {
            '"' => return Some(j),
            '\\' if c.get(j + 1).is_some_and(|n| *n != '\n') => j += 2,
            '\\' => return None,
            _ => j += 1,
        }
    }
    None
}

/// The values of an `in:` list (Glance's `split_filter_value_for_quotes`): split at
/// commas, except inside double quotes, which are removed (their content is kept as
/// is, backslashes included). `a,,b` has an empty middle value; a trailing comma adds
/// none.
pub fn split_filter_value_for_quotes(value: &str) -> Result<Vec<String>, ImageError> {
    validate_quotes(value)?;
    let c: Vec<char> = value.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // One match of Glance's alternation per step: a quoted value, else a run of
    // non-commas, else a lone comma (an empty value); each eats one following comma.
    while i < c.len() {
        if c[i] == '"' {
            if let Some(end) = closing_quote(&c, i) {
                out.push(c[i + 1..end].iter().collect());
                i = end + 1;
                if c.get(i) == Some(&',') {
                    i += 1;
                }
                continue;
            }
        }
        if c[i] == ',' {
            out.push(String::new());
            i += 1;
            continue;
        }
        let end = c[i..]
            .iter()
            .position(|x| *x == ',')
            .map_or(c.len(), |p| i + p);
        out.push(c[i..end].iter().collect());
        i = (end + 1).min(c.len());
    }
    Ok(out)
}

/// The pieces of an ISO 8601 string as the `iso8601` library's pattern captures them.
#[derive(Debug, Default, PartialEq)]
struct Fields {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// Fraction digits of the second, as written.
    fraction: String,
    /// `None` for `Z` or no zone (both UTC).
    offset: Option<Offset>,
}

/// A zone offset as written: `(negative, hours, minutes)`.
type Offset = (bool, u32, u32);

/// A run of exactly `n` ASCII digits at `at`.
fn digits(c: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = c.get(at..at + n)?;
    s.iter()
        .all(u8::is_ascii_digit)
        .then(|| s.iter().fold(0, |a, d| a * 10 + u32::from(d - b'0')))
}

/// The ways the time part (`[ T]hh[[:]mm][[:]s[s][.,f+]][zone]`) can match at `at`,
/// in the pattern's preference order (greedy, left alternatives first).
fn times(c: &[u8], at: usize) -> Vec<(usize, Fields)> {
    let mut out = Vec::new();
    if !matches!(c.get(at), Some(b' ' | b'T')) {
        return out;
    }
    let Some(hour) = digits(c, at + 1, 2) else {
        return out;
    };
    let p = at + 3;
    // (:?mm)? -> colon and minute, minute alone, nothing.
    let mut minutes = Vec::new();
    if c.get(p) == Some(&b':') {
        if let Some(m) = digits(c, p + 1, 2) {
            minutes.push((p + 3, m));
        }
    }
    if let Some(m) = digits(c, p, 2) {
        minutes.push((p + 2, m));
    }
    minutes.push((p, 0));
    for (p, minute) in minutes {
        // (:?s{1,2}([.,]f+)?)?
        let mut seconds: Vec<(usize, u32, String)> = Vec::new();
        for colon in [true, false] {
            let q = if colon {
                if c.get(p) != Some(&b':') {
                    continue;
                }
                p + 1
            } else {
                p
            };
            for n in [2, 1] {
                let Some(s) = digits(c, q, n) else { continue };
                let r = q + n;
                if matches!(c.get(r), Some(b'.' | b',')) {
                    let run = c[r + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                    for len in (1..=run).rev() {
                        let f = String::from_utf8_lossy(&c[r + 1..r + 1 + len]).into_owned();
                        seconds.push((r + 1 + len, s, f));
                    }
                }
                seconds.push((r, s, String::new()));
            }
        }
        seconds.push((p, 0, String::new()));
        for (p, second, fraction) in seconds {
            // (Z|[-+]hh:?(mm)?)?
            let mut zones: Vec<(usize, Option<Offset>)> = Vec::new();
            match c.get(p) {
                Some(b'Z') => zones.push((p + 1, None)),
                Some(sign @ (b'+' | b'-')) => {
                    if let Some(h) = digits(c, p + 1, 2) {
                        let neg = *sign == b'-';
                        let q = p + 3;
                        if c.get(q) == Some(&b':') {
                            if let Some(m) = digits(c, q + 1, 2) {
                                zones.push((q + 3, Some((neg, h, m))));
                            }
                            zones.push((q + 1, Some((neg, h, 0))));
                        }
                        if let Some(m) = digits(c, q, 2) {
                            zones.push((q + 2, Some((neg, h, m))));
                        }
                        zones.push((q, Some((neg, h, 0))));
                    }
                }
                _ => {}
            }
            zones.push((p, None));
            for (end, offset) in zones {
                out.push((
                    end,
                    Fields {
                        hour,
                        minute,
                        second,
                        fraction: fraction.clone(),
                        offset,
                        ..Fields::default()
                    },
                ));
            }
        }
    }
    out
}

/// The first way (in the `iso8601` pattern's preference order) that `s` matches its
/// grammar: `YYYY`, `YYYY-M[M]`, `YYYY-M[M]-D[D]`, `YYYYMMDD` (not `YYYYMM`), each date
/// optionally followed by a time part. Like Python's `$`, one trailing newline is
/// allowed.
fn match_iso(s: &str) -> Option<Fields> {
    let c = s.as_bytes();
    let at_end = |p: usize| p == c.len() || (p + 1 == c.len() && c[p] == b'\n');
    let year = digits(c, 0, 4)?;
    // Month: `-M[M]` (greedy), else `MM` not at the end.
    let mut months: Vec<(usize, u32)> = Vec::new();
    if c.get(4) == Some(&b'-') {
        for n in [2, 1] {
            if let Some(m) = digits(c, 5, n) {
                months.push((5 + n, m));
            }
        }
    }
    if let Some(m) = digits(c, 4, 2) {
        if !at_end(6) {
            months.push((6, m));
        }
    }
    for (p, month) in months {
        let mut days: Vec<(usize, u32)> = Vec::new();
        if c.get(p) == Some(&b'-') {
            for n in [2, 1] {
                if let Some(d) = digits(c, p + 1, n) {
                    days.push((p + 1 + n, d));
                }
            }
        }
        if let Some(d) = digits(c, p, 2) {
            days.push((p + 2, d));
        }
        for (q, day) in days {
            let date = |f: Fields| Fields {
                year,
                month,
                day,
                ..f
            };
            if let Some((_, f)) = times(c, q).into_iter().find(|(e, _)| at_end(*e)) {
                return Some(date(f));
            }
            if at_end(q) {
                return Some(date(Fields::default()));
            }
        }
        if at_end(p) {
            return Some(Fields {
                year,
                month,
                day: 1,
                ..Fields::default()
            });
        }
    }
    at_end(4).then_some(Fields {
        year,
        month: 1,
        day: 1,
        ..Fields::default()
    })
}

/// An ISO 8601 time as `oslo_utils.timeutils.parse_isotime` reads it (no zone: UTC),
/// normalised to UTC. `None` where Python raises: no match, or a match that is not a
/// real time (month 13, Feb 30, hour 24, a zone of 24 h or more). Fractions beyond
/// microseconds are cut.
pub fn parse_isotime(s: &str) -> Option<Timestamp> {
    let f = match_iso(s)?;
    let month = Month::try_from(u8::try_from(f.month).ok()?).ok()?;
    // Python's datetime knows years 1 to 9999 only.
    let year = i32::try_from(f.year).ok().filter(|y| *y >= 1)?;
    let date = Date::from_calendar_date(year, month, u8::try_from(f.day).ok()?).ok()?;
    let micros: u32 = format!("{:0<6}", f.fraction)[..6].parse().ok()?;
    let time = Time::from_hms_micro(
        u8::try_from(f.hour).ok()?,
        u8::try_from(f.minute).ok()?,
        u8::try_from(f.second).ok()?,
        micros,
    )
    .ok()?;
    let offset_minutes = match f.offset {
        None => 0,
        Some((neg, h, m)) => {
            let total = i32::try_from(h * 60 + m).ok().filter(|t| *t < 24 * 60)?;
            if neg {
                -total
            } else {
                total
            }
        }
    };
    let offset = UtcOffset::from_whole_seconds(offset_minutes * 60).ok()?;
    let t = PrimitiveDateTime::new(date, time).assume_offset(offset);
    Some(Timestamp((t.unix_timestamp_nanos() / 1000) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        parse_isotime(s)
            .unwrap_or_else(|| panic!("{s:?} should parse"))
            .0
    }

    const T: i64 = 1_460_979_534_000_000; // 2016-04-18T11:38:54Z

    #[test]
    fn iso_times_in_the_forms_glance_accepts() {
        assert_eq!(ts("2016-04-18T11:38:54Z"), T);
        assert_eq!(ts("2016-04-18T11:38:54"), T, "no zone is UTC");
        assert_eq!(ts("2016-04-18 11:38:54"), T);
        assert_eq!(ts("20160418T113854Z"), T, "basic format");
        assert_eq!(ts("2016-04-18T13:38:54+02:00"), T);
        assert_eq!(ts("2016-04-18T13:38:54+0200"), T);
        assert_eq!(ts("2016-04-18T09:38:54-02"), T);
        assert_eq!(
            ts("2016-04-18T13:38:54+02:"),
            T,
            "the zone minutes are optional"
        );
        assert_eq!(ts("2016-04-18T11:38:54.25Z"), T + 250_000);
        assert_eq!(ts("2016-04-18T11:38:54,1234567"), T + 123_456, "cut to µs");
        assert_eq!(
            ts("2016-04-18T11:38:54Z\n"),
            T,
            "Python's $ allows one newline"
        );
        assert_eq!(ts("2016-04-18T11:38"), T - 54_000_000);
        assert_eq!(ts("2016-04-18T11"), T - (38 * 60 + 54) * 1_000_000);
        assert_eq!(
            ts("2016-04-18T11:38:5"),
            T - 49_000_000,
            "one-digit seconds"
        );
        assert_eq!(ts("2016-04-18"), ts("2016-04-18T00:00:00Z"));
        assert_eq!(ts("2016-4-8"), ts("2016-04-08T00:00:00Z"));
        assert_eq!(ts("2016-04"), ts("2016-04-01T00:00:00Z"));
        assert_eq!(ts("2016"), ts("2016-01-01T00:00:00Z"));
        assert_eq!(
            ts("2016-04-18T11:38:54+05:99"),
            T - (6 * 60 + 39) * 60_000_000
        );
    }

    #[test]
    fn non_times_and_impossible_times_are_refused() {
        for s in [
            "",
            "201",
            "201604",
            "2016-04-18X11:38:54",
            "2016-04-18T11:38:54Zjunk",
            "2016-13-01",
            "2016-02-30",
            "2016-04-18T24:00:00",
            "2016-04-18T11:60:00",
            "2016-04-18T11:38:60",
            "2016-04-18T11:38:54+24:00",
            "0000-01-01",
            "gt:2016-04-18",
            "in:a,b",
            "2016-04-18T11:38:54\n\n",
        ] {
            assert_eq!(parse_isotime(s), None, "{s:?}");
        }
    }

    #[test]
    fn operators_split_at_the_first_colon_unless_the_whole_is_a_time() {
        assert_eq!(split_filter_op("in:a,b:c"), ("in", "a,b:c"));
        assert_eq!(
            split_filter_op("gt:2016-04-18T11:38:54Z"),
            ("gt", "2016-04-18T11:38:54Z")
        );
        assert_eq!(
            split_filter_op("2016-04-18T11:38:54Z"),
            ("eq", "2016-04-18T11:38:54Z")
        );
        assert_eq!(split_filter_op("cirros"), ("eq", "cirros"));
        assert_eq!(split_filter_op("my:image"), ("my", "image"));
        assert_eq!(split_filter_op(":x"), ("", "x"));
    }

    fn split(s: &str) -> Vec<String> {
        split_filter_value_for_quotes(s).unwrap()
    }

    #[test]
    fn in_lists_split_at_commas_outside_quotes() {
        assert_eq!(split("a,b"), ["a", "b"]);
        assert_eq!(split("a"), ["a"]);
        assert_eq!(split(""), Vec::<String>::new());
        assert_eq!(split("a,"), ["a"]);
        assert_eq!(split(",a"), ["", "a"]);
        assert_eq!(split("a,,b"), ["a", "", "b"]);
        assert_eq!(
            split(r#""glass, darkly",share me"#),
            ["glass, darkly", "share me"]
        );
        assert_eq!(split(r#"a,"b,c""#), ["a", "b,c"]);
        assert_eq!(split(r#""""#), [""]);
        assert_eq!(split(r#""a\"b",c"#), [r#"a\"b"#, "c"], "escapes are kept");
        assert_eq!(
            split(r#"a\"b"#),
            [r#"a\"b"#],
            "an escaped quote opens nothing"
        );
    }

    #[test]
    fn misplaced_or_unclosed_quotes_are_refused_with_glances_messages() {
        let msg = |s: &str| match split_filter_value_for_quotes(s) {
            Err(ImageError::Http { message, .. }) => message,
            other => panic!("{s:?}: {other:?}"),
        };
        assert_eq!(
            msg(r#"a"b",c"#),
            r#"Invalid filter value a"b",c. There is no comma before opening quotation mark."#
        );
        assert_eq!(
            msg(r#""a"b,c"#),
            r#"Invalid filter value "a"b,c. There is no comma after closing quotation mark."#
        );
        assert_eq!(
            msg(r#""a,b"#),
            r#"Invalid filter value "a,b. The quote is not closed."#
        );
    }

    #[test]
    fn comparisons() {
        let c = |op: &str, v: i32, t: i32| Cmp::parse(op).unwrap().holds(&v, &t);
        assert!(c("eq", 1, 1) && !c("eq", 1, 2));
        assert!(c("neq", 1, 2) && !c("neq", 1, 1));
        assert!(c("gt", 2, 1) && !c("gt", 1, 1));
        assert!(c("gte", 1, 1) && !c("gte", 0, 1));
        assert!(c("lt", 0, 1) && !c("lt", 1, 1));
        assert!(c("lte", 1, 1) && !c("lte", 2, 1));
        assert!(matches!(
            Cmp::parse("in"),
            Err(ImageError::Http { message, .. }) if message == "Unable to filter on a unknown operator."
        ));
    }
}
