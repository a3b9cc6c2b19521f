//! Webhook subscriptions to the versioned notifications (issue 11, item 4): one
//! aggregate per subscription (`stratus.api.subscriptions.<id>`), created and deleted
//! by an admin. Where each subscription's delivery stands (cursor, attempts, errors) is
//! operational state kept by the notifier beside the notifications, not here.
//!
//! Invariants:
//! - a subscription is created once (its id is the request's operation id) and deleted
//!   at most once; deleting an unknown or deleted one is [`DomainError::NotFound`];
//! - what is recorded is valid: an `http` or `https` url with a host, at least one
//!   non-empty event type (or prefix), a non-empty secret. The secret is recorded (the
//!   deliverer signs with it after any restart or rebuild) but never shown: the audit
//!   API and `replay export` redact every `secret` field, and [`Subscription`]'s `Debug`
//!   hides it.
//!
//! Pure: the time and the id come from the caller.

use serde::{Deserialize, Serialize};

use crate::{DomainError, SubscriptionId, Timestamp};

/// A webhook subscription, as created.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    /// Where notifications are POSTed.
    pub url: String,
    /// Event types or prefixes (`instance.pause` matches `instance.pause.start`), as the
    /// `event_type` filter of `/v1/notifications`; a notification matching any is sent.
    pub event_types: Vec<String>,
    /// Only this project's notifications (None: every project's).
    pub project: Option<String>,
    /// The HMAC-SHA256 key of the signature header (write-only).
    pub secret: String,
    /// Deliver the notifications after this feed cursor (0: from the first).
    pub cursor: u64,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("event_types", &self.event_types)
            .field("project", &self.project)
            .field("secret", &"***")
            .field("cursor", &self.cursor)
            .finish()
    }
}

/// Commands on one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionCommand {
    Create(Subscription),
    Delete,
}

/// Events of one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionEvent {
    /// `subscription.created`
    Created(Subscription),
    /// `subscription.deleted`
    Deleted { id: SubscriptionId, at: Timestamp },
}

impl SubscriptionEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            SubscriptionEvent::Created(_) => "subscription.created",
            SubscriptionEvent::Deleted { .. } => "subscription.deleted",
        }
    }
}

/// Whether `url` is an absolute `http`/`https` url with a host (and no spaces).
pub fn valid_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty()
            && !host.starts_with(':')
            && !url.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// Checks what a create would record.
pub fn validate(s: &Subscription) -> Result<(), DomainError> {
    if !valid_url(&s.url) {
        return Err(DomainError::BadRequest(format!(
            "Invalid url {:?}: an absolute http or https url is required.",
            s.url
        )));
    }
    if s.event_types.is_empty() || s.event_types.iter().any(|t| t.trim().is_empty()) {
        return Err(DomainError::BadRequest(
            "event_types must list at least one non-empty event type or prefix.".into(),
        ));
    }
    if s.secret.is_empty() {
        return Err(DomainError::BadRequest("secret must not be empty.".into()));
    }
    if s.project.as_deref().is_some_and(str::is_empty) {
        return Err(DomainError::BadRequest("project must not be empty.".into()));
    }
    Ok(())
}

/// Decides a command on a subscription (`state` None: never created; `Some(None)`:
/// deleted).
pub fn decide(
    state: Option<Option<&Subscription>>,
    id: SubscriptionId,
    cmd: SubscriptionCommand,
    now: Timestamp,
) -> Result<Vec<SubscriptionEvent>, DomainError> {
    match cmd {
        SubscriptionCommand::Create(s) => {
            if state.is_some() {
                return Err(DomainError::Conflict(format!(
                    "Subscription {id} already exists."
                )));
            }
            validate(&s)?;
            Ok(vec![SubscriptionEvent::Created(s)])
        }
        SubscriptionCommand::Delete => match state {
            Some(Some(_)) => Ok(vec![SubscriptionEvent::Deleted { id, at: now }]),
            _ => Err(DomainError::NotFound {
                kind: "Subscription",
                id: id.to_string(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(url: &str, types: &[&str], secret: &str) -> Subscription {
        Subscription {
            id: SubscriptionId(uuid::Uuid::nil()),
            url: url.into(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            project: None,
            secret: secret.into(),
            cursor: 0,
            created_at: Timestamp(1),
        }
    }

    #[test]
    fn urls_types_and_secrets_are_checked() {
        for ok in [
            "http://127.0.0.1:9/x",
            "https://hooks.example.com",
            "http://h",
        ] {
            assert!(valid_url(ok), "{ok}");
        }
        for bad in [
            "ftp://h/x",
            "http://",
            "h/x",
            "",
            "http:// h",
            "http://:80/",
        ] {
            assert!(!valid_url(bad), "{bad}");
        }
        let id = SubscriptionId(uuid::Uuid::nil());
        let create = |s| decide(None, id, SubscriptionCommand::Create(s), Timestamp(2));
        assert!(create(sub("http://h", &["instance"], "k")).is_ok());
        assert!(create(sub("file:///etc", &["instance"], "k")).is_err());
        assert!(create(sub("http://h", &[], "k")).is_err());
        assert!(create(sub("http://h", &[""], "k")).is_err());
        assert!(create(sub("http://h", &["instance"], "")).is_err());
    }

    #[test]
    fn created_once_deleted_once() {
        let id = SubscriptionId(uuid::Uuid::nil());
        let s = sub("http://h", &["instance"], "k");
        assert!(decide(
            Some(Some(&s)),
            id,
            SubscriptionCommand::Create(s.clone()),
            Timestamp(2)
        )
        .is_err());
        assert_eq!(
            decide(
                Some(Some(&s)),
                id,
                SubscriptionCommand::Delete,
                Timestamp(3)
            )
            .unwrap(),
            vec![SubscriptionEvent::Deleted {
                id,
                at: Timestamp(3)
            }]
        );
        assert!(matches!(
            decide(Some(None), id, SubscriptionCommand::Delete, Timestamp(3)),
            Err(DomainError::NotFound { .. })
        ));
        assert!(decide(None, id, SubscriptionCommand::Delete, Timestamp(3)).is_err());
        assert!(format!("{s:?}").contains("***") && !format!("{s:?}").contains("\"k\""));
    }
}
