//! What clients send with a server create beyond the basics (issue 12, item 3):
//! multiple create (`min_count` / `max_count` / `return_reservation_id`, names
//! `<name>-<n>`, one reservation, as many as the quota allows), `accessIPv4` /
//! `accessIPv6`, `user_data`, `config_drive`, and the `name` (a regular expression) and
//! `reservation_id` list filters. Through the real HTTP API, scheduler and compute.

use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:proj-a";
const ADMIN: &str = "admin:admin";
const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

fn server(extra: Value) -> Value {
    let mut s = json!({"name": "multi", "imageRef": IMAGE, "flavorRef": "1", "networks": "none"});
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({ "server": s })
}

async fn list(h: &Harness, query: &str) -> Vec<Value> {
    let (code, v) = h
        .req(
            ADMIN,
            reqwest::Method::GET,
            &format!("/servers/detail?all_tenants=1&{query}"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    v["servers"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_create_names_reserves_and_builds_each() {
    let h = Harness::start(|_| {}).await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::POST,
            "/servers",
            Some(server(
                json!({"min_count": 2, "max_count": "3", "return_reservation_id": true}),
            )),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let r = v["reservation_id"].as_str().unwrap().to_string();
    assert!(r.starts_with("r-") && r.len() == 10, "{v}");
    assert!(v.get("server").is_none());
    let servers = list(&h, &format!("reservation_id={r}")).await;
    let mut names: Vec<String> = servers
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["multi-1", "multi-2", "multi-3"]);
    let mut indexes = Vec::new();
    for s in &servers {
        let id = s["id"].as_str().unwrap();
        let shown = h.wait(id, "ACTIVE").await;
        assert_eq!(shown["OS-EXT-SRV-ATTR:reservation_id"], r.as_str());
        indexes.push(shown["OS-EXT-SRV-ATTR:launch_index"].as_u64().unwrap());
    }
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2]);
    // A single create is its own reservation and launch index 0, named as given.
    let one = h.create(ALICE, "single", "1").await;
    let shown = h.wait(&one, "ACTIVE").await;
    assert_eq!(shown["name"], "single");
    assert_eq!(shown["OS-EXT-SRV-ATTR:launch_index"], 0);
    let own = shown["OS-EXT-SRV-ATTR:reservation_id"].as_str().unwrap();
    assert_ne!(own, r);
    assert_eq!(list(&h, &format!("reservation_id={own}")).await.len(), 1);
    // Without return_reservation_id the answer is the first server.
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::POST,
            "/servers",
            Some(server(json!({"max_count": 2}))),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    assert!(v["server"]["adminPass"].is_string(), "{v}");
    let first = v["server"]["id"].as_str().unwrap();
    assert_eq!(
        h.wait(first, "ACTIVE").await["OS-EXT-SRV-ATTR:launch_index"],
        0
    );

    // The name filter is a regular expression (Nova's REGEXP).
    let names: Vec<Value> = list(&h, "name=%5Emulti-%5B12%5D%24").await;
    let mut got: Vec<&str> = names.iter().map(|s| s["name"].as_str().unwrap()).collect();
    got.sort();
    assert_eq!(got, ["multi-1", "multi-1", "multi-2", "multi-2"]);
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_create_takes_what_the_quota_allows_but_at_least_min_count() {
    let h = Harness::start(|_| {}).await;
    let (code, v) = h
        .req(
            ADMIN,
            reqwest::Method::PUT,
            "/os-quota-sets/proj-a",
            Some(json!({"quota_set": {"instances": 3}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let first = h.create(ALICE, "first", "1").await;
    h.wait(&first, "ACTIVE").await;
    // 2 of 3 left: min 3 is refused with nothing appended.
    let before = h.log_len().await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::POST,
            "/servers",
            Some(server(json!({"min_count": 3, "max_count": 5}))),
        )
        .await;
    assert_eq!(code, 403, "{v}");
    assert!(
        v["forbidden"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Quota exceeded for instances"),
        "{v}"
    );
    assert_eq!(
        h.log_len().await,
        before,
        "a refused create appends nothing"
    );
    // min 1, max 5: the two that fit.
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::POST,
            "/servers",
            Some(server(
                json!({"min_count": 1, "max_count": 5, "return_reservation_id": "True"}),
            )),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let r = v["reservation_id"].as_str().unwrap();
    assert_eq!(list(&h, &format!("reservation_id={r}")).await.len(), 2);
    let (_, v) = h
        .req(
            ALICE,
            reqwest::Method::GET,
            "/os-quota-sets/proj-a/detail",
            None,
        )
        .await;
    let used = v["quota_set"]["instances"]["in_use"].as_i64().unwrap()
        + v["quota_set"]["instances"]["reserved"].as_i64().unwrap();
    assert_eq!(used, 3, "{v}");
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_addresses_user_data_and_config_drive_on_create() {
    let h = Harness::start(|_| {}).await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::POST,
            "/servers",
            Some(server(json!({
                "accessIPv4": "192.0.2.7",
                "accessIPv6": "0000:0000:0000:0000:0000:babe:220.12.22.2",
                "user_data": "IyEvYmluL3NoCmVjaG8gaGkK",
                "config_drive": true,
            }))),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap();
    let s = h.wait(id, "ACTIVE").await;
    assert_eq!(s["accessIPv4"], "192.0.2.7");
    // Nova shows the address as netaddr writes it (tempest's check).
    assert_eq!(s["accessIPv6"], "::babe:dc0c:1602");
    assert_eq!(s["config_drive"], "True");
    assert_eq!(s["OS-EXT-SRV-ATTR:user_data"], "IyEvYmluL3NoCmVjaG8gaGkK");
    // Bad values: 400 in Nova's words, nothing appended.
    let before = h.log_len().await;
    for (extra, says) in [
        (json!({"accessIPv4": "192.0.2.300"}), "is not a 'ipv4'"),
        (json!({"accessIPv6": "nope"}), "is not a 'ipv6'"),
        (json!({"user_data": "%%%"}), "is not a 'base64'"),
        (json!({"config_drive": "perhaps"}), "config_drive"),
        (
            json!({"min_count": 3, "max_count": 2}),
            "min_count must be <= max_count",
        ),
        (
            json!({"max_count": 1001}),
            "greater than the maximum of 1000",
        ),
    ] {
        let (code, v) = h
            .req(
                ALICE,
                reqwest::Method::POST,
                "/servers",
                Some(server(extra.clone())),
            )
            .await;
        assert_eq!(code, 400, "{extra}: {v}");
        let msg = v["badRequest"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{extra}: {msg}");
    }
    assert_eq!(h.log_len().await, before, "refused creates append nothing");
    h.stack.stop().await;
}

/// `tags` on create (2.52): shown from the build on, listed and filtered like tags set
/// later, moved with the placement to the cell (so deleting them all there hides the
/// create's); bad tags are Nova's 400 and append nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_given_on_create_are_the_servers_tags() {
    let h = Harness::start(|_| {}).await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::POST,
            "/servers",
            Some(server(json!({"tags": ["web", "blue", "web"]}))),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let s = h.wait(&id, "ACTIVE").await;
    assert_eq!(s["tags"], json!(["blue", "web"]));
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::GET,
            &format!("/servers/{id}/tags"),
            None,
        )
        .await;
    assert_eq!((code, v), (200, json!({"tags": ["blue", "web"]})));
    let found = list(&h, "tags=blue").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], id.as_str());
    assert!(list(&h, "tags=red").await.is_empty());
    let (code, _) = h
        .req(
            ALICE,
            reqwest::Method::DELETE,
            &format!("/servers/{id}/tags"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    assert_eq!(h.show(&id).await["tags"], json!([]));

    let before = h.log_len().await;
    let many: Vec<String> = (0..51).map(|n| format!("t{n}")).collect();
    for (tags, says) in [
        (json!(["a/b"]), "'a/b' does not match"),
        (json!(["a,b"]), "'a,b' does not match"),
        (json!(many), "is too long"),
        (json!("web"), "is not of type 'array'"),
    ] {
        let (code, v) = h
            .req(
                ALICE,
                reqwest::Method::POST,
                "/servers",
                Some(server(json!({ "tags": tags }))),
            )
            .await;
        assert_eq!(code, 400, "{tags}: {v}");
        let msg = v["badRequest"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{tags}: {msg}");
    }
    assert_eq!(h.log_len().await, before, "refused creates append nothing");
    h.stack.stop().await;
}

/// A list at an explicit microversion (the harness speaks 2.96).
async fn list_at(h: &Harness, token: &str, query: &str, version: &str) -> (u16, Value) {
    h.req_at(
        token,
        reqwest::Method::GET,
        &format!("/servers?{query}"),
        version,
        None,
    )
    .await
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// The list filters `deleted` and `status=DELETED` (admins only, as Nova), several
/// `status` values, a vm_state's status finding its servers whatever their task,
/// unknown statuses (400 from 2.38, an empty list before), and `ip` / `ip6` (no server
/// has a fixed address without networking).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_deleted_status_and_addresses() {
    let h = Harness::start(|_| {}).await;
    let gone = h.create(ALICE, "gone", "1").await;
    h.wait(&gone, "ACTIVE").await;
    let (code, _) = h
        .req(
            ALICE,
            reqwest::Method::DELETE,
            &format!("/servers/{gone}"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    h.wait(&gone, "GONE").await;
    let up = h.create(ALICE, "up", "1").await;
    h.wait(&up, "ACTIVE").await;
    let off = h.create(ALICE, "off", "1").await;
    h.wait(&off, "ACTIVE").await;
    h.action(ALICE, &off, json!({"os-stop": null}), 202).await;
    h.wait(&off, "SHUTOFF").await;

    for (token, query, want) in [
        (ADMIN, "all_tenants=1&deleted=true", vec!["gone"]),
        (ADMIN, "all_tenants=1&deleted=false", vec!["off", "up"]),
        (ADMIN, "all_tenants=1&deleted=maybe", vec!["off", "up"]),
        (ADMIN, "all_tenants=1&status=deleted", vec!["gone"]),
        (ADMIN, "all_tenants=1", vec!["off", "up"]),
        // Others' `deleted` is dropped, as Nova's remove_invalid_options does.
        (ALICE, "deleted=true", vec!["off", "up"]),
        (ALICE, "status=ACTIVE&status=SHUTOFF", vec!["off", "up"]),
        (ALICE, "status=SHUTOFF", vec!["off"]),
        (ALICE, "ip=10.0", vec![]),
        (ALICE, "ip6=fe80", vec![]),
        (ALICE, "status=SHUTOFF&status=NOPE", vec!["off"]),
    ] {
        let (code, v) = list_at(&h, token, query, "2.96").await;
        assert_eq!(code, 200, "{query}: {v}");
        assert_eq!(names(&v), want, "{query}");
    }
    let (code, v) = list_at(&h, ALICE, "status=DELETED", "2.96").await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Only administrators may list deleted instances"
    );
    let (code, v) = list_at(&h, ALICE, "status=NOPE", "2.96").await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["badRequest"]["message"], "Invalid status value");
    let (code, v) = list_at(&h, ALICE, "status=NOPE", "2.37").await;
    assert_eq!((code, names(&v)), (200, vec![]), "{v}");
    // Before 2.5 a non-admin's ip6 is not a filter.
    let (code, v) = list_at(&h, ALICE, "ip6=fe80", "2.4").await;
    assert_eq!(
        (code, names(&v)),
        (200, vec!["off".to_string(), "up".to_string()])
    );
    h.stack.stop().await;
}

/// A request at an explicit microversion.
async fn at(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Value,
    version: &str,
) -> (u16, Value) {
    h.req_at(ALICE, method, path, version, Some(body)).await
}

/// `personality` (create and rebuild before 2.57): Nova's schema, then the
/// injected-file quotas (5 files, 255-byte paths, 10240-byte contents) as 403s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personality_is_checked_against_the_injected_file_quotas() {
    let h = Harness::start(|_| {}).await;
    let file = |n: usize| json!({"path": format!("/etc/f{n}"), "contents": "aGVsbG8="});
    let five: Vec<Value> = (0..5).map(file).collect();
    let six: Vec<Value> = (0..6).map(file).collect();
    let long_path = json!([{"path": "/".repeat(256), "contents": "aGVsbG8="}]);
    let big = json!([{"path": "/big", "contents": "A".repeat(10244)}]);
    let before = h.log_len().await;
    for (personality, code, says) in [
        (json!(six), 403, "Personality file limit exceeded"),
        (long_path, 403, "Personality file path exceeds maximum 255"),
        (big, 403, "Personality file content exceeds maximum 10240"),
        (
            json!([{"path": "/x", "contents": "%%%"}]),
            400,
            "is not a 'base64'",
        ),
        (
            json!([{"path": "/x", "mode": "0600"}]),
            400,
            "'mode' was unexpected",
        ),
    ] {
        let body = server(json!({ "personality": personality }));
        let (got, v) = at(&h, reqwest::Method::POST, "/servers", body, "2.56").await;
        assert_eq!(got, code, "{v}");
        let msg = v.as_object().unwrap().values().next().unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(says), "{msg}");
    }
    assert_eq!(h.log_len().await, before, "refused creates append nothing");
    let body = server(json!({ "personality": five }));
    let (code, v) = at(&h, reqwest::Method::POST, "/servers", body.clone(), "2.56").await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    h.wait(&id, "ACTIVE").await;
    // Removed in 2.57.
    let (code, _) = at(&h, reqwest::Method::POST, "/servers", body, "2.57").await;
    assert_eq!(code, 400);
    // Rebuild: the same quotas.
    let rebuild = |p: Value| json!({"rebuild": {"imageRef": IMAGE, "personality": p}});
    let path = format!("/servers/{id}/action");
    let (code, v) = at(
        &h,
        reqwest::Method::POST,
        &path,
        rebuild(json!(six)),
        "2.56",
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["forbidden"]["message"], "Personality file limit exceeded");
    let (code, v) = at(
        &h,
        reqwest::Method::POST,
        &path,
        rebuild(json!(five)),
        "2.56",
    )
    .await;
    assert_eq!(code, 202, "{v}");
    h.wait(&id, "ACTIVE").await;
    h.stack.stop().await;
}

/// `OS-DCF:diskConfig` given on create, update, rebuild and resize is the server's from
/// then on (MANUAL by default, or the image's `auto_disk_config`); AUTO on an image
/// that disables it, or a value that is neither, is Nova's 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_config_follows_create_update_rebuild_and_resize() {
    let h = Harness::start(|_| {}).await;
    let dcf = |s: &Value| s["OS-DCF:diskConfig"].as_str().unwrap().to_string();
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::POST,
            "/servers",
            Some(server(json!({"OS-DCF:diskConfig": "AUTO"}))),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(dcf(&v["server"]), "AUTO");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(dcf(&h.wait(&id, "ACTIVE").await), "AUTO");

    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::PUT,
            &format!("/servers/{id}"),
            Some(json!({"server": {"OS-DCF:diskConfig": "MANUAL"}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(dcf(&h.show(&id).await), "MANUAL");

    // Neither AUTO nor MANUAL: the schema's 400, nothing appended.
    let before = h.log_len().await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::PUT,
            &format!("/servers/{id}"),
            Some(json!({"server": {"OS-DCF:diskConfig": "SOMETIMES"}})),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(h.log_len().await, before);

    h.action(
        ALICE,
        &id,
        json!({"rebuild": {"imageRef": IMAGE, "OS-DCF:diskConfig": "AUTO"}}),
        202,
    )
    .await;
    assert_eq!(dcf(&h.wait(&id, "ACTIVE").await), "AUTO");

    h.action(
        ALICE,
        &id,
        json!({"resize": {"flavorRef": "2", "OS-DCF:diskConfig": "MANUAL"}}),
        202,
    )
    .await;
    assert_eq!(dcf(&h.wait(&id, "VERIFY_RESIZE").await), "MANUAL");
    h.action(ALICE, &id, json!({"confirmResize": null}), 204)
        .await;
    assert_eq!(dcf(&h.wait(&id, "ACTIVE").await), "MANUAL");

    // An image that disables automatic disk configuration refuses AUTO.
    let addr = h.stack.image_addr.expect("images served");
    let glance = |m: reqwest::Method, path: &str| {
        h.http
            .request(m, format!("http://{addr}{path}"))
            .header("X-Auth-Token", ADMIN)
    };
    let img: Value = glance(reqwest::Method::POST, "/v2/images")
        .json(
            &json!({"name": "fixed", "disk_format": "raw", "container_format": "bare",
            "visibility": "public", "auto_disk_config": "disabled"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let img_id = img["id"].as_str().unwrap().to_string();
    let r = glance(reqwest::Method::PUT, &format!("/v2/images/{img_id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::POST,
            "/servers",
            Some(server(
                json!({"imageRef": img_id, "OS-DCF:diskConfig": "AUTO"}),
            )),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        format!("Requested image {img_id} has automatic disk resize disabled.")
    );
    h.stack.stop().await;
}

/// PUT /servers/{id} records `accessIPv4` / `accessIPv6` (canonical, `""` clears) and,
/// from 2.90, `hostname`; bad addresses are Nova's 400 and append nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_sets_access_addresses_and_hostname() {
    let h = Harness::start(|_| {}).await;
    let id = h.create(ALICE, "acc", "1").await;
    h.wait(&id, "ACTIVE").await;
    let put = |body: Value| {
        let path = format!("/servers/{id}");
        let h = &h;
        async move { h.req(ALICE, reqwest::Method::PUT, &path, Some(body)).await }
    };
    let (code, v) = put(json!({"server": {"accessIPv4": "1.1.1.1",
        "accessIPv6": "::babe:202:202", "hostname": "web-1"}}))
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["server"]["accessIPv4"], "1.1.1.1");
    let s = h.show(&id).await;
    assert_eq!(s["accessIPv4"], "1.1.1.1");
    assert_eq!(s["accessIPv6"], "::babe:202:202");
    assert_eq!(s["OS-EXT-SRV-ATTR:hostname"], "web-1");
    // "" clears one address and leaves the other.
    let (code, _) = put(json!({"server": {"accessIPv4": ""}})).await;
    assert_eq!(code, 200);
    let s = h.show(&id).await;
    assert_eq!(s["accessIPv4"], "");
    assert_eq!(s["accessIPv6"], "::babe:202:202");
    let before = h.log_len().await;
    for body in [
        json!({"server": {"accessIPv4": "1.1.1.300"}}),
        json!({"server": {"accessIPv6": "nope"}}),
        json!({"server": {"hostname": ""}}),
    ] {
        let (code, v) = put(body.clone()).await;
        assert_eq!(code, 400, "{body}: {v}");
    }
    assert_eq!(h.log_len().await, before, "refused updates append nothing");
    h.stack.stop().await;
}
