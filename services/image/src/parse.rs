//! Validation of image request bodies into domain commands (the list query is
//! [`crate::list`]).
//!
//! Invariant: everything here is pure; a refusal here happens before any command runs.

use std::collections::{BTreeMap, BTreeSet};

use domain::image::{ImageChange, ImageSpec, Visibility, BUILTIN_ATTRIBUTES};
use domain::ImageId;
use serde_json::{json, Map, Value};

use crate::error::ImageError;

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
