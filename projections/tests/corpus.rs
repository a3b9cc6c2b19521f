//! Old events must decode forever.
//!
//! `tests/corpus/v1.txt` holds one encoded event of every type (line: `type version
//! hex-payload`). This test decodes every line, checks the type, and checks that the
//! sample built here still encodes to exactly the committed bytes (so an accidental
//! change of a payload shape fails here instead of corrupting logs). To add new event
//! types, append samples and run with `STRATUS_WRITE_CORPUS=1` — existing lines must
//! never change.

use std::collections::{BTreeMap, BTreeSet};

use domain::aggregate::{AggregateEvent, AggregateId};
use domain::cell::{CellEvent, HostMappingEvent};
use domain::flavor::{FlavorEvent, FlavorSpec};
use domain::host::{HostEvent, HostSpec, Ratios, Resources};
use domain::identity::{IdentityEvent, IdentityName, NameKind, RoleId};
use domain::image::{ImageChange, ImageData, ImageEvent, ImageSpec, MemberStatus, Visibility};
use domain::instance::*;
use domain::keypair::{KeyType, KeypairEvent};
use domain::metadef::{
    AssociationSpec, MetadefEvent, NamespaceFields, NewNamespace, NsVisibility, ObjectSpec,
};
use domain::quota::{QuotaEvent, Resource, Usage};
use domain::server_group::{self, ServerGroupEvent};
use domain::*;
use projections::codec;
use uuid::Uuid;

fn ns_fields() -> NamespaceFields {
    NamespaceFields {
        namespace: "OS::Compute::Demo".into(),
        display_name: Some("Demo".into()),
        description: None,
        visibility: NsVisibility::Public,
        protected: false,
        owner: "p1".into(),
    }
}

fn u(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn t(n: i64) -> Timestamp {
    Timestamp(1_700_000_000_000_000 + n)
}

fn flavor() -> FlavorSpec {
    FlavorSpec {
        id: FlavorId::new("1").unwrap(),
        name: "m1.tiny".into(),
        vcpus: 1,
        ram_mb: 512,
        disk_gb: 1,
        ephemeral_gb: 0,
        swap_mb: 0,
        rxtx_factor: 1.0,
        is_public: true,
        description: Some("tiny".into()),
    }
}

fn snap() -> FlavorSnapshot {
    FlavorSnapshot {
        spec: flavor(),
        extra_specs: BTreeMap::from([("hw:cpu_policy".to_string(), "shared".to_string())]),
    }
}

fn spec() -> InstanceSpec {
    InstanceSpec {
        id: InstanceId(u(1)),
        name: "web".into(),
        description: None,
        project_id: "p".into(),
        user_id: "u".into(),
        flavor: snap(),
        image_ref: "cirros".into(),
        boot_from_volume: false,
        metadata: BTreeMap::from([("k".to_string(), "v".to_string())]),
        availability_zone: Some("nova".into()),
        networks: Networks::List(vec![NetworkRequest {
            uuid: Some("net".into()),
            port: None,
            fixed_ip: None,
            tag: None,
        }]),
        key_name: None,
        requested_host: None,
    }
}

fn fault() -> Fault {
    Fault {
        code: 500,
        message: "m".into(),
        details: "d".into(),
        created: t(9),
    }
}

fn host() -> HostName {
    HostName::new("host1").unwrap()
}

fn instance() -> Instance {
    let mut i = instance::evolve(
        None,
        &InstanceEvent::BuildRequested {
            spec: Box::new(spec()),
            op: u(2),
            at: t(0),
        },
    )
    .unwrap();
    i.cell = Some(CellName::cell1());
    i.host = Some(host());
    i.claim = Some(ClaimId(u(3)));
    i.placed = true;
    i
}

fn migration() -> Migration {
    Migration {
        id: MigrationId(u(4)),
        kind: MigrationKind::Resize,
        source_host: host(),
        source_claim: Some(ClaimId(u(3))),
        dest_host: None,
        dest_claim: None,
        requested_host: None,
        old_flavor: snap(),
        new_flavor: snap(),
        old_vm_state: VmState::Active,
        old_power_state: PowerState::Running,
    }
}

fn samples() -> Vec<Event> {
    use InstanceEvent as E;
    let i = |e| Event::Instance(e);
    let mut v = vec![
        i(E::BuildRequested {
            spec: Box::new(spec()),
            op: u(2),
            at: t(0),
        }),
        i(E::Mapped {
            cell: CellName::cell1(),
            host: Some((host(), ClaimId(u(3)))),
            fault: None,
            at: t(1),
        }),
        i(E::Placed {
            snapshot: Box::new(instance()),
            at: t(2),
        }),
        i(E::BuildFailed {
            snapshot: Box::new(instance()),
            at: t(2),
        }),
        i(E::Spawned { at: t(3) }),
        i(E::SpawnFailed {
            fault: fault(),
            at: t(3),
        }),
        i(E::TaskStarted {
            op: u(5),
            action: Action::Pause,
            task: TaskState::Pausing,
            at: t(4),
        }),
        i(E::MigrationStarted {
            op: u(4),
            action: Action::Resize,
            task: TaskState::ResizePrep,
            migration: Box::new(migration()),
            at: t(5),
        }),
        i(E::DestinationScheduled {
            host: host(),
            claim: ClaimId(u(6)),
            task: TaskState::ResizeMigrating,
            at: t(6),
        }),
        i(E::ActionCompleted {
            action: Action::Pause,
            vm_state: VmState::Paused,
            power_state: PowerState::Paused,
            at: t(7),
        }),
        i(E::Shelved {
            offload: true,
            at: t(8),
        }),
        i(E::Offloaded { at: t(9) }),
        i(E::Unshelved { at: t(10) }),
        i(E::ResizeFinished { at: t(11) }),
        i(E::ResizeConfirmed { at: t(12) }),
        i(E::ResizeReverted { at: t(13) }),
        i(E::LiveMigrated { at: t(14) }),
        i(E::Locked {
            by_admin: true,
            reason: Some("r".into()),
            at: t(15),
        }),
        i(E::Unlocked { at: t(16) }),
        i(E::Updated {
            name: Some("n".into()),
            description: Some(None),
            at: t(17),
        }),
        i(E::StateReset {
            vm_state: VmState::Error,
            at: t(18),
        }),
        i(E::Deleted { at: t(19) }),
        i(E::TaskFailed {
            fault: fault(),
            vm_state: Some(VmState::Error),
            at: t(20),
        }),
        i(E::TaskRetried {
            attempt: 2,
            at: t(21),
        }),
        i(E::BootDetailsRecorded {
            details: BootDetails {
                scheduler_hints: BTreeMap::from([(
                    "same_host".to_string(),
                    "[\"48e6a9f6-30af-47e0-bc04-acaed113bb4e\"]".to_string(),
                )]),
                image_properties: BTreeMap::from([(
                    "architecture".to_string(),
                    "\"x86_64\"".to_string(),
                )]),
            },
        }),
        i(E::RebuildStarted {
            op: u(8),
            task: TaskState::Rebuilding,
            rebuild: Box::new(Rebuild {
                image_ref: "fedora".into(),
                name: Some("web-2".into()),
                metadata: Some(BTreeMap::from([("k".to_string(), "w".to_string())])),
                key_name: Some(None),
                admin_pass_set: true,
                preserve_ephemeral: false,
                access_ip_v4: Some(Some("192.0.2.1".into())),
                access_ip_v6: Some(None),
                user_data: Some(Some("IyEvYmluL3NoCg==".into())),
                trusted_image_certificates: Some(Some(vec!["c1".into()])),
                hostname: Some("web-2".into()),
                description: Some(Some("rebuilt".into())),
            }),
            at: t(31),
        }),
        i(E::TaskAdvanced {
            task: TaskState::RebuildBlockDeviceMapping,
            at: t(32),
        }),
        i(E::Rebuilt {
            vm_state: VmState::Stopped,
            power_state: PowerState::Shutdown,
            at: t(33),
        }),
        i(E::CreateExtrasRecorded {
            extras: Box::new(CreateExtras {
                reservation_id: Some("r-3fhv2kd1".into()),
                launch_index: 1,
                access_ip_v4: Some("192.0.2.10".into()),
                access_ip_v6: Some("2001:db8::10".into()),
                user_data: Some("IyEvYmluL3NoCg==".into()),
                config_drive: true,
            }),
        }),
        i(E::MetadataUpdated {
            metadata: BTreeMap::from([("role".to_string(), "db".to_string())]),
            at: t(34),
        }),
        i(E::TagsSet {
            tags: BTreeSet::from(["blue".to_string(), "prod".to_string()]),
            at: t(35),
        }),
        i(E::DiskConfigSet {
            auto: true,
            at: t(36),
        }),
        i(E::SnapshotStarted {
            op: u(36),
            action: Action::CreateBackup,
            task: TaskState::ImageBackup,
            job: SnapshotJob {
                image: ImageId(u(37)),
                backup: Some(BackupRequest {
                    backup_type: "daily".into(),
                    rotation: 2,
                }),
            },
            at: t(36),
        }),
        i(E::UnshelveStarted {
            op: u(36),
            availability_zone: Some(None),
            host: Some(HostName::new("compute-2").unwrap()),
            at: t(36),
        }),
        i(E::CrashDumpTriggered { at: t(37) }),
        i(E::EvacuationStarted {
            op: u(38),
            migration: Box::new(Migration {
                kind: MigrationKind::Evacuation { stop: true },
                requested_host: Some(HostName::new("compute-2").unwrap()),
                ..migration()
            }),
            at: t(38),
        }),
        i(E::Evacuated {
            vm_state: VmState::Stopped,
            power_state: PowerState::Shutdown,
            at: t(39),
        }),
        i(E::AccessUpdated {
            change: domain::instance::AccessChange {
                access_ip_v4: Some(Some("192.0.2.20".into())),
                access_ip_v6: Some(None),
                hostname: Some("web-1".into()),
            },
            at: t(40),
        }),
        i(E::RescueStarted {
            op: Uuid::from_u128(41),
            image_ref: Some("a2459075-d96c-40d5-893e-577ff92e721c".into()),
            at: t(41),
        }),
        i(E::SecurityGroupsRequested {
            groups: vec![domain::SecurityGroupId(Uuid::from_u128(42))],
            at: t(42),
        }),
        i(E::PowerStateChanged {
            power_state: domain::PowerState::Shutdown,
            at: t(43),
        }),
        Event::Flavor(FlavorEvent::Created {
            spec: flavor(),
            at: t(0),
        }),
        Event::Flavor(FlavorEvent::Deleted { at: t(1) }),
        Event::Flavor(FlavorEvent::ExtraSpecsSet {
            specs: BTreeMap::from([("a".to_string(), "b".to_string())]),
        }),
        Event::Flavor(FlavorEvent::ExtraSpecUnset { key: "a".into() }),
        Event::Flavor(FlavorEvent::DescriptionUpdated {
            description: Some("d".into()),
        }),
        Event::Host(HostEvent::Registered {
            spec: HostSpec {
                name: host(),
                cell: CellName::cell1(),
                total: Resources {
                    vcpus: 16,
                    ram_mb: 32768,
                    disk_gb: 500,
                },
                ratios: Ratios::default(),
                availability_zone: "nova".into(),
            },
            at: t(0),
        }),
        Event::Host(HostEvent::Claimed {
            claim: ClaimId(u(3)),
            instance: InstanceId(u(1)),
            resources: Resources {
                vcpus: 1,
                ram_mb: 512,
                disk_gb: 1,
            },
        }),
        Event::Host(HostEvent::Released {
            claim: ClaimId(u(3)),
        }),
        Event::Cell(CellEvent::Created {
            name: CellName::new("cell2").unwrap(),
            created_at: t(22),
        }),
        Event::HostMapping(HostMappingEvent::Mapped {
            host: host(),
            cell: CellName::cell1(),
            at: t(23),
        }),
        Event::Image(ImageEvent::Created {
            spec: ImageSpec {
                id: ImageId(u(7)),
                name: Some("cirros".into()),
                owner: "p".into(),
                visibility: Visibility::Public,
                protected: false,
                disk_format: Some("qcow2".into()),
                container_format: Some("bare".into()),
                min_disk: 1,
                min_ram: 64,
                tags: BTreeSet::from(["t".to_string()]),
                properties: BTreeMap::from([("os_distro".to_string(), "cirros".to_string())]),
            },
            at: t(24),
        }),
        Event::Image(ImageEvent::UploadStarted { at: t(25) }),
        Event::Image(ImageEvent::UploadFinished {
            data: ImageData {
                size: 4096,
                checksum: "c".into(),
                os_hash_algo: "sha512".into(),
                os_hash_value: "h".into(),
            },
            at: t(26),
        }),
        Event::Image(ImageEvent::UploadAborted { at: t(27) }),
        Event::Image(ImageEvent::Updated {
            changes: vec![
                ImageChange::Name(Some("n".into())),
                ImageChange::Visibility(Visibility::Private),
                ImageChange::Protected(true),
                ImageChange::MinDisk(2),
                ImageChange::MinRam(128),
                ImageChange::DiskFormat(Some("raw".into())),
                ImageChange::ContainerFormat(None),
                ImageChange::Tags(BTreeSet::new()),
                ImageChange::AddProperty("a".into(), "b".into()),
                ImageChange::ReplaceProperty("a".into(), "c".into()),
                ImageChange::RemoveProperty("a".into()),
            ],
            at: t(28),
        }),
        Event::Image(ImageEvent::Deleted { at: t(29) }),
        Event::Image(ImageEvent::TagAdded {
            tag: "t2".into(),
            at: t(30),
        }),
        Event::Image(ImageEvent::TagRemoved {
            tag: "t".into(),
            at: t(31),
        }),
        Event::Image(ImageEvent::MemberAdded {
            member: "p2".into(),
            at: t(32),
        }),
        Event::Image(ImageEvent::MemberUpdated {
            member: "p2".into(),
            status: MemberStatus::Accepted,
            at: t(33),
        }),
        Event::Image(ImageEvent::MemberRemoved {
            member: "p2".into(),
            at: t(34),
        }),
        Event::Image(ImageEvent::Deactivated { at: t(35) }),
        Event::Image(ImageEvent::Reactivated { at: t(36) }),
        Event::Image(ImageEvent::VirtualSizeRecorded {
            virtual_size: 117_440_512,
            at: t(37),
        }),
        Event::Image(ImageEvent::Converted {
            disk_format: "raw".into(),
            container_format: "bare".into(),
            at: t(38),
        }),
        Event::Image(ImageEvent::LocationAdded {
            location: domain::image::ImageLocation {
                url: "http://example.com/cirros.img".into(),
                metadata: "{\"foo\":\"bar\"}".into(),
            },
            index: 0,
            data: domain::image::LocationData {
                size: Some(1024),
                checksum: Some("c".into()),
                os_hash_algo: Some("sha512".into()),
                os_hash_value: Some("h".into()),
            },
            status: domain::image::ImageStatus::Active,
            at: t(60),
        }),
        Event::Image(ImageEvent::LocationRemoved {
            index: 1,
            at: t(61),
        }),
        Event::Image(ImageEvent::LocationsReplaced {
            locations: vec![domain::image::ImageLocation {
                url: "http://example.com/cirros.img".into(),
                metadata: "{}".into(),
            }],
            data: domain::image::LocationData::default(),
            status: domain::image::ImageStatus::Active,
            at: t(62),
        }),
        Event::Image(ImageEvent::LocationImportStarted {
            task: "00000000-0000-0000-0000-000000000013".into(),
            location: domain::image::ImageLocation {
                url: "http://example.com/cirros.img".into(),
                metadata: "{}".into(),
            },
            data: domain::image::LocationData {
                size: Some(1024),
                os_hash_algo: Some("sha512".into()),
                ..Default::default()
            },
            status: domain::image::ImageStatus::Importing,
            at: t(63),
        }),
        Event::Image(ImageEvent::LocationImportEnded {
            task: "00000000-0000-0000-0000-000000000013".into(),
            data: domain::image::LocationData::default(),
            status: domain::image::ImageStatus::Queued,
            at: t(64),
        }),
        Event::Task(domain::task::TaskEvent::Created {
            spec: domain::task::TaskSpec {
                id: "00000000-0000-0000-0000-000000000009".into(),
                task_type: "import".into(),
                owner: "p1".into(),
                user_id: "u1".into(),
                request_id: "req-00000000-0000-0000-0000-000000000010".into(),
                input: "{\"import_from\":\"http://example.com/x.qcow2\"}".into(),
            },
            at: t(49),
        }),
        Event::Task(domain::task::TaskEvent::Failed {
            message: "no remote data".into(),
            at: t(50),
        }),
        Event::Image(ImageEvent::StageStarted { at: t(51) }),
        Event::Image(ImageEvent::StageFinished {
            size: 1024,
            at: t(52),
        }),
        Event::Image(ImageEvent::StageAborted { at: t(53) }),
        Event::Image(ImageEvent::ImportStarted {
            import: domain::image::ImportStart {
                task: "00000000-0000-0000-0000-000000000011".into(),
                method: "glance-direct".into(),
                stores: vec!["file".into()],
            },
            at: t(54),
        }),
        Event::Image(ImageEvent::ImportFinished {
            task: "00000000-0000-0000-0000-000000000011".into(),
            data: ImageData {
                size: 1024,
                checksum: "c".into(),
                os_hash_algo: "sha512".into(),
                os_hash_value: "h".into(),
            },
            stores: vec!["file".into()],
            at: t(55),
        }),
        Event::Image(ImageEvent::ImportFailed {
            task: "00000000-0000-0000-0000-000000000012".into(),
            stores: vec!["file".into()],
            at: t(56),
        }),
        Event::Image(ImageEvent::StoreRemoved {
            store: "cheap".into(),
            stores: vec!["fast".into()],
            at: t(59),
        }),
        Event::Task(domain::task::TaskEvent::Started { at: t(57) }),
        Event::Task(domain::task::TaskEvent::Succeeded {
            result: "{\"image_id\":\"00000000-0000-0000-0000-000000000007\"}".into(),
            at: t(58),
        }),
        Event::Metadef(MetadefEvent::NamespaceCreated {
            new: NewNamespace {
                fields: ns_fields(),
                associations: vec![AssociationSpec {
                    name: "OS::Glance::Image".into(),
                    prefix: Some("hw_".into()),
                    properties_target: None,
                }],
                objects: vec![ObjectSpec {
                    name: "CPU".into(),
                    description: Some("cpu".into()),
                    required: vec!["cores".into()],
                    properties: "{}".into(),
                }],
                properties: vec![(
                    "cores".into(),
                    "{\"title\":\"Cores\",\"type\":\"integer\"}".into(),
                )],
                tags: vec!["fast".into()],
            },
            at: t(37),
        }),
        Event::Metadef(MetadefEvent::NamespaceUpdated {
            namespace: "OS::Compute::Demo".into(),
            fields: ns_fields(),
            at: t(38),
        }),
        Event::Metadef(MetadefEvent::NamespaceDeleted {
            namespace: "OS::Compute::Demo".into(),
            at: t(39),
        }),
        Event::Metadef(MetadefEvent::ObjectPut {
            namespace: "OS::Compute::Demo".into(),
            replaces: Some("CPU".into()),
            object: ObjectSpec {
                name: "CPU2".into(),
                description: None,
                required: vec![],
                properties: "{}".into(),
            },
            at: t(40),
        }),
        Event::Metadef(MetadefEvent::ObjectDeleted {
            namespace: "OS::Compute::Demo".into(),
            name: "CPU2".into(),
            at: t(41),
        }),
        Event::Metadef(MetadefEvent::PropertyPut {
            namespace: "OS::Compute::Demo".into(),
            replaces: None,
            name: "threads".into(),
            definition: "{\"title\":\"Threads\",\"type\":\"integer\"}".into(),
            at: t(42),
        }),
        Event::Metadef(MetadefEvent::PropertyDeleted {
            namespace: "OS::Compute::Demo".into(),
            name: "threads".into(),
            at: t(43),
        }),
        Event::Metadef(MetadefEvent::TagsReplaced {
            namespace: "OS::Compute::Demo".into(),
            tags: vec!["a".into(), "b".into()],
            at: t(44),
        }),
        Event::Metadef(MetadefEvent::TagPut {
            namespace: "OS::Compute::Demo".into(),
            replaces: Some("a".into()),
            name: "c".into(),
            at: t(45),
        }),
        Event::Metadef(MetadefEvent::TagDeleted {
            namespace: "OS::Compute::Demo".into(),
            name: "c".into(),
            at: t(46),
        }),
        Event::Metadef(MetadefEvent::AssociationAdded {
            namespace: "OS::Compute::Demo".into(),
            association: AssociationSpec {
                name: "OS::Nova::Flavor".into(),
                prefix: None,
                properties_target: Some("metadata".into()),
            },
            at: t(47),
        }),
        Event::Metadef(MetadefEvent::AssociationRemoved {
            namespace: "OS::Compute::Demo".into(),
            name: "OS::Nova::Flavor".into(),
            at: t(48),
        }),
        Event::Identity(IdentityEvent::NameClaimed {
            kind: NameKind::User,
            domain_id: "default".into(),
            name: IdentityName::new("alice").unwrap(),
            id: "u1".into(),
            at: t(24),
        }),
        Event::Identity(IdentityEvent::ProjectCreated {
            id: ProjectId::new("p1").unwrap(),
            name: IdentityName::new("demo").unwrap(),
            domain_id: "default".into(),
            description: "demo project".into(),
            enabled: true,
            at: t(25),
        }),
        Event::Identity(IdentityEvent::UserCreated {
            id: UserId::new("u1").unwrap(),
            name: IdentityName::new("alice").unwrap(),
            domain_id: "default".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            enabled: true,
            default_project_id: Some(ProjectId::new("p1").unwrap()),
            at: t(26),
        }),
        Event::Identity(IdentityEvent::UserEnabledSet {
            enabled: false,
            at: t(27),
        }),
        Event::Identity(IdentityEvent::UserPasswordChanged {
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$aGFzaDI".into(),
            at: t(28),
        }),
        Event::Identity(IdentityEvent::UserRoleGranted {
            project: ProjectId::new("p1").unwrap(),
            role: RoleId::new("r1").unwrap(),
            at: t(29),
        }),
        Event::Identity(IdentityEvent::RoleCreated {
            id: RoleId::new("r1").unwrap(),
            name: IdentityName::new("member").unwrap(),
            at: t(30),
        }),
        Event::ServerGroup(ServerGroupEvent::Created {
            group: server_group::ServerGroup {
                id: ServerGroupId(Uuid::from_u128(40)),
                name: "g1".into(),
                project_id: "p1".into(),
                user_id: "u1".into(),
                policy: server_group::Policy::AntiAffinity,
                max_server_per_host: Some(2),
                members: BTreeMap::new(),
                created_at: t(40),
            },
        }),
        Event::ServerGroup(ServerGroupEvent::Deleted {
            id: ServerGroupId(Uuid::from_u128(40)),
        }),
        Event::ServerGroup(ServerGroupEvent::MembersAdded {
            id: ServerGroupId(Uuid::from_u128(40)),
            instances: vec![InstanceId(Uuid::from_u128(41))],
        }),
        Event::ServerGroup(ServerGroupEvent::MemberPlaced {
            id: ServerGroupId(Uuid::from_u128(40)),
            instance: InstanceId(Uuid::from_u128(41)),
            host: HostName::new("host1").unwrap(),
        }),
        Event::ServerGroup(ServerGroupEvent::MembersRemoved {
            id: ServerGroupId(Uuid::from_u128(40)),
            instances: vec![InstanceId(Uuid::from_u128(41))],
        }),
        Event::Keypair(KeypairEvent::Created {
            name: "k1".into(),
            key_type: KeyType::Ssh,
            public_key:
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
                    .into(),
            fingerprint: "0f:1e:2d:3c:4b:5a:69:78:87:96:a5:b4:c3:d2:e1:f0".into(),
            at: t(31),
        }),
        Event::Keypair(KeypairEvent::Deleted {
            name: "k1".into(),
            at: t(32),
        }),
        Event::Host(HostEvent::ServiceUpdated {
            disabled: true,
            disabled_reason: Some("maintenance".into()),
            forced_down: false,
            at: t(31),
        }),
        Event::Host(HostEvent::Deleted { at: t(32) }),
        // Quota ledgers and classes (issue 10).
        Event::Quota(QuotaEvent::Reserved {
            instance: InstanceId(u(1)),
            user: "u".into(),
            usage: Usage {
                instances: 1,
                cores: 2,
                ram: 512,
            },
            at: t(40),
        }),
        Event::Quota(QuotaEvent::ResizeReserved {
            instance: InstanceId(u(1)),
            flavor: FlavorId::new("2").unwrap(),
            delta: Usage {
                instances: 0,
                cores: 1,
                ram: 1024,
            },
            at: t(41),
        }),
        Event::Quota(QuotaEvent::ResizeStarted {
            instance: InstanceId(u(1)),
        }),
        Event::Quota(QuotaEvent::Adjusted {
            instance: InstanceId(u(1)),
            usage: Usage {
                instances: 1,
                cores: 3,
                ram: 1536,
            },
        }),
        Event::Quota(QuotaEvent::Released {
            instance: InstanceId(u(1)),
        }),
        Event::Quota(QuotaEvent::LimitsSet {
            user: Some("u".into()),
            limits: BTreeMap::from([(Resource::Instances, 5), (Resource::Ram, -1)]),
            at: t(42),
        }),
        Event::Quota(QuotaEvent::LimitsDeleted {
            user: None,
            at: t(43),
        }),
        Event::Quota(QuotaEvent::ClassSet {
            limits: BTreeMap::from([(Resource::KeyPairs, 7)]),
            at: t(44),
        }),
        Event::Aggregate(AggregateEvent::Created {
            id: AggregateId(1),
            uuid: u(40),
            name: "agg1".into(),
            availability_zone: Some("az1".into()),
            at: t(31),
        }),
        Event::Aggregate(AggregateEvent::Updated {
            id: AggregateId(1),
            name: Some("agg2".into()),
            availability_zone: Some("az2".into()),
            at: t(32),
        }),
        Event::Aggregate(AggregateEvent::Deleted {
            id: AggregateId(1),
            at: t(33),
        }),
        Event::Aggregate(AggregateEvent::HostAdded {
            id: AggregateId(1),
            host: HostName::new("host1").unwrap(),
            at: t(34),
        }),
        Event::Aggregate(AggregateEvent::HostRemoved {
            id: AggregateId(1),
            host: HostName::new("host1").unwrap(),
            at: t(35),
        }),
        Event::Aggregate(AggregateEvent::MetadataSet {
            id: AggregateId(1),
            metadata: BTreeMap::from([
                ("k".to_string(), Some("v".to_string())),
                ("gone".to_string(), None),
            ]),
            at: t(36),
        }),
        Event::ServerGroup(ServerGroupEvent::MembersJoined {
            id: ServerGroupId(Uuid::from_u128(40)),
            instances: vec![InstanceId(Uuid::from_u128(41))],
            at: t(41),
        }),
        Event::ServerGroup(ServerGroupEvent::MemberHeld {
            id: ServerGroupId(Uuid::from_u128(40)),
            instance: InstanceId(Uuid::from_u128(41)),
            host: HostName::new("host2").unwrap(),
        }),
        Event::ServerGroup(ServerGroupEvent::MemberSettled {
            id: ServerGroupId(Uuid::from_u128(40)),
            instance: InstanceId(Uuid::from_u128(41)),
            host: Some(HostName::new("host2").unwrap()),
        }),
        Event::UsageAudit(domain::audit::AuditEvent::PeriodClosed {
            cell: CellName::cell1(),
            period_beginning: t(0),
            period_ending: t(3_600_000_000),
            hosts: vec![domain::audit::HostAudit {
                host: HostName::new("host1").unwrap(),
                instances: vec![InstanceId(Uuid::from_u128(41))],
                errors: 0,
            }],
            at: t(3_600_000_001),
        }),
        Event::Subscription(domain::subscription::SubscriptionEvent::Created(
            domain::subscription::Subscription {
                id: domain::SubscriptionId(Uuid::from_u128(50)),
                url: "http://127.0.0.1:8080/hook".into(),
                event_types: vec!["instance.create".into(), "instance.delete.end".into()],
                project: Some("proj-a".into()),
                secret: "s3cret".into(),
                cursor: 7,
                created_at: t(50),
            },
        )),
        Event::Subscription(domain::subscription::SubscriptionEvent::Deleted {
            id: domain::SubscriptionId(Uuid::from_u128(50)),
            at: t(51),
        }),
        Event::Identity(IdentityEvent::NameReleased {
            id: "u1".into(),
            at: t(60),
        }),
        Event::Identity(IdentityEvent::ProjectUpdated {
            name: Some(IdentityName::new("demo2").unwrap()),
            description: Some("renamed".into()),
            enabled: Some(false),
            at: t(61),
        }),
        Event::Identity(IdentityEvent::ProjectDeleted { at: t(62) }),
        Event::Identity(IdentityEvent::UserUpdated {
            name: Some(IdentityName::new("alice2").unwrap()),
            default_project_id: Some(None),
            extra: BTreeMap::from([
                ("email".to_string(), Some("\"a@example.com\"".to_string())),
                ("description".to_string(), None),
            ]),
            at: t(63),
        }),
        Event::Identity(IdentityEvent::UserDeleted { at: t(64) }),
        Event::Identity(IdentityEvent::RoleDeleted { at: t(65) }),
        Event::Identity(IdentityEvent::UserRoleRevoked {
            project: ProjectId::new("p1").unwrap(),
            role: RoleId::new("r1").unwrap(),
            at: t(66),
        }),
        Event::Identity(IdentityEvent::UserTokenRevoked {
            audit_id: "QUJDREVGR0hJSktMTU5PUA".into(),
            expires_at: t(3_600_000_000),
            at: t(67),
        }),
        Event::Identity(IdentityEvent::AppCredCreated {
            cred: domain::identity::AppCred {
                id: "c1".into(),
                name: IdentityName::new("ci").unwrap(),
                description: Some("for CI".into()),
                project: ProjectId::new("p1").unwrap(),
                roles: vec![RoleId::new("r1").unwrap()],
                secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                expires_at: Some(t(7_200_000_000)),
                unrestricted: false,
                created_at: t(68),
            },
            at: t(68),
        }),
        Event::Identity(IdentityEvent::AppCredDeleted {
            id: "c1".into(),
            at: t(69),
        }),
        Event::Identity(IdentityEvent::Ec2CredCreated {
            cred: domain::identity::Ec2Cred {
                access: "0123456789abcdef0123456789abcdef".into(),
                secret: "fedcba9876543210fedcba9876543210".into(),
                project: ProjectId::new("p1").unwrap(),
                created_at: t(70),
            },
            at: t(70),
        }),
        Event::Identity(IdentityEvent::Ec2CredDeleted {
            access: "0123456789abcdef0123456789abcdef".into(),
            at: t(71),
        }),
        Event::Identity(IdentityEvent::AppCredAccessRulesSet {
            cred: "c1".into(),
            rules: vec![domain::identity::AccessRule {
                id: "0123456789abcdef0123456789abcdef".into(),
                service: "compute".into(),
                path: "/v2.1/servers/*/ips".into(),
                method: "GET".into(),
            }],
            at: t(72),
        }),
        Event::Identity(IdentityEvent::AccessRuleDeleted {
            id: "0123456789abcdef0123456789abcdef".into(),
            at: t(73),
        }),
        Event::Identity(IdentityEvent::UserPasswordSet {
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaDM".into(),
            expires_at: Some(t(90)),
            self_service: true,
            keep_history: 2,
            at: t(72),
        }),
        Event::Identity(IdentityEvent::UserAuthFailed {
            failures: 3,
            at: t(73),
        }),
        Event::Identity(IdentityEvent::UserAuthFailuresCleared { at: t(74) }),
        Event::Identity(IdentityEvent::UserPasswordExpirySet {
            expires_at: Some(t(75)),
            at: t(75),
        }),
        Event::Identity(IdentityEvent::UserOptionsSet {
            options: BTreeMap::from([
                ("ignore_lockout_failure_attempts".to_string(), Some(true)),
                ("lock_password".to_string(), None),
            ]),
            at: t(76),
        }),
    ];
    v.extend(network_samples());
    v.extend(router_samples());
    v.extend(security_group_samples());
    v
}

/// One sample of every security group event (issue 13).
fn security_group_samples() -> Vec<Event> {
    use domain::security_group::*;
    let gid = domain::SecurityGroupId(uuid::Uuid::from_u128(0x61));
    let rid = domain::SecurityGroupRuleId(uuid::Uuid::from_u128(0x62));
    let group = GroupSpec {
        id: gid,
        name: "default".into(),
        description: DEFAULT_DESCRIPTION.into(),
        project_id: "p1".into(),
        stateful: true,
        is_default: true,
        tags: vec!["t".into()],
        created_at: t(86),
        updated_at: t(86),
        revision: 1,
    };
    let rule = Rule {
        id: rid,
        security_group_id: gid,
        project_id: "p1".into(),
        direction: Direction::Ingress,
        ethertype: Ethertype::IPv4,
        protocol: Some("tcp".into()),
        port_range_min: Some(22),
        port_range_max: Some(22),
        remote_ip_prefix: Some(convert_prefix("10.0.0.5/24").unwrap()),
        remote_group_id: None,
        description: "ssh".into(),
        created_at: t(87),
        updated_at: t(87),
        revision: 0,
    };
    let mut egress = rule.clone();
    egress.direction = Direction::Egress;
    egress.ethertype = Ethertype::IPv6;
    egress.protocol = None;
    egress.port_range_min = None;
    egress.port_range_max = None;
    egress.remote_ip_prefix = None;
    egress.remote_group_id = Some(gid);
    vec![
        Event::SecurityGroup(SecurityGroupEvent::Created {
            group: group.clone(),
            rules: vec![egress],
        }),
        Event::SecurityGroup(SecurityGroupEvent::Updated { group }),
        Event::SecurityGroup(SecurityGroupEvent::Deleted { at: t(88) }),
        Event::SecurityGroup(SecurityGroupEvent::RuleCreated { rule }),
        Event::SecurityGroup(SecurityGroupEvent::RuleDeleted { id: rid, at: t(89) }),
    ]
}

/// One sample of every network event (issue 13).
fn network_samples() -> Vec<Event> {
    use domain::network::*;
    use std::net::IpAddr;
    let nid = domain::NetworkId(uuid::Uuid::from_u128(0x51));
    let sid = domain::SubnetId(uuid::Uuid::from_u128(0x52));
    let pid = domain::PortId(uuid::Uuid::from_u128(0x53));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let network = NetworkSpec {
        id: nid,
        name: "private".into(),
        description: "d".into(),
        project_id: "p1".into(),
        admin_state_up: true,
        shared: true,
        external: false,
        mtu: 1500,
        port_security_enabled: true,
        tags: vec!["t".into()],
        created_at: t(80),
        updated_at: t(80),
        revision: 0,
    };
    let subnet = Subnet {
        id: sid,
        network_id: nid,
        name: "s".into(),
        description: String::new(),
        project_id: "p1".into(),
        cidr: Cidr::parse("10.0.0.0/24").unwrap(),
        gateway_ip: Some(ip("10.0.0.1")),
        allocation_pools: vec![Pool::new(ip("10.0.0.2"), ip("10.0.0.254"))],
        enable_dhcp: true,
        dns_nameservers: vec!["8.8.8.8".into()],
        host_routes: vec![HostRoute {
            destination: Cidr::parse("192.168.0.0/16").unwrap(),
            nexthop: ip("10.0.0.9"),
        }],
        ipv6_ra_mode: None,
        ipv6_address_mode: Some("slaac".into()),
        subnetpool_id: Some(uuid::Uuid::from_u128(0x54)),
        tags: vec![],
        created_at: t(81),
        updated_at: t(81),
        revision: 1,
    };
    let port = Port {
        id: pid,
        network_id: nid,
        name: "p".into(),
        description: String::new(),
        project_id: "p1".into(),
        mac_address: "fa:16:3e:00:00:01".into(),
        fixed_ips: vec![FixedIp {
            subnet_id: sid,
            ip_address: ip("10.0.0.2"),
        }],
        device_id: "d".into(),
        device_owner: "compute:nova".into(),
        admin_state_up: true,
        security_groups: vec![uuid::Uuid::from_u128(0x55)],
        port_security_enabled: true,
        allowed_address_pairs: vec![AddressPair {
            ip_address: "10.0.0.99".into(),
            mac_address: "fa:16:3e:00:00:02".into(),
        }],
        binding_host: "h1".into(),
        binding_vnic_type: "normal".into(),
        binding_profile: "{}".into(),
        tags: vec![],
        created_at: t(82),
        updated_at: t(82),
        revision: 2,
    };
    let pool_spec = pool::PoolSpec {
        id: domain::SubnetPoolId(uuid::Uuid::from_u128(0x56)),
        name: "pool".into(),
        description: "d".into(),
        project_id: "p1".into(),
        prefixes: vec![Cidr::parse("10.10.0.0/16").unwrap()],
        default_prefixlen: 24,
        min_prefixlen: 16,
        max_prefixlen: 28,
        shared: true,
        is_default: false,
        default_quota: Some(1024),
        tags: vec![],
        created_at: t(89),
        updated_at: t(89),
        revision: 0,
    };
    vec![
        Event::Network(NetworkEvent::Created {
            network: network.clone(),
        }),
        Event::Network(NetworkEvent::Updated { network }),
        Event::Network(NetworkEvent::Deleted { at: t(83) }),
        Event::Network(NetworkEvent::SubnetCreated {
            subnet: subnet.clone(),
        }),
        Event::Network(NetworkEvent::SubnetUpdated { subnet }),
        Event::Network(NetworkEvent::SubnetDeleted { id: sid, at: t(84) }),
        Event::Network(NetworkEvent::PortCreated { port: port.clone() }),
        Event::Network(NetworkEvent::PortUpdated { port }),
        Event::Network(NetworkEvent::PortDeleted { id: pid, at: t(85) }),
        Event::NetworkQuota(quota::NetQuotaEvent::Reserved {
            resource: quota::NetResource::Port,
            id: pid.0,
            at: t(86),
        }),
        Event::NetworkQuota(quota::NetQuotaEvent::Released {
            id: pid.0,
            at: t(87),
        }),
        Event::NetworkQuota(quota::NetQuotaEvent::LimitsSet {
            limits: BTreeMap::from([
                (quota::NetResource::Network, 5),
                (quota::NetResource::FloatingIp, -1),
            ]),
            at: t(88),
        }),
        Event::NetworkQuota(quota::NetQuotaEvent::LimitsReset { at: t(89) }),
        Event::SubnetPool(pool::PoolEvent::Created {
            pool: pool_spec.clone(),
        }),
        Event::SubnetPool(pool::PoolEvent::Updated { pool: pool_spec }),
        Event::SubnetPool(pool::PoolEvent::Deleted { at: t(90) }),
        Event::SubnetPool(pool::PoolEvent::PrefixAllocated {
            subnet: sid,
            cidr: Cidr::parse("10.10.1.0/24").unwrap(),
            at: t(91),
        }),
        Event::SubnetPool(pool::PoolEvent::PrefixReleased {
            subnet: sid,
            at: t(92),
        }),
    ]
}

/// One sample of every router and floating IP event (issue 13).
fn router_samples() -> Vec<Event> {
    use domain::network::Cidr;
    use domain::router::*;
    let rid = domain::RouterId(uuid::Uuid::from_u128(0x61));
    let nid = domain::NetworkId(uuid::Uuid::from_u128(0x62));
    let router = Router {
        id: rid,
        name: "r".into(),
        description: "d".into(),
        project_id: "p1".into(),
        admin_state_up: true,
        gateway: Some(Gateway {
            network_id: nid,
            enable_snat: true,
            port_id: domain::PortId(uuid::Uuid::from_u128(0x63)),
        }),
        interfaces: vec![Interface {
            port_id: domain::PortId(uuid::Uuid::from_u128(0x64)),
            network_id: domain::NetworkId(uuid::Uuid::from_u128(0x65)),
            subnets: vec![(
                domain::SubnetId(uuid::Uuid::from_u128(0x66)),
                Cidr::parse("10.1.0.0/24").unwrap(),
            )],
        }],
        routes: vec![domain::network::HostRoute {
            destination: Cidr::parse("10.9.0.0/16").unwrap(),
            nexthop: "10.1.0.7".parse().unwrap(),
        }],
        tags: vec!["t".into()],
        created_at: t(90),
        updated_at: t(90),
        revision: 1,
        deleted: false,
    };
    let fip = FloatingIp {
        id: domain::FloatingIpId(uuid::Uuid::from_u128(0x67)),
        project_id: "p1".into(),
        description: String::new(),
        floating_network_id: nid,
        floating_ip_address: "172.24.4.10".parse().unwrap(),
        floating_port_id: domain::PortId(uuid::Uuid::from_u128(0x68)),
        association: Some(Association {
            port_id: domain::PortId(uuid::Uuid::from_u128(0x69)),
            fixed_ip_address: "10.1.0.5".parse().unwrap(),
            router_id: rid,
        }),
        tags: vec![],
        created_at: t(91),
        updated_at: t(91),
        revision: 0,
        deleted: false,
    };
    vec![
        Event::Router(RouterEvent::Created {
            router: router.clone(),
        }),
        Event::Router(RouterEvent::Updated { router }),
        Event::Router(RouterEvent::Deleted { at: t(92) }),
        Event::FloatingIp(FloatingIpEvent::Created {
            floating_ip: fip.clone(),
        }),
        Event::FloatingIp(FloatingIpEvent::Updated { floating_ip: fip }),
        Event::FloatingIp(FloatingIpEvent::Deleted { at: t(93) }),
    ]
}

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/v1.txt");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn corpus_decodes_forever() {
    let samples = samples();
    if std::env::var("STRATUS_WRITE_CORPUS").is_ok() {
        let existing = std::fs::read_to_string(CORPUS).unwrap_or_default();
        let have: BTreeSet<String> = existing
            .lines()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        let mut out = existing.clone();
        for e in &samples {
            let n = codec::encode(e);
            if !have.contains(&n.event_type) {
                out.push_str(&format!(
                    "{} {} {}\n",
                    n.event_type,
                    n.version,
                    hex(&n.payload)
                ));
            }
        }
        std::fs::write(CORPUS, out).unwrap();
    }
    let corpus = std::fs::read_to_string(CORPUS).expect("committed corpus");
    let mut seen = BTreeSet::new();
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split(' ');
        let (ty, ver, payload) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let ver: u16 = ver.parse().unwrap();
        let bytes = unhex(payload);
        let ev =
            codec::decode_parts(ty, ver, &bytes).unwrap_or_else(|e| panic!("{ty} v{ver}: {e}"));
        assert_eq!(ev.event_type(), ty);
        // The current sample of this type still encodes to the committed bytes.
        if let Some(s) = samples
            .iter()
            .find(|s| s.event_type() == ty && s.version() == ver)
        {
            assert_eq!(
                hex(&codec::encode(s).payload),
                payload,
                "{ty} v{ver}: payload shape changed"
            );
            assert_eq!(&ev, s);
        }
        seen.insert(ty.to_string());
    }
    for s in &samples {
        assert!(
            seen.contains(s.event_type()),
            "{} missing from the corpus",
            s.event_type()
        );
    }
}

#[test]
fn unknown_types_and_garbage_are_errors_not_panics() {
    assert!(codec::decode_parts("instance.nope", 1, &[0]).is_err());
    assert!(codec::decode_parts("instance.spawned", 99, &[0]).is_err());
    assert!(codec::decode_parts("instance.spawned", 1, &[0xff, 0xff, 0xff]).is_err());
    // A payload of another type is refused, not misread.
    let n = codec::encode(&Event::Instance(InstanceEvent::Unlocked { at: t(1) }));
    assert!(codec::decode_parts("instance.spawned", 1, &n.payload).is_err());
    // `host.mapped` shares the host prefix but is its own aggregate's event.
    let m = codec::encode(&Event::HostMapping(HostMappingEvent::Mapped {
        host: host(),
        cell: CellName::cell1(),
        at: t(1),
    }));
    assert!(codec::decode_parts("host.released", 1, &m.payload).is_err());
    assert!(matches!(
        codec::decode_parts("host.mapped", 1, &m.payload),
        Ok(Event::HostMapping(_))
    ));
}
