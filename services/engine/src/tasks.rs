//! Image task commands (`stratus.api.task.<uuid>`).
//!
//! Invariant: like images, a task command decides on the world and appends with the
//! subject's expected sequence; a refused command appends nothing.

use domain::task::{self, TaskCommand};
use domain::{Ctx, DomainError, Event};
use projections::tasks::task_subject;

use crate::{Engine, EngineError, Meta, Outcome};

impl Engine {
    /// Executes a task command on task `id`.
    pub async fn task(
        &self,
        id: &str,
        cmd: TaskCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = task_subject(id).ok_or_else(|| {
            EngineError::Domain(DomainError::BadRequest(format!("Invalid task id {id}")))
        })?;
        let key = id.to_string();
        self.execute_on_world(
            &subject,
            &format!("task {id}"),
            |v| {
                let row = v.tasks().get(&key);
                let evs = task::decide(row.map(|r| &r.state), cmd.clone(), ctx)?;
                Ok((
                    evs.into_iter().map(Event::Task).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.tasks().get(&key).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
