//! The config drive: the metadata documents as files of an ISO 9660 volume labelled
//! `config-2` (cloud-init's ConfigDrive datasource looks for that label), made as Nova
//! makes it, by genisoimage with Rock Ridge and Joliet names.
//!
//! The compute driver calls [`files`] when it builds a guest that asked for a drive
//! (`config_drive: true` on create, or the deployment's `--force-config-drive`) and
//! [`build_iso`] to write the volume it attaches.

use std::path::{Component, Path};
use std::process::Command;

use domain::InstanceId;
use projections::views::Views;

use crate::{config_drive_tree, Error, InstanceMetadata, Options};

/// The volume label cloud-init looks for.
pub const LABEL: &str = "config-2";

/// The drive's tree for `instance_id` with the default [`Options`]; None when the read
/// model has no such live instance.
pub fn files(views: &Views, instance_id: &InstanceId) -> Option<Vec<(String, Vec<u8>)>> {
    files_with(views, instance_id, &Options::default())
}

/// [`files`] with explicit options.
pub fn files_with(
    views: &Views,
    instance_id: &InstanceId,
    opts: &Options,
) -> Option<Vec<(String, Vec<u8>)>> {
    let md = InstanceMetadata::from_views(views, instance_id, opts)?;
    Some(config_drive_tree(&md))
}

/// Whether a guest gets a config drive: it asked for one, or the deployment forces
/// drives on every guest (Nova's `force_config_drive`).
pub fn required(requested: bool, force: bool) -> bool {
    requested || force
}

/// Writes `files` as an ISO 9660 volume labelled `config-2` at `dest`, with
/// genisoimage's options as Nova passes them (`-ldots -allow-lowercase
/// -allow-multidot -l -J -r -V config-2`). Needs `genisoimage` on the PATH.
pub fn build_iso(files: &[(String, Vec<u8>)], dest: &Path) -> Result<(), Error> {
    let staging = tempdir_near(dest)?;
    let result = (|| {
        for (path, data) in files {
            let rel = Path::new(path);
            if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(Error::BadPath(path.clone()));
            }
            let full = staging.join(rel);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&full, data)?;
        }
        let out = Command::new("genisoimage")
            .arg("-o")
            .arg(dest)
            .args(["-ldots", "-allow-lowercase", "-allow-multidot", "-l"])
            .args(["-publisher", concat!("Stratus ", env!("CARGO_PKG_VERSION"))])
            .args(["-quiet", "-J", "-r", "-V", LABEL])
            .arg(&staging)
            .output()?;
        if !out.status.success() {
            return Err(Error::Genisoimage(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// A fresh staging directory beside `dest` (same filesystem, cleaned up by the caller).
fn tempdir_near(dest: &Path) -> Result<std::path::PathBuf, Error> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let dir = parent.join(format!(".config-drive-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
