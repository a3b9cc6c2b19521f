//! Neutron's collection queries over JSON views: filters by attribute, `fields=`
//! selection, sorting (`sort_key` / `sort_dir`), pagination (`limit`, `marker`,
//! `page_reverse`) with `<collection>_links`.
//!
//! Invariants:
//! - Everything here is pure over the views a handler already limited to what the
//!   caller may see, so a filter can never reveal another project's resource.
//! - Results are always in a total order (the sort keys, then `id`), so pages never
//!   repeat or skip an item.
//! - A filter on an attribute the resource does not have is a 400, as with Neutron's
//!   `filter_validation`.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use crate::body::str_bool;
use crate::error::NetworkError;

/// Query keys that are not attribute filters.
const RESERVED: &[&str] = &[
    "fields",
    "sort_key",
    "sort_dir",
    "limit",
    "marker",
    "page_reverse",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
];

/// A parsed collection query.
#[derive(Debug, Default)]
pub struct ListQuery {
    /// `(attribute, values)`: an item passes when, for every attribute, one value
    /// matches.
    pub filters: Vec<(String, Vec<String>)>,
    /// `fields=`: only these attributes (empty: all).
    pub fields: Vec<String>,
    sort: Vec<(String, bool)>,
    limit: Option<usize>,
    marker: Option<String>,
    page_reverse: bool,
    tags: Vec<(String, Vec<String>)>,
}

impl ListQuery {
    /// Parses the query pairs; `attrs` are the attributes the resource can be
    /// filtered and sorted by.
    pub fn parse(pairs: &[(String, String)], attrs: &[&str]) -> Result<ListQuery, NetworkError> {
        let mut q = ListQuery::default();
        let mut keys = vec![];
        let mut dirs = vec![];
        for (k, v) in pairs {
            match k.as_str() {
                "fields" => q
                    .fields
                    .extend(v.split(',').filter(|s| !s.is_empty()).map(String::from)),
                "sort_key" => keys.push(v.clone()),
                "sort_dir" => dirs.push(v.clone()),
                "limit" => {
                    let n: i64 = v.parse().map_err(|_| {
                        NetworkError::bad_request(format!(
                            "Limit must be an integer 0 or greater and not '{v}'"
                        ))
                    })?;
                    if n < 0 {
                        return Err(NetworkError::bad_request(format!(
                            "Limit must be an integer 0 or greater and not '{v}'"
                        )));
                    }
                    q.limit = (n > 0).then_some(n as usize);
                }
                "marker" => q.marker = Some(v.clone()),
                "page_reverse" => q.page_reverse = str_bool(v).unwrap_or(false),
                "tags" | "tags-any" | "not-tags" | "not-tags-any" => {
                    // A repeated key adds to its list (`tags=a&tags=b` is `tags=a,b`).
                    let vs = v.split(',').filter(|s| !s.is_empty()).map(String::from);
                    match q.tags.iter_mut().find(|(a, _)| a == k) {
                        Some((_, have)) => have.extend(vs),
                        None => q.tags.push((k.clone(), vs.collect())),
                    }
                }
                _ => {
                    if !attrs.contains(&k.as_str()) && !RESERVED.contains(&k.as_str()) {
                        return Err(NetworkError::bad_request(format!(
                            "[{k}] is invalid attribute for filtering"
                        )));
                    }
                    match q.filters.iter_mut().find(|(a, _)| a == k) {
                        Some((_, vs)) => vs.push(v.clone()),
                        None => q.filters.push((k.clone(), vec![v.clone()])),
                    }
                }
            }
        }
        if !dirs.is_empty() && dirs.len() != keys.len() {
            return Err(NetworkError::bad_request(
                "The number of sort_keys and sort_dirs must be same",
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            if !attrs.contains(&k.as_str()) {
                return Err(NetworkError::bad_request(format!(
                    "{k} is an invalid attribute for sort_keys"
                )));
            }
            let asc = match dirs.get(i).map(String::as_str) {
                None | Some("asc") => true,
                Some("desc") => false,
                Some(d) => {
                    return Err(NetworkError::bad_request(format!(
                        "{d} is an invalid value for sort_dirs, valid values are 'asc' and 'desc'"
                    )))
                }
            };
            q.sort.push((k.clone(), asc));
        }
        Ok(q)
    }

    /// Whether `item` passes the filters.
    pub fn matches(&self, item: &Value) -> bool {
        self.filters
            .iter()
            .all(|(attr, values)| values.iter().any(|v| matches_value(item, attr, v)))
            && self.tags.iter().all(|(kind, wanted)| {
                let have: Vec<&str> = item
                    .get("tags")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let all = wanted.iter().all(|t| have.contains(&t.as_str()));
                let any = wanted.iter().any(|t| have.contains(&t.as_str()));
                match kind.as_str() {
                    "tags" => all,
                    "tags-any" => any,
                    "not-tags" => !all,
                    _ => !any,
                }
            })
    }

    /// Filters, sorts, pages and selects fields: the collection body
    /// `{"<name>": [...], "<name>_links": [...]}` (links only when paging).
    pub fn respond(&self, name: &str, items: Vec<Value>, url: &str) -> Result<Value, NetworkError> {
        let mut items: Vec<Value> = items.into_iter().filter(|i| self.matches(i)).collect();
        items.sort_by(|a, b| self.compare(a, b));
        let id_of = |v: &Value| v.get("id").and_then(Value::as_str).map(String::from);
        let mut links = vec![];
        if let Some(marker) = &self.marker {
            let pos = items
                .iter()
                .position(|i| id_of(i).as_deref() == Some(marker.as_str()))
                .ok_or_else(|| {
                    NetworkError::new(
                        axum::http::StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("Marker {marker} could not be found."),
                    )
                })?;
            items = if self.page_reverse {
                items.into_iter().take(pos).collect()
            } else {
                items.into_iter().skip(pos + 1).collect()
            };
        }
        if let Some(limit) = self.limit {
            let more = items.len() > limit;
            if self.page_reverse {
                let skip = items.len().saturating_sub(limit);
                items = items.into_iter().skip(skip).collect();
            } else {
                items.truncate(limit);
            }
            let base = self.link_base(url, limit);
            let (first, last) = (items.first().and_then(id_of), items.last().and_then(id_of));
            // Forward: next while more remain; previous once past the first page.
            let (next, prev) = if self.page_reverse {
                (
                    self.marker.is_some().then_some(last).flatten(),
                    more.then_some(first).flatten(),
                )
            } else {
                (
                    more.then_some(last).flatten(),
                    self.marker.is_some().then_some(first).flatten(),
                )
            };
            if let Some(m) = next {
                links.push(json!({"rel": "next", "href": format!("{base}&marker={m}")}));
            }
            if let Some(m) = prev {
                links.push(json!({"rel": "previous", "href": format!("{base}&marker={m}&page_reverse=True")}));
            }
        }
        let items: Vec<Value> = items.into_iter().map(|i| self.select(i)).collect();
        let mut body = Map::new();
        body.insert(name.to_string(), Value::Array(items));
        if !links.is_empty() {
            body.insert(format!("{name}_links"), Value::Array(links));
        }
        Ok(Value::Object(body))
    }

    fn link_base(&self, url: &str, limit: usize) -> String {
        let mut s = format!("{url}?limit={limit}");
        for (k, asc) in &self.sort {
            s.push_str(&format!(
                "&sort_key={}&sort_dir={}",
                apicore::util::query_encode(k),
                if *asc { "asc" } else { "desc" }
            ));
        }
        for (k, vs) in &self.filters {
            for v in vs {
                s.push_str(&format!(
                    "&{}={}",
                    apicore::util::query_encode(k),
                    apicore::util::query_encode(v)
                ));
            }
        }
        for f in &self.fields {
            s.push_str(&format!("&fields={}", apicore::util::query_encode(f)));
        }
        s
    }

    fn compare(&self, a: &Value, b: &Value) -> Ordering {
        for (k, asc) in &self.sort {
            let o = cmp_json(a.get(k), b.get(k));
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        cmp_json(a.get("id"), b.get("id"))
    }

    /// `fields=` selection (a show takes it too).
    pub fn select(&self, item: Value) -> Value {
        select(item, &self.fields)
    }
}

/// Only `fields` of `item` (all when empty).
pub fn select(item: Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return item;
    }
    match item {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| fields.iter().any(|f| f == k))
                .collect(),
        ),
        v => v,
    }
}

fn cmp_json(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            _ => 4,
        }
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Whether attribute `attr` of `item` matches the query value `v` (Neutron converts the
/// query value to the attribute's type).
fn matches_value(item: &Value, attr: &str, v: &str) -> bool {
    // `fixed_ips=ip_address=10.0.0.3` / `fixed_ips=subnet_id=...` /
    // `fixed_ips=ip_address_substr=10.0`.
    if attr == "fixed_ips" {
        let (k, want) = v.split_once('=').unwrap_or(("ip_address", v));
        return item
            .get("fixed_ips")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter().any(|f| match k {
                    "ip_address_substr" => f
                        .get("ip_address")
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.contains(want)),
                    k => f.get(k).and_then(Value::as_str) == Some(want),
                })
            });
    }
    match item.get(attr) {
        None | Some(Value::Null) => v.is_empty() || v == "None",
        Some(Value::Bool(b)) => str_bool(v) == Some(*b),
        Some(Value::Number(n)) => v.parse::<f64>().ok() == n.as_f64(),
        Some(Value::String(s)) => s == v,
        Some(Value::Array(a)) => a
            .iter()
            .any(|x| x.as_str() == Some(v) || x.as_i64().is_some_and(|n| n.to_string() == v)),
        Some(Value::Object(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn items() -> Vec<Value> {
        (0..5)
            .map(|i| json!({"id": format!("id{i}"), "name": format!("n{}", 4 - i), "shared": i % 2 == 0}))
            .collect()
    }

    #[test]
    fn filters_sort_and_pages() {
        let attrs = ["id", "name", "shared"];
        let q = ListQuery::parse(&pairs(&[("shared", "True")]), &attrs).unwrap();
        let b = q
            .respond("networks", items(), "http://x/v2.0/networks")
            .unwrap();
        assert_eq!(b["networks"].as_array().unwrap().len(), 3);
        let q = ListQuery::parse(
            &pairs(&[("sort_key", "name"), ("sort_dir", "asc"), ("limit", "2")]),
            &attrs,
        )
        .unwrap();
        let b = q
            .respond("networks", items(), "http://x/v2.0/networks")
            .unwrap();
        let names: Vec<&str> = b["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["n0", "n1"]);
        let next = b["networks_links"][0]["href"].as_str().unwrap();
        assert!(next.ends_with("&marker=id3"), "{next}");
        let q = ListQuery::parse(
            &pairs(&[
                ("sort_key", "name"),
                ("sort_dir", "asc"),
                ("limit", "2"),
                ("marker", "id3"),
            ]),
            &attrs,
        )
        .unwrap();
        let b = q.respond("networks", items(), "u").unwrap();
        let names: Vec<&str> = b["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["n2", "n3"]);
        let q = ListQuery::parse(
            &pairs(&[
                ("sort_key", "name"),
                ("limit", "2"),
                ("marker", "id1"),
                ("page_reverse", "True"),
            ]),
            &attrs,
        )
        .unwrap();
        let b = q.respond("networks", items(), "u").unwrap();
        let names: Vec<&str> = b["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["n1", "n2"]);
    }

    #[test]
    fn unknown_filters_and_fields() {
        assert!(ListQuery::parse(&pairs(&[("bogus", "1")]), &["id"]).is_err());
        assert!(ListQuery::parse(&pairs(&[("sort_key", "bogus")]), &["id"]).is_err());
        let q = ListQuery::parse(&pairs(&[("fields", "id")]), &["id"]).unwrap();
        let b = q.respond("networks", items(), "u").unwrap();
        assert_eq!(b["networks"][0], json!({"id": "id0"}));
    }
}
