//! Server groups across real processes on JetStream (issue 10, item 4): builds of
//! anti-affinity and affinity groups decided by two scheduler processes, racing for
//! fewer free hosts than builds, never break the group's policy (two anti-affinity
//! members on one host beyond the rule, affinity members on two hosts); the losers fail
//! with NoValidHost and nothing stays in a task. And a member whose build request never
//! came (API killed at a failpoint) is released after the grace.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{call, free_port, sigterm, spawn, spawn_api, IMAGE};
use eventlog::{EventLog, JetStreamLog, JetStreamOptions, StreamName};
use serde_json::{json, Value};

/// Creates a group at 2.64 (`policy` + `rules`); returns its id.
async fn group(
    http: &reqwest::Client,
    port: u16,
    name: &str,
    policy: &str,
    rules: Value,
) -> String {
    let r = http
        .post(format!("http://127.0.0.1:{port}/v2.1/os-server-groups"))
        .header("X-Auth-Token", "alice:demo")
        .header("OpenStack-API-Version", "compute 2.64")
        .json(&json!({"server_group": {"name": name, "policy": policy, "rules": rules}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    v["server_group"]["id"].as_str().unwrap().to_string()
}

/// Waits until the server leaves its task: (status, hostId, fault message).
async fn settled(http: &reqwest::Client, port: u16, id: &str) -> (String, String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = call(
            http,
            port,
            reqwest::Method::GET,
            &format!("/servers/{id}"),
            None,
        )
        .await;
        let s = &v["server"];
        let st = s["status"].as_str().unwrap_or("").to_string();
        if matches!(st.as_str(), "ACTIVE" | "ERROR") && s["OS-EXT-STS:task_state"].is_null() {
            return (
                st,
                s["hostId"].as_str().unwrap_or("").to_string(),
                s["fault"]["message"].as_str().unwrap_or("").to_string(),
            );
        }
        assert!(Instant::now() < deadline, "{id} stuck: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two scheduler processes (both packing on RAM, so they prefer the same host) and two
/// API processes; 3 hosts; 9 concurrent builds in a plain anti-affinity group (3 fit),
/// 9 in one with `max_server_per_host` 2 (6 fit) and 6 in an affinity group, all at
/// once. Through the API: exactly the builds that fit are ACTIVE, on hosts within the
/// rule (the affinity members all on one host), the others ERROR with NoValidHost, none
/// left in a task. Folded from the log commit by commit: no group ever counted its
/// members beyond its policy, and at the end every ACTIVE member is recorded on its
/// instance's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_policies_hold_with_racing_scheduler_processes() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let sched = |name: &str| {
        spawn(
            &["scheduler", "--nats", &url, "--ram-weight-multiplier", "-1"],
            &d(name),
        )
    };
    let (s1, s2) = (sched("s1"), sched("s2"));
    let (p1, p2) = (free_port(), free_port());
    let a1 = spawn_api(&url, p1, &d("a1"));
    let a2 = spawn_api(&url, p2, &d("a2"));
    let c = spawn(
        &["compute", "--nats", &url, "--host", "h", "--hosts", "3"],
        &d("c"),
    );
    let http = reqwest::Client::new();
    let plain = group(&http, p1, "plain", "anti-affinity", json!({})).await;
    let two = group(
        &http,
        p2,
        "two",
        "anti-affinity",
        json!({"max_server_per_host": 2}),
    )
    .await;
    let aff = group(&http, p1, "aff", "affinity", json!({})).await;
    let mut tasks = vec![];
    for i in 0..24 {
        let http = http.clone();
        let port = if i % 2 == 0 { p1 } else { p2 };
        // 9 + 9 anti-affinity builds interleaved, then 6 affinity ones.
        let gid = match (i < 18, i % 2) {
            (true, 0) => plain.clone(),
            (true, _) => two.clone(),
            (false, _) => aff.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let (code, v) = call(
                &http,
                port,
                reqwest::Method::POST,
                "/servers",
                Some(json!({
                    "server": {"name": format!("m{i}"), "imageRef": IMAGE, "flavorRef": "1", "networks": "none"},
                    "os:scheduler_hints": {"group": gid}})),
            )
            .await;
            assert_eq!(code, 202, "{v}");
            (gid, v["server"]["id"].as_str().unwrap().to_string())
        }));
    }
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in tasks {
        let (gid, id) = t.await.unwrap();
        members.entry(gid).or_default().push(id);
    }
    let mut active_hosts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (gid, ids) in &members {
        for id in ids {
            let (st, host, fault) = settled(&http, p1, id).await;
            if st == "ACTIVE" {
                *active_hosts
                    .entry(gid.clone())
                    .or_default()
                    .entry(host)
                    .or_default() += 1;
            } else {
                assert!(fault.contains("No valid host"), "{id}: {fault}");
            }
        }
    }
    let per_host = |gid: &str| active_hosts.get(gid).cloned().unwrap_or_default();
    let p = per_host(&plain);
    assert_eq!(p.values().sum::<usize>(), 3, "plain group: {p:?}");
    assert!(p.values().all(|n| *n == 1), "plain group: {p:?}");
    let t = per_host(&two);
    assert_eq!(t.values().sum::<usize>(), 6, "max 2 per host: {t:?}");
    assert!(t.values().all(|n| *n == 2), "max 2 per host: {t:?}");
    let a = per_host(&aff);
    assert_eq!(a.len(), 1, "affinity: one host for all: {a:?}");
    assert_eq!(a.values().sum::<usize>(), members[&aff].len(), "{a:?}");
    for p in [a1, a2, c, s1, s2] {
        sigterm(p);
    }

    // The log, folded commit by commit: the group state never breaks a rule.
    let log = JetStreamLog::connect(&url, JetStreamOptions::default())
        .await
        .unwrap();
    let api = StreamName::new("api").unwrap();
    let commits = log.read_stream(&api, 1, usize::MAX).await.unwrap();
    let mut state = domain::server_group::ProjectGroups::default();
    for c in &commits {
        for ev in &c.events {
            if let Ok(domain::Event::ServerGroup(ev)) = projections::codec::decode(ev) {
                state = domain::server_group::evolve(state, &ev);
                for g in state.groups.values() {
                    // Every host a member counts on: recorded, and held besides.
                    let mut on: BTreeMap<&domain::HostName, usize> = BTreeMap::new();
                    for (i, h) in &g.members {
                        let held = state.held.get(i).into_iter().flatten();
                        let all: BTreeSet<&domain::HostName> = h.iter().chain(held).collect();
                        for h in all {
                            *on.entry(h).or_default() += 1;
                        }
                    }
                    let ok = match g.policy {
                        domain::server_group::Policy::Affinity => on.len() <= 1,
                        _ => {
                            let max = g.max_server_per_host.unwrap_or(1) as usize;
                            on.values().all(|n| *n <= max)
                        }
                    };
                    assert!(
                        ok,
                        "group {} breaks its policy at api seq {}: {on:?}",
                        g.name, c.stream_seq
                    );
                }
            }
        }
    }
    // At the end, the group records every ACTIVE member on its instance's host.
    let dynlog: Arc<dyn EventLog> = log.clone();
    let (v, _) = replay::fold(dynlog, &Default::default()).await.unwrap();
    for g in v.server_groups().all() {
        let active: BTreeSet<_> = g
            .members
            .iter()
            .filter_map(|(i, h)| {
                let inst = v.instance(i)?;
                (inst.vm_state == domain::VmState::Active).then(|| {
                    assert_eq!(h, &inst.host, "{i} recorded elsewhere");
                    *i
                })
            })
            .collect();
        let want = match g.name.as_str() {
            "plain" => 3,
            "two" => 6,
            _ => members[&g.id.to_string()].len(),
        };
        assert_eq!(active.len(), want, "{}", g.name);
    }
    log.close();
}

/// An API process killed between the group join and the build request leaves a member
/// with no instance (and a quota reservation); the scheduler role's `GroupMembers`
/// reactor removes the member once the grace (`--quota-grace`) has passed since the
/// join, as the quota reactor gives the reservation back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_killed_between_group_join_and_build_request() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut doomed = common::spawn_env(
        &[
            "api",
            "--nats",
            &url,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &dir.path().join("a"),
        &[("STRATUS_FAILPOINTS", "api-after-group-join")],
    );
    let http = reqwest::Client::new();
    let gid = group(&http, port, "g", "anti-affinity", json!({})).await;
    let answer = http
        .post(format!("http://127.0.0.1:{port}/v2.1/servers"))
        .header("X-Auth-Token", "alice:demo")
        .header("OpenStack-API-Version", "compute 2.96")
        .json(&json!({
            "server": {"name": "never", "imageRef": IMAGE, "flavorRef": "1", "networks": "none"},
            "os:scheduler_hints": {"group": gid}}))
        .send()
        .await;
    if let Ok(r) = answer {
        panic!(
            "the API answered {}: {}",
            r.status(),
            r.text().await.unwrap()
        );
    }
    assert!(
        doomed.wait_exit(Duration::from_secs(20)),
        "the API did not reach its failpoint"
    );
    let folded = |url: String| async move {
        let log = JetStreamLog::connect(&url, JetStreamOptions::default())
            .await
            .unwrap();
        let dynlog: Arc<dyn EventLog> = log.clone();
        let (v, _) = replay::fold(dynlog, &Default::default()).await.unwrap();
        log.close();
        v
    };
    let members = |v: &projections::Views| {
        v.server_groups()
            .group(&domain::ServerGroupId::parse(&gid).unwrap())
            .unwrap()
            .members
            .len()
    };
    let v = folded(url.clone()).await;
    assert_eq!(members(&v), 1, "the join was recorded");
    assert_eq!(v.instances().len(), 0, "no build request was appended");

    let _s = spawn(
        &["scheduler", "--nats", &url, "--quota-grace", "1"],
        &dir.path().join("s"),
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let v = folded(url.clone()).await;
        if members(&v) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the member was never released");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
