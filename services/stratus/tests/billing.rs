//! `stratus billing` with real processes: a `stratus serve` (embedded, and on a real
//! nats-server), a load of creates, resizes + confirms, rebuilds and deletes over HTTP
//! in two projects, while the billing subscriber is SIGKILLed and restarted at seeded
//! random moments; then the ledger's totals for several windows equal
//! `GET /v2.1/os-simple-tenant-usage` for the same windows (to the last bit: the floats
//! are compared with a 1e-9 relative tolerance only so that a failure prints both, and
//! every total is checked to be within a millisecond of use).
//!
//! The seed is `BILLING_SEED` (default 11); a failing run prints it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{free_port, run, spawn_with, wait, Proc, IMAGE};
use serde_json::{json, Value};

const ADMIN: &str = "root:admin:admin";

/// A small deterministic generator (xorshift64*), so a run is reproducible by seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("BILLING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11)
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` (naive UTC, as os-simple-tenant-usage takes it).
fn naive(us: i64) -> String {
    let s = notifier::mapping::iso(domain::Timestamp(us));
    s.trim_end_matches('Z').to_string()
}

/// One API call as `token`.
async fn call(
    http: &reqwest::Client,
    port: u16,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = http
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .header("X-Auth-Token", token)
        .header("OpenStack-API-Version", "compute 2.96");
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// One project's worker: `cycles` servers, each created, maybe resized (to a random
/// flavor) and confirmed, maybe rebuilt, and deleted or left running.
async fn worker(port: u16, token: String, cycles: usize, mut rng: Rng) {
    let http = reqwest::Client::new();
    for i in 0..cycles {
        let (code, v) = call(
            &http,
            port,
            &token,
            reqwest::Method::POST,
            "/v2.1/servers",
            Some(
                json!({"server": {"name": format!("b{i}"), "imageRef": IMAGE,
                "flavorRef": "1", "networks": "none"}}),
            ),
        )
        .await;
        assert_eq!(code, 202, "{v}");
        let id = v["server"]["id"].as_str().unwrap().to_string();
        wait_as(&http, port, &token, &id, "ACTIVE").await;
        // Resizes only grow the disk (Nova refuses a smaller one): flavors 1 to 4.
        let mut current = 1;
        for _ in 0..rng.below(3) {
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
            match rng.below(4) {
                n if n == 0 || current >= 4 => {
                    act(
                        &http,
                        port,
                        &token,
                        &id,
                        json!({"rebuild": {"imageRef": IMAGE}}),
                    )
                    .await;
                    wait_as(&http, port, &token, &id, "ACTIVE").await;
                }
                _ => {
                    let next = (current + 1 + rng.below(2)).min(4);
                    let flavor = next.to_string();
                    act(
                        &http,
                        port,
                        &token,
                        &id,
                        json!({"resize": {"flavorRef": flavor}}),
                    )
                    .await;
                    wait_as(&http, port, &token, &id, "VERIFY_RESIZE").await;
                    tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
                    if rng.below(5) == 0 {
                        act(&http, port, &token, &id, json!({"revertResize": null})).await;
                    } else {
                        act(&http, port, &token, &id, json!({"confirmResize": null})).await;
                        current = next;
                    }
                    wait_as(&http, port, &token, &id, "ACTIVE").await;
                }
            }
        }
        if rng.below(3) != 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
            let (code, v) = call(
                &http,
                port,
                &token,
                reqwest::Method::DELETE,
                &format!("/v2.1/servers/{id}"),
                None,
            )
            .await;
            assert_eq!(code, 204, "{v}");
        }
    }
}

async fn act(http: &reqwest::Client, port: u16, token: &str, id: &str, body: Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, v) = loop {
        let (code, v) = call(
            http,
            port,
            token,
            reqwest::Method::POST,
            &format!("/v2.1/servers/{id}/action"),
            Some(body.clone()),
        )
        .await;
        // The previous resize's migration may still be finishing (ACTIVE already).
        if code != 409 || Instant::now() > deadline {
            break (code, v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // confirmResize answers 204, the others 202.
    assert!(code == 202 || code == 204, "{body} on {id}: {code} {v}");
}

async fn wait_as(http: &reqwest::Client, port: u16, token: &str, id: &str, want: &str) {
    if token == "alice:demo" {
        wait(http, port, id, want).await;
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = call(
            http,
            port,
            token,
            reqwest::Method::GET,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
        if v["server"]["status"] == want && v["server"]["OS-EXT-STS:task_state"].is_null() {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never {want}: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `stratus billing` with `source` args on `ledger`.
fn billing(ledger: &Path, source: &[String]) -> Proc {
    let mut args = vec![
        "billing".to_string(),
        "--ledger".into(),
        ledger.display().to_string(),
        // Small batches, so that kills land between many commits.
        "--batch".into(),
        "7".into(),
    ];
    args.extend(source.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_with(&args, &[])
}

/// SIGKILLs and restarts the subscriber at random moments until `stop`; returns the
/// last process and the number of kills.
fn killer(
    ledger: PathBuf,
    source: Vec<String>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Proc, usize)> {
    std::thread::spawn(move || {
        let mut p = billing(&ledger, &source);
        let mut kills = 0;
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
            p.kill9();
            kills += 1;
            std::thread::sleep(Duration::from_millis(rng.below(150)));
            p = billing(&ledger, &source);
        }
        (p, kills)
    })
}

/// os-simple-tenant-usage's totals per project for a window.
async fn api_totals(http: &reqwest::Client, port: u16, start: i64, end: i64) -> Value {
    let (code, v) = call(
        http,
        port,
        ADMIN,
        reqwest::Method::GET,
        &format!(
            "/v2.1/os-simple-tenant-usage?start={}&end={}",
            naive(start),
            naive(end)
        ),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v
}

fn ledger_totals(ledger: &Path, start: i64, end: i64) -> Value {
    let out = run(&[
        "billing",
        "report",
        "--ledger",
        ledger.to_str().unwrap(),
        "--start",
        &naive(start),
        "--end",
        &naive(end),
    ]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

const FIELDS: [&str; 4] = [
    "total_hours",
    "total_vcpus_usage",
    "total_memory_mb_usage",
    "total_local_gb_usage",
];

/// Differences between the API's and the ledger's totals (empty: equal).
fn differences(api: &Value, ledger: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let api = api["tenant_usages"].as_array().unwrap();
    let led = ledger["tenant_usages"].as_array().unwrap();
    if api.len() != led.len() {
        out.push(format!("{} projects vs {}", api.len(), led.len()));
        return out;
    }
    for (a, l) in api.iter().zip(led) {
        if a["tenant_id"] != l["tenant_id"] {
            out.push(format!("{} vs {}", a["tenant_id"], l["tenant_id"]));
            continue;
        }
        for f in FIELDS {
            let (x, y) = (a[f].as_f64().unwrap(), l[f].as_f64().unwrap());
            // Hours to within a millisecond of use, and the floats to 1e-9 relative.
            let close = (x - y).abs() * 3600.0 < 1e-3 && (x - y).abs() <= 1e-9 * x.abs().max(1.0);
            if !close {
                out.push(format!("{} {f}: api {x} ledger {y}", a["tenant_id"]));
            }
        }
    }
    out
}

/// The whole scenario against a running stratus on `port`, the subscriber reading
/// with `source`.
async fn scenario(port: u16, source: Vec<String>, dir: &Path) {
    let seed = seed();
    eprintln!("BILLING_SEED={seed}");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let http = reqwest::Client::new();
    let ledger = dir.join("ledger.redb");
    let t0 = now_us();

    let stop = Arc::new(AtomicBool::new(false));
    let kill = killer(ledger.clone(), source.clone(), rng.clone(), stop.clone());
    rng.next();
    let projects = ["alice:demo", "bob:other", "carol:demo"];
    let mut workers = Vec::new();
    for (i, token) in projects.iter().enumerate() {
        let r = Rng(rng.next() | 1);
        workers.push(tokio::spawn(worker(port, token.to_string(), 6 + i, r)));
    }
    // Window bounds taken while the load runs (instances cut by them on both sides).
    let mut marks = vec![t0];
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500 + rng.below(1500))).await;
        marks.push(now_us());
    }
    for w in workers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let (last, kills) = kill.join().unwrap();
    marks.push(now_us());
    last.kill9();
    assert!(kills >= 3, "only {kills} kills: the load was too short");

    // Catch up (the notifier may still be writing the last notifications): the
    // subscriber run to the end, until the whole-run window matches.
    let mut windows: Vec<(i64, i64)> = vec![(t0 - 3_600_000_000, marks[4])];
    windows.extend([
        (marks[0], marks[1]),
        (marks[1], marks[3]),
        (marks[2], marks[4]),
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut args = vec!["billing", "--ledger", ledger.to_str().unwrap(), "--once"];
        args.extend(source.iter().map(String::as_str));
        let out = run(&args);
        assert!(out.status.success(), "{out:?}");
        let (s, e) = windows[0];
        let d = differences(
            &api_totals(&http, port, s, e).await,
            &ledger_totals(&ledger, s, e),
        );
        if d.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never caught up (seed {seed}): {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (s, e) in &windows {
        let api = api_totals(&http, port, *s, *e).await;
        let led = ledger_totals(&ledger, *s, *e);
        let d = differences(&api, &led);
        assert!(
            d.is_empty(),
            "window {} .. {} (seed {seed}): {d:?}\napi {api}\nledger {led}",
            naive(*s),
            naive(*e)
        );
        assert!(!api["tenant_usages"].as_array().unwrap().is_empty());
    }
    // Every billing notification of the feed was counted, once.
    let mut cursor = 0u64;
    let mut billing_types = 0u64;
    loop {
        let (code, v) = call(
            &http,
            port,
            ADMIN,
            reqwest::Method::GET,
            &format!("/v1/notifications?cursor={cursor}&limit=1000"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let rows = v["notifications"].as_array().unwrap();
        billing_types += rows
            .iter()
            .filter(|r| {
                let n = &r["notification"];
                billing::fold::BILLING_TYPES.contains(&n["event_type"].as_str().unwrap())
                    && !n["payload"]["nova_object.data"]["launched_at"].is_null()
            })
            .count() as u64;
        let next = v["next_cursor"].as_u64().unwrap();
        if rows.is_empty() && next == cursor {
            break;
        }
        cursor = next;
    }
    let report = ledger_totals(&ledger, windows[0].0, windows[0].1);
    assert_eq!(report["counted"], billing_types, "{report}");
    eprintln!(
        "seed {seed}: {kills} kills, {billing_types} billing notifications of {cursor}, windows equal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_counts_every_second_once_while_killed_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("s");
    let serve = spawn_with(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--hosts",
            "4",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let source = vec![
        "--url".to_string(),
        format!("http://127.0.0.1:{port}"),
        "--token".into(),
        ADMIN.into(),
    ];
    scenario(port, source, dir.path()).await;

    // A project member reads its own project's notifications only (the feed's rule):
    // its ledger holds that project, with the same totals.
    let own = dir.path().join("member.redb");
    let out = run(&[
        "billing",
        "--ledger",
        own.to_str().unwrap(),
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--token",
        "bob:other",
        "--once",
    ]);
    assert!(out.status.success(), "{out:?}");
    let (s, e) = (now_us() - 3_600_000_000, now_us());
    let led = ledger_totals(&own, s, e);
    let mut api = api_totals(&reqwest::Client::new(), port, s, e).await;
    api["tenant_usages"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["tenant_id"] == "other");
    assert_eq!(led["tenant_usages"].as_array().unwrap().len(), 1, "{led}");
    assert_eq!(differences(&api, &led), Vec::<String>::new());
    drop(serve);
}

#[test]
fn billing_cli_refuses_bad_input_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.redb");
    let l = ledger.to_str().unwrap();
    let fails = |args: &[&str], want: &str| {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    fails(&["billing", "--url", "http://127.0.0.1:1"], "--ledger");
    fails(
        &[
            "billing",
            "report",
            "--ledger",
            l,
            "--start",
            "2026-01-01T00:00:00",
            "--end",
            "2026-01-02T00:00:00",
        ],
        "no ledger",
    );
    let rates = dir.path().join("rates.toml");
    std::fs::write(&rates, "[resources]\nvcpu_hours = 1.0\n").unwrap();
    fails(
        &[
            "billing",
            "--ledger",
            l,
            "--rates",
            rates.to_str().unwrap(),
            "--once",
        ],
        "unknown field",
    );
    // An empty ledger answers an empty report; a bad time is refused.
    std::fs::write(&rates, "[resources]\nvcpu_hour = 1.0\n").unwrap();
    let empty = dir.path().join("empty.redb");
    drop(billing::Ledger::open(&empty).unwrap());
    let e = empty.to_str().unwrap();
    let out = run(&[
        "billing",
        "report",
        "--ledger",
        e,
        "--start",
        "2026-01-01T00:00:00",
        "--end",
        "2026-01-02T00:00:00Z",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenant_usages"], json!([]));
    assert_eq!(v["total_cost"], json!(0.0));
    fails(
        &[
            "billing",
            "report",
            "--ledger",
            e,
            "--start",
            "yesterday",
            "--end",
            "2026-01-02T00:00:00",
        ],
        "yesterday",
    );
    fails(
        &[
            "billing",
            "report",
            "--ledger",
            e,
            "--start",
            "2026-01-03T00:00:00",
            "--end",
            "2026-01-02T00:00:00",
        ],
        "before",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_counts_every_second_once_while_killed_on_jetstream() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("s");
    let serve = spawn_with(
        &[
            "serve",
            "--nats",
            &url,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--hosts",
            "4",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let source = vec!["--nats".to_string(), url.clone()];
    scenario(port, source, dir.path()).await;
    drop(serve);
    drop(nats);
}
