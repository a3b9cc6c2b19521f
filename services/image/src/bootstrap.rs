//! The default image registered by every process with the API role: `cirros`.
//!
//! There is no network to fetch a real CirrOS image from, so its data is a small,
//! deterministic placeholder (a 4 KiB qcow2 v3 header announcing a 112 MiB virtual
//! disk, then a note and zeros): enough for Glance clients and for booting servers on
//! the simulated hypervisor, not a bootable disk. Its id is the well-known
//! `70a599e0-31e7-49b7-b260-868f441e862b` (Nova's API samples use it).
//!
//! Invariants: idempotent (a present image is left as it is, a deleted one stays
//! deleted); every API process writes the placeholder file into its own image
//! directory if missing (same bytes, so the same checksums as recorded).

use domain::image::{ImageCommand, ImageSpec, ImageStatus, Visibility};
use domain::{Ctx, DomainError, ImageId};
use engine::{Engine, EngineError, Meta};

use crate::store::{digest, ImageStore, StoreError};

/// Id of the default image.
pub const CIRROS_ID: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

/// Name of the default image.
pub const CIRROS_NAME: &str = "cirros";

/// The placeholder data of the default image (4 KiB, deterministic).
pub fn cirros_placeholder() -> Vec<u8> {
    let mut b = Vec::with_capacity(4096);
    b.extend_from_slice(b"QFI\xfb"); // qcow2 magic
    b.extend_from_slice(&3u32.to_be_bytes()); // version
    b.extend_from_slice(&0u64.to_be_bytes()); // backing file offset
    b.extend_from_slice(&0u32.to_be_bytes()); // backing file size
    b.extend_from_slice(&16u32.to_be_bytes()); // cluster bits (64 KiB)
    b.extend_from_slice(&(112u64 * 1024 * 1024).to_be_bytes()); // virtual size
    b.extend_from_slice(&0u32.to_be_bytes()); // crypt method
    b.extend_from_slice(&0u32.to_be_bytes()); // l1 size
    b.extend_from_slice(&[0u8; 8 * 2 + 4 * 2 + 8]); // l1/refcount offsets, clusters, snapshots
    b.resize(512, 0);
    b.extend_from_slice(
        b"Stratus placeholder for cirros: a qcow2 header only, not a bootable disk.\n",
    );
    b.resize(4096, 0);
    b
}

/// The spec of the default image.
pub fn cirros_spec() -> ImageSpec {
    ImageSpec {
        id: ImageId::parse(CIRROS_ID).expect("valid uuid"),
        name: Some(CIRROS_NAME.into()),
        owner: "admin".into(),
        visibility: Visibility::Public,
        protected: false,
        disk_format: Some("qcow2".into()),
        container_format: Some("bare".into()),
        min_disk: 0,
        min_ram: 0,
        tags: Default::default(),
        properties: Default::default(),
    }
}

/// Why the bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A command failed.
    #[error("cannot register the default image: {0}")]
    Engine(#[from] EngineError),
    /// Its file could not be written.
    #[error("cannot write the default image: {0}")]
    Store(#[from] StoreError),
}

fn meta(step: &str, id: &ImageId) -> Meta {
    Meta::service(
        "bootstrap",
        &format!("req-{}", uuid::Uuid::new_v4()),
        "bootstrap",
        domain::dedupe::bootstrap_image(step, id),
    )
}

/// Registers `cirros` (public, qcow2/bare, active) unless it exists, and makes sure
/// this process's image directory holds its file.
pub async fn ensure_default_images(
    engine: &Engine,
    store: &ImageStore,
) -> Result<(), BootstrapError> {
    let spec = cirros_spec();
    let id = spec.id;
    let bytes = cirros_placeholder();
    let ctx = || Ctx::service("bootstrap", engine::now(), uuid::Uuid::new_v4());
    let status = |e: &Engine| e.world().read().images().get(&id).map(|r| r.state.status);
    if status(engine).is_none() {
        match engine
            .image(
                &id,
                ImageCommand::Create(spec),
                &ctx(),
                &meta("create", &id),
            )
            .await
        {
            // Another API process created it first.
            Ok(_) | Err(EngineError::Domain(DomainError::Conflict(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if status(engine) == Some(ImageStatus::Deleted) {
        return Ok(());
    }
    let data = if store.exists(&id) {
        digest(&bytes)
    } else {
        store.write_bytes(&id, &bytes).await?
    };
    if status(engine) == Some(ImageStatus::Queued) {
        engine
            .image(&id, ImageCommand::StartUpload, &ctx(), &meta("upload", &id))
            .await?;
    }
    if status(engine) == Some(ImageStatus::Saving) {
        match engine
            .image(
                &id,
                ImageCommand::FinishInspectedUpload {
                    data,
                    virtual_size: imageformat::inspect(bytes.as_slice())
                        .ok()
                        .map(|i| i.virtual_size),
                },
                &ctx(),
                &meta("finish", &id),
            )
            .await
        {
            Ok(_) | Err(EngineError::Domain(DomainError::Conflict(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
