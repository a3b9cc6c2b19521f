//! The `keypairs` read model is stored, restored and compared by `replay rebuild` (it is
//! registered in `Views::default`), and a key pair's id (its commit's api-stream
//! position) is the same after a rebuild.

use std::sync::Arc;

use domain::keypair::{KeyType, KeypairEvent};
use domain::{Event, Timestamp};
use eventlog::{AppendRequest, EmbeddedLog, EventLog, ExpectedSeq, Metadata, StreamName};
use projections::keypairs::ring_subject;
use projections::{codec, ProjectionStore, ReadModel, Touched, Views};

async fn append(log: &dyn EventLog, user: &str, ev: KeypairEvent, n: u64) {
    log.append(AppendRequest {
        subject: ring_subject(user),
        expected: ExpectedSeq::Any,
        dedupe_id: format!("test:{user}:{n}"),
        meta: Metadata::default(),
        events: vec![codec::encode(&Event::Keypair(ev))],
    })
    .await
    .unwrap();
}

fn created(name: &str, at: i64) -> KeypairEvent {
    KeypairEvent::Created {
        name: name.into(),
        key_type: KeyType::Ssh,
        public_key: "ssh-ed25519 AAAA k".into(),
        fingerprint: "00:11".into(),
        at: Timestamp(at),
    }
}

#[tokio::test]
async fn keypairs_are_rebuilt_and_compared() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
    append(log.as_ref(), "alice", created("a", 1), 1).await;
    append(log.as_ref(), "bob", created("b", 2), 2).await;
    append(log.as_ref(), "alice", created("c", 3), 3).await;
    append(
        log.as_ref(),
        "alice",
        KeypairEvent::Deleted {
            name: "a".into(),
            at: Timestamp(4),
        },
        4,
    )
    .await;

    let mut live = Views::default();
    let mut touched = Touched::default();
    for c in log.read_stream(&StreamName::api(), 1, 100).await.unwrap() {
        live.apply(&c, &mut touched);
    }
    let kp = live.keypairs();
    assert_eq!(kp.count_for_user("alice"), 1);
    assert_eq!(kp.count_for_user("bob"), 1);
    assert_eq!(kp.get("alice", "c").unwrap().id, 3);
    assert_eq!(kp.ring("alice").unwrap().seq, 3);

    let path = dir.path().join("projections.redb");
    let store = ProjectionStore::open(&path).unwrap();
    store.save(&live.snapshot_of(&touched), &touched).unwrap();
    drop(store);
    let mut stored = ProjectionStore::open(&path).unwrap().load().unwrap();
    assert_eq!(stored.keypairs().rows(), live.keypairs().rows());

    let dynlog: Arc<dyn EventLog> = log.clone();
    let report = replay::rebuild(dynlog.clone(), &stored).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);

    // A divergence is reported by model name and subject.
    stored
        .model_mut::<projections::Keypairs>()
        .rows_mut()
        .get_mut(&ring_subject("bob"))
        .unwrap()
        .state
        .keys
        .clear();
    let report = replay::rebuild(dynlog, &stored).await.unwrap();
    assert_eq!(
        report.differences,
        vec![format!(
            "keypairs {}: stored row differs",
            ring_subject("bob")
        )]
    );
    log.close();
}
