//! The instance usage audit: Nova's `_instance_usage_audit` periodic task, as a fact
//! in the log. Each audit period (`--audit-period` seconds, aligned on multiples of the
//! period since the epoch, as Nova's `last_completed_audit_period` aligns hours) is
//! closed once per cell by `audit.period_closed`, naming every compute host of the
//! cell and the instances it audited (active in the period on that host: launched
//! before its end, not terminated before its beginning). The os-instance_usage_audit_log
//! API reads these facts, and `instance.exists` notifications can be made from them.
//!
//! Pure: the time comes from the caller.

use serde::{Deserialize, Serialize};

use crate::{CellName, HostName, InstanceId, Timestamp};

/// What one compute host's audit of a period found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAudit {
    pub host: HostName,
    /// Instances active on the host in the period (Nova's `task_items` is their count).
    pub instances: Vec<InstanceId>,
    /// Instances whose audit failed (always 0: the audit reads the log).
    pub errors: u32,
}

/// Events of a cell's usage audit subject (`stratus.cell.<cell>.usage_audit.<cell>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// `audit.period_closed`: the period `[period_beginning, period_ending)` was
    /// audited on every listed host of the cell.
    PeriodClosed {
        cell: CellName,
        period_beginning: Timestamp,
        period_ending: Timestamp,
        hosts: Vec<HostAudit>,
        /// When it was closed.
        at: Timestamp,
    },
}

/// The last period completed at `now`: `(beginning, ending)`, `ending` the last
/// multiple of `period_secs` (>= 1) since the epoch not after `now`.
pub fn last_completed_period(now: Timestamp, period_secs: i64) -> (Timestamp, Timestamp) {
    let p = period_secs.max(1) * 1_000_000;
    let end = now.0.div_euclid(p) * p;
    (Timestamp(end - p), Timestamp(end))
}

/// Nova's window test (`instance_get_active_by_window_joined`): launched before
/// `end` and not terminated by `begin`.
pub fn active_in(
    launched_at: Option<Timestamp>,
    terminated_at: Option<Timestamp>,
    begin: Timestamp,
    end: Timestamp,
) -> bool {
    launched_at.is_some_and(|l| l < end) && terminated_at.is_none_or(|t| t > begin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_aligned_and_completed() {
        let h = 3_600_000_000;
        let (b, e) = last_completed_period(Timestamp(10 * h + 5), 3600);
        assert_eq!((b, e), (Timestamp(9 * h), Timestamp(10 * h)));
        let (b, e) = last_completed_period(Timestamp(10 * h), 3600);
        assert_eq!((b, e), (Timestamp(9 * h), Timestamp(10 * h)));
        assert!(active_in(
            Some(Timestamp(1)),
            None,
            Timestamp(0),
            Timestamp(2)
        ));
        assert!(!active_in(
            Some(Timestamp(2)),
            None,
            Timestamp(0),
            Timestamp(2)
        ));
        assert!(!active_in(None, None, Timestamp(0), Timestamp(2)));
        assert!(!active_in(
            Some(Timestamp(0)),
            Some(Timestamp(1)),
            Timestamp(1),
            Timestamp(2)
        ));
    }
}
