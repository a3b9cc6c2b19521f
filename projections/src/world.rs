//! The shared in-memory world: [`Views`] behind a lock, plus change notification so
//! callers can wait until a position has been applied (read-your-writes).
//!
//! Invariant: positions only move forward; `wait_for(stream, p)` returns true only once
//! every commit of `stream` up to `p` is visible to readers.

use eventlog::{LockExt, RwLockExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use eventlog::{Commit, StreamName};
use tokio::sync::{oneshot, watch};

use crate::health::CellHealth;
use crate::model::Touched;
use crate::views::Views;

/// Views shared by the API and the reactors of one process.
#[derive(Debug)]
pub struct World {
    views: RwLock<Views>,
    version: watch::Sender<u64>,
    /// Waiters for a stream position, woken exactly once when it is applied (a
    /// broadcast to every waiter on every apply costs O(waiters) per commit).
    waiters: Mutex<HashMap<StreamName, Waiters>>,
    /// Which cells' streams are unreachable now (set by the stack's probe).
    pub health: CellHealth,
}

/// Senders to wake per awaited position of one stream.
type Waiters = BTreeMap<u64, Vec<oneshot::Sender<()>>>;

impl Default for World {
    fn default() -> Self {
        Self::new(Views::default())
    }
}

impl World {
    /// Wraps loaded views.
    pub fn new(views: Views) -> Self {
        World {
            views: RwLock::new(views),
            version: watch::channel(0).0,
            waiters: Mutex::new(HashMap::new()),
            health: CellHealth::default(),
        }
    }

    /// Read access (never hold it across an await).
    pub fn read(&self) -> RwLockReadGuard<'_, Views> {
        self.views.read_or_recover()
    }

    /// Applies commits (of any streams, each stream in order) and wakes waiters.
    pub fn apply(&self, commits: &[Commit]) -> Touched {
        let mut touched = Touched::default();
        let mut reached: Vec<(StreamName, u64)> = Vec::new();
        {
            let mut v = self.views.write_or_recover();
            for c in commits {
                v.apply(c, &mut touched);
            }
            for c in commits {
                if !reached.iter().any(|(s, _)| *s == c.stream) {
                    reached.push((c.stream.clone(), v.position(&c.stream)));
                }
            }
        }
        // Positions are visible before waiters are woken (see `wait_for`).
        {
            let mut w = self.waiters.lock_or_recover();
            for (stream, pos) in reached {
                if let Some(map) = w.get_mut(&stream) {
                    let rest = map.split_off(&(pos + 1));
                    for (_, senders) in std::mem::replace(map, rest) {
                        for tx in senders {
                            let _ = tx.send(());
                        }
                    }
                }
            }
        }
        self.version.send_modify(|x| *x += 1);
        touched
    }

    /// Runs `f` under the write lock (for loading and tests).
    pub fn with_mut<R>(&self, f: impl FnOnce(&mut Views) -> R) -> R {
        let r = f(&mut self.views.write_or_recover());
        self.version.send_modify(|x| *x += 1);
        r
    }

    /// Waits until `cond` holds on the views, or `timeout` passes. Returns whether it holds.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Views) -> bool) -> bool {
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if cond(&self.read()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return cond(&self.read()),
            }
        }
    }

    /// Waits until `stream` has been applied up to `pos`.
    pub async fn wait_for(&self, stream: &StreamName, pos: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |v| v.position(stream) >= pos)
            .await
    }
}
