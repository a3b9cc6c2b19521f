//! Our notifications against Nova's versioned notification samples (copied from
//! nova/doc/notification_samples into `notification-samples/`): for every sample, every
//! notification of its event type that a lifecycle scenario produces has exactly the
//! sample's keys, recursively (envelope and payload, `$ref`s to `common_payloads`
//! resolved and overridden as Nova's functional tests do). Values differ (ids, times,
//! hosts). Maps of data (metadata, extra specs) are compared as one key; lists by
//! their first item, except lists Stratus has no items for (block devices, IP
//! addresses, key pairs: no volumes, ports or key pair records in a cell stream),
//! which are compared as one key, as are image properties (Nova sends those set) and
//! a NUMA topology (the sample's flavor has one, ours none). Every sample must be produced, and every event type
//! produced must have a sample here.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use domain::instance::InstanceCommand as C;
use serde_json::Value;

const OPAQUE: &[&str] = &[
    "metadata",
    "extra_specs",
    "block_devices",
    "ip_addresses",
    "keypairs",
    // Image properties: Nova sends only those set on the image (the sample has one).
    "properties",
    // The sample's flavor has a NUMA topology (an object); ours has none (null).
    "numa_topology",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/notification-samples")
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    resolve(v, path.parent().unwrap())
}

/// Replaces `{"$ref": file, ...overrides}` by the file's (resolved) content with the
/// overrides merged in, recursively.
fn resolve(v: Value, base: &Path) -> Value {
    match v {
        Value::Object(mut m) => {
            if let Some(Value::String(r)) = m.remove("$ref") {
                let file = r.trim_end_matches('#');
                let mut target = load(&base.join(file));
                for (k, x) in m {
                    merge(&mut target, k, resolve(x, base));
                }
                target
            } else {
                Value::Object(m.into_iter().map(|(k, x)| (k, resolve(x, base))).collect())
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| resolve(x, base)).collect()),
        other => other,
    }
}

fn merge(target: &mut Value, key: String, value: Value) {
    match (target.get_mut(&key), value) {
        (Some(t @ Value::Object(_)), Value::Object(o)) => {
            for (k, x) in o {
                merge(t, k, x);
            }
        }
        (_, v) => {
            target[key] = v;
        }
    }
}

fn keys(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}/{k}");
                out.insert(p.clone());
                if !OPAQUE.contains(&k.as_str()) {
                    keys(x, &p, out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.first() {
                keys(first, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

fn key_set(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    keys(v, "", &mut out);
    out
}

/// Every implemented notification, from lifecycles that go through each of them.
fn produce() -> Vec<notifier::Notification> {
    let mut all = Vec::new();
    let tiny = || flavor("1", 1, 512, 1);
    let small = || flavor("2", 1, 2048, 20);
    // Create, power actions, shelve / unshelve, resize confirm / revert, lock, update, delete.
    let mut s = Scenario::placed(1, tiny());
    s.complete();
    for cmd in [
        C::Pause,
        C::Unpause,
        C::Suspend,
        C::Resume,
        C::Stop,
        C::Start,
        C::Reboot { hard: true },
    ] {
        s.user(cmd, false);
        s.complete();
    }
    s.user(C::Shelve, false);
    s.settle();
    s.user(
        C::Unshelve {
            availability_zone: None,
        },
        false,
    );
    s.settle();
    s.user(C::Resize { flavor: small() }, false);
    s.settle();
    s.user(C::ConfirmResize, false);
    s.user(
        C::Resize {
            flavor: flavor("3", 2, 4096, 40),
        },
        false,
    );
    s.settle();
    s.user(C::RevertResize, false);
    s.settle();
    s.user(C::Lock { reason: None }, false);
    s.user(C::Unlock, false);
    s.user(
        C::Lock {
            reason: Some("global warming".into()),
        },
        false,
    );
    s.user(C::Unlock, false);
    s.user(
        C::Update {
            name: Some("renamed".into()),
            description: None,
        },
        false,
    );
    s.user(C::LiveMigrate { host: None }, true);
    s.settle();
    s.user(C::LiveMigrate { host: None }, true);
    s.schedule("compute");
    s.fail("rollback");
    s.user(
        C::Rebuild(Box::new(domain::instance::Rebuild {
            image_ref: "a2459075-d96c-40d5-893e-577ff92e721c".into(),
            ..Default::default()
        })),
        false,
    );
    s.settle();
    s.user(
        C::Rebuild(Box::new(domain::instance::Rebuild {
            image_ref: "a2459075-d96c-40d5-893e-577ff92e721c".into(),
            ..Default::default()
        })),
        false,
    );
    s.fail("rebuild failed");
    s.user(
        C::ResetState {
            state: domain::VmState::Active,
        },
        true,
    );
    s.user(C::Reboot { hard: false }, false);
    s.fail("reboot failed");
    // createImage, then createBackup: instance.snapshot.start / end.
    s.user(
        C::Snapshot {
            image: domain::ImageId(uuid::Uuid::from_u128(0x5AB)),
            backup: None,
        },
        false,
    );
    s.settle();
    s.user(
        C::Snapshot {
            image: domain::ImageId(uuid::Uuid::from_u128(0x5AC)),
            backup: Some(domain::instance::BackupRequest {
                backup_type: "daily".into(),
                rotation: 1,
            }),
        },
        false,
    );
    s.settle();
    s.user(
        C::Resize {
            flavor: flavor("4", 4, 8192, 80),
        },
        false,
    );
    s.schedule("host2");
    s.fail("resize failed");
    // The usage audit closes a period the instance was active in (then it is deleted).
    let (id, now) = (s.id(), s.now);
    s.close_period(now - 3_600_000_000, now, vec![("compute", vec![id])]);
    s.user(C::Delete, false);
    s.settle();
    all.extend(s.out);
    // Soft delete (`--reclaim-instance-interval`), restore, soft delete, forceDelete.
    let mut s = Scenario::placed(4, tiny());
    s.complete();
    s.config.reclaim_instance_interval = 60;
    s.user(C::Delete, false);
    s.complete();
    s.user(C::Restore, false);
    s.complete();
    s.user(
        C::Rescue {
            image_ref: Some("a2459075-d96c-40d5-893e-577ff92e721c".into()),
        },
        false,
    );
    s.complete();
    s.user(C::Unrescue, false);
    s.complete();
    s.user(C::TriggerCrashDump, false);
    s.user(C::Delete, false);
    s.complete();
    s.user(C::ForceDelete, false);
    s.settle();
    all.extend(s.out);
    // Evacuated from a down host (2.95: lands stopped): instance.evacuate.
    let mut s = Scenario::placed(5, tiny());
    s.complete();
    s.user(
        C::Evacuate {
            host: None,
            stop: true,
            source_up: false,
        },
        true,
    );
    s.schedule("host2");
    s.settle();
    all.extend(s.out);
    // No valid host: buried in cell0, then deleted (without a host).
    let mut s = Scenario::buried(3, tiny());
    s.user(C::Delete, false);
    all.extend(s.out);
    // A failed build, deleted without a host.
    let mut s = Scenario::placed(2, tiny());
    s.fail("spawn failed");
    s.user(C::Delete, false);
    all.extend(s.out);
    all
}

#[test]
fn every_notification_has_the_keys_of_novas_sample() {
    let ours = produce();
    let mut failures = Vec::new();
    let mut sampled = BTreeSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "samples missing: {}", files.len());
    for file in files {
        let sample = load(&file);
        let ty = sample["event_type"].as_str().unwrap().to_string();
        sampled.insert(ty.clone());
        let mine: Vec<&notifier::Notification> =
            ours.iter().filter(|n| n.event_type == ty).collect();
        if mine.is_empty() {
            failures.push(format!("{}: no notification {ty} produced", file.display()));
            continue;
        }
        let want = key_set(&sample);
        for n in mine {
            let mut v = serde_json::to_value(n).unwrap();
            // Nova's samples leave out the two fields that differ on every message.
            let obj = v.as_object_mut().unwrap();
            assert!(obj.remove("message_id").is_some_and(|m| m.is_string()));
            assert!(obj.remove("timestamp").is_some_and(|t| t.is_string()));
            let got = key_set(&v);
            if got != want {
                failures.push(format!(
                    "{}:\n    only ours:   {:?}\n    only Nova's: {:?}",
                    file.file_name().unwrap().to_string_lossy(),
                    got.difference(&want).collect::<Vec<_>>(),
                    want.difference(&got).collect::<Vec<_>>()
                ));
            }
            if n.priority != sample["priority"] {
                failures.push(format!(
                    "{ty}: priority {} vs {}",
                    n.priority, sample["priority"]
                ));
            }
            let service = |p: &str| p.split(':').next().unwrap_or("").to_string();
            if service(&n.publisher_id) != service(sample["publisher_id"].as_str().unwrap())
                && ty != "instance.update"
                && ty != "instance.delete.start"
                && ty != "instance.delete.end"
            {
                failures.push(format!(
                    "{ty}: publisher {} vs {}",
                    n.publisher_id, sample["publisher_id"]
                ));
            }
        }
    }
    for n in &ours {
        if !sampled.contains(&n.event_type) {
            failures.push(format!("{}: produced without a sample", n.event_type));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
