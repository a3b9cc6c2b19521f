//! `stratus bench --notifier`: does the notifier keep up with the lifecycle?
//!
//! 1. the lifecycle benchmark ([`crate::bench::run`]) on the embedded store, with the
//!    stack's notifier running live; its notifications per second are the rate the
//!    notifier must sustain;
//! 2. a fresh notifier over the whole log it left (every cell stream from its first
//!    commit: fold, map, write to a fresh redb store): its notifications per second are
//!    what the notifier sustains; the live store is compared with it (same count, same
//!    message ids in order).

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlog::EventLog;
use notifier::store::{EmbeddedNotifications, Feed, Filter};

use crate::bench::{self, BenchOptions, BenchReport};

/// What was measured.
#[derive(Debug)]
pub struct NotifierReport {
    /// The lifecycle run.
    pub lifecycle: BenchReport,
    /// Notifications the live notifier had written when the stack stopped (right
    /// after the load).
    pub live: u64,
    /// Notifications of the whole log (the live store, resumed to the log's end).
    pub total: u64,
    /// Notifications the replaying notifier wrote.
    pub replayed: u64,
    /// Its wall time.
    pub replay_seconds: f64,
    /// Whether both stores hold the same message ids in the same order.
    pub same: bool,
}

async fn ids(store: &EmbeddedNotifications) -> anyhow::Result<Vec<uuid::Uuid>> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (rows, upto) = store.read(cursor, 1000, &Filter::default()).await?;
        out.extend(rows.into_iter().map(|(_, n)| n.message_id));
        if upto == cursor {
            return Ok(out);
        }
        cursor = upto;
    }
}

/// Runs a notifier writing to `sink` until it has covered `heads`.
async fn catch_up(
    log: &Arc<dyn EventLog>,
    sink: Arc<EmbeddedNotifications>,
    heads: &[(eventlog::StreamName, u64)],
) -> anyhow::Result<Arc<notifier::runner::Notifier>> {
    let n = notifier::runner::Notifier::new(log.clone(), sink).await?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = heads
        .iter()
        .map(|(s, _)| tokio::spawn(n.clone().run(s.clone(), rx.clone())))
        .collect();
    // Streams whose last commits yield nothing never move the position: bound the wait
    // by the sink not growing any more.
    let mut idle = 0;
    let mut last = n.written();
    while heads.iter().any(|(s, head)| n.position(s) < *head) && idle < 500 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let w = n.written();
        idle = if w == last { idle + 1 } else { 0 };
        last = w;
    }
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(n)
}

/// Runs both measurements (embedded store only).
pub async fn run(mut opts: BenchOptions) -> anyhow::Result<NotifierReport> {
    anyhow::ensure!(opts.nats.is_none(), "--notifier runs on the embedded store");
    let dir = opts.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("stratus-bench-notifier-{}", uuid::Uuid::new_v4()))
    });
    let remove = opts.data_dir.is_none();
    opts.data_dir = Some(dir.clone());
    let lifecycle = bench::run(opts).await?;

    let log = eventlog::EmbeddedLog::open(&crate::stack::log_dir(&dir))?;
    let fresh = EmbeddedNotifications::open(&dir.join("notifications-replay.redb"))?;
    let live = EmbeddedNotifications::open(&dir.join("notifications.redb"))?;
    let dynlog: Arc<dyn EventLog> = log.clone();
    let at_stop = live.last().await?;
    let mut heads = Vec::new();
    for s in dynlog.streams().await? {
        if notifier::runner::is_source(&s) {
            heads.push((s.clone(), dynlog.last_stream_seq(&s).await?));
        }
    }
    let t0 = Instant::now();
    let n = catch_up(&dynlog, Arc::new(fresh.clone()), &heads).await?;
    let replay_seconds = t0.elapsed().as_secs_f64();
    // The live store resumes where the stack left it: it ends as the replay did.
    catch_up(&dynlog, Arc::new(live.clone()), &heads).await?;
    let (a, b) = (ids(&live).await?, ids(&fresh).await?);
    log.close();
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(NotifierReport {
        lifecycle,
        live: at_stop,
        total: a.len() as u64,
        replayed: n.written(),
        replay_seconds,
        same: a == b,
    })
}
