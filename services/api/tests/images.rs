//! Server create against the image registry: imageRef and volume-boot images must be
//! known, visible and active, and fit the flavor; a refusal appends nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use domain::image::{ImageCommand, ImageSpec, Visibility};
use domain::{Ctx, ImageId};
use engine::Meta;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

fn ctx(project: &str) -> Ctx {
    Ctx {
        now: engine::now(),
        is_admin: false,
        user_id: "u".into(),
        project_id: project.into(),
        op_id: Uuid::new_v4(),
    }
}

/// Registers an image of `project` through the engine; `active` uploads (records) data.
async fn image(s: &Stack, project: &str, min_ram: u64, min_disk: u64, active: bool) -> String {
    let id = ImageId(Uuid::new_v4());
    let spec = ImageSpec {
        id,
        name: Some("img".into()),
        owner: project.into(),
        visibility: Visibility::Private,
        protected: false,
        disk_format: Some("raw".into()),
        container_format: Some("bare".into()),
        min_disk,
        min_ram,
        tags: BTreeSet::new(),
        properties: BTreeMap::new(),
    };
    let m = Meta::default();
    s.engine
        .image(&id, ImageCommand::Create(spec), &ctx(project), &m)
        .await
        .unwrap();
    if active {
        s.engine
            .image(&id, ImageCommand::StartUpload, &ctx(project), &m)
            .await
            .unwrap();
        s.engine
            .image(
                &id,
                ImageCommand::FinishUpload(image::store::digest(b"disk")),
                &ctx(project),
                &m,
            )
            .await
            .unwrap();
    }
    id.to_string()
}

fn server(image_ref: &str) -> Value {
    json!({"server": {"name": "a", "imageRef": image_ref, "flavorRef": "1", "networks": "none"}})
}

fn volume_server(source: &str, uuid: &str) -> Value {
    json!({"server": {"name": "bfv", "imageRef": "", "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [{"boot_index": 0, "uuid": uuid, "source_type": source,
            "destination_type": "volume", "volume_size": 1, "delete_on_termination": true}]}})
}

fn bad_request(r: &Resp) -> String {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    r.body["badRequest"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn unknown_invisible_or_inactive_images_are_400_and_append_nothing() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let queued = image(&s, "p1", 0, 0, false).await;
    let others = image(&s, "p2", 0, 0, true).await;
    let before = s.positions().await;
    let unknown = Uuid::new_v4().to_string();
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server(&unknown))
        .await;
    assert_eq!(
        bad_request(&r),
        format!("Image {unknown} could not be found.")
    );
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server(&queued))
        .await;
    assert_eq!(bad_request(&r), format!("Image {queued} is not active."));
    // Another project's private image does not exist for alice.
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server(&others))
        .await;
    assert_eq!(
        bad_request(&r),
        format!("Image {others} could not be found.")
    );
    let r = s
        .post(
            "/v2.1/servers",
            ALICE,
            Some("2.37"),
            volume_server("image", &unknown),
        )
        .await;
    assert_eq!(
        bad_request(&r),
        format!("Image {unknown} could not be found.")
    );
    assert_eq!(s.positions().await, before);
    // The owner boots from it.
    let r = s
        .post("/v2.1/servers", BOB, Some("2.37"), server(&others))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
}

#[tokio::test]
async fn a_deleted_image_cannot_be_booted() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let id = image(&s, "p1", 0, 0, true).await;
    s.engine
        .image(
            &ImageId::parse(&id).unwrap(),
            ImageCommand::Delete,
            &ctx("p1"),
            &Meta::default(),
        )
        .await
        .unwrap();
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server(&id))
        .await;
    assert_eq!(bad_request(&r), format!("Image {id} could not be found."));
}

#[tokio::test]
async fn the_flavor_must_fit_the_image() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let big_ram = image(&s, "p1", 1024, 0, true).await;
    let big_disk = image(&s, "p1", 0, 20, true).await;
    let before = s.positions().await;
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server(&big_ram))
        .await;
    assert_eq!(
        bad_request(&r),
        "Flavor's memory is too small for requested image."
    );
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server(&big_disk))
        .await;
    assert_eq!(
        bad_request(&r),
        "Flavor's disk is too small for requested image."
    );
    assert_eq!(s.positions().await, before);
    // A volume root is not limited by the flavor's disk.
    let r = s
        .post(
            "/v2.1/servers",
            ALICE,
            Some("2.37"),
            volume_server("image", &big_disk),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
}

#[tokio::test]
async fn volume_style_boots_as_the_cli_sends_them() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    for (source, uuid) in [
        ("image", IMAGE.to_string()),
        ("volume", Uuid::new_v4().to_string()),
    ] {
        let r = s
            .post(
                "/v2.1/servers",
                ALICE,
                Some("2.37"),
                volume_server(source, &uuid),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{source}: {:?}", r.body);
        let id = r.body["server"]["id"].as_str().unwrap().to_string();
        let r = s
            .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.37"))
            .await;
        assert_eq!(r.body["server"]["image"], json!(""), "{source}");
    }
    // An image boot shows the image with a link to it.
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server(IMAGE))
        .await;
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.37"))
        .await;
    assert_eq!(r.body["server"]["image"]["id"], IMAGE);
    assert!(r.body["server"]["image"]["links"][0]["href"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/images/{IMAGE}")));
}
