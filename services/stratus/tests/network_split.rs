//! Exact IP address management across real processes on JetStream (issue 13, item 3):
//! two API processes race 200 port creates on a subnet with room for 100. Exactly 100
//! succeed with 100 distinct addresses (allocation is decided on the network's subject
//! with OCC, so the process that loses a sequence decides again on the winner's
//! state), and the network's subject, folded event by event, never holds an address
//! twice.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{free_port, spawn};
use eventlog::{EventLog, JetStreamLog, JetStreamOptions};
use serde_json::{json, Value};

const TOKEN: &str = "alice:demo";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_api_processes_never_give_one_address_twice() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let (n1, n2) = (free_port(), free_port());
    let args = |net: u16, api: u16| {
        vec![
            "api".to_string(),
            "--nats".into(),
            url.clone(),
            "--listen".into(),
            format!("127.0.0.1:{api}"),
            "--network-listen".into(),
            format!("127.0.0.1:{net}"),
        ]
    };
    let a1 = args(n1, free_port());
    let a2 = args(n2, free_port());
    let p1 = spawn(
        &a1.iter().map(String::as_str).collect::<Vec<_>>(),
        &dir.path().join("a1"),
    );
    let p2 = spawn(
        &a2.iter().map(String::as_str).collect::<Vec<_>>(),
        &dir.path().join("a2"),
    );
    let http = reqwest::Client::new();
    let post = |port: u16, path: &'static str, body: Value| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("http://127.0.0.1:{port}{path}"))
                .header("X-Auth-Token", TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, net) = post(n1, "/v2.0/networks", json!({"network": {"name": "race"}})).await;
    assert_eq!(code, 201, "{net}");
    let nid = net["network"]["id"].as_str().unwrap().to_string();
    let (code, v) = post(
        n1,
        "/v2.0/subnets",
        json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.60.0.0/24",
            "allocation_pools": [{"start": "10.60.0.10", "end": "10.60.0.109"}]}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    // The second process serves what the first created once its world caught up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = http
            .get(format!(
                "http://127.0.0.1:{n2}/v2.0/subnets?network_id={nid}"
            ))
            .header("X-Auth-Token", TOKEN)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        if v["subnets"].as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process 2 never saw the subnet"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut tasks = vec![];
    for i in 0..200 {
        let port = if i % 2 == 0 { n1 } else { n2 };
        let fut = post(port, "/v2.0/ports", json!({"port": {"network_id": nid}}));
        tasks.push(tokio::spawn(fut));
    }
    let mut addrs = BTreeSet::new();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (code, v) = t.await.unwrap();
        match code {
            201 => {
                ok += 1;
                let a = v["port"]["fixed_ips"][0]["ip_address"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert!(addrs.insert(a), "an address was given twice: {v}");
            }
            409 => {
                refused += 1;
                assert_eq!(
                    v["NeutronError"]["type"], "IpAddressGenerationFailure",
                    "{v}"
                );
            }
            c => panic!("unexpected {c}: {v}"),
        }
    }
    assert_eq!((ok, refused), (100, 100));

    // The log agrees at every event.
    let log = JetStreamLog::connect(&url, JetStreamOptions::default())
        .await
        .unwrap();
    let dynlog: Arc<dyn EventLog> = log.clone();
    let id = domain::NetworkId::parse(&nid).unwrap();
    let commits = dynlog
        .read_subject(&projections::networks::network_subject(&id), 1)
        .await
        .unwrap();
    let mut state = None;
    let mut ports = 0;
    for c in &commits {
        for e in &c.events {
            let domain::Event::Network(ev) = projections::codec::decode(e).unwrap() else {
                panic!("a network subject holds network events")
            };
            if matches!(ev, domain::network::NetworkEvent::PortCreated { .. }) {
                ports += 1;
            }
            state = domain::network::evolve(state, &ev);
            state
                .as_ref()
                .unwrap()
                .check()
                .expect("address book invariant");
        }
    }
    assert_eq!(ports, 100);
    log.close();
    for p in [p1, p2] {
        common::sigterm(p);
    }
}
