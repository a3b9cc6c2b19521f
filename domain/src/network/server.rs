//! A server's ports: the ids Nova's allocation gives the ports it creates for a
//! server, and the device owner it sets.
//!
//! Invariants:
//! - The port the compute agent creates for request `index` of a server has an id
//!   derived from the server's id and `index` only ([`server_port_id`]): a retried
//!   build step creates the same id, which the aggregate refuses a second time
//!   (`PortExists`), so a crash between the create and the step's answer never leaves
//!   a second port behind.
//! - Whether a port was created for a server (deleted with it) or given by the user
//!   (only unbound) is decided by its id alone ([`created_for`]): no other record
//!   has to survive a crash for the release to be right.

use crate::{InstanceId, PortId};

/// How many ports one server may have created for it (boot requests and interface
/// attachments together): bounds the search of [`created_for`].
pub const MAX_SERVER_PORTS: usize = 64;

/// A fixed odd multiplier spreading indexes over the 128 bits (the golden ratio).
const SPREAD: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835;

/// The id of the port created for request (or attachment slot) `index` of `server`.
pub fn server_port_id(server: InstanceId, index: usize) -> PortId {
    let mixed = server.0.as_u128() ^ SPREAD.wrapping_mul(index as u128 + 1);
    // Shown as a version 4 UUID (Neutron ids are uuid4).
    let b = uuid::Builder::from_u128(mixed)
        .with_version(uuid::Version::Random)
        .with_variant(uuid::Variant::RFC4122)
        .into_uuid();
    PortId(b)
}

/// Whether `port` is one the compute service created for `server` (Nova deletes
/// these with the server or at detach; a user's own port is only unbound).
pub fn created_for(server: InstanceId, port: PortId) -> bool {
    (0..MAX_SERVER_PORTS).any(|i| server_port_id(server, i) == port)
}

/// The first attachment slot (an index past the boot requests) whose port does not
/// exist: `exists` says whether a port id is taken.
pub fn free_slot(
    server: InstanceId,
    from: usize,
    exists: impl Fn(PortId) -> bool,
) -> Option<(usize, PortId)> {
    (from..MAX_SERVER_PORTS)
        .map(|i| (i, server_port_id(server, i)))
        .find(|(_, p)| !exists(*p))
}

/// Nova's `device_owner` of a server's port: `compute:<availability zone>`.
pub fn device_owner(zone: &str) -> String {
    format!("compute:{zone}")
}

/// Whether a port belongs to a server (its device owner is a compute zone).
pub fn is_server_port(device_owner: &str) -> bool {
    device_owner.starts_with("compute:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn ids_are_stable_distinct_and_recognised() {
        let s = InstanceId(Uuid::new_v4());
        let other = InstanceId(Uuid::new_v4());
        let a = server_port_id(s, 0);
        assert_eq!(a, server_port_id(s, 0));
        assert_ne!(a, server_port_id(s, 1));
        assert_ne!(a, server_port_id(other, 0));
        assert!(created_for(s, a));
        assert!(!created_for(other, a));
        assert!(!created_for(s, PortId(Uuid::new_v4())));
        assert_eq!(a.0.get_version_num(), 4);
    }
}
