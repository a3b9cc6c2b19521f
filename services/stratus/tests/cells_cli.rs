//! `stratus cell create` / `stratus cell list` and host mappings through the real
//! binary: on the embedded store (offline, and refused while a server holds the data
//! directory) and on a JetStream nats-server with split processes (a compute process
//! waits for its cell, refuses a host mapped to another cell).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{free_port, run, sigterm_status, spawn_with, Proc};

/// Starts `stratus <args>` and waits for its ready line (`serve` and `api` in
/// development auth with identity and images on free ports).
fn spawn(args: &[&str]) -> Proc {
    spawn_with(args, &[])
}

/// SIGTERM and wait for the exit (its status is not checked here).
fn sigterm(p: Proc) {
    let _ = sigterm_status(p);
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The rows of `cell list` as whitespace-split columns (header checked, then dropped).
fn rows(o: &Output) -> Vec<Vec<String>> {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    let text = stdout(o);
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(head, ["NAME", "STREAM", "HOSTS", "INSTANCES", "STATE"]);
    lines
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn data(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

/// Creates `n` servers and waits until all are ACTIVE.
async fn create_active(port: u16, n: usize) {
    let http = reqwest::Client::new();
    let mut ids = vec![];
    for i in 0..n {
        let r = http
            .post(format!("http://127.0.0.1:{port}/v2.1/servers"))
            .header("X-Auth-Token", "alice:demo")
            .header("OpenStack-API-Version", "compute 2.60")
            .json(&serde_json::json!({"server": {"name": format!("s{i}"), "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1", "networks": "none"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<serde_json::Value>().await.unwrap()["server"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in ids {
        loop {
            let v: serde_json::Value = http
                .get(format!("http://127.0.0.1:{port}/v2.1/servers/{id}"))
                .header("X-Auth-Token", "alice:demo")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["server"]["status"] == "ACTIVE" {
                break;
            }
            assert!(Instant::now() < deadline, "never ACTIVE: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_on_the_embedded_store() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(&tmp.path().join("data"));

    // Run where no server ever ran: refused, naming the directory, nothing created.
    let o = run(&["cell", "create", "cell2", "--data-dir", &d]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no Stratus event log in") && stderr(&o).contains("data"),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("data").exists());

    // A first server bootstraps cell0 and cell1 and maps its 2 hosts to cell1.
    let server = spawn(&[
        "serve",
        "--data-dir",
        &d,
        "--listen",
        "127.0.0.1:0",
        "--hosts",
        "2",
    ]);
    sigterm(server);

    // Offline: create, refuse a duplicate and a bad name.
    let o = run(&["cell", "create", "cell2", "--data-dir", &d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cell cell2 created"), "{}", stdout(&o));
    let o = run(&["cell", "create", "cell2", "--data-dir", &d]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Cell with id cell2 already exists."),
        "{}",
        stderr(&o)
    );
    let o = run(&["cell", "create", "Bad.Name", "--data-dir", &d]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid cell name"), "{}", stderr(&o));
    assert_eq!(
        rows(&run(&["cell", "list", "--data-dir", &d])),
        vec![
            vec!["cell0", "log/cell0.redb", "0", "0", "up"],
            vec!["cell1", "log/cell1.redb", "2", "0", "up"],
            vec!["cell2", "log/cell2.redb", "0", "0", "up"],
        ]
    );

    // A cell that does not exist cannot get hosts: refused with the fix.
    let o = run(&[
        "serve",
        "--data-dir",
        &d,
        "--listen",
        "127.0.0.1:0",
        "--identity-listen",
        "127.0.0.1:0",
        "--image-listen",
        "127.0.0.1:0",
        "--cell-hosts",
        "cell3=1",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("create it with `stratus cell create cell3`"),
        "{}",
        stderr(&o)
    );

    // serve runs hosts in cell2 too; the weigher spreads 4 servers over the 4 hosts.
    let port = free_port();
    let server = spawn(&[
        "serve",
        "--data-dir",
        &d,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--hosts",
        "2",
        "--cell-hosts",
        "cell2=2",
    ]);
    create_active(port, 4).await;

    // While it runs, the data dir is locked: a clear message, nothing written.
    let o = run(&["cell", "create", "cell3", "--data-dir", &d]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("in use by a running stratus server"),
        "{}",
        stderr(&o)
    );
    let o = run(&["cell", "list", "--data-dir", &d]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("in use by a running stratus server"));
    sigterm(server);

    assert_eq!(
        rows(&run(&["cell", "list", "--data-dir", &d])),
        vec![
            vec!["cell0", "log/cell0.redb", "0", "0", "up"],
            vec!["cell1", "log/cell1.redb", "2", "2", "up"],
            vec!["cell2", "log/cell2.redb", "2", "2", "up"],
        ]
    );
    // cell3 was never created.
    assert!(!tmp.path().join("data/log/cell3.redb").exists());

    // A restart does not create the default cells twice, and replay still matches.
    let server = spawn(&[
        "serve",
        "--data-dir",
        &d,
        "--listen",
        "127.0.0.1:0",
        "--cell-hosts",
        "cell2=2",
    ]);
    sigterm(server);
    assert_eq!(rows(&run(&["cell", "list", "--data-dir", &d])).len(), 3);
    let o = run(&["replay", "rebuild", "--data-dir", &d]);
    assert!(stdout(&o).contains("MATCH"), "{}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_and_host_mappings_on_jetstream() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| data(&tmp.path().join(n));

    // A compute process whose cell does not exist waits, then fails naming the fix.
    let t0 = Instant::now();
    let o = run(&[
        "compute",
        "--nats",
        &url,
        "--host",
        "h1",
        "--cell",
        "edge",
        "--cell-wait",
        "2",
        "--data-dir",
        &d("c0"),
    ]);
    assert!(!o.status.success());
    assert!(t0.elapsed() >= Duration::from_secs(2));
    assert!(
        stderr(&o).contains("create it with `stratus cell create edge`"),
        "{}",
        stderr(&o)
    );

    // Created while a compute process waits for it: it starts.
    let waiting = std::thread::spawn({
        let (url, dir) = (url.clone(), d("c1"));
        move || {
            spawn(&[
                "compute",
                "--nats",
                &url,
                "--host",
                "h1",
                "--cell",
                "edge",
                "--data-dir",
                &dir,
            ])
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let o = run(&["cell", "create", "edge", "--nats", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("STRATUS_CELL_EDGE"), "{}", stdout(&o));
    let c1 = waiting.join().unwrap();
    let o = run(&["cell", "create", "edge", "--nats", &url]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Cell with id edge already exists."));

    // An API process bootstraps cell0 and cell1.
    let api = spawn(&[
        "api",
        "--nats",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &d("a"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let list = loop {
        let r = rows(&run(&["cell", "list", "--nats", &url]));
        if r.len() == 3 {
            break r;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        list,
        vec![
            vec!["cell0", "STRATUS_CELL_CELL0", "0", "0", "up"],
            vec!["cell1", "STRATUS_CELL_CELL1", "0", "0", "up"],
            vec!["edge", "STRATUS_CELL_EDGE", "1", "0", "up"],
        ]
    );

    // h1 belongs to edge: a compute process for h1 in cell1 refuses to start.
    let o = run(&[
        "compute",
        "--nats",
        &url,
        "--host",
        "h1",
        "--cell",
        "cell1",
        "--data-dir",
        &d("c2"),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("refusing to start compute") && e.contains("h1") && e.contains("edge"),
        "{e}"
    );
    // Restarting h1 in its own cell is fine (the mapping is idempotent).
    sigterm(c1);
    let c1 = spawn(&[
        "compute",
        "--nats",
        &url,
        "--host",
        "h1",
        "--cell",
        "edge",
        "--data-dir",
        &d("c1"),
    ]);
    let r = rows(&run(&["cell", "list", "--nats", &url]));
    assert_eq!(r[2], vec!["edge", "STRATUS_CELL_EDGE", "1", "0", "up"]);
    sigterm(c1);
    sigterm(api);
}
