//! `stratus bench --scheduler`: the scheduling decision alone (every filter and weigher
//! of [`domain::scheduling`]) over 1,000 and 10,000 simulated hosts held in memory: no
//! log, no HTTP. Hosts are spread over zones and aggregates (with metadata the filters
//! read), carry claims, and the requests vary (zone, aggregate extra specs, capability
//! specs, image properties, anti-affinity group, different_host hint), so every filter
//! and weigher does real work. Reports p50 / p99 / max per size.

use std::collections::BTreeMap;
use std::time::Instant;

use domain::host::{self, Host, HostCommand, HostSpec, Ratios, Resources};
use domain::scheduling::{self, Candidate, Capabilities, Config, GroupRequest, Metadata, Request};
use domain::server_group::Policy;
use domain::{CellName, ClaimId, HostName, InstanceId, Timestamp};
use uuid::Uuid;

/// Figures for one size.
#[derive(Debug, Clone)]
pub struct SchedReport {
    /// Hosts per decision.
    pub hosts: usize,
    /// Decisions timed.
    pub decisions: usize,
    /// Latency percentiles (microseconds).
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest decision.
    pub max_us: f64,
    /// Decisions that found a host.
    pub placed: usize,
}

/// Zones the hosts are spread over.
const ZONES: [&str; 4] = ["az1", "az2", "az3", "nova"];

/// `n` hosts with claims, in `ZONES`, each in one of 16 aggregates (metadata: `ssd`,
/// `gpus`, tenancy on a few).
fn world(n: usize) -> (Vec<Host>, Vec<Metadata>) {
    let aggregates: Vec<Metadata> = (0..16)
        .map(|a| {
            let mut m = Metadata::new();
            m.insert("ssd".into(), (a % 2 == 0).to_string());
            m.insert("gpus".into(), (a % 4).to_string());
            if a == 15 {
                m.insert("filter_tenant_id".into(), "tenant-a,tenant-b".into());
            }
            m
        })
        .collect();
    let hosts = (0..n)
        .map(|i| {
            let spec = HostSpec {
                name: HostName::new(format!("host{i:05}")).expect("valid"),
                cell: CellName::cell1(),
                total: Resources {
                    vcpus: 32 + (i % 4) as u64 * 16,
                    ram_mb: 131072 + (i % 7) as u64 * 16384,
                    disk_gb: 2000,
                },
                ratios: Ratios::default(),
                availability_zone: ZONES[i % ZONES.len()].into(),
            };
            let mut h = host::decide(None, HostCommand::Register(spec), Timestamp(0))
                .expect("register")
                .iter()
                .fold(None, host::evolve);
            // A few instances per host (0..8), of varying sizes.
            for k in 0..(i * 7 % 9) {
                let cmd = HostCommand::Claim {
                    claim: ClaimId(Uuid::from_u128((i * 100 + k) as u128 + 1)),
                    instance: InstanceId(Uuid::from_u128((i * 100 + k) as u128 + 1)),
                    resources: Resources {
                        vcpus: 2,
                        ram_mb: 4096 * (1 + (k as u64 % 4)),
                        disk_gb: 20,
                    },
                };
                let evs = host::decide(h.as_ref(), cmd, Timestamp(0)).expect("fits");
                h = evs.iter().fold(h, host::evolve);
            }
            h.expect("registered")
        })
        .collect();
    (hosts, aggregates)
}

/// Times `decisions` decisions over `n` hosts.
pub fn run(n: usize, decisions: usize) -> SchedReport {
    let (hosts, aggregates) = world(n);
    let caps = Capabilities::simulated();
    // Per host, the metadata of its aggregates, as a read model would hold it.
    let host_aggs: Vec<Vec<&Metadata>> = (0..hosts.len())
        .map(|i| vec![&aggregates[i % aggregates.len()]])
        .collect();
    // The scheduler builds the candidates from its views for every decision: that is
    // part of the decision's cost, so it is timed too.
    let build = || -> Vec<Candidate<'_>> {
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Candidate {
                host: h,
                // The scheduler's zones are its aggregates' zone names, one string
                // per zone shared by its hosts (`Aggregates::zone_of`).
                availability_zone: ZONES[i % ZONES.len()],
                aggregates: &host_aggs[i],
                enabled: i % 50 != 0,
                up: i % 97 != 0,
                capabilities: &caps,
                pending: Resources::default(),
                group_members: (i % 13 == 0) as u32,
            })
            .collect()
    };
    let specs: Vec<BTreeMap<String, String>> = vec![
        BTreeMap::new(),
        [(
            "aggregate_instance_extra_specs:ssd".to_string(),
            "true".to_string(),
        )]
        .into(),
        [("gpus".to_string(), ">= 2".to_string())].into(),
        [(
            "capabilities:hypervisor_type".to_string(),
            "s== QEMU".to_string(),
        )]
        .into(),
    ];
    let props: BTreeMap<String, String> =
        [("hw_architecture".to_string(), "x86_64".to_string())].into();
    // The hint's instances resolved to their hosts, as the scheduler does.
    let different = [hosts[1].spec.name.clone(), hosts[2].spec.name.clone()];
    let cfg = Config {
        host_subset_size: 2,
        ..Config::default()
    };
    let mut times = Vec::with_capacity(decisions);
    let mut placed = 0;
    for d in 0..decisions {
        let req = Request {
            resources: Resources {
                vcpus: 2,
                ram_mb: 2048 << (d % 4),
                disk_gb: 20,
            },
            availability_zone: (d % 3 == 0).then_some(ZONES[d % ZONES.len()]),
            instance: Some(InstanceId(Uuid::from_u128(u128::MAX - d as u128))),
            project_id: if d % 5 == 0 { "tenant-a" } else { "tenant-z" },
            extra_specs: Some(&specs[d % specs.len()]),
            image_properties: Some(&props),
            different_host: &different,
            group: (d % 2 == 0).then_some(GroupRequest {
                policy: if d % 4 == 0 {
                    Policy::AntiAffinity
                } else {
                    Policy::SoftAntiAffinity
                },
                max_server_per_host: 1,
                placed: 3,
            }),
            ..Request::default()
        };
        let t = Instant::now();
        let cands = build();
        let out = scheduling::decide(&cands, &req, &cfg, d as u64);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        placed += usize::from(!out.order.is_empty());
        std::hint::black_box(out);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    SchedReport {
        hosts: n,
        decisions,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: times.last().copied().unwrap_or(0.0),
        placed,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_small_run_places_most_requests_and_reports_ordered_percentiles() {
        let r = super::run(200, 50);
        assert_eq!(r.decisions, 50);
        assert!(r.placed > 25, "{r:?}");
        assert!(r.p50_us <= r.p99_us && r.p99_us <= r.max_us, "{r:?}");
    }
}
