//! The key pair read model: every user's key ring, by subject
//! (`stratus.api.keypairs.<user>`).
//!
//! Invariant: a row is the fold of its own subject only ([`domain::keypair::evolve`]);
//! its sequence is the OCC expectation of the next command on that ring, and a key
//! pair's id is the api-stream position of the commit that created it, so a rebuild
//! yields the same ids.

use domain::keypair::{self, KeyRing, Keypair};
use domain::Event;
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// Key rings of every user.
#[derive(Debug, Clone, Default)]
pub struct Keypairs {
    rows: Table<Subject, Row<KeyRing>>,
}

/// The subject of a user's key ring.
pub fn ring_subject(user: &str) -> Subject {
    Subject::api(SubjectKind::Keypairs, user).expect("tokens are encoded")
}

impl Keypairs {
    /// A user's ring row (None: the user never had a key pair).
    pub fn ring(&self, user: &str) -> Option<&Row<KeyRing>> {
        self.rows.get(&ring_subject(user))
    }

    /// One key pair of a user.
    pub fn get(&self, user: &str, name: &str) -> Option<&Keypair> {
        self.ring(user).and_then(|r| r.state.keys.get(name))
    }

    /// A user's key pairs, sorted by name (Nova's list order).
    pub fn list(&self, user: &str) -> Vec<&Keypair> {
        self.ring(user)
            .map(|r| r.state.keys.values().collect())
            .unwrap_or_default()
    }

    /// How many key pairs a user holds: what Nova's `key_pairs` quota counts (for
    /// `GET /limits` and os-quota-sets `in_use`).
    pub fn count_for_user(&self, user: &str) -> usize {
        self.ring(user).map_or(0, |r| r.state.count())
    }
}

impl ReadModel for Keypairs {
    const NAME: &'static str = "keypairs";
    type Key = Subject;
    type Row = Row<KeyRing>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Keypair(e) = ev else {
            return Ok(None);
        };
        let row = self.rows.entry(c.subject.clone()).or_insert(Row {
            state: KeyRing::default(),
            seq: 0,
        });
        row.state = keypair::evolve(Some(std::mem::take(&mut row.state)), e, c.stream_seq)
            .unwrap_or_default();
        row.seq = c.subject_seq;
        Ok(Some(c.subject.clone()))
    }
}
