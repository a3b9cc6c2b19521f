//! The server actions' state rules as data: Nova's `@check_instance_lock`,
//! `@check_instance_state(vm_state, task_state, must_have_launched)` and
//! `@check_instance_host` decorators (nova/compute/api.py), one [`Rule`] per action.
//!
//! Invariants:
//! - [`RULES`] has exactly one row per [`Action`] it names, and every row agrees with
//!   the reference table in `domain/tests/reference/nova-state-actions.txt` on the allowed
//!   vm_states, the task_state requirement, the lock check and `must_have_launched`
//!   (checked by `domain/tests/instance_actions.rs`).
//! - [`Rule::check`] tests in Nova's order: the lock (non-admins only), the vm_state,
//!   the task_state, `launched_at`, then the host; the first failure is the refusal.
//! - What is not a decorator in Nova (resize's flavor checks, migrate's same-host check,
//!   unshelve's availability zone, ...) is not here: `decide` does it after the rule.

use crate::instance::{Action, Instance, MigrationKind};
use crate::states::{PowerState, TaskState, VmState};
use crate::{Ctx, DomainError};

/// Which task_states an action tolerates (Nova's `task_state=` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskReq {
    /// No task in progress (Nova's default `task_state=(None,)`).
    Idle,
    /// Any task, or none (Nova's `task_state=None`).
    Any,
    /// One of these (`None` in the list = idle), e.g. [`ALLOW_REBOOT`].
    OneOf(&'static [Option<TaskState>]),
}

impl TaskReq {
    /// Whether an instance in task_state `t` may take the action.
    pub fn allows(self, t: Option<TaskState>) -> bool {
        match self {
            TaskReq::Idle => t.is_none(),
            TaskReq::Any => true,
            TaskReq::OneOf(list) => list.contains(&t),
        }
    }
}

/// Nova's `ALLOW_REBOOT` (a hard reboot may interrupt these), restricted to the task
/// states Stratus has.
pub const ALLOW_REBOOT: &[Option<TaskState>] = &[
    None,
    Some(TaskState::Rebooting),
    Some(TaskState::RebootingHard),
    Some(TaskState::Resuming),
    Some(TaskState::Unpausing),
    Some(TaskState::Pausing),
    Some(TaskState::Suspending),
];

/// What an accepted action records: the shape of its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `instance.task_started` with this task_state; the compute agent on the instance's
    /// host performs it and answers `Complete` / `Fail`.
    StartTask(TaskState),
    /// `instance.migration_started` of this kind (the migration record keeps the source,
    /// the flavors and the prior states); the scheduler picks the destination first.
    StartMigration(MigrationKind),
    /// `instance.resize_confirmed`: done at once, no task.
    ConfirmResize,
    /// The command's own start event (it carries the request's data, e.g.
    /// `instance.rebuild_started`) setting this task_state.
    StartTaskWithRequest(TaskState),
    /// The command's own event, no task: a change the API makes at once
    /// (`instance.metadata_updated`).
    Record,
}

impl Effect {
    /// The task_state the action starts, if any.
    pub fn task(self) -> Option<TaskState> {
        match self {
            Effect::StartTask(t) | Effect::StartTaskWithRequest(t) => Some(t),
            Effect::StartMigration(MigrationKind::LiveMigration) => Some(TaskState::Migrating),
            Effect::StartMigration(_) => Some(TaskState::ResizePrep),
            Effect::ConfirmResize | Effect::Record => None,
        }
    }
}

/// One action's rule: Nova's decorators plus what the action starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The action (its `api_name` is the name in the 409 message).
    pub action: Action,
    /// Allowed vm_states; `None` = any.
    pub vm_states: Option<&'static [VmState]>,
    /// Required task_state.
    pub task: TaskReq,
    /// `@check_instance_lock`: a locked instance refuses non-admins.
    pub lock: bool,
    /// `launched_at` must be set (the server booted once).
    pub must_have_launched: bool,
    /// `@check_instance_host`: the instance must have a host (else "not ready").
    pub needs_host: bool,
    /// What it records when allowed.
    pub effect: Effect,
}

const fn row(
    action: Action,
    vm_states: &'static [VmState],
    needs_host: bool,
    effect: Effect,
) -> Rule {
    Rule {
        action,
        vm_states: Some(vm_states),
        task: TaskReq::Idle,
        lock: true,
        must_have_launched: true,
        needs_host,
        effect,
    }
}

use Effect::{StartMigration as Migration, StartTask as Task};
use VmState as V;

/// Every action that Nova guards with `check_instance_state`, one row each.
pub const RULES: &[Rule] = &[
    row(Action::Pause, &[V::Active], false, Task(TaskState::Pausing)),
    row(
        Action::ChangePassword,
        &[V::Active],
        false,
        Task(TaskState::UpdatingPassword),
    ),
    row(
        Action::Unpause,
        &[V::Paused],
        false,
        Task(TaskState::Unpausing),
    ),
    row(
        Action::Suspend,
        &[V::Active],
        false,
        Task(TaskState::Suspending),
    ),
    row(
        Action::Resume,
        &[V::Suspended],
        false,
        Task(TaskState::Resuming),
    ),
    row(
        Action::Stop,
        &[V::Active, V::Error],
        true,
        Task(TaskState::PoweringOff),
    ),
    row(
        Action::Start,
        &[V::Stopped],
        true,
        Task(TaskState::PoweringOn),
    ),
    row(
        Action::Reboot,
        &[V::Active],
        false,
        Task(TaskState::Rebooting),
    ),
    Rule {
        task: TaskReq::OneOf(ALLOW_REBOOT),
        ..row(
            Action::RebootHard,
            &[V::Active, V::Stopped, V::Paused, V::Suspended, V::Error],
            true,
            Task(TaskState::RebootingHard),
        )
    },
    row(
        Action::Shelve,
        &[V::Active, V::Stopped, V::Paused, V::Suspended],
        true,
        Task(TaskState::Shelving),
    ),
    // Without a host (shelved, then the host was lost) `decide` offloads at once.
    row(
        Action::ShelveOffload,
        &[V::Shelved],
        false,
        Task(TaskState::ShelvingOffloading),
    ),
    row(
        Action::Unshelve,
        &[V::Shelved, V::ShelvedOffloaded],
        false,
        Task(TaskState::Unshelving),
    ),
    row(
        Action::Resize,
        &[V::Active, V::Stopped],
        true,
        Migration(MigrationKind::Resize),
    ),
    row(
        Action::Migrate,
        &[V::Active, V::Stopped],
        true,
        Migration(MigrationKind::Migration),
    ),
    row(
        Action::ConfirmResize,
        &[V::Resized],
        false,
        Effect::ConfirmResize,
    ),
    row(
        Action::RevertResize,
        &[V::Resized],
        false,
        Task(TaskState::ResizeReverting),
    ),
    row(
        Action::LiveMigration,
        &[V::Active, V::Paused],
        true,
        Migration(MigrationKind::LiveMigration),
    ),
    // Any state, any task, even never launched; `decide` makes a repeated delete a
    // no-op and deletes an instance without a host at once.
    Rule {
        action: Action::Delete,
        vm_states: None,
        task: TaskReq::Any,
        lock: true,
        must_have_launched: false,
        needs_host: false,
        effect: Task(TaskState::Deleting),
    },
    row(
        Action::Rebuild,
        &[V::Active, V::Stopped, V::Error],
        true,
        Effect::StartTaskWithRequest(TaskState::Rebuilding),
    ),
    // Rows of issue 12's lifecycle actions (kept together to ease merges).
    row(
        Action::Rescue,
        &[V::Active, V::Stopped, V::Error],
        false,
        Task(TaskState::Rescuing),
    ),
    row(
        Action::Unrescue,
        &[V::Rescued],
        false,
        Task(TaskState::Unrescuing),
    ),
    // Without a host `decide` restores at once (Nova's `restore`).
    row(
        Action::Restore,
        &[V::SoftDeleted],
        false,
        Task(TaskState::Restoring),
    ),
    // Nova's `trigger_crash_dump` (ALLOW_TRIGGER_CRASH_DUMP, `check_instance_host`):
    // recorded, no task.
    row(
        Action::TriggerCrashDump,
        &[V::Active, V::Paused, V::Rescued, V::Resized, V::Error],
        true,
        Effect::Record,
    ),
    // Nova's `evacuate`: `task_state=None` in the decorator (any task; `decide` then
    // refuses a busy server as its `save(expected_task_state=None)` does), no lock
    // check; `decide` checks the source host is down and records
    // `instance.evacuation_started` (task rebuilding, a migration of kind evacuation).
    Rule {
        task: TaskReq::Any,
        lock: false,
        ..row(
            Action::Evacuate,
            &[V::Active, V::Stopped, V::Error],
            true,
            Effect::StartTaskWithRequest(TaskState::Rebuilding),
        )
    },
    // Nova's `force_delete`: any vm_state and task, never launched too; `decide` makes
    // it a no-op while deleting and deletes an instance without a host at once.
    Rule {
        action: Action::ForceDelete,
        vm_states: None,
        task: TaskReq::Any,
        lock: true,
        must_have_launched: false,
        needs_host: false,
        effect: Task(TaskState::Deleting),
    },
    // `update_instance_metadata` / `delete_instance_metadata`: `task_state=None` in the
    // decorator, so any task; the lock and `launched_at` are checked.
    Rule {
        task: TaskReq::Any,
        ..row(
            Action::UpdateMetadata,
            METADATA_VM_STATES,
            false,
            Effect::Record,
        )
    },
    Rule {
        task: TaskReq::Any,
        ..row(
            Action::DeleteMetadata,
            METADATA_VM_STATES,
            false,
            Effect::Record,
        )
    },
    // `snapshot` / `backup`: no `@check_instance_lock` (a lock guards against changes,
    // and a snapshot changes nothing).
    Rule {
        lock: false,
        ..row(
            Action::CreateImage,
            SNAPSHOT_VM_STATES,
            false,
            Effect::StartTaskWithRequest(TaskState::ImageSnapshotPending),
        )
    },
    Rule {
        lock: false,
        ..row(
            Action::CreateBackup,
            SNAPSHOT_VM_STATES,
            false,
            Effect::StartTaskWithRequest(TaskState::ImageBackup),
        )
    },
];

/// Where a server may be snapshotted or backed up (nova/compute/api.py).
const SNAPSHOT_VM_STATES: &[VmState] = &[V::Active, V::Stopped, V::Paused, V::Suspended];

/// Where a server's metadata may change (nova/compute/api.py).
const METADATA_VM_STATES: &[VmState] = &[V::Active, V::Paused, V::Suspended, V::Stopped];

/// Where a server's tags may change: `ServerTagsController._check_instance_in_valid_state`
/// (nova/api/openstack/compute/server_tags.py) checks the vm_state only: no lock, task
/// or `launched_at` check, unlike the metadata.
pub const TAG_VM_STATES: &[VmState] = &[V::Active, V::Paused, V::Suspended, V::Stopped];

/// The rule of `action`, if it has one (lock, unlock, update, reset-state and create
/// are decided without one).
pub fn rule(action: Action) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.action == action)
}

fn invalid(action: Action, i: &Instance, attr: &str, state: String) -> DomainError {
    DomainError::InvalidState {
        action: action.api_name().to_string(),
        id: i.id().to_string(),
        attr: attr.to_string(),
        state,
    }
}

impl Rule {
    /// Nova's `check_instance_lock` + `check_instance_state` (+ `check_instance_host`),
    /// in Nova's order.
    pub fn check(&self, i: &Instance, ctx: &Ctx) -> Result<(), DomainError> {
        if self.lock && i.locked.is_some() && !ctx.is_admin {
            return Err(DomainError::Locked {
                id: i.id().to_string(),
            });
        }
        if let Some(allowed) = self.vm_states {
            if !allowed.contains(&i.vm_state) {
                return Err(invalid(
                    self.action,
                    i,
                    "vm_state",
                    i.vm_state.as_str().into(),
                ));
            }
        }
        if !self.task.allows(i.task_state) {
            let s = i
                .task_state
                .map(|t| t.as_str().to_string())
                .unwrap_or("None".into());
            return Err(invalid(self.action, i, "task_state", s));
        }
        if self.must_have_launched && i.launched_at.is_none() {
            return Err(invalid(self.action, i, "launched_at", "None".into()));
        }
        if self.needs_host && i.host.is_none() {
            return Err(DomainError::NotReady {
                id: i.id().to_string(),
            });
        }
        Ok(())
    }
}

/// Tasks whose completion only settles the vm_state and power_state
/// (`instance.action_completed`), as nova/compute/manager.py leaves them.
pub const SETTLES: &[(TaskState, VmState, PowerState)] = &[
    (TaskState::Pausing, V::Paused, PowerState::Paused),
    (TaskState::UpdatingPassword, V::Active, PowerState::Running),
    (TaskState::Unpausing, V::Active, PowerState::Running),
    (TaskState::Suspending, V::Suspended, PowerState::Suspended),
    (TaskState::Resuming, V::Active, PowerState::Running),
    (TaskState::PoweringOff, V::Stopped, PowerState::Shutdown),
    (TaskState::PoweringOn, V::Active, PowerState::Running),
    (TaskState::Rebooting, V::Active, PowerState::Running),
    (TaskState::RebootingHard, V::Active, PowerState::Running),
    (TaskState::Rescuing, V::Rescued, PowerState::Running),
    (TaskState::Unrescuing, V::Active, PowerState::Running),
    (
        TaskState::SoftDeleting,
        V::SoftDeleted,
        PowerState::Shutdown,
    ),
    (TaskState::Restoring, V::Active, PowerState::Running),
];

/// The (vm_state, power_state) a completed `task` settles to, if it only settles.
pub fn settles(task: TaskState) -> Option<(VmState, PowerState)> {
    SETTLES
        .iter()
        .find(|(t, ..)| *t == task)
        .map(|&(_, v, p)| (v, p))
}

/// Steps of multi-step tasks: when the compute agent completes the first, the second
/// starts (`instance.task_advanced`); the last step's completion finishes the action.
pub const STEPS: &[(TaskState, TaskState)] = &[
    // nova/compute/manager.py `_snapshot_instance` and `shelve_instance`.
    (TaskState::ImageSnapshotPending, TaskState::ImageSnapshot),
    (TaskState::ImageSnapshot, TaskState::ImagePendingUpload),
    (TaskState::ImageBackup, TaskState::ImagePendingUpload),
    (TaskState::ImagePendingUpload, TaskState::ImageUploading),
    (TaskState::Shelving, TaskState::ShelvingImagePendingUpload),
    (
        TaskState::ShelvingImagePendingUpload,
        TaskState::ShelvingImageUploading,
    ),
    (TaskState::Rebuilding, TaskState::RebuildBlockDeviceMapping),
    (
        TaskState::RebuildBlockDeviceMapping,
        TaskState::RebuildSpawning,
    ),
];

/// The step after `task`, if `task` is not the last one of its action.
pub fn next_step(task: TaskState) -> Option<TaskState> {
    STEPS.iter().find(|(t, _)| *t == task).map(|&(_, n)| n)
}

/// Tasks whose failure leaves the instance in ERROR (the guest may be half-moved,
/// half-deleted or half-rebuilt); other failures keep the vm_state.
pub const FAILS_TO_ERROR: &[TaskState] = &[
    TaskState::ResizeMigrating,
    TaskState::ResizeReverting,
    TaskState::Deleting,
    TaskState::Rebuilding,
    TaskState::RebuildBlockDeviceMapping,
    TaskState::RebuildSpawning,
];
