//! Locks that recover from poisoning.
//!
//! A std lock is poisoned when a thread panicked while holding it. Every lock in
//! Stratus guards state that stays valid at every step a panic could interrupt: a cache
//! or index rebuilt from the log (the world's views, write-through caches), a set of
//! in-flight keys, waiters, counters. A half-done update there is at worst stale, and
//! the log, not the lock, is the source of truth. Propagating the poison would instead
//! turn one panicked task into a process that fails every later request. So every
//! lock is taken through these helpers, which take the guard out of a poisoned lock;
//! a new lock whose data could be left inconsistent must not use them.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`], recovering from poison (see the module docs for why that is right).
pub trait LockExt<T: ?Sized> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// [`RwLock::read`] and [`RwLock::write`], recovering from poison (see the module docs).
pub trait RwLockExt<T: ?Sized> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T>;
    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let m = Mutex::new(1);
        let r = RwLock::new(1);
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _g = m.lock().unwrap();
                    let _w = r.write().unwrap();
                    panic!("poison both");
                })
                .join();
        });
        assert!(m.is_poisoned() && r.is_poisoned());
        *m.lock_or_recover() += 1;
        *r.write_or_recover() += 1;
        assert_eq!((*m.lock_or_recover(), *r.read_or_recover()), (2, 2));
    }
}
