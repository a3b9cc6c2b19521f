//! The Stratus event log: the single source of truth.
//!
//! A log is a set of *streams* (`api`, `cell0`, `cell1`, ...). A stream is an ordered
//! sequence of *commits*; each commit belongs to exactly one *subject* (one aggregate,
//! e.g. `stratus.cell.cell1.instance.<uuid>`) and carries one or more events written
//! atomically (one message per aggregate commit, as on JetStream).
//!
//! Invariants every backend upholds (checked by [`conformance`]):
//! - `stream_seq` starts at 1 and increases by exactly 1 per commit in a stream, with no gaps;
//! - `subject_seq` starts at 1 and increases by exactly 1 per commit on a subject;
//! - an append with [`ExpectedSeq::Exactly`] that does not match the subject's last
//!   sequence is refused with [`LogError::WrongLastSequence`] and writes nothing;
//! - an append whose `dedupe_id` was already written is acknowledged with the original
//!   sequences and `duplicate: true`, and writes nothing;
//! - an acknowledged append is durable: it survives a crash (SIGKILL) of the process;
//! - a commit is all-or-nothing: after a crash no commit is partially visible;
//! - a subscription from position `p` yields every commit with `stream_seq >= p` exactly
//!   once, in order: first the stored ones, then live ones, with no gap and no duplicate.
//! - a durable consumer (where the backend has them) delivers every commit from its start
//!   position at least once to one of the processes sharing it; a commit is delivered
//!   again until it is acknowledged, and never more than `max_ack_pending` commits are
//!   outstanding.

pub mod checkpoint;
pub mod conformance;
pub mod embedded;
pub mod heartbeat;
pub mod jetstream;
pub mod records;
pub mod subject;
pub mod sync;
pub mod testing;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use checkpoint::{CheckpointStore, EmbeddedCheckpoints};
pub use embedded::EmbeddedLog;
pub use heartbeat::{Beat, Heartbeats, MemoryHeartbeats};
pub use jetstream::{JetStreamLog, JetStreamOptions};
pub use records::{ActorRef, CommitRef, CommitsRead, EventRef, MetaRef};
pub use subject::{StreamName, Subject, SubjectKind};
pub use sync::{LockExt, RwLockExt};

/// Who caused a commit (the authenticated caller, or a service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Actor {
    /// User id or service name (e.g. `scheduler`).
    pub user: String,
    /// Project id of the caller.
    pub project: String,
    /// Roles of the caller (`admin`, `member`, `reader`, `service`).
    pub roles: Vec<String>,
}

/// Metadata shared by all events of one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Metadata {
    /// The request id (`req-<uuid>`) that started the chain of work.
    pub correlation_id: String,
    /// The event id or request id that directly caused this commit.
    pub causation_id: String,
    /// Who caused it.
    pub actor: Actor,
    /// Wall-clock time of the commit, microseconds since the Unix epoch.
    pub occurred_at: i64,
}

/// An event to be appended: type name, explicit version and postcard payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Stable type name, e.g. `instance.paused`.
    pub event_type: String,
    /// Version of the payload schema for this type.
    pub version: u16,
    /// Encoded payload (postcard).
    pub payload: Vec<u8>,
}

/// An event as stored, with the id the log gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// UUIDv7, assigned at append.
    pub event_id: Uuid,
    pub event_type: String,
    pub version: u16,
    pub payload: Vec<u8>,
}

/// What the subject's last sequence must be for an append to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedSeq {
    /// No check.
    Any,
    /// The subject's last sequence must be exactly this (0 = the subject has no commit yet).
    Exactly(u64),
}

/// One append: one commit of one or more events to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// Target subject; its stream is derived from it.
    pub subject: Subject,
    /// Optimistic concurrency check.
    pub expected: ExpectedSeq,
    /// Idempotency key derived from the cause (`Nats-Msg-Id` on JetStream).
    pub dedupe_id: String,
    pub meta: Metadata,
    /// The events, at least one.
    pub events: Vec<NewEvent>,
}

/// Acknowledgement of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    /// Position of the commit in its stream.
    pub stream_seq: u64,
    /// Sequence of the commit on its subject.
    pub subject_seq: u64,
    /// True when the dedupe id had already been written; nothing new was written.
    pub duplicate: bool,
}

/// A stored commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Stream holding the commit.
    pub stream: StreamName,
    /// Position in the stream (1-based).
    pub stream_seq: u64,
    /// Subject (aggregate) of the commit.
    pub subject: Subject,
    /// Position on the subject (1-based).
    pub subject_seq: u64,
    /// Idempotency key it was written with.
    pub dedupe_id: String,
    pub meta: Metadata,
    /// Events, in order.
    pub events: Vec<StoredEvent>,
}

/// The one error type of the event log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// OCC check failed.
    #[error("wrong last sequence on {subject}: expected {expected}, actual {actual}")]
    WrongLastSequence {
        /// Subject appended to.
        subject: String,
        /// Sequence the caller expected.
        expected: u64,
        /// Actual last sequence.
        actual: u64,
    },
    /// A subject or stream name is not valid.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// An append with no events.
    #[error("empty commit")]
    EmptyCommit,
    /// Storage failure.
    #[error("storage error: {0}")]
    Storage(String),
    /// Stored data could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The log was closed.
    #[error("event log closed")]
    Closed,
}

/// The acknowledgement of a submitted append, still to come.
pub struct PendingAck(
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<AppendAck, LogError>> + Send>>,
);

impl PendingAck {
    /// Wraps any future of an acknowledgement.
    pub fn new(
        f: impl std::future::Future<Output = Result<AppendAck, LogError>> + Send + 'static,
    ) -> Self {
        PendingAck(Box::pin(f))
    }
}

impl std::future::Future for PendingAck {
    type Output = Result<AppendAck, LogError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for PendingAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingAck")
    }
}

/// A live subscription to one stream: yields commits in order, exactly once.
pub struct Subscription {
    rx: tokio::sync::mpsc::Receiver<Result<Commit, LogError>>,
}

impl Subscription {
    /// Wraps a channel fed by a backend task.
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<Commit, LogError>>) -> Self {
        Self { rx }
    }

    /// Next commit; `None` when the log is closed.
    pub async fn next(&mut self) -> Option<Result<Commit, LogError>> {
        self.rx.recv().await
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Subscription")
    }
}

/// Settings of a durable consumer (see [`EventLog::durable_consumer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// Most commits delivered and not yet acknowledged; delivery pauses at this bound.
    pub max_ack_pending: usize,
    /// A delivered commit not acknowledged within this time is delivered again.
    pub ack_wait: std::time::Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            max_ack_pending: 1024,
            ack_wait: std::time::Duration::from_secs(30),
        }
    }
}

/// How a backend acknowledges one delivery of a durable consumer.
#[async_trait]
pub trait Acknowledge: Send + Sync {
    /// The commit was handled: never deliver it to this consumer again.
    async fn ack(&self) -> Result<(), LogError>;
    /// The commit could not be handled now: deliver it again after `delay`.
    async fn nak(&self, delay: std::time::Duration) -> Result<(), LogError>;
}

/// One commit delivered by a durable consumer. Acknowledge it once handled; one that is
/// neither acked nor naked is delivered again after the consumer's `ack_wait`.
pub struct Delivery {
    pub commit: Commit,
    /// How many times it has been delivered to this consumer (1 = first time).
    pub delivered: u64,
    acker: Box<dyn Acknowledge>,
}

impl Delivery {
    /// A delivery acknowledged through `acker`.
    pub fn new(commit: Commit, delivered: u64, acker: Box<dyn Acknowledge>) -> Self {
        Delivery {
            commit,
            delivered,
            acker,
        }
    }

    /// Acknowledges the commit as handled.
    pub async fn ack(self) -> Result<(), LogError> {
        self.acker.ack().await
    }

    /// Asks for the commit again after `delay`.
    pub async fn nak(self, delay: std::time::Duration) -> Result<(), LogError> {
        self.acker.nak(delay).await
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("stream", &self.commit.stream)
            .field("stream_seq", &self.commit.stream_seq)
            .field("delivered", &self.delivered)
            .finish()
    }
}

/// A durable consumer: deliveries shared by every process that opened the consumer
/// under the same name (each commit goes to one of them), resumed after restarts from
/// the first unacknowledged commit. Errors are reported and the backend keeps
/// delivering (it recreates its pulls after server restarts or failovers).
pub struct DurableConsumer {
    rx: tokio::sync::mpsc::Receiver<Result<Delivery, LogError>>,
}

impl DurableConsumer {
    /// Wraps a channel fed by a backend task.
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<Delivery, LogError>>) -> Self {
        Self { rx }
    }

    /// Next delivery; `None` when the log is closed.
    pub async fn next(&mut self) -> Option<Result<Delivery, LogError>> {
        self.rx.recv().await
    }
}

impl fmt::Debug for DurableConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DurableConsumer")
    }
}

/// The event log abstraction every backend implements.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends one commit atomically, with OCC and dedupe.
    async fn append(&self, req: AppendRequest) -> Result<AppendAck, LogError>;

    /// Submits an append and returns once it is queued, with a future of its
    /// acknowledgement (pipelining). Appends submitted one after the other by the same
    /// caller are applied in submission order, so a later one may expect the sequence
    /// an earlier one will produce; if the earlier one fails, the later one fails its
    /// OCC check. Backends that cannot pipeline append fully here (the default).
    async fn submit(&self, req: AppendRequest) -> Result<PendingAck, LogError> {
        let r = self.append(req).await;
        Ok(PendingAck::new(async move { r }))
    }

    /// True when this process is the only writer of the log (the embedded backend holds
    /// an exclusive file lock). Only then may a caller pipeline appends to one subject
    /// whose decisions depend on each other: with other writers, an earlier append can
    /// fail because someone else took its sequence, and a later one would then pass its
    /// OCC check on top of events it never saw.
    fn single_writer(&self) -> bool {
        false
    }

    /// Commits of `subject` with `subject_seq >= from` (1-based), oldest first.
    async fn read_subject(&self, subject: &Subject, from: u64) -> Result<Vec<Commit>, LogError>;

    /// Up to `max` commits of `subject` with `subject_seq >= from` (1-based), oldest
    /// first: a bounded read from the middle of a subject (folding forward from a
    /// snapshot). `after` is the stream position of commit `from - 1` of the subject
    /// when the caller knows it (0 otherwise): backends that find a subject's commits by
    /// scanning its stream (JetStream) start the scan just after it instead of at the
    /// beginning. A wrong `after` is detected (the first commit returned is not `from`)
    /// and reported as [`LogError::Corrupt`], never silently skipped.
    async fn read_subject_range(
        &self,
        subject: &Subject,
        from: u64,
        after: u64,
        max: usize,
    ) -> Result<Vec<Commit>, LogError> {
        let _ = after;
        let mut out = self.read_subject(subject, from).await?;
        out.truncate(max);
        Ok(out)
    }

    /// Commits of `subject` with `subject_seq >= from`, oldest first, for looking at
    /// once ([`CommitsRead::iter`]) rather than keeping: backends that can hand out
    /// their stored records skip the owned decode (see [`records`]).
    async fn read_subject_records(
        &self,
        subject: &Subject,
        from: u64,
    ) -> Result<CommitsRead, LogError> {
        Ok(CommitsRead::Owned(self.read_subject(subject, from).await?))
    }

    /// Last sequence of a subject (0 when it has no commit).
    async fn last_subject_seq(&self, subject: &Subject) -> Result<u64, LogError>;

    /// Up to `max` commits of `stream` with `stream_seq >= from`, oldest first.
    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        max: usize,
    ) -> Result<Vec<Commit>, LogError>;

    /// Last position of a stream (0 when empty or unknown).
    async fn last_stream_seq(&self, stream: &StreamName) -> Result<u64, LogError>;

    /// Subscribes to `stream` from position `from`: catch-up, then live.
    async fn subscribe(&self, stream: &StreamName, from: u64) -> Result<Subscription, LogError>;

    /// All streams that exist.
    async fn streams(&self) -> Result<Vec<StreamName>, LogError>;

    /// Creates a stream if it does not exist (idempotent).
    async fn ensure_stream(&self, stream: &StreamName) -> Result<(), LogError>;

    /// Opens (creating it on first use) the durable consumer `name` of `stream`, shared by
    /// every caller using the same name, possibly in other processes. A consumer created
    /// now starts at stream position `start`; an existing one resumes from its first
    /// unacknowledged commit. Backends without server-side consumers return `None`
    /// (the embedded store: one process, callers keep checkpoints instead).
    async fn durable_consumer(
        &self,
        _stream: &StreamName,
        _name: &str,
        _start: u64,
        _opts: ConsumerOptions,
    ) -> Result<Option<DurableConsumer>, LogError> {
        Ok(None)
    }
}

/// Microseconds since the Unix epoch, from the system clock (I/O layer only).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
