//! The `same_host` and `different_host` scheduler hints end to end over HTTP (issue 10,
//! item 6): the scheduler resolves the hinted servers to the hosts they run on and the
//! SameHostFilter / DifferentHostFilter keep or refuse those hosts; a `same_host` hint
//! naming only deleted servers leaves no host (NoValidHost, as Nova).

use std::time::{Duration, Instant};

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:p1";

/// POST /servers with `hints`; returns the id.
async fn create(h: &Harness, name: &str, hints: Value) -> String {
    let (code, v) = h
        .req(
            ALICE,
            M::POST,
            "/servers",
            Some(json!({
                "server": {"name": name, "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b",
                           "flavorRef": "1", "networks": "none"},
                "os:scheduler_hints": hints})),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    v["server"]["id"].as_str().unwrap().to_string()
}

/// Waits until the server is ACTIVE or ERROR; returns it.
async fn built(h: &Harness, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = h.show(id).await;
        if matches!(s["status"].as_str(), Some("ACTIVE" | "ERROR")) {
            return s;
        }
        assert!(Instant::now() < deadline, "{id} stuck: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn host_of(s: &Value) -> String {
    s["OS-EXT-SRV-ATTR:host"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_and_different_host_hints_follow_the_hinted_servers() {
    let h = Harness::start(|o| o.hosts = 3).await;
    let a = create(&h, "a", json!({})).await;
    let a_host = host_of(&built(&h, &a).await);
    assert!(!a_host.is_empty());
    // Several times each: with 3 hosts a filter that did nothing would soon show.
    for n in 0..4 {
        let near = create(&h, &format!("near{n}"), json!({"same_host": [a]})).await;
        let s = built(&h, &near).await;
        assert_eq!(s["status"], "ACTIVE", "{s}");
        assert_eq!(host_of(&s), a_host, "same_host");
        let far = create(&h, &format!("far{n}"), json!({"different_host": a})).await;
        let s = built(&h, &far).await;
        assert_eq!(s["status"], "ACTIVE", "{s}");
        assert_ne!(host_of(&s), a_host, "different_host");
    }
    // A deleted server runs nowhere: `same_host` on it leaves no host.
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{a}"), None)
        .await;
    assert_eq!(code, 204);
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.req(ALICE, M::GET, &format!("/servers/{a}"), None).await.0 != 404 {
        assert!(Instant::now() < deadline, "{a} not deleted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lost = create(&h, "lost", json!({"same_host": [a]})).await;
    let s = built(&h, &lost).await;
    assert_eq!(s["status"], "ERROR", "{s}");
    let fault = s["fault"]["message"].as_str().unwrap_or("");
    assert!(fault.contains("No valid host was found"), "{s}");
}
