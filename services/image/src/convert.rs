//! Glance's `image_conversion` import plugin: data imported by `glance-direct` or
//! `web-download` is checked and converted with `qemu-img` to one output format before
//! it enters the stores, so that every image of a cloud is in the format its
//! hypervisors run best (`--image-import-plugins image_conversion`,
//! `--image-conversion-output-format raw|qcow2|vmdk`, Glance's
//! `[image_import_opts] image_import_plugins` and `[image_conversion] output_format`).
//!
//! Invariants (Glance's order of checks, so that Stratus refuses what Glance refuses):
//! - The staged file is inspected by [`imageformat`] before any `qemu-img` runs on it:
//!   its content must be the claimed `disk_format` (`gpt` counts as `raw`; an `iso`
//!   stays an `iso`, unconverted) and pass every safety check. `qemu-img` never opens a
//!   file that could make it follow a reference to a host file.
//! - `qemu-img info` runs under Glance's resource limits (1 GiB of address space, 2 s
//!   of CPU, through util-linux's `prlimit`) and must agree on the format; images with a
//!   backing file, an external data file or a VMDK create-type outside Glance's
//!   `vmdk_allowed_types` are refused.
//! - The converted file is inspected again and must be the output format (a format
//!   hidden in another is refused).
//! - Nothing here appends events: the caller records a success with the image's data
//!   (`image.converted` before `image.import_finished`) and a refusal as the import's
//!   failure (the image goes back to `queued`, as Glance's revert does). The converted
//!   file is removed by the caller after it has been stored, or here on failure.

use std::path::{Path, PathBuf};

use imageformat::{Format, InspectError};
use serde_json::Value;

/// Glance's `[image_format] vmdk_allowed_types` default: single-file VMDKs with a
/// sparse header, whose extents cannot name host files.
pub const VMDK_ALLOWED_TYPES: &[&str] = &["streamOptimized", "monolithicSparse"];

/// Output formats of the plugin (Glance's `output_format` choices).
pub const OUTPUT_FORMATS: &[&str] = &["qcow2", "raw", "vmdk"];

/// The import plugins Stratus has (Glance's `image_import_plugins` names).
pub const PLUGINS: &[&str] = &["image_conversion"];

/// Glance's limits on `qemu-img info` (`QEMU_IMG_PROC_LIMITS`): a crafted image must
/// not make it eat memory or CPU.
const QEMU_IMG_ADDRESS_SPACE: u64 = 1024 * 1024 * 1024;
const QEMU_IMG_CPU_SECONDS: u64 = 2;

/// The plugin's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The format imported data ends in (one of [`OUTPUT_FORMATS`]).
    pub output_format: String,
}

/// Why the plugin refused the data (the import task's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The data to store after the plugin ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The file to store: the source itself, or the converted file beside it.
    pub path: PathBuf,
    /// The image's new disk format (None: the source is stored as it is).
    pub disk_format: Option<String>,
}

impl Converted {
    /// Removes the converted file (never the source).
    pub async fn cleanup(&self, source: &Path) {
        if self.path != source {
            let _ = tokio::fs::remove_file(&self.path).await;
        }
    }
}

/// qemu's name of a Glance disk format (`vhd` is qemu's `vpc` driver; Glance passes
/// `vhd`, which qemu-img does not know, so a VHD import could never succeed).
fn qemu_format(disk_format: &str) -> &str {
    match disk_format {
        "vhd" => "vpc",
        f => f,
    }
}

/// Glance's name of a format qemu-img reports.
fn glance_format(qemu: &str) -> &str {
    match qemu {
        "vpc" => "vhd",
        f => f,
    }
}

/// The inspected format of a file, Glance's `_inspect_path`: a refusal when detection
/// fails or a safety check fails; `gpt` counts as `raw`.
async fn inspect(path: &Path) -> Result<Format, Refused> {
    let p = path.to_path_buf();
    let inspected = tokio::task::spawn_blocking(move || imageformat::inspect_file(&p))
        .await
        .map_err(|e| Refused(format!("Unable to inspect image: {e}")))?;
    match inspected {
        Err(InspectError::Multiple(_)) => Err(Refused("Image format detection failed".into())),
        Err(InspectError::Io(_)) => Err(Refused("Unable to inspect image".into())),
        Ok(i) if !i.is_safe() => Err(Refused("Image has disallowed configuration".into())),
        Ok(i) if i.format == Format::Gpt => Ok(Format::Raw),
        Ok(i) => Ok(i.format),
    }
}

/// Runs `qemu-img` with `args`, under the resource limits when `limited`; its stdout,
/// or a refusal with its stderr (Glance fails on any stderr output).
async fn qemu_img(args: &[&str], limited: bool) -> Result<String, Refused> {
    let mut cmd = if limited {
        let mut c = tokio::process::Command::new("prlimit");
        c.arg(format!("--as={QEMU_IMG_ADDRESS_SPACE}"))
            .arg(format!("--cpu={QEMU_IMG_CPU_SECONDS}"))
            .arg("--")
            .arg("qemu-img");
        c
    } else {
        tokio::process::Command::new("qemu-img")
    };
    let out = cmd
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Refused(format!("qemu-img could not run: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !stderr.is_empty() {
        return Err(Refused(stderr));
    }
    if !out.status.success() {
        return Err(Refused(format!("qemu-img failed: {}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The checks of `qemu-img info`'s report on data claimed as `claimed`.
fn check_info(claimed: &str, info: &Value) -> Result<(), Refused> {
    let reported = info
        .get("format")
        .and_then(Value::as_str)
        .map(glance_format);
    if reported != Some(claimed) {
        return Err(Refused("Image metadata disagrees about format".into()));
    }
    if info.get("backing-filename").is_some() {
        return Err(Refused(
            "QCOW images with backing files are not allowed".into(),
        ));
    }
    let data = info.pointer("/format-specific/data");
    if data
        .and_then(|d| d.get("data-file"))
        .is_some_and(|f| !f.is_null())
    {
        return Err(Refused(
            "QCOW images with data-file set are not allowed".into(),
        ));
    }
    if claimed == "vmdk" {
        let create_type = data
            .and_then(|d| d.get("create-type"))
            .and_then(Value::as_str)
            .ok_or_else(|| Refused("Unable to determine VMDK create-type".into()))?;
        if !VMDK_ALLOWED_TYPES.contains(&create_type) {
            return Err(Refused("Invalid VMDK create-type specified".into()));
        }
    }
    Ok(())
}

impl Conversion {
    /// Checks the file at `src`, claimed to be `claimed`, and converts it to the output
    /// format (see the module docs). A refusal leaves no converted file behind.
    pub async fn run(&self, src: &Path, claimed: &str) -> Result<Converted, Refused> {
        let detected = inspect(src).await?;
        if detected == Format::Iso {
            if claimed == "iso" {
                // An ISO stays an ISO: CD-based boot and rescue need it as it is.
                return Ok(Converted {
                    path: src.to_path_buf(),
                    disk_format: None,
                });
            }
            return Err(Refused("Image has disallowed configuration".into()));
        }
        if detected.name() != claimed {
            return Err(Refused("Image format mismatch".into()));
        }
        let src_str = src.to_string_lossy();
        let stdout = qemu_img(
            &[
                "info",
                "-f",
                qemu_format(claimed),
                "--output=json",
                &src_str,
            ],
            true,
        )
        .await?;
        let info: Value = serde_json::from_str(&stdout)
            .map_err(|e| Refused(format!("qemu-img info: unreadable report: {e}")))?;
        check_info(claimed, &info)?;
        let target = self.output_format.as_str();
        if claimed == target {
            return Ok(Converted {
                path: src.to_path_buf(),
                disk_format: None,
            });
        }
        let mut dest = src.as_os_str().to_owned();
        dest.push(format!(".{target}"));
        let dest = PathBuf::from(dest);
        let dest_str = dest.to_string_lossy();
        let converted = Converted {
            path: dest.clone(),
            disk_format: Some(target.to_string()),
        };
        let checked = async {
            qemu_img(
                &[
                    "convert",
                    "-f",
                    qemu_format(claimed),
                    "-O",
                    qemu_format(target),
                    &src_str,
                    &dest_str,
                ],
                false,
            )
            .await?;
            if inspect(&dest).await?.name() != target {
                // One format hidden in another must not be stored as the output format.
                return Err(Refused("Converted image in unexpected format".into()));
            }
            Ok(())
        }
        .await;
        if let Err(e) = checked {
            converted.cleanup(src).await;
            return Err(e);
        }
        Ok(converted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vhd_is_qemus_vpc_both_ways() {
        assert_eq!(qemu_format("vhd"), "vpc");
        assert_eq!(qemu_format("qcow2"), "qcow2");
        assert_eq!(glance_format("vpc"), "vhd");
        assert!(check_info("vhd", &json!({"format": "vpc"})).is_ok());
    }

    #[test]
    fn info_refusals_are_glances() {
        let r = |claimed: &str, v: Value| check_info(claimed, &v).unwrap_err().0;
        assert_eq!(
            r("qcow2", json!({"format": "raw"})),
            "Image metadata disagrees about format"
        );
        assert_eq!(
            r(
                "qcow2",
                json!({"format": "qcow2", "backing-filename": "/etc/passwd"})
            ),
            "QCOW images with backing files are not allowed"
        );
        assert_eq!(
            r(
                "qcow2",
                json!({"format": "qcow2", "format-specific": {"data": {"data-file": "/x"}}})
            ),
            "QCOW images with data-file set are not allowed"
        );
        assert_eq!(
            r("vmdk", json!({"format": "vmdk"})),
            "Unable to determine VMDK create-type"
        );
        assert_eq!(
            r(
                "vmdk",
                json!({"format": "vmdk", "format-specific": {"data": {"create-type": "monolithicFlat"}}})
            ),
            "Invalid VMDK create-type specified"
        );
        assert!(check_info(
            "vmdk",
            &json!({"format": "vmdk", "format-specific": {"data": {"create-type": "streamOptimized"}}})
        )
        .is_ok());
        assert!(check_info(
            "qcow2",
            &json!({"format": "qcow2", "format-specific": {"data": {"data-file": null}}})
        )
        .is_ok());
    }
}
