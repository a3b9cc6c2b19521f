//! The read models: folds of the log into current aggregate states.
//!
//! Invariants:
//! - `apply` is the only writer; it is deterministic and total (an undecodable event is
//!   counted in `decode_errors` and skipped, never a panic), so folding the same commits
//!   in the same per-stream order always yields equal views (`replay rebuild` relies on it).
//! - Streams are independent: an instance's api-subject state and cell-subject state are
//!   kept apart and the effective state is the cell one once it exists, so the order in
//!   which streams are folded does not matter.
//! - For every row, `*_seq` is the last subject sequence applied: the OCC expectation
//!   for the next append to that subject.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use domain::cell::{self, Cell, HostMapping};
use domain::flavor::{self, Flavor};
use domain::host::{self, Host};
use domain::image::{self, Image, ImageStatus};
use domain::instance::{self, Instance, InstanceEvent};
use domain::{CellName, ClaimId, Event, HostName, ImageId, InstanceId, Timestamp};
use eventlog::{Commit, StreamName, Subject};
use serde::{Deserialize, Serialize};

use crate::codec;

/// An instance as seen on its two subjects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InstanceRow {
    /// State from the api subject (build request); dropped once placed.
    pub api: Option<Instance>,
    /// Last sequence of the api subject.
    pub api_seq: u64,
    /// State from the cell subject, once placed.
    pub cell: Option<Instance>,
    /// The cell subject, once placed.
    pub cell_subject: Option<Subject>,
    /// Last sequence of the cell subject.
    pub cell_seq: u64,
    /// What the build request recorded beside its spec (hints, image properties).
    pub details: instance::BootDetails,
    /// What later events set that the instance state has no field for (access
    /// addresses, hostname, user data, trusted certificates: `instance.rebuild_started`).
    pub extras: instance::ServerExtras,
}

impl InstanceRow {
    /// The effective state.
    pub fn state(&self) -> Option<&Instance> {
        self.cell.as_ref().or(self.api.as_ref())
    }
}

/// A host and its placement generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    /// State.
    pub host: Host,
    /// Last subject sequence (placement generation).
    pub seq: u64,
}

/// A flavor and its subject sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlavorRow {
    /// State (tombstone when deleted).
    pub flavor: Option<Flavor>,
    /// Last subject sequence.
    pub seq: u64,
}

/// A cell and its subject sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRow {
    /// State.
    pub cell: Cell,
    /// Last subject sequence.
    pub seq: u64,
}

/// A host mapping and its subject sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostMappingRow {
    /// State.
    pub mapping: HostMapping,
    /// Last subject sequence.
    pub seq: u64,
}

/// An image record and its subject sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRow {
    /// State (status `deleted` once deleted: a tombstone).
    pub image: Image,
    /// Last subject sequence.
    pub seq: u64,
}

/// All read models.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Views {
    /// Instances by id.
    pub instances: HashMap<InstanceId, InstanceRow>,
    /// (created_at, id) of every instance, for Nova's default sort.
    pub by_created: BTreeSet<(Timestamp, InstanceId)>,
    /// Instances with an operation in progress or shelved (the reconciler's work list).
    pub pending: BTreeSet<InstanceId>,
    /// Claims per instance: (host subject, claim).
    pub claims: HashMap<InstanceId, BTreeSet<(Subject, ClaimId)>>,
    /// Hosts by subject.
    pub hosts: BTreeMap<Subject, HostRow>,
    /// Flavors by subject.
    pub flavors: BTreeMap<Subject, FlavorRow>,
    /// Cells by name.
    pub cells: BTreeMap<CellName, CellRow>,
    /// Host mappings by host name (every host belongs to exactly one cell).
    pub host_mappings: BTreeMap<HostName, HostMappingRow>,
    /// Images by id (deleted ones kept as tombstones).
    pub images: BTreeMap<ImageId, ImageRow>,
    /// Identity: projects, users, roles and the name index, by subject.
    pub identity: crate::identity::IdentityViews,
    /// Last applied position per stream.
    pub positions: BTreeMap<StreamName, u64>,
    /// Events applied.
    pub events_applied: u64,
    /// Events that could not be decoded (should stay 0).
    pub decode_errors: u64,
}

/// What changed in one `apply`, so callers can persist only that.
#[derive(Debug, Clone, Default)]
pub struct Touched {
    /// Instances changed.
    pub instances: BTreeSet<InstanceId>,
    /// Hosts changed.
    pub hosts: BTreeSet<Subject>,
    /// Flavors changed.
    pub flavors: BTreeSet<Subject>,
    /// Cells changed.
    pub cells: BTreeSet<CellName>,
    /// Host mappings changed.
    pub host_mappings: BTreeSet<HostName>,
    /// Images changed.
    pub images: BTreeSet<ImageId>,
    /// Identity subjects changed.
    pub identity: BTreeSet<Subject>,
}

impl Views {
    /// Position of a stream (0 if never seen).
    pub fn position(&self, stream: &StreamName) -> u64 {
        self.positions.get(stream).copied().unwrap_or(0)
    }

    /// Effective instance state.
    pub fn instance(&self, id: &InstanceId) -> Option<&Instance> {
        self.instances.get(id).and_then(|r| r.state())
    }

    /// A cell, if it exists.
    pub fn cell(&self, name: &CellName) -> Option<&Cell> {
        self.cells.get(name).map(|r| &r.cell)
    }

    /// The cell a host is mapped to.
    pub fn host_cell(&self, host: &HostName) -> Option<&CellName> {
        self.host_mappings.get(host).map(|r| &r.mapping.cell)
    }

    /// The cell whose stream holds an instance's current state (None while it is
    /// only a build request in the api stream).
    pub fn instance_cell(&self, id: &InstanceId) -> Option<CellName> {
        let row = self.instances.get(id)?;
        let s = row.cell_subject.as_ref()?;
        CellName::new(s.stream().as_str()).ok()
    }

    /// Live flavor by id.
    pub fn flavor(&self, id: &str) -> Option<&Flavor> {
        let s = Subject::api("flavor", id).ok()?;
        self.flavors.get(&s)?.flavor.as_ref().filter(|f| !f.deleted)
    }

    /// A live (not deleted) image.
    pub fn image(&self, id: &ImageId) -> Option<&Image> {
        self.images
            .get(id)
            .map(|r| &r.image)
            .filter(|i| i.status != ImageStatus::Deleted)
    }

    /// Merges views folded from *other streams* into these (streams are independent,
    /// see the module invariants). Used to fold streams in parallel; call
    /// [`Views::rebuild_indexes`] once after the last merge.
    pub fn merge(&mut self, other: Views) {
        for (id, o) in other.instances {
            let row = self.instances.entry(id).or_default();
            if o.cell_subject.is_some() {
                row.cell = o.cell;
                row.cell_seq = o.cell_seq;
                row.cell_subject = o.cell_subject;
            }
            if o.api_seq > 0 {
                row.api = o.api;
                row.api_seq = o.api_seq;
            }
            if row.cell.is_some() {
                row.api = None;
            }
        }
        self.hosts.extend(other.hosts);
        self.flavors.extend(other.flavors);
        self.cells.extend(other.cells);
        self.host_mappings.extend(other.host_mappings);
        self.images.extend(other.images);
        self.identity.rows.extend(other.identity.rows);
        self.positions.extend(other.positions);
        self.events_applied += other.events_applied;
        self.decode_errors += other.decode_errors;
    }

    /// A copy of the rows named in `touched`, with all positions (what a flush writes).
    pub fn snapshot_of(&self, touched: &Touched) -> Views {
        let mut v = Views {
            positions: self.positions.clone(),
            ..Views::default()
        };
        for id in &touched.instances {
            if let Some(r) = self.instances.get(id) {
                v.instances.insert(*id, r.clone());
            }
        }
        for s in &touched.hosts {
            if let Some(r) = self.hosts.get(s) {
                v.hosts.insert(s.clone(), r.clone());
            }
        }
        for s in &touched.flavors {
            if let Some(r) = self.flavors.get(s) {
                v.flavors.insert(s.clone(), r.clone());
            }
        }
        for c in &touched.cells {
            if let Some(r) = self.cells.get(c) {
                v.cells.insert(c.clone(), r.clone());
            }
        }
        for h in &touched.host_mappings {
            if let Some(r) = self.host_mappings.get(h) {
                v.host_mappings.insert(h.clone(), r.clone());
            }
        }
        for i in &touched.images {
            if let Some(r) = self.images.get(i) {
                v.images.insert(*i, r.clone());
            }
        }
        for s in &touched.identity {
            if let Some(r) = self.identity.rows.get(s) {
                v.identity.rows.insert(s.clone(), r.clone());
            }
        }
        v
    }

    /// Applies one commit. Commits of a stream must come in order; a commit at or
    /// below the stream's position is ignored (redelivery).
    pub fn apply(&mut self, c: &Commit, touched: &mut Touched) {
        match self.positions.get_mut(&c.stream) {
            Some(pos) if c.stream_seq <= *pos => return,
            Some(pos) => *pos = c.stream_seq,
            None => {
                self.positions.insert(c.stream.clone(), c.stream_seq);
            }
        }
        for se in &c.events {
            match codec::decode(se) {
                Ok(ev) => {
                    self.events_applied += 1;
                    self.apply_event(c, ev, touched);
                }
                Err(e) => {
                    self.decode_errors += 1;
                    tracing::error!(subject = %c.subject, seq = c.subject_seq, error = %e, "undecodable event skipped");
                }
            }
        }
    }

    fn apply_event(&mut self, c: &Commit, ev: Event, touched: &mut Touched) {
        match ev {
            Event::Identity(e) => {
                self.identity.apply(&c.subject, c.subject_seq, &e);
                touched.identity.insert(c.subject.clone());
            }
            Event::Cell(e) => {
                let cell::CellEvent::Created { name, .. } = &e;
                let name = name.clone();
                let prev = self.cells.remove(&name).map(|r| r.cell);
                if let Some(cell) = cell::evolve(prev, &e) {
                    self.cells.insert(
                        name.clone(),
                        CellRow {
                            cell,
                            seq: c.subject_seq,
                        },
                    );
                }
                touched.cells.insert(name);
            }
            Event::HostMapping(e) => {
                let cell::HostMappingEvent::Mapped { host, .. } = &e;
                let host = host.clone();
                let prev = self.host_mappings.remove(&host).map(|r| r.mapping);
                if let Some(mapping) = cell::evolve_mapping(prev, &e) {
                    self.host_mappings.insert(
                        host.clone(),
                        HostMappingRow {
                            mapping,
                            seq: c.subject_seq,
                        },
                    );
                }
                touched.host_mappings.insert(host);
            }
            Event::Image(e) => {
                let Some(id) = ImageId::parse(c.subject.id_token()) else {
                    self.decode_errors += 1;
                    return;
                };
                let prev = self.images.remove(&id).map(|r| r.image);
                if let Some(image) = image::evolve(prev, &e) {
                    self.images.insert(
                        id,
                        ImageRow {
                            image,
                            seq: c.subject_seq,
                        },
                    );
                }
                touched.images.insert(id);
            }
            Event::Instance(e) => {
                let Some(id) = InstanceId::parse(c.subject.id_token()) else {
                    self.decode_errors += 1;
                    return;
                };
                let row = self.instances.entry(id).or_default();
                if let InstanceEvent::BootDetailsRecorded { details } = &e {
                    row.details = details.clone();
                }
                row.extras.apply(&e);
                let is_api = c.stream.as_str() == "api";
                let creates = matches!(
                    e,
                    InstanceEvent::BuildRequested { .. }
                        | InstanceEvent::Placed { .. }
                        | InstanceEvent::BuildFailed { .. }
                );
                if is_api {
                    let next = instance::evolve(row.api.take(), &e);
                    row.api = if row.cell.is_some() { None } else { next };
                    row.api_seq = c.subject_seq;
                } else {
                    row.cell = match e {
                        // The first cell commit carries the whole state: move it in.
                        InstanceEvent::Placed { snapshot, .. }
                        | InstanceEvent::BuildFailed { snapshot, .. } => Some(*snapshot),
                        e => {
                            let base = match row.cell.take() {
                                Some(c) => Some(c),
                                None => row.api.clone(),
                            };
                            instance::evolve(base, &e)
                        }
                    };
                    row.cell_seq = c.subject_seq;
                    if row.cell_subject.as_ref() != Some(&c.subject) {
                        row.cell_subject = Some(c.subject.clone());
                    }
                    if row.cell.is_some() {
                        row.api = None;
                    }
                }
                if let Some(s) = row.state() {
                    if creates {
                        self.by_created.insert((s.created_at, id));
                    }
                    if s.op.is_some() || (s.vm_state == domain::VmState::Shelved && !s.deleted) {
                        self.pending.insert(id);
                    } else {
                        self.pending.remove(&id);
                    }
                }
                touched.instances.insert(id);
            }
            Event::Flavor(e) => {
                let row = self.flavors.entry(c.subject.clone()).or_insert(FlavorRow {
                    flavor: None,
                    seq: 0,
                });
                row.flavor = flavor::evolve(row.flavor.take(), &e);
                row.seq = c.subject_seq;
                touched.flavors.insert(c.subject.clone());
            }
            Event::Host(e) => {
                let prev = self.hosts.remove(&c.subject).map(|r| r.host);
                match &e {
                    host::HostEvent::Claimed {
                        claim, instance, ..
                    } => {
                        self.claims
                            .entry(*instance)
                            .or_default()
                            .insert((c.subject.clone(), *claim));
                    }
                    host::HostEvent::Released { claim } => {
                        if let Some(a) = prev.as_ref().and_then(|h| h.allocations.get(claim)) {
                            if let Some(set) = self.claims.get_mut(&a.instance) {
                                set.remove(&(c.subject.clone(), *claim));
                                if set.is_empty() {
                                    self.claims.remove(&a.instance);
                                }
                            }
                        }
                    }
                    host::HostEvent::Registered { .. } => {}
                }
                if let Some(h) = host::evolve(prev, &e) {
                    self.hosts.insert(
                        c.subject.clone(),
                        HostRow {
                            host: h,
                            seq: c.subject_seq,
                        },
                    );
                }
                touched.hosts.insert(c.subject.clone());
            }
        }
    }
}
