//! Identity (a Keystone v3 subset): projects, users, roles and role assignments, all
//! aggregates of the global `api` stream.
//!
//! Subjects: `stratus.api.project.<id>`, `stratus.api.user.<id>` (the user, its
//! credential and its role assignments), `stratus.api.role.<id>`, and one name-index
//! subject per unique name, `stratus.api.<kind>_name.<domain>.<name>`.
//!
//! Invariants:
//! - Names are unique per kind and domain: a create first claims the name-index subject
//!   with an expected subject sequence of 0 (so of two concurrent creates only one can
//!   win), then creates the entity. A claim never moves to another id.
//! - There is one domain, `default` (name `Default`).
//! - A user's password is only ever stored as a hash (argon2 PHC string, computed by
//!   the caller: hashing needs a random salt, and this crate has no I/O).
//! - `revision` counts credential changes (password changes and disables); tokens carry
//!   the revision they were issued at, so a changed password or a disable invalidates
//!   every earlier token, even after the user is enabled again.
//! - Granting a role a user already has on a project decides to no events; granting
//!   needs the project and the role to exist.
//! - A delete is an event (`project.deleted`, `user.deleted`, `role.deleted`) that folds
//!   the entity away; its name is then released (`identity.name_released`, appended to
//!   the name-index subject only by the id holding it) so it can be taken again. A
//!   deleted user's or project's tokens fail validation because the entity is gone;
//!   assignments naming a deleted project or role are ignored by every reader.
//! - A revoked token is remembered by its audit id on its user (`user.token_revoked`)
//!   until it would have expired anyway; every process folds the api stream, so every
//!   process that validates tokens sees the revocation.
//! - Application credentials live on their user (`user.app_cred_created` /
//!   `user.app_cred_deleted`): names are unique per user (decided on the user's state,
//!   appended with its expected sequence), only the secret's argon2 hash is stored.
//!   As in Keystone, revoking a role on a project deletes the user's credentials on
//!   that project, and disabling the user deletes all of them (same commit).
//! - Access rules live on their user too (`user.app_cred_access_rules_set`, appended
//!   with the credential's `user.app_cred_created`; `user.access_rule_deleted`): a
//!   credential created with rules names the user's identical rule (same service, path
//!   and method) where one exists, so a rule is stored once per user; rules outlive
//!   their credentials (as Keystone's) and may only be deleted when no credential of
//!   the user names them.
//! - EC2 credentials live on their user too (`user.ec2_cred_created` /
//!   `user.ec2_cred_deleted`), keyed by their access key; their secret is kept as is
//!   (Keystone shows it on GET; see [`Ec2Cred`]). They go with their user.
//! - Security compliance (Keystone's `[security_compliance]`, see [`Compliance`]): a
//!   password is set with `user.password_set`, which carries everything the settings
//!   decided at that moment (expiry, how many earlier hashes to keep, whether the user
//!   set it itself), so the fold never reads configuration and a replay is exact.
//!   Failed password authentications are `user.auth_failed` events carrying the new
//!   count; a locked user's failures decide to nothing (so an attacker can add at most
//!   `lockout_failure_attempts` events per user per `lockout_duration`), and the lock
//!   is state in the log, so a restart does not lift it. A success or an admin's
//!   `enabled: true` clears the count (`user.auth_failures_cleared`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{DomainError, ProjectId, Timestamp, UserId};

/// Id of the only domain.
pub const DEFAULT_DOMAIN_ID: &str = "default";
/// Name of the only domain.
pub const DEFAULT_DOMAIN_NAME: &str = "Default";

/// Role id (Keystone: a 32-hex uuid; any printable string up to 64 chars here).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleId(String);

impl RoleId {
    /// Validates and wraps.
    pub fn new(s: impl Into<String>) -> Result<Self, DomainError> {
        let s = s.into();
        if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_control() || c == '/') {
            return Err(DomainError::BadRequest(format!("Invalid role id {s:?}")));
        }
        Ok(RoleId(s))
    }
    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A project, user or role name: 1 to 255 printable characters, no leading or
/// trailing whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityName(String);

impl IdentityName {
    /// Validates and wraps.
    pub fn new(s: impl Into<String>) -> Result<Self, DomainError> {
        let s = s.into();
        if s.is_empty()
            || s.chars().count() > 255
            || s.trim() != s
            || s.chars().any(|c| c.is_control())
        {
            return Err(DomainError::BadRequest(format!(
                "Invalid name {s:?}: 1 to 255 printable characters without leading or trailing spaces."
            )));
        }
        Ok(IdentityName(s))
    }
    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdentityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a unique name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NameKind {
    /// A project name.
    Project,
    /// A user name.
    User,
    /// A role name.
    Role,
}

impl NameKind {
    /// `project`, `user` or `role`.
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Project => "project",
            NameKind::User => "user",
            NameKind::Role => "role",
        }
    }
}

/// A project (tenant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    /// Unique name in its domain.
    pub name: IdentityName,
    /// Domain id (`default`).
    pub domain_id: String,
    /// Free text.
    pub description: String,
    /// Whether it can be scoped to.
    pub enabled: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A user with its credential and role assignments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// Unique name in its domain.
    pub name: IdentityName,
    /// Domain id (`default`).
    pub domain_id: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Disabled users cannot authenticate and their tokens stop working.
    pub enabled: bool,
    /// Credential revision (see the module invariants).
    pub revision: u32,
    /// Default project, if any.
    pub default_project_id: Option<ProjectId>,
    /// Role assignments: (project, role).
    pub roles: BTreeSet<(ProjectId, RoleId)>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Revoked tokens of this user: audit id -> the token's expiry (dropped once past).
    pub revoked: BTreeMap<String, Timestamp>,
    /// Application credentials, by id.
    pub app_creds: BTreeMap<String, AppCred>,
    /// Keystone's extra attributes (`email`, `description`, ...): name -> JSON text.
    pub extra: BTreeMap<String, String>,
    /// EC2 credentials, by access key (`user.ec2_cred_*`).
    pub ec2_creds: BTreeMap<String, Ec2Cred>,
    /// Access rules, by id (`user.app_cred_access_rules_set`).
    pub access_rules: BTreeMap<String, AccessRule>,
    /// The access rules each application credential is limited to: credential id ->
    /// rule ids, in the order given at creation. A credential without an entry has no
    /// rules (its tokens are not limited). Kept beside [`AppCred`] rather than in it
    /// because `AppCred` is the payload of `user.app_cred_created`, whose encoding is
    /// frozen.
    pub app_cred_rules: BTreeMap<String, Vec<String>>,
    /// When the current password was set.
    pub password_created_at: Timestamp,
    /// When the current password expires (Keystone's `password_expires_at`).
    pub password_expires_at: Option<Timestamp>,
    /// Whether the user set the current password itself (`POST
    /// /v3/users/{id}/password`): only then does the minimum password age apply.
    pub password_self_service: bool,
    /// argon2 hashes of earlier passwords, oldest first (as many as the unique password
    /// count in force when the password was last set needs; never plain passwords).
    pub password_history: Vec<String>,
    /// Consecutive failed password authentications (`user.auth_failed`).
    pub failed_auth_count: u32,
    /// When the last of them happened.
    pub failed_auth_at: Option<Timestamp>,
    /// Keystone's user options ([`USER_OPTIONS`]) that are set, by name.
    pub options: BTreeMap<String, bool>,
}

/// An application credential access rule (Keystone's `access_rule`): a request a
/// token of the credential may make, by service type, HTTP method and path pattern
/// (`*` one path segment, `**` anything, `{name}` one segment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    /// 32-hex uuid, unique per user.
    pub id: String,
    /// Service type (`compute`, `image`, `identity`, ...).
    pub service: String,
    /// Path pattern.
    pub path: String,
    /// HTTP method (one of GET, HEAD, POST, PUT, PATCH, DELETE).
    pub method: String,
}

impl AccessRule {
    /// Whether two rules allow the same requests (all but the id equal).
    pub fn same_as(&self, other: &AccessRule) -> bool {
        self.service == other.service && self.path == other.path && self.method == other.method
    }
}

/// An access rule asked for when creating an application credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessRuleRequest {
    /// One of the user's rules, by id.
    Existing(String),
    /// A rule by content: the user's identical rule when there is one, else this one
    /// (with its fresh id).
    New(AccessRule),
}

/// Keystone's user option exempting the user from the lockout.
pub const IGNORE_LOCKOUT: &str = "ignore_lockout_failure_attempts";
/// Keystone's user option exempting the user's passwords from expiry.
pub const IGNORE_PASSWORD_EXPIRY: &str = "ignore_password_expiry";
/// Keystone's user option exempting the user from `change_password_upon_first_use`.
pub const IGNORE_CHANGE_PASSWORD: &str = "ignore_change_password_upon_first_use";
/// Keystone's user option forbidding the self-service password change.
pub const LOCK_PASSWORD: &str = "lock_password";
/// The user options Stratus knows (Keystone's boolean security-compliance options);
/// any other is refused with a 400.
pub const USER_OPTIONS: &[&str] = &[
    IGNORE_CHANGE_PASSWORD,
    IGNORE_PASSWORD_EXPIRY,
    IGNORE_LOCKOUT,
    LOCK_PASSWORD,
];

/// An EC2 credential (Keystone's `ec2` credential type, `OS-EC2`): an access key and
/// its secret for one project. Unlike passwords and application credentials the secret
/// is kept as created: Keystone shows it again on every GET, and an EC2 signature can
/// only be checked with the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ec2Cred {
    /// 32-hex access key (unique: a uuid).
    pub access: String,
    /// 32-hex secret.
    pub secret: String,
    /// The project (Keystone's `tenant_id`).
    pub project: ProjectId,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An application credential: a secret standing for its user on one project with a
/// subset of the user's roles there, until `expires_at` (never when `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppCred {
    /// 32-hex uuid.
    pub id: String,
    /// Unique per user.
    pub name: IdentityName,
    /// Free text.
    pub description: Option<String>,
    /// The project its tokens are scoped to.
    pub project: ProjectId,
    /// The roles its tokens carry (those the user still has on the project).
    pub roles: Vec<RoleId>,
    /// argon2 PHC string of the secret.
    pub secret_hash: String,
    /// Expiry, if any.
    pub expires_at: Option<Timestamp>,
    /// Whether its tokens may manage application credentials.
    pub unrestricted: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

/// Keystone's `[security_compliance]` settings that decide authentication and password
/// changes (the password regex is checked by the identity service on the plain text).
/// Every value 0 / false is off, Keystone's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compliance {
    /// Failed password authentications that lock the user (0: never).
    pub lockout_failure_attempts: u32,
    /// Seconds a lock lasts (0: until an admin enables the user again).
    pub lockout_duration_secs: u64,
    /// How many of the latest passwords, the current one included, a user may not set
    /// again through the self-service change (0: any).
    pub unique_last_password_count: u32,
    /// Days a self-service password must be kept before the user may change it.
    pub minimum_password_age_days: u32,
    /// Days a new password is valid (0: forever).
    pub password_expires_days: u32,
    /// A password set at creation or by an admin expires at once, so that the user
    /// must change it before anything else.
    pub change_password_upon_first_use: bool,
}

/// Seconds per day.
const DAY_SECS: i64 = 86_400;

impl Compliance {
    /// The expiry of a password set at `now` (`by_admin`: at creation or by an admin;
    /// with `change_password_upon_first_use` it expires at once), whole seconds as
    /// Keystone stores it.
    pub fn expires_at(&self, now: Timestamp, by_admin: bool) -> Option<Timestamp> {
        self.expires_at_for(&BTreeMap::new(), now, by_admin)
    }

    /// [`Compliance::expires_at`] for a user with `options` (its exemptions).
    pub fn expires_at_for(
        &self,
        options: &BTreeMap<String, bool>,
        now: Timestamp,
        by_admin: bool,
    ) -> Option<Timestamp> {
        let opt = |k: &str| options.get(k).copied().unwrap_or(false);
        if opt(IGNORE_PASSWORD_EXPIRY) {
            return None;
        }
        if by_admin && self.change_password_upon_first_use && !opt(IGNORE_CHANGE_PASSWORD) {
            return Some(now);
        }
        (self.password_expires_days > 0).then(|| {
            let t = now.plus_secs(i64::from(self.password_expires_days) * DAY_SECS);
            Timestamp(t.0 - t.0.rem_euclid(1_000_000))
        })
    }

    /// How many earlier password hashes to keep when a password is set: the current
    /// one is checked too, so one fewer than the unique count.
    pub fn keep_history(&self) -> u32 {
        self.unique_last_password_count.saturating_sub(1)
    }

    /// Whether `u` is locked out at `now`: at least `lockout_failure_attempts`
    /// failures, the last one less than `lockout_duration` ago (or no duration).
    pub fn locked(&self, u: &User, now: Timestamp) -> bool {
        if self.lockout_failure_attempts == 0
            || u.failed_auth_count < self.lockout_failure_attempts
            || u.option(IGNORE_LOCKOUT)
        {
            return false;
        }
        if self.lockout_duration_secs == 0 {
            return true;
        }
        let secs = i64::try_from(self.lockout_duration_secs).unwrap_or(i64::MAX / 2_000_000);
        u.failed_auth_at
            .is_some_and(|at| at.plus_secs(secs).0 > now.0)
    }

    /// The whole days left before `u` may change its own password at `now`, or
    /// `None` when it may (the minimum age binds only a password the user set itself).
    pub fn minimum_age_left(&self, u: &User, now: Timestamp) -> Option<i64> {
        if self.minimum_password_age_days == 0 || !u.password_self_service {
            return None;
        }
        let until = u
            .password_created_at
            .plus_secs(i64::from(self.minimum_password_age_days) * DAY_SECS);
        (now.0 < until.0).then(|| (until.0 - now.0) / (DAY_SECS * 1_000_000))
    }

    /// The stored hashes a self-service password may not match: the current one and
    /// the latest earlier ones, `unique_last_password_count` in all (none when 0).
    pub fn reused_candidates<'u>(&self, u: &'u User) -> Vec<&'u str> {
        let n = self.unique_last_password_count as usize;
        if n == 0 {
            return Vec::new();
        }
        let mut out = vec![u.password_hash.as_str()];
        let earlier = n - 1;
        let skip = u.password_history.len().saturating_sub(earlier);
        out.extend(u.password_history[skip..].iter().map(String::as_str));
        out
    }
}

/// Keystone's message for a reused password (400).
pub fn password_reused_message(unique_count: u32) -> String {
    format!(
        "The new password cannot be identical to a previous password. The total number which includes the new password must be unique is {unique_count}."
    )
}

impl User {
    /// Whether the current password has expired at `now` (never for a user with
    /// `ignore_password_expiry`).
    pub fn password_expired(&self, now: Timestamp) -> bool {
        !self.option(IGNORE_PASSWORD_EXPIRY)
            && self.password_expires_at.is_some_and(|e| now.0 >= e.0)
    }

    /// Whether the user option `name` is set to true.
    pub fn option(&self, name: &str) -> bool {
        self.options.get(name).copied().unwrap_or(false)
    }

    /// Roles of this user on a project.
    pub fn roles_on(&self, project: &ProjectId) -> Vec<RoleId> {
        self.roles
            .iter()
            .filter(|(p, _)| p == project)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// A role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub id: RoleId,
    /// Unique name.
    pub name: IdentityName,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A claimed unique name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameClaim {
    /// What it names.
    pub kind: NameKind,
    pub domain_id: String,
    /// The name.
    pub name: IdentityName,
    /// Id of the entity that holds it.
    pub id: String,
    /// When it was claimed.
    pub claimed_at: Timestamp,
}

/// Commands on identity aggregates.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityCommand {
    /// Claim a unique name (before creating the entity that holds it).
    ClaimName {
        kind: NameKind,
        domain_id: String,
        name: IdentityName,
        /// The entity's id.
        id: String,
    },
    /// Create a project.
    CreateProject {
        id: ProjectId,
        name: IdentityName,
        description: String,
        enabled: bool,
    },
    /// Create a user.
    CreateUser {
        id: UserId,
        name: IdentityName,
        /// argon2 PHC string.
        password_hash: String,
        enabled: bool,
        /// Default project.
        default_project_id: Option<ProjectId>,
        /// Extra attributes (name -> JSON text).
        extra: BTreeMap<String, String>,
        /// Expiry of the initial password ([`Compliance::expires_at`]).
        password_expires_at: Option<Timestamp>,
    },
    /// Enable or disable a user.
    SetUserEnabled(bool),
    /// Change a user's password (by an admin, or by the user itself).
    SetPassword {
        /// argon2 PHC string of the new password.
        password_hash: String,
        /// The settings in force (expiry, history, minimum age).
        rules: Compliance,
        /// The user changes its own password (`POST /v3/users/{id}/password`): the
        /// minimum password age applies. (Reuse is checked by the caller, which can
        /// verify the plain password against the stored hashes.)
        self_service: bool,
    },
    /// Grant a role on a project to a user.
    GrantRole { project: ProjectId, role: RoleId },
    /// Create a role.
    CreateRole { id: RoleId, name: IdentityName },
    /// Release a name held by `id` (after a delete or rename of its entity).
    ReleaseName { id: String },
    /// Change a project (each `Some` field).
    UpdateProject {
        name: Option<IdentityName>,
        description: Option<String>,
        enabled: Option<bool>,
    },
    /// Delete a project.
    DeleteProject,
    /// Change a user's name, default project or extra attributes.
    UpdateUser {
        name: Option<IdentityName>,
        default_project_id: Option<Option<ProjectId>>,
        /// Extra attributes to set (JSON text) or, when `None`, remove.
        extra: BTreeMap<String, Option<String>>,
    },
    /// Delete a user.
    DeleteUser,
    /// Delete a role.
    DeleteRole,
    /// Revoke a role on a project from a user.
    RevokeRole { project: ProjectId, role: RoleId },
    /// Revoke one token of a user (by audit id) until `expires_at`.
    RevokeToken {
        audit_id: String,
        expires_at: Timestamp,
    },
    /// Create an application credential limited to the given access rules (none:
    /// not limited).
    CreateAppCred(AppCred, Vec<AccessRuleRequest>),
    /// Delete an application credential.
    DeleteAppCred { id: String },
    /// Create an EC2 credential.
    CreateEc2Cred(Ec2Cred),
    /// Delete an EC2 credential by access key.
    DeleteEc2Cred { access: String },
    /// Delete an access rule no application credential names.
    DeleteAccessRule { id: String },
    /// Record a failed password authentication under `rules` (nothing when lockout
    /// is off or the user is locked already).
    RecordAuthFailure { rules: Compliance },
    /// Forget the failed authentications (a success; nothing when there were none).
    ClearAuthFailures,
    /// Set the expiry of the current password (after a create: the settings of
    /// `user.created`'s time). Nothing when it is already that.
    SetPasswordExpiry { expires_at: Option<Timestamp> },
    /// Set (`Some`) or remove (`None`) user options ([`USER_OPTIONS`]).
    SetUserOptions(BTreeMap<String, Option<bool>>),
}

/// Events of identity aggregates (variant order frozen: new ones go at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IdentityEvent {
    /// `identity.name_claimed` (name-index subject)
    NameClaimed {
        kind: NameKind,
        domain_id: String,
        name: IdentityName,
        /// Holder.
        id: String,
        at: Timestamp,
    },
    /// `project.created`
    ProjectCreated {
        id: ProjectId,
        name: IdentityName,
        domain_id: String,
        description: String,
        enabled: bool,
        at: Timestamp,
    },
    /// `user.created`
    UserCreated {
        id: UserId,
        name: IdentityName,
        domain_id: String,
        /// argon2 PHC string.
        password_hash: String,
        enabled: bool,
        /// Default project.
        default_project_id: Option<ProjectId>,
        at: Timestamp,
    },
    /// `user.enabled_set`
    UserEnabledSet {
        /// New value.
        enabled: bool,
        at: Timestamp,
    },
    /// `user.password_changed`
    UserPasswordChanged {
        /// argon2 PHC string.
        password_hash: String,
        at: Timestamp,
    },
    /// `user.role_granted`
    UserRoleGranted {
        project: ProjectId,
        role: RoleId,
        at: Timestamp,
    },
    /// `role.created`
    RoleCreated {
        id: RoleId,
        name: IdentityName,
        at: Timestamp,
    },
    /// `identity.name_released` (name-index subject): the name is free again.
    NameReleased { id: String, at: Timestamp },
    /// `project.updated`
    ProjectUpdated {
        name: Option<IdentityName>,
        description: Option<String>,
        enabled: Option<bool>,
        at: Timestamp,
    },
    /// `project.deleted`
    ProjectDeleted { at: Timestamp },
    /// `user.updated`
    UserUpdated {
        name: Option<IdentityName>,
        /// `Some(None)` clears it.
        default_project_id: Option<Option<ProjectId>>,
        /// Extra attributes set (JSON text) or removed (`None`).
        extra: BTreeMap<String, Option<String>>,
        at: Timestamp,
    },
    /// `user.deleted`
    UserDeleted { at: Timestamp },
    /// `role.deleted`
    RoleDeleted { at: Timestamp },
    /// `user.role_revoked`
    UserRoleRevoked {
        project: ProjectId,
        role: RoleId,
        at: Timestamp,
    },
    /// `user.token_revoked`
    UserTokenRevoked {
        audit_id: String,
        /// The token's own expiry: the revocation is forgotten after it.
        expires_at: Timestamp,
        at: Timestamp,
    },
    /// `user.app_cred_created`
    AppCredCreated { cred: AppCred, at: Timestamp },
    /// `user.app_cred_deleted`
    AppCredDeleted { id: String, at: Timestamp },
    /// `user.ec2_cred_created`
    Ec2CredCreated { cred: Ec2Cred, at: Timestamp },
    /// `user.ec2_cred_deleted`
    Ec2CredDeleted { access: String, at: Timestamp },
    /// `user.app_cred_access_rules_set`: credential `cred` (created in the same
    /// append) is limited to `rules`; those the user does not have yet become its rules.
    AppCredAccessRulesSet {
        cred: String,
        rules: Vec<AccessRule>,
        at: Timestamp,
    },
    /// `user.access_rule_deleted`
    AccessRuleDeleted { id: String, at: Timestamp },
    /// `user.password_set`: a new password with what the settings decided when it
    /// was set (superseding `user.password_changed`, which folds as an admin reset
    /// without expiry or history).
    UserPasswordSet {
        /// argon2 PHC string.
        password_hash: String,
        /// Expiry, if any.
        expires_at: Option<Timestamp>,
        /// Set by the user itself (the minimum age applies to it).
        self_service: bool,
        /// How many earlier hashes the user keeps (the replaced one included).
        keep_history: u32,
        at: Timestamp,
    },
    /// `user.auth_failed`: a failed password authentication; `failures` is the new
    /// consecutive count (1 again after an expired lock).
    UserAuthFailed { failures: u32, at: Timestamp },
    /// `user.auth_failures_cleared`: a success, or an admin enabling the user.
    UserAuthFailuresCleared { at: Timestamp },
    /// `user.password_expiry_set`: the current password's expiry.
    UserPasswordExpirySet {
        expires_at: Option<Timestamp>,
        at: Timestamp,
    },
    /// `user.options_set`: user options set (`Some`) or removed (`None`).
    UserOptionsSet {
        options: BTreeMap<String, Option<bool>>,
        at: Timestamp,
    },
}

impl IdentityEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            IdentityEvent::NameClaimed { .. } => "identity.name_claimed",
            IdentityEvent::ProjectCreated { .. } => "project.created",
            IdentityEvent::UserCreated { .. } => "user.created",
            IdentityEvent::UserEnabledSet { .. } => "user.enabled_set",
            IdentityEvent::UserPasswordChanged { .. } => "user.password_changed",
            IdentityEvent::UserRoleGranted { .. } => "user.role_granted",
            IdentityEvent::RoleCreated { .. } => "role.created",
            IdentityEvent::NameReleased { .. } => "identity.name_released",
            IdentityEvent::ProjectUpdated { .. } => "project.updated",
            IdentityEvent::ProjectDeleted { .. } => "project.deleted",
            IdentityEvent::UserUpdated { .. } => "user.updated",
            IdentityEvent::UserDeleted { .. } => "user.deleted",
            IdentityEvent::RoleDeleted { .. } => "role.deleted",
            IdentityEvent::UserRoleRevoked { .. } => "user.role_revoked",
            IdentityEvent::UserTokenRevoked { .. } => "user.token_revoked",
            IdentityEvent::AppCredCreated { .. } => "user.app_cred_created",
            IdentityEvent::AppCredDeleted { .. } => "user.app_cred_deleted",
            IdentityEvent::Ec2CredCreated { .. } => "user.ec2_cred_created",
            IdentityEvent::Ec2CredDeleted { .. } => "user.ec2_cred_deleted",
            IdentityEvent::AppCredAccessRulesSet { .. } => "user.app_cred_access_rules_set",
            IdentityEvent::AccessRuleDeleted { .. } => "user.access_rule_deleted",
            IdentityEvent::UserPasswordSet { .. } => "user.password_set",
            IdentityEvent::UserAuthFailed { .. } => "user.auth_failed",
            IdentityEvent::UserAuthFailuresCleared { .. } => "user.auth_failures_cleared",
            IdentityEvent::UserPasswordExpirySet { .. } => "user.password_expiry_set",
            IdentityEvent::UserOptionsSet { .. } => "user.options_set",
        }
    }
}

/// The state of one identity subject.
// Most identity subjects are users, so boxing the large variant would not save memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IdentityState {
    /// A name-index subject.
    Name(NameClaim),
    /// A project subject.
    Project(Project),
    /// A user subject.
    User(User),
    /// A role subject.
    Role(Role),
}

/// What `decide` needs besides the aggregate's own state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refs<'a> {
    /// The project a `GrantRole` names.
    pub project: Option<&'a Project>,
    /// The role a `GrantRole` names.
    pub role: Option<&'a Role>,
}

fn conflict(kind: NameKind, name: &IdentityName, domain: &str) -> DomainError {
    DomainError::Conflict(format!(
        "Conflict occurred attempting to store {} - Duplicate entry found with name {name} at domain ID {domain}.",
        kind.as_str()
    ))
}

fn bad_hash(h: &str) -> bool {
    !h.starts_with("$argon2")
}

/// Decides an identity command on the state of its subject.
pub fn decide(
    state: Option<&IdentityState>,
    cmd: IdentityCommand,
    refs: Refs<'_>,
    now: Timestamp,
) -> Result<Vec<IdentityEvent>, DomainError> {
    use IdentityCommand as C;
    use IdentityEvent as E;
    match cmd {
        C::ClaimName {
            kind,
            domain_id,
            name,
            id,
        } => {
            if domain_id != DEFAULT_DOMAIN_ID {
                return Err(DomainError::NotFound {
                    kind: "Domain",
                    id: domain_id,
                });
            }
            match state {
                Some(IdentityState::Name(c)) if c.id == id => Ok(vec![]),
                Some(_) => Err(conflict(kind, &name, &domain_id)),
                None => Ok(vec![E::NameClaimed {
                    kind,
                    domain_id,
                    name,
                    id,
                    at: now,
                }]),
            }
        }
        C::CreateProject {
            id,
            name,
            description,
            enabled,
        } => {
            if state.is_some() {
                return Err(DomainError::AlreadyExists {
                    kind: "Project",
                    id: id.to_string(),
                });
            }
            Ok(vec![E::ProjectCreated {
                id,
                name,
                domain_id: DEFAULT_DOMAIN_ID.into(),
                description,
                enabled,
                at: now,
            }])
        }
        C::CreateUser {
            id,
            name,
            password_hash,
            enabled,
            default_project_id,
            extra,
            password_expires_at,
        } => {
            if state.is_some() {
                return Err(DomainError::AlreadyExists {
                    kind: "User",
                    id: id.to_string(),
                });
            }
            if bad_hash(&password_hash) {
                return Err(DomainError::BadRequest(
                    "password must be stored as an argon2 hash".into(),
                ));
            }
            let mut evs = vec![E::UserCreated {
                id,
                name,
                domain_id: DEFAULT_DOMAIN_ID.into(),
                password_hash,
                enabled,
                default_project_id,
                at: now,
            }];
            // Extra attributes ride along in the same append.
            if !extra.is_empty() {
                evs.push(E::UserUpdated {
                    name: None,
                    default_project_id: None,
                    extra: extra.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                    at: now,
                });
            }
            if password_expires_at.is_some() {
                evs.push(E::UserPasswordExpirySet {
                    expires_at: password_expires_at,
                    at: now,
                });
            }
            Ok(evs)
        }
        C::SetUserEnabled(enabled) => {
            let u = user(state)?;
            // As Keystone: setting `enabled: true` unlocks a locked-out user, even
            // one that is enabled already.
            let unlock = (enabled && u.failed_auth_count > 0)
                .then_some(E::UserAuthFailuresCleared { at: now });
            if u.enabled == enabled {
                return Ok(unlock.into_iter().collect());
            }
            let mut evs = vec![E::UserEnabledSet { enabled, at: now }];
            evs.extend(unlock);
            // As Keystone: disabling a user deletes its application credentials.
            if !enabled {
                evs.extend(u.app_creds.keys().map(|id| E::AppCredDeleted {
                    id: id.clone(),
                    at: now,
                }));
            }
            Ok(evs)
        }
        C::SetPassword {
            password_hash,
            rules,
            self_service,
        } => {
            let u = user(state)?;
            if bad_hash(&password_hash) {
                return Err(DomainError::BadRequest(
                    "password must be stored as an argon2 hash".into(),
                ));
            }
            if self_service && u.option(LOCK_PASSWORD) {
                return Err(DomainError::BadRequest(
                    "You cannot change your password at this time due to password policy disallowing password changes. Please contact your administrator to reset your password.".into(),
                ));
            }
            if self_service {
                if let Some(days_left) = rules.minimum_age_left(u, now) {
                    return Err(DomainError::BadRequest(format!(
                        "You cannot change your password at this time due to the minimum password age. Once you change your password, it must be used for {} day(s) before it can be changed. Please try again in {days_left} day(s) or contact your administrator to reset your password.",
                        rules.minimum_password_age_days
                    )));
                }
            }
            Ok(vec![E::UserPasswordSet {
                password_hash,
                expires_at: rules.expires_at_for(&u.options, now, !self_service),
                self_service,
                keep_history: rules.keep_history(),
                at: now,
            }])
        }
        C::GrantRole { project, role } => {
            let u = user(state)?;
            if refs.project.is_none_or(|p| p.id != project) {
                return Err(DomainError::NotFound {
                    kind: "Project",
                    id: project.to_string(),
                });
            }
            if refs.role.is_none_or(|r| r.id != role) {
                return Err(DomainError::NotFound {
                    kind: "Role",
                    id: role.to_string(),
                });
            }
            if u.roles.contains(&(project.clone(), role.clone())) {
                return Ok(vec![]);
            }
            Ok(vec![E::UserRoleGranted {
                project,
                role,
                at: now,
            }])
        }
        C::CreateRole { id, name } => {
            if state.is_some() {
                return Err(DomainError::AlreadyExists {
                    kind: "Role",
                    id: id.to_string(),
                });
            }
            Ok(vec![E::RoleCreated { id, name, at: now }])
        }
        C::ReleaseName { id } => match state {
            Some(IdentityState::Name(c)) if c.id == id => Ok(vec![E::NameReleased { id, at: now }]),
            _ => Ok(vec![]),
        },
        C::UpdateProject {
            name,
            description,
            enabled,
        } => {
            let Some(IdentityState::Project(p)) = state else {
                return Err(not_found("Project"));
            };
            let name = name.filter(|n| *n != p.name);
            let description = description.filter(|d| *d != p.description);
            let enabled = enabled.filter(|e| *e != p.enabled);
            if name.is_none() && description.is_none() && enabled.is_none() {
                return Ok(vec![]);
            }
            Ok(vec![E::ProjectUpdated {
                name,
                description,
                enabled,
                at: now,
            }])
        }
        C::DeleteProject => match state {
            Some(IdentityState::Project(_)) => Ok(vec![E::ProjectDeleted { at: now }]),
            _ => Err(not_found("Project")),
        },
        C::UpdateUser {
            name,
            default_project_id,
            mut extra,
        } => {
            let u = user(state)?;
            let name = name.filter(|n| *n != u.name);
            let default_project_id = default_project_id.filter(|d| *d != u.default_project_id);
            extra.retain(|k, v| u.extra.get(k) != v.as_ref());
            if name.is_none() && default_project_id.is_none() && extra.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![E::UserUpdated {
                name,
                default_project_id,
                extra,
                at: now,
            }])
        }
        C::DeleteUser => {
            user(state)?;
            Ok(vec![E::UserDeleted { at: now }])
        }
        C::DeleteRole => match state {
            Some(IdentityState::Role(_)) => Ok(vec![E::RoleDeleted { at: now }]),
            _ => Err(not_found("Role")),
        },
        C::RevokeRole { project, role } => {
            let u = user(state)?;
            if !u.roles.contains(&(project.clone(), role.clone())) {
                return Err(DomainError::NotFound {
                    kind: "RoleAssignment",
                    id: format!("{project}/{role}"),
                });
            }
            // As Keystone: losing a role on a project deletes the user's application
            // credentials there.
            let creds: Vec<IdentityEvent> = u
                .app_creds
                .values()
                .filter(|c| c.project == project)
                .map(|c| E::AppCredDeleted {
                    id: c.id.clone(),
                    at: now,
                })
                .collect();
            let mut evs = vec![E::UserRoleRevoked {
                project,
                role,
                at: now,
            }];
            evs.extend(creds);
            Ok(evs)
        }
        C::RevokeToken {
            audit_id,
            expires_at,
        } => {
            let u = user(state)?;
            if u.revoked.contains_key(&audit_id) || expires_at <= now {
                return Ok(vec![]);
            }
            Ok(vec![E::UserTokenRevoked {
                audit_id,
                expires_at,
                at: now,
            }])
        }
        C::CreateAppCred(cred, wanted) => {
            let u = user(state)?;
            if bad_hash(&cred.secret_hash) {
                return Err(DomainError::BadRequest(
                    "secret must be stored as an argon2 hash".into(),
                ));
            }
            if u.app_creds.contains_key(&cred.id) {
                return Err(DomainError::AlreadyExists {
                    kind: "ApplicationCredential",
                    id: cred.id,
                });
            }
            if u.app_creds.values().any(|c| c.name == cred.name) {
                return Err(DomainError::Conflict(format!(
                    "Conflict occurred attempting to store application_credential - Duplicate entry found with name {}.",
                    cred.name
                )));
            }
            let rules = resolve_rules(u, wanted)?;
            let id = cred.id.clone();
            let mut evs = vec![E::AppCredCreated { cred, at: now }];
            if !rules.is_empty() {
                evs.push(E::AppCredAccessRulesSet {
                    cred: id,
                    rules,
                    at: now,
                });
            }
            Ok(evs)
        }
        C::DeleteAppCred { id } => {
            let u = user(state)?;
            if !u.app_creds.contains_key(&id) {
                return Err(DomainError::NotFound {
                    kind: "ApplicationCredential",
                    id,
                });
            }
            Ok(vec![E::AppCredDeleted { id, at: now }])
        }
        C::CreateEc2Cred(cred) => {
            let u = user(state)?;
            if u.ec2_creds.contains_key(&cred.access) {
                return Err(DomainError::AlreadyExists {
                    kind: "Ec2Credential",
                    id: cred.access,
                });
            }
            Ok(vec![E::Ec2CredCreated { cred, at: now }])
        }
        C::DeleteEc2Cred { access } => {
            let u = user(state)?;
            if !u.ec2_creds.contains_key(&access) {
                return Err(DomainError::NotFound {
                    kind: "Ec2Credential",
                    id: access,
                });
            }
            Ok(vec![E::Ec2CredDeleted { access, at: now }])
        }
        C::DeleteAccessRule { id } => {
            let u = user(state)?;
            if !u.access_rules.contains_key(&id) {
                return Err(DomainError::NotFound {
                    kind: "AccessRule",
                    id,
                });
            }
            if u.app_cred_rules.values().any(|ids| ids.contains(&id)) {
                return Err(DomainError::Forbidden(
                    "May not delete access rule in use".into(),
                ));
            }
            Ok(vec![E::AccessRuleDeleted { id, at: now }])
        }
        C::RecordAuthFailure { rules } => {
            let u = user(state)?;
            if rules.lockout_failure_attempts == 0
                || u.option(IGNORE_LOCKOUT)
                || rules.locked(u, now)
            {
                return Ok(vec![]);
            }
            // A lock that has run out starts the count again (Keystone resets it).
            let failures = if u.failed_auth_count >= rules.lockout_failure_attempts {
                1
            } else {
                u.failed_auth_count + 1
            };
            Ok(vec![E::UserAuthFailed { failures, at: now }])
        }
        C::ClearAuthFailures => {
            let u = user(state)?;
            if u.failed_auth_count == 0 {
                return Ok(vec![]);
            }
            Ok(vec![E::UserAuthFailuresCleared { at: now }])
        }
        C::SetUserOptions(mut options) => {
            let u = user(state)?;
            if let Some(k) = options.keys().find(|k| !USER_OPTIONS.contains(&k.as_str())) {
                return Err(DomainError::BadRequest(format!(
                    "Invalid input for field 'options': unknown option {k:?}."
                )));
            }
            options.retain(|k, v| u.options.get(k) != v.as_ref());
            if options.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![E::UserOptionsSet { options, at: now }])
        }
        C::SetPasswordExpiry { expires_at } => {
            let u = user(state)?;
            if u.password_expires_at == expires_at {
                return Ok(vec![]);
            }
            Ok(vec![E::UserPasswordExpirySet {
                expires_at,
                at: now,
            }])
        }
    }
}

/// The rules a new credential of `u` is limited to: each asked-for rule, or the user's
/// identical one (so a rule is stored once per user), each once, in the order asked.
fn resolve_rules(u: &User, wanted: Vec<AccessRuleRequest>) -> Result<Vec<AccessRule>, DomainError> {
    let mut out: Vec<AccessRule> = Vec::new();
    for w in wanted {
        let rule = match w {
            AccessRuleRequest::Existing(id) => match u.access_rules.get(&id) {
                Some(r) => r.clone(),
                None => {
                    return Err(DomainError::NotFound {
                        kind: "AccessRule",
                        id,
                    })
                }
            },
            AccessRuleRequest::New(new) => {
                let known = u
                    .access_rules
                    .values()
                    .chain(out.iter())
                    .find(|r| r.same_as(&new))
                    .cloned();
                match known {
                    Some(r) => r,
                    None if u.access_rules.contains_key(&new.id)
                        || out.iter().any(|r| r.id == new.id) =>
                    {
                        return Err(DomainError::AlreadyExists {
                            kind: "AccessRule",
                            id: new.id,
                        })
                    }
                    None => new,
                }
            }
        };
        if !out.iter().any(|r| r.id == rule.id) {
            out.push(rule);
        }
    }
    Ok(out)
}

fn not_found(kind: &'static str) -> DomainError {
    DomainError::NotFound {
        kind,
        id: String::new(),
    }
}

fn user(state: Option<&IdentityState>) -> Result<&User, DomainError> {
    match state {
        Some(IdentityState::User(u)) => Ok(u),
        _ => Err(DomainError::NotFound {
            kind: "User",
            id: String::new(),
        }),
    }
}

/// A new password on `u`: the replaced hash joins the history, which keeps the latest
/// `keep` hashes; the revision moves on, so earlier tokens stop working.
fn set_password(
    u: &mut User,
    hash: &str,
    expires_at: Option<Timestamp>,
    self_service: bool,
    keep: u32,
    at: Timestamp,
) {
    let old = std::mem::replace(&mut u.password_hash, hash.to_string());
    u.password_history.push(old);
    let drop = u.password_history.len().saturating_sub(keep as usize);
    u.password_history.drain(..drop);
    u.password_created_at = at;
    u.password_expires_at = expires_at;
    u.password_self_service = self_service;
    u.revision = u.revision.saturating_add(1);
    u.updated_at = at;
}

/// Applies an identity event. Total: an event that does not fit the state (never
/// produced by `decide`) leaves the state as it is.
pub fn evolve(state: Option<IdentityState>, ev: &IdentityEvent) -> Option<IdentityState> {
    use IdentityEvent as E;
    match (state, ev) {
        (
            None,
            E::NameClaimed {
                kind,
                domain_id,
                name,
                id,
                at,
            },
        ) => Some(IdentityState::Name(NameClaim {
            kind: *kind,
            domain_id: domain_id.clone(),
            name: name.clone(),
            id: id.clone(),
            claimed_at: *at,
        })),
        (
            None,
            E::ProjectCreated {
                id,
                name,
                domain_id,
                description,
                enabled,
                at,
            },
        ) => Some(IdentityState::Project(Project {
            id: id.clone(),
            name: name.clone(),
            domain_id: domain_id.clone(),
            description: description.clone(),
            enabled: *enabled,
            created_at: *at,
        })),
        (
            None,
            E::UserCreated {
                id,
                name,
                domain_id,
                password_hash,
                enabled,
                default_project_id,
                at,
            },
        ) => Some(IdentityState::User(User {
            id: id.clone(),
            name: name.clone(),
            domain_id: domain_id.clone(),
            password_hash: password_hash.clone(),
            enabled: *enabled,
            revision: 0,
            default_project_id: default_project_id.clone(),
            roles: BTreeSet::new(),
            created_at: *at,
            updated_at: *at,
            revoked: BTreeMap::new(),
            app_creds: BTreeMap::new(),
            extra: BTreeMap::new(),
            ec2_creds: BTreeMap::new(),
            access_rules: BTreeMap::new(),
            app_cred_rules: BTreeMap::new(),
            password_created_at: *at,
            password_expires_at: None,
            password_self_service: false,
            password_history: Vec::new(),
            failed_auth_count: 0,
            failed_auth_at: None,
            options: BTreeMap::new(),
        })),
        (None, E::RoleCreated { id, name, at }) => Some(IdentityState::Role(Role {
            id: id.clone(),
            name: name.clone(),
            created_at: *at,
        })),
        (Some(IdentityState::User(mut u)), E::UserEnabledSet { enabled, at }) => {
            if !*enabled {
                u.revision = u.revision.saturating_add(1);
            }
            u.enabled = *enabled;
            u.updated_at = *at;
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::UserPasswordChanged { password_hash, at }) => {
            // Before `user.password_set`: an admin reset, no expiry, no history.
            set_password(&mut u, password_hash, None, false, 0, *at);
            Some(IdentityState::User(u))
        }
        (
            Some(IdentityState::User(mut u)),
            E::UserPasswordSet {
                password_hash,
                expires_at,
                self_service,
                keep_history,
                at,
            },
        ) => {
            set_password(
                &mut u,
                password_hash,
                *expires_at,
                *self_service,
                *keep_history,
                *at,
            );
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::UserAuthFailed { failures, at }) => {
            u.failed_auth_count = *failures;
            u.failed_auth_at = Some(*at);
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::UserAuthFailuresCleared { .. }) => {
            u.failed_auth_count = 0;
            u.failed_auth_at = None;
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::UserPasswordExpirySet { expires_at, .. }) => {
            u.password_expires_at = *expires_at;
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::UserOptionsSet { options, at }) => {
            for (k, v) in options {
                match v {
                    Some(v) => u.options.insert(k.clone(), *v),
                    None => u.options.remove(k),
                };
            }
            u.updated_at = *at;
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::UserRoleGranted { project, role, at }) => {
            u.roles.insert((project.clone(), role.clone()));
            u.updated_at = *at;
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::Name(c)), E::NameReleased { id, .. }) => {
            if c.id == *id {
                None
            } else {
                Some(IdentityState::Name(c))
            }
        }
        (
            Some(IdentityState::Project(mut p)),
            E::ProjectUpdated {
                name,
                description,
                enabled,
                ..
            },
        ) => {
            if let Some(n) = name {
                p.name = n.clone();
            }
            if let Some(d) = description {
                p.description = d.clone();
            }
            if let Some(e) = enabled {
                p.enabled = *e;
            }
            Some(IdentityState::Project(p))
        }
        (Some(IdentityState::Project(_)), E::ProjectDeleted { .. }) => None,
        (
            Some(IdentityState::User(mut u)),
            E::UserUpdated {
                name,
                default_project_id,
                extra,
                at,
            },
        ) => {
            if let Some(n) = name {
                u.name = n.clone();
            }
            if let Some(d) = default_project_id {
                u.default_project_id = d.clone();
            }
            for (k, v) in extra {
                match v {
                    Some(v) => u.extra.insert(k.clone(), v.clone()),
                    None => u.extra.remove(k),
                };
            }
            u.updated_at = *at;
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(_)), E::UserDeleted { .. }) => None,
        (Some(IdentityState::Role(_)), E::RoleDeleted { .. }) => None,
        (Some(IdentityState::User(mut u)), E::UserRoleRevoked { project, role, at }) => {
            u.roles.remove(&(project.clone(), role.clone()));
            u.updated_at = *at;
            Some(IdentityState::User(u))
        }
        (
            Some(IdentityState::User(mut u)),
            E::UserTokenRevoked {
                audit_id,
                expires_at,
                at,
            },
        ) => {
            // Forget revocations of tokens that have expired on their own.
            u.revoked.retain(|_, exp| *exp > *at);
            u.revoked.insert(audit_id.clone(), *expires_at);
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::AppCredCreated { cred, .. }) => {
            u.app_creds.insert(cred.id.clone(), cred.clone());
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::AppCredDeleted { id, .. }) => {
            u.app_creds.remove(id);
            u.app_cred_rules.remove(id);
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::Ec2CredCreated { cred, .. }) => {
            u.ec2_creds.insert(cred.access.clone(), cred.clone());
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::Ec2CredDeleted { access, .. }) => {
            u.ec2_creds.remove(access);
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::AppCredAccessRulesSet { cred, rules, .. }) => {
            for r in rules {
                u.access_rules
                    .entry(r.id.clone())
                    .or_insert_with(|| r.clone());
            }
            u.app_cred_rules
                .insert(cred.clone(), rules.iter().map(|r| r.id.clone()).collect());
            Some(IdentityState::User(u))
        }
        (Some(IdentityState::User(mut u)), E::AccessRuleDeleted { id, .. }) => {
            u.access_rules.remove(id);
            Some(IdentityState::User(u))
        }
        (s, _) => s,
    }
}
