//! Reading one subject's whole history from the embedded log.
//!
//! `cargo bench -p eventlog --bench read`: a subject with 10,000 commits (each with an
//! envelope shaped like the API's: request id, actor, one event) interleaved with as many
//! commits of other subjects, read back whole. The audit API's unpaged history and
//! `replay history` are bounded by this read (issue 11's goal: under 10 ms).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventlog::{
    Actor, AppendRequest, EmbeddedLog, EventLog, ExpectedSeq, Metadata, NewEvent, StreamName,
    Subject,
};

/// Commits of the subject read back.
const COMMITS: u64 = 10_000;

fn meta(n: u64) -> Metadata {
    Metadata {
        correlation_id: format!("req-{:032x}", n),
        causation_id: format!("req-{:032x}", n),
        actor: Actor {
            user: "a".repeat(32),
            project: "b".repeat(32),
            roles: vec!["member".into(), "reader".into()],
        },
        occurred_at: 1_700_000_000_000_000 + n as i64,
    }
}

async fn fill(log: &Arc<EmbeddedLog>, subject: &Subject, other: &Subject) {
    for n in 0..COMMITS {
        for (s, seq) in [(subject, n), (other, n)] {
            log.append(AppendRequest {
                subject: s.clone(),
                expected: ExpectedSeq::Exactly(seq),
                dedupe_id: format!("{s}-{n}"),
                meta: meta(n),
                events: vec![NewEvent {
                    event_type: "instance.locked".into(),
                    version: 1,
                    payload: vec![7u8; 40],
                }],
            })
            .await
            .expect("append");
        }
    }
}

fn read_subject(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let cell = StreamName::cell("cell1").unwrap();
    let subject = Subject::cell(&cell, eventlog::SubjectKind::Instance, "one").unwrap();
    let other = Subject::cell(&cell, eventlog::SubjectKind::Instance, "two").unwrap();
    rt.block_on(fill(&log, &subject, &other));
    let mut group = c.benchmark_group("read_subject");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(COMMITS));
    group.bench_function("owned_10000", |b| {
        b.iter(|| {
            let commits = rt.block_on(log.read_subject(&subject, 1)).unwrap();
            assert_eq!(commits.len() as u64, COMMITS);
        })
    });
    group.bench_function("records_10000", |b| {
        b.iter(|| {
            let read = rt.block_on(log.read_subject_records(&subject, 1)).unwrap();
            let mut events = 0usize;
            for c in read.iter() {
                events += c.unwrap().events.len();
            }
            assert_eq!(events as u64, COMMITS);
        })
    });
    group.finish();
    log.close();
}

criterion_group!(benches, read_subject);
criterion_main!(benches);
