//! Servers on networks (issue 13) through the real HTTP APIs: the create request's
//! `networks` (auto, none, uuid, port, fixed_ip) and Nova's refusals, the ports the
//! compute agent creates and releases, `addresses`, `/ips`, the `ip` filter and the
//! interface API.

use reqwest::Method;
use serde_json::{json, Value};
use tests::neutron::{PRIVATE_ID, PUBLIC_ID};
use tests::Harness;

const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
const ADMIN: &str = "admin:admin";
const ALICE: &str = "alice:p1";
const CAROL: &str = "carol:p3";

/// POST /servers as `token` at `version` with `networks` (absent when Null).
async fn boot(
    h: &Harness,
    token: &str,
    version: &str,
    name: &str,
    networks: Value,
) -> (u16, Value) {
    let mut server = json!({"name": name, "imageRef": IMAGE, "flavorRef": "1"});
    if !networks.is_null() {
        server["networks"] = networks;
    }
    h.req_at(
        token,
        Method::POST,
        "/servers",
        version,
        Some(json!({ "server": server })),
    )
    .await
}

async fn boot_ok(h: &Harness, token: &str, name: &str, networks: Value) -> String {
    let (code, v) = boot(h, token, "2.96", name, networks).await;
    assert_eq!(code, 202, "create {name}: {v}");
    v["server"]["id"].as_str().expect("id").to_string()
}

/// The ports whose device is `server`, as the admin sees them.
async fn ports_of(h: &Harness, server: &str) -> Vec<Value> {
    let (code, v) = h
        .neutron(
            ADMIN,
            Method::GET,
            &format!("/v2.0/ports?device_id={server}"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    v["ports"].as_array().cloned().unwrap_or_default()
}

/// Waits until `f` holds of the server's ports (the agent acts after the answer).
async fn wait_ports(h: &Harness, server: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let p = ports_of(h, server).await;
        if f(&p) {
            return p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ports of {server}: {p:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn first_addr(server: &Value, net: &str) -> String {
    server["addresses"][net][0]["addr"]
        .as_str()
        .unwrap_or_else(|| panic!("no address on {net}: {server}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_none_uuid_fixed_ip_addresses_ips_and_ip_filter() {
    let h = Harness::start(|_| {}).await;
    // auto: the project's only network is the shared `private`.
    let a = boot_ok(&h, ALICE, "a", json!("auto")).await;
    let s = h.wait(&a, "ACTIVE").await;
    let ip = first_addr(&s, "private");
    assert!(ip.starts_with("10.0."), "{s}");
    let entry = &s["addresses"]["private"][0];
    assert_eq!(entry["version"], 4);
    assert_eq!(entry["OS-EXT-IPS:type"], "fixed");
    assert!(entry["OS-EXT-IPS-MAC:mac_addr"]
        .as_str()
        .unwrap()
        .starts_with("fa:16:3e:"));
    let ports = ports_of(&h, &a).await;
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["device_owner"], "compute:nova");
    assert_eq!(ports[0]["binding:host_id"], s["OS-EXT-SRV-ATTR:host"]);
    assert_eq!(ports[0]["status"], "ACTIVE");
    assert_eq!(ports[0]["network_id"], PRIVATE_ID);
    // none: no port, no address.
    let n = boot_ok(&h, ALICE, "n", json!("none")).await;
    let sn = h.wait(&n, "ACTIVE").await;
    assert_eq!(sn["addresses"], json!({}));
    // uuid + fixed_ip.
    let f = boot_ok(
        &h,
        ALICE,
        "f",
        json!([{"uuid": PRIVATE_ID, "fixed_ip": "10.0.7.7"}]),
    )
    .await;
    let sf = h.wait(&f, "ACTIVE").await;
    assert_eq!(first_addr(&sf, "private"), "10.0.7.7");
    // ips and ips/{network}.
    let (code, v) = h
        .req(ALICE, Method::GET, &format!("/servers/{f}/ips"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        v,
        json!({"addresses": {"private": [{"version": 4, "addr": "10.0.7.7"}]}})
    );
    let (code, v) = h
        .req(
            ALICE,
            Method::GET,
            &format!("/servers/{f}/ips/private"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(v, json!({"private": [{"version": 4, "addr": "10.0.7.7"}]}));
    let (code, v) = h
        .req(
            ALICE,
            Method::GET,
            &format!("/servers/{f}/ips/public"),
            None,
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        "Instance is not a member of specified network"
    );
    // ip filter: a regular expression at the start of the address.
    let (code, v) = h
        .req(ALICE, Method::GET, "/servers?ip=10%5C.0%5C.7%5C.7", None)
        .await;
    assert_eq!(code, 200);
    let ids: Vec<&str> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![f.as_str()]);
    let (_, v) = h.req(ALICE, Method::GET, "/servers?ip=10.0", None).await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 2, "{v}");
    let (_, v) = h.req(ALICE, Method::GET, "/servers?ip=0.7", None).await;
    assert_eq!(v["servers"], json!([]));
    // The address is taken: the same fixed_ip is refused until f is deleted.
    let before = h.log_len().await;
    let (code, v) = boot(
        &h,
        ALICE,
        "2.96",
        "g",
        json!([{"uuid": PRIVATE_ID, "fixed_ip": "10.0.7.7"}]),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        format!("Fixed IP address 10.0.7.7 is already in use on instance {f}.")
    );
    assert_eq!(h.log_len().await, before);
    let (code, _) = h
        .req(ALICE, Method::DELETE, &format!("/servers/{f}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&f, "GONE").await;
    wait_ports(&h, &f, |p| p.is_empty()).await;
    let g = boot_ok(
        &h,
        ALICE,
        "g",
        json!([{"uuid": PRIVATE_ID, "fixed_ip": "10.0.7.7"}]),
    )
    .await;
    let sg = h.wait(&g, "ACTIVE").await;
    assert_eq!(first_addr(&sg, "private"), "10.0.7.7");
    // The update response before 2.75 shows addresses without type and MAC (Nova's
    // `extend_address`), from 2.75 with them.
    for (version, extended) in [("2.74", false), ("2.75", true)] {
        let (code, v) = h
            .req_at(
                ALICE,
                Method::PUT,
                &format!("/servers/{g}"),
                version,
                Some(json!({"server": {"name": "g2"}})),
            )
            .await;
        assert_eq!(code, 200, "{v}");
        let entry = &v["server"]["addresses"]["private"][0];
        assert_eq!(entry["addr"], "10.0.7.7");
        assert_eq!(entry.get("OS-EXT-IPS:type").is_some(), extended, "{v}");
    }
    // injectNetworkInfo: admin only, 202, nothing recorded.
    let before = h.log_len().await;
    h.action(ADMIN, &g, json!({"injectNetworkInfo": {}}), 202)
        .await;
    assert_eq!(h.log_len().await, before);
    h.action(ALICE, &g, json!({"injectNetworkInfo": null}), 403)
        .await;
    // Before 2.37 an absent `networks` is every available network: one for alice.
    let (code, v) = boot(&h, ALICE, "2.36", "old", Value::Null).await;
    assert_eq!(code, 202, "{v}");
    let old = v["server"]["id"].as_str().unwrap().to_string();
    let so = h.wait(&old, "ACTIVE").await;
    assert!(so["addresses"]["private"].is_array(), "{so}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_networks_append_nothing() {
    let h = Harness::start(|_| {}).await;
    // A user's port, and one in use by a server.
    let free = h
        .neutron_create(ALICE, "port", json!({"network_id": PRIVATE_ID}))
        .await;
    let used = h
        .neutron_create(
            ALICE,
            "port",
            json!({"network_id": PRIVATE_ID, "device_id": "x"}),
        )
        .await;
    // A network of alice's without a subnet.
    let bare = h
        .neutron_create(ALICE, "network", json!({"name": "bare"}))
        .await;
    let own = h
        .neutron_create(CAROL, "network", json!({"name": "own"}))
        .await;
    h.neutron_create(
        CAROL,
        "subnet",
        json!({"network_id": own["id"], "ip_version": 4, "cidr": "192.168.60.0/24"}),
    )
    .await;
    let missing = "3f0d8e5a-0000-4000-8000-000000000001";
    let cases: Vec<(&str, &str, Value, Value, u16, String)> = vec![
        (
            ALICE,
            "2.96",
            json!([{"uuid": missing}]),
            json!(1),
            400,
            format!("Network {missing} could not be found."),
        ),
        (
            ALICE,
            "2.96",
            json!([{"port": missing}]),
            json!(1),
            400,
            format!("Port id {missing} could not be found."),
        ),
        (
            ALICE,
            "2.96",
            json!([{"port": used["id"]}]),
            json!(1),
            409,
            format!("Port {} is still in use.", used["id"].as_str().unwrap()),
        ),
        (
            ALICE,
            "2.96",
            json!([{"uuid": PRIVATE_ID, "fixed_ip": "192.168.9.9"}]),
            json!(1),
            400,
            format!("Fixed IP 192.168.9.9 is not a valid ip address for network {PRIVATE_ID}."),
        ),
        (
            ALICE,
            "2.96",
            json!([{"uuid": bare["id"]}]),
            json!(1),
            400,
            format!(
                "Network {} requires a subnet in order to boot instances on.",
                bare["id"].as_str().unwrap()
            ),
        ),
        (
            ALICE,
            "2.96",
            json!([{"port": free["id"]}]),
            json!(2),
            400,
            "Failed to launch instances: Unable to launch multiple instances with a single configured port ID. Please launch your instance one by one with different ports.".into(),
        ),
        (
            ALICE,
            "2.96",
            json!([{"uuid": PRIVATE_ID, "fixed_ip": "10.0.3.3"}]),
            json!(2),
            400,
            "Failed to launch instances: max_count cannot be greater than 1 if an fixed_ip is specified.".into(),
        ),
        (
            ALICE,
            "2.96",
            json!([{"port": free["id"]}, {"port": free["id"]}]),
            json!(1),
            400,
            format!(
                "Port ID '{}' was specified twice: you cannot attach a port multiple times.",
                free["id"].as_str().unwrap()
            ),
        ),
        (
            ALICE,
            "2.40",
            json!([{"uuid": PRIVATE_ID, "tag": "t"}]),
            json!(1),
            400,
            "Additional properties are not allowed ('tag' was unexpected)".into(),
        ),
        // carol's project has a network of its own beside the shared `private`.
        (
            CAROL,
            "2.96",
            json!("auto"),
            json!(1),
            409,
            "Multiple possible networks found, use a Network ID to be more specific.".into(),
        ),
        (
            CAROL,
            "2.36",
            Value::Null,
            json!(1),
            409,
            "Multiple possible networks found, use a Network ID to be more specific.".into(),
        ),
        // A project with no network available cannot have one allocated.
        (
            "bob:p2",
            "2.96",
            json!([{"uuid": bare["id"]}]),
            json!(1),
            400,
            format!("Network {} could not be found.", bare["id"].as_str().unwrap()),
        ),
    ];
    let before = h.log_len().await;
    for (token, version, networks, count, want, message) in cases {
        let mut server = json!({"name": "x", "imageRef": IMAGE, "flavorRef": "1", "min_count": count.clone(), "max_count": count});
        if !networks.is_null() {
            server["networks"] = networks.clone();
        }
        let (code, v) = h
            .req_at(
                token,
                Method::POST,
                "/servers",
                version,
                Some(json!({ "server": server })),
            )
            .await;
        assert_eq!(code, want, "{networks} at {version}: {v}");
        let key = if want == 409 {
            "conflictingRequest"
        } else {
            "badRequest"
        };
        assert_eq!(v[key]["message"], message, "{networks}");
    }
    assert_eq!(h.log_len().await, before, "refusals append nothing");
    // 2.42 takes tags again.
    let (code, v) = boot(
        &h,
        ALICE,
        "2.42",
        "t",
        json!([{"uuid": PRIVATE_ID, "tag": "t"}]),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    // The admin project boots on its own network.
    let (code, v) = boot(&h, ADMIN, "2.96", "pub", json!([{"uuid": PUBLIC_ID}])).await;
    assert_eq!(code, 202, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_port_is_bound_then_unbound_created_ports_deleted() {
    let h = Harness::start(|_| {}).await;
    let mine = h
        .neutron_create(
            ALICE,
            "port",
            json!({"network_id": PRIVATE_ID, "name": "mine"}),
        )
        .await;
    let pid = mine["id"].as_str().unwrap().to_string();
    let s = boot_ok(&h, ALICE, "s", json!([{"port": pid}, {"uuid": PRIVATE_ID}])).await;
    let shown = h.wait(&s, "ACTIVE").await;
    assert_eq!(shown["addresses"]["private"].as_array().unwrap().len(), 2);
    let ports = ports_of(&h, &s).await;
    assert_eq!(ports.len(), 2);
    let users = ports.iter().find(|p| p["id"] == pid.as_str()).unwrap();
    assert_eq!(users["device_owner"], "compute:nova");
    assert_eq!(users["binding:host_id"], shown["OS-EXT-SRV-ATTR:host"]);
    let created = ports.iter().find(|p| p["id"] != pid.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _) = h
        .req(ALICE, Method::DELETE, &format!("/servers/{s}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&s, "GONE").await;
    wait_ports(&h, &s, |p| p.is_empty()).await;
    let (code, v) = h
        .neutron(ADMIN, Method::GET, &format!("/v2.0/ports/{pid}"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["port"]["device_id"], "");
    assert_eq!(v["port"]["device_owner"], "");
    assert_eq!(v["port"]["binding:host_id"], "");
    let (code, _) = h
        .neutron(ADMIN, Method::GET, &format!("/v2.0/ports/{created}"), None)
        .await;
    assert_eq!(code, 404, "the port created for the server is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_attach_and_detach() {
    let h = Harness::start(|_| {}).await;
    let s = boot_ok(&h, ALICE, "s", json!("none")).await;
    h.wait(&s, "ACTIVE").await;
    let path = format!("/servers/{s}/os-interface");
    let (code, v) = h.req(ALICE, Method::GET, &path, None).await;
    assert_eq!(code, 200);
    assert_eq!(v, json!({"interfaceAttachments": []}));
    // By network, with an address.
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"net_id": PRIVATE_ID, "fixed_ips": [{"ip_address": "10.0.9.9"}]}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let a = &v["interfaceAttachment"];
    assert_eq!(a["net_id"], PRIVATE_ID);
    assert_eq!(a["port_state"], "ACTIVE");
    assert_eq!(a["fixed_ips"][0]["ip_address"], "10.0.9.9");
    assert!(a["tag"].is_null());
    let created = a["port_id"].as_str().unwrap().to_string();
    // A user's port.
    let mine = h
        .neutron_create(ALICE, "port", json!({"network_id": PRIVATE_ID}))
        .await;
    let pid = mine["id"].as_str().unwrap().to_string();
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"port_id": pid}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["interfaceAttachment"]["port_id"], pid.as_str());
    // Refusals.
    let before = h.log_len().await;
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"port_id": pid}})),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Port {pid} is still in use.")
    );
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"port_id": pid, "net_id": PRIVATE_ID}})),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        v["badRequest"]["message"],
        "Must not input both network_id and port_id"
    );
    let missing = "3f0d8e5a-0000-4000-8000-000000000001";
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"net_id": missing}})),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        format!("Network {missing} could not be found.")
    );
    assert_eq!(h.log_len().await, before);
    // Shown and listed.
    let (code, v) = h.req(ALICE, Method::GET, &path, None).await;
    assert_eq!(code, 200);
    assert_eq!(v["interfaceAttachments"].as_array().unwrap().len(), 2);
    let (code, v) = h
        .req(ALICE, Method::GET, &format!("{path}/{created}"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["interfaceAttachment"]["mac_addr"], a["mac_addr"]);
    let shown = h.show(&s).await;
    assert_eq!(shown["addresses"]["private"].as_array().unwrap().len(), 2);
    // Detach: the created port goes, the user's is unbound; a second detach is 404.
    for p in [&created, &pid] {
        let (code, v) = h
            .req(ALICE, Method::DELETE, &format!("{path}/{p}"), None)
            .await;
        assert_eq!(code, 202, "{v}");
    }
    let (code, v) = h
        .req(ALICE, Method::DELETE, &format!("{path}/{pid}"), None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        format!("Port {pid} is not attached")
    );
    let (code, _) = h
        .neutron(ADMIN, Method::GET, &format!("/v2.0/ports/{created}"), None)
        .await;
    assert_eq!(code, 404);
    let (_, v) = h
        .neutron(ADMIN, Method::GET, &format!("/v2.0/ports/{pid}"), None)
        .await;
    assert_eq!(v["port"]["device_id"], "");
    // Not while suspended (ACTIVE, PAUSED and STOPPED only).
    h.action(ALICE, &s, json!({"suspend": null}), 202).await;
    h.wait(&s, "SUSPENDED").await;
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"net_id": PRIVATE_ID}})),
        )
        .await;
    assert_eq!(code, 409);
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Cannot 'attach_interface' instance {s} while it is in vm_state suspended")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_without_a_free_address_ends_in_error_and_releases() {
    let h = Harness::start(|_| {}).await;
    let net = h
        .neutron_create(ALICE, "network", json!({"name": "tiny"}))
        .await;
    let nid = net["id"].as_str().unwrap().to_string();
    // A /30: one address for ports (.2), the gateway holds .1.
    h.neutron_create(
        ALICE,
        "subnet",
        json!({"network_id": nid, "ip_version": 4, "cidr": "192.168.50.0/30"}),
    )
    .await;
    h.neutron_create(ALICE, "port", json!({"network_id": nid}))
        .await;
    let s = boot_ok(
        &h,
        ALICE,
        "full",
        json!([{"uuid": PRIVATE_ID}, {"uuid": nid}]),
    )
    .await;
    let shown = h.wait(&s, "ERROR").await;
    assert_eq!(
        shown["fault"]["message"],
        format!(
            "Build of instance {s} aborted: Failed to allocate the network(s), not rescheduling."
        )
    );
    wait_ports(&h, &s, |p| p.is_empty()).await;
    assert_eq!(shown["addresses"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_follow_the_host_and_shelve_offload_unbinds() {
    let h = Harness::start(|_| {}).await;
    let s = boot_ok(&h, ALICE, "m", json!("auto")).await;
    let shown = h.wait(&s, "ACTIVE").await;
    let first = shown["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string();
    h.action(ADMIN, &s, json!({"migrate": null}), 202).await;
    h.wait(&s, "VERIFY_RESIZE").await;
    h.action(ALICE, &s, json!({"confirmResize": null}), 204)
        .await;
    let moved = h.wait(&s, "ACTIVE").await;
    let second = moved["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    wait_ports(&h, &s, |p| {
        p.len() == 1 && p[0]["binding:host_id"] == second.as_str()
    })
    .await;
    h.action(
        ADMIN,
        &s,
        json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
        202,
    )
    .await;
    let live = h.wait(&s, "ACTIVE").await;
    let third = live["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string();
    wait_ports(&h, &s, |p| {
        p.len() == 1 && p[0]["binding:host_id"] == third.as_str()
    })
    .await;
    // Shelve-offload unbinds; the address stays the server's.
    h.action(ALICE, &s, json!({"shelve": null}), 202).await;
    loop {
        let v = h.show(&s).await;
        if v["OS-EXT-STS:task_state"].is_null() {
            if v["status"] == "SHELVED" {
                h.action(ADMIN, &s, json!({"shelveOffload": null}), 202)
                    .await;
            }
            if v["status"] == "SHELVED" || v["status"] == "SHELVED_OFFLOADED" {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    h.wait(&s, "SHELVED_OFFLOADED").await;
    wait_ports(&h, &s, |p| p.len() == 1 && p[0]["binding:host_id"] == "").await;
    let off = h.show(&s).await;
    assert!(off["addresses"]["private"].is_array(), "{off}");
    h.action(ALICE, &s, json!({"unshelve": null}), 202).await;
    let back = h.wait(&s, "ACTIVE").await;
    let host = back["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string();
    wait_ports(&h, &s, |p| {
        p.len() == 1 && p[0]["binding:host_id"] == host.as_str()
    })
    .await;
}

/// A floating IP associated with a server's port shows in the server's `addresses`
/// as `OS-EXT-IPS:type` floating, after the port's fixed address, and leaves with the
/// association.
#[tokio::test]
async fn floating_ips_show_in_addresses() {
    let h = Harness::start(|_| {}).await;
    let net = h
        .neutron_create(ALICE, "network", json!({"name": "web"}))
        .await;
    let sub = h
        .neutron_create(
            ALICE,
            "subnet",
            json!({"network_id": net["id"], "ip_version": 4, "cidr": "192.168.77.0/24"}),
        )
        .await;
    let router = h
        .neutron_create(
            ALICE,
            "router",
            json!({"name": "r", "external_gateway_info": {"network_id": PUBLIC_ID}}),
        )
        .await;
    let rid = router["id"].as_str().unwrap();
    let (code, v) = h
        .neutron(
            ALICE,
            Method::PUT,
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            Some(json!({"subnet_id": sub["id"]})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let id = boot_ok(&h, ALICE, "s", json!([{"uuid": net["id"]}])).await;
    h.wait(&id, "ACTIVE").await;
    let port = wait_ports(&h, &id, |p| p.len() == 1).await[0].clone();
    let fip = h
        .neutron_create(
            ALICE,
            "floatingip",
            json!({"floating_network_id": PUBLIC_ID, "port_id": port["id"]}),
        )
        .await;
    let s = h.show(&id).await;
    let addrs = s["addresses"]["web"].as_array().unwrap().clone();
    assert_eq!(addrs.len(), 2, "{s}");
    assert_eq!(addrs[0]["OS-EXT-IPS:type"], "fixed");
    assert_eq!(addrs[1]["OS-EXT-IPS:type"], "floating");
    assert_eq!(addrs[1]["addr"], fip["floating_ip_address"]);
    assert_eq!(addrs[1]["OS-EXT-IPS-MAC:mac_addr"], port["mac_address"]);
    let (code, _) = h
        .neutron(
            ALICE,
            Method::PUT,
            &format!("/v2.0/floatingips/{}", fip["id"].as_str().unwrap()),
            Some(json!({"floatingip": {"port_id": null}})),
        )
        .await;
    assert_eq!(code, 200);
    let s = h.show(&id).await;
    assert_eq!(s["addresses"]["web"].as_array().unwrap().len(), 1, "{s}");
    h.stack.stop().await;
}

/// The groups on a port, as ids.
fn port_groups(p: &Value) -> Vec<String> {
    p["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect()
}

/// Security groups (issue 13): a create's `security_groups` by name become its ports'
/// groups (`default` otherwise), the server document lists them (absent without
/// ports), `/servers/{id}/os-security-groups` shows them in Nova's shape, and
/// add/removeSecurityGroup change the ports; a named group the project lacks is a 400
/// that appends nothing. Also: a given `adminPass` is echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_on_create_show_and_actions() {
    let h = Harness::start(|_| {}).await;
    let web = h
        .neutron_create(ALICE, "security_group", json!({"name": "web"}))
        .await;
    let web_id = web["id"].as_str().unwrap().to_string();

    // A group the project does not have: 400, nothing appended.
    let before = h.log_len().await;
    let (code, v) = h
        .req_at(
            ALICE,
            Method::POST,
            "/servers",
            "2.1",
            Some(
                json!({"server": {"name": "x", "imageRef": IMAGE, "flavorRef": "1",
                "security_groups": [{"name": "nope"}]}}),
            ),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        "Unable to find security_group with name or id 'nope'"
    );
    assert_eq!(h.log_len().await, before);
    let (code, v) = h
        .req_at(
            ALICE,
            Method::POST,
            "/servers",
            "2.1",
            Some(
                json!({"server": {"name": "x", "imageRef": IMAGE, "flavorRef": "1",
                "security_groups": [{"name": "web", "x": 1}]}}),
            ),
        )
        .await;
    assert_eq!(code, 400, "{v}");

    // By name, with an adminPass.
    let (code, v) = h
        .req_at(
            ALICE,
            Method::POST,
            "/servers",
            "2.1",
            Some(
                json!({"server": {"name": "w", "imageRef": IMAGE, "flavorRef": "1",
                "adminPass": "s3cret-Pass", "security_groups": [{"name": "web"}]}}),
            ),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["server"]["adminPass"], "s3cret-Pass");
    assert_eq!(v["server"]["security_groups"], json!([{"name": "web"}]));
    let w = v["server"]["id"].as_str().unwrap().to_string();
    let s = h.wait(&w, "ACTIVE").await;
    assert_eq!(s["security_groups"], json!([{"name": "web"}]), "{s}");
    let ports = wait_ports(&h, &w, |p| p.len() == 1).await;
    assert_eq!(port_groups(&ports[0]), vec![web_id.clone()]);

    // Without: the project's default group.
    let d = boot_ok(&h, ALICE, "d", json!("auto")).await;
    let sd = h.wait(&d, "ACTIVE").await;
    assert_eq!(sd["security_groups"], json!([{"name": "default"}]), "{sd}");
    let (_, groups) = h
        .neutron(
            ALICE,
            Method::GET,
            "/v2.0/security-groups?name=default",
            None,
        )
        .await;
    let default_id = groups["security_groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ports = wait_ports(&h, &d, |p| p.len() == 1).await;
    assert_eq!(port_groups(&ports[0]), vec![default_id.clone()]);
    // No ports: no `security_groups` key.
    let n = boot_ok(&h, ALICE, "n", json!("none")).await;
    let sn = h.wait(&n, "ACTIVE").await;
    assert!(sn.get("security_groups").is_none(), "{sn}");

    // Nova's detailed list: ingress rules only; the default group's rules name it.
    let (code, v) = h
        .req_at(
            ALICE,
            Method::GET,
            &format!("/servers/{d}/os-security-groups"),
            "2.1",
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let g = &v["security_groups"][0];
    assert_eq!(g["id"], default_id.as_str());
    assert_eq!(g["name"], "default");
    assert_eq!(g["tenant_id"], "p1");
    let rules = g["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{g}");
    for r in rules {
        assert_eq!(r["group"], json!({"name": "default", "tenant_id": "p1"}));
        assert_eq!(r["ip_range"], json!({}));
        assert_eq!(r["parent_group_id"], default_id.as_str());
        assert_eq!(r["ip_protocol"], Value::Null);
    }

    // addSecurityGroup / removeSecurityGroup change the ports.
    let act = |body: Value| {
        let (h, w) = (&h, w.clone());
        async move {
            h.req_at(
                ALICE,
                Method::POST,
                &format!("/servers/{w}/action"),
                "2.1",
                Some(body),
            )
            .await
        }
    };
    let (code, v) = act(json!({"addSecurityGroup": {"name": "default"}})).await;
    assert_eq!(code, 202, "{v}");
    let ports = ports_of(&h, &w).await;
    assert_eq!(
        port_groups(&ports[0]),
        vec![web_id.clone(), default_id.clone()]
    );
    let s = h.show(&w).await;
    assert_eq!(
        s["security_groups"],
        json!([{"name": "web"}, {"name": "default"}])
    );
    let (code, v) = act(json!({"addSecurityGroup": {"name": "web"}})).await;
    assert_eq!(code, 400, "{v}");
    // In use: Neutron refuses to delete it.
    let (code, v) = h
        .neutron(
            ALICE,
            Method::DELETE,
            &format!("/v2.0/security-groups/{web_id}"),
            None,
        )
        .await;
    assert_eq!(code, 409, "{v}");
    let (code, v) = act(json!({"removeSecurityGroup": {"name": "web"}})).await;
    assert_eq!(code, 202, "{v}");
    let ports = ports_of(&h, &w).await;
    assert_eq!(port_groups(&ports[0]), vec![default_id.clone()]);
    let before = h.log_len().await;
    let (code, v) = act(json!({"removeSecurityGroup": {"name": "web"}})).await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(
        v["itemNotFound"]["message"],
        format!("Security group web not associated with the instance {w}")
    );
    let (code, v) = act(json!({"addSecurityGroup": {"name": "nope"}})).await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(
        v["itemNotFound"]["message"],
        "Security group nope is not found for project p1"
    );
    assert_eq!(h.log_len().await, before);
    // Removing the last group leaves the key out.
    let (code, _) = act(json!({"removeSecurityGroup": {"name": "default"}})).await;
    assert_eq!(code, 202);
    let s = h.show(&w).await;
    assert!(s.get("security_groups").is_none(), "{s}");

    // `replay rebuild` folds the same read models (the recorded groups included).
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

/// Device tags (2.42+ on create): os-interface shows a boot port's tag from 2.70 (null
/// before it is given; absent before 2.70).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_ports_show_their_device_tags() {
    let h = Harness::start(|_| {}).await;
    let (code, v) = boot(
        &h,
        ALICE,
        "2.70",
        "t",
        json!([{"uuid": PRIVATE_ID, "tag": "nic1"}, {"uuid": PRIVATE_ID}]),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    h.wait(&id, "ACTIVE").await;
    wait_ports(&h, &id, |p| p.len() == 2).await;
    let (code, v) = h
        .req_at(
            ALICE,
            Method::GET,
            &format!("/servers/{id}/os-interface"),
            "2.70",
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let mut tags: Vec<Value> = v["interfaceAttachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["tag"].clone())
        .collect();
    tags.sort_by_key(|t| t.to_string());
    assert_eq!(tags, vec![json!("nic1"), Value::Null]);
    let (_, v) = h
        .req_at(
            ALICE,
            Method::GET,
            &format!("/servers/{id}/os-interface"),
            "2.69",
            None,
        )
        .await;
    assert!(v["interfaceAttachments"][0].get("tag").is_none(), "{v}");
}
