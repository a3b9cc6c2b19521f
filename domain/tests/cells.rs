//! Cells and host mappings: given events, when a command, then events or a refusal.

use domain::cell::{
    self, Cell, CellCommand, CellEvent, HostMapping, HostMappingCommand, HostMappingEvent,
};
use domain::{CellName, DomainError, HostName, Timestamp};

fn cell(n: &str) -> CellName {
    CellName::new(n).unwrap()
}

fn host(n: &str) -> HostName {
    HostName::new(n).unwrap()
}

fn given_cell(n: &str) -> Option<Cell> {
    cell::evolve(
        None,
        &CellEvent::Created {
            name: cell(n),
            created_at: Timestamp(1),
        },
    )
}

fn given_mapping(h: &str, c: &str) -> Option<HostMapping> {
    cell::evolve_mapping(
        None,
        &HostMappingEvent::Mapped {
            host: host(h),
            cell: cell(c),
            at: Timestamp(2),
        },
    )
}

#[test]
fn create_a_new_cell() {
    let evs = cell::decide(None, CellCommand::Create(cell("cell2")), Timestamp(7)).unwrap();
    assert_eq!(
        evs,
        vec![CellEvent::Created {
            name: cell("cell2"),
            created_at: Timestamp(7)
        }]
    );
    let state = evs.iter().fold(None, cell::evolve).unwrap();
    assert_eq!(state.name, cell("cell2"));
    assert_eq!(state.created_at, Timestamp(7));
}

#[test]
fn creating_an_existing_cell_is_refused_with_a_clear_error() {
    let existing = given_cell("cell2");
    let err = cell::decide(
        existing.as_ref(),
        CellCommand::Create(cell("cell2")),
        Timestamp(9),
    )
    .unwrap_err();
    assert_eq!(
        err,
        DomainError::AlreadyExists {
            kind: "Cell",
            id: "cell2".into()
        }
    );
    assert_eq!(err.to_string(), "Cell with id cell2 already exists.");
}

#[test]
fn cell_names_are_stream_names() {
    for bad in ["", "api", "Cell1", "a.b", "a b", "*", ">", &"x".repeat(65)] {
        assert!(CellName::new(bad).is_err(), "{bad:?}");
    }
    assert!(CellName::new("cell-2_b").is_ok());
}

#[test]
fn map_a_host_to_an_existing_cell() {
    let c = given_cell("cell1");
    let evs = cell::decide_mapping(
        None,
        c.as_ref(),
        HostMappingCommand::Map {
            host: host("h1"),
            cell: cell("cell1"),
        },
        Timestamp(3),
    )
    .unwrap();
    assert_eq!(
        evs,
        vec![HostMappingEvent::Mapped {
            host: host("h1"),
            cell: cell("cell1"),
            at: Timestamp(3)
        }]
    );
    let m = evs.iter().fold(None, cell::evolve_mapping).unwrap();
    assert_eq!((m.host, m.cell), (host("h1"), cell("cell1")));
}

#[test]
fn mapping_again_to_the_same_cell_is_a_no_op() {
    let evs = cell::decide_mapping(
        given_mapping("h1", "cell1").as_ref(),
        given_cell("cell1").as_ref(),
        HostMappingCommand::Map {
            host: host("h1"),
            cell: cell("cell1"),
        },
        Timestamp(5),
    )
    .unwrap();
    assert!(evs.is_empty());
}

#[test]
fn a_host_mapped_to_another_cell_is_refused() {
    let err = cell::decide_mapping(
        given_mapping("h1", "cell1").as_ref(),
        given_cell("cell2").as_ref(),
        HostMappingCommand::Map {
            host: host("h1"),
            cell: cell("cell2"),
        },
        Timestamp(5),
    )
    .unwrap_err();
    assert!(matches!(err, DomainError::Conflict(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("h1") && msg.contains("cell1") && msg.contains("cell2"),
        "{msg}"
    );
}

#[test]
fn mapping_to_a_cell_that_does_not_exist_is_not_found() {
    let err = cell::decide_mapping(
        None,
        None,
        HostMappingCommand::Map {
            host: host("h1"),
            cell: cell("nope"),
        },
        Timestamp(5),
    )
    .unwrap_err();
    assert_eq!(
        err,
        DomainError::NotFound {
            kind: "Cell",
            id: "nope".into()
        }
    );
}

#[test]
fn evolve_never_moves_a_mapping_or_recreates_a_cell() {
    let m = cell::evolve_mapping(
        given_mapping("h1", "cell1"),
        &HostMappingEvent::Mapped {
            host: host("h1"),
            cell: cell("cell2"),
            at: Timestamp(9),
        },
    )
    .unwrap();
    assert_eq!(m.cell, cell("cell1"));
    let c = cell::evolve(
        given_cell("cell1"),
        &CellEvent::Created {
            name: cell("cell1"),
            created_at: Timestamp(99),
        },
    )
    .unwrap();
    assert_eq!(c.created_at, Timestamp(1));
}
