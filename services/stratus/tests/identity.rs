//! The identity API (Keystone v3 subset) and Keystone auth of the compute API, over
//! real loopback HTTP against a whole stack (embedded store).

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use stratus::stack::{AuthKind, Stack, StackOptions};

struct T {
    stack: Stack,
    http: Client,
    dir: tempfile::TempDir,
}

fn options(dir: &std::path::Path) -> StackOptions {
    let mut o = StackOptions::new(dir);
    o.listen = "127.0.0.1:0".parse().unwrap();
    o.identity_listen = "127.0.0.1:0".parse().unwrap();
    o.hosts = 1;
    o.auth = AuthKind::Keystone;
    o.admin_password = Some("s3cret-admin".into());
    o
}

impl T {
    async fn start(f: impl FnOnce(&mut StackOptions)) -> T {
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(dir.path());
        f(&mut o);
        let stack = Stack::start(o).await.expect("stack starts");
        T {
            stack,
            http: Client::new(),
            dir,
        }
    }

    fn id_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.stack.identity_addr.unwrap())
    }

    fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.stack.addr)
    }

    async fn call(
        &self,
        method: Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut r = self.http.request(method, url);
        if let Some(t) = token {
            r = r.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, v)
    }

    async fn id(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, _, v) = self.call(method, self.id_url(path), token, body).await;
        (s, v)
    }

    /// `POST /v3/auth/tokens` by user name and project (name or id): (status, token, body).
    async fn auth(
        &self,
        user: &str,
        password: &str,
        project: Value,
    ) -> (StatusCode, String, Value) {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": project}}});
        let (s, h, v) = self
            .call(
                Method::POST,
                self.id_url("/v3/auth/tokens"),
                None,
                Some(body),
            )
            .await;
        let token = h
            .get("x-subject-token")
            .map(|t| t.to_str().unwrap().to_string())
            .unwrap_or_default();
        (s, token, v)
    }

    async fn admin_token(&self) -> String {
        let (s, t, _) = self
            .auth(
                "admin",
                "s3cret-admin",
                json!({"name": "admin", "domain": {"name": "Default"}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        t
    }

    async fn validate(&self, caller: &str, subject: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(self.id_url("/v3/auth/tokens"))
            .header("X-Auth-Token", caller)
            .header("X-Subject-Token", subject)
            .send()
            .await
            .unwrap();
        let s = resp.status();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    async fn servers(&self, token: Option<&str>) -> (StatusCode, Value) {
        let (s, _, v) = self
            .call(Method::GET, self.api_url("/v2.1/servers"), token, None)
            .await;
        (s, v)
    }

    async fn api_seq(&self) -> u64 {
        self.stack
            .engine
            .log()
            .last_stream_seq(&eventlog::StreamName::api())
            .await
            .unwrap()
    }
}

fn assert_keystone_error(v: &Value, code: u16) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["title"].is_string(), "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_token_catalog_and_validation() {
    let t = T::start(|_| {}).await;
    let (s, headers, v) = t.call(Method::GET, t.id_url("/v3"), None, None).await;
    assert_eq!(s, 200);
    // As Keystone: a request id on every response, the listener's too.
    let rid = headers["x-openstack-request-id"].to_str().unwrap();
    assert!(
        rid.strip_prefix("req-")
            .is_some_and(|u| uuid::Uuid::parse_str(u).is_ok()),
        "{rid}"
    );
    assert_eq!(v["version"]["id"], "v3.14");
    assert_eq!(v["version"]["status"], "stable");
    let self_link = v["version"]["links"][0]["href"].as_str().unwrap();
    assert_eq!(
        self_link,
        format!("http://{}/v3/", t.stack.identity_addr.unwrap())
    );

    // Scoped by project name.
    let (s, token, body) = t
        .auth(
            "admin",
            "s3cret-admin",
            json!({"name": "admin", "domain": {"name": "Default"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert!(!token.is_empty());
    let tok = &body["token"];
    assert_eq!(tok["methods"], json!(["password"]));
    assert_eq!(tok["user"]["name"], "admin");
    assert_eq!(tok["user"]["domain"]["id"], "default");
    assert_eq!(tok["project"]["name"], "admin");
    assert_eq!(tok["project"]["domain"]["name"], "Default");
    assert_eq!(tok["roles"][0]["name"], "admin");
    assert!(tok["audit_ids"][0].is_string());
    assert!(tok["issued_at"].as_str().unwrap().ends_with('Z'));
    let catalog = tok["catalog"].as_array().unwrap();
    let url = |ty: &str| {
        let e = catalog.iter().find(|e| e["type"] == ty).unwrap();
        let eps = e["endpoints"].as_array().unwrap();
        let mut ifaces: Vec<&str> = eps
            .iter()
            .map(|x| x["interface"].as_str().unwrap())
            .collect();
        ifaces.sort();
        assert_eq!(ifaces, vec!["admin", "internal", "public"]);
        for ep in eps {
            assert_eq!(ep["region"], "RegionOne");
            assert_eq!(ep["region_id"], "RegionOne");
        }
        eps[0]["url"].as_str().unwrap().to_string()
    };
    assert_eq!(
        url("identity"),
        format!("http://{}/v3", t.stack.identity_addr.unwrap())
    );
    assert_eq!(url("compute"), format!("http://{}/v2.1", t.stack.addr));
    // The image endpoint is this process's image listener.
    assert_eq!(
        url("image"),
        format!("http://{}", t.stack.image_addr.unwrap())
    );

    // Scoped by project id, user by id.
    let project_id = tok["project"]["id"].as_str().unwrap();
    let user_id = tok["user"]["id"].as_str().unwrap();
    let (s, _, v) = t
        .call(
            Method::POST,
            t.id_url("/v3/auth/tokens"),
            None,
            Some(
                json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "id": user_id, "password": "s3cret-admin"}}},
                "scope": {"project": {"id": project_id}}}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Validation: 200 with the body, 404 for a token that is not valid.
    let (s, v) = t.validate(&token, &token).await;
    assert_eq!(s, 200);
    assert_eq!(v["token"]["project"]["id"], project_id);
    let (s, v) = t.validate(&token, "s1.bogus.token").await;
    assert_eq!(s, 404);
    assert_keystone_error(&v, 404);
    // A tampered token does not verify.
    let mut tampered = token.clone();
    tampered.insert(5, 'x');
    assert_eq!(t.validate(&token, &tampered).await.0, 404);
    // Without a valid caller token: 401.
    let (s, v) = t.validate("nope", &token).await;
    assert_eq!(s, 401);
    assert_keystone_error(&v, 401);

    // Bad credentials: 401, Keystone-shaped; nothing appended.
    let before = t.api_seq().await;
    let (s, _, v) = t
        .auth(
            "admin",
            "wrong",
            json!({"name": "admin", "domain": {"name": "Default"}}),
        )
        .await;
    assert_eq!(s, 401);
    assert_keystone_error(&v, 401);
    let (s, _, _) = t
        .auth(
            "ghost",
            "x",
            json!({"name": "admin", "domain": {"name": "Default"}}),
        )
        .await;
    assert_eq!(s, 401);
    // Malformed bodies: 400.
    let (s, v) = t
        .id(
            Method::POST,
            "/v3/auth/tokens",
            None,
            Some(json!({"auth": {}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_keystone_error(&v, 400);
    assert_eq!(t.api_seq().await, before);
    t.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_users_roles_and_token_revocation() {
    let t = T::start(|_| {}).await;
    let admin = t.admin_token().await;

    // Create a project; a duplicate name is a 409 that appends nothing.
    let (s, v) = t
        .id(
            Method::POST,
            "/v3/projects",
            Some(&admin),
            Some(json!({"project": {"name": "demo", "description": "Demo"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let demo = v["project"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["project"]["domain_id"], "default");
    let before = t.api_seq().await;
    let (s, v) = t
        .id(
            Method::POST,
            "/v3/projects",
            Some(&admin),
            Some(json!({"project": {"name": "demo"}})),
        )
        .await;
    assert_eq!(s, 409);
    assert_keystone_error(&v, 409);
    let (s, _) = t
        .id(
            Method::POST,
            "/v3/projects",
            Some(&admin),
            Some(json!({"project": {"name": " bad"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(t.api_seq().await, before);

    // Lookups: by id, by name (the CLI tries the id first, then ?name=).
    let (s, v) = t
        .id(
            Method::GET,
            &format!("/v3/projects/{demo}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["project"]["name"], "demo");
    let (s, v) = t
        .id(Method::GET, "/v3/projects/demo", Some(&admin), None)
        .await;
    assert_eq!(s, 404);
    assert_keystone_error(&v, 404);
    let (_, v) = t
        .id(Method::GET, "/v3/projects?name=demo", Some(&admin), None)
        .await;
    assert_eq!(v["projects"].as_array().unwrap().len(), 1);
    assert_eq!(v["projects"][0]["id"], demo.as_str());
    let (_, v) = t.id(Method::GET, "/v3/projects", Some(&admin), None).await;
    let mut names: Vec<&str> = v["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["admin", "demo"]);

    // A user with the member role on demo.
    let (s, v) = t
        .id(
            Method::POST,
            "/v3/users",
            Some(&admin),
            Some(
                json!({"user": {"name": "alice", "password": "pw-1", "default_project_id": demo}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let alice = v["user"]["id"].as_str().unwrap().to_string();
    assert!(v["user"].get("password").is_none());
    let (_, v) = t
        .id(Method::GET, "/v3/roles?name=member", Some(&admin), None)
        .await;
    let member = v["roles"][0]["id"].as_str().unwrap().to_string();
    let (_, v) = t.id(Method::GET, "/v3/roles", Some(&admin), None).await;
    let mut roles: Vec<&str> = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        vec!["admin", "manager", "member", "reader", "service"]
    );
    // No role yet: no access to the project.
    let (s, _, _) = t.auth("alice", "pw-1", json!({"id": demo})).await;
    assert_eq!(s, 401);
    let grant = format!("/v3/projects/{demo}/users/{alice}/roles/{member}");
    let (s, _) = t.id(Method::PUT, &grant, Some(&admin), None).await;
    assert_eq!(s, 204);
    // Unknown role: 404, nothing appended.
    let before = t.api_seq().await;
    let (s, _) = t
        .id(
            Method::PUT,
            &format!("/v3/projects/{demo}/users/{alice}/roles/nope"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(t.api_seq().await, before);

    let (s, alice_tok, v) = t
        .auth(
            "alice",
            "pw-1",
            json!({"name": "demo", "domain": {"id": "default"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["token"]["roles"],
        json!([{"id": member, "name": "member"}])
    );

    // Non-admin: admin calls are 403; other projects are invisible.
    for (m, path, body) in [
        (
            Method::POST,
            "/v3/projects".to_string(),
            Some(json!({"project": {"name": "x"}})),
        ),
        (
            Method::POST,
            "/v3/users".to_string(),
            Some(json!({"user": {"name": "x", "password": "y"}})),
        ),
        (
            Method::PATCH,
            format!("/v3/users/{alice}"),
            Some(json!({"user": {"enabled": false}})),
        ),
        (Method::PUT, grant.clone(), None),
    ] {
        let (s, v) = t.id(m, &path, Some(&alice_tok), body).await;
        assert_eq!(s, 403, "{path}: {v}");
        assert_keystone_error(&v, 403);
    }
    let (_, v) = t
        .id(Method::GET, "/v3/projects", Some(&alice_tok), None)
        .await;
    assert_eq!(v["projects"].as_array().unwrap().len(), 1);
    assert_eq!(v["projects"][0]["name"], "demo");
    let (_, v) = t
        .id(
            Method::GET,
            "/v3/projects?name=admin",
            Some(&alice_tok),
            None,
        )
        .await;
    assert_eq!(v["projects"], json!([]));
    let admin_project = t.validate(&admin, &admin).await.1["token"]["project"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = t
        .id(
            Method::GET,
            &format!("/v3/projects/{admin_project}"),
            Some(&alice_tok),
            None,
        )
        .await;
    assert_eq!(s, 404);
    // Alice may validate her own token, not validate as admin.
    assert_eq!(t.validate(&alice_tok, &alice_tok).await.0, 200);
    assert_eq!(t.validate(&alice_tok, &admin).await.0, 403);

    // The compute API: 401 without a valid token, Keystone-shaped; works with one.
    let (s, v) = t.servers(None).await;
    assert_eq!(s, 401);
    assert_keystone_error(&v, 401);
    let (s, v) = t.servers(Some("alice:demo")).await;
    assert_eq!(s, 401, "noauth tokens are refused: {v}");
    let (s, v) = t.servers(Some(&alice_tok)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["servers"], json!([]));
    let (s, _) = t.servers(Some(&admin)).await;
    assert_eq!(s, 200);

    // A password change invalidates earlier tokens.
    let (s, v) = t
        .id(
            Method::PATCH,
            &format!("/v3/users/{alice}"),
            Some(&admin),
            Some(json!({"user": {"password": "pw-2"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(t.validate(&admin, &alice_tok).await.0, 404);
    assert_eq!(t.servers(Some(&alice_tok)).await.0, 401);
    assert_eq!(t.auth("alice", "pw-1", json!({"id": demo})).await.0, 401);
    let (s, alice_tok2, _) = t.auth("alice", "pw-2", json!({"id": demo})).await;
    assert_eq!(s, 201);
    assert_eq!(t.servers(Some(&alice_tok2)).await.0, 200);

    // Disabling the user invalidates its tokens and refuses new ones; enabling again
    // allows new tokens but not the old ones.
    let (s, v) = t
        .id(
            Method::PATCH,
            &format!("/v3/users/{alice}"),
            Some(&admin),
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["user"]["enabled"], false);
    assert_eq!(t.servers(Some(&alice_tok2)).await.0, 401);
    assert_eq!(t.auth("alice", "pw-2", json!({"id": demo})).await.0, 401);
    let (s, _) = t
        .id(
            Method::PATCH,
            &format!("/v3/users/{alice}"),
            Some(&admin),
            Some(json!({"user": {"enabled": true}})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(t.servers(Some(&alice_tok2)).await.0, 401);
    assert_eq!(t.auth("alice", "pw-2", json!({"id": demo})).await.0, 201);
    // Renaming onto a taken name is a 409 and setting a read-only member a 400:
    // nothing appended. A rename keeps the user's tokens.
    let before = t.api_seq().await;
    let (s, _) = t
        .id(
            Method::PATCH,
            &format!("/v3/users/{alice}"),
            Some(&admin),
            Some(json!({"user": {"name": "admin"}})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = t
        .id(
            Method::PATCH,
            &format!("/v3/users/{alice}"),
            Some(&admin),
            Some(json!({"user": {"id": "other"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(t.api_seq().await, before);
    let (_, alice_tok3, _) = t.auth("alice", "pw-2", json!({"id": demo})).await;
    let (s, v) = t
        .id(
            Method::PATCH,
            &format!("/v3/users/{alice}"),
            Some(&admin),
            Some(json!({"user": {"name": "bob"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["user"]["name"], "bob");
    assert_eq!(t.servers(Some(&alice_tok3)).await.0, 200);
    // Revoked at the identity API: refused by the compute API.
    let (s, _, _) = t
        .call(
            Method::DELETE,
            t.id_url("/v3/auth/tokens"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 400, "no X-Subject-Token");
    let r = t
        .http
        .delete(t.id_url("/v3/auth/tokens"))
        .header("X-Auth-Token", &admin)
        .header("X-Subject-Token", &alice_tok3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.servers(Some(&alice_tok3)).await.0, 401);
    // A deleted user leaves the stored views too (checked by the rebuild below).
    let (s, v) = t
        .id(
            Method::POST,
            "/v3/users",
            Some(&admin),
            Some(json!({"user": {"name": "zed", "password": "pw-zed-1"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let zed = v["user"]["id"].as_str().unwrap().to_string();
    let (s, _) = t
        .id(
            Method::DELETE,
            &format!("/v3/users/{zed}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let dir = t.dir.path().to_path_buf();
    t.stack.stop().await;

    // The identity view is persisted like the others: a rebuild from the log matches.
    let report = replay::rebuild_data_dir(&dir).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire() {
    let t = T::start(|o| o.token_expiration_secs = 1).await;
    let admin = t.admin_token().await;
    assert_eq!(t.servers(Some(&admin)).await.0, 200);
    assert_eq!(t.validate(&admin, &admin).await.0, 200);
    // Poll until the token is past its expiry (1 s), at most 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = t.servers(Some(&admin)).await.0;
        if s == 401 {
            break;
        }
        assert_eq!(s, 200);
        assert!(Instant::now() < deadline, "token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = t.admin_token().await;
    assert_eq!(t.validate(&fresh, &admin).await.0, 404);
    t.stack.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_writes_openrc_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    o.admin_password = None;
    let stack = Stack::start(o).await.unwrap();
    let openrc = dir.path().join("openrc");
    let text = std::fs::read_to_string(&openrc).unwrap();
    assert_eq!(
        std::fs::metadata(&openrc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("token.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let var = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {k}=")))
            .unwrap_or_else(|| panic!("{k} missing: {text}"))
            .trim_matches('\'')
            .to_string()
    };
    assert_eq!(
        var("OS_AUTH_URL"),
        format!("http://{}/v3", stack.identity_addr.unwrap())
    );
    assert_eq!(var("OS_USERNAME"), "admin");
    assert_eq!(var("OS_PROJECT_NAME"), "admin");
    assert_eq!(var("OS_USER_DOMAIN_NAME"), "Default");
    assert_eq!(var("OS_PROJECT_DOMAIN_NAME"), "Default");
    assert_eq!(var("OS_IDENTITY_API_VERSION"), "3");
    assert_eq!(var("OS_REGION_NAME"), "RegionOne");
    assert_eq!(var("OS_INTERFACE"), "public");
    let generated = var("OS_PASSWORD");
    assert!(generated.len() >= 16);
    let rows = stack.engine.world().read().identity().rows.len();
    stack.stop().await;

    // A restart (even with another password given) changes nothing.
    let mut o = options(dir.path());
    o.admin_password = Some("another".into());
    let stack = Stack::start(o).await.unwrap();
    assert_eq!(std::fs::read_to_string(&openrc).unwrap(), text);
    assert_eq!(stack.engine.world().read().identity().rows.len(), rows);
    let t = T {
        stack,
        http: Client::new(),
        dir,
    };
    let scope = json!({"name": "admin", "domain": {"name": "Default"}});
    assert_eq!(t.auth("admin", &generated, scope.clone()).await.0, 201);
    assert_eq!(t.auth("admin", "another", scope).await.0, 401);
    t.stack.stop().await;
}

/// Keystone roles reach the compute policy: a reader reads but changes nothing (403,
/// nothing appended), a member acts, another project's member sees a 404, the admin
/// sees everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_roles_drive_the_compute_policy() {
    let t = T::start(|_| {}).await;
    let admin = t.admin_token().await;
    let role_id = |name: &'static str| {
        let t = &t;
        let admin = admin.clone();
        async move {
            let (_, v) = t
                .id(
                    Method::GET,
                    &format!("/v3/roles?name={name}"),
                    Some(&admin),
                    None,
                )
                .await;
            v["roles"][0]["id"].as_str().unwrap().to_string()
        }
    };
    // (project, user, role) -> token.
    let mut tokens = Vec::new();
    for (project, user, role) in [
        ("demo", "rita", "reader"),
        ("demo", "mo", "member"),
        ("other", "oz", "member"),
    ] {
        let (_, v) = t
            .id(
                Method::GET,
                &format!("/v3/projects?name={project}"),
                Some(&admin),
                None,
            )
            .await;
        let pid = match v["projects"][0]["id"].as_str() {
            Some(id) => id.to_string(),
            None => {
                let (s, v) = t
                    .id(
                        Method::POST,
                        "/v3/projects",
                        Some(&admin),
                        Some(json!({"project": {"name": project}})),
                    )
                    .await;
                assert_eq!(s, 201, "{v}");
                v["project"]["id"].as_str().unwrap().to_string()
            }
        };
        let (s, v) = t
            .id(
                Method::POST,
                "/v3/users",
                Some(&admin),
                Some(json!({"user": {"name": user, "password": "pw"}})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let uid = v["user"]["id"].as_str().unwrap().to_string();
        let rid = role_id(role).await;
        let grant = format!("/v3/projects/{pid}/users/{uid}/roles/{rid}");
        assert_eq!(t.id(Method::PUT, &grant, Some(&admin), None).await.0, 204);
        let (s, tok, v) = t.auth(user, "pw", json!({"id": pid})).await;
        assert_eq!(s, 201, "{v}");
        tokens.push(tok);
    }
    let (reader, member, other) = (&tokens[0], &tokens[1], &tokens[2]);

    let (_, _, v) = t
        .call(Method::GET, t.api_url("/v2.1/flavors"), Some(reader), None)
        .await;
    let flavor = v["flavors"][0]["id"].as_str().unwrap().to_string();
    let create = json!({"server": {"name": "s", "flavorRef": flavor,
        "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b"}});
    let url = t.api_url("/v2.1/servers");
    let before = t.api_seq().await;
    let (s, _, v) = t
        .call(
            Method::POST,
            url.clone(),
            Some(reader),
            Some(create.clone()),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v,
        json!({"forbidden": {"code": 403,
            "message": "Policy doesn't allow os_compute_api:servers:create to be performed."}})
    );
    assert_eq!(t.api_seq().await, before);
    let (s, _, v) = t.call(Method::POST, url, Some(member), Some(create)).await;
    assert_eq!(s, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let server = t.api_url(&format!("/v2.1/servers/{id}"));
    let action = t.api_url(&format!("/v2.1/servers/{id}/action"));

    assert_eq!(
        t.call(Method::GET, server.clone(), Some(reader), None)
            .await
            .0,
        200
    );
    assert_eq!(
        t.call(Method::GET, server.clone(), Some(&admin), None)
            .await
            .0,
        200
    );
    assert_eq!(
        t.call(Method::GET, server.clone(), Some(other), None)
            .await
            .0,
        404
    );
    // The scheduler and compute append on their own: wait until they are done.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, v) = t
            .call(Method::GET, server.clone(), Some(member), None)
            .await;
        if v["server"]["status"] == "ACTIVE" {
            break;
        }
        assert!(Instant::now() < deadline, "never ACTIVE: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = t.api_seq().await;
    for (tok, want) in [(reader, 403), (other, 404)] {
        let (s, _, v) = t
            .call(
                Method::PUT,
                server.clone(),
                Some(tok),
                Some(json!({"server": {"name": "x"}})),
            )
            .await;
        assert_eq!(s, want, "{v}");
        let (s, _, v) = t
            .call(
                Method::POST,
                action.clone(),
                Some(tok),
                Some(json!({"lock": null})),
            )
            .await;
        assert_eq!(s, want, "{v}");
        assert_eq!(
            t.call(Method::DELETE, server.clone(), Some(tok), None)
                .await
                .0,
            want
        );
    }
    let (s, _, v) = t
        .call(
            Method::POST,
            action.clone(),
            Some(member),
            Some(json!({"os-resetState": {"state": "error"}})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(t.api_seq().await, before);
    let (s, _, v) = t
        .call(
            Method::POST,
            action,
            Some(member),
            Some(json!({"lock": null})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    t.stack.stop().await;
}
