//! The libvirt driver: every task of an instance mapped to libvirt calls on one
//! connection (`qemu:///system` for real guests, `test:///default` in the tests).
//!
//! Invariants:
//! - A domain is named `instance-<uuid>` and its libvirt uuid is the instance id, so
//!   a domain is found again by id after an agent restart, and a spawn of an instance
//!   whose domain already runs is a success, never a second copy.
//! - Every file of an instance lives in `<instances-dir>/<uuid>/` (root disk overlay
//!   `disk`, rescue overlay `disk.rescue`, config drive `disk.config`, the serial
//!   console `console.log`); delete and shelve-offload remove the directory, so
//!   nothing is left defined or on disk.
//! - The domain XML is a pure function of [`DomainSpec`] ([`domain_xml`]), regenerated
//!   from the instance and its [`GuestContext`] whenever the domain is (re)defined.
//! - The host an instance is placed on is recorded in the domain's metadata, so that
//!   [`VirtDriver::domains`] answers per host when one connection serves several
//!   hosts of this process.
//! - libvirt is blocking: every call runs on tokio's blocking pool.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::flavor::FlavorSpec;
use domain::instance::{Instance, MigrationKind};
use domain::{HostName, InstanceId, PowerState, TaskState, VmState};
use uuid::Uuid;
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;
use virt::error::ErrorNumber;

use crate::driver::{DriverError, GuestContext, ImageFile, VirtDriver};

/// The XML namespace of Stratus's domain metadata.
const METADATA_NS: &str = "https://stratus.invalid/xmlns/libvirt/instance/1.0";

/// Options of the libvirt driver.
#[derive(Debug, Clone)]
pub struct LibvirtOptions {
    /// Connection URI (`qemu:///system`, `test:///default`).
    pub uri: String,
    /// Domain type: `qemu` (TCG) or `kvm` (Nova's `[libvirt] virt_type`).
    pub virt_type: String,
    /// Where instances' files live (Nova's `instances_path`).
    pub instances_dir: PathBuf,
    /// How long a clean shutdown may take before the domain is destroyed (Nova's
    /// `shutdown_timeout`, 60 s).
    pub shutdown_timeout: Duration,
}

impl LibvirtOptions {
    /// Defaults for `uri`, with files under `instances_dir`.
    pub fn new(uri: impl Into<String>, instances_dir: impl Into<PathBuf>) -> Self {
        LibvirtOptions {
            uri: uri.into(),
            virt_type: "qemu".into(),
            instances_dir: instances_dir.into(),
            shutdown_timeout: Duration::from_secs(60),
        }
    }

    /// libvirt's in-process test driver: no bridges are created and no processes run.
    fn is_test(&self) -> bool {
        self.uri.starts_with("test:")
    }
}

/// The host's size as libvirt reports it (Nova's `get_available_resource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeResources {
    /// Active CPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub ram_mb: u64,
    /// Space of the file system of the instances directory, GiB (0 if unknown).
    pub disk_gb: u64,
}

/// A driver on one libvirt connection.
#[derive(Clone)]
pub struct LibvirtDriver {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connect,
    opts: LibvirtOptions,
    /// Notified at each domain lifecycle event of the connection (None: the driver
    /// refused the registration).
    events: Option<Arc<tokio::sync::Notify>>,
    /// The lifecycle callback's id, deregistered on drop.
    callback: Option<std::os::raw::c_int>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(id) = self.callback {
            // SAFETY: the connection is alive (dropped after this), and `id` is the
            // callback registered on it; libvirt then frees the opaque (our Arc).
            unsafe {
                virt::sys::virConnectDomainEventDeregisterAny(self.conn.as_ptr(), id);
            }
        }
    }
}

/// libvirt's event loop: registered once per process before any connection is opened
/// (libvirt's requirement for domain events), run by a thread of its own.
fn start_event_loop() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            tracing::warn!(error = %e.message(), "libvirt events unavailable");
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| loop {
                if let Err(e) = virt::event::event_run_default_impl() {
                    tracing::warn!(error = %e.message(), "libvirt event loop");
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "libvirt event thread not started");
        }
    });
}

/// The lifecycle callback: wakes whoever waits on the connection's events.
unsafe extern "C" fn on_lifecycle(
    _conn: virt::sys::virConnectPtr,
    _dom: virt::sys::virDomainPtr,
    _event: std::os::raw::c_int,
    _detail: std::os::raw::c_int,
    opaque: *mut std::os::raw::c_void,
) -> std::os::raw::c_int {
    // SAFETY: `opaque` is the `Arc<Notify>` given at registration, alive until the
    // free callback runs.
    let notify = unsafe { &*(opaque as *const tokio::sync::Notify) };
    notify.notify_one();
    0
}

/// Frees the registration's `Arc<Notify>`.
unsafe extern "C" fn free_notify(opaque: *mut std::os::raw::c_void) {
    // SAFETY: made by `Arc::into_raw` at registration; libvirt calls this once.
    drop(unsafe { Arc::from_raw(opaque as *const tokio::sync::Notify) });
}

/// Registers [`on_lifecycle`] for every domain of `conn`.
fn register_lifecycle(conn: &Connect) -> Option<(Arc<tokio::sync::Notify>, std::os::raw::c_int)> {
    let notify = Arc::new(tokio::sync::Notify::new());
    let opaque = Arc::into_raw(notify.clone()) as *mut std::os::raw::c_void;
    type Lifecycle = unsafe extern "C" fn(
        virt::sys::virConnectPtr,
        virt::sys::virDomainPtr,
        std::os::raw::c_int,
        std::os::raw::c_int,
        *mut std::os::raw::c_void,
    ) -> std::os::raw::c_int;
    type Generic = unsafe extern "C" fn(
        virt::sys::virConnectPtr,
        virt::sys::virDomainPtr,
        *mut std::os::raw::c_void,
    );
    // SAFETY: libvirt calls a lifecycle callback (VIR_DOMAIN_EVENT_ID_LIFECYCLE) with
    // the lifecycle signature; the generic type is only how the C API passes it
    // (`VIR_DOMAIN_EVENT_CALLBACK`), as in libvirt's own examples.
    let id = unsafe {
        let cb = std::mem::transmute::<Lifecycle, Generic>(on_lifecycle);
        virt::sys::virConnectDomainEventRegisterAny(
            conn.as_ptr(),
            std::ptr::null_mut(),
            virt::sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as std::os::raw::c_int,
            Some(cb),
            opaque,
            Some(free_notify),
        )
    };
    if id < 0 {
        // SAFETY: not registered: the Arc is still ours.
        drop(unsafe { Arc::from_raw(opaque as *const tokio::sync::Notify) });
        tracing::warn!(
            "libvirt refused the lifecycle event registration; power sync is periodic only"
        );
        return None;
    }
    Some((notify, id))
}

impl std::fmt::Debug for LibvirtDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtDriver")
            .field("uri", &self.inner.opts.uri)
            .finish()
    }
}

fn lv(e: virt::error::Error) -> DriverError {
    DriverError::Hypervisor(e.message().to_string())
}

fn files(what: &str, path: &Path, e: impl std::fmt::Display) -> DriverError {
    DriverError::Files(format!("{what} {}: {e}", path.display()))
}

fn is_no_domain(e: &virt::error::Error) -> bool {
    e.code() == Enum::Known(ErrorNumber::NoDomain)
}

impl LibvirtDriver {
    /// Connects to `opts.uri` (libvirt's own error printing silenced: errors are
    /// returned and become instance faults).
    pub fn connect(opts: LibvirtOptions) -> Result<Self, DriverError> {
        virt::error::clear_error_callback();
        start_event_loop();
        let conn = Connect::open(Some(&opts.uri)).map_err(lv)?;
        std::fs::create_dir_all(&opts.instances_dir)
            .map_err(|e| files("cannot create", &opts.instances_dir, e))?;
        let (events, callback) = match register_lifecycle(&conn) {
            Some((n, id)) => (Some(n), Some(id)),
            None => (None, None),
        };
        Ok(LibvirtDriver {
            inner: Arc::new(Inner {
                conn,
                opts,
                events,
                callback,
            }),
        })
    }

    /// The host's vCPUs and memory from libvirt's node info, and the disk of the
    /// instances directory's file system.
    pub fn node_resources(&self) -> Result<NodeResources, DriverError> {
        let info = self.inner.conn.node_info().map_err(lv)?;
        Ok(NodeResources {
            vcpus: info.cpus,
            ram_mb: info.memory / 1024,
            disk_gb: disk_gb(&self.inner.opts.instances_dir).unwrap_or(0),
        })
    }

    /// The directory of an instance's files.
    pub fn instance_dir(&self, id: InstanceId) -> PathBuf {
        self.inner.opts.instances_dir.join(id.to_string())
    }

    /// The options it runs with.
    pub fn options(&self) -> &LibvirtOptions {
        &self.inner.opts
    }

    /// The libvirt state of an instance's domain (None: not defined), for tests and
    /// diagnostics.
    pub fn domain_state(&self, id: InstanceId) -> Option<PowerState> {
        let dom = self.inner.lookup(id).ok().flatten()?;
        power_state(&dom).ok()
    }

    /// The XML libvirt holds for an instance's domain.
    pub fn domain_xml_of(&self, id: InstanceId) -> Option<String> {
        let dom = self.inner.lookup(id).ok().flatten()?;
        dom.xml_desc(0).ok()
    }
}

/// Size of the file system holding `dir`, in GiB (`df -Pk`).
fn disk_gb(dir: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / (1024 * 1024))
}

/// libvirt's state as Nova's power state (`LIBVIRT_POWER_STATE`); a shut-off domain
/// with a managed save image is a suspended guest.
fn power_state(dom: &Domain) -> Result<PowerState, virt::error::Error> {
    let (state, _) = dom.state()?;
    Ok(match state {
        Enum::Known(DomainState::Running | DomainState::Blocked | DomainState::Shutdown) => {
            PowerState::Running
        }
        Enum::Known(DomainState::Paused) => PowerState::Paused,
        Enum::Known(DomainState::Shutoff) => {
            if dom.has_managed_save(0).unwrap_or(false) {
                PowerState::Suspended
            } else {
                PowerState::Shutdown
            }
        }
        Enum::Known(DomainState::Crashed) => PowerState::Crashed,
        Enum::Known(DomainState::PMSuspended) => PowerState::Suspended,
        Enum::Known(DomainState::NoState) | Enum::Unknown(_) => PowerState::NoState,
    })
}

/// A disk of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Its file.
    pub path: PathBuf,
    /// qemu's format of the file (`qcow2`, `raw`).
    pub format: String,
    /// `disk` or `cdrom`.
    pub device: &'static str,
    /// Target device (`vda`, `vdb`, `sda`).
    pub target: String,
    /// Target bus (`virtio`, `ide`).
    pub bus: &'static str,
}

/// A NIC of a domain: a virtio device with the port's MAC on a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// The port's MAC.
    pub mac: String,
    /// The bridge of the port's network.
    pub bridge: String,
}

/// Everything a domain's XML says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// The instance id (libvirt's uuid; the name is `instance-<uuid>`).
    pub uuid: Uuid,
    /// The host the instance is placed on (metadata).
    pub host: String,
    /// The server's name (metadata).
    pub display_name: String,
    /// `qemu` or `kvm`.
    pub virt_type: String,
    /// vCPUs of the flavor.
    pub vcpus: u32,
    /// Memory of the flavor, MiB.
    pub memory_mb: u64,
    /// Disks, in boot order.
    pub disks: Vec<DiskSpec>,
    /// Direct kernel boot.
    pub kernel: Option<PathBuf>,
    /// Its initrd.
    pub initrd: Option<PathBuf>,
    /// Its command line.
    pub cmdline: Option<String>,
    /// The file the serial console writes to.
    pub console_log: PathBuf,
    /// NICs.
    pub nics: Vec<NicSpec>,
}

/// The domain name of an instance.
pub fn domain_name(id: Uuid) -> String {
    format!("instance-{id}")
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

fn esc_path(p: &Path) -> String {
    esc(&p.to_string_lossy())
}

/// The domain XML of `spec` (pure: same spec, same text).
pub fn domain_xml(spec: &DomainSpec) -> String {
    let mut x = String::new();
    let _ = writeln!(x, "<domain type='{}'>", esc(&spec.virt_type));
    let _ = writeln!(x, "  <name>{}</name>", domain_name(spec.uuid));
    let _ = writeln!(x, "  <uuid>{}</uuid>", spec.uuid);
    let _ = writeln!(x, "  <metadata>");
    let _ = writeln!(x, "    <stratus:instance xmlns:stratus='{METADATA_NS}'>");
    let _ = writeln!(x, "      <stratus:host>{}</stratus:host>", esc(&spec.host));
    let _ = writeln!(
        x,
        "      <stratus:name>{}</stratus:name>",
        esc(&spec.display_name)
    );
    let _ = writeln!(x, "    </stratus:instance>");
    let _ = writeln!(x, "  </metadata>");
    let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", spec.memory_mb);
    let _ = writeln!(x, "  <vcpu>{}</vcpu>", spec.vcpus);
    let _ = writeln!(x, "  <os>");
    let _ = writeln!(x, "    <type arch='x86_64'>hvm</type>");
    if let Some(k) = &spec.kernel {
        let _ = writeln!(x, "    <kernel>{}</kernel>", esc_path(k));
        if let Some(i) = &spec.initrd {
            let _ = writeln!(x, "    <initrd>{}</initrd>", esc_path(i));
        }
        if let Some(c) = &spec.cmdline {
            let _ = writeln!(x, "    <cmdline>{}</cmdline>", esc(c));
        }
    } else {
        let _ = writeln!(x, "    <boot dev='hd'/>");
    }
    let _ = writeln!(x, "  </os>");
    // Without ACPI a guest's power-off (and libvirt's ACPI shutdown) does nothing.
    let _ = writeln!(x, "  <features><acpi/></features>");
    let _ = writeln!(x, "  <on_poweroff>destroy</on_poweroff>");
    let _ = writeln!(x, "  <on_reboot>restart</on_reboot>");
    let _ = writeln!(x, "  <on_crash>destroy</on_crash>");
    let _ = writeln!(x, "  <devices>");
    for d in &spec.disks {
        let _ = writeln!(x, "    <disk type='file' device='{}'>", d.device);
        let _ = writeln!(x, "      <driver name='qemu' type='{}'/>", esc(&d.format));
        let _ = writeln!(x, "      <source file='{}'/>", esc_path(&d.path));
        let _ = writeln!(
            x,
            "      <target dev='{}' bus='{}'/>",
            esc(&d.target),
            d.bus
        );
        if d.device == "cdrom" {
            let _ = writeln!(x, "      <readonly/>");
        }
        let _ = writeln!(x, "    </disk>");
    }
    for n in &spec.nics {
        let _ = writeln!(x, "    <interface type='bridge'>");
        let _ = writeln!(x, "      <mac address='{}'/>", esc(&n.mac));
        let _ = writeln!(x, "      <source bridge='{}'/>", esc(&n.bridge));
        let _ = writeln!(x, "      <model type='virtio'/>");
        let _ = writeln!(x, "    </interface>");
    }
    let log = esc_path(&spec.console_log);
    let _ = writeln!(x, "    <serial type='file'>");
    let _ = writeln!(x, "      <source path='{log}'/>");
    let _ = writeln!(x, "      <target port='0'/>");
    let _ = writeln!(x, "    </serial>");
    let _ = writeln!(x, "    <console type='file'>");
    let _ = writeln!(x, "      <source path='{log}'/>");
    let _ = writeln!(x, "      <target type='serial' port='0'/>");
    let _ = writeln!(x, "    </console>");
    let _ = writeln!(x, "  </devices>");
    let _ = writeln!(x, "</domain>");
    x
}

/// The host recorded in a domain's XML metadata.
pub fn host_of_xml(xml: &str) -> Option<&str> {
    let start = xml.find("<stratus:host>")? + "<stratus:host>".len();
    let end = start + xml[start..].find("</stratus:host>")?;
    Some(&xml[start..end])
}

/// The bridge of a network (Neutron's linuxbridge agent names it `brq` + the first 11
/// characters of the network id, within Linux's 15-character limit).
pub fn bridge_name(network_id: &str) -> String {
    let short: String = network_id.chars().take(11).collect();
    format!("brq{short}")
}

/// qemu's name of a Glance `disk_format`.
fn qemu_format(disk_format: &str) -> &str {
    match disk_format {
        "qcow2" => "qcow2",
        "vmdk" => "vmdk",
        "vdi" => "vdi",
        "vhd" => "vpc",
        "vhdx" => "vhdx",
        "ploop" => "parallels",
        _ => "raw",
    }
}

/// Which disks a domain boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// The rescue image first, the instance's own disk second.
    Rescue,
}

impl Inner {
    fn dir(&self, id: InstanceId) -> PathBuf {
        self.opts.instances_dir.join(id.to_string())
    }

    fn lookup(&self, id: InstanceId) -> Result<Option<Domain>, DriverError> {
        match self.conn.lookup_domain_by_uuid_string(&id.to_string()) {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_no_domain(&e) => Ok(None),
            Err(e) => Err(lv(e)),
        }
    }

    fn run(&self, cmd: &mut Command) -> Result<(), DriverError> {
        let out = cmd
            .output()
            .map_err(|e| DriverError::Files(format!("cannot run {cmd:?}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(DriverError::Files(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// A qcow2 overlay at `path` on the image file (the image is its backing file:
    /// Nova's `qcow2` images backend), sized to the flavor's disk when that is set.
    fn overlay(&self, image: &ImageFile, path: &Path, disk_gb: u64) -> Result<(), DriverError> {
        if path.exists() {
            return Ok(());
        }
        let mut cmd = Command::new("qemu-img");
        cmd.args(["create", "-q", "-f", "qcow2"]);
        // No guest reads the test driver's disks: the backing file is not opened, so
        // placeholder images (a bare qcow2 header) do too.
        let unsafe_backing = self.opts.is_test();
        if unsafe_backing {
            cmd.arg("-u");
        }
        cmd.arg("-b")
            .arg(&image.path)
            .args(["-F", qemu_format(&image.disk_format)])
            .arg(path);
        if disk_gb > 0 {
            cmd.arg(format!("{disk_gb}G"));
        } else if unsafe_backing {
            cmd.arg("1G");
        }
        self.run(&mut cmd)
    }

    /// The root disk image, unless the image is a kernel or ramdisk (a kernel-only
    /// boot) or has no file here.
    fn root_image<'a>(&self, guest: &'a GuestContext) -> Option<&'a ImageFile> {
        guest
            .image
            .as_ref()
            .filter(|i| !matches!(i.disk_format.as_str(), "aki" | "ari"))
            .filter(|i| i.path.is_file())
    }

    /// The config drive ISO (`config-2`, [`metadata::config_drive::build_iso`]:
    /// genisoimage with Nova's arguments).
    fn config_drive(
        &self,
        dir: &Path,
        guest: &GuestContext,
    ) -> Result<Option<PathBuf>, DriverError> {
        let Some(cd) = &guest.config_drive else {
            return Ok(None);
        };
        let iso = dir.join("disk.config");
        // Written once per guest (a rebuild removes it): a running guest may have it open.
        if iso.is_file() {
            return Ok(Some(iso));
        }
        metadata::config_drive::build_iso(&cd.files, &iso)
            .map_err(|e| DriverError::Files(format!("config drive: {e}")))?;
        Ok(Some(iso))
    }

    /// Creates the bridge of each NIC's network if absent (not on the test driver).
    fn bridges(&self, guest: &GuestContext) -> Result<(), DriverError> {
        if self.opts.is_test() {
            return Ok(());
        }
        for nic in &guest.nics {
            let br = bridge_name(&nic.network_id);
            if Path::new("/sys/class/net").join(&br).exists() {
                continue;
            }
            self.run(Command::new("ip").args(["link", "add", "name", &br, "type", "bridge"]))?;
            self.run(Command::new("ip").args(["link", "set", &br, "up"]))?;
        }
        Ok(())
    }

    /// Prepares the files of `inst` (directory, overlays, config drive, bridges) and
    /// returns its domain spec with `flavor`.
    fn prepare(
        &self,
        host: &HostName,
        inst: &Instance,
        flavor: &FlavorSpec,
        guest: &GuestContext,
        mode: Mode,
    ) -> Result<DomainSpec, DriverError> {
        let id = inst.id();
        let dir = self.dir(id);
        std::fs::create_dir_all(&dir).map_err(|e| files("cannot create", &dir, e))?;
        let mut disks = Vec::new();
        let root = match self.root_image(guest) {
            Some(image) => {
                let path = dir.join("disk");
                self.overlay(image, &path, flavor.disk_gb)?;
                Some(path)
            }
            None => None,
        };
        // A rescue boots the instance's kernel too (the rescue image's own kernel
        // properties are not resolved).
        let (kernel, initrd, cmdline) = (
            guest.kernel.clone(),
            guest.ramdisk.clone(),
            guest.cmdline.clone(),
        );
        if mode == Mode::Rescue {
            if let Some(rescue) = guest
                .rescue
                .as_ref()
                .filter(|i| !matches!(i.disk_format.as_str(), "aki" | "ari"))
                .filter(|i| i.path.is_file())
            {
                let path = dir.join("disk.rescue");
                self.overlay(rescue, &path, 0)?;
                disks.push(DiskSpec {
                    path,
                    format: "qcow2".into(),
                    device: "disk",
                    target: "vda".into(),
                    bus: "virtio",
                });
            } else if guest.kernel.is_none() {
                return Err(DriverError::Files(format!(
                    "no rescue image file for instance {id}"
                )));
            }
        }
        if let Some(path) = root {
            let target = if disks.is_empty() { "vda" } else { "vdb" };
            disks.push(DiskSpec {
                path,
                format: "qcow2".into(),
                device: "disk",
                target: target.into(),
                bus: "virtio",
            });
        }
        if let Some(iso) = self.config_drive(&dir, guest)? {
            // The default x86 machine (i440fx) has IDE built in, and Nova puts a
            // cdrom on IDE there (SATA only on q35); guests with no AHCI driver, as
            // Debian's cloud kernel, still see it.
            disks.push(DiskSpec {
                path: iso,
                format: "raw".into(),
                device: "cdrom",
                target: "hdd".into(),
                bus: "ide",
            });
        }
        self.bridges(guest)?;
        Ok(DomainSpec {
            uuid: id.0,
            host: host.to_string(),
            display_name: inst.spec.name.clone(),
            virt_type: self.opts.virt_type.clone(),
            vcpus: flavor.vcpus,
            memory_mb: flavor.ram_mb,
            disks,
            kernel,
            initrd,
            cmdline,
            console_log: dir.join("console.log"),
            nics: guest
                .nics
                .iter()
                .map(|n| NicSpec {
                    mac: n.mac.clone(),
                    bridge: bridge_name(&n.network_id),
                })
                .collect(),
        })
    }

    /// Defines (or redefines) the domain of `spec`.
    fn define(&self, spec: &DomainSpec) -> Result<Domain, DriverError> {
        self.conn.define_domain_xml(&domain_xml(spec)).map_err(lv)
    }

    /// Spawn: define and start; a running domain of this uuid is already spawned, a
    /// defined one that is not running is started.
    fn spawn(
        &self,
        host: &HostName,
        inst: &Instance,
        guest: &GuestContext,
        start: bool,
    ) -> Result<(), DriverError> {
        if let Some(dom) = self.lookup(inst.id())? {
            if dom.is_active().map_err(lv)? || !start {
                return Ok(());
            }
            return dom.create().map_err(lv).map(|_| ());
        }
        let spec = self.prepare(host, inst, &inst.flavor.spec, guest, Mode::Normal)?;
        let dom = self.define(&spec)?;
        if start {
            dom.create().map_err(lv)?;
        }
        Ok(())
    }

    /// Nova's clean shutdown: an ACPI shutdown, then destroy once `shutdown_timeout`
    /// has passed (a paused guest cannot react to ACPI: destroyed at once).
    fn power_off(&self, dom: &Domain) -> Result<(), DriverError> {
        if dom.has_managed_save(0).unwrap_or(false) {
            dom.managed_save_remove(0).map_err(lv)?;
        }
        if !dom.is_active().map_err(lv)? {
            return Ok(());
        }
        let paused = matches!(dom.state().map_err(lv)?.0, Enum::Known(DomainState::Paused));
        if !paused && dom.shutdown().is_ok() {
            let deadline = Instant::now() + self.opts.shutdown_timeout;
            while Instant::now() < deadline {
                if !dom.is_active().map_err(lv)? {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.destroy(dom)
    }

    /// Hard power-off (gone already: fine).
    fn destroy(&self, dom: &Domain) -> Result<(), DriverError> {
        match dom.destroy() {
            Ok(()) => Ok(()),
            Err(_) if !dom.is_active().map_err(lv)? => Ok(()),
            Err(e) => Err(lv(e)),
        }
    }

    /// Destroy + undefine (with its managed save, snapshots' metadata and NVRAM).
    fn undefine(&self, id: InstanceId) -> Result<(), DriverError> {
        let Some(dom) = self.lookup(id)? else {
            return Ok(());
        };
        self.destroy(&dom)?;
        let flags = virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | virt::sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM;
        match dom.undefine_flags(flags) {
            Ok(()) => Ok(()),
            // Drivers that know no NVRAM (the test driver) refuse the flag.
            Err(_) => dom
                .undefine_flags(
                    virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                        | virt::sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
                )
                .map_err(lv),
        }
    }

    /// Nothing left defined or on disk.
    fn delete(&self, id: InstanceId) -> Result<(), DriverError> {
        self.undefine(id)?;
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(files("cannot remove", &dir, e)),
        }
    }

    /// Off, redefined from the instance (`mode`, `flavor`), started.
    fn redefine_and_start(
        &self,
        host: &HostName,
        inst: &Instance,
        flavor: &FlavorSpec,
        guest: &GuestContext,
        mode: Mode,
        start: bool,
    ) -> Result<(), DriverError> {
        if let Some(dom) = self.lookup(inst.id())? {
            self.destroy(&dom)?;
            if dom.has_managed_save(0).unwrap_or(false) {
                dom.managed_save_remove(0).map_err(lv)?;
            }
        }
        let spec = self.prepare(host, inst, flavor, guest, mode)?;
        let dom = self.define(&spec)?;
        if start {
            dom.create().map_err(lv)?;
        }
        Ok(())
    }

    fn need(&self, inst: &Instance) -> Result<Domain, DriverError> {
        self.lookup(inst.id())?.ok_or_else(|| {
            DriverError::Hypervisor(format!(
                "Domain not found: no domain with matching uuid '{}' ({})",
                inst.id(),
                domain_name(inst.id().0)
            ))
        })
    }

    /// Grows the root overlay to the flavor's disk, keeping the original for a revert
    /// (Nova keeps the source's disk until the resize is confirmed).
    fn resize_disk(&self, id: InstanceId, disk_gb: u64) -> Result<(), DriverError> {
        let disk = self.dir(id).join("disk");
        if !disk.is_file() || disk_gb == 0 {
            return Ok(());
        }
        let orig = self.dir(id).join("disk.orig");
        if !orig.exists() {
            std::fs::copy(&disk, &orig).map_err(|e| files("cannot copy", &disk, e))?;
        }
        // Growing only: qemu-img refuses to shrink, and so does Nova.
        let _ = self.run(
            Command::new("qemu-img")
                .args(["resize", "-q"])
                .arg(&disk)
                .arg(format!("{disk_gb}G")),
        );
        Ok(())
    }

    fn perform(
        &self,
        host: &HostName,
        inst: &Instance,
        guest: &GuestContext,
        task: TaskState,
    ) -> Result<(), DriverError> {
        let id = inst.id();
        match task {
            TaskState::Spawning | TaskState::Unshelving => self.spawn(host, inst, guest, true),
            TaskState::PoweringOff | TaskState::Shelving | TaskState::SoftDeleting => {
                match self.lookup(id)? {
                    Some(dom) => self.power_off(&dom),
                    None => Ok(()),
                }
            }
            TaskState::PoweringOn | TaskState::Restoring => {
                let dom = self.need(inst)?;
                match dom.state().map_err(lv)?.0 {
                    Enum::Known(DomainState::Paused) => dom.resume().map_err(lv),
                    _ if dom.is_active().map_err(lv)? => Ok(()),
                    _ => dom.create().map_err(lv).map(|_| ()),
                }
            }
            TaskState::Rebooting => {
                let dom = self.need(inst)?;
                let running = dom.is_active().map_err(lv)?
                    && matches!(
                        dom.state().map_err(lv)?.0,
                        Enum::Known(DomainState::Running)
                    );
                if running
                    && dom
                        .reboot(virt::sys::VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
                        .is_ok()
                {
                    return Ok(());
                }
                // Nova falls back to a hard reboot when the soft one fails.
                self.redefine_and_start(host, inst, &inst.flavor.spec, guest, Mode::Normal, true)
            }
            TaskState::RebootingHard => {
                self.redefine_and_start(host, inst, &inst.flavor.spec, guest, Mode::Normal, true)
            }
            TaskState::Pausing => {
                let dom = self.need(inst)?;
                match dom.state().map_err(lv)?.0 {
                    Enum::Known(DomainState::Paused) => Ok(()),
                    _ => dom.suspend().map_err(lv),
                }
            }
            TaskState::Unpausing => {
                let dom = self.need(inst)?;
                match dom.state().map_err(lv)?.0 {
                    Enum::Known(DomainState::Paused) => dom.resume().map_err(lv),
                    _ => Ok(()),
                }
            }
            TaskState::Suspending => {
                let dom = self.need(inst)?;
                if !dom.is_active().map_err(lv)? && dom.has_managed_save(0).unwrap_or(false) {
                    return Ok(());
                }
                dom.managed_save(0).map_err(lv)
            }
            TaskState::Resuming => {
                let dom = self.need(inst)?;
                if dom.is_active().map_err(lv)? {
                    return Ok(());
                }
                dom.create().map_err(lv).map(|_| ())
            }
            TaskState::Deleting | TaskState::ShelvingOffloading => self.delete(id),
            // Live migration between hosts of one machine: the guest runs on; only its
            // persistent definition moves to the destination host.
            TaskState::Migrating => {
                let Some(m) = &inst.migration else {
                    return Ok(());
                };
                let target = m.dest_host.clone().unwrap_or_else(|| host.clone());
                let spec = self.prepare(&target, inst, &inst.flavor.spec, guest, Mode::Normal)?;
                self.define(&spec).map(|_| ())
            }
            TaskState::ResizeMigrating | TaskState::ResizeReverting => {
                let Some(m) = &inst.migration else {
                    return Ok(());
                };
                let reverting = task == TaskState::ResizeReverting;
                let (flavor, target) = if reverting {
                    (&m.old_flavor.spec, m.source_host.clone())
                } else {
                    (
                        &m.new_flavor.spec,
                        m.dest_host.clone().unwrap_or_else(|| host.clone()),
                    )
                };
                let running = if reverting {
                    m.old_power_state == PowerState::Running
                } else {
                    inst.power_state == PowerState::Running
                };
                if let Some(dom) = self.lookup(id)? {
                    self.power_off(&dom)?;
                }
                let dir = self.dir(id);
                if reverting {
                    let orig = dir.join("disk.orig");
                    if orig.is_file() {
                        std::fs::rename(&orig, dir.join("disk"))
                            .map_err(|e| files("cannot restore", &orig, e))?;
                    }
                } else {
                    self.resize_disk(id, flavor.disk_gb)?;
                }
                // Hosts of one machine share the instances directory: the disk stays.
                self.redefine_and_start(&target, inst, flavor, guest, Mode::Normal, running)
            }
            TaskState::Rebuilding => {
                self.undefine(id)?;
                for f in ["disk", "disk.rescue", "disk.orig", "disk.config"] {
                    let _ = std::fs::remove_file(self.dir(id).join(f));
                }
                Ok(())
            }
            TaskState::RebuildBlockDeviceMapping => Ok(()),
            TaskState::RebuildSpawning => {
                let stop = matches!(
                    inst.evacuation().map(|m| m.kind),
                    Some(MigrationKind::Evacuation { stop: true })
                );
                let start = !(stop || inst.vm_state == VmState::Stopped);
                self.spawn(host, inst, guest, start)
            }
            TaskState::Rescuing => {
                if let Some(dom) = self.lookup(id)? {
                    self.power_off(&dom)?;
                }
                let _ = std::fs::remove_file(self.dir(id).join("disk.rescue"));
                self.redefine_and_start(host, inst, &inst.flavor.spec, guest, Mode::Rescue, true)
            }
            TaskState::Unrescuing => {
                if let Some(dom) = self.lookup(id)? {
                    self.destroy(&dom)?;
                }
                let _ = std::fs::remove_file(self.dir(id).join("disk.rescue"));
                self.redefine_and_start(host, inst, &inst.flavor.spec, guest, Mode::Normal, true)
            }
            // Nova's libvirt driver sets passwords through the QEMU guest agent only.
            TaskState::UpdatingPassword => Err(DriverError::NotSupported(
                "set_admin_password is not implemented by this driver or guest instance.".into(),
            )),
            TaskState::Scheduling | TaskState::ResizePrep => Ok(()),
            // The agent records the snapshot's data (the image step); the guest runs on.
            TaskState::ImageSnapshotPending
            | TaskState::ImageSnapshot
            | TaskState::ImagePendingUpload
            | TaskState::ImageUploading
            | TaskState::ImageBackup
            | TaskState::ShelvingImagePendingUpload
            | TaskState::ShelvingImageUploading => Ok(()),
        }
    }

    fn domains(&self, host: &HostName) -> HashMap<InstanceId, PowerState> {
        let mut out = HashMap::new();
        let Ok(doms) = self.conn.list_all_domains(0) else {
            return out;
        };
        for dom in doms {
            let Ok(name) = dom.name() else { continue };
            let Some(id) = name.strip_prefix("instance-").and_then(InstanceId::parse) else {
                continue;
            };
            // The persistent definition: a live migration moves it while the guest runs.
            let Ok(xml) = dom.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE) else {
                continue;
            };
            if host_of_xml(&xml) != Some(host.as_str()) {
                continue;
            }
            if let Ok(p) = power_state(&dom) {
                out.insert(id, p);
            }
        }
        out
    }
}

#[async_trait]
impl VirtDriver for LibvirtDriver {
    async fn perform(
        &self,
        host: &HostName,
        instance: &Instance,
        guest: &GuestContext,
        task: TaskState,
    ) -> Result<(), DriverError> {
        let inner = self.inner.clone();
        let (host, instance, guest) = (host.clone(), instance.clone(), guest.clone());
        tokio::task::spawn_blocking(move || inner.perform(&host, &instance, &guest, task))
            .await
            .map_err(|e| DriverError::Hypervisor(format!("driver task failed: {e}")))?
    }

    fn domains(&self, host: &HostName) -> HashMap<InstanceId, PowerState> {
        self.inner.domains(host)
    }

    fn events(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.inner.events.clone()
    }

    fn console_output(&self, id: InstanceId) -> Option<String> {
        let path = self.inner.dir(id).join("console.log");
        std::fs::read(path)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DomainSpec {
        DomainSpec {
            uuid: Uuid::from_u128(7),
            host: "host1".into(),
            display_name: "vm <1>".into(),
            virt_type: "qemu".into(),
            vcpus: 2,
            memory_mb: 512,
            disks: vec![DiskSpec {
                path: "/i/x/disk".into(),
                format: "qcow2".into(),
                device: "disk",
                target: "vda".into(),
                bus: "virtio",
            }],
            kernel: None,
            initrd: None,
            cmdline: None,
            console_log: "/i/x/console.log".into(),
            nics: vec![NicSpec {
                mac: "fa:16:3e:00:00:01".into(),
                bridge: bridge_name("0123456789abcdef"),
            }],
        }
    }

    #[test]
    fn the_xml_names_the_instance_and_sizes_it_from_the_flavor() {
        let x = domain_xml(&spec());
        assert!(x.starts_with("<domain type='qemu'>"));
        assert!(x.contains("<name>instance-00000000-0000-0000-0000-000000000007</name>"));
        assert!(x.contains("<uuid>00000000-0000-0000-0000-000000000007</uuid>"));
        assert!(x.contains("<memory unit='MiB'>512</memory>"));
        assert!(x.contains("<vcpu>2</vcpu>"));
        assert!(x.contains("<features><acpi/></features>"));
        assert!(x.contains("<boot dev='hd'/>"));
        assert!(x.contains("<source file='/i/x/disk'/>"));
        assert!(x.contains("<target dev='vda' bus='virtio'/>"));
        assert!(x.contains("<serial type='file'>\n      <source path='/i/x/console.log'/>"));
        assert!(x.contains("<mac address='fa:16:3e:00:00:01'/>"));
        assert!(x.contains("<source bridge='brq0123456789a'/>"));
        assert!(x.contains("<model type='virtio'/>"));
        assert!(x.contains("<stratus:name>vm &lt;1&gt;</stratus:name>"));
        assert_eq!(host_of_xml(&x), Some("host1"));
        assert_eq!(x, domain_xml(&spec()), "pure");
    }

    #[test]
    fn a_kernel_boot_names_kernel_initrd_and_command_line() {
        let mut s = spec();
        s.virt_type = "kvm".into();
        s.disks.clear();
        s.kernel = Some("/img/k".into());
        s.initrd = Some("/img/r".into());
        s.cmdline = Some("console=ttyS0 a=b&c".into());
        let x = domain_xml(&s);
        assert!(x.starts_with("<domain type='kvm'>"));
        assert!(x.contains("<kernel>/img/k</kernel>"));
        assert!(x.contains("<initrd>/img/r</initrd>"));
        assert!(x.contains("<cmdline>console=ttyS0 a=b&amp;c</cmdline>"));
        assert!(!x.contains("<boot dev"));
        assert!(!x.contains("<disk"));
    }

    #[test]
    fn a_config_drive_is_a_readonly_cdrom() {
        let mut s = spec();
        s.disks.push(DiskSpec {
            path: "/i/x/disk.config".into(),
            format: "raw".into(),
            device: "cdrom",
            target: "hdd".into(),
            bus: "ide",
        });
        let x = domain_xml(&s);
        assert!(x.contains(
            "<disk type='file' device='cdrom'>\n      <driver name='qemu' type='raw'/>\n      <source file='/i/x/disk.config'/>\n      <target dev='hdd' bus='ide'/>\n      <readonly/>"
        ));
    }

    #[test]
    fn glance_formats_map_to_qemu_formats() {
        assert_eq!(qemu_format("qcow2"), "qcow2");
        assert_eq!(qemu_format("vhd"), "vpc");
        assert_eq!(qemu_format("ami"), "raw");
        assert_eq!(qemu_format("raw"), "raw");
    }
}
