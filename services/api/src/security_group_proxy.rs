//! Nova's security group proxy APIs (served up to 2.35, like the other network
//! proxies; a 404 from 2.36): `os-security-groups` and `os-security-group-rules`.
//! Nova answers them by asking Neutron (`nova/network/security_group_api.py`);
//! Stratus asks its own network service in process.
//!
//! Invariants:
//! - Groups and rules are created, changed and deleted only through
//!   [`network::security_groups`]'s shared functions, so the compute API follows
//!   exactly Neutron's rules (canonical rules, duplicate rules, the `default` group,
//!   groups in use) and its quota.
//! - What Nova checks itself (its request schemas, `validate_id`, its rule builder's
//!   protocol and port checks, its own duplicate-rule check) is checked here before
//!   anything is asked of the network service; Neutron's refusals become Nova's
//!   statuses as `security_group_api` translates them (its message kept), and the
//!   ones Nova does not expect are its 500 "Unexpected API Error".
//! - Nova shows only ingress rules, in its own format (`ip_protocol`, `from_port` /
//!   `to_port` with -1 or 1-65535 for "all", `group` or `ip_range`); a rule whose
//!   remote group the caller cannot see is left out.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::security_group::{
    self as sg, Direction, Ethertype, GroupPatch, Rule, RuleRequest, SecurityGroup,
};
use domain::SecurityGroupRuleId;
use network::error::NetworkError;
use network::security_groups as nsg;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::body::{self, check_len, invalid};
use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::floating_ip_proxy::{neutron, proxy_version};
use crate::ApiState;

/// Nova's 500 for a Neutron error its code does not expect (`expected_errors`).
fn unexpected(e: &NetworkError) -> ApiError {
    let class = match e.status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        503 => "ServiceUnavailable",
        _ => "NeutronClientException",
    };
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "computeFault",
        message: format!(
            "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and \
             attach the Nova API log if possible.\n<class 'neutronclient.common.exceptions.{class}'>"
        ),
    }
}

/// Nova's `validate_id`: a uuid-like id, else 400.
fn validate_id(id: &str) -> Result<(), ApiError> {
    if crate::parse::uuid_like(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request("Security group id should be uuid"))
    }
}

/// Nova's `security_group_api.get`: the group as Neutron shows it to the caller
/// (Neutron's 404 message kept).
fn get_group(st: &ApiState, caller: &Caller, id: &str) -> Result<SecurityGroup, ApiError> {
    let (nst, nc) = neutron(st, caller);
    nsg::visible_group(&nst, id, &nc).map_err(|e| ApiError::not_found(e.message))
}

/// Nova's `parse_cidr` on what Neutron stored: no prefix reads as `0.0.0.0/0`.
fn stored_cidr(r: &Rule) -> String {
    r.remote_ip_prefix
        .map_or_else(|| "0.0.0.0/0".to_string(), |c| c.to_string())
}

/// Nova's rule (`_convert_to_nova_security_group_rule_format`): ports "all" of a rule
/// with a protocol read as 1-65535 (TCP, UDP) or -1 (others).
#[derive(Debug, Clone, PartialEq)]
struct NovaRule {
    id: SecurityGroupRuleId,
    parent_group_id: String,
    protocol: Option<String>,
    from_port: Option<i64>,
    to_port: Option<i64>,
    group_id: Option<Uuid>,
    cidr: String,
}

fn nova_rule(r: &Rule) -> NovaRule {
    let (from_port, to_port) = match (&r.protocol, r.port_range_min, r.port_range_max) {
        (Some(p), None, None) => {
            if matches!(p.to_ascii_uppercase().as_str(), "TCP" | "UDP") {
                (Some(1), Some(65535))
            } else {
                (Some(-1), Some(-1))
            }
        }
        (_, min, max) => (min.map(i64::from), max.map(i64::from)),
    };
    NovaRule {
        id: r.id,
        parent_group_id: r.security_group_id.to_string(),
        protocol: r.protocol.clone(),
        from_port,
        to_port,
        group_id: r.remote_group_id.map(|g| g.0),
        cidr: stored_cidr(r),
    }
}

/// Nova's `_format_security_group_rule`: the remote group's name and project (None:
/// the caller cannot see it, and Nova leaves the rule out), or the CIDR.
fn format_rule(st: &ApiState, caller: &Caller, r: &NovaRule) -> Option<Value> {
    match r.group_id {
        Some(g) => {
            let src = get_group(st, caller, &g.to_string()).ok()?;
            let mut v = format_rule_with(r, None);
            v["group"] = json!({"name": src.spec.name, "tenant_id": src.spec.project_id});
            Some(v)
        }
        None => Some(format_rule_with(r, Some(&r.cidr))),
    }
}

/// Nova's ingress rules of a group, in Neutron's order.
fn ingress(g: &SecurityGroup) -> Vec<NovaRule> {
    g.rules_in_order()
        .into_iter()
        .filter(|r| r.direction == Direction::Ingress)
        .map(nova_rule)
        .collect()
}

/// Nova's `_format_security_group` (also what GET /servers/{id}/os-security-groups
/// lists per group).
pub fn format_group(st: &ApiState, caller: &Caller, g: &SecurityGroup) -> Value {
    let rules: Vec<Value> = ingress(g)
        .iter()
        .filter_map(|r| format_rule(st, caller, r))
        .collect();
    json!({
        "id": g.spec.id.to_string(),
        "description": g.spec.description,
        "name": g.spec.name,
        "tenant_id": g.spec.project_id,
        "rules": rules,
    })
}

/// A non-negative integer query parameter (Nova's `non_negative_integer`).
fn query_count(q: &QueryPairs, key: &str) -> Result<Option<usize>, ApiError> {
    let mut last = None;
    for (_, v) in q.0.iter().filter(|(k, _)| k == key) {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::bad_request(format!(
                "Invalid input for query parameters {key}. Value: {v}. '{v}' does not match '^[0-9]*$'"
            )));
        }
        last = Some(v.parse::<usize>().unwrap_or(usize::MAX));
    }
    Ok(last)
}

/// GET /v2.1/os-security-groups: the project's groups (every project's for an admin
/// with `all_tenants`), `offset` / `limit` applied, sorted by project and name.
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let limit = query_count(&q, "limit")?;
    let offset = query_count(&q, "offset")?.unwrap_or(0);
    let all = caller.is_admin && q.has("all_tenants");
    // Neutron's listing creates the listed project's `default` group first.
    let (nst, nc) = neutron(&st, &caller);
    nsg::ensure_default(&nst, &nc, &caller.project)
        .await
        .map_err(|e| unexpected(&e))?;
    let mut groups: Vec<SecurityGroup> = {
        let views = st.engine.world().read();
        views
            .security_groups()
            .all()
            .filter(|g| all || g.spec.project_id == caller.project)
            .cloned()
            .collect()
    };
    groups.sort_by_key(|g| (g.spec.created_at, g.spec.id));
    // Nova's `common.limited`: a limit of 0 is the maximum.
    let max = crate::servers::MAX_LIMIT;
    let take = limit.filter(|l| *l > 0).unwrap_or(max).min(max);
    let mut list: Vec<Value> = groups
        .iter()
        .skip(offset)
        .take(take)
        .map(|g| format_group(&st, &caller, g))
        .collect();
    list.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["tenant_id"].as_str().unwrap_or_default().to_string(),
                v["name"].as_str().unwrap_or_default().to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(Json(json!({ "security_groups": list })))
}

/// GET /v2.1/os-security-groups/{id}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    validate_id(&id)?;
    let g = get_group(&st, &caller, &id)?;
    Ok(Json(
        json!({"security_group": format_group(&st, &caller, &g)}),
    ))
}

/// The body of a group create or update (`additionalProperties` allowed, as Nova).
#[derive(Debug, Deserialize)]
struct GroupBody {
    security_group: GroupFields,
}

#[derive(Debug, Deserialize)]
struct GroupFields {
    name: String,
    description: String,
}

fn group_body(body: &Value) -> Result<GroupFields, ApiError> {
    let b: GroupBody = body::from_value("", body)?;
    let f = b.security_group;
    check_len("name", &f.name, 0, 255)?;
    check_len("description", &f.description, 0, 255)?;
    Ok(f)
}

/// POST /v2.1/os-security-groups (200): Neutron's refusals are 400 (bad request) or
/// 403 (its 409s: over quota, the name `default`).
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    crate::context::JsonBody(body): crate::context::JsonBody,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let f = group_body(&body)?;
    let (nst, nc) = neutron(&st, &caller);
    let created = async {
        let new = nsg::new_group(Some(f.name), f.description, &caller.project)?;
        nsg::create_group(&nst, &nc, new).await
    }
    .await
    .map_err(|e| match e.status.as_u16() {
        400 => ApiError::bad_request(e.message),
        409 => ApiError::forbidden(e.message),
        _ => unexpected(&e),
    })?;
    Ok(Json(
        json!({"security_group": format_group(&st, &caller, &created)}),
    ))
}

/// PUT /v2.1/os-security-groups/{id}: name and description (both required).
pub async fn update(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    crate::context::JsonBody(body): crate::context::JsonBody,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let f = group_body(&body)?;
    validate_id(&id)?;
    let g = get_group(&st, &caller, &id)?;
    let (nst, nc) = neutron(&st, &caller);
    let patch = GroupPatch {
        name: Some(f.name),
        description: Some(f.description),
        stateful: None,
    };
    // Nova's update expects no Neutron error at all (a 409 for the name `default`
    // is its 500).
    let g = nsg::update_group(&nst, &nc, &g, patch)
        .await
        .map_err(|e| unexpected(&e))?;
    Ok(Json(
        json!({"security_group": format_group(&st, &caller, &g)}),
    ))
}

/// DELETE /v2.1/os-security-groups/{id} (202): Neutron's 409s (in use, the `default`
/// group) are Nova's 400.
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    proxy_version(&caller)?;
    validate_id(&id)?;
    let g = get_group(&st, &caller, &id)?;
    let (nst, nc) = neutron(&st, &caller);
    nsg::delete_group(&nst, &nc, &g)
        .await
        .map_err(|e| match e.status.as_u16() {
            404 => ApiError::not_found(e.message),
            409 => ApiError::bad_request(e.message),
            _ => unexpected(&e),
        })?;
    Ok(StatusCode::ACCEPTED)
}

/// The body of a rule create: the ports, protocol and CIDR are not validated by
/// Nova's schema (its rule builder reads them as Python would).
#[derive(Debug, Deserialize)]
struct RuleBody {
    security_group_rule: RuleFields,
}

#[derive(Debug, Deserialize)]
struct RuleFields {
    parent_group_id: String,
    #[serde(default)]
    group_id: Option<String>,
    #[serde(default)]
    to_port: Value,
    #[serde(default)]
    from_port: Value,
    #[serde(default)]
    ip_protocol: Value,
    #[serde(default)]
    cidr: Value,
}

fn check_uuid(field: &str, v: &str) -> Result<(), ApiError> {
    if crate::parse::uuid_like(v) {
        Ok(())
    } else {
        Err(invalid(
            field,
            &Value::String(v.to_string()),
            &format!("'{v}' is not a 'uuid'"),
        ))
    }
}

/// Python's truth value of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `str()` of a JSON value (as Nova's messages show it).
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        v => v.to_string(),
    }
}

/// Python's `int()` of a JSON value (None: a ValueError).
fn py_int(v: &Value) -> Option<i64> {
    match v {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)),
        Value::String(s) => {
            let t = s.trim();
            t.strip_prefix('+').unwrap_or(t).parse::<i64>().ok()
        }
        _ => None,
    }
}

/// Nova's new ingress rule (`_new_ingress_rule`): with a remote group, a protocol
/// without ports opens all of it; with a CIDR, protocol and both ports are needed
/// (None: "Not enough parameters").
#[derive(Debug, Clone, PartialEq)]
struct NewRule {
    group_id: Option<Uuid>,
    cidr: Option<String>,
    protocol: Option<String>,
    from_port: Option<i64>,
    to_port: Option<i64>,
}

fn new_ingress_rule(
    protocol: &Value,
    from: &Value,
    to: &Value,
    group_id: Option<Uuid>,
    cidr: Option<String>,
) -> Result<Option<NewRule>, ApiError> {
    let mut from_port = (!from.is_null()).then(|| from.clone());
    let mut to_port = (!to.is_null()).then(|| to.clone());
    if group_id.is_some() {
        let upper = if truthy(protocol) {
            py_str(protocol).to_ascii_uppercase()
        } else {
            String::new()
        };
        if from_port.is_none() && to_port.is_none() {
            if upper == "ICMP" {
                (from_port, to_port) = (Some(json!(-1)), Some(json!(-1)));
            } else if upper == "TCP" || upper == "UDP" {
                (from_port, to_port) = (Some(json!(1)), Some(json!(65535)));
            }
        }
    }
    let mut rule = NewRule {
        group_id,
        cidr: if group_id.is_some() { None } else { cidr },
        protocol: None,
        from_port: None,
        to_port: None,
    };
    match (truthy(protocol), from_port, to_port) {
        (true, Some(f), Some(t)) => {
            let p = py_str(protocol);
            let upper = p.to_ascii_uppercase();
            let (Some(from), Some(to)) = (py_int(&f), py_int(&t)) else {
                return Err(ApiError::bad_request(if upper == "ICMP" {
                    "Invalid input received: Type and Code must be integers for ICMP protocol type"
                } else {
                    "Invalid input received: To and From ports must be integers"
                }));
            };
            if !matches!(upper.as_str(), "TCP" | "UDP" | "ICMP") {
                return Err(ApiError::bad_request(format!("Invalid IP protocol {p}.")));
            }
            let range =
                |msg: &str| ApiError::bad_request(format!("Invalid port range {from}:{to}. {msg}"));
            if upper != "ICMP" && from > to {
                return Err(range("Former value cannot be greater than the later"));
            }
            if upper != "ICMP" && (from < 1 || to > 65535) {
                return Err(range(&format!(
                    "Valid {upper} ports should be between 1-65535"
                )));
            }
            if upper == "ICMP" && !((-1..=255).contains(&from) && (-1..=255).contains(&to)) {
                return Err(range("For ICMP, the type:code must be valid"));
            }
            rule.protocol = Some(p);
            rule.from_port = Some(from);
            rule.to_port = Some(to);
        }
        _ if rule.cidr.is_some() => return Ok(None),
        _ => {}
    }
    Ok(Some(rule))
}

/// Nova's `parse_cidr` of a request: none is `0.0.0.0/0`; the text is URL-decoded and
/// must be an address with a prefix.
fn parse_cidr(v: &Value) -> Result<String, ApiError> {
    if !truthy(v) {
        return Ok("0.0.0.0/0".into());
    }
    let bad = || ApiError::bad_request(format!("{} is not a valid IP network.", py_str(v)));
    let Value::String(raw) = v else {
        return Err(bad());
    };
    let text = percent_decode(raw).ok_or_else(bad)?;
    match text.split_once('/') {
        Some((_, p)) if !p.is_empty() && sg::convert_prefix(&text).is_ok() => Ok(text),
        _ => Err(bad()),
    }
}

/// `urllib.parse.unquote` (None: not UTF-8 afterwards).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Nova's `_rule_exists`: the same remote, ports and protocol (as given) as one of the
/// group's ingress rules.
fn rule_exists(g: &SecurityGroup, new: &NewRule) -> bool {
    ingress(g).iter().any(|r| {
        r.group_id == new.group_id
            && Some(&r.cidr) == new.cidr.as_ref()
            && r.from_port == new.from_port
            && r.to_port == new.to_port
            && r.protocol == new.protocol
    })
}

/// Nova's `add_rules` translation of Neutron's refusals.
fn add_rules_error(e: NetworkError) -> ApiError {
    match e.status.as_u16() {
        404 => ApiError::not_found(e.message),
        409 => ApiError::forbidden(e.message),
        400 => ApiError::bad_request(e.message),
        _ => unexpected(&e),
    }
}

/// POST /v2.1/os-security-group-rules (200): one ingress rule, from a CIDR or from
/// the members of a group.
pub async fn create_rule(
    State(st): State<ApiState>,
    caller: Caller,
    crate::context::JsonBody(body): crate::context::JsonBody,
) -> Result<Json<Value>, ApiError> {
    proxy_version(&caller)?;
    let b: RuleBody = body::from_value("", &body)?;
    let f = b.security_group_rule;
    check_uuid("parent_group_id", &f.parent_group_id)?;
    if let Some(g) = &f.group_id {
        check_uuid("group_id", g)?;
    }
    let parent = get_group(&st, &caller, &f.parent_group_id)?;
    let source = match &f.group_id {
        Some(g) => Some(get_group(&st, &caller, g)?),
        None => None,
    };
    let new = match &source {
        Some(src) => new_ingress_rule(
            &f.ip_protocol,
            &f.from_port,
            &f.to_port,
            Some(src.spec.id.0),
            None,
        )?,
        None => {
            let cidr = parse_cidr(&f.cidr)?;
            new_ingress_rule(&f.ip_protocol, &f.from_port, &f.to_port, None, Some(cidr))?
        }
    }
    .ok_or_else(|| ApiError::bad_request("Not enough parameters to build a valid rule."))?;
    if let Some(c) = &new.cidr {
        let (net, prefix) = c.split_once('/').unwrap_or((c, ""));
        let net = net.parse::<std::net::IpAddr>().map(|ip| ip.to_string());
        if prefix == "0" && !matches!(net.as_deref(), Ok("0.0.0.0" | "::")) {
            return Err(ApiError::bad_request(format!(
                "Bad prefix for network in cidr {c}"
            )));
        }
    }
    if rule_exists(&parent, &new) {
        return Err(ApiError::bad_request(format!(
            "This rule already exists in group {}",
            parent.spec.id
        )));
    }
    // Nova's Neutron rule: ingress, IPv4 unless the CIDR is IPv6, -1 ports omitted.
    let (nst, nc) = neutron(&st, &caller);
    let id = async {
        let prefix = new.cidr.as_deref().map(sg::convert_prefix).transpose()?;
        let ethertype = match prefix {
            Some(p) if p.ip.is_ipv6() => Ethertype::IPv6,
            _ => Ethertype::IPv4,
        };
        let port = |p: Option<i64>| -> Result<Option<u16>, NetworkError> {
            match p {
                None | Some(-1) => Ok(None),
                Some(n) => Ok(Some(sg::convert_port(&n.to_string())?)),
            }
        };
        let req = sg::normalise_rule(RuleRequest {
            id: SecurityGroupRuleId(Uuid::new_v4()),
            project_id: caller.project.clone(),
            direction: Direction::Ingress,
            ethertype,
            protocol: sg::convert_protocol(new.protocol.as_deref())?,
            port_range_min: port(new.from_port)?,
            port_range_max: port(new.to_port)?,
            remote_ip_prefix: prefix,
            remote_group_id: new.group_id.map(domain::SecurityGroupId),
            description: String::new(),
        })?;
        nsg::add_rules(&nst, &nc, &parent, vec![req]).await
    }
    .await
    .map_err(add_rules_error)?;
    let Some(rid) = id.first() else {
        return Err(ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR));
    };
    let (_, rule) = nsg::visible_rule(&nst, &rid.to_string(), &nc)
        .map_err(|e| ApiError::not_found(e.message))?;
    let nova = nova_rule(&rule);
    // Nova formats the new rule with the source group it read before the create.
    let mut formatted = format_rule_with(&nova, source.is_none().then_some(&nova.cidr));
    if let Some(src) = &source {
        formatted["group"] = json!({"name": src.spec.name, "tenant_id": src.spec.project_id});
    }
    Ok(Json(json!({ "security_group_rule": formatted })))
}

/// A rule in Nova's format with an empty `group` and the CIDR (if any) as `ip_range`.
fn format_rule_with(r: &NovaRule, cidr: Option<&String>) -> Value {
    json!({
        "id": r.id.to_string(),
        "parent_group_id": r.parent_group_id,
        "ip_protocol": r.protocol,
        "from_port": r.from_port,
        "to_port": r.to_port,
        "group": {},
        "ip_range": cidr.map_or_else(|| json!({}), |c| json!({"cidr": c})),
    })
}

/// DELETE /v2.1/os-security-group-rules/{id} (202).
pub async fn delete_rule(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    proxy_version(&caller)?;
    validate_id(&id)?;
    let (nst, nc) = neutron(&st, &caller);
    let (g, r) = nsg::visible_rule(&nst, &id, &nc).map_err(|e| ApiError::not_found(e.message))?;
    let g = get_group(&st, &caller, &g.spec.id.to_string()).map(|_| g)?;
    nsg::remove_rule(&nst, &nc, &g, &r)
        .await
        .map_err(|e| unexpected(&e))?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: &str, from: Value, to: Value) -> Result<Option<NewRule>, ApiError> {
        new_ingress_rule(&json!(p), &from, &to, None, Some("0.0.0.0/0".into()))
    }

    #[test]
    fn nova_rule_builder_checks_protocol_and_ports() {
        let msg = |r: Result<Option<NewRule>, ApiError>| r.unwrap_err().message;
        assert_eq!(
            msg(rule("tcp", json!(22), json!(21))),
            "Invalid port range 22:21. Former value cannot be greater than the later"
        );
        assert_eq!(
            msg(rule("udp", json!(0), json!(21))),
            "Invalid port range 0:21. Valid UDP ports should be between 1-65535"
        );
        assert_eq!(
            msg(rule("icmp", json!(-1), json!(256))),
            "Invalid port range -1:256. For ICMP, the type:code must be valid"
        );
        assert_eq!(
            msg(rule("gre", json!(1), json!(2))),
            "Invalid IP protocol gre."
        );
        assert_eq!(
            msg(rule("tcp", json!("a"), json!(2))),
            "Invalid input received: To and From ports must be integers"
        );
        assert_eq!(rule("tcp", Value::Null, json!(2)).unwrap(), None);
        let r = rule("TCP", json!("22"), json!(22.9)).unwrap().unwrap();
        assert_eq!((r.from_port, r.to_port), (Some(22), Some(22)));
        assert_eq!(r.protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn group_rules_open_everything_without_ports() {
        let g = Some(Uuid::nil());
        let r = new_ingress_rule(&json!("tcp"), &Value::Null, &Value::Null, g, None)
            .unwrap()
            .unwrap();
        assert_eq!((r.from_port, r.to_port), (Some(1), Some(65535)));
        let r = new_ingress_rule(&json!("icmp"), &Value::Null, &Value::Null, g, None)
            .unwrap()
            .unwrap();
        assert_eq!((r.from_port, r.to_port), (Some(-1), Some(-1)));
        let r = new_ingress_rule(&Value::Null, &Value::Null, &Value::Null, g, None)
            .unwrap()
            .unwrap();
        assert_eq!(r.protocol, None);
    }

    #[test]
    fn cidrs_parse_as_nova_does() {
        assert_eq!(parse_cidr(&Value::Null).unwrap(), "0.0.0.0/0");
        assert_eq!(parse_cidr(&json!("")).unwrap(), "0.0.0.0/0");
        assert_eq!(parse_cidr(&json!("10.0.0.0%2F8")).unwrap(), "10.0.0.0/8");
        assert_eq!(parse_cidr(&json!("10.0.0.1/24")).unwrap(), "10.0.0.1/24");
        assert_eq!(
            parse_cidr(&json!("10.0.0.1")).unwrap_err().message,
            "10.0.0.1 is not a valid IP network."
        );
        assert_eq!(
            parse_cidr(&json!("bogus/8")).unwrap_err().message,
            "bogus/8 is not a valid IP network."
        );
    }
}
