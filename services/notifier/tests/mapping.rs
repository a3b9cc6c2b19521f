//! The mapping through the notifier's fold: each lifecycle operation gives Nova's
//! notifications at Nova's start / end points, with stable message ids.

mod common;

use common::*;
use domain::instance::InstanceCommand as C;
use domain::VmState;

fn types(n: &[notifier::Notification]) -> Vec<&str> {
    n.iter().map(|n| n.event_type.as_str()).collect()
}

fn data(n: &notifier::Notification) -> &serde_json::Value {
    &n.payload["nova_object.data"]
}

#[test]
fn create_starts_at_placement_and_ends_when_spawned() {
    let mut s = Scenario::placed(1, flavor("1", 1, 512, 1));
    assert_eq!(types(&s.out), ["instance.create.start"]);
    assert_eq!(data(&s.out[0])["state"], "building");
    assert_eq!(data(&s.out[0])["task_state"], "spawning");
    assert_eq!(s.out[0].publisher_id, "nova-compute:compute");
    let end = s.complete();
    assert_eq!(types(&end), ["instance.create.end"]);
    assert_eq!(data(&end[0])["state"], "active");
    assert_eq!(data(&end[0])["power_state"], "running");
    assert!(data(&end[0])["launched_at"].is_string());
    assert_eq!(
        data(&end[0])["flavor"]["nova_object.data"]["memory_mb"],
        512
    );
}

#[test]
fn a_failed_spawn_is_create_error_with_the_fault() {
    let mut s = Scenario::placed(2, flavor("1", 1, 512, 1));
    let n = s.fail("disk full");
    assert_eq!(types(&n), ["instance.create.error"]);
    assert_eq!(n[0].priority, "ERROR");
    assert_eq!(
        data(&n[0])["fault"]["nova_object.data"]["exception_message"],
        "disk full"
    );
}

#[test]
fn pause_starts_at_task_started_and_ends_at_completion() {
    let mut s = Scenario::placed(3, flavor("1", 1, 512, 1));
    s.complete();
    let start = s.user(C::Pause, false);
    assert_eq!(types(&start), ["instance.pause.start"]);
    assert_eq!(data(&start[0])["task_state"], "pausing");
    assert_eq!(data(&start[0])["state"], "active");
    assert_eq!(data(&start[0])["action_initiator_user"], "fake");
    assert_eq!(
        data(&start[0])["request_id"],
        s.commits.last().unwrap().meta.correlation_id
    );
    let end = s.complete();
    assert_eq!(types(&end), ["instance.pause.end"]);
    assert_eq!(data(&end[0])["state"], "paused");
    assert_eq!(data(&end[0])["task_state"], serde_json::Value::Null);
    let n = s.user(C::Unpause, false);
    assert_eq!(types(&n), ["instance.unpause.start"]);
    assert_eq!(types(&s.complete()), ["instance.unpause.end"]);
}

#[test]
fn power_actions_and_reboot_pair_up() {
    let mut s = Scenario::placed(4, flavor("1", 1, 512, 1));
    s.complete();
    for (cmd, name) in [
        (C::Suspend, "suspend"),
        (C::Resume, "resume"),
        (C::Stop, "power_off"),
        (C::Start, "power_on"),
        (C::Reboot { hard: true }, "reboot"),
    ] {
        let start = s.user(cmd, false);
        let end = s.complete();
        assert_eq!(types(&start), [format!("instance.{name}.start")]);
        assert_eq!(types(&end), [format!("instance.{name}.end")]);
    }
    s.user(C::Reboot { hard: false }, false);
    let err = s.fail("guest did not answer");
    assert_eq!(types(&err), ["instance.reboot.error"]);
}

#[test]
fn shelve_with_immediate_offload_then_unshelve() {
    let mut s = Scenario::placed(5, flavor("1", 1, 512, 1));
    s.complete();
    // Nova's shelve sends the current period's instance.exists first.
    assert_eq!(
        types(&s.user(C::Shelve, false)),
        ["instance.exists", "instance.shelve.start"]
    );
    // The image steps (shelving_image_pending_upload, shelving_image_uploading) send
    // nothing of their own.
    assert!(s.complete().is_empty());
    assert!(s.complete().is_empty());
    let n = s.complete();
    assert_eq!(
        types(&n),
        ["instance.shelve.end", "instance.shelve_offload.start"]
    );
    assert_eq!(data(&n[0])["task_state"], serde_json::Value::Null);
    assert_eq!(data(&n[1])["task_state"], "shelving_offloading");
    let n = s.complete();
    assert_eq!(types(&n), ["instance.shelve_offload.end"]);
    assert_eq!(data(&n[0])["host"], serde_json::Value::Null);
    assert_eq!(
        types(&s.user(
            C::Unshelve {
                availability_zone: None
            },
            false
        )),
        ["instance.unshelve.start"]
    );
    let n = s.settle();
    assert_eq!(types(&n), ["instance.unshelve.end"]);
    assert_eq!(data(&n[0])["host"], "host2");
}

#[test]
fn resize_confirm_and_revert_follow_novas_steps() {
    let mut s = Scenario::placed(6, flavor("1", 1, 512, 1));
    s.complete();
    assert!(s
        .user(
            C::Resize {
                flavor: flavor("2", 2, 2048, 20)
            },
            false
        )
        .is_empty());
    let n = s.schedule("host2");
    assert_eq!(
        types(&n),
        [
            "instance.exists",
            "instance.resize_prep.start",
            "instance.resize_prep.end",
            "instance.resize.start"
        ]
    );
    // prep_resize's instance.exists (current period: the hour up to now), from the
    // destination, with the instance still on its source.
    assert_eq!(n[0].publisher_id, "nova-compute:host2");
    assert_eq!(data(&n[0])["host"], "compute");
    let period = &data(&n[0])["audit_period"]["nova_object.data"];
    assert!(period["audit_period_beginning"].as_str() < period["audit_period_ending"].as_str());
    assert!(period["audit_period_beginning"]
        .as_str()
        .unwrap()
        .ends_with(":00:00.000000Z"));
    assert_eq!(
        data(&n[1])["new_flavor"]["nova_object.data"]["memory_mb"],
        2048
    );
    assert_eq!(data(&n[1])["flavor"]["nova_object.data"]["memory_mb"], 512);
    let n = s.complete();
    assert_eq!(
        types(&n),
        [
            "instance.resize.end",
            "instance.resize_finish.start",
            "instance.resize_finish.end"
        ]
    );
    assert_eq!(data(&n[2])["state"], "resized");
    assert_eq!(data(&n[2])["flavor"]["nova_object.data"]["memory_mb"], 2048);
    assert_eq!(data(&n[2])["host"], "host2");
    let n = s.user(C::ConfirmResize, false);
    assert_eq!(
        types(&n),
        [
            "instance.resize_confirm.start",
            "instance.resize_confirm.end"
        ]
    );
    assert_eq!(data(&n[1])["state"], "active");

    s.user(
        C::Resize {
            flavor: flavor("3", 4, 4096, 40),
        },
        false,
    );
    s.settle();
    assert_eq!(
        types(&s.user(C::RevertResize, false)),
        ["instance.exists", "instance.resize_revert.start"]
    );
    let n = s.complete();
    assert_eq!(types(&n), ["instance.resize_revert.end"]);
    assert_eq!(data(&n[0])["flavor"]["nova_object.data"]["memory_mb"], 2048);
    assert_eq!(data(&n[0])["host"], "host2");
}

#[test]
fn live_migration_pre_and_post_steps() {
    let mut s = Scenario::placed(7, flavor("1", 1, 512, 1));
    s.complete();
    assert!(s.user(C::LiveMigrate { host: None }, true).is_empty());
    let n = s.schedule("host2");
    assert_eq!(
        types(&n),
        [
            "instance.live_migration_pre.start",
            "instance.live_migration_pre.end"
        ]
    );
    assert_eq!(n[0].publisher_id, "nova-compute:host2");
    let n = s.complete();
    assert_eq!(
        types(&n),
        [
            "instance.live_migration_post.start",
            "instance.live_migration_post_dest.start",
            "instance.live_migration_post_dest.end",
            "instance.live_migration_post.end"
        ]
    );
    assert_eq!(data(&n[2])["host"], "host2");
    assert_eq!(n[0].publisher_id, "nova-compute:compute");

    s.user(C::LiveMigrate { host: None }, true);
    s.schedule("compute");
    let n = s.fail("migration failed");
    assert_eq!(
        types(&n),
        [
            "instance.live_migration_rollback.start",
            "instance.live_migration_rollback.end"
        ]
    );
}

#[test]
fn lock_unlock_update_and_delete() {
    let mut s = Scenario::placed(8, flavor("1", 1, 512, 1));
    s.complete();
    let n = s.user(
        C::Lock {
            reason: Some("global warming".into()),
        },
        false,
    );
    assert_eq!(types(&n), ["instance.lock"]);
    assert_eq!(n[0].publisher_id, "nova-api:stratus");
    assert_eq!(data(&n[0])["locked_reason"], "global warming");
    assert_eq!(types(&s.user(C::Unlock, false)), ["instance.unlock"]);
    let n = s.user(
        C::Update {
            name: Some("renamed".into()),
            description: None,
        },
        false,
    );
    assert_eq!(types(&n), ["instance.update"]);
    assert_eq!(data(&n[0])["old_display_name"], "some-server");
    assert_eq!(data(&n[0])["display_name"], "renamed");
    let n = s.user(C::Delete, false);
    assert_eq!(types(&n), ["instance.delete.start"]);
    assert_eq!(data(&n[0])["task_state"], "deleting");
    let n = s.complete();
    assert_eq!(types(&n), ["instance.delete.end"]);
    assert_eq!(data(&n[0])["state"], "deleted");
    assert!(data(&n[0])["deleted_at"].is_string());
    assert!(s.fold.is_empty(), "a deleted instance is forgotten");
}

#[test]
fn delete_without_host_sends_both_from_the_api() {
    let mut s = Scenario::placed(9, flavor("1", 1, 512, 1));
    s.fail("no");
    assert_eq!(s.cell.as_ref().unwrap().vm_state, VmState::Error);
    let n = s.user(C::Delete, false);
    assert_eq!(types(&n), ["instance.delete.start", "instance.delete.end"]);
    assert!(n.iter().all(|n| n.publisher_id == "nova-api:stratus"));
}

#[test]
fn message_ids_are_stable_and_unique() {
    let run = || {
        let mut s = Scenario::placed(10, flavor("1", 1, 512, 1));
        s.complete();
        s.user(
            C::Resize {
                flavor: flavor("2", 2, 2048, 20),
            },
            false,
        );
        s.settle();
        s.user(C::ConfirmResize, false);
        s.user(C::Delete, false);
        s.settle();
        s
    };
    let (a, b) = (run(), run());
    assert_eq!(a.out, b.out, "the same log gives the same notifications");
    let ids: std::collections::HashSet<_> = a.out.iter().map(|n| n.message_id).collect();
    assert_eq!(ids.len(), a.out.len());
    // Refolding from the commits alone gives the same bytes.
    let mut fold = notifier::CellFold::default();
    let again: Vec<_> = a
        .commits
        .iter()
        .flat_map(|c| fold.commit(c).unwrap())
        .collect();
    assert_eq!(again, a.out);
    let first = &a.commits[0].events[0];
    assert_eq!(
        a.out[0].message_id,
        notifier::message_id(first.event_id, "instance.create.start")
    );
}

#[test]
fn a_commit_out_of_order_is_refused() {
    let s = Scenario::placed(11, flavor("1", 1, 512, 1));
    let mut fold = notifier::CellFold::default();
    let mut c = s.commits[0].clone();
    c.stream_seq = 2;
    assert!(fold.commit(&c).is_err());
}

#[test]
fn a_closed_audit_period_gives_instance_exists_per_audited_instance() {
    let mut s = Scenario::placed(12, flavor("1", 1, 512, 1));
    s.complete();
    s.user(C::Pause, false);
    let id = s.id();
    let (begin, end) = (s.now - 3_600_000_000, s.now);
    let n = s.close_period(begin, end, vec![("compute", vec![id]), ("host2", vec![])]);
    assert_eq!(types(&n), ["instance.exists"]);
    let d = data(&n[0]);
    assert_eq!(n[0].publisher_id, "nova-compute:compute");
    assert_eq!(d["uuid"], id.to_string());
    // The instance as folded at that point: pausing.
    assert_eq!(d["state"], "active");
    assert_eq!(d["task_state"], "pausing");
    let period = &d["audit_period"]["nova_object.data"];
    assert_eq!(
        period["audit_period_beginning"],
        notifier::mapping::iso(domain::Timestamp(begin))
    );
    assert_eq!(
        period["audit_period_ending"],
        notifier::mapping::iso(domain::Timestamp(end))
    );
    let audit_event = s.commits.last().unwrap().events[0].event_id;
    assert_eq!(
        n[0].message_id,
        notifier::mapping::exists_message_id(audit_event, &id)
    );
    // An instance the fold does not know (another cell's, or never placed): nothing.
    let other = domain::InstanceId(uuid::Uuid::from_u128(77));
    assert!(s
        .close_period(begin, end, vec![("compute", vec![other])])
        .is_empty());
}

#[test]
fn a_deleted_instance_exists_for_its_last_period_then_is_forgotten() {
    let mut s = Scenario::placed(13, flavor("1", 1, 512, 1));
    s.complete();
    s.user(C::Delete, false);
    s.settle();
    let id = s.id();
    let deleted_at = s.now;
    assert!(s.fold.is_empty());
    // Closed after the delete, for a period the instance was active in.
    let n = s.close_period(
        deleted_at - 60_000_000,
        deleted_at + 1,
        vec![("compute", vec![id])],
    );
    assert_eq!(types(&n), ["instance.exists"]);
    assert_eq!(data(&n[0])["state"], "deleted");
    assert!(data(&n[0])["deleted_at"].is_string());
    // A period beginning after the delete cannot audit it (it was forgotten).
    let n = s.close_period(deleted_at + 1, deleted_at + 2, vec![("compute", vec![id])]);
    assert!(n.is_empty());
}

#[test]
fn no_valid_host_is_an_update_and_a_compute_task_error_then_a_local_delete() {
    let mut s = Scenario::buried(14, flavor("1", 1, 512, 1));
    let n = s.out.clone();
    assert_eq!(
        types(&n),
        ["instance.update", "compute_task.build_instances.error"]
    );
    let update = data(&n[0])["state_update"]["nova_object.data"].clone();
    assert_eq!(
        (update["old_state"].as_str(), update["state"].as_str()),
        (Some("building"), Some("error"))
    );
    let task = &n[1];
    assert_eq!(task.priority, "ERROR");
    assert_eq!(task.publisher_id, "nova-conductor:stratus");
    assert_eq!(task.project(), common::PROJECT);
    let d = data(task);
    assert_eq!(d["instance_uuid"], s.id().to_string());
    assert_eq!(d["state"], "error");
    assert_eq!(d["reason"]["nova_object.data"]["exception"], "NoValidHost");
    assert_eq!(
        d["request_spec"]["nova_object.data"]["project_id"],
        common::PROJECT
    );
    assert_eq!(
        d["request_spec"]["nova_object.data"]["flavor"]["nova_object.data"]["flavorid"],
        "1"
    );
    // Deleted from cell0 (no host): Nova's local delete, from the API.
    let n = s.user(C::Delete, false);
    assert_eq!(types(&n), ["instance.delete.start", "instance.delete.end"]);
    assert!(n.iter().all(|n| n.publisher_id == "nova-api:stratus"));
}

#[test]
fn rebuild_sends_the_current_periods_exists_first_as_novas_sample() {
    let mut s = Scenario::placed(15, flavor("1", 1, 512, 1));
    s.complete();
    let n = s.user(
        C::Rebuild(Box::new(domain::instance::Rebuild {
            image_ref: "a2459075-d96c-40d5-893e-577ff92e721c".into(),
            ..Default::default()
        })),
        false,
    );
    assert_eq!(types(&n), ["instance.exists", "instance.rebuild.start"]);
    assert_eq!(data(&n[0])["task_state"], "rebuilding");
    assert_eq!(n[0].publisher_id, "nova-compute:compute");
    assert_eq!(
        n[0].message_id,
        notifier::message_id(
            s.commits.last().unwrap().events[0].event_id,
            "instance.exists"
        )
    );
}
