//! A scenario driver: the instance's commits as `decide` really produces them, on the
//! api subject until placement and on its cell subject after, folded by the notifier's
//! [`CellFold`] exactly as the reactor does.
#![allow(dead_code)]

use std::collections::BTreeMap;

use domain::flavor::FlavorSpec;
use domain::instance::{
    decide, evolve, BootDetails, Config, FlavorSnapshot, Instance, InstanceCommand, InstanceEvent,
    InstanceSpec, Networks,
};
use domain::{CellName, ClaimId, Ctx, Event, FlavorId, HostName, InstanceId, TaskState, Timestamp};
use eventlog::{Actor, Commit, Metadata, StoredEvent, StreamName, Subject, SubjectKind};
use notifier::{CellFold, Notification};
use projections::codec;
use uuid::Uuid;

pub const PROJECT: &str = "6f70656e737461636b20342065766572";

pub fn host(name: &str) -> HostName {
    HostName::new(name).unwrap()
}

pub fn flavor(id: &str, vcpus: u32, ram_mb: u64, disk_gb: u64) -> FlavorSnapshot {
    FlavorSnapshot {
        spec: FlavorSpec {
            id: FlavorId::new(id).unwrap(),
            name: format!("flavor-{id}"),
            vcpus,
            ram_mb,
            disk_gb,
            ephemeral_gb: 0,
            swap_mb: 0,
            rxtx_factor: 1.0,
            is_public: true,
            description: None,
        },
        extra_specs: BTreeMap::from([("hw:watchdog_action".into(), "disabled".into())]),
    }
}

/// One instance's life, commit by commit.
pub struct Scenario {
    pub api: Option<Instance>,
    pub cell: Option<Instance>,
    pub fold: CellFold,
    pub now: i64,
    next_id: u128,
    stream: StreamName,
    subject: Subject,
    pub commits: Vec<Commit>,
    pub out: Vec<Notification>,
    pub config: Config,
}

impl Scenario {
    /// A server of `flavor` requested, mapped to `host1` of cell1 and placed (spawning).
    pub fn placed(n: u128, flavor: FlavorSnapshot) -> Scenario {
        Scenario::placed_with(n, flavor, "cell1", Some("compute"))
    }

    fn placed_with(n: u128, flavor: FlavorSnapshot, cell: &str, to: Option<&str>) -> Scenario {
        let id = InstanceId(Uuid::from_u128(
            0x178b_0921_0000_0000_0000_0000_0000_0000 + n,
        ));
        let stream = StreamName::new(cell).unwrap();
        let subject = Subject::cell(&stream, SubjectKind::Instance, &id.to_string()).unwrap();
        let mut s = Scenario {
            api: None,
            cell: None,
            fold: CellFold::default(),
            now: 1_700_000_000_000_000,
            next_id: n << 32,
            stream,
            subject,
            commits: Vec::new(),
            out: Vec::new(),
            config: Config::default(),
        };
        let spec = InstanceSpec {
            id,
            name: "some-server".into(),
            description: Some("some-server".into()),
            project_id: PROJECT.into(),
            user_id: "fake".into(),
            flavor,
            image_ref: "155d900f-4e14-4e4c-a73d-069cbf4541e6".into(),
            boot_from_volume: false,
            metadata: BTreeMap::new(),
            availability_zone: None,
            networks: Networks::Auto,
            key_name: Some("my-key".into()),
            requested_host: None,
        };
        let ctx = s.ctx(false);
        let evs = decide(
            None,
            InstanceCommand::Create(
                Box::new(spec),
                BootDetails::default(),
                Default::default(),
                Default::default(),
            ),
            &ctx,
            &s.config,
        )
        .unwrap();
        s.fold_api(&evs);
        let op = s.api.as_ref().unwrap().op.unwrap().id;
        let map = InstanceCommand::Map {
            op,
            cell: CellName::new(cell).unwrap(),
            host: to.map(|h| (host(h), ClaimId(Uuid::from_u128(1)))),
            fault: to.is_none().then(|| {
                "No valid host was found. There are not enough hosts available.".to_string()
            }),
            fault_details: None,
        };
        let ctx = s.service_ctx();
        let evs = decide(s.api.as_ref(), map, &ctx, &s.config).unwrap();
        s.fold_api(&evs);
        let ctx = s.service_ctx();
        let evs = decide(s.api.as_ref(), InstanceCommand::Place, &ctx, &s.config).unwrap();
        s.append(evs, "scheduler");
        s
    }

    /// A server of `flavor` for which no host was valid: mapped to cell0 with
    /// NoValidHost and buried there (`instance.build_failed`, first commit of cell0).
    pub fn buried(n: u128, flavor: FlavorSnapshot) -> Scenario {
        Scenario::placed_with(n, flavor, "cell0", None)
    }

    fn fold_api(&mut self, evs: &[InstanceEvent]) {
        for e in evs {
            self.api = evolve(self.api.take(), e);
        }
    }

    pub fn tick(&mut self, secs: i64) {
        self.now += secs * 1_000_000;
    }

    pub fn ctx(&mut self, admin: bool) -> Ctx {
        self.tick(1);
        self.next_id += 1;
        Ctx {
            now: Timestamp(self.now),
            is_admin: admin,
            user_id: if admin { "admin".into() } else { "fake".into() },
            project_id: if admin {
                "admin".into()
            } else {
                PROJECT.into()
            },
            op_id: Uuid::from_u128(self.next_id),
        }
    }

    fn service_ctx(&mut self) -> Ctx {
        let mut c = self.ctx(true);
        c.user_id = "compute".into();
        c
    }

    /// Appends `events` as one commit of the cell subject, folds it, collects and
    /// returns its notifications.
    pub fn append(&mut self, events: Vec<InstanceEvent>, user: &str) -> Vec<Notification> {
        if events.is_empty() {
            return Vec::new();
        }
        let stored: Vec<StoredEvent> = events
            .iter()
            .map(|e| {
                self.next_id += 1;
                let ne = codec::encode(&Event::Instance(e.clone()));
                StoredEvent {
                    event_id: Uuid::from_u128(
                        0xE000_0000_0000_0000_0000_0000_0000_0000 + self.next_id,
                    ),
                    event_type: ne.event_type,
                    version: ne.version,
                    payload: ne.payload,
                }
            })
            .collect();
        for e in &events {
            self.cell = evolve(self.cell.take(), e);
        }
        let commit = Commit {
            stream: self.stream.clone(),
            stream_seq: self.commits.len() as u64 + 1,
            subject: self.subject.clone(),
            subject_seq: self.commits.len() as u64 + 1,
            dedupe_id: format!("d{}", self.next_id),
            meta: Metadata {
                correlation_id: format!("req-{}", Uuid::from_u128(self.next_id)),
                causation_id: String::new(),
                actor: Actor {
                    user: user.into(),
                    project: PROJECT.into(),
                    roles: vec!["member".into()],
                },
                occurred_at: self.now,
            },
            events: stored,
        };
        let n = self.fold.commit(&commit).unwrap();
        self.commits.push(commit);
        self.out.extend(n.clone());
        n
    }

    /// The instance's id.
    pub fn id(&self) -> InstanceId {
        self.cell.as_ref().or(self.api.as_ref()).unwrap().spec.id
    }

    /// The usage auditor closes the period `[begin, end)` of cell1 (µs since the epoch)
    /// with `hosts` and the instances audited on each: one commit of the cell's usage
    /// audit subject, in the same stream, folded like the others.
    pub fn close_period(
        &mut self,
        begin: i64,
        end: i64,
        hosts: Vec<(&str, Vec<InstanceId>)>,
    ) -> Vec<Notification> {
        use domain::audit::{AuditEvent, HostAudit};
        self.tick(1);
        self.next_id += 1;
        let cell = CellName::new("cell1").unwrap();
        let ev = Event::UsageAudit(AuditEvent::PeriodClosed {
            cell: cell.clone(),
            period_beginning: Timestamp(begin),
            period_ending: Timestamp(end),
            hosts: hosts
                .into_iter()
                .map(|(h, instances)| HostAudit {
                    host: host(h),
                    instances,
                    errors: 0,
                })
                .collect(),
            at: Timestamp(self.now),
        });
        let ne = codec::encode(&ev);
        let commit = Commit {
            stream: self.stream.clone(),
            stream_seq: self.commits.len() as u64 + 1,
            subject: projections::usage::audit_subject(&cell),
            subject_seq: 1,
            dedupe_id: format!("d{}", self.next_id),
            meta: Metadata {
                correlation_id: format!("req-{}", Uuid::from_u128(self.next_id)),
                causation_id: String::new(),
                actor: Actor {
                    user: "usage-audit".into(),
                    project: String::new(),
                    roles: vec!["service".into()],
                },
                occurred_at: self.now,
            },
            events: vec![StoredEvent {
                event_id: Uuid::from_u128(0xA000_0000_0000_0000_0000_0000_0000_0000 + self.next_id),
                event_type: ne.event_type,
                version: ne.version,
                payload: ne.payload,
            }],
        };
        let n = self.fold.commit(&commit).unwrap();
        self.commits.push(commit);
        self.out.extend(n.clone());
        n
    }

    /// A user command (decided as the owner, or as an admin).
    pub fn user(&mut self, cmd: InstanceCommand, admin: bool) -> Vec<Notification> {
        let ctx = self.ctx(admin);
        let evs = decide(self.cell.as_ref(), cmd, &ctx, &self.config).unwrap();
        self.append(evs, if admin { "admin" } else { "fake" })
    }

    /// The reactor's answer: the current task completes.
    pub fn complete(&mut self) -> Vec<Notification> {
        let i = self.cell.as_ref().unwrap();
        let (op, task) = (i.op.unwrap().id, i.task_state.unwrap());
        let ctx = self.service_ctx();
        let evs = decide(
            self.cell.as_ref(),
            InstanceCommand::Complete { op, task },
            &ctx,
            &self.config,
        )
        .unwrap();
        self.append(evs, "compute")
    }

    /// The reactor's answer: the current task fails.
    pub fn fail(&mut self, message: &str) -> Vec<Notification> {
        let i = self.cell.as_ref().unwrap();
        let (op, task) = (i.op.unwrap().id, i.task_state.unwrap());
        let ctx = self.service_ctx();
        let cmd = InstanceCommand::Fail {
            op,
            task,
            message: message.into(),
        };
        let evs = decide(self.cell.as_ref(), cmd, &ctx, &self.config).unwrap();
        self.append(evs, "compute")
    }

    /// The scheduler's answer: a destination is claimed.
    pub fn schedule(&mut self, dest: &str) -> Vec<Notification> {
        let op = self.cell.as_ref().unwrap().op.unwrap().id;
        let ctx = self.service_ctx();
        let cmd = InstanceCommand::Scheduled {
            op,
            host: host(dest),
            claim: ClaimId(Uuid::from_u128(ctx.op_id.as_u128())),
        };
        let evs = decide(self.cell.as_ref(), cmd, &ctx, &self.config).unwrap();
        self.append(evs, "scheduler")
    }

    /// Completes tasks until none is left.
    pub fn settle(&mut self) -> Vec<Notification> {
        let mut out = Vec::new();
        while self
            .cell
            .as_ref()
            .is_some_and(|i| i.task_state.is_some() && !i.deleted)
        {
            let t = self.cell.as_ref().unwrap().task_state;
            if matches!(t, Some(TaskState::ResizePrep)) {
                out.extend(self.schedule("host2"));
                continue;
            }
            let offloaded =
                self.cell.as_ref().unwrap().vm_state == domain::VmState::ShelvedOffloaded;
            if matches!(t, Some(TaskState::Unshelving)) && offloaded {
                out.extend(self.schedule("host2"));
                continue;
            }
            if matches!(t, Some(TaskState::Migrating))
                && self
                    .cell
                    .as_ref()
                    .unwrap()
                    .migration
                    .as_ref()
                    .is_some_and(|m| m.dest_host.is_none())
            {
                out.extend(self.schedule("host2"));
                continue;
            }
            out.extend(self.complete());
        }
        out
    }

    pub fn types(n: &[Notification]) -> Vec<String> {
        n.iter().map(|n| n.event_type.clone()).collect()
    }
}
