//! The network API (Neutron v2.0 subset, issue 13) end to end over HTTP: the default
//! networks, CRUD of networks, subnets and ports, visibility across projects, Neutron's
//! error shape on bad input (nothing appended), collection queries, and exact IP address
//! management under concurrency (checked again by folding the log).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};
use tests::neutron::{PRIVATE_ID, PUBLIC_ID};
use tests::Harness;

const ADMIN: &str = "admin:admin";
const ALICE: &str = "alice:p1";
const BOB: &str = "bob:p2";
const ALICE_READER: &str = "carol:p1:reader";

async fn network(h: &Harness, token: &str, name: &str) -> Value {
    h.neutron_create(token, "network", json!({"name": name}))
        .await
}

async fn subnet(h: &Harness, token: &str, net: &Value, cidr: &str, extra: Value) -> Value {
    let mut attrs = json!({"network_id": net["id"], "ip_version": 4, "cidr": cidr});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            attrs[k] = v;
        }
    }
    h.neutron_create(token, "subnet", attrs).await
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn default_networks_versions_and_extensions() {
    let h = Harness::start(|_| {}).await;
    let (code, v) = h.neutron(ALICE, Method::GET, "/v2.0/networks", None).await;
    assert_eq!(code, 200, "{v}");
    let mut names: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["private", "public"]);
    let (_, p) = h
        .neutron(
            ALICE,
            Method::GET,
            &format!("/v2.0/networks/{PUBLIC_ID}"),
            None,
        )
        .await;
    assert_eq!(p["network"]["router:external"], true);
    assert_eq!(p["network"]["shared"], false);
    let (_, p) = h
        .neutron(
            ALICE,
            Method::GET,
            &format!("/v2.0/networks/{PRIVATE_ID}"),
            None,
        )
        .await;
    assert_eq!(p["network"]["shared"], true);
    assert_eq!(p["network"]["subnets"].as_array().unwrap().len(), 1);
    // Version discovery is public; the extension list names what is implemented.
    let (code, v) = h.neutron("", Method::GET, "/", None).await;
    assert_eq!(code, 200);
    assert_eq!(v["versions"][0]["id"], "v2.0");
    let (_, v) = h
        .neutron(ALICE, Method::GET, "/v2.0/extensions", None)
        .await;
    let aliases: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    assert!(aliases.contains(&"external-net") && aliases.contains(&"binding"));
    let (code, v) = h
        .neutron(ALICE, Method::GET, "/v2.0/extensions/bogus", None)
        .await;
    assert_eq!(code, 404, "{v}");
    // The resource index answers with and without a trailing slash.
    for path in ["/v2.0", "/v2.0/"] {
        let (code, v) = h.neutron(ALICE, Method::GET, path, None).await;
        assert_eq!(code, 200, "{path}: {v}");
        assert!(v["resources"].as_array().unwrap().len() >= 3);
    }
    // No token: keystonemiddleware's 401.
    let (code, _) = h.neutron("", Method::GET, "/v2.0/networks", None).await;
    assert_eq!(code, 401);
    h.stack.stop().await;
}

#[tokio::test]
async fn networks_subnets_and_ports_belong_to_their_project() {
    let h = Harness::start(|_| {}).await;
    let net = network(&h, ALICE, "mine").await;
    assert_eq!(net["project_id"], "p1");
    assert_eq!(net["status"], "ACTIVE");
    assert_eq!(net["mtu"], 1500);
    let sub = subnet(&h, ALICE, &net, "192.168.10.0/24", json!({"name": "s"})).await;
    assert_eq!(sub["gateway_ip"], "192.168.10.1");
    assert_eq!(
        sub["allocation_pools"],
        json!([{"start": "192.168.10.2", "end": "192.168.10.254"}])
    );
    let port = h
        .neutron_create(ALICE, "port", json!({"network_id": net["id"], "name": "p"}))
        .await;
    assert_eq!(port["status"], "DOWN");
    assert!(port["mac_address"]
        .as_str()
        .unwrap()
        .starts_with("fa:16:3e:"));
    assert_eq!(port["fixed_ips"][0]["ip_address"], "192.168.10.2");
    assert_eq!(port["fixed_ips"][0]["subnet_id"], sub["id"]);
    // Binding attributes are the admin's.
    assert!(port.get("binding:host_id").is_none());
    let nid = net["id"].as_str().unwrap();
    let pid = port["id"].as_str().unwrap();
    let (_, v) = h
        .neutron(ADMIN, Method::GET, &format!("/v2.0/ports/{pid}"), None)
        .await;
    assert_eq!(v["port"]["binding:vif_type"], "unbound");

    // Another project sees none of it: 404s, and lists without it.
    let before = h.log_len().await;
    for path in [
        format!("/v2.0/networks/{nid}"),
        format!("/v2.0/subnets/{}", sub["id"].as_str().unwrap()),
        format!("/v2.0/ports/{pid}"),
    ] {
        let (code, v) = h.neutron(BOB, Method::GET, &path, None).await;
        assert_eq!(code, 404, "{path}: {v}");
        let (code, _) = h.neutron(BOB, Method::DELETE, &path, None).await;
        assert_eq!(code, 404, "{path}");
    }
    let (_, v) = h.neutron(BOB, Method::GET, "/v2.0/networks", None).await;
    assert!(!ids(&v, "networks").contains(&nid.to_string()));
    let (code, v) = h
        .neutron(
            BOB,
            Method::POST,
            "/v2.0/ports",
            Some(json!({"port": {"network_id": nid}})),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(v["NeutronError"]["type"], "NetworkNotFound");
    assert_eq!(
        v["NeutronError"]["message"],
        format!("Network {nid} could not be found.")
    );
    // A reader of the project sees but may not change.
    let (code, _) = h
        .neutron(
            ALICE_READER,
            Method::GET,
            &format!("/v2.0/networks/{nid}"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, v) = h
        .neutron(
            ALICE_READER,
            Method::DELETE,
            &format!("/v2.0/networks/{nid}"),
            None,
        )
        .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["NeutronError"]["message"],
        "(rule:delete_network) is disallowed by policy"
    );
    // Only an admin shares a network.
    let (code, _) = h
        .neutron(
            ALICE,
            Method::POST,
            "/v2.0/networks",
            Some(json!({"network": {"name": "x", "shared": true}})),
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(h.log_len().await, before, "refusals append nothing");

    // In use: the subnet and network cannot go while the port holds an address.
    let (code, v) = h
        .neutron(
            ALICE,
            Method::DELETE,
            &format!("/v2.0/subnets/{}", sub["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(code, 409);
    assert_eq!(v["NeutronError"]["type"], "SubnetInUse");
    let (code, v) = h
        .neutron(
            ALICE,
            Method::DELETE,
            &format!("/v2.0/networks/{nid}"),
            None,
        )
        .await;
    assert_eq!(code, 409);
    assert_eq!(v["NeutronError"]["type"], "NetworkInUse");
    // Update, then delete in order.
    let (code, v) = h
        .neutron(
            ALICE,
            Method::PUT,
            &format!("/v2.0/ports/{pid}"),
            Some(json!({"port": {"name": "renamed"}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["port"]["name"], "renamed");
    assert_eq!(v["port"]["revision_number"], 1);
    let (code, _) = h
        .neutron(ALICE, Method::DELETE, &format!("/v2.0/ports/{pid}"), None)
        .await;
    assert_eq!(code, 204);
    let (code, _) = h
        .neutron(
            ALICE,
            Method::DELETE,
            &format!("/v2.0/networks/{nid}"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let (code, _) = h
        .neutron(ALICE, Method::GET, &format!("/v2.0/networks/{nid}"), None)
        .await;
    assert_eq!(code, 404);

    // A port on the shared network, for a project that does not own it.
    let port = h
        .neutron_create(BOB, "port", json!({"network_id": PRIVATE_ID}))
        .await;
    assert!(port["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .starts_with("10.0."));
    // ... but choosing its address is the network owner's.
    let (code, _) = h
        .neutron(
            BOB,
            Method::POST,
            "/v2.0/ports",
            Some(json!({"port": {"network_id": PRIVATE_ID, "fixed_ips": [{"ip_address": "10.0.3.3"}]}})),
        )
        .await;
    assert_eq!(code, 403);

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test]
async fn bad_input_is_a_neutron_400_and_appends_nothing() {
    let h = Harness::start(|_| {}).await;
    let net = network(&h, ALICE, "n").await;
    let nid = net["id"].as_str().unwrap().to_string();
    let before = h.log_len().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v2.0/networks",
            json!({"network": {"bogus": 1}}),
            "HTTPBadRequest",
        ),
        (
            "/v2.0/networks",
            json!({"network": {"admin_state_up": "maybe"}}),
            "InvalidInput",
        ),
        (
            "/v2.0/networks",
            json!({"network": {"mtu": 12}}),
            "InvalidInput",
        ),
        ("/v2.0/networks", json!({"nope": {}}), "HTTPBadRequest"),
        (
            "/v2.0/subnets",
            json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.9.0.1/24"}}),
            "InvalidInput",
        ),
        (
            "/v2.0/subnets",
            json!({"subnet": {"network_id": nid, "ip_version": 6, "cidr": "10.9.0.0/24"}}),
            "InvalidInput",
        ),
        (
            "/v2.0/subnets",
            json!({"subnet": {"network_id": nid, "ip_version": 5, "cidr": "10.9.0.0/24"}}),
            "InvalidInput",
        ),
        (
            "/v2.0/subnets",
            json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.9.0.0/24",
                "allocation_pools": [{"start": "10.9.0.1", "end": "10.9.0.10"}]}}),
            "GatewayConflictWithAllocationPools",
        ),
        (
            "/v2.0/ports",
            json!({"port": {"network_id": nid, "mac_address": "zz:16:3e:00:00:01"}}),
            "InvalidInput",
        ),
        (
            "/v2.0/ports",
            json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": "banana"}]}}),
            "InvalidInput",
        ),
    ];
    for (path, body, kind) in cases {
        let (code, v) = h
            .neutron(ALICE, Method::POST, path, Some(body.clone()))
            .await;
        assert!(code == 400 || code == 409, "{body}: {code} {v}");
        assert_eq!(v["NeutronError"]["type"], kind, "{body}: {v}");
        assert_eq!(v["NeutronError"]["detail"], "");
    }
    // Malformed JSON.
    let addr = h.stack.network_addr.unwrap();
    let r = h
        .http
        .post(format!("http://{addr}/v2.0/networks"))
        .header("X-Auth-Token", ALICE)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Unknown paths and methods keep the shape.
    let (code, v) = h.neutron(ALICE, Method::GET, "/v2.0/nothing", None).await;
    assert_eq!(code, 404);
    assert!(v["NeutronError"].is_object());
    let (code, v) = h
        .neutron(ALICE, Method::PATCH, "/v2.0/networks", None)
        .await;
    assert_eq!(code, 405);
    assert!(v["NeutronError"].is_object());
    // Unknown filters and sort keys.
    let (code, _) = h
        .neutron(ALICE, Method::GET, "/v2.0/networks?bogus=1", None)
        .await;
    assert_eq!(code, 400);
    let (code, _) = h
        .neutron(ALICE, Method::GET, "/v2.0/networks?sort_key=bogus", None)
        .await;
    assert_eq!(code, 400);
    assert_eq!(h.log_len().await, before, "no refusal appended anything");
    h.stack.stop().await;
}

#[tokio::test]
async fn collections_filter_select_sort_and_page() {
    let h = Harness::start(|_| {}).await;
    for name in ["c", "a", "b", "e", "d"] {
        network(&h, ALICE, name).await;
    }
    let list = |q: &'static str| {
        let h = &h;
        async move {
            let (code, v) = h
                .neutron(ALICE, Method::GET, &format!("/v2.0/networks?{q}"), None)
                .await;
            assert_eq!(code, 200, "{q}: {v}");
            v
        }
    };
    let names = |v: &Value| -> Vec<String> {
        v["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    let v = list("name=b&name=d&sort_key=name&sort_dir=desc").await;
    assert_eq!(names(&v), ["d", "b"]);
    let v = list("project_id=p1&sort_key=name&limit=2").await;
    assert_eq!(names(&v), ["a", "b"]);
    let next = v["networks_links"][0]["href"].as_str().unwrap().to_string();
    assert!(next.contains("marker="), "{next}");
    let q = next.split_once('?').unwrap().1.to_string();
    let (_, v2) = h
        .neutron(ALICE, Method::GET, &format!("/v2.0/networks?{q}"), None)
        .await;
    assert_eq!(names(&v2), ["c", "d"]);
    let v = list("fields=id&fields=name&name=a").await;
    let keys: BTreeSet<&str> = v["networks"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["id", "name"]));
    // Bulk create: all or nothing.
    let (code, v) = h
        .neutron(
            ALICE,
            Method::POST,
            "/v2.0/networks",
            Some(json!({"networks": [{"name": "x1"}, {"name": "x2"}]})),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["networks"].as_array().unwrap().len(), 2);
    let before = h.log_len().await;
    let (code, _) = h
        .neutron(
            ALICE,
            Method::POST,
            "/v2.0/networks",
            Some(json!({"networks": [{"name": "y1"}, {"name": "y2", "bogus": true}]})),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(h.log_len().await, before);
    let v = list("name=y1").await;
    assert!(names(&v).is_empty());
    h.stack.stop().await;
}

/// Item 3 of issue 13: 200 concurrent port creates on a subnet with room for 100:
/// exactly 100 succeed, with 100 distinct addresses, the others are refused with
/// Neutron's IpAddressGenerationFailure; folding the network's subject from the log
/// shows no address (nor MAC) was ever held by two ports; deleting frees them.
#[tokio::test]
async fn two_hundred_racing_ports_get_exactly_one_hundred_addresses() {
    let h = Harness::start(|_| {}).await;
    let net = network(&h, ALICE, "race").await;
    subnet(
        &h,
        ALICE,
        &net,
        "10.50.0.0/24",
        json!({"allocation_pools": [{"start": "10.50.0.10", "end": "10.50.0.109"}]}),
    )
    .await;
    let nid = net["id"].as_str().unwrap().to_string();
    let mut tasks = vec![];
    for i in 0..200 {
        let client = h.http.clone();
        let addr = h.stack.network_addr.unwrap();
        let nid = nid.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(format!("http://{addr}/v2.0/ports"))
                .header("X-Auth-Token", ALICE)
                .json(&json!({"port": {"network_id": nid, "name": format!("p{i}")}}))
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap())
        }));
    }
    let mut addrs = BTreeSet::new();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (code, v) = t.await.unwrap();
        match code {
            201 => {
                ok += 1;
                assert!(addrs.insert(
                    v["port"]["fixed_ips"][0]["ip_address"]
                        .as_str()
                        .unwrap()
                        .to_string()
                ));
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
    assert_eq!(addrs.len(), 100);

    // The log, folded event by event, never holds an address twice.
    let id = domain::NetworkId::parse(&nid).unwrap();
    let subject = projections::networks::network_subject(&id);
    let commits = h
        .stack
        .engine
        .log()
        .read_subject(&subject, 1)
        .await
        .unwrap();
    let mut state = None;
    let mut folded = 0;
    for c in &commits {
        for e in &c.events {
            let domain::Event::Network(ev) = projections::codec::decode(e).unwrap() else {
                panic!("a network subject holds network events")
            };
            state = domain::network::evolve(state, &ev);
            state
                .as_ref()
                .unwrap()
                .check()
                .expect("address book invariant");
            folded += 1;
        }
    }
    assert_eq!(folded, 1 + 1 + 100, "create, subnet, 100 ports");

    // Freed addresses return to the pool.
    let (_, v) = h
        .neutron(
            ALICE,
            Method::GET,
            &format!("/v2.0/ports?network_id={nid}&limit=1"),
            None,
        )
        .await;
    let first = v["ports"][0].clone();
    let (code, _) = h
        .neutron(
            ALICE,
            Method::DELETE,
            &format!("/v2.0/ports/{}", first["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let again = h
        .neutron_create(ALICE, "port", json!({"network_id": nid}))
        .await;
    assert_eq!(
        again["fixed_ips"][0]["ip_address"],
        first["fixed_ips"][0]["ip_address"]
    );
    h.stack.stop().await;
}

/// Subnet pools: concurrent subnet creates from one pool get distinct prefixes, a
/// requested overlapping prefix is refused, a pool in use cannot be deleted, a deleted
/// subnet gives its prefix back, and the default pool serves `use_default_subnetpool`.
#[tokio::test]
async fn subnet_pools_give_each_prefix_once() {
    let h = Harness::start(|_| {}).await;
    let pool = h
        .neutron_create(
            ALICE,
            "subnetpool",
            json!({"name": "p", "prefixes": ["10.80.0.0/16"], "default_prefixlen": 24}),
        )
        .await;
    assert_eq!(pool["min_prefixlen"], 8);
    assert_eq!(pool["ip_version"], 4);
    let pid = pool["id"].as_str().unwrap().to_string();
    let mut nets = vec![];
    for i in 0..12 {
        nets.push(network(&h, ALICE, &format!("n{i}")).await["id"].clone());
    }
    let mut tasks = vec![];
    for nid in &nets {
        let (client, addr) = (h.http.clone(), h.stack.network_addr.unwrap());
        let body = json!({"subnet": {"network_id": nid, "ip_version": 4, "subnetpool_id": pid}});
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(format!("http://{addr}/v2.0/subnets"))
                .header("X-Auth-Token", ALICE)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut cidrs = BTreeSet::new();
    for t in tasks {
        let (code, v) = t.await.unwrap();
        assert_eq!(code, 201, "{v}");
        assert_eq!(v["subnet"]["subnetpool_id"], pid.as_str());
        assert!(cidrs.insert(v["subnet"]["cidr"].as_str().unwrap().to_string()));
    }
    assert_eq!(cidrs.len(), 12);
    assert!(cidrs.contains("10.80.0.0/24") && cidrs.contains("10.80.11.0/24"));
    // A prefix that overlaps one given out.
    let extra = network(&h, ALICE, "extra").await;
    let before = h.log_len().await;
    let (code, v) = h
        .neutron(
            ALICE,
            Method::POST,
            "/v2.0/subnets",
            Some(
                json!({"subnet": {"network_id": extra["id"], "ip_version": 4,
                "subnetpool_id": pid, "cidr": "10.80.3.0/25"}}),
            ),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "SubnetAllocationError");
    assert_eq!(h.log_len().await, before);
    let (code, v) = h
        .neutron(
            ALICE,
            Method::DELETE,
            &format!("/v2.0/subnetpools/{pid}"),
            None,
        )
        .await;
    assert_eq!(code, 409, "{v}");
    // Deleting a subnet frees its prefix for the next create.
    let (_, v) = h
        .neutron(ALICE, Method::GET, "/v2.0/subnets?cidr=10.80.0.0/24", None)
        .await;
    let sid = v["subnets"][0]["id"].as_str().unwrap().to_string();
    let (code, _) = h
        .neutron(ALICE, Method::DELETE, &format!("/v2.0/subnets/{sid}"), None)
        .await;
    assert_eq!(code, 204);
    let again = h
        .neutron_create(
            ALICE,
            "subnet",
            json!({"network_id": extra["id"], "ip_version": 4, "subnetpool_id": pid, "prefixlen": 24}),
        )
        .await;
    assert_eq!(again["cidr"], "10.80.0.0/24");
    // Only an admin makes a default pool; then any project's subnet can use it.
    let (code, _) = h
        .neutron(
            ALICE,
            Method::POST,
            "/v2.0/subnetpools",
            Some(json!({"subnetpool": {"name": "d", "prefixes": ["10.90.0.0/16"], "is_default": true}})),
        )
        .await;
    assert_eq!(code, 403);
    h.neutron_create(
        ADMIN,
        "subnetpool",
        json!({"name": "d", "prefixes": ["10.90.0.0/16"], "is_default": true, "shared": true, "default_prefixlen": 26}),
    )
    .await;
    let bobnet = network(&h, BOB, "b").await;
    let s = h
        .neutron_create(
            BOB,
            "subnet",
            json!({"network_id": bobnet["id"], "ip_version": 4, "use_default_subnetpool": true}),
        )
        .await;
    assert_eq!(s["cidr"], "10.90.0.0/26");
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}
