//! Running reactors on streams: durable consumers where the log has them, checkpoints
//! otherwise.
//!
//! Invariants:
//! - a reactor sees each commit of a stream after the world has applied it (so state is at
//!   least as new as the commit); a commit the world has not reached in time is not
//!   handled but handed back (nak) and redelivered;
//! - on JetStream, each reactor of a stream is a durable pull consumer with explicit acks
//!   named after [`Reactor::consumer_name`]: every process running that reactor shares
//!   it (each commit goes to one of them), a commit is acknowledged once handled, at most
//!   [`MAX_ACK_PENDING`] are outstanding, and one not acknowledged (process killed) is
//!   redelivered after [`ACK_WAIT`] to whichever process is still pulling;
//! - on the embedded store (one process), the position is a checkpoint that only moves
//!   forward and is saved at most every second and at shutdown, so after a crash a few
//!   commits are handled again;
//! - either way handling is idempotent (level-triggered on the world, dedupe ids derived
//!   from the cause), so a redelivery changes nothing. `handle` starts work and returns;
//!   work in flight when a process dies is found again by `reconcile`, which runs at start
//!   and every `reconcile_every` in every process, and by the reconciler's timeouts.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eventlog::{Commit, ConsumerOptions, DurableConsumer, StreamName};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Engine;

/// Most commits a reactor has received and not yet acknowledged (durable consumers).
pub const MAX_ACK_PENDING: usize = 1024;

/// A delivered commit not acknowledged within this time is redelivered.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// How long a reactor waits for the world to reach a delivered commit before handing it
/// back for redelivery.
const WORLD_WAIT: Duration = Duration::from_secs(30);

/// A level-triggered reactor.
#[async_trait]
pub trait Reactor: Send + Sync + 'static {
    /// Name, used for checkpoints and logs.
    fn name(&self) -> &str;

    /// Name of the durable consumer: processes with the same name share the work. The
    /// default is [`Reactor::name`] (all replicas of a service share one consumer); a
    /// reactor whose replicas must each see every commit (a compute agent, which acts
    /// only for its own hosts) returns a name of its own.
    fn consumer_name(&self) -> String {
        self.name().to_string()
    }

    /// Handles one commit (the world already reflects it). Must be quick: spawn
    /// long work.
    async fn handle(&self, engine: &Arc<Engine>, commit: &Commit);

    /// Safety net: scan the world for pending work.
    async fn reconcile(&self, _engine: &Arc<Engine>) {}
}

/// Runs `reactor` on `stream` until shutdown; reconciles at start and every
/// `reconcile_every`.
pub fn spawn_reactor(
    engine: Arc<Engine>,
    reactor: Arc<dyn Reactor>,
    stream: StreamName,
    reconcile_every: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let opts = ConsumerOptions {
            max_ack_pending: MAX_ACK_PENDING,
            ack_wait: ACK_WAIT,
        };
        let durable = loop {
            // A consumer created now starts where the world is: what came before is
            // covered by the reconcile pass at start.
            let start = engine.world.read().position(&stream) + 1;
            match engine
                .log
                .durable_consumer(&stream, &reactor.consumer_name(), start, opts)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(reactor = reactor.name(), %stream, error = %e, "cannot open the durable consumer; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        };
        match durable {
            Some(c) => run_durable(engine, reactor, stream, c, reconcile_every, shutdown).await,
            None => run_checkpointed(engine, reactor, stream, reconcile_every, shutdown).await,
        }
    })
}

/// The reconcile interval, whose first (immediate) tick is already consumed.
async fn reconcile_ticker(every: Option<Duration>) -> tokio::time::Interval {
    let mut t = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    t.tick().await;
    t
}

async fn run_durable(
    engine: Arc<Engine>,
    reactor: Arc<dyn Reactor>,
    stream: StreamName,
    mut consumer: DurableConsumer,
    reconcile_every: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    if reconcile_every.is_some() {
        reactor.reconcile(&engine).await;
    }
    let mut rec_tick = reconcile_ticker(reconcile_every).await;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = rec_tick.tick(), if reconcile_every.is_some() => {
                reactor.reconcile(&engine).await;
            }
            next = consumer.next() => match next {
                Some(Ok(d)) => {
                    if !engine.world.wait_for(&stream, d.commit.stream_seq, WORLD_WAIT).await {
                        tracing::warn!(reactor = reactor.name(), %stream, seq = d.commit.stream_seq,
                            "the world has not reached this commit; handing it back");
                        let _ = d.nak(Duration::from_secs(1)).await;
                        continue;
                    }
                    reactor.handle(&engine, &d.commit).await;
                    if let Err(e) = d.ack().await {
                        // Redelivered later; handling again is harmless.
                        tracing::warn!(reactor = reactor.name(), error = %e, "ack failed");
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(reactor = reactor.name(), %stream, error = %e, "durable consumer error");
                }
                None => break,
            }
        }
    }
}

async fn run_checkpointed(
    engine: Arc<Engine>,
    reactor: Arc<dyn Reactor>,
    stream: StreamName,
    reconcile_every: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cp_name = format!("{}:{}", reactor.name(), stream);
    let mut pos = match engine.checkpoints.load(&cp_name).await {
        Ok(p) => p.unwrap_or(0),
        Err(e) => {
            tracing::error!(reactor = reactor.name(), error = %e, "cannot load checkpoint");
            0
        }
    };
    let mut saved = pos;
    let mut sub = loop {
        match engine.log.subscribe(&stream, pos + 1).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::error!(reactor = reactor.name(), %stream, error = %e, "cannot subscribe; retrying");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    if reconcile_every.is_some() {
        reactor.reconcile(&engine).await;
    }
    let mut save_tick = tokio::time::interval(Duration::from_secs(1));
    let mut rec_tick = reconcile_ticker(reconcile_every).await;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = save_tick.tick() => {
                if pos != saved && engine.checkpoints.save(&cp_name, pos).await.is_ok() {
                    saved = pos;
                }
            }
            _ = rec_tick.tick(), if reconcile_every.is_some() => {
                reactor.reconcile(&engine).await;
            }
            next = sub.next() => match next {
                Some(Ok(commit)) => {
                    engine.world.wait_for(&stream, commit.stream_seq, WORLD_WAIT).await;
                    reactor.handle(&engine, &commit).await;
                    pos = commit.stream_seq;
                }
                Some(Err(e)) => {
                    tracing::error!(reactor = reactor.name(), error = %e, "subscription error; resubscribing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match engine.log.subscribe(&stream, pos + 1).await {
                        Ok(s) => sub = s,
                        Err(e) => tracing::error!(reactor = reactor.name(), error = %e, "cannot resubscribe"),
                    }
                }
                None => break,
            }
        }
    }
    if pos != saved {
        let _ = engine.checkpoints.save(&cp_name, pos).await;
    }
}
