//! Given / when / then tests of the security group aggregate.

use uuid::Uuid;

use super::*;

fn gid() -> SecurityGroupId {
    SecurityGroupId(Uuid::from_u128(1))
}

fn rid(n: u128) -> SecurityGroupRuleId {
    SecurityGroupRuleId(Uuid::from_u128(100 + n))
}

fn new_group(is_default: bool) -> NewGroup {
    NewGroup {
        id: gid(),
        name: if is_default { "default" } else { "web" }.into(),
        description: String::new(),
        project_id: "p1".into(),
        stateful: true,
        is_default,
        rule_ids: [rid(1), rid(2), rid(3), rid(4)],
    }
}

fn rule(n: u128) -> RuleRequest {
    RuleRequest {
        id: rid(10 + n),
        project_id: "p1".into(),
        direction: Direction::Ingress,
        ethertype: Ethertype::IPv4,
        protocol: Some("tcp".into()),
        port_range_min: Some(22),
        port_range_max: Some(22),
        remote_ip_prefix: None,
        remote_group_id: None,
        description: String::new(),
    }
}

/// Folds the events of `cmds` from nothing, each decided on the state before it.
fn given(cmds: Vec<SecurityGroupCommand>) -> Option<SecurityGroup> {
    let mut state = None;
    for (i, c) in cmds.into_iter().enumerate() {
        let evs = decide(gid(), state.as_ref(), c, Timestamp(i as i64 + 1)).expect("given");
        for e in &evs {
            state = evolve(state, e);
        }
    }
    state
}

fn when(state: &Option<SecurityGroup>, cmd: SecurityGroupCommand) -> Decided {
    decide(gid(), state.as_ref(), cmd, Timestamp(100))
}

fn kind(d: Decided) -> &'static str {
    d.expect_err("refused").kind
}

#[test]
fn a_default_group_starts_with_neutrons_four_rules() {
    let g = given(vec![SecurityGroupCommand::Create(new_group(true))]).unwrap();
    let rules = g.rules_in_order();
    assert_eq!(rules.len(), 4);
    let ingress: Vec<_> = rules
        .iter()
        .filter(|r| r.direction == Direction::Ingress)
        .collect();
    assert_eq!(ingress.len(), 2);
    assert!(ingress.iter().all(|r| r.remote_group_id == Some(gid())));
    assert!(rules
        .iter()
        .filter(|r| r.direction == Direction::Egress)
        .all(|r| r.remote_group_id.is_none() && r.protocol.is_none()));
}

#[test]
fn another_group_starts_with_the_egress_rules_only() {
    let g = given(vec![SecurityGroupCommand::Create(new_group(false))]).unwrap();
    assert_eq!(g.rules.len(), 2);
    assert!(g.rules.values().all(|r| r.direction == Direction::Egress));
}

#[test]
fn a_second_default_create_is_refused_as_existing() {
    let s = given(vec![SecurityGroupCommand::Create(new_group(true))]);
    assert_eq!(
        kind(when(&s, SecurityGroupCommand::Create(new_group(true)))),
        "SecurityGroupDefaultAlreadyExists"
    );
}

#[test]
fn a_deleted_default_group_is_created_again() {
    let s = given(vec![
        SecurityGroupCommand::Create(new_group(true)),
        SecurityGroupCommand::Delete,
    ]);
    assert!(s.as_ref().unwrap().deleted);
    let evs = when(&s, SecurityGroupCommand::Create(new_group(true))).unwrap();
    let g = evolve(s, &evs[0]).unwrap();
    assert!(!g.deleted);
    assert_eq!(g.rules.len(), 4);
}

#[test]
fn a_duplicate_rule_names_the_existing_one() {
    let s = given(vec![
        SecurityGroupCommand::Create(new_group(false)),
        SecurityGroupCommand::CreateRules(vec![rule(1)]),
    ]);
    let mut same = rule(2);
    same.protocol = Some("6".into());
    let e = when(&s, SecurityGroupCommand::CreateRules(vec![same])).unwrap_err();
    assert_eq!(e.kind, "SecurityGroupRuleExists");
    assert_eq!(
        e.message,
        format!(
            "Security group rule already exists. Rule id is {}.",
            rid(11)
        )
    );
}

#[test]
fn an_anywhere_prefix_duplicates_no_prefix() {
    let s = given(vec![SecurityGroupCommand::Create(new_group(false))]);
    let mut r = rule(1);
    r.direction = Direction::Egress;
    r.protocol = None;
    r.port_range_min = None;
    r.port_range_max = None;
    r.remote_ip_prefix = Some(Cidr::parse("0.0.0.0/0").unwrap());
    assert_eq!(
        kind(when(&s, SecurityGroupCommand::CreateRules(vec![r]))),
        "SecurityGroupRuleExists"
    );
}

#[test]
fn port_ranges_follow_neutron() {
    let s = given(vec![SecurityGroupCommand::Create(new_group(false))]);
    type Case<'a> = (Option<&'a str>, Option<u16>, Option<u16>, &'a str);
    let cases: Vec<Case> = vec![
        (
            Some("tcp"),
            Some(80),
            Some(79),
            "SecurityGroupInvalidPortRange",
        ),
        (Some("tcp"), None, Some(6), "SecurityGroupInvalidPortRange"),
        (
            Some("udp"),
            Some(0),
            Some(6),
            "SecurityGroupInvalidPortValue",
        ),
        (
            Some("icmp"),
            Some(300),
            Some(1),
            "SecurityGroupInvalidIcmpValue",
        ),
        (
            Some("icmp"),
            Some(1),
            Some(256),
            "SecurityGroupInvalidIcmpValue",
        ),
        (Some("icmp"), None, Some(6), "SecurityGroupMissingIcmpType"),
        (
            Some("gre"),
            Some(1),
            Some(2),
            "SecurityGroupInvalidProtocolForPort",
        ),
        (
            None,
            Some(1),
            Some(2),
            "SecurityGroupProtocolRequiredWithPorts",
        ),
    ];
    for (p, min, max, want) in cases {
        let mut r = rule(1);
        r.protocol = p.map(String::from);
        r.port_range_min = min;
        r.port_range_max = max;
        assert_eq!(
            kind(when(&s, SecurityGroupCommand::CreateRules(vec![r]))),
            want,
            "{p:?} {min:?} {max:?}"
        );
    }
}

#[test]
fn the_full_range_and_ipv6_icmp_are_canonical() {
    let mut r = rule(1);
    r.port_range_min = Some(1);
    r.port_range_max = Some(65535);
    let n = normalise_rule(r).unwrap();
    assert_eq!((n.port_range_min, n.port_range_max), (None, None));
    let mut r = rule(1);
    r.ethertype = Ethertype::IPv6;
    r.protocol = Some("icmp".into());
    r.port_range_min = Some(128);
    r.port_range_max = None;
    assert_eq!(
        normalise_rule(r).unwrap().protocol.as_deref(),
        Some("ipv6-icmp")
    );
}

#[test]
fn a_prefix_must_match_the_ethertype_and_be_the_only_remote() {
    let mut r = rule(1);
    r.remote_ip_prefix = Some(convert_prefix("2001:db8::/64").unwrap());
    assert_eq!(
        normalise_rule(r).unwrap_err().message,
        "Conflicting value ethertype IPv4 for CIDR 2001:db8::/64"
    );
    let mut r = rule(1);
    r.remote_ip_prefix = Some(convert_prefix("10.0.0.0/8").unwrap());
    r.remote_group_id = Some(gid());
    assert_eq!(
        normalise_rule(r).unwrap_err().kind,
        "SecurityGroupMultipleRemoteEntites"
    );
    let mut r = rule(1);
    r.protocol = Some("ipv6-icmp".into());
    r.port_range_min = None;
    r.port_range_max = None;
    assert_eq!(
        normalise_rule(r).unwrap_err().kind,
        "SecurityGroupEthertypeConflictWithProtocol"
    );
}

#[test]
fn a_prefix_keeps_its_host_bits_and_normalises_apart() {
    let c = convert_prefix("10.1.2.3/24").unwrap();
    assert_eq!(c.to_string(), "10.1.2.3/24");
    assert_eq!(c.normalised().to_string(), "10.1.2.0/24");
    assert_eq!(
        convert_prefix("10.0.0.5").unwrap().to_string(),
        "10.0.0.5/32"
    );
    for bad in ["192.168.1./24", "192.168.1.1/33", "bad_prefix", "256"] {
        assert_eq!(convert_prefix(bad).unwrap_err().kind, "InvalidCIDR");
    }
}

#[test]
fn protocols_convert_as_neutron_does() {
    assert_eq!(
        convert_protocol(Some("TCP")).unwrap().as_deref(),
        Some("tcp")
    );
    assert_eq!(convert_protocol(Some("17")).unwrap().as_deref(), Some("17"));
    assert_eq!(convert_protocol(Some("any")).unwrap(), None);
    assert_eq!(convert_protocol(None).unwrap(), None);
    assert_eq!(
        convert_protocol(Some("256")).unwrap_err().kind,
        "SecurityGroupRuleInvalidProtocol"
    );
    assert_eq!(
        convert_protocol(Some("bad_protocol_name"))
            .unwrap_err()
            .kind,
        "SecurityGroupRuleInvalidProtocol"
    );
    assert_eq!(convert_ethertype("ipv6").unwrap(), Ethertype::IPv6);
    assert!(convert_ethertype("bad").is_err());
}

#[test]
fn the_default_group_keeps_its_name() {
    let s = given(vec![SecurityGroupCommand::Create(new_group(true))]);
    let patch = GroupPatch {
        name: Some("x".into()),
        ..GroupPatch::default()
    };
    assert_eq!(
        kind(when(&s, SecurityGroupCommand::Update(patch))),
        "SecurityGroupCannotUpdateDefault"
    );
    let s = given(vec![SecurityGroupCommand::Create(new_group(false))]);
    let patch = GroupPatch {
        name: Some("Default".into()),
        ..GroupPatch::default()
    };
    assert_eq!(
        kind(when(&s, SecurityGroupCommand::Update(patch))),
        "SecurityGroupDefaultAlreadyExists"
    );
}

#[test]
fn rules_are_deleted_once_and_with_their_group() {
    let s = given(vec![
        SecurityGroupCommand::Create(new_group(false)),
        SecurityGroupCommand::CreateRules(vec![rule(1)]),
        SecurityGroupCommand::DeleteRule { id: rid(11) },
    ]);
    assert_eq!(
        kind(when(&s, SecurityGroupCommand::DeleteRule { id: rid(11) })),
        "SecurityGroupRuleNotFound"
    );
    let s = given(vec![
        SecurityGroupCommand::Create(new_group(false)),
        SecurityGroupCommand::Delete,
    ]);
    assert!(s.as_ref().unwrap().rules.is_empty());
    assert_eq!(
        kind(when(&s, SecurityGroupCommand::Delete)),
        "SecurityGroupNotFound"
    );
}

#[test]
fn a_bulk_create_is_all_or_nothing_and_refuses_its_own_duplicates() {
    let s = given(vec![SecurityGroupCommand::Create(new_group(false))]);
    let mut other = rule(2);
    other.port_range_min = Some(80);
    other.port_range_max = Some(80);
    let evs = when(&s, SecurityGroupCommand::CreateRules(vec![rule(1), other])).unwrap();
    assert_eq!(evs.len(), 3);
    let mut g = s.clone();
    for e in &evs {
        g = evolve(g, e);
    }
    let g = g.unwrap();
    assert_eq!(g.rules.len(), 4);
    assert_eq!(g.spec.revision, 2, "the group is revised once");
    assert_eq!(
        kind(when(
            &s,
            SecurityGroupCommand::CreateRules(vec![rule(1), rule(2)])
        )),
        "DuplicateSecurityGroupRuleInPost"
    );
    let mut bad = rule(3);
    bad.port_range_min = Some(90);
    bad.port_range_max = Some(80);
    assert_eq!(
        kind(when(
            &s,
            SecurityGroupCommand::CreateRules(vec![rule(1), bad])
        )),
        "SecurityGroupInvalidPortRange"
    );
}
