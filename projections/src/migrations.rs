//! Nova's migration records (os-migrations, `/servers/{id}/migrations`) as a read model
//! of the log.
//!
//! A *migration* starts with `instance.migration_started` (resize, cold migration, live
//! migration) and follows the instance's answers: the destination claimed, the resize
//! finished, confirmed or reverted, the live migration done, or the operation failed.
//! Its status walks Nova's values for its kind:
//!
//! | kind | started | destination scheduled | finished | ends |
//! |---|---|---|---|---|
//! | resize / migration | `pre-migrating` | `migrating` | `finished` | `confirmed`, `reverted`, `error` |
//! | live-migration | `accepted` | `running` | | `completed`, `error` |
//! | evacuation | `accepted` | `pre-migrating` | | `done`, `failed` (compute), `error` (no host) |
//!
//! Nothing new is appended: the records are a function of the instance commits. The
//! integer `id` Nova shows is the position of the `migration_started` commit in its cell
//! stream (unique within a cell, increasing like Nova's autoincrement).
//!
//! Invariants:
//! - One row per instance that ever migrated, keyed by instance; its migrations in the
//!   order they started. Only cell streams carry migrations, so the default `merge`
//!   (other side wins) is right.
//! - A deleted instance's migrations are hidden (`deleted`), as Nova soft-deletes them
//!   with the instance.
//! - A `state_reset` or a delete during a migration leaves the record's status where it
//!   was, as Nova leaves the migration row alone.

use domain::instance::{InstanceEvent, MigrationKind};
use domain::{Event, FlavorId, HostName, InstanceId, MigrationId, Timestamp};
use eventlog::Commit;
use serde::{Deserialize, Serialize};

use crate::model::{Invalid, ReadModel, Table};

/// One migration (Nova's `Migration` object, what the API shows of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// Nova's integer id: the cell-stream position of `migration_started`.
    pub id: u64,
    /// 2.59 `uuid`.
    pub uuid: MigrationId,
    /// resize, migration or live-migration.
    pub kind: MigrationKind,
    /// Nova's status string (see the module table).
    pub status: String,
    /// Source compute host.
    pub source_compute: HostName,
    /// Destination, once scheduled.
    pub dest_compute: Option<HostName>,
    /// Flavor before.
    pub old_flavor: FlavorId,
    /// Flavor after.
    pub new_flavor: FlavorId,
    /// Who started it (2.80; None when a service did).
    pub user_id: Option<String>,
    /// Their project (2.80).
    pub project_id: Option<String>,
    /// When it started.
    pub created_at: Timestamp,
    /// Its last change.
    pub updated_at: Timestamp,
}

impl MigrationRecord {
    /// Nova's `migration_type`.
    pub fn migration_type(&self) -> &'static str {
        match self.kind {
            MigrationKind::Resize => "resize",
            MigrationKind::Migration => "migration",
            MigrationKind::LiveMigration => "live-migration",
            MigrationKind::Evacuation { .. } => "evacuation",
        }
    }

    /// Whether it is still going on (Nova's in-progress statuses).
    pub fn in_progress(&self) -> bool {
        matches!(
            self.status.as_str(),
            "accepted" | "queued" | "preparing" | "running" | "pre-migrating" | "migrating"
        )
    }
}

/// The migrations of one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationsRow {
    /// In the order they started.
    pub migrations: Vec<MigrationRecord>,
    /// The instance is deleted (its migrations are hidden).
    pub deleted: bool,
}

impl MigrationsRow {
    fn current(&mut self) -> Option<&mut MigrationRecord> {
        self.migrations.last_mut()
    }

    /// Moves the current migration to `status` if it is still in progress.
    fn advance(&mut self, status: &str, at: Timestamp) {
        if let Some(m) = self
            .current()
            .filter(|m| m.in_progress() || m.status == "finished")
        {
            m.status = status.to_string();
            m.updated_at = at;
        }
    }

    fn apply(&mut self, c: &Commit, e: &InstanceEvent) {
        use InstanceEvent as E;
        let at = Timestamp(c.meta.occurred_at);
        match e {
            E::MigrationStarted { migration, .. } | E::EvacuationStarted { migration, .. } => {
                let service = c.meta.actor.roles.iter().any(|r| r == "service");
                let who = |s: &String| (!service && !s.is_empty()).then(|| s.clone());
                let status = match migration.kind {
                    MigrationKind::LiveMigration | MigrationKind::Evacuation { .. } => "accepted",
                    _ => "pre-migrating",
                };
                self.migrations.push(MigrationRecord {
                    id: c.stream_seq,
                    uuid: migration.id,
                    kind: migration.kind,
                    status: status.to_string(),
                    source_compute: migration.source_host.clone(),
                    // Nova records an evacuation's requested host at once.
                    dest_compute: migration.dest_host.clone().or_else(|| {
                        migration
                            .requested_host
                            .clone()
                            .filter(|_| migration.kind.is_evacuation())
                    }),
                    old_flavor: migration.old_flavor.spec.id.clone(),
                    new_flavor: migration.new_flavor.spec.id.clone(),
                    user_id: who(&c.meta.actor.user),
                    project_id: who(&c.meta.actor.project),
                    created_at: at,
                    updated_at: at,
                });
            }
            E::DestinationScheduled { host, .. } => {
                if let Some(m) = self.current().filter(|m| m.in_progress()) {
                    m.dest_compute = Some(host.clone());
                    m.status = match m.kind {
                        MigrationKind::LiveMigration => "running",
                        MigrationKind::Evacuation { .. } => "pre-migrating",
                        _ => "migrating",
                    }
                    .to_string();
                    m.updated_at = at;
                }
            }
            E::ResizeFinished { .. } => self.advance("finished", at),
            E::ResizeConfirmed { .. } => self.advance("confirmed", at),
            E::ResizeReverted { .. } => self.advance("reverted", at),
            E::LiveMigrated { .. } => self.advance("completed", at),
            E::Evacuated { .. } => self.advance("done", at),
            E::TaskFailed { .. } => {
                if let Some(m) = self.current().filter(|m| m.in_progress()) {
                    // An evacuation the destination's compute failed is `failed`
                    // (Nova's `rebuild_instance`); without a destination, `error`.
                    let failed = m.kind.is_evacuation() && m.status == "pre-migrating";
                    m.status = if failed { "failed" } else { "error" }.to_string();
                    m.updated_at = at;
                }
            }
            E::Deleted { .. } => self.deleted = true,
            _ => {}
        }
    }
}

/// The `migrations` read model.
#[derive(Debug, Clone, Default)]
pub struct Migrations {
    rows: Table<InstanceId, MigrationsRow>,
}

impl Migrations {
    /// The instance's migrations (deleted instances' too; callers check `deleted`).
    pub fn of(&self, id: &InstanceId) -> Option<&MigrationsRow> {
        self.rows.get(id)
    }

    /// Every instance's migrations.
    pub fn iter(&self) -> impl Iterator<Item = (&InstanceId, &MigrationsRow)> {
        self.rows.iter()
    }
}

impl ReadModel for Migrations {
    const NAME: &'static str = "migrations";
    type Key = InstanceId;
    type Row = MigrationsRow;

    fn rows(&self) -> &Table<InstanceId, MigrationsRow> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<InstanceId, MigrationsRow> {
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
        // Only instances that migrated get a row.
        if !matches!(
            e,
            InstanceEvent::MigrationStarted { .. } | InstanceEvent::EvacuationStarted { .. }
        ) && !self.rows.contains_key(&id)
        {
            return Ok(None);
        }
        self.rows.entry(id).or_default().apply(c, e);
        Ok(Some(id))
    }
}
