//! The sinks' resume points: exact after a batch, and on JetStream also after a crash
//! between publishing and recording (the messages published since the last record are
//! found by scanning the stream).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use eventlog::{CheckpointStore, EmbeddedCheckpoints, EventLog, LogError, StreamName};
use notifier::jetstream::JetStreamNotifications;
use notifier::store::{EmbeddedNotifications, Entry, Feed, Filter, Resume, Sink};
use notifier::Notification;
use serde_json::json;
use uuid::Uuid;

fn entry(seq: u64, index: u32) -> Entry {
    Entry {
        stream: "cell1".into(),
        seq,
        index,
        notification: Notification {
            priority: "INFO".into(),
            event_type: "instance.pause.start".into(),
            timestamp: "2026-01-01 00:00:00.000000".into(),
            publisher_id: "nova-compute:host1".into(),
            message_id: Uuid::from_u128(((seq as u128) << 32) + index as u128),
            payload: json!({"nova_object.data": {"tenant_id": "p1"}}),
        },
    }
}

fn resume(seq: u64, written: u32) -> Resume {
    Resume { seq, written }
}

#[tokio::test]
async fn embedded_resume_points_follow_each_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    {
        let s = EmbeddedNotifications::open(&path).unwrap();
        s.write(vec![entry(1, 0), entry(1, 1), entry(2, 0)])
            .await
            .unwrap();
        s.write(vec![entry(4, 0)]).await.unwrap();
    }
    let s = EmbeddedNotifications::open(&path).unwrap();
    assert_eq!(s.resume_points().await.unwrap()["cell1"], resume(4, 1));
    assert_eq!(s.last().await.unwrap(), 4);
    let (rows, upto) = s.read(1, 2, &Filter::default()).await.unwrap();
    assert_eq!(rows.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(upto, 3);
    let other = Filter {
        project: Some("p2".into()),
        ..Filter::default()
    };
    let (rows, upto) = s.read(0, 10, &other).await.unwrap();
    assert!(rows.is_empty());
    assert_eq!(upto, 4, "the cursor moves past what does not match");
}

/// Checkpoints that refuse to save once armed: a crash after publishing.
struct Failing(EmbeddedCheckpoints, AtomicBool);

#[async_trait]
impl CheckpointStore for Failing {
    async fn load(&self, name: &str) -> Result<Option<u64>, LogError> {
        self.0.load(name).await
    }
    async fn save(&self, name: &str, pos: u64) -> Result<(), LogError> {
        if self.1.load(Ordering::SeqCst) {
            return Err(LogError::Storage("crash".into()));
        }
        self.0.save(name, pos).await
    }
}

#[tokio::test]
async fn jetstream_resume_points_find_what_was_published_after_the_last_record() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server starts");
    let dir = tempfile::tempdir().unwrap();
    let log = eventlog::EmbeddedLog::open(&dir.path().join("log")).unwrap();
    log.ensure_stream(&StreamName::new("cell1").unwrap())
        .await
        .unwrap();
    let log: Arc<dyn EventLog> = log;
    let cp_path = dir.path().join("cp.redb");
    let client = async_nats::connect(nats.url()).await.unwrap();
    {
        let cp = Arc::new(Failing(
            EmbeddedCheckpoints::open(&cp_path).unwrap(),
            AtomicBool::new(false),
        ));
        let s = JetStreamNotifications::open(client.clone(), 1, cp.clone(), log.clone())
            .await
            .unwrap();
        s.write(vec![entry(1, 0), entry(1, 1), entry(2, 0)])
            .await
            .unwrap();
        assert_eq!(s.resume_points().await.unwrap()["cell1"], resume(2, 1));
        cp.1.store(true, Ordering::SeqCst);
        assert!(s.write(vec![entry(3, 0), entry(3, 1)]).await.is_err());
        // Published again (the notifier retries): the server drops the duplicates.
        cp.1.store(false, Ordering::SeqCst);
        s.write(vec![entry(3, 0)]).await.unwrap();
        assert_eq!(s.last().await.unwrap(), 5);
    }
    let cp = Arc::new(EmbeddedCheckpoints::open(&cp_path).unwrap());
    let s = JetStreamNotifications::open(client, 1, cp, log)
        .await
        .unwrap();
    assert_eq!(s.resume_points().await.unwrap()["cell1"], resume(3, 2));
    let (rows, _) = s.read(0, 10, &Filter::default()).await.unwrap();
    assert_eq!(rows.len(), 5);
}
