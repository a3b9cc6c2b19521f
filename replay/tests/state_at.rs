//! Snapshot-assisted state-at (`replay::audit::state_at_indexed`, starting from the
//! `instance_folds` model's snapshots) equals the plain fold (`state_at`) at many random
//! instants and positions, on both backends (the ranged read it uses is per backend):
//! histories longer than several snapshot blocks on both subjects, multi-event
//! commits, writers' clocks out of order, two instances interleaved in the streams,
//! snapshots from views that lag the log, and positions on every stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::instance::{self, InstanceEvent as E, InstanceSpec, Networks};
use domain::{CellName, Event, InstanceId, Timestamp};
use eventlog::{
    AppendRequest, EmbeddedLog, EventLog, ExpectedSeq, JetStreamLog, JetStreamOptions, Metadata,
    StreamName, Subject, SubjectKind,
};
use projections::codec;
use projections::instance_folds::BLOCK;
use replay::audit::{pick_snapshots, state_at, state_at_indexed, At};

/// xorshift64*: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const T0: i64 = 1_800_000_000_000_000;

fn spec(id: InstanceId) -> InstanceSpec {
    let flavor = domain::instance::FlavorSnapshot {
        spec: domain::flavor::FlavorSpec {
            id: domain::FlavorId::new("1").unwrap(),
            name: "m1.tiny".into(),
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            rxtx_factor: 1.0,
            is_public: true,
            description: None,
        },
        extra_specs: BTreeMap::new(),
    };
    InstanceSpec {
        id,
        name: "audited".into(),
        description: None,
        project_id: "p".into(),
        user_id: "u".into(),
        flavor,
        image_ref: "cirros".into(),
        boot_from_volume: false,
        metadata: BTreeMap::new(),
        availability_zone: None,
        networks: Networks::None,
        key_name: None,
        requested_host: None,
    }
}

/// One instance's history being written.
struct Writer {
    id: InstanceId,
    api: Subject,
    cell: Subject,
    api_commits: u64,
    cell_commits: u64,
    n: u64,
}

impl Writer {
    fn new(id: u128) -> Self {
        let id = InstanceId(uuid::Uuid::from_u128(id));
        let cell1 = StreamName::new("cell1").unwrap();
        Writer {
            id,
            api: Subject::api(SubjectKind::Instance, &id.to_string()).unwrap(),
            cell: Subject::cell(&cell1, SubjectKind::Instance, &id.to_string()).unwrap(),
            api_commits: 0,
            cell_commits: 0,
            n: 0,
        }
    }

    /// Appends one commit of `events` (at a time that mostly ascends, sometimes runs
    /// back as another writer's clock would).
    async fn commit(&mut self, log: &dyn EventLog, rng: &mut Rng, on_cell: bool, events: Vec<E>) {
        self.n += 1;
        let skew = match rng.below(10) {
            0 => -(rng.below(300_000) as i64),
            1 | 2 => -(rng.below(4_000) as i64),
            _ => 0,
        };
        let at = T0 + self.n as i64 * 1_000 + skew;
        let (subject, seq) = if on_cell {
            self.cell_commits += 1;
            (&self.cell, self.cell_commits - 1)
        } else {
            self.api_commits += 1;
            (&self.api, self.api_commits - 1)
        };
        let ack = log
            .append(AppendRequest {
                subject: subject.clone(),
                expected: ExpectedSeq::Exactly(seq),
                dedupe_id: format!("{subject}:{seq}"),
                meta: Metadata {
                    correlation_id: format!("req-{}", self.n),
                    causation_id: String::new(),
                    actor: Default::default(),
                    occurred_at: at,
                },
                events: events
                    .iter()
                    .map(|e| codec::encode(&Event::Instance(e.clone())))
                    .collect(),
            })
            .await
            .unwrap();
        assert!(!ack.duplicate);
    }
}

/// Lock / unlock / rename events, one to three per commit.
fn some_events(rng: &mut Rng, n: u64) -> Vec<E> {
    let at = Timestamp(T0 + n as i64);
    (0..1 + rng.below(3) * u64::from(rng.below(4) == 0))
        .map(|k| match (rng.below(3), k) {
            (0, _) => E::Locked {
                by_admin: rng.below(2) == 0,
                reason: Some(format!("r{n}")),
                at,
            },
            (1, _) => E::Unlocked { at },
            _ => E::Updated {
                name: Some(format!("name-{n}-{k}")),
                description: None,
                at,
            },
        })
        .collect()
}

/// Writes two interleaved histories: `a` with a short api subject and a long cell
/// subject, `b` with a long api subject and a cell subject of a few blocks.
async fn write(log: &dyn EventLog, rng: &mut Rng) -> [Writer; 2] {
    let mut ws = [Writer::new(1), Writer::new(2)];
    let (a_api, a_cell, b_api, b_cell) = (4, 5 * BLOCK + 17, 2 * BLOCK + 9, BLOCK + 40);
    for w in ws.iter_mut() {
        let spec = spec(w.id);
        let at = Timestamp(T0);
        let req = E::BuildRequested {
            spec: Box::new(spec),
            op: uuid::Uuid::from_u128(9),
            at,
        };
        w.commit(log, rng, false, vec![req]).await;
    }
    // The rest of each api subject, then each cell subject (from `placed`), the two
    // instances' commits interleaved in both streams.
    for (w, api_len) in [(0, a_api), (1, b_api)] {
        for _ in 1..api_len {
            let n = ws[w].n;
            let evs = some_events(rng, n);
            ws[w].commit(log, rng, false, evs).await;
        }
    }
    for w in ws.iter_mut() {
        let mut snapshot = instance::evolve(
            None,
            &E::BuildRequested {
                spec: Box::new(spec(w.id)),
                op: uuid::Uuid::from_u128(9),
                at: Timestamp(T0),
            },
        )
        .unwrap();
        snapshot.cell = Some(CellName::cell1());
        snapshot.placed = true;
        let at = Timestamp(T0 + 1);
        // The first cell commits: events before `placed` (folded on the api state by
        // the plain fold, on nothing by the subject's own fold), alone and in the
        // commit of `placed`.
        w.commit(log, rng, true, vec![E::Unlocked { at }]).await;
        let evs = vec![
            E::Unlocked { at },
            E::Placed {
                snapshot: Box::new(snapshot),
                at,
            },
        ];
        w.commit(log, rng, true, evs).await;
    }
    let (mut left_a, mut left_b) = (a_cell - 2, b_cell - 2);
    while left_a + left_b > 0 {
        let w = if left_b == 0 || (left_a > 0 && rng.below(3) > 0) {
            left_a -= 1;
            0
        } else {
            left_b -= 1;
            1
        };
        let n = ws[w].n;
        let evs = some_events(rng, n);
        ws[w].commit(log, rng, true, evs).await;
    }
    ws
}

/// Asks, of both instances, the instants and positions of `sample` (1 = every, 4 = one
/// in four) of their commits (each commit's position, its time and the microsecond
/// before) and `questions` random ones, with snapshots from current views and from
/// views folded to only part of the log (a lagging projector).
async fn compare(log: Arc<dyn EventLog>, seed: u64, sample: u64, questions: usize) {
    let mut rng = Rng(seed);
    let ws = write(log.as_ref(), &mut rng).await;
    let api = StreamName::api();
    let cell1 = StreamName::new("cell1").unwrap();
    let (current, _) = replay::fold(log.clone(), &BTreeMap::new()).await.unwrap();
    let lag = BTreeMap::from([
        (api.clone(), log.last_stream_seq(&api).await.unwrap() / 2),
        (
            cell1.clone(),
            log.last_stream_seq(&cell1).await.unwrap() / 3,
        ),
    ]);
    let (lagging, _) = replay::fold(log.clone(), &lag).await.unwrap();
    // Folded to just after the first cell commit of `a` (before its `placed`): that
    // row is a fold of the subject alone, not of the history, and must not be used.
    let first_cell = log.read_subject(&ws[0].cell, 1).await.unwrap()[0].stream_seq;
    let early_upto = BTreeMap::from([(cell1.clone(), first_cell)]);
    let (early, _) = replay::fold(log.clone(), &early_upto).await.unwrap();
    let last_t = T0 + 700_000;
    let mut asked: Vec<(usize, At)> = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        for s in [&w.api, &w.cell] {
            for c in log.read_subject(s, 1).await.unwrap() {
                if rng.below(sample) == 0 {
                    asked.push((i, At::Position(c.stream.clone(), c.stream_seq)));
                    asked.push((i, At::Time(Timestamp(c.meta.occurred_at))));
                    asked.push((i, At::Time(Timestamp(c.meta.occurred_at - 1))));
                }
            }
        }
    }
    let targeted = asked.len();
    let mut used = 0;
    for q in 0..targeted + questions {
        let w = &ws[if q < targeted { asked[q].0 } else { q % 2 }];
        let views = match q % 4 {
            0 => &lagging,
            1 => &early,
            _ => &current,
        };
        let at = match rng.below(10) {
            _ if q < targeted => asked[q].1.clone(),
            0..=4 => At::Time(Timestamp(T0 - 10 + rng.below((last_t - T0) as u64) as i64)),
            5 | 6 => At::Position(
                cell1.clone(),
                rng.below(log.last_stream_seq(&cell1).await.unwrap() + 2),
            ),
            7 | 8 => At::Position(
                api.clone(),
                rng.below(log.last_stream_seq(&api).await.unwrap() + 2),
            ),
            _ => At::Position(StreamName::new("cell9").unwrap(), 5),
        };
        let plain = state_at(log.as_ref(), w.id, Some(w.cell.clone()), &at)
            .await
            .unwrap();
        let snaps = pick_snapshots(views.instance_folds(), w.id, Some(&w.cell), &at);
        assert!(snaps.api.is_none(), "api subjects are not indexed");
        used += usize::from(snaps.cell.is_some());
        let fast = state_at_indexed(log.as_ref(), w.id, Some(w.cell.clone()), &at, &snaps)
            .await
            .unwrap();
        match (&plain, &fast) {
            (None, None) => {}
            (Some(p), Some(f)) => {
                assert_eq!(p.events, f.events, "events folded at {at:?}");
                assert_eq!(p.last, f.last, "last event at {at:?}");
                assert!(p.state == f.state, "state at {at:?}");
            }
            _ => panic!(
                "at {at:?}: plain {:?} vs indexed {:?}",
                plain.as_ref().map(|s| s.events),
                fast.as_ref().map(|s| s.events)
            ),
        }
    }
    // The snapshots were really used (not a plain fold compared with itself).
    let total = targeted + questions;
    assert!(
        used > total / 3,
        "snapshots used in only {used} of {total} questions"
    );
    // At the end of a current history, the indexed fold starts at the latest commit.
    let now = At::Time(Timestamp(i64::MAX));
    let snaps = pick_snapshots(current.instance_folds(), ws[0].id, Some(&ws[0].cell), &now);
    assert_eq!(
        snaps.cell.map(|s| s.subject_seq),
        Some(ws[0].cell_commits),
        "the current block's row is a snapshot at the latest commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_state_at_equals_the_plain_fold_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let dynlog: Arc<dyn EventLog> = log.clone();
    compare(dynlog, 0x5eed_1234_abcd, 2, 300).await;
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_state_at_equals_the_plain_fold_jetstream() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server starts");
    let log = JetStreamLog::connect(&nats.url(), JetStreamOptions::default())
        .await
        .unwrap();
    let dynlog: Arc<dyn EventLog> = log.clone();
    compare(dynlog, 0xfeed_4321_dcba, 16, 60).await;
}
