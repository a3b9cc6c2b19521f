//! The pure fold: Nova's versioned notifications -> each instance's usage facts ->
//! os-simple-tenant-usage's figures for a window.
//!
//! Four notifications bill (the rest are ignored):
//! - `instance.create.end`: the instance launched at its payload's `launched_at`, with
//!   its payload's flavor;
//! - `instance.rebuild.end`: `launched_at` renewed (the payload's), as Nova renews it
//!   and as the `usage` read model does (`projections::usage`);
//! - `instance.resize_confirm.end`: the payload's flavor (the new one) is billed from
//!   the notification's own time (the envelope `timestamp`, the event's `at`) on;
//! - `instance.delete.end`: terminated at the payload's `terminated_at`.
//!
//! A notification whose instance never launched (payload `launched_at` null: a build
//! request deleted before placement, a failed spawn) bills nothing and is ignored, as
//! Nova's window query (`launched_at < end`) ignores the instance.
//!
//! Invariants:
//! - [`Facts::apply`] is a join: idempotent and order-independent (the latest
//!   `launched_at` wins, flavor changes are kept by time, the create's flavor wins over
//!   any other as the first one). A JetStream redelivery, which may come after later
//!   messages, therefore gives the same facts in any order; the ledger also records
//!   each counted message id, so a notification is counted once either way.
//! - [`Facts::row`] gives the same `UsageRow` the `usage` read model folds from the
//!   log (same launch, termination and flavor periods: a new period only when the
//!   confirmed flavor differs from the one before it), so [`usage`] computes exactly
//!   what `GET /os-simple-tenant-usage` answers: both call `projections::usage::hours_for`.
//! - All times are microseconds (the notifications carry them), so seconds of use are
//!   counted exactly, not estimated.

use std::collections::BTreeMap;

use domain::{InstanceId, Timestamp};
use notifier::Notification;
use projections::usage::{hours_for, FlavorPeriod, UsageFlavor, UsageRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::BillingError;

/// `instance.create.end`.
pub const CREATE_END: &str = "instance.create.end";
/// `instance.rebuild.end`.
pub const REBUILD_END: &str = "instance.rebuild.end";
/// `instance.resize_confirm.end`.
pub const RESIZE_CONFIRM_END: &str = "instance.resize_confirm.end";
/// `instance.delete.end`.
pub const DELETE_END: &str = "instance.delete.end";

/// The event types that bill.
pub const BILLING_TYPES: [&str; 4] = [CREATE_END, REBUILD_END, RESIZE_CONFIRM_END, DELETE_END];

/// What a billing notification changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Launched (create) or launched again (rebuild) at this time.
    Launched(Option<Timestamp>),
    /// Its flavor is billed from this time on.
    FlavorFrom(Timestamp),
    /// Terminated at this time.
    Terminated(Timestamp),
}

/// A billing notification, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Relevant {
    /// Its message id (the ledger's deduplication key).
    pub message_id: uuid::Uuid,
    /// The instance.
    pub instance: InstanceId,
    /// Owner project (`tenant_id`).
    pub project: String,
    /// Owner user.
    pub user: String,
    /// The payload's flavor.
    pub flavor: UsageFlavor,
    /// Whether this is the create (whose flavor is the first period's).
    pub create: bool,
    /// What changes.
    pub change: Change,
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (payload) or `YYYY-MM-DD HH:MM:SS.ffffff` (envelope).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let f = time::macros::format_description!(
        "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let s = s.strip_suffix('Z').unwrap_or(s);
    let t = time::PrimitiveDateTime::parse(s, f).ok()?.assume_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1000)
        .ok()
        .map(Timestamp)
}

fn malformed(n: &Notification, problem: impl Into<String>) -> BillingError {
    BillingError::Malformed {
        message_id: n.message_id.to_string(),
        event_type: n.event_type.clone(),
        problem: problem.into(),
    }
}

/// The billing content of `n`, or None when its type does not bill.
pub fn relevant(n: &Notification) -> Result<Option<Relevant>, BillingError> {
    let create = n.event_type == CREATE_END;
    if !BILLING_TYPES.contains(&n.event_type.as_str()) {
        return Ok(None);
    }
    let data = &n.payload["nova_object.data"];
    let text = |k: &str| -> Result<String, BillingError> {
        data[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| malformed(n, format!("no {k}")))
    };
    let time_of = |k: &str| -> Result<Option<Timestamp>, BillingError> {
        match &data[k] {
            Value::Null => Ok(None),
            Value::String(s) => parse_time(s)
                .map(Some)
                .ok_or_else(|| malformed(n, format!("bad {k}: {s}"))),
            v => Err(malformed(n, format!("bad {k}: {v}"))),
        }
    };
    // An instance that never launched (a build deleted before or after placement, a
    // failed spawn) bills nothing, whatever else its notification says.
    if data["launched_at"].is_null() {
        return Ok(None);
    }
    let instance =
        InstanceId::parse(&text("uuid")?).ok_or_else(|| malformed(n, "bad instance uuid"))?;
    let f = &data["flavor"]["nova_object.data"];
    let num = |k: &str| {
        f[k].as_u64()
            .ok_or_else(|| malformed(n, format!("no flavor {k}")))
    };
    let flavor = UsageFlavor {
        name: f["name"]
            .as_str()
            .ok_or_else(|| malformed(n, "no flavor name"))?
            .to_string(),
        vcpus: u32::try_from(num("vcpus")?).map_err(|_| malformed(n, "bad vcpus"))?,
        memory_mb: num("memory_mb")?,
        root_gb: num("root_gb")?,
        ephemeral_gb: num("ephemeral_gb")?,
    };
    let change = match n.event_type.as_str() {
        CREATE_END | REBUILD_END => Change::Launched(time_of("launched_at")?),
        RESIZE_CONFIRM_END => Change::FlavorFrom(
            parse_time(&n.timestamp)
                .ok_or_else(|| malformed(n, format!("bad timestamp {}", n.timestamp)))?,
        ),
        _ => Change::Terminated(match time_of("terminated_at")? {
            Some(t) => t,
            None => parse_time(&n.timestamp)
                .ok_or_else(|| malformed(n, format!("bad timestamp {}", n.timestamp)))?,
        }),
    };
    Ok(Some(Relevant {
        message_id: n.message_id,
        instance,
        project: text("tenant_id")?,
        user: text("user_id")?,
        flavor,
        create,
        change,
    }))
}

/// One instance's usage facts, as far as the notifications seen tell.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Facts {
    /// Owner project.
    pub project: String,
    /// Owner user.
    pub user: String,
    /// The latest launch (create, renewed by a rebuild).
    pub launched_at: Option<Timestamp>,
    /// When it was deleted.
    pub terminated_at: Option<Timestamp>,
    /// The flavor it launched with (the create's; before the create is seen, the first
    /// flavor any notification showed).
    pub flavor: Option<UsageFlavor>,
    /// Whether `flavor` is the create's.
    pub flavor_from_create: bool,
    /// Flavor billed from each confirmed resize on, by the confirmation's time.
    pub confirmed: BTreeMap<Timestamp, UsageFlavor>,
}

impl Facts {
    /// Folds one billing notification in (a join: idempotent, any order).
    pub fn apply(&mut self, r: &Relevant) {
        if self.project.is_empty() {
            self.project = r.project.clone();
            self.user = r.user.clone();
        }
        if r.create && !self.flavor_from_create {
            self.flavor = Some(r.flavor.clone());
            self.flavor_from_create = true;
        } else if self.flavor.is_none() {
            self.flavor = Some(r.flavor.clone());
        }
        match &r.change {
            Change::Launched(at) => self.launched_at = self.launched_at.max(*at),
            Change::FlavorFrom(at) => {
                self.confirmed.insert(*at, r.flavor.clone());
            }
            Change::Terminated(at) => {
                self.terminated_at = Some(self.terminated_at.map_or(*at, |t| t.min(*at)))
            }
        }
    }

    /// The `usage` read model's row for these facts (None before any flavor is known).
    pub fn row(&self) -> Option<UsageRow> {
        let first = self.flavor.clone()?;
        let mut periods = vec![FlavorPeriod {
            from: Timestamp(i64::MIN),
            flavor: first,
        }];
        for (at, f) in &self.confirmed {
            let last = periods.last().expect("never empty");
            if last.flavor != *f {
                let from = (*at).max(last.from);
                periods.push(FlavorPeriod {
                    from,
                    flavor: f.clone(),
                });
            }
        }
        Some(UsageRow {
            project: self.project.clone(),
            user: self.user.clone(),
            launched_at: self.launched_at,
            terminated_at: self.terminated_at,
            periods,
            pending: None,
            seq: 0,
        })
    }
}

/// One instance's usage in a window: Nova's figures and the hours of each flavor.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowUsage {
    /// Hours in the window.
    pub hours: f64,
    /// vCPU-hours.
    pub vcpu_hours: f64,
    /// RAM-MB-hours.
    pub memory_mb_hours: f64,
    /// Disk-GB-hours (root + ephemeral).
    pub local_gb_hours: f64,
    /// Hours of each flavor period inside the window (what a rate card prices).
    pub by_flavor: Vec<(UsageFlavor, f64)>,
}

/// Whether Nova's window query returns the instance: launched before `stop`, not
/// terminated by `start` (`instance_get_active_by_window_joined`).
pub fn in_window(row: &UsageRow, start: Timestamp, stop: Timestamp) -> bool {
    row.launched_at
        .is_some_and(|l| l < stop && row.terminated_at.is_none_or(|t| t > start))
}

/// The instance's usage in `[start, stop)`, None when Nova's window query would not
/// return it. The totals are `projections::usage::hours_for`'s (the API's own
/// arithmetic, so equal to the bit); `by_flavor` splits the same time per period.
pub fn usage(
    id: InstanceId,
    row: &UsageRow,
    start: Timestamp,
    stop: Timestamp,
) -> Option<WindowUsage> {
    if !in_window(row, start, stop) {
        return None;
    }
    let u = hours_for(id, row, start, stop);
    let mut by_flavor = Vec::new();
    let launched = row.launched_at?;
    let from = launched.max(start).0;
    let to = row.terminated_at.map_or(stop, |t| t.min(stop)).0;
    for (i, p) in row.periods.iter().enumerate() {
        let p_from = if i == 0 { i64::MIN } else { p.from.0 };
        let p_to = row.periods.get(i + 1).map_or(i64::MAX, |n| n.from.0);
        let (a, b) = (from.max(p_from), to.min(p_to));
        if b > a {
            by_flavor.push((p.flavor.clone(), (b - a) as f64 / 1e6 / 3600.0));
        }
    }
    Some(WindowUsage {
        hours: u.hours,
        vcpu_hours: u.vcpu_hours,
        memory_mb_hours: u.memory_mb_hours,
        local_gb_hours: u.local_gb_hours,
        by_flavor,
    })
}
