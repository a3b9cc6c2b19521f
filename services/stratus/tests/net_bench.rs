//! The network benchmarks of `stratus bench`, small: `--ports 40 --concurrency 8`
//! (embedded store and JetStream) and `--networked --cycles 20`, through the library
//! entry points the binary calls. Each run checks its own exactness (exactly half the
//! port creates accepted with distinct addresses, the rest refused; every networked
//! server addressed and every port released) and fails otherwise; these tests assert
//! the figures it reports on top.

use stratus::bench::{self, BenchOptions};
use stratus::net_bench;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ports_bench_accepts_exactly_half_on_the_embedded_store() {
    let r = net_bench::ports(40, 8, None)
        .await
        .expect("bench --ports 40");
    assert_eq!((r.creates, r.room), (40, 20));
    assert_eq!((r.accepted, r.distinct, r.refused), (20, 20, 20));
    assert_eq!(r.cidr, "10.64.0.0/27");
    assert!(r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms && r.delete_seconds > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ports_bench_accepts_exactly_half_on_jetstream() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server");
    // An odd count: room for 20, 21 refused.
    let r = net_bench::ports(41, 8, Some(nats.url()))
        .await
        .expect("bench --ports 41 --nats");
    assert_eq!((r.accepted, r.distinct, r.refused), (20, 20, 21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn networked_lifecycle_uses_and_releases_one_port_per_cycle() {
    let r = bench::run(BenchOptions {
        cycles: 20,
        concurrency: 8,
        data_dir: None,
        hosts: 4,
        nats: None,
        log_concurrency: 1,
        log_appends: 0,
        networked: true,
    })
    .await
    .expect("bench --networked --cycles 20");
    assert_eq!(r.cycles, 20);
    let ports = r.ports.expect("a networked run reports its ports");
    assert_eq!(ports.addressed, 20);
    assert!(r.rebuild_matches, "replay rebuild of the networked run");
}
