//! `stratus bench --usage N`: os-simple-tenant-usage's query path (the one the API
//! handler runs: [`api::usage::summaries`] over the instance and usage read models)
//! over N instances held in memory: no log, no HTTP. The instances are built cheaply
//! by folding synthetic `instance.placed` / `instance.spawned` / `instance.deleted`
//! commits into the two models (as `sched_bench` builds hosts); one in ten is deleted
//! inside the window and one in ten has a second flavor period (a confirmed resize),
//! so the window filter and the per-period split do real work. 100 instances per
//! project.

use std::time::Instant;

use domain::flavor::FlavorSpec;
use domain::instance::{self, FlavorSnapshot, InstanceEvent, InstanceSpec, Networks};
use domain::{CellName, Event, FlavorId, InstanceId, Timestamp};
use engine::Engine;
use eventlog::{Commit, Metadata, StreamName};
use projections::usage::{FlavorPeriod, Usage, UsageQuery};
use projections::{Instances, ReadModel, Views};

/// Figures of one run.
#[derive(Debug, Clone)]
pub struct UsageReport {
    /// Instances in the models.
    pub instances: usize,
    /// Time to build the models (not the measurement).
    pub build_ms: f64,
    /// One index over every instance (no page limit), `detailed=1`: best of 5.
    pub all_detailed_ms: f64,
    /// The same, totals only.
    pub all_totals_ms: f64,
    /// What the API serves: every page of 1,000 (Nova's `max_limit`, following the
    /// marker) to the end, `detailed=1`.
    pub paged_sweep_ms: f64,
    /// Pages of the sweep.
    pub pages: usize,
    /// One project's show (`GET /os-simple-tenant-usage/{id}`).
    pub show_us: f64,
    /// Hours summed over every instance (a checksum that the work was done).
    pub total_hours: f64,
}

const HOUR: i64 = 3_600_000_000;

fn flavor(i: usize) -> FlavorSpec {
    FlavorSpec {
        id: FlavorId::new(format!("{}", 1 + i % 4)).expect("valid"),
        name: format!("m1.f{}", i % 4),
        vcpus: 1 << (i % 4),
        ram_mb: 512 << (i % 4),
        disk_gb: 10 << (i % 4),
        ephemeral_gb: 0,
        swap_mb: 0,
        rxtx_factor: 1.0,
        is_public: true,
        description: None,
    }
}

fn commit(id: &InstanceId, seq: u64) -> Commit {
    Commit {
        stream: StreamName::new("cell1").expect("valid"),
        stream_seq: seq,
        subject: Engine::instance_cell_subject(&CellName::cell1(), id),
        subject_seq: seq,
        dedupe_id: String::new(),
        meta: Metadata::default(),
        events: Vec::new(),
    }
}

/// Views holding `n` instances launched over the 30 days before `now`.
pub fn views(n: usize, now: Timestamp) -> Views {
    let mut views = Views::default();
    let span = 30 * 24 * HOUR;
    for i in 0..n {
        let id = InstanceId(uuid::Uuid::from_u128(0x1000_0000 + i as u128 * 7919));
        let created = Timestamp(now.0 - span + (i as i64 * 7_777_777) % span);
        let spec = InstanceSpec {
            id,
            name: format!("vm-{i}"),
            description: None,
            project_id: format!("project-{:05}", i / 100),
            user_id: "bench".into(),
            flavor: FlavorSnapshot {
                spec: flavor(i),
                extra_specs: Default::default(),
            },
            image_ref: "cirros".into(),
            boot_from_volume: false,
            metadata: Default::default(),
            availability_zone: None,
            networks: Networks::None,
            key_name: None,
            requested_host: None,
        };
        let mut snap = instance::evolve(
            None,
            &InstanceEvent::BuildRequested {
                spec: Box::new(spec),
                op: uuid::Uuid::nil(),
                at: created,
            },
        )
        .expect("built");
        snap.cell = Some(CellName::cell1());
        snap.placed = true;
        let mut events = vec![
            InstanceEvent::Placed {
                snapshot: Box::new(snap),
                at: created,
            },
            InstanceEvent::Spawned {
                at: created.plus_secs(5),
            },
        ];
        if i % 10 == 3 {
            events.push(InstanceEvent::Deleted {
                at: Timestamp(created.0 + (now.0 - created.0) / 2),
            });
        }
        for (seq, e) in events.iter().enumerate() {
            let c = commit(&id, seq as u64 + 1);
            let ev = Event::Instance(e.clone());
            let _ = ReadModel::apply(views.model_mut::<Instances>(), &c, &ev);
            let _ = ReadModel::apply(views.model_mut::<Usage>(), &c, &ev);
        }
        if i % 10 == 7 {
            // A confirmed resize: the next flavor from half-way through.
            let row = views
                .model_mut::<Usage>()
                .rows_mut()
                .get_mut(&id)
                .expect("placed");
            row.periods.push(FlavorPeriod {
                from: Timestamp(created.0 + (now.0 - created.0) / 2),
                flavor: (&flavor(i + 1)).into(),
            });
        }
    }
    views
}

fn best_of(runs: usize, mut f: impl FnMut() -> f64) -> (f64, f64) {
    let mut best = f64::MAX;
    let mut check = 0.0;
    for _ in 0..runs {
        let t = Instant::now();
        check = f();
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    (best, check)
}

fn hours_of(v: &[serde_json::Value]) -> f64 {
    v.iter().filter_map(|u| u["total_hours"].as_f64()).sum()
}

/// Runs the measurement over `n` instances.
pub fn run(n: usize) -> UsageReport {
    let now = engine::now();
    let t = Instant::now();
    let views = views(n, now);
    let build_ms = t.elapsed().as_secs_f64() * 1000.0;
    let start = Timestamp(now.0 - 7 * 24 * HOUR);
    let q = |project, after, limit| UsageQuery {
        start,
        stop: now,
        project,
        after,
        limit,
    };
    let (all_detailed_ms, total_hours) = best_of(5, || {
        hours_of(&api::usage::summaries(&views, &q(None, None, usize::MAX), true, now).0)
    });
    let (all_totals_ms, _) = best_of(5, || {
        hours_of(&api::usage::summaries(&views, &q(None, None, usize::MAX), false, now).0)
    });
    let mut pages = 0;
    let (paged_sweep_ms, _) = best_of(3, || {
        pages = 0;
        let mut after = None;
        let mut h = 0.0;
        loop {
            let (s, last, got) = api::usage::summaries(&views, &q(None, after, 1000), true, now);
            h += hours_of(&s);
            pages += 1;
            let Some(last) = last.filter(|_| got == 1000) else {
                break;
            };
            let project = views
                .model::<Usage>()
                .get(&last)
                .expect("row")
                .project
                .clone();
            after = Some((project, last));
        }
        h
    });
    let project = format!("project-{:05}", (n / 100) / 2);
    let (show_ms, _) = best_of(20, || {
        hours_of(&api::usage::summaries(&views, &q(Some(&project), None, 1000), true, now).0)
    });
    UsageReport {
        instances: views.model::<Usage>().len(),
        build_ms,
        all_detailed_ms,
        all_totals_ms,
        paged_sweep_ms,
        pages,
        show_us: show_ms * 1000.0,
        total_hours,
    }
}
