//! The quota read model: every project's ledger and every quota class, by subject.
//!
//! Invariant: a row is the fold of its own subject only ([`domain::quota::evolve`]), and
//! its sequence is the OCC expectation of the next admission on that ledger.

use domain::quota::{self, Ledger, Limits};
use domain::Event;
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// Quota ledgers (`stratus.api.quota.<project>`) and classes
/// (`stratus.api.quota_class.<name>`).
#[derive(Debug, Clone, Default)]
pub struct Quotas {
    rows: Table<Subject, Row<Ledger>>,
}

/// The subject of a project's ledger.
pub fn ledger_subject(project: &str) -> Subject {
    Subject::api(SubjectKind::Quota, project).expect("tokens are encoded")
}

/// The subject of a quota class.
pub fn class_subject(class: &str) -> Subject {
    Subject::api(SubjectKind::QuotaClass, class).expect("tokens are encoded")
}

impl Quotas {
    /// A project's ledger row.
    pub fn ledger(&self, project: &str) -> Option<&Row<Ledger>> {
        self.rows.get(&ledger_subject(project))
    }

    /// The row of a ledger or class subject.
    pub fn rows_of(&self, subject: &Subject) -> Option<&Row<Ledger>> {
        self.rows.get(subject)
    }

    /// A class's limits.
    pub fn class(&self, class: &str) -> Option<&Limits> {
        self.rows
            .get(&class_subject(class))
            .map(|r| &r.state.limits)
    }

    /// Every ledger, by project (decoded from the subject token).
    pub fn ledgers(&self) -> impl Iterator<Item = (String, &Row<Ledger>)> {
        self.rows
            .iter()
            .filter(|(s, _)| s.kind() == Some(SubjectKind::Quota))
            .filter_map(|(s, r)| Subject::untoken(s.id_token()).map(|p| (p, r)))
    }

    /// Effective limits of a project (and user): user override, project override, the
    /// `default` class, then `base`.
    pub fn effective(&self, base: &Limits, project: &str, user: Option<&str>) -> Limits {
        quota::effective(
            base,
            self.class("default"),
            self.ledger(project).map(|r| &r.state),
            user,
        )
    }
}

impl ReadModel for Quotas {
    const NAME: &'static str = "quotas";
    type Key = Subject;
    type Row = Row<Ledger>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Quota(e) = ev else {
            return Ok(None);
        };
        let row = self.rows.entry(c.subject.clone()).or_insert(Row {
            state: Ledger::default(),
            seq: 0,
        });
        row.state = quota::evolve(Some(std::mem::take(&mut row.state)), e).unwrap_or_default();
        row.seq = c.subject_seq;
        Ok(Some(c.subject.clone()))
    }
}
