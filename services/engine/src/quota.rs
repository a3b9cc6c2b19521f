//! Quota commands: admissions on a project's ledger (`stratus.api.quota.<project>`) and
//! limits of quota classes (`stratus.api.quota_class.<name>`).
//!
//! Invariants:
//! - An admission decides on the ledger row of this process's world with the effective
//!   limits read in the same view, and appends with the ledger's expected sequence: of
//!   racing admissions (any number of processes) each one decides on the state the
//!   previous winner left, so usage never passes a limit. A refusal appends nothing.
//! - When an admission returns Ok, the world reflects it (read-your-writes).

use domain::quota::{self, Limits, QuotaCommand, Usage};
use domain::{Ctx, Event, FlavorId, InstanceId};
use projections::quota::{class_subject, ledger_subject};
use projections::Views;

use crate::{Engine, EngineError, Meta, Outcome};

/// Quota settings of a process: the base under the `default` class and how long an
/// unmatched reservation is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    /// Defaults under the `default` class (Nova's `[quota]` options).
    pub base: Limits,
    /// Grace of reservations whose instance or resize has not appeared.
    pub grace: quota::Grace,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            base: quota::nova_defaults(),
            grace: quota::Grace::default(),
        }
    }
}

impl Engine {
    /// Effective limits of a project (and user) in `views`.
    pub fn quota_limits(&self, views: &Views, project: &str, user: Option<&str>) -> Limits {
        views.quotas().effective(&self.quota.base, project, user)
    }

    /// The limits an admission for `user` in `project` checks: the project's, and the
    /// user's when the user has overrides of instances, cores or ram (Nova counts per
    /// user only then).
    fn admission_limits(&self, v: &Views, project: &str, user: &str) -> (Limits, Option<Limits>) {
        let counted = v
            .quotas()
            .ledger(project)
            .is_some_and(|r| r.state.user_counted(user));
        (
            self.quota_limits(v, project, None),
            counted.then(|| self.quota_limits(v, project, Some(user))),
        )
    }

    /// Executes a command on a project's ledger; `make` builds it from the view it is
    /// decided on (so the limits it carries are read with the ledger).
    ///
    /// Admissions of one project queue on its ledger's lock. On a single-writer log
    /// (the embedded store) the append is *submitted* under the lock and acknowledged
    /// outside it, the next admission deciding on a write-through cache of the ledger
    /// (as host claims do), so many admissions share one group commit; elsewhere the
    /// append completes under the lock. Either way each decision sees every earlier
    /// admission of this process, and OCC on the ledger's sequence orders processes.
    /// Returns once the world reflects the append (read-your-writes).
    pub async fn quota(
        &self,
        project: &str,
        make: impl Fn(&Views) -> QuotaCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        self.execute_pipelined(
            &ledger_subject(project),
            || format!("quota {project}"),
            make,
            |cmd, state: Option<&quota::Ledger>| quota::decide(state, cmd, ctx.now),
            ctx,
            meta,
        )
        .await
    }

    /// Admits new instances of `project` created by `user` (all or nothing): 403 with
    /// Nova's message when over a limit.
    pub async fn reserve_instances(
        &self,
        project: &str,
        user: &str,
        instances: Vec<(InstanceId, Usage)>,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        self.quota(
            project,
            |v| {
                let (project_limits, user_limits) = self.admission_limits(v, project, user);
                QuotaCommand::Reserve {
                    user: user.to_string(),
                    instances: instances.clone(),
                    project_limits,
                    user_limits,
                }
            },
            ctx,
            meta,
        )
        .await
    }

    /// Admits an upsize's delta for the duration of the resize.
    pub async fn reserve_resize(
        &self,
        project: &str,
        instance: InstanceId,
        flavor: &FlavorId,
        delta: Usage,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        self.quota(
            project,
            |v| {
                let user = v
                    .quotas()
                    .ledger(project)
                    .and_then(|r| r.state.holdings.get(&instance))
                    .map(|h| h.user.clone())
                    .unwrap_or_default();
                let (project_limits, user_limits) = self.admission_limits(v, project, &user);
                QuotaCommand::ReserveResize {
                    instance,
                    flavor: flavor.clone(),
                    delta,
                    project_limits,
                    user_limits,
                }
            },
            ctx,
            meta,
        )
        .await
    }

    /// Sets a quota class's limits.
    pub async fn quota_class(
        &self,
        class: &str,
        limits: Limits,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = class_subject(class);
        self.execute_on_world(
            &subject,
            &format!("quota class {class}"),
            |v| {
                let row = v.quotas().rows_of(&subject);
                let evs = quota::decide(
                    row.map(|r| &r.state),
                    QuotaCommand::SetClass {
                        limits: limits.clone(),
                    },
                    ctx.now,
                )?;
                Ok((
                    evs.into_iter().map(Event::Quota).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.quotas().rows_of(&subject).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
