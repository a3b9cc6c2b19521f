//! Disk image format inspection: which format a file really is, its virtual size, and
//! whether it is safe to hand to a hypervisor — what Glance checks on upload and Nova's
//! libvirt driver before it boots (both through oslo.utils' `format_inspector`).
//!
//! Written from the formats' specifications (qcow2, VMDK sparse extents, VHD, VHDX,
//! VDI, ISO 9660/UDF, MBR/GPT), with the detection rules and safety checks of
//! `format_inspector`, so that Stratus accepts and refuses the same images.
//!
//! Invariants:
//! - Pure and bounded: an inspection reads at most a few fixed regions of the file
//!   (headers, at most 1 MiB of VMDK descriptor, the last 1536 bytes for a VMDK
//!   footer), never the whole image, and never follows any reference inside it
//!   (backing files, data files, extents are reported, not opened).
//! - Every known format is probed; content that matches none is `raw`. Content that
//!   matches two formats is refused ([`InspectError::Multiple`]) because one header
//!   hidden in another is how images fool tools, except ISO+GPT, which is an ISO (a
//!   bootable ISO legitimately carries a GPT in its system area).
//! - Content that starts like a format but is malformed does not match that format
//!   (format_inspector drops an inspector that fails to parse).
//! - [`glance_upload`] and [`nova_boot`] are the two services' decisions over an
//!   inspection, with their messages; callers only map them to their error shapes.

use std::io;
use std::path::Path;

/// A disk image format this crate recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// Anything not recognised as another format.
    Raw,
    /// QEMU copy-on-write v2/v3 (v1 is refused by the safety check).
    Qcow2,
    /// QEMU enhanced disk: recognised so that it can be refused (never allowed).
    Qed,
    /// Microsoft VHD (qemu's `vpc`).
    Vhd,
    /// Microsoft VHDX.
    Vhdx,
    /// VMware VMDK (sparse header, or a bare text descriptor).
    Vmdk,
    /// VirtualBox VDI.
    Vdi,
    /// ISO 9660 or UDF.
    Iso,
    /// A whole disk with an MBR (protective or not) and maybe a GPT.
    Gpt,
}

/// The probes, in the order their names are listed in messages.
const PROBED: [Format; 8] = [
    Format::Qcow2,
    Format::Qed,
    Format::Vhd,
    Format::Vhdx,
    Format::Vmdk,
    Format::Vdi,
    Format::Iso,
    Format::Gpt,
];

impl Format {
    /// The name Glance's `disk_format` and qemu use.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Qed => "qed",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Vmdk => "vmdk",
            Format::Vdi => "vdi",
            Format::Iso => "iso",
            Format::Gpt => "gpt",
        }
    }

    /// The format of a `disk_format` name, if it is one this crate inspects
    /// (format_inspector also knows `luks`, which Glance's disk formats do not list).
    pub fn from_name(name: &str) -> Option<Format> {
        [Format::Raw]
            .into_iter()
            .chain(PROBED)
            .find(|f| f.name() == name)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One failed safety check: its name (format_inspector's) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `backing_file`, `data_file`, `unknown_features`, `descriptor`, `footer`, `mbr`,
    /// `banned`.
    pub check: &'static str,
    /// What was found.
    pub reason: String,
}

/// What an inspection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The format of the content.
    pub format: Format,
    /// Size of the disk the image describes, in bytes (0 when the format does not say).
    pub virtual_size: u64,
    /// Size of the file, in bytes.
    pub actual_size: u64,
    /// Failed safety checks (empty: safe).
    pub violations: Vec<Violation>,
}

impl Inspected {
    /// Whether every safety check passed.
    pub fn is_safe(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Why an inspection reached no verdict.
#[derive(Debug)]
pub enum InspectError {
    /// The content matches more than one format (a header hidden in another).
    Multiple(Vec<Format>),
    /// The file could not be read.
    Io(io::Error),
}

impl std::error::Error for InspectError {}

impl std::fmt::Display for InspectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InspectError::Multiple(fs) => {
                let names: Vec<&str> = fs.iter().map(|f| f.name()).collect();
                write!(f, "Multiple formats detected: {}", names.join(","))
            }
            InspectError::Io(e) => write!(f, "cannot read the image: {e}"),
        }
    }
}

impl From<io::Error> for InspectError {
    fn from(e: io::Error) -> Self {
        InspectError::Io(e)
    }
}

/// Random access to the bytes of an image.
pub trait Source {
    /// Length in bytes.
    fn len(&self) -> u64;
    /// Whether there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads into `buf` from `offset`; returns how many bytes were read (fewer only at
    /// the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(<[u8]>::len(self));
        let n = buf.len().min(<[u8]>::len(self) - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// A file and its length at open.
struct FileSource {
    file: std::fs::File,
    len: u64,
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// Up to `len` bytes at `offset` (fewer at the end of the source).
fn region(src: &(impl Source + ?Sized), offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let avail = src.len().saturating_sub(offset);
    let mut buf = vec![0u8; len.min(usize::try_from(avail).unwrap_or(usize::MAX))];
    let n = src.read_at(offset, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Exactly `len` bytes at `offset`, or None when the source is shorter.
fn exact(src: &(impl Source + ?Sized), offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
    let b = region(src, offset, len)?;
    Ok((b.len() == len).then_some(b))
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn violation(check: &'static str, reason: impl Into<String>) -> Violation {
    Violation {
        check,
        reason: reason.into(),
    }
}

/// A probe's finding when the content is its format.
struct Probe {
    virtual_size: u64,
    violations: Vec<Violation>,
}

type ProbeResult = io::Result<Option<Probe>>;

/// qcow2: magic `QFI\xfb`, big-endian header. Unsafe: a backing file, an external data
/// file (incompatible feature bit 2), incompatible feature bits this checker does not
/// know (4 and up), a version other than 2 or 3.
fn qcow2(src: &(impl Source + ?Sized)) -> ProbeResult {
    let Some(h) = exact(src, 0, 512)? else {
        return Ok(None);
    };
    if &h[..4] != b"QFI\xfb" {
        return Ok(None);
    }
    let version = be_u32(&h, 4);
    let mut v = Vec::new();
    if be_u64(&h, 8) != 0 {
        v.push(violation("backing_file", "Image has a backing file"));
    }
    // Incompatible features (version 3 only; version 2 has no such field).
    let features = if version == 3 { be_u64(&h, 0x48) } else { 0 };
    if features & (1 << 2) != 0 {
        v.push(violation("data_file", "Image has data_file set"));
    }
    match version {
        2 => {}
        3 if features & !0xF != 0 => v.push(violation(
            "unknown_features",
            "Unknown QCOW2 features found",
        )),
        3 => {}
        _ => v.push(violation("unknown_features", "Unsupported qcow2 version")),
    }
    Ok(Some(Probe {
        virtual_size: be_u64(&h, 24),
        violations: v,
    }))
}

/// QED: recognised only to be refused.
fn qed(src: &(impl Source + ?Sized)) -> ProbeResult {
    let Some(h) = exact(src, 0, 512)? else {
        return Ok(None);
    };
    Ok((&h[..4] == b"QED\0").then(|| Probe {
        virtual_size: src.len(),
        violations: vec![violation("banned", "This file format is not allowed")],
    }))
}

/// VHD: the `conectix` cookie of the footer copy at the start (dynamic disks).
fn vhd(src: &(impl Source + ?Sized)) -> ProbeResult {
    let h = region(src, 0, 512)?;
    if !h.starts_with(b"conectix") {
        return Ok(None);
    }
    let size = if h.len() == 512 { be_u64(&h, 40) } else { 0 };
    Ok(Some(Probe {
        virtual_size: size,
        violations: vec![],
    }))
}

/// GUID of the VHDX metadata region, as stored (little-endian first three fields).
const VHDX_METADATA_REGION: [u8; 16] = [
    0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E,
];
/// GUID of the VHDX "virtual disk size" metadata item.
const VHDX_VIRTUAL_DISK_SIZE: [u8; 16] = [
    0x24, 0x42, 0xA5, 0x2F, 0x1B, 0xCD, 0x76, 0x48, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8,
];

/// VHDX: the `vhdxfile` identifier; the virtual size is found through the region table
/// (at 192 KiB) and the metadata table (at most 2047 entries each).
fn vhdx(src: &(impl Source + ?Sized)) -> ProbeResult {
    let ident = region(src, 0, 32)?;
    if !ident.starts_with(b"vhdxfile") {
        return Ok(None);
    }
    let Some(table) = exact(src, 192 * 1024, 64 * 1024)? else {
        // Too short to hold the region table: not a complete VHDX.
        return Ok(None);
    };
    if le_u32(&table, 0) != 0x6967_6572 {
        return Ok(None);
    }
    let count = le_u32(&table, 8) as usize;
    if count >= 2048 {
        return Ok(None);
    }
    let meta_offset = (0..count)
        .map(|i| &table[16 + i * 32..16 + (i + 1) * 32])
        .find(|e| e[..16] == VHDX_METADATA_REGION)
        .map(|e| le_u64(e, 16));
    let mut virtual_size = 0;
    if let Some(mo) = meta_offset {
        let meta = region(src, mo, 32 * 2048)?;
        if meta.len() < 32 || &meta[..8] != b"metadata" {
            return Ok(None);
        }
        let n = le_u16(&meta, 10) as usize;
        if n >= 2048 || meta.len() < 32 + n * 32 {
            return Ok(None);
        }
        if let Some(e) = (0..n)
            .map(|i| &meta[32 + i * 32..32 + (i + 1) * 32])
            .find(|e| e[..16] == VHDX_VIRTUAL_DISK_SIZE)
        {
            if let Some(b) = exact(src, mo + u64::from(le_u32(e, 16)), 8)? {
                virtual_size = le_u64(&b, 0);
            }
        }
    }
    Ok(Some(Probe {
        virtual_size,
        violations: vec![],
    }))
}

/// The VMDK sparse-extent header fields this checker uses.
#[derive(Debug, PartialEq, Eq)]
struct SparseHeader {
    magic: [u8; 4],
    version: u32,
    capacity: u64,
    desc_sector: u64,
    desc_sectors: u64,
    gd_offset: u64,
}

impl SparseHeader {
    fn parse(b: &[u8]) -> SparseHeader {
        SparseHeader {
            magic: b[..4].try_into().expect("4 bytes"),
            version: le_u32(b, 4),
            capacity: le_u64(b, 12),
            desc_sector: le_u64(b, 28),
            desc_sectors: le_u64(b, 36),
            gd_offset: le_u64(b, 56),
        }
    }
}

/// The grain directory is in the footer (stream-optimized images written in one pass).
const GD_AT_END: u64 = u64::MAX;
/// The largest descriptor read.
const VMDK_DESC_MAX: usize = (1 << 20) - 1;
/// The only subformats whose data lives in the file itself.
const VMDK_SAFE_TYPES: [&str; 2] = ["monolithicsparse", "streamoptimized"];

/// Whether a byte is what Python calls printable or whitespace (ASCII).
fn texty(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f)
}

/// The lowercased descriptor text (up to its first NUL) and its `createType`, or None
/// when it is not ASCII.
fn vmdk_descriptor(raw: &[u8]) -> Option<(String, String)> {
    let raw = raw.split(|b| *b == 0).next().unwrap_or(&[]);
    if !raw.is_ascii() {
        return None;
    }
    let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
    let key = "createtype=\"";
    let kind = text
        .find(key)
        .and_then(|i| {
            let start = i + key.len();
            let end = text[start..].find('"')? + start;
            (end - start < 64).then(|| text[start..end].to_string())
        })
        .unwrap_or_else(|| "formatnotfound".into());
    Some((text, kind))
}

/// The descriptor's safety: an allowed subformat, only known line kinds, at least one
/// extent, and no extent naming a path.
fn vmdk_check_descriptor(desc: Option<&(String, String)>) -> Option<Violation> {
    let Some((text, kind)) = desc else {
        return Some(violation("descriptor", "No descriptor found"));
    };
    if !VMDK_SAFE_TYPES.contains(&kind.as_str()) {
        return Some(violation("descriptor", "Unsupported subformat"));
    }
    let mut extents = 0;
    for line in text.split('\n').map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("ddb") {
            continue;
        }
        if line
            .split('=')
            .next()
            .is_some_and(|k| line.contains('=') && !k.contains(' '))
        {
            continue;
        }
        if matches!(
            line.split(' ').next(),
            Some("rw") | Some("rdonly") | Some("noaccess")
        ) {
            if line.contains('/') {
                return Some(violation("descriptor", "Invalid extent filenames found"));
            }
            extents += 1;
            continue;
        }
        return Some(violation("descriptor", "Invalid VMDK descriptor data"));
    }
    (extents == 0).then(|| violation("descriptor", "No extents found"))
}

/// A footer (grain directory at end): a footer marker, a copy of the header that
/// agrees with it and does not announce yet another footer, then an end-of-stream
/// marker.
fn vmdk_check_footer(head: &SparseHeader, tail: Option<&[u8]>) -> Option<Violation> {
    let Some(tail) = tail else {
        return Some(violation("footer", "Footer marker is invalid"));
    };
    let foot = SparseHeader::parse(&tail[512..]);
    if foot.magic != head.magic {
        return Some(violation(
            "footer",
            "Header and footer signature do not match",
        ));
    }
    if foot.version != head.version {
        return Some(violation(
            "footer",
            "Header and footer versions do not match",
        ));
    }
    if (foot.desc_sector, foot.desc_sectors) != (head.desc_sector, head.desc_sectors) {
        return Some(violation(
            "footer",
            "Footer specifies a different descriptor than header",
        ));
    }
    if foot.gd_offset == GD_AT_END {
        return Some(violation("footer", "Footer indicates another footer"));
    }
    let marker_ok = |m: &[u8], kind: u32, value_zero: bool| {
        (!value_zero || le_u64(m, 0) == 0)
            && le_u32(m, 8) == 0
            && le_u32(m, 12) == kind
            && m[16..512].iter().all(|b| *b == 0)
    };
    if !marker_ok(&tail[..512], 3, false) {
        return Some(violation("footer", "Footer marker is invalid"));
    }
    if !marker_ok(&tail[1024..], 0, true) {
        return Some(violation("footer", "End-of-stream marker is invalid"));
    }
    None
}

/// VMDK: a sparse extent (`KDMV` header, embedded descriptor at sector 1), or a bare
/// text descriptor (monolithicFlat and friends, whose data is in other files).
fn vmdk(src: &(impl Source + ?Sized)) -> ProbeResult {
    let h = region(src, 0, 512)?;
    if h.len() < 64 {
        return Ok(None);
    }
    if &h[..4] != b"KDMV" {
        if !h.iter().all(|b| texty(*b)) {
            return Ok(None);
        }
        // A text descriptor: a VMDK only if it names its subformat.
        let Some(desc) = vmdk_descriptor(&region(src, 0, VMDK_DESC_MAX)?) else {
            return Ok(None);
        };
        if desc.1 == "formatnotfound" {
            return Ok(None);
        }
        let v = vmdk_check_descriptor(Some(&desc));
        return Ok(Some(Probe {
            virtual_size: 0,
            violations: v.into_iter().collect(),
        }));
    }
    let head = SparseHeader::parse(&h);
    if !(1..=3).contains(&head.version) || head.desc_sector != 1 {
        // An unsupported version or a descriptor elsewhere: format_inspector gives up.
        return Ok(None);
    }
    let size = usize::try_from(head.desc_sectors.saturating_mul(512))
        .unwrap_or(usize::MAX)
        .min(VMDK_DESC_MAX);
    let desc = vmdk_descriptor(&region(src, 512, size)?);
    let mut v: Vec<Violation> = vmdk_check_descriptor(desc.as_ref()).into_iter().collect();
    if head.gd_offset == GD_AT_END {
        let tail = match src.len().checked_sub(1536) {
            Some(at) => exact(src, at, 1536)?,
            None => None,
        };
        v.extend(vmdk_check_footer(&head, tail.as_deref()));
    }
    let virtual_size = match &desc {
        Some((_, kind)) if VMDK_SAFE_TYPES.contains(&kind.as_str()) => {
            head.capacity.saturating_mul(512)
        }
        _ => 0,
    };
    Ok(Some(Probe {
        virtual_size,
        violations: v,
    }))
}

/// VDI: signature `0xbeda107f` at 0x40; disk size at 0x170.
fn vdi(src: &(impl Source + ?Sized)) -> ProbeResult {
    let Some(h) = exact(src, 0, 512)? else {
        return Ok(None);
    };
    Ok((le_u32(&h, 0x40) == 0xBEDA_107F).then(|| Probe {
        virtual_size: le_u64(&h, 0x170),
        violations: vec![],
    }))
}

/// ISO 9660 / UDF: a volume descriptor after the 32 KiB system area (`CD001`, or UDF's
/// `NSR02`/`NSR03`); the primary descriptor gives blocks × block size.
fn iso(src: &(impl Source + ?Sized)) -> ProbeResult {
    if src.len() < 34 * 1024 {
        return Ok(None);
    }
    let Some(d) = exact(src, 32 * 1024, 2048)? else {
        return Ok(None);
    };
    if !matches!(&d[1..6], b"CD001" | b"NSR02" | b"NSR03") {
        return Ok(None);
    }
    let size = if d[0] == 1 {
        u64::from(le_u32(&d, 80)) * u64::from(le_u16(&d, 128))
    } else {
        0
    };
    Ok(Some(Probe {
        virtual_size: size,
        violations: vec![],
    }))
}

/// A whole disk: the MBR signature `0x55aa` (and not a FAT boot sector). Safe only with
/// a sane partition table: valid boot flags, at least one partition, and a protective
/// GPT entry (type 0xEE) that starts at LBA 1 / CHS 0,2,0 and stands alone.
fn gpt(src: &(impl Source + ?Sized)) -> ProbeResult {
    let Some(m) = exact(src, 0, 512)? else {
        return Ok(None);
    };
    let fat = m[0x10] == 2 && m[0x15] == 0xF8;
    if le_u16(&m, 510) != 0xAA55 || fat {
        return Ok(None);
    }
    let check = || -> Option<Violation> {
        let mut used = Vec::new();
        let mut protective = false;
        for i in 0..4 {
            let e = &m[446 + 16 * i..446 + 16 * (i + 1)];
            if !matches!(e[0], 0x00 | 0x80) {
                return Some(violation(
                    "mbr",
                    format!("MBR PTE {i} has invalid boot flag"),
                ));
            }
            if e[4] != 0 {
                used.push(i);
            }
            if e[4] == 0xEE {
                protective = true;
                if e[1..4] != [0x00, 0x02, 0x00] {
                    return Some(violation("mbr", "GPT MBR has invalid start CHS"));
                }
                if le_u32(e, 8) != 1 {
                    return Some(violation("mbr", "GPT MBR has invalid start LBA"));
                }
            }
        }
        if protective && used != [0] {
            return Some(violation("mbr", "GPT MBR defines invalid extra partitions"));
        }
        used.is_empty()
            .then(|| violation("mbr", "GPT MBR has no partitions defined"))
    };
    Ok(Some(Probe {
        virtual_size: src.len(),
        violations: check().into_iter().collect(),
    }))
}

fn probe(f: Format, src: &(impl Source + ?Sized)) -> ProbeResult {
    match f {
        Format::Raw => Ok(None),
        Format::Qcow2 => qcow2(src),
        Format::Qed => qed(src),
        Format::Vhd => vhd(src),
        Format::Vhdx => vhdx(src),
        Format::Vmdk => vmdk(src),
        Format::Vdi => vdi(src),
        Format::Iso => iso(src),
        Format::Gpt => gpt(src),
    }
}

/// Inspects `src`: its one format (raw when nothing else matches), virtual size and
/// safety.
pub fn inspect(src: &(impl Source + ?Sized)) -> Result<Inspected, InspectError> {
    let mut found = Vec::new();
    for f in PROBED {
        if let Some(p) = probe(f, src)? {
            found.push((f, p));
        }
    }
    let formats: Vec<Format> = found.iter().map(|(f, _)| *f).collect();
    let (format, p) = match formats.as_slice() {
        [] => (
            Format::Raw,
            Probe {
                virtual_size: src.len(),
                violations: vec![],
            },
        ),
        [_] => found.pop().expect("one"),
        [Format::Iso, Format::Gpt] => found.swap_remove(0),
        _ => return Err(InspectError::Multiple(formats)),
    };
    Ok(Inspected {
        format,
        virtual_size: p.virtual_size,
        actual_size: src.len(),
        violations: p.violations,
    })
}

/// Inspects the file at `path`.
pub fn inspect_file(path: &Path) -> Result<Inspected, InspectError> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    inspect(&FileSource { file, len })
}

/// Disk formats with an inspector (format_inspector's `ALL_FORMATS`, without `luks`,
/// which is no Glance disk format): others (`ami`, `ari`, `aki`, `ploop`) cannot be
/// checked.
pub fn inspectable(disk_format: &str) -> bool {
    Format::from_name(disk_format).is_some()
}

/// Glance's verdict on uploaded data (its `[image_format]` checks since 2024.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadVerdict {
    /// Store it; record this virtual size when known.
    Accept {
        /// The virtual size to record (None: unknown).
        virtual_size: Option<u64>,
    },
    /// Refuse it (Glance: 415 with this message, image back to `queued`).
    Reject(String),
}

/// Glance's check of upload data against `disk_format` (container `bare` only):
/// - the detected format must be the claimed one, except that anything may claim `raw`
///   (then the virtual size is the byte size) and unrecognised content may claim a
///   format without inspector (`ami`, ...): else "Image disk_format X does not match
///   stream data Y" — only when `require_match` (`require_image_format_match`);
/// - a detected format must pass its safety checks: else "Image failed safety checks".
///   Glance refuses unsafe content even with `require_match` off; Stratus does not, so
///   that an operator (or tempest with `image_format_enforcement = False`) can store
///   hostile images and see compute refuse them.
pub fn glance_upload(
    disk_format: &str,
    inspected: &Result<Inspected, InspectError>,
    require_match: bool,
) -> UploadVerdict {
    let refuse = |m: String| {
        if require_match {
            UploadVerdict::Reject(m)
        } else {
            UploadVerdict::Accept { virtual_size: None }
        }
    };
    let i = match inspected {
        Ok(i) => i,
        Err(e @ InspectError::Multiple(_)) => return refuse(e.to_string()),
        Err(InspectError::Io(_)) => return refuse("Image format inspection failed".into()),
    };
    let detected = i.format.name();
    let virtual_size = if detected == disk_format {
        Some(i.virtual_size)
    } else if i.format == Format::Raw && !inspectable(disk_format) {
        None
    } else if disk_format == "raw" {
        Some(i.actual_size)
    } else {
        return refuse(format!(
            "Image disk_format {disk_format} does not match stream data {detected}"
        ));
    };
    if !i.is_safe() {
        return refuse("Image failed safety checks".into());
    }
    UploadVerdict::Accept {
        virtual_size: virtual_size.filter(|v| *v > 0),
    }
}

/// Nova's deep inspection before booting an image (libvirt driver, `fetch_to_raw`):
/// the reason of the `ImageUnacceptable` it raises, or Ok.
pub fn nova_boot(
    disk_format: &str,
    inspected: &Result<Inspected, InspectError>,
) -> Result<(), &'static str> {
    let ami = matches!(disk_format, "ami" | "aki" | "ari");
    if !ami && !inspectable(disk_format) {
        return Err("Image not in a supported format");
    }
    let i = match inspected {
        Ok(i) => i,
        Err(InspectError::Multiple(_)) => return Err("Image content does not match disk_format"),
        Err(InspectError::Io(_)) => return Err("Image not in a supported format"),
    };
    if !i.is_safe() {
        return Err("Image does not pass safety check");
    }
    let detected = i.format.name();
    if disk_format == "raw" && i.format == Format::Gpt {
        // A legacy "whole disk" image registered as raw: allowed.
        return Ok(());
    }
    if !ami && detected != disk_format {
        return Err("Image content does not match disk_format");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
