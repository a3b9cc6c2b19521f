//! A read model registered only here (no line of `projections` or `replay` names it) is
//! stored, loaded back from the projection store and compared by `replay rebuild`:
//! registration is all a new model needs.

use std::sync::Arc;

use domain::flavor::FlavorEvent;
use domain::{Event, Timestamp};
use eventlog::{
    AppendRequest, Commit, EmbeddedLog, EventLog, ExpectedSeq, Metadata, StreamName, Subject,
};
use projections::{codec, Invalid, ProjectionStore, ReadModel, Row, Table, Touched, Views};

/// Events per flavor subject.
#[derive(Debug, Clone, Default)]
struct FlavorEventCounts {
    rows: Table<Subject, Row<u64>>,
}

impl ReadModel for FlavorEventCounts {
    const NAME: &'static str = "test_flavor_event_counts";
    type Key = Subject;
    type Row = Row<u64>;

    fn rows(&self) -> &Table<Subject, Row<u64>> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Row<u64>> {
        &mut self.rows
    }
    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        if !matches!(ev, Event::Flavor(_)) {
            return Ok(None);
        }
        let row = self
            .rows
            .entry(c.subject.clone())
            .or_insert(Row { state: 0, seq: 0 });
        row.state += 1;
        row.seq = c.subject_seq;
        Ok(Some(c.subject.clone()))
    }
}

fn with_counts() -> Views {
    let mut v = Views::default();
    v.register::<FlavorEventCounts>();
    v
}

async fn append(log: &dyn EventLog, subject: &Subject, n: u64) {
    let ev = codec::encode(&Event::Flavor(FlavorEvent::Deleted {
        at: Timestamp(n as i64),
    }));
    log.append(AppendRequest {
        subject: subject.clone(),
        expected: ExpectedSeq::Any,
        dedupe_id: format!("test:{subject}:{n}"),
        meta: Metadata::default(),
        events: vec![ev],
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_registered_model_is_stored_restored_and_compared() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let f1 = Subject::api(eventlog::SubjectKind::Flavor, "f1").unwrap();
    let f2 = Subject::api(eventlog::SubjectKind::Flavor, "f2").unwrap();
    for n in 1..=3 {
        append(log.as_ref(), &f1, n).await;
    }
    append(log.as_ref(), &f2, 4).await;

    // Fold as the projector does, and flush what changed.
    let mut live = with_counts();
    let mut touched = Touched::default();
    for c in log.read_stream(&StreamName::api(), 1, 100).await.unwrap() {
        live.apply(&c, &mut touched);
    }
    assert_eq!(live.model::<FlavorEventCounts>().rows()[&f1].state, 3);
    assert_eq!(live.model::<FlavorEventCounts>().rows()[&f1].seq, 3);
    let path = dir.path().join("projections.redb");
    let store = ProjectionStore::open(&path).unwrap();
    store.save(&live.snapshot_of(&touched), &touched).unwrap();
    drop(store);

    // Restored from the store into views where it is registered.
    let store = ProjectionStore::open(&path).unwrap();
    let mut stored = store.load_into(with_counts()).unwrap();
    assert_eq!(
        stored.model::<FlavorEventCounts>().rows(),
        live.model::<FlavorEventCounts>().rows()
    );
    assert_eq!(stored.flavors(), live.flavors());
    // Views that do not register it load the same store unchanged.
    assert!(store
        .load()
        .unwrap()
        .try_model::<FlavorEventCounts>()
        .is_none());

    // Rebuilt from the log and compared, with the rest of the views.
    let dynlog: Arc<dyn EventLog> = log.clone();
    let report = replay::rebuild(dynlog.clone(), &stored).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);

    // A divergence in it is reported by model name and key.
    stored
        .model_mut::<FlavorEventCounts>()
        .rows_mut()
        .get_mut(&f1)
        .unwrap()
        .state = 7;
    let report = replay::rebuild(dynlog, &stored).await.unwrap();
    assert!(!report.matches);
    assert_eq!(
        report.differences,
        vec![format!("test_flavor_event_counts {f1}: stored row differs")]
    );
    log.close();
}
