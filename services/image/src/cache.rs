//! Glance's image cache (`image_cache_dir`, Images API v2.14): a local, on-disk copy of
//! image data beside the stores, filled when an image is downloaded (Glance's cache
//! middleware) or when an admin queues it (`PUT /v2/cache/{id}`, then Glance's cache
//! worker / prefetcher), listed and emptied through `/v2/cache`.
//!
//! Layout of the cache directory (Glance's):
//! - `<dir>/<uuid>`: a cached image, complete and checked (its MD5 is the image's
//!   `checksum`);
//! - `<dir>/incomplete/<uuid>`: a fill in progress (removed at open: a fill a crash
//!   interrupted is never served);
//! - `<dir>/queue/<uuid>`: an empty marker per queued image, queued in marker mtime order;
//! - `<dir>/meta/<uuid>`: the entry's hits and access times (JSON), what Glance's sqlite
//!   driver keeps in its `cached_images` table.
//!
//! Invariants:
//! - The cache is derived, local state: it never enters the event log. Everything in it
//!   can be dropped at any time (clear, prune, a lost disk) and is filled again from the
//!   stores; it belongs to this process as Glance's cache belongs to its API node.
//! - A cached file is published by a rename after its checksum matched: a reader never
//!   sees partial or wrong data. A mismatching fill is dropped.
//! - Entries are changed under one lock (publishing, removing, counting hits), so that a
//!   clear never races a fill into a half-listed state.
//! - Deleting an image removes it from the cache and the queue ([`ImageCache::forget`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use domain::image::{Image, ImageStatus};
use domain::ImageId;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::Caller;
use crate::error::ImageError;
use crate::extract::Path as IdPath;
use crate::ImageState;

/// Glance's default `image_cache_max_size` (10 GiB).
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024 * 1024;

/// Glance's default `cache_prefetcher_interval` (300 s).
pub const DEFAULT_PREFETCHER_INTERVAL: Duration = Duration::from_secs(300);

const INCOMPLETE: &str = "incomplete";
const QUEUE: &str = "queue";
const META: &str = "meta";

/// One cached image as `GET /v2/cache` lists it (Glance's `cached_images` rows).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedImage {
    /// The image.
    pub image_id: String,
    /// Downloads served from the cache.
    pub hits: u64,
    /// Last download served from the cache (seconds since the epoch; when cached, until
    /// the first hit).
    pub last_accessed: f64,
    /// When the file was cached (seconds since the epoch).
    pub last_modified: f64,
    /// Bytes.
    pub size: u64,
}

impl CachedImage {
    /// Glance's JSON of the row.
    pub fn to_json(&self) -> Value {
        json!({
            "image_id": self.image_id,
            "hits": self.hits,
            "last_accessed": self.last_accessed,
            "last_modified": self.last_modified,
            "size": self.size,
        })
    }
}

/// The sidecar of a cached file.
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    hits: u64,
    last_accessed: f64,
    last_modified: f64,
}

/// Why a fill did not cache anything.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// The data read does not have the image's checksum.
    #[error("cached data of image {0} does not match its checksum")]
    Checksum(ImageId),
    /// The disk failed.
    #[error("image cache: {0}")]
    Io(#[from] std::io::Error),
}

/// The cache directory (see the module documentation).
#[derive(Debug)]
pub struct ImageCache {
    dir: PathBuf,
    max_size: u64,
    /// Entry changes, and the images being filled now (one fill per image).
    state: Mutex<HashSet<ImageId>>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn remove_if_exists(p: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The image ids named by the regular files of `dir`.
fn ids_in(dir: &Path) -> Vec<(ImageId, std::fs::Metadata)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| {
            let id = ImageId::parse(&e.file_name().to_string_lossy())?;
            let md = e.metadata().ok().filter(|m| m.is_file())?;
            Some((id, md))
        })
        .collect()
}

impl ImageCache {
    /// Opens (creates) the cache directory, dropping fills a stop interrupted.
    pub fn open(dir: impl Into<PathBuf>, max_size: u64) -> std::io::Result<Self> {
        let dir = dir.into();
        for sub in [INCOMPLETE, QUEUE, META] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for (id, _) in ids_in(&dir.join(INCOMPLETE)) {
            tracing::warn!(image = %id, "removing an interrupted image cache fill");
            remove_if_exists(&dir.join(INCOMPLETE).join(id.to_string()))?;
        }
        Ok(ImageCache {
            dir,
            max_size,
            state: Mutex::new(HashSet::new()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &ImageId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn sub(&self, sub: &str, id: &ImageId) -> PathBuf {
        self.dir.join(sub).join(id.to_string())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ImageId>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_meta(&self, id: &ImageId) -> Meta {
        let v: Value = std::fs::read(self.sub(META, id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Meta {
            hits: v["hits"].as_u64().unwrap_or(0),
            last_accessed: v["last_accessed"].as_f64().unwrap_or(0.0),
            last_modified: v["last_modified"].as_f64().unwrap_or(0.0),
        }
    }

    /// Writes an entry's sidecar (through a temp file: a crash leaves the old one).
    fn write_meta(&self, id: &ImageId, m: &Meta) -> std::io::Result<()> {
        let target = self.sub(META, id);
        let tmp = target.with_extension("tmp");
        let v = json!({
            "hits": m.hits,
            "last_accessed": m.last_accessed,
            "last_modified": m.last_modified,
        });
        std::fs::write(&tmp, v.to_string())?;
        std::fs::rename(tmp, target)
    }

    /// Whether the image's data is cached.
    pub fn is_cached(&self, id: &ImageId) -> bool {
        self.path(id).is_file()
    }

    /// The cached images, by image id (Glance's order).
    pub fn cached(&self) -> Vec<CachedImage> {
        let _g = self.lock();
        let mut out: Vec<CachedImage> = ids_in(&self.dir)
            .into_iter()
            .map(|(id, md)| {
                let m = self.read_meta(&id);
                CachedImage {
                    image_id: id.to_string(),
                    hits: m.hits,
                    last_accessed: m.last_accessed,
                    last_modified: m.last_modified,
                    size: md.len(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.image_id.cmp(&b.image_id));
        out
    }

    /// The queued image ids, oldest first.
    pub fn queued(&self) -> Vec<String> {
        let mut q: Vec<(SystemTime, String)> = ids_in(&self.dir.join(QUEUE))
            .into_iter()
            .map(|(id, md)| (md.modified().unwrap_or(UNIX_EPOCH), id.to_string()))
            .collect();
        q.sort();
        q.into_iter().map(|(_, id)| id).collect()
    }

    /// Queues an image for caching; false when it is cached, being cached or queued
    /// already (Glance's `queue_image`).
    pub fn queue(&self, id: &ImageId) -> std::io::Result<bool> {
        let g = self.lock();
        let marker = self.sub(QUEUE, id);
        if self.is_cached(id) || g.contains(id) || marker.is_file() {
            return Ok(false);
        }
        std::fs::File::create(marker)?;
        Ok(true)
    }

    /// Removes an image from the cache and the queue (`DELETE /v2/cache/{id}`, and the
    /// image's deletion).
    pub fn forget(&self, id: &ImageId) -> std::io::Result<()> {
        let _g = self.lock();
        remove_if_exists(&self.path(id))?;
        remove_if_exists(&self.sub(META, id))?;
        remove_if_exists(&self.sub(QUEUE, id))?;
        Ok(())
    }

    /// Whether the cache or the queue holds the image.
    pub fn holds(&self, id: &ImageId) -> bool {
        self.is_cached(id) || self.sub(QUEUE, id).is_file()
    }

    /// Empties the cache; returns how many images it held.
    pub fn clear_cached(&self) -> std::io::Result<usize> {
        let _g = self.lock();
        let ids = ids_in(&self.dir);
        for (id, _) in &ids {
            remove_if_exists(&self.path(id))?;
            remove_if_exists(&self.sub(META, id))?;
        }
        Ok(ids.len())
    }

    /// Empties the queue; returns how many images it held.
    pub fn clear_queue(&self) -> std::io::Result<usize> {
        let _g = self.lock();
        let ids = ids_in(&self.dir.join(QUEUE));
        for (id, _) in &ids {
            remove_if_exists(&self.sub(QUEUE, id))?;
        }
        Ok(ids.len())
    }

    /// The cached file of an image to serve a download from, counting the hit (Glance's
    /// `open_for_read`: hits + 1, `last_accessed` now). None when not cached.
    pub fn hit(&self, id: &ImageId) -> Option<std::fs::File> {
        let _g = self.lock();
        let f = std::fs::File::open(self.path(id)).ok()?;
        let mut m = self.read_meta(id);
        m.hits += 1;
        m.last_accessed = now();
        if let Err(e) = self.write_meta(id, &m) {
            tracing::warn!(image = %id, error = %e, "cannot count an image cache hit");
        }
        Some(f)
    }

    /// Copies `src` (the image's data in its store) into the cache, checking it against
    /// `checksum` (MD5 hex) before publishing it, and takes the image off the queue.
    /// Ok(false) when it is cached or being cached already.
    pub async fn fill(&self, id: &ImageId, src: &Path, checksum: &str) -> Result<bool, FillError> {
        {
            let mut g = self.lock();
            if self.is_cached(id) || !g.insert(*id) {
                return Ok(false);
            }
        }
        let incomplete = self.sub(INCOMPLETE, id);
        let copied = copy_checked(src, &incomplete, checksum).await;
        let mut g = self.lock();
        g.remove(id);
        let result = match copied {
            Ok(true) => (|| {
                std::fs::rename(&incomplete, self.path(id))?;
                let t = now();
                self.write_meta(
                    id,
                    &Meta {
                        hits: 0,
                        last_accessed: t,
                        last_modified: t,
                    },
                )?;
                remove_if_exists(&self.sub(QUEUE, id))?;
                Ok(true)
            })(),
            Ok(false) => Err(FillError::Checksum(*id)),
            Err(e) => Err(e.into()),
        };
        if result.is_err() {
            let _ = remove_if_exists(&incomplete);
        }
        result
    }

    /// Glance's pruner: removes the least recently accessed images until the cache
    /// holds at most `image_cache_max_size` bytes. Returns (files, bytes) removed.
    pub fn prune(&self) -> std::io::Result<(usize, u64)> {
        let _g = self.lock();
        let mut entries: Vec<(f64, ImageId, u64)> = ids_in(&self.dir)
            .into_iter()
            .map(|(id, md)| (self.read_meta(&id).last_accessed, id, md.len()))
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.2).sum();
        entries.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut files, mut bytes) = (0, 0);
        for (_, id, size) in entries {
            if total <= self.max_size {
                break;
            }
            remove_if_exists(&self.path(&id))?;
            remove_if_exists(&self.sub(META, &id))?;
            total -= size;
            files += 1;
            bytes += size;
        }
        Ok((files, bytes))
    }
}

/// Copies `src` to `dst` hashing it: Ok(true) when its MD5 is `checksum` (the copy is
/// then synced to disk).
async fn copy_checked(src: &Path, dst: &Path, checksum: &str) -> std::io::Result<bool> {
    let mut from = tokio::fs::File::open(src).await?;
    let mut to = tokio::fs::File::create(dst).await?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        to.write_all(&buf[..n]).await?;
    }
    to.sync_all().await?;
    Ok(hex::encode(md5.finalize()) == checksum)
}

/// What the prefetcher needs: the cache and where image data is.
#[derive(Clone)]
pub struct Prefetcher {
    /// The cache.
    pub cache: Arc<ImageCache>,
    /// The image stores' files.
    pub store: Arc<crate::ImageStore>,
    /// The stores and their weights (where an image's data is read from).
    pub stores: crate::Stores,
}

impl Prefetcher {
    /// Caches one image (Glance's `fetch_image_into_cache`): an active image with data,
    /// read from its best store. Ok(true) when it is cached now.
    pub async fn fetch(&self, img: &Image) -> Result<bool, FillError> {
        let Some(data) = img
            .data
            .as_ref()
            .filter(|_| img.status == ImageStatus::Active)
        else {
            tracing::warn!(image = %img.spec.id, "image is not active: not caching it");
            return Ok(false);
        };
        let src = self.stores.data_path(&self.store, img);
        self.cache.fill(&img.spec.id, &src, &data.checksum).await?;
        Ok(self.cache.is_cached(&img.spec.id))
    }

    /// One pass of Glance's prefetcher and pruner: caches every queued image, drops
    /// queued images that no longer exist, then prunes the cache to its size.
    pub async fn run(&self, engine: &engine::Engine) -> Result<(), FillError> {
        let mut failed = 0;
        for raw in self.cache.queued() {
            let Some(id) = ImageId::parse(&raw) else {
                continue;
            };
            let img = engine.world().read().image(&id).cloned();
            match img {
                None => {
                    tracing::warn!(image = %id, "queued image not found: dropped from the cache queue");
                    self.cache.forget(&id)?;
                }
                Some(img) => {
                    if let Err(e) = self.fetch(&img).await {
                        tracing::warn!(image = %id, error = %e, "prefetching an image failed");
                        failed += 1;
                    } else if engine.world().read().image(&id).is_none() {
                        // Deleted while it was being cached.
                        self.cache.forget(&id)?;
                    }
                }
            }
        }
        let (files, bytes) = self.cache.prune()?;
        if files > 0 {
            tracing::info!(files, bytes, "image cache pruned");
        }
        if failed > 0 {
            tracing::warn!(failed, "not every queued image could be cached");
        }
        Ok(())
    }
}

/// The cache, or Glance's 404 when this service caches nothing.
fn enabled(st: &ImageState) -> Result<&Arc<ImageCache>, ImageError> {
    st.cache.as_ref().ok_or_else(|| {
        ImageError::new(
            StatusCode::NOT_FOUND,
            "Caching via API is not supported at this site.",
        )
    })
}

fn io(e: std::io::Error) -> ImageError {
    ImageError::Storage(e)
}

/// GET /v2/cache (admin, `cache_list`): the cached and the queued images.
pub async fn list(State(st): State<ImageState>) -> Result<Json<Value>, ImageError> {
    let cache = enabled(&st)?;
    Ok(Json(json!({
        "cached_images": cache.cached().iter().map(CachedImage::to_json).collect::<Vec<_>>(),
        "queued_images": cache.queued(),
    })))
}

/// PUT /v2/cache/{id} (admin, `cache_image`): 202; queues an active image and caches
/// it at once in the background (Glance's cache worker), the prefetcher catching
/// whatever is left queued.
pub async fn queue(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
) -> Result<StatusCode, ImageError> {
    let img = crate::visible(&st, &id, &caller)
        .map_err(|_| ImageError::new(StatusCode::NOT_FOUND, format!("Image {id} not found.")))?;
    let cache = enabled(&st)?;
    if img.status != ImageStatus::Active {
        return Err(ImageError::bad_request(
            "Only images with status active can be targeted for queueing",
        ));
    }
    let iid = img.spec.id;
    if cache.queue(&iid).map_err(io)? {
        let p = st.prefetcher(cache.clone());
        tokio::spawn(async move {
            if let Err(e) = p.fetch(&img).await {
                tracing::warn!(image = %iid, error = %e, "caching a queued image failed");
            }
        });
    }
    Ok(StatusCode::ACCEPTED)
}

/// DELETE /v2/cache/{id} (admin, `cache_delete`): 204; out of the cache and the queue.
/// An image that no longer exists may still be removed from them.
pub async fn delete(
    State(st): State<ImageState>,
    IdPath(id): IdPath,
) -> Result<StatusCode, ImageError> {
    let not_found = || ImageError::new(StatusCode::NOT_FOUND, format!("Image {id} not found."));
    let iid = ImageId::parse(&id).ok_or_else(not_found)?;
    let exists = st.engine.world().read().image(&iid).is_some();
    if !exists && !st.cache.as_ref().is_some_and(|c| c.holds(&iid)) {
        return Err(not_found());
    }
    enabled(&st)?.forget(&iid).map_err(io)?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /v2/cache (admin, `cache_delete`): 204; empties the cache, the queue or both
/// (`x-image-cache-clear-target`: `cache`, `queue`, or empty/absent for both).
pub async fn clear(
    State(st): State<ImageState>,
    headers: HeaderMap,
) -> Result<StatusCode, ImageError> {
    let cache = enabled(&st)?;
    let target = headers
        .get("x-image-cache-clear-target")
        .map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase())
        .unwrap_or_default();
    let (cached, queued) = match target.as_str() {
        "" => (true, true),
        "cache" => (true, false),
        "queue" => (false, true),
        _ => return Err(ImageError::bad_request(
            "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string.",
        )),
    };
    if cached {
        let n = cache.clear_cached().map_err(io)?;
        tracing::info!(images = n, "image cache cleared");
    }
    if queued {
        let n = cache.clear_queue().map_err(io)?;
        tracing::info!(images = n, "image cache queue cleared");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ImageId {
        ImageId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
    }

    #[tokio::test]
    async fn fill_hit_queue_clear_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"hello").unwrap();
        let sum = hex::encode(Md5::digest(b"hello"));
        let c = ImageCache::open(dir.path().join("cache"), 7).unwrap();
        let (a, b) = (id(), id());
        assert!(c.queue(&a).unwrap());
        assert!(!c.queue(&a).unwrap(), "queued once");
        assert_eq!(c.queued(), vec![a.to_string()]);
        assert!(c.fill(&a, &src, &sum).await.unwrap());
        assert!(
            c.queued().is_empty(),
            "a fill takes the image off the queue"
        );
        assert!(!c.queue(&a).unwrap(), "cached images are not queued");
        // A checksum mismatch caches nothing.
        assert!(matches!(
            c.fill(&b, &src, "00").await,
            Err(FillError::Checksum(_))
        ));
        assert!(!c.is_cached(&b));
        assert!(c.fill(&b, &src, &sum).await.unwrap());
        assert!(c.hit(&a).is_some());
        let l = c.cached();
        let a_row = l.iter().find(|r| r.image_id == a.to_string()).unwrap();
        assert_eq!((l.len(), a_row.hits, a_row.size), (2, 1, 5));
        assert!(a_row.last_accessed >= a_row.last_modified);
        // Over 7 bytes: the least recently accessed (b) goes.
        assert_eq!(c.prune().unwrap(), (1, 5));
        assert!(c.is_cached(&a) && !c.is_cached(&b));
        c.queue(&b).unwrap();
        assert_eq!(c.clear_cached().unwrap(), 1);
        assert_eq!(c.clear_queue().unwrap(), 1);
        assert!(c.cached().is_empty() && c.queued().is_empty());
    }
}
