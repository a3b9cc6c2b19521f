//! Handlers of `/v2.1/os-server-groups`: create / list / show / delete.
//!
//! Invariants:
//! - A project's groups live on one subject (`stratus.api.server_groups.<project>`):
//!   the `server_groups` quota is counted on it in the create decision itself, so N
//!   concurrent creates against room for M succeed exactly M times, and a refusal
//!   (403 `Quota exceeded, too many server groups.`) appends nothing.
//! - Another project's group is a 404 to non-admins, whatever the method.
//! - `members` shows only instances that are not deleted (Nova's `_get_not_deleted`);
//!   deleted ones are removed from the group by the scheduler's `GroupMembers` reactor.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::quota::Resource;
use domain::server_group::{Policy, ServerGroup, ServerGroupCommand};
use domain::ServerGroupId;
use projections::Views;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::body::{self, invalid, unexpected, Decode, Typed};
use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::microversion::Version;
use crate::ApiState;

/// POST body: `{"server_group": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    server_group: CreateFields,
}

/// The union of Nova's create schemas (2.1 / 2.15 `policies`, 2.64 `policy` + `rules`);
/// [`CreateGroup::decode`] keeps the fields of the request's microversion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateFields {
    name: Option<String>,
    #[serde(default)]
    policies: Option<Vec<String>>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    rules: Option<Rules>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rules {
    #[serde(default)]
    max_server_per_host: Option<Value>,
}

/// A validated create request.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateGroup {
    /// Name.
    pub name: String,
    /// Policy.
    pub policy: Policy,
    /// 2.64 `rules.max_server_per_host`.
    pub max_server_per_host: Option<u32>,
}

const POLICIES: [&str; 2] = ["anti-affinity", "affinity"];
const POLICIES_215: [&str; 4] = [
    "anti-affinity",
    "affinity",
    "soft-anti-affinity",
    "soft-affinity",
];

impl Decode for CreateGroup {
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError> {
        let f = body::from_value::<CreateBody>("", body)?.server_group;
        let Some(name) = f.name else {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute server_group. Value: {}. 'name' is a required property"
                    .replace("{}", &body["server_group"].to_string()),
            ));
        };
        let nv = Value::String(name.clone());
        if name.is_empty() || name.chars().count() > 255 {
            return Err(invalid("name", &nv, "is too long or too short"));
        }
        if name.trim() != name || name.chars().any(|c| c.is_control()) {
            return Err(invalid(
                "name",
                &nv,
                "is not valid: leading/trailing whitespace or control characters",
            ));
        }
        let missing = |field: &str| {
            ApiError::bad_request(format!(
                "Invalid input for field/attribute server_group. Value: {}. '{field}' is a required property",
                body["server_group"]
            ))
        };
        if version.at_least(64) {
            if f.policies.is_some() {
                return Err(unexpected(&["policies"]));
            }
            let p = f.policy.ok_or_else(|| missing("policy"))?;
            let policy = Policy::parse(&p).ok_or_else(|| {
                invalid(
                    "policy",
                    &Value::String(p.clone()),
                    &format!("'{p}' is not one of {POLICIES_215:?}"),
                )
            })?;
            let max = match f.rules.and_then(|r| r.max_server_per_host) {
                None => None,
                Some(v) => {
                    let n = match &v {
                        Value::Number(n) => n.as_i64(),
                        Value::String(s) => s.parse::<i64>().ok(),
                        _ => None,
                    };
                    match n {
                        Some(n) if (1..=i32::MAX as i64).contains(&n) => Some(n as u32),
                        _ => {
                            return Err(invalid(
                                "max_server_per_host",
                                &v,
                                "must be a positive integer",
                            ))
                        }
                    }
                }
            };
            if max.is_some() && policy != Policy::AntiAffinity {
                return Err(ApiError::bad_request(
                    "Only anti-affinity policy supports rules.",
                ));
            }
            return Ok(CreateGroup {
                name,
                policy,
                max_server_per_host: max,
            });
        }
        if f.policy.is_some() {
            return Err(unexpected(&["policy"]));
        }
        if f.rules.is_some() {
            return Err(unexpected(&["rules"]));
        }
        let ps = f.policies.ok_or_else(|| missing("policies"))?;
        let allowed: &[&str] = if version.at_least(15) {
            &POLICIES_215
        } else {
            &POLICIES
        };
        let pv = json!(ps);
        if ps.len() != 1 {
            return Err(invalid(
                "policies",
                &pv,
                if ps.is_empty() {
                    "[] should be non-empty"
                } else {
                    "is too long"
                },
            ));
        }
        let policy = Policy::parse(&ps[0])
            .filter(|p| allowed.contains(&p.as_str()))
            .ok_or_else(|| {
                invalid(
                    "policies",
                    &pv,
                    &format!("'{}' is not one of {allowed:?}", ps[0]),
                )
            })?;
        Ok(CreateGroup {
            name,
            policy,
            max_server_per_host: None,
        })
    }
}

/// A group as Nova shows it at the caller's microversion.
fn view(g: &ServerGroup, views: &Views, v: Version) -> Value {
    let members: Vec<String> = g
        .members
        .keys()
        .filter(|i| views.instance(i).is_some_and(|s| !s.deleted))
        .map(|i| i.to_string())
        .collect();
    let mut o = Map::new();
    o.insert("id".into(), json!(g.id.to_string()));
    o.insert("name".into(), json!(g.name));
    if v.at_least(64) {
        o.insert("policy".into(), json!(g.policy.as_str()));
        o.insert(
            "rules".into(),
            match g.max_server_per_host {
                Some(n) => json!({"max_server_per_host": n}),
                None => json!({}),
            },
        );
    } else {
        o.insert("policies".into(), json!([g.policy.as_str()]));
        o.insert("metadata".into(), json!({}));
    }
    o.insert("members".into(), json!(members));
    if v.at_least(13) {
        o.insert("project_id".into(), json!(g.project_id));
        o.insert("user_id".into(), json!(g.user_id));
    }
    Value::Object(o)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Instance group {id} could not be found."))
}

/// The group `id` if the caller may see it (its project's, or any for admins).
fn visible<'a>(views: &'a Views, id: &str, caller: &Caller) -> Result<&'a ServerGroup, ApiError> {
    ServerGroupId::parse(id)
        .and_then(|gid| views.server_groups().group(&gid))
        .filter(|g| caller.is_admin || g.project_id == caller.project)
        .ok_or_else(|| not_found(id))
}

/// POST /os-server-groups
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Typed(req): Typed<CreateGroup>,
) -> Result<Json<Value>, ApiError> {
    let ctx = caller.ctx();
    let group = ServerGroup {
        id: ServerGroupId(ctx.op_id),
        name: req.name,
        project_id: caller.project.clone(),
        user_id: caller.user.clone(),
        policy: req.policy,
        max_server_per_host: req.max_server_per_host,
        members: Default::default(),
        created_at: ctx.now,
    };
    let id = group.id;
    let project = caller.project.clone();
    st.engine
        .server_groups(
            &project,
            |v| ServerGroupCommand::Create {
                group: group.clone(),
                limit: limit(&st, v, &project, Resource::ServerGroups),
            },
            &ctx,
            &caller.meta(),
        )
        .await?;
    let views = st.engine.world().read();
    let g = views
        .server_groups()
        .group(&id)
        .ok_or_else(|| not_found(&id.to_string()))?;
    Ok(Json(
        json!({"server_group": view(g, &views, caller.version())}),
    ))
}

/// The project's limit of `r` (-1 unlimited).
pub fn limit(st: &ApiState, v: &Views, project: &str, r: Resource) -> i64 {
    st.engine
        .quota_limits(v, project, None)
        .get(&r)
        .copied()
        .unwrap_or(-1)
}

/// GET /os-server-groups (`all_projects` for admins, `limit` / `offset`).
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let num = |k: &str| -> Result<Option<usize>, ApiError> {
        match q.get(k) {
            None => Ok(None),
            Some(s) => s.parse::<usize>().map(Some).map_err(|_| {
                invalid(
                    k,
                    &Value::String(s.to_string()),
                    "is not a non-negative integer",
                )
            }),
        }
    };
    let (lim, offset) = (num("limit")?, num("offset")?.unwrap_or(0));
    if caller.version().at_least(75) {
        let extra: Vec<&str> =
            q.0.iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| !matches!(*k, "all_projects" | "limit" | "offset"))
                .collect();
        if !extra.is_empty() {
            return Err(unexpected(&extra));
        }
    }
    let all = caller.is_admin && q.0.iter().any(|(k, _)| k == "all_projects");
    let views = st.engine.world().read();
    let mut groups: Vec<&ServerGroup> = views
        .server_groups()
        .all()
        .filter(|g| all || g.project_id == caller.project)
        .collect();
    groups.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let max = lim
        .unwrap_or(crate::servers::MAX_LIMIT)
        .min(crate::servers::MAX_LIMIT);
    let items: Vec<Value> = groups
        .into_iter()
        .skip(offset)
        .take(max)
        .map(|g| view(g, &views, caller.version()))
        .collect();
    Ok(Json(json!({"server_groups": items})))
}

/// GET /os-server-groups/{id}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    let g = visible(&views, &id, &caller)?;
    Ok(Json(
        json!({"server_group": view(g, &views, caller.version())}),
    ))
}

/// DELETE /os-server-groups/{id}
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (gid, project) = {
        let views = st.engine.world().read();
        let g = visible(&views, &id, &caller)?;
        (g.id, g.project_id.clone())
    };
    st.engine
        .server_groups(
            &project,
            |_| ServerGroupCommand::Delete { id: gid },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The group a server create's `group` scheduler hint names, as the caller may use it.
struct Hinted {
    /// The group.
    id: ServerGroupId,
    /// Its project (the subject its members are decided on).
    project: String,
    /// The hint as given, for Nova's 400 message.
    hint: String,
}

impl Hinted {
    /// Nova's 400 for an unknown group (or another project's, to a non-admin).
    fn missing(&self) -> ApiError {
        missing_group(&self.hint)
    }
}

fn missing_group(hint: &str) -> ApiError {
    ApiError::bad_request(format!("Instance group {hint} could not be found."))
}

/// Resolves the `group` hint of `details` (a JSON text as recorded: a string, or any
/// other value taken verbatim) to a group the caller may use: `None` without the hint,
/// 400 `Instance group <hint> could not be found.` for an unknown one or another
/// project's (non-admins).
fn hinted(
    views: &Views,
    caller: &Caller,
    details: &domain::instance::BootDetails,
) -> Result<Option<Hinted>, ApiError> {
    let Some(raw) = details.scheduler_hints.get("group") else {
        return Ok(None);
    };
    let hint = match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(s)) => s,
        _ => raw.clone(),
    };
    let g = ServerGroupId::parse(&hint)
        .and_then(|gid| views.server_groups().group(&gid))
        .filter(|g| caller.is_admin || g.project_id == caller.project)
        .ok_or_else(|| missing_group(&hint))?;
    Ok(Some(Hinted {
        id: g.id,
        project: g.project_id.clone(),
        hint,
    }))
}

/// The checks of [`join_hinted_group`] on the current state, appending nothing: an
/// unknown group (400) or a full one (403) is refused before the create reserves its
/// quota, so a refused create writes nothing. (A group filled by a concurrent create
/// between this check and the join is refused at the join; the create's quota is then
/// given back.)
pub fn check_hinted_group(
    st: &ApiState,
    caller: &Caller,
    details: &domain::instance::BootDetails,
    instance: domain::InstanceId,
) -> Result<(), ApiError> {
    let views = st.engine.world().read();
    let Some(h) = hinted(&views, caller, details)? else {
        return Ok(());
    };
    let empty = domain::server_group::ProjectGroups::default();
    let state = views
        .server_groups()
        .project(&h.project)
        .map_or(&empty, |r| &r.state);
    let cmd = ServerGroupCommand::AddMembers {
        id: h.id,
        instances: vec![instance],
        limit: limit(st, &views, &h.project, Resource::ServerGroupMembers),
        at: caller.ctx().now,
    };
    match domain::server_group::decide(state, cmd) {
        Ok(_) => Ok(()),
        Err(domain::DomainError::NotFound { .. }) => Err(h.missing()),
        Err(e) => Err(engine::EngineError::Domain(e).into()),
    }
}

/// The `group` scheduler hint of a server create: the instance joins the group (counted
/// against `server_group_members` in the group's own decision) before the build is
/// requested, so the scheduler finds it a member. Nova's answers: 400 `Instance group
/// <id> could not be found.` for an unknown group (or another project's), 403 `Quota
/// exceeded, too many servers in group`. Returns the group's (project, id).
///
/// Should the build request never follow (the process dies in between), the member has
/// no instance: the scheduler's `GroupMembers` reactor removes it once the grace has
/// passed since the join (`at`, recorded in the group).
pub async fn join_hinted_group(
    st: &ApiState,
    caller: &Caller,
    details: &domain::instance::BootDetails,
    instance: domain::InstanceId,
) -> Result<Option<(String, ServerGroupId)>, ApiError> {
    let Some(h) = hinted(&st.engine.world().read(), caller, details)? else {
        return Ok(None);
    };
    let ctx = caller.ctx();
    let out = st
        .engine
        .server_groups(
            &h.project,
            |v| ServerGroupCommand::AddMembers {
                id: h.id,
                instances: vec![instance],
                limit: limit(st, v, &h.project, Resource::ServerGroupMembers),
                at: ctx.now,
            },
            &ctx,
            &caller.meta(),
        )
        .await;
    match out {
        Ok(_) => Ok(Some((h.project, h.id))),
        Err(engine::EngineError::Domain(domain::DomainError::NotFound { .. })) => Err(h.missing()),
        Err(e) => Err(e.into()),
    }
}
