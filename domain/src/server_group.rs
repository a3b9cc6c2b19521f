//! Server groups (os-server-groups): the groups of one project, their members and the
//! host each member was placed on, as one aggregate (`stratus.api.server_groups.<project>`).
//!
//! Invariants:
//! - A project never holds more groups than its `server_groups` limit, and a group
//!   never more members than `server_group_members`, at the moment each was admitted
//!   (the limit is an input of the decision, counted on this aggregate: exact under OCC).
//! - A hard policy holds for every placement recorded: two members of an anti-affinity
//!   group are recorded on one host at most `max_server_per_host` times, and members of
//!   an affinity group are recorded on one host only. The scheduler records a placement
//!   (`Place`) after its claim and before the build is mapped or the move scheduled; a
//!   refusal makes it release the claim and decide again on the newer state.
//! - A member counts on every host it may be on: its recorded host, and the hosts it
//!   *holds* besides ([`ProjectGroups::held`]): the destination of a move (resize, cold
//!   or live migration) until confirm / revert, or the host of a racing decision that may
//!   yet win. Holds only grow through `Place` (checked); they shrink only through
//!   `Settle`, which records where the member's instance really is once it is neither
//!   scheduling nor moving, and is applied only if the member's placement is still the
//!   one it was decided on (compare-and-set). So a hard policy is never broken by a move,
//!   nor by two decisions racing on one build.
//! - A member whose instance never appears (the API died between the join and the build
//!   request) is removed once [`Grace`] has passed since its join (the join's time is
//!   recorded by `server_group.members_joined`); joins recorded without a time
//!   (`server_group.members_added`, older logs) are never released that way.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::instance::Instance;
use crate::quota::Grace;
use crate::{DomainError, HostName, InstanceId, ServerGroupId, Timestamp};

/// A server group policy (2.15 adds the soft ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Policy {
    /// `affinity`: every member on one host (hard).
    Affinity,
    /// `anti-affinity`: members on distinct hosts, up to `max_server_per_host` (hard).
    AntiAffinity,
    /// `soft-affinity`: preferred on hosts with members (weigher).
    SoftAffinity,
    /// `soft-anti-affinity`: preferred on hosts without members (weigher).
    SoftAntiAffinity,
}

impl Policy {
    /// Nova's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Affinity => "affinity",
            Policy::AntiAffinity => "anti-affinity",
            Policy::SoftAffinity => "soft-affinity",
            Policy::SoftAntiAffinity => "soft-anti-affinity",
        }
    }

    /// The policy named `s`.
    pub fn parse(s: &str) -> Option<Policy> {
        [
            Policy::Affinity,
            Policy::AntiAffinity,
            Policy::SoftAffinity,
            Policy::SoftAntiAffinity,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// Whether the scheduler must refuse hosts that break it (not only prefer others).
    pub fn is_hard(self) -> bool {
        matches!(self, Policy::Affinity | Policy::AntiAffinity)
    }
}

/// A server group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerGroup {
    /// Its id.
    pub id: ServerGroupId,
    /// Its name (1-255 characters).
    pub name: String,
    /// Owner project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// The placement policy.
    pub policy: Policy,
    /// 2.64 `rules.max_server_per_host` (anti-affinity only).
    pub max_server_per_host: Option<u32>,
    /// Members, with the host each was placed on (None until placed).
    pub members: BTreeMap<InstanceId, Option<HostName>>,
    /// Creation time.
    pub created_at: Timestamp,
}

impl ServerGroup {
    /// Members placed on some host, `except` excluded.
    pub fn placed(&self, except: Option<&InstanceId>) -> usize {
        self.members
            .iter()
            .filter(|(i, h)| Some(*i) != except && h.is_some())
            .count()
    }
}

/// Every server group of one project: the aggregate of `stratus.api.server_groups.<project>`.
/// One subject per project makes the `server_groups` count exact under OCC, and every
/// decision about one group's members (quota, hard policy on placement) is taken on the
/// state that holds all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectGroups {
    /// Live groups by id (a deleted group is removed).
    pub groups: BTreeMap<ServerGroupId, ServerGroup>,
    /// Hosts a member holds besides the one recorded in its group's `members`: a move's
    /// destination until it is confirmed or reverted, or the host of a racing decision
    /// on its build that may yet win. Each counts against the group's hard policy until
    /// the member is settled. (Kept here, not in [`ServerGroup`], whose encoding is part
    /// of `server_group.created`.)
    pub held: BTreeMap<InstanceId, BTreeSet<HostName>>,
    /// When each member joined, for those whose join recorded it.
    pub joined: BTreeMap<InstanceId, Timestamp>,
}

/// Where a member counts: its recorded host and the hosts it holds besides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberHosts {
    /// The recorded host (None until placed, or when its instance has no host).
    pub host: Option<HostName>,
    /// Hosts held besides.
    pub held: BTreeSet<HostName>,
}

impl ProjectGroups {
    /// Where member `instance` counts now (None: not a member of group `id`).
    pub fn placement(&self, id: &ServerGroupId, instance: &InstanceId) -> Option<MemberHosts> {
        let host = self.groups.get(id)?.members.get(instance)?.clone();
        Some(MemberHosts {
            host,
            held: self.held.get(instance).cloned().unwrap_or_default(),
        })
    }

    /// Whether member `i` counts on `host` (recorded there, or holding it).
    fn counts_on(&self, i: &InstanceId, recorded: &Option<HostName>, host: &HostName) -> bool {
        recorded.as_ref() == Some(host) || self.held.get(i).is_some_and(|s| s.contains(host))
    }

    /// Members of `g` counting on `host` (recorded or held), `except` excluded.
    pub fn members_on(
        &self,
        g: &ServerGroup,
        host: &HostName,
        except: Option<&InstanceId>,
    ) -> usize {
        g.members
            .iter()
            .filter(|(i, h)| Some(*i) != except && self.counts_on(i, h, host))
            .count()
    }

    /// Whether `instance` counting on `host` too keeps the hard policy of `g`, counting
    /// every other member on every host it may be on (soft policies always do).
    pub fn allows(&self, g: &ServerGroup, instance: &InstanceId, host: &HostName) -> bool {
        match g.policy {
            Policy::AntiAffinity => {
                self.members_on(g, host, Some(instance))
                    < g.max_server_per_host.unwrap_or(1).max(1) as usize
            }
            Policy::Affinity => g.members.iter().all(|(i, h)| {
                i == instance
                    || (h.as_ref().is_none_or(|h| h == host)
                        && self.held.get(i).is_none_or(|s| s.iter().all(|x| x == host)))
            }),
            Policy::SoftAffinity | Policy::SoftAntiAffinity => true,
        }
    }
}

/// What the membership reactor must record about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberFix {
    /// Remove it: its instance is deleted, or never appeared within the grace.
    Remove,
    /// Record it exactly on this host (None: on none), dropping its holds.
    Settle(Option<HostName>),
}

/// What a member's record needs, given where it counts (`seen`), when it joined (if
/// recorded), its instance (None: not in this view) and the time. Pure; `None` when the
/// record is right, or cannot be judged yet: while the instance is choosing a host or
/// moving (resize, migration: both hosts stay counted until confirm / revert), and
/// while an unseen instance is within the grace of its join.
pub fn reconcile_member(
    seen: &MemberHosts,
    joined: Option<Timestamp>,
    instance: Option<&Instance>,
    now: Timestamp,
    grace: Grace,
) -> Option<MemberFix> {
    let Some(i) = instance else {
        let expired = joined.is_some_and(|at| now.0 > at.plus_secs(grace.0).0);
        return expired.then_some(MemberFix::Remove);
    };
    if i.deleted {
        return Some(MemberFix::Remove);
    }
    if i.is_scheduling() || i.migration.is_some() {
        return None;
    }
    let settled = seen.held.is_empty() && seen.host == i.host;
    (!settled).then(|| MemberFix::Settle(i.host.clone()))
}

/// Nova's message when `server_groups` is exceeded.
pub const TOO_MANY_GROUPS: &str = "Quota exceeded, too many server groups.";
/// Nova's message when `server_group_members` is exceeded.
pub const TOO_MANY_MEMBERS: &str = "Quota exceeded, too many servers in group";

/// Commands on a project's server groups.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerGroupCommand {
    /// Create a group; `limit` is the project's `server_groups` quota (-1 unlimited).
    Create {
        /// The new group (members empty).
        group: ServerGroup,
        /// `server_groups` limit.
        limit: i64,
    },
    /// Delete a group.
    Delete {
        /// The group.
        id: ServerGroupId,
    },
    /// Add new instances as members (server create with the `group` hint); `limit` is
    /// the `server_group_members` quota.
    AddMembers {
        /// The group.
        id: ServerGroupId,
        /// The instances.
        instances: Vec<InstanceId>,
        /// `server_group_members` limit.
        limit: i64,
        /// The join's time (the request's), from which an instance that never appears
        /// is given its grace.
        at: Timestamp,
    },
    /// The scheduler claimed a host for a member (build, move, unshelve): the member
    /// counts on it from now on (recorded if it had no host, else held besides until
    /// settled). Refused when a hard policy forbids it.
    Place {
        /// The group.
        id: ServerGroupId,
        /// The member.
        instance: InstanceId,
        /// Its host.
        host: HostName,
    },
    /// Remove members (deleted instances).
    RemoveMembers {
        /// The group.
        id: ServerGroupId,
        /// The members.
        instances: Vec<InstanceId>,
    },
    /// Record a member exactly where its instance is (no holds), if its placement is
    /// still `seen` (else nothing: it changed since, and is judged again later).
    Settle {
        /// The group.
        id: ServerGroupId,
        /// The member.
        instance: InstanceId,
        /// Its instance's host.
        host: Option<HostName>,
        /// The placement this was decided on.
        seen: MemberHosts,
    },
}

/// Events of a project's server groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerGroupEvent {
    /// `server_group.created`
    Created {
        /// The group.
        group: ServerGroup,
    },
    /// `server_group.deleted`
    Deleted {
        /// The group.
        id: ServerGroupId,
    },
    /// `server_group.members_added`
    MembersAdded {
        /// The group.
        id: ServerGroupId,
        /// New members.
        instances: Vec<InstanceId>,
    },
    /// `server_group.member_placed`
    MemberPlaced {
        /// The group.
        id: ServerGroupId,
        /// The member.
        instance: InstanceId,
        /// Its host.
        host: HostName,
    },
    /// `server_group.members_removed`
    MembersRemoved {
        /// The group.
        id: ServerGroupId,
        /// Removed members.
        instances: Vec<InstanceId>,
    },
    /// `server_group.members_joined`: new members, with the join's time (replaces
    /// `members_added`, which older logs hold).
    MembersJoined {
        /// The group.
        id: ServerGroupId,
        /// New members.
        instances: Vec<InstanceId>,
        /// When they joined.
        at: Timestamp,
    },
    /// `server_group.member_held`: a placed member also counts on `host` (a move's
    /// destination, or a racing decision's host) until settled.
    MemberHeld {
        /// The group.
        id: ServerGroupId,
        /// The member.
        instance: InstanceId,
        /// The host it holds besides its own.
        host: HostName,
    },
    /// `server_group.member_settled`: the member is exactly on `host` (None: on none),
    /// its holds dropped.
    MemberSettled {
        /// The group.
        id: ServerGroupId,
        /// The member.
        instance: InstanceId,
        /// Its host.
        host: Option<HostName>,
    },
}

impl ServerGroupEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            ServerGroupEvent::Created { .. } => "server_group.created",
            ServerGroupEvent::Deleted { .. } => "server_group.deleted",
            ServerGroupEvent::MembersAdded { .. } => "server_group.members_added",
            ServerGroupEvent::MemberPlaced { .. } => "server_group.member_placed",
            ServerGroupEvent::MembersRemoved { .. } => "server_group.members_removed",
            ServerGroupEvent::MembersJoined { .. } => "server_group.members_joined",
            ServerGroupEvent::MemberHeld { .. } => "server_group.member_held",
            ServerGroupEvent::MemberSettled { .. } => "server_group.member_settled",
        }
    }
}

fn not_found(id: &ServerGroupId) -> DomainError {
    DomainError::NotFound {
        kind: "Instance group",
        id: id.to_string(),
    }
}

fn over(limit: i64, used: usize) -> bool {
    limit >= 0 && used as i64 > limit
}

/// Decides a command on a project's groups.
pub fn decide(
    state: &ProjectGroups,
    cmd: ServerGroupCommand,
) -> Result<Vec<ServerGroupEvent>, DomainError> {
    use ServerGroupCommand as C;
    match cmd {
        C::Create { group, limit } => {
            if state.groups.contains_key(&group.id) {
                return Err(DomainError::AlreadyExists {
                    kind: "Instance group",
                    id: group.id.to_string(),
                });
            }
            if over(limit, state.groups.len() + 1) {
                return Err(DomainError::Forbidden(TOO_MANY_GROUPS.into()));
            }
            if group.max_server_per_host.is_some() && group.policy != Policy::AntiAffinity {
                return Err(DomainError::BadRequest(
                    "Only anti-affinity policy supports rules.".into(),
                ));
            }
            let mut group = group;
            group.members.clear();
            Ok(vec![ServerGroupEvent::Created { group }])
        }
        C::Delete { id } => {
            if !state.groups.contains_key(&id) {
                return Err(not_found(&id));
            }
            Ok(vec![ServerGroupEvent::Deleted { id }])
        }
        C::AddMembers {
            id,
            instances,
            limit,
            at,
        } => {
            let g = state.groups.get(&id).ok_or_else(|| not_found(&id))?;
            let new: Vec<InstanceId> = instances
                .into_iter()
                .filter(|i| !g.members.contains_key(i))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if new.is_empty() {
                return Ok(vec![]);
            }
            if over(limit, g.members.len() + new.len()) {
                return Err(DomainError::Forbidden(TOO_MANY_MEMBERS.into()));
            }
            Ok(vec![ServerGroupEvent::MembersJoined {
                id,
                instances: new,
                at,
            }])
        }
        C::Place { id, instance, host } => {
            // A group deleted meanwhile no longer constrains its members (Nova).
            let Some(g) = state.groups.get(&id) else {
                return Ok(vec![]);
            };
            let Some(recorded) = g.members.get(&instance) else {
                return Ok(vec![]);
            };
            if state.counts_on(&instance, recorded, &host) {
                return Ok(vec![]);
            }
            if !state.allows(g, &instance, &host) {
                return Err(DomainError::Conflict(format!(
                    "Placing {instance} on {host} breaks the {} policy of server group {id}",
                    g.policy.as_str()
                )));
            }
            Ok(vec![match recorded {
                None => ServerGroupEvent::MemberPlaced { id, instance, host },
                Some(_) => ServerGroupEvent::MemberHeld { id, instance, host },
            }])
        }
        C::RemoveMembers { id, instances } => {
            let Some(g) = state.groups.get(&id) else {
                return Ok(vec![]);
            };
            let gone: Vec<InstanceId> = instances
                .into_iter()
                .filter(|i| g.members.contains_key(i))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if gone.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![ServerGroupEvent::MembersRemoved {
                id,
                instances: gone,
            }])
        }
        C::Settle {
            id,
            instance,
            host,
            seen,
        } => {
            let Some(now) = state.placement(&id, &instance) else {
                return Ok(vec![]);
            };
            let settled = now.held.is_empty() && now.host == host;
            if now != seen || settled {
                return Ok(vec![]);
            }
            Ok(vec![ServerGroupEvent::MemberSettled { id, instance, host }])
        }
    }
}

/// Applies an event. Total: never fails.
pub fn evolve(mut state: ProjectGroups, ev: &ServerGroupEvent) -> ProjectGroups {
    match ev {
        ServerGroupEvent::Created { group } => {
            state.groups.insert(group.id, group.clone());
        }
        ServerGroupEvent::Deleted { id } => {
            if let Some(g) = state.groups.remove(id) {
                for i in g.members.keys() {
                    state.held.remove(i);
                    state.joined.remove(i);
                }
            }
        }
        ServerGroupEvent::MembersAdded { id, instances } => {
            if let Some(g) = state.groups.get_mut(id) {
                for i in instances {
                    g.members.entry(*i).or_insert(None);
                }
            }
        }
        ServerGroupEvent::MembersJoined { id, instances, at } => {
            if let Some(g) = state.groups.get_mut(id) {
                for i in instances {
                    g.members.entry(*i).or_insert(None);
                    state.joined.insert(*i, *at);
                }
            }
        }
        ServerGroupEvent::MemberPlaced { id, instance, host }
        | ServerGroupEvent::MemberSettled {
            id,
            instance,
            host: Some(host),
        } => {
            if let Some(m) = state
                .groups
                .get_mut(id)
                .and_then(|g| g.members.get_mut(instance))
            {
                *m = Some(host.clone());
                state.held.remove(instance);
            }
        }
        ServerGroupEvent::MemberSettled {
            id,
            instance,
            host: None,
        } => {
            if let Some(m) = state
                .groups
                .get_mut(id)
                .and_then(|g| g.members.get_mut(instance))
            {
                *m = None;
                state.held.remove(instance);
            }
        }
        ServerGroupEvent::MemberHeld { id, instance, host } => {
            let member = state
                .groups
                .get(id)
                .is_some_and(|g| g.members.contains_key(instance));
            if member {
                state
                    .held
                    .entry(*instance)
                    .or_default()
                    .insert(host.clone());
            }
        }
        ServerGroupEvent::MembersRemoved { id, instances } => {
            if let Some(g) = state.groups.get_mut(id) {
                for i in instances {
                    if g.members.remove(i).is_some() {
                        state.held.remove(i);
                        state.joined.remove(i);
                    }
                }
            }
        }
    }
    state
}
