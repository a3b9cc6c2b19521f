//! Scheduler filters and weighers: one table of pass/fail rows per filter, the
//! extra-specs operators, weigher normalisation and multipliers, host_subset_size, and
//! the NoValidHost filter summary.

use std::collections::BTreeMap;

use domain::host::{self, Host, HostCommand as HC, HostSpec, Ratios, Resources};
use domain::scheduling::{
    self, decide, extra_spec_matches, Candidate, Capabilities, Config, GroupRequest, Metadata,
    Multipliers, Prepared, Request, FILTERS,
};
use domain::server_group::Policy;
use domain::{CellName, ClaimId, HostName, InstanceId, Timestamp};
use uuid::Uuid;

fn res(vcpus: u64, ram_mb: u64, disk_gb: u64) -> Resources {
    Resources {
        vcpus,
        ram_mb,
        disk_gb,
    }
}

fn iid(n: u128) -> InstanceId {
    InstanceId(Uuid::from_u128(n))
}

/// A host with ratio 1.0 everywhere and the given totals, holding claims of `instances`
/// (1 vCPU, 1 MiB, 0 GB each).
fn host(name: &str, total: Resources, instances: &[InstanceId]) -> Host {
    let spec = HostSpec {
        name: HostName::new(name).unwrap(),
        cell: CellName::cell1(),
        total,
        ratios: Ratios {
            cpu: 1.0,
            ram: 1.0,
            disk: 1.0,
        },
        availability_zone: "nova".into(),
    };
    let mut h = host::evolve(
        None,
        &host::decide(None, HC::Register(spec), Timestamp(0)).unwrap()[0],
    );
    for (n, i) in instances.iter().enumerate() {
        let evs = host::decide(
            h.as_ref(),
            HC::Claim {
                claim: ClaimId(Uuid::from_u128(1000 + n as u128)),
                instance: *i,
                resources: res(1, 1, 0),
            },
            Timestamp(0),
        )
        .unwrap();
        h = evs.iter().fold(h, host::evolve);
    }
    h.unwrap()
}

fn big(name: &str) -> Host {
    host(name, res(8, 8192, 100), &[])
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn candidate<'a>(h: &'a Host, caps: &'a Capabilities) -> Candidate<'a> {
    Candidate {
        host: h,
        availability_zone: "nova",
        aggregates: &[],
        enabled: true,
        up: true,
        capabilities: caps,
        pending: Resources::default(),
        group_members: 0,
    }
}

/// The filter named `name` from the table.
fn filter(name: &str) -> &'static scheduling::Filter {
    FILTERS
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no filter {name}"))
}

/// Runs a table of (row name, candidate, request, expected) against one filter. A row
/// whose request the filter does not apply to must pass (so `decide` may skip it).
fn check(name: &str, rows: Vec<(&str, Candidate<'_>, Request<'_>, bool)>) {
    let f = filter(name);
    for (row, c, r, want) in rows {
        assert_eq!((f.passes)(&c, &Prepared::new(&r)), want, "{name}: {row}");
        if !(f.applies)(&r) {
            assert!(
                want,
                "{name}: {row}: refused by a filter that does not apply"
            );
        }
    }
}

#[test]
fn compute_filter_table() {
    let (h, caps) = (big("a"), Capabilities::simulated());
    let with = |enabled, up| Candidate {
        enabled,
        up,
        ..candidate(&h, &caps)
    };
    check(
        "ComputeFilter",
        vec![
            ("enabled and up", with(true, true), Request::default(), true),
            ("disabled", with(false, true), Request::default(), false),
            ("down", with(true, false), Request::default(), false),
            (
                "disabled and down",
                with(false, false),
                Request::default(),
                false,
            ),
        ],
    );
}

#[test]
fn requested_host_and_placement_tables() {
    let (h, caps) = (big("a"), Capabilities::simulated());
    let (a, b) = (HostName::new("a").unwrap(), HostName::new("b").unwrap());
    let ex_a = [a.clone()];
    check(
        "RequestedHost",
        vec![
            (
                "nothing asked",
                candidate(&h, &caps),
                Request::default(),
                true,
            ),
            (
                "excluded",
                candidate(&h, &caps),
                Request {
                    exclude: &ex_a,
                    ..Request::default()
                },
                false,
            ),
            (
                "forced here",
                candidate(&h, &caps),
                Request {
                    force_host: Some(&a),
                    ..Request::default()
                },
                true,
            ),
            (
                "forced elsewhere",
                candidate(&h, &caps),
                Request {
                    force_host: Some(&b),
                    ..Request::default()
                },
                false,
            ),
        ],
    );
    let asking = |r| Request {
        resources: r,
        ..Request::default()
    };
    check(
        "PlacementFilter",
        vec![
            (
                "fits",
                candidate(&h, &caps),
                asking(res(8, 8192, 100)),
                true,
            ),
            ("vcpu", candidate(&h, &caps), asking(res(9, 1, 1)), false),
            ("ram", candidate(&h, &caps), asking(res(1, 8193, 1)), false),
            ("disk", candidate(&h, &caps), asking(res(1, 1, 101)), false),
        ],
    );
}

#[test]
fn availability_zone_filter_table() {
    let (h, caps) = (big("a"), Capabilities::simulated());
    let in_az = |az| Candidate {
        availability_zone: az,
        ..candidate(&h, &caps)
    };
    let want = |az| Request {
        availability_zone: az,
        ..Request::default()
    };
    check(
        "AvailabilityZoneFilter",
        vec![
            ("no zone asked", in_az("az1"), want(None), true),
            ("same zone", in_az("az1"), want(Some("az1")), true),
            ("other zone", in_az("az1"), want(Some("az2")), false),
            ("default zone", in_az("nova"), want(Some("nova")), true),
        ],
    );
}

#[test]
fn multi_tenancy_isolation_table() {
    let (h, caps) = (big("a"), Capabilities::simulated());
    let iso = meta(&[("filter_tenant_id", "p1,p2")]);
    let iso2 = meta(&[("filter_tenant_id_extra", "p3")]);
    let open = meta(&[("ssd", "true")]);
    let aggs = |a: Vec<&'static Metadata>| Candidate {
        aggregates: Box::leak(a.into_boxed_slice()),
        ..candidate(&h, &caps)
    };
    let project = |p| Request {
        project_id: p,
        ..Request::default()
    };
    // Leak the metadata so the candidates can borrow it for the whole table.
    let (iso, iso2, open): (&'static Metadata, &'static Metadata, &'static Metadata) = (
        Box::leak(Box::new(iso)),
        Box::leak(Box::new(iso2)),
        Box::leak(Box::new(open)),
    );
    check(
        "AggregateMultiTenancyIsolation",
        vec![
            ("no aggregate", aggs(vec![]), project("p9"), true),
            (
                "unrestricted aggregate",
                aggs(vec![open]),
                project("p9"),
                true,
            ),
            ("listed project", aggs(vec![iso]), project("p2"), true),
            ("unlisted project", aggs(vec![iso]), project("p9"), false),
            ("prefixed key", aggs(vec![iso, iso2]), project("p3"), true),
            (
                "two restrictions",
                aggs(vec![iso, iso2]),
                project("p9"),
                false,
            ),
            (
                "restricted + open",
                aggs(vec![iso, open]),
                project("p9"),
                false,
            ),
        ],
    );
}

#[test]
fn aggregate_instance_extra_specs_table() {
    let (h, caps) = (big("a"), Capabilities::simulated());
    let ssd = meta(&[("ssd", "true"), ("gpus", "2"), ("tier", "gold,silver")]);
    let hdd = meta(&[("ssd", "false")]);
    let with = |a: Vec<&'static Metadata>| Candidate {
        aggregates: Box::leak(a.into_boxed_slice()),
        ..candidate(&h, &caps)
    };
    let (ssd, hdd): (&'static Metadata, &'static Metadata) =
        (Box::leak(Box::new(ssd)), Box::leak(Box::new(hdd)));
    let specs = |pairs: &[(&str, &str)]| -> &'static BTreeMap<String, String> {
        Box::leak(Box::new(meta(pairs)))
    };
    let req = |s| Request {
        extra_specs: Some(s),
        ..Request::default()
    };
    check(
        "AggregateInstanceExtraSpecsFilter",
        vec![
            ("no specs", with(vec![]), Request::default(), true),
            (
                "unscoped match",
                with(vec![ssd]),
                req(specs(&[("ssd", "true")])),
                true,
            ),
            (
                "unscoped mismatch",
                with(vec![hdd]),
                req(specs(&[("ssd", "true")])),
                false,
            ),
            (
                "key in no aggregate",
                with(vec![]),
                req(specs(&[("ssd", "true")])),
                false,
            ),
            (
                "one of two aggregates",
                with(vec![hdd, ssd]),
                req(specs(&[("ssd", "true")])),
                true,
            ),
            (
                "scoped",
                with(vec![ssd]),
                req(specs(&[("aggregate_instance_extra_specs:gpus", ">= 2")])),
                true,
            ),
            (
                "scoped too few",
                with(vec![ssd]),
                req(specs(&[("aggregate_instance_extra_specs:gpus", ">= 3")])),
                false,
            ),
            (
                "other scope ignored",
                with(vec![]),
                req(specs(&[("hw:cpu_policy", "dedicated")])),
                true,
            ),
            (
                "comma list split",
                with(vec![ssd]),
                req(specs(&[("tier", "silver")])),
                true,
            ),
            (
                "<or>",
                with(vec![hdd]),
                req(specs(&[("ssd", "<or> true <or> false")])),
                true,
            ),
        ],
    );
}

#[test]
fn compute_capabilities_table() {
    let h = host("a", res(8, 8192, 100), &[iid(1)]);
    let caps = Capabilities::simulated();
    let specs = |pairs: &[(&str, &str)]| -> &'static BTreeMap<String, String> {
        Box::leak(Box::new(meta(pairs)))
    };
    let req = |s| Request {
        extra_specs: Some(s),
        ..Request::default()
    };
    let c = || candidate(&h, &caps);
    check(
        "ComputeCapabilitiesFilter",
        vec![
            ("no specs", c(), Request::default(), true),
            (
                "hypervisor type",
                c(),
                req(specs(&[("capabilities:hypervisor_type", "s== QEMU")])),
                true,
            ),
            (
                "other hypervisor",
                c(),
                req(specs(&[("capabilities:hypervisor_type", "s== xen")])),
                false,
            ),
            (
                "cpu arch nested",
                c(),
                req(specs(&[("capabilities:cpu_info:arch", "x86_64")])),
                true,
            ),
            (
                "cpu arch <in>",
                c(),
                req(specs(&[("capabilities:cpu_info:arch", "<in> 86")])),
                true,
            ),
            (
                "unknown capability",
                c(),
                req(specs(&[("capabilities:nothing", "1")])),
                false,
            ),
            (
                "unscoped attribute",
                c(),
                req(specs(&[("free_ram_mb", ">= 8000")])),
                true,
            ),
            (
                "unscoped attribute too small",
                c(),
                req(specs(&[("free_ram_mb", ">= 9000")])),
                false,
            ),
            (
                "unscoped non-attribute ignored",
                c(),
                req(specs(&[("ssd", "true")])),
                true,
            ),
            (
                "num_instances",
                c(),
                req(specs(&[("capabilities:num_instances", "<= 1")])),
                true,
            ),
            (
                "hypervisor version",
                c(),
                req(specs(&[("capabilities:hypervisor_version", ">= 9000000")])),
                false,
            ),
            (
                "other scope ignored",
                c(),
                req(specs(&[("hw:mem_page_size", "large")])),
                true,
            ),
        ],
    );
}

#[test]
fn image_properties_table() {
    let h = big("a");
    let caps = Capabilities::simulated();
    let empty = Capabilities {
        supported_instances: vec![],
        ..Capabilities::simulated()
    };
    let props = |pairs: &[(&str, &str)]| -> &'static BTreeMap<String, String> {
        Box::leak(Box::new(meta(pairs)))
    };
    let req = |p| Request {
        image_properties: Some(p),
        ..Request::default()
    };
    check(
        "ImagePropertiesFilter",
        vec![
            ("no image", candidate(&h, &caps), Request::default(), true),
            (
                "unrelated props",
                candidate(&h, &caps),
                req(props(&[("os_distro", "ubuntu")])),
                true,
            ),
            (
                "arch",
                candidate(&h, &caps),
                req(props(&[("hw_architecture", "x86_64")])),
                true,
            ),
            (
                "arch alias",
                candidate(&h, &caps),
                req(props(&[("hw_architecture", "AMD64")])),
                true,
            ),
            (
                "other arch",
                candidate(&h, &caps),
                req(props(&[("hw_architecture", "aarch64")])),
                false,
            ),
            (
                "hv type",
                candidate(&h, &caps),
                req(props(&[("img_hv_type", "kvm")])),
                true,
            ),
            (
                "other hv type",
                candidate(&h, &caps),
                req(props(&[("img_hv_type", "xapi")])),
                false,
            ),
            (
                "vm mode alias",
                candidate(&h, &caps),
                req(props(&[("hw_vm_mode", "hv")])),
                true,
            ),
            (
                "all three",
                candidate(&h, &caps),
                req(props(&[
                    ("hw_architecture", "x86_64"),
                    ("img_hv_type", "qemu"),
                    ("hw_vm_mode", "hvm"),
                ])),
                true,
            ),
            (
                "host advertises nothing",
                candidate(&h, &empty),
                req(props(&[("hw_architecture", "x86_64")])),
                false,
            ),
        ],
    );
}

#[test]
fn same_and_different_host_tables() {
    // The hint's instances resolved to their hosts: `a` runs some, `b` none.
    let h = host("a", res(8, 8192, 100), &[]);
    let caps = Capabilities::simulated();
    let name = |n: &str| HostName::new(n).unwrap();
    let (on, off, mixed) = ([name("a")], [name("b")], [name("b"), name("a")]);
    let same = |hosts| Request {
        same_host: Some(hosts),
        ..Request::default()
    };
    let diff = |ids| Request {
        different_host: ids,
        ..Request::default()
    };
    check(
        "SameHostFilter",
        vec![
            ("no hint", candidate(&h, &caps), Request::default(), true),
            ("runs it", candidate(&h, &caps), same(&on), true),
            ("runs none", candidate(&h, &caps), same(&off), false),
            ("runs one of them", candidate(&h, &caps), same(&mixed), true),
            (
                "the instances run nowhere",
                candidate(&h, &caps),
                same(&[]),
                false,
            ),
        ],
    );
    check(
        "DifferentHostFilter",
        vec![
            ("no hint", candidate(&h, &caps), Request::default(), true),
            ("runs it", candidate(&h, &caps), diff(&on), false),
            ("runs none", candidate(&h, &caps), diff(&off), true),
            (
                "runs one of them",
                candidate(&h, &caps),
                diff(&mixed),
                false,
            ),
        ],
    );
}

#[test]
fn server_group_filter_tables() {
    let h = host("a", res(8, 8192, 100), &[iid(7)]);
    let caps = Capabilities::simulated();
    let members = |n| Candidate {
        group_members: n,
        ..candidate(&h, &caps)
    };
    let group = |policy, max, placed| Request {
        instance: Some(iid(1)),
        group: Some(GroupRequest {
            policy,
            max_server_per_host: max,
            placed,
        }),
        ..Request::default()
    };
    check(
        "ServerGroupAntiAffinityFilter",
        vec![
            ("no group", members(3), Request::default(), true),
            (
                "empty host",
                members(0),
                group(Policy::AntiAffinity, 1, 2),
                true,
            ),
            (
                "a member here",
                members(1),
                group(Policy::AntiAffinity, 1, 2),
                false,
            ),
            (
                "max 2, one here",
                members(1),
                group(Policy::AntiAffinity, 2, 2),
                true,
            ),
            (
                "max 2, two here",
                members(2),
                group(Policy::AntiAffinity, 2, 2),
                false,
            ),
            (
                "affinity group ignored",
                members(1),
                group(Policy::Affinity, 1, 1),
                true,
            ),
            (
                "soft ignored",
                members(4),
                group(Policy::SoftAntiAffinity, 1, 4),
                true,
            ),
            (
                "the instance itself is here (move)",
                members(1),
                Request {
                    instance: Some(iid(7)),
                    instance_host: Some(&h.spec.name),
                    ..group(Policy::AntiAffinity, 1, 1)
                },
                true,
            ),
        ],
    );
    check(
        "ServerGroupAffinityFilter",
        vec![
            ("no group", members(0), Request::default(), true),
            (
                "first member anywhere",
                members(0),
                group(Policy::Affinity, 1, 0),
                true,
            ),
            (
                "members here",
                members(2),
                group(Policy::Affinity, 1, 2),
                true,
            ),
            (
                "members elsewhere",
                members(0),
                group(Policy::Affinity, 1, 2),
                false,
            ),
            (
                "anti ignored",
                members(0),
                group(Policy::AntiAffinity, 1, 2),
                true,
            ),
            (
                "soft ignored",
                members(0),
                group(Policy::SoftAffinity, 1, 2),
                true,
            ),
        ],
    );
}

#[test]
fn extra_spec_operators_table() {
    let rows: &[(Option<&str>, &str, bool)] = &[
        (Some("1"), "1", true),
        (Some("1"), "2", false),
        (Some("4"), "= 2", true),
        (Some("1"), "= 2", false),
        (Some("2"), "== 2.0", true),
        (Some("3"), "!= 2", true),
        (Some("3"), ">= 3", true),
        (Some("3"), "<= 2", false),
        (Some("abc"), "s== abc", true),
        (Some("abc"), "s!= abc", false),
        (Some("abc"), "s< abd", true),
        (Some("abc"), "s<= abc", true),
        (Some("abd"), "s> abc", true),
        (Some("abc"), "s>= abd", false),
        (Some("x86_64"), "<in> 86", true),
        (Some("x86_64"), "<in> arm", false),
        (Some("avx sse avx2"), "<all-in> avx2 sse", true),
        (Some("avx sse"), "<all-in> avx2 sse", false),
        (Some("b"), "<or> a <or> b <or> c", true),
        (Some("d"), "<or> a <or> b <or> c", false),
        (Some("<or>"), "<or> a <or> b", false),
        (None, ">= 1", false),
        (Some("x"), ">= 1", false),
        (Some("1"), ">=", false),
        (Some("unknown op"), "unknown op", true),
    ];
    for (value, req, want) in rows {
        assert_eq!(
            extra_spec_matches(*value, req),
            *want,
            "{value:?} against {req:?}"
        );
    }
}

fn ordered(cands: &[Candidate<'_>], d: &scheduling::Decision) -> Vec<String> {
    d.order
        .iter()
        .map(|&i| cands[i].name().to_string())
        .collect()
}

#[test]
fn weighers_normalise_and_multipliers_spread_or_pack() {
    let caps = Capabilities::simulated();
    let hosts = [
        host("a", res(8, 2048, 100), &[]),
        host("b", res(8, 8192, 100), &[]),
        host("c", res(32, 4096, 10), &[]),
    ];
    let cands: Vec<Candidate<'_>> = hosts.iter().map(|h| candidate(h, &caps)).collect();
    let req = Request {
        resources: res(1, 512, 1),
        ..Request::default()
    };
    let only = |m: Multipliers| Config {
        multipliers: m,
        host_subset_size: 1,
    };
    let zero = Multipliers {
        ram: 0.0,
        cpu: 0.0,
        disk: 0.0,
        num_instances: 0.0,
        soft_affinity: 0.0,
        soft_anti_affinity: 0.0,
    };
    let rows: Vec<(&str, Multipliers, Vec<&str>)> = vec![
        (
            "ram spreads",
            Multipliers { ram: 1.0, ..zero },
            vec!["b", "c", "a"],
        ),
        (
            "ram packs",
            Multipliers { ram: -1.0, ..zero },
            vec!["a", "c", "b"],
        ),
        (
            "cpu spreads",
            Multipliers { cpu: 1.0, ..zero },
            vec!["c", "a", "b"],
        ),
        (
            "disk spreads",
            Multipliers { disk: 1.0, ..zero },
            vec!["a", "b", "c"],
        ),
        // Normalised: b = 1 (ram) + 0 (cpu) = 1, c = 1/3 + 1 = 1.33, a = 0 + 0.
        (
            "ram and cpu summed after normalising",
            Multipliers {
                ram: 1.0,
                cpu: 1.0,
                ..zero
            },
            vec!["c", "b", "a"],
        ),
        ("all zero: by name", zero, vec!["a", "b", "c"]),
    ];
    for (row, m, want) in rows {
        let d = decide(&cands, &req, &only(m), 0);
        assert_eq!(ordered(&cands, &d), want, "{row}");
    }
    assert_eq!(
        {
            let mut v = [3.0, 1.0, 2.0];
            scheduling::normalize(&mut v);
            v
        },
        [1.0, 0.0, 0.5]
    );
    let mut same = [2.0, 2.0];
    scheduling::normalize(&mut same);
    assert_eq!(same, [0.0, 0.0]);
}

#[test]
fn num_instances_and_soft_group_weighers() {
    let caps = Capabilities::simulated();
    let hosts = [
        host("a", res(64, 65536, 100), &[iid(1), iid(2)]),
        host("b", res(64, 65536, 100), &[]),
        host("c", res(64, 65536, 100), &[iid(3)]),
    ];
    let members = [2, 0, 1];
    let cands: Vec<Candidate<'_>> = hosts
        .iter()
        .zip(members)
        .map(|(h, n)| Candidate {
            group_members: n,
            ..candidate(h, &caps)
        })
        .collect();
    let zero = Multipliers {
        ram: 0.0,
        cpu: 0.0,
        disk: 0.0,
        num_instances: 0.0,
        soft_affinity: 0.0,
        soft_anti_affinity: 0.0,
    };
    let group = |policy| Request {
        resources: res(1, 1, 1),
        group: Some(GroupRequest {
            policy,
            max_server_per_host: 1,
            placed: 3,
        }),
        ..Request::default()
    };
    let cfg = |m| Config {
        multipliers: m,
        host_subset_size: 1,
    };
    let rows: Vec<(&str, Multipliers, Request<'_>, Vec<&str>)> = vec![
        (
            "num instances packs (positive)",
            Multipliers {
                num_instances: 1.0,
                ..zero
            },
            Request::default(),
            vec!["a", "c", "b"],
        ),
        (
            "num instances spreads (negative)",
            Multipliers {
                num_instances: -1.0,
                ..zero
            },
            Request::default(),
            vec!["b", "c", "a"],
        ),
        (
            "soft affinity",
            Multipliers {
                soft_affinity: 1.0,
                ..zero
            },
            group(Policy::SoftAffinity),
            vec!["a", "c", "b"],
        ),
        (
            "soft anti-affinity",
            Multipliers {
                soft_anti_affinity: 1.0,
                ..zero
            },
            group(Policy::SoftAntiAffinity),
            vec!["b", "c", "a"],
        ),
        (
            "soft weigher ignores other policies",
            Multipliers {
                soft_anti_affinity: 1.0,
                ..zero
            },
            group(Policy::SoftAffinity),
            vec!["a", "b", "c"],
        ),
    ];
    for (row, m, req, want) in rows {
        let d = decide(&cands, &req, &cfg(m), 0);
        assert_eq!(ordered(&cands, &d), want, "{row}");
    }
}

#[test]
fn host_subset_size_picks_among_the_best_n() {
    let caps = Capabilities::simulated();
    let hosts: Vec<Host> = (0..5)
        .map(|i| host(&format!("h{i}"), res(8, 1024 * (i + 1), 100), &[]))
        .collect();
    let cands: Vec<Candidate<'_>> = hosts.iter().map(|h| candidate(h, &caps)).collect();
    let cfg = |n| Config {
        host_subset_size: n,
        ..Config::default()
    };
    let req = Request::default();
    let first = |n, pick| ordered(&cands, &decide(&cands, &req, &cfg(n), pick))[0].clone();
    assert_eq!(first(1, 7), "h4", "subset 1 ignores pick");
    assert_eq!(first(3, 0), "h4");
    assert_eq!(first(3, 1), "h3");
    assert_eq!(first(3, 2), "h2");
    assert_eq!(first(3, 3), "h4");
    assert_eq!(first(50, 4), "h0", "subset larger than the hosts");
    let all: std::collections::BTreeSet<String> = (0..30).map(|p| first(3, p)).collect();
    assert_eq!(all.len(), 3);
    // The others keep their order.
    assert_eq!(
        ordered(&cands, &decide(&cands, &req, &cfg(3), 2)),
        vec!["h2", "h4", "h3", "h1", "h0"]
    );
}

#[test]
fn no_valid_host_summary_names_the_filter_that_removed_the_hosts() {
    let caps = Capabilities::simulated();
    let hosts = [big("a"), big("b"), big("c")];
    let mut cands: Vec<Candidate<'_>> = hosts.iter().map(|h| candidate(h, &caps)).collect();
    cands[0].enabled = false;
    cands[1].availability_zone = "az1";
    let req = Request {
        resources: res(1, 512, 1),
        availability_zone: Some("az2"),
        ..Request::default()
    };
    let d = decide(&cands, &req, &Config::default(), 0);
    assert!(d.order.is_empty());
    assert_eq!(d.refused_by(), Some("AvailabilityZoneFilter"));
    assert_eq!(
        d.summary(),
        "['RequestedHost: (start: 3, end: 3)', 'PlacementFilter: (start: 3, end: 3)', \
         'ComputeFilter: (start: 3, end: 2)', 'AvailabilityZoneFilter: (start: 2, end: 0)']"
    );
    let details = d.no_valid_host_details(&iid(9));
    assert!(details.starts_with(scheduling::NO_VALID_HOST), "{details}");
    assert!(details.contains(&format!(
        "Filtering removed all hosts for the request with instance ID '{}'",
        iid(9)
    )));
    // A host that passes: every filter ran, none refused.
    let ok = decide(&cands, &Request::default(), &Config::default(), 0);
    assert_eq!(ok.filters.len(), FILTERS.len());
    assert_eq!(ok.refused_by(), None);
    assert_eq!(ok.order.len(), 2);
    // No hosts at all.
    let none = decide(&[], &req, &Config::default(), 0);
    assert!(none
        .no_valid_host_details(&iid(9))
        .contains("No compute hosts"));
}

/// `decide` (candidate-major filtering, skipped filters and weighers that do not
/// apply, aggregate and capability facts remembered per decision, partial ranking)
/// gives what the plain definition gives: every filter of the table over the survivors
/// of the previous one, every weigher normalised, a full sort. Checked over 90 varied
/// hosts (zones, aggregates with specs and tenancy, two capability sets, claims,
/// disabled and down services, group members) and varied requests.
#[test]
fn decide_agrees_with_the_plain_definition() {
    let caps = [
        Capabilities::simulated(),
        Capabilities {
            hypervisor_type: "xen".into(),
            supported_instances: vec![("aarch64".into(), "xen".into(), "hvm".into())],
            ..Capabilities::simulated()
        },
    ];
    let aggs = [
        meta(&[("ssd", "true"), ("gpus", "2")]),
        meta(&[("ssd", "false"), ("gpus", "4"), ("tier", "gold, silver")]),
        meta(&[("filter_tenant_id", "p1,p2")]),
        meta(&[("gpus", "1"), ("filter_tenant_id2", "p3")]),
    ];
    let hosts: Vec<Host> = (0..90u128)
        .map(|i| {
            let on: Vec<InstanceId> = (0..(i * 7 % 5)).map(|k| iid(i * 10 + k)).collect();
            host(
                &format!("h{:02}", (i * 37) % 90),
                res(4 + (i % 3) as u64 * 4, 4096 * (1 + (i % 4) as u64), 100),
                &on,
            )
        })
        .collect();
    let agg_sets: Vec<Vec<&Metadata>> = (0..90)
        .map(|i| match i % 5 {
            0 => vec![],
            1 => vec![&aggs[0]],
            2 => vec![&aggs[1], &aggs[2]],
            3 => vec![&aggs[3]],
            _ => vec![&aggs[0], &aggs[3]],
        })
        .collect();
    let zones = ["nova", "az1", "az2"];
    let cands: Vec<Candidate<'_>> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Candidate {
            availability_zone: zones[i % 3],
            aggregates: &agg_sets[i],
            enabled: i % 11 != 0,
            up: i % 13 != 0,
            capabilities: &caps[usize::from(i % 7 == 0)],
            group_members: (i % 4 == 0) as u32,
            ..candidate(h, &caps[0])
        })
        .collect();
    let specs: Vec<BTreeMap<String, String>> = vec![
        BTreeMap::new(),
        [("ssd".to_string(), "true".to_string())].into(),
        [(
            "aggregate_instance_extra_specs:gpus".to_string(),
            ">= 2".to_string(),
        )]
        .into(),
        [("tier".to_string(), "<or> gold <or> bronze".to_string())].into(),
        [(
            "capabilities:hypervisor_type".to_string(),
            "s== QEMU".to_string(),
        )]
        .into(),
        [("vcpus_total".to_string(), ">= 8".to_string())].into(),
        [(
            "capabilities:free_ram_mb".to_string(),
            ">= 6000".to_string(),
        )]
        .into(),
    ];
    let props: [BTreeMap<String, String>; 2] = [
        [("hw_architecture".to_string(), "amd64".to_string())].into(),
        [("img_hv_type".to_string(), "XEN".to_string())].into(),
    ];
    let (near, far) = (
        [HostName::new("h05").unwrap()],
        [HostName::new("h06").unwrap()],
    );
    let multipliers = [
        Multipliers::default(),
        Multipliers {
            ram: -1.0,
            num_instances: 2.0,
            ..Multipliers::default()
        },
    ];
    let mut checked = 0;
    for n in 0..120usize {
        let req = Request {
            resources: res(1 + (n % 3) as u64, 1024 << (n % 3), 10),
            availability_zone: (n % 4 == 1).then_some(zones[n % 3]),
            project_id: ["p1", "p3", "p9"][n % 3],
            extra_specs: Some(&specs[n % specs.len()]),
            image_properties: (n % 5 < 2).then(|| &props[n % 2]),
            same_host: (n % 17 == 3).then_some(&near[..]),
            different_host: if n % 6 == 2 { &far } else { &[] },
            instance: Some(iid(n as u128 + 5000)),
            group: (n % 3 == 0).then_some(GroupRequest {
                policy: [
                    Policy::AntiAffinity,
                    Policy::Affinity,
                    Policy::SoftAffinity,
                    Policy::SoftAntiAffinity,
                ][n / 3 % 4],
                max_server_per_host: 1,
                placed: (n % 2) as u32,
            }),
            ..Request::default()
        };
        let cfg = Config {
            multipliers: multipliers[n % 2],
            host_subset_size: 1,
        };
        // The plain definition.
        let prepared = Prepared::new(&req);
        let mut alive: Vec<usize> = (0..cands.len()).collect();
        let mut runs = vec![];
        for f in FILTERS {
            let start = alive.len();
            alive.retain(|&i| (f.passes)(&cands[i], &prepared));
            runs.push((f.name, start, alive.len()));
            if alive.is_empty() {
                break;
            }
        }
        let mut weight = vec![0.0f64; cands.len()];
        for w in scheduling::WEIGHERS {
            let m = (w.multiplier)(&cfg.multipliers);
            let mut raw: Vec<f64> = alive
                .iter()
                .map(|&i| (w.weigh)(&cands[i], &req, &cands[i].free()))
                .collect();
            scheduling::normalize(&mut raw);
            for (&i, r) in alive.iter().zip(raw) {
                weight[i] += m * r;
            }
        }
        let d = decide(&cands, &req, &cfg, 0);
        let got: Vec<_> = d.filters.iter().map(|f| (f.name, f.start, f.end)).collect();
        assert_eq!(got, runs, "request {n}: filter counts");
        let mut want = alive.clone();
        want.sort_unstable();
        let mut have = d.order.clone();
        have.sort_unstable();
        assert_eq!(have, want, "request {n}: survivors");
        let ranked = scheduling::RANKED.min(d.order.len());
        let eps = 1e-9;
        for pair in d.order[..ranked].windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                weight[a] > weight[b] + eps
                    || ((weight[a] - weight[b]).abs() <= eps && cands[a].name() < cands[b].name()),
                "request {n}: {} before {}",
                cands[a].name(),
                cands[b].name()
            );
        }
        if let Some(&last) = d.order[..ranked].last() {
            for &i in &d.order[ranked..] {
                assert!(
                    weight[i] <= weight[last] + eps,
                    "request {n}: tail outweighs"
                );
            }
        }
        checked += usize::from(d.order.len() > scheduling::RANKED);
    }
    assert!(
        checked > 10,
        "too few requests ranked only partially: {checked}"
    );
}
