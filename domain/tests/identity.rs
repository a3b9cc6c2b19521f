//! Identity aggregates: given events, when a command, then events or a refusal.

use domain::identity::{
    self, IdentityCommand as C, IdentityEvent as E, IdentityName, IdentityState, NameKind, Refs,
    RoleId,
};
use domain::{DomainError, ProjectId, Timestamp, UserId};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

fn name(s: &str) -> IdentityName {
    IdentityName::new(s).unwrap()
}

fn given(events: &[E]) -> Option<IdentityState> {
    events.iter().fold(None, identity::evolve)
}

fn when(state: &Option<IdentityState>, cmd: C) -> Result<Vec<E>, DomainError> {
    identity::decide(state.as_ref(), cmd, Refs::default(), Timestamp(100))
}

fn user_created() -> E {
    E::UserCreated {
        id: UserId::new("u1").unwrap(),
        name: name("alice"),
        domain_id: "default".into(),
        password_hash: HASH.into(),
        enabled: true,
        default_project_id: None,
        at: Timestamp(1),
    }
}

fn user(state: &Option<IdentityState>) -> domain::identity::User {
    match state {
        Some(IdentityState::User(u)) => u.clone(),
        other => panic!("not a user: {other:?}"),
    }
}

#[test]
fn a_free_name_is_claimed_once_and_then_conflicts() {
    let claim = |id: &str| C::ClaimName {
        kind: NameKind::User,
        domain_id: "default".into(),
        name: name("alice"),
        id: id.into(),
    };
    let evs = when(&None, claim("u1")).unwrap();
    assert_eq!(evs.len(), 1);
    let state = given(&evs);
    // The same holder again (a retried create): nothing to do.
    assert_eq!(when(&state, claim("u1")).unwrap(), vec![]);
    // Another holder: the Keystone duplicate-entry conflict.
    let err = when(&state, claim("u2")).unwrap_err();
    assert!(
        matches!(&err, DomainError::Conflict(m) if m.contains("Duplicate entry found with name alice"))
    );
}

#[test]
fn names_only_exist_in_the_default_domain() {
    let err = when(
        &None,
        C::ClaimName {
            kind: NameKind::Project,
            domain_id: "other".into(),
            name: name("demo"),
            id: "p1".into(),
        },
    )
    .unwrap_err();
    assert!(matches!(err, DomainError::NotFound { kind: "Domain", .. }));
}

#[test]
fn invalid_names_cannot_be_built() {
    assert!(IdentityName::new("").is_err());
    assert!(IdentityName::new(" padded").is_err());
    assert!(IdentityName::new("bad\nname").is_err());
    assert!(IdentityName::new("x".repeat(256)).is_err());
    assert!(IdentityName::new("ok name.with dots").is_ok());
}

#[test]
fn create_user_then_creating_it_again_is_refused() {
    let cmd = C::CreateUser {
        id: UserId::new("u1").unwrap(),
        name: name("alice"),
        password_hash: HASH.into(),
        enabled: true,
        default_project_id: None,
        extra: Default::default(),
        password_expires_at: None,
    };
    let evs = when(&None, cmd.clone()).unwrap();
    let state = given(&evs);
    let u = user(&state);
    assert_eq!(u.name.as_str(), "alice");
    assert_eq!(u.revision, 0);
    assert!(u.enabled);
    assert!(matches!(
        when(&state, cmd).unwrap_err(),
        DomainError::AlreadyExists { kind: "User", .. }
    ));
}

#[test]
fn a_plain_password_is_never_stored() {
    let err = when(
        &None,
        C::CreateUser {
            id: UserId::new("u1").unwrap(),
            name: name("alice"),
            password_hash: "secret".into(),
            enabled: true,
            default_project_id: None,
            extra: Default::default(),
            password_expires_at: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, DomainError::BadRequest(_)));
}

#[test]
fn disabling_and_changing_the_password_bump_the_revision() {
    let mut state = given(&[user_created()]);
    let evs = when(&state, C::SetUserEnabled(false)).unwrap();
    state = evs.iter().fold(state, identity::evolve);
    assert_eq!(user(&state).revision, 1);
    assert!(!user(&state).enabled);
    // Disabling a disabled user: nothing.
    assert_eq!(when(&state, C::SetUserEnabled(false)).unwrap(), vec![]);
    // Enabling again does not bring old tokens back: the revision stays.
    let evs = when(&state, C::SetUserEnabled(true)).unwrap();
    state = evs.iter().fold(state, identity::evolve);
    assert_eq!(user(&state).revision, 1);
    assert!(user(&state).enabled);
    let new_hash = "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXI$aGFzaDI";
    let evs = when(
        &state,
        C::SetPassword {
            password_hash: new_hash.into(),
            rules: Default::default(),
            self_service: false,
        },
    )
    .unwrap();
    state = evs.iter().fold(state, identity::evolve);
    assert_eq!(user(&state).revision, 2);
    assert_eq!(user(&state).password_hash, new_hash);
}

#[test]
fn commands_on_a_missing_user_are_not_found() {
    assert!(matches!(
        when(&None, C::SetUserEnabled(false)).unwrap_err(),
        DomainError::NotFound { kind: "User", .. }
    ));
}

#[test]
fn granting_a_role_needs_the_project_and_the_role_and_is_idempotent() {
    let state = given(&[user_created()]);
    let project = match given(&[E::ProjectCreated {
        id: ProjectId::new("p1").unwrap(),
        name: name("demo"),
        domain_id: "default".into(),
        description: String::new(),
        enabled: true,
        at: Timestamp(2),
    }]) {
        Some(IdentityState::Project(p)) => p,
        other => panic!("{other:?}"),
    };
    let role = match given(&[E::RoleCreated {
        id: RoleId::new("r1").unwrap(),
        name: name("member"),
        at: Timestamp(3),
    }]) {
        Some(IdentityState::Role(r)) => r,
        other => panic!("{other:?}"),
    };
    let grant = C::GrantRole {
        project: project.id.clone(),
        role: role.id.clone(),
    };
    let decide = |s: &Option<IdentityState>, refs| {
        identity::decide(s.as_ref(), grant.clone(), refs, Timestamp(9))
    };
    // Unknown project, unknown role: 404s, nothing written.
    assert!(matches!(
        decide(
            &state,
            Refs {
                project: None,
                role: Some(&role)
            }
        )
        .unwrap_err(),
        DomainError::NotFound {
            kind: "Project",
            ..
        }
    ));
    assert!(matches!(
        decide(
            &state,
            Refs {
                project: Some(&project),
                role: None
            }
        )
        .unwrap_err(),
        DomainError::NotFound { kind: "Role", .. }
    ));
    let refs = Refs {
        project: Some(&project),
        role: Some(&role),
    };
    let evs = decide(&state, refs).unwrap();
    assert_eq!(evs.len(), 1);
    let state = evs.iter().fold(state, identity::evolve);
    assert_eq!(user(&state).roles_on(&project.id), vec![role.id.clone()]);
    assert_eq!(decide(&state, refs).unwrap(), vec![]);
}

#[test]
fn evolve_ignores_events_that_do_not_fit() {
    // A user event on no state stays nothing; a create on an existing state keeps it.
    assert_eq!(
        identity::evolve(
            None,
            &E::UserEnabledSet {
                enabled: false,
                at: Timestamp(1)
            }
        ),
        None
    );
    let state = given(&[user_created()]);
    assert_eq!(identity::evolve(state.clone(), &user_created()), state);
}

#[test]
fn deletes_fold_entities_away_and_release_only_the_holders_name() {
    let state = given(&[user_created()]);
    let evs = when(&state, C::DeleteUser).unwrap();
    assert_eq!(evs, vec![E::UserDeleted { at: Timestamp(100) }]);
    let mut all = vec![user_created()];
    all.extend(evs);
    assert_eq!(given(&all), None);
    assert!(matches!(
        when(&None, C::DeleteUser),
        Err(DomainError::NotFound { kind: "User", .. })
    ));
    let claimed = given(&[E::NameClaimed {
        kind: NameKind::User,
        domain_id: "default".into(),
        name: name("alice"),
        id: "u1".into(),
        at: Timestamp(1),
    }]);
    // Another id cannot release it; the holder can, and then it is free.
    assert_eq!(
        when(&claimed, C::ReleaseName { id: "u2".into() }).unwrap(),
        vec![]
    );
    let evs = when(&claimed, C::ReleaseName { id: "u1".into() }).unwrap();
    assert_eq!(
        identity::evolve(claimed.clone(), &evs[0]),
        None,
        "a released name is free"
    );
}

#[test]
fn a_revoked_token_is_remembered_until_it_expires() {
    let state = given(&[user_created()]);
    let revoke = |a: &str, exp: i64| C::RevokeToken {
        audit_id: a.into(),
        expires_at: Timestamp(exp),
    };
    // Already expired: nothing to remember.
    assert_eq!(when(&state, revoke("a", 50)).unwrap(), vec![]);
    let evs = when(&state, revoke("a", 200)).unwrap();
    let state = evs.iter().fold(state, identity::evolve);
    assert!(user(&state).revoked.contains_key("a"));
    assert_eq!(
        when(&state, revoke("a", 200)).unwrap(),
        vec![],
        "idempotent"
    );
    // A later revocation drops the ones past their expiry.
    let later = E::UserTokenRevoked {
        audit_id: "b".into(),
        expires_at: Timestamp(900),
        at: Timestamp(300),
    };
    let state = identity::evolve(state, &later);
    let u = user(&state);
    assert!(!u.revoked.contains_key("a") && u.revoked.contains_key("b"));
}

#[test]
fn application_credential_names_are_unique_per_user_and_secrets_hashed() {
    let state = given(&[user_created()]);
    let cred = |id: &str, n: &str, hash: &str| domain::identity::AppCred {
        id: id.into(),
        name: name(n),
        description: None,
        project: ProjectId::new("p1").unwrap(),
        roles: vec![RoleId::new("r1").unwrap()],
        secret_hash: hash.into(),
        expires_at: None,
        unrestricted: false,
        created_at: Timestamp(1),
    };
    assert!(matches!(
        when(&state, C::CreateAppCred(cred("c1", "ci", "plain"), vec![])),
        Err(DomainError::BadRequest(_))
    ));
    let evs = when(&state, C::CreateAppCred(cred("c1", "ci", HASH), vec![])).unwrap();
    let state = evs.iter().fold(state, identity::evolve);
    assert!(matches!(
        when(&state, C::CreateAppCred(cred("c2", "ci", HASH), vec![])),
        Err(DomainError::Conflict(m)) if m.contains("Duplicate entry")
    ));
    let evs = when(&state, C::DeleteAppCred { id: "c1".into() }).unwrap();
    let state = evs.iter().fold(state, identity::evolve);
    assert!(user(&state).app_creds.is_empty());
    assert!(matches!(
        when(&state, C::DeleteAppCred { id: "c1".into() }),
        Err(DomainError::NotFound { .. })
    ));
}

#[test]
fn losing_a_role_or_being_disabled_deletes_application_credentials() {
    let mut state = given(&[user_created()]);
    let p = |s: &str| ProjectId::new(s).unwrap();
    for (id, project) in [("c1", "p1"), ("c2", "p2")] {
        let cred = domain::identity::AppCred {
            id: id.into(),
            name: name(id),
            description: None,
            project: p(project),
            roles: vec![RoleId::new("r1").unwrap()],
            secret_hash: HASH.into(),
            expires_at: None,
            unrestricted: false,
            created_at: Timestamp(1),
        };
        let evs = when(&state, C::CreateAppCred(cred, vec![])).unwrap();
        state = evs.iter().fold(state, identity::evolve);
    }
    for project in ["p1", "p2"] {
        let granted = E::UserRoleGranted {
            project: p(project),
            role: RoleId::new("r1").unwrap(),
            at: Timestamp(2),
        };
        state = identity::evolve(state, &granted);
    }
    let evs = when(
        &state,
        C::RevokeRole {
            project: p("p1"),
            role: RoleId::new("r1").unwrap(),
        },
    )
    .unwrap();
    assert_eq!(evs.len(), 2, "{evs:?}");
    let state = evs.iter().fold(state, identity::evolve);
    assert_eq!(
        user(&state).app_creds.keys().collect::<Vec<_>>(),
        vec!["c2"]
    );
    let evs = when(&state, C::SetUserEnabled(false)).unwrap();
    let state = evs.iter().fold(state, identity::evolve);
    assert!(user(&state).app_creds.is_empty());
}

#[test]
fn access_rules_are_reused_per_user_and_kept_while_in_use() {
    use domain::identity::{AccessRule, AccessRuleRequest as R};
    let state = given(&[user_created()]);
    let cred = |id: &str| domain::identity::AppCred {
        id: id.into(),
        name: name(id),
        description: None,
        project: ProjectId::new("p1").unwrap(),
        roles: vec![RoleId::new("r1").unwrap()],
        secret_hash: HASH.into(),
        expires_at: None,
        unrestricted: false,
        created_at: Timestamp(1),
    };
    let rule = |id: &str, method: &str| AccessRule {
        id: id.into(),
        service: "compute".into(),
        path: "/v2.1/servers".into(),
        method: method.into(),
    };
    // Two identical rules in one request make one rule.
    let evs = when(
        &state,
        C::CreateAppCred(
            cred("c1"),
            vec![R::New(rule("a", "GET")), R::New(rule("b", "GET"))],
        ),
    )
    .unwrap();
    assert!(
        matches!(&evs[1], E::AppCredAccessRulesSet { rules, .. } if rules == &vec![rule("a", "GET")])
    );
    let state = evs.iter().fold(state, identity::evolve);
    // A later identical rule is the stored one; an unknown id is refused.
    let evs = when(
        &state,
        C::CreateAppCred(
            cred("c2"),
            vec![R::New(rule("x", "GET")), R::New(rule("y", "POST"))],
        ),
    )
    .unwrap();
    let state = evs.iter().fold(state, identity::evolve);
    let u = user(&state);
    assert_eq!(u.access_rules.keys().collect::<Vec<_>>(), vec!["a", "y"]);
    assert_eq!(
        u.app_cred_rules["c2"],
        vec!["a".to_string(), "y".to_string()]
    );
    assert!(matches!(
        when(
            &state,
            C::CreateAppCred(cred("c3"), vec![R::Existing("nope".into())])
        ),
        Err(DomainError::NotFound {
            kind: "AccessRule",
            ..
        })
    ));
    // In use: refused; once its credentials are gone: deleted, and only then.
    assert!(matches!(
        when(&state, C::DeleteAccessRule { id: "a".into() }),
        Err(DomainError::Forbidden(m)) if m == "May not delete access rule in use"
    ));
    let mut state = state;
    for c in ["c1", "c2"] {
        let evs = when(&state, C::DeleteAppCred { id: c.into() }).unwrap();
        state = evs.iter().fold(state, identity::evolve);
    }
    assert_eq!(
        user(&state).access_rules.len(),
        2,
        "rules outlive credentials"
    );
    let evs = when(&state, C::DeleteAccessRule { id: "a".into() }).unwrap();
    let state = evs.iter().fold(state, identity::evolve);
    assert!(!user(&state).access_rules.contains_key("a"));
    assert!(matches!(
        when(&state, C::DeleteAccessRule { id: "a".into() }),
        Err(DomainError::NotFound { .. })
    ));
}

// ---- security compliance (Keystone's [security_compliance]) ----

const SEC: i64 = 1_000_000;
const DAY: i64 = 86_400 * SEC;

fn at(state: &Option<IdentityState>, cmd: C, now: i64) -> Result<Vec<E>, DomainError> {
    identity::decide(state.as_ref(), cmd, Refs::default(), Timestamp(now))
}

fn apply(state: Option<IdentityState>, evs: &[E]) -> Option<IdentityState> {
    evs.iter().fold(state, identity::evolve)
}

fn hash(n: u32) -> String {
    format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$h{n}")
}

fn lockout(attempts: u32, secs: u64) -> identity::Compliance {
    identity::Compliance {
        lockout_failure_attempts: attempts,
        lockout_duration_secs: secs,
        ..Default::default()
    }
}

#[test]
fn failures_lock_the_user_and_a_locked_user_appends_nothing() {
    let rules = lockout(3, 60);
    let mut state = given(&[user_created()]);
    for n in 1..=3 {
        let evs = at(&state, C::RecordAuthFailure { rules }, n * SEC).unwrap();
        assert_eq!(evs.len(), 1);
        assert!(matches!(evs[0], E::UserAuthFailed { failures, .. } if failures == n as u32));
        state = apply(state, &evs);
    }
    let u = user(&state);
    assert!(rules.locked(&u, Timestamp(4 * SEC)));
    // Locked: further failures decide to nothing (the log cannot be grown).
    for n in 4..63 {
        assert_eq!(
            at(&state, C::RecordAuthFailure { rules }, n * SEC).unwrap(),
            vec![]
        );
    }
    // The lock runs out 60 s after the last failure; the next failure counts from 1.
    assert!(rules.locked(&u, Timestamp(62 * SEC)));
    assert!(!rules.locked(&u, Timestamp(63 * SEC)));
    let evs = at(&state, C::RecordAuthFailure { rules }, 64 * SEC).unwrap();
    assert!(matches!(evs[0], E::UserAuthFailed { failures: 1, .. }));
}

#[test]
fn lockout_off_records_nothing_and_no_duration_locks_until_enabled() {
    let mut state = given(&[user_created()]);
    let off = identity::Compliance::default();
    assert_eq!(
        at(&state, C::RecordAuthFailure { rules: off }, SEC).unwrap(),
        vec![]
    );
    let rules = lockout(1, 0);
    let evs = at(&state, C::RecordAuthFailure { rules }, SEC).unwrap();
    state = apply(state, &evs);
    assert!(rules.locked(&user(&state), Timestamp(1_000_000 * DAY)));
    // An admin's `enabled: true` unlocks even an enabled user (Keystone).
    let evs = at(&state, C::SetUserEnabled(true), 2 * SEC).unwrap();
    assert!(matches!(evs[..], [E::UserAuthFailuresCleared { .. }]));
    state = apply(state, &evs);
    assert!(!rules.locked(&user(&state), Timestamp(3 * SEC)));
    assert_eq!(at(&state, C::ClearAuthFailures, 4 * SEC).unwrap(), vec![]);
}

#[test]
fn success_clears_failures() {
    let rules = lockout(3, 60);
    let mut state = given(&[user_created()]);
    state = apply(
        state.clone(),
        &at(&state, C::RecordAuthFailure { rules }, SEC).unwrap(),
    );
    let evs = at(&state, C::ClearAuthFailures, 2 * SEC).unwrap();
    state = apply(state, &evs);
    assert_eq!(user(&state).failed_auth_count, 0);
    assert_eq!(user(&state).failed_auth_at, None);
}

#[test]
fn history_keeps_hashes_for_the_unique_count_and_the_current_one_counts() {
    let rules = identity::Compliance {
        unique_last_password_count: 3,
        ..Default::default()
    };
    let mut state = given(&[user_created()]);
    for n in 1..=5 {
        let cmd = C::SetPassword {
            password_hash: hash(n),
            rules,
            self_service: true,
        };
        state = apply(state.clone(), &at(&state, cmd, n as i64 * SEC).unwrap());
    }
    let u = user(&state);
    assert_eq!(u.password_history, vec![hash(3), hash(4)]);
    assert_eq!(
        rules.reused_candidates(&u),
        vec![hash(5).as_str(), &hash(3), &hash(4)]
    );
    assert!(identity::Compliance::default()
        .reused_candidates(&u)
        .is_empty());
    assert!(identity::password_reused_message(3).ends_with("must be unique is 3."));
}

#[test]
fn minimum_age_binds_only_self_service_passwords() {
    let rules = identity::Compliance {
        minimum_password_age_days: 2,
        ..Default::default()
    };
    let state = given(&[user_created()]);
    let set = |self_service| C::SetPassword {
        password_hash: hash(1),
        rules,
        self_service,
    };
    // The initial (admin-set) password may be changed at once.
    let state = apply(state.clone(), &at(&state, set(true), SEC).unwrap());
    let err = at(&state, set(true), SEC + DAY / 2).unwrap_err();
    assert!(
        matches!(&err, DomainError::BadRequest(m) if m.contains("must be used for 2 day(s)") && m.contains("try again in 1 day(s)")),
        "{err:?}"
    );
    // An admin may always reset it; after 2 days the user may too.
    assert!(at(&state, set(false), SEC + DAY / 2).is_ok());
    assert!(at(&state, set(true), SEC + 2 * DAY).is_ok());
}

#[test]
fn expiry_is_decided_when_the_password_is_set() {
    let rules = identity::Compliance {
        password_expires_days: 90,
        ..Default::default()
    };
    let now = 10 * SEC + 123;
    assert_eq!(
        rules.expires_at(Timestamp(now), true),
        Some(Timestamp(10 * SEC + 90 * DAY))
    );
    let first_use = identity::Compliance {
        change_password_upon_first_use: true,
        ..rules
    };
    assert_eq!(
        first_use.expires_at(Timestamp(now), true),
        Some(Timestamp(now))
    );
    assert_eq!(
        first_use.expires_at(Timestamp(now), false),
        Some(Timestamp(10 * SEC + 90 * DAY))
    );
    assert_eq!(
        identity::Compliance::default().expires_at(Timestamp(now), true),
        None
    );
    let state = given(&[user_created()]);
    let evs = at(
        &state,
        C::SetPassword {
            password_hash: hash(1),
            rules: first_use,
            self_service: false,
        },
        now,
    )
    .unwrap();
    let state = apply(state, &evs);
    let u = user(&state);
    assert!(u.password_expired(Timestamp(now)));
    assert!(!u.password_self_service);
    // The user's own change gets the normal expiry.
    let evs = at(
        &state,
        C::SetPassword {
            password_hash: hash(2),
            rules: first_use,
            self_service: true,
        },
        now + 1,
    )
    .unwrap();
    let u = user(&apply(state, &evs));
    assert!(!u.password_expired(Timestamp(now + 1)));
    assert!(u.password_self_service);
}

#[test]
fn user_options_exempt_from_lockout_expiry_and_forbid_self_service() {
    use std::collections::BTreeMap;
    let rules = identity::Compliance {
        lockout_failure_attempts: 1,
        lockout_duration_secs: 60,
        password_expires_days: 10,
        change_password_upon_first_use: true,
        ..Default::default()
    };
    let state = given(&[user_created()]);
    let set = |opts: &[(&str, Option<bool>)]| {
        C::SetUserOptions(
            opts.iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    assert!(matches!(
        at(&state, set(&[("nope", Some(true))]), SEC).unwrap_err(),
        DomainError::BadRequest(_)
    ));
    let evs = at(
        &state,
        set(&[
            (identity::IGNORE_LOCKOUT, Some(true)),
            (identity::LOCK_PASSWORD, Some(true)),
            (identity::IGNORE_CHANGE_PASSWORD, Some(true)),
        ]),
        SEC,
    )
    .unwrap();
    let state = apply(state, &evs);
    // Setting what is set already: nothing.
    assert_eq!(
        at(&state, set(&[(identity::LOCK_PASSWORD, Some(true))]), SEC).unwrap(),
        vec![]
    );
    // No lockout: failures are not even recorded.
    assert_eq!(
        at(&state, C::RecordAuthFailure { rules }, 2 * SEC).unwrap(),
        vec![]
    );
    // lock_password: the user may not change it, an admin may.
    let change = |self_service| C::SetPassword {
        password_hash: hash(1),
        rules,
        self_service,
    };
    assert!(matches!(
        at(&state, change(true), 3 * SEC).unwrap_err(),
        DomainError::BadRequest(m) if m.contains("password policy disallowing password changes")
    ));
    // Exempt from change-upon-first-use: the admin's password gets the normal expiry.
    let evs = at(&state, change(false), 3 * SEC).unwrap();
    let state = apply(state, &evs);
    let u = user(&state);
    assert_eq!(u.password_expires_at, Some(Timestamp(3 * SEC + 10 * DAY)));
    // ignore_password_expiry: never expired.
    let evs = at(
        &state,
        set(&[(identity::IGNORE_PASSWORD_EXPIRY, Some(true))]),
        4 * SEC,
    )
    .unwrap();
    let u = user(&apply(state, &evs));
    assert!(!u.password_expired(Timestamp(100 * DAY)));
}
