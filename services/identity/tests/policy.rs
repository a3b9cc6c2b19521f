//! The identity API's policy matrix, over real HTTP: every non-public row of
//! `identity::policy::ENDPOINTS` x every role (reader, member, admin) x own/other
//! (the caller itself, its project and its assignment / another user, project and
//! assignment). The expected outcome is derived from the row's rule; the log does not
//! move on a refusal or a read. A new row fails the test until it knows a request.

mod common;

use axum::http::Method;
use common::*;
use identity::policy::{Rule, ENDPOINTS};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A caller: its token, user, project, one role it has there and the id of one of
/// its application credentials.
#[derive(Clone)]
struct Who {
    token: String,
    user: String,
    project: String,
    role: String,
    cred: String,
    /// One of its access rules (no credential uses it).
    rule: String,
}

/// A fresh access rule of `who` that no credential uses: made with a credential that
/// is deleted again (rules outlive their credentials).
async fn free_rule_of(k: &Keystone, who: &Who, n: usize) -> String {
    let rb = k
        .http
        .post(format!(
            "{}/v3/users/{}/application_credentials",
            k.base, who.user
        ))
        .header("X-Auth-Token", &who.token)
        .json(&json!({"application_credential": {"name": format!("ruled-{n}"),
            "access_rules": [{"service": "compute", "method": "GET", "path": format!("/v2.1/r{n}")}]}}));
    let r = k.send_rb(rb).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let body = r.json();
    let cred = body["application_credential"]["id"].as_str().unwrap();
    let rule = body["application_credential"]["access_rules"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rb = k
        .http
        .delete(format!(
            "{}/v3/users/{}/application_credentials/{cred}",
            k.base, who.user
        ))
        .header("X-Auth-Token", &who.token);
    let r = k.send_rb(rb).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    rule
}

/// A fresh application credential of `who` (its id).
async fn app_cred_of(k: &Keystone, who: &Who, n: usize) -> String {
    let rb = k
        .http
        .post(format!(
            "{}/v3/users/{}/application_credentials",
            k.base, who.user
        ))
        .header("X-Auth-Token", &who.token)
        .json(&json!({"application_credential": {"name": format!("cred-{n}")}}));
    let r = k.send_rb(rb).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["application_credential"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A fresh token of `who` (a password token of a created user, or the admin's).
async fn fresh_token(k: &Keystone, who: &Who) -> String {
    let pw = if who.token == k.token {
        PASSWORD
    } else {
        "secret-pw-1"
    };
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": who.user, "password": pw}}}, "scope": {"project": {"id": who.project}}}});
    let r = k.send(Method::POST, "/v3/auth/tokens", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.headers["x-subject-token"].to_str().unwrap().to_string()
}

/// What a destructive row acts on, made fresh for each case (deleting the caller's
/// own user or project would end the matrix): a throwaway token of `target`, a new
/// project `target` has a role on, a new user, a new role granted to `target`, a new
/// application credential of `target`.
async fn victim(k: &Keystone, method: &str, path: &str, target: &Who, n: usize) -> Option<String> {
    Some(match (method, path) {
        ("DELETE", "/v3/auth/tokens") => fresh_token(k, target).await,
        ("DELETE", "/v3/projects/{id}") => {
            let p = create(
                k,
                "/v3/projects",
                "project",
                json!({"project": {"name": format!("v-proj-{n}")}}),
            )
            .await;
            let r = k
                .send(
                    Method::PUT,
                    &format!(
                        "/v3/projects/{p}/users/{}/roles/{}",
                        target.user, target.role
                    ),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
            p
        }
        ("DELETE", "/v3/users/{id}") => {
            create(
                k,
                "/v3/users",
                "user",
                json!({"user": {"name": format!("v-user-{n}"), "password": "pw-secret-3"}}),
            )
            .await
        }
        ("DELETE", "/v3/roles/{id}") => {
            create(
                k,
                "/v3/roles",
                "role",
                json!({"role": {"name": format!("v-role-{n}")}}),
            )
            .await
        }
        ("DELETE", "/v3/projects/{p}/users/{u}/roles/{r}") => {
            let role = create(
                k,
                "/v3/roles",
                "role",
                json!({"role": {"name": format!("v-grant-{n}")}}),
            )
            .await;
            let r = k
                .send(
                    Method::PUT,
                    &format!(
                        "/v3/projects/{}/users/{}/roles/{role}",
                        target.project, target.user
                    ),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
            role
        }
        ("DELETE", "/v3/users/{id}/application_credentials/{cred}") => {
            app_cred_of(k, target, n).await
        }
        ("DELETE", "/v3/users/{id}/access_rules/{rule}") => free_rule_of(k, target, n).await,
        (_, "/v3/users/{id}/credentials/OS-EC2/{access}") => {
            // Made by the admin (who may create for anyone).
            let rb = k
                .http
                .post(format!(
                    "{}/v3/users/{}/credentials/OS-EC2",
                    k.base, target.user
                ))
                .header("X-Auth-Token", &k.token)
                .json(&json!({"tenant_id": target.project}));
            let r = k.send_rb(rb).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            r.json()["credential"]["access"]
                .as_str()
                .unwrap()
                .to_string()
        }
        _ => return None,
    })
}

async fn id_of(k: &Keystone, path: &str, key: &str, name: &str) -> String {
    let r = k
        .send(Method::GET, &format!("{path}?name={name}"), None)
        .await;
    r.json()[key][0]["id"].as_str().unwrap().to_string()
}

async fn create(k: &Keystone, path: &str, key: &str, body: Value) -> String {
    let r = k.send(Method::POST, path, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()[key]["id"].as_str().unwrap().to_string()
}

/// A user with `role` on a new project, and its token.
async fn user_with(k: &Keystone, name: &str, role: &str) -> Who {
    let project = create(
        k,
        "/v3/projects",
        "project",
        json!({"project": {"name": format!("{name}-proj")}}),
    )
    .await;
    let user = create(
        k,
        "/v3/users",
        "user",
        json!({"user": {"name": name, "password": "secret-pw-1"}}),
    )
    .await;
    let role_id = id_of(k, "/v3/roles", "roles", role).await;
    let r = k
        .send(
            Method::PUT,
            &format!("/v3/projects/{project}/users/{user}/roles/{role_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": user, "password": "secret-pw-1"}}}, "scope": {"project": {"id": project}}}});
    let r = k.send(Method::POST, "/v3/auth/tokens", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let mut who = Who {
        token: r.headers["x-subject-token"].to_str().unwrap().to_string(),
        user,
        project,
        role: role_id,
        cred: String::new(),
        rule: String::new(),
    };
    who.cred = app_cred_of(k, &who, 0).await;
    who.rule = free_rule_of(k, &who, 0).await;
    who
}

/// The request of a row for `caller` about `target`.
fn request(
    k: &Keystone,
    method: &str,
    path: &str,
    caller: &Who,
    target: &Who,
    n: usize,
    victim: Option<&str>,
) -> reqwest::RequestBuilder {
    let role = match (method, path) {
        ("DELETE", "/v3/projects/{p}/users/{u}/roles/{r}") => victim.unwrap(),
        _ => &target.role,
    };
    let url = path
        .replace("{p}", &target.project)
        .replace("{u}", &target.user)
        .replace("{r}", role)
        .replace("{cred}", victim.unwrap_or(&target.cred))
        .replace("{rule}", victim.unwrap_or(&target.rule))
        .replace("{access}", victim.unwrap_or_default());
    let url = match path {
        "/v3/projects/{id}" => url.replace("{id}", victim.unwrap_or(&target.project)),
        "/v3/users/{id}" => url.replace("{id}", victim.unwrap_or(&target.user)),
        "/v3/roles/{id}" => url.replace("{id}", victim.unwrap_or(&target.role)),
        "/v3/domains/{id}" => url.replace("{id}", "default"),
        p if p.starts_with("/v3/users/{id}") => url.replace("{id}", &target.user),
        _ => url,
    };
    let rb = k
        .http
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{url}", k.base),
        )
        .header("X-Auth-Token", &caller.token);
    match (method, path) {
        ("GET" | "HEAD", "/v3/auth/tokens") => rb.header("X-Subject-Token", &target.token),
        ("DELETE", "/v3/auth/tokens") => rb.header("X-Subject-Token", victim.unwrap()),
        ("GET", _) | ("HEAD", _) | ("PUT", _) | ("DELETE", _) => rb,
        ("PATCH", "/v3/projects/{id}") => {
            rb.json(&json!({"project": {"description": format!("changed {n}")}}))
        }
        ("POST", "/v3/roles") => rb.json(&json!({"role": {"name": format!("m-role-{n}")}})),
        ("POST", "/v3/users/{id}/application_credentials") => {
            rb.json(&json!({"application_credential": {"name": format!("m-cred-{n}")}}))
        }
        ("POST", "/v3/projects") => rb.json(&json!({"project": {"name": format!("m-proj-{n}")}})),
        ("POST", "/v3/users") => {
            rb.json(&json!({"user": {"name": format!("m-user-{n}"), "password": "pw-secret-2"}}))
        }
        ("PATCH", "/v3/users/{id}") => rb.json(&json!({"user": {"enabled": true}})),
        ("POST", "/v3/users/{id}/credentials/OS-EC2") => {
            rb.json(&json!({"tenant_id": target.project}))
        }
        other => panic!("the policy matrix has no request for {other:?}: add one"),
    }
}

#[tokio::test]
async fn every_row_every_role_own_and_other() {
    let k = start().await;
    let mut admin = Who {
        token: k.token.clone(),
        user: id_of(&k, "/v3/users", "users", "admin").await,
        project: id_of(&k, "/v3/projects", "projects", "admin").await,
        role: id_of(&k, "/v3/roles", "roles", "admin").await,
        cred: String::new(),
        rule: String::new(),
    };
    admin.cred = app_cred_of(&k, &admin, 0).await;
    admin.rule = free_rule_of(&k, &admin, 0).await;
    let reader = user_with(&k, "reader-1", "reader").await;
    let member = user_with(&k, "member-1", "member").await;
    let other = user_with(&k, "other-1", "member").await;
    let mut cases = 0;
    for row in ENDPOINTS.iter().filter(|r| r.rule != Rule::Public) {
        for (role, caller) in [("reader", &reader), ("member", &member), ("admin", &admin)] {
            for own in [true, false] {
                cases += 1;
                let target = if own { caller } else { &other };
                let victim = victim(&k, row.method, row.path, target, cases).await;
                let before = k.position().await;
                let r = k
                    .send_rb(request(
                        &k,
                        row.method,
                        row.path,
                        caller,
                        target,
                        cases,
                        victim.as_deref(),
                    ))
                    .await;
                let what = format!(
                    "{} {} as {role} ({})",
                    row.method,
                    row.path,
                    if own { "own" } else { "other" }
                );
                let is_admin = role == "admin";
                let refused = match row.rule {
                    Rule::Public | Rule::Authenticated => None,
                    Rule::OwnOrAll => {
                        // The list holds the caller's own entities, the others' only for admins.
                        let key = match row.path {
                            "/v3/users" => "users",
                            "/v3/role_assignments" => "role_assignments",
                            _ => "projects",
                        };
                        let want = if key == "projects" {
                            &other.project
                        } else {
                            &other.user
                        };
                        let body = r.json();
                        let ids: Vec<&str> = body[key]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|e| {
                                if key == "role_assignments" {
                                    e["user"]["id"].as_str().unwrap()
                                } else {
                                    e["id"].as_str().unwrap()
                                }
                            })
                            .collect();
                        assert_eq!(ids.contains(&want.as_str()), is_admin, "{what}: {ids:?}");
                        let mine = if key == "projects" {
                            &caller.project
                        } else {
                            &caller.user
                        };
                        assert!(ids.contains(&mine.as_str()), "{what}: {ids:?}");
                        None
                    }
                    Rule::AdminOrSelf | Rule::AdminOrMember => (!is_admin && !own).then_some(404),
                    Rule::AdminOrOwnToken => (!is_admin && !own).then_some(403),
                    Rule::Admin => (!is_admin).then_some(403),
                    Rule::SelfOnly => (!own).then_some(403),
                    Rule::AdminOrMemberSelf if is_admin => None,
                    Rule::AdminOrMemberSelf if !own => Some(404),
                    Rule::AdminOrMemberSelf => (role == "reader").then_some(403),
                };
                match refused {
                    Some(code) => {
                        assert_eq!(r.status.as_u16(), code, "{what}: {}", r.text());
                        if code == 403 && row.method != "HEAD" {
                            let name = if row.rule == Rule::SelfOnly {
                                "for another user"
                            } else {
                                row.name
                            };
                            assert!(
                                r.text().contains(name),
                                "{what}: 403 must name {}: {}",
                                name,
                                r.text()
                            );
                        }
                        assert_eq!(k.position().await, before, "{what}: a refusal appended");
                    }
                    None => {
                        assert!(r.status.is_success(), "{what}: {} {}", r.status, r.text());
                        if matches!(row.method, "GET" | "HEAD") {
                            assert_eq!(k.position().await, before, "{what}: a read appended");
                        }
                    }
                }
            }
        }
    }
    assert!(cases >= 100, "only {cases} cases");
}
