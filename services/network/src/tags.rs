//! `/v2.0/<resources>/{id}/tags` (Neutron's `standard-attr-tag`) on networks, subnets,
//! ports, subnet pools, routers, floating IPs and security groups: list, check, add
//! one, add many, replace, remove one, remove all.
//!
//! Invariants:
//! - Which resource a request names comes from its path's collection (one route and
//!   policy row per resource kind, see [`crate::ROUTES`]); the handlers are shared.
//! - A resource the caller may not see is its own 404 (`NetworkNotFound`...); a change
//!   to a resource the caller sees but does not own (a shared network) is a 403 on
//!   Neutron's `<action>_<resource>:tags` rule, unless the caller is an admin.
//! - Checks run in Neutron's order (neutron/extensions/tagging.py): the body or the
//!   tag's text first (400), then the resource (404), then the policy (403), then the
//!   count limit (400, the domain's). A refusal appends nothing.
//! - A change is the aggregate's `SetTags` command, decided in the domain and recorded
//!   as the resource's full-state `Updated` event: the revision number and
//!   `updated_at` move as with any update, and only when the tags change.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::network::tags::{tag_not_found, TagOp, MAX_TAG_LEN};
use domain::network::{NetworkCommand, TagTarget};
use domain::router::{FloatingIpCommand, RouterCommand};
use domain::security_group::SecurityGroupCommand;
use domain::{FloatingIpId, NetworkId, RouterId, SecurityGroupId, SubnetPoolId};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::NetworkError;
use crate::extract::PathPair as Ids;
use crate::{pools, security_groups, NetworkState};

/// The collections whose resources carry tags: (path segment, Neutron's resource name
/// in policy names).
pub const TAGGED: &[(&str, &str)] = &[
    ("networks", "network"),
    ("subnets", "subnet"),
    ("ports", "port"),
    ("subnetpools", "subnetpool"),
    ("routers", "router"),
    ("floatingips", "floatingip"),
    ("security-groups", "security_group"),
];

/// The record a tag command goes to.
enum Aggregate {
    Network(NetworkId, TagTarget),
    Pool(SubnetPoolId),
    Router(RouterId),
    FloatingIp(FloatingIpId),
    Group(SecurityGroupId),
}

/// A resource named by a tag path, as the caller sees it.
struct Tagged {
    /// Neutron's resource name (`security_group`), for policy names.
    resource: &'static str,
    project: String,
    tags: Vec<String>,
    aggregate: Aggregate,
}

/// The resource `uri` names (`/v2.0/<collection>/{id}/tags...`), if the caller sees it.
fn tagged(st: &NetworkState, uri: &Uri, id: &str, c: &Caller) -> Result<Tagged, NetworkError> {
    let collection = uri.path().split('/').nth(2).unwrap_or_default();
    let resource = TAGGED
        .iter()
        .find(|(coll, _)| *coll == collection)
        .map(|(_, r)| *r)
        .ok_or_else(NetworkError::no_route)?;
    let (project, tags, aggregate) = match collection {
        "networks" => {
            let n = st.visible_network(id, c)?;
            let a = Aggregate::Network(n.spec.id, TagTarget::Network);
            (n.spec.project_id, n.spec.tags, a)
        }
        "subnets" => {
            let (n, s) = st.visible_subnet(id, c)?;
            let a = Aggregate::Network(n.spec.id, TagTarget::Subnet(s.id));
            (s.project_id, s.tags, a)
        }
        "ports" => {
            let (n, p) = st.visible_port(id, c)?;
            let a = Aggregate::Network(n.spec.id, TagTarget::Port(p.id));
            (p.project_id, p.tags, a)
        }
        "subnetpools" => {
            let p = pools::visible_pool(st, id, c)?;
            let a = Aggregate::Pool(p.spec.id);
            (p.spec.project_id, p.spec.tags, a)
        }
        "routers" => {
            let r = st.visible_router(id, c)?;
            (r.project_id, r.tags, Aggregate::Router(r.id))
        }
        "floatingips" => {
            let f = st.visible_fip(id, c)?;
            (f.project_id, f.tags, Aggregate::FloatingIp(f.id))
        }
        _ => {
            let g = security_groups::visible_group(st, id, c)?;
            let a = Aggregate::Group(g.spec.id);
            (g.spec.project_id, g.spec.tags, a)
        }
    };
    Ok(Tagged {
        resource,
        project,
        tags,
        aggregate,
    })
}

impl Tagged {
    /// Neutron's `<action>_<resource>:tags` rule: the resource's own project, or an
    /// admin.
    fn may_change(&self, action: &str, c: &Caller) -> Result<(), NetworkError> {
        if c.is_admin() || self.project == c.project {
            return Ok(());
        }
        Err(NetworkError::policy(&format!(
            "{action}_{}:tags",
            self.resource
        )))
    }

    /// Runs `op` on the resource's aggregate (OCC as every command).
    async fn run(&self, st: &NetworkState, op: TagOp, c: &Caller) -> Result<(), NetworkError> {
        let (ctx, meta) = (c.ctx(), c.meta());
        let e = &st.engine;
        match self.aggregate {
            Aggregate::Network(id, target) => {
                e.network(&id, NetworkCommand::SetTags { target, op }, &ctx, &meta)
                    .await?
            }
            Aggregate::Pool(id) => {
                e.subnet_pool(
                    &id,
                    domain::network::pool::PoolCommand::SetTags(op),
                    &ctx,
                    &meta,
                )
                .await?
            }
            Aggregate::Router(id) => {
                e.router(&id, RouterCommand::SetTags(op), &ctx, &meta)
                    .await?
            }
            Aggregate::FloatingIp(id) => {
                e.floating_ip(&id, FloatingIpCommand::SetTags(op), &ctx, &meta)
                    .await?
            }
            Aggregate::Group(id) => {
                e.security_group(&id, SecurityGroupCommand::SetTags(op), &ctx, &meta)
                    .await?
            }
        };
        Ok(())
    }
}

/// Python's `str()` of a JSON value, as Neutron's validator messages show it.
fn py(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Neutron's `validate_string(tag, MAX_TAG_LEN)`: the tag, or why not.
fn tag_text(v: &Value) -> Result<String, String> {
    let Value::String(s) = v else {
        return Err(format!("'{}' is not a valid string", py(v)));
    };
    if s.chars().count() > MAX_TAG_LEN {
        return Err(format!("'{s}' exceeds maximum length of {MAX_TAG_LEN}"));
    }
    Ok(s.clone())
}

fn check_tag(v: &Value) -> Result<String, NetworkError> {
    tag_text(v).map_err(NetworkError::invalid)
}

/// Neutron's `validate_list_of_unique_strings(list, MAX_TAG_LEN)`: the tags, or why
/// not (also for `tags` in a port's create body).
pub fn unique_strings(list: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = list else {
        return Err(format!("'{}' is not a list", py(list)));
    };
    let mut dups: Vec<String> = vec![];
    for (i, t) in items.iter().enumerate() {
        if items[..i].contains(t) && !dups.contains(&py(t)) {
            dups.push(py(t));
        }
    }
    if !dups.is_empty() {
        return Err(format!(
            "Duplicate items in the list: '{}'",
            dups.join(", ")
        ));
    }
    items.iter().map(tag_text).collect()
}

/// Neutron's `validate_tags`: `{"tags": [unique strings]}`.
fn tags_body(raw: &[u8]) -> Result<Vec<String>, NetworkError> {
    let body: Value = if raw.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(raw)
            .map_err(|_| NetworkError::bad_request("Malformed request body"))?
    };
    let Some(list) = body.get("tags").filter(|_| body.is_object()) else {
        return Err(NetworkError::invalid("Invalid tags body"));
    };
    unique_strings(list).map_err(NetworkError::invalid)
}

/// `GET /v2.0/<resources>/{id}/tags`.
pub async fn list(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    crate::extract::Path(id): crate::extract::Path,
) -> Result<Json<Value>, NetworkError> {
    let t = tagged(&st, &uri, &id, &caller)?;
    Ok(Json(json!({"tags": t.tags})))
}

/// `GET /v2.0/<resources>/{id}/tags/{tag}`: 204 when the resource has the tag.
pub async fn show(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Ids(id, tag): Ids,
) -> Result<StatusCode, NetworkError> {
    check_tag(&Value::String(tag.clone()))?;
    let t = tagged(&st, &uri, &id, &caller)?;
    if !t.tags.contains(&tag) {
        return Err(tag_not_found(&tag).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v2.0/<resources>/{id}/tags/{tag}`: adds one tag (201, also when it was there).
pub async fn add(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Ids(id, tag): Ids,
) -> Result<Response, NetworkError> {
    check_tag(&Value::String(tag.clone()))?;
    let t = tagged(&st, &uri, &id, &caller)?;
    t.may_change("update", &caller)?;
    t.run(&st, TagOp::Add(tag), &caller).await?;
    Ok(StatusCode::CREATED.into_response())
}

/// `POST /v2.0/<resources>/{id}/tags`: adds those of the body not there yet (201 with
/// the body's tags).
pub async fn add_many(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    crate::extract::Path(id): crate::extract::Path,
    raw: axum::body::Bytes,
) -> Result<Response, NetworkError> {
    let tags = tags_body(&raw)?;
    let t = tagged(&st, &uri, &id, &caller)?;
    t.may_change("create", &caller)?;
    t.run(&st, TagOp::AddMany(tags.clone()), &caller).await?;
    Ok((StatusCode::CREATED, Json(json!({ "tags": tags }))).into_response())
}

/// `PUT /v2.0/<resources>/{id}/tags`: replaces every tag (200 with the body's tags).
pub async fn replace(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    crate::extract::Path(id): crate::extract::Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    let tags = tags_body(&raw)?;
    let t = tagged(&st, &uri, &id, &caller)?;
    t.may_change("update", &caller)?;
    t.run(&st, TagOp::Replace(tags.clone()), &caller).await?;
    Ok(Json(json!({ "tags": tags })))
}

/// `DELETE /v2.0/<resources>/{id}/tags/{tag}` (404 `TagNotFound` when absent).
pub async fn remove(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Ids(id, tag): Ids,
) -> Result<StatusCode, NetworkError> {
    check_tag(&Value::String(tag.clone()))?;
    let t = tagged(&st, &uri, &id, &caller)?;
    t.may_change("delete", &caller)?;
    t.run(&st, TagOp::Remove(tag), &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v2.0/<resources>/{id}/tags`.
pub async fn clear(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    crate::extract::Path(id): crate::extract::Path,
) -> Result<StatusCode, NetworkError> {
    let t = tagged(&st, &uri, &id, &caller)?;
    t.may_change("delete", &caller)?;
    t.run(&st, TagOp::Clear, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}
