//! Quotas over real HTTP (issue 10, items 1 and 2): admission with Nova's 403 and
//! nothing appended, exactness under 200 concurrent creates, the quota-set, quota-class
//! and limits APIs with their validation. (Giving back on delete / resize end is the
//! quota reactor's, tested end to end in tests/tests/quotas.rs.)

mod common;

use std::sync::Arc;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
const ALICE: &str = "alice:p1";

/// POST /servers (2.90) of one server by `token`.
async fn boot(s: &Stack, token: &str, name: &str, flavor: &str) -> Resp {
    let body = json!({"server": {"name": name, "imageRef": IMAGE, "flavorRef": flavor, "networks": "none"}});
    s.post("/v2.1/servers", token, Some("2.90"), body).await
}

async fn nova_defaults() -> Stack {
    let s = start_with_quota(domain::quota::nova_defaults()).await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    s.call_flavor("8", "big", 8, 4096).await;
    s
}

impl Stack {
    async fn call_flavor(&self, id: &str, name: &str, vcpus: u32, ram: u64) {
        let r = self
            .post(
                "/v2.1/flavors",
                ADMIN,
                None,
                json!({"flavor": {"id": id, "name": name, "ram": ram, "vcpus": vcpus, "disk": 1}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_is_novas_403_and_appends_nothing() {
    let s = nova_defaults().await;
    for i in 0..10 {
        let r = boot(&s, ALICE, &format!("s{i}"), "1").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    }
    let before = s.positions().await;
    let r = boot(&s, ALICE, "s10", "1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body,
        json!({"forbidden": {"code": 403, "message":
            "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"}})
    );
    assert_eq!(s.positions().await, before, "a refused create appended");
    // Another project is unaffected.
    let r = boot(&s, "bob:p2", "b", "1").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cores_and_ram_are_counted_and_named_as_nova_does() {
    let s = nova_defaults().await;
    for i in 0..2 {
        let r = boot(&s, ALICE, &format!("b{i}"), "8").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    }
    let r = boot(&s, ALICE, "b2", "8").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body["forbidden"]["message"],
        "Quota exceeded for cores: Requested 8, but already used 16 of 20 cores"
    );
    // Two resources over at once: sorted, joined as Nova joins them.
    let r = s
        .put(
            "/v2.1/os-quota-sets/p1",
            ADMIN,
            None,
            json!({"quota_set": {"ram": 9000, "force": true}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = boot(&s, ALICE, "b2", "8").await;
    assert_eq!(
        r.body["forbidden"]["message"],
        "Quota exceeded for cores, ram: Requested 8, 4096, but already used 16, 8192 of 20, 9000 cores, ram"
    );
}

/// Exactness: N concurrent creates against room for M succeed exactly M times.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_admit_exactly_what_fits() {
    let s = Arc::new(nova_defaults().await);
    let room = 37;
    let r = s
        .put(
            "/v2.1/os-quota-sets/p1",
            ADMIN,
            None,
            json!({"quota_set": {"instances": room, "cores": -1, "ram": -1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let n = 200;
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = boot(&s, ALICE, &format!("c{i}"), "1").await;
            r.status
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::ACCEPTED => ok += 1,
            StatusCode::FORBIDDEN => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, refused), (room, n - room));
    let r = s.get("/v2.1/limits", ALICE, None).await;
    assert_eq!(r.body["limits"]["absolute"]["totalInstancesUsed"], room);
    let servers = s.get("/v2.1/servers", ALICE, None).await;
    assert_eq!(
        servers.body["servers"].as_array().unwrap().len(),
        room as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_sets_show_detail_defaults_update_delete() {
    let s = nova_defaults().await;
    let r = boot(&s, ALICE, "a", "8").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    let r = s.get("/v2.1/os-quota-sets/p1", ALICE, Some("2.57")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        json!({"quota_set": {"id": "p1", "cores": 20, "instances": 10, "key_pairs": 100,
            "metadata_items": 128, "ram": 51200, "server_groups": 10, "server_group_members": 10}})
    );
    // 2.1 shows the network and personality quotas too.
    let r = s.get("/v2.1/os-quota-sets/p1", ALICE, None).await;
    assert_eq!(r.body["quota_set"]["floating_ips"], -1);
    assert_eq!(r.body["quota_set"]["injected_files"], 5);

    let r = s
        .get("/v2.1/os-quota-sets/p1/detail", ALICE, Some("2.57"))
        .await;
    assert_eq!(
        r.body["quota_set"]["cores"],
        json!({"in_use": 8, "limit": 20, "reserved": 0})
    );
    assert_eq!(r.body["quota_set"]["instances"]["in_use"], 1);
    assert_eq!(r.body["quota_set"]["ram"]["in_use"], 4096);

    // Another project's quotas: the policy's 403 for a member.
    let r = s.get("/v2.1/os-quota-sets/p2", ALICE, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Below usage: Nova's 400 (unless forced); nothing appended.
    let before = s.positions().await;
    let r = s
        .put(
            "/v2.1/os-quota-sets/p1",
            ADMIN,
            None,
            json!({"quota_set": {"cores": 4}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["badRequest"]["message"],
        "Quota limit 4 for cores must be greater than or equal to already used and reserved 8."
    );
    assert_eq!(s.positions().await, before);
    for (body, msg) in [
        (
            json!({"quota_set": {"cores": -2}}),
            "Invalid input for field/attribute cores. Value: -2. -2 is less than the minimum of -1",
        ),
        (
            json!({"quota_set": {"cores": "x"}}),
            "Invalid input for field/attribute cores. Value: x. 'x' does not match '^-?[0-9]+$'",
        ),
        (
            json!({"quota_set": {"bogus": 1}}),
            "Additional properties are not allowed ('bogus' was unexpected)",
        ),
    ] {
        let r = s.put("/v2.1/os-quota-sets/p1", ADMIN, None, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        let got = r.body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .replace('"', "'");
        assert_eq!(got, msg);
    }
    // 2.57 no longer takes personality quotas.
    let r = s
        .put(
            "/v2.1/os-quota-sets/p1",
            ADMIN,
            Some("2.57"),
            json!({"quota_set": {"injected_files": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.positions().await, before);

    // Forced below usage, then the response is the new set without id.
    let r = s
        .put(
            "/v2.1/os-quota-sets/p1",
            ADMIN,
            Some("2.57"),
            json!({"quota_set": {"cores": 4, "instances": "12", "force": "true"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["quota_set"]["cores"], 4);
    assert_eq!(r.body["quota_set"]["instances"], 12);
    assert!(r.body["quota_set"].get("id").is_none());
    let r = boot(&s, ALICE, "b", "1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .put(
            "/v2.1/os-quota-sets/p1",
            ADMIN,
            None,
            json!({"quota_set": {"cores": 40}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Per-user limits: counted for that user only; at most what the project leaves.
    let r = s
        .put(
            "/v2.1/os-quota-sets/p1?user_id=alice",
            ADMIN,
            None,
            json!({"quota_set": {"instances": 13}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["badRequest"]["message"],
        "Quota limit 13 for instances must be less than or equal to 12."
    );
    let r = s
        .put(
            "/v2.1/os-quota-sets/p1?user_id=carol",
            ADMIN,
            None,
            json!({"quota_set": {"instances": 0}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .get("/v2.1/os-quota-sets/p1?user_id=carol", ADMIN, None)
        .await;
    assert_eq!(r.body["quota_set"]["instances"], 0);
    let r = boot(&s, "carol:p1", "c", "1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body["forbidden"]["message"],
        "Quota exceeded for instances: Requested 1, but already used 0 of 0 instances"
    );

    // Delete: back to the defaults (202).
    let r = s.delete("/v2.1/os-quota-sets/p1", ADMIN, None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = s.get("/v2.1/os-quota-sets/p1", ALICE, None).await;
    assert_eq!(r.body["quota_set"]["cores"], 20);
    let r = s
        .get("/v2.1/os-quota-sets/p1?user_id=carol", ADMIN, None)
        .await;
    assert_eq!(r.body["quota_set"]["instances"], 10);

    // From 2.75 an unknown query parameter is a 400.
    let r = s
        .get("/v2.1/os-quota-sets/p1?foo=1", ALICE, Some("2.75"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_classes_change_the_defaults_of_every_project() {
    let s = nova_defaults().await;
    let r = s
        .get("/v2.1/os-quota-class-sets/default", ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["quota_class_set"]["id"], "default");
    assert!(r.body["quota_class_set"].get("server_groups").is_none());
    assert_eq!(r.body["quota_class_set"]["floating_ips"], -1);
    let r = s
        .get("/v2.1/os-quota-class-sets/default", ALICE, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .put(
            "/v2.1/os-quota-class-sets/default",
            ADMIN,
            Some("2.57"),
            json!({"quota_class_set": {"instances": 2, "server_groups": 3}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["quota_class_set"]["instances"], 2);
    assert!(r.body["quota_class_set"].get("id").is_none());
    let r = s.get("/v2.1/os-quota-sets/p9/defaults", ALICE, None).await;
    assert_eq!(r.body["quota_set"]["instances"], 2);
    assert_eq!(r.body["quota_set"]["id"], "p9");
    for i in 0..2 {
        let r = boot(&s, ALICE, &format!("d{i}"), "1").await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let r = boot(&s, ALICE, "d2", "1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A project override still wins over the class.
    let r = s
        .put(
            "/v2.1/os-quota-sets/p1",
            ADMIN,
            None,
            json!({"quota_set": {"instances": 3}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = boot(&s, ALICE, "d2", "1").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_show_absolute_limits_and_usage_per_microversion() {
    let s = nova_defaults().await;
    let r = boot(&s, ALICE, "a", "8").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = s.get("/v2.1/limits", ALICE, None).await;
    let a = &r.body["limits"]["absolute"];
    assert_eq!(a["maxTotalInstances"], 10);
    assert_eq!(a["totalInstancesUsed"], 1);
    assert_eq!(a["totalCoresUsed"], 8);
    assert_eq!(a["totalRAMUsed"], 4096);
    assert_eq!(a["maxImageMeta"], 128);
    assert_eq!(a["maxTotalFloatingIps"], -1);
    assert_eq!(r.body["limits"]["rate"], json!([]));
    let r = s.get("/v2.1/limits", ALICE, Some("2.57")).await;
    let a = r.body["limits"]["absolute"].as_object().unwrap();
    assert!(!a.contains_key("maxPersonality") && !a.contains_key("maxImageMeta"));
    // Another project's limits: admins only.
    let r = s.get("/v2.1/limits?tenant_id=p1", "bob:p2", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s.get("/v2.1/limits?tenant_id=p1", ADMIN, None).await;
    assert_eq!(r.body["limits"]["absolute"]["totalInstancesUsed"], 1);
}
