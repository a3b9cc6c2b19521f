//! Durable checkpoints for reactors and projections: name -> last handled position.
//!
//! A checkpoint is the stream position up to which a consumer has handled the log; after a
//! restart it resumes from the position after it. Because consumers are idempotent, a
//! checkpoint may lag (callers save only every N events) but it must never be ahead of what
//! was handled, and a save that returned `Ok` must survive a crash.
//!
//! [`EmbeddedCheckpoints`] stores them in one redb database (conventionally
//! `<data dir>/checkpoints.redb`) with a single table `checkpoints: &str -> u64`. Every
//! [`CheckpointStore::save`] is its own write transaction committed with
//! [`Durability::Immediate`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use crate::LogError;

/// Checkpoint name -> last handled position.
const CHECKPOINTS: TableDefinition<&str, u64> = TableDefinition::new("checkpoints");

/// Where consumers of the log remember how far they got.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// The last position saved under `name`, or `None` if none was ever saved.
    async fn load(&self, name: &str) -> Result<Option<u64>, LogError>;

    /// Durably records `pos` as the last position handled by `name` (overwrites).
    async fn save(&self, name: &str, pos: u64) -> Result<(), LogError>;
}

/// [`CheckpointStore`] on a redb database file.
#[derive(Clone)]
pub struct EmbeddedCheckpoints {
    db: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedCheckpoints")
    }
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

impl EmbeddedCheckpoints {
    /// Opens (or creates) the checkpoint database at `path`, e.g. `<dir>/checkpoints.redb`.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| LogError::Storage(format!("create {}: {e}", parent.display())))?;
            }
        }
        let db = Database::builder()
            .set_cache_size(8 * 1024 * 1024)
            .create(path)
            .map_err(|e| LogError::Storage(format!("open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(CHECKPOINTS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Self { db: Arc::new(db) })
    }
}

#[async_trait]
impl CheckpointStore for EmbeddedCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<u64>, LogError> {
        let db = self.db.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(storage)?;
            let t = r.open_table(CHECKPOINTS).map_err(storage)?;
            let v = t.get(name.as_str()).map_err(storage)?;
            Ok(v.map(|g| g.value()))
        })
        .await
        .map_err(storage)?
    }

    async fn save(&self, name: &str, pos: u64) -> Result<(), LogError> {
        let db = self.db.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(storage)?;
            txn.set_durability(Durability::Immediate).map_err(storage)?;
            {
                let mut t = txn.open_table(CHECKPOINTS).map_err(storage)?;
                t.insert(name.as_str(), pos).map_err(storage)?;
            }
            txn.commit().map_err(storage)
        })
        .await
        .map_err(storage)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_load_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.redb");
        {
            let cp = EmbeddedCheckpoints::open(&path).unwrap();
            assert_eq!(cp.load("projector").await.unwrap(), None);
            cp.save("projector", 10).await.unwrap();
            cp.save("projector", 25).await.unwrap();
            cp.save("scheduler", 3).await.unwrap();
            assert_eq!(cp.load("projector").await.unwrap(), Some(25));
        }
        let cp = EmbeddedCheckpoints::open(&path).unwrap();
        assert_eq!(cp.load("projector").await.unwrap(), Some(25));
        assert_eq!(cp.load("scheduler").await.unwrap(), Some(3));
        assert_eq!(cp.load("other").await.unwrap(), None);
    }
}
