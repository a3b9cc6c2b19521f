//! `stratus bench`: the all-in-one in process, driven over real HTTP by concurrent
//! clients through create -> ACTIVE -> pause -> PAUSED -> unpause -> ACTIVE -> delete
//! -> gone, then a replay rebuild of the log it made. Prints cycles/s, API latency
//! p50/p99, events/s, peak memory and the rebuild rate.
//!
//! With `--nats`, two more measurements run first, in the same process against the same
//! server: the raw pipelined JetStream publish rate ([`raw_publish_rate`]) and the append
//! rate of the event-log layer alone ([`log_append_rate`]: `JetStreamLog::append` with
//! OCC and dedupe ids, many concurrent appenders on distinct subjects), so the report
//! separates what the log layer costs from what the control plane above it costs.
//!
//! With `--networked`, servers are created with `"networks": "auto"` (the bootstrap
//! shared `private` network) instead of `"none"`: each cycle's build creates a port on
//! that network's aggregate and binds it, and the delete releases it. Every ACTIVE
//! server must show an address, and once the load ends no port may be left on
//! `private`, or the run fails.

use eventlog::LockExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::stack::{Stack, StackOptions};

/// Instances, cores and ram unlimited by default.
fn unlimited_instances(so: &mut StackOptions) {
    use domain::quota::Resource;
    for r in [Resource::Instances, Resource::Cores, Resource::Ram] {
        so.quota.base.insert(r, -1);
    }
}

/// Figures of the quota admission measurement.
#[derive(Debug, Clone)]
pub struct QuotaReport {
    /// Creates sent.
    pub creates: u64,
    /// Creates admitted (202).
    pub admitted: u64,
    /// Creates refused over quota (403).
    pub refused: u64,
    /// The project's instance limit.
    pub limit: u64,
    /// Wall time.
    pub seconds: f64,
    /// Latency p50 / p99 of a create (ms).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Quota admission: `creates` concurrent `POST /servers` of one project (from
/// `concurrency` clients) against room for half of them, on a fresh all-in-one with the
/// simulated hosts. Every decision is one admission on the project's ledger; the
/// report says how many were admitted (exactly the limit, or it is an error).
pub async fn quota_admission(
    creates: u64,
    concurrency: usize,
    nats: Option<String>,
) -> anyhow::Result<QuotaReport> {
    let data_dir = std::env::temp_dir().join(format!("stratus-bench-{}", uuid::Uuid::new_v4()));
    let mut so = StackOptions::new(&data_dir);
    so.listen = "127.0.0.1:0".parse()?;
    so.auth = crate::stack::AuthKind::NoAuth;
    so.identity_listen = "127.0.0.1:0".parse()?;
    so.nats = nats;
    unlimited_instances(&mut so);
    let limit = creates / 2;
    let stack = Stack::start(so).await?;
    let base = format!("http://{}/v2.1", stack.addr);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let r = http
        .put(format!("{base}/os-quota-sets/quota"))
        .header("X-Auth-Token", "admin:admin")
        .json(&json!({"quota_set": {"instances": limit}}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("quota set: {}", r.status());
    }
    let next = Arc::new(AtomicU64::new(0));
    let (ok, over) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(creates as usize)));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (http, base, next, ok, over, lat) = (
            http.clone(),
            base.clone(),
            next.clone(),
            ok.clone(),
            over.clone(),
            lat.clone(),
        );
        handles.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= creates {
                    return Ok::<_, anyhow::Error>(());
                }
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/servers"))
                    .header("X-Auth-Token", "bench:quota")
                    .header("OpenStack-API-Version", "compute 2.90")
                    .json(&json!({"server": {"name": format!("q{n}"), "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1", "networks": "none"}}))
                    .send()
                    .await?;
                lat.lock_or_recover()
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                match r.status().as_u16() {
                    202 => ok.fetch_add(1, Ordering::Relaxed),
                    403 => over.fetch_add(1, Ordering::Relaxed),
                    s => bail!("create answered {s}: {}", r.text().await.unwrap_or_default()),
                };
            }
        }));
    }
    let mut first_err = None;
    for h in handles {
        if let Err(e) = h.await? {
            first_err.get_or_insert(e);
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    if let Some(e) = first_err {
        return Err(e.context("a quota benchmark client failed"));
    }
    let (admitted, refused) = (ok.load(Ordering::Relaxed), over.load(Ordering::Relaxed));
    if admitted != limit {
        bail!("{admitted} creates admitted against a limit of {limit}");
    }
    let mut l = std::mem::take(&mut *lat.lock_or_recover());
    l.sort_unstable();
    Ok(QuotaReport {
        creates,
        admitted,
        refused,
        limit,
        seconds,
        p50_ms: percentile(&l, 0.50),
        p99_ms: percentile(&l, 0.99),
    })
}

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
    /// With `nats`: concurrent appenders of the log-layer measurement.
    pub log_concurrency: usize,
    /// With `nats`: commits appended by the log-layer measurement (0 skips it).
    pub log_appends: u64,
    /// Servers on the shared `private` network (`"networks": "auto"`), one port each.
    pub networked: bool,
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
    /// With --nats: (tasks, msg/s) of raw JetStream publishes with the headers of an append
    /// (`Nats-Msg-Id`, `Nats-Expected-Last-Subject-Sequence`), one round trip per message
    /// per task, with as many tasks as the log-layer measurement ([`raw_closed_loop_rate`]).
    pub raw_occ_rate: Option<(usize, f64)>,
    /// With --nats: the append rate of the event-log layer alone.
    pub log_layer: Option<LogAppendRate>,
    /// With `networked`: what the ports did.
    pub ports: Option<PortsUsed>,
}

/// The ports of a `networked` run.
#[derive(Debug, Clone)]
pub struct PortsUsed {
    /// Servers built with an address on `private` (checked when ACTIVE after the
    /// create and again after the unpause): one port created and released per cycle.
    pub addressed: u64,
    /// Time from the load's end until no port was left on `private` (the last
    /// deletes' releases run after their servers are gone).
    pub drain_seconds: f64,
}

/// What [`log_append_rate`] measured.
#[derive(Debug, Clone)]
pub struct LogAppendRate {
    /// Concurrent appenders (one subject each).
    pub concurrency: usize,
    /// Commits appended.
    pub appends: u64,
    /// Events appended (one per commit).
    pub events: u64,
    /// Wall time.
    pub seconds: f64,
    /// Append latency p50 (ms).
    pub p50_ms: f64,
    /// Append latency p99 (ms).
    pub p99_ms: f64,
    /// CPU time of this process during the measurement, in cores (1.0 = one core busy).
    pub client_cores: f64,
    /// Stored bytes per commit (message, headers and subject, as JetStream counts them).
    pub bytes_per_commit: f64,
}

impl LogAppendRate {
    /// Commits per second.
    pub fn appends_per_s(&self) -> f64 {
        self.appends as f64 / self.seconds
    }

    /// Events per second.
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// CPU time (user + system) this process has used so far, in seconds (Linux; 0 elsewhere).
fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are the 14th
            // and 15th fields of the whole line, in clock ticks (100 per second on Linux).
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Appends `appends` one-event commits through the real [`eventlog::JetStreamLog`]
/// (`EventLog::append` with `ExpectedSeq::Exactly`, a dedupe id, metadata, record encoding
/// and headers) from `concurrency` tasks, each appending successive commits to its own
/// instance subject of cell `benchlog` under the stream prefix `STRATUSBENCH` (JetStream
/// stream `STRATUSBENCH_CELL_BENCHLOG`, invisible to the `STRATUS` log: its subjects
/// `stratus.cell.benchlog.>` overlap no Stratus cell and the prefix hides it from
/// `streams()`). Each event carries a 200-byte payload. The stream is deleted afterwards.
pub async fn log_append_rate(
    url: &str,
    concurrency: usize,
    appends: u64,
) -> anyhow::Result<LogAppendRate> {
    use eventlog::{
        Actor, AppendRequest, EventLog, ExpectedSeq, JetStreamLog, JetStreamOptions, Metadata,
        NewEvent, StreamName, Subject,
    };
    let log = JetStreamLog::connect(
        url,
        JetStreamOptions {
            stream_prefix: "STRATUSBENCH".into(),
            ..Default::default()
        },
    )
    .await?;
    let cell = StreamName::cell("benchlog")?;
    let js_name = log.jetstream_name(&cell);
    let js = async_nats::jetstream::new(log.client().clone());
    // A stream left over by an interrupted run: start afresh.
    let _ = js.delete_stream(&js_name).await;
    log.ensure_stream(&cell).await?;
    let concurrency = concurrency.max(1);
    let next = Arc::new(AtomicU64::new(0));
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (log, next, cell) = (log.clone(), next.clone(), cell.clone());
        handles.push(tokio::spawn(async move {
            let id = uuid::Uuid::new_v4().to_string();
            let subject = Subject::cell(&cell, eventlog::SubjectKind::Instance, &id)?;
            let correlation = format!("req-{}", uuid::Uuid::new_v4());
            // Causes as long as an event id, without a random draw per append (the
            // bench's own cost; the log layer draws one UUIDv7 per event itself).
            let cause_base = uuid::Uuid::new_v4().simple().to_string();
            let mut lat = Vec::new();
            let mut seq = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < appends {
                let cause = format!("{}{seq:08x}", &cause_base[..24]);
                let req = AppendRequest {
                    subject: subject.clone(),
                    expected: ExpectedSeq::Exactly(seq),
                    dedupe_id: format!("{cause}:{id}"),
                    meta: Metadata {
                        correlation_id: correlation.clone(),
                        causation_id: cause,
                        actor: Actor {
                            user: "bench".into(),
                            project: "bench".into(),
                            roles: vec!["member".into()],
                        },
                        occurred_at: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_micros() as i64)
                            .unwrap_or(0),
                    },
                    events: vec![NewEvent {
                        event_type: "instance.task_started".into(),
                        version: 1,
                        payload: vec![b'x'; 200],
                    }],
                };
                let t = Instant::now();
                let ack = log.append(req).await?;
                lat.push(t.elapsed().as_micros() as u32);
                anyhow::ensure!(
                    !ack.duplicate && ack.subject_seq == seq + 1,
                    "append to {subject}: unexpected ack {ack:?} after subject_seq {seq}"
                );
                seq += 1;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::with_capacity(appends as usize);
    let mut first_err = None;
    for h in handles {
        match h.await? {
            Ok(l) => lat.extend(l),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let client_cores = (process_cpu_seconds() - cpu0) / seconds;
    let bytes_per_commit = match js.get_stream(&js_name).await {
        Ok(st) => {
            let state = &st.cached_info().state;
            state.bytes as f64 / state.messages.max(1) as f64
        }
        Err(_) => 0.0,
    };
    let _ = js.delete_stream(&js_name).await;
    log.close();
    if let Some(e) = first_err {
        return Err(e.context("log-layer append benchmark"));
    }
    lat.sort_unstable();
    Ok(LogAppendRate {
        concurrency,
        appends: lat.len() as u64,
        events: lat.len() as u64,
        seconds,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        client_cores,
        bytes_per_commit,
    })
}

/// Publishes `n` 200-byte messages (no headers) to a scratch file-backed stream from one
/// task with up to `window` acknowledgements in flight (the bench uses 4,096: what
/// JetStream itself can do here), then deletes it.
pub async fn raw_publish_rate(url: &str, n: usize, window: usize) -> anyhow::Result<f64> {
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
    let window = window.max(1);
    let mut inflight = std::collections::VecDeque::with_capacity(window);
    for i in 0..n {
        let ack = js
            .publish(
                format!("{subject}.s{}", i % 1000),
                axum::body::Bytes::from(payload.clone()),
            )
            .await
            .map_err(|e| anyhow::anyhow!("publish: {e}"))?;
        inflight.push_back(ack);
        if inflight.len() >= window {
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

/// Payload size of [`raw_closed_loop_rate`] in the bench: about the size of the record
/// of one [`log_append_rate`] commit (200-byte event payload plus subject, dedupe id,
/// metadata, event id and type).
pub const OCC_BASELINE_BYTES: usize = 480;

/// Publishes `n` messages to a scratch file-backed stream from `tasks` concurrent tasks,
/// each on its own subject and each waiting for its ack before publishing again (a closed
/// loop: one round trip per message, as an append with OCC must). Every publish carries
/// `Nats-Msg-Id` and `Nats-Expected-Last-Subject-Sequence` (the task's previous ack), like
/// a Stratus append, but nothing else of the log layer. Payloads are `size` bytes.
/// Returns msg/s: what the OCC protocol alone allows at this concurrency.
pub async fn raw_closed_loop_rate(
    url: &str,
    n: u64,
    tasks: usize,
    size: usize,
) -> anyhow::Result<f64> {
    use async_nats::jetstream::{self, stream};
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let tag = std::process::id();
    let name = format!("STRATUS_BENCH_RAWCL_{tag}");
    let subject = format!("stratusbenchcl.{tag}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{subject}.>")],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("create scratch stream: {e}"))?;
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks.max(1) {
        let (js, next, subject) = (js.clone(), next.clone(), format!("{subject}.s{t}"));
        handles.push(tokio::spawn(async move {
            let mut last = 0u64;
            let mut i = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let payload = axum::body::Bytes::from(vec![b'x'; size]);
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", format!("{subject}-{i}").as_str());
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    last.to_string().as_str(),
                );
                let ack = js
                    .publish_with_headers(subject.clone(), h, payload)
                    .await
                    .map_err(|e| anyhow::anyhow!("publish: {e}"))?
                    .await
                    .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                last = ack.sequence;
                i += 1;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for h in handles {
        h.await??;
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
    /// Servers' ports on `private` (`"networks": "auto"`), not `"none"`.
    networked: bool,
    /// With `networked`: servers built with an address.
    addressed: Arc<AtomicU64>,
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
        self.lat.lock_or_recover().push(us);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, v))
    }

    /// Polls the server until its status is `want` (`GONE`: 404); its last view.
    async fn wait_status(&self, id: &str, want: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, v) = self
                .call(reqwest::Method::GET, &format!("/v2.1/servers/{id}"), None)
                .await?;
            if want == "GONE" && code == 404 {
                return Ok(v);
            }
            let status = v["server"]["status"].as_str().unwrap_or("");
            if status == want {
                return Ok(v);
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
        let networks = if self.networked { "auto" } else { "none" };
        let body = json!({"server": {"name": format!("bench-{n}"), "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1", "networks": networks}});
        let (code, v) = self.call(M::POST, "/v2.1/servers", Some(body)).await?;
        if code != 202 {
            bail!("create returned {code}: {v}");
        }
        let id = v["server"]["id"].as_str().context("no id")?.to_string();
        let v = self.wait_status(&id, "ACTIVE").await?;
        self.check_addressed(&v)?;
        if self.networked {
            self.addressed.fetch_add(1, Ordering::Relaxed);
        }
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
        let v = self.wait_status(&id, "ACTIVE").await?;
        self.check_addressed(&v)?;
        let (code, v) = self
            .call(M::DELETE, &format!("/v2.1/servers/{id}"), None)
            .await?;
        if code != 204 {
            bail!("delete returned {code}: {v}");
        }
        self.wait_status(&id, "GONE").await.map(|_| ())
    }

    /// With `networked`: an ACTIVE server shows its address on `private`.
    fn check_addressed(&self, v: &Value) -> anyhow::Result<()> {
        if !self.networked {
            return Ok(());
        }
        let has = v["server"]["addresses"]["private"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if !has {
            bail!("ACTIVE server without an address on private: {v}");
        }
        Ok(())
    }
}

/// A network API request as the noauth admin: status and JSON body.
async fn network_call(
    http: &reqwest::Client,
    url: String,
    method: reqwest::Method,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut rb = http
        .request(method, url)
        .header("X-Auth-Token", "admin:admin");
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await?;
    let code = r.status().as_u16();
    let bytes = r.bytes().await?;
    Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Ports left on the bootstrap `private` network.
async fn ports_on_private(http: &reqwest::Client, network_api: &str) -> anyhow::Result<usize> {
    let (code, v) = network_call(
        http,
        format!(
            "{network_api}/v2.0/ports?network_id={}",
            network::bootstrap::PRIVATE_ID
        ),
        reqwest::Method::GET,
        None,
    )
    .await?;
    if code != 200 {
        bail!("port list answered {code}: {v}");
    }
    Ok(v["ports"].as_array().map(Vec::len).unwrap_or(0))
}

/// The `p` quantile of sorted microseconds, in milliseconds.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
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
    // Every client's servers live in one project: room for all of them (the ledger
    // still records every create and delete, so its cost is measured).
    unlimited_instances(&mut so);
    let (mut raw_occ_rate, mut log_layer) = (None, None);
    let raw_publish_rate = match &opts.nats {
        Some(url) => {
            let raw = raw_publish_rate(url, 50_000, 4096).await?;
            if opts.log_appends > 0 {
                let c = opts.log_concurrency.max(1);
                raw_occ_rate = Some((
                    c,
                    raw_closed_loop_rate(url, 100_000, c, OCC_BASELINE_BYTES).await?,
                ));
                log_layer =
                    Some(log_append_rate(url, opts.log_concurrency, opts.log_appends).await?);
            }
            Some(raw)
        }
        None => None,
    };
    let stack = Stack::start(so).await?;
    let events_before = stack.engine.world().read().events_applied;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .build()?;
    let network_api = stack.network_addr.map(|a| format!("http://{a}"));
    if opts.networked {
        // Each server's port counts against the project's port quota until its release
        // (which follows the server's deletion): no limit, so the run measures the
        // ports, not Neutron's default of 500.
        let api = network_api.as_deref().context("no network API")?;
        let (code, v) = network_call(
            &http,
            format!("{api}/v2.0/quotas/bench"),
            reqwest::Method::PUT,
            Some(json!({"quota": {"port": -1}})),
        )
        .await?;
        if code != 200 {
            bail!("lifting the port quota answered {code}: {v}");
        }
    }
    let addressed = Arc::new(AtomicU64::new(0));
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
            networked: opts.networked,
            addressed: addressed.clone(),
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
    let events = stack.engine.world().read().events_applied - events_before;
    let (mut ports, mut left) = (None, 0);
    if let (true, None, Some(api)) = (opts.networked, &first_err, &network_api) {
        // Every port released: none left on `private` within a minute.
        let deadline = Instant::now() + Duration::from_secs(60);
        left = loop {
            let left = ports_on_private(&http, api).await?;
            if left == 0 || Instant::now() > deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        ports = Some(PortsUsed {
            addressed: addressed.load(Ordering::Relaxed),
            drain_seconds: t0.elapsed().as_secs_f64() - seconds,
        });
    }
    let peak = peak_rss_mib();
    drop(http);
    stack.stop().await;
    if let Some(e) = first_err {
        return Err(e.context("a benchmark client failed"));
    }
    if left > 0 {
        bail!("{left} ports left on private a minute after the load (not released)");
    }
    let mut l = std::mem::take(&mut *lat.lock_or_recover());
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
        raw_occ_rate,
        log_layer,
        ports,
    })
}
