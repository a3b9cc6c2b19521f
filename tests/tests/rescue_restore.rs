//! Rescue / unrescue and soft delete (issue 12 item 1) over HTTP: RESCUE and back with
//! Nova's `adminPass` reply, `rescue_image_ref` validation and 409s; with
//! `--reclaim-instance-interval` a DELETE keeps the server SOFT_DELETED, `restore`
//! brings it back, `forceDelete` deletes it now and the reconciler reclaims it after the
//! interval; without one `restore` is a 409 and `forceDelete` deletes. An unanswered
//! rescue is retried, then given up (ACTIVE with a fault, not stuck in `rescuing`), and
//! `replay rebuild` folds the same read models.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method as M;
use serde_json::json;
use tests::Harness;

const ALICE: &str = "alice:proj-a";
const BOB: &str = "bob:proj-b";
const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

async fn action_names(h: &Harness, id: &str) -> Vec<String> {
    let (code, v) = h
        .req(
            ALICE,
            M::GET,
            &format!("/servers/{id}/os-instance-actions"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    v["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect()
}

/// The server's rescue / unrescue notifications (`/v1/notifications`, as the admin),
/// once there are `n` of them.
async fn rescue_notifications(h: &Harness, id: &str, n: usize) -> Vec<(String, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let (code, v) = h
                .req(
                    "admin:admin",
                    M::GET,
                    &format!("/../v1/notifications?limit=500&cursor={cursor}"),
                    None,
                )
                .await;
            assert_eq!(code, 200, "{v}");
            for item in v["notifications"].as_array().unwrap() {
                let note = &item["notification"];
                let ty = note["event_type"].as_str().unwrap_or_default();
                if note["payload"]["nova_object.data"]["uuid"] == id && ty.contains("rescue.") {
                    out.push((ty.to_string(), note.clone()));
                }
            }
            let next = v["next_cursor"].as_u64().unwrap();
            if next == cursor {
                break;
            }
            cursor = next;
        }
        if out.len() >= n {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} rescue notifications",
            out.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescue_and_unrescue() {
    let h = Harness::start(|_| {}).await;
    let id = h.create(ALICE, "r", "1").await;
    h.wait(&id, "ACTIVE").await;

    // Generated password (200, Nova's backward-compatible code).
    let v = h.action(ALICE, &id, json!({"rescue": null}), 200).await;
    let pass = v["adminPass"].as_str().expect("adminPass").to_string();
    assert!(pass.len() >= 8, "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    let s = h.wait(&id, "RESCUE").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "rescued");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);

    // Wrong states: Nova's 409 for each.
    let v = h.action(ALICE, &id, json!({"rescue": null}), 409).await;
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Cannot 'rescue' instance {id} while it is in vm_state rescued"),
        "{v}"
    );
    h.action(ALICE, &id, json!({"os-stop": null}), 409).await;
    h.action(ALICE, &id, json!({"unrescue": null}), 202).await;
    let s = h.wait(&id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");
    let v = h.action(ALICE, &id, json!({"unrescue": null}), 409).await;
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Cannot 'unrescue' instance {id} while it is in vm_state active"),
        "{v}"
    );

    // A given password and rescue image; a stopped server can be rescued too.
    h.action(ALICE, &id, json!({"os-stop": null}), 202).await;
    h.wait(&id, "SHUTOFF").await;
    let v = h
        .action(
            ALICE,
            &id,
            json!({"rescue": {"adminPass": "MySecretPass", "rescue_image_ref": IMAGE}}),
            200,
        )
        .await;
    assert_eq!(v, json!({"adminPass": "MySecretPass"}));
    h.wait(&id, "RESCUE").await;
    h.action(ALICE, &id, json!({"unrescue": null}), 202).await;
    h.wait(&id, "ACTIVE").await;

    // Nova's rescue notifications carry the requested rescue image (null: none named).
    let ns = rescue_notifications(&h, &id, 8).await;
    let image =
        |n: &serde_json::Value| n["payload"]["nova_object.data"]["rescue_image_ref"].clone();
    let kinds: Vec<&str> = ns.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "instance.rescue.start",
            "instance.rescue.end",
            "instance.unrescue.start",
            "instance.unrescue.end",
        ]
        .repeat(2),
    );
    assert_eq!(
        ns[0].1["payload"]["nova_object.name"],
        "InstanceActionRescuePayload"
    );
    assert_eq!(
        ns[0].1["payload"]["nova_object.data"]["task_state"],
        "rescuing"
    );
    assert_eq!(ns[1].1["payload"]["nova_object.data"]["state"], "rescued");
    assert_eq!(
        (image(&ns[0].1), image(&ns[1].1)),
        (json!(null), json!(null))
    );
    assert_eq!(
        (image(&ns[4].1), image(&ns[5].1)),
        (json!(IMAGE), json!(IMAGE))
    );
    assert_eq!(
        ns[2].1["payload"]["nova_object.name"],
        "InstanceActionPayload"
    );

    // Bad bodies and images: 400; someone else's server: 404.
    for body in [
        json!({"rescue": {"extra": 1}}),
        json!({"rescue": {"rescue_image_ref": "not-a-uuid"}}),
        json!({"rescue": {"adminPass": 1}}),
    ] {
        h.action(ALICE, &id, body, 400).await;
    }
    let missing = "11111111-2222-3333-4444-555555555555";
    let v = h
        .action(
            ALICE,
            &id,
            json!({"rescue": {"rescue_image_ref": missing}}),
            400,
        )
        .await;
    assert_eq!(
        v["badRequest"]["message"],
        format!("Requested rescue image '{missing}' is not supported"),
        "{v}"
    );
    h.action(BOB, &id, json!({"rescue": null}), 404).await;

    // Locked: 409 for the owner.
    h.action(ALICE, &id, json!({"lock": null}), 202).await;
    h.action(ALICE, &id, json!({"rescue": null}), 409).await;
    h.action(ALICE, &id, json!({"unlock": null}), 202).await;

    let names = action_names(&h, &id).await;
    assert_eq!(
        names.iter().filter(|n| *n == "rescue").count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "unrescue").count(),
        2,
        "{names:?}"
    );

    // A restart keeps the state; `replay rebuild` folds the same read models.
    h.action(ALICE, &id, json!({"rescue": null}), 200).await;
    h.wait(&id, "RESCUE").await;
    let h = h.restart(|_| {}).await;
    h.wait(&id, "RESCUE").await;
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_rescue_is_retried_then_given_up_not_left_stuck() {
    let h = Harness::start(|o| {
        o.sim.stall_tasks = HashSet::from([domain::TaskState::Rescuing]);
        o.config.task_timeout_secs = 1;
        o.config.max_attempts = 2;
        o.reconcile_every = Duration::from_millis(200);
    })
    .await;
    let id = h.create(ALICE, "r", "1").await;
    h.wait(&id, "ACTIVE").await;
    h.action(ALICE, &id, json!({"rescue": null}), 200).await;
    assert_eq!(h.show(&id).await["OS-EXT-STS:task_state"], "rescuing");
    let s = h.wait(&id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");
    // The fault shows only in ERROR; the instance action records the failure.
    let (_, v) = h
        .req(
            ALICE,
            M::GET,
            &format!("/servers/{id}/os-instance-actions"),
            None,
        )
        .await;
    let rescue = &v["instanceActions"][0];
    assert_eq!(rescue["action"], "rescue", "{v}");
    assert_eq!(rescue["message"], "Error", "{v}");
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reclaim_interval_restore_is_a_conflict_and_force_delete_deletes() {
    let h = Harness::start(|_| {}).await;
    let id = h.create(ALICE, "d", "1").await;
    h.wait(&id, "ACTIVE").await;
    let v = h.action(ALICE, &id, json!({"restore": null}), 409).await;
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Cannot 'restore' instance {id} while it is in vm_state active"),
        "{v}"
    );
    h.action(ALICE, &id, json!({"forceDelete": null}), 202)
        .await;
    h.wait(&id, "GONE").await;
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_restore_force_delete_and_reclaim() {
    let h = Harness::start(|o| {
        o.config.reclaim_instance_interval = 2;
        o.reconcile_every = Duration::from_millis(200);
    })
    .await;
    let id = h.create(ALICE, "s", "1").await;
    h.wait(&id, "ACTIVE").await;

    // DELETE keeps it SOFT_DELETED on its host; restore brings it back.
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(code, 204);
    let s = h.wait(&id, "SOFT_DELETED").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "soft-delete");
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    assert!(s["OS-EXT-SRV-ATTR:host"].is_string(), "{s}");
    h.action(ALICE, &id, json!({"restore": null}), 202).await;
    let s = h.wait(&id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    let names = action_names(&h, &id).await;
    assert_eq!(names[..2], ["restore", "delete"], "{names:?}");

    // forceDelete deletes a soft-deleted server at once.
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(code, 204);
    h.wait(&id, "SOFT_DELETED").await;
    h.action(ALICE, &id, json!({"forceDelete": null}), 202)
        .await;
    h.wait(&id, "GONE").await;

    // Left alone, the reconciler reclaims it after the interval.
    let id = h.create(ALICE, "t", "1").await;
    h.wait(&id, "ACTIVE").await;
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("/servers/{id}"), None)
        .await;
    assert_eq!(code, 204);
    let soft = Instant::now();
    h.wait(&id, "SOFT_DELETED").await;
    let (code, _) = h.req(ALICE, M::GET, &format!("/servers/{id}"), None).await;
    assert_eq!(code, 200, "still there until reclaimed");
    h.wait(&id, "GONE").await;
    assert!(soft.elapsed() >= Duration::from_millis(1500));

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

/// A GET as ALICE at `version`.
async fn get_at(h: &Harness, version: &str, path: &str) -> (u16, serde_json::Value) {
    h.req_at(ALICE, M::GET, path, version, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locked_filter_and_reason_from_2_73() {
    let h = Harness::start(|_| {}).await;
    let a = h.create(ALICE, "a", "1").await;
    let b = h.create(ALICE, "b", "1").await;
    h.wait(&a, "ACTIVE").await;
    h.wait(&b, "ACTIVE").await;
    h.action(
        ALICE,
        &a,
        json!({"lock": {"locked_reason": "maintenance"}}),
        202,
    )
    .await;
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (code, v) = get_at(&h, "2.73", "/servers?locked=true").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ids(&v), vec![a.clone()]);
    let (_, v) = get_at(&h, "2.73", "/servers/detail?locked=False").await;
    assert_eq!(ids(&v), vec![b.clone()]);
    assert_eq!(v["servers"][0]["locked_reason"], serde_json::Value::Null);
    let (_, v) = get_at(&h, "2.73", &format!("/servers/{a}")).await;
    assert_eq!(v["server"]["locked"], true);
    assert_eq!(v["server"]["locked_reason"], "maintenance");
    let (code, v) = get_at(&h, "2.73", "/servers?locked=maybe").await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        "Invalid input received: Unrecognized value 'maybe', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
    );
    // Before 2.73 the filter is ignored, and the reason is not shown.
    let (_, v) = get_at(&h, "2.72", "/servers?locked=true").await;
    assert_eq!(ids(&v).len(), 2);
    let (_, v) = get_at(&h, "2.72", &format!("/servers/{a}")).await;
    assert!(v["server"].get("locked_reason").is_none(), "{v}");
    h.stack.stop().await;
}

/// A request as `token` at `version`.
async fn req_at(
    h: &Harness,
    version: &str,
    token: &str,
    method: M,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    h.req_at(token, method, path, version, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unshelve_to_a_host_and_zone() {
    const ADMIN: &str = "admin:admin";
    let h = Harness::start(|o| o.hosts = 2).await;
    let id = h.create(ALICE, "u", "1").await;
    let s = h.wait(&id, "ACTIVE").await;
    let first = s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string();
    let other = if first == "host1" { "host2" } else { "host1" };
    let act = format!("/servers/{id}/action");

    // A host before 2.91, or on a server that is only SHELVED: refused.
    let (code, v) = req_at(
        &h,
        "2.90",
        ADMIN,
        M::POST,
        &act,
        Some(json!({"unshelve": {"host": other}})),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    h.action(ALICE, &id, json!({"shelve": null}), 202).await;
    h.wait(&id, "SHELVED_OFFLOADED").await;
    // Non-admins may not name a host; unknown hosts and zones are 400s.
    let (code, v) = req_at(
        &h,
        "2.91",
        ALICE,
        M::POST,
        &act,
        Some(json!({"unshelve": {"host": other}})),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Policy doesn't allow os_compute_api:os-shelve:unshelve_to_host to be performed."
    );
    let (code, v) = req_at(
        &h,
        "2.91",
        ADMIN,
        M::POST,
        &act,
        Some(json!({"unshelve": {"host": "nowhere"}})),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        "Compute host nowhere could not be found."
    );
    let (code, v) = req_at(
        &h,
        "2.91",
        ADMIN,
        M::POST,
        &act,
        Some(json!({"unshelve": {"host": other, "availability_zone": "elsewhere"}})),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    // Pinned to the zone it names, on the host it names.
    let (code, v) = req_at(
        &h,
        "2.91",
        ADMIN,
        M::POST,
        &act,
        Some(json!({"unshelve": {"host": other, "availability_zone": "nova"}})),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let s = h.wait(&id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], other);
    assert_eq!(s["OS-EXT-AZ:availability_zone"], "nova");

    // Again, to the first host, unpinned (null zone).
    h.action(ALICE, &id, json!({"shelve": null}), 202).await;
    h.wait(&id, "SHELVED_OFFLOADED").await;
    let (code, v) = req_at(
        &h,
        "2.91",
        ADMIN,
        M::POST,
        &act,
        Some(json!({"unshelve": {"host": first, "availability_zone": null}})),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let s = h.wait(&id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], first.as_str());

    // A zone on a SHELVED server: Nova's 409.
    let h = h
        .restart(|o| {
            o.hosts = 2;
            o.config.shelved_offload_time = -1;
        })
        .await;
    h.action(ALICE, &id, json!({"shelve": null}), 202).await;
    h.wait(&id, "SHELVED").await;
    let (code, v) = req_at(
        &h,
        "2.91",
        ADMIN,
        M::POST,
        &act,
        Some(json!({"unshelve": {"availability_zone": "nova"}})),
    )
    .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Specifying an availability zone or a host when unshelving server \"{id}\" with status \"SHELVED\" is not supported. The server status must be SHELVED_OFFLOADED.")
    );
    h.action(ALICE, &id, json!({"unshelve": null}), 202).await;
    h.wait(&id, "ACTIVE").await;
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_crash_dump_from_2_17() {
    let h = Harness::start(|_| {}).await;
    let id = h.create(ALICE, "c", "1").await;
    h.wait(&id, "ACTIVE").await;
    let act = format!("/servers/{id}/action");
    let body = || Some(json!({"trigger_crash_dump": null}));
    let (code, v) = req_at(&h, "2.16", ALICE, M::POST, &act, body()).await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = req_at(
        &h,
        "2.17",
        ALICE,
        M::POST,
        &act,
        Some(json!({"trigger_crash_dump": {}})),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = req_at(&h, "2.17", ALICE, M::POST, &act, body()).await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(h.show(&id).await["status"], "ACTIVE");
    assert_eq!(action_names(&h, &id).await[0], "trigger_crash_dump");
    h.action(ALICE, &id, json!({"os-stop": null}), 202).await;
    h.wait(&id, "SHUTOFF").await;
    let (code, v) = req_at(&h, "2.17", ALICE, M::POST, &act, body()).await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Cannot 'trigger_crash_dump' instance {id} while it is in vm_state stopped")
    );
    h.stack.stop().await;
}
