//! The event catalogue: every domain event with its stable type name and version.
//!
//! Invariant: a (type, version) pair, once written, is never reused for a different
//! payload shape. A new shape gets a new version; the old one keeps being decoded and
//! is upcast (see `projections::codec`). The committed corpus under
//! `projections/tests/corpus` (checked by `projections/tests/corpus.rs`) proves it.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateEvent;
use crate::audit::AuditEvent;
use crate::cell::{CellEvent, HostMappingEvent};
use crate::flavor::FlavorEvent;
use crate::host::HostEvent;
use crate::identity::IdentityEvent;
use crate::image::ImageEvent;
use crate::instance::InstanceEvent;
use crate::keypair::KeypairEvent;
use crate::metadef::MetadefEvent;
use crate::network::pool::PoolEvent;
use crate::network::quota::NetQuotaEvent;
use crate::network::NetworkEvent;
use crate::quota::QuotaEvent;
use crate::router::{FloatingIpEvent, RouterEvent};
use crate::security_group::SecurityGroupEvent;
use crate::server_group::ServerGroupEvent;
use crate::subscription::SubscriptionEvent;
use crate::task::TaskEvent;

/// Any domain event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Instance(InstanceEvent),
    Flavor(FlavorEvent),
    Host(HostEvent),
    /// A cell event (api stream).
    Cell(CellEvent),
    /// A host mapping event (api stream).
    HostMapping(HostMappingEvent),
    /// An image event (api stream).
    Image(ImageEvent),
    /// An identity event: project, user, role or name index (api stream).
    Identity(IdentityEvent),
    /// A quota ledger or quota class event (api stream).
    Quota(QuotaEvent),
    /// A server group event (api stream, one subject per project).
    ServerGroup(ServerGroupEvent),
    /// A key pair event (api stream, one subject per user).
    Keypair(KeypairEvent),
    /// A host aggregate event (api stream, one subject for all aggregates).
    Aggregate(AggregateEvent),
    UsageAudit(AuditEvent),
    /// A webhook subscription event (api stream, one subject per subscription).
    Subscription(SubscriptionEvent),
    /// A metadata-definitions event (api stream, one subject for all namespaces).
    Metadef(MetadefEvent),
    /// An image task event (api stream, one subject per task).
    Task(TaskEvent),
    /// A network, subnet or port event (api stream, one subject per network).
    Network(NetworkEvent),
    /// A network quota ledger event (api stream, one subject per project).
    NetworkQuota(NetQuotaEvent),
    /// A subnet pool event (api stream, one subject per pool).
    SubnetPool(PoolEvent),
    /// A router event (api stream, one subject per router).
    Router(RouterEvent),
    /// A floating IP event (api stream, one subject per floating IP).
    FloatingIp(FloatingIpEvent),
    /// A security group or rule event (api stream, one subject per group).
    SecurityGroup(SecurityGroupEvent),
}

impl Event {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::Instance(e) => instance_type(e),
            Event::Flavor(e) => match e {
                FlavorEvent::Created { .. } => "flavor.created",
                FlavorEvent::Deleted { .. } => "flavor.deleted",
                FlavorEvent::ExtraSpecsSet { .. } => "flavor.extra_specs_set",
                FlavorEvent::ExtraSpecUnset { .. } => "flavor.extra_spec_unset",
                FlavorEvent::DescriptionUpdated { .. } => "flavor.description_updated",
                FlavorEvent::AccessAdded { .. } => "flavor.access_added",
                FlavorEvent::AccessRemoved { .. } => "flavor.access_removed",
                FlavorEvent::NameClaimed(_) => "flavor.name_claimed",
                FlavorEvent::NameReleased { .. } => "flavor.name_released",
            },
            Event::Host(e) => match e {
                HostEvent::Registered { .. } => "host.registered",
                HostEvent::Claimed { .. } => "host.claimed",
                HostEvent::Released { .. } => "host.released",
                HostEvent::ServiceUpdated { .. } => "host.service_updated",
                HostEvent::Deleted { .. } => "host.deleted",
            },
            Event::Cell(e) => match e {
                CellEvent::Created { .. } => "cell.created",
            },
            Event::HostMapping(e) => match e {
                HostMappingEvent::Mapped { .. } => "host.mapped",
            },
            Event::Image(e) => match e {
                ImageEvent::Created { .. } => "image.created",
                ImageEvent::UploadStarted { .. } => "image.upload_started",
                ImageEvent::UploadFinished { .. } => "image.upload_finished",
                ImageEvent::UploadAborted { .. } => "image.upload_aborted",
                ImageEvent::Updated { .. } => "image.updated",
                ImageEvent::Deleted { .. } => "image.deleted",
                ImageEvent::TagAdded { .. } => "image.tag_added",
                ImageEvent::TagRemoved { .. } => "image.tag_removed",
                ImageEvent::MemberAdded { .. } => "image.member_added",
                ImageEvent::MemberUpdated { .. } => "image.member_updated",
                ImageEvent::MemberRemoved { .. } => "image.member_removed",
                ImageEvent::Deactivated { .. } => "image.deactivated",
                ImageEvent::Reactivated { .. } => "image.reactivated",
                ImageEvent::StageStarted { .. } => "image.stage_started",
                ImageEvent::StageFinished { .. } => "image.stage_finished",
                ImageEvent::StageAborted { .. } => "image.stage_aborted",
                ImageEvent::ImportStarted { .. } => "image.import_started",
                ImageEvent::ImportFinished { .. } => "image.import_finished",
                ImageEvent::ImportFailed { .. } => "image.import_failed",
                ImageEvent::StoreRemoved { .. } => "image.store_removed",
                ImageEvent::VirtualSizeRecorded { .. } => "image.virtual_size_recorded",
                ImageEvent::Converted { .. } => "image.converted",
                ImageEvent::LocationAdded { .. } => "image.location_added",
                ImageEvent::LocationRemoved { .. } => "image.location_removed",
                ImageEvent::LocationsReplaced { .. } => "image.locations_replaced",
                ImageEvent::LocationImportStarted { .. } => "image.location_import_started",
                ImageEvent::LocationImportEnded { .. } => "image.location_import_ended",
            },
            Event::Identity(e) => e.event_type(),
            Event::Quota(e) => e.event_type(),
            Event::ServerGroup(e) => e.event_type(),
            Event::Keypair(e) => e.event_type(),
            Event::Aggregate(e) => match e {
                AggregateEvent::Created { .. } => "aggregate.created",
                AggregateEvent::Updated { .. } => "aggregate.updated",
                AggregateEvent::Deleted { .. } => "aggregate.deleted",
                AggregateEvent::HostAdded { .. } => "aggregate.host_added",
                AggregateEvent::HostRemoved { .. } => "aggregate.host_removed",
                AggregateEvent::MetadataSet { .. } => "aggregate.metadata_set",
            },
            Event::UsageAudit(e) => match e {
                AuditEvent::PeriodClosed { .. } => "audit.period_closed",
            },
            Event::Subscription(e) => e.event_type(),
            Event::Metadef(e) => e.event_type(),
            Event::Task(e) => e.event_type(),
            Event::Network(e) => e.event_type(),
            Event::NetworkQuota(e) => e.event_type(),
            Event::SubnetPool(e) => e.event_type(),
            Event::Router(e) => e.event_type(),
            Event::FloatingIp(e) => e.event_type(),
            Event::SecurityGroup(e) => e.event_type(),
        }
    }

    /// Current version of this event's payload schema.
    pub fn version(&self) -> u16 {
        1
    }
}

/// Stable type name of an instance event.
pub fn instance_type(e: &InstanceEvent) -> &'static str {
    use InstanceEvent as E;
    match e {
        E::BuildRequested { .. } => "instance.build_requested",
        E::Mapped { .. } => "instance.mapped",
        E::Placed { .. } => "instance.placed",
        E::BuildFailed { .. } => "instance.build_failed",
        E::Spawned { .. } => "instance.spawned",
        E::SpawnFailed { .. } => "instance.spawn_failed",
        E::TaskStarted { .. } => "instance.task_started",
        E::MigrationStarted { .. } => "instance.migration_started",
        E::DestinationScheduled { .. } => "instance.destination_scheduled",
        E::ActionCompleted { .. } => "instance.action_completed",
        E::Shelved { .. } => "instance.shelved",
        E::Offloaded { .. } => "instance.offloaded",
        E::Unshelved { .. } => "instance.unshelved",
        E::ResizeFinished { .. } => "instance.resize_finished",
        E::ResizeConfirmed { .. } => "instance.resize_confirmed",
        E::ResizeReverted { .. } => "instance.resize_reverted",
        E::LiveMigrated { .. } => "instance.live_migrated",
        E::Locked { .. } => "instance.locked",
        E::Unlocked { .. } => "instance.unlocked",
        E::Updated { .. } => "instance.updated",
        E::StateReset { .. } => "instance.state_reset",
        E::Deleted { .. } => "instance.deleted",
        E::TaskFailed { .. } => "instance.task_failed",
        E::TaskRetried { .. } => "instance.task_retried",
        E::BootDetailsRecorded { .. } => "instance.boot_details_recorded",
        E::CreateExtrasRecorded { .. } => "instance.create_extras_recorded",
        E::RebuildStarted { .. } => "instance.rebuild_started",
        E::TaskAdvanced { .. } => "instance.task_advanced",
        E::Rebuilt { .. } => "instance.rebuilt",
        E::MetadataUpdated { .. } => "instance.metadata_updated",
        E::TagsSet { .. } => "instance.tags_set",
        E::DiskConfigSet { .. } => "instance.disk_config_set",
        E::AccessUpdated { .. } => "instance.access_updated",
        E::RescueStarted { .. } => "instance.rescue_started",
        E::SecurityGroupsRequested { .. } => "instance.security_groups_requested",
        E::SnapshotStarted { .. } => "instance.snapshot_started",
        E::UnshelveStarted { .. } => "instance.unshelve_started",
        E::CrashDumpTriggered { .. } => "instance.crash_dump_triggered",
        E::PowerStateChanged { .. } => "instance.power_state_changed",
        E::EvacuationStarted { .. } => "instance.evacuation_started",
        E::Evacuated { .. } => "instance.evacuated",
    }
}
