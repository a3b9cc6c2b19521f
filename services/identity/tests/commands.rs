//! Identity commands on a real embedded log, and tokens: concurrent creates of one
//! name (exactly one wins), refusals that append nothing, token signing, tampering,
//! expiry, revocation and the key file.

use std::sync::Arc;

use domain::identity::{IdentityName, NameKind};
use domain::Timestamp;
use eventlog::{EmbeddedLog, EventLog, StreamName};
use identity::commands::{self, Actor};
use identity::token::Invalid;
use identity::{TokenKey, Tokens};
use projections::{Touched, Views};

async fn log(dir: &std::path::Path) -> Arc<dyn EventLog> {
    let l: Arc<dyn EventLog> = EmbeddedLog::open(dir).unwrap();
    l.ensure_stream(&StreamName::api()).await.unwrap();
    l
}

async fn fold(log: &dyn EventLog) -> Views {
    let mut v = Views::default();
    let mut t = Touched::default();
    for c in log
        .read_stream(&StreamName::api(), 1, 100_000)
        .await
        .unwrap()
    {
        v.apply(&c, &mut t);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            commands::create_project(
                log.as_ref(),
                IdentityName::new("demo").unwrap(),
                String::new(),
                true,
                &Actor::service("test"),
            )
            .await
        }));
    }
    let mut won = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok((id, _)) => won.push(id),
            Err(e) => {
                assert_eq!(e.status_message().0, 409, "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!(won.len(), 1);
    assert_eq!(refused, 7);
    let v = fold(log.as_ref()).await;
    assert_eq!(v.identity().projects().len(), 1);
    assert_eq!(
        v.identity().project_by_name("default", "demo").unwrap().id,
        won[0]
    );
    assert_eq!(
        commands::resolve(log.as_ref(), NameKind::Project, "demo")
            .await
            .unwrap(),
        Some(won[0].to_string())
    );
}

#[tokio::test]
async fn refused_commands_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let who = Actor::service("test");
    let hash = identity::password::hash("pw").unwrap();
    let (user, _) = commands::create_user(
        log.as_ref(),
        IdentityName::new("alice").unwrap(),
        hash.clone(),
        true,
        None,
        &who,
    )
    .await
    .unwrap();
    let before = log.last_stream_seq(&StreamName::api()).await.unwrap();
    // Duplicate name.
    let e = commands::create_user(
        log.as_ref(),
        IdentityName::new("alice").unwrap(),
        hash,
        true,
        None,
        &who,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status_message().0, 409);
    // Unknown project and role.
    let e = commands::grant_role(
        log.as_ref(),
        &user,
        &domain::ProjectId::new("nope").unwrap(),
        &domain::identity::RoleId::new("nope").unwrap(),
        &who,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status_message().0, 404);
    // Unknown user.
    let e = commands::set_enabled(
        log.as_ref(),
        &domain::UserId::new("ghost").unwrap(),
        false,
        &who,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status_message().0, 404);
    // Enabling an enabled user: nothing to write.
    assert_eq!(
        commands::set_enabled(log.as_ref(), &user, true, &who)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        log.last_stream_seq(&StreamName::api()).await.unwrap(),
        before
    );
}

#[tokio::test]
async fn tokens_verify_expire_and_are_revoked_by_credential_changes() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let who = Actor::service("test");
    let (project, _) = commands::create_project(
        log.as_ref(),
        IdentityName::new("demo").unwrap(),
        String::new(),
        true,
        &who,
    )
    .await
    .unwrap();
    let (role, _) = commands::create_role(log.as_ref(), IdentityName::new("member").unwrap(), &who)
        .await
        .unwrap();
    let (user, _) = commands::create_user(
        log.as_ref(),
        IdentityName::new("alice").unwrap(),
        identity::password::hash("pw").unwrap(),
        true,
        None,
        &who,
    )
    .await
    .unwrap();
    let v = fold(log.as_ref()).await;
    let u = v.identity().user(&user).unwrap().clone();
    let p = v.identity().project(&project).unwrap().clone();
    let tokens = Tokens::new(TokenKey::generate(), 60);
    let now = Timestamp(1_000_000_000);
    let (tok, _) = tokens.issue(&u, &p, &[], now);
    // No role on the project: not valid.
    assert_eq!(
        tokens.validate(&tok, v.identity(), now),
        Err(Invalid::NoScope)
    );
    commands::grant_role(log.as_ref(), &user, &project, &role, &who)
        .await
        .unwrap();
    let v = fold(log.as_ref()).await;
    let auth = tokens.validate(&tok, v.identity(), now).unwrap();
    assert_eq!(auth.role_names(), vec!["member"]);
    assert!(!auth.is_admin());
    // Expiry.
    assert_eq!(
        tokens.validate(&tok, v.identity(), now.plus_secs(60)),
        Err(Invalid::Expired)
    );
    // Another key, or a tampered token.
    let other = Tokens::new(TokenKey::generate(), 60);
    assert_eq!(
        other.validate(&tok, v.identity(), now),
        Err(Invalid::Malformed)
    );
    let claims = tokens.decode(&tok).unwrap();
    let forged = other.sign(&domain_admin(claims));
    assert_eq!(
        tokens.validate(&forged, v.identity(), now),
        Err(Invalid::Malformed)
    );
    // A password change revokes it.
    commands::set_password(
        log.as_ref(),
        &user,
        identity::password::hash("pw2").unwrap(),
        Default::default(),
        &who,
    )
    .await
    .unwrap();
    let v = fold(log.as_ref()).await;
    assert_eq!(
        tokens.validate(&tok, v.identity(), now),
        Err(Invalid::Revoked)
    );
    let u = v.identity().user(&user).unwrap().clone();
    assert!(identity::password::verify("pw2", &u.password_hash));
    assert!(!identity::password::verify("pw", &u.password_hash));
}

fn domain_admin(mut c: identity::token::Claims) -> identity::token::Claims {
    c.roles = vec!["admin".into()];
    c
}

#[cfg(unix)]
#[test]
fn the_key_file_is_created_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.key");
    let k1 = TokenKey::load_or_create(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let k2 = TokenKey::load_or_create(&path).unwrap();
    // Same key: a token signed with one verifies with the other.
    let t1 = Tokens::new(k1, 60);
    let t2 = Tokens::new(k2, 60);
    let claims = identity::token::Claims {
        user: "u".into(),
        project: "p".into(),
        roles: vec![],
        issued_at: 0,
        expires_at: 1,
        revision: 0,
        audit_id: "a".into(),
        methods: vec!["password".into()],
        app_cred: None,
    };
    assert_eq!(t2.decode(&t1.sign(&claims)), Some(claims));
    std::fs::write(&path, "garbage").unwrap();
    assert!(TokenKey::load_or_create(&path).is_err());
}

/// Appends a claim of `name` by `id` (a project) made `age` ago, as a create that died
/// before writing its entity leaves it.
async fn orphan_claim(log: &dyn EventLog, name: &str, id: &str, age: std::time::Duration) {
    use domain::identity::{IdentityEvent, DEFAULT_DOMAIN_ID};
    let name = IdentityName::new(name).unwrap();
    let at = Timestamp(engine::now().0 - age.as_micros() as i64);
    let ev = IdentityEvent::NameClaimed {
        kind: NameKind::Project,
        domain_id: DEFAULT_DOMAIN_ID.into(),
        name: name.clone(),
        id: id.into(),
        at,
    };
    log.append(eventlog::AppendRequest {
        subject: projections::identity::name_subject(NameKind::Project, DEFAULT_DOMAIN_ID, &name),
        expected: eventlog::ExpectedSeq::Exactly(0),
        dedupe_id: uuid::Uuid::new_v4().to_string(),
        meta: eventlog::Metadata {
            occurred_at: at.0,
            ..Default::default()
        },
        events: vec![projections::codec::encode(&domain::Event::Identity(ev))],
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_claim_whose_create_died_is_completed_by_the_next_create() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let create = |name: &'static str| {
        let log = log.clone();
        async move {
            commands::create_project(
                log.as_ref(),
                IdentityName::new(name).unwrap(),
                String::new(),
                true,
                &Actor::service("test"),
            )
            .await
        }
    };
    // A fresh claim may still be completed by its own create: the name is taken.
    let young = "0123456789abcdef0123456789abcdef";
    orphan_claim(
        log.as_ref(),
        "young",
        young,
        std::time::Duration::from_secs(1),
    )
    .await;
    let e = create("young").await.unwrap_err();
    assert_eq!(e.status_message().0, 409, "{e}");
    // Older than the grace period and without entity: the next create completes it,
    // under the claimed id (a claim never moves), and the name resolves again.
    let old = "fedcba9876543210fedcba9876543210";
    orphan_claim(
        log.as_ref(),
        "old",
        old,
        commands::ORPHAN_GRACE + std::time::Duration::from_secs(1),
    )
    .await;
    let (id, _) = create("old").await.unwrap();
    assert_eq!(id.as_str(), old);
    assert_eq!(
        commands::resolve(log.as_ref(), NameKind::Project, "old")
            .await
            .unwrap()
            .as_deref(),
        Some(old)
    );
    assert!(fold(log.as_ref())
        .await
        .identity()
        .project_by_name(domain::identity::DEFAULT_DOMAIN_ID, "old")
        .is_some());
    // Now the name is held by a real project: a second create is refused.
    let e = create("old").await.unwrap_err();
    assert_eq!(e.status_message().0, 409, "{e}");
}
