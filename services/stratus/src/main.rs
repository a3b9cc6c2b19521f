//! `stratus`: the event-sourced compute control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use domain::host::Resources;
use stratus::bench::{self, BenchOptions};
use stratus::datadir::{DataDir, Store};
use stratus::httpd::Tls;
use stratus::stack::{DriverKind, LibvirtConfig, Roles, Stack, StackOptions};

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
    Serve(Box<ServeArgs>),
    /// Rebuild projections from the log, or print an instance's history.
    Replay {
        #[command(subcommand)]
        cmd: ReplayCmd,
    },
    /// Drive the all-in-one over HTTP and report throughput, latency, memory, rebuild rate.
    Bench(BenchArgs),
    /// Run only the API and the identity API (on JetStream; run any number of them).
    Api(Box<ApiArgs>),
    /// Run only the scheduler, placement and reconciler reactors (on JetStream).
    Scheduler(SchedulerArgs),
    /// Run only compute agents for simulated hosts (on JetStream).
    Compute(ComputeArgs),
    /// Run only the projector that persists the read models (on JetStream).
    Projector(ProjectorArgs),
    /// Create and list cells (each cell is a stream of its own).
    Cell {
        #[command(subcommand)]
        cmd: CellCmd,
    },
    /// Manage identity: projects, users, roles (offline on the embedded store, or on
    /// JetStream with --nats).
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
    /// Print the status of a running process's reactors and background tasks (runs,
    /// errors, lag behind the stream head), from the API's `GET /v1/status` (admin).
    Status(StatusArgs),
    /// The billing subscriber: count Nova's versioned notifications into a per-project
    /// usage ledger (redb), each exactly once; `billing report` prints a window's totals.
    Billing(BillingArgs),
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct BillingArgs {
    #[command(subcommand)]
    cmd: Option<BillingCmd>,
    /// The ledger file (redb; created if missing).
    #[arg(long, required = true)]
    ledger: Option<PathBuf>,
    /// Read from JetStream: a durable consumer on STRATUS_NOTIFICATIONS (instead of
    /// --url).
    #[arg(long)]
    nats: Option<String>,
    /// Durable consumer name (with --nats).
    #[arg(long, default_value = "billing")]
    consumer: String,
    /// Read over HTTP from a running stratus (`GET /v1/notifications`, as an admin).
    #[arg(long, env = "STRATUS_URL")]
    url: Option<String>,
    /// An admin's token (without one: password credentials from the OS_* variables).
    #[arg(long, env = "OS_TOKEN")]
    token: Option<String>,
    /// The rate card (TOML), stored in the ledger as the reports' default.
    #[arg(long)]
    rates: Option<PathBuf>,
    /// Most notifications per batch (one ledger transaction; at most 1000 over HTTP).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Exit once caught up, printing what was consumed and how fast.
    #[arg(long)]
    once: bool,
}

#[derive(Subcommand, Debug)]
enum BillingCmd {
    /// Per-project totals of a window as JSON (os-simple-tenant-usage's fields, priced).
    Report {
        /// The ledger file.
        #[arg(long)]
        ledger: PathBuf,
        /// Window start (UTC: `YYYY-MM-DDTHH:MM:SS[.ffffff][Z]`).
        #[arg(long)]
        start: String,
        /// Window end (same forms).
        #[arg(long)]
        end: String,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Price with this rate card (default: the one stored in the ledger).
        #[arg(long)]
        rates: Option<PathBuf>,
    },
}

/// A window bound as os-simple-tenant-usage takes it (naive UTC), `Z` allowed.
fn billing_time(s: &str) -> anyhow::Result<domain::Timestamp> {
    api::usage::parse_time(s.strip_suffix('Z').unwrap_or(s))
        .with_context(|| format!("{s:?}: use YYYY-MM-DDTHH:MM:SS[.ffffff] (UTC)"))
}

async fn run_billing(a: BillingArgs) -> anyhow::Result<()> {
    if let Some(BillingCmd::Report {
        ledger,
        start,
        end,
        project,
        rates,
    }) = a.cmd
    {
        let (start, end) = (billing_time(&start)?, billing_time(&end)?);
        if end < start {
            anyhow::bail!("--end is before --start");
        }
        let doc =
            stratus::billing::report(&ledger, start, end, project.as_deref(), rates.as_deref())?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    init_tracing();
    let source = match (a.nats, a.url) {
        (Some(url), _) => stratus::billing::Source::Nats {
            url,
            consumer: a.consumer,
        },
        (None, url) => stratus::billing::Source::Http {
            url: url.unwrap_or_else(|| "http://127.0.0.1:8774".into()),
            token: a.token,
        },
    };
    let rates = a
        .rates
        .as_deref()
        .map(stratus::billing::read_rates)
        .transpose()?
        .map(|(text, _)| text);
    let o = stratus::billing::BillingOptions {
        ledger: a.ledger.context("--ledger is required")?,
        source,
        once: a.once,
        batch: a.batch,
        rates,
    };
    if o.once {
        stratus::billing::run(o).await?;
        return Ok(());
    }
    tokio::select! {
        r = stratus::billing::run(o) => { r?; }
        _ = shutdown_signal() => { tracing::info!("billing: shutting down"); }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// Base URL of the compute API.
    #[arg(long, env = "STRATUS_URL", default_value = "http://127.0.0.1:8774")]
    url: String,
    /// An admin's token (without one: password credentials from the OS_* variables
    /// of an openrc).
    #[arg(long, env = "OS_TOKEN")]
    token: Option<String>,
    /// Print the raw JSON document instead of one line per task.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum AdminCmd {
    /// Projects.
    Project {
        #[command(subcommand)]
        cmd: AdminProjectCmd,
    },
    /// Users.
    User {
        #[command(subcommand)]
        cmd: AdminUserCmd,
    },
    /// Roles and role assignments.
    Role {
        #[command(subcommand)]
        cmd: AdminRoleCmd,
    },
}

#[derive(Subcommand, Debug)]
enum AdminProjectCmd {
    /// Create a project (prints its id).
    Create {
        /// Project name (unique in domain Default).
        name: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        log: LogArgs,
    },
    /// List projects.
    List {
        #[command(flatten)]
        log: LogArgs,
    },
}

#[derive(Subcommand, Debug)]
enum AdminUserCmd {
    /// Create a user (prints its id), optionally with a role on a project.
    Create {
        /// User name (unique in domain Default).
        name: String,
        /// Password (stored as an argon2 hash).
        #[arg(long)]
        password: String,
        /// Project (name or id): the user's default project, and where --role is granted.
        #[arg(long)]
        project: Option<String>,
        /// Role (name or id) to grant on --project.
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Enable or disable a user, or change the password (both invalidate tokens).
    Set {
        /// User name or id.
        name: String,
        /// Disable the user.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Enable the user.
        #[arg(long)]
        enable: bool,
        /// New password.
        #[arg(long)]
        password: Option<String>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// List users with their roles.
    List {
        #[command(flatten)]
        log: LogArgs,
    },
}

#[derive(Subcommand, Debug)]
enum AdminRoleCmd {
    /// Grant ROLE on a project to a user.
    Add {
        /// User name or id.
        #[arg(long)]
        user: String,
        /// Project name or id.
        #[arg(long)]
        project: String,
        /// Role name or id.
        role: String,
        #[command(flatten)]
        log: LogArgs,
    },
    /// List roles.
    List {
        #[command(flatten)]
        log: LogArgs,
    },
}

/// Identity options of the processes with the API role (`serve`, `api`).
#[derive(clap::Args, Debug)]
struct IdentityArgs {
    /// Identity (Keystone v3) listen address.
    #[arg(
        long,
        env = "STRATUS_IDENTITY_LISTEN",
        default_value = "127.0.0.1:5000"
    )]
    identity_listen: SocketAddr,
    /// Lifetime of identity tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_expiration: i64,
    /// Token signing key (default: <data-dir>/token.key, created at first start with
    /// mode 0600). Give every API process of a split deployment the same file.
    #[arg(long)]
    token_key_file: Option<PathBuf>,
    /// Password of the `admin` user created at first start (default: generated and
    /// written to <data-dir>/openrc only).
    #[arg(long, env = "STRATUS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Image (Glance) endpoint listed in the service catalog (default: this process's
    /// image listener).
    #[arg(long)]
    image_endpoint: Option<String>,
    /// Network (Neutron) endpoint listed in the service catalog (default: this
    /// process's network listener).
    #[arg(long)]
    network_endpoint: Option<String>,
    /// Keystone's [security_compliance] lockout_failure_attempts: failed password
    /// authentications that lock a user (0: off).
    #[arg(long, default_value_t = 0)]
    lockout_failure_attempts: u32,
    /// Keystone's lockout_duration: seconds a lock lasts (0: until an admin sets
    /// `enabled: true`).
    #[arg(long, default_value_t = 1800)]
    lockout_duration: u64,
    /// Keystone's unique_last_password_count: a user may not set any of its last N
    /// passwords (the current one included) again (0: off).
    #[arg(long, default_value_t = 0)]
    unique_last_password_count: u32,
    /// Keystone's minimum_password_age: days a user must keep a password it set
    /// before changing it itself (0: off).
    #[arg(long, default_value_t = 0)]
    minimum_password_age: u32,
    /// Keystone's password_expires_days: days a new password is valid (0: forever).
    #[arg(long, default_value_t = 0)]
    password_expires_days: u32,
    /// Keystone's password_regex: new passwords must match it (Python `re.match`
    /// semantics; look-around is not supported).
    #[arg(long)]
    password_regex: Option<String>,
    /// Keystone's password_regex_description: the reason shown when a password does
    /// not match --password-regex.
    #[arg(long, requires = "password_regex")]
    password_regex_description: Option<String>,
    /// Keystone's change_password_upon_first_use: a password set at creation or by an
    /// admin expires at once, so the user must change it first.
    #[arg(long)]
    change_password_upon_first_use: bool,
}

impl IdentityArgs {
    fn apply(&self, o: &mut StackOptions) -> anyhow::Result<()> {
        if self.token_expiration <= 0 {
            anyhow::bail!("--token-expiration must be at least 1 second");
        }
        o.identity_listen = self.identity_listen;
        o.token_expiration_secs = self.token_expiration;
        o.token_key_file = self.token_key_file.clone();
        o.admin_password = self.admin_password.clone().filter(|p| !p.is_empty());
        o.image_endpoint = self
            .image_endpoint
            .as_ref()
            .map(|e| e.trim_end_matches('/').to_string());
        o.network_endpoint = self
            .network_endpoint
            .as_ref()
            .map(|e| e.trim_end_matches('/').to_string());
        o.security_compliance = identity::SecurityCompliance::new(
            domain::identity::Compliance {
                lockout_failure_attempts: self.lockout_failure_attempts,
                lockout_duration_secs: self.lockout_duration,
                unique_last_password_count: self.unique_last_password_count,
                minimum_password_age_days: self.minimum_password_age,
                password_expires_days: self.password_expires_days,
                change_password_upon_first_use: self.change_password_upon_first_use,
            },
            self.password_regex.as_deref(),
            self.password_regex_description.clone(),
        )?;
        Ok(())
    }
}

fn auth_kind(s: &str) -> anyhow::Result<stratus::stack::AuthKind> {
    match s {
        "keystone" => Ok(stratus::stack::AuthKind::Keystone),
        "noauth" => Ok(stratus::stack::AuthKind::NoAuth),
        other => anyhow::bail!("--auth {other}: use `keystone` (default) or `noauth`"),
    }
}

/// The HTTP side of the API role (`serve`, `api`): listeners, TLS, images, auth.
#[derive(clap::Args, Debug)]
struct HttpArgs {
    /// Compute API listen address.
    #[arg(long, env = "STRATUS_LISTEN", default_value = "127.0.0.1:8774")]
    listen: SocketAddr,
    /// Image API (Glance v2 subset) listen address.
    #[arg(long, env = "STRATUS_IMAGE_LISTEN", default_value = "127.0.0.1:9292")]
    image_listen: SocketAddr,
    /// Address of the network API (Neutron v2.0 subset).
    #[arg(long, env = "STRATUS_NETWORK_LISTEN", default_value = "127.0.0.1:9696")]
    network_listen: SocketAddr,
    /// Directory of image files (default: <data-dir>/images). Image files are local to
    /// the API process: with several API processes, point them all at shared storage.
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Largest image upload accepted, in bytes (default 1 GiB).
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    image_max_size: u64,
    /// Image stores (Glance's `enabled_backends`), comma-separated ids, the default
    /// first: the default store's files are in --image-dir, another's in
    /// <image-dir>/stores/<id>. With several, `copy-image` imports are offered.
    #[arg(long, default_value = "file")]
    image_stores: String,
    /// Glance's per-store `weight`: `id=weight,...` (e.g. `fast=100,cheap=50`; a store
    /// not named weighs 0). An image's stores are listed, and its data read, highest
    /// weight first; `GET /v2/info/stores/detail` shows the weights.
    #[arg(long, default_value = "")]
    image_store_weights: String,
    /// Glance's `image_cache_dir`: cache downloaded and queued image data in this
    /// directory, local to this process, and serve the cache API (`/v2/cache`, Images
    /// API v2.14). Unset (the default): no caching.
    #[arg(long)]
    image_cache_dir: Option<PathBuf>,
    /// Glance's `image_cache_max_size`: the cache is pruned (least recently used first)
    /// down to this many bytes (default 10 GiB).
    #[arg(long, default_value_t = 10 * 1024 * 1024 * 1024)]
    image_cache_max_size: u64,
    /// Glance's `cache_prefetcher_interval`, in seconds: how often queued images are
    /// cached and the cache pruned (queueing also caches at once).
    #[arg(long, default_value_t = 300)]
    cache_prefetcher_interval: u64,
    /// web-download imports: URL schemes allowed (Glance's
    /// `import_filtering_opts.allowed_schemes`; comma-separated, empty: any).
    #[arg(long, default_value = "http,https")]
    image_import_allowed_schemes: String,
    /// web-download imports: URL schemes refused (`disallowed_schemes`; ignored when
    /// allowed schemes are set).
    #[arg(long, default_value = "")]
    image_import_disallowed_schemes: String,
    /// web-download imports: hosts allowed (`allowed_hosts`; empty: any).
    #[arg(long, default_value = "")]
    image_import_allowed_hosts: String,
    /// web-download imports: hosts refused (`disallowed_hosts`; ignored when allowed
    /// hosts are set).
    #[arg(long, default_value = "")]
    image_import_disallowed_hosts: String,
    /// web-download imports: ports allowed when the URL names one (`allowed_ports`;
    /// empty: any).
    #[arg(long, default_value = "80,443")]
    image_import_allowed_ports: String,
    /// web-download imports: ports refused (`disallowed_ports`; ignored when allowed
    /// ports are set).
    #[arg(long, default_value = "")]
    image_import_disallowed_ports: String,
    /// Glance's `[image_format] require_image_format_match`: refuse uploads whose
    /// content does not match their disk_format, or is unsafe (415). `false` stores
    /// any data (compute still refuses to boot it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    require_image_format_match: bool,
    /// Glance's `[image_import_opts] image_import_plugins`: plugins run on imported
    /// data (comma-separated; `image_conversion`: check and convert it with qemu-img,
    /// which must be installed). Default none, as Glance.
    #[arg(long, default_value = "")]
    image_import_plugins: String,
    /// Glance's `enabled_import_methods`: the interoperable import methods offered
    /// (comma-separated; `glance-direct`, `web-download`, `copy-image` (with several
    /// stores), `glance-download` (from the Glance of a catalog region; its endpoint's
    /// port must pass the --image-import-allowed-* filter)).
    #[arg(long, default_value = "glance-direct,web-download,copy-image")]
    image_enabled_import_methods: String,
    /// Glance's `[image_conversion] output_format`: the disk format the
    /// `image_conversion` plugin converts imported data to (`raw`, `qcow2` or `vmdk`).
    #[arg(long, default_value = "raw")]
    image_conversion_output_format: String,
    /// Glance's `show_multiple_locations`: images show their `locations`, and JSON
    /// patches may add, replace and remove them (http(s) URLs: the read-only http
    /// store).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    show_multiple_locations: bool,
    /// Glance's `show_image_direct_url`: images show `direct_url`, their first
    /// location's URL.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    show_image_direct_url: bool,
    /// Glance's `do_secure_hash`: a location added by the 2.17 location API has its
    /// data hashed in the background (checksum, os_hash_value; checked against the
    /// request's validation data).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    do_secure_hash: bool,
    /// Glance's `http_retries`: retries of a failed download while hashing a location.
    #[arg(long, default_value_t = 3)]
    http_retries: u32,
    /// Id of the read-only http store of image locations, listed by /v2/info/stores
    /// and named in locations' `metadata.store` when there are several stores
    /// (Glance's `enabled_backends` entry `<id>:http`). Empty: no http store (no http
    /// locations; only the service role may use the location API).
    #[arg(long, default_value = "http")]
    image_http_store: String,
    /// Authentication of the compute API: `keystone` (tokens from the identity API)
    /// or `noauth` (development: `X-Auth-Token: <user>:<project>`).
    #[arg(long, default_value = "keystone")]
    auth: String,
    /// PEM certificate chain: serve every HTTP listener over TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle clients should trust to verify --tls-cert (written to openrc as
    /// OS_CACERT; a self-signed --tls-cert is written there without it).
    #[arg(long, requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Serve the metadata service (Nova's nova-api-metadata: /openstack/...,
    /// /latest/meta-data/...) on this address, for Neutron's metadata proxy. Off unless
    /// given.
    #[arg(long, env = "STRATUS_METADATA_LISTEN")]
    metadata_listen: Option<SocketAddr>,
    /// Nova's metadata_proxy_shared_secret: requests must carry X-Instance-ID-Signature,
    /// the hex HMAC-SHA256 of X-Instance-ID with this secret.
    #[arg(
        long,
        env = "STRATUS_METADATA_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    metadata_secret: String,
}

/// A comma-separated list (empty items dropped).
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl HttpArgs {
    fn import_filter(&self) -> anyhow::Result<image::import::ImportFilter> {
        let ports = |flag: &str, s: &str| -> anyhow::Result<Vec<u16>> {
            list(s)
                .iter()
                .map(|p| match p.parse::<u16>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => anyhow::bail!("--{flag} {s}: ports are 1..65535"),
                })
                .collect()
        };
        Ok(image::import::ImportFilter {
            allowed_schemes: list(&self.image_import_allowed_schemes),
            disallowed_schemes: list(&self.image_import_disallowed_schemes),
            allowed_hosts: list(&self.image_import_allowed_hosts),
            disallowed_hosts: list(&self.image_import_disallowed_hosts),
            allowed_ports: ports(
                "image-import-allowed-ports",
                &self.image_import_allowed_ports,
            )?,
            disallowed_ports: ports(
                "image-import-disallowed-ports",
                &self.image_import_disallowed_ports,
            )?,
        })
    }

    /// `--image-store-weights`: `id=weight` items naming configured stores, once each.
    fn store_weights(
        &self,
        stores: &[String],
    ) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
        let mut out = std::collections::BTreeMap::new();
        for item in list(&self.image_store_weights) {
            let Some((id, w)) = item.split_once('=') else {
                anyhow::bail!("--image-store-weights: {item:?} is not id=weight");
            };
            let id = id.trim();
            if !stores.iter().any(|s| s == id) {
                anyhow::bail!("--image-store-weights: {id:?} is not one of --image-stores");
            }
            let Ok(w) = w.trim().parse::<i64>() else {
                anyhow::bail!("--image-store-weights: the weight of {id:?} is not an integer");
            };
            if out.insert(id.to_string(), w).is_some() {
                anyhow::bail!("--image-store-weights: {id:?} is weighted twice");
            }
        }
        Ok(out)
    }

    fn apply(&self, o: &mut StackOptions) -> anyhow::Result<()> {
        o.auth = auth_kind(&self.auth)?;
        o.listen = self.listen;
        o.image_listen = self.image_listen;
        o.network_listen = self.network_listen;
        o.image_dir = self.image_dir.clone();
        o.image_max_size = self.image_max_size;
        o.image_import_filter = self.import_filter()?;
        o.image_stores = list(&self.image_stores);
        if o.image_stores.is_empty() {
            anyhow::bail!("--image-stores: at least one store");
        }
        if let Some(bad) = o.image_stores.iter().find(|s| {
            !s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }) {
            anyhow::bail!("--image-stores: {bad:?} is not a store id (letters, digits, - and _)");
        }
        o.image_require_format_match = self.require_image_format_match;
        let plugins = list(&self.image_import_plugins);
        if let Some(bad) = plugins
            .iter()
            .find(|p| !image::convert::PLUGINS.contains(&p.as_str()))
        {
            anyhow::bail!(
                "--image-import-plugins: unknown plugin {bad:?} (known: {})",
                image::convert::PLUGINS.join(", ")
            );
        }
        o.image_import_methods = list(&self.image_enabled_import_methods);
        if let Some(bad) = o
            .image_import_methods
            .iter()
            .find(|m| !domain::image::IMPORT_METHODS.contains(&m.as_str()))
        {
            anyhow::bail!(
                "--image-enabled-import-methods: unknown method {bad:?} (known: {})",
                domain::image::IMPORT_METHODS.join(", ")
            );
        }
        let output = self.image_conversion_output_format.as_str();
        if !image::convert::OUTPUT_FORMATS.contains(&output) {
            anyhow::bail!(
                "--image-conversion-output-format {output:?}: one of {}",
                image::convert::OUTPUT_FORMATS.join(", ")
            );
        }
        o.image_conversion =
            plugins
                .iter()
                .any(|p| p == "image_conversion")
                .then(|| image::convert::Conversion {
                    output_format: output.to_string(),
                });
        o.image_store_weights = self.store_weights(&o.image_stores)?;
        o.image_cache_dir = self.image_cache_dir.clone();
        o.image_cache_max_size = self.image_cache_max_size;
        if self.cache_prefetcher_interval == 0 {
            anyhow::bail!("--cache-prefetcher-interval: at least 1 second");
        }
        o.cache_prefetcher_interval = Duration::from_secs(self.cache_prefetcher_interval);
        if !self.image_http_store.is_empty()
            && self
                .image_stores
                .split(',')
                .any(|s| s.trim() == self.image_http_store)
        {
            anyhow::bail!(
                "--image-http-store {}: also in --image-stores (the http store is read-only)",
                self.image_http_store
            );
        }
        o.image_locations = image::locations::LocationConfig {
            show_multiple_locations: self.show_multiple_locations,
            show_image_direct_url: self.show_image_direct_url,
            do_secure_hash: self.do_secure_hash,
            http_retries: self.http_retries,
            http_store: self.image_http_store.clone(),
        };
        o.metadata_listen = self.metadata_listen;
        o.metadata_secret = self.metadata_secret.clone();
        o.tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some(Tls::from_pem_files(c, k, self.tls_ca.as_deref())?),
            _ => None,
        };
        Ok(())
    }
}

/// `stratus api`: the part options plus the HTTP side and identity.
#[derive(clap::Args, Debug)]
struct ApiArgs {
    #[command(flatten)]
    part: PartArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(flatten)]
    quota: QuotaArgs,
    #[command(flatten)]
    audit: AuditArgs,
    #[command(flatten)]
    reclaim: ReclaimArgs,
}

/// The hypervisor of `serve` and `compute`: simulated (the default) or libvirt.
#[derive(clap::Args, Debug)]
struct HostArgs {
    /// Hypervisor driver: `sim` (simulated) or `libvirt` (a build with `--features
    /// libvirt`).
    #[arg(long, default_value = "sim", value_parser = ["sim", "libvirt"])]
    driver: String,
    /// libvirt connection URI (`--driver libvirt`).
    #[arg(long, default_value = "qemu:///system")]
    libvirt_uri: String,
    /// libvirt domain type: `qemu` (TCG) or `kvm` (Nova's `[libvirt] virt_type`).
    #[arg(long, default_value = "qemu", value_parser = ["qemu", "kvm"])]
    libvirt_virt_type: String,
    /// Directory of the instances' files (disks, console logs) of the libvirt driver
    /// (default: <data-dir>/instances).
    #[arg(long)]
    instances_dir: Option<PathBuf>,
    /// Seconds a clean shutdown of a libvirt guest (ACPI) may take before the guest is
    /// destroyed (Nova's shutdown_timeout).
    #[arg(long, default_value_t = 60)]
    shutdown_timeout: u64,
    /// Seconds between two power-state syncs of the libvirt driver's guests (Nova's
    /// sync_power_state_interval): a guest that powered itself off is stopped.
    #[arg(long, default_value_t = 5)]
    sync_power_state_interval: u64,
    /// vCPUs per host (default: 64 simulated; libvirt's node info with --driver libvirt).
    #[arg(long)]
    host_vcpus: Option<u64>,
    /// RAM (MiB) per host (default: 262144 simulated; libvirt's node info).
    #[arg(long)]
    host_ram_mb: Option<u64>,
    /// Disk (GiB) per host (default: 4096 simulated; the instances directory's file
    /// system with libvirt).
    #[arg(long)]
    host_disk_gb: Option<u64>,
    /// Simulated driver delay per operation, in milliseconds.
    #[arg(long, default_value_t = 0)]
    sim_delay_ms: u64,
    /// Simulated driver failure probability (0..1).
    #[arg(long, default_value_t = 0.0)]
    sim_fail_rate: f64,
    /// Seconds between heartbeats of compute agents (Nova's report_interval).
    #[arg(long, default_value_t = 10)]
    report_interval: u64,
    /// Nova's force_config_drive: every guest gets a config drive (an ISO 9660
    /// `config-2` volume of its metadata), asked for with `config_drive: true` or not.
    #[arg(long)]
    force_config_drive: bool,
}

impl HostArgs {
    fn apply(&self, o: &mut StackOptions) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.sim_fail_rate) {
            anyhow::bail!(
                "--sim-fail-rate {}: a probability, 0 to 1",
                self.sim_fail_rate
            );
        }
        o.host_size = Resources {
            vcpus: self.host_vcpus.unwrap_or(64),
            ram_mb: self.host_ram_mb.unwrap_or(262144),
            disk_gb: self.host_disk_gb.unwrap_or(4096),
        };
        o.sync_power_state_interval = Duration::from_secs(self.sync_power_state_interval.max(1));
        if self.driver == "libvirt" {
            if !cfg!(feature = "libvirt") {
                anyhow::bail!(stratus::stack::NO_LIBVIRT);
            }
            o.driver = DriverKind::Libvirt(LibvirtConfig {
                virt_type: self.libvirt_virt_type.clone(),
                instances_dir: self.instances_dir.clone(),
                size: [self.host_vcpus, self.host_ram_mb, self.host_disk_gb],
                shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
                ..LibvirtConfig::new(self.libvirt_uri.clone())
            });
        }
        o.sim.delay = Duration::from_millis(self.sim_delay_ms);
        o.sim.fail_rate = self.sim_fail_rate;
        o.report_interval = Duration::from_secs(self.report_interval.max(1));
        o.force_config_drive = self.force_config_drive;
        Ok(())
    }
}

/// Quota defaults (API role) and the grace of unmatched reservations (scheduler role,
/// which runs the quota reactor): `serve`, `api`, `scheduler`. Every process of a
/// deployment should be given the same values, as Nova's `[quota]` options.
#[derive(clap::Args, Debug)]
struct QuotaArgs {
    /// A default limit under the `default` quota class, as RESOURCE=N (Nova's names:
    /// instances, cores, ram, key_pairs, server_groups, server_group_members,
    /// metadata_items, injected_files, injected_file_content_bytes,
    /// injected_file_path_bytes; -1 = unlimited). Repeatable; unnamed resources keep
    /// Nova's defaults.
    #[arg(long, value_parser = quota_default, value_name = "RESOURCE=N", allow_hyphen_values = true)]
    default_quota: Vec<(domain::quota::Resource, i64)>,
    /// Seconds a quota reservation whose server (or resize) never appeared is kept
    /// before it is given back; also how long a server group member whose server never
    /// appeared is kept before it is removed from its group.
    #[arg(long, default_value_t = 60)]
    quota_grace: i64,
}

fn quota_default(s: &str) -> Result<(domain::quota::Resource, i64), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s}: expected RESOURCE=N"))?;
    let r = domain::quota::Resource::from_key(k).ok_or_else(|| {
        let names: Vec<&str> = domain::quota::Resource::ALL
            .iter()
            .map(|r| r.key())
            .collect();
        format!("{k}: not a quota resource ({})", names.join(", "))
    })?;
    let n: i64 = v.parse().map_err(|_| format!("{v}: not an integer"))?;
    if n < -1 {
        return Err(format!("{n}: a limit is -1 (unlimited) or more"));
    }
    Ok((r, n))
}

impl QuotaArgs {
    fn apply(&self, o: &mut StackOptions) -> anyhow::Result<()> {
        if self.quota_grace < 1 {
            anyhow::bail!("--quota-grace must be at least 1 second");
        }
        o.quota.base.extend(self.default_quota.iter().copied());
        o.quota.grace = domain::quota::Grace(self.quota_grace);
        Ok(())
    }
}

/// What the scheduler role decides with (`serve`, `scheduler`).
#[derive(clap::Args, Debug)]
struct SchedulingArgs {
    /// Seconds an operation may go unanswered before the reconciler retries it.
    #[arg(long, default_value_t = 60)]
    task_timeout: i64,
    #[command(flatten)]
    shelve: ShelveArgs,
    #[command(flatten)]
    reclaim: ReclaimArgs,
    /// Seconds without a heartbeat after which a host is down and never scheduled to
    /// (Nova's service_down_time).
    #[arg(long, default_value_t = 60)]
    service_down_time: u64,
    /// The first host of a decision is chosen at random among the best N (Nova's
    /// host_subset_size; 1 = always the best).
    #[arg(long, default_value_t = 1)]
    scheduler_host_subset_size: usize,
    /// RAMWeigher multiplier (positive spreads on free RAM, negative packs).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    ram_weight_multiplier: f64,
    /// CPUWeigher multiplier (positive spreads on free vCPUs, negative packs).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    cpu_weight_multiplier: f64,
    /// DiskWeigher multiplier (positive spreads on free disk, negative packs).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    disk_weight_multiplier: f64,
    /// NumInstancesWeigher multiplier (positive prefers busy hosts, negative idle ones).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    num_instances_weight_multiplier: f64,
    /// ServerGroupSoftAffinityWeigher multiplier (>= 0).
    #[arg(long, default_value_t = 1.0)]
    soft_affinity_weight_multiplier: f64,
    /// ServerGroupSoftAntiAffinityWeigher multiplier (>= 0).
    #[arg(long, default_value_t = 1.0)]
    soft_anti_affinity_weight_multiplier: f64,
    #[command(flatten)]
    audit: AuditArgs,
}

/// The usage audit period: the scheduler role closes periods by it, the API role reports
/// them (os-instance_usage_audit_log), so both `scheduler` and `api` take it.
#[derive(clap::Args, Debug)]
struct AuditArgs {
    /// Seconds of a usage audit period (Nova's `instance_usage_audit_period`, hourly by
    /// default): each completed period is closed once per cell (`audit.period_closed`),
    /// what os-instance_usage_audit_log reports. Give every process the same value.
    #[arg(long, default_value_t = 3600)]
    audit_period: u64,
}

impl AuditArgs {
    fn apply(&self, o: &mut StackOptions) -> anyhow::Result<()> {
        if self.audit_period == 0 {
            anyhow::bail!("--audit-period must be at least 1 second");
        }
        o.audit_period = Duration::from_secs(self.audit_period);
        Ok(())
    }
}

impl SchedulingArgs {
    fn apply(&self, o: &mut StackOptions) -> anyhow::Result<()> {
        if self.task_timeout <= 0 {
            anyhow::bail!("--task-timeout must be at least 1 second");
        }
        self.shelve.apply(o)?;
        self.reclaim.apply(o);
        o.config.task_timeout_secs = self.task_timeout;
        o.service_down_time = Duration::from_secs(self.service_down_time.max(1));
        self.audit.apply(o)?;
        if self.scheduler_host_subset_size == 0 {
            anyhow::bail!("--scheduler-host-subset-size must be at least 1");
        }
        if self.soft_affinity_weight_multiplier < 0.0
            || self.soft_anti_affinity_weight_multiplier < 0.0
        {
            anyhow::bail!(
                "soft (anti-)affinity weight multipliers must be positive (Nova: min 0.0)"
            );
        }
        o.scheduling = domain::scheduling::Config {
            multipliers: domain::scheduling::Multipliers {
                ram: self.ram_weight_multiplier,
                cpu: self.cpu_weight_multiplier,
                disk: self.disk_weight_multiplier,
                num_instances: self.num_instances_weight_multiplier,
                soft_affinity: self.soft_affinity_weight_multiplier,
                soft_anti_affinity: self.soft_anti_affinity_weight_multiplier,
            },
            host_subset_size: self.scheduler_host_subset_size,
        };
        Ok(())
    }
}

/// Soft delete: the API role soft-deletes on DELETE and the scheduler role's reconciler
/// reclaims, so both `api` and `scheduler` (and `serve`) take it.
#[derive(clap::Args, Debug)]
struct ReclaimArgs {
    /// Seconds a deleted server is kept SOFT_DELETED, restorable with the `restore`
    /// action, before it is deleted for good (Nova's `reclaim_instance_interval`;
    /// 0 or less: DELETE deletes at once). Give every process the same value.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    reclaim_instance_interval: i64,
}

impl ReclaimArgs {
    fn apply(&self, o: &mut StackOptions) {
        o.config.reclaim_instance_interval = self.reclaim_instance_interval.max(0);
    }
}

/// When a shelved server is offloaded: decided by the compute agent that shelves it
/// (0: at once) and by the reconciler later (`serve`, `scheduler`, `compute`).
#[derive(clap::Args, Debug)]
struct ShelveArgs {
    /// Seconds after shelve before offload (0 = at once, -1 = never).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    shelved_offload_time: i64,
}

impl ShelveArgs {
    fn apply(&self, o: &mut StackOptions) -> anyhow::Result<()> {
        if self.shelved_offload_time < -1 {
            anyhow::bail!("--shelved-offload-time: seconds, 0 (at once) or -1 (never)");
        }
        o.config.shelved_offload_time = self.shelved_offload_time;
        Ok(())
    }
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

/// Options of every process of a split deployment: where the log is, where its own
/// state goes.
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
}

/// `stratus projector`: the part options plus webhook delivery, which runs beside the
/// notifier in the process that persists the projections.
#[derive(clap::Args, Debug)]
struct ProjectorArgs {
    #[command(flatten)]
    part: PartArgs,
    #[command(flatten)]
    webhooks: WebhookArgs,
}

/// How webhooks are delivered (`serve`, `projector`).
#[derive(clap::Args, Debug)]
struct WebhookArgs {
    /// PEM file of CA certificates trusted for `https` webhook receivers, beside the
    /// system's roots (a private CA of the receivers).
    #[arg(long, value_name = "FILE")]
    webhook_ca: Option<PathBuf>,
}

impl WebhookArgs {
    fn apply(&self, o: &mut StackOptions) -> anyhow::Result<()> {
        if let Some(f) = &self.webhook_ca {
            o.webhook_roots =
                std::fs::read(f).with_context(|| format!("--webhook-ca {}", f.display()))?;
        }
        Ok(())
    }
}

#[derive(clap::Args, Debug)]
struct SchedulerArgs {
    #[command(flatten)]
    part: PartArgs,
    #[command(flatten)]
    scheduling: SchedulingArgs,
    #[command(flatten)]
    quota: QuotaArgs,
}

#[derive(clap::Args, Debug)]
struct ComputeArgs {
    #[command(flatten)]
    part: PartArgs,
    /// Host name (with --hosts N > 1: NAME-1 .. NAME-N).
    #[arg(long)]
    host: String,
    /// Cell the hosts belong to.
    #[arg(long, default_value = "cell1")]
    cell: String,
    /// Number of simulated hosts this process runs.
    #[arg(long, default_value_t = 1)]
    hosts: usize,
    #[command(flatten)]
    sim: HostArgs,
    #[command(flatten)]
    shelve: ShelveArgs,
    /// Seconds to wait for the cell to be created (`stratus cell create`) before failing.
    #[arg(long, default_value_t = 30)]
    cell_wait: u64,
}

fn part_options(a: &PartArgs, roles: Roles, name: &str) -> StackOptions {
    let dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./stratus-data").join(name));
    let mut o = StackOptions::new(dir);
    o.nats = Some(a.nats.clone());
    o.nats_replicas = a.nats_replicas;
    o.roles = roles;
    o
}

/// `, images on http://ADDR/v2` when this process serves the image API.
fn images_note(stack: &Stack, scheme: &str) -> String {
    stack
        .image_addr
        .map(|a| format!(", images on {scheme}://{a}/v2"))
        .unwrap_or_default()
}

/// Starts the stack, prints the ready line (one line: scripts read only it), runs until
/// SIGTERM or Ctrl-C, stops gracefully.
async fn run_until_signal(o: StackOptions, what: &str) -> anyhow::Result<()> {
    init_tracing();
    let data_dir = o.data_dir.clone();
    let api = o.roles.api;
    let scheme = if o.tls.is_some() { "https" } else { "http" };
    let stack = Stack::start(o).await?;
    let stop = shutdown_signal();
    let name = if what == "serve" {
        "stratus".to_string()
    } else {
        format!("stratus {what}")
    };
    if api {
        println!(
            "{name} listening on {scheme}://{}/v2.1 (data in {}){}{}",
            stack.addr,
            data_dir.display(),
            images_note(&stack, scheme),
            identity_note(&stack, scheme)
        );
    } else {
        println!("{name} running (data in {})", data_dir.display());
    }
    stop.await;
    tracing::info!("shutting down");
    stack.stop().await;
    Ok(())
}

/// `CELL=N`: N more simulated hosts in CELL (`serve --cell-hosts`).
fn cell_hosts(s: &str) -> Result<(domain::CellName, usize), String> {
    let (cell, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: use CELL=N, e.g. cell2=2"))?;
    let cell = domain::CellName::new(cell.to_string()).map_err(|e| format!("{cell:?}: {e}"))?;
    let n = n
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| format!("{n:?}: a number of hosts, 1 to 1000"))?;
    Ok((cell, n))
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Data directory.
    #[arg(long, default_value = "./stratus-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Number of simulated compute hosts (host1..hostN, in cell1).
    #[arg(long, default_value_t = 4)]
    hosts: usize,
    /// More simulated hosts in another cell: CELL=N runs hosts CELL-host1..N there
    /// (create the cell first with `stratus cell create CELL`). Repeatable.
    #[arg(long, value_parser = cell_hosts, value_name = "CELL=N")]
    cell_hosts: Vec<(domain::CellName, usize)>,
    #[command(flatten)]
    sim: HostArgs,
    #[command(flatten)]
    scheduling: SchedulingArgs,
    #[command(flatten)]
    quota: QuotaArgs,
    #[command(flatten)]
    webhooks: WebhookArgs,
    /// Use NATS JetStream at this URL as the event log (e.g. nats://127.0.0.1:4222,
    /// several comma-separated for a cluster) instead of the embedded store.
    #[arg(long)]
    nats: Option<String>,
    /// Replicas of the JetStream streams (1, or 3 on a 3-node cluster).
    #[arg(long, default_value_t = 1)]
    nats_replicas: usize,
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
    /// Fold the log and check every project's quota usage against its live servers
    /// (exit 1 on any difference; run it on a settled log).
    Quota {
        /// Data directory of the embedded store (the server must be stopped).
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
    /// Print an instance's state at an instant (JSON), folded from the log as
    /// `GET /v1/instances/{id}/state?at=` does.
    State {
        /// Data directory.
        #[arg(long, default_value = "./stratus-data")]
        data_dir: PathBuf,
        /// Read the log from NATS JetStream at this URL instead of `<data-dir>/log`.
        #[arg(long)]
        nats: Option<String>,
        /// Instance id.
        instance: String,
        /// An RFC 3339 time or a log position `<stream>:<seq>` (default: now).
        #[arg(long)]
        at: Option<String>,
    },
    /// Print the log as JSON lines, one event per line with its envelope (the shape of
    /// `GET /v1/events`), filtered.
    Export {
        /// Data directory.
        #[arg(long, default_value = "./stratus-data")]
        data_dir: PathBuf,
        /// Read the log from NATS JetStream at this URL instead of `<data-dir>/log`.
        #[arg(long)]
        nats: Option<String>,
        /// Only events that occurred at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only events that occurred at or before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Only events of this project's resources.
        #[arg(long)]
        project: Option<String>,
        /// Only these event types (comma-separated; `instance.*` for a prefix).
        #[arg(long = "type")]
        types: Option<String>,
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
    /// Instead: time the scheduling decision alone (every filter and weigher) over
    /// 1,000 and 10,000 simulated hosts in memory, and print p50 / p99.
    #[arg(long)]
    scheduler: bool,
    /// With --scheduler: decisions timed per size.
    #[arg(long, default_value_t = 2000)]
    decisions: usize,
    /// Measure quota admission instead: this many concurrent creates of one project
    /// against room for half of them (`--concurrency` clients).
    #[arg(long, value_name = "CREATES")]
    quota: Option<u64>,
    /// Measure the notifier instead: the lifecycle run (with `--cycles`, live notifier),
    /// then a fresh notifier over the whole log it left; prints both rates.
    #[arg(long)]
    notifier: bool,
    /// Measure the audit API instead: server-sent-event fan-out to `--subscribers`
    /// clients while one server gets `--audit-events` events, then state-at and history
    /// of that server (goal: under 10 ms).
    #[arg(long)]
    audit: bool,
    /// With --audit: events of the audited server.
    #[arg(long, default_value_t = 10_000)]
    audit_events: u64,
    /// With --audit: concurrent event-stream subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Measure real guests instead (libvirt, a build with `--features libvirt`):
    /// create -> ACTIVE and delete -> gone one guest at a time (`--guest-rounds`),
    /// then how many run at once before a create -> ACTIVE takes over 10 s (at most
    /// this many). Needs the guest of `ops/guest/build.sh` and a running libvirt.
    #[arg(long, value_name = "MAX")]
    guests: Option<usize>,
    /// With --guests: sequential create/delete rounds of the latency phase.
    #[arg(long, default_value_t = 5)]
    guest_rounds: usize,
    /// With --guests: libvirt's connection URI.
    #[arg(long, default_value = "qemu:///system")]
    guest_uri: String,
    /// With --guests: the domain type (`qemu`: TCG, `kvm`).
    #[arg(long, default_value = "qemu")]
    guest_virt_type: String,
    /// With --guests: where ops/guest/build.sh wrote vmlinuz and initrd.img.
    #[arg(long, default_value = "target/guest")]
    guest_dir: PathBuf,
    /// Instead: time os-simple-tenant-usage's query path over this many instances
    /// held in memory (goal: under 1 s for 100,000).
    #[arg(long, value_name = "INSTANCES")]
    usage: Option<usize>,
    /// Measure the billing subscriber instead: the lifecycle run (with `--cycles`),
    /// then every notification it left counted into a fresh ledger, this many per
    /// transaction.
    #[arg(long, value_name = "BATCH")]
    billing: Option<usize>,
    /// Measure port creation instead: this many concurrent `POST /v2.0/ports`
    /// (`--concurrency` clients) on one network whose subnet has room for half of them
    /// (exactly half must get distinct addresses, the rest IpAddressGenerationFailure),
    /// then every accepted port deleted concurrently.
    #[arg(long, value_name = "PORTS")]
    ports: Option<u64>,
    /// Lifecycle run with servers on the shared `private` network (`"networks":
    /// "auto"`: one port created, bound and released per cycle) instead of none.
    #[arg(long)]
    networked: bool,
}

/// The log of a read-only audit command: the embedded one of a stopped server's data
/// directory, or JetStream.
enum AuditLog {
    /// (the data directory's lock is held while the log is open)
    Embedded(
        std::sync::Arc<eventlog::EmbeddedLog>,
        #[allow(dead_code)] DataDir,
    ),
    Nats(std::sync::Arc<eventlog::JetStreamLog>),
}

impl AuditLog {
    async fn open(data_dir: &std::path::Path, nats: Option<&str>) -> anyhow::Result<AuditLog> {
        Ok(match nats {
            None => {
                let held = DataDir::existing(
                    data_dir,
                    Store::Log,
                    "stop it first, or ask the running server: GET /v1/events",
                )?;
                let log = eventlog::EmbeddedLog::open(&stratus::stack::log_dir(data_dir))?;
                AuditLog::Embedded(log, held)
            }
            Some(url) => AuditLog::Nats(open_nats(url).await?),
        })
    }

    fn log(&self) -> &dyn eventlog::EventLog {
        match self {
            AuditLog::Embedded(l, _) => l.as_ref(),
            AuditLog::Nats(l) => l.as_ref(),
        }
    }

    fn close(&self) {
        match self {
            AuditLog::Embedded(l, _) => l.close(),
            AuditLog::Nats(l) => l.close(),
        }
    }
}

/// Writes every event matching `filter` as one JSON line, page after page.
async fn audit_export(
    log: &dyn eventlog::EventLog,
    filter: replay::audit::Filter,
) -> anyhow::Result<()> {
    use std::io::Write;
    // Without a project filter, seeking to --since is safe (no project to learn).
    let seek = filter.project.is_none();
    let mut m = replay::audit::Matcher {
        filter,
        projects: Default::default(),
    };
    let mut cursor = replay::audit::Cursor::default();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    loop {
        let page = replay::audit::scan(
            log,
            &mut m,
            &cursor,
            replay::audit::Scan {
                limit: replay::audit::MAX_LIMIT,
                budget: 100_000,
                seek_since: seek,
            },
            None,
        )
        .await?;
        for r in &page.events {
            serde_json::to_writer(&mut out, &r.to_json())?;
            out.write_all(b"\n")?;
        }
        cursor = page.next;
        if !page.more {
            break;
        }
    }
    out.flush()?;
    Ok(())
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
    // Colours only for a person at a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are registered when this is called
/// (not when first polled), so a signal sent right after the ready line is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .expect("signal handler");
        async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `; identity on http://ADDR/v3` for the ready line (one line: scripts read only it).
fn identity_note(stack: &Stack, scheme: &str) -> String {
    match stack.identity_addr {
        Some(a) => format!("; identity on {scheme}://{a}/v3"),
        None => String::new(),
    }
}

fn fmt_time(us: i64) -> String {
    api::util::iso_micros_z(domain::Timestamp(us))
}

async fn run_admin(cmd: AdminCmd) -> anyhow::Result<()> {
    use stratus::admin;
    let log_args = match &cmd {
        AdminCmd::Project { cmd } => match cmd {
            AdminProjectCmd::Create { log, .. } | AdminProjectCmd::List { log } => log,
        },
        AdminCmd::User { cmd } => match cmd {
            AdminUserCmd::Create { log, .. }
            | AdminUserCmd::Set { log, .. }
            | AdminUserCmd::List { log } => log,
        },
        AdminCmd::Role { cmd } => match cmd {
            AdminRoleCmd::Add { log, .. } | AdminRoleCmd::List { log } => log,
        },
    };
    let open = stratus::cells::OpenLog::open(&log_args.target()).await?;
    let log = open.log.as_ref();
    let result = match &cmd {
        AdminCmd::Project { cmd } => match cmd {
            AdminProjectCmd::Create {
                name, description, ..
            } => admin::project_create(log, name, description)
                .await
                .map(|id| println!("project {name} created: {id}")),
            AdminProjectCmd::List { .. } => admin::project_list(log).await.map(|t| print!("{t}")),
        },
        AdminCmd::User { cmd } => match cmd {
            AdminUserCmd::Create {
                name,
                password,
                project,
                role,
                ..
            } => admin::user_create(log, name, password, project.as_deref(), role.as_deref())
                .await
                .map(|id| println!("user {name} created: {id}")),
            AdminUserCmd::Set {
                name,
                disable,
                enable,
                password,
                ..
            } => {
                let enabled = match (enable, disable) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                };
                admin::user_set(log, name, enabled, password.as_deref())
                    .await
                    .map(|()| println!("user {name} updated"))
            }
            AdminUserCmd::List { .. } => admin::user_list(log).await.map(|t| print!("{t}")),
        },
        AdminCmd::Role { cmd } => match cmd {
            AdminRoleCmd::Add {
                user,
                project,
                role,
                ..
            } => admin::role_add(log, user, project, role)
                .await
                .map(|()| println!("role {role} granted to {user} on {project}")),
            AdminRoleCmd::List { .. } => admin::role_list(log).await.map(|t| print!("{t}")),
        },
    };
    open.close();
    result
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A user's mistake (busy port, wrong directory, bad flag value) is a message,
            // not a crash: the cause chain on one line, no backtrace even with
            // RUST_BACKTRACE set (`main` returning the error would print one).
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Serve(a) => {
            let mut o = StackOptions::new(&a.data_dir);
            a.http.apply(&mut o)?;
            a.identity.apply(&mut o)?;
            a.sim.apply(&mut o)?;
            a.scheduling.apply(&mut o)?;
            a.quota.apply(&mut o)?;
            a.webhooks.apply(&mut o)?;
            o.hosts = a.hosts;
            o.cell_hosts = a.cell_hosts.clone();
            o.nats = a.nats.clone();
            o.nats_replicas = a.nats_replicas;
            if o.nats.is_none() {
                // Nothing else can create a cell while serve holds the embedded store.
                o.cell_wait = Duration::ZERO;
            }
            run_until_signal(o, "serve").await
        }
        Cmd::Api(a) => {
            let roles = Roles {
                api: true,
                ..Roles::none()
            };
            let mut o = part_options(&a.part, roles, "api");
            a.http.apply(&mut o)?;
            a.identity.apply(&mut o)?;
            a.quota.apply(&mut o)?;
            a.audit.apply(&mut o)?;
            a.reclaim.apply(&mut o);
            run_until_signal(o, "api").await
        }
        Cmd::Admin { cmd } => run_admin(cmd).await,
        Cmd::Billing(a) => run_billing(a).await,
        Cmd::Status(a) => {
            let doc = stratus::status::fetch(&stratus::status::StatusOptions {
                url: a.url,
                token: a.token,
            })
            .await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{}", stratus::status::render(&doc));
            }
            Ok(())
        }
        Cmd::Scheduler(a) => {
            let roles = Roles {
                scheduler: true,
                ..Roles::none()
            };
            let mut o = part_options(&a.part, roles, "scheduler");
            a.scheduling.apply(&mut o)?;
            a.quota.apply(&mut o)?;
            run_until_signal(o, "scheduler").await
        }
        Cmd::Projector(a) => {
            let roles = Roles {
                persist: true,
                ..Roles::none()
            };
            let mut o = part_options(&a.part, roles, "projector");
            a.webhooks.apply(&mut o)?;
            run_until_signal(o, "projector").await
        }
        Cmd::Compute(c) => {
            let roles = Roles {
                compute: true,
                ..Roles::none()
            };
            let mut o = part_options(&c.part, roles, &format!("compute-{}", c.host));
            c.sim.apply(&mut o)?;
            c.shelve.apply(&mut o)?;
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
        Cmd::Replay { cmd } => match cmd {
            ReplayCmd::Rebuild { data_dir, nats } => {
                let r = match &nats {
                    None => {
                        let _held = DataDir::existing(
                            &data_dir,
                            Store::Log,
                            "stop it first: the rebuild compares with the projections it writes",
                        )?;
                        replay::rebuild_data_dir(&data_dir).await?
                    }
                    Some(url) => {
                        let _held = DataDir::existing(
                            &data_dir,
                            Store::Projections,
                            "stop it first: the rebuild compares with the projections it writes",
                        )?;
                        let log = open_nats(url).await?;
                        let store = projections::ProjectionStore::open(
                            &stratus::stack::projections_path(&data_dir),
                        )
                        .context("cannot open the stored projections")?;
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
            ReplayCmd::Quota { data_dir, nats } => {
                let views = match &nats {
                    None => {
                        let _held = DataDir::existing(
                            &data_dir,
                            Store::Log,
                            "stop it first: the audit folds the log it holds",
                        )?;
                        let log = eventlog::EmbeddedLog::open(&stratus::stack::log_dir(&data_dir))?;
                        let r = replay::fold(log.clone(), &Default::default()).await;
                        log.close();
                        r?.0
                    }
                    Some(url) => {
                        let log = open_nats(url).await?;
                        let r = replay::fold(log.clone(), &Default::default()).await;
                        log.close();
                        r?.0
                    }
                };
                let lines = replay::quota_audit(&views);
                let mut bad = 0;
                println!(
                    "project                           ledger (inst/cores/ram)   live servers"
                );
                for l in &lines {
                    let u =
                        |x: domain::quota::Usage| format!("{}/{}/{}", x.instances, x.cores, x.ram);
                    let mark = if l.matches() { "" } else { "  MISMATCH" };
                    bad += usize::from(!l.matches());
                    println!("{:<33} {:<25} {}{mark}", l.project, u(l.ledger), u(l.live));
                }
                if bad == 0 {
                    println!("MATCH: every project's quota usage equals its live servers'");
                    Ok(())
                } else {
                    println!("MISMATCH: {bad} project(s)");
                    std::process::exit(1);
                }
            }
            ReplayCmd::State {
                data_dir,
                nats,
                instance,
                at,
            } => {
                let id = domain::InstanceId::parse(&instance).context("not a server id")?;
                let at = match at {
                    Some(a) => replay::audit::At::parse(&a)?,
                    None => replay::audit::At::Time(domain::Timestamp(eventlog::now_micros())),
                };
                let log = AuditLog::open(&data_dir, nats.as_deref()).await?;
                let r = replay::audit::state_at(log.log(), id, None, &at).await;
                log.close();
                match r? {
                    Some(s) => {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&replay::audit::state_at_json(&s))?
                        );
                        Ok(())
                    }
                    None => anyhow::bail!("instance {id} did not exist then"),
                }
            }
            ReplayCmd::Export {
                data_dir,
                nats,
                since,
                until,
                project,
                types,
            } => {
                let time = |v: Option<String>, what: &str| {
                    v.map(|v| {
                        replay::audit::parse_time(&v)
                            .with_context(|| format!("--{what} {v:?} is not an RFC 3339 time"))
                    })
                    .transpose()
                };
                let filter = replay::audit::Filter {
                    project,
                    viewer: None,
                    instance: None,
                    types: types
                        .as_deref()
                        .map(replay::audit::Filter::parse_types)
                        .unwrap_or_default(),
                    since: time(since, "since")?,
                    until: time(until, "until")?,
                };
                let log = AuditLog::open(&data_dir, nats.as_deref()).await?;
                let r = audit_export(log.log(), filter).await;
                log.close();
                r
            }
            ReplayCmd::History {
                data_dir,
                nats,
                instance,
            } => {
                let id = domain::InstanceId::parse(&instance).context("not a server id")?;
                // One line per event, printed as the fold goes (no copy of the state
                // per step).
                let print = |s: replay::StepRef<'_>| {
                    let st = s
                        .state
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
                };
                let steps = match &nats {
                    None => {
                        let _held = DataDir::existing(
                            &data_dir,
                            Store::Log,
                            &format!(
                                "stop it first, or ask the running server: \
                                     GET /v1/instances/{id}/events"
                            ),
                        )?;
                        let log = eventlog::EmbeddedLog::open(&stratus::stack::log_dir(&data_dir))?;
                        let steps = replay::visit_history(log.as_ref(), id, print).await;
                        log.close();
                        steps?
                    }
                    Some(url) => {
                        let log = open_nats(url).await?;
                        let steps = replay::visit_history(log.as_ref(), id, print).await;
                        log.close();
                        steps?
                    }
                };
                if steps == 0 {
                    anyhow::bail!("no events for instance {id}");
                }
                Ok(())
            }
        },
        Cmd::Bench(b) if b.billing.is_some() => {
            let batch = b.billing.unwrap_or(1000);
            let r = stratus::billing_bench::run(
                BenchOptions {
                    cycles: b.cycles,
                    concurrency: b.concurrency,
                    data_dir: b.data_dir,
                    hosts: b.hosts,
                    nats: b.nats.clone(),
                    log_concurrency: b.log_concurrency,
                    log_appends: 0,
                    networked: b.networked,
                },
                batch,
            )
            .await?;
            let l = &r.lifecycle;
            println!(
                "stratus bench --billing {batch} (embedded store, {} clients, {} hosts)",
                b.concurrency, b.hosts
            );
            println!(
                "  lifecycle: {} cycles in {:.2} s, {} notifications = {:.0} notifications/s produced",
                l.cycles,
                l.seconds,
                r.notifications,
                r.notifications as f64 / l.seconds
            );
            println!(
                "  billing ledger (parse + fold + one durable redb transaction per {batch}): {} notifications ({} counted) in {} transactions, {:.3} s = {:.0} notifications/s",
                r.notifications,
                r.counted,
                r.batches,
                r.seconds,
                r.notifications as f64 / r.seconds.max(1e-9)
            );
            Ok(())
        }
        Cmd::Bench(b) if b.guests.is_some() => {
            let r = stratus::guest_bench::run(stratus::guest_bench::GuestOptions {
                uri: b.guest_uri.clone(),
                virt_type: b.guest_virt_type.clone(),
                guest_dir: b.guest_dir.clone(),
                cycles: b.guest_rounds,
                max_guests: b.guests.unwrap_or(16),
            })
            .await?;
            for line in r.lines() {
                println!("{line}");
            }
            Ok(())
        }
        Cmd::Bench(b) if b.usage.is_some() => {
            let n = b.usage.unwrap_or_default();
            println!("stratus bench --usage {n} (os-simple-tenant-usage query path, in memory)");
            let r = stratus::usage_bench::run(n);
            println!(
                "  {} instances (built in {:.0} ms), 7-day window: every page of 1,000 as served, detailed ({} pages) {:.1} ms; one unbounded pass (not served: max_limit 1,000) detailed {:.1} ms, totals only {:.1} ms; one project's show {:.0} µs; {:.1} hours{}",
                r.instances,
                r.build_ms,
                r.pages,
                r.paged_sweep_ms,
                r.all_detailed_ms,
                r.all_totals_ms,
                r.show_us,
                r.total_hours,
                if r.paged_sweep_ms >= 1000.0 { "  [goal < 1 s missed]" } else { "" }
            );
            Ok(())
        }
        Cmd::Bench(b) if b.scheduler => {
            println!(
                "stratus bench --scheduler (decision only: every filter and weigher, in memory)"
            );
            for n in [1_000, 10_000] {
                let r = stratus::sched_bench::run(n, b.decisions.max(1));
                println!(
                    "  {:>6} hosts: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({} decisions, {} placed){}",
                    r.hosts,
                    r.p50_us,
                    r.p99_us,
                    r.max_us,
                    r.decisions,
                    r.placed,
                    if n == 10_000 && r.p99_us >= 1000.0 { "  [goal p99 < 1 ms missed]" } else { "" }
                );
            }
            Ok(())
        }
        Cmd::Bench(b) => {
            if std::env::var("RUST_LOG").is_ok() {
                init_tracing();
            }
            if b.audit {
                let r = stratus::audit_bench::run(b.audit_events, b.subscribers, b.nats.clone())
                    .await?;
                let backend = match &b.nats {
                    Some(u) => format!("JetStream at {u}"),
                    None => "embedded store".to_string(),
                };
                println!("stratus bench --audit ({backend})");
                println!(
                    "  fan-out: {} subscribers, {} events appended in {:.2} s ({:.0}/s); delivered {} of {} = {:.0} events/s in all; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    r.subscribers,
                    r.appended,
                    r.append_seconds,
                    r.appended as f64 / r.append_seconds,
                    r.delivered,
                    r.appended * r.subscribers as u64,
                    r.delivered as f64 / r.deliver_seconds.max(1e-9),
                    r.latency_ms.0,
                    r.latency_ms.1,
                    r.latency_ms.2
                );
                let goal = |p99: f64| {
                    if p99 < 10.0 {
                        ""
                    } else {
                        "  [goal < 10 ms missed]"
                    }
                };
                println!("  instance with {} events:", r.events);
                println!(
                    "    state-at fold (snapshots, latest):  p50 {:.2} ms, p99 {:.2} ms{}",
                    r.state_fold_ms.0,
                    r.state_fold_ms.1,
                    goal(r.state_fold_ms.0)
                );
                println!(
                    "    state-at fold (snapshots, random):  p50 {:.2} ms, p99 {:.2} ms{}",
                    r.state_random_ms.0,
                    r.state_random_ms.1,
                    goal(r.state_random_ms.0)
                );
                println!(
                    "    state-at plain fold (no snapshot):  p50 {:.2} ms, p99 {:.2} ms",
                    r.state_plain_ms.0, r.state_plain_ms.1
                );
                println!(
                    "    plain fold, median of 10: read commits {:.2} ms, decode payloads {:.2} ms, evolve {:.2} ms",
                    r.profile_ms.0, r.profile_ms.1, r.profile_ms.2
                );
                println!(
                    "    GET .../state?at= (random events):  p50 {:.2} ms, p99 {:.2} ms{}",
                    r.state_http_random_ms.0,
                    r.state_http_random_ms.1,
                    goal(r.state_http_random_ms.0)
                );
                println!(
                    "    GET .../events?limit=1000&marker=:  p50 {:.2} ms, p99 {:.2} ms{}; all {} pages walked in {:.1} ms",
                    r.history_page_http_ms.0,
                    r.history_page_http_ms.1,
                    goal(r.history_page_http_ms.0),
                    r.history_pages,
                    r.history_walk_ms
                );
                println!(
                    "    history fold (state per event):     p50 {:.2} ms, p99 {:.2} ms{}",
                    r.history_fold_ms.0,
                    r.history_fold_ms.1,
                    goal(r.history_fold_ms.0)
                );
                println!(
                    "    GET .../state?at= (latest):         p50 {:.2} ms, p99 {:.2} ms{}",
                    r.state_http_ms.0,
                    r.state_http_ms.1,
                    goal(r.state_http_ms.0)
                );
                println!(
                    "    GET .../events (unpaged):           p50 {:.2} ms, p99 {:.2} ms{}",
                    r.history_http_ms.0,
                    r.history_http_ms.1,
                    goal(r.history_http_ms.0)
                );
                return Ok(());
            }
            if let Some(creates) = b.quota {
                let r = bench::quota_admission(creates, b.concurrency, b.nats.clone()).await?;
                println!(
                    "stratus bench --quota ({} concurrent clients, one project)",
                    b.concurrency
                );
                println!(
                    "  {} creates in {:.2} s = {:.0} admission decisions/s; admitted {} (limit {}), refused {}",
                    r.creates,
                    r.seconds,
                    r.creates as f64 / r.seconds,
                    r.admitted,
                    r.limit,
                    r.refused
                );
                println!(
                    "  create latency p50 {:.2} ms, p99 {:.2} ms",
                    r.p50_ms, r.p99_ms
                );
                return Ok(());
            }
            if let Some(n) = b.ports {
                let r = stratus::net_bench::ports(n, b.concurrency, b.nats.clone()).await?;
                let backend = match &b.nats {
                    Some(u) => format!("JetStream at {u}"),
                    None => "embedded store".to_string(),
                };
                println!(
                    "stratus bench --ports {n} ({backend}, {} clients, one network: subnet {} with room for {} addresses, {}-{})",
                    b.concurrency, r.cidr, r.room, r.pool.0, r.pool.1
                );
                println!(
                    "  creates: {} in {:.2} s = {:.0} creates/s; accepted {} ({} distinct addresses), refused {} (IpAddressGenerationFailure)",
                    r.creates,
                    r.seconds,
                    r.creates_per_s(),
                    r.accepted,
                    r.distinct,
                    r.refused
                );
                println!(
                    "  accepted create latency p50 {:.2} ms, p99 {:.2} ms (refused p50 {:.2} ms)",
                    r.p50_ms, r.p99_ms, r.refused_p50_ms
                );
                println!(
                    "  deletes: {} in {:.2} s = {:.0} deletes/s; no port left on the network",
                    r.accepted,
                    r.delete_seconds,
                    r.deletes_per_s()
                );
                return Ok(());
            }
            if b.notifier {
                let r = stratus::notify_bench::run(BenchOptions {
                    cycles: b.cycles,
                    concurrency: b.concurrency,
                    data_dir: b.data_dir,
                    hosts: b.hosts,
                    nats: b.nats.clone(),
                    log_concurrency: b.log_concurrency,
                    log_appends: 0,
                    networked: b.networked,
                })
                .await?;
                let l = &r.lifecycle;
                let need = r.total as f64 / l.seconds;
                let rate = r.replayed as f64 / r.replay_seconds;
                println!(
                    "stratus bench --notifier (embedded store, {} clients, {} hosts)",
                    b.concurrency, b.hosts
                );
                println!(
                    "  lifecycle: {} cycles in {:.2} s = {:.0} cycles/s, {:.0} events/s, {} notifications = {:.0} notifications/s to keep up with",
                    l.cycles, l.seconds, l.cycles as f64 / l.seconds, l.events as f64 / l.seconds, r.total, need
                );
                println!(
                    "  live notifier: {} of them written when the load ended ({:.1}%)",
                    r.live,
                    100.0 * r.live as f64 / (r.total as f64).max(1.0)
                );
                println!(
                    "  notifier from the log's start (fold + map + redb): {} notifications in {:.2} s = {:.0} notifications/s = {:.1}x the lifecycle rate",
                    r.replayed, r.replay_seconds, rate, rate / need.max(1e-9)
                );
                println!(
                    "  live store and replay agree (same message ids, same order): {}",
                    if r.same { "yes" } else { "NO" }
                );
                anyhow::ensure!(r.same, "the live notifier and the replay disagree");
                return Ok(());
            }
            let r = bench::run(BenchOptions {
                cycles: b.cycles,
                concurrency: b.concurrency,
                data_dir: b.data_dir,
                hosts: b.hosts,
                nats: b.nats.clone(),
                log_concurrency: b.log_concurrency,
                log_appends: b.log_appends,
                networked: b.networked,
            })
            .await?;
            let backend = match &b.nats {
                Some(u) => format!("JetStream at {u}"),
                None => "embedded store".to_string(),
            };
            println!(
                "stratus bench ({backend}, {} clients, {} hosts{})",
                b.concurrency,
                b.hosts,
                if b.networked {
                    ", servers on the shared private network"
                } else {
                    ""
                }
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
            if let Some(p) = &r.ports {
                println!(
                    "  ports:         {} created on private (one per server, bound, released at delete); none left {:.2} s after the load",
                    p.addressed, p.drain_seconds
                );
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
