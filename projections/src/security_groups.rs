//! The security group read model: every group with its rules, by group id
//! (`stratus.api.security_group.<uuid>`), and the index that finds a rule's group.
//!
//! Invariants:
//! - A row is the fold of its own subject only ([`domain::security_group::evolve`]);
//!   its sequence is the OCC expectation of the next command on that group (the
//!   duplicate-rule check included).
//! - A deleted group's row stays (marked deleted, without rules) so its subject's
//!   sequence is kept; lookups skip it. The rule index is derived from rows only.

use std::collections::HashMap;

use domain::security_group::{self, Rule, SecurityGroup, SecurityGroupEvent};
use domain::{Event, SecurityGroupId, SecurityGroupRuleId};
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// Security groups and their rules.
#[derive(Debug, Clone, Default)]
pub struct SecurityGroups {
    rows: Table<SecurityGroupId, Row<SecurityGroup>>,
    rule_group: HashMap<SecurityGroupRuleId, SecurityGroupId>,
}

/// The subject of a security group.
pub fn security_group_subject(id: &SecurityGroupId) -> Subject {
    Subject::api(SubjectKind::SecurityGroup, &id.to_string()).expect("uuid is a valid token")
}

impl SecurityGroups {
    /// A group's row, deleted or not (the OCC sequence of its subject).
    pub fn row(&self, id: &SecurityGroupId) -> Option<&Row<SecurityGroup>> {
        self.rows.get(id)
    }

    /// A live group.
    pub fn get(&self, id: &SecurityGroupId) -> Option<&SecurityGroup> {
        self.rows.get(id).map(|r| &r.state).filter(|g| !g.deleted)
    }

    /// Every live group, by id.
    pub fn all(&self) -> impl Iterator<Item = &SecurityGroup> {
        self.rows.values().map(|r| &r.state).filter(|g| !g.deleted)
    }

    /// A rule with its group.
    pub fn rule(&self, id: &SecurityGroupRuleId) -> Option<(&SecurityGroup, &Rule)> {
        let g = self.get(self.rule_group.get(id)?)?;
        Some((g, g.rules.get(id)?))
    }

    fn index(&mut self, id: SecurityGroupId) {
        self.rule_group.retain(|_, g| *g != id);
        let Some(r) = self.rows.get(&id) else { return };
        if r.state.deleted {
            return;
        }
        for rid in r.state.rules.keys() {
            self.rule_group.insert(*rid, id);
        }
    }
}

impl ReadModel for SecurityGroups {
    const NAME: &'static str = "security_groups";
    type Key = SecurityGroupId;
    type Row = Row<SecurityGroup>;

    fn rows(&self) -> &Table<SecurityGroupId, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<SecurityGroupId, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<SecurityGroupId>, Invalid> {
        let Event::SecurityGroup(e) = ev else {
            return Ok(None);
        };
        let id = SecurityGroupId::parse(c.subject.id_token()).ok_or(Invalid)?;
        let prev = self.rows.remove(&id);
        let seq = c.subject_seq;
        if let Some(state) = security_group::evolve(prev.map(|r| r.state), e) {
            self.rows.insert(id, Row { state, seq });
        }
        match e {
            SecurityGroupEvent::RuleCreated { rule } => {
                self.rule_group.insert(rule.id, id);
            }
            SecurityGroupEvent::RuleDeleted { id: r, .. } => {
                self.rule_group.remove(r);
            }
            _ => self.index(id),
        }
        Ok(Some(id))
    }

    fn rebuild_indexes(&mut self) {
        self.rule_group.clear();
        let ids: Vec<SecurityGroupId> = self.rows.keys().copied().collect();
        for id in ids {
            self.index(id);
        }
    }
}
