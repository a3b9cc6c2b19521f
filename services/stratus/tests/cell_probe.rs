//! The cell health probe against a real nats-server: when the server goes away, every
//! cell is reported down after ~3 s; when it comes back, up again.

use std::time::{Duration, Instant};

use domain::CellName;
use stratus::stack::{Stack, StackOptions};

async fn wait_for(stack: &Stack, what: &str, cond: impl Fn(&Stack) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond(stack) {
        assert!(Instant::now() < deadline, "never {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cell_streams_are_reported_down_then_up() {
    let mut nats = eventlog::testing::NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let mut o = StackOptions::new(dir.path());
    o.listen = "127.0.0.1:0".parse().unwrap();
    o.auth = stratus::stack::AuthKind::NoAuth;
    o.identity_listen = "127.0.0.1:0".parse().unwrap();
    o.hosts = 1;
    o.nats = Some(nats.url());
    let stack = Stack::start(o).await.unwrap();
    let health = |s: &Stack, c: &CellName| s.engine.world().health.is_down(c);
    let (c0, c1) = (CellName::cell0(), CellName::cell1());
    // Up while the server runs (give the probe a few rounds).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!health(&stack, &c0) && !health(&stack, &c1));

    let t0 = Instant::now();
    nats.stop();
    wait_for(&stack, "down", |s| health(s, &c0) && health(s, &c1)).await;
    assert!(
        t0.elapsed() >= Duration::from_secs(3),
        "down only after ~3 s of failures"
    );

    nats.restart().unwrap();
    wait_for(&stack, "up again", |s| {
        s.engine.world().health.down().is_empty()
    })
    .await;
    stack.stop().await;
}
