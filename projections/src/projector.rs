//! The projector: follows streams, applies commits to the [`World`] and periodically
//! persists the touched rows with their positions.
//!
//! Invariant: a stream is followed from `world.position(stream) + 1`, so after a
//! restart (views loaded from the store) nothing is applied twice and nothing skipped.

use eventlog::LockExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventlog::{EventLog, StreamName};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::Touched;
use crate::store::{ProjectionStore, StoreError};
use crate::world::World;

/// Follows streams into a world, and persists it.
pub struct Projector {
    log: Arc<dyn EventLog>,
    world: Arc<World>,
    store: Option<Arc<ProjectionStore>>,
    touched: Mutex<Touched>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Projector")
    }
}

impl Projector {
    /// New projector; `store` None keeps views in memory only.
    pub fn new(
        log: Arc<dyn EventLog>,
        world: Arc<World>,
        store: Option<Arc<ProjectionStore>>,
    ) -> Arc<Self> {
        Arc::new(Projector {
            log,
            world,
            store,
            touched: Mutex::new(Touched::default()),
        })
    }

    /// Follows one stream until shutdown.
    pub fn follow(
        self: &Arc<Self>,
        stream: StreamName,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            // (Re)subscribe from the world's position whenever the subscription ends or
            // fails, until shutdown: a transient log error never stops the projections.
            loop {
                let from = me.world.read().position(&stream) + 1;
                match me.log.subscribe(&stream, from).await {
                    Ok(sub) => {
                        if me.consume(&stream, sub, &mut shutdown).await {
                            return;
                        }
                    }
                    Err(e) => tracing::error!(%stream, error = %e, "projector cannot subscribe"),
                }
                if *shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        })
    }

    /// Applies a subscription until it ends (false) or shutdown (true).
    async fn consume(
        &self,
        stream: &StreamName,
        mut sub: eventlog::Subscription,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return true,
                next = sub.next() => match next {
                    Some(Ok(c)) => batch.push(c),
                    Some(Err(e)) => {
                        tracing::error!(%stream, error = %e, "projector read error; resubscribing");
                        return false;
                    }
                    None => return false,
                }
            }
            // Drain what is already there, to apply in one lock.
            while batch.len() < 1024 {
                match tokio::time::timeout(Duration::ZERO, sub.next()).await {
                    Ok(Some(Ok(c))) => batch.push(c),
                    _ => break,
                }
            }
            let t = self.world.apply(&batch);
            batch.clear();
            let mut all = self.touched.lock_or_recover();
            all.extend(t);
        }
    }

    /// Persists what changed since the last flush.
    pub fn flush(&self) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let touched = std::mem::take(&mut *self.touched.lock_or_recover());
        // Copy what changed under the lock, encode and write without it, so the
        // projector (the only writer of the world) is never held up by disk I/O.
        let snapshot = self.world.read().snapshot_of(&touched);
        store.save(&snapshot, &touched)
    }

    /// Flushes every `every` until shutdown, then flushes and syncs once more.
    pub fn spawn_flusher(
        self: &Arc<Self>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tick.tick() => {}
                }
                let m = me.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || m.flush()).await {
                    tracing::error!(error = %e, "projection flush failed");
                }
            }
            let m = me.clone();
            let _ = tokio::task::spawn_blocking(move || {
                m.flush()?;
                if let Some(s) = &m.store {
                    s.sync()?;
                }
                Ok::<_, StoreError>(())
            })
            .await;
        })
    }
}
