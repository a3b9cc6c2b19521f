//! `stratus bench --billing`: how fast the billing subscriber counts notifications.
//!
//! 1. the lifecycle benchmark ([`crate::bench::run`]) on the embedded store (its live
//!    notifier writes the notifications of every create, action and delete);
//! 2. every notification it left is read into memory, then committed to a fresh
//!    ledger in batches of `--billing` (what one HTTP page or JetStream fetch gives the
//!    subscriber): parse, fold, one durable redb transaction per batch. Transport is
//!    not included (see docs/BENCHMARKS.md for the end-to-end figure over HTTP).

use std::time::Instant;

use notifier::store::{EmbeddedNotifications, Feed, Filter};

use crate::bench::{self, BenchOptions, BenchReport};

/// What was measured.
#[derive(Debug)]
pub struct BillingBenchReport {
    /// The lifecycle run.
    pub lifecycle: BenchReport,
    /// Notifications committed.
    pub notifications: u64,
    /// Billing notifications counted among them.
    pub counted: u64,
    /// Batches (transactions).
    pub batches: u64,
    /// Wall time of the commits.
    pub seconds: f64,
}

/// Runs both steps (embedded store only); `batch` notifications per transaction.
pub async fn run(mut opts: BenchOptions, batch: usize) -> anyhow::Result<BillingBenchReport> {
    anyhow::ensure!(opts.nats.is_none(), "--billing runs on the embedded store");
    let dir = opts.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("stratus-bench-billing-{}", uuid::Uuid::new_v4()))
    });
    let remove = opts.data_dir.is_none();
    opts.data_dir = Some(dir.clone());
    let lifecycle = bench::run(opts).await?;

    let store = EmbeddedNotifications::open(&dir.join("notifications.redb"))?;
    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let (rows, upto) = store.read(cursor, 10_000, &Filter::default()).await?;
        all.extend(rows.into_iter().map(|(_, n)| n));
        if upto == cursor {
            break;
        }
        cursor = upto;
    }
    let ledger = billing::Ledger::open(&dir.join("billing-bench.redb"))?;
    let batch = batch.max(1);
    let t0 = Instant::now();
    let (mut counted, mut batches) = (0u64, 0u64);
    for (i, chunk) in all.chunks(batch).enumerate() {
        let c = ledger.commit(((i + 1) * batch) as u64, chunk)?;
        counted += c.counted as u64;
        batches += 1;
    }
    let seconds = t0.elapsed().as_secs_f64();
    drop(ledger);
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(BillingBenchReport {
        lifecycle,
        notifications: all.len() as u64,
        counted,
        batches,
        seconds,
    })
}
