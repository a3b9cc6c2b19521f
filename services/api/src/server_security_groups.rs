//! A server's security groups: Neutron's groups on the server's ports, as Nova's
//! `nova/network/security_group_api.py` reads and changes them. The create's
//! `security_groups` (names or ids) are resolved to the project's groups before
//! anything is recorded and recorded in the build request's commit
//! (`instance.security_groups_requested`); the compute agent gives them to the ports it
//! creates. `addSecurityGroup` / `removeSecurityGroup` change the ports' groups; the
//! server document lists the groups found on its ports.
//!
//! Invariants:
//! - A create naming a group the project does not have is refused (400) before quota
//!   or anything else is recorded; `default` is the project's default group, created
//!   first if the project has none yet (Neutron's `_ensure_default_security_group`).
//! - Port changes go through the network aggregate's `UpdatePort`, after the checks
//!   Neutron's port update makes (the group the port project's, one connection
//!   tracking kind per port, port security and an address required), so the compute
//!   API cannot give a port what the network API would refuse it.

use axum::extract::{Path, State};
use axum::Json;
use domain::network::{NetworkCommand, Port, PortPatch};
use domain::security_group::SecurityGroup;
use domain::{NetworkId, PortId, SecurityGroupId};
use projections::Views;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::actions::{Action, ActionCx, NetworkOp, Prepared};
use crate::context::Caller;
use crate::error::ApiError;
use crate::microversion::Version;
use crate::ApiState;

/// The group a server action or create names (Nova asks Neutron's
/// `find_resourceid_by_name_or_id` within the caller's project): by id first, then by
/// name; a name two groups share is ambiguous.
enum Lookup {
    Found(SecurityGroupId),
    Missing,
    Ambiguous,
}

fn lookup(views: &Views, project: &str, name: &str) -> Lookup {
    let own = || {
        views
            .security_groups()
            .all()
            .filter(move |g| g.spec.project_id == project)
    };
    if let Some(g) = own().find(|g| g.spec.id.to_string() == name) {
        return Lookup::Found(g.spec.id);
    }
    let named: Vec<&SecurityGroup> = own().filter(|g| g.spec.name == name).collect();
    match named.as_slice() {
        [g] => Lookup::Found(g.spec.id),
        [] => Lookup::Missing,
        _ => Lookup::Ambiguous,
    }
}

/// Nova's NoUniqueMatch (409), as neutronclient words it.
fn ambiguous(name: &str) -> ApiError {
    ApiError::conflict(format!(
        "Multiple security_group matches found for name '{name}', use an ID to be more specific."
    ))
}

/// The groups a create's `security_groups` name (None: `default`), in order, for the
/// project of `caller` (Nova's `_check_requested_secgroups`): 400 for a group the
/// project does not have, 409 for an ambiguous name. `default` is ensured.
pub async fn resolve_for_create(
    st: &ApiState,
    caller: &Caller,
    names: Option<&[String]>,
) -> Result<Vec<SecurityGroupId>, ApiError> {
    let default = [String::from("default")];
    let names = names.unwrap_or(&default);
    let mut found: Vec<Option<SecurityGroupId>> = Vec::with_capacity(names.len());
    {
        let views = st.engine.world().read();
        for name in names {
            if name == "default" {
                found.push(None);
                continue;
            }
            match lookup(&views, &caller.project, name) {
                Lookup::Found(id) => found.push(Some(id)),
                Lookup::Missing => {
                    return Err(ApiError::bad_request(format!(
                        "Unable to find security_group with name or id '{name}'"
                    )))
                }
                Lookup::Ambiguous => return Err(ambiguous(name)),
            }
        }
    }
    let mut groups = Vec::with_capacity(found.len());
    for g in found {
        let id = match g {
            Some(id) => id,
            None => default_group(st, caller, &caller.project).await?,
        };
        if !groups.contains(&id) {
            groups.push(id);
        }
    }
    Ok(groups)
}

/// `project`'s `default` group, created if it has none yet.
pub async fn default_group(
    st: &ApiState,
    caller: &Caller,
    project: &str,
) -> Result<SecurityGroupId, ApiError> {
    let (nst, nc) = crate::floating_ip_proxy::neutron(st, caller);
    network::security_groups::ensure_default(&nst, &nc, project)
        .await
        .map_err(|e| ApiError::new(e.status, e.message))?
        .ok_or_else(|| ApiError::not_found("Security group default not found."))
}

/// The `security_groups` of a server document: `{"name"}` of every group on every
/// port of the server (a group without a name shows its id), as Nova's
/// `get_instances_security_groups_bindings`; None when its ports have none (Nova then
/// leaves the key out).
pub fn names(views: &Views, server: &str) -> Option<Value> {
    let sgs = views.security_groups();
    let list: Vec<Value> = views
        .networks()
        .ports_of_device(server)
        .iter()
        .flat_map(|p| p.security_groups.iter())
        .filter_map(|g| sgs.get(&SecurityGroupId(*g)))
        .map(|g| {
            let name = if g.spec.name.is_empty() {
                g.spec.id.to_string()
            } else {
                g.spec.name.clone()
            };
            json!({"name": name})
        })
        .collect();
    (!list.is_empty()).then_some(Value::Array(list))
}

/// The groups on the ports of `server` (each once, in port order): what
/// `GET /servers/{id}/os-security-groups` lists.
pub fn groups_of(views: &Views, server: &str) -> Vec<SecurityGroup> {
    let mut seen: Vec<Uuid> = Vec::new();
    for p in views.networks().ports_of_device(server) {
        for g in &p.security_groups {
            if !seen.contains(g) {
                seen.push(*g);
            }
        }
    }
    seen.into_iter()
        .filter_map(|g| views.security_groups().get(&SecurityGroupId(g)).cloned())
        .collect()
}

/// `GET /servers/{id}/os-security-groups`: the groups on the server's ports, sorted by
/// (tenant_id, name) as Nova's `ServerSecurityGroupController.index`.
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut groups = {
        let views = st.engine.world().read();
        crate::servers::visible(&views, &id, &caller)?;
        groups_of(&views, &id)
    };
    groups.sort_by(|a, b| {
        (&a.spec.project_id, &a.spec.name).cmp(&(&b.spec.project_id, &b.spec.name))
    });
    let list: Vec<Value> = groups
        .iter()
        .map(|g| crate::security_group_proxy::format_group(&st, &caller, g))
        .collect();
    Ok(Json(json!({"security_groups": list})))
}

/// What addSecurityGroup / removeSecurityGroup resolved to: each port's groups after
/// the change, applied by the action handler (no instance command).
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityGroupOp {
    /// (network, port, the port's groups after the change), for the ports that change.
    pub ports: Vec<(NetworkId, PortId, Vec<Uuid>)>,
}

/// Neutron's `_has_security_group_requirements`: port security on and an address.
fn secured(p: &Port) -> bool {
    p.port_security_enabled && !p.fixed_ips.is_empty()
}

impl SecurityGroupOp {
    /// addSecurityGroup: the group appended to every port of the server (Nova's
    /// `add_to_instance`).
    fn add(cx: &ActionCx<'_>, name: &str) -> Result<Self, ApiError> {
        let (server, group) = target(cx, name)?;
        let views = cx.views;
        let mut ports = Vec::new();
        for p in views.networks().ports_of_device(&server) {
            if !secured(p) {
                return Err(cannot_apply());
            }
            if p.security_groups.contains(&group.0) {
                // Neutron refuses the repeated id in the update Nova sends.
                return Err(ApiError::bad_request(format!(
                    "Invalid input for security_groups. Reason: Duplicate items in the list: '{group}'."
                )));
            }
            let mut groups = p.security_groups.clone();
            groups.push(group.0);
            ports.push((p.network_id, p.id, groups));
        }
        Ok(SecurityGroupOp { ports })
    }

    /// removeSecurityGroup: the group taken off every port of the server that has it
    /// (Nova's `remove_from_instance`; 404 when none has it).
    fn remove(cx: &ActionCx<'_>, name: &str) -> Result<Self, ApiError> {
        let (server, group) = target(cx, name)?;
        let ports: Vec<(NetworkId, PortId, Vec<Uuid>)> = cx
            .views
            .networks()
            .ports_of_device(&server)
            .into_iter()
            .filter(|p| p.security_groups.contains(&group.0))
            .map(|p| {
                let groups = p
                    .security_groups
                    .iter()
                    .copied()
                    .filter(|g| *g != group.0)
                    .collect();
                (p.network_id, p.id, groups)
            })
            .collect();
        if ports.is_empty() {
            return Err(ApiError::not_found(format!(
                "Security group {name} not associated with the instance {server}"
            )));
        }
        Ok(SecurityGroupOp { ports })
    }
}

/// The server and the named group of the caller's project; 404 when the group is not
/// the project's or the server has no port (Nova's messages).
fn target(cx: &ActionCx<'_>, name: &str) -> Result<(String, SecurityGroupId), ApiError> {
    let server = cx.instance.id().to_string();
    let group = match lookup(cx.views, &cx.caller.project, name) {
        Lookup::Found(id) => id,
        // Neutron's listing creates the project's `default` group first, so Nova
        // always finds it: its id is derived from the project.
        Lookup::Missing if name == "default" => {
            network::security_groups::default_group_id(&cx.caller.project)
        }
        Lookup::Missing => {
            return Err(ApiError::not_found(format!(
                "Security group {name} is not found for project {}",
                cx.caller.project
            )))
        }
        Lookup::Ambiguous => return Err(ambiguous(name)),
    };
    if cx.views.networks().ports_of_device(&server).is_empty() {
        return Err(ApiError::not_found(format!(
            "instance_id {server} could not be found as device id on any ports"
        )));
    }
    Ok((server, group))
}

/// Nova's SecurityGroupCannotBeApplied (400).
fn cannot_apply() -> ApiError {
    ApiError::bad_request(
        "Network requires port_security_enabled and subnet associated in order to apply \
         security groups.",
    )
}

/// Runs a resolved add / remove: one `UpdatePort` per port that changes, each checked
/// first as Neutron's port update checks its groups (they exist and are the port
/// project's; stateful and stateless do not mix: Nova's
/// SecurityGroupConnectionStateConflict, 409).
pub async fn apply(st: &ApiState, caller: &Caller, op: &SecurityGroupOp) -> Result<(), ApiError> {
    let (nst, nc) = crate::floating_ip_proxy::neutron(st, caller);
    for (network, port, groups) in &op.ports {
        network::security_groups::check_port_groups(&nst, &nc, &caller.project, groups)
            .map_err(|e| ApiError::new(e.status, e.message))?;
        let patch = PortPatch {
            security_groups: Some(groups.clone()),
            ..PortPatch::default()
        };
        st.engine
            .network(
                network,
                NetworkCommand::UpdatePort {
                    id: *port,
                    patch: Box::new(patch),
                },
                &caller.ctx(),
                &caller.meta(),
            )
            .await
            .map_err(|e| match e {
                engine::EngineError::Domain(domain::DomainError::Network(n))
                    if n.kind == "PortNotFound" =>
                {
                    ApiError::not_found(n.message)
                }
                other => ApiError::from(other),
            })?;
    }
    Ok(())
}

/// `addSecurityGroup` / `removeSecurityGroup`: `{"name": ...}` (Nova's `_parse`, with
/// its three 400s), resolved against the server's ports.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SecurityGroupAction {
    /// addSecurityGroup (else removeSecurityGroup).
    add: bool,
    /// The group's name or id.
    name: String,
}

impl Action for SecurityGroupAction {
    fn decode(action: &str, arg: &Value, _: Version) -> Result<Self, ApiError> {
        let Some(obj) = arg.as_object() else {
            return Err(ApiError::bad_request("Missing parameter dict"));
        };
        let name = obj
            .get("name")
            .ok_or_else(|| ApiError::bad_request("Security group not specified"))?;
        let name = match name {
            Value::Null | Value::Bool(false) => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if name.trim().is_empty() {
            return Err(ApiError::bad_request("Security group name cannot be empty"));
        }
        Ok(SecurityGroupAction {
            add: action == "addSecurityGroup",
            name,
        })
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let op = if self.add {
            SecurityGroupOp::add(cx, &self.name)?
        } else {
            SecurityGroupOp::remove(cx, &self.name)?
        };
        Ok(Prepared::network(NetworkOp::SecurityGroups(op)))
    }
}
