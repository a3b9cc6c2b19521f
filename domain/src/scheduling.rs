//! Pure host selection, as Nova's filter scheduler: a table of named filters, then a
//! table of weighers, from a snapshot of candidates to an ordered list of hosts.
//!
//! Rules as data: [`FILTERS`] and [`WEIGHERS`] are tables of named pure functions over a
//! [`Candidate`] (everything the decision needs about one host, built by the scheduler
//! from its views) and a [`Request`] (everything about the instance). Nothing here reads
//! a clock, a random source or the log: `host_subset_size`'s random pick is an input.
//!
//! Invariants:
//! - Filters run in table order over the survivors of the previous one (Nova's
//!   `get_filtered_objects`); the count each one kept is recorded ([`FilterRun`]) and
//!   filtering stops at the first filter that leaves no host, so a NoValidHost fault can
//!   say which filter removed the hosts ([`Decision::summary`]).
//! - Every filter is neutral when its input is absent (no extra specs, no hints, no
//!   group, no aggregates...): a request without them is decided as before.
//! - Weights are normalised per weigher to [0, 1] over the surviving hosts (all equal ->
//!   0, Nova's `normalize`), multiplied by the weigher's multiplier and summed; hosts
//!   are ordered by total weight, ties by name, so decisions are reproducible.
//! - With `host_subset_size` N > 1, the first host is one of the best N chosen by the
//!   `pick` input; the others keep their order.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::host::{Host, Resources};
use crate::server_group::Policy;
use crate::{HostName, InstanceId};

/// Metadata of one host aggregate (key -> value, as set with `aggregate set --property`).
pub type Metadata = BTreeMap<String, String>;

/// What a compute node reports about its hypervisor (Nova's HostState attributes the
/// ComputeCapabilitiesFilter and ImagePropertiesFilter read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `hypervisor_type` (e.g. `QEMU`).
    pub hypervisor_type: String,
    /// `hypervisor_version` (Nova's integer form, e.g. 8002000 for 8.2.0).
    pub hypervisor_version: u64,
    /// `cpu_info` flattened: `arch`, `vendor`, `model`, `maxphysaddr:bits`...
    pub cpu_info: BTreeMap<String, String>,
    /// `supported_instances`: (architecture, hypervisor type, vm mode), canonical.
    pub supported_instances: Vec<(String, String, String)>,
    /// `stats` reported by the node (free-form).
    pub stats: BTreeMap<String, String>,
}

impl Capabilities {
    /// What the simulated compute driver reports: an x86_64 QEMU/KVM host.
    pub fn simulated() -> Capabilities {
        Capabilities {
            hypervisor_type: "QEMU".into(),
            hypervisor_version: 8_002_000,
            cpu_info: [
                ("arch", "x86_64"),
                ("vendor", "Intel"),
                ("model", "Haswell"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            supported_instances: ["qemu", "kvm"]
                .into_iter()
                .map(|hv| ("x86_64".to_string(), hv.to_string(), "hvm".to_string()))
                .collect(),
            stats: BTreeMap::new(),
        }
    }
}

/// One host as the decision sees it: a pure snapshot built by the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    /// The host's inventory and claims.
    pub host: &'a Host,
    /// Availability zone of the host (its aggregates' zone, else the default `nova`).
    pub availability_zone: &'a str,
    /// Metadata of every aggregate the host is in (a slice held by the caller's read
    /// model, so building a candidate allocates nothing).
    pub aggregates: &'a [&'a Metadata],
    /// The compute service is enabled (not `compute service set --disable`).
    pub enabled: bool,
    /// The compute service is up (heartbeat recent, not forced down).
    pub up: bool,
    /// Hypervisor capabilities.
    pub capabilities: &'a Capabilities,
    /// Resources this scheduler claimed on the host that may not be in `host` yet:
    /// weighers subtract them so concurrent decisions spread.
    pub pending: Resources,
    /// Members of the request's server group placed on this host (this instance
    /// excluded).
    pub group_members: u32,
}

impl Candidate<'_> {
    /// The host's name.
    pub fn name(&self) -> &HostName {
        &self.host.spec.name
    }

    /// Free resources after claims and pending claims.
    pub fn free(&self) -> Resources {
        self.host.free().minus(self.pending)
    }

    /// Instances with a claim on the host (Nova's `num_instances`).
    pub fn num_instances(&self) -> usize {
        self.host.allocations.len()
    }

    /// Whether `id` holds a claim on the host.
    pub fn hosts_instance(&self, id: &InstanceId) -> bool {
        self.host.allocations.values().any(|a| a.instance == *id)
    }

    /// Values of `key` over the host's aggregates, comma-separated values split (Nova's
    /// `aggregate_metadata_get_by_host`).
    fn aggregate_values<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s str> {
        self.aggregates
            .iter()
            .filter_map(move |m| m.get(key))
            .flat_map(|v| v.split(',').map(str::trim))
    }

    /// A HostState attribute by scoped path (`capabilities:` stripped, segments joined
    /// by `:`), as a string; borrowed where it can be, so most checks allocate nothing.
    fn capability(&self, path: &str) -> Option<Cow<'_, str>> {
        if let Some(rest) = path.strip_prefix("cpu_info:") {
            return self
                .capabilities
                .cpu_info
                .get(rest)
                .map(|v| Cow::Borrowed(v.as_str()));
        }
        let num = |n: u64| Some(Cow::Owned(n.to_string()));
        match path {
            "hypervisor_type" => Some(Cow::Borrowed(&self.capabilities.hypervisor_type)),
            "hypervisor_version" => num(self.capabilities.hypervisor_version),
            "hypervisor_hostname" | "host" | "nodename" => {
                Some(Cow::Borrowed(self.name().as_str()))
            }
            "free_ram_mb" => num(self.host.free().ram_mb),
            "free_disk_mb" => num(self.host.free().disk_gb * 1024),
            "total_usable_ram_mb" => num(self.host.spec.capacity().ram_mb),
            "total_usable_disk_gb" => num(self.host.spec.capacity().disk_gb),
            "vcpus_total" => num(self.host.spec.total.vcpus),
            "vcpus_used" => num(self.host.used.vcpus),
            "num_instances" => num(self.num_instances() as u64),
            key if !key.contains(':') => self
                .capabilities
                .stats
                .get(key)
                .map(|v| Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }
}

/// The request's server group, as the group filters and weighers need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRequest {
    /// The group's policy.
    pub policy: Policy,
    /// 2.64 `rules.max_server_per_host` (anti-affinity; 1 when not set).
    pub max_server_per_host: u32,
    /// Members placed on some host (this instance excluded): Nova's `group.hosts` is
    /// empty when 0.
    pub placed: u32,
}

/// What a scheduling request asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request<'a> {
    /// Resources to claim.
    pub resources: Resources,
    /// Hosts that may not be chosen (e.g. the source of a migration).
    pub exclude: &'a [HostName],
    /// Only this host may be chosen (admin-targeted build or migration).
    pub force_host: Option<&'a HostName>,
    /// Required availability zone.
    pub availability_zone: Option<&'a str>,
    /// The instance being scheduled.
    pub instance: Option<InstanceId>,
    /// Its project (AggregateMultiTenancyIsolation).
    pub project_id: &'a str,
    /// The flavor's extra specs.
    pub extra_specs: Option<&'a BTreeMap<String, String>>,
    /// The image's properties, unquoted (`hw_architecture`, `img_hv_type`, `hw_vm_mode`).
    pub image_properties: Option<&'a BTreeMap<String, String>>,
    /// `same_host` scheduler hint: instances the host must run one of.
    pub same_host: &'a [InstanceId],
    /// `different_host` scheduler hint: instances the host must run none of.
    pub different_host: &'a [InstanceId],
    /// The `group` scheduler hint's group.
    pub group: Option<GroupRequest>,
}

/// A named filter: a pure predicate on one candidate.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    /// Nova's class name (shown in the NoValidHost summary).
    pub name: &'static str,
    /// True when the host may take the request.
    pub passes: fn(&Candidate<'_>, &Request<'_>) -> bool,
}

/// Every filter, in the order they run. The requested/excluded host and placement
/// checks come first (Nova resolves them before the filters, with placement).
pub const FILTERS: &[Filter] = &[
    Filter {
        name: "RequestedHost",
        passes: requested_host,
    },
    Filter {
        name: "PlacementFilter",
        passes: placement,
    },
    Filter {
        name: "ComputeFilter",
        passes: compute,
    },
    Filter {
        name: "AvailabilityZoneFilter",
        passes: availability_zone,
    },
    Filter {
        name: "AggregateMultiTenancyIsolation",
        passes: multi_tenancy,
    },
    Filter {
        name: "AggregateInstanceExtraSpecsFilter",
        passes: aggregate_extra_specs,
    },
    Filter {
        name: "ComputeCapabilitiesFilter",
        passes: compute_capabilities,
    },
    Filter {
        name: "ImagePropertiesFilter",
        passes: image_properties,
    },
    Filter {
        name: "SameHostFilter",
        passes: same_host,
    },
    Filter {
        name: "DifferentHostFilter",
        passes: different_host,
    },
    Filter {
        name: "ServerGroupAntiAffinityFilter",
        passes: group_anti_affinity,
    },
    Filter {
        name: "ServerGroupAffinityFilter",
        passes: group_affinity,
    },
];

/// The host is not excluded and is the forced host when one is given.
pub fn requested_host(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    !r.exclude.contains(c.name()) && r.force_host.is_none_or(|f| f == c.name())
}

/// The request fits under the allocation ratios (placement's VCPU / MEMORY_MB / DISK_GB).
pub fn placement(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    c.host.misfit(r.resources).is_none()
}

/// ComputeFilter: the compute service is enabled and up.
pub fn compute(c: &Candidate<'_>, _: &Request<'_>) -> bool {
    c.enabled && c.up
}

/// AvailabilityZoneFilter: the host is in the requested zone.
pub fn availability_zone(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    r.availability_zone
        .is_none_or(|az| az == c.availability_zone)
}

/// AggregateMultiTenancyIsolation: a host in aggregates with `filter_tenant_id*` keys
/// only takes those projects; hosts without such keys take everyone.
pub fn multi_tenancy(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    let mut restricted = false;
    for m in c.aggregates {
        for (_, v) in m.iter().filter(|(k, _)| k.starts_with("filter_tenant_id")) {
            restricted = true;
            if v.split(',').any(|t| t.trim() == r.project_id) {
                return true;
            }
        }
    }
    !restricted
}

/// AggregateInstanceExtraSpecsFilter: every unscoped or
/// `aggregate_instance_extra_specs:` extra spec matches (Nova's operators) one of the
/// values its key has in the host's aggregates; a key no aggregate has fails.
pub fn aggregate_extra_specs(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    let Some(specs) = r.extra_specs else {
        return true;
    };
    specs.iter().all(|(key, req)| {
        let key = match key.split_once(':') {
            None => key.as_str(),
            Some(("aggregate_instance_extra_specs", rest)) => rest,
            Some(_) => return true,
        };
        // No value at all fails, as a value that matches none.
        c.aggregate_values(key)
            .any(|v| extra_spec_matches(Some(v), req))
    })
}

/// ComputeCapabilitiesFilter: every `capabilities:`-scoped extra spec (and every
/// unscoped one that names a host attribute) matches the host's value.
pub fn compute_capabilities(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    let Some(specs) = r.extra_specs else {
        return true;
    };
    specs.iter().all(|(key, req)| {
        let (key, req): (&str, Cow<'_, str>) = if key == "hw:maxphysaddr_bits" {
            (
                "capabilities:cpu_info:maxphysaddr:bits",
                Cow::Owned(format!(">= {req}")),
            )
        } else {
            (key.as_str(), Cow::Borrowed(req.as_str()))
        };
        match key.split_once(':') {
            // Unscoped: checked only when it names a host attribute.
            None => c
                .capability(key)
                .is_none_or(|v| extra_spec_matches(Some(&v), &req)),
            Some(("capabilities", path)) => c
                .capability(path)
                .is_some_and(|v| extra_spec_matches(Some(&v), &req)),
            Some(_) => true,
        }
    })
}

/// ImagePropertiesFilter: the host supports the image's `hw_architecture`,
/// `img_hv_type` and `hw_vm_mode` (canonicalised as Nova does).
pub fn image_properties(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    let Some(props) = r.image_properties else {
        return true;
    };
    let arch = props.get("hw_architecture").map(|a| canonical_arch(a));
    let hv = props.get("img_hv_type").map(|h| canonical_hv_type(h));
    let mode = props.get("hw_vm_mode").map(|m| canonical_vm_mode(m));
    if arch.is_none() && hv.is_none() && mode.is_none() {
        return true;
    }
    c.capabilities.supported_instances.iter().any(|(a, h, m)| {
        arch.as_deref().is_none_or(|x| x == a)
            && hv.as_deref().is_none_or(|x| x == h)
            && mode.as_deref().is_none_or(|x| x == m)
    })
}

/// SameHostFilter: with a `same_host` hint, the host runs one of those instances.
pub fn same_host(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    r.same_host.is_empty() || r.same_host.iter().any(|i| c.hosts_instance(i))
}

/// DifferentHostFilter: with a `different_host` hint, the host runs none of them.
pub fn different_host(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    !r.different_host.iter().any(|i| c.hosts_instance(i))
}

/// ServerGroupAntiAffinityFilter: fewer than `max_server_per_host` members of an
/// anti-affinity group on the host (a move may stay on the host it is on).
pub fn group_anti_affinity(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    match r.group {
        Some(g) if g.policy == Policy::AntiAffinity => {
            r.instance.is_some_and(|i| c.hosts_instance(&i))
                || c.group_members < g.max_server_per_host.max(1)
        }
        _ => true,
    }
}

/// ServerGroupAffinityFilter: once a member of an affinity group is placed, only hosts
/// with members.
pub fn group_affinity(c: &Candidate<'_>, r: &Request<'_>) -> bool {
    match r.group {
        Some(g) if g.policy == Policy::Affinity => g.placed == 0 || c.group_members > 0,
        _ => true,
    }
}

/// Nova's `extra_specs_ops.match`: `req` is a plain value (string equality) or an
/// operator followed by operands: `=` (numeric >=), `==`, `!=`, `>=`, `<=` (numeric),
/// `s==`, `s!=`, `s<`, `s<=`, `s>`, `s>=` (string), `<in>` (substring), `<all-in>`
/// (every word is a substring), `<or>` (one of the alternatives).
pub fn extra_spec_matches(value: Option<&str>, req: &str) -> bool {
    let mut words = req.split_whitespace();
    let op = words.next();
    let known = matches!(
        op,
        Some(
            "=" | "<in>"
                | "<all-in>"
                | "=="
                | "!="
                | ">="
                | "<="
                | "s=="
                | "s!="
                | "s<"
                | "s<="
                | "s>"
                | "s>="
                | "<or>"
        )
    );
    let Some(op) = op.filter(|_| known) else {
        return value == Some(req);
    };
    let Some(value) = value else {
        return false;
    };
    let rest: Vec<&str> = words.collect();
    if op == "<or>" {
        // `<or> v1 <or> v2`: the alternatives are every other word.
        return rest.iter().step_by(2).any(|w| *w == value);
    }
    let Some(first) = rest.first().copied() else {
        return false;
    };
    let num = |f: fn(f64, f64) -> bool| match (value.parse::<f64>(), first.parse::<f64>()) {
        (Ok(a), Ok(b)) => f(a, b),
        _ => false,
    };
    match op {
        "=" | ">=" => num(|a, b| a >= b),
        "==" => num(|a, b| a == b),
        "!=" => num(|a, b| a != b),
        "<=" => num(|a, b| a <= b),
        "<in>" => value.contains(first),
        "<all-in>" => rest.iter().all(|w| value.contains(w)),
        "s==" => value == first,
        "s!=" => value != first,
        "s<" => value < first,
        "s<=" => value <= first,
        "s>" => value > first,
        "s>=" => value >= first,
        _ => false,
    }
}

/// Lower case, borrowed when it already is.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Nova's `Architecture.canonicalize`.
pub fn canonical_arch(a: &str) -> Cow<'_, str> {
    let a = lower(a);
    match a.as_ref() {
        "i386" | "i486" | "i586" | "x86" => "i686".into(),
        "amd64" | "x64" => "x86_64".into(),
        "arm64" => "aarch64".into(),
        "armv7" => "armv7l".into(),
        "ppc64el" => "ppc64le".into(),
        _ => a,
    }
}

/// Nova's `HVType.canonicalize`.
pub fn canonical_hv_type(h: &str) -> Cow<'_, str> {
    let h = lower(h);
    if h == "xapi" {
        "xen".into()
    } else {
        h
    }
}

/// Nova's `VMMode.canonicalize`.
pub fn canonical_vm_mode(m: &str) -> Cow<'_, str> {
    let m = lower(m);
    match m.as_ref() {
        "pv" => "xen".into(),
        "hv" | "baremetal" => "hvm".into(),
        _ => m,
    }
}

/// Weigher multipliers (Nova's `[filter_scheduler] *_weight_multiplier`): positive
/// spreads (prefers more of the weighed quantity), negative packs, 0 ignores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Multipliers {
    /// RAMWeigher (free RAM), default 1.0.
    pub ram: f64,
    /// CPUWeigher (free vCPUs), default 1.0.
    pub cpu: f64,
    /// DiskWeigher (free disk), default 1.0.
    pub disk: f64,
    /// NumInstancesWeigher (instances on the host), default 0.0.
    pub num_instances: f64,
    /// ServerGroupSoftAffinityWeigher, default 1.0.
    pub soft_affinity: f64,
    /// ServerGroupSoftAntiAffinityWeigher, default 1.0.
    pub soft_anti_affinity: f64,
}

impl Default for Multipliers {
    fn default() -> Self {
        Multipliers {
            ram: 1.0,
            cpu: 1.0,
            disk: 1.0,
            num_instances: 0.0,
            soft_affinity: 1.0,
            soft_anti_affinity: 1.0,
        }
    }
}

/// Scheduler settings the decision reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Weigher multipliers.
    pub multipliers: Multipliers,
    /// Nova's `host_subset_size`: the first host is chosen among the best N (>= 1).
    pub host_subset_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            multipliers: Multipliers::default(),
            host_subset_size: 1,
        }
    }
}

/// A named weigher: a raw weight per candidate (higher wins before the multiplier).
#[derive(Debug, Clone, Copy)]
pub struct Weigher {
    /// Nova's class name.
    pub name: &'static str,
    /// Its multiplier in the settings.
    pub multiplier: fn(&Multipliers) -> f64,
    /// The raw weight.
    pub weigh: fn(&Candidate<'_>, &Request<'_>) -> f64,
}

/// Every weigher.
pub const WEIGHERS: &[Weigher] = &[
    Weigher {
        name: "RAMWeigher",
        multiplier: |m| m.ram,
        weigh: |c, _| c.free().ram_mb as f64,
    },
    Weigher {
        name: "CPUWeigher",
        multiplier: |m| m.cpu,
        weigh: |c, _| c.free().vcpus as f64,
    },
    Weigher {
        name: "DiskWeigher",
        multiplier: |m| m.disk,
        weigh: |c, _| c.free().disk_gb as f64,
    },
    Weigher {
        name: "NumInstancesWeigher",
        multiplier: |m| m.num_instances,
        weigh: |c, _| c.num_instances() as f64,
    },
    Weigher {
        name: "ServerGroupSoftAffinityWeigher",
        multiplier: |m| m.soft_affinity,
        weigh: |c, r| match r.group {
            Some(g) if g.policy == Policy::SoftAffinity => c.group_members as f64,
            _ => 0.0,
        },
    },
    Weigher {
        name: "ServerGroupSoftAntiAffinityWeigher",
        multiplier: |m| m.soft_anti_affinity,
        weigh: |c, r| match r.group {
            Some(g) if g.policy == Policy::SoftAntiAffinity => -(c.group_members as f64),
            _ => 0.0,
        },
    },
];

/// Nova's `normalize`: values mapped to [0, 1] between their min and max; all equal -> 0.
pub fn normalize(values: &mut [f64]) {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let range = max - min;
    for v in values.iter_mut() {
        *v = if range > 0.0 { (*v - min) / range } else { 0.0 };
    }
}

/// How many hosts one filter received and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterRun {
    /// The filter's name.
    pub name: &'static str,
    /// Hosts it received.
    pub start: usize,
    /// Hosts it kept.
    pub end: usize,
}

/// The outcome of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Indexes into the candidates, best first (empty: no valid host).
    pub order: Vec<usize>,
    /// Each filter that ran, in order (filtering stops at the first that kept none).
    pub filters: Vec<FilterRun>,
}

/// Nova's NoValidHost message.
pub const NO_VALID_HOST: &str = "No valid host was found. There are not enough hosts available.";

impl Decision {
    /// Nova's filter summary: `['ComputeFilter: (start: 3, end: 3)', ...]`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .filters
            .iter()
            .map(|f| format!("'{}: (start: {}, end: {})'", f.name, f.start, f.end))
            .collect();
        format!("[{}]", parts.join(", "))
    }

    /// The filter that removed the last hosts, if filtering removed them all.
    pub fn refused_by(&self) -> Option<&'static str> {
        self.filters.last().filter(|f| f.end == 0).map(|f| f.name)
    }

    /// The details of a NoValidHost fault, as Nova logs them: which filters removed
    /// the hosts (`Filtering removed all hosts for the request with instance ID '...'.
    /// Filter results: [...]`), or that there was no host at all.
    pub fn no_valid_host_details(&self, instance: &InstanceId) -> String {
        if self.filters.first().is_none_or(|f| f.start == 0) {
            return format!(
                "{NO_VALID_HOST} No compute hosts for the request with instance ID '{instance}'."
            );
        }
        format!(
            "{NO_VALID_HOST} Filtering removed all hosts for the request with instance ID '{instance}'. Filter results: {}",
            self.summary()
        )
    }
}

/// Runs [`FILTERS`] then [`WEIGHERS`] over `candidates`. `pick` chooses the first host
/// among the best `host_subset_size` (any value; e.g. random, or 0 in tests).
pub fn decide(
    candidates: &[Candidate<'_>],
    req: &Request<'_>,
    cfg: &Config,
    pick: u64,
) -> Decision {
    let mut alive: Vec<usize> = (0..candidates.len()).collect();
    let mut filters = Vec::with_capacity(FILTERS.len());
    for f in FILTERS {
        let start = alive.len();
        alive.retain(|&i| (f.passes)(&candidates[i], req));
        filters.push(FilterRun {
            name: f.name,
            start,
            end: alive.len(),
        });
        if alive.is_empty() {
            break;
        }
    }
    let order = weigh(candidates, alive, req, cfg, pick);
    Decision { order, filters }
}

/// Orders the survivors by weight (ties by name), then applies `host_subset_size`.
fn weigh(
    candidates: &[Candidate<'_>],
    mut alive: Vec<usize>,
    req: &Request<'_>,
    cfg: &Config,
    pick: u64,
) -> Vec<usize> {
    if alive.len() > 1 {
        let mut total = vec![0.0f64; alive.len()];
        let mut raw = vec![0.0f64; alive.len()];
        for w in WEIGHERS {
            let m = (w.multiplier)(&cfg.multipliers);
            if m == 0.0 {
                continue;
            }
            for (slot, &i) in raw.iter_mut().zip(&alive) {
                *slot = (w.weigh)(&candidates[i], req);
            }
            normalize(&mut raw);
            for (t, r) in total.iter_mut().zip(&raw) {
                *t += m * r;
            }
        }
        let mut keyed: Vec<(f64, usize)> = total.into_iter().zip(alive).collect();
        keyed.sort_unstable_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| candidates[a.1].name().cmp(candidates[b.1].name()))
        });
        alive = keyed.into_iter().map(|(_, i)| i).collect();
    }
    let subset = cfg.host_subset_size.max(1).min(alive.len());
    if subset > 1 {
        let chosen = (pick % subset as u64) as usize;
        let h = alive.remove(chosen);
        alive.insert(0, h);
    }
    alive
}

/// Candidate hosts that pass every filter, best first, with the service state the hosts
/// record (enabled unless disabled or deleted, up unless forced down), no aggregates,
/// the simulated capabilities and the default settings.
pub fn choose<'h>(hosts: impl IntoIterator<Item = &'h Host>, req: &Request<'_>) -> Vec<&'h Host> {
    let caps = Capabilities::simulated();
    let hosts: Vec<&Host> = hosts.into_iter().collect();
    let candidates: Vec<Candidate<'_>> = hosts
        .iter()
        .map(|h| Candidate {
            host: h,
            availability_zone: &h.spec.availability_zone,
            aggregates: &[],
            enabled: !h.service.disabled && !h.service.deleted,
            up: !h.service.forced_down,
            capabilities: &caps,
            pending: Resources::default(),
            group_members: 0,
        })
        .collect();
    let d = decide(&candidates, req, &Config::default(), 0);
    d.order.into_iter().map(|i| hosts[i]).collect()
}
