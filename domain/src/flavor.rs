//! The flavor aggregate (`stratus.api.flavor.<id>`) and the claims on flavor names
//! (`stratus.api.flavor_name.<name>`).
//!
//! Invariants: a flavor is created once per lifetime (create after delete starts a new
//! lifetime with the same id, as Nova's API database allows, with no access list and
//! no extra specs); a deleted flavor refuses every command but create; extra spec keys
//! and values are 1..=255 printable chars; a project is on a flavor's access list at
//! most once.
//!
//! Names are unique among live flavors. A create first claims the name on its own
//! subject ([`decide_name`], appended with the subject's expected sequence, so of two
//! concurrent claims one wins and the other is decided again on the winner's claim),
//! then creates the flavor. A claim holds the name while its flavor is live under that
//! name, or, before the flavor exists, for [`CLAIM_GRACE_SECS`] (a create in flight); a
//! claim whose flavor was created and then deleted, or renamed by a new lifetime, or
//! never created within the grace (a crashed create), no longer holds it. Deleting a
//! flavor releases its claim, so the name is free at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::host::Resources;
use crate::{Ctx, DomainError, FlavorId, ProjectId, Timestamp};

/// How long (seconds) a name claim holds its name before its flavor exists: longer
/// than any create request runs (the API's request timeout is 60 s).
pub const CLAIM_GRACE_SECS: i64 = 120;

/// What a flavor is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlavorSpec {
    /// Id (generated uuid or given).
    pub id: FlavorId,
    /// Display name, unique among live flavors (claimed first: see [`decide_name`]).
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// RAM in MiB.
    pub ram_mb: u64,
    /// Root disk in GiB.
    pub disk_gb: u64,
    /// Ephemeral disk in GiB.
    pub ephemeral_gb: u64,
    /// Swap in MiB.
    pub swap_mb: u64,
    pub rxtx_factor: f64,
    /// Visible to all projects.
    pub is_public: bool,
    /// Free-text description (2.55+).
    pub description: Option<String>,
}

impl FlavorSpec {
    /// Placement resources a server of this flavor consumes.
    pub fn resources(&self) -> Resources {
        Resources {
            vcpus: self.vcpus as u64,
            ram_mb: self.ram_mb,
            disk_gb: self.disk_gb + self.ephemeral_gb + self.swap_mb.div_ceil(1024),
        }
    }
}

/// Current state of a flavor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flavor {
    /// The spec it was created with.
    pub spec: FlavorSpec,
    pub extra_specs: BTreeMap<String, String>,
    /// Deleted flavors stay as tombstones.
    pub deleted: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Projects given access (`os-flavor-access`), in the order they were added.
    pub projects: Vec<ProjectId>,
}

impl Flavor {
    /// Whether a caller of `project` may see and use it: public flavors, and private
    /// ones whose access list names the project (Nova's flavor query for non-admins).
    pub fn visible_to(&self, project: &str) -> bool {
        self.spec.is_public || self.projects.iter().any(|p| p.as_str() == project)
    }
}

/// A claim on a flavor name (the state of `stratus.api.flavor_name.<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameClaim {
    pub name: String,
    /// The flavor being created under it.
    pub flavor: FlavorId,
    /// When it was claimed.
    pub at: Timestamp,
}

/// Commands on a flavor.
#[derive(Debug, Clone, PartialEq)]
pub enum FlavorCommand {
    /// Create it.
    Create(FlavorSpec),
    /// Delete it.
    Delete,
    /// Add or replace extra specs.
    SetExtraSpecs(BTreeMap<String, String>),
    /// Remove one extra spec.
    UnsetExtraSpec(String),
    /// Change the description (2.55+).
    UpdateDescription(Option<String>),
    /// Give a project access (`addTenantAccess`).
    AddAccess(ProjectId),
    /// Take a project's access away (`removeTenantAccess`).
    RemoveAccess(ProjectId),
}

/// Events of a flavor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FlavorEvent {
    /// `flavor.created`
    Created { spec: FlavorSpec, at: Timestamp },
    /// `flavor.deleted`
    Deleted { at: Timestamp },
    /// `flavor.extra_specs_set`
    ExtraSpecsSet {
        /// Keys and values set.
        specs: BTreeMap<String, String>,
    },
    /// `flavor.extra_spec_unset`
    ExtraSpecUnset {
        /// Key removed.
        key: String,
    },
    /// `flavor.description_updated`
    DescriptionUpdated {
        /// New description.
        description: Option<String>,
    },
    /// `flavor.access_added`
    AccessAdded { project: ProjectId },
    /// `flavor.access_removed`
    AccessRemoved { project: ProjectId },
    /// `flavor.name_claimed` (on the name's subject)
    NameClaimed(NameClaim),
    /// `flavor.name_released` (on the name's subject)
    NameReleased { flavor: FlavorId },
}

fn valid_spec_str(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && !s.chars().any(|c| c.is_control())
}

/// The `kind` of the [`DomainError::NotFound`] of a missing access entry (its `id` is
/// `<flavor> / <project>`); the API words it as Nova does.
pub const ACCESS: &str = "Flavor access";

/// Decides a flavor command.
pub fn decide(
    state: Option<&Flavor>,
    cmd: FlavorCommand,
    ctx: &Ctx,
) -> Result<Vec<FlavorEvent>, DomainError> {
    let live = state.filter(|f| !f.deleted);
    match cmd {
        FlavorCommand::Create(spec) => {
            if live.is_some() {
                return Err(DomainError::Conflict(format!(
                    "Flavor with ID {} already exists.",
                    spec.id
                )));
            }
            if spec.name.trim().is_empty() || spec.name.len() > 255 {
                return Err(DomainError::BadRequest("Invalid flavor name".into()));
            }
            if spec.vcpus == 0 || spec.ram_mb == 0 {
                return Err(DomainError::BadRequest(
                    "Flavor vcpus and ram must be positive integers".into(),
                ));
            }
            if !(spec.rxtx_factor > 0.0 && spec.rxtx_factor.is_finite()) {
                return Err(DomainError::BadRequest("Invalid rxtx_factor".into()));
            }
            Ok(vec![FlavorEvent::Created { spec, at: ctx.now }])
        }
        other => {
            let Some(f) = live else {
                return Err(DomainError::NotFound {
                    kind: "Flavor",
                    id: state.map(|f| f.spec.id.to_string()).unwrap_or_default(),
                });
            };
            match other {
                FlavorCommand::Create(_) => unreachable!("handled above"),
                FlavorCommand::Delete => Ok(vec![FlavorEvent::Deleted { at: ctx.now }]),
                FlavorCommand::SetExtraSpecs(specs) => {
                    if specs.is_empty() {
                        return Err(DomainError::BadRequest(
                            "extra_specs must not be empty".into(),
                        ));
                    }
                    for (k, v) in &specs {
                        if !valid_spec_str(k) || v.len() > 255 || v.chars().any(|c| c.is_control())
                        {
                            return Err(DomainError::BadRequest(format!(
                                "Invalid extra spec {k:?}"
                            )));
                        }
                    }
                    Ok(vec![FlavorEvent::ExtraSpecsSet { specs }])
                }
                FlavorCommand::UnsetExtraSpec(key) => {
                    if !f.extra_specs.contains_key(&key) {
                        return Err(DomainError::NotFound {
                            kind: "Flavor extra spec",
                            id: key,
                        });
                    }
                    Ok(vec![FlavorEvent::ExtraSpecUnset { key }])
                }
                FlavorCommand::UpdateDescription(description) => {
                    if description.as_ref().is_some_and(|d| d.len() > 65535) {
                        return Err(DomainError::BadRequest("description too long".into()));
                    }
                    Ok(vec![FlavorEvent::DescriptionUpdated { description }])
                }
                FlavorCommand::AddAccess(project) => {
                    if f.projects.contains(&project) {
                        return Err(DomainError::Conflict(format!(
                            "Flavor access already exists for flavor {} and project {project} combination.",
                            f.spec.id
                        )));
                    }
                    Ok(vec![FlavorEvent::AccessAdded { project }])
                }
                FlavorCommand::RemoveAccess(project) => {
                    if !f.projects.contains(&project) {
                        return Err(DomainError::NotFound {
                            kind: ACCESS,
                            id: format!("{} / {project}", f.spec.id),
                        });
                    }
                    Ok(vec![FlavorEvent::AccessRemoved { project }])
                }
            }
        }
    }
}

/// Applies a flavor event. Total: never fails.
pub fn evolve(state: Option<Flavor>, ev: &FlavorEvent) -> Option<Flavor> {
    match ev {
        FlavorEvent::Created { spec, at } => Some(Flavor {
            spec: spec.clone(),
            extra_specs: BTreeMap::new(),
            deleted: false,
            created_at: *at,
            projects: Vec::new(),
        }),
        FlavorEvent::Deleted { .. } => state.map(|mut f| {
            f.deleted = true;
            f
        }),
        FlavorEvent::ExtraSpecsSet { specs } => state.map(|mut f| {
            f.extra_specs
                .extend(specs.iter().map(|(k, v)| (k.clone(), v.clone())));
            f
        }),
        FlavorEvent::ExtraSpecUnset { key } => state.map(|mut f| {
            f.extra_specs.remove(key);
            f
        }),
        FlavorEvent::DescriptionUpdated { description } => state.map(|mut f| {
            f.spec.description = description.clone();
            f
        }),
        FlavorEvent::AccessAdded { project } => state.map(|mut f| {
            f.projects.push(project.clone());
            f
        }),
        FlavorEvent::AccessRemoved { project } => state.map(|mut f| {
            f.projects.retain(|p| p != project);
            f
        }),
        // Name claims live on their own subjects (see [`evolve_name`]).
        FlavorEvent::NameClaimed(_) | FlavorEvent::NameReleased { .. } => state,
    }
}

/// What a name claim is decided against: the flavors of the world (tombstones
/// included, to tell a create that happened from one still in flight).
pub trait FlavorFacts {
    /// The latest lifetime of flavor `id`, deleted or not.
    fn flavor(&self, id: &FlavorId) -> Option<&Flavor>;
    /// Whether a live flavor other than `except` is named `name` (flavors that never
    /// claimed their name: bootstrap flavors and those created before claims existed).
    fn live_named(&self, name: &str, except: &FlavorId) -> bool;
}

/// Whether `claim` still holds its name at `now` (see the module invariants).
pub fn holds(claim: &NameClaim, facts: &dyn FlavorFacts, now: Timestamp) -> bool {
    match facts.flavor(&claim.flavor) {
        // Its flavor was created under this name since the claim: held while live.
        Some(f) if f.spec.name == claim.name && f.created_at >= claim.at => !f.deleted,
        // Not created (yet), or only an older lifetime or another name: in flight
        // within the grace, abandoned after it.
        _ => now < claim.at.plus_secs(CLAIM_GRACE_SECS),
    }
}

/// Decides a claim of `name` for flavor `id` on the name's subject, whose state is
/// `current`: Nova's 409 when a live flavor or a claim that still holds has the name.
pub fn decide_name(
    current: Option<&NameClaim>,
    name: &str,
    id: &FlavorId,
    facts: &dyn FlavorFacts,
    now: Timestamp,
) -> Result<Vec<FlavorEvent>, DomainError> {
    let taken = facts.live_named(name, id)
        || current.is_some_and(|c| &c.flavor != id && holds(c, facts, now));
    if taken {
        return Err(DomainError::Conflict(format!(
            "Flavor with name {name} already exists."
        )));
    }
    Ok(vec![FlavorEvent::NameClaimed(NameClaim {
        name: name.to_string(),
        flavor: id.clone(),
        at: now,
    })])
}

/// Decides the release of a name claimed for flavor `id` (after its create failed or
/// it was deleted): nothing when another flavor's claim has replaced it.
pub fn decide_release(current: Option<&NameClaim>, id: &FlavorId) -> Vec<FlavorEvent> {
    match current {
        Some(c) if &c.flavor == id => vec![FlavorEvent::NameReleased { flavor: id.clone() }],
        _ => Vec::new(),
    }
}

/// Applies an event of a name's subject. Total: never fails.
pub fn evolve_name(state: Option<NameClaim>, ev: &FlavorEvent) -> Option<NameClaim> {
    match ev {
        FlavorEvent::NameClaimed(c) => Some(c.clone()),
        FlavorEvent::NameReleased { flavor } => state.filter(|c| &c.flavor != flavor),
        _ => state,
    }
}
