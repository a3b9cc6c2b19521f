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
//!   0, Nova's `normalize`), multiplied by the weigher's multiplier and summed; the
//!   best [`RANKED`] hosts are ordered by total weight, ties by name, so decisions are
//!   reproducible; the other survivors follow them unordered (none outweighs them).
//! - A filter or weigher whose `applies` is false for the request is not run: it would
//!   pass every host (or weigh all hosts alike, normalised to 0). What the filters read
//!   from the request is parsed once ([`Prepared`]), and what they read from an
//!   aggregate's metadata or a driver's capabilities once per decision (by address);
//!   `decide_agrees_with_the_plain_definition` checks the outcome against the plain
//!   per-filter, per-host definition.
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

    /// Values of `key` over the host's aggregates, comma-separated values split (Nova's
    /// `aggregate_metadata_get_by_host`).
    fn aggregate_values<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s str> {
        self.aggregates
            .iter()
            .filter_map(move |m| m.get(key))
            .flat_map(|v| v.split(',').map(str::trim))
    }

    /// A HostState attribute, as a string; borrowed where it can be, so most checks
    /// allocate nothing.
    fn capability(&self, path: &Capability) -> Option<Cow<'_, str>> {
        let num = |n: u64| Some(Cow::Owned(n.to_string()));
        match path {
            Capability::CpuInfo(key) => self
                .capabilities
                .cpu_info
                .get(key)
                .map(|v| Cow::Borrowed(v.as_str())),
            Capability::HypervisorType => Some(Cow::Borrowed(&self.capabilities.hypervisor_type)),
            Capability::HypervisorVersion => num(self.capabilities.hypervisor_version),
            Capability::HostName => Some(Cow::Borrowed(self.name().as_str())),
            Capability::FreeRamMb => num(self.host.free().ram_mb),
            Capability::FreeDiskMb => num(self.host.free().disk_gb * 1024),
            Capability::TotalUsableRamMb => num(self.host.spec.capacity().ram_mb),
            Capability::TotalUsableDiskGb => num(self.host.spec.capacity().disk_gb),
            Capability::VcpusTotal => num(self.host.spec.total.vcpus),
            Capability::VcpusUsed => num(self.host.used.vcpus),
            Capability::NumInstances => num(self.num_instances() as u64),
            Capability::Stat(key) => self
                .capabilities
                .stats
                .get(key)
                .map(|v| Cow::Borrowed(v.as_str())),
            Capability::Unknown => None,
        }
    }
}

/// A HostState attribute an extra spec names (Nova's ComputeCapabilitiesFilter path:
/// `capabilities:` stripped, segments joined by `:`), resolved once per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// `cpu_info:<key>`.
    CpuInfo(String),
    /// `hypervisor_type`.
    HypervisorType,
    /// `hypervisor_version`.
    HypervisorVersion,
    /// `hypervisor_hostname`, `host`, `nodename`.
    HostName,
    /// `free_ram_mb`.
    FreeRamMb,
    /// `free_disk_mb`.
    FreeDiskMb,
    /// `total_usable_ram_mb`.
    TotalUsableRamMb,
    /// `total_usable_disk_gb`.
    TotalUsableDiskGb,
    /// `vcpus_total`.
    VcpusTotal,
    /// `vcpus_used`.
    VcpusUsed,
    /// `num_instances`.
    NumInstances,
    /// Any other single-segment name: a `stats` entry.
    Stat(String),
    /// A path that names nothing.
    Unknown,
}

impl Capability {
    /// Whether the attribute is read from the [`Capabilities`] alone (not from the
    /// host's name, inventory or claims).
    fn of_capabilities_only(&self) -> bool {
        matches!(
            self,
            Capability::CpuInfo(_)
                | Capability::HypervisorType
                | Capability::HypervisorVersion
                | Capability::Stat(_)
                | Capability::Unknown
        )
    }

    /// The attribute a path names.
    pub fn parse(path: &str) -> Capability {
        if let Some(rest) = path.strip_prefix("cpu_info:") {
            return Capability::CpuInfo(rest.to_string());
        }
        match path {
            "hypervisor_type" => Capability::HypervisorType,
            "hypervisor_version" => Capability::HypervisorVersion,
            "hypervisor_hostname" | "host" | "nodename" => Capability::HostName,
            "free_ram_mb" => Capability::FreeRamMb,
            "free_disk_mb" => Capability::FreeDiskMb,
            "total_usable_ram_mb" => Capability::TotalUsableRamMb,
            "total_usable_disk_gb" => Capability::TotalUsableDiskGb,
            "vcpus_total" => Capability::VcpusTotal,
            "vcpus_used" => Capability::VcpusUsed,
            "num_instances" => Capability::NumInstances,
            key if !key.contains(':') => Capability::Stat(key.to_string()),
            _ => Capability::Unknown,
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
    /// The host the instance is on (a move's source; `None` for a build): Nova's
    /// HostState lists a host's instances by their `host`, and reading it here spares
    /// the group filter a walk of every host's claims.
    pub instance_host: Option<&'a HostName>,
    /// Its project (AggregateMultiTenancyIsolation).
    pub project_id: &'a str,
    /// The flavor's extra specs.
    pub extra_specs: Option<&'a BTreeMap<String, String>>,
    /// The image's properties, unquoted (`hw_architecture`, `img_hv_type`, `hw_vm_mode`).
    pub image_properties: Option<&'a BTreeMap<String, String>>,
    /// `same_host` scheduler hint, resolved: the hosts of the instances it names (the
    /// host must be one of them). The caller resolves the instances through its
    /// instance view, as Nova's HostState lists a host's instances by their `host`, so
    /// the filter compares names instead of walking every host's claims. `None`: no
    /// hint; `Some(&[])`: the instances run nowhere, so no host passes (as Nova).
    pub same_host: Option<&'a [HostName]>,
    /// `different_host` scheduler hint, resolved the same way: the host must be none
    /// of them.
    pub different_host: &'a [HostName],
    /// The `group` scheduler hint's group.
    pub group: Option<GroupRequest>,
}

/// A request with what the filters read from it parsed once per decision rather than
/// once per host: the image's canonical requirements, the extra specs split by the
/// filter that checks them with their operators parsed, capability paths resolved.
/// Derefs to the [`Request`].
#[derive(Debug, Clone)]
pub struct Prepared<'r> {
    request: &'r Request<'r>,
    /// Canonical architecture, hypervisor type and VM mode the image requires.
    image: [Option<Cow<'r, str>>; 3],
    /// AggregateInstanceExtraSpecsFilter's specs: (aggregate metadata key, matcher).
    aggregate_specs: Vec<(&'r str, Matcher)>,
    /// ComputeCapabilitiesFilter's specs: (attribute, scoped, matcher). An unscoped spec
    /// is checked only when the host has the attribute; a scoped one needs it.
    capability_specs: Vec<(Capability, bool, Matcher)>,
    /// What the aggregate filters found in each aggregate's metadata, by its address:
    /// the caller's read model holds one metadata per aggregate, shared by its hosts,
    /// so each aggregate is read once per decision instead of once per host. A table
    /// of [`MEMO`] slots by hashed address (a collision only recomputes).
    memo: std::cell::RefCell<Vec<Option<(*const Metadata, AggregateFacts)>>>,
    /// The last hypervisor capabilities the ImagePropertiesFilter and the
    /// host-independent ComputeCapabilitiesFilter specs were checked against, with the
    /// outcomes: hosts of one driver share one [`Capabilities`], so this is one check
    /// per decision instead of one per host.
    caps_memo: std::cell::Cell<Option<(*const Capabilities, bool, bool)>>,
}

/// Slots of [`Prepared`]'s aggregate table (a power of two).
const MEMO: usize = 256;

/// The slot of an address (Fibonacci hashing of the address without its alignment bits).
fn memo_slot(addr: usize) -> usize {
    ((addr as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - MEMO.trailing_zeros()))
        as usize
}

/// What one aggregate's metadata says to the aggregate filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AggregateFacts {
    /// Bit `i`: one of its values of aggregate spec `i`'s key matches.
    specs: u64,
    /// It has `filter_tenant_id*` keys.
    restricted: bool,
    /// One of them names the request's project.
    allows: bool,
}

impl Prepared<'_> {
    /// Whether `caps` supports the image (ImagePropertiesFilter) and satisfies every
    /// capability spec that reads only the capabilities, remembered by address.
    fn caps_facts(&self, c: &Candidate<'_>) -> (bool, bool) {
        let key = c.capabilities as *const Capabilities;
        if let Some((k, image, specs)) = self.caps_memo.get() {
            if k == key {
                return (image, specs);
            }
        }
        let [arch, hv, mode] = &self.image;
        let image = (arch.is_none() && hv.is_none() && mode.is_none())
            || c.capabilities.supported_instances.iter().any(|(a, h, m)| {
                arch.as_deref().is_none_or(|x| x == a)
                    && hv.as_deref().is_none_or(|x| x == h)
                    && mode.as_deref().is_none_or(|x| x == m)
            });
        let specs = self
            .capability_specs
            .iter()
            .filter(|(cap, _, _)| cap.of_capabilities_only())
            .all(|spec| capability_spec_holds(c, spec));
        self.caps_memo.set(Some((key, image, specs)));
        (image, specs)
    }

    /// The facts of one aggregate, remembered by address.
    fn facts(&self, m: &Metadata) -> AggregateFacts {
        let key = m as *const Metadata;
        let slot = memo_slot(key as usize);
        if let Some((k, f)) = self.memo.borrow()[slot] {
            if k == key {
                return f;
            }
        }
        let mut facts = AggregateFacts {
            specs: 0,
            restricted: false,
            allows: false,
        };
        for (i, (spec, matcher)) in self.aggregate_specs.iter().enumerate() {
            let values = m
                .get(*spec)
                .into_iter()
                .flat_map(|v| v.split(',').map(str::trim));
            if values.clone().any(|v| matcher.matches(Some(v))) {
                facts.specs |= 1 << i;
            }
        }
        for (_, v) in m.iter().filter(|(k, _)| k.starts_with("filter_tenant_id")) {
            facts.restricted = true;
            facts.allows |= v.split(',').any(|t| t.trim() == self.project_id);
        }
        // A slot holds the last aggregate that hashed to it: a collision only costs a
        // recomputation.
        self.memo.borrow_mut()[slot] = Some((key, facts));
        facts
    }
}

impl<'r> Prepared<'r> {
    /// Parses what the filters read from `request`.
    pub fn new(request: &'r Request<'r>) -> Prepared<'r> {
        let image = match request.image_properties {
            Some(props) => {
                let [arch, hv, mode] = IMAGE_KEYS.map(|k| props.get(k).map(String::as_str));
                [
                    arch.map(canonical_arch),
                    hv.map(canonical_hv_type),
                    mode.map(canonical_vm_mode),
                ]
            }
            None => [None, None, None],
        };
        let mut aggregate_specs = Vec::new();
        let mut capability_specs = Vec::new();
        for (key, req) in request.extra_specs.into_iter().flatten() {
            let (key, req) = (key.as_str(), req.as_str());
            match key.split_once(':') {
                None => {
                    aggregate_specs.push((key, Matcher::parse(req)));
                    capability_specs.push((Capability::parse(key), false, Matcher::parse(req)));
                }
                Some(("aggregate_instance_extra_specs", rest)) => {
                    aggregate_specs.push((rest, Matcher::parse(req)));
                }
                Some(("capabilities", path)) => {
                    capability_specs.push((Capability::parse(path), true, Matcher::parse(req)));
                }
                // Nova's ComputeCapabilitiesFilter reads this one as a minimum.
                Some(("hw", "maxphysaddr_bits")) => capability_specs.push((
                    Capability::CpuInfo("maxphysaddr:bits".into()),
                    true,
                    Matcher::parse(&format!(">= {req}")),
                )),
                Some(_) => {}
            }
        }
        Prepared {
            request,
            image,
            aggregate_specs,
            capability_specs,
            memo: std::cell::RefCell::new(vec![None; MEMO]),
            caps_memo: Default::default(),
        }
    }
}

impl<'r> std::ops::Deref for Prepared<'r> {
    type Target = Request<'r>;

    fn deref(&self) -> &Request<'r> {
        self.request
    }
}

/// An operator of Nova's `extra_specs_ops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// No operator: the whole spec is compared as a string.
    Plain,
    /// `=` and `>=` (numeric).
    Ge,
    /// `==` (numeric).
    Eq,
    /// `!=` (numeric).
    Ne,
    /// `<=` (numeric).
    Le,
    /// `<in>`.
    In,
    /// `<all-in>`.
    AllIn,
    /// `s==`, `s!=`, `s<`, `s<=`, `s>`, `s>=`.
    Str(std::cmp::Ordering, bool),
    /// `<or>`.
    Or,
}

/// One extra spec's requirement, parsed once (Nova's `extra_specs_ops.match`).
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    op: Op,
    /// The operands (for `Plain`, the whole spec; for `<or>`, the alternatives).
    operands: Vec<String>,
    /// The first operand as a number, for the numeric operators.
    number: Option<f64>,
}

impl Matcher {
    /// Parses `req`: a plain value or an operator followed by operands.
    pub fn parse(req: &str) -> Matcher {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let mut words = req.split_whitespace();
        let op = match words.next() {
            Some("=" | ">=") => Op::Ge,
            Some("==") => Op::Eq,
            Some("!=") => Op::Ne,
            Some("<=") => Op::Le,
            Some("<in>") => Op::In,
            Some("<all-in>") => Op::AllIn,
            Some("s==") => Op::Str(Equal, true),
            Some("s!=") => Op::Str(Equal, false),
            Some("s<") => Op::Str(Less, true),
            Some("s<=") => Op::Str(Greater, false),
            Some("s>") => Op::Str(Greater, true),
            Some("s>=") => Op::Str(Less, false),
            Some("<or>") => Op::Or,
            _ => {
                return Matcher {
                    op: Op::Plain,
                    operands: vec![req.to_string()],
                    number: None,
                }
            }
        };
        let operands: Vec<String> = if op == Op::Or {
            // `<or> v1 <or> v2`: the alternatives are every other word.
            words.step_by(2).map(str::to_string).collect()
        } else {
            words.map(str::to_string).collect()
        };
        let number = operands.first().and_then(|w| w.parse().ok());
        Matcher {
            op,
            operands,
            number,
        }
    }

    /// Whether the host's `value` satisfies the requirement (no value: only a plain
    /// requirement could, and it cannot).
    pub fn matches(&self, value: Option<&str>) -> bool {
        if self.op == Op::Plain {
            return value == self.operands.first().map(String::as_str);
        }
        let Some(value) = value else {
            return false;
        };
        if self.op == Op::Or {
            return self.operands.iter().any(|w| w == value);
        }
        let Some(first) = self.operands.first() else {
            return false;
        };
        let num = |f: fn(f64, f64) -> bool| match (value.parse::<f64>(), self.number) {
            (Ok(a), Some(b)) => f(a, b),
            _ => false,
        };
        match self.op {
            Op::Ge => num(|a, b| a >= b),
            Op::Eq => num(|a, b| a == b),
            Op::Ne => num(|a, b| a != b),
            Op::Le => num(|a, b| a <= b),
            Op::In => value.contains(first.as_str()),
            Op::AllIn => self.operands.iter().all(|w| value.contains(w.as_str())),
            // (ordering, true): the comparison is that ordering; (ordering, false): it
            // is anything but that ordering (`s!=`, `s<=` = not greater, `s>=`).
            Op::Str(o, is) => (value.cmp(first.as_str()) == o) == is,
            Op::Plain | Op::Or => false,
        }
    }
}

/// A named filter: a pure predicate on one candidate.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    /// Nova's class name (shown in the NoValidHost summary).
    pub name: &'static str,
    /// True when the host may take the request.
    pub passes: fn(&Candidate<'_>, &Prepared<'_>) -> bool,
    /// False when the request gives the filter nothing to check (no hint, no zone, no
    /// extra specs...): `passes` is then true for every host, so it is not run.
    pub applies: fn(&Request<'_>) -> bool,
}

/// For filters that check every request.
fn always(_: &Request<'_>) -> bool {
    true
}

/// Every filter, in the order they run. The requested/excluded host and placement
/// checks come first (Nova resolves them before the filters, with placement).
pub const FILTERS: &[Filter] = &[
    Filter {
        name: "RequestedHost",
        passes: requested_host,
        applies: |r| !r.exclude.is_empty() || r.force_host.is_some(),
    },
    Filter {
        name: "PlacementFilter",
        passes: placement,
        applies: always,
    },
    Filter {
        name: "ComputeFilter",
        passes: compute,
        applies: always,
    },
    Filter {
        name: "AvailabilityZoneFilter",
        passes: availability_zone,
        applies: |r| r.availability_zone.is_some(),
    },
    Filter {
        name: "AggregateMultiTenancyIsolation",
        passes: multi_tenancy,
        applies: always,
    },
    Filter {
        name: "AggregateInstanceExtraSpecsFilter",
        passes: aggregate_extra_specs,
        applies: |r| r.extra_specs.is_some_and(|s| !s.is_empty()),
    },
    Filter {
        name: "ComputeCapabilitiesFilter",
        passes: compute_capabilities,
        applies: |r| r.extra_specs.is_some_and(|s| !s.is_empty()),
    },
    Filter {
        name: "ImagePropertiesFilter",
        passes: image_properties,
        applies: |r| {
            r.image_properties
                .is_some_and(|p| IMAGE_KEYS.iter().any(|k| p.contains_key(*k)))
        },
    },
    Filter {
        name: "SameHostFilter",
        passes: same_host,
        applies: |r| r.same_host.is_some(),
    },
    Filter {
        name: "DifferentHostFilter",
        passes: different_host,
        applies: |r| !r.different_host.is_empty(),
    },
    Filter {
        name: "ServerGroupAntiAffinityFilter",
        passes: group_anti_affinity,
        applies: |r| r.group.is_some_and(|g| g.policy == Policy::AntiAffinity),
    },
    Filter {
        name: "ServerGroupAffinityFilter",
        passes: group_affinity,
        applies: |r| {
            r.group
                .is_some_and(|g| g.policy == Policy::Affinity && g.placed > 0)
        },
    },
];

/// The host is not excluded and is the forced host when one is given.
pub fn requested_host(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    !r.exclude.contains(c.name()) && r.force_host.is_none_or(|f| f == c.name())
}

/// The request fits under the allocation ratios (placement's VCPU / MEMORY_MB / DISK_GB).
pub fn placement(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    c.host.misfit(r.resources).is_none()
}

/// ComputeFilter: the compute service is enabled and up.
pub fn compute(c: &Candidate<'_>, _: &Prepared<'_>) -> bool {
    c.enabled && c.up
}

/// AvailabilityZoneFilter: the host is in the requested zone.
pub fn availability_zone(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    r.availability_zone
        .is_none_or(|az| az == c.availability_zone)
}

/// AggregateMultiTenancyIsolation: a host in aggregates with `filter_tenant_id*` keys
/// only takes those projects; hosts without such keys take everyone.
pub fn multi_tenancy(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    let mut restricted = false;
    for m in c.aggregates {
        let f = r.facts(m);
        if f.allows {
            return true;
        }
        restricted |= f.restricted;
    }
    !restricted
}

/// AggregateInstanceExtraSpecsFilter: every unscoped or
/// `aggregate_instance_extra_specs:` extra spec matches (Nova's operators) one of the
/// values its key has in the host's aggregates; a key no aggregate has fails.
pub fn aggregate_extra_specs(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    if r.aggregate_specs.is_empty() {
        return true;
    }
    if r.aggregate_specs.len() > 64 {
        // More specs than the facts' bits: read the host's aggregates directly.
        return r.aggregate_specs.iter().all(|(key, m)| {
            // No value at all fails, as a value that matches none.
            c.aggregate_values(key).any(|v| m.matches(Some(v)))
        });
    }
    let all = u64::MAX >> (64 - r.aggregate_specs.len());
    let have = c.aggregates.iter().fold(0, |acc, m| acc | r.facts(m).specs);
    have & all == all
}

/// ComputeCapabilitiesFilter: every `capabilities:`-scoped extra spec (and every
/// unscoped one that names a host attribute) matches the host's value.
pub fn compute_capabilities(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    r.caps_facts(c).1
        && r.capability_specs
            .iter()
            .filter(|(cap, _, _)| !cap.of_capabilities_only())
            .all(|spec| capability_spec_holds(c, spec))
}

/// One ComputeCapabilitiesFilter spec on one host.
fn capability_spec_holds(
    c: &Candidate<'_>,
    (cap, scoped, m): &(Capability, bool, Matcher),
) -> bool {
    match c.capability(cap) {
        Some(v) => m.matches(Some(&v)),
        None => !scoped,
    }
}

/// The image properties the ImagePropertiesFilter reads.
const IMAGE_KEYS: [&str; 3] = ["hw_architecture", "img_hv_type", "hw_vm_mode"];

/// ImagePropertiesFilter: the host supports the image's `hw_architecture`,
/// `img_hv_type` and `hw_vm_mode` (canonicalised as Nova does).
pub fn image_properties(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    r.caps_facts(c).0
}

/// SameHostFilter: with a `same_host` hint, the host runs one of those instances.
pub fn same_host(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    r.same_host.is_none_or(|hosts| hosts.contains(c.name()))
}

/// DifferentHostFilter: with a `different_host` hint, the host runs none of them.
pub fn different_host(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    !r.different_host.contains(c.name())
}

/// ServerGroupAntiAffinityFilter: fewer than `max_server_per_host` members of an
/// anti-affinity group on the host (a move may stay on the host it is on).
pub fn group_anti_affinity(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
    match r.group {
        Some(g) if g.policy == Policy::AntiAffinity => {
            c.group_members < g.max_server_per_host.max(1)
                || r.instance_host.is_some_and(|h| h == c.name())
        }
        _ => true,
    }
}

/// ServerGroupAffinityFilter: once a member of an affinity group is placed, only hosts
/// with members.
pub fn group_affinity(c: &Candidate<'_>, r: &Prepared<'_>) -> bool {
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
    Matcher::parse(req).matches(value)
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
    /// The raw weight, from the candidate, the request and the candidate's free
    /// resources ([`Candidate::free`], computed once per host for every weigher).
    pub weigh: fn(&Candidate<'_>, &Request<'_>, &Resources) -> f64,
    /// False when `weigh` is the same for every host of the request (e.g. the group
    /// weighers without a group): normalised to 0, so it is not run.
    pub applies: fn(&Request<'_>) -> bool,
}

/// Every weigher.
pub const WEIGHERS: &[Weigher] = &[
    Weigher {
        name: "RAMWeigher",
        multiplier: |m| m.ram,
        weigh: |_, _, free| free.ram_mb as f64,
        applies: always,
    },
    Weigher {
        name: "CPUWeigher",
        multiplier: |m| m.cpu,
        weigh: |_, _, free| free.vcpus as f64,
        applies: always,
    },
    Weigher {
        name: "DiskWeigher",
        multiplier: |m| m.disk,
        weigh: |_, _, free| free.disk_gb as f64,
        applies: always,
    },
    Weigher {
        name: "NumInstancesWeigher",
        multiplier: |m| m.num_instances,
        weigh: |c, _, _| c.num_instances() as f64,
        applies: always,
    },
    Weigher {
        name: "ServerGroupSoftAffinityWeigher",
        multiplier: |m| m.soft_affinity,
        weigh: |c, r, _| match r.group {
            Some(g) if g.policy == Policy::SoftAffinity => c.group_members as f64,
            _ => 0.0,
        },
        applies: |r| r.group.is_some_and(|g| g.policy == Policy::SoftAffinity),
    },
    Weigher {
        name: "ServerGroupSoftAntiAffinityWeigher",
        multiplier: |m| m.soft_anti_affinity,
        weigh: |c, r, _| match r.group {
            Some(g) if g.policy == Policy::SoftAntiAffinity => -(c.group_members as f64),
            _ => 0.0,
        },
        applies: |r| {
            r.group
                .is_some_and(|g| g.policy == Policy::SoftAntiAffinity)
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

/// Hosts of a decision put in weight order; the survivors after them follow in no
/// particular order (all weigh no more than the last ranked one). The scheduler claims
/// the first that fits, so the order of a long tail is never read in practice, and a
/// partial selection is linear where a full sort of 10,000 hosts is not.
pub const RANKED: usize = 16;

/// Runs [`FILTERS`] then [`WEIGHERS`] over `candidates`. `pick` chooses the first host
/// among the best `host_subset_size` (any value; e.g. random, or 0 in tests).
///
/// Candidate-major: every candidate goes through the filters that apply to the request
/// until one refuses it, which is the same outcome as running each filter over the
/// survivors of the previous one (filters are pure), with one pass over the candidates
/// instead of one per filter. The first filter that refused a candidate is counted, and
/// the per-filter start/end counts follow from those counts.
pub fn decide(
    candidates: &[Candidate<'_>],
    req: &Request<'_>,
    cfg: &Config,
    pick: u64,
) -> Decision {
    const N: usize = FILTERS.len();
    let active: Vec<(usize, &Filter)> = FILTERS
        .iter()
        .enumerate()
        .filter(|(_, f)| (f.applies)(req))
        .collect();
    let prepared = Prepared::new(req);
    // The weighers that count (they apply and their multiplier is not 0), run on each
    // survivor as it leaves the filters, while its host is still in cache.
    let weighers: Vec<(f64, Weigh)> = WEIGHERS
        .iter()
        .filter(|w| (w.applies)(req))
        .map(|w| ((w.multiplier)(&cfg.multipliers), w.weigh))
        .filter(|(m, _)| *m != 0.0)
        .collect();
    let k = weighers.len();
    let mut raw: Vec<f64> = Vec::with_capacity(candidates.len() * k);
    let mut lo = vec![f64::INFINITY; k];
    let mut hi = vec![f64::NEG_INFINITY; k];
    let mut refused = [0usize; N];
    let mut alive: Vec<usize> = Vec::with_capacity(candidates.len());
    'next: for (i, c) in candidates.iter().enumerate() {
        for &(k, f) in &active {
            if !(f.passes)(c, &prepared) {
                refused[k] += 1;
                continue 'next;
            }
        }
        alive.push(i);
        let free = c.free();
        for (j, (_, weigh)) in weighers.iter().enumerate() {
            let v = weigh(c, req, &free);
            raw.push(v);
            lo[j] = lo[j].min(v);
            hi[j] = hi[j].max(v);
        }
    }
    let mut filters = Vec::with_capacity(N);
    let mut left = candidates.len();
    for (f, gone) in FILTERS.iter().zip(refused) {
        filters.push(FilterRun {
            name: f.name,
            start: left,
            end: left - gone,
        });
        left -= gone;
        if left == 0 {
            break;
        }
    }
    // Nova's `normalize` folded into one factor per weigher (all equal -> 0).
    let scale: Vec<f64> = (0..k)
        .map(|j| {
            let range = hi[j] - lo[j];
            if range > 0.0 {
                weighers[j].0 / range
            } else {
                0.0
            }
        })
        .collect();
    let totals: Vec<(f64, usize)> = alive
        .iter()
        .enumerate()
        .map(|(row, &i)| {
            let vals = &raw[row * k..row * k + k];
            let total = (0..k).map(|j| scale[j] * (vals[j] - lo[j])).sum::<f64>();
            (total, i)
        })
        .collect();
    let order = rank(candidates, totals, cfg, pick);
    Decision { order, filters }
}

/// Survivors with their total weight: (weight, candidate index).
type Weighed = Vec<(f64, usize)>;

/// A weigher's function.
type Weigh = fn(&Candidate<'_>, &Request<'_>, &Resources) -> f64;

/// Orders the survivors by total weight (ties by name): the best [`RANKED`] (at least
/// `host_subset_size`) fully, the rest behind them; then applies `host_subset_size`.
///
/// The selection compares weights only; names are read for the hosts tied with the
/// last ranked weight (and the ranked few), not for every comparison of a sort.
fn rank(
    candidates: &[Candidate<'_>],
    mut keyed: Vec<(f64, usize)>,
    cfg: &Config,
    pick: u64,
) -> Vec<usize> {
    let ranked = RANKED.max(cfg.host_subset_size);
    let better = |a: &(f64, usize), b: &(f64, usize)| {
        b.0.total_cmp(&a.0)
            .then_with(|| candidates[a.1].name().cmp(candidates[b.1].name()))
    };
    if keyed.len() > ranked {
        keyed.select_nth_unstable_by(ranked - 1, |a, b| b.0.total_cmp(&a.0));
        let cut = keyed[ranked - 1].0;
        // Above the cut: all ranked. At the cut: the tie group, of which the
        // first-named fill the remaining places. Below: the tail.
        let (mut top, mut rest): (Weighed, Weighed) =
            keyed.into_iter().partition(|e| e.0.total_cmp(&cut).is_gt());
        let (mut ties, below): (Weighed, Weighed) =
            rest.drain(..).partition(|e| e.0.total_cmp(&cut).is_eq());
        let need = ranked - top.len();
        if ties.len() > need {
            ties.select_nth_unstable_by(need - 1, better);
        }
        let tail = ties.split_off(need.min(ties.len()));
        top.extend(ties);
        top.sort_unstable_by(better);
        top.extend(tail);
        top.extend(below);
        keyed = top;
    } else {
        keyed.sort_unstable_by(better);
    }
    let mut order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    let subset = cfg.host_subset_size.max(1).min(order.len());
    if subset > 1 {
        let chosen = (pick % subset as u64) as usize;
        let h = order.remove(chosen);
        order.insert(0, h);
    }
    order
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
