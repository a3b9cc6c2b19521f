//! Given / when / then tests of the network aggregate.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nid() -> NetworkId {
    NetworkId(Uuid::from_u128(1))
}

fn spec() -> NetworkSpec {
    NetworkSpec {
        id: nid(),
        name: "private".into(),
        description: String::new(),
        project_id: "p1".into(),
        admin_state_up: true,
        shared: false,
        external: false,
        mtu: DEFAULT_MTU,
        port_security_enabled: true,
        tags: vec![],
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        revision: 0,
    }
}

fn subnet_req(n: u128, cidr: &str) -> SubnetRequest {
    let cidr = Cidr::parse(cidr).unwrap();
    SubnetRequest {
        id: SubnetId(Uuid::from_u128(n)),
        name: String::new(),
        description: String::new(),
        project_id: "p1".into(),
        ip_version: cidr.version(),
        cidr,
        gateway: GatewayRequest::Default,
        allocation_pools: None,
        enable_dhcp: true,
        dns_nameservers: vec![],
        host_routes: vec![],
        ipv6_ra_mode: None,
        ipv6_address_mode: None,
        subnetpool_id: None,
    }
}

fn port_req(n: u128) -> PortRequest {
    PortRequest {
        id: PortId(Uuid::from_u128(1000 + n)),
        name: String::new(),
        description: String::new(),
        project_id: "p1".into(),
        fixed_ips: None,
        mac_address: None,
        mac_candidates: vec![format!("fa:16:3e:00:{:02x}:{:02x}", n / 256, n % 256)],
        device_id: String::new(),
        device_owner: String::new(),
        admin_state_up: true,
        security_groups: vec![],
        port_security_enabled: None,
        allowed_address_pairs: vec![],
        binding_host: String::new(),
        binding_vnic_type: "normal".into(),
        binding_profile: "{}".into(),
        tags: vec![],
    }
}

/// Decides and folds; panics on a refusal.
fn run(state: Option<Network>, cmd: NetworkCommand) -> Network {
    let evs = decide(nid(), state.as_ref(), cmd, Timestamp(2)).unwrap();
    let out = evs.iter().fold(state, evolve).unwrap();
    out.check().unwrap();
    out
}

fn refused(state: &Network, cmd: NetworkCommand) -> NetError {
    decide(nid(), Some(state), cmd, Timestamp(2)).unwrap_err()
}

fn with_subnet(cidr: &str) -> Network {
    let n = run(None, NetworkCommand::Create(spec()));
    run(
        Some(n),
        NetworkCommand::CreateSubnet(Box::new(subnet_req(10, cidr))),
    )
}

#[test]
fn a_subnet_gets_neutron_defaults_and_overlap_is_refused() {
    let n = with_subnet("10.0.0.0/24");
    let s = n.subnets.values().next().unwrap();
    assert_eq!(s.gateway_ip, Some(ip("10.0.0.1")));
    assert_eq!(
        s.allocation_pools,
        vec![Pool::new(ip("10.0.0.2"), ip("10.0.0.254"))]
    );
    let e = refused(
        &n,
        NetworkCommand::CreateSubnet(Box::new(subnet_req(11, "10.0.0.128/25"))),
    );
    assert_eq!(e.kind, "InvalidInput");
    assert!(e.message.contains("overlaps with another subnet"), "{e}");
    // Another family is fine.
    run(
        Some(n),
        NetworkCommand::CreateSubnet(Box::new(subnet_req(12, "2001:db8::/64"))),
    );
}

#[test]
fn pools_are_checked_against_the_cidr_gateway_and_each_other() {
    let n = run(None, NetworkCommand::Create(spec()));
    let mut r = subnet_req(10, "10.0.0.0/24");
    r.allocation_pools = Some(vec![Pool::new(ip("10.0.0.1"), ip("10.0.0.9"))]);
    let e = refused(&n, NetworkCommand::CreateSubnet(Box::new(r.clone())));
    assert_eq!(e.kind, "GatewayConflictWithAllocationPools");
    r.allocation_pools = Some(vec![Pool::new(ip("10.0.0.5"), ip("10.0.1.9"))]);
    let e = refused(&n, NetworkCommand::CreateSubnet(Box::new(r.clone())));
    assert_eq!(e.kind, "OutOfBoundsAllocationPool");
    r.allocation_pools = Some(vec![
        Pool::new(ip("10.0.0.5"), ip("10.0.0.9")),
        Pool::new(ip("10.0.0.9"), ip("10.0.0.20")),
    ]);
    let e = refused(&n, NetworkCommand::CreateSubnet(Box::new(r.clone())));
    assert_eq!(e.kind, "OverlappingAllocationPools");
    assert_eq!(e.class, Class::Conflict);
    r.allocation_pools = Some(vec![Pool::new(ip("10.0.0.9"), ip("10.0.0.5"))]);
    let e = refused(&n, NetworkCommand::CreateSubnet(Box::new(r)));
    assert_eq!(e.kind, "InvalidAllocationPool");
}

#[test]
fn ports_get_the_lowest_free_address_and_exhaustion_is_a_conflict() {
    // A /29: .1 gateway, .2-.6 in the pool.
    let mut n = with_subnet("10.0.0.0/29");
    for i in 0..5 {
        n = run(Some(n), NetworkCommand::CreatePort(Box::new(port_req(i))));
    }
    let addrs: Vec<IpAddr> = n
        .ports
        .values()
        .map(|p| p.fixed_ips[0].ip_address)
        .collect();
    assert_eq!(addrs.len(), 5);
    assert!(addrs.contains(&ip("10.0.0.2")) && addrs.contains(&ip("10.0.0.6")));
    let e = refused(&n, NetworkCommand::CreatePort(Box::new(port_req(9))));
    assert_eq!(e.kind, "IpAddressGenerationFailure");
    assert_eq!(
        e.message,
        format!("No more IP addresses available on network {}.", nid())
    );
    // Deleting a port returns its address to the pool.
    let first = *n.ports.keys().next().unwrap();
    let freed = n.ports[&first].fixed_ips[0].ip_address;
    n = run(Some(n), NetworkCommand::DeletePort { id: first });
    n = run(Some(n), NetworkCommand::CreatePort(Box::new(port_req(9))));
    let newest = &n.ports[&PortId(Uuid::from_u128(1009))];
    assert_eq!(newest.fixed_ips[0].ip_address, freed);
}

#[test]
fn a_requested_address_is_given_once_and_must_belong_to_the_subnet() {
    let n = with_subnet("10.0.0.0/24");
    let sid = *n.subnets.keys().next().unwrap();
    let mut r = port_req(1);
    r.fixed_ips = Some(vec![FixedIpRequest {
        subnet_id: Some(sid),
        ip_address: Some(ip("10.0.0.50")),
    }]);
    let n = run(Some(n), NetworkCommand::CreatePort(Box::new(r.clone())));
    r.id = PortId(Uuid::from_u128(77));
    r.mac_candidates = vec!["fa:16:3e:00:00:77".into()];
    let e = refused(&n, NetworkCommand::CreatePort(Box::new(r.clone())));
    assert_eq!(e.kind, "IpAddressAlreadyAllocated");
    r.fixed_ips = Some(vec![FixedIpRequest {
        subnet_id: None,
        ip_address: Some(ip("192.168.0.5")),
    }]);
    assert_eq!(
        refused(&n, NetworkCommand::CreatePort(Box::new(r.clone()))).kind,
        "InvalidIpForNetwork"
    );
    r.fixed_ips = Some(vec![FixedIpRequest {
        subnet_id: Some(sid),
        ip_address: Some(ip("10.0.0.255")),
    }]);
    assert_eq!(
        refused(&n, NetworkCommand::CreatePort(Box::new(r))).kind,
        "InvalidIpForSubnet"
    );
}

#[test]
fn macs_are_unique_on_the_network() {
    let n = with_subnet("10.0.0.0/24");
    let mut r = port_req(1);
    r.mac_address = Some("fa:16:3e:aa:bb:cc".into());
    let n = run(Some(n), NetworkCommand::CreatePort(Box::new(r.clone())));
    r.id = PortId(Uuid::from_u128(5));
    assert_eq!(
        refused(&n, NetworkCommand::CreatePort(Box::new(r))).kind,
        "MacAddressInUse"
    );
    // A generated candidate already in use is skipped.
    let mut g = port_req(2);
    g.mac_candidates = vec!["fa:16:3e:aa:bb:cc".into(), "fa:16:3e:aa:bb:cd".into()];
    let n = run(Some(n), NetworkCommand::CreatePort(Box::new(g)));
    assert!(n.macs.contains_key("fa:16:3e:aa:bb:cd"));
}

#[test]
fn subnets_and_networks_in_use_cannot_be_deleted() {
    let n = with_subnet("10.0.0.0/24");
    let sid = *n.subnets.keys().next().unwrap();
    let n = run(Some(n), NetworkCommand::CreatePort(Box::new(port_req(1))));
    assert_eq!(
        refused(&n, NetworkCommand::DeleteSubnet { id: sid }).kind,
        "SubnetInUse"
    );
    assert_eq!(refused(&n, NetworkCommand::Delete).kind, "NetworkInUse");
    let pid = *n.ports.keys().next().unwrap();
    let n = run(Some(n), NetworkCommand::DeletePort { id: pid });
    let n = run(Some(n), NetworkCommand::Delete);
    assert!(n.deleted && n.subnets.is_empty());
    assert_eq!(
        decide(nid(), Some(&n), NetworkCommand::Delete, Timestamp(3))
            .unwrap_err()
            .kind,
        "NetworkNotFound"
    );
}

#[test]
fn slaac_subnets_address_ports_from_their_mac() {
    let n = with_subnet("10.0.0.0/24");
    let mut r = subnet_req(20, "2001:db8::/64");
    r.ipv6_ra_mode = Some("slaac".into());
    r.ipv6_address_mode = Some("slaac".into());
    let n = run(Some(n), NetworkCommand::CreateSubnet(Box::new(r)));
    let mut p = port_req(1);
    p.mac_candidates = vec!["fa:16:3e:12:34:56".into()];
    let n = run(Some(n), NetworkCommand::CreatePort(Box::new(p)));
    let port = n.ports.values().next().unwrap();
    let got: Vec<IpAddr> = port.fixed_ips.iter().map(|f| f.ip_address).collect();
    assert_eq!(
        got,
        vec![ip("10.0.0.2"), ip("2001:db8::f816:3eff:fe12:3456")]
    );
}

#[test]
fn updating_fixed_ips_frees_the_old_address() {
    let n = with_subnet("10.0.0.0/24");
    let sid = *n.subnets.keys().next().unwrap();
    let n = run(Some(n), NetworkCommand::CreatePort(Box::new(port_req(1))));
    let pid = *n.ports.keys().next().unwrap();
    let patch = PortPatch {
        fixed_ips: Some(vec![FixedIpRequest {
            subnet_id: Some(sid),
            ip_address: Some(ip("10.0.0.9")),
        }]),
        ..Default::default()
    };
    let n = run(
        Some(n),
        NetworkCommand::UpdatePort {
            id: pid,
            patch: Box::new(patch),
        },
    );
    assert_eq!(n.taken(sid), BTreeSet::from([ip("10.0.0.9")]));
    assert_eq!(n.ports[&pid].revision, 1);
}
