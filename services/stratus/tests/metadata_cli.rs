//! The metadata service of the real binary: `stratus serve --metadata-listen ADDR
//! --metadata-secret S` (and `--force-config-drive` accepted), a server created over
//! HTTP, its documents fetched as Neutron's metadata proxy asks for them.

mod common;

use common::{call, free_port, sigterm, spawn, wait};
use serde_json::{json, Value};

#[tokio::test]
async fn serve_metadata_listen() {
    let dir = tempfile::tempdir().unwrap();
    let (port, md_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{port}");
    let md_listen = format!("127.0.0.1:{md_port}");
    let p = spawn(
        &[
            "serve",
            "--listen",
            &listen,
            "--hosts",
            "1",
            "--metadata-listen",
            &md_listen,
            "--metadata-secret",
            "proxy-secret",
            "--force-config-drive",
        ],
        dir.path(),
    );
    let http = reqwest::Client::new();
    let (code, v) = call(
        &http,
        port,
        reqwest::Method::POST,
        "/servers",
        Some(
            json!({"server": {"name": "md", "imageRef": common::IMAGE, "flavorRef": "1",
                               "networks": "none", "user_data": "aGVsbG8K"}}),
        ),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    wait(&http, port, &id, "ACTIVE").await;
    let get = |path: &str, sig: String| {
        http.get(format!("http://{md_listen}{path}"))
            .header("Accept", "text/plain")
            .header("X-Instance-ID", &id)
            .header("X-Tenant-ID", "demo")
            .header("X-Instance-ID-Signature", sig)
            .send()
    };
    let good = metadata::http::sign("proxy-secret", &id);
    let r = get("/openstack/latest/meta_data.json", good.clone())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let md: Value = r.json().await.unwrap();
    assert_eq!(md["uuid"], id.as_str());
    assert_eq!(md["hostname"], "md.novalocal");
    let r = get("/latest/user-data", good).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello\n");
    let bad = metadata::http::sign("other-secret", &id);
    let r = get("/openstack/latest/meta_data.json", bad).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        r.text().await.unwrap(),
        "403 Forbidden\n\nInvalid proxy request signature.\n\n   "
    );
    let r = http
        .get(format!("http://{md_listen}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().ends_with("2009-04-04\nlatest"));
    sigterm(p);
}
