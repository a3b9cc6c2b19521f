//! Image data files: `<image-dir>/<uuid>` (by default `<data-dir>/images/<uuid>`).
//!
//! Invariants:
//! - A file named after an image id is complete and durable: data is streamed into
//!   `<uuid>.<random>.tmp`, fsynced, renamed to `<uuid>`, and the directory fsynced,
//!   before `image.upload_finished` is appended. A crash mid-upload leaves at most a
//!   `*.tmp` file (removed by [`ImageStore::open`]) and the image `saving` in the log.
//! - Size and checksums (`checksum` = MD5 hex, `os_hash_value` = SHA-512 hex) are
//!   computed over the bytes as they are written: what is recorded is what is stored.
//! - An upload larger than the limit is cut off at the limit and its temp file removed.
//! - With several stores, the default store's files are `<image-dir>/<uuid>` and another
//!   store's `<image-dir>/stores/<store>/<uuid>`, written the same way.
//! - Staged data (`glance-direct` imports) lives in `<image-dir>/staging/<uuid>`, written
//!   the same durable way; it is never served: an import copies it into the store
//!   through the same path as an upload, then removes it.
//! - Every way data enters the store ([`ImageStore::write`] / [`ImageStore::write_in`]:
//!   uploads, and imports of staged or downloaded data) is checked against the image's
//!   `disk_format` before the file is published (Glance's `[image_format]` checks,
//!   [`imageformat::glance_upload`]): refused data never becomes an image file,
//!   accepted data comes with the virtual size the inspection found.

use std::path::{Path, PathBuf};

use domain::image::ImageData;
use domain::ImageId;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use sha2::Sha512;
use tokio::io::AsyncWriteExt;

/// Why storing data failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// More bytes than the limit.
    #[error("image data over the {0}-byte limit")]
    TooLarge(u64),
    /// The client's body failed (disconnect, bad framing).
    #[error("upload interrupted: {0}")]
    Body(String),
    /// The disk failed.
    #[error("image storage: {0}")]
    Io(#[from] std::io::Error),
    /// The data's format inspection refused it (Glance's message).
    #[error("{0}")]
    Format(String),
    /// An import's source failed (a download, the source image): the import task's
    /// message.
    #[error("{0}")]
    Source(String),
}

/// What stored data is checked against: the image's formats (Glance inspects `bare`
/// containers only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatCheck {
    /// The claimed `disk_format`.
    pub disk_format: String,
    /// The `container_format`.
    pub container_format: String,
}

impl FormatCheck {
    /// The check of an image's data (None when its formats are not set).
    pub fn of(spec: &domain::image::ImageSpec) -> Option<FormatCheck> {
        Some(FormatCheck {
            disk_format: spec.disk_format.clone()?,
            container_format: spec.container_format.clone()?,
        })
    }

    /// [`FormatCheck::of`], or [`FormatCheck::unset`] for an image without formats
    /// (uploads and imports refuse those before any data arrives).
    pub fn of_image(spec: &domain::image::ImageSpec) -> FormatCheck {
        Self::of(spec).unwrap_or_else(Self::unset)
    }

    /// No formats: an empty claim, which the inspection does not treat as `bare`.
    pub fn unset() -> FormatCheck {
        FormatCheck {
            disk_format: String::new(),
            container_format: String::new(),
        }
    }
}

/// Data durably stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Size and checksums.
    pub data: ImageData,
    /// The virtual size the format inspection found (None: unknown).
    pub virtual_size: Option<u64>,
}

/// The directory of image files.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    /// Glance's `[image_format] require_image_format_match` (default true): refuse data
    /// whose content does not match its `disk_format`, or is unsafe.
    require_format_match: bool,
}

/// The staging area's directory, under the image directory.
const STAGING: &str = "staging";

/// The directory of the stores other than the default, under the image directory.
const STORES: &str = "stores";

/// Hashes data as it is written.
struct Hasher {
    md5: Md5,
    sha512: Sha512,
    size: u64,
}

impl Hasher {
    fn new() -> Self {
        Hasher {
            md5: Md5::new(),
            sha512: Sha512::new(),
            size: 0,
        }
    }

    fn update(&mut self, b: &[u8]) {
        self.md5.update(b);
        self.sha512.update(b);
        self.size += b.len() as u64;
    }

    fn finish(self) -> ImageData {
        ImageData {
            size: self.size,
            checksum: hex::encode(self.md5.finalize()),
            os_hash_algo: "sha512".into(),
            os_hash_value: hex::encode(self.sha512.finalize()),
        }
    }
}

/// Size and checksums of `bytes`, as an upload of them would record.
pub fn digest(bytes: &[u8]) -> ImageData {
    let mut h = Hasher::new();
    h.update(bytes);
    h.finish()
}

impl ImageStore {
    /// Opens (creates) the directory and its staging area, and removes temp files of
    /// interrupted uploads and stagings.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join(STAGING))?;
        let mut dirs = vec![dir.clone(), dir.join(STAGING)];
        if let Ok(stores) = std::fs::read_dir(dir.join(STORES)) {
            for e in stores.flatten() {
                if e.path().is_dir() {
                    dirs.push(e.path());
                }
            }
        }
        for d in dirs {
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                let name = entry.file_name();
                if name.to_string_lossy().ends_with(".tmp") {
                    tracing::warn!(file = %entry.path().display(), "removing the temp file of an interrupted upload");
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
        Ok(ImageStore {
            dir,
            require_format_match: true,
        })
    }

    /// Sets Glance's `require_image_format_match`: when false, data is stored whatever
    /// its content (the inspection only finds the virtual size).
    pub fn with_require_format_match(mut self, require: bool) -> Self {
        self.require_format_match = require;
        self
    }

    /// Whether data must match its `disk_format`.
    pub fn require_format_match(&self) -> bool {
        self.require_format_match
    }

    /// The staged data of an image (`PUT /v2/images/{id}/stage`): Glance's staging
    /// store, `<image-dir>/staging/<uuid>`, outside the store proper.
    pub fn staged_path(&self, id: &ImageId) -> PathBuf {
        self.dir.join(STAGING).join(id.to_string())
    }

    /// Streams `body` into the image's staging file (at most `limit` bytes), durably;
    /// returns its size and checksums. The data enters the store only by an import.
    pub async fn stage<S, E>(
        &self,
        id: &ImageId,
        body: S,
        limit: u64,
    ) -> Result<ImageData, StoreError>
    where
        S: Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // Staged data is checked when an import stores it.
        self.write_at(self.staged_path(id), body, limit, None)
            .await
            .map(|s| s.data)
    }

    /// Removes an image's staged data (absent: nothing to do).
    pub async fn unstage(&self, id: &ImageId) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.staged_path(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of an image.
    pub fn path(&self, id: &ImageId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// The file of an image in store `store` when it is not the default store:
    /// `<image-dir>/stores/<store>/<uuid>` (the default store's files are
    /// `<image-dir>/<uuid>`, [`ImageStore::path`]).
    pub fn path_in(&self, store: Option<&str>, id: &ImageId) -> PathBuf {
        match store {
            None => self.path(id),
            Some(s) => self.dir.join(STORES).join(s).join(id.to_string()),
        }
    }

    /// The directory of `store`'s files (None: the default store's, the image directory).
    pub fn dir_of(&self, store: Option<&str>) -> PathBuf {
        match store {
            None => self.dir.clone(),
            Some(s) => self.dir.join(STORES).join(s),
        }
    }

    /// Streams `body` into the image's file in `store` (None: the default store), as
    /// [`ImageStore::write`].
    pub async fn write_in<S, E>(
        &self,
        store: Option<&str>,
        id: &ImageId,
        body: S,
        limit: u64,
        check: &FormatCheck,
    ) -> Result<Stored, StoreError>
    where
        S: Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let target = self.path_in(store, id);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        self.write_at(target, body, limit, Some(check)).await
    }

    /// Removes an image's file from `store` (absent: nothing to do).
    pub async fn remove_in(&self, store: Option<&str>, id: &ImageId) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.path_in(store, id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether the image's file exists.
    pub fn exists(&self, id: &ImageId) -> bool {
        self.path(id).is_file()
    }

    /// Streams `body` into the image's file (at most `limit` bytes), checks it against
    /// `check` (see the module's invariants), then publishes it durably; returns its
    /// size, checksums and virtual size.
    pub async fn write<S, E>(
        &self,
        id: &ImageId,
        body: S,
        limit: u64,
        check: &FormatCheck,
    ) -> Result<Stored, StoreError>
    where
        S: Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.write_at(self.path(id), body, limit, Some(check)).await
    }

    /// Streams `body` into `target` through a temp file beside it, checks it (when
    /// `check` is given), then publishes it (fsync, rename, fsync of the directory).
    async fn write_at<S, E>(
        &self,
        target: PathBuf,
        mut body: S,
        limit: u64,
        check: Option<&FormatCheck>,
    ) -> Result<Stored, StoreError>
    where
        S: Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = target.with_file_name(format!("{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let result = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            let mut h = Hasher::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StoreError::Body(e.to_string()))?;
                if h.size + chunk.len() as u64 > limit {
                    return Err(StoreError::TooLarge(limit));
                }
                h.update(&chunk);
                f.write_all(&chunk).await?;
            }
            f.sync_all().await?;
            drop(f);
            let virtual_size = match check {
                Some(c) => self.inspect(&tmp, c).await?,
                None => None,
            };
            Ok(Stored {
                data: h.finish(),
                virtual_size,
            })
        }
        .await;
        match result {
            Ok(stored) => {
                self.publish(&tmp, &target).await?;
                Ok(stored)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Writes `bytes` as the image's file, durably, unchecked (bootstrap images: our
    /// own bytes).
    pub async fn write_bytes(&self, id: &ImageId, bytes: &[u8]) -> Result<ImageData, StoreError> {
        let chunk: Result<axum::body::Bytes, std::convert::Infallible> =
            Ok(axum::body::Bytes::copy_from_slice(bytes));
        self.write_at(
            self.path(id),
            futures::stream::iter([chunk]),
            u64::MAX,
            None,
        )
        .await
        .map(|s| s.data)
    }

    /// Glance's verdict on the data in `file`: its virtual size, or the refusal.
    async fn inspect(&self, file: &Path, check: &FormatCheck) -> Result<Option<u64>, StoreError> {
        if check.container_format != "bare" {
            // Glance does not look inside other containers.
            return Ok(None);
        }
        let path = file.to_path_buf();
        let inspected = tokio::task::spawn_blocking(move || imageformat::inspect_file(&path))
            .await
            .map_err(std::io::Error::other)?;
        match &inspected {
            Ok(i) if !i.is_safe() => {
                tracing::warn!(format = %i.format, violations = ?i.violations, "image data fails safety checks");
            }
            Err(e) => tracing::warn!(error = %e, "image data format inspection failed"),
            Ok(_) => {}
        }
        match imageformat::glance_upload(&check.disk_format, &inspected, self.require_format_match)
        {
            imageformat::UploadVerdict::Accept { virtual_size } => Ok(virtual_size),
            imageformat::UploadVerdict::Reject(m) => Err(StoreError::Format(m)),
        }
    }

    async fn publish(&self, tmp: &Path, target: &Path) -> std::io::Result<()> {
        tokio::fs::rename(tmp, target).await?;
        // The rename is durable once the directory is.
        let dir = target.parent().unwrap_or(&self.dir).to_path_buf();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }

    /// Removes an image's file (absent: nothing to do).
    pub async fn remove(&self, id: &ImageId) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.path(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
