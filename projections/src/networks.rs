//! The network read model: every network with its subnets and ports, by network id
//! (`stratus.api.network.<uuid>`), and the indexes that find a subnet's or a port's
//! network.
//!
//! Invariants:
//! - A row is the fold of its own subject only ([`domain::network::evolve`]); its
//!   sequence is the OCC expectation of the next command on that network (address
//!   allocation included).
//! - A deleted network's row stays (marked deleted) so its subject's sequence is kept;
//!   lookups skip it. The indexes (a subnet's and a port's network, a device's ports)
//!   are derived from rows only.

use std::collections::{BTreeSet, HashMap};

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
    /// The ports of each device (`device_id`, e.g. a server), and each port's device:
    /// a server's view reads its ports without scanning every port.
    device_ports: HashMap<String, BTreeSet<PortId>>,
    port_device: HashMap<PortId, String>,
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
        let Some(ids) = self.device_ports.get(device) else {
            return Vec::new();
        };
        let mut v: Vec<&Port> = ids.iter().filter_map(|p| self.port(p)).collect();
        v.sort_by_key(|p| (p.created_at, p.id));
        v
    }

    /// Records `port`'s device (an empty one: none).
    fn set_device(&mut self, port: PortId, device: &str) {
        self.drop_device(port);
        if !device.is_empty() {
            self.device_ports
                .entry(device.to_string())
                .or_default()
                .insert(port);
            self.port_device.insert(port, device.to_string());
        }
    }

    /// Forgets `port`'s device.
    fn drop_device(&mut self, port: PortId) {
        if let Some(old) = self.port_device.remove(&port) {
            if let Some(set) = self.device_ports.get_mut(&old) {
                set.remove(&port);
                if set.is_empty() {
                    self.device_ports.remove(&old);
                }
            }
        }
    }

    fn index(&mut self, id: NetworkId) {
        if !self.rows.contains_key(&id) {
            return;
        }
        self.subnet_net.retain(|_, n| *n != id);
        let gone: Vec<PortId> = self
            .port_net
            .iter()
            .filter(|(_, n)| **n == id)
            .map(|(p, _)| *p)
            .collect();
        for p in gone {
            self.port_net.remove(&p);
            self.drop_device(p);
        }
        let Some(r) = self.rows.get(&id).filter(|r| !r.state.deleted) else {
            return;
        };
        let ports: Vec<(PortId, String)> = r
            .state
            .ports
            .values()
            .map(|p| (p.id, p.device_id.clone()))
            .collect();
        for s in r.state.subnets.keys() {
            self.subnet_net.insert(*s, id);
        }
        for (p, device) in ports {
            self.port_net.insert(p, id);
            self.set_device(p, &device);
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
                self.set_device(port.id, &port.device_id);
            }
            network::NetworkEvent::PortUpdated { port } => {
                self.set_device(port.id, &port.device_id);
            }
            network::NetworkEvent::PortDeleted { id: p, .. } => {
                self.port_net.remove(p);
                self.drop_device(*p);
            }
            network::NetworkEvent::Deleted { .. } => self.index(id),
            _ => {}
        }
        Ok(Some(id))
    }

    fn rebuild_indexes(&mut self) {
        self.subnet_net.clear();
        self.port_net.clear();
        self.device_ports.clear();
        self.port_device.clear();
        let ids: Vec<NetworkId> = self.rows.keys().copied().collect();
        for id in ids {
            self.index(id);
        }
    }
}
