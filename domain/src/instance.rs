//! The instance aggregate: Nova's vm_state / task_state / power_state machine.
//!
//! An instance lives on two subjects in turn. Before it has a host it is a *build
//! request* on `stratus.api.instance.<id>` (events `build_requested`, `mapped`, and
//! `deleted` if it is deleted before placement). The scheduler then writes `placed`
//! (or `build_failed` for NoValidHost, in `cell0`) as the first commit of
//! `stratus.cell.<cell>.instance.<id>`, carrying a snapshot of the whole state, and
//! every later event goes there. The effective state is the cell state once placed.
//!
//! Invariants (checked by the property tests):
//! - `decide` follows nova/compute/api.py exactly: an action with a row in
//!   [`rules::RULES`] is checked by it first (the lock check for non-admins, then the
//!   allowed vm_states, the allowed task_states, `launched_at` (`must_have_launched`),
//!   then the host; refusals are [`DomainError::InvalidState`] / [`DomainError::Locked`]
//!   / [`DomainError::NotReady`]), then by its own validations, and records what the
//!   row's [`rules::Effect`] says.
//! - While an operation is in progress, `op` is `Some` and names it; `task_state` is
//!   `Some` exactly when `op` is `Some`.
//! - Reactor commands (`Complete`, `Fail`, `MigrationScheduled`, ...) name the
//!   operation they answer; an answer for an operation that is no longer current
//!   decides to nothing, which makes every reactor idempotent.
//! - A deleted instance refuses every command (404), and every reactor command on it
//!   decides to nothing.

pub mod console;
pub mod power_sync;
pub mod rules;
pub mod tags;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::flavor::FlavorSpec;
use crate::host::Resources;
use crate::states::{PowerState, TaskState, VmState};
use crate::{
    CellName, ClaimId, Ctx, DomainError, HostName, ImageId, InstanceId, MigrationId,
    SecurityGroupId, Timestamp,
};

/// A flavor as embedded in a server (copied at create / resize time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlavorSnapshot {
    /// The flavor's spec.
    pub spec: FlavorSpec,
    /// Its extra specs at the time.
    pub extra_specs: BTreeMap<String, String>,
}

impl FlavorSnapshot {
    /// Placement resources of this flavor (no root disk when booted from volume).
    pub fn resources(&self, boot_from_volume: bool) -> Resources {
        let mut r = self.spec.resources();
        if boot_from_volume {
            r.disk_gb = r.disk_gb.saturating_sub(self.spec.disk_gb);
        }
        r
    }
}

/// Requested networking (`networks` in the create request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Networks {
    /// `"none"`
    None,
    /// `"auto"`
    Auto,
    /// An explicit list.
    List(Vec<NetworkRequest>),
}

/// One requested network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequest {
    /// Network uuid.
    pub uuid: Option<String>,
    /// Port id.
    pub port: Option<String>,
    pub fixed_ip: Option<String>,
    /// Device tag.
    pub tag: Option<String>,
}

/// Everything a create request fixes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Server id.
    pub id: InstanceId,
    /// Display name.
    pub name: String,
    /// Description (2.19+).
    pub description: Option<String>,
    /// Owner project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// Flavor at create time.
    pub flavor: FlavorSnapshot,
    /// Image ref (empty when booted from volume).
    pub image_ref: String,
    /// Booted from a volume (block_device_mapping_v2 with a volume root).
    pub boot_from_volume: bool,
    pub metadata: BTreeMap<String, String>,
    /// Requested availability zone.
    pub availability_zone: Option<String>,
    /// Requested networks.
    pub networks: Networks,
    /// Key pair name.
    pub key_name: Option<String>,
    /// Admin-requested host (2.74 `host`).
    pub requested_host: Option<HostName>,
}

/// An error recorded on the instance (`fault` in the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// HTTP-like code (500, 404 for NoValidHost...).
    pub code: u16,
    pub message: String,
    /// Details (admin only).
    pub details: String,
    /// When.
    pub created: Timestamp,
}

/// Instance action names (os-instance-actions `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// create
    Create,
    /// delete
    Delete,
    /// stop
    Stop,
    /// start
    Start,
    /// pause
    Pause,
    /// unpause
    Unpause,
    /// suspend
    Suspend,
    /// resume
    Resume,
    /// reboot (soft)
    Reboot,
    /// reboot (hard)
    RebootHard,
    /// shelve
    Shelve,
    /// shelveOffload
    ShelveOffload,
    /// unshelve
    Unshelve,
    /// resize
    Resize,
    /// migrate
    Migrate,
    /// confirmResize
    ConfirmResize,
    /// revertResize
    RevertResize,
    /// live-migration
    LiveMigration,
    /// lock
    Lock,
    /// unlock
    Unlock,
    /// resetState
    ResetState,
    /// update
    Update,
    /// rebuild
    Rebuild,
    /// changePassword (appended last: postcard encodes the variant's index)
    ChangePassword,
    /// PUT / POST /servers/{id}/metadata, PUT /servers/{id}/metadata/{key}
    UpdateMetadata,
    /// DELETE /servers/{id}/metadata/{key}
    DeleteMetadata,
    /// createImage (a snapshot)
    CreateImage,
    /// createBackup (a snapshot kept in a rotation)
    CreateBackup,
    /// rescue (appended: postcard encodes the variant's index)
    Rescue,
    /// unrescue
    Unrescue,
    /// restore (a soft-deleted server)
    Restore,
    /// forceDelete
    ForceDelete,
    /// DELETE /servers/{id} with a reclaim interval: soft delete (Nova records it as
    /// the instance action `delete`)
    SoftDelete,
    /// trigger_crash_dump (2.17)
    TriggerCrashDump,
    /// evacuate (admin): rebuilt on another host because its own is down (appended
    /// last: postcard encodes the variant's index)
    Evacuate,
}

impl Action {
    /// The name used in Nova's 409 messages (the API action).
    pub fn api_name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Delete => "delete",
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Unpause => "unpause",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Reboot | Action::RebootHard => "reboot",
            Action::Shelve => "shelve",
            Action::ShelveOffload => "shelveOffload",
            Action::Unshelve => "unshelve",
            Action::Resize => "resize",
            Action::Migrate => "migrate",
            Action::ConfirmResize => "confirmResize",
            Action::RevertResize => "revertResize",
            Action::LiveMigration => "os-migrateLive",
            Action::Lock => "lock",
            Action::Unlock => "unlock",
            Action::ResetState => "os-resetState",
            Action::Update => "update",
            Action::Rebuild => "rebuild",
            Action::ChangePassword => "changePassword",
            Action::UpdateMetadata => "update metadata",
            Action::DeleteMetadata => "delete metadata",
            Action::CreateImage => "createImage",
            Action::CreateBackup => "createBackup",
            Action::Rescue => "rescue",
            Action::Unrescue => "unrescue",
            Action::Restore => "restore",
            Action::ForceDelete => "forceDelete",
            Action::SoftDelete => "delete",
            Action::TriggerCrashDump => "trigger_crash_dump",
            Action::Evacuate => "evacuate",
        }
    }

    /// The instance-action name (os-instance-actions).
    pub fn action_name(self) -> &'static str {
        match self {
            Action::Reboot | Action::RebootHard => "reboot",
            Action::LiveMigration => "live-migration",
            Action::ResetState => "resetState",
            // Nova's `_delete` records `delete` whatever the delete type.
            Action::ForceDelete | Action::SoftDelete => "delete",
            other => other.api_name(),
        }
    }
}

/// The operation in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Operation id (the request id's uuid).
    pub id: Uuid,
    /// What it is.
    pub action: Action,
    /// When it started or was last retried.
    pub since: Timestamp,
    /// Attempt number, from 1.
    pub attempt: u32,
}

/// Kind of migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationKind {
    /// Resize to another flavor.
    Resize,
    /// Cold migration.
    Migration,
    /// Live migration.
    LiveMigration,
    /// Evacuation: a rebuild on another host while the source host is down (appended
    /// last: postcard indexes). `stop`: the guest lands stopped whatever its state
    /// (2.95's `target_state`); otherwise it lands as it was (stopped stays stopped,
    /// active and error land active). Kept in the kind because [`Migration`]'s shape is
    /// frozen in older events.
    Evacuation {
        /// Land stopped (2.95).
        stop: bool,
    },
}

impl MigrationKind {
    /// Whether this is an evacuation.
    pub fn is_evacuation(self) -> bool {
        matches!(self, MigrationKind::Evacuation { .. })
    }
}

/// A migration in progress (resize, cold or live migration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// Migration id.
    pub id: MigrationId,
    pub kind: MigrationKind,
    pub source_host: HostName,
    /// Claim held on the source until confirm / revert.
    pub source_claim: Option<ClaimId>,
    /// Destination, once scheduled.
    pub dest_host: Option<HostName>,
    /// Claim on the destination, once scheduled.
    pub dest_claim: Option<ClaimId>,
    /// Host requested by an admin.
    pub requested_host: Option<HostName>,
    /// Flavor before.
    pub old_flavor: FlavorSnapshot,
    /// Flavor after.
    pub new_flavor: FlavorSnapshot,
    /// vm_state before (to restore on revert).
    pub old_vm_state: VmState,
    /// power_state before.
    pub old_power_state: PowerState,
}

/// Who locked an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Locked by an admin (then only admins may unlock).
    pub by_admin: bool,
    /// Reason (2.73+).
    pub reason: Option<String>,
}

/// The state of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Create-time facts (name and description are kept current here).
    pub spec: InstanceSpec,
    /// Current flavor.
    pub flavor: FlavorSnapshot,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
    /// Cell it is mapped to.
    pub cell: Option<CellName>,
    /// Whether its cell subject exists (placed or build failed).
    pub placed: bool,
    /// Host it runs on.
    pub host: Option<HostName>,
    /// Claim on that host.
    pub claim: Option<ClaimId>,
    /// Lock.
    pub locked: Option<LockInfo>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// First boot.
    pub launched_at: Option<Timestamp>,
    /// Deletion time.
    pub terminated_at: Option<Timestamp>,
    /// When it was shelved.
    pub shelved_at: Option<Timestamp>,
    /// The rescue image requested by the rescue in progress or in place (None: the
    /// server's own image, or not rescued); cleared when unrescue begins.
    pub rescue_image_ref: Option<String>,
    /// When its soft delete began (Nova's `deleted_at` of a SOFT_DELETED instance): the
    /// reclaim clock and the line between the quota it gave back and a restore's
    /// new reservation. Cleared when it is restored.
    pub deleted_at: Option<Timestamp>,
    /// Last fault.
    pub fault: Option<Fault>,
    /// Operation in progress.
    pub op: Option<Operation>,
    /// Migration in progress.
    pub migration: Option<Migration>,
    /// Fault to record when placement ends in cell0 (set by `mapped`).
    pub pending_fault: Option<Fault>,
    /// Deleted (a tombstone: 404 to the API).
    pub deleted: bool,
}

/// Tunables that decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Seconds after shelve before offload; 0 = at once (Nova's default), -1 = never.
    pub shelved_offload_time: i64,
    /// Seconds an operation may go unanswered before the reconciler acts.
    pub task_timeout_secs: i64,
    /// Attempts before an unanswered operation fails.
    pub max_attempts: u32,
    /// Nova's `reclaim_instance_interval`: seconds a soft-deleted server is kept for
    /// `restore` before the reconciler deletes it; 0 = DELETE deletes at once.
    pub reclaim_instance_interval: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shelved_offload_time: 0,
            task_timeout_secs: 60,
            max_attempts: 3,
            reclaim_instance_interval: 0,
        }
    }
}

/// What a build request records beside its spec, for the API to show (2.98 image
/// properties, 2.100 scheduler hints). Values are JSON texts, as the caller sent them.
/// Kept out of [`InstanceSpec`] and [`Instance`] (whose shapes are part of older event
/// payloads): it travels in its own `instance.boot_details_recorded` event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootDetails {
    /// Scheduler hints, name -> JSON value.
    pub scheduler_hints: BTreeMap<String, String>,
    /// Properties of the image at boot time, name -> JSON value.
    pub image_properties: BTreeMap<String, String>,
}

impl BootDetails {
    /// True when there is nothing to record.
    pub fn is_empty(&self) -> bool {
        self.scheduler_hints.is_empty() && self.image_properties.is_empty()
    }
}

/// What a create request sets that only the API shows (and the spec does not hold):
/// the multiple-create reservation and launch index, the access addresses, user data
/// and the config drive. The payload of `instance.create_extras_recorded` (api subject,
/// in the build request's commit), recorded only when something differs from
/// [`CreateExtras::default`]: then a server's reservation id is derived from its id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateExtras {
    /// `reservation_id` shared by the servers of one multiple create (`r-` and 8
    /// characters), None for a single create.
    pub reservation_id: Option<String>,
    /// Position in the multiple create (`OS-EXT-SRV-ATTR:launch_index`).
    pub launch_index: u32,
    /// `accessIPv4` as given.
    pub access_ip_v4: Option<String>,
    /// `accessIPv6` as given (normalized).
    pub access_ip_v6: Option<String>,
    /// `user_data`, base64 as sent.
    pub user_data: Option<String>,
    /// `config_drive` requested.
    pub config_drive: bool,
}

impl CreateExtras {
    /// True when there is nothing to record.
    pub fn is_empty(&self) -> bool {
        *self == CreateExtras::default()
    }
}

/// A rebuild (`rebuild` server action) as the API validated it: the image exists, the
/// metadata, names and addresses are well formed. Also the payload of
/// `instance.rebuild_started`, so its shape is frozen (postcard): a new field needs a
/// new event version.
///
/// `Option<Option<_>>` fields: `None` leaves the value as it is, `Some(None)` clears
/// it (Nova accepts `null` there), `Some(Some(v))` sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rebuild {
    /// The new image (`imageRef`). Not recorded on a volume-backed server, whose empty
    /// image ref means "booted from volume" (Nova preserves it the same way).
    pub image_ref: String,
    /// New display name.
    pub name: Option<String>,
    /// Replaces the whole metadata when given.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Key pair (2.54+).
    pub key_name: Option<Option<String>>,
    /// Whether an admin password was set (the API returns it; it is never stored).
    pub admin_pass_set: bool,
    /// Keep the ephemeral disk (`preserve_ephemeral`).
    pub preserve_ephemeral: bool,
    pub access_ip_v4: Option<Option<String>>,
    pub access_ip_v6: Option<Option<String>>,
    /// `user_data`, base64 as sent (2.57+).
    pub user_data: Option<Option<String>>,
    /// `trusted_image_certificates` (2.63+).
    pub trusted_image_certificates: Option<Option<Vec<String>>>,
    /// `hostname` (2.90+).
    pub hostname: Option<String>,
    /// New description (2.19+); `Some(None)` clears it.
    pub description: Option<Option<String>>,
}

/// Nova's sanitised hostname from a display name (the API's
/// `OS-EXT-SRV-ATTR:hostname` and the metadata service's `hostname` when none was set).
pub fn default_hostname(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if c == ' ' || c == '_' {
            out.push('-');
        }
    }
    let out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    let mut out: String = out.chars().take(63).collect();
    if out.is_empty() {
        out = "server".into();
    }
    out
}

/// What the API shows of a server that neither [`InstanceSpec`] nor [`Instance`] holds
/// (their shapes are part of older event payloads, `instance.placed` carries a whole
/// [`Instance`]): folded beside the instance by the read model with
/// [`ServerExtras::apply`]. `None` means "never set": the API shows its default (`""`
/// for the access addresses, the hostname derived from the name, null otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerExtras {
    pub access_ip_v4: Option<String>,
    pub access_ip_v6: Option<String>,
    /// `OS-EXT-SRV-ATTR:hostname` when set explicitly.
    pub hostname: Option<String>,
    /// `OS-EXT-SRV-ATTR:user_data`.
    pub user_data: Option<String>,
    pub trusted_image_certificates: Option<Vec<String>>,
    /// The multiple create's reservation (None: derived from the server's id).
    pub reservation_id: Option<String>,
    /// `OS-EXT-SRV-ATTR:launch_index`.
    pub launch_index: u32,
    /// `config_drive` was requested.
    pub config_drive: bool,
    /// Server tags (2.26), sorted: `instance.tags_set`. Kept here, not in [`Instance`],
    /// whose shape is frozen in `instance.placed`. A create's tags (2.52) are set on
    /// the api subject; later changes only on placed servers (active, paused,
    /// suspended or stopped), on the cell subject.
    pub tags: BTreeSet<String>,
    /// Whether an `instance.tags_set` was folded (so the cell side's empty set, once
    /// every tag was deleted, hides the create's tags in [`ServerExtras::combined`]).
    pub tags_set: bool,
    /// `OS-DCF:diskConfig` last given (AUTO: true); None shows MANUAL.
    pub auto_disk_config: Option<bool>,
    /// The snapshot (createImage / createBackup) in progress or last taken:
    /// `instance.snapshot_started`. The compute agent uploads into its image.
    pub snapshot: Option<SnapshotJob>,
    /// The `<name>-shelved` image of a shelved server (Nova's `shelved_image_id` system
    /// metadata): the shelve operation's id, set when the shelve starts, cleared at
    /// unshelve (whose agent deletes the image).
    pub shelved_image: Option<ImageId>,
    /// The security groups the server's ports get (`instance.security_groups_requested`,
    /// on the api subject); None for a server created without ports.
    pub security_groups: Option<Vec<SecurityGroupId>>,
}

impl ServerExtras {
    /// The extras of one instance from its two subjects folded apart (`replay` folds
    /// streams apart): the api side's (a create's) under what the cell side's events
    /// set (a rebuild's, the tags). A value a rebuild *cleared* (`null`) is not told
    /// apart from one never set, so the create's shows through then.
    pub fn combined(api: &ServerExtras, cell: &ServerExtras) -> ServerExtras {
        ServerExtras {
            access_ip_v4: cell
                .access_ip_v4
                .clone()
                .or_else(|| api.access_ip_v4.clone()),
            access_ip_v6: cell
                .access_ip_v6
                .clone()
                .or_else(|| api.access_ip_v6.clone()),
            hostname: cell.hostname.clone().or_else(|| api.hostname.clone()),
            user_data: cell.user_data.clone().or_else(|| api.user_data.clone()),
            trusted_image_certificates: cell
                .trusted_image_certificates
                .clone()
                .or_else(|| api.trusted_image_certificates.clone()),
            reservation_id: api.reservation_id.clone(),
            launch_index: api.launch_index,
            config_drive: api.config_drive,
            tags: if cell.tags_set {
                cell.tags.clone()
            } else {
                api.tags.clone()
            },
            tags_set: cell.tags_set || api.tags_set,
            auto_disk_config: cell.auto_disk_config.or(api.auto_disk_config),
            snapshot: cell.snapshot.clone(),
            shelved_image: cell.shelved_image,
            security_groups: api
                .security_groups
                .clone()
                .or_else(|| cell.security_groups.clone()),
        }
    }

    /// Folds one event (events that change none of these are ignored). Total.
    pub fn apply(&mut self, ev: &InstanceEvent) {
        if let InstanceEvent::CreateExtrasRecorded { extras } = ev {
            let x = &**extras;
            self.reservation_id = x.reservation_id.clone();
            self.launch_index = x.launch_index;
            self.access_ip_v4 = x.access_ip_v4.clone();
            self.access_ip_v6 = x.access_ip_v6.clone();
            self.user_data = x.user_data.clone();
            self.config_drive = x.config_drive;
        }
        if let InstanceEvent::TagsSet { tags, .. } = ev {
            self.tags = tags.clone();
            self.tags_set = true;
        }
        if let InstanceEvent::SecurityGroupsRequested { groups, .. } = ev {
            self.security_groups = Some(groups.clone());
        }
        if let InstanceEvent::DiskConfigSet { auto, .. } = ev {
            self.auto_disk_config = Some(*auto);
        }
        if let InstanceEvent::AccessUpdated { change, .. } = ev {
            if let Some(v) = &change.access_ip_v4 {
                self.access_ip_v4 = v.clone();
            }
            if let Some(v) = &change.access_ip_v6 {
                self.access_ip_v6 = v.clone();
            }
            if let Some(h) = &change.hostname {
                self.hostname = Some(h.clone());
            }
        }
        if let InstanceEvent::SnapshotStarted { job, .. } = ev {
            self.snapshot = Some(job.clone());
        }
        if let InstanceEvent::TaskStarted {
            op,
            action: Action::Shelve,
            ..
        } = ev
        {
            self.shelved_image = Some(ImageId(*op));
        }
        if let InstanceEvent::Unshelved { .. } = ev {
            self.shelved_image = None;
        }
        if let InstanceEvent::RebuildStarted { rebuild, .. } = ev {
            let r = &**rebuild;
            if let Some(v) = &r.access_ip_v4 {
                self.access_ip_v4 = v.clone();
            }
            if let Some(v) = &r.access_ip_v6 {
                self.access_ip_v6 = v.clone();
            }
            if let Some(v) = &r.user_data {
                self.user_data = v.clone();
            }
            if let Some(v) = &r.trusted_image_certificates {
                self.trusted_image_certificates = v.clone();
            }
            if let Some(h) = &r.hostname {
                self.hostname = Some(h.clone());
            }
        }
    }
}

/// Commands on an instance. The first group comes from the API, the second from reactors.
#[derive(Debug, Clone, PartialEq)]
pub enum InstanceCommand {
    /// A command given with `OS-DCF:diskConfig` (AUTO: true): decided as the inner
    /// command, with `instance.disk_config_set` appended when it is accepted.
    WithDiskConfig(Box<InstanceCommand>, bool),
    /// An update (PUT /servers/{id}) that also sets access addresses or the hostname:
    /// decided as the inner command, with `instance.access_updated` appended.
    WithAccess(Box<InstanceCommand>, AccessChange),
    /// A create whose server has ports: decided as the inner command, with
    /// `instance.security_groups_requested` (the groups its ports get) appended.
    WithSecurityGroups(Box<InstanceCommand>, Vec<SecurityGroupId>),
    /// POST /servers: the request, what is recorded beside it, and its tags (2.52;
    /// recorded as `instance.tags_set` in the build request's commit).
    Create(
        Box<InstanceSpec>,
        BootDetails,
        Box<CreateExtras>,
        BTreeSet<String>,
    ),
    /// os-start
    Start,
    /// os-stop
    Stop,
    /// pause
    Pause,
    /// unpause
    Unpause,
    /// suspend
    Suspend,
    /// resume
    Resume,
    /// reboot
    Reboot {
        /// HARD instead of SOFT.
        hard: bool,
    },
    /// shelve
    Shelve,
    /// shelveOffload
    ShelveOffload,
    /// unshelve
    Unshelve {
        /// Target AZ (2.77+).
        availability_zone: Option<String>,
    },
    /// resize
    Resize {
        /// The new flavor.
        flavor: FlavorSnapshot,
    },
    /// migrate
    Migrate {
        /// Target host (admin, 2.56+).
        host: Option<HostName>,
    },
    /// confirmResize
    ConfirmResize,
    /// revertResize
    RevertResize,
    /// os-migrateLive
    LiveMigrate {
        /// Target host, or let the scheduler pick.
        host: Option<HostName>,
    },
    /// lock
    Lock {
        /// Reason (2.73+).
        reason: Option<String>,
    },
    /// unlock
    Unlock,
    /// DELETE /servers/{id}
    Delete,
    /// os-resetState (admin)
    ResetState {
        /// `active` or `error`.
        state: VmState,
    },
    /// PUT /servers/{id}
    Update {
        /// New name.
        name: Option<String>,
        /// New description (Some(None) clears it).
        description: Option<Option<String>>,
    },
    /// rebuild
    Rebuild(Box<Rebuild>),
    /// changePassword (os-admin-password): the guest's admin password is set by the
    /// compute agent; the password itself is never recorded.
    ChangePassword,
    /// POST /servers/{id}/metadata (merge), PUT /servers/{id}/metadata (`replace`),
    /// PUT /servers/{id}/metadata/{key} (merge of one item).
    SetMetadata {
        /// The items given.
        items: BTreeMap<String, String>,
        /// Replace the whole metadata instead of merging into it.
        replace: bool,
        /// The caller's `metadata_items` quota (-1: unlimited): the resulting metadata
        /// may not have more items (Nova's `_check_metadata_properties_quota`).
        limit: i64,
    },
    /// DELETE /servers/{id}/metadata/{key}
    DeleteMetadata {
        /// The key to remove.
        key: String,
    },
    /// createImage / createBackup: the image record (`queued`) exists already; the
    /// compute agent captures the guest and uploads into it.
    Snapshot {
        /// The image the snapshot is uploaded into.
        image: ImageId,
        /// createBackup's type and rotation (None: createImage).
        backup: Option<BackupRequest>,
    },
    /// rescue: boot the guest from a rescue image (checked to exist by the API; the
    /// admin password goes to the guest only, never to the log).
    Rescue {
        /// The requested rescue image (`rescue_image_ref`; None: the server's own).
        image_ref: Option<String>,
    },
    /// unrescue
    Unrescue,
    /// restore: a soft-deleted server comes back.
    Restore,
    /// forceDelete: deleted now, soft-deleted or not.
    ForceDelete,
    /// trigger_crash_dump (2.17): the guest is sent an NMI; the simulated driver has
    /// nothing to dump, so the request is recorded and nothing changes.
    TriggerCrashDump,
    /// evacuate (admin): rebuild the server on another host because its own is down.
    /// The API resolved the target host (it exists and is not the source) and read
    /// the source's liveness, which the domain cannot see.
    Evacuate {
        /// Target host (None: the scheduler picks one).
        host: Option<HostName>,
        /// Land stopped (2.95).
        stop: bool,
        /// The source host's compute service is up (heartbeats, not forced down):
        /// then Nova refuses (`ComputeServiceInUse`).
        source_up: bool,
    },
    /// unshelve with a target (2.77 `availability_zone`, 2.91 `host` and
    /// `availability_zone: null`): only for a SHELVED_OFFLOADED server; the API checked
    /// that the zone exists and that the host is a compute host in the zone.
    UnshelveTo {
        /// `None`: unchanged; `Some(None)`: unpin; `Some(Some(az))`: pin to `az`.
        availability_zone: Option<Option<String>>,
        /// The host to unshelve on (admin).
        host: Option<HostName>,
    },
    /// Scheduler: record the cell (and host) chosen for a build request, on the api subject.
    Map {
        /// The build operation this answers.
        op: Uuid,
        /// Chosen cell (`cell0` when no host was valid).
        cell: CellName,
        /// Chosen host and claim, or None with a fault.
        host: Option<(HostName, ClaimId)>,
        /// NoValidHost fault when `host` is None.
        fault: Option<String>,
        /// The fault's details (which filters removed the hosts), when not the message.
        fault_details: Option<String>,
    },
    /// Scheduler: write the first commit in the cell (placed, or build failed in cell0).
    Place,
    /// Scheduler: a destination was claimed for a migration or an unshelve.
    Scheduled {
        /// The operation this answers.
        op: Uuid,
        /// Destination.
        host: HostName,
        /// Claim on it.
        claim: ClaimId,
    },
    /// Scheduler: no valid host for a migration or an unshelve.
    ScheduleFailed {
        /// The operation this answers.
        op: Uuid,
        /// Why.
        reason: String,
    },
    /// Compute: the hypervisor shows the guest in `observed` (power-state sync):
    /// records it when the log differs and nothing is in flight ([`power_sync::plan`]).
    SyncPowerState {
        /// The power state the hypervisor reports.
        observed: PowerState,
    },
    /// Compute: the task finished.
    Complete {
        /// The operation this answers.
        op: Uuid,
        /// The task it finished.
        task: TaskState,
    },
    /// Compute: the task failed.
    Fail {
        /// The operation this answers.
        op: Uuid,
        /// The task that failed.
        task: TaskState,
        /// Why.
        message: String,
    },
    /// Reconciler: periodic check for timeouts and delayed shelve offload.
    Tick,
}

impl InstanceCommand {
    /// The action a user command performs (`None` for create and reactor commands):
    /// its row in [`rules::RULES`], if it has one, decides whether it is allowed.
    pub fn action(&self) -> Option<Action> {
        use InstanceCommand as C;
        Some(match self {
            C::WithDiskConfig(inner, _)
            | C::WithAccess(inner, _)
            | C::WithSecurityGroups(inner, _) => return inner.action(),
            C::Start => Action::Start,
            C::Stop => Action::Stop,
            C::Pause => Action::Pause,
            C::Unpause => Action::Unpause,
            C::Suspend => Action::Suspend,
            C::Resume => Action::Resume,
            C::Reboot { hard: false } => Action::Reboot,
            C::Reboot { hard: true } => Action::RebootHard,
            C::Shelve => Action::Shelve,
            C::ShelveOffload => Action::ShelveOffload,
            C::Unshelve { .. } => Action::Unshelve,
            C::Resize { .. } => Action::Resize,
            C::Migrate { .. } => Action::Migrate,
            C::ConfirmResize => Action::ConfirmResize,
            C::RevertResize => Action::RevertResize,
            C::LiveMigrate { .. } => Action::LiveMigration,
            C::Lock { .. } => Action::Lock,
            C::Unlock => Action::Unlock,
            C::Delete => Action::Delete,
            C::ResetState { .. } => Action::ResetState,
            C::Update { .. } => Action::Update,
            C::Rebuild(_) => Action::Rebuild,
            C::ChangePassword => Action::ChangePassword,
            C::SetMetadata { .. } => Action::UpdateMetadata,
            C::DeleteMetadata { .. } => Action::DeleteMetadata,
            C::Snapshot { backup: None, .. } => Action::CreateImage,
            C::Snapshot {
                backup: Some(_), ..
            } => Action::CreateBackup,
            C::Rescue { .. } => Action::Rescue,
            C::Unrescue => Action::Unrescue,
            C::Restore => Action::Restore,
            C::ForceDelete => Action::ForceDelete,
            C::UnshelveTo { .. } => Action::Unshelve,
            C::TriggerCrashDump => Action::TriggerCrashDump,
            C::Evacuate { .. } => Action::Evacuate,
            C::Create(..)
            | C::Map { .. }
            | C::Place
            | C::Scheduled { .. }
            | C::ScheduleFailed { .. }
            | C::Complete { .. }
            | C::Fail { .. }
            | C::SyncPowerState { .. }
            | C::Tick => return None,
        })
    }
}

/// Events of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InstanceEvent {
    /// `instance.build_requested` (api subject)
    BuildRequested {
        /// The request.
        spec: Box<InstanceSpec>,
        /// Operation id.
        op: Uuid,
        /// When.
        at: Timestamp,
    },
    /// `instance.mapped` (api subject): the cell and host were chosen.
    Mapped {
        cell: CellName,
        /// Host and claim (None: NoValidHost, cell0).
        host: Option<(HostName, ClaimId)>,
        /// Fault for cell0.
        fault: Option<Fault>,
        /// When.
        at: Timestamp,
    },
    /// `instance.placed` (first cell commit): the whole state, now on a host, spawning.
    Placed {
        /// The state carried over from the build request, host and cell set.
        #[serde(with = "snapshot_v1")]
        snapshot: Box<Instance>,
        /// When.
        at: Timestamp,
    },
    /// `instance.build_failed` (first cell0 commit): no valid host.
    BuildFailed {
        /// The state carried over, vm_state error, with fault.
        #[serde(with = "snapshot_v1")]
        snapshot: Box<Instance>,
        /// When.
        at: Timestamp,
    },
    /// `instance.spawned`: ACTIVE, running.
    Spawned {
        /// When.
        at: Timestamp,
    },
    /// `instance.spawn_failed`: ERROR, host and claim cleared.
    SpawnFailed {
        fault: Fault,
        /// When.
        at: Timestamp,
    },
    /// `instance.task_started`: an operation began.
    TaskStarted {
        /// Operation id.
        op: Uuid,
        /// Which action.
        action: Action,
        /// task_state it sets.
        task: TaskState,
        /// When.
        at: Timestamp,
    },
    /// `instance.migration_started`: resize / migrate / live migrate began.
    MigrationStarted {
        /// Operation id.
        op: Uuid,
        /// Which action.
        action: Action,
        /// task_state it sets.
        task: TaskState,
        /// The migration record.
        migration: Box<Migration>,
        /// When.
        at: Timestamp,
    },
    /// `instance.destination_scheduled`: a destination host was claimed.
    DestinationScheduled {
        /// Destination.
        host: HostName,
        claim: ClaimId,
        /// task_state it moves to.
        task: TaskState,
        /// When.
        at: Timestamp,
    },
    /// `instance.action_completed`: a power action finished.
    ActionCompleted {
        /// Which action.
        action: Action,
        /// Resulting vm_state.
        vm_state: VmState,
        /// Resulting power_state.
        power_state: PowerState,
        /// When.
        at: Timestamp,
    },
    /// `instance.shelved`: SHELVED; `offload` means offloading starts at once.
    Shelved {
        /// Offload now (shelved_offload_time == 0).
        offload: bool,
        /// When.
        at: Timestamp,
    },
    /// `instance.offloaded`: SHELVED_OFFLOADED, host and claim cleared.
    Offloaded {
        /// When.
        at: Timestamp,
    },
    /// `instance.unshelved`: ACTIVE again.
    Unshelved {
        /// When.
        at: Timestamp,
    },
    /// `instance.resize_finished`: VERIFY_RESIZE on the destination.
    ResizeFinished {
        /// When.
        at: Timestamp,
    },
    /// `instance.resize_confirmed`: source released.
    ResizeConfirmed {
        /// When.
        at: Timestamp,
    },
    /// `instance.resize_reverted`: back on the source with the old flavor.
    ResizeReverted {
        /// When.
        at: Timestamp,
    },
    /// `instance.live_migrated`: now on the destination.
    LiveMigrated {
        /// When.
        at: Timestamp,
    },
    /// `instance.locked`
    Locked {
        /// Locked by an admin.
        by_admin: bool,
        reason: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// `instance.unlocked`
    Unlocked {
        /// When.
        at: Timestamp,
    },
    /// `instance.updated`: name / description changed.
    Updated {
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<Option<String>>,
        /// When.
        at: Timestamp,
    },
    /// `instance.state_reset` (admin).
    StateReset {
        /// New vm_state.
        vm_state: VmState,
        /// When.
        at: Timestamp,
    },
    /// `instance.deleted`: gone.
    Deleted {
        /// When.
        at: Timestamp,
    },
    /// `instance.task_failed`: the operation failed or timed out.
    TaskFailed {
        /// Fault recorded.
        fault: Fault,
        /// vm_state to set (None: unchanged).
        vm_state: Option<VmState>,
        /// When.
        at: Timestamp,
    },
    /// `instance.task_retried`: the reconciler re-drives an unanswered operation.
    TaskRetried {
        /// New attempt number.
        attempt: u32,
        /// When.
        at: Timestamp,
    },
    /// `instance.boot_details_recorded` (api subject, in the build request's commit):
    /// what the API shows beside the spec. Changes no state of the aggregate.
    BootDetailsRecorded {
        /// The details.
        details: BootDetails,
    },
    /// `instance.rebuild_started`: task_state `rebuilding`; the image, name, metadata and
    /// key pair change at once (the API answers with them), the rest is for
    /// [`ServerExtras`].
    RebuildStarted {
        /// Operation id.
        op: Uuid,
        /// task_state it sets.
        task: TaskState,
        /// The request.
        rebuild: Box<Rebuild>,
        /// When.
        at: Timestamp,
    },
    /// `instance.task_advanced`: a step of a multi-step task finished and the next one
    /// starts (rebuild: `rebuilding` -> `rebuild_block_device_mapping` ->
    /// `rebuild_spawning`), with a fresh timeout and attempt count.
    TaskAdvanced {
        /// The next task_state.
        task: TaskState,
        /// When.
        at: Timestamp,
    },
    /// `instance.rebuilt`: booted from the new image (`launched_at` is renewed, as
    /// Nova's `_update_instance_after_spawn` does).
    Rebuilt {
        /// ACTIVE, or STOPPED when it was stopped before.
        vm_state: VmState,
        /// RUNNING, or SHUTDOWN when it stays stopped.
        power_state: PowerState,
        /// When.
        at: Timestamp,
    },
    /// `instance.create_extras_recorded` (api subject, in the build request's commit):
    /// what a create request set beside its spec, for the API to show. Changes no state
    /// of the aggregate. (Appended last: postcard encodes the variant's index.)
    CreateExtrasRecorded {
        /// The extras.
        extras: Box<CreateExtras>,
    },
    /// `instance.metadata_updated`: the server's whole metadata after a change through
    /// `/servers/{id}/metadata` (whole, so a fold never depends on the previous value).
    MetadataUpdated {
        /// The metadata now.
        metadata: BTreeMap<String, String>,
        /// When.
        at: Timestamp,
    },
    /// `instance.tags_set`: the server's whole tag set after a change through
    /// `/servers/{id}/tags` (folded into [`ServerExtras::tags`]; the instance state has
    /// no tags, and Nova leaves `updated_at` alone: tags are rows of their own).
    TagsSet {
        /// The tags now.
        tags: BTreeSet<String>,
        /// When.
        at: Timestamp,
    },
    /// `instance.disk_config_set`: `OS-DCF:diskConfig` given with a create, update,
    /// rebuild or resize (in that command's commit; folded into
    /// [`ServerExtras::auto_disk_config`]).
    DiskConfigSet {
        /// AUTO (true) or MANUAL (false).
        auto: bool,
        /// When.
        at: Timestamp,
    },
    /// `instance.snapshot_started`: createImage / createBackup began (task
    /// `image_snapshot_pending` / `image_backup`); the image and the backup rotation are
    /// folded into [`ServerExtras::snapshot`] for the compute agent.
    SnapshotStarted {
        /// Operation id.
        op: Uuid,
        /// `CreateImage` or `CreateBackup`.
        action: Action,
        /// task_state it sets.
        task: TaskState,
        /// What to upload into, and the rotation.
        job: SnapshotJob,
        /// When.
        at: Timestamp,
    },
    /// `instance.unshelve_started`: an unshelve of a SHELVED_OFFLOADED server with a
    /// zone or a host (task `unshelving`, as `task_started`); the zone pin replaces
    /// `spec.availability_zone` and the host becomes `spec.requested_host`, which the
    /// scheduler forces for this unshelve. (Appended last: postcard indexes.)
    UnshelveStarted {
        /// Operation id.
        op: Uuid,
        /// `None`: unchanged; `Some(None)`: unpinned; `Some(Some(az))`: pinned.
        availability_zone: Option<Option<String>>,
        /// Requested host.
        host: Option<HostName>,
        /// When.
        at: Timestamp,
    },
    /// `instance.crash_dump_triggered`: `trigger_crash_dump` was sent to the guest
    /// (no state changes, as in Nova). (Appended last: postcard indexes.)
    CrashDumpTriggered {
        /// When.
        at: Timestamp,
    },
    /// `instance.evacuation_started`: evacuate accepted (task `rebuilding`, action
    /// `evacuate`); the migration (kind evacuation) names the source and any requested
    /// host; the scheduler claims a destination, whose compute agent rebuilds the
    /// guest. (Appended last: postcard indexes.)
    EvacuationStarted {
        /// Operation id.
        op: Uuid,
        /// The migration record.
        migration: Box<Migration>,
        /// When.
        at: Timestamp,
    },
    /// `instance.evacuated`: rebuilt on the destination, which is now its host (the
    /// source claim is released); `launched_at` renewed as by a rebuild.
    Evacuated {
        /// ACTIVE or STOPPED (see [`MigrationKind::Evacuation`]).
        vm_state: VmState,
        /// RUNNING or SHUTDOWN.
        power_state: PowerState,
        /// When.
        at: Timestamp,
    },
    /// `instance.access_updated`: PUT /servers/{id} changed `accessIPv4` / `accessIPv6`
    /// or (2.90) `hostname`, in the update's commit; folded into [`ServerExtras`].
    AccessUpdated {
        /// What changed.
        change: AccessChange,
        /// When.
        at: Timestamp,
    },
    /// `instance.rescue_started`: rescue accepted (task `rescuing`, as `task_started`
    /// with action rescue), with the requested rescue image (None: the server's own),
    /// which Nova's rescue notifications carry. (Appended last: postcard indexes.)
    RescueStarted {
        /// Operation id.
        op: Uuid,
        /// `rescue_image_ref` as requested.
        image_ref: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// `instance.security_groups_requested`: the security groups the server's ports
    /// get (the create's `security_groups`, resolved to the project's groups by name or
    /// id; `default` when none was named), recorded in the build request's commit and
    /// folded into [`ServerExtras::security_groups`]. (Appended last: postcard indexes.)
    SecurityGroupsRequested {
        /// The groups, in request order.
        groups: Vec<SecurityGroupId>,
        /// When.
        at: Timestamp,
    },
    /// `instance.power_state_changed`: the compute agent observed the guest in another
    /// power state than the log's while no operation was in flight (Nova's power-state
    /// sync; see [`power_sync`]). (Appended last: postcard indexes.)
    PowerStateChanged {
        /// The observed power state.
        power_state: PowerState,
        /// When.
        at: Timestamp,
    },
}

/// The access addresses and hostname a server update (PUT /servers/{id}) sets: the
/// payload of `instance.access_updated`, so its shape is frozen (postcard).
/// `Some(None)` clears an address (Nova accepts `""`), `None` leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessChange {
    pub access_ip_v4: Option<Option<String>>,
    pub access_ip_v6: Option<Option<String>>,
    /// `hostname` (2.90+).
    pub hostname: Option<String>,
}

impl AccessChange {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == AccessChange::default()
    }
}

/// createBackup's arguments that outlive the request: the rotation applies once the
/// backup is uploaded (Nova's `_rotate_backups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRequest {
    /// `backup_type` (also the image's `backup_type` property).
    pub backup_type: String,
    /// How many backups of this type to keep for the server.
    pub rotation: u32,
}

/// A snapshot in progress: where the compute agent uploads, and what it rotates after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotJob {
    /// The image record (created `queued` by the API before the action).
    pub image: ImageId,
    /// createBackup's rotation (None: createImage).
    pub backup: Option<BackupRequest>,
}

/// What a reactor should do for an instance, derived from its state alone
/// (reactors are level-triggered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Choose a cell and host for a build request.
    ScheduleBuild,
    /// Write the first cell commit of a mapped build request.
    Place,
    /// Choose a destination for a migration or an unshelve.
    ScheduleDestination,
    /// A compute agent on `host` must perform `task`.
    Compute {
        /// Host that acts.
        host: HostName,
        /// The task.
        task: TaskState,
    },
}

impl Instance {
    /// Id.
    pub fn id(&self) -> InstanceId {
        self.spec.id
    }

    /// API status.
    pub fn status(&self) -> &'static str {
        if self.deleted {
            return "DELETED";
        }
        crate::states::api_status(self.vm_state, self.task_state)
    }

    /// Whether it rests soft-deleted: SOFT_DELETED, idle, not yet reclaimed. Nova's
    /// counting quotas do not count it (a restore is admitted again).
    pub fn is_soft_deleted(&self) -> bool {
        self.vm_state == VmState::SoftDeleted && !self.deleted && self.task_state.is_none()
    }

    /// Whether a soft-deleted, idle instance has waited `reclaim_instance_interval`
    /// since its soft delete began (Nova's `_reclaim_queued_deletes` compares
    /// `deleted_at`; a rename or lock meanwhile does not restart the clock).
    pub fn reclaim_due(&self, cfg: &Config, now: Timestamp) -> bool {
        let since = self.deleted_at.unwrap_or(self.updated_at);
        self.is_soft_deleted()
            && cfg.reclaim_instance_interval > 0
            && now >= since.plus_secs(cfg.reclaim_instance_interval)
    }

    /// The evacuation in progress, if any.
    pub fn evacuation(&self) -> Option<&Migration> {
        self.migration.as_ref().filter(|m| m.kind.is_evacuation())
    }

    /// Whether the current operation is choosing a host.
    pub fn is_scheduling(&self) -> bool {
        matches!(
            self.work(),
            Some(Work::ScheduleBuild | Work::Place | Work::ScheduleDestination)
        )
    }

    /// The (host, claim) pairs this instance holds; every other claim of it may be released.
    pub fn held_claims(&self) -> Vec<(HostName, ClaimId)> {
        let mut v: Vec<(HostName, ClaimId)> = Vec::new();
        if self.deleted {
            return v;
        }
        let mut push = |h: &HostName, c: ClaimId| {
            if !v.iter().any(|(hh, cc)| hh == h && *cc == c) {
                v.push((h.clone(), c));
            }
        };
        if let (Some(h), Some(c)) = (&self.host, self.claim) {
            push(h, c);
        }
        if let Some(m) = &self.migration {
            if let Some(c) = m.source_claim {
                push(&m.source_host, c);
            }
            if let (Some(h), Some(c)) = (&m.dest_host, m.dest_claim) {
                push(h, c);
            }
        }
        v
    }

    /// What has to happen next, if anything.
    pub fn work(&self) -> Option<Work> {
        if self.deleted {
            return None;
        }
        if !self.placed {
            if self.cell.is_some() {
                return Some(Work::Place);
            }
            return (self.task_state == Some(TaskState::Scheduling)).then_some(Work::ScheduleBuild);
        }
        let task = self.task_state?;
        let on_host = |h: &Option<HostName>| h.clone().map(|host| Work::Compute { host, task });
        match task {
            TaskState::Scheduling => None,
            TaskState::ResizePrep => Some(Work::ScheduleDestination),
            TaskState::Migrating => match &self.migration {
                Some(m) if m.dest_host.is_none() => Some(Work::ScheduleDestination),
                _ => on_host(&self.host),
            },
            TaskState::ResizeMigrating => {
                on_host(&self.migration.as_ref().and_then(|m| m.dest_host.clone()))
            }
            TaskState::Unshelving if self.vm_state == VmState::ShelvedOffloaded => {
                Some(Work::ScheduleDestination)
            }
            // An evacuation: schedule, then the destination's agent rebuilds the guest.
            TaskState::Rebuilding
            | TaskState::RebuildBlockDeviceMapping
            | TaskState::RebuildSpawning
                if self.evacuation().is_some() =>
            {
                match self.migration.as_ref().and_then(|m| m.dest_host.clone()) {
                    None => Some(Work::ScheduleDestination),
                    dest => on_host(&dest),
                }
            }
            _ => on_host(&self.host),
        }
    }
}

fn start_task(op: Uuid, action: Action, task: TaskState, at: Timestamp) -> Vec<InstanceEvent> {
    vec![InstanceEvent::TaskStarted {
        op,
        action,
        task,
        at,
    }]
}

fn fault(code: u16, message: impl Into<String>, at: Timestamp) -> Fault {
    let message = message.into();
    Fault {
        code,
        details: message.clone(),
        message,
        created: at,
    }
}

/// Validates a server name (Nova: 1-255 chars, not only whitespace... we also refuse
/// control characters).
pub fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= 255 && !name.chars().any(|c| c.is_control())
}

/// Decides an instance command against the effective state.
pub fn decide(
    state: Option<&Instance>,
    cmd: InstanceCommand,
    ctx: &Ctx,
    cfg: &Config,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand as C;
    use VmState as V;
    let now = ctx.now;
    let op = ctx.op_id;

    if let C::WithAccess(inner, change) = cmd {
        let mut events = decide(state, *inner, ctx, cfg)?;
        if !change.is_empty() {
            events.push(InstanceEvent::AccessUpdated { change, at: now });
        }
        return Ok(events);
    }
    if let C::WithSecurityGroups(inner, groups) = cmd {
        let mut events = decide(state, *inner, ctx, cfg)?;
        events.push(InstanceEvent::SecurityGroupsRequested { groups, at: now });
        return Ok(events);
    }
    if let C::WithDiskConfig(inner, auto) = cmd {
        let mut events = decide(state, *inner, ctx, cfg)?;
        events.push(InstanceEvent::DiskConfigSet { auto, at: now });
        return Ok(events);
    }
    if let C::Create(spec, details, extras, tags) = cmd {
        if state.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "Instance",
                id: spec.id.to_string(),
            });
        }
        if !valid_name(&spec.name) {
            return Err(DomainError::BadRequest("Invalid server name".into()));
        }
        let mut events = vec![InstanceEvent::BuildRequested { spec, op, at: now }];
        if !details.is_empty() {
            events.push(InstanceEvent::BootDetailsRecorded { details });
        }
        if !extras.is_empty() {
            events.push(InstanceEvent::CreateExtrasRecorded { extras });
        }
        if tags.len() > tags::MAX_TAGS {
            return Err(DomainError::BadRequest(format!(
                "The number of tags exceeded the per-server limit {}",
                tags::MAX_TAGS
            )));
        }
        if !tags.is_empty() {
            events.push(InstanceEvent::TagsSet { tags, at: now });
        }
        return Ok(events);
    }

    let Some(i) = state.filter(|i| !i.deleted) else {
        return match cmd {
            // Reactor answers about a gone instance change nothing.
            C::Map { .. }
            | C::Place
            | C::Scheduled { .. }
            | C::ScheduleFailed { .. }
            | C::Complete { .. }
            | C::Fail { .. }
            | C::SyncPowerState { .. }
            | C::Tick => Ok(vec![]),
            _ => Err(DomainError::NotFound {
                kind: "Instance",
                id: state.map(|i| i.id().to_string()).unwrap_or_default(),
            }),
        };
    };

    // Between `mapped` and `placed` (a few microseconds of scheduler work) user commands
    // would land on the wrong subject: refuse them as Nova refuses an instance not ready.
    let user_cmd = cmd.action().is_some();
    if user_cmd && i.cell.is_some() && !i.placed {
        return Err(DomainError::NotReady {
            id: i.id().to_string(),
        });
    }

    if let C::SyncPowerState { observed } = cmd {
        return Ok(power_sync::plan(i, observed)
            .and_then(|p| p.record)
            .map(|power_state| InstanceEvent::PowerStateChanged {
                power_state,
                at: now,
            })
            .into_iter()
            .collect());
    }

    if let Some(rule) = cmd.action().and_then(rules::rule) {
        rule.check(i, ctx)?;
        return ruled(i, rule, cmd, op, now, cfg);
    }

    let current_op = |o: Uuid| i.op.is_some_and(|x| x.id == o);

    match cmd {
        C::Create(..)
        | C::WithDiskConfig(..)
        | C::WithAccess(..)
        | C::WithSecurityGroups(..)
        | C::SyncPowerState { .. } => {
            unreachable!("handled above")
        }
        // Every other user action has a row in the table (decided above); these name
        // one so the match stays exhaustive, but reach here only if a row is missing.
        C::Start
        | C::Stop
        | C::Pause
        | C::Unpause
        | C::Suspend
        | C::Resume
        | C::Reboot { .. }
        | C::Shelve
        | C::ShelveOffload
        | C::Unshelve { .. }
        | C::Resize { .. }
        | C::Migrate { .. }
        | C::ConfirmResize
        | C::RevertResize
        | C::LiveMigrate { .. }
        | C::Delete
        | C::ChangePassword
        | C::Rebuild(_)
        | C::SetMetadata { .. }
        | C::DeleteMetadata { .. }
        | C::Snapshot { .. }
        | C::Rescue { .. }
        | C::Unrescue
        | C::Restore
        | C::ForceDelete
        | C::UnshelveTo { .. }
        | C::Evacuate { .. }
        | C::TriggerCrashDump => Err(DomainError::Conflict(format!(
            "No rule for this action on instance {}",
            i.id()
        ))),
        C::Lock { reason } => {
            if reason.as_ref().is_some_and(|r| r.chars().count() > 255) {
                return Err(DomainError::BadRequest("locked_reason is too long".into()));
            }
            if i.locked.is_some() {
                return Ok(vec![]);
            }
            Ok(vec![InstanceEvent::Locked {
                by_admin: ctx.is_admin && ctx.project_id != i.spec.project_id,
                reason,
                at: now,
            }])
        }
        C::Unlock => match &i.locked {
            None => Ok(vec![]),
            Some(l) if l.by_admin && !ctx.is_admin => Err(DomainError::Forbidden(format!(
                "Instance {} was locked by an administrator and cannot be unlocked by its owner",
                i.id()
            ))),
            Some(_) => Ok(vec![InstanceEvent::Unlocked { at: now }]),
        },
        C::ResetState { state } => {
            if !ctx.is_admin {
                return Err(DomainError::Forbidden(
                    "Policy doesn't allow os_compute_api:os-admin-actions:reset_state to be performed."
                        .into(),
                ));
            }
            if !matches!(state, V::Active | V::Error) {
                return Err(DomainError::BadRequest(
                    "Invalid input for field/attribute state.".into(),
                ));
            }
            Ok(vec![InstanceEvent::StateReset {
                vm_state: state,
                at: now,
            }])
        }
        C::Update { name, description } => {
            if let Some(n) = &name {
                if !valid_name(n) {
                    return Err(DomainError::BadRequest("Invalid server name".into()));
                }
            }
            if let Some(Some(d)) = &description {
                if d.chars().count() > 255 || d.chars().any(|c| c.is_control() && c != '\n') {
                    return Err(DomainError::BadRequest("Invalid description".into()));
                }
            }
            if name.is_none() && description.is_none() {
                return Ok(vec![]);
            }
            Ok(vec![InstanceEvent::Updated {
                name,
                description,
                at: now,
            }])
        }

        // ---- reactor commands: answer only the current operation ----
        C::Map {
            op: o,
            cell,
            host,
            fault: f,
            fault_details,
        } => {
            if i.placed || i.cell.is_some() || !current_op(o) {
                return Ok(vec![]);
            }
            Ok(vec![InstanceEvent::Mapped {
                cell,
                host,
                fault: f.map(|m| {
                    let mut f = fault(500, m, now);
                    if let Some(d) = fault_details {
                        f.details = d;
                    }
                    f
                }),
                at: now,
            }])
        }
        C::Place => {
            if i.placed || i.cell.is_none() {
                return Ok(vec![]);
            }
            let mut snap = i.clone();
            snap.placed = true;
            snap.updated_at = now;
            match i.host.clone() {
                Some(_) => {
                    snap.task_state = Some(TaskState::Spawning);
                    Ok(vec![InstanceEvent::Placed {
                        snapshot: Box::new(snap),
                        at: now,
                    }])
                }
                None => {
                    snap.vm_state = V::Error;
                    snap.task_state = None;
                    snap.op = None;
                    snap.fault = i.pending_fault.clone().or_else(|| i.fault.clone());
                    snap.pending_fault = None;
                    Ok(vec![InstanceEvent::BuildFailed {
                        snapshot: Box::new(snap),
                        at: now,
                    }])
                }
            }
        }
        C::Scheduled { op: o, host, claim } => {
            if !current_op(o) || i.work() != Some(Work::ScheduleDestination) {
                return Ok(vec![]);
            }
            let task = match i.task_state {
                Some(TaskState::ResizePrep) => TaskState::ResizeMigrating,
                Some(TaskState::Migrating) => TaskState::Migrating,
                Some(TaskState::Rebuilding) => TaskState::Rebuilding,
                _ => TaskState::Spawning,
            };
            Ok(vec![InstanceEvent::DestinationScheduled {
                host,
                claim,
                task,
                at: now,
            }])
        }
        C::ScheduleFailed { op: o, reason } => {
            if !current_op(o) || i.work() != Some(Work::ScheduleDestination) {
                return Ok(vec![]);
            }
            // Nova's conductor sets an evacuation without a destination to ERROR.
            let vm_state = i.evacuation().map(|_| V::Error);
            Ok(vec![InstanceEvent::TaskFailed {
                fault: fault(500, format!("No valid host was found. {reason}"), now),
                vm_state,
                at: now,
            }])
        }
        C::Complete { op: o, task } => {
            if !current_op(o) || i.task_state != Some(task) {
                return Ok(vec![]);
            }
            Ok(complete(i, task, cfg, now))
        }
        C::Fail {
            op: o,
            task,
            message,
        } => {
            if !current_op(o) || i.task_state != Some(task) {
                return Ok(vec![]);
            }
            Ok(fail(i, task, fault(500, message, now), now))
        }
        C::Tick => {
            if let (Some(o), Some(task)) = (i.op, i.task_state) {
                if now.0.saturating_sub(o.since.0) < cfg.task_timeout_secs.saturating_mul(1_000_000)
                {
                    return Ok(vec![]);
                }
                if o.attempt < cfg.max_attempts {
                    return Ok(vec![InstanceEvent::TaskRetried {
                        attempt: o.attempt + 1,
                        at: now,
                    }]);
                }
                let f = fault(
                    500,
                    format!(
                        "Timed out: no answer for task_state {} after {} attempts",
                        task.as_str(),
                        o.attempt
                    ),
                    now,
                );
                return Ok(fail(i, task, f, now));
            }
            if i.vm_state == V::Shelved
                && i.task_state.is_none()
                && cfg.shelved_offload_time > 0
                && i.shelved_at
                    .is_some_and(|t| now >= t.plus_secs(cfg.shelved_offload_time))
            {
                if i.host.is_none() {
                    return Ok(vec![InstanceEvent::Offloaded { at: now }]);
                }
                return Ok(start_task(
                    op,
                    Action::ShelveOffload,
                    TaskState::ShelvingOffloading,
                    now,
                ));
            }
            if i.reclaim_due(cfg, now) {
                // Nova's `_reclaim_queued_deletes`: the compute deletes it for good.
                if i.host.is_none() {
                    return Ok(vec![InstanceEvent::Deleted { at: now }]);
                }
                return Ok(start_task(op, Action::Delete, TaskState::Deleting, now));
            }
            Ok(vec![])
        }
    }
}

/// An action allowed by its row: the validations Nova does beyond its decorators, then
/// the events of the row's effect.
fn ruled(
    i: &Instance,
    rule: &rules::Rule,
    cmd: InstanceCommand,
    op: Uuid,
    now: Timestamp,
    cfg: &Config,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand as C;
    let action = rule.action;
    let mut new_flavor = None;
    let mut requested_host = None;
    let mut rebuild = None;
    let mut snapshot = None;
    match cmd {
        C::ShelveOffload if i.host.is_none() => {
            return Ok(vec![InstanceEvent::Offloaded { at: now }]);
        }
        C::Unshelve {
            availability_zone: Some(az),
        } => {
            return unshelve_to(i, Some(Some(az)), None, op, now);
        }
        C::UnshelveTo {
            availability_zone,
            host,
        } => {
            return unshelve_to(i, availability_zone, host, op, now);
        }
        C::TriggerCrashDump => {
            return Ok(vec![InstanceEvent::CrashDumpTriggered { at: now }]);
        }
        C::Evacuate {
            host,
            stop,
            source_up,
        } => return evacuation_started(i, host, stop, source_up, op, now),
        C::Resize { flavor } => {
            if flavor.spec.id == i.flavor.spec.id {
                return Err(DomainError::BadRequest(
                    "When resizing, instances must change flavor!".into(),
                ));
            }
            if !i.spec.boot_from_volume && flavor.spec.disk_gb < i.flavor.spec.disk_gb {
                return Err(DomainError::BadRequest(
                    "Resizing to a smaller disk flavor is not allowed.".into(),
                ));
            }
            new_flavor = Some(flavor);
        }
        C::Migrate { host } => {
            if host.is_some() && host == i.host {
                return Err(DomainError::BadRequest(format!(
                    "The target host can't be the same one. Instance {} is already on {}",
                    i.id(),
                    i.host.as_ref().map(|h| h.as_str()).unwrap_or("")
                )));
            }
            requested_host = host;
        }
        C::LiveMigrate { host } => {
            if host.is_some() && host == i.host {
                return Err(DomainError::BadRequest(format!(
                    "The source and destination hosts are the same for instance {}",
                    i.id()
                )));
            }
            requested_host = host;
        }
        C::Delete | C::ForceDelete => {
            if i.task_state == Some(TaskState::Deleting) {
                return Ok(vec![]);
            }
            if i.host.is_none() {
                return Ok(vec![InstanceEvent::Deleted { at: now }]);
            }
            // Nova's API soft-deletes when `reclaim_instance_interval` is set, and
            // falls back to a delete when the soft delete's state check refuses (never
            // launched). A repeated DELETE of a soft-deleted (or soft-deleting) server
            // changes nothing.
            if matches!(cmd, C::Delete) && cfg.reclaim_instance_interval > 0 {
                if i.vm_state == VmState::SoftDeleted
                    || i.task_state == Some(TaskState::SoftDeleting)
                {
                    return Ok(vec![]);
                }
                // A server being moved (or waiting for confirmation) is deleted for
                // good: a soft-deleted server holds no migration.
                if i.launched_at.is_some() && i.migration.is_none() {
                    return Ok(start_task(
                        op,
                        Action::SoftDelete,
                        TaskState::SoftDeleting,
                        now,
                    ));
                }
            }
        }
        // Without a host (it was soft-deleted while offloaded), Nova's `restore` sets
        // the vm_state at once.
        C::Restore if i.host.is_none() => {
            return Ok(vec![InstanceEvent::ActionCompleted {
                action: Action::Restore,
                vm_state: VmState::Active,
                power_state: i.power_state,
                at: now,
            }]);
        }
        C::Rescue { .. } if i.spec.boot_from_volume => {
            return Err(DomainError::BadRequest(format!(
                "Instance {} cannot be rescued: Cannot rescue a volume-backed instance",
                i.id()
            )));
        }
        // As `task_started`, with the rescue image (the notifications carry it).
        C::Rescue { image_ref } => {
            return Ok(vec![InstanceEvent::RescueStarted {
                op,
                image_ref,
                at: now,
            }]);
        }
        C::Rebuild(r) => {
            if r.name.as_deref().is_some_and(|n| !valid_name(n)) {
                return Err(DomainError::BadRequest("Invalid server name".into()));
            }
            rebuild = Some(r);
        }
        C::SetMetadata {
            items,
            replace,
            limit,
        } => {
            let metadata = if replace {
                items
            } else {
                let mut m = i.spec.metadata.clone();
                m.extend(items);
                m
            };
            if limit >= 0 && metadata.len() as i64 > limit {
                return Err(DomainError::Forbidden(format!(
                    "Maximum number of metadata items exceeds {limit}"
                )));
            }
            return Ok(metadata_updated(i, metadata, now));
        }
        C::Snapshot { image, backup } => snapshot = Some(SnapshotJob { image, backup }),
        C::DeleteMetadata { key } => {
            let mut metadata = i.spec.metadata.clone();
            if metadata.remove(&key).is_none() {
                return Err(DomainError::Missing("Metadata item was not found".into()));
            }
            return Ok(metadata_updated(i, metadata, now));
        }
        _ => {}
    }
    Ok(match rule.effect {
        rules::Effect::StartTask(task) => start_task(op, action, task, now),
        rules::Effect::StartMigration(kind) => {
            let f = new_flavor.unwrap_or_else(|| i.flavor.clone());
            migration_started(i, op, action, kind, f, requested_host, now)
        }
        rules::Effect::ConfirmResize => vec![InstanceEvent::ResizeConfirmed { at: now }],
        // Recorded by the command's arm above.
        rules::Effect::Record => vec![],
        rules::Effect::StartTaskWithRequest(task) => match (rebuild, snapshot) {
            (Some(rebuild), _) => vec![InstanceEvent::RebuildStarted {
                op,
                task,
                rebuild,
                at: now,
            }],
            (None, Some(job)) => vec![InstanceEvent::SnapshotStarted {
                op,
                action,
                task,
                job,
                at: now,
            }],
            (None, None) => start_task(op, action, task, now),
        },
    })
}

/// Unshelve with a zone or a host (Nova's `unshelve` with `new_az` / `host`): only a
/// SHELVED_OFFLOADED server (else `UnshelveInstanceInvalidState`, a 409); the zone pin
/// and the requested host are recorded for the scheduler in `instance.unshelve_started`.
fn unshelve_to(
    i: &Instance,
    availability_zone: Option<Option<String>>,
    host: Option<HostName>,
    op: Uuid,
    at: Timestamp,
) -> Result<Vec<InstanceEvent>, DomainError> {
    if i.vm_state != VmState::ShelvedOffloaded {
        return Err(DomainError::Conflict(format!(
            "Specifying an availability zone or a host when unshelving server \"{}\" with status \"{}\" is not supported. The server status must be SHELVED_OFFLOADED.",
            i.id(),
            i.status()
        )));
    }
    Ok(vec![InstanceEvent::UnshelveStarted {
        op,
        availability_zone,
        host,
        at,
    }])
}

/// Nova's `evacuate` after its state check: the source's compute service must be down
/// (`ComputeServiceInUse`, 400), and, as its `instance.save(expected_task_state=None)`,
/// no task may be in progress (409).
fn evacuation_started(
    i: &Instance,
    host: Option<HostName>,
    stop: bool,
    source_up: bool,
    op: Uuid,
    at: Timestamp,
) -> Result<Vec<InstanceEvent>, DomainError> {
    let source = i.host.clone().expect("checked by needs_host");
    if source_up {
        return Err(DomainError::BadRequest(format!(
            "Compute service of {source} is still in use."
        )));
    }
    if let Some(t) = i.task_state {
        return Err(DomainError::Conflict(format!(
            "Conflict updating instance {}. Expected: {{'task_state': [None]}}. Actual: {{'task_state': '{}'}}",
            i.id(),
            t.as_str()
        )));
    }
    Ok(vec![InstanceEvent::EvacuationStarted {
        op,
        migration: Box::new(Migration {
            id: MigrationId(op),
            kind: MigrationKind::Evacuation { stop },
            source_host: source,
            source_claim: i.claim,
            dest_host: None,
            dest_claim: None,
            requested_host: host,
            old_flavor: i.flavor.clone(),
            new_flavor: i.flavor.clone(),
            old_vm_state: i.vm_state,
            old_power_state: i.power_state,
        }),
        at,
    }])
}

/// `instance.metadata_updated` when `metadata` differs from the current one.
fn metadata_updated(
    i: &Instance,
    metadata: BTreeMap<String, String>,
    at: Timestamp,
) -> Vec<InstanceEvent> {
    if metadata == i.spec.metadata {
        return vec![];
    }
    vec![InstanceEvent::MetadataUpdated { metadata, at }]
}

fn migration_started(
    i: &Instance,
    op: Uuid,
    action: Action,
    kind: MigrationKind,
    new_flavor: FlavorSnapshot,
    requested_host: Option<HostName>,
    now: Timestamp,
) -> Vec<InstanceEvent> {
    let task = if kind == MigrationKind::LiveMigration {
        TaskState::Migrating
    } else {
        TaskState::ResizePrep
    };
    vec![InstanceEvent::MigrationStarted {
        op,
        action,
        task,
        migration: Box::new(Migration {
            id: MigrationId(op),
            kind,
            source_host: i.host.clone().expect("checked by needs_host"),
            source_claim: i.claim,
            dest_host: None,
            dest_claim: None,
            requested_host,
            old_flavor: i.flavor.clone(),
            new_flavor,
            old_vm_state: i.vm_state,
            old_power_state: i.power_state,
        }),
        at: now,
    }]
}

fn complete(i: &Instance, task: TaskState, cfg: &Config, at: Timestamp) -> Vec<InstanceEvent> {
    use InstanceEvent as E;
    use PowerState as P;
    use VmState as V;
    let done = |action, vm_state, power_state| {
        vec![E::ActionCompleted {
            action,
            vm_state,
            power_state,
            at,
        }]
    };
    let action = i.op.map(|o| o.action).unwrap_or(Action::Create);
    // A volume-backed server is shelved without an image (Nova offloads it at once).
    let imageless_shelve = task == TaskState::Shelving && i.spec.boot_from_volume;
    if let Some(next) = rules::next_step(task).filter(|_| !imageless_shelve) {
        return vec![E::TaskAdvanced { task: next, at }];
    }
    if let Some((vm_state, power_state)) = rules::settles(task) {
        return done(action, vm_state, power_state);
    }
    match task {
        TaskState::Spawning if action == Action::Unshelve => vec![E::Unshelved { at }],
        TaskState::Spawning => vec![E::Spawned { at }],
        // An evacuation lands stopped when asked (2.95) or when it was stopped.
        TaskState::RebuildSpawning if i.evacuation().is_some() => {
            let stop = matches!(
                i.evacuation().map(|m| m.kind),
                Some(MigrationKind::Evacuation { stop: true })
            );
            let (vm_state, power_state) = if stop || i.vm_state == V::Stopped {
                (V::Stopped, P::Shutdown)
            } else {
                (V::Active, P::Running)
            };
            vec![E::Evacuated {
                vm_state,
                power_state,
                at,
            }]
        }
        // Nova keeps a stopped instance stopped; from active or error it ends active.
        TaskState::RebuildSpawning if i.vm_state == V::Stopped => vec![E::Rebuilt {
            vm_state: V::Stopped,
            power_state: P::Shutdown,
            at,
        }],
        TaskState::RebuildSpawning => vec![E::Rebuilt {
            vm_state: V::Active,
            power_state: P::Running,
            at,
        }],
        TaskState::Shelving | TaskState::ShelvingImageUploading => vec![E::Shelved {
            offload: cfg.shelved_offload_time == 0,
            at,
        }],
        TaskState::ShelvingOffloading => vec![E::Offloaded { at }],
        TaskState::Unshelving => vec![E::Unshelved { at }],
        TaskState::ResizeMigrating => vec![E::ResizeFinished { at }],
        TaskState::ResizeReverting => vec![E::ResizeReverted { at }],
        TaskState::Migrating => vec![E::LiveMigrated { at }],
        TaskState::Deleting => vec![E::Deleted { at }],
        // The snapshot is uploaded: the server is as it was.
        TaskState::ImageUploading => done(action, i.vm_state, i.power_state),
        // Settled or stepped above; scheduling tasks are answered by the scheduler.
        TaskState::Pausing
        | TaskState::UpdatingPassword
        | TaskState::Unpausing
        | TaskState::Suspending
        | TaskState::Resuming
        | TaskState::PoweringOff
        | TaskState::PoweringOn
        | TaskState::Rebooting
        | TaskState::RebootingHard
        | TaskState::Rebuilding
        | TaskState::RebuildBlockDeviceMapping
        | TaskState::Scheduling
        | TaskState::ResizePrep
        | TaskState::ImageSnapshotPending
        | TaskState::ImageSnapshot
        | TaskState::ImagePendingUpload
        | TaskState::ImageBackup
        | TaskState::ShelvingImagePendingUpload
        | TaskState::Rescuing
        | TaskState::Unrescuing
        | TaskState::SoftDeleting
        | TaskState::Restoring => vec![],
    }
}

fn fail(i: &Instance, task: TaskState, fault: Fault, at: Timestamp) -> Vec<InstanceEvent> {
    let action = i.op.map(|o| o.action).unwrap_or(Action::Create);
    match task {
        TaskState::Scheduling | TaskState::Spawning if action == Action::Create => {
            vec![InstanceEvent::SpawnFailed { fault, at }]
        }
        TaskState::Spawning | TaskState::Unshelving if i.vm_state == VmState::ShelvedOffloaded => {
            vec![InstanceEvent::TaskFailed {
                fault,
                vm_state: Some(VmState::ShelvedOffloaded),
                at,
            }]
        }
        t if rules::FAILS_TO_ERROR.contains(&t) => {
            vec![InstanceEvent::TaskFailed {
                fault,
                vm_state: Some(VmState::Error),
                at,
            }]
        }
        _ => vec![InstanceEvent::TaskFailed {
            fault,
            vm_state: None,
            at,
        }],
    }
}

/// Applies an instance event. Total: never fails, never panics.
pub fn evolve(state: Option<Instance>, ev: &InstanceEvent) -> Option<Instance> {
    use InstanceEvent as E;
    match ev {
        E::BuildRequested { spec, op, at } => Some(Instance {
            flavor: spec.flavor.clone(),
            spec: (**spec).clone(),
            vm_state: VmState::Building,
            task_state: Some(TaskState::Scheduling),
            power_state: PowerState::NoState,
            cell: None,
            placed: false,
            host: None,
            claim: None,
            locked: None,
            created_at: *at,
            updated_at: *at,
            launched_at: None,
            terminated_at: None,
            shelved_at: None,
            rescue_image_ref: None,
            deleted_at: None,
            fault: None,
            op: Some(Operation {
                id: *op,
                action: Action::Create,
                since: *at,
                attempt: 1,
            }),
            migration: None,
            pending_fault: None,
            deleted: false,
        }),
        E::Placed { snapshot, .. } | E::BuildFailed { snapshot, .. } => Some((**snapshot).clone()),
        _ => {
            let mut i = state?;
            apply(&mut i, ev);
            Some(i)
        }
    }
}

fn finish(i: &mut Instance, at: Timestamp) {
    i.task_state = None;
    i.op = None;
    i.updated_at = at;
}

fn apply(i: &mut Instance, ev: &InstanceEvent) {
    use InstanceEvent as E;
    match ev {
        E::BuildRequested { .. } | E::Placed { .. } | E::BuildFailed { .. } => {}
        E::Mapped {
            cell,
            host,
            fault,
            at,
        } => {
            i.cell = Some(cell.clone());
            if let Some((h, c)) = host {
                i.host = Some(h.clone());
                i.claim = Some(*c);
            }
            i.pending_fault = fault.clone();
            i.updated_at = *at;
        }
        E::Spawned { at } => {
            i.vm_state = VmState::Active;
            i.power_state = PowerState::Running;
            i.launched_at = Some(*at);
            finish(i, *at);
        }
        E::SpawnFailed { fault, at } => {
            i.vm_state = VmState::Error;
            i.host = None;
            i.claim = None;
            i.fault = Some(fault.clone());
            finish(i, *at);
        }
        E::TaskStarted {
            op,
            action,
            task,
            at,
        } => {
            i.task_state = Some(*task);
            i.op = Some(Operation {
                id: *op,
                action: *action,
                since: *at,
                attempt: 1,
            });
            match action {
                Action::SoftDelete => i.deleted_at = Some(*at),
                Action::Restore => i.deleted_at = None,
                Action::Unrescue => i.rescue_image_ref = None,
                _ => {}
            }
            i.updated_at = *at;
        }
        E::MigrationStarted {
            op,
            action,
            task,
            migration,
            at,
        } => {
            i.task_state = Some(*task);
            i.op = Some(Operation {
                id: *op,
                action: *action,
                since: *at,
                attempt: 1,
            });
            i.migration = Some((**migration).clone());
            i.updated_at = *at;
        }
        E::DestinationScheduled {
            host,
            claim,
            task,
            at,
        } => {
            match &mut i.migration {
                Some(m) if i.vm_state != VmState::ShelvedOffloaded => {
                    m.dest_host = Some(host.clone());
                    m.dest_claim = Some(*claim);
                }
                _ => {
                    i.host = Some(host.clone());
                    i.claim = Some(*claim);
                }
            }
            i.task_state = Some(*task);
            if let Some(o) = &mut i.op {
                o.since = *at;
            }
            i.updated_at = *at;
        }
        E::ActionCompleted {
            vm_state,
            power_state,
            at,
            ..
        } => {
            i.vm_state = *vm_state;
            i.power_state = *power_state;
            if *vm_state != VmState::SoftDeleted {
                i.deleted_at = None;
            }
            finish(i, *at);
        }
        E::Shelved { offload, at } => {
            i.vm_state = VmState::Shelved;
            i.power_state = PowerState::Shutdown;
            i.shelved_at = Some(*at);
            if *offload {
                i.task_state = Some(TaskState::ShelvingOffloading);
                if let Some(o) = &mut i.op {
                    o.action = Action::ShelveOffload;
                    o.since = *at;
                }
                i.updated_at = *at;
            } else {
                finish(i, *at);
            }
        }
        E::Offloaded { at } => {
            // A requested host applies to one scheduling (the build's, an unshelve's):
            // a later unshelve is scheduled anew unless it names one.
            i.spec.requested_host = None;
            i.vm_state = VmState::ShelvedOffloaded;
            i.power_state = PowerState::Shutdown;
            i.host = None;
            i.claim = None;
            finish(i, *at);
        }
        E::Unshelved { at } => {
            i.vm_state = VmState::Active;
            i.power_state = PowerState::Running;
            i.shelved_at = None;
            finish(i, *at);
        }
        E::ResizeFinished { at } => {
            if let Some(m) = &i.migration {
                i.host = m.dest_host.clone();
                i.claim = m.dest_claim;
                i.flavor = m.new_flavor.clone();
            }
            i.vm_state = VmState::Resized;
            finish(i, *at);
        }
        E::ResizeConfirmed { at } => {
            i.vm_state = if i.power_state == PowerState::Shutdown {
                VmState::Stopped
            } else {
                VmState::Active
            };
            i.migration = None;
            finish(i, *at);
        }
        E::ResizeReverted { at } => {
            if let Some(m) = i.migration.take() {
                i.host = Some(m.source_host);
                i.claim = m.source_claim;
                i.flavor = m.old_flavor;
                i.vm_state = m.old_vm_state;
                i.power_state = m.old_power_state;
            } else {
                i.vm_state = VmState::Active;
            }
            finish(i, *at);
        }
        E::LiveMigrated { at } => {
            if let Some(m) = i.migration.take() {
                i.host = m.dest_host;
                i.claim = m.dest_claim;
            }
            finish(i, *at);
        }
        E::Locked {
            by_admin,
            reason,
            at,
        } => {
            i.locked = Some(LockInfo {
                by_admin: *by_admin,
                reason: reason.clone(),
            });
            i.updated_at = *at;
        }
        E::Unlocked { at } => {
            i.locked = None;
            i.updated_at = *at;
        }
        E::Updated {
            name,
            description,
            at,
        } => {
            if let Some(n) = name {
                i.spec.name = n.clone();
            }
            if let Some(d) = description {
                i.spec.description = d.clone();
            }
            i.updated_at = *at;
        }
        E::StateReset { vm_state, at } => {
            i.vm_state = *vm_state;
            i.migration = None;
            finish(i, *at);
        }
        E::Deleted { at } => {
            i.deleted = true;
            i.vm_state = VmState::Deleted;
            i.power_state = PowerState::NoState;
            i.terminated_at = Some(*at);
            i.migration = None;
            finish(i, *at);
        }
        E::TaskFailed {
            fault,
            vm_state,
            at,
        } => {
            i.fault = Some(fault.clone());
            if let Some(v) = vm_state {
                i.vm_state = *v;
            }
            if i.vm_state == VmState::ShelvedOffloaded {
                i.host = None;
                i.claim = None;
            }
            i.migration = None;
            finish(i, *at);
        }
        E::TaskRetried { attempt, at } => {
            if let Some(o) = &mut i.op {
                o.attempt = *attempt;
                o.since = *at;
            }
            i.updated_at = *at;
        }
        E::BootDetailsRecorded { .. } | E::CreateExtrasRecorded { .. } => {}
        E::RebuildStarted {
            op,
            task,
            rebuild,
            at,
        } => {
            if !i.spec.boot_from_volume {
                i.spec.image_ref = rebuild.image_ref.clone();
            }
            if let Some(n) = &rebuild.name {
                i.spec.name = n.clone();
            }
            if let Some(m) = &rebuild.metadata {
                i.spec.metadata = m.clone();
            }
            if let Some(k) = &rebuild.key_name {
                i.spec.key_name = k.clone();
            }
            if let Some(d) = &rebuild.description {
                i.spec.description = d.clone();
            }
            i.task_state = Some(*task);
            i.op = Some(Operation {
                id: *op,
                action: Action::Rebuild,
                since: *at,
                attempt: 1,
            });
            i.updated_at = *at;
        }
        E::TaskAdvanced { task, at } => {
            i.task_state = Some(*task);
            if let Some(o) = &mut i.op {
                o.since = *at;
                o.attempt = 1;
            }
            i.updated_at = *at;
        }
        E::Rebuilt {
            vm_state,
            power_state,
            at,
        } => {
            i.vm_state = *vm_state;
            i.power_state = *power_state;
            i.launched_at = Some(*at);
            finish(i, *at);
        }
        E::MetadataUpdated { metadata, at } => {
            i.spec.metadata = metadata.clone();
            i.updated_at = *at;
        }
        E::TagsSet { .. }
        | E::DiskConfigSet { .. }
        | E::CrashDumpTriggered { .. }
        | E::SecurityGroupsRequested { .. } => {}
        E::AccessUpdated { at, .. } => i.updated_at = *at,
        E::PowerStateChanged { power_state, at } => {
            i.power_state = *power_state;
            i.updated_at = *at;
        }
        E::RescueStarted { op, image_ref, at } => {
            i.task_state = Some(TaskState::Rescuing);
            i.op = Some(Operation {
                id: *op,
                action: Action::Rescue,
                since: *at,
                attempt: 1,
            });
            i.rescue_image_ref = image_ref.clone();
            i.updated_at = *at;
        }
        E::SnapshotStarted {
            op,
            action,
            task,
            at,
            ..
        } => {
            i.task_state = Some(*task);
            i.op = Some(Operation {
                id: *op,
                action: *action,
                since: *at,
                attempt: 1,
            });
            i.updated_at = *at;
        }
        E::EvacuationStarted { op, migration, at } => {
            i.task_state = Some(TaskState::Rebuilding);
            i.op = Some(Operation {
                id: *op,
                action: Action::Evacuate,
                since: *at,
                attempt: 1,
            });
            i.migration = Some((**migration).clone());
            i.updated_at = *at;
        }
        E::Evacuated {
            vm_state,
            power_state,
            at,
        } => {
            if let Some(m) = i.migration.take() {
                i.host = m.dest_host;
                i.claim = m.dest_claim;
            }
            i.vm_state = *vm_state;
            i.power_state = *power_state;
            i.launched_at = Some(*at);
            finish(i, *at);
        }
        E::UnshelveStarted {
            op,
            availability_zone,
            host,
            at,
        } => {
            if let Some(az) = availability_zone {
                i.spec.availability_zone = az.clone();
            }
            i.spec.requested_host = host.clone();
            i.task_state = Some(TaskState::Unshelving);
            i.op = Some(Operation {
                id: *op,
                action: Action::Unshelve,
                since: *at,
                attempt: 1,
            });
            i.updated_at = *at;
        }
    }
}

/// The frozen shape of the instance snapshot inside `instance.placed` and
/// `instance.build_failed`. Events are postcard-encoded, which has no field names, so
/// the snapshot keeps the fields `Instance` had when these events were defined, in
/// their order; a field added to `Instance` later is not in it. Such fields are empty
/// in a snapshot by construction (it is taken while the server is being built:
/// `rescue_image_ref` and `deleted_at` are None then) and decode as empty.
mod snapshot_v1 {
    use super::*;

    #[derive(Serialize)]
    struct Ref<'a> {
        spec: &'a InstanceSpec,
        flavor: &'a FlavorSnapshot,
        vm_state: &'a VmState,
        task_state: &'a Option<TaskState>,
        power_state: &'a PowerState,
        cell: &'a Option<CellName>,
        placed: &'a bool,
        host: &'a Option<HostName>,
        claim: &'a Option<ClaimId>,
        locked: &'a Option<LockInfo>,
        created_at: &'a Timestamp,
        updated_at: &'a Timestamp,
        launched_at: &'a Option<Timestamp>,
        terminated_at: &'a Option<Timestamp>,
        shelved_at: &'a Option<Timestamp>,
        fault: &'a Option<Fault>,
        op: &'a Option<Operation>,
        migration: &'a Option<Migration>,
        pending_fault: &'a Option<Fault>,
        deleted: &'a bool,
    }

    #[derive(Deserialize)]
    struct Owned {
        spec: InstanceSpec,
        flavor: FlavorSnapshot,
        vm_state: VmState,
        task_state: Option<TaskState>,
        power_state: PowerState,
        cell: Option<CellName>,
        placed: bool,
        host: Option<HostName>,
        claim: Option<ClaimId>,
        locked: Option<LockInfo>,
        created_at: Timestamp,
        updated_at: Timestamp,
        launched_at: Option<Timestamp>,
        terminated_at: Option<Timestamp>,
        shelved_at: Option<Timestamp>,
        fault: Option<Fault>,
        op: Option<Operation>,
        migration: Option<Migration>,
        pending_fault: Option<Fault>,
        deleted: bool,
    }

    pub fn serialize<S: serde::Serializer>(i: &Instance, s: S) -> Result<S::Ok, S::Error> {
        Ref {
            spec: &i.spec,
            flavor: &i.flavor,
            vm_state: &i.vm_state,
            task_state: &i.task_state,
            power_state: &i.power_state,
            cell: &i.cell,
            placed: &i.placed,
            host: &i.host,
            claim: &i.claim,
            locked: &i.locked,
            created_at: &i.created_at,
            updated_at: &i.updated_at,
            launched_at: &i.launched_at,
            terminated_at: &i.terminated_at,
            shelved_at: &i.shelved_at,
            fault: &i.fault,
            op: &i.op,
            migration: &i.migration,
            pending_fault: &i.pending_fault,
            deleted: &i.deleted,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<Instance>, D::Error> {
        let o = Owned::deserialize(d)?;
        Ok(Box::new(Instance {
            spec: o.spec,
            flavor: o.flavor,
            vm_state: o.vm_state,
            task_state: o.task_state,
            power_state: o.power_state,
            cell: o.cell,
            placed: o.placed,
            host: o.host,
            claim: o.claim,
            locked: o.locked,
            created_at: o.created_at,
            updated_at: o.updated_at,
            launched_at: o.launched_at,
            terminated_at: o.terminated_at,
            shelved_at: o.shelved_at,
            rescue_image_ref: None,
            deleted_at: None,
            fault: o.fault,
            op: o.op,
            migration: o.migration,
            pending_fault: o.pending_fault,
            deleted: o.deleted,
        }))
    }
}
