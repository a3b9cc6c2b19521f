//! The built-in read models and [`Views`], the registry that folds commits into every
//! registered model (see [`crate::model`] for the trait and its invariants).
//!
//! Invariants:
//! - `apply` is the only writer; it is deterministic and total (an undecodable event, or
//!   one whose subject names no valid key, is counted in `decode_errors` and skipped,
//!   never a panic), so folding the same commits in the same per-stream order always
//!   yields equal views (`replay rebuild` relies on it).
//! - Streams are independent: an instance's api-subject state and cell-subject state are
//!   kept apart and the effective state is the cell one once it exists, so the order in
//!   which streams are folded does not matter.
//! - For every row, its sequence is the last subject sequence applied: the OCC
//!   expectation for the next append to that subject.
//! - Every registered model has a distinct [`ReadModel::NAME`]; `Views` names no model
//!   in `apply`, `merge`, `snapshot_of`, the store or `replay::compare`, it iterates them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use domain::cell::{self, Cell, HostMapping};
use domain::flavor::{self, Flavor};
use domain::host::{self, Host};
use domain::image::{self, Image, ImageStatus};
use domain::instance::{self, Instance, InstanceEvent};
use domain::{CellName, ClaimId, Event, HostName, ImageId, InstanceId, Timestamp};
use eventlog::{Commit, StreamName, Subject};
use serde::{Deserialize, Serialize};

use crate::aggregates::Aggregates;
use crate::codec;
use crate::identity::IdentityViews;
use crate::model::{AnyModel, Invalid, ReadModel, Row, Table, Touched};

/// An instance as seen on its two subjects: the instance model's row (a build request
/// lives on the api subject until it is placed on a cell subject, so the row keeps one
/// sequence per subject).
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

/// Instances by id, with the indexes the API and the reactors read.
#[derive(Debug, Clone, Default)]
pub struct Instances {
    rows: Table<InstanceId, InstanceRow>,
    /// (created_at, id) of every instance, for Nova's default sort.
    by_created: BTreeSet<(Timestamp, InstanceId)>,
    /// Instances with an operation in progress, shelved or soft-deleted (the
    /// reconciler's work list).
    pending: BTreeSet<InstanceId>,
}

/// Whether an instance is on the reconciler's work list (an operation to time out, a
/// shelved server to offload, a soft-deleted one to reclaim).
fn is_pending(s: &Instance) -> bool {
    s.op.is_some()
        || (matches!(
            s.vm_state,
            domain::VmState::Shelved | domain::VmState::SoftDeleted
        ) && !s.deleted)
}

impl ReadModel for Instances {
    const NAME: &'static str = "instances";
    type Key = InstanceId;
    type Row = InstanceRow;

    fn rows(&self) -> &Table<InstanceId, InstanceRow> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<InstanceId, InstanceRow> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<InstanceId>, Invalid> {
        let Event::Instance(e) = ev else {
            return Ok(None);
        };
        let id = InstanceId::parse(c.subject.id_token()).ok_or(Invalid)?;
        let row = self.rows.entry(id).or_default();
        if let InstanceEvent::BootDetailsRecorded { details } = e {
            row.details = details.clone();
        }
        row.extras.apply(e);
        let is_api = c.stream.as_str() == "api";
        let creates = matches!(
            e,
            InstanceEvent::BuildRequested { .. }
                | InstanceEvent::Placed { .. }
                | InstanceEvent::BuildFailed { .. }
        );
        if is_api {
            let next = instance::evolve(row.api.take(), e);
            row.api = if row.cell.is_some() { None } else { next };
            row.api_seq = c.subject_seq;
        } else {
            row.cell = match e {
                // The first cell commit carries the whole state.
                InstanceEvent::Placed { snapshot, .. }
                | InstanceEvent::BuildFailed { snapshot, .. } => Some((**snapshot).clone()),
                e => {
                    let base = match row.cell.take() {
                        Some(c) => Some(c),
                        None => row.api.clone(),
                    };
                    instance::evolve(base, e)
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
            if is_pending(s) {
                self.pending.insert(id);
            } else {
                self.pending.remove(&id);
            }
        }
        Ok(Some(id))
    }

    /// An instance's api-subject and cell-subject halves come from different streams:
    /// each side keeps what its stream folded. The boot details come from the api
    /// subject only (`instance.boot_details_recorded`); the extras from both (the
    /// create's on the api subject, a rebuild's and the tags on the cell subject), laid
    /// together by [`instance::ServerExtras::combined`].
    fn merge(&mut self, other: Self) {
        for (id, o) in other.rows {
            let row = self.rows.entry(id).or_default();
            let had_api = row.api_seq > 0;
            let had_cell = row.cell_subject.is_some();
            if o.cell_subject.is_some() {
                row.cell = o.cell;
                row.cell_seq = o.cell_seq;
                row.cell_subject = o.cell_subject;
                row.extras = if had_api {
                    instance::ServerExtras::combined(&row.extras, &o.extras)
                } else {
                    o.extras
                };
            } else if o.api_seq > 0 {
                row.extras = if had_cell {
                    instance::ServerExtras::combined(&o.extras, &row.extras)
                } else {
                    o.extras
                };
            }
            if o.api_seq > 0 {
                row.api = o.api;
                row.api_seq = o.api_seq;
                row.details = o.details;
            }
            if row.cell.is_some() {
                row.api = None;
            }
        }
    }

    fn rebuild_indexes(&mut self) {
        self.by_created.clear();
        self.pending.clear();
        for (id, row) in &self.rows {
            if let Some(s) = row.state() {
                self.by_created.insert((s.created_at, *id));
                if is_pending(s) {
                    self.pending.insert(*id);
                }
            }
        }
    }
}

/// Claims per instance: (host subject, claim).
pub type Claims = HashMap<InstanceId, BTreeSet<(Subject, ClaimId)>>;

/// Hosts by subject (the sequence is the placement generation), with the claims index.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    rows: Table<Subject, Row<Host>>,
    claims: Claims,
}

impl ReadModel for Hosts {
    const NAME: &'static str = "hosts";
    type Key = Subject;
    type Row = Row<Host>;

    fn rows(&self) -> &Table<Subject, Row<Host>> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Row<Host>> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Host(e) = ev else {
            return Ok(None);
        };
        let prev = self.rows.remove(&c.subject).map(|r| r.state);
        match e {
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
            host::HostEvent::Registered { .. }
            | host::HostEvent::ServiceUpdated { .. }
            | host::HostEvent::Deleted { .. } => {}
        }
        if let Some(h) = host::evolve(prev, e) {
            self.rows.insert(
                c.subject.clone(),
                Row {
                    state: h,
                    seq: c.subject_seq,
                },
            );
        }
        Ok(Some(c.subject.clone()))
    }

    fn rebuild_indexes(&mut self) {
        self.claims.clear();
        for (subj, row) in &self.rows {
            for (claim, a) in &row.state.allocations {
                self.claims
                    .entry(a.instance)
                    .or_default()
                    .insert((subj.clone(), *claim));
            }
        }
    }
}

/// Flavors by subject (the state is `None` once deleted: a tombstone that keeps the
/// sequence).
#[derive(Debug, Clone, Default)]
pub struct Flavors {
    rows: Table<Subject, Row<Option<Flavor>>>,
}

impl ReadModel for Flavors {
    const NAME: &'static str = "flavors";
    type Key = Subject;
    type Row = Row<Option<Flavor>>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Flavor(e) = ev else {
            return Ok(None);
        };
        // Name claims are [`FlavorNames`]' rows.
        if c.subject.kind() != Some(eventlog::SubjectKind::Flavor) {
            return Ok(None);
        }
        let row = self.rows.entry(c.subject.clone()).or_insert(Row {
            state: None,
            seq: 0,
        });
        row.state = flavor::evolve(row.state.take(), e);
        row.seq = c.subject_seq;
        Ok(Some(c.subject.clone()))
    }
}

/// The subject of the claim on flavor name `name`.
pub fn flavor_name_subject(name: &str) -> Subject {
    Subject::api(eventlog::SubjectKind::FlavorName, name)
        .expect("an encoded token always makes a valid subject")
}

/// Claims on flavor names by subject (`None` once released), see
/// [`domain::flavor::decide_name`].
#[derive(Debug, Clone, Default)]
pub struct FlavorNames {
    rows: Table<Subject, Row<Option<flavor::NameClaim>>>,
}

impl ReadModel for FlavorNames {
    const NAME: &'static str = "flavor_names";
    type Key = Subject;
    type Row = Row<Option<flavor::NameClaim>>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Flavor(e) = ev else {
            return Ok(None);
        };
        if c.subject.kind() != Some(eventlog::SubjectKind::FlavorName) {
            return Ok(None);
        }
        let row = self.rows.entry(c.subject.clone()).or_insert(Row {
            state: None,
            seq: 0,
        });
        row.state = flavor::evolve_name(row.state.take(), e);
        row.seq = c.subject_seq;
        Ok(Some(c.subject.clone()))
    }
}

/// Cells by name.
#[derive(Debug, Clone, Default)]
pub struct Cells {
    rows: Table<CellName, Row<Cell>>,
}

impl ReadModel for Cells {
    const NAME: &'static str = "cells";
    type Key = CellName;
    type Row = Row<Cell>;

    fn rows(&self) -> &Table<CellName, Row<Cell>> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<CellName, Row<Cell>> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<CellName>, Invalid> {
        let Event::Cell(e) = ev else {
            return Ok(None);
        };
        let cell::CellEvent::Created { name, .. } = e;
        let prev = self.rows.remove(name).map(|r| r.state);
        if let Some(state) = cell::evolve(prev, e) {
            let seq = c.subject_seq;
            self.rows.insert(name.clone(), Row { state, seq });
        }
        Ok(Some(name.clone()))
    }
}

/// Host mappings by host name (every host belongs to exactly one cell).
#[derive(Debug, Clone, Default)]
pub struct HostMappings {
    rows: Table<HostName, Row<HostMapping>>,
}

impl ReadModel for HostMappings {
    const NAME: &'static str = "host_mappings";
    type Key = HostName;
    type Row = Row<HostMapping>;

    fn rows(&self) -> &Table<HostName, Row<HostMapping>> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<HostName, Row<HostMapping>> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<HostName>, Invalid> {
        let Event::HostMapping(e) = ev else {
            return Ok(None);
        };
        let cell::HostMappingEvent::Mapped { host, .. } = e;
        let prev = self.rows.remove(host).map(|r| r.state);
        if let Some(state) = cell::evolve_mapping(prev, e) {
            let seq = c.subject_seq;
            self.rows.insert(host.clone(), Row { state, seq });
        }
        Ok(Some(host.clone()))
    }
}

/// Images by id (status `deleted` once deleted: a tombstone).
#[derive(Debug, Clone, Default)]
pub struct Images {
    rows: Table<ImageId, Row<Image>>,
}

impl ReadModel for Images {
    const NAME: &'static str = "images";
    type Key = ImageId;
    type Row = Row<Image>;

    fn rows(&self) -> &Table<ImageId, Row<Image>> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<ImageId, Row<Image>> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<ImageId>, Invalid> {
        let Event::Image(e) = ev else {
            return Ok(None);
        };
        let id = ImageId::parse(c.subject.id_token()).ok_or(Invalid)?;
        let prev = self.rows.remove(&id).map(|r| r.state);
        if let Some(state) = image::evolve(prev, e) {
            let seq = c.subject_seq;
            self.rows.insert(id, Row { state, seq });
        }
        Ok(Some(id))
    }
}

/// Every registered read model, folded to `positions`.
#[derive(Debug, Clone)]
pub struct Views {
    models: Vec<Box<dyn AnyModel>>,
    /// Last applied position per stream.
    pub positions: BTreeMap<StreamName, u64>,
    pub events_applied: u64,
    /// Events that could not be decoded or addressed no valid row (should stay 0).
    pub decode_errors: u64,
}

impl Default for Views {
    /// The built-in models: the one place they are registered.
    fn default() -> Self {
        let mut v = Views {
            models: Vec::new(),
            positions: BTreeMap::new(),
            events_applied: 0,
            decode_errors: 0,
        };
        v.register::<Instances>();
        v.register::<Hosts>();
        v.register::<Flavors>();
        v.register::<FlavorNames>();
        v.register::<Cells>();
        v.register::<HostMappings>();
        v.register::<Images>();
        v.register::<IdentityViews>();
        v.register::<crate::quota::Quotas>();
        v.register::<crate::server_groups::ServerGroups>();
        v.register::<crate::keypairs::Keypairs>();
        v.register::<Aggregates>();
        v.register::<crate::metadefs::Metadefs>();
        v.register::<crate::tasks::Tasks>();
        v.register::<crate::usage::Usage>();
        v.register::<crate::usage::UsageAudits>();
        v.register::<crate::instance_actions::InstanceActions>();
        v.register::<crate::instance_folds::InstanceFolds>();
        v.register::<crate::subscriptions::Subscriptions>();
        v.register::<crate::migrations::Migrations>();
        v.register::<crate::networks::Networks>();
        v.register::<crate::network_quotas::NetworkQuotas>();
        v.register::<crate::subnet_pools::SubnetPools>();
        v.register::<crate::routers::Routers>();
        v.register::<crate::routers::FloatingIps>();
        v.register::<crate::security_groups::SecurityGroups>();
        v
    }
}

/// Views are equal when their positions, counters and every model's rows are (derived
/// indexes follow from rows).
impl PartialEq for Views {
    fn eq(&self, other: &Self) -> bool {
        self.positions == other.positions
            && self.events_applied == other.events_applied
            && self.decode_errors == other.decode_errors
            && self.models.len() == other.models.len()
            && self
                .models
                .iter()
                .zip(&other.models)
                .all(|(a, b)| a.rows_eq(b.as_ref()))
    }
}

impl Views {
    /// Registers another read model (empty; fold or load to fill it).
    ///
    /// # Panics
    /// When a model of the same name is already registered: the name is its table.
    pub fn register<M: ReadModel>(&mut self) {
        assert!(
            self.models.iter().all(|m| m.name() != M::NAME),
            "read model {} registered twice",
            M::NAME
        );
        self.models.push(Box::new(M::default()));
    }

    /// Empty views with the same registered models (what a rebuild folds into).
    pub fn empty_like(&self) -> Views {
        Views {
            models: self.models.iter().map(|m| m.empty()).collect(),
            positions: BTreeMap::new(),
            events_applied: 0,
            decode_errors: 0,
        }
    }

    /// Names of the registered models, in registration order.
    pub fn model_names(&self) -> Vec<&'static str> {
        self.models.iter().map(|m| m.name()).collect()
    }

    /// A registered model, if `M` is registered.
    pub fn try_model<M: ReadModel>(&self) -> Option<&M> {
        let t = std::any::TypeId::of::<M>();
        self.models
            .iter()
            .find(|m| m.type_id_of() == t)
            .and_then(|m| m.as_any().downcast_ref())
    }

    /// A registered model.
    ///
    /// # Panics
    /// When `M` is not registered (the built-in ones always are).
    pub fn model<M: ReadModel>(&self) -> &M {
        self.try_model()
            .unwrap_or_else(|| panic!("read model {} is not registered", M::NAME))
    }

    /// A registered model, mutably (for loading and tests; folding goes through
    /// [`Views::apply`]).
    pub fn model_mut<M: ReadModel>(&mut self) -> &mut M {
        let t = std::any::TypeId::of::<M>();
        self.models
            .iter_mut()
            .find(|m| m.type_id_of() == t)
            .and_then(|m| m.as_any_mut().downcast_mut())
            .unwrap_or_else(|| panic!("read model {} is not registered", M::NAME))
    }

    pub(crate) fn models(&self) -> &[Box<dyn AnyModel>] {
        &self.models
    }

    pub(crate) fn models_mut(&mut self) -> &mut [Box<dyn AnyModel>] {
        &mut self.models
    }

    /// Position of a stream (0 if never seen).
    pub fn position(&self, stream: &StreamName) -> u64 {
        self.positions.get(stream).copied().unwrap_or(0)
    }

    /// Instance rows by id.
    pub fn instances(&self) -> &Table<InstanceId, InstanceRow> {
        &self.model::<Instances>().rows
    }

    /// (created_at, id) of every instance, for Nova's default sort.
    pub fn by_created(&self) -> &BTreeSet<(Timestamp, InstanceId)> {
        &self.model::<Instances>().by_created
    }

    /// Instances with an operation in progress or shelved (the reconciler's work list).
    pub fn pending(&self) -> &BTreeSet<InstanceId> {
        &self.model::<Instances>().pending
    }

    /// Host rows by subject.
    pub fn hosts(&self) -> &Table<Subject, Row<Host>> {
        &self.model::<Hosts>().rows
    }

    /// Claims per instance: (host subject, claim).
    pub fn claims(&self) -> &Claims {
        &self.model::<Hosts>().claims
    }

    /// Flavor rows by subject (tombstones included).
    pub fn flavors(&self) -> &Table<Subject, Row<Option<Flavor>>> {
        &self.model::<Flavors>().rows
    }

    /// Flavor name claims by subject ([`flavor_name_subject`]).
    pub fn flavor_names(&self) -> &Table<Subject, Row<Option<flavor::NameClaim>>> {
        &self.model::<FlavorNames>().rows
    }

    /// Cell rows by name.
    pub fn cells(&self) -> &Table<CellName, Row<Cell>> {
        &self.model::<Cells>().rows
    }

    /// Host mapping rows by host name.
    pub fn host_mappings(&self) -> &Table<HostName, Row<HostMapping>> {
        &self.model::<HostMappings>().rows
    }

    /// Image rows by id (tombstones included).
    pub fn images(&self) -> &Table<ImageId, Row<Image>> {
        &self.model::<Images>().rows
    }

    /// Subnet pools.
    pub fn subnet_pools(&self) -> &crate::subnet_pools::SubnetPools {
        self.model::<crate::subnet_pools::SubnetPools>()
    }

    /// Network quota ledgers.
    pub fn network_quotas(&self) -> &crate::network_quotas::NetworkQuotas {
        self.model::<crate::network_quotas::NetworkQuotas>()
    }

    /// Networks with their subnets and ports.
    pub fn networks(&self) -> &crate::networks::Networks {
        self.model::<crate::networks::Networks>()
    }

    /// Routers.
    pub fn routers(&self) -> &crate::routers::Routers {
        self.model::<crate::routers::Routers>()
    }

    /// Floating IPs.
    pub fn floating_ips(&self) -> &crate::routers::FloatingIps {
        self.model::<crate::routers::FloatingIps>()
    }

    /// Security groups with their rules.
    pub fn security_groups(&self) -> &crate::security_groups::SecurityGroups {
        self.model::<crate::security_groups::SecurityGroups>()
    }

    /// Identity: projects, users, roles and the name index.
    pub fn identity(&self) -> &IdentityViews {
        self.model::<IdentityViews>()
    }

    /// Server groups of every project.
    pub fn server_groups(&self) -> &crate::server_groups::ServerGroups {
        self.model::<crate::server_groups::ServerGroups>()
    }

    /// Every user's key pairs.
    pub fn keypairs(&self) -> &crate::keypairs::Keypairs {
        self.model::<crate::keypairs::Keypairs>()
    }

    /// Quota ledgers and classes.
    pub fn quotas(&self) -> &crate::quota::Quotas {
        self.model::<crate::quota::Quotas>()
    }

    /// Every instance's actions (os-instance-actions).
    pub fn instance_actions(&self) -> &crate::instance_actions::InstanceActions {
        self.model::<crate::instance_actions::InstanceActions>()
    }

    /// Every instance's migrations (os-migrations, `/servers/{id}/migrations`).
    pub fn migrations(&self) -> &crate::migrations::Migrations {
        self.model::<crate::migrations::Migrations>()
    }

    /// Fold snapshots of instance subjects (the audit API's state-at index).
    pub fn instance_folds(&self) -> &crate::instance_folds::InstanceFolds {
        self.model::<crate::instance_folds::InstanceFolds>()
    }

    /// Host aggregates and their host / zone indexes.
    pub fn aggregates(&self) -> &Aggregates {
        self.model::<Aggregates>()
    }

    /// The image tasks.
    pub fn tasks(&self) -> &crate::tasks::Tasks {
        self.model::<crate::tasks::Tasks>()
    }

    /// The image metadata definitions.
    pub fn metadefs(&self) -> &crate::metadefs::Metadefs {
        self.model::<crate::metadefs::Metadefs>()
    }

    /// The availability zone of a host: the zone of its aggregates, else Nova's default
    /// `nova`. The one function the scheduler, the server views and the zone listings
    /// use (a host's `HostSpec.availability_zone` is not consulted).
    pub fn host_availability_zone(&self, host: &HostName) -> String {
        self.aggregates().zone_of(host).to_string()
    }

    /// Every compute host known to the world: registered (cell host rows) or mapped.
    pub fn compute_host_known(&self, host: &HostName) -> bool {
        self.host_mappings().contains_key(host)
            || self.hosts().values().any(|r| &r.state.spec.name == host)
    }

    /// The zones compute hosts are in (Nova's available zones: every zone with an
    /// enabled compute service), sorted.
    pub fn availability_zones(&self) -> BTreeSet<String> {
        // Nova counts the zones of enabled compute services only.
        self.hosts()
            .values()
            .filter(|r| r.state.spec.cell != CellName::cell0())
            .filter(|r| !r.state.service.disabled && !r.state.service.deleted)
            .map(|r| self.host_availability_zone(&r.state.spec.name))
            .collect()
    }

    /// Effective instance state.
    pub fn instance(&self, id: &InstanceId) -> Option<&Instance> {
        self.instances().get(id).and_then(|r| r.state())
    }

    /// A cell, if it exists.
    pub fn cell(&self, name: &CellName) -> Option<&Cell> {
        self.cells().get(name).map(|r| &r.state)
    }

    /// The cell a host is mapped to.
    pub fn host_cell(&self, host: &HostName) -> Option<&CellName> {
        self.host_mappings().get(host).map(|r| &r.state.cell)
    }

    /// The cell whose stream holds an instance's current state (None while it is
    /// only a build request in the api stream).
    pub fn instance_cell(&self, id: &InstanceId) -> Option<CellName> {
        let row = self.instances().get(id)?;
        let s = row.cell_subject.as_ref()?;
        CellName::new(s.stream().as_str()).ok()
    }

    /// Live flavor by id.
    pub fn flavor(&self, id: &str) -> Option<&Flavor> {
        let s = Subject::api(eventlog::SubjectKind::Flavor, id).ok()?;
        self.flavors()
            .get(&s)?
            .state
            .as_ref()
            .filter(|f| !f.deleted)
    }

    /// A live (not deleted) image.
    pub fn image(&self, id: &ImageId) -> Option<&Image> {
        self.images()
            .get(id)
            .map(|r| &r.state)
            .filter(|i| i.status != ImageStatus::Deleted)
    }

    /// Merges views folded from *other streams* into these (streams are independent,
    /// see the module invariants). Used to fold streams in parallel; call
    /// [`Views::rebuild_indexes`] once after the last merge.
    pub fn merge(&mut self, other: Views) {
        for m in other.models {
            match self.models.iter_mut().find(|x| x.name() == m.name()) {
                Some(mine) => mine.merge(m),
                None => self.models.push(m),
            }
        }
        self.positions.extend(other.positions);
        self.events_applied += other.events_applied;
        self.decode_errors += other.decode_errors;
    }

    /// Recomputes every model's derived indexes from its rows.
    pub fn rebuild_indexes(&mut self) {
        for m in &mut self.models {
            m.rebuild_indexes();
        }
    }

    /// A copy of the rows named in `touched`, with all positions (what a flush writes).
    pub fn snapshot_of(&self, touched: &Touched) -> Views {
        Views {
            models: self
                .models
                .iter()
                .map(|m| m.copy_touched(touched))
                .collect(),
            positions: self.positions.clone(),
            events_applied: 0,
            decode_errors: 0,
        }
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
                    for m in &mut self.models {
                        if m.apply(c, &ev, touched).is_err() {
                            self.decode_errors += 1;
                        }
                    }
                }
                Err(e) => {
                    self.decode_errors += 1;
                    tracing::error!(subject = %c.subject, seq = c.subject_seq, error = %e, "undecodable event skipped");
                }
            }
        }
    }

    /// Differences between these (stored) views and `rebuilt`, model by model and then
    /// stream positions, named by model and key (`replay rebuild` prints them).
    pub fn differences(&self, rebuilt: &Views) -> Vec<String> {
        let mut d = Vec::new();
        for r in &rebuilt.models {
            match self.models.iter().find(|m| m.name() == r.name()) {
                Some(s) => s.diff(r.as_ref(), &mut d),
                None => d.push(format!("{}: not registered in the stored views", r.name())),
            }
        }
        for (s, p) in &rebuilt.positions {
            if self.position(s) != *p {
                d.push(format!(
                    "stream {s}: stored position {} vs rebuilt {p}",
                    self.position(s)
                ));
            }
        }
        d
    }
}
