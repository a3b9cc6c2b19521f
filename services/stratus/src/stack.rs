//! The all-in-one control plane: embedded log, projections, engine, scheduler,
//! placement, reconciler, simulated compute hosts and the API, in one process.
//!
//! Start order matters for "a restart continues from the log": views are loaded from
//! the projection store, the projector catches up from the stored positions before
//! anything reads, then hosts and default flavors are ensured (as events, once), then
//! reactors start (they reconcile first), then the API listens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::datadir::DataDir;
use anyhow::Context as _;
use compute::{ComputeAgent, SimDriver, SimOptions, VirtDriver};
use domain::flavor::{FlavorCommand, FlavorSpec};
use domain::host::{HostSpec, Ratios, Resources};
use domain::instance::Config;
use domain::{CellName, Ctx, FlavorId, HostName};
use engine::runtime::{Periodic, Running, TaskError};
use engine::{now, Engine, Meta, Period, Runtime, RuntimeOptions};
use eventlog::{
    CheckpointStore, EmbeddedCheckpoints, EmbeddedLog, EventLog, JetStreamLog, JetStreamOptions,
    LockExt, StreamName,
};
use projections::projector::Projector;
use projections::{ProjectionStore, World};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Options of the all-in-one.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// API listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// Number of simulated hosts (`host1`..`hostN` in `cell1`).
    pub hosts: usize,
    /// Size of each host.
    pub host_size: Resources,
    /// Simulated driver options.
    pub sim: SimOptions,
    /// Which hypervisor driver the compute agents use (`--driver`).
    pub driver: DriverKind,
    /// Period of the power-state sync of a libvirt driver's guests (Nova's
    /// `sync_power_state_interval`; shorter here: libvirt's lifecycle events are not
    /// listened to yet).
    pub sync_power_state_interval: Duration,
    /// State machine tunables.
    pub config: Config,
    /// Quota defaults and the grace of unmatched reservations.
    pub quota: engine::quota::QuotaConfig,
    /// Reconciler period.
    pub reconcile_every: Duration,
    /// Usage audit period (`--audit-period`, Nova's `instance_usage_audit_period`):
    /// the scheduler role closes each one per cell (`audit.period_closed`).
    pub audit_period: Duration,
    /// Retry delays of the webhook deliverer (1 s doubling to 5 minutes).
    pub webhook_backoff: notifier::webhook::Backoff,
    /// PEM certificates trusted for `https` webhook receivers beside the system's roots
    /// (`--webhook-ca`): a private CA of the receivers.
    pub webhook_roots: Vec<u8>,
    /// Period of the reactors' own reconcile pass (their safety net for commits a
    /// crash left unhandled).
    pub reactor_reconcile_every: Duration,
    /// NATS URL: use JetStream as the event log instead of the embedded store
    /// (projections and checkpoints stay in the data directory).
    pub nats: Option<String>,
    /// Replicas of the JetStream streams (1 or 3).
    pub nats_replicas: usize,
    /// What this process runs (everything for `serve`).
    pub roles: Roles,
    /// Cell of the simulated hosts.
    pub cell: CellName,
    /// Names of the simulated hosts (None: `host1..hostN`).
    pub host_names: Option<Vec<HostName>>,
    /// More simulated hosts in other cells: `n` hosts `<cell>-host1..n` per entry (the
    /// cells must exist: `stratus cell create`).
    pub cell_hosts: Vec<(CellName, usize)>,
    /// Serve every HTTP listener over TLS with this certificate and key.
    pub tls: Option<crate::httpd::Tls>,
    /// How often compute agents report they are alive (Nova's `report_interval`).
    pub report_interval: Duration,
    /// A host whose agent has not reported for this long is down and never scheduled
    /// to (Nova's `service_down_time`).
    pub service_down_time: Duration,
    /// Scheduler weigher multipliers and `host_subset_size`.
    pub scheduling: domain::scheduling::Config,
    /// How long a compute process waits for its cell to be created before failing.
    pub cell_wait: Duration,
    /// Cell health probe: period, and how long a cell's stream may stay unreachable
    /// before the cell is reported down.
    pub probe_every: Duration,
    /// See `probe_every`.
    pub down_after: Duration,
    /// Image API (Glance v2 subset) listen address, with the API role (port 0: any
    /// free port; the CLI's default is 127.0.0.1:9292).
    pub image_listen: SocketAddr,
    /// Network API listen address (tests: port 0; the CLI's default is
    /// 127.0.0.1:9696).
    pub network_listen: SocketAddr,
    /// Where image files live (None: `<data-dir>/images`).
    pub image_dir: Option<PathBuf>,
    /// Largest image upload accepted, in bytes.
    pub image_max_size: u64,
    /// Which URLs `web-download` image imports may fetch (Glance's
    /// `[import_filtering_opts]`, with Glance's defaults).
    pub image_import_filter: image::import::ImportFilter,
    /// The image stores (Glance's `enabled_backends`), the default first; never empty.
    pub image_stores: Vec<String>,
    /// Glance's `[image_format] require_image_format_match`: refuse uploads whose
    /// content does not match their `disk_format` or is unsafe (default true).
    pub image_require_format_match: bool,
    /// Glance's `image_conversion` import plugin (None: imports store data as sent).
    pub image_conversion: Option<image::convert::Conversion>,
    /// Glance's `enabled_import_methods`.
    pub image_import_methods: Vec<String>,
    /// Image locations (Glance's `show_multiple_locations`, `show_image_direct_url`,
    /// `do_secure_hash`, `http_retries`, the http store's id).
    pub image_locations: image::locations::LocationConfig,
    /// How the compute API authenticates callers (`Keystone` for `serve`).
    pub auth: AuthKind,
    /// Identity (Keystone v3) listen address (port 0: any free port).
    pub identity_listen: SocketAddr,
    /// Lifetime of identity tokens, in seconds.
    pub token_expiration_secs: i64,
    /// Token signing key file (None: `<data-dir>/token.key`, created at first start).
    /// Share one file between the API processes of a split deployment.
    pub token_key_file: Option<PathBuf>,
    /// Password of the bootstrap `admin` user (None: generated, written to openrc).
    pub admin_password: Option<String>,
    /// Image (Glance) endpoint listed in the service catalog (None: this process's image
    /// listener).
    pub image_endpoint: Option<String>,
    /// Network endpoint of the catalog (None: this process's network listener).
    pub network_endpoint: Option<String>,
    /// Keystone's `[security_compliance]` settings of the identity API (all off by
    /// default).
    pub security_compliance: identity::SecurityCompliance,
    /// Glance's per-store `weight` (absent: 0): an image's stores are listed, and its
    /// data read, highest weight first.
    pub image_store_weights: std::collections::BTreeMap<String, i64>,
    /// Glance's `image_cache_dir`: the image cache's directory, local to this process
    /// (None: no cache, `/v2/cache` answers 404).
    pub image_cache_dir: Option<PathBuf>,
    /// Glance's `image_cache_max_size`: the prefetcher prunes the cache down to it.
    pub image_cache_max_size: u64,
    /// Glance's `cache_prefetcher_interval`: how often queued images are cached (and
    /// the cache pruned).
    pub cache_prefetcher_interval: Duration,
    /// The metadata HTTP service's listen address, with the API role (None: not
    /// served). Nova's nova-api-metadata, behind Neutron's metadata proxy.
    pub metadata_listen: Option<SocketAddr>,
    /// Nova's `[neutron] metadata_proxy_shared_secret`: the key of the proxy's
    /// `X-Instance-ID-Signature`.
    pub metadata_secret: String,
    /// Nova's `force_config_drive`: every guest gets a config drive, asked for or not.
    /// Recorded here for the compute driver (the libvirt driver reads it when it builds
    /// a guest; the simulated driver has no disks).
    pub force_config_drive: bool,
}

/// The hypervisor driver of the compute agents (`--driver`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverKind {
    /// The simulated driver (the default).
    Sim,
    /// libvirt (a build with `--features libvirt`).
    Libvirt(LibvirtConfig),
}

/// Options of the libvirt driver (`--libvirt-uri`, `--libvirt-virt-type`,
/// `--instances-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// Connection URI.
    pub uri: String,
    /// Domain type: `qemu` (TCG) or `kvm`.
    pub virt_type: String,
    /// Instances' files (None: `<data-dir>/instances`).
    pub instances_dir: Option<PathBuf>,
    /// vCPUs, memory (MiB) and disk (GiB) given explicitly; the others are libvirt's
    /// node info (and the instances directory's file system).
    pub size: [Option<u64>; 3],
    /// How long a clean shutdown waits for the guest before destroying it (Nova's
    /// `shutdown_timeout`, 60 s; a guest without an ACPI handler always takes this).
    pub shutdown_timeout: Duration,
}

impl LibvirtConfig {
    /// `uri` with the defaults: TCG, `<data-dir>/instances`, sizes from the node,
    /// 60 s clean shutdowns.
    pub fn new(uri: impl Into<String>) -> Self {
        LibvirtConfig {
            uri: uri.into(),
            virt_type: "qemu".into(),
            instances_dir: None,
            size: [None; 3],
            shutdown_timeout: Duration::from_secs(60),
        }
    }
}

/// The message of `--driver libvirt` in a build without the `libvirt` feature.
pub const NO_LIBVIRT: &str = "--driver libvirt: this stratus was built without libvirt support; \
rebuild it with `cargo build --release --features libvirt` (needs the libvirt-dev and pkg-config packages)";

/// The driver the options ask for; the host size is libvirt's node info when asked.
fn make_driver(opts: &mut StackOptions) -> anyhow::Result<Arc<dyn VirtDriver>> {
    match &opts.driver {
        DriverKind::Sim => Ok(Arc::new(SimDriver::new(opts.sim.clone()))),
        #[cfg(not(feature = "libvirt"))]
        DriverKind::Libvirt(_) => anyhow::bail!(NO_LIBVIRT),
        #[cfg(feature = "libvirt")]
        DriverKind::Libvirt(c) => {
            let dir = c
                .instances_dir
                .clone()
                .unwrap_or_else(|| opts.data_dir.join("instances"));
            let mut lo = compute::libvirt::LibvirtOptions::new(c.uri.clone(), dir);
            lo.virt_type = c.virt_type.clone();
            lo.shutdown_timeout = c.shutdown_timeout;
            let d = compute::libvirt::LibvirtDriver::connect(lo)
                .with_context(|| format!("cannot use libvirt at {}", c.uri))?;
            let n = d.node_resources()?;
            opts.host_size = Resources {
                vcpus: c.size[0].unwrap_or(u64::from(n.vcpus)),
                ram_mb: c.size[1].unwrap_or(n.ram_mb),
                disk_gb: c.size[2].unwrap_or(n.disk_gb),
            };
            Ok(Arc::new(d))
        }
    }
}

/// How the compute API authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// Keystone tokens from the identity listener (the default).
    Keystone,
    /// Development mode: `X-Auth-Token: <user>:<project>`.
    NoAuth,
}

/// The services one process runs. `serve` runs all of them; `stratus api`,
/// `scheduler`, `compute` and `projector` run one each (on JetStream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The HTTP API (and the default flavors bootstrap).
    pub api: bool,
    /// Scheduler, placement and reconciler reactors.
    pub scheduler: bool,
    /// Compute agents for the simulated hosts.
    pub compute: bool,
    /// Persist the projections (the stored views `replay rebuild` compares with).
    pub persist: bool,
}

impl Roles {
    /// Nothing (combine with struct update syntax to pick one role).
    pub fn none() -> Self {
        Roles {
            api: false,
            scheduler: false,
            compute: false,
            persist: false,
        }
    }

    /// Everything, in one process.
    pub fn all() -> Self {
        Roles {
            api: true,
            scheduler: true,
            compute: true,
            persist: true,
        }
    }
}

impl StackOptions {
    /// Defaults with a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StackOptions {
            data_dir: data_dir.into(),
            listen: "127.0.0.1:8774".parse().expect("valid"),
            hosts: 4,
            host_size: Resources {
                vcpus: 64,
                ram_mb: 256 * 1024,
                disk_gb: 4096,
            },
            sim: SimOptions::default(),
            driver: DriverKind::Sim,
            sync_power_state_interval: Duration::from_secs(5),
            config: Config::default(),
            reconcile_every: Duration::from_secs(1),
            audit_period: Duration::from_secs(3600),
            webhook_backoff: notifier::webhook::Backoff::default(),
            webhook_roots: Vec::new(),
            reactor_reconcile_every: engine::runtime::DEFAULT_REACTOR_RECONCILE,
            quota: engine::quota::QuotaConfig::default(),
            nats: None,
            nats_replicas: 1,
            roles: Roles::all(),
            cell: CellName::cell1(),
            host_names: None,
            cell_hosts: Vec::new(),
            tls: None,
            report_interval: Duration::from_secs(10),
            service_down_time: Duration::from_secs(60),
            scheduling: domain::scheduling::Config::default(),
            cell_wait: Duration::from_secs(30),
            probe_every: Duration::from_secs(1),
            down_after: Duration::from_secs(3),
            image_listen: "127.0.0.1:0".parse().expect("valid"),
            network_listen: "127.0.0.1:0".parse().expect("valid"),
            image_dir: None,
            image_max_size: image::DEFAULT_MAX_SIZE,
            image_import_filter: image::import::ImportFilter::default(),
            image_stores: vec![image::import::STORE_ID.to_string()],
            image_require_format_match: true,
            image_conversion: None,
            image_import_methods: image::import::DEFAULT_IMPORT_METHODS
                .iter()
                .map(|m| m.to_string())
                .collect(),
            image_locations: Default::default(),
            auth: AuthKind::Keystone,
            identity_listen: "127.0.0.1:5000".parse().expect("valid"),
            token_expiration_secs: 3600,
            token_key_file: None,
            admin_password: None,
            image_endpoint: None,
            network_endpoint: None,
            security_compliance: identity::SecurityCompliance::default(),
            image_store_weights: Default::default(),
            image_cache_dir: None,
            image_cache_max_size: image::cache::DEFAULT_MAX_SIZE,
            cache_prefetcher_interval: image::cache::DEFAULT_PREFETCHER_INTERVAL,
            metadata_listen: None,
            metadata_secret: String::new(),
            force_config_drive: false,
        }
    }
}

/// A running all-in-one.
pub struct Stack {
    /// The engine (log, world, checkpoints).
    pub engine: Arc<Engine>,
    /// The hypervisor driver of this process's compute agents.
    pub driver: Arc<dyn VirtDriver>,
    /// Where the API listens.
    pub addr: SocketAddr,
    /// Where the image API listens (the API role only).
    pub image_addr: Option<SocketAddr>,
    /// Where the identity API listens (API role only).
    pub identity_addr: Option<SocketAddr>,
    /// Where the network API listens (API role only).
    pub network_addr: Option<SocketAddr>,
    /// Where the metadata service listens (with `metadata_listen`).
    pub metadata_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    proj_shutdown: watch::Sender<bool>,
    /// Projector tasks, also those of streams discovered later (the runtime's hook
    /// adds them).
    proj_tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    runtime: Running,
    api_task: JoinHandle<()>,
    identity_task: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    log: Backend,
    /// Held (locked) until the stack has stopped.
    data_dir: Option<DataDir>,
    /// The notifier (the process that persists the projections runs it).
    pub notifier: Option<Arc<notifier::runner::Notifier>>,
    /// Where notifications are read (`/v1/notifications`).
    pub notifications: Option<Arc<dyn notifier::store::Feed>>,
}

/// The log backend, kept to close it on stop.
enum Backend {
    Embedded(Arc<EmbeddedLog>),
    JetStream(Arc<JetStreamLog>),
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").field("addr", &self.addr).finish()
    }
}

/// The default flavors (Nova's m1.*), created once as events.
pub fn default_flavors() -> Vec<FlavorSpec> {
    let f = |id: &str, name: &str, vcpus, ram_mb, disk_gb| FlavorSpec {
        id: FlavorId::new(id).expect("valid"),
        name: name.into(),
        vcpus,
        ram_mb,
        disk_gb,
        ephemeral_gb: 0,
        swap_mb: 0,
        rxtx_factor: 1.0,
        is_public: true,
        description: None,
    };
    vec![
        f("1", "m1.tiny", 1, 512, 1),
        f("2", "m1.small", 1, 2048, 20),
        f("3", "m1.medium", 2, 4096, 40),
        f("4", "m1.large", 4, 8192, 80),
        f("5", "m1.xlarge", 8, 16384, 160),
    ]
}

/// The streams of the all-in-one.
pub fn streams() -> Vec<StreamName> {
    ["api", "cell0", "cell1"]
        .into_iter()
        .map(|s| StreamName::new(s).expect("valid"))
        .collect()
}

/// Paths inside a data directory.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

/// The image directory of a data directory (unless `--image-dir` says otherwise).
pub fn images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}

/// Path of the projection store.
pub fn projections_path(data_dir: &Path) -> PathBuf {
    data_dir.join("projections.redb")
}

impl Stack {
    /// Starts everything and returns once the API listens.
    ///
    /// The listeners are bound and the data directory locked before anything else, so
    /// a busy port or a directory another process holds fails at once with nothing
    /// written; a directory this call created is removed again if the start fails.
    pub async fn start(mut opts: StackOptions) -> anyhow::Result<Stack> {
        // The driver first: a libvirt that cannot be used fails before anything is
        // bound or written.
        let driver = if opts.roles.compute {
            make_driver(&mut opts)?
        } else {
            Arc::new(SimDriver::new(opts.sim.clone()))
        };
        let listeners = Listeners::bind(&opts).await?;
        let dir = DataDir::acquire(&opts.data_dir)?;
        dir.check_backend(opts.nats.is_some())?;
        match Self::start_in(opts, listeners, driver).await {
            Ok(mut stack) => {
                stack.data_dir = Some(dir);
                Ok(stack)
            }
            Err(e) => {
                dir.discard();
                Err(e)
            }
        }
    }

    async fn start_in(
        opts: StackOptions,
        listeners: Listeners,
        driver: Arc<dyn VirtDriver>,
    ) -> anyhow::Result<Stack> {
        let (log, dynlog): (Backend, Arc<dyn EventLog>) = match &opts.nats {
            None => {
                let l = EmbeddedLog::open(&log_dir(&opts.data_dir))
                    .context("cannot open the event log")?;
                (Backend::Embedded(l.clone()), l)
            }
            Some(url) => {
                let js = JetStreamOptions {
                    replicas: opts.nats_replicas,
                    ..JetStreamOptions::default()
                };
                let l = JetStreamLog::connect(url, js)
                    .await
                    .with_context(|| format!("cannot use JetStream at {url}"))?;
                (Backend::JetStream(l.clone()), l)
            }
        };
        // The default streams; any other cell's stream is created by `stratus cell
        // create` and discovered below.
        let mut initial = streams();
        for s in &initial {
            dynlog.ensure_stream(s).await?;
        }
        for s in dynlog.streams().await? {
            if !initial.contains(&s) {
                initial.push(s);
            }
        }
        let checkpoints: Arc<dyn CheckpointStore> = Arc::new(
            EmbeddedCheckpoints::open(&opts.data_dir.join("checkpoints.redb"))
                .context("cannot open checkpoints")?,
        );
        // Only the process that persists the views opens the store; the others fold
        // the log into memory at start.
        let store = if opts.roles.persist {
            let store = ProjectionStore::open(&projections_path(&opts.data_dir))
                .context("cannot open the projection store")?;
            if store.was_reset() {
                tracing::warn!(
                    "stored projections had another schema: discarded, rebuilding them from the log"
                );
            }
            Some(Arc::new(store))
        } else {
            None
        };
        let views = match &store {
            Some(s) => s.load().context("cannot load projections")?,
            None => Default::default(),
        };
        let world = Arc::new(World::new(views));
        let (shutdown, shutdown_rx) = watch::channel(false);
        // The projector stops last, after it has applied what the others appended.
        let (proj_shutdown, proj_rx) = watch::channel(false);
        let mut proj_tasks = Vec::new();
        let mut tasks = Vec::new();

        // Projections catch up before anyone reads.
        let projector = Projector::new(dynlog.clone(), world.clone(), store);
        for s in &initial {
            proj_tasks.push(projector.follow(s.clone(), proj_rx.clone()));
        }
        for s in &initial {
            let last = dynlog.last_stream_seq(s).await?;
            if !world.wait_for(s, last, Duration::from_secs(120)).await {
                anyhow::bail!("projections did not catch up with stream {s}");
            }
        }
        proj_tasks.push(projector.spawn_flusher(Duration::from_secs(1), proj_rx.clone()));

        let mut engine = Engine::new(
            dynlog.clone(),
            world.clone(),
            checkpoints.clone(),
            opts.config,
            read_timeout(opts.nats.is_some()),
        );
        engine.quota = opts.quota.clone();
        engine.audit_period_secs = opts.audit_period.as_secs().max(1) as i64;
        let engine = Arc::new(match &log {
            // One process runs every agent of the embedded store and its beats live in
            // memory: hosts it does not run (left in the log by an earlier start with
            // more hosts or other cells) are down from the start, not after a grace
            // period of one down time.
            Backend::Embedded(_) => engine.with_local_heartbeats(
                Arc::new(eventlog::MemoryHeartbeats::default()),
                opts.service_down_time,
            ),
            Backend::JetStream(l) => engine.with_heartbeats(l.clone(), opts.service_down_time),
        });
        let mut runtime = Runtime::new(
            engine.clone(),
            RuntimeOptions {
                reactor_reconcile: Some(opts.reactor_reconcile_every),
                ..RuntimeOptions::default()
            },
        );
        if opts.roles.scheduler {
            // Liveness of compute hosts: read before the first decision, then refreshed.
            if let Err(e) = engine.refresh_liveness().await {
                tracing::warn!(error = %e, "cannot read heartbeats");
            }
            // A tenth of the down time: a host that stopped beating is seen down at most
            // 10% late, without reading heartbeats more often than 5 times a second.
            let every = (opts.service_down_time / 10)
                .clamp(Duration::from_millis(200), Duration::from_secs(5));
            runtime.periodic(Arc::new(engine::liveness::Refresh), Period::delayed(every));
        }

        // Hosts and default flavors: events, written once.
        let names: Vec<HostName> = match &opts.host_names {
            Some(n) => n.clone(),
            None => (1..=opts.hosts)
                .map(|n| HostName::new(format!("host{n}")).expect("valid"))
                .collect(),
        };
        let mut placed: Vec<(HostName, CellName)> =
            names.into_iter().map(|n| (n, opts.cell.clone())).collect();
        for (cell, n) in &opts.cell_hosts {
            for i in 1..=*n {
                let name = HostName::new(format!("{cell}-host{i}"))
                    .with_context(|| format!("host names of cell {cell}"))?;
                placed.push((name, cell.clone()));
            }
        }
        let specs: Vec<HostSpec> = placed
            .into_iter()
            .map(|(name, cell)| HostSpec {
                name,
                cell,
                total: opts.host_size,
                ratios: Ratios::default(),
                availability_zone: "nova".into(),
            })
            .collect();
        if opts.roles.api {
            ensure_default_cells(&engine).await?;
        }
        if opts.roles.compute {
            join_cell(&engine, &specs, opts.cell_wait).await?;
            ComputeAgent::register(&engine, &specs).await?;
            let beats = compute::Heartbeats::new(
                specs
                    .iter()
                    .map(|s| (s.cell.clone(), s.name.clone()))
                    .collect(),
            );
            beats.beat_now(&engine).await;
            runtime.periodic(Arc::new(beats), Period::delayed(opts.report_interval));
            // Real guests change state by themselves (a guest powering off); the
            // simulated driver's never do.
            if matches!(opts.driver, DriverKind::Libvirt(_)) {
                let sync = Arc::new(compute::PowerSync::new(
                    specs.iter().map(|s| s.name.clone()).collect(),
                    driver.clone(),
                ));
                // libvirt's lifecycle events run it at once; the period is the safety net.
                if let Some(t) = sync
                    .clone()
                    .follow_events(engine.clone(), shutdown_rx.clone())
                {
                    tasks.push(t);
                }
                runtime.periodic(sync, Period::delayed(opts.sync_power_state_interval));
            }
            if opts.roles.scheduler {
                // This process's hosts have beaten: its scheduler knows them up at once.
                if let Err(e) = engine.refresh_liveness().await {
                    tracing::warn!(error = %e, "cannot read heartbeats");
                }
            }
        }
        let image_store = if opts.roles.api {
            ensure_default_flavors(&engine).await?;
            let dir = opts
                .image_dir
                .clone()
                .unwrap_or_else(|| images_dir(&opts.data_dir));
            let store = Arc::new(
                image::ImageStore::open(&dir)
                    .with_context(|| format!("cannot open the image directory {}", dir.display()))?
                    .with_require_format_match(opts.image_require_format_match),
            );
            image::bootstrap::ensure_default_images(&engine, &store).await?;
            // Uploads a crashed process left `saving` go back to `queued`: all of them on
            // the embedded store (one process, not listening yet), on JetStream only those
            // older than the transfer timeout (another API process may be uploading).
            let embedded = matches!(log, Backend::Embedded(_));
            let stale_after = if embedded {
                Duration::ZERO
            } else {
                STALE_UPLOAD
            };
            let n = image::recovery::abort_stale_uploads(&engine, &store, stale_after).await?;
            if n > 0 {
                tracing::warn!(images = n, "abandoned uploads sent back to queued");
            }
            runtime.periodic(
                Arc::new(UploadRecovery {
                    store: store.clone(),
                }),
                Period::delayed(UPLOAD_RECOVERY_EVERY),
            );
            // Glance's image cache: local to this process, its queue prefetched (and the
            // cache pruned) by a periodic task of this process's runtime.
            let cache = match &opts.image_cache_dir {
                None => None,
                Some(dir) => {
                    let cache = Arc::new(
                        image::cache::ImageCache::open(dir, opts.image_cache_max_size)
                            .with_context(|| {
                                format!("cannot open the image cache directory {}", dir.display())
                            })?,
                    );
                    runtime.periodic(
                        Arc::new(CachePrefetcher(image::cache::Prefetcher {
                            cache: cache.clone(),
                            store: store.clone(),
                            stores: image::Stores {
                                ids: Arc::new(opts.image_stores.clone()),
                                weights: Arc::new(opts.image_store_weights.clone()),
                            },
                        })),
                        Period::delayed(opts.cache_prefetcher_interval),
                    );
                    Some(cache)
                }
            };
            Some((store, cache))
        } else {
            None
        };
        runtime.periodic(
            Arc::new(CellProbe::new(opts.probe_every, opts.down_after)),
            Period::immediate(opts.probe_every),
        );

        // Reactors, on every stream (new cells are projected, then reacted to, as they
        // appear).
        if opts.roles.scheduler {
            runtime.reactor(Arc::new(
                scheduler::Scheduler::default().with_config(opts.scheduling),
            ));
            runtime.reactor(Arc::new(scheduler::Placement::default()));
            runtime.reactor(Arc::new(scheduler::GroupMembers::default()));
            runtime.reactor(Arc::new(quota::QuotaKeeper::default()));
            runtime.periodic(
                Arc::new(network::quotas::Reconciler),
                Period::immediate(opts.reconcile_every),
            );
            runtime.periodic(
                Arc::new(scheduler::Reconciler),
                Period::immediate(opts.reconcile_every),
            );
            // Usage audit (issue 11): looks for a period to close a few times a period.
            let audit_every =
                (opts.audit_period / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            runtime.periodic(
                Arc::new(scheduler::UsageAuditor),
                Period::immediate(audit_every),
            );
        }
        if opts.roles.compute {
            // One agent per cell, reacting to that cell's stream only.
            let cells: std::collections::BTreeSet<&CellName> =
                specs.iter().map(|s| &s.cell).collect();
            for cell in cells {
                let agent = ComputeAgent::new(
                    specs
                        .iter()
                        .filter(|s| &s.cell == cell)
                        .map(|s| s.name.clone()),
                    driver.clone(),
                )
                .with_image_dir(
                    opts.image_dir
                        .clone()
                        .unwrap_or_else(|| images_dir(&opts.data_dir)),
                )
                .with_force_config_drive(opts.force_config_drive);
                runtime.reactor_on(Arc::new(agent), engine::cells::cell_stream(cell));
            }
        }
        // Versioned notifications (issue 11): written by the process that persists the
        // projections (one per deployment), readable by every API process.
        let (notifier, notifications, deliveries) =
            start_notifications(&opts, &log, &dynlog, &checkpoints).await?;
        // Webhook delivery (issue 11): beside the notifier, one per deployment.
        if let (Some(_), Some(feed), Some(store)) = (&notifier, &notifications, &deliveries) {
            let world = engine.world().clone();
            let source: notifier::webhook::Source = Arc::new(move || {
                world
                    .read()
                    .model::<projections::subscriptions::Subscriptions>()
                    .live()
                    .cloned()
                    .collect()
            });
            let d = notifier::webhook::Deliverer::new(
                feed.clone(),
                store.clone(),
                source,
                opts.webhook_backoff,
                &opts.webhook_roots,
            )?;
            tasks.push(tokio::spawn(d.run(shutdown_rx.clone())));
        }
        if let Some(n) = &notifier {
            let (hook, rx) = (n.clone(), shutdown_rx.clone());
            runtime.on_new_stream(Box::new(move |s| {
                if notifier::runner::is_source(s) {
                    tokio::spawn(hook.clone().run(s.clone(), rx.clone()));
                }
            }));
            for s in initial.iter().filter(|s| notifier::runner::is_source(s)) {
                tasks.push(tokio::spawn(n.clone().run(s.clone(), shutdown_rx.clone())));
            }
        }
        let proj_tasks = Arc::new(std::sync::Mutex::new(proj_tasks));
        {
            let (projector, prx, proj_tasks) =
                (projector.clone(), proj_rx.clone(), proj_tasks.clone());
            runtime.on_new_stream(Box::new(move |s| {
                let h = projector.follow(s.clone(), prx.clone());
                proj_tasks.lock_or_recover().push(h);
            }));
        }
        let runtime = runtime.start(initial);

        // Identity (bootstrap, then its own listener) and the API.
        let Listeners {
            api: api_listener,
            image: image_listener,
            identity: identity_listener,
            network: network_listener,
        } = listeners;
        let network_url = match (&opts.network_endpoint, &network_listener) {
            (Some(e), _) => e.clone(),
            (None, Some(l)) => url_of(l.local_addr()?, opts.tls.is_some()),
            (None, None) => url_of(opts.network_listen, opts.tls.is_some()),
        };
        let image_url = match (&opts.image_endpoint, &image_listener) {
            (Some(e), _) => e.clone(),
            (None, Some(l)) => url_of(l.local_addr()?, opts.tls.is_some()),
            (None, None) => url_of(opts.image_listen, opts.tls.is_some()),
        };
        let (identity_addr, identity_task, tokens) = match (&api_listener, identity_listener) {
            (Some(l), Some(identity)) => {
                let (addr, task, tokens) = start_identity(
                    &opts,
                    &engine,
                    identity,
                    l.local_addr()?,
                    image_url.clone(),
                    network_url.clone(),
                    shutdown_rx.clone(),
                )
                .await?;
                (Some(addr), Some(task), Some(tokens))
            }
            _ => (None, None, None),
        };
        let (addr, api_task, auth) = if let Some(listener) = api_listener {
            let addr = listener.local_addr()?;
            let auth = match (opts.auth, tokens) {
                (AuthKind::Keystone, Some(t)) => api::AuthMode::Keystone(t),
                _ => api::AuthMode::NoAuth,
            };
            let app = api::router(api::ApiState {
                engine: engine.clone(),
                auth: auth.clone(),
            })
            .layer(axum::Extension(api::notifications::Notifications(
                notifications.clone(),
            )))
            // The serial console of this process's driver (the all-in-one): guests'
            // real output; the simulated driver has none.
            .layer(axum::Extension(api::ConsoleLogs({
                let d = driver.clone();
                Arc::new(move |id| d.console_output(id))
            })))
            .layer(axum::Extension(api::subscriptions::Deliveries(
                deliveries.clone(),
            )))
            .layer(axum::Extension(api::status::NotifierHandle(
                notifier.clone(),
            )));
            let task = tokio::spawn(crate::httpd::serve(
                listener,
                app,
                opts.tls.clone(),
                crate::httpd::REQUEST_TIMEOUT,
                shutdown_rx.clone(),
            ));
            (addr, task, auth)
        } else {
            (opts.listen, tokio::spawn(async {}), api::AuthMode::NoAuth)
        };
        let image_addr = match (image_store, image_listener) {
            (Some((store, cache)), Some(listener)) => {
                let image_addr = listener.local_addr()?;
                let app = image::router(image::ImageState {
                    engine: engine.clone(),
                    store,
                    max_size: opts.image_max_size,
                    auth: auth.clone(),
                    import: Arc::new(opts.image_import_filter.clone()),
                    stores: Arc::new(opts.image_stores.clone()),
                    conversion: opts.image_conversion.clone(),
                    import_methods: Arc::new(opts.image_import_methods.clone()),
                    catalog: Arc::new(
                        ["public", "internal", "admin"]
                            .into_iter()
                            .map(|interface| image::import::CatalogEndpoint {
                                region: REGION.into(),
                                interface: interface.into(),
                                url: image_url.clone(),
                            })
                            .collect(),
                    ),
                    shutdown: shutdown_rx.clone(),
                    weights: Arc::new(opts.image_store_weights.clone()),
                    cache,
                    locations: Arc::new(opts.image_locations.clone()),
                });
                // Uploads of large images may take long: an hour, not a minute.
                tasks.push(tokio::spawn(crate::httpd::serve(
                    listener,
                    app,
                    opts.tls.clone(),
                    crate::httpd::UPLOAD_REQUEST_TIMEOUT,
                    shutdown_rx.clone(),
                )));
                tracing::info!(addr = %image_addr, "image API listening");
                Some(image_addr)
            }
            _ => None,
        };
        let network_addr = match network_listener {
            Some(listener) => {
                let network_addr = listener.local_addr()?;
                // The default networks belong to the admin project (noauth: `admin`).
                let owner = engine
                    .world()
                    .read()
                    .identity()
                    .project_by_name(domain::identity::DEFAULT_DOMAIN_ID, "admin")
                    .map(|p| p.id.to_string())
                    .unwrap_or_else(|| "admin".to_string());
                network::bootstrap::ensure_default_networks(&engine, &owner)
                    .await
                    .context("cannot create the default networks")?;
                let app = network::router(network::NetworkState {
                    engine: engine.clone(),
                    auth: auth.clone(),
                });
                tasks.push(tokio::spawn(crate::httpd::serve(
                    listener,
                    app,
                    opts.tls.clone(),
                    crate::httpd::REQUEST_TIMEOUT,
                    shutdown_rx.clone(),
                )));
                tracing::info!(addr = %network_addr, "network API listening");
                Some(network_addr)
            }
            None => None,
        };
        let metadata_addr = match (opts.roles.api, opts.metadata_listen) {
            (true, Some(at)) => {
                let listener = tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen on {at} (metadata service)"))?;
                let metadata_addr = listener.local_addr()?;
                if opts.metadata_secret.is_empty() {
                    // Nova's warning: anyone can sign with the empty key.
                    tracing::warn!(
                        "--metadata-secret is not configured, the metadata information \
                         returned by the proxy cannot be trusted"
                    );
                }
                let app = metadata::http::router(metadata::http::MetadataState {
                    world: engine.world().clone(),
                    secret: Arc::new(opts.metadata_secret.clone()),
                    options: Arc::new(metadata::Options::default()),
                });
                // Plain HTTP, as nova-api-metadata behind the proxy on the host.
                tasks.push(tokio::spawn(crate::httpd::serve(
                    listener,
                    app,
                    None,
                    crate::httpd::REQUEST_TIMEOUT,
                    shutdown_rx.clone(),
                )));
                tracing::info!(addr = %metadata_addr, "metadata service listening");
                Some(metadata_addr)
            }
            _ => None,
        };
        log_up(&opts, addr, identity_addr, image_addr, &specs);
        Ok(Stack {
            engine,
            driver,
            addr,
            image_addr,
            identity_addr,
            network_addr,
            metadata_addr,
            shutdown,
            proj_shutdown,
            proj_tasks,
            runtime,
            api_task,
            identity_task,
            tasks,
            log,
            data_dir: None,
            notifier,
            notifications,
        })
    }

    /// Stops everything gracefully: API, every task of the runtime (reactors save their
    /// checkpoints; also those of cells discovered after start), projector (views
    /// flushed and synced), then the log.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.api_task.await;
        if let Some(t) = self.identity_task {
            let _ = t.await;
        }
        self.runtime.stop().await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        // Nothing of this process writes any more: let the projections take in every
        // commit it made, then flush and stop them.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.engine.catch_up()).await;
        let _ = self.proj_shutdown.send(true);
        let proj_tasks = std::mem::take(&mut *self.proj_tasks.lock_or_recover());
        for t in proj_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        match &self.log {
            Backend::Embedded(l) => l.close(),
            Backend::JetStream(l) => l.close(),
        }
        drop(self.data_dir);
    }
}

/// The listeners of the API role, bound before anything is created.
struct Listeners {
    api: Option<tokio::net::TcpListener>,
    image: Option<tokio::net::TcpListener>,
    identity: Option<tokio::net::TcpListener>,
    network: Option<tokio::net::TcpListener>,
}

impl Listeners {
    async fn bind(opts: &StackOptions) -> anyhow::Result<Listeners> {
        if !opts.roles.api {
            return Ok(Listeners {
                api: None,
                image: None,
                identity: None,
                network: None,
            });
        }
        let bind = |addr: SocketAddr, what: &'static str, flag: &'static str| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!(" (another process listens there: stop it, or pick another address with {flag})")
                } else {
                    String::new()
                };
                anyhow::anyhow!("cannot listen on {addr} ({what}): {e}{hint}")
            })
        };
        Ok(Listeners {
            api: Some(bind(opts.listen, "compute API", "--listen").await?),
            image: Some(bind(opts.image_listen, "image API", "--image-listen").await?),
            identity: Some(bind(opts.identity_listen, "identity API", "--identity-listen").await?),
            network: Some(bind(opts.network_listen, "network API", "--network-listen").await?),
        })
    }
}

/// How long a request waits for its own commit to reach the read models before it
/// answers 503. On JetStream a commit accepted right after a leader election can take
/// that election again to reach the projections (their consumer is re-created once the
/// new leader answers; elections take 2-15 s on small machines): the request is
/// answered late rather than refused after its event was accepted.
fn read_timeout(jetstream: bool) -> Duration {
    if jetstream {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(10)
    }
}

/// One line per process saying what it runs, with only what that role uses: a
/// scheduler has no listen address, a compute process no API, and its hosts are the
/// ones it runs (not `--hosts` of `serve`).
fn log_up(
    opts: &StackOptions,
    addr: SocketAddr,
    identity: Option<SocketAddr>,
    image: Option<SocketAddr>,
    hosts: &[HostSpec],
) {
    let r = opts.roles;
    let roles: Vec<&str> = [
        (r.api, "api"),
        (r.scheduler, "scheduler"),
        (r.compute, "compute"),
        (r.persist, "projector"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let roles = roles.join(",");
    let data_dir = opts.data_dir.display();
    let log = match &opts.nats {
        Some(url) => format!("JetStream at {url}"),
        None => "embedded".to_string(),
    };
    if r.api {
        tracing::info!(
            %roles, %addr,
            identity = %identity.map(|a| a.to_string()).unwrap_or_default(),
            image = %image.map(|a| a.to_string()).unwrap_or_default(),
            %data_dir, %log,
            "stratus is up"
        );
    } else {
        tracing::info!(%roles, %data_dir, %log, "stratus is up");
    }
    if r.compute {
        let names: Vec<String> = hosts
            .iter()
            .map(|h| format!("{}@{}", h.name, h.cell))
            .collect();
        tracing::info!(hosts = %names.join(","), "compute agents running");
    }
}

/// `http://ADDR` with an unspecified address (0.0.0.0, ::) replaced by loopback.
fn url_of(addr: SocketAddr, tls: bool) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// Loads (or creates) the token key, bootstraps identity (roles, admin project and
/// user, openrc) and serves the identity API on its own listener.
async fn start_identity(
    opts: &StackOptions,
    engine: &Arc<Engine>,
    listener: tokio::net::TcpListener,
    api_addr: SocketAddr,
    image_url: String,
    network_url: String,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>, Arc<identity::Tokens>)> {
    let key_path = opts
        .token_key_file
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("token.key"));
    let key = identity::TokenKey::load_or_create(&key_path)
        .with_context(|| format!("cannot use the token key {}", key_path.display()))?;
    let tokens = Arc::new(identity::Tokens::new(key, opts.token_expiration_secs));
    let addr = listener.local_addr()?;
    let report = identity::bootstrap::bootstrap(
        engine.log().as_ref(),
        &identity::bootstrap::Options {
            data_dir: opts.data_dir.clone(),
            admin_password: opts.admin_password.clone(),
            auth_url: format!("{}/v3", url_of(addr, opts.tls.is_some())),
            cacert: opts
                .tls
                .as_ref()
                .and_then(|t| t.client_ca())
                .map(Path::to_path_buf),
        },
    )
    .await
    .context("cannot bootstrap identity")?;
    if let Some(path) = &report.openrc {
        tracing::info!(openrc = %path.display(), "identity bootstrapped: admin credentials written");
    } else if opts.admin_password.is_some() {
        // Bootstrap never changes an existing admin: say so rather than let the
        // operator believe the new password is in force.
        tracing::warn!(
            "--admin-password / STRATUS_ADMIN_PASSWORD ignored: the admin user already exists \
             and keeps its password; change it with `stratus admin user set admin --password P` \
             (with this process stopped, or with --nats URL), then update openrc"
        );
    }
    if let Some(pos) = report.position {
        if !engine
            .world()
            .wait_for(&StreamName::api(), pos, Duration::from_secs(30))
            .await
        {
            anyhow::bail!("projections did not catch up with the identity bootstrap");
        }
    }
    let api_url = url_of(api_addr, opts.tls.is_some());
    let app = identity::router(identity::IdentityApi {
        log: engine.log().clone(),
        world: engine.world().clone(),
        tokens: tokens.clone(),
        catalog: Arc::new(identity::Catalog {
            identity: url_of(addr, opts.tls.is_some()),
            compute: format!("{api_url}/v2.1"),
            image: image_url,
            network: network_url,
            region: REGION.into(),
        }),
        compliance: Arc::new(opts.security_compliance.clone()),
    });
    let task = tokio::spawn(crate::httpd::serve(
        listener,
        app,
        opts.tls.clone(),
        crate::httpd::REQUEST_TIMEOUT,
        stop,
    ));
    Ok((addr, task, tokens))
}

/// The cells every deployment has: `cell0` (never-scheduled instances) and `cell1`.
pub fn default_cells() -> Vec<CellName> {
    vec![CellName::cell0(), CellName::cell1()]
}

/// Creates `cell0` and `cell1` once (any API process; idempotent).
async fn ensure_default_cells(engine: &Arc<Engine>) -> anyhow::Result<()> {
    for name in default_cells() {
        let meta = Meta::service(
            "bootstrap",
            &format!("req-{}", uuid::Uuid::new_v4()),
            "bootstrap",
            domain::dedupe::bootstrap_cell(&name),
        );
        let ctx = Ctx::service("bootstrap", now(), uuid::Uuid::new_v4());
        match engine::cells::create_cell(engine.log().as_ref(), &name, &ctx, &meta).await {
            // Created earlier, or by another API process.
            Ok(_) | Err(engine::EngineError::Domain(domain::DomainError::AlreadyExists { .. })) => {
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create cell {name}")),
        }
    }
    Ok(())
}

/// Maps this compute process's hosts to its cell, with the messages an operator needs.
async fn join_cell(engine: &Arc<Engine>, specs: &[HostSpec], wait: Duration) -> anyhow::Result<()> {
    use domain::DomainError;
    match ComputeAgent::join_cell(engine, specs, wait).await {
        Ok(()) => Ok(()),
        Err(engine::EngineError::Domain(DomainError::NotFound { kind: "Cell", id })) => {
            if wait.is_zero() {
                // `serve` on the embedded store: nothing else can create it meanwhile.
                anyhow::bail!(
                    "cell {id} does not exist: stop here and create it with `stratus cell create {id}` \
                     (same --data-dir), then start again"
                )
            }
            anyhow::bail!(
                "cell {id} does not exist (waited {} s for it): create it with `stratus cell create {id}`",
                wait.as_secs()
            )
        }
        Err(engine::EngineError::Domain(DomainError::Conflict(m))) => {
            anyhow::bail!("refusing to start compute: {m}")
        }
        Err(e) => Err(e).context("cannot map the hosts to their cell"),
    }
}

/// Probes every cell's stream each period (`last_stream_seq` with a short timeout)
/// and marks a cell down in `world.health` once its stream has been unreachable for
/// longer than `down_after`, up again at the first successful probe. A periodic task
/// of the runtime.
#[derive(Debug)]
pub struct CellProbe {
    every: Duration,
    down_after: Duration,
    /// When each cell's stream last answered.
    last_ok: std::sync::Mutex<std::collections::HashMap<CellName, tokio::time::Instant>>,
}

impl CellProbe {
    /// A probe run every `every` that declares a cell down after `down_after`.
    pub fn new(every: Duration, down_after: Duration) -> Self {
        CellProbe {
            every,
            down_after,
            last_ok: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl Periodic for CellProbe {
    fn name(&self) -> &str {
        "cell-probe"
    }

    async fn run(&self, engine: &Arc<Engine>) -> Result<(), TaskError> {
        let world = engine.world();
        let cells: Vec<CellName> = world.read().cells().keys().cloned().collect();
        let mut down = Vec::new();
        for cell in cells {
            let stream = engine::cells::cell_stream(&cell);
            let now = tokio::time::Instant::now();
            let ok = matches!(
                tokio::time::timeout(
                    self.every.max(Duration::from_millis(500)),
                    engine.log().last_stream_seq(&stream)
                )
                .await,
                Ok(Ok(_))
            );
            let since = *self
                .last_ok
                .lock_or_recover()
                .entry(cell.clone())
                .or_insert(now);
            if ok {
                self.last_ok
                    .lock_or_recover()
                    .insert(cell.clone(), tokio::time::Instant::now());
                if world.health.set_down(&cell, false) {
                    tracing::warn!(%cell, "cell is reachable again");
                }
            } else {
                down.push(cell.to_string());
                if now.duration_since(since) > self.down_after && world.health.set_down(&cell, true)
                {
                    tracing::error!(%cell, "cell stream unreachable: cell is down");
                }
            }
        }
        if down.is_empty() {
            Ok(())
        } else {
            Err(format!("unreachable cell streams: {}", down.join(", ")).into())
        }
    }
}

/// How long an image may stay `saving` before no upload can still be running for it:
/// the image transfer timeout plus a margin.
pub const STALE_UPLOAD: Duration =
    Duration::from_secs(crate::httpd::UPLOAD_REQUEST_TIMEOUT.as_secs() + 60);

/// How often images left `saving` are looked for.
const UPLOAD_RECOVERY_EVERY: Duration = Duration::from_secs(300);

/// The one region of the service catalog (Keystone's bootstrap default).
const REGION: &str = "RegionOne";

/// Sends images `saving` for longer than [`STALE_UPLOAD`] back to `queued` (their
/// upload died with its process). A periodic task of the runtime, every 5 minutes.
struct UploadRecovery {
    store: Arc<image::ImageStore>,
}

#[async_trait::async_trait]
impl Periodic for UploadRecovery {
    fn name(&self) -> &str {
        "upload-recovery"
    }

    async fn run(&self, engine: &Arc<Engine>) -> Result<(), TaskError> {
        image::recovery::abort_stale_uploads(engine, &self.store, STALE_UPLOAD).await?;
        Ok(())
    }
}

/// Glance's cache prefetcher (`cache_prefetcher_interval`): caches the queued images
/// (those `PUT /v2/cache/{id}` could not cache at once, e.g. across a restart) and
/// prunes the cache to `image_cache_max_size`.
struct CachePrefetcher(image::cache::Prefetcher);

#[async_trait::async_trait]
impl Periodic for CachePrefetcher {
    fn name(&self) -> &str {
        "image-cache-prefetcher"
    }

    async fn run(&self, engine: &Arc<Engine>) -> Result<(), TaskError> {
        self.0.run(engine).await?;
        Ok(())
    }
}

async fn ensure_default_flavors(engine: &Arc<Engine>) -> anyhow::Result<()> {
    for spec in default_flavors() {
        let subject = Engine::flavor_subject(&spec.id);
        if engine.log().last_subject_seq(&subject).await? > 0 {
            continue;
        }
        let meta = Meta::service(
            "bootstrap",
            &format!("req-{}", uuid::Uuid::new_v4()),
            "bootstrap",
            domain::dedupe::bootstrap_flavor(&spec.id),
        );
        let ctx = Ctx::service("bootstrap", now(), uuid::Uuid::new_v4());
        match engine
            .flavor(&spec.id.clone(), FlavorCommand::Create(spec), &ctx, &meta)
            .await
        {
            // Another API process bootstrapped it first.
            Ok(_) | Err(engine::EngineError::Domain(domain::DomainError::Conflict(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The notifier (if this process runs it), the feed (if it reads notifications) and
/// where webhook delivery states are kept (beside the feed).
type Notifications = (
    Option<Arc<notifier::runner::Notifier>>,
    Option<Arc<dyn notifier::store::Feed>>,
    Option<Arc<dyn notifier::webhook::DeliveryStore>>,
);

/// The notification sink and feed of this process: on the embedded store a redb file
/// in the data directory (the process runs the notifier); on JetStream the
/// `STRATUS_NOTIFICATIONS` stream (written by the process that persists the
/// projections, read by every API process).
async fn start_notifications(
    opts: &StackOptions,
    log: &Backend,
    dynlog: &Arc<dyn EventLog>,
    checkpoints: &Arc<dyn CheckpointStore>,
) -> anyhow::Result<Notifications> {
    type Stores = (
        Option<Arc<dyn notifier::store::Sink>>,
        Option<Arc<dyn notifier::store::Feed>>,
        Option<Arc<dyn notifier::webhook::DeliveryStore>>,
    );
    let (sink, feed, deliveries): Stores = match log {
        Backend::Embedded(_) => {
            if !opts.roles.persist {
                return Ok((None, None, None));
            }
            let s = Arc::new(
                notifier::store::EmbeddedNotifications::open(
                    &opts.data_dir.join("notifications.redb"),
                )
                .context("cannot open the notification store")?,
            );
            (Some(s.clone()), Some(s.clone()), Some(s))
        }
        Backend::JetStream(l) => {
            if !opts.roles.persist && !opts.roles.api {
                return Ok((None, None, None));
            }
            let s = Arc::new(
                notifier::jetstream::JetStreamNotifications::open(
                    l.client().clone(),
                    opts.nats_replicas,
                    checkpoints.clone(),
                    dynlog.clone(),
                )
                .await
                .context("cannot open the notification stream")?,
            );
            let sink: Option<Arc<dyn notifier::store::Sink>> = opts
                .roles
                .persist
                .then(|| s.clone() as Arc<dyn notifier::store::Sink>);
            let deliveries = Arc::new(
                notifier::webhook::JetStreamDeliveries::open(
                    l.client().clone(),
                    opts.nats_replicas,
                )
                .await
                .context("cannot open the webhook delivery stream")?,
            );
            (sink, Some(s), Some(deliveries))
        }
    };
    let notifier = match sink {
        Some(sink) => Some(
            notifier::runner::Notifier::new(dynlog.clone(), sink)
                .await
                .context("cannot read where the notifier stands")?,
        ),
        None => None,
    };
    Ok((notifier, feed, deliveries))
}
