//! `stratus bench --audit`: the audit API's costs on the all-in-one (embedded store, or
//! JetStream with `--nats`), over real HTTP.
//!
//! 1. Server-sent-event fan-out: `subscribers` clients follow
//!    `GET /v1/events/stream?instance=<id>` while one client locks and unlocks that
//!    server until it has `events` events; each subscriber counts what it receives and
//!    the delay from the commit's `occurred_at` to its arrival.
//! 2. State at an instant and history of that server (`events` events): the fold alone
//!    ([`replay::audit::state_at`], [`replay::visit_history`]) and through HTTP
//!    (`GET /v1/instances/{id}/state?at=`, `GET /v1/instances/{id}/events`). Goal: under
//!    10 ms. State-at is measured as the API answers it (from the `instance_folds`
//!    snapshots, [`replay::audit::state_at_indexed`]) at the latest instant and at
//!    random events of the history, and as the plain fold of every commit (the former
//!    path, for comparison); history unpaged and by pages of 1,000 (`limit`/`marker`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::json;

use crate::stack::{Stack, StackOptions};

/// Figures of one audit benchmark.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// Events of the instance.
    pub events: u64,
    /// Lock/unlock events appended while the subscribers listened, and the seconds it
    /// took.
    pub appended: u64,
    pub append_seconds: f64,
    /// Subscribers, events they received in all, and the seconds from the first append
    /// to the last delivery.
    pub subscribers: usize,
    pub delivered: u64,
    pub deliver_seconds: f64,
    /// Delay from commit to arrival at a subscriber (ms): p50, p99, max.
    pub latency_ms: (f64, f64, f64),
    /// (p50, p99) ms of: the state-at fold, the history fold, state-at over HTTP, the
    /// event history over HTTP.
    pub state_fold_ms: (f64, f64),
    pub history_fold_ms: (f64, f64),
    pub state_http_ms: (f64, f64),
    pub history_http_ms: (f64, f64),
    /// (p50, p99) ms of: the state-at plain fold (every commit, no snapshot), the
    /// snapshot-assisted fold at random events' positions and times, state-at over HTTP
    /// at those, one page of 1,000 events over HTTP at a random marker.
    pub state_plain_ms: (f64, f64),
    pub state_random_ms: (f64, f64),
    pub state_http_random_ms: (f64, f64),
    pub history_page_http_ms: (f64, f64),
    /// Where the plain fold's time goes (median ms of 10): reading the instance's
    /// commits (redb or JetStream, and decoding their envelopes), decoding the event
    /// payloads (postcard), folding them with `evolve`.
    pub profile_ms: (f64, f64, f64),
    /// Pages of 1,000 in the whole history and the ms to walk them all.
    pub history_pages: usize,
    pub history_walk_ms: f64,
}

/// A reproducible pseudo-random index below `n` (xorshift), so runs ask the same
/// instants.
fn pick(state: &mut u64, n: usize) -> usize {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % n.max(1) as u64) as usize
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn time_it<F, Fut>(n: usize, mut f: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((pct(&mut v, 0.5), pct(&mut v, 0.99)))
}

/// One subscriber: reads until `want` events arrived (or `deadline`); returns the
/// arrival delays (ms) and when the last one arrived.
async fn subscribe(
    http: reqwest::Client,
    url: String,
    want: u64,
    deadline: Instant,
) -> anyhow::Result<(Vec<f64>, Instant)> {
    let mut r = http
        .get(&url)
        .header("X-Auth-Token", "bench:audit")
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("stream answered {}", r.status());
    }
    let mut buf = String::new();
    let mut delays = Vec::with_capacity(want as usize);
    let mut last = Instant::now();
    while (delays.len() as u64) < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(chunk) = tokio::time::timeout(left, r.chunk()).await else {
            break;
        };
        let Some(chunk) = chunk? else { break };
        let now_us = eventlog::now_micros();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(i) = block.find("\"occurred_at\":\"") {
                let rest = &block[i + 15..];
                let t = rest.split('"').next().unwrap_or_default();
                if let Some(at) = replay::audit::parse_time(t) {
                    delays.push((now_us - at.0) as f64 / 1000.0);
                    last = Instant::now();
                }
            }
        }
    }
    Ok((delays, last))
}

/// Runs the audit benchmark.
pub async fn run(
    events: u64,
    subscribers: usize,
    nats: Option<String>,
) -> anyhow::Result<AuditReport> {
    let data_dir = std::env::temp_dir().join(format!("stratus-bench-{}", uuid::Uuid::new_v4()));
    let mut so = StackOptions::new(&data_dir);
    so.listen = "127.0.0.1:0".parse()?;
    so.auth = crate::stack::AuthKind::NoAuth;
    so.identity_listen = "127.0.0.1:0".parse()?;
    so.nats = nats;
    let stack = Stack::start(so).await?;
    let r = measure(&stack, events, subscribers).await;
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    r
}

async fn measure(stack: &Stack, events: u64, subscribers: usize) -> anyhow::Result<AuditReport> {
    let base = format!("http://{}", stack.addr);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(subscribers + 4)
        .build()?;
    let r = http
        .post(format!("{base}/v2.1/servers"))
        .header("X-Auth-Token", "bench:audit")
        .header("OpenStack-API-Version", "compute 2.90")
        .json(&json!({"server": {"name": "audited", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1", "networks": "none"}}))
        .send()
        .await?;
    if r.status().as_u16() != 202 {
        bail!("create answered {}", r.status());
    }
    let v: serde_json::Value = r.json().await?;
    let id = v["server"]["id"]
        .as_str()
        .context("no server id")?
        .to_string();
    let iid = domain::InstanceId::parse(&id).context("server id")?;
    // Wait until it is ACTIVE (its build events all written).
    let t0 = Instant::now();
    loop {
        let v: serde_json::Value = http
            .get(format!("{base}/v2.1/servers/{id}"))
            .header("X-Auth-Token", "bench:audit")
            .send()
            .await?
            .json()
            .await?;
        if v["server"]["status"] == "ACTIVE" && v["server"]["OS-EXT-STS:task_state"].is_null() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("server never ACTIVE: {v}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = stack.engine.log().clone();
    let so_far = replay::audit::instance_commits(log.as_ref(), iid, None)
        .await?
        .iter()
        .map(|c| c.events.len() as u64)
        .sum::<u64>();
    let toggles = events.saturating_sub(so_far);

    // Subscribers first, then the appends they follow.
    let url =
        format!("{base}/v1/events/stream?instance={id}&type=instance.locked,instance.unlocked");
    // (generous: the appends alone may take minutes on a loaded machine)
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        subs.push(tokio::spawn(subscribe(
            http.clone(),
            url.clone(),
            toggles,
            deadline,
        )));
    }
    // Let every subscription start at the current end before the first append.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start = Instant::now();
    for n in 0..toggles {
        let act = if n % 2 == 0 { "lock" } else { "unlock" };
        let r = http
            .post(format!("{base}/v2.1/servers/{id}/action"))
            .header("X-Auth-Token", "bench:audit")
            .json(&json!({act: null}))
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!("{act} answered {}", r.status());
        }
    }
    let append_seconds = start.elapsed().as_secs_f64();
    let mut delays = Vec::new();
    let mut delivered = 0u64;
    let mut last = start;
    for s in subs {
        let (d, l) = s.await??;
        delivered += d.len() as u64;
        delays.extend(d);
        last = last.max(l);
    }
    let deliver_seconds = last.duration_since(start).as_secs_f64();
    let latency_ms = (
        pct(&mut delays, 0.5),
        pct(&mut delays, 0.99),
        pct(&mut delays, 1.0),
    );

    // State at now and history of the instance, folded and over HTTP.
    let cell = stack
        .engine
        .world()
        .read()
        .instances()
        .get(&iid)
        .and_then(|r| r.cell_subject.clone());
    let now = replay::audit::At::Time(domain::Timestamp(eventlog::now_micros()));
    let folded = replay::audit::state_at(log.as_ref(), iid, cell.clone(), &now)
        .await?
        .context("no state")?;
    let total = folded.events;
    let state_plain_ms = time_it(20, || {
        let (log, cell, now) = (log.clone(), cell.clone(), now.clone());
        async move {
            replay::audit::state_at(log.as_ref(), iid, cell, &now).await?;
            Ok(())
        }
    })
    .await?;
    let mut profile = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..10 {
        let t = Instant::now();
        let commits = replay::audit::instance_commits(log.as_ref(), iid, cell.clone()).await?;
        profile.0.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let mut events = Vec::new();
        for c in &commits {
            for e in &c.events {
                events.push(projections::codec::decode(e)?);
            }
        }
        profile.1.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let mut state = None;
        for e in &events {
            if let domain::Event::Instance(ie) = e {
                state = domain::instance::evolve(state.take(), ie);
            }
        }
        profile.2.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(state.is_some(), "no state folded");
    }
    let profile_ms = (
        pct(&mut profile.0, 0.5),
        pct(&mut profile.1, 0.5),
        pct(&mut profile.2, 0.5),
    );
    // As the API answers: snapshots picked from the views, then the ranged fold.
    let indexed = |at: replay::audit::At| {
        let (log, cell, world) = (log.clone(), cell.clone(), stack.engine.world().clone());
        async move {
            let snaps = {
                let views = world.read();
                replay::audit::pick_snapshots(views.instance_folds(), iid, cell.as_ref(), &at)
            };
            let s = replay::audit::state_at_indexed(log.as_ref(), iid, cell, &at, &snaps)
                .await?
                .context("no state")?;
            anyhow::Ok(s)
        }
    };
    let fast = indexed(now.clone()).await?;
    if fast.events != folded.events || fast.last != folded.last || fast.state != folded.state {
        bail!("the snapshot-assisted fold differs from the plain fold");
    }
    let state_fold_ms = time_it(50, || {
        let f = indexed(now.clone());
        async move {
            f.await?;
            Ok(())
        }
    })
    .await?;
    // Random events of the history: their positions and times.
    let commits = replay::audit::instance_commits(log.as_ref(), iid, cell.clone()).await?;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let ats: Vec<(replay::audit::At, String)> = (0..100)
        .map(|n| {
            let c = &commits[pick(&mut seed, commits.len())];
            if n % 2 == 0 {
                let p = format!("{}:{}", c.stream, c.stream_seq);
                (replay::audit::At::parse(&p).expect("a position"), p)
            } else {
                let t = domain::Timestamp(c.meta.occurred_at);
                (replay::audit::At::Time(t), replay::audit::format_time(t))
            }
        })
        .collect();
    let mut next_at = 0usize;
    let state_random_ms = time_it(100, || {
        let f = indexed(ats[next_at % ats.len()].0.clone());
        next_at += 1;
        async move {
            f.await?;
            Ok(())
        }
    })
    .await?;
    let history_fold_ms = time_it(20, || {
        let log = log.clone();
        async move {
            // Every step is looked at with the state after it, as `replay history`
            // prints them.
            let mut locked = 0usize;
            let steps = replay::visit_history(log.as_ref(), iid, |s| {
                locked += usize::from(s.state.is_some_and(|i| i.locked.is_some()));
            })
            .await?;
            std::hint::black_box((steps, locked));
            Ok(())
        }
    })
    .await?;
    let at = replay::audit::format_time(domain::Timestamp(eventlog::now_micros()));
    let http = Arc::new(http);
    let state_http_ms = time_it(50, || {
        let (http, u) = (
            http.clone(),
            format!("{base}/v1/instances/{id}/state?at={at}"),
        );
        async move {
            let r = http
                .get(u)
                .header("X-Auth-Token", "bench:audit")
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("state answered {}", r.status());
            }
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    let mut next_at = 0usize;
    let state_http_random_ms = time_it(100, || {
        let (http, at) = (http.clone(), ats[next_at % ats.len()].1.clone());
        next_at += 1;
        let u = format!("{base}/v1/instances/{id}/state?at={at}");
        async move {
            let r = http
                .get(u)
                .header("X-Auth-Token", "bench:audit")
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("state at {at} answered {}", r.status());
            }
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    // Every page of 1,000, walked once; then random pages by their markers.
    let t = Instant::now();
    let mut markers: Vec<String> = Vec::new();
    loop {
        let q = match markers.last() {
            Some(m) => format!("limit=1000&marker={m}"),
            None => "limit=1000".to_string(),
        };
        let v: serde_json::Value = http
            .get(format!("{base}/v1/instances/{id}/events?{q}"))
            .header("X-Auth-Token", "bench:audit")
            .send()
            .await?
            .json()
            .await?;
        match v["next_marker"].as_str() {
            Some(m) => markers.push(m.to_string()),
            None => break,
        }
    }
    let history_walk_ms = t.elapsed().as_secs_f64() * 1000.0;
    let history_pages = markers.len() + 1;
    let history_page_http_ms = time_it(50, || {
        // A full page: after a random page but the last one (or the first page).
        let u = match markers.len() {
            0 | 1 => format!("{base}/v1/instances/{id}/events?limit=1000"),
            n => format!(
                "{base}/v1/instances/{id}/events?limit=1000&marker={}",
                markers[pick(&mut seed, n - 1)]
            ),
        };
        let http = http.clone();
        async move {
            let r = http
                .get(u)
                .header("X-Auth-Token", "bench:audit")
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("events page answered {}", r.status());
            }
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    let history_http_ms = time_it(20, || {
        let (http, u) = (http.clone(), format!("{base}/v1/instances/{id}/events"));
        async move {
            let r = http
                .get(u)
                .header("X-Auth-Token", "bench:audit")
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("events answered {}", r.status());
            }
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    Ok(AuditReport {
        events: total,
        appended: toggles,
        append_seconds,
        subscribers,
        delivered,
        deliver_seconds,
        latency_ms,
        state_fold_ms,
        history_fold_ms,
        state_http_ms,
        history_http_ms,
        state_plain_ms,
        state_random_ms,
        state_http_random_ms,
        history_page_http_ms,
        history_pages,
        history_walk_ms,
        profile_ms,
    })
}
