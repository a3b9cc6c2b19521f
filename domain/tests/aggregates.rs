//! Host aggregates and availability zones: given events, when a command, then events or
//! Nova's refusal.

use std::collections::{BTreeMap, BTreeSet};

use domain::aggregate::{
    self, AggregateCommand as C, AggregateEvent as E, AggregateId, AggregateSet, HostFacts,
};
use domain::{Ctx, DomainError, HostName, Timestamp};

/// Known hosts and their instance counts.
#[derive(Default)]
struct Facts {
    hosts: BTreeSet<String>,
    instances: BTreeMap<String, usize>,
}

impl HostFacts for Facts {
    fn exists(&self, host: &HostName) -> bool {
        self.hosts.contains(host.as_str())
    }
    fn instances_on(&self, host: &HostName) -> usize {
        self.instances.get(host.as_str()).copied().unwrap_or(0)
    }
}

fn facts(hosts: &[&str]) -> Facts {
    Facts {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        instances: BTreeMap::new(),
    }
}

fn ctx(n: i64) -> Ctx {
    Ctx {
        now: Timestamp(n),
        is_admin: true,
        user_id: "admin".into(),
        project_id: "admin".into(),
        op_id: uuid::Uuid::from_u128(n as u128),
    }
}

fn h(n: &str) -> HostName {
    HostName::new(n).unwrap()
}

fn id(n: u64) -> AggregateId {
    AggregateId(n)
}

/// Decides `cmd` on `set` and folds the events in (the way the engine and views do).
fn run(set: &AggregateSet, cmd: C, f: &Facts) -> Result<AggregateSet, DomainError> {
    let evs = aggregate::decide(set, cmd, f, &ctx(10))?;
    Ok(evs.iter().fold(set.clone(), aggregate::evolve))
}

fn create(set: &AggregateSet, name: &str, az: Option<&str>) -> AggregateSet {
    run(
        set,
        C::Create {
            name: name.into(),
            availability_zone: az.map(str::to_string),
        },
        &Facts::default(),
    )
    .unwrap()
}

fn add(set: &AggregateSet, agg: u64, host: &str, f: &Facts) -> Result<AggregateSet, DomainError> {
    run(
        set,
        C::AddHost {
            id: id(agg),
            host: h(host),
        },
        f,
    )
}

#[test]
fn create_gives_increasing_ids_and_the_zone_as_metadata() {
    let evs = aggregate::decide(
        &AggregateSet::default(),
        C::Create {
            name: "agg1".into(),
            availability_zone: Some("az1".into()),
        },
        &Facts::default(),
        &ctx(5),
    )
    .unwrap();
    assert_eq!(
        evs,
        vec![E::Created {
            id: id(1),
            uuid: uuid::Uuid::from_u128(5),
            name: "agg1".into(),
            availability_zone: Some("az1".into()),
            at: Timestamp(5),
        }]
    );
    let set = evs.iter().fold(AggregateSet::default(), aggregate::evolve);
    let a = set.get(id(1)).unwrap();
    assert_eq!(a.availability_zone(), Some("az1"));
    assert_eq!(a.metadata.get("availability_zone").unwrap(), "az1");
    let set = create(&set, "agg2", None);
    assert_eq!(set.get(id(2)).unwrap().availability_zone(), None);
    // Ids are never reused after a delete.
    let set = run(&set, C::Delete { id: id(2) }, &Facts::default()).unwrap();
    let set = create(&set, "agg3", None);
    assert!(set.get(id(3)).is_some());
}

#[test]
fn names_are_unique_on_create_and_update() {
    let set = create(&AggregateSet::default(), "agg1", None);
    let set = create(&set, "agg2", None);
    let e = run(
        &set,
        C::Create {
            name: "agg1".into(),
            availability_zone: None,
        },
        &Facts::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        DomainError::Conflict("Aggregate agg1 already exists.".into())
    );
    let e = run(
        &set,
        C::Update {
            id: id(2),
            name: Some("agg1".into()),
            availability_zone: None,
        },
        &Facts::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        DomainError::Conflict("Aggregate agg1 already exists.".into())
    );
    // Renaming to its own name is fine.
    run(
        &set,
        C::Update {
            id: id(1),
            name: Some("agg1".into()),
            availability_zone: None,
        },
        &Facts::default(),
    )
    .unwrap();
}

#[test]
fn unknown_aggregates_and_hosts_are_not_found() {
    let set = create(&AggregateSet::default(), "agg1", None);
    let e = run(&set, C::Delete { id: id(9) }, &Facts::default()).unwrap_err();
    assert_eq!(e.to_string(), "Aggregate 9 could not be found.");
    let e = add(&set, 1, "ghost", &facts(&["host1"])).unwrap_err();
    assert_eq!(e.to_string(), "Compute host ghost could not be found.");
    let e = add(&set, 9, "host1", &facts(&["host1"])).unwrap_err();
    assert_eq!(e.to_string(), "Aggregate 9 could not be found.");
    let e = run(
        &set,
        C::RemoveHost {
            id: id(1),
            host: h("host1"),
        },
        &facts(&["host1"]),
    )
    .unwrap_err();
    assert!(matches!(e, DomainError::NotFound { .. }), "{e:?}");
}

#[test]
fn a_host_is_added_once_and_removed() {
    let f = facts(&["host1"]);
    let set = create(&AggregateSet::default(), "agg1", Some("az1"));
    let set = add(&set, 1, "host1", &f).unwrap();
    assert_eq!(set.get(id(1)).unwrap().hosts, vec![h("host1")]);
    assert_eq!(set.zone_of(&h("host1")), Some("az1"));
    let e = add(&set, 1, "host1", &f).unwrap_err();
    assert_eq!(
        e,
        DomainError::Conflict("Aggregate 1 already has host host1.".into())
    );
    let set = run(
        &set,
        C::RemoveHost {
            id: id(1),
            host: h("host1"),
        },
        &f,
    )
    .unwrap();
    assert!(set.get(id(1)).unwrap().hosts.is_empty());
    assert_eq!(set.zone_of(&h("host1")), None);
}

#[test]
fn forgetting_a_host_takes_it_out_of_every_aggregate() {
    let f = facts(&["host1", "host2"]);
    let set = create(&AggregateSet::default(), "agg1", Some("az1"));
    let set = create(&set, "agg2", None);
    let set = create(&set, "agg3", None);
    let set = add(&set, 1, "host1", &f).unwrap();
    let set = add(&set, 2, "host1", &f).unwrap();
    let set = add(&set, 2, "host2", &f).unwrap();
    let set = add(&set, 3, "host2", &f).unwrap();
    let forget = |host: &str| C::ForgetHost { host: h(host) };
    let evs = aggregate::decide(&set, forget("host1"), &f, &ctx(11)).unwrap();
    assert_eq!(
        evs,
        vec![
            E::HostRemoved {
                id: id(1),
                host: h("host1"),
                at: Timestamp(11)
            },
            E::HostRemoved {
                id: id(2),
                host: h("host1"),
                at: Timestamp(11)
            },
        ]
    );
    let set = run(&set, forget("host1"), &f).unwrap();
    assert!(set.get(id(1)).unwrap().hosts.is_empty());
    assert_eq!(set.get(id(2)).unwrap().hosts, vec![h("host2")]);
    assert_eq!(set.get(id(3)).unwrap().hosts, vec![h("host2")]);
    assert_eq!(set.zone_of(&h("host1")), None);
    // Nothing left to remove (a retried service delete), and a host that is no longer a
    // known compute host is still forgotten without a refusal.
    assert_eq!(
        aggregate::decide(&set, forget("host1"), &f, &ctx(12)),
        Ok(vec![])
    );
    let evs = aggregate::decide(&set, forget("host2"), &facts(&[]), &ctx(12)).unwrap();
    assert_eq!(evs.len(), 2);
}

#[test]
fn a_host_is_in_at_most_one_zone() {
    let f = facts(&["host1"]);
    let set = create(&AggregateSet::default(), "agg1", Some("az1"));
    let set = create(&set, "agg2", Some("az2"));
    let set = create(&set, "agg3", Some("az1"));
    let set = create(&set, "plain", None);
    let set = add(&set, 1, "host1", &f).unwrap();
    let e = add(&set, 2, "host1", &f).unwrap_err();
    assert_eq!(
        e,
        DomainError::Conflict(
            "Cannot add host to aggregate 2. Reason: One or more hosts already in availability zone(s) ['az1']."
                .into()
        )
    );
    // Same zone, or no zone: fine.
    let set = add(&set, 3, "host1", &f).unwrap();
    let set = add(&set, 4, "host1", &f).unwrap();
    // Re-zoning an aggregate whose host is in another zoned aggregate is refused.
    let e = run(
        &set,
        C::Update {
            id: id(1),
            name: None,
            availability_zone: Some(Some("az9".into())),
        },
        &f,
    )
    .unwrap_err();
    assert_eq!(
        e,
        DomainError::BadRequest(
            "Cannot update aggregate 1. Reason: One or more hosts already in availability zone(s) ['az1']."
                .into()
        )
    );
    let e = run(
        &set,
        C::SetMetadata {
            id: id(4),
            metadata: BTreeMap::from([("availability_zone".into(), Some("az9".into()))]),
        },
        &f,
    )
    .unwrap_err();
    assert_eq!(
        e,
        DomainError::BadRequest(
            "Cannot update metadata of aggregate 4. Reason: One or more hosts already in availability zone(s) ['az1', 'az1']."
                .into()
        )
    );
}

#[test]
fn an_empty_zone_name_is_refused() {
    let set = create(&AggregateSet::default(), "agg1", Some("az1"));
    let e = run(
        &set,
        C::Update {
            id: id(1),
            name: None,
            availability_zone: Some(None),
        },
        &Facts::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        DomainError::BadRequest(
            "Cannot update aggregate 1. Reason: Aggregate agg1 does not support empty named availability zone."
                .into()
        )
    );
    let e = run(
        &set,
        C::SetMetadata {
            id: id(1),
            metadata: BTreeMap::from([("availability_zone".into(), None)]),
        },
        &Facts::default(),
    )
    .unwrap_err();
    assert!(e
        .to_string()
        .starts_with("Cannot update metadata of aggregate 1."));
}

#[test]
fn hosts_with_instances_keep_their_zone() {
    let mut f = facts(&["host1"]);
    f.instances.insert("host1".into(), 2);
    let set = create(&AggregateSet::default(), "agg1", Some("az1"));
    let set = create(&set, "plain", None);
    let e = add(&set, 1, "host1", &f).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "Cannot add host to aggregate 1. Reason: The host cannot be added to the aggregate as the availability zone of the host would change from 'None' to 'az1' but the host already has 2 instance(s)."
        ),
        "{e}"
    );
    // An aggregate without zone changes no zone.
    let set = add(&set, 2, "host1", &f).unwrap();
    // Zoned while empty of instances, then instances arrive: the zone is pinned.
    let empty = facts(&["host1"]);
    let set = add(&set, 1, "host1", &empty).unwrap();
    let e = run(
        &set,
        C::RemoveHost {
            id: id(1),
            host: h("host1"),
        },
        &f,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Cannot remove host from aggregate 1. Reason: The host cannot be removed from the aggregate as the availability zone of the host would change from 'az1' to 'None'"),
        "{e}"
    );
    let e = run(
        &set,
        C::Update {
            id: id(1),
            name: None,
            availability_zone: Some(Some("az2".into())),
        },
        &f,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Cannot update aggregate 1. Reason: One or more hosts contain instances in this zone."
    );
    // The same zone again is not a change.
    run(
        &set,
        C::Update {
            id: id(1),
            name: None,
            availability_zone: Some(Some("az1".into())),
        },
        &f,
    )
    .unwrap();
}

#[test]
fn only_empty_aggregates_are_deleted() {
    let f = facts(&["host1"]);
    let set = create(&AggregateSet::default(), "agg1", None);
    let set = add(&set, 1, "host1", &f).unwrap();
    let e = run(&set, C::Delete { id: id(1) }, &f).unwrap_err();
    assert_eq!(
        e,
        DomainError::BadRequest(
            "Cannot remove host from aggregate 1. Reason: Host aggregate is not empty.".into()
        )
    );
    let set = run(
        &set,
        C::RemoveHost {
            id: id(1),
            host: h("host1"),
        },
        &f,
    )
    .unwrap();
    let set = run(&set, C::Delete { id: id(1) }, &f).unwrap();
    assert!(set.aggregates.is_empty());
    // The name is free again.
    create(&set, "agg1", None);
}

#[test]
fn set_metadata_sets_and_null_deletes() {
    let set = create(&AggregateSet::default(), "agg1", Some("az1"));
    let set = run(
        &set,
        C::SetMetadata {
            id: id(1),
            metadata: BTreeMap::from([
                ("k".into(), Some("v".into())),
                ("x".into(), Some("y".into())),
            ]),
        },
        &Facts::default(),
    )
    .unwrap();
    let set = run(
        &set,
        C::SetMetadata {
            id: id(1),
            metadata: BTreeMap::from([("x".into(), None), ("absent".into(), None)]),
        },
        &Facts::default(),
    )
    .unwrap();
    let a = set.get(id(1)).unwrap();
    assert_eq!(
        a.metadata,
        BTreeMap::from([
            ("availability_zone".to_string(), "az1".to_string()),
            ("k".to_string(), "v".to_string())
        ])
    );
    assert_eq!(a.updated_at, Some(Timestamp(10)));
    // set_metadata may move an empty aggregate to another zone.
    let set = run(
        &set,
        C::SetMetadata {
            id: id(1),
            metadata: BTreeMap::from([("availability_zone".into(), Some("az2".into()))]),
        },
        &Facts::default(),
    )
    .unwrap();
    assert_eq!(set.get(id(1)).unwrap().availability_zone(), Some("az2"));
}

#[test]
fn names_and_zone_names_follow_novas_formats() {
    for (name, ok) in [
        ("a", true),
        (" a", false),
        ("a ", false),
        ("", false),
        ("a\tb", false),
    ] {
        assert_eq!(aggregate::valid_name(name), ok, "{name:?}");
    }
    assert!(aggregate::valid_zone_name("london"));
    assert!(!aggregate::valid_zone_name("a:b"));
    let e = run(
        &AggregateSet::default(),
        C::Create {
            name: "agg".into(),
            availability_zone: Some("a:b".into()),
        },
        &Facts::default(),
    )
    .unwrap_err();
    assert!(matches!(e, DomainError::BadRequest(_)));
}
