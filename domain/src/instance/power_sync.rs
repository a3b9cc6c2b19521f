//! Power-state sync: what the compute agent does when the hypervisor's power state of a
//! guest differs from the log's (Nova's `ComputeManager._sync_instance_power_state`).
//!
//! Invariants:
//! - Only a settled, placed instance is synced: while an operation is in flight (a task
//!   state, an operation id) the operation owns the power state, and Nova skips it too.
//! - The power state recorded is always the observed one
//!   (`instance.power_state_changed`); the vm_state changes only through a real
//!   operation that [`SYNC_RULES`] names (a stop, started by the compute service as
//!   Nova's `force_stop`), so the instance action, notifications and driver call of
//!   that operation happen as for a user's.
//! - The decision reads (vm_state, observed power state) only, not the recorded power
//!   state, so a sync interrupted between recording and stopping redoes the stop at
//!   its next run (level-triggered).

use super::Instance;
use crate::{PowerState, VmState};

/// What the agent does beyond recording the observed power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncAction {
    /// Stop the server (Nova's `compute_api.force_stop`): it ends SHUTOFF, powered off.
    Stop,
    /// Power the guest off without changing the vm_state (a soft-deleted guest running).
    PowerOff,
}

/// One row: in `vm_state`, a guest observed in one of `observed` gets `action`
/// (None: only the power state is recorded). Nova's log message says why.
#[derive(Debug, Clone, Copy)]
pub struct SyncRule {
    pub vm_state: VmState,
    pub observed: &'static [PowerState],
    pub action: Option<SyncAction>,
    pub why: &'static str,
}

use PowerState as P;

/// Nova's `_sync_instance_power_state` as data, first match wins; a (vm_state, observed)
/// pair without a row only records the observed power state.
pub const SYNC_RULES: &[SyncRule] = &[
    SyncRule {
        vm_state: VmState::Active,
        observed: &[P::Shutdown, P::Crashed],
        action: Some(SyncAction::Stop),
        why: "Instance shutdown by itself. Calling the stop API.",
    },
    SyncRule {
        vm_state: VmState::Active,
        observed: &[P::Suspended],
        action: Some(SyncAction::Stop),
        why: "Instance is suspended unexpectedly. Calling the stop API.",
    },
    SyncRule {
        vm_state: VmState::Active,
        observed: &[P::Paused],
        action: None,
        why: "Instance is paused unexpectedly. Ignore.",
    },
    SyncRule {
        vm_state: VmState::Active,
        observed: &[P::NoState],
        action: None,
        why: "Instance is unexpectedly not found. Ignore.",
    },
    SyncRule {
        vm_state: VmState::Stopped,
        observed: &[P::Running, P::Paused, P::Suspended],
        action: Some(SyncAction::Stop),
        why: "Instance is not stopped. Calling the stop API.",
    },
    SyncRule {
        vm_state: VmState::Paused,
        observed: &[P::Shutdown, P::Crashed],
        action: Some(SyncAction::Stop),
        why: "Paused instance shutdown by itself. Calling the stop API.",
    },
    SyncRule {
        vm_state: VmState::SoftDeleted,
        observed: &[P::Running, P::Paused, P::Suspended],
        action: Some(SyncAction::PowerOff),
        why: "Instance is not (soft-)deleted.",
    },
];

/// What a sync of `i` against the observed power state does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPlan {
    /// The power state to record (None: the log agrees already).
    pub record: Option<PowerState>,
    /// The operation to start after recording it.
    pub action: Option<SyncAction>,
    /// Nova's reason, for the agent's log line.
    pub why: Option<&'static str>,
}

/// The plan for `i` when its guest is observed in `observed`; None when `i` is not
/// synced now (deleted, not placed on a host, or an operation in flight).
pub fn plan(i: &Instance, observed: PowerState) -> Option<SyncPlan> {
    if i.deleted || !i.placed || i.host.is_none() || i.task_state.is_some() || i.op.is_some() {
        return None;
    }
    let rule = SYNC_RULES
        .iter()
        .find(|r| r.vm_state == i.vm_state && r.observed.contains(&observed));
    Some(SyncPlan {
        record: (i.power_state != observed).then_some(observed),
        action: rule.and_then(|r| r.action),
        why: rule.map(|r| r.why),
    })
}
