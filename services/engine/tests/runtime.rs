//! The runtime: in-flight keys survive no panic, reactors on streams discovered after
//! start are stopped and joined by `stop`, and every task reports its status and lag.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::host::{HostCommand, HostSpec, Ratios, Resources};
use domain::{CellName, Ctx, HostName};
use engine::runtime::{TaskError, TaskKind};
use engine::{
    now, Delivery, Engine, Family, InFlight, Meta, Period, Periodic, Reactor, Runtime,
    RuntimeOptions,
};
use eventlog::{CheckpointStore, EmbeddedCheckpoints, EmbeddedLog, EventLog, StreamName};
use projections::projector::Projector;
use projections::World;
use tokio::sync::watch;

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_in_flight_key_is_released_when_its_work_panics_or_is_aborted() {
    let inflight: InFlight<u32> = InFlight::default();
    assert!(inflight.spawn(7, async { panic!("the work failed") }));
    eventually("released after the panic", || !inflight.contains(&7)).await;
    // The key is usable again: the object is not blocked for good.
    let (tx, rx) = tokio::sync::oneshot::channel();
    assert!(inflight.spawn(7, async move {
        let _ = rx.await;
    }));
    assert!(!inflight.spawn(7, async {}), "one piece of work per key");
    tx.send(()).unwrap();
    eventually("released after the work", || !inflight.contains(&7)).await;

    let guard = inflight.try_claim(8).expect("free");
    assert!(inflight.try_claim(8).is_none());
    let task = tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    task.abort();
    let _ = task.await;
    assert!(!inflight.contains(&8), "released on abort");
}

/// Counts the host commits it is handed and its reconcile passes.
#[derive(Default)]
struct Counter {
    handled: AtomicUsize,
    reconciled: AtomicUsize,
}

#[async_trait]
impl Reactor for Counter {
    fn name(&self) -> &str {
        "counter"
    }

    fn subscribes(&self) -> &'static [Family] {
        &[Family::Host]
    }

    async fn handle(&self, _engine: &Arc<Engine>, delivery: &Delivery<'_>) {
        assert!(!delivery.events.is_empty());
        self.handled.fetch_add(1, Ordering::SeqCst);
    }

    async fn reconcile(&self, _engine: &Arc<Engine>) {
        self.reconciled.fetch_add(1, Ordering::SeqCst);
    }
}

/// Fails every run.
struct Failing;

#[async_trait]
impl Periodic for Failing {
    fn name(&self) -> &str {
        "failing"
    }

    async fn run(&self, _engine: &Arc<Engine>) -> Result<(), TaskError> {
        Err("nothing works".into())
    }
}

#[tokio::test]
async fn a_reactor_on_a_stream_discovered_later_is_stopped_and_joined_and_reports_its_lag() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let api = StreamName::api();
    log.ensure_stream(&api).await.unwrap();
    let cps: Arc<dyn CheckpointStore> =
        Arc::new(EmbeddedCheckpoints::open(&dir.path().join("cp.redb")).unwrap());
    let world = Arc::new(World::default());
    let (proj_stop, proj_rx) = watch::channel(false);
    let projector = Projector::new(log.clone(), world.clone(), None);
    projector.follow(api.clone(), proj_rx.clone());
    let engine = Arc::new(Engine::new(
        log.clone(),
        world,
        cps.clone(),
        Default::default(),
        Duration::from_secs(10),
    ));

    let counter = Arc::new(Counter::default());
    let mut runtime = Runtime::new(
        engine.clone(),
        RuntimeOptions {
            reactor_reconcile: Some(Duration::from_secs(3600)),
            discover_every: Some(Duration::from_millis(50)),
        },
    );
    runtime.reactor(counter.clone()).periodic(
        Arc::new(Failing),
        Period::immediate(Duration::from_millis(20)),
    );
    {
        let projector = projector.clone();
        runtime.on_new_stream(Box::new(move |s| {
            projector.follow(s.clone(), proj_rx.clone());
        }));
    }
    let running = runtime.start(vec![api.clone()]);

    // A cell created while the runtime runs, with one host commit.
    let cell = CellName::new("cell7").unwrap();
    let stream = engine::cells::cell_stream(&cell);
    log.ensure_stream(&stream).await.unwrap();
    let host = HostName::new("h1").unwrap();
    let spec = HostSpec {
        name: host.clone(),
        cell: cell.clone(),
        total: Resources {
            vcpus: 4,
            ram_mb: 4096,
            disk_gb: 10,
        },
        ratios: Ratios::default(),
        availability_zone: "nova".into(),
    };
    let meta = Meta::service("test", "req-1", "test", "register:h1".into());
    let ctx = Ctx::service("test", now(), uuid::Uuid::new_v4());
    engine
        .host(&cell, &host, HostCommand::Register(spec), &ctx, &meta)
        .await
        .unwrap();
    eventually("handled on the new stream", || {
        counter.handled.load(Ordering::SeqCst) == 1
    })
    .await;

    let status = engine.task_status().await;
    let on_cell = status
        .iter()
        .find(|t| t.name == "counter" && t.stream.as_ref() == Some(&stream))
        .expect("the reactor on the discovered stream has a status");
    assert_eq!(on_cell.kind, TaskKind::Reactor);
    assert_eq!(
        (on_cell.head, on_cell.position, on_cell.lag),
        (Some(1), Some(1), Some(0))
    );
    assert!(
        on_cell.runs >= 2,
        "a reconcile pass and a commit: {on_cell:?}"
    );
    assert!(on_cell.last_run.is_some());
    let on_api = status
        .iter()
        .find(|t| t.name == "counter" && t.stream.as_ref() == Some(&api))
        .expect("the reactor on the api stream");
    assert_eq!(on_api.lag, Some(0));
    let failing = status.iter().find(|t| t.name == "failing").unwrap();
    assert_eq!(failing.kind, TaskKind::Periodic);
    assert!(
        failing.errors >= 1 && failing.runs >= failing.errors,
        "{failing:?}"
    );
    assert_eq!(failing.last_error.as_deref(), Some("nothing works"));
    assert_eq!(failing.lag, None);

    assert_eq!(
        running.task_count(),
        3,
        "two reactors and one periodic task"
    );
    running.stop().await;
    // Every task holding the reactor has ended: none was left running.
    assert_eq!(Arc::strong_count(&counter), 1);
    // The reactor of the discovered stream saved its checkpoint on its way out.
    assert_eq!(
        cps.load(&format!("counter:{stream}")).await.unwrap(),
        Some(1)
    );
    let _ = proj_stop.send(true);
}
