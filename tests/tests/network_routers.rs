//! Neutron routers and floating IPs through the network API: a gateway on the default
//! `public` network, interfaces by subnet and by port, Neutron's refusals (which
//! append nothing), floating IPs allocated from 172.24.4.0/24, associated through a
//! router and released on delete.

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::neutron::PUBLIC_ID;
use tests::Harness;

const ALICE: &str = "alice:p1";
const BOB: &str = "bob:p2";
const ADMIN: &str = "admin:admin";

async fn start() -> Harness {
    Harness::start(|_| {}).await
}

/// A network of alice's with one subnet: (network id, subnet id).
async fn private_net(h: &Harness, cidr: &str) -> (String, String) {
    let n = h
        .neutron_create(ALICE, "network", json!({"name": "n"}))
        .await;
    let nid = n["id"].as_str().unwrap().to_string();
    let s = h
        .neutron_create(
            ALICE,
            "subnet",
            json!({"network_id": nid, "ip_version": 4, "cidr": cidr}),
        )
        .await;
    (nid, s["id"].as_str().unwrap().to_string())
}

async fn put(h: &Harness, token: &str, path: &str, body: Value) -> (u16, Value) {
    h.neutron(token, M::PUT, path, Some(body)).await
}

fn in_public(ip: &Value) -> bool {
    ip.as_str().is_some_and(|s| s.starts_with("172.24.4."))
}

#[tokio::test]
async fn router_gateway_interfaces_and_in_use() {
    let h = start().await;
    let (nid, sid) = private_net(&h, "192.168.10.0/24").await;

    // A router with its gateway on public: the address comes from public's IPAM.
    let r = h
        .neutron_create(
            ALICE,
            "router",
            json!({"name": "r1", "external_gateway_info": {"network_id": PUBLIC_ID.to_string()}}),
        )
        .await;
    let rid = r["id"].as_str().unwrap().to_string();
    assert_eq!(r["status"], "ACTIVE");
    assert_eq!(r["project_id"], "p1");
    let gw = &r["external_gateway_info"];
    assert_eq!(gw["network_id"], PUBLIC_ID.to_string());
    assert_eq!(gw["enable_snat"], true);
    let gw_ip = gw["external_fixed_ips"][0]["ip_address"].clone();
    assert!(in_public(&gw_ip), "{r}");

    // Its gateway port (admin sees it; alice does not).
    let (_, ports) = h
        .neutron(ADMIN, M::GET, &format!("/v2.0/ports?device_id={rid}"), None)
        .await;
    let ports = ports["ports"].as_array().unwrap().clone();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["device_owner"], "network:router_gateway");
    assert_eq!(ports[0]["fixed_ips"][0]["ip_address"], gw_ip);
    let gw_port = ports[0]["id"].as_str().unwrap().to_string();

    // Its gateway keeps public external.
    let (code, v) = put(
        &h,
        ADMIN,
        &format!("/v2.0/networks/{PUBLIC_ID}"),
        json!({"network": {"router:external": false}}),
    )
    .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "ExternalNetworkInUse");

    // Non-admin may not choose SNAT mode or addresses.
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}"),
        json!({"router": {"external_gateway_info": {"network_id": PUBLIC_ID.to_string(), "enable_snat": false}}}),
    )
    .await;
    assert_eq!(code, 403, "{v}");

    // A gateway on a network that is not external: Neutron's 400.
    let before = h.log_len().await;
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}"),
        json!({"router": {"external_gateway_info": {"network_id": nid}}}),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["NeutronError"]["message"],
        format!("Bad router request: Network {nid} is not an external network.")
    );

    // Interface by subnet: a port holding the subnet's gateway address.
    let (code, i) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        json!({"subnet_id": sid}),
    )
    .await;
    assert_eq!(code, 200, "{i}");
    assert!(code == 200 && h.log_len().await > before);
    let mut keys: Vec<&String> = i.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "id",
            "network_id",
            "port_id",
            "project_id",
            "subnet_id",
            "subnet_ids",
            "tenant_id"
        ]
    );
    assert_eq!(i["id"], rid.as_str());
    assert_eq!(i["subnet_id"], sid.as_str());
    assert_eq!(i["network_id"], nid.as_str());
    let ipid = i["port_id"].as_str().unwrap().to_string();
    let (_, p) = h
        .neutron(ALICE, M::GET, &format!("/v2.0/ports/{ipid}"), None)
        .await;
    assert_eq!(p["port"]["device_id"], rid.as_str());
    assert_eq!(p["port"]["device_owner"], "network:router_interface");
    assert_eq!(p["port"]["fixed_ips"][0]["ip_address"], "192.168.10.1");

    // Refusals append nothing: a second interface on the subnet, an overlapping
    // subnet, deleting the router, deleting the interface port or the subnet.
    let before = h.log_len().await;
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        json!({"subnet_id": sid}),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["NeutronError"]["message"],
        format!("Bad router request: Router already has a port on subnet {sid}.")
    );
    let (_, sid2) = private_net(&h, "192.168.10.128/25").await;
    let mid = h.log_len().await;
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        json!({"subnet_id": sid2}),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("overlaps with cidr 192.168.10.0/24"),
        "{v}"
    );
    let (code, v) = h
        .neutron(ALICE, M::DELETE, &format!("/v2.0/routers/{rid}"), None)
        .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "RouterInUse");
    let (code, _) = h
        .neutron(ALICE, M::DELETE, &format!("/v2.0/ports/{ipid}"), None)
        .await;
    assert_eq!(code, 409);
    let (code, _) = h
        .neutron(ALICE, M::DELETE, &format!("/v2.0/subnets/{sid}"), None)
        .await;
    assert_eq!(code, 409);
    let (code, v) = h
        .neutron(ALICE, M::DELETE, &format!("/v2.0/networks/{nid}"), None)
        .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "NetworkInUse");
    let (code, _) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        json!({}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(h.log_len().await, mid);
    assert!(mid > before);

    // Interface by port: a free port with one address becomes the router's.
    let (nid3, sid3) = private_net(&h, "192.168.30.0/24").await;
    let port = h
        .neutron_create(ALICE, "port", json!({"network_id": nid3}))
        .await;
    let pid = port["id"].as_str().unwrap().to_string();
    let (code, i) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        json!({"port_id": pid}),
    )
    .await;
    assert_eq!(code, 200, "{i}");
    assert_eq!(i["port_id"], pid.as_str());
    assert_eq!(i["subnet_ids"], json!([sid3]));
    // A port in use is refused.
    let other = h
        .neutron_create(
            ALICE,
            "port",
            json!({"network_id": nid3, "device_id": "vm-1"}),
        )
        .await;
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        json!({"port_id": other["id"]}),
    )
    .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "PortInUse");

    // Extra routes: a nexthop on an interface's subnet; it keeps the interface.
    let routes = json!([{"destination": "10.50.0.0/16", "nexthop": "192.168.10.7"}]);
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}"),
        json!({"router": {"routes": routes}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["router"]["routes"], routes);
    let before = h.log_len().await;
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}"),
        json!({"router": {"routes": [{"destination": "10.50.0.0/16", "nexthop": "10.99.0.1"}]}}),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["NeutronError"]["type"], "InvalidRoutes");
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/remove_router_interface"),
        json!({"subnet_id": sid}),
    )
    .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "RouterInterfaceInUseByRoute");
    assert_eq!(h.log_len().await, before);
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}"),
        json!({"router": {"routes": null}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["router"]["routes"], json!([]));

    // Remove: by port (the port goes), by subnet; then unknown ones are 404s.
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/remove_router_interface"),
        json!({"port_id": pid}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = h
        .neutron(ALICE, M::GET, &format!("/v2.0/ports/{pid}"), None)
        .await;
    assert_eq!(code, 404);
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/remove_router_interface"),
        json!({"subnet_id": sid}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/remove_router_interface"),
        json!({"subnet_id": sid}),
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(
        v["NeutronError"]["type"],
        "RouterInterfaceNotFoundForSubnet"
    );
    assert_eq!(
        v["NeutronError"]["message"],
        format!("Router {rid} has no interface on subnet {sid}")
    );
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/remove_router_interface"),
        json!({"port_id": pid}),
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["NeutronError"]["type"], "RouterInterfaceNotFound");
    // The subnet is free again.
    let (code, _) = h
        .neutron(ALICE, M::DELETE, &format!("/v2.0/subnets/{sid}"), None)
        .await;
    assert_eq!(code, 204);

    // Bob sees nothing of alice's router.
    let (code, _) = h
        .neutron(BOB, M::GET, &format!("/v2.0/routers/{rid}"), None)
        .await;
    assert_eq!(code, 404);
    let (_, l) = h.neutron(BOB, M::GET, "/v2.0/routers", None).await;
    assert_eq!(l["routers"], json!([]));

    // Clearing the gateway frees its port; deleting the router works.
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}"),
        json!({"router": {"external_gateway_info": {}}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["router"]["external_gateway_info"], Value::Null);
    let (code, _) = h
        .neutron(ADMIN, M::GET, &format!("/v2.0/ports/{gw_port}"), None)
        .await;
    assert_eq!(code, 404);
    let (code, _) = h
        .neutron(ALICE, M::DELETE, &format!("/v2.0/routers/{rid}"), None)
        .await;
    assert_eq!(code, 204);
    let (code, v) = h
        .neutron(ALICE, M::GET, &format!("/v2.0/routers/{rid}"), None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(v["NeutronError"]["type"], "RouterNotFound");
    rebuilt(h).await;
}

/// `replay rebuild` reproduces every read model (routers and floating IPs included).
async fn rebuilt(h: Harness) {
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test]
async fn floating_ips_associate_through_a_router() {
    let h = start().await;
    let (nid, sid) = private_net(&h, "192.168.20.0/24").await;
    let port = h
        .neutron_create(ALICE, "port", json!({"network_id": nid}))
        .await;
    let pid = port["id"].as_str().unwrap().to_string();
    let fixed = port["fixed_ips"][0]["ip_address"].clone();

    // Without a router the port is unreachable: 404, nothing appended.
    let before = h.log_len().await;
    let (code, v) = h
        .neutron(
            ALICE,
            M::POST,
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": PUBLIC_ID.to_string(), "port_id": pid}})),
        )
        .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(
        v["NeutronError"]["type"],
        "ExternalGatewayForFloatingIPNotFound"
    );
    assert_eq!(
        v["NeutronError"]["message"],
        format!(
            "External network {PUBLIC_ID} is not reachable from subnet {sid}.  Therefore, cannot associate Port {pid} with a Floating IP."
        )
    );
    // A floating IP on a network that is not external.
    let (code, v) = h
        .neutron(
            ALICE,
            M::POST,
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": nid}})),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(h.log_len().await, before);

    // An unassociated floating IP: DOWN, address from public.
    let f = h
        .neutron_create(
            ALICE,
            "floatingip",
            json!({"floating_network_id": PUBLIC_ID.to_string()}),
        )
        .await;
    let fid = f["id"].as_str().unwrap().to_string();
    assert!(in_public(&f["floating_ip_address"]), "{f}");
    assert_eq!(f["status"], "DOWN");
    assert_eq!(f["port_id"], Value::Null);
    assert_eq!(f["router_id"], Value::Null);
    assert_eq!(f["port_details"], Value::Null);
    assert_eq!(f["project_id"], "p1");
    // A chosen address: not for a member; an admin's is honoured, once.
    let (code, v) = h
        .neutron(
            ALICE,
            M::POST,
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": PUBLIC_ID.to_string(), "floating_ip_address": "172.24.4.200"}})),
        )
        .await;
    assert_eq!(code, 403, "{v}");
    let chosen = h
        .neutron_create(
            ADMIN,
            "floatingip",
            json!({"floating_network_id": PUBLIC_ID.to_string(), "floating_ip_address": "172.24.4.200", "project_id": "p1"}),
        )
        .await;
    assert_eq!(chosen["floating_ip_address"], "172.24.4.200");
    assert_eq!(chosen["project_id"], "p1");
    let (code, v) = h
        .neutron(
            ADMIN,
            M::POST,
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": PUBLIC_ID.to_string(), "floating_ip_address": "172.24.4.200"}})),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "IpAddressAlreadyAllocated");
    let (code, _) = h
        .neutron(
            ALICE,
            M::DELETE,
            &format!("/v2.0/floatingips/{}", chosen["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(code, 204);

    // A router connecting the subnet to public.
    let r = h
        .neutron_create(
            ALICE,
            "router",
            json!({"external_gateway_info": {"network_id": PUBLIC_ID.to_string()}}),
        )
        .await;
    let rid = r["id"].as_str().unwrap().to_string();
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        json!({"subnet_id": sid}),
    )
    .await;
    assert_eq!(code, 200, "{v}");

    // Associate.
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/floatingips/{fid}"),
        json!({"floatingip": {"port_id": pid}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let fv = &v["floatingip"];
    assert_eq!(fv["port_id"], pid.as_str());
    assert_eq!(fv["fixed_ip_address"], fixed);
    assert_eq!(fv["router_id"], rid.as_str());
    assert_eq!(fv["status"], "ACTIVE");
    assert_eq!(fv["port_details"]["network_id"], nid.as_str());
    assert_eq!(fv["port_details"]["mac_address"], port["mac_address"]);

    // A second floating IP on the same fixed IP: 409. The interface is in use.
    let before = h.log_len().await;
    let (code, v) = h
        .neutron(
            ALICE,
            M::POST,
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": PUBLIC_ID.to_string(), "port_id": pid}})),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "FloatingIPPortAlreadyAssociated");
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/routers/{rid}/remove_router_interface"),
        json!({"subnet_id": sid}),
    )
    .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        v["NeutronError"]["type"],
        "RouterInterfaceInUseByFloatingIP"
    );
    // Bob neither sees it nor may associate alice's port.
    let (code, _) = h
        .neutron(BOB, M::GET, &format!("/v2.0/floatingips/{fid}"), None)
        .await;
    assert_eq!(code, 404);
    let (_, l) = h.neutron(BOB, M::GET, "/v2.0/floatingips", None).await;
    assert_eq!(l["floatingips"], json!([]));
    let (code, v) = h
        .neutron(
            BOB,
            M::POST,
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": PUBLIC_ID.to_string(), "port_id": pid}})),
        )
        .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["NeutronError"]["type"], "PortNotFound");
    assert_eq!(h.log_len().await, before);

    // Disassociate.
    let (code, v) = put(
        &h,
        ALICE,
        &format!("/v2.0/floatingips/{fid}"),
        json!({"floatingip": {"port_id": null}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["floatingip"]["port_id"], Value::Null);
    assert_eq!(v["floatingip"]["fixed_ip_address"], Value::Null);
    assert_eq!(v["floatingip"]["router_id"], Value::Null);
    assert_eq!(v["floatingip"]["status"], "DOWN");

    // Created associated; deleting the port disassociates it.
    let f2 = h
        .neutron_create(
            ALICE,
            "floatingip",
            json!({"floating_network_id": PUBLIC_ID.to_string(), "port_id": pid, "fixed_ip_address": fixed}),
        )
        .await;
    let fid2 = f2["id"].as_str().unwrap().to_string();
    assert_eq!(f2["router_id"], rid.as_str());
    assert_ne!(f2["floating_ip_address"], f["floating_ip_address"]);
    let (code, _) = h
        .neutron(ALICE, M::DELETE, &format!("/v2.0/ports/{pid}"), None)
        .await;
    assert_eq!(code, 204);
    let (_, v) = h
        .neutron(ALICE, M::GET, &format!("/v2.0/floatingips/{fid2}"), None)
        .await;
    assert_eq!(v["floatingip"]["port_id"], Value::Null);

    // Delete frees the address: its port is gone.
    let (_, ports) = h
        .neutron(ADMIN, M::GET, &format!("/v2.0/ports?device_id={fid}"), None)
        .await;
    let fport = ports["ports"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(ports["ports"][0]["device_owner"], "network:floatingip");
    let (code, _) = h
        .neutron(ALICE, M::DELETE, &format!("/v2.0/floatingips/{fid}"), None)
        .await;
    assert_eq!(code, 204);
    let (code, _) = h
        .neutron(ADMIN, M::GET, &format!("/v2.0/ports/{fport}"), None)
        .await;
    assert_eq!(code, 404);
    let (code, v) = h
        .neutron(ALICE, M::GET, &format!("/v2.0/floatingips/{fid}"), None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(v["NeutronError"]["type"], "FloatingIPNotFound");

    // An external network goes with its unassociated floating IPs.
    let ext = h
        .neutron_create(ADMIN, "network", json!({"router:external": true}))
        .await;
    let ext_id = ext["id"].as_str().unwrap().to_string();
    h.neutron_create(
        ADMIN,
        "subnet",
        json!({"network_id": ext_id, "ip_version": 4, "cidr": "203.0.113.0/24"}),
    )
    .await;
    let f3 = h
        .neutron_create(ADMIN, "floatingip", json!({"floating_network_id": ext_id}))
        .await;
    assert!(f3["floating_ip_address"]
        .as_str()
        .unwrap()
        .starts_with("203.0.113."));
    let (code, v) = h
        .neutron(ADMIN, M::DELETE, &format!("/v2.0/networks/{ext_id}"), None)
        .await;
    assert_eq!(code, 204, "{v}");
    let (code, _) = h
        .neutron(
            ADMIN,
            M::GET,
            &format!("/v2.0/floatingips/{}", f3["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(code, 404);

    // The extensions list what is implemented.
    let (_, e) = h
        .neutron(ALICE, M::GET, "/v2.0/extensions/router", None)
        .await;
    assert_eq!(e["extension"]["alias"], "router");
    rebuilt(h).await;
}
