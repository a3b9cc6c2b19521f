//! Quotas: limits per project (and user), and the ledger that admits instance usage
//! exactly under concurrency.
//!
//! Two kinds of aggregate, both in the api stream:
//! - a project's **ledger**, `stratus.api.quota.<project>`: its limit overrides (for the
//!   project and per user) and what its instances hold (`Holding` per instance:
//!   instances / cores / ram, plus the delta of an upsize in progress);
//! - a **quota class**, `stratus.api.quota_class.<name>`: Nova's `default` class, which
//!   overrides the built-in defaults for every project (folded into a [`Ledger`] with
//!   only `limits`).
//!
//! Invariants:
//! - Usage only *grows* through [`decide`] on the ledger ([`QuotaCommand::Reserve`],
//!   [`QuotaCommand::ReserveResize`]), which refuses (Nova's 403 message) anything that
//!   would exceed a limit; the append carries the ledger's expected sequence, so of two
//!   racing admissions only one decides on a given state: never over, at any
//!   concurrency, in any number of processes.
//! - Usage only *shrinks* through [`reconcile`], a pure function of the holding and the
//!   instance's state, run by the quota reactor: a holding is given back when its instance
//!   is deleted or its build failed, an upsize delta when the resize is confirmed (folded
//!   into the instance's usage) or reverted, and anything whose instance or resize never
//!   appeared once [`Grace`] has passed (the API died between its two appends). So usage
//!   is at all times at least what live instances use, and equal once the reactor has
//!   caught up.
//! - Offloaded (shelved) servers keep their usage, as Nova counts them by default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::instance::Instance;
use crate::{DomainError, FlavorId, InstanceId, Timestamp, VmState};

/// A quota resource, named as Nova's quota sets name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resource {
    Instances,
    Cores,
    Ram,
    KeyPairs,
    ServerGroups,
    ServerGroupMembers,
    MetadataItems,
    InjectedFiles,
    InjectedFileContentBytes,
    InjectedFilePathBytes,
    /// Network quotas Nova still shows before 2.36 (and its quota classes before 2.50):
    /// Neutron's to enforce, -1 here unless set.
    FixedIps,
    FloatingIps,
    SecurityGroups,
    SecurityGroupRules,
}

impl Resource {
    /// Every resource.
    pub const ALL: [Resource; 14] = [
        Resource::Instances,
        Resource::Cores,
        Resource::Ram,
        Resource::KeyPairs,
        Resource::ServerGroups,
        Resource::ServerGroupMembers,
        Resource::MetadataItems,
        Resource::InjectedFiles,
        Resource::InjectedFileContentBytes,
        Resource::InjectedFilePathBytes,
        Resource::FixedIps,
        Resource::FloatingIps,
        Resource::SecurityGroups,
        Resource::SecurityGroupRules,
    ];

    /// Nova's key (`instances`, `key_pairs`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Resource::Instances => "instances",
            Resource::Cores => "cores",
            Resource::Ram => "ram",
            Resource::KeyPairs => "key_pairs",
            Resource::ServerGroups => "server_groups",
            Resource::ServerGroupMembers => "server_group_members",
            Resource::MetadataItems => "metadata_items",
            Resource::InjectedFiles => "injected_files",
            Resource::InjectedFileContentBytes => "injected_file_content_bytes",
            Resource::InjectedFilePathBytes => "injected_file_path_bytes",
            Resource::FixedIps => "fixed_ips",
            Resource::FloatingIps => "floating_ips",
            Resource::SecurityGroups => "security_groups",
            Resource::SecurityGroupRules => "security_group_rules",
        }
    }

    /// The resource named by Nova's key.
    pub fn from_key(key: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.key() == key)
    }

    /// Nova's built-in default (`[quota]` options).
    pub fn nova_default(self) -> i64 {
        match self {
            Resource::Instances => 10,
            Resource::Cores => 20,
            Resource::Ram => 51200,
            Resource::KeyPairs => 100,
            Resource::ServerGroups => 10,
            Resource::ServerGroupMembers => 10,
            Resource::MetadataItems => 128,
            Resource::InjectedFiles => 5,
            Resource::InjectedFileContentBytes => 10240,
            Resource::InjectedFilePathBytes => 255,
            Resource::FixedIps
            | Resource::FloatingIps
            | Resource::SecurityGroups
            | Resource::SecurityGroupRules => -1,
        }
    }

    /// Whether Nova keeps per-user limits of this resource (server groups and their
    /// members are per project only).
    pub fn per_user(self) -> bool {
        !matches!(self, Resource::ServerGroups | Resource::ServerGroupMembers)
    }
}

/// Limits by resource; -1 is unlimited. A partial map overrides the layer beneath.
pub type Limits = BTreeMap<Resource, i64>;

/// Nova's built-in defaults for every resource.
pub fn nova_defaults() -> Limits {
    Resource::ALL
        .iter()
        .map(|r| (*r, r.nova_default()))
        .collect()
}

/// Whether `used + requested` fits under `limit` (-1: unlimited).
pub fn fits(limit: i64, used: i64, requested: i64) -> bool {
    limit < 0 || used.saturating_add(requested) <= limit
}

/// What an instance counts against instances / cores / ram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub instances: i64,
    pub cores: i64,
    pub ram: i64,
}

impl Usage {
    /// What one instance of a flavor uses.
    pub fn of_flavor(vcpus: u32, ram_mb: u64) -> Usage {
        Usage {
            instances: 1,
            cores: i64::from(vcpus),
            ram: ram_mb as i64,
        }
    }

    /// What an instance uses now (its current flavor).
    pub fn of_instance(i: &Instance) -> Usage {
        Usage::of_flavor(i.flavor.spec.vcpus, i.flavor.spec.ram_mb)
    }

    pub fn plus(self, o: Usage) -> Usage {
        Usage {
            instances: self.instances + o.instances,
            cores: self.cores + o.cores,
            ram: self.ram + o.ram,
        }
    }

    pub fn minus(self, o: Usage) -> Usage {
        Usage {
            instances: self.instances - o.instances,
            cores: self.cores - o.cores,
            ram: self.ram - o.ram,
        }
    }

    /// The amount of one resource (0 for those an instance does not count).
    pub fn get(self, r: Resource) -> i64 {
        match r {
            Resource::Instances => self.instances,
            Resource::Cores => self.cores,
            Resource::Ram => self.ram,
            _ => 0,
        }
    }

    /// Nova's upsize delta: only the resources that grow (instances stay).
    pub fn upsize(old: Usage, new: Usage) -> Usage {
        Usage {
            instances: 0,
            cores: (new.cores - old.cores).max(0),
            ram: (new.ram - old.ram).max(0),
        }
    }

    pub fn is_zero(self) -> bool {
        self == Usage::default()
    }
}

/// An upsize in progress: its delta is held from the request until the resize ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeHold {
    /// The flavor resized to.
    pub flavor: FlavorId,
    /// What it adds while it lasts.
    pub delta: Usage,
    /// When it was admitted.
    pub at: Timestamp,
    /// Whether the quota reactor has seen the resize start (then its end gives the
    /// delta back at once; before, only the grace does).
    pub started: bool,
}

/// What one instance holds on its project's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// The user who created it (per-user limits).
    pub user: String,
    /// Its usage at rest.
    pub usage: Usage,
    /// When it was admitted.
    pub at: Timestamp,
    /// An upsize in progress.
    pub resize: Option<ResizeHold>,
}

impl Holding {
    /// Everything it holds now.
    pub fn total(&self) -> Usage {
        self.resize
            .as_ref()
            .map_or(self.usage, |r| self.usage.plus(r.delta))
    }
}

/// A project's quota ledger.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// Project overrides.
    pub limits: Limits,
    /// Per-user overrides.
    pub user_limits: BTreeMap<String, Limits>,
    /// What each instance holds.
    pub holdings: BTreeMap<InstanceId, Holding>,
}

impl Ledger {
    /// Total usage of the project (or of one user in it).
    pub fn used(&self, user: Option<&str>) -> Usage {
        self.holdings
            .values()
            .filter(|h| user.is_none_or(|u| h.user == u))
            .fold(Usage::default(), |acc, h| acc.plus(h.total()))
    }

    /// Whether a user has overrides of instances, cores or ram (Nova then counts and
    /// checks that user's usage too).
    pub fn user_counted(&self, user: &str) -> bool {
        self.user_limits.get(user).is_some_and(|l| {
            [Resource::Instances, Resource::Cores, Resource::Ram]
                .iter()
                .any(|r| l.contains_key(r))
        })
    }
}

/// Effective limits: user override, else project override, else the `default` class,
/// else the base (Nova's defaults, or the process's `--default-quota`).
pub fn effective(
    base: &Limits,
    class: Option<&Limits>,
    ledger: Option<&Ledger>,
    user: Option<&str>,
) -> Limits {
    Resource::ALL
        .iter()
        .map(|r| {
            let from_user = user.and_then(|u| {
                ledger
                    .and_then(|l| l.user_limits.get(u))
                    .and_then(|l| l.get(r))
            });
            let v = from_user
                .or_else(|| ledger.and_then(|l| l.limits.get(r)))
                .or_else(|| class.and_then(|c| c.get(r)))
                .or_else(|| base.get(r))
                .copied()
                .unwrap_or_else(|| r.nova_default());
            (*r, v)
        })
        .collect()
}

/// Why a reservation is asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum QuotaCommand {
    /// A create: each instance holds its usage (one entry per instance of a
    /// multi-create, all or nothing).
    Reserve {
        user: String,
        instances: Vec<(InstanceId, Usage)>,
        /// Effective limits for the project and, when counted, for the user.
        project_limits: Limits,
        user_limits: Option<Limits>,
    },
    /// An upsize: the delta is held until the resize ends.
    ReserveResize {
        instance: InstanceId,
        flavor: FlavorId,
        delta: Usage,
        project_limits: Limits,
        user_limits: Option<Limits>,
    },
    /// Set project (or user) overrides.
    SetLimits {
        user: Option<String>,
        limits: Limits,
    },
    /// Back to the defaults (project overrides and every user's, or one user's).
    DeleteLimits { user: Option<String> },
    /// Give back what [`reconcile`] found no longer held.
    Settle(QuotaEvent),
    /// Set a quota class's limits (on the class's subject).
    SetClass { limits: Limits },
    /// Record what a live instance that holds nothing uses (one created before quotas
    /// were recorded): its usage exists already, so no limit is checked.
    Adopt {
        instance: InstanceId,
        user: String,
        usage: Usage,
    },
}

/// A ledger or quota-class event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QuotaEvent {
    /// `quota.reserved`: an instance holds `usage` from now on.
    Reserved {
        instance: InstanceId,
        user: String,
        usage: Usage,
        at: Timestamp,
    },
    /// `quota.resize_reserved`: an upsize's delta is held.
    ResizeReserved {
        instance: InstanceId,
        flavor: FlavorId,
        delta: Usage,
        at: Timestamp,
    },
    /// `quota.resize_started`: the reactor saw the resize begin.
    ResizeStarted { instance: InstanceId },
    /// `quota.adjusted`: the instance now holds `usage` at rest, no resize delta (a
    /// resize confirmed, reverted or never made).
    Adjusted { instance: InstanceId, usage: Usage },
    /// `quota.released`: the instance holds nothing any more.
    Released { instance: InstanceId },
    /// `quota.limits_set`: project (or user) overrides.
    LimitsSet {
        user: Option<String>,
        limits: Limits,
        at: Timestamp,
    },
    /// `quota.limits_deleted`: overrides removed.
    LimitsDeleted { user: Option<String>, at: Timestamp },
    /// `quota.class_set`: a quota class's limits (its own subject).
    ClassSet { limits: Limits, at: Timestamp },
}

impl QuotaEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            QuotaEvent::Reserved { .. } => "quota.reserved",
            QuotaEvent::ResizeReserved { .. } => "quota.resize_reserved",
            QuotaEvent::ResizeStarted { .. } => "quota.resize_started",
            QuotaEvent::Adjusted { .. } => "quota.adjusted",
            QuotaEvent::Released { .. } => "quota.released",
            QuotaEvent::LimitsSet { .. } => "quota.limits_set",
            QuotaEvent::LimitsDeleted { .. } => "quota.limits_deleted",
            QuotaEvent::ClassSet { .. } => "quota.class_set",
        }
    }
}

/// Nova's TooManyInstances message for the resources over their limit (sorted, as
/// Nova sorts `overs`): `Quota exceeded for instances: Requested 1, but already used 10
/// of 10 instances`.
fn too_many(overs: &[Over]) -> DomainError {
    let names = join(overs, |o| o.resource.key().to_string());
    DomainError::Forbidden(format!(
        "Quota exceeded for {names}: Requested {}, but already used {} of {} {names}",
        join(overs, |o| o.requested.clone()),
        join(overs, |o| o.used.to_string()),
        join(overs, |o| o.limit.to_string()),
    ))
}

/// One resource over its limit, as Nova's message shows it.
struct Over {
    resource: Resource,
    requested: String,
    used: i64,
    limit: i64,
}

fn join(overs: &[Over], f: impl Fn(&Over) -> String) -> String {
    overs.iter().map(f).collect::<Vec<_>>().join(", ")
}

/// Checks `requested` against project (and user) limits and usage.
fn admit(
    ledger: &Ledger,
    user: &str,
    requested: Usage,
    count: &str,
    project_limits: &Limits,
    user_limits: Option<&Limits>,
) -> Result<(), DomainError> {
    let check = |limits: &Limits, used: Usage| {
        let mut overs: Vec<Over> = Vec::new();
        for r in [Resource::Instances, Resource::Cores, Resource::Ram] {
            let limit = limits.get(&r).copied().unwrap_or(-1);
            let want = requested.get(r);
            if want > 0 && !fits(limit, used.get(r), want) {
                let shown = if r == Resource::Instances {
                    count.to_string()
                } else {
                    want.to_string()
                };
                overs.push(Over {
                    resource: r,
                    requested: shown,
                    used: used.get(r),
                    limit,
                });
            }
        }
        overs.sort_by_key(|o| o.resource.key());
        if overs.is_empty() {
            Ok(())
        } else {
            Err(too_many(&overs))
        }
    };
    check(project_limits, ledger.used(None))?;
    if let Some(ul) = user_limits {
        check(ul, ledger.used(Some(user)))?;
    }
    Ok(())
}

fn check_limits(limits: &Limits) -> Result<(), DomainError> {
    match limits.iter().find(|(_, v)| **v < -1) {
        Some((r, v)) => Err(DomainError::BadRequest(format!(
            "Quota limit {v} for {} must be -1 or greater.",
            r.key()
        ))),
        None => Ok(()),
    }
}

/// Decides a ledger (or quota class) command.
pub fn decide(
    state: Option<&Ledger>,
    cmd: QuotaCommand,
    now: Timestamp,
) -> Result<Vec<QuotaEvent>, DomainError> {
    let empty = Ledger::default();
    let ledger = state.unwrap_or(&empty);
    match cmd {
        QuotaCommand::Reserve {
            user,
            instances,
            project_limits,
            user_limits,
        } => {
            let fresh: Vec<_> = instances
                .into_iter()
                .filter(|(id, _)| !ledger.holdings.contains_key(id))
                .collect();
            let total = fresh
                .iter()
                .fold(Usage::default(), |acc, (_, u)| acc.plus(*u));
            admit(
                ledger,
                &user,
                total,
                &fresh.len().to_string(),
                &project_limits,
                user_limits.as_ref(),
            )?;
            Ok(fresh
                .into_iter()
                .map(|(instance, usage)| QuotaEvent::Reserved {
                    instance,
                    user: user.clone(),
                    usage,
                    at: now,
                })
                .collect())
        }
        QuotaCommand::ReserveResize {
            instance,
            flavor,
            delta,
            project_limits,
            user_limits,
        } => {
            let Some(h) = ledger.holdings.get(&instance) else {
                // Created before quotas were recorded: nothing to hold against.
                return Ok(vec![]);
            };
            if h.resize.is_some() {
                return Err(DomainError::Conflict(format!(
                    "Instance {instance} has a resize in progress"
                )));
            }
            if delta.is_zero() {
                return Ok(vec![]);
            }
            admit(
                ledger,
                &h.user,
                delta,
                "0",
                &project_limits,
                user_limits.as_ref(),
            )?;
            Ok(vec![QuotaEvent::ResizeReserved {
                instance,
                flavor,
                delta,
                at: now,
            }])
        }
        QuotaCommand::SetLimits { user, limits } => {
            check_limits(&limits)?;
            Ok(vec![QuotaEvent::LimitsSet {
                user,
                limits,
                at: now,
            }])
        }
        QuotaCommand::SetClass { limits } => {
            check_limits(&limits)?;
            Ok(vec![QuotaEvent::ClassSet { limits, at: now }])
        }
        QuotaCommand::Adopt {
            instance,
            user,
            usage,
        } => Ok(if ledger.holdings.contains_key(&instance) {
            vec![]
        } else {
            vec![QuotaEvent::Reserved {
                instance,
                user,
                usage,
                at: now,
            }]
        }),
        QuotaCommand::DeleteLimits { user } => {
            Ok(vec![QuotaEvent::LimitsDeleted { user, at: now }])
        }
        QuotaCommand::Settle(e) => {
            // Only events that still change something: a settle decided on a stale view
            // (another reactor got there first) decides to nothing.
            let still = match &e {
                QuotaEvent::Released { instance } => ledger.holdings.contains_key(instance),
                QuotaEvent::Adjusted { instance, usage } => ledger
                    .holdings
                    .get(instance)
                    .is_some_and(|h| h.resize.is_some() || h.usage != *usage),
                QuotaEvent::ResizeStarted { instance } => ledger
                    .holdings
                    .get(instance)
                    .and_then(|h| h.resize.as_ref())
                    .is_some_and(|r| !r.started),
                _ => false,
            };
            Ok(if still { vec![e] } else { vec![] })
        }
    }
}

/// Folds a ledger event.
pub fn evolve(state: Option<Ledger>, e: &QuotaEvent) -> Option<Ledger> {
    let mut l = state.unwrap_or_default();
    match e {
        QuotaEvent::Reserved {
            instance,
            user,
            usage,
            at,
        } => {
            l.holdings.insert(
                *instance,
                Holding {
                    user: user.clone(),
                    usage: *usage,
                    at: *at,
                    resize: None,
                },
            );
        }
        QuotaEvent::ResizeReserved {
            instance,
            flavor,
            delta,
            at,
        } => {
            if let Some(h) = l.holdings.get_mut(instance) {
                h.resize = Some(ResizeHold {
                    flavor: flavor.clone(),
                    delta: *delta,
                    at: *at,
                    started: false,
                });
            }
        }
        QuotaEvent::ResizeStarted { instance } => {
            if let Some(r) = l.holdings.get_mut(instance).and_then(|h| h.resize.as_mut()) {
                r.started = true;
            }
        }
        QuotaEvent::Adjusted { instance, usage } => {
            if let Some(h) = l.holdings.get_mut(instance) {
                h.usage = *usage;
                h.resize = None;
            }
        }
        QuotaEvent::Released { instance } => {
            l.holdings.remove(instance);
        }
        QuotaEvent::LimitsSet { user, limits, .. } => {
            let target = match user {
                Some(u) => l.user_limits.entry(u.clone()).or_default(),
                None => &mut l.limits,
            };
            target.extend(limits.iter().map(|(k, v)| (*k, *v)));
        }
        QuotaEvent::LimitsDeleted { user, .. } => match user {
            Some(u) => {
                l.user_limits.remove(u);
            }
            None => {
                l.limits.clear();
                l.user_limits.clear();
            }
        },
        // A class's subject holds a ledger with only `limits`.
        QuotaEvent::ClassSet { limits, .. } => {
            l.limits.extend(limits.iter().map(|(k, v)| (*k, *v)));
        }
    }
    Some(l)
}

/// How long a holding or upsize delta whose instance or resize has not appeared is kept
/// before it is given back: far longer than an API request takes between its two
/// appends (reservation, then the instance's command), so a live request is never
/// robbed of its reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace(pub i64);

impl Default for Grace {
    fn default() -> Self {
        Grace(60)
    }
}

/// What a live instance holds once the quota reactor has caught up: nothing when it is
/// deleted, soft-deleted (Nova's counts skip SOFT_DELETED) or its build failed; during a resize or migration the larger of the two
/// flavors, resource by resource (so a revert always fits); else its flavor.
pub fn expected_usage(i: &Instance) -> Usage {
    if i.deleted || build_failed(i) || i.is_soft_deleted() {
        return Usage::default();
    }
    match &i.migration {
        Some(m) => {
            let old = Usage::of_flavor(m.old_flavor.spec.vcpus, m.old_flavor.spec.ram_mb);
            let new = Usage::of_flavor(m.new_flavor.spec.vcpus, m.new_flavor.spec.ram_mb);
            Usage {
                instances: 1,
                cores: old.cores.max(new.cores),
                ram: old.ram.max(new.ram),
            }
        }
        None => Usage::of_instance(i),
    }
}

/// Whether an instance's build failed for good (it never ran and is in ERROR): Nova's
/// failed builds give their quota back here.
pub fn build_failed(i: &Instance) -> bool {
    i.vm_state == VmState::Error && i.launched_at.is_none() && i.op.is_none()
}

/// Whether the instance is in a resize to `flavor` (prep, migrating, VERIFY_RESIZE).
fn resizing_to(i: &Instance, flavor: &FlavorId) -> bool {
    i.migration
        .as_ref()
        .is_some_and(|m| &m.new_flavor.spec.id == flavor && m.old_flavor.spec.id != *flavor)
}

/// What the quota reactor must record for one holding, given its instance's state
/// (`None`: not in this process's world) and whether the delivery it handles shows the
/// resize starting. Pure; `None` when the holding is right as it is.
pub fn reconcile(
    id: InstanceId,
    h: &Holding,
    instance: Option<&Instance>,
    saw_resize_start: bool,
    now: Timestamp,
    grace: Grace,
) -> Option<QuotaEvent> {
    let expired = |at: Timestamp| now.0 > at.plus_secs(grace.0).0;
    let Some(i) = instance else {
        return expired(h.at).then_some(QuotaEvent::Released { instance: id });
    };
    if i.deleted || build_failed(i) {
        return Some(QuotaEvent::Released { instance: id });
    }
    if i.is_soft_deleted() {
        // Given back once it rests soft-deleted. A holding admitted after the soft
        // delete began is a restore's, on its way to the restore command: kept for the
        // grace, then given back (the restore never came).
        let restoring = i.deleted_at.is_some_and(|d| h.at > d) && !expired(h.at);
        return (!restoring).then_some(QuotaEvent::Released { instance: id });
    }
    let current = Usage::of_instance(i);
    match &h.resize {
        Some(r) => {
            if resizing_to(i, &r.flavor) {
                (!r.started).then_some(QuotaEvent::ResizeStarted { instance: id })
            } else if saw_resize_start && !r.started {
                Some(QuotaEvent::ResizeStarted { instance: id })
            } else if i.flavor.spec.id == r.flavor {
                // Confirmed (or finished before the reactor looked): the instance now
                // counts its new flavor at rest.
                Some(QuotaEvent::Adjusted {
                    instance: id,
                    usage: current,
                })
            } else if r.started || expired(r.at) {
                // Reverted, or never made.
                Some(QuotaEvent::Adjusted {
                    instance: id,
                    usage: h.usage,
                })
            } else {
                None
            }
        }
        None => {
            // A confirmed downsize: the instance now uses less. During any resize the
            // larger of the two flavors stays held, so a revert always fits.
            let at_rest = i.migration.is_none();
            (at_rest
                && current != h.usage
                && current.cores <= h.usage.cores
                && current.ram <= h.usage.ram)
                .then_some(QuotaEvent::Adjusted {
                    instance: id,
                    usage: current,
                })
        }
    }
}
