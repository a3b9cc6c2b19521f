//! Cells and host mappings, both aggregates of the global `api` stream:
//! `stratus.api.cell.<name>` and `stratus.api.host_mapping.<host>`.
//!
//! Invariants:
//! - A cell is created once and never changes (its stream is `STRATUS_CELL_<name>` /
//!   `<data>/log/<name>.redb`); creating an existing cell is refused and writes nothing.
//! - Every host belongs to exactly one cell: a host mapping is created once (appended
//!   with an expected subject sequence of 0) and never moves. Mapping a host again to
//!   the same cell decides to no events (a restarting compute agent); mapping it to
//!   another cell is refused.
//! - A host can only be mapped to a cell that exists.

use serde::{Deserialize, Serialize};

use crate::{CellName, DomainError, HostName, Timestamp};

/// A cell: a partition of hosts and instances with its own stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Name (also the stream name).
    pub name: CellName,
    /// When it was created.
    pub created_at: Timestamp,
}

/// Commands on a cell.
#[derive(Debug, Clone, PartialEq)]
pub enum CellCommand {
    /// Create it (`stratus cell create NAME`, or the bootstrap of cell0 / cell1).
    Create(CellName),
}

/// Events of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CellEvent {
    /// `cell.created`
    Created {
        name: CellName,
        /// When.
        created_at: Timestamp,
    },
}

/// Decides a cell command.
pub fn decide(
    state: Option<&Cell>,
    cmd: CellCommand,
    now: Timestamp,
) -> Result<Vec<CellEvent>, DomainError> {
    match cmd {
        CellCommand::Create(name) => {
            if state.is_some() {
                return Err(DomainError::AlreadyExists {
                    kind: "Cell",
                    id: name.to_string(),
                });
            }
            Ok(vec![CellEvent::Created {
                name,
                created_at: now,
            }])
        }
    }
}

/// Applies a cell event. Total: never fails.
pub fn evolve(state: Option<Cell>, ev: &CellEvent) -> Option<Cell> {
    match ev {
        CellEvent::Created { name, created_at } => Some(state.unwrap_or(Cell {
            name: name.clone(),
            created_at: *created_at,
        })),
    }
}

/// Which cell a host belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostMapping {
    /// The host.
    pub host: HostName,
    /// Its cell.
    pub cell: CellName,
    /// When it was mapped.
    pub mapped_at: Timestamp,
}

/// Commands on a host mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum HostMappingCommand {
    /// Map the host to a cell (a compute agent registering its host).
    Map {
        /// The host.
        host: HostName,
        /// The cell it belongs to.
        cell: CellName,
    },
}

/// Events of a host mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HostMappingEvent {
    /// `host.mapped`
    Mapped {
        /// The host.
        host: HostName,
        /// Its cell.
        cell: CellName,
        at: Timestamp,
    },
}

/// Decides a host mapping command. `cell` is the state of the cell the command names
/// (None: it does not exist).
pub fn decide_mapping(
    state: Option<&HostMapping>,
    cell: Option<&Cell>,
    cmd: HostMappingCommand,
    now: Timestamp,
) -> Result<Vec<HostMappingEvent>, DomainError> {
    match cmd {
        HostMappingCommand::Map { host, cell: name } => {
            if let Some(m) = state {
                if m.cell == name {
                    return Ok(vec![]);
                }
                return Err(DomainError::Conflict(format!(
                    "Host {host} is already mapped to cell {}, not {name}: a host belongs to exactly one cell.",
                    m.cell
                )));
            }
            if cell.is_none() {
                return Err(DomainError::NotFound {
                    kind: "Cell",
                    id: name.to_string(),
                });
            }
            Ok(vec![HostMappingEvent::Mapped {
                host,
                cell: name,
                at: now,
            }])
        }
    }
}

/// Applies a host mapping event. Total: never fails (a mapping never moves, so a
/// second `host.mapped`, which `decide_mapping` never produces, is ignored).
pub fn evolve_mapping(state: Option<HostMapping>, ev: &HostMappingEvent) -> Option<HostMapping> {
    match ev {
        HostMappingEvent::Mapped { host, cell, at } => Some(state.unwrap_or(HostMapping {
            host: host.clone(),
            cell: cell.clone(),
            mapped_at: *at,
        })),
    }
}
