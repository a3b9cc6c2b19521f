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
