//! The image API (Glance) from tests: the requests every image test makes (data in and
//! out, JSON patches, polling an image or its tasks), and a local web server for
//! imports and locations, so that each test file states only what it checks.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::Harness;

/// Glance's JSON-patch media type (v2.1).
pub const JSON_PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// Polls `probe` until it answers Some (10 s at most; `what` names the wait in the
/// failure).
pub async fn poll<T, F, Fut>(what: impl std::fmt::Display, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A local web server answering GET `path` with `data` (404 elsewhere); its base URL.
pub async fn serve_bytes(path: &'static str, data: Vec<u8>) -> String {
    let app = axum::Router::new().route(
        path,
        axum::routing::get(move || {
            let d = data.clone();
            async move { d }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

impl Harness {
    /// A request to the image API with a raw body of `content_type`: status and JSON
    /// (Null if empty or not JSON).
    pub async fn glance_bytes(
        &self,
        token: &str,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let addr = self.stack.image_addr.expect("the API role serves images");
        let r = self
            .http
            .request(method, format!("http://{addr}{path}"))
            .header("X-Auth-Token", token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let code = r.status().as_u16();
        let bytes = r.bytes().await.expect("body");
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Creates an image record as `token` (201 expected); its id.
    pub async fn image_create(&self, token: &str, body: Value) -> String {
        let (code, img) = self
            .glance(token, Method::POST, "/v2/images", Some(body))
            .await;
        assert_eq!(code, 201, "{img}");
        img["id"].as_str().expect("image id").to_string()
    }

    /// `PUT /v2/images/{id}/file`: the status.
    pub async fn image_upload(&self, token: &str, id: &str, data: Vec<u8>) -> u16 {
        let path = format!("/v2/images/{id}/file");
        let octets = "application/octet-stream";
        self.glance_bytes(token, Method::PUT, &path, octets, data)
            .await
            .0
    }

    /// `PUT /v2/images/{id}/stage`: the status.
    pub async fn image_stage(&self, token: &str, id: &str, data: Vec<u8>) -> u16 {
        let path = format!("/v2/images/{id}/stage");
        let octets = "application/octet-stream";
        self.glance_bytes(token, Method::PUT, &path, octets, data)
            .await
            .0
    }

    /// `GET /v2/images/{id}/file`: the status and the data.
    pub async fn image_download(&self, token: &str, id: &str) -> (u16, Vec<u8>) {
        let addr = self.stack.image_addr.expect("the API role serves images");
        let r = self
            .http
            .get(format!("http://{addr}/v2/images/{id}/file"))
            .header("X-Auth-Token", token)
            .send()
            .await
            .expect("request");
        let code = r.status().as_u16();
        (code, r.bytes().await.expect("body").to_vec())
    }

    /// `PATCH /v2/images/{id}` with Glance's JSON-patch media type.
    pub async fn image_patch(&self, token: &str, id: &str, ops: Value) -> (u16, Value) {
        let path = format!("/v2/images/{id}");
        self.glance_bytes(
            token,
            Method::PATCH,
            &path,
            JSON_PATCH,
            ops.to_string().into_bytes(),
        )
        .await
    }

    /// `GET /v2/images/{id}` (whatever the status).
    pub async fn image_show(&self, token: &str, id: &str) -> Value {
        let path = format!("/v2/images/{id}");
        self.glance(token, Method::GET, &path, None).await.1
    }

    /// Polls the image until `done` holds (10 s at most).
    pub async fn wait_image(&self, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        poll(format!("image {id} as expected"), || async {
            let img = self.image_show(token, id).await;
            done(&img).then_some(img)
        })
        .await
    }

    /// Polls the image's tasks until there are some and every one has `status` (10 s
    /// at most); the tasks.
    pub async fn wait_image_tasks(&self, token: &str, id: &str, status: &str) -> Value {
        let path = format!("/v2/images/{id}/tasks");
        poll(format!("tasks of {id} {status}"), || async {
            let (code, t) = self.glance(token, Method::GET, &path, None).await;
            assert_eq!(code, 200, "{t}");
            let tasks = t["tasks"].as_array().expect("tasks");
            (!tasks.is_empty() && tasks.iter().all(|t| t["status"] == status))
                .then(|| t["tasks"].clone())
        })
        .await
    }

    /// The position of the api stream in this process's views: compared before and
    /// after a refused request (nothing appended).
    pub fn api_position(&self) -> u64 {
        self.stack
            .engine
            .world()
            .read()
            .position(&eventlog::StreamName::api())
    }
}
