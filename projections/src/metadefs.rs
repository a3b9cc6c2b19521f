//! The image metadata-definitions read model: the one metadefs subject of the api stream
//! (`stratus.api.metadefs.all`) folded into [`MetadefSet`].
//!
//! Invariants:
//! - One row (the set's subject) holding the state `domain::metadef::evolve` folds and
//!   the subject's last sequence (the OCC expectation of the next append).
//! - Events on any other subject are invalid (counted as decode errors, never applied).

use domain::metadef::{self, MetadefSet};
use domain::Event;
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// `stratus.api.metadefs.all`: the one subject of every metadefs namespace.
pub fn metadefs_subject() -> Subject {
    Subject::api(SubjectKind::Metadefs, "all").expect("a constant valid token")
}

/// Metadata definitions (namespaces and what they hold).
#[derive(Debug, Clone, Default)]
pub struct Metadefs {
    rows: Table<Subject, Row<MetadefSet>>,
}

impl Metadefs {
    /// The set and its subject sequence (an empty set at 0 before the first event).
    pub fn set(&self) -> (&MetadefSet, u64) {
        static EMPTY: std::sync::LazyLock<MetadefSet> =
            std::sync::LazyLock::new(MetadefSet::default);
        match self.rows.get(&metadefs_subject()) {
            Some(r) => (&r.state, r.seq),
            None => (&EMPTY, 0),
        }
    }
}

impl ReadModel for Metadefs {
    const NAME: &'static str = "metadefs";
    type Key = Subject;
    type Row = Row<MetadefSet>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Metadef(e) = ev else {
            return Ok(None);
        };
        if c.subject != metadefs_subject() {
            return Err(Invalid);
        }
        let row = self.rows.entry(c.subject.clone()).or_insert(Row {
            state: MetadefSet::default(),
            seq: 0,
        });
        metadef::evolve(&mut row.state, e);
        row.seq = c.subject_seq;
        Ok(Some(c.subject.clone()))
    }
}
