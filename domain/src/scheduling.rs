//! Pure host selection: filters then weighers, from a snapshot to an ordered list.
//!
//! Filters: the host's service accepts builds (not disabled, forced down or deleted:
//! Nova's ComputeFilter; liveness is checked by the scheduler), is not excluded, matches a forced host and availability zone when
//! given, and the request fits under the allocation ratios (Nova's VCPU / MEMORY_MB /
//! DISK_GB placement check). Weigher: most free RAM first (Nova's RAMWeigher with the
//! default multiplier 1.0), ties broken by name so decisions are reproducible.

use crate::host::{Host, Resources};
use crate::HostName;

/// What a scheduling request asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request<'a> {
    /// Resources to claim.
    pub resources: Resources,
    /// Hosts that may not be chosen (e.g. the source of a migration).
    pub exclude: &'a [HostName],
    /// Only this host may be chosen (admin-targeted migration).
    pub force_host: Option<&'a HostName>,
    /// Required availability zone.
    pub availability_zone: Option<&'a str>,
}

/// Candidate hosts that pass every filter, best first.
pub fn choose<'h>(hosts: impl IntoIterator<Item = &'h Host>, req: &Request<'_>) -> Vec<&'h Host> {
    let mut ok: Vec<&Host> = hosts
        .into_iter()
        .filter(|h| h.accepts_builds())
        .filter(|h| !req.exclude.contains(&h.spec.name))
        .filter(|h| req.force_host.is_none_or(|f| *f == h.spec.name))
        .filter(|h| {
            req.availability_zone
                .is_none_or(|az| az == h.spec.availability_zone)
        })
        .filter(|h| h.misfit(req.resources).is_none())
        .collect();
    ok.sort_by(|a, b| {
        b.free()
            .ram_mb
            .cmp(&a.free().ram_mb)
            .then_with(|| a.spec.name.cmp(&b.spec.name))
    });
    ok
}
