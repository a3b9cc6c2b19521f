//! A split deployment on JetStream with real processes: one projector, two schedulers,
//! compute agents for two hosts, and two API processes serving the same data.

mod common;

use std::time::{Duration, Instant};

use common::{call, free_port, sigterm, spawn, spawn_api, wait};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_processes_on_jetstream() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let (p1, p2) = (free_port(), free_port());
    let projector = spawn(&["projector", "--nats", &url], &d("projector"));
    let s1 = spawn(&["scheduler", "--nats", &url], &d("s1"));
    let s2 = spawn(&["scheduler", "--nats", &url], &d("s2"));
    let a1 = spawn_api(&url, p1, &d("a1"));
    let a2 = spawn_api(&url, p2, &d("a2"));
    // Compute waits for its cell, which the API processes create (cell0, cell1).
    let c1 = spawn(
        &["compute", "--nats", &url, "--host", "hostA", "--hosts", "2"],
        &d("c1"),
    );

    let http = reqwest::Client::new();
    let mut ids = vec![];
    for i in 0..4 {
        let port = if i % 2 == 0 { p1 } else { p2 };
        let (code, v) = call(
            &http,
            port,
            reqwest::Method::POST,
            "/servers",
            Some(json!({"server": {"name": format!("s{i}"), "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1", "networks": "none"}})),
        )
        .await;
        assert_eq!(code, 202, "{v}");
        ids.push(v["server"]["id"].as_str().unwrap().to_string());
    }
    // Both APIs see every server reach ACTIVE on one of the compute process's hosts.
    for id in &ids {
        for port in [p1, p2] {
            let s = wait(&http, port, id, "ACTIVE").await;
            assert!(s["hostId"].as_str().is_some_and(|h| !h.is_empty()), "{s}");
        }
    }
    // Act through one API, observe through the other.
    let (code, v) = call(
        &http,
        p2,
        reqwest::Method::POST,
        &format!("/servers/{}/action", ids[0]),
        Some(json!({"pause": null})),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    wait(&http, p1, &ids[0], "PAUSED").await;
    for id in &ids {
        let (code, _) = call(
            &http,
            p1,
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
        )
        .await;
        assert_eq!(code, 204);
    }
    for id in &ids {
        wait(&http, p2, id, "GONE").await;
    }
    for p in [a1, a2, c1, s1, s2, projector] {
        sigterm(p);
    }

    // Every build was placed exactly once, although two schedulers saw it.
    let log = eventlog::JetStreamLog::connect(&url, eventlog::JetStreamOptions::default())
        .await
        .unwrap();
    use eventlog::EventLog;
    for id in &ids {
        let iid = domain::InstanceId::parse(id).unwrap();
        let steps = replay::history(log.as_ref(), iid).await.unwrap();
        let placed = steps
            .iter()
            .filter(|s| s.event_type == "instance.placed")
            .count();
        let mapped = steps
            .iter()
            .filter(|s| s.event_type == "instance.mapped")
            .count();
        assert_eq!((placed, mapped), (1, 1), "{id}");
    }
    // The projector's stored views equal a fold of the log.
    let store =
        projections::ProjectionStore::open(&d("projector").join("projections.redb")).unwrap();
    let report = replay::rebuild(log.clone(), &store.load().unwrap())
        .await
        .unwrap();
    assert!(report.matches, "{:?}", report.differences);
    assert!(log.streams().await.unwrap().len() >= 3);
    // The reactors ran on durable consumers with explicit acks, the two schedulers on
    // one shared consumer, and every delivery was acknowledged.
    let js = async_nats::jetstream::new(log.client().clone());
    let mut cell = js.get_stream("STRATUS_CELL_CELL1").await.unwrap();
    let total = cell.info().await.unwrap().state.messages;
    let mut names: Vec<String> = futures::TryStreamExt::try_collect(cell.consumer_names())
        .await
        .unwrap();
    names.sort();
    assert!(
        names.contains(&"scheduler".to_string()) && names.contains(&"placement".to_string()),
        "{names:?}"
    );
    let compute: Vec<&String> = names.iter().filter(|n| n.starts_with("compute-")).collect();
    assert_eq!(compute.len(), 1, "{names:?}");
    for name in ["scheduler", "placement", compute[0].as_str()] {
        let info = cell.consumer_info(name).await.unwrap();
        assert_eq!(
            info.config.ack_policy,
            async_nats::jetstream::consumer::AckPolicy::Explicit
        );
        assert_eq!(info.num_ack_pending, 0, "{name}: unacknowledged deliveries");
        assert_eq!(
            info.delivered.stream_sequence, total,
            "{name} did not get to the end of the stream"
        );
    }
    log.close();
}

/// Issue 3 fault (d): two schedulers racing on many builds. Folding the final log
/// commit by commit, no host is ever committed beyond its capacity, and every build
/// ends ACTIVE or (NoValidHost) ERROR exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_racing_never_overcommit() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let port = free_port();
    let s1 = spawn(&["scheduler", "--nats", &url], &d("s1"));
    let s2 = spawn(&["scheduler", "--nats", &url], &d("s2"));
    let a = spawn_api(&url, port, &d("a"));
    // 3 hosts x 2 GiB RAM x 1.5 = 3 GiB each: 9 builds of 1 GiB fit in all.
    let c = spawn(
        &[
            "compute",
            "--nats",
            &url,
            "--host",
            "small",
            "--hosts",
            "3",
            "--host-vcpus",
            "4",
            "--host-ram-mb",
            "2048",
            "--host-disk-gb",
            "100",
        ],
        &d("c"),
    );
    let http = reqwest::Client::new();
    // A 1 GiB flavor (admin).
    let (code, v) = http
        .post(format!("http://127.0.0.1:{port}/v2.1/flavors"))
        .header("X-Auth-Token", "admin:admin")
        .json(&json!({"flavor": {"name": "gig", "id": "gig", "ram": 1024, "vcpus": 1, "disk": 1}}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|c| (c, Value::Null))
        .unwrap();
    assert_eq!(code, 200, "{v}");
    let mut tasks = vec![];
    for i in 0..24 {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let (code, v) = call(
                &http,
                port,
                reqwest::Method::POST,
                "/servers",
                Some(json!({"server": {"name": format!("r{i}"), "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "gig", "networks": "none"}})),
            )
            .await;
            assert_eq!(code, 202, "{v}");
            v["server"]["id"].as_str().unwrap().to_string()
        }));
    }
    let mut ids = vec![];
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let mut active = 0;
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, v) = call(
                &http,
                port,
                reqwest::Method::GET,
                &format!("/servers/{id}"),
                None,
            )
            .await;
            let st = v["server"]["status"].as_str().unwrap_or("").to_string();
            if st == "ACTIVE" || st == "ERROR" {
                active += usize::from(st == "ACTIVE");
                break;
            }
            assert!(Instant::now() < deadline, "{id} stuck: {v}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for p in [a, c, s1, s2] {
        sigterm(p);
    }

    let log = eventlog::JetStreamLog::connect(&url, eventlog::JetStreamOptions::default())
        .await
        .unwrap();
    use eventlog::EventLog;
    let cell = eventlog::StreamName::new("cell1").unwrap();
    let commits = log.read_stream(&cell, 1, usize::MAX).await.unwrap();
    let mut views = projections::Views::default();
    let mut touched = projections::Touched::default();
    for c in &commits {
        views.apply(c, &mut touched);
        for row in views.hosts().values() {
            let (cap, used) = (row.state.spec.capacity(), row.state.used);
            assert!(
                used.vcpus <= cap.vcpus && used.ram_mb <= cap.ram_mb && used.disk_gb <= cap.disk_gb,
                "host {} overcommitted at {}: {used:?} > {cap:?}",
                row.state.spec.name,
                c.stream_seq
            );
        }
    }
    let placed: Vec<String> = ids
        .iter()
        .filter_map(|id| {
            let i = views.instance(&domain::InstanceId::parse(id).unwrap())?;
            Some(format!(
                "{id} {} host={:?} claim={:?}",
                i.status(),
                i.host,
                i.claim
            ))
        })
        .collect();
    let hosts: Vec<String> = views
        .hosts()
        .values()
        .map(|r| {
            format!(
                "{} used={:?} allocs={:?}",
                r.state.spec.name, r.state.used, r.state.allocations
            )
        })
        .collect();
    let mut diag = String::new();
    if active != 9 {
        for id in &ids {
            let iid = domain::InstanceId::parse(id).unwrap();
            let steps = replay::history(log.as_ref(), iid).await.unwrap();
            if steps
                .iter()
                .any(|s| s.event_type == "instance.build_failed")
            {
                diag.push_str(&format!("\n{id} failed:\n"));
                for st in steps {
                    diag.push_str(&format!(
                        "  {} {} {} by {}\n",
                        st.occurred_at, st.subject, st.event_type, st.actor
                    ));
                }
            }
        }
        for c in &commits {
            if c.subject.kind() == Some(eventlog::SubjectKind::Host) {
                diag.push_str(&format!(
                    "  {} #{} {} {:?}\n",
                    c.meta.occurred_at,
                    c.stream_seq,
                    c.subject,
                    c.events
                        .iter()
                        .map(|e| e.event_type.as_str())
                        .collect::<Vec<_>>()
                ));
            }
        }
        for id in &ids {
            let iid = domain::InstanceId::parse(id).unwrap();
            let Some(i) = views.instance(&iid) else {
                continue;
            };
            let Some(claim) = i.claim else { continue };
            let held = views
                .hosts()
                .values()
                .any(|r| r.state.allocations.contains_key(&claim));
            if held {
                continue;
            }
            diag.push_str(&format!("\n{id} claim {claim} not allocated; history:\n"));
            for st in replay::history(log.as_ref(), iid).await.unwrap() {
                diag.push_str(&format!(
                    "  {} {} by {}\n",
                    st.subject, st.event_type, st.actor
                ));
            }
            for c in &commits {
                for e in &c.events {
                    if let Ok(domain::Event::Host(h)) = projections::codec::decode(e) {
                        let hit = match &h {
                            domain::host::HostEvent::Claimed { claim: cl, .. } => *cl == claim,
                            domain::host::HostEvent::Released { claim: cl } => *cl == claim,
                            _ => false,
                        };
                        if hit {
                            diag.push_str(&format!(
                                "  host {} #{} {:?} by {} dedupe {}\n",
                                c.subject,
                                c.stream_seq,
                                e.event_type,
                                c.meta.actor.user,
                                c.dedupe_id
                            ));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(
        active, 9,
        "every fitting build placed, no more:\n{placed:#?}\n{hosts:#?}{diag}"
    );
    for id in &ids {
        let iid = domain::InstanceId::parse(id).unwrap();
        let steps = replay::history(log.as_ref(), iid).await.unwrap();
        let firsts = steps
            .iter()
            .filter(|s| {
                s.event_type == "instance.placed" || s.event_type == "instance.build_failed"
            })
            .count();
        assert_eq!(firsts, 1, "{id} placed or failed exactly once");
    }
    log.close();
}

/// A split `stratus api` takes `--audit-period` as the scheduler does: the periods the
/// scheduler closes (2 s here) are the ones os-instance_usage_audit_log reports, where a
/// default API would look for an hourly period no scheduler closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_api_reports_the_audit_period_it_is_given() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let api = spawn(
        &[
            "api",
            "--nats",
            &url,
            "--listen",
            &listen,
            "--audit-period",
            "2",
        ],
        &d("a"),
    );
    let s = spawn(
        &["scheduler", "--nats", &url, "--audit-period", "2"],
        &d("s"),
    );
    let c = spawn(
        &["compute", "--nats", &url, "--host", "aud", "--hosts", "2"],
        &d("c"),
    );
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    let log = loop {
        let r = http
            .get(format!(
                "http://127.0.0.1:{port}/v2.1/os-instance_usage_audit_log"
            ))
            .header("X-Auth-Token", "admin:admin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        let log = v["instance_usage_audit_logs"].clone();
        if log["num_hosts"] == 2 && log["num_hosts_done"] == 2 {
            break log;
        }
        assert!(Instant::now() < deadline, "never audited: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(log["overall_status"], "ALL hosts done. 0 errors.");
    let at = |k: &str| {
        api::usage::parse_time(&log[k].as_str().unwrap().replace(' ', "T"))
            .unwrap()
            .0
    };
    assert_eq!(at("period_ending") - at("period_beginning"), 2_000_000);
    for p in [api, s, c] {
        sigterm(p);
    }
}

/// Two API processes on one JetStream with Keystone auth and a shared token key: a
/// token revoked, an application credential deleted, a user deleted or a project
/// deleted at one process's identity API is refused by the other process's compute
/// API too (each process validates tokens locally against the api stream it folds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_revocations_reach_every_api_process() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    let key = key.to_str().unwrap();
    let ports: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let procs: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, (api, id))| {
            let listen = format!("127.0.0.1:{api}");
            let ident = format!("127.0.0.1:{id}");
            spawn(
                &[
                    "api",
                    "--nats",
                    &url,
                    "--listen",
                    &listen,
                    "--auth",
                    "keystone",
                    "--identity-listen",
                    &ident,
                    "--token-key-file",
                    key,
                    "--admin-password",
                    "split-secret",
                ],
                &dir.path().join(format!("api{i}")),
            )
        })
        .collect();
    let http = reqwest::Client::new();
    let (id_a, api_b) = (ports[0].1, ports[1].0);
    let ida = |p: &str| format!("http://127.0.0.1:{id_a}{p}");
    let issue = |body: Value| {
        let http = http.clone();
        let u = ida("/v3/auth/tokens");
        async move {
            let r = http.post(u).json(&body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let t = r.headers()["x-subject-token"].to_str().unwrap().to_string();
            (t, r.json::<Value>().await.unwrap())
        }
    };
    let password = |user: &str, pw: &str, project: &str| {
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": pw}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}})
    };
    // Status of the compute API of process B with `token`, once it is `want` (10 s).
    let on_b = |token: String, want: u16| {
        let http = http.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let s = http
                    .get(format!("http://127.0.0.1:{api_b}/v2.1/servers"))
                    .header("X-Auth-Token", &token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                if s == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "process B answers {s}, not {want}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (admin, _) = issue(password("admin", "split-secret", "admin")).await;
    let adm = |m: reqwest::Method, p: &str, body: Option<Value>| {
        let mut rb = http.request(m, ida(p)).header("X-Auth-Token", &admin);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move {
            let r = rb.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // A user with `member` on a project of its own.
    let (_, p) = adm(
        reqwest::Method::POST,
        "/v3/projects",
        Some(json!({"project": {"name": "sp"}})),
    )
    .await;
    let project = p["project"]["id"].as_str().unwrap().to_string();
    let (_, u) = adm(
        reqwest::Method::POST,
        "/v3/users",
        Some(json!({"user": {"name": "su", "password": "su-password"}})),
    )
    .await;
    let user = u["user"]["id"].as_str().unwrap().to_string();
    let (_, r) = adm(reqwest::Method::GET, "/v3/roles?name=member", None).await;
    let member = r["roles"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = adm(
        reqwest::Method::PUT,
        &format!("/v3/projects/{project}/users/{user}/roles/{member}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    // Revoke one token at A: B refuses it, another token still works.
    let (t1, _) = issue(password("su", "su-password", "sp")).await;
    let (t2, _) = issue(password("su", "su-password", "sp")).await;
    on_b(t1.clone(), 200).await;
    let r = http
        .delete(ida("/v3/auth/tokens"))
        .header("X-Auth-Token", &t1)
        .header("X-Subject-Token", &t1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    on_b(t1, 401).await;
    on_b(t2.clone(), 200).await;
    // An application credential: its token works at B until it is deleted at A.
    let r = http
        .post(ida(&format!("/v3/users/{user}/application_credentials")))
        .header("X-Auth-Token", &t2)
        .json(&json!({"application_credential": {"name": "ci"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let c: Value = r.json().await.unwrap();
    let (cid, secret) = (
        c["application_credential"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        c["application_credential"]["secret"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let (ct, _) = issue(
        json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": cid, "secret": secret}}}}),
    )
    .await;
    on_b(ct.clone(), 200).await;
    let (s, _) = adm(
        reqwest::Method::DELETE,
        &format!("/v3/users/{user}/application_credentials/{cid}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    on_b(ct, 401).await;
    // Deleting the project ends the user's tokens on it at B.
    let (s, _) = adm(
        reqwest::Method::DELETE,
        &format!("/v3/projects/{project}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    on_b(t2, 401).await;
    // Deleting the user: a token on another project ends too.
    let (_, a) = adm(reqwest::Method::GET, "/v3/projects?name=admin", None).await;
    let admin_project = a["projects"][0]["id"].as_str().unwrap().to_string();
    adm(
        reqwest::Method::PUT,
        &format!("/v3/projects/{admin_project}/users/{user}/roles/{member}"),
        None,
    )
    .await;
    let (t3, _) = issue(password("su", "su-password", "admin")).await;
    on_b(t3.clone(), 200).await;
    let (s, _) = adm(reqwest::Method::DELETE, &format!("/v3/users/{user}"), None).await;
    assert_eq!(s, 204);
    on_b(t3, 401).await;
    on_b(admin.clone(), 200).await;
    for p in procs {
        sigterm(p);
    }
}
