//! Router and floating IP commands (`stratus.api.router.<uuid>`,
//! `stratus.api.floatingip.<uuid>`).
//!
//! Invariants:
//! - As for networks: decided on the in-memory world, appended with the subject's
//!   expected last sequence, decided again on conflict (bounded retries).
//! - When a command returns Ok the world reflects the append (read-your-writes).
//! - A refused command appends nothing. The ports these records name live on the
//!   network aggregates: the API orders the two appends (see network::routers).

use domain::router::{self, FloatingIpCommand, RouterCommand};
use domain::{Ctx, DomainError, Event, FloatingIpId, RouterId};
use projections::routers::{floating_ip_subject, router_subject};

use crate::{Engine, EngineError, Meta, Outcome};

impl Engine {
    /// Executes a command on a router.
    pub async fn router(
        &self,
        id: &RouterId,
        cmd: RouterCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        self.execute_on_world(
            &router_subject(id),
            &format!("router {id}"),
            |v| {
                let row = v.routers().row(id);
                let evs = router::decide(*id, row.map(|r| &r.state), cmd.clone(), ctx.now)
                    .map_err(DomainError::Network)?;
                Ok((
                    evs.into_iter().map(Event::Router).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.routers().row(id).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }

    /// Executes a command on a floating IP.
    pub async fn floating_ip(
        &self,
        id: &FloatingIpId,
        cmd: FloatingIpCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        self.execute_on_world(
            &floating_ip_subject(id),
            &format!("floating ip {id}"),
            |v| {
                let row = v.floating_ips().row(id);
                let evs =
                    router::decide_floating_ip(*id, row.map(|r| &r.state), cmd.clone(), ctx.now)
                        .map_err(DomainError::Network)?;
                Ok((
                    evs.into_iter().map(Event::FloatingIp).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.floating_ips().row(id).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
