//! The notifier: one task per cell stream, reading the stream in order from its first
//! commit, folding it ([`CellFold`]) and writing each commit's notifications to a
//! [`Sink`] exactly once.
//!
//! Why not an `engine::Reactor`: reactors are level-triggered and at-least-once from
//! the world's position (a durable consumer created at the world's position, or a
//! checkpoint that may lag); the notifier is edge-triggered (each event yields its own
//! notifications), needs the state *before* each event from the stream's start, and
//! must write each notification once, so its position is the sink's own, committed
//! with what it wrote ([`Sink::resume_points`]), and it reads with an ordered
//! subscription (catch-up, then live; no gap, no duplicate). It runs in one process
//! (the one that persists the projections).
//!
//! Invariants:
//! - commits before the resume point are folded and their notifications dropped; the
//!   resume commit's first `written` notifications are dropped; everything after is
//!   written, in log order, in batches that are atomic with their positions;
//! - a failed write is retried with the same batch (same message ids), never skipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventlog::{Commit, EventLog, StreamName};
use futures::FutureExt;
use tokio::sync::watch;

use crate::store::{Entry, Resume, Sink};
use crate::{CellFold, NotifierError};

/// Most commits folded into one write.
const MAX_BATCH_COMMITS: usize = 2048;

/// How the notifier of one source stream is doing (for `GET /v1/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamReport {
    /// Source stream.
    pub stream: String,
    /// The last commit whose notifications are all written (this process; 0: none yet).
    pub position: u64,
    /// Notifications of this stream written by this process.
    pub written: u64,
    /// Failures met (subscription, decoding, writing), each retried except `stopped`.
    pub errors: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When a batch was last written (microseconds since the epoch; 0: never).
    pub last_write: u64,
    /// The task stopped on this stream (a commit it cannot decode: written by a newer
    /// version); it needs a restart with that version.
    pub stopped: bool,
}

/// The notifier of one process.
pub struct Notifier {
    log: Arc<dyn EventLog>,
    sink: Arc<dyn Sink>,
    resume: HashMap<String, Resume>,
    streams: Mutex<HashMap<String, StreamReport>>,
    written: AtomicU64,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("written", &self.written.load(Ordering::Relaxed))
            .finish()
    }
}

/// Whether the notifier reads `stream` (every cell stream; the api stream holds build
/// requests, whose instances have no notification before placement).
pub fn is_source(stream: &StreamName) -> bool {
    stream.as_str() != "api"
}

impl Notifier {
    /// A notifier writing to `sink`, resuming where it stands.
    pub async fn new(
        log: Arc<dyn EventLog>,
        sink: Arc<dyn Sink>,
    ) -> Result<Arc<Notifier>, NotifierError> {
        let resume = sink.resume_points().await?;
        Ok(Arc::new(Notifier {
            log,
            sink,
            resume,
            streams: Mutex::new(HashMap::new()),
            written: AtomicU64::new(0),
        }))
    }

    /// Notifications written by this process.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The last commit of `stream` whose notifications are all written (this process).
    pub fn position(&self, stream: &StreamName) -> u64 {
        self.streams
            .lock()
            .map(|p| p.get(stream.as_str()).map_or(0, |r| r.position))
            .unwrap_or(0)
    }

    /// Every source stream's report, by stream name.
    pub fn report(&self) -> Vec<StreamReport> {
        let mut out: Vec<StreamReport> = self
            .streams
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.stream.cmp(&b.stream));
        out
    }

    /// Updates `stream`'s report.
    fn record(&self, stream: &StreamName, f: impl FnOnce(&mut StreamReport)) {
        if let Ok(mut m) = self.streams.lock() {
            let r = m.entry(stream.to_string()).or_insert_with(|| StreamReport {
                stream: stream.to_string(),
                ..StreamReport::default()
            });
            f(r);
        }
    }

    fn failed(&self, stream: &StreamName, error: &dyn std::fmt::Display, stopped: bool) {
        let message = error.to_string();
        self.record(stream, |r| {
            r.errors += 1;
            r.last_error = Some(message);
            r.stopped |= stopped;
        });
    }

    fn entries(
        &self,
        fold: &mut CellFold,
        resume: Resume,
        commit: &Commit,
        out: &mut Vec<Entry>,
    ) -> Result<(), NotifierError> {
        let notes = fold.commit(commit)?;
        let seq = commit.stream_seq;
        let skip = match seq.cmp(&resume.seq) {
            std::cmp::Ordering::Less => return Ok(()),
            std::cmp::Ordering::Equal => resume.written as usize,
            std::cmp::Ordering::Greater => 0,
        };
        for (i, n) in notes.into_iter().enumerate().skip(skip) {
            out.push(Entry {
                stream: commit.stream.to_string(),
                seq,
                index: i as u32,
                notification: n,
            });
        }
        Ok(())
    }

    /// Runs the notifier of `stream` until `shutdown`.
    pub async fn run(self: Arc<Self>, stream: StreamName, mut shutdown: watch::Receiver<bool>) {
        let resume = self
            .resume
            .get(stream.as_str())
            .copied()
            .unwrap_or_default();
        let mut fold = CellFold::default();
        self.record(&stream, |_| {});
        'subscribe: loop {
            let mut sub = match self.log.subscribe(&stream, fold.position + 1).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%stream, error = %e, "notifier cannot subscribe; retrying");
                    self.failed(&stream, &e, false);
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            loop {
                let first = tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    next = sub.next() => next,
                };
                let mut batch = Vec::new();
                let mut next = first;
                let mut commits = 0;
                loop {
                    match next {
                        Some(Ok(commit)) => {
                            if let Err(e) = self.entries(&mut fold, resume, &commit, &mut batch) {
                                tracing::error!(%stream, error = %e, "notifier stops on this stream");
                                self.failed(&stream, &e, true);
                                return;
                            }
                            commits += 1;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(%stream, error = %e, "notifier subscription failed; resubscribing");
                            self.failed(&stream, &e, false);
                            if !self
                                .flush(&stream, batch, fold.position, &mut shutdown)
                                .await
                            {
                                return;
                            }
                            continue 'subscribe;
                        }
                        None => {
                            self.flush(&stream, batch, fold.position, &mut shutdown)
                                .await;
                            return;
                        }
                    }
                    if commits >= MAX_BATCH_COMMITS {
                        break;
                    }
                    match sub.next().now_or_never() {
                        Some(n) => next = n,
                        None => break,
                    }
                }
                if !self
                    .flush(&stream, batch, fold.position, &mut shutdown)
                    .await
                {
                    return;
                }
            }
        }
    }

    /// Writes `batch` until it is written (false: shut down first).
    async fn flush(
        &self,
        stream: &StreamName,
        batch: Vec<Entry>,
        position: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let n = batch.len() as u64;
        let mut delay = Duration::from_millis(100);
        while !batch.is_empty() {
            match self.sink.write(batch.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(%stream, error = %e, "cannot write notifications; retrying");
                    self.failed(stream, &e, false);
                    tokio::select! {
                        _ = shutdown.changed() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.written.fetch_add(n, Ordering::Relaxed);
        let now = if n > 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64)
        } else {
            0
        };
        self.record(stream, |r| {
            r.position = position;
            r.written += n;
            if now > 0 {
                r.last_write = now;
            }
        });
        true
    }
}
