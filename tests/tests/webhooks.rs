//! Webhook delivery of the versioned notifications end to end (issue 11, item 4):
//! subscriptions through the real API (admin only, validated, secret never shown), a
//! real HTTP receiver (an axum server in the test) that checks the HMAC signature,
//! answers 500 a few times, goes down and comes back, and a restart of the stratus
//! process: every matching notification arrives, in the feed's order, with no gap, its
//! message id that of `/v1/notifications`, duplicates at most of the one in flight.
//! On both backends (JetStream on a real nats-server).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tests::Harness;

const ALICE: &str = "alice:proj-a";
const BOB: &str = "bob:proj-b";
const ADMIN: &str = "admin:admin";
const SECRET: &str = "correct-horse-battery-staple";

/// One request the receiver answered 2xx.
#[derive(Debug, Clone)]
struct Got {
    subscription: String,
    message_id: String,
    event_type: String,
    cursor: u64,
    body: Value,
}

/// The test's webhook receiver: records what it accepts, refuses `fail` requests first
/// with a 500, rejects a bad signature with a 401 (so a wrong signature never counts).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    fail: Arc<AtomicU32>,
    refused: Arc<AtomicU32>,
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if h("x-stratus-signature") != sign(SECRET, &body) {
        return StatusCode::UNAUTHORIZED;
    }
    if r.fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
        .is_ok()
    {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    assert_eq!(h("content-type"), "application/json");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        h("x-stratus-message-id"),
        body["message_id"].as_str().unwrap()
    );
    assert_eq!(
        h("x-stratus-event-type"),
        body["event_type"].as_str().unwrap()
    );
    r.got.lock().unwrap().push(Got {
        subscription: h("x-stratus-subscription"),
        message_id: h("x-stratus-message-id"),
        event_type: h("x-stratus-event-type"),
        cursor: h("x-stratus-cursor").parse().unwrap(),
        body,
    });
    StatusCode::OK
}

/// The receiver's server on a fixed port, which can go down (listener closed, every
/// connection dropped) and come back.
struct Server {
    addr: std::net::SocketAddr,
    receiver: Receiver,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(receiver: Receiver, addr: std::net::SocketAddr) -> Server {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(receiver.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            addr,
            receiver,
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    async fn up(&mut self) {
        let s = Server::start(self.receiver.clone(), self.addr).await;
        self.task = s.task;
    }

    fn got(&self, subscription: &str) -> Vec<Got> {
        self.receiver
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.subscription == subscription)
            .cloned()
            .collect()
    }
}

async fn call(
    h: &Harness,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = h
        .http
        .request(method, format!("http://{}{path}", h.stack.addr))
        .header("X-Auth-Token", token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn subscribe(h: &Harness, body: Value) -> String {
    let (code, v) = call(
        h,
        ADMIN,
        reqwest::Method::POST,
        "/v1/subscriptions",
        Some(body),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(v["subscription"].get("secret").is_none());
    v["subscription"]["id"].as_str().unwrap().to_string()
}

/// Every notification of the feed for `query` (admin).
async fn feed(h: &Harness, query: &str) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (code, v) = call(
            h,
            ADMIN,
            reqwest::Method::GET,
            &format!("/v1/notifications?limit=500&cursor={cursor}{query}"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        for n in v["notifications"].as_array().unwrap() {
            out.push((n["cursor"].as_u64().unwrap(), n["notification"].clone()));
        }
        let next = v["next_cursor"].as_u64().unwrap();
        if next == cursor {
            return out;
        }
        cursor = next;
    }
}

/// Waits until `sub` has received (deduplicated by message id, in first-arrival order)
/// exactly the feed's notifications for `query`, and checks order, cursors and bodies;
/// returns how many requests arrived in all (duplicates included).
async fn delivered_all(h: &Harness, srv: &Server, sub: &str, query: &str) -> usize {
    delivered_only(h, srv, sub, query, |_| true).await
}

/// [`delivered_all`] of the feed's notifications for `query` that `keep` keeps.
async fn delivered_only(
    h: &Harness,
    srv: &Server,
    sub: &str,
    query: &str,
    keep: fn(&Value) -> bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut want = feed(h, query).await;
        want.retain(|(_, n)| keep(n));
        let got = srv.got(sub);
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&Got> = got
            .iter()
            .filter(|g| seen.insert(g.message_id.clone()))
            .collect();
        if unique.len() == want.len() && !want.is_empty() {
            for (g, (cursor, n)) in unique.iter().zip(&want) {
                assert_eq!(&g.body, n, "the feed's notification, in order");
                assert_eq!(g.cursor, *cursor);
                assert_eq!(g.event_type, n["event_type"].as_str().unwrap());
            }
            // In order: a duplicate only ever repeats the one just before it.
            for w in got.windows(2) {
                assert!(w[1].cursor >= w[0].cursor, "out of order: {w:?}");
            }
            return got.len();
        }
        assert!(
            unique.len() < want.len(),
            "{sub} got more than the feed: {} > {}",
            unique.len(),
            want.len()
        );
        assert!(
            Instant::now() < deadline,
            "{sub}: {} of {} delivered",
            unique.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn show(h: &Harness, sub: &str) -> Value {
    let (code, v) = call(
        h,
        ADMIN,
        reqwest::Method::GET,
        &format!("/v1/subscriptions/{sub}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v["subscription"].clone()
}

async fn lifecycle(h: &Harness, token: &str, name: &str) -> String {
    let id = h.create(token, name, "1").await;
    h.wait(&id, "ACTIVE").await;
    h.action(token, &id, json!({"pause": null}), 202).await;
    h.wait(&id, "PAUSED").await;
    h.action(token, &id, json!({"unpause": null}), 202).await;
    h.wait(&id, "ACTIVE").await;
    id
}

async fn delete(h: &Harness, token: &str, id: &str) {
    let (code, v) = h
        .req(
            token,
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(code, 204, "{v}");
    h.wait(id, "GONE").await;
}

fn fast(o: &mut tests::StackOptions) {
    o.webhook_backoff = notifier::webhook::Backoff {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(400),
    };
}

async fn scenario(nats: Option<String>) {
    let n = nats.clone();
    let h = Harness::start(move |o| {
        fast(o);
        o.nats = n;
    })
    .await;
    let mut srv = Server::start(Receiver::default(), "127.0.0.1:0".parse().unwrap()).await;

    // Admin only; bad bodies are 400 and append nothing.
    let good = json!({"url": srv.url(), "event_types": ["instance"], "project": "proj-a", "secret": SECRET});
    for token in [ALICE, BOB] {
        let (code, _) = call(
            &h,
            token,
            reqwest::Method::POST,
            "/v1/subscriptions",
            Some(good.clone()),
        )
        .await;
        assert_eq!(code, 403);
        let (code, _) = call(&h, token, reqwest::Method::GET, "/v1/subscriptions", None).await;
        assert_eq!(code, 403);
    }
    for bad in [
        json!({"event_types": ["instance"], "secret": SECRET}),
        json!({"url": "ftp://127.0.0.1/x", "event_types": ["instance"], "secret": SECRET}),
        json!({"url": "not a url", "event_types": ["instance"], "secret": SECRET}),
        json!({"url": srv.url(), "event_types": ["instance"], "secret": ""}),
        json!({"url": srv.url(), "event_types": [], "secret": SECRET}),
        json!({"url": srv.url(), "event_types": ["instance"], "secret": SECRET, "colour": "red"}),
        json!({"url": srv.url(), "event_types": "instance", "secret": SECRET}),
    ] {
        let (code, v) = call(
            &h,
            ADMIN,
            reqwest::Method::POST,
            "/v1/subscriptions",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(code, 400, "{bad}: {v}");
        assert_eq!(v["badRequest"]["code"], 400, "{v}");
    }
    let (_, v) = call(&h, ADMIN, reqwest::Method::GET, "/v1/subscriptions", None).await;
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 0, "{v}");

    // proj-a's instance notifications; every project's pauses; proj-b's.
    let a = subscribe(&h, good.clone()).await;
    let pauses = subscribe(
        &h,
        json!({"url": srv.url(), "event_types": ["instance.pause"], "secret": SECRET}),
    )
    .await;
    let b = subscribe(
        &h,
        json!({"url": srv.url(), "event_types": ["instance.create", "instance.delete"], "project": "proj-b", "secret": SECRET}),
    )
    .await;
    let (_, v) = call(&h, ADMIN, reqwest::Method::GET, "/v1/subscriptions", None).await;
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 3, "{v}");

    // The receiver refuses the first requests: retried, nothing skipped.
    srv.receiver.fail.store(4, Ordering::SeqCst);
    let web1 = lifecycle(&h, ALICE, "web-1").await;
    let bob1 = lifecycle(&h, BOB, "bob-1").await;
    delete(&h, BOB, &bob1).await;
    let n = delivered_all(&h, &srv, &a, "&project=proj-a").await;
    assert_eq!(srv.receiver.refused.load(Ordering::SeqCst), 4);
    assert_eq!(n, srv.got(&a).len());
    delivered_all(&h, &srv, &pauses, "&event_type=instance.pause").await;
    let got_b = delivered_only(&h, &srv, &b, "&project=proj-b", |n| {
        let t = n["event_type"].as_str().unwrap();
        t.starts_with("instance.create.") || t.starts_with("instance.delete.")
    })
    .await;
    assert_eq!(got_b, 4);
    // proj-b's subscription has create and delete only.
    let types: std::collections::BTreeSet<String> =
        srv.got(&b).iter().map(|g| g.event_type.clone()).collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        [
            "instance.create.end",
            "instance.create.start",
            "instance.delete.end",
            "instance.delete.start"
        ]
    );
    assert!(srv
        .got(&pauses)
        .iter()
        .any(|g| g.body["payload"]["nova_object.data"]["tenant_id"] == "proj-b"));

    // Delivery state: caught up, no attempt pending.
    let s = show(&h, &a).await;
    let d = &s["delivery"];
    assert_eq!(
        d["delivered"].as_u64().unwrap() as usize,
        srv.got(&a).len(),
        "{s}"
    );
    assert_eq!(d["attempts"], 0, "{s}");
    assert_eq!(d["last_status"], 200, "{s}");
    assert!(
        d["last_error"].is_null() && d["next_retry_at"].is_null(),
        "{s}"
    );
    assert_eq!(s["url"], srv.url());
    assert_eq!(s["project"], "proj-a");
    let mine = feed(&h, "&project=proj-a").await;
    // Caught up: past its own last one and the others' (not wanted, passed over).
    assert!(
        d["cursor"].as_u64().unwrap() >= mine.last().unwrap().0,
        "{s}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while show(&h, &a).await["delivery"]["cursor"] != d["feed_cursor"] {
        assert!(
            Instant::now() < deadline,
            "not caught up: {}",
            show(&h, &a).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The receiver is down for a while: retries with backoff, the state says why.
    srv.down().await;
    delete(&h, ALICE, &web1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = show(&h, &a).await["delivery"].clone();
        if d["attempts"].as_u64().unwrap_or(0) >= 3 {
            assert!(d["last_status"].is_null(), "{d}");
            assert!(
                d["last_error"].as_str().is_some_and(|e| !e.is_empty()),
                "{d}"
            );
            assert!(
                d["next_retry_at"].is_string() && d["in_flight"].is_u64(),
                "{d}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no retries: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    srv.up().await;
    delivered_all(&h, &srv, &a, "&project=proj-a").await;

    // A restart of the stratus process while a notification is being retried loses
    // nothing and repeats at most the one in flight.
    let before = srv.got(&a).len();
    srv.receiver.fail.store(1_000_000, Ordering::SeqCst);
    let web2 = h.create(ALICE, "web-2", "1").await;
    h.wait(&web2, "ACTIVE").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while show(&h, &a).await["delivery"]["attempts"]
        .as_u64()
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline, "no retries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = nats.clone();
    let h = h
        .restart(move |o| {
            fast(o);
            o.nats = n;
        })
        .await;
    assert!(show(&h, &a).await["delivery"]["attempts"].as_u64().unwrap() >= 2);
    srv.receiver.fail.store(0, Ordering::SeqCst);
    let web3 = h.create(ALICE, "web-3", "1").await;
    h.wait(&web3, "ACTIVE").await;
    let total = delivered_all(&h, &srv, &a, "&project=proj-a").await;
    let unique: std::collections::HashSet<String> =
        srv.got(&a).iter().map(|g| g.message_id.clone()).collect();
    assert!(
        total - unique.len() <= 1,
        "{} duplicates",
        total - unique.len()
    );
    assert!(total > before);

    // Delete: gone from the list, 404 after, deliveries stop.
    let (code, _) = call(
        &h,
        ADMIN,
        reqwest::Method::DELETE,
        &format!("/v1/subscriptions/{b}"),
        None,
    )
    .await;
    assert_eq!(code, 204);
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (code, v) = call(&h, ADMIN, method, &format!("/v1/subscriptions/{b}"), None).await;
        assert_eq!(code, 404, "{v}");
        assert_eq!(
            v["itemNotFound"]["message"],
            format!("Subscription {b} could not be found.")
        );
    }
    let (code, _) = call(
        &h,
        ADMIN,
        reqwest::Method::GET,
        "/v1/subscriptions/nope",
        None,
    )
    .await;
    assert_eq!(code, 404);
    let (_, v) = call(&h, ADMIN, reqwest::Method::GET, "/v1/subscriptions", None).await;
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 2, "{v}");
    // Give the deliverer its rescan, then a proj-b notification must not reach `b`.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let count_b = srv.got(&b).len();
    let bob2 = h.create(BOB, "bob-2", "1").await;
    h.wait(&bob2, "ACTIVE").await;
    delivered_all(&h, &srv, &a, "&project=proj-a").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(srv.got(&b).len(), count_b);

    // The log has the subscriptions, never their secret (`call` checks every answer).
    let (code, v) = call(
        &h,
        ADMIN,
        reqwest::Method::GET,
        "/v1/events?type=subscription.created",
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(3), "{v}");

    srv.down().await;
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_deliver_everything_in_order_signed_embedded() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_deliver_everything_in_order_signed_jetstream() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server starts");
    scenario(Some(nats.url())).await;
    drop(nats);
}

/// The receiver over TLS (Stratus's own listener, `stratus::httpd`), with a fresh
/// self-signed certificate for 127.0.0.1; returns the receiver, its https url, the
/// certificate's PEM, and the sender that stops it.
async fn tls_receiver(
    dir: &std::path::Path,
) -> (Receiver, String, String, tokio::sync::watch::Sender<bool>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let tls = stratus::httpd::Tls::from_pem_files(&cert, &key, None).unwrap();
    let receiver = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(stratus::httpd::serve(
        listener,
        app,
        Some(tls),
        Duration::from_secs(10),
        rx,
    ));
    (receiver, url, ck.cert.pem(), stop)
}

/// `https` receivers: verified against the system's roots plus `--webhook-ca`
/// (`StackOptions::webhook_roots`). A receiver whose certificate the operator trusts gets
/// everything, signed; one whose certificate nobody vouches for gets nothing, and the
/// subscription's delivery state says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_deliver_over_https_to_trusted_receivers_only() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, trusted_url, ca, stop1) = tls_receiver(&dir.path().join("t")).await;
    let (stranger, stranger_url, _, stop2) = tls_receiver(&dir.path().join("s")).await;
    let h = Harness::start(move |o| {
        fast(o);
        o.webhook_roots = ca.into_bytes();
    })
    .await;
    let good = subscribe(
        &h,
        json!({"url": trusted_url, "event_types": ["instance"], "secret": SECRET}),
    )
    .await;
    let bad = subscribe(
        &h,
        json!({"url": stranger_url, "event_types": ["instance"], "secret": SECRET}),
    )
    .await;
    let id = lifecycle(&h, ALICE, "tls").await;
    delete(&h, ALICE, &id).await;
    let srv = Server {
        addr: "127.0.0.1:1".parse().unwrap(),
        receiver: trusted,
        task: None,
    };
    delivered_all(&h, &srv, &good, "").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = show(&h, &bad).await;
        if st["delivery"]["last_error"].is_string() {
            break st;
        }
        assert!(Instant::now() < deadline, "never attempted: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(st["delivery"]["delivered"], 0, "{st}");
    let err = st["delivery"]["last_error"].as_str().unwrap();
    assert!(
        err.to_lowercase().contains("certificate"),
        "the failure names the certificate: {st}"
    );
    assert!(stranger.got.lock().unwrap().is_empty());
    h.stack.stop().await;
    let _ = (stop1.send(true), stop2.send(true));
}
