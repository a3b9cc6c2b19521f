//! `stratus replay state` and `stratus replay export` on both backends: the embedded
//! data directory of a stopped `stratus serve`, and JetStream (`--nats`, a real
//! nats-server) while the API runs. The CLI answers what the API answered: the state at
//! each instant and the project's events.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{action, create, free_port, run, sigterm, spawn, JetStreamEnv};
use serde_json::Value;

fn now() -> String {
    replay::audit::format_time(domain::Timestamp(eventlog::now_micros()))
}

/// Creates a server and locks it, with instants before, between and after.
/// Returns (id, [before, created, locked]).
/// With `settle`, the build is waited for first (a lock in the middle of a build
/// transition is a 409 `not ready`).
async fn exercise(http: &reqwest::Client, port: u16, settle: bool) -> (String, [String; 3]) {
    let before = now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let id = create(http, port, "audited").await;
    if settle {
        common::wait(http, port, &id, "ACTIVE").await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let created = now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    action(http, port, &id, serde_json::json!({"lock": null})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let locked = now();
    (id, [before, created, locked])
}

/// Alice's (project `demo`) events through the API, every page.
async fn api_events(http: &reqwest::Client, port: u16) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let v: Value = http
            .get(format!(
                "http://127.0.0.1:{port}/v1/events?limit=1000&cursor={cursor}"
            ))
            .header("X-Auth-Token", "alice:demo")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in v["events"].as_array().unwrap() {
            assert!(out.insert(e["event_id"].as_str().unwrap().to_string()));
        }
        cursor = v["next"].as_str().unwrap().to_string();
        if v["more"] == false {
            return out;
        }
    }
}

/// Runs the CLI checks with `backend` (`--data-dir DIR` or `--nats URL`).
fn check_cli(backend: &[&str], id: &str, times: &[String; 3], want: &BTreeSet<String>) {
    let state = |at: &str| {
        let mut args = vec!["replay", "state", id, "--at", at];
        args.extend(backend);
        run(&args)
    };
    let out = state(&times[0]);
    assert!(!out.status.success(), "state before the server existed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not exist then"));
    for (at, locked) in [(&times[1], false), (&times[2], true)] {
        let out = state(at);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["state"]["locked"], locked, "{at}: {v}");
        assert_eq!(v["state"]["project_id"], "demo");
        assert_eq!(v["state"]["name"], "audited");
        // The same instant by log position.
        let pos = v["last_event"]["position"].as_str().unwrap().to_string();
        let again = state(&pos);
        assert!(again.status.success());
        let w: Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(w["state"], v["state"]);
    }
    let out = state("not-a-time");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));

    // Export: JSON lines; the project's events are exactly what the API showed Alice.
    let export = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["replay", "export"];
        args.extend(backend);
        args.extend(extra);
        let out = run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = export(&[]);
    assert!(all.iter().any(|e| e["type"] == "flavor.created"));
    let demo = export(&["--project", "demo"]);
    let ids: BTreeSet<String> = demo
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), demo.len(), "duplicates in the export");
    assert_eq!(&ids, want, "export --project differs from the API");
    let locks = export(&["--type", "instance.locked", "--since", &times[1]]);
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["actor"]["user"], "alice");
    assert!(locks[0]["subject"].as_str().unwrap().ends_with(id));
    assert!(export(&["--until", &times[0], "--type", "instance.*"]).is_empty());
    let window = export(&[
        "--since",
        &times[0],
        "--until",
        &times[1],
        "--project",
        "demo",
    ]);
    assert!(window
        .iter()
        .any(|e| e["type"] == "instance.build_requested"));
    assert!(window.iter().all(|e| e["type"] != "instance.locked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_state_and_export_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let serve = spawn(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--hosts",
            "2",
        ],
        dir.path(),
    );
    let http = reqwest::Client::new();
    let (id, times) = exercise(&http, port, true).await;
    let want = api_events(&http, port).await;
    sigterm(serve);
    let d = dir.path().to_str().unwrap();
    check_cli(&["--data-dir", d], &id, &times, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_state_and_export_on_jetstream() {
    let env = JetStreamEnv::with_api();
    let http = reqwest::Client::new();
    // (an API process alone: the server stays in BUILD, nothing moves under the lock)
    let (id, times) = exercise(&http, env.port, false).await;
    let want = api_events(&http, env.port).await;
    check_cli(&["--nats", &env.url], &id, &times, &want);
}
