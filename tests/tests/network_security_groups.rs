//! Neutron security groups and rules through the network API: CRUD, each project's
//! `default` group and its rules, rule validation and duplicates, visibility across
//! projects, ports' groups, and that every refusal appends nothing.

use reqwest::Method;
use serde_json::{json, Value};
use tests::neutron::PRIVATE_ID;
use tests::Harness;

const USER: &str = "user:p1";
const OTHER: &str = "other:p2";
const ADMIN: &str = "admin:admin";

async fn harness() -> Harness {
    Harness::start(|_| {}).await
}

/// Asserts `method path body` is refused with `code` and Neutron `kind`, appending
/// nothing; returns the message.
async fn refused(
    h: &Harness,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    code: u16,
    kind: &str,
) -> String {
    let before = h.log_len().await;
    let (c, v) = h.neutron(token, method.clone(), path, body.clone()).await;
    assert_eq!(c, code, "{method} {path} {body:?}: {v}");
    assert_eq!(v["NeutronError"]["type"], kind, "{method} {path}: {v}");
    assert_eq!(h.log_len().await, before, "{method} {path} appended");
    v["NeutronError"]["message"].as_str().unwrap().to_string()
}

async fn list_groups(h: &Harness, token: &str) -> Vec<Value> {
    let (c, v) = h
        .neutron(token, Method::GET, "/v2.0/security-groups", None)
        .await;
    assert_eq!(c, 200, "{v}");
    v["security_groups"].as_array().unwrap().clone()
}

fn default_of(groups: &[Value]) -> Value {
    groups
        .iter()
        .find(|g| g["name"] == "default")
        .cloned()
        .expect("a default group")
}

async fn rule(h: &Harness, token: &str, attrs: Value) -> (u16, Value) {
    h.neutron(
        token,
        Method::POST,
        "/v2.0/security-group-rules",
        Some(json!({ "security_group_rule": attrs })),
    )
    .await
}

#[tokio::test]
async fn the_default_group_is_created_once_with_neutrons_rules() {
    let h = harness().await;
    let groups = list_groups(&h, USER).await;
    assert_eq!(groups.len(), 1, "{groups:?}");
    let d = default_of(&groups);
    assert_eq!(d["description"], "Default security group");
    assert_eq!(d["project_id"], "p1");
    assert_eq!(d["tenant_id"], "p1");
    assert_eq!(d["stateful"], true);
    assert_eq!(d["shared"], false);
    assert_eq!(d["tags"], json!([]));
    let rules = d["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    for eth in ["IPv4", "IPv6"] {
        assert!(rules.iter().any(|r| r["direction"] == "egress"
            && r["ethertype"] == eth
            && r["remote_group_id"].is_null()
            && r["remote_ip_prefix"].is_null()
            && r["protocol"].is_null()));
        assert!(rules.iter().any(|r| r["direction"] == "ingress"
            && r["ethertype"] == eth
            && r["remote_group_id"] == d["id"]));
    }
    // A second listing creates nothing more.
    let n = h.log_len().await;
    let again = list_groups(&h, USER).await;
    assert_eq!(again, groups);
    assert_eq!(h.log_len().await, n);
    // The rules list shows them too.
    let (c, v) = h
        .neutron(USER, Method::GET, "/v2.0/security-group-rules", None)
        .await;
    assert_eq!(c, 200);
    assert_eq!(v["security_group_rules"].as_array().unwrap().len(), 4);
    // Another project gets its own, with another id.
    let other = default_of(&list_groups(&h, OTHER).await);
    assert_ne!(other["id"], d["id"]);
    assert_eq!(list_groups(&h, USER).await.len(), 1);
}

#[tokio::test]
async fn groups_are_created_shown_updated_listed_and_deleted() {
    let h = harness().await;
    let g = h
        .neutron_create(
            USER,
            "security_group",
            json!({"name": "web", "description": "web servers"}),
        )
        .await;
    assert_eq!(g["name"], "web");
    assert_eq!(g["description"], "web servers");
    assert_eq!(g["revision_number"], 1);
    // Neutron's egress rules come with every group.
    let rules = g["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules.iter().all(|r| r["direction"] == "egress"));
    let id = g["id"].as_str().unwrap();
    // Creating it ensured the project's default group.
    let groups = list_groups(&h, USER).await;
    assert_eq!(groups.len(), 2);
    let path = format!("/v2.0/security-groups/{id}");
    let (c, v) = h
        .neutron(
            USER,
            Method::PUT,
            &path,
            Some(
                json!({"security_group": {"name": "web2", "description": "d2", "stateful": false}}),
            ),
        )
        .await;
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["security_group"]["name"], "web2");
    assert_eq!(v["security_group"]["stateful"], false);
    assert_eq!(v["security_group"]["revision_number"], 2);
    let (c, v) = h
        .neutron(
            USER,
            Method::GET,
            &format!("{path}?fields=name&fields=id"),
            None,
        )
        .await;
    assert_eq!(c, 200);
    assert_eq!(v, json!({"security_group": {"id": id, "name": "web2"}}));
    // Filters and sorting through list.rs.
    let (c, v) = h
        .neutron(
            USER,
            Method::GET,
            "/v2.0/security-groups?name=web2&fields=id",
            None,
        )
        .await;
    assert_eq!(c, 200);
    assert_eq!(v["security_groups"], json!([{"id": id}]));
    let (c, v) = h
        .neutron(
            USER,
            Method::GET,
            "/v2.0/security-groups?sort_key=name&sort_dir=desc&limit=1",
            None,
        )
        .await;
    assert_eq!(c, 200);
    assert_eq!(v["security_groups"][0]["name"], "web2");
    assert!(v["security_groups_links"].is_array());
    // Delete: its rules go with it.
    let rule_id = rules[0]["id"].as_str().unwrap().to_string();
    let (c, _) = h.neutron(USER, Method::DELETE, &path, None).await;
    assert_eq!(c, 204);
    refused(
        &h,
        USER,
        Method::GET,
        &path,
        None,
        404,
        "SecurityGroupNotFound",
    )
    .await;
    refused(
        &h,
        USER,
        Method::GET,
        &format!("/v2.0/security-group-rules/{rule_id}"),
        None,
        404,
        "SecurityGroupRuleNotFound",
    )
    .await;
    refused(
        &h,
        USER,
        Method::DELETE,
        &path,
        None,
        404,
        "SecurityGroupNotFound",
    )
    .await;
}

#[tokio::test]
async fn rules_are_created_shown_and_deleted_in_neutrons_shape() {
    let h = harness().await;
    let g = h
        .neutron_create(USER, "security_group", json!({"name": "r"}))
        .await;
    let gid = g["id"].as_str().unwrap();
    let (c, v) = rule(
        &h,
        USER,
        json!({"security_group_id": gid, "direction": "ingress", "protocol": "TCP",
               "port_range_min": 22, "port_range_max": "22", "remote_ip_prefix": "10.1.2.3/24",
               "description": "ssh"}),
    )
    .await;
    assert_eq!(c, 201, "{v}");
    let r = &v["security_group_rule"];
    assert_eq!(r["protocol"], "tcp");
    assert_eq!(r["ethertype"], "IPv4");
    assert_eq!(r["port_range_min"], 22);
    assert_eq!(r["port_range_max"], 22);
    assert_eq!(r["remote_ip_prefix"], "10.1.2.3/24");
    assert_eq!(r["normalized_cidr"], "10.1.2.0/24");
    assert_eq!(r["remote_group_id"], Value::Null);
    assert_eq!(r["security_group_id"], gid);
    assert_eq!(r["project_id"], "p1");
    assert_eq!(r["description"], "ssh");
    let rid = r["id"].as_str().unwrap();
    let (c, shown) = h
        .neutron(
            USER,
            Method::GET,
            &format!("/v2.0/security-group-rules/{rid}"),
            None,
        )
        .await;
    assert_eq!(c, 200);
    assert_eq!(shown["security_group_rule"], *r);
    // The group shows it among its rules.
    let (_, g2) = h
        .neutron(
            USER,
            Method::GET,
            &format!("/v2.0/security-groups/{gid}"),
            None,
        )
        .await;
    assert_eq!(
        g2["security_group"]["security_group_rules"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(g2["security_group"]["revision_number"], 2);
    // The same rule again (protocol by number) is refused, naming the first.
    let msg = refused(
        &h,
        USER,
        Method::POST,
        "/v2.0/security-group-rules",
        Some(
            json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress",
            "protocol": 6, "port_range_min": 22, "port_range_max": 22,
            "remote_ip_prefix": "10.1.2.3/24"}}),
        ),
        409,
        "SecurityGroupRuleExists",
    )
    .await;
    assert_eq!(
        msg,
        format!("Security group rule already exists. Rule id is {rid}.")
    );
    // Integer protocol, ICMP type without code, remote group.
    let (c, v) = rule(
        &h,
        USER,
        json!({"security_group_id": gid, "direction": "ingress", "protocol": 17}),
    )
    .await;
    assert_eq!(c, 201, "{v}");
    assert_eq!(v["security_group_rule"]["protocol"], "17");
    let (c, v) = rule(
        &h,
        USER,
        json!({"security_group_id": gid, "direction": "ingress",
        "protocol": "icmp", "port_range_min": 11, "port_range_max": null}),
    )
    .await;
    assert_eq!(c, 201, "{v}");
    assert_eq!(v["security_group_rule"]["port_range_max"], Value::Null);
    let (c, v) = rule(
        &h,
        USER,
        json!({"security_group_id": gid, "direction": "ingress",
        "ethertype": "IPv6", "protocol": "icmp", "remote_group_id": gid}),
    )
    .await;
    assert_eq!(c, 201, "{v}");
    assert_eq!(v["security_group_rule"]["protocol"], "ipv6-icmp");
    assert_eq!(v["security_group_rule"]["remote_group_id"], gid);
    // Filter the rules by group and direction.
    let (c, v) = h
        .neutron(
            USER,
            Method::GET,
            &format!("/v2.0/security-group-rules?security_group_id={gid}&direction=ingress"),
            None,
        )
        .await;
    assert_eq!(c, 200);
    assert_eq!(v["security_group_rules"].as_array().unwrap().len(), 4);
    // Delete.
    let (c, _) = h
        .neutron(
            USER,
            Method::DELETE,
            &format!("/v2.0/security-group-rules/{rid}"),
            None,
        )
        .await;
    assert_eq!(c, 204);
    refused(
        &h,
        USER,
        Method::DELETE,
        &format!("/v2.0/security-group-rules/{rid}"),
        None,
        404,
        "SecurityGroupRuleNotFound",
    )
    .await;
}

#[tokio::test]
async fn invalid_rules_are_400s_with_neutrons_types() {
    let h = harness().await;
    let g = h
        .neutron_create(USER, "security_group", json!({"name": "v"}))
        .await;
    let gid = g["id"].as_str().unwrap();
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"protocol": "bad_protocol_name"}), "SecurityGroupRuleInvalidProtocol", "Security group rule protocol bad_protocol_name not supported."),
        (json!({"protocol": 256}), "SecurityGroupRuleInvalidProtocol", "256"),
        (json!({"ethertype": "bad_ethertype"}), "SecurityGroupRuleInvalidEtherType", "Security group rule for ethertype 'bad_ethertype' not supported. Allowed values are ['IPv4', 'IPv6']."),
        (json!({"protocol": "tcp", "port_range_min": -16, "port_range_max": 80}), "SecurityGroupInvalidPortValue", "Invalid value for port -16"),
        (json!({"protocol": "tcp", "port_range_min": 80, "port_range_max": 79}), "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be <= port_range_max"),
        (json!({"protocol": "tcp", "port_range_min": 80, "port_range_max": 65536}), "SecurityGroupInvalidPortValue", "Invalid value for port 65536"),
        (json!({"protocol": "tcp", "port_range_max": 6}), "SecurityGroupInvalidPortRange", "port_range_min must be <= port_range_max"),
        (json!({"protocol": "icmp", "port_range_min": 1, "port_range_max": 256}), "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP code (port_range_max) 256. It must be 0 to 255."),
        (json!({"protocol": "icmp", "port_range_min": 300, "port_range_max": 1}), "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP type (port_range_min) 300. It must be 0 to 255."),
        (json!({"protocol": "icmp", "port_range_max": 6}), "SecurityGroupMissingIcmpType", "ICMP code (port-range-max) 6 is provided but ICMP type (port-range-min) is missing."),
        (json!({"port_range_min": 1, "port_range_max": 2}), "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol if port range is given."),
        (json!({"protocol": "gre", "port_range_min": 1, "port_range_max": 2}), "SecurityGroupInvalidProtocolForPort", "Ports cannot be specified for protocol 47. Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE."),
        (json!({"remote_ip_prefix": "192.168.1.1/33"}), "InvalidCIDR", "Invalid CIDR 192.168.1.1/33 given as IP prefix."),
        (json!({"remote_ip_prefix": "bad_prefix"}), "InvalidCIDR", "bad_prefix"),
        (json!({"ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}), "SecurityGroupRuleParameterConflict", "Conflicting value ethertype IPv6 for CIDR 10.0.0.0/8"),
        (json!({"protocol": "ipv6-icmp"}), "SecurityGroupEthertypeConflictWithProtocol", "Invalid ethertype IPv4 for protocol ipv6-icmp."),
        (json!({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": gid}), "SecurityGroupMultipleRemoteEntites", "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided."),
        (json!({"direction": "sideways"}), "HTTPBadRequest", "Invalid input for direction. Reason: 'sideways' is not in ['ingress', 'egress']."),
        (json!({"remote_address_group_id": gid}), "HTTPBadRequest", "Unrecognized attribute(s) 'remote_address_group_id'"),
    ];
    for (extra, kind, msg) in cases {
        let mut body = json!({"security_group_id": gid, "direction": "ingress"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let got = refused(
            &h,
            USER,
            Method::POST,
            "/v2.0/security-group-rules",
            Some(json!({ "security_group_rule": body })),
            400,
            kind,
        )
        .await;
        assert!(got.contains(msg), "{extra}: {got}");
    }
    // Required attributes.
    let got = refused(
        &h,
        USER,
        Method::POST,
        "/v2.0/security-group-rules",
        Some(json!({"security_group_rule": {"security_group_id": gid}})),
        400,
        "HTTPBadRequest",
    )
    .await;
    assert_eq!(
        got,
        "Failed to parse request. Required attribute 'direction' not specified"
    );
    // Unknown groups: the rule's, or a remote one.
    for remote in ["bad_group_id", "6f1b0f8e-0000-4000-8000-000000000000"] {
        let got = refused(
            &h,
            USER,
            Method::POST,
            "/v2.0/security-group-rules",
            Some(
                json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress",
                "protocol": "tcp", "remote_group_id": remote}}),
            ),
            404,
            "SecurityGroupNotFound",
        )
        .await;
        assert_eq!(got, format!("Security group {remote} does not exist"));
    }
    refused(
        &h,
        USER,
        Method::POST,
        "/v2.0/security-group-rules",
        Some(json!({"security_group_rule": {"security_group_id": "6f1b0f8e-0000-4000-8000-000000000000",
            "direction": "ingress"}})),
        404,
        "SecurityGroupNotFound",
    )
    .await;
    // Bad list queries.
    refused(
        &h,
        USER,
        Method::GET,
        "/v2.0/security-groups?bogus=1",
        None,
        400,
        "HTTPBadRequest",
    )
    .await;
}

#[tokio::test]
async fn the_default_name_is_reserved_and_the_default_group_kept() {
    let h = harness().await;
    let d = default_of(&list_groups(&h, USER).await);
    let did = d["id"].as_str().unwrap();
    for name in ["default", "Default"] {
        let msg = refused(
            &h,
            USER,
            Method::POST,
            "/v2.0/security-groups",
            Some(json!({"security_group": {"name": name}})),
            409,
            "SecurityGroupDefaultAlreadyExists",
        )
        .await;
        assert_eq!(msg, "Default security group already exists.");
    }
    let g = h
        .neutron_create(USER, "security_group", json!({"name": "x"}))
        .await;
    refused(
        &h,
        USER,
        Method::PUT,
        &format!("/v2.0/security-groups/{}", g["id"].as_str().unwrap()),
        Some(json!({"security_group": {"name": "default"}})),
        409,
        "SecurityGroupDefaultAlreadyExists",
    )
    .await;
    refused(
        &h,
        USER,
        Method::PUT,
        &format!("/v2.0/security-groups/{did}"),
        Some(json!({"security_group": {"name": "renamed"}})),
        409,
        "SecurityGroupCannotUpdateDefault",
    )
    .await;
    let msg = refused(
        &h,
        USER,
        Method::DELETE,
        &format!("/v2.0/security-groups/{did}"),
        None,
        409,
        "SecurityGroupCannotRemoveDefault",
    )
    .await;
    assert_eq!(
        msg,
        "Insufficient rights for removing default security group."
    );
    // Its description may change.
    let (c, v) = h
        .neutron(
            USER,
            Method::PUT,
            &format!("/v2.0/security-groups/{did}"),
            Some(json!({"security_group": {"description": "mine"}})),
        )
        .await;
    assert_eq!(c, 200, "{v}");
    // An admin may delete it; the next use creates it again.
    let (c, _) = h
        .neutron(
            ADMIN,
            Method::DELETE,
            &format!("/v2.0/security-groups/{did}"),
            None,
        )
        .await;
    assert_eq!(c, 204);
    let again = default_of(&list_groups(&h, USER).await);
    assert_eq!(again["id"], did);
    assert_eq!(again["security_group_rules"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn another_projects_groups_and_rules_are_404s() {
    let h = harness().await;
    let g = h
        .neutron_create(USER, "security_group", json!({"name": "mine"}))
        .await;
    let gid = g["id"].as_str().unwrap();
    let rid = g["security_group_rules"][0]["id"].as_str().unwrap();
    let gpath = format!("/v2.0/security-groups/{gid}");
    let rpath = format!("/v2.0/security-group-rules/{rid}");
    let other = list_groups(&h, OTHER).await;
    assert!(other.iter().all(|x| x["id"] != gid));
    refused(
        &h,
        OTHER,
        Method::GET,
        &gpath,
        None,
        404,
        "SecurityGroupNotFound",
    )
    .await;
    refused(
        &h,
        OTHER,
        Method::PUT,
        &gpath,
        Some(json!({"security_group": {"name": "theirs"}})),
        404,
        "SecurityGroupNotFound",
    )
    .await;
    refused(
        &h,
        OTHER,
        Method::DELETE,
        &gpath,
        None,
        404,
        "SecurityGroupNotFound",
    )
    .await;
    refused(
        &h,
        OTHER,
        Method::GET,
        &rpath,
        None,
        404,
        "SecurityGroupRuleNotFound",
    )
    .await;
    refused(
        &h,
        OTHER,
        Method::DELETE,
        &rpath,
        None,
        404,
        "SecurityGroupRuleNotFound",
    )
    .await;
    refused(
        &h,
        OTHER,
        Method::POST,
        "/v2.0/security-group-rules",
        Some(json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress"}})),
        404,
        "SecurityGroupNotFound",
    )
    .await;
    let (_, v) = h
        .neutron(OTHER, Method::GET, "/v2.0/security-group-rules", None)
        .await;
    assert!(v["security_group_rules"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["security_group_id"] != gid));
    // A project may not create for another one.
    refused(
        &h,
        OTHER,
        Method::POST,
        "/v2.0/security-groups",
        Some(json!({"security_group": {"name": "n", "project_id": "p1"}})),
        403,
        "PolicyNotAuthorized",
    )
    .await;
    // The admin sees every project's.
    let (c, v) = h.neutron(ADMIN, Method::GET, &gpath, None).await;
    assert_eq!(c, 200, "{v}");
    let all = list_groups(&h, ADMIN).await;
    assert!(all.iter().any(|x| x["id"] == gid));
    assert!(all.iter().any(|x| x["project_id"] == "p2"));
}

#[tokio::test]
async fn ports_get_the_default_group_and_keep_groups_in_use() {
    let h = harness().await;
    // A port on the shared private network, no groups given: the default group (created
    // at this first need).
    let p = h
        .neutron_create(USER, "port", json!({"network_id": PRIVATE_ID.to_string()}))
        .await;
    let d = default_of(&list_groups(&h, USER).await);
    assert_eq!(p["security_groups"], json!([d["id"]]));
    // Given groups must exist and be the project's.
    let g = h
        .neutron_create(USER, "security_group", json!({"name": "app"}))
        .await;
    let gid = g["id"].as_str().unwrap();
    let theirs = h
        .neutron_create(OTHER, "security_group", json!({"name": "theirs"}))
        .await;
    let tid = theirs["id"].as_str().unwrap();
    let msg = refused(
        &h,
        USER,
        Method::POST,
        "/v2.0/ports",
        Some(
            json!({"port": {"network_id": PRIVATE_ID.to_string(), "security_groups": [gid, tid]}}),
        ),
        404,
        "SecurityGroupNotFound",
    )
    .await;
    assert_eq!(msg, format!("Security group {tid} does not exist"));
    let p2 = h
        .neutron_create(
            USER,
            "port",
            json!({"network_id": PRIVATE_ID.to_string(), "security_groups": [gid]}),
        )
        .await;
    assert_eq!(p2["security_groups"], json!([gid]));
    // An update to another project's group is refused too.
    refused(
        &h,
        USER,
        Method::PUT,
        &format!("/v2.0/ports/{}", p2["id"].as_str().unwrap()),
        Some(json!({"port": {"security_groups": [tid]}})),
        404,
        "SecurityGroupNotFound",
    )
    .await;
    // Stateful and stateless groups do not mix on a port.
    let stateless = h
        .neutron_create(
            USER,
            "security_group",
            json!({"name": "nf", "stateful": false}),
        )
        .await;
    refused(
        &h,
        USER,
        Method::POST,
        "/v2.0/ports",
        Some(json!({"port": {"network_id": PRIVATE_ID.to_string(),
            "security_groups": [gid, stateless["id"]]}})),
        409,
        "SecurityGroupConflict",
    )
    .await;
    // Without port security, or for a network service, no group.
    let p3 = h
        .neutron_create(
            USER,
            "port",
            json!({"network_id": PRIVATE_ID.to_string(), "port_security_enabled": false}),
        )
        .await;
    assert_eq!(p3["security_groups"], json!([]));
    let p4 = h
        .neutron_create(
            ADMIN,
            "port",
            json!({"network_id": PRIVATE_ID.to_string(), "device_owner": "network:dhcp"}),
        )
        .await;
    assert_eq!(p4["security_groups"], json!([]));
    // A group a port uses is not deleted (nor its statefulness changed).
    let msg = refused(
        &h,
        USER,
        Method::DELETE,
        &format!("/v2.0/security-groups/{gid}"),
        None,
        409,
        "SecurityGroupInUse",
    )
    .await;
    assert_eq!(msg, format!("Security Group {gid} in use."));
    refused(
        &h,
        USER,
        Method::PUT,
        &format!("/v2.0/security-groups/{gid}"),
        Some(json!({"security_group": {"stateful": false}})),
        409,
        "SecurityGroupInUse",
    )
    .await;
    // Once the port is gone it is.
    let (c, _) = h
        .neutron(
            USER,
            Method::DELETE,
            &format!("/v2.0/ports/{}", p2["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(c, 204);
    let (c, _) = h
        .neutron(
            USER,
            Method::DELETE,
            &format!("/v2.0/security-groups/{gid}"),
            None,
        )
        .await;
    assert_eq!(c, 204);
}

#[tokio::test]
async fn the_extension_and_resources_are_listed_and_replay_rebuilds_the_model() {
    let h = harness().await;
    let (_, v) = h
        .neutron(USER, Method::GET, "/v2.0/extensions/security-group", None)
        .await;
    assert_eq!(v["extension"]["alias"], "security-group");
    let (_, v) = h
        .neutron(
            USER,
            Method::GET,
            "/v2.0/extensions/stateful-security-group",
            None,
        )
        .await;
    assert_eq!(v["extension"]["alias"], "stateful-security-group");
    let (_, v) = h.neutron(USER, Method::GET, "/v2.0", None).await;
    assert!(v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["collection"] == "security-groups"));
    let g = h
        .neutron_create(USER, "security_group", json!({"name": "keep"}))
        .await;
    let before = list_groups(&h, USER).await;
    let h = h.restart(|_| {}).await;
    assert_eq!(list_groups(&h, USER).await, before);
    let (c, _) = h
        .neutron(
            USER,
            Method::GET,
            &format!("/v2.0/security-groups/{}", g["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(c, 200);
}

#[tokio::test]
async fn bulk_creates_are_all_or_nothing() {
    let h = harness().await;
    let (c, v) = h
        .neutron(
            USER,
            Method::POST,
            "/v2.0/security-groups",
            Some(json!({"security_groups": [{"name": "a"}, {"name": "b"}]})),
        )
        .await;
    assert_eq!(c, 201, "{v}");
    let groups = v["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let gid = groups[0]["id"].as_str().unwrap();
    let other = groups[1]["id"].as_str().unwrap();
    let (c, v) = h
        .neutron(
            USER,
            Method::POST,
            "/v2.0/security-group-rules",
            Some(json!({"security_group_rules": [
                {"security_group_id": gid, "direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80},
                {"security_group_id": gid, "direction": "ingress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443},
            ]})),
        )
        .await;
    assert_eq!(c, 201, "{v}");
    assert_eq!(v["security_group_rules"].as_array().unwrap().len(), 2);
    let http = json!({"security_group_id": gid, "direction": "ingress", "protocol": "udp"});
    refused(
        &h,
        USER,
        Method::POST,
        "/v2.0/security-group-rules",
        Some(json!({"security_group_rules": [http, http]})),
        409,
        "DuplicateSecurityGroupRuleInPost",
    )
    .await;
    refused(
        &h,
        USER,
        Method::POST,
        "/v2.0/security-group-rules",
        Some(json!({"security_group_rules": [http,
            {"security_group_id": other, "direction": "ingress"}]})),
        400,
        "SecurityGroupNotSingleGroupRules",
    )
    .await;
    // One existing rule refuses the whole request.
    refused(
        &h,
        USER,
        Method::POST,
        "/v2.0/security-group-rules",
        Some(json!({"security_group_rules": [http,
            {"security_group_id": gid, "direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80}]})),
        409,
        "SecurityGroupRuleExists",
    )
    .await;
}
