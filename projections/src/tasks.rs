//! The image tasks read model: every `stratus.api.task.<uuid>` subject folded into its
//! [`Task`], keyed by the subject.
//!
//! Invariant: a row holds the state `domain::task::evolve` folds and the subject's
//! last sequence (the OCC expectation of the next append).

use domain::task::{self, Task};
use domain::Event;
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// `stratus.api.task.<id>` (None when `id` is not a valid subject token).
pub fn task_subject(id: &str) -> Option<Subject> {
    Subject::api(SubjectKind::Task, id).ok()
}

/// Image tasks.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    rows: Table<Subject, Row<Task>>,
}

impl Tasks {
    /// The task `id` and its subject sequence.
    pub fn get(&self, id: &str) -> Option<&Row<Task>> {
        self.rows.get(&task_subject(id)?)
    }

    /// Every task.
    pub fn all(&self) -> impl Iterator<Item = &Task> {
        self.rows.values().map(|r| &r.state)
    }
}

impl ReadModel for Tasks {
    const NAME: &'static str = "tasks";
    type Key = Subject;
    type Row = Row<Task>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Task(e) = ev else {
            return Ok(None);
        };
        if !c.subject.as_str().starts_with("stratus.api.task.") {
            return Err(Invalid);
        }
        let prev = self.rows.remove(&c.subject).map(|r| r.state);
        if let Some(state) = task::evolve(prev, e) {
            let seq = c.subject_seq;
            self.rows.insert(c.subject.clone(), Row { state, seq });
        }
        Ok(Some(c.subject.clone()))
    }
}
