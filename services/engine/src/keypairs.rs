//! Key pair commands on a user's ring (`stratus.api.keypairs.<user>`).
//!
//! Invariants:
//! - A create decides on the ring row of this process's world with the user's
//!   `key_pairs` limit read in the same view (the project's quota ledger and classes),
//!   and appends with the ring's expected sequence: of racing creates (any number of
//!   processes) each decides on the state the previous winner left, so names stay
//!   unique and the count never passes the limit. A refusal appends nothing.
//! - When `keypair` returns Ok, the world reflects the append (read-your-writes).

use domain::keypair::{self, KeypairCommand};
use domain::quota::Resource;
use domain::{Ctx, Event};
use projections::keypairs::ring_subject;
use projections::Views;

use crate::{Engine, EngineError, Meta, Outcome};

impl Engine {
    /// The `key_pairs` limit of `user` in `project` (-1: unlimited).
    pub fn keypair_limit(&self, views: &Views, project: &str, user: &str) -> i64 {
        self.quota_limits(views, project, Some(user))
            .get(&Resource::KeyPairs)
            .copied()
            .unwrap_or(-1)
    }

    /// Executes a command on `user`'s key ring; `make` builds it from the view it is
    /// decided on (so a create carries the limit read with the ring).
    pub async fn keypair(
        &self,
        user: &str,
        make: impl Fn(&Views) -> KeypairCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = ring_subject(user);
        self.execute_on_world(
            &subject,
            &format!("keypairs of {user}"),
            |v| {
                let row = v.keypairs().ring(user);
                let evs = keypair::decide(row.map(|r| &r.state), make(v), ctx.now)?;
                Ok((
                    evs.into_iter().map(Event::Keypair).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.keypairs().ring(user).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
