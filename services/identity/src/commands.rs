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
    self, AccessRuleRequest, AppCred, Compliance, Ec2Cred, IdentityCommand, IdentityEvent,
    IdentityName, IdentityState, NameKind, Refs, RoleId, DEFAULT_DOMAIN_ID,
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

/// Whether the claim `c` is left over by an entity that no longer holds the name: the
/// entity was deleted (its subject has events but no state), or it was renamed away
/// longer than [`ORPHAN_GRACE`] ago (a rename claims the new name before renaming, so
/// a younger claim may still be a rename in flight).
async fn stale_claim(
    log: &dyn EventLog,
    kind: NameKind,
    c: &domain::identity::NameClaim,
    now: domain::Timestamp,
) -> Result<bool, IdentityError> {
    let (state, seq) = load(log, &entity_subject(kind, &c.id)?).await?;
    let grace = i64::try_from(ORPHAN_GRACE.as_micros()).unwrap_or(i64::MAX);
    let old = now.0.saturating_sub(c.claimed_at.0) > grace;
    Ok(match state {
        None => seq > 0,
        Some(IdentityState::Project(p)) => old && p.name != c.name,
        Some(IdentityState::User(u)) => old && u.name != c.name,
        Some(IdentityState::Role(r)) => old && r.name != c.name,
        Some(IdentityState::Name(_)) => false,
    })
}

/// Claims `name` for the entity `id` (a create's fresh id or a rename's entity). A
/// claim left over by a deleted or renamed entity is released first; 409 when the
/// name is someone else's. Returns the claim and, on a 409, the claim that holds it.
async fn claim_id(
    log: &dyn EventLog,
    kind: NameKind,
    name: &IdentityName,
    id: &str,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let subject = name_subject(kind, DEFAULT_DOMAIN_ID, name);
    let mut released = false;
    loop {
        let claimed = run(
            log,
            &subject,
            IdentityCommand::ClaimName {
                kind,
                domain_id: DEFAULT_DOMAIN_ID.into(),
                name: name.clone(),
                id: id.to_string(),
            },
            Refs::default(),
            who,
        )
        .await;
        match claimed {
            Err(IdentityError::Domain(DomainError::Conflict(m))) if !released => {
                if let (Some(IdentityState::Name(c)), _) = load(log, &subject).await? {
                    if stale_claim(log, kind, &c, who.ctx.now).await? {
                        tracing::warn!(kind = kind.as_str(), %name, id = %c.id, "releasing a name its entity no longer holds");
                        release_name(log, kind, name, &c.id, who).await?;
                        released = true;
                        continue;
                    }
                }
                return Err(IdentityError::Domain(DomainError::Conflict(m)));
            }
            other => return other,
        }
    }
}

/// Releases `name` if `id` holds it (after `id`'s entity was deleted or renamed).
async fn release_name(
    log: &dyn EventLog,
    kind: NameKind,
    name: &IdentityName,
    id: &str,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    run(
        log,
        &name_subject(kind, DEFAULT_DOMAIN_ID, name),
        IdentityCommand::ReleaseName { id: id.to_string() },
        Refs::default(),
        who,
    )
    .await
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
    match claim_id(log, kind, name, &id, who).await {
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
    let (state, _) = load(log, &entity_subject(kind, &c.id)?).await?;
    Ok(state.is_some().then_some(c.id))
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
    create_user_with(
        log,
        name,
        password_hash,
        enabled,
        default_project_id,
        Default::default(),
        None,
        who,
    )
    .await
}

/// [`create_user`] with Keystone's extra attributes (name -> JSON text) and the
/// expiry of the initial password ([`Compliance::expires_at`]).
#[allow(clippy::too_many_arguments)]
pub async fn create_user_with(
    log: &dyn EventLog,
    name: IdentityName,
    password_hash: String,
    enabled: bool,
    default_project_id: Option<ProjectId>,
    extra: std::collections::BTreeMap<String, String>,
    password_expires_at: Option<domain::Timestamp>,
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
            extra,
            password_expires_at,
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

/// Runs `cmd` on `user`'s subject (no references to other entities), with Keystone's
/// message for an unknown user.
async fn on_user(
    log: &dyn EventLog,
    user: &UserId,
    cmd: IdentityCommand,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let out = run(log, &user_subject(user), cmd, Refs::default(), who).await;
    not_found_user(out, user)
}

/// Enables or disables a user (a disable invalidates the user's tokens).
pub async fn set_enabled(
    log: &dyn EventLog,
    user: &UserId,
    enabled: bool,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    on_user(log, user, IdentityCommand::SetUserEnabled(enabled), who).await
}

/// An admin sets a user's password (invalidates the user's tokens). The password
/// history is kept but not enforced, as in Keystone's admin reset; `rules` decide its
/// expiry.
pub async fn set_password(
    log: &dyn EventLog,
    user: &UserId,
    password_hash: String,
    rules: Compliance,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let cmd = IdentityCommand::SetPassword {
        password_hash,
        rules,
        self_service: false,
    };
    on_user(log, user, cmd, who).await
}

/// The user changes its own password to `plain` (hashed: `password_hash`), after the
/// caller authenticated it with its current one: refused (400, nothing appended) within
/// the minimum password age of a password it set itself, or when `plain` matches one
/// of its last `unique_last_password_count` passwords (checked against the stored
/// hashes; hashing is slow, so off the async threads).
pub async fn change_own_password(
    log: &dyn EventLog,
    user: &UserId,
    plain: String,
    password_hash: String,
    rules: Compliance,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let cmd = IdentityCommand::SetPassword {
        password_hash,
        rules,
        self_service: true,
    };
    let (state, _) = load(log, &user_subject(user)).await?;
    let Some(IdentityState::User(u)) = &state else {
        return Err(IdentityError::NotFound(format!(
            "Could not find user: {user}."
        )));
    };
    // The minimum age first (Keystone's order), as the command decides it.
    identity::decide(state.as_ref(), cmd.clone(), Refs::default(), who.ctx.now)?;
    let candidates: Vec<String> = rules
        .reused_candidates(u)
        .into_iter()
        .map(str::to_string)
        .collect();
    if !candidates.is_empty() {
        let reused = tokio::task::spawn_blocking(move || {
            candidates
                .iter()
                .any(|h| crate::password::verify(&plain, h))
        })
        .await
        .map_err(|e| IdentityError::Internal(e.to_string()))?;
        if reused {
            return Err(IdentityError::BadRequest(
                identity::password_reused_message(rules.unique_last_password_count),
            ));
        }
    }
    on_user(log, user, cmd, who).await
}

/// Records a failed password authentication of `user` (nothing when lockout is off
/// or the user is locked already, so failures cannot grow the log without bound).
pub async fn record_auth_failure(
    log: &dyn EventLog,
    user: &UserId,
    rules: Compliance,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    on_user(log, user, IdentityCommand::RecordAuthFailure { rules }, who).await
}

/// Sets (`Some`) or removes (`None`) Keystone user options of `user` (400 for an
/// option Stratus does not know).
pub async fn set_user_options(
    log: &dyn EventLog,
    user: &UserId,
    options: std::collections::BTreeMap<String, Option<bool>>,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    on_user(log, user, IdentityCommand::SetUserOptions(options), who).await
}

/// Forgets `user`'s failed authentications after a success (nothing when none).
pub async fn clear_auth_failures(
    log: &dyn EventLog,
    user: &UserId,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    on_user(log, user, IdentityCommand::ClearAuthFailures, who).await
}

/// Runs `cmd` on `subject` and maps the domain's nameless not-found to Keystone's
/// message for `what` (`project`, `user`, `role`) and `id`.
async fn run_on(
    log: &dyn EventLog,
    subject: &Subject,
    cmd: IdentityCommand,
    what: &str,
    id: &str,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    match run(log, subject, cmd, Refs::default(), who).await {
        Err(IdentityError::Domain(DomainError::NotFound { id: ref i, .. })) if i.is_empty() => Err(
            IdentityError::NotFound(format!("Could not find {what}: {id}.")),
        ),
        other => other,
    }
}

/// The current name of the entity `id` of `kind` (404 when it does not exist).
async fn current_name(
    log: &dyn EventLog,
    kind: NameKind,
    id: &str,
) -> Result<IdentityName, IdentityError> {
    let (state, _) = load(log, &entity_subject(kind, id)?).await?;
    match state {
        Some(IdentityState::Project(p)) if kind == NameKind::Project => Ok(p.name),
        Some(IdentityState::User(u)) if kind == NameKind::User => Ok(u.name),
        Some(IdentityState::Role(r)) if kind == NameKind::Role => Ok(r.name),
        _ => Err(IdentityError::NotFound(format!(
            "Could not find {}: {id}.",
            kind.as_str()
        ))),
    }
}

/// Renames the entity `id`: claims the new name, changes the entity with `change`
/// (which names the new name), then releases the old one. A crash after the change
/// leaves the old name claimed by an entity that no longer holds it: the next claim of
/// that name releases it ([`stale_claim`]).
async fn rename_then(
    log: &dyn EventLog,
    kind: NameKind,
    id: &str,
    new_name: Option<&IdentityName>,
    change: IdentityCommand,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let old = current_name(log, kind, id).await?;
    let renaming = new_name.filter(|n| **n != old);
    let mut pos = None;
    if let Some(n) = renaming {
        pos = claim_id(log, kind, n, id, who).await?;
    }
    let changed = run_on(
        log,
        &entity_subject(kind, id)?,
        change,
        kind.as_str(),
        id,
        who,
    )
    .await;
    let changed = match changed {
        Ok(p) => p,
        Err(e) => {
            if let Some(n) = renaming {
                release_name(log, kind, n, id, who).await?;
            }
            return Err(e);
        }
    };
    pos = later(pos, changed);
    if renaming.is_some() {
        pos = later(pos, release_name(log, kind, &old, id, who).await?);
    }
    Ok(pos)
}

/// Deletes the entity `id` of `kind`, then releases its name.
async fn delete_entity(
    log: &dyn EventLog,
    kind: NameKind,
    id: &str,
    cmd: IdentityCommand,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let name = current_name(log, kind, id).await?;
    let a = run_on(log, &entity_subject(kind, id)?, cmd, kind.as_str(), id, who).await?;
    let b = release_name(log, kind, &name, id, who).await?;
    Ok(later(a, b))
}

/// Changes a project's name, description or enabled flag (a disable invalidates the
/// tokens scoped to it).
pub async fn update_project(
    log: &dyn EventLog,
    id: &ProjectId,
    name: Option<IdentityName>,
    description: Option<String>,
    enabled: Option<bool>,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    rename_then(
        log,
        NameKind::Project,
        id.as_str(),
        name.as_ref(),
        IdentityCommand::UpdateProject {
            name: name.clone(),
            description,
            enabled,
        },
        who,
    )
    .await
}

/// Deletes a project (its tokens stop working; assignments on it are ignored).
pub async fn delete_project(
    log: &dyn EventLog,
    id: &ProjectId,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    delete_entity(
        log,
        NameKind::Project,
        id.as_str(),
        IdentityCommand::DeleteProject,
        who,
    )
    .await
}

/// Changes a user's name, default project or extra attributes (JSON text; `None`
/// removes one).
pub async fn update_user(
    log: &dyn EventLog,
    id: &UserId,
    name: Option<IdentityName>,
    default_project_id: Option<Option<ProjectId>>,
    extra: std::collections::BTreeMap<String, Option<String>>,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    rename_then(
        log,
        NameKind::User,
        id.as_str(),
        name.as_ref(),
        IdentityCommand::UpdateUser {
            name: name.clone(),
            default_project_id,
            extra,
        },
        who,
    )
    .await
}

/// Deletes a user (its tokens and application credentials stop working).
pub async fn delete_user(
    log: &dyn EventLog,
    id: &UserId,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    delete_entity(
        log,
        NameKind::User,
        id.as_str(),
        IdentityCommand::DeleteUser,
        who,
    )
    .await
}

/// Deletes a role (assignments of it are ignored from then on).
pub async fn delete_role(
    log: &dyn EventLog,
    id: &RoleId,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    delete_entity(
        log,
        NameKind::Role,
        id.as_str(),
        IdentityCommand::DeleteRole,
        who,
    )
    .await
}

/// Revokes `role` on `project` from `user` (404 when not granted).
pub async fn revoke_role(
    log: &dyn EventLog,
    user: &UserId,
    project: &ProjectId,
    role: &RoleId,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let cmd = IdentityCommand::RevokeRole {
        project: project.clone(),
        role: role.clone(),
    };
    on_user(log, user, cmd, who).await
}

/// Revokes the token with `audit_id` of `user`, remembered until `expires_at`.
pub async fn revoke_token(
    log: &dyn EventLog,
    user: &UserId,
    audit_id: String,
    expires_at: domain::Timestamp,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let cmd = IdentityCommand::RevokeToken {
        audit_id,
        expires_at,
    };
    on_user(log, user, cmd, who).await
}

/// Creates an application credential of `user` (its secret already hashed), limited
/// to `rules` (none: not limited).
pub async fn create_app_cred(
    log: &dyn EventLog,
    user: &UserId,
    cred: AppCred,
    rules: Vec<AccessRuleRequest>,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let cmd = IdentityCommand::CreateAppCred(cred, rules);
    on_user(log, user, cmd, who)
        .await
        .map_err(access_rule_not_found)
}

/// Keystone's 404 for an access rule that is not the user's.
fn access_rule_not_found(e: IdentityError) -> IdentityError {
    match e {
        IdentityError::Domain(DomainError::NotFound {
            kind: "AccessRule",
            id,
        }) => IdentityError::NotFound(format!("Could not find Access Rule: {id}.")),
        other => other,
    }
}

/// Deletes an access rule of `user` (404 when it has none by that id, 403 while one of
/// its application credentials names it).
pub async fn delete_access_rule(
    log: &dyn EventLog,
    user: &UserId,
    id: &str,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let cmd = IdentityCommand::DeleteAccessRule { id: id.to_string() };
    match on_user(log, user, cmd, who).await {
        Err(IdentityError::Domain(DomainError::Forbidden(m))) => Err(IdentityError::Forbidden(m)),
        other => other.map_err(access_rule_not_found),
    }
}

/// Deletes an application credential of `user` (its tokens stop working).
pub async fn delete_app_cred(
    log: &dyn EventLog,
    user: &UserId,
    id: &str,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let cmd = IdentityCommand::DeleteAppCred { id: id.to_string() };
    match on_user(log, user, cmd, who).await {
        Err(IdentityError::Domain(DomainError::NotFound {
            kind: "ApplicationCredential",
            ..
        })) => Err(IdentityError::NotFound(format!(
            "Could not find Application Credential: {id}."
        ))),
        other => other,
    }
}

/// Creates an EC2 credential of `user`.
pub async fn create_ec2_cred(
    log: &dyn EventLog,
    user: &UserId,
    cred: Ec2Cred,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    on_user(log, user, IdentityCommand::CreateEc2Cred(cred), who).await
}

/// Deletes an EC2 credential of `user` by access key.
pub async fn delete_ec2_cred(
    log: &dyn EventLog,
    user: &UserId,
    access: &str,
    who: &Actor,
) -> Result<Option<u64>, IdentityError> {
    let cmd = IdentityCommand::DeleteEc2Cred {
        access: access.to_string(),
    };
    on_user(log, user, cmd, who).await
}
