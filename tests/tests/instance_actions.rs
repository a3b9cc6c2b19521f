//! os-instance-actions end to end: the actions and events Nova records, derived from
//! the log by the `instance_actions` read model, over real HTTP with the reactors
//! running; request ids are the `x-openstack-request-id` of the requests that started
//! them; failures are `Error`; visibility per microversion and role; paging and the
//! `updated_at` window; a deleted server from 2.21; `replay rebuild` folds the model to
//! the same rows.

use std::collections::HashSet;
use std::time::Duration;

use domain::TaskState;
use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ADMIN: &str = "admin:admin";
const ALICE: &str = "alice:proj-a";
const BOB: &str = "bob:proj-b";

/// A request at `version`: status, request id and body.
async fn call(
    h: &Harness,
    token: &str,
    method: M,
    path: &str,
    version: &str,
    body: Option<Value>,
) -> (u16, String, Value) {
    let (code, headers, v) = h.send_at(token, method, path, version, body).await;
    let rid = headers
        .get("x-openstack-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (code, rid, v)
}

async fn act(h: &Harness, token: &str, id: &str, body: Value, want: u16) -> String {
    let (code, rid, v) = call(
        h,
        token,
        M::POST,
        &format!("/servers/{id}/action"),
        "2.96",
        Some(body.clone()),
    )
    .await;
    assert_eq!(code, want, "{body}: {v}");
    assert!(rid.starts_with("req-"), "{rid}");
    rid
}

async fn list(h: &Harness, token: &str, id: &str, version: &str, query: &str) -> (u16, Value) {
    let (code, _, v) = call(
        h,
        token,
        M::GET,
        &format!("/servers/{id}/os-instance-actions{query}"),
        version,
        None,
    )
    .await;
    (code, v)
}

async fn show(h: &Harness, token: &str, id: &str, rid: &str, version: &str) -> Value {
    let (code, _, v) = call(
        h,
        token,
        M::GET,
        &format!("/servers/{id}/os-instance-actions/{rid}"),
        version,
        None,
    )
    .await;
    assert_eq!(code, 200, "show {rid}: {v}");
    v["instanceAction"].clone()
}

fn names(v: &Value) -> Vec<String> {
    v["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect()
}

fn rids(v: &Value) -> Vec<String> {
    v["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["request_id"].as_str().unwrap().to_string())
        .collect()
}

fn event_names(a: &Value) -> Vec<&str> {
    a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

/// Polls until every event of the action has finished.
async fn finished(h: &Harness, id: &str, rid: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let a = show(h, ADMIN, id, rid, "2.84").await;
        let done = a["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["finish_time"].is_null());
        if done {
            return a;
        }
        assert!(std::time::Instant::now() < deadline, "never finished: {a}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_follow_the_lifecycle_in_novas_order() {
    let h = Harness::start(|_| {}).await;
    let (code, create, v) = call(
        &h,
        ALICE,
        M::POST,
        "/servers",
        "2.96",
        Some(json!({"server": {"name": "audited", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1", "networks": "none"}})),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    h.wait(&id, "ACTIVE").await;
    let pause = act(&h, ALICE, &id, json!({"pause": null}), 202).await;
    h.wait(&id, "PAUSED").await;
    let unpause = act(&h, ALICE, &id, json!({"unpause": null}), 202).await;
    h.wait(&id, "ACTIVE").await;
    let resize = act(&h, ALICE, &id, json!({"resize": {"flavorRef": "2"}}), 202).await;
    h.wait(&id, "VERIFY_RESIZE").await;
    let confirm = act(&h, ALICE, &id, json!({"confirmResize": null}), 204).await;
    h.wait(&id, "ACTIVE").await;
    let lock = act(&h, ALICE, &id, json!({"lock": null}), 202).await;
    let unlock = act(&h, ALICE, &id, json!({"unlock": null}), 202).await;

    // Newest first, each with the request id that started it, user and project.
    let (code, v) = list(&h, ALICE, &id, "2.1", "").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        names(&v),
        [
            "unlock",
            "lock",
            "confirmResize",
            "resize",
            "unpause",
            "pause",
            "create"
        ]
    );
    assert_eq!(
        rids(&v),
        [
            unlock.as_str(),
            lock.as_str(),
            confirm.as_str(),
            resize.as_str(),
            unpause.as_str(),
            pause.as_str(),
            create.as_str()
        ]
    );
    for a in v["instanceActions"].as_array().unwrap() {
        assert_eq!(a["user_id"], "alice");
        assert_eq!(a["project_id"], "proj-a");
        assert_eq!(a["instance_uuid"], id.as_str());
        assert!(a["message"].is_null(), "{a}");
        assert!(a.get("updated_at").is_none(), "updated_at is 2.58: {a}");
    }

    // Events with Nova's names, Success, on the instance's hosts.
    let c = finished(&h, &id, &create).await;
    assert_eq!(
        event_names(&c),
        [
            "conductor_schedule_and_build_instances",
            "compute__do_build_and_run_instance"
        ]
    );
    assert!(c["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["result"] == "Success"));
    let build_host = c["events"][1]["host"].as_str().unwrap().to_string();
    assert!(!build_host.is_empty(), "{c}");
    let p = finished(&h, &id, &pause).await;
    assert_eq!(event_names(&p), ["compute_pause_instance"]);
    assert_eq!(p["events"][0]["result"], "Success");
    assert_eq!(p["events"][0]["host"], build_host.as_str());
    assert!(p["events"][0]["details"].is_null());
    assert!(p["events"][0]["traceback"].is_null());
    assert_eq!(
        event_names(&finished(&h, &id, &unpause).await),
        ["compute_unpause_instance"]
    );
    let r = finished(&h, &id, &resize).await;
    assert_eq!(
        event_names(&r),
        ["conductor_migrate_server", "compute_finish_resize"]
    );
    let dest = h.show(&id).await["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r["events"][1]["host"], dest.as_str());
    let cf = finished(&h, &id, &confirm).await;
    assert_eq!(event_names(&cf), ["compute_confirm_resize"]);
    assert_eq!(cf["events"][0]["host"], build_host.as_str(), "the source");
    assert!(event_names(&finished(&h, &id, &lock).await).is_empty());

    // Events: admins only before 2.51; owners from 2.51 without traceback or host;
    // hostId from 2.62 for all; details from 2.84 for admins.
    let a = show(&h, ALICE, &id, &pause, "2.50").await;
    assert!(a.get("events").is_none(), "{a}");
    let a = show(&h, ADMIN, &id, &pause, "2.50").await;
    assert!(a["events"][0].get("traceback").is_some(), "{a}");
    assert!(a["events"][0].get("hostId").is_none(), "{a}");
    let a = show(&h, ALICE, &id, &pause, "2.51").await;
    let e = &a["events"][0];
    assert_eq!(e["event"], "compute_pause_instance");
    assert!(
        e.get("traceback").is_none() && e.get("host").is_none(),
        "{a}"
    );
    // hostId hashes the event's host with the project: the pause ran where the build
    // did; the resize finished where the server is now.
    let a = show(&h, ALICE, &id, &pause, "2.62").await;
    let host_id = a["events"][0]["hostId"].as_str().unwrap().to_string();
    assert_eq!(host_id.len(), 56, "{a}");
    assert!(a["events"][0].get("host").is_none());
    let c = show(&h, ALICE, &id, &create, "2.62").await;
    assert_eq!(c["events"][1]["hostId"], host_id.as_str());
    let r = show(&h, ALICE, &id, &resize, "2.62").await;
    assert_eq!(r["events"][1]["hostId"], h.show(&id).await["hostId"]);
    assert_ne!(r["events"][1]["hostId"], host_id.as_str());
    let a = show(&h, ALICE, &id, &pause, "2.84").await;
    assert!(a["events"][0].get("details").is_none(), "{a}");
    let a = show(&h, ADMIN, &id, &pause, "2.84").await;
    assert!(a["events"][0].get("details").is_some(), "{a}");
    assert_eq!(a["updated_at"], a["events"][0]["finish_time"]);

    // Another project's server is a 404; an unknown request id too.
    let (code, _) = list(&h, BOB, &id, "2.1", "").await;
    assert_eq!(code, 404);
    let (code, _, v) = call(
        &h,
        ALICE,
        M::GET,
        &format!("/servers/{id}/os-instance-actions/req-nope"),
        "2.1",
        None,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(v["itemNotFound"]["message"], "Action req-nope not found");

    // 2.58: updated_at, limit / marker paging with a next link, changes-since.
    let (_, all) = list(&h, ALICE, &id, "2.58", "").await;
    let updated: Vec<String> = all["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["updated_at"].as_str().unwrap().to_string())
        .collect();
    let (_, page) = list(&h, ALICE, &id, "2.58", "?limit=2").await;
    assert_eq!(rids(&page), [unlock.as_str(), lock.as_str()]);
    let href = page["links"][0]["href"].as_str().unwrap();
    assert!(href.contains(&format!("marker={lock}")), "{href}");
    assert!(href.contains("limit=2"), "{href}");
    let (_, page) = list(&h, ALICE, &id, "2.58", &format!("?limit=2&marker={lock}")).await;
    assert_eq!(rids(&page), [confirm.as_str(), resize.as_str()]);
    let (_, page) = list(&h, ALICE, &id, "2.58", &format!("?marker={resize}")).await;
    assert_eq!(
        rids(&page),
        [unpause.as_str(), pause.as_str(), create.as_str()]
    );
    assert!(page.get("links").is_none(), "{page}");
    let (code, v) = list(&h, ALICE, &id, "2.58", "?marker=req-unknown").await;
    assert_eq!(code, 400);
    assert_eq!(
        v["badRequest"]["message"],
        "Marker req-unknown could not be found."
    );
    let (code, _) = list(&h, ALICE, &id, "2.58", "?limit=-1").await;
    assert_eq!(code, 400);
    let (_, v) = list(&h, ALICE, &id, "2.58", "?limit=0").await;
    assert_eq!(rids(&v), Vec::<String>::new());
    // changes-since keeps actions updated at or after the time (confirmResize onwards).
    let since = &updated[2];
    let (_, v) = list(&h, ALICE, &id, "2.58", &format!("?changes-since={since}")).await;
    assert_eq!(rids(&v), [unlock.as_str(), lock.as_str(), confirm.as_str()]);
    // changes-before is 2.66 (unknown before: a 400).
    let before = &updated[3];
    let (code, _) = list(&h, ALICE, &id, "2.58", &format!("?changes-before={before}")).await;
    assert_eq!(code, 400);
    let (_, v) = list(&h, ALICE, &id, "2.66", &format!("?changes-before={before}")).await;
    assert_eq!(
        rids(&v),
        [
            resize.as_str(),
            unpause.as_str(),
            pause.as_str(),
            create.as_str()
        ]
    );
    let (code, v) = list(
        &h,
        ALICE,
        &id,
        "2.66",
        &format!("?changes-since={before}&changes-before={since}"),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = list(
        &h,
        ALICE,
        &id,
        "2.66",
        &format!("?changes-since={since}&changes-before={before}"),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        v["badRequest"]["message"],
        "The value of changes-since must be less than or equal to changes-before."
    );

    // Delete: the server is gone, its actions are listed from 2.21 (404 before).
    let (code, delete, _) = call(
        &h,
        ALICE,
        M::DELETE,
        &format!("/servers/{id}"),
        "2.96",
        None,
    )
    .await;
    assert_eq!(code, 204);
    h.wait(&id, "GONE").await;
    let (code, _) = list(&h, ALICE, &id, "2.20", "").await;
    assert_eq!(code, 404);
    let (code, v) = list(&h, ALICE, &id, "2.21", "").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(names(&v)[0], "delete");
    assert_eq!(rids(&v)[0], delete);
    assert_eq!(names(&v).len(), 8);
    let d = finished(&h, &id, &delete).await;
    assert_eq!(event_names(&d), ["compute_terminate_instance"]);
    assert_eq!(d["events"][0]["result"], "Success");
    let served = v;

    // `replay rebuild` folds the log (streams in parallel, merged) to the same rows.
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
    let log: std::sync::Arc<dyn eventlog::EventLog> =
        eventlog::EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let (rebuilt, _) = replay::fold(log, &Default::default()).await.unwrap();
    let iid = domain::InstanceId::parse(&id).unwrap();
    let folded: Vec<String> = rebuilt
        .instance_actions()
        .of(&iid)
        .unwrap()
        .actions()
        .iter()
        .map(|a| a.request_id.clone())
        .collect();
    assert_eq!(folded, rids(&served));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_valid_host_ends_the_conductor_event_with_error() {
    let h = Harness::start(|o| {
        o.hosts = 1;
        o.host_size = domain::host::Resources {
            vcpus: 1,
            ram_mb: 1024,
            disk_gb: 10,
        };
    })
    .await;
    let (code, create, v) = call(
        &h,
        ALICE,
        M::POST,
        "/servers",
        "2.96",
        Some(json!({"server": {"name": "too-big", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "5", "networks": "none"}})),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    h.wait(&id, "ERROR").await;
    let a = finished(&h, &id, &create).await;
    assert_eq!(a["message"], "Error");
    assert_eq!(event_names(&a), ["conductor_schedule_and_build_instances"]);
    let e = &a["events"][0];
    assert_eq!(e["result"], "Error");
    assert!(
        e["details"].as_str().unwrap().contains("No valid host"),
        "{e}"
    );
    assert!(e["traceback"].is_string(), "{e}");
    // The owner sees the failure, not the traceback.
    let own = show(&h, ALICE, &id, &create, "2.84").await;
    assert_eq!(own["message"], "Error");
    assert_eq!(own["events"][0]["result"], "Error");
    assert!(own["events"][0].get("traceback").is_none());
    assert!(own["events"][0].get("details").is_none());
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_and_failed_operations_end_with_error() {
    let h = Harness::start(|o| {
        o.sim.stall_tasks = HashSet::from([TaskState::Pausing]);
        o.sim.fail_tasks = HashSet::from([TaskState::Suspending]);
        o.config.task_timeout_secs = 1;
        o.config.max_attempts = 1;
        o.reconcile_every = Duration::from_millis(200);
    })
    .await;
    let id = h.create(ALICE, "flaky", "1").await;
    h.wait(&id, "ACTIVE").await;
    let pause = act(&h, ALICE, &id, json!({"pause": null}), 202).await;
    let a = finished(&h, &id, &pause).await;
    assert_eq!(a["message"], "Error", "{a}");
    assert_eq!(a["events"][0]["event"], "compute_pause_instance");
    assert_eq!(a["events"][0]["result"], "Error");
    assert!(
        a["events"][0]["details"]
            .as_str()
            .unwrap()
            .contains("Timed out"),
        "{a}"
    );
    h.wait(&id, "ACTIVE").await;
    let suspend = act(&h, ALICE, &id, json!({"suspend": null}), 202).await;
    let a = finished(&h, &id, &suspend).await;
    assert_eq!(a["message"], "Error", "{a}");
    assert_eq!(a["events"][0]["event"], "compute_suspend_instance");
    assert_eq!(a["events"][0]["result"], "Error");
    // The create before them succeeded.
    let (_, v) = list(&h, ALICE, &id, "2.1", "").await;
    assert_eq!(names(&v), ["suspend", "pause", "create"]);
    let msgs: Vec<&Value> = v["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["message"])
        .collect();
    assert_eq!(msgs, [&json!("Error"), &json!("Error"), &Value::Null]);
    h.stack.stop().await;
}
