//! Host aggregates and availability zones (`stratus.api.aggregates.all`).
//!
//! Every host aggregate lives in ONE aggregate of the event log, [`AggregateSet`], on one
//! subject: Nova's rules span aggregates (names are unique; a host is in at most one
//! availability zone, whichever aggregates it is in), so deciding on the whole set and
//! appending with the subject's expected sequence makes them exact under concurrency.
//! Aggregates are few and small (Nova's are rows of the API database), so one subject
//! costs nothing in practice.
//!
//! Invariants (kept by [`decide`], checked by `domain/tests/aggregates.rs`):
//! - aggregate ids are 1, 2, 3, ... in creation order and never reused (Nova's
//!   autoincrement ids); names are unique among live aggregates;
//! - an aggregate's availability zone is its metadata key `availability_zone` (as in
//!   Nova: the create/update field and `set_metadata` write the same key); it is never
//!   the empty string;
//! - a host is in at most one availability zone: all the aggregates with a zone that
//!   hold a host name the same zone;
//! - a host with instances never changes zone through these commands (Nova's
//!   `ensure_no_instances_need_to_move_az_when_host_added/removed` and
//!   `check_no_instances_in_az`);
//! - an aggregate with hosts cannot be deleted.
//!
//! Facts the set does not hold (does a compute host exist, how many instances does it
//! have) are inputs ([`HostFacts`]), read from the world by the caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Ctx, DomainError, HostName, Timestamp};

/// Nova's `default_availability_zone`: the zone of a host in no zoned aggregate.
pub const DEFAULT_ZONE: &str = "nova";

/// Nova's `internal_service_availability_zone` (services other than compute).
pub const INTERNAL_ZONE: &str = "internal";

/// The metadata key holding an aggregate's availability zone.
pub const AZ_KEY: &str = "availability_zone";

/// Id of a host aggregate (Nova's integer id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AggregateId(pub u64);

impl std::fmt::Display for AggregateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One host aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub id: AggregateId,
    /// Shown from 2.41.
    pub uuid: uuid::Uuid,
    pub name: String,
    /// Hosts in the order they were added (Nova lists them so).
    pub hosts: Vec<HostName>,
    /// Metadata, the availability zone included (`availability_zone`).
    pub metadata: BTreeMap<String, String>,
    pub created_at: Timestamp,
    /// Set by a name / zone update or `set_metadata` (not by host changes, as Nova).
    pub updated_at: Option<Timestamp>,
}

impl Aggregate {
    /// The availability zone, if the aggregate names one.
    pub fn availability_zone(&self) -> Option<&str> {
        self.metadata.get(AZ_KEY).map(String::as_str)
    }
}

/// Every host aggregate (the state of the one subject).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AggregateSet {
    /// Live aggregates by id.
    pub aggregates: BTreeMap<AggregateId, Aggregate>,
    /// The last id handed out (ids are never reused).
    pub last_id: u64,
}

impl AggregateSet {
    /// A live aggregate.
    pub fn get(&self, id: AggregateId) -> Option<&Aggregate> {
        self.aggregates.get(&id)
    }

    /// The zone a host is in through its aggregates (`None`: the default zone).
    pub fn zone_of(&self, host: &HostName) -> Option<&str> {
        self.aggregates
            .values()
            .filter(|a| a.hosts.contains(host))
            .find_map(Aggregate::availability_zone)
    }

    /// The zones `host` would be in if `id`'s zone were `zone` (and `id` held it too),
    /// other than `zone`: Nova's `conflicting_azs` (sorted by aggregate id).
    fn conflicting_zones(&self, host: &HostName, id: AggregateId, zone: &str) -> Vec<String> {
        self.aggregates
            .values()
            .filter(|a| a.id != id && a.hosts.contains(host))
            .filter_map(Aggregate::availability_zone)
            .filter(|z| *z != zone)
            .map(str::to_string)
            .collect()
    }
}

/// What a decision needs to know about compute hosts, read from the world.
pub trait HostFacts {
    /// Whether a compute host of that name exists (is mapped to a cell).
    fn exists(&self, host: &HostName) -> bool;
    /// How many live instances the host has.
    fn instances_on(&self, host: &HostName) -> usize;
}

/// Commands on the aggregate set.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateCommand {
    /// Create an aggregate (name and zone already normalised and validated by the API).
    Create {
        name: String,
        availability_zone: Option<String>,
    },
    /// Rename and/or re-zone (`Some(None)`: the zone was given as null).
    Update {
        id: AggregateId,
        name: Option<String>,
        availability_zone: Option<Option<String>>,
    },
    Delete {
        id: AggregateId,
    },
    AddHost {
        id: AggregateId,
        host: HostName,
    },
    RemoveHost {
        id: AggregateId,
        host: HostName,
    },
    /// Set keys (`Some`) and delete keys (`None`).
    SetMetadata {
        id: AggregateId,
        metadata: BTreeMap<String, Option<String>>,
    },
    /// Take `host` out of every aggregate it is in, because its compute service is
    /// being deleted (Nova's service delete does so). The caller has checked that the
    /// host runs no instance, so no zone change can strand one: unlike `RemoveHost`
    /// nothing is refused, and a host in no aggregate (a retried delete) gives no event.
    ForgetHost {
        host: HostName,
    },
}

/// Events of the aggregate set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AggregateEvent {
    /// `aggregate.created`
    Created {
        id: AggregateId,
        uuid: uuid::Uuid,
        name: String,
        availability_zone: Option<String>,
        at: Timestamp,
    },
    /// `aggregate.updated`: new name and/or zone.
    Updated {
        id: AggregateId,
        name: Option<String>,
        availability_zone: Option<String>,
        at: Timestamp,
    },
    /// `aggregate.deleted`
    Deleted { id: AggregateId, at: Timestamp },
    /// `aggregate.host_added`
    HostAdded {
        id: AggregateId,
        host: HostName,
        at: Timestamp,
    },
    /// `aggregate.host_removed`
    HostRemoved {
        id: AggregateId,
        host: HostName,
        at: Timestamp,
    },
    /// `aggregate.metadata_set`: keys set (`Some`) or deleted (`None`).
    MetadataSet {
        id: AggregateId,
        metadata: BTreeMap<String, Option<String>>,
        at: Timestamp,
    },
}

/// Which of Nova's `InvalidAggregateAction*` messages a refusal uses.
#[derive(Clone, Copy)]
enum Action {
    Add,
    Remove,
    /// Nova's delete refusal reuses `InvalidAggregateActionDelete` ("Cannot remove host
    /// from aggregate"), answered with 400 where remove_host's is a 409.
    Delete,
    Update,
    UpdateMeta,
}

fn invalid(action: Action, id: AggregateId, reason: &str) -> DomainError {
    let msg = match action {
        Action::Add => format!("Cannot add host to aggregate {id}. Reason: {reason}."),
        Action::Remove | Action::Delete => {
            format!("Cannot remove host from aggregate {id}. Reason: {reason}.")
        }
        Action::Update => format!("Cannot update aggregate {id}. Reason: {reason}."),
        Action::UpdateMeta => {
            format!("Cannot update metadata of aggregate {id}. Reason: {reason}.")
        }
    };
    match action {
        // Nova answers add_host's and remove_host's InvalidAggregateAction with a 409,
        // the others with 400.
        Action::Add | Action::Remove => DomainError::Conflict(msg),
        _ => DomainError::BadRequest(msg),
    }
}

fn not_found(id: AggregateId) -> DomainError {
    DomainError::NotFound {
        kind: "Aggregate",
        id: id.to_string(),
    }
}

fn name_taken(name: &str) -> DomainError {
    DomainError::Conflict(format!("Aggregate {name} already exists."))
}

/// Python's repr of a list of strings, as Nova's messages print `conflicting_azs`.
fn py_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", inner.join(", "))
}

/// Nova's `is_safe_to_update_az` for a new zone `zone` of aggregate `a` over `hosts`.
fn check_zone_change(
    set: &AggregateSet,
    a: &Aggregate,
    zone: Option<&str>,
    hosts: &[HostName],
    action: Action,
    check_instances: bool,
    facts: &dyn HostFacts,
) -> Result<(), DomainError> {
    let Some(zone) = zone.filter(|z| !z.is_empty()) else {
        return Err(invalid(
            action,
            a.id,
            &format!(
                "Aggregate {} does not support empty named availability zone",
                a.name
            ),
        ));
    };
    let mut conflicting = Vec::new();
    for h in hosts {
        conflicting.extend(set.conflicting_zones(h, a.id, zone));
    }
    if !conflicting.is_empty() {
        return Err(invalid(
            action,
            a.id,
            &format!(
                "One or more hosts already in availability zone(s) {}",
                py_list(&conflicting)
            ),
        ));
    }
    if check_instances
        && a.availability_zone() != Some(zone)
        && hosts.iter().any(|h| facts.instances_on(h) > 0)
    {
        return Err(invalid(
            action,
            a.id,
            "One or more hosts contain instances in this zone",
        ));
    }
    Ok(())
}

fn moving_instances(from: Option<&str>, to: Option<&str>, n: usize, verb: &str) -> String {
    let show = |z: Option<&str>| z.unwrap_or("None").to_string();
    format!(
        "The host cannot be {verb} the aggregate as the availability zone of the host would \
         change from '{}' to '{}' but the host already has {n} instance(s). Changing the AZ \
         of an existing instance is not supported by this action. Move the instances away \
         from this host then try again. If you need to move the instances between AZs then \
         you can use shelve_offload and unshelve to achieve this",
        show(from),
        show(to)
    )
}

/// Decides a command on the aggregate set.
pub fn decide(
    set: &AggregateSet,
    cmd: AggregateCommand,
    facts: &dyn HostFacts,
    ctx: &Ctx,
) -> Result<Vec<AggregateEvent>, DomainError> {
    let at = ctx.now;
    let live = |id: AggregateId| set.get(id).ok_or_else(|| not_found(id));
    let name_in_use = |name: &str, except: Option<AggregateId>| {
        set.aggregates
            .values()
            .any(|a| a.name == name && Some(a.id) != except)
    };
    match cmd {
        AggregateCommand::Create {
            name,
            availability_zone,
        } => {
            check_name(&name)?;
            if let Some(z) = &availability_zone {
                check_zone_name(z)?;
            }
            if name_in_use(&name, None) {
                return Err(name_taken(&name));
            }
            Ok(vec![AggregateEvent::Created {
                id: AggregateId(set.last_id + 1),
                uuid: ctx.op_id,
                name,
                availability_zone: availability_zone.filter(|z| !z.is_empty()),
                at,
            }])
        }
        AggregateCommand::Update {
            id,
            name,
            availability_zone,
        } => {
            let a = live(id)?;
            if let Some(n) = &name {
                check_name(n)?;
                if name_in_use(n, Some(id)) {
                    return Err(name_taken(n));
                }
            }
            let zone = match availability_zone {
                None => None,
                Some(z) => {
                    check_zone_change(set, a, z.as_deref(), &a.hosts, Action::Update, true, facts)?;
                    z
                }
            };
            if let Some(z) = &zone {
                check_zone_name(z)?;
            }
            if name.is_none() && zone.is_none() {
                return Ok(vec![]);
            }
            Ok(vec![AggregateEvent::Updated {
                id,
                name,
                availability_zone: zone,
                at,
            }])
        }
        AggregateCommand::Delete { id } => {
            let a = live(id)?;
            if !a.hosts.is_empty() {
                return Err(invalid(Action::Delete, id, "Host aggregate is not empty"));
            }
            Ok(vec![AggregateEvent::Deleted { id, at }])
        }
        AggregateCommand::AddHost { id, host } => {
            if !facts.exists(&host) {
                return Err(DomainError::NotFound {
                    kind: "Compute host",
                    id: host.to_string(),
                });
            }
            let a = live(id)?;
            if let Some(zone) = a.availability_zone() {
                check_zone_change(
                    set,
                    a,
                    Some(zone),
                    std::slice::from_ref(&host),
                    Action::Add,
                    false,
                    facts,
                )?;
                let n = facts.instances_on(&host);
                let old = set.zone_of(&host);
                if n > 0 && old != Some(zone) {
                    return Err(invalid(
                        Action::Add,
                        id,
                        &moving_instances(old, Some(zone), n, "added to"),
                    ));
                }
            }
            if a.hosts.contains(&host) {
                return Err(DomainError::Conflict(format!(
                    "Aggregate {id} already has host {host}."
                )));
            }
            Ok(vec![AggregateEvent::HostAdded { id, host, at }])
        }
        AggregateCommand::RemoveHost { id, host } => {
            if !facts.exists(&host) {
                return Err(DomainError::NotFound {
                    kind: "Compute host",
                    id: host.to_string(),
                });
            }
            let a = live(id)?;
            if !a.hosts.contains(&host) {
                return Err(DomainError::NotFound {
                    kind: "Aggregate host",
                    id: format!("{id}/{host}"),
                });
            }
            if let Some(zone) = a.availability_zone() {
                let n = facts.instances_on(&host);
                let after = set
                    .aggregates
                    .values()
                    .filter(|x| x.id != id && x.hosts.contains(&host))
                    .find_map(Aggregate::availability_zone);
                if n > 0 && after != Some(zone) {
                    return Err(invalid(
                        Action::Remove,
                        id,
                        &moving_instances(Some(zone), after, n, "removed from"),
                    ));
                }
            }
            Ok(vec![AggregateEvent::HostRemoved { id, host, at }])
        }
        AggregateCommand::ForgetHost { host } => Ok(set
            .aggregates
            .values()
            .filter(|a| a.hosts.contains(&host))
            .map(|a| AggregateEvent::HostRemoved {
                id: a.id,
                host: host.clone(),
                at,
            })
            .collect()),
        AggregateCommand::SetMetadata { id, metadata } => {
            let a = live(id)?;
            if let Some(z) = metadata.get(AZ_KEY) {
                check_zone_change(
                    set,
                    a,
                    z.as_deref(),
                    &a.hosts,
                    Action::UpdateMeta,
                    true,
                    facts,
                )?;
            }
            for (k, v) in &metadata {
                if k.is_empty() || k.chars().count() > 255 {
                    return Err(DomainError::BadRequest(format!(
                        "Invalid metadata key {k:?}"
                    )));
                }
                if v.as_ref().is_some_and(|v| v.chars().count() > 255) {
                    return Err(DomainError::BadRequest(format!(
                        "Invalid metadata value of {k:?}"
                    )));
                }
            }
            Ok(vec![AggregateEvent::MetadataSet { id, metadata, at }])
        }
    }
}

/// Nova's `name` format: 1-255 printable characters, no leading or trailing whitespace.
pub fn valid_name(s: &str) -> bool {
    let n = s.chars().count();
    (1..=255).contains(&n) && !s.chars().any(char::is_control) && s.trim() == s
}

/// Nova's `az_name` format: a [`valid_name`] without `:` (which separates `az:host`).
pub fn valid_zone_name(s: &str) -> bool {
    valid_name(s) && !s.contains(':')
}

fn check_name(s: &str) -> Result<(), DomainError> {
    if valid_name(s) {
        Ok(())
    } else {
        Err(DomainError::BadRequest(
            "An invalid 'name' value was provided. The name must be: printable characters. \
             Can not start or end with whitespace."
                .into(),
        ))
    }
}

fn check_zone_name(s: &str) -> Result<(), DomainError> {
    if valid_zone_name(s) {
        Ok(())
    } else {
        Err(DomainError::BadRequest(
            "An invalid 'name' value was provided. The name must be: printable characters \
             except :.Can not start or end with whitespace."
                .into(),
        ))
    }
}

/// Folds one event (total: an event naming an unknown aggregate changes nothing).
pub fn evolve(mut set: AggregateSet, e: &AggregateEvent) -> AggregateSet {
    match e {
        AggregateEvent::Created {
            id,
            uuid,
            name,
            availability_zone,
            at,
        } => {
            let mut metadata = BTreeMap::new();
            if let Some(z) = availability_zone {
                metadata.insert(AZ_KEY.to_string(), z.clone());
            }
            set.last_id = set.last_id.max(id.0);
            set.aggregates.insert(
                *id,
                Aggregate {
                    id: *id,
                    uuid: *uuid,
                    name: name.clone(),
                    hosts: Vec::new(),
                    metadata,
                    created_at: *at,
                    updated_at: None,
                },
            );
        }
        AggregateEvent::Updated {
            id,
            name,
            availability_zone,
            at,
        } => {
            if let Some(a) = set.aggregates.get_mut(id) {
                if let Some(n) = name {
                    a.name = n.clone();
                }
                if let Some(z) = availability_zone {
                    a.metadata.insert(AZ_KEY.to_string(), z.clone());
                }
                a.updated_at = Some(*at);
            }
        }
        AggregateEvent::Deleted { id, .. } => {
            set.aggregates.remove(id);
        }
        AggregateEvent::HostAdded { id, host, .. } => {
            if let Some(a) = set.aggregates.get_mut(id) {
                if !a.hosts.contains(host) {
                    a.hosts.push(host.clone());
                }
            }
        }
        AggregateEvent::HostRemoved { id, host, .. } => {
            if let Some(a) = set.aggregates.get_mut(id) {
                a.hosts.retain(|h| h != host);
            }
        }
        AggregateEvent::MetadataSet { id, metadata, at } => {
            if let Some(a) = set.aggregates.get_mut(id) {
                for (k, v) in metadata {
                    match v {
                        Some(v) => {
                            a.metadata.insert(k.clone(), v.clone());
                        }
                        None => {
                            a.metadata.remove(k);
                        }
                    }
                }
                a.updated_at = Some(*at);
            }
        }
    }
    set
}
