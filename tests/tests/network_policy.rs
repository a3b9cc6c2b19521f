//! The network API's policy matrix, over real HTTP (issue 13, item 1): every row of
//! `network::ROUTES` x every role (reader, member, admin) x a resource of the caller's
//! own project / of another project (fresh resources per case). The expected outcome
//! follows the row's rule and Neutron's ownership rules: another project's resource is
//! a 404 (its quotas a 403) unless the caller is an admin, whatever the role; a reader
//! is refused every other write (403); the log does not move on a refusal. A new row fails the test until it
//! knows a request for it.

use apicore::auth::Rule;
use network::ROUTES;
use reqwest::Method;
use serde_json::{json, Value};
use tests::neutron::PUBLIC_ID;
use tests::Harness;

const ROLES: [&str; 3] = ["reader", "member", "admin"];

/// A fresh resource of `project` for the row's path: `(id, body of a PUT, body of an
/// interface request)`.
async fn fixture(h: &Harness, path: &str, project: &str, n: usize) -> (String, Value, Value) {
    let owner = format!("owner:{project}:member");
    let net = || async {
        h.neutron_create(&owner, "network", json!({"name": "n"}))
            .await
    };
    let subnet = |net: Value, third: usize| {
        let owner = owner.clone();
        async move {
            h.neutron_create(
                &owner,
                "subnet",
                json!({"network_id": net["id"], "ip_version": 4,
                    "cidr": format!("10.{}.{}.0/24", 100 + third / 250, third % 250)}),
            )
            .await
        }
    };
    if path.starts_with("/v2.0/quotas/") {
        return (
            project.to_string(),
            json!({"quota": {"network": 50}}),
            Value::Null,
        );
    }
    if path.starts_with("/v2.0/extensions/") {
        return ("external-net".into(), Value::Null, Value::Null);
    }
    let kind = path.split('/').nth(2).unwrap_or_default();
    match kind {
        "networks" => {
            let n = net().await;
            (
                n["id"].as_str().unwrap().into(),
                json!({"network": {"name": "x"}}),
                Value::Null,
            )
        }
        "subnets" => {
            let s = subnet(net().await, n).await;
            (
                s["id"].as_str().unwrap().into(),
                json!({"subnet": {"name": "x"}}),
                Value::Null,
            )
        }
        "ports" => {
            let nw = net().await;
            subnet(nw.clone(), n).await;
            let p = h
                .neutron_create(&owner, "port", json!({"network_id": nw["id"]}))
                .await;
            (
                p["id"].as_str().unwrap().into(),
                json!({"port": {"name": "x"}}),
                Value::Null,
            )
        }
        "subnetpools" => {
            let p = h
                .neutron_create(
                    &owner,
                    "subnetpool",
                    json!({"name": "p", "prefixes": ["10.200.0.0/16"]}),
                )
                .await;
            (
                p["id"].as_str().unwrap().into(),
                json!({"subnetpool": {"name": "x"}}),
                Value::Null,
            )
        }
        "security-groups" => {
            let g = h
                .neutron_create(&owner, "security_group", json!({"name": "g"}))
                .await;
            (
                g["id"].as_str().unwrap().into(),
                json!({"security_group": {"name": "x"}}),
                Value::Null,
            )
        }
        "security-group-rules" => {
            let g = h
                .neutron_create(&owner, "security_group", json!({"name": "g"}))
                .await;
            let r = h
                .neutron_create(
                    &owner,
                    "security_group_rule",
                    json!({"security_group_id": g["id"], "direction": "ingress", "protocol": "tcp",
                        "port_range_min": 80, "port_range_max": 80}),
                )
                .await;
            (r["id"].as_str().unwrap().into(), Value::Null, Value::Null)
        }
        "routers" => {
            let r = h
                .neutron_create(&owner, "router", json!({"name": "r"}))
                .await;
            let id = r["id"].as_str().unwrap().to_string();
            let s = subnet(net().await, n).await;
            let iface = json!({"subnet_id": s["id"]});
            if path.ends_with("remove_router_interface") {
                let (code, v) = h
                    .neutron(
                        &owner,
                        Method::PUT,
                        &format!("/v2.0/routers/{id}/add_router_interface"),
                        Some(iface.clone()),
                    )
                    .await;
                assert_eq!(code, 200, "{v}");
            }
            (id, json!({"router": {"name": "x"}}), iface)
        }
        "floatingips" => {
            let f = h
                .neutron_create(
                    &owner,
                    "floatingip",
                    json!({"floating_network_id": PUBLIC_ID}),
                )
                .await;
            (
                f["id"].as_str().unwrap().into(),
                json!({"floatingip": {"description": "x"}}),
                Value::Null,
            )
        }
        other => panic!("no fixture for {other} ({path})"),
    }
}

/// The body of a create on a collection.
async fn create_body(h: &Harness, path: &str, project: &str) -> Value {
    let owner = format!("owner:{project}:member");
    match path {
        "/v2.0/networks" => json!({"network": {"name": "c"}}),
        "/v2.0/subnets" => {
            let n = h
                .neutron_create(&owner, "network", json!({"name": "n"}))
                .await;
            json!({"subnet": {"network_id": n["id"], "ip_version": 4, "cidr": "10.250.0.0/24"}})
        }
        "/v2.0/ports" => {
            let n = h
                .neutron_create(&owner, "network", json!({"name": "n"}))
                .await;
            json!({"port": {"network_id": n["id"]}})
        }
        "/v2.0/subnetpools" => json!({"subnetpool": {"name": "c", "prefixes": ["10.240.0.0/16"]}}),
        "/v2.0/security-groups" => json!({"security_group": {"name": "c"}}),
        "/v2.0/security-group-rules" => {
            let g = h
                .neutron_create(&owner, "security_group", json!({"name": "g"}))
                .await;
            json!({"security_group_rule": {"security_group_id": g["id"], "direction": "egress",
                "protocol": "udp", "port_range_min": 53, "port_range_max": 53}})
        }
        "/v2.0/routers" => json!({"router": {"name": "c"}}),
        "/v2.0/floatingips" => json!({"floatingip": {"floating_network_id": PUBLIC_ID}}),
        other => panic!("no create body for {other}"),
    }
}

/// What the row answers `role` on its own project's resource (`own`) or another's.
fn expected(method: &str, path: &str, rule: Rule, role: &str, own: bool) -> u16 {
    let admin = role == "admin";
    let writes = method != "GET";
    let names_hidden = path.contains("{id}")
        && !path.starts_with("/v2.0/extensions")
        && !path.starts_with("/v2.0/quotas")
        && !own
        && !admin;
    if writes && role == "reader" {
        // The row's rule (member), after visibility: another project's resource is
        // not found (Neutron fetches it for the policy target first).
        return if names_hidden { 404 } else { 403 };
    }
    let _ = rule;
    // A tag added (`PUT .../tags/{tag}`) is a 201, a tag checked a 204.
    let ok = match (method, path.ends_with("/{tag}")) {
        ("POST", _) | ("PUT", true) => 201,
        ("DELETE", _) | ("GET", true) => 204,
        _ => 200,
    };
    if path.starts_with("/v2.0/quotas/{id}") {
        // Another project's quotas, and any change, are the admin's (403).
        return if admin || (own && !writes) { ok } else { 403 };
    }
    if path.contains("{id}") && !path.starts_with("/v2.0/extensions") && !own && !admin {
        return 404;
    }
    if path == "/v2.0/quotas" && !admin {
        return 403;
    }
    ok
}

/// Fresh resources per case: room for all of them in both projects.
async fn unlimit(h: &Harness) {
    for p in ["p1", "p2"] {
        let unlimited: serde_json::Map<String, Value> = [
            "network",
            "subnet",
            "port",
            "router",
            "floatingip",
            "security_group",
            "security_group_rule",
        ]
        .iter()
        .map(|k| (k.to_string(), json!(-1)))
        .collect();
        let (code, v) = h
            .neutron(
                "admin:admin",
                Method::PUT,
                &format!("/v2.0/quotas/{p}"),
                Some(json!({ "quota": unlimited })),
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }
}

#[tokio::test]
async fn every_route_by_role_and_project() {
    let h = Harness::start(|_| {}).await;
    unlimit(&h).await;
    let mut n = 0;
    for row in ROUTES.iter().filter(|r| r.rule != Rule::Public) {
        for role in ROLES {
            for own in [true, false] {
                n += 1;
                let project = if own { "p1" } else { "p2" };
                let token = format!("caller:p1:{role}");
                let method = Method::from_bytes(row.method.as_bytes()).unwrap();
                let (path, body) = if row.path.contains("{id}") {
                    let (id, put, iface) = fixture(&h, row.path, project, n).await;
                    let tagged = row.path.contains("/{id}/tags");
                    if tagged {
                        // The tag a check or a removal names (`{tag}`: `t`).
                        let tag = row.path.replace("{tag}", "t").replace("{id}", &id);
                        let tag = tag.split("/tags").next().unwrap().to_string() + "/tags/t";
                        let owner = format!("owner:{project}:member");
                        let (code, v) = h.neutron(&owner, Method::PUT, &tag, None).await;
                        assert_eq!(code, 201, "{v}");
                    }
                    let body = if row.path.ends_with("_interface") {
                        Some(iface)
                    } else if tagged {
                        (row.path.ends_with("/tags") && ["PUT", "POST"].contains(&row.method))
                            .then(|| json!({"tags": ["x"]}))
                    } else if row.method == "PUT" {
                        Some(put)
                    } else {
                        None
                    };
                    (row.path.replace("{id}", &id).replace("{tag}", "t"), body)
                } else if row.method == "POST" {
                    if !own {
                        continue; // a create names no other project's resource
                    }
                    (
                        row.path.to_string(),
                        Some(create_body(&h, row.path, project).await),
                    )
                } else {
                    if !own {
                        continue;
                    }
                    (row.path.to_string(), None)
                };
                let want = expected(row.method, row.path, row.rule, role, own);
                let before = h.log_len().await;
                let (code, v) = h.neutron(&token, method, &path, body).await;
                assert_eq!(
                    code,
                    want,
                    "{} {} as {role} on {} resource: {v}",
                    row.method,
                    row.path,
                    if own { "its own" } else { "another project's" }
                );
                if code >= 400 {
                    assert_eq!(
                        h.log_len().await,
                        before,
                        "{} {}: a refusal appended",
                        row.method,
                        row.path
                    );
                    assert!(
                        v["NeutronError"].is_object(),
                        "{} {}: {v}",
                        row.method,
                        row.path
                    );
                }
                if row.path.starts_with("/v2.0/quotas/{id}") {
                    unlimit(&h).await; // a reset or an update of p1's limits
                }
            }
        }
    }
    h.stack.stop().await;
}
