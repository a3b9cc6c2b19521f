//! In-process stack for HTTP tests: embedded log in a tempdir, projector following
//! api/cell0/cell1, engine, and the API served on 127.0.0.1:0.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use api::{ApiState, AuthMode};
use domain::host::{HostCommand, HostSpec, Ratios, Resources};
use domain::instance::InstanceCommand;
use domain::{CellName, ClaimId, Ctx, HostName, InstanceId, TaskState};
use engine::{Engine, Meta};
use eventlog::{EmbeddedCheckpoints, EmbeddedLog, EventLog, StreamName};
use projections::projector::Projector;
use projections::World;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

pub const ADMIN: &str = "admin:adminproj";
pub const ALICE: &str = "alice:p1";
pub const BOB: &str = "bob:p2";

pub struct Stack {
    pub engine: Arc<Engine>,
    pub base: String,
    pub client: reqwest::Client,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A stack whose projects have room for every test's servers (instances, cores and
/// ram unlimited); quota tests use [`start_with_quota`].
pub async fn start() -> Stack {
    let mut base = domain::quota::nova_defaults();
    for r in [
        domain::quota::Resource::Instances,
        domain::quota::Resource::Cores,
        domain::quota::Resource::Ram,
    ] {
        base.insert(r, -1);
    }
    start_with_quota(base).await
}

/// A stack with these default limits (under the `default` quota class).
pub async fn start_with_quota(base: domain::quota::Limits) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let checkpoints =
        Arc::new(EmbeddedCheckpoints::open(&dir.path().join("checkpoints.redb")).unwrap());
    let world = Arc::new(World::default());
    let projector = Projector::new(log.clone(), world.clone(), None);
    let (tx, rx) = watch::channel(false);
    for s in ["api", "cell0", "cell1"] {
        let s = StreamName::new(s).unwrap();
        log.ensure_stream(&s).await.unwrap();
        projector.follow(s, rx.clone());
    }
    let mut engine = Engine::new(
        log,
        world,
        checkpoints,
        Default::default(),
        Duration::from_secs(5),
    );
    engine.quota.base = base;
    let engine = Arc::new(engine);
    // The default image (`cirros`, the id every test boots from), as at bootstrap.
    let images = image::ImageStore::open(dir.path().join("images")).unwrap();
    image::bootstrap::ensure_default_images(&engine, &images)
        .await
        .unwrap();
    let notifications =
        notifier::store::EmbeddedNotifications::open(&dir.path().join("notifications.redb"))
            .unwrap();
    let app = api::router(ApiState {
        engine: engine.clone(),
        auth: AuthMode::NoAuth,
    })
    .layer(axum::Extension(api::notifications::Notifications(Some(
        Arc::new(notifications),
    ))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Stack {
        engine,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _shutdown: tx,
        _dir: dir,
    }
}

impl Stack {
    /// Sends a request; `version` is sent as `OpenStack-API-Version: compute <v>`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        version: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        if let Some(v) = version {
            rb = rb.header("OpenStack-API-Version", format!("compute {v}"));
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    /// Sends a raw body.
    pub async fn raw(&self, method: Method, path: &str, token: &str, body: Vec<u8>) -> Resp {
        let rb = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("X-Auth-Token", token)
            .header("Content-Type", "application/json")
            .body(body);
        self.send(rb).await
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "non-JSON body ({status}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str, version: Option<&str>) -> Resp {
        self.call(Method::GET, path, Some(token), version, None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, version: Option<&str>, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), version, Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, version: Option<&str>, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), version, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str, version: Option<&str>) -> Resp {
        self.call(Method::DELETE, path, Some(token), version, None)
            .await
    }

    /// Last positions of the api, cell0 and cell1 streams.
    pub async fn positions(&self) -> [u64; 3] {
        let mut out = [0; 3];
        for (i, s) in ["api", "cell0", "cell1"].iter().enumerate() {
            out[i] = self
                .engine
                .log()
                .last_stream_seq(&StreamName::new(*s).unwrap())
                .await
                .unwrap();
        }
        out
    }

    /// Creates a public flavor as admin.
    pub async fn flavor(&self, id: &str, name: &str, ram: u64, disk: u64) {
        let r = self
            .post(
                "/v2.1/flavors",
                ADMIN,
                None,
                serde_json::json!({"flavor": {"id": id, "name": name, "ram": ram, "vcpus": 1, "disk": disk}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    /// Creates a server and returns its id.
    pub async fn server(&self, token: &str, name: &str, flavor: &str) -> String {
        let r = self
            .post(
                "/v2.1/servers",
                token,
                Some("2.37"),
                serde_json::json!({"server": {
                    "name": name,
                    "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b",
                    "flavorRef": flavor,
                    "networks": "none",
                }}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        r.body["server"]["id"].as_str().unwrap().to_string()
    }

    /// Registers `host` in cell1.
    pub async fn register_host(&self, host: &str) -> HostName {
        let h = HostName::new(host).unwrap();
        let spec = HostSpec {
            name: h.clone(),
            cell: CellName::cell1(),
            total: Resources {
                vcpus: 16,
                ram_mb: 65536,
                disk_gb: 1000,
            },
            ratios: Ratios::default(),
            availability_zone: "nova".into(),
        };
        self.engine
            .host(
                &CellName::cell1(),
                &h,
                HostCommand::Register(spec),
                &svc_ctx(),
                &Meta::default(),
            )
            .await
            .unwrap();
        // Host commands return once durable, before the world applies them: wait, so
        // the next request sees the host (and its zone).
        let seen = self
            .engine
            .world()
            .wait_until(std::time::Duration::from_secs(5), |v| {
                v.hosts().values().any(|r| r.state.spec.name == h)
            })
            .await;
        assert!(seen, "host {h} never reached the world");
        h
    }

    /// Drives a freshly created server to ACTIVE on `host` as the scheduler and compute would.
    pub async fn make_active(&self, id: &str, host: &HostName) {
        let iid = InstanceId::parse(id).unwrap();
        let op = self
            .engine
            .world()
            .read()
            .instance(&iid)
            .unwrap()
            .op
            .unwrap()
            .id;
        let cmds = [
            InstanceCommand::Map {
                op,
                cell: CellName::cell1(),
                host: Some((host.clone(), ClaimId(Uuid::new_v4()))),
                fault: None,
                fault_details: None,
            },
            InstanceCommand::Place,
            InstanceCommand::Complete {
                op,
                task: TaskState::Spawning,
            },
        ];
        for c in cmds {
            self.engine
                .instance(iid, c, &svc_ctx(), &Meta::default())
                .await
                .unwrap();
        }
    }
}

pub fn svc_ctx() -> Ctx {
    Ctx::service("test", engine::now(), Uuid::new_v4())
}
