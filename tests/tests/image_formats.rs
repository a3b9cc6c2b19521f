//! Image format inspection end to end: the image API checks uploads against their
//! `disk_format` (Glance's `require_image_format_match`, 415 and back to `queued`) and
//! records the virtual size; with the check off, the compute agent still refuses to
//! boot a mismatched or unsafe image (Nova's deep inspection): the server goes to
//! ERROR with Nova's fault, its claim is released, and the failure is in the log (`instance.spawn_failed`).

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:p1";
const GIB: u64 = 1024 * 1024 * 1024;

/// A qcow2 v3 header announcing `size` bytes, with a backing file when asked.
fn qcow2(size: u64, backing: bool) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    b[..4].copy_from_slice(b"QFI\xfb");
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    if backing {
        b[8..16].copy_from_slice(&0x200u64.to_be_bytes());
        b[16..20].copy_from_slice(&10u32.to_be_bytes());
        b[0x200..0x20a].copy_from_slice(b"/etc/hosts");
    }
    b[20..24].copy_from_slice(&16u32.to_be_bytes());
    b[24..32].copy_from_slice(&size.to_be_bytes());
    b
}

async fn glance(h: &Harness, method: M, path: &str, body: Option<Value>) -> (u16, Value) {
    h.glance(ALICE, method, path, body).await
}

/// Creates a bare image of `disk_format` and uploads `data`: (image id, upload status,
/// upload body).
async fn image(h: &Harness, disk_format: &str, data: Vec<u8>) -> (String, u16, Value) {
    let (code, img) = glance(
        h,
        M::POST,
        "/v2/images",
        Some(json!({"name": disk_format, "disk_format": disk_format, "container_format": "bare"})),
    )
    .await;
    assert_eq!(code, 201, "{img}");
    let id = img["id"].as_str().unwrap().to_string();
    let octets = "application/octet-stream";
    let path = format!("/v2/images/{id}/file");
    let (code, body) = h.glance_bytes(ALICE, M::PUT, &path, octets, data).await;
    (id, code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_must_match_their_disk_format() {
    let h = Harness::start(|_| {}).await;
    let files = h.dir.path().join("images");

    // Matching content: active, with the virtual size it announces.
    let (good, code, _) = image(&h, "qcow2", qcow2(GIB, false)).await;
    assert_eq!(code, 204);
    let img = h.image_show(ALICE, &good).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["virtual_size"], GIB);
    assert_eq!(img["size"], 4096);
    let (_, listed) = glance(&h, M::GET, "/v2/images?virtual_size_min=1000000", None).await;
    assert_eq!(listed["images"][0]["id"], good.as_str());

    // Anything may claim raw; its virtual size is its byte size.
    let (raw, code, _) = image(&h, "raw", qcow2(GIB, false)).await;
    assert_eq!(code, 204);
    assert_eq!(h.image_show(ALICE, &raw).await["virtual_size"], 4096);

    // Mismatched or unsafe content: 415 with Glance's message, back to queued, no file.
    for (data, message) in [
        (
            vec![0u8; 4096],
            "Image disk_format qcow2 does not match stream data raw",
        ),
        (qcow2(GIB, true), "Image failed safety checks"),
    ] {
        let (id, code, body) = image(&h, "qcow2", data).await;
        assert_eq!(code, 415, "{body}");
        assert_eq!(body["code"], "415 Unsupported Media Type");
        assert_eq!(body["message"], message);
        let img = h.image_show(ALICE, &id).await;
        assert_eq!(img["status"], "queued");
        assert!(img["size"].is_null() && img["virtual_size"].is_null());
        assert!(!files.join(&id).exists());
        // Queued again: proper data can follow.
        assert_eq!(h.image_upload(ALICE, &id, qcow2(GIB, false)).await, 204);
        assert_eq!(h.image_show(ALICE, &id).await["status"], "active");
    }

    // The default image is a valid qcow2 header (and says how big it is).
    assert_eq!(
        h.image_show(ALICE, "70a599e0-31e7-49b7-b260-868f441e862b")
            .await["virtual_size"],
        112 * 1024 * 1024
    );

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_refuses_to_boot_mismatched_or_unsafe_images() {
    let h = Harness::start(|o| o.image_require_format_match = false).await;
    // Without the upload check, anything is stored.
    let (unsafe_img, code, _) = image(&h, "qcow2", qcow2(GIB, true)).await;
    assert_eq!(code, 204);
    let (lying, code, _) = image(&h, "raw", qcow2(GIB, false)).await;
    assert_eq!(code, 204);
    let (fine, code, _) = image(&h, "qcow2", qcow2(GIB, false)).await;
    assert_eq!(code, 204);

    let boot = |image: String| {
        let h = &h;
        async move {
            let body = json!({"server": {"name": "s", "imageRef": image, "flavorRef": "1", "networks": "none"}});
            let (code, r) = h.req(ALICE, M::POST, "/servers", Some(body)).await;
            assert_eq!(code, 202, "{r}");
            r["server"]["id"].as_str().unwrap().to_string()
        }
    };
    let mut failed = Vec::new();
    for (image, reason) in [
        (&unsafe_img, "Image does not pass safety check"),
        (&lying, "Image content does not match disk_format"),
    ] {
        let id = boot(image.clone()).await;
        let s = h.wait(&id, "ERROR").await;
        assert_eq!(
            s["fault"]["message"],
            format!("Build of instance {id} aborted: Image {image} is unacceptable: {reason}")
                .as_str(),
            "{s}"
        );
        failed.push(id);
    }
    let ok = boot(fine).await;
    h.wait(&ok, "ACTIVE").await;

    // Only the active server holds a claim.
    let claimed = || {
        let v = h.stack.engine.world().read();
        let mut out: Vec<String> = v
            .hosts()
            .values()
            .flat_map(|r| r.state.allocations.values().map(|a| a.instance.to_string()))
            .collect();
        out.sort();
        out
    };
    for _ in 0..400 {
        if claimed() == std::slice::from_ref(&ok) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(claimed(), std::slice::from_ref(&ok));

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
    let log = eventlog::EmbeddedLog::open(&dir.path().join("log")).unwrap();
    for id in &failed {
        let steps = replay::history(log.as_ref(), domain::InstanceId::parse(id).unwrap())
            .await
            .unwrap();
        let types: Vec<&str> = steps.iter().map(|s| s.event_type.as_str()).collect();
        assert!(types.last() == Some(&"instance.spawn_failed"), "{types:?}");
    }
    log.close();
}
