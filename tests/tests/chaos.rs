//! Property-style end-to-end tests over real HTTP: the control plane stays correct
//! under concurrent, random and conflicting requests, and nothing is ever left stuck.
//!
//! Randomness comes from a seeded xorshift, so a failing seed can be re-run; timing is
//! still real, so the interleavings differ between runs (that is the point).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{ClaimId, InstanceId};
use eventlog::StreamName;
use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ADMIN: &str = "admin:admin";
const ALICE: &str = "alice:proj-a";
const BOB: &str = "bob:proj-b";

/// A tiny deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A cloneable HTTP client for spawned tasks (the harness itself is not shared).
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn of(h: &Harness) -> Client {
        Client {
            http: h.http.clone(),
            base: h.base(),
        }
    }

    /// A request to an absolute URL or a path under /v2.1: status and JSON (Null if empty).
    async fn req(&self, token: &str, method: M, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut rb = self
            .http
            .request(method, url)
            .header("X-Auth-Token", token)
            .header("OpenStack-API-Version", "compute 2.96");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        let code = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (code, v)
    }
}

/// Polls until the server is gone or idle (task_state null, not BUILD); returns its
/// status ("GONE" for 404).
async fn settle(h: &Harness, id: &str, deadline: Instant) -> String {
    loop {
        let (code, v) = h.req(ADMIN, M::GET, &format!("/servers/{id}"), None).await;
        if code == 404 {
            return "GONE".into();
        }
        assert_eq!(code, 200, "show {id}: {v}");
        let s = &v["server"];
        if s["OS-EXT-STS:task_state"].is_null() && s["status"] != "BUILD" {
            return s["status"].as_str().unwrap_or("").to_string();
        }
        assert!(Instant::now() < deadline, "server {id} stuck: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every placement invariant that must hold once nothing is in progress; returns the
/// violations (empty when all hold).
fn placement_violations(h: &Harness) -> Vec<String> {
    let v = h.stack.engine.world().read();
    let mut bad = vec![];
    let host_name = |s: &eventlog::Subject| -> String {
        v.hosts()
            .get(s)
            .map(|r| r.state.spec.name.to_string())
            .unwrap_or_else(|| format!("<unknown host subject {s}>"))
    };
    for (id, row) in v.instances() {
        let Some(i) = row.state() else { continue };
        let held: BTreeSet<(String, ClaimId)> = i
            .held_claims()
            .into_iter()
            .map(|(h, c)| (h.to_string(), c))
            .collect();
        let actual: BTreeSet<(String, ClaimId)> = v
            .claims()
            .get(id)
            .map(|set| set.iter().map(|(s, c)| (host_name(s), *c)).collect())
            .unwrap_or_default();
        if i.deleted && !actual.is_empty() {
            bad.push(format!("deleted instance {id} still holds {actual:?}"));
        }
        if held != actual {
            bad.push(format!(
                "instance {id} ({} task {:?}) holds {actual:?}, should hold {held:?}",
                i.status(),
                i.task_state
            ));
        }
    }
    for (id, set) in v.claims() {
        if !v.instances().contains_key(id) {
            bad.push(format!("claims {set:?} of unknown instance {id}"));
        }
    }
    for (subject, row) in v.hosts() {
        let host = &row.state;
        let cap = host.spec.capacity();
        let u = host.used;
        if u.vcpus > cap.vcpus || u.ram_mb > cap.ram_mb || u.disk_gb > cap.disk_gb {
            bad.push(format!(
                "host {} over capacity: used {u:?} > {cap:?}",
                host.spec.name
            ));
        }
        let sum = host
            .allocations
            .values()
            .fold(domain::host::Resources::default(), |acc, a| {
                acc.plus(a.resources)
            });
        if sum != u {
            bad.push(format!(
                "host {}: used {u:?} != sum of allocations {sum:?}",
                host.spec.name
            ));
        }
        for (claim, a) in &host.allocations {
            let indexed = v
                .claims()
                .get(&a.instance)
                .is_some_and(|s| s.contains(&(subject.clone(), *claim)));
            if !indexed {
                bad.push(format!(
                    "host {} allocation {claim:?} of {} missing from the claims index",
                    host.spec.name, a.instance
                ));
            }
        }
    }
    bad
}

/// Polls (placement releases orphans asynchronously) until the invariants hold.
async fn assert_placement_consistent(h: &Harness) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let bad = placement_violations(h);
        if bad.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "placement never became consistent:\n{}",
            bad.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ACCEPTED: [u16; 6] = [202, 204, 400, 403, 404, 409];

/// One random request against one of `servers`; returns (label, code) or a failure.
async fn random_action(
    c: &Client,
    rng: &mut Rng,
    servers: &[(String, &'static str)],
) -> Result<(&'static str, u16), String> {
    let (id, owner) = &servers[rng.below(servers.len() as u64) as usize];
    let other = if *owner == ALICE { BOB } else { ALICE };
    // Mostly the owner; sometimes admin (overrides locks); sometimes the other project
    // (must always be 404: it cannot even see the server).
    let who = match rng.below(10) {
        0 => other,
        1 => ADMIN,
        _ => owner,
    };
    let pick = rng.below(1000);
    if pick < 2 {
        let (code, v) = c.req(who, M::DELETE, &format!("/servers/{id}"), None).await;
        check("delete", who, other, id, code, &v)?;
        return Ok(("delete", code));
    }
    let (label, body, who): (&'static str, Value, &str) = match pick % 19 {
        0 => ("pause", json!({"pause": null}), who),
        1 => ("unpause", json!({"unpause": null}), who),
        2 => ("suspend", json!({"suspend": null}), who),
        3 => ("resume", json!({"resume": null}), who),
        4 => ("os-stop", json!({"os-stop": null}), who),
        5 => ("os-start", json!({"os-start": null}), who),
        6 => ("reboot-soft", json!({"reboot": {"type": "SOFT"}}), who),
        7 => ("reboot-hard", json!({"reboot": {"type": "HARD"}}), who),
        8 => ("shelve", json!({"shelve": null}), who),
        9 => ("unshelve", json!({"unshelve": null}), who),
        10 => ("resize-2", json!({"resize": {"flavorRef": "2"}}), who),
        11 => ("resize-3", json!({"resize": {"flavorRef": "3"}}), who),
        12 => ("confirmResize", json!({"confirmResize": null}), who),
        13 => ("revertResize", json!({"revertResize": null}), who),
        14 => (
            "migrate",
            json!({"migrate": null}),
            if who == other { other } else { ADMIN },
        ),
        15 => (
            "os-migrateLive",
            json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
            if who == other { other } else { ADMIN },
        ),
        16 => ("lock", json!({"lock": null}), who),
        17 => ("unlock", json!({"unlock": null}), who),
        _ => ("pause", json!({"pause": null}), who),
    };
    let (code, v) = c
        .req(who, M::POST, &format!("/servers/{id}/action"), Some(body))
        .await;
    check(label, who, other, id, code, &v)?;
    Ok((label, code))
}

fn check(
    label: &str,
    who: &str,
    other: &str,
    id: &str,
    code: u16,
    v: &Value,
) -> Result<(), String> {
    if !ACCEPTED.contains(&code) {
        return Err(format!("{label} on {id} as {who}: HTTP {code}: {v}"));
    }
    if who == other && code != 404 {
        return Err(format!(
            "{label} on {id} by another project: HTTP {code} (want 404): {v}"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_random_actions_never_leave_anything_stuck() {
    let started = Instant::now();
    let h = Harness::start(|o| {
        o.hosts = 3;
        // Small enough that resizes (which hold two claims) and migrations compete for
        // disk: 3 x 200 GB against up to 12 x 40 GB x 2.
        o.host_size = domain::host::Resources {
            vcpus: 16,
            ram_mb: 32 * 1024,
            disk_gb: 200,
        };
        o.sim.fail_rate = 0.05;
        o.sim.delay = Duration::from_millis(3);
        // A hung hypervisor for hard reboots: only the reconciler's timeout (retry,
        // then fault) ends those operations.
        o.sim.stall_tasks = HashSet::from([domain::TaskState::RebootingHard]);
        o.config.task_timeout_secs = 1;
        o.config.max_attempts = 2;
        o.reconcile_every = Duration::from_millis(200);
    })
    .await;

    let mut servers: Vec<(String, &'static str)> = vec![];
    for n in 0..12 {
        let owner = if n % 2 == 0 { ALICE } else { BOB };
        servers.push((h.create(owner, &format!("chaos-{n}"), "1").await, owner));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (id, _) in &servers {
        // A spawn may fail (fail_rate): ERROR is a legitimate resting state.
        let st = settle(&h, id, deadline).await;
        assert!(st == "ACTIVE" || st == "ERROR", "{id}: {st}");
    }

    // Concurrent random clients.
    let servers = Arc::new(servers);
    let stop_at = Instant::now() + Duration::from_secs(4);
    let mut tasks = vec![];
    // CHAOS_SEED picks another deterministic sequence of requests (default 1).
    let base: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in base * 16..base * 16 + 4 {
        let c = Client::of(&h);
        let servers = servers.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed);
            let mut stats: BTreeMap<(&'static str, u16), u32> = BTreeMap::new();
            while Instant::now() < stop_at {
                let (label, code) = random_action(&c, &mut rng, &servers).await?;
                *stats.entry((label, code)).or_default() += 1;
                let pause = rng.below(15);
                if pause > 0 {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
            Ok::<_, String>(stats)
        }));
    }
    let mut stats: BTreeMap<(&'static str, u16), u32> = BTreeMap::new();
    let mut failures = vec![];
    for t in tasks {
        match t.await.expect("client task") {
            Ok(s) => {
                for (k, n) in s {
                    *stats.entry(k).or_default() += n;
                }
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "unexpected responses:\n{}",
        failures.join("\n")
    );
    let total: u32 = stats.values().sum();
    let accepted: u32 = stats
        .iter()
        .filter(|((_, c), _)| *c == 202 || *c == 204)
        .map(|(_, n)| *n)
        .sum();
    eprintln!("{total} requests, {accepted} accepted: {stats:?}");
    assert!(accepted >= 20, "too few actions were accepted: {stats:?}");

    // Nothing stays in progress.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut end: BTreeMap<String, u32> = BTreeMap::new();
    for (id, _) in servers.iter() {
        *end.entry(settle(&h, id, deadline).await).or_default() += 1;
    }
    eprintln!("final states: {end:?}");
    {
        let v = h.stack.engine.world().read();
        assert_eq!(v.decode_errors, 0);
        for (id, _) in servers.iter() {
            let iid = InstanceId::parse(id).unwrap();
            let i = v.instance(&iid).expect("known instance");
            assert!(
                i.deleted || (i.op.is_none() && i.task_state.is_none()),
                "{id} still busy: {:?} {:?}",
                i.task_state,
                i.op
            );
        }
    }
    assert_placement_consistent(&h).await;
    // What the chaos exercised (failures, retries, timeouts), for the record.
    let mut kinds: BTreeMap<String, u32> = BTreeMap::new();
    for (id, _) in servers.iter() {
        let iid = InstanceId::parse(id).unwrap();
        for s in replay::history(h.stack.engine.log().as_ref(), iid)
            .await
            .unwrap()
        {
            *kinds.entry(s.event_type).or_default() += 1;
        }
    }
    eprintln!("events: {kinds:?}");

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
    eprintln!(
        "replayed {} events; test took {:?}",
        report.events,
        started.elapsed()
    );
}

async fn task_starts(h: &Harness, id: InstanceId) -> usize {
    replay::history(h.stack.engine.log().as_ref(), id)
        .await
        .unwrap()
        .iter()
        .filter(|s| s.event_type == "instance.task_started")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_actions_racing_on_one_server_one_wins() {
    const N: usize = 8;
    let h = Harness::start(|o| {
        o.hosts = 2;
        // Slow enough that every racer sees the operation in progress.
        o.sim.delay = Duration::from_millis(100);
    })
    .await;
    let id = h.create(ALICE, "contended", "1").await;
    h.wait(&id, "ACTIVE").await;

    let race = |method: M, path: String, body: Option<Value>| {
        let c = Client::of(&h);
        async move {
            let mut tasks = vec![];
            for _ in 0..N {
                let (c, m, p, b) = (c.clone(), method.clone(), path.clone(), body.clone());
                tasks.push(tokio::spawn(async move { c.req(ALICE, m, &p, b).await }));
            }
            let mut out = vec![];
            for t in tasks {
                out.push(t.await.expect("racer"));
            }
            out
        }
    };

    let iid = InstanceId::parse(&id).unwrap();
    let starts_before = task_starts(&h, iid).await;
    let results = race(
        M::POST,
        format!("/servers/{id}/action"),
        Some(json!({"pause": null})),
    )
    .await;
    let winners = results.iter().filter(|(c, _)| *c == 202).count();
    assert_eq!(winners, 1, "{results:?}");
    let prefix = format!("Cannot 'pause' instance {id} while it is in ");
    for (code, v) in results.iter().filter(|(c, _)| *c != 202) {
        assert_eq!(*code, 409, "{v}");
        let msg = v["conflictingRequest"]["message"].as_str().unwrap_or("");
        assert!(
            msg == format!("{prefix}task_state pausing")
                || msg == format!("{prefix}vm_state paused"),
            "{v}"
        );
        assert_eq!(v["conflictingRequest"]["code"], 409, "{v}");
    }
    h.wait(&id, "PAUSED").await;
    assert_eq!(
        task_starts(&h, iid).await,
        starts_before + 1,
        "exactly one pause task started"
    );

    let results = race(M::DELETE, format!("/servers/{id}"), None).await;
    assert!(
        results.iter().all(|(c, _)| *c == 204 || *c == 404),
        "{results:?}"
    );
    assert!(results.iter().any(|(c, _)| *c == 204), "{results:?}");
    h.wait(&id, "GONE").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held = {
            let v = h.stack.engine.world().read();
            v.claims().get(&iid).cloned().unwrap_or_default().len()
                + v.hosts()
                    .values()
                    .flat_map(|r| r.state.allocations.values())
                    .filter(|a| a.instance == iid)
                    .count()
        };
        if held == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "claim of {id} never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        placement_violations(&h).is_empty(),
        "{:?}",
        placement_violations(&h)
    );
    h.stack.stop().await;
}

fn ids(v: &Value) -> Vec<String> {
    v["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("no servers in {v}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

async fn positions(h: &Harness) -> Vec<u64> {
    let mut out = vec![];
    for s in ["api", "cell0", "cell1"] {
        let s = StreamName::new(s).unwrap();
        out.push(h.stack.engine.log().last_stream_seq(&s).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paging_and_filters_through_the_whole_stack() {
    let h = Harness::start(|o| o.hosts = 2).await;
    let c = Client::of(&h);
    let mut alice = vec![];
    let mut bob = vec![];
    for n in 0..6 {
        alice.push(h.create(ALICE, &format!("a-web-{n}"), "1").await);
        if n < 3 {
            bob.push(h.create(BOB, &format!("b-db-{n}"), "1").await);
        }
    }
    for id in alice.iter().chain(&bob) {
        h.wait(id, "ACTIVE").await;
    }
    let paused = alice[2].clone();
    h.action(ALICE, &paused, json!({"pause": null}), 202).await;
    h.wait(&paused, "PAUSED").await;

    // Pages of 3, newest first, following the next links, no duplicates.
    let newest_first: Vec<String> = alice.iter().rev().cloned().collect();
    for path in ["/servers", "/servers/detail"] {
        let mut seen = vec![];
        let mut url = format!("{path}?limit=3");
        let mut pages = 0;
        loop {
            let (code, v) = c.req(ALICE, M::GET, &url, None).await;
            assert_eq!(code, 200, "{url}: {v}");
            let page = ids(&v);
            assert!(page.len() <= 3, "{v}");
            seen.extend(page);
            pages += 1;
            assert!(pages <= 5, "paging does not end: {seen:?}");
            match v["servers_links"][0]["href"].as_str() {
                Some(next) => {
                    assert!(next.contains("limit=3"), "{next}");
                    assert!(next.contains("marker="), "{next}");
                    url = next.to_string();
                }
                None => break,
            }
        }
        // 6 servers in pages of 3: two full pages (with links) and an empty last one.
        assert_eq!(pages, 3, "{path}");
        assert_eq!(seen, newest_first, "{path}");
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len());
    }
    // An explicit marker: the page after the 2nd newest.
    let (code, v) = c
        .req(
            ALICE,
            M::GET,
            &format!("/servers?limit=2&marker={}", newest_first[1]),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ids(&v), newest_first[2..4].to_vec());

    // Filters.
    let (_, v) = c.req(ALICE, M::GET, "/servers?status=PAUSED", None).await;
    assert_eq!(ids(&v), vec![paused.clone()]);
    let (_, v) = c
        .req(ALICE, M::GET, "/servers/detail?status=ACTIVE", None)
        .await;
    let mut active: Vec<String> = newest_first.clone();
    active.retain(|i| i != &paused);
    assert_eq!(ids(&v), active);
    for s in v["servers"].as_array().unwrap() {
        assert_eq!(s["status"], "ACTIVE");
    }
    let (_, v) = c.req(ALICE, M::GET, "/servers?name=web-1", None).await;
    assert_eq!(ids(&v), vec![alice[1].clone()]);
    let (_, v) = c.req(ALICE, M::GET, "/servers?name=b-db", None).await;
    assert_eq!(
        ids(&v),
        Vec::<String>::new(),
        "filters never widen the project"
    );

    // Admin: all tenants, project filter, and its own (empty) project.
    let (code, v) = c.req(ADMIN, M::GET, "/servers?all_tenants=1", None).await;
    assert_eq!(code, 200, "{v}");
    let all: HashSet<String> = ids(&v).into_iter().collect();
    let want: HashSet<String> = alice.iter().chain(&bob).cloned().collect();
    assert_eq!(all, want);
    let (_, v) = c
        .req(
            ADMIN,
            M::GET,
            "/servers?all_tenants=1&project_id=proj-b",
            None,
        )
        .await;
    let mut bob_newest: Vec<String> = bob.iter().rev().cloned().collect();
    assert_eq!(ids(&v), bob_newest);
    let (_, v) = c.req(ADMIN, M::GET, "/servers", None).await;
    assert_eq!(ids(&v), Vec::<String>::new());

    // A non-admin never sees the other project.
    let (_, v) = c.req(BOB, M::GET, "/servers/detail", None).await;
    assert_eq!(ids(&v), bob_newest);
    let (code, v) = c.req(BOB, M::GET, "/servers?all_tenants=1", None).await;
    assert!(
        code == 403 || (code == 200 && ids(&v) == bob_newest),
        "{code} {v}"
    );
    let (code, v) = c
        .req(BOB, M::GET, &format!("/servers?marker={}", alice[0]), None)
        .await;
    assert_eq!(code, 400, "another project's marker is unknown: {v}");

    let before = positions(&h).await;
    let applied = h.stack.engine.world().read().events_applied;
    for id in &alice {
        let (code, v) = c.req(BOB, M::GET, &format!("/servers/{id}"), None).await;
        assert_eq!(code, 404, "{v}");
        assert_eq!(
            v["itemNotFound"]["message"],
            format!("Instance {id} could not be found."),
            "{v}"
        );
        for body in [
            json!({"pause": null}),
            json!({"os-stop": null}),
            json!({"lock": null}),
            json!({"resize": {"flavorRef": "2"}}),
        ] {
            let (code, v) = c
                .req(BOB, M::POST, &format!("/servers/{id}/action"), Some(body))
                .await;
            assert_eq!(code, 404, "{v}");
        }
        let (code, v) = c
            .req(
                BOB,
                M::PUT,
                &format!("/servers/{id}"),
                Some(json!({"server": {"name": "stolen"}})),
            )
            .await;
        assert_eq!(code, 404, "{v}");
        let (code, v) = c.req(BOB, M::DELETE, &format!("/servers/{id}"), None).await;
        assert_eq!(code, 404, "{v}");
    }
    assert_eq!(positions(&h).await, before, "nothing was appended");
    assert_eq!(h.stack.engine.world().read().events_applied, applied);

    // Bob deleting his own server removes it from his listing only.
    let (code, _) = c
        .req(BOB, M::DELETE, &format!("/servers/{}", bob[0]), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&bob[0], "GONE").await;
    bob_newest.retain(|i| i != &bob[0]);
    let (_, v) = c.req(BOB, M::GET, "/servers", None).await;
    assert_eq!(ids(&v), bob_newest);
    let (_, v) = c.req(ALICE, M::GET, "/servers", None).await;
    assert_eq!(ids(&v), newest_first);
    h.stack.stop().await;
}
