//! The compute service: one agent per (simulated) host, acting through a [`VirtDriver`].
//!
//! Invariants: an agent acts only on instances whose current work is
//! `Work::Compute { host }` for one of its hosts; it answers with `Complete` / `Fail`
//! naming the operation, task and attempt it performed (dedupe id
//! `compute:<instance>:<op>:<task>:<attempt>`), so a redelivered event or a restart
//! never applies an answer twice, and an answer to a superseded operation changes
//! nothing. An operation lost in a crash is re-driven by the reconciler's retry.
//!
//! Defence in depth (Nova's libvirt driver): before a guest is spawned from an image
//! (build, rebuild) the agent inspects the image's file ([`imageformat::nova_boot`]);
//! content that does not match its `disk_format`, or is unsafe (a qcow2 backing file,
//! a VMDK naming other files, ...), fails the task with Nova's `ImageUnacceptable`
//! message, so the server goes to ERROR and its claim is released like any failed build.

pub mod driver;
pub mod images;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use domain::host::{HostCommand, HostSpec};
use domain::instance::{power_sync, InstanceCommand, Work};
use domain::{CellName, Ctx, DomainError, HostName, InstanceId, TaskState};
use engine::runtime::TaskError;
use engine::server_ports::{self, PortsError};
use engine::{now, Delivery, Engine, EngineError, Family, InFlight, Meta, Periodic, Reactor};
use eventlog::LockExt;
use uuid::Uuid;

#[cfg(feature = "libvirt")]
pub mod libvirt;

pub use driver::{
    ConfigDrive, DriverError, GuestContext, GuestNic, ImageFile, SimDriver, SimOptions, VirtDriver,
};

type Key = (InstanceId, Uuid, TaskState, u32);

/// Inspection verdicts by image and claimed format: image data never changes once
/// active, so an image is inspected once per process, as Nova inspects it once per host
/// when it enters the host's image cache (not at every boot).
type Verdicts = Arc<Mutex<HashMap<(domain::ImageId, String), Result<(), &'static str>>>>;

/// The agents of the hosts this process simulates.
pub struct ComputeAgent {
    hosts: HashSet<HostName>,
    driver: Arc<dyn VirtDriver>,
    inflight: InFlight<Key>,
    /// Where image files are read from for inspection (None: images are not inspected).
    image_dir: Option<Arc<PathBuf>>,
    /// Verdicts of the images inspected so far.
    verdicts: Verdicts,
    /// Nova's `force_config_drive`: every guest gets a config drive.
    force_config_drive: bool,
}

impl std::fmt::Debug for ComputeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputeAgent")
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl ComputeAgent {
    /// Agents for `hosts`, acting through `driver`.
    pub fn new(hosts: impl IntoIterator<Item = HostName>, driver: Arc<dyn VirtDriver>) -> Self {
        ComputeAgent {
            hosts: hosts.into_iter().collect(),
            driver,
            inflight: Default::default(),
            image_dir: None,
            verdicts: Verdicts::default(),
            force_config_drive: false,
        }
    }

    /// Inspects the images it boots, reading their files from `dir` (the image
    /// service's directory: shared storage in a split deployment).
    pub fn with_image_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.image_dir = Some(Arc::new(dir.into()));
        self
    }

    /// Gives every guest a config drive, asked for or not (Nova's `force_config_drive`).
    pub fn with_force_config_drive(mut self, force: bool) -> Self {
        self.force_config_drive = force;
        self
    }

    /// Maps each host to its cell (`host.mapped` in the api stream, appended with an
    /// expected sequence of 0), before [`ComputeAgent::register`]. Waits up to `wait`
    /// for a cell that does not exist yet (logging every 5 s), then fails with
    /// `DomainError::NotFound { kind: "Cell" }`; a host already mapped to another cell
    /// fails with `DomainError::Conflict` (a host belongs to exactly one cell).
    pub async fn join_cell(
        engine: &Arc<Engine>,
        specs: &[HostSpec],
        wait: Duration,
    ) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut next_log = tokio::time::Instant::now();
        let cells: BTreeSet<&CellName> = specs.iter().map(|s| &s.cell).collect();
        for cell in cells {
            loop {
                if engine::cells::load_cell(engine.log().as_ref(), cell)
                    .await?
                    .0
                    .is_some()
                {
                    break;
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(DomainError::NotFound {
                        kind: "Cell",
                        id: cell.to_string(),
                    }
                    .into());
                }
                if now >= next_log {
                    tracing::warn!(%cell, "cell does not exist yet; waiting for `stratus cell create {cell}`");
                    next_log = now + Duration::from_secs(5);
                }
                tokio::time::sleep(Duration::from_millis(250).min(deadline - now)).await;
            }
        }
        for spec in specs {
            let meta = Meta::service(
                "compute",
                &format!("req-{}", Uuid::new_v4()),
                "startup",
                domain::dedupe::map_host(&spec.name, &spec.cell),
            );
            let ctx = Ctx::service("compute", now(), Uuid::new_v4());
            engine::cells::map_host(engine.log().as_ref(), &spec.name, &spec.cell, &ctx, &meta)
                .await?;
        }
        Ok(())
    }

    /// Registers (or updates) the hosts' inventories.
    pub async fn register(engine: &Arc<Engine>, specs: &[HostSpec]) -> Result<(), EngineError> {
        for spec in specs {
            let meta = Meta::service(
                "compute",
                &format!("req-{}", Uuid::new_v4()),
                "startup",
                domain::dedupe::register_host(&spec.name, Uuid::new_v4()),
            );
            engine
                .host(
                    &spec.cell,
                    &spec.name,
                    HostCommand::Register(spec.clone()),
                    &Ctx::service("compute", now(), Uuid::new_v4()),
                    &meta,
                )
                .await?;
        }
        Ok(())
    }

    /// Deletes the image of a snapshot that ended without uploading it (given up by the
    /// reconciler after a timeout, or failed): it is the snapshot of one of these hosts'
    /// instances, no operation of the instance works on it any more, and it is still
    /// `queued` or `saving`. Nova deletes such an image; without this it would stay.
    fn sweep_snapshot(&self, engine: &Arc<Engine>, id: InstanceId, correlation: &str) {
        let image = {
            let v = engine.world().read();
            let Some(row) = v.instances().get(&id) else {
                return;
            };
            let (Some(job), Some(i)) = (row.extras.snapshot.as_ref(), row.state()) else {
                return;
            };
            let mine = i.host.as_ref().is_some_and(|h| self.hosts.contains(h));
            let running = i.op.is_some_and(|o| o.id == job.image.0);
            let pending = v.images().get(&job.image).is_some_and(|r| {
                matches!(
                    r.state.status,
                    domain::image::ImageStatus::Queued | domain::image::ImageStatus::Saving
                )
            });
            if !mine || running || !pending {
                return;
            }
            job.image
        };
        let engine = engine.clone();
        let correlation = correlation.to_string();
        self.inflight
            .spawn((id, image.0, TaskState::ImageUploading, 0), async move {
                if let Err(e) = images::delete(&engine, image, &correlation).await {
                    tracing::warn!(%image, error = %e, "abandoned snapshot image not deleted");
                }
            });
    }

    /// Brings a server's ports to what its state needs ([`port_plan`]): deleted
    /// servers' ports released, bindings following the host. Level-triggered: run at
    /// each of its events and for every server port at reconcile, by the agent of the
    /// server's host or of a host its ports are bound to.
    fn converge_ports(&self, engine: &Arc<Engine>, id: InstanceId, correlation: String) {
        let plan = {
            let v = engine.world().read();
            let Some(i) = v.instances().get(&id).and_then(|r| r.state()) else {
                return;
            };
            let ports = v.networks().ports_of_device(&id.to_string());
            let mine = i.host.as_ref().is_some_and(|h| self.hosts.contains(h))
                || ports
                    .iter()
                    .any(|p| self.hosts.iter().any(|h| h.as_str() == p.binding_host))
                || (i.host.is_none() && ports.iter().all(|p| p.binding_host.is_empty()));
            if !mine {
                return;
            }
            match port_plan(i, &ports) {
                Some(p) => p,
                None => return,
            }
        };
        let engine = engine.clone();
        let key = (id, Uuid::nil(), TaskState::Deleting, u32::MAX);
        self.inflight.spawn(key, async move {
            let actor = "compute";
            let done = match &plan {
                PortPlan::Release => {
                    server_ports::release_all(&engine, actor, &correlation, id).await
                }
                PortPlan::Bind(host) => {
                    server_ports::bind_all(&engine, actor, &correlation, id, host).await
                }
            };
            if let Err(e) = done {
                tracing::warn!(instance = %id, ?plan, error = %e, "server ports not converged; retried at reconcile");
            }
        });
    }

    fn kick(&self, engine: &Arc<Engine>, id: InstanceId, correlation: String) {
        let (inst, host, task) = {
            let v = engine.world().read();
            let Some(i) = v.instance(&id) else { return };
            match i.work() {
                Some(Work::Compute { host, task }) if self.hosts.contains(&host) => {
                    (i.clone(), host, task)
                }
                _ => return,
            }
        };
        let Some(op) = inst.op else { return };
        let extras = engine
            .world()
            .read()
            .instances()
            .get(&id)
            .map(|r| r.extras.clone())
            .unwrap_or_default();
        let key = (id, op.id, task, op.attempt);
        let engine = engine.clone();
        let driver = self.driver.clone();
        let image_dir = self.image_dir.clone();
        let force_config_drive = self.force_config_drive;
        let verdicts = self.verdicts.clone();
        self.inflight.spawn(key, async move {
            let mut result = match (&image_dir, task) {
                (Some(dir), TaskState::Spawning | TaskState::RebuildSpawning) => {
                    inspect_image(&engine, dir, &verdicts, &inst, task).await
                }
                _ => Ok(()),
            };
            if result.is_ok()
                && task == TaskState::Spawning
                && op.action == domain::instance::Action::Create
            {
                match allocate_ports(&engine, &inst, &host, &correlation).await {
                    Ok(r) => result = r,
                    // Not answered: the reconciler's retry redoes the step.
                    Err(()) => return,
                }
            }
            if result.is_ok() {
                let guest = guest_context(
                    &engine,
                    image_dir.as_deref().map(|p| p.as_path()),
                    &inst,
                    force_config_drive,
                );
                result = driver
                    .perform(&host, &inst, &guest, task)
                    .await
                    .map_err(|e| e.to_string());
            }
            if result.is_ok() {
                result = image_step(&engine, &inst, op, task, &extras, &correlation)
                    .await
                    .map_err(|e| format!("image upload failed: {e}"));
            }
            if let (Err(_), Some(job)) = (&result, extras.snapshot.as_ref()) {
                // A failed snapshot leaves no image behind (Nova deletes it).
                let snapshotting = matches!(
                    op.action,
                    domain::instance::Action::CreateImage | domain::instance::Action::CreateBackup
                );
                if snapshotting {
                    if let Err(e) = images::delete(&engine, job.image, &correlation).await {
                        tracing::warn!(image = %job.image, error = %e, "failed snapshot's image not deleted");
                    }
                }
            }
            let cmd = match result {
                Ok(()) => InstanceCommand::Complete { op: op.id, task },
                Err(message) => InstanceCommand::Fail {
                    op: op.id,
                    task,
                    message,
                },
            };
            let dedupe = domain::dedupe::compute(id, op.id, task, op.attempt);
            let meta = Meta::service(
                &format!("compute@{host}"),
                &correlation,
                &op.id.to_string(),
                dedupe,
            );
            let ctx = Ctx::service("compute", now(), Uuid::new_v4());
            if let Err(e) = engine.instance(id, cmd, &ctx, &meta).await {
                tracing::warn!(instance = %id, error = %e, "compute could not record the result; the reconciler will retry");
            }
        });
    }
}

/// What the hypervisor needs for `inst`, from the read model (Nova's driver reads
/// the same from the image's properties and the network info): the image file and its
/// format, the kernel and ramdisk of a direct kernel boot (the image's `kernel_id` /
/// `ramdisk_id`, Nova's AKI/ARI), `os_command_line`, the rescue image, and one NIC
/// per port (oldest first, so the first NIC is the first port), and the config drive's
/// files when the server asked for one or every guest gets one (`force`): Nova's
/// metadata documents as they are now ([`metadata::config_drive`]). Read after the
/// build's ports are allocated.
fn guest_context(
    engine: &Arc<Engine>,
    image_dir: Option<&Path>,
    inst: &domain::instance::Instance,
    force_config_drive: bool,
) -> GuestContext {
    let v = engine.world().read();
    let file =
        |image_ref: &str| -> Option<(ImageFile, std::collections::BTreeMap<String, String>)> {
            let id = domain::ImageId::parse(image_ref)?;
            let row = v.images().get(&id)?;
            let dir = image_dir?;
            Some((
                ImageFile {
                    path: dir.join(id.to_string()),
                    disk_format: row
                        .state
                        .spec
                        .disk_format
                        .clone()
                        .unwrap_or_else(|| "raw".into()),
                },
                row.state.spec.properties.clone(),
            ))
        };
    let mut guest = GuestContext::default();
    if let Some((image, props)) = file(&inst.spec.image_ref) {
        let by_prop = |key: &str| props.get(key).and_then(|r| file(r)).map(|(f, _)| f.path);
        guest.kernel = by_prop("kernel_id");
        guest.ramdisk = by_prop("ramdisk_id");
        guest.cmdline = props.get("os_command_line").cloned();
        guest.image = Some(image);
    }
    let rescue_ref = inst
        .rescue_image_ref
        .as_deref()
        .unwrap_or(&inst.spec.image_ref);
    guest.rescue = file(rescue_ref).map(|(f, _)| f);
    let mut ports = v.networks().ports_of_device(&inst.id().to_string());
    ports.sort_by_key(|p| (p.created_at, p.id.to_string()));
    guest.nics = ports
        .into_iter()
        .map(|p| GuestNic {
            port_id: p.id.to_string(),
            mac: p.mac_address.clone(),
            network_id: p.network_id.to_string(),
        })
        .collect();
    let requested = v
        .instances()
        .get(&inst.id())
        .is_some_and(|r| r.extras.config_drive);
    if metadata::config_drive::required(requested, force_config_drive) {
        guest.config_drive =
            metadata::config_drive::files(&v, &inst.id()).map(|files| ConfigDrive { files });
    }
    guest
}

/// The build's ports on `host` (Nova's `allocate_for_instance` in `_build_resources`):
/// Ok(Ok) when set up, Ok(Err(fault)) when the network service refused (what was set
/// up is released and the build fails with Nova's `BuildAbortException` message),
/// Err when it could not be decided now (log or contention: retried).
async fn allocate_ports(
    engine: &Arc<Engine>,
    inst: &domain::instance::Instance,
    host: &HostName,
    correlation: &str,
) -> Result<Result<(), String>, ()> {
    let actor = format!("compute@{host}");
    let zone = engine.world().read().host_availability_zone(host);
    match server_ports::allocate(engine, &actor, correlation, inst, host.as_str(), &zone).await {
        Ok(()) => Ok(Ok(())),
        Err(PortsError::Refused(e)) => {
            tracing::warn!(instance = %inst.id(), kind = e.kind, error = %e.message, "network allocation failed");
            if let Err(e) = server_ports::release_all(engine, &actor, correlation, inst.id()).await
            {
                tracing::warn!(instance = %inst.id(), error = %e, "ports of a failed build not released yet; the agent's reconcile will");
            }
            Ok(Err(format!(
                "Build of instance {} aborted: Failed to allocate the network(s), not rescheduling.",
                inst.id()
            )))
        }
        Err(PortsError::Engine(e)) => {
            tracing::warn!(instance = %inst.id(), error = %e, "network allocation not decided; retried");
            Err(())
        }
    }
}

/// What a server's ports need, from its state: nothing, a release (deleted, or a
/// build that failed before it ever ran), or a binding to its host ("" once
/// shelve-offloaded). Servers with an operation in progress are left to it.
fn port_plan(i: &domain::instance::Instance, ports: &[&domain::network::Port]) -> Option<PortPlan> {
    use domain::VmState;
    if ports.is_empty() {
        return None;
    }
    if i.deleted || (i.vm_state == VmState::Error && i.launched_at.is_none() && i.op.is_none()) {
        return Some(PortPlan::Release);
    }
    if i.op.is_some() {
        return None;
    }
    let host = match (&i.host, i.vm_state) {
        (_, VmState::ShelvedOffloaded) | (None, _) => String::new(),
        (Some(h), _) => h.as_str().to_string(),
    };
    ports
        .iter()
        .any(|p| p.binding_host != host)
        .then_some(PortPlan::Bind(host))
}

/// See [`port_plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPlan {
    Release,
    Bind(String),
}

/// Nova's deep inspection of the image a guest is spawned from: Ok, or the fault
/// message (`ImageUnacceptable`, wrapped in `BuildAbortException` for a build). An
/// image without a file here (a snapshot, whose data is its base image's; a file on
/// another API process's local storage) is not inspected.
async fn inspect_image(
    engine: &Arc<Engine>,
    dir: &Path,
    verdicts: &Verdicts,
    inst: &domain::instance::Instance,
    task: TaskState,
) -> Result<(), String> {
    let Some(image) = domain::ImageId::parse(&inst.spec.image_ref) else {
        return Ok(()); // booted from a volume
    };
    let Some(disk_format) = engine
        .world()
        .read()
        .images()
        .get(&image)
        .and_then(|r| r.state.spec.disk_format.clone())
    else {
        return Ok(());
    };
    let key = (image, disk_format.clone());
    let known = verdicts.lock_or_recover().get(&key).cloned();
    let verdict = match known {
        Some(v) => v,
        None => {
            let path = dir.join(image.to_string());
            if !path.is_file() {
                tracing::debug!(%image, "no image file to inspect");
                return Ok(());
            }
            let inspected = tokio::task::spawn_blocking(move || imageformat::inspect_file(&path))
                .await
                .map_err(|e| format!("image inspection failed: {e}"))?;
            let v = imageformat::nova_boot(&disk_format, &inspected);
            if let Err(reason) = &v {
                tracing::warn!(%image, %disk_format, inspected = ?inspected, reason, "image refused");
            }
            verdicts.lock_or_recover().insert(key, v);
            v
        }
    };
    let Err(reason) = verdict else {
        return Ok(());
    };
    let unacceptable = format!("Image {image} is unacceptable: {reason}");
    Err(if task == TaskState::Spawning {
        format!("Build of instance {} aborted: {unacceptable}", inst.id())
    } else {
        unacceptable
    })
}

/// The image work of a task, once the hypervisor did its part: a snapshot's upload
/// (and a backup's rotation), a shelve's `<name>-shelved` image, an unshelve's deletion
/// of that image. Idempotent (see [`images`]): a retried task redoes it safely.
async fn image_step(
    engine: &Arc<Engine>,
    inst: &domain::instance::Instance,
    op: domain::instance::Operation,
    task: TaskState,
    extras: &domain::instance::ServerExtras,
    correlation: &str,
) -> Result<(), EngineError> {
    use domain::instance::Action;
    match task {
        TaskState::ImageUploading => {
            let Some(job) = extras.snapshot.as_ref() else {
                return Ok(());
            };
            images::upload(engine, inst, job.image, correlation).await?;
            if let Some(b) = &job.backup {
                images::rotate(engine, inst, b, correlation).await?;
            }
            Ok(())
        }
        TaskState::ShelvingImageUploading => {
            images::upload(engine, inst, domain::ImageId(op.id), correlation).await
        }
        TaskState::Unshelving | TaskState::Spawning if op.action == Action::Unshelve => {
            match extras.shelved_image {
                Some(image) => images::delete(engine, image, correlation).await,
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Nova's `_sync_power_states`, as a periodic task of the agents' process (and at each
/// of the driver's lifecycle events): compares the driver's domains with the settled
/// instances of `hosts` and follows [`power_sync::SYNC_RULES`]:
/// - a power state other than the log's is recorded (`instance.power_state_changed`;
///   a guest missing from the hypervisor is NOSTATE);
/// - an ACTIVE server whose guest is shut off, crashed or suspended, or a STOPPED one
///   whose guest runs, gets the ordinary stop operation from the compute service
///   (task `powering-off`, instance action `stop`, then SHUTOFF), as Nova's
///   `force_stop`; a soft-deleted guest found running is powered off.
///
/// Instances with an operation in progress are left to it; nothing is ever started,
/// so an agent restarted while its guests run boots no second copy. Only drivers that
/// observe real guests need it (libvirt).
pub struct PowerSync {
    hosts: Vec<HostName>,
    driver: Arc<dyn VirtDriver>,
}

impl std::fmt::Debug for PowerSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerSync")
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl PowerSync {
    /// The sync of `hosts` through `driver`.
    pub fn new(hosts: Vec<HostName>, driver: Arc<dyn VirtDriver>) -> Self {
        PowerSync { hosts, driver }
    }

    /// What to do now: each settled instance of these hosts whose guest the driver
    /// shows in another power state than the log's, or whose (vm_state, power state)
    /// calls for an operation ([`power_sync::plan`]). An instance placed on one of the
    /// hosts without a domain there is observed as NOSTATE, as Nova's driver reports a
    /// missing guest.
    fn plans(&self, engine: &Arc<Engine>) -> Vec<Sync> {
        let mut out = Vec::new();
        for host in &self.hosts {
            let domains = self.driver.domains(host);
            let v = engine.world().read();
            let observed = domains.iter().map(|(id, p)| (*id, *p)).chain(
                v.instances()
                    .values()
                    .filter_map(|r| r.state())
                    .filter(|i| i.host.as_ref() == Some(host) && !domains.contains_key(&i.id()))
                    .map(|i| (i.id(), domain::PowerState::NoState))
                    .collect::<Vec<_>>(),
            );
            for (id, power) in observed {
                let Some(i) = v.instance(&id) else { continue };
                if i.host.as_ref() != Some(host) {
                    continue;
                }
                let Some(plan) = power_sync::plan(i, power) else {
                    continue;
                };
                if plan.record.is_none() && plan.action.is_none() {
                    continue;
                }
                tracing::warn!(instance = %id, vm_state = ?i.vm_state, recorded = ?i.power_state, observed = ?power, why = plan.why.unwrap_or("power state changed"), "power-state sync");
                out.push(Sync {
                    id,
                    host: host.clone(),
                    seen: i.updated_at,
                    observed: power,
                    plan,
                    instance: i.clone(),
                });
            }
        }
        out
    }
}

/// One instance to sync: what was seen and what to do.
struct Sync {
    id: InstanceId,
    host: HostName,
    /// The instance's `updated_at` when seen (part of the dedupe ids).
    seen: domain::Timestamp,
    observed: domain::PowerState,
    plan: power_sync::SyncPlan,
    instance: domain::instance::Instance,
}

impl PowerSync {
    /// Runs a sync at each of the driver's lifecycle events (after a short pause, so
    /// that the answer of the operation that caused the event is in the world first),
    /// until `stop` changes; None when the driver has no events.
    pub fn follow_events(
        self: Arc<Self>,
        engine: Arc<Engine>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let events = self.driver.events()?;
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = events.notified() => {}
                    _ = stop.changed() => return,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Err(e) = self.run(&engine).await {
                    tracing::warn!(error = %e, "power sync after a libvirt event failed");
                }
            }
        }))
    }
}

#[async_trait]
impl Periodic for PowerSync {
    fn name(&self) -> &str {
        "power-sync"
    }

    async fn run(&self, engine: &Arc<Engine>) -> Result<(), TaskError> {
        for sync in self.plans(engine) {
            let id = sync.id;
            let ctx = Ctx::service("compute", now(), Uuid::new_v4());
            let correlation = format!("req-power-sync-{id}");
            let refused = |e: &DomainError| {
                // The instance moved on meanwhile (an operation began): the next pass
                // looks again.
                tracing::debug!(instance = %id, error = %e, "power sync: refused");
            };
            if sync.plan.record.is_some() {
                let meta = Meta::service(
                    &format!("compute@{}", sync.host),
                    &correlation,
                    "power-sync",
                    domain::dedupe::compute_power_state(id, sync.seen, sync.observed),
                );
                let cmd = InstanceCommand::SyncPowerState {
                    observed: sync.observed,
                };
                match engine.instance(id, cmd, &ctx, &meta).await {
                    Ok(_) => {}
                    Err(EngineError::Domain(e)) => {
                        refused(&e);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match sync.plan.action {
                None => {}
                Some(power_sync::SyncAction::Stop) => {
                    let meta = Meta::service(
                        "compute",
                        &correlation,
                        "power-sync",
                        domain::dedupe::compute_power_sync(id, sync.seen),
                    );
                    match engine
                        .instance(id, InstanceCommand::Stop, &ctx, &meta)
                        .await
                    {
                        Ok(_) => {}
                        Err(EngineError::Domain(e)) => refused(&e),
                        Err(e) => return Err(e.into()),
                    }
                }
                // A soft-deleted guest found running is powered off, its vm_state kept.
                Some(power_sync::SyncAction::PowerOff) => {
                    let done = self
                        .driver
                        .perform(
                            &sync.host,
                            &sync.instance,
                            &GuestContext::default(),
                            TaskState::SoftDeleting,
                        )
                        .await;
                    if let Err(e) = done {
                        tracing::warn!(instance = %id, error = %e, "power sync: soft-deleted guest not powered off");
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reports that the agents of `hosts` are alive, as a periodic task of the
/// [`engine::Runtime`] (its period is Nova's `report_interval`). Call
/// [`Heartbeats::beat_now`] once before starting the runtime, so that a scheduler in
/// the same process sees the hosts from its first decision. The beat's payload is JSON:
/// `{"host", "cell", "allocations", "version"}`.
#[derive(Debug)]
pub struct Heartbeats {
    hosts: Vec<(CellName, HostName)>,
}

impl Heartbeats {
    /// Beats for `hosts`.
    pub fn new(hosts: Vec<(CellName, HostName)>) -> Self {
        Heartbeats { hosts }
    }

    /// One beat for each host now (failures are logged: the next beat retries).
    pub async fn beat_now(&self, engine: &Arc<Engine>) {
        beat_all(engine, &self.hosts).await;
    }
}

#[async_trait]
impl Periodic for Heartbeats {
    fn name(&self) -> &str {
        "heartbeats"
    }

    async fn run(&self, engine: &Arc<Engine>) -> Result<(), TaskError> {
        match beat_all(engine, &self.hosts).await {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// One beat for each of `hosts` (failures are logged: the next beat retries); returns
/// the last failure.
async fn beat_all(engine: &Arc<Engine>, hosts: &[(CellName, HostName)]) -> Option<String> {
    let mut failed = None;
    for (cell, host) in hosts {
        let allocations = engine
            .world()
            .read()
            .hosts()
            .values()
            .find(|r| r.state.spec.name == *host)
            .map_or(0, |r| r.state.allocations.len());
        let payload = serde_json::json!({
            "host": host.as_str(),
            "cell": cell.as_str(),
            "allocations": allocations,
            "version": env!("CARGO_PKG_VERSION"),
        });
        if let Err(e) = engine
            .heartbeats
            .beat(
                engine::liveness::COMPUTE_SERVICE,
                host.as_str(),
                payload.to_string().as_bytes(),
            )
            .await
        {
            tracing::warn!(%host, error = %e, "heartbeat failed");
            failed = Some(format!("heartbeat of {host} failed: {e}"));
        }
    }
    failed
}

#[async_trait]
impl Reactor for ComputeAgent {
    fn name(&self) -> &str {
        "compute"
    }

    /// One consumer per set of hosts: every agent sees every commit of its cell and
    /// acts for its own hosts only.
    fn consumer_name(&self) -> String {
        let mut hosts: Vec<&str> = self.hosts.iter().map(|h| h.as_str()).collect();
        hosts.sort_unstable();
        format!("compute-{}", hosts.join("-"))
    }

    fn subscribes(&self) -> &'static [Family] {
        &[Family::Instance]
    }

    async fn handle(&self, engine: &Arc<Engine>, delivery: &Delivery<'_>) {
        if let Some(id) = InstanceId::parse(delivery.subject.id_token()) {
            self.sweep_snapshot(engine, id, &delivery.meta.correlation_id);
            self.kick(engine, id, delivery.meta.correlation_id.clone());
            self.converge_ports(engine, id, delivery.meta.correlation_id.clone());
        }
    }

    async fn reconcile(&self, engine: &Arc<Engine>) {
        let ids: Vec<InstanceId> = engine.world().read().pending().iter().copied().collect();
        for id in ids {
            self.kick(engine, id, format!("req-reconcile-{id}"));
        }
        // Every server port, so a release or binding missed in a crash is done.
        let servers: BTreeSet<InstanceId> = engine
            .world()
            .read()
            .networks()
            .ports()
            .filter(|p| domain::network::server::is_server_port(&p.device_owner))
            .filter_map(|p| InstanceId::parse(&p.device_id))
            .collect();
        for id in servers {
            self.converge_ports(engine, id, format!("req-reconcile-{id}"));
        }
    }
}
