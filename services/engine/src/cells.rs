//! Cell and host-mapping commands.
//!
//! Invariants:
//! - These commands are rare (an operator creating a cell, a compute agent starting),
//!   so they decide on state read from the log itself, not from a process's world:
//!   they work the same from a one-shot CLI and from a running service, and never
//!   decide on a stale view.
//! - Every append states the subject's expected last sequence; a new host mapping is
//!   appended with `ExpectedSeq::Exactly(0)`, so of two agents mapping one host to
//!   different cells only the first succeeds; the other re-reads and is refused.
//! - A refused command writes nothing; creating a cell ensures its stream *after* the
//!   decision and before the `cell.created` append, so every created cell has a stream
//!   and running processes (which discover streams) follow it.

use domain::cell::{self, Cell, CellCommand, HostMapping, HostMappingCommand};
use domain::{CellName, Ctx, Event, HostName};
use eventlog::{EventLog, LogError, StreamName, Subject};
use projections::codec;

use crate::{Engine, EngineError, Meta, Outcome};

const MAX_RETRIES: usize = 8;

/// `stratus.api.cell.<name>`.
pub fn cell_subject(name: &CellName) -> Subject {
    Subject::api(eventlog::SubjectKind::Cell, name.as_str()).expect("tokens are encoded")
}

/// `stratus.api.host_mapping.<host>`.
pub fn host_mapping_subject(host: &HostName) -> Subject {
    Subject::api(eventlog::SubjectKind::HostMapping, host.as_str()).expect("tokens are encoded")
}

/// The stream of a cell.
pub fn cell_stream(name: &CellName) -> StreamName {
    StreamName::cell(name.as_str()).expect("cell names are stream names")
}

/// The events of one subject, decoded, with the subject's last sequence (0: none). For
/// commands that decide on state read from the log itself (cells, host mappings,
/// identity).
pub async fn read(log: &dyn EventLog, subject: &Subject) -> Result<(Vec<Event>, u64), EngineError> {
    let commits = log.read_subject(subject, 1).await?;
    let seq = commits.last().map(|c| c.subject_seq).unwrap_or(0);
    let mut events = Vec::new();
    for c in &commits {
        for e in &c.events {
            events.push(
                codec::decode(e).map_err(|err| LogError::Corrupt(format!("{subject}: {err}")))?,
            );
        }
    }
    Ok((events, seq))
}

/// A cell's state and subject sequence, read from the log.
pub async fn load_cell(
    log: &dyn EventLog,
    name: &CellName,
) -> Result<(Option<Cell>, u64), EngineError> {
    let (events, seq) = read(log, &cell_subject(name)).await?;
    let state = events.iter().fold(None, |s, e| match e {
        Event::Cell(e) => cell::evolve(s, e),
        _ => s,
    });
    Ok((state, seq))
}

/// A host mapping and its subject sequence, read from the log.
pub async fn load_mapping(
    log: &dyn EventLog,
    host: &HostName,
) -> Result<(Option<HostMapping>, u64), EngineError> {
    let (events, seq) = read(log, &host_mapping_subject(host)).await?;
    let state = events.iter().fold(None, |s, e| match e {
        Event::HostMapping(e) => cell::evolve_mapping(s, e),
        _ => s,
    });
    Ok((state, seq))
}

/// Creates a cell: refuses an existing one (`AlreadyExists`), else ensures its stream
/// and appends `cell.created`.
pub async fn create_cell(
    log: &dyn EventLog,
    name: &CellName,
    ctx: &Ctx,
    meta: &Meta,
) -> Result<Outcome, EngineError> {
    let subject = cell_subject(name);
    for _ in 0..MAX_RETRIES {
        let (state, seq) = load_cell(log, name).await?;
        let events: Vec<Event> =
            cell::decide(state.as_ref(), CellCommand::Create(name.clone()), ctx.now)?
                .into_iter()
                .map(Event::Cell)
                .collect();
        log.ensure_stream(&cell_stream(name)).await?;
        match log
            .append(Engine::request(subject.clone(), seq, &events, ctx, meta))
            .await
        {
            Ok(ack) => {
                return Ok(Outcome {
                    events,
                    ack: Some(ack),
                })
            }
            // Someone else created it meanwhile: decide again (and refuse).
            Err(LogError::WrongLastSequence { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(EngineError::Contention(format!("cell {name}")))
}

/// Maps a host to a cell (idempotent for the same cell; refused for another cell or a
/// cell that does not exist).
pub async fn map_host(
    log: &dyn EventLog,
    host: &HostName,
    cell_name: &CellName,
    ctx: &Ctx,
    meta: &Meta,
) -> Result<Outcome, EngineError> {
    let subject = host_mapping_subject(host);
    for _ in 0..MAX_RETRIES {
        let (cell_state, _) = load_cell(log, cell_name).await?;
        let (state, seq) = load_mapping(log, host).await?;
        let events: Vec<Event> = cell::decide_mapping(
            state.as_ref(),
            cell_state.as_ref(),
            HostMappingCommand::Map {
                host: host.clone(),
                cell: cell_name.clone(),
            },
            ctx.now,
        )?
        .into_iter()
        .map(Event::HostMapping)
        .collect();
        if events.is_empty() {
            return Ok(Outcome::default());
        }
        match log
            .append(Engine::request(subject.clone(), seq, &events, ctx, meta))
            .await
        {
            Ok(ack) => {
                return Ok(Outcome {
                    events,
                    ack: Some(ack),
                })
            }
            Err(LogError::WrongLastSequence { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(EngineError::Contention(format!("host mapping {host}")))
}
