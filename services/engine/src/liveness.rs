//! Which compute hosts are alive, from their heartbeats (Nova's servicegroup).
//!
//! Compute agents beat every `report_interval` under service `compute` with the host
//! name as id. A host is **down** when its last beat is older than `service_down_time`;
//! a host that never beat (its agent has not started yet, or beats were lost with an
//! in-memory store) is **unknown** and treated as up, so a fresh deployment can
//! schedule before the first refresh. The scheduler never chooses a down host.
//! Clocks of the machines must agree (NTP), as in Nova: beat times are the storing
//! server's clock, compared with the local one.

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
    down_after: Duration,
    last: RwLock<HashMap<String, i64>>,
}

impl Liveness {
    /// Hosts are down after `down_after` without a beat.
    pub fn new(down_after: Duration) -> Self {
        Liveness {
            down_after,
            last: RwLock::default(),
        }
    }

    /// The configured down time.
    pub fn down_after(&self) -> Duration {
        self.down_after
    }

    /// Takes in the compute beats of `beats` (newer times win).
    pub fn record(&self, beats: &[Beat]) {
        let mut last = self.last.write().unwrap_or_else(|p| p.into_inner());
        for b in beats.iter().filter(|b| b.service == COMPUTE_SERVICE) {
            let t = last.entry(b.id.clone()).or_insert(b.at);
            *t = (*t).max(b.at);
        }
    }

    /// State of `host` at time `now` (µs since the epoch).
    pub fn state(&self, host: &HostName, now: i64) -> HostLiveness {
        match self
            .last
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(host.as_str())
        {
            None => HostLiveness::Unknown,
            Some(&at) if now.saturating_sub(at) > self.down_after.as_micros() as i64 => {
                HostLiveness::Down(at)
            }
            Some(&at) => HostLiveness::Up(at),
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
        let l = Liveness::new(Duration::from_secs(60));
        let h = HostName::new("h1").unwrap();
        assert_eq!(l.state(&h, 0), HostLiveness::Unknown);
        assert!(l.state(&h, 0).schedulable());
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
            HostLiveness::Unknown
        );
    }
}
