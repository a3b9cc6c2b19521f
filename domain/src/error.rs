//! The one error enum of the domain. HTTP mapping lives in the API crate only.

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// Nova's InstanceInvalidState: "Cannot '{action}' instance {id} while it is in {attr} {state}".
    InvalidState {
        /// API action name (`pause`, `os-migrateLive`, ...).
        action: String,
        /// Instance id.
        id: String,
        /// `vm_state`, `task_state` or `launched_at`.
        attr: String,
        /// The offending value.
        state: String,
    },
    /// Nova's InstanceIsLocked.
    Locked {
        /// Instance id.
        id: String,
    },
    /// Nova's InstanceNotReady (no host yet).
    NotReady {
        /// Instance id.
        id: String,
    },
    /// The aggregate does not exist (or is deleted).
    NotFound {
        /// Kind of thing (`Instance`, `Flavor`, ...).
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// A part of an existing aggregate is not there (404 with Nova's message: a tag,
    /// a metadata item).
    Missing(String),
    /// The aggregate already exists.
    AlreadyExists {
        /// Kind of thing.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// Bad input that passed parsing (400).
    BadRequest(String),
    /// Policy refusal (403).
    Forbidden(String),
    /// Any other conflict (409).
    Conflict(String),
    /// A host claim that does not fit.
    NoCapacity {
        /// Host name.
        host: String,
        /// Which resource is short.
        resource: &'static str,
    },
    /// A host claim on a host whose compute service takes no builds (disabled or
    /// forced down): decided on the host's own record, so a build racing an
    /// operator's disable never lands there, whatever the scheduler's view showed.
    OutOfService {
        /// Host name.
        host: String,
    },
    /// A Neutron fault of the network aggregates (named and classed by Neutron).
    Network(crate::network::NetError),
}

impl std::fmt::Display for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DomainError::InvalidState {
                action,
                id,
                attr,
                state,
            } => write!(
                f,
                "Cannot '{action}' instance {id} while it is in {attr} {state}"
            ),
            DomainError::Locked { id } => write!(f, "Instance {id} is locked"),
            DomainError::NotReady { id } => write!(f, "Instance {id} is not ready"),
            DomainError::NotFound { kind, id } => write!(f, "{kind} {id} could not be found."),
            DomainError::AlreadyExists { kind, id } => {
                write!(f, "{kind} with id {id} already exists.")
            }
            DomainError::BadRequest(m)
            | DomainError::Forbidden(m)
            | DomainError::Conflict(m)
            | DomainError::Missing(m) => f.write_str(m),
            DomainError::NoCapacity { host, resource } => {
                write!(f, "Host {host} has not enough {resource}")
            }
            DomainError::OutOfService { host } => {
                write!(f, "Host {host} is disabled or forced down")
            }
            DomainError::Network(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DomainError {}

impl From<crate::network::NetError> for DomainError {
    fn from(e: crate::network::NetError) -> Self {
        DomainError::Network(e)
    }
}
