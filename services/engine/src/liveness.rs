//! Which compute hosts are alive, from their heartbeats (Nova's servicegroup).
//!
//! Compute agents beat every `report_interval` under service `compute` with the host
//! name as id. A host is **down** when its last beat is older than `service_down_time`,
//! or when it never beat although this process has watched for longer than
//! `service_down_time` (an agent that died before its first beat). A host that never
//! beat is **unknown** for the first `service_down_time` after start and treated as up
//! then, so a fresh deployment (or a restarted embedded one, whose beats were in memory)
//! schedules before the agents' first beats. The scheduler never chooses a down host.
//! On the embedded store ([`Liveness::local`]) one process runs every agent and writes
//! every beat before it schedules, so a host that never beat in this process runs
//! nowhere: it is down at once (a host of an earlier `serve --hosts 6`, now started
//! with 4, is never chosen).
//! An engine built without heartbeats ([`Liveness::disabled`]) treats every host as up.
//! Clocks of the machines must agree (NTP), as in Nova: beat times are the storing
//! server's clock, compared with the local one.

use eventlog::RwLockExt;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use domain::HostName;
use eventlog::Beat;

/// The service name compute agents beat under.
pub const COMPUTE_SERVICE: &str = "compute";

/// What is known of a host's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostLiveness {
    /// Never beat (treated as up).
    Unknown,
    /// Last beat at this time (µs), recent enough.
    Up(i64),
    /// Last beat at this time (µs), older than the down time.
    Down(i64),
}

impl HostLiveness {
    /// Whether the scheduler may choose the host.
    pub fn schedulable(self) -> bool {
        !matches!(self, HostLiveness::Down(_))
    }
}

/// Last beat time per compute host, refreshed from the heartbeat store.
#[derive(Debug)]
pub struct Liveness {
    /// `None`: no heartbeats are watched, every host is up.
    down_after: Option<Duration>,
    /// When watching started (µs since the epoch).
    since: i64,
    /// Whether a host that never beat gets the grace of one down time.
    grace: bool,
    last: RwLock<HashMap<String, i64>>,
}

impl Liveness {
    /// Hosts are down after `down_after` without a beat, counting from `now` (µs) for
    /// hosts that never beat.
    pub fn new(down_after: Duration, now: i64) -> Self {
        Liveness {
            down_after: Some(down_after),
            since: now,
            grace: true,
            last: RwLock::default(),
        }
    }

    /// As [`Liveness::new`], for a process that writes every beat itself (the embedded
    /// store): a host that never beat is down at once.
    pub fn local(down_after: Duration, now: i64) -> Self {
        Liveness {
            grace: false,
            ..Self::new(down_after, now)
        }
    }

    /// No heartbeats watched: every host is up (engines in tests, tools).
    pub fn disabled() -> Self {
        Liveness {
            down_after: None,
            since: 0,
            grace: true,
            last: RwLock::default(),
        }
    }

    /// The configured down time (`None`: liveness is not watched).
    pub fn down_after(&self) -> Option<Duration> {
        self.down_after
    }

    /// Takes in the compute beats of `beats` (newer times win).
    pub fn record(&self, beats: &[Beat]) {
        let mut last = self.last.write_or_recover();
        for b in beats.iter().filter(|b| b.service == COMPUTE_SERVICE) {
            let t = last.entry(b.id.clone()).or_insert(b.at);
            *t = (*t).max(b.at);
        }
    }

    /// State of `host` at time `now` (µs since the epoch).
    pub fn state(&self, host: &HostName, now: i64) -> HostLiveness {
        self.state_in(self.last.read_or_recover().get(host.as_str()).copied(), now)
    }

    /// The state of any host at `now` under one read of the beats: the scheduler asks
    /// for every host of a decision, thousands at a time.
    pub fn snapshot(&self, now: i64) -> impl Fn(&HostName) -> HostLiveness + '_ {
        let last = self.last.read_or_recover();
        move |host| self.state_in(last.get(host.as_str()).copied(), now)
    }

    /// The state of a host whose last beat was at `last`.
    fn state_in(&self, last: Option<i64>, now: i64) -> HostLiveness {
        let Some(down_after) = self.down_after else {
            return HostLiveness::Unknown;
        };
        let down_after = down_after.as_micros() as i64;
        match last {
            None if !self.grace || now.saturating_sub(self.since) > down_after => {
                HostLiveness::Down(0)
            }
            None => HostLiveness::Unknown,
            Some(at) if now.saturating_sub(at) > down_after => HostLiveness::Down(at),
            Some(at) => HostLiveness::Up(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(id: &str, at: i64) -> Beat {
        Beat {
            service: COMPUTE_SERVICE.into(),
            id: id.into(),
            payload: vec![],
            at,
        }
    }

    #[test]
    fn hosts_go_down_after_the_down_time_and_come_back() {
        let l = Liveness::new(Duration::from_secs(60), 0);
        let h = HostName::new("h1").unwrap();
        assert_eq!(l.state(&h, 0), HostLiveness::Unknown);
        assert!(l.state(&h, 0).schedulable());
        // Never beat within the down time after start: down.
        assert_eq!(l.state(&h, 60_000_001), HostLiveness::Down(0));
        l.record(&[beat("h1", 1_000_000)]);
        assert_eq!(l.state(&h, 61_000_000), HostLiveness::Up(1_000_000));
        assert_eq!(l.state(&h, 61_000_001), HostLiveness::Down(1_000_000));
        assert!(!l.state(&h, 61_000_001).schedulable());
        // An older beat read late never moves time back.
        l.record(&[beat("h1", 500_000)]);
        assert_eq!(l.state(&h, 61_000_001), HostLiveness::Down(1_000_000));
        l.record(&[beat("h1", 61_000_000)]);
        assert_eq!(l.state(&h, 61_000_001), HostLiveness::Up(61_000_000));
        // Other services do not count.
        l.record(&[Beat {
            service: "scheduler".into(),
            ..beat("h2", 1)
        }]);
        assert_eq!(
            l.state(&HostName::new("h2").unwrap(), 100_000_000),
            HostLiveness::Down(0)
        );
    }

    #[test]
    fn a_local_liveness_gives_no_grace_to_hosts_that_never_beat() {
        let l = Liveness::local(Duration::from_secs(60), 0);
        let (h1, h2) = (HostName::new("h1").unwrap(), HostName::new("h2").unwrap());
        l.record(&[beat("h1", 0)]);
        assert_eq!(l.state(&h1, 1), HostLiveness::Up(0));
        assert_eq!(l.state(&h2, 1), HostLiveness::Down(0));
        assert!(!l.state(&h2, 1).schedulable());
    }

    #[test]
    fn disabled_liveness_keeps_every_host_up() {
        let l = Liveness::disabled();
        l.record(&[beat("h1", 1)]);
        let h = HostName::new("h1").unwrap();
        assert!(l.state(&h, i64::MAX).schedulable());
        assert!(l
            .state(&HostName::new("h2").unwrap(), i64::MAX)
            .schedulable());
    }
}

/// Reads the heartbeats into [`crate::Engine::liveness`]: a periodic task of the
/// [`crate::Runtime`] of a process that schedules.
#[derive(Debug, Default)]
pub struct Refresh;

#[async_trait::async_trait]
impl crate::Periodic for Refresh {
    fn name(&self) -> &str {
        "liveness"
    }

    async fn run(
        &self,
        engine: &std::sync::Arc<crate::Engine>,
    ) -> Result<(), crate::runtime::TaskError> {
        engine.refresh_liveness().await?;
        Ok(())
    }
}
