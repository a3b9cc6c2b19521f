//! Uploads that no process is running any more: images left `saving` by a process that
//! crashed (or lost its client without noticing) mid-upload go back to `queued`, as a
//! failed upload does in Glance, so that the owner can upload again.
//!
//! Invariants:
//! - An image is aborted only when no upload can still be running for it: its `saving`
//!   status is older than `older_than`. Callers pass zero only when no upload can be in
//!   flight anywhere (the embedded store, before the image API listens: one process),
//!   otherwise at least the image transfer timeout (an upload request cannot outlive it).
//! - The abort is an ordinary `AbortUpload` command (OCC on the image's subject): an
//!   upload that finishes first wins and the abort is a no-op; a stale data file of the
//!   aborted upload is removed.

use std::time::Duration;

use domain::image::{ImageCommand, ImageStatus};
use domain::{Ctx, ImageId, Timestamp};
use engine::{Engine, EngineError, Meta};
use eventlog::Actor;
use uuid::Uuid;

use crate::store::ImageStore;

/// Images `saving` for longer than `older_than` (by their last change).
pub fn stale_uploads(engine: &Engine, now: Timestamp, older_than: Duration) -> Vec<ImageId> {
    let cutoff = now
        .0
        .saturating_sub(i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX));
    engine
        .world()
        .read()
        .images()
        .values()
        .filter(|r| r.state.status == ImageStatus::Saving && r.state.updated_at.0 <= cutoff)
        .map(|r| r.state.spec.id)
        .collect()
}

/// Sends every stale upload back to `queued`; returns how many were aborted.
pub async fn abort_stale_uploads(
    engine: &Engine,
    store: &ImageStore,
    older_than: Duration,
) -> Result<usize, EngineError> {
    let mut aborted = 0;
    for id in stale_uploads(engine, engine::now(), older_than) {
        let op = Uuid::new_v4();
        let ctx = Ctx::service("image-recovery", engine::now(), op);
        let rid = format!("req-{op}");
        let meta = Meta {
            correlation_id: rid.clone(),
            causation_id: rid,
            actor: Actor {
                user: "image-recovery".into(),
                project: "service".into(),
                roles: vec!["service".into()],
            },
            dedupe_id: None,
        };
        let before = engine.world().read().image(&id).map(|i| i.status);
        engine
            .image(&id, ImageCommand::AbortUpload, &ctx, &meta)
            .await?;
        let after = engine.world().read().image(&id).map(|i| i.status);
        if before == Some(ImageStatus::Saving) && after == Some(ImageStatus::Queued) {
            if let Err(e) = store.remove(&id).await {
                tracing::warn!(image = %id, error = %e, "could not remove a stale upload's file");
            }
            tracing::warn!(image = %id, "upload abandoned mid-way: image back to queued");
            aborted += 1;
        }
    }
    Ok(aborted)
}
