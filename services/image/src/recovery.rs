//! Uploads that no process is running any more: images left `saving` by a process that
//! crashed (or lost its client without noticing) mid-upload go back to `queued`, as a
//! failed upload does in Glance, so that the owner can upload again. Likewise stagings
//! left `uploading` without staged data go back to `queued`, and imports left
//! `importing` fail cleanly (`image.import_failed`: `queued`, the store in
//! `os_glance_failed_import`, the lock dropped; the task in `failure`), so that the
//! owner can import again; an import task whose image already ended is ended to match.
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
use domain::task::{TaskCommand, TaskStatus};
use domain::{Ctx, ImageId, Timestamp};
use engine::{Engine, EngineError, Meta};
use eventlog::Actor;
use uuid::Uuid;

use crate::store::ImageStore;

/// Images `saving` for longer than `older_than` (by their last change).
pub fn stale_uploads(engine: &Engine, now: Timestamp, older_than: Duration) -> Vec<ImageId> {
    let cutoff = cutoff(now, older_than);
    engine
        .world()
        .read()
        .images()
        .values()
        .filter(|r| r.state.status == ImageStatus::Saving && r.state.updated_at.0 <= cutoff)
        .map(|r| r.state.spec.id)
        .collect()
}

fn cutoff(now: Timestamp, older_than: Duration) -> i64 {
    now.0
        .saturating_sub(i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX))
}

/// The recovery's context and envelope.
fn service() -> (Ctx, Meta) {
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
    (ctx, meta)
}

/// Why an interrupted import failed (its task's message).
pub const INTERRUPTED: &str =
    "Error: the import was interrupted: the image service stopped before it ended";

/// Ends stagings and imports no process is running any more (see the module docs);
/// returns how many images it changed.
pub async fn fail_stale_imports(
    engine: &Engine,
    store: &ImageStore,
    older_than: Duration,
) -> Result<usize, EngineError> {
    let cut = cutoff(engine::now(), older_than);
    let (stagings, imports, tasks) = {
        let w = engine.world().read();
        let old = |i: &domain::image::Image| i.updated_at.0 <= cut;
        let stagings: Vec<ImageId> = w
            .images()
            .values()
            .map(|r| &r.state)
            .filter(|i| i.status == ImageStatus::Uploading && i.staged.is_none() && old(i))
            .map(|i| i.spec.id)
            .collect();
        let imports: Vec<(ImageId, String)> = w
            .images()
            .values()
            .map(|r| &r.state)
            .filter(|i| i.import_task().is_some() && old(i))
            .filter_map(|i| Some((i.spec.id, i.import_task()?.to_string())))
            .collect();
        // Tasks still running whose image no longer holds their lock: the process
        // ended the image's side and stopped before ending the task.
        let tasks: Vec<(String, Option<ImageId>)> = w
            .tasks()
            .all()
            .filter(|t| {
                t.status == TaskStatus::Processing
                    && matches!(
                        t.spec.task_type.as_str(),
                        "api_image_import" | crate::locations::TASK_TYPE
                    )
                    && t.updated_at.0 <= cut
            })
            .filter_map(|t| {
                let input: serde_json::Value = serde_json::from_str(&t.spec.input).ok()?;
                let img = ImageId::parse(input.get("image_id")?.as_str()?)
                    .and_then(|id| w.image(&id).cloned());
                let locked = img
                    .as_ref()
                    .is_some_and(|i| i.import_task() == Some(t.spec.id.as_str()));
                if locked {
                    return None;
                }
                let imported = img
                    .filter(|i| matches!(i.status, ImageStatus::Active | ImageStatus::Deactivated))
                    .map(|i| i.spec.id);
                Some((t.spec.id.clone(), imported))
            })
            .collect();
        (stagings, imports, tasks)
    };
    let mut changed = 0;
    for id in stagings {
        let (ctx, meta) = service();
        engine
            .image(&id, ImageCommand::AbortStage, &ctx, &meta)
            .await?;
        if let Err(e) = store.unstage(&id).await {
            tracing::warn!(image = %id, error = %e, "could not remove an abandoned staging");
        }
        tracing::warn!(image = %id, "staging abandoned mid-way: image back to queued");
        changed += 1;
    }
    for (id, task) in imports {
        let (ctx, meta) = service();
        let location_import = engine
            .world()
            .read()
            .tasks()
            .get(&task)
            .is_some_and(|t| t.state.spec.task_type == crate::locations::TASK_TYPE);
        // A location import's location stays (the http store's) and its unfinished
        // hashing is failed (a validating import's image goes back to queued); any
        // other import fails as Glance leaves it.
        let cmd = if location_import {
            ImageCommand::EndLocationImport {
                task: task.clone(),
                hashes: None,
                ok: false,
            }
        } else {
            ImageCommand::FailImport {
                task: task.clone(),
                stores: None,
            }
        };
        engine.image(&id, cmd, &ctx, &meta).await?;
        engine
            .task(&task, TaskCommand::Fail(INTERRUPTED.into()), &ctx, &meta)
            .await?;
        if location_import {
            tracing::warn!(image = %id, task = %task, "location import abandoned mid-way: failed");
            changed += 1;
            continue;
        }
        let active = matches!(
            engine.world().read().image(&id).map(|i| i.status),
            Some(ImageStatus::Active | ImageStatus::Deactivated)
        );
        let removed = if active {
            // A copy: the stores that hold the data keep it; a half-written copy is
            // only ever a temp file (removed at start).
            Ok(())
        } else {
            store.remove(&id).await
        };
        for r in [store.unstage(&id).await, removed] {
            if let Err(e) = r {
                tracing::warn!(image = %id, error = %e, "could not remove an abandoned import's data");
            }
        }
        tracing::warn!(image = %id, task = %task, "import abandoned mid-way: failed, image back to queued");
        changed += 1;
    }
    for (task, imported) in tasks {
        let (ctx, meta) = service();
        let cmd = match imported {
            Some(id) => {
                TaskCommand::Succeed(serde_json::json!({"image_id": id.to_string()}).to_string())
            }
            None => TaskCommand::Fail(INTERRUPTED.into()),
        };
        engine.task(&task, cmd, &ctx, &meta).await?;
    }
    Ok(changed)
}

/// Sends every stale upload back to `queued`, and ends stale stagings and imports
/// ([`fail_stale_imports`]); returns how many images it changed.
pub async fn abort_stale_uploads(
    engine: &Engine,
    store: &ImageStore,
    older_than: Duration,
) -> Result<usize, EngineError> {
    let mut aborted = fail_stale_imports(engine, store, older_than).await?;
    for id in stale_uploads(engine, engine::now(), older_than) {
        let (ctx, meta) = service();
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
