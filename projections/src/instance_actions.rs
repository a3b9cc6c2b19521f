//! Nova's instance actions (os-instance-actions) as a read model of the log.
//!
//! An *action* is what a user (or a periodic task) asked of a server: it starts with the
//! commit of the request (`meta.correlation_id` is its `request_id`, `meta.actor` its
//! user and project, `meta.occurred_at` its `start_time`). Its *events* are the steps
//! Nova's conductor and compute manager record with `@wrap_instance_event`
//! (`conductor_schedule_and_build_instances`, `compute_pause_instance`, ...): each starts
//! with the commit that hands the step to a service and finishes with the commit of the
//! reactor that answers it (`Success`), or with `instance.task_failed` /
//! `instance.spawn_failed` / cell0's `instance.build_failed` (`Error`, the fault's
//! details as `traceback` and its message as `details`, and the action's `message`
//! becomes `Error`, as Nova's `action_event_finish` sets it). Which event each action
//! records is [`first_event`] and [`next_event`] (documented in docs/ARCHITECTURE.md,
//! "Instance actions").
//!
//! Invariants:
//! - A row is kept for every instance that ever had an event, deleted or not (Nova lists
//!   a deleted server's actions from 2.21).
//! - An instance lives on two subjects of two streams (its build request on the api
//!   stream, then its cell subject), so a row keeps one [`ActionsPart`] per side, each a
//!   function of its own stream's commits only; [`ActionsRow::actions`] combines them
//!   when read. Only `create` spans both: its cell-side steps are folded as
//!   `create_events` of the cell part and laid over the api part's create action by
//!   event name (as Nova's `action_event_finish` finds an event by name).
//! - Within a part, at most one event is open: the one of the operation in progress
//!   (the instance has one `op` at a time); completions close it.

use std::fmt;

use domain::instance::{Action, InstanceEvent};
use domain::{Event, HostName, InstanceId, Timestamp};
use eventlog::Commit;
use serde::{Deserialize, Serialize};

use crate::model::{Invalid, ReadModel, Table};

/// How an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventResult {
    /// `Success`
    Success,
    /// `Error`
    Error,
}

impl EventResult {
    /// Nova's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventResult::Success => "Success",
            EventResult::Error => "Error",
        }
    }
}

/// One step of an action (Nova's `InstanceActionEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionEvent {
    /// Nova's event name (`compute_stop_instance`).
    pub event: String,
    /// When the step was handed over.
    pub start_time: Timestamp,
    /// When it was answered (None while in progress).
    pub finish_time: Option<Timestamp>,
    /// None while in progress.
    pub result: Option<EventResult>,
    /// The fault's details on failure (admins only).
    pub traceback: Option<String>,
    /// The host that performs the step (None: no host, e.g. the conductor's steps).
    pub host: Option<HostName>,
    /// The fault's message on failure (2.84, admins only).
    pub details: Option<String>,
}

impl ActionEvent {
    fn new(event: &str, at: Timestamp, host: Option<HostName>) -> Self {
        ActionEvent {
            event: event.to_string(),
            start_time: at,
            finish_time: None,
            result: None,
            traceback: None,
            host,
            details: None,
        }
    }
}

/// One action (Nova's `InstanceAction`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceAction {
    /// Nova's action name (`create`, `live-migration`, ...).
    pub action: String,
    /// The request id that started it (`req-<uuid>`).
    pub request_id: String,
    /// Who asked (None when a periodic task started it, as in Nova).
    pub user_id: Option<String>,
    /// Their project (None for a periodic task).
    pub project_id: Option<String>,
    /// When it started.
    pub start_time: Timestamp,
    /// Last change: its start, or the last start or finish of one of its events.
    pub updated_at: Timestamp,
    /// `Error` once one of its events failed.
    pub message: Option<String>,
    /// Its events, oldest first.
    pub events: Vec<ActionEvent>,
}

/// Which event of a part is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Open {
    /// Event `.1` of the part's action `.0`.
    Action(usize, usize),
    /// Entry `.0` of the part's `create_events` (the cell side of `create`).
    Create(usize),
}

/// What one stream folded for one instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ActionsPart {
    /// Actions started by this stream's commits, oldest first.
    pub actions: Vec<InstanceAction>,
    /// Events of the create action folded from a cell stream (laid over the api part's
    /// create action by name).
    pub create_events: Vec<ActionEvent>,
    /// The event in progress.
    pub open: Option<Open>,
    /// Where the instance runs now (the host of compute steps).
    pub host: Option<HostName>,
    /// Source of the migration in progress or last made.
    pub source: Option<HostName>,
    /// Destination of the migration or unshelve in progress.
    pub dest: Option<HostName>,
    /// Shelved and offloaded (unshelve then goes through the conductor first).
    pub offloaded: bool,
    /// Last subject sequence folded (0: nothing from this side).
    pub seq: u64,
}

/// An instance's actions: its api-stream part and its cell-stream part.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ActionsRow {
    /// From the build request's subject.
    pub api: ActionsPart,
    /// From the cell subject.
    pub cell: ActionsPart,
}

impl ActionsRow {
    /// Every action, as Nova lists them: newest first (start time, then the order the
    /// log recorded them).
    pub fn actions(&self) -> Vec<InstanceAction> {
        let mut all: Vec<InstanceAction> = self.api.actions.clone();
        if let Some(create) = all.iter_mut().find(|a| a.action == "create") {
            for patch in &self.cell.create_events {
                overlay(create, patch);
            }
        }
        all.extend(self.cell.actions.iter().cloned());
        // Stable: equal start times keep api-then-cell, log order.
        all.sort_by_key(|a| a.start_time);
        all.reverse();
        all
    }

    /// The newest action of that name.
    pub fn action_named(&self, name: &str) -> Option<InstanceAction> {
        self.actions().into_iter().find(|a| a.action == name)
    }

    /// The action started by `request_id` (the newest, if several).
    pub fn action(&self, request_id: &str) -> Option<InstanceAction> {
        self.actions()
            .into_iter()
            .find(|a| a.request_id == request_id)
    }
}

/// Lays a cell-side event of `create` over the api side's action: the event of the same
/// name takes every field the cell side knows; a new one is appended.
fn overlay(action: &mut InstanceAction, patch: &ActionEvent) {
    match action.events.iter_mut().find(|e| e.event == patch.event) {
        Some(e) => {
            if patch.finish_time.is_some() {
                e.finish_time = patch.finish_time;
                e.result = patch.result;
                e.traceback = patch.traceback.clone();
                e.details = patch.details.clone();
            }
            if patch.host.is_some() {
                e.host = patch.host.clone();
            }
        }
        None => action.events.push(patch.clone()),
    }
    let last = patch.finish_time.unwrap_or(patch.start_time);
    action.updated_at = action.updated_at.max(last);
    if patch.result == Some(EventResult::Error) {
        action.message = Some("Error".into());
    }
}

/// The event an action's first step records (Nova's `@wrap_instance_event` names), or
/// None for actions the API completes itself (lock, unlock, resetState).
pub fn first_event(action: Action, offloaded: bool) -> Option<&'static str> {
    Some(match action {
        Action::Create => "conductor_schedule_and_build_instances",
        Action::Delete => "compute_terminate_instance",
        Action::Stop => "compute_stop_instance",
        Action::Start => "compute_start_instance",
        Action::Pause => "compute_pause_instance",
        Action::Unpause => "compute_unpause_instance",
        Action::Suspend => "compute_suspend_instance",
        Action::Resume => "compute_resume_instance",
        Action::Reboot | Action::RebootHard => "compute_reboot_instance",
        Action::Shelve => "compute_shelve_instance",
        Action::ShelveOffload => "compute_shelve_offload_instance",
        Action::Unshelve if offloaded => "conductor_unshelve_instance",
        Action::Unshelve => "compute_unshelve_instance",
        Action::Resize | Action::Migrate => "conductor_migrate_server",
        Action::LiveMigration => "conductor_live_migrate_instance",
        Action::ConfirmResize => "compute_confirm_resize",
        Action::RevertResize => "compute_revert_resize",
        Action::Rebuild => "compute_rebuild_instance",
        Action::ChangePassword => "compute_set_admin_password",
        Action::CreateImage => "compute_snapshot_instance",
        Action::CreateBackup => "compute_backup_instance",
        Action::Rescue => "compute_rescue_instance",
        Action::Unrescue => "compute_unrescue_instance",
        Action::Restore => "compute_restore_instance",
        Action::ForceDelete => "compute_terminate_instance",
        Action::SoftDelete => "compute_soft_delete_instance",
        Action::Evacuate => "conductor_rebuild_instance",
        Action::Lock
        | Action::Unlock
        | Action::ResetState
        | Action::Update
        | Action::UpdateMetadata
        | Action::DeleteMetadata
        | Action::TriggerCrashDump => return None,
    })
}

/// The event that follows the conductor's step once a destination is scheduled.
pub fn next_event(action: Action) -> Option<&'static str> {
    match action {
        Action::Resize | Action::Migrate => Some("compute_finish_resize"),
        Action::LiveMigration => Some("compute_live_migration"),
        Action::Unshelve => Some("compute_unshelve_instance"),
        Action::Evacuate => Some("compute_rebuild_instance"),
        _ => None,
    }
}

/// Nova's action name of a recorded action (the reverse of [`Action::action_name`] for
/// the actions with a second step).
fn action_of(name: &str) -> Option<Action> {
    Some(match name {
        "resize" => Action::Resize,
        "migrate" => Action::Migrate,
        "live-migration" => Action::LiveMigration,
        "unshelve" => Action::Unshelve,
        "evacuate" => Action::Evacuate,
        _ => return None,
    })
}

impl ActionsPart {
    fn start(&mut self, c: &Commit, name: &str, event: Option<(&str, Option<HostName>)>) {
        let at = Timestamp(c.meta.occurred_at);
        // Work started by a service (a periodic task) has no user, as in Nova.
        let service = c.meta.actor.roles.iter().any(|r| r == "service");
        let who = |s: &String| (!service && !s.is_empty()).then(|| s.clone());
        let mut action = InstanceAction {
            action: name.to_string(),
            request_id: c.meta.correlation_id.clone(),
            user_id: who(&c.meta.actor.user),
            project_id: who(&c.meta.actor.project),
            start_time: at,
            updated_at: at,
            message: None,
            events: Vec::new(),
        };
        self.open = None;
        if let Some((e, host)) = event {
            action.events.push(ActionEvent::new(e, at, host));
            self.open = Some(Open::Action(self.actions.len(), 0));
        }
        self.actions.push(action);
    }

    fn open_event(&mut self) -> Option<&mut ActionEvent> {
        match self.open? {
            Open::Action(a, e) => self.actions.get_mut(a)?.events.get_mut(e),
            Open::Create(i) => self.create_events.get_mut(i),
        }
    }

    /// The action of the open event (None for the cell side of create).
    fn open_action(&self) -> Option<&InstanceAction> {
        match self.open? {
            Open::Action(a, _) => self.actions.get(a),
            Open::Create(_) => None,
        }
    }

    /// Ends the open event.
    fn close(
        &mut self,
        at: Timestamp,
        result: EventResult,
        fault: Option<&domain::instance::Fault>,
    ) {
        let open = self.open.take();
        let Some(ev) = (match open {
            Some(Open::Action(a, e)) => self.actions.get_mut(a).and_then(|x| x.events.get_mut(e)),
            Some(Open::Create(i)) => self.create_events.get_mut(i),
            None => None,
        }) else {
            return;
        };
        ev.finish_time = Some(at);
        ev.result = Some(result);
        if let Some(f) = fault {
            ev.traceback = Some(f.details.clone());
            ev.details = Some(f.message.clone());
        }
        if let Some(Open::Action(a, _)) = open {
            if let Some(action) = self.actions.get_mut(a) {
                action.updated_at = action.updated_at.max(at);
                if result == EventResult::Error {
                    action.message = Some("Error".into());
                }
            }
        }
    }

    /// Opens the next event of the open action (a second step).
    fn open_next(&mut self, name: &str, at: Timestamp, host: Option<HostName>) {
        if let Some(Open::Action(a, _)) = self.open {
            if let Some(action) = self.actions.get_mut(a) {
                action.events.push(ActionEvent::new(name, at, host));
                action.updated_at = action.updated_at.max(at);
                self.open = Some(Open::Action(a, action.events.len() - 1));
            }
        }
    }

    fn apply(&mut self, c: &Commit, e: &InstanceEvent) {
        use InstanceEvent as E;
        let at = Timestamp(c.meta.occurred_at);
        self.seq = c.subject_seq;
        match e {
            E::BuildRequested { .. } => {
                self.start(
                    c,
                    Action::Create.action_name(),
                    first_event(Action::Create, false).map(|n| (n, None)),
                );
            }
            E::Mapped { host, .. } => {
                // NoValidHost: the conductor's step ends with cell0's build_failed.
                if let Some((h, _)) = host {
                    self.host = Some(h.clone());
                    self.close(at, EventResult::Success, None);
                }
            }
            E::Placed { snapshot, .. } => {
                self.host = snapshot.host.clone();
                self.create_events.push(ActionEvent::new(
                    "compute__do_build_and_run_instance",
                    at,
                    snapshot.host.clone(),
                ));
                self.open = Some(Open::Create(self.create_events.len() - 1));
            }
            E::BuildFailed { snapshot, .. } => {
                let mut ev = ActionEvent::new("conductor_schedule_and_build_instances", at, None);
                ev.finish_time = Some(at);
                ev.result = Some(EventResult::Error);
                if let Some(f) = &snapshot.fault {
                    ev.traceback = Some(f.details.clone());
                    ev.details = Some(f.message.clone());
                }
                self.create_events.push(ev);
                self.open = None;
            }
            E::Spawned { .. }
            | E::ActionCompleted { .. }
            | E::ResizeFinished { .. }
            | E::Rebuilt { .. } => self.close(at, EventResult::Success, None),
            E::SpawnFailed { fault, .. } | E::TaskFailed { fault, .. } => {
                self.close(at, EventResult::Error, Some(fault))
            }
            E::TaskStarted { action, .. } | E::SnapshotStarted { action, .. } => {
                let host = self.host.clone();
                let ev = first_event(*action, self.offloaded).map(|n| (n, host));
                self.start(c, action.action_name(), ev);
            }
            E::MigrationStarted {
                action, migration, ..
            } => {
                self.source = Some(migration.source_host.clone());
                self.dest = None;
                let ev = first_event(*action, false).map(|n| (n, None));
                self.start(c, action.action_name(), ev);
            }
            E::RebuildStarted { .. } => {
                let ev = first_event(Action::Rebuild, false).map(|n| (n, self.host.clone()));
                self.start(c, Action::Rebuild.action_name(), ev);
            }
            E::RescueStarted { .. } => {
                let host = self.host.clone();
                let ev = first_event(Action::Rescue, self.offloaded).map(|n| (n, host));
                self.start(c, Action::Rescue.action_name(), ev);
            }
            // Done by the API's cast; no compute step is recorded (nothing answers).
            E::CrashDumpTriggered { .. } => {
                self.start(c, Action::TriggerCrashDump.action_name(), None);
            }
            // Only a SHELVED_OFFLOADED server unshelves to a zone or host: scheduled.
            E::UnshelveStarted { .. } => {
                let ev = first_event(Action::Unshelve, true).map(|n| (n, None));
                self.start(c, Action::Unshelve.action_name(), ev);
            }
            E::DestinationScheduled { host, .. } => {
                self.dest = Some(host.clone());
                let idx = match self.open {
                    Some(Open::Action(a, _)) => Some(a),
                    _ => None,
                };
                let next = idx
                    .and_then(|a| self.actions.get(a))
                    .and_then(|a| action_of(&a.action))
                    .and_then(next_event);
                self.close(at, EventResult::Success, None);
                if let (Some(a), Some(name)) = (idx, next) {
                    // Live migration runs on the source; the others on the destination.
                    let runs_on = if name == "compute_live_migration" {
                        self.host.clone()
                    } else {
                        Some(host.clone())
                    };
                    self.open = Some(Open::Action(a, 0));
                    self.open_next(name, at, runs_on);
                }
            }
            E::Shelved { offload, .. } => {
                // With shelved_offload_time 0 the same step goes on to offload.
                if !offload {
                    self.close(at, EventResult::Success, None);
                }
            }
            E::Offloaded { .. } => {
                self.offloaded = true;
                self.host = None;
                if self.open_event().is_some() {
                    self.close(at, EventResult::Success, None);
                } else {
                    self.start(c, Action::ShelveOffload.action_name(), None);
                }
            }
            E::Unshelved { .. } => {
                self.offloaded = false;
                if let Some(d) = self.dest.take() {
                    self.host = Some(d);
                }
                self.close(at, EventResult::Success, None);
            }
            E::ResizeConfirmed { .. } => {
                let host = self.source.clone();
                self.start(
                    c,
                    Action::ConfirmResize.action_name(),
                    Some(("compute_confirm_resize", host)),
                );
                self.close(at, EventResult::Success, None);
            }
            E::ResizeReverted { .. } => {
                if let Some(s) = self.source.clone() {
                    self.host = Some(s);
                }
                self.close(at, EventResult::Success, None);
            }
            // The conductor schedules, the destination's compute rebuilds.
            E::EvacuationStarted { migration, .. } => {
                self.source = Some(migration.source_host.clone());
                self.dest = None;
                let ev = first_event(Action::Evacuate, false).map(|n| (n, None));
                self.start(c, Action::Evacuate.action_name(), ev);
            }
            E::LiveMigrated { .. } | E::Evacuated { .. } => {
                if let Some(d) = self.dest.take() {
                    self.host = Some(d);
                }
                self.close(at, EventResult::Success, None);
            }
            E::Locked { .. } => self.start(c, Action::Lock.action_name(), None),
            E::Unlocked { .. } => self.start(c, Action::Unlock.action_name(), None),
            E::StateReset { .. } => self.start(c, Action::ResetState.action_name(), None),
            E::Deleted { .. } => {
                let deleting = self
                    .open_action()
                    .is_some_and(|a| a.action == Action::Delete.action_name());
                if deleting {
                    self.close(at, EventResult::Success, None);
                } else {
                    self.start(c, Action::Delete.action_name(), None);
                }
            }
            E::Updated { .. }
            | E::MetadataUpdated { .. }
            | E::TagsSet { .. }
            | E::DiskConfigSet { .. }
            | E::SecurityGroupsRequested { .. }
            | E::PowerStateChanged { .. }
            | E::AccessUpdated { .. }
            | E::TaskRetried { .. }
            | E::BootDetailsRecorded { .. }
            | E::CreateExtrasRecorded { .. }
            | E::TaskAdvanced { .. } => {}
        }
    }
}

/// Instance actions by instance id.
#[derive(Debug, Clone, Default)]
pub struct InstanceActions {
    rows: Table<InstanceId, ActionsRow>,
}

impl InstanceActions {
    /// An instance's actions.
    pub fn of(&self, id: &InstanceId) -> Option<&ActionsRow> {
        self.rows.get(id)
    }
}

impl fmt::Display for EventResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ReadModel for InstanceActions {
    const NAME: &'static str = "instance_actions";
    type Key = InstanceId;
    type Row = ActionsRow;

    fn rows(&self) -> &Table<InstanceId, ActionsRow> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<InstanceId, ActionsRow> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<InstanceId>, Invalid> {
        let Event::Instance(e) = ev else {
            return Ok(None);
        };
        let id = InstanceId::parse(c.subject.id_token()).ok_or(Invalid)?;
        let row = self.rows.entry(id).or_default();
        if c.stream.as_str() == "api" {
            row.api.apply(c, e);
        } else {
            row.cell.apply(c, e);
        }
        Ok(Some(id))
    }

    /// Each side keeps what its own stream folded (see the module invariants).
    fn merge(&mut self, other: Self) {
        for (id, o) in other.rows {
            let row = self.rows.entry(id).or_default();
            if o.api.seq > 0 {
                row.api = o.api;
            }
            if o.cell.seq > 0 {
                row.cell = o.cell;
            }
        }
    }
}
