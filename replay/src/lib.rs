//! Replay: rebuild the projections from the log and prove they match the stored ones,
//! and print an instance's history with its state after each event.
//!
//! Invariants:
//! - Rebuilding uses exactly the projection code the services use
//!   (`projections::Views::apply`), folding each stream up to the position the stored
//!   views claim, so a mismatch is a real divergence, never an artefact of timing.
//! - The rebuild folds into the read models registered in the stored views
//!   ([`projections::Views::empty_like`]) and compares every one of them, by model
//!   name and key; nothing here names a model.

pub mod audit;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use domain::instance::{self, Instance};
use domain::{Event, InstanceId};
use eventlog::{EventLog, LogError, StreamName, Subject};
use projections::{codec, Views};

/// The one error enum of replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log failed.
    #[error("event log: {0}")]
    Log(#[from] LogError),
    /// The projection store failed.
    #[error("{0}")]
    Store(#[from] projections::store::StoreError),
    /// An event could not be decoded.
    #[error("{0}")]
    Codec(#[from] codec::CodecError),
}

/// Outcome of a rebuild.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    /// Commits folded.
    pub commits: u64,
    /// Events folded.
    pub events: u64,
    /// Seconds spent folding.
    pub seconds: f64,
    /// Whether the rebuilt views equal the stored ones.
    pub matches: bool,
    /// Human-readable differences (at most 20).
    pub differences: Vec<String>,
    /// Positions folded to, per stream.
    pub positions: BTreeMap<StreamName, u64>,
    /// Commits in the log beyond the stored positions (the stored views lag).
    pub lag: u64,
}

impl RebuildReport {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Folds one stream into fresh views up to `limit`. Reading (and decoding commits)
/// runs ahead of applying, on another task, so both cores work.
async fn fold_stream(
    mut v: Views,
    log: Arc<dyn EventLog>,
    stream: StreamName,
    limit: u64,
) -> Result<(Views, u64), ReplayError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<eventlog::Commit>>(4);
    let reader = tokio::spawn(async move {
        let mut from = 1u64;
        while from <= limit {
            let mut batch = log.read_stream(&stream, from, 2048).await?;
            batch.retain(|c| c.stream_seq <= limit);
            let Some(last) = batch.last().map(|c| c.stream_seq) else {
                break;
            };
            from = last + 1;
            if tx.send(batch).await.is_err() {
                break;
            }
        }
        Ok::<_, LogError>(())
    });
    let mut commits = 0u64;
    while let Some(batch) = rx.recv().await {
        let mut touched = projections::Touched::default();
        for c in &batch {
            v.apply(c, &mut touched);
        }
        commits += batch.len() as u64;
    }
    reader
        .await
        .map_err(|e| ReplayError::Log(LogError::Storage(e.to_string())))??;
    Ok((v, commits))
}

/// Folds the log into fresh built-in views up to `upto` (per stream; missing =
/// everything).
pub async fn fold(
    log: Arc<dyn EventLog>,
    upto: &BTreeMap<StreamName, u64>,
) -> Result<(Views, u64), ReplayError> {
    fold_into(&Views::default(), log, upto).await
}

/// Folds the log up to `upto` into empty views with the models registered in
/// `models`. Streams are independent, so they are folded in parallel and merged.
pub async fn fold_into(
    models: &Views,
    log: Arc<dyn EventLog>,
    upto: &BTreeMap<StreamName, u64>,
) -> Result<(Views, u64), ReplayError> {
    let mut tasks = Vec::new();
    for stream in log.streams().await? {
        let limit = upto.get(&stream).copied().unwrap_or(u64::MAX);
        let log = log.clone();
        let part = models.empty_like();
        tasks.push(tokio::spawn(fold_stream(part, log, stream, limit)));
    }
    let mut v = models.empty_like();
    let mut commits = 0;
    for t in tasks {
        let (part, n) = t
            .await
            .map_err(|e| ReplayError::Log(LogError::Storage(e.to_string())))??;
        v.merge(part);
        commits += n;
    }
    v.rebuild_indexes();
    Ok((v, commits))
}

/// Compares two views row by row, every registered model and every stream position
/// (derived counters excluded); at most 20 differences.
pub fn compare(stored: &Views, rebuilt: &Views) -> Vec<String> {
    let mut d = stored.differences(rebuilt);
    d.truncate(20);
    d
}

/// Rebuilds from `log` and compares with `stored`.
pub async fn rebuild(log: Arc<dyn EventLog>, stored: &Views) -> Result<RebuildReport, ReplayError> {
    let mut upto = stored.positions.clone();
    // Streams never projected are folded from nothing to nothing.
    for s in log.streams().await? {
        upto.entry(s).or_insert(0);
    }
    let t0 = Instant::now();
    let (rebuilt, commits) = fold_into(stored, log.clone(), &upto).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut lag = 0;
    for (s, p) in &upto {
        lag += log.last_stream_seq(s).await?.saturating_sub(*p);
    }
    let differences = compare(stored, &rebuilt);
    Ok(RebuildReport {
        commits,
        events: rebuilt.events_applied,
        seconds,
        matches: differences.is_empty(),
        differences,
        positions: rebuilt.positions.clone(),
        lag,
    })
}

/// Rebuilds the projections of a data directory (the service must be stopped).
pub async fn rebuild_data_dir(data_dir: &Path) -> Result<RebuildReport, ReplayError> {
    let log = eventlog::EmbeddedLog::open(&data_dir.join("log"))?;
    let store = projections::ProjectionStore::open(&data_dir.join("projections.redb"))?;
    let stored = store.load()?;
    let dynlog: Arc<dyn EventLog> = log.clone();
    let r = rebuild(dynlog, &stored).await;
    log.close();
    r
}

/// One step of an instance's history.
#[derive(Debug, Clone)]
pub struct HistoryStep {
    /// The commit's subject.
    pub subject: Subject,
    /// Subject sequence.
    pub subject_seq: u64,
    pub event_type: String,
    /// Time (µs since epoch).
    pub occurred_at: i64,
    pub request_id: String,
    /// Actor user.
    pub actor: String,
    /// State after the event.
    pub state: Option<Instance>,
}

/// One step of an instance's history as [`visit_history`] shows it: borrowed from the
/// read and from the fold, valid for the call only.
#[derive(Debug, Clone, Copy)]
pub struct StepRef<'a> {
    /// The commit's subject.
    pub subject: &'a Subject,
    /// Subject sequence.
    pub subject_seq: u64,
    pub event_type: &'a str,
    /// Time (µs since epoch).
    pub occurred_at: i64,
    pub request_id: &'a str,
    /// Actor user.
    pub actor: &'a str,
    /// State after the event.
    pub state: Option<&'a Instance>,
}

/// The history of one instance, kept: every step with its own copy of the state.
/// Looking at each step once ([`visit_history`]) avoids the copies.
pub async fn history(log: &dyn EventLog, id: InstanceId) -> Result<Vec<HistoryStep>, ReplayError> {
    let mut steps = Vec::new();
    visit_history(log, id, |s| {
        steps.push(HistoryStep {
            subject: s.subject.clone(),
            subject_seq: s.subject_seq,
            event_type: s.event_type.to_string(),
            occurred_at: s.occurred_at,
            request_id: s.request_id.to_string(),
            actor: s.actor.to_string(),
            state: s.state.cloned(),
        })
    })
    .await?;
    Ok(steps)
}

/// Folds the history of one instance (its api-subject commits, then its cell-subject
/// commits) and shows `visit` each event with the state after it; returns the number of
/// steps. The commits are looked at in place ([`EventLog::read_subject_records`]) and
/// the state is folded once, not copied per step.
pub async fn visit_history(
    log: &dyn EventLog,
    id: InstanceId,
    mut visit: impl FnMut(StepRef<'_>),
) -> Result<usize, ReplayError> {
    let api = Subject::api(eventlog::SubjectKind::Instance, &id.to_string())?;
    let mut reads = vec![(api.clone(), log.read_subject_records(&api, 1).await?)];
    for s in log.streams().await? {
        if s == StreamName::api() {
            continue;
        }
        let subj = Subject::cell(&s, eventlog::SubjectKind::Instance, &id.to_string())?;
        let read = log.read_subject_records(&subj, 1).await?;
        reads.push((subj, read));
    }
    let mut state: Option<Instance> = None;
    let mut n = 0usize;
    for (subject, c) in reads
        .iter()
        .flat_map(|(subject, read)| read.iter().map(move |c| (subject, c)))
    {
        let c = c?;
        for e in &c.events {
            if e.event_type.starts_with("instance.") {
                if let Event::Instance(ie) =
                    codec::decode_parts(e.event_type, e.version, e.payload)?
                {
                    state = instance::evolve(state.take(), &ie);
                }
            }
            visit(StepRef {
                subject,
                subject_seq: c.subject_seq,
                event_type: e.event_type,
                occurred_at: c.meta.occurred_at,
                request_id: c.meta.correlation_id,
                actor: c.meta.actor.user,
                state: state.as_ref(),
            });
            n += 1;
        }
    }
    Ok(n)
}

/// One project's quota usage two ways: what its ledger holds and what its live
/// instances use ([`domain::quota::expected_usage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaLine {
    /// Project id.
    pub project: String,
    /// The ledger's total (holdings and resize deltas).
    pub ledger: domain::quota::Usage,
    /// The sum over the project's live instances.
    pub live: domain::quota::Usage,
}

impl QuotaLine {
    /// Whether the two agree.
    pub fn matches(&self) -> bool {
        self.ledger == self.live
    }
}

/// Quota audit of folded views: for every project with a ledger or an instance, its
/// ledger usage against its live instances'. On a settled log (no request in flight,
/// the quota reactor caught up) every line matches; a line that does not names a leak
/// (ledger above) or an admission that was bypassed (ledger below).
pub fn quota_audit(v: &Views) -> Vec<QuotaLine> {
    use domain::quota::{expected_usage, Usage};
    let mut lines: BTreeMap<String, (Usage, Usage)> = BTreeMap::new();
    for (project, row) in v.quotas().ledgers() {
        lines.entry(project).or_default().0 = row.state.used(None);
    }
    for row in v.instances().values() {
        if let Some(i) = row.state() {
            let e = lines.entry(i.spec.project_id.clone()).or_default();
            e.1 = e.1.plus(expected_usage(i));
        }
    }
    lines
        .into_iter()
        .map(|(project, (ledger, live))| QuotaLine {
            project,
            ledger,
            live,
        })
        .collect()
}
