//! The notifications on JetStream: stream `STRATUS_NOTIFICATIONS`, subjects
//! `stratus.notifications.<project>.<event_type>`, each message the plain notification
//! JSON, so any NATS client can read it with a durable consumer of its own.
//!
//! Invariants:
//! - every message carries `Nats-Msg-Id` = the notification's message id (the server
//!   drops a second publish within the duplicate window) and where it comes from:
//!   `Stratus-Source` (cell stream), `Stratus-Source-Seq` (commit), `Stratus-Source-Index`
//!   (its rank among the commit's notifications);
//! - the resume point is recovered from the stream itself: after each write the
//!   notifier records, per source stream, the stream sequence of its last message, then
//!   the stream's last sequence (`G`), in the checkpoint store; at start the messages of
//!   each recorded sequence are read back and every message after `G` is scanned
//!   forward, so what was published after the last record (a crash between publish and
//!   record) is found: the resume point is exact, not a lower bound;
//! - the feed's cursor is the JetStream stream sequence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use async_trait::async_trait;
use eventlog::{CheckpointStore, EventLog, Subject};

use crate::store::{Entry, Feed, Filter, Resume, Sink};
use crate::{Notification, NotifierError};

/// The JetStream stream name.
pub const STREAM: &str = "STRATUS_NOTIFICATIONS";
/// Subject prefix of the notifications.
pub const SUBJECT_PREFIX: &str = "stratus.notifications";

const GLOBAL: &str = "notifier@jetstream";

fn js_err(e: impl std::fmt::Display) -> NotifierError {
    NotifierError::Storage(format!("{STREAM}: {e}"))
}

/// The subject of a notification: `stratus.notifications.<project>.<event_type>`
/// (the project encoded as a subject token; the event type keeps its dots, so
/// `stratus.notifications.<project>.instance.>` selects every instance notification).
pub fn subject(n: &Notification) -> String {
    let project = match n.project() {
        "" => "_".to_string(),
        p => Subject::token(p),
    };
    let ty: Vec<String> = n.event_type.split('.').map(Subject::token).collect();
    format!("{SUBJECT_PREFIX}.{project}.{}", ty.join("."))
}

/// Notifications on JetStream.
#[derive(Clone)]
pub struct JetStreamNotifications {
    js: jetstream::Context,
    checkpoints: Arc<dyn CheckpointStore>,
    log: Arc<dyn EventLog>,
}

impl std::fmt::Debug for JetStreamNotifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JetStreamNotifications")
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.as_str().to_string())
}

impl JetStreamNotifications {
    /// Creates the stream if needed (`replicas` 1 or 3).
    pub async fn open(
        client: async_nats::Client,
        replicas: usize,
        checkpoints: Arc<dyn CheckpointStore>,
        log: Arc<dyn EventLog>,
    ) -> Result<Self, NotifierError> {
        let js = jetstream::new(client);
        let want = stream::Config {
            name: STREAM.into(),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            description: Some("Nova versioned notifications, derived from the Stratus log".into()),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..Default::default()
        };
        if js.get_stream(STREAM).await.is_err() {
            if let Err(e) = js.create_stream(want).await {
                js.get_stream(STREAM).await.map_err(|_| js_err(e))?;
            }
        }
        Ok(JetStreamNotifications {
            js,
            checkpoints,
            log,
        })
    }

    async fn last_seq(&self) -> Result<u64, NotifierError> {
        let mut s = self.js.get_stream(STREAM).await.map_err(js_err)?;
        Ok(s.info().await.map_err(js_err)?.state.last_sequence)
    }

    async fn get(
        &self,
        seq: u64,
    ) -> Result<Option<jetstream::message::StreamMessage>, NotifierError> {
        let s = self.js.get_stream(STREAM).await.map_err(js_err)?;
        match s.get_raw_message(seq).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.to_string().contains("not found") => Ok(None),
            Err(e) => Err(js_err(e)),
        }
    }
}

/// The source of a message: (stream, commit seq, index).
fn source(m: &jetstream::message::StreamMessage) -> Option<(String, u64, u32)> {
    let h = &m.headers;
    Some((
        header(h, "Stratus-Source")?,
        header(h, "Stratus-Source-Seq")?.parse().ok()?,
        header(h, "Stratus-Source-Index")?.parse().ok()?,
    ))
}

#[async_trait]
impl Sink for JetStreamNotifications {
    async fn resume_points(&self) -> Result<HashMap<String, Resume>, NotifierError> {
        let mut out: HashMap<String, Resume> = HashMap::new();
        let mut note = |m: &jetstream::message::StreamMessage| {
            if let Some((s, seq, index)) = source(m) {
                let r = Resume {
                    seq,
                    written: index + 1,
                };
                let e = out.entry(s).or_default();
                if (r.seq, r.written) > (e.seq, e.written) {
                    *e = r;
                }
            }
        };
        let global = self.checkpoints.load(GLOBAL).await?.unwrap_or(0);
        // Each source's last recorded message.
        for stream in self.log.streams().await? {
            let name = format!("notifier@src:{stream}");
            if let Some(at) = self.checkpoints.load(&name).await? {
                if let Some(m) = self.get(at).await? {
                    note(&m);
                }
            }
        }
        // Everything after the last record.
        let last = self.last_seq().await?;
        for seq in global + 1..=last {
            if let Some(m) = self.get(seq).await? {
                note(&m);
            }
        }
        Ok(out)
    }

    async fn write(&self, batch: Vec<Entry>) -> Result<(), NotifierError> {
        let mut acks = Vec::with_capacity(batch.len());
        for e in &batch {
            let mut h = HeaderMap::new();
            h.insert(
                "Nats-Msg-Id",
                e.notification.message_id.to_string().as_str(),
            );
            h.insert("Stratus-Source", e.stream.as_str());
            h.insert("Stratus-Source-Seq", e.seq.to_string().as_str());
            h.insert("Stratus-Source-Index", e.index.to_string().as_str());
            let body = serde_json::to_vec(&e.notification).map_err(js_err)?;
            let ack = self
                .js
                .publish_with_headers(subject(&e.notification), h, body.into())
                .await
                .map_err(js_err)?;
            acks.push((e.stream.clone(), ack));
        }
        let mut last_of: HashMap<String, u64> = HashMap::new();
        let mut global = 0;
        for (s, ack) in acks {
            let a = ack.await.map_err(js_err)?;
            global = global.max(a.sequence);
            last_of.insert(s, a.sequence);
        }
        // A duplicate's ack names the original's sequence: still that source's message.
        for (s, seq) in last_of {
            self.checkpoints
                .save(&format!("notifier@src:{s}"), seq)
                .await?;
        }
        self.checkpoints.save(GLOBAL, global).await?;
        Ok(())
    }
}

#[async_trait]
impl Feed for JetStreamNotifications {
    async fn read(
        &self,
        cursor: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<(Vec<(u64, Notification)>, u64), NotifierError> {
        let last = self.last_seq().await?;
        let mut out = Vec::new();
        let mut upto = cursor;
        let mut seq = cursor + 1;
        while seq <= last && seq <= cursor + 10_000 {
            if let Some(m) = self.get(seq).await? {
                if let Ok(n) = serde_json::from_slice::<Notification>(&m.payload) {
                    if filter.matches(&n) {
                        out.push((seq, n));
                    }
                }
            }
            upto = seq;
            seq += 1;
            if out.len() >= limit {
                break;
            }
        }
        Ok((out, upto))
    }

    async fn last(&self) -> Result<u64, NotifierError> {
        self.last_seq().await
    }

    async fn wait_after(&self, cursor: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.last_seq().await.is_ok_and(|l| l > cursor) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
