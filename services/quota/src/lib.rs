//! The quota reactor: gives back what instances no longer hold.
//!
//! Admission (usage growing) happens in the API, on the project's ledger, through
//! [`engine::Engine::reserve_instances`] / [`engine::Engine::reserve_resize`]. This
//! reactor is the other half: level-triggered on the world, it records for every holding
//! what [`domain::quota::reconcile`] decides (released when the instance is deleted or
//! its build failed, the upsize delta given back or folded in when a resize ends, and
//! anything whose instance or resize never appeared once the grace has passed).
//!
//! Invariants:
//! - It never grows usage: every event it appends is a [`QuotaCommand::Settle`], which
//!   the ledger's `decide` turns into nothing when it no longer changes anything (another
//!   replica, or the API, got there first).
//! - Its appends carry a dedupe id derived from the instance and the ledger position it
//!   decided on, so a redelivery writes nothing twice.
//! - One piece of work per instance at a time ([`InFlight`]).

use std::sync::Arc;

use async_trait::async_trait;
use domain::instance::InstanceEvent;
use domain::quota::{self, QuotaCommand, QuotaEvent};
use domain::{Ctx, Event, InstanceId, TaskState};
use engine::{now, Delivery, Engine, Family, InFlight, Meta, Reactor};

/// The quota reactor.
#[derive(Debug, Default)]
pub struct QuotaKeeper {
    inflight: InFlight<InstanceId>,
}

/// What the reactor should append for instance `id` of `project` now, with the ledger
/// sequence it was decided on (`None`: nothing).
pub fn settlement(
    engine: &Engine,
    project: &str,
    id: InstanceId,
    saw_resize_start: bool,
) -> Option<(QuotaEvent, u64)> {
    let v = engine.world().read();
    let row = v.quotas().ledger(project)?;
    let holding = row.state.holdings.get(&id)?;
    quota::reconcile(
        id,
        holding,
        v.instance(&id),
        saw_resize_start,
        now(),
        engine.quota.grace,
    )
    .map(|e| (e, row.seq))
}

impl QuotaKeeper {
    /// Settles instance `id` of `project` in the background (once at a time).
    fn check(&self, engine: &Arc<Engine>, project: String, id: InstanceId, saw_start: bool) {
        let Some((event, seq)) = settlement(engine, &project, id, saw_start) else {
            return;
        };
        let cause = format!("quota:{}", event.event_type());
        let dedupe = domain::dedupe::quota(id, seq);
        self.spawn(
            engine,
            project,
            id,
            QuotaCommand::Settle(event),
            cause,
            dedupe,
        );
    }

    /// Appends `cmd` to `project`'s ledger in the background, as the work of instance
    /// `id` (none while an earlier one for it runs). A failure is only logged: the next
    /// reconcile decides again on the state it finds.
    fn spawn(
        &self,
        engine: &Arc<Engine>,
        project: String,
        id: InstanceId,
        cmd: QuotaCommand,
        cause: String,
        dedupe: String,
    ) {
        let engine = engine.clone();
        self.inflight.spawn(id, async move {
            let meta = Meta::service("quota", &format!("req-quota-{id}"), &cause, dedupe);
            let ctx = Ctx::service("quota", now(), uuid::Uuid::now_v7());
            if let Err(e) = engine.quota(&project, |_| cmd.clone(), &ctx, &meta).await {
                tracing::warn!(instance = %id, error = %e, cause, "quota append failed; retried at the next reconcile");
            }
        });
    }

    /// Records a holding for every live instance of a cell that holds none (created
    /// before quotas were recorded). Instances still on the api stream are left alone:
    /// a create reserves before its build request, so theirs exists or is on its way.
    fn adopt(&self, engine: &Arc<Engine>) {
        let orphans: Vec<(String, InstanceId, String, quota::Usage)> = {
            let v = engine.world().read();
            v.instances()
                .iter()
                .filter(|(_, r)| r.cell.is_some())
                .filter_map(|(id, r)| {
                    let i = r.state()?;
                    let usage = quota::expected_usage(i);
                    let held = v
                        .quotas()
                        .ledger(&i.spec.project_id)
                        .is_some_and(|l| l.state.holdings.contains_key(id));
                    (!held && !usage.is_zero()).then(|| {
                        (
                            i.spec.project_id.clone(),
                            *id,
                            i.spec.user_id.clone(),
                            usage,
                        )
                    })
                })
                .collect()
        };
        for (project, id, user, usage) in orphans {
            let cmd = QuotaCommand::Adopt {
                instance: id,
                user,
                usage,
            };
            let dedupe = format!("quota:adopt:{id}");
            self.spawn(engine, project, id, cmd, "quota:adopt".into(), dedupe);
        }
    }
}

#[async_trait]
impl Reactor for QuotaKeeper {
    fn name(&self) -> &str {
        "quota"
    }

    fn subscribes(&self) -> &'static [Family] {
        &[Family::Instance]
    }

    async fn handle(&self, engine: &Arc<Engine>, delivery: &Delivery<'_>) {
        let Some(id) = InstanceId::parse(delivery.subject.id_token()) else {
            return;
        };
        // A resize that starts and ends between two looks of the reactor is still seen
        // starting here, so its end gives the delta back at once.
        let saw_start = delivery.events.iter().any(|e| {
            matches!(
                e,
                Event::Instance(InstanceEvent::MigrationStarted { .. })
                    | Event::Instance(InstanceEvent::TaskStarted {
                        task: TaskState::ResizePrep,
                        ..
                    })
            )
        });
        let project = match engine.world().read().instance(&id) {
            Some(i) => i.spec.project_id.clone(),
            None => return,
        };
        self.check(engine, project, id, saw_start);
    }

    async fn reconcile(&self, engine: &Arc<Engine>) {
        self.adopt(engine);
        let all: Vec<(String, InstanceId)> = {
            let v = engine.world().read();
            v.quotas()
                .ledgers()
                .flat_map(|(p, r)| {
                    r.state
                        .holdings
                        .keys()
                        .map(move |id| (p.clone(), *id))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (project, id) in all {
            self.check(engine, project, id, false);
        }
    }
}
