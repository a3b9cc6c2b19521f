//! Dedupe ids of the service writers, built in one place.
//!
//! Every append a service makes carries a dedupe id derived from what caused it, so a
//! retried or redelivered cause appends at most once (the log acknowledges a known id
//! as a duplicate; see docs/ARCHITECTURE.md, "Streams and subjects"). API commands use
//! a fresh id instead (their safety comes from OCC on the subject).
//!
//! Invariant: the formats are part of the log. A retry in flight across an upgrade must
//! produce the id its first attempt wrote, so a format here never changes (the test
//! below pins every one); a new kind of append gets a new prefix.

use std::fmt::Display;

use uuid::Uuid;

use crate::{CellName, ClaimId, HostName, ImageId, InstanceId, TaskState};

/// The claim token of a mapping or destination decision (`none` when no host fitted).
fn chosen(claim: Option<ClaimId>) -> String {
    claim.map_or_else(|| "none".into(), |c| c.to_string())
}

/// Scheduler, a claim on a host: `sched:claim:<claim>`.
pub fn sched_claim(claim: ClaimId) -> String {
    format!("sched:claim:{claim}")
}

/// Scheduler, mapping a build to its cell: `sched:map:<id>:<op>:<attempt>:<claim>`. The
/// chosen claim is part of the id, so two schedulers racing on one build never take
/// each other's mapping for their own.
pub fn sched_map(id: InstanceId, op: Uuid, attempt: u32, claim: Option<ClaimId>) -> String {
    format!("sched:map:{id}:{op}:{attempt}:{}", chosen(claim))
}

/// Scheduler, placing a build: `sched:place:<id>`.
pub fn sched_place(id: InstanceId) -> String {
    format!("sched:place:{id}")
}

/// Scheduler, choosing a destination (resize, migrate, unshelve):
/// `sched:dest:<id>:<op>:<attempt>:<claim>`.
pub fn sched_dest(id: InstanceId, op: Uuid, attempt: u32, claim: Option<ClaimId>) -> String {
    format!("sched:dest:{id}:{op}:{attempt}:{}", chosen(claim))
}

/// Placement, releasing a claim: `release:<claim>`.
pub fn release(claim: ClaimId) -> String {
    format!("release:{claim}")
}

/// Quota reactor, settling an instance's holding decided on ledger sequence `seq`:
/// `quota:<id>:<seq>`.
pub fn quota(id: InstanceId, seq: u64) -> String {
    format!("quota:{id}:{seq}")
}

/// Compute, reporting a task's outcome: `compute:<id>:<op>:<task>:<attempt>`.
pub fn compute(id: InstanceId, op: Uuid, task: TaskState, attempt: u32) -> String {
    format!("compute:{id}:{op}:{}:{attempt}", task.as_str())
}

/// Compute, a step of a snapshot's upload into its image (`step`: `formats`, `start`,
/// `finish`, `delete`): `compute:image:<image>:<step>`. One per image and step: a
/// retried upload repeats the id of the step it redoes.
pub fn compute_image(image: crate::ImageId, step: &str) -> String {
    format!("compute:image:{image}:{step}")
}

/// Compute, the power-state sync stopping a guest that powered itself off:
/// `compute:power-sync:<id>:<updated_at>`. One per observed state of the instance: two
/// agents (or two passes) seeing the same state stop it once; a later power-off of the
/// started server is a new id.
pub fn compute_power_sync(id: InstanceId, updated_at: crate::Timestamp) -> String {
    format!("compute:power-sync:{id}:{}", updated_at.0)
}

/// Compute, the power-state sync recording an observed power state:
/// `compute:power-state:<id>:<updated_at>:<power state code>`. Two agents (or two
/// passes) seeing the same instance in the same state record it once.
pub fn compute_power_state(
    id: InstanceId,
    updated_at: crate::Timestamp,
    observed: crate::PowerState,
) -> String {
    format!(
        "compute:power-state:{id}:{}:{}",
        updated_at.0,
        observed.code()
    )
}

/// Reconciler, timing out an operation: `tick:<id>:<op>:<attempt>`.
pub fn tick(id: InstanceId, op: Uuid, attempt: u32) -> String {
    format!("tick:{id}:{op}:{attempt}")
}

/// Reconciler, reclaiming a soft-deleted instance: `tick:<id>:reclaim:<updated_at µs>`.
pub fn tick_reclaim(id: InstanceId, updated_at: i64) -> String {
    format!("tick:{id}:reclaim:{updated_at}")
}

/// Reconciler, offloading a shelved instance: `tick:<id>:offload:<shelved_at µs>`.
pub fn tick_offload(id: InstanceId, shelved_at: i64) -> String {
    format!("tick:{id}:offload:{shelved_at}")
}

/// Bootstrap, creating a flavor: `bootstrap:flavor:<id>`.
pub fn bootstrap_flavor(id: impl Display) -> String {
    format!("bootstrap:flavor:{id}")
}

/// Bootstrap, creating a cell: `bootstrap:cell:<name>`.
pub fn bootstrap_cell(name: &CellName) -> String {
    format!("bootstrap:cell:{name}")
}

/// Bootstrap, one step (`create`, `upload`, `finish`) of an image:
/// `bootstrap:image:<step>:<uuid>`.
pub fn bootstrap_image(step: &str, id: &ImageId) -> String {
    format!("bootstrap:image:{step}:{id}")
}

/// Bootstrap, one step (`network`, `subnet`) of a default network:
/// `bootstrap:network:<step>:<uuid>`.
pub fn bootstrap_network(step: &str, id: &crate::NetworkId) -> String {
    format!("bootstrap:network:{step}:{id}")
}

/// The network quota reconciler giving back holdings whose resource does not exist:
/// `netquota:release:<project>:<first id>` (a repeat decides to nothing anyway).
pub fn network_quota_release(project: &str, first: &uuid::Uuid) -> String {
    format!("netquota:release:{project}:{first}")
}

/// The network reconciler giving back a subnet pool prefix whose subnet does not exist:
/// `pool:release:<pool>:<subnet>`.
pub fn subnet_pool_release(pool: &crate::SubnetPoolId, subnet: &crate::SubnetId) -> String {
    format!("pool:release:{pool}:{subnet}")
}

/// Compute at start, mapping its host to its cell: `map:<host>:<cell>`.
pub fn map_host(host: &HostName, cell: &CellName) -> String {
    format!("map:{host}:{cell}")
}

/// Compute at start, registering its inventory: `register:<host>:<nonce>` (a fresh
/// nonce each start: a restart may bring a new inventory).
pub fn register_host(host: &HostName, nonce: Uuid) -> String {
    format!("register:{host}:{nonce}")
}

/// `stratus cell create`: `cell-create:<nonce>` (refusal of a duplicate rests on OCC).
pub fn cell_create(nonce: Uuid) -> String {
    format!("cell-create:{nonce}")
}

/// Usage auditor, closing a cell's audit period: `usage-audit:<cell>:<beginning, µs>`
/// (the same in every process, so the period is appended once).
pub fn usage_audit(cell: &CellName, period_beginning: crate::Timestamp) -> String {
    format!("usage-audit:{cell}:{}", period_beginning.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_frozen() {
        let u = |n: u128| Uuid::from_u128(n);
        let id = InstanceId(u(1));
        let claim = ClaimId(u(2));
        let host = HostName::new("h1").unwrap();
        let cell = CellName::new("cell1").unwrap();
        let (i, c, o) = (u(1), u(2), u(3));
        assert_eq!(sched_claim(claim), format!("sched:claim:{c}"));
        assert_eq!(
            sched_map(id, o, 2, Some(claim)),
            format!("sched:map:{i}:{o}:2:{c}")
        );
        assert_eq!(
            sched_map(id, o, 0, None),
            format!("sched:map:{i}:{o}:0:none")
        );
        assert_eq!(sched_place(id), format!("sched:place:{i}"));
        assert_eq!(
            sched_dest(id, o, 1, None),
            format!("sched:dest:{i}:{o}:1:none")
        );
        assert_eq!(release(claim), format!("release:{c}"));
        assert_eq!(
            compute(id, o, TaskState::Spawning, 1),
            format!("compute:{i}:{o}:spawning:1")
        );
        assert_eq!(tick(id, o, 3), format!("tick:{i}:{o}:3"));
        assert_eq!(
            compute_power_sync(id, crate::Timestamp(42)),
            format!("compute:power-sync:{i}:42")
        );
        assert_eq!(
            compute_power_state(id, crate::Timestamp(42), crate::PowerState::Shutdown),
            format!("compute:power-state:{i}:42:4")
        );
        assert_eq!(tick_offload(id, 42), format!("tick:{i}:offload:42"));
        assert_eq!(bootstrap_flavor("m1.tiny"), "bootstrap:flavor:m1.tiny");
        assert_eq!(bootstrap_cell(&cell), "bootstrap:cell:cell1");
        assert_eq!(
            bootstrap_image("upload", &ImageId(u(1))),
            format!("bootstrap:image:upload:{i}")
        );
        assert_eq!(map_host(&host, &cell), "map:h1:cell1");
        assert_eq!(register_host(&host, o), format!("register:h1:{o}"));
        assert_eq!(cell_create(o), format!("cell-create:{o}"));
        assert_eq!(
            usage_audit(&CellName::cell1(), crate::Timestamp(7_200_000_000)),
            "usage-audit:cell1:7200000000"
        );
    }
}
