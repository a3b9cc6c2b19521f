//! os-server-groups over HTTP: shapes per microversion, validation, quota, visibility,
//! paging, and the `group` scheduler hint on server create.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn msg(r: &Resp, kind: &str, code: u16) -> String {
    assert_eq!(r.status.as_u16(), code, "{:?}", r.body);
    r.body[kind]["message"].as_str().unwrap().to_string()
}

async fn group(s: &Stack, token: &str, name: &str, policy: &str) -> String {
    let r = s
        .post(
            "/v2.1/os-server-groups",
            token,
            Some("2.64"),
            json!({"server_group": {"name": name, "policy": policy}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["server_group"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn create_show_list_delete_with_shapes_per_microversion() {
    let s = start().await;
    // 2.1: policies list, metadata, no project/user.
    let r = s
        .post(
            "/v2.1/os-server-groups",
            ALICE,
            None,
            json!({"server_group": {"name": "g1", "policies": ["anti-affinity"]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let g = &r.body["server_group"];
    assert_eq!(g["policies"], json!(["anti-affinity"]));
    assert_eq!(g["metadata"], json!({}));
    assert_eq!(g["members"], json!([]));
    assert!(g.get("project_id").is_none());
    let id = g["id"].as_str().unwrap().to_string();
    // 2.13: project and user.
    let r = s
        .get(&format!("/v2.1/os-server-groups/{id}"), ALICE, Some("2.13"))
        .await;
    assert_eq!(r.body["server_group"]["project_id"], "p1");
    assert_eq!(r.body["server_group"]["user_id"], "alice");
    // 2.64: policy + rules, no policies / metadata.
    let r = s
        .get(&format!("/v2.1/os-server-groups/{id}"), ALICE, Some("2.64"))
        .await;
    let g = &r.body["server_group"];
    assert_eq!(g["policy"], "anti-affinity");
    assert_eq!(g["rules"], json!({}));
    assert!(g.get("policies").is_none() && g.get("metadata").is_none());
    let r = s
        .post(
            "/v2.1/os-server-groups",
            ALICE,
            Some("2.64"),
            json!({"server_group": {"name": "g2", "policy": "anti-affinity", "rules": {"max_server_per_host": 3}}}),
        )
        .await;
    assert_eq!(
        r.body["server_group"]["rules"],
        json!({"max_server_per_host": 3})
    );
    // List: own project only; admin all_projects sees every project's.
    group(&s, BOB, "bobs", "affinity").await;
    let r = s.get("/v2.1/os-server-groups", ALICE, None).await;
    assert_eq!(r.body["server_groups"].as_array().unwrap().len(), 2);
    let r = s
        .get("/v2.1/os-server-groups?all_projects=True", ALICE, None)
        .await;
    assert_eq!(
        r.body["server_groups"].as_array().unwrap().len(),
        2,
        "ignored for members"
    );
    let r = s
        .get("/v2.1/os-server-groups?all_projects=True", ADMIN, None)
        .await;
    assert_eq!(r.body["server_groups"].as_array().unwrap().len(), 3);
    let r = s
        .get("/v2.1/os-server-groups?limit=1&offset=1", ALICE, None)
        .await;
    let page = r.body["server_groups"].as_array().unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["name"], "g2");
    // Another project's group is a 404; delete then 404.
    let m = msg(
        &s.get(&format!("/v2.1/os-server-groups/{id}"), BOB, None)
            .await,
        "itemNotFound",
        404,
    );
    assert_eq!(m, format!("Instance group {id} could not be found."));
    let r = s
        .call(
            Method::DELETE,
            &format!("/v2.1/os-server-groups/{id}"),
            Some(BOB),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s
        .call(
            Method::DELETE,
            &format!("/v2.1/os-server-groups/{id}"),
            Some(ALICE),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s
        .get(&format!("/v2.1/os-server-groups/{id}"), ALICE, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_bodies_are_400_and_append_nothing() {
    let s = start().await;
    let before = s.positions().await;
    let rows: Vec<(&str, Value, &str)> = vec![
        (
            "2.1",
            json!({"server_group": {"name": "g", "policies": ["soft-affinity"]}}),
            "is not one of",
        ),
        (
            "2.15",
            json!({"server_group": {"name": "g", "policies": ["bogus"]}}),
            "is not one of",
        ),
        (
            "2.15",
            json!({"server_group": {"name": "g", "policies": []}}),
            "policies",
        ),
        (
            "2.15",
            json!({"server_group": {"name": "g", "policy": "affinity"}}),
            "'policy' was unexpected",
        ),
        (
            "2.64",
            json!({"server_group": {"name": "g", "policies": ["affinity"]}}),
            "'policies' was unexpected",
        ),
        (
            "2.64",
            json!({"server_group": {"name": "g"}}),
            "'policy' is a required property",
        ),
        (
            "2.64",
            json!({"server_group": {"name": "g", "policy": "affinity", "rules": {"max_server_per_host": 2}}}),
            "Only anti-affinity policy supports rules.",
        ),
        (
            "2.64",
            json!({"server_group": {"name": "g", "policy": "anti-affinity", "rules": {"max_server_per_host": 0}}}),
            "max_server_per_host",
        ),
        (
            "2.64",
            json!({"server_group": {"name": "g", "policy": "anti-affinity", "extra": 1}}),
            "'extra' was unexpected",
        ),
        (
            "2.64",
            json!({"server_group": {"name": "", "policy": "anti-affinity"}}),
            "name",
        ),
        (
            "2.64",
            json!({"server_group": {"policy": "anti-affinity"}}),
            "'name' is a required property",
        ),
    ];
    for (v, body, want) in rows {
        let r = s
            .post("/v2.1/os-server-groups", ALICE, Some(v), body.clone())
            .await;
        let m = msg(&r, "badRequest", 400);
        assert!(m.contains(want), "{v} {body}: {m}");
    }
    assert_eq!(s.positions().await, before);
    // Soft policies from 2.15.
    let r = s
        .post(
            "/v2.1/os-server-groups",
            ALICE,
            Some("2.15"),
            json!({"server_group": {"name": "g", "policies": ["soft-anti-affinity"]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Readers may list but not create (project member rule).
    let r = s.get("/v2.1/os-server-groups", ALICE, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn server_groups_quota_admits_exactly_the_limit_under_concurrency() {
    let s = std::sync::Arc::new(start().await);
    let mut tasks = vec![];
    for n in 0..30 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.post(
                "/v2.1/os-server-groups",
                ALICE,
                Some("2.64"),
                json!({"server_group": {"name": format!("g{n}"), "policy": "affinity"}}),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            403 => assert_eq!(
                msg(&r, "forbidden", 403),
                "Quota exceeded, too many server groups."
            ),
            other => panic!("{other}: {:?}", r.body),
        }
    }
    assert_eq!(ok, 10, "Nova's default server_groups quota");
    let r = s.get("/v2.1/os-server-groups", ALICE, None).await;
    assert_eq!(r.body["server_groups"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn group_hint_adds_the_member_and_counts_the_members_quota() {
    let s = start().await;
    s.flavor("1", "tiny", 512, 1).await;
    let gid = group(&s, ALICE, "g", "anti-affinity").await;
    let create = |hint: Value| {
        json!({"server": {
            "name": "vm", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b",
            "flavorRef": "1", "networks": "none"},
            "os:scheduler_hints": {"group": hint}})
    };
    let mut members = vec![];
    for _ in 0..10 {
        let r = s
            .post("/v2.1/servers", ALICE, Some("2.71"), create(json!(gid)))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        members.push(r.body["server"]["id"].as_str().unwrap().to_string());
    }
    let r = s
        .get(&format!("/v2.1/os-server-groups/{gid}"), ALICE, None)
        .await;
    let mut shown: Vec<String> = r.body["server_group"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    shown.sort();
    let mut want = members.clone();
    want.sort();
    assert_eq!(shown, want);
    let r = s
        .get(
            &format!("/v2.1/servers/{}", members[0]),
            ALICE,
            Some("2.71"),
        )
        .await;
    assert_eq!(r.body["server"]["server_groups"], json!([gid]));
    // The 11th member is over server_group_members (10): 403, nothing appended.
    let before = s.positions().await;
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.71"), create(json!(gid)))
        .await;
    assert_eq!(
        msg(&r, "forbidden", 403),
        "Quota exceeded, too many servers in group"
    );
    // An unknown group, or another project's: 400.
    let unknown = uuid::Uuid::new_v4().to_string();
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.71"), create(json!(unknown)))
        .await;
    assert_eq!(
        msg(&r, "badRequest", 400),
        format!("Instance group {unknown} could not be found.")
    );
    let r = s
        .post("/v2.1/servers", BOB, Some("2.71"), create(json!(gid)))
        .await;
    msg(&r, "badRequest", 400);
    assert_eq!(s.positions().await, before);
}
