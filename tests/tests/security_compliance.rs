//! Keystone's security compliance (`[security_compliance]`) over the real identity
//! API: lockout after failed password authentications (appending nothing once locked,
//! surviving a restart, lifted by time, a success or an admin's `enabled: true`), the
//! self-service password change with history and minimum age, admin resets outside
//! the history, the password regex, expiry and change-upon-first-use; and a replay
//! rebuild reproduces every read model.

use std::time::{Duration, Instant};

use domain::identity::Compliance;
use domain::UserId;
use reqwest::Method as M;
use serde_json::{json, Value};
use stratus::stack::{AuthKind, StackOptions};
use tests::Harness;

const ADMIN_PW: &str = "s3cret-admin";

fn setup(o: &mut StackOptions, rules: Compliance) {
    o.auth = AuthKind::Keystone;
    o.admin_password = Some(ADMIN_PW.into());
    o.security_compliance = identity::SecurityCompliance::new(
        rules,
        Some("[a-z]+[0-9]"),
        Some("letters then a digit".into()),
    )
    .unwrap();
}

fn base_rules() -> Compliance {
    Compliance {
        lockout_failure_attempts: 3,
        lockout_duration_secs: 2,
        unique_last_password_count: 2,
        password_expires_days: 30,
        ..Default::default()
    }
}

struct Id<'h> {
    h: &'h Harness,
}

impl Id<'_> {
    async fn call(
        &self,
        method: M,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Option<String>, Value) {
        let base = format!("http://{}/v3", self.h.stack.identity_addr.unwrap());
        let mut rb = self.h.http.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let code = r.status().as_u16();
        let tok = r
            .headers()
            .get("x-subject-token")
            .map(|t| t.to_str().unwrap().to_string());
        let bytes = r.bytes().await.unwrap();
        (
            code,
            tok,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Password authentication by user id (unscoped: the default project).
    async fn login(&self, user: &str, password: &str) -> (u16, Option<String>, Value) {
        let body = json!({"auth": {"identity": {"methods": ["password"],
            "password": {"user": {"id": user, "password": password}}}}});
        self.call(M::POST, "/auth/tokens", None, Some(body)).await
    }

    async fn admin(&self) -> String {
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PW}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
        let (code, tok, v) = self.call(M::POST, "/auth/tokens", None, Some(body)).await;
        assert_eq!(code, 201, "{v}");
        tok.unwrap()
    }

    async fn change(&self, user: &str, original: &str, new: &str) -> (u16, Value) {
        let body = json!({"user": {"original_password": original, "password": new}});
        let (code, _, v) = self
            .call(
                M::POST,
                &format!("/users/{user}/password"),
                None,
                Some(body),
            )
            .await;
        (code, v)
    }
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn user_events(h: &Harness, user: &str) -> u64 {
    let subject = projections::identity::user_subject(&UserId::new(user).unwrap());
    h.stack
        .engine
        .log()
        .last_subject_seq(&subject)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_history_expiry_and_regex_through_the_identity_api() {
    let h = Harness::start(|o| setup(o, base_rules())).await;
    let id = Id { h: &h };
    let admin = id.admin().await;

    // A project, a member role and the user alice on it.
    let (code, _, p) = id
        .call(
            M::POST,
            "/projects",
            Some(&admin),
            Some(json!({"project": {"name": "demo"}})),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["project"]["id"].as_str().unwrap().to_string();
    // The regex refuses before anything is appended.
    let (code, _, v) = id
        .call(
            M::POST,
            "/users",
            Some(&admin),
            Some(json!({"user": {"name": "alice", "password": "NOPE"}})),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&v),
        "The password does not match the requirements: letters then a digit."
    );
    let (code, _, u) = id
        .call(
            M::POST,
            "/users",
            Some(&admin),
            Some(json!({"user": {"name": "alice", "password": "alice1", "default_project_id": project}})),
        )
        .await;
    assert_eq!(code, 201, "{u}");
    let alice = u["user"]["id"].as_str().unwrap().to_string();
    // Expiry: 30 days from now, shown on the user and in its tokens.
    let expires = u["user"]["password_expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(expires.ends_with(".000000Z"), "{expires}");
    let (_, _, roles) = id
        .call(M::GET, "/roles?name=member", Some(&admin), None)
        .await;
    let member = roles["roles"][0]["id"].as_str().unwrap().to_string();
    let (code, _, _) = id
        .call(
            M::PUT,
            &format!("/projects/{project}/users/{alice}/roles/{member}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let (code, tok, v) = id.login(&alice, "alice1").await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["token"]["user"]["password_expires_at"], expires.as_str());
    let first_token = tok.unwrap();

    // Three failures lock alice; the right password is then refused too.
    for _ in 0..3 {
        let (code, _, v) = id.login(&alice, "wrong1").await;
        assert_eq!(code, 401);
        assert_eq!(
            message(&v),
            "The request you have made requires authentication."
        );
    }
    let (code, _, v) = id.login(&alice, "alice1").await;
    assert_eq!(code, 401);
    assert_eq!(
        message(&v),
        format!("The account is locked for user: {alice}.")
    );
    // Once locked, failures append nothing: the log cannot be grown by guessing.
    let seq = user_events(&h, &alice).await;
    for _ in 0..10 {
        let (code, _, _) = id.login(&alice, "wrong1").await;
        assert_eq!(code, 401);
    }
    assert_eq!(user_events(&h, &alice).await, seq);

    // The lock runs out after the lockout duration (2 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if id.login(&alice, "alice1").await.0 == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "the lock never ran out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The success cleared the failures: one wrong password does not lock.
    id.login(&alice, "wrong1").await;
    assert_eq!(id.login(&alice, "alice1").await.0, 201);

    // An admin's `enabled: true` unlocks at once (Keystone), though alice is enabled.
    let unlock = |admin: String| {
        let id = &id;
        let alice = alice.clone();
        async move {
            let (code, _, v) = id
                .call(
                    M::PATCH,
                    &format!("/users/{alice}"),
                    Some(&admin),
                    Some(json!({"user": {"enabled": true}})),
                )
                .await;
            assert_eq!(code, 200, "{v}");
        }
    };
    for _ in 0..3 {
        id.login(&alice, "wrong1").await;
    }
    assert_eq!(id.login(&alice, "alice1").await.0, 401);
    unlock(admin.clone()).await;
    assert_eq!(id.login(&alice, "alice1").await.0, 201);

    // Lock again; a restart does not lift the lock (it is state in the log).
    for _ in 0..3 {
        id.login(&alice, "wrong1").await;
    }
    let long = Compliance {
        lockout_duration_secs: 3600,
        ..base_rules()
    };
    let h = h.restart(|o| setup(o, long)).await;
    let id = Id { h: &h };
    let (code, _, v) = id.login(&alice, "alice1").await;
    assert_eq!(code, 401, "{v}");
    assert!(message(&v).contains("locked"), "{v}");
    let admin = id.admin().await;
    let (code, _, v) = id
        .call(
            M::PATCH,
            &format!("/users/{alice}"),
            Some(&admin),
            Some(json!({"user": {"enabled": true}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, token, _) = id.login(&alice, "alice1").await;
    assert_eq!(code, 201);
    let token = token.unwrap();

    // Self-service change: the original password authenticates (no token needed).
    let (code, v) = id.change(&alice, "wrong1", "alice2").await;
    assert_eq!(code, 401, "{v}");
    let (code, v) = id.change(&alice, "alice1", "BAD").await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = id.change(&alice, "alice1", "alice2").await;
    assert_eq!(code, 204, "{v}");
    // Earlier tokens stop working: validation and the token method are 404s.
    let admin = id.admin().await;
    let (code, _, _) =
        id.h.http
            .get(format!(
                "http://{}/v3/auth/tokens",
                h.stack.identity_addr.unwrap()
            ))
            .header("X-Auth-Token", &admin)
            .header("X-Subject-Token", &token)
            .send()
            .await
            .map(|r| (r.status().as_u16(), (), ()))
            .unwrap();
    assert_eq!(code, 404);
    let by_token =
        |t: &str| json!({"auth": {"identity": {"methods": ["token"], "token": {"id": t}}}});
    let (code, _, v) = id
        .call(M::POST, "/auth/tokens", None, Some(by_token(&first_token)))
        .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(id.login(&alice, "alice1").await.0, 401);
    let (code, new_token, _) = id.login(&alice, "alice2").await;
    assert_eq!(code, 201);
    // The token method with a valid token issues another one.
    let (code, _, v) = id
        .call(
            M::POST,
            "/auth/tokens",
            None,
            Some(by_token(&new_token.unwrap())),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["token"]["project"]["id"], project.as_str());

    // History (2, the current one included): neither alice2 nor alice1 again.
    for again in ["alice2", "alice1"] {
        let (code, v) = id.change(&alice, "alice2", again).await;
        assert_eq!(code, 400, "{v}");
        assert_eq!(
            message(&v),
            "The new password cannot be identical to a previous password. The total number which includes the new password must be unique is 2."
        );
    }
    let (code, _) = id.change(&alice, "alice2", "alice3").await;
    assert_eq!(code, 204);
    // alice1 has left the history; an admin reset ignores it anyway.
    let (code, _) = id.change(&alice, "alice3", "alice1").await;
    assert_eq!(code, 204);
    let (code, _, v) = id
        .call(
            M::PATCH,
            &format!("/users/{alice}"),
            Some(&admin),
            Some(json!({"user": {"password": "alice1"}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(id.login(&alice, "alice1").await.0, 201);

    // Minimum age (1 day) binds a password alice set herself, not an admin's reset.
    let aged = Compliance {
        minimum_password_age_days: 1,
        ..base_rules()
    };
    let h = h.restart(|o| setup(o, aged)).await;
    let id = Id { h: &h };
    let (code, _) = id.change(&alice, "alice1", "alice4").await;
    assert_eq!(code, 204, "an admin-set password may be changed at once");
    let (code, v) = id.change(&alice, "alice4", "alice5").await;
    assert_eq!(code, 400);
    assert!(
        message(&v).starts_with("You cannot change your password at this time due to the minimum password age. Once you change your password, it must be used for 1 day(s)"),
        "{v}"
    );

    // Change upon first use: a new user's password is expired until it changes it.
    let first_use = Compliance {
        change_password_upon_first_use: true,
        ..base_rules()
    };
    let h = h.restart(|o| setup(o, first_use)).await;
    let id = Id { h: &h };
    let admin = id.admin().await;
    let (code, _, u) = id
        .call(
            M::POST,
            "/users",
            Some(&admin),
            Some(
                json!({"user": {"name": "bob", "password": "bob1", "default_project_id": project}}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{u}");
    let bob = u["user"]["id"].as_str().unwrap().to_string();
    id.call(
        M::PUT,
        &format!("/projects/{project}/users/{bob}/roles/{member}"),
        Some(&admin),
        None,
    )
    .await;
    let (code, _, v) = id.login(&bob, "bob1").await;
    assert_eq!(code, 401);
    assert_eq!(
        message(&v),
        format!("The password is expired and needs to be changed for user: {bob}.")
    );
    let (code, v) = id.change(&bob, "bob1", "bob2").await;
    assert_eq!(code, 204, "{v}");
    let (code, _, v) = id.login(&bob, "bob2").await;
    assert_eq!(code, 201, "{v}");
    assert!(v["token"]["user"]["password_expires_at"].is_string());

    // User options: a service user exempt from lockout and first-use, whose password
    // only an admin may change.
    let (code, _, u) = id
        .call(
            M::POST,
            "/users",
            Some(&admin),
            Some(json!({"user": {"name": "svc", "password": "svc1", "default_project_id": project,
                "options": {"ignore_lockout_failure_attempts": true, "ignore_change_password_upon_first_use": true, "lock_password": true}}})),
        )
        .await;
    assert_eq!(code, 201, "{u}");
    assert_eq!(u["user"]["options"]["lock_password"], true);
    let svc = u["user"]["id"].as_str().unwrap().to_string();
    id.call(
        M::PUT,
        &format!("/projects/{project}/users/{svc}/roles/{member}"),
        Some(&admin),
        None,
    )
    .await;
    let seq = user_events(&h, &svc).await;
    for _ in 0..5 {
        assert_eq!(id.login(&svc, "wrong1").await.0, 401);
    }
    assert_eq!(user_events(&h, &svc).await, seq, "no failures recorded");
    assert_eq!(id.login(&svc, "svc1").await.0, 201);
    let (code, v) = id.change(&svc, "svc1", "svc2").await;
    assert_eq!(code, 400);
    assert!(
        message(&v).contains("password policy disallowing password changes"),
        "{v}"
    );
    let (code, _, v) = id
        .call(
            M::PATCH,
            &format!("/users/{svc}"),
            Some(&admin),
            Some(json!({"user": {"options": {"bogus": true}}})),
        )
        .await;
    assert_eq!(code, 400, "{v}");

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}
