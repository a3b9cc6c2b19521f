//! The identity API over real loopback HTTP: an embedded log in a tempdir, the
//! projector, the identity bootstrap and the identity router on 127.0.0.1:0. Covers
//! the router against its route table and regressions found by schemathesis
//! (requests axum cannot read must get Keystone-shaped 4xx answers and change
//! nothing).

mod common;

use axum::http::Method;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

/// A concrete path for a template (every parameter replaced by `x`).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_of_the_table_is_served_and_nothing_else() {
    let k = start().await;
    let table = identity::route_table();
    let mut seen = std::collections::BTreeSet::new();
    for (method, path) in &table {
        assert!(
            seen.insert((method.to_string(), *path)),
            "{method} {path} is listed twice"
        );
        let r = k.send(method.clone(), &concrete(path), None).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if r.status == StatusCode::NOT_FOUND && *method != Method::HEAD {
            assert_ne!(
                r.json()["error"]["message"],
                "The resource could not be found.",
                "{method} {path} reached the fallback"
            );
        }
    }
    // A method the table does not list for a listed path is a Keystone-shaped 405.
    for (_, path) in &table {
        for other in [Method::DELETE, Method::PUT, Method::PATCH, Method::POST] {
            if table.iter().any(|(m, p)| *m == other && p == path) {
                continue;
            }
            let r = k.send(other.clone(), &concrete(path), None).await;
            r.assert_error(405);
        }
    }
}

#[tokio::test]
async fn unreadable_requests_get_keystone_shaped_4xx_and_append_nothing() {
    let k = start().await;
    let before = k.position().await;
    // Invalid UTF-8 in a percent-encoded path parameter (axum: text/plain 400).
    for path in [
        "/v3/projects/%FF",
        "/v3/users/%FF%FE",
        "/v3/roles/%C3",
        "/v3/domains/%FF",
        "/v3/projects/%FF/users/x/roles",
        "/v3/projects/x/users/x/roles/%FF",
    ] {
        let r = k.send(Method::GET, path, None).await;
        r.assert_error(400);
    }
    let r = k
        .send(Method::PUT, "/v3/projects/x/users/%FF/roles/x", None)
        .await;
    r.assert_error(400);
    let r = k
        .send(
            Method::PATCH,
            "/v3/users/%FF",
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    r.assert_error(400);
    // A repeated query parameter (axum: text/plain 400).
    for path in [
        "/v3/projects?name=a&name=b",
        "/v3/users?name=a&name=b",
        "/v3/roles?name=a&name=b",
        "/v3/domains?name=a&name=b",
    ] {
        let r = k.send(Method::GET, path, None).await;
        r.assert_error(400);
    }
    // A body over the limit (axum: text/plain 413).
    let big = "x".repeat(identity::http::BODY_LIMIT + 1);
    for path in ["/v3/projects", "/v3/users", "/v3/auth/tokens"] {
        let r = k
            .send(
                Method::POST,
                path,
                Some(json!({"project": {"name": "big", "description": big}})),
            )
            .await;
        r.assert_error(413);
    }
    assert_eq!(k.position().await, before, "a refused request appended");
}

/// The request id of a response: `req-` and a lowercase hyphenated UUID.
fn request_id(r: &Resp) -> String {
    let v = r
        .headers
        .get("x-openstack-request-id")
        .unwrap_or_else(|| panic!("no x-openstack-request-id ({}): {}", r.status, r.text()))
        .to_str()
        .unwrap()
        .to_string();
    let uuid = v
        .strip_prefix("req-")
        .unwrap_or_else(|| panic!("{v} lacks req-"));
    let parsed = uuid::Uuid::parse_str(uuid).unwrap_or_else(|e| panic!("{v}: {e}"));
    assert_eq!(parsed.hyphenated().to_string(), uuid, "{v}");
    v
}

#[tokio::test]
async fn every_response_has_a_fresh_request_id() {
    let k = start().await;
    let mut ids = std::collections::BTreeSet::new();
    let big = "x".repeat(identity::http::BODY_LIMIT + 1);
    let cases: Vec<(Method, &str, Option<serde_json::Value>, u16)> = vec![
        (Method::GET, "/", None, 300),
        (Method::GET, "/v3", None, 200),
        (Method::GET, "/v3/projects", None, 200),
        (Method::GET, "/v3/projects/nope", None, 404),
        (Method::GET, "/v3/nowhere", None, 404),
        (Method::DELETE, "/v3/roles", None, 405),
        (Method::GET, "/v3/users/%FF", None, 400),
        (
            Method::POST,
            "/v3/projects",
            Some(json!({"project": {"description": big}})),
            413,
        ),
    ];
    for (method, path, body, status) in cases {
        let r = k.send(method.clone(), path, body).await;
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {}", r.text());
        assert!(ids.insert(request_id(&r)), "{method} {path}: id reused");
    }
    // Token issue (201) and a request without a token (401).
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}}}});
    let r = k
        .send_rb(
            k.http
                .post(format!("{}/v3/auth/tokens", k.base))
                .json(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert!(ids.insert(request_id(&r)));
    // The client's own id is not echoed (Keystone keeps it apart, as the global id).
    let theirs = "req-00000000-0000-4000-8000-000000000000";
    let r = k
        .send_rb(
            k.http
                .get(format!("{}/v3/projects", k.base))
                .header("X-Openstack-Request-Id", theirs),
        )
        .await;
    r.assert_error(401);
    let ours = request_id(&r);
    assert_ne!(ours, theirs);
    assert!(ids.insert(ours));
}

#[tokio::test]
async fn the_request_id_is_the_correlation_id_of_the_events_appended() {
    let k = start().await;
    let before = k.position().await;
    let r = k
        .send(
            Method::POST,
            "/v3/projects",
            Some(json!({"project": {"name": "traced"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let rid = request_id(&r);
    let commits = k
        .log
        .read_stream(&eventlog::StreamName::api(), before + 1, 100)
        .await
        .unwrap();
    assert!(!commits.is_empty(), "nothing appended");
    for c in &commits {
        assert_eq!(c.meta.correlation_id, rid, "{}", c.subject);
    }
}
