//! Neutron's `standard-attr-tag` over real HTTP: the seven tag routes on every kind of
//! tagged resource (networks, subnets, ports, subnet pools, routers, floating IPs,
//! security groups), Neutron's validation messages, visibility (404) and ownership
//! (403), the revision bump of a change (none for a no-op), the `tags*` list filters,
//! and that every refusal appends nothing.

use reqwest::Method;
use serde_json::{json, Value};
use tests::neutron::{PRIVATE_ID, PUBLIC_ID};
use tests::Harness;

const USER: &str = "user:p1";
const READER: &str = "reader:p1:reader";
const OTHER: &str = "other:p2";
const ADMIN: &str = "admin:admin";

/// Asserts a refusal with `code` and Neutron `kind`, appending nothing; its message.
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

async fn ok(
    h: &Harness,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (c, v) = h.neutron(token, method.clone(), path, body).await;
    assert!(c < 300, "{method} {path}: {c} {v}");
    (c, v)
}

async fn tags(h: &Harness, token: &str, base: &str) -> Value {
    ok(h, token, Method::GET, &format!("{base}/tags"), None)
        .await
        .1["tags"]
        .clone()
}

/// One resource of each tagged kind, owned by `token`'s project: (collection,
/// resource, id).
async fn one_of_each(h: &Harness, token: &str) -> Vec<(&'static str, &'static str, String)> {
    let net = h
        .neutron_create(token, "network", json!({"name": "n"}))
        .await;
    let sub = h
        .neutron_create(
            token,
            "subnet",
            json!({"network_id": net["id"], "ip_version": 4, "cidr": "10.9.0.0/24"}),
        )
        .await;
    let port = h
        .neutron_create(token, "port", json!({"network_id": net["id"]}))
        .await;
    let pool = h
        .neutron_create(
            token,
            "subnetpool",
            json!({"name": "p", "prefixes": ["10.200.0.0/16"]}),
        )
        .await;
    let router = h
        .neutron_create(token, "router", json!({"name": "r"}))
        .await;
    let fip = h
        .neutron_create(
            token,
            "floatingip",
            json!({"floating_network_id": PUBLIC_ID}),
        )
        .await;
    let sg = h
        .neutron_create(token, "security_group", json!({"name": "g"}))
        .await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    vec![
        ("networks", "network", id(&net)),
        ("subnets", "subnet", id(&sub)),
        ("ports", "port", id(&port)),
        ("subnetpools", "subnetpool", id(&pool)),
        ("routers", "router", id(&router)),
        ("floatingips", "floatingip", id(&fip)),
        ("security-groups", "security_group", id(&sg)),
    ]
}

async fn revision(h: &Harness, coll: &str, res: &str, id: &str) -> (u64, Value) {
    let (_, v) = ok(h, ADMIN, Method::GET, &format!("/v2.0/{coll}/{id}"), None).await;
    (
        v[res]["revision_number"].as_u64().unwrap(),
        v[res]["tags"].clone(),
    )
}

#[tokio::test]
async fn every_route_on_every_kind() {
    let h = Harness::start(|_| {}).await;
    for (coll, res, id) in one_of_each(&h, USER).await {
        let base = format!("/v2.0/{coll}/{id}");
        let (rev0, t0) = revision(&h, coll, res, &id).await;
        assert_eq!(t0, json!([]), "{coll}");
        // Add one, twice: sorted, unique.
        let (c, _) = ok(&h, USER, Method::PUT, &format!("{base}/tags/b"), None).await;
        assert_eq!(c, 201);
        ok(&h, USER, Method::PUT, &format!("{base}/tags/a"), None).await;
        assert_eq!(tags(&h, READER, &base).await, json!(["a", "b"]), "{coll}");
        let (rev, shown) = revision(&h, coll, res, &id).await;
        assert_eq!(rev, rev0 + 2, "{coll}: each change bumps the revision");
        assert_eq!(shown, json!(["a", "b"]), "{coll}: the view shows the tags");
        // A tag already there: 201, nothing appended, no bump.
        let before = h.log_len().await;
        let (c, _) = ok(&h, USER, Method::PUT, &format!("{base}/tags/a"), None).await;
        assert_eq!(c, 201);
        assert_eq!(h.log_len().await, before, "{coll}: a no-op appended");
        // Check one.
        let (c, _) = ok(&h, READER, Method::GET, &format!("{base}/tags/a"), None).await;
        assert_eq!(c, 204);
        let m = refused(
            &h,
            READER,
            Method::GET,
            &format!("{base}/tags/zz"),
            None,
            404,
            "TagNotFound",
        )
        .await;
        assert_eq!(m, "Tag zz could not be found.");
        // Add many: the body's tags back, merged.
        let (c, v) = ok(
            &h,
            USER,
            Method::POST,
            &format!("{base}/tags"),
            Some(json!({"tags": ["c", "a"]})),
        )
        .await;
        assert_eq!((c, v), (201, json!({"tags": ["c", "a"]})));
        assert_eq!(tags(&h, USER, &base).await, json!(["a", "b", "c"]));
        // Replace all.
        let (c, v) = ok(
            &h,
            USER,
            Method::PUT,
            &format!("{base}/tags"),
            Some(json!({"tags": ["z", "y"]})),
        )
        .await;
        assert_eq!((c, v), (200, json!({"tags": ["z", "y"]})));
        assert_eq!(tags(&h, USER, &base).await, json!(["y", "z"]));
        // Remove one; again is TagNotFound.
        let (c, _) = ok(&h, USER, Method::DELETE, &format!("{base}/tags/y"), None).await;
        assert_eq!(c, 204);
        refused(
            &h,
            USER,
            Method::DELETE,
            &format!("{base}/tags/y"),
            None,
            404,
            "TagNotFound",
        )
        .await;
        // Remove all.
        let (c, _) = ok(&h, USER, Method::DELETE, &format!("{base}/tags"), None).await;
        assert_eq!(c, 204);
        assert_eq!(tags(&h, USER, &base).await, json!([]));
        let (rev, _) = revision(&h, coll, res, &id).await;
        assert_eq!(rev, rev0 + 6, "{coll}");
        // Another project does not see it; a reader may not change it.
        refused(
            &h,
            OTHER,
            Method::GET,
            &format!("{base}/tags"),
            None,
            404,
            &not_found(res),
        )
        .await;
        refused(
            &h,
            OTHER,
            Method::PUT,
            &format!("{base}/tags/x"),
            None,
            404,
            &not_found(res),
        )
        .await;
        let m = refused(
            &h,
            READER,
            Method::PUT,
            &format!("{base}/tags/x"),
            None,
            403,
            "PolicyNotAuthorized",
        )
        .await;
        assert_eq!(
            m,
            format!("(rule:update_{res}:tags) is disallowed by policy")
        );
        // An admin may.
        let (c, _) = ok(&h, ADMIN, Method::PUT, &format!("{base}/tags/adm"), None).await;
        assert_eq!(c, 201);
    }
    // `replay rebuild` folds the same read models (the tags included).
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

fn not_found(res: &str) -> String {
    match res {
        "network" => "NetworkNotFound",
        "subnet" => "SubnetNotFound",
        "port" => "PortNotFound",
        "subnetpool" => "SubnetPoolNotFound",
        "router" => "RouterNotFound",
        "floatingip" => "FloatingIPNotFound",
        _ => "SecurityGroupNotFound",
    }
    .into()
}

#[tokio::test]
async fn bodies_limits_and_ownership_are_checked() {
    let h = Harness::start(|_| {}).await;
    let net = h
        .neutron_create(USER, "network", json!({"name": "n"}))
        .await;
    let base = format!("/v2.0/networks/{}", net["id"].as_str().unwrap());
    let tags_path = format!("{base}/tags");
    let bad = |body: Value, msg: &'static str| (body, msg);
    for (body, msg) in [
        bad(
            json!({"tag": ["a"]}),
            "Invalid input for operation: Invalid tags body.",
        ),
        bad(
            json!(["a"]),
            "Invalid input for operation: Invalid tags body.",
        ),
        bad(
            json!({"tags": "a"}),
            "Invalid input for operation: 'a' is not a list.",
        ),
        bad(
            json!({"tags": ["a", "b", "a"]}),
            "Invalid input for operation: Duplicate items in the list: 'a'.",
        ),
        bad(
            json!({"tags": [1]}),
            "Invalid input for operation: '1' is not a valid string.",
        ),
    ] {
        for method in [Method::PUT, Method::POST] {
            let m = refused(
                &h,
                USER,
                method,
                &tags_path,
                Some(body.clone()),
                400,
                "InvalidInput",
            )
            .await;
            assert_eq!(m, msg, "{body}");
        }
    }
    let long = "x".repeat(256);
    let m = refused(
        &h,
        USER,
        Method::PUT,
        &tags_path,
        Some(json!({ "tags": [long] })),
        400,
        "InvalidInput",
    )
    .await;
    assert_eq!(
        m,
        format!("Invalid input for operation: '{long}' exceeds maximum length of 255.")
    );
    let m = refused(
        &h,
        USER,
        Method::PUT,
        &format!("{tags_path}/{long}"),
        None,
        400,
        "InvalidInput",
    )
    .await;
    assert!(m.ends_with("exceeds maximum length of 255."), "{m}");
    // The body is checked before the resource (Neutron's order).
    refused(
        &h,
        USER,
        Method::PUT,
        "/v2.0/networks/nope/tags",
        Some(json!({})),
        400,
        "InvalidInput",
    )
    .await;
    refused(
        &h,
        USER,
        Method::PUT,
        "/v2.0/networks/nope/tags",
        Some(json!({"tags": []})),
        404,
        "NetworkNotFound",
    )
    .await;
    // At most 50.
    let many: Vec<String> = (0..51).map(|i| format!("t{i:02}")).collect();
    let m = refused(
        &h,
        USER,
        Method::PUT,
        &tags_path,
        Some(json!({ "tags": many })),
        400,
        "BadRequest",
    )
    .await;
    assert_eq!(
        m,
        "Bad networks request: The number of tags exceed the per-resource limit of 50."
    );
    ok(
        &h,
        USER,
        Method::PUT,
        &tags_path,
        Some(json!({ "tags": many[..50] })),
    )
    .await;
    let m = refused(
        &h,
        USER,
        Method::PUT,
        &format!("{tags_path}/one-more"),
        None,
        400,
        "BadRequest",
    )
    .await;
    assert!(m.contains("per-resource limit of 50"), "{m}");
    // The shared network is seen by every project, changed by its owner only.
    let shared = format!("/v2.0/networks/{PRIVATE_ID}/tags");
    ok(&h, USER, Method::GET, &shared, None).await;
    for (method, path, rule) in [
        (Method::PUT, format!("{shared}/x"), "update_network:tags"),
        (Method::PUT, shared.clone(), "update_network:tags"),
        (Method::POST, shared.clone(), "create_network:tags"),
        (Method::DELETE, shared.clone(), "delete_network:tags"),
    ] {
        let body =
            (method != Method::DELETE && !path.ends_with("/x")).then(|| json!({"tags": ["x"]}));
        let m = refused(&h, USER, method, &path, body, 403, "PolicyNotAuthorized").await;
        assert_eq!(m, format!("(rule:{rule}) is disallowed by policy"));
    }
    h.stack.stop().await;
}

#[tokio::test]
async fn lists_filter_by_tags() {
    let h = Harness::start(|_| {}).await;
    // The tag plugin's aliases, as current Neutron lists them.
    for alias in ["standard-attr-tag", "tag-creation"] {
        let (c, v) = h
            .neutron(
                USER,
                Method::GET,
                &format!("/v2.0/extensions/{alias}"),
                None,
            )
            .await;
        assert_eq!((c, v["extension"]["alias"].as_str()), (200, Some(alias)));
    }
    let mut ids = vec![];
    for (name, t) in [
        ("ab", json!(["a", "b"])),
        ("a", json!(["a"])),
        ("c", json!(["c"])),
        ("none", json!([])),
    ] {
        let n = h
            .neutron_create(USER, "network", json!({ "name": name }))
            .await;
        let id = n["id"].as_str().unwrap().to_string();
        ok(
            &h,
            USER,
            Method::PUT,
            &format!("/v2.0/networks/{id}/tags"),
            Some(json!({ "tags": t })),
        )
        .await;
        ids.push(id);
        let r = h
            .neutron_create(USER, "router", json!({ "name": name }))
            .await;
        let rid = r["id"].as_str().unwrap();
        ok(
            &h,
            USER,
            Method::PUT,
            &format!("/v2.0/routers/{rid}/tags"),
            Some(json!({ "tags": t })),
        )
        .await;
    }
    for coll in ["networks", "routers"] {
        let names = |q: &'static str| {
            let h = &h;
            async move {
                let (_, v) = ok(h, USER, Method::GET, &format!("/v2.0/{coll}?{q}"), None).await;
                let mut n: Vec<String> = v[coll]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["name"].as_str().unwrap().to_string())
                    .filter(|n| ["ab", "a", "c", "none"].contains(&n.as_str()))
                    .collect();
                n.sort();
                n
            }
        };
        assert_eq!(names("tags=a,b").await, ["ab"]);
        assert_eq!(names("tags=a&tags=b").await, ["ab"]);
        assert_eq!(names("tags-any=b,c").await, ["ab", "c"]);
        assert_eq!(names("not-tags=a,b").await, ["a", "c", "none"]);
        assert_eq!(names("not-tags-any=a,c").await, ["none"]);
        assert_eq!(names("tags=a&not-tags=b").await, ["a"]);
    }
    h.stack.stop().await;
}

#[tokio::test]
async fn ports_take_tags_on_create() {
    let h = Harness::start(|_| {}).await;
    let net = h
        .neutron_create(USER, "network", json!({"name": "n"}))
        .await;
    h.neutron_create(
        USER,
        "subnet",
        json!({"network_id": net["id"], "ip_version": 4, "cidr": "10.8.0.0/24"}),
    )
    .await;
    let p = h
        .neutron_create(
            USER,
            "port",
            json!({"network_id": net["id"], "tags": ["b", "a"]}),
        )
        .await;
    assert_eq!(p["tags"], json!(["a", "b"]));
    // The bulk form (tag-ports-during-bulk-creation).
    let (c, v) = ok(
        &h,
        USER,
        Method::POST,
        "/v2.0/ports",
        Some(json!({"ports": [
            {"network_id": net["id"], "tags": ["x"]},
            {"network_id": net["id"], "tags": ["y", "z"]},
        ]})),
    )
    .await;
    assert_eq!(c, 201);
    assert_eq!(v["ports"][0]["tags"], json!(["x"]));
    assert_eq!(v["ports"][1]["tags"], json!(["y", "z"]));
    let m = refused(
        &h,
        USER,
        Method::POST,
        "/v2.0/ports",
        Some(json!({"port": {"network_id": net["id"], "tags": ["a", "a"]}})),
        400,
        "InvalidInput",
    )
    .await;
    assert_eq!(
        m,
        "Invalid input for operation: Invalid input for tags. Reason: Duplicate items in the list: 'a'."
    );
    h.stack.stop().await;
}
