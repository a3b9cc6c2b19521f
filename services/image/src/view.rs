//! Glance-shaped JSON for images and the version document.

use domain::image::Image;
use serde_json::{json, Map, Value};

/// An image as Glance v2 shows it: its attributes, then custom properties at top level.
pub fn image(img: &Image) -> Value {
    let s = &img.spec;
    let id = s.id.to_string();
    let d = img.data.as_ref();
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
        "os_hidden": false,
        "checksum": d.map(|d| d.checksum.clone()),
        "os_hash_algo": d.map(|d| d.os_hash_algo.clone()),
        "os_hash_value": d.map(|d| d.os_hash_value.clone()),
        "size": d.map(|d| d.size),
        "virtual_size": Value::Null,
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
    Value::Object(m)
}

/// Glance's version list: v2.9 CURRENT, the older v2 minors SUPPORTED.
pub fn versions(base: &str) -> Value {
    let link = json!([{"rel": "self", "href": format!("{base}/v2/")}]);
    let mut out = vec![json!({"id": "v2.9", "status": "CURRENT", "links": link})];
    for minor in (0..9).rev() {
        out.push(json!({"id": format!("v2.{minor}"), "status": "SUPPORTED", "links": link}));
    }
    json!({ "versions": out })
}
