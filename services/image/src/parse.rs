//! Validation of image request bodies into domain commands (the list query is
//! [`crate::list`]).
//!
//! Invariant: everything here is pure; a refusal here happens before any command runs.

use std::collections::{BTreeMap, BTreeSet};

use domain::image::{Image, ImageChange, ImageSpec, Visibility, BUILTIN_ATTRIBUTES};
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

/// A POST /v2/images body into a spec owned by `owner`, and the changes the spec does
/// not carry (`os_hidden`), applied in the same append.
pub fn create(body: &Value, owner: &str) -> Result<(ImageSpec, Vec<ImageChange>), ImageError> {
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
    let mut extra = Vec::new();
    for (k, v) in obj {
        match k.as_str() {
            "id" => {
                spec.id = v
                    .as_str()
                    .and_then(ImageId::parse)
                    .ok_or_else(|| schema_error("id", "must be a UUID"))?
            }
            "os_hidden" => {
                if v.as_bool()
                    .ok_or_else(|| schema_error(k, "must be a boolean"))?
                {
                    extra.push(ImageChange::Hidden(true));
                }
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
            // Another project's id is the domain's to refuse (admins only).
            "owner" => {
                if let Some(o) = opt_str(k, v)? {
                    spec.owner = o;
                }
            }
            a if READ_ONLY.contains(&a) => return Err(read_only(a)),
            a if BUILTIN_ATTRIBUTES.contains(&a) || is_reserved(a) => return Err(reserved(a)),
            a => {
                spec.properties.insert(a.to_string(), property_value(a, v)?);
            }
        }
    }
    Ok((spec, extra))
}

/// The two patch media types of Glance: v2.0 is JSON-schema draft 4 (`{"add":
/// "/name", "value": ..}`, `add` refuses what exists), v2.1 draft 10 (`{"op": "add",
/// "path": "/name", "value": ..}`, `add` sets or overwrites).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchDraft {
    /// `application/openstack-images-v2.0-json-patch`
    V20,
    /// `application/openstack-images-v2.1-json-patch`
    V21,
}

impl PatchDraft {
    /// The draft of a media type (parameters ignored), if it is one.
    pub fn of_media_type(ct: &str) -> Option<PatchDraft> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/openstack-images-v2.0-json-patch" => Some(PatchDraft::V20),
            "application/openstack-images-v2.1-json-patch" => Some(PatchDraft::V21),
            _ => None,
        }
    }
}

/// The media types a PATCH accepts, as Glance lists them (415 and `Accept-Patch`).
pub const PATCH_MEDIA_TYPES: &str =
    "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch";

/// Patch attributes Glance never lets a client write (its `_readonly_properties`).
const PATCH_READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
];

/// A JSON-patch operation on `/locations`, its value checked against Glance's schema
/// of a location (the image service resolves it into a domain location change).
#[derive(Debug, Clone, PartialEq)]
pub enum LocationOp {
    /// `add /locations/<pos>` with one location.
    Add { pos: String, value: Value },
    /// `remove /locations/<pos>`.
    Remove { pos: String },
    /// `replace /locations` with a list of locations.
    Replace { value: Value },
}

/// One operation of a patch.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOp {
    /// An attribute change.
    Change(ImageChange),
    /// A location operation.
    Location(LocationOp),
}

/// Glance's schema of one location (`url` and `metadata` required; `validation_data`
/// with the hashes only): the 400 of a value that does not match.
fn check_location(v: &Value) -> Result<(), ImageError> {
    let bad = |m: String| Err(schema_error("locations", &m));
    let Some(o) = v.as_object() else {
        return bad(format!("{v} is not of type 'object'"));
    };
    for k in ["url", "metadata"] {
        if !o.contains_key(k) {
            return bad(format!("'{k}' is a required property"));
        }
    }
    match &o["url"] {
        Value::String(u) if u.chars().count() > 255 => return bad(format!("'{u}' is too long")),
        Value::String(_) => {}
        u => return bad(format!("{u} is not of type 'string'")),
    }
    if !o["metadata"].is_object() {
        return bad(format!("{} is not of type 'object'", o["metadata"]));
    }
    let Some(vd) = o.get("validation_data") else {
        return Ok(());
    };
    let Some(vd) = vd.as_object() else {
        return bad(format!("{vd} is not of type 'object'"));
    };
    for (k, val) in vd {
        let max = match k.as_str() {
            "checksum" => 32,
            "os_hash_algo" => 64,
            "os_hash_value" => 128,
            other => {
                return bad(format!(
                    "Additional properties are not allowed ('{other}' was unexpected)"
                ))
            }
        };
        let Some(s) = val.as_str() else {
            return bad(format!("{val} is not of type 'string'"));
        };
        let n = s.chars().count();
        if n > max {
            return bad(format!("'{s}' is too long"));
        }
        if k == "checksum" && n < 32 {
            return bad(format!("'{s}' is too short"));
        }
    }
    for k in ["os_hash_algo", "os_hash_value"] {
        if !vd.contains_key(k) {
            return bad(format!("'{k}' is a required property"));
        }
    }
    Ok(())
}

/// How deep a pointer to `root` may be for `op` (Glance's `_path_depth_limits`).
fn depth_limit(root: &str, op: &str) -> usize {
    match (root, op) {
        ("locations", "add" | "remove") => 2,
        _ => 1,
    }
}

/// Glance's reserved names and namespace.
fn is_reserved(a: &str) -> bool {
    matches!(a, "location" | "deleted" | "deleted_at") || a.starts_with("os_glance")
}

const OPS: &str = "add, remove, replace";

/// The operation and path of one change object.
fn op_and_path(
    o: &Map<String, Value>,
    draft: PatchDraft,
) -> Result<(&'static str, &Value), ImageError> {
    match draft {
        PatchDraft::V21 => {
            let op = o.get("op").ok_or_else(|| {
                ImageError::bad_request(format!(
                    "Unable to find `op` in JSON Schema change. It must be one of the following: {OPS}."
                ))
            })?;
            let op = match op.as_str() {
                Some("add") => "add",
                Some("remove") => "remove",
                Some("replace") => "replace",
                _ => {
                    let shown = op.as_str().map_or_else(|| op.to_string(), str::to_string);
                    return Err(ImageError::bad_request(format!(
                        "Invalid operation: `{shown}`. It must be one of the following: {OPS}."
                    )));
                }
            };
            let path = o.get("path").ok_or_else(|| {
                ImageError::bad_request("Unable to find 'path' in JSON Schema change")
            })?;
            Ok((op, path))
        }
        PatchDraft::V20 => {
            let mut found = None;
            for op in ["add", "remove", "replace"] {
                if let Some(p) = o.get(op) {
                    if found.is_some() {
                        return Err(ImageError::bad_request(
                            "Operation objects must contain only one member named \"add\", \"remove\", or \"replace\".",
                        ));
                    }
                    found = Some((op, p));
                }
            }
            found.ok_or_else(|| {
                ImageError::bad_request(
                    "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
                )
            })
        }
    }
}

/// A JSON patch of either media type into operations, read against the image as it
/// is (`img`): v2.0's `add` of something present is Glance's 409. Every refusal here
/// comes before any command.
pub fn patch(body: &Value, draft: PatchDraft, img: &Image) -> Result<Vec<PatchOp>, ImageError> {
    let ops = body.as_array().ok_or_else(|| {
        ImageError::bad_request("Request body must be a JSON array of operation objects.")
    })?;
    // Glance's deserializer checks every operation before its controller applies any.
    let mut parsed = Vec::with_capacity(ops.len());
    for op in ops {
        let o = op
            .as_object()
            .ok_or_else(|| ImageError::bad_request("Operations must be JSON objects."))?;
        let (kind, path) = op_and_path(o, draft)?;
        let parts = pointer(path)?;
        if parts.len() != depth_limit(&parts[0], kind) {
            return Err(ImageError::bad_request(format!(
                "Invalid JSON pointer for this resource: '/{}'",
                parts.join("/")
            )));
        }
        let value = if kind == "remove" {
            None
        } else {
            Some(o.get("value").ok_or_else(|| {
                ImageError::bad_request(format!(
                    "Operation \"{kind}\" requires a member named \"value\"."
                ))
            })?)
        };
        let attr = parts[0].clone();
        let a = attr.as_str();
        if PATCH_READ_ONLY.contains(&a) {
            return Err(read_only(a));
        }
        if is_reserved(a) {
            return Err(reserved(a));
        }
        if a == "locations" {
            let pos = parts.get(1).cloned().unwrap_or_default();
            let op = match (kind, value) {
                ("remove", _) => LocationOp::Remove { pos },
                ("add", Some(v)) => {
                    check_location(v)?;
                    LocationOp::Add {
                        pos,
                        value: v.clone(),
                    }
                }
                (_, Some(v)) => {
                    let list = v.as_array().ok_or_else(|| {
                        schema_error("locations", &format!("{v} is not of type 'array'"))
                    })?;
                    for l in list {
                        check_location(l)?;
                    }
                    LocationOp::Replace { value: v.clone() }
                }
                (_, None) => unreachable!("add and replace carry a value"),
            };
            parsed.push(Err(op));
            continue;
        }
        if let Some(v) = value {
            // The value is checked against the schema here, as Glance does.
            if a == "os_hidden" {
                v.as_bool()
                    .ok_or_else(|| schema_error(a, "must be a boolean"))?;
            } else if a == "owner" {
                opt_str(a, v)?;
            } else if SETTABLE.contains(&a) {
                change(a, v)?;
            } else if !BUILTIN_ATTRIBUTES.contains(&a) {
                property_value(a, v)?;
            }
        }
        parsed.push(Ok((kind, attr, value)));
    }
    let mut props: BTreeSet<String> = img.spec.properties.keys().cloned().collect();
    let mut out = Vec::with_capacity(parsed.len());
    for p in parsed {
        let (kind, attr, value) = match p {
            Ok(change) => change,
            Err(op) => {
                out.push(PatchOp::Location(op));
                continue;
            }
        };
        let a = attr.as_str();
        let builtin = BUILTIN_ATTRIBUTES.contains(&a);
        let ch = match (kind, value) {
            ("remove", _) => {
                if builtin {
                    return Err(ImageError::forbidden(format!(
                        "Property {a} may not be removed."
                    )));
                }
                props.remove(a);
                ImageChange::RemoveProperty(attr)
            }
            (_, Some(v)) => {
                if kind == "add" && draft == PatchDraft::V20 && (builtin || props.contains(a)) {
                    return Err(ImageError::new(
                        axum::http::StatusCode::CONFLICT,
                        format!("Property {a} already present."),
                    ));
                }
                if a == "os_hidden" {
                    ImageChange::Hidden(v.as_bool().unwrap_or_default())
                } else if a == "owner" {
                    // `null` is no project Stratus can give an image to.
                    ImageChange::Owner(
                        opt_str(a, v)?.ok_or_else(|| schema_error(a, "must be a project id"))?,
                    )
                } else if SETTABLE.contains(&a) {
                    change(a, v)?
                } else if builtin {
                    return Err(reserved(a));
                } else if kind == "add" {
                    let v = property_value(a, v)?;
                    props.insert(attr.clone());
                    ImageChange::AddProperty(attr, v)
                } else {
                    let v = property_value(a, v)?;
                    ImageChange::ReplaceProperty(attr, v)
                }
            }
            (_, None) => unreachable!("add and replace carry a value"),
        };
        out.push(PatchOp::Change(ch));
    }
    Ok(out)
}

/// A JSON pointer's segments (`/name` -> `name`; RFC 6901: `~1` is `/`, `~0` is
/// `~`), with Glance's refusals of malformed pointers (the depth is the caller's).
fn pointer(path: &Value) -> Result<Vec<String>, ImageError> {
    let bad = |m: String| ImageError::bad_request(m);
    let Some(p) = path.as_str() else {
        return Err(bad(format!("Pointer `{path}` does not start with \"/\".")));
    };
    let Some(rest) = p.strip_prefix('/') else {
        return Err(bad(format!("Pointer `{p}` does not start with \"/\".")));
    };
    // Two slashes with nothing but whitespace between them, after the first one.
    let adjacent = rest
        .char_indices()
        .filter(|(_, c)| *c == '/')
        .any(|(i, _)| rest[i + 1..].trim_start().starts_with('/'));
    if adjacent {
        return Err(bad(format!("Pointer `{p}` contains adjacent \"/\".")));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if p.len() > 1 && p.ends_with('/') {
        return Err(bad(format!("Pointer `{p}` end with \"/\".")));
    }
    let bytes = p.as_bytes();
    let bad_escape = bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')));
    if bad_escape {
        return Err(bad(format!(
            "Pointer `{p}` contains \"~\" not part of a recognized escape sequence."
        )));
    }
    let parts: Vec<String> = segments
        .iter()
        .map(|s| s.replace("~1", "/").replace("~0", "~").trim().to_string())
        .collect();
    if parts[0].is_empty() {
        return Err(bad(format!(
            "Invalid JSON pointer for this resource: '/{}'",
            parts.join("/")
        )));
    }
    Ok(parts)
}

/// The properties of Glance's image schema (its `get_base_properties`, as
/// `GET /v2/schemas/image` shows them), the format enums aside.
const IMAGE_SCHEMA_PROPERTIES: &str = include_str!("image-schema.json");

/// Glance's JSON schema of an image (`GET /v2/schemas/image`): its base properties with
/// the disk and container formats Stratus accepts (`null` first, as Glance lists
/// them), string-valued custom properties, and the links of an image.
pub fn image_schema() -> Value {
    let mut props: Map<String, Value> =
        serde_json::from_str(IMAGE_SCHEMA_PROPERTIES).expect("image-schema.json is an object");
    for (attr, formats) in [
        ("disk_format", domain::image::DISK_FORMATS),
        ("container_format", domain::image::CONTAINER_FORMATS),
    ] {
        let mut values = vec![Value::Null];
        values.extend(formats.iter().map(|f| json!(f)));
        props[attr]["enum"] = Value::Array(values);
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
