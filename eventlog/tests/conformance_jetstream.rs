//! The conformance suite on [`JetStreamLog`] against a real `nats-server -js`, one fresh
//! server per log (streams of one Stratus log claim `stratus.>` subjects, which JetStream
//! refuses to give to two streams of one server), plus JetStream-specific checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventlog::conformance;
use eventlog::testing::NatsServer;
use eventlog::{
    AppendRequest, EventLog, ExpectedSeq, JetStreamLog, JetStreamOptions, LogError, Metadata,
    NewEvent, StreamName, Subject,
};

fn options() -> JetStreamOptions {
    JetStreamOptions {
        stream_prefix: "TEST".into(),
        ..JetStreamOptions::default()
    }
}

/// Makes fresh logs, each on its own server, and keeps the servers until dropped.
#[derive(Default, Clone)]
struct Factory {
    servers: Arc<Mutex<Vec<NatsServer>>>,
}

impl Factory {
    async fn make(&self) -> Arc<dyn EventLog> {
        let server = tokio::task::spawn_blocking(NatsServer::start)
            .await
            .unwrap()
            .expect("start nats-server");
        let log = JetStreamLog::connect(&server.url(), options())
            .await
            .expect("connect to nats-server");
        self.servers.lock().unwrap().push(server);
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

fn req(subject: &Subject, expected: ExpectedSeq, dedupe: &str) -> AppendRequest {
    AppendRequest {
        subject: subject.clone(),
        expected,
        dedupe_id: dedupe.into(),
        meta: Metadata::default(),
        events: vec![NewEvent {
            event_type: "test.e".into(),
            version: 1,
            payload: dedupe.as_bytes().to_vec(),
        }],
    }
}

fn cell1() -> StreamName {
    StreamName::cell("cell1").unwrap()
}

/// Two logs on one server stand for two processes: each one's cache of the subject's last
/// position goes stale when the other writes, and the server's check keeps sequences right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_share_sequences_and_dedupe() {
    let server = NatsServer::start().unwrap();
    let a = JetStreamLog::connect(&server.url(), options())
        .await
        .unwrap();
    let b = JetStreamLog::connect(&server.url(), options())
        .await
        .unwrap();
    let s = Subject::cell(&cell1(), eventlog::SubjectKind::Host, "h1").unwrap();

    let a1 = a
        .append(req(&s, ExpectedSeq::Exactly(0), "a1"))
        .await
        .unwrap();
    assert_eq!((a1.stream_seq, a1.subject_seq), (1, 1));
    let b1 = b
        .append(req(&s, ExpectedSeq::Exactly(1), "b1"))
        .await
        .unwrap();
    assert_eq!((b1.stream_seq, b1.subject_seq), (2, 2));
    // a's cache says (1, 1): stale. Exactly(1) must be refused with actual 2.
    match a.append(req(&s, ExpectedSeq::Exactly(1), "a2")).await {
        Err(LogError::WrongLastSequence {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (1, 2)),
        other => panic!("stale expectation must be refused, got {other:?}"),
    }
    // Any on a stale cache retries on top of the real last.
    let a3 = a.append(req(&s, ExpectedSeq::Any, "a3")).await.unwrap();
    assert_eq!((a3.stream_seq, a3.subject_seq), (3, 3));
    // b's dedupe id seen through a.
    let dup = a
        .append(req(&s, ExpectedSeq::Exactly(0), "b1"))
        .await
        .unwrap();
    assert_eq!(
        (dup.stream_seq, dup.subject_seq, dup.duplicate),
        (2, 2, true)
    );

    // Concurrent Any appends from both "processes".
    let mut tasks = tokio::task::JoinSet::new();
    for (w, log) in [a.clone(), b.clone()].into_iter().enumerate() {
        let s = s.clone();
        tasks.spawn(async move {
            for i in 0..25 {
                log.append(req(&s, ExpectedSeq::Any, &format!("w{w}-{i}")))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let all = b.read_subject(&s, 1).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|c| c.subject_seq).collect();
    assert_eq!(seqs, (1..=53).collect::<Vec<u64>>());
    assert_eq!(a.last_subject_seq(&s).await.unwrap(), 53);
}

/// A stream whose configuration could drop events is refused, with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_stream_that_could_drop_events() {
    let server = NatsServer::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "TEST_CELL_CELL1".into(),
        subjects: vec!["stratus.cell.cell1.>".into()],
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    let log = JetStreamLog::connect(&server.url(), options())
        .await
        .unwrap();
    let err = log.ensure_stream(&cell1()).await.unwrap_err();
    match &err {
        LogError::Storage(m) => assert!(
            m.contains("TEST_CELL_CELL1") && m.contains("max_age") && m.contains("refusing"),
            "{m}"
        ),
        other => panic!("expected a storage error, got {other:?}"),
    }
    let s = Subject::cell(&cell1(), eventlog::SubjectKind::Instance, "x").unwrap();
    assert!(log.append(req(&s, ExpectedSeq::Any, "x")).await.is_err());

    // The stream it creates itself passes its own check, and is named as documented.
    log.ensure_stream(&StreamName::api()).await.unwrap();
    let info = js.get_stream("TEST_API").await.unwrap();
    let cfg = &info.cached_info().config;
    assert_eq!(cfg.subjects, vec!["stratus.api.>".to_string()]);
    assert!(cfg.deny_delete && cfg.deny_purge);
    assert_eq!(cfg.max_messages, -1);
    assert_eq!(
        log.streams().await.unwrap(),
        vec![StreamName::api(), cell1()]
    );
}

/// Headers carry the subject sequence and event types; the dedupe id is the message id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_carry_routing_headers() {
    let server = NatsServer::start().unwrap();
    let log = JetStreamLog::connect(&server.url(), options())
        .await
        .unwrap();
    let s = Subject::cell(&cell1(), eventlog::SubjectKind::Instance, "h").unwrap();
    log.append(req(&s, ExpectedSeq::Exactly(0), "h1"))
        .await
        .unwrap();
    log.append(req(&s, ExpectedSeq::Exactly(1), "h2"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let stream = js.get_stream("TEST_CELL_CELL1").await.unwrap();
    let m = stream.get_raw_message(2).await.unwrap();
    let h = |k: &str| m.headers.get(k).map(|v| v.as_str().to_string());
    assert_eq!(h("Stratus-Subject-Seq").as_deref(), Some("2"));
    assert_eq!(h("Stratus-Event-Types").as_deref(), Some("test.e"));
    assert_eq!(h("Nats-Msg-Id").as_deref(), Some("h2"));
}

async fn next(sub: &mut eventlog::Subscription) -> eventlog::Commit {
    tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("subscription stalled")
        .expect("subscription ended")
        .expect("subscription error")
}

/// A subscription survives a server restart (kill -9) without a gap or a duplicate, and
/// acknowledged commits survive it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_survives_server_restart() {
    let mut server = NatsServer::start().unwrap();
    let log = JetStreamLog::connect(&server.url(), options())
        .await
        .unwrap();
    let s = Subject::cell(&cell1(), eventlog::SubjectKind::Instance, "r").unwrap();
    for i in 0..5 {
        log.append(req(&s, ExpectedSeq::Exactly(i), &format!("r{i}")))
            .await
            .unwrap();
    }
    let mut sub = log.subscribe(&cell1(), 1).await.unwrap();
    for i in 1..=5 {
        assert_eq!(next(&mut sub).await.stream_seq, i);
    }
    tokio::task::block_in_place(|| server.restart()).unwrap();
    // Appends work again once the client has reconnected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut i = 5;
    while i < 10 {
        match log
            .append(req(&s, ExpectedSeq::Exactly(i), &format!("r{i}")))
            .await
        {
            Ok(ack) => {
                assert_eq!(ack.subject_seq, i + 1);
                i += 1;
            }
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no append after restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for i in 6..=10 {
        assert_eq!(next(&mut sub).await.stream_seq, i);
    }
    assert_eq!(log.read_subject(&s, 1).await.unwrap().len(), 10);
}

/// Heartbeats live in their own stream that keeps only the last beat per service
/// instance, invisible to the event log's stream list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_the_last_beat_per_subject() {
    use eventlog::Heartbeats;
    let server = NatsServer::start().unwrap();
    let log = JetStreamLog::connect(&server.url(), options())
        .await
        .unwrap();
    assert!(log.beats().await.unwrap().is_empty());
    for i in 0..5 {
        log.beat("compute", "host.a", format!("a{i}").as_bytes())
            .await
            .unwrap();
    }
    log.beat("compute", "host b", b"b0").await.unwrap();
    let mut beats = log.beats().await.unwrap();
    beats.sort_by(|x, y| x.id.cmp(&y.id));
    let got: Vec<(&str, &str, &[u8])> = beats
        .iter()
        .map(|b| (b.service.as_str(), b.id.as_str(), b.payload.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("compute", "host b", b"b0".as_slice()),
            ("compute", "host.a", b"a4".as_slice())
        ]
    );
    let now = eventlog::now_micros();
    assert!(
        beats.iter().all(|b| (now - b.at).abs() < 10_000_000),
        "{beats:?}"
    );
    // One message per subject is all the stream holds.
    let js = async_nats::jetstream::new(log.client().clone());
    let mut hb = js.get_stream(log.heartbeat_stream()).await.unwrap();
    let info = hb.info().await.unwrap();
    assert_eq!(info.state.messages, 2);
    assert_eq!(info.config.max_messages_per_subject, 1);
    // Not an event stream.
    log.ensure_stream(&cell1()).await.unwrap();
    assert_eq!(log.streams().await.unwrap(), vec![cell1()]);
}

/// More than one replica on a server outside a cluster is refused at connect, naming the
/// fix, before any stream is touched: nats-server 2.9 would accept raising an existing
/// stream's replicas there and then fail to load that stream at its next restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_beyond_one_are_refused_on_a_single_server() {
    let mut server = NatsServer::start().unwrap();
    let r1 = JetStreamLog::connect(&server.url(), options())
        .await
        .unwrap();
    let s = Subject::cell(&cell1(), eventlog::SubjectKind::Instance, "kept").unwrap();
    r1.append(req(&s, ExpectedSeq::Exactly(0), "kept"))
        .await
        .unwrap();
    r1.close();
    let err = JetStreamLog::connect(
        &server.url(),
        JetStreamOptions {
            replicas: 3,
            ..options()
        },
    )
    .await
    .unwrap_err();
    match &err {
        LogError::Storage(m) => assert!(
            m.contains("not a cluster") && m.contains("--nats-replicas 1"),
            "{m}"
        ),
        other => panic!("expected a storage error, got {other:?}"),
    }
    // The stream was left as it was: it survives a server restart with its commit.
    tokio::task::block_in_place(|| server.restart()).unwrap();
    let again = JetStreamLog::connect(&server.url(), options())
        .await
        .unwrap();
    assert_eq!(again.streams().await.unwrap(), vec![cell1()]);
    assert_eq!(again.read_subject(&s, 1).await.unwrap().len(), 1);
}
