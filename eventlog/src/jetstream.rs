//! The NATS JetStream backend of [`EventLog`].
//!
//! # Streams
//!
//! | Stratus stream | JetStream stream      | subjects             |
//! |----------------|-----------------------|----------------------|
//! | `api`          | `<PREFIX>_API`        | `stratus.api.>`      |
//! | cell `x`       | `<PREFIX>_CELL_X`     | `stratus.cell.x.>`   |
//!
//! `<PREFIX>` is [`JetStreamOptions::stream_prefix`] (`STRATUS` by default). A stream is
//! created (or verified) by [`EventLog::ensure_stream`], by the first append to one of its
//! subjects and by a subscription. It is created with file storage, the configured number
//! of replicas and duplicate window, retention `limits` with *no* limit (messages, bytes,
//! age, messages per subject are all unlimited), `deny_delete` and `deny_purge`. An existing
//! stream whose configuration could drop events (a limit, memory storage, a retention other
//! than `limits`, rollups allowed) is refused with [`LogError::Storage`]: events are the
//! source of truth, so starting on such a stream would be silent data loss later.
//!
//! # Replicas
//!
//! An existing stream with *fewer* replicas than [`JetStreamOptions::replicas`] is raised
//! to that count (a stream update; the durable consumers, which take the stream's count,
//! follow), the change is logged, and the stream is left alone until it has elected its
//! leader and its new copies are current (up to 30 s). If the cluster refuses (too few nodes up to place the
//! new copies), ensuring the stream fails with an error naming the fix, and so does the
//! start of the process: running on fewer copies than asked would be the silent loss of
//! redundancy the option exists to prevent. A stream
//! with *more* replicas is left alone: replicas default to 1 in every command, and a
//! process started without the option must not strip a cluster's copies (lowering them is
//! an operator's `nats stream edit`). Asking for more than one replica of a server that is
//! not part of a cluster is refused at connect: nats-server 2.9 refuses to create such a
//! stream, and accepts the update of an existing one, which it then cannot load at its
//! next restart (the stream disappears). A stream left with one replica on a cluster is
//! logged as a warning: a single node's loss stops it.
//!
//! Subjects of different prefixes overlap (every prefix wants `stratus.api.>`), and JetStream
//! refuses two streams with overlapping subjects: one server (or account) holds one Stratus
//! log. The prefix only names the streams.
//!
//! # Messages
//!
//! One commit is one message on the commit's subject. The payload is the same commit record
//! as the embedded store's: format byte [`RECORD_FORMAT`](crate::embedded::RECORD_FORMAT), then the postcard encoding of
//! subject, subject_seq, dedupe_id, metadata and events. The stream sequence of the message
//! is the commit's `stream_seq`. Headers (so consumers can route and filter without decoding):
//!
//! | header                                 | value                                       |
//! |----------------------------------------|---------------------------------------------|
//! | `Nats-Msg-Id`                          | the dedupe id (absent when empty)           |
//! | `Nats-Expected-Last-Subject-Sequence`  | OCC, see below (always present)             |
//! | `Stratus-Subject-Seq`                  | the commit's `subject_seq`                  |
//! | `Stratus-Event-Types`                  | comma-separated event types, in order       |
//! | `Stratus-Correlation-Id`               | `meta.correlation_id` (when header-safe)    |
//!
//! # subject_seq and OCC
//!
//! JetStream has no per-subject counter: its OCC header
//! `Nats-Expected-Last-Subject-Sequence` names the *stream* sequence of the subject's last
//! message (0 = the subject has no message). Stratus needs per-subject sequences 1, 2, 3...
//! They are kept by this invariant:
//!
//! > every message carries `Stratus-Subject-Seq` = (that header of the subject's previous
//! > message) + 1, or 1 for a subject's first message.
//!
//! It holds because **every** append (also [`ExpectedSeq::Any`]) is published with the
//! expected-last-subject-sequence header set to the stream sequence `s` of a message `M`
//! whose subject_seq `m` we know, and with `Stratus-Subject-Seq = m + 1` (or with 0 and 1
//! for an empty subject). The server accepts it only if `M` is still the subject's last
//! message, so `m + 1` is exactly right. The pair `(m, s)` comes from a per-subject cache
//! filled by our own acks and reads (a fact "the message at stream seq `s` has subject_seq
//! `m`" never changes, only "it is the last" can go stale, and that part the server checks),
//! or from the server: the last message of the subject (`STREAM.MSG.GET` with
//! `last_by_subj`, answered by the stream leader) and its `Stratus-Subject-Seq` header.
//!
//! - `Exactly(0)`: publish with expected 0.
//! - `Exactly(n)`: if the cache says the last is `(n, s)` publish with `s`; otherwise read the
//!   last message from the server; if it is `(n, s)` publish with `s`; if not, the append is
//!   still published, with an expected sequence no message can have (`i64::MAX`), because
//!   JetStream checks the dedupe id *before* the OCC header: a repeated dedupe id must be
//!   acknowledged as a duplicate even when its expectation is stale.
//! - `Any`: publish on top of the last known `(m, s)`; when the server refuses (another
//!   writer was faster) re-read the last message and try again (bounded).
//!
//! When the server refuses with error 10071 (wrong last sequence), the subject's last message
//! is read to report `actual` as a subject_seq in [`LogError::WrongLastSequence`]. A duplicate
//! ack carries the original stream sequence; the original message is read by that sequence
//! to report its subject_seq. Appends of one subject are serialised inside the process
//! (striped locks), so in-process writers queue instead of fighting over OCC; other
//! processes are handled by the server's check. `single_writer` is false.
//!
//! # Reads
//!
//! `read_subject` reads the subject's last message (`STREAM.MSG.GET`), then, unless the
//! range is only that message, an ephemeral pull consumer filtered on the subject up to that
//! message's stream sequence. `read_stream` asks the stream info for the last sequence and
//! reads `from..=min(last, from + max - 1)` with an ephemeral consumer starting at `from`.
//! Consumers are in memory, R1, without acks, and deleted after the read.
//!
//! `subscribe` runs an ephemeral pull consumer (R1, memory, no acks) from `from` in a task
//! that forwards commits in order. The task checks that stream sequences follow each
//! other: an earlier one is skipped, a later one (a message lost in transit) makes it
//! re-create the consumer from the next expected position. So do a consumer error, two
//! missed 1 s heartbeats (the consumer's node died), a reconnection, and an idle
//! subscription whose stream holds more than it got (checked after 3 s of quiet). So
//! delivery has no gap and no duplicate, and resumes within seconds of a failover.
//!
//! # Durable consumers
//!
//! [`EventLog::durable_consumer`] creates (or finds) a durable pull consumer named after
//! the caller's name (characters other than `[A-Za-z0-9_-]` replaced, plus a hash),
//! explicit acks, the given `max_ack_pending` and `ack_wait`, unlimited deliveries,
//! replicas as the stream. A task pulls with 2 s heartbeats and pulls again after any
//! failure; each message becomes a [`Delivery`] acked or naked by the caller. An existing
//! consumer without explicit acks is refused.
//!
//! # Heartbeats
//!
//! [`Heartbeats`] on JetStream: stream `<PREFIX>_HEARTBEATS`, subjects
//! `stratus.hb.<service>.<id>` (tokens encoded as in [`Subject::token`]), one message per
//! subject, file storage, a day of age at most. `beats` reads the last message of every
//! subject with an ephemeral consumer up to the stream's last sequence; the beat time is
//! the server's timestamp of the message.
//!
//! # Riding through failures
//!
//! Appends, reads of a subject's last message and of a stream's last sequence, and the
//! list of streams give the server 2 s to answer, then ask again (the same `Nats-Msg-Id`, so a publish that landed
//! is acknowledged as a duplicate), for up to ~20 s: a leader election or a restarted
//! server delays requests instead of failing them, and they go through within about 2 s
//! of the new leader. Consumer creation for reads is retried the same way.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{self, AckPolicy, DeliverPolicy},
    context::{CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind},
    stream::{self as js_stream, DiscardPolicy, RetentionPolicy, StorageType},
    ErrorCode,
};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::embedded::{decode_record, encode_record, RecordRef};
use crate::heartbeat::{Beat, Heartbeats};
use crate::{
    Acknowledge, AppendAck, AppendRequest, Commit, ConsumerOptions, Delivery, DurableConsumer,
    EventLog, ExpectedSeq, LogError, StoredEvent, StreamName, Subject, Subscription,
};

/// Header carrying the commit's subject sequence.
pub const HEADER_SUBJECT_SEQ: &str = "Stratus-Subject-Seq";
/// Header carrying the commit's event types, comma-separated.
pub const HEADER_EVENT_TYPES: &str = "Stratus-Event-Types";
/// Header carrying the commit's correlation id.
pub const HEADER_CORRELATION_ID: &str = "Stratus-Correlation-Id";
const HEADER_MSG_ID: &str = "Nats-Msg-Id";
const HEADER_EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";

/// An expected stream sequence no message can have: makes the server refuse the OCC check
/// (after it has checked the dedupe id).
const IMPOSSIBLE_SEQ: u64 = i64::MAX as u64;

/// Number of striped per-subject append locks: a lock is held for a whole publish round
/// trip, so unrelated subjects sharing a stripe would wait for each other.
const LOCK_STRIPES: usize = 4096;

/// Most subjects whose last known position is cached (the cache is cleared beyond that).
const CACHE_MAX: usize = 100_000;

/// Attempts of an `ExpectedSeq::Any` append against other writers.
const ANY_ATTEMPTS: usize = 64;

/// Capacity of a subscription's channel.
const SUBSCRIPTION_CAPACITY: usize = 1024;

/// Longest a bounded read (one `read_subject` / `read_stream`) may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeout of JetStream API requests and publish acks.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of a [`JetStreamLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamOptions {
    /// Replicas of each stream: 1 (single server) or 3 (cluster).
    pub replicas: usize,
    /// JetStream duplicate window (how long a dedupe id is remembered).
    pub duplicate_window: Duration,
    /// Prefix of JetStream stream names (`<PREFIX>_API`, `<PREFIX>_CELL_<X>`).
    pub stream_prefix: String,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            stream_prefix: "STRATUS".into(),
        }
    }
}

/// The embedded store's record encoding, in a fresh buffer (one format for both backends).
fn encode_record_new(rec: &RecordRef<'_>) -> Result<Vec<u8>, LogError> {
    encode_record(rec, Vec::new())
}

/// Decodes a message into a commit, checking that headers and record agree.
fn decode_message(
    stream: &StreamName,
    stream_seq: u64,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<Commit, LogError> {
    let c = decode_record(stream, stream_seq, payload)?;
    if c.subject.as_str() != subject {
        return Err(LogError::Corrupt(format!(
            "commit {stream}/{stream_seq}: record names {} but message subject is {subject}",
            c.subject
        )));
    }
    if let Some(h) = header_subject_seq(headers) {
        if h != c.subject_seq {
            return Err(LogError::Corrupt(format!(
                "commit {stream}/{stream_seq}: header subject_seq {h} != record {}",
                c.subject_seq
            )));
        }
    }
    Ok(c)
}

fn header_subject_seq(headers: Option<&HeaderMap>) -> Option<u64> {
    headers?.get(HEADER_SUBJECT_SEQ)?.as_str().parse().ok()
}

/// True when `s` can be a header value (no control characters).
fn header_safe(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

/// True when a JetStream API error is "stream not found" (10059).
fn is_stream_not_found(e: &async_nats::jetstream::Error) -> bool {
    e.error_code() == ErrorCode::STREAM_NOT_FOUND
}

/// The NATS JetStream [`EventLog`]. See the module documentation for the mapping.
pub struct JetStreamLog {
    client: async_nats::Client,
    js: jetstream::Context,
    opts: JetStreamOptions,
    /// Streams created or verified by this process.
    ensured: Mutex<HashSet<StreamName>>,
    /// Last known `(subject_seq, stream_seq)` per subject: a hint, checked by the server.
    last: Mutex<HashMap<Subject, (u64, u64)>>,
    /// Striped per-subject append locks.
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Flips to `true` on close; subscriptions watch it.
    closed_tx: watch::Sender<bool>,
    /// Incremented on every (re)connection to a server.
    reconnects: watch::Sender<u64>,
    /// Set once the heartbeat stream is created or verified.
    heartbeats_ready: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// What the server said about the last message of a subject.
struct LastMsg {
    subject_seq: u64,
    stream_seq: u64,
    /// The message itself (absent when the subject is empty).
    message: Option<jetstream::message::StreamMessage>,
}

/// Why reading a subject's last message failed.
enum Fetch {
    /// The server did not answer: worth asking again.
    Transient(String),
    /// Anything else.
    Fatal(LogError),
}

/// Longest wait for one answer on the append path (a publish ack, a last-message read)
/// before asking again: shorter than [`REQUEST_TIMEOUT`] so an append rides out a leader
/// election in a few quick retries.
const QUICK_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times an append is published again after a transient error (250 ms apart).
const TRANSIENT_RETRIES: u32 = 80;

/// Longest wait for a stream whose replicas were raised to elect its leader and bring
/// its new copies up to date.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a stream's last sequence (or the list of streams) is asked, each given
/// [`QUICK_TIMEOUT`], 250 ms apart, before the error is reported: ~20 s, longer than a
/// leader election.
const LAST_SEQ_TRIES: u32 = 9;

impl JetStreamLog {
    /// Connects to the NATS server(s) at `url` (comma-separated URLs allowed) and checks
    /// that JetStream is enabled. Streams are created on first use.
    pub async fn connect(url: &str, opts: JetStreamOptions) -> Result<Arc<Self>, LogError> {
        let prefix_ok = !opts.stream_prefix.is_empty()
            && opts
                .stream_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !prefix_ok {
            return Err(LogError::InvalidName(format!(
                "stream prefix {:?}: use [A-Za-z0-9_-]+",
                opts.stream_prefix
            )));
        }
        if !(1..=5).contains(&opts.replicas) {
            return Err(LogError::Storage(format!(
                "replicas must be 1..=5 (1 or 3 in practice), got {}",
                opts.replicas
            )));
        }
        // Counts reconnections, so subscriptions can recreate their consumers at once
        // instead of waiting for missed heartbeats (a restarted server lost them).
        let (reconnects_tx, _) = watch::channel(0u64);
        let reconnects = reconnects_tx.clone();
        let client = async_nats::ConnectOptions::new()
            .name("stratus-eventlog")
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    reconnects.send_modify(|n| *n += 1);
                }
                std::future::ready(())
            })
            .connection_timeout(Duration::from_secs(5))
            .connect(
                url.split(',')
                    .map(|u| u.trim().parse::<async_nats::ServerAddr>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| LogError::Storage(format!("NATS url {url:?}: {e}")))?,
            )
            .await
            .map_err(|e| LogError::Storage(format!("connect to NATS at {url}: {e}")))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        // Account info as raw JSON: the typed answer of this client does not parse the
        // replies of older servers (2.9).
        let info = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.request("$JS.API.INFO", Default::default()),
        )
        .await
        .map_err(|_| LogError::Storage(format!("NATS at {url}: JetStream info timed out")))?
        .map_err(|e| {
            LogError::Storage(format!("NATS at {url}: JetStream is not available: {e}"))
        })?;
        let body = String::from_utf8_lossy(&info.payload);
        if body.contains("\"error\"") {
            return Err(LogError::Storage(format!(
                "NATS at {url}: JetStream is not available: {body}"
            )));
        }
        if opts.replicas > 1 && client.server_info().cluster.is_none() {
            return Err(LogError::Storage(format!(
                "NATS at {url} is a single server, not a cluster: JetStream keeps one copy of \
                 a stream there, and {} replicas were asked (--nats-replicas {}). Fix: start \
                 with --nats-replicas 1 (the default), or run a 3-node cluster \
                 (ops/nats/cluster.sh start) and point --nats at it",
                opts.replicas, opts.replicas
            )));
        }
        let (closed_tx, _) = watch::channel(false);
        Ok(Arc::new(Self {
            client,
            js,
            opts,
            ensured: Mutex::new(HashSet::new()),
            last: Mutex::new(HashMap::new()),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            closed_tx,
            reconnects: reconnects_tx,
            heartbeats_ready: tokio::sync::OnceCell::new(),
        }))
    }

    /// The options this log was opened with.
    pub fn options(&self) -> &JetStreamOptions {
        &self.opts
    }

    /// The JetStream stream name of a Stratus stream: `<PREFIX>_API` or `<PREFIX>_CELL_<X>`.
    pub fn jetstream_name(&self, stream: &StreamName) -> String {
        if *stream == StreamName::api() {
            format!("{}_API", self.opts.stream_prefix)
        } else {
            format!(
                "{}_CELL_{}",
                self.opts.stream_prefix,
                stream.as_str().to_ascii_uppercase()
            )
        }
    }

    /// The subjects a Stratus stream captures.
    fn stream_subjects(stream: &StreamName) -> String {
        if *stream == StreamName::api() {
            "stratus.api.>".into()
        } else {
            format!("stratus.cell.{stream}.>")
        }
    }

    /// The Stratus stream of a JetStream stream name of this prefix.
    fn stratus_name(&self, js_name: &str) -> Option<StreamName> {
        let rest = js_name
            .strip_prefix(self.opts.stream_prefix.as_str())?
            .strip_prefix('_')?;
        if rest == "API" {
            return Some(StreamName::api());
        }
        let cell = rest.strip_prefix("CELL_")?;
        if cell.bytes().any(|b| b.is_ascii_lowercase()) {
            return None;
        }
        StreamName::new(cell.to_ascii_lowercase()).ok()
    }

    /// The configuration a stream is created with.
    pub fn stream_config(&self, stream: &StreamName) -> js_stream::Config {
        js_stream::Config {
            name: self.jetstream_name(stream),
            subjects: vec![Self::stream_subjects(stream)],
            description: Some(format!("Stratus event log, stream {stream}")),
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            num_replicas: self.opts.replicas,
            duplicate_window: self.opts.duplicate_window,
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            max_age: Duration::ZERO,
            max_consumers: -1,
            max_message_size: -1,
            deny_delete: true,
            deny_purge: true,
            allow_rollup: false,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Refuses an existing stream configuration that could lose events.
    fn verify_config(
        &self,
        have: &js_stream::Config,
        want: &js_stream::Config,
    ) -> Result<(), LogError> {
        let name = &have.name;
        let refuse = |what: String| {
            Err(LogError::Storage(format!(
                "stream {name} has {what}; refusing to start: it could drop events"
            )))
        };
        if have.storage != StorageType::File {
            return refuse(format!("storage={:?}", have.storage));
        }
        if have.retention != RetentionPolicy::Limits {
            return refuse(format!("retention={:?}", have.retention));
        }
        if have.max_messages > 0 {
            return refuse(format!("max_msgs={}", have.max_messages));
        }
        if have.max_bytes > 0 {
            return refuse(format!("max_bytes={}", have.max_bytes));
        }
        if have.max_messages_per_subject > 0 {
            return refuse(format!(
                "max_msgs_per_subject={}",
                have.max_messages_per_subject
            ));
        }
        if !have.max_age.is_zero() {
            return refuse(format!("max_age={:?}", have.max_age));
        }
        if have.allow_rollup {
            return refuse("allow_rollup_hdrs=true".into());
        }
        if !want.subjects.iter().all(|s| have.subjects.contains(s)) {
            return Err(LogError::Storage(format!(
                "stream {name} captures {:?}, not {:?}; refusing to start",
                have.subjects, want.subjects
            )));
        }
        if have.mirror.is_some() || have.sealed {
            return Err(LogError::Storage(format!(
                "stream {name} is a mirror or sealed: it cannot be written; refusing to start"
            )));
        }
        if have.duplicate_window != want.duplicate_window {
            tracing::warn!(stream = %name, have = ?have.duplicate_window, want = ?want.duplicate_window,
                "stream duplicate window differs from the configured one");
        }
        if !have.deny_delete || !have.deny_purge {
            tracing::warn!(stream = %name, "stream allows message delete or purge");
        }
        Ok(())
    }

    /// Creates or verifies `stream` on the server (always asks the server), and raises
    /// its replicas to the configured ones (see the module documentation).
    async fn create_or_verify(&self, stream: &StreamName) -> Result<(), LogError> {
        let want = self.stream_config(stream);
        match self.js.get_stream(&want.name).await {
            Ok(s) => {
                self.verify_config(&s.cached_info().config, &want)?;
                self.match_replicas(s.cached_info()).await?;
            }
            Err(e) => {
                let not_found = match e.kind() {
                    GetStreamErrorKind::JetStream(j) => is_stream_not_found(&j),
                    _ => false,
                };
                if !not_found {
                    return Err(LogError::Storage(format!("stream {}: {e}", want.name)));
                }
                match self.js.create_stream(want.clone()).await {
                    Ok(s) => self.warn_if_single_copy(&want.name, s.cached_info()),
                    // Maybe another process created it meanwhile: verify what is there.
                    Err(e) => match self.js.get_stream(&want.name).await {
                        Ok(s) => {
                            self.verify_config(&s.cached_info().config, &want)?;
                            self.match_replicas(s.cached_info()).await?;
                        }
                        Err(_) => {
                            let hint = match e.kind() {
                                CreateStreamErrorKind::JetStream(j)
                                    if j.error_code() == ErrorCode::STREAM_NAME_EXIST =>
                                {
                                    " (exists with another configuration)"
                                }
                                _ => "",
                            };
                            return Err(LogError::Storage(format!(
                                "create stream {}{hint}: {e}",
                                want.name
                            )));
                        }
                    },
                }
            }
        }
        self.ensured
            .lock()
            .expect("ensured lock poisoned")
            .insert(stream.clone());
        Ok(())
    }

    /// Raises an existing stream's replicas to [`JetStreamOptions::replicas`] when it has
    /// fewer, or refuses with the fix when the cluster cannot place them; never lowers
    /// them (see the module documentation for why).
    async fn match_replicas(&self, info: &js_stream::Info) -> Result<(), LogError> {
        let name = &info.config.name;
        let have = info.config.num_replicas.max(1);
        let want = self.opts.replicas;
        if have >= want {
            if have > want {
                tracing::info!(stream = %name, have, configured = want,
                    "stream has more replicas than configured; keeping them");
            }
            self.warn_if_single_copy(name, info);
            return Ok(());
        }
        let refuse = |why: String| {
            LogError::Storage(format!(
                "stream {name} has {have} replica(s), {want} are configured \
                 (--nats-replicas {want}), and raising them failed: {why}. Refusing to run \
                 with fewer copies than asked. Fix: bring up the NATS nodes so that {want} \
                 are running (ops/nats/cluster.sh status shows the local cluster), then start \
                 again; or start with --nats-replicas {have} to keep the stream as it is"
            ))
        };
        // The stream's own view: a server outside a cluster reports no cluster. Updating
        // such a stream would make it unloadable at the server's next restart.
        if info
            .cluster
            .as_ref()
            .and_then(|c| c.name.as_ref())
            .is_none()
        {
            return Err(refuse(
                "the server holding it is not part of a cluster".into(),
            ));
        }
        let mut config = info.config.clone();
        config.num_replicas = want;
        let updated =
            match tokio::time::timeout(REQUEST_TIMEOUT, self.js.update_stream(&config)).await {
                Ok(Ok(updated)) => updated,
                Ok(Err(e)) => return Err(refuse(e.to_string())),
                Err(_) => return Err(refuse(format!("no answer within {REQUEST_TIMEOUT:?}"))),
            };
        if updated.config.num_replicas != want {
            return Err(refuse(format!(
                "the server kept {} replica(s)",
                updated.config.num_replicas
            )));
        }
        tracing::info!(stream = %name, from = have, to = want,
            "raised the stream's replicas to the configured ones (its durable consumers follow)");
        self.wait_settled(name, want).await;
        Ok(())
    }

    /// Waits (up to [`SETTLE_TIMEOUT`]) until a stream whose replicas were just raised has
    /// elected its leader and its new copies are current. Right after the update the
    /// stream has no leader for a fraction of a second: requests sent then go unanswered,
    /// and a read consumer created then may never deliver (nats-server 2.9.10), so the
    /// stream is not used before. Past the deadline (a long log still being copied) the
    /// process goes on with a warning; appends wait for the copies as for an election.
    async fn wait_settled(&self, name: &str, want: usize) {
        let started = tokio::time::Instant::now();
        let why = loop {
            let why = match tokio::time::timeout(QUICK_TIMEOUT, self.js.get_stream(name)).await {
                Ok(Ok(s)) => {
                    let cluster = s.cached_info().cluster.as_ref();
                    let leader = cluster.and_then(|c| c.leader.as_deref());
                    let current =
                        cluster.map_or(0, |c| c.replicas.iter().filter(|r| r.current).count());
                    if leader.is_some() && current + 1 >= want {
                        tracing::info!(stream = %name, took = ?started.elapsed(), "the stream's copies are current");
                        return;
                    }
                    format!(
                        "leader {}, {current} of {} other copies current",
                        leader.unwrap_or("not elected yet"),
                        want - 1
                    )
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {QUICK_TIMEOUT:?}"),
            };
            if started.elapsed() >= SETTLE_TIMEOUT || *self.closed_tx.borrow() {
                break why;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tracing::warn!(stream = %name, state = %why, waited = ?SETTLE_TIMEOUT,
            "the stream's new copies are not all current yet; going on (writes wait for a quorum)");
    }

    /// Warns when a stream keeps a single copy on a cluster: it stops with that node
    /// (and its events go with that node's disk), which the cluster was meant to prevent.
    fn warn_if_single_copy(&self, name: &str, info: &js_stream::Info) {
        if info.config.num_replicas > 1 {
            return;
        }
        if let Some(cluster) = self.client.server_info().cluster {
            tracing::warn!(stream = %name, %cluster,
                "stream has 1 replica on a NATS cluster: it is unavailable while its node is \
                 down and lost with that node's disk; start every Stratus process with \
                 --nats-replicas 3 to replicate it");
        }
    }

    /// Ensures `stream` once per process (cheap after the first call).
    async fn ensure_known(&self, stream: &StreamName) -> Result<(), LogError> {
        let known = self
            .ensured
            .lock()
            .expect("ensured lock poisoned")
            .contains(stream);
        if known {
            Ok(())
        } else {
            self.create_or_verify(stream).await
        }
    }

    fn check_open(&self) -> Result<(), LogError> {
        if *self.closed_tx.borrow() {
            Err(LogError::Closed)
        } else {
            Ok(())
        }
    }

    /// Closes the log: appends and reads fail with [`LogError::Closed`] and every
    /// subscription ends. Idempotent.
    pub fn close(&self) {
        self.closed_tx.send_replace(true);
    }

    fn lock_for(&self, subject: &Subject) -> &tokio::sync::Mutex<()> {
        let mut h = DefaultHasher::new();
        subject.hash(&mut h);
        &self.locks[(h.finish() as usize) % LOCK_STRIPES]
    }

    fn cached(&self, subject: &Subject) -> Option<(u64, u64)> {
        self.last
            .lock()
            .expect("cache lock poisoned")
            .get(subject)
            .copied()
    }

    /// Records that the message at `stream_seq` has `subject_seq` (keeps the highest).
    fn remember(&self, subject: &Subject, subject_seq: u64, stream_seq: u64) {
        if subject_seq == 0 {
            return;
        }
        let mut last = self.last.lock().expect("cache lock poisoned");
        if let Some(e) = last.get_mut(subject) {
            if subject_seq >= e.0 {
                *e = (subject_seq, stream_seq);
            }
            return;
        }
        if last.len() >= CACHE_MAX {
            last.clear();
        }
        last.insert(subject.clone(), (subject_seq, stream_seq));
    }

    /// The last message of `subject`, asking again (for up to ~20 s) while the server
    /// does not answer (leader election, restart).
    async fn fetch_last(&self, subject: &Subject) -> Result<LastMsg, LogError> {
        let mut tries = 0u32;
        loop {
            let why = match tokio::time::timeout(QUICK_TIMEOUT, self.fetch_last_once(subject)).await
            {
                Ok(Ok(last)) => return Ok(last),
                Ok(Err(Fetch::Fatal(e))) => return Err(e),
                Ok(Err(Fetch::Transient(why))) => why,
                Err(_) => format!("last message of {subject}: timed out"),
            };
            tries += 1;
            if tries >= TRANSIENT_RETRIES || *self.closed_tx.borrow() {
                return Err(LogError::Storage(why));
            }
            tracing::warn!(%subject, %why, attempt = tries, "transient JetStream error; asking again");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Reads the subject's last message from the server (its stream leader), once.
    async fn fetch_last_once(&self, subject: &Subject) -> Result<LastMsg, Fetch> {
        let name = self.jetstream_name(&subject.stream());
        let stream = self
            .js
            .get_stream_no_info(&name)
            .await
            .map_err(|e| Fetch::Fatal(storage(e)))?;
        match stream
            .get_last_raw_message_by_subject(subject.as_str())
            .await
        {
            Ok(m) => {
                let subject_seq = match header_subject_seq(Some(&m.headers)) {
                    Some(s) => s,
                    None => {
                        decode_record(&subject.stream(), m.sequence, &m.payload)
                            .map_err(Fetch::Fatal)?
                            .subject_seq
                    }
                };
                self.remember(subject, subject_seq, m.sequence);
                Ok(LastMsg {
                    subject_seq,
                    stream_seq: m.sequence,
                    message: Some(m),
                })
            }
            Err(e) => {
                use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
                match e.kind() {
                    K::NoMessageFound => Ok(LastMsg {
                        subject_seq: 0,
                        stream_seq: 0,
                        message: None,
                    }),
                    K::JetStream(j)
                        if is_stream_not_found(&j)
                            || j.error_code() == ErrorCode::NO_MESSAGE_FOUND =>
                    {
                        Ok(LastMsg {
                            subject_seq: 0,
                            stream_seq: 0,
                            message: None,
                        })
                    }
                    // No answer (timeout, no responders): a leader election or a
                    // restarting server.
                    K::Other => Err(Fetch::Transient(format!("last message of {subject}: {e}"))),
                    _ => Err(Fetch::Fatal(LogError::Storage(format!(
                        "last message of {subject}: {e}"
                    )))),
                }
            }
        }
    }

    /// The subject_seq of the message at `stream_seq` of `stream`.
    async fn subject_seq_at(&self, stream: &StreamName, stream_seq: u64) -> Result<u64, LogError> {
        let name = self.jetstream_name(stream);
        let s = self.js.get_stream_no_info(&name).await.map_err(storage)?;
        let m = s
            .get_raw_message(stream_seq)
            .await
            .map_err(|e| LogError::Storage(format!("message {name}/{stream_seq}: {e}")))?;
        match header_subject_seq(Some(&m.headers)) {
            Some(seq) => Ok(seq),
            None => Ok(decode_record(stream, stream_seq, &m.payload)?.subject_seq),
        }
    }

    /// Builds the headers of one publish.
    fn headers(
        req: &AppendRequest,
        expected_stream_seq: u64,
        subject_seq: u64,
        types: Option<&str>,
    ) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !req.dedupe_id.is_empty() {
            h.insert(HEADER_MSG_ID, req.dedupe_id.as_str());
        }
        h.insert(
            HEADER_EXPECTED_LAST_SUBJECT_SEQ,
            expected_stream_seq.to_string(),
        );
        h.insert(HEADER_SUBJECT_SEQ, subject_seq.to_string());
        if let Some(t) = types {
            h.insert(HEADER_EVENT_TYPES, t);
        }
        let corr = &req.meta.correlation_id;
        if !corr.is_empty() && header_safe(corr) {
            h.insert(HEADER_CORRELATION_ID, corr.as_str());
        }
        h
    }

    /// One append, under the subject's lock.
    async fn append_locked(
        &self,
        req: &AppendRequest,
        events: &[StoredEvent],
    ) -> Result<AppendAck, LogError> {
        let subject = &req.subject;
        let stream = subject.stream();
        let types: Option<String> = {
            let joined = events
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>()
                .join(",");
            events
                .iter()
                .all(|e| header_safe(&e.event_type) && !e.event_type.contains(','))
                .then_some(joined)
        };
        let mut recreated = false;
        let mut attempts = 0;
        let mut transient = 0u32;
        let mut conflicted = false;
        loop {
            attempts += 1;
            // (expected stream seq of the subject's last message, subject_seq we will have)
            let (expected_stream_seq, subject_seq) = match req.expected {
                ExpectedSeq::Exactly(0) => (0, 1),
                ExpectedSeq::Exactly(n) => {
                    let (m, s) = match self.cached(subject) {
                        Some((m, s)) if m == n => (m, s),
                        _ => {
                            let l = self.fetch_last(subject).await?;
                            (l.subject_seq, l.stream_seq)
                        }
                    };
                    if m == n {
                        (s, n + 1)
                    } else {
                        (IMPOSSIBLE_SEQ, n + 1)
                    }
                }
                ExpectedSeq::Any => {
                    let (m, s) = match self.cached(subject) {
                        // After a transient error the same expectation is published
                        // again; only a conflict calls for a fresh read.
                        Some(known) if !conflicted => known,
                        _ => {
                            let l = self.fetch_last(subject).await?;
                            (l.subject_seq, l.stream_seq)
                        }
                    };
                    (s, m + 1)
                }
            };
            let payload = encode_record_new(&RecordRef {
                subject,
                subject_seq,
                dedupe_id: &req.dedupe_id,
                meta: &req.meta,
                events,
            })?;
            let headers = Self::headers(req, expected_stream_seq, subject_seq, types.as_deref());
            let published = match self
                .js
                .publish_with_headers(subject.as_str().to_string(), headers, payload.into())
                .await
            {
                Ok(ack) => match tokio::time::timeout(QUICK_TIMEOUT, ack).await {
                    Ok(r) => r,
                    Err(_) => Err(async_nats::jetstream::context::PublishError::new(
                        PublishErrorKind::TimedOut,
                    )),
                },
                Err(e) => Err(e),
            };
            match published {
                Ok(ack) if ack.duplicate => {
                    let original = self.subject_seq_at(&stream, ack.sequence).await?;
                    return Ok(AppendAck {
                        stream_seq: ack.sequence,
                        subject_seq: original,
                        duplicate: true,
                    });
                }
                Ok(ack) => {
                    self.remember(subject, subject_seq, ack.sequence);
                    return Ok(AppendAck {
                        stream_seq: ack.sequence,
                        subject_seq,
                        duplicate: false,
                    });
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    conflicted = true;
                    let actual = self.fetch_last(subject).await?.subject_seq;
                    match req.expected {
                        ExpectedSeq::Exactly(n) if actual != n => {
                            return Err(LogError::WrongLastSequence {
                                subject: subject.to_string(),
                                expected: n,
                                actual,
                            });
                        }
                        // Exactly(n) and the subject reached n meanwhile, or Any: try again.
                        _ if attempts < ANY_ATTEMPTS => {
                            if attempts > 2 {
                                let ms = 1u64 << attempts.min(6);
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            continue;
                        }
                        _ => {
                            return Err(LogError::Storage(format!(
                                "append to {subject}: still conflicting after {attempts} attempts"
                            )));
                        }
                    }
                }
                // A stream we know exists answers nothing while its leader is being
                // re-elected (no responders look like "stream not found"), or the ack
                // times out: publish again with the same Nats-Msg-Id (the server drops a
                // repeat of a message that did land) for up to ~20 s.
                Err(e)
                    if matches!(
                        e.kind(),
                        PublishErrorKind::StreamNotFound
                            | PublishErrorKind::TimedOut
                            | PublishErrorKind::BrokenPipe
                    ) && transient < TRANSIENT_RETRIES
                        && self
                            .ensured
                            .lock()
                            .expect("ensured lock poisoned")
                            .contains(&stream) =>
                {
                    transient += 1;
                    tracing::warn!(%subject, error = %e, attempt = transient, "transient JetStream error; publishing again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                Err(e) if e.kind() == PublishErrorKind::StreamNotFound && !recreated => {
                    // The stream went away (or never existed): create it again, once.
                    recreated = true;
                    self.ensured
                        .lock()
                        .expect("ensured lock poisoned")
                        .remove(&stream);
                    self.create_or_verify(&stream).await?;
                    continue;
                }
                Err(e) => {
                    return Err(LogError::Storage(format!("append to {subject}: {e}")));
                }
            }
        }
    }

    /// Creates an ephemeral consumer for a bounded read, asking again (for up to ~20 s)
    /// when the server does not answer in time: during a leader election, or when the
    /// node it picked has just died, a creation can go unanswered.
    async fn create_read_consumer(
        &self,
        name: &str,
        config: consumer::pull::Config,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, LogError> {
        let mut tries = 0u32;
        loop {
            let why = match tokio::time::timeout(
                CONSUMER_CREATE_TIMEOUT,
                self.js.create_consumer_on_stream(config.clone(), name),
            )
            .await
            {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => {
                    use js_stream::ConsumerErrorKind as K;
                    // Only what a retry cannot fix fails at once (a cluster that lost a
                    // node answers with various errors until it settles).
                    let fatal = match e.kind() {
                        K::InvalidName | K::InvalidConsumerType => true,
                        K::JetStream(j) => is_stream_not_found(&j),
                        _ => false,
                    };
                    if fatal {
                        return Err(LogError::Storage(format!(
                            "read {name}: create consumer: {e}"
                        )));
                    }
                    e.to_string()
                }
                Err(_) => "timed out".to_string(),
            };
            tries += 1;
            if tries >= 8 || *self.closed_tx.borrow() {
                return Err(LogError::Storage(format!(
                    "read {name}: create consumer: {why}"
                )));
            }
            tracing::warn!(stream = %name, %why, attempt = tries, "creating a read consumer failed; trying again");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Reads the messages of `stream` (optionally filtered on `filter`) from stream sequence
    /// `start` up to and including `end`, with an ephemeral consumer; `keep` selects commits,
    /// and the read stops once `max` are kept.
    async fn read_range(
        &self,
        stream: &StreamName,
        filter: Option<&Subject>,
        start: u64,
        end: u64,
        max: usize,
        keep: impl Fn(&Commit) -> bool,
    ) -> Result<Vec<Commit>, LogError> {
        let name = self.jetstream_name(stream);
        let config = consumer::pull::Config {
            deliver_policy: if start <= 1 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                }
            },
            filter_subject: filter.map(|s| s.to_string()).unwrap_or_default(),
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        };
        let c = self.create_read_consumer(&name, config).await?;
        let consumer_name = c.cached_info().name.clone();
        let read = async {
            let mut out = Vec::new();
            let mut messages = c
                .stream()
                .max_messages_per_batch(512)
                .messages()
                .await
                .map_err(|e| LogError::Storage(format!("read {name}: {e}")))?;
            while let Some(m) = messages.next().await {
                let m = m.map_err(|e| LogError::Storage(format!("read {name}: {e}")))?;
                let seq = m.info().map_err(storage)?.stream_sequence;
                if seq > end {
                    break;
                }
                let commit = decode_message(
                    stream,
                    seq,
                    m.subject.as_str(),
                    m.headers.as_ref(),
                    &m.payload,
                )?;
                if keep(&commit) {
                    out.push(commit);
                }
                if seq == end || out.len() >= max {
                    break;
                }
            }
            Ok(out)
        };
        let result = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(r) => r,
            Err(_) => Err(LogError::Storage(format!(
                "read {name} {start}..={end}: timed out after {READ_TIMEOUT:?}"
            ))),
        };
        if let Err(e) = self
            .js
            .delete_consumer_from_stream(&consumer_name, &name)
            .await
        {
            tracing::debug!(stream = %name, consumer = %consumer_name, error = %e,
                "could not delete read consumer (it expires by itself)");
        }
        result
    }
}

impl Drop for JetStreamLog {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn append(&self, req: AppendRequest) -> Result<AppendAck, LogError> {
        self.check_open()?;
        if req.events.is_empty() {
            return Err(LogError::EmptyCommit);
        }
        if !header_safe(&req.dedupe_id) {
            return Err(LogError::InvalidName(format!(
                "dedupe id {:?}: control characters",
                req.dedupe_id
            )));
        }
        self.ensure_known(&req.subject.stream()).await?;
        let events: Vec<StoredEvent> = req
            .events
            .iter()
            .map(|e| StoredEvent {
                event_id: Uuid::now_v7(),
                event_type: e.event_type.clone(),
                version: e.version,
                payload: e.payload.clone(),
            })
            .collect();
        let _guard = self.lock_for(&req.subject).lock().await;
        self.append_locked(&req, &events).await
    }

    async fn read_subject(&self, subject: &Subject, from: u64) -> Result<Vec<Commit>, LogError> {
        self.check_open()?;
        let from = from.max(1);
        let last = self.fetch_last(subject).await?;
        if last.subject_seq == 0 || from > last.subject_seq {
            return Ok(Vec::new());
        }
        let stream = subject.stream();
        if from == last.subject_seq {
            if let Some(m) = &last.message {
                let c = decode_message(
                    &stream,
                    m.sequence,
                    m.subject.as_str(),
                    Some(&m.headers),
                    &m.payload,
                )?;
                return Ok(vec![c]);
            }
        }
        let out = self
            .read_range(
                &stream,
                Some(subject),
                1,
                last.stream_seq,
                usize::MAX,
                |c| c.subject_seq >= from,
            )
            .await?;
        // Per-subject sequences must run from..=last with no hole.
        for (i, c) in out.iter().enumerate() {
            if c.subject_seq != from + i as u64 {
                return Err(LogError::Corrupt(format!(
                    "{subject}: subject_seq {} at position {i}, expected {}",
                    c.subject_seq,
                    from + i as u64
                )));
            }
        }
        if out.len() as u64 != last.subject_seq - from + 1 {
            return Err(LogError::Corrupt(format!(
                "{subject}: read {} commits from {from}, last is {}",
                out.len(),
                last.subject_seq
            )));
        }
        Ok(out)
    }

    /// A filtered read starting just after `after` (the position of commit `from - 1`),
    /// stopping after `max` commits: the cost is that of the range, not of the subject.
    async fn read_subject_range(
        &self,
        subject: &Subject,
        from: u64,
        after: u64,
        max: usize,
    ) -> Result<Vec<Commit>, LogError> {
        self.check_open()?;
        let from = from.max(1);
        if max == 0 {
            return Ok(Vec::new());
        }
        let last = self.fetch_last(subject).await?;
        if last.subject_seq == 0 || from > last.subject_seq {
            return Ok(Vec::new());
        }
        // Without a hint (or the first commit) the scan starts at the stream's beginning.
        let start = if from > 1 { after + 1 } else { 1 };
        let stream = subject.stream();
        let out = self
            .read_range(&stream, Some(subject), start, last.stream_seq, max, |c| {
                c.subject_seq >= from
            })
            .await?;
        let want = (last.subject_seq - from + 1).min(max as u64);
        for (i, c) in out.iter().enumerate() {
            if c.subject_seq != from + i as u64 {
                return Err(LogError::Corrupt(format!(
                    "{subject}: subject_seq {} at position {i} of a read from {from} after {after}, expected {}",
                    c.subject_seq,
                    from + i as u64
                )));
            }
        }
        if out.len() as u64 != want {
            return Err(LogError::Corrupt(format!(
                "{subject}: read {} commits from {from} after {after}, expected {want}",
                out.len()
            )));
        }
        Ok(out)
    }

    async fn last_subject_seq(&self, subject: &Subject) -> Result<u64, LogError> {
        self.check_open()?;
        Ok(self.fetch_last(subject).await?.subject_seq)
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        max: usize,
    ) -> Result<Vec<Commit>, LogError> {
        self.check_open()?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let from = from.max(1);
        let last = self.last_stream_seq(stream).await?;
        if from > last {
            return Ok(Vec::new());
        }
        let end = last.min(from.saturating_add(max as u64 - 1));
        let out = self
            .read_range(stream, None, from, end, usize::MAX, |_| true)
            .await?;
        for (i, c) in out.iter().enumerate() {
            if c.stream_seq != from + i as u64 {
                return Err(LogError::Corrupt(format!(
                    "stream {stream}: gap before stream_seq {} (expected {})",
                    c.stream_seq,
                    from + i as u64
                )));
            }
        }
        Ok(out)
    }

    /// Asks the stream (its leader) with the quick timeout, and again while it does not
    /// answer: a request sent while no leader is elected goes unanswered even after the
    /// election, so waiting out the full request timeout would only delay the caller.
    async fn last_stream_seq(&self, stream: &StreamName) -> Result<u64, LogError> {
        self.check_open()?;
        let name = self.jetstream_name(stream);
        let mut tries = 0u32;
        loop {
            let why = match tokio::time::timeout(QUICK_TIMEOUT, self.js.get_stream(&name)).await {
                Ok(Ok(s)) => return Ok(s.cached_info().state.last_sequence),
                Ok(Err(e)) => match e.kind() {
                    GetStreamErrorKind::JetStream(j) if is_stream_not_found(&j) => return Ok(0),
                    GetStreamErrorKind::Request => format!("stream {name}: {e}"),
                    _ => return Err(LogError::Storage(format!("stream {name}: {e}"))),
                },
                Err(_) => format!("stream {name}: no answer within {QUICK_TIMEOUT:?}"),
            };
            tries += 1;
            if tries >= LAST_SEQ_TRIES || *self.closed_tx.borrow() {
                return Err(LogError::Storage(why));
            }
            tracing::debug!(stream = %name, %why, attempt = tries, "transient JetStream error; asking again");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Subscribing to a stream that does not exist yet creates it (empty).
    async fn subscribe(&self, stream: &StreamName, from: u64) -> Result<Subscription, LogError> {
        self.check_open()?;
        self.ensure_known(stream).await?;
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
        let task = SubscriptionTask {
            js: self.js.clone(),
            name: self.jetstream_name(stream),
            stream: stream.clone(),
            next: from.max(1),
            tx,
            closed: self.closed_tx.subscribe(),
            reconnects: self.reconnects.subscribe(),
        };
        tokio::spawn(task.run());
        Ok(Subscription::new(rx))
    }

    /// The list comes from the JetStream meta leader: while a new one is elected (its
    /// node died) the request goes unanswered, so it is given the quick timeout and asked
    /// again, like [`EventLog::last_stream_seq`].
    async fn streams(&self) -> Result<Vec<StreamName>, LogError> {
        self.check_open()?;
        let mut tries = 0u32;
        let names: Vec<String> = loop {
            let list = self.js.stream_names().try_collect();
            let why = match tokio::time::timeout(QUICK_TIMEOUT, list).await {
                Ok(Ok(names)) => break names,
                Ok(Err(e)) => format!("list streams: {e}"),
                Err(_) => format!("list streams: no answer within {QUICK_TIMEOUT:?}"),
            };
            tries += 1;
            if tries >= LAST_SEQ_TRIES || *self.closed_tx.borrow() {
                return Err(LogError::Storage(why));
            }
            tracing::debug!(%why, attempt = tries, "transient JetStream error; asking again");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let mut out: Vec<StreamName> = names.iter().filter_map(|n| self.stratus_name(n)).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn ensure_stream(&self, stream: &StreamName) -> Result<(), LogError> {
        self.check_open()?;
        self.create_or_verify(stream).await
    }

    /// A durable pull consumer with explicit acks (see the module documentation).
    async fn durable_consumer(
        &self,
        stream: &StreamName,
        name: &str,
        start: u64,
        opts: ConsumerOptions,
    ) -> Result<Option<DurableConsumer>, LogError> {
        self.check_open()?;
        self.ensure_known(stream).await?;
        let consumer_name = consumer_name(name);
        let config = consumer::pull::Config {
            durable_name: Some(consumer_name.clone()),
            description: Some(format!("stratus reactor {name}")),
            deliver_policy: if start <= 1 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                }
            },
            ack_policy: AckPolicy::Explicit,
            ack_wait: opts.ack_wait,
            max_deliver: -1,
            max_ack_pending: opts.max_ack_pending.max(1) as i64,
            // 0: as many replicas as the stream.
            num_replicas: 0,
            ..Default::default()
        };
        let task = DurableTask {
            js: self.js.clone(),
            name: self.jetstream_name(stream),
            stream: stream.clone(),
            consumer_name,
            config,
            batch: opts.max_ack_pending.clamp(1, 256),
            closed: self.closed_tx.subscribe(),
            reconnects: self.reconnects.subscribe(),
        };
        // Create (or find) the consumer now, so errors reach the caller.
        task.consumer().await?;
        let (tx, rx) = mpsc::channel(opts.max_ack_pending.clamp(1, SUBSCRIPTION_CAPACITY));
        tokio::spawn(task.run(tx));
        Ok(Some(DurableConsumer::new(rx)))
    }
}

/// Longest a read of all heartbeats may take.
const HEARTBEAT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Beats older than this are dropped by the heartbeat stream.
const HEARTBEAT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

impl JetStreamLog {
    /// JetStream name of the heartbeat stream: `<PREFIX>_HEARTBEATS`.
    pub fn heartbeat_stream(&self) -> String {
        format!("{}_HEARTBEATS", self.opts.stream_prefix)
    }

    /// Configuration of the heartbeat stream: the last message per subject, a day at most.
    pub fn heartbeat_config(&self) -> js_stream::Config {
        js_stream::Config {
            name: self.heartbeat_stream(),
            subjects: vec!["stratus.hb.>".into()],
            description: Some("Stratus heartbeats (last beat per service)".into()),
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            num_replicas: self.opts.replicas,
            max_messages_per_subject: 1,
            max_age: HEARTBEAT_MAX_AGE,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Creates the heartbeat stream, or brings an existing one to our configuration
    /// (dropping beats is its purpose, so nothing is refused) and its replicas up to the
    /// configured ones, like the event streams.
    async fn ensure_heartbeats(&self) -> Result<(), LogError> {
        self.heartbeats_ready
            .get_or_try_init(|| async {
                let mut want = self.heartbeat_config();
                match self.js.get_stream(&want.name).await {
                    Ok(s) => {
                        let mut info = s.cached_info().clone();
                        let have = &info.config;
                        if have.subjects != want.subjects
                            || have.max_messages_per_subject != 1
                            || have.max_age != want.max_age
                        {
                            // Keep its replicas: raising them is match_replicas' job.
                            want.num_replicas = have.num_replicas;
                            info = self.js.update_stream(want.clone()).await.map_err(|e| {
                                LogError::Storage(format!("update stream {}: {e}", want.name))
                            })?;
                        }
                        self.match_replicas(&info).await
                    }
                    Err(_) => match self.js.create_stream(want.clone()).await {
                        Ok(_) => Ok(()),
                        // Another process may have created it meanwhile.
                        Err(e) => match self.js.get_stream(&want.name).await {
                            Ok(_) => Ok(()),
                            Err(_) => Err(LogError::Storage(format!(
                                "create stream {}: {e}",
                                want.name
                            ))),
                        },
                    },
                }
            })
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Heartbeats for JetStreamLog {
    async fn beat(&self, service: &str, id: &str, payload: &[u8]) -> Result<(), LogError> {
        self.check_open()?;
        self.ensure_heartbeats().await?;
        let subject = format!(
            "stratus.hb.{}.{}",
            Subject::token(service),
            Subject::token(id)
        );
        self.js
            .publish(subject, payload.to_vec().into())
            .await
            .map_err(|e| LogError::Storage(format!("heartbeat: {e}")))?
            .await
            .map_err(|e| LogError::Storage(format!("heartbeat: {e}")))?;
        Ok(())
    }

    /// Reads the last message of every subject with an ephemeral consumer.
    async fn beats(&self) -> Result<Vec<Beat>, LogError> {
        self.check_open()?;
        self.ensure_heartbeats().await?;
        let name = self.heartbeat_stream();
        let mut stream = self
            .js
            .get_stream(&name)
            .await
            .map_err(|e| LogError::Storage(format!("stream {name}: {e}")))?;
        let info = stream
            .info()
            .await
            .map_err(|e| LogError::Storage(format!("stream {name}: {e}")))?;
        if info.state.messages == 0 {
            return Ok(Vec::new());
        }
        // Read until the message that was last when we asked (or a newer one, if a beat
        // replaced it meanwhile): it always exists, so the read always ends. (The
        // consumer's pending count does not: it can count beats replaced meanwhile.)
        let last = info.state.last_sequence;
        let c = self
            .create_read_consumer(
                &name,
                consumer::pull::Config {
                    deliver_policy: DeliverPolicy::LastPerSubject,
                    filter_subject: "stratus.hb.>".into(),
                    ack_policy: AckPolicy::None,
                    inactive_threshold: Duration::from_secs(10),
                    num_replicas: 1,
                    memory_storage: true,
                    ..Default::default()
                },
            )
            .await?;
        let consumer_name = c.cached_info().name.clone();
        let read = async {
            let mut out = Vec::new();
            let mut messages = c
                .stream()
                .max_messages_per_batch(512)
                .messages()
                .await
                .map_err(|e| LogError::Storage(format!("read {name}: {e}")))?;
            while let Some(m) = messages.next().await {
                let m = m.map_err(|e| LogError::Storage(format!("read {name}: {e}")))?;
                let info = m.info().map_err(storage)?;
                let done = info.stream_sequence >= last;
                let at = (info.published.unix_timestamp_nanos() / 1000) as i64;
                let mut parts = m.subject.as_str().splitn(4, '.').skip(2);
                if let (Some(service), Some(id)) = (
                    parts.next().and_then(Subject::untoken),
                    parts.next().and_then(Subject::untoken),
                ) {
                    out.push(Beat {
                        service,
                        id,
                        payload: m.payload.to_vec(),
                        at,
                    });
                }
                if done {
                    break;
                }
            }
            Ok(out)
        };
        let result = match tokio::time::timeout(HEARTBEAT_READ_TIMEOUT, read).await {
            Ok(r) => r,
            Err(_) => Err(LogError::Storage(format!(
                "read {name}: timed out after {HEARTBEAT_READ_TIMEOUT:?}"
            ))),
        };
        let _ = stream.delete_consumer(&consumer_name).await;
        result
    }
}

impl JetStreamLog {
    /// The underlying NATS client (for health checks and tests).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

/// Feeds one subscription from an ephemeral pull consumer, recreating it from the next
/// expected position whenever it fails.
struct SubscriptionTask {
    js: jetstream::Context,
    name: String,
    stream: StreamName,
    next: u64,
    tx: mpsc::Sender<Result<Commit, LogError>>,
    closed: watch::Receiver<bool>,
    reconnects: watch::Receiver<u64>,
}

/// What ended one consumer of a subscription.
enum Ended {
    /// The receiver went away or the log closed: stop.
    Stop,
    /// The consumer failed: make a new one from `next`.
    Retry(String),
    /// A message after `next` arrived before `next` (lost in transit): make a new
    /// consumer from `next`.
    Gap(u64),
}

/// Heartbeat asked of the server by a subscription's pulls: two missing ones mean the
/// consumer is gone (its node died, the server restarted) and it is made again.
const SUBSCRIPTION_HEARTBEAT: Duration = Duration::from_secs(1);
/// A subscription quiet for this long checks that its stream is quiet too.
const SUBSCRIPTION_IDLE_CHECK: Duration = Duration::from_secs(3);
/// Lifetime of one pull request of a subscription.
const SUBSCRIPTION_EXPIRES: Duration = Duration::from_secs(5);
/// Longest a consumer creation may take before it is tried again (during a leader
/// election requests can go unanswered).
const CONSUMER_CREATE_TIMEOUT: Duration = Duration::from_secs(3);
/// A gap at the same position this many times in a row is reported as corruption.
const MAX_GAPS: u32 = 20;

impl SubscriptionTask {
    async fn run(mut self) {
        let mut failures = 0u32;
        let mut gaps = 0u32;
        loop {
            if *self.closed.borrow() || self.tx.is_closed() {
                return;
            }
            let delivered_before = self.next;
            let why = match self.follow().await {
                Ended::Stop => return,
                Ended::Retry(why) => why,
                Ended::Gap(seq) => {
                    gaps = if self.next > delivered_before {
                        1
                    } else {
                        gaps + 1
                    };
                    if gaps >= MAX_GAPS {
                        let _ = self
                            .tx
                            .send(Err(LogError::Corrupt(format!(
                                "stream {}: commit {} missing (next delivered is {seq})",
                                self.stream, self.next
                            ))))
                            .await;
                        return;
                    }
                    format!("commit {} skipped (got {seq})", self.next)
                }
            };
            if self.next > delivered_before {
                failures = 0;
            }
            failures += 1;
            tracing::debug!(stream = %self.name, next = self.next, %why,
                "subscription consumer failed; recreating it");
            let backoff = Duration::from_millis(50 * u64::from(failures.min(10)));
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.closed.wait_for(|&c| c) => return,
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Runs one consumer from `self.next` until it fails or the subscription ends.
    async fn follow(&mut self) -> Ended {
        self.reconnects.mark_unchanged();
        let config = consumer::pull::Config {
            deliver_policy: if self.next <= 1 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: self.next,
                }
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        };
        let stream = match self.js.get_stream_no_info(&self.name).await {
            Ok(s) => s,
            Err(e) => return Ended::Retry(e.to_string()),
        };
        let consumer = tokio::select! {
            r = tokio::time::timeout(CONSUMER_CREATE_TIMEOUT, stream.create_consumer(config)) => match r {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Ended::Retry(format!("create consumer: {e}")),
                Err(_) => return Ended::Retry("create consumer: timed out".into()),
            },
            _ = self.closed.wait_for(|&c| c) => return Ended::Stop,
            _ = self.tx.closed() => return Ended::Stop,
        };
        let consumer_name = consumer.cached_info().name.clone();
        let ended = self.pull(&consumer).await;
        // Best effort: an abandoned consumer also expires by itself.
        let js = self.js.clone();
        let name = self.name.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                CONSUMER_CREATE_TIMEOUT,
                js.delete_consumer_from_stream(&consumer_name, &name),
            )
            .await;
        });
        ended
    }

    /// Why the subscription is stalled, if it is: the stream holds commit `next` (or
    /// cannot tell), yet nothing came.
    async fn stalled(&self) -> Option<String> {
        match tokio::time::timeout(CONSUMER_CREATE_TIMEOUT, self.js.get_stream(&self.name)).await {
            Ok(Ok(st)) if st.cached_info().state.last_sequence >= self.next => Some(format!(
                "stalled: the stream is at {}, nothing delivered from {}",
                st.cached_info().state.last_sequence,
                self.next
            )),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("stream info: {e}")),
            Err(_) => Some("stream info: timed out".into()),
        }
    }

    /// Forwards what `consumer` delivers until it fails or the subscription ends.
    async fn pull(&mut self, consumer: &consumer::Consumer<consumer::pull::Config>) -> Ended {
        let pulling = consumer
            .stream()
            .max_messages_per_batch(SUBSCRIPTION_CAPACITY)
            .heartbeat(SUBSCRIPTION_HEARTBEAT)
            .expires(SUBSCRIPTION_EXPIRES)
            .messages();
        let mut messages = match tokio::time::timeout(CONSUMER_CREATE_TIMEOUT, pulling).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Ended::Retry(format!("consume: {e}")),
            Err(_) => return Ended::Retry("consume: timed out".into()),
        };
        loop {
            // `None`: nothing for a while.
            let next = tokio::select! {
                m = tokio::time::timeout(SUBSCRIPTION_IDLE_CHECK, messages.next()) => m.ok(),
                r = self.reconnects.changed() => {
                    if r.is_err() {
                        return Ended::Stop;
                    }
                    return Ended::Retry("reconnected to the server".into());
                }
                _ = self.closed.wait_for(|&c| c) => return Ended::Stop,
                _ = self.tx.closed() => return Ended::Stop,
            };
            let Some(m) = next else {
                // Quiet for a while: make sure it is the stream that is quiet, not a
                // consumer lost with a node (heartbeats catch most of those).
                match self.stalled().await {
                    Some(why) => return Ended::Retry(why),
                    None => continue,
                }
            };
            let m = match m {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Ended::Retry(e.to_string()),
                None => return Ended::Retry("consumer ended".into()),
            };
            let seq = match m.info() {
                Ok(i) => i.stream_sequence,
                Err(e) => return Ended::Retry(format!("message info: {e}")),
            };
            if seq < self.next {
                continue; // already delivered
            }
            if seq > self.next {
                return Ended::Gap(seq);
            }
            let item = decode_message(
                &self.stream,
                seq,
                m.subject.as_str(),
                m.headers.as_ref(),
                &m.payload,
            );
            let failed = item.is_err();
            if !failed {
                self.next = seq + 1;
            }
            tokio::select! {
                r = self.tx.send(item) => if r.is_err() { return Ended::Stop; },
                _ = self.closed.wait_for(|&c| c) => return Ended::Stop,
            }
            if failed {
                return Ended::Stop;
            }
        }
    }
}

/// A JetStream consumer name for a Stratus consumer name: `[A-Za-z0-9_-]` are kept, any
/// other character becomes `_`, and then a hash of the original keeps names distinct.
fn consumer_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == name && !name.is_empty() && name.len() <= 64 {
        return clean;
    }
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    let short: String = clean.chars().take(48).collect();
    format!("{short}_{:016x}", h.finish())
}

/// Acknowledges one message of a durable consumer.
struct JsAck(jetstream::Message);

#[async_trait]
impl Acknowledge for JsAck {
    async fn ack(&self) -> Result<(), LogError> {
        self.0
            .ack()
            .await
            .map_err(|e| LogError::Storage(format!("ack: {e}")))
    }

    async fn nak(&self, delay: Duration) -> Result<(), LogError> {
        self.0
            .ack_with(jetstream::AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| LogError::Storage(format!("nak: {e}")))
    }
}

/// Heartbeat asked of the server in a pull: a missing one means the pull is dead (server
/// restarted, consumer leader moved) and the pull is made again.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
/// Lifetime of one pull request.
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// Feeds one durable consumer's deliveries, pulling again whenever a pull fails.
struct DurableTask {
    js: jetstream::Context,
    name: String,
    stream: StreamName,
    consumer_name: String,
    config: consumer::pull::Config,
    batch: usize,
    closed: watch::Receiver<bool>,
    reconnects: watch::Receiver<u64>,
}

impl DurableTask {
    /// Finds the consumer, creating it with `config` when it does not exist. An existing
    /// consumer must acknowledge explicitly (anything else could lose work).
    async fn consumer(&self) -> Result<consumer::Consumer<consumer::pull::Config>, LogError> {
        let stream = self
            .js
            .get_stream_no_info(&self.name)
            .await
            .map_err(|e| LogError::Storage(format!("stream {}: {e}", self.name)))?;
        let c = stream
            .get_or_create_consumer(&self.consumer_name, self.config.clone())
            .await
            .map_err(|e| {
                LogError::Storage(format!(
                    "consumer {} on {}: {e}",
                    self.consumer_name, self.name
                ))
            })?;
        if c.cached_info().config.ack_policy != AckPolicy::Explicit {
            return Err(LogError::Storage(format!(
                "consumer {} on {} exists without explicit acks; delete it to let Stratus recreate it",
                self.consumer_name, self.name
            )));
        }
        Ok(c)
    }

    async fn run(mut self, tx: mpsc::Sender<Result<Delivery, LogError>>) {
        let mut failures = 0u32;
        loop {
            if *self.closed.borrow() || tx.is_closed() {
                return;
            }
            match self.follow(&tx).await {
                Ended::Stop => return,
                Ended::Retry(why) => {
                    failures = (failures + 1).min(10);
                    tracing::debug!(stream = %self.name, consumer = %self.consumer_name, %why,
                        "durable consumer pull failed; pulling again");
                    let backoff = Duration::from_millis(50 * u64::from(failures));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.closed.wait_for(|&c| c) => return,
                        _ = tx.closed() => return,
                    }
                }
                // Redeliveries come in any order: a durable consumer has no gaps to see.
                Ended::Gap(_) => {}
            }
        }
    }

    /// Pulls from the consumer until the pull fails or the consumer is dropped.
    async fn follow(&mut self, tx: &mpsc::Sender<Result<Delivery, LogError>>) -> Ended {
        self.reconnects.mark_unchanged();
        let mut closed = self.closed.clone();
        let consumer = tokio::select! {
            r = tokio::time::timeout(CONSUMER_CREATE_TIMEOUT, self.consumer()) => match r {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Ended::Retry(e.to_string()),
                Err(_) => return Ended::Retry("find consumer: timed out".into()),
            },
            _ = closed.wait_for(|&c| c) => return Ended::Stop,
            _ = tx.closed() => return Ended::Stop,
        };
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(self.batch)
            .heartbeat(PULL_HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => return Ended::Retry(format!("pull: {e}")),
        };
        loop {
            let m = tokio::select! {
                m = messages.next() => m,
                r = self.reconnects.changed() => {
                    if r.is_err() {
                        return Ended::Stop;
                    }
                    return Ended::Retry("reconnected to the server".into());
                }
                _ = self.closed.wait_for(|&c| c) => return Ended::Stop,
                _ = tx.closed() => return Ended::Stop,
            };
            let m = match m {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Ended::Retry(e.to_string()),
                None => return Ended::Retry("pull ended".into()),
            };
            let (seq, delivered) = match m.info() {
                Ok(i) => (i.stream_sequence, i.delivered.max(1) as u64),
                Err(e) => return Ended::Retry(format!("message info: {e}")),
            };
            let item = match decode_message(
                &self.stream,
                seq,
                m.subject.as_str(),
                m.headers.as_ref(),
                &m.payload,
            ) {
                Ok(commit) => Ok(Delivery::new(commit, delivered, Box::new(JsAck(m)))),
                Err(e) => {
                    // Undecodable: redelivering cannot help; report it and move on.
                    let _ = m.ack_with(jetstream::AckKind::Term).await;
                    Err(e)
                }
            };
            tokio::select! {
                r = tx.send(item) => if r.is_err() { return Ended::Stop; },
                _ = self.closed.wait_for(|&c| c) => return Ended::Stop,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metadata;

    #[test]
    fn record_roundtrip() {
        let cell = StreamName::cell("cell1").unwrap();
        let subject = Subject::cell(&cell, crate::SubjectKind::Instance, "a").unwrap();
        let meta = Metadata {
            correlation_id: "req-1".into(),
            ..Default::default()
        };
        let events = vec![StoredEvent {
            event_id: Uuid::now_v7(),
            event_type: "t".into(),
            version: 1,
            payload: vec![1, 2],
        }];
        let bytes = encode_record_new(&RecordRef {
            subject: &subject,
            subject_seq: 3,
            dedupe_id: "d",
            meta: &meta,
            events: &events,
        })
        .unwrap();
        let c = decode_message(&cell, 9, subject.as_str(), None, &bytes).unwrap();
        assert_eq!((c.stream_seq, c.subject_seq), (9, 3));
        assert_eq!(c.events, events);
        assert!(decode_message(&cell, 9, "stratus.cell.cell1.instance.b", None, &bytes).is_err());
    }
}
