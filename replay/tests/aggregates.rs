//! The host aggregates model through the projection store and `replay rebuild`: its row
//! is stored and restored, its host -> zone index is rebuilt after a load, and a stored
//! row that differs from the log's fold is reported under the model's name.

use std::sync::Arc;

use domain::aggregate::{self, AggregateCommand, AggregateId, AggregateSet, HostFacts};
use domain::{Ctx, Event, HostName, Timestamp};
use eventlog::{AppendRequest, EmbeddedLog, EventLog, ExpectedSeq, Metadata, StreamName};
use projections::aggregates::aggregates_subject;
use projections::{codec, Aggregates, ProjectionStore, ReadModel, Touched, Views};

struct AnyHost;

impl HostFacts for AnyHost {
    fn exists(&self, _: &HostName) -> bool {
        true
    }
    fn instances_on(&self, _: &HostName) -> usize {
        0
    }
}

fn h(n: &str) -> HostName {
    HostName::new(n).unwrap()
}

#[tokio::test]
async fn aggregates_are_stored_restored_and_compared() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
    log.ensure_stream(&StreamName::api()).await.unwrap();
    let subject = aggregates_subject();
    let mut set = AggregateSet::default();
    let cmds = [
        AggregateCommand::Create {
            name: "agg1".into(),
            availability_zone: Some("az1".into()),
        },
        AggregateCommand::AddHost {
            id: AggregateId(1),
            host: h("host1"),
        },
        AggregateCommand::Create {
            name: "agg2".into(),
            availability_zone: None,
        },
        AggregateCommand::AddHost {
            id: AggregateId(2),
            host: h("host2"),
        },
    ];
    for (n, cmd) in cmds.into_iter().enumerate() {
        let ctx = Ctx {
            op_id: uuid::Uuid::from_u128(n as u128 + 1),
            ..Ctx::service("test", Timestamp(n as i64), uuid::Uuid::nil())
        };
        let evs = aggregate::decide(&set, cmd, &AnyHost, &ctx).unwrap();
        set = evs.iter().fold(set, aggregate::evolve);
        log.append(AppendRequest {
            subject: subject.clone(),
            expected: ExpectedSeq::Exactly(n as u64),
            dedupe_id: format!("test:{n}"),
            meta: Metadata::default(),
            events: evs
                .into_iter()
                .map(|e| codec::encode(&Event::Aggregate(e)))
                .collect(),
        })
        .await
        .unwrap();
    }

    let mut live = Views::default();
    let mut touched = Touched::default();
    for c in log.read_stream(&StreamName::api(), 1, 100).await.unwrap() {
        live.apply(&c, &mut touched);
    }
    assert_eq!(live.aggregates().set(), (&set, 4));
    assert_eq!(live.host_availability_zone(&h("host1")), "az1");
    assert_eq!(live.host_availability_zone(&h("host2")), "nova");
    assert_eq!(
        live.aggregates().of_host(&h("host2")).collect::<Vec<_>>(),
        [AggregateId(2)]
    );

    let path = dir.path().join("projections.redb");
    let store = ProjectionStore::open(&path).unwrap();
    store.save(&live.snapshot_of(&touched), &touched).unwrap();
    drop(store);
    let store = ProjectionStore::open(&path).unwrap();
    let mut stored = store.load().unwrap();
    assert_eq!(stored.aggregates().rows(), live.aggregates().rows());
    // The index is derived again after the load.
    assert_eq!(stored.host_availability_zone(&h("host1")), "az1");

    let dynlog: Arc<dyn EventLog> = log.clone();
    let report = replay::rebuild(dynlog.clone(), &stored).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);

    stored
        .model_mut::<Aggregates>()
        .rows_mut()
        .get_mut(&subject)
        .unwrap()
        .state
        .aggregates
        .remove(&AggregateId(2));
    let report = replay::rebuild(dynlog, &stored).await.unwrap();
    assert!(!report.matches);
    assert_eq!(
        report.differences,
        vec![format!("aggregates {subject}: stored row differs")]
    );
    log.close();
}
