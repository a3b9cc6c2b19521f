//! The identity API over real loopback HTTP, shared by the test binaries: an embedded
//! log in a tempdir, the projector, the identity bootstrap and the identity router on
//! 127.0.0.1:0, with an admin token.
#![allow(dead_code)]

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

pub const PASSWORD: &str = "test-admin-secret";

pub struct Keystone {
    pub log: Arc<dyn EventLog>,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
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
    pub fn assert_error(&self, status: u16) {
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

pub async fn start() -> Keystone {
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
            cacert: None,
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
            network: "http://127.0.0.1:9696".into(),
            region: "RegionOne".into(),
        }),
        compliance: Arc::new(identity::SecurityCompliance::default()),
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
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send_rb(rb).await
    }

    pub async fn send_rb(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.unwrap();
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            bytes: r.bytes().await.unwrap().to_vec(),
        }
    }

    pub async fn position(&self) -> u64 {
        self.log.last_stream_seq(&StreamName::api()).await.unwrap()
    }
}
