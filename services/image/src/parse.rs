//! Validation of image request bodies and queries into domain commands.
//!
//! Invariant: everything here is pure; a refusal here happens before any command runs.

use std::collections::{BTreeMap, BTreeSet};

use domain::image::{Image, ImageChange, ImageSpec, Visibility, BUILTIN_ATTRIBUTES};
use domain::{Ctx, ImageId};
use serde_json::{json, Map, Value};

use crate::error::ImageError;
use crate::{DEFAULT_LIMIT, MAX_LIMIT};

/// Attributes a client may set.
const SETTABLE: &[&str] = &[
    "name",
    "visibility",
    "protected",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "tags",
];

/// Attributes no client may set.
const READ_ONLY: &[&str] = &[
    "id",
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "created_at",
    "updated_at",
    "direct_url",
    "locations",
    "owner",
];

fn schema_error(attr: &str, what: &str) -> ImageError {
    ImageError::bad_request(format!(
        "Provided object does not match schema 'image': invalid value for '{attr}': {what}"
    ))
}

fn read_only(attr: &str) -> ImageError {
    ImageError::forbidden(format!("Attribute '{attr}' is read-only."))
}

fn reserved(attr: &str) -> ImageError {
    ImageError::forbidden(format!("Attribute '{attr}' is reserved."))
}

fn opt_str(attr: &str, v: &Value) -> Result<Option<String>, ImageError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(schema_error(attr, "must be a string or null")),
    }
}

fn count(attr: &str, v: &Value) -> Result<u64, ImageError> {
    v.as_u64()
        .filter(|n| *n <= i32::MAX as u64)
        .ok_or_else(|| schema_error(attr, "must be an integer >= 0"))
}

fn tags(v: &Value) -> Result<BTreeSet<String>, ImageError> {
    let arr = v
        .as_array()
        .ok_or_else(|| schema_error("tags", "must be an array of strings"))?;
    arr.iter()
        .map(|t| {
            t.as_str()
                .map(str::to_string)
                .ok_or_else(|| schema_error("tags", "must be an array of strings"))
        })
        .collect()
}

fn visibility(v: &Value) -> Result<Visibility, ImageError> {
    v.as_str().and_then(Visibility::parse).ok_or_else(|| {
        schema_error(
            "visibility",
            "must be one of 'public', 'private', 'shared', 'community'",
        )
    })
}

/// One settable attribute as a change.
fn change(attr: &str, v: &Value) -> Result<ImageChange, ImageError> {
    Ok(match attr {
        "name" => ImageChange::Name(opt_str(attr, v)?),
        "visibility" => ImageChange::Visibility(visibility(v)?),
        "protected" => ImageChange::Protected(
            v.as_bool()
                .ok_or_else(|| schema_error(attr, "must be a boolean"))?,
        ),
        "disk_format" => ImageChange::DiskFormat(opt_str(attr, v)?),
        "container_format" => ImageChange::ContainerFormat(opt_str(attr, v)?),
        "min_disk" => ImageChange::MinDisk(count(attr, v)?),
        "min_ram" => ImageChange::MinRam(count(attr, v)?),
        "tags" => ImageChange::Tags(tags(v)?),
        other => unreachable!("{other} is not settable"),
    })
}

fn property_value(attr: &str, v: &Value) -> Result<String, ImageError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| schema_error(attr, "custom properties must be strings"))
}

/// A POST /v2/images body into a spec owned by `owner`.
pub fn create(body: &Value, owner: &str) -> Result<ImageSpec, ImageError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ImageError::bad_request("Request body must be a JSON object."))?;
    let mut spec = ImageSpec {
        id: ImageId(uuid::Uuid::new_v4()),
        name: None,
        owner: owner.to_string(),
        visibility: Visibility::Shared,
        protected: false,
        disk_format: None,
        container_format: None,
        min_disk: 0,
        min_ram: 0,
        tags: BTreeSet::new(),
        properties: BTreeMap::new(),
    };
    for (k, v) in obj {
        match k.as_str() {
            "id" => {
                spec.id = v
                    .as_str()
                    .and_then(ImageId::parse)
                    .ok_or_else(|| schema_error("id", "must be a UUID"))?
            }
            // Accepted and ignored: hidden images are not implemented.
            "os_hidden" => {
                v.as_bool()
                    .ok_or_else(|| schema_error(k, "must be a boolean"))?;
            }
            a if SETTABLE.contains(&a) => match change(a, v)? {
                ImageChange::Name(n) => spec.name = n,
                ImageChange::Visibility(x) => spec.visibility = x,
                ImageChange::Protected(p) => spec.protected = p,
                ImageChange::DiskFormat(f) => spec.disk_format = f,
                ImageChange::ContainerFormat(f) => spec.container_format = f,
                ImageChange::MinDisk(n) => spec.min_disk = n,
                ImageChange::MinRam(n) => spec.min_ram = n,
                ImageChange::Tags(t) => spec.tags = t,
                _ => unreachable!("settable attributes only"),
            },
            a if READ_ONLY.contains(&a) => return Err(read_only(a)),
            a if BUILTIN_ATTRIBUTES.contains(&a) => return Err(reserved(a)),
            a => {
                spec.properties.insert(a.to_string(), property_value(a, v)?);
            }
        }
    }
    Ok(spec)
}

/// A JSON patch (`application/openstack-images-v2.1-json-patch`) into changes.
pub fn patch(body: &Value) -> Result<Vec<ImageChange>, ImageError> {
    let ops = body.as_array().ok_or_else(|| {
        ImageError::bad_request("Request body must be a JSON array of operation objects.")
    })?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let o = op
            .as_object()
            .ok_or_else(|| ImageError::bad_request("Operations must be JSON objects."))?;
        let kind = o
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| ImageError::bad_request("Unable to find 'op' in JSON Schema change"))?;
        let path = o.get("path").and_then(Value::as_str).ok_or_else(|| {
            ImageError::bad_request("Unable to find 'path' in JSON Schema change")
        })?;
        let attr = pointer(path)?;
        let value = || {
            o.get("value").ok_or_else(|| {
                ImageError::bad_request("Unable to find 'value' in JSON Schema change")
            })
        };
        let a = attr.as_str();
        let ch = match kind {
            "add" | "replace" => {
                let v = value()?;
                if SETTABLE.contains(&a) {
                    change(a, v)?
                } else if READ_ONLY.contains(&a) {
                    return Err(read_only(a));
                } else if BUILTIN_ATTRIBUTES.contains(&a) {
                    return Err(reserved(a));
                } else if kind == "add" {
                    ImageChange::AddProperty(attr.clone(), property_value(a, v)?)
                } else {
                    ImageChange::ReplaceProperty(attr.clone(), property_value(a, v)?)
                }
            }
            "remove" => {
                if BUILTIN_ATTRIBUTES.contains(&a) {
                    return Err(ImageError::forbidden(format!(
                        "Property {a} may not be removed."
                    )));
                }
                ImageChange::RemoveProperty(attr)
            }
            other => {
                return Err(ImageError::bad_request(format!(
                    "Invalid operation: `{other}`: only add, replace and remove are supported."
                )))
            }
        };
        out.push(ch);
    }
    Ok(out)
}

/// `/name` -> `name` (RFC 6901: `~1` is `/`, `~0` is `~`); one level only.
fn pointer(path: &str) -> Result<String, ImageError> {
    let rest = path.strip_prefix('/').unwrap_or("");
    if rest.is_empty() || rest.contains('/') {
        return Err(ImageError::bad_request(format!(
            "Invalid JSON pointer for this resource: '{path}'"
        )));
    }
    Ok(rest.replace("~1", "/").replace("~0", "~"))
}

/// Filters, sort and paging of `GET /v2/images`.
#[derive(Debug, Clone)]
pub struct ListQuery {
    name: Option<String>,
    status: Option<String>,
    visibility: Option<String>,
    owner: Option<String>,
    properties: BTreeMap<String, String>,
    sort_key: String,
    desc: bool,
    /// Page size.
    pub limit: usize,
    /// Last id of the previous page.
    pub marker: Option<String>,
}

/// Query keys that are not property filters.
const NON_FILTERS: &[&str] = &["sort", "member_status", "os_hidden", "tag", "protected"];

/// Parses the list query (unknown keys filter on custom properties, as in Glance).
pub fn list_query(q: &[(String, String)]) -> Result<ListQuery, ImageError> {
    let mut lq = ListQuery {
        name: None,
        status: None,
        visibility: None,
        owner: None,
        properties: BTreeMap::new(),
        sort_key: "created_at".into(),
        desc: true,
        limit: DEFAULT_LIMIT,
        marker: None,
    };
    for (k, v) in q {
        match k.as_str() {
            "name" => lq.name = Some(v.clone()),
            "status" => lq.status = Some(v.clone()),
            "owner" => lq.owner = Some(v.clone()),
            "visibility" => {
                if v != "all" && Visibility::parse(v).is_none() {
                    return Err(ImageError::bad_request(format!(
                        "Invalid visibility value: {v}"
                    )));
                }
                lq.visibility = Some(v.clone());
            }
            "limit" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| ImageError::bad_request("limit param must be an integer"))?;
                if n < 0 {
                    return Err(ImageError::bad_request("limit param must be positive"));
                }
                lq.limit = (n as usize).min(MAX_LIMIT);
            }
            "marker" => lq.marker = Some(v.clone()),
            "sort_key" => {
                if !matches!(
                    v.as_str(),
                    "created_at" | "updated_at" | "name" | "id" | "status" | "size"
                ) {
                    return Err(ImageError::bad_request(format!(
                        "Invalid sort key: {v}. It must be one of the following: created_at, updated_at, name, id, status, size."
                    )));
                }
                lq.sort_key = v.clone();
            }
            "sort_dir" => {
                lq.desc = match v.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => {
                        return Err(ImageError::bad_request(format!(
                            "Invalid sort direction: {v}"
                        )))
                    }
                }
            }
            k if NON_FILTERS.contains(&k) => {}
            k => {
                lq.properties.insert(k.to_string(), v.clone());
            }
        }
    }
    Ok(lq)
}

impl ListQuery {
    /// Whether `img` passes the filters (visibility already checked by the caller).
    pub fn matches(&self, img: &Image, ctx: &Ctx) -> bool {
        let s = &img.spec;
        let vis_ok = match self.visibility.as_deref() {
            Some("all") => true,
            Some(v) => s.visibility.as_str() == v,
            // Glance lists community images only when asked (or to their owner).
            None => s.visibility != Visibility::Community || s.owner == ctx.project_id,
        };
        vis_ok
            && self
                .name
                .as_ref()
                .is_none_or(|n| s.name.as_ref() == Some(n))
            && self
                .status
                .as_ref()
                .is_none_or(|st| img.status.as_str() == st)
            && self.owner.as_ref().is_none_or(|o| &s.owner == o)
            && self
                .properties
                .iter()
                .all(|(k, v)| s.properties.get(k) == Some(v))
    }

    /// Sorts by the sort key (then id, for a stable order).
    pub fn sort(&self, images: &mut [Image]) {
        images.sort_by(|a, b| {
            let o = match self.sort_key.as_str() {
                "name" => a.spec.name.cmp(&b.spec.name),
                "updated_at" => a.updated_at.cmp(&b.updated_at),
                "status" => a.status.as_str().cmp(b.status.as_str()),
                "size" => a
                    .data
                    .as_ref()
                    .map(|d| d.size)
                    .cmp(&b.data.as_ref().map(|d| d.size)),
                "id" => std::cmp::Ordering::Equal,
                _ => a.created_at.cmp(&b.created_at),
            }
            .then_with(|| a.spec.id.cmp(&b.spec.id));
            if self.desc {
                o.reverse()
            } else {
                o
            }
        });
    }

    /// The `next` link after `last`.
    pub fn next_link(&self, last: &str) -> String {
        let mut q: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: &str| q.push((k.to_string(), v.to_string()));
        if let Some(n) = &self.name {
            push("name", n);
        }
        if let Some(s) = &self.status {
            push("status", s);
        }
        if let Some(v) = &self.visibility {
            push("visibility", v);
        }
        if let Some(o) = &self.owner {
            push("owner", o);
        }
        for (k, v) in &self.properties {
            push(k, v);
        }
        push("sort_key", &self.sort_key.clone());
        push("sort_dir", if self.desc { "desc" } else { "asc" });
        push("limit", &self.limit.to_string());
        push("marker", last);
        let qs: Vec<String> = q
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    api::util::query_encode(k),
                    api::util::query_encode(v)
                )
            })
            .collect();
        format!("/v2/images?{}", qs.join("&"))
    }
}

/// The JSON schema of an image as Stratus shows it.
pub fn image_schema() -> Value {
    let s = |t: Value| json!({ "type": t });
    let mut props = Map::new();
    for (k, t) in [
        ("id", s(json!("string"))),
        ("name", s(json!(["null", "string"]))),
        ("status", s(json!("string"))),
        ("visibility", s(json!("string"))),
        ("protected", s(json!("boolean"))),
        ("os_hidden", s(json!("boolean"))),
        ("checksum", s(json!(["null", "string"]))),
        ("os_hash_algo", s(json!(["null", "string"]))),
        ("os_hash_value", s(json!(["null", "string"]))),
        ("size", s(json!(["null", "integer"]))),
        ("virtual_size", s(json!(["null", "integer"]))),
        ("disk_format", s(json!(["null", "string"]))),
        ("container_format", s(json!(["null", "string"]))),
        ("min_disk", s(json!("integer"))),
        ("min_ram", s(json!("integer"))),
        ("owner", s(json!(["null", "string"]))),
        ("created_at", s(json!("string"))),
        ("updated_at", s(json!("string"))),
        (
            "tags",
            json!({"type": "array", "items": {"type": "string"}}),
        ),
        ("self", s(json!("string"))),
        ("file", s(json!("string"))),
        ("schema", s(json!("string"))),
    ] {
        props.insert(k.to_string(), t);
    }
    json!({
        "name": "image",
        "properties": props,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}
