//! The host aggregates read model: the one aggregate-set subject of the api stream
//! (`stratus.api.aggregates.all`) folded into [`AggregateSet`], with the indexes the
//! scheduler and the API read: host -> aggregates and host -> availability zone.
//!
//! Invariants:
//! - One row (the set's subject) holding the state `domain::aggregate::evolve` folds and
//!   the subject's last sequence (the OCC expectation of the next append).
//! - The indexes are derived from the row only, recomputed after every change and after
//!   a load ([`ReadModel::rebuild_indexes`]), never stored.
//! - A host in no zoned aggregate is in [`DEFAULT_ZONE`] (Nova's
//!   `default_availability_zone`); [`Aggregates::zone_of`] never returns anything else
//!   for it.

use std::collections::{BTreeMap, BTreeSet};

use domain::aggregate::{self, AggregateId, AggregateSet, DEFAULT_ZONE};
use domain::{Event, HostName};
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// `stratus.api.aggregates.all`: the one subject of every host aggregate.
pub fn aggregates_subject() -> Subject {
    Subject::api(SubjectKind::Aggregates, "all").expect("a constant valid token")
}

/// Host aggregates with their host indexes.
#[derive(Debug, Clone, Default)]
pub struct Aggregates {
    rows: Table<Subject, Row<AggregateSet>>,
    /// Aggregates each host is in.
    by_host: BTreeMap<HostName, BTreeSet<AggregateId>>,
    /// The zone of each host that is in a zoned aggregate.
    zones: BTreeMap<HostName, String>,
}

impl Aggregates {
    /// The set and its subject sequence (an empty set at 0 before the first create).
    pub fn set(&self) -> (&AggregateSet, u64) {
        static EMPTY: std::sync::LazyLock<AggregateSet> =
            std::sync::LazyLock::new(AggregateSet::default);
        match self.rows.get(&aggregates_subject()) {
            Some(r) => (&r.state, r.seq),
            None => (&EMPTY, 0),
        }
    }

    /// The availability zone of a host: its aggregates' zone, else `nova`.
    pub fn zone_of(&self, host: &HostName) -> &str {
        self.zones.get(host).map_or(DEFAULT_ZONE, String::as_str)
    }

    /// The aggregates a host is in.
    pub fn of_host(&self, host: &HostName) -> impl Iterator<Item = AggregateId> + '_ {
        self.by_host.get(host).into_iter().flatten().copied()
    }
}

impl ReadModel for Aggregates {
    const NAME: &'static str = "aggregates";
    type Key = Subject;
    type Row = Row<AggregateSet>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Aggregate(e) = ev else {
            return Ok(None);
        };
        if c.subject != aggregates_subject() {
            return Err(Invalid);
        }
        let row = self.rows.entry(c.subject.clone()).or_insert(Row {
            state: AggregateSet::default(),
            seq: 0,
        });
        row.state = aggregate::evolve(std::mem::take(&mut row.state), e);
        row.seq = c.subject_seq;
        self.rebuild_indexes();
        Ok(Some(c.subject.clone()))
    }

    fn rebuild_indexes(&mut self) {
        self.by_host.clear();
        self.zones.clear();
        let Some(row) = self.rows.get(&aggregates_subject()) else {
            return;
        };
        for a in row.state.aggregates.values() {
            for h in &a.hosts {
                self.by_host.entry(h.clone()).or_default().insert(a.id);
                if let Some(z) = a.availability_zone() {
                    self.zones.entry(h.clone()).or_insert_with(|| z.to_string());
                }
            }
        }
    }
}
