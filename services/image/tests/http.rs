//! The image API over real loopback HTTP: an embedded log in a tempdir, the projector,
//! the engine, the default image bootstrap and the image router on 127.0.0.1:0.

mod common;

use common::*;
use image::ImageStore;
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha512;
use std::time::Duration;
fn md5_hex(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

fn sha512_hex(b: &[u8]) -> String {
    hex::encode(Sha512::digest(b))
}

/// Deterministic pseudo-random bytes.
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

#[tokio::test]
async fn versions_are_listed_with_v2_current() {
    let g = start(1 << 20).await;
    let r = g.send(g.http.get(format!("{}/", g.base))).await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    let v = r.json();
    let current: Vec<&Value> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["status"] == "CURRENT")
        .collect();
    assert_eq!(current.len(), 1);
    assert!(current[0]["id"].as_str().unwrap().starts_with("v2."));
    assert_eq!(
        current[0]["links"][0]["href"],
        format!("{}/v2/", g.base).as_str()
    );
    let r = g.send(g.http.get(format!("{}/versions", g.base))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), v);
    assert!(r.headers["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req-"));
}

#[tokio::test]
async fn the_default_cirros_image_is_public_active_and_downloadable() {
    let g = start(1 << 20).await;
    let r = g.get("/v2/images?name=cirros", BOB).await;
    assert_eq!(r.status, StatusCode::OK);
    let imgs = r.json()["images"].as_array().unwrap().clone();
    assert_eq!(imgs.len(), 1);
    let i = &imgs[0];
    assert_eq!(i["id"], CIRROS);
    assert_eq!(i["status"], "active");
    assert_eq!(i["visibility"], "public");
    assert_eq!(i["disk_format"], "qcow2");
    assert_eq!(i["container_format"], "bare");
    let r = g.get(&format!("/v2/images/{CIRROS}/file"), BOB).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.bytes[..4], b"QFI\xfb", "a qcow2 header");
    assert_eq!(i["size"], r.bytes.len() as u64);
    assert_eq!(i["checksum"], md5_hex(&r.bytes).as_str());
    assert_eq!(i["os_hash_value"], sha512_hex(&r.bytes).as_str());
    // Bootstrapping again changes nothing.
    let before = g.api_position().await;
    let store = ImageStore::open(g.dir.path().join("images")).unwrap();
    image::bootstrap::ensure_default_images(&g.engine, &store)
        .await
        .unwrap();
    assert_eq!(g.api_position().await, before);
}

#[tokio::test]
async fn create_upload_download_round_trip_with_checksums() {
    let g = start(4 << 20).await;
    let r = g
        .post(
            ALICE,
            json!({"name": "web", "disk_format": "raw", "container_format": "bare",
                   "min_disk": 1, "min_ram": 128, "tags": ["a", "b"], "os_distro": "cirros"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let img = r.json();
    let id = img["id"].as_str().unwrap().to_string();
    assert!(r.headers["location"]
        .to_str()
        .unwrap()
        .ends_with(&format!("/v2/images/{id}")));
    assert_eq!(img["status"], "queued");
    assert_eq!(img["owner"], "p1");
    assert_eq!(img["visibility"], "shared");
    assert_eq!(img["os_distro"], "cirros");
    assert_eq!(img["tags"], json!(["a", "b"]));
    assert_eq!(img["self"], format!("/v2/images/{id}").as_str());
    assert_eq!(img["file"], format!("/v2/images/{id}/file").as_str());
    assert_eq!(img["schema"], "/v2/schemas/image");
    for k in [
        "checksum",
        "size",
        "os_hash_value",
        "os_hash_algo",
        "virtual_size",
    ] {
        assert!(img[k].is_null(), "{k}");
    }
    // No data yet: 204.
    let r = g.get(&format!("/v2/images/{id}/file"), ALICE).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let payload = data(300 * 1024 + 17, 7);
    let r = g.upload(&id, ALICE, payload.clone()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let img = g.get(&format!("/v2/images/{id}"), ALICE).await.json();
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], payload.len() as u64);
    assert_eq!(img["checksum"], md5_hex(&payload).as_str());
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"], sha512_hex(&payload).as_str());
    let r = g.get(&format!("/v2/images/{id}/file"), ALICE).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, payload);
    assert_eq!(
        r.headers["content-md5"].to_str().unwrap(),
        md5_hex(&payload)
    );
    // The file is named after the image; no temp file is left.
    assert_eq!(g.files(), {
        let mut v = vec![CIRROS.to_string(), id.clone()];
        v.sort();
        v
    });
    // Only queued images take data.
    let before = g.api_position().await;
    let r = g.upload(&id, ALICE, b"again".to_vec()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["code"], "409 Conflict");
    assert_eq!(g.api_position().await, before);
    assert_eq!(
        g.get(&format!("/v2/images/{id}/file"), ALICE).await.bytes,
        payload
    );
}

#[tokio::test]
async fn checksums_of_a_known_vector() {
    let g = start(1 << 20).await;
    let id = g.create(ALICE, "abc", "private").await;
    assert_eq!(
        g.upload(&id, ALICE, b"abc".to_vec()).await.status,
        StatusCode::NO_CONTENT
    );
    let img = g.get(&format!("/v2/images/{id}"), ALICE).await.json();
    // RFC 1321 and FIPS 180-2 test vectors for "abc".
    assert_eq!(img["checksum"], "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        img["os_hash_value"],
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
    );
    assert_eq!(img["size"], 3);
}

#[tokio::test]
async fn unknown_images_are_404_everywhere() {
    let g = start(1 << 20).await;
    let before = g.api_position().await;
    for id in ["4d1b2c7a-1111-4222-8333-944445555666", "not-a-uuid"] {
        assert_eq!(
            g.get(&format!("/v2/images/{id}"), ALICE).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            g.get(&format!("/v2/images/{id}/file"), ALICE).await.status,
            StatusCode::NOT_FOUND
        );
        let r = g.upload(id, ALICE, b"x".to_vec()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json()["title"], "Not Found");
        assert_eq!(g.delete(id, ALICE).await.status, StatusCode::NOT_FOUND);
        assert_eq!(
            g.patch(
                id,
                ALICE,
                json!([{"op": "replace", "path": "/name", "value": "n"}])
            )
            .await
            .status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        g.get("/v2/nothing", ALICE).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(g.api_position().await, before);
    // No token: 401.
    let r = g.send(g.http.get(format!("{}/v2/images", g.base))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Regression (schemathesis): invalid UTF-8 in a percent-encoded image id was answered
/// by axum's `text/plain` 400; it is a Glance-shaped JSON 400 and appends nothing.
#[tokio::test]
async fn unreadable_path_parameters_get_json_400_and_append_nothing() {
    let g = start(1 << 20).await;
    let before = g.api_position().await;
    for id in ["%FF", "%C3%28", "ok%FF"] {
        for r in [
            g.get(&format!("/v2/images/{id}"), ALICE).await,
            g.get(&format!("/v2/images/{id}/file"), ALICE).await,
            g.upload(id, ALICE, b"x".to_vec()).await,
            g.delete(id, ALICE).await,
            g.patch(
                id,
                ALICE,
                json!([{"op": "replace", "path": "/name", "value": "n"}]),
            )
            .await,
        ] {
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert_eq!(r.headers["content-type"], "application/json");
            assert_eq!(r.json()["code"], "400 Bad Request");
            assert!(r.headers.contains_key("x-openstack-request-id"));
        }
    }
    assert_eq!(g.api_position().await, before);
}

/// Every route of the table answers (no 405, no fallback 404), and the other methods
/// of a routed path are Glance-shaped 405s.
#[tokio::test]
async fn every_route_of_the_table_is_served_and_nothing_else() {
    let g = start(1 << 20).await;
    let table = image::route_table();
    let concrete = |t: &str| {
        t.replace("{id}", "4d1b2c7a-1111-4222-8333-944445555666")
            .replace("{kind}", "namespace")
    };
    let mut seen = std::collections::BTreeSet::new();
    for (method, path) in &table {
        assert!(
            seen.insert((method.to_string(), *path)),
            "{method} {path} twice"
        );
        let r = g.send(g.rb(method.clone(), &concrete(path), ALICE)).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if r.status == StatusCode::NOT_FOUND {
            assert_ne!(
                r.json()["message"],
                "The resource could not be found.",
                "{method} {path}"
            );
        }
    }
    for (_, path) in &table {
        for other in [Method::DELETE, Method::PUT, Method::PATCH, Method::POST] {
            if table.iter().any(|(m, p)| *m == other && p == path) {
                continue;
            }
            let r = g.send(g.rb(other.clone(), &concrete(path), ALICE)).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{other} {path}");
            assert_eq!(r.json()["code"], "405 Method Not Allowed");
        }
    }
}

#[tokio::test]
async fn visibility_across_projects() {
    let g = start(1 << 20).await;
    let private = g.create(ALICE, "mine", "private").await;
    let shared = g.create(ALICE, "shared-default", "shared").await;
    let ids = |r: &Resp| -> Vec<String> {
        r.json()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let alice = ids(&g.get("/v2/images", ALICE).await);
    assert!(
        alice.contains(&private) && alice.contains(&shared) && alice.contains(&CIRROS.to_string())
    );
    let bob = ids(&g.get("/v2/images", BOB).await);
    assert_eq!(bob, vec![CIRROS.to_string()]);
    let admin = ids(&g.get("/v2/images", ADMIN).await);
    assert!(admin.contains(&private));
    // Another project's private image is a 404, never a 403, for every verb.
    let before = g.api_position().await;
    assert_eq!(
        g.get(&format!("/v2/images/{private}"), BOB).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        g.upload(&private, BOB, b"x".to_vec()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(g.delete(&private, BOB).await.status, StatusCode::NOT_FOUND);
    // Only admins make public images.
    let r = g
        .post(ALICE, json!({"name": "pub", "visibility": "public"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = g
        .patch(
            &private,
            ALICE,
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A public image is read-only to other projects.
    assert_eq!(g.delete(CIRROS, BOB).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        g.patch(
            CIRROS,
            BOB,
            json!([{"op": "replace", "path": "/name", "value": "mine"}])
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(g.api_position().await, before);
    // The admin's public image is visible to everyone.
    let public = g.create(ADMIN, "pub", "public").await;
    assert_eq!(
        g.get(&format!("/v2/images/{public}"), BOB).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_appends_nothing() {
    let g = start(1 << 20).await;
    let id = g.create(ALICE, "x", "private").await;
    let before = g.api_position().await;
    let raw = g
        .send(
            g.rb(Method::POST, "/v2/images", ALICE)
                .header("Content-Type", "application/json")
                .body("{\"name\": "),
        )
        .await;
    assert_eq!(raw.status, StatusCode::BAD_REQUEST);
    assert_eq!(raw.json()["code"], "400 Bad Request");
    let cases = [
        (json!(["not", "an", "object"]), StatusCode::BAD_REQUEST),
        (json!({"name": 5}), StatusCode::BAD_REQUEST),
        (json!({"disk_format": "floppy"}), StatusCode::BAD_REQUEST),
        (
            json!({"container_format": "crate"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"visibility": "everyone"}), StatusCode::BAD_REQUEST),
        (json!({"min_ram": -1}), StatusCode::BAD_REQUEST),
        (json!({"tags": "a"}), StatusCode::BAD_REQUEST),
        (json!({"id": "nope"}), StatusCode::BAD_REQUEST),
        (json!({"os_distro": 1}), StatusCode::BAD_REQUEST),
        (json!({"status": "active"}), StatusCode::FORBIDDEN),
        (json!({"size": 1}), StatusCode::FORBIDDEN),
        (json!({"self": "x"}), StatusCode::FORBIDDEN),
        (json!({"id": id}), StatusCode::CONFLICT),
    ];
    for (body, want) in cases {
        let r = g.post(ALICE, body.clone()).await;
        assert_eq!(r.status, want, "{body}: {:?}", r.json());
        assert!(r.json()["message"].is_string());
    }
    // PATCH: wrong media type, malformed ops, read-only attributes, missing properties.
    let r = g
        .send(
            g.rb(Method::PATCH, &format!("/v2/images/{id}"), ALICE)
                .json(&json!([{"op": "replace", "path": "/name", "value": "n"}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let patches = [
        (json!({"op": "replace"}), StatusCode::BAD_REQUEST),
        (
            json!([{"op": "move", "path": "/name", "value": "n"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/name"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/a/b", "value": "n"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "remove", "path": "/name"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "remove", "path": "/nope"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "replace", "path": "/nope", "value": "x"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "replace", "path": "/name", "value": "ok"}, {"op": "remove", "path": "/nope"}]),
            StatusCode::CONFLICT,
        ),
    ];
    for (body, want) in patches {
        let r = g.patch(&id, ALICE, body.clone()).await;
        assert_eq!(r.status, want, "{body}: {:?}", r.json());
    }
    // Upload of a non-octet-stream body.
    let r = g
        .send(
            g.rb(Method::PUT, &format!("/v2/images/{id}/file"), ALICE)
                .header("Content-Type", "application/json")
                .body("{}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(g.api_position().await, before);
    let img = g.get(&format!("/v2/images/{id}"), ALICE).await.json();
    assert_eq!(img["name"], "x");
    assert_eq!(img["status"], "queued");
}

#[tokio::test]
async fn patch_replaces_adds_and_removes() {
    let g = start(1 << 20).await;
    let id = g.create(ALICE, "old", "private").await;
    let r = g
        .patch(
            &id,
            ALICE,
            json!([
                {"op": "replace", "path": "/name", "value": "new"},
                {"op": "add", "path": "/os_distro", "value": "cirros"},
                {"op": "add", "path": "/hw~1disk_bus", "value": "virtio"},
                {"op": "replace", "path": "/min_ram", "value": 256},
                {"op": "add", "path": "/tags", "value": ["x"]},
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let img = r.json();
    assert_eq!(img["name"], "new");
    assert_eq!(img["os_distro"], "cirros");
    assert_eq!(img["hw/disk_bus"], "virtio");
    assert_eq!(img["min_ram"], 256);
    assert_eq!(img["tags"], json!(["x"]));
    let r = g
        .patch(
            &id,
            ALICE,
            json!([
                {"op": "replace", "path": "/os_distro", "value": "ubuntu"},
                {"op": "remove", "path": "/hw~1disk_bus"},
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let img = g.get(&format!("/v2/images/{id}"), ALICE).await.json();
    assert_eq!(img["os_distro"], "ubuntu");
    assert!(img.get("hw/disk_bus").is_none());
    // Property filters in lists, as Glance.
    let r = g.get("/v2/images?os_distro=ubuntu", ALICE).await.json();
    assert_eq!(r["images"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused() {
    let g = start(1024).await;
    let id = g.create(ALICE, "big", "private").await;
    // Declared too large: refused before anything is appended.
    let before = g.api_position().await;
    let r = g.upload(&id, ALICE, vec![7u8; 2048]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(g.api_position().await, before);
    // Streamed without a length: cut at the limit, the image back to queued, no file.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..4).map(|_| Ok(vec![1u8; 512])).collect();
    let r = g
        .send(
            g.rb(Method::PUT, &format!("/v2/images/{id}/file"), ALICE)
                .header("Content-Type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let img = g.get(&format!("/v2/images/{id}"), ALICE).await.json();
    assert_eq!(img["status"], "queued");
    assert!(img["size"].is_null());
    assert_eq!(g.files(), vec![CIRROS.to_string()]);
    // At the limit is fine.
    let r = g.upload(&id, ALICE, vec![3u8; 1024]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), ALICE).await.json()["size"],
        1024
    );
}

#[tokio::test]
async fn a_client_that_goes_away_mid_upload_leaves_the_image_queued() {
    let g = start(1 << 20).await;
    let id = g.create(ALICE, "cut", "private").await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![1u8; 4096]),
        Err(std::io::Error::other("client gives up")),
    ];
    let sent = g
        .rb(Method::PUT, &format!("/v2/images/{id}/file"), ALICE)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    assert!(sent.is_err(), "the client aborted its own request");
    // The server notices the broken body and returns the image to `queued`.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let img = g.get(&format!("/v2/images/{id}"), ALICE).await.json();
        if img["status"] == "queued" && g.files() == vec![CIRROS.to_string()] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {img}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It takes data again.
    let r = g.upload(&id, ALICE, b"whole".to_vec()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn delete_removes_the_record_and_the_file() {
    let g = start(1 << 20).await;
    let id = g.create(ALICE, "gone", "private").await;
    g.upload(&id, ALICE, b"data".to_vec()).await;
    assert!(g.files().contains(&id));
    let r = g.delete(&id, ALICE).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!g.files().contains(&id));
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), ALICE).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(g.delete(&id, ALICE).await.status, StatusCode::NOT_FOUND);
    let list = g.get("/v2/images", ADMIN).await.json();
    assert!(list["images"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["id"] != id.as_str()));
    // A protected image is not deleted.
    let p = g.create(ALICE, "keep", "private").await;
    g.patch(
        &p,
        ALICE,
        json!([{"op": "replace", "path": "/protected", "value": true}]),
    )
    .await;
    assert_eq!(g.delete(&p, ALICE).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        g.get(&format!("/v2/images/{p}"), ALICE).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn list_filters_and_pages_with_next_links() {
    let g = start(1 << 20).await;
    let mut mine = Vec::new();
    for n in 0..5 {
        mine.push(g.create(ALICE, &format!("img-{n}"), "private").await);
    }
    g.upload(&mine[0], ALICE, b"x".to_vec()).await;
    // Follow `next` from a page of 2: every image once, newest first.
    let mut seen = Vec::new();
    let mut path = "/v2/images?limit=2".to_string();
    loop {
        let r = g.get(&path, ALICE).await;
        assert_eq!(r.status, StatusCode::OK);
        let body = r.json();
        assert!(body["images"].as_array().unwrap().len() <= 2);
        for i in body["images"].as_array().unwrap() {
            seen.push(i["id"].as_str().unwrap().to_string());
        }
        match body["next"].as_str() {
            Some(n) => path = n.to_string(),
            None => break,
        }
    }
    let mut want = mine.clone();
    want.reverse();
    want.push(CIRROS.to_string());
    assert_eq!(seen, want);
    let by_name = g.get("/v2/images?name=img-3", ALICE).await.json();
    assert_eq!(by_name["images"].as_array().unwrap().len(), 1);
    assert_eq!(by_name["images"][0]["id"], mine[3].as_str());
    let queued = g.get("/v2/images?status=queued", ALICE).await.json();
    assert_eq!(queued["images"].as_array().unwrap().len(), 4);
    let public = g.get("/v2/images?visibility=public", ALICE).await.json();
    assert_eq!(public["images"].as_array().unwrap().len(), 1);
    let r = g
        .get(
            "/v2/images?marker=4d1b2c7a-1111-4222-8333-944445555666",
            ALICE,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        g.get("/v2/images?limit=x", ALICE).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        g.get("/v2/images?visibility=x", ALICE).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn interrupted_uploads_leave_temp_files_that_are_cleaned_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("abc.123.tmp"), b"half").unwrap();
    std::fs::write(dir.path().join(CIRROS), b"kept").unwrap();
    std::fs::create_dir_all(dir.path().join("staging")).unwrap();
    std::fs::write(dir.path().join("staging").join("def.456.tmp"), b"half").unwrap();
    let _ = ImageStore::open(dir.path()).unwrap();
    let names = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(dir.path()),
        vec![CIRROS.to_string(), "staging".into()]
    );
    assert!(names(&dir.path().join("staging")).is_empty());
}

/// The ids of a list answer, in order.
fn ids(body: &Value) -> Vec<String> {
    body["images"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {body}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn list_filters_take_glances_operators() {
    let glance = start(1 << 20).await;
    // Borrowed by the async closures below.
    let g = &glance;
    let mk = |name: &str, disk: &str, tags: Value| json!({"name": name, "disk_format": disk, "container_format": "bare", "tags": tags});
    let mut made = Vec::new();
    for body in [
        mk("glass, darkly", "raw", json!(["a", "b"])),
        mk("share me", "ami", json!(["a"])),
        mk("plain", "raw", json!([])),
    ] {
        let r = g.post(ALICE, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        made.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let (glass, share, plain) = (&made[0], &made[1], &made[2]);
    g.upload(glass, ALICE, b"abc".to_vec()).await;
    g.upload(share, ALICE, b"abcde".to_vec()).await;
    let list = |q: String| async move {
        let r = g.get(&format!("/v2/images?{q}"), ALICE).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {:?}", r.json());
        let mut v = ids(&r.json());
        v.sort();
        v
    };
    let sorted = |v: &[&String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };

    // What `openstack server list` asks to name its servers' images.
    assert_eq!(
        list(format!(
            "id=in:{glass},{CIRROS},4d1b2c7a-1111-4222-8333-944445555666"
        ))
        .await,
        sorted(&[glass, &CIRROS.to_string()])
    );
    assert_eq!(list(format!("id=eq:{plain}")).await, sorted(&[plain]));
    // A name with a comma is quoted (the api-ref's example).
    assert_eq!(
        list("name=in:%22glass,%20darkly%22,share%20me".into()).await,
        sorted(&[glass, share])
    );
    assert_eq!(list("name=in:glass,share".into()).await, sorted(&[]));
    assert_eq!(
        list("status=in:queued,saving".into()).await,
        sorted(&[plain])
    );
    assert_eq!(
        list("disk_format=in:raw&container_format=eq:bare".into()).await,
        sorted(&[glass, plain])
    );
    // Operators are read on those five attributes only.
    assert_eq!(list("owner=in:p1".into()).await, sorted(&[]));
    assert_eq!(
        list("owner=p1".into()).await,
        sorted(&[glass, share, plain])
    );
    // Sizes: ranges and equality; an image without data has no size.
    assert_eq!(
        list("size_min=4&size_max=10".into()).await,
        sorted(&[share])
    );
    assert_eq!(list("size=3".into()).await, sorted(&[glass]));
    assert_eq!(list("size_max=5".into()).await, sorted(&[glass, share]));
    // Tags: all of them.
    assert_eq!(list("tag=a&tag=b".into()).await, sorted(&[glass]));
    assert_eq!(list("tag=a".into()).await, sorted(&[glass, share]));
    assert_eq!(list("protected=true".into()).await, sorted(&[]));
    assert_eq!(list("os_hidden=true".into()).await, sorted(&[]));
    // Times, at the precision images show.
    let shown = g.get(&format!("/v2/images/{plain}"), ALICE).await.json();
    let created = shown["created_at"].as_str().unwrap().to_string();
    let updated = shown["updated_at"].as_str().unwrap().to_string();
    assert!(list(format!("created_at=eq:{created}"))
        .await
        .contains(plain));
    assert!(list(format!("created_at={created}")).await.contains(plain));
    assert!(!list(format!("created_at=neq:{created}"))
        .await
        .contains(plain));
    assert!(list(format!("created_at=lte:{created}"))
        .await
        .contains(plain));
    assert!(list(format!("updated_at=gte:{updated}"))
        .await
        .contains(plain));
    assert_eq!(
        list("created_at=gt:2999-01-01T00:00:00Z".into()).await,
        sorted(&[])
    );
    assert_eq!(list("updated_at=lt:2000-01-01".into()).await, sorted(&[]));
    assert_eq!(
        list("created_at=gte:2000-01-01T00:00:00%2B01:00&owner=p1".into()).await,
        sorted(&[glass, share, plain])
    );

    // Pages keep the filters: `first` and `next` repeat the query.
    let q = format!("id=in:{glass},{share}&limit=1");
    let r = g.get(&format!("/v2/images?{q}"), ALICE).await.json();
    assert_eq!(
        r["first"],
        format!("/v2/images?id=in%3A{glass}%2C{share}&limit=1").as_str()
    );
    let mut seen = ids(&r);
    let next = r["next"].as_str().expect("a next link").to_string();
    let r = g.get(&next, ALICE).await.json();
    seen.extend(ids(&r));
    assert!(r.get("next").is_none(), "{r}");
    seen.sort();
    assert_eq!(seen, sorted(&[glass, share]));

    // Glance's refusals.
    for (q, message) in [
        ("name=gt:x", "Unable to filter by unknown operator 'gt'."),
        ("id=in:%22a", "Invalid filter value \"a. The quote is not closed."),
        (
            "created_at=in:2016-01-01",
            "Unable to filter on a unknown operator.",
        ),
        (
            "created_at=gt:yesterday",
            "Bad \"created_at\" query filter format. Use ISO 8601 DateTime notation.",
        ),
        (
            "size_min=x",
            "Unable to filter on a range with a non-numeric value.",
        ),
        ("visibility=in:public", "Invalid visibility value: in:public"),
        (
            "sort_key=owner",
            "Invalid sort key: owner. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at.",
        ),
    ] {
        let r = g.get(&format!("/v2/images?{q}"), ALICE).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(r.headers["x-openstack-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req-"));
        let body = r.json();
        assert_eq!(body["code"], "400 Bad Request", "{q}");
        assert_eq!(body["message"], message, "{q}");
    }
}

#[tokio::test]
async fn list_sorts_on_several_keys() {
    let glance = start(1 << 20).await;
    // Borrowed by the async closures below.
    let g = &glance;
    let mut made = Vec::new();
    for (name, disk) in [("b", "raw"), ("a", "raw"), ("c", "qcow2")] {
        let r = g
            .post(
                ALICE,
                json!({"name": name, "disk_format": disk, "container_format": "bare"}),
            )
            .await;
        made.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let names = |q: &'static str| async move {
        let r = g.get(&format!("/v2/images?owner=p1&{q}"), ALICE).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {:?}", r.json());
        r.json()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("sort=disk_format:asc,name:desc").await,
        ["c", "b", "a"]
    );
    assert_eq!(
        names("sort_key=disk_format&sort_key=name&sort_dir=desc&sort_dir=asc").await,
        ["a", "b", "c"]
    );
    assert_eq!(names("sort_key=name&sort_dir=asc").await, ["a", "b", "c"]);
    assert_eq!(names("sort=name").await, ["c", "b", "a"]);
}

const PATCH20: &str = "application/openstack-images-v2.0-json-patch";

async fn patch_as(g: &Glance, id: &str, token: &str, media: &str, body: Value) -> Resp {
    g.send(
        g.rb(Method::PATCH, &format!("/v2/images/{id}"), token)
            .header("Content-Type", media)
            .body(body.to_string()),
    )
    .await
}

fn message(r: &Resp) -> String {
    r.json()["message"].as_str().unwrap_or_default().to_string()
}

/// Tempest's image client sends the v2.0 patch media type with draft-4 operations
/// (`{"replace": "/name", "value": ..}`); v2.0's `add` refuses what exists.
#[tokio::test]
async fn both_patch_media_types_as_glance_reads_them() {
    let g = start(1 << 20).await;
    let id = g.create(ALICE, "old", "private").await;
    let r = patch_as(
        &g,
        &id,
        ALICE,
        PATCH20,
        json!([{"replace": "/name", "value": "new"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.json()["name"], "new");
    let r = patch_as(
        &g,
        &id,
        ALICE,
        PATCH20,
        json!([{"add": "/os_distro", "value": "cirros"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let before = g.api_position().await;
    for (body, status, msg) in [
        (
            json!([{"add": "/os_distro", "value": "x"}]),
            StatusCode::CONFLICT,
            "Property os_distro already present.",
        ),
        (
            json!([{"add": "/name", "value": "x"}]),
            StatusCode::CONFLICT,
            "Property name already present.",
        ),
        (
            json!([{"add": "/a", "value": "1"}, {"add": "/a", "value": "2"}]),
            StatusCode::CONFLICT,
            "Property a already present.",
        ),
        (
            json!([{"add": "/a", "remove": "/b", "value": "1"}]),
            StatusCode::BAD_REQUEST,
            "Operation objects must contain only one member named \"add\", \"remove\", or \"replace\".",
        ),
        (
            json!([{"op": "add", "path": "/a", "value": "1"}]),
            StatusCode::BAD_REQUEST,
            "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
        ),
    ] {
        let r = patch_as(&g, &id, ALICE, PATCH20, body.clone()).await;
        assert_eq!((r.status, message(&r).as_str()), (status, msg), "{body}");
    }
    // v2.1: `add` overwrites; Glance's messages for malformed operations.
    let r = patch_as(
        &g,
        &id,
        ALICE,
        PATCH,
        json!([{"op": "add", "path": "/os_distro", "value": "x"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["os_distro"], "x");
    let before = before.max(g.api_position().await);
    for (body, status, msg) in [
        (
            json!([{"path": "/a", "value": "1"}]),
            StatusCode::BAD_REQUEST,
            "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.",
        ),
        (
            json!([{"op": "move", "path": "/a", "value": "1"}]),
            StatusCode::BAD_REQUEST,
            "Invalid operation: `move`. It must be one of the following: add, remove, replace.",
        ),
        (
            json!([{"op": "add", "path": "/a"}]),
            StatusCode::BAD_REQUEST,
            "Operation \"add\" requires a member named \"value\".",
        ),
        (
            json!([{"op": "add", "path": "a", "value": "1"}]),
            StatusCode::BAD_REQUEST,
            "Pointer `a` does not start with \"/\".",
        ),
        (
            json!([{"op": "add", "path": "/a//b", "value": "1"}]),
            StatusCode::BAD_REQUEST,
            "Pointer `/a//b` contains adjacent \"/\".",
        ),
        (
            json!([{"op": "add", "path": "/a/", "value": "1"}]),
            StatusCode::BAD_REQUEST,
            "Pointer `/a/` end with \"/\".",
        ),
        (
            json!([{"op": "add", "path": "/a~2", "value": "1"}]),
            StatusCode::BAD_REQUEST,
            "Pointer `/a~2` contains \"~\" not part of a recognized escape sequence.",
        ),
        (
            json!([{"op": "add", "path": "/tags/-", "value": "t"}]),
            StatusCode::BAD_REQUEST,
            "Invalid JSON pointer for this resource: '/tags/-'",
        ),
        (
            json!([{"op": "replace", "path": "/size", "value": 1}]),
            StatusCode::FORBIDDEN,
            "Attribute 'size' is read-only.",
        ),
        (
            json!([{"op": "remove", "path": "/id"}]),
            StatusCode::FORBIDDEN,
            "Attribute 'id' is read-only.",
        ),
        (
            json!([{"op": "add", "path": "/os_glance_x", "value": "1"}]),
            StatusCode::FORBIDDEN,
            "Attribute 'os_glance_x' is reserved.",
        ),
        (
            json!([{"op": "remove", "path": "/min_ram"}]),
            StatusCode::FORBIDDEN,
            "Property min_ram may not be removed.",
        ),
        (
            json!([{"op": "replace", "path": "/owner", "value": "p2"}]),
            StatusCode::FORBIDDEN,
            "Owner can't be updated by non admin.",
        ),
        (
            json!([{"op": "replace", "path": "/os_hidden", "value": "yes"}]),
            StatusCode::BAD_REQUEST,
            "Provided object does not match schema 'image': invalid value for 'os_hidden': must be a boolean",
        ),
    ] {
        let r = g.patch(&id, ALICE, body.clone()).await;
        assert_eq!((r.status, message(&r).as_str()), (status, msg), "{body}");
    }
    let r = patch_as(&g, &id, ALICE, "application/json", json!([])).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        r.headers["accept-patch"],
        "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch"
    );
    assert_eq!(g.api_position().await, before, "refusals append nothing");
    // An admin gives the image to another project.
    let r = g
        .patch(
            &id,
            ADMIN,
            json!([{"op": "replace", "path": "/owner", "value": "p2"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.json()["owner"], "p2");
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), ALICE).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), BOB).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn hidden_images_are_left_out_of_lists() {
    let g = start(1 << 20).await;
    let r = g.post(ALICE, json!({"name": "h", "os_hidden": true})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["os_hidden"], true);
    let hidden = r.json()["id"].as_str().unwrap().to_string();
    let shown = g.create(ALICE, "s", "private").await;
    let ids = |r: Resp| -> Vec<String> {
        r.json()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let listed = ids(g.get("/v2/images", ALICE).await);
    assert!(listed.contains(&shown) && !listed.contains(&hidden));
    let listed = ids(g.get("/v2/images?os_hidden=true", ALICE).await);
    assert_eq!(listed, vec![hidden.clone()]);
    assert_eq!(
        g.get(&format!("/v2/images/{hidden}"), ALICE).await.json()["os_hidden"],
        true
    );
    // tempest's test_list_update_hidden_image, in the v2.0 media type it sends.
    let r = patch_as(
        &g,
        &shown,
        ALICE,
        PATCH20,
        json!([{"replace": "/os_hidden", "value": true}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!ids(g.get("/v2/images", ALICE).await).contains(&shown));
    let r = g
        .patch(
            &shown,
            ALICE,
            json!([{"op": "replace", "path": "/os_hidden", "value": false}]),
        )
        .await;
    assert_eq!(r.json()["os_hidden"], false);
    assert!(ids(g.get("/v2/images", ALICE).await).contains(&shown));
}

#[tokio::test]
async fn tags_are_added_and_removed_one_by_one() {
    let g = start(1 << 20).await;
    let id = g.create(ALICE, "t", "private").await;
    let tag = |m: Method, t: &str, token: &str| {
        g.send(g.rb(m, &format!("/v2/images/{id}/tags/{t}"), token))
    };
    assert_eq!(
        tag(Method::PUT, "a", ALICE).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        tag(Method::PUT, "b%20c", ALICE).await.status,
        StatusCode::NO_CONTENT
    );
    let before = g.api_position().await;
    assert_eq!(
        tag(Method::PUT, "a", ALICE).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        g.api_position().await,
        before,
        "a tag present already appends nothing"
    );
    let img = g.get(&format!("/v2/images/{id}"), ALICE).await.json();
    assert_eq!(img["tags"], json!(["a", "b c"]));
    let listed = g.get("/v2/images?tag=b%20c", ALICE).await.json();
    assert_eq!(listed["images"][0]["id"], id.as_str());
    assert_eq!(
        tag(Method::DELETE, "a", ALICE).await.status,
        StatusCode::NO_CONTENT
    );
    let r = tag(Method::DELETE, "a", ALICE).await;
    assert_eq!(
        (r.status, message(&r).as_str()),
        (StatusCode::NOT_FOUND, "The resource could not be found.")
    );
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), ALICE).await.json()["tags"],
        json!(["b c"])
    );
    // Another project: its private image is hidden, a public one is not its to tag.
    assert_eq!(
        tag(Method::PUT, "x", BOB).await.status,
        StatusCode::NOT_FOUND
    );
    let r = g
        .send(g.rb(Method::PUT, &format!("/v2/images/{CIRROS}/tags/x"), BOB))
        .await;
    assert_eq!(
        (r.status, message(&r)),
        (
            StatusCode::FORBIDDEN,
            format!("Not allowed to update tags for image {CIRROS}.")
        )
    );
    let long = "x".repeat(256);
    assert_eq!(
        tag(Method::PUT, &long, ALICE).await.status,
        StatusCode::BAD_REQUEST
    );
}

/// Sharing as tempest's image member tests and `openstack image add project` /
/// `image set --accept` do it: visible to a member whatever its status, listed by
/// default once accepted, with `member_status` otherwise.
#[tokio::test]
async fn members_share_accept_reject_and_list() {
    let g = start(1 << 20).await;
    const CAROL: &str = "carol:p3";
    let id = g.create(ALICE, "shared", "shared").await;
    let members = format!("/v2/images/{id}/members");
    let add =
        |token: &'static str, body: Value| g.send(g.rb(Method::POST, &members, token).json(&body));
    let set = |token: &'static str, member: &'static str, status: &'static str| {
        g.send(
            g.rb(Method::PUT, &format!("{members}/{member}"), token)
                .json(&json!({"status": status})),
        )
    };
    let ids = |r: Resp| -> Vec<String> {
        r.json()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), BOB).await.status,
        StatusCode::NOT_FOUND
    );
    let r = add(ALICE, json!({"member": "p2"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let m = r.json();
    assert_eq!(m["member_id"], "p2");
    assert_eq!(m["image_id"], id.as_str());
    assert_eq!(m["status"], "pending");
    assert_eq!(m["schema"], "/v2/schemas/member");
    assert!(m["created_at"].as_str().unwrap().ends_with('Z'));
    // Bad bodies and duplicates append nothing.
    let before = g.api_position().await;
    for (body, status, msg) in [
        (
            json!({"member": "p2"}),
            StatusCode::CONFLICT,
            format!("Member p2 is duplicated for image {id}"),
        ),
        (
            json!({}),
            StatusCode::BAD_REQUEST,
            "Member to be added not specified".to_string(),
        ),
        (
            json!({"member": ""}),
            StatusCode::BAD_REQUEST,
            "Member can't be empty".to_string(),
        ),
        (
            json!([]),
            StatusCode::BAD_REQUEST,
            "Expected a member in the form: {\"member\": \"image_id\"}".to_string(),
        ),
    ] {
        let r = add(ALICE, body.clone()).await;
        assert_eq!((r.status, message(&r)), (status, msg), "{body}");
    }
    // A pending member sees the image by id, not in its default list.
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), BOB).await.status,
        StatusCode::OK
    );
    assert!(!ids(g.get("/v2/images", BOB).await).contains(&id));
    assert_eq!(
        ids(g
            .get("/v2/images?member_status=pending&visibility=shared", BOB)
            .await),
        vec![id.clone()]
    );
    // Not a member: hidden.
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), CAROL).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(g.get(&members, CAROL).await.status, StatusCode::NOT_FOUND);
    // Only the member answers for itself.
    let r = set(ALICE, "p2", "accepted").await;
    assert_eq!(
        (r.status, message(&r)),
        (
            StatusCode::FORBIDDEN,
            format!("Not allowed to update members for image {id}.")
        )
    );
    let r = set(BOB, "p2", "maybe").await;
    assert_eq!(
        (r.status, message(&r).as_str()),
        (
            StatusCode::BAD_REQUEST,
            "Incorrect request: Status must be \"pending\", \"accepted\" or \"rejected\"."
        )
    );
    assert_eq!(g.api_position().await, before);
    let r = set(BOB, "p2", "accepted").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.json()["status"], "accepted");
    assert!(ids(g.get("/v2/images", BOB).await).contains(&id));
    assert!(ids(g.get("/v2/images?visibility=shared", BOB).await).contains(&id));
    // The owner sees every member, a member only itself.
    assert_eq!(
        add(ALICE, json!({"member": "p3"})).await.status,
        StatusCode::OK
    );
    let all = g.get(&members, ALICE).await.json();
    assert_eq!(all["schema"], "/v2/schemas/members");
    assert_eq!(all["members"].as_array().unwrap().len(), 2);
    let own = g.get(&members, BOB).await.json();
    assert_eq!(own["members"].as_array().unwrap().len(), 1);
    assert_eq!(own["members"][0]["member_id"], "p2");
    let r = g.get(&format!("{members}/p3"), BOB).await;
    assert_eq!(
        (r.status, message(&r)),
        (
            StatusCode::NOT_FOUND,
            format!("p3 not found in the member list of the image {id}.")
        )
    );
    assert_eq!(
        g.get(&format!("{members}/p3"), CAROL).await.json()["status"],
        "pending"
    );
    // Rejected: out of the default list, still visible by id.
    assert_eq!(set(CAROL, "p3", "rejected").await.status, StatusCode::OK);
    assert!(!ids(g.get("/v2/images", CAROL).await).contains(&id));
    assert!(ids(g.get("/v2/images?member_status=rejected", CAROL).await).contains(&id));
    assert!(ids(g.get("/v2/images?member_status=all", CAROL).await).contains(&id));
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), CAROL).await.status,
        StatusCode::OK
    );
    // A member cannot remove members; the owner can.
    let r = g
        .send(g.rb(Method::DELETE, &format!("{members}/p2"), BOB))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = g
        .send(g.rb(Method::DELETE, &format!("{members}/p3"), ALICE))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), CAROL).await.status,
        StatusCode::NOT_FOUND
    );
    // Members only exist for shared images: private again, p2 loses it.
    let r = g
        .patch(
            &id,
            ALICE,
            json!([{"op": "replace", "path": "/visibility", "value": "private"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        g.get(&format!("/v2/images/{id}"), BOB).await.status,
        StatusCode::NOT_FOUND
    );
    let r = g.get(&members, ALICE).await;
    assert_eq!(
        (r.status, message(&r)),
        (
            StatusCode::FORBIDDEN,
            format!("Not allowed to list members for image {id}: Only shared images have members.")
        )
    );
    let r = add(ALICE, json!({"member": "p4"})).await;
    assert_eq!(
        (r.status, message(&r)),
        (
            StatusCode::FORBIDDEN,
            format!("Not allowed to create members for image {id}.")
        )
    );
    assert_eq!(
        message(&g.get(&format!("{members}/p2"), ALICE).await),
        "Only shared images have members."
    );
}

#[tokio::test]
async fn schemas_as_glance() {
    let g = start(1 << 20).await;
    let schema = g.get("/v2/schemas/image", ALICE).await.json();
    assert_eq!(schema["name"], "image");
    assert_eq!(schema["additionalProperties"], json!({"type": "string"}));
    assert_eq!(schema["properties"]["status"]["readOnly"], true);
    assert_eq!(schema["properties"]["disk_format"]["enum"][0], Value::Null);
    assert!(schema["properties"]["disk_format"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("qcow2")));
    // Every attribute an image shows is a property of the schema.
    let img = g.get(&format!("/v2/images/{CIRROS}"), ALICE).await.json();
    for (k, _) in img.as_object().unwrap() {
        if k != "os_distro" && k != "hw_disk_bus" {
            assert!(
                schema["properties"].get(k).is_some(),
                "{k} not in the schema"
            );
        }
    }
    let m = g.get("/v2/schemas/member", ALICE).await.json();
    assert_eq!(m["name"], "member");
    assert_eq!(
        m["properties"]["status"]["enum"],
        json!(["pending", "accepted", "rejected"])
    );
    let ms = g.get("/v2/schemas/members", ALICE).await.json();
    assert_eq!(ms["name"], "members");
    // tempest's MetadataSchemaTest: the metadefs schemas by their Glance names.
    for (kind, name) in [
        ("namespace", "namespace"),
        ("namespaces", "namespaces"),
        ("resource_type", "resource_type_association"),
        ("resource_types", "resource_type_associations"),
        ("object", "object"),
        ("objects", "objects"),
        ("property", "property"),
        ("properties", "properties"),
        ("tag", "tag"),
        ("tags", "tags"),
    ] {
        let r = g.get(&format!("/v2/schemas/metadefs/{kind}"), ALICE).await;
        assert_eq!(r.status, StatusCode::OK, "{kind}");
        assert_eq!(r.json()["name"], name, "{kind}");
    }
    assert_eq!(
        g.get("/v2/schemas/metadefs/nope", ALICE).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(ms["properties"]["members"]["items"]["name"], "member");
    assert_eq!(
        g.get("/v2/schemas/images", ALICE).await.json()["name"],
        "images"
    );
}

/// tempest's owner tests: an admin creates an image for another project and gives it
/// to a third; a member may name only its own project.
#[tokio::test]
async fn owner_on_create_is_for_admins() {
    let g = start(1 << 20).await;
    let r = g
        .post(
            ADMIN,
            json!({"disk_format": "raw", "container_format": "bare", "owner": "p2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    assert_eq!(r.json()["owner"], "p2");
    assert_eq!(
        g.post(ALICE, json!({"owner": "p1"})).await.status,
        StatusCode::CREATED
    );
    let before = g.api_position().await;
    let r = g.post(ALICE, json!({"owner": "p2"})).await;
    assert_eq!(
        (r.status, message(&r).as_str()),
        (
            StatusCode::FORBIDDEN,
            "You are not authorized to complete add_image action."
        )
    );
    let r = g.post(ALICE, json!({"os_glance_foo": "bar"})).await;
    assert_eq!(
        (r.status, message(&r).as_str()),
        (
            StatusCode::FORBIDDEN,
            "Attribute 'os_glance_foo' is reserved."
        )
    );
    assert_eq!(g.api_position().await, before);
}
