//! The instance-actions model folds the api and cell streams apart and merges them to
//! the rows one interleaved fold gives (what `replay rebuild` relies on), and lays the
//! cell side of `create` over the api side's action.

use std::collections::BTreeMap;

use domain::instance::*;
use domain::*;
use eventlog::{Actor, Commit, Metadata, StoredEvent, StreamName, Subject};
use projections::{Touched, Views};
use uuid::Uuid;

const ID: u128 = 1;

fn t(n: i64) -> Timestamp {
    Timestamp(1_700_000_000_000_000 + n)
}

fn spec() -> InstanceSpec {
    InstanceSpec {
        id: InstanceId(Uuid::from_u128(ID)),
        name: "web".into(),
        description: None,
        project_id: "p".into(),
        user_id: "u".into(),
        flavor: FlavorSnapshot {
            spec: domain::flavor::FlavorSpec {
                id: FlavorId::new("1").unwrap(),
                name: "m1.tiny".into(),
                vcpus: 1,
                ram_mb: 512,
                disk_gb: 1,
                ephemeral_gb: 0,
                swap_mb: 0,
                rxtx_factor: 1.0,
                is_public: true,
                description: None,
            },
            extra_specs: BTreeMap::new(),
        },
        image_ref: "cirros".into(),
        boot_from_volume: false,
        metadata: BTreeMap::new(),
        availability_zone: None,
        networks: Networks::None,
        key_name: None,
        requested_host: None,
    }
}

fn commit(stream: &str, seq: u64, rid: &str, user: &str, at: i64, e: InstanceEvent) -> Commit {
    let subject = if stream == "api" {
        format!("stratus.api.instance.{}", Uuid::from_u128(ID))
    } else {
        format!("stratus.cell.{stream}.instance.{}", Uuid::from_u128(ID))
    };
    let ne = projections::codec::encode(&Event::Instance(e));
    Commit {
        stream: StreamName::new(stream).unwrap(),
        stream_seq: seq,
        subject: Subject::parse(&subject).unwrap(),
        subject_seq: seq,
        dedupe_id: format!("d{stream}{seq}"),
        meta: Metadata {
            correlation_id: rid.into(),
            causation_id: rid.into(),
            actor: Actor {
                user: user.into(),
                project: if user == "scheduler" { "service" } else { "p" }.into(),
                roles: vec![if user == "scheduler" {
                    "service"
                } else {
                    "member"
                }
                .into()],
            },
            occurred_at: t(at).0,
        },
        events: vec![StoredEvent {
            event_id: Uuid::now_v7(),
            event_type: ne.event_type,
            version: ne.version,
            payload: ne.payload,
        }],
    }
}

/// A build (api), placed and spawned (cell1), a pause that completes and a suspend that
/// fails.
fn log() -> (Vec<Commit>, Vec<Commit>) {
    let host = HostName::new("host1").unwrap();
    let build = instance::evolve(
        None,
        &InstanceEvent::BuildRequested {
            spec: Box::new(spec()),
            op: Uuid::from_u128(9),
            at: t(0),
        },
    )
    .unwrap();
    let mut snap = build.clone();
    snap.host = Some(host.clone());
    snap.placed = true;
    let api = vec![
        commit(
            "api",
            1,
            "req-create",
            "u",
            0,
            InstanceEvent::BuildRequested {
                spec: Box::new(spec()),
                op: Uuid::from_u128(9),
                at: t(0),
            },
        ),
        commit(
            "api",
            2,
            "req-create",
            "scheduler",
            10,
            InstanceEvent::Mapped {
                cell: CellName::cell1(),
                host: Some((host, ClaimId(Uuid::from_u128(3)))),
                fault: None,
                at: t(10),
            },
        ),
    ];
    let fault = Fault {
        code: 500,
        message: "boom".into(),
        details: "trace".into(),
        created: t(60),
    };
    let cell = vec![
        commit(
            "cell1",
            1,
            "req-create",
            "scheduler",
            20,
            InstanceEvent::Placed {
                snapshot: Box::new(snap),
                at: t(20),
            },
        ),
        commit(
            "cell1",
            2,
            "req-create",
            "compute",
            30,
            InstanceEvent::Spawned { at: t(30) },
        ),
        commit(
            "cell1",
            3,
            "req-pause",
            "u",
            40,
            InstanceEvent::TaskStarted {
                op: Uuid::from_u128(10),
                action: Action::Pause,
                task: TaskState::Pausing,
                at: t(40),
            },
        ),
        commit(
            "cell1",
            4,
            "req-pause",
            "compute",
            45,
            InstanceEvent::ActionCompleted {
                action: Action::Pause,
                vm_state: VmState::Paused,
                power_state: PowerState::Paused,
                at: t(45),
            },
        ),
        commit(
            "cell1",
            5,
            "req-suspend",
            "u",
            50,
            InstanceEvent::TaskStarted {
                op: Uuid::from_u128(11),
                action: Action::Suspend,
                task: TaskState::Suspending,
                at: t(50),
            },
        ),
        commit(
            "cell1",
            6,
            "req-suspend",
            "compute",
            60,
            InstanceEvent::TaskFailed {
                fault,
                vm_state: None,
                at: t(60),
            },
        ),
    ];
    (api, cell)
}

fn fold(commits: &[Commit]) -> Views {
    let mut v = Views::default();
    let mut touched = Touched::default();
    for c in commits {
        v.apply(c, &mut touched);
    }
    v
}

#[test]
fn streams_fold_apart_and_merge_to_the_interleaved_fold() {
    let (api, cell) = log();
    let mut interleaved: Vec<Commit> = Vec::new();
    // The cell stream first, then the api stream: order across streams must not matter.
    interleaved.extend(cell.iter().cloned());
    interleaved.extend(api.iter().cloned());
    let one = fold(&interleaved);
    let mut merged = fold(&cell);
    merged.merge(fold(&api));
    merged.rebuild_indexes();
    assert!(
        one.differences(&merged).is_empty(),
        "{:?}",
        one.differences(&merged)
    );
    let mut other_way = fold(&api);
    other_way.merge(fold(&cell));
    assert!(one.differences(&other_way).is_empty());

    let id = InstanceId(Uuid::from_u128(ID));
    let actions = one.instance_actions().of(&id).unwrap().actions();
    let names: Vec<&str> = actions.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(names, ["suspend", "pause", "create"]);
    let create = &actions[2];
    assert_eq!(create.request_id, "req-create");
    assert_eq!(create.user_id.as_deref(), Some("u"));
    assert_eq!(create.start_time, t(0));
    assert_eq!(create.updated_at, t(30));
    let events: Vec<(&str, Option<Timestamp>, Option<Timestamp>)> = create
        .events
        .iter()
        .map(|e| (e.event.as_str(), Some(e.start_time), e.finish_time))
        .collect();
    assert_eq!(
        events,
        [
            (
                "conductor_schedule_and_build_instances",
                Some(t(0)),
                Some(t(10))
            ),
            (
                "compute__do_build_and_run_instance",
                Some(t(20)),
                Some(t(30))
            ),
        ]
    );
    assert!(create.message.is_none());
    let suspend = &actions[0];
    assert_eq!(suspend.message.as_deref(), Some("Error"));
    let e = &suspend.events[0];
    assert_eq!(e.event, "compute_suspend_instance");
    assert_eq!(e.result.map(|r| r.as_str()), Some("Error"));
    assert_eq!(e.traceback.as_deref(), Some("trace"));
    assert_eq!(e.details.as_deref(), Some("boom"));
    assert_eq!(e.host.as_ref().map(|h| h.as_str()), Some("host1"));
    assert_eq!(suspend.updated_at, t(60));
    let pause = &actions[1];
    assert_eq!(pause.events[0].result.map(|r| r.as_str()), Some("Success"));
    assert!(pause.message.is_none());
}

/// The instance rows merge too: the boot details from the api side, the extras from
/// both (the create's from the api side, the tags from the cell side), whichever side
/// is merged into the other.
#[test]
fn instance_rows_merge_their_details_and_extras() {
    let (mut api, mut cell) = log();
    api.push(commit(
        "api",
        3,
        "req-create",
        "u",
        1,
        InstanceEvent::BootDetailsRecorded {
            details: BootDetails {
                scheduler_hints: BTreeMap::from([("group".to_string(), "\"g\"".to_string())]),
                image_properties: BTreeMap::new(),
            },
        },
    ));
    api.push(commit(
        "api",
        4,
        "req-create",
        "u",
        1,
        InstanceEvent::CreateExtrasRecorded {
            extras: Box::new(CreateExtras {
                access_ip_v4: Some("192.0.2.7".into()),
                config_drive: true,
                ..Default::default()
            }),
        },
    ));
    let next = cell.len() as u64 + 1;
    cell.push(commit(
        "cell1",
        next,
        "req-tags",
        "u",
        70,
        InstanceEvent::TagsSet {
            tags: ["prod".to_string()].into(),
            at: t(70),
        },
    ));
    cell.push(commit(
        "cell1",
        next + 1,
        "req-meta",
        "u",
        80,
        InstanceEvent::MetadataUpdated {
            metadata: BTreeMap::from([("role".to_string(), "web".to_string())]),
            at: t(80),
        },
    ));
    let mut interleaved = cell.clone();
    interleaved.extend(api.iter().cloned());
    let one = fold(&interleaved);
    let id = InstanceId(Uuid::from_u128(ID));
    let row = one.instances().get(&id).unwrap();
    assert_eq!(row.details.scheduler_hints.len(), 1);
    assert!(row.extras.tags.contains("prod"));
    assert_eq!(row.extras.access_ip_v4.as_deref(), Some("192.0.2.7"));
    assert!(row.extras.config_drive);
    assert_eq!(row.state().unwrap().spec.metadata.len(), 1);
    for (a, b) in [(&cell, &api), (&api, &cell)] {
        let mut merged = fold(a);
        merged.merge(fold(b));
        merged.rebuild_indexes();
        assert!(
            one.differences(&merged).is_empty(),
            "{:?}",
            one.differences(&merged)
        );
    }
}
