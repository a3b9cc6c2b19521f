//! `/v2.0/security-groups` and `/v2.0/security-group-rules` (Neutron's security-group
//! extension) on the security group aggregate (`stratus.api.security_group.<uuid>`),
//! and every project's `default` group.
//!
//! Invariants:
//! - A project's `default` group has an id derived from the project
//!   ([`default_group_id`]), so every process names the same subject: the first use
//!   that needs it creates it with expected sequence 0 and a losing racer finds it
//!   existing ([`ensure_default`]). Only the project itself (or an admin) causes it.
//! - A group or rule the caller may not see is a 404 (`SecurityGroupNotFound`,
//!   `SecurityGroupRuleNotFound`), never a 403.
//! - Everything a request can be refused for is checked before its command, so a
//!   refusal appends nothing (the `default` group a listing creates is not a refusal).
//! - Whether a port uses a group is read from the network read model: a group in use
//!   is not deleted (`SecurityGroupInUse`). The check and the delete are two steps, so
//!   a port created in between may keep the id of a deleted group (Neutron holds both
//!   in one database transaction); the group's absence is then what a port shows.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use domain::security_group::{
    self as sg, GroupPatch, NewGroup, Rule, RuleRequest, SecurityGroup, SecurityGroupCommand,
};
use domain::{DomainError, SecurityGroupId, SecurityGroupRuleId};
use engine::EngineError;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::Caller;
use crate::body::{self, Attrs};
use crate::error::NetworkError;
use crate::extract::{Path, QueryPairs};
use crate::list::ListQuery;
use crate::quotas;
use crate::{view, NetworkState};
use domain::network::quota::NetResource;

/// The id of `project`'s `default` group: the first 16 bytes of
/// sha256("stratus-default-sg:<project>") as an RFC 4122 uuid (version 8, custom), so
/// every process derives the same subject for it.
pub fn default_group_id(project: &str) -> SecurityGroupId {
    let h = Sha256::digest(format!("stratus-default-sg:{project}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    SecurityGroupId(Uuid::from_bytes(b))
}

fn fresh_rule_ids() -> [SecurityGroupRuleId; 4] {
    std::array::from_fn(|_| SecurityGroupRuleId(Uuid::new_v4()))
}

/// Ensures `project`'s `default` group exists (Neutron's
/// `_ensure_default_security_group`) and returns its id; None when the caller may not
/// cause another project's (Neutron's bug 1987410 rule).
pub async fn ensure_default(
    st: &NetworkState,
    caller: &Caller,
    project: &str,
) -> Result<Option<SecurityGroupId>, NetworkError> {
    let id = default_group_id(project);
    if st
        .engine
        .world()
        .read()
        .security_groups()
        .get(&id)
        .is_some()
    {
        return Ok(Some(id));
    }
    if project != caller.project && !caller.is_admin() {
        return Ok(None);
    }
    let cmd = SecurityGroupCommand::Create(NewGroup {
        id,
        name: sg::DEFAULT_NAME.into(),
        description: sg::DEFAULT_DESCRIPTION.into(),
        project_id: project.to_string(),
        stateful: true,
        is_default: true,
        rule_ids: fresh_rule_ids(),
    });
    match st
        .engine
        .security_group(&id, cmd, &caller.ctx(), &caller.meta())
        .await
    {
        Ok(_) => Ok(Some(id)),
        // A racer created it first.
        Err(EngineError::Domain(DomainError::Network(e)))
            if e.kind == "SecurityGroupDefaultAlreadyExists" =>
        {
            Ok(Some(id))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the caller sees the group (its project's, or admin).
pub fn group_visible(g: &SecurityGroup, c: &Caller) -> bool {
    c.is_admin() || g.spec.project_id == c.project
}

/// Whether the caller sees the rule (its own, one of its groups', or admin).
pub fn rule_visible(g: &SecurityGroup, r: &Rule, c: &Caller) -> bool {
    group_visible(g, c) || r.project_id == c.project
}

/// A group the caller may see, by the id text of a path or body (404 otherwise).
pub fn visible_group(
    st: &NetworkState,
    id: &str,
    c: &Caller,
) -> Result<SecurityGroup, NetworkError> {
    let views = st.engine.world().read();
    SecurityGroupId::parse(id)
        .and_then(|gid| views.security_groups().get(&gid))
        .filter(|g| group_visible(g, c))
        .cloned()
        .ok_or_else(|| sg::not_found(id).into())
}

fn group(st: &NetworkState, id: &SecurityGroupId) -> Result<SecurityGroup, NetworkError> {
    st.engine
        .world()
        .read()
        .security_groups()
        .get(id)
        .cloned()
        .ok_or_else(|| sg::not_found(id).into())
}

/// Whether a port uses the group.
fn in_use(st: &NetworkState, id: SecurityGroupId) -> bool {
    st.engine
        .world()
        .read()
        .networks()
        .ports()
        .any(|p| p.security_groups.contains(&id.0))
}

/// A group name from a request (Neutron's `name_not_default` validator).
fn name(a: &mut Attrs) -> Result<Option<String>, NetworkError> {
    let n = a.text("name")?;
    if n.as_deref().is_some_and(sg::is_default_name) {
        return Err(sg::default_exists().into());
    }
    Ok(n)
}

/// Reads one group of a create body.
fn parse_create(mut a: Attrs, caller: &Caller) -> Result<NewGroup, NetworkError> {
    let name = name(&mut a)?.unwrap_or_default();
    let owner = a.owner(caller, "create_security_group")?;
    let description = a.text("description")?.unwrap_or_default();
    let stateful = a.boolean("stateful")?.unwrap_or(true);
    a.finish()?;
    Ok(NewGroup {
        id: SecurityGroupId(Uuid::new_v4()),
        name,
        description,
        project_id: owner,
        stateful,
        is_default: false,
        rule_ids: fresh_rule_ids(),
    })
}

/// `POST /v2.0/security-groups` (also Neutron's bulk form, all or nothing).
pub async fn create(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let (items, bulk) = body::creates(&raw, "security_group")?;
    let groups = items
        .into_iter()
        .map(|a| parse_create(a, &caller))
        .collect::<Result<Vec<_>, _>>()?;
    let mut done: Vec<SecurityGroup> = vec![];
    for g in groups {
        match create_group(&st, &caller, g).await {
            Ok(g) => done.push(g),
            Err(e) => {
                for d in &done {
                    let _ = delete_group(&st, &caller, d).await;
                }
                return Err(e);
            }
        }
    }
    let views: Vec<Value> = done.iter().map(view::security_group).collect();
    Ok(crate::created("security_group", views, bulk))
}

/// A group a request names (`name` None: Neutron's empty name), checked as Neutron's
/// attribute validators do (no group may be named `default`).
pub fn new_group(
    name: Option<String>,
    description: String,
    project: &str,
) -> Result<NewGroup, NetworkError> {
    if name.as_deref().is_some_and(sg::is_default_name) {
        return Err(sg::default_exists().into());
    }
    Ok(NewGroup {
        id: SecurityGroupId(Uuid::new_v4()),
        name: name.unwrap_or_default(),
        description,
        project_id: project.to_string(),
        stateful: true,
        is_default: false,
        rule_ids: fresh_rule_ids(),
    })
}

/// Creates one group (its project's `default` group first, as Neutron does), within
/// the project's quota; shared by `POST /v2.0/security-groups` and Nova's
/// os-security-groups proxy. A refusal appends nothing but the `default` group.
pub async fn create_group(
    st: &NetworkState,
    caller: &Caller,
    g: NewGroup,
) -> Result<SecurityGroup, NetworkError> {
    ensure_default(st, caller, &g.project_id).await?;
    let (id, owner) = (g.id, g.project_id.clone());
    let cmd = SecurityGroupCommand::Create(g);
    precheck(st, &id, &cmd)?;
    quotas::reserve(st, caller, &owner, NetResource::SecurityGroup, id.0).await?;
    if let Err(e) = st
        .engine
        .security_group(&id, cmd, &caller.ctx(), &caller.meta())
        .await
    {
        quotas::release(st, caller, &owner, id.0).await;
        return Err(e.into());
    }
    group(st, &id)
}

/// The project whose `default` group a listing ensures: the `project_id` (or
/// `tenant_id`) filter's first value, else the caller's.
fn listed_project(q: &ListQuery, c: &Caller) -> String {
    ["project_id", "tenant_id"]
        .iter()
        .find_map(|k| {
            q.filters
                .iter()
                .find(|(a, _)| a == k)
                .and_then(|(_, v)| v.first().cloned())
        })
        .unwrap_or_else(|| c.project.clone())
}

/// `GET /v2.0/security-groups`.
pub async fn list(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let q = ListQuery::parse(&q, view::SECURITY_GROUP_ATTRS)?;
    ensure_default(&st, &caller, &listed_project(&q, &caller)).await?;
    let items: Vec<Value> = {
        let views = st.engine.world().read();
        views
            .security_groups()
            .all()
            .filter(|g| group_visible(g, &caller))
            .map(view::security_group)
            .collect()
    };
    Ok(Json(q.respond(
        "security_groups",
        items,
        &st.url(&headers, "/v2.0/security-groups"),
    )?))
}

/// `GET /v2.0/security-groups/{id}`.
pub async fn show(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let g = visible_group(&st, &id, &caller)?;
    Ok(crate::shown("security_group", view::security_group(&g), &q))
}

/// `PUT /v2.0/security-groups/{id}`.
pub async fn update(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    let g = visible_group(&st, &id, &caller)?;
    let mut a = body::resource(&raw, "security_group")?;
    let patch = GroupPatch {
        name: name(&mut a)?,
        description: a.text("description")?,
        stateful: a.boolean("stateful")?,
    };
    a.finish()?;
    let g = update_group(&st, &caller, &g, patch).await?;
    Ok(Json(json!({"security_group": view::security_group(&g)})))
}

/// Changes a group (a port's group keeps its `stateful`: `SecurityGroupInUse`);
/// shared with Nova's proxy. Returns the changed group.
pub async fn update_group(
    st: &NetworkState,
    caller: &Caller,
    g: &SecurityGroup,
    patch: GroupPatch,
) -> Result<SecurityGroup, NetworkError> {
    if patch.name.as_deref().is_some_and(sg::is_default_name) {
        return Err(sg::default_exists().into());
    }
    let gid = g.spec.id;
    if patch.stateful.is_some_and(|s| s != g.spec.stateful) && in_use(st, gid) {
        return Err(sg::in_use(gid).into());
    }
    st.engine
        .security_group(
            &gid,
            SecurityGroupCommand::Update(patch),
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    group(st, &gid)
}

/// `DELETE /v2.0/security-groups/{id}`.
pub async fn delete(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, NetworkError> {
    let g = visible_group(&st, &id, &caller)?;
    delete_group(&st, &caller, &g).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a group and releases its and its rules' quota: refused while a port uses
/// it (`SecurityGroupInUse`) and, for all but admins, for a `default` group
/// (`SecurityGroupCannotRemoveDefault`); shared with Nova's proxy.
pub async fn delete_group(
    st: &NetworkState,
    caller: &Caller,
    g: &SecurityGroup,
) -> Result<(), NetworkError> {
    let gid = g.spec.id;
    if in_use(st, gid) {
        return Err(sg::in_use(gid).into());
    }
    if g.spec.name == sg::DEFAULT_NAME && !caller.is_admin() {
        return Err(sg::cannot_remove_default().into());
    }
    st.engine
        .security_group(
            &gid,
            SecurityGroupCommand::Delete,
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    // The group and its rules (unknown ids, e.g. the default group's, are no-ops).
    quotas::release(st, caller, &g.spec.project_id, gid.0).await;
    let mut rules: std::collections::BTreeMap<String, Vec<Uuid>> = Default::default();
    for r in g.rules.values() {
        rules.entry(r.project_id.clone()).or_default().push(r.id.0);
    }
    for (project, ids) in rules {
        st.engine
            .release_network(&project, ids, &caller.ctx(), &caller.meta())
            .await;
    }
    Ok(())
}

/// The JSON value's text as Neutron's converters read it (None: null).
fn scalar(a: &mut Attrs, attr: &str) -> Option<Option<String>> {
    a.take(attr).map(|v| match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        v => Some(v.to_string()),
    })
}

fn required(attr: &str) -> NetworkError {
    NetworkError::bad_request(format!(
        "Failed to parse request. Required attribute '{attr}' not specified"
    ))
}

/// One rule of a create body: its group's id text, its remote group's id text, and
/// the request (types converted, not yet checked).
type ParsedRule = (String, Option<String>, RuleRequest);

fn parse_rule(mut a: Attrs, caller: &Caller) -> Result<ParsedRule, NetworkError> {
    let group_id = a
        .string("security_group_id", 36)?
        .ok_or_else(|| required("security_group_id"))?;
    let remote_group = scalar(&mut a, "remote_group_id").flatten();
    let direction = match a.string("direction", 16)? {
        None => return Err(required("direction")),
        Some(d) => sg::Direction::parse(&d).ok_or_else(|| {
            NetworkError::bad_request(format!(
                "Invalid input for direction. Reason: '{d}' is not in ['ingress', 'egress']."
            ))
        })?,
    };
    let protocol = sg::convert_protocol(scalar(&mut a, "protocol").flatten().as_deref())?;
    let port = |v: Option<String>| -> Result<Option<u16>, NetworkError> {
        v.map(|p| sg::convert_port(&p))
            .transpose()
            .map_err(Into::into)
    };
    let port_range_min = port(scalar(&mut a, "port_range_min").flatten())?;
    let port_range_max = port(scalar(&mut a, "port_range_max").flatten())?;
    let ethertype = match scalar(&mut a, "ethertype") {
        None => sg::Ethertype::IPv4,
        Some(e) => sg::convert_ethertype(e.as_deref().unwrap_or("None"))?,
    };
    let remote_ip_prefix = scalar(&mut a, "remote_ip_prefix")
        .flatten()
        .filter(|p| !p.is_empty())
        .map(|p| sg::convert_prefix(&p))
        .transpose()?;
    let owner = a.owner(caller, "create_security_group_rule")?;
    let description = a.text("description")?.unwrap_or_default();
    a.finish()?;
    // A remote group given as anything but a uuid is one that does not exist (404
    // below, after the rule's own checks, as in Neutron).
    let remote_group_id = remote_group
        .as_deref()
        .map(|r| SecurityGroupId::parse(r).unwrap_or(SecurityGroupId(Uuid::nil())));
    let req = sg::normalise_rule(RuleRequest {
        id: SecurityGroupRuleId(Uuid::new_v4()),
        project_id: owner,
        direction,
        ethertype,
        protocol,
        port_range_min,
        port_range_max,
        remote_ip_prefix,
        remote_group_id,
        description,
    })?;
    Ok((group_id, remote_group, req))
}

/// `POST /v2.0/security-group-rules` (also Neutron's bulk form: the rules of one group
/// and project, recorded in one commit).
pub async fn create_rule(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let (items, bulk) = body::creates(&raw, "security_group_rule")?;
    let parsed = items
        .into_iter()
        .map(|a| parse_rule(a, &caller))
        .collect::<Result<Vec<_>, _>>()?;
    let group_id = parsed[0].0.clone();
    if parsed.iter().any(|(g, _, _)| *g != group_id) {
        return Err(NetworkError::invalid_as(
            "SecurityGroupNotSingleGroupRules",
            "Only allowed to update rules for one security profile at a time",
        ));
    }
    if parsed
        .iter()
        .any(|(_, _, r)| r.project_id != parsed[0].2.project_id)
    {
        return Err(NetworkError::invalid_as(
            "SecurityGroupRulesNotSingleProject",
            "Multiple project_ids in bulk security group rule create not allowed",
        ));
    }
    for (_, remote, _) in &parsed {
        if let Some(r) = remote {
            visible_group(&st, r, &caller)?;
        }
    }
    let g = visible_group(&st, &group_id, &caller)?;
    let reqs: Vec<RuleRequest> = parsed.into_iter().map(|(_, _, r)| r).collect();
    let ids = add_rules(&st, &caller, &g, reqs).await?;
    let views = ids
        .iter()
        .map(|id| {
            visible_rule(&st, &id.to_string(), &caller)
                .map(|(g, r)| view::security_group_rule(&g, &r))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::created("security_group_rule", views, bulk))
}

/// Adds canonical rules ([`sg::normalise_rule`]'s) of one project to group `g` in one
/// commit, within the project's quota: a duplicate is `SecurityGroupRuleExists` (409)
/// and nothing is appended. Shared with Nova's os-security-group-rules proxy.
pub async fn add_rules(
    st: &NetworkState,
    caller: &Caller,
    g: &SecurityGroup,
    reqs: Vec<RuleRequest>,
) -> Result<Vec<SecurityGroupRuleId>, NetworkError> {
    let ids: Vec<SecurityGroupRuleId> = reqs.iter().map(|r| r.id).collect();
    let Some(owner) = reqs.first().map(|r| r.project_id.clone()) else {
        return Ok(ids);
    };
    let cmd = SecurityGroupCommand::CreateRules(reqs);
    precheck(st, &g.spec.id, &cmd)?;
    let res = async {
        for id in &ids {
            quotas::reserve(st, caller, &owner, NetResource::SecurityGroupRule, id.0).await?;
        }
        st.engine
            .security_group(&g.spec.id, cmd, &caller.ctx(), &caller.meta())
            .await
            .map_err(NetworkError::from)
    }
    .await;
    if let Err(e) = res {
        st.engine
            .release_network(
                &owner,
                ids.iter().map(|i| i.0).collect(),
                &caller.ctx(),
                &caller.meta(),
            )
            .await;
        return Err(e);
    }
    Ok(ids)
}

/// A rule the caller may see, with its group (404 otherwise).
pub fn visible_rule(
    st: &NetworkState,
    id: &str,
    c: &Caller,
) -> Result<(SecurityGroup, Rule), NetworkError> {
    let views = st.engine.world().read();
    SecurityGroupRuleId::parse(id)
        .and_then(|rid| views.security_groups().rule(&rid))
        .filter(|(g, r)| rule_visible(g, r, c))
        .map(|(g, r)| (g.clone(), r.clone()))
        .ok_or_else(|| NetworkError::from(sg::rule_not_found(id)))
}

/// `GET /v2.0/security-group-rules`.
pub async fn list_rules(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let q = ListQuery::parse(&q, view::SECURITY_GROUP_RULE_ATTRS)?;
    ensure_default(&st, &caller, &listed_project(&q, &caller)).await?;
    let items: Vec<Value> = {
        let views = st.engine.world().read();
        views
            .security_groups()
            .all()
            .flat_map(|g| {
                g.rules
                    .values()
                    .filter(|r| rule_visible(g, r, &caller))
                    .map(|r| view::security_group_rule(g, r))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    Ok(Json(q.respond(
        "security_group_rules",
        items,
        &st.url(&headers, "/v2.0/security-group-rules"),
    )?))
}

/// `GET /v2.0/security-group-rules/{id}`.
pub async fn show_rule(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
    QueryPairs(q): QueryPairs,
) -> Result<Json<Value>, NetworkError> {
    let (g, r) = visible_rule(&st, &id, &caller)?;
    Ok(crate::shown(
        "security_group_rule",
        view::security_group_rule(&g, &r),
        &q,
    ))
}

/// `DELETE /v2.0/security-group-rules/{id}`.
pub async fn delete_rule(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path,
) -> Result<StatusCode, NetworkError> {
    let (g, r) = visible_rule(&st, &id, &caller)?;
    remove_rule(&st, &caller, &g, &r).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes rule `r` of group `g` and releases its quota (only the group's or the
/// rule's project, or an admin); shared with Nova's proxy.
pub async fn remove_rule(
    st: &NetworkState,
    caller: &Caller,
    g: &SecurityGroup,
    r: &Rule,
) -> Result<(), NetworkError> {
    if !caller.is_admin() && g.spec.project_id != caller.project && r.project_id != caller.project {
        return Err(NetworkError::policy("delete_security_group_rule"));
    }
    st.engine
        .security_group(
            &g.spec.id,
            SecurityGroupCommand::DeleteRule { id: r.id },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    quotas::release(st, caller, &r.project_id, r.id.0).await;
    Ok(())
}

/// The groups a port asks for, checked (Neutron's `_get_security_groups_on_port`):
/// each must exist and be the port project's (or the caller an admin), else one 404
/// naming every missing id; stateful and stateless groups do not mix (409).
pub fn check_port_groups(
    st: &NetworkState,
    caller: &Caller,
    project: &str,
    groups: &[Uuid],
) -> Result<(), NetworkError> {
    let views = st.engine.world().read();
    let missing: Vec<String> = groups
        .iter()
        .filter(|g| {
            !views
                .security_groups()
                .get(&SecurityGroupId(**g))
                .is_some_and(|x| caller.is_admin() || x.spec.project_id == project)
        })
        .map(|g| g.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(sg::not_found(missing.join(", ")).into());
    }
    // Neutron's `_validate_sgs_for_port`: one kind of connection tracking per port.
    let stateful: std::collections::BTreeSet<bool> = groups
        .iter()
        .filter_map(|g| views.security_groups().get(&SecurityGroupId(*g)))
        .map(|g| g.spec.stateful)
        .collect();
    if stateful.len() > 1 {
        return Err(NetworkError::new(
            StatusCode::CONFLICT,
            "SecurityGroupConflict",
            "Error Cannot apply both stateful and stateless security groups on the same port \
             at the same time while attempting the operation.",
        ));
    }
    Ok(())
}

/// Decides `cmd` on the current state without appending: a command the domain refuses
/// is refused before its quota is reserved, so a refusal appends nothing.
fn precheck(
    st: &NetworkState,
    id: &SecurityGroupId,
    cmd: &SecurityGroupCommand,
) -> Result<(), NetworkError> {
    let views = st.engine.world().read();
    let row = views.security_groups().row(id);
    sg::decide(*id, row.map(|r| &r.state), cmd.clone(), engine::now())
        .map(|_| ())
        .map_err(NetworkError::from)
}
