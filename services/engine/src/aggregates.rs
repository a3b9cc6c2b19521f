//! Host aggregate commands (`stratus.api.aggregates.all`, one subject for all).
//!
//! Invariants:
//! - Every aggregate command decides on the whole [`domain::aggregate::AggregateSet`]
//!   read from the world and appends with the set subject's expected sequence, so name
//!   uniqueness and "a host is in at most one availability zone" hold under any
//!   concurrency (of two racing commands OCC lets one through; the other is decided
//!   again on the new set). When `aggregate` returns Ok the world reflects the append.
//! - The host facts (does a compute host exist, its live instances) are read from the
//!   same world snapshot as the set. They live on other subjects, so they are not
//!   covered by OCC: an instance placed on a host while its zone changes is not seen,
//!   as in Nova (which checks them with separate queries too).
//! - A refused command appends nothing.

use domain::aggregate::{self, AggregateCommand, HostFacts};
use domain::{Ctx, Event, HostName};
use projections::aggregates::aggregates_subject;
use projections::Views;

use crate::{Engine, EngineError, Meta, Outcome};

/// Host facts read from a world snapshot.
pub struct WorldFacts<'a>(pub &'a Views);

impl HostFacts for WorldFacts<'_> {
    fn exists(&self, host: &HostName) -> bool {
        self.0.compute_host_known(host)
    }

    fn instances_on(&self, host: &HostName) -> usize {
        self.0
            .instances()
            .values()
            .filter_map(|r| r.state())
            .filter(|i| !i.deleted && i.host.as_ref() == Some(host))
            .count()
    }
}

impl Engine {
    /// Executes a host aggregate command.
    pub async fn aggregate(
        &self,
        cmd: AggregateCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = aggregates_subject();
        self.execute_on_world(
            &subject,
            "host aggregates",
            |v| {
                let (set, seq) = v.aggregates().set();
                let evs = aggregate::decide(set, cmd.clone(), &WorldFacts(v), ctx)?;
                Ok((evs.into_iter().map(Event::Aggregate).collect(), seq))
            },
            |v| Some(v.aggregates().set().1),
            ctx,
            meta,
        )
        .await
    }
}
