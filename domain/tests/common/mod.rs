//! Given / when / then helpers for the instance aggregate.
//!
//! Instances are built by folding the events `decide` really produces
//! (create -> map -> place -> complete spawning -> ...), never by filling structs by
//! hand, except where a test needs a vm_state no command sequence can reach.
#![allow(dead_code)]

use std::collections::BTreeMap;

use domain::events::instance_type;
use domain::flavor::FlavorSpec;
use domain::instance::{
    decide, evolve, Config, FlavorSnapshot, Instance, InstanceCommand, InstanceEvent, InstanceSpec,
    Networks, Rebuild,
};
use domain::{
    CellName, ClaimId, Ctx, DomainError, FlavorId, HostName, InstanceId, PowerState, TaskState,
    Timestamp, VmState,
};
use uuid::Uuid;

pub const OWNER_PROJECT: &str = "project-a";
pub const ADMIN_PROJECT: &str = "admin-project";

pub fn instance_id() -> InstanceId {
    InstanceId(Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888))
}

pub fn host(name: &str) -> HostName {
    HostName::new(name).expect("valid host name")
}

pub fn claim(n: u128) -> ClaimId {
    ClaimId(Uuid::from_u128(
        0xC1A1_0000_0000_0000_0000_0000_0000_0000 + n,
    ))
}

pub fn flavor(id: &str, vcpus: u32, ram_mb: u64, disk_gb: u64) -> FlavorSnapshot {
    FlavorSnapshot {
        spec: FlavorSpec {
            id: FlavorId::new(id).expect("valid flavor id"),
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
        extra_specs: BTreeMap::new(),
    }
}

/// m1.small: 1 vCPU, 2 GiB, 20 GB.
pub fn small() -> FlavorSnapshot {
    flavor("2", 1, 2048, 20)
}

/// m1.medium: 2 vCPU, 4 GiB, 40 GB.
pub fn medium() -> FlavorSnapshot {
    flavor("3", 2, 4096, 40)
}

/// m1.tiny: 1 vCPU, 512 MiB, 1 GB.
pub fn tiny() -> FlavorSnapshot {
    flavor("1", 1, 512, 1)
}

pub fn spec() -> InstanceSpec {
    InstanceSpec {
        id: instance_id(),
        name: "vm-1".into(),
        description: None,
        project_id: OWNER_PROJECT.into(),
        user_id: "alice".into(),
        flavor: small(),
        image_ref: "cirros".into(),
        boot_from_volume: false,
        metadata: BTreeMap::new(),
        availability_zone: None,
        networks: Networks::Auto,
        key_name: None,
        requested_host: None,
    }
}

/// A rebuild onto `image` that changes nothing else.
pub fn rebuild_to(image: &str) -> Rebuild {
    Rebuild {
        image_ref: image.into(),
        ..Rebuild::default()
    }
}

/// Who issues a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The owner (non-admin).
    Owner,
    /// An admin of another project.
    Admin,
    /// An admin of the owner's project.
    OwnerAdmin,
    /// A reactor / service.
    Service,
}

/// A scripted world: one instance, its event log, a clock and an op id counter.
pub struct World {
    pub cfg: Config,
    pub log: Vec<InstanceEvent>,
    pub state: Option<Instance>,
    /// Current time in seconds.
    pub clock: i64,
    next_op: u128,
    /// Result of the last `when`.
    pub last: Option<Result<Vec<InstanceEvent>, DomainError>>,
}

impl Default for World {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl World {
    pub fn new(cfg: Config) -> Self {
        World {
            cfg,
            log: Vec::new(),
            state: None,
            clock: 1_000,
            next_op: 1,
            last: None,
        }
    }

    pub fn ctx(&mut self, who: Who) -> Ctx {
        let op = Uuid::from_u128(0x0900_0000_0000_0000_0000_0000_0000_0000 + self.next_op);
        self.next_op += 1;
        let now = Timestamp(self.clock * 1_000_000);
        match who {
            Who::Owner => Ctx {
                now,
                is_admin: false,
                user_id: "alice".into(),
                project_id: OWNER_PROJECT.into(),
                op_id: op,
            },
            Who::Admin => Ctx {
                now,
                is_admin: true,
                user_id: "root".into(),
                project_id: ADMIN_PROJECT.into(),
                op_id: op,
            },
            Who::OwnerAdmin => Ctx {
                now,
                is_admin: true,
                user_id: "alice-admin".into(),
                project_id: OWNER_PROJECT.into(),
                op_id: op,
            },
            Who::Service => Ctx::service("reactor", now, op),
        }
    }

    pub fn advance(&mut self, secs: i64) -> &mut Self {
        self.clock += secs;
        self
    }

    pub fn i(&self) -> &Instance {
        self.state.as_ref().expect("instance exists")
    }

    pub fn op(&self) -> Uuid {
        self.i().op.expect("an operation in progress").id
    }

    pub fn task(&self) -> TaskState {
        self.i().task_state.expect("a task in progress")
    }

    /// Runs `cmd` as `who`; on success folds the events. Each command takes a second.
    pub fn when_as(&mut self, who: Who, cmd: InstanceCommand) -> &mut Self {
        self.clock += 1;
        let ctx = self.ctx(who);
        let cfg = self.cfg;
        let res = decide(self.state.as_ref(), cmd, &ctx, &cfg);
        if let Ok(evs) = &res {
            for e in evs {
                self.state = evolve(self.state.take(), e);
                self.log.push(e.clone());
            }
        }
        self.last = Some(res);
        self
    }

    /// Runs `cmd` as the (non-admin) owner.
    pub fn when(&mut self, cmd: InstanceCommand) -> &mut Self {
        self.when_as(Who::Owner, cmd)
    }

    pub fn when_admin(&mut self, cmd: InstanceCommand) -> &mut Self {
        self.when_as(Who::Admin, cmd)
    }

    /// Reactor: the compute agent finished the current task.
    pub fn complete(&mut self) -> &mut Self {
        let (op, task) = (self.op(), self.task());
        self.when_as(Who::Service, InstanceCommand::Complete { op, task })
    }

    /// Reactor: the compute agent did shelve's image steps (`shelving` ->
    /// `shelving_image_pending_upload` -> `shelving_image_uploading`), leaving the
    /// upload's completion to the caller.
    pub fn through_shelve_image(&mut self) -> &mut Self {
        self.complete().events(&["instance.task_advanced"]);
        self.task_is(Some(domain::TaskState::ShelvingImagePendingUpload));
        self.complete().events(&["instance.task_advanced"]);
        self.task_is(Some(domain::TaskState::ShelvingImageUploading))
    }

    /// Reactor: the compute agent failed the current task.
    pub fn fail(&mut self, message: &str) -> &mut Self {
        let (op, task) = (self.op(), self.task());
        self.when_as(
            Who::Service,
            InstanceCommand::Fail {
                op,
                task,
                message: message.into(),
            },
        )
    }

    /// Reactor: the scheduler claimed `host` for the current operation.
    pub fn scheduled(&mut self, h: &str, c: ClaimId) -> &mut Self {
        let op = self.op();
        self.when_as(
            Who::Service,
            InstanceCommand::Scheduled {
                op,
                host: host(h),
                claim: c,
            },
        )
    }

    pub fn tick(&mut self) -> &mut Self {
        self.when_as(Who::Service, InstanceCommand::Tick)
    }

    // ---- then: the outcome of the last `when` ----

    pub fn result(&self) -> &Result<Vec<InstanceEvent>, DomainError> {
        self.last.as_ref().expect("a command was run")
    }

    pub fn ok(&mut self) -> &mut Self {
        if let Err(e) = self.result() {
            panic!("expected success, got {e:?} ({e})");
        }
        self
    }

    /// Asserts the event types of the last decision.
    pub fn events(&mut self, types: &[&str]) -> &mut Self {
        let got: Vec<&str> = match self.result() {
            Ok(evs) => evs.iter().map(instance_type).collect(),
            Err(e) => panic!("expected events {types:?}, got error {e:?}"),
        };
        assert_eq!(got, types, "events of the last decision");
        self
    }

    pub fn no_events(&mut self) -> &mut Self {
        self.events(&[])
    }

    /// Asserts the last decision was refused with exactly this message.
    pub fn refused(&mut self, message: &str) -> &mut Self {
        match self.result() {
            Ok(evs) => panic!("expected refusal {message:?}, got events {evs:?}"),
            Err(e) => assert_eq!(e.to_string(), message, "refusal message ({e:?})"),
        }
        self
    }

    pub fn err(&self) -> DomainError {
        match self.result() {
            Ok(evs) => panic!("expected an error, got events {evs:?}"),
            Err(e) => e.clone(),
        }
    }

    /// Nova's 409 for a vm_state refusal.
    pub fn refused_vm(&mut self, action: &str, vm: &str) -> &mut Self {
        let m = format!(
            "Cannot '{action}' instance {} while it is in vm_state {vm}",
            instance_id()
        );
        self.refused(&m)
    }

    /// Nova's 409 for a task_state refusal.
    pub fn refused_task(&mut self, action: &str, task: &str) -> &mut Self {
        let m = format!(
            "Cannot '{action}' instance {} while it is in task_state {task}",
            instance_id()
        );
        self.refused(&m)
    }

    pub fn refused_locked(&mut self) -> &mut Self {
        assert_eq!(
            self.err(),
            DomainError::Locked {
                id: instance_id().to_string()
            }
        );
        let m = format!("Instance {} is locked", instance_id());
        self.refused(&m)
    }

    pub fn refused_not_ready(&mut self) -> &mut Self {
        let m = format!("Instance {} is not ready", instance_id());
        self.refused(&m)
    }

    pub fn vm(&mut self, v: VmState) -> &mut Self {
        assert_eq!(self.i().vm_state, v, "vm_state");
        self
    }

    pub fn task_is(&mut self, t: Option<TaskState>) -> &mut Self {
        assert_eq!(self.i().task_state, t, "task_state");
        assert_eq!(
            self.i().op.is_some(),
            t.is_some(),
            "op present iff task_state"
        );
        self
    }

    pub fn idle(&mut self) -> &mut Self {
        self.task_is(None)
    }

    pub fn power(&mut self, p: PowerState) -> &mut Self {
        assert_eq!(self.i().power_state, p, "power_state");
        self
    }

    pub fn status(&mut self, s: &str) -> &mut Self {
        assert_eq!(self.i().status(), s, "API status");
        self
    }

    pub fn on_host(&mut self, h: Option<&str>) -> &mut Self {
        assert_eq!(
            self.i().host.as_ref().map(|h| h.as_str().to_string()),
            h.map(str::to_string),
            "host"
        );
        self
    }

    pub fn claim_is(&mut self, c: Option<ClaimId>) -> &mut Self {
        assert_eq!(self.i().claim, c, "claim");
        self
    }

    pub fn has_fault(&mut self) -> &mut Self {
        assert!(self.i().fault.is_some(), "fault expected");
        self
    }

    pub fn no_migration(&mut self) -> &mut Self {
        assert_eq!(self.i().migration, None, "migration");
        self
    }

    /// The folded state equals the state folded from scratch over the whole log.
    pub fn replays(&mut self) -> &mut Self {
        let mut s = None;
        for e in &self.log {
            s = evolve(s, e);
        }
        assert_eq!(s, self.state, "replay from scratch");
        self
    }

    // ---- given: real event sequences ----

    /// POST /servers: building / scheduling.
    pub fn created(cfg: Config) -> World {
        let mut w = World::new(cfg);
        w.when(InstanceCommand::Create(
            Box::new(spec()),
            Default::default(),
            Default::default(),
            Default::default(),
        ))
        .events(&["instance.build_requested"]);
        w
    }

    /// Mapped to cell1 on `compute-1` (claim 1) and placed: building / spawning.
    pub fn spawning(cfg: Config) -> World {
        let mut w = World::created(cfg);
        let op = w.op();
        w.when_as(
            Who::Service,
            InstanceCommand::Map {
                op,
                cell: CellName::cell1(),
                host: Some((host("compute-1"), claim(1))),
                fault: None,
                fault_details: None,
            },
        )
        .events(&["instance.mapped"]);
        w.when_as(Who::Service, InstanceCommand::Place)
            .events(&["instance.placed"]);
        w
    }

    pub fn active_with(cfg: Config) -> World {
        let mut w = World::spawning(cfg);
        w.complete().events(&["instance.spawned"]);
        w
    }

    /// ACTIVE on compute-1 (claim 1).
    pub fn active() -> World {
        World::active_with(Config::default())
    }

    fn run(mut self, cmd: InstanceCommand) -> World {
        self.when(cmd).ok();
        self.complete().ok();
        self
    }

    pub fn paused() -> World {
        World::active().run(InstanceCommand::Pause)
    }

    pub fn suspended() -> World {
        World::active().run(InstanceCommand::Suspend)
    }

    pub fn stopped() -> World {
        World::active().run(InstanceCommand::Stop)
    }

    /// ERROR via os-resetState (still on its host, launched).
    pub fn error() -> World {
        let mut w = World::active();
        w.when_admin(InstanceCommand::ResetState {
            state: VmState::Error,
        })
        .ok();
        w
    }

    /// SHELVED on compute-1 (offload never).
    pub fn shelved() -> World {
        let mut w = World::active_with(Config {
            shelved_offload_time: -1,
            ..Config::default()
        });
        w.when(InstanceCommand::Shelve).ok();
        w.through_shelve_image();
        w.complete().ok();
        w
    }

    /// SHELVED_OFFLOADED (default config: offload at once).
    pub fn shelved_offloaded() -> World {
        let mut w = World::active();
        w.when(InstanceCommand::Shelve).ok();
        w.through_shelve_image();
        w.complete().ok(); // shelving_image_uploading -> shelving_offloading
        w.complete().ok(); // -> offloaded
        w
    }

    /// VERIFY_RESIZE on compute-2 (claim 2) with flavor medium, from `self`.
    pub fn resized_from(mut self) -> World {
        self.when(InstanceCommand::Resize { flavor: medium() }).ok();
        self.scheduled("compute-2", claim(2)).ok();
        self.complete().ok();
        self
    }

    pub fn resized() -> World {
        World::active().resized_from()
    }
}
