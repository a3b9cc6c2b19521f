//! The billing subscriber's logic (issue 11, item 5): Nova's versioned notifications
//! in, a per-project usage ledger out, counted exactly once.
//!
//! - [`fold`]: pure (no I/O, no clock): a notification -> the usage facts of its
//!   instance (launch, flavor changes, termination), and those facts -> Nova's
//!   os-simple-tenant-usage figures for a window (through `projections::usage`'s own
//!   `hours_for`, so the subscriber and the API compute the same floats);
//! - [`rates`]: the TOML rate card (per flavor or per resource unit);
//! - [`ledger`]: the redb ledger; one write transaction holds a batch's ledger
//!   changes, the ids of the notifications it counted and the consumer's cursor.
//!
//! The consumers that feed the ledger (HTTP and JetStream) live in the `stratus`
//! binary (`stratus billing`); this crate has no network.

pub mod fold;
pub mod ledger;
pub mod rates;

pub use fold::{Facts, Relevant};
pub use ledger::{Committed, Ledger, ProjectTotals, Report};
pub use rates::RateCard;

/// The one error enum of the billing crate.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// A billing notification lacks a field or has one of the wrong shape.
    #[error("notification {message_id} ({event_type}): {problem}")]
    Malformed {
        /// Its message id.
        message_id: String,
        /// Its event type.
        event_type: String,
        /// What is wrong.
        problem: String,
    },
    /// The rate card cannot be read.
    #[error("rate card: {0}")]
    Rates(String),
    /// The ledger file failed.
    #[error("ledger: {0}")]
    Storage(String),
}

impl BillingError {
    pub(crate) fn storage(e: impl std::fmt::Display) -> Self {
        BillingError::Storage(e.to_string())
    }
}
