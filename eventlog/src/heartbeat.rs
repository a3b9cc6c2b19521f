//! Liveness heartbeats: high-rate, low-value facts kept apart from the event log.
//!
//! A beat is `(service, id) -> payload` with the time it was received. Only the last
//! beat of each `(service, id)` is kept; beats are never part of the audit log and are
//! never replayed. On JetStream they live in their own stream (`<PREFIX>_HEARTBEATS`,
//! subjects `stratus.hb.<service>.<id>`, one message per subject, file storage, beats
//! older than a day dropped); with the embedded store they are in memory (all services
//! run in the one process).
//!
//! Invariant: [`Heartbeats::beats`] returns at most one beat per `(service, id)`, the
//! last one written.

use crate::LockExt;
use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::LogError;

/// The last beat of one service instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// Service kind, e.g. `compute`.
    pub service: String,
    /// Instance of the service, e.g. a host name.
    pub id: String,
    /// What the service reported (JSON by convention).
    pub payload: Vec<u8>,
    /// When the beat was stored, microseconds since the Unix epoch (the server's clock
    /// on JetStream).
    pub at: i64,
}

/// Where services report that they are alive.
#[async_trait]
pub trait Heartbeats: Send + Sync + 'static {
    /// Records a beat of `(service, id)`, replacing the previous one.
    async fn beat(&self, service: &str, id: &str, payload: &[u8]) -> Result<(), LogError>;

    /// The last beat of every `(service, id)` that ever beat (and was not dropped).
    async fn beats(&self) -> Result<Vec<Beat>, LogError>;
}

/// `(service, id) -> (payload, at)`.
type LastBeats = BTreeMap<(String, String), (Vec<u8>, i64)>;

/// Heartbeats in memory, for the single-process embedded deployment.
#[derive(Debug, Default)]
pub struct MemoryHeartbeats {
    last: Mutex<LastBeats>,
}

#[async_trait]
impl Heartbeats for MemoryHeartbeats {
    async fn beat(&self, service: &str, id: &str, payload: &[u8]) -> Result<(), LogError> {
        self.last.lock_or_recover().insert(
            (service.to_string(), id.to_string()),
            (payload.to_vec(), crate::now_micros()),
        );
        Ok(())
    }

    async fn beats(&self) -> Result<Vec<Beat>, LogError> {
        Ok(self
            .last
            .lock_or_recover()
            .iter()
            .map(|((service, id), (payload, at))| Beat {
                service: service.clone(),
                id: id.clone(),
                payload: payload.clone(),
                at: *at,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_keeps_the_last_beat_per_key() {
        let h = MemoryHeartbeats::default();
        h.beat("compute", "a", b"1").await.unwrap();
        h.beat("compute", "b", b"1").await.unwrap();
        h.beat("compute", "a", b"2").await.unwrap();
        let beats = h.beats().await.unwrap();
        assert_eq!(beats.len(), 2);
        assert_eq!(beats[0].id, "a");
        assert_eq!(beats[0].payload, b"2");
    }
}
