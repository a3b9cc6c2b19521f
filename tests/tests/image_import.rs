//! Glance's interoperable image import end to end on the all-in-one: stage then
//! `glance-direct`, `web-download` from a local HTTP server, the refusals (bad method,
//! wrong status, a URL the filter refuses) appending nothing, a restart mid-import
//! failing it cleanly, and a replay rebuild that matches.

use std::time::Duration;

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::glance::serve_bytes;
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
    let before = h.api_position();
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
    assert_eq!(h.api_position(), before, "a refused import appends nothing");

    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 249) as u8).collect();
    assert_eq!(h.image_stage(ALICE, &id, payload.clone()).await, 204);
    let img = h.image_show(ALICE, &id).await;
    assert_eq!(img["status"], "uploading");
    assert_eq!(img["size"], payload.len());
    // Staging again: the image is no longer queued.
    assert_eq!(h.image_stage(ALICE, &id, vec![1, 2, 3]).await, 409);

    // Bad requests: 400, nothing appended.
    let before = h.api_position();
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
    assert_eq!(h.api_position(), before, "refused imports append nothing");

    let (code, _, rid) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}, "all_stores": true})),
    )
    .await;
    assert_eq!(code, 202);
    let img = h.wait_image(ALICE, &id, |i| i["status"] == "active").await;
    assert_eq!(img["size"], payload.len());
    assert_eq!(img["stores"], "file");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    assert_eq!(img["os_glance_failed_import"], "");
    assert!(img.get("os_glance_import_task").is_none(), "{img}");
    let (_, data) = h.image_download(ALICE, &id).await;
    assert_eq!(data, payload);

    // The image's task: one, success, with the import's request id and input.
    let tasks = h.wait_image_tasks(ALICE, &id, "success").await;
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
    let ops = json!([{"op": "add", "path": "/os_glance_failed_import", "value": "x"}]);
    assert_eq!(h.image_patch(ALICE, &id, ops).await.0, 403);

    // Replay rebuilds the same images and tasks.
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_download_import_and_the_url_filter() {
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
    let origin = serve_bytes("/image.raw", payload.clone()).await;
    let port: u16 = origin.rsplit(':').next().unwrap().parse().unwrap();
    // Glance's defaults allow ports 80 and 443 only: the local server's port is added.
    let h = Harness::start(|o| {
        o.image_import_filter.allowed_ports.push(port);
    })
    .await;
    let id = create(&h, "raw").await;

    // A URL the filter refuses: 400 with Glance's message, nothing appended.
    let before = h.api_position();
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
    assert_eq!(h.api_position(), before, "refused imports append nothing");
    assert_eq!(h.image_show(ALICE, &id).await["status"], "queued");

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
    let img = h
        .wait_image(ALICE, &id, |i| i["os_glance_failed_import"] == "file")
        .await;
    assert_eq!(img["status"], "queued");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    h.wait_image_tasks(ALICE, &id, "failure").await;

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
    let img = h.wait_image(ALICE, &id, |i| i["status"] == "active").await;
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
    assert_eq!(h.image_stage(ALICE, &other, vec![7; 10]).await, 204);
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
    let img = h.image_show(ALICE, &id).await;
    assert_eq!(img["status"], "importing");
    assert_eq!(img["os_glance_importing_to_stores"], "file");
    assert!(img["os_glance_import_task"].is_string());

    let h = h
        .restart(|o| {
            o.image_import_filter.allowed_ports.push(port);
        })
        .await;
    let img = h.image_show(ALICE, &id).await;
    assert_eq!(img["status"], "queued", "{img}");
    assert_eq!(img["os_glance_failed_import"], "file");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    assert!(img.get("os_glance_import_task").is_none());
    let (_, t, _) = glance(&h, ALICE, M::GET, &format!("/v2/images/{id}/tasks"), None).await;
    assert_eq!(t["tasks"][0]["status"], "failure", "{t}");

    // Importable again.
    assert_eq!(h.image_stage(ALICE, &id, vec![5; 4096]).await, 204);
    let (code, _, _) = glance(
        &h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}})),
    )
    .await;
    assert_eq!(code, 202);
    let img = h.wait_image(ALICE, &id, |i| i["status"] == "active").await;
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
    assert_eq!(h.image_stage(ALICE, &id, vec![3; 5000]).await, 204);
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
    let img = h
        .wait_image(ALICE, &id, |i| i["stores"] == "cheap,fast")
        .await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    h.wait_image_tasks(ALICE, &id, "success").await;
    let images = h.dir.path().join("images");
    assert!(images.join(&id).is_file());
    assert!(images.join("stores").join("cheap").join(&id).is_file());

    // Uploaded data is in the default store; an admin copies it to the others.
    let up = create(&h, "raw").await;
    assert_eq!(h.image_upload(ALICE, &up, vec![9u8; 3000]).await, 204);
    assert_eq!(h.image_show(ALICE, &up).await["stores"], "fast");
    let copy = json!({"method": {"name": "copy-image"}, "all_stores": true,
                      "all_stores_must_succeed": false});
    let before = h.api_position();
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
    assert_eq!(h.api_position(), before, "refusals append nothing");
    let (code, _, _) = glance(
        &h,
        ADMIN,
        M::POST,
        &format!("/v2/images/{up}/import"),
        Some(copy.clone()),
    )
    .await;
    assert_eq!(code, 202);
    let img = h
        .wait_image(ALICE, &up, |i| i["stores"] == "cheap,fast")
        .await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["os_glance_importing_to_stores"], "");
    assert_eq!(img["os_glance_failed_import"], "");
    h.wait_image_tasks(ALICE, &up, "success").await;
    // Everywhere already: nothing to do.
    let before = h.api_position();
    let (code, _, _) = glance(
        &h,
        ADMIN,
        M::POST,
        &format!("/v2/images/{up}/import"),
        Some(copy),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(h.api_position(), before);

    // Out of the default store; the data is still served (from the other).
    let (code, e, _) = glance(&h, ALICE, M::DELETE, &format!("/v2/stores/fast/{up}"), None).await;
    assert_eq!(code, 403, "{e}");
    let (code, e, _) = glance(&h, ADMIN, M::DELETE, &format!("/v2/stores/slow/{up}"), None).await;
    assert_eq!(code, 409, "{e}");
    let (code, e, _) = glance(&h, ADMIN, M::DELETE, &format!("/v2/stores/fast/{up}"), None).await;
    assert_eq!(code, 204, "{e}");
    assert_eq!(h.image_show(ALICE, &up).await["stores"], "cheap");
    assert!(!images.join(&up).exists());
    let (_, data) = h.image_download(ALICE, &up).await;
    assert_eq!(data, vec![9u8; 3000]);
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

/// A disk image written by `qemu-img create -f <format>` (1 MiB virtual), with the
/// extra options `opts` (e.g. a backing file).
fn qemu_image(dir: &std::path::Path, name: &str, format: &str, opts: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", format])
        .args(opts)
        .arg(&path)
        .arg("1M")
        .output()
        .expect("qemu-img runs (ops/test.sh installs qemu-utils)");
    assert!(out.status.success(), "{out:?}");
    std::fs::read(path).unwrap()
}

/// The types of the api stream's events about image `id`, in order.
async fn image_events(h: &Harness, id: &str) -> Vec<String> {
    let commits = h
        .stack
        .engine
        .log()
        .read_stream(&eventlog::StreamName::api(), 1, usize::MAX)
        .await
        .unwrap();
    commits
        .iter()
        .filter(|c| c.subject.as_str().contains(id))
        .flat_map(|c| &c.events)
        .filter_map(|e| projections::codec::decode(e).ok())
        .map(|e| e.event_type().to_string())
        .collect()
}

/// Starts a glance-direct import of `data` staged into a new image of `disk_format`.
async fn import_direct(h: &Harness, disk_format: &str, data: Vec<u8>) -> String {
    let id = create(h, disk_format).await;
    assert_eq!(h.image_stage(ALICE, &id, data).await, 204);
    let (code, e, _) = glance(
        h,
        ALICE,
        M::POST,
        &format!("/v2/images/{id}/import"),
        Some(json!({"method": {"name": "glance-direct"}})),
    )
    .await;
    assert_eq!(code, 202, "{e}");
    id
}

/// Glance's `image_conversion` import plugin (`--image-import-plugins image_conversion`,
/// output raw): qcow2 and VHD (qemu's `vpc`) data is converted and the image becomes
/// raw/bare (`image.converted` before `image.import_finished`); raw data is stored as it
/// is; a qcow2 with a backing file and data that is not its claimed format are refused
/// (the image back to queued, the task failed with Glance's message); copy-image never
/// converts; a replay rebuild matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversion_plugin_converts_imports_and_refuses_unsafe_data() {
    let h = Harness::start(|o| {
        o.image_conversion = Some(image::convert::Conversion {
            output_format: "raw".into(),
        });
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();

    for (format, qemu) in [("qcow2", "qcow2"), ("vhd", "vpc")] {
        let id = import_direct(&h, format, qemu_image(tmp.path(), format, qemu, &[])).await;
        let img = h.wait_image(ALICE, &id, |i| i["status"] == "active").await;
        assert_eq!(img["disk_format"], "raw", "{img}");
        assert_eq!(img["container_format"], "bare");
        let (_, data) = h.image_download(ALICE, &id).await;
        // qemu rounds a VHD's size to its geometry: at least the 1 MiB asked for.
        assert!(data.len() >= 1024 * 1024, "{format}: {}", data.len());
        assert!(data.iter().all(|b| *b == 0));
        assert_eq!(img["size"], data.len());
        assert_eq!(img["virtual_size"], data.len());
        let events = image_events(&h, &id).await;
        let at = |t: &str| events.iter().position(|e| e == t).expect(t);
        assert!(
            at("image.converted") < at("image.import_finished"),
            "{events:?}"
        );
        h.wait_image_tasks(ALICE, &id, "success").await;
        // Neither the staged file nor the converted one is left behind.
        let staging = h.dir.path().join("images").join("staging");
        let left: Vec<_> = std::fs::read_dir(&staging)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }

    // Raw data: checked, stored as sent, no conversion recorded.
    let raw = vec![7u8; 65536];
    let id = import_direct(&h, "raw", raw.clone()).await;
    let img = h.wait_image(ALICE, &id, |i| i["status"] == "active").await;
    assert_eq!(img["size"], raw.len());
    assert!(!image_events(&h, &id)
        .await
        .contains(&"image.converted".to_string()));

    // Refusals: back to queued, the task failed with Glance's message.
    let base = tmp.path().join("base.raw");
    std::fs::write(&base, vec![0u8; 1024 * 1024]).unwrap();
    let backed = qemu_image(
        tmp.path(),
        "backed.qcow2",
        "qcow2",
        &["-F", "raw", "-b", base.to_str().unwrap()],
    );
    for (format, data, msg) in [
        ("qcow2", backed, "Image has disallowed configuration"),
        (
            "vmdk",
            qemu_image(tmp.path(), "q.qcow2", "qcow2", &[]),
            "Image format mismatch",
        ),
        ("qcow2", vec![1u8; 4096], "Image format mismatch"),
    ] {
        let id = import_direct(&h, format, data).await;
        let tasks = h.wait_image_tasks(ALICE, &id, "failure").await;
        assert_eq!(tasks[0]["message"], format!("Error: {msg}"), "{format}");
        let img = h.wait_image(ALICE, &id, |i| i["status"] == "queued").await;
        assert_eq!(img["disk_format"], format);
        assert_eq!(img["os_glance_failed_import"], "file");
        assert!(!image_events(&h, &id)
            .await
            .contains(&"image.converted".to_string()));
    }

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

/// A queued iso/ovf image with two properties glance-download will overwrite.
async fn target(h: &Harness) -> String {
    let (code, img, _) = glance(
        h,
        ALICE,
        M::POST,
        "/v2/images",
        Some(
            json!({"name": "dst", "disk_format": "iso", "container_format": "ovf",
                    "hw_cpu_cores": "1", "os_distro": "windows"}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{img}");
    img["id"].as_str().unwrap().to_string()
}

/// `glance-download` (offered when `--image-enabled-import-methods` names it): the
/// image's data and formats and the properties Glance copies come from an active
/// image of the catalog region's Glance, fetched with the caller's token; bad
/// parameters are 400s appending nothing; a bad region or a missing source image fails
/// the task and leaves the image queued and unchanged; a replay rebuild matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_download_copies_an_image_of_the_regions_glance() {
    let h = Harness::start(|o| {
        o.image_import_methods = vec!["glance-direct".into(), "glance-download".into()];
        // The image listener's port is picked at start: any port.
        o.image_import_filter.allowed_ports = vec![];
    })
    .await;
    let (_, info, _) = glance(&h, ALICE, M::GET, "/v2/info/import", None).await;
    assert_eq!(
        info["import-methods"]["value"],
        json!(["glance-direct", "glance-download"])
    );

    // The source: raw data with properties, some of which Glance copies.
    let payload: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
    let src = import_direct(&h, "raw", payload.clone()).await;
    h.wait_image(ALICE, &src, |i| i["status"] == "active").await;
    let (code, _) = h
        .image_patch(
            ALICE,
            &src,
            json!([{"op": "add", "path": "/hw_cpu_cores", "value": "5"},
               {"op": "add", "path": "/trait:STORAGE_DISK_SSD", "value": "required"},
               {"op": "add", "path": "/os_distro", "value": "rhel"},
               {"op": "add", "path": "/speed", "value": "88mph"}]),
        )
        .await;
    assert_eq!(code, 200);

    let import = |id: String, method: Value| {
        let h = &h;
        async move {
            glance(
                h,
                ALICE,
                M::POST,
                &format!("/v2/images/{id}/import"),
                Some(json!({ "method": method })),
            )
            .await
        }
    };

    // Bad parameters: 400 with Glance's messages, nothing appended.
    let dst = target(&h).await;
    let before = h.log_len().await;
    for (method, msg) in [
        (
            json!({"name": "glance-download", "glance_image_id": src}),
            "'glance_region' needs to be set for glance-download import method",
        ),
        (
            json!({"name": "glance-download", "glance_region": "RegionOne"}),
            "'glance_image_id' needs to be set for glance-download import method",
        ),
        (
            json!({"name": "glance-download", "glance_region": "RegionOne", "glance_image_id": "foo"}),
            "Remote image id does not look like a UUID: foo",
        ),
    ] {
        let (code, e, _) = import(dst.clone(), method).await;
        assert_eq!(code, 400, "{e}");
        assert_eq!(e["message"], msg);
    }
    assert_eq!(h.log_len().await, before, "refused imports append nothing");

    // The download: the region matched without regard to case, the interface public.
    let (code, e, _) = import(
        dst.clone(),
        json!({"name": "glance-download", "glance_region": "regionone", "glance_image_id": src}),
    )
    .await;
    assert_eq!(code, 202, "{e}");
    let tasks = h.wait_image_tasks(ALICE, &dst, "success").await;
    assert_eq!(
        tasks[0]["input"]["import_req"]["method"]["glance_service_interface"],
        "public"
    );
    let img = h.wait_image(ALICE, &dst, |i| i["status"] == "active").await;
    assert_eq!(img["disk_format"], "raw");
    assert_eq!(img["container_format"], "bare");
    assert_eq!(img["hw_cpu_cores"], "5");
    assert_eq!(img["trait:STORAGE_DISK_SSD"], "required");
    assert_eq!(img["os_distro"], "rhel");
    assert!(img.get("speed").is_none(), "{img}");
    assert_eq!(img["size"], payload.len());
    let addr = h.stack.image_addr.unwrap();
    let (_, data) = h.image_download(ALICE, &dst).await;
    assert_eq!(data, payload);

    // A bad region, a missing source: the task fails, the image is as it was.
    for (method, msg) in [
        (
            json!({"name": "glance-download", "glance_region": "not a region",
                   "glance_service_interface": "not an interface", "glance_image_id": src}),
            "Error: not an interface glance endpoint not found for region not a region".to_string(),
        ),
        (
            json!({"name": "glance-download", "glance_region": "RegionOne",
                   "glance_image_id": "36d4b546-64a2-4bb9-bdd0-ba676aa48f2c"}),
            format!(
                "Error: http://{addr}/v2/images/36d4b546-64a2-4bb9-bdd0-ba676aa48f2c answered 404 Not Found"
            ),
        ),
    ] {
        let dst = target(&h).await;
        let (code, e, _) = import(dst.clone(), method).await;
        assert_eq!(code, 202, "{e}");
        let tasks = h.wait_image_tasks(ALICE, &dst, "failure").await;
        assert_eq!(tasks[0]["message"], msg);
        let img = h.wait_image(ALICE, &dst, |i| i["status"] == "queued").await;
        assert_eq!(img["hw_cpu_cores"], "1");
        assert_eq!(img["os_distro"], "windows");
        assert_eq!(img["disk_format"], "iso");
    }

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}
