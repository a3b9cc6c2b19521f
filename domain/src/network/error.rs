//! The network part of [`crate::DomainError`]: Neutron's faults, each named by its
//! Neutron exception (the `type` of a `NeutronError` body) with Neutron's message.

use std::fmt;

/// Whether a fault is the caller's input, a missing resource or a conflict with the
/// state (the network API maps these to 400, 404 and 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 400.
    BadRequest,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 409.
    Conflict,
}

/// A Neutron fault: its exception name, class and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError {
    /// Neutron's exception name (`NetworkNotFound`, `IpAddressGenerationFailure`...).
    pub kind: &'static str,
    /// What the API answers.
    pub class: Class,
    /// Neutron's message.
    pub message: String,
}

impl NetError {
    fn new(kind: &'static str, class: Class, message: String) -> NetError {
        NetError {
            kind,
            class,
            message,
        }
    }

    /// `InvalidInput` (400): "Invalid input for operation: {msg}."
    pub fn invalid(msg: impl fmt::Display) -> NetError {
        let msg = msg.to_string();
        let msg = msg.strip_suffix('.').unwrap_or(&msg);
        NetError::new(
            "InvalidInput",
            Class::BadRequest,
            format!("Invalid input for operation: {msg}."),
        )
    }

    /// A 400 of another Neutron type with its own message.
    pub fn bad(kind: &'static str, message: impl Into<String>) -> NetError {
        NetError::new(kind, Class::BadRequest, message.into())
    }

    /// A 409 of a Neutron type with its own message.
    pub fn conflict(kind: &'static str, message: impl Into<String>) -> NetError {
        NetError::new(kind, Class::Conflict, message.into())
    }

    /// A 403 (Neutron's policy wording is the caller's).
    pub fn forbidden(message: impl Into<String>) -> NetError {
        NetError::new("HTTPForbidden", Class::Forbidden, message.into())
    }

    /// `<Resource>NotFound` (404): "<Resource> {id} could not be found."
    pub fn not_found(kind: &'static str, resource: &str, id: impl fmt::Display) -> NetError {
        NetError::new(
            kind,
            Class::NotFound,
            format!("{resource} {id} could not be found."),
        )
    }

    /// A 404 of a Neutron type with its own message (`Security group <id> does not
    /// exist`).
    pub fn not_found_message(kind: &'static str, message: impl Into<String>) -> NetError {
        NetError::new(kind, Class::NotFound, message.into())
    }

    /// `NetworkNotFound`.
    pub fn network_not_found(id: impl fmt::Display) -> NetError {
        NetError::not_found("NetworkNotFound", "Network", id)
    }

    /// `SubnetNotFound`.
    pub fn subnet_not_found(id: impl fmt::Display) -> NetError {
        NetError::not_found("SubnetNotFound", "Subnet", id)
    }

    /// `PortNotFound`.
    pub fn port_not_found(id: impl fmt::Display) -> NetError {
        NetError::not_found("PortNotFound", "Port", id)
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
