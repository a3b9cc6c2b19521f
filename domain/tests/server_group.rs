//! Server groups: quota counts, hard policies on placement, membership.

use std::collections::BTreeMap;

mod common;

use domain::quota::Grace;
use domain::server_group::{
    decide, evolve, reconcile_member, MemberFix, MemberHosts, Policy, ProjectGroups, ServerGroup,
    ServerGroupCommand as C, ServerGroupEvent, TOO_MANY_GROUPS, TOO_MANY_MEMBERS,
};
use domain::{DomainError, HostName, InstanceId, ServerGroupId, Timestamp};
use uuid::Uuid;

fn gid(n: u128) -> ServerGroupId {
    ServerGroupId(Uuid::from_u128(n))
}

fn iid(n: u128) -> InstanceId {
    InstanceId(Uuid::from_u128(n))
}

fn h(s: &str) -> HostName {
    HostName::new(s).unwrap()
}

fn group(n: u128, policy: Policy, max: Option<u32>) -> ServerGroup {
    ServerGroup {
        id: gid(n),
        name: format!("g{n}"),
        project_id: "p".into(),
        user_id: "u".into(),
        policy,
        max_server_per_host: max,
        members: BTreeMap::new(),
        created_at: Timestamp(1),
    }
}

fn run(s: ProjectGroups, c: C) -> Result<ProjectGroups, DomainError> {
    Ok(decide(&s, c)?.iter().fold(s, evolve))
}

fn with(policy: Policy, max: Option<u32>, members: &[u128]) -> ProjectGroups {
    let s = run(
        ProjectGroups::default(),
        C::Create {
            group: group(1, policy, max),
            limit: 10,
        },
    )
    .unwrap();
    run(
        s,
        C::AddMembers {
            id: gid(1),
            instances: members.iter().map(|n| iid(*n)).collect(),
            limit: 10,
            at: Timestamp(5),
        },
    )
    .unwrap()
}

#[test]
fn server_groups_quota_is_counted_exactly() {
    let mut s = ProjectGroups::default();
    for n in 0..3 {
        s = run(
            s,
            C::Create {
                group: group(n, Policy::Affinity, None),
                limit: 3,
            },
        )
        .unwrap();
    }
    assert_eq!(
        run(
            s.clone(),
            C::Create {
                group: group(9, Policy::Affinity, None),
                limit: 3
            }
        ),
        Err(DomainError::Forbidden(TOO_MANY_GROUPS.into()))
    );
    // Unlimited, and room again after a delete.
    assert!(run(
        s.clone(),
        C::Create {
            group: group(9, Policy::Affinity, None),
            limit: -1
        }
    )
    .is_ok());
    let s = run(s, C::Delete { id: gid(0) }).unwrap();
    assert!(run(
        s.clone(),
        C::Create {
            group: group(9, Policy::Affinity, None),
            limit: 3
        }
    )
    .is_ok());
    assert!(matches!(
        run(s, C::Delete { id: gid(0) }),
        Err(DomainError::NotFound { .. })
    ));
}

#[test]
fn rules_only_for_anti_affinity() {
    let r = run(
        ProjectGroups::default(),
        C::Create {
            group: group(1, Policy::Affinity, Some(2)),
            limit: 10,
        },
    );
    assert_eq!(
        r,
        Err(DomainError::BadRequest(
            "Only anti-affinity policy supports rules.".into()
        ))
    );
}

#[test]
fn members_quota_and_idempotent_adds() {
    let s = with(Policy::AntiAffinity, None, &[1, 2]);
    let add = |s: ProjectGroups, ids: &[u128], limit| {
        run(
            s,
            C::AddMembers {
                id: gid(1),
                instances: ids.iter().map(|n| iid(*n)).collect(),
                limit,
                at: Timestamp(5),
            },
        )
    };
    assert_eq!(
        add(s.clone(), &[3, 4], 3),
        Err(DomainError::Forbidden(TOO_MANY_MEMBERS.into()))
    );
    let s3 = add(s.clone(), &[3], 3).unwrap();
    assert_eq!(s3.groups[&gid(1)].members.len(), 3);
    // Adding a member twice counts once.
    assert_eq!(add(s3.clone(), &[3], 3).unwrap(), s3);
    assert!(matches!(
        run(
            s,
            C::AddMembers {
                id: gid(7),
                instances: vec![iid(1)],
                limit: 10,
                at: Timestamp(5),
            }
        ),
        Err(DomainError::NotFound { .. })
    ));
    // Removing frees room.
    let s2 = run(
        s3,
        C::RemoveMembers {
            id: gid(1),
            instances: vec![iid(1)],
        },
    )
    .unwrap();
    assert!(add(s2, &[4], 3).is_ok());
}

#[test]
fn hard_policies_hold_on_placement_table() {
    let place = |s: &ProjectGroups, i, host: &str| {
        run(
            s.clone(),
            C::Place {
                id: gid(1),
                instance: iid(i),
                host: h(host),
            },
        )
    };
    // (policy, max, placements already made, the new placement, allowed)
    type Row = (
        &'static str,
        Policy,
        Option<u32>,
        Vec<(u128, &'static str)>,
        (u128, &'static str),
        bool,
    );
    let rows: Vec<Row> = vec![
        (
            "anti: first",
            Policy::AntiAffinity,
            None,
            vec![],
            (1, "a"),
            true,
        ),
        (
            "anti: other host",
            Policy::AntiAffinity,
            None,
            vec![(1, "a")],
            (2, "b"),
            true,
        ),
        (
            "anti: same host",
            Policy::AntiAffinity,
            None,
            vec![(1, "a")],
            (2, "a"),
            false,
        ),
        (
            "anti max 2: second",
            Policy::AntiAffinity,
            Some(2),
            vec![(1, "a")],
            (2, "a"),
            true,
        ),
        (
            "anti max 2: third",
            Policy::AntiAffinity,
            Some(2),
            vec![(1, "a"), (2, "a")],
            (3, "a"),
            false,
        ),
        (
            "anti: re-place itself",
            Policy::AntiAffinity,
            None,
            vec![(1, "a")],
            (1, "b"),
            true,
        ),
        (
            "affinity: first",
            Policy::Affinity,
            None,
            vec![],
            (1, "a"),
            true,
        ),
        (
            "affinity: same host",
            Policy::Affinity,
            None,
            vec![(1, "a")],
            (2, "a"),
            true,
        ),
        (
            "affinity: other host",
            Policy::Affinity,
            None,
            vec![(1, "a")],
            (2, "b"),
            false,
        ),
        (
            "soft anti: same host",
            Policy::SoftAntiAffinity,
            None,
            vec![(1, "a")],
            (2, "a"),
            true,
        ),
        (
            "soft affinity: other host",
            Policy::SoftAffinity,
            None,
            vec![(1, "a")],
            (2, "b"),
            true,
        ),
    ];
    for (name, policy, max, before, (i, host), ok) in rows {
        let mut s = with(policy, max, &[1, 2, 3]);
        for (m, hh) in before {
            s = place(&s, m, hh).unwrap();
        }
        let r = place(&s, i, host);
        assert_eq!(r.is_ok(), ok, "{name}: {r:?}");
        if let Ok(s) = r {
            let p = s.placement(&gid(1), &iid(i)).unwrap();
            assert!(
                p.host == Some(h(host)) || p.held.contains(&h(host)),
                "{name}: {p:?}"
            );
        }
    }
    // Not a member, or group gone: nothing recorded, no refusal.
    let s = with(Policy::AntiAffinity, None, &[1]);
    assert_eq!(place(&s, 9, "a").unwrap(), s);
}

fn place(s: &ProjectGroups, i: u128, host: &str) -> Result<ProjectGroups, DomainError> {
    run(
        s.clone(),
        C::Place {
            id: gid(1),
            instance: iid(i),
            host: h(host),
        },
    )
}

fn settle(s: &ProjectGroups, i: u128, host: Option<&str>) -> ProjectGroups {
    let seen = s.placement(&gid(1), &iid(i)).unwrap();
    run(
        s.clone(),
        C::Settle {
            id: gid(1),
            instance: iid(i),
            host: host.map(h),
            seen,
        },
    )
    .unwrap()
}

fn placement(host: Option<&str>, held: &[&str]) -> MemberHosts {
    MemberHosts {
        host: host.map(h),
        held: held.iter().map(|x| h(x)).collect(),
    }
}

/// A placed member placed again (a move, or a second decision racing on its build)
/// holds both hosts: each counts against the hard policy until the member is settled
/// where its instance is (confirm: the destination; revert: the source).
#[test]
fn a_move_holds_both_hosts_until_settled() {
    let s = with(Policy::AntiAffinity, None, &[1, 2, 3]);
    let s = place(&s, 1, "a").unwrap();
    let s = place(&s, 2, "b").unwrap();
    // Member 1 moves to c: recorded on a, holding c.
    let moving = place(&s, 1, "c").unwrap();
    assert_eq!(
        moving.placement(&gid(1), &iid(1)).unwrap(),
        placement(Some("a"), &["c"])
    );
    // Both a (source) and c (destination) are taken for member 3; d is free.
    assert!(place(&moving, 3, "a").is_err());
    assert!(place(&moving, 3, "c").is_err());
    assert!(place(&moving, 3, "d").is_ok());
    // The move can not go where another member is.
    assert!(place(&s, 1, "b").is_err());
    // Placing it again where it already counts records nothing.
    assert_eq!(place(&moving, 1, "c").unwrap(), moving);
    assert_eq!(place(&moving, 1, "a").unwrap(), moving);
    // Confirmed: on c only; a is free again.
    let confirmed = settle(&moving, 1, Some("c"));
    assert_eq!(
        confirmed.placement(&gid(1), &iid(1)).unwrap(),
        placement(Some("c"), &[])
    );
    assert!(place(&confirmed, 3, "a").is_ok());
    assert!(place(&confirmed, 3, "c").is_err());
    // Reverted: on a only; c is free again.
    let reverted = settle(&moving, 1, Some("a"));
    assert_eq!(
        reverted.placement(&gid(1), &iid(1)).unwrap(),
        placement(Some("a"), &[])
    );
    assert!(place(&reverted, 3, "c").is_ok());
    assert!(place(&reverted, 3, "a").is_err());
    // Offloaded (no host): counts nowhere.
    let offloaded = settle(&reverted, 1, None);
    assert!(place(&offloaded, 3, "a").is_ok());
    // Affinity: a member holding another host keeps the others off both.
    let s = with(Policy::Affinity, None, &[1, 2]);
    let s = place(&s, 1, "a").unwrap();
    let moving = place(&s, 1, "b").unwrap();
    assert!(place(&moving, 2, "a").is_err());
    assert!(place(&moving, 2, "b").is_err());
    assert!(place(&settle(&moving, 1, Some("b")), 2, "b").is_ok());
}

/// A settle applies only to the placement it was decided on: a hold recorded since
/// (a move the settling reactor did not see) survives it.
#[test]
fn settle_is_a_compare_and_set() {
    let s = with(Policy::AntiAffinity, None, &[1, 2]);
    let s = place(&s, 1, "a").unwrap();
    let stale = s.placement(&gid(1), &iid(1)).unwrap();
    let moving = place(&s, 1, "c").unwrap();
    let cmd = C::Settle {
        id: gid(1),
        instance: iid(1),
        host: Some(h("a")),
        seen: stale,
    };
    assert_eq!(decide(&moving, cmd).unwrap(), vec![]);
    // Already settled, or not a member: nothing.
    let cmd = C::Settle {
        id: gid(1),
        instance: iid(1),
        host: Some(h("a")),
        seen: placement(Some("a"), &[]),
    };
    assert_eq!(decide(&s, cmd).unwrap(), vec![]);
    let cmd = C::Settle {
        id: gid(1),
        instance: iid(9),
        host: None,
        seen: MemberHosts::default(),
    };
    assert_eq!(decide(&s, cmd).unwrap(), vec![]);
    // Removal and group deletion drop holds and join times with the member.
    let gone = run(
        moving.clone(),
        C::RemoveMembers {
            id: gid(1),
            instances: vec![iid(1)],
        },
    )
    .unwrap();
    assert!(gone.held.is_empty() && !gone.joined.contains_key(&iid(1)));
    let deleted = run(moving, C::Delete { id: gid(1) }).unwrap();
    assert!(deleted.held.is_empty() && deleted.joined.is_empty());
}

/// Joins record their time (the command's) in the group state.
#[test]
fn joins_record_their_time() {
    let s = with(Policy::AntiAffinity, None, &[1, 2]);
    assert_eq!(s.joined[&iid(1)], Timestamp(5));
    // The older `members_added` (no time) folds to a member with no join time.
    let s = evolve(
        s,
        &ServerGroupEvent::MembersAdded {
            id: gid(1),
            instances: vec![iid(3)],
        },
    );
    assert!(s.groups[&gid(1)].members.contains_key(&iid(3)));
    assert!(!s.joined.contains_key(&iid(3)));
}

/// What the membership reactor records, table-tested on real instance states.
#[test]
fn reconcile_member_table() {
    use common::World;
    let secs = |n: i64| Timestamp(n * 1_000_000);
    let grace = Grace(60);
    let on = |host: &str| placement(Some(host), &[]);
    let active = World::active(); // on compute-1
    let mut deleted = World::active();
    deleted.when(domain::instance::InstanceCommand::Delete).ok();
    deleted.complete().ok();
    assert!(deleted.i().deleted);
    let scheduling = World::created(Default::default());
    let resized = World::resized(); // VERIFY_RESIZE on compute-2, from compute-1
    let mut confirmed = World::resized();
    confirmed
        .when(domain::instance::InstanceCommand::ConfirmResize)
        .ok();
    let mut reverted = World::resized();
    reverted
        .when(domain::instance::InstanceCommand::RevertResize)
        .ok();
    reverted.complete().ok();
    let offloaded = World::shelved_offloaded();
    let moving = placement(Some("compute-1"), &["compute-2"]);
    type Row<'a> = (
        &'a str,
        MemberHosts,
        Option<i64>,
        Option<&'a World>,
        i64,
        Option<MemberFix>,
    );
    let rows: Vec<Row> = vec![
        (
            "unseen, in grace",
            MemberHosts::default(),
            Some(100),
            None,
            160,
            None,
        ),
        (
            "unseen, grace passed",
            MemberHosts::default(),
            Some(100),
            None,
            161,
            Some(MemberFix::Remove),
        ),
        (
            "unseen, join time unknown",
            MemberHosts::default(),
            None,
            None,
            10_000,
            None,
        ),
        (
            "deleted",
            on("compute-1"),
            Some(100),
            Some(&deleted),
            101,
            Some(MemberFix::Remove),
        ),
        (
            "scheduling",
            MemberHosts::default(),
            Some(100),
            Some(&scheduling),
            10_000,
            None,
        ),
        (
            "at rest, right",
            on("compute-1"),
            Some(100),
            Some(&active),
            10_000,
            None,
        ),
        (
            "at rest, racing hold",
            moving.clone(),
            Some(100),
            Some(&active),
            101,
            Some(MemberFix::Settle(Some(h("compute-1")))),
        ),
        (
            "at rest, recorded elsewhere",
            on("compute-9"),
            Some(100),
            Some(&active),
            101,
            Some(MemberFix::Settle(Some(h("compute-1")))),
        ),
        (
            "resize in progress",
            moving.clone(),
            Some(100),
            Some(&resized),
            101,
            None,
        ),
        (
            "resize confirmed",
            moving.clone(),
            Some(100),
            Some(&confirmed),
            101,
            Some(MemberFix::Settle(Some(h("compute-2")))),
        ),
        (
            "resize reverted",
            moving.clone(),
            Some(100),
            Some(&reverted),
            101,
            Some(MemberFix::Settle(Some(h("compute-1")))),
        ),
        (
            "offloaded",
            on("compute-1"),
            Some(100),
            Some(&offloaded),
            101,
            Some(MemberFix::Settle(None)),
        ),
    ];
    for (name, seen, joined, inst, now, want) in rows {
        let got = reconcile_member(
            &seen,
            joined.map(secs),
            inst.map(|w| w.i()),
            secs(now),
            grace,
        );
        assert_eq!(got, want, "{name}");
    }
}
