//! What the compute agent does with images: uploading a snapshot (createImage,
//! createBackup, shelve) into the image record the API created, rotating backups, and
//! deleting a shelved server's image at unshelve.
//!
//! Invariants:
//! - Every step reads the image's state from the world and appends only the step it
//!   lacks (`queued` -> formats set -> `saving` -> `active`), each with a dedupe id per
//!   image and step, so a retry after a crash (the reconciler re-drives the task) resumes
//!   where the last attempt stopped and never leaves the image `saving`.
//! - The simulated hypervisor has no disk to copy: the snapshot's data is recorded as
//!   the base image's (a copy of an unchanged root disk), or empty when the server was
//!   not booted from an active image. No data file is written; the image service serves
//!   a snapshot's download from its base image's file.
//! - An image deleted while its snapshot runs ends the upload without error (Nova logs
//!   "Image not found during snapshot" and clears the task).

use std::sync::Arc;

use domain::image::{ImageCommand, ImageData, ImageStatus};
use domain::instance::{BackupRequest, Instance};
use domain::{Ctx, ImageId};
use engine::{now, Engine, EngineError, Meta};
use uuid::Uuid;

/// MD5 and SHA-512 of no data (the snapshot of a server with no base image).
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
const EMPTY_SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

fn meta(image: ImageId, step: &str, correlation: &str) -> Meta {
    Meta::service(
        "compute",
        correlation,
        &image.to_string(),
        domain::dedupe::compute_image(image, step),
    )
}

fn ctx() -> Ctx {
    Ctx::service("compute", now(), Uuid::new_v4())
}

/// Uploads the snapshot of `inst` into `image`, step by step from the image's current
/// status; returns once it is `active` (or gone).
pub async fn upload(
    engine: &Arc<Engine>,
    inst: &Instance,
    image: ImageId,
    correlation: &str,
) -> Result<(), EngineError> {
    loop {
        let (status, formats_set) = {
            let v = engine.world().read();
            match v.images().get(&image) {
                None => return Ok(()),
                Some(r) => (
                    r.state.status,
                    r.state.spec.disk_format.is_some() && r.state.spec.container_format.is_some(),
                ),
            }
        };
        let (cmd, step) = match status {
            // Deactivation needs an active image: uploaded already.
            ImageStatus::Deleted | ImageStatus::Active | ImageStatus::Deactivated => return Ok(()),
            // Someone imports data into the snapshot's record: not the driver's to finish.
            ImageStatus::Uploading | ImageStatus::Importing => return Ok(()),
            // The driver names the formats of what it uploads (Nova leaves them out of
            // a snapshot's record until then).
            ImageStatus::Queued if !formats_set => {
                let changes = {
                    let v = engine.world().read();
                    let spec = &v.images().get(&image).expect("read above").state.spec;
                    let mut c = Vec::new();
                    if spec.disk_format.is_none() {
                        c.push(domain::image::ImageChange::DiskFormat(Some("qcow2".into())));
                    }
                    if spec.container_format.is_none() {
                        c.push(domain::image::ImageChange::ContainerFormat(Some(
                            "bare".into(),
                        )));
                    }
                    c
                };
                (ImageCommand::Update(changes), "formats")
            }
            ImageStatus::Queued => (ImageCommand::StartUpload, "start"),
            ImageStatus::Saving => (ImageCommand::FinishUpload(data_of(engine, inst)), "finish"),
        };
        match engine
            .image(&image, cmd, &ctx(), &meta(image, step, correlation))
            .await
        {
            Ok(_) => {}
            // Deleted meanwhile: nothing left to upload into.
            Err(EngineError::Domain(domain::DomainError::NotFound { .. })) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The recorded data of a snapshot of `inst`: its base image's.
fn data_of(engine: &Arc<Engine>, inst: &Instance) -> ImageData {
    let v = engine.world().read();
    uuid::Uuid::parse_str(&inst.spec.image_ref)
        .ok()
        .and_then(|u| v.images().get(&ImageId(u)))
        .and_then(|r| r.state.data.clone())
        .unwrap_or_else(|| ImageData {
            size: 0,
            checksum: EMPTY_MD5.into(),
            os_hash_algo: "sha512".into(),
            os_hash_value: EMPTY_SHA512.into(),
        })
}

/// Nova's `_rotate_backups`: of the server's backups of this type (images whose
/// `image_type` is `backup` with its `instance_uuid` and `backup_type`), keeps the
/// `rotation` newest and deletes the rest, oldest first.
pub async fn rotate(
    engine: &Arc<Engine>,
    inst: &Instance,
    backup: &BackupRequest,
    correlation: &str,
) -> Result<(), EngineError> {
    let mut backups: Vec<(domain::Timestamp, ImageId)> = {
        let v = engine.world().read();
        let id = inst.id().to_string();
        v.images()
            .iter()
            .filter(|(_, r)| r.state.status != ImageStatus::Deleted)
            .filter(|(_, r)| {
                let p = &r.state.spec.properties;
                p.get("image_type").map(String::as_str) == Some("backup")
                    && p.get("instance_uuid") == Some(&id)
                    && p.get("backup_type") == Some(&backup.backup_type)
            })
            .map(|(k, r)| (r.state.created_at, *k))
            .collect()
    };
    backups.sort();
    let excess = backups.len().saturating_sub(backup.rotation as usize);
    for (_, image) in backups.into_iter().take(excess) {
        delete(engine, image, correlation).await?;
    }
    Ok(())
}

/// Deletes `image` (gone already: nothing to do).
pub async fn delete(
    engine: &Arc<Engine>,
    image: ImageId,
    correlation: &str,
) -> Result<(), EngineError> {
    match engine
        .image(
            &image,
            ImageCommand::Delete,
            &ctx(),
            &meta(image, "delete", correlation),
        )
        .await
    {
        Ok(_) | Err(EngineError::Domain(domain::DomainError::NotFound { .. })) => Ok(()),
        Err(e) => Err(e),
    }
}
