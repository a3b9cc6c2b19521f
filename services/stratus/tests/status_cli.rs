//! `GET /v1/status` and `stratus status` against a real `stratus serve`: admin only,
//! every reactor (one per stream) and background task listed with its lag, printed one
//! line per task or as the raw document.

mod common;

use std::time::{Duration, Instant};

use common::{create, free_port, run, sigterm, spawn, wait};
use serde_json::Value;

const ADMIN: &str = "root:admin:admin";

async fn get_status(http: &reqwest::Client, port: u16, token: &str) -> (u16, Value) {
    let r = http
        .get(format!("http://127.0.0.1:{port}/v1/status"))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_for_admins_and_lists_every_task_with_its_lag() {
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
    // Some work, so that reactors have commits to pass.
    let id = create(&http, port, "s1").await;
    wait(&http, port, &id, "ACTIVE").await;

    let (code, body) = get_status(&http, port, "alice:demo").await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["forbidden"]["message"],
        "Policy doesn't allow stratus:status to be performed."
    );

    // Every reactor on every stream, and every periodic task; reactors catch up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let tasks = loop {
        let (code, body) = get_status(&http, port, ADMIN).await;
        assert_eq!(code, 200, "{body}");
        let tasks = body["tasks"].as_array().unwrap().clone();
        let notifier = body["notifier"]["streams"].as_array().unwrap().clone();
        let caught_up = tasks
            .iter()
            .filter(|t| t["kind"] == "reactor")
            .chain(&notifier)
            .all(|t| t["lag"] == 0);
        if caught_up {
            break tasks;
        }
        assert!(
            Instant::now() < deadline,
            "reactors never caught up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The notifier (this process runs it): every cell stream, caught up, alive.
    let (_, body) = get_status(&http, port, ADMIN).await;
    let notifier = body["notifier"].clone();
    let streams = notifier["streams"].as_array().unwrap().clone();
    let names_of: Vec<&str> = streams
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    assert_eq!(names_of, ["cell0", "cell1"], "{notifier}");
    let cell1n = &streams[1];
    assert_eq!(cell1n["position"], cell1n["head"], "{notifier}");
    assert!(cell1n["head"].as_u64().unwrap() > 0, "{notifier}");
    // create.start and create.end at least.
    assert!(cell1n["written"].as_u64().unwrap() >= 2, "{notifier}");
    assert!(notifier["written"].as_u64().unwrap() >= cell1n["written"].as_u64().unwrap());
    assert_eq!(
        (cell1n["errors"].as_u64(), cell1n["stopped"].as_bool()),
        (Some(0), Some(false))
    );
    assert!(
        cell1n["last_write"].as_str().unwrap().ends_with('Z'),
        "{notifier}"
    );
    let names: Vec<String> = tasks
        .iter()
        .map(|t| match t["stream"].as_str() {
            Some(s) => format!("{}@{s}", t["name"].as_str().unwrap()),
            None => t["name"].as_str().unwrap().to_string(),
        })
        .collect();
    for want in [
        "scheduler@api",
        "scheduler@cell0",
        "scheduler@cell1",
        "placement@api",
        "placement@cell0",
        "placement@cell1",
        "compute@cell1",
        "reconciler",
        "liveness",
        "heartbeats",
        "cell-probe",
        "upload-recovery",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let cell1 = tasks
        .iter()
        .find(|t| t["name"] == "compute" && t["stream"] == "cell1")
        .unwrap();
    assert!(cell1["head"].as_u64().unwrap() > 0, "{cell1}");
    assert_eq!(cell1["position"], cell1["head"], "{cell1}");
    assert!(cell1["runs"].as_u64().unwrap() > 0, "{cell1}");
    assert!(
        cell1["last_run"].as_str().unwrap().ends_with('Z'),
        "{cell1}"
    );
    let reconciler = tasks.iter().find(|t| t["name"] == "reconciler").unwrap();
    assert_eq!(reconciler["kind"], "periodic");
    assert_eq!(reconciler["every_ms"], 1000);
    assert_eq!(reconciler["lag"], Value::Null);

    // The CLI: one line per task under a header, or the raw document.
    let url = format!("http://127.0.0.1:{port}");
    let out = run(&["status", "--url", &url, "--token", ADMIN]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TASK") && lines[0].contains("LAG"),
        "{text}"
    );
    assert_eq!(lines.len(), tasks.len() + streams.len() + 1, "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("notifier@cell1")),
        "{text}"
    );
    for n in &names {
        assert!(
            lines.iter().any(|l| l.split_whitespace().next() == Some(n)),
            "{n} not printed:\n{text}"
        );
    }
    let out = run(&["status", "--url", &url, "--token", ADMIN, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["tasks"].as_array().unwrap().len(), tasks.len());

    // A member is refused with a message, not a crash.
    let out = run(&["status", "--url", &url, "--token", "alice:demo"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("admins only"), "{err}");
    sigterm(serve);
}
