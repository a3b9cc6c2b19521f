//! Server groups: quota counts, hard policies on placement, membership.

use std::collections::BTreeMap;

use domain::server_group::{
    decide, evolve, Policy, ProjectGroups, ServerGroup, ServerGroupCommand as C, TOO_MANY_GROUPS,
    TOO_MANY_MEMBERS,
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
                limit: 10
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
            assert_eq!(s.groups[&gid(1)].members[&iid(i)], Some(h(host)), "{name}");
        }
    }
    // Not a member, or group gone: nothing recorded, no refusal.
    let s = with(Policy::AntiAffinity, None, &[1]);
    assert_eq!(place(&s, 9, "a").unwrap(), s);
}
