//! Snapshots (issue 12 item 1): `createImage` and `createBackup` make an image that
//! goes `queued -> saving -> active` as the compute agent uploads it, while the server
//! passes through Nova's image task states; backups rotate; shelve makes the
//! `<name>-shelved` image and unshelve deletes it; Nova's image proxy (`/images`, its
//! metadata) reads and changes the same images; an agent restart mid-upload finishes
//! the upload.

use std::time::{Duration, Instant};

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:proj-a";
const BOB: &str = "bob:proj-b";

/// A compute API request at microversion `mv`: status, headers, JSON (Null if empty).
async fn at(
    h: &Harness,
    mv: &str,
    token: &str,
    method: M,
    path: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    h.send_at(token, method, path, mv, body).await
}

/// GET /images/{id} (2.35) until its status is `want`.
async fn wait_image(h: &Harness, token: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, v) = at(h, "2.35", token, M::GET, &format!("/images/{id}"), None).await;
        if want == "GONE" && code == 404 {
            return Value::Null;
        }
        if code == 200 && v["image"]["status"] == want {
            return v["image"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "image {id} never {want}: {code} {v}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_image_uploads_a_snapshot_and_records_the_action() {
    let h = Harness::start(|_| {}).await;
    let id = h.create(ALICE, "snap-me", "1").await;
    h.wait(&id, "ACTIVE").await;

    // 2.45+: the image id in the body, no Location.
    let (code, headers, v) = at(
        &h,
        "2.45",
        ALICE,
        M::POST,
        &format!("/servers/{id}/action"),
        Some(json!({"createImage": {"name": "snap-1", "metadata": {"purpose": "test"}}})),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    assert!(headers.get("location").is_none());
    let image = v["image_id"].as_str().expect("image_id").to_string();
    let shown = wait_image(&h, ALICE, &image, "ACTIVE").await;
    h.wait(&id, "ACTIVE").await;
    assert_eq!(shown["name"], "snap-1");
    assert_eq!(shown["progress"], 100);
    assert_eq!(shown["server"]["id"], id.as_str());
    let md = &shown["metadata"];
    assert_eq!(md["instance_uuid"], id.as_str(), "{shown}");
    assert_eq!(md["image_type"], "snapshot");
    assert_eq!(md["base_image_ref"], "70a599e0-31e7-49b7-b260-868f441e862b");
    assert_eq!(md["purpose"], "test");
    assert_eq!(md["user_id"], "alice");
    // The snapshot is bootable like any active image.
    let (code, _, v) = at(
        &h,
        "2.96",
        ALICE,
        M::POST,
        "/servers",
        Some(json!({"server": {"name": "from-snap", "imageRef": image, "flavorRef": "1", "networks": "none"}})),
    )
    .await;
    assert_eq!(code, 202, "{v}");

    // Before 2.45: a Location header and no body.
    let (code, headers, v) = at(
        &h,
        "2.44",
        ALICE,
        M::POST,
        &format!("/servers/{id}/action"),
        Some(json!({"createImage": {"name": "snap-2"}})),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    assert!(v.is_null(), "{v}");
    let loc = headers["location"].to_str().unwrap().to_string();
    assert!(loc.contains("/v2.1/images/"), "{loc}");
    let image2 = loc.rsplit('/').next().unwrap().to_string();
    wait_image(&h, ALICE, &image2, "ACTIVE").await;
    h.wait(&id, "ACTIVE").await;

    // The instance actions: createImage with its compute step.
    let (_, _, v) = at(
        &h,
        "2.96",
        ALICE,
        M::GET,
        &format!("/servers/{id}/os-instance-actions"),
        None,
    )
    .await;
    let a = v["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "createImage")
        .expect("a createImage action")
        .clone();
    let (_, _, v) = at(
        &h,
        "2.96",
        ALICE,
        M::GET,
        &format!(
            "/servers/{id}/os-instance-actions/{}",
            a["request_id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(
        v["instanceAction"]["events"][0]["event"],
        "compute_snapshot_instance"
    );
    assert_eq!(v["instanceAction"]["events"][0]["result"], "Success", "{v}");

    // Bad bodies: 400, nothing created.
    for body in [
        json!({"createImage": {}}),
        json!({"createImage": {"name": ""}}),
        json!({"createImage": {"name": "x", "extra": 1}}),
        json!({"createImage": {"name": "x", "metadata": "no"}}),
    ] {
        h.action(ALICE, &id, body, 400).await;
    }
    // Another project's server: 404.
    h.action(BOB, &id, json!({"createImage": {"name": "x"}}), 404)
        .await;

    // Wrong state: 409, and no image left behind.
    h.action(ALICE, &id, json!({"shelve": null}), 202).await;
    h.wait(&id, "SHELVED_OFFLOADED").await;
    let v = h
        .action(ALICE, &id, json!({"createImage": {"name": "late"}}), 409)
        .await;
    assert!(
        v["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("Cannot 'createImage' instance"),
        "{v}"
    );
    let (_, _, v) = at(&h, "2.35", ALICE, M::GET, "/images?name=late", None).await;
    assert_eq!(v["images"], json!([]), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_backup_keeps_the_newest_rotation_backups() {
    let h = Harness::start(|_| {}).await;
    let id = h.create(ALICE, "backed-up", "1").await;
    h.wait(&id, "ACTIVE").await;
    let mut ids = vec![];
    for n in 0..3 {
        let (code, _, v) = at(
            &h,
            "2.45",
            ALICE,
            M::POST,
            &format!("/servers/{id}/action"),
            Some(json!({"createBackup": {"name": format!("b{n}"), "backup_type": "daily", "rotation": 2}})),
        )
        .await;
        assert_eq!(code, 202, "{v}");
        let image = v["image_id"].as_str().unwrap().to_string();
        wait_image(&h, ALICE, &image, "ACTIVE").await;
        h.wait(&id, "ACTIVE").await;
        ids.push(image);
    }
    // The oldest went; the two newest stay.
    wait_image(&h, ALICE, &ids[0], "GONE").await;
    let (_, _, v) = at(
        &h,
        "2.35",
        ALICE,
        M::GET,
        &format!("/images/detail?server={id}&type=backup"),
        None,
    )
    .await;
    let mut listed: Vec<&str> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    listed.sort();
    let mut want = vec![ids[1].as_str(), ids[2].as_str()];
    want.sort();
    assert_eq!(listed, want, "{v}");
    assert_eq!(v["images"][0]["metadata"]["backup_type"], "daily");
    assert_eq!(v["images"][0]["metadata"]["image_type"], "backup");

    // Before 2.45 with rotation 0: no Location (and every backup of the type goes).
    let (code, headers, _) = at(
        &h,
        "2.44",
        ALICE,
        M::POST,
        &format!("/servers/{id}/action"),
        Some(json!({"createBackup": {"name": "b", "backup_type": "daily", "rotation": "0"}})),
    )
    .await;
    assert_eq!(code, 202);
    assert!(headers.get("location").is_none());
    h.wait(&id, "ACTIVE").await;
    wait_image(&h, ALICE, &ids[2], "GONE").await;

    for body in [
        json!({"createBackup": {"name": "b", "backup_type": "daily"}}),
        json!({"createBackup": {"name": "b", "backup_type": "daily", "rotation": -1}}),
        json!({"createBackup": {"name": "b", "backup_type": "daily", "rotation": "x"}}),
    ] {
        h.action(ALICE, &id, body, 400).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shelve_makes_the_shelved_image_and_unshelve_deletes_it() {
    let h = Harness::start(|_| {}).await;
    let id = h.create(ALICE, "sleepy", "1").await;
    h.wait(&id, "ACTIVE").await;
    h.action(ALICE, &id, json!({"shelve": null}), 202).await;
    h.wait(&id, "SHELVED_OFFLOADED").await;
    let (_, _, v) = at(
        &h,
        "2.35",
        ALICE,
        M::GET,
        "/images/detail?name=sleepy-shelved",
        None,
    )
    .await;
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{v}");
    assert_eq!(images[0]["status"], "ACTIVE");
    assert_eq!(images[0]["metadata"]["instance_uuid"], id.as_str());
    let image = images[0]["id"].as_str().unwrap().to_string();
    h.action(ALICE, &id, json!({"unshelve": null}), 202).await;
    h.wait(&id, "ACTIVE").await;
    wait_image(&h, ALICE, &image, "GONE").await;
    // A snapshot too, then every read model from the log alone.
    h.action(
        ALICE,
        &id,
        json!({"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}}),
        202,
    )
    .await;
    h.wait(&id, "ACTIVE").await;
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_proxy_lists_shows_changes_metadata_and_deletes() {
    let h = Harness::start(|_| {}).await;
    let cirros = "70a599e0-31e7-49b7-b260-868f441e862b";
    let (code, _, v) = at(&h, "2.1", ALICE, M::GET, "/images", None).await;
    assert_eq!(code, 200, "{v}");
    assert!(v["images"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == cirros && i["links"].as_array().unwrap().len() == 3));
    let (_, _, v) = at(
        &h,
        "2.35",
        ALICE,
        M::GET,
        &format!("/images/{cirros}"),
        None,
    )
    .await;
    assert_eq!(v["image"]["status"], "ACTIVE", "{v}");
    assert_eq!(v["image"]["minDisk"], 0);
    assert!(v["image"]["OS-EXT-IMG-SIZE:size"].as_u64().unwrap() > 0);
    // Deprecated: gone from 2.36 (images) and 2.39 (metadata).
    let (code, _, _) = at(&h, "2.36", ALICE, M::GET, "/images", None).await;
    assert_eq!(code, 404);
    let (code, _, _) = at(
        &h,
        "2.38",
        ALICE,
        M::GET,
        &format!("/images/{cirros}/metadata"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _, _) = at(
        &h,
        "2.39",
        ALICE,
        M::GET,
        &format!("/images/{cirros}/metadata"),
        None,
    )
    .await;
    assert_eq!(code, 404);
    let (code, _, v) = at(&h, "2.35", ALICE, M::GET, "/images/nope", None).await;
    assert_eq!(code, 404);
    assert_eq!(v["itemNotFound"]["message"], "Image not found.");

    // A snapshot of Alice's to change.
    let id = h.create(ALICE, "meta", "1").await;
    h.wait(&id, "ACTIVE").await;
    let v = h
        .action(ALICE, &id, json!({"createImage": {"name": "m"}}), 202)
        .await;
    let image = v["image_id"].as_str().unwrap().to_string();
    wait_image(&h, ALICE, &image, "ACTIVE").await;
    let path = format!("/images/{image}/metadata");
    let (code, _, v) = at(
        &h,
        "2.1",
        ALICE,
        M::POST,
        &path,
        Some(json!({"metadata": {"a": "1", "b": "2"}})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["a"], "1");
    assert_eq!(v["metadata"]["image_type"], "snapshot");
    let (code, _, v) = at(
        &h,
        "2.1",
        ALICE,
        M::PUT,
        &format!("{path}/a"),
        Some(json!({"meta": {"a": "9"}})),
    )
    .await;
    assert_eq!((code, &v), (200, &json!({"meta": {"a": "9"}})));
    let (code, _, _) = at(
        &h,
        "2.1",
        ALICE,
        M::PUT,
        &format!("{path}/a"),
        Some(json!({"meta": {"b": "9"}})),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _, v) = at(&h, "2.1", ALICE, M::GET, &format!("{path}/a"), None).await;
    assert_eq!((code, &v), (200, &json!({"meta": {"a": "9"}})));
    let (code, _, _) = at(&h, "2.1", ALICE, M::DELETE, &format!("{path}/a"), None).await;
    assert_eq!(code, 204);
    let (code, _, v) = at(&h, "2.1", ALICE, M::DELETE, &format!("{path}/a"), None).await;
    assert_eq!(code, 404);
    assert_eq!(v["itemNotFound"]["message"], "Invalid metadata key");
    let (code, _, _) = at(&h, "2.1", ALICE, M::GET, &format!("{path}/a"), None).await;
    assert_eq!(code, 404);
    let (code, _, v) = at(
        &h,
        "2.1",
        ALICE,
        M::PUT,
        &path,
        Some(json!({"metadata": {"only": "this"}})),
    )
    .await;
    assert_eq!((code, &v), (200, &json!({"metadata": {"only": "this"}})));
    let (_, _, v) = at(&h, "2.1", ALICE, M::GET, &path, None).await;
    assert_eq!(v, json!({"metadata": {"only": "this"}}));
    // Bob sees neither the image nor its metadata; the public image he cannot delete.
    let (code, _, _) = at(&h, "2.1", BOB, M::GET, &path, None).await;
    assert_eq!(code, 404);
    let (code, _, v) = at(
        &h,
        "2.1",
        BOB,
        M::DELETE,
        &format!("/images/{cirros}"),
        None,
    )
    .await;
    assert_eq!(code, 403, "{v}");
    // Paging: limit and marker, with a next link.
    let (_, _, v) = at(&h, "2.35", ALICE, M::GET, "/images?limit=1", None).await;
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    let first = v["images"][0]["id"].as_str().unwrap().to_string();
    assert!(v["images_links"][0]["href"]
        .as_str()
        .unwrap()
        .contains(&format!("marker={first}")));
    let (_, _, v) = at(
        &h,
        "2.35",
        ALICE,
        M::GET,
        &format!("/images?marker={first}"),
        None,
    )
    .await;
    assert!(v["images"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["id"] != first.as_str()));
    let (code, _, _) = at(&h, "2.35", ALICE, M::GET, "/images?marker=nope", None).await;
    assert_eq!(code, 400);
    // Delete.
    let (code, _, _) = at(
        &h,
        "2.35",
        ALICE,
        M::DELETE,
        &format!("/images/{image}"),
        None,
    )
    .await;
    assert_eq!(code, 204);
    wait_image(&h, ALICE, &image, "GONE").await;
}

/// An agent that dies mid-upload (the image is left `saving`, the server in
/// `image_uploading`) is started again: its reconcile redoes the upload task, which
/// resumes from the image's status; the image goes active and the server idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_upload_finishes_the_snapshot() {
    // Slow enough hypervisor steps to stop the process inside the upload step.
    let slow = |o: &mut tests::StackOptions| o.sim.delay = Duration::from_millis(700);
    let h = Harness::start(slow).await;
    let id = h.create(ALICE, "crashy", "1").await;
    h.wait(&id, "ACTIVE").await;
    let v = h
        .action(ALICE, &id, json!({"createImage": {"name": "c"}}), 202)
        .await;
    let image = v["image_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.show(&id).await["OS-EXT-STS:task_state"] != "image_uploading" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // As if the upload had begun when the agent died: the image is `saving`.
    let iid = domain::ImageId::parse(&image).unwrap();
    let ctx = || domain::Ctx::service("test", engine::now(), uuid::Uuid::new_v4());
    let meta = |d: &str| engine::Meta::service("test", "req-test", "test", d.into());
    let formats = domain::image::ImageCommand::Update(vec![
        domain::image::ImageChange::DiskFormat(Some("qcow2".into())),
        domain::image::ImageChange::ContainerFormat(Some("bare".into())),
    ]);
    let e = h.stack.engine.clone();
    e.image(&iid, formats, &ctx(), &meta("test:formats"))
        .await
        .unwrap();
    e.image(
        &iid,
        domain::image::ImageCommand::StartUpload,
        &ctx(),
        &meta("test:start"),
    )
    .await
    .unwrap();
    drop(e);
    // The process stops inside the upload step: its answer cannot be recorded.
    let Harness { stack, dir, http } = h;
    stack.stop().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let stack = loop {
        let mut o = tests::options(dir.path());
        o.sim.delay = Duration::from_millis(10);
        match tests::Stack::start(o).await {
            Ok(s) => break s,
            // The stopped agent's step still holds the store for a moment.
            Err(e) => {
                assert!(Instant::now() < deadline, "no restart: {e:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let h = Harness { stack, dir, http };
    wait_image(&h, ALICE, &image, "ACTIVE").await;
    h.wait(&id, "ACTIVE").await;
    assert!(h.show(&id).await["OS-EXT-STS:task_state"].is_null());
    let views = h.stack.engine.world().read();
    assert_eq!(
        views.image(&iid).unwrap().status,
        domain::image::ImageStatus::Active
    );
}

/// A snapshot the hypervisor fails: the task clears with a fault, the server stays
/// ACTIVE, and the image is deleted (Nova's cleanup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_snapshot_deletes_its_image() {
    let h = Harness::start(|o| {
        o.sim.fail_tasks = std::collections::HashSet::from([domain::TaskState::ImageSnapshot]);
    })
    .await;
    let id = h.create(ALICE, "fails", "1").await;
    h.wait(&id, "ACTIVE").await;
    let v = h
        .action(ALICE, &id, json!({"createImage": {"name": "f"}}), 202)
        .await;
    let image = v["image_id"].as_str().unwrap().to_string();
    wait_image(&h, ALICE, &image, "GONE").await;
    let s = h.wait(&id, "ACTIVE").await;
    assert!(s["OS-EXT-STS:task_state"].is_null());
}

/// An upload that never answers is given up by the reconciler (retry, then a fault):
/// the server is idle again and its snapshot image is deleted, not left `queued`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_snapshot_deletes_its_image() {
    let h = Harness::start(|o| {
        o.sim.stall_tasks = std::collections::HashSet::from([domain::TaskState::ImageUploading]);
        o.config.task_timeout_secs = 1;
        o.config.max_attempts = 2;
        o.reconcile_every = Duration::from_millis(200);
    })
    .await;
    let id = h.create(ALICE, "hung", "1").await;
    h.wait(&id, "ACTIVE").await;
    let v = h
        .action(ALICE, &id, json!({"createImage": {"name": "h"}}), 202)
        .await;
    let image = v["image_id"].as_str().unwrap().to_string();
    let s = h.wait(&id, "ACTIVE").await;
    assert!(s["OS-EXT-STS:task_state"].is_null());
    wait_image(&h, ALICE, &image, "GONE").await;
}
