//! The one runtime of a process's reactors and background tasks: it spawns every
//! registered [`Reactor`] on every stream (and on streams that appear later), runs
//! every [`Periodic`] task on its period, keeps their join handles, stops and joins them
//! all, and records a [`TaskStatus`] for each (served at `GET /v1/status`).
//!
//! Modelled on omicron's background-task driver (one owner of every periodic task and
//! its status) and kube-runtime's controller runner (the runner, not each controller,
//! guarantees one reconcile per object at a time: [`InFlight`]).
//!
//! Invariants:
//! - every task the runtime spawns, including reactors on streams discovered after
//!   start, is joined by [`Running::stop`]; discovery itself is stopped (and joined)
//!   first, so no task is spawned after `stop` has collected the handles;
//! - a key claimed in an [`InFlight`] set is released when its guard drops: when the
//!   work finishes, panics, or its task is aborted, so a failed piece of work never
//!   blocks its object for good;
//! - a status only moves forward: counters grow, the position is the highest sequence
//!   the task has passed (handled and acknowledged, or checkpointed).

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventlog::{LockExt, StreamName};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::reactor::{run_reactor, Reactor};
use crate::Engine;

/// Default period of the reactors' reconcile pass (their safety net).
pub const DEFAULT_REACTOR_RECONCILE: Duration = Duration::from_secs(30);

/// How often the log is asked for streams created since start (new cells).
pub const DEFAULT_DISCOVER_EVERY: Duration = Duration::from_secs(1);

/// How long [`Running::stop`] waits for each task before leaving it.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The error a periodic task reports (kept as text in its status).
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

/// Configuration of a [`Runtime`].
#[derive(Debug, Clone, Copy)]
pub struct RuntimeOptions {
    /// Period of every reactor's reconcile pass (None: never, not even at start).
    pub reactor_reconcile: Option<Duration>,
    /// Period of stream discovery (None: only the streams given at start).
    pub discover_every: Option<Duration>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            reactor_reconcile: Some(DEFAULT_REACTOR_RECONCILE),
            discover_every: Some(DEFAULT_DISCOVER_EVERY),
        }
    }
}

/// A background task run on a period.
#[async_trait]
pub trait Periodic: Send + Sync + 'static {
    /// Name, for status and logs.
    fn name(&self) -> &str;

    /// One run. An error is logged and recorded; the task runs again next period.
    async fn run(&self, engine: &Arc<Engine>) -> Result<(), TaskError>;
}

/// When a [`Periodic`] task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Time between two runs (from the end of one to the start of the next).
    pub every: Duration,
    /// Run once at start, before the first pause (otherwise the first run is one
    /// period after start).
    pub immediate: bool,
}

impl Period {
    /// First run at start, then every `every`.
    pub fn immediate(every: Duration) -> Self {
        Period {
            every,
            immediate: true,
        }
    }

    /// First run one period after start, then every `every`.
    pub fn delayed(every: Duration) -> Self {
        Period {
            every,
            immediate: false,
        }
    }
}

/// What kind of task a status describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// A reactor on one stream.
    Reactor,
    /// A periodic task.
    Periodic,
}

impl TaskKind {
    /// `reactor` or `periodic`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Reactor => "reactor",
            TaskKind::Periodic => "periodic",
        }
    }
}

/// The live status of one task, updated by the task itself.
#[derive(Debug)]
pub struct TaskStatus {
    name: String,
    kind: TaskKind,
    stream: Option<StreamName>,
    every: Option<Duration>,
    runs: AtomicU64,
    errors: AtomicU64,
    /// Microseconds since the epoch; 0: never.
    last_run: AtomicU64,
    /// Highest stream sequence passed (reactors).
    position: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl TaskStatus {
    fn new(
        name: &str,
        kind: TaskKind,
        stream: Option<StreamName>,
        every: Option<Duration>,
    ) -> Self {
        TaskStatus {
            name: name.to_string(),
            kind,
            stream,
            every,
            runs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_run: AtomicU64::new(0),
            position: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Records a run (a handled commit, a reconcile pass, a periodic run) now.
    pub fn ran(&self) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.last_run
            .store(eventlog::now_micros().max(0) as u64, Ordering::Relaxed);
    }

    /// Records a failure (the task goes on).
    pub fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock_or_recover() = Some(message);
    }

    /// Records that the task has passed stream sequence `seq`.
    pub fn advance(&self, seq: u64) {
        self.position.fetch_max(seq, Ordering::Relaxed);
    }

    fn report(&self, head: Option<u64>) -> TaskReport {
        let last_run = self.last_run.load(Ordering::Relaxed);
        let position =
            (self.kind == TaskKind::Reactor).then(|| self.position.load(Ordering::Relaxed));
        TaskReport {
            name: self.name.clone(),
            kind: self.kind,
            stream: self.stream.clone(),
            every: self.every,
            runs: self.runs.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_run: (last_run > 0).then_some(last_run),
            last_error: self.last_error.lock_or_recover().clone(),
            position,
            head,
            lag: position.zip(head).map(|(p, h)| h.saturating_sub(p)),
        }
    }
}

/// A snapshot of one task's status, with the head of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    /// Reactor or periodic task name.
    pub name: String,
    /// Reactor or periodic task.
    pub kind: TaskKind,
    /// The stream a reactor runs on.
    pub stream: Option<StreamName>,
    /// Period (periodic tasks, and reactors' reconcile pass).
    pub every: Option<Duration>,
    /// Handled commits and reconcile passes (reactors), runs (periodic tasks).
    pub runs: u64,
    /// Failures recorded.
    pub errors: u64,
    /// When it last ran (microseconds since the epoch).
    pub last_run: Option<u64>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Highest stream sequence this process's reactor has passed.
    pub position: Option<u64>,
    /// Last sequence of the stream (None: the log did not answer).
    pub head: Option<u64>,
    /// `head - position`: commits not yet passed by this process.
    pub lag: Option<u64>,
}

/// Every task status of one process (held by the [`Engine`], so that the API can serve
/// it without a handle on the runtime).
#[derive(Debug, Default)]
pub struct Board {
    tasks: Mutex<Vec<Arc<TaskStatus>>>,
}

impl Board {
    fn register(&self, status: TaskStatus) -> Arc<TaskStatus> {
        let status = Arc::new(status);
        self.tasks.lock_or_recover().push(status.clone());
        status
    }

    /// The current statuses (no stream heads: see [`Engine::task_status`]).
    pub fn statuses(&self) -> Vec<Arc<TaskStatus>> {
        self.tasks.lock_or_recover().clone()
    }
}

impl Engine {
    /// Every task's status with the lag of reactors behind their stream's head (the log
    /// is asked once per stream, with a short timeout).
    pub async fn task_status(&self) -> Vec<TaskReport> {
        let statuses = self.tasks().statuses();
        let mut heads: Vec<(StreamName, Option<u64>)> = Vec::new();
        for s in statuses.iter().filter_map(|s| s.stream.as_ref()) {
            if heads.iter().any(|(h, _)| h == s) {
                continue;
            }
            let head = tokio::time::timeout(Duration::from_secs(2), self.log.last_stream_seq(s))
                .await
                .ok()
                .and_then(Result::ok);
            heads.push((s.clone(), head));
        }
        statuses
            .iter()
            .map(|s| {
                let head = s
                    .stream
                    .as_ref()
                    .and_then(|st| heads.iter().find(|(h, _)| h == st))
                    .and_then(|(_, h)| *h);
                s.report(head)
            })
            .collect()
    }
}

/// Keys (objects) with work in flight: at most one piece of work per key at a time.
pub struct InFlight<K> {
    keys: Arc<Mutex<HashSet<K>>>,
}

impl<K> Default for InFlight<K> {
    fn default() -> Self {
        InFlight {
            keys: Default::default(),
        }
    }
}

impl<K> std::fmt::Debug for InFlight<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.keys.lock().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("InFlight").field("keys", &n).finish()
    }
}

/// Holds a key of an [`InFlight`] set; releases it when dropped (also on panic or
/// abort of the task holding it).
pub struct InFlightGuard<K: Eq + Hash> {
    keys: Arc<Mutex<HashSet<K>>>,
    key: Option<K>,
}

impl<K: Eq + Hash> Drop for InFlightGuard<K> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.keys.lock_or_recover().remove(&k);
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static> InFlight<K> {
    /// Claims `key`; None when work for it is already in flight.
    pub fn try_claim(&self, key: K) -> Option<InFlightGuard<K>> {
        let fresh = self.keys.lock_or_recover().insert(key.clone());
        fresh.then(|| InFlightGuard {
            keys: self.keys.clone(),
            key: Some(key),
        })
    }

    /// Spawns `work` for `key` unless work for it is in flight; the key is released
    /// when `work` ends, however it ends. Returns whether it was spawned.
    pub fn spawn<F>(&self, key: K, work: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
        K: Sync,
    {
        let Some(guard) = self.try_claim(key) else {
            return false;
        };
        tokio::spawn(async move {
            let _guard = guard;
            work.await;
        });
        true
    }

    /// Whether work for `key` is in flight.
    pub fn contains(&self, key: &K) -> bool {
        self.keys.lock_or_recover().contains(key)
    }
}

/// Called with each stream discovered after start, before reactors start on it (the
/// all-in-one projects it there).
pub type StreamHook = Box<dyn Fn(&StreamName) + Send + Sync>;

/// The tasks of a process, registered before [`Runtime::start`].
pub struct Runtime {
    engine: Arc<Engine>,
    options: RuntimeOptions,
    reactors: Vec<(Arc<dyn Reactor>, Option<StreamName>)>,
    periodic: Vec<(Arc<dyn Periodic>, Period)>,
    hooks: Vec<StreamHook>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.options)
            .field("reactors", &self.reactors.len())
            .field("periodic", &self.periodic.len())
            .finish()
    }
}

impl Runtime {
    /// A runtime with nothing registered.
    pub fn new(engine: Arc<Engine>, options: RuntimeOptions) -> Self {
        Runtime {
            engine,
            options,
            reactors: Vec::new(),
            periodic: Vec::new(),
            hooks: Vec::new(),
        }
    }

    /// Runs `reactor` on every stream, present and future.
    pub fn reactor(&mut self, reactor: Arc<dyn Reactor>) -> &mut Self {
        self.reactors.push((reactor, None));
        self
    }

    /// Runs `reactor` on `stream` only (a compute agent on its cell's stream).
    pub fn reactor_on(&mut self, reactor: Arc<dyn Reactor>, stream: StreamName) -> &mut Self {
        self.reactors.push((reactor, Some(stream)));
        self
    }

    /// Runs `task` on `period`.
    pub fn periodic(&mut self, task: Arc<dyn Periodic>, period: Period) -> &mut Self {
        self.periodic.push((task, period));
        self
    }

    /// Calls `hook` with every stream discovered after start.
    pub fn on_new_stream(&mut self, hook: StreamHook) -> &mut Self {
        self.hooks.push(hook);
        self
    }

    /// Starts every task: reactors on `streams` (and, with discovery on, on every
    /// stream that appears later), and the periodic tasks.
    pub fn start(self, streams: Vec<StreamName>) -> Running {
        let (shutdown, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            engine: self.engine,
            reconcile: self.options.reactor_reconcile,
            reactors: self.reactors,
            hooks: self.hooks,
            tasks: Mutex::new(Vec::new()),
            shutdown: rx.clone(),
        });
        for s in &streams {
            shared.start_stream(s);
        }
        for (task, period) in self.periodic {
            let status = shared.engine.tasks().register(TaskStatus::new(
                task.name(),
                TaskKind::Periodic,
                None,
                Some(period.every),
            ));
            let h = tokio::spawn(run_periodic(
                shared.engine.clone(),
                task,
                period,
                status,
                rx.clone(),
            ));
            shared.push(h);
        }
        let discovery = self
            .options
            .discover_every
            .map(|every| tokio::spawn(discover(shared.clone(), streams, every, rx)));
        Running {
            shutdown,
            discovery,
            shared,
        }
    }
}

struct Shared {
    engine: Arc<Engine>,
    reconcile: Option<Duration>,
    reactors: Vec<(Arc<dyn Reactor>, Option<StreamName>)>,
    hooks: Vec<StreamHook>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn push(&self, h: JoinHandle<()>) {
        self.tasks.lock_or_recover().push(h);
    }

    /// Spawns every reactor that runs on `stream`.
    fn start_stream(&self, stream: &StreamName) {
        for (r, only) in &self.reactors {
            if only.as_ref().is_some_and(|o| o != stream) {
                continue;
            }
            let status = self.engine.tasks().register(TaskStatus::new(
                r.name(),
                TaskKind::Reactor,
                Some(stream.clone()),
                self.reconcile,
            ));
            let h = tokio::spawn(run_reactor(
                self.engine.clone(),
                r.clone(),
                stream.clone(),
                self.reconcile,
                status,
                self.shutdown.clone(),
            ));
            self.push(h);
        }
    }
}

/// Asks the log for its streams every `every`; starts the hooks and reactors on each
/// new one.
async fn discover(
    shared: Arc<Shared>,
    mut known: Vec<StreamName>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Ok(all) = shared.engine.log.streams().await else {
            continue;
        };
        for s in all {
            if known.contains(&s) {
                continue;
            }
            tracing::info!(stream = %s, "new stream: projecting and reacting");
            for hook in &shared.hooks {
                hook(&s);
            }
            shared.start_stream(&s);
            known.push(s);
        }
    }
}

async fn run_periodic(
    engine: Arc<Engine>,
    task: Arc<dyn Periodic>,
    period: Period,
    status: Arc<TaskStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = true;
    loop {
        if !(first && period.immediate) {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(period.every) => {}
            }
        }
        first = false;
        if *stop.borrow() {
            return;
        }
        let result = task.run(&engine).await;
        status.ran();
        if let Err(e) = result {
            tracing::warn!(task = task.name(), error = %e, "background task failed; will run again");
            status.error(e.to_string());
        }
    }
}

/// The started runtime: stop it to join every task.
pub struct Running {
    shutdown: watch::Sender<bool>,
    discovery: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("tasks", &self.task_count())
            .finish()
    }
}

impl Running {
    /// How many tasks run now (reactors per stream and periodic tasks, not discovery).
    pub fn task_count(&self) -> usize {
        self.shared.tasks.lock_or_recover().len()
    }

    /// Stops every task and waits for each (reactors save their checkpoints), at most
    /// 10 s per task; discovery first, so that nothing starts meanwhile.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Some(d) = self.discovery {
            let _ = d.await;
        }
        let tasks = std::mem::take(&mut *self.shared.tasks.lock_or_recover());
        for t in tasks {
            if tokio::time::timeout(STOP_WAIT, t).await.is_err() {
                tracing::warn!("a background task did not stop within 10 s; leaving it");
            }
        }
    }
}
