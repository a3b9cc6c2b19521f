//! Server actions (`POST /v2.1/servers/{id}/action`), each declared once in [`ACTIONS`]:
//! its Nova name (the body's only key), the policy rule and Nova policy name, what it
//! answers, a minimal valid argument, and its argument type, which decodes the argument
//! (serde, then the microversion's rules) and resolves it against the world into the
//! domain's [`InstanceCommand`].
//!
//! Everything else is derived from that table: the handler's dispatch
//! ([`ActionRequest`]), the policy rows of the action route ([`crate::policy::ENDPOINTS`]),
//! docs/POLICY.md (checked by `policy::tests::docs_match_the_table`), the OpenAPI drift
//! test (`services/stratus/tests/openapi.rs`) and the policy matrix test's request bodies.
//! No action's API name is written anywhere else in the API's non-test code (the
//! domain names its operations for its own 409 messages).
//!
//! Adding an action: write its argument type (a serde struct with
//! `#[serde(deny_unknown_fields)]` where Nova's schema has `additionalProperties: false`)
//! and `impl Action` for it, or use [`plain`] when the argument is ignored; add one row
//! to [`ACTIONS`]; document it in docs/openapi/compute.json and docs/POLICY.md (tests
//! say what is missing).
//!
//! Invariants:
//! - A body names exactly one declared action, or it is a 400 before anything runs.
//! - Decoding reads only the body and the microversion; resolving reads the world under
//!   its lock (no await); neither appends, so a refused action changes nothing.

use axum::http::StatusCode;
use domain::instance::{Instance, InstanceCommand};
use domain::VmState;
use projections::Views;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::body::{
    self, check_len, invalid, nullable, present, unexpected, Decode, Flag, FlavorRef,
};
use crate::context::Caller;
use crate::error::ApiError;
use crate::microversion::Version;
use crate::parse;
use crate::policy::Rule::{self, Admin, ProjectManager, ProjectMember};
use crate::view::ViewCtx;

use InstanceCommand as C;

/// Every server action (the one registration list).
pub static ACTIONS: &[ActionDecl] = &[
    plain(
        "os-start",
        ProjectMember,
        "os_compute_api:servers:start",
        || C::Start,
    ),
    plain(
        "os-stop",
        ProjectMember,
        "os_compute_api:servers:stop",
        || C::Stop,
    ),
    plain(
        "pause",
        ProjectMember,
        "os_compute_api:os-pause-server:pause",
        || C::Pause,
    ),
    plain(
        "unpause",
        ProjectMember,
        "os_compute_api:os-pause-server:unpause",
        || C::Unpause,
    ),
    plain(
        "suspend",
        ProjectMember,
        "os_compute_api:os-suspend-server:suspend",
        || C::Suspend,
    ),
    plain(
        "resume",
        ProjectMember,
        "os_compute_api:os-suspend-server:resume",
        || C::Resume,
    ),
    typed::<Reboot>(
        "reboot",
        ProjectMember,
        "os_compute_api:servers:reboot",
        r#"{"type": "SOFT"}"#,
    ),
    typed::<crate::snapshots::Shelve>(
        "shelve",
        ProjectMember,
        "os_compute_api:os-shelve:shelve",
        "null",
    ),
    plain(
        "shelveOffload",
        Admin,
        "os_compute_api:os-shelve:shelve_offload",
        || C::ShelveOffload,
    ),
    typed::<Unshelve>(
        "unshelve",
        ProjectMember,
        "os_compute_api:os-shelve:unshelve",
        "null",
    ),
    typed::<Resize>(
        "resize",
        ProjectMember,
        "os_compute_api:servers:resize",
        r#"{"flavorRef": "2"}"#,
    ),
    plain(
        "confirmResize",
        ProjectMember,
        "os_compute_api:servers:confirm_resize",
        || C::ConfirmResize,
    )
    .replying(Reply::NoContent),
    plain(
        "revertResize",
        ProjectMember,
        "os_compute_api:servers:revert_resize",
        || C::RevertResize,
    ),
    typed::<Migrate>(
        "migrate",
        ProjectManager,
        "os_compute_api:os-migrate-server:migrate",
        "null",
    ),
    typed::<MigrateLive>(
        "os-migrateLive",
        ProjectManager,
        "os_compute_api:os-migrate-server:migrate_live",
        r#"{"host": null, "block_migration": "auto"}"#,
    ),
    typed::<Lock>(
        "lock",
        ProjectMember,
        "os_compute_api:os-lock-server:lock",
        "null",
    ),
    plain(
        "unlock",
        ProjectMember,
        "os_compute_api:os-lock-server:unlock",
        || C::Unlock,
    ),
    typed::<ResetState>(
        "os-resetState",
        Admin,
        "os_compute_api:os-admin-actions:reset_state",
        r#"{"state": "error"}"#,
    ),
    typed::<InjectNetworkInfo>(
        "injectNetworkInfo",
        Admin,
        "os_compute_api:os-admin-actions:inject_network_info",
        "null",
    )
    .replying(Reply::AcceptedWithBody(no_body)),
    typed::<ChangePassword>(
        "changePassword",
        ProjectMember,
        "os_compute_api:os-admin-password",
        r#"{"adminPass": "n3w-Passw0rd"}"#,
    ),
    typed::<Rebuild>(
        "rebuild",
        ProjectMember,
        "os_compute_api:servers:rebuild",
        r#"{"imageRef": "70a599e0-31e7-49b7-b260-868f441e862b"}"#,
    )
    .replying(Reply::AcceptedWithBody(rebuild_reply)),
    typed::<Rescue>(
        "rescue",
        ProjectMember,
        "os_compute_api:os-rescue",
        r#"{"adminPass": "MySecretPass"}"#,
    )
    .replying(Reply::OkWithBody(rescue_reply)),
    plain(
        "unrescue",
        ProjectMember,
        "os_compute_api:os-unrescue",
        || C::Unrescue,
    ),
    typed::<Restore>(
        "restore",
        ProjectMember,
        "os_compute_api:os-deferred-delete:restore",
        "null",
    ),
    plain(
        "forceDelete",
        ProjectMember,
        "os_compute_api:os-deferred-delete:force",
        || C::ForceDelete,
    ),
    typed::<TriggerCrashDump>(
        "trigger_crash_dump",
        ProjectMember,
        "os_compute_api:servers:trigger_crash_dump",
        "null",
    ),
    typed::<ConsoleOutput>(
        "os-getConsoleOutput",
        ProjectMember,
        "os_compute_api:os-console-output",
        r#"{"length": 50}"#,
    )
    .replying(Reply::Read(console_reply)),
    // The remote console actions of 2.1-2.5 (POST /servers/{id}/remote-consoles from
    // 2.6); see crate::consoles.
    typed::<VncConsole>(
        "os-getVNCConsole",
        ProjectMember,
        "os_compute_api:os-remote-consoles",
        r#"{"type": "novnc"}"#,
    )
    .replying(Reply::Read(remote_console_reply)),
    typed::<SpiceConsole>(
        "os-getSPICEConsole",
        ProjectMember,
        "os_compute_api:os-remote-consoles",
        r#"{"type": "spice-html5"}"#,
    )
    .replying(Reply::Read(remote_console_reply)),
    typed::<SerialConsole>(
        "os-getSerialConsole",
        ProjectMember,
        "os_compute_api:os-remote-consoles",
        r#"{"type": "serial"}"#,
    )
    .replying(Reply::Read(remote_console_reply)),
    typed::<RdpConsole>(
        "os-getRDPConsole",
        ProjectMember,
        "os_compute_api:os-remote-consoles",
        r#"{"type": "rdp-html5"}"#,
    )
    .replying(Reply::Read(remote_console_reply)),
    // Security groups on a server: Neutron's, on the server's ports.
    typed::<crate::server_security_groups::SecurityGroupAction>(
        "addSecurityGroup",
        ProjectMember,
        "os_compute_api:os-security-groups:add",
        r#"{"name": "default"}"#,
    ),
    typed::<crate::server_security_groups::SecurityGroupAction>(
        "removeSecurityGroup",
        ProjectMember,
        "os_compute_api:os-security-groups:remove",
        r#"{"name": "default"}"#,
    ),
    // Nova answers 200 (not 202) for backward compatibility: `{"adminPass"}` before
    // 2.14, no body from 2.14.
    typed::<Evacuate>("evacuate", Admin, "os_compute_api:os-evacuate", "{}")
        .replying(Reply::OkWithBody(evacuate_reply)),
    typed::<crate::snapshots::CreateImage>(
        "createImage",
        ProjectMember,
        "os_compute_api:servers:create_image",
        r#"{"name": "snap"}"#,
    )
    .replying(Reply::Image),
    typed::<crate::snapshots::CreateBackup>(
        "createBackup",
        ProjectMember,
        "os_compute_api:os-create-backup",
        r#"{"name": "backup", "backup_type": "daily", "rotation": 1}"#,
    )
    .replying(Reply::Image),
    // Nova's floating IP actions (2.1-2.43), proxied to the network service.
    typed::<crate::floating_ip_proxy::AddFloatingIp>(
        "addFloatingIp",
        ProjectMember,
        "os_compute_api:os-floating-ips:add",
        r#"{"address": "172.24.4.10"}"#,
    ),
    typed::<crate::floating_ip_proxy::RemoveFloatingIp>(
        "removeFloatingIp",
        ProjectMember,
        "os_compute_api:os-floating-ips:remove",
        r#"{"address": "172.24.4.10"}"#,
    ),
];

/// The declaration of action `name`, if there is one.
pub fn find(name: &str) -> Option<&'static ActionDecl> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// What an action answers once its command is applied.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// 202 Accepted, empty body (most actions).
    Accepted,
    /// 204 No Content (`confirmResize`).
    NoContent,
    /// 202 Accepted with a JSON body made from the instance after the command (read
    /// your writes) and what the action's resolve step handed over (e.g. rebuild's
    /// server body with `adminPass`).
    AcceptedWithBody(fn(&Instance, &ViewCtx<'_>, Handover) -> Value),
    /// 200 OK with a JSON body, after the command (`rescue`, which Nova answers 200 with
    /// the `adminPass` for backward compatibility).
    OkWithBody(fn(&Instance, &ViewCtx<'_>, Handover) -> Value),
    /// 200 OK with a JSON body read from the instance: an action that changes nothing
    /// (its [`Prepared::command`] is None), like `os-getConsoleOutput`.
    Read(fn(&Instance, &ViewCtx<'_>, Handover) -> Value),
    /// 202 Accepted for an action that made an image (createImage, createBackup): from
    /// 2.45 `{"image_id"}`, before it a `Location` header (`crate::snapshots::reply`).
    Image,
}

impl Reply {
    /// The status this reply answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Reply::NoContent => StatusCode::NO_CONTENT,
            Reply::Accepted | Reply::AcceptedWithBody(_) | Reply::Image => StatusCode::ACCEPTED,
            Reply::Read(_) | Reply::OkWithBody(_) => StatusCode::OK,
        }
    }
}

/// Fields an action's resolve step hands to its [`Reply::AcceptedWithBody`] (a
/// generated password, say), which only the request knows.
pub type Handover = Map<String, Value>;

/// An action resolved against the world: the command to run and the handover.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The domain command (None: a read-only action, answered by [`Reply::Read`]).
    pub command: Option<InstanceCommand>,
    /// What the reply needs besides the instance.
    pub handover: Handover,
    /// An upsize: the flavor and the quota delta to admit before the command runs.
    pub resize_quota: Option<(domain::FlavorId, domain::quota::Usage)>,
    /// A restore: the instance's user and usage, admitted again before the command
    /// runs (a soft-deleted server holds no quota, as Nova's counts skip it).
    pub restore_quota: Option<(String, domain::quota::Usage)>,
    /// An image record to create (`queued`) before the command: the snapshot it uploads
    /// into (createImage, createBackup, shelve); deleted again if the command is refused.
    pub image: Option<domain::image::ImageSpec>,
    /// A change through the network service (a floating IP association, a port's
    /// security groups), with no instance command.
    pub network: Option<NetworkOp>,
}

/// A server action answered by changing the server's ports or floating IPs.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkOp {
    /// addFloatingIp, removeFloatingIp.
    Floating(crate::floating_ip_proxy::FloatingOp),
    /// addSecurityGroup, removeSecurityGroup.
    SecurityGroups(crate::server_security_groups::SecurityGroupOp),
}

impl Prepared {
    /// A network action: no instance command, the ports or floating IPs changed.
    pub fn network(op: NetworkOp) -> Self {
        Prepared {
            command: None,
            handover: Handover::new(),
            resize_quota: None,
            restore_quota: None,
            image: None,
            network: Some(op),
        }
    }
}

impl From<InstanceCommand> for Prepared {
    fn from(command: InstanceCommand) -> Self {
        Prepared {
            command: Some(command),
            handover: Handover::new(),
            resize_quota: None,
            restore_quota: None,
            image: None,
            network: None,
        }
    }
}

/// What resolving an action may read.
pub struct ActionCx<'a> {
    /// The world, read under its lock.
    pub views: &'a Views,
    /// Who asks.
    pub caller: &'a Caller,
    /// The (visible) instance acted on.
    pub instance: &'a Instance,
    /// The caller's effective quota limits (`metadata_items` bounds a rebuild's
    /// metadata, as Nova's `_check_metadata_properties_quota`).
    pub limits: domain::quota::Limits,
    /// How callers authenticate (its token key also tags console tokens).
    pub auth: &'a crate::AuthMode,
    /// Compute hosts' heartbeats (evacuate needs the source host down).
    pub liveness: &'a engine::liveness::Liveness,
    /// The hypervisor's console logs, when this process runs the driver.
    pub console: Option<&'a crate::ConsoleLogs>,
}

/// An action's argument type: decoding (shape + microversion) and resolution.
pub trait Action: DeserializeOwned + Send + 'static {
    /// Decodes the argument of action `name` at `version`. The default is serde alone;
    /// actions whose schema depends on the microversion check the rest here.
    fn decode(name: &str, arg: &Value, _version: Version) -> Result<Self, ApiError> {
        body::from_value(name, arg)
    }

    /// The command, with references (flavors, hosts, AZs) resolved against the world.
    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError>;
}

/// A decoded argument, type-erased so that one table holds every action.
trait Resolve: Send {
    fn resolve_boxed(self: Box<Self>, cx: &ActionCx<'_>) -> Result<Prepared, ApiError>;
}

impl<A: Action> Resolve for A {
    fn resolve_boxed(self: Box<Self>, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        (*self).resolve(cx)
    }
}

/// Decodes an action's argument (its name, the argument, the microversion).
type DecodeFn = fn(&str, &Value, Version) -> Result<Box<dyn Resolve>, ApiError>;

/// How an action's argument is read.
#[derive(Clone, Copy)]
enum Args {
    /// Ignored (Nova's samples send `null`): the command is fixed.
    Ignored(fn() -> InstanceCommand),
    /// Decoded by an [`Action`] type.
    Typed(DecodeFn),
}

/// One server action, declared once.
#[derive(Clone, Copy)]
pub struct ActionDecl {
    /// Nova's name: the body's only key (`"pause"`, `"os-start"`, ...).
    pub name: &'static str,
    /// Who may call it.
    pub rule: Rule,
    /// Nova's policy name (the one quoted in a 403).
    pub policy: &'static str,
    /// What it answers.
    pub reply: Reply,
    /// A minimal valid argument, JSON text: `{name: example}` is a valid body at the
    /// newest microversion (used by tests).
    pub example: &'static str,
    args: Args,
}

impl std::fmt::Debug for ActionDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionDecl")
            .field("name", &self.name)
            .field("rule", &self.rule)
            .field("policy", &self.policy)
            .field("reply", &self.reply.status())
            .finish()
    }
}

impl ActionDecl {
    /// The same declaration answering `reply`.
    pub const fn replying(self, reply: Reply) -> Self {
        ActionDecl { reply, ..self }
    }

    /// `{name: example}`: a minimal valid body of this action.
    pub fn example_body(&self) -> Value {
        let arg: Value = serde_json::from_str(self.example).expect("examples are JSON");
        let mut body = Map::new();
        body.insert(self.name.to_string(), arg);
        Value::Object(body)
    }
}

/// An action whose argument is ignored and whose command is fixed; answers 202.
pub const fn plain(
    name: &'static str,
    rule: Rule,
    policy: &'static str,
    command: fn() -> InstanceCommand,
) -> ActionDecl {
    ActionDecl {
        name,
        rule,
        policy,
        reply: Reply::Accepted,
        example: "null",
        args: Args::Ignored(command),
    }
}

fn decode_boxed<A: Action>(
    name: &str,
    arg: &Value,
    version: Version,
) -> Result<Box<dyn Resolve>, ApiError> {
    Ok(Box::new(A::decode(name, arg, version)?))
}

/// An action whose argument is decoded by `A`; answers 202.
pub const fn typed<A: Action>(
    name: &'static str,
    rule: Rule,
    policy: &'static str,
    example: &'static str,
) -> ActionDecl {
    ActionDecl {
        name,
        rule,
        policy,
        reply: Reply::Accepted,
        example,
        args: Args::Typed(decode_boxed::<A>),
    }
}

/// A decoded `POST /servers/{id}/action` body: the declaration and its argument.
pub struct ActionRequest {
    /// The action.
    pub decl: &'static ActionDecl,
    args: Decoded,
}

enum Decoded {
    Fixed(fn() -> InstanceCommand),
    Typed(Box<dyn Resolve>),
}

impl std::fmt::Debug for ActionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionRequest")
            .field("action", &self.decl.name)
            .finish_non_exhaustive()
    }
}

impl ActionRequest {
    /// The command and handover, resolved against the world.
    pub fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        match self.args {
            Decoded::Fixed(command) => Ok(command().into()),
            Decoded::Typed(args) => args.resolve_boxed(cx),
        }
    }
}

impl Decode for ActionRequest {
    /// Exactly one declared action key, and its argument decoded by its type.
    fn decode(body: &Value, version: Version) -> Result<Self, ApiError> {
        let obj = match body {
            Value::Object(o) => o,
            Value::Null => return Err(ApiError::bad_request("Malformed request body")),
            other => {
                return Err(invalid(
                    "action",
                    other,
                    &format!("{other} is not of type 'object'"),
                ))
            }
        };
        let mut keys = obj.iter();
        let (key, arg) = match (keys.next(), keys.next()) {
            (Some(one), None) => one,
            (None, _) => {
                return Err(ApiError::bad_request(
                    "Malformed request body: no action given",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "Malformed request body: too many body keys",
                ))
            }
        };
        let decl = find(key)
            .ok_or_else(|| ApiError::bad_request(format!("There is no such action: {key}")))?;
        let args = match decl.args {
            Args::Ignored(command) => Decoded::Fixed(command),
            Args::Typed(decode) => Decoded::Typed(decode(decl.name, arg, version)?),
        };
        Ok(ActionRequest { decl, args })
    }
}

// ------------------------------------------------------------------ argument types

/// `reboot`: `{"type": "SOFT" | "HARD"}` (any case Nova lists).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reboot {
    #[serde(rename = "type")]
    kind: RebootType,
}

/// Nova's accepted spellings, in its schema's order (its 400 lists them).
#[derive(Debug, Clone, Copy, Deserialize)]
enum RebootType {
    #[serde(rename = "HARD")]
    HardUpper,
    #[serde(rename = "Hard")]
    HardTitle,
    #[serde(rename = "hard")]
    HardLower,
    #[serde(rename = "SOFT")]
    SoftUpper,
    #[serde(rename = "Soft")]
    SoftTitle,
    #[serde(rename = "soft")]
    SoftLower,
}

impl Reboot {
    fn hard(&self) -> bool {
        use RebootType::*;
        matches!(self.kind, HardUpper | HardTitle | HardLower)
    }
}

impl Action for Reboot {
    fn resolve(self, _: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        Ok(C::Reboot { hard: self.hard() }.into())
    }
}

/// `unshelve`: from 2.77 `null` or `{"availability_zone": ...}` (null from 2.91, to
/// unpin), from 2.91 also `{"host": ...}` (admin); before 2.77 the argument is ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unshelve {
    #[serde(default, deserialize_with = "present")]
    availability_zone: Option<Option<String>>,
    #[serde(default)]
    host: Option<String>,
}

impl Action for Unshelve {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        if !version.at_least(77) {
            return Ok(Unshelve::default());
        }
        let u: Option<Unshelve> = body::from_value(name, arg)?;
        let u = u.unwrap_or_default();
        if u.host.is_some() && !version.at_least(91) {
            return Err(unexpected(&["host"]));
        }
        match &u.availability_zone {
            Some(None) if !version.at_least(91) => Err(invalid(
                "availability_zone",
                &Value::Null,
                "null is not of type 'string' (got null)",
            )),
            Some(Some(az)) => check_len("availability_zone", az, 1, 255).map(|()| u),
            _ => Ok(u),
        }
    }

    /// Nova's order: the state (a zone or host needs SHELVED_OFFLOADED: the domain's
    /// 409, so nothing else is checked here then), the zone, the host's policy
    /// (`unshelve_to_host`, admin), its existence (400), its zone (409).
    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let i = cx.instance;
        if self.availability_zone.is_none() && self.host.is_none() {
            return Ok(C::Unshelve {
                availability_zone: None,
            }
            .into());
        }
        if i.vm_state != VmState::ShelvedOffloaded {
            return Ok(C::UnshelveTo {
                availability_zone: self.availability_zone,
                host: None,
            }
            .into());
        }
        if let Some(Some(az)) = &self.availability_zone {
            known_az(cx.views, az)?;
        }
        let host = match &self.host {
            None => None,
            Some(h) => {
                if !cx.caller.is_admin {
                    return Err(ApiError::policy(
                        "os_compute_api:os-shelve:unshelve_to_host",
                    ));
                }
                let host = parse::known_host(cx.views, h)?;
                let expected = match &self.availability_zone {
                    Some(az) => az.clone(),
                    None => i.spec.availability_zone.clone(),
                };
                if let Some(az) = expected {
                    if cx.views.host_availability_zone(&host) != az {
                        return Err(ApiError::conflict(format!(
                            "Host \"{h}\" is not in the availability zone \"{az}\"."
                        )));
                    }
                }
                Some(host)
            }
        };
        Ok(C::UnshelveTo {
            availability_zone: self.availability_zone,
            host,
        }
        .into())
    }
}

/// An availability zone some compute host is in (through its aggregates, or the
/// default `nova` for hosts in no zoned aggregate).
fn known_az(views: &Views, az: &str) -> Result<(), ApiError> {
    if views.availability_zones().contains(az) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "The requested availability zone is not available",
        ))
    }
}

/// `resize`: `{"flavorRef": id or URL, "OS-DCF:diskConfig": "AUTO" | "MANUAL"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resize {
    #[serde(rename = "flavorRef")]
    flavor_ref: FlavorRef,
    /// Recorded with the resize (`instance.disk_config_set`).
    #[serde(rename = "OS-DCF:diskConfig", default)]
    disk_config: Option<DiskConfig>,
}

/// Wraps `cmd` so that a given `OS-DCF:diskConfig` is recorded with it, after Nova's
/// check against the image's `auto_disk_config` property.
fn with_disk_config(
    cx: &ActionCx<'_>,
    image_ref: &str,
    disk_config: Option<DiskConfig>,
    cmd: C,
) -> Result<C, ApiError> {
    let Some(d) = disk_config else {
        return Ok(cmd);
    };
    let auto = matches!(d, DiskConfig::Auto);
    parse::check_auto_disk_config(cx.views, image_ref, Some(auto))?;
    Ok(C::WithDiskConfig(Box::new(cmd), auto))
}

/// `OS-DCF:diskConfig`.
#[derive(Debug, Clone, Copy, Deserialize)]
enum DiskConfig {
    #[serde(rename = "AUTO")]
    Auto,
    #[serde(rename = "MANUAL")]
    Manual,
}

impl Action for Resize {
    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let flavor = parse::flavor_snapshot(cx.views, &self.flavor_ref.0, cx.caller)
            .ok_or_else(|| ApiError::bad_request("Unable to locate requested flavor."))?;
        use domain::quota::Usage;
        let delta = Usage::upsize(
            Usage::of_instance(cx.instance),
            Usage::of_flavor(flavor.spec.vcpus, flavor.spec.ram_mb),
        );
        let id = flavor.spec.id.clone();
        let cmd = with_disk_config(
            cx,
            &cx.instance.spec.image_ref,
            self.disk_config,
            C::Resize { flavor },
        )?;
        let mut prepared: Prepared = cmd.into();
        prepared.resize_quota = (!delta.is_zero()).then_some((id, delta));
        Ok(prepared)
    }
}

/// `migrate`: `null`, or from 2.56 `{"host": name or null}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migrate {
    #[serde(default, deserialize_with = "present")]
    host: Option<Option<String>>,
}

impl Action for Migrate {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        let m: Migrate = body::from_value::<Option<Migrate>>(name, arg)?.unwrap_or_default();
        if m.host.is_some() && !version.at_least(56) {
            return Err(unexpected(&["host"]));
        }
        if let Some(Some(h)) = &m.host {
            check_len("host", h, 1, 255)?;
        }
        Ok(m)
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let host = self.host.flatten();
        if host.is_some() && !cx.caller.is_admin {
            return Err(ApiError::policy(
                "os_compute_api:os-migrate-server:migrate:host",
            ));
        }
        let host = host.map(|h| parse::known_host(cx.views, &h)).transpose()?;
        Ok(C::Migrate { host }.into())
    }
}

/// `os-migrateLive`: `host` (required, may be null), `block_migration` (boolean, from
/// 2.25 also `"auto"`), `disk_over_commit` (required before 2.25, gone after), `force`
/// (2.30 to 2.67).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateLive {
    #[serde(deserialize_with = "nullable")]
    host: Option<String>,
    block_migration: BlockMigration,
    #[serde(default)]
    disk_over_commit: Option<Flag>,
    #[serde(default)]
    force: Option<Flag>,
}

/// `block_migration`: a boolean, a boolean string, or (2.25+) `"auto"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum BlockMigration {
    // Checked, not used: the simulated driver has no block migration to choose.
    Bool(#[allow(dead_code)] bool),
    Text(String),
}

impl Action for MigrateLive {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        let m: MigrateLive = body::from_value(name, arg)?;
        let mut extra = Vec::new();
        if m.disk_over_commit.is_some() && version.at_least(25) {
            extra.push("disk_over_commit");
        }
        let force_allowed = version.at_least(30) && !version.at_least(68);
        if m.force.is_some() && !force_allowed {
            extra.push("force");
        }
        if !extra.is_empty() {
            return Err(unexpected(&extra));
        }
        if let BlockMigration::Text(s) = &m.block_migration {
            let auto = version.at_least(25) && s == "auto";
            if !auto && parse::parse_bool(s).is_none() {
                return Err(invalid(
                    "block_migration",
                    &Value::String(s.clone()),
                    "is not valid under any of the given schemas",
                ));
            }
        }
        if !version.at_least(25) && m.disk_over_commit.is_none() {
            return Err(invalid(
                name,
                arg,
                "'disk_over_commit' is a required property",
            ));
        }
        if let Some(h) = &m.host {
            check_len("host", h, 1, 255)?;
        }
        Ok(m)
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        if self.host.is_some() && !cx.caller.is_admin {
            return Err(ApiError::policy(
                "os_compute_api:os-migrate-server:migrate_live:host",
            ));
        }
        let host = self
            .host
            .map(|h| parse::known_host(cx.views, &h))
            .transpose()?;
        Ok(C::LiveMigrate { host }.into())
    }
}

/// `changePassword` (os-admin-password): `{"adminPass": "..."}`. The password goes
/// to the guest only; it is never recorded in the log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    #[serde(rename = "adminPass")]
    admin_pass: String,
}

impl Action for ChangePassword {
    fn resolve(self, _cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        // Nova's schema: a string (admin_password type, no length limits but
        // non-null); the value itself is only for the guest.
        let _ = self.admin_pass;
        Ok(C::ChangePassword.into())
    }
}

/// `rescue`: `null` or `{"adminPass": ..., "rescue_image_ref": uuid}` (Nova's schema,
/// `additionalProperties: false`). The password (given, or generated as Nova's
/// `utils.generate_password`) goes to the guest and the reply only, never to the log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rescue {
    #[serde(rename = "adminPass", default)]
    admin_pass: Option<String>,
    #[serde(default)]
    rescue_image_ref: Option<String>,
}

impl Action for Rescue {
    fn decode(name: &str, arg: &Value, _version: Version) -> Result<Self, ApiError> {
        let r: Rescue = body::from_value::<Option<Rescue>>(name, arg)?.unwrap_or_default();
        if let Some(id) = &r.rescue_image_ref {
            if !parse::uuid_like(id) {
                return Err(invalid(
                    "rescue_image_ref",
                    &Value::String(id.clone()),
                    "is not a 'uuid'",
                ));
            }
        }
        Ok(r)
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        if let Some(id) = &self.rescue_image_ref {
            // Nova's `UnsupportedRescueImage` for an image it cannot fetch.
            parse::usable_image(cx.views, id, cx.caller).map_err(|_| {
                ApiError::bad_request(format!("Requested rescue image '{id}' is not supported"))
            })?;
        }
        let pass = self
            .admin_pass
            .unwrap_or_else(|| crate::servers::admin_pass(cx.instance.id().0));
        let mut prepared: Prepared = C::Rescue {
            image_ref: self.rescue_image_ref,
        }
        .into();
        prepared
            .handover
            .insert("adminPass".into(), Value::String(pass));
        Ok(prepared)
    }
}

/// `restore` (any argument, as Nova's schema-less action): the server comes back and
/// counts against quota again (Nova's `restore` checks the instance quota first).
#[derive(Debug, Clone, Default)]
pub struct Restore;

impl<'de> Deserialize<'de> for Restore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let _ = serde::de::IgnoredAny::deserialize(d)?;
        Ok(Restore)
    }
}

impl Action for Restore {
    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let mut prepared: Prepared = C::Restore.into();
        prepared.restore_quota = Some((
            cx.instance.spec.user_id.clone(),
            domain::quota::Usage::of_instance(cx.instance),
        ));
        Ok(prepared)
    }
}

/// `trigger_crash_dump` (2.17): the argument must be `null`; before 2.17 the action
/// does not exist (Nova's versioned method: 404).
#[derive(Debug, Clone, Default)]
pub struct TriggerCrashDump;

impl<'de> Deserialize<'de> for TriggerCrashDump {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let _ = serde::de::IgnoredAny::deserialize(d)?;
        Ok(TriggerCrashDump)
    }
}

impl Action for TriggerCrashDump {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        if !version.at_least(17) {
            return Err(ApiError::not_found("The resource could not be found."));
        }
        if !arg.is_null() {
            return Err(invalid(name, arg, &format!("{arg} is not of type 'null'")));
        }
        Ok(TriggerCrashDump)
    }

    fn resolve(self, _: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        Ok(C::TriggerCrashDump.into())
    }
}

/// `injectNetworkInfo` (admin): Nova asks the server's host to rewrite the guest's
/// network configuration; the simulated guest reads its ports' addresses directly, so
/// nothing is recorded (Nova records no instance action for it either). Any argument
/// is taken (Nova's schema leaves it open; tempest sends `{}`).
#[derive(Debug, Clone, Default)]
pub struct InjectNetworkInfo;

impl<'de> Deserialize<'de> for InjectNetworkInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let _ = serde::de::IgnoredAny::deserialize(d)?;
        Ok(InjectNetworkInfo)
    }
}

impl Action for InjectNetworkInfo {
    fn decode(_: &str, _: &Value, _: Version) -> Result<Self, ApiError> {
        Ok(InjectNetworkInfo)
    }

    fn resolve(self, _: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        Ok(Prepared {
            command: None,
            handover: Handover::new(),
            resize_quota: None,
            restore_quota: None,
            image: None,
            network: None,
        })
    }
}

/// A 202 with no body (an action that changes nothing: `injectNetworkInfo`).
fn no_body(_: &Instance, _: &ViewCtx<'_>, _: Handover) -> Value {
    Value::Null
}

/// Rescue's 200 body: `{"adminPass": ...}` (Nova's `enable_instance_password`, on by
/// default).
fn rescue_reply(_: &Instance, _: &ViewCtx<'_>, handover: Handover) -> Value {
    Value::Object(handover)
}

/// `evacuate` (admin): rebuild a server of a down host elsewhere. The body by
/// microversion (nova/api/openstack/compute/schemas/evacuate.py): `onSharedStorage`
/// required before 2.14 and refused after; `host` and `adminPass` optional; `force`
/// from 2.29 to 2.67; from 2.95 the server lands stopped. The admin password goes to
/// the reply (before 2.14) and the guest, never to the log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evacuate {
    #[serde(default)]
    host: Option<String>,
    #[serde(rename = "onSharedStorage", default)]
    on_shared_storage: Option<Flag>,
    #[serde(rename = "adminPass", default)]
    admin_pass: Option<String>,
    #[serde(default)]
    force: Option<Flag>,
    /// Before 2.14 the reply carries the password.
    #[serde(skip)]
    reply_pass: bool,
    /// 2.95: land stopped.
    #[serde(skip)]
    stop: bool,
}

impl Action for Evacuate {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        let mut e: Evacuate = body::from_value(name, arg)?;
        if version.at_least(14) {
            if e.on_shared_storage.is_some() {
                return Err(unexpected(&["onSharedStorage"]));
            }
        } else if e.on_shared_storage.is_none() {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute evacuate. Value: {}. 'onSharedStorage' is a required property".replace("{}", &arg.to_string()),
            ));
        }
        let force_allowed = version.at_least(29) && !version.at_least(68);
        if e.force.is_some() && !force_allowed {
            return Err(unexpected(&["force"]));
        }
        if let Some(h) = &e.host {
            check_len("host", h, 1, 255)?;
        }
        if e.force.is_some_and(|f| f.0) && e.host.is_none() {
            return Err(ApiError::bad_request(
                "Can't force to a non-provided destination",
            ));
        }
        if e.on_shared_storage.is_some_and(|f| f.0) && e.admin_pass.is_some() {
            return Err(ApiError::bad_request(
                "admin password can't be changed on existing disk",
            ));
        }
        e.reply_pass = !version.at_least(14);
        e.stop = version.at_least(95);
        Ok(e)
    }

    /// Nova's order: the target host exists (404) and is not the source (400), then
    /// the domain's state check (409) and the source host's liveness (400).
    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let i = cx.instance;
        let host = match &self.host {
            None => None,
            Some(h) => {
                let not_found = || ApiError::not_found(format!("Compute host {h} not found."));
                let name = domain::HostName::new(h).map_err(|_| not_found())?;
                if !compute_host_exists(cx.views, &name) {
                    return Err(not_found());
                }
                Some(name)
            }
        };
        if host.is_some() && host == i.host {
            return Err(ApiError::bad_request(
                "The target host can't be the same one.",
            ));
        }
        let source_up = i
            .host
            .as_ref()
            .is_some_and(|h| compute_service_up(cx.views, cx.liveness, h));
        let mut prepared: Prepared = C::Evacuate {
            host,
            stop: self.stop,
            source_up,
        }
        .into();
        if self.reply_pass {
            // On shared storage the disk is kept, and so is its password: null.
            let shared = self.on_shared_storage.is_some_and(|f| f.0);
            let pass = match self.admin_pass {
                Some(p) => Value::String(p),
                None if shared => Value::Null,
                None => Value::String(crate::servers::admin_pass(i.id().0)),
            };
            prepared.handover.insert("adminPass".into(), pass);
        }
        Ok(prepared)
    }
}

/// Whether `name` is a registered, not deleted compute host (Nova's
/// `service_get_by_compute_host`).
fn compute_host_exists(views: &Views, name: &domain::HostName) -> bool {
    views
        .hosts()
        .values()
        .any(|r| r.state.spec.name == *name && !r.state.service.deleted)
}

/// Nova's `servicegroup_api.service_is_up`: heartbeats recent and not forced down.
fn compute_service_up(
    views: &Views,
    liveness: &engine::liveness::Liveness,
    name: &domain::HostName,
) -> bool {
    let forced_down = views
        .hosts()
        .values()
        .find(|r| r.state.spec.name == *name && !r.state.service.deleted)
        .is_some_and(|r| r.state.service.forced_down);
    !forced_down && liveness.state(name, engine::now().0).schedulable()
}

/// Evacuate's 200 body: `{"adminPass"}` before 2.14, nothing from 2.14 (null: the
/// handler answers 200 without a body).
fn evacuate_reply(_: &Instance, _: &ViewCtx<'_>, handover: Handover) -> Value {
    if handover.is_empty() {
        Value::Null
    } else {
        Value::Object(handover)
    }
}

/// `lock`: `null`, or from 2.73 `{"locked_reason": ...}`; before 2.73 the argument is
/// ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    #[serde(default)]
    locked_reason: Option<String>,
}

impl Action for Lock {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        if !version.at_least(73) {
            return Ok(Lock::default());
        }
        let l: Lock = body::from_value::<Option<Lock>>(name, arg)?.unwrap_or_default();
        if let Some(r) = &l.locked_reason {
            check_len("locked_reason", r, 1, 255)?;
        }
        Ok(l)
    }

    fn resolve(self, _: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        Ok(C::Lock {
            reason: self.locked_reason,
        }
        .into())
    }
}

/// `os-resetState`: `{"state": "active" | "error"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetState {
    state: ResetTo,
}

/// The states an admin may reset to.
#[derive(Debug, Clone, Copy, Deserialize)]
enum ResetTo {
    #[serde(rename = "active")]
    Active,
    #[serde(rename = "error")]
    Error,
}

impl Action for ResetState {
    fn resolve(self, _: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let state = match self.state {
            ResetTo::Active => VmState::Active,
            ResetTo::Error => VmState::Error,
        };
        Ok(C::ResetState { state }.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Decodes the argument of `body` as `A`, as the dispatcher would.
    fn decoded<A: Action>(body: Value, v: Version) -> A {
        let (name, arg) = body.as_object().unwrap().iter().next().unwrap();
        A::decode(name, arg, v).unwrap()
    }

    fn err(body: Value, v: Version) -> String {
        match ActionRequest::decode(&body, v) {
            Ok(r) => panic!("{body} decoded at {v}: {r:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn names_are_unique_and_examples_decode() {
        for (i, a) in ACTIONS.iter().enumerate() {
            assert!(
                ACTIONS[i + 1..].iter().all(|b| b.name != a.name),
                "{} declared twice",
                a.name
            );
            // At the newest version, or at 2.1 for the actions Nova ended (consoles).
            let decodes = |v| ActionRequest::decode(&a.example_body(), v);
            if let Err(e) = decodes(Version::MAX).or_else(|_| decodes(Version::v2(1))) {
                panic!("the example of {} does not decode: {e}", a.name);
            }
        }
    }

    #[test]
    fn bodies() {
        let v = Version::MAX;
        assert!(decoded::<Reboot>(json!({"reboot": {"type": "hard"}}), v).hard());
        assert!(!decoded::<Reboot>(json!({"reboot": {"type": "Soft"}}), v).hard());
        assert_eq!(
            err(json!({"reboot": {"type": "MEDIUM"}}), v),
            "Invalid input for field/attribute type. Value: \"MEDIUM\". is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"
        );
        assert_eq!(
            err(json!({"reboot": {}}), v),
            "Invalid input for field/attribute reboot. Value: {}. 'type' is a required property"
        );
        assert!(err(json!({"reboot": null}), v).contains("is not of type 'object'"));
        assert_eq!(
            err(json!({"pause": null, "unpause": null}), v),
            "Malformed request body: too many body keys"
        );
        assert_eq!(err(json!({"fly": null}), v), "There is no such action: fly");
        assert_eq!(err(json!(null), v), "Malformed request body");
        assert_eq!(
            err(json!({"reboot": {"type": "SOFT", "when": 1}}), v),
            "Additional properties are not allowed ('when' was unexpected)"
        );
        let m = decoded::<MigrateLive>(
            json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
            v,
        );
        assert_eq!(m.host, None);
        assert_eq!(
            err(
                json!({"os-migrateLive": {"host": null, "block_migration": "auto", "force": true}}),
                v
            ),
            "Additional properties are not allowed ('force' was unexpected)"
        );
        assert!(
            err(json!({"os-migrateLive": {"block_migration": "auto"}}), v)
                .contains("'host' is a required property")
        );
        // 2.30: force allowed, "auto" not yet... it is from 2.25; disk_over_commit gone.
        assert!(ActionRequest::decode(
            &json!({"os-migrateLive": {"host": null, "block_migration": "auto", "force": "true"}}),
            Version::v2(30)
        )
        .is_ok());
        assert!(err(
            json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
            Version::v2(24)
        )
        .contains("is not valid under any of the given schemas"));
        assert!(err(
            json!({"os-migrateLive": {"host": null, "block_migration": false}}),
            Version::v2(24)
        )
        .contains("'disk_over_commit' is a required property"));
        assert!(ActionRequest::decode(
            &json!({"os-migrateLive": {"host": null, "block_migration": "false", "disk_over_commit": false}}),
            Version::v2(24)
        )
        .is_ok());
        let l = decoded::<Lock>(json!({"lock": {"locked_reason": "why"}}), v);
        assert_eq!(l.locked_reason.as_deref(), Some("why"));
        // Before 2.73 the lock argument is ignored.
        let l = decoded::<Lock>(json!({"lock": {"locked_reason": "why"}}), Version::v2(72));
        assert_eq!(l.locked_reason, None);
        assert!(err(json!({"lock": {"locked_reason": ""}}), v).ends_with("is too short"));
        assert_eq!(
            err(json!({"os-resetState": {"state": "paused"}}), v),
            "Invalid input for field/attribute state. Value: \"paused\". is not one of ['active', 'error']"
        );
        assert_eq!(
            err(json!({"migrate": {"host": "h"}}), Version::v2(55)),
            "Additional properties are not allowed ('host' was unexpected)"
        );
        assert!(ActionRequest::decode(&json!({"migrate": {"host": "h"}}), Version::v2(56)).is_ok());
        assert!(err(
            json!({"unshelve": {"availability_zone": null}}),
            Version::v2(90)
        )
        .contains("is not of type 'string'"));
        assert!(ActionRequest::decode(
            &json!({"unshelve": {"availability_zone": null}}),
            Version::v2(91)
        )
        .is_ok());
        assert!(ActionRequest::decode(&json!({"unshelve": {"bogus": 1}}), Version::v2(76)).is_ok());
        assert!(err(json!({"resize": {"flavorRef": ""}}), v).contains("too short"));
        assert!(err(
            json!({"resize": {"flavorRef": "1", "OS-DCF:diskConfig": "X"}}),
            v
        )
        .contains("is not one of ['AUTO', 'MANUAL']"));
    }
}

/// `rebuild`: a new image (and optionally name, metadata, password, access addresses,
/// and by microversion description 2.19, key_name 2.54, user_data 2.57 (personality
/// before it), trusted_image_certificates 2.63, hostname 2.90). Answers 202 with the
/// server and its `adminPass`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebuild {
    #[serde(rename = "imageRef")]
    image_ref: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(rename = "adminPass", default)]
    admin_pass: Option<String>,
    #[serde(default)]
    preserve_ephemeral: Option<Flag>,
    #[serde(rename = "accessIPv4", default, deserialize_with = "present")]
    access_ip_v4: Option<Option<String>>,
    #[serde(rename = "accessIPv6", default, deserialize_with = "present")]
    access_ip_v6: Option<Option<String>>,
    /// Recorded with the rebuild (`instance.disk_config_set`).
    #[serde(rename = "OS-DCF:diskConfig", default)]
    disk_config: Option<DiskConfig>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    key_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    user_data: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    trusted_image_certificates: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    hostname: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    personality: Option<Option<Value>>,
}

/// An access address as Nova's `ipv4` / `ipv6` formats accept it (empty clears it).
fn access_ip(field: &str, ip: &Option<String>, v6: bool) -> Result<(), ApiError> {
    let Some(ip) = ip.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let ok = if v6 {
        ip.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        ip.parse::<std::net::Ipv4Addr>().is_ok()
    };
    if ok {
        return Ok(());
    }
    let kind = if v6 { "ipv6" } else { "ipv4" };
    Err(invalid(
        field,
        &Value::String(ip.to_string()),
        &format!("'{ip}' is not a '{kind}'"),
    ))
}

impl Action for Rebuild {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        let r: Rebuild = body::from_value(name, arg)?;
        let gated = [
            ("description", r.description.is_some(), version.at_least(19)),
            ("key_name", r.key_name.is_some(), version.at_least(54)),
            ("user_data", r.user_data.is_some(), version.at_least(57)),
            (
                "personality",
                r.personality.is_some(),
                !version.at_least(57),
            ),
            (
                "trusted_image_certificates",
                r.trusted_image_certificates.is_some(),
                version.at_least(63),
            ),
            ("hostname", r.hostname.is_some(), version.at_least(90)),
        ];
        let extra: Vec<&str> = gated
            .iter()
            .filter(|(_, given, allowed)| *given && !allowed)
            .map(|(key, ..)| *key)
            .collect();
        if !extra.is_empty() {
            return Err(unexpected(&extra));
        }
        check_len("imageRef", &r.image_ref, 1, 255)?;
        if let Some(n) = &r.name {
            check_len("name", n, 1, 255)?;
            if !domain::instance::valid_name(n) {
                return Err(invalid(
                    "name",
                    &Value::String(n.clone()),
                    "is not a valid server name",
                ));
            }
        }
        if let Some(Some(d)) = &r.description {
            check_len("description", d, 0, 255)?;
        }
        if let Some(m) = &r.metadata {
            parse::metadata_items("metadata", m)?;
        }
        if let Some(p) = &r.admin_pass {
            check_len("adminPass", p, 0, 255)?;
        }
        access_ip("accessIPv4", &r.access_ip_v4.clone().flatten(), false)?;
        access_ip("accessIPv6", &r.access_ip_v6.clone().flatten(), true)?;
        if let Some(Some(k)) = &r.key_name {
            check_len("key_name", k, 1, 255)?;
        }
        if let Some(Some(u)) = &r.user_data {
            check_len("user_data", u, 0, 65535)?;
        }
        if let Some(Some(h)) = &r.hostname {
            check_len("hostname", h, 1, 255)?;
        }
        if let Some(p) = &r.personality {
            parse::personality(&p.clone().unwrap_or(Value::Null))?;
        }
        Ok(r)
    }

    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        let id = parse::ref_id(&self.image_ref).to_string();
        if !parse::uuid_like(&id) {
            return Err(ApiError::bad_request("Invalid imageRef provided."));
        }
        let exists = domain::ImageId::parse(&id).is_some_and(|iid| cx.views.image(&iid).is_some());
        let image = parse::usable_image(cx.views, &id, cx.caller).map_err(|e| {
            if exists {
                e
            } else {
                ApiError::bad_request("Cannot find image for rebuild")
            }
        })?;
        let i = cx.instance;
        parse::check_image_fits(image, &i.flavor, i.spec.boot_from_volume)?;
        if let Some(Some(k)) = &self.key_name {
            // The caller's key pair, not the instance owner's (as Nova: users own keys,
            // projects own servers).
            parse::check_key_name(cx.views, &cx.caller.user, k)?;
        }
        let metadata = self
            .metadata
            .as_ref()
            .map(|m| parse::metadata_items("metadata", m))
            .transpose()?;
        if let Some(Some(p)) = &self.personality {
            // Checked, not recorded (the files go to the guest only, as in Nova).
            parse::check_injected_files(&parse::personality(p)?, &cx.limits)?;
        }
        let limit = cx
            .limits
            .get(&domain::quota::Resource::MetadataItems)
            .copied()
            .unwrap_or(domain::quota::Resource::MetadataItems.nova_default());
        if metadata
            .as_ref()
            .is_some_and(|m| limit >= 0 && m.len() as i64 > limit)
        {
            return Err(ApiError::forbidden(format!(
                "Maximum number of metadata items exceeds {limit}"
            )));
        }
        let admin_pass = self
            .admin_pass
            .clone()
            .unwrap_or_else(|| crate::servers::admin_pass(i.id().0));
        let rebuild = domain::instance::Rebuild {
            image_ref: id,
            name: self.name,
            metadata,
            key_name: self.key_name,
            admin_pass_set: true,
            preserve_ephemeral: self.preserve_ephemeral.is_some_and(|f| f.0),
            access_ip_v4: self.access_ip_v4,
            access_ip_v6: self.access_ip_v6,
            user_data: self.user_data,
            trusted_image_certificates: self.trusted_image_certificates,
            hostname: self.hostname.flatten(),
            description: self.description,
        };
        let mut handover = Handover::new();
        handover.insert("adminPass".into(), Value::String(admin_pass));
        let image_ref = rebuild.image_ref.clone();
        let command = with_disk_config(
            cx,
            &image_ref,
            self.disk_config,
            C::Rebuild(Box::new(rebuild)),
        )?;
        Ok(Prepared {
            command: Some(command),
            handover,
            resize_quota: None,
            restore_quota: None,
            image: None,
            network: None,
        })
    }
}

/// Rebuild's 202 body: the server as Nova's rebuild view shows it (the update view's
/// fields, which grow to the full server at 2.75), its `adminPass`, from 2.54 its
/// `key_name`, and from 2.57 its `user_data` (in place of `OS-EXT-SRV-ATTR:user_data`).
fn rebuild_reply(i: &Instance, cx: &ViewCtx<'_>, handover: Handover) -> Value {
    let mut server = crate::view::server_view(i, cx, crate::view::ServerBody::Update);
    if let Some(pass) = handover.get("adminPass") {
        server["adminPass"] = pass.clone();
    }
    if cx.version.at_least(54) {
        server["key_name"] = serde_json::json!(i.spec.key_name);
    }
    if cx.version.at_least(57) {
        // Shown as `user_data` instead (Nova's rebuild view leaves the attribute out).
        if let Some(obj) = server.as_object_mut() {
            obj.remove("OS-EXT-SRV-ATTR:user_data");
        }
        let extras = cx.views.instances().get(&i.id()).map(|r| &r.extras);
        server["user_data"] = serde_json::json!(extras.and_then(|e| e.user_data.clone()));
    }
    serde_json::json!({ "server": server })
}

/// `os-getConsoleOutput`: `{"length": N}` (an integer of at least -1, its decimal
/// text, or null; -1 and null mean the whole log).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleOutput {
    /// Last lines wanted (None: all).
    #[serde(default, deserialize_with = "console_length")]
    length: Option<usize>,
}

/// Nova's schema of `length`: `type: [integer, string, null]`, `pattern: ^-?[0-9]+$`,
/// `minimum: -1`.
fn console_length<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    use serde::de::Error;
    let v = Value::deserialize(d)?;
    let n: i64 = match &v {
        Value::Null => return Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(n) if n < -1 => {
                return Err(D::Error::custom(format!(
                    "{n} is less than the minimum of -1"
                )))
            }
            Some(n) => n,
            None => {
                return Err(D::Error::custom(format!(
                    "{v} is not of type 'integer', 'string', 'null'"
                )))
            }
        },
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(D::Error::custom(format!(
                    "'{s}' does not match '^-?[0-9]+$'"
                )));
            }
            s.parse().unwrap_or(i64::MAX)
        }
        _ => {
            return Err(D::Error::custom(format!(
                "{v} is not of type 'integer', 'string', 'null'"
            )))
        }
    };
    Ok(usize::try_from(n).ok())
}

impl Action for ConsoleOutput {
    /// Nova's `check_instance_host`: a server that has no host yet is not ready (409).
    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        if cx.instance.host.is_none() {
            return Err(ApiError::conflict(format!(
                "Instance {} is not ready",
                cx.instance.id()
            )));
        }
        let logged = cx.console.and_then(|c| (c.0)(cx.instance.id()));
        let output = match logged {
            Some(log) => tail_console(&log, self.length),
            None => domain::instance::console::output(cx.instance, self.length),
        };
        let mut handover = Handover::new();
        handover.insert("output".into(), Value::String(output));
        Ok(Prepared {
            command: None,
            handover,
            resize_quota: None,
            restore_quota: None,
            image: None,
            network: None,
        })
    }
}

/// A console log as Nova answers it: its last `length` lines (the compute manager's
/// `_tail_log`: all when None, nothing for 0), then without the control characters the
/// API strips (`[\x00-\x08\x0B-\x1F]`: tab and newline stay, carriage returns go).
fn tail_console(log: &str, length: Option<usize>) -> String {
    let tail = match length {
        None => log.to_string(),
        Some(0) => String::new(),
        Some(n) => {
            let lines: Vec<&str> = log.split('\n').collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
    };
    tail.chars()
        .filter(|c| !matches!(*c as u32, 0x00..=0x08 | 0x0B..=0x1F))
        .collect()
}

#[cfg(test)]
mod console_tests {
    #[test]
    fn a_console_log_is_tailed_then_stripped_of_control_characters() {
        let log = "one\r\ntwo\x1b[0m\nthree\tend";
        assert_eq!(super::tail_console(log, None), "one\ntwo[0m\nthree\tend");
        assert_eq!(super::tail_console(log, Some(2)), "two[0m\nthree\tend");
        assert_eq!(super::tail_console(log, Some(0)), "");
        assert_eq!(super::tail_console(log, Some(9)), "one\ntwo[0m\nthree\tend");
    }
}

/// `{"output": "..."}`: the console text resolved from the instance.
fn console_reply(_: &Instance, _: &ViewCtx<'_>, handover: Handover) -> Value {
    let mut body = Map::new();
    body.insert(
        "output".into(),
        handover
            .get("output")
            .cloned()
            .unwrap_or_else(|| Value::String(String::new())),
    );
    Value::Object(body)
}

/// `{"type": ...}` of a console action, checked against the action's allowed types
/// (Nova's per-action schema).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleType {
    #[serde(rename = "type")]
    console_type: String,
}

fn console_type(name: &str, arg: &Value, allowed: &[&str]) -> Result<ConsoleType, ApiError> {
    let t: ConsoleType = body::from_value(name, arg)?;
    if !allowed.contains(&t.console_type.as_str()) {
        let list = allowed
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(invalid(
            "type",
            &Value::String(t.console_type),
            &format!("is not one of [{list}]"),
        ));
    }
    Ok(t)
}

/// The console action's reply: `{"console": {"type", "url"}}`.
fn console_prepared(
    cx: &ActionCx<'_>,
    protocol: &str,
    t: ConsoleType,
) -> Result<Prepared, ApiError> {
    let url = crate::consoles::action_url(cx.auth, cx.instance, protocol, &t.console_type)?;
    let mut handover = Handover::new();
    handover.insert(
        "console".into(),
        serde_json::json!({"type": t.console_type, "url": url}),
    );
    Ok(Prepared {
        command: None,
        handover,
        resize_quota: None,
        restore_quota: None,
        image: None,
        network: None,
    })
}

fn remote_console_reply(_: &Instance, _: &ViewCtx<'_>, mut handover: Handover) -> Value {
    let mut body = Map::new();
    body.insert(
        "console".into(),
        handover.remove("console").unwrap_or(Value::Null),
    );
    Value::Object(body)
}

/// The console actions are Nova's versioned methods of 2.1-2.5: from 2.6 (when
/// `POST /servers/{id}/remote-consoles` replaced them) no method matches, which Nova
/// answers 404 before it looks at the body.
fn before_remote_consoles(version: Version) -> Result<(), ApiError> {
    if version.at_least(6) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    Ok(())
}

/// `os-getVNCConsole` (2.1-2.5): `novnc` (or `xvpvnc`, which Nova no longer serves).
#[derive(Debug, Clone, Deserialize)]
pub struct VncConsole(ConsoleType);

impl Action for VncConsole {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        before_remote_consoles(version)?;
        console_type(name, arg, &["novnc", "xvpvnc"]).map(VncConsole)
    }
    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        console_prepared(cx, "vnc", self.0)
    }
}

/// `os-getSPICEConsole` (2.1-2.5): `spice-html5`.
#[derive(Debug, Clone, Deserialize)]
pub struct SpiceConsole(ConsoleType);

impl Action for SpiceConsole {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        before_remote_consoles(version)?;
        console_type(name, arg, &["spice-html5"]).map(SpiceConsole)
    }
    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        console_prepared(cx, "spice", self.0)
    }
}

/// `os-getSerialConsole` (2.1-2.5): `serial`.
#[derive(Debug, Clone, Deserialize)]
pub struct SerialConsole(ConsoleType);

impl Action for SerialConsole {
    fn decode(name: &str, arg: &Value, version: Version) -> Result<Self, ApiError> {
        before_remote_consoles(version)?;
        console_type(name, arg, &["serial"]).map(SerialConsole)
    }
    fn resolve(self, cx: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        console_prepared(cx, "serial", self.0)
    }
}

/// `os-getRDPConsole`: removed with the Hyper-V driver; Nova's schema takes any body
/// and the handler answers a bare 400.
#[derive(Debug, Clone, Deserialize)]
pub struct RdpConsole;

impl Action for RdpConsole {
    fn decode(_: &str, _: &Value, version: Version) -> Result<Self, ApiError> {
        before_remote_consoles(version)?;
        Ok(RdpConsole)
    }
    fn resolve(self, _: &ActionCx<'_>) -> Result<Prepared, ApiError> {
        Err(ApiError::bad_request(
            "The server could not comply with the request since it is either malformed or \
             otherwise incorrect.",
        ))
    }
}
