//! `stratus`: the event-sourced compute control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use domain::host::Resources;
use stratus::bench::{self, BenchOptions};
use stratus::httpd::Tls;
use stratus::stack::{Roles, Stack, StackOptions};

/// mimalloc: the control plane allocates many small, short-lived objects (commits,
/// JSON bodies); glibc malloc cost ~25% of CPU in `stratus bench`, mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "stratus",
    version,
    about = "Event-sourced compute control plane (Nova-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the whole control plane in one process on the embedded store.
    Serve(ServeArgs),
    /// Rebuild projections from the log, or print an instance's history.
    Replay {
        #[command(subcommand)]
        cmd: ReplayCmd,
    },
    /// Drive the all-in-one over HTTP and report throughput, latency, memory, rebuild rate.
    Bench(BenchArgs),
    /// Run only the API (on JetStream; run any number of them).
    Api(PartArgs),
    /// Run only the scheduler, placement and reconciler reactors (on JetStream).
    Scheduler(PartArgs),
    /// Run only compute agents for simulated hosts (on JetStream).
    Compute(ComputeArgs),
    /// Run only the projector that persists the read models (on JetStream).
    Projector(PartArgs),
    /// Create and list cells (each cell is a stream of its own).
    Cell {
        #[command(subcommand)]
        cmd: CellCmd,
    },
}

#[derive(Subcommand, Debug)]
enum CellCmd {
    /// Create a cell and its stream (`cell.created` in the api stream).
    Create {
        /// Cell name: 1 to 64 of [a-z0-9_-].
        name: String,
        #[command(flatten)]
        log: LogArgs,
    },
    /// List cells: name, stream, hosts, instances, state (up/down).
    List {
        #[command(flatten)]
        log: LogArgs,
    },
}

/// Which log a one-shot command works on.
#[derive(clap::Args, Debug)]
struct LogArgs {
    /// Data directory of the embedded store (the server must be stopped).
    #[arg(long, default_value = "./stratus-data")]
    data_dir: PathBuf,
    /// Use NATS JetStream at this URL instead of the embedded store.
    #[arg(long)]
    nats: Option<String>,
    /// Replicas of the JetStream streams this command creates (1 or 3).
    #[arg(long, default_value_t = 1)]
    nats_replicas: usize,
}

impl LogArgs {
    fn target(&self) -> stratus::cells::Target {
        match &self.nats {
            Some(url) => stratus::cells::Target::Nats {
                url: url.clone(),
                replicas: self.nats_replicas,
            },
            None => stratus::cells::Target::Embedded(self.data_dir.clone()),
        }
    }
}

/// Options shared by the processes of a split deployment.
#[derive(clap::Args, Debug)]
struct PartArgs {
    /// NATS URL of the JetStream event log (required: the embedded store is one process).
    #[arg(long)]
    nats: String,
    /// Replicas of the JetStream streams when this process creates them (1 or 3).
    #[arg(long, default_value_t = 1)]
    nats_replicas: usize,
    /// Local directory for this process's checkpoints (and projections for
    /// `projector`); one per process. Default: ./stratus-data/<role>[-<host>].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// API listen address (`stratus api`).
    #[arg(long, default_value = "127.0.0.1:8774")]
    listen: SocketAddr,
    /// Image API (Glance v2 subset) listen address (`stratus api`).
    #[arg(long, env = "STRATUS_IMAGE_LISTEN", default_value = "127.0.0.1:9292")]
    image_listen: SocketAddr,
    /// Directory of image files (default: <data-dir>/images). Image files are local to
    /// the API process: with several API processes, point them all at shared storage.
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Largest image upload accepted, in bytes (default 1 GiB).
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    image_max_size: u64,
    /// Seconds an operation may go unanswered before the reconciler retries it.
    #[arg(long, default_value_t = 60)]
    task_timeout: i64,
    /// PEM certificate chain: serve every HTTP listener over TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds between heartbeats of compute agents (Nova's report_interval).
    #[arg(long, default_value_t = 10)]
    report_interval: u64,
    /// Seconds without a heartbeat after which a host is down and never scheduled to
    /// (Nova's service_down_time).
    #[arg(long, default_value_t = 60)]
    service_down_time: u64,
}

#[derive(clap::Args, Debug)]
struct ComputeArgs {
    #[command(flatten)]
    common: PartArgs,
    /// Host name (with --hosts N > 1: NAME-1 .. NAME-N).
    #[arg(long)]
    host: String,
    /// Cell the hosts belong to.
    #[arg(long, default_value = "cell1")]
    cell: String,
    /// Number of simulated hosts this process runs.
    #[arg(long, default_value_t = 1)]
    hosts: usize,
    /// vCPUs per simulated host.
    #[arg(long, default_value_t = 64)]
    host_vcpus: u64,
    /// RAM (MiB) per simulated host.
    #[arg(long, default_value_t = 262144)]
    host_ram_mb: u64,
    /// Disk (GiB) per simulated host.
    #[arg(long, default_value_t = 4096)]
    host_disk_gb: u64,
    /// Simulated driver delay per operation, in milliseconds.
    #[arg(long, default_value_t = 0)]
    sim_delay_ms: u64,
    /// Seconds to wait for the cell to be created (`stratus cell create`) before failing.
    #[arg(long, default_value_t = 30)]
    cell_wait: u64,
}

/// The TLS configuration of `--tls-cert` / `--tls-key`, if given.
fn tls(cert: &Option<PathBuf>, key: &Option<PathBuf>) -> anyhow::Result<Option<Tls>> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some(Tls::from_pem_files(c, k)?)),
        _ => Ok(None),
    }
}

fn part_options(a: &PartArgs, roles: Roles, name: &str) -> anyhow::Result<StackOptions> {
    let dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./stratus-data").join(name));
    let mut o = StackOptions::new(dir);
    o.listen = a.listen;
    o.image_listen = a.image_listen;
    o.image_dir = a.image_dir.clone();
    o.image_max_size = a.image_max_size;
    o.nats = Some(a.nats.clone());
    o.nats_replicas = a.nats_replicas;
    o.config.task_timeout_secs = a.task_timeout;
    o.report_interval = Duration::from_secs(a.report_interval.max(1));
    o.service_down_time = Duration::from_secs(a.service_down_time.max(1));
    o.tls = tls(&a.tls_cert, &a.tls_key)?;
    o.roles = roles;
    Ok(o)
}

/// `, images on http://ADDR/v2` when this process serves the image API.
fn images_note(stack: &Stack, scheme: &str) -> String {
    stack
        .image_addr
        .map(|a| format!(", images on {scheme}://{a}/v2"))
        .unwrap_or_default()
}

async fn run_until_signal(o: StackOptions, what: &str) -> anyhow::Result<()> {
    init_tracing();
    let data_dir = o.data_dir.clone();
    let api = o.roles.api;
    let scheme = if o.tls.is_some() { "https" } else { "http" };
    let stack = Stack::start(o).await?;
    if api {
        println!(
            "stratus {what} listening on {scheme}://{}/v2.1 (data in {}){}",
            stack.addr,
            data_dir.display(),
            images_note(&stack, scheme)
        );
    } else {
        println!("stratus {what} running (data in {})", data_dir.display());
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    stack.stop().await;
    Ok(())
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Data directory.
    #[arg(long, default_value = "./stratus-data")]
    data_dir: PathBuf,
    /// API listen address.
    #[arg(long, default_value = "127.0.0.1:8774")]
    listen: SocketAddr,
    /// Image API (Glance v2 subset) listen address.
    #[arg(long, env = "STRATUS_IMAGE_LISTEN", default_value = "127.0.0.1:9292")]
    image_listen: SocketAddr,
    /// Directory of image files (default: <data-dir>/images). Image files are local to
    /// the API process: with several API processes, point them all at shared storage.
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Largest image upload accepted, in bytes (default 1 GiB).
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    image_max_size: u64,
    /// Number of simulated compute hosts.
    #[arg(long, default_value_t = 4)]
    hosts: usize,
    /// vCPUs per simulated host.
    #[arg(long, default_value_t = 64)]
    host_vcpus: u64,
    /// RAM (MiB) per simulated host.
    #[arg(long, default_value_t = 262144)]
    host_ram_mb: u64,
    /// Disk (GiB) per simulated host.
    #[arg(long, default_value_t = 4096)]
    host_disk_gb: u64,
    /// Authentication mode (only `noauth` in this release).
    #[arg(long, default_value = "noauth")]
    auth: String,
    /// Simulated driver delay per operation, in milliseconds.
    #[arg(long, default_value_t = 0)]
    sim_delay_ms: u64,
    /// Simulated driver failure probability (0..1).
    #[arg(long, default_value_t = 0.0)]
    sim_fail_rate: f64,
    /// Seconds after shelve before offload (0 = at once, -1 = never).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    shelved_offload_time: i64,
    /// Seconds an operation may go unanswered before the reconciler retries it.
    #[arg(long, default_value_t = 60)]
    task_timeout: i64,
    /// Use NATS JetStream at this URL as the event log (e.g. nats://127.0.0.1:4222,
    /// or a comma-separated list of cluster nodes) instead of the embedded store.
    #[arg(long)]
    nats: Option<String>,
    /// Replicas of the JetStream streams when Stratus creates them (1 or 3).
    #[arg(long, default_value_t = 1)]
    nats_replicas: usize,
    /// PEM certificate chain: serve every HTTP listener over TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds between heartbeats of compute agents (Nova's report_interval).
    #[arg(long, default_value_t = 10)]
    report_interval: u64,
    /// Seconds without a heartbeat after which a host is down and never scheduled to
    /// (Nova's service_down_time).
    #[arg(long, default_value_t = 60)]
    service_down_time: u64,
}

#[derive(Subcommand, Debug)]
enum ReplayCmd {
    /// Fold the whole log into fresh projections and compare with the stored ones.
    Rebuild {
        /// Data directory holding the stored projections (stop the process that writes
        /// them first: `stratus serve` or `stratus projector`).
        #[arg(long, default_value = "./stratus-data")]
        data_dir: PathBuf,
        /// Read the log from NATS JetStream at this URL instead of `<data-dir>/log`.
        #[arg(long)]
        nats: Option<String>,
    },
    /// Print an instance's events with its state after each.
    History {
        /// Data directory.
        #[arg(long, default_value = "./stratus-data")]
        data_dir: PathBuf,
        /// Read the log from NATS JetStream at this URL instead of `<data-dir>/log`.
        #[arg(long)]
        nats: Option<String>,
        /// Instance id.
        instance: String,
    },
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Full create->ACTIVE->pause->unpause->delete cycles.
    #[arg(long, default_value_t = 20000)]
    cycles: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Simulated hosts.
    #[arg(long, default_value_t = 4)]
    hosts: usize,
    /// Keep the log in this directory (default: a temporary one, removed).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run on NATS JetStream at this URL instead of the embedded store.
    #[arg(long)]
    nats: Option<String>,
    /// With --nats: concurrent appenders (one subject each) of the log-layer measurement.
    #[arg(long, default_value_t = 256)]
    log_concurrency: usize,
    /// With --nats: commits appended by the log-layer measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    log_appends: u64,
}

/// Connects to JetStream for read-only tools (streams are verified, never created
/// with another configuration).
async fn open_nats(url: &str) -> anyhow::Result<std::sync::Arc<eventlog::JetStreamLog>> {
    eventlog::JetStreamLog::connect(url, eventlog::JetStreamOptions::default())
        .await
        .with_context(|| format!("cannot use JetStream at {url}"))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn fmt_time(us: i64) -> String {
    api::util::iso_micros_z(domain::Timestamp(us))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve(a) => {
            init_tracing();
            if a.auth != "noauth" {
                anyhow::bail!(
                    "--auth {}: only `noauth` is supported in this release",
                    a.auth
                );
            }
            let mut o = StackOptions::new(&a.data_dir);
            o.listen = a.listen;
            o.image_listen = a.image_listen;
            o.image_dir = a.image_dir.clone();
            o.image_max_size = a.image_max_size;
            o.hosts = a.hosts;
            o.host_size = Resources {
                vcpus: a.host_vcpus,
                ram_mb: a.host_ram_mb,
                disk_gb: a.host_disk_gb,
            };
            o.sim.delay = Duration::from_millis(a.sim_delay_ms);
            o.sim.fail_rate = a.sim_fail_rate;
            o.config.shelved_offload_time = a.shelved_offload_time;
            o.config.task_timeout_secs = a.task_timeout;
            o.nats = a.nats.clone();
            o.nats_replicas = a.nats_replicas;
            o.report_interval = Duration::from_secs(a.report_interval.max(1));
            o.service_down_time = Duration::from_secs(a.service_down_time.max(1));
            o.tls = tls(&a.tls_cert, &a.tls_key)?;
            let scheme = if o.tls.is_some() { "https" } else { "http" };
            let stack = Stack::start(o).await?;
            println!(
                "stratus listening on {scheme}://{}/v2.1 (data in {}){}",
                stack.addr,
                a.data_dir.display(),
                images_note(&stack, scheme)
            );
            shutdown_signal().await;
            tracing::info!("shutting down");
            stack.stop().await;
            Ok(())
        }
        Cmd::Api(a) => {
            let roles = Roles {
                api: true,
                ..Roles::none()
            };
            run_until_signal(part_options(&a, roles, "api")?, "api").await
        }
        Cmd::Scheduler(a) => {
            let roles = Roles {
                scheduler: true,
                ..Roles::none()
            };
            run_until_signal(part_options(&a, roles, "scheduler")?, "scheduler").await
        }
        Cmd::Projector(a) => {
            let roles = Roles {
                persist: true,
                ..Roles::none()
            };
            run_until_signal(part_options(&a, roles, "projector")?, "projector").await
        }
        Cmd::Compute(c) => {
            let roles = Roles {
                compute: true,
                ..Roles::none()
            };
            let mut o = part_options(&c.common, roles, &format!("compute-{}", c.host))?;
            o.cell = domain::CellName::new(c.cell.clone())
                .map_err(|e| anyhow::anyhow!("--cell: {e}"))?;
            let names = if c.hosts <= 1 {
                vec![c.host.clone()]
            } else {
                (1..=c.hosts).map(|i| format!("{}-{i}", c.host)).collect()
            };
            o.host_names = Some(
                names
                    .into_iter()
                    .map(|n| domain::HostName::new(n).map_err(|e| anyhow::anyhow!("--host: {e}")))
                    .collect::<anyhow::Result<_>>()?,
            );
            o.host_size = Resources {
                vcpus: c.host_vcpus,
                ram_mb: c.host_ram_mb,
                disk_gb: c.host_disk_gb,
            };
            o.sim.delay = Duration::from_millis(c.sim_delay_ms);
            o.cell_wait = Duration::from_secs(c.cell_wait);
            run_until_signal(o, "compute").await
        }
        Cmd::Cell { cmd } => {
            let (log_args, create) = match &cmd {
                CellCmd::Create { name, log } => (log, Some(name.clone())),
                CellCmd::List { log } => (log, None),
            };
            let open = stratus::cells::OpenLog::open(&log_args.target()).await?;
            let result = match create {
                Some(name) => stratus::cells::create(open.log.as_ref(), &name)
                    .await
                    .map(|()| {
                        println!(
                            "cell {name} created (stream {})",
                            open.stream_label(
                                &domain::CellName::new(name.clone()).expect("validated")
                            )
                        )
                    }),
                None => stratus::cells::list(&open)
                    .await
                    .map(|cells| print!("{}", stratus::cells::table(&cells))),
            };
            open.close();
            result
        }
        Cmd::Replay { cmd } => {
            match cmd {
                ReplayCmd::Rebuild { data_dir, nats } => {
                    let r = match &nats {
                        None => replay::rebuild_data_dir(&data_dir).await.context(
                            "rebuild failed (is `stratus serve` still running on this data dir?)",
                        )?,
                        Some(url) => {
                            let log = open_nats(url).await?;
                            let store = projections::ProjectionStore::open(
                            &data_dir.join("projections.redb"),
                        )
                        .context("cannot open the stored projections (is the projector still running?)")?;
                            let stored = store.load()?;
                            let r = replay::rebuild(log.clone(), &stored).await;
                            log.close();
                            r?
                        }
                    };
                    println!(
                        "rebuilt {} events ({} commits) in {:.3} s: {:.0} events/s",
                        r.events,
                        r.commits,
                        r.seconds,
                        r.rate()
                    );
                    for (s, p) in &r.positions {
                        println!("  stream {s}: position {p}");
                    }
                    if r.lag > 0 {
                        println!("  note: stored views lag the log by {} commits (they catch up on next start)", r.lag);
                    }
                    if r.matches {
                        println!("MATCH: rebuilt projections equal the stored ones");
                        Ok(())
                    } else {
                        println!("MISMATCH:");
                        for d in &r.differences {
                            println!("  {d}");
                        }
                        std::process::exit(1);
                    }
                }
                ReplayCmd::History {
                    data_dir,
                    nats,
                    instance,
                } => {
                    let id = domain::InstanceId::parse(&instance).context("not a server id")?;
                    let steps = match &nats {
                        None => {
                            let log = eventlog::EmbeddedLog::open(&data_dir.join("log"))?;
                            let steps = replay::history(log.as_ref(), id).await;
                            log.close();
                            steps?
                        }
                        Some(url) => {
                            let log = open_nats(url).await?;
                            let steps = replay::history(log.as_ref(), id).await;
                            log.close();
                            steps?
                        }
                    };
                    if steps.is_empty() {
                        anyhow::bail!("no events for instance {id}");
                    }
                    for s in steps {
                        let st = s
                            .state
                            .as_ref()
                            .map(|i| {
                                format!(
                                    "status={} vm_state={} task_state={} power_state={} host={}",
                                    i.status(),
                                    i.vm_state.as_str(),
                                    i.task_state.map(|t| t.as_str()).unwrap_or("None"),
                                    i.power_state.code(),
                                    i.host.as_ref().map(|h| h.as_str()).unwrap_or("None"),
                                )
                            })
                            .unwrap_or_else(|| "(none)".into());
                        println!(
                            "{} {}#{} {:<32} {} by {} -> {}",
                            fmt_time(s.occurred_at),
                            s.subject,
                            s.subject_seq,
                            s.event_type,
                            s.request_id,
                            s.actor,
                            st
                        );
                    }
                    Ok(())
                }
            }
        }
        Cmd::Bench(b) => {
            if std::env::var("RUST_LOG").is_ok() {
                init_tracing();
            }
            let r = bench::run(BenchOptions {
                cycles: b.cycles,
                concurrency: b.concurrency,
                data_dir: b.data_dir,
                hosts: b.hosts,
                nats: b.nats.clone(),
                log_concurrency: b.log_concurrency,
                log_appends: b.log_appends,
            })
            .await?;
            let backend = match &b.nats {
                Some(u) => format!("JetStream at {u}"),
                None => "embedded store".to_string(),
            };
            println!(
                "stratus bench ({backend}, {} clients, {} hosts)",
                b.concurrency, b.hosts
            );
            println!(
                "  cycles:        {} in {:.2} s = {:.0} cycles/s",
                r.cycles,
                r.seconds,
                r.cycles as f64 / r.seconds
            );
            println!(
                "  API requests:  {} ({:.0}/s), latency p50 {:.2} ms, p99 {:.2} ms",
                r.requests,
                r.requests as f64 / r.seconds,
                r.p50_ms,
                r.p99_ms
            );
            println!(
                "  events:        {} = {:.0} events/s",
                r.events,
                r.events as f64 / r.seconds
            );
            if let Some(raw) = r.raw_publish_rate {
                let ours = r.events as f64 / r.seconds;
                println!(
                    "  raw JetStream publish, pipelined (1 task, 4096 acks in flight, 200 B): {raw:.0} msg/s; lifecycle events/s = {:.1}% of it",
                    100.0 * ours / raw
                );
                if let Some((c, occ)) = r.raw_occ_rate {
                    println!(
                        "  raw JetStream publish with OCC + Msg-Id headers, {c} tasks x 1 round trip ({} B): {occ:.0} msg/s",
                        bench::OCC_BASELINE_BYTES
                    );
                }
                if let Some(l) = &r.log_layer {
                    println!(
                        "  log layer: JetStreamLog::append (Exactly(n), dedupe id), {} appenders on distinct subjects: {} commits in {:.2} s = {:.0} appends/s = {:.0} events/s",
                        l.concurrency,
                        l.appends,
                        l.seconds,
                        l.appends_per_s(),
                        l.events_per_s()
                    );
                    println!(
                        "    append latency p50 {:.2} ms, p99 {:.2} ms; {:.0} B stored per commit; client CPU {:.2} cores",
                        l.p50_ms, l.p99_ms, l.bytes_per_commit, l.client_cores
                    );
                    let occ = r
                        .raw_occ_rate
                        .map(|(_, occ)| {
                            format!(
                                ", {:.1}% of raw with OCC headers",
                                100.0 * l.events_per_s() / occ
                            )
                        })
                        .unwrap_or_default();
                    println!(
                        "    log-layer events/s = {:.1}% of the raw pipelined rate{occ}; lifecycle events/s = {:.1}% of the log layer's",
                        100.0 * l.events_per_s() / raw,
                        100.0 * ours / l.events_per_s()
                    );
                }
            }
            println!("  peak memory:   {:.1} MiB RSS", r.peak_rss_mib);
            println!(
                "  replay rebuild: {} events at {:.0} events/s, {}",
                r.rebuild_events,
                r.rebuild_rate,
                if r.rebuild_matches {
                    "MATCH"
                } else {
                    "MISMATCH"
                }
            );
            Ok(())
        }
    }
}
