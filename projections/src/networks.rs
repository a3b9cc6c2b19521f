//! The network read model: every network with its subnets and ports, by network id
//! (`stratus.api.network.<uuid>`), and the indexes that find a subnet's or a port's
//! network.
//!
//! Invariants:
//! - A row is the fold of its own subject only ([`domain::network::evolve`]); its
//!   sequence is the OCC expectation of the next command on that network (address
//!   allocation included).
//! - A deleted network's row stays (marked deleted) so its subject's sequence is kept;
//!   lookups skip it. The indexes are derived from rows only.

use std::collections::HashMap;

use domain::network::{self, Network, Port, Subnet};
use domain::{Event, NetworkId, PortId, SubnetId};
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// Networks, subnets and ports.
#[derive(Debug, Clone, Default)]
pub struct Networks {
    rows: Table<NetworkId, Row<Network>>,
    subnet_net: HashMap<SubnetId, NetworkId>,
    port_net: HashMap<PortId, NetworkId>,
}

/// The subject of a network.
pub fn network_subject(id: &NetworkId) -> Subject {
    Subject::api(SubjectKind::Network, &id.to_string()).expect("uuid is a valid token")
}

impl Networks {
    /// A network's row, deleted or not (the OCC sequence of its subject).
    pub fn row(&self, id: &NetworkId) -> Option<&Row<Network>> {
        self.rows.get(id)
    }

    /// A live network.
    pub fn get(&self, id: &NetworkId) -> Option<&Network> {
        self.rows.get(id).map(|r| &r.state).filter(|n| !n.deleted)
    }

    /// Every live network, by id.
    pub fn all(&self) -> impl Iterator<Item = &Network> {
        self.rows.values().map(|r| &r.state).filter(|n| !n.deleted)
    }

    /// The network of a subnet.
    pub fn subnet_network(&self, id: &SubnetId) -> Option<NetworkId> {
        self.subnet_net.get(id).copied()
    }

    /// A subnet.
    pub fn subnet(&self, id: &SubnetId) -> Option<&Subnet> {
        self.get(self.subnet_net.get(id)?)?.subnets.get(id)
    }

    /// The network of a port.
    pub fn port_network(&self, id: &PortId) -> Option<NetworkId> {
        self.port_net.get(id).copied()
    }

    /// A port.
    pub fn port(&self, id: &PortId) -> Option<&Port> {
        self.get(self.port_net.get(id)?)?.ports.get(id)
    }

    /// Every subnet of every live network.
    pub fn subnets(&self) -> impl Iterator<Item = &Subnet> {
        self.all().flat_map(|n| n.subnets.values())
    }

    /// Every port of every live network.
    pub fn ports(&self) -> impl Iterator<Item = &Port> {
        self.all().flat_map(|n| n.ports.values())
    }

    /// The ports whose `device_id` is `device` (a server's ports), by creation time.
    pub fn ports_of_device(&self, device: &str) -> Vec<&Port> {
        let mut v: Vec<&Port> = self.ports().filter(|p| p.device_id == device).collect();
        v.sort_by_key(|p| (p.created_at, p.id));
        v
    }

    fn index(&mut self, id: NetworkId) {
        let Some(r) = self.rows.get(&id) else { return };
        self.subnet_net.retain(|_, n| *n != id);
        self.port_net.retain(|_, n| *n != id);
        if r.state.deleted {
            return;
        }
        for s in r.state.subnets.keys() {
            self.subnet_net.insert(*s, id);
        }
        for p in r.state.ports.keys() {
            self.port_net.insert(*p, id);
        }
    }
}

impl ReadModel for Networks {
    const NAME: &'static str = "networks";
    type Key = NetworkId;
    type Row = Row<Network>;

    fn rows(&self) -> &Table<NetworkId, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<NetworkId, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<NetworkId>, Invalid> {
        let Event::Network(e) = ev else {
            return Ok(None);
        };
        let id = NetworkId::parse(c.subject.id_token()).ok_or(Invalid)?;
        let prev = self.rows.remove(&id);
        let seq = c.subject_seq;
        let next = network::evolve(prev.map(|r| r.state), e);
        if let Some(state) = next {
            self.rows.insert(id, Row { state, seq });
        }
        // Cheap incremental upkeep of the indexes for the event's own record.
        match e {
            network::NetworkEvent::SubnetCreated { subnet } => {
                self.subnet_net.insert(subnet.id, id);
            }
            network::NetworkEvent::SubnetDeleted { id: s, .. } => {
                self.subnet_net.remove(s);
            }
            network::NetworkEvent::PortCreated { port } => {
                self.port_net.insert(port.id, id);
            }
            network::NetworkEvent::PortDeleted { id: p, .. } => {
                self.port_net.remove(p);
            }
            network::NetworkEvent::Deleted { .. } => self.index(id),
            _ => {}
        }
        Ok(Some(id))
    }

    fn rebuild_indexes(&mut self) {
        self.subnet_net.clear();
        self.port_net.clear();
        let ids: Vec<NetworkId> = self.rows.keys().copied().collect();
        for id in ids {
            self.index(id);
        }
    }
}
