//! Webhook delivery across a crash, with real processes on JetStream (issue 11, item
//! 4): the projector (which runs the notifier and the deliverer) is SIGKILLed while it
//! delivers to a slow receiver, then started again. Every notification arrives, in the
//! feed's order, duplicates at most the one in flight; only the projector delivers (two
//! API processes run too); any API process shows the delivery state.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{free_port, spawn, spawn_api, wait, IMAGE};
use serde_json::{json, Value};

const ADMIN: &str = "admin:admin";

type Got = Arc<Mutex<Vec<(u64, String)>>>;

/// Accepts after 20 ms (so a kill is likely to catch a request in flight), recording
/// (cursor, message id).
async fn hook(State(got): State<Got>, headers: HeaderMap, _body: Bytes) -> StatusCode {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    got.lock().unwrap().push((
        h("x-stratus-cursor").parse().unwrap(),
        h("x-stratus-message-id"),
    ));
    StatusCode::OK
}

async fn admin(
    http: &reqwest::Client,
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = http
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .header("X-Auth-Token", ADMIN);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// The feed's (cursor, message id), all of it.
async fn feed(http: &reqwest::Client, port: u16) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (code, v) = admin(
            http,
            port,
            reqwest::Method::GET,
            &format!("/v1/notifications?limit=1000&cursor={cursor}"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        for n in v["notifications"].as_array().unwrap() {
            out.push((
                n["cursor"].as_u64().unwrap(),
                n["notification"]["message_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ));
        }
        let next = v["next_cursor"].as_u64().unwrap();
        if next == cursor {
            return out;
        }
        cursor = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivery_survives_a_projector_crash() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let (p1, p2) = (free_port(), free_port());
    let projector = spawn(&["projector", "--nats", &url], &d("projector"));
    let sched = spawn(&["scheduler", "--nats", &url], &d("s"));
    let a1 = spawn_api(&url, p1, &d("a1"));
    let a2 = spawn_api(&url, p2, &d("a2"));
    let compute = spawn(
        &["compute", "--nats", &url, "--host", "hostA", "--hosts", "2"],
        &d("c"),
    );

    let got: Got = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let http = reqwest::Client::new();
    let (code, v) = admin(
        &http,
        p1,
        reqwest::Method::POST,
        "/v1/subscriptions",
        Some(json!({"url": hook_url, "event_types": ["instance"], "secret": "k"})),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let sub = v["subscription"]["id"].as_str().unwrap().to_string();

    let mut ids = vec![];
    for i in 0..6 {
        let (code, v) = common::call(
            &http,
            if i % 2 == 0 { p1 } else { p2 },
            reqwest::Method::POST,
            "/servers",
            Some(json!({"server": {"name": format!("s{i}"), "imageRef": IMAGE, "flavorRef": "1", "networks": "none"}})),
        )
        .await;
        assert_eq!(code, 202, "{v}");
        ids.push(v["server"]["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        wait(&http, p1, id, "ACTIVE").await;
    }
    // Kill the projector mid-delivery (some delivered, not all), then start it again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    projector.kill9();
    let at_kill = got.lock().unwrap().len();
    let projector = spawn(&["projector", "--nats", &url], &d("projector"));
    for id in &ids {
        let (code, _) = common::call(
            &http,
            p2,
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
        )
        .await;
        assert_eq!(code, 204);
    }
    for id in &ids {
        wait(&http, p1, id, "GONE").await;
    }

    // Everything, in order, duplicates at most the one in flight at the kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    let want = loop {
        let want = feed(&http, p2).await;
        let n = {
            let g = got.lock().unwrap();
            let mut seen = std::collections::HashSet::new();
            g.iter().filter(|(_, m)| seen.insert(m.clone())).count()
        };
        if n == want.len() && want.len() >= ids.len() * 4 {
            break want;
        }
        assert!(Instant::now() < deadline, "{n} of {} delivered", want.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let g = got.lock().unwrap().clone();
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<(u64, String)> = g
        .iter()
        .filter(|(_, m)| seen.insert(m.clone()))
        .cloned()
        .collect();
    assert_eq!(unique, want, "the feed, in order, nothing missing");
    let dups = g.len() - unique.len();
    assert!(dups <= 1, "{dups} duplicates (killed after {at_kill})");
    assert!(at_kill < want.len(), "the kill came after every delivery");
    eprintln!(
        "killed after {at_kill} of {} deliveries; {dups} duplicate(s)",
        want.len()
    );
    for w in g.windows(2) {
        assert!(w[1].0 >= w[0].0, "out of order: {w:?}");
    }
    // Any API process shows the delivery state (the JetStream stream).
    for port in [p1, p2] {
        let (code, v) = admin(
            &http,
            port,
            reqwest::Method::GET,
            &format!("/v1/subscriptions/{sub}"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let dl = &v["subscription"]["delivery"];
        assert_eq!(dl["cursor"].as_u64(), Some(want.last().unwrap().0), "{v}");
        assert_eq!(dl["delivered"].as_u64(), Some(unique.len() as u64), "{v}");
    }
    for p in [a1, a2, compute, sched, projector] {
        common::sigterm(p);
    }
}
