//! Glance's (deprecated) tasks API: asynchronous image operations
//! (`stratus.api.task.<uuid>`). Stratus records the tasks clients create and settles
//! them at once: the only task type Glance's v2 API takes from clients, `import` from a
//! URL, needs the image service to download remote data, which Stratus does not do, so
//! such a task fails with a message saying so (as Glance's task fails when the data
//! cannot be fetched). Images take their data by `PUT /v2/images/{id}/file`.
//!
//! Invariants:
//! - A task is created once (`task.created`, status `pending`), an image import's
//!   starts running at once (`task.started`, `processing`), and a task ends once
//!   (`task.failed`, status `failure`, with its message, or `task.succeeded`, with its
//!   result; both with an expiry 48 hours later, Glance's `task_time_to_live`); an ended
//!   task changes no more.
//! - Image imports (`POST /v2/images/{id}/import`) are `api_image_import` tasks the
//!   image service runs in the background; clients' own tasks fail at once.
//! - The input is kept as the JSON text the client sent (the log's encoding is not
//!   self-describing).

use serde::{Deserialize, Serialize};

use crate::{Ctx, DomainError, Timestamp};

/// Glance's `task_time_to_live` default (48 hours), in microseconds.
pub const TIME_TO_LIVE_MICROS: i64 = 48 * 3600 * 1_000_000;

/// Task status (the subset Stratus produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    Pending,
    Failure,
    /// Running (an image import). (Appended: older rows keep decoding.)
    Processing,
    /// Ended well (an image import).
    Success,
}

impl TaskStatus {
    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Failure => "failure",
            TaskStatus::Processing => "processing",
            TaskStatus::Success => "success",
        }
    }
}

/// What a task is created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// 36-character uuid.
    pub id: String,
    /// `import`, `api_image_import` or `location_import`.
    pub task_type: String,
    /// Owner project.
    pub owner: String,
    /// The creating user.
    pub user_id: String,
    /// The request that created it (`req-<uuid>`).
    pub request_id: String,
    /// The task's input, as JSON text.
    pub input: String,
}

/// A task now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub spec: TaskSpec,
    pub status: TaskStatus,
    /// Why it failed.
    pub message: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set when it ends.
    pub expires_at: Option<Timestamp>,
    /// What a successful task produced, as JSON text (`{"image_id": ...}`).
    pub result: Option<String>,
}

impl Task {
    /// Whether it has ended (`success` or `failure`).
    pub fn ended(&self) -> bool {
        matches!(self.status, TaskStatus::Success | TaskStatus::Failure)
    }
}

/// Commands on a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCommand {
    /// Create it and end it at once with `message` (see the module documentation).
    CreateFailed(TaskSpec, String),
    /// Create it running (`processing`): an image import the image service runs.
    Start(TaskSpec),
    /// End it well with its result (JSON text). Ended already: nothing to do.
    Succeed(String),
    /// End it in `failure` with a message. Ended already: nothing to do.
    Fail(String),
}

/// Events of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskEvent {
    /// `task.created`
    Created { spec: TaskSpec, at: Timestamp },
    /// `task.failed`
    Failed { message: String, at: Timestamp },
    /// `task.started` (`processing`). (Appended: older payloads keep decoding.)
    Started { at: Timestamp },
    /// `task.succeeded`
    Succeeded { result: String, at: Timestamp },
}

impl TaskEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            TaskEvent::Created { .. } => "task.created",
            TaskEvent::Failed { .. } => "task.failed",
            TaskEvent::Started { .. } => "task.started",
            TaskEvent::Succeeded { .. } => "task.succeeded",
        }
    }
}

/// Decides a task command.
pub fn decide(
    state: Option<&Task>,
    cmd: TaskCommand,
    ctx: &Ctx,
) -> Result<Vec<TaskEvent>, DomainError> {
    let at = ctx.now;
    let exists = |spec: &TaskSpec| {
        Err(DomainError::Conflict(format!(
            "Task with the given id {} already exists",
            spec.id
        )))
    };
    match cmd {
        TaskCommand::CreateFailed(spec, message) => {
            if state.is_some() {
                return exists(&spec);
            }
            Ok(vec![
                TaskEvent::Created { spec, at },
                TaskEvent::Failed { message, at },
            ])
        }
        TaskCommand::Start(spec) => {
            if state.is_some() {
                return exists(&spec);
            }
            Ok(vec![
                TaskEvent::Created { spec, at },
                TaskEvent::Started { at },
            ])
        }
        TaskCommand::Succeed(result) => match state {
            Some(t) if !t.ended() => Ok(vec![TaskEvent::Succeeded { result, at }]),
            _ => Ok(vec![]),
        },
        TaskCommand::Fail(message) => match state {
            Some(t) if !t.ended() => Ok(vec![TaskEvent::Failed { message, at }]),
            _ => Ok(vec![]),
        },
    }
}

/// Applies a task event. Total.
pub fn evolve(state: Option<Task>, ev: &TaskEvent) -> Option<Task> {
    match ev {
        TaskEvent::Created { spec, at } => Some(state.unwrap_or(Task {
            spec: spec.clone(),
            status: TaskStatus::Pending,
            message: String::new(),
            created_at: *at,
            updated_at: *at,
            expires_at: None,
            result: None,
        })),
        TaskEvent::Started { at } => state.map(|mut t| {
            if t.status == TaskStatus::Pending {
                t.status = TaskStatus::Processing;
                t.updated_at = *at;
            }
            t
        }),
        TaskEvent::Succeeded { result, at } => state.map(|mut t| {
            if !t.ended() {
                t.status = TaskStatus::Success;
                t.result = Some(result.clone());
                t.updated_at = *at;
                t.expires_at = Some(Timestamp(at.0 + TIME_TO_LIVE_MICROS));
            }
            t
        }),
        TaskEvent::Failed { message, at } => state.map(|mut t| {
            if !t.ended() {
                t.status = TaskStatus::Failure;
                t.message = message.clone();
                t.updated_at = *at;
                t.expires_at = Some(Timestamp(at.0 + TIME_TO_LIVE_MICROS));
            }
            t
        }),
    }
}
