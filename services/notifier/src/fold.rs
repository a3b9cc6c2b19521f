//! The notifier's own fold of one cell stream: the instance state before each event,
//! so that each commit maps to its notifications without reading anything else.
//!
//! Invariants:
//! - the fold starts at the stream's first commit and takes every commit in order once
//!   ([`CellFold::commit`] refuses a commit that is not the next one);
//! - every instance of a cell stream begins with `instance.placed` or
//!   `instance.build_failed`, which carry the whole instance, so the fold needs no
//!   other stream;
//! - deleted instances are forgotten (nothing follows `instance.deleted`), so the fold
//!   holds the live instances of the cell only.

use std::collections::HashMap;

use domain::instance::{evolve, Instance};
use domain::Event;
use eventlog::Commit;
use projections::codec;

use crate::mapping::{notifications, Notification};
use crate::NotifierError;

/// The instances of one cell stream, folded up to `position`.
#[derive(Debug, Default, Clone)]
pub struct CellFold {
    /// Last commit folded (0: none).
    pub position: u64,
    instances: HashMap<String, Instance>,
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
            if !stored.event_type.starts_with("instance.") {
                continue;
            }
            let ev = match codec::decode(stored) {
                Ok(Event::Instance(ev)) => ev,
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
            out.extend(notifications(
                before.as_ref(),
                after.as_ref(),
                stored.event_id,
                &ev,
                &commit.meta,
            ));
            if let Some(a) = after.filter(|a| !a.deleted) {
                self.instances.insert(key.to_string(), a);
            }
        }
        self.position = commit.stream_seq;
        Ok(out)
    }
}
