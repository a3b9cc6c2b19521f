//! Nova's security group proxies through the compute API, backed by the network
//! service: os-security-groups and os-security-group-rules with Nova's shapes, its
//! translation of Neutron's refusals, and its microversion limit (2.35).

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:p1";
const BOB: &str = "bob:p2";
const READER: &str = "carol:p1:reader";
const ADMIN: &str = "admin:admin";

async fn nova(h: &Harness, token: &str, m: M, path: &str, body: Option<Value>) -> (u16, Value) {
    h.req_at(token, m, path, "2.1", body).await
}

async fn create_group(h: &Harness, token: &str, name: &str) -> Value {
    let (code, v) = nova(
        h,
        token,
        M::POST,
        "/os-security-groups",
        Some(json!({"security_group": {"name": name, "description": "d"}})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v["security_group"].clone()
}

async fn add_rule(h: &Harness, rule: Value) -> (u16, Value) {
    nova(
        h,
        ALICE,
        M::POST,
        "/os-security-group-rules",
        Some(json!({ "security_group_rule": rule })),
    )
    .await
}

fn message(v: &Value) -> String {
    v.as_object()
        .and_then(|o| o.values().next())
        .and_then(|f| f["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_rules_through_nova_and_neutron() {
    let h = Harness::start(|_| {}).await;

    // The listing creates the project's default group, with its self-referencing
    // ingress rules (egress rules are not Nova's).
    let (code, v) = nova(&h, ALICE, M::GET, "/os-security-groups", None).await;
    assert_eq!(code, 200, "{v}");
    let groups = v["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v}");
    let default = groups[0].clone();
    assert_eq!(default["name"], "default");
    assert_eq!(default["tenant_id"], "p1");
    assert_eq!(default["description"], "Default security group");
    let rules = default["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{default}");
    for r in rules {
        assert_eq!(r["group"], json!({"name": "default", "tenant_id": "p1"}));
        assert_eq!(r["ip_range"], json!({}));
        assert_eq!(r["ip_protocol"], Value::Null);
        assert_eq!(r["from_port"], Value::Null);
        assert_eq!(r["parent_group_id"], default["id"]);
    }

    // Create, show, update; Neutron sees the same group.
    let web = create_group(&h, ALICE, "web").await;
    assert_eq!(web["rules"], json!([]));
    assert_eq!(web["tenant_id"], "p1");
    let id = web["id"].as_str().unwrap().to_string();
    let (code, v) = h
        .neutron(ALICE, M::GET, &format!("/v2.0/security-groups/{id}"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["security_group"]["name"], "web");
    let (code, v) = nova(
        &h,
        ALICE,
        M::PUT,
        &format!("/os-security-groups/{id}"),
        Some(json!({"security_group": {"name": "web2", "description": "new"}})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["security_group"]["name"], "web2");
    assert_eq!(v["security_group"]["description"], "new");
    let (code, v) = nova(
        &h,
        ALICE,
        M::GET,
        &format!("/os-security-groups/{id}"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(v["security_group"]["name"], "web2");

    // A group Neutron created is Nova's too; the list is sorted by project and name.
    let n = h
        .neutron_create(ALICE, "security_group", json!({"name": "apple"}))
        .await;
    let (_, v) = nova(&h, READER, M::GET, "/os-security-groups", None).await;
    let names: Vec<&str> = v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["apple", "default", "web2"]);
    let (code, _) = nova(
        &h,
        ALICE,
        M::GET,
        &format!("/os-security-groups/{}", n["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(code, 200);
    // limit / offset apply before the sort.
    let (code, v) = nova(
        &h,
        ALICE,
        M::GET,
        "/os-security-groups?limit=1&offset=1",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(v["security_groups"].as_array().unwrap().len(), 1);
    let (code, v) = nova(&h, ALICE, M::GET, "/os-security-groups?limit=x", None).await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&v),
        "Invalid input for query parameters limit. Value: x. 'x' does not match '^[0-9]*$'"
    );

    // A CIDR rule.
    let (code, v) = add_rule(
        &h,
        json!({"parent_group_id": id, "ip_protocol": "tcp", "from_port": 22, "to_port": 22,
               "cidr": "10.0.0.0/24"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let r = &v["security_group_rule"];
    let rid = r["id"].as_str().unwrap().to_string();
    assert_eq!(
        *r,
        json!({"id": rid, "parent_group_id": id, "ip_protocol": "tcp", "from_port": 22,
               "to_port": 22, "group": {}, "ip_range": {"cidr": "10.0.0.0/24"}})
    );
    let (code, v) = h
        .neutron(
            ALICE,
            M::GET,
            &format!("/v2.0/security-group-rules/{rid}"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let nr = &v["security_group_rule"];
    assert_eq!(nr["direction"], "ingress");
    assert_eq!(nr["ethertype"], "IPv4");
    assert_eq!(nr["port_range_min"], 22);
    assert_eq!(nr["remote_ip_prefix"], "10.0.0.0/24");

    // Nova's own duplicate check (same protocol text), then Neutron's (409 -> 403).
    let before = h.log_len().await;
    let (code, v) = add_rule(
        &h,
        json!({"parent_group_id": id, "ip_protocol": "tcp", "from_port": 22, "to_port": 22,
               "cidr": "10.0.0.0/24"}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&v),
        format!("This rule already exists in group {id}")
    );
    let (code, v) = add_rule(
        &h,
        json!({"parent_group_id": id, "ip_protocol": "TCP", "from_port": 22, "to_port": 22,
               "cidr": "10.0.0.0/24"}),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        message(&v),
        format!("Security group rule already exists. Rule id is {rid}.")
    );
    assert_eq!(h.log_len().await, before, "a refusal appends nothing");

    // A group rule: a protocol without ports opens all of it; ICMP is -1/-1.
    let def_id = default["id"].as_str().unwrap().to_string();
    let (code, v) = add_rule(
        &h,
        json!({"parent_group_id": id, "group_id": def_id, "ip_protocol": "tcp"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let r = &v["security_group_rule"];
    assert_eq!(r["from_port"], 1);
    assert_eq!(r["to_port"], 65535);
    assert_eq!(r["group"], json!({"name": "default", "tenant_id": "p1"}));
    assert_eq!(r["ip_range"], json!({}));
    let (code, v) = add_rule(
        &h,
        json!({"parent_group_id": id, "group_id": def_id, "ip_protocol": "icmp"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let icmp = v["security_group_rule"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["security_group_rule"]["from_port"], -1);
    assert_eq!(v["security_group_rule"]["to_port"], -1);
    // An IPv6 CIDR makes an IPv6 rule; an egress rule made in Neutron is not shown.
    let (code, v) = add_rule(
        &h,
        json!({"parent_group_id": id, "ip_protocol": "udp", "from_port": "53", "to_port": 53,
               "cidr": "2001:db8::/64"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    h.neutron_create(
        ALICE,
        "security_group_rule",
        json!({"security_group_id": id, "direction": "egress", "protocol": "tcp",
               "port_range_min": 80, "port_range_max": 80}),
    )
    .await;
    let (_, v) = nova(
        &h,
        ALICE,
        M::GET,
        &format!("/os-security-groups/{id}"),
        None,
    )
    .await;
    let rules = v["security_group"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4, "{v}");
    assert_eq!(rules[3]["ip_range"], json!({"cidr": "2001:db8::/64"}));

    // Delete a rule (202), then it is gone.
    let (code, v) = nova(
        &h,
        ALICE,
        M::DELETE,
        &format!("/os-security-group-rules/{icmp}"),
        None,
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let (code, v) = nova(
        &h,
        ALICE,
        M::DELETE,
        &format!("/os-security-group-rules/{icmp}"),
        None,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        message(&v),
        format!("Security group rule {icmp} does not exist")
    );
    let (code, _) = h
        .neutron(
            ALICE,
            M::GET,
            &format!("/v2.0/security-group-rules/{icmp}"),
            None,
        )
        .await;
    assert_eq!(code, 404);

    // Delete the group: gone for Neutron too.
    let (code, _) = nova(
        &h,
        ALICE,
        M::DELETE,
        &format!("/os-security-groups/{id}"),
        None,
    )
    .await;
    assert_eq!(code, 202);
    let (code, v) = nova(
        &h,
        ALICE,
        M::GET,
        &format!("/os-security-groups/{id}"),
        None,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(message(&v), format!("Security group {id} does not exist"));
    let (code, _) = h
        .neutron(ALICE, M::GET, &format!("/v2.0/security-groups/{id}"), None)
        .await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_append_nothing() {
    let h = Harness::start(|_| {}).await;
    let (_, v) = nova(&h, ALICE, M::GET, "/os-security-groups", None).await;
    let def_id = v["security_groups"][0]["id"].as_str().unwrap().to_string();
    let g = create_group(&h, ALICE, "g").await;
    let id = g["id"].as_str().unwrap().to_string();
    let bob = create_group(&h, BOB, "bobs").await;
    let bob_id = bob["id"].as_str().unwrap().to_string();
    let before = h.log_len().await;

    let cases: Vec<(M, String, Option<Value>, u16, String)> = vec![
        (
            M::GET,
            "/os-security-groups/nope".into(),
            None,
            400,
            "Security group id should be uuid".into(),
        ),
        (
            M::GET,
            format!("/os-security-groups/{bob_id}"),
            None,
            404,
            format!("Security group {bob_id} does not exist"),
        ),
        (
            M::DELETE,
            format!("/os-security-groups/{def_id}"),
            None,
            400,
            "Insufficient rights for removing default security group.".into(),
        ),
        (
            M::DELETE,
            "/os-security-group-rules/nope".into(),
            None,
            400,
            "Security group id should be uuid".into(),
        ),
        (
            M::POST,
            "/os-security-groups".into(),
            Some(json!({"security_group": {"name": "x"}})),
            400,
            "Invalid input for field/attribute security_group. Value: {\"name\":\"x\"}. 'description' is a required property".into(),
        ),
        (
            M::POST,
            "/os-security-groups".into(),
            Some(json!({"security_group": {"name": "x".repeat(256), "description": ""}})),
            400,
            format!(
                "Invalid input for field/attribute name. Value: \"{0}\". \"{0}\" is too long",
                "x".repeat(256)
            ),
        ),
        (
            M::POST,
            "/os-security-groups".into(),
            Some(json!({"security_group": {"name": "Default", "description": ""}})),
            403,
            "Default security group already exists.".into(),
        ),
        (
            M::PUT,
            format!("/os-security-groups/{bob_id}"),
            Some(json!({"security_group": {"name": "a", "description": "b"}})),
            404,
            format!("Security group {bob_id} does not exist"),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": "nope"}})),
            400,
            "Invalid input for field/attribute parent_group_id. Value: \"nope\". 'nope' is not a 'uuid'".into(),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": bob_id,
                "ip_protocol": "tcp", "from_port": 1, "to_port": 2}})),
            404,
            format!("Security group {bob_id} does not exist"),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": id, "group_id": bob_id}})),
            404,
            format!("Security group {bob_id} does not exist"),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": id,
                "ip_protocol": "tempest-999", "from_port": 22, "to_port": 22}})),
            400,
            "Invalid IP protocol tempest-999.".into(),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": id,
                "ip_protocol": "tcp", "from_port": 65536, "to_port": 22}})),
            400,
            "Invalid port range 65536:22. Former value cannot be greater than the later"
                .into(),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": id,
                "ip_protocol": "tcp", "from_port": 22, "to_port": 65536}})),
            400,
            "Invalid port range 22:65536. Valid TCP ports should be between 1-65535".into(),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": id, "ip_protocol": "tcp"}})),
            400,
            "Not enough parameters to build a valid rule.".into(),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": id,
                "ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/0"}})),
            400,
            "Bad prefix for network in cidr 10.0.0.0/0".into(),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": id,
                "ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.300/8"}})),
            400,
            "10.0.0.300/8 is not a valid IP network.".into(),
        ),
        (
            M::POST,
            "/os-security-group-rules".into(),
            Some(json!({"security_group_rule": {"parent_group_id": id,
                "ip_protocol": "icmp", "from_port": -1, "to_port": 3}})),
            400,
            "ICMP code (port-range-max) 3 is provided but ICMP type (port-range-min) is missing."
                .into(),
        ),
        (
            M::DELETE,
            format!("/os-security-group-rules/{id}"),
            None,
            404,
            format!("Security group rule {id} does not exist"),
        ),
    ];
    for (m, path, body, want, msg) in cases {
        let (code, v) = nova(&h, ALICE, m.clone(), &path, body).await;
        assert_eq!((code, message(&v)), (want, msg), "{m} {path}");
    }

    // Policy: a reader may list but not create.
    let (code, v) = nova(
        &h,
        READER,
        M::POST,
        "/os-security-groups",
        Some(json!({"security_group": {"name": "r", "description": ""}})),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        message(&v),
        "Policy doesn't allow os_compute_api:os-security-groups:create to be performed."
    );

    // Gone from 2.36.
    for (m, path) in [
        (M::GET, "/os-security-groups".to_string()),
        (M::GET, format!("/os-security-groups/{id}")),
        (M::DELETE, format!("/os-security-groups/{id}")),
        (M::POST, "/os-security-group-rules".to_string()),
    ] {
        let (code, _) = h.req_at(ALICE, m, &path, "2.36", None).await;
        assert_eq!(code, 404, "{path}");
    }
    assert_eq!(h.log_len().await, before, "refusals append nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_in_use_and_admin() {
    let h = Harness::start(|_| {}).await;
    let g = create_group(&h, ALICE, "g").await;
    let id = g["id"].as_str().unwrap().to_string();

    // A group a port uses is not deleted (Neutron's 409 is Nova's 400).
    let net = h
        .neutron_create(ALICE, "network", json!({"name": "n"}))
        .await;
    let port = h
        .neutron_create(
            ALICE,
            "port",
            json!({"network_id": net["id"], "security_groups": [id]}),
        )
        .await;
    let (code, v) = nova(
        &h,
        ALICE,
        M::DELETE,
        &format!("/os-security-groups/{id}"),
        None,
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(message(&v), format!("Security Group {id} in use."));
    let (code, _) = h
        .neutron(
            ALICE,
            M::DELETE,
            &format!("/v2.0/ports/{}", port["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(code, 204);

    // Neutron's quota (OverQuota 409) is Nova's 403.
    let (code, v) = h
        .neutron(
            ADMIN,
            M::PUT,
            "/v2.0/quotas/p1",
            Some(json!({"quota": {"security_group": 1, "security_group_rule": 1}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let before = h.log_len().await;
    let (code, v) = nova(
        &h,
        ALICE,
        M::POST,
        "/os-security-groups",
        Some(json!({"security_group": {"name": "third", "description": ""}})),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        message(&v),
        "Quota exceeded for resources: ['security_group']."
    );
    assert_eq!(h.log_len().await, before);
    let (code, v) = add_rule(
        &h,
        json!({"parent_group_id": id, "ip_protocol": "tcp", "from_port": 1, "to_port": 2}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let before = h.log_len().await;
    let (code, v) = add_rule(
        &h,
        json!({"parent_group_id": id, "ip_protocol": "tcp", "from_port": 3, "to_port": 4}),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        message(&v),
        "Quota exceeded for resources: ['security_group_rule']."
    );
    assert_eq!(h.log_len().await, before, "a refusal appends nothing");

    // Admin: every project's groups with all_tenants; deletes a default group.
    create_group(&h, BOB, "bobs").await;
    let (_, v) = nova(&h, ADMIN, M::GET, "/os-security-groups", None).await;
    assert!(v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["tenant_id"] == "admin"));
    let (_, v) = nova(&h, ADMIN, M::GET, "/os-security-groups?all_tenants=1", None).await;
    let mut projects: Vec<&str> = v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["tenant_id"].as_str().unwrap())
        .collect();
    projects.dedup();
    assert_eq!(projects, ["admin", "p1", "p2"]);
    let (_, v) = nova(&h, BOB, M::GET, "/os-security-groups?all_tenants=1", None).await;
    assert!(v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["tenant_id"] == "p2"));
    let (code, v) = nova(
        &h,
        ADMIN,
        M::GET,
        &format!("/os-security-groups/{id}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
}
