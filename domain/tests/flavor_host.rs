//! Flavor and host aggregates, and `scheduling::choose`.

use std::collections::BTreeMap;

use domain::flavor::{self, Flavor, FlavorCommand as FC, FlavorEvent, FlavorSpec};
use domain::host::{self, Host, HostCommand as HC, HostEvent, HostSpec, Ratios, Resources};
use domain::instance::FlavorSnapshot;
use domain::scheduling::{choose, Request};
use domain::{CellName, ClaimId, Ctx, DomainError, FlavorId, HostName, InstanceId, Timestamp};
use uuid::Uuid;

// ------------------------------------------------------------------ flavors

fn ctx() -> Ctx {
    Ctx::service("test", Timestamp(5_000_000), Uuid::from_u128(1))
}

fn fspec(id: &str) -> FlavorSpec {
    FlavorSpec {
        id: FlavorId::new(id).unwrap(),
        name: format!("m1.{id}"),
        vcpus: 2,
        ram_mb: 4096,
        disk_gb: 40,
        ephemeral_gb: 0,
        swap_mb: 0,
        rxtx_factor: 1.0,
        is_public: true,
        description: None,
    }
}

/// Decides `cmd` on `state`, folds the events, returns the new state.
fn flavor_run(state: Option<Flavor>, cmd: FC) -> Result<Option<Flavor>, DomainError> {
    let evs = flavor::decide(state.as_ref(), cmd, &ctx())?;
    Ok(evs.iter().fold(state, flavor::evolve))
}

fn given_flavor() -> Option<Flavor> {
    flavor_run(None, FC::Create(fspec("small"))).unwrap()
}

fn specs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn flavor_create() {
    let evs = flavor::decide(None, FC::Create(fspec("small")), &ctx()).unwrap();
    assert_eq!(
        evs,
        vec![FlavorEvent::Created {
            spec: fspec("small"),
            at: Timestamp(5_000_000)
        }]
    );
    let f = given_flavor().unwrap();
    assert_eq!(f.spec, fspec("small"));
    assert!(f.extra_specs.is_empty());
    assert!(!f.deleted);
}

#[test]
fn flavor_create_duplicate_is_a_conflict() {
    let f = given_flavor();
    let err = flavor::decide(f.as_ref(), FC::Create(fspec("small")), &ctx()).unwrap_err();
    assert_eq!(err.to_string(), "Flavor with ID small already exists.");
    assert!(matches!(err, DomainError::Conflict(_)));
}

#[test]
fn flavor_create_validation() {
    let mut s = fspec("x");
    s.name = "  ".into();
    assert_eq!(
        flavor::decide(None, FC::Create(s), &ctx())
            .unwrap_err()
            .to_string(),
        "Invalid flavor name"
    );
    let mut s = fspec("x");
    s.vcpus = 0;
    assert!(matches!(
        flavor::decide(None, FC::Create(s), &ctx()),
        Err(DomainError::BadRequest(_))
    ));
    let mut s = fspec("x");
    s.ram_mb = 0;
    assert!(flavor::decide(None, FC::Create(s), &ctx()).is_err());
    for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut s = fspec("x");
        s.rxtx_factor = r;
        assert_eq!(
            flavor::decide(None, FC::Create(s), &ctx())
                .unwrap_err()
                .to_string(),
            "Invalid rxtx_factor"
        );
    }
}

#[test]
fn flavor_delete_then_everything_but_create_is_not_found() {
    let f = flavor_run(given_flavor(), FC::Delete).unwrap();
    assert!(f.as_ref().unwrap().deleted);
    for cmd in [
        FC::Delete,
        FC::SetExtraSpecs(specs(&[("a", "b")])),
        FC::UnsetExtraSpec("a".into()),
        FC::UpdateDescription(None),
    ] {
        let err = flavor::decide(f.as_ref(), cmd.clone(), &ctx()).unwrap_err();
        assert!(
            matches!(err, DomainError::NotFound { kind: "Flavor", .. }),
            "{cmd:?}"
        );
        assert!(flavor::decide(None, cmd, &ctx()).is_err());
    }
    // A new lifetime with the same id starts clean.
    let again = flavor_run(f, FC::Create(fspec("small"))).unwrap().unwrap();
    assert!(!again.deleted);
    assert!(again.extra_specs.is_empty());
}

#[test]
fn flavor_extra_specs_set_merge_and_unset() {
    let f = flavor_run(
        given_flavor(),
        FC::SetExtraSpecs(specs(&[("hw:cpu_policy", "dedicated"), ("a", "1")])),
    )
    .unwrap();
    let f = flavor_run(f, FC::SetExtraSpecs(specs(&[("a", "2"), ("b", "")]))).unwrap();
    assert_eq!(
        f.as_ref().unwrap().extra_specs,
        specs(&[("hw:cpu_policy", "dedicated"), ("a", "2"), ("b", "")])
    );
    let f = flavor_run(f, FC::UnsetExtraSpec("a".into())).unwrap();
    assert_eq!(
        f.as_ref().unwrap().extra_specs,
        specs(&[("hw:cpu_policy", "dedicated"), ("b", "")])
    );
}

#[test]
fn flavor_unset_unknown_extra_spec_is_not_found() {
    let err = flavor::decide(
        given_flavor().as_ref(),
        FC::UnsetExtraSpec("nope".into()),
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        DomainError::NotFound {
            kind: "Flavor extra spec",
            id: "nope".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "Flavor extra spec nope could not be found."
    );
}

#[test]
fn flavor_extra_spec_validation() {
    let f = given_flavor();
    let bad = [
        BTreeMap::new(),
        specs(&[("", "v")]),
        specs(&[("k\n", "v")]),
        specs(&[("k", "v\u{7}")]),
    ];
    for s in bad {
        assert!(
            matches!(
                flavor::decide(f.as_ref(), FC::SetExtraSpecs(s.clone()), &ctx()),
                Err(DomainError::BadRequest(_))
            ),
            "{s:?}"
        );
    }
    let long = "x".repeat(256);
    assert!(flavor::decide(
        f.as_ref(),
        FC::SetExtraSpecs(specs(&[(&long, "v")])),
        &ctx()
    )
    .is_err());
    assert!(flavor::decide(
        f.as_ref(),
        FC::SetExtraSpecs(specs(&[("k", &long)])),
        &ctx()
    )
    .is_err());
    let ok = "x".repeat(255);
    assert!(flavor::decide(f.as_ref(), FC::SetExtraSpecs(specs(&[(&ok, &ok)])), &ctx()).is_ok());
}

#[test]
fn flavor_description_update() {
    let f = flavor_run(given_flavor(), FC::UpdateDescription(Some("fast".into()))).unwrap();
    assert_eq!(
        f.as_ref().unwrap().spec.description.as_deref(),
        Some("fast")
    );
    let f = flavor_run(f, FC::UpdateDescription(None)).unwrap();
    assert_eq!(f.as_ref().unwrap().spec.description, None);
    assert!(flavor::decide(
        f.as_ref(),
        FC::UpdateDescription(Some("x".repeat(65536))),
        &ctx()
    )
    .is_err());
}

#[test]
fn flavor_resources_round_swap_up_and_drop_root_disk_for_volumes() {
    let mut s = fspec("r");
    s.ephemeral_gb = 5;
    s.swap_mb = 1025;
    assert_eq!(
        s.resources(),
        Resources {
            vcpus: 2,
            ram_mb: 4096,
            disk_gb: 40 + 5 + 2
        }
    );
    let snap = FlavorSnapshot {
        spec: s,
        extra_specs: BTreeMap::new(),
    };
    assert_eq!(snap.resources(true).disk_gb, 7);
    assert_eq!(snap.resources(false).disk_gb, 47);
}

// ------------------------------------------------------------------ hosts

fn hname(s: &str) -> HostName {
    HostName::new(s).unwrap()
}

fn cid(n: u128) -> ClaimId {
    ClaimId(Uuid::from_u128(n))
}

fn iid() -> InstanceId {
    InstanceId(Uuid::from_u128(42))
}

fn res(vcpus: u64, ram_mb: u64, disk_gb: u64) -> Resources {
    Resources {
        vcpus,
        ram_mb,
        disk_gb,
    }
}

fn hspec(name: &str, total: Resources, az: &str) -> HostSpec {
    HostSpec {
        name: hname(name),
        cell: CellName::cell1(),
        total,
        ratios: Ratios::default(),
        availability_zone: az.into(),
    }
}

fn host_run(state: Option<Host>, cmd: HC) -> Result<(Option<Host>, Vec<HostEvent>), DomainError> {
    let evs = host::decide(state.as_ref(), cmd, Timestamp(0))?;
    let s = evs.iter().fold(state, host::evolve);
    Ok((s, evs))
}

/// A registered host: 4 cores, 1000 MiB, 100 GB (capacity 64 / 1500 / 100).
fn given_host(name: &str) -> Option<Host> {
    host_run(None, HC::Register(hspec(name, res(4, 1000, 100), "nova")))
        .unwrap()
        .0
}

fn claim_cmd(n: u128, r: Resources) -> HC {
    HC::Claim {
        claim: cid(n),
        instance: iid(),
        resources: r,
    }
}

#[test]
fn nova_default_allocation_ratios() {
    assert_eq!(
        Ratios::default(),
        Ratios {
            cpu: 16.0,
            ram: 1.5,
            disk: 1.0
        }
    );
    assert_eq!(given_host("h").unwrap().spec.capacity(), res(64, 1500, 100));
}

#[test]
fn register_is_idempotent_and_updates_inventory() {
    let h = given_host("h");
    let (h, evs) = host_run(h, HC::Register(hspec("h", res(4, 1000, 100), "nova"))).unwrap();
    assert!(evs.is_empty());
    let (h, _) = host_run(h, claim_cmd(1, res(1, 100, 10))).unwrap();
    let (h, evs) = host_run(h, HC::Register(hspec("h", res(8, 1000, 100), "az2"))).unwrap();
    assert_eq!(evs.len(), 1);
    let h = h.unwrap();
    assert_eq!(h.spec.total.vcpus, 8);
    assert_eq!(h.allocations.len(), 1, "re-registration keeps claims");
    assert_eq!(h.used, res(1, 100, 10));
}

#[test]
fn claims_up_to_capacity_fit() {
    let (h, evs) = host_run(given_host("h"), claim_cmd(1, res(64, 1500, 100))).unwrap();
    assert_eq!(
        evs,
        vec![HostEvent::Claimed {
            claim: cid(1),
            instance: iid(),
            resources: res(64, 1500, 100)
        }]
    );
    let h = h.unwrap();
    assert_eq!(h.free(), res(0, 0, 0));
    assert_eq!(h.used, res(64, 1500, 100));
}

#[test]
fn claims_that_do_not_fit_are_refused_per_resource() {
    for (r, what) in [
        (res(65, 1, 1), "VCPU"),
        (res(1, 1501, 1), "MEMORY_MB"),
        (res(1, 1, 101), "DISK_GB"),
    ] {
        let err = host_run(given_host("compute-1"), claim_cmd(1, r)).unwrap_err();
        assert_eq!(
            err,
            DomainError::NoCapacity {
                host: "compute-1".into(),
                resource: what
            }
        );
        assert_eq!(
            err.to_string(),
            format!("Host compute-1 has not enough {what}")
        );
    }
}

#[test]
fn claims_add_up() {
    let (h, _) = host_run(given_host("h"), claim_cmd(1, res(32, 1000, 60))).unwrap();
    let err = host_run(h.clone(), claim_cmd(2, res(1, 501, 1))).unwrap_err();
    assert!(matches!(
        err,
        DomainError::NoCapacity {
            resource: "MEMORY_MB",
            ..
        }
    ));
    let err = host_run(h.clone(), claim_cmd(2, res(1, 1, 41))).unwrap_err();
    assert!(matches!(
        err,
        DomainError::NoCapacity {
            resource: "DISK_GB",
            ..
        }
    ));
    let (h, _) = host_run(h, claim_cmd(2, res(32, 500, 40))).unwrap();
    assert_eq!(h.unwrap().free(), res(0, 0, 0));
}

#[test]
fn duplicate_claim_id_is_a_no_op() {
    let (h, _) = host_run(given_host("h"), claim_cmd(1, res(60, 1400, 90))).unwrap();
    // Same id again: nothing, even though it would not fit a second time.
    let (h, evs) = host_run(h, claim_cmd(1, res(60, 1400, 90))).unwrap();
    assert!(evs.is_empty());
    let h = h.unwrap();
    assert_eq!(h.used, res(60, 1400, 90));
    // Folding a duplicate Claimed event does not double count either.
    let h = host::evolve(
        Some(h),
        &HostEvent::Claimed {
            claim: cid(1),
            instance: iid(),
            resources: res(60, 1400, 90),
        },
    )
    .unwrap();
    assert_eq!(h.used, res(60, 1400, 90));
}

#[test]
fn release_frees_and_unknown_release_is_a_no_op() {
    let (h, _) = host_run(given_host("h"), claim_cmd(1, res(2, 200, 20))).unwrap();
    let (h, evs) = host_run(h, HC::Release { claim: cid(9) }).unwrap();
    assert!(evs.is_empty());
    let (h, evs) = host_run(h, HC::Release { claim: cid(1) }).unwrap();
    assert_eq!(evs, vec![HostEvent::Released { claim: cid(1) }]);
    let h2 = h.unwrap();
    assert_eq!(h2.used, res(0, 0, 0));
    assert!(h2.allocations.is_empty());
    let (_, evs) = host_run(Some(h2), HC::Release { claim: cid(1) }).unwrap();
    assert!(evs.is_empty(), "releasing twice is a no-op");
    let (_, evs) = host_run(None, HC::Release { claim: cid(1) }).unwrap();
    assert!(evs.is_empty(), "release on an unknown host is a no-op");
}

#[test]
fn claim_on_an_unregistered_host_is_not_found() {
    assert!(matches!(
        host_run(None, claim_cmd(1, res(1, 1, 1))),
        Err(DomainError::NotFound { kind: "Host", .. })
    ));
}

// ------------------------------------------------------------------ scheduling::choose

/// A host with `free_ram` MiB of RAM left (after ratio) and plenty of the rest.
fn sched_host(name: &str, free_ram: u64, az: &str) -> Host {
    // total ram R with ratio 1.5 gives capacity floor(1.5 R); use ratio 1.0 for clarity.
    let mut spec = hspec(name, res(8, free_ram, 100), az);
    spec.ratios = Ratios {
        cpu: 16.0,
        ram: 1.0,
        disk: 1.0,
    };
    host_run(None, HC::Register(spec)).unwrap().0.unwrap()
}

fn names(v: Vec<&Host>) -> Vec<&str> {
    v.into_iter().map(|h| h.spec.name.as_str()).collect()
}

#[test]
fn choose_orders_by_most_free_ram_then_name() {
    let hosts = [
        sched_host("c", 2048, "nova"),
        sched_host("a", 4096, "nova"),
        sched_host("b", 4096, "nova"),
        sched_host("d", 8192, "nova"),
    ];
    let req = Request {
        resources: res(1, 512, 10),
        ..Request::default()
    };
    assert_eq!(names(choose(&hosts, &req)), vec!["d", "a", "b", "c"]);
}

#[test]
fn choose_weighs_free_ram_after_claims() {
    let big = sched_host("big", 8192, "nova");
    let (big, _) = host_run(Some(big), claim_cmd(1, res(1, 7000, 1))).unwrap();
    let hosts = [big.unwrap(), sched_host("small", 2048, "nova")];
    let req = Request {
        resources: res(1, 512, 1),
        ..Request::default()
    };
    assert_eq!(names(choose(&hosts, &req)), vec!["small", "big"]);
}

#[test]
fn choose_filters_table() {
    let hosts = [
        sched_host("a", 4096, "az1"),
        sched_host("b", 2048, "az1"),
        sched_host("c", 1024, "az2"),
    ];
    let a = hname("a");
    let b = hname("b");
    let c = hname("c");
    let exclude_a = [a.clone()];
    let exclude_ab = [a.clone(), b.clone()];
    let cases: Vec<(&str, Request, Vec<&str>)> = vec![
        (
            "no filter",
            Request {
                resources: res(1, 512, 1),
                ..Request::default()
            },
            vec!["a", "b", "c"],
        ),
        (
            "exclude",
            Request {
                resources: res(1, 512, 1),
                exclude: &exclude_a,
                ..Request::default()
            },
            vec!["b", "c"],
        ),
        (
            "exclude two",
            Request {
                resources: res(1, 512, 1),
                exclude: &exclude_ab,
                ..Request::default()
            },
            vec!["c"],
        ),
        (
            "force host",
            Request {
                resources: res(1, 512, 1),
                force_host: Some(&b),
                ..Request::default()
            },
            vec!["b"],
        ),
        (
            "force excluded",
            Request {
                resources: res(1, 512, 1),
                force_host: Some(&a),
                exclude: &exclude_a,
                ..Request::default()
            },
            vec![],
        ),
        (
            "az",
            Request {
                resources: res(1, 512, 1),
                availability_zone: Some("az1"),
                ..Request::default()
            },
            vec!["a", "b"],
        ),
        (
            "az2",
            Request {
                resources: res(1, 512, 1),
                availability_zone: Some("az2"),
                ..Request::default()
            },
            vec!["c"],
        ),
        (
            "unknown az",
            Request {
                resources: res(1, 512, 1),
                availability_zone: Some("nope"),
                ..Request::default()
            },
            vec![],
        ),
        (
            "fit ram",
            Request {
                resources: res(1, 2048, 1),
                ..Request::default()
            },
            vec!["a", "b"],
        ),
        (
            "fit ram exact",
            Request {
                resources: res(1, 4096, 1),
                ..Request::default()
            },
            vec!["a"],
        ),
        (
            "too big",
            Request {
                resources: res(1, 4097, 1),
                ..Request::default()
            },
            vec![],
        ),
        (
            "fit vcpu",
            Request {
                resources: res(129, 1, 1),
                ..Request::default()
            },
            vec![],
        ),
        (
            "fit disk",
            Request {
                resources: res(1, 1, 101),
                ..Request::default()
            },
            vec![],
        ),
        (
            "force + az mismatch",
            Request {
                resources: res(1, 1, 1),
                force_host: Some(&c),
                availability_zone: Some("az1"),
                ..Request::default()
            },
            vec![],
        ),
    ];
    for (name, req, want) in cases {
        assert_eq!(names(choose(&hosts, &req)), want, "{name}");
    }
    assert!(choose(std::iter::empty::<&Host>(), &Request::default()).is_empty());
}

/// Documents a minor domain bug (see the report): a command on a deleted flavor
/// (whose id the tombstone knows) is refused with an empty id, so the message reads
/// "Flavor  could not be found." instead of Nova's "Flavor small could not be found."
#[test]
fn not_found_on_a_deleted_flavor_names_it() {
    let f = flavor_run(given_flavor(), FC::Delete).unwrap();
    let err = flavor::decide(f.as_ref(), FC::Delete, &ctx()).unwrap_err();
    assert_eq!(err.to_string(), "Flavor small could not be found.");
}

fn disable(reason: Option<&str>) -> HC {
    HC::UpdateService {
        status: Some((true, reason.map(String::from))),
        forced_down: None,
    }
}

#[test]
fn service_disable_enable_and_force_down() {
    let h = given_host("h1");
    assert!(h.as_ref().unwrap().accepts_builds());
    let (h, evs) = host_run(h, disable(Some("maintenance"))).unwrap();
    assert_eq!(evs.len(), 1);
    let s = &h.as_ref().unwrap().service;
    assert!(s.disabled && !s.forced_down);
    assert_eq!(s.disabled_reason.as_deref(), Some("maintenance"));
    assert!(!h.as_ref().unwrap().accepts_builds());
    // The same status again decides to nothing.
    assert_eq!(
        host_run(h.clone(), disable(Some("maintenance"))).unwrap().1,
        vec![]
    );
    // Forced down keeps the status; enabling clears the reason.
    let (h, _) = host_run(
        h,
        HC::UpdateService {
            status: None,
            forced_down: Some(true),
        },
    )
    .unwrap();
    assert!(h.as_ref().unwrap().service.forced_down && h.as_ref().unwrap().service.disabled);
    let (h, _) = host_run(
        h,
        HC::UpdateService {
            status: Some((false, Some("ignored".into()))),
            forced_down: None,
        },
    )
    .unwrap();
    let hh = h.as_ref().unwrap();
    assert!(!hh.service.disabled && hh.service.disabled_reason.is_none());
    assert!(!hh.accepts_builds(), "still forced down");
    let (h, _) = host_run(
        h,
        HC::UpdateService {
            status: None,
            forced_down: Some(false),
        },
    )
    .unwrap();
    assert!(h.unwrap().accepts_builds());
    // Unknown host: not found.
    assert!(matches!(
        host_run(None, disable(None)),
        Err(DomainError::NotFound { .. })
    ));
}

/// A claim is a scheduling decision: a host whose service is disabled or forced down
/// refuses it on its own record, whatever the scheduler's view showed.
#[test]
fn claims_on_a_disabled_or_forced_down_host_are_refused() {
    let forced = HC::UpdateService {
        status: None,
        forced_down: Some(true),
    };
    for cmd in [disable(Some("maintenance")), forced] {
        let h = host_run(given_host("h1"), cmd).unwrap().0;
        let err = host_run(h, claim_cmd(1, res(1, 100, 1))).unwrap_err();
        assert_eq!(err, DomainError::OutOfService { host: "h1".into() });
        assert_eq!(err.to_string(), "Host h1 is disabled or forced down");
    }
}

#[test]
fn scheduler_skips_disabled_and_forced_down_hosts() {
    let a = given_host("a").unwrap();
    let b = host_run(given_host("b"), disable(None)).unwrap().0.unwrap();
    let c = host_run(
        given_host("c"),
        HC::UpdateService {
            status: None,
            forced_down: Some(true),
        },
    )
    .unwrap()
    .0
    .unwrap();
    let req = Request {
        resources: res(1, 512, 1),
        ..Default::default()
    };
    let names: Vec<&str> = choose([&a, &b, &c], &req)
        .iter()
        .map(|h| h.spec.name.as_str())
        .collect();
    assert_eq!(names, vec!["a"]);
}

#[test]
fn service_delete_refused_while_hosting_then_recreated_by_registration() {
    let h = given_host("h1");
    let (held, _) = host_run(h.clone(), claim_cmd(1, res(1, 512, 1))).unwrap();
    assert_eq!(
        host_run(held, HC::Delete),
        Err(DomainError::Conflict(host::HOSTING_INSTANCES.into()))
    );
    let (h, evs) = host_run(h, HC::Delete).unwrap();
    assert_eq!(evs, vec![HostEvent::Deleted { at: Timestamp(0) }]);
    let d = h.clone().unwrap();
    assert!(d.service.deleted && !d.accepts_builds());
    // A deleted host takes no claims and no updates, and is not deleted twice.
    assert!(matches!(
        host_run(h.clone(), claim_cmd(2, res(1, 1, 1))),
        Err(DomainError::NotFound { .. })
    ));
    assert!(matches!(
        host_run(h.clone(), disable(None)),
        Err(DomainError::NotFound { .. })
    ));
    assert!(matches!(
        host_run(h.clone(), HC::Delete),
        Err(DomainError::NotFound { .. })
    ));
    // Its agent registers again (same inventory): a fresh, enabled service record.
    let spec = d.spec.clone();
    let evs = host::decide(h.as_ref(), HC::Register(spec), Timestamp(9)).unwrap();
    let back = evs.iter().fold(h, host::evolve).unwrap();
    assert!(back.accepts_builds() && !back.service.deleted);
    assert_eq!(back.registered_at, Timestamp(9));
}

// ------------------------------------------------------------------ flavor access and names

#[test]
fn access_lists_hold_each_project_once() {
    let p = |s: &str| domain::ProjectId::new(s).unwrap();
    let f = flavor_run(given_flavor(), FC::AddAccess(p("p1"))).unwrap();
    assert_eq!(f.as_ref().unwrap().projects, vec![p("p1")]);
    assert!(f.as_ref().unwrap().visible_to("p1"));
    assert!(matches!(
        flavor_run(f.clone(), FC::AddAccess(p("p1"))),
        Err(DomainError::Conflict(m)) if m == "Flavor access already exists for flavor small and project p1 combination."
    ));
    let f = flavor_run(f, FC::RemoveAccess(p("p1"))).unwrap();
    assert!(f.as_ref().unwrap().projects.is_empty());
    assert!(matches!(
        flavor_run(f.clone(), FC::RemoveAccess(p("p1"))),
        Err(DomainError::NotFound { kind, .. }) if kind == flavor::ACCESS
    ));
    // A new lifetime starts with no access list.
    let f = flavor_run(f, FC::AddAccess(p("p2"))).unwrap();
    let f = flavor_run(f, FC::Delete).unwrap();
    let f = flavor_run(f, FC::Create(fspec("small"))).unwrap().unwrap();
    assert!(f.projects.is_empty());
}

/// The world's flavors, for name claims.
struct Facts(Vec<Flavor>);

impl flavor::FlavorFacts for Facts {
    fn flavor(&self, id: &FlavorId) -> Option<&Flavor> {
        self.0.iter().rev().find(|f| &f.spec.id == id)
    }
    fn live_named(&self, name: &str, except: &FlavorId) -> bool {
        self.0
            .iter()
            .any(|f| !f.deleted && f.spec.name == name && &f.spec.id != except)
    }
}

fn created(id: &str, name: &str, at: i64, deleted: bool) -> Flavor {
    let mut spec = fspec(id);
    spec.name = name.into();
    Flavor {
        spec,
        extra_specs: BTreeMap::new(),
        deleted,
        created_at: Timestamp(at),
        projects: Vec::new(),
    }
}

#[test]
fn a_name_claim_holds_while_its_flavor_lives_or_is_being_created() {
    let id = |s: &str| FlavorId::new(s).unwrap();
    let claim = |f: &str, at: i64| flavor::NameClaim {
        name: "n".into(),
        flavor: id(f),
        at: Timestamp(at),
    };
    let s = 1_000_000;
    let taken = |c: &flavor::NameClaim, facts: &Facts, now: i64| {
        flavor::decide_name(Some(c), "n", &id("b"), facts, Timestamp(now)).is_err()
    };
    let none = Facts(vec![]);
    // In flight (no flavor yet): held for the grace, then abandoned.
    assert!(taken(&claim("a", 0), &none, 10 * s));
    assert!(!taken(
        &claim("a", 0),
        &none,
        (flavor::CLAIM_GRACE_SECS + 1) * s
    ));
    // Created under the name: held while live, whatever the age.
    let live = Facts(vec![created("a", "n", 0, false)]);
    assert!(taken(&claim("a", 0), &live, 1_000 * s));
    // Created then deleted: free at once.
    let gone = Facts(vec![created("a", "n", 0, true)]);
    assert!(!taken(&claim("a", 0), &gone, s));
    // A later lifetime of the id under another name does not hold this one (after the
    // grace; the delete's release frees it at once).
    let renamed = Facts(vec![created("a", "other", 5 * s, false)]);
    assert!(!taken(&claim("a", 0), &renamed, 1_000 * s));
    // A live flavor with the name and no claim (bootstrap) takes it too.
    assert!(flavor::decide_name(None, "n", &id("b"), &live, Timestamp(s)).is_err());
    // The claimer itself may claim again (a retried create).
    assert!(flavor::decide_name(Some(&claim("b", 0)), "n", &id("b"), &none, Timestamp(s)).is_ok());
    // Releases: only the holder's.
    assert_eq!(
        flavor::decide_release(Some(&claim("a", 0)), &id("b")),
        vec![]
    );
    let evs = flavor::decide_release(Some(&claim("a", 0)), &id("a"));
    assert_eq!(
        evs.iter().fold(Some(claim("a", 0)), flavor::evolve_name),
        None
    );
}
