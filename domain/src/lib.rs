//! Stratus domain: ids, value types, commands, events and aggregates as pure
//! `decide` / `evolve` functions, Nova's instance state machine, and placement maths.
//!
//! Invariants:
//! - No I/O, no async, no clock: time and fresh ids are inputs ([`Ctx`]).
//! - `decide(state, command) -> Result<Vec<Event>, DomainError>` never mutates; it either
//!   refuses (and nothing is written) or returns the events that record the decision.
//! - `evolve(state, event) -> state` is total: it never fails and never panics, so the
//!   log can always be folded.
//! - Folding the events `decide` produced onto the state it was given yields the state
//!   the decision meant (checked by property tests).

pub mod aggregate;
pub mod audit;
pub mod cell;
pub mod dedupe;
pub mod error;
pub mod events;
pub mod flavor;
pub mod host;
pub mod identity;
pub mod ids;
pub mod image;
pub mod instance;
pub mod keypair;
pub mod metadef;
pub mod network;
pub mod quota;
pub mod router;
pub mod scheduling;
pub mod security_group;
pub mod server_group;
pub mod states;
pub mod subscription;
pub mod task;

pub use error::DomainError;
pub use events::Event;
pub use ids::*;
pub use states::{PowerState, TaskState, VmState};

/// Time in microseconds since the Unix epoch. Always passed in, never read.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Seconds since the epoch.
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// This time plus `secs` seconds.
    pub fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }
}

/// The caller of a command and the inputs a pure decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    /// Current time.
    pub now: Timestamp,
    /// Whether the caller has the admin role (or is a service).
    pub is_admin: bool,
    /// Caller's user id.
    pub user_id: String,
    /// Caller's project id.
    pub project_id: String,
    /// A fresh id for this operation (claims, migrations); the request id's uuid.
    pub op_id: uuid::Uuid,
}

impl Ctx {
    /// A service context (reactors): admin rights.
    pub fn service(name: &str, now: Timestamp, op_id: uuid::Uuid) -> Self {
        Ctx {
            now,
            is_admin: true,
            user_id: name.to_string(),
            project_id: "service".to_string(),
            op_id,
        }
    }
}
