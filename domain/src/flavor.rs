//! The flavor aggregate (`stratus.api.flavor.<id>`).
//!
//! Invariants: a flavor is created once per lifetime (create after delete starts a new
//! lifetime with the same id, as Nova's API database allows); a deleted flavor refuses
//! every command but create; extra spec keys and values are 1..=255 printable chars.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::host::Resources;
use crate::{Ctx, DomainError, FlavorId, Timestamp};

/// What a flavor is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlavorSpec {
    /// Id (generated uuid or given).
    pub id: FlavorId,
    /// Display name, unique among live flavors (checked by the API).
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
}

fn valid_spec_str(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && !s.chars().any(|c| c.is_control())
}

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
    }
}
