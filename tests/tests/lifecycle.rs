//! The whole Nova lifecycle over real HTTP on the embedded log, plus restart, replay,
//! NoValidHost, failure injection, timeouts and reactor idempotency.

use std::collections::HashSet;
use std::time::Duration;

use domain::TaskState;
use reqwest::Method as M;
use serde_json::json;
use tests::Harness;

const ADMIN: &str = "admin:admin";
const ALICE: &str = "alice:proj-a";

fn host_of(s: &serde_json::Value) -> String {
    s["OS-EXT-SRV-ATTR:host"].as_str().unwrap_or("").to_string()
}

/// Claims per host folded from the world: (host, instance) pairs.
fn claims(h: &Harness) -> Vec<(String, String)> {
    let v = h.stack.engine.world().read();
    let mut out = vec![];
    for row in v.hosts().values() {
        for a in row.state.allocations.values() {
            out.push((row.state.spec.name.to_string(), a.instance.to_string()));
        }
    }
    out.sort();
    out
}

async fn settle_claims(h: &Harness, want: Vec<(String, String)>) {
    let mut want = want;
    want.sort();
    for _ in 0..400 {
        if claims(h) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(claims(h), want, "claims never settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle() {
    let h = Harness::start(|_| {}).await;
    lifecycle(&h).await;
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_on_jetstream() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server starts");
    let url = nats.url();
    let h = Harness::start(|o| o.nats = Some(url)).await;
    lifecycle(&h).await;
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    drop(dir);
    drop(nats);
}

/// Every action of the lifecycle, with placement checked at each step.
async fn lifecycle(h: &Harness) {
    let id = h.create(ALICE, "web-1", "1").await;
    let s = h.wait(&id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    let host1 = host_of(&s);
    assert!(host1.starts_with("host"), "{s}");
    settle_claims(h, vec![(host1.clone(), id.clone())]).await;

    for (go, mid, back, end) in [
        ("pause", "PAUSED", "unpause", "ACTIVE"),
        ("suspend", "SUSPENDED", "resume", "ACTIVE"),
        ("os-stop", "SHUTOFF", "os-start", "ACTIVE"),
    ] {
        h.action(ALICE, &id, json!({ go: null }), 202).await;
        h.wait(&id, mid).await;
        h.action(ALICE, &id, json!({ back: null }), 202).await;
        h.wait(&id, end).await;
    }
    h.action(ALICE, &id, json!({"reboot": {"type": "SOFT"}}), 202)
        .await;
    h.wait(&id, "ACTIVE").await;
    h.action(ALICE, &id, json!({"reboot": {"type": "HARD"}}), 202)
        .await;
    h.wait(&id, "ACTIVE").await;

    // shelve -> offloaded at once (shelved_offload_time 0): host and claim freed.
    h.action(ALICE, &id, json!({"shelve": null}), 202).await;
    let s = h.wait(&id, "SHELVED_OFFLOADED").await;
    assert_eq!(host_of(&s), "");
    settle_claims(h, vec![]).await;
    h.action(ALICE, &id, json!({"unshelve": null}), 202).await;
    let s = h.wait(&id, "ACTIVE").await;
    let host2 = host_of(&s);
    assert!(!host2.is_empty());
    settle_claims(h, vec![(host2.clone(), id.clone())]).await;

    // resize -> VERIFY_RESIZE holds both claims -> confirm frees the source.
    h.action(ALICE, &id, json!({"resize": {"flavorRef": "2"}}), 202)
        .await;
    let s = h.wait(&id, "VERIFY_RESIZE").await;
    let host3 = host_of(&s);
    assert_ne!(host3, host2, "resize goes to another host");
    assert_eq!(s["flavor"]["original_name"], "m1.small");
    settle_claims(
        h,
        vec![(host2.clone(), id.clone()), (host3.clone(), id.clone())],
    )
    .await;
    h.action(ALICE, &id, json!({"confirmResize": null}), 204)
        .await;
    h.wait(&id, "ACTIVE").await;
    settle_claims(h, vec![(host3.clone(), id.clone())]).await;

    // resize -> revert: back to the source with the old flavor; destination freed.
    h.action(ALICE, &id, json!({"resize": {"flavorRef": "3"}}), 202)
        .await;
    let s = h.wait(&id, "VERIFY_RESIZE").await;
    assert_eq!(s["flavor"]["original_name"], "m1.medium");
    h.action(ALICE, &id, json!({"revertResize": null}), 202)
        .await;
    let s = h.wait(&id, "ACTIVE").await;
    assert_eq!(host_of(&s), host3);
    assert_eq!(s["flavor"]["original_name"], "m1.small");
    settle_claims(h, vec![(host3.clone(), id.clone())]).await;

    // cold migrate (admin) -> confirm
    h.action(ALICE, &id, json!({"migrate": null}), 403).await;
    h.action(ADMIN, &id, json!({"migrate": null}), 202).await;
    let s = h.wait(&id, "VERIFY_RESIZE").await;
    let host4 = host_of(&s);
    assert_ne!(host4, host3);
    h.action(ALICE, &id, json!({"confirmResize": null}), 204)
        .await;
    h.wait(&id, "ACTIVE").await;
    settle_claims(h, vec![(host4.clone(), id.clone())]).await;

    // live migrate (admin, host chosen by the scheduler)
    h.action(
        ADMIN,
        &id,
        json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
        202,
    )
    .await;
    let s = h.wait(&id, "ACTIVE").await;
    let host5 = host_of(&s);
    assert_ne!(host5, host4);
    settle_claims(h, vec![(host5.clone(), id.clone())]).await;

    // lock: the owner is refused, admin is not; unlock.
    h.action(ALICE, &id, json!({"lock": null}), 202).await;
    let v = h.action(ALICE, &id, json!({"pause": null}), 409).await;
    assert!(
        v["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("locked"),
        "{v}"
    );
    h.action(ALICE, &id, json!({"unlock": null}), 202).await;

    // invalid state: Nova's message, nothing appended.
    let before = h.stack.engine.world().read().events_applied;
    let v = h.action(ALICE, &id, json!({"unpause": null}), 409).await;
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Cannot 'unpause' instance {id} while it is in vm_state active")
    );
    assert_eq!(h.stack.engine.world().read().events_applied, before);

    // delete -> gone, all claims released.
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&id, "GONE").await;
    settle_claims(h, vec![]).await;

    // history endpoint: oldest first, with request ids and actors.
    let (code, v) = h
        .req(
            ADMIN,
            M::GET,
            &format!("/../v1/instances/{id}/events"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let evs = v["events"].as_array().unwrap();
    assert_eq!(evs[0]["type"], "instance.build_requested");
    assert_eq!(evs.last().unwrap()["type"], "instance.deleted");
    assert!(evs.len() > 30, "{}", evs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_valid_host_goes_to_cell0_with_fault() {
    let h = Harness::start(|o| {
        o.hosts = 2;
        o.host_size = domain::host::Resources {
            vcpus: 1,
            ram_mb: 1024,
            disk_gb: 10,
        };
    })
    .await;
    let id = h.create(ALICE, "too-big", "5").await;
    let s = h.wait(&id, "ERROR").await;
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("No valid host"),
        "{s}"
    );
    let iid = domain::InstanceId::parse(&id).unwrap();
    let cell = h.stack.engine.world().read().instances()[&iid]
        .cell_subject
        .clone()
        .unwrap()
        .stream();
    assert_eq!(cell.as_str(), "cell0");
    settle_claims(&h, vec![]).await;
    // It can still be deleted.
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&id, "GONE").await;
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_failure_is_error_with_fault_and_frees_the_host() {
    let h = Harness::start(|o| {
        o.sim.fail_tasks = HashSet::from([TaskState::Spawning]);
    })
    .await;
    let id = h.create(ALICE, "doomed", "1").await;
    let s = h.wait(&id, "ERROR").await;
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("simulated failure"),
        "{s}"
    );
    settle_claims(&h, vec![]).await;
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_tasks_are_retried_then_resolved() {
    let h = Harness::start(|o| {
        o.sim.stall_tasks = HashSet::from([TaskState::Pausing, TaskState::Spawning]);
        o.config.task_timeout_secs = 1;
        o.config.max_attempts = 2;
        o.reconcile_every = Duration::from_millis(200);
    })
    .await;
    // A build that never answers ends in ERROR with a fault.
    let stuck = h.create(ALICE, "never-spawns", "1").await;
    let s = h.wait(&stuck, "ERROR").await;
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("Timed out"),
        "{s}"
    );
    h.stack.stop().await;

    // A pause that never answers: task cleared, still ACTIVE, fault recorded.
    let h = Harness::start(|o| {
        o.sim.stall_tasks = HashSet::from([TaskState::Pausing]);
        o.config.task_timeout_secs = 1;
        o.config.max_attempts = 2;
        o.reconcile_every = Duration::from_millis(200);
    })
    .await;
    let id = h.create(ALICE, "pause-lost", "1").await;
    h.wait(&id, "ACTIVE").await;
    h.action(ALICE, &id, json!({"pause": null}), 202).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = h.wait(&id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-STS:task_state"], serde_json::Value::Null);
    let iid = domain::InstanceId::parse(&id).unwrap();
    let fault = h
        .stack
        .engine
        .world()
        .read()
        .instance(&iid)
        .unwrap()
        .fault
        .clone();
    assert!(fault.unwrap().message.contains("Timed out"));
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_continues_from_the_log_and_replay_matches() {
    let h = Harness::start(|_| {}).await;
    let a = h.create(ALICE, "a", "1").await;
    let b = h.create(ALICE, "b", "2").await;
    h.wait(&a, "ACTIVE").await;
    h.wait(&b, "ACTIVE").await;
    h.action(ALICE, &b, json!({"pause": null}), 202).await;
    h.wait(&b, "PAUSED").await;
    let before = h.show(&a).await;

    let h = h.restart(|_| {}).await;
    let after = h.show(&a).await;
    assert_eq!(before["status"], after["status"]);
    assert_eq!(
        before["OS-EXT-SRV-ATTR:host"],
        after["OS-EXT-SRV-ATTR:host"]
    );
    assert_eq!(h.show(&b).await["status"], "PAUSED");
    // The default flavors were not created twice.
    assert_eq!(
        h.stack
            .engine
            .log()
            .last_subject_seq(&engine::Engine::flavor_subject(
                &domain::FlavorId::new("1").unwrap()
            ))
            .await
            .unwrap(),
        1
    );
    h.action(ALICE, &b, json!({"unpause": null}), 202).await;
    h.wait(&b, "ACTIVE").await;
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{a}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&a, "GONE").await;

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
    assert!(report.events > 20);

    let log = eventlog::EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let steps = replay::history(log.as_ref(), domain::InstanceId::parse(&b).unwrap())
        .await
        .unwrap();
    let types: Vec<&str> = steps.iter().map(|s| s.event_type.as_str()).collect();
    assert_eq!(types[0], "instance.build_requested");
    assert!(types.contains(&"instance.placed"));
    assert_eq!(
        steps.last().unwrap().state.as_ref().unwrap().status(),
        "ACTIVE"
    );
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactors_are_idempotent_when_everything_is_redelivered() {
    let h = Harness::start(|_| {}).await;
    let ids = [
        h.create(ALICE, "x", "1").await,
        h.create(ALICE, "y", "1").await,
    ];
    for id in &ids {
        h.wait(id, "ACTIVE").await;
    }
    h.action(ALICE, &ids[0], json!({"pause": null}), 202).await;
    h.wait(&ids[0], "PAUSED").await;
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let positions = |dir: &std::path::Path| {
        let dir = dir.to_path_buf();
        async move {
            let log = eventlog::EmbeddedLog::open(&dir.join("log")).unwrap();
            let mut out = vec![];
            for s in stratus::stack::streams() {
                use eventlog::EventLog;
                out.push(log.last_stream_seq(&s).await.unwrap());
            }
            log.close();
            out
        }
    };
    let before = positions(dir.path()).await;
    // Forget every reactor checkpoint: all events are handled again.
    std::fs::remove_file(dir.path().join("checkpoints.redb")).unwrap();
    let stack = tests::Stack::start(tests::options(dir.path()))
        .await
        .unwrap();
    // Let every reactor re-handle the whole log (they reconcile at start, too).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let iid = domain::InstanceId::parse(&ids[0]).unwrap();
    assert_eq!(
        stack.engine.world().read().instance(&iid).unwrap().status(),
        "PAUSED"
    );
    stack.stop().await;
    // Host registration is idempotent, so nothing at all was appended.
    assert_eq!(positions(dir.path()).await, before);
}
