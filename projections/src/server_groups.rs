//! The server groups read model: every project's groups (`stratus.api.server_groups.<project>`)
//! and, derived from them, the group of every member instance.
//!
//! Invariant: a row is the fold of its own subject only ([`domain::server_group::evolve`]),
//! and its sequence is the OCC expectation of the next decision on that project's groups.
//! `by_member` is rebuilt from the rows (never stored), so it always agrees with them.

use std::collections::BTreeMap;

use domain::server_group::{self, ProjectGroups, ServerGroup};
use domain::{Event, InstanceId, ServerGroupId};
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// Server groups by project subject.
#[derive(Debug, Clone, Default)]
pub struct ServerGroups {
    rows: Table<Subject, Row<ProjectGroups>>,
    /// member -> (project subject, group).
    by_member: BTreeMap<InstanceId, (Subject, ServerGroupId)>,
}

/// The subject of a project's server groups.
pub fn groups_subject(project: &str) -> Subject {
    Subject::api(SubjectKind::ServerGroups, project).expect("tokens are encoded")
}

impl ServerGroups {
    /// A project's groups row.
    pub fn project(&self, project: &str) -> Option<&Row<ProjectGroups>> {
        self.rows.get(&groups_subject(project))
    }

    /// A group by id, in any project (ids are unique uuids).
    pub fn group(&self, id: &ServerGroupId) -> Option<&ServerGroup> {
        self.rows.values().find_map(|r| r.state.groups.get(id))
    }

    /// Every group of every project.
    pub fn all(&self) -> impl Iterator<Item = &ServerGroup> {
        self.rows.values().flat_map(|r| r.state.groups.values())
    }

    /// The group `instance` is a member of.
    pub fn of_member(&self, instance: &InstanceId) -> Option<&ServerGroup> {
        let (s, g) = self.by_member.get(instance)?;
        self.rows.get(s)?.state.groups.get(g)
    }

    /// Every member with its group's project.
    pub fn members(&self) -> impl Iterator<Item = (&InstanceId, &ServerGroup)> {
        self.all()
            .flat_map(|g| g.members.keys().map(move |i| (i, g)))
    }

    fn reindex(&mut self, subject: &Subject) {
        self.by_member.retain(|_, (s, _)| s != subject);
        if let Some(r) = self.rows.get(subject) {
            for g in r.state.groups.values() {
                for i in g.members.keys() {
                    self.by_member.insert(*i, (subject.clone(), g.id));
                }
            }
        }
    }
}

impl ReadModel for ServerGroups {
    const NAME: &'static str = "server_groups";
    type Key = Subject;
    type Row = Row<ProjectGroups>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::ServerGroup(e) = ev else {
            return Ok(None);
        };
        if c.subject.kind() != Some(SubjectKind::ServerGroups) {
            return Err(Invalid);
        }
        let row = self.rows.entry(c.subject.clone()).or_insert(Row {
            state: ProjectGroups::default(),
            seq: 0,
        });
        row.state = server_group::evolve(std::mem::take(&mut row.state), e);
        row.seq = c.subject_seq;
        self.reindex(&c.subject);
        Ok(Some(c.subject.clone()))
    }

    fn rebuild_indexes(&mut self) {
        self.by_member.clear();
        let subjects: Vec<Subject> = self.rows.keys().cloned().collect();
        for s in subjects {
            self.reindex(&s);
        }
    }
}
