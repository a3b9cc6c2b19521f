//! Server groups end to end over HTTP (issue 10, item 4): a member that moves (resize,
//! cold and live migration, unshelve) keeps its group's hard policy: during a resize it
//! counts on both hosts until confirm / revert, the group then records where it really
//! is; moves and builds racing for the last free hosts never break the policy (checked
//! on the log folded commit by commit); a member whose build request never came is
//! released after the grace.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use domain::server_group::{MemberHosts, ProjectGroups};
use domain::{HostName, InstanceId, ServerGroupId};
use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:p1";
const ADMIN: &str = "admin:admin";

async fn start(hosts: usize) -> Harness {
    Harness::start(|o| {
        o.hosts = hosts;
        o.quota.grace = domain::quota::Grace(1);
        o.reactor_reconcile_every = Duration::from_millis(300);
    })
    .await
}

fn host_of(s: &Value) -> String {
    s["OS-EXT-SRV-ATTR:host"].as_str().unwrap_or("").to_string()
}

async fn group(h: &Harness, policy: &str) -> String {
    let (code, v) = h
        .req(
            ALICE,
            M::POST,
            "/os-server-groups",
            Some(json!({"server_group": {"name": "g", "policy": policy}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    v["server_group"]["id"].as_str().unwrap().to_string()
}

/// POST /servers in group `gid`; returns the id.
async fn member(h: &Harness, gid: &str, name: &str) -> String {
    let (code, v) = h
        .req(
            ALICE,
            M::POST,
            "/servers",
            Some(json!({
                "server": {"name": name, "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b",
                           "flavorRef": "1", "networks": "none"},
                "os:scheduler_hints": {"group": gid}})),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    v["server"]["id"].as_str().unwrap().to_string()
}

/// Waits until the server leaves its task; returns it.
async fn settled(h: &Harness, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = h.show(id).await;
        if s["OS-EXT-STS:task_state"].is_null()
            && !matches!(s["status"].as_str(), Some("BUILD" | "MIGRATING" | "RESIZE"))
        {
            return s;
        }
        assert!(Instant::now() < deadline, "{id} stuck: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn gid(s: &str) -> ServerGroupId {
    ServerGroupId::parse(s).unwrap()
}

/// Where the member counts in the group, as the world has it now.
fn hosts_of(h: &Harness, g: &str, id: &str) -> MemberHosts {
    let v = h.stack.engine.world().read();
    v.server_groups()
        .project("p1")
        .and_then(|r| r.state.placement(&gid(g), &InstanceId::parse(id).unwrap()))
        .unwrap_or_default()
}

fn on(host: &str, held: &[&str]) -> MemberHosts {
    MemberHosts {
        host: (!host.is_empty()).then(|| HostName::new(host).unwrap()),
        held: held.iter().map(|x| HostName::new(*x).unwrap()).collect(),
    }
}

/// Waits until the group records the member as `want`.
async fn wait_hosts(h: &Harness, g: &str, id: &str, want: MemberHosts) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = hosts_of(h, g, id);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{id}: {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Folds the api stream commit by commit: no group ever counts more members on one
/// host (recorded or held) than its rule allows, and affinity groups never span two
/// hosts.
async fn check_log(h: &Harness) {
    let commits = h
        .stack
        .engine
        .log()
        .read_stream(&eventlog::StreamName::new("api").unwrap(), 1, usize::MAX)
        .await
        .unwrap();
    let mut state = ProjectGroups::default();
    for c in &commits {
        for ev in &c.events {
            let Ok(domain::Event::ServerGroup(ev)) = projections::codec::decode(ev) else {
                continue;
            };
            state = domain::server_group::evolve(state, &ev);
            for g in state.groups.values() {
                let mut per_host: BTreeMap<HostName, usize> = BTreeMap::new();
                let mut placed = 0;
                for (i, recorded) in &g.members {
                    let mut all: BTreeSet<HostName> =
                        state.held.get(i).cloned().unwrap_or_default();
                    all.extend(recorded.clone());
                    placed += usize::from(!all.is_empty());
                    for host in all {
                        *per_host.entry(host).or_default() += 1;
                    }
                }
                match g.policy {
                    domain::server_group::Policy::AntiAffinity => {
                        let max = g.max_server_per_host.unwrap_or(1) as usize;
                        assert!(
                            per_host.values().all(|n| *n <= max),
                            "anti-affinity broken at api seq {}: {per_host:?}",
                            c.stream_seq
                        );
                    }
                    // A lone member may hold two hosts (its move); two members never
                    // count on different hosts.
                    domain::server_group::Policy::Affinity => assert!(
                        placed < 2 || per_host.len() <= 1,
                        "affinity broken at api seq {}: {per_host:?}",
                        c.stream_seq
                    ),
                    _ => {}
                }
            }
        }
    }
}

/// 4 hosts, an anti-affinity group of 3: each move takes the one free host, holds its
/// source until confirm / revert (a build meanwhile finds no valid host), and the group
/// then records the member where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_keep_anti_affinity() {
    let h = start(4).await;
    let g = group(&h, "anti-affinity").await;
    let mut ids = vec![];
    for n in 0..3 {
        let id = member(&h, &g, &format!("m{n}")).await;
        h.wait(&id, "ACTIVE").await;
        ids.push(id);
    }
    let hosts: Vec<String> = {
        let mut v = vec![];
        for id in &ids {
            v.push(host_of(&h.show(id).await));
        }
        v
    };
    let all: BTreeSet<String> = (1..=4).map(|n| format!("host{n}")).collect();
    let free = |taken: &[&str]| -> Vec<String> {
        all.iter()
            .filter(|x| !taken.contains(&x.as_str()))
            .cloned()
            .collect()
    };
    let f = free(&[&hosts[0], &hosts[1], &hosts[2]]);
    assert_eq!(f.len(), 1, "distinct hosts: {hosts:?}");
    let free_host = f[0].clone();
    for (id, host) in ids.iter().zip(&hosts) {
        wait_hosts(&h, &g, id, on(host, &[])).await;
    }

    // Resize m0: to the free host, holding its source until revert.
    h.action(ALICE, &ids[0], json!({"resize": {"flavorRef": "2"}}), 202)
        .await;
    let s = h.wait(&ids[0], "VERIFY_RESIZE").await;
    assert_eq!(host_of(&s), free_host);
    wait_hosts(&h, &g, &ids[0], on(&hosts[0], &[&free_host])).await;
    // Every host is taken meanwhile (m0 counts on both): a new member finds none.
    let m3 = member(&h, &g, "m3").await;
    let s = settled(&h, &m3).await;
    assert_eq!(s["status"], "ERROR", "{s}");
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("No valid host"),
        "{s}"
    );
    // Revert: back on its source; the destination is free again.
    h.action(ALICE, &ids[0], json!({"revertResize": null}), 202)
        .await;
    let s = h.wait(&ids[0], "ACTIVE").await;
    assert_eq!(host_of(&s), hosts[0]);
    wait_hosts(&h, &g, &ids[0], on(&hosts[0], &[])).await;
    let m4 = member(&h, &g, "m4").await;
    let s = h.wait(&m4, "ACTIVE").await;
    assert_eq!(host_of(&s), free_host);
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{m4}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&m4, "GONE").await;
    wait_hosts(&h, &g, &m4, MemberHosts::default()).await;

    // Cold migration of m1, confirmed: on the free host; its source is free again.
    h.action(ADMIN, &ids[1], json!({"migrate": null}), 202)
        .await;
    let s = h.wait(&ids[1], "VERIFY_RESIZE").await;
    assert_eq!(host_of(&s), free_host);
    wait_hosts(&h, &g, &ids[1], on(&hosts[1], &[&free_host])).await;
    h.action(ALICE, &ids[1], json!({"confirmResize": null}), 204)
        .await;
    h.wait(&ids[1], "ACTIVE").await;
    wait_hosts(&h, &g, &ids[1], on(&free_host, &[])).await;

    // Live migration of m2 (scheduler's choice): the only host free of members is
    // m1's old one.
    h.action(
        ADMIN,
        &ids[2],
        json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
        202,
    )
    .await;
    let s = h.wait(&ids[2], "ACTIVE").await;
    assert_eq!(host_of(&s), hosts[1]);
    wait_hosts(&h, &g, &ids[2], on(&hosts[1], &[])).await;

    // Shelve m0 (offloaded at once): it counts nowhere; two new members take the two
    // hosts free of members (m0's and m2's old ones); unshelving then finds no valid
    // host until one of them is gone.
    h.action(ALICE, &ids[0], json!({"shelve": null}), 202).await;
    h.wait(&ids[0], "SHELVED_OFFLOADED").await;
    wait_hosts(&h, &g, &ids[0], on("", &[])).await;
    let m5 = member(&h, &g, "m5").await;
    let m6 = member(&h, &g, "m6").await;
    let h5 = host_of(&h.wait(&m5, "ACTIVE").await);
    let h6 = host_of(&h.wait(&m6, "ACTIVE").await);
    let mut got = [h5.clone(), h6];
    got.sort();
    let mut want = [hosts[0].clone(), hosts[2].clone()];
    want.sort();
    assert_eq!(got, want);
    h.action(ALICE, &ids[0], json!({"unshelve": null}), 202)
        .await;
    let s = settled(&h, &ids[0]).await;
    assert_eq!(s["status"], "SHELVED_OFFLOADED", "{s}");
    wait_hosts(&h, &g, &ids[0], on("", &[])).await;
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{m5}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&m5, "GONE").await;
    h.action(ALICE, &ids[0], json!({"unshelve": null}), 202)
        .await;
    let s = h.wait(&ids[0], "ACTIVE").await;
    assert_eq!(host_of(&s), h5);
    wait_hosts(&h, &g, &ids[0], on(&h5, &[])).await;
    check_log(&h).await;
}

/// An affinity member cannot move away from the others (its destination would split
/// the group); alone, it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_keep_affinity() {
    let h = start(3).await;
    let g = group(&h, "affinity").await;
    let a = member(&h, &g, "a").await;
    let host = host_of(&h.wait(&a, "ACTIVE").await);
    let b = member(&h, &g, "b").await;
    assert_eq!(host_of(&h.wait(&b, "ACTIVE").await), host);
    h.action(ADMIN, &a, json!({"migrate": null}), 202).await;
    let s = settled(&h, &a).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(host_of(&s), host, "stayed");
    wait_hosts(&h, &g, &a, on(&host, &[])).await;
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{b}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&b, "GONE").await;
    // The group lets go of a deleted member after the server is gone from the API
    // (its own fold); a migrate before that still sees b and finds no valid host.
    wait_hosts(&h, &g, &b, on("", &[])).await;
    h.action(ADMIN, &a, json!({"migrate": null}), 202).await;
    let s = h.wait(&a, "VERIFY_RESIZE").await;
    let dest = host_of(&s);
    assert_ne!(dest, host);
    h.action(ALICE, &a, json!({"confirmResize": null}), 204)
        .await;
    h.wait(&a, "ACTIVE").await;
    wait_hosts(&h, &g, &a, on(&dest, &[])).await;
    check_log(&h).await;
}

/// Moves and builds of one anti-affinity group racing for the last free hosts: 6
/// hosts, 3 members placed; 3 cold migrations and 3 new members at once want the 3
/// free hosts. Whatever wins, the group's log never counts two members on one host,
/// and at the end every member is recorded where its instance is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_and_builds_racing() {
    let h = start(6).await;
    let g = group(&h, "anti-affinity").await;
    let mut ids = vec![];
    for n in 0..3 {
        let id = member(&h, &g, &format!("m{n}")).await;
        h.wait(&id, "ACTIVE").await;
        ids.push(id);
    }
    let mut tasks = vec![];
    let h = std::sync::Arc::new(h);
    for (n, id) in ids.clone().into_iter().enumerate() {
        let (h1, h2, g) = (h.clone(), h.clone(), g.clone());
        tasks.push(tokio::spawn(async move {
            h1.action(ADMIN, &id, json!({"migrate": null}), 202).await;
            id
        }));
        tasks.push(tokio::spawn(async move {
            member(&h2, &g, &format!("n{n}")).await
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.push(t.await.unwrap());
    }
    for id in &ids {
        let s = settled(&h, id).await;
        if s["status"] == "VERIFY_RESIZE" {
            h.action(ALICE, id, json!({"confirmResize": null}), 204)
                .await;
            h.wait(id, "ACTIVE").await;
        }
    }
    let mut active = BTreeMap::new();
    for id in &all {
        let s = settled(&h, id).await;
        if s["status"] == "ACTIVE" {
            let host = host_of(&s);
            assert!(
                active.insert(host.clone(), id.clone()).is_none(),
                "two on {host}"
            );
            wait_hosts(&h, &g, id, on(&host, &[])).await;
        } else {
            assert_eq!(s["status"], "ERROR", "{s}");
        }
    }
    // The 3 old members are all ACTIVE (a refused migration leaves them in place).
    for id in &ids {
        assert!(active.values().any(|x| x == id), "{id}");
    }
    check_log(&h).await;
}

/// A member whose build request never came (the API died between the join and the
/// create) counts against `server_group_members` until the grace has passed since its
/// join; then the `GroupMembers` reactor removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_member_is_released_after_the_grace() {
    let h = start(2).await;
    let g = group(&h, "anti-affinity").await;
    let orphan = InstanceId(uuid::Uuid::new_v4());
    let ctx = domain::Ctx::service("test", engine::now(), uuid::Uuid::new_v4());
    h.stack
        .engine
        .server_groups(
            "p1",
            |_| domain::server_group::ServerGroupCommand::AddMembers {
                id: gid(&g),
                instances: vec![orphan],
                limit: 10,
                at: ctx.now,
            },
            &ctx,
            &engine::Meta::default(),
        )
        .await
        .unwrap();
    let member_of = |h: &Harness| {
        h.stack
            .engine
            .world()
            .read()
            .server_groups()
            .group(&gid(&g))
            .is_some_and(|x| x.members.contains_key(&orphan))
    };
    assert!(member_of(&h));
    let deadline = Instant::now() + Duration::from_secs(20);
    while member_of(&h) {
        assert!(
            Instant::now() < deadline,
            "the orphan member was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not before the grace (1 s) had passed since the join.
    assert!(engine::now().0 > ctx.now.plus_secs(1).0);
    // A live member is never released, however long it lives.
    let m = member(&h, &g, "m").await;
    h.wait(&m, "ACTIVE").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = h.stack.engine.world().read();
    assert!(v
        .server_groups()
        .group(&gid(&g))
        .unwrap()
        .members
        .contains_key(&InstanceId::parse(&m).unwrap()));
}
