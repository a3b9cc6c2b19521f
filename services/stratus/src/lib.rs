//! The `stratus` binary's library: the all-in-one stack and the benchmark, shared by
//! the binary and the end-to-end tests.

pub mod admin;
pub mod audit_bench;
pub mod bench;
pub mod billing;
pub mod billing_bench;
pub mod cells;
pub mod datadir;
pub mod guest_bench;
pub mod httpd;
pub mod net_bench;
pub mod notify_bench;
pub mod sched_bench;
pub mod stack;
pub mod status;
pub mod usage_bench;

pub use stack::{Stack, StackOptions};
