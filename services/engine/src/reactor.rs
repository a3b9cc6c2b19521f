//! Running reactors on streams with durable checkpoints.
//!
//! Invariants: a reactor sees each commit of a stream after the world has applied it
//! (so state is at least as new as the commit); its checkpoint only moves forward and
//! is saved at most every second and at shutdown, so after a crash it re-handles a few
//! commits, which is safe because handling is idempotent. On start, and every
//! `reconcile_every`, `reconcile` scans the world for work missed for any reason.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eventlog::{Commit, StreamName};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Engine;

/// A level-triggered reactor.
#[async_trait]
pub trait Reactor: Send + Sync + 'static {
    /// Name, used for checkpoints and logs.
    fn name(&self) -> &str;

    /// Handles one commit (the world already reflects it). Must be quick: spawn
    /// long work.
    async fn handle(&self, engine: &Arc<Engine>, commit: &Commit);

    /// Safety net: scan the world for pending work.
    async fn reconcile(&self, _engine: &Arc<Engine>) {}
}

/// Runs `reactor` on `stream` until shutdown; reconciles every `reconcile_every`.
pub fn spawn_reactor(
    engine: Arc<Engine>,
    reactor: Arc<dyn Reactor>,
    stream: StreamName,
    reconcile_every: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
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
        let mut rec_tick =
            tokio::time::interval(reconcile_every.unwrap_or(Duration::from_secs(3600)));
        rec_tick.tick().await;
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
                        engine.world.wait_for(&stream, commit.stream_seq, Duration::from_secs(30)).await;
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
    })
}
