//! The ledger: one redb file with each instance's usage facts (by project), the
//! message ids of every notification counted, and the consumer's cursor.
//!
//! Tables:
//! - `instances`: instance id -> [`Facts`] (JSON);
//! - `by_project`: (project, instance id) -> (): a project's instances as one range,
//!   in Nova's usage order (`project_id`, `uuid`);
//! - `counted`: message id -> the cursor of the batch that counted it;
//! - `meta`: `cursor` (where the consumer resumes), `seen` (notifications read),
//!   `counted` (billing notifications counted);
//! - `settings`: `rates`, the rate card the subscriber runs with (TOML), the default
//!   of `stratus billing report`.
//!
//! Invariants:
//! - [`Ledger::commit`] is one write transaction (durable on return): the facts it
//!   changes, the ids it counts and the new cursor are written together or not at
//!   all, so a consumer killed at any moment resumes from a cursor that matches the
//!   ledger exactly: nothing counted twice, nothing skipped;
//! - a notification whose message id is already in `counted` changes nothing (a
//!   redelivery, or a page read again after a crash between commit and ack);
//! - the cursor never goes back.

use std::collections::HashMap;
use std::path::Path;

use domain::{InstanceId, Timestamp};
use notifier::Notification;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use crate::fold::{relevant, usage, Facts};
use crate::{BillingError, RateCard};

const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
const BY_PROJECT: TableDefinition<(&str, &str), ()> = TableDefinition::new("by_project");
const COUNTED: TableDefinition<u128, u64> = TableDefinition::new("counted");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");

/// What one commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// Notifications in the batch.
    pub seen: usize,
    /// Billing notifications counted now.
    pub counted: usize,
    /// Billing notifications already counted before (no-ops).
    pub duplicates: usize,
    /// The cursor now stored.
    pub cursor: u64,
}

/// One project's totals over a window (Nova's `tenant_usages` fields, plus the price).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectTotals {
    /// The project.
    pub tenant_id: String,
    /// Instance-hours.
    pub total_hours: f64,
    /// vCPU-hours.
    pub total_vcpus_usage: f64,
    /// RAM-MB-hours.
    pub total_memory_mb_usage: f64,
    /// Disk-GB-hours.
    pub total_local_gb_usage: f64,
    /// Instances active in the window.
    pub instances: usize,
    /// Price of the window's use, by the rate card.
    pub cost: f64,
}

/// Per-project totals over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Window start (microseconds since the epoch).
    pub start: Timestamp,
    /// Window end.
    pub end: Timestamp,
    /// Currency of the costs.
    pub currency: String,
    /// One entry per project with an instance active in the window, by project id.
    pub projects: Vec<ProjectTotals>,
    /// Where the ledger stands (its cursor).
    pub cursor: u64,
    /// Billing notifications counted so far.
    pub counted: u64,
}

/// The ledger file.
#[derive(Debug)]
pub struct Ledger {
    db: Database,
}

fn st(e: impl std::fmt::Display) -> BillingError {
    BillingError::storage(e)
}

impl Ledger {
    /// Opens (or creates) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, BillingError> {
        let db = Database::create(path)
            .map_err(|e| BillingError::Storage(format!("open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(st)?;
        txn.open_table(INSTANCES).map_err(st)?;
        txn.open_table(BY_PROJECT).map_err(st)?;
        txn.open_table(COUNTED).map_err(st)?;
        txn.open_table(META).map_err(st)?;
        txn.open_table(SETTINGS).map_err(st)?;
        txn.commit().map_err(st)?;
        Ok(Ledger { db })
    }

    fn meta(&self, key: &str) -> Result<u64, BillingError> {
        let r = self.db.begin_read().map_err(st)?;
        let t = r.open_table(META).map_err(st)?;
        Ok(t.get(key).map_err(st)?.map_or(0, |v| v.value()))
    }

    /// Where the consumer resumes (0: from the start).
    pub fn cursor(&self) -> Result<u64, BillingError> {
        self.meta("cursor")
    }

    /// Stores the rate card (TOML text, already validated) reports price with.
    pub fn set_rates(&self, toml: &str) -> Result<(), BillingError> {
        let txn = self.db.begin_write().map_err(st)?;
        txn.open_table(SETTINGS)
            .map_err(st)?
            .insert("rates", toml)
            .map_err(st)?;
        txn.commit().map_err(st)
    }

    /// The stored rate card (TOML text), if any.
    pub fn rates(&self) -> Result<Option<String>, BillingError> {
        let r = self.db.begin_read().map_err(st)?;
        let t = r.open_table(SETTINGS).map_err(st)?;
        Ok(t.get("rates").map_err(st)?.map(|v| v.value().to_string()))
    }

    /// Billing notifications counted so far.
    pub fn counted(&self) -> Result<u64, BillingError> {
        self.meta("counted")
    }

    /// Whether the notification `id` has been counted.
    pub fn is_counted(&self, id: uuid::Uuid) -> Result<bool, BillingError> {
        let r = self.db.begin_read().map_err(st)?;
        let t = r.open_table(COUNTED).map_err(st)?;
        Ok(t.get(id.as_u128()).map_err(st)?.is_some())
    }

    /// An instance's facts.
    pub fn facts(&self, id: InstanceId) -> Result<Option<Facts>, BillingError> {
        let r = self.db.begin_read().map_err(st)?;
        let t = r.open_table(INSTANCES).map_err(st)?;
        let key = id.to_string();
        t.get(key.as_str())
            .map_err(st)?
            .map(|v| serde_json::from_slice(v.value()).map_err(st))
            .transpose()
    }

    /// Counts `batch` (read up to `cursor`) in one durable write transaction with the
    /// new cursor. A malformed billing notification fails the whole batch (nothing is
    /// written, the cursor stays): better stopped than wrong.
    pub fn commit(&self, cursor: u64, batch: &[Notification]) -> Result<Committed, BillingError> {
        let mut read = Vec::new();
        for n in batch {
            if let Some(r) = relevant(n)? {
                read.push(r);
            }
        }
        let mut out = Committed {
            seen: batch.len(),
            ..Committed::default()
        };
        let mut txn = self.db.begin_write().map_err(st)?;
        txn.set_durability(Durability::Immediate).map_err(st)?;
        {
            let mut instances = txn.open_table(INSTANCES).map_err(st)?;
            let mut by_project = txn.open_table(BY_PROJECT).map_err(st)?;
            let mut counted = txn.open_table(COUNTED).map_err(st)?;
            let mut meta = txn.open_table(META).map_err(st)?;
            let old = meta.get("cursor").map_err(st)?.map_or(0, |v| v.value());
            out.cursor = old.max(cursor);
            let mut changed: HashMap<InstanceId, Facts> = HashMap::new();
            for r in &read {
                if counted.get(r.message_id.as_u128()).map_err(st)?.is_some() {
                    out.duplicates += 1;
                    continue;
                }
                counted
                    .insert(r.message_id.as_u128(), out.cursor)
                    .map_err(st)?;
                out.counted += 1;
                let facts = match changed.entry(r.instance) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let key = r.instance.to_string();
                        let f = instances
                            .get(key.as_str())
                            .map_err(st)?
                            .map(|v| serde_json::from_slice::<Facts>(v.value()).map_err(st))
                            .transpose()?
                            .unwrap_or_default();
                        e.insert(f)
                    }
                };
                facts.apply(r);
            }
            for (id, f) in &changed {
                let key = id.to_string();
                let json = serde_json::to_vec(f).map_err(st)?;
                instances
                    .insert(key.as_str(), json.as_slice())
                    .map_err(st)?;
                by_project
                    .insert((f.project.as_str(), key.as_str()), ())
                    .map_err(st)?;
            }
            let seen = meta.get("seen").map_err(st)?.map_or(0, |v| v.value());
            let total = meta.get("counted").map_err(st)?.map_or(0, |v| v.value());
            meta.insert("cursor", out.cursor).map_err(st)?;
            meta.insert("seen", seen + batch.len() as u64).map_err(st)?;
            meta.insert("counted", total + out.counted as u64)
                .map_err(st)?;
        }
        txn.commit().map_err(st)?;
        Ok(out)
    }

    /// Per-project totals over `[start, end)` (only `project` if given), exactly as
    /// os-simple-tenant-usage computes them: the same instances (launched before `end`,
    /// not terminated by `start`), summed in its order, priced by `rates`.
    pub fn report(
        &self,
        start: Timestamp,
        end: Timestamp,
        project: Option<&str>,
        rates: &RateCard,
    ) -> Result<Report, BillingError> {
        let r = self.db.begin_read().map_err(st)?;
        let instances = r.open_table(INSTANCES).map_err(st)?;
        let by_project = r.open_table(BY_PROJECT).map_err(st)?;
        let meta = r.open_table(META).map_err(st)?;
        let mut projects: Vec<ProjectTotals> = Vec::new();
        let rows = match project {
            Some(p) => by_project.range((p, "")..).map_err(st)?,
            None => by_project.iter().map_err(st)?,
        };
        for row in rows {
            let (k, _) = row.map_err(st)?;
            let (p, id) = k.value();
            if project.is_some_and(|want| want != p) {
                break;
            }
            let Some(v) = instances.get(id).map_err(st)? else {
                continue;
            };
            let facts: Facts = serde_json::from_slice(v.value()).map_err(st)?;
            let Some(usage_row) = facts.row() else {
                continue;
            };
            let iid = InstanceId::parse(id).ok_or_else(|| st(format!("bad instance id {id}")))?;
            let Some(u) = usage(iid, &usage_row, start, end) else {
                continue;
            };
            if projects.last().is_none_or(|t| t.tenant_id != p) {
                projects.push(ProjectTotals {
                    tenant_id: p.to_string(),
                    total_hours: 0.0,
                    total_vcpus_usage: 0.0,
                    total_memory_mb_usage: 0.0,
                    total_local_gb_usage: 0.0,
                    instances: 0,
                    cost: 0.0,
                });
            }
            let t = projects.last_mut().expect("pushed");
            t.total_local_gb_usage += u.local_gb_hours;
            t.total_vcpus_usage += u.vcpu_hours;
            t.total_memory_mb_usage += u.memory_mb_hours;
            t.total_hours += u.hours;
            t.instances += 1;
            t.cost += u
                .by_flavor
                .iter()
                .fold(0.0, |s, (f, h)| s + rates.price(f, *h));
        }
        let get = |k: &str| -> Result<u64, BillingError> {
            Ok(meta.get(k).map_err(st)?.map_or(0, |v| v.value()))
        };
        Ok(Report {
            start,
            end,
            currency: rates.currency.clone(),
            projects,
            cursor: get("cursor")?,
            counted: get("counted")?,
        })
    }
}
