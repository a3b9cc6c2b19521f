//! The virt driver abstraction and the simulated driver.
//!
//! The simulated driver keeps a table of domains per host and applies each task to it,
//! after a configurable delay, failing on demand (failure injection by task and by
//! rate) so that failure paths are exercised by tests.

use eventlog::LockExt;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use domain::instance::Instance;
use domain::{HostName, InstanceId, PowerState, TaskState, VmState};

/// Why a driver operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// Injected failure.
    #[error("simulated failure of {0} on {1}")]
    Injected(&'static str, String),
    /// The domain does not exist on the host.
    #[error("domain {0} not found on {1}")]
    NoDomain(InstanceId, String),
    /// The hypervisor refused: its own message (libvirt's), which becomes the
    /// instance's fault.
    #[error("{0}")]
    Hypervisor(String),
    /// The driver cannot do this (Nova's `NotImplementedError`, e.g. setting a
    /// password without a guest agent).
    #[error("{0}")]
    NotSupported(String),
    /// Preparing the instance's files failed (directory, disk overlay, config drive).
    #[error("{0}")]
    Files(String),
}

/// A config drive's contents: files by their path inside the ISO 9660 volume
/// (labelled `config-2`), e.g. `openstack/latest/meta_data.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDrive {
    /// (path in the ISO, content).
    pub files: Vec<(String, Vec<u8>)>,
}

/// One virtual NIC of a guest: a port of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNic {
    /// The port's id.
    pub port_id: String,
    /// The port's MAC address.
    pub mac: String,
    /// The network the port is on (a Linux bridge per network).
    pub network_id: String,
}

/// An image file the hypervisor boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// Its path (the image service's directory + the image id).
    pub path: std::path::PathBuf,
    /// Glance's `disk_format` (`qcow2`, `raw`, `aki`, ...).
    pub disk_format: String,
}

/// What a real hypervisor needs beyond the instance record, resolved by the agent from
/// the read model before each task (the simulated driver ignores it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestContext {
    /// The image the guest's root disk is made from (None: booted from a volume, or
    /// no file on this machine).
    pub image: Option<ImageFile>,
    /// Direct kernel boot (Nova's AKI/ARI): the kernel of the image's `kernel_id`.
    pub kernel: Option<std::path::PathBuf>,
    /// The ramdisk of the image's `ramdisk_id`.
    pub ramdisk: Option<std::path::PathBuf>,
    /// The image's `os_command_line`.
    pub cmdline: Option<String>,
    /// The rescue image (rescue: the requested one or the server's own image).
    pub rescue: Option<ImageFile>,
    /// One NIC per port of the server.
    pub nics: Vec<GuestNic>,
    /// The config drive, when the server has one.
    pub config_drive: Option<ConfigDrive>,
}

/// What a hypervisor does for Stratus.
#[async_trait]
pub trait VirtDriver: Send + Sync + 'static {
    /// Performs `task` for `instance` on `host`, with what the guest needs.
    async fn perform(
        &self,
        host: &HostName,
        instance: &Instance,
        guest: &GuestContext,
        task: TaskState,
    ) -> Result<(), DriverError>;

    /// Power state of every domain on `host`.
    fn domains(&self, host: &HostName) -> HashMap<InstanceId, PowerState>;

    /// Notified when a guest's state may have changed by itself (libvirt's lifecycle
    /// events): the power-state sync then runs at once instead of at its next period.
    fn events(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// The guest's serial console log (None: this driver has none; the API then
    /// answers from the instance record).
    fn console_output(&self, _id: InstanceId) -> Option<String> {
        None
    }
}

/// Options of the simulated driver.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Delay of every operation.
    pub delay: Duration,
    /// Tasks that always fail.
    pub fail_tasks: HashSet<TaskState>,
    /// Probability (0..=1) that any operation fails.
    pub fail_rate: f64,
    /// Tasks that never answer (a lost message or a hung hypervisor).
    pub stall_tasks: HashSet<TaskState>,
}

/// A simulated hypervisor for any number of hosts.
#[derive(Debug, Default)]
pub struct SimDriver {
    opts: SimOptions,
    domains: Mutex<HashMap<HostName, HashMap<InstanceId, PowerState>>>,
}

impl SimDriver {
    /// A driver with these options.
    pub fn new(opts: SimOptions) -> Self {
        SimDriver {
            opts,
            domains: Mutex::new(HashMap::new()),
        }
    }

    fn roll(&self) -> bool {
        if self.opts.fail_rate <= 0.0 {
            return false;
        }
        let r = (uuid::Uuid::new_v4().as_u128() & 0xFFFF_FFFF) as f64 / u32::MAX as f64;
        r < self.opts.fail_rate
    }
}

#[async_trait]
impl VirtDriver for SimDriver {
    async fn perform(
        &self,
        host: &HostName,
        instance: &Instance,
        _guest: &GuestContext,
        task: TaskState,
    ) -> Result<(), DriverError> {
        if !self.opts.delay.is_zero() {
            tokio::time::sleep(self.opts.delay).await;
        }
        if self.opts.stall_tasks.contains(&task) {
            std::future::pending::<()>().await;
        }
        if self.opts.fail_tasks.contains(&task) || self.roll() {
            return Err(DriverError::Injected(task.as_str(), host.to_string()));
        }
        let id = instance.id();
        let mut all = self.domains.lock_or_recover();
        let doms = all.entry(host.clone()).or_default();
        use PowerState as P;
        match task {
            TaskState::Spawning | TaskState::Unshelving => {
                doms.insert(id, P::Running);
            }
            TaskState::Pausing => {
                doms.insert(id, P::Paused);
            }
            TaskState::Suspending => {
                doms.insert(id, P::Suspended);
            }
            // A soft-deleted guest is powered off and kept for `restore`.
            TaskState::PoweringOff | TaskState::Shelving | TaskState::SoftDeleting => {
                doms.insert(id, P::Shutdown);
            }
            TaskState::Unpausing
            | TaskState::Resuming
            | TaskState::PoweringOn
            | TaskState::Rebooting
            | TaskState::RebootingHard
            | TaskState::Restoring
            // Rescue reboots the guest from the rescue image, unrescue from its own
            // disk: running either way.
            | TaskState::Rescuing
            | TaskState::Unrescuing => {
                doms.insert(id, P::Running);
            }
            TaskState::Deleting | TaskState::ShelvingOffloading => {
                doms.remove(&id);
            }
            TaskState::ResizeMigrating | TaskState::Migrating | TaskState::ResizeReverting => {
                // The domain moves between hosts; the source copy is dropped.
                let state = instance.power_state;
                for d in all.values_mut() {
                    d.remove(&id);
                }
                let target = match (task, &instance.migration) {
                    (TaskState::ResizeReverting, Some(m)) => m.source_host.clone(),
                    (_, Some(m)) => m.dest_host.clone().unwrap_or_else(|| host.clone()),
                    _ => host.clone(),
                };
                all.entry(target).or_default().insert(id, state);
            }
            // A rebuild destroys the old guest, re-attaches its volumes (none are
            // simulated), then boots the new image; a stopped server is powered off
            // again, as Nova does.
            // An evacuation's guest is rebuilt on the destination: the dead source's
            // copy is dropped (Nova's compute destroys evacuated guests on restart).
            TaskState::Rebuilding if instance.evacuation().is_some() => {
                for d in all.values_mut() {
                    d.remove(&id);
                }
            }
            TaskState::Rebuilding => {
                doms.remove(&id);
            }
            TaskState::RebuildBlockDeviceMapping => {}
            TaskState::RebuildSpawning => {
                let stop = matches!(
                    instance.evacuation().map(|m| m.kind),
                    Some(domain::instance::MigrationKind::Evacuation { stop: true })
                );
                let power = if stop || instance.vm_state == VmState::Stopped {
                    P::Shutdown
                } else {
                    P::Running
                };
                doms.insert(id, power);
            }
            // The simulated guest takes any password; its power state is unchanged.
            TaskState::UpdatingPassword => {}
            TaskState::Scheduling | TaskState::ResizePrep => {}
            // A snapshot reads the disk; the guest runs on (the agent uploads the data).
            TaskState::ImageSnapshotPending
            | TaskState::ImageSnapshot
            | TaskState::ImagePendingUpload
            | TaskState::ImageUploading
            | TaskState::ImageBackup
            | TaskState::ShelvingImagePendingUpload
            | TaskState::ShelvingImageUploading => {}
        }
        Ok(())
    }

    fn domains(&self, host: &HostName) -> HashMap<InstanceId, PowerState> {
        self.domains
            .lock_or_recover()
            .get(host)
            .cloned()
            .unwrap_or_default()
    }
}
