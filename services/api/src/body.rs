//! Typed request bodies: serde structs checked in two steps, and the one place where
//! their failures become Nova's 400 (`{"badRequest": {"code": 400, "message": ...}}`).
//!
//! Invariants:
//! - The shape of a body (types, required keys, `additionalProperties: false` as
//!   `#[serde(deny_unknown_fields)]`) is a serde struct; what depends on the request's
//!   microversion or on several fields is the type's [`Decode`] step, run right after.
//!   Nothing here reads the world: references (flavors, hosts, AZs) are resolved later.
//! - Every serde failure is reworded into Nova's schema messages (`Invalid input for
//!   field/attribute <field>. Value: <value>. <reason>`, `Additional properties are not
//!   allowed ('x' was unexpected)`) by [`from_value`], with the field path from
//!   `serde_path_to_error` and the offending value read back from the JSON document, so
//!   clients see the same text whether a rule is serde's or a validator's.
//! - [`Typed`] is the extractor: it reads the body as [`JsonBody`] does (1 MiB limit,
//!   malformed JSON is `Malformed request body`) and decodes it at the request's
//!   microversion, before the handler runs, so a refused body appends nothing.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::context::{JsonBody, RequestInfo};
use crate::error::ApiError;
use crate::microversion::Version;

/// Nova's schema-validation message.
pub fn invalid(field: &str, value: &Value, reason: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Invalid input for field/attribute {field}. Value: {value}. {reason}"
    ))
}

/// Nova's message for keys outside a schema's `properties` (sorted, as jsonschema does).
pub fn unexpected<S: AsRef<str>>(keys: &[S]) -> ApiError {
    let mut keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
    keys.sort_unstable();
    let list = keys
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let verb = if keys.len() == 1 { "was" } else { "were" };
    ApiError::bad_request(format!(
        "Additional properties are not allowed ({list} {verb} unexpected)"
    ))
}

/// A body type decoded at a microversion: serde for the shape, then the checks serde
/// cannot state (length limits, fields allowed only from some microversion).
pub trait Decode: Sized {
    /// Decodes `body` (`Value::Null` when the request had none) at `version`.
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError>;
}

/// The extractor of typed bodies: `Typed<T>` is `T` decoded from the request's JSON at
/// its microversion, or the Nova-shaped 400 (413 beyond the body limit).
#[derive(Debug)]
pub struct Typed<T>(pub T);

impl<S: Send + Sync, T: Decode> FromRequest<S> for Typed<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let version = req
            .extensions()
            .get::<RequestInfo>()
            .map_or(Version::MIN, |i| i.version);
        let JsonBody(body) = JsonBody::from_request(req, state).await?;
        T::decode(&body, version).map(Typed)
    }
}

/// Deserializes `value` (the element named `field` of the request; `""` for a whole
/// body) into `T`, with serde's failures reworded as Nova's (see the module invariants).
pub fn from_value<T: DeserializeOwned>(field: &str, value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| nova_error(field, value, &e))
}

/// The JSON type name of a value, as Nova's schema messages say it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Nova's type name for what serde expected (`a string`, `struct Reboot`, `u32`, ...).
fn schema_type(expected: &str) -> &'static str {
    let e = expected.trim();
    if e.contains("string") || e.contains("variant") {
        "string"
    } else if e.contains("bool") {
        "boolean"
    } else if e.starts_with('i') || e.starts_with('u') || e.contains("integer") {
        "integer"
    } else if e.starts_with('f') || e.contains("number") {
        "number"
    } else if e.contains("sequence") || e.contains("array") {
        "array"
    } else {
        "object"
    }
}

/// The backquoted names of a serde message (`one of `a`, `b``).
fn quoted(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

fn nova_error(
    root: &str,
    doc: &Value,
    e: &serde_path_to_error::Error<serde_json::Error>,
) -> ApiError {
    use serde_path_to_error::Segment;
    // The JSON pointer and Nova's field name (the last key) of where serde stopped.
    let mut pointer = String::new();
    let mut field = root.to_string();
    for seg in e.path().iter() {
        match seg {
            Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                field = key.clone();
            }
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    let at = doc.pointer(&pointer).unwrap_or(&Value::Null);
    // Nova names the whole body "request body" instead of a field.
    let fail = |reason: &str| {
        if field.is_empty() {
            ApiError::bad_request(format!(
                "Invalid input for request body. Value: {at}. {reason}"
            ))
        } else {
            invalid(&field, at, reason)
        }
    };
    let msg = e.inner().to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        // The path names the unknown key; report every unknown key of its object, as
        // Nova does, when serde said which ones it knows.
        let key = rest.split('`').next().unwrap_or_default();
        let parent = pointer.rsplit_once('/').map_or("", |(p, _)| p);
        let known = quoted(rest.split_once("expected").map_or("", |(_, k)| k));
        return match doc.pointer(parent).and_then(Value::as_object) {
            Some(obj) if obj.contains_key(key) => {
                let extra: Vec<&String> = obj
                    .keys()
                    .filter(|k| !known.contains(&k.as_str()))
                    .collect();
                unexpected(&extra)
            }
            _ => unexpected(&[key]),
        };
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or_default();
        return fail(&format!("'{key}' is a required property"));
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, x)| x);
        let want = schema_type(expected);
        return fail(&format!(
            "{at} is not of type '{want}' (got {})",
            type_name(at)
        ));
    }
    if msg.starts_with("unknown variant `") {
        // `unknown variant `x`, expected one of `a`, `b``: the names after the first.
        let names = quoted(&msg);
        let list = names
            .iter()
            .skip(1)
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        return fail(&format!("is not one of [{list}]"));
    }
    if msg.starts_with("data did not match any variant") {
        return fail("is not valid under any of the given schemas");
    }
    fail(&msg)
}

/// For `Option<Option<T>>` fields: absent is `None`, `null` is `Some(None)` (a key Nova
/// requires but lets be null, like live migration's `host`).
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// For a key that is required but may be `null` (no `default`): `null` is `None`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// A string of `min..=max` characters, with Nova's messages.
pub fn check_len(field: &str, s: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = s.chars().count();
    let v = Value::String(s.to_string());
    if n < min {
        return Err(invalid(field, &v, &format!("{v} is too short")));
    }
    if n > max {
        return Err(invalid(field, &v, &format!("{v} is too long")));
    }
    Ok(())
}

/// A boolean, or one of Nova's boolean strings (`"true"`, `"off"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => crate::parse::parse_bool(s),
            _ => None,
        }
        .map(Flag)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{v} is not of type 'boolean' (got {})",
                type_name(&v)
            ))
        })
    }
}

/// A flavor reference (`flavorRef`): a non-empty string (an id or a URL ending in one)
/// or an integer; holds the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlavorRef(pub String);

impl<'de> Deserialize<'de> for FlavorRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(s) if s.is_empty() => Err(serde::de::Error::custom("'' is too short")),
            Value::String(s) => Ok(FlavorRef(crate::parse::ref_id(s).to_string())),
            Value::Number(n) if n.is_u64() || n.is_i64() => Ok(FlavorRef(n.to_string())),
            _ => Err(serde::de::Error::custom(format!(
                "{v} is not of type 'string' (got {})",
                type_name(&v)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
        #[serde(default)]
        size: Option<u32>,
        #[serde(default, deserialize_with = "present")]
        host: Option<Option<String>>,
        #[serde(default)]
        on: Option<Flag>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        server: Inner,
    }

    #[test]
    fn a_whole_body_is_the_request_body() {
        let e = from_value::<Outer>("", &json!(5)).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid input for request body. Value: 5. 5 is not of type 'object' (got number)"
        );
        let e = from_value::<Outer>("", &json!({})).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid input for request body. Value: {}. 'server' is a required property"
        );
    }

    fn msg(v: Value) -> String {
        from_value::<Outer>("body", &v).unwrap_err().message
    }

    #[test]
    fn serde_failures_read_like_nova() {
        assert_eq!(
            msg(json!({"server": {"name": "a", "colour": 1, "bogus": 2}})),
            "Additional properties are not allowed ('bogus', 'colour' were unexpected)"
        );
        assert_eq!(
            msg(json!({"server": {"size": 1}})),
            "Invalid input for field/attribute server. Value: {\"size\":1}. 'name' is a required property"
        );
        assert_eq!(
            msg(json!({"server": {"name": 5}})),
            "Invalid input for field/attribute name. Value: 5. 5 is not of type 'string' (got number)"
        );
        assert_eq!(
            msg(json!({"server": {"name": "a", "size": "x"}})),
            "Invalid input for field/attribute size. Value: \"x\". \"x\" is not of type 'integer' (got string)"
        );
        assert!(msg(json!({"server": {"name": "a", "on": "maybe"}})).contains("'boolean'"));
        let ok: Outer = from_value(
            "body",
            &json!({"server": {"name": "a", "host": null, "on": "yes"}}),
        )
        .unwrap();
        assert_eq!(ok.server.host, Some(None));
        assert_eq!(ok.server.on, Some(Flag(true)));
        let ok: Outer = from_value("body", &json!({"server": {"name": "a"}})).unwrap();
        assert_eq!(ok.server.host, None);
    }

    #[test]
    fn lengths() {
        assert!(check_len("n", "", 1, 3)
            .unwrap_err()
            .message
            .ends_with("is too short"));
        assert!(check_len("n", "abcd", 1, 3)
            .unwrap_err()
            .message
            .ends_with("is too long"));
        assert!(check_len("n", "abc", 1, 3).is_ok());
    }
}
