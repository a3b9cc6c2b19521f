//! The command loop of hot aggregates whose decisions queue on one subject (compute
//! hosts, which every claim on them writes; quota ledgers, which every admission of a
//! project writes; networks, whose ports' addresses are decided on the network's one
//! subject, and network quota ledgers): a write-through cache of the state this process appended, so the
//! next decision need not wait for the projector, and, on a single-writer log,
//! pipelined appends, so decisions queued on one subject share a group commit.
//!
//! Invariants:
//! - A decision is made under the subject's in-process lock on the newer of the world's
//!   row and the cached state, and appended with that state's sequence as the expected
//!   one: OCC orders this process against any other writer.
//! - The cache holds a state only while its append may still land: it is dropped on a
//!   conflict, an error or a duplicate acknowledgement (whose events were appended
//!   earlier, so the folded state may be wrong), and by [`Engine::catch_up`].
//! - Pipelining (submit under the lock, await the acknowledgement outside it) happens
//!   only when the log says it is the single writer: then a later append queued on top
//!   of an earlier one fails its OCC check if the earlier one fails.

use eventlog::{LockExt, LogError, Subject};
use std::collections::HashMap;

use domain::{Ctx, DomainError, Event};
use projections::Views;

use crate::{Engine, EngineError, Meta, Outcome, MAX_RETRIES};

/// The state of an aggregate kind that is decided on by [`Engine::execute_pipelined`].
pub(crate) trait Pipelined: Clone + Sized {
    /// The kind's domain event.
    type Event;
    /// True when a command returns only once the world reflects its append
    /// (read-your-writes for API callers); false when durability is enough (placement
    /// writers read nothing but the aggregate's own state, which the cache holds).
    const WAIT_FOR_WORLD: bool;
    /// The write-through cache of this kind in `engine`.
    fn cache(engine: &Engine) -> &WriteThrough<Self>;
    /// The row of `subject` in the world: its subject sequence and state.
    fn row<'v>(views: &'v Views, subject: &Subject) -> Option<(u64, &'v Self)>;
    /// The domain fold.
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self>;
    /// The event as the log's [`Event`].
    fn wrap(event: Self::Event) -> Event;
}

/// States this process appended, per subject, with the subject sequence they are at.
#[derive(Debug)]
pub(crate) struct WriteThrough<S>(std::sync::Mutex<HashMap<Subject, (u64, S)>>);

impl<S> Default for WriteThrough<S> {
    fn default() -> Self {
        WriteThrough(Default::default())
    }
}

impl<S: Clone> WriteThrough<S> {
    /// The newer of the world's row and the cached state (sequence 0 and no state for a
    /// subject nobody has written).
    fn newest(&self, world: Option<(u64, &S)>, subject: &Subject) -> (u64, Option<S>) {
        let cache = self.0.lock_or_recover();
        match (world, cache.get(subject)) {
            (Some(w), Some(c)) if c.0 > w.0 => (c.0, Some(c.1.clone())),
            (Some(w), _) => (w.0, Some(w.1.clone())),
            (None, Some(c)) => (c.0, Some(c.1.clone())),
            (None, None) => (0, None),
        }
    }

    fn put(&self, subject: &Subject, seq: u64, state: S) {
        self.0
            .lock_or_recover()
            .insert(subject.clone(), (seq, state));
    }

    fn forget(&self, subject: &Subject) {
        self.0.lock_or_recover().remove(subject);
    }

    /// Drops every cached state.
    pub(crate) fn clear(&self) {
        self.0.lock_or_recover().clear();
    }
}

impl Engine {
    /// Executes a command on the aggregate of `subject` (see the module docs): `read`
    /// takes what the command needs from the view the state is read in (a quota
    /// admission's limits), `decide` gets that and the state and returns the events,
    /// outside the view so the projector is not held up; `what` names the aggregate in a
    /// contention error. At most `MAX_RETRIES` OCC conflicts, each followed by a wait
    /// until the world reaches the winner's sequence.
    pub(crate) async fn execute_pipelined<S: Pipelined, C>(
        &self,
        subject: &Subject,
        what: impl FnOnce() -> String,
        read: impl Fn(&Views) -> C,
        decide: impl Fn(C, Option<&S>) -> Result<Vec<S::Event>, DomainError>,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let cache = S::cache(self);
        let pipeline = self.log.single_writer();
        for _ in 0..MAX_RETRIES {
            let guard = self.lock(subject.as_str()).await;
            let (expected, state, input) = {
                let v = self.world.read();
                let (expected, state) = cache.newest(S::row(&v, subject), subject);
                (expected, state, read(&v))
            };
            let events = decide(input, state.as_ref())?;
            if events.is_empty() {
                return Ok(Outcome::default());
            }
            let next = events.iter().fold(state, S::evolve);
            let events: Vec<Event> = events.into_iter().map(S::wrap).collect();
            let req = Self::request(subject.clone(), expected, &events, ctx, meta);
            let result = if pipeline {
                // Queue the append, assume it lands, and let the next decision on this
                // subject be taken on top of it while the group commit is under way.
                let pending = self.log.submit(req).await?;
                if let Some(s) = next {
                    cache.put(subject, expected + 1, s);
                }
                drop(guard);
                pending.await
            } else {
                let r = self.log.append(req).await;
                if let (Ok(ack), Some(s)) = (&r, next) {
                    cache.put(subject, ack.subject_seq, s);
                }
                drop(guard);
                r
            };
            match result {
                Ok(ack) => {
                    if ack.duplicate {
                        cache.forget(subject);
                    }
                    if S::WAIT_FOR_WORLD {
                        self.settle(subject, &ack).await?;
                    }
                    return Ok(Outcome {
                        events,
                        ack: Some(ack),
                    });
                }
                Err(LogError::WrongLastSequence { actual, .. }) => {
                    cache.forget(subject);
                    self.wait_seq(|v| S::row(v, subject).is_some_and(|(seq, _)| seq >= actual))
                        .await;
                }
                Err(e) => {
                    cache.forget(subject);
                    return Err(e.into());
                }
            }
        }
        Err(EngineError::Contention(what()))
    }
}

impl Pipelined for domain::host::Host {
    type Event = domain::host::HostEvent;
    const WAIT_FOR_WORLD: bool = false;
    fn cache(engine: &Engine) -> &WriteThrough<Self> {
        &engine.hosts
    }
    fn row<'v>(views: &'v Views, subject: &Subject) -> Option<(u64, &'v Self)> {
        views.hosts().get(subject).map(|r| (r.seq, &r.state))
    }
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self> {
        domain::host::evolve(state, event)
    }
    fn wrap(event: Self::Event) -> Event {
        Event::Host(event)
    }
}

impl Pipelined for domain::quota::Ledger {
    type Event = domain::quota::QuotaEvent;
    const WAIT_FOR_WORLD: bool = true;
    fn cache(engine: &Engine) -> &WriteThrough<Self> {
        &engine.ledgers
    }
    fn row<'v>(views: &'v Views, subject: &Subject) -> Option<(u64, &'v Self)> {
        views.quotas().rows_of(subject).map(|r| (r.seq, &r.state))
    }
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self> {
        domain::quota::evolve(state, event)
    }
    fn wrap(event: Self::Event) -> Event {
        Event::Quota(event)
    }
}

impl Pipelined for domain::network::Network {
    type Event = domain::network::NetworkEvent;
    const WAIT_FOR_WORLD: bool = true;
    fn cache(engine: &Engine) -> &WriteThrough<Self> {
        &engine.networks
    }
    fn row<'v>(views: &'v Views, subject: &Subject) -> Option<(u64, &'v Self)> {
        let id = domain::NetworkId::parse(subject.id_token())?;
        views.networks().row(&id).map(|r| (r.seq, &r.state))
    }
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self> {
        domain::network::evolve(state, event)
    }
    fn wrap(event: Self::Event) -> Event {
        Event::Network(event)
    }
}

impl Pipelined for domain::network::quota::NetLedger {
    type Event = domain::network::quota::NetQuotaEvent;
    const WAIT_FOR_WORLD: bool = true;
    fn cache(engine: &Engine) -> &WriteThrough<Self> {
        &engine.net_ledgers
    }
    fn row<'v>(views: &'v Views, subject: &Subject) -> Option<(u64, &'v Self)> {
        views
            .network_quotas()
            .row_of(subject)
            .map(|r| (r.seq, &r.state))
    }
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self> {
        Some(domain::network::quota::evolve(state, event))
    }
    fn wrap(event: Self::Event) -> Event {
        Event::NetworkQuota(event)
    }
}
