//! Fold snapshots of instance subjects: the state-at index of the audit API.
//!
//! `GET /v1/instances/{id}/state?at=` folds an instance's history with
//! [`instance::evolve`] up to an instant. Folding a 10,000-event history from its first
//! commit reads and decodes every commit; this model keeps, for every instance's cell
//! subject (`stratus.cell.<cell>.instance.<id>`, where everything after placement is
//! written), the fold of the subject every [`BLOCK`] commits, so a state-at question
//! starts from the nearest snapshot at or before its instant and folds at most about
//! [`BLOCK`] commits of it (`replay::audit::state_at_indexed`). Api subjects (a build
//! request's few commits until it is placed) are not indexed: they are read whole.
//!
//! A row ([`InstanceFold`]) is keyed by subject and block (`(subject_seq - 1) / BLOCK`)
//! and holds the fold of the subject's commits `1..=subject_seq`, `subject_seq` being the
//! last commit applied in that block: the row of a finished block is a snapshot at the
//! block's last commit, the row of the current block the snapshot at the subject's
//! latest commit. A new block starts from a copy of the previous block's row, so each
//! commit changes one row (one row written per flush, as for the instances model).
//!
//! Invariants (what makes a snapshot-assisted fold exactly equal to the plain fold):
//! - A row is the plain fold of its subject alone, from nothing: the same `evolve`,
//!   the same events in subject order, every event counted (`events`) whether or not it
//!   is an instance event, as the plain fold counts them.
//! - The history of an instance is its api subject, then its cell subject. A cell
//!   subject's row equals the history's fold only once the subject has folded an event
//!   that replaces the whole state (`build_requested`, `placed`, `build_failed`: evolve
//!   ignores the state before them): `anchored`. Readers use a cell row only if anchored.
//! - A row is usable only at a commit boundary with every event of every commit folded
//!   (`complete`, `!broken`): an undecodable event (skipped by `Views::apply`) or a
//!   missing commit marks the subject `broken` from then on, and readers fold from the
//!   log instead (where the plain fold reports the error).
//! - `max_at` is the greatest `occurred_at` of the commits folded (writers' clocks may
//!   disagree), so "every commit up to here occurred at or before `t`" is `max_at <= t`,
//!   the condition under which the plain fold (which stops at the first commit after
//!   `t`) folds at least this far.
//! - Each key lives on one subject of one stream: the default merge is right.

use std::fmt;

use domain::instance::{self, Instance, InstanceEvent};
use domain::Event;
use eventlog::{Commit, StreamName, Subject, SubjectKind};
use serde::{Deserialize, Serialize};

use crate::model::{Invalid, ReadModel, Table, TableKey};

/// Commits per snapshot: a snapshot-assisted fold reads and folds fewer than this many
/// commits past its snapshot (a few hundred microseconds).
pub const BLOCK: u64 = 128;

/// A row's key: an instance subject and a block of [`BLOCK`] of its commits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FoldKey {
    pub subject: Subject,
    pub block: u64,
}

impl fmt::Display for FoldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.subject, self.block)
    }
}

impl TableKey for FoldKey {
    /// The block (8 bytes, big-endian) then the subject.
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut b = self.block.to_be_bytes().to_vec();
        b.extend_from_slice(self.subject.as_str().as_bytes());
        b
    }
    fn from_key_bytes(b: &[u8]) -> Result<Self, String> {
        if b.len() < 8 {
            return Err("fold key shorter than 8 bytes".into());
        }
        let (block, subject) = b.split_at(8);
        let block = u64::from_be_bytes(block.try_into().map_err(|_| "fold key block")?);
        let subject = std::str::from_utf8(subject).map_err(|e| e.to_string())?;
        let subject = Subject::parse(subject).map_err(|e| e.to_string())?;
        Ok(FoldKey { subject, block })
    }
}

/// The fold of an instance subject's commits `1..=subject_seq` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceFold {
    /// The folded state (`None` before the first state-making event).
    pub state: Option<Instance>,
    /// The last commit folded: its subject sequence, stream position and time.
    pub subject_seq: u64,
    pub stream_seq: u64,
    pub occurred_at: i64,
    /// The greatest `occurred_at` of the commits folded.
    pub max_at: i64,
    /// Events of the subject folded (every event, as the plain fold counts them).
    pub events: u64,
    /// Type and id of the last event folded.
    pub last_type: String,
    pub last_event_id: uuid::Uuid,
    /// Events of the last commit folded so far, and whether that is all of them.
    pub parts: u32,
    pub complete: bool,
    /// A state-replacing event was folded (the fold no longer depends on the history
    /// before this subject).
    pub anchored: bool,
    /// An event or commit was not folded (undecodable): never usable again.
    pub broken: bool,
}

impl InstanceFold {
    fn fresh() -> Self {
        InstanceFold {
            state: None,
            subject_seq: 0,
            stream_seq: 0,
            occurred_at: i64::MIN,
            max_at: i64::MIN,
            events: 0,
            last_type: String::new(),
            last_event_id: uuid::Uuid::nil(),
            parts: 0,
            complete: true,
            anchored: false,
            broken: false,
        }
    }

    /// Whether a reader may start from this row: whole commits folded, nothing missed,
    /// something folded, and (for a subject that is not the first of the history)
    /// anchored.
    pub fn usable(&self, first_subject: bool) -> bool {
        self.complete && !self.broken && self.subject_seq > 0 && (first_subject || self.anchored)
    }
}

/// Fold snapshots of every instance subject, by subject and block.
#[derive(Debug, Clone, Default)]
pub struct InstanceFolds {
    rows: Table<FoldKey, InstanceFold>,
}

impl InstanceFolds {
    /// The rows of `subject`, oldest block first.
    pub fn of<'a>(&'a self, subject: &Subject) -> impl Iterator<Item = &'a InstanceFold> + 'a {
        let lo = FoldKey {
            subject: subject.clone(),
            block: 0,
        };
        let hi = FoldKey {
            subject: subject.clone(),
            block: u64::MAX,
        };
        self.rows.range(lo..=hi).map(|(_, r)| r)
    }

    /// The latest usable row of `subject` satisfying `ok` (a condition that holds for a
    /// prefix of the rows: a time or position bound), cloned.
    pub fn latest(
        &self,
        subject: &Subject,
        first_subject: bool,
        ok: impl Fn(&InstanceFold) -> bool,
    ) -> Option<InstanceFold> {
        self.of(subject)
            .filter(|r| r.usable(first_subject) && ok(r))
            .last()
            .cloned()
    }
}

impl ReadModel for InstanceFolds {
    const NAME: &'static str = "instance_folds";
    type Key = FoldKey;
    type Row = InstanceFold;

    fn rows(&self) -> &Table<FoldKey, InstanceFold> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<FoldKey, InstanceFold> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<FoldKey>, Invalid> {
        // Cell subjects only: an api subject holds a build request's few commits until
        // it is placed (read whole, it costs less than a row per instance would).
        if c.subject.kind() != Some(SubjectKind::Instance)
            || c.subject_seq == 0
            || c.stream == StreamName::api()
        {
            return Ok(None);
        }
        let key = FoldKey {
            subject: c.subject.clone(),
            block: (c.subject_seq - 1) / BLOCK,
        };
        if !self.rows.contains_key(&key) {
            // A new block continues from the previous block's last fold.
            let prev = key.block.checked_sub(1).and_then(|b| {
                self.rows.get(&FoldKey {
                    subject: c.subject.clone(),
                    block: b,
                })
            });
            let row = match prev {
                Some(p) => p.clone(),
                None => {
                    let mut r = InstanceFold::fresh();
                    // The blocks before were never folded.
                    r.broken = key.block > 0;
                    r
                }
            };
            self.rows.insert(key.clone(), row);
        }
        let row = self.rows.get_mut(&key).expect("row inserted");
        if row.subject_seq != c.subject_seq {
            // The first event of a new commit: the previous one must have been whole,
            // and this one must follow it.
            if !row.complete || c.subject_seq != row.subject_seq + 1 {
                row.broken = true;
            }
            row.subject_seq = c.subject_seq;
            row.stream_seq = c.stream_seq;
            row.occurred_at = c.meta.occurred_at;
            row.max_at = row.max_at.max(c.meta.occurred_at);
            row.parts = 0;
        }
        let index = row.parts as usize;
        row.parts += 1;
        row.complete = row.parts as usize == c.events.len();
        row.events += 1;
        if let Some(se) = c.events.get(index) {
            row.last_type.clone_from(&se.event_type);
            row.last_event_id = se.event_id;
        } else {
            row.broken = true;
        }
        if let Event::Instance(ie) = ev {
            if matches!(
                ie,
                InstanceEvent::BuildRequested { .. }
                    | InstanceEvent::Placed { .. }
                    | InstanceEvent::BuildFailed { .. }
            ) {
                row.anchored = true;
            }
            row.state = instance::evolve(row.state.take(), ie);
        }
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Timestamp;
    use eventlog::{Metadata, StoredEvent, StreamName};

    fn cell_subject() -> Subject {
        let cell1 = StreamName::new("cell1").unwrap();
        Subject::cell(
            &cell1,
            SubjectKind::Instance,
            "00000000-0000-0000-0000-000000000001",
        )
        .unwrap()
    }

    fn commit(seq: u64, events: usize) -> Commit {
        let s = cell_subject();
        Commit {
            stream: s.stream(),
            stream_seq: seq * 2,
            subject: s,
            subject_seq: seq,
            dedupe_id: String::new(),
            meta: Metadata {
                occurred_at: 1_000 + seq as i64,
                ..Metadata::default()
            },
            events: (0..events)
                .map(|i| StoredEvent {
                    event_id: uuid::Uuid::from_u128(seq as u128 * 10 + i as u128),
                    event_type: "instance.unlocked".into(),
                    version: 1,
                    payload: vec![],
                })
                .collect(),
        }
    }

    fn unlocked() -> Event {
        Event::Instance(InstanceEvent::Unlocked { at: Timestamp(1) })
    }

    #[test]
    fn keys_read_back() {
        let k = FoldKey {
            subject: cell_subject(),
            block: 513,
        };
        assert_eq!(FoldKey::from_key_bytes(&k.to_key_bytes()), Ok(k));
        assert!(FoldKey::from_key_bytes(b"short").is_err());
    }

    #[test]
    fn blocks_continue_and_gaps_break() {
        let mut m = InstanceFolds::default();
        for seq in 1..=BLOCK + 3 {
            let c = commit(seq, 2);
            for _ in 0..2 {
                m.apply(&c, &unlocked()).unwrap();
            }
        }
        let rows: Vec<&InstanceFold> = m.of(&cell_subject()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].subject_seq, BLOCK);
        assert_eq!(rows[1].subject_seq, BLOCK + 3);
        assert_eq!(rows[1].events, 2 * (BLOCK + 3));
        assert_eq!(rows[1].max_at, 1_000 + BLOCK as i64 + 3);
        assert!(rows[1].complete && !rows[1].broken && !rows[1].anchored);
        assert!(rows[1].usable(true) && !rows[1].usable(false));
        // Half a commit (an undecodable event skipped), then the next commit: broken.
        let c = commit(BLOCK + 4, 2);
        m.apply(&c, &unlocked()).unwrap();
        let half = m.of(&cell_subject()).last().unwrap();
        assert!(!half.complete && !half.usable(true));
        m.apply(&commit(BLOCK + 5, 1), &unlocked()).unwrap();
        let last = m.of(&cell_subject()).last().unwrap();
        assert!(last.broken && !last.usable(true));
        // A commit missing entirely breaks a subject too.
        let mut m = InstanceFolds::default();
        m.apply(&commit(1, 1), &unlocked()).unwrap();
        m.apply(&commit(3, 1), &unlocked()).unwrap();
        assert!(m.of(&cell_subject()).last().unwrap().broken);
    }
}
