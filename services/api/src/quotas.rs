//! os-quota-sets, os-quota-class-sets and `GET /limits`: the quota ledger's limits and
//! usage as Nova shows them.
//!
//! Invariants:
//! - Limits are read through [`engine::Engine::quota_limits`] (user override, project
//!   override, the `default` class, the process's base), the same function admission
//!   decides with, so what a client reads is what it gets admitted against.
//! - Usage of instances / cores / ram is the project's ledger (what admission counts);
//!   `key_pairs` and `server_group_members` show `in_use` 0, as Nova's quota API does.
//! - Updates and deletes append to the project's ledger (or the class's subject) only
//!   after every value was validated; a refusal appends nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::quota::{Limits, QuotaCommand, Resource};
use projections::Views;
use serde_json::{json, Map, Value};

use crate::body::{invalid, unexpected, Decode, Typed};
use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::microversion::Version;
use crate::{ApiState, AuthMode};

/// Nova's schema bound for a limit (the database's MAX_INT).
const MAX_LIMIT: i64 = 0x7FFF_FFFF;

const NETWORK: [Resource; 4] = [
    Resource::FixedIps,
    Resource::FloatingIps,
    Resource::SecurityGroups,
    Resource::SecurityGroupRules,
];
const PERSONALITY: [Resource; 3] = [
    Resource::InjectedFiles,
    Resource::InjectedFileContentBytes,
    Resource::InjectedFilePathBytes,
];

/// Resources a quota set shows (and accepts) at `v`: the network ones go at 2.36,
/// personality at 2.57.
fn quota_set_resources(v: Version) -> Vec<Resource> {
    Resource::ALL
        .into_iter()
        .filter(|r| !(v.at_least(36) && NETWORK.contains(r)))
        .filter(|r| !(v.at_least(57) && PERSONALITY.contains(r)))
        .collect()
}

/// Resources a quota class shows (and accepts) at `v`: server groups only from 2.50,
/// when the network ones go; personality goes at 2.57.
fn class_resources(v: Version) -> Vec<Resource> {
    Resource::ALL
        .into_iter()
        .filter(|r| {
            v.at_least(50) || !matches!(r, Resource::ServerGroups | Resource::ServerGroupMembers)
        })
        .filter(|r| !(v.at_least(50) && NETWORK.contains(r)))
        .filter(|r| !(v.at_least(57) && PERSONALITY.contains(r)))
        .collect()
}

/// How many server groups a project has (its `server_groups` usage).
fn server_groups_used(views: &Views, project: &str) -> i64 {
    views
        .server_groups()
        .project(project)
        .map_or(0, |r| r.state.groups.len() as i64)
}

/// A resource's usage as Nova's quota API reports it.
fn in_use(views: &Views, project: &str, user: Option<&str>, r: Resource) -> i64 {
    match r {
        Resource::Instances | Resource::Cores | Resource::Ram => views
            .quotas()
            .ledger(project)
            .map_or(0, |l| l.state.used(user).get(r)),
        Resource::ServerGroups => server_groups_used(views, project),
        _ => 0,
    }
}

/// Nova's `identity.verify_project_id`: with Keystone, an unknown project is a 400.
pub(crate) fn verify_project(st: &ApiState, views: &Views, id: &str) -> Result<(), ApiError> {
    if let AuthMode::Keystone(_) = st.auth {
        let known = domain::ProjectId::new(id)
            .ok()
            .is_some_and(|p| views.identity().project(&p).is_some());
        if !known {
            return Err(ApiError::bad_request(format!(
                "Project ID {id} is not a valid project."
            )));
        }
    }
    Ok(())
}

/// The `user_id` query; from 2.75 any other query parameter is a 400.
fn user_query(q: &QueryPairs, caller: &Caller) -> Result<Option<String>, ApiError> {
    if caller.version().at_least(75) {
        let extra: Vec<&str> =
            q.0.iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| *k != "user_id")
                .collect();
        if !extra.is_empty() {
            return Err(unexpected(&extra));
        }
    }
    Ok(q.get("user_id").map(str::to_string))
}

fn limits_json(limits: &Limits, shown: &[Resource], id: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert("id".into(), json!(id));
    }
    for r in shown {
        m.insert(r.key().into(), json!(limits.get(r).copied().unwrap_or(-1)));
    }
    m
}

/// GET /os-quota-sets/{id}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let user = user_query(&q, &caller)?;
    let views = st.engine.world().read();
    verify_project(&st, &views, &id)?;
    let limits = st.engine.quota_limits(&views, &id, user.as_deref());
    let set = limits_json(&limits, &quota_set_resources(caller.version()), Some(&id));
    Ok(Json(json!({ "quota_set": set })))
}

/// GET /os-quota-sets/{id}/detail
pub async fn detail(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let user = user_query(&q, &caller)?;
    let views = st.engine.world().read();
    verify_project(&st, &views, &id)?;
    let limits = st.engine.quota_limits(&views, &id, user.as_deref());
    let mut set = Map::new();
    set.insert("id".into(), json!(id));
    for r in quota_set_resources(caller.version()) {
        set.insert(
            r.key().into(),
            json!({
                "in_use": in_use(&views, &id, user.as_deref(), r),
                "limit": limits.get(&r).copied().unwrap_or(-1),
                "reserved": 0,
            }),
        );
    }
    Ok(Json(json!({ "quota_set": set })))
}

/// GET /os-quota-sets/{id}/defaults
pub async fn defaults(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    verify_project(&st, &views, &id)?;
    let limits = domain::quota::effective(
        &st.engine.quota.base,
        views.quotas().class("default"),
        None,
        None,
    );
    let set = limits_json(&limits, &quota_set_resources(caller.version()), Some(&id));
    Ok(Json(json!({ "quota_set": set })))
}

/// A limit as Nova's schema takes it: an integer or a string of one, -1 to MAX_INT.
fn limit_value(field: &str, v: &Value) -> Result<i64, ApiError> {
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| invalid(field, v, &format!("{v} is not of type 'integer', 'string'")))?,
        Value::String(s) => {
            let ok = {
                let digits = s.strip_prefix('-').unwrap_or(s);
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            };
            if !ok {
                // jsonschema shows a string value bare and quotes it in the reason.
                return Err(ApiError::bad_request(format!(
                    "Invalid input for field/attribute {field}. Value: {s}. '{s}' does not match '^-?[0-9]+$'"
                )));
            }
            s.parse::<i64>().map_err(|_| {
                invalid(
                    field,
                    v,
                    &format!("{v} is greater than the maximum of {MAX_LIMIT}"),
                )
            })?
        }
        _ => {
            return Err(invalid(
                field,
                v,
                &format!("{v} is not of type 'integer', 'string'"),
            ))
        }
    };
    if n < -1 {
        return Err(invalid(
            field,
            v,
            &format!("{v} is less than the minimum of -1"),
        ));
    }
    if n > MAX_LIMIT {
        return Err(invalid(
            field,
            v,
            &format!("{v} is greater than the maximum of {MAX_LIMIT}"),
        ));
    }
    Ok(n)
}

/// Reads `{"<wrapper>": {resource: limit, ...}}` for the resources of the version
/// (and `force` for quota sets).
fn decode_limits(
    body: &Value,
    wrapper: &str,
    allowed: &[Resource],
    with_force: bool,
) -> Result<(Limits, bool), ApiError> {
    let Value::Object(top) = body else {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute body. Value: {body}. {body} is not of type 'object'"
        )));
    };
    let extra: Vec<&str> = top
        .keys()
        .map(String::as_str)
        .filter(|k| *k != wrapper)
        .collect();
    if !extra.is_empty() {
        return Err(unexpected(&extra));
    }
    let Some(inner) = top.get(wrapper) else {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute body. Value: {body}. '{wrapper}' is a required property"
        )));
    };
    let Value::Object(m) = inner else {
        return Err(invalid(
            wrapper,
            inner,
            &format!("{inner} is not of type 'object'"),
        ));
    };
    let unknown: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| {
            let known = Resource::from_key(k).is_some_and(|r| allowed.contains(&r));
            !(known || with_force && *k == "force")
        })
        .collect();
    if !unknown.is_empty() {
        return Err(unexpected(&unknown));
    }
    let mut limits = Limits::new();
    let mut force = false;
    for (k, v) in m {
        if k == "force" {
            force = crate::body::from_value::<crate::body::Flag>("force", v)?.0;
            continue;
        }
        let r = Resource::from_key(k).expect("checked above");
        limits.insert(r, limit_value(k, v)?);
    }
    Ok((limits, force))
}

/// The body of a quota-set update.
pub struct QuotaSetUpdate {
    limits: Limits,
    force: bool,
}

impl Decode for QuotaSetUpdate {
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError> {
        let (limits, force) =
            decode_limits(body, "quota_set", &quota_set_resources(version), true)?;
        Ok(QuotaSetUpdate { limits, force })
    }
}

/// Unlimited compares above everything.
fn inf(v: i64) -> i128 {
    if v < 0 {
        i128::MAX
    } else {
        i128::from(v)
    }
}

/// Nova's `_validate_quota_limit` against the settable range: a project limit may not
/// go below what is used nor below the sum of its users' limits; a user's limit may not
/// go below the user's usage nor above what the project has left for it.
fn check_settable(
    st: &ApiState,
    views: &Views,
    project: &str,
    user: Option<&str>,
    r: Resource,
    limit: i64,
) -> Result<(), ApiError> {
    let ledger = views.quotas().ledger(project).map(|l| &l.state);
    let project_limit = st.engine.quota_limits(views, project, None)[&r];
    let users_sum: i64 = ledger
        .map(|l| l.user_limits.values().filter_map(|m| m.get(&r)).sum())
        .unwrap_or(0);
    let (minimum, maximum) = match user {
        None => (in_use(views, project, None, r).max(users_sum), -1),
        Some(u) => {
            let own = ledger
                .and_then(|l| l.user_limits.get(u))
                .and_then(|m| m.get(&r))
                .copied()
                .unwrap_or(0);
            let maximum = if project_limit < 0 {
                -1
            } else {
                project_limit - users_sum + own
            };
            (in_use(views, project, Some(u), r), maximum)
        }
    };
    if inf(limit) < inf(minimum) {
        return Err(ApiError::bad_request(format!(
            "Quota limit {limit} for {} must be greater than or equal to already used and reserved {minimum}.",
            r.key()
        )));
    }
    if inf(limit) > inf(maximum) {
        return Err(ApiError::bad_request(format!(
            "Quota limit {limit} for {} must be less than or equal to {maximum}.",
            r.key()
        )));
    }
    Ok(())
}

/// PUT /os-quota-sets/{id}
pub async fn update(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryPairs,
    Typed(body): Typed<QuotaSetUpdate>,
) -> Result<Json<Value>, ApiError> {
    let user = user_query(&q, &caller)?;
    {
        let views = st.engine.world().read();
        verify_project(&st, &views, &id)?;
        if !body.force {
            for (r, v) in &body.limits {
                check_settable(&st, &views, &id, user.as_deref(), *r, *v)?;
            }
        }
    }
    if !body.limits.is_empty() {
        let cmd = QuotaCommand::SetLimits {
            user: user.clone(),
            limits: body.limits,
        };
        st.engine
            .quota(&id, |_| cmd.clone(), &caller.ctx(), &caller.meta())
            .await?;
    }
    let views = st.engine.world().read();
    let limits = st.engine.quota_limits(&views, &id, user.as_deref());
    let set = limits_json(&limits, &quota_set_resources(caller.version()), None);
    Ok(Json(json!({ "quota_set": set })))
}

/// DELETE /os-quota-sets/{id}: back to the defaults (202, no body).
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryPairs,
) -> Result<Response, ApiError> {
    let user = user_query(&q, &caller)?;
    let has_overrides =
        st.engine
            .world()
            .read()
            .quotas()
            .ledger(&id)
            .is_some_and(|l| match &user {
                Some(u) => l.state.user_limits.contains_key(u),
                None => !l.state.limits.is_empty() || !l.state.user_limits.is_empty(),
            });
    if has_overrides {
        let cmd = QuotaCommand::DeleteLimits { user };
        st.engine
            .quota(&id, |_| cmd.clone(), &caller.ctx(), &caller.meta())
            .await?;
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// GET /os-quota-class-sets/{id}
pub async fn class_show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = st.engine.world().read();
    Ok(Json(
        json!({ "quota_class_set": class_json(&st, &views, &id, caller.version(), true) }),
    ))
}

/// A class's limits: its own values over the base (Nova's `get_class_quotas`).
fn class_json(
    st: &ApiState,
    views: &Views,
    id: &str,
    v: Version,
    with_id: bool,
) -> Map<String, Value> {
    let mut limits = st.engine.quota.base.clone();
    if let Some(c) = views.quotas().class(id) {
        limits.extend(c.iter().map(|(k, v)| (*k, *v)));
    }
    limits_json(&limits, &class_resources(v), with_id.then_some(id))
}

/// The body of a quota-class update.
pub struct ClassUpdate(Limits);

impl Decode for ClassUpdate {
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError> {
        decode_limits(body, "quota_class_set", &class_resources(version), false)
            .map(|(l, _)| ClassUpdate(l))
    }
}

/// PUT /os-quota-class-sets/{id}
pub async fn class_update(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Typed(ClassUpdate(limits)): Typed<ClassUpdate>,
) -> Result<Json<Value>, ApiError> {
    if id.is_empty() || id.chars().count() > 255 {
        return Err(ApiError::bad_request(format!(
            "quota_class_name has a length of {}, which is not between 1 and 255 characters.",
            id.chars().count()
        )));
    }
    if !limits.is_empty() {
        st.engine
            .quota_class(&id, limits, &caller.ctx(), &caller.meta())
            .await?;
    }
    let views = st.engine.world().read();
    Ok(Json(
        json!({ "quota_class_set": class_json(&st, &views, &id, caller.version(), false) }),
    ))
}

/// GET /limits: the project's absolute limits and usage (`tenant_id` for admins).
pub async fn limits(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let v = caller.version();
    if v.at_least(75) {
        let extra: Vec<&str> =
            q.0.iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| *k != "tenant_id")
                .collect();
        if !extra.is_empty() {
            return Err(unexpected(&extra));
        }
    }
    let project = match q.get("tenant_id") {
        Some(t) => {
            if !caller.is_admin {
                return Err(ApiError::policy("os_compute_api:limits:other_project"));
            }
            t.to_string()
        }
        None => caller.project.clone(),
    };
    let views = st.engine.world().read();
    let l = st.engine.quota_limits(&views, &project, None);
    let used = |r| in_use(&views, &project, None, r);
    let mut a = Map::new();
    let mut put = |k: &str, x: i64| {
        a.insert(k.into(), json!(x));
    };
    if !v.at_least(39) {
        put("maxImageMeta", l[&Resource::MetadataItems]);
    }
    if !v.at_least(57) {
        put("maxPersonality", l[&Resource::InjectedFiles]);
        put("maxPersonalitySize", l[&Resource::InjectedFileContentBytes]);
    }
    if !v.at_least(36) {
        put("maxSecurityGroupRules", l[&Resource::SecurityGroupRules]);
        put("maxSecurityGroups", l[&Resource::SecurityGroups]);
        put("maxTotalFloatingIps", l[&Resource::FloatingIps]);
        put("totalSecurityGroupsUsed", 0);
        put("totalFloatingIpsUsed", 0);
    }
    put("maxServerMeta", l[&Resource::MetadataItems]);
    put("maxTotalCores", l[&Resource::Cores]);
    put("maxTotalInstances", l[&Resource::Instances]);
    put("maxTotalKeypairs", l[&Resource::KeyPairs]);
    put("maxTotalRAMSize", l[&Resource::Ram]);
    put("maxServerGroups", l[&Resource::ServerGroups]);
    put("maxServerGroupMembers", l[&Resource::ServerGroupMembers]);
    put("totalCoresUsed", used(Resource::Cores));
    put("totalInstancesUsed", used(Resource::Instances));
    put("totalRAMUsed", used(Resource::Ram));
    put("totalServerGroupsUsed", used(Resource::ServerGroups));
    Ok(Json(json!({"limits": {"absolute": a, "rate": []}})))
}
