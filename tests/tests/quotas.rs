//! Quotas end to end (issue 10, item 1): the quota reactor gives back what servers no
//! longer hold (delete, failed build, resize confirm / revert, a reservation whose
//! server never came), and after every scenario the ledger folded from the log equals
//! the live servers' usage (`replay::quota_audit`).

use std::time::{Duration, Instant};

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:p1";
const ADMIN: &str = "admin:admin";

/// Nova's defaults, a fast reactor reconcile and a short grace.
async fn start() -> Harness {
    Harness::start(|o| {
        o.quota.base = domain::quota::nova_defaults();
        o.quota.grace = domain::quota::Grace(1);
        o.reactor_reconcile_every = Duration::from_millis(300);
    })
    .await
}

/// The project's `quota_set` detail: (in_use instances, cores, ram).
async fn in_use(h: &Harness) -> (i64, i64, i64) {
    let (code, v) = h.req(ALICE, M::GET, "/os-quota-sets/p1/detail", None).await;
    assert_eq!(code, 200, "{v}");
    let q = &v["quota_set"];
    let n = |k: &str| q[k]["in_use"].as_i64().unwrap();
    (n("instances"), n("cores"), n("ram"))
}

async fn wait_in_use(h: &Harness, want: (i64, i64, i64)) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = in_use(h).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "in_use {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates a flavor as the admin.
async fn flavor(h: &Harness, id: &str, vcpus: u32, ram: u64, disk: u64) {
    let body = json!({"flavor": {"id": id, "name": id, "ram": ram, "vcpus": vcpus, "disk": disk}});
    let (code, v) = h.req(ADMIN, M::POST, "/flavors", Some(body)).await;
    assert_eq!(code, 200, "{v}");
}

/// Sets limits of project p1 as the admin.
async fn set_quota(h: &Harness, quota_set: Value) {
    let body = json!({ "quota_set": quota_set });
    let (code, v) = h.req(ADMIN, M::PUT, "/os-quota-sets/p1", Some(body)).await;
    assert_eq!(code, 200, "{v}");
}

/// How far this process's world has applied the api stream.
fn api_position(h: &Harness) -> u64 {
    h.stack
        .engine
        .world()
        .read()
        .position(&eventlog::StreamName::api())
}

/// What an API process that dies between its two appends leaves: a reservation of p1
/// (alice) for `id` and no command after it.
async fn reserve_without_server(h: &Harness, id: domain::InstanceId, vcpus: u32, ram: u64) {
    let ctx = domain::Ctx::service("test", engine::now(), uuid::Uuid::now_v7());
    let meta = engine::Meta::service("test", "req-test", "test", id.to_string());
    h.stack
        .engine
        .reserve_instances(
            "p1",
            "alice",
            vec![(id, domain::quota::Usage::of_flavor(vcpus, ram))],
            &ctx,
            &meta,
        )
        .await
        .unwrap();
}

/// Every project's ledger equals its live servers' usage, folded from the log.
async fn audit(h: &Harness) {
    let log = h.stack.engine.log().clone();
    let (views, _) = replay::fold(log, &Default::default()).await.unwrap();
    let lines = replay::quota_audit(&views);
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l.matches(), "quota audit: {l:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_failed_builds_give_quota_back() {
    let h = start().await;
    let a = h.create(ALICE, "a", "1").await;
    let b = h.create(ALICE, "b", "1").await;
    h.wait(&a, "ACTIVE").await;
    h.wait(&b, "ACTIVE").await;
    assert_eq!(in_use(&h).await, (2, 2, 1024));
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{a}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&a, "GONE").await;
    wait_in_use(&h, (1, 1, 512)).await;

    // A build no host can take: ERROR in cell0, and its quota comes back.
    flavor(&h, "huge", 5000, 40000, 1).await;
    set_quota(&h, json!({"cores": -1})).await;
    let c = h.create(ALICE, "c", "huge").await;
    h.wait(&c, "ERROR").await;
    wait_in_use(&h, (1, 1, 512)).await;
    audit(&h).await;
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_holds_the_larger_flavor_until_confirm_or_revert() {
    let h = start().await;
    let a = h.create(ALICE, "a", "1").await;
    h.wait(&a, "ACTIVE").await;
    // Upsize m1.tiny (1 vCPU, 512 MiB) -> m1.medium (2, 4096): the delta is held at once.
    h.action(ALICE, &a, json!({"resize": {"flavorRef": "3"}}), 202)
        .await;
    h.wait(&a, "VERIFY_RESIZE").await;
    assert_eq!(in_use(&h).await, (1, 2, 4096));
    h.action(ALICE, &a, json!({"confirmResize": null}), 204)
        .await;
    h.wait(&a, "ACTIVE").await;
    wait_in_use(&h, (1, 2, 4096)).await;

    // Upsize then revert: back to the old flavor.
    h.action(ALICE, &a, json!({"resize": {"flavorRef": "4"}}), 202)
        .await;
    h.wait(&a, "VERIFY_RESIZE").await;
    assert_eq!(in_use(&h).await, (1, 4, 8192));
    h.action(ALICE, &a, json!({"revertResize": null}), 202)
        .await;
    h.wait(&a, "ACTIVE").await;
    wait_in_use(&h, (1, 2, 4096)).await;

    // Downsize (same disk): the larger flavor stays held until the confirm.
    flavor(&h, "t40", 1, 512, 40).await;
    h.action(ALICE, &a, json!({"resize": {"flavorRef": "t40"}}), 202)
        .await;
    h.wait(&a, "VERIFY_RESIZE").await;
    assert_eq!(in_use(&h).await, (1, 2, 4096));
    h.action(ALICE, &a, json!({"confirmResize": null}), 204)
        .await;
    h.wait(&a, "ACTIVE").await;
    wait_in_use(&h, (1, 1, 512)).await;

    // An upsize over quota: Nova's 403 with the delta requested; nothing appended.
    set_quota(&h, json!({"cores": 2})).await;
    let before = api_position(&h);
    let v: Value = h
        .action(ALICE, &a, json!({"resize": {"flavorRef": "5"}}), 403)
        .await;
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded for cores: Requested 7, but already used 1 of 2 cores"
    );
    assert_eq!(api_position(&h), before);
    // A resize refused by the state machine answers its own 409, not the quota's.
    h.action(ALICE, &a, json!({"pause": null}), 202).await;
    h.wait(&a, "PAUSED").await;
    let v = h
        .action(ALICE, &a, json!({"resize": {"flavorRef": "5"}}), 409)
        .await;
    assert!(v["conflictingRequest"].is_object(), "{v}");
    wait_in_use(&h, (1, 1, 512)).await;
    audit(&h).await;
    h.stack.stop().await;
}

/// A create whose API died between its two appends leaves a reservation with no
/// server: the quota reactor gives it back once the grace has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_whose_server_never_came_is_released() {
    let h = start().await;
    let ghost = domain::InstanceId(uuid::Uuid::new_v4());
    reserve_without_server(&h, ghost, 4, 4096).await;
    assert_eq!(in_use(&h).await, (1, 4, 4096));
    wait_in_use(&h, (0, 0, 0)).await;
    let log = h.stack.engine.log().clone();
    let (views, _) = replay::fold(log, &Default::default()).await.unwrap();
    assert!(views
        .quotas()
        .ledger("p1")
        .unwrap()
        .state
        .holdings
        .is_empty());
    h.stack.stop().await;
}

/// Nova's counting quotas skip SOFT_DELETED servers: a soft-deleted server gives its
/// quota back, `restore` is admitted again (Nova's 403 when the room went to another
/// server, appending nothing), and a restore's reservation whose restore never came
/// (the API died between its two appends) is given back after the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deleted_servers_hold_no_quota_and_restore_is_admitted_again() {
    let h = Harness::start(|o| {
        o.quota.base = domain::quota::nova_defaults();
        o.quota.grace = domain::quota::Grace(1);
        o.reactor_reconcile_every = Duration::from_millis(300);
        o.config.reclaim_instance_interval = 3600;
    })
    .await;
    set_quota(&h, json!({"instances": 1})).await;
    let a = h.create(ALICE, "a", "1").await;
    h.wait(&a, "ACTIVE").await;
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{a}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&a, "SOFT_DELETED").await;
    wait_in_use(&h, (0, 0, 0)).await;
    audit(&h).await;

    // The room goes to another server; restoring `a` is over quota.
    let b = h.create(ALICE, "b", "1").await;
    h.wait(&b, "ACTIVE").await;
    let before = h.log_len().await;
    let v = h.action(ALICE, &a, json!({"restore": null}), 403).await;
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"
    );
    assert_eq!(h.log_len().await, before, "a refusal appends nothing");
    assert_eq!(h.show(&a).await["status"], "SOFT_DELETED");

    // With the room back, the restore is admitted and the server counts again.
    h.action(ALICE, &b, json!({"forceDelete": null}), 202).await;
    h.wait(&b, "GONE").await;
    wait_in_use(&h, (0, 0, 0)).await;
    h.action(ALICE, &a, json!({"restore": null}), 202).await;
    h.wait(&a, "ACTIVE").await;
    wait_in_use(&h, (1, 1, 512)).await;
    audit(&h).await;

    // A restore's reservation without its restore: held for the grace, then given back.
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{a}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&a, "SOFT_DELETED").await;
    wait_in_use(&h, (0, 0, 0)).await;
    let id = domain::InstanceId(uuid::Uuid::parse_str(&a).unwrap());
    reserve_without_server(&h, id, 1, 512).await;
    assert_eq!(in_use(&h).await, (1, 1, 512));
    wait_in_use(&h, (0, 0, 0)).await;
    audit(&h).await;
    h.stack.stop().await;
}
