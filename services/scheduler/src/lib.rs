//! The scheduler service: level-triggered reactors and the reconciler.
//!
//! - [`Scheduler`]: places build requests (claim on a host, `mapped` on the api subject,
//!   `placed` as the first cell commit; NoValidHost -> `cell0`, ERROR with a fault) and
//!   chooses destinations for resize, cold/live migration and unshelve.
//! - [`Placement`]: releases every claim its instance no longer holds (deleted,
//!   offloaded, confirmed/reverted resize, finished live migration, failed scheduling).
//! - [`Reconciler`]: drives `Tick` on instances whose operation went unanswered
//!   (retry, then ERROR / fault) and on shelved instances due for offload.
//! - [`GroupMembers`]: keeps server group members' records true to their instances
//!   (deleted, settled after a move, orphans released after the grace).
//!
//! A step that fails (the log did not answer in time, e.g. during a JetStream leader
//! election) is tried again after 0.2 s, doubling up to 2 s, for up to
//! [`Scheduler::patience`]; only then is it left to the periodic reconcile (30 s). A
//! build for which no reachable host fits but a host of a *down* cell would (its stream
//! unreachable for a few seconds while a new leader is elected) waits for the cell for as
//! long, instead of failing at once with NoValidHost; hosts of a down cell are never
//! chosen while it is down.
//!
//! Invariants: a claim is only made for an instance whose current work is scheduling,
//! with OCC on the host subject (its sequence is the placement generation), so no host
//! is ever committed beyond capacity; the claim is recorded on the instance only if the
//! instance still waits for that very operation; claims never recorded are released
//! by [`Placement`]. No state is held outside the world except in-flight sets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use domain::host::{HostCommand, HostEvent, Resources};
use domain::instance::{Instance, InstanceCommand, MigrationKind, Work};
use domain::server_group::{
    reconcile_member, MemberFix, MemberHosts, ServerGroup, ServerGroupCommand, ServerGroupEvent,
};
use domain::{
    scheduling, CellName, ClaimId, Ctx, DomainError, Event, HostName, InstanceId, TaskState,
    VmState,
};
use engine::runtime::TaskError;
use engine::{now, Delivery, Engine, EngineError, Family, InFlight, Meta, Periodic, Reactor};
use eventlog::{LockExt, LogError};
use uuid::Uuid;

/// The instance a delivery of instance events is about.
fn instance_of(delivery: &Delivery<'_>) -> Option<InstanceId> {
    delivery
        .events
        .iter()
        .any(|e| matches!(e, Event::Instance(_)))
        .then(|| InstanceId::parse(delivery.subject.id_token()))
        .flatten()
}

/// Chooses hosts for builds and migrations.
#[derive(Debug)]
pub struct Scheduler {
    inflight: InFlight<InstanceId>,
    limit: Arc<tokio::sync::Semaphore>,
    pending: Pending,
    patience: Duration,
    decider: Decider,
}

/// What every decision of one scheduler reads: the settings and the random source of
/// `host_subset_size` (seeded, so tests are deterministic).
#[derive(Debug, Clone)]
struct Decider {
    config: scheduling::Config,
    rng: Arc<Mutex<u64>>,
}

impl Decider {
    /// The next pseudo-random number (xorshift64*): only spreads the first choice among
    /// the best `host_subset_size` hosts, so statistical quality is not a concern.
    fn pick(&self) -> u64 {
        let mut s = self.rng.lock_or_recover();
        let mut x = (*s).max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Default of [`Scheduler::patience`]: longer than a JetStream leader election (2-15 s
/// on small machines, plus the 3 s after which a cell counts as down), shorter than the
/// operation timeout (60 s) after which the reconciler steps in.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(30);

/// First pause before a failed or waiting step is tried again; it doubles up to
/// [`RETRY_MAX`], so a step runs again within ~2 s of the log answering again.
const RETRY_MIN: Duration = Duration::from_millis(200);
/// Longest pause between two tries of a step.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How a scheduling step ended, when it did not fail.
enum Step {
    /// Done (or nothing to do).
    Done,
    /// Nothing fits in the reachable cells but a host of a down cell would: try again
    /// when the cell may be back.
    WaitForCell,
}

/// RAM (MiB) claimed per host by this scheduler but maybe not yet in the world: the
/// weigher subtracts it, so concurrent decisions spread instead of piling on one host.
type Pending = Arc<Mutex<std::collections::HashMap<HostName, u64>>>;

impl Default for Scheduler {
    fn default() -> Self {
        Self::new(64)
    }
}

impl Scheduler {
    /// A scheduler handling up to `concurrency` requests at once.
    pub fn new(concurrency: usize) -> Self {
        Scheduler {
            inflight: Default::default(),
            limit: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            pending: Default::default(),
            patience: DEFAULT_PATIENCE,
            decider: Decider {
                config: scheduling::Config::default(),
                rng: Arc::new(Mutex::new(Uuid::new_v4().as_u64_pair().0)),
            },
        }
    }

    /// The same scheduler with other weigher multipliers and `host_subset_size`.
    pub fn with_config(mut self, config: scheduling::Config) -> Self {
        self.decider.config = config;
        self
    }

    /// The same scheduler with its `host_subset_size` random choices seeded (tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.decider.rng = Arc::new(Mutex::new(seed));
        self
    }

    /// The same scheduler with another [`Scheduler::patience`].
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// How long a request keeps trying a failed step, and waits for a down cell that
    /// holds the only fitting hosts, before it is left to the reconcile (failed step) or
    /// fails with NoValidHost (down cell). Default [`DEFAULT_PATIENCE`].
    pub fn patience(&self) -> Duration {
        self.patience
    }

    fn kick(&self, engine: &Arc<Engine>, id: InstanceId, correlation: String) {
        let work = engine.world().read().instance(&id).and_then(|i| i.work());
        if !matches!(
            work,
            Some(Work::ScheduleBuild | Work::Place | Work::ScheduleDestination)
        ) {
            return;
        }
        let engine = engine.clone();
        let limit = self.limit.clone();
        let pending = self.pending.clone();
        let patience = self.patience;
        let decider = self.decider.clone();
        self.inflight.spawn(id, async move {
            let started = tokio::time::Instant::now();
            let mut pause = RETRY_MIN;
            let mut tries = 0u32;
            loop {
                tries += 1;
                // Past the patience, a down cell no longer holds the request back.
                let give_up = started.elapsed() >= patience;
                let mut reserved: Option<(HostName, u64)> = None;
                let res = {
                    // The permit is held while working, not while pausing.
                    let _permit = limit.acquire().await;
                    steps(&engine, &decider, id, &correlation, &pending, &mut reserved, give_up).await
                };
                // The claim is in the world once the instance's cell commit settled (or
                // it was released because the step failed).
                if let Some((host, ram)) = reserved {
                    let mut p = pending.lock_or_recover();
                    if let Some(v) = p.get_mut(&host) {
                        *v = v.saturating_sub(ram);
                    }
                }
                match res {
                    Ok(Step::Done) => return,
                    Ok(Step::WaitForCell) => {
                        tracing::debug!(instance = %id, attempt = tries,
                            "only hosts of a down cell fit; waiting for the cell");
                    }
                    // The domain refused (the instance moved on) or the log is closed:
                    // trying again cannot help.
                    Err(e @ (EngineError::Domain(_) | EngineError::Log(LogError::Closed))) => {
                        tracing::warn!(instance = %id, error = %e, "scheduling step failed; the reconciler will retry");
                        return;
                    }
                    Err(e) if give_up => {
                        tracing::warn!(instance = %id, error = %e, attempt = tries,
                            "scheduling step failed; the reconciler will retry");
                        return;
                    }
                    // Typically the log not answering in time during a leader election.
                    Err(e) if tries == 1 => {
                        tracing::warn!(instance = %id, error = %e, retry_in = ?pause,
                            "scheduling step failed; trying again");
                    }
                    Err(e) => {
                        tracing::debug!(instance = %id, error = %e, attempt = tries, retry_in = ?pause,
                            "scheduling step failed again; trying again");
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        });
    }
}

/// Runs the scheduling steps of `id` while it has some: Map is followed by Place at once.
async fn steps(
    engine: &Arc<Engine>,
    decider: &Decider,
    id: InstanceId,
    correlation: &str,
    pending: &Pending,
    reserved: &mut Option<(HostName, u64)>,
    give_up: bool,
) -> Result<Step, EngineError> {
    for _ in 0..4 {
        let Some(inst) = engine.world().read().instance(&id).cloned() else {
            return Ok(Step::Done);
        };
        let step = match inst.work() {
            Some(Work::ScheduleBuild) => {
                schedule_build(
                    engine,
                    decider,
                    &inst,
                    correlation,
                    pending,
                    reserved,
                    give_up,
                )
                .await?
            }
            Some(Work::Place) => place(engine, &inst, correlation).await?,
            Some(Work::ScheduleDestination) => {
                schedule_destination(
                    engine,
                    decider,
                    &inst,
                    correlation,
                    pending,
                    reserved,
                    give_up,
                )
                .await?
            }
            _ => return Ok(Step::Done),
        };
        if let Step::WaitForCell = step {
            return Ok(step);
        }
    }
    Ok(Step::Done)
}

fn ctx() -> Ctx {
    Ctx::service("scheduler", now(), Uuid::new_v4())
}

fn op_of(i: &Instance) -> Uuid {
    i.op.map(|o| o.id).unwrap_or_default()
}

fn attempt_of(i: &Instance) -> u32 {
    i.op.map(|o| o.attempt).unwrap_or(0)
}

/// A claim: the cell and host it is on, and its id.
type Claimed = (CellName, HostName, ClaimId);

/// What looking for a host found.
enum Found {
    /// A claim made on this host.
    Claim(Claimed),
    /// No host fits: the NoValidHost fault's details (which filters removed the hosts).
    Nothing(String),
    /// No reachable host fits, but a host of a down cell would.
    CellDown,
}

/// What a request reads beside the instance: its boot details (image properties and
/// scheduler hints, JSON texts as recorded), decoded once per attempt.
#[derive(Debug, Default)]
struct Inputs {
    image_properties: std::collections::BTreeMap<String, String>,
    /// The `same_host` hint's instances resolved to their hosts (`None`: no hint).
    same_host: Option<Vec<HostName>>,
    /// The `different_host` hint's instances resolved to their hosts.
    different_host: Vec<HostName>,
}

impl Inputs {
    /// Reads the instance's boot details from `v`.
    fn of(v: &projections::Views, id: &InstanceId) -> Inputs {
        let Some(row) = v.instances().get(id) else {
            return Inputs::default();
        };
        let d = &row.details;
        let text = |json: &str| match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::String(s)) => s,
            _ => json.to_string(),
        };
        // A hint's instances, resolved to the hosts they run on (Nova's HostState
        // lists a host's instances by their `host`; deleted ones run nowhere).
        let hosts = |hint: &str| -> Option<Vec<HostName>> {
            let json = d.scheduler_hints.get(hint)?;
            let ids: Vec<InstanceId> = match serde_json::from_str::<serde_json::Value>(json) {
                Ok(serde_json::Value::String(s)) => InstanceId::parse(&s).into_iter().collect(),
                Ok(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str().and_then(InstanceId::parse))
                    .collect(),
                _ => vec![],
            };
            Some(
                ids.iter()
                    .filter_map(|i| v.instance(i))
                    .filter(|i| !i.deleted)
                    .filter_map(|i| i.host.clone())
                    .collect(),
            )
        };
        Inputs {
            image_properties: d
                .image_properties
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
            same_host: hosts("same_host"),
            different_host: hosts("different_host").unwrap_or_default(),
        }
    }
}

/// One host as the filters and weighers see it, built from the views: its zone from
/// the aggregates (else `nova`), the metadata of its aggregates (`zone_aggs`), its
/// compute service's state (enabled; up = a recent heartbeat and not forced down) and
/// the hypervisor's capabilities (the simulated driver's until a driver reports them).
#[allow(clippy::too_many_arguments)]
fn candidate<'a>(
    liveness: &dyn Fn(&HostName) -> engine::liveness::HostLiveness,
    v: &'a projections::Views,
    host_aggs: &'a std::collections::HashMap<&'a HostName, Vec<&'a scheduling::Metadata>>,
    h: &'a domain::host::Host,
    caps: &'a scheduling::Capabilities,
    pending: &std::collections::HashMap<HostName, u64>,
    group_counts: &std::collections::HashMap<HostName, u32>,
) -> scheduling::Candidate<'a> {
    scheduling::Candidate {
        host: h,
        availability_zone: v.aggregates().zone_of(&h.spec.name),
        aggregates: host_aggs.get(&h.spec.name).map_or(&[], Vec::as_slice),
        enabled: !h.service.disabled && !h.service.deleted,
        up: !h.service.forced_down && liveness(&h.spec.name).schedulable(),
        capabilities: caps,
        pending: Resources {
            ram_mb: pending.get(&h.spec.name).copied().unwrap_or(0),
            ..Resources::default()
        },
        // Only a group member's decision reads the names (no lookup per host else).
        group_members: if group_counts.is_empty() {
            0
        } else {
            group_counts.get(&h.spec.name).copied().unwrap_or(0)
        },
    }
}

/// Decides on the current views and tries the chosen hosts in order; returns the first
/// successful claim, or whether a host of a down cell would have fitted, or why none fit.
#[allow(clippy::too_many_arguments)]
async fn claim_first(
    engine: &Arc<Engine>,
    decider: &Decider,
    inst: &Instance,
    req: &scheduling::Request<'_>,
    cells: Option<&CellName>,
    correlation: &str,
    pending: &Pending,
    reserved: &mut Option<(HostName, u64)>,
) -> Result<Found, EngineError> {
    let t = eventlog::now_micros();
    // A forced host (`az:host`) skips the zone check, as in Nova; otherwise the
    // AvailabilityZoneFilter compares with each candidate's aggregate zone.
    let req = &scheduling::Request {
        availability_zone: req.availability_zone.filter(|_| req.force_host.is_none()),
        ..req.clone()
    };
    let caps = scheduling::Capabilities::simulated();
    // The instance's server group as it is now: its members' hosts feed the group
    // filters and weighers, and a hard policy is re-checked when the placement is
    // recorded on the group's subject (OCC), after the claim.
    let group: Option<ServerGroup> = engine
        .world()
        .read()
        .server_groups()
        .of_member(&inst.id())
        .cloned();
    let mut req = req.clone();
    req.group = group.as_ref().map(|g| scheduling::GroupRequest {
        policy: g.policy,
        max_server_per_host: g.max_server_per_host.unwrap_or(1),
        placed: g.placed(Some(&inst.id())) as u32,
    });
    // Where the other members count (recorded or held hosts), once per decision.
    let group_counts: std::collections::HashMap<HostName, u32> = {
        let v = engine.world().read();
        let mut counts = std::collections::HashMap::new();
        if let Some(g) = &group {
            let groups = v.server_groups().project(&g.project_id).map(|r| &r.state);
            for member in g.members.keys().filter(|m| **m != inst.id()) {
                let Some(at) = groups.and_then(|pg| pg.placement(&g.id, member)) else {
                    continue;
                };
                let hosts: std::collections::BTreeSet<&HostName> =
                    at.host.iter().chain(at.held.iter()).collect();
                for h in hosts {
                    *counts.entry(h.clone()).or_insert(0) += 1;
                }
            }
        }
        counts
    };
    // Hosts already tried by this request (their claim or the group's policy refused):
    // excluded when a batch runs out and the decision is made again on fresher views.
    let mut tried: Vec<HostName> = req.exclude.to_vec();
    loop {
        let batch_req = scheduling::Request {
            exclude: &tried,
            ..req.clone()
        };
        let (batch, more, down_fits, details) = decide_batch(
            engine,
            decider,
            inst,
            &batch_req,
            cells,
            pending,
            t,
            &caps,
            &group_counts,
        );
        if batch.is_empty() {
            return Ok(if down_fits {
                Found::CellDown
            } else {
                Found::Nothing(details)
            });
        }
        for (cell, host) in batch {
            match try_claim(
                engine,
                inst,
                &req,
                &group,
                &cell,
                &host,
                correlation,
                pending,
                reserved,
            )
            .await?
            {
                Some(found) => return Ok(found),
                None => tried.push(host),
            }
        }
        if !more {
            return Ok(if down_fits {
                Found::CellDown
            } else {
                Found::Nothing(details)
            });
        }
    }
}

/// Hosts tried per decision: the decision ranks the best ones (see
/// [`scheduling::RANKED`]); when every one of them refuses the claim, the views were
/// stale, and the next decision is made on fresher ones without them.
const BATCH: usize = scheduling::RANKED;

/// One decision on the current views: the best [`BATCH`] hosts (cell, name), whether
/// more passed the filters, whether a host of a down cell would have fitted, and the
/// NoValidHost details.
#[allow(clippy::too_many_arguments)]
fn decide_batch(
    engine: &Arc<Engine>,
    decider: &Decider,
    inst: &Instance,
    req: &scheduling::Request<'_>,
    cells: Option<&CellName>,
    pending: &Pending,
    t: i64,
    caps: &scheduling::Capabilities,
    group_counts: &std::collections::HashMap<HostName, u32>,
) -> (Vec<(CellName, HostName)>, bool, bool, String) {
    let v = engine.world().read();
    let p = pending.lock_or_recover();
    let liveness = engine.liveness.snapshot(t);
    let down_cells = engine.world().health.down();
    let mut host_aggs: std::collections::HashMap<&HostName, Vec<&scheduling::Metadata>> =
        std::collections::HashMap::new();
    for a in v.aggregates().set().0.aggregates.values() {
        for h in &a.hosts {
            host_aggs.entry(h).or_default().push(&a.metadata);
        }
    }
    // Hosts of a cell whose stream is unreachable are never chosen (the claim could
    // not be written); they only tell whether to wait for the cell.
    let (hosts, down): (Vec<_>, Vec<_>) = v
        .hosts()
        .values()
        .map(|r| &r.state)
        .filter(|h| h.spec.cell != CellName::cell0())
        .filter(|h| cells.is_none_or(|c| *c == h.spec.cell))
        .map(|h| candidate(&liveness, &v, &host_aggs, h, caps, &p, group_counts))
        .partition(|c| !down_cells.contains(&c.host.spec.cell));
    let down_fits = !down.is_empty()
        && !scheduling::decide(&down, req, &decider.config, 0)
            .order
            .is_empty();
    let d = scheduling::decide(&hosts, req, &decider.config, decider.pick());
    let details = d.no_valid_host_details(&inst.id());
    let batch = d
        .order
        .iter()
        .take(BATCH)
        .map(|&i| (hosts[i].host.spec.cell.clone(), hosts[i].name().clone()))
        .collect();
    (batch, d.order.len() > BATCH, down_fits, details)
}

/// Claims `host` for `inst` and, for a group member, records the placement on the
/// group (its hard policy re-checked there). `None`: the host refused (no capacity,
/// contention, or the group's policy after a racing decision); the claim, if made, is
/// given back.
#[allow(clippy::too_many_arguments)]
async fn try_claim(
    engine: &Arc<Engine>,
    inst: &Instance,
    req: &scheduling::Request<'_>,
    group: &Option<ServerGroup>,
    cell: &CellName,
    host: &HostName,
    correlation: &str,
    pending: &Pending,
    reserved: &mut Option<(HostName, u64)>,
) -> Result<Option<Found>, EngineError> {
    {
        let claim = ClaimId(Uuid::new_v4());
        let meta = Meta::service(
            "scheduler",
            correlation,
            &op_of(inst).to_string(),
            domain::dedupe::sched_claim(claim),
        );
        let cmd = HostCommand::Claim {
            claim,
            instance: inst.id(),
            resources: req.resources,
        };
        {
            let mut p = pending.lock_or_recover();
            *p.entry(host.clone()).or_default() += req.resources.ram_mb;
        }
        let unreserve = || {
            let mut p = pending.lock_or_recover();
            if let Some(v) = p.get_mut(host) {
                *v = v.saturating_sub(req.resources.ram_mb);
            }
        };
        let res = engine.host(cell, host, cmd, &ctx(), &meta).await;
        if res.is_err() {
            unreserve();
        }
        match res {
            Ok(_) => {
                if let Some(g) = &group {
                    match record_member(engine, g, inst, host, claim, correlation).await {
                        Ok(()) => {}
                        // Another decision placed a member first and the policy no
                        // longer allows this host (or the group changed): give the
                        // claim back and try the next host; each is checked again.
                        Err(EngineError::Domain(DomainError::Conflict(_)))
                        | Err(EngineError::Contention(_)) => {
                            unreserve();
                            release(engine, cell, host, claim, correlation).await;
                            return Ok(None);
                        }
                        Err(e) => {
                            unreserve();
                            release(engine, cell, host, claim, correlation).await;
                            return Err(e);
                        }
                    }
                }
                engine::failpoint("scheduler-after-claim");
                *reserved = Some((host.clone(), req.resources.ram_mb));
                Ok(Some(Found::Claim((cell.clone(), host.clone(), claim))))
            }
            Err(EngineError::Domain(
                DomainError::NoCapacity { .. } | DomainError::OutOfService { .. },
            )) => Ok(None),
            Err(EngineError::Contention(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Records on the group's subject that `inst` (a member) counts on `host`, refused when
/// a hard policy of the group forbids it on the group's current state. A build's first
/// claim is recorded as the member's host; a move's destination (or a second decision
/// racing on one build) is held besides the host it already counts on, until the
/// [`GroupMembers`] reactor settles the member where its instance ends up.
async fn record_member(
    engine: &Arc<Engine>,
    g: &ServerGroup,
    inst: &Instance,
    host: &HostName,
    claim: ClaimId,
    correlation: &str,
) -> Result<(), EngineError> {
    let meta = Meta::service(
        "scheduler",
        correlation,
        &op_of(inst).to_string(),
        // One record per claim (one per decision).
        format!("sg-place-{claim}"),
    );
    engine
        .server_groups(
            &g.project_id,
            |_| ServerGroupCommand::Place {
                id: g.id,
                instance: inst.id(),
                host: host.clone(),
            },
            &ctx(),
            &meta,
        )
        .await
        .map(|_| ())
}

/// Whether some claim may soon be released: it belongs to an instance that is still
/// choosing a host (another scheduler's attempt that may lose its race) or that is gone.
fn transient_claims(v: &projections::Views, me: &InstanceId) -> bool {
    v.claims().iter().any(|(id, _)| {
        id != me
            && v.instance(id)
                .is_none_or(|i| i.deleted || i.is_scheduling())
    })
}

/// [`claim_first`], retried for a short while when nothing fits but some capacity is
/// held by claims that are about to be released (e.g. a losing duplicate attempt of
/// another scheduler process), so that a race never turns into a spurious NoValidHost.
/// When only hosts of a down cell fit, says so (unless `give_up`: then they count as not
/// fitting, as Nova does with cells it cannot reach).
#[allow(clippy::too_many_arguments)]
async fn claim_with_patience(
    engine: &Arc<Engine>,
    decider: &Decider,
    inst: &Instance,
    req: &scheduling::Request<'_>,
    cells: Option<&CellName>,
    correlation: &str,
    pending: &Pending,
    reserved: &mut Option<(HostName, u64)>,
    give_up: bool,
) -> Result<Found, EngineError> {
    let mut caught_up = false;
    let mut last = String::new();
    for _ in 0..50 {
        match claim_first(
            engine,
            decider,
            inst,
            req,
            cells,
            correlation,
            pending,
            reserved,
        )
        .await?
        {
            Found::Claim(c) => return Ok(Found::Claim(c)),
            Found::CellDown if !give_up => return Ok(Found::CellDown),
            Found::CellDown => {}
            Found::Nothing(why) => last = why,
        }
        if !caught_up {
            // Our view may be stale (other processes write too): decide "no valid
            // host" only on state at least as new as the log is now.
            engine.catch_up().await?;
            caught_up = true;
            continue;
        }
        if !transient_claims(&engine.world().read(), &inst.id()) {
            return Ok(Found::Nothing(last));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        engine.catch_up().await?;
    }
    Ok(Found::Nothing(last))
}

async fn release(
    engine: &Arc<Engine>,
    cell: &CellName,
    host: &HostName,
    claim: ClaimId,
    correlation: &str,
) {
    let meta = Meta::service(
        "scheduler",
        correlation,
        &claim.to_string(),
        domain::dedupe::release(claim),
    );
    if let Err(e) = engine
        .host(cell, host, HostCommand::Release { claim }, &ctx(), &meta)
        .await
    {
        tracing::warn!(%claim, error = %e, "release failed; placement will retry");
    }
}

/// The scheduling request of `inst` (filters' and weighers' inputs about the instance).
fn request<'a>(
    inst: &'a Instance,
    inputs: &'a Inputs,
    resources: Resources,
    exclude: &'a [HostName],
    force_host: Option<&'a HostName>,
    availability_zone: Option<&'a str>,
) -> scheduling::Request<'a> {
    scheduling::Request {
        resources,
        exclude,
        force_host,
        availability_zone,
        instance: Some(inst.id()),
        instance_host: inst.host.as_ref(),
        project_id: &inst.spec.project_id,
        extra_specs: Some(&inst.flavor.extra_specs),
        image_properties: Some(&inputs.image_properties),
        same_host: inputs.same_host.as_deref(),
        different_host: &inputs.different_host,
        group: None,
    }
}

async fn schedule_build(
    engine: &Arc<Engine>,
    decider: &Decider,
    inst: &Instance,
    correlation: &str,
    pending: &Pending,
    reserved: &mut Option<(HostName, u64)>,
    give_up: bool,
) -> Result<Step, EngineError> {
    let resources = inst.flavor.resources(inst.spec.boot_from_volume);
    let inputs = Inputs::of(&engine.world().read(), &inst.id());
    let req = request(
        inst,
        &inputs,
        resources,
        &[],
        inst.spec.requested_host.as_ref(),
        inst.spec.availability_zone.as_deref(),
    );
    let op = op_of(inst);
    let chosen = match claim_with_patience(
        engine,
        decider,
        inst,
        &req,
        None,
        correlation,
        pending,
        reserved,
        give_up,
    )
    .await?
    {
        Found::Claim(c) => Ok(c),
        Found::Nothing(why) => Err(why),
        Found::CellDown => return Ok(Step::WaitForCell),
    };
    let (cell, host, fault, fault_details) = match &chosen {
        Ok((c, h, claim)) => (c.clone(), Some((h.clone(), *claim)), None, None),
        Err(why) => (
            CellName::cell0(),
            None,
            Some(scheduling::NO_VALID_HOST.to_string()),
            Some(why.clone()),
        ),
    };
    let chosen = chosen.ok();
    let meta = Meta::service(
        "scheduler",
        correlation,
        &op.to_string(),
        // The chosen claim is part of the id: two schedulers racing on one build must
        // not see each other's mapping as their own (a duplicate ack), so the loser gets
        // an OCC refusal and releases its claim at once.
        domain::dedupe::sched_map(
            inst.id(),
            op,
            attempt_of(inst),
            chosen.as_ref().map(|c| c.2),
        ),
    );
    let out = engine
        .instance(
            inst.id(),
            InstanceCommand::Map {
                op,
                cell,
                host,
                fault,
                fault_details,
            },
            &ctx(),
            &meta,
        )
        .await;
    let recorded = matches!(&out, Ok(o) if !o.events.is_empty());
    if !recorded {
        if let Some((c, h, claim)) = chosen {
            release(engine, &c, &h, claim, correlation).await;
        }
    }
    out.map(|_| Step::Done)
}

async fn place(
    engine: &Arc<Engine>,
    inst: &Instance,
    correlation: &str,
) -> Result<Step, EngineError> {
    let meta = Meta::service(
        "scheduler",
        correlation,
        &op_of(inst).to_string(),
        domain::dedupe::sched_place(inst.id()),
    );
    engine
        .instance(inst.id(), InstanceCommand::Place, &ctx(), &meta)
        .await
        .map(|_| Step::Done)
}

async fn schedule_destination(
    engine: &Arc<Engine>,
    decider: &Decider,
    inst: &Instance,
    correlation: &str,
    pending: &Pending,
    reserved: &mut Option<(HostName, u64)>,
    give_up: bool,
) -> Result<Step, EngineError> {
    let op = op_of(inst);
    let (resources, exclude, force, cell) = match &inst.migration {
        Some(m) if inst.vm_state != VmState::ShelvedOffloaded => {
            let r = m.new_flavor.resources(inst.spec.boot_from_volume);
            // Live migration moves the same flavor: the claim is the same size.
            let _ = m.kind == MigrationKind::LiveMigration;
            (
                r,
                vec![m.source_host.clone()],
                m.requested_host.clone(),
                inst.cell.clone(),
            )
        }
        // An unshelve: to the host it names (2.91, `instance.unshelve_started`), if any.
        _ => (
            inst.flavor.resources(inst.spec.boot_from_volume),
            vec![],
            inst.spec.requested_host.clone(),
            inst.cell.clone(),
        ),
    };
    let inputs = Inputs::of(&engine.world().read(), &inst.id());
    let req = request(
        inst,
        &inputs,
        resources,
        &exclude,
        force.as_ref(),
        if inst.task_state == Some(TaskState::Unshelving) {
            inst.spec.availability_zone.as_deref()
        } else {
            None
        },
    );
    let chosen = match claim_with_patience(
        engine,
        decider,
        inst,
        &req,
        cell.as_ref(),
        correlation,
        pending,
        reserved,
        give_up,
    )
    .await?
    {
        Found::Claim(c) => Some(c),
        Found::Nothing(_) => None,
        Found::CellDown => return Ok(Step::WaitForCell),
    };
    let dedupe = domain::dedupe::sched_dest(
        inst.id(),
        op,
        attempt_of(inst),
        chosen.as_ref().map(|c| c.2),
    );
    let meta = Meta::service("scheduler", correlation, &op.to_string(), dedupe);
    match chosen {
        Some((c, host, claim)) => {
            let out = engine
                .instance(
                    inst.id(),
                    InstanceCommand::Scheduled {
                        op,
                        host: host.clone(),
                        claim,
                    },
                    &ctx(),
                    &meta,
                )
                .await;
            if !matches!(&out, Ok(o) if !o.events.is_empty()) {
                release(engine, &c, &host, claim, correlation).await;
            }
            out.map(|_| Step::Done)
        }
        None => engine
            .instance(
                inst.id(),
                InstanceCommand::ScheduleFailed {
                    op,
                    reason: "There are not enough hosts available.".into(),
                },
                &ctx(),
                &meta,
            )
            .await
            .map(|_| Step::Done),
    }
}

#[async_trait]
impl Reactor for Scheduler {
    fn name(&self) -> &str {
        "scheduler"
    }

    fn subscribes(&self) -> &'static [Family] {
        &[Family::Instance]
    }

    async fn handle(&self, engine: &Arc<Engine>, delivery: &Delivery<'_>) {
        if let Some(id) = instance_of(delivery) {
            self.kick(engine, id, delivery.meta.correlation_id.clone());
        }
    }

    async fn reconcile(&self, engine: &Arc<Engine>) {
        let ids: Vec<InstanceId> = engine.world().read().pending().iter().copied().collect();
        for id in ids {
            self.kick(engine, id, format!("req-reconcile-{id}"));
        }
    }
}

/// Releases claims that their instance no longer holds.
#[derive(Debug, Default)]
pub struct Placement {
    inflight: InFlight<ClaimId>,
}

/// Claims of `id` that may be released now: (cell, host, claim).
pub fn orphan_claims(
    v: &projections::Views,
    id: &InstanceId,
) -> Vec<(CellName, HostName, ClaimId)> {
    let Some(claims) = v.claims().get(id) else {
        return vec![];
    };
    // An instance this process has not seen yet (its api stream may lag the cell
    // stream that carries the claim) is not "gone": never release on missing state.
    let Some(inst) = v.instance(id) else {
        return vec![];
    };
    if !inst.deleted && inst.is_scheduling() {
        return vec![];
    }
    let held = inst.held_claims();
    claims
        .iter()
        .filter_map(|(subject, claim)| {
            let h = &v.hosts().get(subject)?.state.spec;
            (!held.contains(&(h.name.clone(), *claim)))
                .then(|| (h.cell.clone(), h.name.clone(), *claim))
        })
        .collect()
}

impl Placement {
    /// Releases (in the background, once per claim at a time) every orphan claim of `id`.
    fn check(&self, engine: &Arc<Engine>, id: InstanceId, correlation: &str) {
        let orphans = orphan_claims(&engine.world().read(), &id);
        for (cell, host, claim) in orphans {
            let (engine, correlation) = (engine.clone(), correlation.to_string());
            self.inflight.spawn(claim, async move {
                release(&engine, &cell, &host, claim, &correlation).await;
            });
        }
    }
}

#[async_trait]
impl Reactor for Placement {
    fn name(&self) -> &str {
        "placement"
    }

    fn subscribes(&self) -> &'static [Family] {
        &[Family::Instance, Family::Host]
    }

    async fn handle(&self, engine: &Arc<Engine>, delivery: &Delivery<'_>) {
        let ids: Vec<InstanceId> = if let Some(id) = instance_of(delivery) {
            vec![id]
        } else {
            delivery
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Host(HostEvent::Claimed { instance, .. }) => Some(*instance),
                    _ => None,
                })
                .collect()
        };
        for id in ids {
            self.check(engine, id, &delivery.meta.correlation_id);
        }
    }

    async fn reconcile(&self, engine: &Arc<Engine>) {
        let ids: Vec<InstanceId> = engine.world().read().claims().keys().copied().collect();
        for id in ids {
            self.check(engine, id, "req-reconcile");
        }
    }
}

/// Drives timeouts, delayed shelve offloads and the reclaim of soft-deleted servers
/// (Nova's `_reclaim_queued_deletes`, `--reclaim-instance-interval`).
#[derive(Debug, Default)]
pub struct Reconciler;

impl Reconciler {
    /// One pass: `Tick` every instance whose operation is overdue or that is due for offload.
    pub async fn pass(engine: &Arc<Engine>) -> usize {
        Self::pass_with_failures(engine).await.0
    }

    /// [`Reconciler::pass`], also returning how many ticks failed and the last failure.
    async fn pass_with_failures(engine: &Arc<Engine>) -> (usize, usize, Option<EngineError>) {
        let t = now();
        let cfg = engine.config;
        let due: Vec<(InstanceId, String)> = {
            let v = engine.world().read();
            v.pending()
                .iter()
                .filter_map(|id| {
                    let i = v.instance(id)?;
                    let overdue = i.op.is_some_and(|o| {
                        t.0.saturating_sub(o.since.0)
                            >= cfg.task_timeout_secs.saturating_mul(1_000_000)
                    });
                    let offload = i.vm_state == VmState::Shelved
                        && i.task_state.is_none()
                        && cfg.shelved_offload_time > 0
                        && i.shelved_at
                            .is_some_and(|s| t >= s.plus_secs(cfg.shelved_offload_time));
                    let reclaim = i.reclaim_due(&cfg, t);
                    (overdue || offload || reclaim).then(|| {
                        let key = match i.op {
                            Some(o) => domain::dedupe::tick(*id, o.id, o.attempt),
                            None if reclaim => domain::dedupe::tick_reclaim(*id, i.updated_at.0),
                            None => domain::dedupe::tick_offload(
                                *id,
                                i.shelved_at.map(|s| s.0).unwrap_or(0),
                            ),
                        };
                        (*id, key)
                    })
                })
                .collect()
        };
        let n = due.len();
        let (mut failed, mut last) = (0, None);
        for (id, key) in due {
            let meta = Meta::service(
                "reconciler",
                &format!("req-{}", Uuid::new_v4()),
                &key,
                key.clone(),
            );
            let c = Ctx::service("reconciler", t, Uuid::new_v4());
            if let Err(e) = engine.instance(id, InstanceCommand::Tick, &c, &meta).await {
                tracing::warn!(instance = %id, error = %e, "reconcile tick failed");
                failed += 1;
                last = Some(e);
            }
        }
        (n, failed, last)
    }
}

/// The reconciler is a periodic task of the [`engine::Runtime`] (its period is the
/// stack's `reconcile_every`).
#[async_trait]
impl Periodic for Reconciler {
    fn name(&self) -> &str {
        "reconciler"
    }

    async fn run(&self, engine: &Arc<Engine>) -> Result<(), TaskError> {
        match Reconciler::pass_with_failures(engine).await {
            (n, failed, Some(e)) => {
                Err(format!("{failed} of {n} ticks failed, the last: {e}").into())
            }
            _ => Ok(()),
        }
    }
}

/// Keeps every server group member's record true to its instance, as Nova does when an
/// instance is destroyed or moved:
/// - a deleted instance is removed from its group;
/// - a member whose instance never appeared (the API died between the join and the
///   build request) is removed once the quota grace (`--quota-grace`, the same window:
///   an API request's two appends) has passed since its join;
/// - a member neither scheduling nor moving is settled on its instance's host, which
///   drops the hosts it held besides: a move's other host once it is confirmed or
///   reverted, a racing decision's host once the build is mapped elsewhere.
///
/// Level-triggered: on every instance commit it checks that instance, on every server
/// group commit the members it names, and the reconcile pass checks every member, so a
/// fix lost to a crash is made later. A reactor rather than a fold: the
/// `server_group_members` count and the hard policies are decided on the group's own
/// subject, which must therefore hold the record itself. A settle or an orphan removal
/// is decided again after catching up with the log, and a settle only applies to the
/// placement it was decided on (compare-and-set in the domain), so a stale view never
/// drops a hold that a move still needs.
#[derive(Debug, Default)]
pub struct GroupMembers {
    inflight: InFlight<InstanceId>,
}

impl GroupMembers {
    /// What member `id` needs on `v`: its group's (project, id), the placement it was
    /// judged on, the group row's sequence, and the fix.
    fn judge(
        engine: &Engine,
        v: &projections::Views,
        id: &InstanceId,
        now: domain::Timestamp,
    ) -> Option<(String, domain::ServerGroupId, MemberHosts, u64, MemberFix)> {
        let g = v.server_groups().of_member(id)?;
        let row = v.server_groups().project(&g.project_id)?;
        let seen = row.state.placement(&g.id, id)?;
        let fix = reconcile_member(
            &seen,
            row.state.joined.get(id).copied(),
            v.instance(id),
            now,
            engine.quota.grace,
        )?;
        Some((g.project_id.clone(), g.id, seen, row.seq, fix))
    }

    fn check(&self, engine: &Arc<Engine>, id: InstanceId) {
        let t = now();
        let Some(first) = Self::judge(engine, &engine.world().read(), &id, t) else {
            return;
        };
        let engine = engine.clone();
        self.inflight.spawn(id, async move {
            let (project, group, seen, seq, fix) = first;
            let deleted = engine
                .world()
                .read()
                .instance(&id)
                .is_some_and(|i| i.deleted);
            let fix = if deleted {
                fix
            } else {
                // Judge again on state at least as new as the log is now, against the
                // placement seen before: every hold in it was recorded after its move
                // was requested, so the instance seen now shows that move.
                if let Err(e) = engine.catch_up().await {
                    tracing::warn!(instance = %id, error = %e, "server group member check postponed");
                    return;
                }
                let v = engine.world().read();
                match reconcile_member(
                    &seen,
                    v.server_groups()
                        .project(&project)
                        .and_then(|r| r.state.joined.get(&id).copied()),
                    v.instance(&id),
                    t,
                    engine.quota.grace,
                ) {
                    Some(f) => f,
                    None => return,
                }
            };
            let (cmd, key) = match fix {
                MemberFix::Remove => (
                    ServerGroupCommand::RemoveMembers {
                        id: group,
                        instances: vec![id],
                    },
                    format!("sg-remove-{group}-{id}"),
                ),
                MemberFix::Settle(host) => (
                    ServerGroupCommand::Settle {
                        id: group,
                        instance: id,
                        host,
                        seen,
                    },
                    // One settle per state of the group it was decided on.
                    format!("sg-settle-{group}-{id}-{seq}"),
                ),
            };
            let meta = Meta::service(
                "scheduler",
                &format!("req-{}", Uuid::new_v4()),
                &id.to_string(),
                key,
            );
            if let Err(e) = engine
                .server_groups(&project, |_| cmd.clone(), &ctx(), &meta)
                .await
            {
                tracing::warn!(instance = %id, error = %e, "server group member fix failed; retried on reconcile");
            }
        });
    }
}

#[async_trait]
impl Reactor for GroupMembers {
    fn name(&self) -> &str {
        "server-group-members"
    }

    fn subscribes(&self) -> &'static [Family] {
        &[Family::Instance, Family::ServerGroup]
    }

    async fn handle(&self, engine: &Arc<Engine>, delivery: &Delivery<'_>) {
        if let Some(id) = instance_of(delivery) {
            self.check(engine, id);
            return;
        }
        for e in &delivery.events {
            if let Event::ServerGroup(
                ServerGroupEvent::MemberPlaced { instance, .. }
                | ServerGroupEvent::MemberHeld { instance, .. },
            ) = e
            {
                self.check(engine, *instance);
            }
        }
    }

    async fn reconcile(&self, engine: &Arc<Engine>) {
        let ids: Vec<InstanceId> = engine
            .world()
            .read()
            .server_groups()
            .members()
            .map(|(i, _)| *i)
            .collect();
        for id in ids {
            self.check(engine, id);
        }
    }
}

/// Nova's instance usage audit (`_instance_usage_audit`), as a fact in the log: each
/// run closes the last completed audit period (`Engine::audit_period_secs`, aligned as
/// [`domain::audit::last_completed_period`]) of every cell that has not closed it yet,
/// by appending `audit.period_closed` to the cell's usage audit subject with every
/// compute host of the cell (disabled ones too, as Nova's services) and the instances
/// active on each in the period (from the usage read model, by the instance's host).
///
/// Runs in every scheduler process: the dedupe id is derived from cell and period
/// (`domain::dedupe::usage_audit`) and the append expects the subject's last sequence,
/// so a period is closed once however many processes race; a loser sees the record
/// on its next run. Only the last completed period is closed (no backfill of periods
/// that passed while no scheduler ran, as Nova's computes do not audit those either).
#[derive(Debug, Default)]
pub struct UsageAuditor;

impl UsageAuditor {
    /// Closes the last completed period in every cell that has not; returns how many
    /// cells it closed.
    pub async fn pass(engine: &Arc<Engine>) -> Result<usize, TaskError> {
        use domain::audit::{self, AuditEvent, HostAudit};
        let now = engine::now();
        let (begin, end) = audit::last_completed_period(now, engine.audit_period_secs);
        let todo: Vec<(CellName, eventlog::Subject, u64, Vec<HostAudit>)> = {
            let v = engine.world().read();
            let audits = v.model::<projections::usage::UsageAudits>();
            let usage = v.model::<projections::usage::Usage>();
            let mut out = Vec::new();
            for cell in v.cells().keys() {
                if *cell == CellName::cell0() {
                    continue;
                }
                let row = audits.cell(cell);
                if row.is_some_and(|r| r.state.periods.contains_key(&begin)) {
                    continue;
                }
                let mut hosts: std::collections::BTreeMap<HostName, Vec<InstanceId>> = v
                    .hosts()
                    .values()
                    .filter(|h| h.state.spec.cell == *cell && !h.state.service.deleted)
                    .map(|h| (h.state.spec.name.clone(), Vec::new()))
                    .collect();
                for (id, u) in projections::ReadModel::rows(usage) {
                    if !audit::active_in(u.launched_at, u.terminated_at, begin, end) {
                        continue;
                    }
                    let host =
                        v.instances().get(id).and_then(|r| r.state()).and_then(|s| {
                            (s.cell.as_ref() == Some(cell)).then(|| s.host.clone())?
                        });
                    if let Some(list) = host.and_then(|h| hosts.get_mut(&h)) {
                        list.push(*id);
                    }
                }
                let hosts = hosts
                    .into_iter()
                    .map(|(host, instances)| HostAudit {
                        host,
                        instances,
                        errors: 0,
                    })
                    .collect();
                out.push((
                    cell.clone(),
                    projections::usage::audit_subject(cell),
                    row.map_or(0, |r| r.seq),
                    hosts,
                ));
            }
            out
        };
        let mut closed = 0;
        for (cell, subject, seq, hosts) in todo {
            let event = domain::Event::UsageAudit(AuditEvent::PeriodClosed {
                cell: cell.clone(),
                period_beginning: begin,
                period_ending: end,
                hosts,
                at: now,
            });
            let req = eventlog::AppendRequest {
                subject,
                expected: eventlog::ExpectedSeq::Exactly(seq),
                dedupe_id: domain::dedupe::usage_audit(&cell, begin),
                meta: eventlog::Metadata {
                    correlation_id: format!("req-{}", uuid::Uuid::new_v4()),
                    causation_id: String::new(),
                    actor: eventlog::Actor {
                        user: "usage-audit".into(),
                        project: String::new(),
                        roles: vec!["service".into()],
                    },
                    occurred_at: now.0,
                },
                events: vec![projections::codec::encode(&event)],
            };
            match engine.log().append(req).await {
                Ok(_) => closed += 1,
                // Another process closed it (or closed another period) meanwhile: the
                // next run sees its record.
                Err(eventlog::LogError::WrongLastSequence { .. }) => {}
                Err(e) => return Err(format!("closing {cell}'s audit period: {e}").into()),
            }
        }
        Ok(closed)
    }
}

#[async_trait]
impl Periodic for UsageAuditor {
    fn name(&self) -> &str {
        "usage-audit"
    }

    async fn run(&self, engine: &Arc<Engine>) -> Result<(), TaskError> {
        UsageAuditor::pass(engine).await.map(|_| ())
    }
}
