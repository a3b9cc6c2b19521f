//! The pure mapping from one instance event (and the instance as it was just before
//! it) to Nova's versioned notifications.
//!
//! Invariants:
//! - no I/O and no clock: the notification's times are the event's own (`at`, else the
//!   commit's `occurred_at`), so mapping the same log twice gives the same bytes;
//! - a notification's `message_id` is a UUID v5 of the event id and the event type, so
//!   it is stable across re-derivations (restarts, replays, other processes) and unique
//!   (one event never yields two notifications of one type); the one exception, an
//!   audit event's `instance.exists` (one per audited instance), adds the instance id
//!   ([`exists_message_id`]);
//! - the start / end points are Nova's (`nova/compute/manager.py`): a `.start` is sent
//!   when the compute host begins the work (here the event that hands the task to the
//!   host, `instance.task_started` or the destination's claim), an `.end` when the
//!   work's result is recorded; where Stratus records several of Nova's steps in one
//!   event (a resize's prep, a live migration's post steps) the event yields each of
//!   Nova's notifications in Nova's order, with the task_state Nova shows at that step.

use std::collections::BTreeSet;

use domain::instance::{Action, Fault, FlavorSnapshot, Instance, InstanceEvent, MigrationKind};
use domain::states::{PowerState, TaskState, VmState};
use domain::Timestamp;
use eventlog::Metadata;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Namespace of the notifications' message ids (UUID v5), fixed forever: changing it
/// would change every id a receiver has deduplicated on.
pub const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6e6f_7661_2d6e_6f74_6966_7374_7261_7475);

/// The node name used for what Nova's API and conductor services publish.
pub const CONTROL_NODE: &str = "stratus";

/// One versioned notification, as oslo.messaging puts it on the bus (the inner message
/// of its v2 envelope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `INFO` or `ERROR`.
    pub priority: String,
    /// e.g. `instance.pause.start`.
    pub event_type: String,
    /// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), as oslo.messaging writes it.
    pub timestamp: String,
    /// `nova-compute:<host>` or `nova-api:<node>`.
    pub publisher_id: String,
    /// Stable: UUID v5 of the event id and the event type.
    pub message_id: Uuid,
    /// The versioned object (`nova_object.name` / `namespace` / `version` / `data`).
    pub payload: Value,
}

impl Notification {
    /// The owner project of the instance (`tenant_id` of the payload; the request
    /// spec's `project_id` for a compute task's).
    pub fn project(&self) -> &str {
        let d = &self.payload["nova_object.data"];
        d["tenant_id"]
            .as_str()
            .or_else(|| d["request_spec"]["nova_object.data"]["project_id"].as_str())
            .unwrap_or("")
    }
}

/// The message id of the notification `event_type` derived from event `event_id`.
pub fn message_id(event_id: Uuid, event_type: &str) -> Uuid {
    Uuid::new_v5(
        &MESSAGE_ID_NAMESPACE,
        format!("{event_id}/{event_type}").as_bytes(),
    )
}

fn datetime(ts: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ts.0 as i128 * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Payload times: ISO 8601 with microseconds and `Z` (exact, so a subscriber can count
/// seconds of use from them).
pub fn iso(ts: Timestamp) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    datetime(ts).format(f).unwrap_or_default()
}

/// The envelope's time, as oslo.messaging's `str(timeutils.utcnow())`.
pub fn envelope_time(ts: Timestamp) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    datetime(ts).format(f).unwrap_or_default()
}

fn object(name: &str, version: &str, data: Value) -> Value {
    json!({
        "nova_object.name": name,
        "nova_object.namespace": "nova",
        "nova_object.version": version,
        "nova_object.data": data,
    })
}

/// Nova's power state names (`nova.compute.power_state.STATE_MAP`).
fn power_state(p: PowerState) -> &'static str {
    match p {
        PowerState::NoState => "pending",
        PowerState::Running => "running",
        PowerState::Paused => "paused",
        PowerState::Shutdown => "shutdown",
        PowerState::Crashed => "crashed",
        PowerState::Suspended => "suspended",
    }
}

/// Nova's sanitised hostname from a display name (as the API shows it).
fn host_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if c == ' ' || c == '_' {
            out.push('-');
        }
    }
    let out: String = out
        .trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(63)
        .collect();
    if out.is_empty() {
        "server".into()
    } else {
        out
    }
}

/// `FlavorPayload` 1.4.
pub fn flavor_payload(f: &FlavorSnapshot) -> Value {
    object(
        "FlavorPayload",
        "1.4",
        json!({
            "flavorid": f.spec.id.to_string(),
            "name": f.spec.name,
            "root_gb": f.spec.disk_gb,
            "vcpus": f.spec.vcpus,
            "ephemeral_gb": f.spec.ephemeral_gb,
            "memory_mb": f.spec.ram_mb,
            "disabled": false,
            "rxtx_factor": f.spec.rxtx_factor,
            "extra_specs": f.extra_specs,
            "projects": null,
            "swap": f.spec.swap_mb,
            "is_public": f.spec.is_public,
            "vcpu_weight": 0,
            "description": f.spec.description,
        }),
    )
}

/// `ExceptionPayload` 1.1 of a recorded fault.
fn exception_payload(f: &Fault, function: &str) -> Value {
    let exception = if f.message.starts_with("No valid host") {
        "NoValidHost"
    } else if f.message.starts_with("Timed out") {
        "Timeout"
    } else {
        "InstanceFault"
    };
    object(
        "ExceptionPayload",
        "1.1",
        json!({
            "function_name": function,
            "module_name": "stratus",
            "exception": exception,
            "exception_message": f.message,
            "traceback": f.details,
        }),
    )
}

/// The fields of `InstancePayload` 1.9 for `i` (the caller of the commit names the
/// request and the initiator).
fn instance_fields(i: &Instance, meta: &Metadata) -> Map<String, Value> {
    let simple = i.spec.id.0.simple().to_string();
    let t = |ts: Option<Timestamp>| ts.map(iso);
    let data = json!({
        "architecture": "x86_64",
        "availability_zone": i.spec.availability_zone.clone().or_else(|| i.host.as_ref().map(|_| "nova".to_string())),
        "block_devices": [],
        "created_at": iso(i.created_at),
        "deleted_at": if i.deleted { t(i.terminated_at) } else { None },
        "display_name": i.spec.name,
        "display_description": i.spec.description,
        "host": i.host.as_ref().map(|h| h.to_string()),
        "host_name": host_name(&i.spec.name),
        "ip_addresses": [],
        "kernel_id": "",
        "key_name": i.spec.key_name,
        "launched_at": t(i.launched_at),
        "image_uuid": i.spec.image_ref,
        "metadata": i.spec.metadata,
        "locked": i.locked.is_some(),
        "node": i.host.as_ref().map(|h| h.to_string()),
        "os_type": null,
        "progress": 0,
        "ramdisk_id": "",
        "reservation_id": format!("r-{}", &simple[8..16]),
        "state": i.vm_state.as_str(),
        "task_state": i.task_state.map(|t| t.as_str()),
        "power_state": power_state(i.power_state),
        "tenant_id": i.spec.project_id,
        "terminated_at": t(i.terminated_at),
        "auto_disk_config": "MANUAL",
        "flavor": flavor_payload(&i.flavor),
        "updated_at": iso(i.updated_at),
        "user_id": i.spec.user_id,
        "uuid": i.spec.id.to_string(),
        "request_id": meta.correlation_id,
        "action_initiator_user": meta.actor.user,
        "action_initiator_project": meta.actor.project,
        "locked_reason": i.locked.as_ref().and_then(|l| l.reason.clone()),
        "shares": [],
    });
    match data {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Which payload a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `InstanceActionPayload` 1.9.
    Action,
    /// `InstanceCreatePayload` 1.13.
    Create,
    /// `InstanceActionResizePrepPayload` 1.4 (with the new flavor).
    ResizePrep,
    /// `InstanceActionRebuildPayload` 1.10.
    Rebuild,
    /// `InstanceActionSnapshotPayload` 1.10 (with the snapshot's image id).
    Snapshot(Uuid),
    /// `InstanceActionRescuePayload` 1.4 (with the requested rescue image).
    Rescue,
}

/// How one notification's payload differs from the instance it describes.
#[derive(Debug, Default, Clone)]
struct Overrides {
    /// task_state to show (Nova's step), when not the instance's.
    task_state: Option<Option<&'static str>>,
    /// Flavor to show, when not the instance's.
    flavor: Option<FlavorSnapshot>,
    /// Host to show, when not the instance's.
    host: Option<Option<String>>,
}

/// Builds notifications for one event.
struct Builder<'a> {
    event_id: Uuid,
    meta: &'a Metadata,
    /// The server's tags once the event is applied (`tags` of the update payload).
    tags: &'a BTreeSet<String>,
    at: Timestamp,
    out: Vec<Notification>,
}

impl Builder<'_> {
    fn push(&mut self, event_type: &str, priority: &str, publisher: String, payload: Value) {
        self.out.push(Notification {
            priority: priority.into(),
            event_type: event_type.into(),
            timestamp: envelope_time(self.at),
            publisher_id: publisher,
            message_id: message_id(self.event_id, event_type),
            payload,
        });
    }

    fn action(
        &mut self,
        event_type: &str,
        kind: Kind,
        i: &Instance,
        ov: Overrides,
        fault: Option<(&Fault, &str)>,
    ) {
        let mut d = instance_fields(i, self.meta);
        if let Some(t) = ov.task_state {
            d.insert("task_state".into(), json!(t));
        }
        if let Some(f) = &ov.flavor {
            d.insert("flavor".into(), flavor_payload(f));
        }
        if let Some(h) = &ov.host {
            d.insert("host".into(), json!(h));
            d.insert("node".into(), json!(h));
        }
        d.insert(
            "fault".into(),
            fault.map_or(Value::Null, |(f, func)| exception_payload(f, func)),
        );
        let (name, version) = match kind {
            Kind::Action => ("InstanceActionPayload", "1.9"),
            Kind::Create => {
                let simple = i.spec.id.0.simple().to_string();
                d.insert("keypairs".into(), json!([]));
                d.insert("tags".into(), json!([]));
                d.insert("trusted_image_certificates".into(), Value::Null);
                d.insert(
                    "instance_name".into(),
                    json!(format!("instance-{}", &simple[..8])),
                );
                ("InstanceCreatePayload", "1.13")
            }
            Kind::ResizePrep => {
                let new = i
                    .migration
                    .as_ref()
                    .map(|m| m.new_flavor.clone())
                    .unwrap_or_else(|| i.flavor.clone());
                d.insert("new_flavor".into(), flavor_payload(&new));
                ("InstanceActionResizePrepPayload", "1.4")
            }
            Kind::Rebuild => {
                d.insert("trusted_image_certificates".into(), Value::Null);
                ("InstanceActionRebuildPayload", "1.10")
            }
            Kind::Snapshot(image) => {
                d.insert("snapshot_image_id".into(), json!(image.to_string()));
                ("InstanceActionSnapshotPayload", "1.10")
            }
            Kind::Rescue => {
                d.insert("rescue_image_ref".into(), json!(i.rescue_image_ref));
                ("InstanceActionRescuePayload", "1.4")
            }
        };
        let priority = if fault.is_some() { "ERROR" } else { "INFO" };
        let publisher = publisher(
            "nova-compute",
            d.get("host").and_then(|h| h.as_str()).map(str::to_string),
        );
        self.push(
            event_type,
            priority,
            publisher,
            object(name, version, Value::Object(d)),
        );
    }

    /// A notification published by the API service (lock, unlock, a delete without host).
    fn api(&mut self, event_type: &str, i: &Instance, ov: Overrides) {
        self.action(event_type, Kind::Action, i, ov, None);
        if let Some(n) = self.out.last_mut() {
            n.publisher_id = publisher("nova-api", None);
        }
    }

    /// `instance.update` (`InstanceUpdatePayload` 2.1): a state or name change.
    fn update(&mut self, before: &Instance, after: &Instance, service: &str) {
        let mut d = instance_fields(after, self.meta);
        d.insert(
            "audit_period".into(),
            object(
                "AuditPeriodPayload",
                "1.0",
                json!({
                    "audit_period_beginning": iso(hour_start(self.at)),
                    "audit_period_ending": iso(self.at),
                }),
            ),
        );
        d.insert(
            "old_display_name".into(),
            if before.spec.name != after.spec.name {
                json!(before.spec.name)
            } else {
                Value::Null
            },
        );
        d.insert(
            "state_update".into(),
            object(
                "InstanceStateUpdatePayload",
                "1.0",
                json!({
                    "old_state": before.vm_state.as_str(),
                    "state": after.vm_state.as_str(),
                    "old_task_state": before.task_state.map(|t| t.as_str()),
                    "new_task_state": after.task_state.map(|t| t.as_str()),
                }),
            ),
        );
        d.insert("tags".into(), json!(self.tags));
        let host = after.host.as_ref().map(|h| h.to_string());
        self.push(
            "instance.update",
            "INFO",
            publisher(service, host),
            object("InstanceUpdatePayload", "2.1", Value::Object(d)),
        );
    }
}

/// The message id of the `instance.exists` of instance `instance` made from the audit
/// event `event_id` (one audit event yields one per instance, so the instance is part
/// of the name; stable like [`message_id`]).
pub fn exists_message_id(event_id: Uuid, instance: &domain::InstanceId) -> Uuid {
    Uuid::new_v5(
        &MESSAGE_ID_NAMESPACE,
        format!("{event_id}/instance.exists/{instance}").as_bytes(),
    )
}

/// `instance.exists` (`InstanceExistsPayload` 2.1, Nova's `notify_usage_exists` from
/// the `_instance_usage_audit` periodic task) of `i` as it is when the audit period
/// `[begin, end)` is closed (event `event_id`, time `at`), published by the compute
/// `host` that audited it. Version 2.0 dropped `bandwidth`, so there is none.
pub fn exists(
    i: &Instance,
    host: &str,
    (begin, end): (Timestamp, Timestamp),
    event_id: Uuid,
    at: Timestamp,
    meta: &Metadata,
) -> Notification {
    let mut d = instance_fields(i, meta);
    d.insert(
        "audit_period".into(),
        object(
            "AuditPeriodPayload",
            "1.0",
            json!({
                "audit_period_beginning": iso(begin),
                "audit_period_ending": iso(end),
            }),
        ),
    );
    Notification {
        priority: "INFO".into(),
        event_type: "instance.exists".into(),
        timestamp: envelope_time(at),
        publisher_id: format!("nova-compute:{host}"),
        message_id: exists_message_id(event_id, &i.spec.id),
        payload: object("InstanceExistsPayload", "2.1", Value::Object(d)),
    }
}

/// `RequestSpecPayload` 1.1 of a build request. The cell stream knows the image by id
/// only (its metadata lives in the api stream), so the image's other fields are null,
/// and its properties empty (Nova sends only the properties set); no NUMA topology, PCI
/// requests, server group or retries are modelled.
fn request_spec_payload(i: &Instance) -> Value {
    let id = i.spec.id.to_string();
    object(
        "RequestSpecPayload",
        "1.1",
        json!({
            "availability_zone": i.spec.availability_zone,
            "flavor": flavor_payload(&i.flavor),
            "ignore_hosts": null,
            "image": object("ImageMetaPayload", "1.0", json!({
                "checksum": null,
                "container_format": null,
                "created_at": null,
                "direct_url": null,
                "disk_format": null,
                "id": i.spec.image_ref,
                "min_disk": 0,
                "min_ram": 0,
                "name": null,
                "owner": null,
                "properties": object("ImageMetaPropsPayload", "1.19", json!({})),
                "protected": false,
                "size": null,
                "status": null,
                "tags": [],
                "updated_at": null,
                "virtual_size": null,
                "visibility": null,
            })),
            "instance_uuid": id,
            "num_instances": 1,
            "numa_topology": null,
            "pci_requests": object("InstancePCIRequestsPayload", "1.0", json!({
                "instance_uuid": id,
                "requests": [],
            })),
            "project_id": i.spec.project_id,
            "scheduler_hints": {},
            "security_groups": ["default"],
            "force_hosts": i.spec.requested_host.as_ref().map(|h| h.to_string()),
            "force_nodes": null,
            "instance_group": null,
            "requested_destination": null,
            "retry": null,
            "user_id": i.spec.user_id,
        }),
    )
}

impl Builder<'_> {
    /// `instance.exists` for the current audit period (Nova's `notify_usage_exists`
    /// with `current_period=True`, sent by the compute host `host` before it rebuilds,
    /// prepares a resize, reverts one or shelves): the period from the start of the
    /// hour to the event. One per event, so its id is [`message_id`]'s.
    fn exists_now(&mut self, i: &Instance, host: Option<String>) {
        let mut n = exists(
            i,
            host.as_deref().unwrap_or(CONTROL_NODE),
            (hour_start(self.at), self.at),
            self.event_id,
            self.at,
            self.meta,
        );
        n.message_id = message_id(self.event_id, "instance.exists");
        self.out.push(n);
    }

    /// `compute_task.<action>.error` (`ComputeTaskPayload` 1.0, ERROR, from the
    /// conductor): a task of the conductor failed for `i` with its recorded fault.
    fn compute_task_error(&mut self, action: &str, i: &Instance, function: &str) {
        let reason = i
            .fault
            .as_ref()
            .map_or(Value::Null, |f| exception_payload(f, function));
        self.push(
            &format!("compute_task.{action}.error"),
            "ERROR",
            publisher("nova-conductor", None),
            object(
                "ComputeTaskPayload",
                "1.0",
                json!({
                    "instance_uuid": i.spec.id.to_string(),
                    "reason": reason,
                    "request_spec": request_spec_payload(i),
                    "state": i.vm_state.as_str(),
                }),
            ),
        );
    }
}

/// The start of the hour holding `ts` (Nova's default audit period is the hour).
fn hour_start(ts: Timestamp) -> Timestamp {
    Timestamp(ts.0 - ts.0.rem_euclid(3_600_000_000))
}

fn publisher(service: &str, host: Option<String>) -> String {
    format!(
        "{service}:{}",
        host.unwrap_or_else(|| CONTROL_NODE.to_string())
    )
}

/// Nova's notification name of an action that a task_state begins and a completion ends.
fn action_name(a: Action) -> Option<&'static str> {
    Some(match a {
        Action::Pause => "pause",
        Action::Unpause => "unpause",
        Action::Suspend => "suspend",
        Action::Resume => "resume",
        Action::Stop => "power_off",
        Action::Start => "power_on",
        Action::Reboot | Action::RebootHard => "reboot",
        Action::Shelve => "shelve",
        Action::ShelveOffload => "shelve_offload",
        Action::Unshelve => "unshelve",
        Action::RevertResize => "resize_revert",
        Action::Delete | Action::ForceDelete => "delete",
        Action::SoftDelete => "soft_delete",
        Action::Restore => "restore",
        Action::Unrescue => "unrescue",
        _ => return None,
    })
}

/// The time an event records (`None` for the one event without: boot details).
pub fn event_time(ev: &InstanceEvent) -> Option<Timestamp> {
    use InstanceEvent as E;
    Some(match ev {
        E::BuildRequested { at, .. }
        | E::Mapped { at, .. }
        | E::Placed { at, .. }
        | E::BuildFailed { at, .. }
        | E::Spawned { at }
        | E::SpawnFailed { at, .. }
        | E::TaskStarted { at, .. }
        | E::MigrationStarted { at, .. }
        | E::DestinationScheduled { at, .. }
        | E::ActionCompleted { at, .. }
        | E::Shelved { at, .. }
        | E::Offloaded { at }
        | E::Unshelved { at }
        | E::ResizeFinished { at }
        | E::ResizeConfirmed { at }
        | E::ResizeReverted { at }
        | E::LiveMigrated { at }
        | E::Locked { at, .. }
        | E::Unlocked { at }
        | E::Updated { at, .. }
        | E::StateReset { at, .. }
        | E::Deleted { at }
        | E::TaskFailed { at, .. }
        | E::TaskRetried { at, .. }
        | E::RebuildStarted { at, .. }
        | E::TaskAdvanced { at, .. }
        | E::Rebuilt { at, .. }
        | E::MetadataUpdated { at, .. }
        | E::TagsSet { at, .. }
        | E::DiskConfigSet { at, .. }
        | E::SecurityGroupsRequested { at, .. }
        | E::PowerStateChanged { at, .. }
        | E::AccessUpdated { at, .. }
        | E::SnapshotStarted { at, .. }
        | E::UnshelveStarted { at, .. }
        | E::RescueStarted { at, .. }
        | E::EvacuationStarted { at, .. }
        | E::Evacuated { at, .. }
        | E::CrashDumpTriggered { at } => *at,
        E::BootDetailsRecorded { .. } | E::CreateExtrasRecorded { .. } => return None,
    })
}

/// Nova's versioned notifications for `event` (id `event_id`, in a commit with `meta`)
/// applied to `before` (the instance just before it; None before its first event),
/// with `after` the instance once it is applied (`domain::instance::evolve`) and `tags`
/// its tags then (they are not part of the instance: `instance.tags_set`).
///
/// Events of the api stream's build requests (before placement) yield nothing: every
/// notification of an instance comes from its cell stream, whose first event
/// (`instance.placed` / `instance.build_failed`) carries the whole instance.
pub fn notifications(
    before: Option<&Instance>,
    after: Option<&Instance>,
    event_id: Uuid,
    event: &InstanceEvent,
    meta: &Metadata,
    tags: &BTreeSet<String>,
) -> Vec<Notification> {
    use InstanceEvent as E;
    let Some(after) = after else {
        return Vec::new();
    };
    let mut b = Builder {
        event_id,
        meta,
        tags,
        at: event_time(event).unwrap_or(Timestamp(meta.occurred_at)),
        out: Vec::new(),
    };
    let none = Overrides::default;
    let task = |t: Option<&'static str>| Overrides {
        task_state: Some(t),
        ..Overrides::default()
    };
    match event {
        E::Placed { .. } => b.action("instance.create.start", Kind::Create, after, none(), None),
        E::BuildFailed { .. } => {
            // Nova's conductor buries the instance in cell0 (`_bury_in_cell0`):
            // `set_vm_state_and_notify` saves it (building -> error: an instance.update,
            // published as `nova-compute:<the conductor's host>` since `send_update`'s
            // service defaults to compute), then sends compute_task.build_instances.error.
            // No create.start was ever sent.
            let mut building = after.clone();
            building.vm_state = VmState::Building;
            building.task_state = Some(TaskState::Scheduling);
            b.update(&building, after, "nova-compute");
            b.compute_task_error("build_instances", after, "_schedule_instances");
        }
        E::Spawned { .. } => b.action("instance.create.end", Kind::Create, after, none(), None),
        E::SpawnFailed { fault, .. } => {
            let i = before.unwrap_or(after);
            b.action(
                "instance.create.error",
                Kind::Create,
                i,
                none(),
                Some((fault, "_build_and_run_instance")),
            )
        }
        E::TaskStarted { action, .. } => {
            if matches!(action, Action::Shelve | Action::RevertResize) {
                b.exists_now(after, after.host.as_ref().map(|h| h.to_string()));
            }
            if let Some(name) = action_name(*action) {
                b.action(
                    &format!("instance.{name}.start"),
                    Kind::Action,
                    after,
                    none(),
                    None,
                );
            }
        }
        // The snapshot's image id is its operation's (the API creates the image with
        // the request's id).
        E::ActionCompleted {
            action: Action::CreateImage | Action::CreateBackup,
            ..
        } => {
            if let Some(op) = before.and_then(|i| i.op) {
                b.action(
                    "instance.snapshot.end",
                    Kind::Snapshot(op.id),
                    after,
                    none(),
                    None,
                );
            }
        }
        // Nova's compute sends both around the driver's call.
        E::CrashDumpTriggered { .. } => {
            for phase in ["start", "end"] {
                b.action(
                    &format!("instance.trigger_crash_dump.{phase}"),
                    Kind::Action,
                    after,
                    none(),
                    None,
                );
            }
        }
        // Nova's `_snapshot_instance` announces the start once the compute manager
        // took the task (image_snapshot, or image_backup for a backup).
        E::TaskAdvanced {
            task: TaskState::ImageSnapshot,
            ..
        }
        | E::SnapshotStarted {
            task: TaskState::ImageBackup,
            ..
        } => {
            if let Some(op) = after.op {
                b.action(
                    "instance.snapshot.start",
                    Kind::Snapshot(op.id),
                    after,
                    none(),
                    None,
                );
            }
        }
        E::UnshelveStarted { .. } => {
            b.action("instance.unshelve.start", Kind::Action, after, none(), None)
        }
        // Nova's `rescue_instance` sends both with the requested rescue image.
        E::RescueStarted { .. } => {
            b.action("instance.rescue.start", Kind::Rescue, after, none(), None)
        }
        E::ActionCompleted {
            action: Action::Rescue,
            ..
        } => b.action("instance.rescue.end", Kind::Rescue, after, none(), None),
        E::ActionCompleted { action, .. } => {
            if let Some(name) = action_name(*action) {
                b.action(
                    &format!("instance.{name}.end"),
                    Kind::Action,
                    after,
                    none(),
                    None,
                );
            }
        }
        E::Shelved { offload, .. } => {
            let ov = if *offload { task(None) } else { none() };
            b.action("instance.shelve.end", Kind::Action, after, ov, None);
            if *offload {
                b.action(
                    "instance.shelve_offload.start",
                    Kind::Action,
                    after,
                    none(),
                    None,
                );
            }
        }
        E::Offloaded { .. } => {
            let started =
                before.is_some_and(|i| i.task_state == Some(TaskState::ShelvingOffloading));
            if !started {
                // Offloaded at once (no host to act): Nova still sends both.
                let i = before.unwrap_or(after);
                b.action(
                    "instance.shelve_offload.start",
                    Kind::Action,
                    i,
                    task(Some(TaskState::ShelvingOffloading.as_str())),
                    None,
                );
            }
            b.action(
                "instance.shelve_offload.end",
                Kind::Action,
                after,
                none(),
                None,
            );
        }
        E::Unshelved { .. } => b.action("instance.unshelve.end", Kind::Action, after, none(), None),
        E::DestinationScheduled { host, .. } => {
            let Some(before) = before else {
                return b.out;
            };
            let dest = Some(host.to_string());
            match before.task_state {
                Some(TaskState::ResizePrep) => {
                    // prep_resize on the destination, then resize_instance on the source.
                    b.exists_now(before, dest.clone());
                    b.action(
                        "instance.resize_prep.start",
                        Kind::ResizePrep,
                        before,
                        Overrides {
                            host: Some(dest.clone()),
                            ..Overrides::default()
                        },
                        None,
                    );
                    b.action(
                        "instance.resize_prep.end",
                        Kind::ResizePrep,
                        before,
                        Overrides {
                            host: Some(dest),
                            ..Overrides::default()
                        },
                        None,
                    );
                    b.action(
                        "instance.resize.start",
                        Kind::Action,
                        after,
                        task(Some(TaskState::ResizeMigrating.as_str())),
                        None,
                    );
                }
                Some(TaskState::Migrating) => {
                    // pre_live_migration on the destination.
                    for ty in [
                        "instance.live_migration_pre.start",
                        "instance.live_migration_pre.end",
                    ] {
                        b.action(ty, Kind::Action, after, none(), None);
                        if let Some(n) = b.out.last_mut() {
                            n.publisher_id = publisher("nova-compute", Some(host.to_string()));
                        }
                    }
                }
                _ => {}
            }
        }
        E::ResizeFinished { .. } => {
            let Some(before) = before else {
                return b.out;
            };
            b.action(
                "instance.resize.end",
                Kind::Action,
                before,
                task(Some("resize_migrated")),
                None,
            );
            let new_flavor = before.migration.as_ref().map(|m| m.new_flavor.clone());
            b.action(
                "instance.resize_finish.start",
                Kind::Action,
                after,
                Overrides {
                    task_state: Some(Some("resize_finish")),
                    flavor: new_flavor,
                    host: None,
                },
                None,
            );
            b.action(
                "instance.resize_finish.end",
                Kind::Action,
                after,
                none(),
                None,
            );
        }
        E::ResizeConfirmed { .. } => {
            let i = before.unwrap_or(after);
            b.action(
                "instance.resize_confirm.start",
                Kind::Action,
                i,
                none(),
                None,
            );
            b.action(
                "instance.resize_confirm.end",
                Kind::Action,
                after,
                none(),
                None,
            );
        }
        E::ResizeReverted { .. } => b.action(
            "instance.resize_revert.end",
            Kind::Action,
            after,
            none(),
            None,
        ),
        E::LiveMigrated { .. } => {
            let i = before.unwrap_or(after);
            let dest = i
                .migration
                .as_ref()
                .and_then(|m| m.dest_host.as_ref())
                .map(|h| h.to_string());
            let at_dest = || Overrides {
                host: Some(dest.clone()),
                task_state: Some(Some(TaskState::Migrating.as_str())),
                ..Overrides::default()
            };
            b.action(
                "instance.live_migration_post.start",
                Kind::Action,
                i,
                none(),
                None,
            );
            b.action(
                "instance.live_migration_post_dest.start",
                Kind::Action,
                i,
                at_dest(),
                None,
            );
            b.action(
                "instance.live_migration_post_dest.end",
                Kind::Action,
                after,
                none(),
                None,
            );
            b.action(
                "instance.live_migration_post.end",
                Kind::Action,
                i,
                none(),
                None,
            );
        }
        E::Locked { .. } => b.api("instance.lock", after, none()),
        E::Unlocked { .. } => b.api("instance.unlock", after, none()),
        // Metadata and tag changes: Nova's API saves the instance (`instance.save()`
        // sends the update) or calls `send_instance_update_notification` (tags), both
        // as nova-api.
        E::Updated { .. }
        | E::StateReset { .. }
        | E::MetadataUpdated { .. }
        | E::TagsSet { .. } => {
            // A create's tags (2.52) ride in the build request's commit: Nova saves
            // them with the new instance and sends no update for them.
            let at_create = matches!(event, E::TagsSet { .. })
                && before.is_some_and(|i| i.vm_state == VmState::Building);
            if let (Some(before), false) = (before, at_create) {
                b.update(before, after, "nova-api");
            }
        }
        // Nova's power-state sync saves the instance on the compute host
        // (`instance.save()` sends the update as nova-compute).
        E::PowerStateChanged { .. } => {
            if let Some(before) = before {
                b.update(before, after, "nova-compute");
            }
        }
        // Shown by the API only; its command's own events notify.
        E::DiskConfigSet { .. } | E::AccessUpdated { .. } | E::SecurityGroupsRequested { .. } => {}
        E::Deleted { .. } => {
            let i = before.unwrap_or(after);
            if i.task_state == Some(TaskState::Deleting) {
                b.action("instance.delete.end", Kind::Action, after, none(), None);
            } else {
                // Deleted by the API (no host to act): `_local_delete` sends both.
                b.api(
                    "instance.delete.start",
                    i,
                    task(Some(TaskState::Deleting.as_str())),
                );
                b.api("instance.delete.end", after, none());
            }
        }
        E::TaskFailed { fault, .. } => {
            let Some(before) = before else {
                return b.out;
            };
            let action = before.op.map(|o| o.action);
            let err = |func| Some((fault, func));
            match (action, before.task_state) {
                (Some(Action::Reboot | Action::RebootHard), _) => b.action(
                    "instance.reboot.error",
                    Kind::Action,
                    before,
                    none(),
                    err("reboot_instance"),
                ),
                (Some(Action::Resize | Action::Migrate), Some(TaskState::ResizeMigrating)) => b
                    .action(
                        "instance.resize.error",
                        Kind::Action,
                        before,
                        none(),
                        err("resize_instance"),
                    ),
                (Some(Action::Rebuild), _) => b.action(
                    "instance.rebuild.error",
                    Kind::Rebuild,
                    before,
                    none(),
                    err("rebuild_instance"),
                ),
                (Some(Action::LiveMigration), Some(TaskState::Migrating))
                    if before.migration.as_ref().is_some_and(|m| {
                        m.kind == MigrationKind::LiveMigration && m.dest_host.is_some()
                    }) =>
                {
                    b.action(
                        "instance.live_migration_rollback.start",
                        Kind::Action,
                        before,
                        none(),
                        None,
                    );
                    b.action(
                        "instance.live_migration_rollback.end",
                        Kind::Action,
                        after,
                        none(),
                        None,
                    );
                }
                _ => {}
            }
            if before.vm_state != after.vm_state {
                b.update(before, after, "nova-compute");
            }
        }
        E::RebuildStarted { .. } => {
            b.exists_now(after, after.host.as_ref().map(|h| h.to_string()));
            b.action("instance.rebuild.start", Kind::Rebuild, after, none(), None)
        }
        E::Rebuilt { .. } => b.action("instance.rebuild.end", Kind::Rebuild, after, none(), None),
        // Nova's API announces an evacuation (`instance.evacuate`, task rebuilding),
        // published as nova-api; the destination's rebuild has no versioned sample.
        E::EvacuationStarted { .. } => b.api("instance.evacuate", after, none()),
        E::BuildRequested { .. }
        | E::Evacuated { .. }
        | E::Mapped { .. }
        | E::MigrationStarted { .. }
        | E::TaskRetried { .. }
        | E::TaskAdvanced { .. }
        | E::SnapshotStarted { .. }
        | E::BootDetailsRecorded { .. }
        | E::CreateExtrasRecorded { .. } => {}
    }
    b.out
}
