//! The server actions that make images: `createImage`, `createBackup`, and the image
//! `shelve` makes (`<name>-shelved`).
//!
//! Invariants:
//! - The image record is made here, `queued`, with the request's id as its id (for
//!   shelve the compute agent finds it by the shelve operation's id, which is the same
//!   uuid), before the instance command; if the command is refused the record is
//!   deleted again (`crate::servers::action`), as Nova's `snapshot` cleans up.
//! - Its properties are Nova's `initialize_instance_snapshot_metadata`: the base
//!   image's inheritable properties, then `instance_uuid`, `user_id`, `image_type`,
//!   `base_image_ref`, then the request's `metadata` (and `backup_type`).

use std::collections::{BTreeMap, BTreeSet};

use domain::image::{ImageSpec, Visibility};
use domain::instance::{BackupRequest, Instance, InstanceCommand};
use domain::ImageId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::actions::{Action, ActionCx, Handover, Prepared};
use crate::body::{self, check_len, invalid};
use crate::error::ApiError;
use crate::microversion::Version;
use crate::parse;

/// Base image properties a snapshot does not inherit (Nova's
/// `NON_INHERITABLE_IMAGE_PROPERTIES` and namespaces).
const NON_INHERITABLE: &[&str] = &[
    "cache_in_nova",
    "bittorrent",
    "img_signature",
    "img_signature_hash_method",
    "img_signature_certificate_uuid",
    "img_signature_key_type",
    "img_encrypted",
    "img_encryption_format",
    "img_encryption_secret_uuid",
];

/// The image record a snapshot of `i` uploads into.
pub fn snapshot_spec(
    cx: &ActionCx<'_>,
    name: String,
    image_type: &str,
    extra: BTreeMap<String, String>,
    keep_formats: bool,
) -> ImageSpec {
    let i = cx.instance;
    let base = ImageId::parse(&i.spec.image_ref).and_then(|b| cx.views.image(&b));
    let mut properties: BTreeMap<String, String> = base
        .map(|b| b.spec.properties.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !NON_INHERITABLE.contains(&k.as_str()) && !k.starts_with("img_signature"))
        .collect();
    properties.insert("instance_uuid".into(), i.id().to_string());
    properties.insert("user_id".into(), cx.caller.user.clone());
    properties.insert("image_type".into(), image_type.into());
    if !i.spec.image_ref.is_empty() {
        properties.insert("base_image_ref".into(), i.spec.image_ref.clone());
    }
    // An admin snapshotting another project's server shares the image with its owner.
    let visibility = if cx.caller.project != i.spec.project_id {
        properties.insert("instance_owner".into(), i.spec.project_id.clone());
        Visibility::Shared
    } else {
        Visibility::Private
    };
    properties.extend(extra);
    let fmt = |f: fn(&domain::image::ImageSpec) -> &Option<String>| {
        base.and_then(|b| f(&b.spec).clone())
            .filter(|_| keep_formats)
    };
    ImageSpec {
        id: ImageId(cx.caller.info.id),
        name: Some(name),
        owner: cx.caller.project.clone(),
        visibility,
        protected: false,
        disk_format: fmt(|s| &s.disk_format),
        container_format: fmt(|s| &s.container_format),
        min_disk: base
            .map_or(0, |b| b.spec.min_disk)
            .max(i.flavor.spec.disk_gb),
        min_ram: base.map_or(0, |b| b.spec.min_ram),
        tags: BTreeSet::new(),
        properties,
    }
}

/// Nova's `normalize_name` for an image name: surrounding whitespace is refused by the
/// schema (`name` is 1-255 characters, not only spaces).
fn check_name(name: &str) -> Result<(), ApiError> {
    check_len("name", name, 1, 255)?;
    if name.trim().is_empty() || name.trim() != name {
        return Err(invalid(
            "name",
            &Value::String(name.into()),
            "is not a valid name (leading or trailing whitespace)",
        ));
    }
    Ok(())
}

/// Before 2.39 the metadata counts against the `metadata_items` quota (403).
fn check_quota(cx: &ActionCx<'_>, metadata: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if cx.caller.version().at_least(39) {
        return Ok(());
    }
    let limit = cx
        .limits
        .get(&domain::quota::Resource::MetadataItems)
        .copied()
        .unwrap_or(domain::quota::Resource::MetadataItems.nova_default());
    if limit >= 0 && metadata.len() as i64 > limit {
        return Err(ApiError::forbidden(format!(
            "Maximum number of metadata items exceeds {limit}"
        )));
    }
    Ok(())
}

fn handover(image: ImageId, location: bool) -> Handover {
    let mut h = Handover::new();
    h.insert("image_id".into(), Value::String(image.to_string()));
    h.insert("location".into(), Value::Bool(location));
    h
}

/// `createImage`: `{"name", "metadata"?}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateImage {
    name: String,
    #[serde(default)]
    metadata: Option<Value>,
}

impl Action for CreateImage {
    fn decode(name: &str, arg: &Value, _version: Version) -> Result<Self, ApiError> {
        let c: CreateImage = body::from_value(name, arg)?;
        check_name(&c.name)?;
        if let Some(m) = &c.metadata {
            parse::metadata_items("metadata", m)?;
        }
        Ok(c)
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let metadata = self
            .metadata
            .as_ref()
            .map(|m| parse::metadata_items("metadata", m))
            .transpose()?
            .unwrap_or_default();
        check_quota(cx, &metadata)?;
        let spec = snapshot_spec(cx, self.name, "snapshot", metadata, false);
        let id = spec.id;
        Ok(Prepared {
            command: Some(InstanceCommand::Snapshot {
                image: id,
                backup: None,
            }),
            handover: handover(id, true),
            resize_quota: None,
            restore_quota: None,
            image: Some(spec),
            network: None,
        })
    }
}

/// `createBackup`: `{"name", "backup_type", "rotation", "metadata"?}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    name: String,
    backup_type: String,
    rotation: Value,
    #[serde(default)]
    metadata: Option<Value>,
}

impl Action for CreateBackup {
    fn decode(name: &str, arg: &Value, _version: Version) -> Result<Self, ApiError> {
        let c: CreateBackup = body::from_value(name, arg)?;
        check_name(&c.name)?;
        if let Some(m) = &c.metadata {
            parse::metadata_items("metadata", m)?;
        }
        rotation(&c.rotation)?;
        Ok(c)
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        if cx.instance.spec.boot_from_volume {
            return Err(ApiError::bad_request(
                "Backup is not supported for volume-backed instances.",
            ));
        }
        let rotation = rotation(&self.rotation)?;
        let mut metadata = self
            .metadata
            .as_ref()
            .map(|m| parse::metadata_items("metadata", m))
            .transpose()?
            .unwrap_or_default();
        check_quota(cx, &metadata)?;
        metadata.insert("backup_type".into(), self.backup_type.clone());
        let spec = snapshot_spec(cx, self.name, "backup", metadata, true);
        let id = spec.id;
        Ok(Prepared {
            command: Some(InstanceCommand::Snapshot {
                image: id,
                backup: Some(BackupRequest {
                    backup_type: self.backup_type,
                    rotation,
                }),
            }),
            handover: handover(id, rotation > 0),
            resize_quota: None,
            restore_quota: None,
            image: Some(spec),
            network: None,
        })
    }
}

/// Nova's `rotation`: an integer, or a string of one, at least 0.
fn rotation(v: &Value) -> Result<u32, ApiError> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= 0 => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
        Some(n) => Err(invalid(
            "rotation",
            v,
            &format!("{n} is less than the minimum of 0"),
        )),
        None => Err(invalid(
            "rotation",
            v,
            &format!("{v} is not of type 'integer', 'string'"),
        )),
    }
}

/// `shelve`: the argument is ignored (Nova's samples send `null`); a server booted from
/// an image gets its `<name>-shelved` snapshot record.
#[derive(Debug, Clone, Default)]
pub struct Shelve;

impl<'de> Deserialize<'de> for Shelve {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Shelve)
    }
}

impl Action for Shelve {
    fn decode(_: &str, _: &Value, _: Version) -> Result<Self, ApiError> {
        Ok(Shelve)
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let i: &Instance = cx.instance;
        let image = (!i.spec.boot_from_volume).then(|| {
            snapshot_spec(
                cx,
                format!("{}-shelved", i.spec.name),
                "snapshot",
                BTreeMap::new(),
                false,
            )
        });
        Ok(Prepared {
            command: Some(InstanceCommand::Shelve),
            handover: Handover::new(),
            resize_quota: None,
            restore_quota: None,
            image,
            network: None,
        })
    }
}

/// createImage / createBackup's answer: 202; from 2.45 `{"image_id"}`, before it the
/// image's `Location` (createBackup only when `rotation` > 0, as Nova).
pub fn reply(version: Version, base: &str, handover: &Handover) -> axum::response::Response {
    use axum::response::IntoResponse;
    let id = handover
        .get("image_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if version.at_least(45) {
        return (
            axum::http::StatusCode::ACCEPTED,
            axum::Json(json!({ "image_id": id })),
        )
            .into_response();
    }
    let mut resp = axum::http::StatusCode::ACCEPTED.into_response();
    if handover.get("location").and_then(Value::as_bool) == Some(true) {
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
            "{}/v2.1/images/{id}",
            base.trim_end_matches('/')
        )) {
            resp.headers_mut().insert(axum::http::header::LOCATION, v);
        }
    }
    resp
}
