//! The subnet pool read model: every pool with its allocations, by id
//! (`stratus.api.subnetpool.<uuid>`).
//!
//! Invariant: a row is the fold of its own subject only
//! ([`domain::network::pool::evolve`]); its sequence is the OCC expectation of the next
//! allocation from that pool. A deleted pool's row stays (marked) to keep its sequence.

use domain::network::pool::{self, SubnetPool};
use domain::{Event, SubnetPoolId};
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// Subnet pools.
#[derive(Debug, Clone, Default)]
pub struct SubnetPools {
    rows: Table<SubnetPoolId, Row<SubnetPool>>,
}

/// The subject of a pool.
pub fn pool_subject(id: &SubnetPoolId) -> Subject {
    Subject::api(SubjectKind::SubnetPool, &id.to_string()).expect("uuid is a valid token")
}

impl SubnetPools {
    /// A pool's row, deleted or not.
    pub fn row(&self, id: &SubnetPoolId) -> Option<&Row<SubnetPool>> {
        self.rows.get(id)
    }

    /// A live pool.
    pub fn get(&self, id: &SubnetPoolId) -> Option<&SubnetPool> {
        self.rows.get(id).map(|r| &r.state).filter(|p| !p.deleted)
    }

    /// Every live pool.
    pub fn all(&self) -> impl Iterator<Item = &SubnetPool> {
        self.rows.values().map(|r| &r.state).filter(|p| !p.deleted)
    }
}

impl ReadModel for SubnetPools {
    const NAME: &'static str = "subnet_pools";
    type Key = SubnetPoolId;
    type Row = Row<SubnetPool>;

    fn rows(&self) -> &Table<SubnetPoolId, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<SubnetPoolId, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<SubnetPoolId>, Invalid> {
        let Event::SubnetPool(e) = ev else {
            return Ok(None);
        };
        let id = SubnetPoolId::parse(c.subject.id_token()).ok_or(Invalid)?;
        let prev = self.rows.remove(&id).map(|r| r.state);
        if let Some(state) = pool::evolve(prev, e) {
            self.rows.insert(
                id,
                Row {
                    state,
                    seq: c.subject_seq,
                },
            );
        }
        Ok(Some(id))
    }
}
