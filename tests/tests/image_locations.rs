//! Glance's image locations end to end on the all-in-one: `show_multiple_locations`
//! (patching `/locations`: add, replace, remove, with Glance's refusals appending
//! nothing), the 2.17 location API (`POST`/`GET /v2/images/{id}/locations`, hashing in
//! the background, a wrong hash sending the image back to queued), downloads through
//! the http store, and a replay rebuild that matches.

use std::time::Duration;

use reqwest::Method as M;
use serde_json::{json, Value};
use sha2::Digest;
use tests::glance::serve_bytes;
use tests::Harness;

const ALICE: &str = "alice:p1";
const BOB: &str = "bob:p2";
const ADMIN: &str = "admin:adminproj";
/// A service caller in the images' project (the guard hides other projects' images).
const SERVICE: &str = "nova:p1:service";

/// A local web server answering `/image.raw` with `data`: that URL.
async fn serve(data: Vec<u8>) -> String {
    format!("{}/image.raw", serve_bytes("/image.raw", data).await)
}

fn payload() -> Vec<u8> {
    (0..40_000u32).map(|i| (i % 251) as u8).collect()
}

async fn create(h: &Harness) -> String {
    h.image_create(
        ALICE,
        json!({"name": "loc", "disk_format": "raw", "container_format": "bare"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_locations_as_glance_with_show_multiple_locations() {
    let data = payload();
    let url = serve(data.clone()).await;
    let h = Harness::start(|o| {
        o.image_locations.show_multiple_locations = true;
        o.image_locations.show_image_direct_url = true;
    })
    .await;
    let id = create(&h).await;
    let img = h.image_show(ALICE, &id).await;
    assert_eq!(img["locations"], json!([]));
    assert!(img.get("direct_url").is_none());

    // Refusals append nothing: a scheme the http store does not serve, a URL with
    // nothing behind it, a wrong position, a malformed location, remove by a member.
    let before = h.api_position();
    for (ops, code, msg) in [
        (
            json!([{"op": "add", "path": "/locations/-", "value": {"url": "gopher://info.cern.ch", "metadata": {}}}]),
            400,
            "Invalid location",
        ),
        (
            json!([{"op": "add", "path": "/locations/-", "value": {"url": format!("{url}.missing"), "metadata": {}}}]),
            400,
            "Invalid location",
        ),
        (
            json!([{"op": "add", "path": "/locations/x", "value": {"url": url, "metadata": {}}}]),
            400,
            "Invalid position for adding a location.",
        ),
        (
            json!([{"op": "add", "path": "/locations", "value": {"url": url, "metadata": {}}}]),
            400,
            "Invalid JSON pointer for this resource: '/locations'",
        ),
        (
            json!([{"op": "replace", "path": "/locations", "value": []}]),
            403,
            "Cannot set locations to empty list.",
        ),
    ] {
        let (c, e) = h.image_patch(ALICE, &id, ops).await;
        assert_eq!(c, code, "{e}");
        assert_eq!(e["message"], msg);
    }
    let (c, e) = h
        .image_patch(
            ALICE,
            &id,
            json!([{"op": "add", "path": "/locations/-", "value": {"url": url}}]),
        )
        .await;
    assert_eq!(c, 400, "{e}");
    assert_eq!(h.api_position(), before);

    // A location makes a queued image active, with the store's size and no hashes.
    let (c, img) = h.image_patch(
        ALICE,
        &id,
        json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {"foo": "bar"}}}]),
    )
    .await;
    assert_eq!(c, 200, "{img}");
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len() as u64);
    assert_eq!(img["os_hash_algo"], Value::Null);
    assert_eq!(
        img["locations"],
        json!([{"url": url, "metadata": {"foo": "bar"}}])
    );
    assert_eq!(img["direct_url"], url.as_str());

    // The same location again is a duplicate.
    let (c, e) = h.image_patch(
        ALICE,
        &id,
        json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {"foo": "bar"}}}]),
    )
    .await;
    assert_eq!(c, 400);
    assert_eq!(e["message"], format!("The location {url} already exists"));
    // New validation data on an active image: 409.
    let (c, e) = h.image_patch(
        ALICE,
        &id,
        json!([{"op": "add", "path": "/locations/-", "value": {"url": format!("{url}#2"), "metadata": {},
            "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "ab".repeat(64)}}}]),
    )
    .await;
    assert_eq!(c, 409, "{e}");

    // A second location; replace may change metadata only.
    let second = format!("{url}#new");
    let (c, img) = h.image_patch(
        ALICE,
        &id,
        json!([{"op": "add", "path": "/locations/-", "value": {"url": second, "metadata": {"speed": "88mph"}}}]),
    )
    .await;
    assert_eq!(c, 200, "{img}");
    assert_eq!(img["locations"].as_array().unwrap().len(), 2);
    let mut locs = img["locations"].clone();
    locs[0]["metadata"]["date"] = json!("2015-10-15");
    let (c, img) = h
        .image_patch(
            ALICE,
            &id,
            json!([{"op": "replace", "path": "/locations", "value": locs}]),
        )
        .await;
    assert_eq!(c, 200, "{img}");
    assert_eq!(img["locations"], locs);
    let before = h.api_position();
    let (c, e) = h
        .image_patch(
            ALICE,
            &id,
            json!([{"op": "replace", "path": "/locations", "value": [locs[0]]}]),
        )
        .await;
    assert_eq!(c, 400, "{e}");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .starts_with("Original locations is not empty"));
    // Removing is the admin's (Glance's delete_image_location).
    let (c, e) = h
        .image_patch(
            ALICE,
            &id,
            json!([{"op": "remove", "path": "/locations/0"}]),
        )
        .await;
    assert_eq!(c, 403, "{e}");
    assert_eq!(
        e["message"],
        "You are not authorized to complete delete_image_location action."
    );
    assert_eq!(h.api_position(), before);
    let (c, img) = h
        .image_patch(
            ADMIN,
            &id,
            json!([{"op": "remove", "path": "/locations/0"}]),
        )
        .await;
    assert_eq!(c, 200, "{img}");
    assert_eq!(img["locations"][0]["url"], second.as_str());
    assert_eq!(img["direct_url"], second.as_str());
    // The last location stays.
    let (c, e) = h
        .image_patch(
            ADMIN,
            &id,
            json!([{"op": "remove", "path": "/locations/0"}]),
        )
        .await;
    assert_eq!(c, 403, "{e}");
    assert_eq!(e["message"], "Cannot remove last location in the image.");

    // The data comes from the location (the http store).
    assert_eq!(h.image_download(ALICE, &id).await, (200, data.clone()));

    // Another project sees no locations of a public image (`get_image_location`).
    let (c, _) = h
        .image_patch(
            ADMIN,
            &id,
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
        )
        .await;
    assert_eq!(c, 200);
    let (_, other) = h
        .glance(BOB, M::GET, &format!("/v2/images/{id}"), None)
        .await;
    assert_eq!(other["locations"], json!([]), "{other}");
    assert!(other.get("direct_url").is_none());

    // Validation data on a queued image sets its hashes; a mismatch later is a 409.
    let id2 = create(&h).await;
    let vd = json!({"checksum": "1".repeat(32), "os_hash_algo": "sha512", "os_hash_value": "deadbeef".repeat(16)});
    let (c, img) = h.image_patch(
        ALICE,
        &id2,
        json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}, "validation_data": vd}}]),
    )
    .await;
    assert_eq!(c, 200, "{img}");
    assert_eq!(img["checksum"], "1".repeat(32));
    assert_eq!(img["os_hash_value"], "deadbeef".repeat(16));
    assert!(img["locations"][0].get("validation_data").is_none());
    let (c, e) = h.image_patch(
        ALICE,
        &id2,
        json!([{"op": "add", "path": "/locations/-", "value": {"url": second, "metadata": {},
            "validation_data": {"checksum": "2".repeat(32), "os_hash_algo": "sha512", "os_hash_value": "deadbeef".repeat(16)}}}]),
    )
    .await;
    assert_eq!(c, 409, "{e}");
    assert_eq!(
        e["message"],
        "checksum is already set with a different value"
    );

    // A store's own location is listed first for uploaded data.
    let id3 = create(&h).await;
    assert_eq!(h.image_upload(ALICE, &id3, vec![7u8; 1000]).await, 204);
    let img = h.image_show(ALICE, &id3).await;
    assert_eq!(img["locations"].as_array().unwrap().len(), 1);
    assert!(img["locations"][0]["url"]
        .as_str()
        .unwrap()
        .starts_with("file://"));
    assert_eq!(img["direct_url"], img["locations"][0]["url"]);

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_are_hidden_and_refused_by_default() {
    let url = serve(payload()).await;
    let h = Harness::start(|_| {}).await;
    let id = create(&h).await;
    let img = h.image_show(ALICE, &id).await;
    assert!(img.get("locations").is_none());
    assert!(img.get("direct_url").is_none());
    let before = h.api_position();
    let (c, e) = h
        .image_patch(
            ALICE,
            &id,
            json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}]),
        )
        .await;
    assert_eq!(c, 403, "{e}");
    assert_eq!(
        e["message"],
        "It's not allowed to add locations if locations are invisible."
    );
    assert_eq!(h.api_position(), before);
    // The versions advertise the 2.17 location API.
    let (_, v) = h.glance(ALICE, M::GET, "/versions", None).await;
    assert_eq!(v["versions"][0]["id"], "v2.17");
    assert_eq!(v["versions"][0]["status"], "CURRENT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_location_api_hashes_in_the_background() {
    let data = payload();
    let url = serve(data.clone()).await;
    let h = Harness::start(|o| {
        o.image_stores = vec!["fast".into(), "cheap".into()];
        o.image_locations.http_store = "web".into();
    })
    .await;
    let sha256 = hex::encode(sha2::Sha256::digest(&data));
    let sha512 = hex::encode(sha2::Sha512::digest(&data));
    // The md5 checksum: 32 hex digits (tempest compares it with Python's md5).
    let md5_like = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let post = |id: String, body: Value, token: &'static str| {
        let h = &h;
        async move {
            h.glance(
                token,
                M::POST,
                &format!("/v2/images/{id}/locations"),
                Some(body),
            )
            .await
        }
    };

    // The http store is listed read-only with several stores.
    let (_, stores) = h.glance(ALICE, M::GET, "/v2/info/stores", None).await;
    assert_eq!(
        stores["stores"][2],
        json!({"id": "web", "description": "Read-only http store of image locations", "read-only": "true"})
    );

    let id = create(&h).await;
    let before = h.api_position();
    for (body, code) in [
        (
            json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "dbc9e0f80d131e64b94913a7b40bb5"}}),
            400,
        ),
        (
            json!({"url": url, "validation_data": {"os_hash_value": sha512}}),
            400,
        ),
        (
            json!({"url": url, "validation_data": {"os_hash_algo": "sha123", "os_hash_value": sha512}}),
            400,
        ),
        (
            json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": sha256}}),
            400,
        ),
        (json!({"validation_data": {}}), 400),
        (json!({"url": "rbd://pool/image"}), 403),
    ] {
        let (c, e) = post(id.clone(), body.clone(), ALICE).await;
        assert_eq!(c, code, "{body}: {e}");
    }
    // Another project's image (visible: public): not the owner.
    let (c, e) = post(id.clone(), json!({"url": url}), BOB).await;
    assert_eq!(c, 404, "{e}");
    // Listing locations is the service's.
    let (c, e) = h
        .glance(ALICE, M::GET, &format!("/v2/images/{id}/locations"), None)
        .await;
    assert_eq!(c, 403, "{e}");
    assert_eq!(h.api_position(), before);

    // Matching validation data: importing, hashed, active.
    let (c, e) = post(
        id.clone(),
        json!({"url": url, "validation_data": {"os_hash_algo": "sha256", "os_hash_value": sha256}}),
        ALICE,
    )
    .await;
    assert_eq!(c, 202, "{e}");
    let tasks = h.wait_image_tasks(ALICE, &id, "success").await;
    assert_eq!(tasks[0]["type"], "location_import");
    let img = h.image_show(ALICE, &id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["os_hash_algo"], "sha256");
    assert_eq!(img["os_hash_value"], sha256.as_str());
    assert!(md5_like(&img["checksum"]), "{img}");
    assert_eq!(img["size"], data.len() as u64);
    assert_eq!(img["stores"], "web");
    assert!(img.get("os_glance_import_task").is_none());
    // Not queued any more: 409.
    let (c, _) = post(id.clone(), json!({"url": url}), ALICE).await;
    assert_eq!(c, 409);
    let (c, locs) = h
        .glance(SERVICE, M::GET, &format!("/v2/images/{id}/locations"), None)
        .await;
    assert_eq!(c, 200, "{locs}");
    assert_eq!(locs, json!([{"url": url, "metadata": {"store": "web"}}]));

    // A wrong hash: the task fails, the image goes back to queued without hashes.
    let id2 = create(&h).await;
    let (c, _) = post(
        id2.clone(),
        json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "beefdead".repeat(16)}}),
        ALICE,
    )
    .await;
    assert_eq!(c, 202);
    h.wait_image_tasks(ALICE, &id2, "failure").await;
    let img = h.image_show(ALICE, &id2).await;
    assert_eq!(img["status"], "queued");
    assert_eq!(img["os_hash_algo"], Value::Null);
    assert_eq!(img["checksum"], Value::Null);
    assert_eq!(img["stores"], "web");

    // No validation data: active at once, sha512 hashed in the background.
    let id3 = create(&h).await;
    let (c, _) = post(id3.clone(), json!({"url": url}), ALICE).await;
    assert_eq!(c, 202);
    let tasks = h.wait_image_tasks(ALICE, &id3, "success").await;
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    let img = h.image_show(ALICE, &id3).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"], sha512.as_str());
    assert!(md5_like(&img["checksum"]), "{img}");

    // The image can be deleted while its data is hashed.
    let (c, _) = h
        .glance(ALICE, M::DELETE, &format!("/v2/images/{id3}"), None)
        .await;
    assert_eq!(c, 204);

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_secure_hash_the_client_values_are_taken() {
    let data = payload();
    let url = serve(data.clone()).await;
    let h = Harness::start(|o| o.image_locations.do_secure_hash = false).await;
    let sha256 = hex::encode(sha2::Sha256::digest(&data));
    let id = create(&h).await;
    let (c, e) = h
        .glance(
            ALICE,
            M::POST,
            &format!("/v2/images/{id}/locations"),
            Some(json!({"url": url, "validation_data": {"os_hash_algo": "sha256", "os_hash_value": sha256}})),
        )
        .await;
    assert_eq!(c, 202, "{e}");
    h.wait_image_tasks(ALICE, &id, "success").await;
    let img = h.image_show(ALICE, &id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["os_hash_value"], sha256.as_str());
    assert_eq!(img["checksum"], Value::Null);
    assert_eq!(img["size"], data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_http_store_the_location_api_is_the_services() {
    let url = serve(payload()).await;
    let h = Harness::start(|o| {
        o.image_locations.http_store = String::new();
        o.image_locations.show_multiple_locations = true;
    })
    .await;
    let id = create(&h).await;
    let before = h.api_position();
    let (c, e) = h
        .glance(
            ALICE,
            M::POST,
            &format!("/v2/images/{id}/locations"),
            Some(json!({"url": url})),
        )
        .await;
    assert_eq!(c, 403, "{e}");
    assert_eq!(
        e["message"],
        "http store must be enabled to use location API by normal user."
    );
    let (c, e) = h
        .image_patch(
            ALICE,
            &id,
            json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}]),
        )
        .await;
    assert_eq!(c, 400, "{e}");
    assert_eq!(e["message"], "Invalid location");
    assert_eq!(h.api_position(), before);
}

/// A local HTTP server whose `/slow` sends `chunks` chunks of 64 KiB, one every 100 ms
/// (its `HEAD` tells the whole size).
async fn serve_slow(chunks: usize) -> String {
    const CHUNK: usize = 64 * 1024;
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || async move {
            let stream = futures::stream::unfold(0usize, move |n| async move {
                if n == chunks {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![1u8; CHUNK])),
                    n + 1,
                ))
            });
            axum::body::Body::from_stream(stream)
        })
        .head(move || async move {
            [(
                axum::http::header::CONTENT_LENGTH,
                (chunks * CHUNK).to_string(),
            )]
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/slow")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_hashing_ends_the_location_import() {
    let url = serve_slow(600).await;
    let h = Harness::start(|_| {}).await;
    // Without validation data the image is active at once, hashed in the background.
    let active = create(&h).await;
    let (c, _) = h
        .glance(
            ALICE,
            M::POST,
            &format!("/v2/images/{active}/locations"),
            Some(json!({"url": url})),
        )
        .await;
    assert_eq!(c, 202);
    // With validation data it is importing until the hash is checked.
    let importing = create(&h).await;
    let (c, _) = h
        .glance(
            ALICE,
            M::POST,
            &format!("/v2/images/{importing}/locations"),
            Some(json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "ab".repeat(64)}})),
        )
        .await;
    assert_eq!(c, 202);
    let img = h.image_show(ALICE, &active).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(h.image_show(ALICE, &importing).await["status"], "importing");

    let h = h.restart(|_| {}).await;
    let img = h.image_show(ALICE, &active).await;
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["os_hash_value"], Value::Null);
    assert!(img.get("os_glance_import_task").is_none());
    let img = h.image_show(ALICE, &importing).await;
    assert_eq!(img["status"], "queued", "{img}");
    assert_eq!(img["os_hash_algo"], Value::Null);
    for id in [&active, &importing] {
        let tasks = h.wait_image_tasks(ALICE, id, "failure").await;
        assert!(tasks[0]["message"]
            .as_str()
            .unwrap()
            .contains("interrupted"));
    }
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}
