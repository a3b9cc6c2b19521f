//! The identity API over real loopback HTTP: an embedded log in a tempdir, the
//! projector, the identity bootstrap and the identity router on 127.0.0.1:0. Covers
//! the router against its route table and regressions found by schemathesis
//! (requests axum cannot read must get Keystone-shaped 4xx answers and change
//! nothing).

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use eventlog::{EmbeddedLog, EventLog, StreamName};
use identity::{Catalog, IdentityApi, TokenKey, Tokens};
use projections::projector::Projector;
use projections::World;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::watch;

const PASSWORD: &str = "test-admin-secret";

struct Keystone {
    log: Arc<dyn EventLog>,
    base: String,
    http: reqwest::Client,
    token: String,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|_| {
            panic!(
                "non-JSON body ({}, {:?}): {}",
                self.status,
                self.headers.get("content-type"),
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    /// Asserts a Keystone-shaped JSON error with `status`.
    fn assert_error(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{}",
            self.text()
        );
        let e = &self.json()["error"];
        assert_eq!(e["code"], json!(status), "{}", self.text());
        assert!(e["title"].is_string() && e["message"].is_string(), "{e}");
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

async fn start() -> Keystone {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let world = Arc::new(World::default());
    let projector = Projector::new(log.clone(), world.clone(), None);
    let (tx, rx) = watch::channel(false);
    log.ensure_stream(&StreamName::api()).await.unwrap();
    projector.follow(StreamName::api(), rx);
    let report = identity::bootstrap::bootstrap(
        log.as_ref(),
        &identity::bootstrap::Options {
            data_dir: dir.path().to_path_buf(),
            admin_password: Some(PASSWORD.into()),
            auth_url: "http://127.0.0.1:5000/v3".into(),
        },
    )
    .await
    .unwrap();
    assert!(
        world
            .wait_for(
                &StreamName::api(),
                report.position.unwrap(),
                Duration::from_secs(10)
            )
            .await
    );
    let app = identity::router(IdentityApi {
        log: log.clone(),
        world,
        tokens: Arc::new(Tokens::new(TokenKey::generate(), 3600)),
        catalog: Arc::new(Catalog {
            identity: "http://127.0.0.1:5000".into(),
            compute: "http://127.0.0.1:8774/v2.1".into(),
            image: "http://127.0.0.1:9292".into(),
            region: "RegionOne".into(),
        }),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut k = Keystone {
        log,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        token: String::new(),
        _dir: dir,
        _stop: tx,
    };
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
    let r = k.send(Method::POST, "/v3/auth/tokens", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    k.token = r.headers["x-subject-token"].to_str().unwrap().to_string();
    k
}

impl Keystone {
    /// Sends a request with the admin token (`path` is sent as is: no re-encoding).
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send_rb(rb).await
    }

    async fn send_rb(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.unwrap();
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            bytes: r.bytes().await.unwrap().to_vec(),
        }
    }

    async fn position(&self) -> u64 {
        self.log.last_stream_seq(&StreamName::api()).await.unwrap()
    }
}

/// A concrete path for a template (every parameter replaced by `x`).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_of_the_table_is_served_and_nothing_else() {
    let k = start().await;
    let table = identity::route_table();
    let mut seen = std::collections::BTreeSet::new();
    for (method, path) in &table {
        assert!(
            seen.insert((method.to_string(), *path)),
            "{method} {path} is listed twice"
        );
        let r = k.send(method.clone(), &concrete(path), None).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if r.status == StatusCode::NOT_FOUND && *method != Method::HEAD {
            assert_ne!(
                r.json()["error"]["message"],
                "The resource could not be found.",
                "{method} {path} reached the fallback"
            );
        }
    }
    // A method the table does not list for a listed path is a Keystone-shaped 405.
    for (_, path) in &table {
        for other in [Method::DELETE, Method::PUT, Method::PATCH, Method::POST] {
            if table.iter().any(|(m, p)| *m == other && p == path) {
                continue;
            }
            let r = k.send(other.clone(), &concrete(path), None).await;
            r.assert_error(405);
        }
    }
}

#[tokio::test]
async fn unreadable_requests_get_keystone_shaped_4xx_and_append_nothing() {
    let k = start().await;
    let before = k.position().await;
    // Invalid UTF-8 in a percent-encoded path parameter (axum: text/plain 400).
    for path in [
        "/v3/projects/%FF",
        "/v3/users/%FF%FE",
        "/v3/roles/%C3",
        "/v3/domains/%FF",
        "/v3/projects/%FF/users/x/roles",
        "/v3/projects/x/users/x/roles/%FF",
    ] {
        let r = k.send(Method::GET, path, None).await;
        r.assert_error(400);
    }
    let r = k
        .send(Method::PUT, "/v3/projects/x/users/%FF/roles/x", None)
        .await;
    r.assert_error(400);
    let r = k
        .send(
            Method::PATCH,
            "/v3/users/%FF",
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    r.assert_error(400);
    // A repeated query parameter (axum: text/plain 400).
    for path in [
        "/v3/projects?name=a&name=b",
        "/v3/users?name=a&name=b",
        "/v3/roles?name=a&name=b",
        "/v3/domains?name=a&name=b",
    ] {
        let r = k.send(Method::GET, path, None).await;
        r.assert_error(400);
    }
    // A body over the limit (axum: text/plain 413).
    let big = "x".repeat(identity::http::BODY_LIMIT + 1);
    for path in ["/v3/projects", "/v3/users", "/v3/auth/tokens"] {
        let r = k
            .send(
                Method::POST,
                path,
                Some(json!({"project": {"name": "big", "description": big}})),
            )
            .await;
        r.assert_error(413);
    }
    assert_eq!(k.position().await, before, "a refused request appended");
}
