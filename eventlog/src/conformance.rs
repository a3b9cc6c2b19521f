//! The conformance suite every [`EventLog`] backend must pass.
//!
//! Run it all with [`run_all`], giving a factory of fresh, empty logs:
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use eventlog::{EmbeddedLog, EventLog};
//!
//! eventlog::conformance::run_all(|| async {
//!     let dir = tempfile::tempdir().unwrap().keep();
//!     EmbeddedLog::open(&dir).unwrap() as Arc<dyn EventLog>
//! })
//! .await;
//! # }
//! ```
//!
//! Each check is also a public `async fn` taking one fresh log, so a backend can run them as
//! separate tests. Every check panics with a message naming the violated invariant. The checks
//! need a Tokio runtime (they spawn tasks and use timers); they use the streams `cell1`,
//! `cell2` and `api`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Actor, AppendAck, AppendRequest, Commit, ConsumerOptions, Delivery, DurableConsumer, EventLog,
    ExpectedSeq, LogError, Metadata, NewEvent, StreamName, Subject, Subscription,
};

/// How long a check waits for a subscription to deliver before it fails.
const SUBSCRIPTION_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs every check, each on a fresh log from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn EventLog>>,
{
    empty_commit_refused(make().await).await;
    occ_conflict(make().await).await;
    dedupe(make().await).await;
    ordering(make().await).await;
    concurrent_appenders(make().await).await;
    multi_event_commits(make().await).await;
    subscribe_catch_up_then_live(make().await).await;
    subscribe_from_middle(make().await).await;
    subscribe_before_stream_exists(make().await).await;
    streams_isolated(make().await).await;
    ensure_stream_and_list(make().await).await;
    durable_consumer(make().await).await;
}

fn stream(name: &str) -> StreamName {
    StreamName::new(name).expect("valid stream name")
}

/// `stratus.cell.<cell>.instance.<id>`.
fn subject(cell: &str, id: &str) -> Subject {
    Subject::cell(&stream(cell), crate::SubjectKind::Instance, id).expect("valid subject")
}

/// Events `tag-0 .. tag-(n-1)` with payloads that identify them.
fn events(tag: &str, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent {
            event_type: format!("test.{tag}"),
            version: 1 + (i as u16 % 3),
            payload: format!("{tag}/{i}").into_bytes(),
        })
        .collect()
}

fn meta(tag: &str) -> Metadata {
    Metadata {
        correlation_id: format!("req-{tag}"),
        causation_id: format!("cause-{tag}"),
        actor: Actor {
            user: "conformance".into(),
            project: "p".into(),
            roles: vec!["service".into()],
        },
        occurred_at: 1_700_000_000_000_000,
    }
}

/// An append of `n` events tagged `tag`, deduplicated on `tag`.
fn req(subject: &Subject, expected: ExpectedSeq, tag: &str, n: usize) -> AppendRequest {
    AppendRequest {
        subject: subject.clone(),
        expected,
        dedupe_id: format!("dedupe-{tag}"),
        meta: meta(tag),
        events: events(tag, n),
    }
}

async fn append_ok(log: &dyn EventLog, r: AppendRequest) -> AppendAck {
    let subject = r.subject.clone();
    match log.append(r).await {
        Ok(ack) => ack,
        Err(e) => panic!("append to {subject} failed unexpectedly: {e}"),
    }
}

/// Checks that a stored commit carries exactly what the request asked for.
fn assert_matches_request(c: &Commit, r: &AppendRequest) {
    assert_eq!(
        c.subject, r.subject,
        "commit {} has wrong subject",
        c.stream_seq
    );
    assert_eq!(
        c.stream,
        r.subject.stream(),
        "commit {} in wrong stream",
        c.stream_seq
    );
    assert_eq!(
        c.dedupe_id, r.dedupe_id,
        "commit {} lost its dedupe id",
        c.stream_seq
    );
    assert_eq!(c.meta, r.meta, "commit {} lost its metadata", c.stream_seq);
    assert_eq!(
        c.events.len(),
        r.events.len(),
        "commit {} is not whole: {} events stored, {} appended",
        c.stream_seq,
        c.events.len(),
        r.events.len()
    );
    for (i, (s, n)) in c.events.iter().zip(&r.events).enumerate() {
        assert_eq!(
            (&s.event_type, s.version, &s.payload),
            (&n.event_type, n.version, &n.payload),
            "commit {} event {i} differs from what was appended",
            c.stream_seq
        );
        assert_eq!(
            s.event_id.get_version_num(),
            7,
            "commit {} event {i}: event id is not a UUIDv7",
            c.stream_seq
        );
    }
}

async fn next_commit(sub: &mut Subscription, what: &str) -> Commit {
    match tokio::time::timeout(SUBSCRIPTION_TIMEOUT, sub.next()).await {
        Ok(Some(Ok(c))) => c,
        Ok(Some(Err(e))) => panic!("{what}: subscription yielded an error: {e}"),
        Ok(None) => panic!("{what}: subscription ended early"),
        Err(_) => panic!("{what}: no commit within {SUBSCRIPTION_TIMEOUT:?}"),
    }
}

/// Reads a whole stream in pages of `page`.
async fn read_all(log: &dyn EventLog, s: &StreamName, page: usize) -> Vec<Commit> {
    let mut out: Vec<Commit> = Vec::new();
    loop {
        let from = out.last().map_or(1, |c| c.stream_seq + 1);
        let batch = log
            .read_stream(s, from, page)
            .await
            .unwrap_or_else(|e| panic!("read_stream {s} from {from}: {e}"));
        assert!(
            batch.len() <= page,
            "read_stream returned {} commits, more than max {page}",
            batch.len()
        );
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// Asserts `stream_seq` runs 1, 2, 3, ... and `subject_seq` runs 1, 2, 3, ... per subject.
fn assert_contiguous(commits: &[Commit]) {
    let mut per_subject: BTreeMap<&Subject, u64> = BTreeMap::new();
    for (i, c) in commits.iter().enumerate() {
        assert_eq!(
            c.stream_seq,
            i as u64 + 1,
            "stream_seq not contiguous from 1: position {i} holds stream_seq {}",
            c.stream_seq
        );
        let last = per_subject.entry(&c.subject).or_insert(0);
        assert_eq!(
            c.subject_seq,
            *last + 1,
            "subject_seq of {} not contiguous at stream_seq {}",
            c.subject,
            c.stream_seq
        );
        *last = c.subject_seq;
    }
}

/// An append with no events is refused with [`LogError::EmptyCommit`] and writes nothing.
pub async fn empty_commit_refused(log: Arc<dyn EventLog>) {
    let s = subject("cell1", "empty");
    let err = log.append(req(&s, ExpectedSeq::Any, "e", 0)).await;
    assert_eq!(
        err,
        Err(LogError::EmptyCommit),
        "an append with no events must be refused with EmptyCommit"
    );
    assert_eq!(
        log.last_subject_seq(&s).await.unwrap(),
        0,
        "empty commit wrote something"
    );
    assert_eq!(
        log.last_stream_seq(&stream("cell1")).await.unwrap(),
        0,
        "empty commit moved the stream"
    );
}

/// OCC: `Exactly(0)` on a new subject is accepted; a wrong expected sequence is refused with
/// [`LogError::WrongLastSequence`] (reporting the actual sequence) and writes nothing.
pub async fn occ_conflict(log: Arc<dyn EventLog>) {
    let s = subject("cell1", "occ");
    let a1 = append_ok(&*log, req(&s, ExpectedSeq::Exactly(0), "occ-1", 1)).await;
    assert_eq!(
        (a1.stream_seq, a1.subject_seq, a1.duplicate),
        (1, 1, false),
        "Exactly(0) on a new subject must be accepted as its first commit"
    );

    for wrong in [0, 2, 7] {
        let r = log
            .append(req(
                &s,
                ExpectedSeq::Exactly(wrong),
                &format!("occ-bad-{wrong}"),
                2,
            ))
            .await;
        match r {
            Err(LogError::WrongLastSequence {
                subject,
                expected,
                actual,
            }) => {
                assert_eq!(
                    subject,
                    s.as_str(),
                    "WrongLastSequence names the wrong subject"
                );
                assert_eq!(
                    expected, wrong,
                    "WrongLastSequence reports the wrong expected"
                );
                assert_eq!(actual, 1, "WrongLastSequence reports the wrong actual");
            }
            other => panic!("Exactly({wrong}) with last seq 1 must be refused, got {other:?}"),
        }
    }
    assert_eq!(
        log.last_subject_seq(&s).await.unwrap(),
        1,
        "a refused append wrote to the subject"
    );
    assert_eq!(
        log.last_stream_seq(&s.stream()).await.unwrap(),
        1,
        "a refused append moved the stream"
    );
    assert_eq!(
        log.read_subject(&s, 1).await.unwrap().len(),
        1,
        "a refused append is readable"
    );

    let a2 = append_ok(&*log, req(&s, ExpectedSeq::Exactly(1), "occ-2", 1)).await;
    assert_eq!(
        (a2.stream_seq, a2.subject_seq),
        (2, 2),
        "Exactly(1) after one commit"
    );
    let a3 = append_ok(&*log, req(&s, ExpectedSeq::Any, "occ-3", 1)).await;
    assert_eq!(
        (a3.stream_seq, a3.subject_seq),
        (3, 3),
        "Any appends after the last"
    );

    // A refused append does not record its dedupe id: retrying it with the right expected
    // sequence writes it.
    let retry = req(&s, ExpectedSeq::Exactly(3), "occ-bad-2", 2);
    let a4 = append_ok(&*log, retry).await;
    assert!(
        !a4.duplicate,
        "a refused append must not record its dedupe id"
    );
    assert_eq!(a4.subject_seq, 4);

    // Another subject is unaffected by this one's sequence.
    let other = subject("cell1", "occ-other");
    let b = append_ok(&*log, req(&other, ExpectedSeq::Exactly(0), "occ-o", 1)).await;
    assert_eq!(
        (b.stream_seq, b.subject_seq),
        (5, 1),
        "subjects have independent sequences"
    );
}

/// Dedupe: the same dedupe id is acknowledged with the original sequences and
/// `duplicate: true`, and writes nothing, even with a different OCC expectation or payload.
/// An empty dedupe id never deduplicates.
pub async fn dedupe(log: Arc<dyn EventLog>) {
    let s = subject("cell1", "dd");
    let first = append_ok(&*log, req(&s, ExpectedSeq::Exactly(0), "dd-1", 2)).await;
    assert!(!first.duplicate, "a first append is not a duplicate");
    let _ = append_ok(&*log, req(&s, ExpectedSeq::Exactly(1), "dd-2", 1)).await;

    // Same dedupe id, now-stale expectation and different events: still a duplicate.
    let again = append_ok(&*log, req(&s, ExpectedSeq::Exactly(0), "dd-1", 3)).await;
    assert_eq!(
        again,
        AppendAck {
            stream_seq: first.stream_seq,
            subject_seq: first.subject_seq,
            duplicate: true
        },
        "a repeated dedupe id must be acknowledged with the original sequences"
    );
    // Same dedupe id sent to another subject of the stream: still the original.
    let other = subject("cell1", "dd-other");
    let cross = append_ok(&*log, req(&other, ExpectedSeq::Any, "dd-1", 1)).await;
    assert!(cross.duplicate, "a dedupe id is unique across the stream");
    assert_eq!(cross.stream_seq, first.stream_seq);

    assert_eq!(
        log.last_subject_seq(&s).await.unwrap(),
        2,
        "a duplicate wrote to the subject"
    );
    assert_eq!(
        log.last_subject_seq(&other).await.unwrap(),
        0,
        "a duplicate wrote elsewhere"
    );
    assert_eq!(
        log.last_stream_seq(&s.stream()).await.unwrap(),
        2,
        "a duplicate moved the stream"
    );
    let stored = log.read_subject(&s, 1).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].events.len(),
        2,
        "a duplicate replaced the original commit"
    );

    // Concurrent duplicates: exactly one is written.
    let mut tasks = tokio::task::JoinSet::new();
    let c = subject("cell1", "dd-conc");
    for _ in 0..16 {
        let log = log.clone();
        let c = c.clone();
        tasks.spawn(async move { append_ok(&*log, req(&c, ExpectedSeq::Any, "dd-conc", 1)).await });
    }
    let mut acks = Vec::new();
    while let Some(a) = tasks.join_next().await {
        acks.push(a.expect("append task panicked"));
    }
    assert_eq!(
        acks.iter().filter(|a| !a.duplicate).count(),
        1,
        "exactly one of concurrent same-dedupe appends must be written: {acks:?}"
    );
    assert!(
        acks.iter()
            .all(|a| a.stream_seq == acks[0].stream_seq && a.subject_seq == 1),
        "concurrent duplicates must all report the original sequences: {acks:?}"
    );
    assert_eq!(log.last_subject_seq(&c).await.unwrap(), 1);

    // Empty dedupe id: no deduplication.
    let mut r = req(&s, ExpectedSeq::Any, "dd-empty", 1);
    r.dedupe_id.clear();
    let e1 = append_ok(&*log, r.clone()).await;
    let e2 = append_ok(&*log, r).await;
    assert!(
        !e1.duplicate && !e2.duplicate && e2.subject_seq == e1.subject_seq + 1,
        "an empty dedupe id must never deduplicate: {e1:?} {e2:?}"
    );
}

/// The stream position of commit `seq` of `subject` in `all` (a whole stream).
fn sub_all_stream_seq(all: &[Commit], subject: &Subject, seq: u64) -> u64 {
    all.iter()
        .find(|c| &c.subject == subject && c.subject_seq == seq)
        .map(|c| c.stream_seq)
        .expect("commit in the stream")
}

/// Ordering: `stream_seq` is contiguous from 1, `subject_seq` contiguous per subject, and
/// `read_subject` / `read_stream` honour `from` and `max`.
pub async fn ordering(log: Arc<dyn EventLog>) {
    let cell = stream("cell1");
    let subjects: Vec<Subject> = (0..3)
        .map(|i| subject("cell1", &format!("ord{i}")))
        .collect();
    let mut requests = Vec::new();
    for i in 0..30usize {
        let s = &subjects[i % 3];
        let r = req(
            s,
            ExpectedSeq::Exactly((i / 3) as u64),
            &format!("ord-{i}"),
            1 + i % 2,
        );
        let ack = append_ok(&*log, r.clone()).await;
        assert_eq!(
            ack.stream_seq,
            i as u64 + 1,
            "stream_seq must increase by 1 per commit"
        );
        assert_eq!(
            ack.subject_seq,
            (i / 3) as u64 + 1,
            "subject_seq must increase by 1"
        );
        requests.push(r);
    }
    assert_eq!(log.last_stream_seq(&cell).await.unwrap(), 30);
    for s in &subjects {
        assert_eq!(log.last_subject_seq(s).await.unwrap(), 10);
    }

    let all = read_all(&*log, &cell, 7).await;
    assert_eq!(all.len(), 30, "read_stream must return every commit");
    assert_contiguous(&all);
    for (c, r) in all.iter().zip(&requests) {
        assert_matches_request(c, r);
    }

    let page = log.read_stream(&cell, 11, 5).await.unwrap();
    let seqs: Vec<u64> = page.iter().map(|c| c.stream_seq).collect();
    assert_eq!(
        seqs,
        vec![11, 12, 13, 14, 15],
        "read_stream(from 11, max 5)"
    );
    assert!(
        log.read_stream(&cell, 31, 10).await.unwrap().is_empty(),
        "read past the end"
    );
    assert!(
        log.read_stream(&cell, 1, 0).await.unwrap().is_empty(),
        "max 0 reads nothing"
    );
    let from0 = log.read_stream(&cell, 0, 2).await.unwrap();
    assert_eq!(
        from0.first().map(|c| c.stream_seq),
        Some(1),
        "from 0 reads from the start"
    );

    let s1 = &subjects[1];
    let sub = log.read_subject(s1, 4).await.unwrap();
    let sseqs: Vec<u64> = sub.iter().map(|c| c.subject_seq).collect();
    assert_eq!(
        sseqs,
        (4..=10).collect::<Vec<u64>>(),
        "read_subject(from 4)"
    );
    assert!(
        sub.iter().all(|c| &c.subject == s1),
        "read_subject returned another subject"
    );
    for c in &sub {
        assert_eq!(
            c,
            &all[c.stream_seq as usize - 1],
            "read_subject and read_stream disagree"
        );
    }
    assert_eq!(
        log.read_subject(s1, 0).await.unwrap().len(),
        10,
        "from 0 reads everything"
    );
    assert!(
        log.read_subject(s1, 11).await.unwrap().is_empty(),
        "read past the subject end"
    );
    // Ranged reads: from any sequence, with or without the position hint, bounded.
    for from in 1..=11u64 {
        for max in [1usize, 3, 20] {
            let after = if from > 1 {
                sub_all_stream_seq(&all, s1, from - 1)
            } else {
                0
            };
            let want: Vec<u64> = (from..=10).take(max).collect();
            for hint in [after, 0] {
                let got = log.read_subject_range(s1, from, hint, max).await.unwrap();
                assert_eq!(
                    got.iter().map(|c| c.subject_seq).collect::<Vec<_>>(),
                    want,
                    "read_subject_range(from {from}, after {hint}, max {max})"
                );
                for c in &got {
                    assert_eq!(c, &all[c.stream_seq as usize - 1], "ranged read differs");
                }
            }
        }
    }
    assert!(log
        .read_subject_range(s1, 1, 0, 0)
        .await
        .unwrap()
        .is_empty());
    // Borrowed reads carry the same commits as owned ones, from any sequence.
    for from in 1..=11u64 {
        let owned = log.read_subject(s1, from).await.unwrap();
        assert_records_equal(&*log, s1, from, &owned).await;
    }
    let unknown = subject("cell1", "never-written");
    assert!(log
        .read_subject_records(&unknown, 1)
        .await
        .unwrap()
        .is_empty());
    assert!(log.read_subject(&unknown, 1).await.unwrap().is_empty());
    assert!(log
        .read_subject_range(&unknown, 1, 0, 5)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(log.last_subject_seq(&unknown).await.unwrap(), 0);
    assert_eq!(
        log.last_stream_seq(&stream("cell9")).await.unwrap(),
        0,
        "unknown stream"
    );
    assert!(log
        .read_stream(&stream("cell9"), 1, 10)
        .await
        .unwrap()
        .is_empty());

    let ids: HashSet<_> = all
        .iter()
        .flat_map(|c| c.events.iter().map(|e| e.event_id))
        .collect();
    let n: usize = all.iter().map(|c| c.events.len()).sum();
    assert_eq!(ids.len(), n, "event ids must be unique");
}

/// Many tasks appending at once (own subjects with OCC, one shared subject without) are all
/// acknowledged with distinct, contiguous sequences.
pub async fn concurrent_appenders(log: Arc<dyn EventLog>) {
    const TASKS: usize = 32;
    const PER_TASK: usize = 20;
    let shared = subject("cell1", "shared");
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let log = log.clone();
        let shared = shared.clone();
        tasks.spawn(async move {
            let own = subject("cell1", &format!("conc{t}"));
            let mut acks = Vec::new();
            for i in 0..PER_TASK {
                let (s, expected) = if i % 2 == 0 {
                    (&own, ExpectedSeq::Exactly((i / 2) as u64))
                } else {
                    (&shared, ExpectedSeq::Any)
                };
                let ack = append_ok(&*log, req(s, expected, &format!("conc-{t}-{i}"), 1)).await;
                assert!(
                    !ack.duplicate,
                    "a fresh dedupe id was reported as duplicate"
                );
                acks.push((s.clone(), ack));
            }
            acks
        });
    }
    let mut by_subject: BTreeMap<Subject, Vec<u64>> = BTreeMap::new();
    let mut positions = BTreeSet::new();
    while let Some(res) = tasks.join_next().await {
        for (s, ack) in res.expect("appender task panicked") {
            assert!(
                positions.insert(ack.stream_seq),
                "stream_seq {} acked twice",
                ack.stream_seq
            );
            by_subject.entry(s).or_default().push(ack.subject_seq);
        }
    }
    let total = (TASKS * PER_TASK) as u64;
    assert_eq!(
        positions,
        (1..=total).collect::<BTreeSet<u64>>(),
        "concurrent appends must get exactly the positions 1..={total}"
    );
    for (s, mut seqs) in by_subject {
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<u64>>(),
            "subject_seqs of {s} not 1..={n}"
        );
    }
    let all = read_all(&*log, &stream("cell1"), 100).await;
    assert_eq!(all.len() as u64, total);
    assert_contiguous(&all);
}

/// Commits of several events are stored and read back whole, in order, by every read path.
pub async fn multi_event_commits(log: Arc<dyn EventLog>) {
    let s = subject("cell2", "multi");
    let sizes = [1usize, 5, 2, 50, 3];
    let mut requests = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let r = req(
            &s,
            ExpectedSeq::Exactly(i as u64),
            &format!("multi-{i}"),
            *n,
        );
        append_ok(&*log, r.clone()).await;
        requests.push(r);
    }
    let by_subject = log.read_subject(&s, 1).await.unwrap();
    let by_stream = read_all(&*log, &stream("cell2"), 2).await;
    assert_eq!(by_subject.len(), sizes.len());
    assert_eq!(
        by_subject, by_stream,
        "read_subject and read_stream disagree"
    );
    for (c, r) in by_subject.iter().zip(&requests) {
        assert_matches_request(c, r);
    }
    assert_records_equal(&*log, &s, 1, &by_subject).await;
    let mut sub = log.subscribe(&stream("cell2"), 1).await.unwrap();
    for expected in &by_stream {
        let c = next_commit(&mut sub, "multi-event subscription").await;
        assert_eq!(&c, expected, "subscription delivered a different commit");
    }
}

/// `read_subject_records(subject, from)` yields exactly `owned`, field by field.
async fn assert_records_equal(log: &dyn EventLog, s: &Subject, from: u64, owned: &[Commit]) {
    let read = log.read_subject_records(s, from).await.unwrap();
    assert_eq!(read.len(), owned.len(), "records from {from}: count");
    for (got, want) in read.iter().zip(owned) {
        assert_eq!(
            got.unwrap(),
            crate::records::borrow(want),
            "records from {from}: commit {} differs",
            want.stream_seq
        );
    }
}

/// Appends `n` commits to `cell` from a task, round-robin over 5 subjects.
fn spawn_writer(
    log: Arc<dyn EventLog>,
    cell: &'static str,
    tag: &'static str,
    n: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..n {
            let s = subject(cell, &format!("{tag}{}", i % 5));
            append_ok(
                &*log,
                req(&s, ExpectedSeq::Any, &format!("{tag}-{i}"), 1 + i % 3),
            )
            .await;
            if i % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
    })
}

/// Collects commits `from..=to` from a subscription, asserting each arrives once, in order.
async fn collect_in_order(sub: &mut Subscription, from: u64, to: u64, what: &str) -> Vec<Commit> {
    let mut out = Vec::new();
    for expected in from..=to {
        let c = next_commit(sub, what).await;
        assert_eq!(
            c.stream_seq, expected,
            "{what}: expected stream_seq {expected}, got {} (gap, duplicate or reorder)",
            c.stream_seq
        );
        out.push(c);
    }
    out
}

/// A subscription from 1 started while a writer keeps appending delivers every commit exactly
/// once, in order: the stored ones, then the live ones.
pub async fn subscribe_catch_up_then_live(log: Arc<dyn EventLog>) {
    let cell = stream("cell1");
    const BEFORE: usize = 300;
    const DURING: usize = 700;
    let w = spawn_writer(log.clone(), "cell1", "pre", BEFORE);
    w.await.expect("writer panicked");
    let w = spawn_writer(log.clone(), "cell1", "live", DURING);
    let mut sub = log.subscribe(&cell, 1).await.unwrap();
    let total = (BEFORE + DURING) as u64;
    let got = collect_in_order(&mut sub, 1, total, "subscription from 1").await;
    w.await.expect("writer panicked");
    let stored = read_all(&*log, &cell, 128).await;
    assert_eq!(
        got, stored,
        "subscription delivered commits that differ from the stored ones"
    );

    // Nothing more than what was written, and live delivery continues after idling.
    let s = subject("cell1", "after");
    append_ok(&*log, req(&s, ExpectedSeq::Any, "after-1", 1)).await;
    let c = next_commit(&mut sub, "subscription after idle").await;
    assert_eq!(
        c.stream_seq,
        total + 1,
        "subscription skipped or repeated a commit"
    );
}

/// A subscription from a middle position starts exactly there, then follows live appends.
pub async fn subscribe_from_middle(log: Arc<dyn EventLog>) {
    let cell = stream("cell1");
    spawn_writer(log.clone(), "cell1", "mid", 100)
        .await
        .expect("writer panicked");
    let w = spawn_writer(log.clone(), "cell1", "midlive", 200);
    let mut sub = log.subscribe(&cell, 40).await.unwrap();
    collect_in_order(&mut sub, 40, 300, "subscription from 40").await;
    w.await.expect("writer panicked");

    // From a position not yet written: waits for it.
    let mut ahead = log.subscribe(&cell, 302).await.unwrap();
    let s = subject("cell1", "ahead");
    append_ok(&*log, req(&s, ExpectedSeq::Any, "ahead-1", 1)).await;
    append_ok(&*log, req(&s, ExpectedSeq::Any, "ahead-2", 1)).await;
    let c = next_commit(&mut ahead, "subscription from a future position").await;
    assert_eq!(
        c.stream_seq, 302,
        "a subscription from 302 must start at 302"
    );
}

/// Subscribing to a stream with no commit (not even created) works, and sees later appends.
pub async fn subscribe_before_stream_exists(log: Arc<dyn EventLog>) {
    let cell = stream("cell2");
    let mut sub = log.subscribe(&cell, 1).await.unwrap();
    let s = subject("cell2", "late");
    let w = {
        let log = log.clone();
        let s = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            for i in 0..10 {
                append_ok(
                    &*log,
                    req(&s, ExpectedSeq::Exactly(i), &format!("late-{i}"), 2),
                )
                .await;
            }
        })
    };
    let got = collect_in_order(&mut sub, 1, 10, "subscription to a new stream").await;
    w.await.expect("writer panicked");
    assert!(got.iter().all(|c| c.subject == s && c.events.len() == 2));
}

/// Streams are isolated: positions, subjects, reads and subscriptions of one stream never
/// see another's commits.
pub async fn streams_isolated(log: Arc<dyn EventLog>) {
    let (c1, c2, api) = (stream("cell1"), stream("cell2"), StreamName::api());
    let mut sub2 = log.subscribe(&c2, 1).await.unwrap();
    let a = subject("cell1", "iso");
    let b = subject("cell2", "iso");
    let f = Subject::api(crate::SubjectKind::Flavor, "m1.tiny").unwrap();
    for i in 0..5u64 {
        let x = append_ok(
            &*log,
            req(&a, ExpectedSeq::Exactly(i), &format!("iso-a{i}"), 1),
        )
        .await;
        assert_eq!((x.stream_seq, x.subject_seq), (i + 1, i + 1));
    }
    let y = append_ok(&*log, req(&b, ExpectedSeq::Exactly(0), "iso-b", 1)).await;
    assert_eq!(y.stream_seq, 1, "each stream has its own positions");
    let z = append_ok(&*log, req(&f, ExpectedSeq::Exactly(0), "iso-f", 1)).await;
    assert_eq!(z.stream_seq, 1, "the api stream has its own positions");
    // Dedupe ids are per stream: the same id in another stream is a new commit.
    let dup = append_ok(&*log, req(&b, ExpectedSeq::Any, "iso-a0", 1)).await;
    assert!(
        !dup.duplicate,
        "a dedupe id of cell1 must not deduplicate an append to cell2"
    );

    assert_eq!(log.last_stream_seq(&c1).await.unwrap(), 5);
    assert_eq!(log.last_stream_seq(&c2).await.unwrap(), 2);
    assert_eq!(log.last_stream_seq(&api).await.unwrap(), 1);
    assert!(read_all(&*log, &c2, 10)
        .await
        .iter()
        .all(|c| c.subject == b && c.stream == c2));
    assert!(read_all(&*log, &api, 10)
        .await
        .iter()
        .all(|c| c.subject == f && c.stream == api));
    for c in collect_in_order(&mut sub2, 1, 2, "cell2 subscription").await {
        assert_eq!(
            c.subject, b,
            "a cell2 subscription delivered another stream's commit"
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(100), sub2.next())
            .await
            .is_err(),
        "a cell2 subscription delivered more than cell2's commits"
    );
}

/// `ensure_stream` is idempotent and `streams` lists created streams.
pub async fn ensure_stream_and_list(log: Arc<dyn EventLog>) {
    let c3 = stream("cell3");
    log.ensure_stream(&c3).await.unwrap();
    log.ensure_stream(&c3).await.unwrap();
    log.ensure_stream(&StreamName::api()).await.unwrap();
    assert_eq!(
        log.last_stream_seq(&c3).await.unwrap(),
        0,
        "a new stream is empty"
    );
    assert!(log.read_stream(&c3, 1, 10).await.unwrap().is_empty());
    append_ok(
        &*log,
        req(&subject("cell4", "x"), ExpectedSeq::Any, "l-1", 1),
    )
    .await;
    let streams = log.streams().await.unwrap();
    for s in [c3, StreamName::api(), stream("cell4")] {
        assert!(streams.contains(&s), "streams() must list {s}: {streams:?}");
    }
    let unique: BTreeSet<_> = streams.iter().collect();
    assert_eq!(
        unique.len(),
        streams.len(),
        "streams() lists a stream twice"
    );
}

async fn next_delivery(c: &mut DurableConsumer, what: &str) -> Delivery {
    match tokio::time::timeout(SUBSCRIPTION_TIMEOUT, c.next()).await {
        Ok(Some(Ok(d))) => d,
        Ok(Some(Err(e))) => panic!("{what}: durable consumer yielded an error: {e}"),
        Ok(None) => panic!("{what}: durable consumer ended early"),
        Err(_) => panic!("{what}: no delivery within {SUBSCRIPTION_TIMEOUT:?}"),
    }
}

async fn open_consumer(
    log: &dyn EventLog,
    s: &StreamName,
    name: &str,
    start: u64,
    opts: ConsumerOptions,
) -> Option<DurableConsumer> {
    log.durable_consumer(s, name, start, opts)
        .await
        .unwrap_or_else(|e| panic!("open durable consumer {name}: {e}"))
}

/// Durable consumers (skipped by backends without them): bounded outstanding deliveries,
/// redelivery of what was not acknowledged, resumption after reopening, a start position
/// for new consumers, and one consumer shared by two openers splits the commits.
pub async fn durable_consumer(log: Arc<dyn EventLog>) {
    let s = stream("cell1");
    for i in 0..12 {
        append_ok(
            &*log,
            req(
                &subject("cell1", &format!("d{i}")),
                ExpectedSeq::Exactly(0),
                &format!("d{i}"),
                1,
            ),
        )
        .await;
    }
    let quick = ConsumerOptions {
        max_ack_pending: 4,
        ack_wait: Duration::from_secs(2),
    };
    let Some(mut c) = open_consumer(&*log, &s, "reactor-a", 1, quick).await else {
        return; // no durable consumers in this backend
    };
    // At most 4 outstanding.
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(next_delivery(&mut c, "first four").await);
    }
    let seqs: Vec<u64> = first.iter().map(|d| d.commit.stream_seq).collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 4],
        "a new consumer from 1 delivers 1, 2, 3, 4 in order"
    );
    assert!(
        first.iter().all(|d| d.delivered == 1),
        "first deliveries count 1"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), c.next())
            .await
            .is_err(),
        "more than max_ack_pending (4) commits were outstanding"
    );
    // Ack 1..3, keep 4 unacknowledged: it comes again after ack_wait.
    let mut held = None;
    for d in first {
        if d.commit.stream_seq == 4 {
            held = Some(d);
        } else {
            d.ack().await.expect("ack");
        }
    }
    drop(held);
    let mut acked: BTreeSet<u64> = [1, 2, 3].into_iter().collect();
    let mut redelivered_4 = false;
    while acked.len() < 12 {
        let d = next_delivery(&mut c, "rest of the stream").await;
        let seq = d.commit.stream_seq;
        if seq == 4 {
            assert_eq!(
                d.delivered, 2,
                "the unacknowledged commit 4 is delivered a second time"
            );
            redelivered_4 = true;
        } else {
            assert_eq!(
                d.delivered, 1,
                "commit {seq} was acknowledged yet delivered again"
            );
        }
        assert!(
            acked.insert(seq),
            "commit {seq} delivered again after its ack"
        );
        d.ack().await.expect("ack");
    }
    assert!(redelivered_4, "commit 4 was never redelivered");
    assert_eq!(acked, (1..=12).collect::<BTreeSet<u64>>());
    drop(c);

    // Reopened (as after a restart): resumes after the acknowledged commits, whatever
    // start it is given.
    for i in 12..15 {
        append_ok(
            &*log,
            req(
                &subject("cell1", &format!("d{i}")),
                ExpectedSeq::Exactly(0),
                &format!("d{i}"),
                1,
            ),
        )
        .await;
    }
    let mut c = open_consumer(&*log, &s, "reactor-a", 1, quick)
        .await
        .expect("backend gave a consumer before");
    // (A pull of the dropped consumer may have taken one of them: it comes again after
    // ack_wait, so the order may differ; nothing acknowledged comes again.)
    let mut again = BTreeSet::new();
    while again.len() < 3 {
        let d = next_delivery(&mut c, "after reopening").await;
        assert!(
            (13..=15).contains(&d.commit.stream_seq),
            "a reopened consumer delivered {} again although it was acknowledged",
            d.commit.stream_seq
        );
        again.insert(d.commit.stream_seq);
        d.ack().await.expect("ack");
    }
    drop(c);

    // A new consumer with a start position begins there.
    let mut late = open_consumer(&*log, &s, "late", 10, ConsumerOptions::default())
        .await
        .expect("consumer");
    let d = next_delivery(&mut late, "late consumer").await;
    assert_eq!(
        d.commit.stream_seq, 10,
        "a new consumer starts at its start position"
    );
    drop(late);

    // Two openers of one consumer share the work: every commit to exactly one of them.
    let slow = ConsumerOptions {
        max_ack_pending: 8,
        ack_wait: Duration::from_secs(30),
    };
    let a = open_consumer(&*log, &s, "shared", 1, slow)
        .await
        .expect("consumer");
    let b = open_consumer(&*log, &s, "shared", 1, slow)
        .await
        .expect("consumer");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let run = |mut c: DurableConsumer, who: usize| {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(3), c.next()).await
            {
                seen.lock().unwrap().push((d.commit.stream_seq, who));
                // Slow enough that the other opener gets a share.
                tokio::time::sleep(Duration::from_millis(20)).await;
                d.ack().await.expect("ack");
            }
        })
    };
    let (ta, tb) = (run(a, 0), run(b, 1));
    let _ = (ta.await, tb.await);
    let seen = seen.lock().unwrap().clone();
    let mut seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=15).collect::<Vec<u64>>(),
        "a shared consumer delivers each commit to exactly one opener"
    );
    assert!(
        seen.iter().any(|(_, w)| *w == 0) && seen.iter().any(|(_, w)| *w == 1),
        "both openers of a shared consumer received work: {seen:?}"
    );
}
