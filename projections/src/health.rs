//! Health of the cells as this process sees them.
//!
//! A cell is *down* when its stream cannot be reached (the stack's probe marks it; see
//! `stratus::stack`). Readers (the API) use it to serve the other cells normally and
//! the down cell's instances as Nova does for a cell that does not respond.
//!
//! Invariant: health is only a view of reachability; it never changes the log or the
//! folded views, so a cell that comes back is served from the same state as before.

use eventlog::RwLockExt;
use std::collections::BTreeSet;
use std::sync::RwLock;

use domain::CellName;

/// The set of cells currently considered down.
#[derive(Debug, Default)]
pub struct CellHealth {
    down: RwLock<BTreeSet<CellName>>,
}

impl CellHealth {
    /// Marks `cell` down (`true`) or up (`false`); returns whether that changed anything.
    pub fn set_down(&self, cell: &CellName, down: bool) -> bool {
        let mut set = self.down.write_or_recover();
        if down {
            set.insert(cell.clone())
        } else {
            set.remove(cell)
        }
    }

    /// Whether `cell` is down.
    pub fn is_down(&self, cell: &CellName) -> bool {
        self.down.read_or_recover().contains(cell)
    }

    /// The cells that are down now.
    pub fn down(&self) -> BTreeSet<CellName> {
        self.down.read_or_recover().clone()
    }
}
