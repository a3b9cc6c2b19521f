//! Where notifications are written (a [`Sink`]) and read back (a [`Feed`]).
//!
//! Invariants:
//! - a [`Sink::write`] is atomic with the source positions it covers: after a crash,
//!   [`Sink::resume_points`] says exactly which notifications of which commit were
//!   written last, so the notifier writes each notification exactly once;
//! - notifications are numbered by the sink from 1 in write order (the cursor of the
//!   HTTP feed); a number is never reused or reassigned.
//!
//! [`EmbeddedNotifications`] is a redb file (`<data>/notifications.redb`): table
//! `notifications` (seq -> notification JSON) and `positions` (source stream -> last
//! commit and how many of its notifications are written), one write transaction per
//! batch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use crate::{Notification, NotifierError};

const NOTIFICATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("notifications");
/// Source stream -> (commit seq, notifications of that commit written).
const POSITIONS: TableDefinition<&str, (u64, u32)> = TableDefinition::new("positions");

/// Where the notifier stands on one source stream: commit `seq` has had its first
/// `written` notifications written (every earlier commit all of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resume {
    /// Commit of the last notification written.
    pub seq: u64,
    /// How many notifications of that commit are written.
    pub written: u32,
}

/// One notification to write, with where it comes from.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Source (cell) stream.
    pub stream: String,
    /// Commit position in it.
    pub seq: u64,
    /// Index of the notification among the commit's.
    pub index: u32,
    /// The notification.
    pub notification: Notification,
}

/// Where the notifier writes.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Where each source stream's notifications stand.
    async fn resume_points(&self) -> Result<HashMap<String, Resume>, NotifierError>;
    /// Writes `batch` (in order) and the positions it reaches, all or nothing.
    async fn write(&self, batch: Vec<Entry>) -> Result<(), NotifierError>;
}

/// What a reader wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `instance.pause` matches `instance.pause.start` and `.end`; a full type itself.
    pub event_type: Option<String>,
    /// Owner project (payload `tenant_id`).
    pub project: Option<String>,
}

impl Filter {
    /// Whether `n` passes.
    pub fn matches(&self, n: &Notification) -> bool {
        let ty = self.event_type.as_deref().is_none_or(|t| {
            n.event_type == t
                || n.event_type
                    .strip_prefix(t)
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        ty && self.project.as_deref().is_none_or(|p| n.project() == p)
    }
}

/// Where notifications are read back (HTTP feed, server-sent events).
#[async_trait]
pub trait Feed: Send + Sync + 'static {
    /// Up to `limit` notifications after `cursor` passing `filter`, with their numbers;
    /// also the number read up to (the next cursor, even when nothing matched).
    async fn read(
        &self,
        cursor: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<(Vec<(u64, Notification)>, u64), NotifierError>;
    /// The number of the last notification written (0: none).
    async fn last(&self) -> Result<u64, NotifierError>;
    /// Returns once a notification after `cursor` exists, or after `timeout`.
    async fn wait_after(&self, cursor: u64, timeout: Duration);
}

fn storage(e: impl std::fmt::Display) -> NotifierError {
    NotifierError::Storage(e.to_string())
}

/// The embedded store: one redb file.
#[derive(Clone)]
pub struct EmbeddedNotifications {
    /// Also holds the webhook delivery states (`crate::webhook`).
    pub(crate) db: Arc<Database>,
    last: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for EmbeddedNotifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedNotifications")
    }
}

/// Most notifications scanned by one read (a filter that matches few still returns).
const SCAN: usize = 10_000;

impl EmbeddedNotifications {
    /// Opens (or creates) the store at `path`, e.g. `<data>/notifications.redb`.
    pub fn open(path: &Path) -> Result<Self, NotifierError> {
        let db = Database::builder()
            .set_cache_size(16 * 1024 * 1024)
            .create(path)
            .map_err(|e| NotifierError::Storage(format!("open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(NOTIFICATIONS).map_err(storage)?;
        txn.open_table(POSITIONS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        let last = {
            let r = db.begin_read().map_err(storage)?;
            let t = r.open_table(NOTIFICATIONS).map_err(storage)?;
            let last = t.last().map_err(storage)?.map(|(k, _)| k.value());
            last.unwrap_or(0)
        };
        Ok(EmbeddedNotifications {
            db: Arc::new(db),
            last: Arc::new(watch::channel(last).0),
        })
    }
}

#[async_trait]
impl Sink for EmbeddedNotifications {
    async fn resume_points(&self) -> Result<HashMap<String, Resume>, NotifierError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(storage)?;
            let t = r.open_table(POSITIONS).map_err(storage)?;
            let mut out = HashMap::new();
            for row in t.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let (seq, written) = v.value();
                out.insert(k.value().to_string(), Resume { seq, written });
            }
            Ok(out)
        })
        .await
        .map_err(storage)?
    }

    async fn write(&self, batch: Vec<Entry>) -> Result<(), NotifierError> {
        if batch.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        let last = tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(storage)?;
            txn.set_durability(Durability::Immediate).map_err(storage)?;
            let mut next;
            {
                let mut t = txn.open_table(NOTIFICATIONS).map_err(storage)?;
                next = t
                    .last()
                    .map_err(storage)?
                    .map(|(k, _)| k.value())
                    .unwrap_or(0);
                let mut pos: HashMap<&str, (u64, u32)> = HashMap::new();
                for e in &batch {
                    next += 1;
                    let json = serde_json::to_vec(&e.notification).map_err(storage)?;
                    t.insert(next, json.as_slice()).map_err(storage)?;
                    pos.insert(e.stream.as_str(), (e.seq, e.index + 1));
                }
                let mut p = txn.open_table(POSITIONS).map_err(storage)?;
                for (s, v) in pos {
                    p.insert(s, v).map_err(storage)?;
                }
            }
            txn.commit().map_err(storage)?;
            Ok::<_, NotifierError>(next)
        })
        .await
        .map_err(storage)??;
        self.last.send_replace(last);
        Ok(())
    }
}

#[async_trait]
impl Feed for EmbeddedNotifications {
    async fn read(
        &self,
        cursor: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<(Vec<(u64, Notification)>, u64), NotifierError> {
        let db = self.db.clone();
        let filter = filter.clone();
        tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(storage)?;
            let t = r.open_table(NOTIFICATIONS).map_err(storage)?;
            let mut out = Vec::new();
            let mut upto = cursor;
            for row in t
                .range(cursor.saturating_add(1)..)
                .map_err(storage)?
                .take(SCAN)
            {
                let (k, v) = row.map_err(storage)?;
                let n: Notification = serde_json::from_slice(v.value()).map_err(storage)?;
                upto = k.value();
                if filter.matches(&n) {
                    out.push((upto, n));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok((out, upto))
        })
        .await
        .map_err(storage)?
    }

    async fn last(&self) -> Result<u64, NotifierError> {
        Ok(*self.last.borrow())
    }

    async fn wait_after(&self, cursor: u64, timeout: Duration) {
        let mut rx = self.last.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|l| *l > cursor)).await;
    }
}
