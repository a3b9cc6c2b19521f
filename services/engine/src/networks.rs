//! Network commands (`stratus.api.network.<uuid>`: a network, its subnets and ports).
//!
//! Invariants:
//! - Like images, a network command decides on the in-memory world and appends with
//!   the subject's expected last sequence; on conflict the world catches up and the
//!   command is decided again (bounded retries). Address and MAC allocation are part
//!   of the decision, so two racing port creates (any number of processes) never get
//!   one address: the loser decides again on the winner's state.
//! - When `network` returns Ok the world reflects the append (read-your-writes).
//! - A refused command appends nothing.

use domain::network::{self, NetworkCommand};
use domain::{Ctx, DomainError, Event, NetworkId};
use projections::networks::network_subject;

use crate::{Engine, EngineError, Meta, Outcome};

impl Engine {
    /// Executes a command on a network.
    pub async fn network(
        &self,
        id: &NetworkId,
        cmd: NetworkCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = network_subject(id);
        self.execute_on_world(
            &subject,
            &format!("network {id}"),
            |v| {
                let row = v.networks().row(id);
                let evs = network::decide(*id, row.map(|r| &r.state), cmd.clone(), ctx.now)
                    .map_err(DomainError::Network)?;
                Ok((
                    evs.into_iter().map(Event::Network).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.networks().row(id).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
