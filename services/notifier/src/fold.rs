//! The notifier's own fold of one cell stream: the instance state before each event,
//! so that each commit maps to its notifications without reading anything else.
//!
//! Invariants:
//! - the fold starts at the stream's first commit and takes every commit in order once
//!   ([`CellFold::commit`] refuses a commit that is not the next one);
//! - every instance of a cell stream begins with `instance.placed` or
//!   `instance.build_failed`, which carry the whole instance, so the fold needs no
//!   other stream;
//! - an `audit.period_closed` of the cell (its usage audit subject is in the same
//!   stream) yields one `instance.exists` per audited instance, with the instance as
//!   folded at that commit; so a deleted instance is kept (as deleted) until a period
//!   beginning at or after its termination is closed: it can be active in no later
//!   period (`domain::audit::active_in`). Live instances plus those deleted since the
//!   last closed period are held.

use std::collections::{BTreeSet, HashMap};

use domain::audit::AuditEvent;
use domain::instance::{evolve, Instance, InstanceEvent};
use domain::Event;
use eventlog::{Commit, Subject, SubjectKind};
use projections::codec;

use crate::mapping::{exists, notifications, Notification};
use crate::NotifierError;

/// The instances of one cell stream, folded up to `position`.
#[derive(Debug, Default, Clone)]
pub struct CellFold {
    /// Last commit folded (0: none).
    pub position: u64,
    instances: HashMap<String, Instance>,
    /// Deleted instances that a period not closed yet may still audit (by subject).
    deleted: HashMap<String, Instance>,
    /// Tags of the live instances that have any (by subject): `instance.tags_set`.
    tags: HashMap<String, BTreeSet<String>>,
}

impl CellFold {
    /// Instances currently held (live ones).
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// No instance held.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Folds `commit` (the next one of the stream) and returns its notifications, in
    /// order. Events of other families are skipped; an event that cannot be decoded is
    /// an error (the stream was written by a newer version: stopping is safer than
    /// skipping a notification).
    pub fn commit(&mut self, commit: &Commit) -> Result<Vec<Notification>, NotifierError> {
        if commit.stream_seq != self.position + 1 {
            return Err(NotifierError::OutOfOrder {
                stream: commit.stream.to_string(),
                expected: self.position + 1,
                got: commit.stream_seq,
            });
        }
        let mut out = Vec::new();
        let key = commit.subject.as_str();
        for stored in &commit.events {
            let audit = stored.event_type == "audit.period_closed";
            if !stored.event_type.starts_with("instance.") && !audit {
                continue;
            }
            let ev = match codec::decode(stored) {
                Ok(Event::Instance(ev)) => ev,
                Ok(Event::UsageAudit(a)) => {
                    self.audit(commit, stored.event_id, &a, &mut out);
                    continue;
                }
                Ok(_) => continue,
                Err(e) => {
                    return Err(NotifierError::Decode {
                        stream: commit.stream.to_string(),
                        seq: commit.stream_seq,
                        message: e.to_string(),
                    })
                }
            };
            let before = self.instances.remove(key);
            let after = evolve(before.clone(), &ev);
            if let InstanceEvent::TagsSet { tags, .. } = &ev {
                self.tags.insert(key.to_string(), tags.clone());
            }
            out.extend(notifications(
                before.as_ref(),
                after.as_ref(),
                stored.event_id,
                &ev,
                &commit.meta,
                self.tags.get(key).unwrap_or(&BTreeSet::new()),
            ));
            match after {
                Some(a) if a.deleted => {
                    self.tags.remove(key);
                    self.deleted.insert(key.to_string(), a);
                }
                Some(a) => {
                    self.instances.insert(key.to_string(), a);
                }
                None => {}
            }
        }
        self.position = commit.stream_seq;
        Ok(out)
    }

    /// `instance.exists` for every instance a closed period audited, host by host in the
    /// event's order, after forgetting the deleted instances that neither this period nor
    /// a later one can audit; an instance the fold does not hold (deleted and forgotten
    /// because a later period was closed first) is skipped.
    fn audit(
        &mut self,
        commit: &Commit,
        event_id: uuid::Uuid,
        event: &AuditEvent,
        out: &mut Vec<Notification>,
    ) {
        let AuditEvent::PeriodClosed {
            period_beginning,
            period_ending,
            hosts,
            at,
            ..
        } = event;
        // Deleted by the period's beginning: not active in it nor in any later one.
        self.deleted
            .retain(|_, i| i.terminated_at.is_none_or(|t| t > *period_beginning));
        for h in hosts {
            for id in &h.instances {
                let Ok(subject) =
                    Subject::cell(&commit.stream, SubjectKind::Instance, &id.to_string())
                else {
                    continue;
                };
                let key = subject.as_str();
                let Some(i) = self.instances.get(key).or_else(|| self.deleted.get(key)) else {
                    continue;
                };
                out.push(exists(
                    i,
                    h.host.as_str(),
                    (*period_beginning, *period_ending),
                    event_id,
                    *at,
                    &commit.meta,
                ));
            }
        }
    }
}
