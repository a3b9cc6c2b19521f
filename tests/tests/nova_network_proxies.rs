//! Nova's network proxies through the compute API, backed by the network service:
//! os-floating-ips, os-floating-ip-pools, os-networks, os-tenant-networks and the
//! addFloatingIp / removeFloatingIp actions, with Nova's shapes, errors and
//! microversion limits.

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::neutron::PUBLIC_ID;
use tests::Harness;

const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
const ALICE: &str = "alice:p1";
const BOB: &str = "bob:p2";
const ADMIN: &str = "admin:admin";

/// Alice's network and subnet, attached to a router whose gateway is on public.
async fn routed_net(h: &Harness) -> String {
    let n = h
        .neutron_create(ALICE, "network", json!({"name": "n1"}))
        .await;
    let nid = n["id"].as_str().unwrap().to_string();
    let s = h
        .neutron_create(
            ALICE,
            "subnet",
            json!({"network_id": nid, "ip_version": 4, "cidr": "192.168.30.0/24"}),
        )
        .await;
    let r = h
        .neutron_create(
            ALICE,
            "router",
            json!({"name": "r", "external_gateway_info": {"network_id": PUBLIC_ID.to_string()}}),
        )
        .await;
    let (code, v) = h
        .neutron(
            ALICE,
            M::PUT,
            &format!(
                "/v2.0/routers/{}/add_router_interface",
                r["id"].as_str().unwrap()
            ),
            Some(json!({"subnet_id": s["id"]})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    nid
}

async fn boot(h: &Harness, net: &str) -> String {
    let (code, v) = h
        .req_at(
            ALICE,
            M::POST,
            "/servers",
            "2.1",
            Some(
                json!({"server": {"name": "s", "imageRef": IMAGE, "flavorRef": "1",
                "networks": [{"uuid": net}]}}),
            ),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let s = h.wait(&id, "ACTIVE").await;
    assert!(s["addresses"]["n1"][0]["addr"].is_string(), "{s}");
    id
}

async fn action(h: &Harness, server: &str, body: Value) -> (u16, Value) {
    h.req_at(
        ALICE,
        M::POST,
        &format!("/servers/{server}/action"),
        "2.1",
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floating_ips_pools_and_actions() {
    let h = Harness::start(|_| {}).await;
    let net = routed_net(&h).await;
    let server = boot(&h, &net).await;

    // Pools: the external networks.
    let (code, v) = h
        .req_at(ALICE, M::GET, "/os-floating-ip-pools", "2.1", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(v, json!({"floating_ip_pools": [{"name": "public"}]}));

    // Create: default pool, then an unknown pool.
    let (code, v) = h
        .req_at(ALICE, M::POST, "/os-floating-ips", "2.1", None)
        .await;
    assert_eq!(code, 200, "{v}");
    let fip = v["floating_ip"].clone();
    assert_eq!(fip["pool"], "public");
    assert_eq!(fip["fixed_ip"], Value::Null);
    assert_eq!(fip["instance_id"], Value::Null);
    let id = fip["id"].as_str().unwrap().to_string();
    let ip = fip["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("172.24.4."), "{fip}");
    let (code, v) = h
        .req_at(
            ALICE,
            M::POST,
            "/os-floating-ips",
            "2.1",
            Some(json!({"pool": "nope"})),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(v["itemNotFound"]["message"], "Floating IP pool not found.");

    // List and show; another project sees none of it.
    let (code, v) = h
        .req_at(ALICE, M::GET, "/os-floating-ips", "2.1", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["floating_ips"], json!([fip]));
    let (code, v) = h
        .req_at(BOB, M::GET, &format!("/os-floating-ips/{id}"), "2.1", None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        format!("Floating IP not found for ID {id}")
    );

    // addFloatingIp: associated with the server's port (Neutron's rules).
    let (code, v) = action(
        &h,
        &server,
        json!({"addFloatingIp": {"address": "172.24.4.250"}}),
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["itemNotFound"]["message"], "floating IP not found");
    let (code, v) = action(&h, &server, json!({"addFloatingIp": {"address": ip}})).await;
    assert_eq!(code, 202, "{v}");
    let (_, v) = h
        .req_at(
            ALICE,
            M::GET,
            &format!("/os-floating-ips/{id}"),
            "2.1",
            None,
        )
        .await;
    assert_eq!(v["floating_ip"]["instance_id"], server.as_str());
    assert!(v["floating_ip"]["fixed_ip"]
        .as_str()
        .unwrap()
        .starts_with("192.168.30."));
    let (_, s) = h
        .req_at(ALICE, M::GET, &format!("/servers/{server}"), "2.1", None)
        .await;
    assert_eq!(s["server"]["addresses"]["n1"][1]["addr"], ip.as_str());
    // The same through Neutron.
    let (_, n) = h
        .neutron(ALICE, M::GET, &format!("/v2.0/floatingips/{id}"), None)
        .await;
    assert_eq!(n["floatingip"]["status"], "ACTIVE", "{n}");

    // removeFloatingIp: only from the server holding it.
    let (code, v) = action(&h, &server, json!({"removeFloatingIp": {"address": ip}})).await;
    assert_eq!(code, 202, "{v}");
    let (code, v) = action(&h, &server, json!({"removeFloatingIp": {"address": ip}})).await;
    assert_eq!(code, 409);
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Floating IP {ip} is not associated with instance {server}.")
    );
    // Ended at 2.44 / 2.36.
    let (code, _) = h
        .req_at(
            ALICE,
            M::POST,
            &format!("/servers/{server}/action"),
            "2.44",
            Some(json!({"addFloatingIp": {"address": ip}})),
        )
        .await;
    assert_eq!(code, 404);
    let (code, _) = h
        .req_at(ALICE, M::GET, "/os-floating-ips", "2.36", None)
        .await;
    assert_eq!(code, 404);

    // A server with no port.
    let (code, v) = h
        .req_at(
            ALICE,
            M::POST,
            "/servers",
            "2.37",
            Some(
                json!({"server": {"name": "bare", "imageRef": IMAGE, "flavorRef": "1",
                "networks": "none"}}),
            ),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let bare = v["server"]["id"].as_str().unwrap().to_string();
    h.wait(&bare, "ACTIVE").await;
    let (code, v) = action(&h, &bare, json!({"addFloatingIp": {"address": ip}})).await;
    assert_eq!(code, 400);
    assert_eq!(
        v["badRequest"]["message"],
        "Instance network is not ready yet"
    );

    // Delete: 202, then gone.
    let (code, _) = h
        .req_at(
            ALICE,
            M::DELETE,
            &format!("/os-floating-ips/{id}"),
            "2.1",
            None,
        )
        .await;
    assert_eq!(code, 202);
    let (_, v) = h
        .req_at(ALICE, M::GET, "/os-floating-ips", "2.1", None)
        .await;
    assert_eq!(v["floating_ips"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_and_tenant_networks() {
    let h = Harness::start(|_| {}).await;
    let net = routed_net(&h).await;
    let (code, v) = h.req_at(ALICE, M::GET, "/os-networks", "2.1", None).await;
    assert_eq!(code, 200);
    let nets = v["networks"].as_array().unwrap();
    let mine = nets.iter().find(|n| n["id"] == net.as_str()).expect("n1");
    assert_eq!(mine["label"], "n1");
    assert_eq!(mine["cidr"], Value::Null);
    assert!(mine.get("project_id").is_none());
    // Bob does not see alice's network; the admin does, with the admin keys.
    let (_, v) = h.req_at(BOB, M::GET, "/os-networks", "2.1", None).await;
    assert!(v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["id"] != net.as_str()));
    let (code, v) = h
        .req_at(BOB, M::GET, &format!("/os-networks/{net}"), "2.1", None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(v["itemNotFound"]["message"], "Network not found");
    let (code, v) = h
        .req_at(ADMIN, M::GET, &format!("/os-networks/{net}"), "2.1", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["network"]["project_id"], Value::Null);
    assert_eq!(v["network"]["label"], "n1");

    let (code, v) = h
        .req_at(
            ALICE,
            M::GET,
            &format!("/os-tenant-networks/{net}"),
            "2.1",
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        v,
        json!({"network": {"id": net, "cidr": "None", "label": "n1"}})
    );
    let (code, v) = h
        .req_at(ALICE, M::GET, "/os-tenant-networks", "2.1", None)
        .await;
    assert_eq!(code, 200);
    assert!(v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == net.as_str()));
    for path in ["/os-networks", "/os-tenant-networks"] {
        let (code, _) = h.req_at(ALICE, M::GET, path, "2.36", None).await;
        assert_eq!(code, 404, "{path}");
    }
}
