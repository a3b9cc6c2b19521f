//! Migrations and server external events end to end (issue 12): `GET /os-migrations`
//! derived from the log (resize, cold and live migration, their statuses, filters,
//! paging, the 2.23 / 2.59 / 2.80 fields), `/servers/{id}/migrations` (only in-progress
//! live migrations), force_complete / abort refused in Nova's order when nothing is
//! migrating, `POST /os-server-external-events` with Nova's per-event codes, and
//! `replay rebuild` folding the `migrations` model to the same rows.

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ADMIN: &str = "admin:admin";
const ALICE: &str = "alice:proj-a";

async fn migrations(h: &Harness, version: &str, query: &str) -> Vec<Value> {
    let (code, v) = h
        .req_at(
            ADMIN,
            M::GET,
            &format!("/os-migrations{query}"),
            version,
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    v["migrations"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_are_listed_as_nova_migrations() {
    let h = Harness::start(|o| o.hosts = 3).await;
    let a = h.create(ALICE, "a", "1").await;
    let b = h.create(ALICE, "b", "1").await;
    h.wait(&a, "ACTIVE").await;
    h.wait(&b, "ACTIVE").await;
    assert!(migrations(&h, "2.1", "").await.is_empty());

    // A resize, confirmed; a cold migration, reverted; a live migration.
    h.action(ALICE, &a, json!({"resize": {"flavorRef": "2"}}), 202)
        .await;
    h.wait(&a, "VERIFY_RESIZE").await;
    let (code, v) = h.req_at(ADMIN, M::GET, "/os-migrations", "2.1", None).await;
    assert_eq!(code, 200);
    let m = &v["migrations"][0];
    assert_eq!(m["status"], "finished", "{m}");
    assert_eq!(m["instance_uuid"], a.as_str());
    assert_eq!(m["old_instance_type_id"], 1);
    assert_eq!(m["new_instance_type_id"], 2);
    assert!(
        m.get("migration_type").is_none() && m.get("uuid").is_none(),
        "{m}"
    );
    h.action(ALICE, &a, json!({"confirmResize": null}), 204)
        .await;
    h.wait(&a, "ACTIVE").await;

    h.action(ADMIN, &b, json!({"migrate": null}), 202).await;
    h.wait(&b, "VERIFY_RESIZE").await;
    h.action(ADMIN, &b, json!({"revertResize": null}), 202)
        .await;
    h.wait(&b, "ACTIVE").await;

    h.action(
        ADMIN,
        &a,
        json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
        202,
    )
    .await;
    h.wait(&a, "ACTIVE").await;

    let all = migrations(&h, "2.80", "").await;
    let summary: Vec<(String, String, String)> = all
        .iter()
        .map(|m| {
            (
                m["instance_uuid"].as_str().unwrap().to_string(),
                m["migration_type"].as_str().unwrap().to_string(),
                m["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        summary,
        [
            (a.clone(), "live-migration".into(), "completed".into()),
            (b.clone(), "migration".into(), "reverted".into()),
            (a.clone(), "resize".into(), "confirmed".into()),
        ]
    );
    for m in &all {
        assert!(m["uuid"].is_string() && m["id"].is_u64(), "{m}");
        assert!(
            m.get("links").is_none(),
            "finished migrations have no links: {m}"
        );
        assert_ne!(m["source_compute"], m["dest_compute"], "{m}");
    }
    // 2.80: who started it.
    assert_eq!(all[0]["user_id"], "admin");
    assert_eq!(all[2]["user_id"], "alice");
    assert_eq!(all[2]["project_id"], "proj-a");

    // Filters.
    let only = |q: &'static str| {
        let h = &h;
        async move { migrations(h, "2.80", q).await.len() }
    };
    assert_eq!(only("?migration_type=resize").await, 1);
    assert_eq!(
        only("?migration_type=resize&migration_type=migration").await,
        2
    );
    assert_eq!(only("?status=completed").await, 1);
    assert_eq!(
        only(Box::leak(format!("?instance_uuid={a}").into_boxed_str())).await,
        2
    );
    assert_eq!(only("?user_id=alice").await, 1);
    assert_eq!(only("?project_id=proj-a").await, 1);
    let src = all[1]["source_compute"].as_str().unwrap().to_string();
    let by_host = migrations(&h, "2.80", &format!("?host={src}")).await;
    assert!(by_host.iter().any(|m| m["uuid"] == all[1]["uuid"]));
    assert!(
        migrations(&h, "2.80", "?changes-since=2999-01-01T00:00:00Z")
            .await
            .is_empty()
    );
    assert_eq!(
        migrations(&h, "2.66", "?changes-before=2999-01-01T00:00:00Z")
            .await
            .len(),
        3
    );

    // Paging (2.59): limit and marker, with a next link when a page is full.
    let (code, v) = h
        .req_at(ADMIN, M::GET, "/os-migrations?limit=2", "2.59", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["migrations"].as_array().unwrap().len(), 2);
    assert!(
        v["migrations_links"][0]["href"]
            .as_str()
            .unwrap()
            .contains("marker="),
        "{v}"
    );
    let marker = v["migrations"][1]["uuid"].as_str().unwrap();
    let rest = migrations(&h, "2.59", &format!("?marker={marker}")).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["uuid"], all[2]["uuid"]);
    // Nova's 400s.
    for (q, v) in [
        ("?marker=nope", "2.59"),
        ("?limit=-1", "2.59"),
        ("?bogus=1", "2.59"),
        ("?user_id=x", "2.79"),
        (
            "?changes-since=2020-01-02T00:00:00Z&changes-before=2020-01-01T00:00:00Z",
            "2.66",
        ),
    ] {
        let (code, body) = h
            .req_at(ADMIN, M::GET, &format!("/os-migrations{q}"), v, None)
            .await;
        assert_eq!(code, 400, "{q}: {body}");
    }
    // Unknown keys are ignored before 2.59.
    assert_eq!(migrations(&h, "2.58", "?bogus=1").await.len(), 3);
    // Admin only.
    let (code, _) = h
        .req_at(ALICE, M::GET, "/os-migrations", "2.80", None)
        .await;
    assert_eq!(code, 403);

    // The server's migrations: only in-progress live migrations; none now.
    let (code, v) = h
        .req_at(
            ADMIN,
            M::GET,
            &format!("/servers/{a}/migrations"),
            "2.23",
            None,
        )
        .await;
    assert_eq!((code, v), (200, json!({"migrations": []})));
    let (code, _) = h
        .req_at(
            ADMIN,
            M::GET,
            &format!("/servers/{a}/migrations"),
            "2.22",
            None,
        )
        .await;
    assert_eq!(code, 404);
    let live_id = all[0]["id"].as_u64().unwrap();
    let resize_id = all[2]["id"].as_u64().unwrap();
    let (code, v) = h
        .req_at(
            ADMIN,
            M::GET,
            &format!("/servers/{a}/migrations/{live_id}"),
            "2.80",
            None,
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        format!("Live migration {live_id} for server {a} is not in progress.")
    );
    let (code, v) = h
        .req_at(
            ADMIN,
            M::GET,
            &format!("/servers/{a}/migrations/{resize_id}"),
            "2.80",
            None,
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        format!("Migration {resize_id} for server {a} is not live-migration.")
    );
    // force_complete / abort: the server is not migrating (409, before the migration).
    let (code, v) = h
        .req_at(
            ADMIN,
            M::POST,
            &format!("/servers/{a}/migrations/{live_id}/action"),
            "2.22",
            Some(json!({"force_complete": null})),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    let (code, _) = h
        .req_at(
            ADMIN,
            M::POST,
            &format!("/servers/{a}/migrations/{live_id}/action"),
            "2.22",
            Some(json!({"force_complete": 1})),
        )
        .await;
    assert_eq!(code, 400);
    let (code, _) = h
        .req_at(
            ADMIN,
            M::DELETE,
            &format!("/servers/{a}/migrations/{live_id}"),
            "2.24",
            None,
        )
        .await;
    assert_eq!(code, 409);
    let (code, _) = h
        .req_at(
            ADMIN,
            M::DELETE,
            &format!("/servers/{a}/migrations/{live_id}"),
            "2.23",
            None,
        )
        .await;
    assert_eq!(code, 404);

    // A deleted server's migrations are gone from the list.
    let (code, _) = h
        .req_at(ALICE, M::DELETE, &format!("/servers/{b}"), "2.1", None)
        .await;
    assert_eq!(code, 204);
    h.wait(&b, "GONE").await;
    assert_eq!(migrations(&h, "2.80", "").await.len(), 2);
    let served = migrations(&h, "2.80", "").await;

    // `replay rebuild` folds the same rows, and a restart serves the same list.
    let h = h.restart(|o| o.hosts = 3).await;
    assert_eq!(migrations(&h, "2.80", "").await, served);
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_events_answer_per_event() {
    let h = Harness::start(|o| o.hosts = 1).await;
    let a = h.create(ALICE, "a", "1").await;
    h.wait(&a, "ACTIVE").await;
    let post = |token: &'static str, version: &'static str, body: Value| {
        let h = &h;
        async move {
            h.req_at(
                token,
                M::POST,
                "/os-server-external-events",
                version,
                Some(body),
            )
            .await
        }
    };
    let (code, v) = post(
        ADMIN,
        "2.1",
        json!({"events": [{"name": "network-changed", "server_uuid": a}]}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v,
        json!({"events": [{"name": "network-changed", "server_uuid": a, "status": "completed", "code": 200}]})
    );
    // Unknown server 404, missing tag 400, in one 207.
    let missing = "0b2f5a6e-1f7d-4c2a-9d55-3c3a0e6f0a11";
    let (code, v) = post(
        ADMIN,
        "2.76",
        json!({"events": [
            {"name": "network-vif-plugged", "server_uuid": a, "tag": "port-1", "status": "failed"},
            {"name": "network-changed", "server_uuid": missing},
            {"name": "power-update", "server_uuid": a},
        ]}),
    )
    .await;
    assert_eq!(code, 207, "{v}");
    let codes: Vec<u64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [200, 404, 400]);
    assert_eq!(v["events"][0]["status"], "completed");
    assert_eq!(v["events"][0]["tag"], "port-1");
    assert_eq!(v["events"][1]["status"], "failed");
    // Event names per microversion, and the schema's other 400s.
    for (version, body) in [
        (
            "2.75",
            json!({"events": [{"name": "power-update", "server_uuid": a, "tag": "POWER_ON"}]}),
        ),
        (
            "2.50",
            json!({"events": [{"name": "volume-extended", "server_uuid": a, "tag": "v"}]}),
        ),
        (
            "2.92",
            json!({"events": [{"name": "volume-reimaged", "server_uuid": a, "tag": "v"}]}),
        ),
        ("2.93", json!({"events": []})),
        ("2.93", json!({"events": [{"name": "network-changed"}]})),
        (
            "2.93",
            json!({"events": [{"name": "network-changed", "server_uuid": "x"}]}),
        ),
        (
            "2.93",
            json!({"events": [{"name": "network-changed", "server_uuid": a, "status": "done"}]}),
        ),
        (
            "2.93",
            json!({"events": [{"name": "network-changed", "server_uuid": a, "bogus": 1}]}),
        ),
        ("2.93", json!({})),
    ] {
        let (code, v) = post(ADMIN, version, body.clone()).await;
        assert_eq!(code, 400, "{version} {body}: {v}");
    }
    let (code, _) = post(
        ADMIN,
        "2.93",
        json!({"events": [{"name": "volume-reimaged", "server_uuid": a, "tag": "v"}]}),
    )
    .await;
    assert_eq!(code, 200);
    // Admin (service) only.
    let (code, _) = post(
        ALICE,
        "2.1",
        json!({"events": [{"name": "network-changed", "server_uuid": a}]}),
    )
    .await;
    assert_eq!(code, 403);
    // A server on no host (shelved and offloaded): 422.
    h.action(ALICE, &a, json!({"shelve": null}), 202).await;
    h.wait(&a, "SHELVED_OFFLOADED").await;
    let (code, v) = post(
        ADMIN,
        "2.1",
        json!({"events": [{"name": "network-changed", "server_uuid": a}]}),
    )
    .await;
    assert_eq!(code, 207);
    assert_eq!(v["events"][0]["code"], 422);
}

/// Nova's project-manager persona (`PROJECT_MANAGER_OR_ADMIN`): a manager cold- and
/// live-migrates its project's servers without naming a host (naming one is admin's,
/// `migrate:host`), lists its own project's migrations with the host fields null
/// (`index:host` is admin's) and needs `index:all_projects` (admin) for the rest; a
/// member may do none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_manager_moves_its_servers_and_lists_their_migrations() {
    const MANAGER: &str = "mia:proj-a:manager";
    let h = Harness::start(|o| o.hosts = 3).await;
    let a = h.create(ALICE, "a", "1").await;
    h.wait(&a, "ACTIVE").await;
    let policy = |name: &str| format!("Policy doesn't allow {name} to be performed.");

    let before = h.log_len().await;
    let v = h.action(ALICE, &a, json!({"migrate": null}), 403).await;
    assert_eq!(
        v["forbidden"]["message"],
        policy("os_compute_api:os-migrate-server:migrate")
    );
    let v = h
        .action(MANAGER, &a, json!({"migrate": {"host": "compute-2"}}), 403)
        .await;
    assert_eq!(
        v["forbidden"]["message"],
        policy("os_compute_api:os-migrate-server:migrate:host")
    );
    let v = h
        .action(
            MANAGER,
            &a,
            json!({"os-migrateLive": {"host": "compute-2", "block_migration": "auto"}}),
            403,
        )
        .await;
    assert_eq!(
        v["forbidden"]["message"],
        policy("os_compute_api:os-migrate-server:migrate_live:host")
    );
    assert_eq!(h.log_len().await, before, "refusals append nothing");

    h.action(MANAGER, &a, json!({"migrate": null}), 202).await;
    h.wait(&a, "VERIFY_RESIZE").await;
    h.action(MANAGER, &a, json!({"confirmResize": null}), 204)
        .await;
    h.wait(&a, "ACTIVE").await;
    h.action(
        MANAGER,
        &a,
        json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
        202,
    )
    .await;
    h.wait(&a, "ACTIVE").await;

    for (token, query, want) in [
        (MANAGER, "", 403),
        (MANAGER, "?project_id=proj-b", 403),
        (ALICE, "?project_id=proj-a", 403),
    ] {
        let (code, v) = h
            .req_at(
                token,
                M::GET,
                &format!("/os-migrations{query}"),
                "2.80",
                None,
            )
            .await;
        assert_eq!(code, want, "{token} {query}: {v}");
    }
    let (code, v) = h
        .req_at(MANAGER, M::GET, "/os-migrations", "2.80", None)
        .await;
    assert_eq!(
        v["forbidden"]["message"],
        policy("os_compute_api:os-migrations:index:all_projects"),
        "{code}"
    );
    let (code, v) = h
        .req_at(
            MANAGER,
            M::GET,
            "/os-migrations?project_id=proj-a",
            "2.80",
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let mine = v["migrations"].as_array().unwrap();
    assert_eq!(mine.len(), 2, "{v}");
    for m in mine {
        assert_eq!(m["project_id"], "proj-a");
        for k in [
            "source_compute",
            "source_node",
            "dest_compute",
            "dest_host",
            "dest_node",
        ] {
            assert!(m[k].is_null(), "{k} shown to a manager: {m}");
        }
    }
    // The admin sees the hosts.
    let all = migrations(&h, "2.80", "").await;
    assert!(
        all.iter().all(|m| m["source_compute"].is_string()),
        "{all:?}"
    );
    h.stack.stop().await;
}
