//! The query of `GET /v2/images`: filters, sort and paging, read as Glance v2 reads them
//! (its images deserializer and controller, then the filter conditions of its SQL
//! layer), with Glance's 400 messages.
//!
//! - `id`, `name`, `status`, `container_format`, `disk_format` take an operator:
//!   `in:a,b,"c,d"` (any of the values) or `eq:` (the default); another operator is a
//!   400. `openstack server list` names the images of its servers with
//!   `id=in:<id>,<id>`, so without `in:` its Image column stays empty.
//! - `created_at` / `updated_at` take `eq`, `neq`, `gt`, `gte`, `lt`, `lte` and an ISO
//!   8601 time (`gt:2016-04-18T21:38:54Z`; no operator is `eq`).
//! - `<attr>_min` / `<attr>_max` bound `size`, `virtual_size`, `min_disk`, `min_ram`.
//! - `visibility`, `tag` (repeatable: all of them), `protected`, `os_hidden`,
//!   `member_status`, and plain equality on `owner`, `checksum`, `os_hash_algo`,
//!   `os_hash_value`, `size`, `virtual_size`, `min_disk`, `min_ram` (operators are not
//!   parsed there: `owner=in:a,b` looks for that owner literally, as in Glance).
//! - Any other key is an exact match on the custom property of that name.
//! - Sorting: `sort=name:asc,size` or repeated `sort_key` / `sort_dir`, then
//!   `created_at` and `id`.
//!
//! A key given twice filters with its last value (Glance's filters are a dict), except
//! `tag` (all count) and `limit`, `marker`, `member_status` (the first counts: Glance
//! pops them from the query).
//!
//! Invariant: pure; every refusal happens before anything is read.

use domain::image::{Image, MemberStatus, Visibility};
use domain::{Ctx, Timestamp};

use crate::error::ImageError;
use crate::filter::{self, Cmp};
use crate::{DEFAULT_LIMIT, MAX_LIMIT};

/// An image attribute a filter reads (Glance's `images` table columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Owner,
    Checksum,
    OsHashAlgo,
    OsHashValue,
    Size,
    VirtualSize,
    MinDisk,
    MinRam,
}

impl Column {
    fn parse(key: &str) -> Option<Column> {
        Some(match key {
            "id" => Column::Id,
            "name" => Column::Name,
            "status" => Column::Status,
            "container_format" => Column::ContainerFormat,
            "disk_format" => Column::DiskFormat,
            "owner" => Column::Owner,
            "checksum" => Column::Checksum,
            "os_hash_algo" => Column::OsHashAlgo,
            "os_hash_value" => Column::OsHashValue,
            "size" => Column::Size,
            "virtual_size" => Column::VirtualSize,
            "min_disk" => Column::MinDisk,
            "min_ram" => Column::MinRam,
            _ => return None,
        })
    }

    /// The columns that take `in:` and `eq:`.
    fn has_operators(self) -> bool {
        matches!(
            self,
            Column::Id
                | Column::Name
                | Column::Status
                | Column::ContainerFormat
                | Column::DiskFormat
        )
    }

    /// The columns with `_min` / `_max` ranges.
    fn number_column(self) -> bool {
        matches!(
            self,
            Column::Size | Column::VirtualSize | Column::MinDisk | Column::MinRam
        )
    }

    /// The value of a numeric column (`None` is SQL NULL: no data yet, or never known).
    fn number(self, img: &Image) -> Option<Option<u64>> {
        Some(match self {
            Column::Size => img.data.as_ref().map(|d| d.size),
            // Known when the upload's format inspection found it.
            Column::VirtualSize => img.virtual_size,
            Column::MinDisk => Some(img.spec.min_disk),
            Column::MinRam => Some(img.spec.min_ram),
            _ => return None,
        })
    }

    /// The value of a text column (`None` is SQL NULL, which equals nothing).
    fn text(self, img: &Image) -> Option<String> {
        let s = &img.spec;
        let d = img.data.as_ref();
        match self {
            Column::Id => Some(s.id.to_string()),
            Column::Name => s.name.clone(),
            Column::Status => Some(img.status.as_str().to_string()),
            Column::ContainerFormat => s.container_format.clone(),
            Column::DiskFormat => s.disk_format.clone(),
            Column::Owner => Some(s.owner.clone()),
            Column::Checksum => d.map(|d| d.checksum.clone()),
            Column::OsHashAlgo => d.map(|d| d.os_hash_algo.clone()),
            Column::OsHashValue => d.map(|d| d.os_hash_value.clone()),
            Column::Size | Column::VirtualSize | Column::MinDisk | Column::MinRam => {
                self.number(img).flatten().map(|n| n.to_string())
            }
        }
    }

    /// `column = value`. A numeric column equals a value that reads as the same
    /// integer (`size=013` finds 13 bytes, as a SQL comparison of a number with a
    /// string does).
    fn equals(self, img: &Image, value: &str) -> bool {
        match self.number(img) {
            Some(n) => n.is_some_and(|n| parse_int(value) == Some(i128::from(n))),
            None => self.text(img).as_deref() == Some(value),
        }
    }
}

/// Which end of a range a `_min` / `_max` filter bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Min,
    Max,
}

/// One filter condition.
#[derive(Debug, Clone, PartialEq)]
enum Filter {
    /// The column is one of the values (`in:`).
    In(Column, Vec<String>),
    /// The column equals the value.
    Eq(Column, String),
    /// `created_at` (`true`) or `updated_at` compared with a time.
    Time {
        created: bool,
        cmp: Cmp,
        at: Timestamp,
    },
    /// A numeric column within a bound (NULL is never within).
    Range(Column, Bound, i128),
    /// A custom property equals the value.
    Property(String, String),
}

impl Filter {
    fn matches(&self, img: &Image) -> bool {
        match self {
            Filter::In(c, values) => c.text(img).is_some_and(|v| values.contains(&v)),
            Filter::Eq(c, v) => c.equals(img, v),
            Filter::Time { created, cmp, at } => {
                // Compared at the precision images show (whole seconds), so that a
                // time copied from a listing selects the image it was copied from.
                let t = if *created {
                    img.created_at
                } else {
                    img.updated_at
                };
                cmp.holds(&Timestamp(t.as_secs() * 1_000_000), at)
            }
            Filter::Range(c, bound, limit) => c.number(img).flatten().is_some_and(|n| {
                let n = i128::from(n);
                match bound {
                    Bound::Min => n >= *limit,
                    Bound::Max => n <= *limit,
                }
            }),
            Filter::Property(k, v) => img.spec.properties.get(k) == Some(v),
        }
    }
}

/// An integer as Python's `int()` reads a string: surrounding whitespace, a sign,
/// digits with single `_` between them. Saturates far beyond any size.
fn parse_int(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let b = digits.as_bytes();
    if b.is_empty()
        || !b[0].is_ascii_digit()
        || !b[b.len() - 1].is_ascii_digit()
        || b.windows(2).any(|w| w == b"__")
        || !b.iter().all(|c| c.is_ascii_digit() || *c == b'_')
    {
        return None;
    }
    let n = b.iter().filter(|c| c.is_ascii_digit()).fold(0i128, |a, c| {
        a.saturating_mul(10).saturating_add(i128::from(c - b'0'))
    });
    Some(if neg { -n } else { n })
}

/// `true` / `false` exactly, or Glance's refusal for the filter `name`.
fn boolean(name: &str, v: &str) -> Result<bool, ImageError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ImageError::bad_request(format!(
            "Invalid value '{v}' for '{name}' filter. Valid values are 'true' or 'false'."
        ))),
    }
}

/// The filter of one query key (not one of the keys [`ListQuery::parse`] takes itself).
fn filter(key: &str, value: &str) -> Result<Filter, ImageError> {
    let range = key
        .strip_suffix("_min")
        .map(|a| (a, Bound::Min))
        .or_else(|| key.strip_suffix("_max").map(|a| (a, Bound::Max)));
    if let Some((attr, bound)) = range {
        let limit = parse_int(value).ok_or_else(|| {
            ImageError::bad_request("Unable to filter on a range with a non-numeric value.")
        })?;
        // Glance fails with a 500 on a range of anything but a column; a range needs
        // a number to compare with, so only the numeric columns take one.
        return match Column::parse(attr).filter(|c| c.number_column()) {
            Some(c) => Ok(Filter::Range(c, bound, limit)),
            None => Err(ImageError::bad_request(format!(
                "Unable to filter on a range of '{attr}': only size, virtual_size, min_disk and min_ram have ranges."
            ))),
        };
    }
    if key == "created_at" || key == "updated_at" {
        let (op, time) = filter::split_filter_op(value);
        let at = filter::parse_isotime(time).ok_or_else(|| {
            ImageError::bad_request(format!(
                "Bad \"{key}\" query filter format. Use ISO 8601 DateTime notation."
            ))
        })?;
        return Ok(Filter::Time {
            created: key == "created_at",
            cmp: Cmp::parse(op)?,
            at,
        });
    }
    match Column::parse(key) {
        Some(c) if c.has_operators() => match filter::split_filter_op(value) {
            ("in", list) => Ok(Filter::In(c, filter::split_filter_value_for_quotes(list)?)),
            ("eq", v) => Ok(Filter::Eq(c, v.to_string())),
            (op, _) => Err(ImageError::bad_request(format!(
                "Unable to filter by unknown operator '{op}'."
            ))),
        },
        Some(c) => Ok(Filter::Eq(c, value.to_string())),
        None => Ok(Filter::Property(key.to_string(), value.to_string())),
    }
}

/// The sort keys of Glance (`_available_sort_keys`), in its order (its 400 lists them).
const SORT_KEYS: &[&str] = &[
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
];

fn sort_key(k: &str) -> Result<&'static str, ImageError> {
    SORT_KEYS.iter().find(|s| **s == k).copied().ok_or_else(|| {
        ImageError::bad_request(format!(
            "Invalid sort key: {k}. It must be one of the following: {}.",
            SORT_KEYS.join(", ")
        ))
    })
}

/// `desc` -> true, `asc` -> false.
fn sort_dir(d: &str) -> Result<bool, ImageError> {
    match d {
        "desc" => Ok(true),
        "asc" => Ok(false),
        _ => Err(ImageError::bad_request(format!(
            "Invalid sort direction: {d}"
        ))),
    }
}

/// The sort order of a query, as Glance builds it: `sort=k[:dir],..` or repeated
/// `sort_key` / `sort_dir` (one direction applies to every key, else one per key),
/// default `created_at` `desc`; then `created_at` and `id` are added where missing
/// (with the single direction given, else `desc`) so that pages are stable.
fn sort_order(q: &[(String, String)]) -> Result<Vec<(&'static str, bool)>, ImageError> {
    let all = |name: &str| -> Vec<&str> {
        q.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .collect()
    };
    let (mut keys, dirs) = if let Some((_, sort)) = q.iter().find(|(k, _)| k == "sort") {
        if q.iter().any(|(k, _)| k == "sort_key" || k == "sort_dir") {
            return Err(ImageError::bad_request(
                "Old and new sorting syntax cannot be combined",
            ));
        }
        let mut keys = Vec::new();
        let mut dirs = Vec::new();
        for part in sort.trim().split(',') {
            let (k, d) = part.split_once(':').unwrap_or((part, ""));
            let d = if d.is_empty() { "desc" } else { d };
            keys.push(sort_key(k.trim())?);
            dirs.push(sort_dir(d.trim())?);
        }
        (keys, dirs)
    } else {
        let keys = all("sort_key")
            .into_iter()
            .map(sort_key)
            .collect::<Result<Vec<_>, _>>()?;
        let dirs = all("sort_dir")
            .into_iter()
            .map(sort_dir)
            .collect::<Result<Vec<_>, _>>()?;
        if dirs.len() > 1 && dirs.len() != keys.len() {
            return Err(ImageError::bad_request(
                "Number of sort dirs does not match the number of sort keys",
            ));
        }
        (keys, dirs)
    };
    if keys.is_empty() {
        keys.push("created_at");
    }
    let default = match dirs.as_slice() {
        [one] => *one,
        _ => true,
    };
    let mut order: Vec<(&'static str, bool)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, if dirs.len() > 1 { dirs[i] } else { default }))
        .collect();
    for k in ["created_at", "id"] {
        if !keys.contains(&k) {
            order.push((k, default));
        }
    }
    Ok(order)
}

/// Compares two images on one sort key (NULL first, as SQL sorts it ascending).
fn compare(key: &str, a: &Image, b: &Image) -> std::cmp::Ordering {
    match key {
        "name" => a.spec.name.cmp(&b.spec.name),
        "status" => a.status.as_str().cmp(b.status.as_str()),
        "container_format" => a.spec.container_format.cmp(&b.spec.container_format),
        "disk_format" => a.spec.disk_format.cmp(&b.spec.disk_format),
        "size" => a
            .data
            .as_ref()
            .map(|d| d.size)
            .cmp(&b.data.as_ref().map(|d| d.size)),
        "id" => a.spec.id.cmp(&b.spec.id),
        "updated_at" => a.updated_at.cmp(&b.updated_at),
        _ => a.created_at.cmp(&b.created_at),
    }
}

/// Filters, sort and paging of one `GET /v2/images`.
#[derive(Debug, Clone)]
pub struct ListQuery {
    filters: Vec<Filter>,
    /// `None`: Glance's default (no community images of other projects); `all`; one
    /// visibility; `Some("")` (given empty) matches nothing, as in Glance.
    visibility: Option<String>,
    tags: Vec<String>,
    /// Which memberships list another project's shared image: one status, or any
    /// (`member_status=all`: `None`). Default `accepted`.
    member_status: Option<MemberStatus>,
    protected: Option<bool>,
    /// `os_hidden=true` lists hidden images only, else only images not hidden.
    hidden: bool,
    /// Sort keys with their direction (`true`: descending), `id` among them.
    order: Vec<(&'static str, bool)>,
    /// Page size.
    pub limit: usize,
    /// Last id of the previous page.
    pub marker: Option<String>,
    /// The query as received, `marker` left out: Glance repeats it in `first` and
    /// `next` (with the next marker), so following `next` keeps every filter.
    echo: Vec<(String, String)>,
}

impl ListQuery {
    /// Reads the query pairs of a `GET /v2/images`, checking them in Glance's order.
    pub fn parse(q: &[(String, String)]) -> Result<ListQuery, ImageError> {
        let first = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let last = |name: &str| {
            q.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        // Keys that are not filters.
        const TAKEN: &[&str] = &[
            "limit",
            "marker",
            "member_status",
            "tag",
            "sort",
            "sort_key",
            "sort_dir",
            "visibility",
            "changes-since",
            "os_hidden",
            "protected",
            // Glance replaces it with its own `deleted=False`.
            "deleted",
        ];
        let visibility = last("visibility");
        if let Some(v) = visibility.filter(|v| !v.is_empty()) {
            if v != "all" && Visibility::parse(v).is_none() {
                return Err(ImageError::bad_request(format!(
                    "Invalid visibility value: {v}"
                )));
            }
        }
        // Glance refuses a non-empty value and fails (500) on an empty one.
        if q.iter().any(|(k, _)| k == "changes-since") {
            return Err(ImageError::bad_request(
                "The \"changes-since\" filter is no longer available on v2.",
            ));
        }
        let member_status = first("member_status").unwrap_or("accepted");
        if !matches!(member_status, "pending" | "accepted" | "rejected" | "all") {
            return Err(ImageError::bad_request(format!(
                "Invalid status: {member_status}"
            )));
        }
        let limit = match first("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => {
                let n = parse_int(v)
                    .ok_or_else(|| ImageError::bad_request("limit param must be an integer"))?;
                if n < 0 {
                    return Err(ImageError::bad_request("limit param must be positive"));
                }
                usize::try_from(n).map_or(MAX_LIMIT, |n| n.min(MAX_LIMIT))
            }
        };
        let order = sort_order(q)?;
        let hidden = match last("os_hidden") {
            None => false,
            Some(v) => boolean("os_hidden", &v.to_lowercase())?,
        };
        let protected = last("protected")
            .map(|v| boolean("protected", v))
            .transpose()?;
        // One filter per key, in the order the keys first appear, with the last value.
        let mut filters = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for (k, _) in q {
            let k = k.as_str();
            if TAKEN.contains(&k) || seen.contains(&k) {
                continue;
            }
            seen.push(k);
            filters.push(filter(k, last(k).unwrap_or_default())?);
        }
        Ok(ListQuery {
            member_status: MemberStatus::parse(member_status),
            filters,
            visibility: visibility.map(str::to_string),
            tags: q
                .iter()
                .filter(|(k, _)| k == "tag")
                .map(|(_, v)| v.trim().to_string())
                .collect(),
            protected,
            hidden,
            order,
            limit,
            marker: first("marker").map(str::to_string),
            echo: q.iter().filter(|(k, _)| k != "marker").cloned().collect(),
        })
    }

    /// Whether `img` passes the filters (visibility to the caller already checked).
    pub fn matches(&self, img: &Image, ctx: &Ctx) -> bool {
        let s = &img.spec;
        let vis_ok = match self.visibility.as_deref() {
            Some("all") => true,
            Some(v) => s.visibility.as_str() == v,
            // Glance lists community images only when asked (or to their owner).
            None => s.visibility != Visibility::Community || s.owner == ctx.project_id,
        };
        // A shared image of another project is listed to a member whose status is
        // the one asked for (Glance's member query; admins list every image).
        let member_ok = ctx.is_admin
            || s.owner == ctx.project_id
            || s.visibility != Visibility::Shared
            || match (img.member_status(&ctx.project_id), self.member_status) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
            };
        vis_ok
            && member_ok
            && img.hidden == self.hidden
            && self.protected.is_none_or(|p| s.protected == p)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.filters.iter().all(|f| f.matches(img))
    }

    /// Sorts by the sort order.
    pub fn sort(&self, images: &mut [Image]) {
        images.sort_by(|a, b| {
            self.order
                .iter()
                .map(|(k, desc)| {
                    let o = compare(k, a, b);
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }

    fn link(pairs: &[(String, String)]) -> String {
        let qs: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    apicore::util::query_encode(k),
                    apicore::util::query_encode(v)
                )
            })
            .collect();
        if qs.is_empty() {
            "/v2/images".to_string()
        } else {
            format!("/v2/images?{}", qs.join("&"))
        }
    }

    /// The `first` link: the query without its marker.
    pub fn first_link(&self) -> String {
        Self::link(&self.echo)
    }

    /// The `next` link after `last`: the query with `marker=<last>`.
    pub fn next_link(&self, last: &str) -> String {
        let mut q = self.echo.clone();
        q.push(("marker".to_string(), last.to_string()));
        Self::link(&q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        s.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn refusal(s: &str) -> String {
        match ListQuery::parse(&q(s)) {
            Err(ImageError::Http { status, message }) => {
                assert_eq!(status, axum::http::StatusCode::BAD_REQUEST, "{s}");
                message
            }
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn operators_are_parsed_where_glance_parses_them() {
        let f = ListQuery::parse(&q("id=in:a,b&name=eq:x&status=active&owner=in:p1,p2"))
            .unwrap()
            .filters;
        assert_eq!(
            f,
            vec![
                Filter::In(Column::Id, vec!["a".into(), "b".into()]),
                Filter::Eq(Column::Name, "x".into()),
                Filter::Eq(Column::Status, "active".into()),
                Filter::Eq(Column::Owner, "in:p1,p2".into()),
            ]
        );
        let f = ListQuery::parse(&q("size_min=1&min_ram_max=+5&os_distro=in:x"))
            .unwrap()
            .filters;
        assert_eq!(
            f,
            vec![
                Filter::Range(Column::Size, Bound::Min, 1),
                Filter::Range(Column::MinRam, Bound::Max, 5),
                Filter::Property("os_distro".into(), "in:x".into()),
            ]
        );
        let f = ListQuery::parse(&q("name=a&name=b")).unwrap().filters;
        assert_eq!(f, vec![Filter::Eq(Column::Name, "b".into())], "last wins");
    }

    #[test]
    fn bad_filters_get_glances_messages() {
        assert_eq!(
            refusal("name=gt:x"),
            "Unable to filter by unknown operator 'gt'."
        );
        assert_eq!(
            refusal("disk_format=my:format"),
            "Unable to filter by unknown operator 'my'."
        );
        assert_eq!(
            refusal("created_at=in:2016-01-01"),
            "Unable to filter on a unknown operator."
        );
        assert_eq!(
            refusal("updated_at=gt:yesterday"),
            "Bad \"updated_at\" query filter format. Use ISO 8601 DateTime notation."
        );
        assert_eq!(
            refusal("size_max=big"),
            "Unable to filter on a range with a non-numeric value."
        );
        assert_eq!(
            refusal("id=in:\"a"),
            "Invalid filter value \"a. The quote is not closed."
        );
        assert_eq!(
            refusal("visibility=in:public"),
            "Invalid visibility value: in:public"
        );
        assert_eq!(refusal("member_status=x"), "Invalid status: x");
        assert_eq!(
            refusal("changes-since=2016-01-01"),
            "The \"changes-since\" filter is no longer available on v2."
        );
        assert_eq!(
            refusal("os_hidden=yes"),
            "Invalid value 'yes' for 'os_hidden' filter. Valid values are 'true' or 'false'."
        );
        assert_eq!(
            refusal("protected=True"),
            "Invalid value 'True' for 'protected' filter. Valid values are 'true' or 'false'."
        );
        assert!(refusal("foo_min=1").starts_with("Unable to filter on a range of 'foo'"));
        // Glance's order: the query's own checks before the filters.
        assert_eq!(
            refusal("name=gt:x&limit=-1"),
            "limit param must be positive"
        );
        assert_eq!(
            refusal("size_max=x&name=gt:x"),
            "Unable to filter on a range with a non-numeric value."
        );
        assert!(ListQuery::parse(&q("os_hidden=TRUE")).unwrap().hidden);
        assert_eq!(refusal("limit=ten"), "limit param must be an integer");
        assert_eq!(ListQuery::parse(&q("limit=+7")).unwrap().limit, 7);
        assert_eq!(
            ListQuery::parse(&q("limit=99999999999999999999999"))
                .unwrap()
                .limit,
            MAX_LIMIT
        );
    }

    #[test]
    fn sort_orders_as_glance_builds_them() {
        let o = |s: &str| ListQuery::parse(&q(s)).unwrap().order;
        assert_eq!(o(""), [("created_at", true), ("id", true)]);
        assert_eq!(
            o("sort_key=name&sort_dir=asc"),
            [("name", false), ("created_at", false), ("id", false)]
        );
        assert_eq!(
            o("sort_key=name&sort_key=size&sort_dir=asc"),
            [
                ("name", false),
                ("size", false),
                ("created_at", false),
                ("id", false)
            ]
        );
        assert_eq!(
            o("sort_key=name&sort_dir=asc&sort_key=id&sort_dir=desc"),
            [("name", false), ("id", true), ("created_at", true)]
        );
        assert_eq!(
            o("sort=name:asc,status"),
            [
                ("name", false),
                ("status", true),
                ("created_at", true),
                ("id", true)
            ]
        );
        assert_eq!(
            o("sort=disk_format: asc"),
            [("disk_format", false), ("created_at", false), ("id", false)]
        );
        assert_eq!(
            refusal("sort_key=owner"),
            "Invalid sort key: owner. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at."
        );
        assert_eq!(refusal("sort_dir=up"), "Invalid sort direction: up");
        assert_eq!(refusal("sort=name:up"), "Invalid sort direction: up");
        assert_eq!(
            refusal("sort=name&sort_key=id"),
            "Old and new sorting syntax cannot be combined"
        );
        assert_eq!(
            refusal("sort_key=name&sort_dir=asc&sort_dir=desc&sort_dir=asc"),
            "Number of sort dirs does not match the number of sort keys"
        );
    }

    #[test]
    fn python_integers() {
        for (s, n) in [
            ("1", 1),
            (" 42 ", 42),
            ("+7", 7),
            ("-3", -3),
            ("1_000", 1000),
        ] {
            assert_eq!(parse_int(s), Some(n), "{s:?}");
        }
        for s in ["", "-", "1.5", "1__0", "_1", "1_", "0x10", "one"] {
            assert_eq!(parse_int(s), None, "{s:?}");
        }
    }

    #[test]
    fn links_repeat_the_query_without_the_marker() {
        let lq = ListQuery::parse(&q("id=in:a,b&marker=m&tag=x&tag=y")).unwrap();
        assert_eq!(lq.first_link(), "/v2/images?id=in%3Aa%2Cb&tag=x&tag=y");
        assert_eq!(
            lq.next_link("z"),
            "/v2/images?id=in%3Aa%2Cb&tag=x&tag=y&marker=z"
        );
        assert_eq!(ListQuery::parse(&[]).unwrap().first_link(), "/v2/images");
    }
}
