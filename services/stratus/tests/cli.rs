//! The real binary: `stratus serve` on a fresh data dir, a server created over HTTP,
//! SIGTERM (graceful stop), restart with state intact, then `stratus replay rebuild`
//! (MATCH) and `stratus replay history`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the server if the test fails before stopping it, so no process outlives the test.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn serve(dir: &std::path::Path, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--hosts", "2"])
        .env("STRATUS_IMAGE_LISTEN", "127.0.0.1:0")
        .args(["--auth", "noauth", "--identity-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stratus serve");
    let mut server = Server(Some(child));
    let stdout = server
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("piped stdout");
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line")
        .expect("readable");
    assert!(line.contains("stratus listening on"), "{line}");
    server
}

fn sigterm(mut server: Server) {
    let mut child = server.0.take().expect("running");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "serve exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn status(http: &reqwest::Client, port: u16, id: &str) -> String {
    let v: serde_json::Value = http
        .get(format!("http://127.0.0.1:{port}/v2.1/servers/{id}"))
        .header("X-Auth-Token", "alice:demo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["server"]["status"].as_str().unwrap_or("").to_string()
}

async fn wait(http: &reqwest::Client, port: u16, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(http, port, id).await != want {
        assert!(Instant::now() < deadline, "never {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sigterm_restart_replay() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = serve(dir.path(), port);
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("http://127.0.0.1:{port}/v2.1/servers"))
        .header("X-Auth-Token", "alice:demo")
        .header("OpenStack-API-Version", "compute 2.60")
        .json(&serde_json::json!({"server": {"name": "cli", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1", "networks": "none"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let rid = resp.headers()["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(rid.starts_with("req-"), "{rid}");
    let v: serde_json::Value = resp.json().await.unwrap();
    let id = v["server"]["id"].as_str().unwrap().to_string();
    wait(&http, port, &id, "ACTIVE").await;
    let resp = http
        .post(format!("http://127.0.0.1:{port}/v2.1/servers/{id}/action"))
        .header("X-Auth-Token", "alice:demo")
        .json(&serde_json::json!({"pause": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    wait(&http, port, &id, "PAUSED").await;
    sigterm(child);

    // Restart: state intact, work continues.
    let port = free_port();
    let child = serve(dir.path(), port);
    assert_eq!(status(&http, port, &id).await, "PAUSED");
    sigterm(child);

    let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(["replay", "rebuild", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("MATCH"), "{text}");
    assert!(text.contains("events/s"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(["replay", "history", "--data-dir"])
        .arg(dir.path())
        .arg(&id)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("instance.build_requested"), "{text}");
    assert!(text.contains(&rid), "history names the request id: {text}");
    assert!(
        text.lines().last().unwrap().contains("status=PAUSED"),
        "{text}"
    );
}

/// `--image-store-weights` must name configured stores with integer weights: a bad
/// value stops `serve` before it starts anything.
#[test]
fn bad_store_weights_are_refused() {
    for (weights, says) in [
        ("cheap=1,slow=2", "\"slow\" is not one of --image-stores"),
        ("fast=x", "the weight of \"fast\" is not an integer"),
        ("fast", "\"fast\" is not id=weight"),
        ("fast=1,fast=2", "\"fast\" is weighted twice"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
            .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args([
                "--image-stores",
                "fast,cheap",
                "--image-store-weights",
                weights,
            ])
            .output()
            .expect("run stratus serve");
        assert!(!out.status.success(), "{weights}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{weights}: {err}");
    }
}
