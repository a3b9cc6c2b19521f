//! `stratus billing`: the billing subscriber. It reads Nova's versioned notifications
//! (over HTTP from a running stratus, `GET /v1/notifications?cursor=`, or on JetStream
//! with a durable consumer on `STRATUS_NOTIFICATIONS`) and counts them into a
//! [`billing::Ledger`] (redb).
//!
//! Invariants (exactly once):
//! - HTTP: a page read after the ledger's cursor is committed with the page's
//!   `next_cursor` in one write transaction; killed before the commit, the subscriber
//!   reads the same page again; after it, the next one;
//! - JetStream: a fetched batch is committed (with its last stream sequence as the
//!   cursor) before each of its messages is acknowledged (explicit acks: a batch's
//!   ack must never cover messages still pending with a killed predecessor); a message
//!   delivered again (killed between commit
//!   and ack, or redelivered after the ack wait, possibly after later messages) counts
//!   nothing twice: the ledger keeps each counted message id, and the fold does not
//!   depend on order;
//! - a malformed billing notification stops the subscriber with an error (nothing of
//!   its batch is written): better stopped than wrong.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use billing::{Committed, Ledger};
use notifier::Notification;
use serde_json::Value;

/// Where the notifications come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A running stratus's `GET /v1/notifications` (an admin's token, or `None`: the
    /// `OS_*` password credentials).
    Http {
        /// Base URL of the compute API.
        url: String,
        /// Token.
        token: Option<String>,
    },
    /// JetStream: a durable pull consumer named `consumer` on `STRATUS_NOTIFICATIONS`.
    Nats {
        /// NATS URL.
        url: String,
        /// Durable consumer name.
        consumer: String,
    },
}

/// `stratus billing` options.
#[derive(Debug, Clone)]
pub struct BillingOptions {
    /// The ledger file.
    pub ledger: PathBuf,
    /// Where to read.
    pub source: Source,
    /// Exit once caught up (nothing new to read).
    pub once: bool,
    /// Most notifications per batch (one ledger transaction each).
    pub batch: usize,
    /// A rate card (TOML, validated) to store as the reports' default.
    pub rates: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Notifications read.
    pub seen: u64,
    /// Billing notifications counted.
    pub counted: u64,
    /// Already counted (redelivered) ones.
    pub duplicates: u64,
    /// Batches committed.
    pub batches: u64,
    /// Where the cursor stands.
    pub cursor: u64,
}

impl Stats {
    fn add(&mut self, c: Committed) {
        self.seen += c.seen as u64;
        self.counted += c.counted as u64;
        self.duplicates += c.duplicates as u64;
        self.batches += 1;
        self.cursor = c.cursor;
    }
}

async fn commit(
    ledger: &Arc<Ledger>,
    cursor: u64,
    batch: Vec<Notification>,
) -> anyhow::Result<Committed> {
    let l = ledger.clone();
    Ok(tokio::task::spawn_blocking(move || l.commit(cursor, &batch)).await??)
}

/// Runs the subscriber until caught up (`once`) or forever; prints a ready line first.
pub async fn run(o: BillingOptions) -> anyhow::Result<Stats> {
    let ledger = Arc::new(Ledger::open(&o.ledger)?);
    if let Some(r) = &o.rates {
        ledger.set_rates(r)?;
    }
    let start = ledger.cursor()?;
    let from = match &o.source {
        Source::Http { url, .. } => url.clone(),
        Source::Nats { url, consumer } => format!("{url} (consumer {consumer})"),
    };
    println!(
        "stratus billing: ledger {} at cursor {start}, reading {from}",
        o.ledger.display()
    );
    let began = Instant::now();
    let stats = match &o.source {
        Source::Http { url, token } => http(&o, &ledger, url, token.clone()).await?,
        Source::Nats { url, consumer } => nats(&o, &ledger, url, consumer).await?,
    };
    let secs = began.elapsed().as_secs_f64();
    println!(
        "consumed {} notifications ({} counted, {} already counted) in {} batches, {:.3} s: {:.0} notifications/s; cursor {}",
        stats.seen,
        stats.counted,
        stats.duplicates,
        stats.batches,
        secs,
        stats.seen as f64 / secs.max(1e-9),
        stats.cursor
    );
    Ok(stats)
}

async fn http(
    o: &BillingOptions,
    ledger: &Arc<Ledger>,
    url: &str,
    token: Option<String>,
) -> anyhow::Result<Stats> {
    let client = reqwest::Client::new();
    let password = token.is_none();
    let mut token = match token {
        Some(t) => t,
        None => crate::status::keystone_token(&client).await?,
    };
    let mut stats = Stats::default();
    let mut cursor = ledger.cursor()?;
    let base = url.trim_end_matches('/');
    loop {
        let page = format!(
            "{base}/v1/notifications?cursor={cursor}&limit={}",
            o.batch.clamp(1, 1000)
        );
        let r = match client
            .get(&page)
            .header("X-Auth-Token", &token)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // The server restarting: wait, the cursor is safe in the ledger.
                tracing::warn!("cannot reach {page}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let code = r.status().as_u16();
        if code == 401 && password {
            token = crate::status::keystone_token(&client).await?;
            continue;
        }
        let text = r.text().await.context("cannot read the answer")?;
        match code {
            200 => {}
            401 => bail!("{page}: the token was refused (401)"),
            403 => bail!("{page}: notifications of every project are for admins only (403)"),
            502..=504 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            _ => bail!("{page} answered {code}: {text}"),
        }
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{page}: {text}"))?;
        let next = v["next_cursor"]
            .as_u64()
            .with_context(|| format!("{page}: no next_cursor"))?;
        let rows = v["notifications"].as_array().cloned().unwrap_or_default();
        if rows.is_empty() && next == cursor {
            if o.once {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let batch = rows
            .into_iter()
            .map(|mut r| serde_json::from_value::<Notification>(r["notification"].take()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{page}: a notification of an unknown shape"))?;
        let c = commit(ledger, next, batch).await?;
        stats.add(c);
        cursor = c.cursor;
    }
    stats.cursor = cursor;
    Ok(stats)
}

/// How long JetStream waits for an ack before redelivering (to a restarted subscriber).
const ACK_WAIT: Duration = Duration::from_secs(5);

async fn nats(
    o: &BillingOptions,
    ledger: &Arc<Ledger>,
    url: &str,
    name: &str,
) -> anyhow::Result<Stats> {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    use futures::StreamExt;
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let js = async_nats::jetstream::new(client);
    let stream = loop {
        match js.get_stream(notifier::jetstream::STREAM).await {
            Ok(s) => break s,
            Err(e) if o.once => bail!("{}: {e}", notifier::jetstream::STREAM),
            Err(e) => {
                tracing::info!("waiting for {}: {e}", notifier::jetstream::STREAM);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut consumer = stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_string()),
                description: Some("stratus billing".into()),
                filter_subject: format!("{}.>", notifier::jetstream::SUBJECT_PREFIX),
                // Each message acknowledged on its own, after its commit: with
                // `AckPolicy::All`, acknowledging a batch would also acknowledge the
                // earlier messages still pending with a killed predecessor, which
                // would then never be redelivered.
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("durable consumer {name}"))?;
    let mut stats = Stats {
        cursor: ledger.cursor()?,
        ..Stats::default()
    };
    loop {
        let mut msgs = consumer
            .fetch()
            .max_messages(o.batch.max(1))
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .context("fetch")?;
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        let mut top = 0;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
            let info = m.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?;
            top = top.max(info.stream_sequence);
            let n: Notification = serde_json::from_slice(&m.payload).with_context(|| {
                format!(
                    "stream sequence {}: not a notification",
                    info.stream_sequence
                )
            })?;
            batch.push(n);
            acks.push(m);
        }
        if acks.is_empty() {
            if o.once {
                // Caught up only when nothing is left for this consumer, nor waiting
                // for redelivery (delivered to a predecessor that died before its ack).
                let info = consumer.info().await.context("consumer info")?;
                if info.num_pending == 0 && info.num_ack_pending == 0 {
                    break;
                }
            }
            continue;
        }
        let c = commit(ledger, top, batch).await?;
        stats.add(c);
        for m in acks {
            m.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        }
    }
    Ok(stats)
}

/// The rate card file at `path`, read and validated: its text and the card.
pub fn read_rates(path: &std::path::Path) -> anyhow::Result<(String, billing::RateCard)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the rate card {}", path.display()))?;
    let card =
        billing::RateCard::parse(&text).with_context(|| format!("rate card {}", path.display()))?;
    Ok((text, card))
}

/// `stratus billing report`: per-project totals over `[start, end)` as JSON, priced by
/// `rates` (else the card the subscriber stored, else every price 0).
pub fn report(
    ledger: &std::path::Path,
    start: domain::Timestamp,
    end: domain::Timestamp,
    project: Option<&str>,
    rates: Option<&std::path::Path>,
) -> anyhow::Result<Value> {
    if !ledger.exists() {
        bail!("no ledger at {}", ledger.display());
    }
    let l = Ledger::open(ledger)?;
    let card = match rates {
        Some(p) => read_rates(p)?.1,
        None => match l.rates()? {
            Some(t) => billing::RateCard::parse(&t).context("the ledger's rate card")?,
            None => billing::RateCard::default(),
        },
    };
    let r = l.report(start, end, project, &card)?;
    let iso = |t: domain::Timestamp| notifier::mapping::iso(t);
    Ok(serde_json::json!({
        "start": iso(r.start),
        "end": iso(r.end),
        "currency": r.currency,
        "tenant_usages": r.projects,
        "total_cost": r.projects.iter().fold(0.0, |s, p| s + p.cost),
        "cursor": r.cursor,
        "counted": r.counted,
    }))
}
