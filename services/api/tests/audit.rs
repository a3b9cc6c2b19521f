//! The native audit API through HTTP: state at an instant against what
//! `GET /servers/{id}` showed then, the filtered and paged log, visibility, and the
//! server-sent event stream with `Last-Event-ID` resumption.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use domain::{InstanceId, TaskState};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn fault<'a>(r: &'a Resp, kind: &str, code: u16) -> &'a str {
    assert_eq!(r.status.as_u16(), code, "{:?}", r.body);
    let f = &r.body[kind];
    assert!(f.is_object(), "expected {kind}: {:?}", r.body);
    f["message"].as_str().unwrap()
}

fn now_rfc3339() -> String {
    replay::audit::format_time(domain::Timestamp(eventlog::now_micros()))
}

/// Completes the instance's operation as compute would.
async fn complete(s: &Stack, id: &str, task: TaskState) {
    let iid = InstanceId::parse(id).unwrap();
    let op = s
        .engine
        .world()
        .read()
        .instance(&iid)
        .unwrap()
        .op
        .unwrap()
        .id;
    s.engine
        .instance(
            iid,
            domain::instance::InstanceCommand::Complete { op, task },
            &svc_ctx(),
            &engine::Meta::default(),
        )
        .await
        .unwrap();
}

/// What the Nova API shows of a server, in the audit state's terms.
async fn shown(s: &Stack, id: &str) -> (Value, Value, Value, Value) {
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.9"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = &r.body["server"];
    (
        v["status"].clone(),
        v["OS-EXT-STS:vm_state"].clone(),
        v["OS-EXT-STS:task_state"].clone(),
        v["locked"].clone(),
    )
}

#[tokio::test]
async fn state_at_any_instant_matches_what_the_api_showed() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let host = s.register_host("node1").await;
    let before = now_rfc3339();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let id = s.server(ALICE, "audited", "1").await;
    let action = format!("/v2.1/servers/{id}/action");

    // (time, what GET /servers showed at that time), taken after each change.
    let mut seen = Vec::new();
    let mut snap = |t: String, v: (Value, Value, Value, Value)| seen.push((t, v));
    snap(now_rfc3339(), shown(&s, &id).await);
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.make_active(&id, &host).await;
    snap(now_rfc3339(), shown(&s, &id).await);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = s.post(&action, ALICE, None, json!({"pause": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    snap(now_rfc3339(), shown(&s, &id).await);
    tokio::time::sleep(Duration::from_millis(5)).await;
    complete(&s, &id, TaskState::Pausing).await;
    snap(now_rfc3339(), shown(&s, &id).await);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = s.post(&action, ALICE, None, json!({"unpause": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    complete(&s, &id, TaskState::Unpausing).await;
    snap(now_rfc3339(), shown(&s, &id).await);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = s.post(&action, ALICE, None, json!({"lock": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    snap(now_rfc3339(), shown(&s, &id).await);
    // Each instant differs from the one before (so each is a real test).
    for w in seen.windows(2) {
        assert_ne!(w[0].1, w[1].1, "{seen:?}");
    }

    let mut last_count = 0;
    for (t, (status, vm, task, locked)) in &seen {
        let r = s
            .get(&format!("/v1/instances/{id}/state?at={t}"), ALICE, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{t}: {:?}", r.body);
        let st = &r.body["state"];
        assert_eq!(&st["status"], status, "{t}");
        assert_eq!(&st["vm_state"], vm, "{t}");
        assert_eq!(&st["task_state"], task, "{t}");
        assert_eq!(&st["locked"], locked, "{t}");
        assert_eq!(st["project_id"], "p1");
        assert_eq!(st["flavor"]["name"], "m1.tiny");
        let n = r.body["events_folded"].as_u64().unwrap();
        assert!(n > last_count, "{t}: {n} events after {last_count}");
        last_count = n;
        // The same state by log position.
        let pos = r.body["last_event"]["position"].as_str().unwrap();
        let r2 = s
            .get(&format!("/v1/instances/{id}/state?at={pos}"), ALICE, None)
            .await;
        assert_eq!(r2.status, StatusCode::OK, "{pos}: {:?}", r2.body);
        assert_eq!(r2.body["state"], r.body["state"], "{pos}");
        assert_eq!(r2.body["events_folded"], r.body["events_folded"]);
    }
    // After everything: host and launch time are there.
    let r = s
        .get(
            &format!("/v1/instances/{id}/state?at={}", now_rfc3339()),
            ALICE,
            None,
        )
        .await;
    assert_eq!(r.body["state"]["host"], "node1");
    assert!(r.body["state"]["launched_at"].is_string());

    // Before it existed, another project's instance, an unknown one: 404.
    let r = s
        .get(
            &format!("/v1/instances/{id}/state?at={before}"),
            ALICE,
            None,
        )
        .await;
    fault(&r, "itemNotFound", 404);
    let r = s
        .get(&format!("/v1/instances/{id}/state?at=api:0"), ALICE, None)
        .await;
    fault(&r, "itemNotFound", 404);
    let t = now_rfc3339();
    let r = s
        .get(&format!("/v1/instances/{id}/state?at={t}"), BOB, None)
        .await;
    fault(&r, "itemNotFound", 404);
    let r = s
        .get(&format!("/v1/instances/{id}/state?at={t}"), ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .get(
            &format!("/v1/instances/{}/state?at={t}", uuid::Uuid::new_v4()),
            ADMIN,
            None,
        )
        .await;
    fault(&r, "itemNotFound", 404);
    // Bad `at`: 400 with a message naming the forms.
    for bad in ["yesterday", "api:x", "Cell1:3", ""] {
        let r = s
            .get(&format!("/v1/instances/{id}/state?at={bad}"), ALICE, None)
            .await;
        let m = fault(&r, "badRequest", 400);
        assert!(m.contains("RFC 3339"), "{m}");
    }
    let r = s
        .get(&format!("/v1/instances/{id}/state"), ALICE, None)
        .await;
    assert!(fault(&r, "badRequest", 400).contains("at is required"));
}

/// Every page of `/v1/events` from the start until `more` is false.
async fn all_pages(s: &Stack, token: &str, query: &str) -> (Vec<Value>, String) {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = s
            .get(&format!("/v1/events?{query}&cursor={cursor}"), token, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        out.extend(r.body["events"].as_array().unwrap().iter().cloned());
        cursor = r.body["next"].as_str().unwrap().to_string();
        if r.body["more"] == json!(false) {
            return (out, cursor);
        }
    }
}

fn ids(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn events_are_filtered_and_visible_to_their_project_only() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let a = s.server(ALICE, "a", "1").await;
    let b = s.server(BOB, "b", "1").await;
    let r = s
        .post(
            &format!("/v2.1/servers/{b}/action"),
            ADMIN,
            None,
            json!({"lock": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    // Alice: her instance's events only, none of Bob's (even those an admin made), no
    // flavor events.
    let (evs, _) = all_pages(&s, ALICE, "limit=2").await;
    assert!(!evs.is_empty());
    for e in &evs {
        assert_eq!(e["project"], "p1", "{e}");
        assert!(!e["subject"].as_str().unwrap().contains(&b), "{e}");
    }
    assert!(evs
        .iter()
        .any(|e| e["type"] == "instance.build_requested" && e["payload"]["spec"]["name"] == "a"));
    // Bob sees the lock the admin made on his server (the resource's project).
    let (evs, _) = all_pages(&s, BOB, "type=instance.locked").await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["actor"]["user"], "admin");
    assert!(evs[0]["subject"].as_str().unwrap().ends_with(&b));
    // Another project named by a non-admin: nothing.
    let (evs, _) = all_pages(&s, ALICE, "project=p2").await;
    assert!(evs.is_empty(), "{evs:?}");

    // Admin: everything, filterable by project, type (exact or prefix) and instance.
    let (all, _) = all_pages(&s, ADMIN, "limit=1000").await;
    assert!(all
        .iter()
        .any(|e| e["type"] == "flavor.created" && e["project"].is_null()));
    let (p2, _) = all_pages(&s, ADMIN, "project=p2").await;
    assert!(!p2.is_empty());
    assert!(p2.iter().all(|e| e["project"] == "p2"));
    assert_eq!(
        p2.len(),
        all.iter().filter(|e| e["project"] == "p2").count()
    );
    let (flavors, _) = all_pages(&s, ADMIN, "type=flavor.*").await;
    assert!(!flavors.is_empty());
    assert!(flavors
        .iter()
        .all(|e| e["type"].as_str().unwrap().starts_with("flavor.")));
    let (two, _) = all_pages(&s, ADMIN, "type=instance.build_requested,instance.locked").await;
    assert_eq!(two.len(), 3, "{two:?}");
    let (only_a, _) = all_pages(&s, ADMIN, &format!("instance={a}")).await;
    let history = s
        .get(&format!("/v1/instances/{a}/events"), ALICE, None)
        .await;
    assert_eq!(
        ids(&only_a),
        ids(history.body["events"].as_array().unwrap())
    );
    // Time window: nothing before the log began, everything up to now.
    let (none, _) = all_pages(&s, ADMIN, "until=2000-01-01T00:00:00Z").await;
    assert!(none.is_empty());
    let (upto, _) = all_pages(
        &s,
        ADMIN,
        &format!("since=2000-01-01T00:00:00Z&until={}", now_rfc3339()),
    )
    .await;
    assert_eq!(ids(&upto).len(), ids(&all).len());

    // Bad input.
    for (q, word) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=bm9wZQ", "cursor"),
        ("since=yesterday", "since"),
        ("until=1", "until"),
        ("instance=nope", "instance"),
        (
            "since=2020-01-02T00:00:00Z&until=2020-01-01T00:00:00Z",
            "since",
        ),
    ] {
        let r = s.get(&format!("/v1/events?{q}"), ALICE, None).await;
        let m = fault(&r, "badRequest", 400);
        assert!(m.contains(word), "{q}: {m}");
    }
}

#[tokio::test]
async fn pages_never_skip_nor_repeat_while_appends_continue() {
    let s = std::sync::Arc::new(start().await);
    s.flavor("1", "m1.tiny", 512, 1).await;
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(s.server(ALICE, &format!("s{i}"), "1").await);
    }
    // A writer locking and unlocking while a reader pages with small pages.
    let writer = {
        let s = s.clone();
        let servers = servers.clone();
        tokio::spawn(async move {
            for round in 0..15 {
                for id in &servers {
                    let act = if round % 2 == 0 { "lock" } else { "unlock" };
                    let r = s
                        .post(
                            &format!("/v2.1/servers/{id}/action"),
                            ALICE,
                            None,
                            json!({act: null}),
                        )
                        .await;
                    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
                }
                let _ = s.server(ALICE, &format!("n{round}"), "1").await;
            }
        })
    };
    let mut got = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let r = s
            .get(&format!("/v1/events?limit=3&cursor={cursor}"), ALICE, None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let evs = r.body["events"].as_array().unwrap();
        assert!(evs.len() <= 3);
        got.extend(evs.iter().cloned());
        cursor = r.body["next"].as_str().unwrap().to_string();
        pages += 1;
        if r.body["more"] == json!(false) && writer.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.await.unwrap();
    // One last page after the writer stopped.
    let r = s
        .get(
            &format!("/v1/events?limit=1000&cursor={cursor}"),
            ALICE,
            None,
        )
        .await;
    got.extend(r.body["events"].as_array().unwrap().iter().cloned());
    let (whole, _) = all_pages(&s, ALICE, "limit=1000").await;
    let got_ids = ids(&got);
    let unique: BTreeSet<&String> = got_ids.iter().collect();
    assert_eq!(unique.len(), got_ids.len(), "duplicates across pages");
    let whole_ids: BTreeSet<String> = ids(&whole).into_iter().collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        whole_ids,
        "pages differ from the whole log"
    );
    assert!(pages > 10, "{pages} pages");
    assert!(whole_ids.len() > 60, "{}", whole_ids.len());
}

/// Reads server-sent events from `resp` until `n` data events arrived (or `wait`
/// passed): (id, data) pairs.
async fn sse_read(
    resp: &mut reqwest::Response,
    buf: &mut String,
    n: usize,
    wait: Duration,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < n {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                out.push((id, serde_json::from_str(&data).unwrap()));
                if out.len() >= n {
                    return out;
                }
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => buf.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
    }
    out
}

async fn open_stream(s: &Stack, token: &str, query: &str, last: Option<&str>) -> reqwest::Response {
    let mut rb = s
        .client
        .get(format!("{}/v1/events/stream?{query}", s.base))
        .header("X-Auth-Token", token);
    if let Some(l) = last {
        rb = rb.header("Last-Event-ID", l);
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    r
}

#[tokio::test]
async fn the_event_stream_is_live_and_resumes_without_gaps() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    s.server(ALICE, "early", "1").await;
    s.server(BOB, "other", "1").await;

    // Live only (no cursor): nothing of the past, then Alice's new server.
    let mut live = open_stream(&s, ALICE, "type=instance.*", None).await;
    let mut buf = String::new();
    let none = sse_read(&mut live, &mut buf, 1, Duration::from_millis(300)).await;
    assert!(none.is_empty(), "{none:?}");
    let id = s.server(ALICE, "late", "1").await;
    s.server(BOB, "hidden", "1").await;
    let evs = sse_read(&mut live, &mut buf, 1, Duration::from_secs(5)).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].1["type"], "instance.build_requested");
    assert!(evs[0].1["subject"].as_str().unwrap().ends_with(&id));
    drop(live);

    // From the start (empty cursor), read part, disconnect, append, resume.
    let mut first = open_stream(&s, ALICE, "cursor=", None).await;
    let mut buf = String::new();
    let part = sse_read(&mut first, &mut buf, 3, Duration::from_secs(5)).await;
    assert_eq!(part.len(), 3);
    drop(first);
    let last_id = part.last().unwrap().0.clone();
    s.server(ALICE, "while-away", "1").await;
    let (whole, _) = all_pages(&s, ALICE, "limit=1000").await;
    let mut again = open_stream(&s, ALICE, "", Some(&last_id)).await;
    let mut buf = String::new();
    let rest = sse_read(
        &mut again,
        &mut buf,
        whole.len() - 3,
        Duration::from_secs(5),
    )
    .await;
    let mut got: Vec<String> = part
        .iter()
        .chain(rest.iter())
        .map(|(_, v)| v["event_id"].as_str().unwrap().to_string())
        .collect();
    let n = got.len();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), n, "duplicates after resuming");
    let mut want = ids(&whole);
    want.sort();
    assert_eq!(got, want, "gaps after resuming");
    for (_, v) in part.iter().chain(rest.iter()) {
        assert_eq!(v["project"], "p1");
    }
    // Still live after the catch-up.
    s.server(ALICE, "after", "1").await;
    // (a quota reservation, then the build request)
    let more = sse_read(&mut again, &mut buf, 2, Duration::from_secs(5)).await;
    assert!(
        more.iter()
            .any(|(_, v)| v["type"] == "instance.build_requested"
                && v["payload"]["spec"]["name"] == "after"),
        "{more:?}"
    );

    // A bad Last-Event-ID: 400.
    let r = s
        .client
        .get(format!("{}/v1/events/stream", s.base))
        .header("X-Auth-Token", ALICE)
        .header("Last-Event-ID", "!!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// A server with a history of several snapshot blocks: `GET .../state?at=` (folded from
/// the `instance_folds` snapshots) answers exactly what the plain fold of the log does
/// at every event's position and time, and `GET .../events` walked page by page with
/// `limit` and `marker` is exactly the unpaged answer.
#[tokio::test]
async fn long_histories_state_at_every_event_and_paged_events() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let host = s.register_host("node1").await;
    let id = s.server(ALICE, "long", "1").await;
    s.make_active(&id, &host).await;
    let action = format!("/v2.1/servers/{id}/action");
    let toggles = 2 * projections::instance_folds::BLOCK as usize + 30;
    for n in 0..toggles {
        let act = if n % 2 == 0 { "lock" } else { "unlock" };
        let r = s.post(&action, ALICE, None, json!({ act: null })).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{act}: {:?}", r.body);
    }
    let all = s
        .get(&format!("/v1/instances/{id}/events"), ALICE, None)
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.body.get("next_marker").is_none(), "unpaged: no marker");
    let all = all.body["events"].as_array().unwrap().clone();
    assert!(all.len() > toggles);

    // State at every event, by position and by time, against the plain fold.
    let iid = InstanceId::parse(&id).unwrap();
    let cell = s
        .engine
        .world()
        .read()
        .instances()
        .get(&iid)
        .and_then(|r| r.cell_subject.clone());
    let log = s.engine.log().clone();
    let used = {
        let views = s.engine.world().read();
        views.instance_folds().of(cell.as_ref().unwrap()).count()
    };
    assert!(used >= 3, "snapshot blocks of the cell subject: {used}");
    // The snapshots are derived data: a rebuild from the log gives the same rows.
    let stored = s.engine.world().read().clone();
    let report = replay::rebuild(log.clone(), &stored).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
    for (n, e) in all.iter().enumerate() {
        let position = format!("{}:{}", e["stream"].as_str().unwrap(), e["stream_seq"]);
        let time = e["occurred_at"].as_str().unwrap().to_string();
        // Every event's position, and the time of every tenth.
        let mut ats = vec![position];
        if n % 10 == 0 {
            ats.push(time);
        }
        for at in ats {
            let r = s
                .get(&format!("/v1/instances/{id}/state?at={at}"), ALICE, None)
                .await;
            let plain = replay::audit::state_at(
                log.as_ref(),
                iid,
                cell.clone(),
                &replay::audit::At::parse(&at).unwrap(),
            )
            .await
            .unwrap()
            .map(|s| replay::audit::state_at_json(&s));
            match plain {
                Some(want) => {
                    assert_eq!(r.status, StatusCode::OK, "{at}: {:?}", r.body);
                    assert_eq!(r.body, want, "state at {at}");
                }
                None => assert_eq!(r.status, StatusCode::NOT_FOUND, "{at}"),
            }
        }
    }

    // Pages of every size walk the whole history exactly once.
    for limit in [1usize, 7, 128, 1000] {
        let mut got: Vec<Value> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let q = match &marker {
                Some(m) => format!("limit={limit}&marker={m}"),
                None => format!("limit={limit}"),
            };
            let r = s
                .get(&format!("/v1/instances/{id}/events?{q}"), ALICE, None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {:?}", r.body);
            let page = r.body["events"].as_array().unwrap();
            assert!(page.len() <= limit);
            got.extend(page.iter().cloned());
            match r.body.get("next_marker").and_then(Value::as_str) {
                Some(m) => {
                    assert_eq!(page.len(), limit, "a marker only after a full page");
                    marker = Some(m.to_string());
                }
                None => break,
            }
            assert!(got.len() <= all.len() + limit, "paging does not end");
        }
        assert_eq!(got, all, "pages of {limit}");
    }
    // A marker alone pages by 1000.
    let first = s
        .get(&format!("/v1/instances/{id}/events?limit=5"), ALICE, None)
        .await;
    let m = first.body["next_marker"].as_str().unwrap();
    let rest = s
        .get(
            &format!("/v1/instances/{id}/events?marker={m}"),
            ALICE,
            None,
        )
        .await;
    assert_eq!(rest.status, StatusCode::OK);
    assert_eq!(rest.body["events"].as_array().unwrap()[..], all[5..]);
    // Bad input: 400, naming the parameter.
    for (q, word) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("marker=%%%", "marker"),
        ("marker=YTowOjE6MA", "marker"),
    ] {
        let r = s
            .get(&format!("/v1/instances/{id}/events?{q}"), ALICE, None)
            .await;
        assert!(fault(&r, "badRequest", 400).contains(word), "{q}");
    }
    // Another project's server stays a 404, paged or not.
    let r = s
        .get(&format!("/v1/instances/{id}/events?limit=5"), BOB, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
