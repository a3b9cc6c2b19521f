//! Glance-shaped JSON for images and the version document.

use domain::image::{Image, Member};
use domain::ImageId;
use serde_json::{json, Map, Value};

/// An image as Glance v2 shows it: its attributes, then custom properties at top level.
/// `stores`: the stores holding its data (`ImageState::stores_of`).
pub fn image(img: &Image, stores: &[String]) -> Value {
    let s = &img.spec;
    let id = s.id.to_string();
    let d = img.data_facts();
    let mut m = Map::new();
    // Custom properties first, so that no property can shadow a real attribute
    // (the domain refuses such names anyway).
    for (k, v) in &s.properties {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    let fields = json!({
        "id": id,
        "name": s.name,
        "status": img.status.as_str(),
        "visibility": s.visibility.as_str(),
        "protected": s.protected,
        "os_hidden": img.hidden,
        "checksum": d.checksum,
        "os_hash_algo": d.os_hash_algo,
        "os_hash_value": d.os_hash_value,
        // Staged data has a size before it has checksums (Glance records it).
        "size": d.size.or(img.staged),
        "virtual_size": img.virtual_size,
        "disk_format": s.disk_format,
        "container_format": s.container_format,
        "min_disk": s.min_disk,
        "min_ram": s.min_ram,
        "owner": s.owner,
        "created_at": apicore::util::iso_z(img.created_at),
        "updated_at": apicore::util::iso_z(img.updated_at),
        "tags": s.tags.iter().collect::<Vec<_>>(),
        "self": format!("/v2/images/{id}"),
        "file": format!("/v2/images/{id}/file"),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    // Where the data is (Glance with `enabled_backends`), in the order given: highest
    // weight first (`Stores::of`).
    if !stores.is_empty() {
        m.insert("stores".into(), Value::String(stores.join(",")));
    }
    Value::Object(m)
}

/// Glance's version list: v2.17 CURRENT (the location API), v2.9 and the older v2
/// minors SUPPORTED; with the image cache served (`cache`), v2.14 (the cache API)
/// SUPPORTED too, as Glance lists it only when `image_cache_dir` is set.
pub fn versions(base: &str, cache: bool) -> Value {
    let link = json!([{"rel": "self", "href": format!("{base}/v2/")}]);
    let mut out = vec![json!({"id": "v2.17", "status": "CURRENT", "links": link})];
    if cache {
        out.push(json!({"id": "v2.14", "status": "SUPPORTED", "links": link}));
    }
    for minor in (0..=9).rev() {
        out.push(json!({"id": format!("v2.{minor}"), "status": "SUPPORTED", "links": link}));
    }
    json!({ "versions": out })
}

/// One membership as Glance shows it.
pub fn member(image: &ImageId, member: &str, m: &Member) -> Value {
    json!({
        "member_id": member,
        "image_id": image.to_string(),
        "status": m.status.as_str(),
        "created_at": apicore::util::iso_z(m.created_at),
        "updated_at": apicore::util::iso_z(m.updated_at),
        "schema": "/v2/schemas/member",
    })
}

/// Glance's schema of a membership (`/v2/schemas/member`, its "minimal" form: no
/// `additionalProperties`, no links).
pub fn member_schema() -> Value {
    json!({
        "name": "member",
        "properties": {
            "member_id": {
                "type": "string",
                "description": "An identifier for the image member (tenantId)",
            },
            "image_id": {
                "type": "string",
                "description": "An identifier for the image",
                "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
            },
            "created_at": {
                "type": "string",
                "description": "Date and time of image member creation",
            },
            "updated_at": {
                "type": "string",
                "description": "Date and time of last modification of image member",
            },
            "status": {
                "type": "string",
                "description": "The status of this image member",
                "enum": ["pending", "accepted", "rejected"],
            },
            "schema": {"readOnly": true, "type": "string"},
        },
    })
}

/// Glance's schema of a member list (`/v2/schemas/members`: its "minimal" collection
/// form, without paging links).
pub fn members_schema() -> Value {
    json!({
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    })
}

/// Glance's schema of a collection of `item` (`/v2/schemas/images`, `.../members`).
pub fn collection_schema(name: &str, item: Value) -> Value {
    json!({
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}
