//! Nova's vm_state, task_state and power_state values, and the API `status` mapping
//! (nova/api/openstack/common.py `_STATE_MAP`).

use serde::{Deserialize, Serialize};

/// The stable state of an instance (`OS-EXT-STS:vm_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VmState {
    /// `building`
    Building,
    /// `active`
    Active,
    /// `paused`
    Paused,
    /// `suspended`
    Suspended,
    /// `stopped`
    Stopped,
    /// `rescued`
    Rescued,
    /// `resized`
    Resized,
    /// `soft-delete`
    SoftDeleted,
    /// `deleted`
    Deleted,
    /// `error`
    Error,
    /// `shelved`
    Shelved,
    /// `shelved_offloaded`
    ShelvedOffloaded,
}

impl VmState {
    /// Nova's string value.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Building => "building",
            VmState::Active => "active",
            VmState::Paused => "paused",
            VmState::Suspended => "suspended",
            VmState::Stopped => "stopped",
            VmState::Rescued => "rescued",
            VmState::Resized => "resized",
            VmState::SoftDeleted => "soft-delete",
            VmState::Deleted => "deleted",
            VmState::Error => "error",
            VmState::Shelved => "shelved",
            VmState::ShelvedOffloaded => "shelved_offloaded",
        }
    }

    /// Parses Nova's string value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    /// Every value.
    pub const ALL: [VmState; 12] = [
        VmState::Building,
        VmState::Active,
        VmState::Paused,
        VmState::Suspended,
        VmState::Stopped,
        VmState::Rescued,
        VmState::Resized,
        VmState::SoftDeleted,
        VmState::Deleted,
        VmState::Error,
        VmState::Shelved,
        VmState::ShelvedOffloaded,
    ];
}

/// The in-progress operation of an instance (`OS-EXT-STS:task_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    /// `scheduling`
    Scheduling,
    /// `spawning`
    Spawning,
    /// `pausing`
    Pausing,
    /// `unpausing`
    Unpausing,
    /// `suspending`
    Suspending,
    /// `resuming`
    Resuming,
    /// `powering-off`
    PoweringOff,
    /// `powering-on`
    PoweringOn,
    /// `rebooting`
    Rebooting,
    /// `rebooting_hard`
    RebootingHard,
    /// `shelving`
    Shelving,
    /// `shelving_offloading`
    ShelvingOffloading,
    /// `unshelving`
    Unshelving,
    /// `resize_prep`
    ResizePrep,
    /// `resize_migrating`
    ResizeMigrating,
    /// `resize_reverting`
    ResizeReverting,
    /// `migrating`
    Migrating,
    /// `deleting`
    Deleting,
    /// `rebuilding`: the old guest is being torn down.
    Rebuilding,
    /// `rebuild_block_device_mapping`: volumes are being re-attached.
    RebuildBlockDeviceMapping,
    /// `rebuild_spawning`: the guest boots from the new image.
    RebuildSpawning,
    /// `updating_password`: `changePassword` (status PASSWORD). Appended last: postcard
    /// encodes the variant's index.
    UpdatingPassword,
    /// `image_snapshot_pending`: `createImage` accepted (the API's step).
    ImageSnapshotPending,
    /// `image_snapshot`: the compute agent captures the guest's disk.
    ImageSnapshot,
    /// `image_pending_upload`: captured, the upload is about to begin.
    ImagePendingUpload,
    /// `image_uploading`: the snapshot's data goes to the image service.
    ImageUploading,
    /// `image_backup`: `createBackup` accepted (then the snapshot steps).
    ImageBackup,
    /// `shelving_image_pending_upload`: shelve captured the guest's disk.
    ShelvingImagePendingUpload,
    /// `shelving_image_uploading`: shelve uploads the `<name>-shelved` image.
    ShelvingImageUploading,
    /// `rescuing`: the guest reboots from the rescue image (appended: postcard indexes).
    Rescuing,
    /// `unrescuing`: back to the guest's own disk.
    Unrescuing,
    /// `soft-deleting`: a DELETE with `--reclaim-instance-interval` > 0 powers the
    /// guest off and keeps it for `restore`.
    SoftDeleting,
    /// `restoring`: a soft-deleted guest is powered on again.
    Restoring,
}

impl TaskState {
    /// Nova's string value.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Scheduling => "scheduling",
            TaskState::Spawning => "spawning",
            TaskState::Pausing => "pausing",
            TaskState::Unpausing => "unpausing",
            TaskState::Suspending => "suspending",
            TaskState::Resuming => "resuming",
            TaskState::PoweringOff => "powering-off",
            TaskState::PoweringOn => "powering-on",
            TaskState::Rebooting => "rebooting",
            TaskState::RebootingHard => "rebooting_hard",
            TaskState::Shelving => "shelving",
            TaskState::ShelvingOffloading => "shelving_offloading",
            TaskState::Unshelving => "unshelving",
            TaskState::ResizePrep => "resize_prep",
            TaskState::ResizeMigrating => "resize_migrating",
            TaskState::ResizeReverting => "resize_reverting",
            TaskState::Migrating => "migrating",
            TaskState::Deleting => "deleting",
            TaskState::Rebuilding => "rebuilding",
            TaskState::RebuildBlockDeviceMapping => "rebuild_block_device_mapping",
            TaskState::RebuildSpawning => "rebuild_spawning",
            TaskState::UpdatingPassword => "updating_password",
            TaskState::ImageSnapshotPending => "image_snapshot_pending",
            TaskState::ImageSnapshot => "image_snapshot",
            TaskState::ImagePendingUpload => "image_pending_upload",
            TaskState::ImageUploading => "image_uploading",
            TaskState::ImageBackup => "image_backup",
            TaskState::ShelvingImagePendingUpload => "shelving_image_pending_upload",
            TaskState::ShelvingImageUploading => "shelving_image_uploading",
            TaskState::Rescuing => "rescuing",
            TaskState::Unrescuing => "unrescuing",
            TaskState::SoftDeleting => "soft-deleting",
            TaskState::Restoring => "restoring",
        }
    }

    /// Every value.
    pub const ALL: [TaskState; 33] = [
        TaskState::Scheduling,
        TaskState::Spawning,
        TaskState::Pausing,
        TaskState::Unpausing,
        TaskState::Suspending,
        TaskState::Resuming,
        TaskState::PoweringOff,
        TaskState::PoweringOn,
        TaskState::Rebooting,
        TaskState::RebootingHard,
        TaskState::Shelving,
        TaskState::ShelvingOffloading,
        TaskState::Unshelving,
        TaskState::ResizePrep,
        TaskState::ResizeMigrating,
        TaskState::ResizeReverting,
        TaskState::Migrating,
        TaskState::Deleting,
        TaskState::Rebuilding,
        TaskState::RebuildBlockDeviceMapping,
        TaskState::RebuildSpawning,
        TaskState::UpdatingPassword,
        TaskState::ImageSnapshotPending,
        TaskState::ImageSnapshot,
        TaskState::ImagePendingUpload,
        TaskState::ImageUploading,
        TaskState::ImageBackup,
        TaskState::ShelvingImagePendingUpload,
        TaskState::ShelvingImageUploading,
        TaskState::Rescuing,
        TaskState::Unrescuing,
        TaskState::SoftDeleting,
        TaskState::Restoring,
    ];

    /// The three steps of a rebuild (API status `REBUILD` whatever the vm_state).
    pub fn is_rebuild(self) -> bool {
        matches!(
            self,
            TaskState::Rebuilding
                | TaskState::RebuildBlockDeviceMapping
                | TaskState::RebuildSpawning
        )
    }
}

/// Hypervisor power state (`OS-EXT-STS:power_state`), Nova's integer codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerState {
    /// 0
    NoState,
    /// 1
    Running,
    /// 3
    Paused,
    /// 4
    Shutdown,
    /// 6
    Crashed,
    /// 7
    Suspended,
}

impl PowerState {
    /// Nova's integer code.
    pub fn code(self) -> u8 {
        match self {
            PowerState::NoState => 0,
            PowerState::Running => 1,
            PowerState::Paused => 3,
            PowerState::Shutdown => 4,
            PowerState::Crashed => 6,
            PowerState::Suspended => 7,
        }
    }
}

/// The API `status` for a (vm_state, task_state) pair.
pub fn api_status(vm: VmState, task: Option<TaskState>) -> &'static str {
    use TaskState as T;
    if task.is_some_and(T::is_rebuild)
        && matches!(vm, VmState::Active | VmState::Stopped | VmState::Error)
    {
        return "REBUILD";
    }
    match vm {
        VmState::Active => match task {
            Some(T::Rebooting) => "REBOOT",
            Some(T::RebootingHard) => "HARD_REBOOT",
            Some(T::Migrating) => "MIGRATING",
            Some(T::ResizePrep) | Some(T::ResizeMigrating) => "RESIZE",
            Some(T::UpdatingPassword) => "PASSWORD",
            _ => "ACTIVE",
        },
        VmState::Building => "BUILD",
        VmState::Stopped => match task {
            Some(T::ResizePrep) | Some(T::ResizeMigrating) => "RESIZE",
            _ => "SHUTOFF",
        },
        VmState::Resized => match task {
            Some(T::ResizeReverting) => "REVERT_RESIZE",
            _ => "VERIFY_RESIZE",
        },
        VmState::Paused => match task {
            Some(T::Migrating) => "MIGRATING",
            _ => "PAUSED",
        },
        VmState::Suspended => "SUSPENDED",
        VmState::Rescued => "RESCUE",
        VmState::Error => "ERROR",
        VmState::Deleted => "DELETED",
        VmState::SoftDeleted => "SOFT_DELETED",
        VmState::Shelved => "SHELVED",
        VmState::ShelvedOffloaded => "SHELVED_OFFLOADED",
    }
}
