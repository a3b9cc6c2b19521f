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
//!   (`Place`) after its claim and before the build is mapped; a refusal makes it release
//!   the claim and decide again on the newer state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// Members placed on `host`, `except` excluded.
    pub fn members_on(&self, host: &HostName, except: Option<&InstanceId>) -> usize {
        self.members
            .iter()
            .filter(|(i, h)| Some(*i) != except && h.as_ref() == Some(host))
            .count()
    }

    /// Members placed on some host, `except` excluded.
    pub fn placed(&self, except: Option<&InstanceId>) -> usize {
        self.members
            .iter()
            .filter(|(i, h)| Some(*i) != except && h.is_some())
            .count()
    }

    /// Whether placing `instance` on `host` keeps a hard policy (soft ones always do).
    pub fn allows(&self, instance: &InstanceId, host: &HostName) -> bool {
        match self.policy {
            Policy::AntiAffinity => {
                self.members_on(host, Some(instance))
                    < self.max_server_per_host.unwrap_or(1).max(1) as usize
            }
            Policy::Affinity => self
                .members
                .iter()
                .all(|(i, h)| i == instance || h.as_ref().is_none_or(|h| h == host)),
            Policy::SoftAffinity | Policy::SoftAntiAffinity => true,
        }
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
    },
    /// The scheduler placed a member on a host: refused when a hard policy forbids it.
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
            Ok(vec![ServerGroupEvent::MembersAdded { id, instances: new }])
        }
        C::Place { id, instance, host } => {
            // A group deleted meanwhile no longer constrains its members (Nova).
            let Some(g) = state.groups.get(&id) else {
                return Ok(vec![]);
            };
            match g.members.get(&instance) {
                None => Ok(vec![]),
                Some(Some(h)) if *h == host => Ok(vec![]),
                Some(_) if !g.allows(&instance, &host) => Err(DomainError::Conflict(format!(
                    "Placing {instance} on {host} breaks the {} policy of server group {id}",
                    g.policy.as_str()
                ))),
                Some(_) => Ok(vec![ServerGroupEvent::MemberPlaced { id, instance, host }]),
            }
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
    }
}

/// Applies an event. Total: never fails.
pub fn evolve(mut state: ProjectGroups, ev: &ServerGroupEvent) -> ProjectGroups {
    match ev {
        ServerGroupEvent::Created { group } => {
            state.groups.insert(group.id, group.clone());
        }
        ServerGroupEvent::Deleted { id } => {
            state.groups.remove(id);
        }
        ServerGroupEvent::MembersAdded { id, instances } => {
            if let Some(g) = state.groups.get_mut(id) {
                for i in instances {
                    g.members.entry(*i).or_insert(None);
                }
            }
        }
        ServerGroupEvent::MemberPlaced { id, instance, host } => {
            if let Some(m) = state
                .groups
                .get_mut(id)
                .and_then(|g| g.members.get_mut(instance))
            {
                *m = Some(host.clone());
            }
        }
        ServerGroupEvent::MembersRemoved { id, instances } => {
            if let Some(g) = state.groups.get_mut(id) {
                for i in instances {
                    g.members.remove(i);
                }
            }
        }
    }
    state
}
