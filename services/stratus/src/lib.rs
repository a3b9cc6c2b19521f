//! The `stratus` binary's library: the all-in-one stack and the benchmark, shared by
//! the binary and the end-to-end tests.

pub mod admin;
pub mod bench;
pub mod cells;
pub mod datadir;
pub mod httpd;
pub mod notify_bench;
pub mod sched_bench;
pub mod stack;
pub mod status;

pub use stack::{Stack, StackOptions};
