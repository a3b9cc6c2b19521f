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
