//! Projections: read models folded from the event log, kept in memory ([`World`]) and
//! persisted with their positions ([`ProjectionStore`]); the [`projector`] follows the
//! streams. Everything here can be rebuilt from the log (`stratus replay rebuild`).

pub mod codec;
pub mod health;
pub mod identity;
pub mod projector;
pub mod store;
pub mod views;
pub mod world;

pub use health::CellHealth;
pub use identity::{IdentityRow, IdentityViews};
pub use store::ProjectionStore;
pub use views::{CellRow, FlavorRow, HostMappingRow, HostRow, InstanceRow, Touched, Views};
pub use world::World;
