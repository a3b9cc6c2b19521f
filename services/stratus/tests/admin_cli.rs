//! `stratus admin` (projects, users, roles) through the real binary: offline on the
//! embedded store between server runs, and on JetStream next to a running `stratus
//! api` (keystone auth), checked by authenticating over HTTP.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{run, sigterm, Proc};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_stratus");

/// Starts `serve` or `api` with identity on a free port; returns it with the identity
/// base URL read from its ready line.
fn start(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(args)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--identity-listen",
            "127.0.0.1:0",
            "--image-listen",
            "127.0.0.1:0",
        ])
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
    // "stratus ... listening on http://A/v2.1 (data in D); identity on http://I/v3"
    let url = line
        .split("; identity on ")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"))
        .trim_end_matches("/v3")
        .to_string();
    (p, url)
}

fn ok(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn fails(o: Output) -> String {
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// (NAME, rest of the columns) of a list's rows, header dropped.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// Status of `POST /v3/auth/tokens` for `user` / `password` on project `project`.
async fn auth(url: &str, user: &str, password: &str, project: &str) -> u16 {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    reqwest::Client::new()
        .post(format!("{url}/v3/auth/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `auth` until it answers `want` (another process follows the stream).
async fn auth_becomes(url: &str, user: &str, password: &str, project: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = auth(url, user, password, project).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{user}: {got}, want {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_on_the_embedded_store() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data").to_str().unwrap().to_string();
    let serve = [
        "serve",
        "--data-dir",
        &d,
        "--hosts",
        "1",
        "--admin-password",
        "admin-pw",
    ];
    // First start bootstraps the roles and the admin.
    let (server, url) = start(&serve);
    assert_eq!(auth(&url, "admin", "admin-pw", "admin").await, 201);
    // The running server holds the data directory.
    let e = fails(run(&["admin", "project", "list", "--data-dir", &d]));
    assert!(e.contains("in use by a running stratus server"), "{e}");
    sigterm(server);

    let out = ok(run(&[
        "admin",
        "project",
        "create",
        "demo",
        "--data-dir",
        &d,
    ]));
    assert!(out.starts_with("project demo created: "), "{out}");
    let e = fails(run(&[
        "admin",
        "project",
        "create",
        "demo",
        "--data-dir",
        &d,
    ]));
    assert!(e.contains("Duplicate entry found with name demo"), "{e}");
    ok(run(&[
        "admin",
        "user",
        "create",
        "alice",
        "--password",
        "pw-1",
        "--project",
        "demo",
        "--role",
        "member",
        "--data-dir",
        &d,
    ]));
    // An unknown role refuses the whole command: bob is not created.
    let e = fails(run(&[
        "admin",
        "user",
        "create",
        "bob",
        "--password",
        "pw",
        "--project",
        "demo",
        "--role",
        "nope",
        "--data-dir",
        &d,
    ]));
    assert!(e.contains("No role with name or id nope"), "{e}");
    ok(run(&[
        "admin",
        "role",
        "add",
        "--user",
        "alice",
        "--project",
        "admin",
        "reader",
        "--data-dir",
        &d,
    ]));
    let e = fails(run(&[
        "admin",
        "role",
        "add",
        "--user",
        "ghost",
        "--project",
        "admin",
        "reader",
        "--data-dir",
        &d,
    ]));
    assert!(e.contains("No user with name or id ghost"), "{e}");

    let projects = rows(&ok(run(&["admin", "project", "list", "--data-dir", &d])));
    let names: Vec<&str> = projects.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(names, vec!["admin", "demo"]);
    let users = rows(&ok(run(&["admin", "user", "list", "--data-dir", &d])));
    // NAME, ENABLED and the role assignments (role@project, sorted).
    let summary: Vec<(String, String, String)> = users
        .iter()
        .map(|r| {
            let mut roles: Vec<&str> = r.get(3).map(|x| x.split(',').collect()).unwrap_or_default();
            roles.sort();
            (r[1].clone(), r[2].clone(), roles.join(","))
        })
        .collect();
    let want = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        summary,
        vec![
            want("admin", "true", "admin@admin"),
            want("alice", "true", "member@demo,reader@admin")
        ]
    );
    let roles = rows(&ok(run(&["admin", "role", "list", "--data-dir", &d])));
    let names: Vec<&str> = roles.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        names,
        vec!["admin", "manager", "member", "reader", "service"]
    );

    // The server sees what the CLI wrote.
    let (server, url) = start(&serve);
    assert_eq!(auth(&url, "alice", "pw-1", "demo").await, 201);
    assert_eq!(auth(&url, "alice", "pw-1", "admin").await, 201);
    assert_eq!(auth(&url, "bob", "pw", "demo").await, 401);
    sigterm(server);

    ok(run(&[
        "admin",
        "user",
        "set",
        "alice",
        "--disable",
        "--data-dir",
        &d,
    ]));
    let (server, url) = start(&serve);
    assert_eq!(auth(&url, "alice", "pw-1", "demo").await, 401);
    sigterm(server);
    ok(run(&[
        "admin",
        "user",
        "set",
        "alice",
        "--enable",
        "--password",
        "pw-2",
        "--data-dir",
        &d,
    ]));
    let e = fails(run(&["admin", "user", "set", "alice", "--data-dir", &d]));
    assert!(e.contains("nothing to change"), "{e}");
    let (server, url) = start(&serve);
    assert_eq!(auth(&url, "alice", "pw-1", "demo").await, 401);
    assert_eq!(auth(&url, "alice", "pw-2", "demo").await, 201);
    sigterm(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_on_jetstream_next_to_a_running_api() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let nurl = nats.url();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("api").to_str().unwrap().to_string();
    let (api, url) = start(&[
        "api",
        "--nats",
        &nurl,
        "--data-dir",
        &d,
        "--admin-password",
        "admin-pw",
    ]);
    assert_eq!(auth(&url, "admin", "admin-pw", "admin").await, 201);
    ok(run(&[
        "admin",
        "user",
        "create",
        "carol",
        "--password",
        "pw-1",
        "--project",
        "admin",
        "--role",
        "member",
        "--nats",
        &nurl,
    ]));
    auth_becomes(&url, "carol", "pw-1", "admin", 201).await;
    let users = rows(&ok(run(&["admin", "user", "list", "--nats", &nurl])));
    assert!(
        users
            .iter()
            .any(|r| r[1] == "carol" && r[3] == "member@admin"),
        "{users:?}"
    );
    ok(run(&[
        "admin",
        "user",
        "set",
        "carol",
        "--password",
        "pw-2",
        "--nats",
        &nurl,
    ]));
    auth_becomes(&url, "carol", "pw-2", "admin", 201).await;
    assert_eq!(auth(&url, "carol", "pw-1", "admin").await, 401);
    let e = fails(run(&[
        "admin", "project", "create", "admin", "--nats", &nurl,
    ]));
    assert!(e.contains("Duplicate entry found with name admin"), "{e}");
    // The compute API of the api process takes the new user's token.
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "carol", "domain": {"name": "Default"}, "password": "pw-2"}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}});
    let resp = reqwest::Client::new()
        .post(format!("{url}/v3/auth/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let token = resp.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = resp.json().await.unwrap();
    let compute = v["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "compute")
        .unwrap()["endpoints"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let s = reqwest::Client::new()
        .get(format!("{compute}/flavors"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 200);
    sigterm(api);
}
