//! The compute host aggregate (`stratus.cell.<cell>.host.<name>`): capacity and the
//! placement claims against it. The subject sequence is the placement generation.
//!
//! Invariants: for every committed state, the sum of claims never exceeds
//! `total * allocation_ratio` for vCPU, RAM and disk (a claim that does not fit is
//! refused); a claim id is unique per scheduling decision, so claiming twice with the
//! same id is a no-op and releasing an unknown claim is a no-op.
//!
//! The host is also Nova's `nova-compute` service record ([`ServiceState`]): an admin
//! disables it, forces it down or deletes it with events on this subject, so a claim
//! racing with a disable loses on OCC (the subject sequence moved) and the scheduler
//! retries on state where the host no longer [`Host::accepts_builds`]. A deleted host
//! keeps its row (a tombstone, so the subject sequence stays the OCC expectation), takes
//! no claims, and is re-created by its next registration (an agent that starts again),
//! as Nova re-creates a deleted service record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CellName, ClaimId, DomainError, HostName, InstanceId, Timestamp};

/// An amount of placement resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// VCPU
    pub vcpus: u64,
    /// MEMORY_MB
    pub ram_mb: u64,
    pub disk_gb: u64,
}

impl Resources {
    /// Component-wise sum.
    pub fn plus(self, o: Resources) -> Resources {
        Resources {
            vcpus: self.vcpus + o.vcpus,
            ram_mb: self.ram_mb + o.ram_mb,
            disk_gb: self.disk_gb + o.disk_gb,
        }
    }

    /// Component-wise saturating difference.
    pub fn minus(self, o: Resources) -> Resources {
        Resources {
            vcpus: self.vcpus.saturating_sub(o.vcpus),
            ram_mb: self.ram_mb.saturating_sub(o.ram_mb),
            disk_gb: self.disk_gb.saturating_sub(o.disk_gb),
        }
    }
}

/// Allocation ratios (Nova defaults: 16.0 / 1.5 / 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    /// cpu_allocation_ratio
    pub cpu: f64,
    /// ram_allocation_ratio
    pub ram: f64,
    /// disk_allocation_ratio
    pub disk: f64,
}

impl Default for Ratios {
    fn default() -> Self {
        Ratios {
            cpu: 16.0,
            ram: 1.5,
            disk: 1.0,
        }
    }
}

/// What a host offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Host name (also the node name).
    pub name: HostName,
    /// Cell the host belongs to.
    pub cell: CellName,
    /// Physical capacity.
    pub total: Resources,
    /// Allocation ratios.
    pub ratios: Ratios,
    pub availability_zone: String,
}

impl HostSpec {
    /// Capacity after allocation ratios.
    pub fn capacity(&self) -> Resources {
        // `as u64` truncates towards zero and saturates at 0, which is the floor for
        // every product here (and 0 for a negative or NaN one, as `floor` then `as`
        // gives): the same value without a libm call, on the scheduler's hot path.
        Resources {
            vcpus: (self.total.vcpus as f64 * self.ratios.cpu) as u64,
            ram_mb: (self.total.ram_mb as f64 * self.ratios.ram) as u64,
            disk_gb: (self.total.disk_gb as f64 * self.ratios.disk) as u64,
        }
    }
}

/// One claim on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The consuming instance.
    pub instance: InstanceId,
    /// Amount claimed.
    pub resources: Resources,
}

/// The compute service's administrative state (Nova's `services` row).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceState {
    /// `status: disabled`: no new builds or moves land here.
    pub disabled: bool,
    /// Why it was disabled (only while disabled).
    pub disabled_reason: Option<String>,
    /// `forced_down` (2.11): down whatever the heartbeats say, so no builds.
    pub forced_down: bool,
    /// Last admin change (`None`: never changed since registration).
    pub changed_at: Option<Timestamp>,
    /// Deleted by `DELETE /os-services/{id}`: invisible until registered again.
    pub deleted: bool,
}

/// Current state of a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub spec: HostSpec,
    /// Claims by id.
    pub allocations: BTreeMap<ClaimId, Allocation>,
    /// Sum of claims.
    pub used: Resources,
    /// Registration time (renewed when a deleted host registers again).
    pub registered_at: Timestamp,
    /// The compute service record.
    pub service: ServiceState,
}

impl Host {
    /// Whether the scheduler may place anything here (Nova's ComputeFilter, minus
    /// liveness, which is not in the log): not deleted, not disabled, not forced down.
    pub fn accepts_builds(&self) -> bool {
        !self.service.deleted && !self.service.disabled && !self.service.forced_down
    }

    /// Capacity left after claims.
    pub fn free(&self) -> Resources {
        self.spec.capacity().minus(self.used)
    }

    /// Why `req` does not fit, if it does not.
    pub fn misfit(&self, req: Resources) -> Option<&'static str> {
        let cap = self.spec.capacity();
        let after = self.used.plus(req);
        if after.vcpus > cap.vcpus {
            Some("VCPU")
        } else if after.ram_mb > cap.ram_mb {
            Some("MEMORY_MB")
        } else if after.disk_gb > cap.disk_gb {
            Some("DISK_GB")
        } else {
            None
        }
    }
}

/// Commands on a host.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCommand {
    /// Register or update the host's inventory.
    Register(HostSpec),
    /// Claim resources for an instance.
    Claim {
        /// Claim id (the scheduling operation).
        claim: ClaimId,
        /// Consumer.
        instance: InstanceId,
        /// Amount.
        resources: Resources,
    },
    /// Release a claim.
    Release {
        /// Claim id.
        claim: ClaimId,
    },
    /// Change the service record (os-services enable / disable / force-down / 2.53 PUT).
    /// `None` fields stay as they are; enabling clears the reason.
    UpdateService {
        /// `Some((disabled, reason))`: new status.
        status: Option<(bool, Option<String>)>,
        /// New `forced_down`.
        forced_down: Option<bool>,
    },
    /// Delete the service record (refused while the host holds claims).
    Delete,
}

/// Events of a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HostEvent {
    /// `host.registered`
    Registered { spec: HostSpec, at: Timestamp },
    /// `host.claimed`
    Claimed {
        /// Claim id.
        claim: ClaimId,
        /// Consumer.
        instance: InstanceId,
        /// Amount.
        resources: Resources,
    },
    /// `host.released`
    Released {
        /// Claim id.
        claim: ClaimId,
    },
    /// `host.service_updated`: the new service status, in full.
    ServiceUpdated {
        disabled: bool,
        disabled_reason: Option<String>,
        forced_down: bool,
        at: Timestamp,
    },
    /// `host.deleted`: the service record is gone until the host registers again.
    Deleted { at: Timestamp },
}

/// Decides a host command.
pub fn decide(
    state: Option<&Host>,
    cmd: HostCommand,
    now: Timestamp,
) -> Result<Vec<HostEvent>, DomainError> {
    match cmd {
        HostCommand::Register(spec) => {
            if state.is_some_and(|h| h.spec == spec && !h.service.deleted) {
                return Ok(vec![]);
            }
            Ok(vec![HostEvent::Registered { spec, at: now }])
        }
        HostCommand::Claim {
            claim,
            instance,
            resources,
        } => {
            let Some(h) = state.filter(|h| !h.service.deleted) else {
                return Err(DomainError::NotFound {
                    kind: "Host",
                    id: String::new(),
                });
            };
            if h.allocations.contains_key(&claim) {
                return Ok(vec![]);
            }
            // Nova's ComputeFilter, on the record itself (every claim is a scheduling
            // decision; forced hosts go through the filter too).
            if !h.accepts_builds() {
                return Err(DomainError::OutOfService {
                    host: h.spec.name.to_string(),
                });
            }
            if let Some(resource) = h.misfit(resources) {
                return Err(DomainError::NoCapacity {
                    host: h.spec.name.to_string(),
                    resource,
                });
            }
            Ok(vec![HostEvent::Claimed {
                claim,
                instance,
                resources,
            }])
        }
        HostCommand::Release { claim } => {
            if state.is_some_and(|h| h.allocations.contains_key(&claim)) {
                Ok(vec![HostEvent::Released { claim }])
            } else {
                Ok(vec![])
            }
        }
        HostCommand::UpdateService {
            status,
            forced_down,
        } => {
            let h = live(state)?;
            let (disabled, disabled_reason) = match status {
                Some((false, _)) => (false, None),
                Some((true, reason)) => (true, reason),
                None => (h.service.disabled, h.service.disabled_reason.clone()),
            };
            let forced_down = forced_down.unwrap_or(h.service.forced_down);
            let s = &h.service;
            if (s.disabled, &s.disabled_reason, s.forced_down)
                == (disabled, &disabled_reason, forced_down)
            {
                return Ok(vec![]);
            }
            Ok(vec![HostEvent::ServiceUpdated {
                disabled,
                disabled_reason,
                forced_down,
                at: now,
            }])
        }
        HostCommand::Delete => {
            let h = live(state)?;
            if !h.allocations.is_empty() {
                return Err(DomainError::Conflict(HOSTING_INSTANCES.into()));
            }
            Ok(vec![HostEvent::Deleted { at: now }])
        }
    }
}

/// Nova's refusal to delete a compute service that still hosts instances (409).
pub const HOSTING_INSTANCES: &str = "Unable to delete compute service that is hosting \
     instances. Migrate or delete the instances first.";

/// The host, unless it is unknown or deleted (`NotFound`, id filled in by the caller).
fn live(state: Option<&Host>) -> Result<&Host, DomainError> {
    state
        .filter(|h| !h.service.deleted)
        .ok_or(DomainError::NotFound {
            kind: "Host",
            id: String::new(),
        })
}

/// Applies a host event. Total: never fails.
pub fn evolve(state: Option<Host>, ev: &HostEvent) -> Option<Host> {
    match ev {
        HostEvent::Registered { spec, at } => Some(match state {
            Some(mut h) => {
                h.spec = spec.clone();
                if h.service.deleted {
                    // A new service record, as Nova creates at the agent's restart.
                    h.service = ServiceState::default();
                    h.registered_at = *at;
                }
                h
            }
            None => Host {
                spec: spec.clone(),
                allocations: BTreeMap::new(),
                used: Resources::default(),
                registered_at: *at,
                service: ServiceState::default(),
            },
        }),
        HostEvent::ServiceUpdated {
            disabled,
            disabled_reason,
            forced_down,
            at,
        } => state.map(|mut h| {
            h.service.disabled = *disabled;
            h.service.disabled_reason = disabled_reason.clone();
            h.service.forced_down = *forced_down;
            h.service.changed_at = Some(*at);
            h
        }),
        HostEvent::Deleted { at } => state.map(|mut h| {
            h.service = ServiceState {
                deleted: true,
                changed_at: Some(*at),
                ..ServiceState::default()
            };
            h
        }),
        HostEvent::Claimed {
            claim,
            instance,
            resources,
        } => state.map(|mut h| {
            if h.allocations
                .insert(
                    *claim,
                    Allocation {
                        instance: *instance,
                        resources: *resources,
                    },
                )
                .is_none()
            {
                h.used = h.used.plus(*resources);
            }
            h
        }),
        HostEvent::Released { claim } => state.map(|mut h| {
            if let Some(a) = h.allocations.remove(claim) {
                h.used = h.used.minus(a.resources);
            }
            h
        }),
    }
}
