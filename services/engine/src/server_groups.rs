//! Server group commands, on a project's groups (`stratus.api.server_groups.<project>`).
//!
//! Invariant: each decision is taken on the row of this process's world and appended
//! with its expected sequence, so racing decisions (any number of API or scheduler
//! processes) each see the previous winner: the `server_groups` and
//! `server_group_members` counts and the hard policies hold exactly.

use domain::server_group::{self, ServerGroupCommand};
use domain::{Ctx, Event};
use projections::server_groups::groups_subject;
use projections::Views;

use crate::{Engine, EngineError, Meta, Outcome};

impl Engine {
    /// Executes a command on `project`'s server groups; `make` builds it from the view
    /// it is decided on (so quota limits are read with the groups).
    pub async fn server_groups(
        &self,
        project: &str,
        make: impl Fn(&Views) -> ServerGroupCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = groups_subject(project);
        self.execute_on_world(
            &subject,
            &format!("server groups {project}"),
            |v| {
                let row = v.server_groups().project(project);
                let empty = server_group::ProjectGroups::default();
                let evs = server_group::decide(row.map(|r| &r.state).unwrap_or(&empty), make(v))?;
                Ok((
                    evs.into_iter().map(Event::ServerGroup).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.server_groups().project(project).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
