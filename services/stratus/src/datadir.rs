//! A process's data directory: one process at a time, and one-shot commands only where
//! a Stratus store is.
//!
//! Invariants:
//! - A process that uses a data directory (`serve`, every part of a split deployment,
//!   and the one-shot commands `replay`, `admin`, `cell` on the embedded store) holds an
//!   exclusive OS lock on `<dir>/stratus.lock` for as long as it uses it. The lock goes
//!   with the process, also on SIGKILL, so a crash never leaves a directory locked. The
//!   file names the holder (pid, command line), so a refusal says who holds it and what
//!   to do, before any database is opened (redb's own lock error names neither).
//! - One-shot commands that read existing data never create a store: they refuse a
//!   directory without the file they read and say which directory they looked in.
//! - A directory that a process created and then failed to start in is removed again,
//!   so a typo or a busy port does not leave a half-made store behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a data directory.
pub const LOCK_FILE: &str = "stratus.lock";

/// What a one-shot command reads from a data directory, so that it can refuse a
/// directory without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The embedded event log (`log/api.redb`, written by the first `stratus serve`).
    Log,
    /// Persisted projections (`projections.redb`, written by `serve` or `projector`).
    Projections,
}

impl Store {
    /// The file whose presence shows the store is there.
    fn marker(self, dir: &Path) -> PathBuf {
        match self {
            Store::Log => crate::stack::log_dir(dir).join("api.redb"),
            Store::Projections => crate::stack::projections_path(dir),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Store::Log => "event log",
            Store::Projections => "stored projections",
        }
    }
}

/// A locked data directory (unlocked on drop).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
    created: bool,
}

impl DataDir {
    /// For a process that runs on `path`: creates the directory if it is missing and
    /// locks it; refused (naming the holder) while another process holds it.
    pub fn acquire(path: &Path) -> anyhow::Result<DataDir> {
        let created = !path.exists();
        std::fs::create_dir_all(path).map_err(|e| {
            anyhow::anyhow!("cannot create the data directory {}: {e}", path.display())
        })?;
        match lock(
            path,
            "stop it first, or give this process a data directory of its own with --data-dir DIR",
        ) {
            Ok(lock) => Ok(DataDir {
                path: path.to_path_buf(),
                _lock: lock,
                created,
            }),
            Err(e) => {
                if created {
                    let _ = std::fs::remove_dir_all(path);
                }
                Err(e)
            }
        }
    }

    /// For a one-shot command that reads `store` in `path`: refuses a directory without
    /// it (nothing is created), then locks it. `hint` ends the refusal when a running
    /// process holds the directory.
    pub fn existing(path: &Path, store: Store, hint: &str) -> anyhow::Result<DataDir> {
        let marker = store.marker(path);
        if !marker.exists() {
            let dir = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            anyhow::bail!(
                "no Stratus {} in {} (looked for {}): pass the --data-dir of a stratus server{}",
                store.what(),
                dir.display(),
                marker.strip_prefix(path).unwrap_or(&marker).display(),
                if store == Store::Log {
                    ", or --nats URL for a log on JetStream"
                } else {
                    " or projector"
                }
            );
        }
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock(path, hint)?,
            created: false,
        })
    }

    /// Refuses a directory another backend's process used: a JetStream process on a
    /// directory with an embedded log, or the embedded store on a JetStream process's
    /// directory (checkpoints, no log). Mixing them would fold one log's projections
    /// with another's positions and bootstrap a second admin over the first's openrc.
    pub fn check_backend(&self, on_jetstream: bool) -> anyhow::Result<()> {
        let embedded_log = Store::Log.marker(&self.path).exists();
        let used = self.path.join("checkpoints.redb").exists();
        if on_jetstream && embedded_log {
            anyhow::bail!(
                "the data directory {} holds an embedded event log (log/): a process on \
                 JetStream needs a data directory of its own, pass --data-dir DIR",
                self.path.display()
            );
        }
        if !on_jetstream && used && !embedded_log {
            anyhow::bail!(
                "the data directory {} belongs to a process on JetStream (checkpoints, no \
                 log/): pass its --nats URL, or another --data-dir for the embedded store",
                self.path.display()
            );
        }
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the directory up after a failed start: removed when this process created
    /// it (nothing was served from it), kept otherwise.
    pub fn discard(self) {
        if self.created {
            let path = self.path.clone();
            drop(self);
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(dir = %path.display(), error = %e, "cannot remove the data directory this failed start created");
            }
        }
    }
}

/// Takes the exclusive lock of `dir` and writes this process into the lock file, or
/// says who holds it.
fn lock(dir: &Path, hint: &str) -> anyhow::Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            let me = format!(
                "pid {}: {}\n",
                std::process::id(),
                std::env::args().collect::<Vec<_>>().join(" ")
            );
            // Best effort: the lock, not the text, is what excludes.
            let _ = file
                .set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(me.as_bytes()));
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" ({holder})")
            };
            anyhow::bail!(
                "the data directory {} is in use by a running stratus server{who}; {hint}",
                dir.display()
            )
        }
        Err(TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let first = DataDir::acquire(&dir).unwrap();
        let e = DataDir::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains("in use by a running stratus server (pid "),
            "{e}"
        );
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("--data-dir DIR"), "{e}");
        drop(first);
        // Released with its holder.
        DataDir::acquire(&dir).unwrap();
    }

    #[test]
    fn reading_commands_refuse_a_directory_without_a_store_and_create_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nothing-here");
        let e = DataDir::existing(&dir, Store::Log, "stop it")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no Stratus event log in"), "{e}");
        assert!(e.contains("log/api.redb"), "{e}");
        assert!(!dir.exists());
        let e = DataDir::existing(tmp.path(), Store::Projections, "stop it")
            .unwrap_err()
            .to_string();
        assert!(e.contains("projections.redb"), "{e}");
    }

    #[test]
    fn an_embedded_store_and_a_jetstream_process_never_share_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::acquire(tmp.path()).unwrap();
        dir.check_backend(true).unwrap();
        dir.check_backend(false).unwrap();
        std::fs::write(tmp.path().join("checkpoints.redb"), b"").unwrap();
        let e = dir.check_backend(false).unwrap_err().to_string();
        assert!(e.contains("belongs to a process on JetStream"), "{e}");
        dir.check_backend(true).unwrap();
        std::fs::create_dir(tmp.path().join("log")).unwrap();
        std::fs::write(tmp.path().join("log/api.redb"), b"").unwrap();
        let e = dir.check_backend(true).unwrap_err().to_string();
        assert!(e.contains("holds an embedded event log"), "{e}");
        dir.check_backend(false).unwrap();
    }

    #[test]
    fn a_failed_start_removes_only_a_directory_it_created() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("new");
        DataDir::acquire(&new).unwrap().discard();
        assert!(!new.exists());
        let old = tmp.path().join("old");
        std::fs::create_dir(&old).unwrap();
        DataDir::acquire(&old).unwrap().discard();
        assert!(old.exists());
    }
}
