//! Issue 3 faults with real processes on JetStream: (a) nats-server restarted in the
//! middle of lifecycle operations, (b) a compute agent SIGKILLed mid-operation,
//! (c) a scheduler killed between its host claim and the scheduled event.
//! (Fault (d), two schedulers racing, is in split.rs.)

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    action, call, create, free_port, show, sigterm, spawn, spawn_env, wait, wait_for, wait_task,
    JetStreamEnv,
};
use eventlog::{EventLog, JetStreamLog, JetStreamOptions, StreamName};
use serde_json::json;

async fn connect(url: &str) -> Arc<JetStreamLog> {
    JetStreamLog::connect(url, JetStreamOptions::default())
        .await
        .unwrap()
}

/// Every commit of every stream.
async fn all_commits(log: &JetStreamLog) -> Vec<eventlog::Commit> {
    let mut out = vec![];
    for s in log.streams().await.unwrap() {
        out.extend(log.read_stream(&s, 1, usize::MAX).await.unwrap());
    }
    out
}

/// Event types of an instance's history, in order.
async fn history(log: &JetStreamLog, id: &str) -> Vec<String> {
    let iid = domain::InstanceId::parse(id).unwrap();
    replay::history(log, iid)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.event_type)
        .collect()
}

fn count(h: &[String], t: &str) -> usize {
    h.iter().filter(|e| *e == t).count()
}

/// (a) nats-server is killed and restarted while clients run lifecycle cycles: every
/// request is answered with success (appends wait for the server to come back), every
/// accepted operation completes, the log holds each accepted operation exactly once,
/// and `stratus replay rebuild --nats` agrees with the live projections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_operations_loses_nothing() {
    let mut nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("serve");
    let port = free_port();
    let serve = spawn(
        &[
            "serve",
            "--nats",
            &url,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--hosts",
            "4",
            "--sim-delay-ms",
            "30",
        ],
        &data,
    );
    let http = reqwest::Client::new();
    let done = Arc::new(AtomicBool::new(false));
    let cycles: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut workers = vec![];
    for w in 0..8 {
        let (http, done, cycles) = (http.clone(), done.clone(), cycles.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                let id = create(&http, port, &format!("w{w}-{n}")).await;
                wait_for(&http, port, &id, "ACTIVE", Duration::from_secs(60)).await;
                action(&http, port, &id, json!({"pause": null})).await;
                wait_for(&http, port, &id, "PAUSED", Duration::from_secs(60)).await;
                action(&http, port, &id, json!({"unpause": null})).await;
                wait_for(&http, port, &id, "ACTIVE", Duration::from_secs(60)).await;
                let (code, v) = call(
                    &http,
                    port,
                    reqwest::Method::DELETE,
                    &format!("/servers/{id}"),
                    None,
                )
                .await;
                assert_eq!(code, 204, "delete {id}: {v}");
                wait_for(&http, port, &id, "GONE", Duration::from_secs(60)).await;
                cycles.lock().unwrap().push(id);
                n += 1;
            }
        }));
    }
    // Let the load run, then take the server away for 2 s in the middle of it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = cycles.lock().unwrap().len();
    let _nats = tokio::task::spawn_blocking(move || {
        nats.stop();
        std::thread::sleep(Duration::from_secs(2));
        nats.restart().expect("restart nats-server");
        nats
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("a client saw a failure");
    }
    let ids = cycles.lock().unwrap().clone();
    eprintln!(
        "{} cycles, {before} finished before the NATS restart",
        ids.len()
    );
    assert!(before > 0, "no cycle finished before the restart");
    assert!(
        ids.len() > before,
        "no cycle finished after the restart ({before} before)"
    );
    sigterm(serve);

    // Each accepted operation is in the log exactly once; no commit is duplicated.
    let log = connect(&url).await;
    let commits = all_commits(&log).await;
    let mut dedupe = HashSet::new();
    let mut event_ids = HashSet::new();
    for c in &commits {
        assert!(
            c.dedupe_id.is_empty() || dedupe.insert((c.subject.clone(), c.dedupe_id.clone())),
            "dedupe id {} written twice on {}",
            c.dedupe_id,
            c.subject
        );
        for e in &c.events {
            assert!(event_ids.insert(e.event_id), "event {} twice", e.event_id);
        }
    }
    for id in &ids {
        let h = history(&log, id).await;
        for (t, n) in [
            ("instance.build_requested", 1),
            ("instance.mapped", 1),
            ("instance.placed", 1),
            ("instance.spawned", 1),
            ("instance.deleted", 1),
        ] {
            assert_eq!(count(&h, t), n, "{id}: {t} in {h:?}");
        }
        // pause, unpause, delete: three tasks started; pause and unpause completed.
        assert_eq!(count(&h, "instance.task_started"), 3, "{id}: {h:?}");
        assert_eq!(count(&h, "instance.action_completed"), 2, "{id}: {h:?}");
    }
    // The stored projections equal a fold of the log.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(["replay", "rebuild", "--nats", &url, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("MATCH"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    log.close();
}

/// (b) A compute agent SIGKILLed in the middle of a spawn and of a stop: once it is
/// back, both operations complete; each is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_killed_mid_operation_completes_after_restart() {
    let env = JetStreamEnv::with_api();
    let (url, port) = (env.url.clone(), env.port);
    let d = |n: &str| env.path(n);
    let _s = spawn(&["scheduler", "--nats", &url], &d("s"));
    let compute_args = [
        "compute",
        "--nats",
        &url,
        "--host",
        "slow",
        "--sim-delay-ms",
        "1500",
    ];
    let c = spawn(&compute_args, &d("c"));
    let http = reqwest::Client::new();
    let id = create(&http, port, "victim").await;
    wait_task(&http, port, &id, "spawning").await;
    c.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = show(&http, port, &id).await;
    assert_eq!(v["server"]["OS-EXT-STS:task_state"], "spawning", "{v}");
    let c = spawn(&compute_args, &d("c"));
    wait(&http, port, &id, "ACTIVE").await;

    action(&http, port, &id, json!({"os-stop": null})).await;
    wait_task(&http, port, &id, "powering-off").await;
    c.kill9();
    let c = spawn(&compute_args, &d("c"));
    let s = wait(&http, port, &id, "SHUTOFF").await;
    assert_eq!(s["OS-EXT-STS:power_state"], 4, "{s}");
    sigterm(c);

    let log = connect(&url).await;
    let h = history(&log, &id).await;
    assert_eq!(count(&h, "instance.spawned"), 1, "{h:?}");
    assert_eq!(count(&h, "instance.action_completed"), 1, "{h:?}");
    assert_eq!(count(&h, "instance.task_failed"), 0, "{h:?}");
    log.close();
}

/// (b') A compute agent that never comes back: the reconciler retries the operation,
/// then the instance ends in ERROR with a fault (never stuck in a task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_gone_for_good_ends_in_error_with_fault() {
    let env = JetStreamEnv::with_api();
    let (url, port) = (env.url.clone(), env.port);
    let d = |n: &str| env.path(n);
    let _s = spawn(
        &["scheduler", "--nats", &url, "--task-timeout", "1"],
        &d("s"),
    );
    let c = spawn(
        &[
            "compute",
            "--nats",
            &url,
            "--host",
            "doomed",
            "--sim-delay-ms",
            "60000",
        ],
        &d("c"),
    );
    let http = reqwest::Client::new();
    let id = create(&http, port, "orphan").await;
    wait_task(&http, port, &id, "spawning").await;
    c.kill9();
    let s = wait_for(&http, port, &id, "ERROR", Duration::from_secs(60)).await;
    assert!(
        s["fault"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{s}"
    );
}

/// Host usage per host name, folding the cell stream.
async fn host_usage(log: &JetStreamLog) -> BTreeMap<String, (u64, usize)> {
    let cell = StreamName::new("cell1").unwrap();
    let commits = log.read_stream(&cell, 1, usize::MAX).await.unwrap();
    let mut views = projections::Views::default();
    let mut touched = projections::Touched::default();
    for c in &commits {
        views.apply(c, &mut touched);
    }
    views
        .hosts()
        .values()
        .map(|r| {
            (
                r.state.spec.name.to_string(),
                (r.state.used.ram_mb, r.state.allocations.len()),
            )
        })
        .collect()
}

/// (c) A scheduler dies right after committing a host claim, before the instance is
/// mapped and placed. Another scheduler (the restarted one) schedules the build, and the
/// stranded claim is released by placement's reconciliation: the host ends up holding
/// exactly the instance's one allocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_killed_between_claim_and_scheduled() {
    let env = JetStreamEnv::with_api();
    let (url, port) = (env.url.clone(), env.port);
    let d = |n: &str| env.path(n);
    let mut doomed = spawn_env(
        &["scheduler", "--nats", &url],
        &d("s"),
        &[("STRATUS_FAILPOINTS", "scheduler-after-claim")],
    );
    let _c = spawn(&["compute", "--nats", &url, "--host", "only"], &d("c"));
    let http = reqwest::Client::new();
    let id = create(&http, port, "stranded").await;
    assert!(
        doomed.wait_exit(Duration::from_secs(20)),
        "the scheduler did not reach its failpoint"
    );
    let log = connect(&url).await;
    // The claim is committed; the build is not scheduled.
    let usage = host_usage(&log).await;
    assert_eq!(usage.get("only"), Some(&(512, 1)), "{usage:?}");
    let h = history(&log, &id).await;
    assert_eq!(count(&h, "instance.mapped"), 0, "{h:?}");
    let (_, v) = show(&http, port, &id).await;
    assert_eq!(v["server"]["status"], "BUILD", "{v}");

    // The scheduler comes back (same data dir, no failpoint).
    let s = spawn(&["scheduler", "--nats", &url], &d("s"));
    wait(&http, port, &id, "ACTIVE").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let usage = host_usage(&log).await;
        if usage.get("only") == Some(&(512, 1)) && {
            let h = history(&log, &id).await;
            count(&h, "instance.placed") == 1
        } {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stranded claim never released: {usage:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two claims were made for the instance, one released.
    let claims: Vec<String> = all_commits(&log)
        .await
        .iter()
        .filter(|c| c.subject.kind() == Some(eventlog::SubjectKind::Host))
        .flat_map(|c| c.events.iter().map(|e| e.event_type.clone()))
        .filter(|t| t != "host.registered")
        .collect();
    assert_eq!(
        claims,
        vec!["host.claimed", "host.claimed", "host.released"],
        "{claims:?}"
    );
    sigterm(s);
    log.close();
}

/// A host whose compute agent stopped beating is down after `--service-down-time`: the
/// scheduler never chooses it (else those builds would hang in spawning until the task
/// timeout). Its agent back, it is chosen again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_hosts_are_never_scheduled() {
    let env = JetStreamEnv::with_api();
    let (url, port) = (env.url.clone(), env.port);
    let d = |n: &str| env.path(n);
    let _s = spawn(
        &["scheduler", "--nats", &url, "--service-down-time", "2"],
        &d("s"),
    );
    let agent = |host: &'static str| {
        spawn(
            &[
                "compute",
                "--nats",
                &url,
                "--host",
                host,
                "--report-interval",
                "1",
            ],
            &d(host),
        )
    };
    let _alive = agent("alive");
    let dead = agent("dead");
    let http = reqwest::Client::new();
    dead.kill9();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(create(&http, port, &format!("b{i}")).await);
    }
    for id in &ids {
        wait_for(&http, port, id, "ACTIVE", Duration::from_secs(15)).await;
    }
    let log = connect(&url).await;
    let usage = host_usage(&log).await;
    assert_eq!(usage.get("dead").map(|u| u.1), Some(0), "{usage:?}");
    assert_eq!(usage.get("alive").map(|u| u.1), Some(6), "{usage:?}");

    // Back up: the weigher prefers the empty host again.
    let _dead = agent("dead");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let id = create(&http, port, "back").await;
    wait(&http, port, &id, "ACTIVE").await;
    let usage = host_usage(&log).await;
    assert_eq!(usage.get("dead").map(|u| u.1), Some(1), "{usage:?}");
    log.close();
}
