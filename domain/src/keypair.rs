//! Key pairs: one aggregate per user (`stratus.api.keypairs.<user>`) holding all of that
//! user's key pairs, as Nova keeps them per user.
//!
//! Invariants:
//! - A name is unique among the user's key pairs, and the user never holds more key pairs
//!   than its `key_pairs` limit (-1: unlimited): both are decided on the whole ring,
//!   appended with the ring's expected sequence, so they hold under any concurrency.
//! - The quota check comes before the duplicate check, as in Nova (`KeypairAPI` checks
//!   quota first), so a full ring answers 403 even for a taken name.
//! - Only public material is recorded: a generated private key is returned once by the
//!   API and never reaches an event. The public key and its fingerprint are validated
//!   and computed by the caller (the API) before the command: this crate stays free of
//!   cryptography.
//! - Deleting an unknown name is refused ([`DomainError::NotFound`] of kind `Keypair`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::quota::fits;
use crate::{DomainError, Timestamp};

/// Nova's key pair types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// An OpenSSH public key (the default).
    Ssh,
    /// A PEM x509 certificate (WinRM).
    X509,
}

impl KeyType {
    /// Nova's name (`ssh`, `x509`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ssh => "ssh",
            KeyType::X509 => "x509",
        }
    }

    /// The type named `s`.
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "ssh" => Some(KeyType::Ssh),
            "x509" => Some(KeyType::X509),
            _ => None,
        }
    }
}

/// One key pair (public part only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keypair {
    pub name: String,
    pub key_type: KeyType,
    pub public_key: String,
    /// MD5 (ssh) or SHA-1 (x509) colon hex, as Nova computes it.
    pub fingerprint: String,
    pub created_at: Timestamp,
    /// Nova's integer id: the position in the api stream of the commit that created it
    /// (unique and stable across rebuilds).
    pub id: u64,
}

/// A user's key pairs, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyRing {
    pub keys: BTreeMap<String, Keypair>,
}

impl KeyRing {
    /// How many key pairs the user holds (what the `key_pairs` quota counts).
    pub fn count(&self) -> usize {
        self.keys.len()
    }
}

/// A validated public key, ready to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: KeyType,
    pub public_key: String,
    pub fingerprint: String,
}

/// Commands on a user's key ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeypairCommand {
    /// Create (generated or imported) a key pair; `limit` is the user's effective
    /// `key_pairs` limit, read with the ring.
    Create {
        name: String,
        key: PublicKey,
        limit: i64,
    },
    /// Delete the key pair `name`.
    Delete { name: String },
}

/// Events of a key ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeypairEvent {
    /// `keypair.created`
    Created {
        name: String,
        key_type: KeyType,
        public_key: String,
        fingerprint: String,
        at: Timestamp,
    },
    /// `keypair.deleted`
    Deleted { name: String, at: Timestamp },
}

impl KeypairEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            KeypairEvent::Created { .. } => "keypair.created",
            KeypairEvent::Deleted { .. } => "keypair.deleted",
        }
    }
}

/// Nova's KeypairLimitExceeded.
pub const QUOTA_EXCEEDED: &str = "Quota exceeded, too many key pairs.";

/// Decides a command on a user's ring (`None`: the user has none yet).
pub fn decide(
    state: Option<&KeyRing>,
    cmd: KeypairCommand,
    now: Timestamp,
) -> Result<Vec<KeypairEvent>, DomainError> {
    let empty = KeyRing::default();
    let ring = state.unwrap_or(&empty);
    match cmd {
        KeypairCommand::Create { name, key, limit } => {
            if !fits(limit, ring.count() as i64, 1) {
                return Err(DomainError::Forbidden(QUOTA_EXCEEDED.into()));
            }
            if ring.keys.contains_key(&name) {
                return Err(DomainError::Conflict(format!(
                    "Key pair '{name}' already exists."
                )));
            }
            if name.is_empty() || name.len() > 255 {
                return Err(DomainError::BadRequest(format!(
                    "Invalid key pair name {name:?}"
                )));
            }
            Ok(vec![KeypairEvent::Created {
                name,
                key_type: key.key_type,
                public_key: key.public_key,
                fingerprint: key.fingerprint,
                at: now,
            }])
        }
        KeypairCommand::Delete { name } => {
            if !ring.keys.contains_key(&name) {
                return Err(DomainError::NotFound {
                    kind: "Keypair",
                    id: name,
                });
            }
            Ok(vec![KeypairEvent::Deleted { name, at: now }])
        }
    }
}

/// Folds an event; `position` is the api-stream position of its commit (the id of a
/// created key pair). Total: never fails.
pub fn evolve(state: Option<KeyRing>, e: &KeypairEvent, position: u64) -> Option<KeyRing> {
    let mut ring = state.unwrap_or_default();
    match e {
        KeypairEvent::Created {
            name,
            key_type,
            public_key,
            fingerprint,
            at,
        } => {
            ring.keys.insert(
                name.clone(),
                Keypair {
                    name: name.clone(),
                    key_type: *key_type,
                    public_key: public_key.clone(),
                    fingerprint: fingerprint.clone(),
                    created_at: *at,
                    id: position,
                },
            );
        }
        KeypairEvent::Deleted { name, .. } => {
            ring.keys.remove(name);
        }
    }
    Some(ring)
}
