//! The networks every deployment starts with, so that `openstack server create`
//! without `--nic` works out of the box (devstack's layout):
//! - `public`: external (`router:external`), subnet `public-subnet` 172.24.4.0/24,
//!   where floating IPs and router gateways come from;
//! - `private`: shared, subnet `private-subnet` 10.0.0.0/16, where servers get their
//!   fixed addresses.
//!
//! Invariants: idempotent and safe to race (well-known ids, OCC on each network's
//! subject: the second creator's create is refused and ignored). A network an operator
//! deleted stays deleted; a subnet is created only in the network's first step (its
//! subject holds the create alone), so one the operator deleted is not brought back.

use domain::network::{
    Cidr, GatewayRequest, NetworkCommand, NetworkSpec, SubnetRequest, DEFAULT_MTU,
};
use domain::{Ctx, DomainError, NetworkId, SubnetId};
use engine::{Engine, EngineError, Meta};
use uuid::Uuid;

/// Id of `public`.
pub const PUBLIC_ID: &str = "9b3c2a4e-6a1f-4b0a-9c55-7f3d2e1a0b01";
/// Id of `public-subnet`.
pub const PUBLIC_SUBNET_ID: &str = "9b3c2a4e-6a1f-4b0a-9c55-7f3d2e1a0b02";
/// Id of `private`.
pub const PRIVATE_ID: &str = "9b3c2a4e-6a1f-4b0a-9c55-7f3d2e1a0b03";
/// Id of `private-subnet`.
pub const PRIVATE_SUBNET_ID: &str = "9b3c2a4e-6a1f-4b0a-9c55-7f3d2e1a0b04";

struct Default {
    id: &'static str,
    name: &'static str,
    external: bool,
    shared: bool,
    subnet_id: &'static str,
    subnet_name: &'static str,
    cidr: &'static str,
}

const DEFAULTS: [Default; 2] = [
    Default {
        id: PUBLIC_ID,
        name: "public",
        external: true,
        shared: false,
        subnet_id: PUBLIC_SUBNET_ID,
        subnet_name: "public-subnet",
        cidr: "172.24.4.0/24",
    },
    Default {
        id: PRIVATE_ID,
        name: "private",
        external: false,
        shared: true,
        subnet_id: PRIVATE_SUBNET_ID,
        subnet_name: "private-subnet",
        cidr: "10.0.0.0/16",
    },
];

fn meta(step: &str, id: &NetworkId) -> Meta {
    Meta::service(
        "bootstrap",
        &format!("req-{}", Uuid::new_v4()),
        "bootstrap",
        domain::dedupe::bootstrap_network(step, id),
    )
}

/// Creates `public` and `private` (owned by `project`, the admin project) unless they
/// exist or were deleted.
pub async fn ensure_default_networks(engine: &Engine, project: &str) -> Result<(), EngineError> {
    for d in DEFAULTS {
        let id = NetworkId::parse(d.id).expect("valid uuid");
        let ctx = Ctx::service("bootstrap", engine::now(), Uuid::new_v4());
        let exists = engine.world().read().networks().row(&id).is_some();
        if !exists {
            let spec = NetworkSpec {
                id,
                name: d.name.into(),
                description: String::new(),
                project_id: project.into(),
                admin_state_up: true,
                shared: d.shared,
                external: d.external,
                mtu: DEFAULT_MTU,
                port_security_enabled: true,
                tags: vec![],
                created_at: ctx.now,
                updated_at: ctx.now,
                revision: 1,
            };
            match engine
                .network(
                    &id,
                    NetworkCommand::Create(spec),
                    &ctx,
                    &meta("network", &id),
                )
                .await
            {
                Ok(_) => {}
                // Another API process created it first.
                Err(EngineError::Domain(DomainError::Network(e))) if e.kind == "NetworkExists" => {}
                Err(e) => return Err(e),
            }
        }
        let first_step = engine
            .world()
            .read()
            .networks()
            .row(&id)
            .is_some_and(|r| r.seq == 1 && !r.state.deleted && r.state.subnets.is_empty());
        if first_step {
            let cidr = Cidr::parse(d.cidr).expect("valid cidr");
            let req = SubnetRequest {
                id: SubnetId::parse(d.subnet_id).expect("valid uuid"),
                name: d.subnet_name.into(),
                description: String::new(),
                project_id: project.into(),
                ip_version: 4,
                cidr,
                gateway: GatewayRequest::Default,
                allocation_pools: None,
                enable_dhcp: true,
                dns_nameservers: vec![],
                host_routes: vec![],
                ipv6_ra_mode: None,
                ipv6_address_mode: None,
                subnetpool_id: None,
            };
            match engine
                .network(
                    &id,
                    NetworkCommand::CreateSubnet(Box::new(req)),
                    &ctx,
                    &meta("subnet", &id),
                )
                .await
            {
                Ok(_) => {}
                // Raced by another process: its subnet is there (overlap refused).
                Err(EngineError::Domain(DomainError::Network(e))) if e.kind == "InvalidInput" => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
