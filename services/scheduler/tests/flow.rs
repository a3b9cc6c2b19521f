//! Scheduler, placement, compute and reconciler together on a real embedded log,
//! driven through the engine (no HTTP): builds, NoValidHost, migrations, and a
//! capacity check folded from the log after many concurrent builds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use compute::{ComputeAgent, SimDriver, SimOptions};
use domain::flavor::FlavorSpec;
use domain::host::{HostSpec, Ratios, Resources};
use domain::instance::{Config, FlavorSnapshot, InstanceCommand, InstanceSpec, Networks};
use domain::{CellName, Ctx, FlavorId, HostName, InstanceId, VmState};
use engine::runtime::Running;
use engine::{now, Engine, Meta, Period, Reactor, Runtime, RuntimeOptions};
use eventlog::{CheckpointStore, EmbeddedCheckpoints, EmbeddedLog, EventLog, StreamName};
use projections::projector::Projector;
use projections::World;
use tokio::sync::watch;
use uuid::Uuid;

struct Env {
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
    _runtime: Option<Running>,
}

fn flavor(id: &str, vcpus: u32, ram_mb: u64) -> FlavorSnapshot {
    FlavorSnapshot {
        spec: FlavorSpec {
            id: FlavorId::new(id).unwrap(),
            name: format!("f{id}"),
            vcpus,
            ram_mb,
            disk_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            rxtx_factor: 1.0,
            is_public: true,
            description: None,
        },
        extra_specs: BTreeMap::new(),
    }
}

async fn env(hosts: usize, size: Resources, sim: SimOptions, config: Config) -> Env {
    env_with(hosts, size, sim, config, scheduler::Scheduler::default()).await
}

/// [`env`] with a scheduler of the caller's.
async fn env_with(
    hosts: usize,
    size: Resources,
    sim: SimOptions,
    config: Config,
    sched: scheduler::Scheduler,
) -> Env {
    env_multi(hosts, size, sim, config, vec![sched]).await
}

/// [`env`] with several scheduler reactors in one process (racing decisions).
async fn env_multi(
    hosts: usize,
    size: Resources,
    sim: SimOptions,
    config: Config,
    scheds: Vec<scheduler::Scheduler>,
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let streams: Vec<StreamName> = ["api", "cell0", "cell1"]
        .iter()
        .map(|s| StreamName::new(*s).unwrap())
        .collect();
    for s in &streams {
        log.ensure_stream(s).await.unwrap();
    }
    let cps: Arc<dyn CheckpointStore> =
        Arc::new(EmbeddedCheckpoints::open(&dir.path().join("cp.redb")).unwrap());
    let world = Arc::new(World::default());
    let (stop, rx) = watch::channel(false);
    let projector = Projector::new(log.clone(), world.clone(), None);
    for s in &streams {
        projector.follow(s.clone(), rx.clone());
    }
    let engine = Arc::new(Engine::new(
        log,
        world,
        cps,
        config,
        Duration::from_secs(10),
    ));
    let specs: Vec<HostSpec> = (1..=hosts)
        .map(|n| HostSpec {
            name: HostName::new(format!("host{n}")).unwrap(),
            cell: CellName::cell1(),
            total: size,
            ratios: Ratios::default(),
            availability_zone: "nova".into(),
        })
        .collect();
    ComputeAgent::register(&engine, &specs).await.unwrap();
    let agent: Arc<dyn Reactor> = Arc::new(ComputeAgent::new(
        specs.iter().map(|s| s.name.clone()),
        Arc::new(SimDriver::new(sim)),
    ));
    let mut runtime = Runtime::new(
        engine.clone(),
        RuntimeOptions {
            reactor_reconcile: Some(Duration::from_secs(5)),
            discover_every: None,
        },
    );
    for sched in scheds {
        runtime.reactor(Arc::new(sched));
    }
    runtime
        .reactor(Arc::new(scheduler::GroupMembers::default()))
        .reactor(Arc::new(scheduler::Placement::default()))
        .reactor_on(agent, streams[2].clone())
        .periodic(
            Arc::new(scheduler::Reconciler),
            Period::immediate(Duration::from_millis(100)),
        );
    let runtime = runtime.start(streams);
    Env {
        engine,
        _dir: dir,
        _stop: stop,
        _runtime: Some(runtime),
    }
}

fn user() -> Ctx {
    Ctx {
        now: now(),
        is_admin: false,
        user_id: "u".into(),
        project_id: "p".into(),
        op_id: Uuid::new_v4(),
    }
}

async fn create(e: &Env, f: FlavorSnapshot) -> InstanceId {
    create_in(e, f, None).await
}

/// [`create`] asking for an availability zone.
async fn create_in(e: &Env, f: FlavorSnapshot, az: Option<&str>) -> InstanceId {
    create_full(e, f, InstanceId(Uuid::new_v4()), az).await
}

async fn create_id(e: &Env, f: FlavorSnapshot, id: InstanceId) -> InstanceId {
    create_full(e, f, id, None).await
}

async fn create_full(e: &Env, f: FlavorSnapshot, id: InstanceId, az: Option<&str>) -> InstanceId {
    let spec = InstanceSpec {
        id,
        name: "vm".into(),
        description: None,
        project_id: "p".into(),
        user_id: "u".into(),
        flavor: f,
        image_ref: "cirros".into(),
        boot_from_volume: false,
        metadata: BTreeMap::new(),
        availability_zone: az.map(str::to_string),
        networks: Networks::None,
        key_name: None,
        requested_host: None,
    };
    e.engine
        .instance(
            id,
            InstanceCommand::Create(
                Box::new(spec),
                Default::default(),
                Default::default(),
                Default::default(),
            ),
            &user(),
            &Meta::default(),
        )
        .await
        .unwrap();
    id
}

async fn wait_status(e: &Env, id: InstanceId, want: &str) {
    let ok = e
        .engine
        .world()
        .wait_until(Duration::from_secs(20), |v| {
            v.instance(&id)
                .is_some_and(|i| i.status() == want && i.task_state.is_none())
        })
        .await;
    let st = e.engine.world().read().instance(&id).cloned();
    assert!(ok, "{id} never reached {want}: {st:?}");
}

async fn cmd(e: &Env, id: InstanceId, c: InstanceCommand) {
    e.engine
        .instance(id, c, &user(), &Meta::default())
        .await
        .unwrap();
}

/// Sum of claims per host folded from the whole log, checked against capacity after
/// every commit.
async fn assert_never_overcommitted(e: &Env) {
    let stream = StreamName::new("cell1").unwrap();
    let commits = e
        .engine
        .log()
        .read_stream(&stream, 1, usize::MAX)
        .await
        .unwrap();
    let mut v = projections::Views::default();
    let mut t = projections::Touched::default();
    for c in &commits {
        v.apply(c, &mut t);
        for row in v.hosts().values() {
            let cap = row.state.spec.capacity();
            let used = row.state.used;
            assert!(
                used.vcpus <= cap.vcpus && used.ram_mb <= cap.ram_mb && used.disk_gb <= cap.disk_gb,
                "host {} overcommitted at {}: {used:?} > {cap:?}",
                row.state.spec.name,
                c.stream_seq
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_builds_never_overcommit_and_no_valid_host_goes_to_cell0() {
    // 3 hosts x 2 GiB x 1.5 = 3 GiB each: 3 builds of 1 GiB fit per host, 9 in all.
    let e = env(
        3,
        Resources {
            vcpus: 4,
            ram_mb: 2048,
            disk_gb: 100,
        },
        SimOptions::default(),
        Config::default(),
    )
    .await;
    let f = flavor("1", 1, 1024);
    let mut ids = vec![];
    let mut tasks = vec![];
    for _ in 0..24 {
        let e2 = e.engine.clone();
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let env = Env {
                engine: e2,
                _dir: tempfile::tempdir().unwrap(),
                _stop: watch::channel(false).0,
                _runtime: None,
            };
            create(&env, f).await
        }));
    }
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    for id in &ids {
        e.engine
            .world()
            .wait_until(Duration::from_secs(20), |v| {
                v.instance(id)
                    .is_some_and(|i| matches!(i.status(), "ACTIVE" | "ERROR"))
            })
            .await;
    }
    let (active, error): (Vec<_>, Vec<_>) = {
        let v = e.engine.world().read();
        ids.iter()
            .map(|id| v.instance(id).unwrap().clone())
            .partition(|i| i.vm_state == VmState::Active)
    };
    assert_eq!(active.len(), 9, "every fitting build is placed");
    assert_eq!(error.len(), 15);
    for i in &error {
        assert_eq!(i.cell, Some(CellName::cell0()));
        assert!(i.fault.as_ref().unwrap().message.contains("No valid host"));
        assert!(i.claim.is_none());
    }
    assert_never_overcommitted(&e).await;

    // Delete everything: every claim is released.
    for id in &ids {
        cmd(&e, *id, InstanceCommand::Delete).await;
    }
    let ok = e
        .engine
        .world()
        .wait_until(Duration::from_secs(20), |v| {
            v.hosts().values().all(|h| h.state.allocations.is_empty())
        })
        .await;
    assert!(ok, "claims left: {:?}", e.engine.world().read().claims());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_holds_the_source_until_confirm_and_revert_frees_the_destination() {
    let e = env(
        2,
        Resources {
            vcpus: 8,
            ram_mb: 8192,
            disk_gb: 100,
        },
        SimOptions::default(),
        Config::default(),
    )
    .await;
    let id = create(&e, flavor("1", 1, 512)).await;
    wait_status(&e, id, "ACTIVE").await;
    let src = e
        .engine
        .world()
        .read()
        .instance(&id)
        .unwrap()
        .host
        .clone()
        .unwrap();
    cmd(
        &e,
        id,
        InstanceCommand::Resize {
            flavor: flavor("2", 2, 1024),
        },
    )
    .await;
    wait_status(&e, id, "VERIFY_RESIZE").await;
    let (dst, held) = {
        let v = e.engine.world().read();
        let i = v.instance(&id).unwrap();
        (i.host.clone().unwrap(), v.claims()[&id].len())
    };
    assert_ne!(src, dst);
    assert_eq!(held, 2, "source and destination both held");
    cmd(&e, id, InstanceCommand::RevertResize).await;
    wait_status(&e, id, "ACTIVE").await;
    let ok = e
        .engine
        .world()
        .wait_until(Duration::from_secs(10), |v| {
            v.claims().get(&id).map(|c| c.len()) == Some(1)
        })
        .await;
    assert!(ok);
    let v = e.engine.world().read();
    let i = v.instance(&id).unwrap();
    assert_eq!(i.host.as_ref(), Some(&src));
    assert_eq!(i.flavor.spec.id.as_str(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_with_one_host_fails_cleanly() {
    let e = env(
        1,
        Resources {
            vcpus: 8,
            ram_mb: 8192,
            disk_gb: 100,
        },
        SimOptions::default(),
        Config::default(),
    )
    .await;
    let id = create(&e, flavor("1", 1, 512)).await;
    wait_status(&e, id, "ACTIVE").await;
    let admin = Ctx {
        is_admin: true,
        ..user()
    };
    e.engine
        .instance(
            id,
            InstanceCommand::Migrate { host: None },
            &admin,
            &Meta::default(),
        )
        .await
        .unwrap();
    wait_status(&e, id, "ACTIVE").await;
    let v = e.engine.world().read();
    let i = v.instance(&id).unwrap();
    assert!(
        i.fault.as_ref().unwrap().message.contains("No valid host"),
        "{:?}",
        i.fault
    );
    assert!(i.migration.is_none());
    assert_eq!(v.claims()[&id].len(), 1);
}

/// Hosts of a cell whose stream is unreachable are never chosen (their claim could not be
/// written). With the only cell down (as while its stream elects a new leader), a build
/// waits without a claim instead of failing, and lands once the cell is back; a cell down
/// for longer than the scheduler's patience fails the build with NoValidHost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_of_a_down_cell_are_never_chosen() {
    let patience = Duration::from_secs(5);
    let e = env_with(
        2,
        Resources {
            vcpus: 8,
            ram_mb: 8192,
            disk_gb: 100,
        },
        SimOptions::default(),
        Config::default(),
        scheduler::Scheduler::default().with_patience(patience),
    )
    .await;
    e.engine.world().health.set_down(&CellName::cell1(), true);
    let t0 = tokio::time::Instant::now();
    let id = create(&e, flavor("1", 1, 512)).await;
    // Well within the patience: still building, nothing claimed.
    let settled = e
        .engine
        .world()
        .wait_until(Duration::from_secs(1), |v| {
            v.instance(&id).is_some_and(|i| i.status() != "BUILD")
        })
        .await;
    let st = e.engine.world().read().instance(&id).cloned();
    assert!(!settled, "the build did not wait for the cell: {st:?}");
    assert!(!e.engine.world().read().claims().contains_key(&id));
    assert!(
        t0.elapsed() < patience,
        "the machine is too slow for this test"
    );
    e.engine.world().health.set_down(&CellName::cell1(), false);
    wait_status(&e, id, "ACTIVE").await;

    e.engine.world().health.set_down(&CellName::cell1(), true);
    let t0 = tokio::time::Instant::now();
    let id = create(&e, flavor("1", 1, 512)).await;
    wait_status(&e, id, "ERROR").await;
    assert!(
        t0.elapsed() >= patience,
        "failed before the patience ran out"
    );
    let fault = e
        .engine
        .world()
        .read()
        .instance(&id)
        .and_then(|i| i.fault.clone());
    assert!(
        fault
            .as_ref()
            .is_some_and(|f| f.message.contains("No valid host")),
        "{fault:?}"
    );
    e.engine.world().health.set_down(&CellName::cell1(), false);
    let id = create(&e, flavor("1", 1, 512)).await;
    wait_status(&e, id, "ACTIVE").await;
}

/// The event types of an instance's cell subject, in order.
async fn cell_event_types(e: &Env, id: InstanceId) -> Vec<String> {
    let stream = StreamName::new("cell1").unwrap();
    let commits = e
        .engine
        .log()
        .read_stream(&stream, 1, usize::MAX)
        .await
        .unwrap();
    commits
        .iter()
        .filter(|c| c.subject.id_token() == id.to_string())
        .flat_map(|c| c.events.iter().map(|ev| ev.event_type.clone()))
        .collect()
}

/// The compute agent answers each rebuild step: `rebuilding` and
/// `rebuild_block_device_mapping` advance to the next step, `rebuild_spawning` ends it
/// (ACTIVE, or SHUTOFF for a stopped server); a failed step ends in ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_steps_are_answered_by_the_compute_agent() {
    let size = Resources {
        vcpus: 8,
        ram_mb: 8192,
        disk_gb: 100,
    };
    let e = env(1, size, SimOptions::default(), Config::default()).await;
    let rebuild = || {
        InstanceCommand::Rebuild(Box::new(domain::instance::Rebuild {
            image_ref: "fedora".into(),
            name: Some("rebuilt".into()),
            access_ip_v4: Some(Some("192.0.2.10".into())),
            hostname: Some("web-1".into()),
            ..Default::default()
        }))
    };
    let id = create(&e, flavor("1", 1, 512)).await;
    wait_status(&e, id, "ACTIVE").await;
    cmd(&e, id, rebuild()).await;
    wait_status(&e, id, "ACTIVE").await;
    {
        let v = e.engine.world().read();
        let i = v.instance(&id).unwrap();
        assert_eq!(i.spec.image_ref, "fedora");
        assert_eq!(i.spec.name, "rebuilt");
        // What the instance state has no field for is in the read model's extras.
        let extras = &v.instances()[&id].extras;
        assert_eq!(extras.access_ip_v4.as_deref(), Some("192.0.2.10"));
        assert_eq!(extras.hostname.as_deref(), Some("web-1"));
    }
    let types = cell_event_types(&e, id).await;
    let tail: Vec<&str> = types
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "instance.rebuild_started",
            "instance.task_advanced",
            "instance.task_advanced",
            "instance.rebuilt"
        ]
    );

    cmd(&e, id, InstanceCommand::Stop).await;
    wait_status(&e, id, "SHUTOFF").await;
    cmd(&e, id, rebuild()).await;
    wait_status(&e, id, "SHUTOFF").await;
    assert_eq!(
        cell_event_types(&e, id).await.last().map(String::as_str),
        Some("instance.rebuilt")
    );

    let e = env(
        1,
        size,
        SimOptions {
            fail_tasks: [domain::TaskState::RebuildSpawning].into(),
            ..SimOptions::default()
        },
        Config::default(),
    )
    .await;
    let id = create(&e, flavor("1", 1, 512)).await;
    wait_status(&e, id, "ACTIVE").await;
    cmd(&e, id, rebuild()).await;
    wait_status(&e, id, "ERROR").await;
    let v = e.engine.world().read();
    let i = v.instance(&id).unwrap();
    assert_eq!(i.vm_state, VmState::Error);
    assert!(
        i.fault
            .as_ref()
            .unwrap()
            .message
            .contains("rebuild_spawning"),
        "{:?}",
        i.fault
    );
}

/// A disabled or forced-down host gets no builds (Nova's ComputeFilter): with host1
/// disabled and host2 forced down, every build lands on host3; with all three out, a
/// build fails with NoValidHost; enabling a host brings builds back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_forced_down_hosts_get_no_builds() {
    use domain::host::HostCommand;
    let e = env(
        3,
        Resources {
            vcpus: 8,
            ram_mb: 8192,
            disk_gb: 100,
        },
        SimOptions::default(),
        Config::default(),
    )
    .await;
    let admin = Ctx {
        is_admin: true,
        ..user()
    };
    let set = |n: u32, status: Option<(bool, Option<String>)>, forced: Option<bool>| {
        let (e, admin) = (&e, admin.clone());
        async move {
            e.engine
                .host(
                    &CellName::cell1(),
                    &HostName::new(format!("host{n}")).unwrap(),
                    HostCommand::UpdateService {
                        status,
                        forced_down: forced,
                    },
                    &admin,
                    &Meta::default(),
                )
                .await
                .unwrap();
        }
    };
    set(1, Some((true, Some("maintenance".into()))), None).await;
    set(2, None, Some(true)).await;
    let mut ids = vec![];
    for _ in 0..6 {
        ids.push(create(&e, flavor("1", 1, 512)).await);
    }
    for id in &ids {
        wait_status(&e, *id, "ACTIVE").await;
        let v = e.engine.world().read();
        let host = v.instance(id).unwrap().host.clone().unwrap();
        assert_eq!(
            host.as_str(),
            "host3",
            "{id} landed on a host out of service"
        );
    }
    set(3, Some((true, None)), None).await;
    let id = create(&e, flavor("1", 1, 512)).await;
    wait_status(&e, id, "ERROR").await;
    let fault = e.engine.world().read().instance(&id).unwrap().fault.clone();
    assert!(fault.unwrap().message.contains("No valid host"));
    set(1, Some((false, None)), None).await;
    let id = create(&e, flavor("1", 1, 512)).await;
    wait_status(&e, id, "ACTIVE").await;
    let v = e.engine.world().read();
    assert_eq!(
        v.instance(&id).unwrap().host.as_ref().unwrap().as_str(),
        "host1"
    );
}

/// The AvailabilityZone filter takes a host's zone from the aggregates: builds asking for
/// `az1` land only on the host of the `az1` aggregate, builds asking for `nova` only on
/// the others, and a zone without room fails with NoValidHost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_land_in_the_zone_their_aggregates_give() {
    use domain::aggregate::{AggregateCommand, AggregateId};
    let e = env(
        3,
        Resources {
            vcpus: 8,
            ram_mb: 4096,
            disk_gb: 100,
        },
        SimOptions::default(),
        Config::default(),
    )
    .await;
    let admin = Ctx {
        is_admin: true,
        ..user()
    };
    for cmd in [
        AggregateCommand::Create {
            name: "agg1".into(),
            availability_zone: Some("az1".into()),
        },
        AggregateCommand::AddHost {
            id: AggregateId(1),
            host: HostName::new("host3").unwrap(),
        },
    ] {
        e.engine
            .aggregate(cmd, &admin, &Meta::default())
            .await
            .unwrap();
    }
    let mut in_az1 = Vec::new();
    let mut in_nova = Vec::new();
    for _ in 0..4 {
        in_az1.push(create_in(&e, flavor("1", 1, 512), Some("az1")).await);
        in_nova.push(create_in(&e, flavor("1", 1, 512), Some("nova")).await);
    }
    for id in in_az1.iter().chain(&in_nova) {
        wait_status(&e, *id, "ACTIVE").await;
    }
    {
        let v = e.engine.world().read();
        for id in &in_az1 {
            assert_eq!(
                v.instance(id).unwrap().host.as_ref().unwrap().as_str(),
                "host3"
            );
        }
        for id in &in_nova {
            assert_ne!(
                v.instance(id).unwrap().host.as_ref().unwrap().as_str(),
                "host3"
            );
        }
    }
    // host3 has room for 8 x 512 MiB at ratio 1.5 (6144 MiB / 512 = 12): fill it.
    let mut more = Vec::new();
    for _ in 0..9 {
        more.push(create_in(&e, flavor("1", 1, 512), Some("az1")).await);
    }
    let settled = e
        .engine
        .world()
        .wait_until(Duration::from_secs(20), |v| {
            more.iter().all(|id| {
                v.instance(id).is_some_and(|i| {
                    i.task_state.is_none() && matches!(i.status(), "ACTIVE" | "ERROR")
                })
            })
        })
        .await;
    assert!(settled, "the builds never settled");
    let v = e.engine.world().read();
    let failed = more
        .iter()
        .filter(|id| v.instance(id).unwrap().status() == "ERROR")
        .count();
    assert_eq!(failed, 1, "one build more than az1 holds: NoValidHost");
    let on_host3 = v
        .instances()
        .values()
        .filter_map(|r| r.state())
        .filter(|i| i.host.as_ref().is_some_and(|h| h.as_str() == "host3"))
        .count();
    assert_eq!(on_host3, 12, "az1 builds never spill over to other zones");
}

/// A build no host passes ends in ERROR with Nova's NoValidHost message, and the fault's
/// details name the filter that removed the hosts (Nova's filter summary); a build the
/// filters pass lands on the host the weighers prefer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_valid_host_fault_names_the_filter_that_removed_the_hosts() {
    let e = env(
        2,
        Resources {
            vcpus: 4,
            ram_mb: 4096,
            disk_gb: 100,
        },
        SimOptions::default(),
        Config::default(),
    )
    .await;
    // No aggregate has `ssd`: AggregateInstanceExtraSpecsFilter removes every host.
    let mut f = flavor("ssd", 1, 512);
    f.extra_specs
        .insert("aggregate_instance_extra_specs:ssd".into(), "true".into());
    let id = create(&e, f).await;
    wait_status(&e, id, "ERROR").await;
    let fault = e.engine.world().read().instance(&id).unwrap().fault.clone();
    let fault = fault.expect("a fault");
    assert_eq!(
        fault.message,
        "No valid host was found. There are not enough hosts available."
    );
    assert!(
        fault.details.contains(&format!(
            "Filtering removed all hosts for the request with instance ID '{id}'"
        )) && fault
            .details
            .contains("'AggregateInstanceExtraSpecsFilter: (start: 2, end: 0)'"),
        "{}",
        fault.details
    );
    // A capability the simulated hosts have passes ComputeCapabilitiesFilter.
    let mut f = flavor("qemu", 1, 512);
    f.extra_specs
        .insert("capabilities:hypervisor_type".into(), "s== QEMU".into());
    let ok = create(&e, f).await;
    wait_status(&e, ok, "ACTIVE").await;
    // One that they lack is refused by it.
    let mut f = flavor("xen", 1, 512);
    f.extra_specs
        .insert("capabilities:hypervisor_type".into(), "s== xen".into());
    let no = create(&e, f).await;
    wait_status(&e, no, "ERROR").await;
    let d = e.engine.world().read().instance(&no).unwrap().fault.clone();
    assert!(d
        .unwrap()
        .details
        .contains("'ComputeCapabilitiesFilter: (start: 2, end: 0)'"));
}

/// With `host_subset_size` 2 and a seeded random source, builds go to both of the two
/// best hosts rather than always the best one; with 1 they always go to the best.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_subset_size_spreads_first_choices_deterministically() {
    let size = Resources {
        vcpus: 64,
        ram_mb: 65536,
        disk_gb: 1000,
    };
    let cfg = |n| domain::scheduling::Config {
        // Pack on RAM so one host stays the best whatever was placed.
        multipliers: domain::scheduling::Multipliers {
            ram: -1.0,
            cpu: 0.0,
            disk: 0.0,
            ..Default::default()
        },
        host_subset_size: n,
    };
    for (n, want_hosts) in [(1usize, 1usize), (2, 2)] {
        let sched = scheduler::Scheduler::default()
            .with_config(cfg(n))
            .with_seed(42);
        let e = env_with(3, size, SimOptions::default(), Config::default(), sched).await;
        let mut hosts = std::collections::BTreeSet::new();
        for _ in 0..12 {
            let id = create(&e, flavor("1", 1, 256)).await;
            wait_status(&e, id, "ACTIVE").await;
            hosts.insert(e.engine.world().read().instance(&id).unwrap().host.clone());
        }
        assert_eq!(hosts.len(), want_hosts, "subset {n}: {hosts:?}");
    }
}

/// Members of an anti-affinity group built at once, decided by two scheduler reactors
/// that both prefer the same host (RAM packing): no two members ever land on one host,
/// the members that find no free host fail with NoValidHost, and the log folded from
/// the start records one member per host. Deleting the members empties the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_holds_with_racing_schedulers() {
    use domain::server_group::{Policy, ServerGroup, ServerGroupCommand as SG};
    let pack = || {
        scheduler::Scheduler::default().with_config(domain::scheduling::Config {
            multipliers: domain::scheduling::Multipliers {
                ram: -1.0,
                ..Default::default()
            },
            host_subset_size: 1,
        })
    };
    let e = env_multi(
        4,
        Resources {
            vcpus: 16,
            ram_mb: 16384,
            disk_gb: 100,
        },
        SimOptions::default(),
        Config::default(),
        vec![pack(), pack()],
    )
    .await;
    let gid = domain::ServerGroupId(Uuid::new_v4());
    let group = ServerGroup {
        id: gid,
        name: "g".into(),
        project_id: "p".into(),
        user_id: "u".into(),
        policy: Policy::AntiAffinity,
        max_server_per_host: None,
        members: BTreeMap::new(),
        created_at: domain::Timestamp(0),
    };
    e.engine
        .server_groups(
            "p",
            |_| SG::Create {
                group: group.clone(),
                limit: 10,
            },
            &user(),
            &Meta::default(),
        )
        .await
        .unwrap();
    let ids: Vec<InstanceId> = (0..6).map(|_| InstanceId(Uuid::new_v4())).collect();
    e.engine
        .server_groups(
            "p",
            |_| SG::AddMembers {
                id: gid,
                instances: ids.clone(),
                limit: 10,
                at: domain::Timestamp(0),
            },
            &user(),
            &Meta::default(),
        )
        .await
        .unwrap();
    let mut tasks = vec![];
    for id in &ids {
        let engine = e.engine.clone();
        let id = *id;
        tasks.push(tokio::spawn(async move {
            let env = Env {
                engine,
                _dir: tempfile::tempdir().unwrap(),
                _stop: watch::channel(false).0,
                _runtime: None,
            };
            create_id(&env, flavor("1", 1, 512), id).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for id in &ids {
        let ok = e
            .engine
            .world()
            .wait_until(Duration::from_secs(30), |v| {
                v.instance(id)
                    .is_some_and(|i| matches!(i.status(), "ACTIVE" | "ERROR"))
            })
            .await;
        assert!(ok, "{id} never settled");
    }
    let (active, error): (Vec<_>, Vec<_>) = {
        let v = e.engine.world().read();
        ids.iter()
            .map(|id| v.instance(id).unwrap().clone())
            .partition(|i| i.vm_state == VmState::Active)
    };
    let hosts: std::collections::BTreeSet<_> = active.iter().map(|i| i.host.clone()).collect();
    assert_eq!(active.len(), 4, "one member per host");
    assert_eq!(hosts.len(), 4, "no two members share a host: {hosts:?}");
    assert_eq!(error.len(), 2);
    for i in &error {
        let f = i.fault.as_ref().unwrap();
        assert!(
            f.details.contains("ServerGroupAntiAffinityFilter"),
            "{}",
            f.details
        );
    }
    // The group's log, folded from the start: at no point two members on one host.
    let commits = e
        .engine
        .log()
        .read_stream(&StreamName::new("api").unwrap(), 1, usize::MAX)
        .await
        .unwrap();
    let mut state = domain::server_group::ProjectGroups::default();
    for c in &commits {
        for ev in &c.events {
            if let Ok(domain::Event::ServerGroup(ev)) = projections::codec::decode(ev) {
                state = domain::server_group::evolve(state, &ev);
                let g = &state.groups[&gid];
                let placed: Vec<_> = g.members.values().flatten().collect();
                let distinct: std::collections::BTreeSet<_> = placed.iter().collect();
                assert_eq!(placed.len(), distinct.len(), "two members on one host");
            }
        }
    }
    // Delete every member: the group is emptied by the GroupMembers reactor.
    for id in &ids {
        cmd(&e, *id, InstanceCommand::Delete).await;
    }
    let ok = e
        .engine
        .world()
        .wait_until(Duration::from_secs(20), |v| {
            v.server_groups()
                .group(&gid)
                .is_some_and(|g| g.members.is_empty())
        })
        .await;
    assert!(ok, "members left");
}
