//! The pure fold and the ledger: notifications -> usage facts -> a window's figures,
//! checked against usage computed independently here (integer microseconds), in any
//! order and with duplicates; the ledger's exactly-once commit and its report.

use billing::fold::{self, parse_time, relevant, usage, Facts};
use billing::{Ledger, RateCard};
use domain::{InstanceId, Timestamp};
use notifier::Notification;
use serde_json::json;
use uuid::Uuid;

const T0: i64 = 1_764_842_400_000_000; // 2025-12-04T10:00:00Z
const SEC: i64 = 1_000_000;

type Flavor = (&'static str, u32, u64, u64, u64);
const TINY: Flavor = ("m1.tiny", 1, 512, 1, 0);
const SMALL: Flavor = ("m1.small", 1, 2048, 20, 0);
const LARGE: Flavor = ("m1.large", 4, 8192, 80, 10);

fn iso(us: i64) -> String {
    notifier::mapping::iso(Timestamp(us))
}

fn envelope(us: i64) -> String {
    notifier::mapping::envelope_time(Timestamp(us))
}

/// A notification shaped as the notifier writes it (only what billing reads matters,
/// plus a few other fields).
fn note(
    ty: &str,
    id: u128,
    project: &str,
    f: Flavor,
    at: i64,
    launched: Option<i64>,
    terminated: Option<i64>,
) -> Notification {
    let msg = Uuid::from_u128(id.wrapping_mul(31).wrapping_add(at as u128) ^ ty.len() as u128);
    Notification {
        priority: "INFO".into(),
        event_type: ty.into(),
        timestamp: envelope(at),
        publisher_id: "nova-compute:host1".into(),
        message_id: msg,
        payload: json!({
            "nova_object.name": "InstanceActionPayload",
            "nova_object.data": {
                "uuid": Uuid::from_u128(id).to_string(),
                "tenant_id": project,
                "user_id": "alice",
                "launched_at": launched.map(iso),
                "terminated_at": terminated.map(iso),
                "state": "active",
                "flavor": {"nova_object.data": {
                    "name": f.0, "vcpus": f.1, "memory_mb": f.2, "root_gb": f.3,
                    "ephemeral_gb": f.4, "flavorid": "1"}},
            }
        }),
    }
}

fn facts(ns: &[Notification]) -> Facts {
    let mut f = Facts::default();
    for n in ns {
        if let Some(r) = relevant(n).unwrap() {
            f.apply(&r);
        }
    }
    f
}

/// Expected (hours, vcpu, mem, disk) from integer-microsecond segments.
fn expected(segments: &[(i64, i64, Flavor)]) -> (f64, f64, f64, f64) {
    let mut out = (0.0, 0.0, 0.0, 0.0);
    for (a, b, f) in segments {
        let h = (b - a) as f64 / 3_600_000_000.0;
        out.0 += h;
        out.1 += h * f64::from(f.1);
        out.2 += h * f.2 as f64;
        out.3 += h * (f.3 + f.4) as f64;
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn check(f: &Facts, id: u128, start: i64, end: i64, want: Option<(f64, f64, f64, f64)>) {
    let row = f.row().expect("a flavor");
    let got = usage(
        InstanceId(Uuid::from_u128(id)),
        &row,
        Timestamp(start),
        Timestamp(end),
    );
    match (got, want) {
        (None, None) => {}
        (Some(u), Some(w)) => {
            assert!(close(u.hours, w.0), "hours {} != {}", u.hours, w.0);
            assert!(close(u.vcpu_hours, w.1), "vcpu {} != {}", u.vcpu_hours, w.1);
            assert!(
                close(u.memory_mb_hours, w.2),
                "mem {} != {}",
                u.memory_mb_hours,
                w.2
            );
            assert!(
                close(u.local_gb_hours, w.3),
                "disk {} != {}",
                u.local_gb_hours,
                w.3
            );
            let by: f64 = u.by_flavor.iter().map(|(_, h)| h).sum();
            assert!(close(by, w.0), "periods {by} != {}", w.0);
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

/// create at T0+0.25 s, resize to LARGE confirmed at T0+1000.5 s, deleted T0+3000.75 s.
fn lifecycle(id: u128) -> Vec<Notification> {
    let l = T0 + SEC / 4;
    vec![
        note("instance.create.start", id, "p1", TINY, T0, None, None),
        note("instance.create.end", id, "p1", TINY, l, Some(l), None),
        note(
            "instance.pause.end",
            id,
            "p1",
            TINY,
            T0 + 500 * SEC,
            Some(l),
            None,
        ),
        note(
            "instance.resize_finish.end",
            id,
            "p1",
            LARGE,
            T0 + 990 * SEC,
            Some(l),
            None,
        ),
        note(
            "instance.resize_confirm.end",
            id,
            "p1",
            LARGE,
            T0 + 1000 * SEC + SEC / 2,
            Some(l),
            None,
        ),
        note(
            "instance.delete.start",
            id,
            "p1",
            LARGE,
            T0 + 3000 * SEC,
            Some(l),
            None,
        ),
        note(
            "instance.delete.end",
            id,
            "p1",
            LARGE,
            T0 + 3000 * SEC + 3 * SEC / 4,
            Some(l),
            Some(T0 + 3000 * SEC + 3 * SEC / 4),
        ),
    ]
}

#[test]
fn times_parse_to_the_microsecond() {
    assert_eq!(
        parse_time(&iso(T0 + 123_456)),
        Some(Timestamp(T0 + 123_456))
    );
    assert_eq!(parse_time(&envelope(T0 + 7)), Some(Timestamp(T0 + 7)));
    assert_eq!(parse_time("2025-12-04T10:00:00Z"), Some(Timestamp(T0)));
    assert_eq!(parse_time("yesterday"), None);
}

#[test]
fn a_resize_bills_the_new_flavor_from_its_confirmation_to_the_second() {
    let f = facts(&lifecycle(1));
    let (l, c, d) = (
        T0 + SEC / 4,
        T0 + 1000 * SEC + SEC / 2,
        T0 + 3000 * SEC + 3 * SEC / 4,
    );
    // The whole life.
    check(
        &f,
        1,
        T0 - 3600 * SEC,
        T0 + 7200 * SEC,
        Some(expected(&[(l, c, TINY), (c, d, LARGE)])),
    );
    // A window cutting both periods.
    let (ws, we) = (T0 + 100 * SEC, T0 + 2000 * SEC + 1);
    check(
        &f,
        1,
        ws,
        we,
        Some(expected(&[(ws, c, TINY), (c, we, LARGE)])),
    );
    // A window inside the first period only.
    check(
        &f,
        1,
        T0 + 10 * SEC,
        T0 + 20 * SEC,
        Some(expected(&[(T0 + 10 * SEC, T0 + 20 * SEC, TINY)])),
    );
    // Windows Nova's query does not return: ended by the start, launched after the end.
    check(&f, 1, d, d + SEC, None);
    check(&f, 1, T0 - 10 * SEC, l, None);
    // Ended just after the start: returned, with its last microsecond.
    check(&f, 1, d - 1, d + SEC, Some(expected(&[(d - 1, d, LARGE)])));
}

#[test]
fn a_migration_confirmed_with_the_same_flavor_changes_nothing() {
    let l = T0 + SEC;
    let f = facts(&[
        note("instance.create.end", 2, "p1", SMALL, l, Some(l), None),
        note(
            "instance.resize_confirm.end",
            2,
            "p1",
            SMALL,
            T0 + 50 * SEC,
            Some(l),
            None,
        ),
    ]);
    assert_eq!(f.row().unwrap().periods.len(), 1);
    check(
        &f,
        2,
        T0,
        T0 + 100 * SEC,
        Some(expected(&[(l, T0 + 100 * SEC, SMALL)])),
    );
}

#[test]
fn a_rebuild_renews_launched_at_as_nova_does() {
    let (l, r) = (T0 + SEC, T0 + 600 * SEC);
    let f = facts(&[
        note("instance.create.end", 3, "p1", SMALL, l, Some(l), None),
        note("instance.rebuild.end", 3, "p1", SMALL, r, Some(r), None),
    ]);
    assert_eq!(f.launched_at, Some(Timestamp(r)));
    check(
        &f,
        3,
        T0,
        T0 + 1000 * SEC,
        Some(expected(&[(r, T0 + 1000 * SEC, SMALL)])),
    );
}

#[test]
fn the_fold_is_the_same_in_any_order_and_with_duplicates() {
    let all: Vec<Notification> = lifecycle(4)
        .into_iter()
        .filter(|n| fold::BILLING_TYPES.contains(&n.event_type.as_str()))
        .collect();
    assert_eq!(all.len(), 3);
    let want = facts(&all);
    // Every order of the three, each also with every notification twice.
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for o in orders {
        let seq: Vec<Notification> = o.iter().map(|&i| all[i].clone()).collect();
        assert_eq!(facts(&seq), want, "order {o:?}");
        let twice: Vec<Notification> = seq.iter().chain(seq.iter()).cloned().collect();
        assert_eq!(facts(&twice), want, "order {o:?} twice");
    }
}

#[test]
fn other_notifications_do_not_bill_and_malformed_ones_are_refused() {
    assert!(relevant(&note(
        "instance.pause.end",
        5,
        "p1",
        TINY,
        T0,
        Some(T0),
        None
    ))
    .unwrap()
    .is_none());
    // Never launched (deleted before placement or after a failed spawn): nothing.
    let mut never = note("instance.delete.end", 5, "p1", TINY, T0, None, Some(T0));
    assert!(relevant(&never).unwrap().is_none());
    never.payload["nova_object.data"]["flavor"] = json!(null);
    assert!(relevant(&never).unwrap().is_none());
    let mut bad = note("instance.create.end", 5, "p1", TINY, T0, Some(T0), None);
    bad.payload["nova_object.data"]["launched_at"] = json!("not a time");
    assert!(relevant(&bad).is_err());
    let mut bad = note("instance.delete.end", 5, "p1", TINY, T0, Some(T0), Some(T0));
    bad.payload["nova_object.data"]["flavor"] = json!(null);
    assert!(relevant(&bad).is_err());
}

#[test]
fn the_ledger_counts_each_notification_once_and_reports_nova_figures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let ledger = Ledger::open(&path).unwrap();
    let a = lifecycle(10);
    let mut b = lifecycle(11);
    for n in &mut b {
        n.payload["nova_object.data"]["tenant_id"] = json!("p2");
        n.message_id = Uuid::from_u128(n.message_id.as_u128() ^ 0xffff);
    }
    let c = ledger.commit(7, &a).unwrap();
    assert_eq!((c.seen, c.counted, c.duplicates, c.cursor), (7, 3, 0, 7));
    // The same page again (a crash between commit and ack): nothing counted twice.
    let c = ledger.commit(7, &a).unwrap();
    assert_eq!((c.counted, c.duplicates, c.cursor), (0, 3, 7));
    // A malformed notification fails its whole batch: nothing written, cursor kept.
    let mut bad = b.clone();
    bad[1].payload["nova_object.data"]["uuid"] = json!("nope");
    assert!(ledger.commit(14, &bad).is_err());
    assert_eq!(ledger.cursor().unwrap(), 7);
    assert!(!ledger.is_counted(b[1].message_id).unwrap());
    let c = ledger.commit(14, &b).unwrap();
    assert_eq!((c.counted, c.cursor), (3, 14));
    // The cursor never goes back.
    assert_eq!(ledger.commit(3, &[]).unwrap().cursor, 14);
    drop(ledger);

    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.counted().unwrap(), 6);
    let card = RateCard::parse(include_str!("../../../ops/billing-rates.toml")).unwrap();
    let (ws, we) = (T0 + 100 * SEC, T0 + 2000 * SEC);
    let r = ledger
        .report(Timestamp(ws), Timestamp(we), None, &card)
        .unwrap();
    let c = T0 + 1000 * SEC + SEC / 2;
    let want = expected(&[(ws, c, TINY), (c, we, LARGE)]);
    assert_eq!(r.projects.len(), 2);
    for (p, name) in r.projects.iter().zip(["p1", "p2"]) {
        assert_eq!(p.tenant_id, name);
        assert_eq!(p.instances, 1);
        assert!(close(p.total_hours, want.0));
        assert!(close(p.total_vcpus_usage, want.1));
        assert!(close(p.total_memory_mb_usage, want.2));
        assert!(close(p.total_local_gb_usage, want.3));
        let h1 = (c - ws) as f64 / 3.6e9;
        let h2 = (we - c) as f64 / 3.6e9;
        let cost = card.price(&usage_flavor(TINY), h1) + card.price(&usage_flavor(LARGE), h2);
        assert!(close(p.cost, cost), "{} != {cost}", p.cost);
    }
    let only = ledger
        .report(Timestamp(ws), Timestamp(we), Some("p2"), &card)
        .unwrap();
    assert_eq!(only.projects.len(), 1);
    assert_eq!(only.projects[0].tenant_id, "p2");
    let none = ledger
        .report(Timestamp(ws), Timestamp(we), Some("p0"), &card)
        .unwrap();
    assert!(none.projects.is_empty());
}

fn usage_flavor(f: Flavor) -> projections::usage::UsageFlavor {
    projections::usage::UsageFlavor {
        name: f.0.into(),
        vcpus: f.1,
        memory_mb: f.2,
        root_gb: f.3,
        ephemeral_gb: f.4,
    }
}

#[test]
fn the_rate_card_prices_by_flavor_else_by_resource() {
    let card = RateCard::parse(
        r#"
currency = "USD"
[resources]
vcpu_hour = 0.5
memory_mb_hour = 0.001
disk_gb_hour = 0.01
instance_hour = 0.1
[flavors."m1.large"]
hour = 3.0
"#,
    )
    .unwrap();
    assert_eq!(card.currency, "USD");
    // m1.small: 1 vCPU, 2048 MB, 20 GB, for 2 hours.
    let small = card.price(&usage_flavor(SMALL), 2.0);
    assert!(close(small, 2.0 * (0.5 + 2.048 + 0.2 + 0.1)), "{small}");
    assert!(close(card.price(&usage_flavor(LARGE), 2.0), 6.0));
    assert!(
        RateCard::parse("[resources]\nvcpu_hours = 1.0").is_err(),
        "typo refused"
    );
    assert!(
        RateCard::parse("[resources]\nvcpu_hour = -1.0").is_err(),
        "negative refused"
    );
    assert!(
        RateCard::parse("")
            .unwrap()
            .price(&usage_flavor(LARGE), 5.0)
            == 0.0
    );
}
