//! Helpers shared by the tests that drive the real `stratus` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The image every test boots.
pub const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

/// A child process killed on drop, so nothing outlives a failing test.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Waits (up to `timeout`) for the process to exit by itself; true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.0.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The flags these tests rely on for `serve` and `api`: noauth tokens
/// (`X-Auth-Token: user:project`), an identity listener on a free port, and room for
/// every test's servers (instances, cores and ram unlimited) unless the test sets a
/// `--default-quota` itself.
pub fn dev_auth(args: &[&str]) -> Vec<&'static str> {
    match args.first() {
        // A test that chooses its auth chooses its identity listener too.
        Some(&"serve") | Some(&"api") if args.contains(&"--auth") => vec![],
        Some(&"serve") | Some(&"api") => {
            let mut v = vec!["--auth", "noauth", "--identity-listen", "127.0.0.1:0"];
            if !args.contains(&"--default-quota") {
                v.extend([
                    "--default-quota",
                    "instances=-1",
                    "--default-quota",
                    "cores=-1",
                    "--default-quota",
                    "ram=-1",
                ]);
            }
            v
        }
        _ => vec![],
    }
}

/// Starts `stratus <args> --data-dir <dir>` and waits for its ready line (`serve` and
/// `api` run with [`dev_auth`]).
pub fn spawn(args: &[&str], dir: &Path) -> Proc {
    spawn_env(args, dir, &[])
}

/// [`spawn`] with extra environment variables.
pub fn spawn_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Proc {
    let dir = dir.to_str().expect("a UTF-8 path");
    let mut all = args.to_vec();
    all.extend(["--data-dir", dir]);
    spawn_with(&all, env)
}

/// Starts `stratus <args>` as given (no `--data-dir` added; `serve` and `api` run with
/// [`dev_auth`], the image API on a free port) and waits for its ready line.
pub fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(args)
        .args(dev_auth(args))
        .env("STRATUS_IMAGE_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stratus");
    let stdout = child.stdout.take().expect("piped");
    let p = Proc(child);
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line")
        .expect("readable");
    assert!(line.starts_with("stratus "), "{args:?}: {line}");
    p
}

/// Runs `stratus <args>` to completion (no backtraces in its stderr).
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("run stratus")
}

/// `stratus api --nats <url> --listen 127.0.0.1:<port>`.
pub fn spawn_api(url: &str, port: u16, dir: &Path) -> Proc {
    spawn(
        &[
            "api",
            "--nats",
            url,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        dir,
    )
}

/// A nats-server of its own, a temporary directory and an API process on a free port
/// (started first: it creates the cells compute agents join). Dropped in that order:
/// API, server, directory.
pub struct JetStreamEnv {
    /// The API process.
    pub api: Proc,
    /// The server.
    pub nats: eventlog::testing::NatsServer,
    /// Its URL.
    pub url: String,
    /// The API's port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl JetStreamEnv {
    /// Starts the server and the API.
    pub fn with_api() -> Self {
        let nats = eventlog::testing::NatsServer::start().expect("nats-server");
        let url = nats.url();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let api = spawn_api(&url, port, &dir.path().join("a"));
        JetStreamEnv {
            api,
            nats,
            url,
            port,
            dir,
        }
    }

    /// A path in the temporary directory (a process's data dir).
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

/// SIGTERM, and asserts a clean exit within 20 s.
pub fn sigterm(p: Proc) {
    let st = sigterm_status(p);
    assert!(st.success(), "exit {st}");
}

/// SIGTERM, and the exit status (which must come within 20 s).
pub fn sigterm_status(mut p: Proc) -> std::process::ExitStatus {
    let pid = p.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "no exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One compute API call as `alice` of project `demo` at microversion 2.96.
pub async fn call(
    http: &reqwest::Client,
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = http
        .request(method, format!("http://127.0.0.1:{port}/v2.1{path}"))
        .header("X-Auth-Token", "alice:demo")
        .header("OpenStack-API-Version", "compute 2.96");
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// GET /servers/{id}.
pub async fn show(http: &reqwest::Client, port: u16, id: &str) -> (u16, Value) {
    call(
        http,
        port,
        reqwest::Method::GET,
        &format!("/servers/{id}"),
        None,
    )
    .await
}

/// Waits (30 s at most) until server `id` has status `want` and no task (`GONE`: 404).
pub async fn wait(http: &reqwest::Client, port: u16, id: &str, want: &str) -> Value {
    wait_for(http, port, id, want, Duration::from_secs(30)).await
}

/// [`wait`] with a deadline of `timeout`.
pub async fn wait_for(
    http: &reqwest::Client,
    port: u16,
    id: &str,
    want: &str,
    timeout: Duration,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, v) = show(http, port, id).await;
        if want == "GONE" && code == 404 {
            return Value::Null;
        }
        if v["server"]["status"] == want && v["server"]["OS-EXT-STS:task_state"].is_null() {
            return v["server"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{id} never {want} on port {port}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until server `id` shows task state `task`.
pub async fn wait_task(http: &reqwest::Client, port: u16, id: &str, task: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = show(http, port, id).await;
        if v["server"]["OS-EXT-STS:task_state"] == task {
            return v["server"].clone();
        }
        assert!(Instant::now() < deadline, "{id} never in task {task}: {v}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// POST /servers with the m1.tiny flavor; returns the new id.
pub async fn create(http: &reqwest::Client, port: u16, name: &str) -> String {
    let (code, v) = call(
        http,
        port,
        reqwest::Method::POST,
        "/servers",
        Some(serde_json::json!({"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1", "networks": "none"}})),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    v["server"]["id"].as_str().unwrap().to_string()
}

/// POST /servers/{id}/action with `body`; asserts 202.
pub async fn action(http: &reqwest::Client, port: u16, id: &str, body: Value) {
    let (code, v) = call(
        http,
        port,
        reqwest::Method::POST,
        &format!("/servers/{id}/action"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(code, 202, "{body} on {id}: {v}");
}
