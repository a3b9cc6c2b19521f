//! A server's ports on the network aggregates: Nova's `allocate_for_instance` (the
//! build's ports, created or bound to the host), `deallocate_for_instance` (ports
//! created for the server deleted, a user's ports unbound) and the binding that
//! follows the server's host. Shared by the compute agent and the API (interface
//! attach / detach).
//!
//! Invariants:
//! - Level-triggered and idempotent: every step reads the port as it is now and
//!   issues a command only when it differs from what is wanted, so a step redone after
//!   a crash (or by a second process) changes nothing more. Ports created for a server
//!   have deterministic ids ([`domain::network::server::server_port_id`]): a retried
//!   create is refused with `PortExists` and taken as done.
//! - Network commands append with fresh dedupe ids: a binding may go back to an
//!   earlier host, which a dedupe id per (port, host) would swallow.

use std::net::IpAddr;

use domain::instance::{Instance, Networks};
use domain::network::quota::NetResource;
use domain::network::server::{created_for, device_owner, server_port_id};
use domain::network::{FixedIpRequest, NetError, NetworkCommand, PortPatch, PortRequest};
use domain::{Ctx, DomainError, InstanceId, NetworkId, PortId};
use uuid::Uuid;

use crate::{now, Engine, EngineError, Meta};

/// How many generated MACs a create tries.
const MAC_CANDIDATES: usize = 16;

/// Fresh `fa:16:3e:xx:xx:xx` addresses (Neutron's `base_mac`).
pub fn mac_candidates() -> Vec<String> {
    (0..MAC_CANDIDATES)
        .map(|_| {
            let u = Uuid::new_v4();
            let b = u.as_bytes();
            format!(
                "{}:{:02x}:{:02x}:{:02x}",
                domain::network::MAC_PREFIX,
                b[0],
                b[1],
                b[2]
            )
        })
        .collect()
}

/// One port of a build, as the API resolved the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A port created on `network` (with `fixed_ip` when asked).
    Create {
        network: NetworkId,
        fixed_ip: Option<IpAddr>,
    },
    /// The user's own port.
    Bind { port: PortId },
}

/// The ports a build wants, in request order (index = the request's position).
/// `auto` and `none` (and a request naming nothing usable) want none: the API
/// resolves `auto` into the network it picked before recording the build.
pub fn wanted(spec_networks: &Networks) -> Vec<Wanted> {
    let Networks::List(items) = spec_networks else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|r| {
            if let Some(p) = r.port.as_deref().and_then(PortId::parse) {
                return Some(Wanted::Bind { port: p });
            }
            let network = NetworkId::parse(r.uuid.as_deref()?)?;
            let fixed_ip = r.fixed_ip.as_deref().and_then(|s| s.parse().ok());
            Some(Wanted::Create { network, fixed_ip })
        })
        .collect()
}

/// Why a server's ports could not be set up.
#[derive(Debug)]
pub enum PortsError {
    /// The network service refused (no free address, a port taken meanwhile...).
    Refused(NetError),
    /// Anything else (log, contention): retry later.
    Engine(EngineError),
}

impl std::fmt::Display for PortsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortsError::Refused(e) => write!(f, "{}: {}", e.kind, e.message),
            PortsError::Engine(e) => e.fmt(f),
        }
    }
}

impl From<EngineError> for PortsError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Domain(DomainError::Network(n)) => PortsError::Refused(n),
            e => PortsError::Engine(e),
        }
    }
}

fn meta(actor: &str, correlation: &str, server: InstanceId) -> Meta {
    Meta {
        dedupe_id: None,
        ..Meta::service(actor, correlation, &server.to_string(), String::new())
    }
}

fn ctx(actor: &str) -> Ctx {
    Ctx::service(actor, now(), Uuid::new_v4())
}

/// Whether ports on `network` take security groups (its `port_security_enabled`;
/// Neutron refuses groups on a port without port security, and Nova then drops the
/// lone `default`).
pub fn secured(engine: &Engine, network: &NetworkId) -> bool {
    engine
        .world()
        .read()
        .networks()
        .get(network)
        .is_none_or(|n| n.spec.port_security_enabled)
}

/// The security groups `server`'s create recorded (`instance.security_groups_requested`);
/// None for a server created without ports or before groups were recorded.
pub fn recorded_groups(engine: &Engine, server: InstanceId) -> Option<Vec<Uuid>> {
    engine
        .world()
        .read()
        .instances()
        .get(&server)
        .and_then(|r| r.extras.security_groups.as_ref())
        .map(|g| g.iter().map(|g| g.0).collect())
}

/// The security groups a new port of `server` on `network` gets: those its create
/// recorded, none on a network without port security.
pub fn port_groups(engine: &Engine, server: &Instance, network: &NetworkId) -> Vec<Uuid> {
    if !secured(engine, network) {
        return Vec::new();
    }
    recorded_groups(engine, server.id()).unwrap_or_default()
}

/// A new port of `server` (Nova's `_create_port_minimal` and the binding update that
/// follows it, in one create).
#[allow(clippy::too_many_arguments)]
pub async fn create_port(
    engine: &Engine,
    actor: &str,
    correlation: &str,
    server: &Instance,
    id: PortId,
    network: NetworkId,
    fixed_ips: Option<Vec<FixedIpRequest>>,
    host: &str,
    zone: &str,
) -> Result<(), PortsError> {
    let security_groups = port_groups(engine, server, &network);
    let req = PortRequest {
        id,
        name: String::new(),
        description: String::new(),
        project_id: server.spec.project_id.clone(),
        fixed_ips,
        mac_address: None,
        mac_candidates: mac_candidates(),
        device_id: server.id().to_string(),
        device_owner: device_owner(zone),
        admin_state_up: true,
        security_groups,
        port_security_enabled: None,
        allowed_address_pairs: Vec::new(),
        binding_host: host.to_string(),
        binding_vnic_type: "normal".into(),
        binding_profile: "{}".into(),
        tags: vec![],
    };
    // The port counts against the project's port quota, as Nova's port create through
    // Neutron's API does (a retried reservation of the same id is a no-op).
    let project = server.spec.project_id.clone();
    let m = meta(actor, correlation, server.id());
    engine
        .reserve_network(&project, NetResource::Port, id.0, &ctx(actor), &m)
        .await?;
    match engine
        .network(
            &network,
            NetworkCommand::CreatePort(Box::new(req)),
            &ctx(actor),
            &m,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(EngineError::Domain(DomainError::Network(e))) if e.kind == "PortExists" => Ok(()),
        Err(e) => {
            engine
                .release_network(&project, vec![id.0], &ctx(actor), &m)
                .await;
            Err(e.into())
        }
    }
}

/// Gives a user's port to `server` on `host` (device id, owner, binding), unless it
/// already is.
pub async fn bind_users_port(
    engine: &Engine,
    actor: &str,
    correlation: &str,
    server: &Instance,
    port: PortId,
    host: &str,
    zone: &str,
) -> Result<(), PortsError> {
    let sid = server.id().to_string();
    let (network, current) = {
        let v = engine.world().read();
        let n = v.networks();
        match (n.port_network(&port), n.port(&port)) {
            (Some(net), Some(p)) => (net, p.clone()),
            _ => return Err(PortsError::Refused(NetError::port_not_found(port))),
        }
    };
    if !current.device_id.is_empty() && current.device_id != sid {
        return Err(PortsError::Refused(NetError::conflict(
            "PortInUse",
            format!("Port {port} is still in use."),
        )));
    }
    let owner = device_owner(zone);
    if current.device_id == sid && current.binding_host == host && current.device_owner == owner {
        return Ok(());
    }
    let patch = PortPatch {
        device_id: Some(sid),
        device_owner: Some(owner),
        binding_host: Some(host.to_string()),
        ..PortPatch::default()
    };
    update(
        engine,
        actor,
        correlation,
        server.id(),
        network,
        port,
        patch,
    )
    .await
}

async fn update(
    engine: &Engine,
    actor: &str,
    correlation: &str,
    server: InstanceId,
    network: NetworkId,
    port: PortId,
    patch: PortPatch,
) -> Result<(), PortsError> {
    match engine
        .network(
            &network,
            NetworkCommand::UpdatePort {
                id: port,
                patch: Box::new(patch),
            },
            &ctx(actor),
            &meta(actor, correlation, server),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sets up every port a build wants on `host` (Nova's `allocate_for_instance`).
/// Stops at the first refusal; the caller releases what was set up.
pub async fn allocate(
    engine: &Engine,
    actor: &str,
    correlation: &str,
    server: &Instance,
    host: &str,
    zone: &str,
) -> Result<(), PortsError> {
    for (index, w) in wanted(&server.spec.networks).into_iter().enumerate() {
        match w {
            Wanted::Create { network, fixed_ip } => {
                let id = server_port_id(server.id(), index);
                let exists = engine.world().read().networks().port(&id).is_some();
                if exists {
                    continue;
                }
                let fixed = fixed_ip.map(|ip| {
                    vec![FixedIpRequest {
                        subnet_id: None,
                        ip_address: Some(ip),
                    }]
                });
                create_port(
                    engine,
                    actor,
                    correlation,
                    server,
                    id,
                    network,
                    fixed,
                    host,
                    zone,
                )
                .await?;
            }
            Wanted::Bind { port } => {
                bind_users_port(engine, actor, correlation, server, port, host, zone).await?;
            }
        }
    }
    Ok(())
}

/// Releases one port of `server`: deleted when created for it, else unbound (device
/// id, owner and binding cleared), as Nova's `deallocate_for_instance` and interface
/// detach do. A port already gone or already someone else's is left alone.
pub async fn release_port(
    engine: &Engine,
    actor: &str,
    correlation: &str,
    server: InstanceId,
    port: PortId,
) -> Result<(), PortsError> {
    let found = {
        let v = engine.world().read();
        let n = v.networks();
        n.port_network(&port).zip(n.port(&port).cloned())
    };
    let Some((network, p)) = found else {
        return Ok(());
    };
    if p.device_id != server.to_string() {
        return Ok(());
    }
    let cmd = if created_for(server, port) {
        NetworkCommand::DeletePort { id: port }
    } else {
        NetworkCommand::UpdatePort {
            id: port,
            patch: Box::new(PortPatch {
                device_id: Some(String::new()),
                device_owner: Some(String::new()),
                binding_host: Some(String::new()),
                binding_profile: Some("{}".into()),
                ..PortPatch::default()
            }),
        }
    };
    let deleting = matches!(cmd, NetworkCommand::DeletePort { .. });
    let m = meta(actor, correlation, server);
    match engine.network(&network, cmd, &ctx(actor), &m).await {
        Ok(_) => {}
        Err(EngineError::Domain(DomainError::Network(e))) if e.kind == "PortNotFound" => {}
        Err(e) => return Err(e.into()),
    }
    if deleting {
        engine
            .release_network(&p.project_id, vec![port.0], &ctx(actor), &m)
            .await;
    }
    Ok(())
}

/// Releases every port of `server` (Nova's `deallocate_for_instance`).
pub async fn release_all(
    engine: &Engine,
    actor: &str,
    correlation: &str,
    server: InstanceId,
) -> Result<(), PortsError> {
    let ports: Vec<PortId> = engine
        .world()
        .read()
        .networks()
        .ports_of_device(&server.to_string())
        .iter()
        .map(|p| p.id)
        .collect();
    for p in ports {
        release_port(engine, actor, correlation, server, p).await?;
    }
    Ok(())
}

/// Binds every port of `server` to `host` ("": unbound, a shelved-offloaded server),
/// where it is not already (the binding follows the server's host after a resize,
/// migration, evacuation, live migration or unshelve).
pub async fn bind_all(
    engine: &Engine,
    actor: &str,
    correlation: &str,
    server: InstanceId,
    host: &str,
) -> Result<(), PortsError> {
    let ports: Vec<(NetworkId, PortId)> = {
        let v = engine.world().read();
        let n = v.networks();
        n.ports_of_device(&server.to_string())
            .iter()
            .filter(|p| p.binding_host != host)
            .map(|p| (p.network_id, p.id))
            .collect()
    };
    for (network, port) in ports {
        let patch = PortPatch {
            binding_host: Some(host.to_string()),
            ..PortPatch::default()
        };
        update(engine, actor, correlation, server, network, port, patch).await?;
    }
    Ok(())
}
