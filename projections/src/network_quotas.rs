//! The network quota read model: every project's ledger, by subject
//! (`stratus.api.network_quota.<project>`).
//!
//! Invariant: a row is the fold of its own subject only
//! ([`domain::network::quota::evolve`]); its sequence is the OCC expectation of the next
//! reservation on that ledger.

use domain::network::quota::{self, NetLedger};
use domain::Event;
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// Network quota ledgers of every project.
#[derive(Debug, Clone, Default)]
pub struct NetworkQuotas {
    rows: Table<Subject, Row<NetLedger>>,
}

/// The subject of a project's ledger.
pub fn ledger_subject(project: &str) -> Subject {
    Subject::api(SubjectKind::NetworkQuota, project).expect("tokens are encoded")
}

impl NetworkQuotas {
    /// A project's ledger row (None: it never reserved nor set a limit).
    pub fn ledger(&self, project: &str) -> Option<&Row<NetLedger>> {
        self.rows.get(&ledger_subject(project))
    }

    /// The ledger row of `subject`.
    pub fn row_of(&self, subject: &Subject) -> Option<&Row<NetLedger>> {
        self.rows.get(subject)
    }

    /// Every ledger with its project (the subject's id token, decoded).
    pub fn all(&self) -> impl Iterator<Item = (String, &NetLedger)> {
        self.rows
            .iter()
            .filter_map(|(s, r)| Some((Subject::untoken(s.id_token())?, &r.state)))
    }
}

impl ReadModel for NetworkQuotas {
    const NAME: &'static str = "network_quotas";
    type Key = Subject;
    type Row = Row<NetLedger>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::NetworkQuota(e) = ev else {
            return Ok(None);
        };
        let row = self.rows.entry(c.subject.clone()).or_insert(Row {
            state: NetLedger::default(),
            seq: 0,
        });
        row.state = quota::evolve(Some(std::mem::take(&mut row.state)), e);
        row.seq = c.subject_seq;
        Ok(Some(c.subject.clone()))
    }
}
