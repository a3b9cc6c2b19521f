//! Images end to end on the all-in-one: the image API beside the compute API, a server
//! booted from an uploaded image, a restart that keeps images and their files, and a
//! replay rebuild that matches with images in the log.

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:p1";

async fn glance(h: &Harness, method: M, path: &str, body: Option<Value>) -> (u16, Value) {
    h.glance(ALICE, method, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_boot_restart_and_replay_with_images() {
    let h = Harness::start(|_| {}).await;
    let (code, img) = glance(
        &h,
        M::POST,
        "/v2/images",
        Some(json!({"name": "mine", "disk_format": "raw", "container_format": "bare"})),
    )
    .await;
    assert_eq!(code, 201, "{img}");
    let id = img["id"].as_str().unwrap().to_string();

    // Not active yet: the compute API refuses it.
    let body =
        json!({"server": {"name": "s", "imageRef": id, "flavorRef": "1", "networks": "none"}});
    let (code, r) = h.req(ALICE, M::POST, "/servers", Some(body.clone())).await;
    assert_eq!(code, 400, "{r}");
    assert_eq!(
        r["badRequest"]["message"],
        format!("Image {id} is not active.").as_str()
    );

    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(h.image_upload(ALICE, &id, payload.clone()).await, 204);
    let (_, shown) = glance(&h, M::GET, &format!("/v2/images/{id}"), None).await;
    assert_eq!(shown["status"], "active");

    let (code, r) = h.req(ALICE, M::POST, "/servers", Some(body)).await;
    assert_eq!(code, 202, "{r}");
    let server = r["server"]["id"].as_str().unwrap().to_string();
    let s = h.wait(&server, "ACTIVE").await;
    assert_eq!(s["image"]["id"], id.as_str());

    // A restart keeps the image, its file and the default image.
    let h = h.restart(|_| {}).await;
    let (code, again) = glance(&h, M::GET, &format!("/v2/images/{id}"), None).await;
    assert_eq!(code, 200);
    assert_eq!(again, shown);
    assert_eq!(h.image_download(ALICE, &id).await.1, payload);
    let (_, list) = glance(&h, M::GET, "/v2/images?name=cirros", None).await;
    assert_eq!(list["images"][0]["status"], "active");
    // The default image was registered once, not again at the restart.
    let cirros = domain::ImageId::parse("70a599e0-31e7-49b7-b260-868f441e862b").unwrap();
    let seq = h
        .stack
        .engine
        .log()
        .last_subject_seq(&engine::images::image_subject(&cirros))
        .await
        .unwrap();
    assert_eq!(seq, 3, "created, upload started, upload finished");
    let (code, _) = glance(&h, M::DELETE, &format!("/v2/images/{id}"), None).await;
    assert_eq!(code, 204);

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
    let store = projections::ProjectionStore::open(&dir.path().join("projections.redb")).unwrap();
    let views = store.load().unwrap();
    assert_eq!(views.images().len(), 2);
    assert!(views.image(&domain::ImageId::parse(&id).unwrap()).is_none());
    assert!(views.image(&cirros).is_some());
}

async fn glance_as(
    h: &Harness,
    token: &str,
    method: M,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    h.glance(token, method, path, body).await
}

/// Tags, members and `os_hidden` are events: a restart and a replay rebuild give back
/// the same images, memberships included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_members_and_hidden_survive_restart_and_replay() {
    const BOB: &str = "bob:p2";
    let h = Harness::start(|_| {}).await;
    let (code, img) = glance(
        &h,
        M::POST,
        "/v2/images",
        Some(json!({"name": "shared", "visibility": "shared", "os_hidden": true})),
    )
    .await;
    assert_eq!(code, 201, "{img}");
    let id = img["id"].as_str().unwrap().to_string();
    let (code, _) = glance(&h, M::PUT, &format!("/v2/images/{id}/tags/blue"), None).await;
    assert_eq!(code, 204);
    let (code, m) = glance(
        &h,
        M::POST,
        &format!("/v2/images/{id}/members"),
        Some(json!({"member": "p2"})),
    )
    .await;
    assert_eq!(code, 200, "{m}");
    let (code, m) = glance_as(
        &h,
        BOB,
        M::PUT,
        &format!("/v2/images/{id}/members/p2"),
        Some(json!({"status": "accepted"})),
    )
    .await;
    assert_eq!(code, 200, "{m}");
    let (_, shown) = glance_as(&h, BOB, M::GET, &format!("/v2/images/{id}"), None).await;
    assert_eq!(shown["tags"], json!(["blue"]));
    assert_eq!(shown["os_hidden"], true);
    let (_, members) = glance(&h, M::GET, &format!("/v2/images/{id}/members"), None).await;

    let h = h.restart(|_| {}).await;
    let (_, again) = glance_as(&h, BOB, M::GET, &format!("/v2/images/{id}"), None).await;
    assert_eq!(again, shown);
    let (_, again) = glance(&h, M::GET, &format!("/v2/images/{id}/members"), None).await;
    assert_eq!(again, members);
    let (_, listed) = glance_as(&h, BOB, M::GET, "/v2/images?os_hidden=true", None).await;
    assert_eq!(listed["images"][0]["id"], id.as_str());

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
    let store = projections::ProjectionStore::open(&dir.path().join("projections.redb")).unwrap();
    let views = store.load().unwrap();
    let img = views
        .image(&domain::ImageId::parse(&id).unwrap())
        .unwrap()
        .clone();
    assert!(img.hidden);
    assert_eq!(
        img.members.get("p2").map(|m| m.status),
        Some(domain::image::MemberStatus::Accepted)
    );
}
