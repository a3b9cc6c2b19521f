//! The usage read model: what Nova's os-simple-tenant-usage bills, folded from the
//! instances' cell subjects, kept after the instance is deleted.
//!
//! One row per instance that reached a cell (`instance.placed`): its project and user,
//! `launched_at` (set by `instance.spawned`, renewed by `instance.rebuilt`, as Nova
//! renews it), `terminated_at` (`instance.deleted`) and its **flavor periods**: the
//! flavor billed from a given instant on. The first period is the flavor it was placed
//! with; a resize changes the rate from the moment it is confirmed
//! (`instance.resize_confirmed`'s time), a revert keeps the old flavor (the pending new
//! flavor of `instance.migration_started` is dropped by a revert, a reset or a delete).
//!
//! Invariants:
//! - A row is the fold of one cell subject only (an instance is placed once), so the
//!   default merge (other side wins) is right.
//! - `periods` is non-empty and its `from` times never decrease.
//! - `by_project` holds exactly `(project, id)` of every row: Nova's usage order
//!   (`project_id`, `uuid`) and a project's rows as one range.
//! - Instances that never reached a cell (still a build request, or failed into cell0)
//!   never launched, so Nova's window query (`launched_at < end`) never returns them:
//!   they have no row.
//!
//! The instance's display name and vm_state are not usage facts: the API reads them
//! from the instance model at query time (see [`UsageQuery`]).

use std::collections::BTreeSet;

use domain::flavor::FlavorSpec;
use domain::instance::InstanceEvent;
use domain::{Event, InstanceId, Timestamp};
use eventlog::Commit;
use serde::{Deserialize, Serialize};

use crate::model::{Invalid, ReadModel, Table};

/// What a flavor bills (Nova's `server_usages` fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageFlavor {
    pub name: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub root_gb: u64,
    pub ephemeral_gb: u64,
}

impl UsageFlavor {
    /// Nova's `local_gb`: root + ephemeral.
    pub fn local_gb(&self) -> u64 {
        self.root_gb + self.ephemeral_gb
    }
}

impl From<&FlavorSpec> for UsageFlavor {
    fn from(f: &FlavorSpec) -> Self {
        UsageFlavor {
            name: f.name.clone(),
            vcpus: f.vcpus,
            memory_mb: f.ram_mb,
            root_gb: f.disk_gb,
            ephemeral_gb: f.ephemeral_gb,
        }
    }
}

/// A flavor billed from `from` on (until the next period's `from`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlavorPeriod {
    pub from: Timestamp,
    pub flavor: UsageFlavor,
}

/// One instance's usage facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub project: String,
    pub user: String,
    pub launched_at: Option<Timestamp>,
    pub terminated_at: Option<Timestamp>,
    /// Never empty; `from` never decreases.
    pub periods: Vec<FlavorPeriod>,
    /// The new flavor of a resize in progress (billed only once confirmed).
    pub pending: Option<UsageFlavor>,
    /// Last sequence of the cell subject.
    pub seq: u64,
}

/// Usage rows by instance, indexed by (project, id).
#[derive(Debug, Clone, Default)]
pub struct Usage {
    rows: Table<InstanceId, UsageRow>,
    by_project: BTreeSet<(String, InstanceId)>,
}

impl ReadModel for Usage {
    const NAME: &'static str = "usage";
    type Key = InstanceId;
    type Row = UsageRow;

    fn rows(&self) -> &Table<InstanceId, UsageRow> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<InstanceId, UsageRow> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<InstanceId>, Invalid> {
        let Event::Instance(e) = ev else {
            return Ok(None);
        };
        if c.stream.as_str() == "api" {
            return Ok(None);
        }
        let id = InstanceId::parse(c.subject.id_token()).ok_or(Invalid)?;
        if let InstanceEvent::Placed { snapshot, at } = e {
            let project = snapshot.spec.project_id.clone();
            self.by_project.insert((project.clone(), id));
            self.rows.insert(
                id,
                UsageRow {
                    project,
                    user: snapshot.spec.user_id.clone(),
                    launched_at: snapshot.launched_at,
                    terminated_at: snapshot.terminated_at,
                    periods: vec![FlavorPeriod {
                        from: *at,
                        flavor: (&snapshot.flavor.spec).into(),
                    }],
                    pending: None,
                    seq: c.subject_seq,
                },
            );
            return Ok(Some(id));
        }
        let Some(row) = self.rows.get_mut(&id) else {
            // A cell0 instance (build failed): never launched, never billed.
            return Ok(None);
        };
        row.seq = c.subject_seq;
        match e {
            InstanceEvent::Spawned { at } | InstanceEvent::Rebuilt { at, .. } => {
                row.launched_at = Some(*at);
            }
            InstanceEvent::MigrationStarted { migration, .. } => {
                row.pending = Some((&migration.new_flavor.spec).into());
            }
            InstanceEvent::ResizeConfirmed { at } => {
                if let Some(f) = row.pending.take() {
                    let current = &row.periods.last().expect("never empty").flavor;
                    if *current != f {
                        let from = (*at).max(row.periods.last().expect("never empty").from);
                        row.periods.push(FlavorPeriod { from, flavor: f });
                    }
                }
            }
            InstanceEvent::ResizeReverted { .. } | InstanceEvent::StateReset { .. } => {
                row.pending = None;
            }
            InstanceEvent::Deleted { at } => {
                row.pending = None;
                row.terminated_at = Some(*at);
            }
            _ => {}
        }
        Ok(Some(id))
    }

    fn rebuild_indexes(&mut self) {
        self.by_project = self
            .rows
            .iter()
            .map(|(id, r)| (r.project.clone(), *id))
            .collect();
    }
}

/// Usage of one instance inside a window.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceUsage<'a> {
    pub id: InstanceId,
    pub row: &'a UsageRow,
    /// Hours inside the window (Nova's `_hours_for`).
    pub hours: f64,
    pub vcpu_hours: f64,
    pub memory_mb_hours: f64,
    pub local_gb_hours: f64,
    /// The flavor shown for the instance: the one billed at the end of its time in the
    /// window (the last period starting before that end).
    pub flavor: &'a UsageFlavor,
}

/// A window query, as Nova's `instance_get_active_by_window_joined` with pagination.
#[derive(Debug, Clone)]
pub struct UsageQuery<'q> {
    pub start: Timestamp,
    pub stop: Timestamp,
    /// Only this project (`show`).
    pub project: Option<&'q str>,
    /// Results come after this `(project, id)` (the marker instance's sort key).
    pub after: Option<(String, InstanceId)>,
    /// At most this many instances.
    pub limit: usize,
}

/// Hours of `micros` microseconds as Nova computes them (`timedelta.total_seconds() /
/// 3600.0`), so the floats match Nova's to the last bit.
fn hours(micros: i64) -> f64 {
    micros as f64 / 1e6 / 3600.0
}

impl Usage {
    /// An instance's usage row.
    pub fn get(&self, id: &InstanceId) -> Option<&UsageRow> {
        self.rows.get(id)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Instances active in the window (`terminated_at` null or after `start`,
    /// `launched_at` before `stop`), in (project, id) order, after the query's marker,
    /// at most `limit`, with their hours.
    pub fn window(&self, q: &UsageQuery<'_>) -> Vec<InstanceUsage<'_>> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let lower = match (&q.after, q.project) {
            (Some(a), _) => Excluded(a.clone()),
            (None, Some(p)) => Included((p.to_string(), InstanceId(uuid::Uuid::nil()))),
            (None, None) => Unbounded,
        };
        let mut out = Vec::new();
        if q.limit == 0 {
            return out;
        }
        for (project, id) in self.by_project.range((lower, Unbounded)) {
            if q.project.is_some_and(|p| p != project) {
                if q.project.is_some_and(|p| p < project.as_str()) {
                    break;
                }
                continue;
            }
            let Some(row) = self.rows.get(id) else {
                continue;
            };
            let Some(launched) = row.launched_at else {
                continue;
            };
            if launched >= q.stop || row.terminated_at.is_some_and(|t| t <= q.start) {
                continue;
            }
            out.push(hours_for(*id, row, q.start, q.stop));
            if out.len() >= q.limit {
                break;
            }
        }
        out
    }
}

/// Nova's `_hours_for`, split over the row's flavor periods: the instance's time in
/// the window is `[max(launched_at, start), min(terminated_at, stop))`; each period
/// bills its part of it at its flavor's rate, so the per-resource totals are exact
/// and `hours` is their sum of time.
pub fn hours_for(
    id: InstanceId,
    row: &UsageRow,
    start: Timestamp,
    stop: Timestamp,
) -> InstanceUsage<'_> {
    let last = &row.periods.last().expect("never empty").flavor;
    let mut u = InstanceUsage {
        id,
        row,
        hours: 0.0,
        vcpu_hours: 0.0,
        memory_mb_hours: 0.0,
        local_gb_hours: 0.0,
        flavor: last,
    };
    let Some(launched) = row.launched_at else {
        return u;
    };
    if row.terminated_at.is_some_and(|t| t < start) || launched > stop {
        return u;
    }
    let from = launched.max(start);
    let to = row.terminated_at.map_or(stop, |t| t.min(stop));
    for (i, p) in row.periods.iter().enumerate() {
        // The first period covers everything before the second one.
        let p_from = if i == 0 { i64::MIN } else { p.from.0 };
        let p_to = row.periods.get(i + 1).map_or(i64::MAX, |n| n.from.0);
        let (a, b) = (from.0.max(p_from), to.0.min(p_to));
        if b <= a {
            continue;
        }
        let h = hours(b - a);
        u.hours += h;
        u.vcpu_hours += h * f64::from(p.flavor.vcpus);
        u.memory_mb_hours += h * p.flavor.memory_mb as f64;
        u.local_gb_hours += h * p.flavor.local_gb() as f64;
    }
    // The flavor in force at the end of the instance's time in the window.
    u.flavor = row
        .periods
        .iter()
        .enumerate()
        .rfind(|(i, p)| *i == 0 || p.from < to)
        .map_or(last, |(_, p)| &p.flavor);
    u
}

/// One closed audit period of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedPeriod {
    pub ending: Timestamp,
    pub hosts: Vec<domain::audit::HostAudit>,
    /// When it was closed.
    pub at: Timestamp,
}

/// A cell's closed audit periods, by beginning.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CellAudit {
    pub periods: std::collections::BTreeMap<Timestamp, ClosedPeriod>,
}

/// The usage audit read model: `audit.period_closed` facts, one subject per cell
/// (`stratus.cell.<cell>.usage_audit.<cell>`). Invariant: a row is the fold of its own
/// subject; a period closed twice (two processes racing past the dedupe window) keeps
/// the first record.
#[derive(Debug, Clone, Default)]
pub struct UsageAudits {
    rows: Table<eventlog::Subject, crate::model::Row<CellAudit>>,
}

/// The subject of a cell's usage audit.
pub fn audit_subject(cell: &domain::CellName) -> eventlog::Subject {
    eventlog::Subject::cell(
        &eventlog::StreamName::new(cell.as_str()).expect("cell names are stream names"),
        eventlog::SubjectKind::UsageAudit,
        cell.as_str(),
    )
    .expect("tokens are encoded")
}

impl UsageAudits {
    /// A cell's audit row (None: no period closed yet).
    pub fn cell(&self, cell: &domain::CellName) -> Option<&crate::model::Row<CellAudit>> {
        self.rows.get(&audit_subject(cell))
    }

    /// Every cell's record of the period beginning at `begin`.
    pub fn period(&self, begin: Timestamp) -> impl Iterator<Item = &ClosedPeriod> {
        self.rows
            .values()
            .filter_map(move |r| r.state.periods.get(&begin))
    }
}

impl ReadModel for UsageAudits {
    const NAME: &'static str = "usage_audits";
    type Key = eventlog::Subject;
    type Row = crate::model::Row<CellAudit>;

    fn rows(&self) -> &Table<eventlog::Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<eventlog::Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<eventlog::Subject>, Invalid> {
        let Event::UsageAudit(domain::audit::AuditEvent::PeriodClosed {
            period_beginning,
            period_ending,
            hosts,
            at,
            ..
        }) = ev
        else {
            return Ok(None);
        };
        let row = self
            .rows
            .entry(c.subject.clone())
            .or_insert(crate::model::Row {
                state: CellAudit::default(),
                seq: 0,
            });
        row.state
            .periods
            .entry(*period_beginning)
            .or_insert(ClosedPeriod {
                ending: *period_ending,
                hosts: hosts.clone(),
                at: *at,
            });
        row.seq = c.subject_seq;
        Ok(Some(c.subject.clone()))
    }
}
