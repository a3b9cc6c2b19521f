//! Handlers of `/v2.1/os-keypairs` (Nova's `nova/api/openstack/compute/keypairs.py`).
//!
//! Invariants:
//! - Key pairs are per user: every request acts on the caller's own ring, or (from 2.10)
//!   on the ring of the `user_id` it names, which only admins may do (Nova's
//!   `admin or user_id:%(user_id)s`: 403 with the policy name otherwise), checked before
//!   anything is appended.
//! - A create validates the body, the name and the public key (or generates a key pair,
//!   before 2.92) before the command; the command decides name uniqueness and the
//!   `key_pairs` quota on the ring (see `domain::keypair`), so refusals append nothing.
//! - A generated private key is in the create response only: never in an event, a log
//!   line or a later response.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::keypair::{KeyType, Keypair, KeypairCommand};
use domain::DomainError;
use engine::EngineError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, check_len, invalid, unexpected, Decode, Typed};
use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::keys;
use crate::microversion::Version;
use crate::ApiState;

/// Nova's `os_compute_api:os-keypairs:<op>` policy names.
pub const POLICY_INDEX: &str = "os_compute_api:os-keypairs:index";
pub const POLICY_CREATE: &str = "os_compute_api:os-keypairs:create";
pub const POLICY_SHOW: &str = "os_compute_api:os-keypairs:show";
pub const POLICY_DELETE: &str = "os_compute_api:os-keypairs:delete";

/// Nova's KeypairNotFound (404).
pub fn not_found(name: &str, user: &str) -> ApiError {
    ApiError::not_found(format!("Keypair {name} not found for user {user}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    keypair: CreateFields,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TypeName {
    Ssh,
    X509,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateFields {
    name: String,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(rename = "type", default)]
    key_type: Option<TypeName>,
    #[serde(default)]
    user_id: Option<String>,
}

/// A validated POST /os-keypairs body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeypairCreate {
    pub name: String,
    pub key_type: KeyType,
    /// None: generate a key pair (before 2.92).
    pub public_key: Option<String>,
    /// The user to create it for (2.10+, admins).
    pub user_id: Option<String>,
}

/// Nova's `keypair_name_special_chars` pattern (`keypair_name_special_chars_v292` from
/// 2.92, which adds `@` and `.`), as jsonschema prints it.
fn name_pattern(version: Version) -> &'static str {
    if version.at_least(92) {
        r"^[_\\-\\@\\. a-zA-Z0-9]+$"
    } else {
        r"^[_\\- a-zA-Z0-9]+$"
    }
}

/// Validates a key pair name as Nova's schema does at `version`.
pub fn check_name(name: &str, version: Version) -> Result<(), ApiError> {
    check_len("name", name, 1, 255)?;
    // Nova's `name` format: printable, no leading or trailing whitespace.
    if name.trim() != name || name.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace.",
        ));
    }
    let extra = |c: char| version.at_least(92) && (c == '@' || c == '.');
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ' ' || extra(c))
    {
        return Err(invalid(
            "name",
            &Value::String(name.to_string()),
            &format!("'{name}' does not match '{}'", name_pattern(version)),
        ));
    }
    Ok(())
}

impl Decode for KeypairCreate {
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError> {
        let k = body::from_value::<CreateBody>("", body)?.keypair;
        if k.key_type.is_some() && !version.at_least(2) {
            return Err(unexpected(&["type"]));
        }
        if k.user_id.is_some() && !version.at_least(10) {
            return Err(unexpected(&["user_id"]));
        }
        if k.public_key.is_none() && version.at_least(92) {
            let given = body.get("keypair").cloned().unwrap_or(Value::Null);
            return Err(invalid(
                "keypair",
                &given,
                "'public_key' is a required property",
            ));
        }
        check_name(&k.name, version)?;
        Ok(KeypairCreate {
            name: k.name,
            key_type: match k.key_type {
                None | Some(TypeName::Ssh) => KeyType::Ssh,
                Some(TypeName::X509) => KeyType::X509,
            },
            public_key: k.public_key,
            user_id: k.user_id,
        })
    }
}

/// The user a request acts for: the caller, or (2.10+) the `user_id` it names, which
/// only admins may name (403 with `policy` otherwise).
fn target_user(caller: &Caller, named: Option<String>, policy: &str) -> Result<String, ApiError> {
    match named {
        Some(u) if u != caller.user => {
            if !caller.is_admin {
                return Err(ApiError::policy(policy));
            }
            Ok(u)
        }
        _ => Ok(caller.user.clone()),
    }
}

/// The query keys each operation accepts from 2.75 (additionalProperties false), and
/// the `user_id` the query names from 2.10.
fn query_user(
    q: &QueryPairs,
    version: Version,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    if version.at_least(75) {
        if let Some((k, v)) = q.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!(
                "Invalid input for query parameters {k}. Value: {v}. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    // Nova takes the first `user_id` of the query.
    Ok(version
        .at_least(10)
        .then(|| {
            q.0.iter()
                .find(|(k, _)| k == "user_id")
                .map(|(_, v)| v.clone())
        })
        .flatten())
}

fn iso(ts: domain::Timestamp) -> String {
    crate::util::iso_micros(ts)
}

fn index_view(k: &Keypair, version: Version) -> Value {
    let mut v = json!({
        "name": k.name,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
    });
    if version.at_least(2) {
        v["type"] = json!(k.key_type.as_str());
    }
    v
}

fn show_view(k: &Keypair, user: &str, version: Version) -> Value {
    let mut v = index_view(k, version);
    v["user_id"] = json!(user);
    v["created_at"] = json!(iso(k.created_at));
    v["deleted"] = json!(false);
    v["deleted_at"] = Value::Null;
    v["updated_at"] = Value::Null;
    v["id"] = json!(k.id);
    v
}

/// Maps the domain's refusals to Nova's keypair messages.
fn refusal(e: EngineError, name: &str, user: &str) -> ApiError {
    match e {
        EngineError::Domain(DomainError::NotFound {
            kind: "Keypair", ..
        }) => not_found(name, user),
        other => other.into(),
    }
}

/// POST /os-keypairs: generate (before 2.92, without `public_key`) or import. 200 before
/// 2.2, 201 from 2.2.
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Typed(req): Typed<KeypairCreate>,
) -> Result<Response, ApiError> {
    let version = caller.version();
    let user = target_user(&caller, req.user_id.clone(), POLICY_CREATE)?;
    let (key, private_key) = match req.public_key {
        Some(pk) => (keys::import(req.key_type, pk)?, None),
        None => {
            let (kt, u) = (req.key_type, user.clone());
            let g = tokio::task::spawn_blocking(move || keys::generate(kt, &u))
                .await
                .map_err(|_| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR))??;
            (g.key, Some(g.private_key))
        }
    };
    let project = caller.project.clone();
    let name = req.name.clone();
    st.engine
        .keypair(
            &user,
            |v| KeypairCommand::Create {
                name: name.clone(),
                key: key.clone(),
                limit: st.engine.keypair_limit(v, &project, &user),
            },
            &caller.ctx(),
            &caller.meta(),
        )
        .await
        .map_err(|e| refusal(e, &name, &user))?;
    let mut body = json!({
        "name": name,
        "public_key": key.public_key,
        "fingerprint": key.fingerprint,
        "user_id": user,
    });
    if version.at_least(2) {
        body["type"] = json!(key.key_type.as_str());
    }
    if let Some(pk) = private_key {
        body["private_key"] = json!(pk);
    }
    let status = if version.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "keypair": body }))).into_response())
}

/// GET /os-keypairs: the user's key pairs by name; 2.35 `limit` / `marker` and
/// `keypairs_links`.
pub async fn index(
    State(st): State<ApiState>,
    caller: Caller,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let version = caller.version();
    let named = query_user(&q, version, &["user_id", "limit", "marker"])?;
    let user = target_user(&caller, named, POLICY_INDEX)?;
    let paging = version.at_least(35);
    let (limit, marker) = if paging {
        (
            crate::parse::limit(&q)?
                .unwrap_or(crate::servers::MAX_LIMIT)
                .min(crate::servers::MAX_LIMIT),
            q.0.iter()
                .find(|(k, _)| k == "marker")
                .map(|(_, v)| v.clone()),
        )
    } else {
        (usize::MAX, None)
    };
    let views = st.engine.world().read();
    let all = views.keypairs().list(&user);
    let start = match &marker {
        None => 0,
        Some(m) => {
            all.iter()
                .position(|k| &k.name == m)
                .ok_or_else(|| ApiError::bad_request(format!("Marker {m} could not be found.")))?
                + 1
        }
    };
    let end = start.saturating_add(limit).min(all.len());
    let page = &all[start.min(end)..end];
    let items: Vec<Value> = page
        .iter()
        .map(|k| json!({"keypair": index_view(k, version)}))
        .collect();
    let mut body = json!({ "keypairs": items });
    if let (true, Some(last)) = (paging && limit > 0 && page.len() == limit, page.last()) {
        body["keypairs_links"] =
            crate::util::next_link(caller.base(), "os-keypairs", &q.0, &last.name);
    }
    Ok(Json(body))
}

/// GET /os-keypairs/{name}
pub async fn show(
    State(st): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let version = caller.version();
    let named = query_user(&q, version, &["user_id"])?;
    let user = target_user(&caller, named, POLICY_SHOW)?;
    let views = st.engine.world().read();
    let k = views
        .keypairs()
        .get(&user, &name)
        .ok_or_else(|| not_found(&name, &user))?;
    Ok(Json(json!({ "keypair": show_view(k, &user, version) })))
}

/// DELETE /os-keypairs/{name}: 202 before 2.2, 204 from 2.2.
pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    q: QueryPairs,
) -> Result<StatusCode, ApiError> {
    let version = caller.version();
    let named = query_user(&q, version, &["user_id"])?;
    let user = target_user(&caller, named, POLICY_DELETE)?;
    st.engine
        .keypair(
            &user,
            |_| KeypairCommand::Delete { name: name.clone() },
            &caller.ctx(),
            &caller.meta(),
        )
        .await
        .map_err(|e| refusal(e, &name, &user))?;
    Ok(if version.at_least(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: u16) -> Version {
        Version::parse(&format!("2.{minor}")).unwrap()
    }

    #[test]
    fn names_follow_novas_patterns() {
        assert!(check_name("my key_1-a", v(1)).is_ok());
        let e = check_name("a.b", v(91)).unwrap_err();
        assert_eq!(
            e.message,
            r#"Invalid input for field/attribute name. Value: "a.b". 'a.b' does not match '^[_\\- a-zA-Z0-9]+$'"#
        );
        assert!(check_name("me.and.myself@this.nice.domain.com mooh.", v(92)).is_ok());
        assert!(check_name("a/b", v(92)).is_err());
        assert!(check_name(" a", v(1))
            .unwrap_err()
            .message
            .starts_with("An invalid 'name' value was provided."));
        assert!(check_name("", v(1)).is_err());
        assert!(check_name(&"a".repeat(256), v(1)).is_err());
        assert!(check_name(&"a".repeat(255), v(1)).is_ok());
    }

    #[test]
    fn bodies_by_microversion() {
        let body = json!({"keypair": {"name": "k", "type": "x509"}});
        assert!(KeypairCreate::decode(&body, v(1)).is_err());
        assert_eq!(
            KeypairCreate::decode(&body, v(2)).unwrap().key_type,
            KeyType::X509
        );
        let body = json!({"keypair": {"name": "k", "user_id": "u"}});
        assert!(KeypairCreate::decode(&body, v(9)).is_err());
        assert!(KeypairCreate::decode(&body, v(10)).is_ok());
        let e = KeypairCreate::decode(&body, v(92)).unwrap_err();
        assert!(e.message.ends_with("'public_key' is a required property"));
        let body = json!({"keypair": {"name": "k", "type": "rsa"}});
        assert!(KeypairCreate::decode(&body, v(2)).is_err());
        let body = json!({"keypair": {"name": "k", "bogus": 1}});
        assert!(KeypairCreate::decode(&body, v(2))
            .unwrap_err()
            .message
            .starts_with("Additional properties are not allowed"));
    }
}
