//! What a new user meets first: each subcommand takes only the flags it uses, user
//! errors are one clear message (no backtrace, nothing left behind), commands that read
//! data refuse a directory without a store, and a second process on a data directory
//! is told who holds it and what to do.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, sigterm_status, Proc};

fn stratus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(args)
        // A user who set this must still get messages, not crash reports.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run stratus")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// `serve` on free ports in `dir`, stderr to `<dir>.log`, once it printed its ready line.
fn serve(dir: &Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args(["serve", "--data-dir", dir.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--identity-listen",
            "127.0.0.1:0",
            "--image-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let p = Proc(child);
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while std::io::Read::read(&mut out, &mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    assert!(
        text(&line).starts_with("stratus listening"),
        "{}",
        text(&line)
    );
    (p, port)
}

#[test]
fn each_subcommand_lists_only_the_flags_it_uses() {
    let api_only = [
        "--listen",
        "--image-listen",
        "--image-dir",
        "--tls-cert",
        "--auth",
    ];
    for part in ["scheduler", "compute", "projector"] {
        let help = text(&stratus(&[part, "--help"]).stdout);
        for flag in api_only {
            assert!(
                !help.contains(&format!("{flag} ")),
                "{part} --help lists {flag}:\n{help}"
            );
        }
    }
    let api = text(&stratus(&["api", "--help"]).stdout);
    for flag in api_only {
        assert!(api.contains(flag), "api --help lacks {flag}:\n{api}");
    }
    assert!(!api.contains("--host-vcpus"), "{api}");
    let compute = text(&stratus(&["compute", "--help"]).stdout);
    assert!(compute.contains("--report-interval"), "{compute}");
    assert!(!compute.contains("--task-timeout"), "{compute}");
    let scheduler = text(&stratus(&["scheduler", "--help"]).stdout);
    assert!(scheduler.contains("--service-down-time"), "{scheduler}");
    assert!(!scheduler.contains("--report-interval"), "{scheduler}");
    // Flags a part no longer takes are refused, not silently ignored.
    let o = stratus(&[
        "scheduler",
        "--nats",
        "nats://127.0.0.1:1",
        "--listen",
        "127.0.0.1:1",
    ]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--listen"), "{}", text(&o.stderr));
}

#[test]
fn commands_that_read_data_refuse_a_directory_without_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("not-a-store");
    let d = empty.to_str().unwrap();
    for args in [
        vec!["replay", "rebuild", "--data-dir", d],
        vec![
            "replay",
            "history",
            "--data-dir",
            d,
            "70a599e0-31e7-49b7-b260-868f441e862b",
        ],
        vec!["admin", "project", "list", "--data-dir", d],
        vec!["admin", "user", "list", "--data-dir", d],
        vec!["cell", "create", "cell2", "--data-dir", d],
        vec!["cell", "list", "--data-dir", d],
    ] {
        let o = stratus(&args);
        let err = text(&o.stderr);
        assert!(
            !o.status.success(),
            "{args:?} succeeded: {}",
            text(&o.stdout)
        );
        assert!(err.contains("no Stratus event log in"), "{args:?}: {err}");
        assert!(
            err.contains("not-a-store"),
            "{args:?} names no directory: {err}"
        );
        assert!(!err.contains("backtrace"), "{args:?}: {err}");
        assert!(!empty.exists(), "{args:?} created {}", empty.display());
    }
}

#[test]
fn a_busy_data_directory_or_port_is_one_clear_message_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (server, port) = serve(&dir, &["--auth", "noauth"]);
    let d = dir.to_str().unwrap();

    // serve twice on one directory: who holds it, and what to do.
    let o = stratus(&[
        "serve",
        "--data-dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--identity-listen",
        "127.0.0.1:0",
        "--image-listen",
        "127.0.0.1:0",
    ]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("in use by a running stratus server (pid "),
        "{err}"
    );
    assert!(err.contains("--data-dir"), "{err}");
    assert!(
        !err.contains("backtrace") && !err.contains("Database already open"),
        "{err}"
    );

    // replay history while serving: said once, with where to ask instead.
    let o = stratus(&[
        "replay",
        "history",
        "--data-dir",
        d,
        "70a599e0-31e7-49b7-b260-868f441e862b",
    ]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(
        err.matches("in use by a running stratus server").count(),
        1,
        "{err}"
    );
    assert!(err.contains("/v1/instances/"), "{err}");

    // A port in use: the address, the flag, no spurious errors, no data dir left.
    let fresh = tmp.path().join("fresh");
    let o = stratus(&[
        "serve",
        "--data-dir",
        fresh.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--identity-listen",
        "127.0.0.1:0",
        "--image-listen",
        "127.0.0.1:0",
    ]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("--listen"), "{err}");
    assert!(
        !err.contains("ERROR") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(!fresh.exists(), "a failed start left {}", fresh.display());

    assert!(sigterm_status(server).success());
    // The log went to a file: plain text, no colour codes.
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
    assert!(log.contains("stratus is up"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file: {log:?}");
}

#[test]
fn a_new_admin_password_on_an_existing_store_is_reported_as_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (server, _) = serve(&dir, &["--admin-password", "first-secret"]);
    assert!(sigterm_status(server).success());
    let openrc = std::fs::read_to_string(dir.join("openrc")).unwrap();
    assert!(openrc.contains("first-secret"));
    let (server, _) = serve(&dir, &["--admin-password", "second-secret"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
        if log.contains("stratus is up") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(sigterm_status(server).success());
    assert!(
        log.contains("--admin-password / STRATUS_ADMIN_PASSWORD ignored"),
        "{log}"
    );
    assert!(
        log.contains("stratus admin user set admin --password"),
        "{log}"
    );
    assert!(
        !log.contains("second-secret"),
        "the password was logged: {log}"
    );
    // openrc still holds the password in force.
    assert_eq!(std::fs::read_to_string(dir.join("openrc")).unwrap(), openrc);
}

/// A split part logs what it runs: a compute process its own hosts and cell, no API
/// address.
#[test]
fn a_compute_process_logs_its_hosts_not_an_api() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let url = nats.url();
    let tmp = tempfile::tempdir().unwrap();
    let api = common::spawn_api(&url, free_port(), &tmp.path().join("api"));
    let log_path = tmp.path().join("compute.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .env("STRATUS_NETWORK_LISTEN", "127.0.0.1:0")
        .args([
            "compute",
            "--nats",
            &url,
            "--host",
            "edge",
            "--hosts",
            "2",
            "--data-dir",
        ])
        .arg(tmp.path().join("c"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let compute = Proc(child);
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"stratus compute ");
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if log.contains("compute agents running") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(sigterm_status(compute).success());
    drop(api);
    assert!(log.contains("hosts=edge-1@cell1,edge-2@cell1"), "{log}");
    assert!(log.contains("roles=compute"), "{log}");
    assert!(!log.contains("addr="), "{log}");
    assert!(!log.contains("8774"), "{log}");
}
