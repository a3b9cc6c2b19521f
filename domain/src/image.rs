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
//!   `active` <-> `deactivated` by the deactivate / reactivate actions (owner or admin).
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

/// The container format of data an import converted (Glance's `image_conversion`
/// plugin sets `bare`).
pub const CONVERTED_CONTAINER: &str = "bare";

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

/// Maximum number of members of an image (Glance's `image_member_quota`).
pub const MAX_MEMBERS: usize = 128;

/// Where a project stands on an image shared with it (Glance's member status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Shared, not yet answered: the image is visible but not listed by default.
    Pending,
    /// Accepted: listed with the member's own images.
    Accepted,
    /// Rejected: visible by id, listed only when asked for.
    Rejected,
}

impl MemberStatus {
    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Rejected => "rejected",
        }
    }

    /// Parses Glance's name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => MemberStatus::Pending,
            "accepted" => MemberStatus::Accepted,
            "rejected" => MemberStatus::Rejected,
            _ => return None,
        })
    }
}

/// One project an image is shared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub status: MemberStatus,
    /// When the image was shared with the project.
    pub created_at: Timestamp,
    /// Last status change.
    pub updated_at: Timestamp,
}

/// Who may see an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Visibility {
    /// Every project.
    Public,
    /// Its owner's project (and admins).
    Private,
    /// Its owner's project and the projects it is shared with (its members).
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
    /// Active data an admin or the owner took out of use (`POST .../actions/deactivate`):
    /// visible, not bootable, its data downloadable by admins only. (Appended: older
    /// stored rows keep decoding.)
    Deactivated,
    /// Data staged for a `glance-direct` import (`PUT .../stage`), not yet imported.
    Uploading,
    /// An import task is moving data into the store (`POST .../import`).
    Importing,
}

impl ImageStatus {
    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Queued => "queued",
            ImageStatus::Saving => "saving",
            ImageStatus::Active => "active",
            ImageStatus::Deleted => "deleted",
            ImageStatus::Deactivated => "deactivated",
            ImageStatus::Uploading => "uploading",
            ImageStatus::Importing => "importing",
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
    /// Size of the disk the data describes, when the upload's format inspection found
    /// it (`image.virtual_size_recorded`); Glance's `virtual_size`.
    pub virtual_size: Option<u64>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// `os_hidden`: left out of lists unless asked for (`image.updated`).
    pub hidden: bool,
    /// Projects the image is shared with, by project id (`image.member_*`). Kept when
    /// the visibility changes away from `shared` (then they grant nothing), as Glance.
    pub members: BTreeMap<String, Member>,
    /// Size of the data staged for a `glance-direct` import (`image.stage_finished`),
    /// until the import consumes it or fails.
    pub staged: Option<u64>,
    /// The stores holding the data, as imports and copies recorded them
    /// (`image.import_finished`, `image.store_removed`). Empty for data that came by
    /// `PUT .../file` (or a snapshot): it is in the default store.
    pub stores: BTreeSet<String>,
    /// Where the data is outside the stores (Glance's `locations` that a client set:
    /// `image.location_added`, `image.locations_replaced`, `image.location_removed`,
    /// `image.location_import_started`), in order. Shown after the store locations.
    pub locations: Vec<ImageLocation>,
    /// Size and hashes of the data at [`Image::locations`], as far as they are known
    /// (an image with stored data has them in [`Image::data`]).
    pub location_data: LocationData,
}

/// One location of an image's data outside the stores: an `http(s)` URL of Glance's
/// read-only http store, and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLocation {
    /// The URL (at most 255 characters, Glance's schema).
    pub url: String,
    /// The metadata, a JSON object as text (the log's encoding has no JSON values).
    pub metadata: String,
}

/// What is known of the data at an image's locations (each None until known): the
/// size from the store (an HTTP HEAD), the hashes from the client's validation data or
/// from hashing the data (`do_secure_hash`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationData {
    pub size: Option<u64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
}

/// Glance's `validation_data` of a location: hashes the client vouches for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationData {
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
}

impl ValidationData {
    /// Nothing given.
    pub fn is_empty(&self) -> bool {
        self.checksum.is_none() && self.os_hash_algo.is_none() && self.os_hash_value.is_none()
    }

    fn entries(&self) -> [(&'static str, &Option<String>); 3] {
        [
            ("checksum", &self.checksum),
            ("os_hash_algo", &self.os_hash_algo),
            ("os_hash_value", &self.os_hash_value),
        ]
    }
}

/// A location a patch brings, with what the image service found at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLocation {
    pub location: ImageLocation,
    /// The data's size as the store reports it; None when the URL is no valid
    /// location (unknown scheme, not found, empty): Glance's `Invalid location`.
    pub size: Option<u64>,
    pub validation: ValidationData,
}

/// A JSON-patch operation on `/locations` (Glance's `show_multiple_locations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationChange {
    /// `add /locations/<pos>` (`pos`: an index or `-`, as in the path).
    Add { pos: String, new: NewLocation },
    /// `remove /locations/<pos>`.
    Remove { pos: String },
    /// `replace /locations` with the client's locations other than the store ones;
    /// `stores_intact`: every store location's URL was in the value too.
    Replace {
        locations: Vec<NewLocation>,
        stores_intact: bool,
    },
}

/// One operation of a JSON patch: an attribute change or a location change.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchStep {
    Change(ImageChange),
    Location(LocationChange),
}

/// The hashing algorithm of `os_hash_value` (Glance's `hashing_algorithm` default).
pub const HASHING_ALGORITHM: &str = "sha512";

/// Digest sizes in bytes of the algorithms Glance's location API accepts.
pub fn digest_size(algo: &str) -> Option<usize> {
    Some(match algo {
        "md5" => 16,
        "sha1" => 20,
        "sha256" => 32,
        "sha512" => 64,
        _ => return None,
    })
}

impl Image {
    /// Whether the caller of `ctx` may see this image: admins, the owner's project,
    /// everyone for public and community images, and for a shared image its members
    /// whatever their status (Glance's `is_image_visible`: a pending member may show
    /// the image it is asked to accept; lists apply the member status).
    pub fn visible_to(&self, ctx: &Ctx) -> bool {
        self.status != ImageStatus::Deleted
            && (ctx.is_admin
                || self.spec.owner == ctx.project_id
                || matches!(
                    self.spec.visibility,
                    Visibility::Public | Visibility::Community
                )
                || self.member_status(&ctx.project_id).is_some())
    }

    /// The status of `project`'s membership when the image is shared (a member of an
    /// image that is no longer `shared` is no member).
    pub fn member_status(&self, project: &str) -> Option<MemberStatus> {
        if self.spec.visibility != Visibility::Shared {
            return None;
        }
        self.members.get(project).map(|m| m.status)
    }

    /// Whether the caller may change it (owner's project or admin).
    pub fn writable_by(&self, ctx: &Ctx) -> bool {
        ctx.is_admin || self.spec.owner == ctx.project_id
    }

    /// The import task holding the image's import lock (`os_glance_import_task`).
    pub fn import_task(&self) -> Option<&str> {
        self.spec.properties.get(IMPORT_TASK).map(String::as_str)
    }

    /// How many locations the stores give the image (one per store holding its data;
    /// shown before [`Image::locations`]).
    pub fn store_locations(&self) -> usize {
        if self.data.is_none() {
            0
        } else {
            self.stores.len().max(1)
        }
    }

    /// Size and hashes of the image's data: the stored data's, else what is known of
    /// the data at its locations.
    pub fn data_facts(&self) -> LocationData {
        match &self.data {
            Some(d) => LocationData {
                size: Some(d.size),
                checksum: Some(d.checksum.clone()),
                os_hash_algo: Some(d.os_hash_algo.clone()),
                os_hash_value: Some(d.os_hash_value.clone()),
            },
            None => self.location_data.clone(),
        }
    }
}

/// Glance's import lock: the id of the task importing the image.
pub const IMPORT_TASK: &str = "os_glance_import_task";
/// Glance's list of stores an import is still writing to (comma-separated).
pub const IMPORTING_TO_STORES: &str = "os_glance_importing_to_stores";
/// Glance's list of stores an import failed to write to (comma-separated).
pub const FAILED_IMPORT: &str = "os_glance_failed_import";
/// Glance's reserved property namespace: only the service sets such properties.
pub const RESERVED_NAMESPACE: &str = "os_glance";

/// The import methods Stratus implements, as Glance names them (the choices of its
/// `enabled_import_methods`); which are offered (`/v2/info/import`) is configuration.
pub const IMPORT_METHODS: &[&str] = &[
    "glance-direct",
    "web-download",
    "copy-image",
    "glance-download",
];

/// What an import is started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportStart {
    /// The task doing it (`os_glance_import_task`).
    pub task: String,
    /// `glance-direct`, `web-download` or `copy-image`.
    pub method: String,
    /// The stores it writes to.
    pub stores: Vec<String>,
}

/// Adds or removes `stores` from the comma-separated list property `key` (kept even
/// when empty, as Glance keeps it).
fn edit_store_list(img: &mut Image, key: &str, stores: &[String], add: bool) {
    let mut list: Vec<String> = img
        .spec
        .properties
        .get(key)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for s in stores {
        list.retain(|x| x != s);
        if add {
            list.push(s.clone());
        }
    }
    img.spec.properties.insert(key.to_string(), list.join(","));
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
    /// `os_hidden`. (Variants are appended: older `image.updated` payloads keep
    /// decoding.)
    Hidden(bool),
    /// Give the image to another project (admins only, as Glance).
    Owner(String),
}

/// Commands on an image.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageCommand {
    /// Create the record (status queued).
    Create(ImageSpec),
    /// Create the record and apply changes the spec does not carry (`os_hidden`), in
    /// one append.
    CreateWith(ImageSpec, Vec<ImageChange>),
    /// Add a tag (present already: nothing to do).
    AddTag(String),
    /// Remove a tag (must be present).
    RemoveTag(String),
    /// Share the image with a project (`pending`).
    AddMember(String),
    /// A member answers (`accepted`, `rejected`, or back to `pending`).
    SetMemberStatus(String, MemberStatus),
    /// Stop sharing with a project.
    RemoveMember(String),
    /// Begin an upload (queued -> saving).
    StartUpload,
    /// The data is durable (saving -> active).
    FinishUpload(ImageData),
    /// The data is durable and its format inspection found its virtual size
    /// (saving -> active, recording the size first).
    FinishInspectedUpload {
        /// Size and checksums.
        data: ImageData,
        /// The virtual size found (None: unknown).
        virtual_size: Option<u64>,
    },
    /// The upload failed (saving -> queued).
    AbortUpload,
    /// Apply changes (JSON patch), all or nothing.
    Update(Vec<ImageChange>),
    /// Delete.
    Delete,
    /// Take active data out of use (active -> deactivated; deactivated: nothing to do).
    Deactivate,
    /// Put it back (deactivated -> active; active: nothing to do).
    Reactivate,
    /// Begin staging data for `glance-direct` (queued -> uploading).
    StartStage,
    /// The staged data is durable (uploading, with its size).
    FinishStage(u64),
    /// Staging failed (uploading without staged data -> queued; otherwise nothing).
    AbortStage,
    /// Begin an import (glance-direct: from uploading with staged data; web-download:
    /// from queued) -> importing, taking the import lock.
    StartImport(ImportStart),
    /// The task's data is durable in `stores` (-> active; they leave the importing
    /// list; the lock is dropped when none is left).
    FinishImport {
        task: String,
        data: ImageData,
        /// The virtual size the format inspection found (recorded first when known).
        virtual_size: Option<u64>,
        stores: Vec<String>,
        /// The disk format the import converted the data to (Glance's
        /// `image_conversion` plugin; the container becomes `bare`): recorded first when
        /// the image does not have it yet.
        converted: Option<String>,
        /// Metadata the import brings (`glance-download`: the source image's formats
        /// and the properties Glance copies), recorded first (`image.updated`) so that
        /// a failed import leaves the image as it was.
        metadata: Vec<ImageChange>,
    },
    /// The task failed for `stores` (None: every store it still imports to): they move
    /// to the failed list; when none is left importing the lock is dropped, and an
    /// image without data goes back to queued. Nothing to do when `task` no longer
    /// holds the lock.
    FailImport {
        task: String,
        stores: Option<Vec<String>>,
    },
    /// Remove the data from one store (`DELETE /v2/stores/{store}/{id}`); `default` is
    /// the store of data that came by upload.
    RemoveStore { store: String, default: String },
    /// A JSON patch with location operations, all or nothing, in order (a patch
    /// without them is an [`ImageCommand::Update`]).
    Patch(Vec<PatchStep>),
    /// `POST /v2/images/{id}/locations` (Images API 2.17): a queued image gets its
    /// location; task `task` takes the import lock. `hashing`: the service hashes
    /// the data (`do_secure_hash`), with `validation` to check it against when given.
    StartLocationImport {
        task: String,
        location: ImageLocation,
        /// The data's size as the store reports it (None: unknown).
        size: Option<u64>,
        validation: ValidationData,
        hashing: bool,
    },
    /// The location import `task` ended: `hashes` are what hashing found (None: no
    /// hashing or it failed), `ok` whether it succeeded. A failed import of a
    /// location with validation data sends the image back to `queued` (the http
    /// store's location stays, as Glance). Nothing to do when `task` holds no lock.
    EndLocationImport {
        task: String,
        hashes: Option<ValidationData>,
        ok: bool,
    },
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
    /// `image.tag_added`
    TagAdded { tag: String, at: Timestamp },
    /// `image.tag_removed`
    TagRemoved { tag: String, at: Timestamp },
    /// `image.member_added` (status `pending`)
    MemberAdded { member: String, at: Timestamp },
    /// `image.member_updated`
    MemberUpdated {
        member: String,
        status: MemberStatus,
        at: Timestamp,
    },
    /// `image.member_removed`
    MemberRemoved { member: String, at: Timestamp },
    /// `image.deactivated`
    Deactivated { at: Timestamp },
    /// `image.reactivated`
    Reactivated { at: Timestamp },
    /// `image.stage_started` (queued -> uploading). (Appended: older payloads keep
    /// decoding.)
    StageStarted { at: Timestamp },
    /// `image.stage_finished`: the staged data is durable.
    StageFinished { size: u64, at: Timestamp },
    /// `image.stage_aborted` (uploading -> queued).
    StageAborted { at: Timestamp },
    /// `image.import_started` (-> importing; the lock and store lists set).
    ImportStarted { import: ImportStart, at: Timestamp },
    /// `image.import_finished` (-> active; the stores leave the importing list).
    ImportFinished {
        task: String,
        data: ImageData,
        stores: Vec<String>,
        at: Timestamp,
    },
    /// `image.import_failed` (-> queued; the stores move to the failed list).
    ImportFailed {
        task: String,
        stores: Vec<String>,
        at: Timestamp,
    },
    /// `image.store_removed`: the data left one store (`stores` is what remains).
    StoreRemoved {
        store: String,
        stores: Vec<String>,
        at: Timestamp,
    },
    /// `image.virtual_size_recorded`: the upload's format inspection found the size of
    /// the disk the data describes (appended just before `image.upload_finished`).
    VirtualSizeRecorded { virtual_size: u64, at: Timestamp },
    /// `image.converted`: an import converted the data (Glance's `image_conversion`
    /// plugin) to `disk_format` in a `container_format` container (appended just
    /// before the `image.import_finished` that stores it).
    Converted {
        disk_format: String,
        container_format: String,
        at: Timestamp,
    },
    /// `image.location_added`: a location at `index` of [`Image::locations`], with
    /// the image's resulting data facts and status (a queued image turns active).
    LocationAdded {
        location: ImageLocation,
        index: u64,
        data: LocationData,
        status: ImageStatus,
        at: Timestamp,
    },
    /// `image.location_removed`: the location at `index` of [`Image::locations`].
    LocationRemoved { index: u64, at: Timestamp },
    /// `image.locations_replaced`: the locations (same URLs with new metadata, or the
    /// first ones of an image that had none), data facts and status.
    LocationsReplaced {
        locations: Vec<ImageLocation>,
        data: LocationData,
        status: ImageStatus,
        at: Timestamp,
    },
    /// `image.location_import_started`: the 2.17 location API appended `location`;
    /// `task` holds the import lock; data facts and status as they now are
    /// (`importing` while hashing against validation data, else `active`).
    LocationImportStarted {
        task: String,
        location: ImageLocation,
        data: LocationData,
        status: ImageStatus,
        at: Timestamp,
    },
    /// `image.location_import_ended`: `task` drops the lock; data facts and status.
    LocationImportEnded {
        task: String,
        data: LocationData,
        status: ImageStatus,
        at: Timestamp,
    },
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
    if BUILTIN_ATTRIBUTES.contains(&key) || key.starts_with(RESERVED_NAMESPACE) {
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
    let (spec, extra) = match cmd {
        ImageCommand::Create(spec) => (spec, Vec::new()),
        ImageCommand::CreateWith(spec, extra) => (spec, extra),
        cmd => return decide_existing(id, state, cmd, ctx),
    };
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
    if spec.owner != ctx.project_id && !ctx.is_admin {
        // Glance's `add_image` rule: `project_id:%(owner)s` unless admin.
        return Err(DomainError::Forbidden(
            "You are not authorized to complete add_image action.".into(),
        ));
    }
    if spec.owner.is_empty() || spec.owner.chars().count() > 255 {
        return Err(DomainError::BadRequest(
            "Invalid value for 'owner': 1 to 255 characters.".into(),
        ));
    }
    check_publicize(ctx, spec.visibility)?;
    let mut out = vec![ImageEvent::Created {
        spec: spec.clone(),
        at,
    }];
    if !extra.is_empty() {
        // Decided on the image as just created, by its owner: the same checks as a
        // PATCH right after the create.
        let created = evolve(None, &out[0]).expect("created");
        out.extend(decide_existing(
            id,
            Some(&created),
            ImageCommand::Update(extra),
            ctx,
        )?);
    }
    Ok(out)
}

fn member_not_found(id: &ImageId, member: &str) -> DomainError {
    DomainError::NotFound {
        kind: "ImageMember",
        id: format!("{member} not found in the member list of the image {id}."),
    }
}

/// A command on an image that exists (everything but a create).
fn decide_existing(
    id: &ImageId,
    state: Option<&Image>,
    cmd: ImageCommand,
    ctx: &Ctx,
) -> Result<Vec<ImageEvent>, DomainError> {
    let at = ctx.now;
    let img = state
        .filter(|i| i.visible_to(ctx))
        .ok_or_else(|| not_found(id))?;
    // Members: Glance checks that the image is shared, then looks the member up
    // (a member sees only its own membership), then the policy.
    let only_shared = |what: &str| -> Result<(), DomainError> {
        if img.spec.visibility != Visibility::Shared {
            return Err(DomainError::Forbidden(format!(
                "Not allowed to {what} members for image {id}."
            )));
        }
        Ok(())
    };
    let lookup = |member: &str| -> Result<&Member, DomainError> {
        img.members
            .get(member)
            .filter(|_| img.writable_by(ctx) || member == ctx.project_id)
            .ok_or_else(|| member_not_found(id, member))
    };
    match &cmd {
        ImageCommand::AddMember(member) => {
            only_shared("create")?;
            if !img.writable_by(ctx) {
                return Err(DomainError::Forbidden(format!(
                    "Not allowed to create members for image {id}."
                )));
            }
            if img.members.contains_key(member) {
                return Err(DomainError::Conflict(format!(
                    "Member {member} is duplicated for image {id}"
                )));
            }
            if img.members.len() >= MAX_MEMBERS {
                return Err(DomainError::BadRequest(format!(
                    "Image member limit exceeded for image {id}: the limit is {MAX_MEMBERS}."
                )));
            }
            return Ok(vec![ImageEvent::MemberAdded {
                member: member.clone(),
                at,
            }]);
        }
        ImageCommand::SetMemberStatus(member, status) => {
            only_shared("update")?;
            lookup(member)?;
            if !(ctx.is_admin || *member == ctx.project_id) {
                return Err(DomainError::Forbidden(format!(
                    "Not allowed to update members for image {id}."
                )));
            }
            // Glance saves (and bumps updated_at) even when nothing changes.
            return Ok(vec![ImageEvent::MemberUpdated {
                member: member.clone(),
                status: *status,
                at,
            }]);
        }
        ImageCommand::RemoveMember(member) => {
            only_shared("delete")?;
            lookup(member)?;
            if !img.writable_by(ctx) {
                return Err(DomainError::Forbidden(format!(
                    "Not allowed to delete members for image {id}."
                )));
            }
            return Ok(vec![ImageEvent::MemberRemoved {
                member: member.clone(),
                at,
            }]);
        }
        ImageCommand::AddTag(_) | ImageCommand::RemoveTag(_) if !img.writable_by(ctx) => {
            let what = if matches!(cmd, ImageCommand::AddTag(_)) {
                "update"
            } else {
                "delete"
            };
            return Err(DomainError::Forbidden(format!(
                "Not allowed to {what} tags for image {id}."
            )));
        }
        _ => {}
    }
    if !img.writable_by(ctx) {
        return Err(DomainError::Forbidden(format!(
            "You are not permitted to modify image {id}."
        )));
    }
    match cmd {
        ImageCommand::Create(_)
        | ImageCommand::CreateWith(..)
        | ImageCommand::AddMember(_)
        | ImageCommand::SetMemberStatus(..)
        | ImageCommand::RemoveMember(_) => unreachable!("handled above"),
        ImageCommand::AddTag(tag) => {
            check_tags(&BTreeSet::from([tag.clone()]))?;
            if img.spec.tags.contains(&tag) {
                return Ok(vec![]);
            }
            if img.spec.tags.len() >= MAX_TAGS {
                return Err(DomainError::BadRequest(format!(
                    "Image tag limit exceeded for image {id}: the limit is {MAX_TAGS}."
                )));
            }
            Ok(vec![ImageEvent::TagAdded { tag, at }])
        }
        ImageCommand::RemoveTag(tag) => {
            if !img.spec.tags.contains(&tag) {
                return Err(DomainError::NotFound {
                    kind: "ImageTag",
                    id: tag,
                });
            }
            Ok(vec![ImageEvent::TagRemoved { tag, at }])
        }
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
        ImageCommand::FinishInspectedUpload { data, virtual_size } => {
            if img.status != ImageStatus::Saving {
                return Err(DomainError::Conflict(format!(
                    "Image status transition from {} to active is not allowed",
                    img.status.as_str()
                )));
            }
            let mut out: Vec<ImageEvent> = virtual_size
                .map(|virtual_size| ImageEvent::VirtualSizeRecorded { virtual_size, at })
                .into_iter()
                .collect();
            out.push(ImageEvent::UploadFinished { data, at });
            Ok(out)
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
                check_change(&next, ch, ctx)?;
                apply_change(&mut next, ch);
            }
            if changes.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![ImageEvent::Updated { changes, at }])
        }
        ImageCommand::Patch(steps) => {
            // As an update, step by step on the evolving image; consecutive attribute
            // changes make one `image.updated`, each location change its own event.
            let mut next = img.clone();
            let mut out = Vec::new();
            let mut pending: Vec<ImageChange> = Vec::new();
            for step in steps {
                match step {
                    PatchStep::Change(ch) => {
                        check_change(&next, &ch, ctx)?;
                        apply_change(&mut next, &ch);
                        pending.push(ch);
                    }
                    PatchStep::Location(lc) => {
                        if !pending.is_empty() {
                            out.push(ImageEvent::Updated {
                                changes: std::mem::take(&mut pending),
                                at,
                            });
                        }
                        let ev = decide_location(&next, lc, ctx)?;
                        next = evolve(Some(next), &ev).expect("the image exists");
                        out.push(ev);
                    }
                }
            }
            if !pending.is_empty() {
                out.push(ImageEvent::Updated {
                    changes: pending,
                    at,
                });
            }
            Ok(out)
        }
        ImageCommand::StartLocationImport {
            task,
            location,
            size,
            validation,
            hashing,
        } => {
            if img.status != ImageStatus::Queued {
                return Err(DomainError::Conflict(format!(
                    "It's not allowed to add locations if image status is {}.",
                    img.status.as_str()
                )));
            }
            if img.import_task().is_some() {
                return Err(DomainError::Conflict(format!(
                    "New operation on image '{id}' is not permitted as prior operation is still in progress"
                )));
            }
            let mut data = img.data_facts();
            if data.size.is_none() {
                data.size = size;
            }
            let status = if hashing {
                data.os_hash_algo = Some(
                    validation
                        .os_hash_algo
                        .clone()
                        .unwrap_or_else(|| HASHING_ALGORITHM.into()),
                );
                if validation.is_empty() {
                    ImageStatus::Active
                } else {
                    ImageStatus::Importing
                }
            } else {
                // Without hashing the client's values are taken as they are.
                if validation.os_hash_value.is_some() {
                    data.os_hash_algo = validation.os_hash_algo.clone();
                    data.os_hash_value = validation.os_hash_value.clone();
                }
                ImageStatus::Active
            };
            Ok(vec![ImageEvent::LocationImportStarted {
                task,
                location,
                data,
                status,
                at,
            }])
        }
        ImageCommand::EndLocationImport { task, hashes, ok } => {
            if img.import_task() != Some(task.as_str()) {
                return Ok(vec![]);
            }
            let mut data = img.location_data.clone();
            let mut status = img.status;
            if let Some(h) = hashes {
                data.checksum = h.checksum;
                data.os_hash_algo = h.os_hash_algo.or(data.os_hash_algo);
                data.os_hash_value = h.os_hash_value;
            }
            if status == ImageStatus::Importing {
                if ok {
                    status = ImageStatus::Active;
                } else {
                    status = ImageStatus::Queued;
                    data.checksum = None;
                    data.os_hash_algo = None;
                    data.os_hash_value = None;
                }
            } else if !ok && data.os_hash_value.is_none() {
                // Active already (no validation data): the hashing failed, the image
                // stays usable without hashes.
                data.os_hash_algo = None;
            }
            Ok(vec![ImageEvent::LocationImportEnded {
                task,
                data,
                status,
                at,
            }])
        }
        ImageCommand::Deactivate | ImageCommand::Reactivate => {
            // Glance's domain: the other status is a no-op, anything else a 403.
            let deactivate = cmd == ImageCommand::Deactivate;
            let (from, to, what) = if deactivate {
                (ImageStatus::Active, ImageStatus::Deactivated, "deactivate")
            } else {
                (ImageStatus::Deactivated, ImageStatus::Active, "reactivate")
            };
            if img.status == to {
                return Ok(vec![]);
            }
            if img.status != from {
                return Err(DomainError::Forbidden(format!(
                    "Not allowed to {what} image in status '{}'",
                    img.status.as_str()
                )));
            }
            Ok(vec![if deactivate {
                ImageEvent::Deactivated { at }
            } else {
                ImageEvent::Reactivated { at }
            }])
        }
        ImageCommand::StartStage => {
            if img.status != ImageStatus::Queued {
                return Err(DomainError::Conflict(format!(
                    "Image status transition from {} to uploading is not allowed",
                    img.status.as_str()
                )));
            }
            Ok(vec![ImageEvent::StageStarted { at }])
        }
        ImageCommand::FinishStage(size) => {
            if img.status != ImageStatus::Uploading || img.staged.is_some() {
                return Err(DomainError::Conflict(format!(
                    "The image {id} has data on staging"
                )));
            }
            Ok(vec![ImageEvent::StageFinished { size, at }])
        }
        ImageCommand::AbortStage => {
            if img.status != ImageStatus::Uploading || img.staged.is_some() {
                return Ok(vec![]);
            }
            Ok(vec![ImageEvent::StageAborted { at }])
        }
        ImageCommand::StartImport(import) => {
            check_import(img, &import.method)?;
            Ok(vec![ImageEvent::ImportStarted { import, at }])
        }
        ImageCommand::FinishImport {
            task,
            data,
            virtual_size,
            stores,
            converted,
            metadata,
        } => {
            if img.import_task() != Some(task.as_str()) {
                return Err(DomainError::Conflict(format!(
                    "Image status transition from {} to active is not allowed",
                    img.status.as_str()
                )));
            }
            let mut out = Vec::new();
            // The image as the metadata leaves it: what a conversion is compared with.
            let mut updated = img.clone();
            if !metadata.is_empty() {
                apply_changes(&mut updated, &metadata);
                out.push(ImageEvent::Updated {
                    changes: metadata,
                    at,
                });
            }
            out.extend(
                converted
                    .filter(|f| {
                        updated.spec.disk_format.as_ref() != Some(f)
                            || updated.spec.container_format.as_deref() != Some(CONVERTED_CONTAINER)
                    })
                    .map(|disk_format| ImageEvent::Converted {
                        disk_format,
                        container_format: CONVERTED_CONTAINER.into(),
                        at,
                    }),
            );
            out.extend(
                virtual_size
                    .map(|virtual_size| ImageEvent::VirtualSizeRecorded { virtual_size, at }),
            );
            out.push(ImageEvent::ImportFinished {
                task,
                data,
                stores,
                at,
            });
            Ok(out)
        }
        ImageCommand::FailImport { task, stores } => {
            if img.import_task() != Some(task.as_str()) {
                return Ok(vec![]);
            }
            Ok(vec![ImageEvent::ImportFailed {
                task,
                stores: stores.unwrap_or_else(|| store_list(img, IMPORTING_TO_STORES)),
                at,
            }])
        }
        ImageCommand::RemoveStore { store, default } => {
            if img.status != ImageStatus::Active {
                return Err(DomainError::Conflict(
                    "It's not allowed to remove image data from store if image status is not 'active'"
                        .into(),
                ));
            }
            let mut held = img.stores.clone();
            if held.is_empty() {
                held.insert(default);
            }
            if held.len() == 1 {
                return Err(DomainError::Forbidden(
                    "Cannot delete image data from the only store containing it. Consider deleting the image instead."
                        .into(),
                ));
            }
            if !held.remove(&store) {
                return Err(DomainError::NotFound {
                    kind: "ImageStore",
                    id: format!("Image {id} is not stored in store {store}."),
                });
            }
            Ok(vec![ImageEvent::StoreRemoved {
                store,
                stores: held.into_iter().collect(),
                at,
            }])
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

/// The stores named by the comma-separated list property `key`.
fn store_list(img: &Image, key: &str) -> Vec<String> {
    img.spec
        .properties
        .get(key)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Glance's checks of an import request by `method` against the image (its
/// `import_image`), in Glance's order: every refusal is a 409. The image service runs
/// them before its own checks of the request (stores, URL), as Glance does.
pub fn check_import(img: &Image, method: &str) -> Result<(), DomainError> {
    let conflict = |m: String| Err(DomainError::Conflict(m));
    if img.status == ImageStatus::Active && method != "copy-image" {
        return conflict("Image with status active cannot be target for import".into());
    }
    if img.status != ImageStatus::Active && method == "copy-image" {
        return conflict("Only images with status active can be targeted for copying".into());
    }
    if matches!(method, "web-download" | "glance-download") && img.status != ImageStatus::Queued {
        return conflict(format!(
            "Image needs to be in 'queued' state to use '{method}' method"
        ));
    }
    if method == "glance-direct" && (img.status != ImageStatus::Uploading || img.staged.is_none()) {
        return conflict(
            "Image needs to be staged before 'glance-direct' method can be used".into(),
        );
    }
    if img.spec.container_format.is_none() {
        return conflict("'container_format' needs to be set before import".into());
    }
    if img.spec.disk_format.is_none() {
        return conflict("'disk_format' needs to be set before import".into());
    }
    if img.import_task().is_some() {
        return conflict(format!(
            "New operation on image '{}' is not permitted as prior operation is still in progress",
            img.spec.id
        ));
    }
    Ok(())
}

/// `img` as `changes` leave it (what `image.updated` folds to).
pub fn apply_changes(img: &mut Image, changes: &[ImageChange]) {
    for ch in changes {
        apply_change(img, ch);
    }
}

/// Glance's `_get_locations_op_pos`: the position a location operation names (an
/// index, or `-`: the end for an add, the last one for a remove), if valid.
fn location_pos(pos: &str, max: usize, allow_max: bool) -> Option<usize> {
    let p: i64 = if pos == "-" {
        if allow_max {
            max as i64
        } else {
            max as i64 - 1
        }
    } else if !pos.is_empty() && pos.bytes().all(|b| b.is_ascii_digit()) {
        pos.parse().ok()?
    } else {
        return None;
    };
    if !(allow_max || (0 <= p && (p as usize) < max)) || p < 0 {
        return None;
    }
    Some(p as usize)
}

/// How many bytes `s` is as hex digits (Python's `bytearray.fromhex`); None when it
/// is no whole bytes of hex digits.
pub fn hex_bytes(s: &str) -> Option<usize> {
    (s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s.len() / 2)
}

/// Glance's `_validate_validation_data`: the values the locations' validation data
/// bring that the image does not have yet (409s: conflicting values, a different value
/// than the image's, new values on an image that is not queued, malformed hashes).
fn validation_values(img: &Image, vals: &[&ValidationData]) -> Result<ValidationData, DomainError> {
    let conflict = |m: String| Err(DomainError::Conflict(m));
    let mut merged = ValidationData::default();
    for v in vals {
        for (k, val) in v.entries() {
            let Some(val) = val else { continue };
            let slot = match k {
                "checksum" => &mut merged.checksum,
                "os_hash_algo" => &mut merged.os_hash_algo,
                _ => &mut merged.os_hash_value,
            };
            if slot.as_ref().is_some_and(|s| s != val) {
                return conflict(format!("Conflicting values for {k}"));
            }
            *slot = Some(val.clone());
        }
    }
    let current = img.data_facts();
    let mut new = ValidationData::default();
    let pairs = [
        (
            "checksum",
            &merged.checksum,
            &current.checksum,
            &mut new.checksum,
        ),
        (
            "os_hash_algo",
            &merged.os_hash_algo,
            &current.os_hash_algo,
            &mut new.os_hash_algo,
        ),
        (
            "os_hash_value",
            &merged.os_hash_value,
            &current.os_hash_value,
            &mut new.os_hash_value,
        ),
    ];
    for (k, given, cur, slot) in pairs {
        let Some(given) = given else { continue };
        if Some(given) == cur.as_ref() {
            continue;
        }
        if cur.as_ref().is_some_and(|c| !c.is_empty()) {
            return conflict(format!("{k} is already set with a different value"));
        }
        *slot = Some(given.clone());
    }
    if new.is_empty() {
        return Ok(new);
    }
    if img.status != ImageStatus::Queued {
        let keys: Vec<&str> = new
            .entries()
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        return conflict(format!(
            "New value(s) for {} may only be provided when image status is 'queued'",
            keys.join(", ")
        ));
    }
    if let Some(c) = &new.checksum {
        match hex_bytes(c) {
            None => return conflict(format!("checksum ({c}) is not a valid hexadecimal value")),
            Some(16) => {}
            Some(_) => {
                return conflict(format!(
                    "checksum ({c}) is not the correct size for md5 (should be 16 bytes)"
                ))
            }
        }
    }
    let algo = new.os_hash_algo.clone();
    if algo.as_deref() != Some(HASHING_ALGORITHM) {
        return conflict(format!(
            "os_hash_algo must be {HASHING_ALGORITHM}, not {}",
            algo.as_deref().unwrap_or("None")
        ));
    }
    let value = new.os_hash_value.clone().unwrap_or_default();
    let want = digest_size(HASHING_ALGORITHM).unwrap_or(64);
    match hex_bytes(&value) {
        None if new.os_hash_value.is_some() => {
            return conflict(format!(
                "os_hash_value ({value}) is not a valid hexadecimal value"
            ))
        }
        Some(n) if n == want => {}
        _ => {
            return conflict(format!(
                "os_hash_value ({value}) is not the correct size for {HASHING_ALGORITHM} (should be {want} bytes)"
            ))
        }
    }
    Ok(new)
}

/// Applies new validation values to the data facts of a queued image.
/// A location makes a queued image active, with the validation data's values; any
/// other status stays as it is, with its data facts.
fn activated(
    status: ImageStatus,
    data: LocationData,
    values: ValidationData,
) -> (LocationData, ImageStatus) {
    if status == ImageStatus::Queued {
        (with_values(data, values), ImageStatus::Active)
    } else {
        (data, status)
    }
}

fn with_values(mut data: LocationData, v: ValidationData) -> LocationData {
    if v.checksum.is_some() {
        data.checksum = v.checksum;
    }
    if v.os_hash_algo.is_some() {
        data.os_hash_algo = v.os_hash_algo;
    }
    if v.os_hash_value.is_some() {
        data.os_hash_value = v.os_hash_value;
    }
    data
}

/// Glance's `_check_image_location`: the store found data at the URL.
fn checked_size(new: &NewLocation) -> Result<u64, DomainError> {
    new.size
        .filter(|s| *s > 0)
        .ok_or_else(|| DomainError::BadRequest("Invalid location".into()))
}

fn duplicate(url: &str) -> DomainError {
    DomainError::BadRequest(format!("The location {url} already exists"))
}

/// One location operation of a patch (Glance's `_do_add_locations`,
/// `_do_remove_locations`, `_do_replace_locations`, in their order of checks), on
/// the image as the patch has changed it so far.
fn decide_location(img: &Image, lc: LocationChange, ctx: &Ctx) -> Result<ImageEvent, DomainError> {
    let at = ctx.now;
    let stored = img.store_locations();
    let total = stored + img.locations.len();
    let status = img.status.as_str();
    let changeable = matches!(img.status, ImageStatus::Active | ImageStatus::Queued);
    match lc {
        LocationChange::Add { pos, new } => {
            if !changeable {
                return Err(DomainError::Conflict(format!(
                    "It's not allowed to add locations if image status is {status}."
                )));
            }
            let values = validation_values(img, &[&new.validation])?;
            let p = location_pos(&pos, total, true).ok_or_else(|| {
                DomainError::BadRequest("Invalid position for adding a location.".into())
            })?;
            let size = checked_size(&new)?;
            if img.locations.contains(&new.location) {
                return Err(duplicate(&new.location.url));
            }
            let mut data = img.location_data.clone();
            if img.data.is_none() && data.size.is_none() {
                data.size = Some(size);
            }
            let (data, next) = activated(img.status, data, values);
            Ok(ImageEvent::LocationAdded {
                location: new.location,
                index: p.saturating_sub(stored) as u64,
                data,
                status: next,
                at,
            })
        }
        LocationChange::Remove { pos } => {
            if !ctx.is_admin {
                return Err(DomainError::Forbidden(
                    "You are not authorized to complete delete_image_location action.".into(),
                ));
            }
            if img.status != ImageStatus::Active {
                return Err(DomainError::Conflict(format!(
                    "It's not allowed to remove locations if image status is {status}."
                )));
            }
            if total == 1 {
                return Err(DomainError::Forbidden(
                    "Cannot remove last location in the image.".into(),
                ));
            }
            let p = location_pos(&pos, total, false).ok_or_else(|| {
                DomainError::BadRequest("Invalid position for removing a location.".into())
            })?;
            if p < stored {
                // Stratus: the stores' data leaves by its own API.
                return Err(DomainError::Conflict(format!(
                    "Location {p} is the image's data in a store: remove it with DELETE /v2/stores/<store>/{}.",
                    img.spec.id
                )));
            }
            Ok(ImageEvent::LocationRemoved {
                index: (p - stored) as u64,
                at,
            })
        }
        LocationChange::Replace {
            locations,
            stores_intact,
        } => {
            if !changeable {
                return Err(DomainError::Conflict(format!(
                    "It's not allowed to replace locations if image status is {status}."
                )));
            }
            let vals: Vec<&ValidationData> = locations.iter().map(|l| &l.validation).collect();
            let values = validation_values(img, &vals)?;
            let mut given: Vec<&str> = locations.iter().map(|l| l.location.url.as_str()).collect();
            let mut had: Vec<&str> = img.locations.iter().map(|l| l.url.as_str()).collect();
            given.sort_unstable();
            had.sort_unstable();
            let same_urls = stores_intact && given == had;
            let mut data = img.location_data.clone();
            if !same_urls {
                if total > 0 {
                    return Err(DomainError::BadRequest(format!(
                        "Original locations is not empty: {}",
                        had.join(", ")
                    )));
                }
                for (i, l) in locations.iter().enumerate() {
                    let size = checked_size(l)?;
                    if locations[..i].iter().any(|o| o.location == l.location) {
                        return Err(duplicate(&l.location.url));
                    }
                    if img.data.is_none() && data.size.is_none() {
                        data.size = Some(size);
                    }
                }
            }
            let (data, next) = activated(img.status, data, values);
            Ok(ImageEvent::LocationsReplaced {
                locations: locations.into_iter().map(|l| l.location).collect(),
                data,
                status: next,
                at,
            })
        }
    }
}

/// Glance's checks of one attribute change against the image as the patch has
/// changed it so far (`next`).
fn check_change(next: &Image, ch: &ImageChange, ctx: &Ctx) -> Result<(), DomainError> {
    match ch {
        ImageChange::Name(n) => check_name(n)?,
        ImageChange::Visibility(v) => check_publicize(ctx, *v)?,
        ImageChange::Protected(_)
        | ImageChange::MinDisk(_)
        | ImageChange::MinRam(_)
        | ImageChange::Hidden(_) => {}
        ImageChange::Owner(_) if !ctx.is_admin => {
            return Err(DomainError::Forbidden(
                "Owner can't be updated by non admin.".into(),
            ))
        }
        ImageChange::Owner(o) => {
            if o.chars().count() > 255 {
                return Err(DomainError::BadRequest(
                    "Invalid value for 'owner': at most 255 characters.".into(),
                ));
            }
        }
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
    Ok(())
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
        ImageChange::Hidden(h) => img.hidden = *h,
        ImageChange::Owner(o) => s.owner = o.clone(),
    }
}

/// Applies an image event. Total: never fails (events on a missing image are ignored).
pub fn evolve(state: Option<Image>, ev: &ImageEvent) -> Option<Image> {
    match ev {
        ImageEvent::Created { spec, at } => Some(state.unwrap_or(Image {
            spec: spec.clone(),
            status: ImageStatus::Queued,
            data: None,
            virtual_size: None,
            created_at: *at,
            updated_at: *at,
            hidden: false,
            members: BTreeMap::new(),
            staged: None,
            stores: BTreeSet::new(),
            locations: Vec::new(),
            location_data: LocationData::default(),
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
        ImageEvent::VirtualSizeRecorded { virtual_size, at } => state.map(|mut i| {
            i.virtual_size = Some(*virtual_size);
            i.updated_at = *at;
            i
        }),
        ImageEvent::Converted {
            disk_format,
            container_format,
            at,
        } => state.map(|mut i| {
            i.spec.disk_format = Some(disk_format.clone());
            i.spec.container_format = Some(container_format.clone());
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
        ImageEvent::TagAdded { tag, at } => state.map(|mut i| {
            i.spec.tags.insert(tag.clone());
            i.updated_at = *at;
            i
        }),
        ImageEvent::TagRemoved { tag, at } => state.map(|mut i| {
            i.spec.tags.remove(tag);
            i.updated_at = *at;
            i
        }),
        // Membership changes are the member's, not the image's: `updated_at` of the
        // image stays (as in Glance, where members are rows of their own).
        ImageEvent::MemberAdded { member, at } => state.map(|mut i| {
            i.members.insert(
                member.clone(),
                Member {
                    status: MemberStatus::Pending,
                    created_at: *at,
                    updated_at: *at,
                },
            );
            i
        }),
        ImageEvent::MemberUpdated { member, status, at } => state.map(|mut i| {
            if let Some(m) = i.members.get_mut(member) {
                m.status = *status;
                m.updated_at = *at;
            }
            i
        }),
        ImageEvent::MemberRemoved { member, .. } => state.map(|mut i| {
            i.members.remove(member);
            i
        }),
        ImageEvent::Deactivated { at } => state.map(|mut i| {
            i.status = ImageStatus::Deactivated;
            i.updated_at = *at;
            i
        }),
        ImageEvent::Reactivated { at } => state.map(|mut i| {
            i.status = ImageStatus::Active;
            i.updated_at = *at;
            i
        }),
        ImageEvent::StageStarted { at } => state.map(|mut i| {
            i.status = ImageStatus::Uploading;
            i.updated_at = *at;
            i
        }),
        ImageEvent::StageFinished { size, at } => state.map(|mut i| {
            i.staged = Some(*size);
            i.updated_at = *at;
            i
        }),
        ImageEvent::StageAborted { at } => state.map(|mut i| {
            i.status = ImageStatus::Queued;
            i.staged = None;
            i.updated_at = *at;
            i
        }),
        ImageEvent::ImportStarted { import, at } => state.map(|mut i| {
            // A copy leaves the image active (Glance).
            if import.method != "copy-image" {
                i.status = ImageStatus::Importing;
            }
            i.spec
                .properties
                .insert(IMPORT_TASK.into(), import.task.clone());
            edit_store_list(&mut i, IMPORTING_TO_STORES, &import.stores, true);
            edit_store_list(&mut i, FAILED_IMPORT, &import.stores, false);
            i.updated_at = *at;
            i
        }),
        ImageEvent::ImportFinished {
            data, stores, at, ..
        } => state.map(|mut i| {
            i.status = ImageStatus::Active;
            i.data = Some(data.clone());
            i.stores.extend(stores.iter().cloned());
            edit_store_list(&mut i, IMPORTING_TO_STORES, stores, false);
            if store_list(&i, IMPORTING_TO_STORES).is_empty() {
                i.staged = None;
                i.spec.properties.remove(IMPORT_TASK);
            }
            i.updated_at = *at;
            i
        }),
        ImageEvent::ImportFailed { stores, at, .. } => state.map(|mut i| {
            edit_store_list(&mut i, IMPORTING_TO_STORES, stores, false);
            edit_store_list(&mut i, FAILED_IMPORT, stores, true);
            if store_list(&i, IMPORTING_TO_STORES).is_empty() {
                i.staged = None;
                i.spec.properties.remove(IMPORT_TASK);
                if i.data.is_none() {
                    i.status = ImageStatus::Queued;
                }
            }
            i.updated_at = *at;
            i
        }),
        ImageEvent::StoreRemoved { stores, at, .. } => state.map(|mut i| {
            i.stores = stores.iter().cloned().collect();
            i.updated_at = *at;
            i
        }),
        ImageEvent::LocationAdded {
            location,
            index,
            data,
            status,
            at,
        } => state.map(|mut i| {
            let at_index = usize::try_from(*index).unwrap_or(usize::MAX);
            i.locations
                .insert(at_index.min(i.locations.len()), location.clone());
            i.location_data = data.clone();
            i.status = *status;
            i.updated_at = *at;
            i
        }),
        ImageEvent::LocationRemoved { index, at } => state.map(|mut i| {
            if let Ok(n) = usize::try_from(*index) {
                if n < i.locations.len() {
                    i.locations.remove(n);
                }
            }
            i.updated_at = *at;
            i
        }),
        ImageEvent::LocationsReplaced {
            locations,
            data,
            status,
            at,
        } => state.map(|mut i| {
            i.locations = locations.clone();
            i.location_data = data.clone();
            i.status = *status;
            i.updated_at = *at;
            i
        }),
        ImageEvent::LocationImportStarted {
            task,
            location,
            data,
            status,
            at,
        } => state.map(|mut i| {
            i.locations.push(location.clone());
            i.location_data = data.clone();
            i.status = *status;
            i.spec.properties.insert(IMPORT_TASK.into(), task.clone());
            i.updated_at = *at;
            i
        }),
        ImageEvent::LocationImportEnded {
            task,
            data,
            status,
            at,
        } => state.map(|mut i| {
            if i.import_task() == Some(task.as_str()) {
                i.spec.properties.remove(IMPORT_TASK);
            }
            i.location_data = data.clone();
            i.status = *status;
            i.updated_at = *at;
            i
        }),
    }
}
