//! Given / when / then tests for every server action and every refusal, checked
//! against tests/reference/nova-state-actions.txt (a copy of the shared reference).

mod common;

use common::*;
use domain::instance::rules::{self, TaskReq, RULES};
use std::collections::BTreeMap;

use domain::instance::{
    Action as A, Config, CreateExtras, InstanceCommand as C, InstanceEvent, MigrationKind, Rebuild,
    ServerExtras, Work,
};
use domain::{CellName, DomainError, PowerState as P, TaskState as T, VmState as V};

fn compute(h: &str, task: T) -> Option<Work> {
    Some(Work::Compute {
        host: host(h),
        task,
    })
}

// ------------------------------------------------------------------ create

#[test]
fn create_records_a_build_request_that_needs_scheduling() {
    let mut w = World::created(Config::default());
    w.vm(V::Building)
        .task_is(Some(T::Scheduling))
        .power(P::NoState)
        .status("BUILD")
        .on_host(None);
    assert_eq!(w.i().work(), Some(Work::ScheduleBuild));
    assert!(w.i().is_scheduling());
    assert!(!w.i().placed);
}

#[test]
fn create_twice_is_refused() {
    let mut w = World::created(Config::default());
    w.when(C::Create(
        Box::new(spec()),
        Default::default(),
        Default::default(),
        Default::default(),
    ))
    .refused(&format!(
        "Instance with id {} already exists.",
        instance_id()
    ));
}

#[test]
fn create_with_a_blank_name_is_a_bad_request() {
    let mut w = World::default();
    let mut s = spec();
    s.name = "   ".into();
    w.when(C::Create(
        Box::new(s),
        Default::default(),
        Default::default(),
        Default::default(),
    ))
    .refused("Invalid server name");
    assert!(w.state.is_none());
}

#[test]
fn create_records_boot_details_beside_the_request_and_nothing_when_empty() {
    let mut w = World::default();
    let details = domain::instance::BootDetails {
        scheduler_hints: [("group".to_string(), "\"g\"".to_string())].into(),
        image_properties: Default::default(),
    };
    w.when(C::Create(
        Box::new(spec()),
        details.clone(),
        Default::default(),
        Default::default(),
    ))
    .events(&["instance.build_requested", "instance.boot_details_recorded"]);
    // The details change no state of the aggregate.
    let before = w.state.clone();
    let evolved = domain::instance::evolve(
        before.clone(),
        &domain::instance::InstanceEvent::BootDetailsRecorded { details },
    );
    assert_eq!(evolved, before);

    let mut w = World::default();
    w.when(C::Create(
        Box::new(spec()),
        Default::default(),
        Default::default(),
        Default::default(),
    ))
    .events(&["instance.build_requested"]);
}

#[test]
fn build_map_place_spawn_ends_active_on_the_chosen_host() {
    let mut w = World::created(Config::default());
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
    .events(&["instance.mapped"])
    .status("BUILD");
    assert_eq!(w.i().work(), Some(Work::Place));
    w.when_as(Who::Service, C::Place)
        .events(&["instance.placed"])
        .vm(V::Building)
        .task_is(Some(T::Spawning))
        .status("BUILD")
        .on_host(Some("compute-1"))
        .claim_is(Some(claim(1)));
    assert!(w.i().placed);
    assert_eq!(w.i().cell, Some(CellName::cell1()));
    assert_eq!(w.i().work(), compute("compute-1", T::Spawning));
    w.complete()
        .events(&["instance.spawned"])
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .status("ACTIVE")
        .replays();
    assert!(w.i().launched_at.is_some());
    assert_eq!(w.i().work(), None);
}

#[test]
fn no_valid_host_builds_in_cell0_as_error_with_the_fault() {
    let mut w = World::created(Config::default());
    let op = w.op();
    w.when_as(
        Who::Service,
        C::Map {
            op,
            cell: CellName::cell0(),
            host: None,
            fault: Some("No valid host was found.".into()),
            fault_details: None,
        },
    )
    .events(&["instance.mapped"]);
    w.when_as(Who::Service, C::Place)
        .events(&["instance.build_failed"])
        .vm(V::Error)
        .idle()
        .status("ERROR")
        .on_host(None)
        .has_fault()
        .replays();
    assert_eq!(
        w.i().fault.as_ref().unwrap().message,
        "No valid host was found."
    );
    assert_eq!(w.i().cell, Some(CellName::cell0()));
}

#[test]
fn user_commands_between_mapped_and_placed_are_not_ready() {
    let mut w = World::created(Config::default());
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
    w.when(C::Delete).refused_not_ready();
    w.when_admin(C::Lock { reason: None }).refused_not_ready();
}

#[test]
fn spawn_failure_puts_the_instance_in_error_off_its_host() {
    let mut w = World::spawning(Config::default());
    w.fail("libvirt exploded")
        .events(&["instance.spawn_failed"])
        .vm(V::Error)
        .idle()
        .status("ERROR")
        .on_host(None)
        .claim_is(None)
        .has_fault();
    assert!(w.i().held_claims().is_empty());
}

// ------------------------------------------------------------------ pause / unpause

#[test]
fn pause_then_unpause() {
    let mut w = World::active();
    w.when(C::Pause)
        .events(&["instance.task_started"])
        .vm(V::Active)
        .task_is(Some(T::Pausing))
        .status("ACTIVE");
    assert_eq!(w.i().work(), compute("compute-1", T::Pausing));
    w.complete()
        .events(&["instance.action_completed"])
        .vm(V::Paused)
        .idle()
        .power(P::Paused)
        .status("PAUSED");
    w.when(C::Unpause)
        .task_is(Some(T::Unpausing))
        .status("PAUSED");
    w.complete()
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .status("ACTIVE")
        .replays();
}

#[test]
fn pause_refusals() {
    World::stopped()
        .when(C::Pause)
        .refused_vm("pause", "stopped");
    World::paused().when(C::Pause).refused_vm("pause", "paused");
    let mut w = World::active();
    w.when(C::Pause).ok();
    w.when(C::Pause).refused_task("pause", "pausing");
    World::active()
        .when(C::Unpause)
        .refused_vm("unpause", "active");
    let mut w = World::paused();
    w.when(C::Unpause).ok();
    w.when(C::Unpause).refused_task("unpause", "unpausing");
}

// ------------------------------------------------------------------ suspend / resume

#[test]
fn suspend_then_resume() {
    let mut w = World::active();
    w.when(C::Suspend)
        .task_is(Some(T::Suspending))
        .status("ACTIVE");
    w.complete()
        .vm(V::Suspended)
        .idle()
        .power(P::Suspended)
        .status("SUSPENDED");
    w.when(C::Resume)
        .task_is(Some(T::Resuming))
        .status("SUSPENDED");
    assert_eq!(w.i().work(), compute("compute-1", T::Resuming));
    w.complete()
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .status("ACTIVE");
}

#[test]
fn suspend_resume_refusals() {
    World::paused()
        .when(C::Suspend)
        .refused_vm("suspend", "paused");
    World::active()
        .when(C::Resume)
        .refused_vm("resume", "active");
    World::stopped()
        .when(C::Resume)
        .refused_vm("resume", "stopped");
    let mut w = World::active();
    w.when(C::Suspend).ok();
    w.when(C::Suspend).refused_task("suspend", "suspending");
}

// ------------------------------------------------------------------ stop / start

#[test]
fn stop_then_start() {
    let mut w = World::active();
    w.when(C::Stop)
        .task_is(Some(T::PoweringOff))
        .status("ACTIVE");
    assert_eq!(w.i().work(), compute("compute-1", T::PoweringOff));
    w.complete()
        .vm(V::Stopped)
        .idle()
        .power(P::Shutdown)
        .status("SHUTOFF");
    w.when(C::Start)
        .task_is(Some(T::PoweringOn))
        .status("SHUTOFF");
    w.complete()
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .status("ACTIVE")
        .replays();
}

#[test]
fn stop_from_error_is_allowed() {
    let mut w = World::error();
    w.status("ERROR");
    w.when(C::Stop)
        .task_is(Some(T::PoweringOff))
        .status("ERROR");
    w.complete()
        .vm(V::Stopped)
        .power(P::Shutdown)
        .status("SHUTOFF");
}

#[test]
fn stop_start_refusals() {
    World::stopped().when(C::Stop).refused_vm("stop", "stopped");
    World::paused().when(C::Stop).refused_vm("stop", "paused");
    World::active().when(C::Start).refused_vm("start", "active");
    World::error().when(C::Start).refused_vm("start", "error");
    let mut w = World::active();
    w.when(C::Stop).ok();
    w.when(C::Stop).refused_task("stop", "powering-off");
}

#[test]
fn stop_of_a_never_launched_error_instance_is_refused_on_launched_at() {
    let mut w = World::spawning(Config::default());
    w.fail("boom").vm(V::Error);
    w.when(C::Stop).refused(&format!(
        "Cannot 'stop' instance {} while it is in launched_at None",
        instance_id()
    ));
}

#[test]
fn stop_and_start_need_a_host() {
    // Active without a host: shelved_offloaded, then reset to active by an admin.
    let mut w = World::shelved_offloaded();
    w.when_admin(C::ResetState { state: V::Active })
        .ok()
        .vm(V::Active)
        .on_host(None);
    w.when(C::Stop).refused_not_ready();
    // Stopped without a host cannot be reached by commands: make it by hand.
    let mut w = World::stopped();
    w.state.as_mut().unwrap().host = None;
    w.when(C::Start).refused_not_ready();
    assert!(matches!(w.err(), DomainError::NotReady { .. }));
}

// ------------------------------------------------------------------ reboot

#[test]
fn soft_reboot_only_active_and_idle() {
    let mut w = World::active();
    w.when(C::Reboot { hard: false })
        .task_is(Some(T::Rebooting))
        .status("REBOOT");
    w.when(C::Reboot { hard: false })
        .refused_task("reboot", "rebooting");
    w.complete()
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .status("ACTIVE");

    World::stopped()
        .when(C::Reboot { hard: false })
        .refused_vm("reboot", "stopped");
    World::paused()
        .when(C::Reboot { hard: false })
        .refused_vm("reboot", "paused");
    World::error()
        .when(C::Reboot { hard: false })
        .refused_vm("reboot", "error");
    let mut w = World::active();
    w.when(C::Pause).ok();
    w.when(C::Reboot { hard: false })
        .refused_task("reboot", "pausing");
}

#[test]
fn hard_reboot_from_every_allowed_vm_state_ends_active() {
    for (name, mut w) in [
        ("active", World::active()),
        ("stopped", World::stopped()),
        ("paused", World::paused()),
        ("suspended", World::suspended()),
        ("error", World::error()),
    ] {
        let before = w.i().status();
        w.when(C::Reboot { hard: true })
            .ok()
            .task_is(Some(T::RebootingHard));
        let expected = if name == "active" {
            "HARD_REBOOT"
        } else {
            before
        };
        w.status(expected);
        assert_eq!(
            w.i().work(),
            compute("compute-1", T::RebootingHard),
            "{name}"
        );
        w.complete()
            .events(&["instance.action_completed"])
            .vm(V::Active)
            .idle()
            .power(P::Running)
            .status("ACTIVE");
    }
}

#[test]
fn hard_reboot_is_allowed_during_the_reboot_tolerant_tasks() {
    let cases: Vec<(World, C, T)> = vec![
        (World::active(), C::Pause, T::Pausing),
        (World::active(), C::Suspend, T::Suspending),
        (World::paused(), C::Unpause, T::Unpausing),
        (World::suspended(), C::Resume, T::Resuming),
        (World::active(), C::Reboot { hard: false }, T::Rebooting),
        (World::active(), C::Reboot { hard: true }, T::RebootingHard),
    ];
    for (mut w, start, task) in cases {
        w.when(start).ok().task_is(Some(task));
        w.when(C::Reboot { hard: true })
            .events(&["instance.task_started"])
            .task_is(Some(T::RebootingHard));
        w.complete().vm(V::Active).idle();
    }
}

#[test]
fn hard_reboot_refusals() {
    World::shelved()
        .when(C::Reboot { hard: true })
        .refused_vm("reboot", "shelved");
    World::resized()
        .when(C::Reboot { hard: true })
        .refused_vm("reboot", "resized");
    let mut w = World::active();
    w.when(C::Stop).ok();
    w.when(C::Reboot { hard: true })
        .refused_task("reboot", "powering-off");
    let mut w = World::active();
    w.when(C::Resize { flavor: medium() }).ok();
    w.when(C::Reboot { hard: true })
        .refused_task("reboot", "resize_prep");
}

// ------------------------------------------------------------------ shelve

#[test]
fn shelve_with_offload_time_zero_offloads_at_once() {
    let mut w = World::active();
    w.when(C::Shelve)
        .events(&["instance.task_started"])
        .task_is(Some(T::Shelving))
        .status("ACTIVE");
    assert_eq!(w.i().work(), compute("compute-1", T::Shelving));
    w.through_shelve_image();
    assert_eq!(
        w.i().work(),
        compute("compute-1", T::ShelvingImageUploading)
    );
    w.complete()
        .events(&["instance.shelved"])
        .vm(V::Shelved)
        .task_is(Some(T::ShelvingOffloading))
        .power(P::Shutdown)
        .status("SHELVED")
        .on_host(Some("compute-1"));
    assert_eq!(w.i().work(), compute("compute-1", T::ShelvingOffloading));
    w.complete()
        .events(&["instance.offloaded"])
        .vm(V::ShelvedOffloaded)
        .idle()
        .power(P::Shutdown)
        .status("SHELVED_OFFLOADED")
        .on_host(None)
        .claim_is(None)
        .replays();
    assert!(w.i().held_claims().is_empty());
}

#[test]
fn shelve_from_stopped_paused_suspended() {
    for mut w in [World::stopped(), World::paused(), World::suspended()] {
        w.when(C::Shelve).ok().task_is(Some(T::Shelving));
        w.through_shelve_image();
        w.complete().vm(V::Shelved).power(P::Shutdown);
        w.complete().vm(V::ShelvedOffloaded).idle().on_host(None);
    }
}

#[test]
fn shelve_refusals() {
    World::error().when(C::Shelve).refused_vm("shelve", "error");
    World::shelved()
        .when(C::Shelve)
        .refused_vm("shelve", "shelved");
    World::shelved_offloaded()
        .when(C::Shelve)
        .refused_vm("shelve", "shelved_offloaded");
    World::resized()
        .when(C::Shelve)
        .refused_vm("shelve", "resized");
    let mut w = World::active();
    w.when(C::Pause).ok();
    w.when(C::Shelve).refused_task("shelve", "pausing");
}

#[test]
fn shelve_with_offload_delay_stays_shelved_until_tick() {
    let mut w = World::active_with(Config {
        shelved_offload_time: 100,
        ..Config::default()
    });
    w.when(C::Shelve).ok();
    w.through_shelve_image();
    w.complete()
        .events(&["instance.shelved"])
        .vm(V::Shelved)
        .idle()
        .status("SHELVED")
        .on_host(Some("compute-1"))
        .claim_is(Some(claim(1)));
    w.advance(50).tick().no_events().idle();
    w.advance(50)
        .tick()
        .events(&["instance.task_started"])
        .task_is(Some(T::ShelvingOffloading))
        .status("SHELVED");
    assert_eq!(w.i().op.unwrap().action.api_name(), "shelveOffload");
    w.tick().no_events();
    w.complete()
        .events(&["instance.offloaded"])
        .vm(V::ShelvedOffloaded)
        .on_host(None)
        .claim_is(None)
        .replays();
}

#[test]
fn shelve_with_negative_offload_time_never_offloads() {
    let mut w = World::shelved();
    w.vm(V::Shelved).idle();
    w.advance(10_000_000).tick().no_events().vm(V::Shelved);
}

#[test]
fn shelve_offload_from_shelved() {
    let mut w = World::shelved();
    w.when(C::ShelveOffload)
        .events(&["instance.task_started"])
        .task_is(Some(T::ShelvingOffloading))
        .status("SHELVED");
    w.when(C::ShelveOffload)
        .refused_task("shelveOffload", "shelving_offloading");
    w.complete()
        .vm(V::ShelvedOffloaded)
        .idle()
        .on_host(None)
        .claim_is(None)
        .status("SHELVED_OFFLOADED");
    w.when(C::ShelveOffload)
        .refused_vm("shelveOffload", "shelved_offloaded");
    World::active()
        .when(C::ShelveOffload)
        .refused_vm("shelveOffload", "active");
}

// ------------------------------------------------------------------ unshelve

#[test]
fn unshelve_from_shelved_runs_on_the_same_host() {
    let mut w = World::shelved();
    w.when(C::Unshelve {
        availability_zone: None,
    })
    .task_is(Some(T::Unshelving))
    .status("SHELVED");
    assert_eq!(w.i().work(), compute("compute-1", T::Unshelving));
    w.complete()
        .events(&["instance.unshelved"])
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .status("ACTIVE")
        .on_host(Some("compute-1"))
        .claim_is(Some(claim(1)));
    assert_eq!(w.i().shelved_at, None);
}

#[test]
fn unshelve_from_offloaded_schedules_then_spawns() {
    let mut w = World::shelved_offloaded();
    w.when(C::Unshelve {
        availability_zone: Some("az-2".into()),
    })
    .events(&["instance.unshelve_started"])
    .task_is(Some(T::Unshelving))
    .status("SHELVED_OFFLOADED");
    assert_eq!(w.i().work(), Some(Work::ScheduleDestination));
    w.scheduled("compute-3", claim(3))
        .events(&["instance.destination_scheduled"])
        .vm(V::ShelvedOffloaded)
        .task_is(Some(T::Spawning))
        .on_host(Some("compute-3"))
        .claim_is(Some(claim(3)));
    assert_eq!(w.i().work(), compute("compute-3", T::Spawning));
    assert_eq!(w.i().migration, None);
    w.complete()
        .events(&["instance.unshelved"])
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .status("ACTIVE")
        .on_host(Some("compute-3"))
        .replays();
}

#[test]
fn unshelve_from_offloaded_with_no_valid_host_stays_offloaded() {
    let mut w = World::shelved_offloaded();
    w.when(C::Unshelve {
        availability_zone: None,
    })
    .ok();
    let op = w.op();
    w.when_as(
        Who::Service,
        C::ScheduleFailed {
            op,
            reason: "no room".into(),
        },
    )
    .events(&["instance.task_failed"])
    .vm(V::ShelvedOffloaded)
    .idle()
    .on_host(None)
    .has_fault();
    assert_eq!(
        w.i().fault.as_ref().unwrap().message,
        "No valid host was found. no room"
    );
}

#[test]
fn unshelve_spawn_failure_goes_back_to_offloaded_and_frees_the_host() {
    let mut w = World::shelved_offloaded();
    w.when(C::Unshelve {
        availability_zone: None,
    })
    .ok();
    w.scheduled("compute-3", claim(3)).ok();
    w.fail("spawn failed")
        .vm(V::ShelvedOffloaded)
        .idle()
        .on_host(None)
        .claim_is(None)
        .has_fault();
}

#[test]
fn unshelve_refusals() {
    World::active()
        .when(C::Unshelve {
            availability_zone: None,
        })
        .refused_vm("unshelve", "active");
    World::shelved()
        .when(C::Unshelve {
            availability_zone: Some("az-1".into()),
        })
        .refused(&format!(
            "Specifying an availability zone or a host when unshelving server \"{}\" with status \"SHELVED\" is not supported. The server status must be SHELVED_OFFLOADED.",
            instance_id()
        ));
    World::shelved()
        .when(C::UnshelveTo {
            availability_zone: None,
            host: Some(host("compute-2")),
        })
        .refused(&format!(
            "Specifying an availability zone or a host when unshelving server \"{}\" with status \"SHELVED\" is not supported. The server status must be SHELVED_OFFLOADED.",
            instance_id()
        ));
}

#[test]
fn unshelve_to_a_host_or_zone_records_them_for_the_scheduler() {
    let mut w = World::shelved_offloaded();
    w.when(C::UnshelveTo {
        availability_zone: Some(Some("az-2".into())),
        host: Some(host("compute-3")),
    })
    .events(&["instance.unshelve_started"])
    .task_is(Some(T::Unshelving))
    .status("SHELVED_OFFLOADED");
    assert_eq!(w.i().spec.availability_zone.as_deref(), Some("az-2"));
    assert_eq!(w.i().spec.requested_host, Some(host("compute-3")));
    assert_eq!(w.i().op.unwrap().action, A::Unshelve);
    assert_eq!(w.i().work(), Some(Work::ScheduleDestination));
    w.scheduled("compute-3", claim(3)).ok();
    w.complete()
        .vm(V::Active)
        .on_host(Some("compute-3"))
        .replays();
    // Unpinning (2.91 `availability_zone: null`); offloading forgets the host.
    w.when(C::Shelve).ok();
    // The shelve image's steps, the shelve, then the offload.
    for _ in 0..8 {
        if w.i().vm_state == V::ShelvedOffloaded && w.i().task_state.is_none() {
            break;
        }
        w.complete();
    }
    assert_eq!(w.i().vm_state, V::ShelvedOffloaded);
    assert_eq!(w.i().spec.requested_host, None);
    w.when(C::UnshelveTo {
        availability_zone: Some(None),
        host: None,
    })
    .ok();
    assert_eq!(w.i().spec.availability_zone, None);
}

// ------------------------------------------------------------------ resize

#[test]
fn resize_to_the_same_flavor_is_a_bad_request() {
    World::active()
        .when(C::Resize { flavor: small() })
        .refused("When resizing, instances must change flavor!");
}

#[test]
fn resize_to_a_smaller_disk_is_a_bad_request() {
    World::active()
        .when(C::Resize { flavor: tiny() })
        .refused("Resizing to a smaller disk flavor is not allowed.");
}

#[test]
fn resize_confirm_full_cycle() {
    let mut w = World::active();
    w.when(C::Resize { flavor: medium() })
        .events(&["instance.migration_started"])
        .vm(V::Active)
        .task_is(Some(T::ResizePrep))
        .status("RESIZE");
    assert_eq!(w.i().work(), Some(Work::ScheduleDestination));
    let m = w.i().migration.clone().expect("migration");
    assert_eq!(m.kind, MigrationKind::Resize);
    assert_eq!(m.source_host, host("compute-1"));
    assert_eq!(m.source_claim, Some(claim(1)));
    assert_eq!(m.dest_host, None);
    assert_eq!(m.old_flavor, small());
    assert_eq!(m.new_flavor, medium());
    assert_eq!(m.old_vm_state, V::Active);

    w.scheduled("compute-2", claim(2))
        .events(&["instance.destination_scheduled"])
        .task_is(Some(T::ResizeMigrating))
        .status("RESIZE")
        .on_host(Some("compute-1"));
    let m = w.i().migration.clone().unwrap();
    assert_eq!(m.dest_host, Some(host("compute-2")));
    assert_eq!(m.dest_claim, Some(claim(2)));
    assert_eq!(w.i().work(), compute("compute-2", T::ResizeMigrating));

    w.complete()
        .events(&["instance.resize_finished"])
        .vm(V::Resized)
        .idle()
        .status("VERIFY_RESIZE")
        .power(P::Running)
        .on_host(Some("compute-2"))
        .claim_is(Some(claim(2)));
    assert_eq!(w.i().flavor, medium());
    let m = w
        .i()
        .migration
        .clone()
        .expect("migration kept until confirm");
    assert_eq!(m.source_claim, Some(claim(1)));

    w.when(C::ConfirmResize)
        .events(&["instance.resize_confirmed"])
        .vm(V::Active)
        .idle()
        .status("ACTIVE")
        .on_host(Some("compute-2"))
        .claim_is(Some(claim(2)))
        .no_migration()
        .replays();
    assert_eq!(w.i().flavor, medium());
    assert_eq!(w.i().held_claims(), vec![(host("compute-2"), claim(2))]);
}

#[test]
fn resize_of_a_stopped_instance_confirms_to_shutoff() {
    let mut w = World::stopped().resized_from();
    w.vm(V::Resized).status("VERIFY_RESIZE").power(P::Shutdown);
    w.when(C::ConfirmResize)
        .vm(V::Stopped)
        .status("SHUTOFF")
        .power(P::Shutdown)
        .no_migration();
}

#[test]
fn resize_of_a_stopped_instance_shows_resize_status() {
    let mut w = World::stopped();
    w.when(C::Resize { flavor: medium() })
        .ok()
        .vm(V::Stopped)
        .status("RESIZE");
    w.scheduled("compute-2", claim(2)).status("RESIZE");
}

#[test]
fn revert_resize_goes_back_to_the_source_with_the_old_flavor() {
    let mut w = World::resized();
    w.when(C::RevertResize)
        .events(&["instance.task_started"])
        .vm(V::Resized)
        .task_is(Some(T::ResizeReverting))
        .status("REVERT_RESIZE");
    assert_eq!(w.i().work(), compute("compute-2", T::ResizeReverting));
    w.when(C::ConfirmResize)
        .refused_task("confirmResize", "resize_reverting");
    w.complete()
        .events(&["instance.resize_reverted"])
        .vm(V::Active)
        .idle()
        .status("ACTIVE")
        .power(P::Running)
        .on_host(Some("compute-1"))
        .claim_is(Some(claim(1)))
        .no_migration()
        .replays();
    assert_eq!(w.i().flavor, small());
}

#[test]
fn revert_resize_of_a_stopped_instance_goes_back_to_shutoff() {
    let mut w = World::stopped().resized_from();
    w.when(C::RevertResize).ok();
    w.complete()
        .vm(V::Stopped)
        .status("SHUTOFF")
        .power(P::Shutdown)
        .on_host(Some("compute-1"));
}

#[test]
fn resize_refusals() {
    World::paused()
        .when(C::Resize { flavor: medium() })
        .refused_vm("resize", "paused");
    World::resized()
        .when(C::Resize {
            flavor: flavor("4", 4, 8192, 80),
        })
        .refused_vm("resize", "resized");
    World::active()
        .when(C::ConfirmResize)
        .refused_vm("confirmResize", "active");
    World::active()
        .when(C::RevertResize)
        .refused_vm("revertResize", "active");
    let mut w = World::active();
    w.when(C::Resize { flavor: medium() }).ok();
    w.when(C::Resize { flavor: medium() })
        .refused_task("resize", "resize_prep");
}

#[test]
fn resize_with_no_valid_host_goes_back_with_a_fault() {
    let mut w = World::active();
    w.when(C::Resize { flavor: medium() }).ok();
    let op = w.op();
    w.when_as(
        Who::Service,
        C::ScheduleFailed {
            op,
            reason: "too big".into(),
        },
    )
    .events(&["instance.task_failed"])
    .vm(V::Active)
    .idle()
    .status("ACTIVE")
    .on_host(Some("compute-1"))
    .no_migration()
    .has_fault();
    assert_eq!(w.i().flavor, small());
}

#[test]
fn resize_migrating_failure_is_error_on_the_source() {
    let mut w = World::active();
    w.when(C::Resize { flavor: medium() }).ok();
    w.scheduled("compute-2", claim(2)).ok();
    w.fail("disk copy failed")
        .vm(V::Error)
        .idle()
        .status("ERROR")
        .on_host(Some("compute-1"))
        .claim_is(Some(claim(1)))
        .no_migration()
        .has_fault();
}

// ------------------------------------------------------------------ cold migrate

#[test]
fn cold_migrate_is_a_resize_to_the_same_flavor() {
    let mut w = World::active();
    w.when_admin(C::Migrate { host: None })
        .events(&["instance.migration_started"])
        .task_is(Some(T::ResizePrep))
        .status("RESIZE");
    let m = w.i().migration.clone().unwrap();
    assert_eq!(m.kind, MigrationKind::Migration);
    assert_eq!(m.new_flavor, small());
    w.scheduled("compute-2", claim(2))
        .task_is(Some(T::ResizeMigrating));
    w.complete()
        .vm(V::Resized)
        .status("VERIFY_RESIZE")
        .on_host(Some("compute-2"));
    assert_eq!(w.i().flavor, small());
    w.when(C::ConfirmResize).vm(V::Active).no_migration();
}

#[test]
fn cold_migrate_records_the_requested_host() {
    let mut w = World::stopped();
    w.when_admin(C::Migrate {
        host: Some(host("compute-9")),
    })
    .ok();
    assert_eq!(
        w.i().migration.as_ref().unwrap().requested_host,
        Some(host("compute-9"))
    );
}

#[test]
fn cold_migrate_to_the_current_host_is_a_bad_request() {
    World::active()
        .when_admin(C::Migrate {
            host: Some(host("compute-1")),
        })
        .refused(&format!(
            "The target host can't be the same one. Instance {} is already on compute-1",
            instance_id()
        ));
    World::paused()
        .when_admin(C::Migrate { host: None })
        .refused_vm("migrate", "paused");
}

// ------------------------------------------------------------------ evacuate

fn evacuate(host_name: Option<&str>, stop: bool) -> C {
    C::Evacuate {
        host: host_name.map(host),
        stop,
        source_up: false,
    }
}

/// Scheduled, then the destination's agent walks the rebuild steps.
fn evacuated_to(w: &mut World, dest: &str) {
    assert_eq!(w.i().work(), Some(Work::ScheduleDestination));
    w.scheduled(dest, claim(2))
        .events(&["instance.destination_scheduled"])
        .task_is(Some(T::Rebuilding))
        .on_host(Some("compute-1"));
    assert_eq!(w.i().work(), compute(dest, T::Rebuilding));
    w.complete().task_is(Some(T::RebuildBlockDeviceMapping));
    w.complete().task_is(Some(T::RebuildSpawning));
    assert_eq!(w.i().work(), compute(dest, T::RebuildSpawning));
    w.complete().events(&["instance.evacuated"]);
}

#[test]
fn evacuate_rebuilds_on_a_scheduled_host_and_lands_active() {
    let mut w = World::active();
    w.when_admin(evacuate(None, false))
        .events(&["instance.evacuation_started"])
        .vm(V::Active)
        .task_is(Some(T::Rebuilding))
        .status("REBUILD");
    let m = w.i().migration.clone().unwrap();
    assert_eq!(m.kind, MigrationKind::Evacuation { stop: false });
    assert_eq!(m.source_host, host("compute-1"));
    assert_eq!(w.i().op.unwrap().action, A::Evacuate);
    evacuated_to(&mut w, "compute-2");
    w.vm(V::Active)
        .power(P::Running)
        .idle()
        .status("ACTIVE")
        .on_host(Some("compute-2"))
        .claim_is(Some(claim(2)))
        .no_migration()
        .replays();
    // The source claim is no longer held: the placement reactor releases it.
    assert_eq!(w.i().held_claims(), vec![(host("compute-2"), claim(2))]);
}

#[test]
fn evacuate_keeps_a_stopped_server_stopped_and_error_lands_active() {
    let mut w = World::stopped();
    w.when_admin(evacuate(Some("compute-3"), false)).ok();
    assert_eq!(
        w.i().migration.as_ref().unwrap().requested_host,
        Some(host("compute-3"))
    );
    evacuated_to(&mut w, "compute-3");
    w.vm(V::Stopped).power(P::Shutdown).status("SHUTOFF");

    let mut w = World::error();
    w.when_admin(evacuate(None, false)).ok();
    evacuated_to(&mut w, "compute-2");
    w.vm(V::Active).status("ACTIVE");
}

#[test]
fn evacuate_at_2_95_lands_stopped() {
    let mut w = World::active();
    w.when_admin(evacuate(None, true)).ok();
    evacuated_to(&mut w, "compute-2");
    w.vm(V::Stopped)
        .power(P::Shutdown)
        .status("SHUTOFF")
        .on_host(Some("compute-2"));
}

#[test]
fn evacuate_refusals_in_novas_order() {
    // The state check first (409), whatever the source host.
    World::paused()
        .when_admin(C::Evacuate {
            host: None,
            stop: false,
            source_up: true,
        })
        .refused_vm("evacuate", "paused");
    // Then the source's compute service must be down.
    World::active()
        .when_admin(C::Evacuate {
            host: None,
            stop: false,
            source_up: true,
        })
        .refused("Compute service of compute-1 is still in use.");
    // A lock does not stop an evacuation (no @check_instance_lock).
    let mut w = World::active();
    w.when_admin(C::Lock { reason: None }).ok();
    w.when_admin(evacuate(None, false))
        .events(&["instance.evacuation_started"]);
    // A busy server: the task check of Nova's save.
    let mut w = World::active();
    w.when(C::Pause).ok();
    w.when_admin(evacuate(None, false));
    assert!(matches!(w.err(), DomainError::Conflict(_)));
}

#[test]
fn evacuate_without_a_valid_host_or_failing_on_it_is_error_on_the_source() {
    let mut w = World::active();
    w.when_admin(evacuate(None, false)).ok();
    let op = w.op();
    w.when_as(
        Who::Service,
        C::ScheduleFailed {
            op,
            reason: "There are not enough hosts available.".into(),
        },
    )
    .vm(V::Error)
    .idle()
    .on_host(Some("compute-1"))
    .no_migration()
    .has_fault();

    let mut w = World::active();
    w.when_admin(evacuate(None, false)).ok();
    w.scheduled("compute-2", claim(2)).ok();
    w.fail("disk lost")
        .vm(V::Error)
        .idle()
        .on_host(Some("compute-1"))
        .no_migration();
}

// ------------------------------------------------------------------ live migrate

#[test]
fn live_migrate_an_active_instance() {
    let mut w = World::active();
    w.when_admin(C::LiveMigrate { host: None })
        .events(&["instance.migration_started"])
        .vm(V::Active)
        .task_is(Some(T::Migrating))
        .status("MIGRATING");
    assert_eq!(w.i().work(), Some(Work::ScheduleDestination));
    assert_eq!(
        w.i().migration.as_ref().unwrap().kind,
        MigrationKind::LiveMigration
    );
    w.scheduled("compute-2", claim(2))
        .events(&["instance.destination_scheduled"])
        .task_is(Some(T::Migrating))
        .status("MIGRATING")
        .on_host(Some("compute-1"));
    assert_eq!(w.i().work(), compute("compute-1", T::Migrating));
    w.complete()
        .events(&["instance.live_migrated"])
        .vm(V::Active)
        .idle()
        .status("ACTIVE")
        .on_host(Some("compute-2"))
        .claim_is(Some(claim(2)))
        .no_migration()
        .replays();
}

#[test]
fn live_migrate_a_paused_instance() {
    let mut w = World::paused();
    w.when_admin(C::LiveMigrate { host: None })
        .vm(V::Paused)
        .status("MIGRATING");
    w.scheduled("compute-2", claim(2));
    w.complete()
        .vm(V::Paused)
        .status("PAUSED")
        .power(P::Paused)
        .on_host(Some("compute-2"));
}

#[test]
fn live_migrate_refusals() {
    World::stopped()
        .when_admin(C::LiveMigrate { host: None })
        .refused_vm("os-migrateLive", "stopped");
    World::suspended()
        .when_admin(C::LiveMigrate { host: None })
        .refused_vm("os-migrateLive", "suspended");
    World::active()
        .when_admin(C::LiveMigrate {
            host: Some(host("compute-1")),
        })
        .refused(&format!(
            "The source and destination hosts are the same for instance {}",
            instance_id()
        ));
    let mut w = World::active();
    w.when_admin(C::LiveMigrate { host: None }).ok();
    w.when_admin(C::LiveMigrate { host: None })
        .refused_task("os-migrateLive", "migrating");
}

#[test]
fn live_migration_failure_stays_on_the_source() {
    let mut w = World::active();
    w.when_admin(C::LiveMigrate { host: None }).ok();
    w.scheduled("compute-2", claim(2)).ok();
    w.fail("migration aborted")
        .vm(V::Active)
        .idle()
        .on_host(Some("compute-1"))
        .claim_is(Some(claim(1)))
        .no_migration()
        .has_fault();
}

// ------------------------------------------------------------------ lock / unlock

#[test]
fn locked_instance_refuses_non_admin_actions_but_not_admins() {
    let mut w = World::active();
    w.when(C::Lock {
        reason: Some("maintenance".into()),
    })
    .events(&["instance.locked"]);
    let l = w.i().locked.clone().unwrap();
    assert!(!l.by_admin);
    assert_eq!(l.reason.as_deref(), Some("maintenance"));
    for cmd in [
        C::Pause,
        C::Suspend,
        C::Stop,
        C::Reboot { hard: false },
        C::Reboot { hard: true },
        C::Shelve,
        C::Resize { flavor: medium() },
        C::Migrate { host: None },
        C::LiveMigrate { host: None },
        C::Delete,
    ] {
        w.when(cmd.clone()).refused_locked();
        assert_eq!(w.i().vm_state, V::Active);
        // An admin passes the lock check.
        let mut admin = World::active();
        admin.when(C::Lock { reason: None }).ok();
        admin.when_admin(cmd).ok();
    }
}

#[test]
fn the_lock_check_comes_before_the_state_check() {
    let mut w = World::paused();
    w.when(C::Lock { reason: None }).ok();
    w.when(C::Pause).refused_locked();
    w.when(C::ConfirmResize).refused_locked();
    w.when_admin(C::Pause).refused_vm("pause", "paused");
}

#[test]
fn owner_lock_can_be_unlocked_by_the_owner() {
    let mut w = World::active();
    w.when(C::Lock { reason: None }).ok();
    w.when(C::Lock { reason: None }).no_events();
    w.when(C::Unlock).events(&["instance.unlocked"]);
    assert_eq!(w.i().locked, None);
    w.when(C::Unlock).no_events();
    w.when(C::Pause).ok();
}

#[test]
fn admin_lock_cannot_be_unlocked_by_the_owner() {
    let mut w = World::active();
    w.when_admin(C::Lock { reason: None })
        .events(&["instance.locked"]);
    assert!(w.i().locked.as_ref().unwrap().by_admin);
    w.when(C::Unlock).refused(&format!(
        "Instance {} was locked by an administrator and cannot be unlocked by its owner",
        instance_id()
    ));
    assert!(matches!(w.err(), DomainError::Forbidden(_)));
    w.when_admin(C::Unlock).events(&["instance.unlocked"]);
}

#[test]
fn lock_by_an_admin_of_the_owning_project_counts_as_owner() {
    let mut w = World::active();
    w.when_as(Who::OwnerAdmin, C::Lock { reason: None }).ok();
    assert!(!w.i().locked.as_ref().unwrap().by_admin);
    w.when(C::Unlock).events(&["instance.unlocked"]);
}

#[test]
fn lock_reason_too_long_is_a_bad_request() {
    World::active()
        .when(C::Lock {
            reason: Some("x".repeat(256)),
        })
        .refused("locked_reason is too long");
}

// ------------------------------------------------------------------ delete

#[test]
fn delete_an_instance_on_a_host_goes_through_deleting() {
    let mut w = World::active();
    w.when(C::Delete)
        .events(&["instance.task_started"])
        .vm(V::Active)
        .task_is(Some(T::Deleting))
        .status("ACTIVE");
    assert_eq!(w.i().work(), compute("compute-1", T::Deleting));
    w.when(C::Delete).no_events();
    w.complete()
        .events(&["instance.deleted"])
        .vm(V::Deleted)
        .idle()
        .status("DELETED")
        .replays();
    assert!(w.i().deleted);
    assert!(w.i().terminated_at.is_some());
    assert_eq!(w.i().work(), None);
    assert!(w.i().held_claims().is_empty());
}

#[test]
fn delete_without_a_host_is_immediate() {
    // building, before scheduling
    let mut w = World::created(Config::default());
    w.when(C::Delete)
        .events(&["instance.deleted"])
        .status("DELETED")
        .idle();
    // error after a failed spawn (host cleared)
    let mut w = World::spawning(Config::default());
    w.fail("boom");
    w.when(C::Delete)
        .events(&["instance.deleted"])
        .status("DELETED");
    // shelved_offloaded
    let mut w = World::shelved_offloaded();
    w.when(C::Delete)
        .events(&["instance.deleted"])
        .status("DELETED");
}

#[test]
fn delete_is_allowed_in_any_state_and_any_task() {
    let mut w = World::spawning(Config::default());
    w.when(C::Delete)
        .ok()
        .vm(V::Building)
        .task_is(Some(T::Deleting));
    w.complete().status("DELETED");

    let mut w = World::active();
    w.when(C::Pause).ok();
    w.when(C::Delete).ok().task_is(Some(T::Deleting));
    w.complete().status("DELETED");

    let mut w = World::resized();
    w.when(C::Delete).ok().task_is(Some(T::Deleting));
    w.complete().status("DELETED").no_migration();

    for mut w in [
        World::error(),
        World::stopped(),
        World::paused(),
        World::suspended(),
        World::shelved(),
    ] {
        w.when(C::Delete).ok().task_is(Some(T::Deleting));
        w.complete().status("DELETED");
    }
}

#[test]
fn deleted_instance_is_not_found_for_users_and_ignored_by_reactors() {
    let mut w = World::active();
    w.when(C::Delete).ok();
    let (op, task) = (w.op(), w.task());
    w.complete().ok();
    let not_found = format!("Instance {} could not be found.", instance_id());
    for cmd in [
        C::Start,
        C::Stop,
        C::Pause,
        C::Unpause,
        C::Suspend,
        C::Resume,
        C::Reboot { hard: true },
        C::Shelve,
        C::ShelveOffload,
        C::Unshelve {
            availability_zone: None,
        },
        C::Resize { flavor: medium() },
        C::Migrate { host: None },
        C::ConfirmResize,
        C::RevertResize,
        C::LiveMigrate { host: None },
        C::Lock { reason: None },
        C::Unlock,
        C::Delete,
        C::ResetState { state: V::Active },
        C::Update {
            name: Some("x".into()),
            description: None,
        },
    ] {
        w.when_admin(cmd.clone()).refused(&not_found);
        w.when(cmd).refused(&not_found);
    }
    w.when(C::Create(
        Box::new(spec()),
        Default::default(),
        Default::default(),
        Default::default(),
    ))
    .refused(&format!(
        "Instance with id {} already exists.",
        instance_id()
    ));
    for cmd in [
        C::Complete { op, task },
        C::Fail {
            op,
            task,
            message: "late".into(),
        },
        C::Scheduled {
            op,
            host: host("compute-2"),
            claim: claim(2),
        },
        C::ScheduleFailed {
            op,
            reason: "late".into(),
        },
        C::Map {
            op,
            cell: CellName::cell1(),
            host: None,
            fault: None,
            fault_details: None,
        },
        C::Place,
        C::Tick,
    ] {
        w.when_as(Who::Service, cmd).no_events();
    }
    w.status("DELETED");
}

#[test]
fn delete_failure_puts_the_instance_in_error() {
    let mut w = World::active();
    w.when(C::Delete).ok();
    w.fail("cannot destroy domain")
        .vm(V::Error)
        .idle()
        .status("ERROR")
        .has_fault();
    assert!(!w.i().deleted);
}

// ------------------------------------------------------------------ os-resetState

#[test]
fn reset_state_is_admin_only() {
    World::error()
        .when(C::ResetState { state: V::Active })
        .refused(
            "Policy doesn't allow os_compute_api:os-admin-actions:reset_state to be performed.",
        );
}

#[test]
fn reset_state_accepts_only_active_and_error() {
    for v in V::ALL {
        let mut w = World::active();
        w.when_admin(C::ResetState { state: v });
        if matches!(v, V::Active | V::Error) {
            w.events(&["instance.state_reset"]).vm(v).idle();
        } else {
            w.refused("Invalid input for field/attribute state.");
        }
    }
}

#[test]
fn reset_state_clears_the_task_and_the_migration() {
    let mut w = World::active();
    w.when(C::Pause).ok();
    w.when_admin(C::ResetState { state: V::Error })
        .vm(V::Error)
        .idle()
        .status("ERROR");
    w.when_admin(C::ResetState { state: V::Active })
        .vm(V::Active)
        .status("ACTIVE");

    let mut w = World::resized();
    w.when_admin(C::ResetState { state: V::Active })
        .vm(V::Active)
        .idle()
        .no_migration()
        .on_host(Some("compute-2"));
}

// ------------------------------------------------------------------ update

#[test]
fn update_name_and_description() {
    let mut w = World::active();
    w.when(C::Update {
        name: Some("renamed".into()),
        description: Some(Some("a server".into())),
    })
    .events(&["instance.updated"]);
    assert_eq!(w.i().spec.name, "renamed");
    assert_eq!(w.i().spec.description.as_deref(), Some("a server"));
    w.when(C::Update {
        name: None,
        description: Some(None),
    })
    .events(&["instance.updated"]);
    assert_eq!(w.i().spec.name, "renamed");
    assert_eq!(w.i().spec.description, None);
    w.when(C::Update {
        name: None,
        description: None,
    })
    .no_events();
}

#[test]
fn update_refusals() {
    World::active()
        .when(C::Update {
            name: Some(" ".into()),
            description: None,
        })
        .refused("Invalid server name");
    World::active()
        .when(C::Update {
            name: None,
            description: Some(Some("x".repeat(256))),
        })
        .refused("Invalid description");
}

// ------------------------------------------------------------------ rebuild

fn full_rebuild() -> Rebuild {
    Rebuild {
        image_ref: "fedora".into(),
        name: Some("vm-2".into()),
        metadata: Some(BTreeMap::from([("role".to_string(), "web".to_string())])),
        key_name: Some(Some("key-2".into())),
        admin_pass_set: true,
        preserve_ephemeral: true,
        access_ip_v4: Some(Some("192.0.2.10".into())),
        access_ip_v6: Some(Some("2001:db8::10".into())),
        user_data: Some(Some("IyEvYmluL3NoCg==".into())),
        trusted_image_certificates: Some(Some(vec!["cert-1".into(), "cert-2".into()])),
        hostname: Some("web-2".into()),
        description: Some(Some("rebuilt".into())),
    }
}

#[test]
fn rebuild_goes_through_its_three_task_states_and_ends_active() {
    let mut w = World::active();
    let launched = w.i().launched_at;
    w.when(C::Rebuild(Box::new(rebuild_to("fedora"))))
        .events(&["instance.rebuild_started"])
        .vm(V::Active)
        .task_is(Some(T::Rebuilding))
        .status("REBUILD");
    assert_eq!(w.i().op.unwrap().action, A::Rebuild);
    assert_eq!(w.i().work(), compute("compute-1", T::Rebuilding));
    w.complete()
        .events(&["instance.task_advanced"])
        .task_is(Some(T::RebuildBlockDeviceMapping))
        .status("REBUILD");
    assert_eq!(
        w.i().work(),
        compute("compute-1", T::RebuildBlockDeviceMapping)
    );
    w.complete()
        .events(&["instance.task_advanced"])
        .task_is(Some(T::RebuildSpawning))
        .status("REBUILD");
    assert_eq!(w.i().work(), compute("compute-1", T::RebuildSpawning));
    w.complete()
        .events(&["instance.rebuilt"])
        .vm(V::Active)
        .power(P::Running)
        .idle()
        .status("ACTIVE")
        .on_host(Some("compute-1"))
        .claim_is(Some(claim(1)))
        .replays();
    assert_ne!(w.i().launched_at, launched, "launched_at is renewed");
    assert_eq!(w.i().spec.image_ref, "fedora");
}

#[test]
fn rebuild_of_a_stopped_instance_stays_stopped() {
    let mut w = World::stopped();
    w.when(C::Rebuild(Box::new(rebuild_to("fedora"))))
        .ok()
        .vm(V::Stopped)
        .status("REBUILD");
    w.complete().complete().status("REBUILD");
    w.complete()
        .events(&["instance.rebuilt"])
        .vm(V::Stopped)
        .power(P::Shutdown)
        .idle()
        .status("SHUTOFF")
        .replays();
}

#[test]
fn rebuild_from_error_ends_active() {
    let mut w = World::error();
    w.when(C::Rebuild(Box::new(rebuild_to("fedora"))))
        .ok()
        .vm(V::Error)
        .status("REBUILD");
    w.complete().complete().complete();
    w.vm(V::Active)
        .power(P::Running)
        .idle()
        .status("ACTIVE")
        .replays();
}

#[test]
fn rebuild_changes_the_image_name_metadata_and_key_at_once_and_records_the_rest() {
    let mut w = World::active();
    w.when(C::Rebuild(Box::new(full_rebuild()))).ok();
    let i = w.i().clone();
    assert_eq!(i.spec.image_ref, "fedora");
    assert_eq!(i.spec.name, "vm-2");
    assert_eq!(
        i.spec.metadata,
        BTreeMap::from([("role".to_string(), "web".to_string())])
    );
    assert_eq!(i.spec.key_name.as_deref(), Some("key-2"));
    assert_eq!(i.spec.description.as_deref(), Some("rebuilt"));
    // What InstanceSpec lacks travels in the event, for the read model's extras.
    let Ok(evs) = w.result().clone() else {
        unreachable!()
    };
    let InstanceEvent::RebuildStarted { rebuild, task, .. } = &evs[0] else {
        panic!("expected rebuild_started, got {evs:?}")
    };
    assert_eq!(**rebuild, full_rebuild());
    assert_eq!(*task, T::Rebuilding);
    let mut extras = ServerExtras::default();
    extras.apply(&evs[0]);
    assert_eq!(
        extras,
        ServerExtras {
            access_ip_v4: Some("192.0.2.10".into()),
            access_ip_v6: Some("2001:db8::10".into()),
            hostname: Some("web-2".into()),
            user_data: Some("IyEvYmluL3NoCg==".into()),
            trusted_image_certificates: Some(vec!["cert-1".into(), "cert-2".into()]),
            tags: Default::default(),
            ..Default::default()
        }
    );
    w.complete().complete().complete().ok();

    // A second rebuild that gives nothing leaves everything; `null`s clear.
    w.when(C::Rebuild(Box::new(rebuild_to("cirros")))).ok();
    assert_eq!(w.i().spec.name, "vm-2");
    assert_eq!(w.i().spec.metadata.len(), 1);
    assert_eq!(w.i().spec.key_name.as_deref(), Some("key-2"));
    extras.apply(&w.log[w.log.len() - 1]);
    assert_eq!(extras.access_ip_v4.as_deref(), Some("192.0.2.10"));
    w.complete().complete().complete().ok();
    w.when(C::Rebuild(Box::new(Rebuild {
        image_ref: "cirros".into(),
        metadata: Some(BTreeMap::new()),
        key_name: Some(None),
        access_ip_v4: Some(None),
        user_data: Some(None),
        trusted_image_certificates: Some(None),
        ..Rebuild::default()
    })))
    .ok();
    assert!(w.i().spec.metadata.is_empty());
    assert_eq!(w.i().spec.key_name, None);
    extras.apply(&w.log[w.log.len() - 1]);
    assert_eq!(extras.access_ip_v4, None);
    assert_eq!(extras.user_data, None);
    assert_eq!(extras.trusted_image_certificates, None);
    assert_eq!(extras.access_ip_v6.as_deref(), Some("2001:db8::10"));
    assert_eq!(extras.hostname.as_deref(), Some("web-2"));
    w.replays();
}

#[test]
fn rebuild_keeps_the_empty_image_ref_of_a_volume_backed_server() {
    let mut w = World::active();
    {
        let i = w.state.as_mut().unwrap();
        i.spec.boot_from_volume = true;
        i.spec.image_ref = String::new();
    }
    w.when(C::Rebuild(Box::new(rebuild_to("fedora")))).ok();
    assert_eq!(w.i().spec.image_ref, "");
}

#[test]
fn rebuild_refusals() {
    let r = || C::Rebuild(Box::new(rebuild_to("fedora")));
    World::paused().when(r()).refused_vm("rebuild", "paused");
    World::suspended()
        .when(r())
        .refused_vm("rebuild", "suspended");
    World::shelved().when(r()).refused_vm("rebuild", "shelved");
    World::resized().when(r()).refused_vm("rebuild", "resized");
    let mut w = World::active();
    w.when(C::Pause).ok();
    w.when(r()).refused_task("rebuild", "pausing");
    let mut w = World::active();
    w.when(r()).ok();
    w.when(r()).refused_task("rebuild", "rebuilding");
    let mut w = World::active();
    w.when(C::Lock { reason: None }).ok();
    w.when(r()).refused_locked();
    // Never launched (the spawn failed): refused on launched_at, as Nova does.
    let mut w = World::spawning(Config::default());
    w.fail("boom").vm(V::Error);
    w.when(r()).refused(&format!(
        "Cannot 'rebuild' instance {} while it is in launched_at None",
        instance_id()
    ));
    // Needs a host.
    let mut w = World::stopped();
    w.state.as_mut().unwrap().host = None;
    w.when(r()).refused_not_ready();
    // A bad new name.
    let mut w = World::active();
    w.when(C::Rebuild(Box::new(Rebuild {
        name: Some("  ".into()),
        ..rebuild_to("fedora")
    })))
    .refused("Invalid server name");
}

#[test]
fn rebuild_failure_at_any_step_puts_the_instance_in_error() {
    for steps in 0..3 {
        let mut w = World::stopped();
        w.when(C::Rebuild(Box::new(rebuild_to("fedora")))).ok();
        for _ in 0..steps {
            w.complete().ok();
        }
        w.fail("boom")
            .events(&["instance.task_failed"])
            .vm(V::Error)
            .idle()
            .has_fault()
            .status("ERROR")
            .replays();
    }
}

#[test]
fn each_rebuild_step_gets_its_own_retries() {
    let mut w = World::active();
    w.when(C::Rebuild(Box::new(rebuild_to("fedora")))).ok();
    w.advance(61).tick().events(&["instance.task_retried"]);
    assert_eq!(w.i().op.unwrap().attempt, 2);
    w.complete().task_is(Some(T::RebuildBlockDeviceMapping));
    assert_eq!(w.i().op.unwrap().attempt, 1);
    // Unanswered past the last attempt: the timeout fails it into ERROR.
    for _ in 0..3 {
        w.advance(61).tick();
    }
    w.vm(V::Error).idle().has_fault();
}

// ------------------------------------------------------------------ the rule table

/// A command performing `action` whose own validations pass from `World::active()`
/// moved to any allowed vm_state.
fn sample(action: A) -> C {
    match action {
        A::Pause => C::Pause,
        A::Unpause => C::Unpause,
        A::Suspend => C::Suspend,
        A::Resume => C::Resume,
        A::Stop => C::Stop,
        A::Start => C::Start,
        A::Reboot => C::Reboot { hard: false },
        A::RebootHard => C::Reboot { hard: true },
        A::Shelve => C::Shelve,
        A::ShelveOffload => C::ShelveOffload,
        A::Unshelve => C::Unshelve {
            availability_zone: None,
        },
        A::Resize => C::Resize { flavor: medium() },
        A::Migrate => C::Migrate { host: None },
        A::ConfirmResize => C::ConfirmResize,
        A::RevertResize => C::RevertResize,
        A::LiveMigration => C::LiveMigrate { host: None },
        A::Delete => C::Delete,
        A::Rebuild => C::Rebuild(Box::new(rebuild_to("cirros-2"))),
        A::Lock => C::Lock { reason: None },
        A::ChangePassword => C::ChangePassword,
        A::UpdateMetadata => C::SetMetadata {
            items: [("k".to_string(), "v".to_string())].into(),
            replace: false,
            limit: 128,
        },
        A::DeleteMetadata => C::DeleteMetadata { key: "k".into() },
        A::Rescue => C::Rescue { image_ref: None },
        A::Unrescue => C::Unrescue,
        A::Restore => C::Restore,
        A::ForceDelete => C::ForceDelete,
        A::TriggerCrashDump => C::TriggerCrashDump,
        A::Evacuate => C::Evacuate {
            host: None,
            stop: false,
            source_up: false,
        },
        A::Update => C::Update {
            name: Some("n".into()),
            description: None,
        },
        A::CreateImage => C::Snapshot {
            image: domain::ImageId(uuid::Uuid::from_u128(9)),
            backup: None,
        },
        A::CreateBackup => C::Snapshot {
            image: domain::ImageId(uuid::Uuid::from_u128(9)),
            backup: Some(domain::instance::BackupRequest {
                backup_type: "daily".into(),
                rotation: 2,
            }),
        },
        other => panic!("no sample command for {other:?}: add one"),
    }
}

/// The production table, plus the actions decided without a row that accept any
/// vm_state (lock, update): (api name, command, allowed vm_states).
fn every_action() -> Vec<(&'static str, C, Option<&'static [V]>)> {
    let mut v: Vec<_> = RULES
        .iter()
        .map(|r| (r.action.api_name(), sample(r.action), r.vm_states))
        .collect();
    for a in [A::Lock, A::Update] {
        assert!(rules::rule(a).is_none(), "{a:?} has a row now");
        v.push((a.api_name(), sample(a), None));
    }
    v
}

/// An idle, launched instance on compute-1 in vm_state `v`. Most of these states can
/// be reached by commands, but not all (building+idle, soft-delete), so the vm_state
/// is set directly on a real ACTIVE instance.
fn idle_in(v: V) -> World {
    let mut w = World::active();
    w.state.as_mut().unwrap().vm_state = v;
    // Something for the metadata delete's sample to remove.
    w.state
        .as_mut()
        .unwrap()
        .spec
        .metadata
        .insert("k".into(), "old".into());
    w
}

#[test]
fn the_table_has_one_row_per_action_and_commands_find_their_row() {
    for (n, r) in RULES.iter().enumerate() {
        assert!(
            RULES[n + 1..].iter().all(|o| o.action != r.action),
            "{:?} has two rows",
            r.action
        );
        assert_eq!(sample(r.action).action(), Some(r.action));
        assert_eq!(rules::rule(r.action), Some(r));
    }
}

#[test]
fn every_action_in_every_vm_state_follows_the_table() {
    let states: Vec<V> = V::ALL.into_iter().filter(|v| *v != V::Deleted).collect();
    for (name, cmd, allowed) in every_action() {
        for &v in &states {
            let mut w = idle_in(v);
            w.when(cmd.clone());
            let ok = allowed.is_none_or(|a| a.contains(&v));
            if ok {
                match w.result() {
                    Ok(evs) => assert!(!evs.is_empty(), "{name} in {v:?}: no events"),
                    Err(e) => panic!("{name} in {v:?} must be allowed, got {e}"),
                }
            } else {
                w.refused_vm(name, v.as_str());
            }
        }
    }
}

#[test]
fn every_allowed_action_starts_the_task_of_its_row() {
    for r in RULES {
        let v = r.vm_states.map(|a| a[0]).unwrap_or(V::Active);
        let mut w = idle_in(v);
        w.when(sample(r.action)).ok();
        w.task_is(r.effect.task());
        if let Some(o) = w.i().op {
            assert_eq!(o.action, r.action, "{:?}: op action", r.action);
        }
    }
}

#[test]
fn every_idle_only_action_refuses_every_task_state() {
    let reboot_ok = [
        T::Rebooting,
        T::RebootingHard,
        T::Resuming,
        T::Unpausing,
        T::Pausing,
        T::Suspending,
    ];
    for r in RULES {
        let Some(allowed) = r.vm_states else { continue };
        if r.task == TaskReq::Any {
            // The metadata rows: checked by `metadata_changes_accept_any_task_state`.
            continue;
        }
        let (name, cmd) = (r.action.api_name(), sample(r.action));
        let v = allowed[0];
        for t in T::ALL {
            let mut w = idle_in(v);
            let op = uuid::Uuid::from_u128(77);
            {
                let i = w.state.as_mut().unwrap();
                i.task_state = Some(t);
                i.op = Some(domain::instance::Operation {
                    id: op,
                    action: domain::instance::Action::Pause,
                    since: i.updated_at,
                    attempt: 1,
                });
            }
            w.when(cmd.clone());
            let hard = cmd == C::Reboot { hard: true };
            assert_eq!(
                r.task.allows(Some(t)),
                hard && reboot_ok.contains(&t),
                "{name}: table task requirement for {t:?}"
            );
            if hard && reboot_ok.contains(&t) {
                w.ok().task_is(Some(T::RebootingHard));
            } else {
                w.refused_task(name, t.as_str());
            }
        }
    }
}

#[test]
fn metadata_changes_accept_any_task_state_but_respect_the_lock_and_vm_state() {
    for a in [A::UpdateMetadata, A::DeleteMetadata] {
        for t in T::ALL {
            let mut w = idle_in(V::Active);
            w.state.as_mut().unwrap().task_state = Some(t);
            w.when(sample(a));
            let evs = w
                .result()
                .clone()
                .unwrap_or_else(|e| panic!("{a:?} in {t:?}: {e}"));
            assert!(
                matches!(
                    evs[..],
                    [domain::instance::InstanceEvent::MetadataUpdated { .. }]
                ),
                "{a:?} in {t:?}: {evs:?}"
            );
        }
        let mut w = idle_in(V::Building);
        w.when(sample(a)).refused_vm(a.api_name(), "building");
    }
    // Merge, replace, the quota on the result, and a missing key.
    let mut w = idle_in(V::Active);
    w.when(C::SetMetadata {
        items: [("a".to_string(), "1".to_string())].into(),
        replace: false,
        limit: 2,
    })
    .ok();
    assert_eq!(w.i().spec.metadata.len(), 2);
    w.when(C::SetMetadata {
        items: [("b".to_string(), "2".to_string())].into(),
        replace: false,
        limit: 2,
    });
    assert_eq!(
        w.result().clone().unwrap_err(),
        domain::DomainError::Forbidden("Maximum number of metadata items exceeds 2".into())
    );
    w.when(C::SetMetadata {
        items: [("b".to_string(), "2".to_string())].into(),
        replace: true,
        limit: 2,
    })
    .ok();
    assert_eq!(
        w.i().spec.metadata,
        [("b".to_string(), "2".to_string())].into()
    );
    // The same metadata again records nothing.
    w.when(C::SetMetadata {
        items: [("b".to_string(), "2".to_string())].into(),
        replace: false,
        limit: -1,
    });
    assert_eq!(w.result().clone().unwrap(), vec![]);
    w.when(C::DeleteMetadata { key: "zz".into() });
    assert_eq!(
        w.result().clone().unwrap_err(),
        domain::DomainError::Missing("Metadata item was not found".into())
    );
}

#[test]
fn tags_follow_novas_checks_in_order() {
    use domain::instance::tags::{decide, TagCommand as TC, MAX_TAGS};
    use std::collections::BTreeSet;
    let mut w = idle_in(V::Active);
    let i = w.state.clone().unwrap();
    let ctx = w.ctx(Who::Owner);
    let none = BTreeSet::new();
    let set = |evs: Vec<domain::instance::InstanceEvent>| match &evs[..] {
        [domain::instance::InstanceEvent::TagsSet { tags, .. }] => tags.clone(),
        other => panic!("{other:?}"),
    };
    let one = set(decide(Some(&i), &none, TC::Add("a".into()), &ctx).unwrap());
    assert_eq!(one, BTreeSet::from(["a".to_string()]));
    // Present already: nothing.
    assert_eq!(
        decide(Some(&i), &one, TC::Add("a".into()), &ctx).unwrap(),
        vec![]
    );
    let e = decide(Some(&i), &none, TC::Add("a/b".into()), &ctx).unwrap_err();
    assert_eq!(e.to_string(), "Tag 'a/b' is invalid. It must be a non empty string without characters '/' and ','. Validation error message: 'a/b' does not match '^[^,/]*$'");
    let full: BTreeSet<String> = (0..MAX_TAGS).map(|n| format!("t{n}")).collect();
    let e = decide(Some(&i), &full, TC::Add("t0".into()), &ctx).unwrap_err();
    assert_eq!(
        e.to_string(),
        "The number of tags exceeded the per-server limit 50"
    );
    let e = decide(Some(&i), &one, TC::Remove("b".into()), &ctx).unwrap_err();
    assert_eq!(e.to_string(), format!("Instance {} has no tag 'b'", i.id()));
    assert!(set(decide(Some(&i), &one, TC::Remove("a".into()), &ctx).unwrap()).is_empty());
    assert!(set(decide(Some(&i), &one, TC::Clear, &ctx).unwrap()).is_empty());
    // No lock, task or launch check; the vm_state only, before anything else.
    let mut locked = i.clone();
    locked.locked = Some(domain::instance::LockInfo {
        by_admin: true,
        reason: None,
    });
    locked.task_state = Some(T::Rebooting);
    assert!(decide(Some(&locked), &none, TC::Add("x".into()), &ctx).is_ok());
    for v in V::ALL {
        let mut s = i.clone();
        s.vm_state = v;
        let r = decide(Some(&s), &full, TC::Add("a/b".into()), &ctx);
        if rules::TAG_VM_STATES.contains(&v) {
            assert!(
                matches!(r, Err(domain::DomainError::BadRequest(_))),
                "{v:?}"
            );
        } else {
            assert_eq!(
                r.unwrap_err().to_string(),
                format!(
                    "Cannot 'update tag' instance {} while it is in vm_state {}",
                    i.id(),
                    v.as_str()
                )
            );
        }
    }
}

#[test]
fn delete_lock_unlock_and_update_accept_any_task_state() {
    for t in T::ALL {
        for cmd in [
            C::Delete,
            C::Lock { reason: None },
            C::Update {
                name: Some("n".into()),
                description: None,
            },
        ] {
            let mut w = World::active();
            {
                let i = w.state.as_mut().unwrap();
                i.task_state = Some(t);
                i.op = Some(domain::instance::Operation {
                    id: uuid::Uuid::from_u128(77),
                    action: domain::instance::Action::Pause,
                    since: i.updated_at,
                    attempt: 1,
                });
            }
            w.when(cmd.clone()).ok();
        }
    }
}

#[test]
fn every_locked_action_refuses_the_owner_and_admits_an_admin() {
    for r in RULES.iter().filter(|r| r.lock) {
        let cmd = sample(r.action);
        let v = r.vm_states.map(|a| a[0]).unwrap_or(V::Active);
        let mut w = idle_in(v);
        w.when(C::Lock { reason: None }).ok();
        w.when(cmd.clone()).refused_locked();
        let mut w = idle_in(v);
        w.when(C::Lock { reason: None }).ok();
        w.when_admin(cmd).ok();
    }
    // Updates and unlock are not lock-checked.
    let mut w = World::active();
    w.when(C::Lock { reason: None }).ok();
    w.when(C::Update {
        name: Some("n".into()),
        description: None,
    })
    .ok();
}

// ------------------------------------------------------------------ the reference file

/// One row of the reference table's `API action | ... | allowed vm_state |
/// task_state req. | lock | ...` section.
#[derive(Debug)]
struct RefRow {
    /// None = ANY.
    vm_states: Option<Vec<V>>,
    must_have_launched: bool,
    /// "None", "ANY", or the ALLOW_REBOOT list (task state strings, "None" = idle).
    task: RefTask,
    lock: bool,
}

#[derive(Debug)]
enum RefTask {
    Idle,
    Any,
    OneOf(Vec<String>),
}

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/reference/nova-state-actions.txt"
);

fn reference_rows() -> std::collections::BTreeMap<String, RefRow> {
    let text = std::fs::read_to_string(REFERENCE).unwrap_or_else(|e| {
        panic!("the reference file {REFERENCE} is missing ({e}): the rule table cannot be checked against Nova")
    });
    let mut rows = std::collections::BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() < 9 || cols[0].starts_with("API action") || cols[2] == "-" {
            continue;
        }
        let vm_states = if cols[2].starts_with("ANY") {
            None
        } else {
            Some(
                cols[2]
                    .split(',')
                    .map(|s| {
                        V::parse(s.trim())
                            .unwrap_or_else(|| panic!("unknown vm_state {s:?} in {line}"))
                    })
                    .collect(),
            )
        };
        let task = if cols[3] == "None" {
            RefTask::Idle
        } else if cols[3] == "ANY" {
            RefTask::Any
        } else if let Some(list) = cols[3]
            .strip_prefix("ALLOW_REBOOT=[")
            .and_then(|l| l.strip_suffix(']'))
        {
            RefTask::OneOf(list.split(',').map(|s| s.trim().to_string()).collect())
        } else {
            panic!("unknown task_state requirement {:?} in {line}", cols[3]);
        };
        let lock = match cols[4] {
            "yes" => true,
            "no" | "-" => false,
            other => panic!("unknown lock column {other:?} in {line}"),
        };
        rows.insert(
            cols[0].to_string(),
            RefRow {
                vm_states,
                must_have_launched: !cols[2].contains("must_have_launched=False"),
                task,
                lock,
            },
        );
    }
    assert!(
        rows.len() > 20,
        "only {} rows parsed from {REFERENCE}: has its format changed?",
        rows.len()
    );
    rows
}

/// The reference file's first column for an action.
fn reference_key(a: A) -> &'static str {
    match a {
        A::Stop => "os-stop",
        A::Start => "os-start",
        A::Reboot => "reboot {type: SOFT}",
        A::RebootHard => "reboot {type: HARD}",
        A::Resize => "resize {flavorRef}",
        A::Migrate => "migrate (cold)",
        A::Delete => "DELETE /servers/{id}",
        A::UpdateMetadata | A::DeleteMetadata => "PUT /servers/{id}/metadata",
        other => other.api_name(),
    }
}

#[test]
fn every_row_of_the_table_matches_the_nova_reference() {
    use std::collections::BTreeSet;
    let reference = reference_rows();
    for r in RULES {
        let key = reference_key(r.action);
        let Some(want) = reference.get(key) else {
            panic!("{:?}: no row {key:?} in {REFERENCE}", r.action)
        };
        let got_vm: Option<BTreeSet<&str>> =
            r.vm_states.map(|v| v.iter().map(|s| s.as_str()).collect());
        let want_vm: Option<BTreeSet<&str>> = want
            .vm_states
            .as_ref()
            .map(|v| v.iter().map(|s| s.as_str()).collect());
        assert_eq!(got_vm, want_vm, "{key}: allowed vm_states");
        assert_eq!(r.lock, want.lock, "{key}: lock check");
        assert_eq!(
            r.must_have_launched, want.must_have_launched,
            "{key}: must_have_launched"
        );
        match (&r.task, &want.task) {
            (TaskReq::Idle, RefTask::Idle) | (TaskReq::Any, RefTask::Any) => {}
            (TaskReq::OneOf(ours), RefTask::OneOf(theirs)) => {
                let name = |t: &Option<T>| t.map_or("None", |t| t.as_str());
                for t in ours.iter() {
                    assert!(
                        theirs.iter().any(|s| s == name(t)),
                        "{key}: {} is not in Nova's list",
                        name(t)
                    );
                }
                // Every listed state Stratus has must be in the table's list.
                let known = std::iter::once(None).chain(T::ALL.into_iter().map(Some));
                for t in known.filter(|t| theirs.iter().any(|s| s == name(t))) {
                    assert!(ours.contains(&t), "{key}: {} missing", name(&t));
                }
            }
            (got, want) => panic!("{key}: task_state requirement {got:?}, Nova says {want:?}"),
        }
    }
}

#[test]
fn api_status_follows_the_state_map() {
    use domain::states::api_status;
    assert_eq!(api_status(V::Active, Some(T::Rebooting)), "REBOOT");
    assert_eq!(api_status(V::Active, Some(T::RebootingHard)), "HARD_REBOOT");
    assert_eq!(api_status(V::Active, Some(T::Migrating)), "MIGRATING");
    assert_eq!(api_status(V::Active, Some(T::ResizePrep)), "RESIZE");
    assert_eq!(api_status(V::Active, Some(T::ResizeMigrating)), "RESIZE");
    assert_eq!(api_status(V::Active, Some(T::Pausing)), "ACTIVE");
    for t in [
        T::Rebuilding,
        T::RebuildBlockDeviceMapping,
        T::RebuildSpawning,
    ] {
        for v in [V::Active, V::Stopped, V::Error] {
            assert_eq!(api_status(v, Some(t)), "REBUILD", "{v:?} {t:?}");
        }
    }
    assert_eq!(api_status(V::Building, Some(T::Spawning)), "BUILD");
    assert_eq!(api_status(V::Stopped, Some(T::ResizePrep)), "RESIZE");
    assert_eq!(api_status(V::Stopped, None), "SHUTOFF");
    assert_eq!(api_status(V::Resized, None), "VERIFY_RESIZE");
    assert_eq!(
        api_status(V::Resized, Some(T::ResizeReverting)),
        "REVERT_RESIZE"
    );
    assert_eq!(api_status(V::Paused, Some(T::Migrating)), "MIGRATING");
    assert_eq!(api_status(V::Paused, None), "PAUSED");
    assert_eq!(api_status(V::Suspended, None), "SUSPENDED");
    assert_eq!(api_status(V::Rescued, None), "RESCUE");
    assert_eq!(api_status(V::Error, Some(T::Deleting)), "ERROR");
    assert_eq!(api_status(V::Deleted, None), "DELETED");
    assert_eq!(api_status(V::SoftDeleted, None), "SOFT_DELETED");
    assert_eq!(api_status(V::Shelved, None), "SHELVED");
    assert_eq!(api_status(V::ShelvedOffloaded, None), "SHELVED_OFFLOADED");
    for v in V::ALL {
        assert_ne!(api_status(v, None), "UNKNOWN");
        for t in T::ALL {
            assert_ne!(api_status(v, Some(t)), "UNKNOWN");
        }
    }
}

#[test]
fn action_names_match_nova() {
    use domain::instance::Action as A;
    assert_eq!(A::LiveMigration.api_name(), "os-migrateLive");
    assert_eq!(A::LiveMigration.action_name(), "live-migration");
    assert_eq!(A::RebootHard.api_name(), "reboot");
    assert_eq!(A::RebootHard.action_name(), "reboot");
    assert_eq!(A::ResetState.action_name(), "resetState");
    assert_eq!(A::ShelveOffload.action_name(), "shelveOffload");
    assert_eq!(A::ConfirmResize.action_name(), "confirmResize");
    assert_eq!(A::Rebuild.api_name(), "rebuild");
    assert_eq!(A::Rebuild.action_name(), "rebuild");
}

/// A create with extras records them beside the build request (and nothing more when
/// there are none); `ServerExtras` folds them.
#[test]
fn create_extras_are_recorded_only_when_given() {
    let extras = CreateExtras {
        reservation_id: Some("r-abcdefgh".into()),
        launch_index: 2,
        access_ip_v4: Some("192.0.2.1".into()),
        config_drive: true,
        ..Default::default()
    };
    let mut w = World::new(Config::default());
    w.when(C::Create(
        Box::new(spec()),
        Default::default(),
        Box::new(extras.clone()),
        Default::default(),
    ))
    .events(&[
        "instance.build_requested",
        "instance.create_extras_recorded",
    ]);
    let mut x = ServerExtras::default();
    x.apply(&InstanceEvent::CreateExtrasRecorded {
        extras: Box::new(extras),
    });
    assert_eq!(x.reservation_id.as_deref(), Some("r-abcdefgh"));
    assert_eq!(x.launch_index, 2);
    assert!(x.config_drive);
    assert_eq!(x.access_ip_v4.as_deref(), Some("192.0.2.1"));
}

// ------------------------------------------------------------------ snapshots

#[test]
fn create_image_goes_through_the_image_task_states_and_leaves_the_server_as_it_was() {
    let image = domain::ImageId(uuid::Uuid::from_u128(9));
    for mut w in [World::active(), World::stopped(), World::paused()] {
        let (vm, power) = (w.i().vm_state, w.i().power_state);
        w.when(C::Snapshot {
            image,
            backup: None,
        })
        .events(&["instance.snapshot_started"])
        .task_is(Some(T::ImageSnapshotPending));
        for next in [T::ImageSnapshot, T::ImagePendingUpload, T::ImageUploading] {
            w.complete()
                .events(&["instance.task_advanced"])
                .task_is(Some(next));
        }
        w.complete()
            .events(&["instance.action_completed"])
            .idle()
            .vm(vm)
            .power(power)
            .replays();
    }
}

#[test]
fn create_backup_starts_at_image_backup_and_a_lock_does_not_stop_it() {
    let mut w = World::active();
    w.when_admin(C::Lock { reason: None }).ok();
    w.when(C::Snapshot {
        image: domain::ImageId(uuid::Uuid::from_u128(9)),
        backup: Some(domain::instance::BackupRequest {
            backup_type: "weekly".into(),
            rotation: 1,
        }),
    })
    .events(&["instance.snapshot_started"])
    .task_is(Some(T::ImageBackup));
    w.complete().task_is(Some(T::ImagePendingUpload));
    w.complete().task_is(Some(T::ImageUploading));
    w.fail("upload failed").idle().vm(V::Active);
    World::shelved_offloaded()
        .when(C::Snapshot {
            image: domain::ImageId(uuid::Uuid::from_u128(9)),
            backup: None,
        })
        .refused_vm("createImage", "shelved_offloaded");
}

// ------------------------------------------------------------------ rescue, soft delete

#[test]
fn rescue_then_unrescue_goes_through_rescued_and_back_to_active() {
    let mut w = World::active();
    let image = "a2459075-d96c-40d5-893e-577ff92e721c".to_string();
    w.when(C::Rescue {
        image_ref: Some(image.clone()),
    })
    .events(&["instance.rescue_started"])
    .task_is(Some(T::Rescuing))
    .status("ACTIVE");
    assert_eq!(w.i().op.unwrap().action.action_name(), "rescue");
    assert_eq!(w.i().rescue_image_ref, Some(image));
    w.complete()
        .events(&["instance.action_completed"])
        .vm(V::Rescued)
        .idle()
        .status("RESCUE");
    w.when(C::Rescue { image_ref: None })
        .refused_vm("rescue", "rescued");
    w.when(C::Stop).refused_vm("stop", "rescued");
    w.when(C::Unrescue).ok().task_is(Some(T::Unrescuing));
    assert_eq!(w.i().rescue_image_ref, None);
    w.complete()
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .replays();
    w.when(C::Unrescue).refused_vm("unrescue", "active");
}

#[test]
fn a_volume_backed_server_cannot_be_rescued() {
    let mut w = World::active();
    w.state.as_mut().unwrap().spec.boot_from_volume = true;
    w.when(C::Rescue { image_ref: None }).refused(&format!(
        "Instance {} cannot be rescued: Cannot rescue a volume-backed instance",
        instance_id()
    ));
}

#[test]
fn with_a_reclaim_interval_delete_soft_deletes_and_restore_brings_it_back() {
    let cfg = Config {
        reclaim_instance_interval: 60,
        ..Config::default()
    };
    let mut w = World::active_with(cfg);
    w.when(C::Delete)
        .events(&["instance.task_started"])
        .task_is(Some(T::SoftDeleting));
    assert_eq!(w.i().op.unwrap().action, A::SoftDelete);
    assert_eq!(w.i().op.unwrap().action.action_name(), "delete");
    w.complete()
        .vm(V::SoftDeleted)
        .idle()
        .power(P::Shutdown)
        .status("SOFT_DELETED")
        .on_host(Some("compute-1"));
    // A second DELETE changes nothing; restore is refused elsewhere.
    w.when(C::Delete).no_events();
    w.when(C::Restore).ok().task_is(Some(T::Restoring));
    w.complete()
        .vm(V::Active)
        .idle()
        .power(P::Running)
        .replays();
    w.when(C::Restore).refused_vm("restore", "active");
}

#[test]
fn the_reconciler_reclaims_a_soft_deleted_server_after_the_interval() {
    let cfg = Config {
        reclaim_instance_interval: 60,
        ..Config::default()
    };
    let mut w = World::active_with(cfg);
    w.when(C::Delete).ok();
    w.complete().vm(V::SoftDeleted);
    w.advance(30).tick().no_events();
    // A lock meanwhile changes the server but not the clock: Nova counts from
    // `deleted_at`, the soft delete's start.
    w.when(C::Lock { reason: None }).ok();
    w.advance(31).tick().ok().task_is(Some(T::Deleting));
    w.complete().vm(V::Deleted);
    assert!(w.i().deleted);
}

#[test]
fn force_delete_deletes_a_soft_deleted_server_now_and_never_launched_ones_are_deleted() {
    let cfg = Config {
        reclaim_instance_interval: 60,
        ..Config::default()
    };
    let mut w = World::active_with(cfg);
    w.when(C::Delete).ok();
    w.complete().vm(V::SoftDeleted);
    w.when(C::ForceDelete).ok().task_is(Some(T::Deleting));
    w.complete();
    assert!(w.i().deleted);
    // Without a reclaim interval DELETE deletes, and restore is a 409.
    let mut w = World::active();
    w.when(C::Restore).refused_vm("restore", "active");
    w.when(C::Delete).ok().task_is(Some(T::Deleting));
}
