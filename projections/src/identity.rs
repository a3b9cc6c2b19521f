//! The identity read model: every identity subject of the api stream (projects, users,
//! roles, name index) folded into its current state, keyed by subject.
//!
//! Invariants:
//! - One row per subject, holding the state `domain::identity::evolve` folds and the
//!   subject's last sequence (the OCC expectation of the next append).
//! - Lookups by name go through the name-index rows, so a name resolves to exactly the
//!   entity that won its claim; an entity whose claim is missing is never found by name.

use domain::identity::{
    self, IdentityName, IdentityState, NameClaim, NameKind, Project, Role, RoleId, User,
};
use domain::{Event, ProjectId, UserId};
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// `stratus.api.project.<id>`.
pub fn project_subject(id: &ProjectId) -> Subject {
    Subject::api(SubjectKind::Project, id.as_str()).expect("tokens are encoded")
}

/// `stratus.api.user.<id>`.
pub fn user_subject(id: &UserId) -> Subject {
    Subject::api(SubjectKind::User, id.as_str()).expect("tokens are encoded")
}

/// `stratus.api.role.<id>`.
pub fn role_subject(id: &RoleId) -> Subject {
    Subject::api(SubjectKind::Role, id.as_str()).expect("tokens are encoded")
}

/// `stratus.api.<kind>_name.<domain>.<name>` (both tokens encoded).
pub fn name_subject(kind: NameKind, domain_id: &str, name: &IdentityName) -> Subject {
    let kind = match kind {
        NameKind::Project => SubjectKind::ProjectName,
        NameKind::User => SubjectKind::UserName,
        NameKind::Role => SubjectKind::RoleName,
    };
    Subject::api_scoped(kind, domain_id, name.as_str()).expect("tokens are encoded")
}

/// All identity rows, by subject.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityViews {
    pub rows: Table<Subject, Row<IdentityState>>,
}

impl ReadModel for IdentityViews {
    const NAME: &'static str = "identity";
    type Key = Subject;
    type Row = Row<IdentityState>;

    fn rows(&self) -> &Table<Subject, Row<IdentityState>> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Row<IdentityState>> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Identity(e) = ev else {
            return Ok(None);
        };
        let prev = self.rows.remove(&c.subject).map(|r| r.state);
        if let Some(state) = identity::evolve(prev, e) {
            let seq = c.subject_seq;
            self.rows.insert(c.subject.clone(), Row { state, seq });
        }
        Ok(Some(c.subject.clone()))
    }
}

impl IdentityViews {
    /// State and sequence of a subject (0 when it has none).
    pub fn get(&self, subject: &Subject) -> (Option<&IdentityState>, u64) {
        match self.rows.get(subject) {
            Some(r) => (Some(&r.state), r.seq),
            None => (None, 0),
        }
    }

    /// A project by id.
    pub fn project(&self, id: &ProjectId) -> Option<&Project> {
        match self.rows.get(&project_subject(id)).map(|r| &r.state) {
            Some(IdentityState::Project(p)) => Some(p),
            _ => None,
        }
    }

    /// A user by id.
    pub fn user(&self, id: &UserId) -> Option<&User> {
        match self.rows.get(&user_subject(id)).map(|r| &r.state) {
            Some(IdentityState::User(u)) => Some(u),
            _ => None,
        }
    }

    /// A role by id.
    pub fn role(&self, id: &RoleId) -> Option<&Role> {
        match self.rows.get(&role_subject(id)).map(|r| &r.state) {
            Some(IdentityState::Role(r)) => Some(r),
            _ => None,
        }
    }

    /// The claim on a name.
    pub fn claim(&self, kind: NameKind, domain_id: &str, name: &str) -> Option<&NameClaim> {
        let name = IdentityName::new(name).ok()?;
        match self
            .rows
            .get(&name_subject(kind, domain_id, &name))
            .map(|r| &r.state)
        {
            Some(IdentityState::Name(c)) => Some(c),
            _ => None,
        }
    }

    /// A project by name.
    pub fn project_by_name(&self, domain_id: &str, name: &str) -> Option<&Project> {
        let c = self.claim(NameKind::Project, domain_id, name)?;
        self.project(&ProjectId::new(c.id.clone()).ok()?)
    }

    /// A user by name.
    pub fn user_by_name(&self, domain_id: &str, name: &str) -> Option<&User> {
        let c = self.claim(NameKind::User, domain_id, name)?;
        self.user(&UserId::new(c.id.clone()).ok()?)
    }

    /// A role by name.
    pub fn role_by_name(&self, name: &str) -> Option<&Role> {
        let c = self.claim(NameKind::Role, identity::DEFAULT_DOMAIN_ID, name)?;
        self.role(&RoleId::new(c.id.clone()).ok()?)
    }

    /// Every project, by name.
    pub fn projects(&self) -> Vec<&Project> {
        let mut v: Vec<&Project> = self
            .rows
            .values()
            .filter_map(|r| match &r.state {
                IdentityState::Project(p) => Some(p),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<&User> {
        let mut v: Vec<&User> = self
            .rows
            .values()
            .filter_map(|r| match &r.state {
                IdentityState::User(u) => Some(u),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The application credential `id` and its user (a scan of the users: credential
    /// ids are only ever looked up when one authenticates by id).
    pub fn app_cred(&self, id: &str) -> Option<(&User, &identity::AppCred)> {
        self.rows.values().find_map(|r| match &r.state {
            IdentityState::User(u) => u.app_creds.get(id).map(|c| (u, c)),
            _ => None,
        })
    }

    /// The projects (that still exist) `user` has a role on, by name.
    pub fn projects_of(&self, user: &User) -> Vec<&Project> {
        let ids: std::collections::BTreeSet<&ProjectId> =
            user.roles.iter().map(|(p, _)| p).collect();
        let mut v: Vec<&Project> = ids.into_iter().filter_map(|p| self.project(p)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Every role, by name.
    pub fn roles(&self) -> Vec<&Role> {
        let mut v: Vec<&Role> = self
            .rows
            .values()
            .filter_map(|r| match &r.state {
                IdentityState::Role(r) => Some(r),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}
