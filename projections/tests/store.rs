//! The projection store keeps the views across restarts and discards (for a rebuild from
//! the log) a store whose rows have another schema.

use eventlog::StreamName;
use projections::{ProjectionStore, Touched, Views};
use redb::{Database, TableDefinition};

fn views_at(pos: u64) -> Views {
    let mut v = Views::default();
    v.positions.insert(StreamName::new("cell1").unwrap(), pos);
    v
}

#[test]
fn views_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projections.redb");
    let s = ProjectionStore::open(&path).unwrap();
    assert!(!s.was_reset());
    s.save(&views_at(42), &Touched::default()).unwrap();
    drop(s);
    let s = ProjectionStore::open(&path).unwrap();
    assert!(!s.was_reset());
    let v = s.load().unwrap();
    assert_eq!(v.position(&StreamName::new("cell1").unwrap()), 42);
}

#[test]
fn another_schema_is_discarded_for_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projections.redb");
    let s = ProjectionStore::open(&path).unwrap();
    s.save(&views_at(42), &Touched::default()).unwrap();
    drop(s);
    // As if written by a Stratus whose rows had another shape.
    {
        let db = Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .insert("schema", projections::store::SCHEMA + 1)
            .unwrap();
        tx.commit().unwrap();
    }
    let s = ProjectionStore::open(&path).unwrap();
    assert!(s.was_reset());
    let v = s.load().unwrap();
    assert_eq!(v.position(&StreamName::new("cell1").unwrap()), 0);
    drop(s);
    // Rebuilt views are kept from then on.
    let s = ProjectionStore::open(&path).unwrap();
    assert!(!s.was_reset());
}

#[test]
fn a_store_from_before_versioning_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projections.redb");
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(TableDefinition::<&str, u64>::new("positions"))
            .unwrap()
            .insert("cell1", 7)
            .unwrap();
        tx.commit().unwrap();
    }
    let s = ProjectionStore::open(&path).unwrap();
    assert!(s.was_reset());
    assert_eq!(
        s.load()
            .unwrap()
            .position(&StreamName::new("cell1").unwrap()),
        0
    );
}

/// A row a model removes (a deleted identity project) is deleted from the store too:
/// reopened, the views do not bring it back.
#[test]
fn removed_rows_stay_removed_after_a_reopen() {
    use domain::identity::{IdentityEvent, IdentityName};
    use domain::{Event, ProjectId, Timestamp};
    use eventlog::{Commit, Metadata, StoredEvent};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projections.redb");
    let id = ProjectId::new("p1").unwrap();
    let subject = projections::identity::project_subject(&id);
    let commit = |seq: u64, e: IdentityEvent| {
        let n = projections::codec::encode(&Event::Identity(e));
        Commit {
            stream: StreamName::api(),
            stream_seq: seq,
            subject: subject.clone(),
            subject_seq: seq,
            dedupe_id: format!("d{seq}"),
            meta: Metadata {
                correlation_id: "req-1".into(),
                causation_id: "req-1".into(),
                actor: eventlog::Actor::default(),
                occurred_at: 0,
            },
            events: vec![StoredEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: n.event_type,
                version: n.version,
                payload: n.payload,
            }],
        }
    };
    let s = ProjectionStore::open(&path).unwrap();
    let mut v = Views::default();
    let mut touched = Touched::default();
    v.apply(
        &commit(
            1,
            IdentityEvent::ProjectCreated {
                id: id.clone(),
                name: IdentityName::new("demo").unwrap(),
                domain_id: "default".into(),
                description: String::new(),
                enabled: true,
                at: Timestamp(1),
            },
        ),
        &mut touched,
    );
    s.save(&v, &touched).unwrap();
    assert!(s.load().unwrap().identity().project(&id).is_some());
    let mut touched = Touched::default();
    v.apply(
        &commit(2, IdentityEvent::ProjectDeleted { at: Timestamp(2) }),
        &mut touched,
    );
    assert!(v.identity().project(&id).is_none());
    s.save(&v, &touched).unwrap();
    drop(s);
    let s = ProjectionStore::open(&path).unwrap();
    let v = s.load().unwrap();
    assert!(
        v.identity().project(&id).is_none(),
        "a deleted project came back"
    );
    assert_eq!(v.position(&StreamName::api()), 2);
}
