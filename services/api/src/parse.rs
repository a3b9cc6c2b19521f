//! Parsing and validation of request bodies and query strings into typed requests, with
//! Nova's messages (`Invalid input for field/attribute ...`).
//!
//! Invariants:
//! - Nothing here touches the log: a request that fails here changes nothing.
//! - Parsing is split in two: the shape of the input alone (`create_server`, ...;
//!   server actions are typed bodies in [`crate::actions`]), then resolution against the world (`resolve_create`,
//!   `known_host`, `flavor_snapshot`), which checks references (flavors, hosts, AZs)
//!   and policy on them.
//! - Unknown keys are refused where Nova's JSON schemas set `additionalProperties: false`.

use std::collections::BTreeMap;

use domain::flavor::FlavorSpec;
use domain::instance::{FlavorSnapshot, InstanceSpec, NetworkRequest, Networks};
use domain::{FlavorId, HostName, InstanceId, Timestamp};
use projections::Views;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::body::{self, check_len, present, unexpected, Decode, Flag, FlavorRef};
use crate::context::{Caller, QueryPairs};
use crate::error::ApiError;
use crate::microversion::Version;
use crate::util::parse_iso;

pub use crate::body::invalid;
use crate::body::type_name;

/// oslo `bool_from_string(strict=True)`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

pub(crate) fn uuid_like(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// The id at the end of a reference that may be a URL (`flavorRef`, `imageRef`).
pub fn ref_id(s: &str) -> &str {
    s.trim_end_matches('/').rsplit('/').next().unwrap_or(s)
}

// ------------------------------------------------------------------ servers

/// A validated POST /servers body, before its references are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateServer {
    /// Display name.
    pub name: String,
    /// Description (2.19+).
    pub description: Option<String>,
    /// Image id ("" when booting from a volume).
    pub image_ref: String,
    /// Root disk is a volume.
    pub boot_from_volume: bool,
    /// Flavor id (from `flavorRef`, id or URL).
    pub flavor_ref: String,
    pub networks: Networks,
    pub metadata: BTreeMap<String, String>,
    /// Requested AZ (without a `:host` suffix).
    pub availability_zone: Option<String>,
    /// Host forced through `availability_zone: "az:host"` (admin) or `host` (2.74, admin).
    pub requested_host: Option<String>,
    /// The requested host came from `availability_zone: "az:host"` (Nova's
    /// `servers:create:forced_host`), not from 2.74 `host` / `hypervisor_hostname`
    /// (`compute:servers:create:requested_destination`).
    pub forced_host: bool,
    /// Key pair name.
    pub key_name: Option<String>,
    /// `os:scheduler_hints`, name -> JSON text.
    pub scheduler_hints: BTreeMap<String, String>,
    /// The image a boot volume is made from (`block_device_mapping_v2` with
    /// `source_type: image`, `destination_type: volume`): validated, not recorded.
    pub volume_image: Option<String>,
    /// `min_count` / `max_count` (multiple create; 1 and 1 by default).
    pub min_count: u32,
    pub max_count: u32,
    /// Answer `{"reservation_id": ..}` instead of the first server.
    pub return_reservation_id: bool,
    /// `accessIPv4` / `accessIPv6` (validated addresses; "" is none).
    pub access_ip_v4: Option<String>,
    pub access_ip_v6: Option<String>,
    /// `user_data` (base64, at most 65535 characters).
    pub user_data: Option<String>,
    /// `config_drive`.
    pub config_drive: bool,
    /// `tags` (2.52).
    pub tags: std::collections::BTreeSet<String>,
    /// `personality` (before 2.57): (path, base64 contents) of the files to inject,
    /// checked against the injected-file quotas; not recorded (Nova passes them to the
    /// compute host and keeps none; the simulated guest has no disk to write them to).
    pub personality: Vec<(String, String)>,
    /// `OS-DCF:diskConfig` (AUTO: true), if given.
    pub auto_disk_config: Option<bool>,
    /// `security_groups` names (or ids), without repeats (Nova's set); None when not
    /// given (the project's `default`).
    pub security_groups: Option<Vec<String>>,
    /// `adminPass` as given (the reply echoes it; Nova generates one otherwise).
    pub admin_pass: Option<String>,
}

/// `security_groups` of a create: a list of `{"name": name-or-id}` (Nova's schema);
/// items without a name are skipped and repeats dropped, as Nova's controller does.
fn security_group_names(v: &Value) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = v else {
        return Err(invalid(
            "security_groups",
            v,
            &format!("{v} is not of type 'array'"),
        ));
    };
    let mut names: Vec<String> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(invalid(
                &n.to_string(),
                item,
                &format!("{item} is not of type 'object'"),
            ));
        };
        if let Some(k) = o.keys().find(|k| *k != "name") {
            return Err(invalid(
                &n.to_string(),
                item,
                &format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        }
        match o.get("name") {
            None => {}
            Some(Value::String(name)) => {
                check_len("name", name, 1, 255)?;
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
            Some(other) => {
                return Err(invalid(
                    "name",
                    other,
                    &format!("{other} is not of type 'string'"),
                ))
            }
        }
    }
    Ok(names)
}

/// Whether `k` is a metadata key (`^[a-zA-Z0-9-_:. ]{1,255}$`, Nova's
/// `parameter_types.metadata`).
fn metadata_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 255
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.' | b' '))
}

/// Validates a metadata object as Nova's `parameter_types.metadata` (the value of
/// `field`): keys `^[a-zA-Z0-9-_:. ]{1,255}$`, string values of at most 255
/// characters. The number of items is the `metadata_items` quota's to refuse.
pub fn metadata_items(field: &str, v: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    if !v.is_object() {
        return Err(invalid(
            field,
            v,
            &format!("{v} is not of type 'object' (got {})", type_name(v)),
        ));
    }
    let out: BTreeMap<String, String> = body::from_value(field, v)?;
    for (k, val) in &out {
        if !metadata_key_ok(k) {
            return Err(invalid(
                field,
                v,
                &format!("'{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"),
            ));
        }
        check_len(k, val, 0, 255)?;
    }
    Ok(out)
}

/// One item of `networks` (Nova's schema: no other keys; `tag` from 2.32).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkItem {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    port: Option<String>,
    #[serde(default)]
    fixed_ip: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

fn networks(v: Option<&Value>, version: Version) -> Result<Networks, ApiError> {
    let Some(v) = v else {
        if version.at_least(37) {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute server. 'networks' is a required property",
            ));
        }
        return Ok(Networks::Auto);
    };
    match v {
        Value::String(s) if version.at_least(37) && s == "none" => Ok(Networks::None),
        Value::String(s) if version.at_least(37) && s == "auto" => Ok(Networks::Auto),
        Value::Array(_) => {
            let mut list = Vec::new();
            for item in body::from_value::<Vec<NetworkItem>>("networks", v)? {
                // Tags from 2.32; 2.37 dropped them from the schema, 2.42 brought
                // them back (Nova's `server_create_v237` / `v242`).
                let tag_allowed =
                    version.at_least(32) && (!version.at_least(37) || version.at_least(42));
                if item.tag.is_some() && !tag_allowed {
                    return Err(unexpected(&["tag"]));
                }
                let lengths = [
                    ("uuid", &item.uuid, 1, 255),
                    ("port", &item.port, 0, 255),
                    ("fixed_ip", &item.fixed_ip, 1, 255),
                    ("tag", &item.tag, 1, 60),
                ];
                for (field, value, min, max) in lengths {
                    if let Some(text) = value {
                        check_len(field, text, min, max)?;
                    }
                }
                let NetworkItem {
                    uuid,
                    port,
                    fixed_ip,
                    tag,
                } = item;
                let port = port.filter(|p| !p.is_empty());
                if let Some(u) = &uuid {
                    if !uuid_like(u) {
                        return Err(ApiError::bad_request(format!(
                            "Bad networks format: network uuid is not in proper format ({u})"
                        )));
                    }
                }
                if let Some(p) = &port {
                    if !uuid_like(p) {
                        return Err(invalid(
                            "port",
                            &Value::String(p.clone()),
                            "is not a 'uuid'",
                        ));
                    }
                }
                if let Some(ip) = &fixed_ip {
                    if ip.parse::<std::net::IpAddr>().is_err() {
                        return Err(ApiError::bad_request(format!(
                            "Invalid fixed IP address ({ip})"
                        )));
                    }
                }
                if uuid.is_none() && port.is_none() {
                    return Err(ApiError::bad_request("Bad network format: missing 'uuid'"));
                }
                list.push(NetworkRequest {
                    uuid,
                    port,
                    fixed_ip,
                    tag,
                });
            }
            Ok(Networks::List(list))
        }
        other => Err(invalid(
            "networks",
            other,
            "is not valid under any of the given schemas",
        )),
    }
}

/// One item of `block_device_mapping_v2`: what deciding the root device needs; the
/// other keys Nova accepts (sizes, device names, tags...) are read and ignored.
#[derive(Deserialize)]
struct BdmItem {
    #[serde(default)]
    source_type: Option<BdmSource>,
    #[serde(default)]
    destination_type: Option<BdmDest>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    boot_index: Option<Value>,
    #[serde(flatten)]
    _other: BTreeMap<String, serde::de::IgnoredAny>,
}

/// `source_type`, in the order of Nova's schema (its 400 lists them).
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum BdmSource {
    Volume,
    Image,
    Snapshot,
    Blank,
}

/// `destination_type`, in the order of Nova's schema.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum BdmDest {
    Local,
    Volume,
}

/// (boot from volume, image id of the root device when its source is an image) from
/// `block_device_mapping_v2`.
fn bdm_root(v: &Value) -> Result<(bool, Option<String>), ApiError> {
    for item in body::from_value::<Vec<BdmItem>>("block_device_mapping_v2", v)? {
        if let Some(u) = &item.uuid {
            if !uuid_like(u) {
                return Err(invalid(
                    "uuid",
                    &Value::String(u.clone()),
                    "is not a 'uuid'",
                ));
            }
        }
        let (source, dest, uuid) = (item.source_type, item.destination_type, item.uuid);
        let boot0 = match &item.boot_index {
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.trim() == "0",
            _ => false,
        };
        if !boot0 {
            continue;
        }
        let to_volume = dest == Some(BdmDest::Volume) || source == Some(BdmSource::Volume);
        if to_volume {
            if source != Some(BdmSource::Blank) && uuid.is_none() {
                return Err(ApiError::bad_request(
                    "Block Device Mapping is Invalid: missing uuid for the boot device.",
                ));
            }
            let image = uuid.filter(|_| source == Some(BdmSource::Image));
            return Ok((true, image));
        }
        if source == Some(BdmSource::Image) {
            return Ok((false, uuid));
        }
    }
    Ok((false, None))
}

/// POST /servers: `{"server": {...}, "os:scheduler_hints": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateServerBody {
    server: ServerFields,
    /// Checked by [`scheduler_hints`] (known hints typed, unknown ones kept as given).
    #[serde(rename = "os:scheduler_hints", default)]
    _hints: Option<IgnoredAny>,
    #[serde(rename = "OS-SCH-HNT:scheduler_hints", default)]
    _old_hints: Option<IgnoredAny>,
}

/// The keys of Nova's `create` schema. Version-dependent keys are checked by
/// [`CreateServer::decode`]; `networks`, `metadata` and `block_device_mapping_v2` are
/// checked by their own validators (their messages name nested fields); the keys
/// accepted and not recorded (no such feature here) are `IgnoredAny`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFields {
    name: String,
    #[serde(rename = "imageRef", default)]
    image_ref: Option<String>,
    #[serde(rename = "flavorRef")]
    flavor_ref: FlavorRef,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    networks: Option<Value>,
    #[serde(default)]
    availability_zone: Option<String>,
    #[serde(default)]
    block_device_mapping_v2: Option<Value>,
    #[serde(default)]
    key_name: Option<String>,
    #[serde(default)]
    min_count: Option<IntLike>,
    #[serde(default)]
    max_count: Option<IntLike>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    host: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    hypervisor_hostname: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    personality: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    tags: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    trusted_image_certificates: Option<Option<IgnoredAny>>,
    #[serde(default, deserialize_with = "present")]
    hostname: Option<Option<IgnoredAny>>,
    #[serde(rename = "adminPass", default)]
    admin_pass: Option<Value>,
    #[serde(rename = "OS-DCF:diskConfig", default)]
    disk_config: Option<Value>,
    #[serde(rename = "accessIPv4", default)]
    access_ipv4: Option<Value>,
    #[serde(rename = "accessIPv6", default)]
    access_ipv6: Option<Value>,
    #[serde(rename = "block_device_mapping", default)]
    _block_device_mapping: Option<IgnoredAny>,
    #[serde(rename = "config_drive", default)]
    config_drive: Option<Value>,
    #[serde(rename = "return_reservation_id", default)]
    return_reservation_id: Option<Value>,
    #[serde(rename = "security_groups", default)]
    security_groups: Option<Value>,
    #[serde(rename = "user_data", default)]
    user_data: Option<Value>,
}

/// Nova's `parameter_types.boolean`: a JSON boolean or one of oslo's strings.
fn boolean(field: &str, v: &Value) -> Result<bool, ApiError> {
    let b = match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s),
        _ => None,
    };
    b.ok_or_else(|| invalid(field, v, &format!("{v} is not of type 'boolean', 'string'")))
}

/// `accessIPv4` / `accessIPv6` on create: an address of that family, or "".
fn create_access_ip(field: &str, v: &Value, v6: bool) -> Result<Option<String>, ApiError> {
    let Value::String(ip) = v else {
        return Err(invalid(field, v, &format!("{v} is not of type 'string'")));
    };
    if ip.is_empty() {
        return Ok(None);
    }
    // Stored as Nova stores it: netaddr's canonical text (an IPv6 address compressed).
    let canonical = if v6 {
        ip.parse::<std::net::Ipv6Addr>().ok().map(|a| a.to_string())
    } else {
        ip.parse::<std::net::Ipv4Addr>().ok().map(|a| a.to_string())
    };
    match canonical {
        Some(c) => Ok(Some(c)),
        None => {
            let kind = if v6 { "ipv6" } else { "ipv4" };
            Err(invalid(field, v, &format!("'{ip}' is not a '{kind}'")))
        }
    }
}

/// `OS-DCF:diskConfig`: `AUTO` (true) or `MANUAL` (false), Nova's enum otherwise.
pub fn disk_config(v: &Value) -> Result<bool, ApiError> {
    match v.as_str() {
        Some("AUTO") => Ok(true),
        Some("MANUAL") => Ok(false),
        _ => Err(invalid(
            "OS-DCF:diskConfig",
            v,
            &format!("{v} is not one of ['AUTO', 'MANUAL']"),
        )),
    }
}

/// Nova's `_ensure_auto_disk_config_is_valid`: AUTO on an image whose
/// `auto_disk_config` property is `disabled` is a 400.
pub fn check_auto_disk_config(
    views: &Views,
    image_ref: &str,
    auto: Option<bool>,
) -> Result<(), ApiError> {
    if auto != Some(true) {
        return Ok(());
    }
    let disabled = domain::ImageId::parse(image_ref)
        .and_then(|iid| views.image(&iid))
        .and_then(|img| img.spec.properties.get("auto_disk_config"))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("disabled"));
    if disabled {
        return Err(ApiError::bad_request(format!(
            "Requested image {image_ref} has automatic disk resize disabled."
        )));
    }
    Ok(())
}

/// `personality` (create and rebuild before 2.57) as Nova's schema: a list of
/// `{"path": string, "contents": base64 string}` and nothing else.
pub fn personality(v: &Value) -> Result<Vec<(String, String)>, ApiError> {
    use base64::Engine as _;
    let Value::Array(items) = v else {
        return Err(invalid(
            "personality",
            v,
            &format!("{v} is not of type 'array'"),
        ));
    };
    let mut files = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let field = n.to_string();
        let Value::Object(o) = item else {
            return Err(invalid(
                &field,
                item,
                &format!("{item} is not of type 'object'"),
            ));
        };
        if let Some(k) = o.keys().find(|k| *k != "path" && *k != "contents") {
            return Err(invalid(
                &field,
                item,
                &format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        }
        let text = |key: &str| -> Result<String, ApiError> {
            match o.get(key) {
                None => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(invalid(
                    key,
                    other,
                    &format!("{other} is not of type 'string'"),
                )),
            }
        };
        let (path, contents) = (text("path")?, text("contents")?);
        let clean: String = contents.chars().filter(|c| !c.is_whitespace()).collect();
        if base64::engine::general_purpose::STANDARD
            .decode(&clean)
            .is_err()
        {
            let c = Value::String(contents.clone());
            return Err(invalid(
                "contents",
                &c,
                &format!("'{contents}' is not a 'base64'"),
            ));
        }
        files.push((path, contents));
    }
    Ok(files)
}

/// Nova's `_check_injected_file_quota`: the number of files, then the longest path
/// and contents (the path's limit reported first), each a 403 in Nova's words.
pub fn check_injected_files(
    files: &[(String, String)],
    limits: &domain::quota::Limits,
) -> Result<(), ApiError> {
    use domain::quota::Resource as R;
    if files.is_empty() {
        return Ok(());
    }
    let limit = |r: R| limits.get(&r).copied().unwrap_or(r.nova_default());
    let over = |r: R, n: usize| {
        let l = limit(r);
        l >= 0 && n as i64 > l
    };
    if over(R::InjectedFiles, files.len()) {
        return Err(ApiError::forbidden("Personality file limit exceeded"));
    }
    let max_path = files.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    let max_content = files.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    if over(R::InjectedFilePathBytes, max_path) {
        return Err(ApiError::forbidden(format!(
            "Personality file path exceeds maximum {}",
            limit(R::InjectedFilePathBytes)
        )));
    }
    if over(R::InjectedFileContentBytes, max_content) {
        return Err(ApiError::forbidden(format!(
            "Personality file content exceeds maximum {}",
            limit(R::InjectedFileContentBytes)
        )));
    }
    Ok(())
}

/// `user_data`: base64 text of at most 65535 characters (Nova's schema).
fn create_user_data(v: &Value) -> Result<Option<String>, ApiError> {
    use base64::Engine as _;
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s,
        _ => {
            return Err(invalid(
                "user_data",
                v,
                &format!("{v} is not of type 'string'"),
            ))
        }
    };
    if s.chars().count() > 65535 {
        return Err(invalid("user_data", v, &format!("'{s}' is too long")));
    }
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if base64::engine::general_purpose::STANDARD
        .decode(&clean)
        .is_err()
    {
        return Err(invalid("user_data", v, &format!("'{s}' is not a 'base64'")));
    }
    Ok(Some(s.clone()))
}

impl Decode for CreateServer {
    /// Validates a POST /servers body.
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError> {
        let s = body::from_value::<CreateServerBody>("", body)?.server;
        let mut extra = Vec::new();
        let gated = [
            (
                "personality",
                s.personality.is_some(),
                !version.at_least(57),
            ),
            ("description", s.description.is_some(), version.at_least(19)),
            ("tags", s.tags.is_some(), version.at_least(52)),
            (
                "trusted_image_certificates",
                s.trusted_image_certificates.is_some(),
                version.at_least(63),
            ),
            ("host", s.host.is_some(), version.at_least(74)),
            (
                "hypervisor_hostname",
                s.hypervisor_hostname.is_some(),
                version.at_least(74),
            ),
            ("hostname", s.hostname.is_some(), version.at_least(90)),
        ];
        for (key, given, allowed) in gated {
            if given && !allowed {
                extra.push(key);
            }
        }
        if !extra.is_empty() {
            return Err(unexpected(&extra));
        }

        check_len("name", &s.name, 1, 255)?;
        if !domain::instance::valid_name(&s.name) {
            return Err(invalid(
                "name",
                &Value::String(s.name),
                "is not a valid server name",
            ));
        }
        let (bfv, bdm_image) = match &s.block_device_mapping_v2 {
            Some(v) => bdm_root(v)?,
            None => (false, None),
        };
        let image_given = s.image_ref.unwrap_or_default();
        check_len("imageRef", &image_given, 0, 255)?;
        let volume_image = if bfv { bdm_image.clone() } else { None };
        let image_ref = if bfv {
            String::new()
        } else if !image_given.is_empty() {
            let id = ref_id(&image_given);
            if !uuid_like(id) {
                return Err(ApiError::bad_request("Invalid imageRef provided."));
            }
            id.to_string()
        } else if let Some(img) = bdm_image {
            img
        } else {
            return Err(ApiError::bad_request("Missing imageRef attribute"));
        };

        let networks = networks(s.networks.as_ref(), version)?;
        // The item count is the `metadata_items` quota's (checked by the handler).
        let metadata = match &s.metadata {
            None => BTreeMap::new(),
            Some(v) => metadata_items("metadata", v)?,
        };
        if let Some(az) = &s.availability_zone {
            check_len("availability_zone", az, 1, 255)?;
        }
        let (availability_zone, mut requested_host) = match s.availability_zone {
            None => (None, None),
            Some(az) => match az.split_once(':') {
                Some((zone, host)) => {
                    let host = host.split(':').next().unwrap_or("").to_string();
                    let zone = (!zone.is_empty()).then(|| zone.to_string());
                    (zone, (!host.is_empty()).then_some(host))
                }
                None => (Some(az), None),
            },
        };
        let mut forced_host = requested_host.is_some();
        let host = s.host.flatten();
        let node = s.hypervisor_hostname.flatten();
        if let Some(h) = &host {
            check_len("host", h, 1, 255)?;
        }
        if let Some(n) = &node {
            check_len("hypervisor_hostname", n, 1, 255)?;
        }
        if let (Some(h), Some(n)) = (&host, &node) {
            if h != n {
                return Err(ApiError::bad_request(format!(
                    "Compute host {h} with hypervisor_hostname {n} could not be found."
                )));
            }
        }
        if let Some(h) = host.or(node) {
            requested_host = Some(h);
            forced_host = false;
        }
        if let Some(k) = &s.key_name {
            check_len("key_name", k, 1, 255)?;
        }
        let description = s.description.flatten();
        if let Some(d) = &description {
            check_len("description", d, 0, 255)?;
        }
        let count_max = i64::from(i32::MAX);
        let min = s
            .min_count
            .map(|c| c.within("min_count", 1, count_max))
            .transpose()?
            .unwrap_or(1);
        let max = s
            .max_count
            .map(|c| c.within("max_count", 1, count_max))
            .transpose()?
            .unwrap_or(min);
        if min > max {
            return Err(ApiError::bad_request("min_count must be <= max_count"));
        }
        let access_ip_v4 = s
            .access_ipv4
            .as_ref()
            .map(|v| create_access_ip("accessIPv4", v, false))
            .transpose()?
            .flatten();
        let access_ip_v6 = s
            .access_ipv6
            .as_ref()
            .map(|v| create_access_ip("accessIPv6", v, true))
            .transpose()?
            .flatten();
        let user_data = s
            .user_data
            .as_ref()
            .map(create_user_data)
            .transpose()?
            .flatten();
        let config_drive = s
            .config_drive
            .as_ref()
            .map(|v| boolean("config_drive", v))
            .transpose()?
            .unwrap_or(false);
        let tags = match &s.tags {
            None => Default::default(),
            Some(Some(Value::Array(items))) => crate::tags::tag_list(items)?,
            Some(v) => {
                let v = v.clone().unwrap_or(Value::Null);
                return Err(invalid("tags", &v, &format!("{v} is not of type 'array'")));
            }
        };
        let auto_disk_config = s.disk_config.as_ref().map(disk_config).transpose()?;
        let personality = match &s.personality {
            None => Vec::new(),
            Some(v) => personality(&v.clone().unwrap_or(Value::Null))?,
        };
        let security_groups = s
            .security_groups
            .as_ref()
            .map(security_group_names)
            .transpose()?;
        let admin_pass = match &s.admin_pass {
            None => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(v) => {
                return Err(invalid(
                    "adminPass",
                    v,
                    &format!("{v} is not of type 'string'"),
                ))
            }
        };
        let return_reservation_id = s
            .return_reservation_id
            .as_ref()
            .map(|v| boolean("return_reservation_id", v))
            .transpose()?
            .unwrap_or(false);
        Ok(CreateServer {
            name: s.name,
            description,
            image_ref,
            boot_from_volume: bfv,
            flavor_ref: s.flavor_ref.0,
            networks,
            metadata,
            availability_zone,
            requested_host,
            forced_host,
            key_name: s.key_name,
            scheduler_hints: scheduler_hints(body)?,
            volume_image,
            // Both within 1..=i32::MAX (checked above).
            min_count: min as u32,
            max_count: max as u32,
            return_reservation_id,
            access_ip_v4,
            access_ip_v6,
            user_data,
            config_drive,
            tags,
            personality,
            auto_disk_config,
            security_groups,
            admin_pass,
        })
    }
}

/// Validates `os:scheduler_hints` (or its old name `OS-SCH-HNT:scheduler_hints`) as
/// Nova's schema does: known hints are type-checked, unknown ones are kept as given.
pub fn scheduler_hints(body: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let hints = match (
        body.get("os:scheduler_hints"),
        body.get("OS-SCH-HNT:scheduler_hints"),
    ) {
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) => return Ok(BTreeMap::new()),
    };
    let Value::Object(map) = hints else {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute os:scheduler_hints. Value: must be an object",
        ));
    };
    let bad = |k: &str, v: &Value, why: &str| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute {k}. Value: {v}. {why}"
        ))
    };
    let uuids = |v: &Value| {
        let ok = |x: &Value| x.as_str().is_some_and(uuid_like);
        ok(v) || v.as_array().is_some_and(|items| items.iter().all(ok))
    };
    let name = |v: &Value| {
        v.as_str()
            .is_some_and(|c| !c.trim().is_empty() && c.chars().count() <= 255)
    };
    let cidr = |v: &Value| {
        v.as_str().is_some_and(|c| {
            c.len() > 1
                && c.starts_with('/')
                && c[1..]
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || matches!(ch, 'a'..='f' | '.' | ':'))
        })
    };
    let strings =
        |v: &Value| v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let why = match k.as_str() {
            "group" if v.as_str().is_none_or(|g| g.chars().count() > 255) => {
                Some("is not a string of at most 255 characters")
            }
            "different_host" | "same_host" if !uuids(v) => {
                Some("is not a server uuid or a list of them")
            }
            "query" if !(v.is_string() || v.is_object()) => Some("is not a string or an object"),
            "target_cell" if !name(v) => Some("is not a valid name"),
            "different_cell" if !strings(v) => Some("is not a string or a list of strings"),
            "build_near_host_ip"
                if v.as_str()
                    .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                    .is_none() =>
            {
                Some("is not an IP address")
            }
            "cidr" if !cidr(v) => Some("does not match '^/[0-9a-f.:]+$'"),
            _ => None,
        };
        if let Some(why) = why {
            return Err(bad(k, v, why));
        }
        out.insert(k.clone(), v.to_string());
    }
    Ok(out)
}

/// A host named by a client that must be a registered compute host.
pub fn known_host(views: &Views, name: &str) -> Result<HostName, ApiError> {
    let not_found = || ApiError::bad_request(format!("Compute host {name} could not be found."));
    let h = HostName::new(name).map_err(|_| not_found())?;
    if views.hosts().values().any(|r| r.state.spec.name == h) {
        Ok(h)
    } else {
        Err(not_found())
    }
}

/// A live flavor usable by the caller as a snapshot, or None (a private flavor is
/// usable by admins and by the projects on its access list).
pub fn flavor_snapshot(views: &Views, id: &str, caller: &Caller) -> Option<FlavorSnapshot> {
    let f = views.flavor(id)?;
    if !caller.is_admin && !f.visible_to(&caller.project) {
        return None;
    }
    Some(FlavorSnapshot {
        spec: f.spec.clone(),
        extra_specs: f.extra_specs.clone(),
    })
}

/// An active image the caller may see, or Nova's 400s ("Image X could not be found.",
/// "Image X is not active.").
pub fn usable_image<'a>(
    views: &'a Views,
    id: &str,
    caller: &Caller,
) -> Result<&'a domain::image::Image, ApiError> {
    let ctx = caller.ctx();
    let img = domain::ImageId::parse(id)
        .and_then(|iid| views.image(&iid))
        .filter(|i| i.visible_to(&ctx))
        .ok_or_else(|| ApiError::bad_request(format!("Image {id} could not be found.")))?;
    if img.status != domain::image::ImageStatus::Active {
        return Err(ApiError::bad_request(format!("Image {id} is not active.")));
    }
    Ok(img)
}

/// Nova's checks of an image's `min_ram` / `min_disk` (and size) against the flavor;
/// the disk checks do not apply to a volume-backed root or a flavor with `disk: 0`.
/// (Create uses it; so will rebuild, against the instance's current flavor.)
pub fn check_image_fits(
    img: &domain::image::Image,
    flavor: &FlavorSnapshot,
    volume_root: bool,
) -> Result<(), ApiError> {
    if flavor.spec.ram_mb < img.spec.min_ram {
        return Err(ApiError::bad_request(
            "Flavor's memory is too small for requested image.",
        ));
    }
    if volume_root || flavor.spec.disk_gb == 0 {
        return Ok(());
    }
    if flavor.spec.disk_gb < img.spec.min_disk {
        return Err(ApiError::bad_request(
            "Flavor's disk is too small for requested image.",
        ));
    }
    let disk_bytes = flavor.spec.disk_gb.saturating_mul(1024 * 1024 * 1024);
    if let Some(size) = img
        .data
        .as_ref()
        .map(|d| d.size)
        .filter(|s| *s > disk_bytes)
    {
        return Err(ApiError::bad_request(format!(
            "Flavor's disk is too small for requested image. Flavor disk is {disk_bytes} bytes, image is {size} bytes."
        )));
    }
    Ok(())
}

/// A server's `key_name` (create, 2.54 rebuild) must name one of the caller's key pairs:
/// Nova's 400 `Invalid key_name provided.` otherwise.
pub fn check_key_name(views: &Views, user: &str, key_name: &str) -> Result<(), ApiError> {
    match views.keypairs().get(user, key_name) {
        Some(_) => Ok(()),
        None => Err(ApiError::bad_request("Invalid key_name provided.")),
    }
}

/// Resolves a validated create request against the world into an [`InstanceSpec`].
pub fn resolve_create(
    req: CreateServer,
    views: &Views,
    caller: &Caller,
    id: InstanceId,
) -> Result<InstanceSpec, ApiError> {
    let flavor = flavor_snapshot(views, &req.flavor_ref, caller).ok_or_else(|| {
        ApiError::bad_request(format!("Flavor {} could not be found.", req.flavor_ref))
    })?;
    if !req.image_ref.is_empty() {
        let img = usable_image(views, &req.image_ref, caller)?;
        check_image_fits(img, &flavor, false)?;
        check_auto_disk_config(views, &req.image_ref, req.auto_disk_config)?;
    }
    if let Some(id) = &req.volume_image {
        let img = usable_image(views, id, caller)?;
        check_image_fits(img, &flavor, true)?;
    }
    // Nova checks the zone against the zones of the compute hosts (their aggregates'
    // zone, else `nova`), except when a host is forced (`az:host`).
    if let (Some(az), false) = (&req.availability_zone, req.forced_host) {
        if !views.availability_zones().contains(az) {
            return Err(ApiError::bad_request(
                "The requested availability zone is not available",
            ));
        }
    }
    if let Some(k) = &req.key_name {
        check_key_name(views, &caller.user, k)?;
    }
    let requested_host = match &req.requested_host {
        None => None,
        Some(h) => {
            if !caller.is_admin {
                return Err(ApiError::policy(if req.forced_host {
                    "os_compute_api:servers:create:forced_host"
                } else {
                    "compute:servers:create:requested_destination"
                }));
            }
            Some(known_host(views, h)?)
        }
    };
    Ok(InstanceSpec {
        id,
        name: req.name,
        description: req.description,
        project_id: caller.project.clone(),
        user_id: caller.user.clone(),
        flavor,
        image_ref: req.image_ref,
        boot_from_volume: req.boot_from_volume,
        metadata: req.metadata,
        availability_zone: req.availability_zone,
        networks: req.networks,
        key_name: req.key_name,
        requested_host,
    })
}

/// A validated PUT /servers/{id} body.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateServer {
    /// The new name, if given.
    pub name: Option<String>,
    /// `Some(None)` clears the description (2.19+).
    pub description: Option<Option<String>>,
    /// `OS-DCF:diskConfig` (AUTO: true), if given.
    pub auto_disk_config: Option<bool>,
    /// `accessIPv4` / `accessIPv6` (canonical; `""` clears) and `hostname` (2.90+).
    pub access: domain::instance::AccessChange,
}

/// PUT /servers/{id}: `{"server": {...}}` (other top-level keys are ignored, as Nova's
/// schema allows).
#[derive(Debug, Deserialize)]
struct UpdateServerBody {
    server: UpdateServerFields,
}

/// The keys Nova's `update` schema knows; `description` from 2.19, `hostname` from
/// 2.90 (checked by [`UpdateServer::decode`]). The disk config is recorded as
/// `instance.disk_config_set`, the access addresses and hostname as
/// `instance.access_updated`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateServerFields {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(rename = "accessIPv4", default)]
    access_ipv4: Option<Value>,
    #[serde(rename = "accessIPv6", default)]
    access_ipv6: Option<Value>,
    #[serde(rename = "OS-DCF:diskConfig", default)]
    disk_config: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    hostname: Option<Option<Value>>,
}

impl Decode for UpdateServer {
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError> {
        let s = body::from_value::<UpdateServerBody>("", body)?.server;
        let mut extra = Vec::new();
        if s.description.is_some() && !version.at_least(19) {
            extra.push("description");
        }
        if s.hostname.is_some() && !version.at_least(90) {
            extra.push("hostname");
        }
        if !extra.is_empty() {
            return Err(unexpected(&extra));
        }
        let name = match s.name {
            None => None,
            Some(None) => {
                return Err(invalid(
                    "name",
                    &Value::Null,
                    "null is not of type 'string' (got null)",
                ))
            }
            Some(Some(n)) => {
                check_len("name", &n, 1, 255)?;
                if !domain::instance::valid_name(&n) {
                    return Err(invalid(
                        "name",
                        &Value::String(n),
                        "is not a valid server name",
                    ));
                }
                Some(n)
            }
        };
        if let Some(Some(d)) = &s.description {
            check_len("description", d, 0, 255)?;
        }
        let auto_disk_config = s.disk_config.as_ref().map(disk_config).transpose()?;
        // As on create: an address of its family (stored canonical), "" clears it.
        let ip = |field: &str, v: &Option<Value>, v6: bool| {
            v.as_ref()
                .map(|v| create_access_ip(field, v, v6))
                .transpose()
        };
        let hostname = match s.hostname {
            None => None,
            Some(Some(Value::String(h))) => {
                check_len("hostname", &h, 1, 255)?;
                Some(h)
            }
            Some(v) => {
                let v = v.unwrap_or(Value::Null);
                return Err(invalid(
                    "hostname",
                    &v,
                    &format!("{v} is not of type 'string'"),
                ));
            }
        };
        let access = domain::instance::AccessChange {
            access_ip_v4: ip("accessIPv4", &s.access_ipv4, false)?,
            access_ip_v6: ip("accessIPv6", &s.access_ipv6, true)?,
            hostname,
        };
        Ok(UpdateServer {
            name,
            description: s.description,
            auto_disk_config,
            access,
        })
    }
}

/// Filters of GET /servers and /servers/detail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerQuery {
    /// Substring of the name.
    pub name: Option<String>,
    /// `status` values (upper case; any of them): Nova's `task_and_vm_state_from_status`,
    /// see [`status_matches`]. `Some(empty)`: only unknown statuses were given before
    /// 2.38, which Nova answers with an empty list.
    pub statuses: Option<Vec<String>>,
    /// `deleted` (admins; others' is ignored as Nova's `remove_invalid_options` does):
    /// only deleted servers, or only live ones. Invalid text is false (oslo's
    /// `bool_from_string(default=False)`).
    pub deleted: Option<bool>,
    /// `ip` / `ip6`: a regular expression over the server's fixed addresses. Servers
    /// have none without networking, so any such filter matches nothing.
    pub ip: Option<String>,
    pub ip6: Option<String>,
    /// Host (admin).
    pub host: Option<String>,
    /// Updated at or after (includes deleted servers).
    pub changes_since: Option<Timestamp>,
    /// Updated at or before (2.66+, includes deleted servers).
    pub changes_before: Option<Timestamp>,
    /// All projects (admin).
    pub all_tenants: bool,
    /// Project filter (admin, with all_tenants).
    pub project: Option<String>,
    /// Flavor id.
    pub flavor: Option<String>,
    /// Image id.
    pub image: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Last id of the previous page.
    pub marker: Option<String>,
    /// A multiple create's reservation.
    pub reservation_id: Option<String>,
    /// 2.26 tag filters: `tags` (has all), `tags-any` (has one), `not-tags` (lacks one
    /// at least), `not-tags-any` (has none); comma-separated lists.
    pub tags: TagFilters,
    /// 2.73 `locked`: only locked (true) or unlocked (false) servers.
    pub locked: Option<bool>,
}

/// The 2.26 tag filters of a server list (empty lists filter nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFilters {
    /// `tags`: every one of these.
    pub all: Vec<String>,
    /// `tags-any`: one of these at least.
    pub any: Vec<String>,
    /// `not-tags`: not every one of these.
    pub not_all: Vec<String>,
    /// `not-tags-any`: none of these.
    pub not_any: Vec<String>,
}

impl TagFilters {
    /// Whether a server with `tags` passes (Nova's `_handle_tags_filters` in
    /// nova/db/main/api.py).
    pub fn matches(&self, tags: &std::collections::BTreeSet<String>) -> bool {
        let has = |t: &String| tags.contains(t);
        (self.all.is_empty() || self.all.iter().all(has))
            && (self.any.is_empty() || self.any.iter().any(has))
            && (self.not_all.is_empty() || !self.not_all.iter().all(has))
            && (self.not_any.is_empty() || !self.not_any.iter().any(has))
    }
}

/// Query keys Nova accepts on GET /servers from 2.75 (others are refused there).
const SERVER_QUERY_KEYS: &[&str] = &[
    "user_id",
    "project_id",
    "tenant_id",
    "launch_index",
    "image_ref",
    "image",
    "kernel_id",
    "ramdisk_id",
    "hostname",
    "key_name",
    "power_state",
    "vm_state",
    "task_state",
    "host",
    "node",
    "flavor",
    "reservation_id",
    "launched_at",
    "terminated_at",
    "availability_zone",
    "name",
    "display_name",
    "description",
    "display_description",
    "locked_by",
    "uuid",
    "root_device_name",
    "config_drive",
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "progress",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "soft_deleted",
    "deleted",
    "status",
    "changes-since",
    "changes-before",
    "ip",
    "ip6",
    "created_at",
    "block_device_mapping",
    "services",
    "metadata",
    "pci_devices",
    "security_groups",
    "info_cache",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
    "limit",
    "marker",
    "locked",
    "config_drive",
    "vm_state",
    "system_metadata",
    "shutdown_terminate",
    "cleaned",
    "default_ephemeral_device",
    "default_swap_device",
    "ephemeral_gb",
    "ephemeral_key_uuid",
    "instance_type_id",
    "memory_mb",
    "vcpus",
    "root_gb",
    "scheduled_at",
    "updated_at",
    "deleted_at",
    "os_type",
    "architecture",
    "cell_name",
    "key_data",
    "numa_topology",
    "trusted_certs",
    "availability_zone",
    "pinned_availability_zone",
    "user_data",
    "fault",
    "pci_requests",
    "device_metadata",
    "vm_mode",
    "display_description",
    "migration_context",
    "ec2_ids",
    "keypairs",
    "flavor",
    "old_flavor",
    "new_flavor",
    "resources",
    "services",
    "hidden",
    "compute_id",
    "ip6",
    "ip",
];

/// A non-negative `limit`.
pub(crate) fn limit(q: &QueryPairs) -> Result<Option<usize>, ApiError> {
    match q.get("limit") {
        None => Ok(None),
        Some(s) => {
            let n: i64 = s
                .trim()
                .parse()
                .map_err(|_| ApiError::bad_request("limit param must be an integer"))?;
            if n < 0 {
                return Err(ApiError::bad_request("limit param must be positive"));
            }
            Ok(Some(n as usize))
        }
    }
}

/// Validates the server list query.
pub fn server_query(q: &QueryPairs, version: Version) -> Result<ServerQuery, ApiError> {
    if version.at_least(75) {
        if let Some((k, _)) =
            q.0.iter()
                .find(|(k, _)| !SERVER_QUERY_KEYS.contains(&k.as_str()))
        {
            return Err(ApiError::bad_request(format!(
                "Invalid input for query parameters {k}. Value: {}. Additional properties are not allowed ('{k}' was unexpected)",
                q.get(k).unwrap_or_default()
            )));
        }
    }
    let time = |key: &str| -> Result<Option<Timestamp>, ApiError> {
        match q.get(key) {
            None => Ok(None),
            Some(s) => parse_iso(s)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid filter field: {key}."))),
        }
    };
    let changes_since = time("changes-since")?;
    let changes_before = if version.at_least(66) {
        time("changes-before")?
    } else {
        None
    };
    if let (Some(a), Some(b)) = (changes_since, changes_before) {
        if a > b {
            return Err(ApiError::bad_request(
                "The value of changes-since must be less than or equal to changes-before.",
            ));
        }
    }
    let all_tenants = match q.get("all_tenants") {
        None => false,
        Some("") => true,
        Some(s) => parse_bool(s)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid value '{s}' for all_tenants")))?,
    };
    let nonempty = |k: &str| q.get(k).filter(|s| !s.is_empty()).map(str::to_string);
    let list = |k: &str| -> Vec<String> {
        if !version.at_least(26) {
            return Vec::new();
        }
        q.get(k)
            .filter(|s| !s.is_empty())
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let tags = TagFilters {
        all: list("tags"),
        any: list("tags-any"),
        not_all: list("not-tags"),
        not_any: list("not-tags-any"),
    };
    let given: Vec<String> =
        q.0.iter()
            .filter(|(k, _)| k == "status")
            .map(|(_, v)| v.to_ascii_uppercase())
            .collect();
    let statuses = if given.is_empty() {
        None
    } else {
        let known: Vec<String> = given
            .into_iter()
            .filter(|s| STATUSES.contains(&s.as_str()))
            .collect();
        if known.is_empty() && version.at_least(38) {
            return Err(ApiError::bad_request("Invalid status value"));
        }
        Some(known)
    };
    // Nova's `common.is_locked`: oslo's strict boolean, else InvalidInput.
    let locked = match q.get("locked").filter(|_| version.at_least(73)) {
        None => None,
        Some(s) => Some(parse_bool(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input received: Unrecognized value '{s}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
            ))
        })?),
    };
    Ok(ServerQuery {
        locked,
        name: nonempty("name"),
        statuses,
        deleted: q.get("deleted").map(|s| parse_bool(s).unwrap_or(false)),
        ip: q.get("ip").map(str::to_string),
        ip6: q.get("ip6").map(str::to_string),
        host: nonempty("host"),
        changes_since,
        changes_before,
        all_tenants,
        project: nonempty("project_id").or_else(|| nonempty("tenant_id")),
        flavor: nonempty("flavor").map(|f| ref_id(&f).to_string()),
        image: nonempty("image").map(|f| ref_id(&f).to_string()),
        limit: limit(q)?,
        marker: nonempty("marker"),
        reservation_id: nonempty("reservation_id"),
        tags,
    })
}

/// Every status Nova's `_STATE_MAP` can show (the values a `status` filter may name).
pub const STATUSES: &[&str] = &[
    "ACTIVE",
    "BUILD",
    "DELETED",
    "ERROR",
    "HARD_REBOOT",
    "MIGRATING",
    "PASSWORD",
    "PAUSED",
    "REBOOT",
    "REBUILD",
    "RESCUE",
    "RESIZE",
    "REVERT_RESIZE",
    "SHELVED",
    "SHELVED_OFFLOADED",
    "SHUTOFF",
    "SOFT_DELETED",
    "SUSPENDED",
    "VERIFY_RESIZE",
];

/// Whether a server with `status` (as shown) and `default_status` (what its vm_state
/// shows without a task) passes a `status=<want>` filter. Nova turns a status into
/// vm_states and task_states and leaves the task unfiltered when the status is a
/// vm_state's default (`ACTIVE` also finds an active server that is rebooting).
pub fn status_matches(want: &str, status: &str, default_status: &str) -> bool {
    want == status || want == default_status
}

/// Nova's `name` filter: a regular expression searched in the display name (the
/// database's REGEXP); a pattern that is not a valid expression matches as a literal.
pub fn name_matcher(pattern: &str) -> impl Fn(&str) -> bool {
    let re = regex::Regex::new(pattern).ok();
    let literal = pattern.to_string();
    move |name: &str| match &re {
        Some(re) => re.is_match(name),
        None => name.contains(literal.as_str()),
    }
}

// ------------------------------------------------------------------ flavors

/// Filters of GET /flavors and /flavors/detail.
#[derive(Debug, Clone, PartialEq)]
pub struct FlavorQuery {
    /// Some(b): only flavors with is_public == b; None: all (admins, `is_public=None`).
    pub is_public: Option<bool>,
    /// Minimum RAM (MiB).
    pub min_ram: Option<u64>,
    /// Minimum disk (GiB).
    pub min_disk: Option<u64>,
    /// Page size.
    pub limit: Option<usize>,
    /// Last flavor id of the previous page.
    pub marker: Option<String>,
    /// Sort key (Nova column name).
    pub sort_key: String,
    /// Descending.
    pub desc: bool,
}

/// Sort keys accepted for flavors.
pub const FLAVOR_SORT_KEYS: &[&str] = &[
    "created_at",
    "description",
    "disabled",
    "ephemeral_gb",
    "flavorid",
    "id",
    "is_public",
    "memory_mb",
    "name",
    "root_gb",
    "rxtx_factor",
    "swap",
    "updated_at",
    "vcpu_weight",
    "vcpus",
];

/// Validates the flavor list query; non-admins only ever see public flavors.
pub fn flavor_query(q: &QueryPairs, is_admin: bool) -> Result<FlavorQuery, ApiError> {
    let is_public = match q.get("is_public") {
        None => Some(true),
        Some(s) if s.eq_ignore_ascii_case("none") => None,
        Some(s) => Some(
            parse_bool(s)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid is_public filter [{s}]")))?,
        ),
    };
    let num = |key: &str| -> Result<Option<u64>, ApiError> {
        match q.get(key) {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("Invalid {key} filter [{s}]"))),
        }
    };
    let sort_key = q.get("sort_key").unwrap_or("flavorid").to_string();
    if !FLAVOR_SORT_KEYS.contains(&sort_key.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Invalid sort_key {sort_key}"
        )));
    }
    let desc = match q.get("sort_dir").unwrap_or("asc") {
        "asc" => false,
        "desc" => true,
        other => return Err(ApiError::bad_request(format!("Invalid sort_dir {other}"))),
    };
    Ok(FlavorQuery {
        is_public: if is_admin { is_public } else { Some(true) },
        min_ram: num("minRam")?,
        min_disk: num("minDisk")?,
        limit: limit(q)?,
        marker: q.get("marker").map(str::to_string),
        sort_key,
        desc,
    })
}

fn flavor_id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b' ' | b'_' | b'-'))
}

const MAX_DB_INT: i64 = i32::MAX as i64;

/// POST /flavors: `{"flavor": {...}}` (other top-level keys are ignored).
#[derive(Debug, Deserialize)]
struct FlavorCreateBody {
    flavor: FlavorCreateFields,
}

/// Nova's `flavor_manage` create schema; `description` from 2.55 (checked by
/// [`FlavorCreate::decode`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorCreateFields {
    name: String,
    #[serde(default)]
    id: Option<FlavorIdLike>,
    ram: IntLike,
    vcpus: IntLike,
    disk: IntLike,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral", default)]
    ephemeral: Option<IntLike>,
    #[serde(default)]
    swap: Option<IntLike>,
    #[serde(default)]
    rxtx_factor: Option<NumberLike>,
    #[serde(rename = "os-flavor-access:is_public", default)]
    is_public: Option<Flag>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
}

/// A validated POST /flavors body: the new flavor's spec (a fresh uuid id when none
/// is given).
#[derive(Debug, Clone, PartialEq)]
pub struct FlavorCreate(pub FlavorSpec);

impl Decode for FlavorCreate {
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError> {
        let f = body::from_value::<FlavorCreateBody>("", body)?.flavor;
        if f.description.is_some() && !version.at_least(55) {
            return Err(unexpected(&["description"]));
        }
        check_len("name", &f.name, 1, 255)?;
        if f.name.trim() != f.name || f.name.chars().any(|c| c.is_control()) {
            return Err(invalid(
                "name",
                &Value::String(f.name),
                "is not a valid flavor name",
            ));
        }
        // Nova generates an id for a missing, null or zero id (`if not flavorid`; the
        // empty string fails the length check first).
        let id = match f.id.filter(|i| !i.is_zero()) {
            None => uuid::Uuid::new_v4().to_string(),
            // A number is stored as its text, with no pattern check (JSON Schema's
            // string keywords do not apply to numbers).
            Some(FlavorIdLike::Number(n)) => n.to_string(),
            Some(FlavorIdLike::Text(id)) => {
                check_len("id", &id, 1, 255)?;
                if !flavor_id_ok(&id) {
                    let v = Value::String(id);
                    return Err(invalid(
                        "id",
                        &v,
                        &format!("{v} does not match '^(?! )[a-zA-Z0-9. _-]+(?<! )$'"),
                    ));
                }
                id
            }
        };
        let ram = f.ram.within("ram", 1, MAX_DB_INT)?;
        let vcpus = f.vcpus.within("vcpus", 1, MAX_DB_INT)?;
        let disk = f.disk.within("disk", 0, MAX_DB_INT)?;
        let eph = f
            .ephemeral
            .map(|e| e.within("OS-FLV-EXT-DATA:ephemeral", 0, MAX_DB_INT))
            .transpose()?
            .unwrap_or(0);
        let swap = f
            .swap
            .map(|e| e.within("swap", 0, MAX_DB_INT))
            .transpose()?
            .unwrap_or(0);
        let rxtx = match &f.rxtx_factor {
            None => 1.0,
            Some(x) => x.rxtx_factor()?,
        };
        let description = f.description.flatten();
        if let Some(d) = &description {
            check_len("description", d, 0, 65535)?;
        }
        Ok(FlavorCreate(FlavorSpec {
            id: FlavorId::new(id.clone())
                .map_err(|_| invalid("id", &Value::String(id), "is not a valid flavor id"))?,
            name: f.name,
            vcpus: vcpus as u32,
            ram_mb: ram as u64,
            disk_gb: disk as u64,
            ephemeral_gb: eph as u64,
            swap_mb: swap as u64,
            rxtx_factor: rxtx,
            is_public: f.is_public.is_none_or(|p| p.0),
            description,
        }))
    }
}

/// A flavor id as sent: Nova's schema allows a string, a number or null, and stores a
/// number as its text (`"id": 42` makes flavor `"42"`).
#[derive(Debug, Clone)]
enum FlavorIdLike {
    Text(String),
    Number(serde_json::Number),
}

impl FlavorIdLike {
    /// Whether Python would call it false (`0`, `0.0`): Nova then generates an id.
    fn is_zero(&self) -> bool {
        matches!(self, FlavorIdLike::Number(n) if n.as_f64() == Some(0.0))
    }
}

impl<'de> Deserialize<'de> for FlavorIdLike {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(FlavorIdLike::Text(s)),
            Value::Number(n) => Ok(FlavorIdLike::Number(n)),
            raw => Err(serde::de::Error::custom(format!(
                "{raw} is not of type 'string', 'number', 'null'"
            ))),
        }
    }
}

/// An integer, or a string of digits as Nova accepts (`"1024"`); keeps the value as
/// sent for the range messages.
#[derive(Debug, Clone)]
struct IntLike {
    value: i64,
    raw: Value,
}

impl<'de> Deserialize<'de> for IntLike {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let value = match &raw {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if !s.is_empty() && s.trim().len() == s.len() => s.parse::<i64>().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{raw} is not of type 'integer' (got {})",
                type_name(&raw)
            ))
        })?;
        Ok(IntLike { value, raw })
    }
}

impl IntLike {
    /// The value if within `min..=max`, else Nova's range message for `field`.
    fn within(&self, field: &str, min: i64, max: i64) -> Result<i64, ApiError> {
        let v = &self.raw;
        if self.value < min {
            return Err(invalid(
                field,
                v,
                &format!("{v} is less than the minimum of {min}"),
            ));
        }
        if self.value > max {
            return Err(invalid(
                field,
                v,
                &format!("{v} is greater than the maximum of {max}"),
            ));
        }
        Ok(self.value)
    }
}

/// Nova's `rxtx_factor`: a number, or a string of digits with an optional fraction;
/// kept as sent, checked by [`NumberLike::rxtx_factor`].
#[derive(Debug, Clone)]
struct NumberLike {
    raw: Value,
}

impl<'de> Deserialize<'de> for NumberLike {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        if !matches!(raw, Value::Number(_) | Value::String(_)) {
            return Err(serde::de::Error::custom(format!(
                "{raw} is not of type 'number', 'string'"
            )));
        }
        Ok(NumberLike { raw })
    }
}

/// The largest `rxtx_factor` (the database's single-precision float maximum).
const RXTX_MAX: f64 = 3.40282e38;

impl NumberLike {
    /// The factor, checked as Nova does: the schema (a number above 0, a string of the
    /// pattern; either at most [`RXTX_MAX`]), then its `float()` must be above 0 (a
    /// string `"0"` passes the schema and fails there, with another message).
    fn rxtx_factor(&self) -> Result<f64, ApiError> {
        let field = "rxtx_factor";
        let raw = &self.raw;
        let too_big = || {
            invalid(
                field,
                raw,
                &format!("{raw} is greater than the maximum of 3.40282e+38"),
            )
        };
        match raw {
            Value::String(s) => {
                let (int, frac) = s.split_once('.').unwrap_or((s, "1"));
                let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
                if !(digits(int) && digits(frac)) {
                    return Err(invalid(
                        field,
                        raw,
                        &format!("{raw} does not match '^[0-9]+(\\\\.[0-9]+)?$'"),
                    ));
                }
                let v: f64 = s.parse().map_err(|_| too_big())?;
                if v > RXTX_MAX {
                    return Err(too_big());
                }
                if v <= 0.0 {
                    return Err(ApiError::bad_request(
                        "Invalid input received: 'rxtx_factor' argument must be a float between 0 and 3.40282e+38",
                    ));
                }
                Ok(v)
            }
            _ => {
                let v = raw.as_f64().unwrap_or(0.0);
                if v <= 0.0 {
                    return Err(invalid(
                        field,
                        raw,
                        &format!("{raw} is less than or equal to the minimum of 0"),
                    ));
                }
                if v > RXTX_MAX {
                    return Err(too_big());
                }
                Ok(v)
            }
        }
    }
}

/// PUT /flavors/{id} body: `{"flavor": {"description": string or null}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorUpdateBody {
    flavor: FlavorUpdateFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorUpdateFields {
    /// Required, and may be null (Nova's `description` parameter type).
    #[serde(deserialize_with = "crate::body::nullable")]
    description: Option<String>,
}

/// Validates PUT /flavors/{id} (2.55+): the new description. Decoded by the handler
/// after its microversion check (Nova answers 404 before 2.55, whatever the body).
pub fn flavor_update(body: &Value) -> Result<Option<String>, ApiError> {
    let f = body::from_value::<FlavorUpdateBody>("", body)?.flavor;
    if let Some(d) = &f.description {
        check_len("description", d, 0, 65535)?;
    }
    Ok(f.description)
}

/// An extra spec's value: a string, or a number or boolean that Nova stores as its text
/// (`1` -> `"1"`, `true` -> `"True"`), at most 255 characters.
struct SpecValue(String);

impl<'de> Deserialize<'de> for SpecValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let s = match &v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "{other} is not of type 'string' (got {})",
                    type_name(other)
                )))
            }
        };
        if s.chars().count() > 255 {
            return Err(serde::de::Error::custom("is too long"));
        }
        Ok(SpecValue(s))
    }
}

/// Extra specs as sent: keys checked against Nova's pattern, values as text.
fn spec_map(
    raw: BTreeMap<String, SpecValue>,
    doc: &Value,
) -> Result<BTreeMap<String, String>, ApiError> {
    let key_ok = |k: &str| {
        !k.is_empty()
            && k.len() <= 255
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.' | b' '))
    };
    if let Some(bad) = raw.keys().find(|k| !key_ok(k)) {
        return Err(invalid(
            "extra_specs",
            doc,
            &format!("'{bad}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"),
        ));
    }
    Ok(raw.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// POST /flavors/{id}/os-extra_specs body: `{"extra_specs": {key: value, ...}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraSpecsBody {
    extra_specs: BTreeMap<String, SpecValue>,
}

/// Validates POST /flavors/{id}/os-extra_specs: at least one spec.
pub fn extra_specs_create(body: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let raw = body::from_value::<ExtraSpecsBody>("", body)?.extra_specs;
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute extra_specs. Value: {}. {} does not have enough properties",
        ));
    }
    spec_map(raw, &body["extra_specs"])
}

/// Validates PUT /flavors/{id}/os-extra_specs/{key}: exactly `{key: value}`.
pub fn extra_spec_update(body: &Value, key: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let raw: BTreeMap<String, SpecValue> = body::from_value("extra_specs", body)?;
    if raw.len() > 1 {
        return Err(ApiError::bad_request(
            "Request body contains too many items",
        ));
    }
    if !raw.contains_key(key) {
        return Err(ApiError::bad_request("Request body and URI mismatch"));
    }
    spec_map(raw, body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn metadata_is_a_map_of_short_strings() {
        use serde_json::json;
        assert_eq!(
            metadata_items("metadata", &json!({"a": "b"})).unwrap(),
            BTreeMap::from([("a".to_string(), "b".to_string())])
        );
        let e = metadata_items("metadata", &json!({"a": 5}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field/attribute a. Value: 5. 5 is not of type 'string' (got number)"),
            "{e}"
        );
        let e = metadata_items("metadata", &json!([1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not of type 'object'"), "{e}");
        let e = metadata_items("metadata", &json!({"a": "x".repeat(256)}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is too long"), "{e}");
        let e = metadata_items("metadata", &json!({"": "x"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match any of the regexes"), "{e}");
    }

    #[test]
    fn networks_and_block_devices_keep_novas_messages() {
        use serde_json::json;
        let v = |n: u16| Version::parse(&format!("2.{n}")).unwrap();
        let err = |r: Result<Networks, ApiError>| r.unwrap_err().to_string();
        let net = "ff608d40-75e9-48cb-b745-77bb55b5eaf2";
        assert!(
            err(networks(Some(&json!([{"uuid": net, "tag": "t"}])), v(31)))
                .contains("('tag' was unexpected)")
        );
        assert!(networks(Some(&json!([{"uuid": net, "tag": "t"}])), v(32)).is_ok());
        assert!(
            err(networks(Some(&json!([{"uuid": net, "nic": 1}])), v(32)))
                .contains("('nic' was unexpected)")
        );
        assert!(err(networks(Some(&json!([5])), v(32))).contains("is not of type 'object'"));
        assert!(err(networks(Some(&json!([{"port": "x"}])), v(32))).contains("is not a 'uuid'"));
        assert!(
            err(networks(Some(&json!([{}])), v(32))).contains("Bad network format: missing 'uuid'")
        );
        assert!(err(networks(Some(&json!("none")), v(36)))
            .contains("is not valid under any of the given schemas"));
        let img = "70a599e0-31e7-49b7-b260-868f441e862b";
        assert_eq!(
            bdm_root(
                &json!([{"source_type": "image", "uuid": img, "boot_index": 0,
                "destination_type": "volume", "volume_size": 1}])
            )
            .unwrap(),
            (true, Some(img.to_string()))
        );
        assert_eq!(
            bdm_root(&json!([{"source_type": "image", "uuid": img, "boot_index": "0"}])).unwrap(),
            (false, Some(img.to_string()))
        );
        let e = bdm_root(&json!([{"source_type": "disk"}]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not one of ['volume', 'image', 'snapshot', 'blank']"),
            "{e}"
        );
        let e = bdm_root(&json!([{"destination_type": "cloud"}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not one of ['local', 'volume']"), "{e}");
        let e = bdm_root(&json!({"a": 1})).unwrap_err().to_string();
        assert!(e.contains("is not of type 'array'"), "{e}");
        let e = bdm_root(&json!([{"source_type": "volume", "boot_index": 0,
            "destination_type": "volume"}]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing uuid for the boot device"), "{e}");
    }

    #[test]
    fn flavor_update_and_extra_specs_keep_novas_messages() {
        use serde_json::json;
        let msg = |r: Result<_, ApiError>| r.map(|_: ()| ()).unwrap_err().to_string();
        assert_eq!(
            flavor_update(&json!({"flavor": {"description": null}})).unwrap(),
            None
        );
        assert!(msg(flavor_update(&json!({"flavor": {}})).map(drop))
            .contains("'description' is a required property"));
        assert!(
            msg(flavor_update(&json!({"flavor": {"description": "d", "x": 1}})).map(drop))
                .contains("('x' was unexpected)")
        );
        let specs = extra_specs_create(&json!({"extra_specs": {"a": 1, "b": true, "c": "x"}}));
        assert_eq!(
            specs.unwrap(),
            BTreeMap::from([
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "True".to_string()),
                ("c".to_string(), "x".to_string()),
            ])
        );
        assert!(
            msg(extra_specs_create(&json!({"extra_specs": {}})).map(drop))
                .contains("does not have enough properties")
        );
        assert!(
            msg(extra_specs_create(&json!({"extra_specs": {"a/b": "x"}})).map(drop))
                .contains("'a/b' does not match any of the regexes")
        );
        assert!(
            msg(extra_specs_create(&json!({"extra_specs": {"a": {"n": 1}}})).map(drop))
                .contains("is not of type 'string' (got object)")
        );
        assert!(
            msg(extra_spec_update(&json!({"a": "1", "b": "2"}), "a").map(drop))
                .contains("Request body contains too many items")
        );
        assert!(msg(extra_spec_update(&json!({"b": "1"}), "a").map(drop))
            .contains("Request body and URI mismatch"));
        assert!(msg(extra_spec_update(&json!(["a"]), "a").map(drop))
            .contains("is not of type 'object'"));
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn create_server_shapes() {
        let v = Version::v2(37);
        let create_server = CreateServer::decode;
        let ok = create_server(
            &json!({"server": {"name": "a", "imageRef": "http://x/images/70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "http://x/flavors/1", "networks": "none"}}),
            v,
        )
        .unwrap();
        assert_eq!(ok.flavor_ref, "1");
        assert_eq!(ok.image_ref, "70a599e0-31e7-49b7-b260-868f441e862b");
        assert_eq!(ok.networks, Networks::None);
        let e = create_server(&json!({"server": {"name": "a", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "1"}}), v)
            .unwrap_err();
        assert!(e.message.contains("networks"), "{e}");
        let bfv = create_server(
            &json!({"server": {"name": "a", "flavorRef": 1, "networks": "auto", "block_device_mapping_v2": [{"boot_index": "0", "uuid": "70a599e0-31e7-49b7-b260-868f441e862b", "source_type": "image", "destination_type": "volume", "volume_size": 1}]}}),
            v,
        )
        .unwrap();
        assert!(bfv.boot_from_volume);
        assert_eq!(bfv.image_ref, "");
        let e = create_server(
            &json!({"server": {"name": "a", "flavorRef": "1", "networks": "auto"}}),
            v,
        )
        .unwrap_err();
        assert_eq!(e.message, "Missing imageRef attribute");
        let e = create_server(&json!({"server": {"name": 5, "flavorRef": "1"}}), v).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let e = create_server(&json!({"server": {"name": "a", "flavorRef": "1", "networks": "auto", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "bogus": 1}}), v).unwrap_err();
        assert!(e.message.contains("'bogus' was unexpected"));
        // Keys accepted and not recorded; keys of other microversions refused.
        let img = "70a599e0-31e7-49b7-b260-868f441e862b";
        let base = json!({"name": "a", "imageRef": img, "flavorRef": "1", "networks": [],
            "adminPass": "x", "user_data": "eA==", "config_drive": true, "security_groups": [{"name": "default"}],
            "block_device_mapping": [], "return_reservation_id": false, "OS-DCF:diskConfig": "AUTO",
            "accessIPv4": "192.0.2.1", "min_count": "1", "max_count": 1});
        assert!(create_server(
            &json!({"server": base, "os:scheduler_hints": {"group": "g"}}),
            v
        )
        .is_ok());
        let with = |k: &str, x: Value| {
            let mut b = base.clone();
            b[k] = x;
            json!({"server": b})
        };
        for (key, value, refused_at, allowed_at) in [
            ("description", json!("d"), 18, 19),
            ("tags", json!([]), 51, 52),
            ("trusted_image_certificates", json!(null), 62, 63),
            ("host", json!("h"), 73, 74),
            ("hostname", json!("h"), 89, 90),
        ] {
            assert_eq!(
                create_server(&with(key, value.clone()), Version::v2(refused_at))
                    .unwrap_err()
                    .message,
                format!("Additional properties are not allowed ('{key}' was unexpected)")
            );
            if let Err(e) = create_server(&with(key, value), Version::v2(allowed_at)) {
                panic!("{key} at 2.{allowed_at}: {e}");
            }
        }
        assert!(create_server(&with("personality", json!([])), Version::v2(56)).is_ok());
        assert!(create_server(&with("personality", json!([])), Version::v2(57)).is_err());
        let multi = create_server(&with("max_count", json!(2)), v).unwrap();
        assert_eq!((multi.min_count, multi.max_count), (1, 2));
        assert!(create_server(&with("accessIPv4", json!("300.1.1.1")), v)
            .unwrap_err()
            .message
            .contains("is not a 'ipv4'"));
        assert!(create_server(&with("accessIPv6", json!("192.0.2.1")), v).is_err());
        assert!(create_server(&with("user_data", json!("not base64!")), v)
            .unwrap_err()
            .message
            .contains("is not a 'base64'"));
        assert!(create_server(&with("config_drive", json!("maybe")), v).is_err());
        let x = create_server(&with("user_data", json!("IyEvYmluL3NoCg==")), v).unwrap();
        assert_eq!(x.user_data.as_deref(), Some("IyEvYmluL3NoCg=="));
        assert!(create_server(&with("min_count", json!(0)), v)
            .unwrap_err()
            .message
            .contains("less than the minimum of 1"));
        let e = create_server(&json!({"server": base, "extra": 1}), v).unwrap_err();
        assert!(e.message.contains("'extra' was unexpected"), "{e}");
        // The item count is the quota's (the handlers'): 129 items validate here.
        let many: serde_json::Map<String, Value> =
            (0..129).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(
            metadata_items("metadata", &Value::Object(many))
                .unwrap()
                .len(),
            129
        );
    }

    #[test]
    fn update_server_bodies() {
        let d = |b: Value, v: u16| UpdateServer::decode(&b, Version::v2(v));
        assert_eq!(
            d(json!({"server": {"name": "n", "description": null}}), 19).unwrap(),
            UpdateServer {
                name: Some("n".into()),
                description: Some(None),
                auto_disk_config: None,
                access: Default::default(),
            }
        );
        assert_eq!(
            d(json!({"server": {"OS-DCF:diskConfig": "AUTO"}}), 1)
                .unwrap()
                .auto_disk_config,
            Some(true)
        );
        assert!(d(json!({"server": {"OS-DCF:diskConfig": "auto"}}), 1)
            .unwrap_err()
            .message
            .contains("is not one of ['AUTO', 'MANUAL']"));
        assert_eq!(
            d(json!({"server": {"description": "x"}}), 18)
                .unwrap_err()
                .message,
            "Additional properties are not allowed ('description' was unexpected)"
        );
        assert!(d(json!({"server": {"hostname": "h"}}), 90).is_ok());
        assert!(d(json!({"server": {"hostname": null}}), 89).is_err());
        assert!(d(json!({"server": {"name": null}}), 90).is_err());
        assert!(d(json!({"server": {"name": ""}}), 90)
            .unwrap_err()
            .message
            .ends_with("is too short"));
        assert_eq!(
            d(json!({"other": 1}), 90).unwrap_err().message,
            "Invalid input for request body. Value: {\"other\":1}. 'server' is a required property"
        );
        assert!(d(json!({"server": {"colour": "red"}}), 90)
            .unwrap_err()
            .message
            .contains("'colour' was unexpected"));
    }

    #[test]
    fn flavors() {
        let create = |b: Value, v: Version| FlavorCreate::decode(&b, v).map(|f| f.0);
        let f = create(json!({"flavor": {"name": "t", "ram": "1024", "vcpus": 2, "disk": 10, "id": "10", "rxtx_factor": 2.0}}), Version::v2(55)).unwrap();
        assert_eq!((f.ram_mb, f.vcpus, f.id.as_str()), (1024, 2, "10"));
        assert!(f.is_public);
        assert_eq!(
            create(
                json!({"flavor": {"name": "t", "ram": -1, "vcpus": 2, "disk": 10}}),
                Version::MIN
            )
            .unwrap_err()
            .message,
            "Invalid input for field/attribute ram. Value: -1. -1 is less than the minimum of 1"
        );
        assert_eq!(
            create(
                json!({"flavor": {"name": "t", "ram": "lots", "vcpus": 2, "disk": 10}}),
                Version::MIN
            )
            .unwrap_err()
            .message,
            "Invalid input for field/attribute ram. Value: \"lots\". \"lots\" is not of type 'integer' (got string)"
        );
        assert!(create(
            json!({"flavor": {"ram": 1, "vcpus": 2, "disk": 10}}),
            Version::MIN
        )
        .unwrap_err()
        .message
        .contains("'name' is a required property"));
        assert!(create(
            json!({"flavor": {"name": "t", "ram": 1, "vcpus": 1, "disk": 1, "description": "d"}}),
            Version::v2(54)
        )
        .is_err());
        assert!(create(
            json!({"flavor": {"name": "t", "ram": 1, "vcpus": 1, "disk": 1, "rxtx_factor": 0}}),
            Version::MIN
        )
        .unwrap_err()
        .message
        .ends_with("0 is less than or equal to the minimum of 0"));
        let rxtx = |x: Value| {
            create(
                json!({"flavor": {"name": "t", "ram": 1, "vcpus": 1, "disk": 1, "rxtx_factor": x}}),
                Version::MIN,
            )
            .map(|f| f.rxtx_factor)
            .map_err(|e| e.message)
        };
        assert_eq!(rxtx(json!("2.5")), Ok(2.5));
        assert_eq!(rxtx(json!(0.5)), Ok(0.5));
        assert!(rxtx(json!("0"))
            .unwrap_err()
            .ends_with("'rxtx_factor' argument must be a float between 0 and 3.40282e+38"));
        assert!(rxtx(json!("1e3"))
            .unwrap_err()
            .contains("does not match '^[0-9]+(\\\\.[0-9]+)?$'"));
        assert!(rxtx(json!(1e39))
            .unwrap_err()
            .ends_with("is greater than the maximum of 3.40282e+38"));
        assert!(rxtx(json!(true))
            .unwrap_err()
            .ends_with("true is not of type 'number', 'string'"));
        let p = create(
            json!({"flavor": {"name": "t", "ram": 1, "vcpus": 1, "disk": 1, "os-flavor-access:is_public": "false", "id": null}}),
            Version::MIN,
        )
        .unwrap();
        assert!(!p.is_public);
        let with_id = |id: Value| {
            create(
                json!({"flavor": {"name": "t", "ram": 1, "vcpus": 1, "disk": 1, "id": id}}),
                Version::MIN,
            )
        };
        assert_eq!(with_id(json!(42)).unwrap().id.as_str(), "42");
        assert_eq!(with_id(json!(1.5)).unwrap().id.as_str(), "1.5");
        assert_eq!(with_id(json!(0)).unwrap().id.as_str().len(), 36);
        assert!(with_id(json!(true))
            .unwrap_err()
            .message
            .ends_with("true is not of type 'string', 'number', 'null'"));
        assert_eq!(
            extra_spec_update(&json!({"a": "b", "c": "d"}), "a")
                .unwrap_err()
                .message,
            "Request body contains too many items"
        );
        assert_eq!(
            extra_spec_update(&json!({"c": "d"}), "a")
                .unwrap_err()
                .message,
            "Request body and URI mismatch"
        );
    }
}
