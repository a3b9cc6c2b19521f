//! Projections: read models folded from the event log, kept in memory ([`World`]) and
//! persisted with their positions ([`ProjectionStore`]); the [`projector`] follows the
//! streams. Everything here can be rebuilt from the log (`stratus replay rebuild`).
//!
//! A read model is one type implementing [`ReadModel`] (see [`model`] for the trait
//! and its invariants) plus one registration ([`Views::register`], or the built-in list
//! in `Views::default`); the store, snapshots, merges and `replay` iterate the
//! registered models.

pub mod aggregates;
pub mod codec;
pub mod health;
pub mod identity;
pub mod instance_actions;
pub mod instance_folds;
pub mod keypairs;
pub mod metadefs;
pub mod migrations;
pub mod model;
pub mod network_quotas;
pub mod networks;
pub mod projector;
pub mod quota;
pub mod routers;
pub mod security_groups;
pub mod server_groups;
pub mod store;
pub mod subnet_pools;
pub mod subscriptions;
pub mod tasks;
pub mod usage;
pub mod views;
pub mod world;

pub use aggregates::Aggregates;
pub use health::CellHealth;
pub use identity::IdentityViews;
pub use instance_actions::InstanceActions;
pub use keypairs::Keypairs;
pub use model::{Invalid, ReadModel, Row, Table, TableKey, Touched};
pub use networks::Networks;
pub use quota::Quotas;
pub use security_groups::SecurityGroups;
pub use store::ProjectionStore;
pub use usage::Usage;
pub use views::{
    flavor_name_subject, Cells, Claims, FlavorNames, Flavors, HostMappings, Hosts, Images,
    InstanceRow, Instances, Views,
};
pub use world::World;
