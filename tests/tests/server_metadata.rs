//! Server sub-resources over HTTP (issue 12, item 2): metadata (merge, replace, one
//! item, delete; the lock, the vm_state and the `metadata_items` quota refuse as Nova),
//! tags (2.26: list, replace, add, check, delete one and all, the list filters of
//! GET /servers), `ips` and `os-server-password`; every change is an event of the
//! instance (its history, `instance.update` notifications, a restart and `replay
//! rebuild` show it).

use std::time::{Duration, Instant};

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:p1";
const READER: &str = "rita:p1:reader";
const BOB: &str = "bob:p2";
const ADMIN: &str = "admin:admin";
const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

/// A request at microversion `version`.
async fn req_at(
    h: &Harness,
    version: &str,
    token: &str,
    method: M,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let (code, headers, v) = h.send_at(token, method, path, version, body).await;
    (code, v, headers)
}

/// Creates an ACTIVE server of ALICE's with `metadata`.
async fn active(h: &Harness, name: &str, metadata: Value) -> String {
    let (code, v) = h
        .req(
            ALICE,
            M::POST,
            "/servers",
            Some(
                json!({"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1",
                                   "networks": "none", "metadata": metadata}}),
            ),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    h.wait(&id, "ACTIVE").await;
    id
}

/// A server of ALICE's that ends in ERROR (no host has room for its flavor).
async fn failed(h: &Harness) -> String {
    let (code, v) = h
        .req(
            ADMIN,
            M::POST,
            "/flavors",
            Some(
                json!({"flavor": {"name": "huge", "id": "huge", "ram": 100_000_000,
                                   "vcpus": 1, "disk": 1}}),
            ),
        )
        .await;
    assert!(code == 200 || code == 409, "{v}");
    let id = h.create(ALICE, "doomed", "huge").await;
    h.wait(&id, "ERROR").await;
    id
}

/// The instance's event types from its history.
async fn history(h: &Harness, id: &str) -> Vec<String> {
    let resp = h
        .http
        .get(format!("http://{}/v1/instances/{id}/events", h.stack.addr))
        .header("X-Auth-Token", ADMIN)
        .send()
        .await
        .expect("history");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

/// The `instance.update` notifications of `id` (payload data), once there are `n`.
async fn updates(h: &Harness, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = h
            .http
            .get(format!(
                "http://{}/v1/notifications?limit=1000",
                h.stack.addr
            ))
            .header("X-Auth-Token", ADMIN)
            .send()
            .await
            .expect("notifications");
        let v: Value = resp.json().await.unwrap();
        let got: Vec<Value> = v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| &n["notification"])
            .filter(|n| {
                n["event_type"] == "instance.update"
                    && n["payload"]["nova_object.data"]["uuid"] == id
            })
            .map(|n| n["payload"]["nova_object.data"].clone())
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} updates of {id}", got.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_changes_are_instance_events_refused_as_nova_refuses_them() {
    let h = Harness::start(|_| {}).await;
    let id = active(&h, "meta", json!({"a": "1"})).await;
    let md = format!("/servers/{id}/metadata");

    let (code, v) = h.req(READER, M::GET, &md, None).await;
    assert_eq!((code, v), (200, json!({"metadata": {"a": "1"}})));
    // POST merges and answers the whole metadata.
    let (code, v) = h
        .req(ALICE, M::POST, &md, Some(json!({"metadata": {"b": "2"}})))
        .await;
    assert_eq!((code, v), (200, json!({"metadata": {"a": "1", "b": "2"}})));
    // One item: PUT answers the item, GET shows it, the key must match the body.
    let (code, v) = h
        .req(
            ALICE,
            M::PUT,
            &format!("{md}/b"),
            Some(json!({"meta": {"b": "3"}})),
        )
        .await;
    assert_eq!((code, v), (200, json!({"meta": {"b": "3"}})));
    let (code, v) = h.req(ALICE, M::GET, &format!("{md}/b"), None).await;
    assert_eq!((code, v), (200, json!({"meta": {"b": "3"}})));
    let (code, v) = h
        .req(
            ALICE,
            M::PUT,
            &format!("{md}/b"),
            Some(json!({"meta": {"c": "3"}})),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(v["badRequest"]["message"], "Request body and URI mismatch");
    let (code, v) = h
        .req(
            ALICE,
            M::PUT,
            &format!("{md}/b"),
            Some(json!({"meta": {"b": "1", "c": "2"}})),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = h
        .req(ALICE, M::POST, &md, Some(json!({"metadata": {"a/b": "x"}})))
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = h.req(ALICE, M::GET, &format!("{md}/zz"), None).await;
    assert_eq!(code, 404);
    assert_eq!(v["itemNotFound"]["message"], "Metadata item was not found");
    // PUT replaces everything.
    let (code, v) = h
        .req(ALICE, M::PUT, &md, Some(json!({"metadata": {"c": "4"}})))
        .await;
    assert_eq!((code, v), (200, json!({"metadata": {"c": "4"}})));
    assert_eq!(h.show(&id).await["metadata"], json!({"c": "4"}));
    let (code, _) = h.req(ALICE, M::DELETE, &format!("{md}/c"), None).await;
    assert_eq!(code, 204);
    let (code, v) = h.req(ALICE, M::DELETE, &format!("{md}/c"), None).await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(h.show(&id).await["metadata"], json!({}));

    // Policy: readers read only; other projects do not see the server.
    let (code, v) = h
        .req(READER, M::POST, &md, Some(json!({"metadata": {"x": "y"}})))
        .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Policy doesn't allow os_compute_api:server-metadata:create to be performed."
    );
    let (code, _) = h.req(BOB, M::GET, &md, None).await;
    assert_eq!(code, 404);

    // Locked by its owner: the owner is refused, an admin is not.
    h.action(ALICE, &id, json!({"lock": null}), 202).await;
    let (code, v) = h
        .req(ALICE, M::POST, &md, Some(json!({"metadata": {"x": "y"}})))
        .await;
    assert_eq!(code, 409);
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Instance {id} is locked")
    );
    let (code, v) = h
        .req(ADMIN, M::POST, &md, Some(json!({"metadata": {"x": "y"}})))
        .await;
    assert_eq!((code, v), (200, json!({"metadata": {"x": "y"}})));
    h.action(ALICE, &id, json!({"unlock": null}), 202).await;

    // Stopped is allowed; error is not (Nova's message names the API operation).
    h.action(ALICE, &id, json!({"os-stop": null}), 202).await;
    h.wait(&id, "SHUTOFF").await;
    let (code, _) = h
        .req(
            ALICE,
            M::PUT,
            &format!("{md}/x"),
            Some(json!({"meta": {"x": "z"}})),
        )
        .await;
    assert_eq!(code, 200);
    let bad = failed(&h).await;
    let (code, v) = h
        .req(
            ALICE,
            M::POST,
            &format!("/servers/{bad}/metadata"),
            Some(json!({"metadata": {"x": "y"}})),
        )
        .await;
    assert_eq!(code, 409);
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Cannot 'update metadata' instance {bad} while it is in vm_state error")
    );

    // The metadata_items quota bounds the result (the caller's project).
    let (code, v) = h
        .req(
            ADMIN,
            M::PUT,
            "/os-quota-sets/p1",
            Some(json!({"quota_set": {"metadata_items": 2}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = h
        .req(
            ALICE,
            M::POST,
            &md,
            Some(json!({"metadata": {"p": "1", "q": "2"}})),
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        v["forbidden"]["message"],
        "Maximum number of metadata items exceeds 2"
    );
    let (code, _) = h
        .req(
            ALICE,
            M::PUT,
            &md,
            Some(json!({"metadata": {"p": "1", "q": "2"}})),
        )
        .await;
    assert_eq!(code, 200);
    // The same quota bounds a rebuild's metadata and a create's.
    let v = h
        .action(
            ALICE,
            &id,
            json!({"rebuild": {"imageRef": IMAGE, "metadata": {"a": "1", "b": "2", "c": "3"}}}),
            403,
        )
        .await;
    assert_eq!(
        v["forbidden"]["message"],
        "Maximum number of metadata items exceeds 2"
    );
    let (code, v) = h
        .req(
            ALICE,
            M::POST,
            "/servers",
            Some(
                json!({"server": {"name": "many", "imageRef": IMAGE, "flavorRef": "1",
                                   "networks": "none",
                                   "metadata": {"a": "1", "b": "2", "c": "3"}}}),
            ),
        )
        .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Maximum number of metadata items exceeds 2"
    );

    // Every accepted change is an event; refusals appended nothing.
    let types = history(&h, &id).await;
    let changes = types
        .iter()
        .filter(|t| *t == "instance.metadata_updated")
        .count();
    assert_eq!(changes, 7, "{types:?}");
    // Each is an instance.update from nova-api carrying the metadata then.
    let ups = updates(&h, &id, 7).await;
    assert_eq!(ups.len(), 7);
    assert_eq!(ups[0]["metadata"], json!({"a": "1", "b": "2"}));
    let last = ups.last().unwrap();
    assert_eq!(last["metadata"], json!({"p": "1", "q": "2"}));

    // After a restart (read models reloaded) the metadata is the same.
    let h = h.restart(|_| {}).await;
    assert_eq!(h.show(&id).await["metadata"], json!({"p": "1", "q": "2"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_from_2_26_and_the_server_list_filters() {
    let h = Harness::start(|_| {}).await;
    let s1 = active(&h, "one", json!({})).await;
    let s2 = active(&h, "two", json!({})).await;
    let tags = |id: &str| format!("/servers/{id}/tags");

    // Before 2.26 there is no such resource.
    let (code, _, _) = req_at(&h, "2.25", ALICE, M::GET, &tags(&s1), None).await;
    assert_eq!(code, 404);
    let (code, v) = h.req(READER, M::GET, &tags(&s1), None).await;
    assert_eq!((code, v), (200, json!({"tags": []})));

    // Add one: 201 with its location, then 204 (already there).
    let (code, _, headers) =
        req_at(&h, "2.26", ALICE, M::PUT, &format!("{}/a", tags(&s1)), None).await;
    assert_eq!(code, 201);
    assert!(headers["location"]
        .to_str()
        .unwrap()
        .ends_with(&format!("/v2.1/servers/{s1}/tags/a")));
    let (code, _) = h
        .req(ALICE, M::PUT, &format!("{}/a", tags(&s1)), None)
        .await;
    assert_eq!(code, 204);
    let (code, _) = h
        .req(READER, M::GET, &format!("{}/a", tags(&s1)), None)
        .await;
    assert_eq!(code, 204);
    let (code, v) = h
        .req(READER, M::GET, &format!("{}/zz", tags(&s1)), None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        format!("Server {s1} has no tag 'zz'")
    );
    let (code, v) = h
        .req(ALICE, M::PUT, &format!("{}/a,b", tags(&s1)), None)
        .await;
    assert_eq!(code, 400, "{v}");
    assert!(v["badRequest"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Tag 'a,b' is invalid."));

    // Replace: sorted, duplicates once; shown on the server from 2.26.
    let (code, v) = h
        .req(
            ALICE,
            M::PUT,
            &tags(&s1),
            Some(json!({"tags": ["b", "a", "b"]})),
        )
        .await;
    assert_eq!((code, v), (200, json!({"tags": ["a", "b"]})));
    let (code, v) = h
        .req(ALICE, M::PUT, &tags(&s2), Some(json!({"tags": ["c", "b"]})))
        .await;
    assert_eq!((code, v), (200, json!({"tags": ["b", "c"]})));
    assert_eq!(h.show(&s1).await["tags"], json!(["a", "b"]));
    let (_, v, _) = req_at(&h, "2.25", ALICE, M::GET, &format!("/servers/{s1}"), None).await;
    assert!(v["server"].get("tags").is_none(), "{v}");

    // The list filters (GET /servers and /servers/detail).
    let ids = |v: &Value| -> Vec<String> {
        let mut out: Vec<String> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    };
    let mut both = vec![s1.clone(), s2.clone()];
    both.sort();
    for (query, want) in [
        ("tags=a,b", vec![s1.clone()]),
        ("tags=b", both.clone()),
        ("tags-any=a,c", both.clone()),
        ("tags-any=zz", vec![]),
        ("not-tags=b,c", vec![s1.clone()]),
        ("not-tags-any=a", vec![s2.clone()]),
        ("tags=b&not-tags-any=c", vec![s1.clone()]),
    ] {
        for list in ["/servers", "/servers/detail"] {
            let (code, v) = h.req(ALICE, M::GET, &format!("{list}?{query}"), None).await;
            assert_eq!(code, 200, "{v}");
            assert_eq!(ids(&v), want, "{list}?{query}");
        }
    }
    // Before 2.26 the filters are ignored.
    let (_, v, _) = req_at(&h, "2.25", ALICE, M::GET, "/servers?tags=a", None).await;
    assert_eq!(ids(&v), both);

    // Delete one (404 when absent), then all.
    let (code, _) = h
        .req(ALICE, M::DELETE, &format!("{}/b", tags(&s1)), None)
        .await;
    assert_eq!(code, 204);
    let (code, v) = h
        .req(ALICE, M::DELETE, &format!("{}/b", tags(&s1)), None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        format!("Instance {s1} has no tag 'b'")
    );
    let (code, _) = h.req(ALICE, M::DELETE, &tags(&s2), None).await;
    assert_eq!(code, 204);
    let (_, v) = h.req(ALICE, M::GET, &tags(&s2), None).await;
    assert_eq!(v, json!({"tags": []}));

    // The limit: 50 tags.
    let fifty: Vec<String> = (0..50).map(|n| format!("t{n}")).collect();
    let mut many = fifty.clone();
    many.push("t50".into());
    let (code, v) = h
        .req(ALICE, M::PUT, &tags(&s2), Some(json!({ "tags": many })))
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, _) = h
        .req(ALICE, M::PUT, &tags(&s2), Some(json!({ "tags": fifty })))
        .await;
    assert_eq!(code, 200);
    let (code, v) = h
        .req(ALICE, M::PUT, &format!("{}/more", tags(&s2)), None)
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        v["badRequest"]["message"],
        "The number of tags exceeded the per-server limit 50"
    );

    // No lock check (Nova's tags check the vm_state only); policy as Nova's.
    h.action(ALICE, &s1, json!({"lock": null}), 202).await;
    let (code, _) = h
        .req(ALICE, M::PUT, &format!("{}/x", tags(&s1)), None)
        .await;
    assert_eq!(code, 201);
    let (code, v) = h
        .req(READER, M::PUT, &format!("{}/y", tags(&s1)), None)
        .await;
    assert_eq!(code, 403, "{v}");
    let (code, _) = h.req(BOB, M::GET, &tags(&s1), None).await;
    assert_eq!(code, 404);
    let bad = failed(&h).await;
    let (code, v) = h
        .req(ALICE, M::PUT, &format!("{}/x", tags(&bad)), None)
        .await;
    assert_eq!(code, 409);
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Cannot 'update tag' instance {bad} while it is in vm_state error")
    );

    // Events, notifications (instance.update with the tags), and a restart.
    let types = history(&h, &s1).await;
    assert_eq!(
        types.iter().filter(|t| *t == "instance.tags_set").count(),
        4,
        "{types:?}"
    );
    let ups = updates(&h, &s1, 4).await;
    assert_eq!(ups.last().unwrap()["tags"], json!(["a", "x"]));
    let h = h.restart(|_| {}).await;
    assert_eq!(h.show(&s1).await["tags"], json!(["a", "x"]));
    let (_, v) = h.req(ALICE, M::GET, "/servers?tags=x", None).await;
    assert_eq!(ids(&v), vec![s1.clone()]);

    // `replay rebuild` folds the log to the same rows (tags, metadata and all).
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
    let log: std::sync::Arc<dyn eventlog::EventLog> =
        eventlog::EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let (rebuilt, _) = replay::fold(log, &Default::default()).await.unwrap();
    let row = rebuilt
        .instances()
        .get(&domain::InstanceId::parse(&s1).unwrap())
        .unwrap()
        .clone();
    assert_eq!(row.extras.tags.into_iter().collect::<Vec<_>>(), ["a", "x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ips_and_server_password_of_a_server_without_networks() {
    let h = Harness::start(|_| {}).await;
    let id = active(&h, "plain", json!({})).await;
    let (code, v) = h
        .req(READER, M::GET, &format!("/servers/{id}/ips"), None)
        .await;
    assert_eq!((code, v), (200, json!({"addresses": {}})));
    let (code, v) = h
        .req(READER, M::GET, &format!("/servers/{id}/ips/private"), None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        "Instance is not a member of specified network"
    );
    let pw = format!("/servers/{id}/os-server-password");
    let (code, v) = h.req(READER, M::GET, &pw, None).await;
    assert_eq!((code, v), (200, json!({"password": ""})));
    let (code, _) = h.req(READER, M::DELETE, &pw, None).await;
    assert_eq!(code, 403);
    let (code, _) = h.req(ALICE, M::DELETE, &pw, None).await;
    assert_eq!(code, 204);
    let (code, _) = h
        .req(BOB, M::GET, &format!("/servers/{id}/ips"), None)
        .await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_output_and_diagnostics_from_the_simulated_driver() {
    let h = Harness::start(|_| {}).await;
    let id = active(&h, "Web 1", json!({})).await;
    let before = history(&h, &id).await.len();
    let v = h
        .action(ALICE, &id, json!({"os-getConsoleOutput": {}}), 200)
        .await;
    let all = v["output"].as_str().unwrap().to_string();
    assert!(all.contains("Linux version"), "{all}");
    assert!(all.ends_with("web-1 login: "), "{all}");
    let v = h
        .action(
            ALICE,
            &id,
            json!({"os-getConsoleOutput": {"length": 2}}),
            200,
        )
        .await;
    let tail: Vec<&str> = all.lines().collect();
    assert_eq!(v["output"], tail[tail.len() - 2..].join("\n"));
    for length in [json!("1"), json!(-1), Value::Null] {
        let v = h
            .action(
                ALICE,
                &id,
                json!({"os-getConsoleOutput": {"length": length.clone()}}),
                200,
            )
            .await;
        let want = if length == json!("1") {
            tail[tail.len() - 1].to_string()
        } else {
            all.clone()
        };
        assert_eq!(v["output"], want, "length {length}");
    }
    for bad in [json!(-2), json!("x"), json!(true)] {
        let v = h
            .action(
                ALICE,
                &id,
                json!({"os-getConsoleOutput": {"length": bad}}),
                400,
            )
            .await;
        assert!(
            v["badRequest"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid input for field/attribute length."),
            "{v}"
        );
    }
    h.action(
        ALICE,
        &id,
        json!({"os-getConsoleOutput": {"lines": 1}}),
        400,
    )
    .await;
    // Stopped: the log says so. Readers may not read it (member rule).
    h.action(ALICE, &id, json!({"os-stop": null}), 202).await;
    h.wait(&id, "SHUTOFF").await;
    let v = h
        .action(
            ALICE,
            &id,
            json!({"os-getConsoleOutput": {"length": 1}}),
            200,
        )
        .await;
    assert_eq!(v["output"], "[   60.000000] reboot: Power down");
    h.action(READER, &id, json!({"os-getConsoleOutput": {}}), 403)
        .await;
    // A server without a host is not ready.
    let bad = failed(&h).await;
    let v = h
        .action(ALICE, &bad, json!({"os-getConsoleOutput": {}}), 409)
        .await;
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Instance {bad} is not ready")
    );

    // Diagnostics: admin only; 2.48's standard shape, the flat one before.
    let d = format!("/servers/{id}/diagnostics");
    let (code, _) = h.req(ALICE, M::GET, &d, None).await;
    assert_eq!(code, 403);
    let (code, v) = h.req(ADMIN, M::GET, &d, None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "shutdown");
    assert_eq!(v["driver"], "libvirt");
    assert_eq!(v["num_cpus"], 1);
    assert_eq!(v["cpu_details"].as_array().unwrap().len(), 1);
    assert_eq!(v["nic_details"], json!([]));
    let (code, v, _) = req_at(&h, "2.47", ADMIN, M::GET, &d, None).await;
    assert_eq!(code, 200);
    assert_eq!(v["vda_errors"], -1, "{v}");
    let (code, v) = h
        .req(ADMIN, M::GET, &format!("/servers/{bad}/diagnostics"), None)
        .await;
    assert_eq!(code, 409, "{v}");
    // Nothing of this was recorded (stop aside).
    let after = history(&h, &id).await;
    assert!(
        !after[before..]
            .iter()
            .any(|t| t.contains("console") || t.contains("diagnos")),
        "{after:?}"
    );
}
