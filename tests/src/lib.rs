//! End-to-end test harness: a whole control plane in process (embedded log, reactors,
//! simulated hosts, API on a loopback port) and a small HTTP client. Tests poll, never
//! sleep a fixed time.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
pub use stratus::stack::{Stack, StackOptions};

pub mod glance;
pub mod neutron;

/// A started stack with its temporary data directory.
pub struct Harness {
    /// The stack.
    pub stack: Stack,
    /// Data directory (kept alive while the harness lives).
    pub dir: tempfile::TempDir,
    /// HTTP client.
    pub http: reqwest::Client,
}

/// Options for a stack on a free port in `dir`.
pub fn options(dir: &std::path::Path) -> StackOptions {
    let mut o = StackOptions::new(dir);
    o.listen = "127.0.0.1:0".parse().expect("addr");
    // These scenarios use development tokens (`user:project`).
    o.auth = stratus::stack::AuthKind::NoAuth;
    o.identity_listen = "127.0.0.1:0".parse().expect("addr");
    // Room for every scenario's servers; quota scenarios set their own limits.
    for r in [
        domain::quota::Resource::Instances,
        domain::quota::Resource::Cores,
        domain::quota::Resource::Ram,
    ] {
        o.quota.base.insert(r, -1);
    }
    o
}

impl Harness {
    /// Starts a stack with default options (tweaked by `f`).
    pub async fn start(f: impl FnOnce(&mut StackOptions)) -> Harness {
        // STRATUS_TEST_LOG=<filter> shows the stack's logs (e.g. `warn,eventlog=debug`).
        if let Ok(filter) = std::env::var("STRATUS_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = options(dir.path());
        f(&mut o);
        let stack = Stack::start(o).await.expect("stack starts");
        Harness {
            stack,
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// Stops and starts again on the same data directory.
    pub async fn restart(self, f: impl FnOnce(&mut StackOptions)) -> Harness {
        let Harness { stack, dir, http } = self;
        stack.stop().await;
        let mut o = options(dir.path());
        f(&mut o);
        let stack = Stack::start(o).await.expect("stack restarts");
        Harness { stack, dir, http }
    }

    /// How many events the log holds: the sum of every stream's last position. Tests
    /// compare it before and after a refused request ("appends nothing").
    pub async fn log_len(&self) -> u64 {
        let log = self.stack.engine.log();
        let mut n = 0;
        for s in log.streams().await.expect("streams") {
            n += log.last_stream_seq(&s).await.expect("stream position");
        }
        n
    }

    /// Base URL of the compute API.
    pub fn base(&self) -> String {
        format!("http://{}/v2.1", self.stack.addr)
    }

    /// A request as `token` (`user:project`) at the newest microversion, returning
    /// status and JSON (Null if empty; a non-JSON body as a string).
    pub async fn req(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.req_at(token, method, path, "2.96", body).await
    }

    /// [`Harness::req`] at compute microversion `version`.
    pub async fn req_at(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        version: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (code, _, v) = self.send_at(token, method, path, version, body).await;
        (code, v)
    }

    /// [`Harness::req_at`] with the response headers.
    pub async fn send_at(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        version: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.base(), path))
            .header("X-Auth-Token", token)
            .header("OpenStack-API-Version", format!("compute {version}"));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (code, headers, v)
    }

    /// A request to the image API (Glance) as `token`: status and JSON (Null if empty
    /// or not JSON).
    pub async fn glance(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (code, _, v) = self.glance_send(token, method, path, body).await;
        (code, v)
    }

    /// [`Harness::glance`] with the response headers.
    pub async fn glance_send(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let addr = self.stack.image_addr.expect("the API role serves images");
        let mut rb = self
            .http
            .request(method, format!("http://{addr}{path}"))
            .header("X-Auth-Token", token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let code = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body");
        (
            code,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Creates a server as `token`, returns its id.
    pub async fn create(&self, token: &str, name: &str, flavor: &str) -> String {
        let (code, v) = self
            .req(
                token,
                reqwest::Method::POST,
                "/servers",
                Some(json!({"server": {"name": name, "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": flavor, "networks": "none"}})),
            )
            .await;
        assert_eq!(code, 202, "create: {v}");
        v["server"]["id"].as_str().expect("id").to_string()
    }

    /// Posts a server action, asserting the status code.
    pub async fn action(&self, token: &str, id: &str, body: Value, want: u16) -> Value {
        let (code, v) = self
            .req(
                token,
                reqwest::Method::POST,
                &format!("/servers/{id}/action"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(code, want, "action {body} on {id}: {v}");
        v
    }

    /// GET /servers/{id} as admin.
    pub async fn show(&self, id: &str) -> Value {
        let (code, v) = self
            .req(
                "admin:admin",
                reqwest::Method::GET,
                &format!("/servers/{id}"),
                None,
            )
            .await;
        assert_eq!(code, 200, "show {id}: {v}");
        v["server"].clone()
    }

    /// Polls until the server's status is `want` (or 404 when `want` is "GONE").
    pub async fn wait(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, v) = self
                .req(
                    "admin:admin",
                    reqwest::Method::GET,
                    &format!("/servers/{id}"),
                    None,
                )
                .await;
            if want == "GONE" && code == 404 {
                return Value::Null;
            }
            let s = &v["server"];
            if s["status"] == want && s["OS-EXT-STS:task_state"].is_null() {
                return s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "server {id} never reached {want}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
