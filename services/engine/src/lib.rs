//! The engine shared by every service of one process: executes commands against
//! aggregates (state from the in-memory [`World`], `decide`, append with OCC, wait
//! until the world reflects the append); its [`runtime`] runs the process's reactors
//! (on durable consumers or checkpoints, [`reactor`]) and periodic tasks.
//!
//! Invariants:
//! - An append always states the subject's expected last sequence; on conflict the
//!   engine waits for the world to catch up and decides again (bounded retries), so a
//!   decision is never made on stale state.
//! - When `execute_*` returns Ok, the world already reflects the append
//!   (read-your-writes for the API).
//! - Reactors are level-triggered: `handle` looks at current state, not at the event,
//!   and every append they make carries a dedupe id derived from what caused it.

pub mod aggregates;
pub mod cells;
pub mod flavors;
pub mod images;
pub mod keypairs;
pub mod liveness;
pub mod metadefs;
pub mod networks;
mod pipeline;
pub mod quota;
pub mod reactor;
pub mod routers;
pub mod runtime;
pub mod security_groups;
pub mod server_groups;
pub mod server_ports;
pub mod subscriptions;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use domain::flavor::{self, FlavorCommand};
use domain::host::{self, HostCommand};
use domain::instance::{self, Config, InstanceCommand};
use domain::{CellName, Ctx, DomainError, Event, FlavorId, HostName, InstanceId, Timestamp};
use eventlog::{
    Actor, AppendAck, AppendRequest, CheckpointStore, EventLog, ExpectedSeq, LogError, Metadata,
    StreamName, Subject,
};
use projections::codec;
use projections::World;

pub use liveness::{HostLiveness, Liveness};
pub use reactor::{Delivery, Family, Reactor};
pub use runtime::{InFlight, Period, Periodic, Runtime, RuntimeOptions};

/// Crash points for fault tests. When the environment variable `STRATUS_FAILPOINTS`
/// (comma-separated names) names `name`, the process aborts right here, as abruptly as
/// a SIGKILL: nothing is flushed, no checkpoint or ack is written. Points in the code:
/// `scheduler-after-claim` (a host claim is committed, the instance not yet mapped),
/// `api-after-quota-reserve` (a create's quota is reserved, its build request not yet
/// appended).
pub fn failpoint(name: &str) {
    static ARMED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var("STRATUS_FAILPOINTS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    });
    if armed.iter().any(|a| a == name) {
        eprintln!("stratus: failpoint {name} reached: aborting");
        std::process::abort();
    }
}

/// The one error enum of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The domain refused the command.
    #[error("{0}")]
    Domain(#[from] DomainError),
    /// The log failed.
    #[error("event log: {0}")]
    Log(#[from] LogError),
    /// Too many concurrent writers on one aggregate.
    #[error("too much contention on {0}, try again")]
    Contention(String),
    /// The world did not catch up in time.
    #[error("timed out waiting for the projections")]
    Timeout,
}

/// Who and why, for the envelope of what a command appends.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// Request id (`req-<uuid>`).
    pub correlation_id: String,
    /// Event or request that caused this.
    pub causation_id: String,
    /// Caller.
    pub actor: Actor,
    /// Dedupe id; a fresh one is generated when None.
    pub dedupe_id: Option<String>,
}

impl Meta {
    /// Metadata for a service acting because of `cause`.
    pub fn service(name: &str, correlation_id: &str, cause: &str, dedupe: String) -> Self {
        Meta {
            correlation_id: correlation_id.to_string(),
            causation_id: cause.to_string(),
            actor: Actor {
                user: name.to_string(),
                project: "service".into(),
                roles: vec!["service".into()],
            },
            dedupe_id: Some(dedupe),
        }
    }
}

/// Result of a command.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Events appended (empty: nothing to do).
    pub events: Vec<Event>,
    /// The append's acknowledgement.
    pub ack: Option<AppendAck>,
}

/// Shared state and configuration of the services of one process.
pub struct Engine {
    log: Arc<dyn EventLog>,
    world: Arc<World>,
    checkpoints: Arc<dyn CheckpointStore>,
    /// Status of every task the [`Runtime`] of this process runs.
    tasks: runtime::Board,
    /// State machine tunables.
    pub config: Config,
    /// Quota defaults and reservation grace.
    pub quota: quota::QuotaConfig,
    /// How long to wait for the world to reflect an append.
    pub read_timeout: Duration,
    /// Seconds of a usage audit period (`--audit-period`, Nova's
    /// `instance_usage_audit_period`): what closes periods and what the audit-log API
    /// reports on.
    pub audit_period_secs: i64,
    /// Where services report they are alive (apart from the event log).
    pub heartbeats: Arc<dyn eventlog::Heartbeats>,
    /// Which compute hosts are alive, refreshed from `heartbeats`.
    pub liveness: Liveness,
    /// Striped per-subject locks: writers of one aggregate in this process queue
    /// instead of racing (OCC still guards against other processes).
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Write-through cache of host states this process appended: the next claim on a
    /// hot host decides on it without waiting for the projector ([`pipeline`]).
    hosts: pipeline::WriteThrough<domain::host::Host>,
    /// The same for quota ledgers: admissions of one project queue on its ledger, so
    /// each decides on the state the previous one left without waiting for the world.
    ledgers: pipeline::WriteThrough<domain::quota::Ledger>,
    /// The same for networks: every port create of a network (its address allocation)
    /// queues on the network's one subject.
    networks: pipeline::WriteThrough<domain::network::Network>,
    /// The same for network quota ledgers.
    net_ledgers: pipeline::WriteThrough<domain::network::quota::NetLedger>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish()
    }
}

/// Current time from the system clock.
pub fn now() -> Timestamp {
    Timestamp(eventlog::now_micros())
}

const MAX_RETRIES: usize = 16;
const LOCK_STRIPES: usize = 1024;

impl Engine {
    /// An engine over a log, a world and a checkpoint store.
    pub fn new(
        log: Arc<dyn EventLog>,
        world: Arc<World>,
        checkpoints: Arc<dyn CheckpointStore>,
        config: Config,
        read_timeout: Duration,
    ) -> Self {
        Engine {
            log,
            world,
            checkpoints,
            tasks: runtime::Board::default(),
            config,
            quota: quota::QuotaConfig::default(),
            audit_period_secs: 3600,
            read_timeout,
            heartbeats: Arc::new(eventlog::MemoryHeartbeats::default()),
            liveness: Liveness::disabled(),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hosts: Default::default(),
            ledgers: Default::default(),
            networks: Default::default(),
            net_ledgers: Default::default(),
        }
    }

    /// The event log.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The in-memory views (read models) of this process.
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    /// Where reactors on the embedded store save their positions.
    pub fn checkpoints(&self) -> &Arc<dyn CheckpointStore> {
        &self.checkpoints
    }

    /// The status of every task of this process's runtime.
    pub fn tasks(&self) -> &runtime::Board {
        &self.tasks
    }

    /// The same engine with heartbeats in `heartbeats` and hosts down after
    /// `service_down_time` without a beat.
    pub fn with_heartbeats(
        mut self,
        heartbeats: Arc<dyn eventlog::Heartbeats>,
        service_down_time: Duration,
    ) -> Self {
        self.heartbeats = heartbeats;
        self.liveness = Liveness::new(service_down_time, eventlog::now_micros());
        self
    }

    /// [`Engine::with_heartbeats`] for a process that runs every compute agent of its
    /// log itself (the embedded store): hosts that never beat here are down at once.
    pub fn with_local_heartbeats(
        mut self,
        heartbeats: Arc<dyn eventlog::Heartbeats>,
        service_down_time: Duration,
    ) -> Self {
        self.heartbeats = heartbeats;
        self.liveness = Liveness::local(service_down_time, eventlog::now_micros());
        self
    }

    /// Reads the heartbeats once into [`Engine::liveness`].
    pub async fn refresh_liveness(&self) -> Result<(), EngineError> {
        let beats = self.heartbeats.beats().await?;
        tracing::debug!(beats = beats.len(), "heartbeats read");
        self.liveness.record(&beats);
        Ok(())
    }

    /// Waits until the world has applied every commit the log holds now, on every
    /// stream, and drops the host write-through cache: the next decision is made on
    /// state at least as new as this moment (used before concluding "no valid host").
    /// Streams of down cells are skipped: their hosts are not chosen anyway, and asking
    /// an unreachable stream would only wait for a timeout.
    pub async fn catch_up(&self) -> Result<(), EngineError> {
        let down: Vec<StreamName> = self
            .world
            .health
            .down()
            .iter()
            .map(cells::cell_stream)
            .collect();
        for s in self.log.streams().await? {
            if down.contains(&s) {
                continue;
            }
            let last = self.log.last_stream_seq(&s).await?;
            if !self.world.wait_for(&s, last, self.read_timeout).await {
                return Err(EngineError::Timeout);
            }
        }
        self.hosts.clear();
        self.ledgers.clear();
        self.networks.clear();
        self.net_ledgers.clear();
        Ok(())
    }

    /// The in-process lock of an aggregate (striped by a hash of its key).
    async fn lock(&self, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.locks[(h.finish() as usize) % self.locks.len()]
            .lock()
            .await
    }

    /// The api-stream subject of an instance's build request.
    pub fn instance_api_subject(id: &InstanceId) -> Subject {
        Subject::api(eventlog::SubjectKind::Instance, &id.to_string())
            .expect("uuid is a valid token")
    }

    /// The subject of an instance in a cell.
    pub fn instance_cell_subject(cell: &CellName, id: &InstanceId) -> Subject {
        let s = StreamName::new(cell.as_str()).expect("cell names are stream names");
        Subject::cell(&s, eventlog::SubjectKind::Instance, &id.to_string())
            .expect("uuid is a valid token")
    }

    /// The subject of a host.
    pub fn host_subject(cell: &CellName, host: &HostName) -> Subject {
        let s = StreamName::new(cell.as_str()).expect("cell names are stream names");
        Subject::cell(&s, eventlog::SubjectKind::Host, host.as_str()).expect("tokens are encoded")
    }

    /// The subject of a flavor.
    pub fn flavor_subject(id: &FlavorId) -> Subject {
        Subject::api(eventlog::SubjectKind::Flavor, id.as_str()).expect("tokens are encoded")
    }

    async fn append(
        &self,
        subject: Subject,
        expected: u64,
        events: &[Event],
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<AppendAck, LogError> {
        let req = Self::request(subject, expected, events, ctx, meta);
        self.log.append(req).await
    }

    pub(crate) fn request(
        subject: Subject,
        expected: u64,
        events: &[Event],
        ctx: &Ctx,
        meta: &Meta,
    ) -> AppendRequest {
        AppendRequest {
            subject,
            expected: ExpectedSeq::Exactly(expected),
            dedupe_id: meta
                .dedupe_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            meta: Metadata {
                correlation_id: meta.correlation_id.clone(),
                causation_id: meta.causation_id.clone(),
                actor: meta.actor.clone(),
                occurred_at: ctx.now.0,
            },
            events: events.iter().map(codec::encode).collect(),
        }
    }

    async fn settle(&self, subject: &Subject, ack: &AppendAck) -> Result<(), EngineError> {
        if self
            .world
            .wait_for(&subject.stream(), ack.stream_seq, self.read_timeout)
            .await
        {
            Ok(())
        } else {
            Err(EngineError::Timeout)
        }
    }

    async fn wait_seq(&self, f: impl Fn(&projections::Views) -> bool) {
        self.world.wait_until(Duration::from_millis(500), f).await;
    }

    /// Executes an instance command.
    pub async fn instance(
        &self,
        id: InstanceId,
        cmd: InstanceCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let place = cmd == InstanceCommand::Place;
        self.instance_with(id, place, ctx, meta, |row| {
            let mut evs =
                instance::decide(row.and_then(|r| r.state()), cmd.clone(), ctx, &self.config)?;
            // A create's tags (2.52, on the api subject) move to the cell subject with
            // the placement (or cell0's burial), ahead of it: the cell stream alone then
            // holds every tag (its notifications carry them from create.start on).
            if let (true, Some(r)) = (place, row) {
                let placed_at = evs.iter().find_map(|e| match e {
                    instance::InstanceEvent::Placed { at, .. }
                    | instance::InstanceEvent::BuildFailed { at, .. } => Some(*at),
                    _ => None,
                });
                if let (Some(at), false) = (placed_at, r.extras.tags.is_empty()) {
                    let tags = r.extras.tags.clone();
                    evs.insert(0, instance::InstanceEvent::TagsSet { tags, at });
                }
                // The create's `OS-DCF:diskConfig` likewise.
                if let (Some(at), Some(auto)) = (placed_at, r.extras.auto_disk_config) {
                    evs.insert(0, instance::InstanceEvent::DiskConfigSet { auto, at });
                }
            }
            Ok(evs)
        })
        .await
    }

    /// Executes a tag change of an instance (decided on its state and its tags, which
    /// live beside the state in the read model row: `instance::tags`).
    pub async fn instance_tags(
        &self,
        id: InstanceId,
        cmd: instance::tags::TagCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let none = std::collections::BTreeSet::new();
        self.instance_with(id, false, ctx, meta, |row| {
            let tags = row.map_or(&none, |r| &r.extras.tags);
            instance::tags::decide(row.and_then(|r| r.state()), tags, cmd.clone(), ctx)
        })
        .await
    }

    /// Decides with `decide` on the instance's row and appends to its subject (the cell
    /// subject once placed; `place` names the cell subject the placement creates).
    async fn instance_with(
        &self,
        id: InstanceId,
        place: bool,
        ctx: &Ctx,
        meta: &Meta,
        decide: impl Fn(
            Option<&projections::InstanceRow>,
        ) -> Result<Vec<instance::InstanceEvent>, DomainError>,
    ) -> Result<Outcome, EngineError> {
        let key = id.to_string();
        let mut guard = self.lock(&key).await;
        for _ in 0..MAX_RETRIES {
            let step = {
                let v = self.world.read();
                let row = v.instances().get(&id);
                let state = row.and_then(|r| r.state());
                let evs = match decide(row) {
                    // Mapped to a cell but not placed there yet: the scheduler is between
                    // its two appends (or its reconciler will place it). Nova accepts
                    // user commands on a building server, so wait for the placement
                    // instead of answering 409 for a window the user cannot see.
                    Err(DomainError::NotReady { .. })
                        if state.is_some_and(|s| s.cell.is_some() && !s.placed) =>
                    {
                        None
                    }
                    other => Some(other?),
                };
                evs.map(|evs| {
                    let (subject, expected) = match (place, row) {
                        (true, Some(r)) => {
                            let cell = state
                                .and_then(|s| s.cell.clone())
                                .unwrap_or_else(CellName::cell0);
                            (Self::instance_cell_subject(&cell, &id), r.cell_seq)
                        }
                        (_, Some(r)) => match &r.cell_subject {
                            Some(s) => (s.clone(), r.cell_seq),
                            None => (Self::instance_api_subject(&id), r.api_seq),
                        },
                        (_, None) => (Self::instance_api_subject(&id), 0),
                    };
                    (evs, subject, expected)
                })
            };
            let Some((events, subject, expected)) = step else {
                // Not under the instance's lock: the placement goes through it too.
                drop(guard);
                self.wait_seq(|v| {
                    v.instances()
                        .get(&id)
                        .and_then(|r| r.state())
                        .is_none_or(|s| s.placed || s.deleted)
                })
                .await;
                guard = self.lock(&key).await;
                continue;
            };
            if events.is_empty() {
                return Ok(Outcome::default());
            }
            let events: Vec<Event> = events.into_iter().map(Event::Instance).collect();
            match self
                .append(subject.clone(), expected, &events, ctx, meta)
                .await
            {
                Ok(ack) => {
                    self.settle(&subject, &ack).await?;
                    return Ok(Outcome {
                        events,
                        ack: Some(ack),
                    });
                }
                Err(LogError::WrongLastSequence { actual, .. }) => {
                    let is_api = subject.stream() == StreamName::api();
                    self.wait_seq(|v| {
                        v.instances().get(&id).is_some_and(|r| {
                            if is_api {
                                r.api_seq >= actual || r.cell_subject.is_some()
                            } else {
                                r.cell_seq >= actual
                            }
                        })
                    })
                    .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contention(format!("instance {id}")))
    }

    /// Executes a flavor command.
    pub async fn flavor(
        &self,
        id: &FlavorId,
        cmd: FlavorCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = Self::flavor_subject(id);
        self.execute_on_world(
            &subject,
            &format!("flavor {id}"),
            |v| {
                let row = v.flavors().get(&subject);
                let evs = flavor::decide(row.and_then(|r| r.state.as_ref()), cmd.clone(), ctx)
                    .map_err(|e| match e {
                        DomainError::NotFound { kind, id: found } if found.is_empty() => {
                            DomainError::NotFound {
                                kind,
                                id: id.to_string(),
                            }
                        }
                        other => other,
                    })?;
                Ok((
                    evs.into_iter().map(Event::Flavor).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.flavors().get(&subject).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }

    /// The command loop of an aggregate whose state is one row of the world (flavors,
    /// images): decide on the row (`decide` returns the events and the row's subject
    /// sequence), append with that expected sequence, wait for the world to apply it
    /// (read-your-writes); on an OCC conflict wait until the row reaches the winner's
    /// sequence (`seq_of`) and decide again, at most `MAX_RETRIES` times. Appends of one
    /// subject in this process are serialised by its lock.
    pub(crate) async fn execute_on_world(
        &self,
        subject: &Subject,
        what: &str,
        decide: impl Fn(&projections::Views) -> Result<(Vec<Event>, u64), DomainError>,
        seq_of: impl Fn(&projections::Views) -> Option<u64>,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let _guard = self.lock(subject.as_str()).await;
        for _ in 0..MAX_RETRIES {
            let (events, expected) = decide(&self.world.read())?;
            if events.is_empty() {
                return Ok(Outcome::default());
            }
            match self
                .append(subject.clone(), expected, &events, ctx, meta)
                .await
            {
                Ok(ack) => {
                    self.settle(subject, &ack).await?;
                    return Ok(Outcome {
                        events,
                        ack: Some(ack),
                    });
                }
                Err(LogError::WrongLastSequence { actual, .. }) => {
                    self.wait_seq(|v| seq_of(v).is_some_and(|s| s >= actual))
                        .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contention(what.to_string()))
    }

    /// Executes a host command. Returns once the commit is durable; unlike the other
    /// commands it does not wait for the world (placement writers only need the host's
    /// own state, which this process caches write-through).
    pub async fn host(
        &self,
        cell: &CellName,
        name: &HostName,
        cmd: HostCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = Self::host_subject(cell, name);
        self.execute_pipelined(
            &subject,
            || format!("host {name}"),
            |_| (),
            |(), state: Option<&host::Host>| {
                host::decide(state, cmd.clone(), ctx.now).map_err(|e| match e {
                    DomainError::NotFound { kind, id } if id.is_empty() => DomainError::NotFound {
                        kind,
                        id: name.to_string(),
                    },
                    other => other,
                })
            },
            ctx,
            meta,
        )
        .await
    }
}
