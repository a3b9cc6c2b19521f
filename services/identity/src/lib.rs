//! Identity: a Keystone v3 subset (password and application-credential authentication,
//! project-scoped signed tokens with a service catalog and revocation, projects, users,
//! roles, role assignments and application credentials) served on its own listener,
//! with every change event-sourced in the api stream.
//!
//! Invariants:
//! - State changes only through [`commands`], which decide on state read from the log
//!   (`domain::identity::decide`) and append with the subject's expected sequence: a
//!   refused command appends nothing, and two concurrent creates of one name cannot
//!   both win (the name-index subject is appended with an expected sequence of 0).
//! - Reads of the HTTP API come from the process's `World` (the identity view); after
//!   a 2xx the view already reflects the command (read-your-writes).
//! - Passwords are stored only as argon2 hashes ([`password`]).
//! - A token is valid only if its HMAC verifies, it has not expired, and the user is
//!   still enabled at the credential revision the token was issued at, and still has
//!   a role on the token's project, the token is not revoked and its application
//!   credential (if any) still exists unexpired ([`token::Tokens::validate`]). Deletes
//!   and revocations are events, so every process folding the api stream agrees.
//!
//! Layout: [`password`], [`token`] (signing key, issue, validation), [`commands`]
//! (log-based commands, also used offline by `stratus admin`), [`bootstrap`] (admin,
//! roles, openrc), [`http`] (the axum router), [`error`] (the one error enum and its
//! Keystone-shaped HTTP mapping), `extract` (request extractors that refuse with that
//! mapping).

pub mod bootstrap;
pub mod commands;
pub mod compliance;
pub mod error;
mod extract;
pub mod http;
pub mod password;
pub mod policy;
pub mod token;

pub use compliance::SecurityCompliance;
pub use error::IdentityError;
pub use http::{route_table, router, Catalog, IdentityApi};
pub use token::{Auth, Target, TokenKey, Tokens};
