//! The identity calls clients and tempest make beyond create and read, over real HTTP:
//! token revocation and HEAD, project and user updates and deletes, a user's
//! projects, role create / delete and grant revocation, role assignment listing, and
//! application credentials (create, list, show, delete, authentication, roles, expiry,
//! restriction).

mod common;

use axum::http::Method;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn create(k: &Keystone, path: &str, key: &str, body: Value) -> String {
    let r = k.send(Method::POST, path, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()[key]["id"].as_str().unwrap().to_string()
}

async fn role_id(k: &Keystone, name: &str) -> String {
    let r = k
        .send(Method::GET, &format!("/v3/roles?name={name}"), None)
        .await;
    r.json()["roles"][0]["id"].as_str().unwrap().to_string()
}

async fn grant(k: &Keystone, project: &str, user: &str, role: &str) {
    let r = k
        .send(
            Method::PUT,
            &format!("/v3/projects/{project}/users/{user}/roles/{role}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
}

/// A password token of `user` on `project` (None: refused with 401).
async fn token(k: &Keystone, user: &str, pw: &str, project: &str) -> Option<String> {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": user, "password": pw}}}, "scope": {"project": {"id": project}}}});
    let r = k.send(Method::POST, "/v3/auth/tokens", Some(body)).await;
    if r.status == StatusCode::UNAUTHORIZED {
        return None;
    }
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    Some(r.headers["x-subject-token"].to_str().unwrap().to_string())
}

/// Sends with `token` instead of the admin's.
async fn as_(k: &Keystone, token: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
    let mut rb = k
        .http
        .request(method, format!("{}{path}", k.base))
        .header("X-Auth-Token", token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    k.send_rb(rb).await
}

/// Status of `GET /v3/auth/catalog` with `token` (200 valid, 401 not).
async fn works(k: &Keystone, token: &str) -> u16 {
    as_(k, token, Method::GET, "/v3/auth/catalog", None)
        .await
        .status
        .as_u16()
}

/// A user `name` with `member` on a new project `<name>-p`: (user, project, token).
async fn member(k: &Keystone, name: &str) -> (String, String, String) {
    let p = create(
        k,
        "/v3/projects",
        "project",
        json!({"project": {"name": format!("{name}-p")}}),
    )
    .await;
    let u = create(
        k,
        "/v3/users",
        "user",
        json!({"user": {"name": name, "password": "pw-123456"}}),
    )
    .await;
    grant(k, &p, &u, &role_id(k, "member").await).await;
    let t = token(k, &u, "pw-123456", &p).await.unwrap();
    (u, p, t)
}

#[tokio::test]
async fn revoked_tokens_stop_working_and_head_checks_them() {
    let k = start().await;
    let (_, _, t) = member(&k, "alice").await;
    let (_, _, other) = member(&k, "bob").await;
    let head = |subject: String| {
        k.http
            .head(format!("{}/v3/auth/tokens", k.base))
            .header("X-Auth-Token", &k.token)
            .header("X-Subject-Token", subject)
    };
    let r = k.send_rb(head(t.clone())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.bytes.is_empty());
    // Another user's token: 403, nothing revoked.
    let r = k
        .send_rb(
            k.http
                .delete(format!("{}/v3/auth/tokens", k.base))
                .header("X-Auth-Token", &other)
                .header("X-Subject-Token", &t),
        )
        .await;
    r.assert_error(403);
    assert_eq!(works(&k, &t).await, 200);
    // Its own user revokes it: 204, then it is refused everywhere.
    let r = k
        .send_rb(
            k.http
                .delete(format!("{}/v3/auth/tokens", k.base))
                .header("X-Auth-Token", &t)
                .header("X-Subject-Token", &t),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(works(&k, &t).await, 401);
    assert_eq!(
        k.send_rb(head(t.clone())).await.status,
        StatusCode::NOT_FOUND
    );
    let r = k
        .send_rb(
            k.http
                .get(format!("{}/v3/auth/tokens", k.base))
                .header("X-Auth-Token", &k.token)
                .header("X-Subject-Token", &t),
        )
        .await;
    r.assert_error(404);
    // Revoking it again: 404 (not a valid token). Other tokens are untouched.
    let r = k
        .send_rb(
            k.http
                .delete(format!("{}/v3/auth/tokens", k.base))
                .header("X-Auth-Token", &k.token)
                .header("X-Subject-Token", &t),
        )
        .await;
    r.assert_error(404);
    assert_eq!(works(&k, &other).await, 200);
    assert_eq!(works(&k, &k.token).await, 200);
}

#[tokio::test]
async fn deletes_end_tokens_and_free_names_and_patches_change_projects() {
    let k = start().await;
    let (u, p, t) = member(&k, "carol").await;
    // The user's projects.
    let r = k
        .send(Method::GET, &format!("/v3/users/{u}/projects"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["projects"][0]["id"], json!(p));
    let r = as_(
        &k,
        &t,
        Method::GET,
        &format!("/v3/users/{u}/projects"),
        None,
    )
    .await;
    assert_eq!(r.json()["projects"].as_array().unwrap().len(), 1);
    // PATCH: rename, describe, disable (its tokens stop), enable again.
    let r = k
        .send(
            Method::PATCH,
            &format!("/v3/projects/{p}"),
            Some(json!({"project": {"name": "carol-renamed", "description": "d"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["project"]["name"], json!("carol-renamed"));
    assert_eq!(r.json()["project"]["description"], json!("d"));
    let r = k
        .send(Method::GET, "/v3/projects?name=carol-renamed", None)
        .await;
    assert_eq!(r.json()["projects"][0]["id"], json!(p));
    // The old name is free again; the new one is taken.
    create(
        &k,
        "/v3/projects",
        "project",
        json!({"project": {"name": "carol-p"}}),
    )
    .await;
    let r = k
        .send(
            Method::POST,
            "/v3/projects",
            Some(json!({"project": {"name": "carol-renamed"}})),
        )
        .await;
    r.assert_error(409);
    let r = k
        .send(
            Method::PATCH,
            &format!("/v3/projects/{p}"),
            Some(json!({"project": {"name": "carol-p"}})),
        )
        .await;
    r.assert_error(409);
    let r = k
        .send(
            Method::PATCH,
            &format!("/v3/projects/{p}"),
            Some(json!({"project": {"bogus": 1}})),
        )
        .await;
    r.assert_error(400);
    let r = k
        .send(
            Method::PATCH,
            &format!("/v3/projects/{p}"),
            Some(json!({"project": {"enabled": false}})),
        )
        .await;
    assert_eq!(r.json()["project"]["enabled"], json!(false));
    assert_eq!(works(&k, &t).await, 401);
    k.send(
        Method::PATCH,
        &format!("/v3/projects/{p}"),
        Some(json!({"project": {"enabled": true}})),
    )
    .await;
    let t = token(&k, &u, "pw-123456", &p).await.unwrap();
    // User PATCH: rename and default project.
    let r = k
        .send(
            Method::PATCH,
            &format!("/v3/users/{u}"),
            Some(json!({"user": {"name": "carol2", "default_project_id": p}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["user"]["name"], json!("carol2"));
    assert_eq!(r.json()["user"]["default_project_id"], json!(p));
    assert_eq!(works(&k, &t).await, 200, "a rename keeps tokens");
    // Delete the project: its tokens stop, it is gone, the name is free.
    let r = k
        .send(Method::DELETE, &format!("/v3/projects/{p}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(works(&k, &t).await, 401);
    k.send(Method::GET, &format!("/v3/projects/{p}"), None)
        .await
        .assert_error(404);
    k.send(Method::DELETE, &format!("/v3/projects/{p}"), None)
        .await
        .assert_error(404);
    create(
        &k,
        "/v3/projects",
        "project",
        json!({"project": {"name": "carol-renamed"}}),
    )
    .await;
    let r = k
        .send(Method::GET, &format!("/v3/users/{u}/projects"), None)
        .await;
    assert_eq!(r.json()["projects"], json!([]));
    // Delete the user: its tokens stop, the name is free.
    let (u2, _, t2) = member(&k, "dave").await;
    let r = k
        .send(Method::DELETE, &format!("/v3/users/{u2}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(works(&k, &t2).await, 401);
    k.send(Method::GET, &format!("/v3/users/{u2}"), None)
        .await
        .assert_error(404);
    create(
        &k,
        "/v3/users",
        "user",
        json!({"user": {"name": "dave", "password": "pw-123456"}}),
    )
    .await;
}

#[tokio::test]
async fn roles_are_created_deleted_revoked_and_assignments_listed() {
    let k = start().await;
    let (u, p, t) = member(&k, "erin").await;
    let r = create(
        &k,
        "/v3/roles",
        "role",
        json!({"role": {"name": "auditor"}}),
    )
    .await;
    k.send(
        Method::POST,
        "/v3/roles",
        Some(json!({"role": {"name": "auditor"}})),
    )
    .await
    .assert_error(409);
    grant(&k, &p, &u, &r).await;
    let member_role = role_id(&k, "member").await;
    // Assignments: filtered by user and project, with names on request.
    let q = format!("/v3/role_assignments?user.id={u}&scope.project.id={p}&include_names=True");
    let body = k.send(Method::GET, &q, None).await.json();
    let list = body["role_assignments"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    let a = list
        .iter()
        .find(|a| a["role"]["id"] == json!(r))
        .expect("auditor listed");
    assert_eq!(a["role"]["name"], json!("auditor"));
    assert_eq!(a["user"]["name"], json!("erin"));
    assert_eq!(a["user"]["domain"]["id"], json!("default"));
    assert_eq!(a["scope"]["project"]["name"], json!("erin-p"));
    assert!(a["links"]["assignment"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v3/projects/{p}/users/{u}/roles/{r}")));
    let body = k
        .send(
            Method::GET,
            &format!("/v3/role_assignments?user.id={u}"),
            None,
        )
        .await
        .json();
    assert!(body["role_assignments"][0]["role"].get("name").is_none());
    let body = k
        .send(
            Method::GET,
            &format!("/v3/role_assignments?role.id={member_role}&scope.project.id={p}"),
            None,
        )
        .await
        .json();
    assert_eq!(body["role_assignments"].as_array().unwrap().len(), 1);
    let body = k
        .send(Method::GET, "/v3/role_assignments?group.id=x", None)
        .await
        .json();
    assert_eq!(body["role_assignments"], json!([]));
    // A non-admin sees only its own assignments.
    let body = as_(&k, &t, Method::GET, "/v3/role_assignments", None)
        .await
        .json();
    assert!(body["role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["user"]["id"] == json!(u)));
    // Revoking a grant, then deleting the role: gone from the listing.
    let path = format!("/v3/projects/{p}/users/{u}/roles/{member_role}");
    let r2 = k.send(Method::DELETE, &path, None).await;
    assert_eq!(r2.status, StatusCode::NO_CONTENT, "{}", r2.text());
    k.send(Method::DELETE, &path, None).await.assert_error(404);
    assert_eq!(works(&k, &t).await, 200, "still auditor there");
    let d = k
        .send(Method::DELETE, &format!("/v3/roles/{r}"), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text());
    assert_eq!(works(&k, &t).await, 401, "no role left on the project");
    let body = k
        .send(
            Method::GET,
            &format!("/v3/role_assignments?user.id={u}"),
            None,
        )
        .await
        .json();
    assert_eq!(body["role_assignments"], json!([]));
    create(
        &k,
        "/v3/roles",
        "role",
        json!({"role": {"name": "auditor"}}),
    )
    .await;
}

/// Authenticates with an application credential (None: 401).
async fn app_auth(k: &Keystone, auth: Value) -> Option<(String, Value)> {
    let body = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": auth}}});
    let r = k.send(Method::POST, "/v3/auth/tokens", Some(body)).await;
    if r.status == StatusCode::UNAUTHORIZED {
        return None;
    }
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    Some((
        r.headers["x-subject-token"].to_str().unwrap().to_string(),
        r.json(),
    ))
}

#[tokio::test]
async fn application_credentials_authenticate_with_their_roles_until_deleted() {
    let k = start().await;
    let (u, p, t) = member(&k, "frank").await;
    let reader = role_id(&k, "reader").await;
    grant(&k, &p, &u, &reader).await;
    let t = {
        let _ = t;
        token(&k, &u, "pw-123456", &p).await.unwrap()
    };
    let path = format!("/v3/users/{u}/application_credentials");
    // Only roles the token has; never for another user.
    let r = as_(
        &k,
        &t,
        Method::POST,
        &path,
        Some(json!({"application_credential": {"name": "ci", "roles": [{"name": "admin"}]}})),
    )
    .await;
    r.assert_error(400);
    let r = k
        .send(
            Method::POST,
            &path,
            Some(json!({"application_credential": {"name": "x"}})),
        )
        .await;
    r.assert_error(403);
    let r = as_(
        &k,
        &t,
        Method::POST,
        &path,
        Some(
            json!({"application_credential": {"name": "old", "expires_at": "2001-01-01T00:00:00"}}),
        ),
    )
    .await;
    r.assert_error(400);
    let r = as_(
        &k,
        &t,
        Method::POST,
        &path,
        Some(
            json!({"application_credential": {"name": "ci", "description": "for CI",
            "roles": [{"name": "reader"}], "expires_at": "2099-01-01T00:00:00"}}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let c = r.json()["application_credential"].clone();
    let (id, secret) = (
        c["id"].as_str().unwrap().to_string(),
        c["secret"].as_str().unwrap().to_string(),
    );
    assert!(secret.len() >= 64, "{secret}");
    assert_eq!(c["project_id"], json!(p));
    assert_eq!(c["unrestricted"], json!(false));
    assert_eq!(c["roles"][0]["name"], json!("reader"));
    assert_eq!(c["expires_at"], json!("2099-01-01T00:00:00.000000"));
    // A second one named alike: 409; one with the token's roles: both.
    as_(
        &k,
        &t,
        Method::POST,
        &path,
        Some(json!({"application_credential": {"name": "ci"}})),
    )
    .await
    .assert_error(409);
    let r = as_(
        &k,
        &t,
        Method::POST,
        &path,
        Some(json!({"application_credential": {"name": "full", "secret": "my-own-secret", "unrestricted": true}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let full = r.json()["application_credential"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        r.json()["application_credential"]["roles"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // List (no secrets), filter by name, show.
    let body = as_(&k, &t, Method::GET, &path, None).await.json();
    let list = body["application_credentials"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|c| c.get("secret").is_none()));
    let body = k
        .send(Method::GET, &format!("{path}?name=ci"), None)
        .await
        .json();
    assert_eq!(body["application_credentials"][0]["id"], json!(id));
    let r = as_(&k, &t, Method::GET, &format!("{path}/{id}"), None).await;
    assert_eq!(
        r.json()["application_credential"]["description"],
        json!("for CI")
    );
    as_(&k, &t, Method::GET, &format!("{path}/nope"), None)
        .await
        .assert_error(404);
    // Authenticate by id and by name + user: scoped to the project, reader only.
    assert!(app_auth(&k, json!({"id": id, "secret": "wrong"}))
        .await
        .is_none());
    // The credential fixes the scope: asking for one is a 401.
    let body = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": id, "secret": secret}},
        "scope": {"project": {"id": p}}}});
    k.send(Method::POST, "/v3/auth/tokens", Some(body))
        .await
        .assert_error(401);
    let (ct, body) = app_auth(&k, json!({"id": id, "secret": secret}))
        .await
        .unwrap();
    assert_eq!(body["token"]["methods"], json!(["application_credential"]));
    assert_eq!(body["token"]["project"]["id"], json!(p));
    assert_eq!(body["token"]["roles"].as_array().unwrap().len(), 1);
    assert_eq!(body["token"]["roles"][0]["name"], json!("reader"));
    assert_eq!(body["token"]["application_credential"]["id"], json!(id));
    assert_eq!(
        body["token"]["application_credential"]["restricted"],
        json!(true)
    );
    assert_eq!(works(&k, &ct).await, 200);
    let (_, _) = app_auth(
        &k,
        json!({"name": "ci", "secret": secret, "user": {"name": "frank", "domain": {"id": "default"}}}),
    )
    .await
    .unwrap();
    // A restricted credential's token may not manage credentials.
    as_(
        &k,
        &ct,
        Method::POST,
        &path,
        Some(json!({"application_credential": {"name": "more"}})),
    )
    .await
    .assert_error(403);
    as_(&k, &ct, Method::DELETE, &format!("{path}/{full}"), None)
        .await
        .assert_error(403);
    let (ft, _) = app_auth(&k, json!({"id": full, "secret": "my-own-secret"}))
        .await
        .unwrap();
    // Deleting one ends its tokens; the other one still works.
    let r = as_(&k, &ft, Method::DELETE, &format!("{path}/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(works(&k, &ct).await, 401);
    assert!(app_auth(&k, json!({"id": id, "secret": secret}))
        .await
        .is_none());
    assert_eq!(works(&k, &ft).await, 200);
    as_(&k, &ft, Method::DELETE, &format!("{path}/{id}"), None)
        .await
        .assert_error(404);
    // As in Keystone, losing a role on the project deletes the user's credentials
    // there.
    let r = k
        .send(
            Method::DELETE,
            &format!("/v3/projects/{p}/users/{u}/roles/{reader}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(works(&k, &ft).await, 401);
    assert!(app_auth(&k, json!({"id": full, "secret": "my-own-secret"}))
        .await
        .is_none());
    let body = k.send(Method::GET, &path, None).await.json();
    assert_eq!(body["application_credentials"], json!([]));
    // Disabling the user deletes them all.
    let t = token(&k, &u, "pw-123456", &p).await.unwrap();
    let r = as_(
        &k,
        &t,
        Method::POST,
        &path,
        Some(json!({"application_credential": {"name": "again"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    k.send(
        Method::PATCH,
        &format!("/v3/users/{u}"),
        Some(json!({"user": {"enabled": false}})),
    )
    .await;
    let body = k.send(Method::GET, &path, None).await.json();
    assert_eq!(body["application_credentials"], json!([]));
}

/// Keystone keeps members it does not know (`email`, `description`) as the user's
/// extra attributes: set at create, changed or removed (`null`) by PATCH, echoed.
#[tokio::test]
async fn users_keep_extra_attributes() {
    let k = start().await;
    let r = k
        .send(
            Method::POST,
            "/v3/users",
            Some(json!({"user": {"name": "gina", "password": "pw-123456",
                "email": "gina@example.com", "description": "tester", "options": {}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let u = r.json()["user"].clone();
    assert_eq!(u["email"], json!("gina@example.com"));
    assert_eq!(u["description"], json!("tester"));
    assert_eq!(u["options"], json!({}));
    let id = u["id"].as_str().unwrap().to_string();
    let r = k
        .send(
            Method::PATCH,
            &format!("/v3/users/{id}"),
            Some(
                json!({"user": {"email": "g@example.org", "description": null, "enabled": false}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let u = r.json()["user"].clone();
    assert_eq!(u["email"], json!("g@example.org"));
    assert!(u.get("description").is_none(), "{u}");
    assert_eq!(u["enabled"], json!(false));
    let shown = k
        .send(Method::GET, &format!("/v3/users/{id}"), None)
        .await
        .json();
    assert_eq!(shown["user"]["email"], json!("g@example.org"));
    for bad in [
        json!({"id": "x"}),
        json!({"links": {}}),
        json!({"password_expires_at": null}),
    ] {
        let before = k.position().await;
        k.send(
            Method::PATCH,
            &format!("/v3/users/{id}"),
            Some(json!({"user": bad})),
        )
        .await
        .assert_error(400);
        assert_eq!(k.position().await, before);
    }
}
