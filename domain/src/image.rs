//! The image aggregate (Glance v2 subset), `stratus.api.image.<uuid>` in the api stream.
//!
//! Only the image *record* lives in the log; the image data is a file kept by the image
//! service, and `image.upload_finished` is appended only once that file is durable.
//!
//! Invariants:
//! - Status follows Glance: `queued` (created, no data) -> `saving` (upload started)
//!   -> `active` (data durable, size and checksums recorded) ; `saving` -> `queued`
//!   when an upload fails while the service is alive; any -> `deleted` (a tombstone:
//!   the id is never reused). A deleted image refuses every command (404).
//! - An upload starts only from `queued`, with `disk_format` and `container_format`
//!   set; it finishes only from `saving`.
//! - Visibility: a `public` (or `community`) image is visible to every project; a
//!   `private` or `shared` one only to its owner's project and admins (others get a
//!   404, never a 403). Only admins may make an image public; only the owner's
//!   project or an admin may change or delete an image (others: 403 when they can see
//!   it). A protected image cannot be deleted.
//! - Custom properties and tags are 1..=255 printable characters (values up to
//!   65,535); the names of the image's own attributes are never custom properties.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Ctx, DomainError, ImageId, Timestamp};

/// Disk formats Glance accepts by default.
pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];

/// Container formats Glance accepts by default.
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

/// Attributes of the image itself: never custom properties.
pub const BUILTIN_ATTRIBUTES: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "owner",
    "created_at",
    "updated_at",
    "tags",
    "self",
    "file",
    "schema",
    "locations",
    "direct_url",
    "deleted",
    "deleted_at",
    "location",
];

/// Maximum number of tags on an image.
pub const MAX_TAGS: usize = 128;

/// Who may see an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Visibility {
    /// Every project.
    Public,
    /// Its owner's project (and admins).
    Private,
    /// Its owner's project (members lists are not implemented).
    Shared,
    /// Every project (not listed by default in Glance; listed here).
    Community,
}

impl Visibility {
    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
        }
    }

    /// Parses Glance's name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => Visibility::Public,
            "private" => Visibility::Private,
            "shared" => Visibility::Shared,
            "community" => Visibility::Community,
            _ => return None,
        })
    }
}

/// Glance image status (the subset Stratus produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageStatus {
    /// Created, no data yet.
    Queued,
    /// Data is being uploaded.
    Saving,
    /// Data stored: usable.
    Active,
    /// Deleted (tombstone).
    Deleted,
}

impl ImageStatus {
    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Queued => "queued",
            ImageStatus::Saving => "saving",
            ImageStatus::Active => "active",
            ImageStatus::Deleted => "deleted",
        }
    }
}

/// What an image is created with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// Id (given or generated).
    pub id: ImageId,
    /// Display name (not unique, may be absent).
    pub name: Option<String>,
    /// Owner project.
    pub owner: String,
    pub visibility: Visibility,
    /// Protected images cannot be deleted.
    pub protected: bool,
    /// Disk format (`qcow2`, `raw`, ...).
    pub disk_format: Option<String>,
    /// Container format (`bare`, ...).
    pub container_format: Option<String>,
    /// Minimum root disk in GiB a server needs.
    pub min_disk: u64,
    /// Minimum RAM in MiB a server needs.
    pub min_ram: u64,
    pub tags: BTreeSet<String>,
    /// Custom properties.
    pub properties: BTreeMap<String, String>,
}

/// The facts of stored image data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageData {
    /// Size in bytes.
    pub size: u64,
    /// MD5 of the data, hex (Glance's `checksum`).
    pub checksum: String,
    /// Hash algorithm of `os_hash_value` (`sha512`).
    pub os_hash_algo: String,
    /// Hex digest of the data with `os_hash_algo`.
    pub os_hash_value: String,
}

/// Current state of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Attributes (updated in place by `image.updated`).
    pub spec: ImageSpec,
    pub status: ImageStatus,
    /// Stored data, once active.
    pub data: Option<ImageData>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl Image {
    /// Whether the caller of `ctx` may see this image.
    pub fn visible_to(&self, ctx: &Ctx) -> bool {
        self.status != ImageStatus::Deleted
            && (ctx.is_admin
                || self.spec.owner == ctx.project_id
                || matches!(
                    self.spec.visibility,
                    Visibility::Public | Visibility::Community
                ))
    }

    /// Whether the caller may change it (owner's project or admin).
    pub fn writable_by(&self, ctx: &Ctx) -> bool {
        ctx.is_admin || self.spec.owner == ctx.project_id
    }
}

/// One change of a PATCH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ImageChange {
    /// Set or clear the name.
    Name(Option<String>),
    /// Change visibility.
    Visibility(Visibility),
    /// Change protection.
    Protected(bool),
    /// Minimum disk (GiB).
    MinDisk(u64),
    /// Minimum RAM (MiB).
    MinRam(u64),
    /// Disk format (only while queued).
    DiskFormat(Option<String>),
    /// Container format (only while queued).
    ContainerFormat(Option<String>),
    /// Replace all tags.
    Tags(BTreeSet<String>),
    /// Set a custom property (JSON patch `add`: adds or overwrites, as Glance's
    /// v2.1 patch media type does).
    AddProperty(String, String),
    /// Replace a custom property (`replace`: must exist).
    ReplaceProperty(String, String),
    /// Remove a custom property (must exist).
    RemoveProperty(String),
}

/// Commands on an image.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageCommand {
    /// Create the record (status queued).
    Create(ImageSpec),
    /// Begin an upload (queued -> saving).
    StartUpload,
    /// The data is durable (saving -> active).
    FinishUpload(ImageData),
    /// The upload failed (saving -> queued).
    AbortUpload,
    /// Apply changes (JSON patch), all or nothing.
    Update(Vec<ImageChange>),
    /// Delete.
    Delete,
}

/// Events of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ImageEvent {
    /// `image.created`
    Created { spec: ImageSpec, at: Timestamp },
    /// `image.upload_started`
    UploadStarted { at: Timestamp },
    /// `image.upload_finished`
    UploadFinished {
        /// Size and checksums of the durable data.
        data: ImageData,
        at: Timestamp,
    },
    /// `image.upload_aborted`
    UploadAborted { at: Timestamp },
    /// `image.updated`
    Updated {
        /// The changes, in order.
        changes: Vec<ImageChange>,
        at: Timestamp,
    },
    /// `image.deleted`
    Deleted { at: Timestamp },
}

fn printable(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

fn check_name(name: &Option<String>) -> Result<(), DomainError> {
    match name {
        Some(n) if n.chars().count() > 255 || !printable(n) => Err(DomainError::BadRequest(
            "Invalid value for 'name': at most 255 printable characters.".into(),
        )),
        _ => Ok(()),
    }
}

fn check_format(kind: &str, v: &Option<String>, allowed: &[&str]) -> Result<(), DomainError> {
    match v {
        Some(f) if !allowed.contains(&f.as_str()) => Err(DomainError::BadRequest(format!(
            "Invalid value '{f}' for parameter '{kind}': must be one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn check_tags(tags: &BTreeSet<String>) -> Result<(), DomainError> {
    if tags.len() > MAX_TAGS {
        return Err(DomainError::BadRequest(format!(
            "Maximum number of tags is {MAX_TAGS}."
        )));
    }
    for t in tags {
        if t.is_empty() || t.chars().count() > 255 || !printable(t) {
            return Err(DomainError::BadRequest(format!("Invalid tag {t:?}.")));
        }
    }
    Ok(())
}

fn check_property(key: &str, value: &str) -> Result<(), DomainError> {
    if BUILTIN_ATTRIBUTES.contains(&key) {
        return Err(DomainError::Forbidden(format!(
            "Attribute '{key}' is reserved."
        )));
    }
    if key.is_empty() || key.chars().count() > 255 || !printable(key) {
        return Err(DomainError::BadRequest(format!(
            "Invalid property name {key:?}."
        )));
    }
    if value.len() > 65535 {
        return Err(DomainError::BadRequest(format!(
            "Value of property {key} is too long."
        )));
    }
    Ok(())
}

fn check_publicize(ctx: &Ctx, v: Visibility) -> Result<(), DomainError> {
    if v == Visibility::Public && !ctx.is_admin {
        return Err(DomainError::Forbidden(
            "You are not authorized to complete publicize_image action.".into(),
        ));
    }
    Ok(())
}

fn not_found(id: &ImageId) -> DomainError {
    DomainError::NotFound {
        kind: "Image",
        id: id.to_string(),
    }
}

/// Decides an image command for the caller of `ctx`. `id` names the image (the state
/// may be None).
pub fn decide(
    id: &ImageId,
    state: Option<&Image>,
    cmd: ImageCommand,
    ctx: &Ctx,
) -> Result<Vec<ImageEvent>, DomainError> {
    let at = ctx.now;
    if let ImageCommand::Create(spec) = cmd {
        if state.is_some() {
            // Deleted ids are never reused either.
            return Err(DomainError::Conflict(format!(
                "Image with identifier {id} already exists!"
            )));
        }
        check_name(&spec.name)?;
        check_format("disk_format", &spec.disk_format, DISK_FORMATS)?;
        check_format(
            "container_format",
            &spec.container_format,
            CONTAINER_FORMATS,
        )?;
        check_tags(&spec.tags)?;
        for (k, v) in &spec.properties {
            check_property(k, v)?;
        }
        check_publicize(ctx, spec.visibility)?;
        return Ok(vec![ImageEvent::Created { spec, at }]);
    }
    let img = state
        .filter(|i| i.visible_to(ctx))
        .ok_or_else(|| not_found(id))?;
    if !img.writable_by(ctx) {
        return Err(DomainError::Forbidden(format!(
            "You are not permitted to modify image {id}."
        )));
    }
    match cmd {
        ImageCommand::Create(_) => unreachable!("handled above"),
        ImageCommand::StartUpload => {
            if img.status != ImageStatus::Queued {
                return Err(DomainError::Conflict(format!(
                    "Image status transition from {} to saving is not allowed",
                    img.status.as_str()
                )));
            }
            if img.spec.disk_format.is_none() || img.spec.container_format.is_none() {
                return Err(DomainError::BadRequest(
                    "Properties disk_format, container_format must be set prior to saving data."
                        .into(),
                ));
            }
            Ok(vec![ImageEvent::UploadStarted { at }])
        }
        ImageCommand::FinishUpload(data) => {
            if img.status != ImageStatus::Saving {
                return Err(DomainError::Conflict(format!(
                    "Image status transition from {} to active is not allowed",
                    img.status.as_str()
                )));
            }
            Ok(vec![ImageEvent::UploadFinished { data, at }])
        }
        ImageCommand::AbortUpload => {
            if img.status != ImageStatus::Saving {
                return Ok(vec![]);
            }
            Ok(vec![ImageEvent::UploadAborted { at }])
        }
        ImageCommand::Update(changes) => {
            // Validate against the state as it evolves through the changes, so that
            // `add` then `remove` of one property in one patch behaves as in Glance.
            let mut next = img.clone();
            for ch in &changes {
                match ch {
                    ImageChange::Name(n) => check_name(n)?,
                    ImageChange::Visibility(v) => check_publicize(ctx, *v)?,
                    ImageChange::Protected(_)
                    | ImageChange::MinDisk(_)
                    | ImageChange::MinRam(_) => {}
                    ImageChange::DiskFormat(f) | ImageChange::ContainerFormat(f) => {
                        let (attr, allowed) = match ch {
                            ImageChange::DiskFormat(_) => ("disk_format", DISK_FORMATS),
                            _ => ("container_format", CONTAINER_FORMATS),
                        };
                        if next.status != ImageStatus::Queued {
                            return Err(DomainError::Forbidden(format!(
                                "Attribute {attr} can be only replaced for a queued image."
                            )));
                        }
                        check_format(attr, f, allowed)?;
                    }
                    ImageChange::Tags(t) => check_tags(t)?,
                    ImageChange::AddProperty(k, v) => check_property(k, v)?,
                    ImageChange::ReplaceProperty(k, v) => {
                        check_property(k, v)?;
                        if !next.spec.properties.contains_key(k) {
                            return Err(DomainError::Conflict(format!(
                                "Property {k} does not exist."
                            )));
                        }
                    }
                    ImageChange::RemoveProperty(k) => {
                        check_property(k, "")?;
                        if !next.spec.properties.contains_key(k) {
                            return Err(DomainError::Conflict(format!(
                                "Property {k} does not exist."
                            )));
                        }
                    }
                }
                apply_change(&mut next, ch);
            }
            if changes.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![ImageEvent::Updated { changes, at }])
        }
        ImageCommand::Delete => {
            if img.spec.protected {
                return Err(DomainError::Forbidden(format!(
                    "Image {id} is protected and cannot be deleted."
                )));
            }
            Ok(vec![ImageEvent::Deleted { at }])
        }
    }
}

fn apply_change(img: &mut Image, ch: &ImageChange) {
    let s = &mut img.spec;
    match ch {
        ImageChange::Name(n) => s.name = n.clone(),
        ImageChange::Visibility(v) => s.visibility = *v,
        ImageChange::Protected(p) => s.protected = *p,
        ImageChange::MinDisk(n) => s.min_disk = *n,
        ImageChange::MinRam(n) => s.min_ram = *n,
        ImageChange::DiskFormat(f) => s.disk_format = f.clone(),
        ImageChange::ContainerFormat(f) => s.container_format = f.clone(),
        ImageChange::Tags(t) => s.tags = t.clone(),
        ImageChange::AddProperty(k, v) | ImageChange::ReplaceProperty(k, v) => {
            s.properties.insert(k.clone(), v.clone());
        }
        ImageChange::RemoveProperty(k) => {
            s.properties.remove(k);
        }
    }
}

/// Applies an image event. Total: never fails (events on a missing image are ignored).
pub fn evolve(state: Option<Image>, ev: &ImageEvent) -> Option<Image> {
    match ev {
        ImageEvent::Created { spec, at } => Some(state.unwrap_or(Image {
            spec: spec.clone(),
            status: ImageStatus::Queued,
            data: None,
            created_at: *at,
            updated_at: *at,
        })),
        ImageEvent::UploadStarted { at } => state.map(|mut i| {
            i.status = ImageStatus::Saving;
            i.updated_at = *at;
            i
        }),
        ImageEvent::UploadFinished { data, at } => state.map(|mut i| {
            i.status = ImageStatus::Active;
            i.data = Some(data.clone());
            i.updated_at = *at;
            i
        }),
        ImageEvent::UploadAborted { at } => state.map(|mut i| {
            i.status = ImageStatus::Queued;
            i.updated_at = *at;
            i
        }),
        ImageEvent::Updated { changes, at } => state.map(|mut i| {
            for ch in changes {
                apply_change(&mut i, ch);
            }
            i.updated_at = *at;
            i
        }),
        ImageEvent::Deleted { at } => state.map(|mut i| {
            i.status = ImageStatus::Deleted;
            i.updated_at = *at;
            i
        }),
    }
}
