//! The webhook subscriptions read model (`/v1/subscriptions`, the notifier's
//! deliverer): one row per subscription subject (`stratus.api.subscriptions.<id>`),
//! the subscription as created, `None` once deleted (kept, so an id is never reused and
//! a second delete is a 404 decided on the row).
//!
//! Invariant: a row is the fold of its own subject only (one stream: the api stream).

use domain::subscription::{Subscription, SubscriptionEvent};
use domain::{Event, SubscriptionId};
use eventlog::{Commit, Subject, SubjectKind};

use crate::model::{Invalid, ReadModel, Row, Table};

/// The subject of subscription `id`.
pub fn subscription_subject(id: SubscriptionId) -> Subject {
    Subject::api(SubjectKind::Subscriptions, &id.to_string()).expect("a uuid is a token")
}

/// Every subscription, by subject.
#[derive(Debug, Clone, Default)]
pub struct Subscriptions {
    rows: Table<Subject, Row<Option<Subscription>>>,
}

impl Subscriptions {
    /// The row of `id` (None: never created; a row with `state: None`: deleted).
    pub fn row(&self, id: SubscriptionId) -> Option<&Row<Option<Subscription>>> {
        self.rows.get(&subscription_subject(id))
    }

    /// A live subscription.
    pub fn get(&self, id: SubscriptionId) -> Option<&Subscription> {
        self.row(id).and_then(|r| r.state.as_ref())
    }

    /// Every live subscription, by subject.
    pub fn live(&self) -> impl Iterator<Item = &Subscription> {
        self.rows.values().filter_map(|r| r.state.as_ref())
    }
}

impl ReadModel for Subscriptions {
    const NAME: &'static str = "subscriptions";
    type Key = Subject;
    type Row = Row<Option<Subscription>>;

    fn rows(&self) -> &Table<Subject, Self::Row> {
        &self.rows
    }
    fn rows_mut(&mut self) -> &mut Table<Subject, Self::Row> {
        &mut self.rows
    }

    fn apply(&mut self, c: &Commit, ev: &Event) -> Result<Option<Subject>, Invalid> {
        let Event::Subscription(e) = ev else {
            return Ok(None);
        };
        let state = match e {
            SubscriptionEvent::Created(s) => Some(s.clone()),
            SubscriptionEvent::Deleted { .. } => None,
        };
        self.rows.insert(
            c.subject.clone(),
            Row {
                state,
                seq: c.subject_seq,
            },
        );
        Ok(Some(c.subject.clone()))
    }
}
