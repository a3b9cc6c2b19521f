//! Identity commands on the log.
//!
//! Invariants:
//! - Every command decides on the state of its subject read from the log itself (not
//!   from a world), so it works the same from the one-shot `stratus admin` CLI and from
//!   a running server, and never decides on a stale view; the append states the
//!   subject's expected last sequence, and a conflict re-reads and decides again.
//! - A create claims the name first (name-index subject, expected sequence 0 when it is
//!   free), then creates the entity under a fresh id: of two concurrent creates of one
//!   name exactly one wins, the other is refused with a 409 and writes nothing more.
//! - A claim never moves to another id. A process dying between the two appends leaves
//!   the name claimed by an id without entity: once that claim is older than
//!   [`ORPHAN_GRACE`] (far longer than the two appends take), the next create of the
//!   name completes it, creating its entity under the claimed id (OCC on the entity's
//!   subject: of two such creates one wins, the other gets the 409).
//! - A refused command appends nothing.

use domain::identity::{
    self, IdentityCommand, IdentityEvent, IdentityName, IdentityState, NameKind, Refs, RoleId,
    DEFAULT_DOMAIN_ID,
};
use domain::{Ctx, DomainError, Event, ProjectId, UserId};
use engine::Meta;
use eventlog::{AppendRequest, EventLog, ExpectedSeq, LogError, Metadata, Subject};
use projections::codec;
use projections::identity::{name_subject, project_subject, role_subject, user_subject};

use crate::IdentityError;

const MAX_RETRIES: usize = 8;

/// How old a claim without entity must be before a create of its name completes it.
pub const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Who acts, for the decision and the envelope.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Decision context (time, caller).
    pub ctx: Ctx,
    /// Envelope metadata (request id, caller).
    pub meta: Meta,
}

impl Actor {
    /// A service actor (`bootstrap`, `stratus-admin`).
    pub fn service(name: &str) -> Self {
        let rid = format!("req-{}", uuid::Uuid::new_v4());
        Actor {
            ctx: Ctx::service(name, engine::now(), uuid::Uuid::new_v4()),
            meta: Meta::service(name, &rid, &rid, String::new()),
        }
    }
}

/// The state of one identity subject and its last sequence, read from the log.
pub async fn load(
    log: &dyn EventLog,
    subject: &Subject,
) -> Result<(Option<IdentityState>, u64), IdentityError> {
    let (events, seq) = engine::cells::read(log, subject).await?;
    let mut state = None;
    for e in &events {
        match e {
            Event::Identity(ev) => state = identity::evolve(state, ev),
            other => {
                return Err(LogError::Corrupt(format!(
                    "{subject}: unexpected {}",
                    other.event_type()
                ))
                .into())
            }
        }
    }
    Ok((state, seq))
}

/// Decides `cmd` on `subject` and appends the events (OCC, bounded retries). Returns
/// the stream position of the append (None: nothing to append).
async fn run(
    log: &dyn EventLog,
    subject: &Subject,
    cmd: IdentityCommand,
    refs: Refs<'_>,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    for _ in 0..MAX_RETRIES {
        let (state, seq) = load(log, subject).await?;
        let events: Vec<IdentityEvent> =
            identity::decide(state.as_ref(), cmd.clone(), refs, who.ctx.now)?;
        if events.is_empty() {
            return Ok(None);
        }
        let req = AppendRequest {
            subject: subject.clone(),
            expected: ExpectedSeq::Exactly(seq),
            dedupe_id: uuid::Uuid::now_v7().to_string(),
            meta: Metadata {
                correlation_id: who.meta.correlation_id.clone(),
                causation_id: who.meta.causation_id.clone(),
                actor: who.meta.actor.clone(),
                occurred_at: who.ctx.now.0,
            },
            events: events
                .into_iter()
                .map(|e| codec::encode(&Event::Identity(e)))
                .collect(),
        };
        match log.append(req).await {
            Ok(ack) => return Ok(Some(ack.stream_seq)),
            Err(LogError::WrongLastSequence { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(IdentityError::Engine(engine::EngineError::Contention(
        subject.to_string(),
    )))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn later(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.max(b)
}

/// The subject of the entity `id` of `kind`.
fn entity_subject(kind: NameKind, id: &str) -> Result<Subject, IdentityError> {
    Ok(match kind {
        NameKind::Project => project_subject(&ProjectId::new(id.to_string())?),
        NameKind::User => user_subject(&UserId::new(id.to_string())?),
        NameKind::Role => role_subject(&RoleId::new(id.to_string())?),
    })
}

/// Claims `name` for a fresh id and returns the id to create the entity under: the
/// fresh one, or the id of an orphaned claim of the name (claimed more than
/// [`ORPHAN_GRACE`] ago, no entity). 409 when the name is someone else's.
async fn claim(
    log: &dyn EventLog,
    kind: NameKind,
    name: &IdentityName,
    who: &Actor,
) -> Result<(String, Option<u64>), IdentityError> {
    let id = new_id();
    let subject = name_subject(kind, DEFAULT_DOMAIN_ID, name);
    let claimed = run(
        log,
        &subject,
        IdentityCommand::ClaimName {
            kind,
            domain_id: DEFAULT_DOMAIN_ID.into(),
            name: name.clone(),
            id: id.clone(),
        },
        Refs::default(),
        who,
    )
    .await;
    match claimed {
        Ok(seq) => Ok((id, seq)),
        Err(IdentityError::Domain(DomainError::Conflict(m))) => {
            if let (Some(IdentityState::Name(c)), _) = load(log, &subject).await? {
                let grace = i64::try_from(ORPHAN_GRACE.as_micros()).unwrap_or(i64::MAX);
                let old = who.ctx.now.0.saturating_sub(c.claimed_at.0) > grace;
                if old && log.last_subject_seq(&entity_subject(kind, &c.id)?).await? == 0 {
                    tracing::warn!(
                        kind = kind.as_str(),
                        %name,
                        id = %c.id,
                        "completing a name claim whose create never happened"
                    );
                    return Ok((c.id, None));
                }
            }
            Err(IdentityError::Domain(DomainError::Conflict(m)))
        }
        Err(e) => Err(e),
    }
}

/// The id holding a name, if its entity exists.
pub async fn resolve(
    log: &dyn EventLog,
    kind: NameKind,
    name: &str,
) -> Result<Option<String>, IdentityError> {
    let Ok(name) = IdentityName::new(name) else {
        return Ok(None);
    };
    let (state, _) = load(log, &name_subject(kind, DEFAULT_DOMAIN_ID, &name)).await?;
    let Some(IdentityState::Name(c)) = state else {
        return Ok(None);
    };
    let subject = entity_subject(kind, &c.id)?;
    Ok((log.last_subject_seq(&subject).await? > 0).then_some(c.id))
}

/// Creates a project named `name`.
pub async fn create_project(
    log: &dyn EventLog,
    name: IdentityName,
    description: String,
    enabled: bool,
    who: &Actor,
) -> Result<(ProjectId, Option<u64>), IdentityError> {
    let (id, a) = claim(log, NameKind::Project, &name, who).await?;
    let id = ProjectId::new(id)?;
    let b = run(
        log,
        &project_subject(&id),
        IdentityCommand::CreateProject {
            id: id.clone(),
            name,
            description,
            enabled,
        },
        Refs::default(),
        who,
    )
    .await?;
    Ok((id, later(a, b)))
}

/// Creates a user named `name` with an already hashed password.
pub async fn create_user(
    log: &dyn EventLog,
    name: IdentityName,
    password_hash: String,
    enabled: bool,
    default_project_id: Option<ProjectId>,
    who: &Actor,
) -> Result<(UserId, Option<u64>), IdentityError> {
    let (id, a) = claim(log, NameKind::User, &name, who).await?;
    let id = UserId::new(id)?;
    let b = run(
        log,
        &user_subject(&id),
        IdentityCommand::CreateUser {
            id: id.clone(),
            name,
            password_hash,
            enabled,
            default_project_id,
        },
        Refs::default(),
        who,
    )
    .await?;
    Ok((id, later(a, b)))
}

/// Creates a role named `name`.
pub async fn create_role(
    log: &dyn EventLog,
    name: IdentityName,
    who: &Actor,
) -> Result<(RoleId, Option<u64>), IdentityError> {
    let (id, a) = claim(log, NameKind::Role, &name, who).await?;
    let id = RoleId::new(id)?;
    let b = run(
        log,
        &role_subject(&id),
        IdentityCommand::CreateRole {
            id: id.clone(),
            name,
        },
        Refs::default(),
        who,
    )
    .await?;
    Ok((id, later(a, b)))
}

/// Grants `role` on `project` to `user` (nothing when already granted).
pub async fn grant_role(
    log: &dyn EventLog,
    user: &UserId,
    project: &ProjectId,
    role: &RoleId,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let (p, _) = load(log, &project_subject(project)).await?;
    let (r, _) = load(log, &role_subject(role)).await?;
    let p = match p {
        Some(IdentityState::Project(p)) => Some(p),
        _ => None,
    };
    let r = match r {
        Some(IdentityState::Role(r)) => Some(r),
        _ => None,
    };
    let out = run(
        log,
        &user_subject(user),
        IdentityCommand::GrantRole {
            project: project.clone(),
            role: role.clone(),
        },
        Refs {
            project: p.as_ref(),
            role: r.as_ref(),
        },
        who,
    )
    .await;
    not_found_user(out, user)
}

fn not_found_user<T>(r: Result<T, IdentityError>, user: &UserId) -> Result<T, IdentityError> {
    match r {
        Err(IdentityError::Domain(domain::DomainError::NotFound { kind: "User", .. })) => Err(
            IdentityError::NotFound(format!("Could not find user: {user}.")),
        ),
        other => other,
    }
}

/// Enables or disables a user (a disable invalidates the user's tokens).
pub async fn set_enabled(
    log: &dyn EventLog,
    user: &UserId,
    enabled: bool,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let out = run(
        log,
        &user_subject(user),
        IdentityCommand::SetUserEnabled(enabled),
        Refs::default(),
        who,
    )
    .await;
    not_found_user(out, user)
}

/// Changes a user's password (invalidates the user's tokens).
pub async fn set_password(
    log: &dyn EventLog,
    user: &UserId,
    password_hash: String,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let out = run(
        log,
        &user_subject(user),
        IdentityCommand::SetPassword { password_hash },
        Refs::default(),
        who,
    )
    .await;
    not_found_user(out, user)
}
