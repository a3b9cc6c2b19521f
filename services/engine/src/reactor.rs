//! Running one reactor on one stream: durable consumers where the log has them,
//! checkpoints otherwise. [`crate::runtime`] decides which reactor runs on which stream
//! and owns the tasks; this module is the loop of one of them.
//!
//! Invariants:
//! - a reactor sees each commit of a stream after the world has applied it (so state is at
//!   least as new as the commit); a commit the world has not reached in time is not
//!   handled but handed back (nak) and redelivered;
//! - a reactor is handed the decoded events of a commit that belong to the families it
//!   subscribes to ([`Reactor::subscribes`]); a commit with none of them is passed over
//!   (acknowledged, checkpoint moved) without calling it;
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
use domain::Event;
use eventlog::{Commit, ConsumerOptions, DurableConsumer, Metadata, StreamName, Subject};
use projections::codec;
use tokio::sync::watch;

use crate::runtime::TaskStatus;
use crate::Engine;

/// Most commits a reactor has received and not yet acknowledged (durable consumers).
pub const MAX_ACK_PENDING: usize = 1024;

/// A delivered commit not acknowledged within this time is redelivered.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// How long a reactor waits for the world to reach a delivered commit before handing it
/// back for redelivery.
const WORLD_WAIT: Duration = Duration::from_secs(30);

/// A family of events a reactor may subscribe to (one per aggregate kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// [`Event::Instance`].
    Instance,
    /// [`Event::Flavor`].
    Flavor,
    /// [`Event::Host`].
    Host,
    /// [`Event::Cell`].
    Cell,
    /// [`Event::HostMapping`].
    HostMapping,
    /// [`Event::Image`].
    Image,
    /// [`Event::Identity`].
    Identity,
    /// [`Event::Quota`].
    Quota,
    /// [`Event::ServerGroup`].
    ServerGroup,
    /// [`Event::Keypair`].
    Keypair,
    /// [`Event::Aggregate`].
    Aggregate,
    /// [`Event::UsageAudit`] (`audit.period_closed`; helper D's notifier reads it).
    UsageAudit,
    /// [`Event::Subscription`] (webhook subscriptions).
    Subscription,
    /// [`Event::Metadef`] (image metadata definitions).
    Metadef,
    /// [`Event::Task`] (image tasks).
    Task,
    /// [`Event::Network`] (networks, subnets, ports).
    Network,
    /// [`Event::NetworkQuota`] (network quota ledgers).
    NetworkQuota,
    /// [`Event::SubnetPool`] (subnet pools).
    SubnetPool,
    /// [`Event::Router`] (routers).
    Router,
    /// [`Event::FloatingIp`] (floating IPs).
    FloatingIp,
    /// [`Event::SecurityGroup`] (security groups and rules).
    SecurityGroup,
}

impl Family {
    /// The family of `event`.
    pub fn of(event: &Event) -> Family {
        match event {
            Event::Instance(_) => Family::Instance,
            Event::Flavor(_) => Family::Flavor,
            Event::Host(_) => Family::Host,
            Event::Cell(_) => Family::Cell,
            Event::HostMapping(_) => Family::HostMapping,
            Event::Image(_) => Family::Image,
            Event::Identity(_) => Family::Identity,
            Event::Quota(_) => Family::Quota,
            Event::ServerGroup(_) => Family::ServerGroup,
            Event::Keypair(_) => Family::Keypair,
            Event::Aggregate(_) => Family::Aggregate,
            Event::UsageAudit(_) => Family::UsageAudit,
            Event::Subscription(_) => Family::Subscription,
            Event::Metadef(_) => Family::Metadef,
            Event::Task(_) => Family::Task,
            Event::Network(_) => Family::Network,
            Event::NetworkQuota(_) => Family::NetworkQuota,
            Event::SubnetPool(_) => Family::SubnetPool,
            Event::Router(_) => Family::Router,
            Event::FloatingIp(_) => Family::FloatingIp,
            Event::SecurityGroup(_) => Family::SecurityGroup,
        }
    }

    /// The family of a stored event type, by the prefix [`codec`] dispatches on, so that
    /// events no reactor wants are passed over without decoding; None when unknown
    /// (then the event is decoded, and the decoder says what is wrong).
    fn of_type(event_type: &str) -> Option<Family> {
        if event_type == "host.mapped" {
            return Some(Family::HostMapping);
        }
        Some(match event_type.split('.').next()? {
            "instance" => Family::Instance,
            "flavor" => Family::Flavor,
            "host" => Family::Host,
            "aggregate" => Family::Aggregate,
            "metadef" => Family::Metadef,
            "task" => Family::Task,
            "cell" => Family::Cell,
            "image" => Family::Image,
            "identity" | "project" | "user" | "role" => Family::Identity,
            "quota" => Family::Quota,
            "server_group" => Family::ServerGroup,
            "keypair" => Family::Keypair,
            "audit" => Family::UsageAudit,
            "subscription" => Family::Subscription,
            "network" => Family::Network,
            "network_quota" => Family::NetworkQuota,
            "subnetpool" => Family::SubnetPool,
            "router" => Family::Router,
            "floatingip" => Family::FloatingIp,
            "security_group" => Family::SecurityGroup,
            _ => return None,
        })
    }
}

/// What a reactor is handed for one commit: where it is, who caused it, and its
/// decoded events of the subscribed families (never empty).
#[derive(Debug)]
pub struct Delivery<'a> {
    /// Stream holding the commit.
    pub stream: &'a StreamName,
    /// Position of the commit in its stream.
    pub stream_seq: u64,
    /// Subject (aggregate) of the commit.
    pub subject: &'a Subject,
    /// Who and why (the correlation id is passed on to the work it causes).
    pub meta: &'a Metadata,
    /// The commit's events of the families the reactor subscribes to, in order.
    pub events: Vec<Event>,
}

/// A level-triggered reactor.
#[async_trait]
pub trait Reactor: Send + Sync + 'static {
    /// Name, used for checkpoints, status and logs.
    fn name(&self) -> &str;

    /// Name of the durable consumer: processes with the same name share the work. The
    /// default is [`Reactor::name`] (all replicas of a service share one consumer); a
    /// reactor whose replicas must each see every commit (a compute agent, which acts
    /// only for its own hosts) returns a name of its own.
    fn consumer_name(&self) -> String {
        self.name().to_string()
    }

    /// The event families this reactor is handed (its typed subscription).
    fn subscribes(&self) -> &'static [Family];

    /// Handles one commit's subscribed events (the world already reflects the commit).
    /// Must be quick: spawn long work (see [`crate::runtime::InFlight`]).
    async fn handle(&self, engine: &Arc<Engine>, delivery: &Delivery<'_>);

    /// Safety net: scan the world for pending work.
    async fn reconcile(&self, _engine: &Arc<Engine>) {}
}

/// Decodes the events of `commit` that `reactor` subscribes to and hands them over;
/// returns whether it was called. An event that cannot be decoded is counted as an
/// error and skipped (it was written by a newer version or is corrupt; the world skips
/// it too).
async fn deliver(
    engine: &Arc<Engine>,
    reactor: &dyn Reactor,
    status: &TaskStatus,
    commit: &Commit,
) {
    let families = reactor.subscribes();
    let mut events = Vec::new();
    for e in &commit.events {
        if Family::of_type(&e.event_type).is_some_and(|f| !families.contains(&f)) {
            continue;
        }
        match codec::decode(e) {
            Ok(ev) if families.contains(&Family::of(&ev)) => events.push(ev),
            Ok(_) => {}
            Err(err) => status.error(format!(
                "{}: cannot decode {} at {}: {err}",
                commit.stream, e.event_type, commit.stream_seq
            )),
        }
    }
    if events.is_empty() {
        return;
    }
    let delivery = Delivery {
        stream: &commit.stream,
        stream_seq: commit.stream_seq,
        subject: &commit.subject,
        meta: &commit.meta,
        events,
    };
    reactor.handle(engine, &delivery).await;
    status.ran();
}

/// Runs `reactor` on `stream` until shutdown; reconciles at start and every
/// `reconcile_every`. Progress and failures go to `status`.
pub(crate) async fn run_reactor(
    engine: Arc<Engine>,
    reactor: Arc<dyn Reactor>,
    stream: StreamName,
    reconcile_every: Option<Duration>,
    status: Arc<TaskStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
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
            Ok(c) => {
                status.advance(start - 1);
                break c;
            }
            Err(e) => {
                tracing::error!(reactor = reactor.name(), %stream, error = %e, "cannot open the durable consumer; retrying");
                status.error(format!("cannot open the durable consumer: {e}"));
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    match durable {
        Some(c) => {
            run_durable(
                engine,
                reactor,
                stream,
                c,
                reconcile_every,
                status,
                shutdown,
            )
            .await
        }
        None => run_checkpointed(engine, reactor, stream, reconcile_every, status, shutdown).await,
    }
}

/// The reconcile interval, whose first (immediate) tick is already consumed.
async fn reconcile_ticker(every: Option<Duration>) -> tokio::time::Interval {
    let mut t = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    t.tick().await;
    t
}

async fn reconcile(engine: &Arc<Engine>, reactor: &dyn Reactor, status: &TaskStatus) {
    reactor.reconcile(engine).await;
    status.ran();
}

async fn run_durable(
    engine: Arc<Engine>,
    reactor: Arc<dyn Reactor>,
    stream: StreamName,
    mut consumer: DurableConsumer,
    reconcile_every: Option<Duration>,
    status: Arc<TaskStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    if reconcile_every.is_some() {
        reconcile(&engine, reactor.as_ref(), &status).await;
    }
    let mut rec_tick = reconcile_ticker(reconcile_every).await;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = rec_tick.tick(), if reconcile_every.is_some() => {
                reconcile(&engine, reactor.as_ref(), &status).await;
            }
            next = consumer.next() => match next {
                Some(Ok(d)) => {
                    if !engine.world.wait_for(&stream, d.commit.stream_seq, WORLD_WAIT).await {
                        tracing::warn!(reactor = reactor.name(), %stream, seq = d.commit.stream_seq,
                            "the world has not reached this commit; handing it back");
                        status.error(format!(
                            "the world had not reached {stream} {}; handed back",
                            d.commit.stream_seq
                        ));
                        let _ = d.nak(Duration::from_secs(1)).await;
                        continue;
                    }
                    deliver(&engine, reactor.as_ref(), &status, &d.commit).await;
                    let seq = d.commit.stream_seq;
                    match d.ack().await {
                        Ok(()) => status.advance(seq),
                        Err(e) => {
                            // Redelivered later; handling again is harmless.
                            tracing::warn!(reactor = reactor.name(), error = %e, "ack failed");
                            status.error(format!("ack failed: {e}"));
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(reactor = reactor.name(), %stream, error = %e, "durable consumer error");
                    status.error(format!("durable consumer: {e}"));
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
    status: Arc<TaskStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cp_name = format!("{}:{}", reactor.name(), stream);
    let mut pos = match engine.checkpoints.load(&cp_name).await {
        Ok(p) => p.unwrap_or(0),
        Err(e) => {
            tracing::error!(reactor = reactor.name(), error = %e, "cannot load checkpoint");
            status.error(format!("cannot load the checkpoint: {e}"));
            0
        }
    };
    status.advance(pos);
    let mut saved = pos;
    let mut sub = loop {
        match engine.log.subscribe(&stream, pos + 1).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::error!(reactor = reactor.name(), %stream, error = %e, "cannot subscribe; retrying");
                status.error(format!("cannot subscribe: {e}"));
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    if reconcile_every.is_some() {
        reconcile(&engine, reactor.as_ref(), &status).await;
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
                reconcile(&engine, reactor.as_ref(), &status).await;
            }
            next = sub.next() => match next {
                Some(Ok(commit)) => {
                    engine.world.wait_for(&stream, commit.stream_seq, WORLD_WAIT).await;
                    deliver(&engine, reactor.as_ref(), &status, &commit).await;
                    pos = commit.stream_seq;
                    status.advance(pos);
                }
                Some(Err(e)) => {
                    tracing::error!(reactor = reactor.name(), error = %e, "subscription error; resubscribing");
                    status.error(format!("subscription: {e}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Event type prefixes name their family as the codec's dispatch does (host
    /// mappings share the `host.` prefix); unknown types are left to the decoder.
    #[test]
    fn event_type_prefixes_name_their_family() {
        for (ty, family) in [
            ("instance.build_requested", Family::Instance),
            ("flavor.created", Family::Flavor),
            ("host.claimed", Family::Host),
            ("host.mapped", Family::HostMapping),
            ("cell.created", Family::Cell),
            ("image.created", Family::Image),
            ("user.created", Family::Identity),
            ("aggregate.created", Family::Aggregate),
            ("server_group.member_placed", Family::ServerGroup),
            ("quota.reserved", Family::Quota),
            ("keypair.created", Family::Keypair),
        ] {
            assert_eq!(Family::of_type(ty), Some(family), "{ty}");
        }
        assert_eq!(Family::of_type("bogus.set"), None);
    }
}
