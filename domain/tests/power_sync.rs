//! Power-state sync (Nova's `_sync_instance_power_state`): what is recorded and which
//! operation follows, for settled servers in every vm_state the table names.

mod common;

use common::*;
use domain::instance::power_sync::{plan, SyncAction, SYNC_RULES};
use domain::instance::{InstanceCommand as C, InstanceEvent};
use domain::{PowerState as P, VmState as V};

fn sync(w: &mut World, observed: P) -> Vec<InstanceEvent> {
    w.when_as(Who::Service, C::SyncPowerState { observed });
    w.last.clone().expect("decided").expect("accepted")
}

#[test]
fn a_guest_that_powered_itself_off_is_recorded_then_stopped() {
    let mut w = World::active();
    let p = plan(w.i(), P::Shutdown).expect("synced");
    assert_eq!(p.record, Some(P::Shutdown));
    assert_eq!(p.action, Some(SyncAction::Stop));
    let events = sync(&mut w, P::Shutdown);
    assert!(matches!(
        events.as_slice(),
        [InstanceEvent::PowerStateChanged {
            power_state: P::Shutdown,
            ..
        }]
    ));
    w.power(P::Shutdown).vm(V::Active);
    // Recorded already: nothing more to record, the stop is still due (level-triggered).
    let again = plan(w.i(), P::Shutdown).expect("synced");
    assert_eq!(again.record, None);
    assert_eq!(again.action, Some(SyncAction::Stop));
    assert!(sync(&mut w, P::Shutdown).is_empty());
    // The stop the agent then starts ends SHUTOFF.
    w.when_as(Who::Service, C::Stop).ok();
    w.complete().ok();
    w.vm(V::Stopped).power(P::Shutdown).status("SHUTOFF");
    assert_eq!(plan(w.i(), P::Shutdown).map(|p| p.action), Some(None));
}

#[test]
fn agreement_records_nothing() {
    let mut w = World::active();
    assert_eq!(
        plan(w.i(), P::Running),
        Some(domain::instance::power_sync::SyncPlan {
            record: None,
            action: None,
            why: None
        })
    );
    assert!(sync(&mut w, P::Running).is_empty());
}

#[test]
fn an_operation_in_flight_is_not_synced() {
    let mut w = World::active();
    w.when(C::Pause).ok();
    assert!(w.i().task_state.is_some());
    assert_eq!(plan(w.i(), P::Shutdown), None);
    assert!(sync(&mut w, P::Shutdown).is_empty());
}

#[test]
fn unexpected_pause_and_missing_guest_are_recorded_only() {
    for observed in [P::Paused, P::NoState] {
        let mut w = World::active();
        let p = plan(w.i(), observed).expect("synced");
        assert_eq!((p.record, p.action), (Some(observed), None), "{observed:?}");
        assert!(p.why.is_some());
        sync(&mut w, observed);
        w.vm(V::Active).power(observed);
    }
}

#[test]
fn a_stopped_server_found_running_is_stopped_again() {
    let w = World::stopped();
    let p = plan(w.i(), P::Running).expect("synced");
    assert_eq!(
        (p.record, p.action),
        (Some(P::Running), Some(SyncAction::Stop))
    );
}

#[test]
fn a_suspended_active_server_and_a_dead_paused_one_are_stopped() {
    let w = World::active();
    assert_eq!(
        plan(w.i(), P::Suspended).and_then(|p| p.action),
        Some(SyncAction::Stop)
    );
    let w = World::paused();
    assert_eq!(
        plan(w.i(), P::Crashed).and_then(|p| p.action),
        Some(SyncAction::Stop)
    );
    assert_eq!(plan(w.i(), P::Paused).and_then(|p| p.action), None);
}

/// Every row names a distinct (vm_state, observed) pair: first match wins, so an
/// overlap would silently shadow a row.
#[test]
fn rows_do_not_overlap() {
    for (n, a) in SYNC_RULES.iter().enumerate() {
        for b in &SYNC_RULES[n + 1..] {
            if a.vm_state == b.vm_state {
                assert!(
                    a.observed.iter().all(|p| !b.observed.contains(p)),
                    "{:?} overlaps",
                    a.vm_state
                );
            }
        }
    }
}
