//! A crash in the middle of an image upload leaves nothing stuck: the restarted process
//! sends the image that was `saving` back to `queued` (as a failed upload in Glance) and
//! the owner can upload it again (image::recovery, called by `stratus serve` at start).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn image_status(http: &reqwest::Client, port: u16, id: &str) -> String {
    let r = http
        .get(format!("http://127.0.0.1:{port}/v2/images/{id}"))
        .header("X-Auth-Token", "alice:demo")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["status"].as_str().unwrap().to_string()
}

fn serve(dir: &std::path::Path, compute: u16, images: u16) -> Proc {
    spawn(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{compute}"),
            "--image-listen",
            &format!("127.0.0.1:{images}"),
            "--hosts",
            "1",
        ],
        dir,
    )
}

#[tokio::test]
async fn an_upload_cut_by_a_crash_goes_back_to_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, ip) = (free_port(), free_port());
    let p = serve(dir.path(), cp, ip);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://127.0.0.1:{ip}/v2/images"))
        .header("X-Auth-Token", "alice:demo")
        .json(&json!({"name": "big", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // An upload announcing 8 MiB that sends 64 KiB and then nothing.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", ip)).unwrap();
    write!(
        sock,
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: alice:demo\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        8 << 20
    )
    .unwrap();
    sock.write_all(&[7u8; 64 << 10]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while image_status(&http, ip, &id).await != "saving" {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.kill9();
    drop(sock);

    let _p = serve(dir.path(), cp, ip);
    // (a new client: the old one's pooled connections went with the killed process)
    let http = reqwest::Client::new();
    assert_eq!(image_status(&http, ip, &id).await, "queued");
    let r = http
        .put(format!("http://127.0.0.1:{ip}/v2/images/{id}/file"))
        .header("X-Auth-Token", "alice:demo")
        .header("Content-Type", "application/octet-stream")
        .body(vec![1u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(image_status(&http, ip, &id).await, "active");
}
