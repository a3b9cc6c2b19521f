//! `stratus cell create` and `stratus cell list`: one-shot commands on the log.
//!
//! Invariants: both work offline on the embedded store (the data directory of a
//! stopped server; a running server holds its lock and the command says so; a directory
//! without a store is refused, never created) and on
//! JetStream alongside running processes. `create` decides on state read from the log
//! (`engine::cells`), so it never duplicates a cell; `list` reads the api stream
//! (cells, host mappings) and each reachable cell stream, and reports a cell whose
//! stream does not answer within 2 s as `down` instead of failing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::datadir::{DataDir, Store};
use anyhow::Context as _;
use domain::{CellName, Ctx};
use engine::{now, Meta};
use eventlog::{EmbeddedLog, EventLog, JetStreamLog, JetStreamOptions, StreamName};
use projections::{Touched, Views};

/// Where the log is.
#[derive(Debug, Clone)]
pub enum Target {
    /// Embedded store in this data directory.
    Embedded(PathBuf),
    /// JetStream at this URL, creating streams with this many replicas.
    Nats {
        /// NATS URL.
        url: String,
        /// Stream replicas (1 or 3).
        replicas: usize,
    },
}

/// An open log, closed on drop of the command.
pub struct OpenLog {
    /// The log.
    pub log: Arc<dyn EventLog>,
    backend: Backend,
}

enum Backend {
    /// The log, and the lock on its data directory (held while the command runs).
    Embedded {
        log: Arc<EmbeddedLog>,
        _held: DataDir,
    },
    JetStream(Arc<JetStreamLog>),
}

impl OpenLog {
    /// Opens the log of `target`; on the embedded store, fails with a clear message if
    /// a running server holds the data directory.
    pub async fn open(target: &Target) -> anyhow::Result<OpenLog> {
        match target {
            Target::Embedded(dir) => {
                let held = DataDir::existing(
                    dir,
                    Store::Log,
                    "stop it first; while it runs use its API (the `openstack` CLI), \
                     or, when the log is on JetStream, run this command with --nats URL",
                )?;
                let l = EmbeddedLog::open(&crate::stack::log_dir(dir))
                    .with_context(|| format!("cannot open the event log in {}", dir.display()))?;
                let log: Arc<dyn EventLog> = l.clone();
                if let Err(e) = log.ensure_stream(&StreamName::api()).await {
                    l.close();
                    return Err(e).context("cannot open the api stream");
                }
                Ok(OpenLog {
                    log,
                    backend: Backend::Embedded {
                        log: l,
                        _held: held,
                    },
                })
            }
            Target::Nats { url, replicas } => {
                let opts = JetStreamOptions {
                    replicas: *replicas,
                    ..JetStreamOptions::default()
                };
                let l = JetStreamLog::connect(url, opts)
                    .await
                    .with_context(|| format!("cannot use JetStream at {url}"))?;
                let log: Arc<dyn EventLog> = l.clone();
                log.ensure_stream(&StreamName::api()).await?;
                Ok(OpenLog {
                    log,
                    backend: Backend::JetStream(l),
                })
            }
        }
    }

    /// How the backend names a cell's stream.
    pub fn stream_label(&self, cell: &CellName) -> String {
        let s = engine::cells::cell_stream(cell);
        match &self.backend {
            Backend::Embedded { .. } => format!("log/{s}.redb"),
            Backend::JetStream(l) => l.jetstream_name(&s),
        }
    }

    /// Closes the log (flushes the embedded store).
    pub fn close(&self) {
        match &self.backend {
            Backend::Embedded { log, .. } => log.close(),
            Backend::JetStream(l) => l.close(),
        }
    }
}

/// Creates a cell (and its stream). Refuses an existing one with a clear message.
pub async fn create(log: &dyn EventLog, name: &str) -> anyhow::Result<()> {
    let name = CellName::new(name).map_err(|_| {
        anyhow::anyhow!("invalid cell name {name:?}: use 1 to 64 of [a-z0-9_-] (and not `api`)")
    })?;
    let request = format!("req-{}", uuid::Uuid::new_v4());
    let meta = Meta::service(
        "operator",
        &request,
        "cli:cell-create",
        domain::dedupe::cell_create(uuid::Uuid::new_v4()),
    );
    let ctx = Ctx::service("operator", now(), uuid::Uuid::new_v4());
    match engine::cells::create_cell(log, &name, &ctx, &meta).await {
        Ok(_) => Ok(()),
        Err(engine::EngineError::Domain(e @ domain::DomainError::AlreadyExists { .. })) => {
            anyhow::bail!("{e}")
        }
        Err(e) => Err(e).with_context(|| format!("cannot create cell {name}")),
    }
}

/// One row of `stratus cell list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellInfo {
    /// Cell name.
    pub name: CellName,
    /// Its stream as the backend names it.
    pub stream: String,
    /// Hosts mapped to it.
    pub hosts: usize,
    /// Live (not deleted) instances in it; None when the cell is down.
    pub instances: Option<usize>,
    /// Whether its stream answered.
    pub up: bool,
}

/// Folds a whole stream into `views`.
pub async fn fold_stream(
    log: &dyn EventLog,
    stream: &StreamName,
    views: &mut Views,
) -> anyhow::Result<()> {
    let mut from = 1;
    let mut touched = Touched::default();
    loop {
        let batch = log.read_stream(stream, from, 4096).await?;
        let Some(last) = batch.last().map(|c| c.stream_seq) else {
            return Ok(());
        };
        for c in &batch {
            views.apply(c, &mut touched);
        }
        from = last + 1;
    }
}

/// The cells with their hosts, instances and state.
pub async fn list(open: &OpenLog) -> anyhow::Result<Vec<CellInfo>> {
    let log = open.log.as_ref();
    let mut views = Views::default();
    fold_stream(log, &StreamName::api(), &mut views)
        .await
        .context("cannot read the api stream")?;
    let cells: Vec<CellName> = views.cells().keys().cloned().collect();
    let mut out = Vec::new();
    for name in cells {
        let stream = engine::cells::cell_stream(&name);
        let mut cell_views = Views::default();
        let reachable = matches!(
            tokio::time::timeout(Duration::from_secs(2), log.last_stream_seq(&stream)).await,
            Ok(Ok(_))
        );
        let up = reachable
            && matches!(
                tokio::time::timeout(
                    Duration::from_secs(60),
                    fold_stream(log, &stream, &mut cell_views)
                )
                .await,
                Ok(Ok(()))
            );
        let instances = up.then(|| {
            cell_views
                .instances()
                .values()
                .filter_map(|r| r.cell.as_ref())
                .filter(|i| !i.deleted)
                .count()
        });
        let hosts = views
            .host_mappings()
            .values()
            .filter(|m| m.state.cell == name)
            .count();
        out.push(CellInfo {
            stream: open.stream_label(&name),
            name,
            hosts,
            instances,
            up,
        });
    }
    Ok(out)
}

/// The table `stratus cell list` prints.
pub fn table(cells: &[CellInfo]) -> String {
    let rows: Vec<[String; 5]> = cells
        .iter()
        .map(|c| {
            [
                c.name.to_string(),
                c.stream.clone(),
                c.hosts.to_string(),
                c.instances
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "?".into()),
                if c.up { "up" } else { "down" }.to_string(),
            ]
        })
        .collect();
    let head = ["NAME", "STREAM", "HOSTS", "INSTANCES", "STATE"];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |r: [&str; 5]| {
        let s: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        format!("{}\n", s.join("  ").trim_end())
    };
    let mut out = line(head);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out
}
