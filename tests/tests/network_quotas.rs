//! Network quotas (issue 13, item 2) over HTTP: Neutron's quota API, OverQuota at the
//! limit with nothing appended to the resource, exactness under concurrency, releases
//! on delete, and the reconciler giving back a holding whose resource never appeared.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};
use tests::Harness;

const ADMIN: &str = "admin:admin";
const ALICE: &str = "alice:p1";
const BOB: &str = "bob:p2";

#[tokio::test]
async fn quota_api_and_limits() {
    let h = Harness::start(|_| {}).await;
    let (code, v) = h.neutron(ALICE, Method::GET, "/v2.0/quotas/p1", None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["quota"]["network"], 100);
    assert_eq!(v["quota"]["port"], 500);
    let (_, v) = h
        .neutron(ALICE, Method::GET, "/v2.0/quotas/project", None)
        .await;
    assert_eq!(v["project"]["project_id"], "p1");
    // Another project's quotas and changes are the admin's.
    let (code, _) = h.neutron(ALICE, Method::GET, "/v2.0/quotas/p2", None).await;
    assert_eq!(code, 403);
    let (code, _) = h
        .neutron(
            ALICE,
            Method::PUT,
            "/v2.0/quotas/p1",
            Some(json!({"quota": {"network": 1}})),
        )
        .await;
    assert_eq!(code, 403);
    let (code, v) = h
        .neutron(
            ADMIN,
            Method::PUT,
            "/v2.0/quotas/p1",
            Some(json!({"quota": {"network": 2, "port": 3}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["quota"]["network"], 2);
    let (code, _) = h
        .neutron(
            ADMIN,
            Method::PUT,
            "/v2.0/quotas/p1",
            Some(json!({"quota": {"bogus": 2}})),
        )
        .await;
    assert_eq!(code, 400);
    let (_, v) = h.neutron(ADMIN, Method::GET, "/v2.0/quotas", None).await;
    assert_eq!(v["quotas"][0]["project_id"], "p1");

    for name in ["a", "b"] {
        h.neutron_create(ALICE, "network", json!({"name": name}))
            .await;
    }
    let before = h.log_len().await;
    let (code, v) = h
        .neutron(
            ALICE,
            Method::POST,
            "/v2.0/networks",
            Some(json!({"network": {"name": "c"}})),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "OverQuota");
    assert_eq!(
        v["NeutronError"]["message"],
        "Quota exceeded for resources: ['network']."
    );
    assert_eq!(
        h.log_len().await,
        before,
        "a refused reservation appends nothing"
    );
    // Bob's project is counted apart.
    h.neutron_create(BOB, "network", json!({"name": "b1"}))
        .await;
    let (_, v) = h
        .neutron(ALICE, Method::GET, "/v2.0/quotas/p1/details", None)
        .await;
    assert_eq!(
        v["quota"]["network"],
        json!({"limit": 2, "used": 2, "reserved": 0})
    );
    // A limit below what is held needs force.
    let (code, _) = h
        .neutron(
            ADMIN,
            Method::PUT,
            "/v2.0/quotas/p1",
            Some(json!({"quota": {"network": 1}})),
        )
        .await;
    assert_eq!(code, 400);
    // A delete gives back.
    let (_, v) = h
        .neutron(ALICE, Method::GET, "/v2.0/networks?name=a", None)
        .await;
    let id = v["networks"][0]["id"].as_str().unwrap().to_string();
    let (code, _) = h
        .neutron(ALICE, Method::DELETE, &format!("/v2.0/networks/{id}"), None)
        .await;
    assert_eq!(code, 204);
    h.neutron_create(ALICE, "network", json!({"name": "c"}))
        .await;
    // Reset: defaults again.
    let (code, _) = h
        .neutron(ADMIN, Method::DELETE, "/v2.0/quotas/p1", None)
        .await;
    assert_eq!(code, 204);
    let (_, v) = h.neutron(ALICE, Method::GET, "/v2.0/quotas/p1", None).await;
    assert_eq!(v["quota"]["network"], 100);
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test]
async fn concurrent_creates_stop_exactly_at_the_limit() {
    let h = Harness::start(|_| {}).await;
    let (code, _) = h
        .neutron(
            ADMIN,
            Method::PUT,
            "/v2.0/quotas/p1",
            Some(json!({"quota": {"port": 7}})),
        )
        .await;
    assert_eq!(code, 200);
    let net = h
        .neutron_create(ALICE, "network", json!({"name": "n"}))
        .await;
    h.neutron_create(
        ALICE,
        "subnet",
        json!({"network_id": net["id"], "ip_version": 4, "cidr": "10.70.0.0/24"}),
    )
    .await;
    let mut tasks = vec![];
    for _ in 0..40 {
        let (client, addr, nid) = (
            h.http.clone(),
            h.stack.network_addr.unwrap(),
            net["id"].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(format!("http://{addr}/v2.0/ports"))
                .header("X-Auth-Token", ALICE)
                .json(&json!({"port": {"network_id": nid}}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (code, v) = t.await.unwrap();
        match code {
            201 => ok += 1,
            409 => assert_eq!(v["NeutronError"]["type"], "OverQuota", "{v}"),
            c => panic!("{c}: {v}"),
        }
    }
    assert_eq!(ok, 7);
    let (_, v) = h
        .neutron(
            ALICE,
            Method::GET,
            &format!("/v2.0/ports?network_id={}", net["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 7);
    h.stack.stop().await;
}

#[tokio::test]
async fn the_reconciler_gives_back_what_a_crash_left() {
    let h = Harness::start(|_| {}).await;
    let engine = h.stack.engine.clone();
    // A reservation made two minutes ago whose port was never created (the API died
    // between its two appends).
    let mut ctx = domain::Ctx::service("test", engine::now(), uuid::Uuid::new_v4());
    ctx.now = domain::Timestamp(ctx.now.0 - 120_000_000);
    let orphan = uuid::Uuid::new_v4();
    engine
        .reserve_network(
            "p1",
            domain::network::quota::NetResource::Port,
            orphan,
            &ctx,
            &engine::Meta::service("test", "req-test", "test", "test-orphan".into()),
        )
        .await
        .unwrap();
    let live = h
        .neutron_create(
            ALICE,
            "port",
            json!({"network_id": tests::neutron::PRIVATE_ID}),
        )
        .await;
    let held = |e: &Arc<engine::Engine>| {
        e.world()
            .read()
            .network_quotas()
            .ledger("p1")
            .map(|r| r.state.holdings.len())
            .unwrap_or(0)
    };
    assert_eq!(held(&engine), 2);
    engine::Periodic::run(&network::quotas::Reconciler, &engine)
        .await
        .unwrap();
    assert_eq!(
        held(&engine),
        1,
        "the orphan is given back, the live port kept"
    );
    let l = engine
        .world()
        .read()
        .network_quotas()
        .ledger("p1")
        .unwrap()
        .state
        .clone();
    assert!(l
        .holdings
        .contains_key(&uuid::Uuid::parse_str(live["id"].as_str().unwrap()).unwrap()));
    h.stack.stop().await;
}

#[tokio::test]
async fn routers_floating_ips_and_security_groups_count_too() {
    let h = Harness::start(|_| {}).await;
    let (code, _) = h
        .neutron(
            ADMIN,
            Method::PUT,
            "/v2.0/quotas/p1",
            Some(json!({"quota": {"router": 1, "floatingip": 1, "security_group": 1, "security_group_rule": 1}})),
        )
        .await;
    assert_eq!(code, 200);
    let r = h
        .neutron_create(ALICE, "router", json!({"name": "r1"}))
        .await;
    let fip = h
        .neutron_create(
            ALICE,
            "floatingip",
            json!({"floating_network_id": tests::neutron::PUBLIC_ID}),
        )
        .await;
    // The default group is not counted; one more group is.
    let g = h
        .neutron_create(ALICE, "security_group", json!({"name": "web"}))
        .await;
    h.neutron_create(
        ALICE,
        "security_group_rule",
        json!({"security_group_id": g["id"], "direction": "ingress", "protocol": "tcp",
            "port_range_min": 80, "port_range_max": 80}),
    )
    .await;
    let before = h.log_len().await;
    for (path, body) in [
        ("/v2.0/routers", json!({"router": {"name": "r2"}})),
        (
            "/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": tests::neutron::PUBLIC_ID}}),
        ),
        (
            "/v2.0/security-groups",
            json!({"security_group": {"name": "db"}}),
        ),
        (
            "/v2.0/security-group-rules",
            json!({"security_group_rule": {"security_group_id": g["id"], "direction": "ingress",
                "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}}),
        ),
    ] {
        let (code, v) = h.neutron(ALICE, Method::POST, path, Some(body)).await;
        assert_eq!(code, 409, "{path}: {v}");
        assert_eq!(v["NeutronError"]["type"], "OverQuota", "{path}: {v}");
    }
    assert_eq!(
        h.log_len().await,
        before,
        "refused reservations append nothing"
    );
    let (_, v) = h
        .neutron(ALICE, Method::GET, "/v2.0/quotas/p1/details", None)
        .await;
    for k in [
        "router",
        "floatingip",
        "security_group",
        "security_group_rule",
    ] {
        assert_eq!(v["quota"][k]["used"], 1, "{k}: {v}");
    }
    // Deletes give back.
    for path in [
        format!("/v2.0/routers/{}", r["id"].as_str().unwrap()),
        format!("/v2.0/floatingips/{}", fip["id"].as_str().unwrap()),
        format!("/v2.0/security-groups/{}", g["id"].as_str().unwrap()),
    ] {
        let (code, v) = h.neutron(ALICE, Method::DELETE, &path, None).await;
        assert_eq!(code, 204, "{path}: {v}");
    }
    let (_, v) = h
        .neutron(ALICE, Method::GET, "/v2.0/quotas/p1/details", None)
        .await;
    for k in [
        "router",
        "floatingip",
        "security_group",
        "security_group_rule",
    ] {
        assert_eq!(v["quota"][k]["used"], 0, "{k}: {v}");
        assert_eq!(v["quota"][k]["reserved"], 0, "{k}: {v}");
    }
    h.neutron_create(ALICE, "router", json!({"name": "r3"}))
        .await;
    h.stack.stop().await;
}
