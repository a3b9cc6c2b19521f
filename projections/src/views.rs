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

use domain::flavor::{self, Flavor};
use domain::host::{self, Host};
use domain::instance::{self, Instance, InstanceEvent};
use domain::{ClaimId, Event, InstanceId, Timestamp};
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

    /// Live flavor by id.
    pub fn flavor(&self, id: &str) -> Option<&Flavor> {
        let s = Subject::api("flavor", id).ok()?;
        self.flavors.get(&s)?.flavor.as_ref().filter(|f| !f.deleted)
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
            Event::Instance(e) => {
                let Some(id) = InstanceId::parse(c.subject.id_token()) else {
                    self.decode_errors += 1;
                    return;
                };
                let row = self.instances.entry(id).or_default();
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
