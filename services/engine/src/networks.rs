//! Network commands (`stratus.api.network.<uuid>`: a network, its subnets and ports).
//!
//! Invariants:
//! - Network and network quota commands run in the pipelined loop of hot aggregates
//!   ([`crate::pipeline`]): decided under the subject's lock on the newer of the world's
//!   row and this process's write-through state, appended with that state's sequence
//!   as the expected one; on conflict the command is decided again (bounded retries).
//!   Address and MAC allocation are part of the decision, so two racing port creates
//!   (any number of processes) never get one address: the loser decides again on the
//!   winner's state.
//! - When `network` returns Ok the world reflects the append (read-your-writes).
//! - A refused command appends nothing.

use domain::network::pool::{self, PoolCommand};
use domain::network::quota::{self, NetQuotaCommand, NetResource};
use domain::network::{self, NetworkCommand};
use domain::{Ctx, DomainError, Event, NetworkId, SubnetPoolId};
use projections::network_quotas::ledger_subject;
use projections::networks::network_subject;
use projections::subnet_pools::pool_subject;

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
        self.execute_pipelined(
            &subject,
            || format!("network {id}"),
            |_| (),
            |(), state: Option<&network::Network>| {
                network::decide(*id, state, cmd.clone(), ctx.now).map_err(DomainError::Network)
            },
            ctx,
            meta,
        )
        .await
    }
}

impl Engine {
    /// Executes a command on `project`'s network quota ledger.
    pub async fn network_quota(
        &self,
        project: &str,
        cmd: NetQuotaCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = ledger_subject(project);
        self.execute_pipelined(
            &subject,
            || format!("network quota of {project}"),
            |_| (),
            |(), state: Option<&quota::NetLedger>| {
                quota::decide(state, cmd.clone(), ctx.now).map_err(DomainError::Network)
            },
            ctx,
            meta,
        )
        .await
    }

    /// Counts resource `id` against `project`'s limit of `resource` (Neutron's
    /// `OverQuota` when none is left); call before creating it.
    pub async fn reserve_network(
        &self,
        project: &str,
        resource: NetResource,
        id: uuid::Uuid,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<(), EngineError> {
        self.network_quota(
            project,
            NetQuotaCommand::Reserve { resource, id },
            ctx,
            meta,
        )
        .await
        .map(|_| ())
    }

    /// Gives back what `ids` held for `project` (after a delete or a failed create).
    /// A failure is logged, not returned: the reconciler gives it back later.
    pub async fn release_network(
        &self,
        project: &str,
        ids: Vec<uuid::Uuid>,
        ctx: &Ctx,
        meta: &Meta,
    ) {
        if let Err(e) = self
            .network_quota(project, NetQuotaCommand::Release { ids }, ctx, meta)
            .await
        {
            tracing::warn!(%project, error = %e, "network quota release failed; the reconciler will retry");
        }
    }
}

impl Engine {
    /// Executes a command on a subnet pool.
    pub async fn subnet_pool(
        &self,
        id: &SubnetPoolId,
        cmd: PoolCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = pool_subject(id);
        self.execute_on_world(
            &subject,
            &format!("subnet pool {id}"),
            |v| {
                let row = v.subnet_pools().row(id);
                let evs = pool::decide(*id, row.map(|r| &r.state), cmd.clone(), ctx.now)
                    .map_err(DomainError::Network)?;
                Ok((
                    evs.into_iter().map(Event::SubnetPool).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.subnet_pools().row(id).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
