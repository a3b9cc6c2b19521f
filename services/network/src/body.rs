//! Typed reading of Neutron request bodies (`{"network": {...}}`): each attribute is
//! taken once with its type and limits, and whatever is left is refused, so a body
//! with an attribute Stratus does not implement is a 400 (`Unrecognized attribute(s)`)
//! rather than silently ignored.
//!
//! Invariant: a body that fails here reaches no command, so it appends nothing.

use serde_json::{Map, Value};

use crate::error::NetworkError;

/// Neutron's limit on names and descriptions.
pub const NAME_MAX: usize = 255;

/// The attributes of one resource in a request body.
#[derive(Debug)]
pub struct Attrs {
    map: Map<String, Value>,
}

/// Reads a create body: `{"<resource>": {...}}`, or Neutron's bulk form
/// `{"<resource>s": [{...}, ...]}`. The flag says whether it was bulk (the answer is a
/// list then).
pub fn creates(bytes: &[u8], resource: &str) -> Result<(Vec<Attrs>, bool), NetworkError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|_| NetworkError::bad_request("Malformed request body"))?;
    let plural = format!("{resource}s");
    if let Some(Value::Array(items)) = v.get(&plural) {
        if items.is_empty() {
            return Err(NetworkError::bad_request("Resources required"));
        }
        let attrs = items
            .iter()
            .map(|i| match i {
                Value::Object(map) => Ok(Attrs { map: map.clone() }),
                _ => Err(NetworkError::bad_request("Malformed request body")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((attrs, true));
    }
    Ok((vec![resource_of(v, resource)?], false))
}

/// Reads `{"<resource>": {...}}` from raw bytes.
pub fn resource(bytes: &[u8], resource: &str) -> Result<Attrs, NetworkError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|_| NetworkError::bad_request("Malformed request body"))?;
    resource_of(v, resource)
}

fn resource_of(v: Value, resource: &str) -> Result<Attrs, NetworkError> {
    let Value::Object(mut top) = v else {
        return Err(NetworkError::bad_request("Malformed request body"));
    };
    match top.remove(resource) {
        Some(Value::Object(map)) => Ok(Attrs { map }),
        Some(_) => Err(NetworkError::bad_request(format!(
            "Bad {resource} request: Request body is not a valid {resource} object."
        ))),
        None => Err(NetworkError::bad_request("Resource body required")),
    }
}

fn bad(attr: &str, reason: impl std::fmt::Display) -> NetworkError {
    NetworkError::invalid(format!("Invalid input for {attr}. Reason: {reason}"))
}

impl Attrs {
    /// Whether `attr` was given (null included).
    pub fn has(&self, attr: &str) -> bool {
        self.map.contains_key(attr)
    }

    /// Takes a raw value.
    pub fn take(&mut self, attr: &str) -> Option<Value> {
        self.map.remove(attr)
    }

    /// Takes `attr` when it is null (true), else leaves it.
    pub fn take_null(&mut self, attr: &str) -> bool {
        if self.map.get(attr) == Some(&Value::Null) {
            self.map.remove(attr);
            return true;
        }
        false
    }

    /// A string of at most `max` characters (None: absent).
    pub fn string(&mut self, attr: &str, max: usize) -> Result<Option<String>, NetworkError> {
        match self.map.remove(attr) {
            None => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s)),
            Some(Value::String(s)) => {
                Err(bad(attr, format!("'{s}' exceeds maximum length of {max}.")))
            }
            Some(v) => Err(bad(attr, format!("'{v}' is not a valid string."))),
        }
    }

    /// A name or description (255 characters; null reads as "").
    pub fn text(&mut self, attr: &str) -> Result<Option<String>, NetworkError> {
        if self.map.get(attr) == Some(&Value::Null) {
            self.map.remove(attr);
            return Ok(Some(String::new()));
        }
        self.string(attr, NAME_MAX)
    }

    /// A boolean as neutron-lib converts one (true/false, their strings in any case,
    /// 0 and 1).
    pub fn boolean(&mut self, attr: &str) -> Result<Option<bool>, NetworkError> {
        match self.map.remove(attr) {
            None => Ok(None),
            Some(v) => to_bool(&v).map(Some).ok_or_else(|| {
                bad(
                    attr,
                    format!("'{}' cannot be converted to boolean.", text_of(&v)),
                )
            }),
        }
    }

    /// An integer.
    pub fn integer(&mut self, attr: &str) -> Result<Option<i64>, NetworkError> {
        match self.map.remove(attr) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
            Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => Ok(s.trim().parse().ok()),
            Some(v) => Err(bad(attr, format!("'{}' is not an integer", text_of(&v)))),
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, attr: &str) -> Result<Option<Vec<String>>, NetworkError> {
        match self.map.remove(attr) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    v => Err(bad(attr, format!("'{v}' is not a valid string."))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(bad(attr, format!("'{v}' is not a list"))),
        }
    }

    /// The project a resource is created for: `project_id` or `tenant_id` (which must
    /// agree), else the caller's. Only an admin creates for another project.
    pub fn owner(
        &mut self,
        caller: &crate::auth::Caller,
        rule: &str,
    ) -> Result<String, NetworkError> {
        let p = self.string("project_id", 255)?;
        let t = self.string("tenant_id", 255)?;
        let owner = match (p, t) {
            (Some(p), Some(t)) if p != t => {
                return Err(NetworkError::invalid(
                    "'project_id' and 'tenant_id' do not match",
                ))
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => caller.project.clone(),
        };
        if owner != caller.project && !caller.is_admin() {
            return Err(NetworkError::policy(rule));
        }
        Ok(owner)
    }

    /// Refuses what is left (Neutron's `Unrecognized attribute(s)`).
    pub fn finish(self) -> Result<(), NetworkError> {
        if self.map.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.map.keys().map(String::as_str).collect();
        Err(NetworkError::bad_request(format!(
            "Unrecognized attribute(s) '{}'",
            names.join(", ")
        )))
    }
}

/// neutron-lib's `convert_to_boolean`.
pub fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) if n.as_i64() == Some(0) => Some(false),
        Value::Number(n) if n.as_i64() == Some(1) => Some(true),
        Value::String(s) => str_bool(s),
        _ => None,
    }
}

/// A boolean from query or body text.
pub fn str_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}
