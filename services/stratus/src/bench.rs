//! `stratus bench`: the all-in-one in process, driven over real HTTP by concurrent
//! clients through create -> ACTIVE -> pause -> PAUSED -> unpause -> ACTIVE -> delete
//! -> gone, then a replay rebuild of the log it made. Prints cycles/s, API latency
//! p50/p99, events/s, peak memory and the rebuild rate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::stack::{Stack, StackOptions};

/// Pause between two status polls of one client.
const POLL_MS: u64 = 10;

/// Benchmark options.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Total full cycles.
    pub cycles: u64,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Data directory (a fresh temporary one when None).
    pub data_dir: Option<PathBuf>,
    /// Simulated hosts.
    pub hosts: usize,
    /// Run on NATS JetStream at this URL instead of the embedded store.
    pub nats: Option<String>,
}

/// Measured figures.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Cycles completed.
    pub cycles: u64,
    /// Wall time of the load phase.
    pub seconds: f64,
    /// API requests made.
    pub requests: u64,
    /// API latency p50 (ms).
    pub p50_ms: f64,
    /// API latency p99 (ms).
    pub p99_ms: f64,
    /// Events appended during the load.
    pub events: u64,
    /// Peak resident memory (MiB).
    pub peak_rss_mib: f64,
    /// Rebuild rate (events/s).
    pub rebuild_rate: f64,
    /// Whether the rebuild matched the stored views.
    pub rebuild_matches: bool,
    /// Events folded by the rebuild.
    pub rebuild_events: u64,
    /// Raw pipelined JetStream publish rate measured in the same run (msg/s), with --nats.
    pub raw_publish_rate: Option<f64>,
}

/// Publishes `n` 200-byte messages to a scratch file-backed stream with up to 4,096
/// acknowledgements in flight (what JetStream itself can do here), then deletes it.
pub async fn raw_publish_rate(url: &str, n: usize) -> anyhow::Result<f64> {
    use async_nats::jetstream::{self, stream};
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let name = format!("STRATUS_BENCH_RAW_{}", std::process::id());
    let subject = format!("stratusbench.{}", std::process::id());
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{subject}.>")],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("create scratch stream: {e}"))?;
    let payload = vec![b'x'; 200];
    let t0 = Instant::now();
    let mut inflight = std::collections::VecDeque::with_capacity(4096);
    for i in 0..n {
        let ack = js
            .publish(
                format!("{subject}.s{}", i % 1000),
                axum::body::Bytes::from(payload.clone()),
            )
            .await
            .map_err(|e| anyhow::anyhow!("publish: {e}"))?;
        inflight.push_back(ack);
        if inflight.len() >= 4096 {
            if let Some(a) = inflight.pop_front() {
                a.await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            }
        }
    }
    for a in inflight {
        a.await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let _ = js.delete_stream(&name).await;
    Ok(rate)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

struct Client {
    http: reqwest::Client,
    base: String,
    lat: Arc<Mutex<Vec<u32>>>,
    requests: Arc<AtomicU64>,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("X-Auth-Token", "bench:bench")
            .header("OpenStack-API-Version", "compute 2.60");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let t = Instant::now();
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let us = t.elapsed().as_micros() as u32;
        self.lat.lock().unwrap_or_else(|p| p.into_inner()).push(us);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, v))
    }

    async fn wait_status(&self, id: &str, want: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, v) = self
                .call(reqwest::Method::GET, &format!("/v2.1/servers/{id}"), None)
                .await?;
            if want == "GONE" && code == 404 {
                return Ok(());
            }
            let status = v["server"]["status"].as_str().unwrap_or("");
            if status == want {
                return Ok(());
            }
            if status == "ERROR" {
                bail!("server {id} went to ERROR: {v}");
            }
            if Instant::now() > deadline {
                bail!("server {id} stuck in {status} waiting for {want}");
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    async fn cycle(&self, n: u64) -> anyhow::Result<()> {
        use reqwest::Method as M;
        let body = json!({"server": {"name": format!("bench-{n}"), "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1", "networks": "none"}});
        let (code, v) = self.call(M::POST, "/v2.1/servers", Some(body)).await?;
        if code != 202 {
            bail!("create returned {code}: {v}");
        }
        let id = v["server"]["id"].as_str().context("no id")?.to_string();
        self.wait_status(&id, "ACTIVE").await?;
        let path = format!("/v2.1/servers/{id}/action");
        let action = |b: Value| self.call(M::POST, &path, Some(b));
        let (code, v) = action(json!({"pause": null})).await?;
        if code != 202 {
            bail!("pause returned {code}: {v}");
        }
        self.wait_status(&id, "PAUSED").await?;
        let (code, v) = action(json!({"unpause": null})).await?;
        if code != 202 {
            bail!("unpause returned {code}: {v}");
        }
        self.wait_status(&id, "ACTIVE").await?;
        let (code, v) = self
            .call(M::DELETE, &format!("/v2.1/servers/{id}"), None)
            .await?;
        if code != 204 {
            bail!("delete returned {code}: {v}");
        }
        self.wait_status(&id, "GONE").await
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs the benchmark.
pub async fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    let tmp;
    let data_dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("stratus-bench-{}", uuid::Uuid::new_v4()));
            tmp.clone()
        }
    };
    let mut so = StackOptions::new(&data_dir);
    so.listen = "127.0.0.1:0".parse()?;
    // The benchmark drives the API with development tokens (`user:project`).
    so.auth = crate::stack::AuthKind::NoAuth;
    so.identity_listen = "127.0.0.1:0".parse()?;
    so.hosts = opts.hosts;
    so.nats = opts.nats.clone();
    let raw_publish_rate = match &opts.nats {
        Some(url) => Some(raw_publish_rate(url, 50_000).await?),
        None => None,
    };
    let stack = Stack::start(so).await?;
    let events_before = stack.engine.world.read().events_applied;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .build()?;
    let lat = Arc::new(Mutex::new(Vec::with_capacity(opts.cycles as usize * 12)));
    let requests = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..opts.concurrency {
        let c = Client {
            http: http.clone(),
            base: format!("http://{}", stack.addr),
            lat: lat.clone(),
            requests: requests.clone(),
        };
        let (next, done, total) = (next.clone(), done.clone(), opts.cycles);
        handles.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                c.cycle(n).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  .. {d} cycles ({:.0}/s over the last 5 s)",
                    (d - last) as f64 / 5.0
                );
                last = d;
            }
        })
    };
    let mut first_err = None;
    for h in handles {
        if let Err(e) = h.await? {
            first_err.get_or_insert(e);
        }
    }
    progress.abort();
    let seconds = t0.elapsed().as_secs_f64();
    let events = stack.engine.world.read().events_applied - events_before;
    let peak = peak_rss_mib();
    drop(http);
    stack.stop().await;
    if let Some(e) = first_err {
        return Err(e.context("a benchmark client failed"));
    }
    let mut l = std::mem::take(&mut *lat.lock().unwrap_or_else(|p| p.into_inner()));
    l.sort_unstable();
    let rebuild = match &opts.nats {
        None => replay::rebuild_data_dir(&data_dir).await?,
        Some(url) => {
            let log =
                eventlog::JetStreamLog::connect(url, eventlog::JetStreamOptions::default()).await?;
            let store =
                projections::ProjectionStore::open(&crate::stack::projections_path(&data_dir))?;
            let stored = store.load()?;
            let r = replay::rebuild(log.clone(), &stored).await?;
            log.close();
            r
        }
    };
    if opts.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(BenchReport {
        cycles: done.load(Ordering::Relaxed),
        seconds,
        requests: requests.load(Ordering::Relaxed),
        p50_ms: percentile(&l, 0.50),
        p99_ms: percentile(&l, 0.99),
        events,
        peak_rss_mib: peak,
        rebuild_rate: rebuild.rate(),
        rebuild_matches: rebuild.matches,
        rebuild_events: rebuild.events,
        raw_publish_rate,
    })
}
