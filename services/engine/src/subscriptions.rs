//! Webhook subscription commands (`stratus.api.subscriptions.<id>`, one subject per
//! subscription).
//!
//! Invariants: a create or delete decides on the subscription's row of this process's
//! world and appends with the row's expected sequence, so a subscription is created once
//! and deleted once under any concurrency; a refusal appends nothing; when
//! `subscription` returns Ok the world reflects the append (read-your-writes).

use domain::subscription::{self, SubscriptionCommand};
use domain::{Ctx, Event, SubscriptionId};
use projections::subscriptions::{subscription_subject, Subscriptions};

use crate::{Engine, EngineError, Meta, Outcome};

impl Engine {
    /// Executes a command on subscription `id`.
    pub async fn subscription(
        &self,
        id: SubscriptionId,
        cmd: SubscriptionCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = subscription_subject(id);
        self.execute_on_world(
            &subject,
            &format!("subscription {id}"),
            |v| {
                let row = v.model::<Subscriptions>().row(id);
                let evs =
                    subscription::decide(row.map(|r| r.state.as_ref()), id, cmd.clone(), ctx.now)?;
                Ok((
                    evs.into_iter().map(Event::Subscription).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.model::<Subscriptions>().row(id).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
