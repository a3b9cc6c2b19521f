//! Evacuate (issue 12 item 1) over HTTP: refused in Nova's order while the source
//! host's compute service is up, for an unknown or the same target host, and for a
//! non-admin, each appending nothing; once the host is forced down (PUT
//! /os-services/{id}) the server is rebuilt on another host: from 2.95 it lands SHUTOFF,
//! before it keeps its state (ACTIVE) and, before 2.14, the reply carries `adminPass`.
//! The instance action `evacuate` and the migration of type `evacuation` (status
//! `done`) are listed, and `replay rebuild` folds the same read models.

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ADMIN: &str = "admin:admin";
const ALICE: &str = "alice:proj-a";

async fn evacuate(h: &Harness, token: &str, id: &str, version: &str, body: Value) -> (u16, Value) {
    h.req_at(
        token,
        M::POST,
        &format!("/servers/{id}/action"),
        version,
        Some(json!({ "evacuate": body })),
    )
    .await
}

fn host_of(server: &Value) -> String {
    server["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .expect("host")
        .to_string()
}

async fn force_down(h: &Harness, host: &str) {
    let (code, v) = h
        .req_at(
            ADMIN,
            M::GET,
            &format!("/os-services?host={host}"),
            "2.53",
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let id = v["services"][0]["id"].as_str().unwrap().to_string();
    let (code, v) = h
        .req_at(
            ADMIN,
            M::PUT,
            &format!("/os-services/{id}"),
            "2.53",
            Some(json!({"forced_down": true})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["service"]["forced_down"], true, "{v}");
}

async fn action_names(h: &Harness, id: &str) -> Vec<String> {
    let (code, v) = h
        .req(
            ADMIN,
            M::GET,
            &format!("/servers/{id}/os-instance-actions"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    v["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuate_rebuilds_a_server_of_a_down_host_elsewhere() {
    let h = Harness::start(|o| o.hosts = 2).await;
    let a = h.create(ALICE, "a", "1").await;
    let src = host_of(&h.wait(&a, "ACTIVE").await);
    // Two more servers on the same host (admin, 2.74 `host`).
    let mut others = Vec::new();
    for name in ["b", "c"] {
        let (code, v) = h
            .req(
                ADMIN,
                M::POST,
                "/servers",
                Some(json!({"server": {"name": name, "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1", "networks": "none", "host": src}})),
            )
            .await;
        assert_eq!(code, 202, "{v}");
        let id = v["server"]["id"].as_str().unwrap().to_string();
        assert_eq!(host_of(&h.wait(&id, "ACTIVE").await), src);
        others.push(id);
    }
    let (code, v) = h
        .req_at(ADMIN, M::GET, "/os-hypervisors", "2.53", None)
        .await;
    assert_eq!(code, 200, "{v}");
    let dest = v["hypervisors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["hypervisor_hostname"].as_str().unwrap().to_string())
        .find(|n| *n != src)
        .expect("a second host");

    // Refusals, in Nova's order, append nothing.
    let before = h.log_len().await;
    let (code, v) = evacuate(&h, ALICE, &a, "2.96", json!({})).await;
    assert_eq!(code, 403, "{v}");
    let (code, v) = evacuate(&h, ADMIN, &a, "2.96", json!({"host": "nope"})).await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["itemNotFound"]["message"], "Compute host nope not found.");
    let (code, v) = evacuate(&h, ADMIN, &a, "2.96", json!({"host": src})).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        "The target host can't be the same one."
    );
    let (code, v) = evacuate(&h, ADMIN, &a, "2.96", json!({})).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        format!("Compute service of {src} is still in use.")
    );
    // Bodies by microversion.
    let (code, v) = evacuate(&h, ADMIN, &a, "2.13", json!({})).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = evacuate(&h, ADMIN, &a, "2.14", json!({"onSharedStorage": false})).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = evacuate(&h, ADMIN, &a, "2.68", json!({"force": false})).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = evacuate(&h, ADMIN, &a, "2.29", json!({"force": true})).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        "Can't force to a non-provided destination"
    );
    assert_eq!(h.log_len().await, before, "refusals append nothing");

    force_down(&h, &src).await;

    // 2.95+: the scheduler picks the other host; the server lands SHUTOFF.
    let (code, v) = evacuate(&h, ADMIN, &a, "2.96", json!({})).await;
    assert_eq!(code, 200, "{v}");
    assert!(v.is_null(), "no body from 2.14: {v}");
    let s = h.wait(&a, "SHUTOFF").await;
    assert_eq!(host_of(&s), dest);
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    assert_eq!(action_names(&h, &a).await[0], "evacuate");

    // 2.29 to a named host: it keeps its state (ACTIVE).
    let (code, v) = evacuate(
        &h,
        ADMIN,
        &others[0],
        "2.29",
        json!({"host": dest, "adminPass": "MySecretPass", "force": false}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert!(v.is_null(), "{v}");
    let s = h.wait(&others[0], "ACTIVE").await;
    assert_eq!(host_of(&s), dest);

    // Before 2.14: `onSharedStorage` required, the password returned.
    let (code, v) = evacuate(
        &h,
        ADMIN,
        &others[1],
        "2.1",
        json!({"onSharedStorage": "False", "adminPass": "MySecretPass"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v, json!({"adminPass": "MySecretPass"}));
    h.wait(&others[1], "ACTIVE").await;

    // A server no longer on the down host: its compute service is up.
    let (code, v) = evacuate(&h, ADMIN, &a, "2.96", json!({})).await;
    assert_eq!(code, 400, "{v}");

    // The migrations: type evacuation, done, from the source to the destination.
    let (code, v) = h
        .req_at(
            ADMIN,
            M::GET,
            "/os-migrations?migration_type=evacuation",
            "2.59",
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let ms = v["migrations"].as_array().unwrap().clone();
    assert_eq!(ms.len(), 3, "{v}");
    for m in &ms {
        assert_eq!(m["migration_type"], "evacuation", "{m}");
        assert_eq!(m["status"], "done", "{m}");
        assert_eq!(m["source_compute"], src.as_str(), "{m}");
        assert_eq!(m["dest_compute"], dest.as_str(), "{m}");
    }
    let (code, served) = h
        .req_at(ADMIN, M::GET, "/os-migrations", "2.80", None)
        .await;
    assert_eq!(code, 200);

    // `replay rebuild` folds the same rows.
    let h = h.restart(|o| o.hosts = 2).await;
    let (_, again) = h
        .req_at(ADMIN, M::GET, "/os-migrations", "2.80", None)
        .await;
    assert_eq!(again, served);
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}
