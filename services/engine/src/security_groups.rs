//! Security group commands (`stratus.api.security_group.<uuid>`: a group and its
//! rules).
//!
//! Invariants:
//! - A command decides on the in-memory world and appends with the subject's expected
//!   last sequence (0 for a group never created); on conflict the world catches up
//!   and the command is decided again, so of two racing creates of a project's
//!   `default` group (whose id is derived from the project) the loser is refused as
//!   existing, and of two racing duplicate rules the second is refused.
//! - When `security_group` returns Ok the world reflects the append.
//! - A refused command appends nothing.

use domain::security_group::{self, SecurityGroupCommand};
use domain::{Ctx, DomainError, Event, SecurityGroupId};
use projections::security_groups::security_group_subject;

use crate::{Engine, EngineError, Meta, Outcome};

impl Engine {
    /// Executes a command on a security group.
    pub async fn security_group(
        &self,
        id: &SecurityGroupId,
        cmd: SecurityGroupCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = security_group_subject(id);
        self.execute_on_world(
            &subject,
            &format!("security group {id}"),
            |v| {
                let row = v.security_groups().row(id);
                let evs = security_group::decide(*id, row.map(|r| &r.state), cmd.clone(), ctx.now)
                    .map_err(DomainError::Network)?;
                Ok((
                    evs.into_iter().map(Event::SecurityGroup).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.security_groups().row(id).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
