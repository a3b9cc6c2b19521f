//! Commits read for inspection, borrowed instead of owned.
//!
//! Audit readers (an instance's whole history over HTTP, `replay history`) read thousands
//! of commits of one subject only to look at them once. Decoding each into an owned
//! [`Commit`] costs about ten allocations per commit (subject, dedupe id, request ids,
//! actor, roles, event types, payloads), more than the store's read itself. A
//! [`CommitsRead`] keeps the stored records in one buffer and hands out [`CommitRef`]s
//! that borrow their strings and payloads from it.
//!
//! # Invariants
//!
//! - A [`CommitRef`] carries the same values as the [`Commit`] the same position would
//!   decode to ([`CommitsRead::Owned`] is built from those commits; the embedded store's
//!   records are decoded with the same field order as its encoder, checked by a test).
//! - Subjects are not re-validated: a record was validated when it was appended, and it
//!   was found through its subject's index.

use serde::Deserialize;
use uuid::Uuid;

use crate::{Commit, LogError, StreamName};

/// Who caused a commit, borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ActorRef<'a> {
    /// User id or service name.
    pub user: &'a str,
    /// Project id of the caller.
    pub project: &'a str,
    /// Roles of the caller.
    #[serde(borrow)]
    pub roles: Vec<&'a str>,
}

/// A commit's metadata, borrowed (field order of [`crate::Metadata`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MetaRef<'a> {
    /// The request id that started the chain of work.
    pub correlation_id: &'a str,
    /// The event or request id that directly caused the commit.
    pub causation_id: &'a str,
    /// Who caused it.
    #[serde(borrow)]
    pub actor: ActorRef<'a>,
    /// Wall-clock time of the commit, µs since the Unix epoch.
    pub occurred_at: i64,
}

/// An event of a commit, borrowed (field order of [`crate::StoredEvent`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventRef<'a> {
    /// Id the log gave the event.
    pub event_id: Uuid,
    /// Stable type name.
    pub event_type: &'a str,
    /// Payload schema version.
    pub version: u16,
    /// Encoded payload (postcard).
    pub payload: &'a [u8],
}

/// A commit, borrowed from a [`CommitsRead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRef<'a> {
    /// Stream holding the commit.
    pub stream: &'a StreamName,
    /// Position in the stream.
    pub stream_seq: u64,
    /// Subject of the commit.
    pub subject: &'a str,
    /// Position on the subject.
    pub subject_seq: u64,
    /// Idempotency key it was written with.
    pub dedupe_id: &'a str,
    /// Metadata shared by its events.
    pub meta: MetaRef<'a>,
    /// Its events, in order.
    pub events: Vec<EventRef<'a>>,
}

/// The stored record of the embedded store, borrowed: the field order of its encoder.
#[derive(Deserialize)]
struct RecordBorrowed<'a> {
    subject: &'a str,
    subject_seq: u64,
    dedupe_id: &'a str,
    #[serde(borrow)]
    meta: MetaRef<'a>,
    #[serde(borrow)]
    events: Vec<EventRef<'a>>,
}

/// Commits of one read, oldest first, to be looked at through [`CommitsRead::iter`].
#[derive(Debug, Clone)]
pub enum CommitsRead {
    /// Stored records of the embedded store, back to back in `buf`: `rows` holds each
    /// one's stream position and end offset in `buf`.
    Records {
        /// The stream they were read from.
        stream: StreamName,
        /// `(stream_seq, end)` per record; a record starts where the previous ends.
        rows: Vec<(u64, usize)>,
        /// The records (format byte and postcard body each).
        buf: Vec<u8>,
    },
    /// Commits a backend decoded already.
    Owned(Vec<Commit>),
}

impl CommitsRead {
    /// Number of commits.
    pub fn len(&self) -> usize {
        match self {
            CommitsRead::Records { rows, .. } => rows.len(),
            CommitsRead::Owned(c) => c.len(),
        }
    }

    /// True when nothing was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The commits, borrowed; a record that does not decode is [`LogError::Corrupt`].
    pub fn iter(&self) -> impl Iterator<Item = Result<CommitRef<'_>, LogError>> + '_ {
        (0..self.len()).map(move |n| self.get(n))
    }

    /// Commit `n` (0-based).
    fn get(&self, n: usize) -> Result<CommitRef<'_>, LogError> {
        match self {
            CommitsRead::Owned(c) => Ok(borrow(&c[n])),
            CommitsRead::Records { stream, rows, buf } => {
                let start = if n == 0 { 0 } else { rows[n - 1].1 };
                let (stream_seq, end) = rows[n];
                decode_borrowed(stream, stream_seq, &buf[start..end])
            }
        }
    }
}

/// An owned commit seen as a [`CommitRef`].
pub fn borrow(c: &Commit) -> CommitRef<'_> {
    CommitRef {
        stream: &c.stream,
        stream_seq: c.stream_seq,
        subject: c.subject.as_str(),
        subject_seq: c.subject_seq,
        dedupe_id: &c.dedupe_id,
        meta: MetaRef {
            correlation_id: &c.meta.correlation_id,
            causation_id: &c.meta.causation_id,
            actor: ActorRef {
                user: &c.meta.actor.user,
                project: &c.meta.actor.project,
                roles: c.meta.actor.roles.iter().map(String::as_str).collect(),
            },
            occurred_at: c.meta.occurred_at,
        },
        events: c
            .events
            .iter()
            .map(|e| EventRef {
                event_id: e.event_id,
                event_type: &e.event_type,
                version: e.version,
                payload: &e.payload,
            })
            .collect(),
    }
}

/// Decodes one stored record of the embedded store without copying its fields.
pub(crate) fn decode_borrowed<'a>(
    stream: &'a StreamName,
    stream_seq: u64,
    bytes: &'a [u8],
) -> Result<CommitRef<'a>, LogError> {
    let body = crate::embedded::record_body(stream, stream_seq, bytes)?;
    let r: RecordBorrowed<'a> = postcard::from_bytes(body)
        .map_err(|e| LogError::Corrupt(format!("commit {stream}/{stream_seq}: {e}")))?;
    Ok(CommitRef {
        stream,
        stream_seq,
        subject: r.subject,
        subject_seq: r.subject_seq,
        dedupe_id: r.dedupe_id,
        meta: r.meta,
        events: r.events,
    })
}
