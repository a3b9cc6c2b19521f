//! Validated stream names and subjects.
//!
//! Invariant: a [`Subject`] is `stratus.` followed by dot-separated tokens made only of
//! `[A-Za-z0-9_-~]`, so user input can never inject `.`, `*`, `>` or whitespace.
//! Use [`Subject::token`] to encode arbitrary user strings into a safe token.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::LogError;

/// Name of a stream: `api` or a cell name (`cell0`, `cell1`, ...). `[a-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct StreamName(String);

impl TryFrom<String> for StreamName {
    type Error = LogError;

    /// Validates on deserialisation too, so an invalid name cannot exist.
    fn try_from(s: String) -> Result<Self, LogError> {
        Self::new(s)
    }
}

impl StreamName {
    /// Validates a stream name.
    pub fn new(s: impl Into<String>) -> Result<Self, LogError> {
        let s = s.into();
        if s.is_empty()
            || s.len() > 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(LogError::InvalidName(format!("stream name {s:?}")));
        }
        Ok(Self(s))
    }

    /// The global `api` stream.
    pub fn api() -> Self {
        Self("api".into())
    }

    /// The stream of a cell.
    pub fn cell(cell: &str) -> Result<Self, LogError> {
        Self::new(cell)
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The aggregate kind of a subject: the `<kind>` token of `stratus.api.<kind>.<id>` and
/// `stratus.cell.<cell>.<kind>.<id>`. The tokens are part of every stored subject: they
/// live here only, and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKind {
    Instance,
    Host,
    Flavor,
    Cell,
    HostMapping,
    Image,
    Project,
    User,
    Role,
    /// The claim on a project name in a domain (`<domain>.<name>` after the kind).
    ProjectName,
    /// The claim on a user name in a domain.
    UserName,
    /// The claim on a role name.
    RoleName,
    /// A project's quota ledger.
    Quota,
    /// A quota class (`default`).
    QuotaClass,
    /// Every server group of a project (`<project>` after the kind).
    ServerGroups,
    /// A user's key pairs (`stratus.api.keypairs.<user>`).
    Keypairs,
    /// Every host aggregate, on one subject (`stratus.api.aggregates.all`).
    Aggregates,
    /// A cell's closed usage audit periods (`stratus.cell.<cell>.usage_audit.<cell>`).
    UsageAudit,
    /// One webhook subscription (`stratus.api.subscriptions.<id>`).
    Subscriptions,
    /// The claim on a flavor name (`stratus.api.flavor_name.<name>`).
    FlavorName,
    /// Every image metadata-definition namespace, on one subject
    /// (`stratus.api.metadefs.all`).
    Metadefs,
    /// One image task (`stratus.api.task.<uuid>`).
    Task,
    /// A network with its subnets and ports (`stratus.api.network.<uuid>`).
    Network,
    /// A security group with its rules (`stratus.api.security_group.<uuid>`).
    SecurityGroup,
    /// A router (`stratus.api.router.<uuid>`).
    Router,
    /// A subnet pool (`stratus.api.subnetpool.<uuid>`).
    SubnetPool,
    /// A project's network quota ledger (`stratus.api.network_quota.<project>`).
    NetworkQuota,
    /// A floating IP (`stratus.api.floatingip.<uuid>`).
    FloatingIp,
}

impl SubjectKind {
    /// Every kind.
    pub const ALL: [SubjectKind; 28] = [
        SubjectKind::Instance,
        SubjectKind::Host,
        SubjectKind::Flavor,
        SubjectKind::Cell,
        SubjectKind::HostMapping,
        SubjectKind::Image,
        SubjectKind::Project,
        SubjectKind::User,
        SubjectKind::Role,
        SubjectKind::ProjectName,
        SubjectKind::UserName,
        SubjectKind::RoleName,
        SubjectKind::Quota,
        SubjectKind::QuotaClass,
        SubjectKind::ServerGroups,
        SubjectKind::Keypairs,
        SubjectKind::Aggregates,
        SubjectKind::UsageAudit,
        SubjectKind::Subscriptions,
        SubjectKind::FlavorName,
        SubjectKind::Metadefs,
        SubjectKind::Task,
        SubjectKind::Network,
        SubjectKind::SecurityGroup,
        SubjectKind::Router,
        SubjectKind::SubnetPool,
        SubjectKind::NetworkQuota,
        SubjectKind::FloatingIp,
    ];

    /// The subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Instance => "instance",
            SubjectKind::Host => "host",
            SubjectKind::Flavor => "flavor",
            SubjectKind::Cell => "cell",
            SubjectKind::HostMapping => "host_mapping",
            SubjectKind::Image => "image",
            SubjectKind::Project => "project",
            SubjectKind::User => "user",
            SubjectKind::Role => "role",
            SubjectKind::ProjectName => "project_name",
            SubjectKind::UserName => "user_name",
            SubjectKind::RoleName => "role_name",
            SubjectKind::Quota => "quota",
            SubjectKind::QuotaClass => "quota_class",
            SubjectKind::ServerGroups => "server_groups",
            SubjectKind::Keypairs => "keypairs",
            SubjectKind::Aggregates => "aggregates",
            SubjectKind::UsageAudit => "usage_audit",
            SubjectKind::Subscriptions => "subscriptions",
            SubjectKind::FlavorName => "flavor_name",
            SubjectKind::Metadefs => "metadefs",
            SubjectKind::Task => "task",
            SubjectKind::Network => "network",
            SubjectKind::SecurityGroup => "security_group",
            SubjectKind::Router => "router",
            SubjectKind::SubnetPool => "subnetpool",
            SubjectKind::NetworkQuota => "network_quota",
            SubjectKind::FloatingIp => "floatingip",
        }
    }

    /// The kind of a subject token (`None` for a token no aggregate uses).
    pub fn from_token(t: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == t)
    }
}

impl fmt::Display for SubjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated subject: `stratus.api.<kind>.<id>` or `stratus.cell.<cell>.<kind>.<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Subject(String);

impl TryFrom<String> for Subject {
    type Error = LogError;

    /// Validates on deserialisation too, so an invalid subject cannot exist.
    fn try_from(s: String) -> Result<Self, LogError> {
        Self::parse(&s)
    }
}

fn token_ok(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'~')
}

impl Subject {
    /// Parses and validates a full subject string.
    pub fn parse(s: &str) -> Result<Self, LogError> {
        let parts: Vec<&str> = s.split('.').collect();
        let ok = match parts.as_slice() {
            ["stratus", "api", rest @ ..] => rest.len() >= 2 && rest.iter().all(|t| token_ok(t)),
            ["stratus", "cell", cell, rest @ ..] => {
                StreamName::new(*cell).is_ok()
                    && rest.len() >= 2
                    && rest.iter().all(|t| token_ok(t))
            }
            _ => false,
        };
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(LogError::InvalidName(format!("subject {s:?}")))
        }
    }

    /// `stratus.api.<kind>.<token(id)>`.
    pub fn api(kind: SubjectKind, id: &str) -> Result<Self, LogError> {
        Self::parse(&format!("stratus.api.{kind}.{}", Self::token(id)))
    }

    /// `stratus.api.<kind>.<token(scope)>.<token(name)>`: a claim on a name within a
    /// scope (an identity domain).
    pub fn api_scoped(kind: SubjectKind, scope: &str, name: &str) -> Result<Self, LogError> {
        Self::parse(&format!(
            "stratus.api.{kind}.{}.{}",
            Self::token(scope),
            Self::token(name)
        ))
    }

    /// `stratus.cell.<cell>.<kind>.<token(id)>`.
    pub fn cell(cell: &StreamName, kind: SubjectKind, id: &str) -> Result<Self, LogError> {
        Self::parse(&format!("stratus.cell.{cell}.{kind}.{}", Self::token(id)))
    }

    /// Encodes any string into a safe subject token: `[A-Za-z0-9_-]` pass through,
    /// every other byte becomes `~XX` (hex). Injective, so distinct inputs never collide.
    pub fn token(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                out.push(b as char);
            } else {
                out.push_str(&format!("~{b:02X}"));
            }
        }
        if out.is_empty() {
            out.push('~');
        }
        out
    }

    /// The inverse of [`Subject::token`] (`None` when `t` is not a token it made).
    pub fn untoken(t: &str) -> Option<String> {
        if t == "~" {
            return Some(String::new());
        }
        let b = t.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'~' {
                let hex = t.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    /// The stream this subject belongs to.
    pub fn stream(&self) -> StreamName {
        let mut it = self.0.split('.');
        it.next();
        match it.next() {
            Some("api") => StreamName::api(),
            _ => StreamName(it.next().unwrap_or_default().to_string()),
        }
    }

    /// The aggregate kind token (`instance`, `host`, `flavor`, ...).
    pub fn kind_token(&self) -> &str {
        let mut it = self.0.split('.').skip(1);
        let kind = match it.next() {
            Some("api") => it.next(),
            _ => it.nth(1),
        };
        kind.unwrap_or("")
    }

    /// The aggregate kind (`None` for a kind token no aggregate uses).
    pub fn kind(&self) -> Option<SubjectKind> {
        SubjectKind::from_token(self.kind_token())
    }

    /// The last token (the encoded aggregate id).
    pub fn id_token(&self) -> &str {
        self.0.rsplit('.').next().unwrap_or("")
    }

    /// The subject as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_route_to_streams() {
        let s = Subject::parse("stratus.cell.cell1.instance.abc").unwrap();
        assert_eq!(s.stream().as_str(), "cell1");
        assert_eq!(s.kind(), Some(SubjectKind::Instance));
        let a = Subject::api(SubjectKind::Flavor, "m1.tiny").unwrap();
        assert_eq!(a.as_str(), "stratus.api.flavor.m1~2Etiny");
        assert_eq!(a.stream().as_str(), "api");
        assert_eq!(a.kind(), Some(SubjectKind::Flavor));
        let n = Subject::api_scoped(SubjectKind::UserName, "default", "a.b").unwrap();
        assert_eq!(n.as_str(), "stratus.api.user_name.default.a~2Eb");
        assert_eq!(n.kind(), Some(SubjectKind::UserName));
        assert_eq!(Subject::parse("stratus.api.other.x").unwrap().kind(), None);
        for k in SubjectKind::ALL {
            assert_eq!(SubjectKind::from_token(k.as_str()), Some(k));
        }
    }

    #[test]
    fn tokens_cannot_inject() {
        for bad in ["a.b", "*", ">", "a b", "x\n", ""] {
            let t = Subject::token(bad);
            assert!(token_ok(&t), "{bad:?} -> {t:?}");
        }
        assert!(Subject::parse("stratus.api.flavor.a b").is_err());
        assert!(Subject::parse("stratus.cell.c*.instance.x").is_err());
        assert!(Subject::parse("other.api.flavor.x").is_err());
        assert_ne!(Subject::token("a.b"), Subject::token("a~2Eb"));
    }

    #[test]
    fn untoken_inverts_token() {
        for s in ["", "host1", "a.b", "a~2Eb", "ünï cödé *>", "~", "x\n"] {
            assert_eq!(
                Subject::untoken(&Subject::token(s)).as_deref(),
                Some(s),
                "{s:?}"
            );
        }
        assert_eq!(Subject::untoken("a~Z"), None);
        assert_eq!(Subject::untoken("a~2"), None);
    }
}
