//! os-simple-tenant-usage end to end (issue 11, item 2): creates, a resize confirmed
//! (the rate changes at the confirmation), a resize reverted (the old rate stays), a
//! delete; windows cutting through lifetimes; every expected figure computed from the
//! times the log recorded (the events' own `at`), never hard-coded. Paging (2.40),
//! policy (another project: 403) and Nova's 400s.

use domain::instance::InstanceEvent;
use domain::{CellName, Event, InstanceId, Timestamp};
use engine::Engine;
use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ALICE: &str = "alice:p1";
const BOB: &str = "bob:p2";
const ADMIN: &str = "admin:admin";

async fn get(h: &Harness, token: &str, path: &str, version: &str) -> (u16, Value) {
    h.req_at(token, reqwest::Method::GET, path, version, None)
        .await
}

/// The `at` of every event of the instance's cell subject, by type.
async fn times(h: &Harness, id: &str) -> Vec<(&'static str, Timestamp)> {
    let iid = InstanceId::parse(id).unwrap();
    let subject = Engine::instance_cell_subject(&CellName::cell1(), &iid);
    let commits = h
        .stack
        .engine
        .log()
        .read_subject(&subject, 1)
        .await
        .unwrap();
    let mut out = Vec::new();
    for c in commits {
        for e in &c.events {
            let Ok(Event::Instance(ev)) = projections::codec::decode(e) else {
                continue;
            };
            let at = match &ev {
                InstanceEvent::Spawned { at } => ("spawned", *at),
                InstanceEvent::ResizeConfirmed { at } => ("confirmed", *at),
                InstanceEvent::ResizeReverted { at } => ("reverted", *at),
                InstanceEvent::Deleted { at } => ("deleted", *at),
                _ => continue,
            };
            out.push(at);
        }
    }
    out
}

fn at(times: &[(&str, Timestamp)], what: &str) -> Timestamp {
    times
        .iter()
        .find(|(k, _)| *k == what)
        .unwrap_or_else(|| panic!("no {what} in {times:?}"))
        .1
}

/// Nova's query format with microseconds (`%Y-%m-%dT%H:%M:%S.%f`).
fn q(ts: Timestamp) -> String {
    api::usage::py_iso(ts).replace(':', "%3A")
}

fn hours(a: Timestamp, b: Timestamp) -> f64 {
    if b.0 <= a.0 {
        0.0
    } else {
        (b.0 - a.0) as f64 / 1e6 / 3600.0
    }
}

fn close(got: &Value, want: f64, what: &str) {
    let g = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
    assert!(
        (g - want).abs() <= 1e-9 * want.abs().max(1e-3),
        "{what}: got {g}, want {want}"
    );
}

/// (vcpus, ram, local_gb) of a flavor, from the API.
async fn flavor(h: &Harness, id: &str) -> (f64, f64, f64) {
    let (_, v) = get(h, ADMIN, &format!("/flavors/{id}"), "2.1").await;
    let f = &v["flavor"];
    (
        f["vcpus"].as_f64().unwrap(),
        f["ram"].as_f64().unwrap(),
        f["disk"].as_f64().unwrap() + f["OS-FLV-EXT-DATA:ephemeral"].as_f64().unwrap(),
    )
}

/// One server's time in `[start, stop)` split at `change` (old flavor before, new after).
fn expect(
    launched: Timestamp,
    end: Option<Timestamp>,
    change: Option<Timestamp>,
    start: Timestamp,
    stop: Timestamp,
) -> (f64, f64) {
    let from = Timestamp(launched.0.max(start.0));
    let to = Timestamp(end.map_or(stop.0, |e| e.0.min(stop.0)));
    match change {
        None => (hours(from, to), 0.0),
        Some(c) => {
            let mid = Timestamp(c.0.clamp(from.0, to.0.max(from.0)));
            (hours(from, mid), hours(mid, to))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_follows_the_log_through_resizes_and_deletes() {
    let h = Harness::start(|_| {}).await;
    let small = flavor(&h, "1").await;
    let big = flavor(&h, "3").await;
    let a = h.create(ALICE, "a", "1").await;
    let b = h.create(ALICE, "b", "1").await;
    let c = h.create(BOB, "c", "1").await;
    for id in [&a, &b, &c] {
        h.wait(id, "ACTIVE").await;
    }
    // a: resize confirmed; b: resize reverted; c: deleted.
    h.action(ALICE, &a, json!({"resize": {"flavorRef": "3"}}), 202)
        .await;
    h.wait(&a, "VERIFY_RESIZE").await;
    h.action(ALICE, &a, json!({"confirmResize": null}), 204)
        .await;
    h.wait(&a, "ACTIVE").await;
    h.action(ALICE, &b, json!({"resize": {"flavorRef": "3"}}), 202)
        .await;
    h.wait(&b, "VERIFY_RESIZE").await;
    h.action(ALICE, &b, json!({"revertResize": null}), 202)
        .await;
    h.wait(&b, "ACTIVE").await;
    let (code, _) = h.req(BOB, M::DELETE, &format!("/servers/{c}"), None).await;
    assert_eq!(code, 204);
    h.wait(&c, "GONE").await;

    let (ta, tb, tc) = (
        times(&h, &a).await,
        times(&h, &b).await,
        times(&h, &c).await,
    );
    let (la, lb, lc) = (at(&ta, "spawned"), at(&tb, "spawned"), at(&tc, "spawned"));
    let confirm = at(&ta, "confirmed");
    let deleted = at(&tc, "deleted");
    let _ = at(&tb, "reverted");
    let now = engine::now();

    // Windows: the whole history, and windows cutting through a's two periods and c's
    // lifetime.
    let windows = [
        (Timestamp(la.0.min(lc.0) - 3_600_000_000), now),
        (
            Timestamp((la.0 + confirm.0) / 2),
            Timestamp((confirm.0 + now.0) / 2),
        ),
        (Timestamp((lc.0 + deleted.0) / 2), now),
        (Timestamp(la.0 + 1), Timestamp(confirm.0 - 1)),
    ];
    for (start, stop) in windows {
        let path = format!(
            "/os-simple-tenant-usage/p1?start={}&end={}",
            q(start),
            q(stop)
        );
        let (code, v) = get(&h, ALICE, &path, "2.40").await;
        assert_eq!(code, 200, "{v}");
        let u = &v["tenant_usage"];
        let (a_old, a_new) = expect(la, None, Some(confirm), start, stop);
        let (b_h, _) = expect(lb, None, None, start, stop);
        close(&u["total_hours"], a_old + a_new + b_h, "total_hours");
        close(
            &u["total_vcpus_usage"],
            a_old * small.0 + a_new * big.0 + b_h * small.0,
            "vcpus",
        );
        close(
            &u["total_memory_mb_usage"],
            a_old * small.1 + a_new * big.1 + b_h * small.1,
            "memory",
        );
        close(
            &u["total_local_gb_usage"],
            a_old * small.2 + a_new * big.2 + b_h * small.2,
            "local_gb",
        );
        assert_eq!(u["tenant_id"], "p1");
        assert_eq!(u["start"], api::usage::py_iso(start));
        assert_eq!(u["stop"], api::usage::py_iso(stop));
        let servers = u["server_usages"].as_array().unwrap();
        assert_eq!(servers.len(), 2);
        let mut ids = [a.clone(), b.clone()];
        ids.sort();
        for (s, id) in servers.iter().zip(&ids) {
            assert_eq!(&s["instance_id"], id);
            assert_eq!(s["state"], "active");
            assert!(s["ended_at"].is_null());
            let launched = if *id == a { la } else { lb };
            assert_eq!(s["started_at"], api::usage::py_iso(launched));
        }
        let sa = servers.iter().find(|s| s["instance_id"] == a).unwrap();
        close(&sa["hours"], a_old + a_new, "a hours");
        // The flavor in force at the end of a's time in the window.
        let shown = if stop.0 > confirm.0 {
            "m1.medium"
        } else {
            "m1.tiny"
        };
        assert_eq!(sa["flavor"], shown);
        let sb = servers.iter().find(|s| s["instance_id"] == b).unwrap();
        assert_eq!(sb["flavor"], "m1.tiny", "a revert keeps the old flavor");
        close(&sb["hours"], b_h, "b hours");

        // Bob's deleted server: in the window while it lived, state terminated.
        let path = format!(
            "/os-simple-tenant-usage/p2?start={}&end={}",
            q(start),
            q(stop)
        );
        let (code, v) = get(&h, BOB, &path, "2.1").await;
        assert_eq!(code, 200, "{v}");
        let (c_h, _) = expect(lc, Some(deleted), None, start, stop);
        if deleted.0 <= start.0 {
            assert_eq!(v["tenant_usage"], json!({}));
        } else {
            let u = &v["tenant_usage"];
            close(&u["total_hours"], c_h, "c hours");
            let s = &u["server_usages"][0];
            assert_eq!(s["state"], "terminated");
            assert_eq!(s["ended_at"], api::usage::py_iso(deleted));
            assert_eq!(s["uptime"], (deleted.0 - lc.0) / 1_000_000);
        }
    }
    // After c's deletion, c is out of every window.
    let path = format!(
        "/os-simple-tenant-usage/p2?start={}",
        q(Timestamp(deleted.0 + 1))
    );
    let (code, v) = get(&h, ADMIN, &path, "2.1").await;
    assert_eq!((code, &v["tenant_usage"]), (200, &json!({})));

    // Index (admin): projects in order, totals without server_usages unless detailed.
    let start = q(Timestamp(la.0.min(lc.0) - 1));
    let (code, v) = get(
        &h,
        ADMIN,
        &format!("/os-simple-tenant-usage?start={start}"),
        "2.1",
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let tenants: Vec<&Value> = v["tenant_usages"].as_array().unwrap().iter().collect();
    assert_eq!(tenants.len(), 2);
    assert_eq!(tenants[0]["tenant_id"], "p1");
    assert_eq!(tenants[1]["tenant_id"], "p2");
    assert!(tenants[0].get("server_usages").is_none());
    let (_, v) = get(
        &h,
        ADMIN,
        &format!("/os-simple-tenant-usage?start={start}&detailed=1"),
        "2.1",
    )
    .await;
    assert_eq!(
        v["tenant_usages"][0]["server_usages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(v.get("tenant_usages_links").is_none());

    // Paging (2.40): one instance per page, in (project, uuid) order, to the end.
    let mut all = vec![
        (String::from("p1"), a.clone()),
        ("p1".into(), b.clone()),
        ("p2".into(), c.clone()),
    ];
    all.sort();
    let mut path = format!("/os-simple-tenant-usage?start={start}&detailed=1&limit=1");
    let mut seen = Vec::new();
    loop {
        let (code, v) = get(&h, ADMIN, &path, "2.40").await;
        assert_eq!(code, 200, "{v}");
        let us = v["tenant_usages"].as_array().unwrap();
        if us.is_empty() {
            assert!(v.get("tenant_usages_links").is_none());
            break;
        }
        assert_eq!(us.len(), 1);
        let s = &us[0]["server_usages"][0];
        seen.push((
            s["tenant_id"].as_str().unwrap().to_string(),
            s["instance_id"].as_str().unwrap().to_string(),
        ));
        let href = v["tenant_usages_links"][0]["href"].as_str().unwrap();
        assert_eq!(v["tenant_usages_links"][0]["rel"], "next");
        assert!(href.contains(&format!("marker={}", s["instance_id"].as_str().unwrap())));
        path = href.split("/v2.1").nth(1).unwrap().to_string();
        assert!(seen.len() <= 3, "paging never ends");
    }
    assert_eq!(seen, all);
    // Show pages too.
    let (_, v) = get(
        &h,
        ALICE,
        &format!("/os-simple-tenant-usage/p1?start={start}&limit=1"),
        "2.40",
    )
    .await;
    assert!(v["tenant_usage_links"][0]["href"]
        .as_str()
        .unwrap()
        .contains("/os-simple-tenant-usage/p1?"));
    // Unknown marker: 400.
    let bogus = uuid::Uuid::new_v4();
    let (code, v) = get(
        &h,
        ADMIN,
        &format!("/os-simple-tenant-usage?start={start}&marker={bogus}"),
        "2.40",
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        v["badRequest"]["message"],
        format!("Marker {bogus} could not be found.")
    );

    // Policy: the index is admin's; another project's usage is the policy's 403.
    let (code, v) = get(&h, ALICE, "/os-simple-tenant-usage", "2.1").await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Policy doesn't allow os_compute_api:os-simple-tenant-usage:list to be performed."
    );
    let (code, v) = get(&h, ALICE, "/os-simple-tenant-usage/p2", "2.1").await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Policy doesn't allow os_compute_api:os-simple-tenant-usage:show to be performed."
    );

    // Nova's 400s.
    for (query, msg) in [
        (
            "start=yesterday",
            "Invalid datetime string: Datetime is in invalid format",
        ),
        (
            "end=2020-01-01",
            "Invalid datetime string: Datetime is in invalid format",
        ),
        (
            "start=2020-01-02T00:00:00&end=2020-01-01T00:00:00",
            "Invalid start time. The start time cannot occur after the end time.",
        ),
    ] {
        let (code, v) = get(
            &h,
            ALICE,
            &format!("/os-simple-tenant-usage/p1?{query}"),
            "2.1",
        )
        .await;
        assert_eq!(code, 400, "{query}: {v}");
        assert_eq!(v["badRequest"]["message"], msg, "{query}");
    }
    // Unknown query keys: ignored before 2.75, refused from it.
    let (code, _) = get(&h, ALICE, "/os-simple-tenant-usage/p1?foo=1", "2.74").await;
    assert_eq!(code, 200);
    let (code, _) = get(&h, ALICE, "/os-simple-tenant-usage/p1?foo=1", "2.75").await;
    assert_eq!(code, 400);
    h.stack.stop().await;
}

/// os-instance_usage_audit_log (admin) reads the `audit.period_closed` facts the
/// scheduler role appends once per cell and period (a 2-second period here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_reports_the_periods_closed_in_the_log() {
    let h = Harness::start(|o| o.audit_period = std::time::Duration::from_secs(2)).await;
    let a = h.create(ALICE, "a", "1").await;
    let host = h.wait(&a, "ACTIVE").await["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, services) = get(&h, ADMIN, "/os-services?binary=nova-compute", "2.1").await;
    let hosts = services["services"].as_array().unwrap().len();
    assert!(hosts > 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let log = loop {
        let (code, v) = get(&h, ADMIN, "/os-instance_usage_audit_log", "2.1").await;
        assert_eq!(code, 200, "{v}");
        let log = v["instance_usage_audit_logs"].clone();
        if log["total_instances"] == 1 && log["num_hosts_done"] == hosts {
            break log;
        }
        assert!(std::time::Instant::now() < deadline, "never audited: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(log["num_hosts"], hosts);
    assert_eq!(log["num_hosts_not_run"], 0);
    assert_eq!(log["overall_status"], "ALL hosts done. 0 errors.");
    assert_eq!(log["log"][&host]["instances"], 1);
    assert_eq!(log["log"][&host]["state"], "DONE");
    let begin = log["period_beginning"].as_str().unwrap();
    let end = log["period_ending"].as_str().unwrap();
    let parse = |s: &str| api::usage::parse_time(&s.replace(' ', "T")).unwrap();
    assert_eq!(parse(end).0 - parse(begin).0, 2_000_000);

    // Each (cell, period) closed exactly once in the log.
    let subject = projections::usage::audit_subject(&CellName::cell1());
    let commits = h
        .stack
        .engine
        .log()
        .read_subject(&subject, 1)
        .await
        .unwrap();
    let mut periods = std::collections::BTreeSet::new();
    for c in &commits {
        for e in &c.events {
            let Ok(Event::UsageAudit(domain::audit::AuditEvent::PeriodClosed {
                period_beginning,
                ..
            })) = projections::codec::decode(e)
            else {
                panic!("not an audit event: {}", e.event_type);
            };
            assert!(periods.insert(period_beginning), "a period closed twice");
        }
    }
    assert!(periods.contains(&parse(begin)));

    // A period before anything ran: every host not run.
    let (code, v) = get(
        &h,
        ADMIN,
        "/os-instance_usage_audit_log/2000-01-01%2000:00:00",
        "2.1",
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let old = &v["instance_usage_audit_log"];
    assert_eq!(old["period_beginning"], "1999-12-31 23:59:58");
    assert_eq!(old["period_ending"], "2000-01-01 00:00:00");
    assert_eq!(old["num_hosts_not_run"], hosts);
    assert_eq!(
        old["overall_status"],
        format!("0 of {hosts} hosts done. 0 errors.")
    );
    let (code, v) = get(&h, ADMIN, "/os-instance_usage_audit_log/yesterday", "2.1").await;
    assert_eq!(code, 400);
    assert_eq!(
        v["badRequest"]["message"],
        "Invalid timestamp for date yesterday"
    );
    let (code, _) = get(&h, ALICE, "/os-instance_usage_audit_log", "2.1").await;
    assert_eq!(code, 403);
    h.stack.stop().await;
}
