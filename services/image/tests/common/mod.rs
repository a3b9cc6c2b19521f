//! The image API over real loopback HTTP, shared by the test binaries: an embedded log
//! in a tempdir, the projector, the engine, the default image bootstrap and the image
//! router on 127.0.0.1:0.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use engine::Engine;
use eventlog::{EmbeddedCheckpoints, EmbeddedLog, EventLog, StreamName};
use image::{ImageState, ImageStore};

use projections::projector::Projector;
use projections::World;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use tokio::sync::watch;

pub const ADMIN: &str = "admin:adminproj";
pub const ALICE: &str = "alice:p1";
pub const BOB: &str = "bob:p2";
pub const PATCH: &str = "application/openstack-images-v2.1-json-patch";
pub const CIRROS: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

pub struct Glance {
    pub engine: Arc<Engine>,
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
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
                "non-JSON body ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }
}

pub async fn start(max_size: u64) -> Glance {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let checkpoints =
        Arc::new(EmbeddedCheckpoints::open(&dir.path().join("checkpoints.redb")).unwrap());
    let world = Arc::new(World::default());
    let projector = Projector::new(log.clone(), world.clone(), None);
    let (tx, rx) = watch::channel(false);
    let api = StreamName::api();
    log.ensure_stream(&api).await.unwrap();
    projector.follow(api, rx);
    let engine = Arc::new(Engine::new(
        log,
        world,
        checkpoints,
        Default::default(),
        Duration::from_secs(5),
    ));
    let store = Arc::new(ImageStore::open(dir.path().join("images")).unwrap());
    image::bootstrap::ensure_default_images(&engine, &store)
        .await
        .unwrap();
    let app = image::router(ImageState {
        engine: engine.clone(),
        store,
        max_size,
        auth: apicore::auth::AuthMode::NoAuth,
        import: Default::default(),
        stores: Arc::new(vec!["file".into()]),
        conversion: None,
        import_methods: Arc::new(
            image::import::DEFAULT_IMPORT_METHODS
                .iter()
                .map(|m| m.to_string())
                .collect(),
        ),
        catalog: Arc::new(vec![]),
        shutdown: tx.subscribe(),
        weights: Default::default(),
        // The cache API is served (its rows are in the policy matrix).
        cache: Some(Arc::new(
            image::cache::ImageCache::open(
                dir.path().join("image-cache"),
                image::cache::DEFAULT_MAX_SIZE,
            )
            .unwrap(),
        )),
        locations: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Glance {
        engine,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        dir,
        _stop: tx,
    }
}

impl Glance {
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.unwrap();
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            bytes: r.bytes().await.unwrap().to_vec(),
        }
    }

    pub fn rb(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("X-Auth-Token", token)
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(self.rb(Method::GET, path, token)).await
    }

    pub async fn post(&self, token: &str, body: Value) -> Resp {
        self.send(self.rb(Method::POST, "/v2/images", token).json(&body))
            .await
    }

    pub async fn patch(&self, id: &str, token: &str, body: Value) -> Resp {
        self.send(
            self.rb(Method::PATCH, &format!("/v2/images/{id}"), token)
                .header("Content-Type", PATCH)
                .body(body.to_string()),
        )
        .await
    }

    pub async fn upload(&self, id: &str, token: &str, data: Vec<u8>) -> Resp {
        self.send(
            self.rb(Method::PUT, &format!("/v2/images/{id}/file"), token)
                .header("Content-Type", "application/octet-stream")
                .body(data),
        )
        .await
    }

    pub async fn delete(&self, id: &str, token: &str) -> Resp {
        self.send(self.rb(Method::DELETE, &format!("/v2/images/{id}"), token))
            .await
    }

    /// Creates a raw/bare image (raw: any test bytes pass the format check) and
    /// returns its id.
    pub async fn create(&self, token: &str, name: &str, visibility: &str) -> String {
        let r = self
            .post(
                token,
                json!({"name": name, "disk_format": "raw", "container_format": "bare", "visibility": visibility}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        r.json()["id"].as_str().unwrap().to_string()
    }

    pub async fn api_position(&self) -> u64 {
        self.engine
            .log()
            .last_stream_seq(&StreamName::api())
            .await
            .unwrap()
    }

    /// The image files (the staging directory aside).
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("images"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}
