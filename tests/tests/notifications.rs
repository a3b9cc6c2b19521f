//! Versioned notifications end to end (issue 11, item 4): lifecycle operations over
//! HTTP, then `GET /v1/notifications` shows Nova's event types in order with stable
//! message ids; a restart neither duplicates nor loses any; a project sees only its
//! own; the server-sent-event stream resumes after `Last-Event-ID`; on JetStream a
//! plain NATS consumer reads the same notifications from `STRATUS_NOTIFICATIONS`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:proj-a";
const BOB: &str = "bob:proj-b";
const ADMIN: &str = "admin:admin";

async fn get(h: &Harness, token: &str, query: &str) -> (u16, Value) {
    let resp = h
        .http
        .get(format!("http://{}/v1/notifications{query}", h.stack.addr))
        .header("X-Auth-Token", token)
        .send()
        .await
        .expect("request");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Every notification (cursor, notification) readable by `token`, paging by 7.
async fn all(h: &Harness, token: &str, extra: &str) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (code, v) = get(h, token, &format!("?limit=7&cursor={cursor}{extra}")).await;
        assert_eq!(code, 200, "{v}");
        let page = v["notifications"].as_array().unwrap().clone();
        let next = v["next_cursor"].as_u64().unwrap();
        for n in page {
            out.push((n["cursor"].as_u64().unwrap(), n["notification"].clone()));
        }
        if next == cursor {
            return out;
        }
        cursor = next;
    }
}

fn of_instance<'a>(all: &'a [(u64, Value)], id: &str) -> Vec<&'a Value> {
    all.iter()
        .map(|(_, n)| n)
        .filter(|n| {
            let d = &n["payload"]["nova_object.data"];
            d["uuid"] == id || d["instance_uuid"] == id
        })
        .collect()
}

fn types(ns: &[&Value]) -> Vec<String> {
    ns.iter()
        .map(|n| n["event_type"].as_str().unwrap().to_string())
        .collect()
}

/// Polls until the instance's notifications end with `last`.
async fn wait_for(h: &Harness, id: &str, last: &str) -> Vec<(u64, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = all(h, ADMIN, "").await;
        if types(&of_instance(&a, id)).last().map(String::as_str) == Some(last) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no {last} for {id}: {:?}",
            types(&of_instance(&a, id))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An audit period (a year) that no test crosses: the lifecycle tests expect exact
/// sequences, which an `instance.exists` from an hourly period closing mid-test would
/// interleave.
fn no_audit(o: &mut tests::StackOptions) {
    o.audit_period = Duration::from_secs(365 * 86_400);
}

const EXPECTED: &[&str] = &[
    "instance.create.start",
    "instance.create.end",
    "instance.pause.start",
    "instance.pause.end",
    "instance.unpause.start",
    "instance.unpause.end",
    "instance.power_off.start",
    "instance.power_off.end",
    "instance.power_on.start",
    "instance.power_on.end",
    "instance.exists",
    "instance.resize_prep.start",
    "instance.resize_prep.end",
    "instance.resize.start",
    "instance.resize.end",
    "instance.resize_finish.start",
    "instance.resize_finish.end",
    "instance.resize_confirm.start",
    "instance.resize_confirm.end",
    "instance.lock",
    "instance.unlock",
    "instance.delete.start",
    "instance.delete.end",
];

async fn lifecycle(h: &Harness) -> String {
    let id = h.create(ALICE, "web-1", "1").await;
    h.wait(&id, "ACTIVE").await;
    for (go, mid, back) in [
        ("pause", "PAUSED", "unpause"),
        ("os-stop", "SHUTOFF", "os-start"),
    ] {
        h.action(ALICE, &id, json!({ go: null }), 202).await;
        h.wait(&id, mid).await;
        h.action(ALICE, &id, json!({ back: null }), 202).await;
        h.wait(&id, "ACTIVE").await;
    }
    h.action(ALICE, &id, json!({"resize": {"flavorRef": "2"}}), 202)
        .await;
    h.wait(&id, "VERIFY_RESIZE").await;
    h.action(ALICE, &id, json!({"confirmResize": null}), 204)
        .await;
    h.wait(&id, "ACTIVE").await;
    h.action(ALICE, &id, json!({"lock": null}), 202).await;
    h.action(ALICE, &id, json!({"unlock": null}), 202).await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(code, 204, "{v}");
    h.wait(&id, "GONE").await;
    id
}

fn check(all: &[(u64, Value)], id: &str) {
    let mine = of_instance(all, id);
    assert_eq!(types(&mine), EXPECTED);
    let ids: std::collections::HashSet<&str> = all
        .iter()
        .map(|(_, n)| n["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), all.len(), "a message id twice");
    let cursors: Vec<u64> = all.iter().map(|(c, _)| *c).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors ascend");
    for n in &mine {
        assert_eq!(n["payload"]["nova_object.data"]["tenant_id"], "proj-a");
        assert!(n["publisher_id"].as_str().unwrap().starts_with("nova-"));
        assert!(n["timestamp"].is_string());
    }
    // The flavor changes when the resize finishes.
    let finish = mine
        .iter()
        .find(|n| n["event_type"] == "instance.resize_finish.end")
        .unwrap();
    assert_eq!(
        finish["payload"]["nova_object.data"]["flavor"]["nova_object.data"]["flavorid"],
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_over_http_survive_a_restart_exactly_once() {
    let h = Harness::start(no_audit).await;
    let id = lifecycle(&h).await;
    let before = wait_for(&h, &id, "instance.delete.end").await;
    check(&before, &id);

    // A project sees its own only; another project's name is refused.
    let alice = all(&h, ALICE, "").await;
    assert_eq!(alice.len(), before.len());
    assert!(all(&h, BOB, "").await.is_empty());
    assert_eq!(get(&h, BOB, "?project=proj-a").await.0, 403);
    assert_eq!(get(&h, ADMIN, "?limit=0").await.0, 400);
    let pauses = all(&h, ADMIN, "&event_type=instance.pause").await;
    assert_eq!(pauses.len(), 2);

    // Server-sent events from a cursor: the next ones, with their cursors as ids.
    let from = before[3].0;
    let resp = h
        .http
        .get(format!("http://{}/v1/notifications/stream", h.stack.addr))
        .header("X-Auth-Token", ADMIN)
        .header("Last-Event-ID", from.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = String::new();
    let mut resp = resp;
    while body.matches("\n\n").count() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap();
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let ids: Vec<u64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert_eq!(&ids[..3], &[before[4].0, before[5].0, before[6].0]);
    drop(resp);

    // Restart: nothing written twice, nothing lost, the same ids; then it goes on.
    let h = h.restart(no_audit).await;
    let id2 = h.create(ALICE, "web-2", "1").await;
    h.wait(&id2, "ACTIVE").await;
    let after = wait_for(&h, &id2, "instance.create.end").await;
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(
        types(&of_instance(&after, &id2)),
        ["instance.create.start", "instance.create.end"]
    );
    assert_eq!(after.len(), before.len() + 2);
    h.stack.stop().await;
}

/// Reads every message of `STRATUS_NOTIFICATIONS` for `filter` with a plain durable
/// pull consumer, as any NATS client would.
async fn read_with_consumer(
    url: &str,
    durable: &str,
    filter: &str,
) -> Vec<(String, String, Value)> {
    use futures::StreamExt;
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("STRATUS_NOTIFICATIONS").await.unwrap();
    let consumer = stream
        .get_or_create_consumer(
            durable,
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some(durable.into()),
                filter_subject: filter.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        out.push((
            m.subject.to_string(),
            id,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
        m.ack().await.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_notifications_for_any_nats_client() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server starts");
    let url = nats.url();
    let u = url.clone();
    let h = Harness::start(move |o| {
        no_audit(o);
        o.nats = Some(u)
    })
    .await;
    let id = lifecycle(&h).await;
    let before = wait_for(&h, &id, "instance.delete.end").await;
    check(&before, &id);

    let msgs = read_with_consumer(&url, "billing", "stratus.notifications.proj-a.>").await;
    assert_eq!(msgs.len(), before.len());
    for ((subject, msg_id, n), (_, over_http)) in msgs.iter().zip(&before) {
        assert_eq!(n, over_http, "the same notification over NATS and HTTP");
        assert_eq!(
            subject,
            &format!(
                "stratus.notifications.proj-a.{}",
                n["event_type"].as_str().unwrap()
            )
        );
        assert_eq!(msg_id, n["message_id"].as_str().unwrap());
    }
    // A subject filter selects one event type.
    let pauses =
        read_with_consumer(&url, "pauses", "stratus.notifications.*.instance.pause.*").await;
    assert_eq!(pauses.len(), 2);

    // Restart on the same server: nothing published twice, the durable consumer gets
    // only what is new.
    let Harness { stack, dir, http } = h;
    stack.stop().await;
    let mut o = tests::options(dir.path());
    no_audit(&mut o);
    o.nats = Some(url.clone());
    let stack = tests::Stack::start(o).await.expect("restarts");
    let h = Harness { stack, dir, http };
    let id2 = h.create(ALICE, "web-2", "1").await;
    h.wait(&id2, "ACTIVE").await;
    let after = wait_for(&h, &id2, "instance.create.end").await;
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(after.len(), before.len() + 2);
    let more = read_with_consumer(&url, "billing", "stratus.notifications.proj-a.>").await;
    assert_eq!(
        more.iter()
            .map(|(_, _, n)| n["event_type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["instance.create.start", "instance.create.end"]
    );
    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    drop(dir);
    drop(nats);
}

/// `instance.exists` each audit period (2 s here): the scheduler's usage auditor closes
/// each period in the cell stream and the notifier sends one `instance.exists` per
/// instance active on a host in it, with the period's bounds, the instance's state and
/// the auditing host as publisher; an instance deleted before a period began gets none
/// for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_exists_for_each_instance_active_in_a_closed_period() {
    let h = Harness::start(|o| o.audit_period = Duration::from_secs(2)).await;
    let kept = h.create(ALICE, "kept", "1").await;
    let gone = h.create(ALICE, "gone", "1").await;
    let kept_host = h.wait(&kept, "ACTIVE").await["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .unwrap()
        .to_string();
    h.wait(&gone, "ACTIVE").await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::DELETE,
            &format!("/servers/{gone}"),
            None,
        )
        .await;
    assert_eq!(code, 204, "{v}");
    h.wait(&gone, "GONE").await;
    let a = wait_for(&h, &gone, "instance.delete.end").await;
    let end = of_instance(&a, &gone).last().copied().unwrap().clone();
    let terminated = end["payload"]["nova_object.data"]["terminated_at"]
        .as_str()
        .unwrap()
        .to_string();
    let period = |n: &Value, k: &str| {
        n["payload"]["nova_object.data"]["audit_period"]["nova_object.data"][k]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Wait for a period of `kept` that began after `gone` was deleted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let a = all(&h, ADMIN, "&event_type=instance.exists").await;
        if of_instance(&a, &kept)
            .iter()
            .any(|n| period(n, "audit_period_beginning") > terminated)
        {
            break a;
        }
        assert!(Instant::now() < deadline, "no later period closed: {a:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (_, n) in &all {
        assert_eq!(n["event_type"], "instance.exists");
        assert_eq!(n["priority"], "INFO");
        // Published by the compute host that audited it: the instance's host.
        let host = n["payload"]["nova_object.data"]["host"].as_str().unwrap();
        assert_eq!(n["publisher_id"], format!("nova-compute:{host}"), "{n}");
        assert_eq!(n["payload"]["nova_object.name"], "InstanceExistsPayload");
        assert!(period(n, "audit_period_beginning") < period(n, "audit_period_ending"));
    }
    let kept_exists = of_instance(&all, &kept);
    assert!(!kept_exists.is_empty());
    for n in &kept_exists {
        let d = &n["payload"]["nova_object.data"];
        assert_eq!(
            (d["state"].as_str(), d["tenant_id"].as_str()),
            (Some("active"), Some("proj-a"))
        );
        assert_eq!(d["host"], kept_host.as_str());
    }
    // `gone`: only for periods it was active in (begun before its delete); as deleted
    // once the period closed after the delete (it ended after it).
    for n in of_instance(&all, &gone) {
        assert!(period(n, "audit_period_beginning") < terminated, "{n}");
        let state = &n["payload"]["nova_object.data"]["state"];
        if period(n, "audit_period_ending") > terminated {
            assert_eq!(state, "deleted", "{n}");
        } else {
            assert_eq!(state, "active", "{n}");
        }
    }
    // One per instance and period: distinct periods, distinct message ids.
    let periods: std::collections::HashSet<String> = kept_exists
        .iter()
        .map(|n| period(n, "audit_period_beginning"))
        .collect();
    assert_eq!(periods.len(), kept_exists.len());
    let ids: std::collections::HashSet<&str> = all
        .iter()
        .map(|(_, n)| n["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), all.len());
    h.stack.stop().await;
}

/// Builds that never reach a compute host, as Nova: a build request deleted before it
/// was placed has no notification at all (Nova's `_delete_while_booting` finds no
/// instance in any cell and sends nothing; its conductor then stops before creating
/// one); a build with no valid host gets the conductor's `instance.update` (building ->
/// error) and `compute_task.build_instances.error`, and its delete (no host) the API's
/// `instance.delete.start` / `.end`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_that_never_reach_a_host() {
    let small = |o: &mut tests::StackOptions| {
        no_audit(o);
        o.hosts = 1;
        o.host_size = domain::host::Resources {
            vcpus: 1,
            ram_mb: 1024,
            disk_gb: 10,
        };
    };
    // No scheduler: the build request waits unplaced, and its owner deletes it.
    let h = Harness::start(|o| {
        small(o);
        o.roles.scheduler = false;
    })
    .await;
    let early = h.create(ALICE, "early", "1").await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::DELETE,
            &format!("/servers/{early}"),
            None,
        )
        .await;
    assert_eq!(code, 204, "{v}");
    h.wait(&early, "GONE").await;
    // With a scheduler, hosts too small for flavor 5: NoValidHost, then a delete.
    let h = h.restart(small).await;
    let big = h.create(ALICE, "too-big", "5").await;
    h.wait(&big, "ERROR").await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::DELETE,
            &format!("/servers/{big}"),
            None,
        )
        .await;
    assert_eq!(code, 204, "{v}");
    h.wait(&big, "GONE").await;
    let a = wait_for(&h, &big, "instance.delete.end").await;
    let mine = of_instance(&a, &big);
    assert_eq!(
        types(&mine),
        [
            "instance.update",
            "compute_task.build_instances.error",
            "instance.delete.start",
            "instance.delete.end"
        ]
    );
    let task = mine[1];
    assert_eq!(task["priority"], "ERROR");
    assert!(task["publisher_id"]
        .as_str()
        .unwrap()
        .starts_with("nova-conductor:"));
    let d = &task["payload"]["nova_object.data"];
    assert_eq!(d["reason"]["nova_object.data"]["exception"], "NoValidHost");
    assert_eq!(
        d["request_spec"]["nova_object.data"]["project_id"],
        "proj-a"
    );
    // The project's reader sees it (its project is the request spec's).
    assert_eq!(of_instance(&all(&h, ALICE, "").await, &big).len(), 4);
    for n in &mine[2..] {
        assert_eq!(
            n["publisher_id"].as_str().unwrap().split(':').next(),
            Some("nova-api")
        );
    }
    // Nothing at all for the build deleted before placement, nor from anything else.
    assert!(of_instance(&a, &early).is_empty(), "{a:?}");
    assert_eq!(a.len(), mine.len(), "{a:?}");
    h.stack.stop().await;
}
