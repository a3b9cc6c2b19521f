//! Config drive contents and the metadata service (issue 14) through the real APIs: a
//! server with a key pair, user data, server metadata and a port on a static subnet;
//! its documents against Nova's shapes and what cloud-init's OpenStack datasource
//! reads; the service's proxy signature checks; and the ISO read back with isoinfo.

use std::net::SocketAddr;

use reqwest::Method;
use serde_json::{json, Value};
use tests::Harness;

const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
const ALICE: &str = "alice:p1";
const SECRET: &str = "s3cret";
const PUB: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";
/// `#cloud-config\n` in base64.
const USER_DATA_B64: &str = "I2Nsb3VkLWNvbmZpZwo=";

fn sign(id: &str) -> String {
    metadata::http::sign(SECRET, id)
}

/// A server on its own network (static subnet, DNS, a host route) with a key pair,
/// user data and metadata; its id and its port.
async fn setup(h: &Harness) -> (String, Value) {
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            "/os-keypairs",
            Some(json!({"keypair": {"name": "k1", "public_key": PUB}})),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let net = h
        .neutron_create(ALICE, "network", json!({"name": "md-net"}))
        .await;
    let subnet = h
        .neutron_create(
            ALICE,
            "subnet",
            json!({"network_id": net["id"], "cidr": "192.168.50.0/24", "ip_version": 4,
                   "enable_dhcp": false, "dns_nameservers": ["192.168.50.2"],
                   "host_routes": [{"destination": "10.9.0.0/16", "nexthop": "192.168.50.254"}]}),
        )
        .await;
    let port = h
        .neutron_create(
            ALICE,
            "port",
            json!({"network_id": net["id"], "fixed_ips": [{"subnet_id": subnet["id"]}]}),
        )
        .await;
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            "/servers",
            Some(json!({"server": {
                "name": "Web Server_1", "imageRef": IMAGE, "flavorRef": "1",
                "key_name": "k1", "user_data": USER_DATA_B64, "config_drive": true,
                "metadata": {"role": "web"},
                "networks": [{"port": port["id"]}],
            }})),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().expect("id").to_string();
    h.wait(&id, "ACTIVE").await;
    (id, port)
}

async fn get(
    h: &Harness,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut rb = h.http.get(format!("http://{addr}{path}"));
    // reqwest sends `Accept: */*` (webob's HTML errors) unless told otherwise.
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        rb = rb.header("Accept", "text/plain");
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.expect("request");
    let code = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    (code, ct, r.text().await.expect("body"))
}

#[tokio::test]
async fn metadata_service_and_config_drive() {
    let h = Harness::start(|o| {
        o.metadata_listen = Some("127.0.0.1:0".parse().expect("addr"));
        o.metadata_secret = SECRET.into();
    })
    .await;
    let addr = h.stack.metadata_addr.expect("metadata listener");
    let (id, port) = setup(&h).await;
    let sig = sign(&id);
    let (project, port_id, mac) = (
        "p1",
        port["id"].as_str().expect("port id").to_string(),
        port["mac_address"].as_str().expect("mac").to_string(),
    );
    let ip = port["fixed_ips"][0]["ip_address"]
        .as_str()
        .expect("ip")
        .to_string();
    let auth = [
        ("X-Instance-ID", id.as_str()),
        ("X-Tenant-ID", project),
        ("X-Instance-ID-Signature", sig.as_str()),
    ];

    // `/` lists the EC2 versions, without any check.
    let (code, ct, body) = get(&h, addr, "/", &[]).await;
    assert_eq!((code, ct.as_str()), (200, "text/plain; charset=UTF-8"));
    assert!(body.starts_with("1.0\n2007-01-19\n") && body.ends_with("2009-04-04\nlatest"));

    // The proxy's headers: missing -> 400, bad signature -> 403, other project or
    // unknown instance -> 404 (webob's plain text bodies without Accept).
    let (code, _, body) = get(&h, addr, "/openstack", &[]).await;
    assert_eq!(code, 400);
    assert_eq!(
        body,
        "400 Bad Request\n\nX-Instance-ID header is missing from request.\n\n   "
    );
    let (code, _, body) = get(&h, addr, "/openstack", &auth[..2]).await;
    assert_eq!(code, 400);
    assert!(body.contains("X-Instance-ID-Signature header is missing from request."));
    let (code, _, body) = get(&h, addr, "/openstack", &[auth[0], auth[2]]).await;
    assert_eq!(code, 400);
    assert!(body.contains("X-Tenant-ID header is missing from request."));
    let wrong = sign("another");
    let (code, ct, body) = get(
        &h,
        addr,
        "/openstack",
        &[auth[0], auth[1], ("X-Instance-ID-Signature", &wrong)],
    )
    .await;
    assert_eq!((code, ct.as_str()), (403, "text/plain; charset=UTF-8"));
    assert_eq!(
        body,
        "403 Forbidden\n\nInvalid proxy request signature.\n\n   "
    );
    let (code, ct, body) = get(
        &h,
        addr,
        "/openstack",
        &[
            auth[0],
            auth[1],
            ("X-Instance-ID-Signature", "nothex"),
            ("Accept", "*/*"),
        ],
    )
    .await;
    assert_eq!((code, ct.as_str()), (403, "text/html; charset=UTF-8"));
    assert!(body.contains("<h1>403 Forbidden</h1>"), "{body}");
    let (code, _, _) = get(
        &h,
        addr,
        "/openstack",
        &[auth[0], ("X-Tenant-ID", "p2"), auth[2]],
    )
    .await;
    assert_eq!(code, 404);
    let ghost = uuid::Uuid::new_v4().to_string();
    let ghost_sig = sign(&ghost);
    let (code, _, body) = get(
        &h,
        addr,
        "/openstack",
        &[
            ("X-Instance-ID", &ghost),
            auth[1],
            ("X-Instance-ID-Signature", &ghost_sig),
        ],
    )
    .await;
    assert_eq!(code, 404);
    assert!(body.contains("The resource could not be found."));

    // The OpenStack tree.
    let (code, _, body) = get(&h, addr, "/openstack", &auth).await;
    assert_eq!(code, 200);
    assert!(body.starts_with("2012-08-10\n") && body.ends_with("2025-04-04\nlatest"));
    let (code, _, body) = get(&h, addr, "/openstack/latest", &auth).await;
    assert_eq!(code, 200);
    assert_eq!(
        body,
        "meta_data.json\nuser_data\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json"
    );
    let (_, _, body) = get(&h, addr, "/openstack/2012-08-10/", &auth).await;
    assert_eq!(body, "meta_data.json\nuser_data");
    let (code, ct, body) = get(&h, addr, "/openstack/latest/meta_data.json", &auth).await;
    assert_eq!((code, ct.as_str()), (200, "application/json"));
    let md: Value = serde_json::from_str(&body).expect("json");
    // What cloud-init's OpenStack datasource reads, in Nova's shapes and order.
    let keys: Vec<&str> = md
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "uuid",
        "meta",
        "public_keys",
        "keys",
        "hostname",
        "name",
        "launch_index",
        "availability_zone",
        "random_seed",
        "project_id",
        "devices",
        "dedicated_cpus",
    ];
    want.sort();
    assert_eq!(keys, want, "{body}");
    assert!(body.starts_with(&format!(
        "{{\"uuid\": \"{id}\", \"meta\": {{\"role\": \"web\"}}"
    )));
    assert_eq!(md["hostname"], "web-server-1.novalocal");
    assert_eq!(md["name"], "Web Server_1");
    assert_eq!(md["launch_index"], 0);
    assert_eq!(md["availability_zone"], "nova");
    assert_eq!(md["project_id"], project);
    assert_eq!(md["public_keys"], json!({"k1": PUB}));
    assert_eq!(
        md["keys"],
        json!([{"name": "k1", "type": "ssh", "data": PUB}])
    );
    assert_eq!(md["devices"], json!([]));
    assert_eq!(md["random_seed"].as_str().map(str::len), Some(684));
    assert!(md.get("admin_pass").is_none());
    let (_, _, body) = get(&h, addr, "/openstack/2012-08-10/meta_data.json", &auth).await;
    let old: Value = serde_json::from_str(&body).expect("json");
    assert!(old.get("random_seed").is_none() && old.get("project_id").is_none());
    let (code, ct, body) = get(&h, addr, "/openstack/latest/user_data", &auth).await;
    assert_eq!(
        (code, ct.as_str(), body.as_str()),
        (200, "text/plain; charset=UTF-8", "#cloud-config\n")
    );
    let (_, ct, body) = get(&h, addr, "/openstack/latest/vendor_data.json", &auth).await;
    assert_eq!((ct.as_str(), body.as_str()), ("application/json", "{}"));
    let (_, _, body) = get(&h, addr, "/openstack/latest/vendor_data2.json", &auth).await;
    assert_eq!(body, "{\"static\": {}}");
    let (code, _, body) = get(&h, addr, "/openstack/latest/password", &auth).await;
    assert_eq!((code, body.as_str()), (200, ""));
    let (code, ct, body) = get(&h, addr, "/openstack/latest/network_data.json", &auth).await;
    assert_eq!((code, ct.as_str()), (200, "text/plain; charset=UTF-8"));
    let nd: Value = serde_json::from_str(&body).expect("json");
    let net_id = port["network_id"].clone();
    let link = format!("tap{}", &port_id[..11]);
    assert_eq!(
        nd,
        json!({
            "links": [{"id": link, "vif_id": port_id, "type": "ovs", "mtu": 1500,
                       "ethernet_mac_address": mac}],
            "networks": [{"id": "network0", "type": "ipv4", "link": link, "ip_address": ip,
                          "netmask": "255.255.255.0",
                          "routes": [
                              {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.168.50.1"},
                              {"network": "10.9.0.0", "netmask": "255.255.0.0", "gateway": "192.168.50.254"}],
                          "network_id": net_id,
                          "services": [{"type": "dns", "address": "192.168.50.2"}]}],
            "services": [{"type": "dns", "address": "192.168.50.2"}],
        }),
        "{body}"
    );
    for bad in [
        "/openstack/1999-01-01/meta_data.json",
        "/openstack/latest/nothing",
        "/openstack/latest/meta_data.json/x",
        "/openstack/content/0000",
        "/2006-01-01/meta-data/",
        "/latest/meta-data/nothing",
    ] {
        let (code, _, _) = get(&h, addr, bad, &auth).await;
        assert_eq!(code, 404, "{bad}");
    }

    // The EC2 tree.
    let (code, _, body) = get(&h, addr, "/latest", &auth).await;
    assert_eq!((code, body.as_str()), (200, "meta-data/\nuser-data"));
    let (_, _, body) = get(&h, addr, "/latest/meta-data/", &auth).await;
    assert_eq!(
        body,
        "ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\nhostname\n\
         instance-action\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\n\
         placement/\npublic-hostname\npublic-ipv4\npublic-keys/\nreservation-id\nsecurity-groups"
    );
    let leaf = |p: &'static str| {
        let h = &h;
        let auth = &auth;
        async move { get(h, addr, p, auth).await.2 }
    };
    assert_eq!(
        leaf("/latest/meta-data/hostname").await,
        "web-server-1.novalocal"
    );
    assert_eq!(leaf("/latest/meta-data/local-ipv4").await, ip);
    assert_eq!(
        leaf("/latest/meta-data/placement/availability-zone").await,
        "nova"
    );
    assert_eq!(leaf("/latest/meta-data/public-keys").await, "0=k1");
    assert_eq!(leaf("/latest/meta-data/public-keys/0").await, "openssh-key");
    assert_eq!(
        leaf("/latest/meta-data/public-keys/0/openssh-key").await,
        PUB
    );
    assert_eq!(leaf("/latest/meta-data/instance-type").await, "m1.tiny");
    assert_eq!(leaf("/latest/meta-data/security-groups").await, "default");
    assert_eq!(
        leaf("/latest/meta-data/block-device-mapping/root").await,
        "/dev/vda"
    );
    assert_eq!(
        leaf("/latest/meta-data/instance-id").await,
        format!("i-{}", &id[..8])
    );
    assert_eq!(leaf("/latest/user-data").await, "#cloud-config\n");
    assert_eq!(leaf("/2009-04-04/meta-data/ami-launch-index").await, "0");
    // Every item of the tree answers 200 (Nova's test_get_metadata walk).
    let mut todo = vec!["/2009-04-04/meta-data".to_string()];
    let mut leaves = 0;
    while let Some(path) = todo.pop() {
        let (code, _, body) = get(&h, addr, &path, &auth).await;
        assert_eq!(code, 200, "{path}");
        if path.ends_with('/') || !path.contains("/meta-data/") || path.ends_with("public-keys") {
            for item in body.lines() {
                let item = if path.contains("public-keys") {
                    item.split('=').next().unwrap_or(item)
                } else {
                    item
                };
                let base = path.trim_end_matches('/');
                if let Some(dir) = item.strip_suffix('/') {
                    todo.push(format!("{base}/{dir}/"));
                } else if path.ends_with("public-keys") {
                    todo.push(format!("{base}/{item}/"));
                } else {
                    todo.push(format!("{base}/{item}"));
                }
            }
        } else {
            leaves += 1;
        }
    }
    assert!(leaves > 15, "{leaves}");
    // `/foo/../` is the root.
    let (_, _, body) = get(&h, addr, "/foo/../", &[]).await;
    assert!(body.ends_with("\nlatest"));
    // 1.0 has no placement.
    let (code, _, _) = get(&h, addr, "/1.0/meta-data/placement/", &auth).await;
    assert_eq!(code, 404);

    // The config drive's tree, as Nova writes it.
    let files = {
        let views = h.stack.engine.world().read();
        let iid = domain::InstanceId::parse(&id).expect("id");
        metadata::config_drive::files(&views, &iid).expect("live instance")
    };
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "ec2/2009-04-04/meta-data.json",
        "ec2/2009-04-04/user-data",
        "ec2/latest/meta-data.json",
        "ec2/latest/user-data",
        "openstack/2012-08-10/meta_data.json",
        "openstack/2012-08-10/user_data",
        "openstack/2013-10-17/vendor_data.json",
        "openstack/2015-10-15/network_data.json",
        "openstack/2016-10-06/vendor_data2.json",
        "openstack/latest/meta_data.json",
        "openstack/latest/user_data",
        "openstack/latest/vendor_data.json",
        "openstack/latest/network_data.json",
        "openstack/latest/vendor_data2.json",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("ec2/1.0")));
    assert!(!names.contains(&"openstack/2012-08-10/network_data.json"));
    let file = |n: &str| files.iter().find(|(p, _)| p == n).expect(n).1.clone();
    let drive_md: Value = serde_json::from_slice(&file("openstack/latest/meta_data.json")).unwrap();
    assert_eq!(drive_md["uuid"], id.as_str());
    assert_eq!(drive_md["public_keys"], json!({"k1": PUB}));
    let drive_nd: Value =
        serde_json::from_slice(&file("openstack/latest/network_data.json")).unwrap();
    assert_eq!(drive_nd, nd);
    let ec2: Value = serde_json::from_slice(&file("ec2/latest/meta-data.json")).unwrap();
    assert_eq!(ec2["hostname"], "web-server-1.novalocal");
    assert_eq!(ec2["placement"], json!({"availability-zone": "nova"}));
    assert_eq!(ec2["public-keys"]["0"]["openssh-key"], PUB);

    // The ISO: label config-2, Rock Ridge names, the documents' bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let iso = dir.path().join("disk.config");
    metadata::config_drive::build_iso(&files, &iso).expect("genisoimage");
    let pvd = std::process::Command::new("isoinfo")
        .arg("-d")
        .arg("-i")
        .arg(&iso)
        .output()
        .expect("isoinfo");
    let pvd = String::from_utf8_lossy(&pvd.stdout);
    assert!(pvd.contains("Volume id: config-2"), "{pvd}");
    assert!(pvd.contains("Rock Ridge"), "{pvd}");
    let listing = std::process::Command::new("isoinfo")
        .args(["-R", "-f", "-i"])
        .arg(&iso)
        .output()
        .expect("isoinfo");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("/openstack/latest/meta_data.json"),
        "{listing}"
    );
    assert!(listing.contains("/ec2/latest/meta-data.json"), "{listing}");
    let read = |p: &str| {
        std::process::Command::new("isoinfo")
            .args(["-R", "-i"])
            .arg(&iso)
            .args(["-x", p])
            .output()
            .expect("isoinfo")
            .stdout
    };
    assert_eq!(read("/openstack/latest/user_data"), b"#cloud-config\n");
    assert_eq!(
        read("/openstack/latest/network_data.json"),
        file("openstack/latest/network_data.json")
    );
    let iso_md: Value = serde_json::from_slice(&read("/openstack/latest/meta_data.json")).unwrap();
    assert_eq!(iso_md["hostname"], "web-server-1.novalocal");

    // A deleted server is not found.
    let (code, _) = h
        .req(ALICE, Method::DELETE, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(code, 204);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, _, _) = get(&h, addr, "/openstack/latest/meta_data.json", &auth).await;
        if code == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {code}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let views = h.stack.engine.world().read();
    let iid = domain::InstanceId::parse(&id).expect("id");
    assert!(metadata::config_drive::files(&views, &iid).is_none());
}

#[tokio::test]
async fn a_server_without_ports_or_key() {
    let h = Harness::start(|o| {
        o.metadata_listen = Some("127.0.0.1:0".parse().expect("addr"));
        o.metadata_secret = SECRET.into();
    })
    .await;
    let addr = h.stack.metadata_addr.expect("metadata listener");
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            "/servers",
            Some(
                json!({"server": {"name": "bare", "imageRef": IMAGE, "flavorRef": "1",
                                    "networks": "none"}}),
            ),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().expect("id").to_string();
    h.wait(&id, "ACTIVE").await;
    let sig = sign(&id);
    let auth = [
        ("X-Instance-ID", id.as_str()),
        ("X-Tenant-ID", "p1"),
        ("X-Instance-ID-Signature", sig.as_str()),
    ];
    let (_, _, body) = get(&h, addr, "/openstack/latest/network_data.json", &auth).await;
    assert_eq!(body, "{}");
    let (_, _, body) = get(&h, addr, "/openstack/latest", &auth).await;
    assert!(!body.contains("user_data"));
    let (code, _, _) = get(&h, addr, "/openstack/latest/user_data", &auth).await;
    assert_eq!(code, 404);
    let (code, _, _) = get(&h, addr, "/latest/user-data", &auth).await;
    assert_eq!(code, 404);
    let (_, _, body) = get(&h, addr, "/openstack/latest/meta_data.json", &auth).await;
    let md: Value = serde_json::from_str(&body).expect("json");
    assert!(md.get("public_keys").is_none() && md.get("meta").is_none());
    // No address from a port: the requester's, as Nova.
    let mut with_addr = auth.to_vec();
    with_addr.push(("X-Forwarded-For", "10.1.2.3"));
    let (_, _, body) = get(&h, addr, "/latest/meta-data/local-ipv4", &with_addr).await;
    assert_eq!(body, "10.1.2.3");
}

#[tokio::test]
async fn a_dhcp_subnet_gives_a_dhcp_network() {
    let h = Harness::start(|o| {
        o.metadata_listen = Some("127.0.0.1:0".parse().expect("addr"));
        o.metadata_secret = SECRET.into();
    })
    .await;
    let addr = h.stack.metadata_addr.expect("metadata listener");
    let (code, v) = h
        .req(
            ALICE,
            Method::POST,
            "/servers",
            Some(
                json!({"server": {"name": "auto", "imageRef": IMAGE, "flavorRef": "1",
                                    "networks": [{"uuid": tests::neutron::PRIVATE_ID}]}}),
            ),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().expect("id").to_string();
    h.wait(&id, "ACTIVE").await;
    let sig = sign(&id);
    let auth = [
        ("X-Instance-ID", id.as_str()),
        ("X-Tenant-ID", "p1"),
        ("X-Instance-ID-Signature", sig.as_str()),
    ];
    // The agent creates the port after the answer: wait for it to show.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let nd = loop {
        let (_, _, body) = get(&h, addr, "/openstack/latest/network_data.json", &auth).await;
        let nd: Value = serde_json::from_str(&body).expect("json");
        if nd["links"].as_array().is_some_and(|l| !l.is_empty()) {
            break nd;
        }
        assert!(std::time::Instant::now() < deadline, "no port: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // Neutron's subnets run DHCP by default: Nova tells the guest to ask for its address.
    let net = &nd["networks"][0];
    assert_eq!(net["type"], "ipv4_dhcp", "{nd}");
    assert_eq!(net["link"], nd["links"][0]["id"]);
    assert_eq!(net["network_id"], tests::neutron::PRIVATE_ID.to_string());
    assert!(net.get("ip_address").is_none());
    // The EC2 tree still has the address.
    let (_, _, ip) = get(&h, addr, "/latest/meta-data/local-ipv4", &auth).await;
    assert!(ip.starts_with("10.0."), "{ip}");
}
