//! Audit reads of the log: an instance's state at any instant, and the log itself,
//! filtered and paged by position. One implementation serves the native API
//! (`GET /v1/instances/{id}/state`, `GET /v1/events`, `GET /v1/events/stream`) and the
//! CLI (`stratus replay state`, `stratus replay export`), on both backends.
//!
//! Invariants:
//! - State at an instant is folded with the domain's own [`instance::evolve`] over the
//!   instance's api-subject commits then its cell-subject commits (its history order:
//!   the api subject is written only until the instance is placed, the cell subject
//!   only from then on), so it is exactly what the projections held at that point.
//!   The API starts that fold from a snapshot of the `instance_folds` read model
//!   ([`state_at_indexed`]) and gets exactly the plain fold's answer ([`state_at`]):
//!   same state, same last event, same count (`replay/tests/state_at.rs`).
//! - A [`Cursor`] holds, per stream, how far the reader has gone: every commit up to a
//!   sequence, plus the first events of the next commit. Pages and server-sent events
//!   advance it event by event over commits read in stream order, so resuming from a
//!   cursor never skips nor repeats an event; a stream absent from it (a cell added
//!   later) is read from its start.
//! - An event's project is the project of the resource it changes (an instance's owner,
//!   a quota ledger's or server groups' project, the project itself), never the
//!   caller's: members of a project see what happened to their project's resources,
//!   whoever did it. Events of resources without a project (hosts, flavors, cells,
//!   users, key pairs, aggregates, images) are visible to admins only.
//! - One request scans a bounded number of commits ([`Scan::budget`]); what it did not
//!   reach is left to the next cursor.

use std::collections::{BTreeMap, HashMap, VecDeque};

use base64::Engine as _;
use domain::instance::{self, Instance, InstanceEvent};
use domain::{Event, InstanceId, Timestamp};
use eventlog::{Commit, EventLog, StreamName, Subject, SubjectKind};
use projections::codec;
use projections::instance_folds::{InstanceFold, InstanceFolds};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::ReplayError;

/// Default page size of [`scan`].
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size of [`scan`].
pub const MAX_LIMIT: usize = 1000;
/// Commits one [`scan`] reads at most (default).
pub const DEFAULT_BUDGET: usize = 20_000;
/// Clock skew tolerated between writers when a time bound skips or ends a stream.
const SKEW_US: i64 = 60_000_000;

/// A bad audit argument (a 400 to the API, a usage error to the CLI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Parses an RFC 3339 time (`2026-12-04T03:00:00Z`, any offset, optional fraction).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000)
        .ok()
        .map(Timestamp)
}

/// `2026-12-04T03:00:00.123456Z` (the native API's time format).
pub fn format_time(ts: Timestamp) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ts.0 as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(f).unwrap_or_default()
}

/// The instant of a state-at question: a time, or a log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// Every commit that occurred at or before this time.
    Time(Timestamp),
    /// `<stream>:<seq>`: every commit of the instance up to position `seq` of `stream`
    /// (on the api stream: its api-subject commits; on a cell stream: its api-subject
    /// commits, all earlier than its placement, and its cell-subject commits up to
    /// there).
    Position(StreamName, u64),
}

impl At {
    /// Parses `<RFC 3339 time>` or `<stream>:<seq>`.
    pub fn parse(s: &str) -> Result<At, BadInput> {
        if let Some((stream, seq)) = s.split_once(':') {
            if let (Ok(stream), Ok(seq)) = (StreamName::new(stream), seq.parse::<u64>()) {
                return Ok(At::Position(stream, seq));
            }
        }
        parse_time(s).map(At::Time).ok_or_else(|| {
            BadInput(format!(
                "Invalid at {s:?}: expected an RFC 3339 time (2026-01-31T12:00:00Z) or a log position <stream>:<seq> (api:42, cell1:1234)."
            ))
        })
    }
}

/// Where one event sits in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub stream: StreamName,
    pub stream_seq: u64,
    pub subject: Subject,
    pub occurred_at: Timestamp,
    pub event_type: String,
    pub event_id: String,
}

impl Position {
    /// `<stream>:<seq>`, the form [`At::parse`] reads back.
    pub fn log_position(&self) -> String {
        format!("{}:{}", self.stream, self.stream_seq)
    }
}

/// The answer to "what was this instance at that instant".
#[derive(Debug, Clone)]
pub struct StateAt {
    /// The folded state.
    pub state: Instance,
    /// The last event folded.
    pub last: Position,
    /// Events folded.
    pub events: u64,
}

/// Every commit of an instance in history order: its api subject, then its cell
/// subject (`cell`, when the caller knows it; otherwise every cell stream is looked at).
pub async fn instance_commits(
    log: &dyn EventLog,
    id: InstanceId,
    cell: Option<Subject>,
) -> Result<Vec<Commit>, ReplayError> {
    let api = Subject::api(SubjectKind::Instance, &id.to_string())?;
    let mut commits = log.read_subject(&api, 1).await?;
    match cell {
        Some(s) => commits.extend(log.read_subject(&s, 1).await?),
        None => {
            for s in log.streams().await? {
                if s == StreamName::api() {
                    continue;
                }
                let subj = Subject::cell(&s, SubjectKind::Instance, &id.to_string())?;
                commits.extend(log.read_subject(&subj, 1).await?);
            }
        }
    }
    Ok(commits)
}

/// Folds `commits` (history order) up to `at`; `None` when nothing is folded (the
/// instance did not exist yet).
pub fn fold_at(commits: &[Commit], at: &At) -> Result<Option<StateAt>, ReplayError> {
    // The prefix of the history that `at` selects.
    let end = match at {
        At::Time(t) => commits
            .iter()
            .position(|c| c.meta.occurred_at > t.0)
            .unwrap_or(commits.len()),
        At::Position(stream, seq) => match commits
            .iter()
            .rposition(|c| &c.stream == stream && c.stream_seq <= *seq)
        {
            Some(i) => i + 1,
            None => 0,
        },
    };
    let mut state: Option<Instance> = None;
    let mut last = None;
    let mut events = 0u64;
    for c in &commits[..end] {
        for e in &c.events {
            if let Event::Instance(ie) = codec::decode(e)? {
                state = instance::evolve(state.take(), &ie);
            }
            events += 1;
            last = Some((c, e));
        }
    }
    Ok(match (state, last) {
        (Some(state), Some((c, e))) => Some(StateAt {
            state,
            last: Position {
                stream: c.stream.clone(),
                stream_seq: c.stream_seq,
                subject: c.subject.clone(),
                occurred_at: Timestamp(c.meta.occurred_at),
                event_type: e.event_type.clone(),
                event_id: e.event_id.to_string(),
            },
            events,
        }),
        _ => None,
    })
}

/// The instance `id` as it was at `at`, read from the log.
pub async fn state_at(
    log: &dyn EventLog,
    id: InstanceId,
    cell: Option<Subject>,
    at: &At,
) -> Result<Option<StateAt>, ReplayError> {
    let commits = instance_commits(log, id, cell).await?;
    fold_at(&commits, at)
}

/// Commits read per ranged read when folding forward from a snapshot.
const CHUNK: usize = projections::instance_folds::BLOCK as usize + 1;

/// The snapshots a state-at question may start from (picked from the
/// [`InstanceFolds`](projections::instance_folds::InstanceFolds) model by
/// [`pick_snapshots`]): one per subject of the history, each the latest usable one that
/// the question's prefix contains whole.
#[derive(Debug, Clone, Default)]
pub struct Snapshots {
    pub api: Option<InstanceFold>,
    pub cell: Option<InstanceFold>,
}

/// Picks the snapshots for `at` of instance `id` whose cell subject is `cell`.
pub fn pick_snapshots(
    folds: &InstanceFolds,
    id: InstanceId,
    cell: Option<&Subject>,
    at: &At,
) -> Snapshots {
    let Ok(api) = Subject::api(SubjectKind::Instance, &id.to_string()) else {
        return Snapshots::default();
    };
    // Which snapshots the prefix `at` selects contains whole (see `fold_at`).
    let within = |subject: &Subject, r: &InstanceFold| match at {
        At::Time(t) => r.max_at <= t.0,
        // A position on this subject's stream bounds it; on another stream, this subject
        // is wholly before (api, when `at` is on the cell stream) or wholly after it.
        At::Position(stream, seq) => {
            if subject.stream() == *stream {
                r.stream_seq <= *seq
            } else {
                true
            }
        }
    };
    Snapshots {
        // (Api subjects are not indexed today; a row would be used the same way.)
        api: folds.latest(&api, true, |r| within(&api, r)),
        cell: cell.and_then(|c| folds.latest(c, false, |r| within(c, r))),
    }
}

/// A fold in progress: the plain fold's three results.
#[derive(Default)]
struct Acc {
    state: Option<Instance>,
    last: Option<Position>,
    events: u64,
    commits: u64,
}

impl Acc {
    fn fold(&mut self, c: &Commit) -> Result<(), ReplayError> {
        for e in &c.events {
            if let Event::Instance(ie) = codec::decode(e)? {
                self.state = instance::evolve(self.state.take(), &ie);
            }
            self.events += 1;
        }
        if let Some(e) = c.events.last() {
            self.last = Some(Position {
                stream: c.stream.clone(),
                stream_seq: c.stream_seq,
                subject: c.subject.clone(),
                occurred_at: Timestamp(c.meta.occurred_at),
                event_type: e.event_type.clone(),
                event_id: e.event_id.to_string(),
            });
        }
        self.commits += 1;
        Ok(())
    }

    /// Starts from `snap` (a fold of `subject` alone), on top of `base` events of the
    /// subjects before it.
    fn start_from(&mut self, subject: &Subject, snap: &InstanceFold, base: u64) {
        self.state.clone_from(&snap.state);
        self.events = base + snap.events;
        self.last = Some(Position {
            stream: subject.stream(),
            stream_seq: snap.stream_seq,
            subject: subject.clone(),
            occurred_at: Timestamp(snap.occurred_at),
            event_type: snap.last_type.clone(),
            event_id: snap.last_event_id.to_string(),
        });
        self.commits += 1;
    }

    fn into_state(self) -> Option<StateAt> {
        match (self.state, self.last) {
            (Some(state), Some(last)) => Some(StateAt {
                state,
                last,
                events: self.events,
            }),
            _ => None,
        }
    }
}

/// Folds `subject` into `acc` from `snap` (or its first commit) while `keep` holds;
/// true when it stopped at a commit `keep` refused (the prefix ends inside it).
async fn fold_subject(
    log: &dyn EventLog,
    subject: &Subject,
    snap: Option<&InstanceFold>,
    keep: impl Fn(&Commit) -> bool,
    acc: &mut Acc,
) -> Result<bool, ReplayError> {
    let (mut from, mut after) = (1, 0);
    if let Some(s) = snap {
        let base = acc.events;
        acc.start_from(subject, s, base);
        (from, after) = (s.subject_seq + 1, s.stream_seq);
    }
    loop {
        let batch = log.read_subject_range(subject, from, after, CHUNK).await?;
        for c in &batch {
            if !keep(c) {
                return Ok(true);
            }
            acc.fold(c)?;
        }
        match batch.last() {
            Some(c) if batch.len() == CHUNK => (from, after) = (c.subject_seq + 1, c.stream_seq),
            _ => return Ok(false),
        }
    }
}

/// The instance `id` as it was at `at`, folded forward from the nearest snapshots at or
/// before `at` ([`pick_snapshots`]); exactly [`state_at`] (the plain fold), reading the
/// api subject (a few commits) and at most about
/// [`BLOCK`](projections::instance_folds::BLOCK) commits of the cell subject when the
/// snapshots are current. Without the cell subject (`None`), the plain fold.
pub async fn state_at_indexed(
    log: &dyn EventLog,
    id: InstanceId,
    cell: Option<Subject>,
    at: &At,
    snaps: &Snapshots,
) -> Result<Option<StateAt>, ReplayError> {
    let Some(cell) = cell else {
        return state_at(log, id, None, at).await;
    };
    let api = Subject::api(SubjectKind::Instance, &id.to_string())?;
    let mut acc = Acc::default();
    match at {
        At::Time(t) => {
            let keep = |c: &Commit| c.meta.occurred_at <= t.0;
            if fold_subject(log, &api, snaps.api.as_ref(), keep, &mut acc).await? {
                return Ok(acc.into_state());
            }
            fold_subject(log, &cell, snaps.cell.as_ref(), keep, &mut acc).await?;
        }
        At::Position(stream, seq) if *stream == api.stream() => {
            let keep = |c: &Commit| c.stream_seq <= *seq;
            fold_subject(log, &api, snaps.api.as_ref(), keep, &mut acc).await?;
        }
        At::Position(stream, seq) if *stream == cell.stream() => {
            fold_subject(log, &api, snaps.api.as_ref(), |_| true, &mut acc).await?;
            let before = acc.commits;
            let keep = |c: &Commit| c.stream_seq <= *seq;
            fold_subject(log, &cell, snaps.cell.as_ref(), keep, &mut acc).await?;
            // A position on the cell stream before the cell subject's first commit
            // selects nothing (no commit of the history is at or before it there).
            if acc.commits == before {
                return Ok(None);
            }
        }
        // A position on a stream the history does not touch selects nothing.
        At::Position(..) => return Ok(None),
    }
    Ok(acc.into_state())
}

/// The native JSON of an instance's state (the `InstanceState` schema of
/// docs/openapi/compute.json).
pub fn state_json(i: &Instance) -> Value {
    let t = |ts: Option<Timestamp>| ts.map(format_time);
    json!({
        "id": i.spec.id.to_string(),
        "name": i.spec.name,
        "project_id": i.spec.project_id,
        "user_id": i.spec.user_id,
        "status": i.status(),
        "vm_state": i.vm_state.as_str(),
        "task_state": i.task_state.map(|t| t.as_str()),
        "power_state": i.power_state.code(),
        "host": i.host.as_ref().map(|h| h.as_str()),
        "cell": i.cell.as_ref().map(|c| c.as_str()),
        "flavor": {
            "id": i.flavor.spec.id.as_str(),
            "name": i.flavor.spec.name,
            "vcpus": i.flavor.spec.vcpus,
            "ram": i.flavor.spec.ram_mb,
            "disk": i.flavor.spec.disk_gb,
            "ephemeral": i.flavor.spec.ephemeral_gb,
            "swap": i.flavor.spec.swap_mb,
            "extra_specs": i.flavor.extra_specs,
        },
        "image": i.spec.image_ref,
        "locked": i.locked.is_some(),
        "locked_reason": i.locked.as_ref().and_then(|l| l.reason.clone()),
        "fault": i.fault.as_ref().map(|f| json!({
            "code": f.code,
            "message": f.message,
            "created": format_time(f.created),
        })),
        "action": i.op.as_ref().map(|o| o.action.api_name()),
        "created_at": format_time(i.created_at),
        "updated_at": format_time(i.updated_at),
        "launched_at": t(i.launched_at),
        "terminated_at": t(i.terminated_at),
        "shelved_at": t(i.shelved_at),
        "deleted": i.deleted,
    })
}

/// The response of a state-at question (the `InstanceStateAt` schema).
pub fn state_at_json(s: &StateAt) -> Value {
    json!({
        "state": state_json(&s.state),
        "last_event": {
            "position": s.last.log_position(),
            "stream": s.last.stream.as_str(),
            "stream_seq": s.last.stream_seq,
            "subject": s.last.subject.as_str(),
            "type": s.last.event_type,
            "event_id": s.last.event_id,
            "occurred_at": format_time(s.last.occurred_at),
        },
        "events_folded": s.events,
    })
}

/// How far a reader has gone in one stream: every commit up to `seq`, plus the first
/// `part` events of commit `seq + 1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub seq: u64,
    pub part: u32,
}

/// Positions per stream; opaque to clients (base64url of `api:12,cell1:40+2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(pub BTreeMap<StreamName, Pos>);

impl Cursor {
    /// Where `stream` resumes.
    pub fn pos(&self, stream: &StreamName) -> Pos {
        self.0.get(stream).copied().unwrap_or_default()
    }

    /// Records that event `index` of commit `c` has been consumed.
    pub fn advance(&mut self, c: &Commit, index: usize) {
        let pos = if index + 1 >= c.events.len() {
            Pos {
                seq: c.stream_seq,
                part: 0,
            }
        } else {
            Pos {
                seq: c.stream_seq - 1,
                part: index as u32 + 1,
            }
        };
        self.0.insert(c.stream.clone(), pos);
    }

    /// The opaque form.
    pub fn encode(&self) -> String {
        let text: Vec<String> = self
            .0
            .iter()
            .map(|(s, p)| {
                if p.part > 0 {
                    format!("{s}:{}+{}", p.seq, p.part)
                } else {
                    format!("{s}:{}", p.seq)
                }
            })
            .collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text.join(","))
    }

    /// Reads the opaque form back.
    pub fn decode(s: &str) -> Result<Cursor, BadInput> {
        let bad = || BadInput(format!("Invalid cursor {s:?}."));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let mut out = BTreeMap::new();
        for item in text.split(',').filter(|x| !x.is_empty()) {
            let (stream, rest) = item.split_once(':').ok_or_else(bad)?;
            let stream = StreamName::new(stream).map_err(|_| bad())?;
            let (seq, part) = match rest.split_once('+') {
                Some((a, b)) => (a, b.parse::<u32>().map_err(|_| bad())?),
                None => (rest, 0),
            };
            let seq = seq.parse::<u64>().map_err(|_| bad())?;
            out.insert(stream, Pos { seq, part });
        }
        Ok(Cursor(out))
    }
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events of this project's resources.
    pub project: Option<String>,
    /// The caller may see only this project's events (`None`: an admin, everything).
    pub viewer: Option<String>,
    /// Only this instance's events (reads only its subjects).
    pub instance: Option<InstanceId>,
    /// Event types: exact names or prefixes ending in `*` (`instance.*`); empty = all.
    pub types: Vec<String>,
    /// Occurred at or after.
    pub since: Option<Timestamp>,
    /// Occurred at or before.
    pub until: Option<Timestamp>,
}

impl Filter {
    /// Parses a comma-separated `type` query.
    pub fn parse_types(s: &str) -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect()
    }

    fn type_matches(&self, t: &str) -> bool {
        self.types.is_empty()
            || self.types.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => t.starts_with(prefix),
                None => p == t,
            })
    }

    fn time_matches(&self, at: i64) -> bool {
        self.since.is_none_or(|s| at >= s.0) && self.until.is_none_or(|u| at <= u.0)
    }

    fn project_matches(&self, p: Option<&str>) -> bool {
        self.viewer.as_deref().is_none_or(|v| p == Some(v))
            && self.project.as_deref().is_none_or(|f| p == Some(f))
    }
}

/// Finds the project of the resource a commit changes. Instance commits carry their
/// project only in `build_requested` / `placed` / `build_failed`; the others are found
/// from what was learned then, or from `lookup` (the service's views).
pub struct Projects {
    learned: HashMap<String, String>,
    lookup: Lookup,
}

/// Finds the project of an instance the reader has not seen created.
type Lookup = Box<dyn Fn(&InstanceId) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for Projects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projects")
            .field("learned", &self.learned.len())
            .finish()
    }
}

impl Default for Projects {
    fn default() -> Self {
        Projects::new(|_| None)
    }
}

impl Projects {
    /// A resolver falling back to `lookup` for instances it has not seen created.
    pub fn new(lookup: impl Fn(&InstanceId) -> Option<String> + Send + Sync + 'static) -> Self {
        Projects {
            learned: HashMap::new(),
            lookup: Box::new(lookup),
        }
    }

    /// The project of the resource `c` changes.
    pub fn of(&mut self, c: &Commit, events: &[Option<Event>]) -> Option<String> {
        let id = Subject::untoken(c.subject.id_token())?;
        match c.subject.kind()? {
            SubjectKind::Instance => {
                for e in events.iter().flatten() {
                    let p = match e {
                        Event::Instance(InstanceEvent::BuildRequested { spec, .. }) => {
                            Some(spec.project_id.clone())
                        }
                        Event::Instance(
                            InstanceEvent::Placed { snapshot, .. }
                            | InstanceEvent::BuildFailed { snapshot, .. },
                        ) => Some(snapshot.spec.project_id.clone()),
                        _ => None,
                    };
                    if let Some(p) = p {
                        self.learned.insert(id.clone(), p.clone());
                        return Some(p);
                    }
                }
                if let Some(p) = self.learned.get(&id) {
                    return Some(p.clone());
                }
                let p = (self.lookup)(&InstanceId::parse(&id)?)?;
                self.learned.insert(id, p.clone());
                Some(p)
            }
            SubjectKind::Quota | SubjectKind::ServerGroups | SubjectKind::Project => Some(id),
            _ => None,
        }
    }
}

/// One event of the log with its envelope.
#[derive(Debug, Clone)]
pub struct Record {
    pub stream: StreamName,
    pub stream_seq: u64,
    pub subject: Subject,
    pub subject_seq: u64,
    /// Index of the event in its commit.
    pub index: usize,
    pub event_type: String,
    pub version: u16,
    pub occurred_at: Timestamp,
    pub request_id: String,
    pub causation_id: String,
    pub actor: eventlog::Actor,
    pub event_id: String,
    /// The project of the resource it changes.
    pub project: Option<String>,
    /// The decoded payload (`None` when the codec does not know it).
    pub payload: Option<Value>,
}

impl Record {
    /// The envelope JSON (the `LogEvent` schema; one line of `stratus replay export`).
    pub fn to_json(&self) -> Value {
        json!({
            "stream": self.stream.as_str(),
            "stream_seq": self.stream_seq,
            "subject": self.subject.as_str(),
            "sequence": self.subject_seq,
            "type": self.event_type,
            "version": self.version,
            "occurred_at": format_time(self.occurred_at),
            "request_id": self.request_id,
            "causation_id": self.causation_id,
            "actor": {
                "user": self.actor.user,
                "project": self.actor.project,
                "roles": self.actor.roles,
            },
            "event_id": self.event_id,
            "project": self.project,
            "payload": self.payload,
        })
    }
}

/// The payload JSON of a domain event: its fields, without the enum wrappers (the
/// type name already says which variant), password hashes and secrets removed.
pub fn payload_json(e: &Event) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    for _ in 0..2 {
        let inner = match &v {
            Value::Object(m) if m.len() == 1 => {
                let (k, inner) = m.iter().next().expect("one key");
                k.starts_with(|c: char| c.is_ascii_uppercase())
                    .then(|| inner.clone())
            }
            _ => None,
        };
        match inner {
            Some(i) => v = i,
            None => break,
        }
    }
    redact(&mut v);
    v
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                // Webhook subscription secrets are write-only too.
                if k.contains("password") || k == "secret" {
                    *x = Value::String("***".into());
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Matches commits against a filter, event by event.
#[derive(Debug)]
pub struct Matcher {
    pub filter: Filter,
    pub projects: Projects,
}

impl Matcher {
    /// The matching events of `c` from event `from` on, each with its index.
    pub fn records(&mut self, c: &Commit, from: usize) -> Vec<Record> {
        if let Some(id) = &self.filter.instance {
            if c.subject.kind() != Some(SubjectKind::Instance)
                || Subject::untoken(c.subject.id_token()).as_deref() != Some(&id.to_string())
            {
                return Vec::new();
            }
        }
        let decoded: Vec<Option<Event>> = c.events.iter().map(|e| codec::decode(e).ok()).collect();
        // Learn the project even from events filtered out (a creation before `since`).
        let project = self.projects.of(c, &decoded);
        if !self.filter.time_matches(c.meta.occurred_at)
            || !self.filter.project_matches(project.as_deref())
        {
            return Vec::new();
        }
        c.events
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, e)| self.filter.type_matches(&e.event_type))
            .map(|(i, e)| Record {
                stream: c.stream.clone(),
                stream_seq: c.stream_seq,
                subject: c.subject.clone(),
                subject_seq: c.subject_seq,
                index: i,
                event_type: e.event_type.clone(),
                version: e.version,
                occurred_at: Timestamp(c.meta.occurred_at),
                request_id: c.meta.correlation_id.clone(),
                causation_id: c.meta.causation_id.clone(),
                actor: c.meta.actor.clone(),
                event_id: e.event_id.to_string(),
                project: project.clone(),
                payload: decoded[i].as_ref().map(payload_json),
            })
            .collect()
    }
}

/// Bounds of one [`scan`].
#[derive(Debug, Clone, Copy)]
pub struct Scan {
    /// Events returned at most.
    pub limit: usize,
    /// Commits read at most.
    pub budget: usize,
    /// Start streams the cursor does not name at `since` (a binary search) rather than
    /// at their beginning. Only when the projects of instances created before `since`
    /// can be looked up ([`Projects::new`]); otherwise they are learned by reading.
    pub seek_since: bool,
}

impl Default for Scan {
    fn default() -> Self {
        Scan {
            limit: DEFAULT_LIMIT,
            budget: DEFAULT_BUDGET,
            seek_since: true,
        }
    }
}

/// One page of the log.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<Record>,
    /// Where the next page starts.
    pub next: Cursor,
    /// False when the scan reached the end of every stream (or of the time window):
    /// the next page holds only what is appended later.
    pub more: bool,
    /// Commits read.
    pub scanned: usize,
}

/// Reads one page of the log after `cursor`: the matching events, merged across
/// streams by time (each stream in its own order), at most `scan.limit` of them,
/// reading at most about `scan.budget` commits.
pub async fn scan(
    log: &dyn EventLog,
    m: &mut Matcher,
    cursor: &Cursor,
    scan: Scan,
    instance_cell: Option<Subject>,
) -> Result<Page, ReplayError> {
    let limit = scan.limit.clamp(1, MAX_LIMIT);
    let mut next = cursor.clone();
    let mut events = Vec::new();
    if let Some(id) = m.filter.instance {
        // Only the instance's subjects: its history, after the cursor.
        let commits = instance_commits(log, id, instance_cell).await?;
        let scanned = commits.len();
        for c in &commits {
            let pos = next.pos(&c.stream);
            if c.stream_seq <= pos.seq {
                continue;
            }
            let from = if c.stream_seq == pos.seq + 1 {
                pos.part as usize
            } else {
                0
            };
            if take(m, c, from, limit, &mut events, &mut next) {
                return Ok(Page {
                    events,
                    next,
                    more: true,
                    scanned,
                });
            }
        }
        return Ok(Page {
            events,
            next,
            more: false,
            scanned,
        });
    }
    let mut streams = log.streams().await?;
    streams.sort();
    let chunk = (scan.budget / streams.len().max(1)).clamp(16, 2048);
    let mut bufs: BTreeMap<StreamName, (VecDeque<Commit>, u64, bool)> = BTreeMap::new();
    for s in streams {
        let mut from = cursor.pos(&s).seq + 1;
        if scan.seek_since && !cursor.0.contains_key(&s) {
            if let Some(since) = m.filter.since {
                from = first_at_or_after(log, &s, since.0 - SKEW_US).await?;
            }
        }
        bufs.insert(s, (VecDeque::new(), from, false));
    }
    let mut scanned = 0usize;
    loop {
        // Refill the empty buffers (a stream with an empty buffer cannot be merged:
        // its next commit may be the earliest).
        for (s, (buf, from, done)) in bufs.iter_mut() {
            if buf.is_empty() && !*done {
                if scanned >= scan.budget {
                    return Ok(Page {
                        events,
                        next,
                        more: true,
                        scanned,
                    });
                }
                let batch = log.read_stream(s, *from, chunk).await?;
                scanned += batch.len();
                if batch.len() < chunk {
                    *done = true;
                }
                if let Some(last) = batch.last() {
                    *from = last.stream_seq + 1;
                }
                buf.extend(batch);
            }
        }
        // The earliest head.
        let Some(s) = bufs
            .iter()
            .filter_map(|(s, (b, _, _))| b.front().map(|c| (c.meta.occurred_at, s.clone())))
            .min()
            .map(|(_, s)| s)
        else {
            return Ok(Page {
                events,
                next,
                more: false,
                scanned,
            });
        };
        let (buf, _, done) = bufs.get_mut(&s).expect("stream buffered");
        let c = buf.pop_front().expect("non-empty");
        if m.filter
            .until
            .is_some_and(|u| c.meta.occurred_at > u.0 + SKEW_US)
        {
            // Past the window (beyond any skew): this stream has nothing more to give.
            buf.clear();
            *done = true;
            continue;
        }
        let pos = next.pos(&c.stream);
        let from = if c.stream_seq == pos.seq + 1 {
            pos.part as usize
        } else {
            0
        };
        if take(m, &c, from, limit, &mut events, &mut next) {
            return Ok(Page {
                events,
                next,
                more: true,
                scanned,
            });
        }
    }
}

/// Adds the matching events of `c` from `from` to `out`, advancing `next` over every
/// event consumed; true when `out` is full (with events of `c` possibly left over).
fn take(
    m: &mut Matcher,
    c: &Commit,
    from: usize,
    limit: usize,
    out: &mut Vec<Record>,
    next: &mut Cursor,
) -> bool {
    let recs = m.records(c, from);
    let mut it = recs.into_iter().peekable();
    for i in from..c.events.len() {
        if it.peek().is_some_and(|r| r.index == i) {
            if out.len() >= limit {
                return true;
            }
            out.push(it.next().expect("peeked"));
        }
        next.advance(c, i);
    }
    out.len() >= limit
}

/// The first position of `stream` whose commit occurred at or after `t` (the stream's
/// times ascend but for clock skew between writers, which the caller allows for).
pub async fn first_at_or_after(
    log: &dyn EventLog,
    stream: &StreamName,
    t: i64,
) -> Result<u64, ReplayError> {
    let (mut lo, mut hi) = (1u64, log.last_stream_seq(stream).await? + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match log.read_stream(stream, mid, 1).await?.first() {
            Some(c) if c.meta.occurred_at < t => lo = (c.stream_seq + 1).min(hi).max(mid + 1),
            _ => hi = mid,
        }
    }
    Ok(lo)
}
