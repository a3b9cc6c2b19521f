//! Webhook delivery of the notifications (`/v1/subscriptions`): a [`Deliverer`] in the
//! process that runs the notifier reads the notification [`Feed`] after each
//! subscription's cursor and POSTs every matching notification, in feed order, to the
//! subscription's url.
//!
//! Each request: body = the notification JSON (the bytes `/v1/notifications` shows as
//! `notification`), headers `Content-Type: application/json`, `X-Stratus-Signature:
//! sha256=<hex HMAC-SHA256 of the body keyed with the subscription's secret>`,
//! `X-Stratus-Message-Id` (the notification's `message_id`, for the receiver's
//! deduplication), `X-Stratus-Event-Type`, `X-Stratus-Cursor` (its feed cursor) and
//! `X-Stratus-Subscription`.
//!
//! Invariants (at-least-once, in order, no gap):
//! - a subscription's cursor ([`DeliveryState::cursor`]) advances past a matching
//!   notification only after a 2xx answer for it, and is committed to the
//!   [`DeliveryStore`] right then; any other answer, a connection failure or a timeout
//!   is retried with capped exponential backoff ([`Backoff`]), never skipped, and
//!   nothing after it is sent meanwhile: order per subscription is the feed's order;
//! - so a crash (or a restart) sends again at most the notification in flight (the one
//!   whose 2xx was not yet committed): a receiver deduplicates by message id;
//! - notifications that do not match are passed over (the cursor may move past them
//!   without a request);
//! - the secret is used to sign and nothing else: never logged, never stored here.
//!
//! One deliverer per deployment (the process that persists the projections runs it,
//! like the notifier); were two to run, each would deliver every notification (still
//! at least once, duplicates carry the same message id).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::subscription::Subscription;
use domain::SubscriptionId;
use hmac::{Hmac, Mac};
use redb::{Durability, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{EmbeddedNotifications, Feed, Filter};
use crate::{Notification, NotifierError};

/// Where one subscription's delivery stands (operational state, not domain: kept
/// beside the notifications, shown by `GET /v1/subscriptions/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// Every matching notification up to this feed cursor is delivered (2xx).
    pub cursor: u64,
    /// Notifications delivered (2xx answers).
    pub delivered: u64,
    /// Failed attempts at the notification in flight (0 once it is delivered).
    pub attempts: u32,
    /// Feed cursor of the notification being retried, if any.
    pub in_flight: Option<u64>,
    /// When the last request was made (RFC 3339).
    pub last_attempt_at: Option<String>,
    /// HTTP status of the last answer (None: no answer, see `last_error`).
    pub last_status: Option<u16>,
    /// Why the last attempt failed (None after a 2xx).
    pub last_error: Option<String>,
    /// When the in-flight notification is tried again (RFC 3339).
    pub next_retry_at: Option<String>,
}

/// Where delivery states are kept: a table of `notifications.redb` (embedded), a
/// JetStream stream (`STRATUS_WEBHOOKS`, one subject per subscription).
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// The state of subscription `id` (None: nothing delivered or tried yet).
    async fn load(&self, id: SubscriptionId) -> Result<Option<DeliveryState>, NotifierError>;
    /// Records the state of subscription `id` (durably: it is the delivery cursor).
    async fn save(&self, id: SubscriptionId, state: &DeliveryState) -> Result<(), NotifierError>;
}

/// Retry delays: `base` doubling after each failed attempt, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to 5 minutes.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay after the `attempts`-th failed attempt (1: `base`).
    pub fn delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.base
            .saturating_mul(1u32 << doublings)
            .min(self.cap)
            .max(self.base.min(self.cap))
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` keyed with `secret` (the value of
/// `X-Stratus-Signature`; a receiver computes the same and compares in constant time).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `n` is one `sub` wants (project, then any of its event types or prefixes).
pub fn wanted(sub: &Subscription, n: &Notification) -> bool {
    sub.project.as_deref().is_none_or(|p| n.project() == p)
        && sub.event_types.iter().any(|t| {
            Filter {
                event_type: Some(t.clone()),
                project: None,
            }
            .matches(n)
        })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The live subscriptions (read from the world's `subscriptions` model by the stack).
pub type Source = Arc<dyn Fn() -> Vec<Subscription> + Send + Sync>;

/// Delivers the notifications to every live subscription.
pub struct Deliverer {
    feed: Arc<dyn Feed>,
    store: Arc<dyn DeliveryStore>,
    subscriptions: Source,
    http: reqwest::Client,
    backoff: Backoff,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deliverer")
    }
}

/// How often the set of subscriptions is looked at again.
const RESCAN: Duration = Duration::from_millis(500);
/// Most notifications read from the feed at once.
const PAGE: usize = 100;
/// One request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

enum Attempt {
    Delivered(u16),
    Failed(Option<u16>, String),
}

impl Deliverer {
    /// A deliverer reading `feed`, keeping its states in `store`. `https` receivers are
    /// verified against the system's roots plus `extra_roots` (PEM certificates: a
    /// private CA of the receivers); certificates are never left unverified, since the
    /// payloads carry tenants' data and the signature proves only who sent them.
    pub fn new(
        feed: Arc<dyn Feed>,
        store: Arc<dyn DeliveryStore>,
        subscriptions: Source,
        backoff: Backoff,
        extra_roots: &[u8],
    ) -> Result<Arc<Deliverer>, NotifierError> {
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if !extra_roots.is_empty() {
            let certs = reqwest::Certificate::from_pem_bundle(extra_roots)
                .map_err(|e| NotifierError::Config(format!("webhook CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(NotifierError::Config(
                    "webhook CA certificates: no PEM certificate found".into(),
                ));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| NotifierError::Config(format!("webhook client: {e}")))?;
        Ok(Arc::new(Deliverer {
            feed,
            store,
            subscriptions,
            http,
            backoff,
        }))
    }

    /// Runs until `shutdown`: one task per live subscription, started when it appears,
    /// stopped when it is deleted.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut running: HashMap<SubscriptionId, (watch::Sender<bool>, JoinHandle<()>)> =
            HashMap::new();
        loop {
            let live: HashMap<SubscriptionId, Subscription> = (self.subscriptions)()
                .into_iter()
                .map(|s| (s.id, s))
                .collect();
            running.retain(|id, (stop, task)| {
                let keep = live.contains_key(id) && !task.is_finished();
                if !keep {
                    let _ = stop.send(true);
                }
                keep
            });
            for (id, sub) in live {
                running.entry(id).or_insert_with(|| {
                    let (tx, rx) = watch::channel(false);
                    (tx, tokio::spawn(self.clone().deliver(sub, rx)))
                });
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(RESCAN) => {}
            }
        }
        for (_, (stop, mut task)) in running {
            let _ = stop.send(true);
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    async fn save(&self, id: SubscriptionId, st: &DeliveryState) {
        if let Err(e) = self.store.save(id, st).await {
            tracing::warn!(subscription = %id, error = %e, "cannot record the delivery state");
        }
    }

    async fn post(&self, sub: &Subscription, cursor: u64, n: &Notification) -> Attempt {
        let body = match serde_json::to_vec(n) {
            Ok(b) => b,
            Err(e) => return Attempt::Failed(None, e.to_string()),
        };
        let req = self
            .http
            .post(&sub.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Stratus-Signature", signature(&sub.secret, &body))
            .header("X-Stratus-Message-Id", n.message_id.to_string())
            .header("X-Stratus-Event-Type", n.event_type.as_str())
            .header("X-Stratus-Cursor", cursor.to_string())
            .header("X-Stratus-Subscription", sub.id.to_string())
            .body(body);
        match req.send().await {
            Ok(r) if r.status().is_success() => Attempt::Delivered(r.status().as_u16()),
            Ok(r) => Attempt::Failed(Some(r.status().as_u16()), format!("HTTP {}", r.status())),
            Err(e) => {
                // reqwest's message says what failed (connect, timeout) without the body.
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                Attempt::Failed(None, msg)
            }
        }
    }

    /// Delivers `sub`'s notifications until `stop`.
    async fn deliver(self: Arc<Self>, sub: Subscription, mut stop: watch::Receiver<bool>) {
        let id = sub.id;
        let mut st = loop {
            match self.store.load(id).await {
                Ok(Some(st)) => break st,
                Ok(None) => {
                    break DeliveryState {
                        cursor: sub.cursor,
                        ..Default::default()
                    }
                }
                Err(e) => {
                    tracing::warn!(subscription = %id, error = %e, "cannot read the delivery state; retrying");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let scope = Filter {
            event_type: None,
            project: sub.project.clone(),
        };
        loop {
            if *stop.borrow() {
                return;
            }
            let (rows, upto) = match self.feed.read(st.cursor, PAGE, &scope).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(subscription = %id, error = %e, "cannot read notifications; retrying");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            for (cursor, n) in rows.iter().filter(|(_, n)| wanted(&sub, n)) {
                loop {
                    st.last_attempt_at = Some(now_rfc3339());
                    let attempt = tokio::select! {
                        _ = stop.changed() => return,
                        a = self.post(&sub, *cursor, n) => a,
                    };
                    match attempt {
                        Attempt::Delivered(status) => {
                            st.cursor = *cursor;
                            st.delivered += 1;
                            st.attempts = 0;
                            st.in_flight = None;
                            st.last_status = Some(status);
                            st.last_error = None;
                            st.next_retry_at = None;
                            self.save(id, &st).await;
                            break;
                        }
                        Attempt::Failed(status, error) => {
                            st.attempts = st.attempts.saturating_add(1);
                            st.in_flight = Some(*cursor);
                            st.last_status = status;
                            st.last_error = Some(error);
                            let delay = self.backoff.delay(st.attempts);
                            st.next_retry_at = Some(
                                (time::OffsetDateTime::now_utc() + delay)
                                    .format(&time::format_description::well_known::Rfc3339)
                                    .unwrap_or_default(),
                            );
                            tracing::debug!(subscription = %id, attempts = st.attempts, ?delay, "webhook delivery failed; retrying");
                            self.save(id, &st).await;
                            tokio::select! {
                                _ = stop.changed() => return,
                                _ = tokio::time::sleep(delay) => {}
                            }
                        }
                    }
                }
            }
            if upto > st.cursor {
                // Everything up to `upto` is delivered or not wanted.
                st.cursor = upto;
                self.save(id, &st).await;
                continue;
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.feed.wait_after(st.cursor, Duration::from_secs(5)) => {}
            }
        }
    }
}

/// The embedded store's delivery states: table `deliveries` of `notifications.redb`
/// (subscription id -> JSON state), one durable transaction per save.
const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");

fn storage(e: impl std::fmt::Display) -> NotifierError {
    NotifierError::Storage(e.to_string())
}

#[async_trait]
impl DeliveryStore for EmbeddedNotifications {
    async fn load(&self, id: SubscriptionId) -> Result<Option<DeliveryState>, NotifierError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(storage)?;
            let t = match r.open_table(DELIVERIES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(storage(e)),
            };
            let v = t.get(id.to_string().as_str()).map_err(storage)?;
            v.map(|v| serde_json::from_slice(v.value()).map_err(storage))
                .transpose()
        })
        .await
        .map_err(storage)?
    }

    async fn save(&self, id: SubscriptionId, state: &DeliveryState) -> Result<(), NotifierError> {
        let db = self.db.clone();
        let json = serde_json::to_vec(state).map_err(storage)?;
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(storage)?;
            txn.set_durability(Durability::Immediate).map_err(storage)?;
            {
                let mut t = txn.open_table(DELIVERIES).map_err(storage)?;
                t.insert(id.to_string().as_str(), json.as_slice())
                    .map_err(storage)?;
            }
            txn.commit().map_err(storage)
        })
        .await
        .map_err(storage)?
    }
}

/// The JetStream stream of delivery states (readable by every API process).
pub const STREAM: &str = "STRATUS_WEBHOOKS";
/// Subject prefix of the delivery states: `stratus.webhooks.<subscription id>`.
pub const SUBJECT_PREFIX: &str = "stratus.webhooks";

/// Delivery states on JetStream: stream [`STREAM`], one subject per subscription, the
/// last message of a subject (the stream keeps one per subject) its JSON state. A
/// stream rather than a key-value bucket: the same semantics (last value per key),
/// and it works with every JetStream server the log supports.
#[derive(Clone)]
pub struct JetStreamDeliveries {
    js: async_nats::jetstream::Context,
    stream: async_nats::jetstream::stream::Stream,
}

impl std::fmt::Debug for JetStreamDeliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JetStreamDeliveries")
    }
}

fn subject_of(id: SubscriptionId) -> String {
    format!("{SUBJECT_PREFIX}.{id}")
}

impl JetStreamDeliveries {
    /// Opens (creates if needed) the stream (`replicas` 1 or 3).
    pub async fn open(client: async_nats::Client, replicas: usize) -> Result<Self, NotifierError> {
        use async_nats::jetstream::stream;
        let js = async_nats::jetstream::new(client);
        let want = stream::Config {
            name: STREAM.into(),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            description: Some("Webhook delivery state of the Stratus notifications".into()),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_messages_per_subject: 1,
            num_replicas: replicas,
            ..Default::default()
        };
        let stream = match js.get_stream(STREAM).await {
            Ok(s) => s,
            Err(_) => match js.create_stream(want).await {
                Ok(s) => s,
                // Another process created it meanwhile.
                Err(e) => js
                    .get_stream(STREAM)
                    .await
                    .map_err(|_| storage(format!("{STREAM}: {e}")))?,
            },
        };
        Ok(JetStreamDeliveries { js, stream })
    }
}

#[async_trait]
impl DeliveryStore for JetStreamDeliveries {
    async fn load(&self, id: SubscriptionId) -> Result<Option<DeliveryState>, NotifierError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .stream
            .get_last_raw_message_by_subject(&subject_of(id))
            .await
        {
            Ok(m) => serde_json::from_slice(&m.payload)
                .map(Some)
                .map_err(storage),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(storage(format!("{STREAM}: {e}"))),
        }
    }

    async fn save(&self, id: SubscriptionId, state: &DeliveryState) -> Result<(), NotifierError> {
        let json = serde_json::to_vec(state).map_err(storage)?;
        self.js
            .publish(subject_of(id), json.into())
            .await
            .map_err(storage)?
            .await
            .map_err(storage)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=11).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
