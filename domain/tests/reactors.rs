//! Reactor commands: idempotency (stale or repeated answers decide to nothing) and the
//! reconciler's Tick (retries, then the failure).

mod common;

use common::*;
use domain::instance::{Config, InstanceCommand as C, Work};
use domain::{CellName, PowerState as P, TaskState as T, VmState as V};
use uuid::Uuid;

fn stale() -> Uuid {
    Uuid::from_u128(0xDEAD)
}

#[test]
fn complete_and_fail_with_a_stale_op_decide_nothing() {
    let mut w = World::active();
    w.when(C::Pause).ok();
    let before = w.state.clone();
    w.when_as(
        Who::Service,
        C::Complete {
            op: stale(),
            task: T::Pausing,
        },
    )
    .no_events();
    w.when_as(
        Who::Service,
        C::Fail {
            op: stale(),
            task: T::Pausing,
            message: "x".into(),
        },
    )
    .no_events();
    assert_eq!(w.state, before);
}

#[test]
fn complete_and_fail_with_the_wrong_task_decide_nothing() {
    let mut w = World::active();
    w.when(C::Pause).ok();
    let op = w.op();
    for task in T::ALL.into_iter().filter(|t| *t != T::Pausing) {
        w.when_as(Who::Service, C::Complete { op, task })
            .no_events();
        w.when_as(
            Who::Service,
            C::Fail {
                op,
                task,
                message: "x".into(),
            },
        )
        .no_events();
    }
    w.task_is(Some(T::Pausing));
}

#[test]
fn complete_twice_yields_nothing_the_second_time() {
    let mut w = World::active();
    w.when(C::Pause).ok();
    let (op, task) = (w.op(), w.task());
    w.when_as(Who::Service, C::Complete { op, task })
        .events(&["instance.action_completed"]);
    w.when_as(Who::Service, C::Complete { op, task })
        .no_events();
    w.when_as(
        Who::Service,
        C::Fail {
            op,
            task,
            message: "late".into(),
        },
    )
    .no_events()
    .vm(V::Paused)
    .idle();
}

#[test]
fn an_answer_for_a_replaced_operation_is_ignored() {
    // Hard reboot replaces a pause in progress; the pause's late answer is stale.
    let mut w = World::active();
    w.when(C::Pause).ok();
    let pause_op = w.op();
    w.when(C::Reboot { hard: true }).ok();
    w.when_as(
        Who::Service,
        C::Complete {
            op: pause_op,
            task: T::Pausing,
        },
    )
    .no_events()
    .task_is(Some(T::RebootingHard));
}

#[test]
fn scheduled_with_a_stale_op_or_when_not_scheduling_decides_nothing() {
    let mut w = World::active();
    w.when(C::Resize { flavor: medium() }).ok();
    w.when_as(
        Who::Service,
        C::Scheduled {
            op: stale(),
            host: host("compute-2"),
            claim: claim(2),
        },
    )
    .no_events();
    w.when_as(
        Who::Service,
        C::ScheduleFailed {
            op: stale(),
            reason: "x".into(),
        },
    )
    .no_events();
    w.task_is(Some(T::ResizePrep));
    // Once scheduled, a second answer (even for the current op) is ignored.
    w.scheduled("compute-2", claim(2)).ok();
    let op = w.op();
    w.when_as(
        Who::Service,
        C::Scheduled {
            op,
            host: host("compute-3"),
            claim: claim(3),
        },
    )
    .no_events();
    w.when_as(
        Who::Service,
        C::ScheduleFailed {
            op,
            reason: "late".into(),
        },
    )
    .no_events();
    assert_eq!(
        w.i().migration.as_ref().unwrap().dest_host,
        Some(host("compute-2"))
    );

    // A task that does not schedule ignores Scheduled for its own op.
    let mut w = World::active();
    w.when(C::Pause).ok();
    let op = w.op();
    w.when_as(
        Who::Service,
        C::Scheduled {
            op,
            host: host("compute-2"),
            claim: claim(2),
        },
    )
    .no_events()
    .on_host(Some("compute-1"));
}

#[test]
fn map_and_place_are_idempotent() {
    let mut w = World::created(Config::default());
    let op = w.op();
    let map = C::Map {
        op,
        cell: CellName::cell1(),
        host: Some((host("compute-1"), claim(1))),
        fault: None,
        fault_details: None,
    };
    w.when_as(
        Who::Service,
        C::Map {
            op: stale(),
            cell: CellName::cell1(),
            host: None,
            fault: None,
            fault_details: None,
        },
    )
    .no_events();
    w.when_as(Who::Service, C::Place).no_events(); // not mapped yet
    w.when_as(Who::Service, map.clone())
        .events(&["instance.mapped"]);
    w.when_as(Who::Service, map.clone()).no_events();
    w.when_as(Who::Service, C::Place)
        .events(&["instance.placed"]);
    w.when_as(Who::Service, C::Place).no_events();
    w.when_as(Who::Service, map).no_events();
    w.task_is(Some(T::Spawning)).replays();
}

#[test]
fn tick_does_nothing_when_idle_or_before_the_timeout() {
    let mut w = World::active();
    w.advance(100_000).tick().no_events();
    w.when(C::Pause).ok();
    w.advance(58).tick().no_events(); // tick runs one second later: 59s < 60s
}

#[test]
fn tick_retries_a_stuck_pause_then_fails_it() {
    let cfg = Config::default();
    let mut w = World::active();
    w.when(C::Pause).ok();
    let op = w.op();
    w.advance(cfg.task_timeout_secs)
        .tick()
        .events(&["instance.task_retried"]);
    assert_eq!(w.i().op.unwrap().attempt, 2);
    assert_eq!(w.i().op.unwrap().id, op, "a retry keeps the operation");
    // The retry restarts the clock.
    w.advance(cfg.task_timeout_secs - 2).tick().no_events();
    w.advance(2).tick().events(&["instance.task_retried"]);
    assert_eq!(w.i().op.unwrap().attempt, 3);
    w.advance(cfg.task_timeout_secs)
        .tick()
        .events(&["instance.task_failed"])
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .status("ACTIVE")
        .has_fault()
        .replays();
    assert_eq!(
        w.i().fault.as_ref().unwrap().message,
        "Timed out: no answer for task_state pausing after 3 attempts"
    );
    // The late answer is stale now.
    w.when_as(
        Who::Service,
        C::Complete {
            op,
            task: T::Pausing,
        },
    )
    .no_events();
}

#[test]
fn tick_fails_a_stuck_build_into_error_off_its_host() {
    let cfg = Config {
        max_attempts: 2,
        ..Config::default()
    };
    let mut w = World::spawning(cfg);
    w.advance(cfg.task_timeout_secs)
        .tick()
        .events(&["instance.task_retried"]);
    w.advance(cfg.task_timeout_secs)
        .tick()
        .events(&["instance.spawn_failed"])
        .vm(V::Error)
        .idle()
        .status("ERROR")
        .on_host(None)
        .claim_is(None)
        .has_fault();
    assert_eq!(w.i().work(), None);
}

#[test]
fn tick_with_a_single_attempt_fails_at_once() {
    let cfg = Config {
        max_attempts: 1,
        ..Config::default()
    };
    let mut w = World::active_with(cfg);
    w.when(C::Stop).ok();
    w.advance(cfg.task_timeout_secs)
        .tick()
        .events(&["instance.task_failed"])
        .vm(V::Active)
        .idle();
}

#[test]
fn tick_fails_a_stuck_resize_into_error() {
    let mut w = World::active_with(Config {
        max_attempts: 1,
        ..Config::default()
    });
    w.when(C::Resize { flavor: medium() }).ok();
    w.scheduled("compute-2", claim(2)).ok();
    w.advance(60)
        .tick()
        .events(&["instance.task_failed"])
        .vm(V::Error)
        .no_migration()
        .on_host(Some("compute-1"));
}

#[test]
fn scheduled_restarts_the_timeout_clock() {
    let mut w = World::active();
    w.when(C::Resize { flavor: medium() }).ok();
    w.advance(50);
    w.scheduled("compute-2", claim(2)).ok();
    w.advance(50).tick().no_events();
}

/// Documents a domain bug (see the report): `held_claims` lists the source claim twice
/// during a migration (`host`/`claim` and `migration.source_*` are the same pair),
/// and the destination claim twice once the resize finished.
#[test]
fn held_claims_during_a_resize_name_every_claim_once() {
    let mut w = World::active();
    assert_eq!(w.i().held_claims(), vec![(host("compute-1"), claim(1))]);
    w.when(C::Resize { flavor: medium() }).ok();
    assert_no_duplicate_claims(&w);
    w.scheduled("compute-2", claim(2)).ok();
    assert_no_duplicate_claims(&w);
    w.complete().ok();
    assert_no_duplicate_claims(&w);
    let mut held = w.i().held_claims();
    held.sort();
    held.dedup();
    assert_eq!(
        held,
        vec![(host("compute-1"), claim(1)), (host("compute-2"), claim(2))]
    );
}

fn assert_no_duplicate_claims(w: &World) {
    let held = w.i().held_claims();
    let mut dedup = held.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(held.len(), dedup.len(), "duplicate held claims: {held:?}");
}

/// Documents a domain bug (see the report): when the build times out between
/// `mapped` and `placed`, the timeout's fault is overwritten by `pending_fault`
/// (None for a mapped-with-host build) when `Place` writes `build_failed`.
#[test]
fn a_build_that_times_out_while_mapped_keeps_its_fault_when_placed() {
    let cfg = Config {
        max_attempts: 1,
        ..Config::default()
    };
    let mut w = World::created(cfg);
    let op = w.op();
    w.when_as(
        Who::Service,
        C::Map {
            op,
            cell: CellName::cell1(),
            host: Some((host("compute-1"), claim(1))),
            fault: None,
            fault_details: None,
        },
    )
    .ok();
    w.advance(60)
        .tick()
        .events(&["instance.spawn_failed"])
        .has_fault();
    assert_eq!(w.i().work(), Some(Work::Place));
    w.when_as(Who::Service, C::Place)
        .events(&["instance.build_failed"])
        .vm(V::Error)
        .has_fault();
}

/// Documents a domain robustness bug (see the report): `Tick` computes
/// `now.0 - o.since.0` with plain subtraction, which overflows (and panics in debug
/// builds) for extreme clock values instead of deciding.
#[test]
fn tick_never_panics_on_extreme_clocks() {
    use domain::instance::decide;
    use domain::{Ctx, Timestamp};
    let w = World::active();
    let mut i = w.i().clone();
    i.task_state = Some(T::Pausing);
    i.op = Some(domain::instance::Operation {
        id: Uuid::from_u128(1),
        action: domain::instance::Action::Pause,
        since: Timestamp(-1_000_000),
        attempt: 1,
    });
    let ctx = Ctx::service("reconciler", Timestamp(i64::MAX), Uuid::from_u128(2));
    let r = std::panic::catch_unwind(|| decide(Some(&i), C::Tick, &ctx, &Config::default()));
    assert!(r.is_ok(), "decide panicked");
}
