//! The conformance suite on [`EmbeddedLog`], one fresh temporary directory per log.

use std::sync::{Arc, Mutex};

use eventlog::conformance;
use eventlog::{EmbeddedLog, EventLog};
use tempfile::TempDir;

/// Makes fresh logs and keeps their directories until dropped.
#[derive(Default, Clone)]
struct Factory {
    dirs: Arc<Mutex<Vec<TempDir>>>,
}

impl Factory {
    async fn make(&self) -> Arc<dyn EventLog> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path()).expect("open log");
        self.dirs.lock().unwrap().push(dir);
        log
    }
}

macro_rules! check {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let f = Factory::default();
            conformance::$name(f.make().await).await;
        }
    };
}

check!(empty_commit_refused);
check!(occ_conflict);
check!(dedupe);
check!(ordering);
check!(concurrent_appenders);
check!(multi_event_commits);
check!(subscribe_catch_up_then_live);
check!(subscribe_from_middle);
check!(subscribe_before_stream_exists);
check!(streams_isolated);
check!(ensure_stream_and_list);
check!(durable_consumer);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_current_thread_runtime_too() {
    // The whole suite through `run_all`, on a separate runtime flavour.
    let f = Factory::default();
    let rt_f = f.clone();
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(conformance::run_all(|| rt_f.make()))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reopen_keeps_everything_and_discovers_streams() {
    use eventlog::{AppendRequest, ExpectedSeq, Metadata, NewEvent, StreamName, Subject};
    let dir = tempfile::tempdir().unwrap();
    let cell = StreamName::cell("cell1").unwrap();
    let s = Subject::cell(&cell, eventlog::SubjectKind::Instance, "a").unwrap();
    let req = |i: u64| AppendRequest {
        subject: s.clone(),
        expected: ExpectedSeq::Exactly(i),
        dedupe_id: format!("d{i}"),
        meta: Metadata::default(),
        events: vec![NewEvent {
            event_type: "t".into(),
            version: 1,
            payload: vec![i as u8],
        }],
    };
    let written = {
        let log = EmbeddedLog::open(dir.path()).unwrap();
        for i in 0..3 {
            log.append(req(i)).await.unwrap();
        }
        log.ensure_stream(&StreamName::api()).await.unwrap();
        let written = log.read_stream(&cell, 1, 10).await.unwrap();
        log.close();
        assert_eq!(log.append(req(3)).await, Err(eventlog::LogError::Closed));
        written
    };
    let log = EmbeddedLog::open(dir.path()).unwrap();
    assert_eq!(
        log.streams().await.unwrap(),
        vec![StreamName::api(), cell.clone()]
    );
    assert_eq!(log.last_stream_seq(&cell).await.unwrap(), 3);
    assert_eq!(log.read_stream(&cell, 1, 10).await.unwrap(), written);
    let dup = log.append(req(0)).await.unwrap();
    assert!(dup.duplicate, "dedupe ids survive a reopen");
    let ack = log.append(req(3)).await.unwrap();
    assert_eq!((ack.stream_seq, ack.subject_seq), (4, 4));
}
