//! Nova's versioned notifications as a function of the log (issue 11, item 4).
//!
//! - [`mapping`]: the pure mapping of one instance event, with the instance before it,
//!   to Nova's notifications (envelope and versioned payload, stable message ids);
//! - [`fold`]: the notifier's own fold of a cell stream (instance states from the
//!   stream's start), giving each commit's notifications, and `instance.exists` for
//!   each audit period closed in the cell (`audit.period_closed`);
//! - [`runner`]: one task per cell stream writing them exactly once, with a report
//!   per stream for `GET /v1/status`.
//!
//! A notification is never lost because a subscriber or the bus was down: it is
//! derived again, identically (same bytes, same message id), from the log.

pub mod fold;
pub mod jetstream;
pub mod mapping;
pub mod runner;
pub mod store;
pub mod webhook;

pub use fold::CellFold;
pub use mapping::{message_id, Notification};

/// The one error enum of the notifier.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// A commit was handed out of order to a fold.
    #[error("{stream}: expected commit {expected}, got {got}")]
    OutOfOrder {
        /// Stream.
        stream: String,
        /// The next position the fold needs.
        expected: u64,
        /// What it was given.
        got: u64,
    },
    /// The store failed.
    #[error("notification store: {0}")]
    Storage(String),
    /// The operator's configuration cannot be used (a CA file without certificates).
    #[error("{0}")]
    Config(String),
    /// The event log failed.
    #[error("event log: {0}")]
    Log(#[from] eventlog::LogError),
    /// An event of the stream cannot be decoded.
    #[error("{stream} commit {seq}: cannot decode: {message}")]
    Decode {
        /// Stream.
        stream: String,
        /// Position.
        seq: u64,
        /// The codec's message.
        message: String,
    },
}
