//! Persistence of the views in `projections.redb` (one file, rebuildable from the log).
//!
//! Tables: one per registered read model, named by [`ReadModel::NAME`](crate::ReadModel)
//! (encoded key -> postcard row, see [`TableKey`](crate::model::TableKey)), and
//! `positions` (stream -> last applied position). The store names no model: it walks
//! the registered ones, so a newly registered model is stored and loaded with no change
//! here (a model's table is created by its first write; a missing table loads empty).
//! Invariant: rows and positions are written in the same transaction, so the stored
//! views always equal the fold of the log up to the stored positions. Commits are
//! not fsynced one by one (the views can be rebuilt); a crash loses at most the last
//! flushes, and the projector re-applies from the older positions.
//!
//! Table `meta` holds the schema version of the rows ([`SCHEMA`]). A store written by a
//! version of Stratus whose rows had another shape (or by one from before versioning)
//! is discarded at open and rebuilt from the log (positions start again at 0): the log
//! is the source of truth, the store only a cache of its fold.

use std::path::Path;

use eventlog::StreamName;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::model::Touched;
use crate::views::Views;

const POSITIONS: TableDefinition<&str, u64> = TableDefinition::new("positions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The table of a model's rows.
fn model_table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// Schema version of the stored rows: bump it whenever the stored bytes of a row or a
/// key of any model change (a row type, a key encoding, a model's name), so old stores
/// are rebuilt from the log.
///
/// 3: one generic row type (`Row { state, seq }`), every model table keyed by bytes.
/// 4: `InstanceRow.extras` (access addresses, hostname, user data, trusted certificates).
/// 5: the `aggregates` and `quotas` models.
/// 6: `Host.service` (the compute service record: disabled, forced down, deleted).
/// 7: the `keypairs` model.
/// 8: the `server_groups` model.
/// 9: `ProjectGroups.held` and `.joined` (server group members' holds and join times).
/// 10: the `instance_actions` model (os-instance-actions).
/// 11: the `usage` model (flavor periods per instance, kept after delete) and the
/// `usage_audits` model (closed usage audit periods per cell).
/// 12: the `subscriptions` model (webhook subscriptions).
/// 13: the `instance_folds` model (fold snapshots of instance subjects, for state-at).
/// 14: identity users hold revoked tokens and application credentials.
/// 15: `InstanceRow.extras` holds the reservation, launch index and config drive of a
///     create (`instance.create_extras_recorded`).
/// 16: `Flavor.projects` (flavor access lists) and the `flavor_names` model (claims on
/// flavor names).
/// 17: `Image.hidden` and `Image.members` (os_hidden, image members).
/// 18: `ServerExtras.tags` (server tags, 2.26).
/// 19: `ServerExtras.tags_set` (a create's tags, 2.52) and `.auto_disk_config`.
/// 20: the `metadefs` and `tasks` models (image metadata definitions, image tasks),
///     `ImageStatus::Deactivated` and `User.ec2_creds` (EC2 credentials).
/// 21: the `migrations` model (os-migrations, `/servers/{id}/migrations`).
/// 22: `ServerExtras.snapshot` and `ServerExtras.shelved_image` (createImage /
///     createBackup, the shelve image).
/// 23: an offloaded instance's `spec.requested_host` is cleared (the fold changed: the
///     requested host is one scheduling's, a 2.91 unshelve sets it again).
/// 24: migrations of kind `Evacuation` (evacuate) in `migrations`, `instances`.
/// 25: `Instance.deleted_at` (the soft delete's start: reclaim clock, quota) and
///     `Instance.rescue_image_ref`.
/// 26: `User.access_rules` and `User.app_cred_rules` (application credential access
///     rules).
/// 27: `Image.staged` and `ImageStatus::{Uploading, Importing}` (interoperable image
///     import), `Task.result` and `TaskStatus::{Processing, Success}`.
/// 28: `User`'s security-compliance fields (password expiry, creation, history,
///     self-service; failed authentications).
/// 29: `Image.virtual_size` (the upload's format inspection).
/// 30: `Image.locations` and `Image.location_data` (Glance's image locations).
/// 31: the `networks` model (Neutron networks, subnets, ports).
/// 32: the `network_quotas` model (Neutron quotas).
/// 33: the `subnet_pools` model (Neutron subnet pools).
/// 34: the `routers` and `floating_ips` models (Neutron L3).
/// 35: the `security_groups` model (Neutron security groups and rules).
/// 36: `ServerExtras.security_groups` (the groups a server's ports get).
pub const SCHEMA: u64 = 36;

/// Errors of the projection store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failure.
    #[error("projection store: {0}")]
    Db(String),
    /// Undecodable row.
    #[error("projection store: corrupt row: {0}")]
    Corrupt(String),
}

fn dberr<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The persisted views.
pub struct ProjectionStore {
    db: Database,
    reset: bool,
}

impl std::fmt::Debug for ProjectionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProjectionStore")
    }
}

impl ProjectionStore {
    /// Opens or creates the store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // The store is written in batches and read once at start: a modest page cache.
        let create = || {
            Database::builder()
                .set_cache_size(32 * 1024 * 1024)
                .create(path)
                .map_err(dberr)
        };
        let mut db = create()?;
        let (schema, has_data) = {
            let tx = db.begin_read().map_err(dberr)?;
            let schema = match tx.open_table(META) {
                Ok(t) => t.get("schema").map_err(dberr)?.map(|v| v.value()),
                Err(_) => None,
            };
            let has_data = match tx.open_table(POSITIONS) {
                Ok(t) => t.iter().map_err(dberr)?.next().is_some(),
                Err(_) => false,
            };
            (schema, has_data)
        };
        let reset = schema != Some(SCHEMA) && (schema.is_some() || has_data);
        if reset {
            drop(db);
            std::fs::remove_file(path).map_err(dberr)?;
            db = create()?;
        }
        let tx = db.begin_write().map_err(dberr)?;
        {
            tx.open_table(META)
                .map_err(dberr)?
                .insert("schema", SCHEMA)
                .map_err(dberr)?;
            tx.open_table(POSITIONS).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        Ok(Self { db, reset })
    }

    /// True when [`ProjectionStore::open`] found rows of another schema and discarded
    /// them (the views are rebuilt from the log).
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// Loads the built-in views.
    pub fn load(&self) -> Result<Views, StoreError> {
        self.load_into(Views::default())
    }

    /// Loads the rows of every model registered in `views` (empty ones) and the
    /// positions, and rebuilds the derived indexes.
    pub fn load_into(&self, mut v: Views) -> Result<Views, StoreError> {
        let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
        let tx = self.db.begin_read().map_err(dberr)?;
        for m in v.models_mut() {
            let name = m.name();
            let t = match tx.open_table(model_table(name)) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(dberr(e)),
            };
            for r in t.iter().map_err(dberr)? {
                let (k, val) = r.map_err(dberr)?;
                m.load_row(k.value(), val.value())
                    .map_err(|e| corrupt(&format!("{name}: {e}")))?;
            }
        }
        let t = tx.open_table(POSITIONS).map_err(dberr)?;
        for r in t.iter().map_err(dberr)? {
            let (k, val) = r.map_err(dberr)?;
            let s = StreamName::new(k.value()).map_err(|e| corrupt(&e))?;
            v.positions.insert(s, val.value());
        }
        v.rebuild_indexes();
        Ok(v)
    }

    /// Writes the touched rows of every registered model and all positions in one
    /// transaction.
    pub fn save(&self, views: &Views, touched: &Touched) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(dberr)?;
        tx.set_durability(redb::Durability::None).map_err(dberr)?;
        {
            for m in views.models() {
                let rows = m.encode_touched(touched).map_err(StoreError::Db)?;
                if rows.is_empty() {
                    continue;
                }
                let mut t = tx.open_table(model_table(m.name())).map_err(dberr)?;
                for (k, row) in rows {
                    match row {
                        Some(row) => {
                            t.insert(k.as_slice(), row.as_slice()).map_err(dberr)?;
                        }
                        None => {
                            t.remove(k.as_slice()).map_err(dberr)?;
                        }
                    }
                }
            }
            let mut t = tx.open_table(POSITIONS).map_err(dberr)?;
            for (s, p) in &views.positions {
                t.insert(s.as_str(), *p).map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Forces everything written so far to disk (on shutdown).
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(dberr)?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }
}
