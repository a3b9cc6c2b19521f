//! The security group aggregate (Neutron's security groups and their rules) on
//! `stratus.api.security_group.<uuid>`: one subject holds a group and every rule of
//! it, so a duplicate rule is refused in the same decision that would record it.
//!
//! Invariants:
//! - No two rules of a group are the same rule in Neutron's sense (direction,
//!   ethertype, protocol by number, ports, remote; "anywhere" prefixes count as no
//!   prefix): [`decide`] checks the state it is given and the engine appends with the
//!   subject's expected sequence, so of two racing creates of one rule the second is
//!   decided again and refused (`SecurityGroupRuleExists`).
//! - Every stored rule is in Neutron's canonical form ([`normalise_rule`]): the IPv6
//!   ICMP protocol is `ipv6-icmp` / `58`, the full port range 1-65535 reads as no
//!   range, ports only with a protocol that has them, a prefix of the rule's ethertype.
//! - Events carry the whole record they create or change: `evolve` only stores them,
//!   so a rebuild reproduces the read model exactly.
//! - `decide` never reads a clock or draws ids: times and rule ids are inputs.
//! - A deleted group's state stays (marked deleted) so its subject keeps its sequence;
//!   a project's `default` group, whose id is derived from the project, may be created
//!   again on it after an admin deleted it (Neutron recreates it on next use).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::network::{Cidr, NetError};
use crate::{SecurityGroupId, SecurityGroupRuleId, Timestamp};

/// Neutron's description of a project's default group.
pub const DEFAULT_DESCRIPTION: &str = "Default security group";

/// The name of a project's default group (no other group may take it).
pub const DEFAULT_NAME: &str = "default";

/// Traffic direction of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// Neutron's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// From Neutron's name.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "ingress" => Some(Direction::Ingress),
            "egress" => Some(Direction::Egress),
            _ => None,
        }
    }
}

/// IP version a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ethertype {
    IPv4,
    IPv6,
}

impl Ethertype {
    /// Neutron's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Ethertype::IPv4 => "IPv4",
            Ethertype::IPv6 => "IPv6",
        }
    }

    /// 4 or 6.
    pub fn version(self) -> u8 {
        match self {
            Ethertype::IPv4 => 4,
            Ethertype::IPv6 => 6,
        }
    }
}

/// A group's own attributes (its rules are kept beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    pub id: SecurityGroupId,
    pub name: String,
    pub description: String,
    /// The owning project.
    pub project_id: String,
    /// Connection tracking on (Neutron's `stateful`, default true).
    pub stateful: bool,
    /// The project's `default` group (created by the service, not by a request).
    pub is_default: bool,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Neutron's `revision_number`.
    pub revision: u64,
}

/// A rule of a group, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: SecurityGroupRuleId,
    pub security_group_id: SecurityGroupId,
    pub project_id: String,
    pub direction: Direction,
    pub ethertype: Ethertype,
    /// A protocol name or number as text (None: any).
    pub protocol: Option<String>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    /// The prefix as given (host bits kept, as Neutron shows it).
    pub remote_ip_prefix: Option<Cidr>,
    pub remote_group_id: Option<SecurityGroupId>,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision: u64,
}

impl Rule {
    /// Neutron's `normalized_cidr`: the prefix with its host bits cleared.
    pub fn normalized_cidr(&self) -> Option<Cidr> {
        self.remote_ip_prefix.map(Cidr::normalised)
    }

    /// What makes two rules the same (Neutron's `_rule_to_key`).
    fn key(&self) -> RuleKey {
        RuleKey {
            direction: self.direction,
            ethertype: self.ethertype,
            protocol: self
                .protocol
                .as_deref()
                .map(|p| proto_number(p, self.ethertype)),
            port_range_min: self.port_range_min,
            port_range_max: self.port_range_max,
            remote_ip_prefix: self
                .remote_ip_prefix
                .filter(|c| c.prefix != 0 || !is_zero(c.ip)),
            remote_group_id: self.remote_group_id,
        }
    }
}

fn is_zero(ip: IpAddr) -> bool {
    ip.is_unspecified()
}

#[derive(Debug, PartialEq, Eq)]
struct RuleKey {
    direction: Direction,
    ethertype: Ethertype,
    protocol: Option<u16>,
    port_range_min: Option<u16>,
    port_range_max: Option<u16>,
    remote_ip_prefix: Option<Cidr>,
    remote_group_id: Option<SecurityGroupId>,
}

/// A group with its rules (the aggregate's state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub spec: GroupSpec,
    pub rules: BTreeMap<SecurityGroupRuleId, Rule>,
    pub deleted: bool,
}

impl SecurityGroup {
    /// The rules in creation order (then by id), as Neutron lists a group's.
    pub fn rules_in_order(&self) -> Vec<&Rule> {
        let mut v: Vec<&Rule> = self.rules.values().collect();
        v.sort_by_key(|r| (r.created_at, r.id));
        v
    }
}

/// A new group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub id: SecurityGroupId,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub stateful: bool,
    /// The project's `default` group (its ingress rules admit the group itself).
    pub is_default: bool,
    /// Ids for the rules every new group starts with (Neutron's default rule
    /// templates: egress IPv4 and IPv6 to anywhere, and for the default group ingress
    /// IPv4 and IPv6 from its own members). Four are needed.
    pub rule_ids: [SecurityGroupRuleId; 4],
}

/// Changes to a group (None: unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub stateful: Option<bool>,
}

/// A new rule as the caller asked for it (types converted by the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRequest {
    pub id: SecurityGroupRuleId,
    pub project_id: String,
    pub direction: Direction,
    pub ethertype: Ethertype,
    /// Converted by [`convert_protocol`].
    pub protocol: Option<String>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<Cidr>,
    pub remote_group_id: Option<SecurityGroupId>,
    pub description: String,
}

/// A command on a security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityGroupCommand {
    Create(NewGroup),
    Update(GroupPatch),
    Delete,
    /// One rule, or a bulk create's (all or nothing: one commit).
    CreateRules(Vec<RuleRequest>),
    DeleteRule {
        id: SecurityGroupRuleId,
    },
    /// A tag request (standard-attr-tag).
    SetTags(crate::network::tags::TagOp),
}

/// An event of a security group (frozen variant order: new ones go at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityGroupEvent {
    Created {
        group: GroupSpec,
        rules: Vec<Rule>,
    },
    Updated {
        group: GroupSpec,
    },
    Deleted {
        at: Timestamp,
    },
    RuleCreated {
        rule: Rule,
    },
    RuleDeleted {
        id: SecurityGroupRuleId,
        at: Timestamp,
    },
}

impl SecurityGroupEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            SecurityGroupEvent::Created { .. } => "security_group.created",
            SecurityGroupEvent::Updated { .. } => "security_group.updated",
            SecurityGroupEvent::Deleted { .. } => "security_group.deleted",
            SecurityGroupEvent::RuleCreated { .. } => "security_group.rule_created",
            SecurityGroupEvent::RuleDeleted { .. } => "security_group.rule_deleted",
        }
    }
}

/// `SecurityGroupNotFound` (404).
pub fn not_found(id: impl std::fmt::Display) -> NetError {
    NetError::not_found_message(
        "SecurityGroupNotFound",
        format!("Security group {id} does not exist"),
    )
}

/// `SecurityGroupRuleNotFound` (404).
pub fn rule_not_found(id: impl std::fmt::Display) -> NetError {
    NetError::not_found_message(
        "SecurityGroupRuleNotFound",
        format!("Security group rule {id} does not exist"),
    )
}

/// `SecurityGroupInUse` (409): a port uses the group.
pub fn in_use(id: SecurityGroupId) -> NetError {
    NetError::conflict("SecurityGroupInUse", format!("Security Group {id} in use."))
}

/// `SecurityGroupDefaultAlreadyExists` (409): a request names a group `default`.
pub fn default_exists() -> NetError {
    NetError::conflict(
        "SecurityGroupDefaultAlreadyExists",
        "Default security group already exists.",
    )
}

/// `SecurityGroupCannotRemoveDefault` (409).
pub fn cannot_remove_default() -> NetError {
    NetError::conflict(
        "SecurityGroupCannotRemoveDefault",
        "Insufficient rights for removing default security group.",
    )
}

/// Whether a name a request gives is Neutron's reserved one (any case).
pub fn is_default_name(name: &str) -> bool {
    name.eq_ignore_ascii_case(DEFAULT_NAME)
}

/// Protocol names a rule accepts (neutron-lib's `IP_PROTOCOL_MAP`) with their numbers.
pub const PROTOCOLS: &[(&str, u16)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ip", 0),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

/// Protocols whose rules take a port range (Neutron's `SG_PORT_PROTO_NUMS`).
const PORT_PROTOCOLS: &[u16] = &[33, 132, 6, 17, 136];

/// IPv6-only protocols (a rule of one is refused for IPv4).
const IPV6_PROTOCOLS: &[&str] = &[
    "ipv6-encap",
    "ipv6-frag",
    "ipv6-icmp",
    "icmpv6",
    "ipv6-nonxt",
    "ipv6-opts",
    "ipv6-route",
    "41",
    "44",
    "58",
    "59",
    "60",
    "43",
];

/// The protocol number of a stored protocol (a name or a number's text).
fn proto_number(p: &str, eth: Ethertype) -> u16 {
    let n = PROTOCOLS
        .iter()
        .find(|(name, _)| *name == p)
        .map(|(_, n)| *n)
        .or_else(|| p.parse().ok())
        .unwrap_or(u16::MAX);
    if eth == Ethertype::IPv6 && n == 1 {
        58
    } else {
        n
    }
}

/// Neutron's `convert_protocol`: None or `any` is any protocol; a number 0-255 stays
/// as given; a name is lowered. `raw` is the JSON value's text.
pub fn convert_protocol(raw: Option<&str>) -> Result<Option<String>, NetError> {
    let Some(p) = raw else { return Ok(None) };
    if p == "any" {
        return Ok(None);
    }
    let refuse = || {
        let names: Vec<String> = PROTOCOLS.iter().map(|(n, _)| format!("'{n}'")).collect();
        NetError::bad(
            "SecurityGroupRuleInvalidProtocol",
            format!(
                "Security group rule protocol {p} not supported. Only protocol values \
                 (None, 'any', {}) and integer representations [0 to 255] are supported.",
                names.join(", ")
            ),
        )
    };
    if let Ok(n) = p.trim().parse::<i64>() {
        return if (0..=255).contains(&n) {
            Ok(Some(p.to_string()))
        } else {
            Err(refuse())
        };
    }
    let lower = p.to_ascii_lowercase();
    if PROTOCOLS.iter().any(|(n, _)| *n == lower) {
        Ok(Some(lower))
    } else {
        Err(refuse())
    }
}

/// Neutron's `convert_ethertype_to_case_insensitive`.
pub fn convert_ethertype(raw: &str) -> Result<Ethertype, NetError> {
    if raw.eq_ignore_ascii_case("ipv4") {
        Ok(Ethertype::IPv4)
    } else if raw.eq_ignore_ascii_case("ipv6") {
        Ok(Ethertype::IPv6)
    } else {
        Err(NetError::bad(
            "SecurityGroupRuleInvalidEtherType",
            format!(
                "Security group rule for ethertype '{raw}' not supported. Allowed values are ['IPv4', 'IPv6']."
            ),
        ))
    }
}

/// Neutron's `convert_validate_port_value`: an integer 0-65535 (`raw` is the JSON
/// value's text).
pub fn convert_port(raw: &str) -> Result<u16, NetError> {
    raw.trim().parse::<u16>().map_err(|_| {
        NetError::bad(
            "SecurityGroupInvalidPortValue",
            format!("Invalid value for port {raw}"),
        )
    })
}

/// Neutron's `convert_ip_prefix_to_cidr`: an address or prefix, kept as given (a bare
/// address is a host prefix).
pub fn convert_prefix(raw: &str) -> Result<Cidr, NetError> {
    use crate::network::addr::CidrError;
    let invalid = || {
        NetError::bad(
            "InvalidCIDR",
            format!("Invalid CIDR {raw} given as IP prefix."),
        )
    };
    match Cidr::parse(raw) {
        Ok(c) => Ok(c),
        Err(CidrError::HostBits(n)) => {
            let ip: IpAddr = raw
                .split('/')
                .next()
                .unwrap_or("")
                .trim()
                .parse()
                .map_err(|_| invalid())?;
            Ok(Cidr {
                ip,
                prefix: n.prefix,
            })
        }
        Err(CidrError::Invalid) => Err(invalid()),
    }
}

/// Neutron's rule checks in its order (`_validate_base_security_group_rule_attributes`):
/// canonical IPv6 ICMP, canonical port range, ports for the protocol, prefix of the
/// ethertype, protocol of the ethertype, one remote. Returns the canonical request.
pub fn normalise_rule(mut r: RuleRequest) -> Result<RuleRequest, NetError> {
    if r.ethertype == Ethertype::IPv6 {
        match r.protocol.as_deref() {
            Some("icmp" | "icmpv6") => r.protocol = Some("ipv6-icmp".into()),
            Some("1") => r.protocol = Some("58".into()),
            _ => {}
        }
    }
    if r.port_range_min == Some(1) && r.port_range_max == Some(65535) {
        r.port_range_min = None;
        r.port_range_max = None;
    }
    check_ports(&r)?;
    if let Some(c) = r.remote_ip_prefix {
        if c.version() != r.ethertype.version() {
            return Err(NetError::bad(
                "SecurityGroupRuleParameterConflict",
                format!(
                    "Conflicting value ethertype {} for CIDR {c}",
                    r.ethertype.as_str()
                ),
            ));
        }
    }
    if r.ethertype == Ethertype::IPv4
        && r.protocol
            .as_deref()
            .is_some_and(|p| IPV6_PROTOCOLS.contains(&p))
    {
        return Err(NetError::bad(
            "SecurityGroupEthertypeConflictWithProtocol",
            format!(
                "Invalid ethertype IPv4 for protocol {}.",
                r.protocol.as_deref().unwrap_or_default()
            ),
        ));
    }
    if r.remote_ip_prefix.is_some() && r.remote_group_id.is_some() {
        return Err(NetError::bad(
            "SecurityGroupMultipleRemoteEntites",
            "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.",
        ));
    }
    Ok(r)
}

/// Neutron's `_validate_port_range`.
fn check_ports(r: &RuleRequest) -> Result<(), NetError> {
    let (min, max) = (r.port_range_min, r.port_range_max);
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    let Some(p) = r.protocol.as_deref() else {
        return Err(NetError::bad(
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        ));
    };
    // The protocol's number (the legacy alias read as IPv6 ICMP, as Neutron does).
    let num = PROTOCOLS
        .iter()
        .find(|(n, _)| *n == p)
        .map(|(_, n)| *n)
        .or_else(|| p.trim().parse().ok())
        .unwrap_or(u16::MAX);
    if PORT_PROTOCOLS.contains(&num) {
        if min == Some(0) || max == Some(0) {
            return Err(NetError::bad(
                "SecurityGroupInvalidPortValue",
                "Invalid value for port 0",
            ));
        }
        match (min, max) {
            (Some(a), Some(b)) if a <= b => Ok(()),
            _ => Err(NetError::bad(
                "SecurityGroupInvalidPortRange",
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
            )),
        }
    } else if num == 1 || num == 58 {
        for (v, attr, field) in [
            (min, "port_range_min", "type"),
            (max, "port_range_max", "code"),
        ] {
            if let Some(v) = v.filter(|v| *v > 255) {
                return Err(NetError::bad(
                    "SecurityGroupInvalidIcmpValue",
                    format!("Invalid value for ICMP {field} ({attr}) {v}. It must be 0 to 255."),
                ));
            }
        }
        if let (None, Some(code)) = (min, max) {
            return Err(NetError::bad(
                "SecurityGroupMissingIcmpType",
                format!(
                    "ICMP code (port-range-max) {code} is provided but ICMP type (port-range-min) is missing."
                ),
            ));
        }
        Ok(())
    } else {
        Err(NetError::bad(
            "SecurityGroupInvalidProtocolForPort",
            format!(
                "Ports cannot be specified for protocol {num}. Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE."
            ),
        ))
    }
}

type Decided = Result<Vec<SecurityGroupEvent>, NetError>;

/// Decides a command on a group (`state` None: it never existed).
pub fn decide(
    id: SecurityGroupId,
    state: Option<&SecurityGroup>,
    cmd: SecurityGroupCommand,
    now: Timestamp,
) -> Decided {
    let live = state.filter(|g| !g.deleted);
    match cmd {
        SecurityGroupCommand::Create(g) => {
            if live.is_some() {
                return Err(if g.is_default {
                    default_exists()
                } else {
                    NetError::conflict(
                        "SecurityGroupConflict",
                        format!("Error Security group {id} already exists while attempting the operation."),
                    )
                });
            }
            if state.is_some() && !g.is_default {
                return Err(not_found(id));
            }
            Ok(vec![create(id, g, now)])
        }
        SecurityGroupCommand::Update(p) => {
            let g = live.ok_or_else(|| not_found(id))?;
            let mut spec = g.spec.clone();
            if spec.is_default && p.name.is_some() {
                return Err(NetError::conflict(
                    "SecurityGroupCannotUpdateDefault",
                    "Updating default security group not allowed.",
                ));
            }
            if p.name.as_deref().is_some_and(is_default_name) {
                return Err(default_exists());
            }
            if let Some(n) = p.name {
                spec.name = n;
            }
            if let Some(d) = p.description {
                spec.description = d;
            }
            if let Some(s) = p.stateful {
                spec.stateful = s;
            }
            spec.updated_at = now;
            spec.revision += 1;
            Ok(vec![SecurityGroupEvent::Updated { group: spec }])
        }
        SecurityGroupCommand::SetTags(op) => {
            let g = live.ok_or_else(|| not_found(id))?;
            let mut spec = g.spec.clone();
            let Some(t) = crate::network::tags::apply(&spec.tags, &op, "security_groups")? else {
                return Ok(vec![]);
            };
            spec.tags = t;
            spec.updated_at = now;
            spec.revision += 1;
            Ok(vec![SecurityGroupEvent::Updated { group: spec }])
        }
        SecurityGroupCommand::Delete => {
            live.ok_or_else(|| not_found(id))?;
            Ok(vec![SecurityGroupEvent::Deleted { at: now }])
        }
        SecurityGroupCommand::CreateRules(reqs) => {
            let g = live.ok_or_else(|| not_found(id))?;
            let rules = reqs
                .into_iter()
                .map(|r| normalise_rule(r).map(|r| new_rule(id, r, now)))
                .collect::<Result<Vec<_>, _>>()?;
            // Neutron's `_check_for_duplicate_rules`: first within the request, then
            // against the group's rules.
            for (i, r) in rules.iter().enumerate() {
                if rules[..i]
                    .iter()
                    .any(|x| x.key() == r.key() || x.id == r.id)
                {
                    return Err(NetError::conflict(
                        "DuplicateSecurityGroupRuleInPost",
                        "Duplicate Security Group Rule in POST.",
                    ));
                }
            }
            let existing = g.rules_in_order();
            for r in &rules {
                if let Some(dup) = existing.iter().find(|x| x.key() == r.key() || x.id == r.id) {
                    return Err(NetError::conflict(
                        "SecurityGroupRuleExists",
                        format!("Security group rule already exists. Rule id is {}.", dup.id),
                    ));
                }
            }
            let mut evs: Vec<SecurityGroupEvent> = rules
                .into_iter()
                .map(|rule| SecurityGroupEvent::RuleCreated { rule })
                .collect();
            evs.push(revised(g, now));
            Ok(evs)
        }
        SecurityGroupCommand::DeleteRule { id: rid } => {
            let g = live.ok_or_else(|| rule_not_found(rid))?;
            if !g.rules.contains_key(&rid) {
                return Err(rule_not_found(rid));
            }
            Ok(vec![
                SecurityGroupEvent::RuleDeleted { id: rid, at: now },
                revised(g, now),
            ])
        }
    }
}

/// The group's record after a change of its rules: Neutron revises a rule's group
/// (`revises_on_change`), bumping its revision number and `updated_at`.
fn revised(g: &SecurityGroup, now: Timestamp) -> SecurityGroupEvent {
    let mut spec = g.spec.clone();
    spec.updated_at = now;
    spec.revision += 1;
    SecurityGroupEvent::Updated { group: spec }
}

/// The record of a new (canonical) rule of group `id`.
fn new_rule(id: SecurityGroupId, r: RuleRequest, now: Timestamp) -> Rule {
    Rule {
        id: r.id,
        security_group_id: id,
        project_id: r.project_id,
        direction: r.direction,
        ethertype: r.ethertype,
        protocol: r.protocol,
        port_range_min: r.port_range_min,
        port_range_max: r.port_range_max,
        remote_ip_prefix: r.remote_ip_prefix,
        remote_group_id: r.remote_group_id,
        description: r.description,
        created_at: now,
        updated_at: now,
        revision: 0,
    }
}

/// A new group with Neutron's starting rules.
fn create(id: SecurityGroupId, g: NewGroup, now: Timestamp) -> SecurityGroupEvent {
    let spec = GroupSpec {
        id,
        name: g.name,
        description: g.description,
        project_id: g.project_id.clone(),
        stateful: g.stateful,
        is_default: g.is_default,
        tags: vec![],
        created_at: now,
        updated_at: now,
        revision: 1,
    };
    let mut templates = vec![
        (Direction::Egress, Ethertype::IPv4, None),
        (Direction::Egress, Ethertype::IPv6, None),
    ];
    if g.is_default {
        templates.push((Direction::Ingress, Ethertype::IPv4, Some(id)));
        templates.push((Direction::Ingress, Ethertype::IPv6, Some(id)));
    }
    let rules = templates
        .into_iter()
        .zip(g.rule_ids)
        .map(|((direction, ethertype, remote), rid)| Rule {
            id: rid,
            security_group_id: id,
            project_id: g.project_id.clone(),
            direction,
            ethertype,
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: None,
            remote_group_id: remote,
            description: String::new(),
            created_at: now,
            updated_at: now,
            revision: 0,
        })
        .collect();
    SecurityGroupEvent::Created { group: spec, rules }
}

/// Folds one event. Total: an event about a record that is not there changes nothing.
pub fn evolve(state: Option<SecurityGroup>, e: &SecurityGroupEvent) -> Option<SecurityGroup> {
    match (state, e) {
        (_, SecurityGroupEvent::Created { group, rules }) => Some(SecurityGroup {
            spec: group.clone(),
            rules: rules.iter().map(|r| (r.id, r.clone())).collect(),
            deleted: false,
        }),
        (None, _) => None,
        (Some(mut g), e) => {
            match e {
                SecurityGroupEvent::Created { .. } => {}
                SecurityGroupEvent::Updated { group } => g.spec = group.clone(),
                SecurityGroupEvent::Deleted { .. } => {
                    g.deleted = true;
                    g.rules.clear();
                }
                SecurityGroupEvent::RuleCreated { rule } => {
                    g.rules.insert(rule.id, rule.clone());
                }
                SecurityGroupEvent::RuleDeleted { id, .. } => {
                    g.rules.remove(id);
                }
            }
            Some(g)
        }
    }
}

#[cfg(test)]
mod tests;
