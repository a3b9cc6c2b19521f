//! The L3 read models: routers (`stratus.api.router.<uuid>`) and floating IPs
//! (`stratus.api.floatingip.<uuid>`), each row the fold of its own subject.
//!
//! Invariants:
//! - A row's sequence is the OCC expectation of the next command on its subject.
//! - A deleted record's row stays (marked deleted) so its subject's sequence is kept;
//!   lookups skip it. The floating IPs' port index is derived from rows only.

use std::collections::{BTreeSet, HashMap};

use domain::router::{self, FloatingIp, Router};
use domain::{Event, FloatingIpId, PortId, RouterId};
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// Routers by id.
#[derive(Debug, Clone, Default)]
pub struct Routers {
    rows: Table<RouterId, Row<Router>>,
}

/// The subject of a router.
pub fn router_subject(id: &RouterId) -> Subject {
    Subject::api(SubjectKind::Router, &id.to_string()).expect("uuid is a valid token")
}

/// The subject of a floating IP.
pub fn floating_ip_subject(id: &FloatingIpId) -> Subject {
    Subject::api(SubjectKind::FloatingIp, &id.to_string()).expect("uuid is a valid token")
}

impl Routers {
    /// A router's row, deleted or not.
    pub fn row(&self, id: &RouterId) -> Option<&Row<Router>> {
        self.rows.get(id)
    }

    /// A live router.
    pub fn get(&self, id: &RouterId) -> Option<&Router> {
        self.rows.get(id).map(|r| &r.state).filter(|r| !r.deleted)
    }

    /// Every live router, by id.
    pub fn all(&self) -> impl Iterator<Item = &Router> {
        self.rows.values().map(|r| &r.state).filter(|r| !r.deleted)
    }

    /// The live router listing `port` as its gateway or an interface.
    pub fn owner_of(&self, port: PortId) -> Option<&Router> {
        self.all().find(|r| r.owns_port(port))
    }
}

impl ReadModel for Routers {
    const NAME: &'static str = "routers";
    type Key = RouterId;
    type Row = Row<Router>;

    fn rows(&self) -> &Table<RouterId, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<RouterId, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<RouterId>, Invalid> {
        let Event::Router(e) = ev else {
            return Ok(None);
        };
        let id = RouterId::parse(c.subject.id_token()).ok_or(Invalid)?;
        let prev = self.rows.remove(&id);
        if let Some(state) = router::evolve(prev.map(|r| r.state), e) {
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

/// Floating IPs by id.
#[derive(Debug, Clone, Default)]
pub struct FloatingIps {
    rows: Table<FloatingIpId, Row<FloatingIp>>,
    /// The live floating IPs associated with each port (derived from rows): a
    /// server's `addresses` reads its ports' floating IPs without a scan.
    by_port: HashMap<PortId, BTreeSet<FloatingIpId>>,
}

impl FloatingIps {
    /// A floating IP's row, deleted or not.
    pub fn row(&self, id: &FloatingIpId) -> Option<&Row<FloatingIp>> {
        self.rows.get(id)
    }

    /// A live floating IP.
    pub fn get(&self, id: &FloatingIpId) -> Option<&FloatingIp> {
        self.rows.get(id).map(|r| &r.state).filter(|f| !f.deleted)
    }

    /// Every live floating IP, by id.
    pub fn all(&self) -> impl Iterator<Item = &FloatingIp> {
        self.rows.values().map(|r| &r.state).filter(|f| !f.deleted)
    }

    /// The live floating IPs associated with `port`.
    pub fn of_port(&self, port: PortId) -> impl Iterator<Item = &FloatingIp> {
        self.by_port
            .get(&port)
            .into_iter()
            .flatten()
            .filter_map(|id| self.get(id))
            .filter(move |f| f.association.is_some_and(|a| a.port_id == port))
    }

    /// Moves `id` in the port index to where its row (if live) says.
    fn index(&mut self, id: FloatingIpId, before: Option<PortId>) {
        if let Some(p) = before {
            if let Some(set) = self.by_port.get_mut(&p) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_port.remove(&p);
                }
            }
        }
        let now = self.get(&id).and_then(|f| f.association).map(|a| a.port_id);
        if let Some(p) = now {
            self.by_port.entry(p).or_default().insert(id);
        }
    }

    /// The live floating IP holding `port` as its address.
    pub fn owner_of(&self, port: PortId) -> Option<&FloatingIp> {
        self.all().find(|f| f.floating_port_id == port)
    }
}

impl ReadModel for FloatingIps {
    const NAME: &'static str = "floating_ips";
    type Key = FloatingIpId;
    type Row = Row<FloatingIp>;

    fn rows(&self) -> &Table<FloatingIpId, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<FloatingIpId, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<FloatingIpId>, Invalid> {
        let Event::FloatingIp(e) = ev else {
            return Ok(None);
        };
        let id = FloatingIpId::parse(c.subject.id_token()).ok_or(Invalid)?;
        let prev = self.rows.remove(&id);
        let before = prev
            .as_ref()
            .and_then(|r| r.state.association)
            .map(|a| a.port_id);
        if let Some(state) = router::evolve_floating_ip(prev.map(|r| r.state), e) {
            self.rows.insert(
                id,
                Row {
                    state,
                    seq: c.subject_seq,
                },
            );
        }
        self.index(id, before);
        Ok(Some(id))
    }

    fn rebuild_indexes(&mut self) {
        self.by_port.clear();
        let ids: Vec<FloatingIpId> = self.rows.keys().copied().collect();
        for id in ids {
            self.index(id, None);
        }
    }
}
