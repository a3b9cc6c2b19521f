//! The HTTP and authentication pieces the compute API (`api`) and the image API (`image`)
//! both use, so that neither service depends on the other: the authentication mode,
//! roles and rules, noauth tokens ([`auth`]), and time, query and path helpers
//! ([`util`]).

pub mod auth;
pub mod util;
