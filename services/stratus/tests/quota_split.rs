//! Quotas across real processes on JetStream (issue 10, item 1): two API processes
//! admitting concurrent creates of one project admit exactly what fits, and an API
//! process killed between its quota reservation and the build request leaves a
//! reservation that the quota reactor (scheduler role) gives back; `stratus replay
//! quota` then proves the ledger equals the live servers.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, run, spawn, spawn_env};
use eventlog::{EventLog, JetStreamLog, JetStreamOptions};
use serde_json::json;

const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

fn api_args<'a>(url: &'a str, listen: &'a str, instances: &'a str) -> Vec<&'a str> {
    vec![
        "api",
        "--nats",
        url,
        "--listen",
        listen,
        "--default-quota",
        instances,
        "--default-quota",
        "cores=-1",
        "--default-quota",
        "ram=-1",
    ]
}

async fn folded(url: &str) -> projections::Views {
    let log = JetStreamLog::connect(url, JetStreamOptions::default())
        .await
        .unwrap();
    let dynlog: Arc<dyn EventLog> = log.clone();
    let (v, _) = replay::fold(dynlog, &Default::default()).await.unwrap();
    log.close();
    v
}

async fn post(http: &reqwest::Client, port: u16, name: &str) -> Option<u16> {
    http.post(format!("http://127.0.0.1:{port}/v2.1/servers"))
        .header("X-Auth-Token", "alice:demo")
        .header("OpenStack-API-Version", "compute 2.96")
        .json(&json!({"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1", "networks": "none"}}))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_api_processes_admit_exactly_what_fits() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    let (l1, l2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let a1 = spawn(&api_args(&url, &l1, "instances=23"), &dir.path().join("a1"));
    let a2 = spawn(&api_args(&url, &l2, "instances=23"), &dir.path().join("a2"));
    let http = reqwest::Client::new();
    let n = 240;
    let mut tasks = Vec::new();
    for i in 0..n {
        let http = http.clone();
        let port = if i % 2 == 0 { p1 } else { p2 };
        tasks.push(tokio::spawn(async move {
            post(&http, port, &format!("c{i}")).await
        }));
    }
    let (mut ok, mut over) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Some(202) => ok += 1,
            Some(403) => over += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((ok, over), (23, n - 23));
    // The log agrees: 23 holdings, 23 build requests, never more at any position.
    let v = folded(&url).await;
    let ledger = &v.quotas().ledger("demo").unwrap().state;
    assert_eq!(ledger.holdings.len(), 23);
    assert_eq!(
        v.instances()
            .values()
            .filter(|r| r.state().is_some_and(|i| i.spec.project_id == "demo"))
            .count(),
        23
    );
    for p in [a1, a2] {
        common::sigterm(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_killed_between_reservation_and_build_request() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut doomed = spawn_env(
        &api_args(&url, &listen, "instances=10"),
        &dir.path().join("a"),
        &[("STRATUS_FAILPOINTS", "api-after-quota-reserve")],
    );
    let http = reqwest::Client::new();
    let answer = post(&http, port, "never").await;
    assert!(answer.is_none(), "the API answered {answer:?}");
    assert!(
        doomed.wait_exit(Duration::from_secs(20)),
        "the API did not reach its failpoint"
    );
    let v = folded(&url).await;
    assert_eq!(v.quotas().ledger("demo").unwrap().state.holdings.len(), 1);
    assert_eq!(v.instances().len(), 0, "no build request was appended");

    // The quota reactor runs with the scheduler; once the grace has passed, its
    // reconcile gives the reservation back.
    let _s = spawn(
        &["scheduler", "--nats", &url, "--quota-grace", "1"],
        &dir.path().join("s"),
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let v = folded(&url).await;
        if v.quotas().ledger("demo").unwrap().state.holdings.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reservation was never released"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = run(&["replay", "quota", "--nats", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("MATCH"), "{text}");
}
