//! Glance's interoperable image import end to end on the all-in-one: stage then
//! `glance-direct`, `web-download` from a local HTTP server, the refusals (bad method,
//! wrong status, a URL the filter refuses) appending nothing, a restart mid-import
//! failing it cleanly, and a replay rebuild that matches.

use std::time::{Duration, Instant};

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:p1";

async fn glance(
    h: &Harness,
    token: &str,
    method: M,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, String) {
    let (code, headers, v) = h.glance_send(token, method, path, body).await;
    let rid = headers
        .get("x-openstack-request-id")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (code, v, rid)
}

async fn create(h: &Harness, disk_format: &str) -> String {
    let (code, img, _) = glance(
        h,
        ALICE,
        M::POST,
        "/v2/images",
        Some(json!({"name": "imp", "disk_format": disk_format, "container_format": "bare"})),
    )
    .await;
    assert_eq!(code, 201, "{img}");
    img["id"].as_str().unwrap().to_string()
}

async fn stage(h: &Harness, id: &str, data: Vec<u8>) -> u16 {
    let addr = h.stack.image_addr.unwrap();
    h.http
        .put(format!("http://{addr}/v2/images/{id}/stage"))
        .header("X-Auth-Token", ALICE)
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn show(h: &Harness, id: &str) -> Value {
    glance(h, ALICE, M::GET, &format!("/v2/images/{id}"), None)
        .await
        .1
}

/// Polls the image until `done` holds (10 s at most).
async fn wait_image(h: &Harness, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let img = show(h, id).await;
        if done(&img) {
            return img;
        }
        assert!(Instant::now() < deadline, "image never got there: {img}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the image's first task until it has `status` (10 s at most).
async fn wait_task(h: &Harness, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, t, _) = glance(h, ALICE, M::GET, &format!("/v2/images/{id}/tasks"), None).await;
        assert_eq!(code, 200);
        if t["tasks"][0]["status"] == status {
            return t["tasks"].clone();
        }
        assert!(Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn api_position(h: &Harness) -> u64 {
    h.stack
        .engine
        .world()
        .read()
        .position(&eventlog::StreamName::api())
}

/// A local HTTP server serving `data` at `/image.raw` (and 404 elsewhere).
async fn serve(data: Vec<u8>) -> String {
    let app = axum::Router::new().route(
        "/image.raw",
        axum::routing::get(move || {
            let d = data.clone();
            async move { d }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_then_glance_direct_import() {
    let h = Harness::start(|_| {}).await;
    let (code, info, _) = glance(&h, ALICE, M::GET, "/v2/info/import", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        info["import-methods"]["value"],
        json!(["glance-direct", "web-download"])
    );
    let (code, stores, _) = glance(&h, ALICE, M::GET, "/v2/info/stores", None).await;
    assert_eq!(code, 200);
    assert_eq!(stores["stores"][0]["id"], "file");
    assert_eq!(stores["stores"][0]["default"], true);

    let id = create(&h, "raw").await;
    // glance-direct needs staged data first: 409, nothing appended.
    let before = api_position(&h);
    let (code, e, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}})),
    )
    .await;
    assert_eq!(code, 409, "{e}");
    assert_eq!(
        e["message"],
        "Image needs to be staged before 'glance-direct' method can be used"
    );
    assert_eq!(api_position(&h), before, "a refused import appends nothing");

    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 249) as u8).collect();
    assert_eq!(stage(&h, &id, payload.clone()).await, 204);
    let img = show(&h, &id).await;
    assert_eq!(img["status"], "uploading");
    assert_eq!(img["size"], payload.len());
    // Staging again: the image is no longer queued.
    assert_eq!(stage(&h, &id, vec![1, 2, 3]).await, 409);

    // Bad requests: 400, nothing appended.
    let before = api_position(&h);
    for (body, msg) in [
        (json!({}), "Import request requires a 'method' field."),
        (
            json!({"method": {}}),
            "Import request requires a 'name' field.",
        ),
        (
            json!({"method": {"name": "copy-image"}}),
            "Unknown import method name 'copy-image'.",
        ),
        (
            json!({"method": {"name": "glance-direct"}, "all_stores": "yes"}),
            "'all_stores' must be boolean value only",
        ),
    ] {
        let (code, e, _) = glance(
            &h,
            ALICE,
            M::POST,
            &format!("/v2/images/{id}/import"),
            Some(body),
        )
        .await;
        assert_eq!(code, 400, "{e}");
        assert_eq!(e["message"], msg);
    }
    let (code, e, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}, "stores": ["cheap"]})),
    )
    .await;
    assert_eq!(code, 409, "{e}");
    assert_eq!(api_position(&h), before, "refused imports append nothing");

    let (code, _, rid) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}, "all_stores": true})),
    )
    .await;
    assert_eq!(code, 202);
    let img = wait_image(&h, &id, |i| i["status"] == "active").await;
    assert_eq!(img["size"], payload.len());
    assert_eq!(img["stores"], "file");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    assert_eq!(img["os_glance_failed_import"], "");
    assert!(img.get("os_glance_import_task").is_none(), "{img}");
    let addr = h.stack.image_addr.unwrap();
    let data = h
        .http
        .get(format!("http://{addr}/v2/images/{id}/file"))
        .header("X-Auth-Token", ALICE)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(data.as_ref(), payload.as_slice());

    // The image's task: one, success, with the import's request id and input.
    let tasks = wait_task(&h, &id, "success").await;
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    assert_eq!(tasks[0]["request_id"], rid.as_str());
    assert_eq!(tasks[0]["type"], "api_image_import");
    assert_eq!(
        tasks[0]["input"]["import_req"]["method"]["name"],
        "glance-direct"
    );
    assert_eq!(tasks[0]["result"]["image_id"], id.as_str());
    // The staged copy is gone once the import ended.
    let staged = h.dir.path().join("images").join("staging").join(&id);
    assert!(!staged.exists());

    // An active image cannot be imported into again.
    let (code, e, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}})),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(
        e["message"],
        "Image with status active cannot be target for import"
    );

    // The os_glance namespace is the service's.
    let r = h
        .http
        .patch(format!("http://{addr}/v2/images/{id}"))
        .header("X-Auth-Token", ALICE)
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .body(json!([{"op": "add", "path": "/os_glance_failed_import", "value": "x"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Replay rebuilds the same images and tasks.
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_download_import_and_the_url_filter() {
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
    let origin = serve(payload.clone()).await;
    let port: u16 = origin.rsplit(':').next().unwrap().parse().unwrap();
    // Glance's defaults allow ports 80 and 443 only: the local server's port is added.
    let h = Harness::start(|o| {
        o.image_import_filter.allowed_ports.push(port);
    })
    .await;
    let id = create(&h, "raw").await;

    // A URL the filter refuses: 400 with Glance's message, nothing appended.
    let before = api_position(&h);
    for uri in [
        "ftp://127.0.0.1/image.raw".to_string(),
        "http://127.0.0.1:1/image.raw".to_string(),
    ] {
        let (code, e, _) = glance(
            &h,
            ALICE,
            M::POST,
            &format!("/v2/images/{id}/import"),
            Some(json!({"method": {"name": "web-download", "uri": uri}})),
        )
        .await;
        assert_eq!(code, 400, "{e}");
        assert_eq!(
            e["message"],
            format!("URI for web-download does not pass filtering: {uri}").as_str()
        );
    }
    let (code, e, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "web-download"}})),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(api_position(&h), before, "refused imports append nothing");
    assert_eq!(show(&h, &id).await["status"], "queued");

    // A URL that answers 404: the import fails, the image is queued again, the store
    // is in os_glance_failed_import, the task in failure.
    let (code, _, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "web-download", "uri": format!("{origin}/nothing")}})),
    )
    .await;
    assert_eq!(code, 202);
    let img = wait_image(&h, &id, |i| i["os_glance_failed_import"] == "file").await;
    assert_eq!(img["status"], "queued");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    wait_task(&h, &id, "failure").await;

    // The good URL: active, with the served data; a retry clears the failed list.
    let (code, _, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "web-download", "uri": format!("{origin}/image.raw")}})),
    )
    .await;
    assert_eq!(code, 202);
    let img = wait_image(&h, &id, |i| i["status"] == "active").await;
    assert_eq!(img["size"], payload.len());
    assert_eq!(img["os_glance_failed_import"], "");
    assert_eq!(
        img["os_hash_value"],
        {
            use sha2::Digest;
            hex::encode(sha2::Sha512::digest(&payload))
        }
        .as_str()
    );
    // web-download wants a queued image.
    let other = create(&h, "raw").await;
    assert_eq!(stage(&h, &other, vec![7; 10]).await, 204);
    let (code, e, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{other}/import"),
        Some(json!({"method": {"name": "web-download", "uri": format!("{origin}/image.raw")}})),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(
        e["message"],
        "Image needs to be in 'queued' state to use 'web-download' method"
    );
    // Another project's member cannot import into it (it does not see it).
    let (code, _, _) = glance(
        &h,
        "bob:p2",
        M::POST,
        &format!("/v2/images/{other}/import"),
        Some(json!({"method": {"name": "glance-direct"}})),
    )
    .await;
    assert_eq!(code, 404);
}

/// A stop mid-import leaves nothing stuck: the restarted service fails the import
/// cleanly (queued, the store in os_glance_failed_import, the task in failure), and the
/// image can be staged and imported again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_import_fails_it_cleanly() {
    // An origin that never finishes its answer keeps the import running.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc")
                    .await;
                tokio::time::sleep(Duration::from_secs(600)).await;
            });
        }
    });
    let h = Harness::start(|o| {
        o.image_import_filter.allowed_ports.push(port);
    })
    .await;
    let id = create(&h, "raw").await;
    let (code, _, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "web-download", "uri": format!("http://127.0.0.1:{port}/slow")}})),
    )
    .await;
    assert_eq!(code, 202);
    let img = show(&h, &id).await;
    assert_eq!(img["status"], "importing");
    assert_eq!(img["os_glance_importing_to_stores"], "file");
    assert!(img["os_glance_import_task"].is_string());

    let h = h
        .restart(|o| {
            o.image_import_filter.allowed_ports.push(port);
        })
        .await;
    let img = show(&h, &id).await;
    assert_eq!(img["status"], "queued", "{img}");
    assert_eq!(img["os_glance_failed_import"], "file");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    assert!(img.get("os_glance_import_task").is_none());
    let (_, t, _) = glance(&h, ALICE, M::GET, &format!("/v2/images/{id}/tasks"), None).await;
    assert_eq!(t["tasks"][0]["status"], "failure", "{t}");

    // Importable again.
    assert_eq!(stage(&h, &id, vec![5; 4096]).await, 204);
    let (code, _, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}})),
    )
    .await;
    assert_eq!(code, 202);
    let img = wait_image(&h, &id, |i| i["status"] == "active").await;
    assert_eq!(img["os_glance_failed_import"], "");
    assert_eq!(img["size"], 4096);

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

/// Several stores (`--image-stores fast,cheap`): an import to all of them, copy-image of
/// uploaded data (admin), removing the data from one store but not the last, and a
/// replay rebuild that matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_stores_import_copy_and_remove() {
    const ADMIN: &str = "admin:admin:admin";
    let h = Harness::start(|o| {
        o.image_stores = vec!["fast".into(), "cheap".into()];
    })
    .await;
    let (_, info, _) = glance(&h, ALICE, M::GET, "/v2/info/import", None).await;
    assert_eq!(
        info["import-methods"]["value"],
        json!(["glance-direct", "web-download", "copy-image"])
    );
    let (_, stores, _) = glance(&h, ALICE, M::GET, "/v2/info/stores", None).await;
    assert_eq!(
        stores["stores"],
        json!([{"id": "fast", "description": "Image directory store fast", "default": true},
               {"id": "cheap", "description": "Image directory store cheap"},
               // The read-only http store of image locations (tempest skips it).
               {"id": "http", "description": "Read-only http store of image locations", "read-only": "true"}])
    );

    // glance-direct to every store.
    let id = create(&h, "raw").await;
    assert_eq!(stage(&h, &id, vec![3; 5000]).await, 204);
    let (code, e, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}, "stores": ["slow"]})),
    )
    .await;
    assert_eq!(code, 409, "{e}");
    assert_eq!(e["message"], "Unknown scheme 'slow' found in URI");
    let (code, _, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}, "all_stores": true})),
    )
    .await;
    assert_eq!(code, 202);
    let img = wait_image(&h, &id, |i| i["stores"] == "cheap,fast").await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    wait_task(&h, &id, "success").await;
    let images = h.dir.path().join("images");
    assert!(images.join(&id).is_file());
    assert!(images.join("stores").join("cheap").join(&id).is_file());

    // Uploaded data is in the default store; an admin copies it to the others.
    let up = create(&h, "raw").await;
    let addr = h.stack.image_addr.unwrap();
    let r = h
        .http
        .put(format!("http://{addr}/v2/images/{up}/file"))
        .header("X-Auth-Token", ALICE)
        .header("Content-Type", "application/octet-stream")
        .body(vec![9u8; 3000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(show(&h, &up).await["stores"], "fast");
    let copy = json!({"method": {"name": "copy-image"}, "all_stores": true,
                      "all_stores_must_succeed": false});
    let before = api_position(&h);
    let (code, _, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{up}/import"),
        Some(copy.clone()),
    )
    .await;
    assert_eq!(code, 403, "copy-image is the admin's");
    let (code, e, _) = glance(
        &h,
        ADMIN,
        M::POST,
        &format!("/v2/images/{up}/import"),
        Some(json!({"method": {"name": "copy-image"}, "stores": ["fast"]})),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(e["message"], "Image is already present at store 'fast'");
    assert_eq!(api_position(&h), before, "refusals append nothing");
    let (code, _, _) = glance(
        &h,
        ADMIN,
        M::POST,
        &format!("/v2/images/{up}/import"),
        Some(copy.clone()),
    )
    .await;
    assert_eq!(code, 202);
    let img = wait_image(&h, &up, |i| i["stores"] == "cheap,fast").await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    assert_eq!(img["os_glance_failed_import"], "");
    wait_task(&h, &up, "success").await;
    // Everywhere already: nothing to do.
    let before = api_position(&h);
    let (code, _, _) = glance(
        &h,
        ADMIN,
        M::POST,
        &format!("/v2/images/{up}/import"),
        Some(copy),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(api_position(&h), before);

    // Out of the default store; the data is still served (from the other).
    let (code, e, _) = glance(&h, ALICE, M::DELETE, &format!("/v2/stores/fast/{up}"), None).await;
    assert_eq!(code, 403, "{e}");
    let (code, e, _) = glance(&h, ADMIN, M::DELETE, &format!("/v2/stores/slow/{up}"), None).await;
    assert_eq!(code, 409, "{e}");
    let (code, e, _) = glance(&h, ADMIN, M::DELETE, &format!("/v2/stores/fast/{up}"), None).await;
    assert_eq!(code, 204, "{e}");
    assert_eq!(show(&h, &up).await["stores"], "cheap");
    assert!(!images.join(&up).exists());
    let data = h
        .http
        .get(format!("http://{addr}/v2/images/{up}/file"))
        .header("X-Auth-Token", ALICE)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(data.as_ref(), vec![9u8; 3000].as_slice());
    let (code, e, _) = glance(
        &h,
        ADMIN,
        M::DELETE,
        &format!("/v2/stores/cheap/{up}"),
        None,
    )
    .await;
    assert_eq!(code, 403, "{e}");
    assert_eq!(
        e["message"],
        "Cannot delete image data from the only store containing it. Consider deleting the image instead."
    );
    // Deleting the image removes its data from every store.
    let (code, _, _) = glance(&h, ALICE, M::DELETE, &format!("/v2/images/{id}"), None).await;
    assert_eq!(code, 204);
    assert!(!images.join(&id).exists());
    assert!(!images.join("stores").join("cheap").join(&id).exists());

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}
