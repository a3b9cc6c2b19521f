//! Persistence of the views in `projections.redb` (one file, rebuildable from the log).
//!
//! Tables: `instances` (uuid bytes -> postcard InstanceRow), `hosts` and `flavors`
//! (subject -> postcard row), `cells` and `host_mappings` (name -> postcard row),
//! `images` (uuid bytes -> postcard ImageRow), `identity` (subject -> postcard IdentityRow),
//! `positions` (stream -> last applied position).
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

use eventlog::{StreamName, Subject};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::views::{
    CellRow, FlavorRow, HostMappingRow, HostRow, ImageRow, InstanceRow, Touched, Views,
};

const INSTANCES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("instances");
const HOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosts");
const FLAVORS: TableDefinition<&str, &[u8]> = TableDefinition::new("flavors");
const POSITIONS: TableDefinition<&str, u64> = TableDefinition::new("positions");
const CELLS: TableDefinition<&str, &[u8]> = TableDefinition::new("cells");
const HOST_MAPPINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("host_mappings");
const IMAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("images");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Schema version of the stored rows: bump it whenever the shape of a stored row
/// (an `InstanceRow`, `HostRow`, ...) changes, so old stores are rebuilt from the log.
pub const SCHEMA: u64 = 3;
const IDENTITY: TableDefinition<&str, &[u8]> = TableDefinition::new("identity");

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
            tx.open_table(INSTANCES).map_err(dberr)?;
            tx.open_table(HOSTS).map_err(dberr)?;
            tx.open_table(FLAVORS).map_err(dberr)?;
            tx.open_table(POSITIONS).map_err(dberr)?;
            tx.open_table(CELLS).map_err(dberr)?;
            tx.open_table(HOST_MAPPINGS).map_err(dberr)?;
            tx.open_table(IMAGES).map_err(dberr)?;
            tx.open_table(IDENTITY).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        Ok(Self { db, reset })
    }

    /// True when [`ProjectionStore::open`] found rows of another schema and discarded
    /// them (the views are rebuilt from the log).
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// Loads every stored view.
    pub fn load(&self) -> Result<Views, StoreError> {
        let mut v = Views::default();
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(INSTANCES).map_err(dberr)?;
        for r in t.iter().map_err(dberr)? {
            let (k, val) = r.map_err(dberr)?;
            let id = uuid::Uuid::from_slice(k.value())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let row: InstanceRow = postcard::from_bytes(val.value())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            v.instances.insert(domain::InstanceId(id), row);
        }
        let t = tx.open_table(HOSTS).map_err(dberr)?;
        for r in t.iter().map_err(dberr)? {
            let (k, val) = r.map_err(dberr)?;
            let s = Subject::parse(k.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let row: HostRow = postcard::from_bytes(val.value())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            v.hosts.insert(s, row);
        }
        let t = tx.open_table(FLAVORS).map_err(dberr)?;
        for r in t.iter().map_err(dberr)? {
            let (k, val) = r.map_err(dberr)?;
            let s = Subject::parse(k.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let row: FlavorRow = postcard::from_bytes(val.value())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            v.flavors.insert(s, row);
        }
        let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
        let t = tx.open_table(CELLS).map_err(dberr)?;
        for r in t.iter().map_err(dberr)? {
            let (k, val) = r.map_err(dberr)?;
            let name = domain::CellName::new(k.value()).map_err(|e| corrupt(&e))?;
            let row: CellRow = postcard::from_bytes(val.value()).map_err(|e| corrupt(&e))?;
            v.cells.insert(name, row);
        }
        let t = tx.open_table(HOST_MAPPINGS).map_err(dberr)?;
        for r in t.iter().map_err(dberr)? {
            let (k, val) = r.map_err(dberr)?;
            let name = domain::HostName::new(k.value()).map_err(|e| corrupt(&e))?;
            let row: HostMappingRow = postcard::from_bytes(val.value()).map_err(|e| corrupt(&e))?;
            v.host_mappings.insert(name, row);
        }
        let t = tx.open_table(IMAGES).map_err(dberr)?;
        for r in t.iter().map_err(dberr)? {
            let (k, val) = r.map_err(dberr)?;
            let id = uuid::Uuid::from_slice(k.value()).map_err(|e| corrupt(&e))?;
            let row: ImageRow = postcard::from_bytes(val.value()).map_err(|e| corrupt(&e))?;
            v.images.insert(domain::ImageId(id), row);
        }
        let t = tx.open_table(IDENTITY).map_err(dberr)?;
        for r in t.iter().map_err(dberr)? {
            let (k, val) = r.map_err(dberr)?;
            let s = Subject::parse(k.value()).map_err(|e| corrupt(&e))?;
            let row: crate::IdentityRow =
                postcard::from_bytes(val.value()).map_err(|e| corrupt(&e))?;
            v.identity.rows.insert(s, row);
        }
        let t = tx.open_table(POSITIONS).map_err(dberr)?;
        for r in t.iter().map_err(dberr)? {
            let (k, val) = r.map_err(dberr)?;
            let s = StreamName::new(k.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            v.positions.insert(s, val.value());
        }
        v.rebuild_indexes();
        Ok(v)
    }

    /// Writes the touched rows and all positions in one transaction.
    pub fn save(&self, views: &Views, touched: &Touched) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(dberr)?;
        tx.set_durability(redb::Durability::None).map_err(dberr)?;
        {
            let mut t = tx.open_table(INSTANCES).map_err(dberr)?;
            for id in &touched.instances {
                if let Some(row) = views.instances.get(id) {
                    let bytes = postcard::to_stdvec(row).map_err(dberr)?;
                    t.insert(id.0.as_bytes().as_slice(), bytes.as_slice())
                        .map_err(dberr)?;
                }
            }
            let mut t = tx.open_table(HOSTS).map_err(dberr)?;
            for s in &touched.hosts {
                if let Some(row) = views.hosts.get(s) {
                    let bytes = postcard::to_stdvec(row).map_err(dberr)?;
                    t.insert(s.as_str(), bytes.as_slice()).map_err(dberr)?;
                }
            }
            let mut t = tx.open_table(FLAVORS).map_err(dberr)?;
            for s in &touched.flavors {
                if let Some(row) = views.flavors.get(s) {
                    let bytes = postcard::to_stdvec(row).map_err(dberr)?;
                    t.insert(s.as_str(), bytes.as_slice()).map_err(dberr)?;
                }
            }
            let mut t = tx.open_table(CELLS).map_err(dberr)?;
            for c in &touched.cells {
                if let Some(row) = views.cells.get(c) {
                    let bytes = postcard::to_stdvec(row).map_err(dberr)?;
                    t.insert(c.as_str(), bytes.as_slice()).map_err(dberr)?;
                }
            }
            let mut t = tx.open_table(HOST_MAPPINGS).map_err(dberr)?;
            for h in &touched.host_mappings {
                if let Some(row) = views.host_mappings.get(h) {
                    let bytes = postcard::to_stdvec(row).map_err(dberr)?;
                    t.insert(h.as_str(), bytes.as_slice()).map_err(dberr)?;
                }
            }
            let mut t = tx.open_table(IMAGES).map_err(dberr)?;
            for i in &touched.images {
                if let Some(row) = views.images.get(i) {
                    let bytes = postcard::to_stdvec(row).map_err(dberr)?;
                    t.insert(i.0.as_bytes().as_slice(), bytes.as_slice())
                        .map_err(dberr)?;
                }
            }
            let mut t = tx.open_table(IDENTITY).map_err(dberr)?;
            for s in &touched.identity {
                if let Some(row) = views.identity.rows.get(s) {
                    let bytes = postcard::to_stdvec(row).map_err(dberr)?;
                    t.insert(s.as_str(), bytes.as_slice()).map_err(dberr)?;
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

impl Views {
    /// Recomputes the derived indexes (`by_created`, `pending`, `claims`) from rows.
    pub fn rebuild_indexes(&mut self) {
        self.by_created.clear();
        self.pending.clear();
        self.claims.clear();
        for (id, row) in &self.instances {
            if let Some(s) = row.state() {
                self.by_created.insert((s.created_at, *id));
                if s.op.is_some() || (s.vm_state == domain::VmState::Shelved && !s.deleted) {
                    self.pending.insert(*id);
                }
            }
        }
        for (subj, row) in &self.hosts {
            for (claim, a) in &row.host.allocations {
                self.claims
                    .entry(a.instance)
                    .or_default()
                    .insert((subj.clone(), *claim));
            }
        }
    }
}
