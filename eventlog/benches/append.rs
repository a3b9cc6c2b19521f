//! Concurrent append throughput of the embedded log (group commit).
//!
//! `cargo bench -p eventlog --bench append`: N tasks each append 1-event commits to their own
//! subject with OCC, all in one stream; reports events per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eventlog::{
    AppendRequest, EmbeddedLog, EventLog, ExpectedSeq, Metadata, NewEvent, StreamName, Subject,
};

/// Commits each task appends per measured iteration.
const PER_TASK: u64 = 40;

/// Runs `tasks` appenders for `PER_TASK` commits each; returns the elapsed time.
async fn round(log: &Arc<EmbeddedLog>, tasks: usize, round: u64) -> Duration {
    let cell = StreamName::cell("cell1").unwrap();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let log = log.clone();
        let subject =
            Subject::cell(&cell, eventlog::SubjectKind::Instance, &format!("t{t}")).unwrap();
        set.spawn(async move {
            for i in 0..PER_TASK {
                let seq = round * PER_TASK + i;
                log.append(AppendRequest {
                    subject: subject.clone(),
                    expected: ExpectedSeq::Exactly(seq),
                    dedupe_id: format!("{t}-{seq}"),
                    meta: Metadata::default(),
                    events: vec![NewEvent {
                        event_type: "bench.event".into(),
                        version: 1,
                        payload: vec![0u8; 64],
                    }],
                })
                .await
                .expect("append");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("appender panicked");
    }
    start.elapsed()
}

fn concurrent_appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("append");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for tasks in [64usize, 512] {
        group.throughput(Throughput::Elements(tasks as u64 * PER_TASK));
        group.bench_with_input(
            BenchmarkId::new("tasks_x_1_event", tasks),
            &tasks,
            |b, &tasks| {
                let dir = tempfile::tempdir().unwrap();
                let log = EmbeddedLog::open(dir.path()).unwrap();
                let mut n = 0;
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += rt.block_on(round(&log, tasks, n));
                        n += 1;
                    }
                    total
                });
                log.close();
            },
        );
    }
    group.finish();
}

criterion_group!(benches, concurrent_appends);
criterion_main!(benches);
