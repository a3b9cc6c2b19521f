//! The embedded backend: one [redb] database file per stream, with group commit.
//!
//! # Files
//!
//! `<dir>/<stream>.redb`, one per stream. Files present in `<dir>` when the log is opened are
//! the existing streams; a database is opened on first use and created by
//! [`EventLog::ensure_stream`], by the first append to a subject of that stream, or by a
//! subscription to it.
//!
//! # Tables (in every stream database)
//!
//! | table           | key                              | value                                  |
//! |-----------------|----------------------------------|----------------------------------------|
//! | `commits`       | `stream_seq: u64`                | encoded commit record (see below)      |
//! | `subject_index` | `(subject: &str, subject_seq: u64)` | `stream_seq: u64`                   |
//!
//! A commit record is one format byte ([`RECORD_FORMAT`]) followed by the postcard encoding of
//! subject, subject_seq, dedupe_id, metadata and events. The stream and `stream_seq` are not
//! stored in the record: they are the file and the key.
//!
//! # Invariants
//!
//! - The keys of `commits` are exactly `1..=last`, with no gap: the writer takes the next
//!   position from the last key inside the same write transaction that inserts.
//! - For every subject `s` whose last sequence is `n` (the greatest `(s, n)` key of
//!   `subject_index`; there is no separate "last" table, which would cost one more random
//!   page write per commit), `subject_index` holds exactly the keys `(s, 1..=n)`, each
//!   pointing at a commit whose record names `s` and that sequence.
//! - Every row of one append (commit, index, dedupe) is written in the same write
//!   transaction, committed with [`Durability::Immediate`] before the append is acknowledged,
//!   so an acknowledged commit survives a crash and no commit is ever partially visible.
//! - An empty `dedupe_id` disables deduplication for that append; a non-empty one is
//!   unique per stream within the *dedupe window*: the last [`DEDUPE_WINDOW`] commits of
//!   the stream (JetStream has a time window instead). The window lives in memory; it is
//!   rebuilt from the dedupe ids stored in the last commit records when a stream is
//!   opened, so it survives restarts and crashes. A table would cost one random page
//!   write per commit.
//!
//! # Group commit
//!
//! Each open stream has one dedicated writer thread fed by a channel. The thread blocks for
//! one request, drains whatever else is pending (up to [`MAX_BATCH`]), applies all of them in
//! one write transaction (checking OCC against the database and dedupe against the window,
//! both *including* the earlier requests of the same batch),
//! commits durably, and only then answers every caller. A request refused by OCC is simply not
//! written; it does not affect the others of its batch. If the commit itself fails, every
//! request of the batch gets [`LogError::Storage`] and nothing of the batch is visible.
//!
//! After each commit the writer publishes the stream's last position on a
//! [`tokio::sync::watch`] channel, which live subscriptions wait on. Positions are published
//! only after the commit is visible to new read transactions, so a subscriber that reads
//! nothing and then waits for the watch cannot miss a commit.
//!
//! # Performance
//!
//! The writer thread is the bottleneck and is CPU-bound in redb: every commit dirties (copies,
//! checksums and writes) a 4 KiB leaf in `subject_index` at a random place, so the
//! cost is per *commit*, nearly independent of its number of events. Many concurrent appenders
//! and multi-event commits are what make it fast; a lone appender gets one fsync per commit.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::{
    AppendAck, AppendRequest, Commit, CommitsRead, EventLog, ExpectedSeq, LogError, Metadata,
    StoredEvent, StreamName, Subject, Subscription,
};

/// Commits keyed by stream position.
const COMMITS: TableDefinition<u64, &[u8]> = TableDefinition::new("commits");
/// `(subject, subject_seq)` -> stream position.
const SUBJECT_INDEX: TableDefinition<(&str, u64), u64> = TableDefinition::new("subject_index");

/// Format byte prefixed to every stored commit record; bump it when the record changes.
pub const RECORD_FORMAT: u8 = 1;

/// Most append requests applied in one write transaction.
pub const MAX_BATCH: usize = 1024;

/// Commits read per round trip by a subscription and by its catch-up.
const SUBSCRIPTION_READ_BATCH: usize = 512;

/// Capacity of a subscription's channel.
const SUBSCRIPTION_CAPACITY: usize = 1024;

/// Number of most recent commits of a stream whose dedupe ids are remembered.
pub const DEDUPE_WINDOW: usize = 65_536;

/// Most recent commits kept in memory per stream, so caught-up subscribers are fed
/// without a database read.
const TAIL_LEN: usize = 8192;

/// redb page cache per stream database.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// File name suffix of a stream database.
const FILE_SUFFIX: &str = ".redb";

/// The stored form of a commit (borrowed, for encoding).
#[derive(Serialize)]
pub(crate) struct RecordRef<'a> {
    pub(crate) subject: &'a Subject,
    pub(crate) subject_seq: u64,
    pub(crate) dedupe_id: &'a str,
    pub(crate) meta: &'a Metadata,
    pub(crate) events: &'a [StoredEvent],
}

/// The stored form of a commit (owned, for decoding). Same field order as [`RecordRef`].
#[derive(Deserialize)]
struct RecordOwned {
    subject: Subject,
    subject_seq: u64,
    dedupe_id: String,
    meta: Metadata,
    events: Vec<StoredEvent>,
}

/// Appends the stored record of a commit to `buf` (format byte, then postcard).
pub(crate) fn encode_record(rec: &RecordRef<'_>, mut buf: Vec<u8>) -> Result<Vec<u8>, LogError> {
    buf.push(RECORD_FORMAT);
    postcard::to_extend(rec, buf).map_err(|e| LogError::Corrupt(format!("encode commit: {e}")))
}

/// The postcard body of a stored record, after its format byte is checked.
pub(crate) fn record_body<'a>(
    stream: &StreamName,
    stream_seq: u64,
    bytes: &'a [u8],
) -> Result<&'a [u8], LogError> {
    match bytes.split_first() {
        Some((&RECORD_FORMAT, body)) => Ok(body),
        Some((other, _)) => Err(LogError::Corrupt(format!(
            "commit {stream}/{stream_seq}: unknown record format {other}"
        ))),
        None => Err(LogError::Corrupt(format!(
            "commit {stream}/{stream_seq}: empty record"
        ))),
    }
}

/// Decodes a stored record back into the [`Commit`] at `stream_seq` of `stream`.
pub(crate) fn decode_record(
    stream: &StreamName,
    stream_seq: u64,
    bytes: &[u8],
) -> Result<Commit, LogError> {
    let body = record_body(stream, stream_seq, bytes)?;
    let r: RecordOwned = postcard::from_bytes(body)
        .map_err(|e| LogError::Corrupt(format!("commit {stream}/{stream_seq}: {e}")))?;
    Ok(Commit {
        stream: stream.clone(),
        stream_seq,
        subject: r.subject,
        subject_seq: r.subject_seq,
        dedupe_id: r.dedupe_id,
        meta: r.meta,
        events: r.events,
    })
}

/// Last sequence of `subject`: the greatest `(subject, seq)` key of the index (0 if none).
fn last_in_index(
    t: &impl ReadableTable<(&'static str, u64), u64>,
    subject: &str,
) -> Result<u64, LogError> {
    let mut range = t
        .range((subject, 0u64)..=(subject, u64::MAX))
        .map_err(storage)?;
    match range.next_back() {
        Some(r) => Ok(r.map_err(storage)?.0.value().1),
        None => Ok(0),
    }
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

/// One append waiting for the writer thread.
struct Job {
    subject: Subject,
    expected: ExpectedSeq,
    dedupe_id: String,
    meta: Metadata,
    events: Vec<StoredEvent>,
    reply: oneshot::Sender<Result<AppendAck, LogError>>,
}

/// An open stream: its database, its writer and its position watch.
struct StreamHandle {
    name: StreamName,
    db: Arc<Database>,
    /// Sender to the writer thread; `None` once closed.
    jobs: RwLock<Option<std_mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Last committed position, published after each commit.
    last: watch::Sender<u64>,
    /// The most recent commits, contiguous, ending at `last` (filled by the writer before
    /// it publishes `last`).
    tail: Arc<Mutex<VecDeque<Arc<Commit>>>>,
}

impl StreamHandle {
    /// Commits from `next` on, served from the in-memory tail; `None` when the tail
    /// does not reach back to `next` (then read the database).
    fn tail_from(&self, next: u64, max: usize) -> Option<Vec<Commit>> {
        let tail = self.tail.lock().expect("tail lock poisoned");
        let first = tail.front()?.stream_seq;
        if next < first {
            return None;
        }
        let skip = usize::try_from(next - first).unwrap_or(usize::MAX);
        Some(
            tail.iter()
                .skip(skip)
                .take(max)
                .map(|c| (**c).clone())
                .collect(),
        )
    }

    /// Opens (or creates) the database of `name` and starts its writer thread.
    fn open(dir: &Path, name: StreamName) -> Result<Arc<Self>, LogError> {
        let path = dir.join(format!("{name}{FILE_SUFFIX}"));
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| LogError::Storage(format!("open {}: {e}", path.display())))?;
        // Create every table up front so read transactions never see a missing table.
        let txn = db.begin_write().map_err(storage)?;
        {
            txn.open_table(COMMITS).map_err(storage)?;
            txn.open_table(SUBJECT_INDEX).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        let last = {
            let r = db.begin_read().map_err(storage)?;
            let t = r.open_table(COMMITS).map_err(storage)?;
            let last = t.last().map_err(storage)?.map(|(k, _)| k.value());
            last.unwrap_or(0)
        };

        let db = Arc::new(db);
        let (tx, rx) = std_mpsc::channel();
        let (last_tx, _) = watch::channel(last);
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LEN)));
        let handle = Arc::new(Self {
            name: name.clone(),
            db: db.clone(),
            jobs: RwLock::new(Some(tx)),
            writer: Mutex::new(None),
            last: last_tx,
            tail: tail.clone(),
        });
        let mut dedupe = DedupeWindow::default();
        {
            let r = db.begin_read().map_err(storage)?;
            let t = r.open_table(COMMITS).map_err(storage)?;
            let from = last.saturating_sub(DEDUPE_WINDOW as u64) + 1;
            for row in t.range(from..).map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let c = decode_record(&name, k.value(), v.value())?;
                dedupe.remember(c.dedupe_id, c.stream_seq, c.subject_seq);
            }
        }
        let writer = Writer {
            db,
            name: name.clone(),
            last: handle.last.clone(),
            tail,
            dedupe,
            buf: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("eventlog-writer-{name}"))
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::Storage(format!("spawn writer thread: {e}")))?;
        *handle.writer.lock().expect("writer mutex poisoned") = Some(thread);
        Ok(handle)
    }

    /// Queues a job for the writer thread.
    fn submit(&self, job: Job) -> Result<(), LogError> {
        let guard = self.jobs.read().expect("jobs lock poisoned");
        let tx = guard.as_ref().ok_or(LogError::Closed)?;
        tx.send(job).map_err(|_| LogError::Closed)
    }

    /// Stops accepting appends, lets the writer finish what is queued, and joins it.
    fn close(&self) {
        self.jobs.write().expect("jobs lock poisoned").take();
        let thread = self.writer.lock().expect("writer mutex poisoned").take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!(stream = %self.name, "event log writer thread panicked");
            }
        }
    }

    /// Up to `max` commits from position `from` (blocking).
    fn read_stream(&self, from: u64, max: usize) -> Result<Vec<Commit>, LogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let r = self.db.begin_read().map_err(storage)?;
        let t = r.open_table(COMMITS).map_err(storage)?;
        let mut out = Vec::new();
        for row in t.range(from.max(1)..).map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            out.push(decode_record(&self.name, k.value(), v.value())?);
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Commits of `subject` from `subject_seq >= from` (blocking).
    fn read_subject(&self, subject: &Subject, from: u64) -> Result<Vec<Commit>, LogError> {
        self.read_subject_range(subject, from, usize::MAX)
    }

    /// Up to `max` commits of `subject` from `subject_seq` `from` (blocking): an index
    /// range scan, so the cost is that of the commits returned, not of the subject.
    fn read_subject_range(
        &self,
        subject: &Subject,
        from: u64,
        max: usize,
    ) -> Result<Vec<Commit>, LogError> {
        let r = self.db.begin_read().map_err(storage)?;
        let index = r.open_table(SUBJECT_INDEX).map_err(storage)?;
        let commits = r.open_table(COMMITS).map_err(storage)?;
        let s = subject.as_str();
        let mut out = Vec::new();
        for row in index
            .range((s, from.max(1))..=(s, u64::MAX))
            .map_err(storage)?
            .take(max)
        {
            let (_, pos) = row.map_err(storage)?;
            let pos = pos.value();
            let bytes = commits.get(pos).map_err(storage)?.ok_or_else(|| {
                LogError::Corrupt(format!("{s}: index points at missing commit {pos}"))
            })?;
            out.push(decode_record(&self.name, pos, bytes.value())?);
        }
        Ok(out)
    }

    /// The stored records of `subject` from `subject_seq >= from`, copied back to back
    /// into one buffer (blocking): one allocation for the whole read.
    fn read_subject_records(&self, subject: &Subject, from: u64) -> Result<CommitsRead, LogError> {
        let r = self.db.begin_read().map_err(storage)?;
        let index = r.open_table(SUBJECT_INDEX).map_err(storage)?;
        let commits = r.open_table(COMMITS).map_err(storage)?;
        let s = subject.as_str();
        let mut rows = Vec::new();
        let mut buf = Vec::new();
        for row in index
            .range((s, from.max(1))..=(s, u64::MAX))
            .map_err(storage)?
        {
            let (_, pos) = row.map_err(storage)?;
            let pos = pos.value();
            let bytes = commits.get(pos).map_err(storage)?.ok_or_else(|| {
                LogError::Corrupt(format!("{s}: index points at missing commit {pos}"))
            })?;
            buf.extend_from_slice(bytes.value());
            rows.push((pos, buf.len()));
        }
        Ok(CommitsRead::Records {
            stream: self.name.clone(),
            rows,
            buf,
        })
    }

    /// Last sequence of `subject` (blocking, a single key lookup).
    fn last_subject_seq(&self, subject: &Subject) -> Result<u64, LogError> {
        let r = self.db.begin_read().map_err(storage)?;
        let t = r.open_table(SUBJECT_INDEX).map_err(storage)?;
        last_in_index(&t, subject.as_str())
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.close();
    }
}

/// Dedupe ids of the last [`DEDUPE_WINDOW`] commits, with their original sequences.
#[derive(Default)]
struct DedupeWindow {
    ids: HashMap<String, (u64, u64)>,
    order: VecDeque<String>,
}

impl DedupeWindow {
    fn get(&self, id: &str) -> Option<(u64, u64)> {
        self.ids.get(id).copied()
    }

    fn remember(&mut self, id: String, stream_seq: u64, subject_seq: u64) {
        if id.is_empty() {
            return;
        }
        if self.order.len() >= DEDUPE_WINDOW {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id.clone(), (stream_seq, subject_seq));
        self.order.push_back(id);
    }
}

/// The state owned by a stream's writer thread.
struct Writer {
    dedupe: DedupeWindow,
    db: Arc<Database>,
    name: StreamName,
    last: watch::Sender<u64>,
    tail: Arc<Mutex<VecDeque<Arc<Commit>>>>,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl Writer {
    /// Group-commit loop: runs until every sender is dropped and the queue is drained.
    fn run(mut self, rx: std_mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
    }

    /// Applies, commits and answers one batch; leaves `batch` empty.
    fn commit_batch(&mut self, batch: &mut Vec<Job>) {
        let outcome = self.apply(batch);
        match outcome {
            Ok((results, last)) => {
                // Feed the in-memory tail, then publish, then answer: a caller that reads
                // its own write and then subscribes never waits on a stale watch.
                let mut replies = Vec::with_capacity(batch.len());
                {
                    let mut tail = self.tail.lock().expect("tail lock poisoned");
                    for (job, res) in batch.drain(..).zip(results) {
                        if let Ok(ack) = &res {
                            if !ack.duplicate {
                                self.dedupe.remember(
                                    job.dedupe_id.clone(),
                                    ack.stream_seq,
                                    ack.subject_seq,
                                );
                                if tail.len() >= TAIL_LEN {
                                    tail.pop_front();
                                }
                                tail.push_back(Arc::new(Commit {
                                    stream: self.name.clone(),
                                    stream_seq: ack.stream_seq,
                                    subject: job.subject,
                                    subject_seq: ack.subject_seq,
                                    dedupe_id: job.dedupe_id,
                                    meta: job.meta,
                                    events: job.events,
                                }));
                            }
                        }
                        replies.push((job.reply, res));
                    }
                }
                self.last.send_if_modified(|cur| {
                    let changed = *cur != last;
                    *cur = last;
                    changed
                });
                for (reply, res) in replies {
                    let _ = reply.send(res);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "event log group commit failed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Applies every job of the batch in one durable write transaction. Returns the per-job
    /// results and the stream's last position after the commit.
    fn apply(
        &mut self,
        batch: &[Job],
    ) -> Result<(Vec<Result<AppendAck, LogError>>, u64), LogError> {
        let started = std::time::Instant::now();
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        let (results, last) = self.apply_in(&txn, batch)?;
        let applied = std::time::Instant::now();
        txn.commit().map_err(storage)?;
        tracing::trace!(
            batch = batch.len(),
            last,
            apply_us = (applied - started).as_micros() as u64,
            commit_us = applied.elapsed().as_micros() as u64,
            "group commit"
        );
        Ok((results, last))
    }

    fn apply_in(
        &mut self,
        txn: &WriteTransaction,
        batch: &[Job],
    ) -> Result<(Vec<Result<AppendAck, LogError>>, u64), LogError> {
        let mut commits = txn.open_table(COMMITS).map_err(storage)?;
        let mut index = txn.open_table(SUBJECT_INDEX).map_err(storage)?;
        // Dedupe ids accepted earlier in this batch (the window learns them after commit).
        let mut batch_ids: HashMap<&str, (u64, u64)> = HashMap::new();

        let mut last = commits
            .last()
            .map_err(storage)?
            .map_or(0, |(k, _)| k.value());
        let mut results = Vec::with_capacity(batch.len());
        for job in batch {
            let dedupe_id = job.dedupe_id.as_str();
            if !dedupe_id.is_empty() {
                if let Some((stream_seq, subject_seq)) = batch_ids
                    .get(dedupe_id)
                    .copied()
                    .or_else(|| self.dedupe.get(dedupe_id))
                {
                    results.push(Ok(AppendAck {
                        stream_seq,
                        subject_seq,
                        duplicate: true,
                    }));
                    continue;
                }
            }
            let subject = job.subject.as_str();
            let actual = last_in_index(&index, subject)?;
            if let ExpectedSeq::Exactly(expected) = job.expected {
                if expected != actual {
                    results.push(Err(LogError::WrongLastSequence {
                        subject: subject.to_string(),
                        expected,
                        actual,
                    }));
                    continue;
                }
            }
            let stream_seq = last + 1;
            let subject_seq = actual + 1;
            let rec = RecordRef {
                subject: &job.subject,
                subject_seq,
                dedupe_id,
                meta: &job.meta,
                events: &job.events,
            };
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            let buf = encode_record(&rec, buf)?;
            commits
                .insert(stream_seq, buf.as_slice())
                .map_err(storage)?;
            self.buf = buf;
            index
                .insert((subject, subject_seq), stream_seq)
                .map_err(storage)?;
            if !dedupe_id.is_empty() {
                batch_ids.insert(dedupe_id, (stream_seq, subject_seq));
            }
            last = stream_seq;
            results.push(Ok(AppendAck {
                stream_seq,
                subject_seq,
                duplicate: false,
            }));
        }
        Ok((results, last))
    }
}

/// The embedded, file-backed [`EventLog`]: redb, one database per stream, group commit.
///
/// Use it as `Arc<dyn EventLog>`. [`EmbeddedLog::close`] (also run on drop) stops the writer
/// threads after they have committed what was queued, and ends every subscription.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    /// Flips to `true` on close; subscriptions watch it.
    closed_tx: watch::Sender<bool>,
}

/// State that stream opening (on a blocking thread) shares with the log.
struct Shared {
    dir: PathBuf,
    /// Streams whose database is open.
    open: RwLock<HashMap<StreamName, Arc<StreamHandle>>>,
    /// Streams found on disk at open or created since (open or not).
    known: Mutex<BTreeSet<StreamName>>,
    /// Serialises opening databases, so one file is never opened twice.
    opening: Mutex<()>,
    closed: AtomicBool,
}

impl Shared {
    fn check_open(&self) -> Result<(), LogError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(LogError::Closed)
        } else {
            Ok(())
        }
    }

    /// The open handle of `stream`, if it is open.
    fn cached(&self, stream: &StreamName) -> Option<Arc<StreamHandle>> {
        self.open
            .read()
            .expect("streams lock poisoned")
            .get(stream)
            .cloned()
    }

    fn is_known(&self, stream: &StreamName) -> bool {
        self.known
            .lock()
            .expect("known lock poisoned")
            .contains(stream)
    }

    /// Opens (or creates) `stream` and registers it (blocking). Runs to completion even if the
    /// caller that asked for it went away, so a half-opened database is never left behind.
    fn open_stream(&self, stream: &StreamName) -> Result<Arc<StreamHandle>, LogError> {
        let _opening = self.opening.lock().expect("opening lock poisoned");
        self.check_open()?;
        if let Some(h) = self.cached(stream) {
            return Ok(h);
        }
        let h = StreamHandle::open(&self.dir, stream.clone())?;
        // Register under the map lock, re-checking `closed`: close() sets the flag before it
        // drains the map, so the handle is either drained by close() or closed here.
        let mut open = self.open.write().expect("streams lock poisoned");
        if self.closed.load(Ordering::SeqCst) {
            drop(open);
            h.close();
            return Err(LogError::Closed);
        }
        open.insert(stream.clone(), h.clone());
        self.known
            .lock()
            .expect("known lock poisoned")
            .insert(stream.clone());
        Ok(h)
    }
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens the log stored in `dir` (created if missing). Every `<stream>.redb` file in it is
    /// an existing stream; databases are opened on first use.
    pub fn open(dir: &Path) -> Result<Arc<Self>, LogError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LogError::Storage(format!("create {}: {e}", dir.display())))?;
        let mut known = BTreeSet::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| LogError::Storage(format!("list {}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(storage)?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if let Some(stem) = name.strip_suffix(FILE_SUFFIX) {
                match StreamName::new(stem) {
                    Ok(stream) => {
                        known.insert(stream);
                    }
                    Err(_) => tracing::warn!(file = name, "ignoring file with invalid stream name"),
                }
            }
        }
        let (closed_tx, _) = watch::channel(false);
        Ok(Arc::new(Self {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                open: RwLock::new(HashMap::new()),
                known: Mutex::new(known),
                opening: Mutex::new(()),
                closed: AtomicBool::new(false),
            }),
            closed_tx,
        }))
    }

    /// The directory holding the stream databases.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Closes the log: refuses new appends with [`LogError::Closed`], lets each writer thread
    /// commit and answer what was already queued, joins the threads, and ends every
    /// subscription. Idempotent. Blocks for at most one group commit per stream.
    pub fn close(&self) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.closed_tx.send_replace(true);
        let handles: Vec<_> = self
            .shared
            .open
            .write()
            .expect("streams lock poisoned")
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in handles {
            h.close();
        }
    }

    /// The handle of `stream`, opening its database if needed. With `create == false`, a
    /// stream that does not exist yet gives `None` and no file is created.
    async fn handle(
        &self,
        stream: &StreamName,
        create: bool,
    ) -> Result<Option<Arc<StreamHandle>>, LogError> {
        self.shared.check_open()?;
        if let Some(h) = self.shared.cached(stream) {
            return Ok(Some(h));
        }
        if !create && !self.shared.is_known(stream) {
            return Ok(None);
        }
        let shared = self.shared.clone();
        let stream = stream.clone();
        tokio::task::spawn_blocking(move || shared.open_stream(&stream))
            .await
            .map_err(storage)?
            .map(Some)
    }

    /// Runs a blocking read on a stream handle off the async threads.
    async fn blocking<T, F>(h: Arc<StreamHandle>, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&StreamHandle) -> Result<T, LogError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || f(&h))
            .await
            .map_err(storage)?
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, req: AppendRequest) -> Result<AppendAck, LogError> {
        self.submit(req).await?.await
    }

    fn single_writer(&self) -> bool {
        true
    }

    async fn submit(&self, req: AppendRequest) -> Result<crate::PendingAck, LogError> {
        if req.events.is_empty() {
            return Err(LogError::EmptyCommit);
        }
        let h = self
            .handle(&req.subject.stream(), true)
            .await?
            .ok_or(LogError::Closed)?;
        let events = req
            .events
            .into_iter()
            .map(|e| StoredEvent {
                event_id: Uuid::now_v7(),
                event_type: e.event_type,
                version: e.version,
                payload: e.payload,
            })
            .collect();
        let (reply, ack) = oneshot::channel();
        h.submit(Job {
            subject: req.subject,
            expected: req.expected,
            dedupe_id: req.dedupe_id,
            meta: req.meta,
            events,
            reply,
        })?;
        Ok(crate::PendingAck::new(async move {
            ack.await.map_err(|_| LogError::Closed)?
        }))
    }

    async fn read_subject(&self, subject: &Subject, from: u64) -> Result<Vec<Commit>, LogError> {
        let Some(h) = self.handle(&subject.stream(), false).await? else {
            return Ok(Vec::new());
        };
        let subject = subject.clone();
        Self::blocking(h, move |h| h.read_subject(&subject, from)).await
    }

    async fn read_subject_range(
        &self,
        subject: &Subject,
        from: u64,
        _after: u64,
        max: usize,
    ) -> Result<Vec<Commit>, LogError> {
        let Some(h) = self.handle(&subject.stream(), false).await? else {
            return Ok(Vec::new());
        };
        let subject = subject.clone();
        Self::blocking(h, move |h| h.read_subject_range(&subject, from, max)).await
    }

    async fn read_subject_records(
        &self,
        subject: &Subject,
        from: u64,
    ) -> Result<CommitsRead, LogError> {
        let Some(h) = self.handle(&subject.stream(), false).await? else {
            return Ok(CommitsRead::Owned(Vec::new()));
        };
        let subject = subject.clone();
        Self::blocking(h, move |h| h.read_subject_records(&subject, from)).await
    }

    async fn last_subject_seq(&self, subject: &Subject) -> Result<u64, LogError> {
        match self.handle(&subject.stream(), false).await? {
            // A single key lookup on a cached page: cheap enough to run inline.
            Some(h) => h.last_subject_seq(subject),
            None => Ok(0),
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        max: usize,
    ) -> Result<Vec<Commit>, LogError> {
        let Some(h) = self.handle(stream, false).await? else {
            return Ok(Vec::new());
        };
        Self::blocking(h, move |h| h.read_stream(from, max)).await
    }

    async fn last_stream_seq(&self, stream: &StreamName) -> Result<u64, LogError> {
        match self.handle(stream, false).await? {
            Some(h) => Ok(*h.last.borrow()),
            None => Ok(0),
        }
    }

    /// Subscribing to a stream that does not exist yet creates it (empty).
    async fn subscribe(&self, stream: &StreamName, from: u64) -> Result<Subscription, LogError> {
        let h = self.handle(stream, true).await?.ok_or(LogError::Closed)?;
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
        let closed = self.closed_tx.subscribe();
        tokio::spawn(run_subscription(h, from.max(1), tx, closed));
        Ok(Subscription::new(rx))
    }

    async fn streams(&self) -> Result<Vec<StreamName>, LogError> {
        self.shared.check_open()?;
        let known = self.shared.known.lock().expect("known lock poisoned");
        Ok(known.iter().cloned().collect())
    }

    async fn ensure_stream(&self, stream: &StreamName) -> Result<(), LogError> {
        self.handle(stream, true).await.map(|_| ())
    }
}

/// Feeds one subscription: catch up from `next`, then follow the position watch. Ends when the
/// receiver is dropped, the log is closed, or a read fails (after sending the error).
async fn run_subscription(
    h: Arc<StreamHandle>,
    mut next: u64,
    tx: mpsc::Sender<Result<Commit, LogError>>,
    mut closed: watch::Receiver<bool>,
) {
    let mut last = h.last.subscribe();
    loop {
        if *closed.borrow() {
            return;
        }
        let read = match h.tail_from(next, SUBSCRIPTION_READ_BATCH) {
            Some(batch) => Ok(batch),
            None => {
                let h = h.clone();
                tokio::task::spawn_blocking(move || h.read_stream(next, SUBSCRIPTION_READ_BATCH))
                    .await
                    .map_err(storage)
                    .and_then(|r| r)
            }
        };
        let batch = match read {
            Ok(batch) => batch,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if batch.is_empty() {
            // Caught up: wait until a commit at or after `next` is published.
            tokio::select! {
                r = last.wait_for(|&p| p >= next) => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = closed.wait_for(|&c| c) => return,
                _ = tx.closed() => return,
            }
            continue;
        }
        for commit in batch {
            next = commit.stream_seq + 1;
            tokio::select! {
                r = tx.send(Ok(commit)) => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = closed.wait_for(|&c| c) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, NewEvent};

    fn sample_commit() -> Commit {
        let cell = StreamName::cell("cell1").unwrap();
        Commit {
            stream: cell.clone(),
            stream_seq: 42,
            subject: Subject::cell(&cell, crate::SubjectKind::Instance, "abc").unwrap(),
            subject_seq: 7,
            dedupe_id: "cause-1".into(),
            meta: Metadata {
                correlation_id: "req-1".into(),
                causation_id: "evt-1".into(),
                actor: Actor {
                    user: "alice".into(),
                    project: "p1".into(),
                    roles: vec!["member".into(), "reader".into()],
                },
                occurred_at: 1_700_000_000_000_000,
            },
            events: vec![
                StoredEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "instance.paused".into(),
                    version: 2,
                    payload: vec![1, 2, 3],
                },
                StoredEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "instance.noted".into(),
                    version: 1,
                    payload: vec![],
                },
            ],
        }
    }

    #[test]
    fn commit_postcard_roundtrip() {
        let c = sample_commit();
        let bytes = postcard::to_allocvec(&c).unwrap();
        let back: Commit = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, c);
        let e = NewEvent {
            event_type: "x".into(),
            version: 3,
            payload: vec![9],
        };
        let back: NewEvent = postcard::from_bytes(&postcard::to_allocvec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn record_roundtrip_restores_position_and_stream() {
        let c = sample_commit();
        let rec = RecordRef {
            subject: &c.subject,
            subject_seq: c.subject_seq,
            dedupe_id: &c.dedupe_id,
            meta: &c.meta,
            events: &c.events,
        };
        let bytes = encode_record(&rec, Vec::new()).unwrap();
        assert_eq!(bytes[0], RECORD_FORMAT);
        let back = decode_record(&c.stream, c.stream_seq, &bytes).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn record_decode_rejects_bad_input() {
        let s = StreamName::api();
        assert!(matches!(
            decode_record(&s, 1, &[]),
            Err(LogError::Corrupt(_))
        ));
        assert!(matches!(
            decode_record(&s, 1, &[99, 0]),
            Err(LogError::Corrupt(_))
        ));
        assert!(matches!(
            decode_record(&s, 1, &[RECORD_FORMAT, 0xff]),
            Err(LogError::Corrupt(_))
        ));
    }

    #[test]
    fn invalid_subject_cannot_be_decoded() {
        let bytes = postcard::to_allocvec("stratus.api.flavor.a b").unwrap();
        assert!(postcard::from_bytes::<Subject>(&bytes).is_err());
        let ok = postcard::to_allocvec("stratus.api.flavor.ab").unwrap();
        assert!(postcard::from_bytes::<Subject>(&ok).is_ok());
    }
}
